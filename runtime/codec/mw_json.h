/* Canonical proto3 JSON <-> protobuf binary, for the protocols that carry
 * JSON (Connect, REST transcoding, gRPC-Web text clients): the JSON mapping
 * of https://protobuf.dev/programming-guides/proto3/#json, driven by the
 * descriptors of one schema generation's upb_DefPool.
 *
 * Both directions go through a upb message in the caller's arena: binary
 * -> upb_Decode (the message's MiniTable) -> JSON; JSON -> message ->
 * upb_Encode. The JSON reader and writer are this module's own (over upb's
 * reflection) rather than upb_JsonDecode/upb_JsonEncode, because upb 1.51's
 * have gaps against the spec that cannot be fixed from outside (see
 * docs/architecture.md, "The JSON codec") and their errors carry no field
 * path.
 *
 * What comes out (binary -> JSON), as protobuf's own json_format writes it:
 *   - fields under their json_name (lowerCamelCase or the .proto's
 *     json_name), or their .proto name with MW_JSON_PROTO_NAMES; fields in
 *     the order the .proto declares them, map entries in upb's order;
 *     proto3 scalars equal to their default, empty repeated and map
 *     fields and absent messages are left out unless
 *     MW_JSON_EMIT_DEFAULTS (absent messages, oneof members and proto3
 *     optional fields stay out either way; an absent proto2 optional
 *     scalar then comes out with its default); unknown fields (of a newer
 *     schema) are not written;
 *   - int64/uint64/sint64/fixed64/sfixed64 as decimal strings, 32-bit ones
 *     as numbers; float and double in their shortest round-trip form, NaN
 *     and +-Infinity as the strings "NaN", "Infinity", "-Infinity", -0 as
 *     -0.0 (so that a reader taking "-0" for the integer 0 keeps the
 *     sign); bytes in standard base64 with padding; enums by value name
 *     (numbers the enum lacks as numbers; google.protobuf.NullValue as
 *     null); map keys as strings;
 *   - well-known types: Timestamp as RFC 3339 in UTC with 0, 3, 6 or 9
 *     fraction digits ("1972-01-01T10:00:20.021Z"), Duration as "1.500s"
 *     (0, 3, 6 or 9 digits; the sign kept below one second: "-0.500s"),
 *     FieldMask as "a.bC,d", Struct/Value/ListValue as the JSON they hold (a Value without a kind
 *     as null; a number_value that is NaN or infinite is an error, as JSON
 *     has no such number), wrappers as their bare value, Any as {"@type":
 *     url, fields...} or {"@type": url, "value": <JSON of a well-known
 *     type>}, an empty Any as {}.
 *
 * What goes in (JSON -> binary), as the spec and json_format accept:
 *   - fields by json_name or by .proto name; null for a field means its
 *     default (for google.protobuf.Value: the null value); integers as
 *     numbers (1e3 and 5.0 too, not 1.5) or strings of decimal digits
 *     ("-12", not "1e3" nor " 1"), exact over all 64 bits; floats as
 *     numbers, numeric strings or "NaN"/"Infinity"/"-Infinity" (a number
 *     beyond the type's range is an error, but 3.4028235e38, FLT_MAX's
 *     shortest text, reads back as FLT_MAX); enums by name or number (a
 *     number in a string too);
 *     bytes in standard or URL-safe base64, with or without padding;
 *     Timestamps with any UTC offset; Any with "@type" anywhere in the
 *     object, resolved in the pool (a type the pool lacks is an error
 *     naming it), {} as the empty Any.
 *   - Strict JSON (RFC 8259): no comments, trailing commas, NaN literals,
 *     leading zeros, control characters in strings, invalid UTF-8 or lone
 *     surrogates, nothing after the value. A field given twice (by either
 *     of its names), a map or Struct key given twice and two members of one
 *     oneof are errors: two readers must not read different values out of
 *     one body. The top-level value is an object, but for the well-known
 *     types with a JSON form of their own.
 *   - MW_JSON_IGNORE_UNKNOWN skips fields the message lacks and enum names
 *     the enum lacks (the field keeps its default); without it both are
 *     errors.
 *
 * Errors: the functions return MW_JSON_OK or a status below, with err filled
 * ("field 'items[1].when': invalid Timestamp ..."): the path names JSON
 * keys as they were written (JSON -> binary) or .proto field names
 * (binary -> JSON), with 0-based array indexes and map keys
 * ["k"] as in JSON. err may be NULL (errlen 0).
 *
 * Bounds: limits.max_depth levels of nesting (objects and arrays, Struct and
 * Value included; 0: MW_JSON_DEPTH_LIMIT; the binary decoder gets twice as
 * many, since one Struct or ListValue level is two messages on the wire);
 * max_in_bytes for the input of either function and max_out_bytes for its
 * output (0: no limit). A caller serving a method sets the binary side to
 * max_receive_bytes (request) or max_send_bytes (response). Everything
 * allocated lives in the caller's arena, freed with it; nothing is kept
 * between calls. */
