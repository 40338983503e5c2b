/* Unit tests for runtime/codec/ against the protos in tests/data/codec.
 *
 * Most tests write a Lua table literal, run it through both directions of
 * the codec and look at the result with a Lua expression over the global
 * `t`. rt() takes every table through both API pairs (encode/decode_push and
 * to_message/push_message) and checks that they agree and that the Lua stack
 * is balanced. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "google/protobuf/descriptor.upb.h"
#include "codec/mw_codec.h"
#include "codec/mw_codec_reflect.h"
#include "mw_test.h"
#include "upb/decode.h"
#include "upb/encode.h"
#include "upb/reflection.h"

static lua_State *L;
static upb_DefPool *g_pool;
static char g_err[MW_CODEC_ERRLEN];

/* ---- helpers ----------------------------------------------------------- */

/* Compiles the test protos with protoc and loads them into a new pool. */
static upb_DefPool *load_pool(void) {
  char path[1024], cmd[4096];
  snprintf(path, sizeof path, "%s/codec_test.pb", MW_TEST_TMP);
  snprintf(cmd, sizeof cmd,
           "mkdir -p '%s' && '%s' -I '%s/codec' -I /usr/include "
           "--include_imports --descriptor_set_out='%s' codec_test.proto "
           "codec_test2.proto",
           MW_TEST_TMP, MW_PROTOC, MW_TEST_DATA, path);
  if (system(cmd) != 0) {
    fprintf(stderr, "protoc failed: %s\n", cmd);
    return NULL;
  }
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  char *data = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? 2 * cap : 4096;
      char *p = realloc(data, cap);
      if (!p) break;
      data = p;
    }
    size_t got = fread(data + n, 1, cap - n, fp);
    if (got == 0) break;
    n += got;
  }
  fclose(fp);

  upb_DefPool *pool = upb_DefPool_New();
  upb_Arena *a = upb_Arena_New();
  google_protobuf_FileDescriptorSet *set =
      data ? google_protobuf_FileDescriptorSet_parse(data, n, a) : NULL;
  size_t nfiles = 0;
  const google_protobuf_FileDescriptorProto *const *files =
      set ? google_protobuf_FileDescriptorSet_file(set, &nfiles) : NULL;
  for (size_t i = 0; i < nfiles; i++) {
    upb_Status st;
    upb_Status_Clear(&st);
    if (!upb_DefPool_AddFile(pool, files[i], &st)) {
      fprintf(stderr, "AddFile: %s\n", upb_Status_ErrorMessage(&st));
      upb_DefPool_Free(pool);
      pool = NULL;
      break;
    }
  }
  if (!set) {
    upb_DefPool_Free(pool);
    pool = NULL;
  }
  upb_Arena_Free(a);
  free(data);
  return pool;
}

static const upb_MessageDef *md(const char *name) {
  const upb_MessageDef *m = upb_DefPool_FindMessageByName(g_pool, name);
  if (!m) {
    fprintf(stderr, "no message %s in the test pool\n", name);
    abort();
  }
  return m;
}

static const upb_FieldDef *fd(const char *msg, const char *field) {
  const upb_FieldDef *f = upb_MessageDef_FindFieldByName(md(msg), field);
  if (!f) abort();
  return f;
}

