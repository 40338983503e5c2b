/* The per-worker timer heap (intrusive entries). */
#include <stdlib.h>

#include "mw_test.h"
#include "base/mw_timer.h"

typedef struct probe {
  mw_timer t;
  int id;
} probe;

static int order[256];
static int n_fired;

static void fire(mw_timer *t) { order[n_fired++] = ((probe *)t)->id; }

static void arm(mw_timers *t, probe *p, int id, double when) {
  p->t.fn = fire;
  p->id = id;
  MW_CHECK_INT(mw_timers_add(t, &p->t, when), 0);
  MW_CHECK(mw_timer_armed(&p->t));
}

static void test_order(void) {
  mw_timers t;
  mw_timers_init(&t);
  n_fired = 0;
  MW_CHECK(mw_timers_next(&t) < 0);
  double when[] = {5, 1, 3, 1, 4, 2};
  probe p[6] = {{{0}, 0}};
  for (int i = 0; i < 6; i++) arm(&t, &p[i], i, when[i]);
  MW_CHECK(mw_timers_next(&t) == 1);
  MW_CHECK_INT(mw_timers_run(&t, 0.5), 0);
  MW_CHECK_INT(mw_timers_run(&t, 3), 4);
  /* equal deadlines fire in the order they were armed */
  MW_CHECK_INT(order[0], 1);
  MW_CHECK_INT(order[1], 3);
  MW_CHECK_INT(order[2], 5);
  MW_CHECK_INT(order[3], 2);
  MW_CHECK(!mw_timer_armed(&p[1].t));
  MW_CHECK(mw_timer_armed(&p[4].t));
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
  static probe p[100];
  for (int i = 0; i < 100; i++) arm(&t, &p[i], i, (double)(i % 10));
  for (int i = 0; i < 100; i += 2) mw_timers_cancel(&t, &p[i].t);
  for (int i = 0; i < 100; i++) MW_CHECK_INT(mw_timer_armed(&p[i].t), i % 2);
  mw_timers_cancel(&t, &p[0].t); /* not armed: harmless */
  MW_CHECK_INT(mw_timers_run(&t, 100), 50);
  int sorted = 1;
  for (int i = 0; i < 50; i++) {
    if (order[i] % 2 == 0) sorted = 0;
    if (i && order[i - 1] % 10 > order[i] % 10) sorted = 0;
  }
  MW_CHECK(sorted);
  mw_timers_free(&t);
}

/* Cancelling anywhere in the heap keeps it a heap: many random deadlines,
 * a random half cancelled, the rest fire in deadline order. */
static void test_cancel_keeps_order(void) {
  mw_timers t;
  mw_timers_init(&t);
  n_fired = 0;
  static probe p[200];
  srand(7);
  for (int i = 0; i < 200; i++) arm(&t, &p[i], i, (double)(rand() % 1000));
  int kept = 0;
  for (int i = 0; i < 200; i++) {
    if (rand() % 2) mw_timers_cancel(&t, &p[i].t);
    else kept++;
  }
  MW_CHECK_INT(mw_timers_run(&t, 1000), kept);
  int sorted = 1;
  for (int i = 1; i < kept; i++)
    if (p[order[i - 1]].t.when > p[order[i]].t.when) sorted = 0;
  MW_CHECK(sorted);
  mw_timers_free(&t);
}

static void test_rearm_moves(void) {
  mw_timers t;
  mw_timers_init(&t);
  n_fired = 0;
  probe a = {{0}, 1}, b = {{0}, 2};
  arm(&t, &a, 1, 1);
  arm(&t, &b, 2, 2);
  arm(&t, &a, 1, 3); /* moves a after b */
  MW_CHECK(mw_timers_next(&t) == 2);
  MW_CHECK_INT(mw_timers_run(&t, 5), 2);
  MW_CHECK_INT(order[0], 2);
  MW_CHECK_INT(order[1], 1);
  mw_timers_free(&t);
}

static mw_timers *reentrant;
static probe again;
static void add_more(mw_timer *e) {
  (void)e;
  n_fired++;
  arm(reentrant, &again, 99, 0);
}

static void test_added_while_running(void) {
  mw_timers t;
  mw_timers_init(&t);
  reentrant = &t;
  n_fired = 0;
  probe first = {{0}, 0};
  first.t.fn = add_more;
  MW_CHECK_INT(mw_timers_add(&t, &first.t, 1), 0);
  /* A timer armed by a callback waits for the next run, even when due. */
  MW_CHECK_INT(mw_timers_run(&t, 2), 1);
  MW_CHECK_INT(mw_timers_run(&t, 2), 1);
  MW_CHECK_INT(order[1], 99);
  mw_timers_free(&t);
}

static void test_clock(void) {
  double a = mw_now(), b = mw_now();
  MW_CHECK(a > 0);
  MW_CHECK(b >= a);
  MW_CHECK(mw_wall_now() > 1.6e9);
}

int main(void) {
  MW_RUN(test_order);
  MW_RUN(test_cancel);
  MW_RUN(test_cancel_keeps_order);
  MW_RUN(test_rearm_moves);
  MW_RUN(test_added_while_running);
  MW_RUN(test_clock);
  return mw_test_done();
}
