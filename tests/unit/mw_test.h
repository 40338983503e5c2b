/* A small test harness for the C unit tests: checks record failures with
 * file:line and go on; mw_test_done() prints "N passed, N failed". */
#ifndef MW_TEST_H
#define MW_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int mw_test_passed, mw_test_failed;
static const char *mw_test_current = "?";

#define MW_CHECK(cond)                                                        \
  do {                                                                        \
    if (cond) {                                                               \
      mw_test_passed++;                                                       \
    } else {                                                                  \
      mw_test_failed++;                                                       \
      fprintf(stderr, "%s:%d: [%s] check failed: %s\n", __FILE__, __LINE__,   \
              mw_test_current, #cond);                                        \
    }                                                                         \
  } while (0)

#define MW_CHECK_INT(a, b)                                                    \
  do {                                                                        \
    long long mw_a_ = (long long)(a), mw_b_ = (long long)(b);                 \
    if (mw_a_ == mw_b_) {                                                     \
      mw_test_passed++;                                                       \
    } else {                                                                  \
      mw_test_failed++;                                                       \
      fprintf(stderr, "%s:%d: [%s] %s == %s: %lld != %lld\n", __FILE__,       \
              __LINE__, mw_test_current, #a, #b, mw_a_, mw_b_);               \
    }                                                                         \
  } while (0)

#define MW_CHECK_STR(a, b)                                                    \
  do {                                                                        \
    const char *mw_a_ = (a), *mw_b_ = (b);                                    \
    if (mw_a_ && mw_b_ && strcmp(mw_a_, mw_b_) == 0) {                        \
      mw_test_passed++;                                                       \
    } else {                                                                  \
      mw_test_failed++;                                                       \
      fprintf(stderr, "%s:%d: [%s] %s == %s: \"%s\" != \"%s\"\n", __FILE__,   \
              __LINE__, mw_test_current, #a, #b, mw_a_ ? mw_a_ : "(null)",    \
              mw_b_ ? mw_b_ : "(null)");                                      \
    }                                                                         \
  } while (0)

/* Substring check, for error messages. */
#define MW_CHECK_CONTAINS(hay, needle)                                        \
  do {                                                                        \
    const char *mw_h_ = (hay), *mw_n_ = (needle);                             \
    if (mw_h_ && strstr(mw_h_, mw_n_)) {                                      \
      mw_test_passed++;                                                       \
    } else {                                                                  \
      mw_test_failed++;                                                       \
      fprintf(stderr, "%s:%d: [%s] \"%s\" does not contain \"%s\"\n",         \
              __FILE__, __LINE__, mw_test_current, mw_h_ ? mw_h_ : "(null)",  \
              mw_n_);                                                         \
    }                                                                         \
  } while (0)

#define MW_RUN(fn)                                                            \
  do {                                                                        \
    mw_test_current = #fn;                                                    \
    fn();                                                                     \
  } while (0)

static inline int mw_test_done(void) {
  printf("%d passed, %d failed\n", mw_test_passed, mw_test_failed);
  return mw_test_failed == 0 ? 0 : 1;
}

#endif
