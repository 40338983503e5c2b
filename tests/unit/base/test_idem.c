/* Unit tests for base/mw_idem: claim, complete and replay, release, a
 * fingerprint mismatch, keys scoped apart, expiry and the sweep, the memory
 * cap (expired entries first, then refusal; a reply with no room kept as
 * "done" without it), replies outliving their entry, many keys, and threads
 * racing on one key (exactly one runs it) and on claim/release (never two
 * holders at once). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/mw_idem.h"
#include "mw_test.h"

static unsigned char FP_A[MW_IDEM_FP_LEN] = {1};
static unsigned char FP_B[MW_IDEM_FP_LEN] = {2};

#define S "/shop.Payments/Charge"
#define SL (sizeof S - 1)

static mw_idem_claim_result claim(mw_idem *s, const char *key, const unsigned char *fp,
                                  double now, uint64_t *token, mw_idem_reply **reply) {
  return mw_idem_claim(s, S, SL, key, strlen(key), fp, now, token, reply);
}

static int reply_is(mw_idem_reply *r, const char *want) {
  size_t len;
  const char *d = r ? mw_idem_reply_data(r, &len) : NULL;
  return d && len == strlen(want) && memcmp(d, want, len) == 0;
}

static void test_claim_complete_replay(void) {
  mw_idem *s = mw_idem_new(1 << 20);
  uint64_t t1 = 0, t2 = 0;
  mw_idem_reply *r = NULL;
  MW_CHECK_INT(claim(s, "k1", FP_A, 10, &t1, NULL), MW_IDEM_NEW);
  MW_CHECK(t1 != 0);
  /* While it runs: the same request is a duplicate, another a mismatch. */
  MW_CHECK_INT(claim(s, "k1", FP_A, 10, &t2, NULL), MW_IDEM_RUNNING);
  MW_CHECK_INT(claim(s, "k1", FP_B, 10, &t2, NULL), MW_IDEM_MISMATCH);
  MW_CHECK_INT(mw_idem_complete(s, S, SL, "k1", 2, t1, "reply-1", 7, 60, 11), MW_IDEM_STORED);
  /* Completing twice is stale: the claim has ended. */
  MW_CHECK_INT(mw_idem_complete(s, S, SL, "k1", 2, t1, "other", 5, 60, 11), MW_IDEM_STALE);
  MW_CHECK_INT(claim(s, "k1", FP_A, 12, NULL, &r), MW_IDEM_DONE);
  MW_CHECK(reply_is(r, "reply-1"));
  mw_idem_reply_unref(r);
  r = NULL;
  MW_CHECK_INT(claim(s, "k1", FP_B, 12, NULL, &r), MW_IDEM_MISMATCH);
  MW_CHECK(r == NULL);
  /* The key is scoped: the same key elsewhere is another entry. */
  MW_CHECK_INT(mw_idem_claim(s, "/shop.Payments/Refund", 21, "k1", 2, FP_B, 12, &t2, NULL),
               MW_IDEM_NEW);
  MW_CHECK(t2 != t1);
  /* An empty reply is a reply. */
  MW_CHECK_INT(mw_idem_complete(s, "/shop.Payments/Refund", 21, "k1", 2, t2, "", 0, 60, 12),
               MW_IDEM_STORED);
  MW_CHECK_INT(mw_idem_claim(s, "/shop.Payments/Refund", 21, "k1", 2, FP_B, 12, NULL, &r),
               MW_IDEM_DONE);
  MW_CHECK(r != NULL && reply_is(r, ""));
  mw_idem_reply_unref(r);
  mw_idem_stats st;
  mw_idem_stats_get(s, &st);
  MW_CHECK_INT(st.entries, 2);
  MW_CHECK_INT(st.running, 0);
  MW_CHECK_INT(st.bytes, 2 * mw_idem_entry_overhead() + SL + 2 + 21 + 2 + 7);
  mw_idem_free(s);
  mw_idem_free(NULL);
}

