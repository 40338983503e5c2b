/* Codec, what both directions share: the paths of values and the error
 * messages that name them, UTF-8 validation, and the checks that turn a Lua
 * value into a field's value. The encoder (encode.c) and the reflection
 * path (reflect.c) both take Lua values through these checks, so both
 * reject the same tables with the same errors. */
#include "codec/mw_codec_internal.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#define MW_CODEC_PATHLEN 160

/* ---- paths and errors -------------------------------------------------- */

void mw_seg_lua_key(mw_ctx *c, int idx) {
  lua_State *L = c->L;
  mw_seg *s;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      s = mw_seg_push(c, MW_SEG_STR);
      s->s = lua_tolstring(L, idx, &s->len);
      break;
    case LUA_TBOOLEAN:
      mw_seg_push(c, MW_SEG_BOOL)->i = lua_toboolean(L, idx);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        mw_seg_push(c, MW_SEG_INT)->i = lua_tointeger(L, idx);
        break;
      }
      /* fall through */
    default: mw_seg_push(c, MW_SEG_OTHER)->s = luaL_typename(L, idx); break;
  }
}

typedef struct {
  char *p;
  size_t cap, len;
} mw_sbuf;

static void sb_putc(mw_sbuf *b, char ch) {
  if (b->len + 1 < b->cap) b->p[b->len++] = ch;
  b->p[b->len] = '\0';
}

static void sb_puts(mw_sbuf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) sb_putc(b, s[i]);
}

static void sb_printf(mw_sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(mw_sbuf *b, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) sb_puts(b, tmp, strlen(tmp));
}

/* Bytes outside printable ASCII (and quotes, backslashes) escaped, cut after
 * 64 bytes: keys come from scripts and may be anything. */
static void sb_escaped(mw_sbuf *b, const char *s, size_t n) {
  for (size_t i = 0; i < n && i < 64; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' && ch != '\'')
      sb_putc(b, (char)ch);
    else
      sb_printf(b, "\\x%02x", ch);
  }
  if (n > 64) sb_puts(b, "...", 3);
}

static void render_path(const mw_ctx *c, char *out, size_t cap) {
  mw_sbuf b = {out, cap, 0};
  out[0] = '\0';
  int n = c->nseg < MW_CODEC_MAX_SEGS ? c->nseg : MW_CODEC_MAX_SEGS;
  for (int i = 0; i < n; i++) {
    const mw_seg *s = &c->seg[i];
    switch (s->kind) {
      case MW_SEG_NAME:
        if (i > 0) sb_putc(&b, '.');
        sb_escaped(&b, s->s, s->len);
        break;
      case MW_SEG_FIELD: {
        const char *name = upb_FieldDef_Name(s->f);
        if (i > 0) sb_putc(&b, '.');
        sb_puts(&b, name, strlen(name));
        break;
      }
      case MW_SEG_INDEX:
      case MW_SEG_INT: sb_printf(&b, "[%" PRId64 "]", s->i); break;
      case MW_SEG_UINT: sb_printf(&b, "[%" PRIu64 "]", s->u); break;
      case MW_SEG_BOOL:
        sb_puts(&b, s->i ? "[true]" : "[false]", s->i ? 6 : 7);
        break;
      case MW_SEG_STR:
        sb_puts(&b, "[\"", 2);
        sb_escaped(&b, s->s, s->len);
        sb_puts(&b, "\"]", 2);
        break;
      default: sb_printf(&b, "[<%s>]", s->s); break;
    }
  }
}

int mw_codec_fail(mw_ctx *c, const char *fmt, ...) {
  if (!c->err || !c->errlen) return -1;
  char msg[MW_CODEC_ERRLEN], path[MW_CODEC_PATHLEN];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  render_path(c, path, sizeof path);
  if (path[0])
    snprintf(c->err, c->errlen, "field '%s': %s", path, msg);
  else
    snprintf(c->err, c->errlen, "%s", msg);
  return -1;
}

/* Edit distance with adjacent transpositions counted as one edit (a typo's
 * usual shape: "cnets" for "cents"), for names of at most 63 bytes; more
 * than the threshold is reported as threshold + 1. */
