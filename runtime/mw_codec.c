/* Codec: protobuf message <-> Lua table. See mw_codec.h for the mapping.
 *
 * Both directions walk the descriptors recursively. Errors never raise a Lua
 * error: they are formatted into the caller's buffer together with the path
 * of the offending value ("items[2].inner.x"), which is kept as a small stack
 * of segments in the context and only rendered when something goes wrong.
 * The public functions reset the Lua stack to where it was on failure, so
 * the internal helpers may return early with values still pushed. */
#include "mw_codec.h"

#include <float.h>
#include <inttypes.h>
#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "upb/array.h"
#include "upb/decode.h"
#include "upb/encode.h"
#include "upb/map.h"
#include "upb/reflection.h"

/* Nesting limit in both directions (upb's decoder default is also 100); it
 * also stops a self-referencing Lua table. */
#define MW_CODEC_MAX_DEPTH 100
/* Each level pushes at most a field and an index/key segment. */
#define MW_CODEC_MAX_SEGS (2 * MW_CODEC_MAX_DEPTH + 8)
#define MW_CODEC_PATHLEN 160

static const char kAnyPrefix[] = "type.googleapis.com/";

enum {
  SEG_NAME,  /* field name (or an unknown key): s, len */
  SEG_FIELD, /* field f; its name is only looked up to render a path */
  SEG_INDEX, /* array index, 1-based like Lua: i */
  SEG_STR,   /* string map key: s, len */
  SEG_INT,   /* signed integer map key: i */
  SEG_UINT,  /* unsigned integer map key: u */
  SEG_BOOL,  /* bool map key: i */
  SEG_OTHER  /* a Lua key of another type: s = type name */
};

typedef struct {
  int kind;
  const upb_FieldDef *f;
  const char *s;
  size_t len;
  int64_t i;
  uint64_t u;
} mw_seg;

typedef struct {
  lua_State *L;
  upb_Arena *arena;     /* messages built, Any payloads unpacked */
  upb_Arena *own_arena; /* created lazily when the caller gave none */
  bool copy_strings;    /* Lua strings must be copied into the arena */
  int depth;
  int nseg;
  char *err;
  size_t errlen;
  mw_seg spare; /* written past the limit, never rendered */
  mw_seg seg[MW_CODEC_MAX_SEGS];
} mw_ctx;

static void ctx_init(mw_ctx *c, lua_State *L, upb_Arena *a, char *err,
                     size_t errlen) {
  c->L = L;
  c->arena = a;
  c->own_arena = NULL;
  c->copy_strings = false;
  c->depth = 0;
  c->nseg = 0;
  c->err = err;
  c->errlen = errlen;
  if (err && errlen) err[0] = '\0';
}

static upb_Arena *ctx_arena(mw_ctx *c) {
  if (!c->arena) c->arena = c->own_arena = upb_Arena_New();
  return c->arena;
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    while (n - i >= 8) { /* ASCII fast path */
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & UINT64_C(0x8080808080808080)) break;
      i += 8;
    }
    if (i >= n) break;
    unsigned char b = s[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0; /* overlong */
      if (b == 0xED) hi = 0x9F; /* surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90; /* overlong */
      if (b == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
      return false; /* continuation byte, C0/C1, F5..FF */
    }
    if (n - i - 1 < need) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k <= need; k++)
      if ((s[i + k] & 0xC0) != 0x80) return false;
    i += need + 1;
  }
  return true;
}

/* ---- paths and errors -------------------------------------------------- */

static mw_seg *seg_push(mw_ctx *c, int kind) {
  mw_seg *s = c->nseg < MW_CODEC_MAX_SEGS ? &c->seg[c->nseg] : &c->spare;
  c->nseg++;
  s->kind = kind;
  return s;
}

static void seg_name(mw_ctx *c, const char *name, size_t len) {
  mw_seg *s = seg_push(c, SEG_NAME);
  s->s = name;
  s->len = len;
}

/* upb_FieldDef_Name is a strrchr over the full name, so it is deferred. */
static void seg_field(mw_ctx *c, const upb_FieldDef *f) {
  seg_push(c, SEG_FIELD)->f = f;
}

static void seg_index(mw_ctx *c, int64_t i) { seg_push(c, SEG_INDEX)->i = i; }

/* The map key or array key at Lua index idx. */
static void seg_lua_key(mw_ctx *c, int idx) {
  lua_State *L = c->L;
  mw_seg *s;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      s = seg_push(c, SEG_STR);
      s->s = lua_tolstring(L, idx, &s->len);
      break;
    case LUA_TBOOLEAN: seg_push(c, SEG_BOOL)->i = lua_toboolean(L, idx); break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        seg_push(c, SEG_INT)->i = lua_tointeger(L, idx);
        break;
      }
      /* fall through */
    default: seg_push(c, SEG_OTHER)->s = luaL_typename(L, idx); break;
  }
}

