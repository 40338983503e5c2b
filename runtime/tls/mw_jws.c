/* JWS verification with OpenSSL 3 (EVP): see mw_jws.h. */
#include "tls/mw_jws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

struct mw_jws_key {
  mw_jws_kind kind;
  EVP_PKEY *pkey;       /* RSA and EC: the key's own reference */
  unsigned char *secret; /* OCT: the key's own copy */
  size_t secret_len;
};

static void set_err(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
}

/* ---- base64url ------------------------------------------------------------ */

size_t mw_b64url_max(size_t len) { return len / 4 * 3 + 3; }

static int b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

long mw_b64url_decode(const char *in, size_t len, unsigned char *out) {
  if (len % 4 == 1) return -1; /* one character cannot carry a byte */
  size_t o = 0;
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; i++) {
    int v = b64url_value((unsigned char)in[i]);
    if (v < 0) return -1;
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  /* The unused low bits of the last character must be zero, so that each
   * byte string has exactly one encoding (no malleable tokens). */
  if (acc != 0) return -1;
  return (long)o;
}

/* ---- keys ------------------------------------------------------------------ */

static mw_jws_key *wrap_pkey(EVP_PKEY *pkey, char *err, size_t errlen) {
  mw_jws_kind kind;
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    if (EVP_PKEY_get_bits(pkey) < MW_JWS_MIN_RSA_BITS) {
      set_err(err, errlen, "RSA key shorter than 2048 bits");
      EVP_PKEY_free(pkey);
      return NULL;
    }
    kind = MW_JWS_RSA;
  } else if (EVP_PKEY_is_a(pkey, "EC")) {
    char group[64] = "";
    size_t glen = 0;
    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                        sizeof group, &glen) ||
        strcmp(group, "prime256v1") != 0) {
      set_err(err, errlen, "EC key not on P-256 (only ES256 is supported)");
      EVP_PKEY_free(pkey);
      return NULL;
    }
    kind = MW_JWS_EC;
  } else {
    set_err(err, errlen, "key is neither RSA nor EC P-256");
    EVP_PKEY_free(pkey);
    return NULL;
  }
  mw_jws_key *k = calloc(1, sizeof *k);
  if (!k) {
    set_err(err, errlen, "out of memory");
    EVP_PKEY_free(pkey);
    return NULL;
  }
  k->kind = kind;
  k->pkey = pkey;
  return k;
}

mw_jws_key *mw_jws_key_pem(const char *pem, size_t len, char *err, size_t errlen) {
  if (len > MW_JWS_MAX_PEM) {
    set_err(err, errlen, "PEM text larger than 64 KiB");
    return NULL;
  }
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio) {
    set_err(err, errlen, "out of memory");
    return NULL;
  }
  EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
  if (!pkey) {
    /* A certificate's public key is the other form keys are handed out in. */
    ERR_clear_error();
    (void)BIO_reset(bio);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (x) pkey = X509_get_pubkey(x);
    X509_free(x);
  }
  BIO_free(bio);
  ERR_clear_error();
  if (!pkey) {
    set_err(err, errlen, "not a PEM public key or certificate");
    return NULL;
  }
  return wrap_pkey(pkey, err, errlen);
}

/* Builds a public key of type ("RSA" or "EC") from params. */
static EVP_PKEY *from_params(const char *type, OSSL_PARAM *params) {
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
  EVP_PKEY *pkey = NULL;
  if (ctx && EVP_PKEY_fromdata_init(ctx) > 0)
    if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) pkey = NULL;
  EVP_PKEY_CTX_free(ctx);
  return pkey;
}

mw_jws_key *mw_jws_key_rsa(const unsigned char *n, size_t nlen,
                           const unsigned char *e, size_t elen, char *err,
                           size_t errlen) {
  if (nlen == 0 || elen == 0 || nlen > 2048 || elen > 16) {
    set_err(err, errlen, "RSA JWK: n or e missing or out of range");
    return NULL;
  }
  BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
  OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM *params = NULL;
  EVP_PKEY *pkey = NULL;
  if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) &&
      (params = OSSL_PARAM_BLD_to_param(bld)) != NULL)
    pkey = from_params("RSA", params);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn);
  BN_free(be);
  ERR_clear_error();
  if (!pkey) {
    set_err(err, errlen, "RSA JWK: n and e do not make a key");
    return NULL;
  }
  return wrap_pkey(pkey, err, errlen);
}