/* Pushes the value of the Lua expression src. */
static int push_lua(const char *src) {
  char buf[8192];
  snprintf(buf, sizeof buf, "return %s", src);
  if (luaL_loadstring(L, buf) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "[%s] lua error: %s\n", mw_test_current,
            lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* Whether the Lua expression is true (globals t, t2, deq...). */
static int lua_true(const char *expr) {
  int top = lua_gettop(L);
  if (push_lua(expr) != 0) return 0;
  int ok = lua_toboolean(L, -1);
  lua_settop(L, top);
  return ok;
}
#define LCHECK(expr) MW_CHECK(lua_true(expr))

/* mw_codec_encode_buf gives the table on top the bytes buf (len) too: in
 * the stack buffer when they fit, else in a block of its own, here forced
 * early by a stack buffer of 8 bytes, or of none. (The 1 in block checks
 * that the encoder sets it.) */
static void same_as_encode_buf(const upb_MessageDef *m, const char *buf, size_t len) {
  static const size_t caps[] = {0, 8, 4096};
  for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    char stack[4096], err[MW_CODEC_ERRLEN], *block = (char *)1;
    size_t n = 0;
    int top = lua_gettop(L);
    const char *out = mw_codec_encode_buf(L, -1, m, NULL, stack, caps[i], &block, &n,
                                          NULL, err, sizeof err);
    MW_CHECK_INT(lua_gettop(L), top);
    MW_CHECK(out != NULL);
    if (!out) {
      fprintf(stderr, "[%s] encode_buf failed: %s\n", mw_test_current, err);
      continue;
    }
    MW_CHECK_INT(n, len);
    MW_CHECK(n == len && memcmp(out, buf, len) == 0);
    /* bytes that do not fit are in the block (which the encoder may also
     * need for scratch space while the bytes would fit) */
    if (len > caps[i]) MW_CHECK(block != NULL);
    MW_CHECK(block ? out == block : out == stack);
    free(block);
  }
}

/* Round trip: the table src is encoded as type and decoded back into global
 * t; it also goes through to_message/push_message into t2, which must equal
 * t. Returns 0, or -1 with g_err set by the first failing step. */
static int rt(const char *type, const char *src) {
  const upb_MessageDef *m = md(type);
  int top = lua_gettop(L), rc = -1;
  g_err[0] = '\0';
  lua_pushnil(L);
  lua_setglobal(L, "t");
  if (push_lua(src) != 0) return -1;
  upb_Arena *a = upb_Arena_New();
  size_t len = 0;
  char *buf = mw_codec_encode(L, -1, m, a, &len, g_err, sizeof g_err);
  MW_CHECK_INT(lua_gettop(L), top + 1);
  if (buf) same_as_encode_buf(m, buf, len);
  if (buf) {
    rc = mw_codec_decode_push(L, buf, len, m, a, g_err, sizeof g_err);
    MW_CHECK_INT(lua_gettop(L), top + 1 + (rc == 0));
    if (rc == 0) lua_setglobal(L, "t");
  }
  if (rc == 0) {
    char err2[MW_CODEC_ERRLEN];
    upb_Message *msg = mw_codec_to_message(L, top + 1, m, a, err2, sizeof err2);
    MW_CHECK(msg != NULL);
    MW_CHECK_INT(lua_gettop(L), top + 1);
    if (msg) {
      int rc2 = mw_codec_push_message(L, msg, m, err2, sizeof err2);
      MW_CHECK_INT(rc2, 0);
      MW_CHECK_INT(lua_gettop(L), top + 1 + (rc2 == 0));
      if (rc2 == 0) {
        lua_setglobal(L, "t2");
        LCHECK("deq(t, t2)");
      }
    }
  }
  lua_pop(L, 1);
  MW_CHECK_INT(lua_gettop(L), top);
  upb_Arena_Free(a);
  return rc;
}

/* The table src must fail to encode; both builders must give the same
 * error, left in g_err. Returns 1 when they failed. */
static int enc_fails(const char *type, const char *src) {
  const upb_MessageDef *m = md(type);
  int top = lua_gettop(L);
  g_err[0] = '\0';
  if (push_lua(src) != 0) return 0;
  upb_Arena *a = upb_Arena_New();
  size_t len = 0;
  char err2[MW_CODEC_ERRLEN] = "";
  char *buf = mw_codec_encode(L, -1, m, a, &len, err2, sizeof err2);
  MW_CHECK_INT(lua_gettop(L), top + 1);
  {
    char stack[8], err3[MW_CODEC_ERRLEN] = "", *block = (char *)1;
    const char *out = mw_codec_encode_buf(L, -1, m, a, stack, sizeof stack, &block, &len,
                                          NULL, err3, sizeof err3);
    MW_CHECK(out == NULL && block == NULL);
    MW_CHECK_STR(err3, err2);
    MW_CHECK_INT(lua_gettop(L), top + 1);
  }
  upb_Message *msg = mw_codec_to_message(L, -1, m, a, g_err, sizeof g_err);
  MW_CHECK_INT(lua_gettop(L), top + 1);
  MW_CHECK_STR(g_err, err2);
  lua_pop(L, 1);
  upb_Arena_Free(a);
  if (buf || msg)
    fprintf(stderr, "[%s] expected an error for %s\n", mw_test_current, src);
  return !buf && !msg && g_err[0] != '\0';
}

/* Encodes the table src as type into buf (at most cap bytes). */
static size_t enc_bytes(const char *type, const char *src, char *out,
                        size_t cap) {
  size_t len = 0, ret = (size_t)-1;
  if (push_lua(src) != 0) return ret;
  upb_Arena *a = upb_Arena_New();
  char *buf = mw_codec_encode(L, -1, md(type), a, &len, g_err, sizeof g_err);
  lua_pop(L, 1);
  if (buf && len <= cap) {
    memcpy(out, buf, len);
    ret = len;
  }
  upb_Arena_Free(a);
  return ret;
}

/* Decodes bytes as type into global t. */
static int dec(const char *type, const char *buf, size_t len) {
  int top = lua_gettop(L);
  upb_Arena *a = upb_Arena_New();
  int rc = mw_codec_decode_push(L, buf, len, md(type), a, g_err, sizeof g_err);
  MW_CHECK_INT(lua_gettop(L), top + (rc == 0));
  if (rc == 0) lua_setglobal(L, "t");
  upb_Arena_Free(a);
  return rc;
}

/* Encodes src as one type and decodes the bytes as another into t. */
static int cross(const char *from, const char *src, const char *to) {
  char buf[4096];
  size_t n = enc_bytes(from, src, buf, sizeof buf);
  if (n == (size_t)-1) return -1;
  return dec(to, buf, n);
}

/* ---- tests ------------------------------------------------------------- */

static void test_scalars_roundtrip(void) {
  MW_CHECK_INT(rt("mwtest.Scalars",
                  "{i32 = -2147483648, i64 = math.mininteger, u32 = 4294967295,"
                  " u64 = '18446744073709551615', s32 = -2147483648,"
                  " s64 = math.mininteger, f32 = 4294967295,"
                  " f64 = '18446744073709551615', sf32 = -2147483648,"
                  " sf64 = math.maxinteger, fl = 1.5, db = -2.25, b = true,"
                  " str = 'h\\u{e9}llo \\u{1F600}', by = '\\0\\255\\1',"
                  " color = 'GREEN'}"),
               0);
  LCHECK("t.i32 == -2147483648 and math.type(t.i32) == 'integer'");
  LCHECK("t.i64 == math.mininteger");
  LCHECK("t.u32 == 4294967295");
  LCHECK("t.u64 == '18446744073709551615'");
  LCHECK("t.s32 == -2147483648 and t.s64 == math.mininteger");
  LCHECK("t.f32 == 4294967295 and t.f64 == '18446744073709551615'");
  LCHECK("t.sf32 == -2147483648 and t.sf64 == math.maxinteger");
  LCHECK("t.fl == 1.5 and math.type(t.fl) == 'float' and t.db == -2.25");
  LCHECK("t.b == true");
  LCHECK("t.str == 'h\\u{e9}llo \\u{1F600}' and t.by == '\\0\\255\\1'");
  LCHECK("t.color == 'GREEN'");

  MW_CHECK_INT(rt("mwtest.Scalars",
                  "{i64 = math.maxinteger, u64 = math.maxinteger,"
                  " f64 = '9223372036854775808', s64 = math.maxinteger,"
                  " sf64 = math.mininteger}"),
               0);
  LCHECK("t.i64 == math.maxinteger and t.s64 == math.maxinteger");
  LCHECK("t.u64 == math.maxinteger and math.type(t.u64) == 'integer'");
  LCHECK("t.f64 == '9223372036854775808' and t.sf64 == math.mininteger");

  /* The bytes on the wire are the standard encoding. */
  char buf[64];
  MW_CHECK_INT(enc_bytes("mwtest.Scalars", "{i32 = 150}", buf, sizeof buf), 3);
  MW_CHECK(memcmp(buf, "\x08\x96\x01", 3) == 0);
  MW_CHECK_INT(enc_bytes("mwtest.Scalars", "{s32 = -1}", buf, sizeof buf), 2);
  MW_CHECK(memcmp(buf, "\x28\x01", 2) == 0);
  MW_CHECK_INT(enc_bytes("mwtest.Scalars", "{i32 = 0}", buf, sizeof buf), 0);
}

static void test_integer_ranges(void) {
  static const struct {
    const char *src, *want;
  } bad[] = {
      {"{i32 = 2147483648}",
       "field 'i32': value 2147483648 out of range for int32"},
      {"{i32 = -2147483649}", "out of range for int32"},
      {"{u32 = -1}", "field 'u32': negative value -1 for uint32"},
      {"{u32 = 4294967296}", "out of range for uint32"},
      {"{s32 = 2147483648}", "out of range for sint32"},
      {"{s32 = -2147483649}", "out of range for sint32"},
      {"{f32 = -1}", "negative value -1 for fixed32"},
      {"{f32 = 4294967296}", "out of range for fixed32"},
      {"{sf32 = -2147483649}", "out of range for sfixed32"},
      {"{sf32 = 2147483648}", "out of range for sfixed32"},
      {"{u64 = -1}", "field 'u64': negative value -1 for uint64"},
      {"{f64 = -5}", "negative value -5 for fixed64"},
      {"{i32 = 'x'}", "field 'i32': expected integer for int32, got string"},
      {"{i64 = true}",
       "expected integer or decimal string for int64, got boolean"},
      {"{i64 = {}}", "got table"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    MW_CHECK(enc_fails("mwtest.Scalars", bad[i].src));
    MW_CHECK_CONTAINS(g_err, bad[i].want);
  }
  MW_CHECK_INT(rt("mwtest.Scalars",
                  "{i32 = 2147483647, u32 = 0, s32 = 2147483647,"
                  " f32 = 0, sf32 = 2147483647}"),
               0);
  LCHECK(
      "t.i32 == 2147483647 and t.s32 == 2147483647 and t.sf32 == 2147483647");
}

static void test_floats_into_integers(void) {
  MW_CHECK_INT(rt("mwtest.Scalars",
                  "{i32 = 3.0, i64 = -4.0e15, u32 = 4294967295.0, u64 = 2.0^63,"
                  " f32 = -0.0, sf64 = -2.0^63}"),
               0);
  LCHECK("t.i32 == 3 and math.type(t.i32) == 'integer'");
  LCHECK("t.i64 == -4000000000000000 and t.u32 == 4294967295");
  LCHECK("t.u64 == '9223372036854775808' and t.f32 == 0");
  LCHECK("t.sf64 == math.mininteger");

  MW_CHECK(enc_fails("mwtest.Scalars", "{i32 = 3.5}"));
  MW_CHECK_CONTAINS(g_err, "field 'i32': non-integral number 3.5 for int32");
  MW_CHECK(enc_fails("mwtest.Scalars", "{i64 = 0/0}"));
  MW_CHECK_CONTAINS(g_err, "non-integral");
  MW_CHECK(enc_fails("mwtest.Scalars", "{i64 = math.huge}"));
  MW_CHECK_CONTAINS(g_err, "non-integral");
  MW_CHECK(enc_fails("mwtest.Scalars", "{i64 = 2.0^63}"));
  MW_CHECK_CONTAINS(g_err, "out of range for int64");
  MW_CHECK(enc_fails("mwtest.Scalars", "{u64 = 2.0^64}"));
  MW_CHECK_CONTAINS(g_err, "out of range for uint64");
  MW_CHECK(enc_fails("mwtest.Scalars", "{i32 = 2.0^31}"));
  MW_CHECK_CONTAINS(g_err, "out of range for int32");
  MW_CHECK(enc_fails("mwtest.Scalars", "{u32 = -1.0}"));
  MW_CHECK_CONTAINS(g_err, "negative value -1 for uint32");
}

static void test_64bit_strings(void) {
  MW_CHECK_INT(rt("mwtest.Scalars",
                  "{i64 = '-9223372036854775808', s64 = '9223372036854775807',"
                  " sf64 = '-1', u64 = '18446744073709551615', f64 = '5'}"),
               0);
  LCHECK("t.i64 == math.mininteger and t.s64 == math.maxinteger");
  LCHECK("t.sf64 == -1 and t.u64 == '18446744073709551615'");
  LCHECK("t.f64 == 5 and math.type(t.f64) == 'integer'");

  static const char *const bad[] = {
      "{i64 = '9223372036854775808'}",
      "{i64 = '-9223372036854775809'}",
      "{u64 = '18446744073709551616'}",
      "{u64 = '-1'}",
      "{f64 = '-0'}",
      "{i64 = '12a'}",
      "{i64 = ''}",
      "{i64 = ' 1'}",
      "{i64 = '+1'}",
      "{i64 = '1.0'}",
      "{sf64 = '-'}",
      "{s64 = '0x10'}",
      "{u64 = '99999999999999999999999'}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    MW_CHECK(enc_fails("mwtest.Scalars", bad[i]));
    MW_CHECK_CONTAINS(g_err, "invalid or out-of-range decimal string");
  }
  /* Only the 64-bit fields take strings. */
  MW_CHECK(enc_fails("mwtest.Scalars", "{u32 = '5'}"));
  MW_CHECK_CONTAINS(g_err,
                    "field 'u32': expected integer for uint32, got string");
}

static void test_float_double_bool(void) {
  MW_CHECK_INT(rt("mwtest.Scalars", "{fl = 3, db = 7, b = false}"), 0);
  LCHECK("t.fl == 3.0 and math.type(t.fl) == 'float'");
  LCHECK("t.db == 7.0 and math.type(t.db) == 'float' and t.b == false");
  MW_CHECK_INT(rt("mwtest.Scalars", "{fl = 0.1, db = 0.1}"), 0);
  LCHECK("t.fl ~= 0.1 and math.abs(t.fl - 0.1) < 1e-7 and t.db == 0.1");
  MW_CHECK_INT(rt("mwtest.Scalars", "{fl = -math.huge, db = 0/0}"), 0);
  LCHECK("t.fl == -math.huge and t.db ~= t.db");
  MW_CHECK_INT(rt("mwtest.Scalars", "{fl = 3.4e38, db = 1e308}"), 0);
  LCHECK("t.fl > 3.39e38 and t.db == 1e308");

  MW_CHECK(enc_fails("mwtest.Scalars", "{fl = 1e39}"));
  MW_CHECK_CONTAINS(
      g_err, "field 'fl': value 9.9999999999999994e+38 out of range for float");
  MW_CHECK(enc_fails("mwtest.Scalars", "{db = '1.5'}"));
  MW_CHECK_CONTAINS(g_err,
                    "field 'db': expected number for double, got string");
  MW_CHECK(enc_fails("mwtest.Scalars", "{b = 1}"));
  MW_CHECK_CONTAINS(g_err, "field 'b': expected boolean, got number");
  MW_CHECK(enc_fails("mwtest.Scalars", "{b = 'true'}"));
  MW_CHECK_CONTAINS(g_err, "expected boolean, got string");
}

static void test_utf8_in(void) {
  static const char *const bad[] = {
      "'\\xff'",
      "'\\x80'",
      "'\\xc0\\x80'",
      "'\\xc1\\xbf'",
      "'\\xe0\\x80\\x80'",
      "'\\xe0\\x9f\\xbf'",
      "'\\xed\\xa0\\x80'",
      "'\\xed\\xbf\\xbf'",
      "'\\xf0\\x8f\\xbf\\xbf'",
      "'\\xf4\\x90\\x80\\x80'",
      "'\\xf5\\x80\\x80\\x80'",
      "'\\xf8\\x88\\x80\\x80\\x80'",
      "'\\xe2\\x82'",
      "'\\xc2\\x41'",
      "'abcdefghijklmnop\\xff'",
      "'abcdefgh\\xe2\\x82\\xac\\xe2\\x82'",
  };
  char src[256];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(src, sizeof src, "{str = %s}", bad[i]);
    MW_CHECK(enc_fails("mwtest.Scalars", src));
    MW_CHECK_CONTAINS(g_err, "field 'str': invalid UTF-8");
    /* bytes take anything */
    snprintf(src, sizeof src, "{by = %s}", bad[i]);
    MW_CHECK_INT(rt("mwtest.Scalars", src), 0);
  }
  MW_CHECK_INT(rt("mwtest.Scalars",
                  "{str = '\\u{7F}\\u{80}\\u{7FF}\\u{800}\\u{D7FF}\\u{E000}"
                  "\\u{FFFF}\\u{10000}\\u{10FFFF}' .. string.rep('a', 40) .. "
                  "'\\u{20AC}'}"),
               0);
  LCHECK(
      "t.str == '\\u{7F}\\u{80}\\u{7FF}\\u{800}\\u{D7FF}\\u{E000}"
      "\\u{FFFF}\\u{10000}\\u{10FFFF}' .. string.rep('a', 40) .. '\\u{20AC}'");

  MW_CHECK(enc_fails("mwtest.Outer", "{tags = {'ok', 'x\\xff'}}"));
  MW_CHECK_CONTAINS(g_err, "field 'tags[2]': invalid UTF-8");
  MW_CHECK(enc_fails("mwtest.Maps", "{k_string = {['\\xff'] = 'x'}}"));
  MW_CHECK_CONTAINS(g_err, "field 'k_string[\"\\xff\"]': invalid UTF-8");
  MW_CHECK(enc_fails("mwtest.Maps", "{k_string = {a = '\\xc0\\x80'}}"));
  MW_CHECK_CONTAINS(g_err, "field 'k_string[\"a\"]': invalid UTF-8");
  MW_CHECK(enc_fails("mwtest.Outer", "{inner = {s = '\\xed\\xa0\\x80'}}"));
  MW_CHECK_CONTAINS(g_err, "field 'inner.s': invalid UTF-8");
}

static void test_utf8_out(void) {
  /* Invalid bytes in a proto3 string on the wire. */
  MW_CHECK_INT(
      cross("mwtest.ScalarsTwin", "{str = 'ok\\xff'}", "mwtest.Scalars"), -1);
  MW_CHECK_STR(g_err,
               "cannot decode mwtest.Scalars: invalid UTF-8 in a string field");
  MW_CHECK_INT(
      cross("mwtest.MapsTwin", "{k_string = {{key = '\\xff', value = 'v'}}}",
            "mwtest.Maps"),
      -1);
  MW_CHECK_CONTAINS(g_err, "cannot decode mwtest.Maps");
  /* proto2 strings are not checked by upb's decoder; the codec checks. */
  MW_CHECK_INT(cross("mwtest2.P2Twin", "{s = '\\xe0\\x80\\x80'}", "mwtest2.P2"),
               -1);
  MW_CHECK_STR(g_err,
               "cannot decode mwtest2.P2: field 's': invalid UTF-8 in string");
  MW_CHECK_INT(cross("mwtest2.P2Twin", "{s = '\\u{10FFFF}'}", "mwtest2.P2"), 0);
  LCHECK("t.s == '\\u{10FFFF}'");

  /* A message built in C with a bad string. */
  upb_Arena *a = upb_Arena_New();
  upb_Message *msg = upb_Message_New(md("mwtest.Scalars"), a);
  upb_MessageValue v;
  v.str_val = upb_StringView_FromDataAndSize("ab\xff", 3);
  upb_Message_Set(msg, fd("mwtest.Scalars", "str"), v, a);
  int top = lua_gettop(L);
  MW_CHECK_INT(
      mw_codec_push_message(L, msg, md("mwtest.Scalars"), g_err, sizeof g_err),
      -1);
  MW_CHECK_INT(lua_gettop(L), top);
  MW_CHECK_STR(g_err, "field 'str': invalid UTF-8 in string");

  /* ...deep inside: the path leads to it. */
  upb_Message *outer = upb_Message_New(md("mwtest.Outer"), a);
  upb_Message *inner = upb_Message_New(md("mwtest.Inner"), a);
  upb_Message *child = upb_Message_New(md("mwtest.Inner"), a);
  upb_Message_Set(child, fd("mwtest.Inner", "s"), v, a);
  upb_Array *children =
      upb_Message_Mutable(inner, fd("mwtest.Inner", "children"), a).array;
  upb_MessageValue ev;
  ev.msg_val = upb_Message_New(md("mwtest.Inner"), a);
  upb_Array_Append(children, ev, a);
  ev.msg_val = child;
  upb_Array_Append(children, ev, a);
  upb_MessageValue iv;
  iv.msg_val = inner;
  upb_Message_Set(outer, fd("mwtest.Outer", "inner"), iv, a);
  MW_CHECK_INT(
      mw_codec_push_message(L, outer, md("mwtest.Outer"), g_err, sizeof g_err),
      -1);
  MW_CHECK_INT(lua_gettop(L), top);
  MW_CHECK_STR(g_err, "field 'inner.children[2].s': invalid UTF-8 in string");
  upb_Arena_Free(a);
}

static void test_enums(void) {
  MW_CHECK_INT(rt("mwtest.Scalars", "{color = 'RED'}"), 0);
  LCHECK("t.color == 'RED'");
  MW_CHECK_INT(rt("mwtest.Scalars", "{color = 2}"), 0);
  LCHECK("t.color == 'GREEN'");
  MW_CHECK_INT(rt("mwtest.Scalars", "{color = 1.0}"), 0);
  LCHECK("t.color == 'RED'");
  MW_CHECK_INT(rt("mwtest.Scalars", "{}"), 0);
  LCHECK("t.color == 'COLOR_UNSPECIFIED'");
  /* Open enum: unknown numbers pass both ways as integers. */
  MW_CHECK_INT(rt("mwtest.Scalars", "{color = 99}"), 0);
  LCHECK("t.color == 99 and math.type(t.color) == 'integer'");
  MW_CHECK_INT(cross("mwtest.ScalarsTwin", "{color = -7}", "mwtest.Scalars"),
               0);
  LCHECK("t.color == -7");
  MW_CHECK_INT(rt("mwtest.Outer", "{colors = {'RED', 2, 0, 42}}"), 0);
  LCHECK(
      "t.colors[1] == 'RED' and t.colors[2] == 'GREEN' and "
      "t.colors[3] == 'COLOR_UNSPECIFIED' and t.colors[4] == 42 and #t.colors "
      "== 4");

  MW_CHECK(enc_fails("mwtest.Scalars", "{color = 'PURPLE'}"));
  MW_CHECK_STR(g_err,
               "field 'color': unknown value 'PURPLE' for enum mwtest.Color");
  MW_CHECK(enc_fails("mwtest.Outer", "{colors = {'RED', 'red'}}"));
  MW_CHECK_STR(g_err,
               "field 'colors[2]': unknown value 'red' for enum mwtest.Color");
  MW_CHECK(enc_fails("mwtest.Scalars", "{color = true}"));
  MW_CHECK_CONTAINS(
      g_err, "expected name or number for enum mwtest.Color, got boolean");
  MW_CHECK(enc_fails("mwtest.Scalars", "{color = 2147483648}"));
  MW_CHECK_CONTAINS(g_err, "out of range for enum mwtest.Color");
  MW_CHECK(enc_fails("mwtest.Scalars", "{color = 1.5}"));
  MW_CHECK_CONTAINS(g_err, "invalid number 1.5 for enum mwtest.Color");

  /* proto2 enums are closed. */
  MW_CHECK_INT(rt("mwtest2.P2", "{c = 'ONE'}"), 0);
  LCHECK("t.c == 'ONE'");
  MW_CHECK_INT(rt("mwtest2.P2", "{c = 0}"), 0);
  LCHECK("t.c == 'ZERO'");
  MW_CHECK(enc_fails("mwtest2.P2", "{c = 5}"));
  MW_CHECK_STR(
      g_err,
      "field 'c': number 5 is not a value of closed enum mwtest2.Closed");
}

static void test_nested_and_absent(void) {
  MW_CHECK_INT(rt("mwtest.Outer",
                  "{inner = {a = 1, s = 'x', children = {{a = 2},"
                  " {a = 3, children = {{a = 4}}}}}, next = {next = {inner = "
                  "{a = 5}}}}"),
               0);
  LCHECK("t.inner.a == 1 and t.inner.s == 'x' and #t.inner.children == 2");
  LCHECK("t.inner.children[2].children[1].a == 4");
  LCHECK("#t.inner.children[1].children == 0");
  LCHECK(
      "t.next.next.inner.a == 5 and t.next.inner == nil and t.next.next.next "
      "== nil");
  /* Message fields absent -> nil; present but empty -> a table of defaults. */
  MW_CHECK_INT(rt("mwtest.Outer", "{}"), 0);
  LCHECK(
      "t.inner == nil and t.next == nil and t.scalars == nil and t.any == nil");
  MW_CHECK_INT(rt("mwtest.Outer", "{inner = {}, scalars = {}}"), 0);
  LCHECK(
      "t.inner.a == 0 and t.inner.s == '' and next(t.inner.children) == nil");
  LCHECK("t.scalars.color == 'COLOR_UNSPECIFIED'");
}

static void test_defaults(void) {
  MW_CHECK_INT(rt("mwtest.Scalars", "{}"), 0);
  LCHECK("t.i32 == 0 and math.type(t.i32) == 'integer' and t.i64 == 0");
  LCHECK("t.u32 == 0 and t.u64 == 0 and t.s32 == 0 and t.s64 == 0");
  LCHECK("t.f32 == 0 and t.f64 == 0 and t.sf32 == 0 and t.sf64 == 0");
  LCHECK("t.fl == 0 and math.type(t.fl) == 'float' and t.db == 0");
  LCHECK("t.b == false and t.str == '' and t.by == ''");
  LCHECK("t.color == 'COLOR_UNSPECIFIED'");
  MW_CHECK_INT(rt("mwtest.Outer", "{}"), 0);
  LCHECK("type(t.nums) == 'table' and next(t.nums) == nil");
  LCHECK("type(t.items) == 'table' and next(t.items) == nil");
  LCHECK("type(t.by_name) == 'table' and next(t.by_name) == nil");
  LCHECK("type(t.anys) == 'table' and next(t.anys) == nil");
  MW_CHECK_INT(rt("mwtest.Maps", "{}"), 0);
  LCHECK("type(t.k_int32) == 'table' and next(t.k_int32) == nil");
  LCHECK("type(t.v_msg) == 'table' and next(t.v_msg) == nil");
  /* Zero bytes, even with no buffer, are the empty message. */
  MW_CHECK_INT(dec("mwtest.Scalars", NULL, 0), 0);
  LCHECK("t.i32 == 0 and t.str == ''");
  /* ...and the empty message encodes to zero bytes (a non-NULL buffer). */
  int top = lua_gettop(L);
  upb_Arena *a = upb_Arena_New();
  lua_newtable(L);
  size_t len = 99;
  char *buf =
      mw_codec_encode(L, -1, md("mwtest.Empty"), a, &len, g_err, sizeof g_err);
  MW_CHECK(buf != NULL);
  MW_CHECK_INT(len, 0);
  lua_pop(L, 1);
  MW_CHECK_INT(lua_gettop(L), top);
  upb_Arena_Free(a);
}

static void test_repeated(void) {
  MW_CHECK_INT(
      rt("mwtest.Outer",
         "{nums = {1, -2, 300}, nums_unpacked = {4, 5}, tags = {'a', ''},"
         " items = {{a = 1}, {s = 'two'}}, big = {1, '18446744073709551615'},"
         " dbls = {1.5, 2}}"),
      0);
  LCHECK(
      "#t.nums == 3 and t.nums[1] == 1 and t.nums[2] == -2 and t.nums[3] == "
      "300");
  LCHECK("#t.nums_unpacked == 2 and t.nums_unpacked[2] == 5");
  LCHECK("#t.tags == 2 and t.tags[1] == 'a' and t.tags[2] == ''");
  LCHECK("#t.items == 2 and t.items[1].a == 1 and t.items[2].s == 'two'");
  LCHECK("t.items[2].a == 0");
  LCHECK("t.big[1] == 1 and t.big[2] == '18446744073709551615'");
  LCHECK(
      "t.dbls[1] == 1.5 and t.dbls[2] == 2.0 and math.type(t.dbls[2]) == "
      "'float'");
  MW_CHECK_INT(rt("mwtest.Outer", "{nums = {}, items = {}}"), 0);
  LCHECK("next(t.nums) == nil and next(t.items) == nil");
  /* A longer one, to cross any array-part/hash-part boundary. */
  MW_CHECK_INT(rt("mwtest.Outer",
                  "(function() local n = {} for i = 1, 1000 do n[i] = i * 3 end"
                  " return {nums = n} end)()"),
               0);
  LCHECK("#t.nums == 1000 and t.nums[1000] == 3000 and t.nums[500] == 1500");
}

static void test_packed_unpacked(void) {
  MW_CHECK(upb_FieldDef_IsPacked(fd("mwtest.Outer", "nums")));
  MW_CHECK(!upb_FieldDef_IsPacked(fd("mwtest.Outer", "nums_unpacked")));
  MW_CHECK(!upb_FieldDef_IsPacked(fd("mwtest.PackedTwin", "nums")));
  MW_CHECK(upb_FieldDef_IsPacked(fd("mwtest.PackedTwin", "nums_unpacked")));
  char buf[64];
  MW_CHECK_INT(enc_bytes("mwtest.Outer", "{nums = {1, 2}}", buf, sizeof buf),
               4);
  MW_CHECK(memcmp(buf, "\x1a\x02\x01\x02", 4) == 0);
  MW_CHECK_INT(
      enc_bytes("mwtest.Outer", "{nums_unpacked = {1, 2}}", buf, sizeof buf),
      4);
  MW_CHECK(memcmp(buf, "\x20\x01\x20\x02", 4) == 0);
  /* Each side decodes the other's encoding. */
  MW_CHECK_INT(
      cross("mwtest.PackedTwin",
            "{nums = {7, 8, 9}, nums_unpacked = {-1, 300}}", "mwtest.Outer"),
      0);
  LCHECK("#t.nums == 3 and t.nums[3] == 9 and #t.nums_unpacked == 2");
  LCHECK("t.nums_unpacked[1] == -1 and t.nums_unpacked[2] == 300");
  MW_CHECK_INT(
      cross("mwtest.Outer", "{nums = {7, 8, 9}, nums_unpacked = {-1, 300}}",
            "mwtest.PackedTwin"),
      0);
  LCHECK("#t.nums == 3 and t.nums[3] == 9 and t.nums_unpacked[2] == 300");
  /* proto2 repeated scalars are unpacked by default. */
  MW_CHECK(!upb_FieldDef_IsPacked(fd("mwtest2.P2", "r")));
  MW_CHECK_INT(rt("mwtest2.P2", "{r = {3, 2, 1}}"), 0);
  LCHECK("t.r[1] == 3 and t.r[3] == 1");
}

static void test_array_errors(void) {
  MW_CHECK(enc_fails("mwtest.Outer", "{nums = {1, nil, 3}}"));
  MW_CHECK_CONTAINS(g_err, "field 'nums");
  MW_CHECK(enc_fails("mwtest.Outer", "{nums = {1, 2, x = 3}}"));
  MW_CHECK_STR(g_err,
               "field 'nums[\"x\"]': array has a key that is not an integer");
  MW_CHECK(enc_fails("mwtest.Outer", "{nums = {[2] = 5}}"));
  MW_CHECK_CONTAINS(g_err, "field 'nums");
  MW_CHECK(enc_fails("mwtest.Outer", "{nums = {[0] = 1, 2}}"));
  MW_CHECK_CONTAINS(g_err, "field 'nums[0]': array is not a sequence 1..1");
  MW_CHECK(enc_fails("mwtest.Outer", "{nums = {[1.5] = 1}}"));
  MW_CHECK_CONTAINS(g_err, "not an integer");
  MW_CHECK(enc_fails("mwtest.Outer", "{nums = 5}"));
  MW_CHECK_STR(
      g_err,
      "field 'nums': expected table (array) for repeated int32, got number");
  MW_CHECK(enc_fails("mwtest.Outer", "{items = {{a = 1}, 5}}"));
  MW_CHECK_STR(
      g_err,
      "field 'items[2]': expected table for message mwtest.Inner, got number");
  MW_CHECK(enc_fails("mwtest.Outer", "{nums = {1, 'x'}}"));
  MW_CHECK_STR(g_err,
               "field 'nums[2]': expected integer for int32, got string");
  /* A border far beyond the element count must not allocate a huge array. */
  MW_CHECK(enc_fails(
      "mwtest.Outer",
      "(function() local n = {} local i = 1 while i <= 2^40 do"
      " n[math.tointeger(i)] = 1 i = i * 2 end return {nums = n} end)()"));
  MW_CHECK_CONTAINS(g_err, "field 'nums");
}

static void test_maps(void) {
  MW_CHECK_INT(
      rt("mwtest.Maps",
         "{k_int32 = {[-1] = 'a', [2147483647] = 'b'},"
         " k_int64 = {[math.mininteger] = 'min', ['42'] = 'str'},"
         " k_uint32 = {[4294967295] = 'u'},"
         " k_uint64 = {['18446744073709551615'] = 'big', [5] = 'five'},"
         " k_sint32 = {[-5] = 's'}, k_sint64 = {[-6] = 's'},"
         " k_fixed32 = {[7] = 'f'}, k_fixed64 = {['18446744073709551614'] = "
         "'f'},"
         " k_sfixed32 = {[-8] = 'sf'}, k_sfixed64 = {[-9] = 'sf'},"
         " k_bool = {[true] = 'T', [false] = 'F'},"
         " k_string = {[''] = 'empty', x = 'X'},"
         " v_msg = {m = {a = 1}, e = {}}, v_enum = {e = 'RED', n = 2, z = 0, u "
         "= 9},"
         " v_double = {d = 2.5, i = 3}, v_u64 = {[1] = '18446744073709551615', "
         "[2] = 3},"
         " v_bytes = {b = '\\0\\255'}}"),
      0);
  LCHECK("t.k_int32[-1] == 'a' and t.k_int32[2147483647] == 'b'");
  LCHECK("t.k_int64[math.mininteger] == 'min' and t.k_int64[42] == 'str'");
  LCHECK("t.k_uint32[4294967295] == 'u'");
  LCHECK(
      "t.k_uint64['18446744073709551615'] == 'big' and t.k_uint64[5] == "
      "'five'");
  LCHECK("t.k_sint32[-5] == 's' and t.k_sint64[-6] == 's'");
  LCHECK(
      "t.k_fixed32[7] == 'f' and t.k_fixed64['18446744073709551614'] == 'f'");
  LCHECK("t.k_sfixed32[-8] == 'sf' and t.k_sfixed64[-9] == 'sf'");
  LCHECK("t.k_bool[true] == 'T' and t.k_bool[false] == 'F'");
  LCHECK("t.k_string[''] == 'empty' and t.k_string.x == 'X'");
  LCHECK("t.v_msg.m.a == 1 and t.v_msg.e.a == 0 and t.v_msg.e.s == ''");
  LCHECK(
      "t.v_enum.e == 'RED' and t.v_enum.n == 'GREEN' and "
      "t.v_enum.z == 'COLOR_UNSPECIFIED' and t.v_enum.u == 9");
  LCHECK(
      "t.v_double.d == 2.5 and t.v_double.i == 3.0 and math.type(t.v_double.i) "
      "== 'float'");
  LCHECK("t.v_u64[1] == '18446744073709551615' and t.v_u64[2] == 3");
  LCHECK("t.v_bytes.b == '\\0\\255'");

  MW_CHECK(enc_fails("mwtest.Maps", "{k_int32 = {x = 'a'}}"));
  MW_CHECK_STR(
      g_err, "field 'k_int32[\"x\"]': expected integer for int32, got string");
  MW_CHECK(enc_fails("mwtest.Maps", "{k_int32 = {[2^40] = 'a'}}"));
  MW_CHECK_STR(g_err,
               "field 'k_int32[1099511627776]': value 1099511627776 out of "
               "range for int32");
  MW_CHECK(enc_fails("mwtest.Maps", "{k_uint32 = {[-1] = 'a'}}"));
  MW_CHECK_CONTAINS(g_err, "negative value -1 for uint32");
  MW_CHECK(enc_fails("mwtest.Maps", "{k_int32 = {[1] = 5}}"));
  MW_CHECK_STR(g_err,
               "field 'k_int32[1]': expected string for string, got number");
  MW_CHECK(enc_fails("mwtest.Maps", "{k_bool = {[1] = 'x'}}"));
  MW_CHECK_STR(g_err, "field 'k_bool[1]': expected boolean, got number");
  MW_CHECK(enc_fails("mwtest.Maps", "{k_string = {[1] = 'x'}}"));
  MW_CHECK_STR(g_err,
               "field 'k_string[1]': expected string for string, got number");
  MW_CHECK(enc_fails("mwtest.Maps", "{k_int32 = {[1.5] = 'x'}}"));
  MW_CHECK_CONTAINS(g_err,
                    "field 'k_int32[<number>]': non-integral number 1.5");
  MW_CHECK(enc_fails("mwtest.Maps", "{v_msg = {m = {zz = 1}}}"));
  MW_CHECK_STR(g_err,
               "unknown field 'v_msg[\"m\"].zz' in message mwtest.Inner");
  MW_CHECK(enc_fails("mwtest.Maps", "{v_enum = {[true] = 'RED'}}"));
  MW_CHECK_STR(g_err,
               "field 'v_enum[true]': expected string for string, got boolean");
  MW_CHECK(enc_fails("mwtest.Maps", "{v_enum = {a = 'BLUE'}}"));
  MW_CHECK_STR(
      g_err,
      "field 'v_enum[\"a\"]': unknown value 'BLUE' for enum mwtest.Color");
  MW_CHECK(enc_fails("mwtest.Maps", "{k_int32 = 5}"));
  MW_CHECK_STR(g_err, "field 'k_int32': expected table for map, got number");
}

static void test_oneof(void) {
  MW_CHECK_INT(rt("mwtest.Outer", "{choice_num = 0}"), 0);
  LCHECK("t.choice_num == 0 and t.choice_str == nil and t.choice_msg == nil");
  MW_CHECK_INT(rt("mwtest.Outer", "{choice_str = ''}"), 0);
  LCHECK("t.choice_num == nil and t.choice_str == '' and t.choice_msg == nil");
  MW_CHECK_INT(rt("mwtest.Outer", "{choice_msg = {a = 3}}"), 0);
  LCHECK("t.choice_num == nil and t.choice_str == nil and t.choice_msg.a == 3");
  MW_CHECK_INT(rt("mwtest.Outer", "{}"), 0);
  LCHECK("t.choice_num == nil and t.choice_str == nil and t.choice_msg == nil");

  MW_CHECK(enc_fails("mwtest.Outer", "{choice_num = 1, choice_str = 'x'}"));
  MW_CHECK_CONTAINS(g_err, "oneof 'choice' already has");
  MW_CHECK(enc_fails("mwtest.Outer", "{choice_msg = {}, choice_num = 0}"));
  MW_CHECK_CONTAINS(g_err, "oneof 'choice' already has");
  /* The oneof's own name is not a field. */
  MW_CHECK(enc_fails("mwtest.Outer", "{choice = {choice_num = 1}}"));
  MW_CHECK_STR(g_err, "unknown field 'choice' in message mwtest.Outer");
}

/* An unknown key names the field most likely meant: one or two edits away,
 * a swap of neighbours counting as one, never more than half the key. */
static void test_unknown_field_hint(void) {
  MW_CHECK(enc_fails("mwtest.Inner", "{chidlren = {}}"));
  MW_CHECK_STR(g_err, "unknown field 'chidlren' in message mwtest.Inner (did you mean 'children'?)");
  MW_CHECK(enc_fails("mwtest.Inner", "{childs = {}}"));
  MW_CHECK_STR(g_err, "unknown field 'childs' in message mwtest.Inner");
  MW_CHECK(enc_fails("mwtest.Outer", "{inner = {ss = 'x'}}"));
  MW_CHECK_STR(g_err, "unknown field 'inner.ss' in message mwtest.Inner (did you mean 's'?)");
  /* one letter is too short to guess from */
  MW_CHECK(enc_fails("mwtest.Inner", "{b = 1}"));
  MW_CHECK_STR(g_err, "unknown field 'b' in message mwtest.Inner");
  MW_CHECK(enc_fails("mwtest.Inner", "{zzzzzz = 1}"));
  MW_CHECK_STR(g_err, "unknown field 'zzzzzz' in message mwtest.Inner");
}

static void test_optional(void) {
  MW_CHECK_INT(rt("mwtest.Outer", "{}"), 0);
  LCHECK("t.opt_num == nil and t.opt_str == nil");
  MW_CHECK_INT(rt("mwtest.Outer", "{opt_num = 0, opt_str = ''}"), 0);
  LCHECK("t.opt_num == 0 and t.opt_str == ''");
  MW_CHECK_INT(rt("mwtest.Outer", "{opt_num = 5}"), 0);
  LCHECK("t.opt_num == 5 and t.opt_str == nil");
  /* Nor is the synthetic oneof of a proto3 optional. */
  MW_CHECK(enc_fails("mwtest.Outer", "{_opt_num = 1}"));
  MW_CHECK_STR(g_err, "unknown field '_opt_num' in message mwtest.Outer (did you mean 'opt_num'?)");
  /* proto2 optional: absent -> nil, present default -> value. */
  MW_CHECK_INT(rt("mwtest2.P2", "{}"), 0);
  LCHECK("t.n == nil and t.s == nil and t.c == nil and next(t.r) == nil");
  MW_CHECK_INT(rt("mwtest2.P2", "{n = 0, s = ''}"), 0);
  LCHECK("t.n == 0 and t.s == '' and t.c == nil");
}

/* Reads the Any in field `any` of an Outer built from src. */
static void any_parts(const char *src, char *url, size_t urlcap, int32_t *a) {
  upb_Arena *ar = upb_Arena_New();
  url[0] = '\0';
  *a = -1;
  if (push_lua(src) == 0) {
    upb_Message *msg =
        mw_codec_to_message(L, -1, md("mwtest.Outer"), ar, g_err, sizeof g_err);
    lua_pop(L, 1);
    MW_CHECK(msg != NULL);
    if (msg && upb_Message_Has(msg, fd("mwtest.Outer", "any"))) {
      const upb_Message *any =
          upb_Message_Get(msg, fd("mwtest.Outer", "any")).msg_val;
      const upb_MessageDef *anym =
          upb_FieldDef_MessageSubDef(fd("mwtest.Outer", "any"));
      upb_StringView u =
          upb_Message_Get(any, upb_MessageDef_FindFieldByName(anym, "type_url"))
              .str_val;
      upb_StringView v =
          upb_Message_Get(any, upb_MessageDef_FindFieldByName(anym, "value"))
              .str_val;
      snprintf(url, urlcap, "%.*s", (int)u.size, u.data);
      upb_Message *inner = upb_Message_New(md("mwtest.Inner"), ar);
      if (upb_Decode(v.data, v.size, inner,
                     upb_MessageDef_MiniTable(md("mwtest.Inner")), NULL, 0,
                     ar) == kUpb_DecodeStatus_Ok)
        *a = upb_Message_Get(inner, fd("mwtest.Inner", "a")).int32_val;
    }
  }
  upb_Arena_Free(ar);
}

static void test_any(void) {
  /* Known type: packed on the way in, unpacked on the way out. */
  MW_CHECK_INT(rt("mwtest.Outer",
                  "{any = {['@type'] = 'type.googleapis.com/mwtest.Inner', a = "
                  "5, s = 'x'}}"),
               0);
  LCHECK("t.any['@type'] == 'type.googleapis.com/mwtest.Inner'");
  LCHECK("t.any.a == 5 and t.any.s == 'x' and next(t.any.children) == nil");
  LCHECK("t.any['@value'] == nil and t.any.type_url == nil");
  char url[128];
  int32_t a;
  any_parts("{any = {['@type'] = 'type.googleapis.com/mwtest.Inner', a = 5}}",
            url, sizeof url, &a);
  MW_CHECK_STR(url, "type.googleapis.com/mwtest.Inner");
  MW_CHECK_INT(a, 5);
  /* The prefix is added when missing, another one is kept. */
  any_parts("{any = {['@type'] = 'mwtest.Inner', a = 6}}", url, sizeof url, &a);
  MW_CHECK_STR(url, "type.googleapis.com/mwtest.Inner");
  MW_CHECK_INT(a, 6);
  any_parts("{any = {['@type'] = 'example.com/x/mwtest.Inner', a = 7}}", url,
            sizeof url, &a);
  MW_CHECK_STR(url, "example.com/x/mwtest.Inner");
  MW_CHECK_INT(a, 7);
  MW_CHECK_INT(rt("mwtest.Outer", "{any = {['@type'] = 'mwtest.Inner'}}"), 0);
  LCHECK(
      "t.any['@type'] == 'type.googleapis.com/mwtest.Inner' and t.any.a == 0");

  /* Unknown type: raw bytes both ways. */
  MW_CHECK_INT(rt("mwtest.Outer",
                  "{any = {['@type'] = 'type.googleapis.com/nope.Missing',"
                  " ['@value'] = '\\1\\2\\255'}}"),
               0);
  LCHECK("t.any['@type'] == 'type.googleapis.com/nope.Missing'");
  LCHECK("t.any['@value'] == '\\1\\2\\255'");
  MW_CHECK(
      enc_fails("mwtest.Outer", "{any = {['@type'] = 'nope.Missing', a = 1}}"));
  MW_CHECK_CONTAINS(g_err,
                    "field 'any': google.protobuf.Any type 'nope.Missing' is "
                    "not in the schema");
  MW_CHECK(enc_fails(
      "mwtest.Outer",
      "{any = {['@type'] = 'nope.Missing', ['@value'] = 'x', a = 1}}"));
  MW_CHECK_CONTAINS(g_err,
                    "field 'any[\"a\"]': google.protobuf.Any with '@value' "
                    "takes no other keys");
  /* A known type given as raw bytes is unpacked on the way out. */
  MW_CHECK_INT(
      rt("mwtest.Outer",
         "{any = {['@type'] = 'mwtest.Inner', ['@value'] = '\\8\\7'}}"),
      0);
  LCHECK("t.any.a == 7");
  /* ...and bytes that are not that type are an error there. */
  MW_CHECK_INT(rt("mwtest.Outer",
                  "{any = {['@type'] = 'mwtest.Inner', ['@value'] = '\\255'}}"),
               -1);
  MW_CHECK_CONTAINS(g_err,
                    "cannot decode mwtest.Outer: field 'any': cannot unpack "
                    "google.protobuf.Any of type mwtest.Inner");

  /* Errors inside the packed message carry the path. */
  MW_CHECK(enc_fails("mwtest.Outer",
                     "{any = {['@type'] = 'mwtest.Inner', zz = 1}}"));
  MW_CHECK_STR(g_err, "unknown field 'any.zz' in message mwtest.Inner");
  MW_CHECK(enc_fails("mwtest.Outer",
                     "{any = {['@type'] = 'mwtest.Inner', a = 'x'}}"));
  MW_CHECK_STR(g_err, "field 'any.a': expected integer for int32, got string");
  MW_CHECK(enc_fails("mwtest.Outer", "{any = {['@type'] = 5}}"));
  MW_CHECK_CONTAINS(g_err, "'@type' must be a string");
  MW_CHECK(enc_fails("mwtest.Outer",
                     "{any = {['@type'] = 'mwtest.Inner', ['@value'] = 5}}"));
  MW_CHECK_CONTAINS(g_err, "'@value' must be a string");

  /* Nested: an Any in a message packed in an Any. */
  MW_CHECK_INT(
      rt("mwtest.Outer",
         "{any = {['@type'] = 'type.googleapis.com/mwtest.Outer', opt_num = 1,"
         " any = {['@type'] = 'type.googleapis.com/mwtest.Inner', a = 9}}}"),
      0);
  LCHECK(
      "t.any['@type'] == 'type.googleapis.com/mwtest.Outer' and t.any.opt_num "
      "== 1");
  LCHECK(
      "t.any.any['@type'] == 'type.googleapis.com/mwtest.Inner' and "
      "t.any.any.a == 9");
  /* An Any packed directly in an Any sits under "value". */
  MW_CHECK_INT(
      rt("mwtest.Outer",
         "{any = {['@type'] = 'type.googleapis.com/google.protobuf.Any',"
         " value = {['@type'] = 'type.googleapis.com/mwtest.Inner', a = 3}}}"),
      0);
  LCHECK("t.any['@type'] == 'type.googleapis.com/google.protobuf.Any'");
  LCHECK(
      "t.any.value['@type'] == 'type.googleapis.com/mwtest.Inner' and "
      "t.any.value.a == 3");
  MW_CHECK(enc_fails("mwtest.Outer",
                     "{any = {['@type'] = 'google.protobuf.Any', a = 1}}"));
  MW_CHECK_STR(g_err, "unknown field 'any.a' in message google.protobuf.Any");

  /* Without "@type" an Any is an ordinary message. */
  MW_CHECK_INT(rt("mwtest.Outer", "{any = {}}"), 0);
  LCHECK("t.any['@type'] == '' and t.any['@value'] == ''");
  MW_CHECK_INT(rt("mwtest.Outer",
                  "{any = {type_url = 'x/mwtest.Inner', value = '\\8\\4'}}"),
               0);
  LCHECK("t.any['@type'] == 'x/mwtest.Inner' and t.any.a == 4");
  /* Repeated Any. */
  MW_CHECK_INT(rt("mwtest.Outer",
                  "{anys = {{['@type'] = 'mwtest.Inner', a = 1}, {['@type'] = "
                  "'mwtest.Empty'},"
                  " {['@type'] = 'a.b/c.D', ['@value'] = ''}}}"),
               0);
  LCHECK("#t.anys == 3 and t.anys[1].a == 1");
  LCHECK(
      "t.anys[2]['@type'] == 'type.googleapis.com/mwtest.Empty' and "
      "t.anys[2].a == nil");
  LCHECK("t.anys[3]['@type'] == 'a.b/c.D' and t.anys[3]['@value'] == ''");
}

static void test_unknown_and_shape_errors(void) {
  MW_CHECK(enc_fails("mwtest.Outer", "{zz = 1}"));
  MW_CHECK_STR(g_err, "unknown field 'zz' in message mwtest.Outer");
  MW_CHECK(enc_fails("mwtest.Outer", "{inner = {x = 1}}"));
  MW_CHECK_STR(g_err, "unknown field 'inner.x' in message mwtest.Inner");
  MW_CHECK(enc_fails("mwtest.Outer", "{items = {{a = 1}, {x = 1}}}"));
  MW_CHECK_STR(g_err, "unknown field 'items[2].x' in message mwtest.Inner");
  MW_CHECK(
      enc_fails("mwtest.Outer",
                "{next = {next = {inner = {children = {{}, {}, {q = 1}}}}}}"));
  MW_CHECK_STR(
      g_err,
      "unknown field 'next.next.inner.children[3].q' in message mwtest.Inner");
  MW_CHECK(enc_fails("mwtest.Outer", "{[1] = 5}"));
  MW_CHECK_STR(
      g_err,
      "field '[1]': message mwtest.Outer has only string keys (field names)");
  MW_CHECK(enc_fails("mwtest.Outer", "{inner = {[true] = 1}}"));
  MW_CHECK_STR(g_err,
               "field 'inner[true]': message mwtest.Inner has only string keys "
               "(field names)");
  MW_CHECK(enc_fails("mwtest.Outer", "{inner = 5}"));
  MW_CHECK_STR(
      g_err,
      "field 'inner': expected table for message mwtest.Inner, got number");
  MW_CHECK(enc_fails("mwtest.Outer", "{next = {inner = 'x'}}"));
  MW_CHECK_STR(g_err,
               "field 'next.inner': expected table for message mwtest.Inner, "
               "got string");
  MW_CHECK(enc_fails("mwtest.Outer", "'not a table'"));
  MW_CHECK_STR(g_err, "expected table for message mwtest.Outer, got string");
  MW_CHECK(enc_fails("mwtest.Outer", "nil"));
  MW_CHECK_STR(g_err, "expected table for message mwtest.Outer, got nil");
  MW_CHECK(enc_fails("mwtest.Outer", "{inner = {a = 1}, scalars = {str = 1}}"));
  MW_CHECK_STR(g_err,
               "field 'scalars.str': expected string for string, got number");
  /* Odd bytes in keys are escaped; long keys are cut, not overflowed. */
  MW_CHECK(enc_fails("mwtest.Outer", "{inner = {['a\\xff\\'b'] = 1}}"));
  MW_CHECK_STR(g_err,
               "unknown field 'inner.a\\xff\\x27b' in message mwtest.Inner");
  MW_CHECK(enc_fails("mwtest.Outer", "{[string.rep('k', 1000)] = 1}"));
  MW_CHECK_CONTAINS(g_err, "unknown field 'kkkk");
  MW_CHECK(strlen(g_err) < sizeof g_err);
}

static void test_depth(void) {
  MW_CHECK(enc_fails("mwtest.Outer",
                     "(function() local t = {} t.next = t return t end)()"));
  MW_CHECK_CONTAINS(g_err, "message nesting deeper than 100");
  MW_CHECK_CONTAINS(g_err, "field 'next.next.next");
  MW_CHECK_INT(rt("mwtest.Outer",
                  "(function() local t = {opt_num = 50} for i = 49, 1, -1 do"
                  " t = {next = t, opt_num = i} end return t end)()"),
               0);
  LCHECK("t.next.next.next.opt_num == 4");
  LCHECK(
      "(function() local x = t for i = 1, 49 do x = x.next end return "
      "x.opt_num end)() == 50");
}

/* to_message copies the strings: the message outlives the table. */
static void test_to_message_owns_strings(void) {
  int top = lua_gettop(L);
  upb_Arena *a = upb_Arena_New();
  MW_CHECK_INT(push_lua("{inner = {s = string.rep('x', 100) .. 1},"
                        " tags = {string.rep('y', 64) .. 2},"
                        " by_name = {[string.rep('k', 50) .. 3] = {s = "
                        "string.rep('v', 50) .. 4}},"
                        " any = {['@type'] = 'nope.' .. string.rep('T', 40),"
                        " ['@value'] = string.rep('z', 80) .. 5}}"),
               0);
  upb_Message *msg =
      mw_codec_to_message(L, -1, md("mwtest.Outer"), a, g_err, sizeof g_err);
  MW_CHECK(msg != NULL);
  lua_pop(L, 1);
  lua_gc(L, LUA_GCCOLLECT, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  if (msg) {
    MW_CHECK_INT(
        mw_codec_push_message(L, msg, md("mwtest.Outer"), g_err, sizeof g_err),
        0);
    lua_setglobal(L, "t");
    LCHECK("t.inner.s == string.rep('x', 100) .. 1");
    LCHECK("t.tags[1] == string.rep('y', 64) .. 2");
    LCHECK("t.by_name[string.rep('k', 50) .. 3].s == string.rep('v', 50) .. 4");
    LCHECK(
        "t.any['@type'] == 'type.googleapis.com/nope.' .. string.rep('T', 40)");
    LCHECK("t.any['@value'] == string.rep('z', 80) .. 5");
  }
  MW_CHECK_INT(lua_gettop(L), top);
  upb_Arena_Free(a);
}

static void test_stack_and_indexes(void) {
  int top = lua_gettop(L);
  upb_Arena *a = upb_Arena_New();
  /* Relative index with something above the table. */
  MW_CHECK_INT(push_lua("{opt_num = 3}"), 0);
  lua_pushinteger(L, 1);
  lua_pushnil(L);
  size_t len = 0;
  char *buf =
      mw_codec_encode(L, -3, md("mwtest.Outer"), a, &len, g_err, sizeof g_err);
  MW_CHECK(buf != NULL);
  MW_CHECK_INT(lua_gettop(L), top + 3);
  upb_Message *msg =
      mw_codec_to_message(L, -3, md("mwtest.Outer"), a, g_err, sizeof g_err);
  MW_CHECK(msg != NULL);
  MW_CHECK_INT(lua_gettop(L), top + 3);
  /* An absolute index too. */
  msg = mw_codec_to_message(L, top + 1, md("mwtest.Outer"), a, g_err,
                            sizeof g_err);
  MW_CHECK(msg != NULL);
  lua_settop(L, top);
  if (buf) {
    MW_CHECK_INT(mw_codec_decode_push(L, buf, len, md("mwtest.Outer"), a, g_err,
                                      sizeof g_err),
                 0);
    MW_CHECK_INT(lua_gettop(L), top + 1);
    lua_pop(L, 1);
  }
  /* Failures deep inside leave the stack as it was. */
  MW_CHECK_INT(push_lua("{items = {{children = {{children = {{zz = 1}}}}}}}"),
               0);
  MW_CHECK(mw_codec_encode(L, -1, md("mwtest.Outer"), a, &len, g_err,
                           sizeof g_err) == NULL);
  MW_CHECK_INT(lua_gettop(L), top + 1);
  MW_CHECK_STR(g_err,
               "unknown field 'items[1].children[1].children[1].zz' in message "
               "mwtest.Inner");
  /* No error buffer, or a tiny one: still fails cleanly. */
  MW_CHECK(mw_codec_to_message(L, -1, md("mwtest.Outer"), a, NULL, 0) == NULL);
  char tiny[8];
  MW_CHECK(mw_codec_to_message(L, -1, md("mwtest.Outer"), a, tiny,
                               sizeof tiny) == NULL);
  MW_CHECK_STR(tiny, "unknown");
  MW_CHECK(mw_codec_decode_push(L, "\xff", 1, md("mwtest.Outer"), a, NULL, 0) ==
           -1);
  MW_CHECK_INT(lua_gettop(L), top + 1);
  lua_settop(L, top);
  upb_Arena_Free(a);
}

static uint32_t rng_state = 0x12345678u;
static uint32_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}

/* Garbage in: -1 with a message or a table, never a crash. */
static void test_garbage(void) {
  static const char *const types[] = {"mwtest.Outer", "mwtest.Maps",
                                      "mwtest.Scalars"};
  int top = lua_gettop(L), failed = 0, total = 0;
  char buf[256];
  for (int i = 0; i < 400; i++) {
    size_t n = rng() % 64;
    for (size_t k = 0; k < n; k++) buf[k] = (char)rng();
    for (size_t ty = 0; ty < 3; ty++) {
      upb_Arena *a = upb_Arena_New();
      int rc = mw_codec_decode_push(L, buf, n, md(types[ty]), a, g_err,
                                    sizeof g_err);
      total++;
      if (rc != 0) {
        failed++;
        if (strncmp(g_err, "cannot decode mwtest.", 21) != 0)
          MW_CHECK_STR(g_err, "cannot decode ...");
        if (lua_gettop(L) != top) MW_CHECK_INT(lua_gettop(L), top);
      } else {
        lua_pop(L, 1);
      }
      upb_Arena_Free(a);
    }
  }
  /* Every prefix and some byte flips of a rich valid message. */
  char valid[1024];
  size_t vn = enc_bytes(
      "mwtest.Outer",
      "{inner = {a = 1, s = 'x', children = {{a = 2}}}, items = {{a = 3}},"
      " nums = {1, 2, 300}, tags = {'a'}, by_name = {k = {a = 1}}, choice_str "
      "= 'c',"
      " opt_num = 0, any = {['@type'] = 'mwtest.Outer', inner = {s = 'deep'},"
      " any = {['@type'] = 'mwtest.Inner', a = 1}}, big = "
      "{'18446744073709551615'},"
      " scalars = {str = 'h\\u{e9}', color = 'RED', db = 1.5}}",
      valid, sizeof valid);
  MW_CHECK(vn != (size_t)-1 && vn > 40);
  if (vn == (size_t)-1) return;
  for (size_t cut = 0; cut <= vn; cut++) {
    upb_Arena *a = upb_Arena_New();
    /* A copy of exactly cut bytes, so ASan sees any over-read. */
    char *p = malloc(cut ? cut : 1);
    memcpy(p, valid, cut);
    int rc = mw_codec_decode_push(L, p, cut, md("mwtest.Outer"), a, g_err,
                                  sizeof g_err);
    total++;
    if (rc == 0)
      lua_pop(L, 1);
    else
      failed++;
    free(p);
    upb_Arena_Free(a);
  }
  for (int i = 0; i < 400; i++) {
    memcpy(buf, valid, vn < sizeof buf ? vn : sizeof buf);
    size_t n = vn < sizeof buf ? vn : sizeof buf;
    for (int k = 0; k < 3; k++) buf[rng() % n] ^= (char)(1u << (rng() % 8));
    upb_Arena *a = upb_Arena_New();
    int rc = mw_codec_decode_push(L, buf, n, md("mwtest.Outer"), a, g_err,
                                  sizeof g_err);
    total++;
    if (rc == 0)
      lua_pop(L, 1);
    else
      failed++;
    upb_Arena_Free(a);
  }
  MW_CHECK_INT(lua_gettop(L), top);
  MW_CHECK(failed > 0 && failed < total);
  MW_CHECK_INT(dec("mwtest.Outer", "\xff", 1), -1);
  MW_CHECK_STR(g_err, "cannot decode mwtest.Outer: malformed wire data");
}

/* ---- wire format -------------------------------------------------------- */

/* The old path: upb_Decode into a message, then mw_codec_push_message (what
 * decode_push did before it read the wire itself). Pushes the table. */
static int old_decode(const upb_MessageDef *m, const char *buf, size_t len,
                      char *err, size_t errlen) {
  upb_Arena *a = upb_Arena_New();
  upb_Message *msg = upb_Message_New(m, a);
  upb_DecodeStatus st = upb_Decode(
      len ? buf : "", len, msg, upb_MessageDef_MiniTable(m),
      upb_DefPool_ExtensionRegistry(g_pool), kUpb_DecodeOption_AliasString, a);
  int rc = -1;
  if (st == kUpb_DecodeStatus_Ok)
    rc = mw_codec_push_message(L, msg, m, err, errlen);
  else
    snprintf(err, errlen, "upb status %d", (int)st);
  upb_Arena_Free(a);
  return rc;
}

/* Decodes hex bytes (spaces ignored) as type into t. */
static int dec_hex(const char *type, const char *hex) {
  char buf[1024];
  size_t n = 0;
  for (const char *p = hex; *p && n < sizeof buf;) {
    if (*p == ' ') {
      p++;
      continue;
    }
    unsigned x = 0;
    sscanf(p, "%2x", &x);
    buf[n++] = (char)x;
    p += 2;
  }
  return dec(type, buf, n);
}

/* Encodes src as type and checks the bytes against hex. */
static void enc_is(const char *type, const char *src, const char *hex) {
  char buf[1024], want[1024];
  size_t n = enc_bytes(type, src, buf, sizeof buf), wn = 0;
  for (const char *p = hex; *p && wn < sizeof want;) {
    if (*p == ' ') {
      p++;
      continue;
    }
    unsigned x = 0;
    sscanf(p, "%2x", &x);
    want[wn++] = (char)x;
    p += 2;
  }
  MW_CHECK_INT(n, wn);
  if (n == wn) MW_CHECK(memcmp(buf, want, n) == 0);
  if (n != wn || memcmp(buf, want, n) != 0) {
    fprintf(stderr, "[%s] %s encodes to ", mw_test_current, src);
    for (size_t i = 0; n != (size_t)-1 && i < n; i++)
      fprintf(stderr, "%02x", (unsigned char)buf[i]);
    fprintf(stderr, ", expected %s\n", hex);
  }
}

/* The decoder relies on these properties of the pool's descriptors. */
static void check_defs(const upb_MessageDef *m, int depth) {
  const char *full = upb_MessageDef_FullName(m);
  size_t skip = strlen(full) + 1;
  for (int i = 0; i < upb_MessageDef_FieldCount(m); i++) {
    const upb_FieldDef *f = upb_MessageDef_Field(m, i);
    MW_CHECK_INT(upb_FieldDef_Index(f), i);
    MW_CHECK_STR(upb_FieldDef_FullName(f) + skip, upb_FieldDef_Name(f));
    if (upb_FieldDef_IsRepeated(f)) continue;
    const upb_OneofDef *o = upb_FieldDef_ContainingOneof(f);
    int proto3 = upb_MessageDef_Syntax(m) == kUpb_Syntax_Proto3;
    MW_CHECK_INT(upb_FieldDef_HasPresence(f),
                 !proto3 || upb_FieldDef_IsSubMessage(f) || o != NULL);
  }
  for (int i = 0; depth < 3 && i < upb_MessageDef_NestedMessageCount(m); i++)
    check_defs(upb_MessageDef_NestedMessage(m, i), depth + 1);
}

static void test_wire_defs(void) {
  static const char *const files[] = {"codec_test.proto", "codec_test2.proto",
                                      "google/protobuf/any.proto"};
  for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
    const upb_FileDef *file = upb_DefPool_FindFileByName(g_pool, files[k]);
    MW_CHECK(file != NULL);
    for (int i = 0; file && i < upb_FileDef_TopLevelMessageCount(file); i++)
      check_defs(upb_FileDef_TopLevelMessage(file, i), 0);
  }
}