static void seg_map_key(mw_ctx *c, const upb_FieldDef *kf, upb_MessageValue k) {
  mw_seg *s;
  switch (upb_FieldDef_CType(kf)) {
    case kUpb_CType_String:
      s = seg_push(c, SEG_STR);
      s->s = k.str_val.data;
      s->len = k.str_val.size;
      break;
    case kUpb_CType_Bool: seg_push(c, SEG_BOOL)->i = k.bool_val; break;
    case kUpb_CType_Int32: seg_push(c, SEG_INT)->i = k.int32_val; break;
    case kUpb_CType_Int64: seg_push(c, SEG_INT)->i = k.int64_val; break;
    case kUpb_CType_UInt32: seg_push(c, SEG_UINT)->u = k.uint32_val; break;
    default: seg_push(c, SEG_UINT)->u = k.uint64_val; break;
  }
}

static void seg_pop(mw_ctx *c) { c->nseg--; }

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
      case SEG_NAME:
        if (i > 0) sb_putc(&b, '.');
        sb_escaped(&b, s->s, s->len);
        break;
      case SEG_FIELD: {
        const char *name = upb_FieldDef_Name(s->f);
        if (i > 0) sb_putc(&b, '.');
        sb_puts(&b, name, strlen(name));
        break;
      }
      case SEG_INDEX:
      case SEG_INT: sb_printf(&b, "[%" PRId64 "]", s->i); break;
      case SEG_UINT: sb_printf(&b, "[%" PRIu64 "]", s->u); break;
      case SEG_BOOL:
        sb_puts(&b, s->i ? "[true]" : "[false]", s->i ? 6 : 7);
        break;
      case SEG_STR:
        sb_puts(&b, "[\"", 2);
        sb_escaped(&b, s->s, s->len);
        sb_puts(&b, "\"]", 2);
        break;
      default: sb_printf(&b, "[<%s>]", s->s); break;
    }
  }
}

