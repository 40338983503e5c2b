/* Compression in one call (compress/mw_deflate.h). */
#include "compress/mw_deflate.h"

#include <limits.h>
#include <stdlib.h>

#include <zlib.h>

int mw_deflate(mw_coding coding, const void *in, size_t len, char **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (len > UINT_MAX / 2) return -1;
  z_stream z = {0};
  /* windowBits 15 is the zlib format (RFC 1950), +16 gzip (RFC 1952). */
  int bits = coding == MW_CODING_GZIP ? 15 + 16 : 15;
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return -1;
  /* deflateBound covers zlib's header; gzip's is 12 bytes more. */
  size_t cap = deflateBound(&z, (uLong)len) + 32;
  char *buf = malloc(cap);
  if (!buf) {
    deflateEnd(&z);
    return -1;
  }
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)len;
  z.next_out = (Bytef *)buf;
  z.avail_out = (uInt)cap;
  int rc = deflate(&z, Z_FINISH);
  size_t n = cap - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    free(buf);
    return -1;
  }
  *out = buf;
  *out_len = n;
  return 0;
}
