/* Unit tests for the codec's plans (runtime/codec/plan.c): a plan belongs to
 * one Lua state and one schema epoch, so a reload that changes a message's
 * fields is seen by the next message in every state, and two states each
 * have their own; and a table the plan path cannot encode (an unknown key,
 * a key that is no string, two members of a oneof) gets the error the
 * lua_next path always gave. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec/mw_codec.h"
#include "google/protobuf/descriptor.upb.h"
#include "mw_test.h"
#include "schema/mw_schema.h"

static char g_err[MW_CODEC_ERRLEN];

/* A schema of one file, plan.proto, with the given body. */
static mw_schema *load(const char *name, const char *body) {
  char dir[1024], path[1100];
  snprintf(dir, sizeof dir, "%s/plan_%s", MW_TEST_TMP, name);
  mkdir(MW_TEST_TMP, 0777);
  mkdir(dir, 0777);
  snprintf(path, sizeof path, "%s/plan.proto", dir);
  FILE *fp = fopen(path, "w");
  if (!fp) return NULL;
  fprintf(fp, "syntax = \"proto3\";\npackage pt;\n%s\n", body);
  fclose(fp);
  const char *dirs[] = {dir};
  mw_schema_input in = {dirs, 1, NULL, 0, NULL, 0};
  mw_diag d = {0};
  mw_schema *s = mw_schema_load(&in, &d);
  if (!s) fprintf(stderr, "schema: %s\n", mw_diag_count(&d) ? d.msgs[0] : "?");
  mw_diag_free(&d);
  return s;
}

static const upb_MessageDef *msg(const mw_schema *s, const char *name) {
  const upb_MessageDef *m = upb_DefPool_FindMessageByName(mw_schema_pool(s), name);
  if (!m) abort();
  return m;
}

/* Encodes the Lua table literal src as m: the bytes as hex in out, or NULL
 * with g_err set. */
static const char *enc(lua_State *L, const upb_MessageDef *m, const char *src,
                       char *out, size_t cap) {
  char buf[2048];
  snprintf(buf, sizeof buf, "return %s", src);
  if (luaL_dostring(L, buf) != LUA_OK) {
    fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
    abort();
  }
  int top = lua_gettop(L);
  upb_Arena *a = upb_Arena_New();
  size_t len = 0;
  char *bytes = mw_codec_encode(L, -1, m, a, &len, g_err, sizeof g_err);
  MW_CHECK_INT(lua_gettop(L), top);
  lua_pop(L, 1);
  const char *rc = NULL;
  if (bytes && len * 2 < cap) {
    for (size_t i = 0; i < len; i++) sprintf(out + 2 * i, "%02x", (unsigned char)bytes[i]);
    out[2 * len] = '\0';
    rc = out;
  }
  upb_Arena_Free(a);
  return rc;
}

/* Decodes bytes as m into the global t; then the Lua expression check must
 * hold. */
static int dec_check(lua_State *L, const upb_MessageDef *m, const char *bytes, size_t n,
                     const char *check) {
  upb_Arena *a = upb_Arena_New();
  int top = lua_gettop(L);
  int rc = mw_codec_decode_push(L, bytes, n, m, a, g_err, sizeof g_err);
  upb_Arena_Free(a);
  if (rc != 0) return 0;
  if (lua_gettop(L) != top + 1) return 0;
  lua_setglobal(L, "t");
  char buf[1024];
  snprintf(buf, sizeof buf, "return %s", check);
  if (luaL_dostring(L, buf) != LUA_OK) {
    fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  int ok = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return ok;
}

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  return L;
}

#define V1                                                   \
  "message Sub { int32 x = 1; }\n"                           \
  "message M { string a = 1; int32 b = 2; Sub sub = 3;\n"    \
  "  oneof o { string p = 4; string q = 5; } }\n"
/* The same message names, other fields (as a reload may bring). */
#define V2                        \
  "message Sub { string y = 2; }\n" \
  "message M { int64 b = 1; string c = 3; Sub sub = 4; }\n"

/* The descriptor set of plan.proto with the given body (malloc'd). */
static char *compile(const char *name, const char *body, size_t *len) {
  mw_schema *s = load(name, body); /* writes the file, checks it compiles */
  if (!s) return NULL;
  mw_schema_free(s);
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/plan_%s", MW_TEST_TMP, name);
  const char *files[] = {"plan.proto"}, *inc[] = {dir};
  mw_diag d = {0};
  char *set = mw_protoc_compile(files, 1, inc, 1, len, &d);
  mw_diag_free(&d);
  return set;
}

