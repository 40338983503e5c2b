/* The bounded inflater: round trips in any chunking, the limit to the byte,
 * bombs stopped at the limit, and every kind of corrupt stream refused. */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "compress/mw_inflate.h"
#include "mw_test.h"

/* data compressed as coding (level 6) into a malloc'd buffer. */
static unsigned char *compress_as(mw_coding coding, const void *data,
                                  size_t len, size_t *out_len) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (deflateInit2(&zs, 6, Z_DEFLATED, coding == MW_CODING_GZIP ? 31 : 15, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    return NULL;
  size_t cap = deflateBound(&zs, (uLong)len);
  unsigned char *out = malloc(cap);
  zs.next_in = (Bytef *)data;
  zs.avail_in = (uInt)len;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  int r = deflate(&zs, Z_FINISH);
  *out_len = zs.total_out;
  deflateEnd(&zs);
  if (r != Z_STREAM_END) {
    free(out);
    return NULL;
  }
  return out;
}

static mw_inflate_result one(mw_coding coding, const void *in, size_t len,
                             size_t max, char **out, size_t *out_len) {
  mw_inflate_chunk c = {in, len};
  return mw_inflate(coding, &c, 1, max, out, out_len);
}

/* Text that compresses somewhat, like a message with repeated fields. */
static char *sample(size_t len) {
  char *s = malloc(len ? len : 1);
  unsigned x = 12345;
  for (size_t i = 0; i < len; i++) {
    x = x * 1103515245u + 12345u;
    s[i] = (char)((i % 7 == 0) ? (int)((x >> 16) & 0xff) : (int)('a' + i % 13));
  }
  return s;
}

static void test_round_trip(void) {
  static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 70000, 300000};
  for (int coding = MW_CODING_DEFLATE; coding <= MW_CODING_GZIP; coding++) {
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      char *data = sample(sizes[i]);
      size_t zlen;
      unsigned char *z = compress_as((mw_coding)coding, data, sizes[i], &zlen);
      MW_CHECK(z != NULL);
      char *out;
      size_t out_len;
      MW_CHECK_INT(one((mw_coding)coding, z, zlen, 1 << 20, &out, &out_len),
                   MW_INFLATE_OK);
      MW_CHECK(out != NULL);
      MW_CHECK_INT(out_len, sizes[i]);
      MW_CHECK(out && memcmp(out, data, sizes[i]) == 0);
      free(out);
      free(z);
      free(data);
    }
  }
}

/* A message arrives in slices: every split point, and empty slices. */
static void test_chunks(void) {
  char *data = sample(5000);
  size_t zlen;
  unsigned char *z = compress_as(MW_CODING_GZIP, data, 5000, &zlen);
  int all_ok = 1;
  for (size_t cut = 0; cut <= zlen; cut++) {
    mw_inflate_chunk c[4] = {{z, cut}, {NULL, 0}, {z + cut, zlen - cut}, {NULL, 0}};
    char *out;
    size_t out_len;
    mw_inflate_result r = mw_inflate(MW_CODING_GZIP, c, 4, 5000, &out, &out_len);
    if (r != MW_INFLATE_OK || out_len != 5000 || memcmp(out, data, 5000) != 0)
      all_ok = 0;
    free(out);
  }
  MW_CHECK(all_ok);
  /* One byte per chunk. */
  mw_inflate_chunk *bytes = malloc(zlen * sizeof *bytes);
  for (size_t i = 0; i < zlen; i++) bytes[i] = (mw_inflate_chunk){z + i, 1};
  char *out;
  size_t out_len;
  MW_CHECK_INT(mw_inflate(MW_CODING_GZIP, bytes, zlen, 5000, &out, &out_len),
               MW_INFLATE_OK);
  MW_CHECK_INT(out_len, 5000);
  MW_CHECK(out && memcmp(out, data, 5000) == 0);
  free(out);
  free(bytes);
  free(z);
  free(data);
}

static void test_limit_to_the_byte(void) {
  char *data = sample(10000);
  size_t zlen;
  unsigned char *z = compress_as(MW_CODING_DEFLATE, data, 10000, &zlen);
  char *out = (char *)1;
  size_t out_len = 7;
  MW_CHECK_INT(one(MW_CODING_DEFLATE, z, zlen, 10000, &out, &out_len), MW_INFLATE_OK);
  MW_CHECK_INT(out_len, 10000);
  free(out);
  out = (char *)1;
  MW_CHECK_INT(one(MW_CODING_DEFLATE, z, zlen, 9999, &out, &out_len),
               MW_INFLATE_TOO_LARGE);
  MW_CHECK(out == NULL);
  MW_CHECK_INT(out_len, 0);
  MW_CHECK_INT(one(MW_CODING_DEFLATE, z, zlen, 0, &out, &out_len),
               MW_INFLATE_TOO_LARGE);
  free(z);
  /* An empty message fits any limit, 0 included. */
  z = compress_as(MW_CODING_GZIP, "", 0, &zlen);
  MW_CHECK_INT(one(MW_CODING_GZIP, z, zlen, 0, &out, &out_len), MW_INFLATE_OK);
  MW_CHECK(out != NULL);
  MW_CHECK_INT(out_len, 0);
  free(out);
  free(z);
  free(data);
}