/* "field 'path': message", or just the message at the top level. */
static int fail(mw_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(mw_ctx *c, const char *fmt, ...) {
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

/* "unknown field 'path.key' in message pkg.Msg" */
static int fail_unknown(mw_ctx *c, const char *key, size_t len,
                        const upb_MessageDef *m) {
  char path[MW_CODEC_PATHLEN];
  seg_name(c, key, len);
  render_path(c, path, sizeof path);
  seg_pop(c);
  if (c->err && c->errlen)
    snprintf(c->err, c->errlen, "unknown field '%s' in message %s", path,
             upb_MessageDef_FullName(m));
  return -1;
}

static int fail_oom(mw_ctx *c) { return fail(c, "out of memory"); }

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

static const char *decode_status_str(upb_DecodeStatus st) {
  switch (st) {
    case kUpb_DecodeStatus_Ok: return "ok";
    case kUpb_DecodeStatus_Malformed: return "malformed wire data";
    case kUpb_DecodeStatus_OutOfMemory: return "out of memory";
    case kUpb_DecodeStatus_BadUtf8: return "invalid UTF-8 in a string field";
    case kUpb_DecodeStatus_MaxDepthExceeded: return "nesting too deep";
    case kUpb_DecodeStatus_MissingRequired: return "missing required field";
  }
  return "decode error";
}

static const char *encode_status_str(upb_EncodeStatus st) {
  switch (st) {
    case kUpb_EncodeStatus_Ok: return "ok";
    case kUpb_EncodeStatus_OutOfMemory: return "out of memory";
    case kUpb_EncodeStatus_MaxDepthExceeded: return "nesting too deep";
    case kUpb_EncodeStatus_MissingRequired: return "missing required field";
  }
  return "encode error";
}

/* The message name of a type URL: what follows the last '/'. */
static const char *any_type_name(const char *url, size_t len, size_t *nlen) {
  size_t i = len;
  while (i > 0 && url[i - 1] != '/') i--;
  *nlen = len - i;
  return url + i;
}

static const upb_DefPool *pool_of(const upb_MessageDef *m) {
  return upb_FileDef_Pool(upb_MessageDef_File(m));
}

/* ---- message -> Lua ---------------------------------------------------- */

static int push_msg(mw_ctx *c, const upb_Message *msg, const upb_MessageDef *m);
static int push_fields(mw_ctx *c, const upb_Message *msg,
                       const upb_MessageDef *m, int extra);

static void push_u64(lua_State *L, uint64_t v) {
  if (v <= (uint64_t)INT64_MAX) {
    lua_pushinteger(L, (lua_Integer)v);
  } else {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    lua_pushstring(L, buf);
  }
}

/* Pushes one value of field f (a singular value or one element). */
static int push_value(mw_ctx *c, const upb_FieldDef *f, upb_MessageValue v) {
  lua_State *L = c->L;
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool: lua_pushboolean(L, v.bool_val); return 0;
    case kUpb_CType_Float: lua_pushnumber(L, (lua_Number)v.float_val); return 0;
    case kUpb_CType_Double:
      lua_pushnumber(L, (lua_Number)v.double_val);
      return 0;
    case kUpb_CType_Int32: lua_pushinteger(L, v.int32_val); return 0;
    case kUpb_CType_UInt32:
      lua_pushinteger(L, (lua_Integer)v.uint32_val);
      return 0;
    case kUpb_CType_Int64:
      lua_pushinteger(L, (lua_Integer)v.int64_val);
      return 0;
    case kUpb_CType_UInt64: push_u64(L, v.uint64_val); return 0;
    case kUpb_CType_Enum: {
      const upb_EnumValueDef *ev = upb_EnumDef_FindValueByNumber(
          upb_FieldDef_EnumSubDef(f), v.int32_val);
      if (ev)
        lua_pushstring(L, upb_EnumValueDef_Name(ev));
      else
        lua_pushinteger(L, v.int32_val);
      return 0;
    }
    case kUpb_CType_String:
      if (!utf8_valid(v.str_val.data, v.str_val.size))
        return fail(c, "invalid UTF-8 in string");
      /* fall through */
    case kUpb_CType_Bytes:
      lua_pushlstring(L, v.str_val.data, v.str_val.size);
      return 0;
    case kUpb_CType_Message: {
      const upb_MessageDef *sub = upb_FieldDef_MessageSubDef(f);
      const upb_Message *m = v.msg_val;
      if (!m) { /* not expected from upb; treat as the empty message */
        upb_Arena *a = ctx_arena(c);
        if (!a || !(m = upb_Message_New(sub, a))) return fail_oom(c);
      }
      return push_msg(c, m, sub);
    }
  }
  return fail(c, "unsupported field type");
}

static int push_array(mw_ctx *c, const upb_FieldDef *f, const upb_Array *arr) {
  size_t n = arr ? upb_Array_Size(arr) : 0;
  lua_createtable(c->L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    seg_index(c, (int64_t)i + 1);
    if (push_value(c, f, upb_Array_Get(arr, i)) < 0) return -1;
    seg_pop(c);
    lua_rawseti(c->L, -2, (lua_Integer)i + 1);
  }
  return 0;
}

static int push_map(mw_ctx *c, const upb_FieldDef *f, const upb_Map *map) {
  const upb_MessageDef *entry = upb_FieldDef_MessageSubDef(f);
  const upb_FieldDef *kf =
      upb_MessageDef_FindFieldByNumber(entry, kUpb_MapEntry_KeyFieldNumber);
  const upb_FieldDef *vf =
      upb_MessageDef_FindFieldByNumber(entry, kUpb_MapEntry_ValueFieldNumber);
  size_t n = map ? upb_Map_Size(map) : 0;
  lua_createtable(c->L, 0, n > INT32_MAX ? INT32_MAX : (int)n);
  if (!map) return 0;
  size_t iter = kUpb_Map_Begin;
  while (upb_MapIterator_Next(map, &iter)) {
    upb_MessageValue k = upb_MapIterator_Key(map, iter);
    seg_map_key(c, kf, k);
    if (push_value(c, kf, k) < 0) return -1;
    if (push_value(c, vf, upb_MapIterator_Value(map, iter)) < 0) return -1;
    seg_pop(c);
    lua_rawset(c->L, -3);
  }
  return 0;
}

/* google.protobuf.Any: unpacked when the type is known, else raw. */
static int push_any(mw_ctx *c, const upb_Message *msg,
                    const upb_MessageDef *m) {
  lua_State *L = c->L;
  const upb_FieldDef *tf =
      upb_MessageDef_FindFieldByNumber(m, kUpb_Any_TypeFieldNumber);
  const upb_FieldDef *vf =
      upb_MessageDef_FindFieldByNumber(m, kUpb_Any_ValueFieldNumber);
  upb_StringView url = upb_Message_Get(msg, tf).str_val;
  upb_StringView val = upb_Message_Get(msg, vf).str_val;
  if (!utf8_valid(url.data, url.size))
    return fail(c, "invalid UTF-8 in google.protobuf.Any type_url");
  size_t nlen;
  const char *name = any_type_name(url.data, url.size, &nlen);
  const upb_DefPool *pool = pool_of(m);
  const upb_MessageDef *packed =
      nlen ? upb_DefPool_FindMessageByNameWithSize(pool, name, nlen) : NULL;
  if (!packed) {
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, url.data, url.size);
    lua_setfield(L, -2, "@type");
    lua_pushlstring(L, val.data, val.size);
    lua_setfield(L, -2, "@value");
    return 0;
  }
  upb_Arena *a = ctx_arena(c);
  upb_Message *inner = a ? upb_Message_New(packed, a) : NULL;
  if (!inner) return fail_oom(c);
  upb_DecodeStatus st = upb_Decode(val.size ? val.data : "", val.size, inner,
                                   upb_MessageDef_MiniTable(packed),
                                   upb_DefPool_ExtensionRegistry(pool),
                                   kUpb_DecodeOption_AliasString, a);
  if (st != kUpb_DecodeStatus_Ok)
    return fail(c, "cannot unpack google.protobuf.Any of type %s: %s",
                upb_MessageDef_FullName(packed), decode_status_str(st));
  if (upb_MessageDef_WellKnownType(packed) == kUpb_WellKnown_Any) {
    /* An Any in an Any: the inner one goes under "value", as in JSON. */
    lua_createtable(L, 0, 2);
    seg_name(c, "value", 5);
    if (push_msg(c, inner, packed) < 0) return -1;
    seg_pop(c);
    lua_setfield(L, -2, "value");
  } else if (push_fields(c, inner, packed, 1) < 0) {
    return -1;
  }
  lua_pushlstring(L, url.data, url.size);
  lua_setfield(L, -2, "@type");
  return 0;
}