/* Bytes on the wire, each as protobuf writes them. */
static void test_wire_bytes(void) {
  enc_is("mwtest.Scalars", "{i32 = -1}", "08 ffffffffffffffffff01");
  enc_is("mwtest.Scalars", "{color = -7}", "8001 f9ffffffffffffffff01");
  enc_is("mwtest.Scalars", "{s32 = -2147483648, s64 = math.mininteger}",
         "28 ffffffff0f 30 ffffffffffffffffff01");
  enc_is("mwtest.Scalars", "{u64 = '18446744073709551615'}",
         "20 ffffffffffffffffff01");
  enc_is("mwtest.Scalars", "{f32 = 1, f64 = 2, sf32 = -1, sf64 = -2}",
         "3d 01000000 41 0200000000000000 4d ffffffff 51 feffffffffffffff");
  enc_is("mwtest.Scalars", "{fl = 1.5, db = -2.25, b = true}",
         "5d 0000c03f 61 00000000000002c0 6801");
  /* Implicit-presence defaults are not written, -0.0 (other bits) is. */
  enc_is("mwtest.Scalars",
         "{i32 = 0, i64 = '0', u64 = 0.0, b = false, str = '', by = '',"
         " color = 'COLOR_UNSPECIFIED', fl = 0.0, db = 0}",
         "");
  enc_is("mwtest.Scalars", "{fl = -0.0, db = -0.0}",
         "5d 00000080 61 0000000000000080");
  /* Field-number order whatever the table's order; presence writes 0. */
  enc_is("mwtest.Outer",
         "{opt_num = 0, tags = {'a', 'b'}, nums = {1, 2}, inner = {s = 'x', a "
         "= 1}, choice_str = '', opt_str = ''}",
         "0a05 0801 120178 1a02 0102 2a0161 2a0162 5200 6000 6a00");
  enc_is("mwtest2.P2", "{n = 0, s = '', c = 'ZERO', r = {1, 2}}",
         "0800 1200 1800 2001 2002");
  /* Map entries carry both key and value, even defaults. */
  enc_is("mwtest.Maps", "{k_int32 = {[0] = ''}}", "0a04 0800 1200");
  enc_is("mwtest.Maps", "{v_msg = {a = {}}}", "6a05 0a0161 1200");
  /* Length prefixes of more than one byte (the body moves). */
  char src[600], hex[2000];
  snprintf(src, sizeof src, "{inner = {s = string.rep('x', 200)}}");
  int n = snprintf(hex, sizeof hex, "0a cb01 12 c801");
  for (int i = 0; i < 200; i++) n += snprintf(hex + n, sizeof hex - n, "78");
  enc_is("mwtest.Outer", src, hex);
  /* Any: type_url then value; an empty value is not written. */
  enc_is("mwtest.Outer", "{any = {['@type'] = 'mwtest.Inner', a = 1}}",
         "72 26 0a20 747970652e676f6f676c65617069732e636f6d2f6d77746573742e496e"
         "6e6572 1202 0801");
  enc_is("mwtest.Outer", "{any = {['@type'] = 'x/mwtest.Empty'}}",
         "72 10 0a0e 782f6d77746573742e456d707479");
  enc_is("mwtest.Outer", "{any = {['@type'] = '', ['@value'] = ''}}", "7200");
  /* Groups. */
  enc_is("mwtest2.P2More", "{req = 1, g = {x = 2}, rg = {{z = 3}, {}}}",
         "2b 3002 2c 43 4803 44 43 44 6001");
}

