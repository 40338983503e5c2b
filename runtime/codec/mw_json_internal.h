/* What codec/ files other than json.c use of the JSON reader and writer
 * (the REST transcoder, codec/transcode.c): one field at a time. Not for
 * use outside codec/. Errors as mw_json.h's, their paths relative to the
 * field (empty for the field itself). */
#ifndef MW_JSON_INTERNAL_H
#define MW_JSON_INTERNAL_H

#include "codec/mw_json.h"

/* The value of field f of msg from a URL's text (a path variable or query
 * parameter, already percent-decoded): the JSON mapping's string form of the
 * value (numbers, "NaN", enum names or numbers, base64 bytes, Timestamp,
 * Duration, FieldMask and wrapper strings), "true"/"false" for bools, the
 * text itself for strings. A repeated field gets the value appended; a
 * singular one set. Called by the transcoder for each bound value. */
mw_json_status mw_json_field_from_text(upb_Message *msg, const upb_FieldDef *f, const char *text,
                                       size_t len, const upb_DefPool *pool, upb_Arena *a,
                                       char *err, size_t errlen);

/* The JSON value json (a request body) into field f of msg, as if it were
 * {"f": json}; the field's previous value is replaced (a message field's
 * fields merged into). Called by the transcoder for body: "field". */
mw_json_status mw_json_decode_field(const char *json, size_t len, upb_Message *msg,
                                    const upb_FieldDef *f, const upb_DefPool *pool, int options,
                                    const mw_json_limits *limits, upb_Arena *a, char *err,
                                    size_t errlen);

/* The JSON of field f's value in msg alone (a message, array, map or
 * scalar; its default when unset), NUL-terminated in a. Called by the
 * transcoder for response_body. */
mw_json_status mw_json_encode_field(const upb_Message *msg, const upb_FieldDef *f,
                                    const upb_DefPool *pool, int options,
                                    const mw_json_limits *limits, upb_Arena *a, const char **out,
                                    size_t *out_len, char *err, size_t errlen);

#endif
