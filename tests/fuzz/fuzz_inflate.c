/* The bounded inflater against zlib inflating the same bytes in one piece:
 * the first input byte picks the coding and the limit, the second how the
 * rest is cut into chunks. Whatever the chunks and the buffer growth, the
 * outcome must be the reference's: the same bytes, TOO_LARGE exactly when
 * the reference passes the limit, CORRUPT exactly when it fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "compress/mw_inflate.h"

/* zlib in one call with room for max + 1 bytes: the expected result. */
static mw_inflate_result reference(mw_coding coding, const uint8_t *in,
                                   size_t len, size_t max, uint8_t *out,
                                   size_t *out_len) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, coding == MW_CODING_GZIP ? 31 : 15) != Z_OK) abort();
  zs.next_in = (Bytef *)in;
  zs.avail_in = (uInt)len;
  zs.next_out = out;
  zs.avail_out = (uInt)(max + 1);
  int ret;
  do {
    ret = inflate(&zs, Z_NO_FLUSH);
  } while (ret == Z_OK && zs.avail_out > 0 && zs.avail_in > 0);
  if (ret == Z_OK && zs.avail_out > 0) ret = inflate(&zs, Z_NO_FLUSH);
  *out_len = zs.total_out;
  mw_inflate_result r;
  if (zs.total_out > max) r = MW_INFLATE_TOO_LARGE;
  else if (ret == Z_STREAM_END && zs.avail_in == 0) r = MW_INFLATE_OK;
  else r = MW_INFLATE_CORRUPT;
  inflateEnd(&zs);
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  mw_coding coding = (data[0] & 1) ? MW_CODING_GZIP : MW_CODING_DEFLATE;
  size_t max = (size_t)1 << ((data[0] >> 1) % 21); /* 1 B .. 1 MiB */
  if (data[0] & 0x80) max -= 1; /* and the sizes just below */
  size_t piece = (size_t)data[1] + 1;
  const uint8_t *in = data + 2;
  size_t len = size - 2;

  size_t n = len / piece + 2;
  mw_inflate_chunk *chunks = calloc(n, sizeof *chunks);
  size_t k = 0;
  for (size_t off = 0; off < len; off += piece) {
    chunks[k].data = in + off;
    chunks[k].len = len - off < piece ? len - off : piece;
    k++;
  }
  chunks[k++] = (mw_inflate_chunk){NULL, 0}; /* an empty slice at the end */

  char *out;
  size_t out_len;
  mw_inflate_result r = mw_inflate(coding, chunks, k, max, &out, &out_len);
  uint8_t *want = malloc(max + 1);
  size_t want_len;
  mw_inflate_result expect = reference(coding, in, len, max, want, &want_len);
  if (r != expect) abort();
  if (r == MW_INFLATE_OK) {
    if (!out || out_len != want_len || out_len > max) abort();
    if (out_len && memcmp(out, want, out_len) != 0) abort();
  } else if (out) {
    abort();
  }
  free(out);
  free(want);
  free(chunks);
  return 0;
}