/* hex -> bytes (spaces skipped); returns the length. */
static size_t unhex(const char *hex, char *buf, size_t cap) {
  size_t n = 0;
  for (const char *p = hex; *p && n < cap;) {
    if (*p == ' ') {
      p++;
      continue;
    }
    unsigned x = 0;
    sscanf(p, "%2x", &x);
    buf[n++] = (char)x;
    p += 2;
  }
  return n;
}

/* The canonical bytes of hex as type, as hex (or "error: ..."). */
static const char *canon_hex(const char *type, const char *hex) {
  static char out[2048];
  char buf[1024], err[MW_CODEC_ERRLEN];
  size_t n = unhex(hex, buf, sizeof buf), clen = 0;
  upb_Arena *a = upb_Arena_New();
  const char *c = mw_codec_canonical(buf, n, md(type), a, &clen, err, sizeof err);
  if (!c) {
    snprintf(out, sizeof out, "error: %s", err);
  } else {
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < clen && k + 3 < sizeof out; i++)
      k += (size_t)snprintf(out + k, sizeof out - k, "%02x", (unsigned char)c[i]);
  }
  upb_Arena_Free(a);
  return out;
}

/* mw_codec_canonical: one message, whatever order its map entries came in
 * and however its repeated scalars were packed, gives the same bytes. */
