/* Message digests: see mw_digest.h. */
#include "tls/mw_digest.h"

#include <pthread.h>

#include <openssl/evp.h>

/* SHA-256 fetched once: an implicit fetch on every digest (EVP_sha256() in
 * EVP_DigestInit_ex) looks the algorithm up in the provider store each
 * time. Kept for the life of the process. */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static EVP_MD *g_sha256;

static void fetch(void) { g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL); }

int mw_sha256(const mw_digest_part *parts, size_t n, unsigned char out[MW_SHA256_LEN]) {
  pthread_once(&g_once, fetch);
  if (!g_sha256) return -1;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) return -1;
  int ok = EVP_DigestInit_ex(ctx, g_sha256, NULL) == 1;
  for (size_t i = 0; ok && i < n; i++)
    if (parts[i].len) ok = EVP_DigestUpdate(ctx, parts[i].data, parts[i].len) == 1;
  unsigned int len = 0;
  ok = ok && EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == MW_SHA256_LEN;
  EVP_MD_CTX_free(ctx);
  return ok ? 0 : -1;
}