/* A table with every field of msg; extra reserves hash slots. */
static int push_fields(mw_ctx *c, const upb_Message *msg,
                       const upb_MessageDef *m, int extra) {
  lua_State *L = c->L;
  int n = upb_MessageDef_FieldCount(m);
  lua_createtable(L, 0, n + extra);
  for (int i = 0; i < n; i++) {
    const upb_FieldDef *f = upb_MessageDef_Field(m, i);
    seg_field(c, f);
    int rc;
    if (upb_FieldDef_IsRepeated(f)) {
      upb_MessageValue v = upb_Message_Get(msg, f);
      rc = upb_FieldDef_IsMap(f) ? push_map(c, f, v.map_val)
                                 : push_array(c, f, v.array_val);
    } else if (upb_FieldDef_HasPresence(f) && !upb_Message_Has(msg, f)) {
      seg_pop(c);
      continue; /* absent: nil */
    } else {
      rc = push_value(c, f, upb_Message_Get(msg, f));
    }
    if (rc < 0) return -1;
    seg_pop(c);
    lua_setfield(L, -2, upb_FieldDef_Name(f));
  }
  return 0;
}

static int push_msg(mw_ctx *c, const upb_Message *msg,
                    const upb_MessageDef *m) {
  if (++c->depth > MW_CODEC_MAX_DEPTH)
    return fail(c, "message nesting deeper than %d", MW_CODEC_MAX_DEPTH);
  if (!lua_checkstack(c->L, 8)) return fail(c, "Lua stack overflow");
  int rc = upb_MessageDef_WellKnownType(m) == kUpb_WellKnown_Any
               ? push_any(c, msg, m)
               : push_fields(c, msg, m, 0);
  c->depth--;
  return rc;
}

/* ---- Lua -> message ---------------------------------------------------- */

static int fill_message(mw_ctx *c, upb_Message *msg, const upb_MessageDef *m,
                        int t);

static bool key_is(lua_State *L, int idx, const char *lit, size_t len) {
  size_t n;
  if (lua_type(L, idx) != LUA_TSTRING) return false;
  const char *s = lua_tolstring(L, idx, &n);
  return n == len && memcmp(s, lit, len) == 0;
}

/* Makes a Lua string safe to keep in the message: with copy_strings the
 * bytes are copied into the arena (the table may be collected afterwards). */
