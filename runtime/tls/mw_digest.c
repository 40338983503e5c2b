/* Message digests: see mw_digest.h. */
#include "tls/mw_digest.h"

#include <pthread.h>

#include <openssl/evp.h>

/* The digests fetched once: an implicit fetch on every digest (EVP_sha256()
 * in EVP_DigestInit_ex) looks the algorithm up in the provider store each
 * time. Kept for the life of the process. */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static EVP_MD *g_sha256, *g_sha1;

static void fetch(void) {
  g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
  g_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
}

static int digest(const EVP_MD *md, const mw_digest_part *parts, size_t n, unsigned char *out,
                  unsigned int want) {
  if (!md) return -1;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) return -1;
  int ok = EVP_DigestInit_ex(ctx, md, NULL) == 1;
  for (size_t i = 0; ok && i < n; i++)
    if (parts[i].len) ok = EVP_DigestUpdate(ctx, parts[i].data, parts[i].len) == 1;
  unsigned int len = 0;
  ok = ok && EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == want;
  EVP_MD_CTX_free(ctx);
  return ok ? 0 : -1;
}

int mw_sha256(const mw_digest_part *parts, size_t n, unsigned char out[MW_SHA256_LEN]) {
  pthread_once(&g_once, fetch);
  return digest(g_sha256, parts, n, out, MW_SHA256_LEN);
}

int mw_sha1(const mw_digest_part *parts, size_t n, unsigned char out[MW_SHA1_LEN]) {
  pthread_once(&g_once, fetch);
  return digest(g_sha1, parts, n, out, MW_SHA1_LEN);
}