static void test_release(void) {
  mw_idem *s = mw_idem_new(1 << 20);
  uint64_t t1 = 0, t2 = 0;
  MW_CHECK_INT(claim(s, "k", FP_A, 1, &t1, NULL), MW_IDEM_NEW);
  MW_CHECK_INT(mw_idem_release(s, S, SL, "k", 1, t1 + 1), -1); /* not its token */
  MW_CHECK_INT(mw_idem_release(s, S, SL, "k", 1, t1), 0);
  MW_CHECK_INT(mw_idem_release(s, S, SL, "k", 1, t1), -1);     /* twice */
  /* Nothing was stored: the next claim runs, with another request too. */
  MW_CHECK_INT(claim(s, "k", FP_B, 1, &t2, NULL), MW_IDEM_NEW);
  MW_CHECK(t2 != t1);
  /* The old owner can neither complete nor release the new claim. */
  MW_CHECK_INT(mw_idem_complete(s, S, SL, "k", 1, t1, "x", 1, 60, 1), MW_IDEM_STALE);
  MW_CHECK_INT(mw_idem_release(s, S, SL, "k", 1, t1), -1);
  MW_CHECK_INT(claim(s, "k", FP_B, 1, NULL, NULL), MW_IDEM_RUNNING);
  /* A done entry cannot be released. */
  MW_CHECK_INT(mw_idem_complete(s, S, SL, "k", 1, t2, "x", 1, 60, 1), MW_IDEM_STORED);
  MW_CHECK_INT(mw_idem_release(s, S, SL, "k", 1, t2), -1);
  MW_CHECK_INT(claim(s, "k", FP_B, 1, NULL, NULL), MW_IDEM_DONE);
  mw_idem_stats st;
  mw_idem_stats_get(s, &st);
  MW_CHECK_INT(st.entries, 1);
  mw_idem_free(s);
}

static void test_expiry(void) {
  mw_idem *s = mw_idem_new(1 << 20);
  uint64_t t = 0;
  mw_idem_reply *r = NULL;
  MW_CHECK_INT(claim(s, "k", FP_A, 100, &t, NULL), MW_IDEM_NEW);
  /* A running entry never expires by itself, however long it runs. */
  MW_CHECK_INT(claim(s, "k", FP_A, 1e6, NULL, NULL), MW_IDEM_RUNNING);
  MW_CHECK_INT(mw_idem_sweep(s, 1e6), 0);
  MW_CHECK_INT(mw_idem_complete(s, S, SL, "k", 1, t, "r", 1, 0.25, 100), MW_IDEM_STORED);
  MW_CHECK_INT(claim(s, "k", FP_A, 100.24, NULL, &r), MW_IDEM_DONE);
  /* The reply handed out outlives its entry. */
  MW_CHECK_INT(mw_idem_sweep(s, 100.24), 0);
  MW_CHECK_INT(mw_idem_sweep(s, 100.25), 1);
  MW_CHECK(reply_is(r, "r"));
  mw_idem_reply_unref(r);
  mw_idem_stats st;
  mw_idem_stats_get(s, &st);
  MW_CHECK_INT(st.entries, 0);
  MW_CHECK_INT(st.bytes, 0);
  /* Expired and not yet swept: a claim treats it as absent, with another
   * request too. */
  MW_CHECK_INT(claim(s, "k2", FP_A, 200, &t, NULL), MW_IDEM_NEW);
  MW_CHECK_INT(mw_idem_complete(s, S, SL, "k2", 2, t, "r", 1, 1, 200), MW_IDEM_STORED);
  MW_CHECK_INT(claim(s, "k2", FP_B, 200.5, NULL, NULL), MW_IDEM_MISMATCH);
  MW_CHECK_INT(claim(s, "k2", FP_B, 201, &t, NULL), MW_IDEM_NEW);
  mw_idem_stats_get(s, &st);
  MW_CHECK_INT(st.entries, 1);
  MW_CHECK_INT(st.running, 1);
  mw_idem_free(s); /* with a running entry in it */
}