/* A pool of the files in a parsed descriptor set (upb's own, without the
 * schema around it: fewer allocations between one pool and the next). */
static upb_DefPool *pool_of(const google_protobuf_FileDescriptorSet *set) {
  upb_DefPool *pool = upb_DefPool_New();
  size_t n = 0;
  const google_protobuf_FileDescriptorProto *const *files =
      google_protobuf_FileDescriptorSet_file(set, &n);
  for (size_t i = 0; i < n; i++) {
    upb_Status st;
    upb_Status_Clear(&st);
    if (!upb_DefPool_AddFile(pool, files[i], &st)) {
      fprintf(stderr, "AddFile: %s\n", upb_Status_ErrorMessage(&st));
      upb_DefPool_Free(pool);
      return NULL;
    }
  }
  return pool;
}

static const upb_MessageDef *pmsg(const upb_DefPool *pool, const char *name) {
  const upb_MessageDef *m = upb_DefPool_FindMessageByName(pool, name);
  if (!m) abort();
  return m;
}

/* A reload: the old pool freed, a new one with other fields for the same
 * names right after (built the same way, its messages land at the old
 * addresses, which is what the schema epoch is for); the same state must
 * use the new fields, both ways. */
static void test_reload_changes_fields(void) {
  size_t n1 = 0, n2 = 0;
  char *bytes1 = compile("v1", V1, &n1), *bytes2 = compile("v2", V2, &n2);
  MW_CHECK(bytes1 && bytes2);
  if (!bytes1 || !bytes2) return;
  upb_Arena *a = upb_Arena_New();
  google_protobuf_FileDescriptorSet *set1 = google_protobuf_FileDescriptorSet_parse(bytes1, n1, a),
                                    *set2 = google_protobuf_FileDescriptorSet_parse(bytes2, n2, a);
  MW_CHECK(set1 && set2);
  lua_State *L = new_state();
  upb_DefPool *p1 = set1 ? pool_of(set1) : NULL;
  MW_CHECK(p1 != NULL);
  if (!p1 || !set2) return;
  const upb_MessageDef *m1 = pmsg(p1, "pt.M");
  char hex[256];
  MW_CHECK_STR(enc(L, m1, "{a = 'x', b = 2, sub = {x = 1}}", hex, sizeof hex),
               "0a01781002" "1a020801");
  MW_CHECK(dec_check(L, m1, "\x0a\x01x\x10\x02\x1a\x02\x08\x01", 9,
                     "t.a == 'x' and t.b == 2 and t.sub.x == 1 and t.c == nil"));
  mw_schema_epoch_bump(); /* as mw_schema_free does */
  upb_DefPool_Free(p1);

  upb_DefPool *p2 = pool_of(set2);
  MW_CHECK(p2 != NULL);
  if (!p2) {
    lua_close(L);
    return;
  }
  const upb_MessageDef *m2 = pmsg(p2, "pt.M");
  /* Not a check (allocators differ), but what makes the test worth it. */
  printf("  the new pt.M is %s the old one's address\n", m2 == m1 ? "at" : "not at");
  MW_CHECK(enc(L, m2, "{a = 'x'}", hex, sizeof hex) == NULL);
  MW_CHECK_STR(g_err, "unknown field 'a' in message pt.M");
  MW_CHECK(enc(L, m2, "{sub = {x = 1}}", hex, sizeof hex) == NULL);
  MW_CHECK_STR(g_err, "unknown field 'sub.x' in message pt.Sub");
  MW_CHECK_STR(enc(L, m2, "{b = 5, c = 'y', sub = {y = 'z'}}", hex, sizeof hex),
               "0805" "1a0179" "2203" "12017a");
  /* field 1 is now an int64 b, 3 a string c, 4 the Sub with y */
  MW_CHECK(dec_check(L, m2, "\x08\x05\x1a\x01y\x22\x03\x12\x01z", 10,
                     "t.b == 5 and t.c == 'y' and t.sub.y == 'z' and t.a == nil "
                     "and t.sub.x == nil"));
  /* a default-filled table lists the new fields only */
  MW_CHECK(dec_check(L, m2, "", 0,
                     "t.b == 0 and t.c == '' and t.sub == nil and t.a == nil "
                     "and t.p == nil"));
  lua_close(L);
  mw_schema_epoch_bump();
  upb_DefPool_Free(p2);
  upb_Arena_Free(a);
  free(bytes1);
  free(bytes2);
}

