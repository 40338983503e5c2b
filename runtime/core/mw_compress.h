/* Compression on gRPC core's side of the call layer. Requests: the server
 * turns core's per-message decompression off (core 1.51 inflates a whole
 * message before it checks the receive limit), so a compressed message
 * arrives as it came off the wire, marked with its algorithm, and is
 * inflated here by compress/mw_inflate, never past the limit. Responses:
 * which calls core compresses, from the config's compression section. */
#ifndef MW_COMPRESS_CORE_H
#define MW_COMPRESS_CORE_H

#include <stddef.h>

#include <grpc/byte_buffer.h>
#include <grpc/compression.h>
#include <grpc/slice.h>

#include "base/mw_status.h"
#include "config/mw_config.h"

/* How one method's responses are compressed. */
typedef struct mw_compress_rule {
  char *path;       /* the method; NULL for the section's own settings */
  int algorithm;    /* MW_CONFIG_COMPRESS_*, never -1 */
  size_t min_bytes; /* smaller messages go uncompressed */
} mw_compress_rule;

/* The config's compression section with each method's gaps filled. */
typedef struct mw_compress_policy {
  mw_compress_rule all;
  mw_compress_rule *methods; /* owned, n_methods long */
  size_t n_methods;
  int active; /* some method's responses are compressed */
} mw_compress_policy;

/* Returns 0, or -1 when out of memory (p then owns nothing). */
int mw_compress_policy_init(mw_compress_policy *p, const mw_config *cfg);
void mw_compress_policy_free(mw_compress_policy *p);

/* The rule of the method at path, or NULL when its responses go
 * uncompressed. */
const mw_compress_rule *mw_compress_policy_for(const mw_compress_policy *p,
                                               const char *path);

/* The level to ask core for in the initial metadata of a call with rule r.
 * Core 1.51 has no way to name the algorithm of a response but a level,
 * which it resolves against the client's grpc-accept-encoding (ranking gzip
 * low and deflate high): gzip asks LOW, deflate HIGH, so each is sent when
 * the client accepts it, the other one when the client accepts only that,
 * and nothing is compressed for a client that accepts neither. */
grpc_compression_level mw_compress_level(const mw_compress_rule *r);

/* The bytes of a received message that core marked compressed (its
 * data.raw.compression is not GRPC_COMPRESS_NONE), inflated into *out (a
 * reference for the caller) within max bytes. Returns MW_STATUS_OK, or the
 * status that ends the call (RESOURCE_EXHAUSTED past max, INVALID_ARGUMENT
 * for corrupt data) with its message in msg. */
mw_status mw_compress_inflate(grpc_byte_buffer *bb, size_t max,
                              grpc_slice *out, char *msg, size_t msglen);

#endif
