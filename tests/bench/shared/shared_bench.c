/*
 * shared_bench: what a shared dict operation costs from C (shared/mw_shdict.h),
 * with 1 to N threads on one dict.
 *
 *   shared_bench [--threads N] [--ms MS] [--keys K]
 *
 * For each of get, set and incr, and each thread count from 1 to N: every
 * thread runs the operation in a loop for MS milliseconds on K keys of its
 * own (incr: one key all threads share, the contended case), through
 * mw_shdict_exec as the Lua binding calls it. Reported: operations per
 * second in all, and ns per operation per thread. The Lua side's figures
 * (a handler looping) are in tests/e2e/test_shared.py's test_loop_figures.
 * Built into build/bench/; not run by ctest.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/mw_shdict.h"

static int g_ms = 1000, g_keys = 1000;
static volatile int g_stop;

typedef struct arg {
  mw_shdict *d;
  mw_shop op;
  int id;
  long ops;
} arg;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *loop(void *p) {
  arg *a = p;
  mw_shbuf buf = {0};
  mw_shreq rq = {.op = a->op};
  if (a->op == MW_SHOP_INCR) {
    rq.val = (mw_shval){.type = MW_SHV_INT, .u.i = 1};
    rq.has_init = 1;
    rq.init = (mw_shval){.type = MW_SHV_INT, .u.i = 0};
  } else {
    rq.val = (mw_shval){.type = MW_SHV_STR, .u.s = {"a value of 32 bytes, about that.", 32}};
  }
  /* the keys made first: the loop measures the dict, not snprintf */
  char (*keys)[32] = calloc((size_t)g_keys, sizeof *keys);
  size_t *lens = calloc((size_t)g_keys, sizeof *lens);
  if (!keys || !lens) exit(1);
  for (int i = 0; i < g_keys; i++) {
    if (a->op == MW_SHOP_INCR) snprintf(keys[i], sizeof keys[i], "counter");
    else snprintf(keys[i], sizeof keys[i], "t%d:k%d", a->id, i);
    lens[i] = strlen(keys[i]);
  }
  long n = 0;
  int k = 0;
  while (!g_stop) {
    for (int i = 0; i < 256; i++, n++) {
      rq.key = keys[k];
      rq.klen = lens[k];
      if (++k == g_keys) k = 0;
      mw_shres res;
      mw_shdict_exec(a->d, &rq, &res, &buf);
    }
  }
  free(keys);
  free(lens);
  a->ops = n;
  free(buf.p);
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--ms")) g_ms = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--keys")) g_keys = atoi(argv[i + 1]);
  }
  if (threads < 1 || threads > 64) threads = 2;
  static const struct { const char *name; mw_shop op; } ops[] = {
      {"set", MW_SHOP_SET}, {"get", MW_SHOP_GET}, {"incr", MW_SHOP_INCR}};
  mw_shdict *d = mw_shdict_new(64 << 20);
  if (!d) return 1;
  for (size_t o = 0; o < 3; o++) {
    for (int t = 1; t <= threads; t++) {
      arg a[64];
      pthread_t th[64];
      g_stop = 0;
      double t0 = now_s();
      for (int i = 0; i < t; i++) {
        a[i] = (arg){d, ops[o].op, i, 0};
        pthread_create(&th[i], NULL, loop, &a[i]);
      }
      struct timespec ts = {g_ms / 1000, (long)(g_ms % 1000) * 1000000};
      nanosleep(&ts, NULL);
      g_stop = 1;
      long total = 0;
      for (int i = 0; i < t; i++) {
        pthread_join(th[i], NULL);
        total += a[i].ops;
      }
      double secs = now_s() - t0;
      printf("%-5s %2d thread(s): %6.2f M ops/s in all, %6.0f ns/op per thread\n", ops[o].name,
             t, (double)total / secs / 1e6, secs * 1e9 * t / (double)total);
    }
  }
  mw_shdict_free(d);
  return 0;
}
