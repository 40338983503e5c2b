/* Compression in one call: gzip and zlib streams that the bounded inflater
 * reads back to the same bytes, for empty, small,
 * incompressible and large inputs. */
#include <stdlib.h>
#include <string.h>

#include "compress/mw_deflate.h"
#include "compress/mw_inflate.h"
#include "mw_test.h"

static void round_trip(mw_coding coding, const char *data, size_t len) {
  char *z = NULL, *back = NULL;
  size_t zl = 0, bl = 0;
  MW_CHECK_INT(mw_deflate(coding, data, len, &z, &zl), 0);
  MW_CHECK(z != NULL);
  /* the format's magic: gzip 1f 8b, zlib 78 xx */
  if (coding == MW_CODING_GZIP) MW_CHECK(zl > 2 && (unsigned char)z[0] == 0x1f &&
                                         (unsigned char)z[1] == 0x8b);
  else MW_CHECK(zl > 2 && (unsigned char)z[0] == 0x78);
  mw_inflate_chunk in = {z, zl};
  MW_CHECK_INT(mw_inflate(coding, &in, 1, len + 1, &back, &bl), MW_INFLATE_OK);
  MW_CHECK_INT(bl, len);
  MW_CHECK(bl == len && (len == 0 || memcmp(back, data, len) == 0));
  free(back);
  free(z);
}

int main(void) {
  size_t big = 1 << 20;
  char *text = malloc(big), *noise = malloc(4096);
  for (size_t i = 0; i < big; i++) text[i] = "moonwire "[i % 9];
  unsigned x = 12345;
  for (size_t i = 0; i < 4096; i++) {
    x = x * 1103515245u + 12345u;
    noise[i] = (char)(x >> 16);
  }
  for (int c = MW_CODING_DEFLATE; c <= MW_CODING_GZIP; c++) {
    mw_test_current = c == MW_CODING_GZIP ? "gzip" : "deflate";
    round_trip((mw_coding)c, "", 0);
    round_trip((mw_coding)c, "a", 1);
    round_trip((mw_coding)c, noise, 4096); /* grows a little: the bound holds */
    round_trip((mw_coding)c, text, big);
  }
  /* a repetitive megabyte shrinks to a few kilobytes */
  char *z;
  size_t zl;
  MW_CHECK_INT(mw_deflate(MW_CODING_GZIP, text, big, &z, &zl), 0);
  MW_CHECK(zl < 8192);
  free(z);
  free(text);
  free(noise);
  return mw_test_done();
}