static void test_canonical(void) {
  /* k_string (12) entries "a" -> "x" and "b" -> "y", both orders. */
  char ab[64], ba[64];
  snprintf(ab, sizeof ab, "%s", canon_hex("mwtest.Maps", "6206 0a0161 120178 6206 0a0162 120179"));
  snprintf(ba, sizeof ba, "%s", canon_hex("mwtest.Maps", "6206 0a0162 120179 6206 0a0161 120178"));
  MW_CHECK_STR(ab, ba);
  MW_CHECK_STR(ab, "62060a016112017862060a0162120179");
  /* Integer keys sort by value, within each map, fields in number order. */
  /* Integer keys: one order whatever the input's (upb 1.51 writes them
   * in descending order), within each map, fields in number order. */
  char k123[128];
  snprintf(k123, sizeof k123, "%s",
           canon_hex("mwtest.Maps", "0a04 0801 1200 0a04 0802 1200 0a04 0803 1200"));
  MW_CHECK_STR(canon_hex("mwtest.Maps", "0a04 0802 1200 0a04 0801 1200 0a04 0803 1200"), k123);
  MW_CHECK_STR(canon_hex("mwtest.Maps", "0a04 0803 1200 0a04 0801 1200 0a04 0802 1200"), k123);
  MW_CHECK_STR(k123, "0a04080312000a04080212000a0408011200");
  MW_CHECK_STR(canon_hex("mwtest.Maps", "6206 0a0162 120179 0a04 0802 1200 0a04 0801 1200"),
               "0a04080212000a040801120062060a0162120179");
  /* Repeated scalars as the field says (Outer.nums is packed), whichever
   * way they came. */
  MW_CHECK_STR(canon_hex("mwtest.Outer", "1801 1802"), "1a020102");
  MW_CHECK_STR(canon_hex("mwtest.Outer", "1a02 0102"), "1a020102");
  /* Field order, and a scalar seen twice keeps the last. */
  MW_CHECK_STR(canon_hex("mwtest.Outer", "2a0161 0a02 0801 2a0162"), "0a0208012a01612a0162");
  MW_CHECK_STR(canon_hex("mwtest.Scalars", "0801 0802"), "0802");
  /* An empty message, and bytes that are not one. */
  MW_CHECK_STR(canon_hex("mwtest.Empty", ""), "");
  MW_CHECK_CONTAINS(canon_hex("mwtest.Outer", "0a05 08"), "cannot decode mwtest.Outer");
  /* A table encoded by the codec and its canonical form decode alike. */
  MW_CHECK_INT(dec_hex("mwtest.Maps", ab), 0);
  LCHECK("t.k_string.a == 'x' and t.k_string.b == 'y'");
}

