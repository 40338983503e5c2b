/* JWS signature verification (RFC 7515/7518) for bearer tokens: base64url,
 * verification keys and the check of one signature. Policy (which claims
 * a token must carry, which key a kid selects, what a failure is called)
 * is the Lua library's (lua/moonwire/jwt.lua); this is the mechanism.
 *
 * A key has one kind, and its kind decides the only algorithm it accepts:
 * an RSA public key RS256, an EC P-256 public key ES256, a shared secret
 * HS256. The caller names the token's alg and mw_jws_verify refuses it when
 * the key's kind does not match, so "none" and algorithm confusion (an
 * HS256 token whose secret is the RSA public key's text) can never verify.
 *
 * The header has no OpenSSL types: lua/ includes it (and only it) from
 * tls/, keeping OpenSSL inside this folder. */
#ifndef MW_JWS_H
#define MW_JWS_H

#include <stddef.h>

typedef enum mw_jws_kind {
  MW_JWS_RSA = 1, /* RS256 */
  MW_JWS_EC = 2,  /* ES256 (P-256 only) */
  MW_JWS_OCT = 3  /* HS256 */
} mw_jws_kind;

/* Largest input mw_jws_key_pem reads, and the largest secret. */
#define MW_JWS_MAX_PEM (64u << 10)
#define MW_JWS_MAX_SECRET 4096u
/* RSA keys below this many bits are refused (RFC 7518 section 3.3). */
#define MW_JWS_MIN_RSA_BITS 2048

typedef struct mw_jws_key mw_jws_key;

/* Decodes base64url without padding (RFC 7515 section 2; "=" is refused,
 * as are characters outside the alphabet and a trailing partial group of
 * one character) into out, which holds at least mw_b64url_max(len) bytes.
 * Returns the decoded length, or -1 on malformed input. */
size_t mw_b64url_max(size_t len);
long mw_b64url_decode(const char *in, size_t len, unsigned char *out);

/* Keys. Each constructor returns a key the caller owns (free it with
 * mw_jws_key_free, which accepts NULL), or NULL with err (errlen bytes,
 * NUL-terminated) saying why. Messages never contain key material. */

/* A PEM public key ("-----BEGIN PUBLIC KEY-----", SubjectPublicKeyInfo),
 * or the key of a PEM certificate (not checked as a certificate), of RSA (>= MW_JWS_MIN_RSA_BITS) or EC P-256. */
mw_jws_key *mw_jws_key_pem(const char *pem, size_t len, char *err, size_t errlen);
/* An RSA key from its JWK parameters n and e (base64url-decoded bytes,
 * big-endian). */
mw_jws_key *mw_jws_key_rsa(const unsigned char *n, size_t nlen,
                           const unsigned char *e, size_t elen, char *err,
                           size_t errlen);
/* An EC P-256 key from its JWK coordinates x and y (32 bytes each). The
 * point must be on the curve. */
mw_jws_key *mw_jws_key_ec_p256(const unsigned char *x, size_t xlen,
                               const unsigned char *y, size_t ylen, char *err,
                               size_t errlen);
/* A shared secret (copied; at least 1 and at most MW_JWS_MAX_SECRET bytes). */
mw_jws_key *mw_jws_key_secret(const unsigned char *s, size_t len, char *err,
                              size_t errlen);
void mw_jws_key_free(mw_jws_key *k);
/* Overwrites n bytes at p with zeros in a way the compiler keeps (for
 * buffers that held key material before they are freed). */
void mw_jws_wipe(void *p, size_t n);

mw_jws_kind mw_jws_key_kind(const mw_jws_key *k);
/* The algorithm a kind accepts: "RS256", "ES256", "HS256". */
const char *mw_jws_kind_alg(mw_jws_kind kind);

/* Results of mw_jws_verify. */
typedef enum mw_jws_result {
  MW_JWS_VALID = 0,
  MW_JWS_BAD_SIGNATURE = 1, /* the signature does not verify */
  MW_JWS_ALG_MISMATCH = 2,  /* alg is not the one the key accepts */
  MW_JWS_ERROR = 3          /* OpenSSL failed (out of memory) */
} mw_jws_result;

/* Checks sig (raw bytes: for ES256 the 64-byte r||s of RFC 7518 section
 * 3.4, not DER) over the signing input (the token's "header.payload" text)
 * with k, for the token's alg. HMACs are compared in constant time. */
mw_jws_result mw_jws_verify(const mw_jws_key *k, const char *alg,
                            const unsigned char *input, size_t inlen,
                            const unsigned char *sig, size_t siglen);

/* Constant-time comparison of two byte strings of the same length: 1 when
 * equal. */
int mw_jws_equal(const void *a, const void *b, size_t len);

#endif