static int take_string(mw_ctx *c, const char *s, size_t n,
                       upb_StringView *out) {
  if (c->copy_strings && n > 0) {
    char *p = upb_Arena_Malloc(c->arena, n);
    if (!p) return fail_oom(c);
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
      return fail(c, "negative value %lld for %s", (long long)i, type_name(f));
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
    return fail(c, "value %lld out of range for %s", (long long)i,
                type_name(f));
  }
  if (t == LUA_TNUMBER) {
    double d = lua_tonumber(L, vi);
    if (!isfinite(d) || d != floor(d))
      return fail(c, "non-integral number %.17g for %s", d, type_name(f));
    if (uns && d < 0)
      return fail(c, "negative value %.17g for %s", d, type_name(f));
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
    if (!ok) return fail(c, "value %.17g out of range for %s", d, type_name(f));
    return 0;
  }
  if (t == LUA_TSTRING && is64) {
    size_t n;
    const char *s = lua_tolstring(L, vi, &n);
    if (!parse_dec64(s, n, uns, out))
      return fail(c, "invalid or out-of-range decimal string '%.*s' for %s",
                  n > 40 ? 40 : (int)n, s, type_name(f));
    return 0;
  }
  return fail(c, "expected integer%s for %s, got %s",
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
      return fail(c, "unknown value '%.*s' for enum %s", n > 60 ? 60 : (int)n,
                  s, upb_EnumDef_FullName(e));
    out->int32_val = upb_EnumValueDef_Number(ev);
    return 0;
  }
  if (t != LUA_TNUMBER)
    return fail(c, "expected name or number for enum %s, got %s",
                upb_EnumDef_FullName(e), luaL_typename(L, vi));
  int64_t v;
  if (lua_isinteger(L, vi)) {
    v = lua_tointeger(L, vi);
  } else {
    double d = lua_tonumber(L, vi);
    if (!isfinite(d) || d != floor(d) || d < INT32_MIN || d > INT32_MAX)
      return fail(c, "invalid number %.17g for enum %s", d,
                  upb_EnumDef_FullName(e));
    v = (int64_t)d;
  }
  if (v < INT32_MIN || v > INT32_MAX)
    return fail(c, "value %" PRId64 " out of range for enum %s", v,
                upb_EnumDef_FullName(e));
  /* proto2 enums are closed: a number they lack would not survive. */
  if (upb_FileDef_Syntax(upb_EnumDef_File(e)) == kUpb_Syntax_Proto2 &&
      !upb_EnumDef_CheckNumber(e, (int32_t)v))
    return fail(c, "number %" PRId64 " is not a value of closed enum %s", v,
                upb_EnumDef_FullName(e));
  out->int32_val = (int32_t)v;
  return 0;
}

/* Converts the Lua value at vi for (one element of) field f. */
static int to_value(mw_ctx *c, const upb_FieldDef *f, int vi,
                    upb_MessageValue *out) {
  lua_State *L = c->L;
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool:
      if (lua_type(L, vi) != LUA_TBOOLEAN)
        return fail(c, "expected boolean, got %s", luaL_typename(L, vi));
      out->bool_val = lua_toboolean(L, vi);
      return 0;
    case kUpb_CType_Float:
    case kUpb_CType_Double: {
      if (lua_type(L, vi) != LUA_TNUMBER)
        return fail(c, "expected number for %s, got %s", type_name(f),
                    luaL_typename(L, vi));
      double d = lua_tonumber(L, vi);
      if (upb_FieldDef_CType(f) == kUpb_CType_Double) {
        out->double_val = d;
      } else if (isfinite(d) && fabs(d) > FLT_MAX) {
        return fail(c, "value %.17g out of range for float", d);
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
        return fail(c, "expected string for %s, got %s", type_name(f),
                    luaL_typename(L, vi));
      size_t n;
      const char *s = lua_tolstring(L, vi, &n);
      if (upb_FieldDef_CType(f) == kUpb_CType_String && !utf8_valid(s, n))
        return fail(c, "invalid UTF-8 in string");
      return take_string(c, s, n, &out->str_val);
    }
    case kUpb_CType_Message: {
      const upb_MessageDef *sub = upb_FieldDef_MessageSubDef(f);
      if (lua_type(L, vi) != LUA_TTABLE)
        return fail(c, "expected table for message %s, got %s",
                    upb_MessageDef_FullName(sub), luaL_typename(L, vi));
      upb_Message *m = upb_Message_New(sub, c->arena);
      if (!m) return fail_oom(c);
      if (fill_message(c, m, sub, vi) < 0) return -1;
      out->msg_val = m;
      return 0;
    }
  }
  return fail(c, "unsupported field type");
}

/* A repeated field from a sequence 1..n: one pass to check the keys (a
 * border from lua_rawlen alone does not rule out holes or extra keys), then
 * the elements in order. */