/* Every table here must encode to what upb_Encode makes of the message
 * mw_codec_to_message builds. */
static void same_as_upb(const char *type, const char *src) {
  const upb_MessageDef *m = md(type);
  char mine[4096];
  size_t n = enc_bytes(type, src, mine, sizeof mine);
  MW_CHECK(n != (size_t)-1);
  if (push_lua(src) != 0) return;
  upb_Arena *a = upb_Arena_New();
  upb_Message *msg = mw_codec_to_message(L, -1, m, a, g_err, sizeof g_err);
  lua_pop(L, 1);
  char *buf = NULL;
  size_t len = 0;
  MW_CHECK(msg != NULL);
  if (msg)
    MW_CHECK_INT(upb_Encode(msg, upb_MessageDef_MiniTable(m), 0, a, &buf, &len),
                 kUpb_EncodeStatus_Ok);
  MW_CHECK_INT(n, len);
  if (n == len) MW_CHECK(len == 0 || memcmp(mine, buf, len) == 0);
  upb_Arena_Free(a);
}

static void test_wire_decode(void) {
  /* A known field number with a wire type its field cannot have is skipped
   * like an unknown field (a peer's schema changed the type), as protobuf's
   * parsers do; the field keeps its default. */
  MW_CHECK_INT(dec_hex("mwtest.Scalars", "0a0178 0805"), 0); /* i32 as bytes */
  LCHECK("t.i32 == 5");
  MW_CHECK_INT(dec_hex("mwtest.Scalars", "0a0178"), 0);
  LCHECK("t.i32 == 0");
  MW_CHECK_INT(dec_hex("mwtest.Scalars", "7001"), 0); /* str as varint */
  LCHECK("t.str == ''");
  MW_CHECK_INT(dec_hex("mwtest.Outer", "0801"), 0);   /* inner as varint */
  LCHECK("t.inner == nil");
  MW_CHECK_INT(dec_hex("mwtest.Outer", "1d01000000 1a020102"), 0); /* nums */
  LCHECK("#t.nums == 2 and t.nums[1] == 1 and t.nums[2] == 2");
  /* Inside a map entry or an Any the wire types are fixed: malformed. */
  MW_CHECK_INT(dec_hex("mwtest.Maps", "0a021201"), -1);    /* entry value */
  MW_CHECK_INT(dec_hex("mwtest.Outer", "7202 1001"), -1);  /* Any value */
  /* Unknown fields of every wire type are skipped, groups to their end. */
  MW_CHECK_INT(
      dec_hex("mwtest.Scalars",
              "f807 05 f907 0100000000000000 fa07 02 6869 fb07 0801 a306 0a00 "
              "a406 fc07 fd07 01000000 0896 01"),
      0);
  LCHECK("t.i32 == 150 and t.str == ''");
  static const char *const bad[] = {
      "00",                       /* field number 0 */
      "8080808010",               /* a tag beyond 32 bits */
      "08ffffffffffffffffffff01", /* an 11-byte varint */
      "08ff",                     /* cut varint */
      "0d0100",                   /* cut fixed32 */
      "11010203",                 /* cut fixed64 */
      "7205",                     /* cut length */
      "72ffffffff0f00",           /* huge length */
      "0c",                       /* end group with no group */
      "fb07",                     /* group never ended */
      "fb07 fc06",                /* group ended with another number */
      "0f",                       /* wire type 7 */
      "0e",                       /* wire type 6 */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    MW_CHECK_INT(dec_hex("mwtest.Scalars", bad[i]), -1);
    MW_CHECK_STR(g_err, "cannot decode mwtest.Scalars: malformed wire data");
  }
  /* A 10-byte varint keeps its low 64 bits. */
  MW_CHECK_INT(dec_hex("mwtest.Scalars", "10 ffffffffffffffffff7f"), 0);
  LCHECK("t.i64 == -1");
  /* Packed fixed-size values must fill the length exactly. */
  MW_CHECK_INT(dec_hex("mwtest.Outer", "9a0107 0000000000000000"), -1);
  MW_CHECK_INT(dec_hex("mwtest.Outer", "9a0108 000000000000f83f"), 0);
  LCHECK("#t.dbls == 1 and t.dbls[1] == 1.5");
  /* Packed and unpacked in one message, and runs split by other fields. */
  MW_CHECK_INT(
      dec_hex("mwtest.Outer", "1801 1a020203 0a00 1804 2005 2202 0607"), 0);
  LCHECK(
      "#t.nums == 4 and t.nums[1] == 1 and t.nums[3] == 3 and t.nums[4] "
      "== 4");
  LCHECK("#t.nums_unpacked == 3 and t.nums_unpacked[3] == 7");
  /* The last value of a scalar wins; a message seen again is merged. */
  MW_CHECK_INT(dec_hex("mwtest.Scalars", "0801 0802"), 0);
  LCHECK("t.i32 == 2");
  MW_CHECK_INT(dec_hex("mwtest.Outer",
                       "0a06 0801 1a020800 0a07 120178 1a020802 0a02 0803"),
               0);
  LCHECK("t.inner.a == 3 and t.inner.s == 'x' and #t.inner.children == 2");
  LCHECK("t.inner.children[1].a == 0 and t.inner.children[2].a == 2");
  /* ...also deeper down, and after a repeated field of the merged one. */
  MW_CHECK_INT(dec_hex("mwtest.Outer", "8a0104 0a020801 8a0105 0a03120178"), 0);
  LCHECK("t.next.inner.a == 1 and t.next.inner.s == 'x'");
  LCHECK("next(t.next.nums) == nil and t.next.next == nil");
  /* oneof: the last member wins and the other is gone. */
  MW_CHECK_INT(dec_hex("mwtest.Outer", "4801 520178"), 0);
  LCHECK("t.choice_num == nil and t.choice_str == 'x'");
  MW_CHECK_INT(dec_hex("mwtest.Outer", "520178 5a020801 4807"), 0);
  LCHECK("t.choice_num == 7 and t.choice_str == nil and t.choice_msg == nil");
  MW_CHECK_INT(dec_hex("mwtest.Outer", "5a020801 5a03120178"), 0);
  LCHECK("t.choice_msg.a == 1 and t.choice_msg.s == 'x'");
  /* ...a member seen again after another starts afresh. */
  MW_CHECK_INT(dec_hex("mwtest.Outer", "5a020801 4801 5a03120178"), 0);
  LCHECK(
      "t.choice_num == nil and t.choice_msg.a == 0 and t.choice_msg.s == "
      "'x'");
  /* proto3 optional: present even when 0. */
  MW_CHECK_INT(dec_hex("mwtest.Outer", "6000"), 0);
  LCHECK("t.opt_num == 0 and t.opt_str == nil");
  /* Maps: the last of a key wins; missing key or value are defaults; order
   * inside the entry does not matter; an entry with another field is
   * dropped, as upb 1.51 did. */
  MW_CHECK_INT(dec_hex("mwtest.Maps",
                       "0a050801120161 0a050801120162 0a00 0a05120163 0802 "
                       "0a071803 0804 120164 6a030a0178"),
               0);
  LCHECK(
      "t.k_int32[1] == 'b' and t.k_int32[0] == '' and t.k_int32[2] == "
      "'c' and t.k_int32[4] == nil");
  LCHECK(
      "t.v_msg.x.a == 0 and t.v_msg.x.s == '' and next(t.v_msg.x.children) "
      "== nil");
  /* A message value twice in one entry is merged. */
  MW_CHECK_INT(dec_hex("mwtest.Maps", "6a0c 0a0178 12020801 1203120178"), 0);
  LCHECK("t.v_msg.x.a == 1 and t.v_msg.x.s == 'x'");
  /* proto3 strings: upb's status, without a path. */
  MW_CHECK_INT(dec_hex("mwtest.Maps", "6206 0a01ff 120178"), -1);
  MW_CHECK_STR(g_err,
               "cannot decode mwtest.Maps: invalid UTF-8 in a string field");
  MW_CHECK_INT(dec_hex("mwtest.Outer", "2a01ff"), -1);
  MW_CHECK_STR(g_err,
               "cannot decode mwtest.Outer: invalid UTF-8 in a string field");
  /* proto2 strings: a path, map keys in it. */
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "2205 0a01ff 1200"), -1);
  MW_CHECK_STR(g_err,
               "cannot decode mwtest2.P2More: field 'sm[\"\\xff\"]': invalid "
               "UTF-8 in string");
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "2205 0a0161 12ff"), -1);
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "2206 0a0161 1201ff"), -1);
  MW_CHECK_STR(g_err,
               "cannot decode mwtest2.P2More: field 'sm[\"a\"]': invalid "
               "UTF-8 in string");
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "5205 2b3a01c02c"), -1);
  MW_CHECK_STR(g_err,
               "cannot decode mwtest2.P2More: field 'child.g.y': invalid "
               "UTF-8 in string");
}

