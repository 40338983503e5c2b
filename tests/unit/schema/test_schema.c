/* mw_schema: protoc runs, descriptor sets, the service and file lists and
 * the error messages. Fixtures: tests/data/schema/<case>/. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "google/protobuf/descriptor.upb.h"
#include "schema/mw_schema.h"
#include "mw_test.h"

#define DATA MW_TEST_DATA "/schema"
#define TMP MW_TEST_TMP "/schema"

/* ---- helpers ---- */

static void mkdir_p(const char *path) {
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p == '/') {
      *p = 0;
      mkdir(buf, 0777);
      *p = '/';
    }
  }
  mkdir(buf, 0777);
}

static void write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  MW_CHECK(f != NULL);
  if (!f) return;
  MW_CHECK_INT(fwrite(data, 1, len, f), len);
  fclose(f);
}

/* All messages of a diag on one string, for MW_CHECK_CONTAINS. */
static char diag_buf[16384];
static const char *diag_text(const mw_diag *d) {
  diag_buf[0] = 0;
  for (size_t i = 0; i < d->n; i++) {
    size_t used = strlen(diag_buf);
    snprintf(diag_buf + used, sizeof diag_buf - used, "%s\n",
             d->msgs[i] ? d->msgs[i] : "(lost)");
  }
  return diag_buf;
}

static mw_schema *load(const char *const *dirs, size_t n_dirs,
                       const char *const *pp, size_t n_pp, mw_diag *d) {
  mw_schema_input in = {dirs, n_dirs, pp, n_pp, NULL, 0};
  return mw_schema_load(&in, d);
}

static int has_service(const mw_schema *s, const char *name) {
  for (size_t i = 0; i < mw_schema_service_count(s); i++)
    if (strcmp(upb_ServiceDef_FullName(mw_schema_service(s, i)), name) == 0)
      return 1;
  return 0;
}

/* How often the file (compared by realpath) is in the schema's list. */
static int file_listed(const mw_schema *s, const char *path) {
  char *rp = realpath(path, NULL);
  int n = 0;
  for (size_t i = 0; rp && i < mw_schema_file_count(s); i++)
    if (strcmp(mw_schema_file(s, i), rp) == 0) n++;
  free(rp);
  return n;
}

static int field_number(const upb_DefPool *pool, const char *msg,
                        const char *field) {
  const upb_MessageDef *m = upb_DefPool_FindMessageByName(pool, msg);
  if (!m) return -1;
  const upb_FieldDef *f = upb_MessageDef_FindFieldByName(m, field);
  return f ? (int)upb_FieldDef_Number(f) : -1;
}

/* The serialized set of greeter.proto with its import (empty.proto). */
static char *greeter_set(size_t *len) {
  static const char *files[] = {"greeter.proto"};
  static const char *incs[] = {DATA "/pset_src"};
  mw_diag d = {0};
  char *data = mw_protoc_compile(files, 1, incs, 1, len, &d);
  MW_CHECK(data != NULL);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  mw_diag_free(&d);
  return data;
}

/* The same set without its imports: greeter.proto only (the last file),
 * re-wrapped by hand as FileDescriptorSet field 1. Caller frees. */
static char *greeter_set_no_imports(size_t *len) {
  size_t full_len = 0;
  char *full = greeter_set(&full_len);
  char *out = NULL;
  *len = 0;
  upb_Arena *arena = upb_Arena_New();
  google_protobuf_FileDescriptorSet *set =
      full ? google_protobuf_FileDescriptorSet_parse(full, full_len, arena)
           : NULL;
  size_t n = 0;
  const google_protobuf_FileDescriptorProto *const *fds =
      set ? google_protobuf_FileDescriptorSet_file(set, &n) : NULL;
  MW_CHECK_INT(n, 2);
  if (n == 2) {
    upb_StringView name = google_protobuf_FileDescriptorProto_name(fds[1]);
    MW_CHECK(name.size == 13 && memcmp(name.data, "greeter.proto", 13) == 0);
    size_t flen = 0;
    char *fbytes =
        google_protobuf_FileDescriptorProto_serialize(fds[1], arena, &flen);
    out = malloc(flen + 11);
    size_t k = 0;
    out[k++] = 0x0a; /* field 1, length-delimited */
    for (size_t v = flen; ; v >>= 7) {
      out[k++] = (char)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
      if (v < 0x80) break;
    }
    memcpy(out + k, fbytes, flen);
    *len = k + flen;
  }
  upb_Arena_Free(arena);
  free(full);
  return out;
}

