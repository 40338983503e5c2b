/* The per-worker timer heap. */
#include <stdlib.h>

#include "mw_test.h"
#include "base/mw_timer.h"

static int order[64];
static int n_fired;

static void fire(void *arg) { order[n_fired++] = (int)(intptr_t)arg; }

static void test_order(void) {
  mw_timers t;
  mw_timers_init(&t);
  n_fired = 0;
  MW_CHECK(mw_timers_next(&t) < 0);
  double when[] = {5, 1, 3, 1, 4, 2};
  for (int i = 0; i < 6; i++) MW_CHECK(mw_timer_add(&t, when[i], fire, (void *)(intptr_t)i) != 0);
  MW_CHECK(mw_timers_next(&t) == 1);
  MW_CHECK_INT(mw_timers_run(&t, 0.5), 0);
  MW_CHECK_INT(mw_timers_run(&t, 3), 4);
  /* equal deadlines fire in the order they were added */
  MW_CHECK_INT(order[0], 1);
  MW_CHECK_INT(order[1], 3);
  MW_CHECK_INT(order[2], 5);
  MW_CHECK_INT(order[3], 2);
  MW_CHECK_INT(mw_timers_run(&t, 10), 2);
  MW_CHECK_INT(order[4], 4);
  MW_CHECK_INT(order[5], 0);
  MW_CHECK(mw_timers_next(&t) < 0);
  mw_timers_free(&t);
  mw_timers_free(&t); /* twice is safe */
}

static void test_cancel(void) {
  mw_timers t;
  mw_timers_init(&t);
  n_fired = 0;
  uint64_t ids[100];
  for (int i = 0; i < 100; i++) ids[i] = mw_timer_add(&t, (double)(i % 10), fire, (void *)(intptr_t)i);
  for (int i = 0; i < 100; i += 2) MW_CHECK_INT(mw_timer_cancel(&t, ids[i]), 1);
  MW_CHECK_INT(mw_timer_cancel(&t, ids[0]), 0); /* already gone */
  MW_CHECK_INT(mw_timers_run(&t, 100), 50);
  int sorted = 1;
  for (int i = 0; i < 50; i++) {
    if (order[i] % 2 == 0) sorted = 0;
    if (i && order[i - 1] % 10 > order[i] % 10) sorted = 0;
  }
  MW_CHECK(sorted);
  mw_timers_free(&t);
}

static mw_timers *reentrant;
static void add_more(void *arg) {
  (void)arg;
  n_fired++;
  mw_timer_add(reentrant, 0, fire, (void *)(intptr_t)99);
}

static void test_added_while_running(void) {
  mw_timers t;
  mw_timers_init(&t);
  reentrant = &t;
  n_fired = 0;
  mw_timer_add(&t, 1, add_more, NULL);
  /* A timer added by a callback waits for the next run, even when due. */
  MW_CHECK_INT(mw_timers_run(&t, 2), 1);
  MW_CHECK_INT(mw_timers_run(&t, 2), 1);
  MW_CHECK_INT(order[1], 99);
  mw_timers_free(&t);
}

static void test_clock(void) {
  double a = mw_now(), b = mw_now();
  MW_CHECK(a > 0);
  MW_CHECK(b >= a);
}

int main(void) {
  MW_RUN(test_order);
  MW_RUN(test_cancel);
  MW_RUN(test_added_while_running);
  MW_RUN(test_clock);
  return mw_test_done();
}
