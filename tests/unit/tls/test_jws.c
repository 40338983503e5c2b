/* Unit tests for tls/mw_jws: base64url, keys from PEM and JWK parameters,
 * and signatures made here with OpenSSL verified (or refused) for each
 * algorithm, including the ones a key must not accept. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "mw_test.h"
#include "tls/mw_jws.h"

static const char INPUT[] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";

static char *pub_pem(EVP_PKEY *k, size_t *len) {
  BIO *b = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(b, k);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  char *out = malloc((size_t)n + 1);
  memcpy(out, p, (size_t)n);
  out[n] = 0;
  *len = (size_t)n;
  BIO_free(b);
  return out;
}

static size_t sign(EVP_PKEY *k, unsigned char *sig, size_t cap) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t len = cap;
  EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k);
  EVP_DigestSign(md, sig, &len, (const unsigned char *)INPUT, strlen(INPUT));
  EVP_MD_CTX_free(md);
  return len;
}

/* DER ECDSA signature -> JWS r||s. */
static void der_to_raw(const unsigned char *der, size_t len, unsigned char raw[64]) {
  ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &der, (long)len);
  const BIGNUM *r, *ss;
  ECDSA_SIG_get0(s, &r, &ss);
  BN_bn2binpad(r, raw, 32);
  BN_bn2binpad(ss, raw + 32, 32);
  ECDSA_SIG_free(s);
}

static mw_jws_key *load(EVP_PKEY *k, char *err) {
  size_t len;
  char *pem = pub_pem(k, &len);
  mw_jws_key *jk = mw_jws_key_pem(pem, len, err, 160);
  free(pem);
  return jk;
}

static void test_b64url(void) {
  unsigned char out[16];
  MW_CHECK_INT(mw_b64url_decode("", 0, out), 0);
  MW_CHECK_INT(mw_b64url_decode("Zg", 2, out), 1);
  MW_CHECK(out[0] == 'f');
  MW_CHECK_INT(mw_b64url_decode("Zm9vYg", 6, out), 4);
  MW_CHECK(memcmp(out, "foob", 4) == 0);
  MW_CHECK_INT(mw_b64url_decode("-_8", 3, out), 2);
  MW_CHECK(out[0] == 0xfb && out[1] == 0xff);
  MW_CHECK_INT(mw_b64url_decode("Zg==", 4, out), -1); /* padding */
  MW_CHECK_INT(mw_b64url_decode("Z+8", 3, out), -1);  /* base64, not url */
  MW_CHECK_INT(mw_b64url_decode("Z", 1, out), -1);    /* partial group */
  MW_CHECK_INT(mw_b64url_decode("Zh", 2, out), -1);   /* nonzero spare bits */
  MW_CHECK(mw_b64url_max(6) >= 4);
}

static void test_rsa(void) {
  char err[160];
  EVP_PKEY *k = EVP_RSA_gen(2048), *other = EVP_RSA_gen(2048);
  mw_jws_key *jk = load(k, err);
  MW_CHECK(jk != NULL);
  MW_CHECK_INT(mw_jws_key_kind(jk), MW_JWS_RSA);
  unsigned char sig[512];
  size_t n = sign(k, sig, sizeof sig);
  const unsigned char *in = (const unsigned char *)INPUT;
  size_t inlen = strlen(INPUT);
  MW_CHECK_INT(mw_jws_verify(jk, "RS256", in, inlen, sig, n), MW_JWS_VALID);
  MW_CHECK_INT(mw_jws_verify(jk, "RS256", in, inlen - 1, sig, n), MW_JWS_BAD_SIGNATURE);
  sig[10] ^= 1;
  MW_CHECK_INT(mw_jws_verify(jk, "RS256", in, inlen, sig, n), MW_JWS_BAD_SIGNATURE);
  MW_CHECK_INT(mw_jws_verify(jk, "HS256", in, inlen, sig, n), MW_JWS_ALG_MISMATCH);
  MW_CHECK_INT(mw_jws_verify(jk, "none", in, inlen, sig, 0), MW_JWS_ALG_MISMATCH);
  MW_CHECK_INT(mw_jws_verify(jk, "RS512", in, inlen, sig, n), MW_JWS_ALG_MISMATCH);
  MW_CHECK_INT(mw_jws_verify(jk, "ES256", in, inlen, sig, n), MW_JWS_ALG_MISMATCH);
  /* Algorithm confusion: HMAC keyed with the public key's PEM text. An
   * RSA key never computes an HMAC, so this cannot verify. */
  size_t plen;
  char *pem = pub_pem(k, &plen);
  unsigned char mac[32];
  unsigned int maclen;
  HMAC(EVP_sha256(), pem, (int)plen, in, inlen, mac, &maclen);
  MW_CHECK_INT(mw_jws_verify(jk, "HS256", in, inlen, mac, maclen), MW_JWS_ALG_MISMATCH);
  free(pem);

  /* The same key from its JWK parameters. */
  BIGNUM *bn = NULL, *be = NULL;
  EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &bn);
  EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &be);
  unsigned char nb[256], eb[8];
  int nl = BN_bn2bin(bn, nb), el = BN_bn2bin(be, eb);
  mw_jws_key *jwk = mw_jws_key_rsa(nb, (size_t)nl, eb, (size_t)el, err, sizeof err);
  MW_CHECK(jwk != NULL);
  sig[10] ^= 1;
  MW_CHECK_INT(mw_jws_verify(jwk, "RS256", in, inlen, sig, n), MW_JWS_VALID);
  mw_jws_key *jo = load(other, err);
  MW_CHECK_INT(mw_jws_verify(jo, "RS256", in, inlen, sig, n), MW_JWS_BAD_SIGNATURE);
  MW_CHECK(mw_jws_key_rsa(nb, 0, eb, (size_t)el, err, sizeof err) == NULL);
  MW_CHECK(mw_jws_key_rsa(nb, 100, eb, (size_t)el, err, sizeof err) == NULL); /* 800 bits */
  MW_CHECK_CONTAINS(err, "2048");
  BN_free(bn);
  BN_free(be);
  mw_jws_key_free(jwk);
  mw_jws_key_free(jo);
  mw_jws_key_free(jk);
  EVP_PKEY_free(k);
  EVP_PKEY_free(other);

  EVP_PKEY *small = EVP_RSA_gen(1024);
  MW_CHECK(load(small, err) == NULL);
  MW_CHECK_CONTAINS(err, "shorter than 2048");
  EVP_PKEY_free(small);
}