static void test_wire_closed_enums(void) {
  /* Numbers a closed enum lacks are dropped as upb keeps them apart: the
   * field stays as it was, elements and map entries go. */
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "0801 0805 0800 1203 010500 6000"), 0);
  LCHECK("#t.cs == 2 and t.cs[1] == 'ONE' and t.cs[2] == 'ZERO'");
  LCHECK("#t.cs_packed == 2 and t.cs_packed[2] == 'ZERO'");
  MW_CHECK_INT(dec_hex("mwtest2.P2", "1801 1805"), 0);
  LCHECK("t.c == 'ONE'");
  MW_CHECK_INT(dec_hex("mwtest2.P2", "1805"), 0);
  LCHECK("t.c == nil");
  /* ...but map values keep the number, as upb 1.51 did. */
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "1a04 08011001 1a04 08021005 6000"),
               0);
  LCHECK("t.cm[1] == 'ONE' and t.cm[2] == 5");
  /* A proto2 message lacking a required field still decodes. */
  MW_CHECK_INT(dec_hex("mwtest2.P2More", ""), 0);
  LCHECK("t.req == nil and t.s64 == nil and t.g == nil and next(t.rg) == nil");
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "5801"), 0);
  LCHECK("t.s64 == -1");
}

static void test_wire_groups(void) {
  MW_CHECK_INT(rt("mwtest2.P2More",
                  "{req = 0, g = {x = 1, y = 'y'}, rg = {{z = 1}, {}, {z = 3}},"
                  " child = {req = 2, g = {}, rg = {{z = -1}}}}"),
               0);
  LCHECK("t.g.x == 1 and t.g.y == 'y' and #t.rg == 3 and t.rg[2].z == nil");
  LCHECK("t.child.req == 2 and t.child.g.x == nil and t.child.rg[1].z == -1");
  same_as_upb("mwtest2.P2More",
              "{req = 0, g = {x = 1, y = 'y'}, rg = {{z = 1}, {}, {z = 3}},"
              " child = {req = 2, g = {}, rg = {{z = -1}}}}");
  /* A group seen twice is merged; unknown fields inside are skipped. */
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "2b 3001 2c 2b f807 01 3a0179 2c"), 0);
  LCHECK("t.g.x == 1 and t.g.y == 'y'");
  /* A group ended by another group's end tag, or not ended. */
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "2b 3001 44"), -1);
  MW_CHECK_STR(g_err, "cannot decode mwtest2.P2More: malformed wire data");
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "2b 3001"), -1);
  MW_CHECK_INT(dec_hex("mwtest2.P2More", "2a00"), 0); /* delimited: skipped */
  LCHECK("t.g == nil");
  MW_CHECK(enc_fails("mwtest2.P2More", "{g = 5}"));
  MW_CHECK_STR(
      g_err,
      "field 'g': expected table for message mwtest2.P2More.G, got number");
}

static void test_wire_any(void) {
  char buf[512];
  /* type_url with bad UTF-8 is upb's status; wrapped inside another Any. */
  MW_CHECK_INT(dec_hex("mwtest.Outer", "7203 0a01ff"), -1);
  MW_CHECK_STR(g_err,
               "cannot decode mwtest.Outer: invalid UTF-8 in a string field");
  size_t n =
      enc_bytes("mwtest.Outer",
                "{any = {['@type'] = 'mwtest.Outer', any = {['@type'] = 'x/y', "
                "['@value'] = ''}}}",
                buf, sizeof buf);
  MW_CHECK(n != (size_t)-1 && n > 10);
  if (n != (size_t)-1 && n > 10) {
    buf[n - 2] = (char)0xff; /* the inner url's 'y' */
    buf[n - 3] = (char)0xfe;
    MW_CHECK_INT(dec("mwtest.Outer", buf, n), -1);
    MW_CHECK_STR(g_err,
                 "cannot decode mwtest.Outer: field 'any': cannot unpack "
                 "google.protobuf.Any of type mwtest.Outer: invalid UTF-8 in a "
                 "string field");
  }
  /* A proto2 string in an unpacked Any: the path goes inside. */
  MW_CHECK_INT(cross("mwtest.Outer",
                     "{any = {['@type'] = 'mwtest2.P2', ['@value'] = "
                     "'\\18\\1\\255'}}",
                     "mwtest.Outer"),
               -1);
  MW_CHECK_STR(
      g_err,
      "cannot decode mwtest.Outer: field 'any.s': invalid UTF-8 in string");
  /* An Any in an Any, wrong inside: the inner one's path. */
  MW_CHECK_INT(cross("mwtest.Outer",
                     "{any = {['@type'] = 'google.protobuf.Any', value = "
                     "{['@type'] = 'mwtest.Inner', ['@value'] = '\\255'}}}",
                     "mwtest.Outer"),
               -1);
  MW_CHECK_STR(g_err,
               "cannot decode mwtest.Outer: field 'any.value': cannot unpack "
               "google.protobuf.Any of type mwtest.Inner: malformed wire data");
  /* Repeated Any, Any in a map value. */
  MW_CHECK_INT(rt("mwtest.Outer",
                  "{anys = {{['@type'] = 'mwtest.Inner', a = 1}, {}}, by_name "
                  "= {k = {a = 2}}}"),
               0);
  LCHECK("t.anys[1].a == 1 and t.anys[2]['@type'] == ''");
  /* An Any seen twice merges field by field, like upb: each part the wire
   * lacks is kept from before. */
  MW_CHECK_INT(
      dec_hex(
          "mwtest.Outer",
          "7214 0a0e 782f6d77746573742e496e6e6572 12020801 7205 1203120178"),
      0);
  LCHECK(
      "t.any['@type'] == 'x/mwtest.Inner' and t.any.a == 0 and t.any.s == "
      "'x'");
  MW_CHECK_INT(
      dec_hex("mwtest.Outer",
              "7214 0a0e 782f6d77746573742e496e6e6572 12020801 7204 12020802"),
      0);
  LCHECK("t.any['@type'] == 'x/mwtest.Inner' and t.any.a == 2");
  MW_CHECK_INT(dec_hex("mwtest.Outer",
                       "7214 0a0e 782f6d77746573742e496e6e6572 12020801 7200"),
               0);
  LCHECK("t.any.a == 1");
  MW_CHECK_INT(dec_hex("mwtest.Outer",
                       "7214 0a0e 782f6d77746573742e496e6e6572 12020801 7210 "
                       "0a0e 782f6d77746573742e496e6e6572"),
               0);
  LCHECK("t.any.a == 1");
  /* ...an unknown type keeps its raw bytes for the merge. */
  MW_CHECK_INT(
      dec_hex(
          "mwtest.Outer",
          "7209 0a03782f79 12020841 7210 0a0e 782f6d77746573742e496e6e6572"),
      0);
  LCHECK("t.any['@type'] == 'x/mwtest.Inner' and t.any.a == 65");
  MW_CHECK_INT(dec_hex("mwtest.Outer", "7209 0a03782f79 12020841 7203 120142"),
               0);
  LCHECK("t.any['@type'] == 'x/y' and t.any['@value'] == 'B'");
  /* ...and through a merged parent. */
  MW_CHECK_INT(dec_hex("mwtest.Outer",
                       "8a0116 7214 0a0e 782f6d77746573742e496e6e6572 12020807 "
                       "8a0107 7205 1203120178"),
               0);
  LCHECK(
      "t.next.any['@type'] == 'x/mwtest.Inner' and t.next.any.a == 0 and "
      "t.next.any.s == 'x'");
  /* An unpacked value whose type changes without new bytes: the bytes are
   * gone, so the new type starts empty (upb would decode the old bytes as
   * the new type). */
  MW_CHECK_INT(dec_hex("mwtest.Outer",
                       "7214 0a0e 782f6d77746573742e496e6e6572 12020801 7212 "
                       "0a10 782f6d77746573742e53"
                       "63616c617273"),
               0);
  LCHECK("t.any['@type'] == 'x/mwtest.Scalars' and t.any.i32 == 0");
}

static void test_wire_depth(void) {
  /* 100 levels both ways (upb stopped at 64). */
  const char *deep =
      "(function() local t = {opt_num = 7} for i = 1, 99 do t = {next = t} end"
      " return t end)()";
  MW_CHECK_INT(rt("mwtest.Outer", deep), 0);
  LCHECK(
      "(function() local x = t for i = 1, 99 do x = x.next end return "
      "x.opt_num end)() == 7");
  MW_CHECK(enc_fails("mwtest.Outer",
                     "(function() local t = {} for i = 1, 100 do t = {next = "
                     "t} end return t end)()"));
  MW_CHECK_CONTAINS(g_err, "message nesting deeper than 100");
  /* 101 levels on the wire: Outer.next (field 17) in Outer.next... */
  char buf[1024];
  size_t n = 0;
  for (int i = 0; i < 100; i++) {
    char head[8];
    size_t h = 0, len = n;
    head[h++] = (char)0x8a;
    head[h++] = 0x01;
    do {
      head[h++] = (char)((len & 0x7f) | (len > 0x7f ? 0x80 : 0));
      len >>= 7;
    } while (len);
    memmove(buf + h, buf, n);
    memcpy(buf, head, h);
    n += h;
  }
  MW_CHECK_INT(dec("mwtest.Outer", buf, n), -1);
  MW_CHECK_CONTAINS(g_err, "cannot decode mwtest.Outer: field 'next.next.");
  MW_CHECK_CONTAINS(g_err, "message nesting deeper than 100");
  size_t skip = buf[2] & 0x80 ? 4 : 3;
  MW_CHECK_INT(dec("mwtest.Outer", buf + skip, n - skip), 0); /* 100 */
  /* Groups of unknown fields count too: field 50, start and end tags. */
  n = 0;
  for (int i = 0; i < 120; i++) {
    buf[n++] = (char)0x93;
    buf[n++] = 0x03;
  }
  for (int i = 0; i < 120; i++) {
    buf[n++] = (char)0x94;
    buf[n++] = 0x03;
  }
  MW_CHECK_INT(dec("mwtest.Scalars", buf + 60, n - 120), 0); /* 90 */
  LCHECK("t.i32 == 0");
  MW_CHECK_INT(dec("mwtest.Scalars", buf, n), -1);
  MW_CHECK_STR(g_err, "cannot decode mwtest.Scalars: nesting too deep");
  MW_CHECK_INT(dec("mwtest.Scalars", buf, n - 2), -1);
  MW_CHECK_INT(dec("mwtest.Inner", buf + 60, n - 120), 0);
}

/* ---- random tables --------------------------------------------------------
 */

static uint32_t gen_state = 0x2545f491u;
static uint32_t gen(void) {
  gen_state ^= gen_state << 13;
  gen_state ^= gen_state >> 17;
  gen_state ^= gen_state << 5;
  return gen_state;
}
static int gen_maporder; /* a map with entries in an order upb may not keep */

static void gen_message(const upb_MessageDef *m, int depth);

static void gen_string(int utf8) {
  static const char *const pieces[] = {
      "a", "Z", " ", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "0", ""};
  char s[64];
  size_t n = 0, k = gen() % 6;
  for (size_t i = 0; i < k; i++) {
    if (utf8) {
      const char *p = pieces[gen() % 8];
      memcpy(s + n, p, strlen(p));
      n += strlen(p);
    } else {
      s[n++] = (char)gen();
    }
  }
  lua_pushlstring(L, s, n);
}

static void gen_int(int64_t lo, int64_t hi) {
  static const int64_t edges[] = {0,          1,         -1,        127,
                                  128,        300,       INT32_MIN, INT32_MAX,
                                  UINT32_MAX, INT64_MIN, INT64_MAX};
  int64_t v;
  do {
    uint32_t r = gen() % 4;
    if (r == 0)
      v = edges[gen() % (sizeof edges / sizeof edges[0])];
    else if (r == 1)
      v = (int64_t)(((uint64_t)gen() << 32) | gen());
    else
      v = (int64_t)(gen() % 2000) - 1000;
  } while (v < lo || v > hi);
  if (gen() % 8 == 0 && v > -(1 << 20) && v < (1 << 20))
    lua_pushnumber(L, (lua_Number)v); /* an integral float */
  else
    lua_pushinteger(L, v);
}

static void gen_value(const upb_FieldDef *f, int depth) {
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool: lua_pushboolean(L, gen() & 1); break;
    case kUpb_CType_Float:
      lua_pushnumber(L, ((double)(gen() % 2001) - 1000) / 8);
      break;
    case kUpb_CType_Double:
      if (gen() % 10 == 0)
        lua_pushnumber(L, gen() & 1 ? 1e300 : -0.0);
      else
        lua_pushnumber(L, ((double)(gen() % 2001) - 1000) / 3);
      break;
    case kUpb_CType_Int32: gen_int(INT32_MIN, INT32_MAX); break;
    case kUpb_CType_UInt32: gen_int(0, UINT32_MAX); break;
    case kUpb_CType_Int64:
      if (gen() % 6 == 0) {
        lua_pushfstring(L, "%d", (int)(gen() % 100000) - 50000);
        break;
      }
      gen_int(INT64_MIN, INT64_MAX);
      break;
    case kUpb_CType_UInt64:
      if (gen() % 5 == 0) {
        char s[32];
        snprintf(s, sizeof s, "%" PRIu64,
                 ((uint64_t)gen() << 32 | gen()) | UINT64_C(1) << 63);
        lua_pushstring(L, s);
        break;
      }
      gen_int(0, INT64_MAX);
      break;
    case kUpb_CType_Enum: {
      const upb_EnumDef *e = upb_FieldDef_EnumSubDef(f);
      const upb_EnumValueDef *ev = upb_EnumDef_Value(
          e, (int)(gen() % (uint32_t)upb_EnumDef_ValueCount(e)));
      uint32_t r = gen() % 3;
      if (r == 0 &&
          upb_FileDef_Syntax(upb_EnumDef_File(e)) == kUpb_Syntax_Proto3)
        lua_pushinteger(L, 40 + gen() % 5); /* open: unknown numbers pass */
      else if (r == 1)
        lua_pushinteger(L, upb_EnumValueDef_Number(ev));
      else
        lua_pushstring(L, upb_EnumValueDef_Name(ev));
      break;
    }
    case kUpb_CType_String: gen_string(1); break;
    case kUpb_CType_Bytes: gen_string(0); break;
    case kUpb_CType_Message: {
      const upb_MessageDef *sub = upb_FieldDef_MessageSubDef(f);
      if (depth > 3) {
        lua_newtable(L);
      } else if (upb_MessageDef_WellKnownType(sub) == kUpb_WellKnown_Any) {
        uint32_t r = gen() % 6;
        if (r == 0) {
          lua_newtable(L);
        } else if (r == 1) {
          lua_createtable(L, 0, 2);
          lua_pushliteral(L, "x.example/un.Known");
          lua_setfield(L, -2, "@type");
          gen_string(0);
          lua_setfield(L, -2, "@value");
        } else if (r == 2) {
          lua_createtable(L, 0, 2);
          lua_pushliteral(L, "type.googleapis.com/google.protobuf.Any");
          lua_setfield(L, -2, "@type");
          gen_value(f, depth + 1);
          lua_setfield(L, -2, "value");
        } else {
          static const char *const types[] = {"mwtest.Inner", "mwtest.Scalars",
                                              "mwtest2.P2More", "mwtest.Outer"};
          const char *type = types[gen() % 4];
          gen_message(md(type), depth + 1);
          lua_pushstring(L, type);
          lua_setfield(L, -2, "@type");
        }
      } else {
        gen_message(sub, depth + 1);
      }
      break;
    }
  }
}