#define MW_SUGGEST_MAX 63
static size_t typo_distance(const char *a, size_t al, const char *b, size_t bl, size_t limit) {
  if (al > MW_SUGGEST_MAX || bl > MW_SUGGEST_MAX) return limit + 1;
  if ((al > bl ? al - bl : bl - al) > limit) return limit + 1;
  /* Three rows of the table: the one being filled and the two before it
   * (a transposition looks two rows back). */
  size_t rows[3][MW_SUGGEST_MAX + 1];
  size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];
  for (size_t j = 0; j <= bl; j++) prev[j] = j;
  for (size_t i = 1; i <= al; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= bl; j++) {
      size_t v = prev[j] + 1;
      if (cur[j - 1] + 1 < v) v = cur[j - 1] + 1;
      if (prev[j - 1] + (a[i - 1] != b[j - 1]) < v) v = prev[j - 1] + (a[i - 1] != b[j - 1]);
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < v)
        v = pp[j - 2] + 1;
      cur[j] = v;
    }
    size_t *t = pp;
    pp = prev;
    prev = cur;
    cur = t;
  }
  return prev[bl];
}

/* The field of m whose name (or JSON name) is closest to key, when it is
 * close enough to be the one meant: at most 2 edits, and fewer than half
 * of key's length. NULL when none is. */
static const char *closest_field(const upb_MessageDef *m, const char *key, size_t len) {
  size_t limit = len / 2 < 2 ? len / 2 : 2;
  const char *best = NULL;
  size_t best_d = limit + 1;
  for (int i = 0; i < upb_MessageDef_FieldCount(m); i++) {
    const upb_FieldDef *f = upb_MessageDef_Field(m, i);
    const char *names[2] = {upb_FieldDef_Name(f), upb_FieldDef_JsonName(f)};
    for (int k = 0; k < 2; k++) {
      size_t dd = typo_distance(key, len, names[k], strlen(names[k]), limit);
      if (dd < best_d) {
        best_d = dd;
        best = upb_FieldDef_Name(f);
      }
    }
  }
  return best;
}

/* "unknown field 'path.key' in message pkg.Msg", and the field most likely
 * meant: "(did you mean 'cents'?)". */
int mw_codec_fail_unknown(mw_ctx *c, const char *key, size_t len,
                          const upb_MessageDef *m) {
  char path[MW_CODEC_PATHLEN];
  mw_seg_name(c, key, len);
  render_path(c, path, sizeof path);
  mw_seg_pop(c);
  if (c->err && c->errlen) {
    const char *hint = closest_field(m, key, len);
    snprintf(c->err, c->errlen, "unknown field '%s' in message %s%s%s%s", path,
             upb_MessageDef_FullName(m), hint ? " (did you mean '" : "", hint ? hint : "",
             hint ? "'?)" : "");
  }
  return -1;
}

static const char *type_name(const upb_FieldDef *f) {
  switch (upb_FieldDef_Type(f)) {
    case kUpb_FieldType_Double: return "double";
    case kUpb_FieldType_Float: return "float";
    case kUpb_FieldType_Int64: return "int64";
    case kUpb_FieldType_UInt64: return "uint64";
    case kUpb_FieldType_Int32: return "int32";
    case kUpb_FieldType_Fixed64: return "fixed64";
    case kUpb_FieldType_Fixed32: return "fixed32";
    case kUpb_FieldType_Bool: return "bool";
    case kUpb_FieldType_String: return "string";
    case kUpb_FieldType_Group: return "group";
    case kUpb_FieldType_Message: return "message";
    case kUpb_FieldType_Bytes: return "bytes";
    case kUpb_FieldType_UInt32: return "uint32";
    case kUpb_FieldType_Enum: return "enum";
    case kUpb_FieldType_SFixed32: return "sfixed32";
    case kUpb_FieldType_SFixed64: return "sfixed64";
    case kUpb_FieldType_SInt32: return "sint32";
    case kUpb_FieldType_SInt64: return "sint64";
  }
  return "?";
}

/* ---- Lua -> field values ----------------------------------------------- */

