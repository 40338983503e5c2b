/* Abseil's mutex deadlock detection is off once mw_absl_fast_mutexes() has
 * run. Debian's Abseil is built with it on and set to abort: taking two
 * mutexes in one order and later in the other (no deadlock, one thread)
 * would end this process with "dying due to potential deadlock". */
#include <grpc/support/sync.h>

#include "base/mw_absl.h"
#include "mw_test.h"

static void test_lock_order_inversion_is_not_fatal(void) {
  mw_absl_fast_mutexes();
  mw_absl_fast_mutexes(); /* twice is harmless */
  gpr_mu a, b;
  gpr_mu_init(&a);
  gpr_mu_init(&b);
  gpr_mu_lock(&a);
  gpr_mu_lock(&b);
  gpr_mu_unlock(&b);
  gpr_mu_unlock(&a);
  gpr_mu_lock(&b);
  gpr_mu_lock(&a); /* the inversion: aborts while detection is on */
  gpr_mu_unlock(&a);
  gpr_mu_unlock(&b);
  gpr_mu_destroy(&a);
  gpr_mu_destroy(&b);
  MW_CHECK(1); /* reaching here is the test */
}

int main(void) {
  MW_RUN(test_lock_order_inversion_is_not_fatal);
  return mw_test_done();
}