/* Two states over one schema: each has its own plans and key strings, so
 * one closing leaves the other working, and alternating between them gives
 * each its own. */
static void test_two_states(void) {
  mw_schema *s = load("two", V1);
  MW_CHECK(s != NULL);
  if (!s) return;
  const upb_MessageDef *m = msg(s, "pt.M"), *sub = msg(s, "pt.Sub");
  lua_State *L1 = new_state(), *L2 = new_state();
  char hex[256];
  for (int round = 0; round < 3; round++) {
    MW_CHECK_STR(enc(L1, m, "{a = 'x', sub = {x = 3}}", hex, sizeof hex), "0a0178" "1a020803");
    MW_CHECK(dec_check(L2, m, "\x0a\x01y", 3, "t.a == 'y' and t.b == 0"));
    MW_CHECK(dec_check(L1, sub, "\x08\x07", 2, "t.x == 7"));
    MW_CHECK_STR(enc(L2, sub, "{x = 7}", hex, sizeof hex), "0807");
  }
  lua_close(L1);
  MW_CHECK_STR(enc(L2, m, "{b = 1, p = 'k'}", hex, sizeof hex), "1001" "22016b");
  MW_CHECK(dec_check(L2, m, "\x10\x01\x22\x01k", 5, "t.b == 1 and t.p == 'k' and t.q == nil"));
  lua_close(L2);
  mw_schema_free(s);
}

/* A bump allocator over one region, started again for each state: a state
 * made after another closed gets the same addresses for the same steps,
 * its registry included, and the old bytes are left where it has not
 * written yet. */
static union {
  max_align_t align;
  char bytes[16 << 20];
} region;
static size_t region_used;

static void *bump_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) return NULL;
  if (ptr && nsize <= osize) return ptr;
  size_t at = (region_used + 15) & ~(size_t)15;
  if (at + nsize > sizeof region.bytes) return NULL;
  region_used = at + nsize;
  if (ptr) memcpy(region.bytes + at, ptr, osize);
  return region.bytes + at;
}

/* A state closed and a new one made at the same addresses: what the thread
 * remembers of the old state's plans must not be taken for the new one's. */
static void test_state_remade(void) {
  mw_schema *s = load("remade", V1);
  MW_CHECK(s != NULL);
  if (!s) return;
  const upb_MessageDef *m = msg(s, "pt.M");
  char hex[256];
  const void *first = NULL;
  for (int round = 0; round < 3; round++) {
    region_used = 0;
    lua_State *L = lua_newstate(bump_alloc, NULL);
    luaL_openlibs(L);
    if (round == 0) first = lua_topointer(L, LUA_REGISTRYINDEX);
    MW_CHECK(lua_topointer(L, LUA_REGISTRYINDEX) == first);
    MW_CHECK_STR(enc(L, m, "{a = 'x', b = 2}", hex, sizeof hex), "0a01781002");
    MW_CHECK(dec_check(L, m, "\x0a\x01y", 3, "t.a == 'y' and t.b == 0"));
    lua_close(L);
  }
  mw_schema_free(s);
}

/* What the plan path cannot encode is encoded again the lua_next way, whose
 * error is the one reported: an unknown key (the plan's fields all found,
 * the table has one more), also in a nested message and an Any's body; a
 * key that is no string; two members of one oneof. */
