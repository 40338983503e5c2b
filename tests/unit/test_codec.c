/* Unit tests for runtime/mw_codec.c against the protos in tests/data/codec.
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

#include "google/protobuf/descriptor.upb.h"
#include "mw_codec.h"
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

static void test_optional(void) {
  MW_CHECK_INT(rt("mwtest.Outer", "{}"), 0);
  LCHECK("t.opt_num == nil and t.opt_str == nil");
  MW_CHECK_INT(rt("mwtest.Outer", "{opt_num = 0, opt_str = ''}"), 0);
  LCHECK("t.opt_num == 0 and t.opt_str == ''");
  MW_CHECK_INT(rt("mwtest.Outer", "{opt_num = 5}"), 0);
  LCHECK("t.opt_num == 5 and t.opt_str == nil");
  /* Nor is the synthetic oneof of a proto3 optional. */
  MW_CHECK(enc_fails("mwtest.Outer", "{_opt_num = 1}"));
  MW_CHECK_STR(g_err, "unknown field '_opt_num' in message mwtest.Outer");
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
  MW_RUN(test_oneof);
  MW_RUN(test_optional);
  MW_RUN(test_any);
  MW_RUN(test_unknown_and_shape_errors);
  MW_RUN(test_depth);
  MW_RUN(test_to_message_owns_strings);
  MW_RUN(test_stack_and_indexes);
  MW_RUN(test_garbage);

  MW_CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
  upb_DefPool_Free(g_pool);
  return mw_test_done();
}
