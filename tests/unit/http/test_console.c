/* mw_console's request templates: every field from its type, by stub
 * mode's rule, in proto3 JSON with JSON names; recursion stops at a type
 * already being filled; the well-known types in their JSON forms; one
 * field per oneof (a proto3 optional is not a oneof of its own here). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/mw_console.h"
#include "schema/mw_schema.h"
#include "mw_test.h"

#define DATA MW_TEST_DATA "/console"

static mw_schema *load(void) {
  const char *files[] = {"template.proto"};
  const char *inc[] = {DATA};
  mw_diag diag = {0};
  size_t len = 0;
  char *set = mw_protoc_compile(files, 1, inc, 1, &len, &diag);
  MW_CHECK(set != NULL);
  mw_schema *s = mw_schema_new();
  MW_CHECK(s && set && mw_schema_add_set(s, set, len, "test", &diag) == 0);
  for (size_t i = 0; i < diag.n; i++) fprintf(stderr, "%s\n", diag.msgs[i]);
  mw_diag_free(&diag);
  free(set);
  return s;
}

static void expect(const mw_schema *s, const char *type, const char *want) {
  const upb_MessageDef *m = upb_DefPool_FindMessageByName(mw_schema_pool(s), type);
  MW_CHECK(m != NULL);
  if (!m) return;
  size_t len = 0;
  char *got = mw_console_template_json(m, &len);
  MW_CHECK(got != NULL);
  MW_CHECK_STR(got ? got : "", want);
  MW_CHECK(got && len == strlen(got));
  free(got);
}

static void test_templates(void) {
  mw_test_current = "templates";
  mw_schema *s = load();
  expect(s, "tpl.All",
         "{\"userName\":\"user_name\",\"i32\":1,\"u64\":1,\"d\":1.5,\"f\":1.5,\"b\":true,"
         "\"raw\":\"\",\"color\":\"COLOR_UNSPECIFIED\",\"tags\":[\"tags\"],"
         "\"counts\":{\"key\":1},\"byId\":{\"1\":{\"id\":1}},\"flags\":{\"true\":"
         "\"COLOR_UNSPECIFIED\"},\"node\":{\"id\":1},\"at\":\"1970-01-01T00:00:00Z\","
         "\"took\":\"1s\",\"label\":\"value\",\"maybe\":1,\"extra\":{},\"first\":\"first\","
         "\"opt\":\"opt\"}");
  /* A recursive type: itself once, its fields of its own type left out. */
  expect(s, "tpl.Node", "{\"id\":1}");
  expect(s, "tpl.Empty", "{}");
  mw_schema_free(s);
}

int main(void) {
  test_templates();
  return mw_test_done();
}
