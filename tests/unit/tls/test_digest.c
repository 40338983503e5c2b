/* Unit tests for tls/mw_digest: SHA-256 against FIPS 180-2's vectors, over
 * one part and split into several (empty parts included). */
#include <stdio.h>
#include <string.h>

#include "mw_test.h"
#include "tls/mw_digest.h"

static const char *hex(const unsigned char *d) {
  static char out[2 * MW_SHA256_LEN + 1];
  for (int i = 0; i < MW_SHA256_LEN; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
  return out;
}

static void test_vectors(void) {
  unsigned char d[MW_SHA256_LEN];
  mw_digest_part abc = {"abc", 3};
  MW_CHECK_INT(mw_sha256(&abc, 1, d), 0);
  MW_CHECK_STR(hex(d), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  MW_CHECK_INT(mw_sha256(NULL, 0, d), 0);
  MW_CHECK_STR(hex(d), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  mw_digest_part parts[] = {{two, 10}, {"", 0}, {two + 10, strlen(two) - 10}};
  MW_CHECK_INT(mw_sha256(parts, 3, d), 0);
  MW_CHECK_STR(hex(d), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

/* FIPS 180-2's SHA-1 examples. */
static void test_sha1(void) {
  unsigned char d[MW_SHA1_LEN];
  char out[2 * MW_SHA1_LEN + 1];
  mw_digest_part abc = {"abc", 3};
  MW_CHECK_INT(mw_sha1(&abc, 1, d), 0);
  for (int i = 0; i < MW_SHA1_LEN; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
  MW_CHECK_STR(out, "a9993e364706816aba3e25717850c26c9cd0d89d");
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  mw_digest_part parts[] = {{two, 7}, {two + 7, strlen(two) - 7}};
  MW_CHECK_INT(mw_sha1(parts, 2, d), 0);
  for (int i = 0; i < MW_SHA1_LEN; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
  MW_CHECK_STR(out, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

int main(void) {
  MW_RUN(test_vectors);
  MW_RUN(test_sha1);
  return mw_test_done();
}