static void test_unknown_key_errors(void) {
  mw_schema *s = load("unknown", "import \"google/protobuf/any.proto\";\n" V1
                      "message W { google.protobuf.Any any = 1; repeated Sub subs = 2; "
                      "map<string, Sub> by = 3; }\n");
  MW_CHECK(s != NULL);
  if (!s) return;
  const upb_MessageDef *m = msg(s, "pt.M"), *w = msg(s, "pt.W");
  lua_State *L = new_state();
  char hex[256];
  MW_CHECK(enc(L, m, "{a = 'x', b = 2, zzz = 1}", hex, sizeof hex) == NULL);
  MW_CHECK_STR(g_err, "unknown field 'zzz' in message pt.M");
  MW_CHECK(enc(L, m, "{a = 'x', sub = {x = 1, bad = 2}}", hex, sizeof hex) == NULL);
  MW_CHECK_STR(g_err, "unknown field 'sub.bad' in message pt.Sub");
  MW_CHECK(enc(L, m, "{a = 'x', [1] = 2}", hex, sizeof hex) == NULL);
  MW_CHECK_STR(g_err, "field '[1]': message pt.M has only string keys (field names)");
  MW_CHECK(enc(L, m, "{p = 'x', q = 'y'}", hex, sizeof hex) == NULL);
  MW_CHECK(strcmp(g_err, "field 'q': oneof 'o' already has 'p' set") == 0 ||
           strcmp(g_err, "field 'p': oneof 'o' already has 'q' set") == 0);
  /* a oneof's name is no key either */
  MW_CHECK(enc(L, m, "{o = 'x'}", hex, sizeof hex) == NULL);
  MW_CHECK_STR(g_err, "unknown field 'o' in message pt.M");
  MW_CHECK(enc(L, w, "{any = {['@type'] = 'type.googleapis.com/pt.Sub', x = 1, nope = 2}}",
               hex, sizeof hex) == NULL);
  MW_CHECK_STR(g_err, "unknown field 'any.nope' in message pt.Sub");
  MW_CHECK(enc(L, w, "{subs = {{x = 1}, {x = 2, y = 3}}}", hex, sizeof hex) == NULL);
  MW_CHECK_STR(g_err, "unknown field 'subs[2].y' in message pt.Sub");
  MW_CHECK(enc(L, w, "{by = {k = {w = 1}}}", hex, sizeof hex) == NULL);
  MW_CHECK_STR(g_err, "unknown field 'by[\"k\"].w' in message pt.Sub");
  /* and the same tables without the bad key still encode, in field order */
  MW_CHECK_STR(enc(L, w, "{any = {['@type'] = 'type.googleapis.com/pt.Sub', x = 1}}", hex,
                   sizeof hex),
               "0a20" "0a1a747970652e676f6f676c65617069732e636f6d2f70742e537562" "12020801");
  MW_CHECK_STR(enc(L, m, "{sub = {x = 1}, b = 2, a = 'x'}", hex, sizeof hex),
               "0a01781002" "1a020801");
  lua_close(L);
  mw_schema_free(s);
}

/* Names longer than Lua's short strings are not interned, so the plan does
 * not find them by address: they are looked up by name. Messages with more
 * fields than the plan path keeps on the C stack take the lua_next path.
 * Both encode as the others do. */
static void test_long_names_and_wide(void) {
  char body[8192];
  int n = snprintf(body, sizeof body,
                   "message Long { string a_field_name_well_past_forty_characters_long = 1; "
                   "int32 b = 2; }\nmessage Wide {");
  for (int i = 1; i <= 70; i++) n += snprintf(body + n, sizeof body - (size_t)n, " int32 f%d = %d;", i, i);
  snprintf(body + n, sizeof body - (size_t)n, " }\n");
  mw_schema *s = load("long", body);
  MW_CHECK(s != NULL);
  if (!s) return;
  const upb_MessageDef *lm = msg(s, "pt.Long"), *wm = msg(s, "pt.Wide");
  lua_State *L = new_state();
  char hex[512];
  MW_CHECK_STR(enc(L, lm, "{b = 1, a_field_name_well_past_forty_characters_long = 'x'}", hex,
                   sizeof hex),
               "0a0178" "1001");
  MW_CHECK(enc(L, lm, "{a_field_name_well_past_forty_characters_long_too = 'x'}", hex,
               sizeof hex) == NULL);
  MW_CHECK_STR(g_err,
               "unknown field 'a_field_name_well_past_forty_characters_long_too' in message pt.Long");
  MW_CHECK(dec_check(L, lm, "\x0a\x01x\x10\x01", 5,
                     "t.a_field_name_well_past_forty_characters_long == 'x' and t.b == 1"));
  MW_CHECK_STR(enc(L, wm, "{f70 = 2, f1 = 1, f33 = 3}", hex, sizeof hex), "0801" "8802" "03" "b00402");
  MW_CHECK(enc(L, wm, "{f70 = 2, qqqqqq = 1}", hex, sizeof hex) == NULL);
  MW_CHECK_STR(g_err, "unknown field 'qqqqqq' in message pt.Wide");
  MW_CHECK(dec_check(L, wm, "\xb0\x04\x02", 3, "t.f70 == 2 and t.f1 == 0"));
  lua_close(L);
  mw_schema_free(s);
}

int main(void) {
  MW_RUN(test_reload_changes_fields);
  MW_RUN(test_two_states);
  MW_RUN(test_state_remade);
  MW_RUN(test_unknown_key_errors);
  MW_RUN(test_long_names_and_wide);
  return mw_test_done();
}
