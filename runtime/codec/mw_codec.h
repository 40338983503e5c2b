/* Codec: protobuf bytes <-> Lua table (decode_push, encode_buf, encode),
 * straight on the wire format, driven by the descriptors in a upb_DefPool.
 * This is what the runtime uses; codec/mw_codec_reflect.h has the same
 * mapping between a upb_Message and a table (the tests' oracle), and both
 * give the same errors.
 *
 * Mapping (proto3):
 *   int32/sint32/sfixed32/uint32/fixed32, int64/..., enum numbers -> Lua
 *   integers (64-bit exact; a uint64/fixed64 above 2^63-1, which no Lua
 *   integer holds, comes out as its decimal string, and decimal strings are
 *   accepted for every 64-bit integer field on the way in); float/double -> Lua
 *   floats; bool -> boolean; string -> string (UTF-8 validated both ways);
 *   bytes -> string; enum -> its value name (unknown numbers stay numbers);
 *   message -> table; repeated -> array; map -> table keyed by the map key;
 *   oneof -> whichever member is set; proto3 optional and message fields ->
 *   absent (nil) when not present; google.protobuf.Any -> a table with
 *   "@type" (the type URL) and the fields of the packed message when the type
 *   is in the pool, else {["@type"] = url, ["@value"] = bytes}; a type_url
 *   without '/' (no type URL: nothing is unpacked from it) comes out as the
 *   plain message {type_url = url, value = bytes}, which encodes back to the
 *   same bytes.
 *   Lua -> message: integers must fit the field's range (floats with an
 *   integral value are accepted); enums by name or number; a key the message
 *   does not have is an error naming the field and the message.
 *
 * Default-valued proto3 scalars (0, "", false, first enum) are present in the
 * table on the way out, so handlers can read them without nil checks; empty
 * repeated and map fields come out as empty tables.
 *
 * Details:
 *   - Lua -> message is strict: integers only from integers, integral floats
 *     or (64-bit fields and map keys only) decimal strings without sign
 *     prefixes or spaces; float/double from numbers (a finite value beyond
 *     the float range is an error); bool only from booleans; string/bytes only
 *     from strings (no number coercion); enums by name or int32 number, and
 *     proto2 (closed) enums only by numbers they define.
 *   - Tables are read raw (no metamethods). A repeated field takes a sequence
 *     1..n; holes and other keys are errors. Two members of one oneof in the
 *     same table are an error. Keys of a message table must be field names
 *     (not oneof names, not JSON names).
 *   - Any in: {["@type"] = url, <fields>} packs the fields as the named type
 *     (a url without '/' gets "type.googleapis.com/" in front); with
 *     ["@value"] = bytes the bytes are used as they are, whatever the type.
 *     An Any packed in an Any sits under "value" both ways, as in JSON. A
 *     table without "@type" is read as the plain Any message (type_url,
 *     value). Other well-known types are plain messages.
 *   - proto2 fields with presence are nil when absent, like proto3 optional.
 *   - Nesting is limited to 100 levels both ways (a table that contains
 *     itself is an error, not a crash).
 *   - Errors are written to err (never raised as Lua errors), with the path
 *     of the value: "field 'items[2].name': invalid UTF-8 in string",
 *     "unknown field 'inner.x' in message pkg.Inner" (the message named is
 *     the one that lacks the field). Array indexes are 1-based as in Lua; map
 *     keys appear as [1], ["key"], [true]. err may be NULL (or errlen 0).
 *   - On failure the Lua stack is as it was; on success exactly one value is
 *     pushed by the push/decode functions and none by the others. Only a Lua
 *     out-of-memory error can still unwind through these functions.
 *
 * Plans: each Lua state keeps, in its registry, a plan per message type
 * it has converted (codec/mw_codec_plan.h: the fields as read from the
 * descriptors, their names as Lua strings), built on first use. They are
 * keyed by the upb_MessageDef's address and the schema epoch
 * (schema/mw_schema.h): a pool that went through the codec and is freed
 * while such a state lives must be freed after mw_schema_epoch_bump(), as
 * mw_schema_free does, or a later pool's message at the same address would
 * be taken for the old one.
 *
 * The wire format (decode_push, encode_buf, encode): as upb 1.51's decoder
 * and encoder had it, unless said otherwise.
 *   - Unknown fields (groups too) are skipped, and so is a known field
 *     number whose wire type its field cannot have (as protobuf's parsers
 *     do: a peer's schema changed the type). A bad varint or tag, a length
 *     past the end, a group that does not end, a wrong wire type inside a
 *     map entry or an Any: "cannot decode pkg.Msg: malformed wire data".
 *     100 levels of messages both ways (upb: 64).
 *   - Repeated scalars are read packed and unpacked alike; on the way out
 *     they are packed when the field is (proto3's default).
 *   - A scalar seen twice: the last value. A message seen twice is merged
 *     (its scalars replaced, repeated fields appended, maps joined); an Any
 *     seen twice merges its type_url and value (but a later type_url alone,
 *     naming another type than an earlier unpacked value, gets an empty
 *     value: the earlier bytes are not kept). The last oneof member on the
 *     wire wins, the others are gone from the table.
 *   - Map entries: the last of a key wins, a missing key or value is the
 *     default; an entry with another field in it is dropped.
 *   - Closed (proto2) enums: a number the enum lacks leaves a singular field
 *     as it was and drops a repeated element; a map value keeps the number.
 *   - Invalid UTF-8 in a proto3 string (or Any type_url) is "invalid UTF-8 in
 *     a string field" without a path (wrapped by the Any being unpacked, if
 *     any); in a proto2 string it is "field 'path': invalid UTF-8 in string".
 *   - Fields go out in field-number order; proto3 fields without presence
 *     equal to their default (0, "", false, the zero enum, float bits all
 *     zero: -0.0 is written) are left out; map entries carry key and value.
 *     The bytes are upb_Encode's for the same message, but for the order of
 *     map entries (the order lua_next gives).
 */