static void test_ec(void) {
  char err[160];
  EVP_PKEY *k = EVP_EC_gen("P-256");
  mw_jws_key *jk = load(k, err);
  MW_CHECK(jk != NULL);
  MW_CHECK_INT(mw_jws_key_kind(jk), MW_JWS_EC);
  unsigned char der[128], raw[64];
  size_t n = sign(k, der, sizeof der);
  der_to_raw(der, n, raw);
  const unsigned char *in = (const unsigned char *)INPUT;
  size_t inlen = strlen(INPUT);
  MW_CHECK_INT(mw_jws_verify(jk, "ES256", in, inlen, raw, 64), MW_JWS_VALID);
  MW_CHECK_INT(mw_jws_verify(jk, "ES256", in, inlen, der, n), MW_JWS_BAD_SIGNATURE); /* DER is not JWS */
  MW_CHECK_INT(mw_jws_verify(jk, "RS256", in, inlen, raw, 64), MW_JWS_ALG_MISMATCH);
  raw[40] ^= 1;
  MW_CHECK_INT(mw_jws_verify(jk, "ES256", in, inlen, raw, 64), MW_JWS_BAD_SIGNATURE);
  raw[40] ^= 1;

  unsigned char pt[65];
  size_t ptlen = 0;
  EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &ptlen);
  MW_CHECK_INT(ptlen, 65);
  mw_jws_key *jwk = mw_jws_key_ec_p256(pt + 1, 32, pt + 33, 32, err, sizeof err);
  MW_CHECK(jwk != NULL);
  MW_CHECK_INT(mw_jws_verify(jwk, "ES256", in, inlen, raw, 64), MW_JWS_VALID);
  pt[40] ^= 1; /* off the curve */
  MW_CHECK(mw_jws_key_ec_p256(pt + 1, 32, pt + 33, 32, err, sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "not a point");
  MW_CHECK(mw_jws_key_ec_p256(pt + 1, 31, pt + 33, 32, err, sizeof err) == NULL);
  mw_jws_key_free(jwk);
  mw_jws_key_free(jk);
  EVP_PKEY_free(k);

  EVP_PKEY *p384 = EVP_EC_gen("P-384");
  MW_CHECK(load(p384, err) == NULL);
  MW_CHECK_CONTAINS(err, "P-256");
  EVP_PKEY_free(p384);
}

static void test_hmac(void) {
  char err[160];
  const char secret[] = "shared-secret";
  mw_jws_key *k = mw_jws_key_secret((const unsigned char *)secret, strlen(secret), err, sizeof err);
  MW_CHECK(k != NULL);
  MW_CHECK_STR(mw_jws_kind_alg(mw_jws_key_kind(k)), "HS256");
  const unsigned char *in = (const unsigned char *)INPUT;
  size_t inlen = strlen(INPUT);
  unsigned char mac[32];
  unsigned int maclen;
  HMAC(EVP_sha256(), secret, (int)strlen(secret), in, inlen, mac, &maclen);
  MW_CHECK_INT(mw_jws_verify(k, "HS256", in, inlen, mac, maclen), MW_JWS_VALID);
  MW_CHECK_INT(mw_jws_verify(k, "HS256", in, inlen, mac, maclen - 1), MW_JWS_BAD_SIGNATURE);
  MW_CHECK_INT(mw_jws_verify(k, "HS384", in, inlen, mac, maclen), MW_JWS_ALG_MISMATCH);
  MW_CHECK_INT(mw_jws_verify(k, NULL, in, inlen, mac, maclen), MW_JWS_ALG_MISMATCH);
  mac[31] ^= 0x80;
  MW_CHECK_INT(mw_jws_verify(k, "HS256", in, inlen, mac, maclen), MW_JWS_BAD_SIGNATURE);
  mw_jws_key_free(k);
  mw_jws_key_free(NULL);
  MW_CHECK(mw_jws_key_secret((const unsigned char *)"", 0, err, sizeof err) == NULL);
  MW_CHECK(mw_jws_equal("abc", "abc", 3));
  MW_CHECK(!mw_jws_equal("abc", "abd", 3));
}

static void test_pem_errors(void) {
  char err[160];
  const char junk[] = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
  MW_CHECK(mw_jws_key_pem(junk, strlen(junk), err, sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "not a PEM public key");
  MW_CHECK(strstr(err, "AAAA") == NULL);
  MW_CHECK(mw_jws_key_pem("", 0, err, sizeof err) == NULL);
}

int main(void) {
  MW_RUN(test_b64url);
  MW_RUN(test_rsa);
  MW_RUN(test_ec);
  MW_RUN(test_hmac);
  MW_RUN(test_pem_errors);
  return mw_test_done();
}