bool mw_codec_key_is(lua_State *L, int idx, const char *lit, size_t len) {
  size_t n;
  if (lua_type(L, idx) != LUA_TSTRING) return false;
  const char *s = lua_tolstring(L, idx, &n);
  return n == len && memcmp(s, lit, len) == 0;
}

int mw_codec_take_string(mw_ctx *c, const char *s, size_t n,
                         upb_StringView *out) {
  if (c->copy_strings && n > 0) {
    char *p = upb_Arena_Malloc(c->arena, n);
    if (!p) return mw_codec_fail_oom(c);
    memcpy(p, s, n);
    s = p;
  }
  out->data = s;
  out->size = n;
  return 0;
}

/* A decimal string for a 64-bit field: digits with an optional '-' (signed
 * types only), nothing else, within range. */
static bool parse_dec64(const char *s, size_t n, bool is_unsigned,
                        upb_MessageValue *out) {
  size_t i = 0;
  bool neg = false;
  if (n > 0 && s[0] == '-') {
    if (is_unsigned) return false;
    neg = true;
    i = 1;
  }
  if (i == n) return false;
  uint64_t v = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (is_unsigned) {
    out->uint64_val = v;
  } else if (neg) {
    if (v > (uint64_t)INT64_MAX + 1) return false;
    out->int64_val = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  } else {
    if (v > (uint64_t)INT64_MAX) return false;
    out->int64_val = (int64_t)v;
  }
  return true;
}

static int to_integer(mw_ctx *c, const upb_FieldDef *f, int vi,
                      upb_MessageValue *out) {
  lua_State *L = c->L;
  upb_CType ct = upb_FieldDef_CType(f);
  bool is64 = ct == kUpb_CType_Int64 || ct == kUpb_CType_UInt64;
  bool uns = ct == kUpb_CType_UInt32 || ct == kUpb_CType_UInt64;
  int t = lua_type(L, vi);
  if (t == LUA_TNUMBER && lua_isinteger(L, vi)) {
    lua_Integer i = lua_tointeger(L, vi);
    if (uns && i < 0)
      return mw_codec_fail(c, "negative value %lld for %s", (long long)i,
                           type_name(f));
    switch (ct) {
      case kUpb_CType_Int32:
        if (i < INT32_MIN || i > INT32_MAX) break;
        out->int32_val = (int32_t)i;
        return 0;
      case kUpb_CType_UInt32:
        if (i > (lua_Integer)UINT32_MAX) break;
        out->uint32_val = (uint32_t)i;
        return 0;
      case kUpb_CType_Int64: out->int64_val = (int64_t)i; return 0;
      default: out->uint64_val = (uint64_t)i; return 0;
    }
    return mw_codec_fail(c, "value %lld out of range for %s", (long long)i,
                         type_name(f));
  }
  if (t == LUA_TNUMBER) {
    double d = lua_tonumber(L, vi);
    if (!isfinite(d) || d != floor(d))
      return mw_codec_fail(c, "non-integral number %.17g for %s", d,
                           type_name(f));
    if (uns && d < 0)
      return mw_codec_fail(c, "negative value %.17g for %s", d, type_name(f));
    bool ok = false;
    switch (ct) {
      case kUpb_CType_Int32:
        if ((ok = d >= -2147483648.0 && d <= 2147483647.0))
          out->int32_val = (int32_t)d;
        break;
      case kUpb_CType_UInt32:
        if ((ok = d <= 4294967295.0)) out->uint32_val = (uint32_t)d;
        break;
      case kUpb_CType_Int64:
        if ((ok = d >= -9223372036854775808.0 && d < 9223372036854775808.0))
          out->int64_val = (int64_t)d;
        break;
      default:
        if ((ok = d < 18446744073709551616.0)) out->uint64_val = (uint64_t)d;
        break;
    }
    if (!ok)
      return mw_codec_fail(c, "value %.17g out of range for %s", d,
                           type_name(f));
    return 0;
  }
  if (t == LUA_TSTRING && is64) {
    size_t n;
    const char *s = lua_tolstring(L, vi, &n);
    if (!parse_dec64(s, n, uns, out))
      return mw_codec_fail(
          c, "invalid or out-of-range decimal string '%.*s' for %s",
          n > 40 ? 40 : (int)n, s, type_name(f));
    return 0;
  }
  return mw_codec_fail(c, "expected integer%s for %s, got %s",
                       is64 ? " or decimal string" : "", type_name(f),
                       luaL_typename(L, vi));
}

