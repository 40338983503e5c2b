/* Unit tests for mw_jscan: the ends of values, arrays, members and
 * strings, and malformed texts refused. */
#include <string.h>

#include "base/mw_jscan.h"
#include "mw_test.h"

static const char *end_of(const char *s) { return mw_jscan_value(s, s + strlen(s)); }

static void test_values(void) {
  const char *ok[] = {"1", "-1.5e3", "true", "false", "null", "\"a\\\"b\"", "\"\\u00e9\"",
                      "[]", "{}", "[1, [2, {\"a\": [3]}]]", " {\"k\" : \"v\" , \"n\": 1 } "};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    const char *e = end_of(ok[i]);
    MW_CHECK(e != NULL);
    if (e) MW_CHECK(*mw_jscan_ws(e, ok[i] + strlen(ok[i])) == 0);
  }
  const char *bad[] = {"", "[", "{\"a\"}", "{\"a\":}", "[1,]x", "\"open", "\"\\x\"",
                       "\"\\u12\"", "tru", "{1: 2}", "[1 2]", "\"a\nb\""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) MW_CHECK(end_of(bad[i]) == NULL);
  /* nesting past the bound is refused, not a stack overflow */
  char deep[200];
  memset(deep, '[', 100);
  memset(deep + 100, ']', 100);
  MW_CHECK(mw_jscan_value(deep, deep + 200) == NULL);
}

static int count_cb(void *ud, const char *v, const char *ve) {
  int *n = ud;
  (*n)++;
  return (ve - v) == 0;
}

static void test_arrays_and_members(void) {
  const char *a = "[{\"a\": 1}, 2, \"x\"]";
  int n = 0;
  MW_CHECK_INT(mw_jscan_array(a, a + strlen(a), count_cb, &n), 3);
  MW_CHECK_INT(n, 3);
  MW_CHECK_INT(mw_jscan_array("{}", "{}" + 2, count_cb, &n), -1);
  const char *o = "{\"service\": \"pkg.S\", \"inner\": {\"method\": \"no\"}, \"method\": \"M\"}";
  const char *v, *ve;
  char buf[32];
  MW_CHECK_INT(mw_jscan_member(o, o + strlen(o), "method", &v, &ve), 1);
  MW_CHECK_INT(mw_jscan_string(v, ve, buf, sizeof buf), 1);
  MW_CHECK_STR(buf, "M"); /* the top-level member, not the nested one */
  MW_CHECK_INT(mw_jscan_member(o, o + strlen(o), "id", &v, &ve), 0);
  MW_CHECK_INT(mw_jscan_member("[1]", "[1]" + 3, "id", &v, &ve), -1);
}

static void test_strings(void) {
  char buf[16];
  const char *s = "\"a\\n\\u00e9\\\"\"";
  MW_CHECK_INT(mw_jscan_string(s, s + strlen(s), buf, sizeof buf), 5);
  MW_CHECK_STR(buf, "a\n\xc3\xa9\"");
  const char *n = "12";
  MW_CHECK_INT(mw_jscan_string(n, n + 2, buf, sizeof buf), -1);
  const char *big = "\"0123456789abcdefgh\"";
  MW_CHECK_INT(mw_jscan_string(big, big + strlen(big), buf, sizeof buf), -1);
}

int main(void) {
  MW_RUN(test_values);
  MW_RUN(test_arrays_and_members);
  MW_RUN(test_strings);
  return mw_test_done();
}