static int fill_array(mw_ctx *c, upb_Message *msg, const upb_FieldDef *f,
                      int t) {
  lua_State *L = c->L;
  if (lua_type(L, t) != LUA_TTABLE)
    return fail(c, "expected table (array) for repeated %s, got %s",
                type_name(f), luaL_typename(L, t));
  lua_Unsigned n = lua_rawlen(L, t), count = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1)) {
      seg_lua_key(c, -1);
      return fail(c, "array has a key that is not an integer");
    }
    lua_Integer k = lua_tointeger(L, -1);
    if (k < 1 || (lua_Unsigned)k > n) {
      seg_index(c, k);
      return fail(c, "array is not a sequence 1..%llu", (unsigned long long)n);
    }
    count++;
  }
  if (count != n)
    return fail(c, "array has holes (%llu elements for length %llu)",
                (unsigned long long)count, (unsigned long long)n);
  if (n == 0) return 0;
  upb_Array *arr = upb_Message_Mutable(msg, f, c->arena).array;
  if (!arr || !upb_Array_Resize(arr, n, c->arena)) return fail_oom(c);
  for (lua_Unsigned i = 1; i <= n; i++) {
    upb_MessageValue v;
    lua_rawgeti(L, t, (lua_Integer)i);
    seg_index(c, (int64_t)i);
    if (to_value(c, f, lua_gettop(L), &v) < 0) return -1;
    seg_pop(c);
    upb_Array_Set(arr, i - 1, v);
    lua_pop(L, 1);
  }
  return 0;
}

static int fill_map(mw_ctx *c, upb_Message *msg, const upb_FieldDef *f, int t) {
  lua_State *L = c->L;
  if (lua_type(L, t) != LUA_TTABLE)
    return fail(c, "expected table for map, got %s", luaL_typename(L, t));
  const upb_MessageDef *entry = upb_FieldDef_MessageSubDef(f);
  const upb_FieldDef *kf =
      upb_MessageDef_FindFieldByNumber(entry, kUpb_MapEntry_KeyFieldNumber);
  const upb_FieldDef *vf =
      upb_MessageDef_FindFieldByNumber(entry, kUpb_MapEntry_ValueFieldNumber);
  upb_Map *map = NULL;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int vi = lua_gettop(L);
    upb_MessageValue k, v;
    if (!map && !(map = upb_Message_Mutable(msg, f, c->arena).map))
      return fail_oom(c);
    seg_lua_key(c, vi - 1);
    if (to_value(c, kf, vi - 1, &k) < 0 || to_value(c, vf, vi, &v) < 0)
      return -1;
    seg_pop(c);
    if (!upb_Map_Set(map, k, v, c->arena)) return fail_oom(c);
    lua_pop(L, 1);
  }
  return 0;
}

/* Sets field f of msg from the Lua value at vi. */
static int fill_field(mw_ctx *c, upb_Message *msg, const upb_FieldDef *f,
                      int vi) {
  if (upb_FieldDef_IsRepeated(f))
    return upb_FieldDef_IsMap(f) ? fill_map(c, msg, f, vi)
                                 : fill_array(c, msg, f, vi);
  upb_MessageValue v;
  if (to_value(c, f, vi, &v) < 0) return -1;
  if (!upb_Message_Set(msg, f, v, c->arena)) return fail_oom(c);
  return 0;
}

/* Every key of the table at t is a field name of m; skip_type ignores the
 * "@type" key of an Any body. */
static int fill_fields(mw_ctx *c, upb_Message *msg, const upb_MessageDef *m,
                       int t, bool skip_type) {
  lua_State *L = c->L;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int vi = lua_gettop(L);
    if (lua_type(L, vi - 1) != LUA_TSTRING) {
      seg_lua_key(c, vi - 1);
      return fail(c, "message %s has only string keys (field names)",
                  upb_MessageDef_FullName(m));
    }
    size_t klen;
    const char *key = lua_tolstring(L, vi - 1, &klen);
    const upb_FieldDef *f = NULL;
    const upb_OneofDef *o = NULL;
    if (!upb_MessageDef_FindByNameWithSize(m, key, klen, &f, &o) || !f) {
      if (skip_type && key_is(L, vi - 1, "@type", 5)) {
        lua_pop(L, 1);
        continue;
      }
      return fail_unknown(c, key, klen, m);
    }
    seg_field(c, f);
    const upb_OneofDef *oneof = upb_FieldDef_RealContainingOneof(f);
    if (oneof) {
      const upb_FieldDef *set = upb_Message_WhichOneof(msg, oneof);
      if (set && set != f)
        return fail(c, "oneof '%s' already has '%s' set",
                    upb_OneofDef_Name(oneof), upb_FieldDef_Name(set));
    }
    if (fill_field(c, msg, f, vi) < 0) return -1;
    seg_pop(c);
    lua_pop(L, 1);
  }
  return 0;
}

/* An Any given as {["@type"] = url, <fields of that type>} or
 * {["@type"] = url, ["@value"] = bytes}; the "@type" value is on top. */
