/* Unit tests for base/mw_ratelimit: burst, refusal with the time to wait,
 * refill, bounded memory under many keys, and one bucket shared by threads
 * (exactly `burst` calls get through whichever thread makes them). */
#include <pthread.h>
#include <stdio.h>

#include "base/mw_ratelimit.h"
#include "mw_test.h"

static void test_burst_and_refill(void) {
  mw_ratelimit *rl = mw_ratelimit_new(64);
  double retry = -1;
  for (int i = 0; i < 3; i++) MW_CHECK(mw_ratelimit_take(rl, "k", 1, 2.0, 3.0, 1.0, 100.0, &retry));
  MW_CHECK(!mw_ratelimit_take(rl, "k", 1, 2.0, 3.0, 1.0, 100.0, &retry));
  MW_CHECK(retry > 0.49 && retry < 0.51); /* one token at 2/s */
  MW_CHECK(mw_ratelimit_take(rl, "other", 5, 2.0, 3.0, 1.0, 100.0, NULL));
  MW_CHECK(mw_ratelimit_take(rl, "k", 1, 2.0, 3.0, 1.0, 100.5, &retry));
  MW_CHECK(!mw_ratelimit_take(rl, "k", 1, 2.0, 3.0, 1.0, 100.5, &retry));
  /* Refills up to burst, not past it. */
  for (int i = 0; i < 3; i++) MW_CHECK(mw_ratelimit_take(rl, "k", 1, 2.0, 3.0, 1.0, 1000.0, NULL));
  MW_CHECK(!mw_ratelimit_take(rl, "k", 1, 2.0, 3.0, 1.0, 1000.0, NULL));
  /* A clock read earlier than the last update adds nothing. */
  MW_CHECK(!mw_ratelimit_take(rl, "k", 1, 2.0, 3.0, 1.0, 999.0, NULL));
  mw_ratelimit_free(rl);
  mw_ratelimit_free(NULL);
}

static void test_bounded(void) {
  mw_ratelimit *rl = mw_ratelimit_new(64);
  MW_CHECK_INT(mw_ratelimit_capacity(rl), 64 * MW_RL_WAYS);
  char key[32];
  /* Far more keys than buckets: each new key starts full, and the table
   * stays the size it was made. */
  int ok = 0;
  for (int i = 0; i < 20000; i++) {
    int n = snprintf(key, sizeof key, "key-%d", i);
    ok += mw_ratelimit_take(rl, key, (size_t)n, 1.0, 1.0, 1.0, 1.0 + i * 1e-6, NULL);
  }
  MW_CHECK_INT(ok, 20000);
  /* A key used a moment ago survives in its set while older ones go. */
  MW_CHECK(!mw_ratelimit_take(rl, "key-19999", 9, 1.0, 1.0, 1.0, 1.03, NULL));
  MW_CHECK_INT(mw_ratelimit_capacity(rl), 64 * MW_RL_WAYS);
  mw_ratelimit_free(rl);
}

static mw_ratelimit *g_rl;
static int g_allowed[4];

static void *taker(void *arg) {
  int t = (int)(long)arg;
  for (int i = 0; i < 5000; i++)
    g_allowed[t] += mw_ratelimit_take(g_rl, "shared", 6, 1e-9, 1000.0, 1.0, 5.0, NULL);
  return NULL;
}

static void test_threads_share(void) {
  g_rl = mw_ratelimit_shared();
  MW_CHECK(g_rl == mw_ratelimit_shared());
  pthread_t th[4];
  for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, taker, (void *)i);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  MW_CHECK_INT(g_allowed[0] + g_allowed[1] + g_allowed[2] + g_allowed[3], 1000);
  MW_CHECK(mw_ratelimit_now() > 0);
}

int main(void) {
  MW_RUN(test_burst_and_refill);
  MW_RUN(test_bounded);
  MW_RUN(test_threads_share);
  return mw_test_done();
}