#ifndef MW_CODEC_H
#define MW_CODEC_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

#include "upb/arena.h"
#include "upb/def.h"

#define MW_CODEC_ERRLEN 256

/* bytes -> table pushed on L. Returns 0, or -1 with err ("cannot decode
 * helloworld.HelloRequest: ...") and nothing pushed. buf only needs to live
 * for the call (the strings are copied into Lua); a is scratch space for the
 * call (bitmaps of messages with more than 256 fields). */
int mw_codec_decode_push(lua_State *L, const char *buf, size_t len,
                         const upb_MessageDef *m, upb_Arena *a, char *err,
                         size_t errlen);

/* table at idx -> serialized bytes allocated in arena a (*len set; an empty
 * message gives a non-NULL buffer and *len 0). Returns NULL with err filled
 * on failure. Small messages are written on the C stack and copied into a
 * once; bigger ones grow in a. The encoder of mw_codec_encode_buf, for
 * callers whose bytes live in an arena (the tests compare them with
 * upb_Encode's). */
char *mw_codec_encode(lua_State *L, int idx, const upb_MessageDef *m,
                      upb_Arena *a, size_t *len, char *err, size_t errlen);

/* table at idx -> serialized bytes in stack (cap bytes) while they fit, else
 * in a block from malloc() that the caller owns: its address is in *block
 * from the moment it exists, so an error raised through the encoder (out of
 * memory in Lua) leaves it with the caller's owner. a is scratch space (the
 * fields of very wide messages). Returns the bytes (stack or *block, *len
 * set), or NULL with err filled, *block NULL and *oom (when oom is not NULL)
 * telling a failure for want of memory from an invalid table. Big messages
 * are then handed on without a copy. */
const char *mw_codec_encode_buf(lua_State *L, int idx, const upb_MessageDef *m,
                                upb_Arena *a, char *stack, size_t cap, char **block,
                                size_t *len, bool *oom, char *err, size_t errlen);

/* Serialized bytes of m -> the same message serialized deterministically,
 * in arena a (*out_len set): decoded with upb and encoded again with
 * kUpb_EncodeOption_Deterministic, so that map entries come out in one
 * order fixed by their keys whatever order they came in (the only freedom
 * mw_codec_encode's output has; upb 1.51 writes string keys ascending and
 * integer keys descending), and repeated scalars as their field says. Unknown fields are kept, in
 * the order they came. For fingerprints of requests (the idempotency
 * interceptor): two encodings of one message give the same bytes, in one
 * build of the binary. The bytes inside a google.protobuf.Any are left as
 * they are. Returns the bytes, or NULL with err filled ("cannot decode
 * pkg.Msg: malformed wire data", "out of memory"). */
const char *mw_codec_canonical(const char *buf, size_t len, const upb_MessageDef *m,
                               upb_Arena *a, size_t *out_len, char *err, size_t errlen);

#endif
