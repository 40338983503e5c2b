/* The shared token buckets: see mw_ratelimit.h. */
#include "base/mw_ratelimit.h"
#include "base/mw_timer.h"

#include "base/mw_siphash.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bucket {
  uint64_t hash;  /* 0: empty (a hash of 0 is stored as 1) */
  double tokens;  /* as of `at` */
  double at;      /* when tokens was computed: also the way's age */
} bucket;

struct mw_ratelimit {
  size_t mask;  /* sets - 1 */
  uint64_t seed[2];
  pthread_mutex_t locks[MW_RL_STRIPES];
  bucket *buckets; /* sets * MW_RL_WAYS, the table's own */
};

mw_ratelimit *mw_ratelimit_new(size_t sets) {
  size_t n = MW_RL_STRIPES;
  while (n < sets) n <<= 1;
  mw_ratelimit *rl = calloc(1, sizeof *rl);
  if (!rl) return NULL;
  rl->buckets = calloc(n * MW_RL_WAYS, sizeof *rl->buckets);
  if (!rl->buckets) {
    free(rl);
    return NULL;
  }
  rl->mask = n - 1;
  /* Keyed, so a client cannot pick keys that all land in one set and
   * evict everyone else's buckets. */
  mw_siphash_seed(rl->seed);
  for (int i = 0; i < MW_RL_STRIPES; i++) pthread_mutex_init(&rl->locks[i], NULL);
  return rl;
}

void mw_ratelimit_free(mw_ratelimit *rl) {
  if (!rl) return;
  for (int i = 0; i < MW_RL_STRIPES; i++) pthread_mutex_destroy(&rl->locks[i]);
  free(rl->buckets);
  free(rl);
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static mw_ratelimit *g_shared; /* this module's, for the process's life */

static void make_shared(void) { g_shared = mw_ratelimit_new(MW_RL_SHARED_SETS); }

mw_ratelimit *mw_ratelimit_shared(void) {
  pthread_once(&g_once, make_shared);
  return g_shared;
}

size_t mw_ratelimit_capacity(const mw_ratelimit *rl) {
  return (rl->mask + 1) * MW_RL_WAYS;
}

double mw_ratelimit_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  /* The skew: under moonwire test, buckets refill with the test clock. */
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + mw_clock_skew();
}

int mw_ratelimit_take(mw_ratelimit *rl, const void *key, size_t len, double rate,
                      double burst, double cost, double now, double *retry_after) {
  uint64_t h = mw_siphash(rl->seed, key, len);
  if (h == 0) h = 1;
  size_t set = (size_t)(h >> 7) & rl->mask; /* low bits differ from the lock's */
  pthread_mutex_t *lock = &rl->locks[set % MW_RL_STRIPES];
  bucket *ways = rl->buckets + set * MW_RL_WAYS;

  pthread_mutex_lock(lock);
  bucket *b = NULL, *victim = NULL;
  for (int i = 0; i < MW_RL_WAYS && !b; i++) {
    if (ways[i].hash == h) b = &ways[i];
    else if (ways[i].hash == 0) { if (!victim || victim->hash != 0) victim = &ways[i]; }
    else if (!victim || (victim->hash != 0 && ways[i].at < victim->at)) victim = &ways[i];
  }
  if (!b) { /* an empty way, else the one touched least recently */
    b = victim;
    b->hash = h;
    b->tokens = burst;
    b->at = now;
  }
  double tokens = b->tokens;
  if (now > b->at) tokens += (now - b->at) * rate;
  if (tokens > burst) tokens = burst;
  int ok = tokens >= cost;
  if (ok) tokens -= cost;
  /* A clock read before another thread's update (now < at) keeps `at`: the
   * refill is never counted twice. */
  if (now > b->at) b->at = now;
  b->tokens = tokens;
  pthread_mutex_unlock(lock);

  if (!ok && retry_after) *retry_after = (cost - tokens) / rate;
  return ok;
}
