/* Inflating compressed request messages in bounded steps (zlib; no gRPC).
 * gRPC core 1.51 inflates a whole message before it compares its size with
 * the receive limit, so a small gzip message can cost gigabytes; here the
 * output is capped as it grows: a message that would inflate past max stops
 * there, having cost at most about max bytes (plus zlib's 40 KB of state). */
#ifndef MW_INFLATE_H
#define MW_INFLATE_H

#include <stddef.h>

/* The codings of grpc-encoding that zlib reads. deflate is the zlib format
 * (RFC 1950), as gRPC sends it; gzip is RFC 1952. */
typedef enum { MW_CODING_DEFLATE = 1, MW_CODING_GZIP = 2 } mw_coding;

typedef enum {
  MW_INFLATE_OK = 0,
  MW_INFLATE_TOO_LARGE, /* the message inflates past max */
  MW_INFLATE_CORRUPT,   /* not a valid stream of the coding, truncated, or
                           followed by bytes after its end */
  MW_INFLATE_NOMEM
} mw_inflate_result;

/* A piece of the compressed message (a message arrives in several). */
typedef struct mw_inflate_chunk {
  const void *data;
  size_t len;
} mw_inflate_chunk;

/* Inflates the concatenation of in[0..n) as one stream of coding. On
 * MW_INFLATE_OK, *out is a malloc'd buffer (never NULL, free it) holding
 * *out_len <= max bytes; on any other result nothing is left allocated and
 * *out is NULL. */
mw_inflate_result mw_inflate(mw_coding coding, const mw_inflate_chunk *in,
                             size_t n, size_t max, char **out,
                             size_t *out_len);

/* What a result means, for messages ("ok", "corrupt compressed data", ...). */
const char *mw_inflate_result_text(mw_inflate_result r);

#endif