/* 256 MiB of zeros in about 250 KB: stopped at the limit, at once. */
static void test_bomb(void) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  MW_CHECK_INT(deflateInit2(&zs, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
  size_t cap = 1 << 20;
  unsigned char *z = malloc(cap);
  static unsigned char zeros[1 << 16];
  zs.next_out = z;
  zs.avail_out = (uInt)cap;
  for (int i = 0; i < 4096; i++) {
    zs.next_in = zeros;
    zs.avail_in = sizeof zeros;
    deflate(&zs, i == 4095 ? Z_FINISH : Z_NO_FLUSH);
  }
  size_t zlen = zs.total_out;
  deflateEnd(&zs);
  MW_CHECK(zlen < 300000);
  char *out;
  size_t out_len;
  MW_CHECK_INT(one(MW_CODING_GZIP, z, zlen, 1 << 20, &out, &out_len),
               MW_INFLATE_TOO_LARGE);
  MW_CHECK(out == NULL);
  free(z);
}

static void test_corrupt(void) {
  char *data = sample(3000);
  size_t zlen;
  unsigned char *z = compress_as(MW_CODING_GZIP, data, 3000, &zlen);
  char *out;
  size_t out_len;
  /* Garbage, and nothing at all. */
  MW_CHECK_INT(one(MW_CODING_GZIP, "not gzip at all", 15, 1 << 20, &out, &out_len),
               MW_INFLATE_CORRUPT);
  MW_CHECK(out == NULL);
  MW_CHECK_INT(one(MW_CODING_GZIP, "", 0, 1 << 20, &out, &out_len), MW_INFLATE_CORRUPT);
  MW_CHECK_INT(mw_inflate(MW_CODING_DEFLATE, NULL, 0, 1 << 20, &out, &out_len),
               MW_INFLATE_CORRUPT);
  /* Cut short, anywhere. */
  int all_cut = 1;
  for (size_t cut = 0; cut < zlen; cut++) {
    if (one(MW_CODING_GZIP, z, cut, 1 << 20, &out, &out_len) != MW_INFLATE_CORRUPT)
      all_cut = 0;
  }
  MW_CHECK(all_cut);
  /* Bytes after the end of the stream (in the same chunk and in another). */
  unsigned char *longer = malloc(zlen + 1);
  memcpy(longer, z, zlen);
  longer[zlen] = 0;
  MW_CHECK_INT(one(MW_CODING_GZIP, longer, zlen + 1, 1 << 20, &out, &out_len),
               MW_INFLATE_CORRUPT);
  mw_inflate_chunk two[2] = {{z, zlen}, {"x", 1}};
  MW_CHECK_INT(mw_inflate(MW_CODING_GZIP, two, 2, 1 << 20, &out, &out_len),
               MW_INFLATE_CORRUPT);
  /* The gzip trailer's CRC and length are checked. */
  memcpy(longer, z, zlen);
  longer[zlen - 8] ^= 1;
  MW_CHECK_INT(one(MW_CODING_GZIP, longer, zlen, 1 << 20, &out, &out_len),
               MW_INFLATE_CORRUPT);
  memcpy(longer, z, zlen);
  longer[zlen - 1] ^= 1;
  MW_CHECK_INT(one(MW_CODING_GZIP, longer, zlen, 1 << 20, &out, &out_len),
               MW_INFLATE_CORRUPT);
  /* The wrong coding: gzip is not zlib's format, nor the reverse. */
  MW_CHECK_INT(one(MW_CODING_DEFLATE, z, zlen, 1 << 20, &out, &out_len),
               MW_INFLATE_CORRUPT);
  size_t dlen;
  unsigned char *d = compress_as(MW_CODING_DEFLATE, data, 3000, &dlen);
  MW_CHECK_INT(one(MW_CODING_GZIP, d, dlen, 1 << 20, &out, &out_len),
               MW_INFLATE_CORRUPT);
  /* zlib's Adler-32 is checked too. */
  d[dlen - 1] ^= 1;
  MW_CHECK_INT(one(MW_CODING_DEFLATE, d, dlen, 1 << 20, &out, &out_len),
               MW_INFLATE_CORRUPT);
  /* A coding that is neither. */
  MW_CHECK_INT(one((mw_coding)0, z, zlen, 1 << 20, &out, &out_len), MW_INFLATE_CORRUPT);
  MW_CHECK_STR(mw_inflate_result_text(MW_INFLATE_CORRUPT), "corrupt compressed data");
  free(d);
  free(longer);
  free(z);
  free(data);
}

int main(void) {
  MW_RUN(test_round_trip);
  MW_RUN(test_chunks);
  MW_RUN(test_limit_to_the_byte);
  MW_RUN(test_bomb);
  MW_RUN(test_corrupt);
  return mw_test_done();
}