mw_jws_key *mw_jws_key_ec_p256(const unsigned char *x, size_t xlen,
                               const unsigned char *y, size_t ylen, char *err,
                               size_t errlen) {
  if (xlen != 32 || ylen != 32) {
    set_err(err, errlen, "EC JWK: x and y must be 32 bytes each (P-256)");
    return NULL;
  }
  unsigned char point[65];
  point[0] = 0x04; /* uncompressed */
  memcpy(point + 1, x, 32);
  memcpy(point + 33, y, 32);
  char group[] = "prime256v1";
  OSSL_PARAM params[] = {
      OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point),
      OSSL_PARAM_END};
  EVP_PKEY *pkey = from_params("EC", params);
  if (pkey) {
    /* fromdata takes the point as given: check it lies on the curve, or an
     * invalid-curve point could leak through ECDSA verification. */
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    int ok = c && EVP_PKEY_public_check(c) > 0;
    EVP_PKEY_CTX_free(c);
    if (!ok) {
      EVP_PKEY_free(pkey);
      pkey = NULL;
    }
  }
  ERR_clear_error();
  if (!pkey) {
    set_err(err, errlen, "EC JWK: x and y are not a point of P-256");
    return NULL;
  }
  return wrap_pkey(pkey, err, errlen);
}

mw_jws_key *mw_jws_key_secret(const unsigned char *s, size_t len, char *err,
                              size_t errlen) {
  if (len == 0 || len > MW_JWS_MAX_SECRET) {
    set_err(err, errlen, "secret empty or longer than 4096 bytes");
    return NULL;
  }
  mw_jws_key *k = calloc(1, sizeof *k);
  if (k) k->secret = malloc(len);
  if (!k || !k->secret) {
    free(k);
    set_err(err, errlen, "out of memory");
    return NULL;
  }
  memcpy(k->secret, s, len);
  k->secret_len = len;
  k->kind = MW_JWS_OCT;
  return k;
}

void mw_jws_wipe(void *p, size_t n) {
  if (p && n) OPENSSL_cleanse(p, n);
}

void mw_jws_key_free(mw_jws_key *k) {
  if (!k) return;
  EVP_PKEY_free(k->pkey);
  if (k->secret) OPENSSL_cleanse(k->secret, k->secret_len);
  free(k->secret);
  free(k);
}

mw_jws_kind mw_jws_key_kind(const mw_jws_key *k) { return k->kind; }

const char *mw_jws_kind_alg(mw_jws_kind kind) {
  switch (kind) {
  case MW_JWS_RSA: return "RS256";
  case MW_JWS_EC: return "ES256";
  case MW_JWS_OCT: return "HS256";
  }
  return "?";
}

/* ---- verification ------------------------------------------------------------ */

int mw_jws_equal(const void *a, const void *b, size_t len) {
  return CRYPTO_memcmp(a, b, len) == 0;
}

static mw_jws_result verify_hmac(const mw_jws_key *k, const unsigned char *input,
                                 size_t inlen, const unsigned char *sig,
                                 size_t siglen) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  if (!HMAC(EVP_sha256(), k->secret, (int)k->secret_len, input, inlen, mac, &maclen))
    return MW_JWS_ERROR;
  if (siglen != maclen) return MW_JWS_BAD_SIGNATURE;
  int eq = mw_jws_equal(mac, sig, maclen);
  OPENSSL_cleanse(mac, sizeof mac);
  return eq ? MW_JWS_VALID : MW_JWS_BAD_SIGNATURE;
}

/* Turns JWS's r||s into the DER ECDSA-Sig-Value EVP expects; *der is
 * OpenSSL's (OPENSSL_free). Returns its length, 0 on failure. */
static int es256_der(const unsigned char *sig, unsigned char **der) {
  ECDSA_SIG *es = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
  int len = 0;
  if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
    r = s = NULL; /* es owns them now */
    len = i2d_ECDSA_SIG(es, der);
    if (len < 0) len = 0;
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(es);
  return len;
}

static mw_jws_result verify_pkey(const mw_jws_key *k, const unsigned char *input,
                                 size_t inlen, const unsigned char *sig,
                                 size_t siglen) {
  unsigned char *der = NULL;
  const unsigned char *s = sig;
  size_t slen = siglen;
  if (k->kind == MW_JWS_EC) {
    if (siglen != 64) return MW_JWS_BAD_SIGNATURE;
    int dlen = es256_der(sig, &der);
    if (!dlen) return MW_JWS_ERROR;
    s = der;
    slen = (size_t)dlen;
  }
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  mw_jws_result res = MW_JWS_ERROR;
  if (md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k->pkey) > 0) {
    int rc = EVP_DigestVerify(md, s, slen, input, inlen);
    res = rc == 1 ? MW_JWS_VALID : MW_JWS_BAD_SIGNATURE;
  }
  EVP_MD_CTX_free(md);
  OPENSSL_free(der);
  ERR_clear_error();
  return res;
}

mw_jws_result mw_jws_verify(const mw_jws_key *k, const char *alg,
                            const unsigned char *input, size_t inlen,
                            const unsigned char *sig, size_t siglen) {
  /* The key's kind names the one algorithm; anything else (none, HS256
   * against an RSA key, RS384...) is refused before any crypto runs. */
  if (!alg || strcmp(alg, mw_jws_kind_alg(k->kind)) != 0) return MW_JWS_ALG_MISMATCH;
  if (k->kind == MW_JWS_OCT) return verify_hmac(k, input, inlen, sig, siglen);
  return verify_pkey(k, input, inlen, sig, siglen);
}
