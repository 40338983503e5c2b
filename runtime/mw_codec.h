/* Codec: protobuf bytes <-> upb message <-> Lua table, driven by the
 * descriptors in a upb_DefPool.
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
 *   is in the pool, else {["@type"] = url, ["@value"] = bytes}.
 *   Lua -> message: integers must fit the field's range (floats with an
 *   integral value are accepted); enums by name or number; a key the message
 *   does not have is an error naming the field and the message.
 *
 * Default-valued proto3 scalars (0, "", false, first enum) are present in the
 * table on the way out, so handlers can read them without nil checks.
 */
#ifndef MW_CODEC_H
#define MW_CODEC_H

#include <stddef.h>

#include <lua.h>

#include "upb/arena.h"
#include "upb/def.h"
#include "upb/msg.h"

#define MW_CODEC_ERRLEN 256

/* Pushes the Lua table for msg. Returns 0, or -1 with err filled (e.g.
 * invalid UTF-8 in a string field) and nothing pushed. */
int mw_codec_push_message(lua_State *L, const upb_Message *msg,
                          const upb_MessageDef *m, char *err, size_t errlen);

/* Builds a new message of type m in arena a from the Lua table at index idx.
 * Returns NULL with err filled on any mismatch. */
upb_Message *mw_codec_to_message(lua_State *L, int idx,
                                 const upb_MessageDef *m, upb_Arena *a,
                                 char *err, size_t errlen);

/* bytes -> table pushed on L. Returns 0, or -1 with err ("cannot decode
 * helloworld.HelloRequest: ...") and nothing pushed. */
int mw_codec_decode_push(lua_State *L, const char *buf, size_t len,
                         const upb_MessageDef *m, upb_Arena *a, char *err,
                         size_t errlen);

/* table at idx -> serialized bytes allocated in arena a (*len set).
 * Returns NULL with err filled on failure. */
char *mw_codec_encode(lua_State *L, int idx, const upb_MessageDef *m,
                      upb_Arena *a, size_t *len, char *err, size_t errlen);

#endif