#ifndef MW_JSON_H
#define MW_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "upb/arena.h"
#include "upb/def.h"

/* Options (a bit set). */
enum {
  /* binary -> JSON: write proto3 scalars equal to their default, empty
   * repeated fields ([]) and maps ({}), as json_format's
   * including_default_value_fields. */
  MW_JSON_EMIT_DEFAULTS = 1 << 0,
  /* binary -> JSON: .proto field names instead of json_name. */
  MW_JSON_PROTO_NAMES = 1 << 1,
  /* JSON -> binary: skip unknown fields and unknown enum names. */
  MW_JSON_IGNORE_UNKNOWN = 1 << 2,
};

/* Default nesting limit, in JSON levels (json_format's is 100 too). */
#define MW_JSON_DEPTH_LIMIT 100

typedef enum {
  MW_JSON_OK = 0,
  MW_JSON_INVALID = -1,   /* the input is not valid for the type (err says why) */
  MW_JSON_TOO_LARGE = -2, /* past max_in_bytes, max_out_bytes or max_depth */
  MW_JSON_NOMEM = -3,     /* the arena could not grow */
} mw_json_status;

typedef struct mw_json_limits {
  size_t max_in_bytes;  /* 0: no limit */
  size_t max_out_bytes; /* 0: no limit */
  int max_depth;        /* 0: MW_JSON_DEPTH_LIMIT */
} mw_json_limits;

/* JSON text (len bytes, need not be NUL-terminated) -> the protobuf binary
 * of message m, in arena a (*out, *out_len; an empty message gives a
 * non-NULL *out and *out_len 0). pool is the DefPool m belongs to (Any
 * types are looked up there). limits may be NULL (defaults). Called by the
 * protocol handlers for each JSON request body (and by tests). */
mw_json_status mw_json_to_binary(const char *json, size_t len, const upb_MessageDef *m,
                                 const upb_DefPool *pool, int options,
                                 const mw_json_limits *limits, upb_Arena *a,
                                 const char **out, size_t *out_len, char *err,
                                 size_t errlen);

/* Protobuf binary of message m -> JSON text in arena a (*out, NUL-terminated,
 * *out_len without the NUL). Malformed binary is MW_JSON_INVALID ("cannot
 * decode pkg.Msg: malformed wire data"). Called by the protocol handlers for
 * each JSON response (and error details), and by tests. */
mw_json_status mw_json_from_binary(const char *buf, size_t len, const upb_MessageDef *m,
                                   const upb_DefPool *pool, int options,
                                   const mw_json_limits *limits, upb_Arena *a,
                                   const char **out, size_t *out_len, char *err,
                                   size_t errlen);

/* The same on upb messages, for callers that already hold one (the
 * transcoder builds requests field by field): msg (of m) -> JSON, and JSON
 * merged into msg. Same options, limits and errors. */
mw_json_status mw_json_encode_msg(const upb_Message *msg, const upb_MessageDef *m,
                                  const upb_DefPool *pool, int options,
                                  const mw_json_limits *limits, upb_Arena *a,
                                  const char **out, size_t *out_len, char *err,
                                  size_t errlen);
mw_json_status mw_json_decode_msg(const char *json, size_t len, upb_Message *msg,
                                  const upb_MessageDef *m, const upb_DefPool *pool,
                                  int options, const mw_json_limits *limits,
                                  upb_Arena *a, char *err, size_t errlen);

#endif
