/* Message digests: SHA-256 over a list of byte ranges, for fingerprints
 * (the idempotency interceptor's request fingerprint, lua/l_idem.c), and
 * SHA-1, which the WebSocket handshake's accept key is made of (RFC 6455,
 * http/mw_wsframe.c; not for anything that needs a secure hash). The
 * header has no OpenSSL types, so lua/ may include it: OpenSSL stays inside
 * tls/. */
#ifndef MW_DIGEST_H
#define MW_DIGEST_H

#include <stddef.h>

#define MW_SHA256_LEN 32
#define MW_SHA1_LEN 20

typedef struct mw_digest_part {
  const void *data;
  size_t len;
} mw_digest_part;

/* SHA-256 of the n parts one after the other, into out. Returns 0, or -1
 * when OpenSSL could not (no memory, no SHA-256 in its providers). Any
 * thread. */
int mw_sha256(const mw_digest_part *parts, size_t n, unsigned char out[MW_SHA256_LEN]);
/* SHA-1 of the n parts, likewise. */
int mw_sha1(const mw_digest_part *parts, size_t n, unsigned char out[MW_SHA1_LEN]);

#endif
