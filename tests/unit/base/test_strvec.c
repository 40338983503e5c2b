/* Unit tests for mw_strvec: owned strings, lookups, sorting, and borrowed
 * arrays copied on their first change. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_strvec.h"
#include "mw_test.h"

static void test_push_take_has(void) {
  mw_strvec l = {0};
  MW_CHECK_INT(mw_strvec_push(&l, "b"), 0);
  MW_CHECK_INT(mw_strvec_take(&l, strdup("a")), 0);
  MW_CHECK_INT(l.n, 2);
  if (l.n == 2) {
    MW_CHECK_STR(l.v[0], "b");
    MW_CHECK_STR(l.v[1], "a");
  }
  MW_CHECK(mw_strvec_has(&l, "a"));
  MW_CHECK(!mw_strvec_has(&l, "c"));
  /* a failed allocation passed on, and a missing string, are refused */
  MW_CHECK_INT(mw_strvec_take(&l, NULL), -1);
  MW_CHECK_INT(mw_strvec_push(&l, NULL), -1);
  MW_CHECK_INT(l.n, 2);
  /* the vector holds copies */
  char buf[] = "x";
  MW_CHECK_INT(mw_strvec_push(&l, buf), 0);
  buf[0] = 'y';
  if (l.n == 3) MW_CHECK_STR(l.v[2], "x");
  mw_strvec_free(&l);
  mw_strvec_free(&l);
  MW_CHECK(l.v == NULL && l.n == 0 && l.cap == 0);
}

static void test_growth(void) {
  mw_strvec l = {0};
  char s[16];
  for (int i = 0; i < 1000; i++) {
    snprintf(s, sizeof s, "s%d", i);
    MW_CHECK_INT(mw_strvec_push(&l, s), 0);
  }
  MW_CHECK_INT(l.n, 1000);
  MW_CHECK(l.cap >= l.n);
  int ok = 1;
  for (int i = 0; i < 1000 && (size_t)i < l.n; i++) {
    snprintf(s, sizeof s, "s%d", i);
    ok &= strcmp(l.v[i], s) == 0;
  }
  MW_CHECK(ok);
  mw_strvec_free(&l);
}

static void test_sort(void) {
  mw_strvec l = {0};
  const char *in[] = {"pear", "apple", "a/b.proto", "a.proto", "Zed", "fig"};
  for (size_t i = 0; i < sizeof in / sizeof *in; i++) mw_strvec_push(&l, in[i]);
  MW_CHECK_INT(mw_strvec_sort(&l), 0);
  const char *want[] = {"Zed", "a.proto", "a/b.proto", "apple", "fig", "pear"};
  MW_CHECK_INT(l.n, 6);
  for (size_t i = 0; i < 6 && i < l.n; i++) MW_CHECK_STR(l.v[i], want[i]);
  for (size_t i = 0; i < 6; i++) MW_CHECK(mw_strvec_has_sorted(&l, want[i]));
  MW_CHECK(!mw_strvec_has_sorted(&l, "banana"));
  MW_CHECK(!mw_strvec_has_sorted(&l, ""));
  mw_strvec_free(&l);
  mw_strvec empty = {0};
  MW_CHECK_INT(mw_strvec_sort(&empty), 0);
  MW_CHECK(!mw_strvec_has_sorted(&empty, "x"));
}

static void test_set1(void) {
  mw_strvec l = {0};
  MW_CHECK_INT(mw_strvec_set1(&l, "a"), 0);
  MW_CHECK_INT(mw_strvec_push(&l, "b"), 0);
  MW_CHECK_INT(mw_strvec_set1(&l, "c"), 0);
  MW_CHECK_INT(l.n, 1);
  if (l.n) MW_CHECK_STR(l.v[0], "c");
  /* a failure leaves the vector as it was */
  MW_CHECK_INT(mw_strvec_set1(&l, NULL), -1);
  MW_CHECK_INT(l.n, 1);
  if (l.n) MW_CHECK_STR(l.v[0], "c");
  mw_strvec_free(&l);
}

/* Borrowed arrays are never written nor freed (under the sanitizers, a
 * free of these static strings would abort). */
static char s_one[] = "one", s_two[] = "two", s_three[] = "three";
static char *fixed[3] = {s_three, s_one, s_two};

static void check_fixed_untouched(void) {
  MW_CHECK(fixed[0] == s_three && fixed[1] == s_one && fixed[2] == s_two);
  MW_CHECK_STR(s_one, "one");
}

static void test_borrowed(void) {
  mw_strvec l = mw_strvec_borrow(fixed, 3);
  MW_CHECK_INT(l.n, 3);
  MW_CHECK(mw_strvec_has(&l, "two"));
  mw_strvec_free(&l); /* owns nothing */
  MW_CHECK(l.v == NULL && l.n == 0);
  check_fixed_untouched();

  /* the first change copies */
  l = mw_strvec_borrow(fixed, 3);
  MW_CHECK_INT(mw_strvec_push(&l, "four"), 0);
  MW_CHECK(l.v != fixed);
  MW_CHECK_INT(l.n, 4);
  if (l.n == 4) {
    MW_CHECK_STR(l.v[0], "three");
    MW_CHECK(l.v[0] != s_three);
    MW_CHECK_STR(l.v[3], "four");
  }
  mw_strvec_free(&l);
  check_fixed_untouched();

  /* sorting sorts a copy */
  l = mw_strvec_borrow(fixed, 3);
  MW_CHECK_INT(mw_strvec_sort(&l), 0);
  if (l.n == 3) {
    MW_CHECK_STR(l.v[0], "one");
    MW_CHECK_STR(l.v[2], "two");
  }
  MW_CHECK(mw_strvec_has_sorted(&l, "three"));
  mw_strvec_free(&l);
  check_fixed_untouched();

  /* set1 replaces without freeing the borrowed array */
  l = mw_strvec_borrow(fixed, 3);
  MW_CHECK_INT(mw_strvec_set1(&l, "x"), 0);
  MW_CHECK_INT(l.n, 1);
  mw_strvec_free(&l);
  check_fixed_untouched();

  /* borrowing nothing is an ordinary empty vector */
  l = mw_strvec_borrow(fixed, 0);
  MW_CHECK(l.v == NULL && l.n == 0);
  MW_CHECK_INT(mw_strvec_push(&l, "a"), 0);
  mw_strvec_free(&l);
  check_fixed_untouched();
}

int main(void) {
  MW_RUN(test_push_take_has);
  MW_RUN(test_growth);
  MW_RUN(test_sort);
  MW_RUN(test_set1);
  MW_RUN(test_borrowed);
  return mw_test_done();
}
