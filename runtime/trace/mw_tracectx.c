/* W3C Trace Context: see mw_tracectx.h. */
#include "trace/mw_tracectx.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1; /* uppercase is invalid in traceparent */
}

static int unhex(const char *s, size_t n, uint8_t *out) {
  int any = 0;
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
    any |= out[i];
  }
  return any ? 0 : -1; /* all zero: invalid */
}

int mw_traceparent_parse(const char *s, size_t len, mw_traceparent *out) {
  /* vv-<32>-<16>-ff: 55 characters */
  if (!s || len < 55) return -1;
  int v1 = hexval(s[0]), v2 = hexval(s[1]);
  if (v1 < 0 || v2 < 0) return -1;
  int version = v1 << 4 | v2;
  if (version == 0xff) return -1;
  if (version == 0 && len != 55) return -1;
  /* A later version may append fields after a '-'. */
  if (version != 0 && len > 55 && s[55] != '-') return -1;
  if (s[2] != '-' || s[35] != '-' || s[52] != '-') return -1;
  mw_traceparent t;
  if (unhex(s + 3, 16, t.trace_id) != 0) return -1;
  if (unhex(s + 36, 8, t.parent_id) != 0) return -1;
  int f1 = hexval(s[53]), f2 = hexval(s[54]);
  if (f1 < 0 || f2 < 0) return -1;
  t.flags = (uint8_t)(f1 << 4 | f2);
  *out = t;
  return 0;
}

int mw_tracestate_ok(const char *s, size_t len) {
  if (!s || len > 512) return 0;
  size_t members = 1;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c > 0x7e) return 0;
    if (c == ',') members++;
  }
  return members <= 32;
}

/* xoshiro256** (Blackman and Vigna): fast, 256 bits of state, fine for
 * ids (not for secrets). One per thread, so workers never share a lock. */
static _Thread_local uint64_t rng[4];
static _Thread_local int rng_seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next64(void) {
  uint64_t *s = rng;
  uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return r;
}

static void seed(void) {
  ssize_t got = getrandom(rng, sizeof rng, 0);
  if (got != (ssize_t)sizeof rng) {
    /* No entropy source (an old kernel, a seccomp filter): the clock, the
     * pid and the thread's address, mixed by splitmix64, still make ids
     * that differ between processes and threads. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    z ^= (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&rng_seeded;
    for (int i = 0; i < 4; i++) {
      z += 0x9e3779b97f4a7c15u;
      uint64_t w = z;
      w = (w ^ (w >> 30)) * 0xbf58476d1ce4e5b9u;
      w = (w ^ (w >> 27)) * 0x94d049bb133111ebu;
      rng[i] = w ^ (w >> 31);
    }
  }
  if (!(rng[0] | rng[1] | rng[2] | rng[3])) rng[0] = 1; /* the one bad state */
  rng_seeded = 1;
}

void mw_trace_random(uint8_t *id, size_t n) {
  if (!rng_seeded) seed();
  for (;;) {
    int any = 0;
    for (size_t i = 0; i < n; i += 8) {
      uint64_t r = next64();
      size_t k = n - i < 8 ? n - i : 8;
      memcpy(id + i, &r, k);
    }
    for (size_t i = 0; i < n; i++) any |= id[i];
    if (any) return;
  }
}

void mw_trace_hex(const uint8_t *id, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[id[i] >> 4];
    out[2 * i + 1] = digits[id[i] & 15];
  }
  out[2 * n] = 0;
}

int mw_trace_sample(const uint8_t trace_id[16], double ratio) {
  if (ratio >= 1.0) return 1;
  if (ratio <= 0.0) return 0;
  uint64_t r = 0; /* the last 56 bits, big-endian as written in hex */
  for (int i = 9; i < 16; i++) r = r << 8 | trace_id[i];
  return (double)r < ratio * (double)(UINT64_C(1) << 56);
}
