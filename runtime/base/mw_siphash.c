/* SipHash-2-4: see mw_siphash.h. */
#include "base/mw_siphash.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                            \
  do {                                                                      \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);               \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                  \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                  \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);               \
  } while (0)

uint64_t mw_siphash(const uint64_t k[2], const void *data, size_t len) {
  const unsigned char *in = data;
  uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
  uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
  size_t full = len & ~(size_t)7;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m;
    memcpy(&m, in + i, 8);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < (len & 7); i++) b |= (uint64_t)in[full + i] << (8 * i);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

void mw_siphash_seed(uint64_t k[2]) {
  if (getrandom(k, 2 * sizeof k[0], 0) == (ssize_t)(2 * sizeof k[0])) return;
  /* No entropy yet (early boot): the clock still differs per process. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL;
  k[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)k;
}