static int to_enum(mw_ctx *c, const upb_FieldDef *f, int vi,
                   upb_MessageValue *out) {
  lua_State *L = c->L;
  const upb_EnumDef *e = upb_FieldDef_EnumSubDef(f);
  int t = lua_type(L, vi);
  if (t == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, vi, &n);
    const upb_EnumValueDef *ev = upb_EnumDef_FindValueByNameWithSize(e, s, n);
    if (!ev)
      return mw_codec_fail(c, "unknown value '%.*s' for enum %s",
                           n > 60 ? 60 : (int)n, s, upb_EnumDef_FullName(e));
    out->int32_val = upb_EnumValueDef_Number(ev);
    return 0;
  }
  if (t != LUA_TNUMBER)
    return mw_codec_fail(c, "expected name or number for enum %s, got %s",
                         upb_EnumDef_FullName(e), luaL_typename(L, vi));
  int64_t v;
  if (lua_isinteger(L, vi)) {
    v = lua_tointeger(L, vi);
  } else {
    double d = lua_tonumber(L, vi);
    if (!isfinite(d) || d != floor(d) || d < INT32_MIN || d > INT32_MAX)
      return mw_codec_fail(c, "invalid number %.17g for enum %s", d,
                           upb_EnumDef_FullName(e));
    v = (int64_t)d;
  }
  if (v < INT32_MIN || v > INT32_MAX)
    return mw_codec_fail(c, "value %" PRId64 " out of range for enum %s", v,
                         upb_EnumDef_FullName(e));
  /* proto2 enums are closed: a number they lack would not survive. */
  if (upb_FileDef_Syntax(upb_EnumDef_File(e)) == kUpb_Syntax_Proto2 &&
      !upb_EnumDef_CheckNumber(e, (int32_t)v))
    return mw_codec_fail(c,
                         "number %" PRId64 " is not a value of closed enum %s",
                         v, upb_EnumDef_FullName(e));
  out->int32_val = (int32_t)v;
  return 0;
}

/* Message fields are left to the callers: the encoder writes them as it
 * goes and the reflection path builds a upb_Message. */
int mw_codec_to_value(mw_ctx *c, const upb_FieldDef *f, int vi,
                      upb_MessageValue *out) {
  lua_State *L = c->L;
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool:
      if (lua_type(L, vi) != LUA_TBOOLEAN)
        return mw_codec_fail(c, "expected boolean, got %s",
                             luaL_typename(L, vi));
      out->bool_val = lua_toboolean(L, vi);
      return 0;
    case kUpb_CType_Float:
    case kUpb_CType_Double: {
      if (lua_type(L, vi) != LUA_TNUMBER)
        return mw_codec_fail(c, "expected number for %s, got %s", type_name(f),
                             luaL_typename(L, vi));
      double d = lua_tonumber(L, vi);
      if (upb_FieldDef_CType(f) == kUpb_CType_Double) {
        out->double_val = d;
      } else if (isfinite(d) && fabs(d) > FLT_MAX) {
        return mw_codec_fail(c, "value %.17g out of range for float", d);
      } else {
        out->float_val = (float)d;
      }
      return 0;
    }
    case kUpb_CType_Int32:
    case kUpb_CType_UInt32:
    case kUpb_CType_Int64:
    case kUpb_CType_UInt64: return to_integer(c, f, vi, out);
    case kUpb_CType_Enum: return to_enum(c, f, vi, out);
    case kUpb_CType_String:
    case kUpb_CType_Bytes: {
      if (lua_type(L, vi) != LUA_TSTRING)
        return mw_codec_fail(c, "expected string for %s, got %s", type_name(f),
                             luaL_typename(L, vi));
      size_t n;
      const char *s = lua_tolstring(L, vi, &n);
      if (upb_FieldDef_CType(f) == kUpb_CType_String &&
          !mw_codec_utf8_valid(s, n))
        return mw_codec_fail(c, "invalid UTF-8 in string");
      return mw_codec_take_string(c, s, n, &out->str_val);
    }
    case kUpb_CType_Message: break;
  }
  return mw_codec_fail(c, "unsupported field type");
}

