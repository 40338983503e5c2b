/* Unit tests for mw_stubreg: stubs added, replaced, deleted and listed,
 * the version every change moves, the bounded history and exact counts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mw_test.h"
#include "shared/mw_stubreg.h"

static void count_each(void *ud, const char *id, const char *json, size_t len, uint64_t serial) {
  (void)id;
  (void)json;
  (void)len;
  (void)serial;
  (*(int *)ud)++;
}

static void test_stubs(void) {
  char id[MW_STUBREG_ID_MAX];
  const char *why = NULL;
  uint64_t v0 = mw_stubreg_version();
  MW_CHECK_INT(mw_stubreg_add("{\"a\":1}", 7, "one", id, &why), 0);
  MW_CHECK_STR(id, "one");
  MW_CHECK(mw_stubreg_version() > v0);
  MW_CHECK_INT(mw_stubreg_add("{\"b\":2}", 7, NULL, id, &why), 0);
  MW_CHECK_INT((int)strlen(id), 36); /* a UUID */
  MW_CHECK_INT(mw_stubreg_add("{\"a\":3}", 7, "one", id, &why), 0); /* replaced */
  int n = 0;
  mw_stubreg_each(count_each, &n);
  MW_CHECK_INT(n, 2);
  size_t len;
  char *j = mw_stubreg_stubs_json(&len);
  MW_CHECK(j && strstr(j, "{\"id\":\"one\",\"stub\":{\"a\":3}}") != NULL);
  free(j);
  char long_id[100];
  memset(long_id, 'x', 99);
  long_id[99] = 0;
  MW_CHECK_INT(mw_stubreg_add("{}", 2, long_id, id, &why), -1);
  MW_CHECK(why != NULL);
  j = mw_stubreg_stub_json("one", 3, &len);
  MW_CHECK(j && strcmp(j, "{\"id\":\"one\",\"stub\":{\"a\":3}}\n") == 0);
  free(j);
  MW_CHECK(mw_stubreg_stub_json("none", 4, &len) == NULL && len == 0);
  MW_CHECK_INT(mw_stubreg_delete("one", 3), 1);
  MW_CHECK_INT(mw_stubreg_delete("one", 3), 0);
  mw_stubreg_clear();
  n = 0;
  mw_stubreg_each(count_each, &n);
  MW_CHECK_INT(n, 0);
}

static void test_history(void) {
  for (int i = 0; i < MW_STUBREG_HISTORY + 5; i++)
    mw_stubreg_record("pkg.Greeter", "SayHello", i % 2 ? "s1" : "", "{\"n\":1}", 7, 0);
  mw_stubreg_record("pkg.Greeter", "Other", NULL, "", 0, 12);
  MW_CHECK_INT((long long)mw_stubreg_count("pkg.Greeter", "SayHello"), MW_STUBREG_HISTORY + 5);
  MW_CHECK_INT((long long)mw_stubreg_count("Greeter", "SayHello"), MW_STUBREG_HISTORY + 5);
  MW_CHECK_INT((long long)mw_stubreg_count("reeter", "SayHello"), 0);
  MW_CHECK_INT((long long)mw_stubreg_count("pkg.Greeter", "Other"), 1);
  size_t len;
  char *j = mw_stubreg_history_json(&len);
  int entries = 0;
  for (const char *p = j; p && (p = strstr(p, "\"service\":")); p++) entries++;
  MW_CHECK_INT(entries, MW_STUBREG_HISTORY); /* bounded; the oldest dropped */
  MW_CHECK(j && strstr(j, "\"method\":\"Other\",\"stub\":null,\"request\":null,\"code\":12"));
  free(j);
  mw_stubreg_clear_history();
  MW_CHECK_INT((long long)mw_stubreg_count("pkg.Greeter", "SayHello"), 0);
  mw_stubreg_free();
  mw_stubreg_free(); /* safe twice */
}

int main(void) {
  MW_RUN(test_stubs);
  MW_RUN(test_history);
  return mw_test_done();
}
