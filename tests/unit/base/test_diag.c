/* Unit tests for mw_diag: messages, moves, and running out of memory (the
 * allocator is made to fail), where messages are counted but never written
 * past the array. */
#include <stdlib.h>
#include <string.h>

#include "base/mw_diag.h"
#include "mw_test.h"

/* The next fail_next allocations fail (-1: all of them). */
static int fail_next;

static void *flaky_realloc(void *p, size_t size) {
  if (fail_next) {
    if (fail_next > 0) fail_next--;
    return NULL;
  }
  return realloc(p, size);
}

static void failing(int n) {
  fail_next = n;
  mw_diag_realloc = flaky_realloc;
}

static void healthy(void) {
  fail_next = 0;
  mw_diag_realloc = realloc;
}

static void check_invariants(const mw_diag *d) {
  MW_CHECK(d->n <= d->cap);
  MW_CHECK_INT(mw_diag_count(d), d->n + d->dropped);
}

static void test_add_move_free(void) {
  mw_diag d = {0}, e = {0};
  mw_diag_add(&d, "%s:%d: %s", "a.proto", 3, "bad");
  mw_diag_add(&d, "second");
  MW_CHECK_INT(mw_diag_count(&d), 2);
  MW_CHECK_STR(d.msgs[0], "a.proto:3: bad");
  mw_diag_add(&e, "first");
  mw_diag_move(&e, &d);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  MW_CHECK(d.msgs == NULL);
  MW_CHECK_INT(mw_diag_count(&e), 3);
  if (e.n == 3) {
    MW_CHECK_STR(e.msgs[0], "first");
    MW_CHECK_STR(e.msgs[2], "second");
  }
  check_invariants(&e);
  mw_diag_free(&e);
  mw_diag_free(&e);
  MW_CHECK_INT(mw_diag_count(&e), 0);
}

static void test_no_room_is_counted_not_written(void) {
  mw_diag d = {0};
  /* the array cannot even be allocated */
  failing(-1);
  mw_diag_add(&d, "lost");
  healthy();
  MW_CHECK_INT(mw_diag_count(&d), 1);
  MW_CHECK_INT(d.n, 0);
  MW_CHECK_INT(d.dropped, 1);
  mw_diag_add(&d, "kept");
  MW_CHECK_INT(mw_diag_count(&d), 2);
  MW_CHECK_INT(d.n, 1);
  if (d.n) MW_CHECK_STR(d.msgs[0], "kept");
  check_invariants(&d);

  /* a full array that cannot grow: the next messages are only counted,
   * and the one after the memory is back lands in the grown array */
  for (int i = 0; i < 7; i++) mw_diag_add(&d, "m%d", i);
  MW_CHECK_INT(d.n, 8);
  MW_CHECK_INT(d.cap, 8);
  failing(-1);
  mw_diag_add(&d, "dropped 1");
  mw_diag_add(&d, "dropped 2");
  healthy();
  check_invariants(&d);
  MW_CHECK_INT(d.n, 8);
  MW_CHECK_INT(d.dropped, 3);
  MW_CHECK_INT(mw_diag_count(&d), 11);
  mw_diag_add(&d, "after");
  check_invariants(&d);
  MW_CHECK_INT(mw_diag_count(&d), 12);
  MW_CHECK_INT(d.n, 9);
  if (d.n == 9) {
    MW_CHECK_STR(d.msgs[7], "m6");
    MW_CHECK_STR(d.msgs[8], "after");
  }
  /* every slot below n is readable without a cap guard */
  size_t texts = 0;
  for (size_t i = 0; i < d.n; i++) texts += d.msgs[i] != NULL;
  MW_CHECK_INT(texts, 9);
  mw_diag_free(&d);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  MW_CHECK_INT(d.dropped, 0);
}

static void test_lost_text_keeps_its_slot(void) {
  mw_diag d = {0};
  mw_diag_add(&d, "one");
  failing(1); /* the text's allocation fails, the array has room */
  mw_diag_add(&d, "two");
  healthy();
  MW_CHECK_INT(mw_diag_count(&d), 2);
  MW_CHECK_INT(d.n, 2);
  MW_CHECK(d.msgs[1] == NULL);
  check_invariants(&d);

  /* a move keeps the count: lost texts say so, dropped ones stay dropped */
  mw_diag e = {0};
  failing(-1); /* no array at all */
  mw_diag_add(&e, "three");
  healthy();
  MW_CHECK_INT(e.dropped, 1);
  mw_diag_move(&d, &e);
  MW_CHECK_INT(mw_diag_count(&e), 0);
  MW_CHECK_INT(mw_diag_count(&d), 3);
  mw_diag dst = {0};
  mw_diag_move(&dst, &d);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  MW_CHECK_INT(d.dropped, 0);
  MW_CHECK_INT(mw_diag_count(&dst), 3);
  MW_CHECK_INT(dst.n, 2);
  if (dst.n == 2) {
    MW_CHECK_STR(dst.msgs[0], "one");
    MW_CHECK_STR(dst.msgs[1], "(message lost: out of memory)");
  }
  check_invariants(&dst);
  mw_diag_free(&dst);
}

int main(void) {
  MW_RUN(test_add_move_free);
  MW_RUN(test_no_room_is_counted_not_written);
  MW_RUN(test_lost_text_keeps_its_slot);
  return mw_test_done();
}