static void test_cap(void) {
  size_t one = mw_idem_entry_overhead() + SL + 2; /* an entry with a 2-byte key */
  mw_idem *s = mw_idem_new(4 * one + 10);
  char key[8];
  uint64_t t[8];
  for (int i = 0; i < 4; i++) {
    snprintf(key, sizeof key, "k%d", i);
    MW_CHECK_INT(claim(s, key, FP_A, 1, &t[i], NULL), MW_IDEM_NEW);
  }
  /* Full of running claims: a new key is refused, nothing else changes. */
  MW_CHECK_INT(claim(s, "k4", FP_A, 1, &t[4], NULL), MW_IDEM_FULL);
  MW_CHECK_INT(claim(s, "k0", FP_A, 1, NULL, NULL), MW_IDEM_RUNNING);
  /* A reply that fits the 10 bytes left is kept; the next finds no room
   * and its entry is kept without it. */
  MW_CHECK_INT(mw_idem_complete(s, S, SL, "k0", 2, t[0], "0123456789", 10, 5, 1),
               MW_IDEM_STORED);
  MW_CHECK_INT(mw_idem_complete(s, S, SL, "k1", 2, t[1], "x", 1, 10, 1), MW_IDEM_UNKEPT);
  mw_idem_reply *r = (mw_idem_reply *)&r; /* overwritten by the claim */
  MW_CHECK_INT(claim(s, "k1", FP_A, 2, NULL, &r), MW_IDEM_DONE);
  MW_CHECK(r == NULL); /* it ran: a duplicate is told so, never run again */
  MW_CHECK_INT(claim(s, "k1", FP_B, 2, NULL, NULL), MW_IDEM_MISMATCH);
  /* Still full of live entries until k0 expires at 6; then it goes first. */
  MW_CHECK_INT(claim(s, "k4", FP_A, 5.9, &t[4], NULL), MW_IDEM_FULL);
  MW_CHECK_INT(claim(s, "k4", FP_A, 6, &t[4], NULL), MW_IDEM_NEW);
  MW_CHECK_INT(claim(s, "k0", FP_A, 6, NULL, NULL), MW_IDEM_FULL); /* k0 is gone */
  mw_idem_stats st;
  mw_idem_stats_get(s, &st);
  MW_CHECK_INT(st.entries, 4);
  MW_CHECK(st.bytes <= st.max_bytes);
  /* A release makes room at once. */
  MW_CHECK_INT(mw_idem_release(s, S, SL, "k2", 2, t[2]), 0);
  MW_CHECK_INT(claim(s, "k0", FP_A, 6, &t[0], NULL), MW_IDEM_NEW);
  /* A reply larger than the whole cap is never kept. */
  static char big[1 << 12];
  MW_CHECK_INT(mw_idem_complete(s, S, SL, "k0", 2, t[0], big, sizeof big, 10, 6),
               MW_IDEM_UNKEPT);
  mw_idem_free(s);

  /* A cap below one entry refuses every key. */
  s = mw_idem_new(10);
  MW_CHECK_INT(claim(s, "k", FP_A, 1, NULL, NULL), MW_IDEM_FULL);
  mw_idem_free(s);
}

static void test_many_keys(void) {
  mw_idem *s = mw_idem_new(64 << 20);
  char key[32];
  int ok = 1;
  /* Past the first bucket array's size: the table grows, every key stays
   * found. */
  for (int i = 0; i < 20000; i++) {
    int n = snprintf(key, sizeof key, "key-%d", i);
    uint64_t t;
    ok &= mw_idem_claim(s, S, SL, key, (size_t)n, FP_A, 1, &t, NULL) == MW_IDEM_NEW;
    if (i % 2) ok &= mw_idem_complete(s, S, SL, key, (size_t)n, t, key, (size_t)n, 1, 1) ==
                     MW_IDEM_STORED;
  }
  MW_CHECK(ok);
  for (int i = 0; i < 20000; i++) {
    int n = snprintf(key, sizeof key, "key-%d", i);
    mw_idem_reply *r = NULL;
    mw_idem_claim_result want = i % 2 ? MW_IDEM_DONE : MW_IDEM_RUNNING;
    ok &= mw_idem_claim(s, S, SL, key, (size_t)n, FP_A, 1.5, NULL, &r) == want;
    if (i % 2) ok &= reply_is(r, key);
    mw_idem_reply_unref(r);
  }
  MW_CHECK(ok);
  /* The done half expires at 2 and is swept; the running half stays. */
  MW_CHECK_INT(mw_idem_sweep(s, 2), 10000);
  mw_idem_stats st;
  mw_idem_stats_get(s, &st);
  MW_CHECK_INT(st.entries, 10000);
  MW_CHECK_INT(st.running, 10000);
  mw_idem_free(s);
}

