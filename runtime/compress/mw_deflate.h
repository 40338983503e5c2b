/* Compressing a response body or message (zlib; no gRPC), for the HTTP
 * listener's Connect answers when the client accepts gzip or deflate (gRPC
 * calls are compressed by gRPC core itself, core/mw_compress.h). */
#ifndef MW_DEFLATE_H
#define MW_DEFLATE_H

#include <stddef.h>

#include "compress/mw_inflate.h"

/* Compresses in[0..len) as one stream of coding at zlib's default level.
 * Returns 0 with *out a malloc'd buffer (free it) of *out_len bytes, or -1
 * when memory ran out (nothing left allocated). */
int mw_deflate(mw_coding coding, const void *in, size_t len, char **out, size_t *out_len);

#endif