static int fill_any(mw_ctx *c, upb_Message *msg, const upb_MessageDef *m,
                    int t) {
  lua_State *L = c->L;
  if (lua_type(L, -1) != LUA_TSTRING)
    return fail(c, "google.protobuf.Any '@type' must be a string, got %s",
                luaL_typename(L, -1));
  size_t ulen, nlen;
  const char *url = lua_tolstring(L, -1, &ulen); /* still anchored in t */
  lua_pop(L, 1);
  if (!utf8_valid(url, ulen))
    return fail(c, "invalid UTF-8 in google.protobuf.Any '@type'");
  const char *name = any_type_name(url, ulen, &nlen);
  const upb_DefPool *pool = pool_of(m);
  const upb_MessageDef *packed =
      nlen ? upb_DefPool_FindMessageByNameWithSize(pool, name, nlen) : NULL;
  upb_StringView value;

  lua_pushliteral(L, "@value");
  int vt = lua_rawget(L, t);
  if (vt != LUA_TNIL) {
    if (vt != LUA_TSTRING)
      return fail(c, "google.protobuf.Any '@value' must be a string, got %s",
                  luaL_typename(L, -1));
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (take_string(c, s, n, &value) < 0) return -1;
    lua_pop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, t)) {
      lua_pop(L, 1);
      if (!key_is(L, -1, "@type", 5) && !key_is(L, -1, "@value", 6)) {
        seg_lua_key(c, -1);
        return fail(c, "google.protobuf.Any with '@value' takes no other keys");
      }
    }
  } else {
    lua_pop(L, 1);
    if (!packed)
      return fail(c,
                  "google.protobuf.Any type '%.*s' is not in the schema "
                  "(give '@value' to pass raw bytes)",
                  ulen > 120 ? 120 : (int)ulen, url);
    upb_Message *inner = upb_Message_New(packed, c->arena);
    if (!inner) return fail_oom(c);
    if (upb_MessageDef_WellKnownType(packed) == kUpb_WellKnown_Any) {
      /* An Any in an Any: the inner one is under "value", as in JSON. */
      lua_pushnil(L);
      while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (!key_is(L, -1, "@type", 5) && !key_is(L, -1, "value", 5)) {
          if (lua_type(L, -1) != LUA_TSTRING) {
            seg_lua_key(c, -1);
            return fail(c, "message google.protobuf.Any has only string keys");
          }
          size_t kl;
          const char *k = lua_tolstring(L, -1, &kl);
          return fail_unknown(c, k, kl, m);
        }
      }
      lua_pushliteral(L, "value");
      if (lua_rawget(L, t) != LUA_TNIL) {
        seg_name(c, "value", 5);
        if (lua_type(L, -1) != LUA_TTABLE)
          return fail(c, "expected table for message %s, got %s",
                      upb_MessageDef_FullName(packed), luaL_typename(L, -1));
        if (fill_message(c, inner, packed, lua_gettop(L)) < 0) return -1;
        seg_pop(c);
      }
      lua_pop(L, 1);
    } else if (fill_fields(c, inner, packed, t, true) < 0) {
      return -1;
    }
    char *buf = NULL;
    size_t len = 0;
    upb_EncodeStatus st = upb_Encode(inner, upb_MessageDef_MiniTable(packed), 0,
                                     c->arena, &buf, &len);
    if (st != kUpb_EncodeStatus_Ok)
      return fail(c, "cannot encode %s for google.protobuf.Any: %s",
                  upb_MessageDef_FullName(packed), encode_status_str(st));
    value.data = len ? buf : "";
    value.size = len;
  }

  upb_StringView type_url;
  if (ulen > 0 && nlen == ulen) { /* no '/': add the usual prefix */
    size_t plen = sizeof kAnyPrefix - 1;
    char *p = upb_Arena_Malloc(c->arena, plen + ulen);
    if (!p) return fail_oom(c);
    memcpy(p, kAnyPrefix, plen);
    memcpy(p + plen, url, ulen);
    type_url.data = p;
    type_url.size = plen + ulen;
  } else if (take_string(c, url, ulen, &type_url) < 0) {
    return -1;
  }
  upb_MessageValue v;
  v.str_val = type_url;
  if (!upb_Message_Set(
          msg, upb_MessageDef_FindFieldByNumber(m, kUpb_Any_TypeFieldNumber), v,
          c->arena))
    return fail_oom(c);
  v.str_val = value;
  if (!upb_Message_Set(
          msg, upb_MessageDef_FindFieldByNumber(m, kUpb_Any_ValueFieldNumber),
          v, c->arena))
    return fail_oom(c);
  return 0;
}