/* --- threads ------------------------------------------------------------- */

#define THREADS 4
#define RACE_KEYS 2000

static mw_idem *g_s;
static atomic_int g_ran[RACE_KEYS];   /* how many threads ran each key */
static atomic_int g_replayed;
static pthread_barrier_t g_barrier;

/* Every thread claims every key, in the same order: exactly one runs each
 * (and completes it); the others see it running or done. */
static void *racer(void *arg) {
  (void)arg;
  char key[32];
  pthread_barrier_wait(&g_barrier);
  for (int i = 0; i < RACE_KEYS; i++) {
    int n = snprintf(key, sizeof key, "order-%d", i);
    uint64_t t;
    mw_idem_reply *r = NULL;
    switch (mw_idem_claim(g_s, S, SL, key, (size_t)n, FP_A, 1, &t, &r)) {
    case MW_IDEM_NEW:
      atomic_fetch_add(&g_ran[i], 1);
      mw_idem_complete(g_s, S, SL, key, (size_t)n, t, key, (size_t)n, 60, 1);
      break;
    case MW_IDEM_DONE:
      if (reply_is(r, key)) atomic_fetch_add(&g_replayed, 1);
      mw_idem_reply_unref(r);
      break;
    default: break;
    }
  }
  return NULL;
}

static atomic_int g_holders, g_overlaps, g_wins;

/* Threads claim one key over and over and release it at once: never two
 * holders at a time. */
static void *holder(void *arg) {
  (void)arg;
  pthread_barrier_wait(&g_barrier);
  for (int i = 0; i < 20000; i++) {
    uint64_t t;
    if (mw_idem_claim(g_s, S, SL, "hot", 3, FP_A, 1, &t, NULL) != MW_IDEM_NEW) continue;
    if (atomic_fetch_add(&g_holders, 1) != 0) atomic_fetch_add(&g_overlaps, 1);
    atomic_fetch_add(&g_wins, 1);
    atomic_fetch_sub(&g_holders, 1);
    if (mw_idem_release(g_s, S, SL, "hot", 3, t) != 0) atomic_fetch_add(&g_overlaps, 1);
  }
  return NULL;
}

static void run_threads(void *(*fn)(void *)) {
  pthread_t th[THREADS];
  pthread_barrier_init(&g_barrier, NULL, THREADS);
  for (long i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, fn, (void *)i);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&g_barrier);
}

static void test_threads_race_on_a_key(void) {
  g_s = mw_idem_shared();
  MW_CHECK(g_s != NULL && g_s == mw_idem_shared());
  run_threads(racer);
  int once = 1;
  for (int i = 0; i < RACE_KEYS; i++) once &= atomic_load(&g_ran[i]) == 1;
  MW_CHECK(once);
  MW_CHECK(atomic_load(&g_replayed) <= (THREADS - 1) * RACE_KEYS);
  run_threads(holder);
  MW_CHECK_INT(atomic_load(&g_overlaps), 0);
  MW_CHECK(atomic_load(&g_wins) > 0);
  mw_idem_stats st;
  mw_idem_stats_get(g_s, &st);
  MW_CHECK_INT(st.entries, RACE_KEYS);
  MW_CHECK_INT(st.running, 0);
  MW_CHECK_INT(st.max_bytes, MW_IDEM_SHARED_BYTES);
  /* The process's table can be freed (twice) and made again, empty. */
  mw_idem_shared_free();
  mw_idem_shared_free();
  g_s = mw_idem_shared();
  mw_idem_stats_get(g_s, &st);
  MW_CHECK_INT(st.entries, 0);
  mw_idem_shared_free();
  MW_CHECK(mw_idem_now() > 0);
}

int main(void) {
  MW_RUN(test_claim_complete_replay);
  MW_RUN(test_release);
  MW_RUN(test_expiry);
  MW_RUN(test_cap);
  MW_RUN(test_many_keys);
  MW_RUN(test_threads_race_on_a_key);
  return mw_test_done();
}
