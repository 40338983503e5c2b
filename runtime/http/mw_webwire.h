/* The wire rules of gRPC-Web and Connect (docs/http.md), as pure
 * functions of bytes: content types, envelopes, base64, timeouts, the
 * status tables, error bodies and trailer frames. No I/O, no h2o, no gRPC:
 * http/mw_web.c calls them per request, tests/unit/http tests them. */
#ifndef MW_WEBWIRE_H
#define MW_WEBWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "base/mw_buf.h"

/* What a request's content type asks for. */
typedef enum mw_web_kind {
  MW_WEB_NONE = 0,     /* not ours: 415 */
  MW_WEB_GRPC_WEB,     /* application/grpc-web[+proto] */
  MW_WEB_GRPC_WEB_TEXT, /* application/grpc-web-text[+proto] (base64) */
  MW_WEB_CONNECT_UNARY, /* application/proto */
  MW_WEB_CONNECT_STREAM, /* application/connect+proto */
  MW_WEB_REST,           /* a google.api.http route (codec/mw_transcode.h): JSON */
} mw_web_kind;

/* Classifies a Content-Type (parameters after ';' ignored, case-blind).
 * *json is set for the +json / application/json forms, whose kind is
 * returned too (the caller decides whether it can serve JSON). */
mw_web_kind mw_web_classify(const char *ct, size_t len, int *json);

/* The envelopes of a request body: flags u8 | length u32 big-endian |
 * payload, one after another. */
typedef struct mw_web_frame {
  uint8_t flags;
  const char *data;
  size_t len;
} mw_web_frame;
/* Splits body into at most max frames (into out; NULL: only counts them).
 * Returns the count, or -1
 * with a reason in err when the body ends inside a frame or holds more
 * than max. */
long mw_web_frames(const char *body, size_t len, mw_web_frame *out, size_t max, char *err,
                   size_t errlen);
/* Appends one envelope. */
void mw_web_put_frame(mw_buf *b, uint8_t flags, const char *data, size_t len);

/* Standard base64 (RFC 4648 section 4). Encoding pads when pad is set.
 * Decoding: strict (padded or not as allow_unpadded says; no whitespace);
 * returns the decoded length in out (which holds len*3/4+3 bytes), or -1. */
void mw_web_b64_encode(mw_buf *b, const unsigned char *in, size_t len, int pad);
long mw_web_b64_decode(const char *in, size_t len, unsigned char *out, int allow_unpadded);
/* A grpc-web-text body: concatenated padded base64 chunks (a client may
 * send one per flush), each decoded in turn; -1 when not valid. */
long mw_web_b64_decode_chunks(const char *in, size_t len, unsigned char *out);

/* grpc-timeout ("1..8 digits" + H M S m u n) in seconds; -1 when not valid. */
double mw_web_grpc_timeout(const char *v, size_t len);
/* connect-timeout-ms (1..10 digits) in seconds; -1 when not valid. */
double mw_web_connect_timeout(const char *v, size_t len);

/* The Connect code name of a gRPC status ("invalid_argument"...), and the
 * HTTP status a Connect unary error takes (the google/rpc/code.proto table). */
const char *mw_web_code_name(int code);
int mw_web_code_http(int code);

/* The coding to answer with from an accept list (Accept-Encoding,
 * connect-accept-encoding: "gzip, deflate;q=0.5", "identity"): 2 gzip,
 * else 1 deflate (compress/mw_inflate.h's mw_coding values), else 0. A
 * weight of 0 refuses a coding. v may be NULL. */
int mw_web_accepted_coding(const char *v, size_t len);
/* The same list as a set: bit 1 << MW_CODING_GZIP, bit 1 << MW_CODING_DEFLATE
 * for each coding it accepts. */
int mw_web_accepted_codings(const char *v, size_t len);

/* grpc-message's percent-encoding (the gRPC spec: bytes outside 0x20..0x7e
 * and '%' as %XX). */
void mw_web_percent_encode(mw_buf *b, const char *s, size_t len);

/* Connect's error JSON {"code":..,"message":..,"details":[..]} from a
 * status, its message and a serialized google.rpc.Status (details, may be
 * NULL): each Any becomes {"type":..,"value":<unpadded base64>}. */
void mw_web_error_json(mw_buf *b, int code, const char *msg, size_t msg_len,
                       const char *details, size_t details_len);

#endif
