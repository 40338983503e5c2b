/* Small helpers shared by several modules. */
#ifndef MW_UTIL_H
#define MW_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 64-bit FNV-1a. */
static inline uint64_t mw_fnv1a(const char *p, size_t n) {
  uint64_t h = 14695981039346656037ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static inline int mw_has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* SipHash-2-4 (Aumasson and Bernstein): a keyed hash, for tables whose keys
 * come from clients, so that a client cannot pick keys that all land in one
 * place (base/mw_ratelimit's sets, base/mw_idem's chains). */
#define MW_SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define MW_SIPROUND                                                          \
  do {                                                                      \
    v0 += v1; v1 = MW_SIP_ROTL(v1, 13); v1 ^= v0; v0 = MW_SIP_ROTL(v0, 32); \
    v2 += v3; v3 = MW_SIP_ROTL(v3, 16); v3 ^= v2;                           \
    v0 += v3; v3 = MW_SIP_ROTL(v3, 21); v3 ^= v0;                           \
    v2 += v1; v1 = MW_SIP_ROTL(v1, 17); v1 ^= v2; v2 = MW_SIP_ROTL(v2, 32); \
  } while (0)

static inline uint64_t mw_siphash24(const uint64_t k[2], const void *data, size_t len) {
  const unsigned char *in = data;
  uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
  uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
  size_t full = len & ~(size_t)7;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m;
    memcpy(&m, in + i, 8);
    v3 ^= m;
    MW_SIPROUND;
    MW_SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < (len & 7); i++) b |= (uint64_t)in[full + i] << (8 * i);
  v3 ^= b;
  MW_SIPROUND;
  MW_SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  MW_SIPROUND;
  MW_SIPROUND;
  MW_SIPROUND;
  MW_SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}
#undef MW_SIPROUND
#undef MW_SIP_ROTL

#endif
