/* Per-thread alarms: the signal reaches the armed thread once its time has
 * passed, never after it was disarmed, and each arming fires once. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "mw_test.h"
#include "base/mw_alarm.h"
#include "base/mw_timer.h"

static _Thread_local volatile sig_atomic_t fired;
static _Atomic int fired_elsewhere;
static _Thread_local int is_main;

static void on_alarm(void) {
  if (is_main) fired++;
  else atomic_fetch_add(&fired_elsewhere, 1);
}

/* Spins (no system call to be interrupted) until the alarm fired or `for`
 * seconds passed; returns when it fired, or -1. */
static double spin_until_fired(double start, double secs) {
  while (mw_now() - start < secs)
    if (fired) return mw_now() - start;
  return -1;
}

static void test_fires_when_due(void) {
  mw_alarm *a = mw_alarm_self();
  MW_CHECK(a != NULL);
  MW_CHECK(mw_alarm_self() == a);
  fired = 0;
  double t0 = mw_now();
  MW_CHECK(mw_alarm_arm(a, t0 + 0.02) == 0);
  double took = spin_until_fired(t0, 2);
  MW_CHECK(took >= 0.02);
  MW_CHECK(took < 1);
  MW_CHECK_INT(fired, 1);
  /* once: the arming is used up, nothing more comes */
  spin_until_fired(mw_now(), 0.05);
  MW_CHECK_INT(fired, 1);
  MW_CHECK(mw_alarm_arm(a, 0) == 0);
}

static void test_disarmed_never_fires(void) {
  mw_alarm *a = mw_alarm_self();
  fired = 0;
  for (int i = 0; i < 1000; i++) {
    mw_alarm_arm(a, mw_now() + 1);
    mw_alarm_arm(a, 0);
  }
  spin_until_fired(mw_now(), 1.1);
  MW_CHECK_INT(fired, 0);
}

static void test_nested_put_back(void) {
  mw_alarm *a = mw_alarm_self();
  fired = 0;
  double t0 = mw_now(), outer = t0 + 0.03;
  mw_alarm_arm(a, outer);
  double old = mw_alarm_arm(a, t0 + 10);
  MW_CHECK(old > outer - 1e-6 && old < outer + 1e-6);
  mw_alarm_arm(a, old); /* the inner run ended: the outer's time again */
  MW_CHECK(spin_until_fired(t0, 2) >= 0.03);
  mw_alarm_arm(a, 0);
}

/* A far arming, then a near one from another thread while the watchdog
 * sleeps towards the far one: the near one wakes it. */
static void *near_arm(void *arg) {
  (void)arg;
  mw_alarm *a = mw_alarm_self();
  if (!a) return NULL;
  mw_alarm_arm(a, mw_now() + 0.01);
  double t0 = mw_now();
  while (mw_now() - t0 < 1 && !atomic_load(&fired_elsewhere)) {
  }
  mw_alarm_arm(a, 0);
  return NULL;
}

static void test_earlier_arming_wakes(void) {
  mw_alarm *a = mw_alarm_self();
  fired = 0;
  mw_alarm_arm(a, mw_now() + 30);
  /* let the watchdog go to sleep for 30 s (its tick passes) */
  double t0 = mw_now();
  while (mw_now() - t0 < 0.05) {
  }
  pthread_t t;
  MW_CHECK_INT(pthread_create(&t, NULL, near_arm, NULL), 0);
  pthread_join(t, NULL);
  MW_CHECK_INT(atomic_load(&fired_elsewhere), 1);
  MW_CHECK_INT(fired, 0);
  mw_alarm_arm(a, 0);
}

int main(void) {
  is_main = 1;
  MW_CHECK_INT(mw_alarm_init(on_alarm), 0);
  MW_RUN(test_fires_when_due);
  MW_RUN(test_disarmed_never_fires);
  MW_RUN(test_nested_put_back);
  MW_RUN(test_earlier_arming_wakes);
  return mw_test_done();
}
