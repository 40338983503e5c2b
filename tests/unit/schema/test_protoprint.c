/* mw_protoprint: .proto files compiled by protoc, loaded into a schema and
 * printed back must read as their source (tests/data/protoprint/, written
 * in the printer's layout: two-space indents, no comments); and type names
 * are the shortest that resolve the same, where the plain one is shadowed
 * too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_fs.h"
#include "schema/mw_protoprint.h"
#include "schema/mw_schema.h"
#include "mw_test.h"

#define DATA MW_TEST_DATA "/protoprint"

static mw_schema *load(const char *const *files, size_t n) {
  const char *inc[] = {DATA};
  mw_diag diag = {0};
  size_t len = 0;
  char *set = mw_protoc_compile(files, n, inc, 1, &len, &diag);
  MW_CHECK(set != NULL);
  mw_schema *s = mw_schema_new();
  MW_CHECK(s && set && mw_schema_add_set(s, set, len, "test", &diag) == 0);
  for (size_t i = 0; i < diag.n; i++) fprintf(stderr, "%s\n", diag.msgs[i]);
  mw_diag_free(&diag);
  free(set);
  return s;
}

static char *source(const char *name) {
  char path[512], *data = NULL;
  size_t len = 0;
  snprintf(path, sizeof path, "%s/%s", DATA, name);
  MW_CHECK(mw_fs_read(path, 0, &data, &len, NULL) == MW_FS_OK);
  return data;
}

/* The block of src that starts with the line `head` (at column 0) and
 * ends at the next "}" at column 0. */
static char *block(const char *src, const char *head) {
  char at_bol[256];
  snprintf(at_bol, sizeof at_bol, "\n%s", head);
  const char *p = strstr(src, at_bol);
  if (p) p++;
  const char *end = p ? strstr(p, "\n}\n") : NULL;
  MW_CHECK(p && end);
  return p && end ? strndup(p, (size_t)(end - p) + 3) : strdup("");
}

static void test_files(void) {
  mw_test_current = "files";
  const char *files[] = {"shop.proto", "legacy.proto"};
  mw_schema *s = load(files, 2);
  const upb_DefPool *pool = mw_schema_pool(s);
  for (size_t i = 0; i < 2; i++) {
    mw_buf b = {0};
    mw_protoprint_file(&b, upb_DefPool_FindFileByName(pool, files[i]));
    char *want = source(files[i]);
    MW_CHECK(!b.oom);
    MW_CHECK_STR(b.p, want);
    free(want);
    mw_buf_free(&b);
  }
  mw_schema_free(s);
}

static void test_parts(void) {
  mw_test_current = "parts";
  const char *files[] = {"shop.proto"};
  mw_schema *s = load(files, 1);
  const upb_DefPool *pool = mw_schema_pool(s);
  char *src = source("shop.proto");

  mw_buf b = {0};
  mw_protoprint_message(&b, upb_DefPool_FindMessageByName(pool, "shop.Item"), 0);
  char *want = block(src, "message Item {");
  MW_CHECK_STR(b.p, want);
  free(want);
  mw_buf_free(&b);

  mw_protoprint_service(&b, upb_DefPool_FindServiceByName(pool, "shop.Shop"), 0);
  want = block(src, "service Shop {");
  MW_CHECK_STR(b.p, want);
  free(want);
  mw_buf_free(&b);

  mw_protoprint_enum(&b, upb_DefPool_FindEnumByName(pool, "shop.Color"), 0);
  want = block(src, "enum Color {");
  MW_CHECK_STR(b.p, want);
  free(want);
  mw_buf_free(&b);

  /* A nested message alone, at indent 0: its names stay relative to its
   * own scope. */
  mw_protoprint_message(&b, upb_DefPool_FindMessageByName(pool, "shop.Item.Detail"), 1);
  MW_CHECK_CONTAINS(b.p, "  message Detail {\n    string text = 1;\n");
  MW_CHECK_CONTAINS(b.p, "    shop.Color outer = 3;\n"); /* Color alone is Detail.Color */
  mw_buf_free(&b);

  const upb_ServiceDef *svc = upb_DefPool_FindServiceByName(pool, "shop.Shop");
  mw_protoprint_method(&b, upb_ServiceDef_FindMethodByName(svc, "Chat"), 0);
  MW_CHECK_STR(b.p, "rpc Chat(stream Item) returns (stream Item);\n");
  mw_buf_free(&b);
  free(src);
  mw_schema_free(s);
}

int main(void) {
  test_files();
  test_parts();
  return mw_test_done();
}