static void gen_message(const upb_MessageDef *m, int depth) {
  int n = upb_MessageDef_FieldCount(m);
  const upb_OneofDef *used[8];
  int nused = 0;
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    const upb_FieldDef *f = upb_MessageDef_Field(m, i);
    if (upb_FieldDef_IsRequired(f)) { /* upb_Encode wants them */
      gen_value(f, depth);
      lua_setfield(L, -2, upb_FieldDef_Name(f));
      continue;
    }
    if (gen() % (depth > 1 ? 4 : 2)) continue;
    const upb_OneofDef *o = upb_FieldDef_RealContainingOneof(f);
    if (o) {
      int taken = 0;
      for (int k = 0; k < nused; k++) taken |= used[k] == o;
      if (taken || nused == 8) continue;
      used[nused++] = o;
    }
    if (upb_FieldDef_IsMap(f)) {
      const upb_MessageDef *entry = upb_FieldDef_MessageSubDef(f);
      const upb_FieldDef *kf = upb_MessageDef_FindFieldByNumber(entry, 1);
      const upb_FieldDef *vf = upb_MessageDef_FindFieldByNumber(entry, 2);
      uint32_t k = gen() % 4;
      lua_createtable(L, 0, (int)k);
      for (uint32_t j = 0; j < k; j++) {
        gen_value(kf, depth);
        if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
          lua_Integer x = (lua_Integer)lua_tonumber(L, -1);
          lua_pop(L, 1);
          lua_pushinteger(L, x);
        }
        gen_value(vf, depth);
        lua_rawset(L, -3);
      }
      lua_Unsigned count = 0;
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        count++;
        lua_pop(L, 1);
      }
      if (count > 1) gen_maporder = 1;
    } else if (upb_FieldDef_IsRepeated(f)) {
      uint32_t k = gen() % 4;
      lua_createtable(L, (int)k, 0);
      for (uint32_t j = 1; j <= k; j++) {
        gen_value(f, depth);
        lua_rawseti(L, -2, j);
      }
    } else {
      gen_value(f, depth);
    }
    lua_setfield(L, -2, upb_FieldDef_Name(f));
  }
}

/* Whether the old decoder reads damaged bytes as the new one did (into t):
 * 0 the same, 1 not, 2 it refuses them, 3 it crashed. It runs in a child
 * process: libupb 1.51's upb_Decode aborts on an assertion in its unknown
 * field code for some inputs (a map entry with an unknown field, e.g.
 * 1a0f0a0ae282acf09f9880c3a9221886022205f09f98805a as mwtest.BenchNested),
 * one more reason the codec reads the wire itself. */
static int old_agrees(const upb_MessageDef *m, const char *p, size_t len) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    if (!freopen("/dev/null", "w", stderr)) _exit(4);
    char err[MW_CODEC_ERRLEN];
    if (old_decode(m, p, len, err, sizeof err) != 0) _exit(2);
    lua_setglobal(L, "t2");
    _exit(lua_true("deq(t, t2)") ? 0 : 1);
  }
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid) return 3;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 3;
}

/* Random valid tables: both pairs of functions agree on them, the bytes are
 * upb's (unless a map's order may differ), and the old decoder reads the
 * new bytes as the new one does. Then the bytes, cut and with bits
 * flipped: whatever the new decoder accepts, the old one reads the same. */
static void test_random_tables(void) {
  static const char *const types[] = {"mwtest.Outer", "mwtest.Scalars",
                                      "mwtest.Maps", "mwtest2.P2More",
                                      "mwtest.BenchNested"};
  int top = lua_gettop(L), same = 0, old_crashed = 0;
  for (int iter = 0; iter < 1500; iter++) {
    const upb_MessageDef *m = md(types[iter % 5]);
    gen_maporder = 0;
    gen_message(m, 0);
    lua_setglobal(L, "src");
    /* both directions, both pairs */
    char cmp[64];
    snprintf(cmp, sizeof cmp, "src");
    int rc = rt(types[iter % 5], cmp);
    MW_CHECK_INT(rc, 0);
    if (rc != 0) {
      fprintf(stderr, "[%s] %s\n", mw_test_current, g_err);
      continue;
    }
    char mine[1 << 16];
    size_t n = enc_bytes(types[iter % 5], "src", mine, sizeof mine);
    MW_CHECK(n != (size_t)-1);
    if (n == (size_t)-1) continue;
    if (!gen_maporder) same_as_upb(types[iter % 5], "src");
    /* the old decoder on the new bytes */
    MW_CHECK_INT(dec(types[iter % 5], mine, n), 0);
    char err2[MW_CODEC_ERRLEN];
    MW_CHECK_INT(old_decode(m, mine, n, err2, sizeof err2), 0);
    lua_setglobal(L, "t2");
    LCHECK("deq(t, t2)");
    /* damaged copies */
    for (int k = 0; k < 2 && n > 0; k++) {
      size_t len = n;
      char *p = malloc(n);
      memcpy(p, mine, n);
      if (k == 0)
        len = gen() % n;
      else
        for (uint32_t j = 0, f = 1 + gen() % 3; j < f; j++)
          p[gen() % n] ^= (char)(1u << (gen() % 8));
      upb_Arena *a = upb_Arena_New();
      int rn = mw_codec_decode_push(L, p, len, m, a, g_err, sizeof g_err);
      upb_Arena_Free(a);
      if (rn == 0) {
        lua_setglobal(L, "t");
        int ro = old_agrees(m, p, len);
        if (ro == 3) {
          old_crashed++;
        } else if (ro != 0) {
          MW_CHECK(!"the old decoder reads it the same");
          fprintf(stderr, "[%s] %s (%d), %zu bytes: ", mw_test_current,
                  types[iter % 5], ro, len);
          for (size_t j = 0; j < len; j++)
            fprintf(stderr, "%02x", (unsigned char)p[j]);
          fprintf(stderr, "\n");
        } else {
          same++;
        }
      } else if (strncmp(g_err, "cannot decode ", 14) != 0) {
        MW_CHECK_STR(g_err, "cannot decode ...");
      }
      free(p);
      if (lua_gettop(L) != top) MW_CHECK_INT(lua_gettop(L), top);
    }
  }
  lua_pushnil(L);
  lua_setglobal(L, "src");
  MW_CHECK_INT(lua_gettop(L), top);
  MW_CHECK(same > 100);
  printf(
      "random tables: %d damaged copies read alike by both decoders, %d "
      "crashed the old one\n",
      same, old_crashed);
}

/* ---- micro-benchmark ----------------------------------------------------- */

/* MW_CODEC_BENCH=flat:N or nested:N: N encodes and N decode_push calls of a
 * fixed message instead of the tests, with the time per call; under
 * valgrind --tool=callgrind --toggle-collect=mw_codec_encode
 * --toggle-collect=mw_codec_decode_push the instruction counts per call are
 * the totals over N. Each call gets a fresh arena, outside the timing. */
static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int bench(const char *spec) {
  const char *type, *src;
  if (strncmp(spec, "flat:", 5) == 0) {
    type = "mwtest.Bench";
    src = "{payload = string.rep('x', 16), text = 'bench', n = 1}";
  } else if (strncmp(spec, "nested:", 7) == 0) {
    type = "mwtest.BenchNested";
    src =
        "{head = {payload = string.rep('x', 16), text = 'bench', n = 1},"
        " items = {{text = 'a', n = 1}, {text = 'b', n = 2},"
        " {payload = 'pp', text = 'c', n = 3}},"
        " counts = {a = 1, b = 2, c = 3}, name = 'nested'}";
  } else {
    fprintf(stderr, "MW_CODEC_BENCH=flat:N or nested:N\n");
    return 2;
  }
  long n = atol(strchr(spec, ':') + 1);
  const upb_MessageDef *m = md(type);
  if (push_lua(src) != 0) return 1;
  int t = lua_gettop(L);
  char bytes[1024];
  size_t blen = 0;
  double enc_ns = 0, dec_ns = 0;
  for (long i = 0; i < n; i++) {
    upb_Arena *a = upb_Arena_New();
    size_t len = 0;
    double t0 = now_ns();
    char *buf = mw_codec_encode(L, t, m, a, &len, g_err, sizeof g_err);
    enc_ns += now_ns() - t0;
    if (!buf || len > sizeof bytes) {
      fprintf(stderr, "encode: %s\n", g_err);
      return 1;
    }
    memcpy(bytes, buf, len);
    blen = len;
    upb_Arena_Free(a);
  }
  for (long i = 0; i < n; i++) {
    upb_Arena *a = upb_Arena_New();
    double t0 = now_ns();
    int rc = mw_codec_decode_push(L, bytes, blen, m, a, g_err, sizeof g_err);
    dec_ns += now_ns() - t0;
    if (rc != 0) {
      fprintf(stderr, "decode: %s\n", g_err);
      return 1;
    }
    lua_pop(L, 1);
    upb_Arena_Free(a);
  }
  lua_pop(L, 1);
  printf("%s: %zu bytes; encode %.0f ns/call, decode_push %.0f ns/call\n", type,
         blen, n ? enc_ns / (double)n : 0.0, n ? dec_ns / (double)n : 0.0);
  return 0;
}

/* Found by tests/fuzz/fuzz_codec (corpus/codec/any-url-without-slash): an
 * Any whose type_url has no '/' came out as {"@type" = url, ...} and went
 * back out with "type.googleapis.com/" in front of it. */
static void test_any_url_without_slash(void) {
  /* A type_url without '/' is no type URL: nothing is unpacked, and the
   * plain message keeps it exact (as "@type" it would gain the prefix). */
  MW_CHECK_INT(dec_hex("mwtest.Outer",
                       "7212 0a0c 6d77746573742e496e6e6572 12020804"),
               0);
  LCHECK("t.any.type_url == 'mwtest.Inner' and t.any.value == '\\8\\4' and "
         "t.any['@type'] == nil and t.any.a == nil");
  enc_is("mwtest.Outer", "{any = {type_url = 'mwtest.Inner', value = '\\8\\4'}}",
         "7212 0a0c 6d77746573742e496e6e6572 12020804");
  MW_CHECK_INT(rt("mwtest.Outer", "{any = {type_url = 'nope', value = 'x'}}"), 0);
  LCHECK("t.any.type_url == 'nope' and t.any.value == 'x'");
  /* ...and merges with a later part of the same Any like any other. */
  MW_CHECK_INT(dec_hex("mwtest.Outer",
                       "7212 0a0c 6d77746573742e496e6e6572 12020804 "
                       "7210 0a0e 782f6d77746573742e496e6e6572"),
               0);
  LCHECK("t.any['@type'] == 'x/mwtest.Inner' and t.any.a == 4");
  MW_CHECK_INT(dec_hex("mwtest.Outer",
                       "7212 0a0c 6d77746573742e496e6e6572 12020804 7203 120141"),
               0);
  LCHECK("t.any.type_url == 'mwtest.Inner' and t.any.value == 'A'");
}

int main(void) {
  g_pool = load_pool();
  MW_CHECK(g_pool != NULL);
  if (!g_pool) return mw_test_done();
  L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(
          L,
          "function deq(a, b)\n"
          "  if type(a) ~= type(b) then return false end\n"
          "  if type(a) == 'number' then\n"
          "    return math.type(a) == math.type(b) and (a == b or (a ~= a and "
          "b ~= b))\n"
          "  end\n"
          "  if type(a) ~= 'table' then return a == b end\n"
          "  for k, v in pairs(a) do if not deq(v, b[k]) then return false end "
          "end\n"
          "  for k in pairs(b) do if a[k] == nil then return false end end\n"
          "  return true\n"
          "end") != LUA_OK)
    return 1;
  const char *bench_spec = getenv("MW_CODEC_BENCH");
  if (bench_spec) {
    int rc = bench(bench_spec);
    lua_close(L);
    upb_DefPool_Free(g_pool);
    return rc;
  }

  MW_RUN(test_scalars_roundtrip);
  MW_RUN(test_integer_ranges);
  MW_RUN(test_floats_into_integers);
  MW_RUN(test_64bit_strings);
  MW_RUN(test_float_double_bool);
  MW_RUN(test_utf8_in);
  MW_RUN(test_utf8_out);
  MW_RUN(test_enums);
  MW_RUN(test_nested_and_absent);
  MW_RUN(test_defaults);
  MW_RUN(test_repeated);
  MW_RUN(test_packed_unpacked);
  MW_RUN(test_array_errors);
  MW_RUN(test_maps);
  MW_RUN(test_any_url_without_slash);
  MW_RUN(test_oneof);
  MW_RUN(test_optional);
  MW_RUN(test_unknown_field_hint);
  MW_RUN(test_any);
  MW_RUN(test_unknown_and_shape_errors);
  MW_RUN(test_depth);
  MW_RUN(test_to_message_owns_strings);
  MW_RUN(test_stack_and_indexes);
  MW_RUN(test_garbage);
  MW_RUN(test_wire_defs);
  MW_RUN(test_wire_bytes);
  MW_RUN(test_canonical);
  MW_RUN(test_wire_decode);
  MW_RUN(test_wire_closed_enums);
  MW_RUN(test_wire_groups);
  MW_RUN(test_wire_any);
  MW_RUN(test_wire_depth);
  MW_RUN(test_random_tables);

  MW_CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
  upb_DefPool_Free(g_pool);
  return mw_test_done();
}