static int fill_message(mw_ctx *c, upb_Message *msg, const upb_MessageDef *m,
                        int t) {
  lua_State *L = c->L;
  if (++c->depth > MW_CODEC_MAX_DEPTH)
    return fail(c, "message nesting deeper than %d", MW_CODEC_MAX_DEPTH);
  if (!lua_checkstack(L, 8)) return fail(c, "Lua stack overflow");
  int rc;
  if (upb_MessageDef_WellKnownType(m) == kUpb_WellKnown_Any) {
    lua_pushliteral(L, "@type");
    if (lua_rawget(L, t) != LUA_TNIL) {
      rc = fill_any(c, msg, m, t);
      c->depth--;
      return rc;
    }
    lua_pop(L, 1);
  }
  rc = fill_fields(c, msg, m, t, false);
  c->depth--;
  return rc;
}

/* Shared by mw_codec_to_message and mw_codec_encode. */
static upb_Message *build(mw_ctx *c, int idx, const upb_MessageDef *m) {
  lua_State *L = c->L;
  if (lua_type(L, idx) != LUA_TTABLE) {
    fail(c, "expected table for message %s, got %s", upb_MessageDef_FullName(m),
         luaL_typename(L, idx));
    return NULL;
  }
  upb_Message *msg = upb_Message_New(m, c->arena);
  if (!msg) {
    fail_oom(c);
    return NULL;
  }
  return fill_message(c, msg, m, idx) < 0 ? NULL : msg;
}

/* ---- public API -------------------------------------------------------- */

int mw_codec_push_message(lua_State *L, const upb_Message *msg,
                          const upb_MessageDef *m, char *err, size_t errlen) {
  mw_ctx c;
  ctx_init(&c, L, NULL, err, errlen);
  int top = lua_gettop(L);
  int rc = push_msg(&c, msg, m);
  if (c.own_arena) upb_Arena_Free(c.own_arena);
  if (rc < 0) lua_settop(L, top);
  return rc;
}

upb_Message *mw_codec_to_message(lua_State *L, int idx, const upb_MessageDef *m,
                                 upb_Arena *a, char *err, size_t errlen) {
  mw_ctx c;
  ctx_init(&c, L, a, err, errlen);
  c.copy_strings = true; /* the message outlives this call, the table may not */
  int top = lua_gettop(L);
  upb_Message *msg = build(&c, lua_absindex(L, idx), m);
  lua_settop(L, top);
  return msg;
}

int mw_codec_decode_push(lua_State *L, const char *buf, size_t len,
                         const upb_MessageDef *m, upb_Arena *a, char *err,
                         size_t errlen) {
  const char *name = upb_MessageDef_FullName(m);
  upb_Message *msg = upb_Message_New(m, a);
  if (!msg) {
    if (err && errlen)
      snprintf(err, errlen, "cannot decode %s: out of memory", name);
    return -1;
  }
  /* The strings only need to live until they are pushed. */
  upb_DecodeStatus st =
      upb_Decode(len ? buf : "", len, msg, upb_MessageDef_MiniTable(m),
                 upb_DefPool_ExtensionRegistry(pool_of(m)),
                 kUpb_DecodeOption_AliasString, a);
  if (st != kUpb_DecodeStatus_Ok) {
    if (err && errlen)
      snprintf(err, errlen, "cannot decode %s: %s", name,
               decode_status_str(st));
    return -1;
  }
  char inner[MW_CODEC_ERRLEN];
  mw_ctx c;
  ctx_init(&c, L, a, inner, sizeof inner);
  int top = lua_gettop(L);
  if (push_msg(&c, msg, m) < 0) {
    lua_settop(L, top);
    if (err && errlen)
      snprintf(err, errlen, "cannot decode %s: %s", name, inner);
    return -1;
  }
  return 0;
}

char *mw_codec_encode(lua_State *L, int idx, const upb_MessageDef *m,
                      upb_Arena *a, size_t *len, char *err, size_t errlen) {
  mw_ctx c;
  ctx_init(&c, L, a, err, errlen);
  /* Strings may alias the Lua ones: the table at idx keeps them alive until
   * upb_Encode has copied them. */
  int top = lua_gettop(L);
  upb_Message *msg = build(&c, lua_absindex(L, idx), m);
  lua_settop(L, top);
  if (!msg) return NULL;
  char *buf = NULL;
  size_t n = 0;
  upb_EncodeStatus st =
      upb_Encode(msg, upb_MessageDef_MiniTable(m), 0, a, &buf, &n);
  if (st != kUpb_EncodeStatus_Ok) {
    if (err && errlen)
      snprintf(err, errlen, "cannot encode %s: %s", upb_MessageDef_FullName(m),
               encode_status_str(st));
    return NULL;
  }
  if (!buf && !(buf = upb_Arena_Malloc(a, 1))) {
    if (err && errlen)
      snprintf(err, errlen, "cannot encode %s: out of memory",
               upb_MessageDef_FullName(m));
    return NULL;
  }
  *len = n;
  return buf;
}