/* Checks that the table at t is a sequence 1..n for repeated field f (a
 * border from lua_rawlen alone does not rule out holes or extra keys) and
 * sets *len. Returns 0, or -1 with the error set. */
int mw_codec_check_sequence(mw_ctx *c, const upb_FieldDef *f, int t,
                            lua_Unsigned *len) {
  lua_State *L = c->L;
  if (lua_type(L, t) != LUA_TTABLE)
    return mw_codec_fail(c, "expected table (array) for repeated %s, got %s",
                         type_name(f), luaL_typename(L, t));
  lua_Unsigned n = lua_rawlen(L, t), count = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1)) {
      mw_seg_lua_key(c, -1);
      return mw_codec_fail(c, "array has a key that is not an integer");
    }
    lua_Integer k = lua_tointeger(L, -1);
    if (k < 1 || (lua_Unsigned)k > n) {
      mw_seg_index(c, k);
      return mw_codec_fail(c, "array is not a sequence 1..%llu",
                           (unsigned long long)n);
    }
    count++;
  }
  if (count != n)
    return mw_codec_fail(c, "array has holes (%llu elements for length %llu)",
                         (unsigned long long)count, (unsigned long long)n);
  *len = n;
  return 0;
}

/* ---- google.protobuf.Any tables ---------------------------------------- */

int mw_codec_check_any_in_any_keys(mw_ctx *c, int t, const upb_MessageDef *m) {
  lua_State *L = c->L;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (!mw_codec_key_is(L, -1, "@type", 5) &&
        !mw_codec_key_is(L, -1, "value", 5)) {
      if (lua_type(L, -1) != LUA_TSTRING) {
        mw_seg_lua_key(c, -1);
        return mw_codec_fail(
            c, "message google.protobuf.Any has only string keys");
      }
      size_t kl;
      const char *k = lua_tolstring(L, -1, &kl);
      return mw_codec_fail_unknown(c, k, kl, m);
    }
  }
  return 0;
}

int mw_codec_read_any_table(mw_ctx *c, const upb_MessageDef *m, int t,
                            mw_any_table *a) {
  lua_State *L = c->L;
  if (lua_type(L, -1) != LUA_TSTRING)
    return mw_codec_fail(c,
                         "google.protobuf.Any '@type' must be a string, got %s",
                         luaL_typename(L, -1));
  a->url = lua_tolstring(L, -1, &a->ulen);
  lua_pop(L, 1);
  if (!mw_codec_utf8_valid(a->url, a->ulen))
    return mw_codec_fail(c, "invalid UTF-8 in google.protobuf.Any '@type'");
  const char *name = mw_codec_any_type_name(a->url, a->ulen, &a->nlen);
  a->packed = a->nlen ? upb_DefPool_FindMessageByNameWithSize(
                            mw_codec_pool_of(m), name, a->nlen)
                      : NULL;
  a->value = NULL;
  a->vlen = 0;
  lua_pushliteral(L, "@value");
  int vt = lua_rawget(L, t);
  if (vt == LUA_TNIL) {
    lua_pop(L, 1);
    if (!a->packed)
      return mw_codec_fail(
          c,
          "google.protobuf.Any type '%.*s' is not in the schema "
          "(give '@value' to pass raw bytes)",
          a->ulen > 120 ? 120 : (int)a->ulen, a->url);
    return 0;
  }
  if (vt != LUA_TSTRING)
    return mw_codec_fail(
        c, "google.protobuf.Any '@value' must be a string, got %s",
        luaL_typename(L, -1));
  a->value = lua_tolstring(L, -1, &a->vlen);
  lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (!mw_codec_key_is(L, -1, "@type", 5) &&
        !mw_codec_key_is(L, -1, "@value", 6)) {
      mw_seg_lua_key(c, -1);
      return mw_codec_fail(
          c, "google.protobuf.Any with '@value' takes no other keys");
    }
  }
  return 0;
}