/* ---- tests ---- */

static void test_new_and_free(void) {
  mw_schema_free(NULL);
  mw_schema *s = mw_schema_new();
  MW_CHECK(s != NULL);
  MW_CHECK(mw_schema_pool(s) != NULL);
  MW_CHECK_INT(mw_schema_service_count(s), 0);
  MW_CHECK_INT(mw_schema_file_count(s), 0);
  MW_CHECK(mw_schema_service(s, 0) == NULL);
  MW_CHECK(mw_schema_file(s, 0) == NULL);
  mw_schema_free(s);

  /* No inputs at all: an empty schema, no error. */
  mw_diag d = {0};
  s = load(NULL, 0, NULL, 0, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  mw_schema_free(s);
  mw_diag_free(&d);
}

static void test_pair_with_any(void) {
  const char *dirs[] = {DATA "/pair"};
  mw_diag d = {0};
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_STR(diag_text(&d), "");
  if (s) {
    /* protoc orders a set by dependency: b.proto (imported) first. */
    MW_CHECK_INT(mw_schema_service_count(s), 2);
    MW_CHECK_STR(upb_ServiceDef_FullName(mw_schema_service(s, 0)),
                 "pair.ItemStore");
    MW_CHECK_STR(upb_ServiceDef_FullName(mw_schema_service(s, 1)),
                 "pair.Orders");
    const upb_ServiceDef *orders = mw_schema_service(s, 1);
    MW_CHECK_INT(upb_ServiceDef_MethodCount(orders), 2);
    const upb_MethodDef *place = upb_ServiceDef_FindMethodByName(orders, "Place");
    MW_CHECK(place != NULL);
    if (place) {
      MW_CHECK_STR(upb_MessageDef_FullName(upb_MethodDef_InputType(place)),
                   "pair.Order");
      MW_CHECK_STR(upb_MessageDef_FullName(upb_MethodDef_OutputType(place)),
                   "pair.Receipt");
    }
    const upb_MethodDef *watch = upb_ServiceDef_FindMethodByName(orders, "Watch");
    MW_CHECK(watch && upb_MethodDef_ServerStreaming(watch));
    MW_CHECK(upb_DefPool_FindMessageByName(mw_schema_pool(s),
                                           "google.protobuf.Any") != NULL);
    MW_CHECK_INT(field_number(mw_schema_pool(s), "pair.Order", "note"), 2);
    /* The files: the dir's own, absolute; not the well-known types. */
    MW_CHECK_INT(mw_schema_file_count(s), 2);
    MW_CHECK_INT(file_listed(s, DATA "/pair/a.proto"), 1);
    MW_CHECK_INT(file_listed(s, DATA "/pair/b.proto"), 1);
    for (size_t i = 0; i < mw_schema_file_count(s); i++)
      MW_CHECK(mw_schema_file(s, i)[0] == '/');
  }
  mw_schema_free(s);
  mw_diag_free(&d);
}

static void test_cycle(void) {
  const char *dirs[] = {DATA "/cycle"};
  mw_diag d = {0};
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_CONTAINS(diag_text(&d), "recursively imports itself");
  MW_CHECK_CONTAINS(diag_text(&d), DATA "/cycle/x.proto");
  mw_schema_free(s);
  mw_diag_free(&d);
}

static void test_nested_packages(void) {
  const char *dirs[] = {DATA "/nested"};
  mw_diag d = {0};
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_STR(diag_text(&d), "");
  if (s) {
    MW_CHECK_INT(mw_schema_service_count(s), 1);
    const upb_ServiceDef *svc = mw_schema_service(s, 0);
    MW_CHECK_STR(upb_ServiceDef_FullName(svc), "a.b.Nested");
    MW_CHECK_STR(upb_FileDef_Name(upb_ServiceDef_File(svc)), "a/b/c.proto");
    MW_CHECK(upb_DefPool_FindFileByName(mw_schema_pool(s), "a/b/d.proto") !=
             NULL);
    MW_CHECK_INT(mw_schema_file_count(s), 2);
    MW_CHECK_INT(file_listed(s, DATA "/nested/a/b/c.proto"), 1);
    MW_CHECK_INT(file_listed(s, DATA "/nested/a/b/d.proto"), 1);
  }
  mw_schema_free(s);
  mw_diag_free(&d);
}

static void test_broken_proto(void) {
  const char *dirs[] = {DATA "/broken"};
  mw_diag d = {0};
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK(mw_diag_count(&d) >= 1);
  /* protoc's file:line:column, with the path completed so it opens. */
  MW_CHECK_CONTAINS(diag_text(&d), DATA "/broken/broken.proto:7:");
  MW_CHECK_CONTAINS(diag_text(&d), "Expected field number");
  MW_CHECK(d.n > 0 && d.msgs[0] &&
           strncmp(d.msgs[0], DATA "/broken/broken.proto:7:", 
                   strlen(DATA "/broken/broken.proto:7:")) == 0);
  mw_diag_free(&d);

  /* A good dir next to the broken one: still one failure, the good one is
   * not reported. */
  const char *two[] = {DATA "/pair", DATA "/broken"};
  s = load(two, 2, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_CONTAINS(diag_text(&d), "broken.proto:7:");
  MW_CHECK(strstr(diag_text(&d), "pair") == NULL);
  mw_diag_free(&d);
}

static void test_missing_import(void) {
  const char *dirs[] = {DATA "/missing"};
  mw_diag d = {0};
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  const char *t = diag_text(&d);
  MW_CHECK_CONTAINS(t, "does/not/exist.proto: File not found (import paths: "
                       DATA "/missing");
  MW_CHECK_CONTAINS(t, DATA "/missing/uses_missing.proto:5:1: Import "
                       "\"does/not/exist.proto\" was not found");
  mw_diag_free(&d);
}

static void test_protoset(void) {
  mkdir_p(TMP "/pset/sub");
  size_t len = 0;
  char *data = greeter_set(&len);
  MW_CHECK(data && len > 0);
  if (!data) return;
  write_file(TMP "/pset/greeter.protoset", data, len);
  /* The same set again, as .pb below a subdirectory: loaded once. */
  write_file(TMP "/pset/sub/copy.pb", data, len);
  free(data);

  const char *dirs[] = {TMP "/pset"};
  mw_diag d = {0};
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_STR(diag_text(&d), "");
  if (s) {
    MW_CHECK_INT(mw_schema_service_count(s), 1);
    MW_CHECK_STR(upb_ServiceDef_FullName(mw_schema_service(s, 0)),
                 "greet.Greeter");
    MW_CHECK_INT(upb_ServiceDef_MethodCount(mw_schema_service(s, 0)), 2);
    MW_CHECK_INT(mw_schema_file_count(s), 2);
    MW_CHECK_INT(file_listed(s, TMP "/pset/greeter.protoset"), 1);
    MW_CHECK_INT(file_listed(s, TMP "/pset/sub/copy.pb"), 1);
  }
  mw_schema_free(s);
  mw_diag_free(&d);
}

static void test_set_without_imports(void) {
  size_t full_len = 0, len = 0;
  char *full = greeter_set(&full_len);
  char *noimp = greeter_set_no_imports(&len);
  MW_CHECK(full && noimp);
  if (!full || !noimp) {
    free(full);
    free(noimp);
    return;
  }

  /* Alone, its dependency is missing: upb says so, with the origin. */
  mw_diag d = {0};
  mw_schema *s = mw_schema_new();
  MW_CHECK_INT(mw_schema_add_set(s, noimp, len, "greeter-noimp", &d), -1);
  MW_CHECK_CONTAINS(diag_text(&d), "greeter-noimp");
  MW_CHECK_CONTAINS(diag_text(&d), "google/protobuf/empty.proto");
  MW_CHECK_INT(mw_schema_service_count(s), 0);
  mw_diag_free(&d);
  /* With the full set first it loads; repeated files are skipped. */
  MW_CHECK_INT(mw_schema_add_set(s, full, full_len, "greeter-full", &d), 0);
  MW_CHECK_INT(mw_schema_add_set(s, noimp, len, "greeter-noimp", &d), 0);
  MW_CHECK_INT(mw_schema_add_set(s, full, full_len, "greeter-full", &d), 0);
  MW_CHECK_STR(diag_text(&d), "");
  MW_CHECK_INT(mw_schema_service_count(s), 1);
  mw_schema_free(s);

  /* In a dir: loaded after every dir's .proto files, so pair's import of
   * empty.proto satisfies it even though its dir comes first. */
  mkdir_p(TMP "/pset_noimp");
  write_file(TMP "/pset_noimp/greeter.pb", noimp, len);
  const char *dirs[] = {TMP "/pset_noimp", DATA "/pair"};
  s = load(dirs, 2, NULL, 0, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_STR(diag_text(&d), "");
  MW_CHECK_INT(mw_schema_service_count(s), 3);
  MW_CHECK(has_service(s, "greet.Greeter"));
  MW_CHECK(has_service(s, "pair.Orders"));
  MW_CHECK(has_service(s, "pair.ItemStore"));
  mw_schema_free(s);
  mw_diag_free(&d);

  /* Alone in a dir: an error naming the set. */
  const char *alone[] = {TMP "/pset_noimp"};
  s = load(alone, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_CONTAINS(diag_text(&d), TMP "/pset_noimp/greeter.pb");
  MW_CHECK_CONTAINS(diag_text(&d), "google/protobuf/empty.proto");
  mw_diag_free(&d);
  free(full);
  free(noimp);
}

static void test_bad_sets(void) {
  mkdir_p(TMP "/badset");
  const char junk[] = "this is not a descriptor set\n";
  write_file(TMP "/badset/bad.pb", junk, sizeof junk - 1);
  write_file(TMP "/badset/empty.protoset", "", 0);
  const char *dirs[] = {TMP "/badset"};
  mw_diag d = {0};
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_INT(mw_diag_count(&d), 2);
  MW_CHECK_CONTAINS(diag_text(&d), TMP "/badset/bad.pb: not a descriptor set");
  MW_CHECK_CONTAINS(diag_text(&d),
                    TMP "/badset/empty.protoset: not a descriptor set");
  mw_diag_free(&d);

  s = mw_schema_new();
  MW_CHECK_INT(mw_schema_add_set(s, junk, sizeof junk - 1, "junk", &d), -1);
  MW_CHECK_CONTAINS(diag_text(&d), "junk: not a descriptor set");
  mw_schema_free(s);
  mw_diag_free(&d);
}

/* Found by tests/fuzz/fuzz_schema (corpus/schema/name-with-nul): a file
 * named with a NUL byte loaded under two names, and the same set added
 * again failed with "duplicate file name". */
static void test_file_name_with_nul(void) {
  /* FileDescriptorSet { file { name: "a\0b.proto" } } */
  static const char set[] = "\x0a\x0b\x0a\x09" "a\0b.proto";
  mw_schema *s = mw_schema_new();
  mw_diag d = {0};
  MW_CHECK_INT(mw_schema_add_set(s, set, sizeof set - 1, "nul.pb", &d), -1);
  MW_CHECK_CONTAINS(diag_text(&d), "nul.pb: the descriptor set holds a file "
                                   "whose name contains a NUL byte");
  MW_CHECK_INT(mw_schema_pool_file_count(s), 0);
  mw_diag_free(&d);
  /* The same name without the NUL loads, and loads again. */
  static const char ok[] = "\x0a\x0a\x0a\x08" "ab.proto";
  MW_CHECK_INT(mw_schema_add_set(s, ok, sizeof ok - 1, "ok.pb", &d), 0);
  MW_CHECK_INT(mw_schema_add_set(s, ok, sizeof ok - 1, "ok.pb", &d), 0);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  mw_diag_free(&d);
  mw_schema_free(s);
}

/* Found by tests/fuzz/fuzz_schema (corpus/schema/map-entry-key-58): a map
 * entry whose key is not field 1 crashed upb 1.51 inside
 * upb_DefPool_AddFile. */
static void test_bad_map_entry(void) {
  /* FileDescriptorSet { file { name: "m.proto" message_type { name: "M"
   *   nested_type { name: "E" field { name: "key" number: K type: INT32 }
   *   field { name: "value" number: 2 type: INT32 } options { map_entry:
   *   true } } } } }, K in the byte marked below. */
  static const char tmpl[] =
      "\x0a\x2f\x0a\x07m.proto\x22\x24\x0a\x01M\x1a\x1f\x0a\x01" "E"
      "\x12\x09\x0a\x03key\x18\x01\x28\x05"
      "\x12\x0b\x0a\x05value\x18\x02\x28\x05\x3a\x02\x38\x01";
  char set[sizeof tmpl];
  memcpy(set, tmpl, sizeof tmpl);
  const size_t key_number = 29; /* the byte after the key's \x18 */
  MW_CHECK_INT(set[key_number], 1);
  static const char bad[] = {58, 0, 2, 3};
  for (size_t i = 0; i < sizeof bad; i++) {
    set[key_number] = bad[i];
    mw_schema *s = mw_schema_new();
    mw_diag d = {0};
    MW_CHECK_INT(mw_schema_add_set(s, set, sizeof set - 1, "m.pb", &d), -1);
    MW_CHECK_CONTAINS(diag_text(&d), "map entry message 'E' must have exactly "
                                     "the fields key = 1 and value = 2");
    mw_diag_free(&d);
    mw_schema_free(s);
  }
  /* The entry as protoc writes it loads. */
  set[key_number] = 1;
  mw_schema *s = mw_schema_new();
  mw_diag d = {0};
  MW_CHECK_INT(mw_schema_add_set(s, set, sizeof set - 1, "m.pb", &d), 0);
  MW_CHECK(upb_DefPool_FindMessageByName(mw_schema_pool(s), "M.E") != NULL);
  mw_diag_free(&d);
  mw_schema_free(s);
}

static void test_duplicate_service(void) {
  mw_diag d = {0};
  /* Two files, one service name. */
  const char *dirs[] = {DATA "/dup1", DATA "/dup2"};
  mw_schema *s = load(dirs, 2, NULL, 0, &d);
  MW_CHECK(s == NULL);
  const char *t = diag_text(&d);
  MW_CHECK_CONTAINS(t, "duplicate service 'dup.Echo'");
  MW_CHECK_CONTAINS(t, DATA "/dup1/echo1.proto");
  MW_CHECK_CONTAINS(t, DATA "/dup2/echo2.proto");
  mw_diag_free(&d);

  /* Two copies of one file (same name, same contents) in two dirs. */
  const char *copies[] = {DATA "/dup1", DATA "/dup3"};
  s = load(copies, 2, NULL, 0, &d);
  MW_CHECK(s == NULL);
  t = diag_text(&d);
  MW_CHECK_CONTAINS(t, "duplicate service 'dup.Echo'");
  MW_CHECK_CONTAINS(t, DATA "/dup1/echo1.proto");
  MW_CHECK_CONTAINS(t, DATA "/dup3/echo1.proto");
  mw_diag_free(&d);

  /* Two different files with one name: would silently mix. */
  const char *clash[] = {DATA "/dup1", DATA "/dup4"};
  s = load(clash, 2, NULL, 0, &d);
  MW_CHECK(s == NULL);
  t = diag_text(&d);
  MW_CHECK_CONTAINS(t, DATA "/dup4/echo1.proto: another file named "
                       "'echo1.proto' is already loaded from " DATA
                       "/dup1/echo1.proto");
  mw_diag_free(&d);

  /* One message in two files: upb's duplicate symbol, with both files. */
  const char *sym[] = {DATA "/dup1", DATA "/dup5"};
  s = load(sym, 2, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_CONTAINS(diag_text(&d), DATA "/dup5/other.proto: duplicate symbol "
                    "'dup.EchoMsg' (already defined in " DATA
                    "/dup1/echo1.proto)");
  mw_diag_free(&d);

  /* A set repeating a service of another dir. */
  mkdir_p(TMP "/dupset");
  static const char *files[] = {"echo2.proto"};
  static const char *incs[] = {DATA "/dup2"};
  size_t len = 0;
  char *data = mw_protoc_compile(files, 1, incs, 1, &len, &d);
  MW_CHECK(data != NULL);
  if (data) write_file(TMP "/dupset/echo.protoset", data, len);
  free(data);
  const char *withset[] = {DATA "/dup1", TMP "/dupset"};
  s = load(withset, 2, NULL, 0, &d);
  MW_CHECK(s == NULL);
  t = diag_text(&d);
  MW_CHECK_CONTAINS(t, "duplicate service 'dup.Echo'");
  MW_CHECK_CONTAINS(t, DATA "/dup1/echo1.proto");
  MW_CHECK_CONTAINS(t, TMP "/dupset/echo.protoset (echo2.proto)");
  mw_diag_free(&d);
}

static void test_proto_path(void) {
  mw_diag d = {0};
  const char *dirs[] = {DATA "/pp_svc"};
  const char *pp[] = {DATA "/pp_lib"};

  /* Without the proto_path the import is not found. */
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_CONTAINS(diag_text(&d), "lib/common.proto: File not found");
  mw_diag_free(&d);

  s = load(dirs, 1, pp, 1, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_STR(diag_text(&d), "");
  if (s) {
    /* lib.LibService is in the pool but not served: it is an import's. */
    MW_CHECK_INT(mw_schema_service_count(s), 1);
    MW_CHECK(has_service(s, "svc.SvcService"));
    MW_CHECK(!has_service(s, "lib.LibService"));
    MW_CHECK(upb_DefPool_FindServiceByName(mw_schema_pool(s),
                                           "lib.LibService") != NULL);
    /* Imported files from proto_path are watched, system ones are not. */
    MW_CHECK_INT(mw_schema_file_count(s), 2);
    MW_CHECK_INT(file_listed(s, DATA "/pp_svc/svc.proto"), 1);
    MW_CHECK_INT(file_listed(s, DATA "/pp_lib/lib/common.proto"), 1);
  }
  mw_schema_free(s);

  /* Two dirs importing one shared file: loaded once, listed once. */
  const char *two[] = {DATA "/pp_svc", DATA "/pp_svc2"};
  s = load(two, 2, pp, 1, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_STR(diag_text(&d), "");
  if (s) {
    MW_CHECK_INT(mw_schema_service_count(s), 2);
    MW_CHECK(has_service(s, "svc.SvcService"));
    MW_CHECK(has_service(s, "svc2.Svc2"));
    MW_CHECK_INT(mw_schema_file_count(s), 3);
    MW_CHECK_INT(file_listed(s, DATA "/pp_lib/lib/common.proto"), 1);
  }
  mw_schema_free(s);

  /* The lib dir as a service dir too: its file is its own although the
   * first dir imported it already. */
  const char *own[] = {DATA "/pp_svc", DATA "/pp_lib"};
  s = load(own, 2, pp, 1, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_STR(diag_text(&d), "");
  MW_CHECK_INT(mw_schema_service_count(s), 2);
  MW_CHECK(has_service(s, "svc.SvcService"));
  MW_CHECK(has_service(s, "lib.LibService"));
  mw_schema_free(s);

  /* A proto_path that does not exist. */
  const char *bad_pp[] = {DATA "/no_such_include"};
  s = load(dirs, 1, bad_pp, 1, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_CONTAINS(diag_text(&d), "proto_path " DATA "/no_such_include");
  mw_diag_free(&d);
}

static void test_google_rpc(void) {
  const char *dirs[] = {DATA "/rpc"};
  mw_diag d = {0};
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_STR(diag_text(&d), "");
  if (s) {
    const upb_DefPool *p = mw_schema_pool(s);
    MW_CHECK_INT(mw_schema_service_count(s), 1);
    MW_CHECK(has_service(s, "rpcuser.Checker"));
    /* The standard field numbers. */
    static const struct {
      const char *msg, *field;
      int number;
    } std[] = {
        {"google.rpc.Status", "code", 1},
        {"google.rpc.Status", "message", 2},
        {"google.rpc.Status", "details", 3},
        {"google.rpc.ErrorInfo", "reason", 1},
        {"google.rpc.ErrorInfo", "domain", 2},
        {"google.rpc.ErrorInfo", "metadata", 3},
        {"google.rpc.RetryInfo", "retry_delay", 1},
        {"google.rpc.DebugInfo", "stack_entries", 1},
        {"google.rpc.DebugInfo", "detail", 2},
        {"google.rpc.QuotaFailure", "violations", 1},
        {"google.rpc.QuotaFailure.Violation", "subject", 1},
        {"google.rpc.QuotaFailure.Violation", "description", 2},
        {"google.rpc.PreconditionFailure", "violations", 1},
        {"google.rpc.PreconditionFailure.Violation", "type", 1},
        {"google.rpc.PreconditionFailure.Violation", "subject", 2},
        {"google.rpc.PreconditionFailure.Violation", "description", 3},
        {"google.rpc.BadRequest", "field_violations", 1},
        {"google.rpc.BadRequest.FieldViolation", "field", 1},
        {"google.rpc.BadRequest.FieldViolation", "description", 2},
        {"google.rpc.BadRequest.FieldViolation", "reason", 3},
        {"google.rpc.BadRequest.FieldViolation", "localized_message", 4},
        {"google.rpc.RequestInfo", "request_id", 1},
        {"google.rpc.RequestInfo", "serving_data", 2},
        {"google.rpc.ResourceInfo", "resource_type", 1},
        {"google.rpc.ResourceInfo", "resource_name", 2},
        {"google.rpc.ResourceInfo", "owner", 3},
        {"google.rpc.ResourceInfo", "description", 4},
        {"google.rpc.Help", "links", 1},
        {"google.rpc.Help.Link", "description", 1},
        {"google.rpc.Help.Link", "url", 2},
        {"google.rpc.LocalizedMessage", "locale", 1},
        {"google.rpc.LocalizedMessage", "message", 2},
    };
    for (size_t i = 0; i < sizeof std / sizeof std[0]; i++) {
      int n = field_number(p, std[i].msg, std[i].field);
      if (n != std[i].number)
        fprintf(stderr, "%s.%s = %d\n", std[i].msg, std[i].field, n);
      MW_CHECK_INT(n, std[i].number);
    }
    const upb_MessageDef *st =
        upb_DefPool_FindMessageByName(p, "google.rpc.Status");
    const upb_FieldDef *details =
        st ? upb_MessageDef_FindFieldByName(st, "details") : NULL;
    MW_CHECK(details && upb_FieldDef_IsRepeated(details));
    MW_CHECK(details && upb_FieldDef_MessageSubDef(details) &&
             strcmp(upb_MessageDef_FullName(upb_FieldDef_MessageSubDef(details)),
                    "google.protobuf.Any") == 0);
    /* The project's proto/ is not watched. */
    MW_CHECK_INT(mw_schema_file_count(s), 1);
    MW_CHECK_INT(file_listed(s, DATA "/rpc/checker.proto"), 1);
  }
  mw_schema_free(s);

  /* MOONWIRE_PROTO_DIR overrides the project's proto/. */
  setenv("MOONWIRE_PROTO_DIR", DATA "/no_such_proto_dir", 1);
  s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_CONTAINS(diag_text(&d), "google/rpc/status.proto: File not found");
  mw_diag_free(&d);
  setenv("MOONWIRE_PROTO_DIR", MW_TEST_DATA "/../../proto", 1);
  s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_STR(diag_text(&d), "");
  mw_schema_free(s);
  mw_diag_free(&d);
  unsetenv("MOONWIRE_PROTO_DIR");
}

static void test_protoc_missing(void) {
  const char *dirs[] = {DATA "/pair"};
  mw_diag d = {0};
  setenv("MOONWIRE_PROTOC", "/nonexistent/bin/protoc", 1);
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_INT(mw_diag_count(&d), 1);
  MW_CHECK_CONTAINS(diag_text(&d),
                    "protoc not found: /nonexistent/bin/protoc does not exist");
  mw_diag_free(&d);
  /* A bare name is looked up in PATH. */
  setenv("MOONWIRE_PROTOC", "no-such-protoc-moonwire", 1);
  s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_CONTAINS(diag_text(&d), "protoc not found");
  mw_diag_free(&d);
  unsetenv("MOONWIRE_PROTOC");
}

static void test_compile_api(void) {
  static const char *files[] = {"a.proto", "b.proto"};
  static const char *incs[] = {DATA "/pair"};
  mw_diag d = {0};
  size_t len = 0;
  char *data = mw_protoc_compile(files, 2, incs, 1, &len, &d);
  MW_CHECK(data != NULL);
  MW_CHECK(len > 0);
  MW_CHECK_STR(diag_text(&d), "");
  mw_schema *s = mw_schema_new();
  MW_CHECK_INT(mw_schema_add_set(s, data, len, "pair-set", &d), 0);
  MW_CHECK_INT(mw_schema_service_count(s), 2);
  /* Every file of a set added directly counts; none is on disk. */
  MW_CHECK_INT(mw_schema_file_count(s), 0);
  mw_schema_free(s);
  free(data);

  /* No files; a file not found. */
  MW_CHECK(mw_protoc_compile(NULL, 0, incs, 1, &len, &d) == NULL);
  MW_CHECK_INT(len, 0);
  MW_CHECK_CONTAINS(diag_text(&d), "no .proto files");
  mw_diag_free(&d);
  static const char *nofile[] = {"nope.proto"};
  MW_CHECK(mw_protoc_compile(nofile, 1, incs, 1, &len, &d) == NULL);
  MW_CHECK(mw_diag_count(&d) >= 1);
  MW_CHECK_CONTAINS(diag_text(&d), "nope.proto");
  mw_diag_free(&d);
}

static void test_missing_dir(void) {
  const char *dirs[] = {DATA "/no_such_dir"};
  mw_diag d = {0};
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_CONTAINS(diag_text(&d),
                    DATA "/no_such_dir: cannot read service directory");
  mw_diag_free(&d);
}

/* The walk of a service directory: hidden entries and dangling links are
 * not inputs, a symlink loop and an unreadable directory are reported. */
static void test_dir_walk(void) {
  char root[PATH_MAX - 64], p[PATH_MAX], want[2 * PATH_MAX];
  snprintf(root, sizeof root, "%s/walk", TMP);
  snprintf(want, sizeof want, "rm -rf '%s'", root);
  MW_CHECK_INT(system(want), 0);
  snprintf(p, sizeof p, "%s/sub", root);
  mkdir_p(p);
  static const char ok[] = "syntax = \"proto3\";\npackage walk;\nmessage M {}\n";
  snprintf(p, sizeof p, "%s/sub/ok.proto", root);
  write_file(p, ok, sizeof ok - 1);
  snprintf(p, sizeof p, "%s/.hidden.proto", root);
  write_file(p, "not a proto", 11);
  snprintf(p, sizeof p, "%s/dangling.proto", root);
  MW_CHECK_INT(symlink("nowhere.proto", p), 0);

  const char *dirs[] = {root};
  mw_diag d = {0};
  mw_schema *s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s != NULL);
  MW_CHECK_STR(diag_text(&d), "");
  snprintf(p, sizeof p, "%s/sub/ok.proto", root);
  if (s) {
    MW_CHECK_INT(mw_schema_file_count(s), 1);
    MW_CHECK_INT(file_listed(s, p), 1);
  }
  mw_schema_free(s);
  mw_diag_free(&d);

  snprintf(p, sizeof p, "%s/sub/loop", root);
  MW_CHECK_INT(symlink(".", p), 0);
  s = load(dirs, 1, NULL, 0, &d);
  MW_CHECK(s == NULL);
  MW_CHECK_CONTAINS(diag_text(&d), "/sub/loop/loop/loop/loop");
  MW_CHECK_CONTAINS(diag_text(&d),
                    ": directories nested too deep (a symlink loop?)");
  mw_diag_free(&d);
  unlink(p);

  if (geteuid() != 0) { /* root reads any directory */
    snprintf(p, sizeof p, "%s/locked", root);
    mkdir_p(p);
    chmod(p, 0);
    s = load(dirs, 1, NULL, 0, &d);
    MW_CHECK(s == NULL);
    snprintf(want, sizeof want, "%s: cannot read directory: %s\n", p,
             strerror(EACCES));
    MW_CHECK_STR(diag_text(&d), want);
    mw_diag_free(&d);
    chmod(p, 0755);
  }
}

static int count_fds(void) {
  DIR *dir = opendir("/proc/self/fd");
  int n = 0;
  if (!dir) return -1;
  while (readdir(dir) != NULL) n++;
  closedir(dir);
  return n;
}

static int fds_at_start;

/* protoc's temp files are gone afterwards, and no descriptor is left open.
 * The private copy of the embedded protos (schema/mw_protos.h) lives as
 * long as the process: there is exactly one, removed at exit. */
static void test_tmp_clean(void) {
  MW_CHECK_INT(count_fds(), fds_at_start);
  DIR *dir = opendir(TMP "/tmpdir");
  MW_CHECK(dir != NULL);
  int entries = 0, copies = 0;
  struct dirent *e;
  while (dir && (e = readdir(dir)) != NULL) {
    if (strncmp(e->d_name, "moonwire-proto-", 15) == 0) {
      copies++;
    } else if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      fprintf(stderr, "left behind: %s\n", e->d_name);
      entries++;
    }
  }
  if (dir) closedir(dir);
  MW_CHECK_INT(entries, 0);
  MW_CHECK_INT(copies, 1);
}

int main(void) {
  mkdir_p(TMP "/tmpdir");
  setenv("TMPDIR", TMP "/tmpdir", 1);
  unsetenv("MOONWIRE_PROTOC");
  unsetenv("MOONWIRE_PROTO_DIR");
  fds_at_start = count_fds();
  MW_RUN(test_new_and_free);
  MW_RUN(test_pair_with_any);
  MW_RUN(test_cycle);
  MW_RUN(test_nested_packages);
  MW_RUN(test_broken_proto);
  MW_RUN(test_missing_import);
  MW_RUN(test_protoset);
  MW_RUN(test_set_without_imports);
  MW_RUN(test_bad_sets);
  MW_RUN(test_duplicate_service);
  MW_RUN(test_file_name_with_nul);
  MW_RUN(test_bad_map_entry);
  MW_RUN(test_proto_path);
  MW_RUN(test_google_rpc);
  MW_RUN(test_protoc_missing);
  MW_RUN(test_compile_api);
  MW_RUN(test_missing_dir);
  MW_RUN(test_dir_walk);
  MW_RUN(test_tmp_clean);
  return mw_test_done();
}
