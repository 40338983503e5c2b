/* Codec: protobuf message <-> Lua table. See mw_codec.h for the mapping.
 *
 * Two pairs: push_message/to_message convert between a upb_Message and a
 * table through upb's reflection; decode_push/encode (every call's hot path)
 * go between wire bytes and a table directly, with no upb_Message, sharing
 * the value conversions and checks with the first pair.
 *
 * All directions walk the descriptors recursively. Errors never raise a Lua
 * error: they are formatted into the caller's buffer together with the path
 * of the offending value ("items[2].inner.x"), which is kept as a small stack
 * of segments in the context and only rendered when something goes wrong.
 * The public functions reset the Lua stack to where it was on failure, so
 * the internal helpers may return early with values still pushed. */
#include "codec/mw_codec.h"

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

/* The encoder's output: a buffer on the caller's stack until it grows into
 * the arena, or, with block set, into a block from malloc() whose address
 * *block always holds. */
typedef struct {
  char *p;
  size_t len, cap;
  bool heap;    /* p is in the arena (or is *block) */
  char **block; /* mw_codec_encode_buf: where the malloc'd block is kept */
} mw_wbuf;

/* A field of a table being encoded: where its bytes start in the output,
 * to put the fields in number order afterwards. */
typedef struct {
  const upb_OneofDef *o; /* its real oneof, if any */
  const upb_FieldDef *f;
  size_t start, len;
  uint32_t num;
} mw_ent;

#define MW_CODEC_ENTS 32

typedef struct {
  lua_State *L;
  upb_Arena *arena;     /* messages built, Any payloads unpacked */
  upb_Arena *own_arena; /* created lazily when the caller gave none */
  bool copy_strings;    /* Lua strings must be copied into the arena */
  bool oom;             /* the failure was for want of memory */
  int depth;
  int nseg;
  char *err;
  size_t errlen;
  /* encoder (mw_codec_encode) only */
  mw_wbuf out;
  mw_ent *ents; /* a stack shared by the nested tables: ent0, then arena */
  size_t nent, ent_cap;
  mw_ent ent0[MW_CODEC_ENTS];
  mw_seg spare; /* written past the limit, never rendered */
  mw_seg seg[MW_CODEC_MAX_SEGS];
} mw_ctx;

static void ctx_init(mw_ctx *c, lua_State *L, upb_Arena *a, char *err,
                     size_t errlen) {
  c->L = L;
  c->arena = a;
  c->own_arena = NULL;
  c->copy_strings = false;
  c->oom = false;
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

static int fail_oom(mw_ctx *c) {
  c->oom = true;
  return fail(c, "out of memory");
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

/* Checks that the table at t is a sequence 1..n for repeated field f (a
 * border from lua_rawlen alone does not rule out holes or extra keys) and
 * sets *len. Returns 0, or -1 with the error set. */
static int check_sequence(mw_ctx *c, const upb_FieldDef *f, int t,
                          lua_Unsigned *len) {
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
  *len = n;
  return 0;
}

/* A repeated field from a sequence 1..n, the elements in order. */
static int fill_array(mw_ctx *c, upb_Message *msg, const upb_FieldDef *f,
                      int t) {
  lua_State *L = c->L;
  lua_Unsigned n;
  if (check_sequence(c, f, t, &n) < 0) return -1;
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

/* A table packing an Any in an Any has "@type" and "value" (the inner Any,
 * as in JSON) and nothing else. Returns 0, or -1 with the error set. */
static int check_any_in_any_keys(mw_ctx *c, int t, const upb_MessageDef *m) {
  lua_State *L = c->L;
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
  return 0;
}

/* The Lua side of a google.protobuf.Any: "@type" (on top of the stack,
 * popped) and either "@value" (raw bytes, alone) or the packed message's
 * fields, whose type must then be in the pool. */
typedef struct any_table {
  const char *url;  /* anchored in the table */
  size_t ulen, nlen; /* nlen: the message name's length within url */
  const upb_MessageDef *packed; /* NULL when not in the pool */
  const char *value; /* "@value", anchored in the table, or NULL */
  size_t vlen;
} any_table;

static int read_any_table(mw_ctx *c, const upb_MessageDef *m, int t,
                          any_table *a) {
  lua_State *L = c->L;
  if (lua_type(L, -1) != LUA_TSTRING)
    return fail(c, "google.protobuf.Any '@type' must be a string, got %s",
                luaL_typename(L, -1));
  a->url = lua_tolstring(L, -1, &a->ulen);
  lua_pop(L, 1);
  if (!utf8_valid(a->url, a->ulen))
    return fail(c, "invalid UTF-8 in google.protobuf.Any '@type'");
  const char *name = any_type_name(a->url, a->ulen, &a->nlen);
  a->packed = a->nlen ? upb_DefPool_FindMessageByNameWithSize(pool_of(m), name, a->nlen)
                      : NULL;
  a->value = NULL;
  a->vlen = 0;
  lua_pushliteral(L, "@value");
  int vt = lua_rawget(L, t);
  if (vt == LUA_TNIL) {
    lua_pop(L, 1);
    if (!a->packed)
      return fail(c,
                  "google.protobuf.Any type '%.*s' is not in the schema "
                  "(give '@value' to pass raw bytes)",
                  a->ulen > 120 ? 120 : (int)a->ulen, a->url);
    return 0;
  }
  if (vt != LUA_TSTRING)
    return fail(c, "google.protobuf.Any '@value' must be a string, got %s",
                luaL_typename(L, -1));
  a->value = lua_tolstring(L, -1, &a->vlen);
  lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (!key_is(L, -1, "@type", 5) && !key_is(L, -1, "@value", 6)) {
      seg_lua_key(c, -1);
      return fail(c, "google.protobuf.Any with '@value' takes no other keys");
    }
  }
  return 0;
}

static int fill_any(mw_ctx *c, upb_Message *msg, const upb_MessageDef *m,
                    int t) {
  lua_State *L = c->L;
  any_table a;
  if (read_any_table(c, m, t, &a) < 0) return -1;
  const char *url = a.url;
  size_t ulen = a.ulen, nlen = a.nlen;
  const upb_MessageDef *packed = a.packed;
  upb_StringView value;
  if (a.value) {
    if (take_string(c, a.value, a.vlen, &value) < 0) return -1;
  } else {
    upb_Message *inner = upb_Message_New(packed, c->arena);
    if (!inner) return fail_oom(c);
    if (upb_MessageDef_WellKnownType(packed) == kUpb_WellKnown_Any) {
      /* An Any in an Any: the inner one is under "value", as in JSON. */
      if (check_any_in_any_keys(c, t, m) < 0) return -1;
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

/* ---- wire format ------------------------------------------------------- */

/* decode_push and encode work on the protobuf wire format directly, driven
 * by the descriptors, with no upb_Message in between: the decoder parses
 * tags into Lua tables, the encoder writes the bytes of a Lua table into a
 * buffer. The conversions and checks of single values are the ones above,
 * so both pairs of functions agree (test_codec.c compares them). */

enum {
  WT_VARINT = 0,
  WT_64BIT = 1,
  WT_LEN = 2,
  WT_SGROUP = 3,
  WT_EGROUP = 4,
  WT_32BIT = 5
};

/* The wire type of each field type (index: upb_FieldType, 1..18). */
static const uint8_t kWireType[19] = {
    [kUpb_FieldType_Double] = WT_64BIT,   [kUpb_FieldType_Float] = WT_32BIT,
    [kUpb_FieldType_Int64] = WT_VARINT,   [kUpb_FieldType_UInt64] = WT_VARINT,
    [kUpb_FieldType_Int32] = WT_VARINT,   [kUpb_FieldType_Fixed64] = WT_64BIT,
    [kUpb_FieldType_Fixed32] = WT_32BIT,  [kUpb_FieldType_Bool] = WT_VARINT,
    [kUpb_FieldType_String] = WT_LEN,     [kUpb_FieldType_Group] = WT_SGROUP,
    [kUpb_FieldType_Message] = WT_LEN,    [kUpb_FieldType_Bytes] = WT_LEN,
    [kUpb_FieldType_UInt32] = WT_VARINT,  [kUpb_FieldType_Enum] = WT_VARINT,
    [kUpb_FieldType_SFixed32] = WT_32BIT, [kUpb_FieldType_SFixed64] = WT_64BIT,
    [kUpb_FieldType_SInt32] = WT_VARINT,  [kUpb_FieldType_SInt64] = WT_VARINT,
};

/* Scalars other than strings and bytes may be packed. */
static bool packable(upb_FieldType ft) {
  return kWireType[ft] != WT_LEN && ft != kUpb_FieldType_Group;
}

/* ---- wire -> Lua ------------------------------------------------------- */

/* Decoder results besides 0 and -1 (the message is in c->err already):
 * problems of the bytes themselves, worded as upb's decoder status was and
 * wrapped by the nearest Any being unpacked ("cannot unpack ...") or by
 * mw_codec_decode_push ("cannot decode ..."). */
enum {
  DEC_MALFORMED = -2,
  DEC_BADUTF8 = -3, /* a string of a proto3 message */
  DEC_DEPTH = -4,   /* groups of unknown fields nested too deep */
  DEC_OOM = -5
};

static const char *dec_status_str(int rc) {
  switch (rc) {
    case DEC_MALFORMED: return "malformed wire data";
    case DEC_BADUTF8: return "invalid UTF-8 in a string field";
    case DEC_DEPTH: return "nesting too deep";
    case DEC_OOM: return "out of memory";
  }
  return "decode error";
}

/* One value as read from the wire: u for varints and fixed-size values, s
 * and n for length-delimited ones. */
typedef struct {
  uint64_t u;
  const char *s;
  size_t n;
} mw_wval;

/* Up to 10 bytes; bits beyond 64 are dropped, as upb does. NULL when the
 * varint is longer or cut off. */
static inline const char *rd_varint(const char *p, const char *end,
                                    uint64_t *out) {
  if (p < end && (unsigned char)*p < 0x80) {
    *out = (unsigned char)*p;
    return p + 1;
  }
  uint64_t v = 0;
  for (int i = 0; i < 10 && p < end; i++) {
    uint64_t b = (unsigned char)*p++;
    v |= (b & 0x7f) << (7 * i);
    if (b < 0x80) {
      *out = v;
      return p;
    }
  }
  return NULL;
}

static uint32_t rd_le32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
         (uint32_t)u[3] << 24;
}

static uint64_t rd_le64(const char *p) {
  return (uint64_t)rd_le32(p) | (uint64_t)rd_le32(p + 4) << 32;
}

/* A tag: field number (not 0) and wire type; NULL when malformed. */
static inline const char *rd_tag(const char *p, const char *end, uint32_t *num,
                                 int *wt) {
  uint64_t tag;
  p = rd_varint(p, end, &tag);
  if (!p || tag > UINT32_MAX || tag < 8) return NULL;
  *num = (uint32_t)(tag >> 3);
  *wt = (int)(tag & 7);
  return p;
}

/* The value of wire type wt at p (not a group). */
static inline const char *rd_value(const char *p, const char *end, int wt,
                                   mw_wval *v) {
  switch (wt) {
    case WT_VARINT: return rd_varint(p, end, &v->u);
    case WT_64BIT:
      if (end - p < 8) return NULL;
      v->u = rd_le64(p);
      return p + 8;
    case WT_32BIT:
      if (end - p < 4) return NULL;
      v->u = rd_le32(p);
      return p + 4;
    case WT_LEN: {
      uint64_t n;
      p = rd_varint(p, end, &n);
      if (!p || n > (uint64_t)(end - p)) return NULL;
      v->s = p;
      v->n = (size_t)n;
      return p + n;
    }
  }
  return NULL;
}

/* Skips the value of a field the message does not have (a group up to its
 * end tag). NULL with *rc set on malformed data. */
static const char *skip_value(const char *p, const char *end, uint32_t num,
                              int wt, int depth, int *rc) {
  mw_wval v;
  if (wt != WT_SGROUP) {
    p = wt == WT_EGROUP ? NULL : rd_value(p, end, wt, &v);
    if (!p) *rc = DEC_MALFORMED;
    return p;
  }
  if (depth >= MW_CODEC_MAX_DEPTH) {
    *rc = DEC_DEPTH;
    return NULL;
  }
  for (;;) {
    uint32_t n;
    int w;
    if (!(p = rd_tag(p, end, &n, &w))) {
      *rc = DEC_MALFORMED;
      return NULL;
    }
    if (w == WT_EGROUP) {
      if (n == num) return p;
      *rc = DEC_MALFORMED;
      return NULL;
    }
    if (!(p = skip_value(p, end, n, w, depth + 1, rc))) return NULL;
  }
}

static bool enum_closed(const upb_EnumDef *e) {
  return upb_FileDef_Syntax(upb_EnumDef_File(e)) == kUpb_Syntax_Proto2;
}

/* The enum value's name, or its number when the enum lacks it. Returns 1
 * (nothing pushed) for a number a closed enum lacks: upb keeps those with
 * the unknown fields, so the field stays as it was. */
static int push_enum(lua_State *L, const upb_FieldDef *f, int32_t v) {
  const upb_EnumDef *e = upb_FieldDef_EnumSubDef(f);
  const upb_EnumValueDef *ev = upb_EnumDef_FindValueByNumber(e, v);
  if (ev) {
    lua_pushstring(L, upb_EnumValueDef_Name(ev));
    return 0;
  }
  if (enum_closed(e)) return 1;
  lua_pushinteger(L, v);
  return 0;
}

static int64_t zigzag32(uint64_t u) {
  uint32_t n = (uint32_t)u;
  return (int32_t)(n >> 1) ^ -(int32_t)(n & 1);
}

static int64_t zigzag64(uint64_t n) {
  return (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
}

/* Pushes one scalar (or string/bytes) value of field f, of type ft, read
 * from the wire. Returns 0, 1 for a dropped closed-enum number (nothing
 * pushed), or an error. proto3: strings are checked like upb's decoder did
 * (a status without a path); proto2 strings get a path. */
static int push_wval(mw_ctx *c, const upb_FieldDef *f, upb_FieldType ft,
                     const mw_wval *v, bool proto3) {
  lua_State *L = c->L;
  switch (ft) {
    case kUpb_FieldType_Double: {
      double d;
      memcpy(&d, &v->u, sizeof d);
      lua_pushnumber(L, d);
      return 0;
    }
    case kUpb_FieldType_Float: {
      uint32_t b = (uint32_t)v->u;
      float fl;
      memcpy(&fl, &b, sizeof fl);
      lua_pushnumber(L, (lua_Number)fl);
      return 0;
    }
    case kUpb_FieldType_Int64:
    case kUpb_FieldType_SFixed64:
      lua_pushinteger(L, (lua_Integer)v->u);
      return 0;
    case kUpb_FieldType_UInt64:
    case kUpb_FieldType_Fixed64: push_u64(L, v->u); return 0;
    case kUpb_FieldType_Int32:
    case kUpb_FieldType_SFixed32:
      lua_pushinteger(L, (int32_t)(uint32_t)v->u);
      return 0;
    case kUpb_FieldType_UInt32:
    case kUpb_FieldType_Fixed32:
      lua_pushinteger(L, (lua_Integer)(uint32_t)v->u);
      return 0;
    case kUpb_FieldType_SInt32: lua_pushinteger(L, zigzag32(v->u)); return 0;
    case kUpb_FieldType_SInt64: lua_pushinteger(L, zigzag64(v->u)); return 0;
    case kUpb_FieldType_Bool: lua_pushboolean(L, v->u != 0); return 0;
    case kUpb_FieldType_Enum: return push_enum(L, f, (int32_t)(uint32_t)v->u);
    case kUpb_FieldType_String:
      if (!utf8_valid(v->s, v->n))
        return proto3 ? DEC_BADUTF8 : fail(c, "invalid UTF-8 in string");
      /* fall through */
    case kUpb_FieldType_Bytes: lua_pushlstring(L, v->s, v->n); return 0;
    default: return DEC_MALFORMED;
  }
}

/* The value of an implicit-presence field that is not on the wire. */
static void push_default(lua_State *L, const upb_FieldDef *f) {
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool: lua_pushboolean(L, 0); break;
    case kUpb_CType_Float:
    case kUpb_CType_Double: lua_pushnumber(L, 0.0); break;
    case kUpb_CType_String:
    case kUpb_CType_Bytes: lua_pushliteral(L, ""); break;
    case kUpb_CType_Enum: {
      const upb_EnumValueDef *ev =
          upb_EnumDef_FindValueByNumber(upb_FieldDef_EnumSubDef(f), 0);
      if (ev)
        lua_pushstring(L, upb_EnumValueDef_Name(ev));
      else
        lua_pushinteger(L, 0);
      break;
    }
    default: lua_pushinteger(L, 0); break;
  }
}

/* The decoding of one message into its table. */
typedef struct {
  const upb_MessageDef *m;
  int t;        /* absolute index of the table */
  bool merging; /* the table came from an earlier occurrence: merge into it */
  bool proto3;
  int n;                      /* fields of m */
  size_t skip;                /* a field's name is its full name from here on */
  const upb_FieldDef *open_f; /* repeated or map field whose table is at t+1 */
  lua_Integer open_n;         /* elements in that array */
  const upb_FieldDef *last;   /* the field read last, for the next lookup */
  uint64_t *seen;             /* a bit per field index set in this table */
  uint64_t seen0[4];
} mw_dframe;

/* upb_FieldDef_Name is a strrchr over the full name; the full name of a
 * field of m starts with m's full name and a dot. */
static const char *fr_name(const mw_dframe *fr, const upb_FieldDef *f) {
  return upb_FieldDef_FullName(f) + fr->skip;
}

/* The field with number num: fields mostly come in declaration order (and
 * repeated ones in runs), so the one after the last is tried first. */
static const upb_FieldDef *fr_field(mw_dframe *fr, uint32_t num) {
  const upb_FieldDef *f = fr->last;
  if (f) {
    if (upb_FieldDef_Number(f) == num) return f;
    uint32_t i = upb_FieldDef_Index(f) + 1;
    if ((int)i < fr->n) {
      f = upb_MessageDef_Field(fr->m, (int)i);
      if (upb_FieldDef_Number(f) == num) return fr->last = f;
    }
  }
  f = upb_MessageDef_FindFieldByNumber(fr->m, num);
  if (f) fr->last = f;
  return f;
}

static bool fr_seen(const mw_dframe *fr, uint32_t i) {
  return (fr->seen[i >> 6] >> (i & 63)) & 1;
}

static void fr_mark(mw_dframe *fr, uint32_t i) {
  fr->seen[i >> 6] |= UINT64_C(1) << (i & 63);
}

static void fr_unmark(mw_dframe *fr, uint32_t i) {
  fr->seen[i >> 6] &= ~(UINT64_C(1) << (i & 63));
}

static int dec_msg(mw_ctx *c, const upb_MessageDef *m, const char **pp,
                   const char *end, uint32_t group, int into);
static int dec_body(mw_ctx *c, const upb_MessageDef *m, const char **pp,
                    const char *end, uint32_t group, int into, int extra);

/* How many values of the field whose tag (num, wt) was just read follow
 * one another from p on: the size of a new array or map, so that it does
 * not grow step by step. */
static int count_run(const char *p, const char *end, uint32_t num, int wt) {
  uint64_t tag = (uint64_t)num << 3 | (uint64_t)wt, next;
  int n = 1;
  mw_wval v;
  while (n < INT32_MAX && (p = rd_value(p, end, wt, &v)) &&
         (p = rd_varint(p, end, &next)) && next == tag)
    n++;
  return n;
}

/* Makes the table of repeated or map field f the one at t + 1, unless it is
 * already. A new table is sized for count elements, or (count 0) for the
 * run of values starting at p. */
static void open_container(mw_ctx *c, mw_dframe *fr, const upb_FieldDef *f,
                           size_t count, const char *p, const char *end,
                           uint32_t num, int wt) {
  lua_State *L = c->L;
  if (fr->open_f == f) return;
  lua_settop(L, fr->t);
  uint32_t i = upb_FieldDef_Index(f);
  const char *name = fr_name(fr, f);
  fr->open_f = f;
  bool had = fr->merging || fr_seen(fr, i);
  fr_mark(fr, i);
  if (had) {
    if (lua_getfield(L, fr->t, name) == LUA_TTABLE) {
      fr->open_n = (lua_Integer)lua_rawlen(L, -1);
      return;
    }
    lua_pop(L, 1);
  }
  int n = count > INT32_MAX ? INT32_MAX
          : count           ? (int)count
                            : count_run(p, end, num, wt);
  if (upb_FieldDef_IsMap(f))
    lua_createtable(L, 0, n);
  else
    lua_createtable(L, n, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, fr->t, name);
  fr->open_n = 0;
}

/* A member of a oneof is being set: the others go (the last one wins). */
static void clear_oneof(mw_ctx *c, mw_dframe *fr, const upb_OneofDef *o,
                        const upb_FieldDef *keep) {
  lua_State *L = c->L;
  int n = upb_OneofDef_FieldCount(o);
  for (int i = 0; i < n; i++) {
    const upb_FieldDef *g = upb_OneofDef_Field(o, i);
    uint32_t gi = upb_FieldDef_Index(g);
    if (g == keep || !(fr->merging || fr_seen(fr, gi))) continue;
    lua_pushnil(L);
    lua_setfield(L, fr->t, fr_name(fr, g));
    fr_unmark(fr, gi);
  }
}

/* The path segment of a map key read from the wire (before it is checked,
 * so that an error about the key names it). */
static void seg_wire_key(mw_ctx *c, upb_FieldType kt, const mw_wval *k) {
  mw_seg *s;
  switch (kt) {
    case kUpb_FieldType_String:
    case kUpb_FieldType_Bytes:
      s = seg_push(c, SEG_STR);
      s->s = k->s;
      s->len = k->n;
      break;
    case kUpb_FieldType_Bool: seg_push(c, SEG_BOOL)->i = k->u != 0; break;
    case kUpb_FieldType_Int32:
    case kUpb_FieldType_SFixed32:
    case kUpb_FieldType_Enum:
      seg_push(c, SEG_INT)->i = (int32_t)(uint32_t)k->u;
      break;
    case kUpb_FieldType_SInt32: seg_push(c, SEG_INT)->i = zigzag32(k->u); break;
    case kUpb_FieldType_SInt64: seg_push(c, SEG_INT)->i = zigzag64(k->u); break;
    case kUpb_FieldType_Int64:
    case kUpb_FieldType_SFixed64:
      seg_push(c, SEG_INT)->i = (int64_t)k->u;
      break;
    case kUpb_FieldType_UInt32:
    case kUpb_FieldType_Fixed32:
      seg_push(c, SEG_UINT)->u = (uint32_t)k->u;
      break;
    default: seg_push(c, SEG_UINT)->u = k->u; break;
  }
}

/* One entry of map field f (bytes s, n) into the map table at t + 1. The
 * entry is read twice: first for the key (so that errors in the value have
 * the key in their path), then for the value; a message value that appears
 * more than once is merged. As upb 1.51 did, an entry with a field other
 * than key and value is dropped (after its key and value are checked), and
 * a closed enum value the enum lacks stays a number. */
static int dec_map_entry(mw_ctx *c, mw_dframe *fr, const upb_FieldDef *f,
                         const char *s, size_t n) {
  lua_State *L = c->L;
  const upb_MessageDef *entry = upb_FieldDef_MessageSubDef(f);
  const upb_FieldDef *kf =
      upb_MessageDef_FindFieldByNumber(entry, kUpb_MapEntry_KeyFieldNumber);
  const upb_FieldDef *vf =
      upb_MessageDef_FindFieldByNumber(entry, kUpb_MapEntry_ValueFieldNumber);
  upb_FieldType kt = upb_FieldDef_Type(kf), vt = upb_FieldDef_Type(vf);
  mw_wval k = {0, "", 0}, v = {0, "", 0};
  int nk = 0, nv = 0, rc = 0;
  bool drop = false;
  const char *p = s, *end = s + n;
  while (p < end) {
    uint32_t num;
    int wt;
    if (!(p = rd_tag(p, end, &num, &wt))) return DEC_MALFORMED;
    if (num == kUpb_MapEntry_KeyFieldNumber ||
        num == kUpb_MapEntry_ValueFieldNumber) {
      bool is_key = num == kUpb_MapEntry_KeyFieldNumber;
      if (wt != kWireType[is_key ? kt : vt]) return DEC_MALFORMED;
      if (!(p = rd_value(p, end, wt, is_key ? &k : &v))) return DEC_MALFORMED;
      *(is_key ? &nk : &nv) += 1;
    } else if (!(p = skip_value(p, end, num, wt, c->depth, &rc))) {
      return rc;
    } else {
      drop = true;
    }
  }
  seg_wire_key(c, kt, &k);
  if (nk) {
    if ((rc = push_wval(c, kf, kt, &k, fr->proto3)) < 0) return rc;
  } else {
    push_default(L, kf);
  }
  if (vt == kUpb_FieldType_Message) {
    const upb_MessageDef *sub = upb_FieldDef_MessageSubDef(vf);
    if (nv <= 1) {
      const char *q = v.s;
      rc = dec_msg(c, sub, &q, v.s + v.n, 0, 0);
    } else { /* merge every occurrence, in order */
      int into = 0;
      for (p = s; p < end;) { /* read once already: well-formed */
        uint32_t num = 0;
        int wt = 0;
        mw_wval w;
        if (!(p = rd_tag(p, end, &num, &wt))) return DEC_MALFORMED;
        if (num != kUpb_MapEntry_ValueFieldNumber) {
          if (!(p = skip_value(p, end, num, wt, c->depth, &rc))) return rc;
          continue;
        }
        if (!(p = rd_value(p, end, wt, &w))) return DEC_MALFORMED;
        const char *q = w.s;
        if ((rc = dec_msg(c, sub, &q, w.s + w.n, 0, into)) < 0) return rc;
        if (into)
          lua_replace(L, into);
        else
          into = lua_gettop(L);
      }
    }
  } else if (nv) {
    rc = push_wval(c, vf, vt, &v, fr->proto3);
    if (rc == 1) { /* a closed enum's unknown number */
      lua_pushinteger(L, (int32_t)(uint32_t)v.u);
      rc = 0;
    }
  } else {
    push_default(L, vf);
    rc = 0;
  }
  if (rc < 0) return rc;
  if (drop)
    lua_pop(L, 2);
  else
    lua_rawset(L, fr->t + 1);
  seg_pop(c);
  return 0;
}

/* Whether wire type wt can carry field f: its own, or a packed run of a
 * repeated packable field. */
static bool wire_type_fits(const upb_FieldDef *f, int wt) {
  upb_FieldType ft = upb_FieldDef_Type(f);
  if (upb_FieldDef_IsMap(f)) return wt == WT_LEN;
  if (wt == kWireType[ft]) return true;
  return wt == WT_LEN && upb_FieldDef_IsRepeated(f) && packable(ft);
}

/* Field f (number num) with wire type wt at *pp. */
static int dec_field(mw_ctx *c, mw_dframe *fr, const upb_FieldDef *f,
                     uint32_t num, int wt, const char **pp, const char *end) {
  lua_State *L = c->L;
  const char *p = *pp;
  upb_FieldType ft = upb_FieldDef_Type(f);
  int want = kWireType[ft], rc = 0;
  mw_wval v;

  if (upb_FieldDef_IsRepeated(f)) {
    if (upb_FieldDef_IsMap(f)) {
      const char *at = p;
      if (wt != WT_LEN || !(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
      open_container(c, fr, f, 0, at, end, num, wt);
      *pp = p;
      return dec_map_entry(c, fr, f, v.s, v.n);
    }
    if (wt == WT_LEN && packable(ft)) { /* packed */
      if (!(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
      size_t count = 0;
      if (want == WT_32BIT) {
        if (v.n % 4) return DEC_MALFORMED;
        count = v.n / 4;
      } else if (want == WT_64BIT) {
        if (v.n % 8) return DEC_MALFORMED;
        count = v.n / 8;
      } else {
        for (size_t i = 0; i < v.n; i++) count += (unsigned char)v.s[i] < 0x80;
      }
      open_container(c, fr, f, count ? count : 1, NULL, NULL, 0, 0);
      for (const char *q = v.s, *e = v.s + v.n; q < e;) {
        mw_wval w;
        if (!(q = rd_value(q, e, want, &w))) return DEC_MALFORMED;
        seg_index(c, (int64_t)fr->open_n + 1);
        if ((rc = push_wval(c, f, ft, &w, fr->proto3)) < 0) return rc;
        if (rc == 0) lua_rawseti(L, fr->t + 1, ++fr->open_n);
        seg_pop(c);
      }
      *pp = p;
      return 0;
    }
    if (wt != want) return DEC_MALFORMED;
    open_container(c, fr, f, 0, p, end, num, wt);
    seg_index(c, (int64_t)fr->open_n + 1);
    if (ft == kUpb_FieldType_Message || ft == kUpb_FieldType_Group) {
      const upb_MessageDef *sub = upb_FieldDef_MessageSubDef(f);
      if (ft == kUpb_FieldType_Group) {
        rc = dec_msg(c, sub, &p, end, num, 0);
      } else {
        if (!(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
        const char *q = v.s;
        rc = dec_msg(c, sub, &q, v.s + v.n, 0, 0);
      }
    } else {
      if (!(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
      rc = push_wval(c, f, ft, &v, fr->proto3);
    }
    if (rc < 0) return rc;
    if (rc == 0) lua_rawseti(L, fr->t + 1, ++fr->open_n);
    seg_pop(c);
    *pp = p;
    return 0;
  }

  if (wt != want) return DEC_MALFORMED;
  uint32_t fi = upb_FieldDef_Index(f);
  const upb_OneofDef *o = upb_FieldDef_ContainingOneof(f);
  if (o && upb_OneofDef_IsSynthetic(o)) o = NULL;
  const char *name = fr_name(fr, f);
  if (ft == kUpb_FieldType_Message || ft == kUpb_FieldType_Group) {
    const upb_MessageDef *sub = upb_FieldDef_MessageSubDef(f);
    if (o) clear_oneof(c, fr, o, f);
    /* A message field seen again is merged into the table it has. */
    int into = 0;
    if (fr->merging || fr_seen(fr, fi)) {
      if (lua_getfield(L, fr->t, name) == LUA_TTABLE)
        into = lua_gettop(L);
      else
        lua_pop(L, 1);
    }
    if (ft == kUpb_FieldType_Group) {
      rc = dec_msg(c, sub, &p, end, num, into);
    } else {
      if (!(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
      const char *q = v.s;
      rc = dec_msg(c, sub, &q, v.s + v.n, 0, into);
    }
    if (rc < 0) return rc;
    lua_setfield(L, fr->t, name);
    if (into) lua_pop(L, 1);
  } else {
    if (!(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
    if ((rc = push_wval(c, f, ft, &v, fr->proto3)) < 0) return rc;
    if (rc == 1) { /* dropped closed-enum number: nothing changes */
      *pp = p;
      return 0;
    }
    if (o) clear_oneof(c, fr, o, f);
    lua_setfield(L, fr->t, name);
  }
  fr_mark(fr, fi);
  *pp = p;
  return 0;
}

/* The fields at *pp up to end, or up to the end tag of group number group
 * (which must come). */
static int dec_fields(mw_ctx *c, mw_dframe *fr, const char **pp,
                      const char *end, uint32_t group) {
  const char *p = *pp;
  while (p < end) {
    uint32_t num;
    int wt, rc = 0;
    if (!(p = rd_tag(p, end, &num, &wt))) return DEC_MALFORMED;
    if (wt == WT_EGROUP) {
      if (num != group) return DEC_MALFORMED;
      *pp = p;
      return 0;
    }
    const upb_FieldDef *f = fr_field(fr, num);
    if (!f || !wire_type_fits(f, wt)) {
      /* Unknown fields are skipped, and so is a known number with a wire
       * type its field cannot have (a peer whose schema changed the
       * field's type), as protobuf's own parsers do. */
      if (!(p = skip_value(p, end, num, wt, c->depth, &rc))) return rc;
      continue;
    }
    seg_field(c, f);
    if ((rc = dec_field(c, fr, f, num, wt, &p, end)) < 0) return rc;
    seg_pop(c);
  }
  if (group) return DEC_MALFORMED;
  *pp = p;
  return 0;
}

/* The fields of m into a new table (extra: more hash slots) or, with into,
 * into the table at that index; either way the table is left on top. Fields
 * without presence that are not on the wire get their defaults in a new
 * table. */
static int dec_body(mw_ctx *c, const upb_MessageDef *m, const char **pp,
                    const char *end, uint32_t group, int into, int extra) {
  lua_State *L = c->L;
  int n = upb_MessageDef_FieldCount(m);
  size_t words = ((size_t)n + 63) / 64;
  mw_dframe fr;
  fr.m = m;
  fr.merging = into != 0;
  fr.proto3 = upb_MessageDef_Syntax(m) == kUpb_Syntax_Proto3;
  fr.n = n;
  fr.skip = strlen(upb_MessageDef_FullName(m)) + 1;
  fr.open_f = NULL;
  fr.open_n = 0;
  fr.last = NULL;
  if (words <= sizeof fr.seen0 / sizeof fr.seen0[0]) {
    fr.seen = fr.seen0;
  } else {
    upb_Arena *a = ctx_arena(c);
    fr.seen = a ? upb_Arena_Malloc(a, words * sizeof *fr.seen) : NULL;
    if (!fr.seen) return DEC_OOM;
  }
  memset(fr.seen, 0, words * sizeof *fr.seen);
  if (into)
    lua_pushvalue(L, into);
  else
    lua_createtable(L, 0, n + extra);
  fr.t = lua_gettop(L);
  int rc = dec_fields(c, &fr, pp, end, group);
  if (rc < 0) return rc;
  lua_settop(L, fr.t);
  if (fr.merging) return 0;
  /* Missing fields: repeated and maps are empty tables, proto3 scalars
   * outside any oneof (proto3 optional has a synthetic one) their defaults;
   * the others (with presence) stay nil. */
  for (int i = 0; i < n; i++) {
    if (fr_seen(&fr, (uint32_t)i)) continue;
    const upb_FieldDef *f = upb_MessageDef_Field(m, i);
    if (upb_FieldDef_IsRepeated(f))
      lua_createtable(L, 0, 0);
    else if (fr.proto3 && !upb_FieldDef_IsSubMessage(f) &&
             !upb_FieldDef_ContainingOneof(f))
      push_default(L, f);
    else
      continue;
    lua_setfield(L, fr.t, fr_name(&fr, f));
  }
  return 0;
}

/* google.protobuf.Any: its two fields are read, then the value is unpacked
 * when the type is in the pool. With into (an Any seen before in the same
 * field) the fields merge as upb merged them: each one the wire lacks is
 * taken from the earlier table. */
static int dec_any(mw_ctx *c, const upb_MessageDef *m, const char *p,
                   const char *end, int into) {
  lua_State *L = c->L;
  bool proto3 = upb_MessageDef_Syntax(m) == kUpb_Syntax_Proto3;
  const char *url = "", *val = "";
  size_t ulen = 0, vlen = 0;
  bool has_url = false, has_val = false;
  int rc = 0;
  while (p < end) {
    uint32_t num;
    int wt;
    mw_wval v;
    if (!(p = rd_tag(p, end, &num, &wt))) return DEC_MALFORMED;
    if (num == kUpb_Any_TypeFieldNumber || num == kUpb_Any_ValueFieldNumber) {
      if (wt != WT_LEN || !(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
      if (num == kUpb_Any_TypeFieldNumber) {
        if (proto3 && !utf8_valid(v.s, v.n)) return DEC_BADUTF8;
        url = v.s;
        ulen = v.n;
        has_url = true;
      } else {
        val = v.s;
        vlen = v.n;
        has_val = true;
      }
    } else if (!(p = skip_value(p, end, num, wt, c->depth, &rc))) {
      return rc;
    }
  }
  if (into) {
    if (!has_url && !has_val) {
      lua_pushvalue(L, into);
      return 0;
    }
    /* The strings taken stay anchored in the earlier table at into. */
    lua_getfield(L, into, "@type");
    size_t olen = 0;
    const char *old =
        lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &olen) : "";
    lua_pop(L, 1);
    if (!has_url) {
      url = old;
      ulen = olen;
    }
    if (!has_val) {
      if (lua_getfield(L, into, "@value") == LUA_TSTRING) {
        val = lua_tolstring(L, -1, &vlen);
      } else if (ulen == olen && memcmp(url, old, ulen) == 0) {
        lua_pop(L, 1); /* same type, value unpacked before: no change */
        lua_pushvalue(L, into);
        return 0;
      } /* else the unpacked value's bytes are gone: the new type is empty */
      lua_pop(L, 1);
    }
  }
  size_t nlen;
  const char *name = any_type_name(url, ulen, &nlen);
  const upb_MessageDef *packed =
      nlen ? upb_DefPool_FindMessageByNameWithSize(pool_of(m), name, nlen)
           : NULL;
  if (!packed) {
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, url, ulen);
    lua_setfield(L, -2, "@type");
    lua_pushlstring(L, val, vlen);
    lua_setfield(L, -2, "@value");
    return 0;
  }
  int nseg = c->nseg;
  const char *q = val;
  if (upb_MessageDef_WellKnownType(packed) == kUpb_WellKnown_Any) {
    /* An Any in an Any: the inner one goes under "value", as in JSON. */
    lua_createtable(L, 0, 2);
    seg_name(c, "value", 5);
    rc = dec_msg(c, packed, &q, val + vlen, 0, 0);
    if (rc == 0) lua_setfield(L, -2, "value");
  } else {
    rc = dec_body(c, packed, &q, val + vlen, 0, 0, 1);
  }
  c->nseg = nseg;
  if (rc < -1)
    return fail(c, "cannot unpack google.protobuf.Any of type %s: %s",
                upb_MessageDef_FullName(packed), dec_status_str(rc));
  if (rc < 0) return rc;
  lua_pushlstring(L, url, ulen);
  lua_setfield(L, -2, "@type");
  return 0;
}

/* A message of type m at *pp (up to end, or to the end tag of group number
 * group): its table is pushed (or the one at into, merged into). */
static int dec_msg(mw_ctx *c, const upb_MessageDef *m, const char **pp,
                   const char *end, uint32_t group, int into) {
  if (++c->depth > MW_CODEC_MAX_DEPTH)
    return fail(c, "message nesting deeper than %d", MW_CODEC_MAX_DEPTH);
  if (!lua_checkstack(c->L, 12)) return fail(c, "Lua stack overflow");
  int rc;
  if (group == 0 && upb_MessageDef_WellKnownType(m) == kUpb_WellKnown_Any) {
    rc = dec_any(c, m, *pp, end, into);
    *pp = end;
  } else {
    rc = dec_body(c, m, pp, end, group, into, 0);
  }
  c->depth--;
  return rc;
}

/* ---- Lua -> wire ------------------------------------------------------- */

static bool wb_grow(mw_ctx *c, size_t need) {
  mw_wbuf *b = &c->out;
  if (need > SIZE_MAX / 4 - b->len) return false;
  size_t cap = b->cap * 2;
  /* room for what follows a big field too, not just for the field */
  if (cap < b->len + need) cap = b->len + need + (b->len + need) / 8 + 64;
  char *p = NULL;
  if (b->block) {
    /* *block owns the bytes at every step: an error raised through the
     * encoder leaves them with the caller's owner, not with nobody. */
    if (b->heap) {
      if (!(p = realloc(*b->block, cap))) return false;
    } else {
      if (!(p = malloc(cap))) return false;
      memcpy(p, b->p, b->len);
    }
    *b->block = p;
    b->p = p;
    b->cap = cap;
    b->heap = true;
    return true;
  }
  upb_Arena *a = ctx_arena(c);
  if (a && b->heap)
    p = upb_Arena_Realloc(a, b->p, b->cap, cap);
  else if (a && (p = upb_Arena_Malloc(a, cap)))
    memcpy(p, b->p, b->len);
  if (!p) return false;
  b->p = p;
  b->cap = cap;
  b->heap = true;
  return true;
}

/* Room for n more bytes. */
static inline bool wb_reserve(mw_ctx *c, size_t n) {
  return c->out.cap - c->out.len >= n || wb_grow(c, n);
}

static inline char *wr_varint(char *q, uint64_t v) {
  while (v >= 0x80) {
    *q++ = (char)(v | 0x80);
    v >>= 7;
  }
  *q++ = (char)v;
  return q;
}

static char *wr_le32(char *q, uint32_t v) {
  for (int i = 0; i < 4; i++) q[i] = (char)(v >> (8 * i));
  return q + 4;
}

static char *wr_le64(char *q, uint64_t v) {
  for (int i = 0; i < 8; i++) q[i] = (char)(v >> (8 * i));
  return q + 8;
}

static inline char *wr_tag(char *q, uint32_t num, int wt) {
  return wr_varint(q, (uint64_t)num << 3 | (uint64_t)wt);
}

/* A tag of wire type LEN and one byte for the length, which wr_close sets
 * (moving the body when the length needs more bytes). */
static int wr_open(mw_ctx *c, uint32_t num, size_t *slot) {
  if (!wb_reserve(c, 6)) return fail_oom(c);
  char *q = wr_tag(c->out.p + c->out.len, num, WT_LEN);
  *slot = (size_t)(q - c->out.p);
  c->out.len = *slot + 1;
  return 0;
}

static int wr_close(mw_ctx *c, size_t slot) {
  size_t body = c->out.len - slot - 1;
  if (body < 0x80) {
    c->out.p[slot] = (char)body;
    return 0;
  }
  size_t k = 1;
  for (size_t v = body; v >= 0x80; v >>= 7) k++;
  if (!wb_reserve(c, k - 1)) return fail_oom(c);
  memmove(c->out.p + slot + k, c->out.p + slot + 1, body);
  wr_varint(c->out.p + slot, body);
  c->out.len += k - 1;
  return 0;
}

static int wr_raw_tag(mw_ctx *c, uint32_t num, int wt) {
  if (!wb_reserve(c, 5)) return fail_oom(c);
  c->out.len = (size_t)(wr_tag(c->out.p + c->out.len, num, wt) - c->out.p);
  return 0;
}

/* A string or bytes field (num) with its bytes. */
static int wr_bytes(mw_ctx *c, uint32_t num, const char *s, size_t n) {
  if (!wb_reserve(c, 15 + n)) return fail_oom(c);
  char *q = wr_tag(c->out.p + c->out.len, num, WT_LEN);
  q = wr_varint(q, n);
  if (n) memcpy(q, s, n);
  c->out.len = (size_t)(q + n - c->out.p);
  return 0;
}

/* One scalar value of type ft, after its tag unless num is 0 (packed). */
static int wr_scalar(mw_ctx *c, upb_FieldType ft, uint32_t num,
                     const upb_MessageValue *v) {
  if (ft == kUpb_FieldType_String || ft == kUpb_FieldType_Bytes)
    return wr_bytes(c, num, v->str_val.data, v->str_val.size);
  if (!wb_reserve(c, 15)) return fail_oom(c);
  char *q = c->out.p + c->out.len;
  if (num) q = wr_tag(q, num, kWireType[ft]);
  switch (ft) {
    case kUpb_FieldType_Double: {
      uint64_t u;
      memcpy(&u, &v->double_val, sizeof u);
      q = wr_le64(q, u);
      break;
    }
    case kUpb_FieldType_Float: {
      uint32_t u;
      memcpy(&u, &v->float_val, sizeof u);
      q = wr_le32(q, u);
      break;
    }
    case kUpb_FieldType_Int64:
    case kUpb_FieldType_UInt64: q = wr_varint(q, v->uint64_val); break;
    case kUpb_FieldType_Int32:
    case kUpb_FieldType_Enum:
      q = wr_varint(q, (uint64_t)(int64_t)v->int32_val);
      break;
    case kUpb_FieldType_UInt32: q = wr_varint(q, v->uint32_val); break;
    case kUpb_FieldType_Bool: *q++ = v->bool_val ? 1 : 0; break;
    case kUpb_FieldType_SInt32: {
      uint32_t n = (uint32_t)v->int32_val;
      q = wr_varint(q, (n << 1) ^ (uint32_t)(v->int32_val < 0 ? -1 : 0));
      break;
    }
    case kUpb_FieldType_SInt64: {
      uint64_t n = (uint64_t)v->int64_val;
      q = wr_varint(q, (n << 1) ^ (uint64_t)(v->int64_val < 0 ? -1 : 0));
      break;
    }
    case kUpb_FieldType_Fixed32:
    case kUpb_FieldType_SFixed32: q = wr_le32(q, v->uint32_val); break;
    default: q = wr_le64(q, v->uint64_val); break; /* (s)fixed64 */
  }
  c->out.len = (size_t)(q - c->out.p);
  return 0;
}

/* Whether an implicit-presence value is its default, which is not written
 * (floats by their bits, as upb does: -0.0 is written). */
static bool is_zero(upb_FieldType ft, const upb_MessageValue *v) {
  switch (ft) {
    case kUpb_FieldType_Double: {
      uint64_t u;
      memcpy(&u, &v->double_val, sizeof u);
      return u == 0;
    }
    case kUpb_FieldType_Float: {
      uint32_t u;
      memcpy(&u, &v->float_val, sizeof u);
      return u == 0;
    }
    case kUpb_FieldType_Bool: return !v->bool_val;
    case kUpb_FieldType_String:
    case kUpb_FieldType_Bytes: return v->str_val.size == 0;
    case kUpb_FieldType_Int64:
    case kUpb_FieldType_UInt64:
    case kUpb_FieldType_Fixed64:
    case kUpb_FieldType_SFixed64:
    case kUpb_FieldType_SInt64: return v->uint64_val == 0;
    default: return v->uint32_val == 0; /* 32-bit integers and enums */
  }
}

static int enc_msg(mw_ctx *c, const upb_MessageDef *m, int t);
static int enc_fields(mw_ctx *c, const upb_MessageDef *m, int t,
                      bool skip_type);

/* One value of field f (type ft) at vi as field number num: a singular
 * value (skip_zero: not written when it is the default), an element of an
 * unpacked array, or a map entry's key or value. */
static int enc_value(mw_ctx *c, const upb_FieldDef *f, upb_FieldType ft, int vi,
                     uint32_t num, bool skip_zero) {
  lua_State *L = c->L;
  if (ft == kUpb_FieldType_Message || ft == kUpb_FieldType_Group) {
    const upb_MessageDef *sub = upb_FieldDef_MessageSubDef(f);
    if (lua_type(L, vi) != LUA_TTABLE)
      return fail(c, "expected table for message %s, got %s",
                  upb_MessageDef_FullName(sub), luaL_typename(L, vi));
    if (ft == kUpb_FieldType_Group) {
      if (wr_raw_tag(c, num, WT_SGROUP) < 0 || enc_msg(c, sub, vi) < 0)
        return -1;
      return wr_raw_tag(c, num, WT_EGROUP);
    }
    size_t slot;
    if (wr_open(c, num, &slot) < 0 || enc_msg(c, sub, vi) < 0) return -1;
    return wr_close(c, slot);
  }
  /* The common cases first; anything else (and every error) goes through
   * to_value, which fill_message uses too. */
  upb_MessageValue v;
  bool ok = false;
  switch (ft) {
    case kUpb_FieldType_String:
    case kUpb_FieldType_Bytes:
      if (lua_type(L, vi) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, vi, &n);
        if (ft == kUpb_FieldType_String && !utf8_valid(s, n))
          return fail(c, "invalid UTF-8 in string");
        if (skip_zero && n == 0) return 0;
        return wr_bytes(c, num, s, n);
      }
      break;
    case kUpb_FieldType_Int64:
    case kUpb_FieldType_SInt64:
    case kUpb_FieldType_SFixed64:
      if ((ok = lua_isinteger(L, vi))) v.int64_val = lua_tointeger(L, vi);
      break;
    case kUpb_FieldType_UInt64:
    case kUpb_FieldType_Fixed64:
      if (lua_isinteger(L, vi)) {
        lua_Integer i = lua_tointeger(L, vi);
        if ((ok = i >= 0)) v.uint64_val = (uint64_t)i;
      }
      break;
    case kUpb_FieldType_Int32:
    case kUpb_FieldType_SInt32:
    case kUpb_FieldType_SFixed32:
      if (lua_isinteger(L, vi)) {
        lua_Integer i = lua_tointeger(L, vi);
        if ((ok = i >= INT32_MIN && i <= INT32_MAX)) v.int32_val = (int32_t)i;
      }
      break;
    case kUpb_FieldType_UInt32:
    case kUpb_FieldType_Fixed32:
      if (lua_isinteger(L, vi)) {
        lua_Integer i = lua_tointeger(L, vi);
        if ((ok = i >= 0 && i <= (lua_Integer)UINT32_MAX))
          v.uint32_val = (uint32_t)i;
      }
      break;
    case kUpb_FieldType_Bool:
      if ((ok = lua_type(L, vi) == LUA_TBOOLEAN))
        v.bool_val = lua_toboolean(L, vi);
      break;
    case kUpb_FieldType_Double:
      if ((ok = lua_type(L, vi) == LUA_TNUMBER))
        v.double_val = lua_tonumber(L, vi);
      break;
    default: break;
  }
  if (!ok && to_value(c, f, vi, &v) < 0) return -1;
  if (skip_zero && is_zero(ft, &v)) return 0;
  return wr_scalar(c, ft, num, &v);
}

/* A repeated field from a sequence 1..n; packable types are packed when
 * the field is. */
static int enc_array(mw_ctx *c, const upb_FieldDef *f, int t) {
  lua_State *L = c->L;
  lua_Unsigned n;
  if (check_sequence(c, f, t, &n) < 0) return -1;
  if (n == 0) return 0;
  upb_FieldType ft = upb_FieldDef_Type(f);
  uint32_t num = upb_FieldDef_Number(f);
  bool packed = upb_FieldDef_IsPacked(f) && packable(ft);
  size_t slot = 0;
  if (packed && wr_open(c, num, &slot) < 0) return -1;
  for (lua_Unsigned i = 1; i <= n; i++) {
    lua_rawgeti(L, t, (lua_Integer)i);
    seg_index(c, (int64_t)i);
    int vi = lua_gettop(L);
    if (packed) {
      upb_MessageValue v;
      if (to_value(c, f, vi, &v) < 0 || wr_scalar(c, ft, 0, &v) < 0) return -1;
    } else if (enc_value(c, f, ft, vi, num, false) < 0) {
      return -1;
    }
    seg_pop(c);
    lua_pop(L, 1);
  }
  return packed ? wr_close(c, slot) : 0;
}

/* A map: one entry per key, both key and value always written (as upb
 * does), in the order lua_next gives. */
static int enc_map(mw_ctx *c, const upb_FieldDef *f, int t) {
  lua_State *L = c->L;
  if (lua_type(L, t) != LUA_TTABLE)
    return fail(c, "expected table for map, got %s", luaL_typename(L, t));
  const upb_MessageDef *entry = upb_FieldDef_MessageSubDef(f);
  const upb_FieldDef *kf =
      upb_MessageDef_FindFieldByNumber(entry, kUpb_MapEntry_KeyFieldNumber);
  const upb_FieldDef *vf =
      upb_MessageDef_FindFieldByNumber(entry, kUpb_MapEntry_ValueFieldNumber);
  upb_FieldType kt = upb_FieldDef_Type(kf), vt = upb_FieldDef_Type(vf);
  uint32_t num = upb_FieldDef_Number(f);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int vi = lua_gettop(L);
    upb_MessageValue k;
    size_t slot;
    seg_lua_key(c, vi - 1);
    if (to_value(c, kf, vi - 1, &k) < 0 || wr_open(c, num, &slot) < 0 ||
        wr_scalar(c, kt, kUpb_MapEntry_KeyFieldNumber, &k) < 0 ||
        enc_value(c, vf, vt, vi, kUpb_MapEntry_ValueFieldNumber, false) < 0 ||
        wr_close(c, slot) < 0)
      return -1;
    seg_pop(c);
    lua_pop(L, 1);
  }
  return 0;
}

static mw_ent *ent_push(mw_ctx *c) {
  if (c->nent == c->ent_cap) {
    upb_Arena *a = ctx_arena(c);
    size_t cap = c->ent_cap * 2;
    mw_ent *e = a ? upb_Arena_Malloc(a, cap * sizeof *e) : NULL;
    if (!e) return NULL;
    memcpy(e, c->ents, c->nent * sizeof *e);
    c->ents = e;
    c->ent_cap = cap;
  }
  return &c->ents[c->nent++];
}

static int ent_cmp(const void *a, const void *b) {
  uint32_t x = ((const mw_ent *)a)->num, y = ((const mw_ent *)b)->num;
  return (x > y) - (x < y);
}

/* The fields of entries e0.. went out in the order lua_next gave; their
 * bytes are put in field-number order, as upb writes them (a copy through
 * scratch space after the end of the buffer). */
static int sort_fields(mw_ctx *c, size_t e0) {
  mw_ent *es = c->ents + e0;
  size_t n = c->nent - e0, i;
  for (i = 1; i < n && es[i - 1].num < es[i].num; i++) {
  }
  if (i >= n) return 0;
  size_t base = es[0].start, body = c->out.len - base;
  for (i = 0; i < n; i++)
    es[i].len = (i + 1 < n ? es[i + 1].start : c->out.len) - es[i].start;
  if (n > 16) {
    qsort(es, n, sizeof *es, ent_cmp);
  } else {
    for (i = 1; i < n; i++) {
      mw_ent x = es[i];
      size_t j = i;
      for (; j > 0 && es[j - 1].num > x.num; j--) es[j] = es[j - 1];
      es[j] = x;
    }
  }
  if (base == 0 && c->out.block && c->out.heap) {
    /* The whole output is a block of its own: the fields in order go to a
     * new block, which replaces it (one copy instead of two). */
    char *nb = malloc(c->out.len), *q = nb;
    if (!nb) return fail_oom(c);
    for (i = 0; i < n; i++) {
      memcpy(q, c->out.p + es[i].start, es[i].len);
      q += es[i].len;
    }
    free(*c->out.block);
    *c->out.block = c->out.p = nb;
    c->out.cap = c->out.len;
    return 0;
  }
  /* Otherwise they go through scratch space of their own: growing the
   * output for it would copy a big message once more, and leave its buffer
   * twice the size it needs. */
  char small[1024];
  char *scratch = body <= sizeof small ? small : malloc(body), *q = scratch;
  if (!scratch) return fail_oom(c);
  for (i = 0; i < n; i++) {
    memcpy(q, c->out.p + es[i].start, es[i].len);
    q += es[i].len;
  }
  memcpy(c->out.p + base, scratch, body);
  if (scratch != small) free(scratch);
  return 0;
}

/* Every key of the table at t is a field name of m (skip_type: but "@type"
 * of an Any body), checked and converted in the order lua_next gives, as
 * fill_fields does; the bytes are sorted by field number at the end. */
static int enc_fields(mw_ctx *c, const upb_MessageDef *m, int t,
                      bool skip_type) {
  lua_State *L = c->L;
  size_t e0 = c->nent;
  bool proto3 = upb_MessageDef_Syntax(m) == kUpb_Syntax_Proto3;
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
      if (skip_type && klen == 5 && memcmp(key, "@type", 5) == 0) {
        lua_pop(L, 1);
        continue;
      }
      return fail_unknown(c, key, klen, m);
    }
    seg_field(c, f);
    /* Presence: proto3 scalars outside any oneof (a proto3 optional has a
     * synthetic one) have none, and their defaults are not written. */
    o = upb_FieldDef_ContainingOneof(f);
    bool implicit = proto3 && !o;
    if (o && upb_OneofDef_IsSynthetic(o)) o = NULL;
    if (o) {
      for (size_t i = e0; i < c->nent; i++) {
        if (c->ents[i].o == o)
          return fail(c, "oneof '%s' already has '%s' set",
                      upb_OneofDef_Name(o), upb_FieldDef_Name(c->ents[i].f));
      }
    }
    mw_ent *e = ent_push(c);
    if (!e) return fail_oom(c);
    e->o = o;
    e->f = f;
    e->num = upb_FieldDef_Number(f);
    e->start = c->out.len;
    int rc;
    if (upb_FieldDef_IsRepeated(f)) {
      rc = upb_FieldDef_IsMap(f) ? enc_map(c, f, vi) : enc_array(c, f, vi);
    } else {
      upb_FieldType ft = upb_FieldDef_Type(f);
      rc = enc_value(c, f, ft, vi, e->num,
                     implicit && ft != kUpb_FieldType_Message);
    }
    if (rc < 0) return -1;
    seg_pop(c);
    lua_pop(L, 1);
  }
  int rc = sort_fields(c, e0);
  c->nent = e0;
  return rc;
}

/* An Any given as {["@type"] = url, <fields of that type>} or
 * {["@type"] = url, ["@value"] = bytes} (the "@type" value on top), checked
 * as fill_any does; the packed message is written in place as the value. */
static int enc_any(mw_ctx *c, const upb_MessageDef *m, int t) {
  lua_State *L = c->L;
  any_table a;
  if (read_any_table(c, m, t, &a) < 0) return -1;
  const char *url = a.url;
  size_t ulen = a.ulen, nlen = a.nlen;
  const upb_MessageDef *packed = a.packed;
  if (ulen > 0 && nlen == ulen) { /* no '/': add the usual prefix */
    size_t plen = sizeof kAnyPrefix - 1;
    if (!wb_reserve(c, 15 + plen + ulen)) return fail_oom(c);
    char *q = wr_tag(c->out.p + c->out.len, kUpb_Any_TypeFieldNumber, WT_LEN);
    q = wr_varint(q, plen + ulen);
    memcpy(q, kAnyPrefix, plen);
    memcpy(q + plen, url, ulen);
    c->out.len = (size_t)(q + plen + ulen - c->out.p);
  } else if (ulen > 0 && wr_bytes(c, kUpb_Any_TypeFieldNumber, url, ulen) < 0) {
    return -1;
  }
  if (a.value) return a.vlen ? wr_bytes(c, kUpb_Any_ValueFieldNumber, a.value, a.vlen) : 0;
  size_t mark = c->out.len, slot;
  if (wr_open(c, kUpb_Any_ValueFieldNumber, &slot) < 0) return -1;
  if (upb_MessageDef_WellKnownType(packed) == kUpb_WellKnown_Any) {
    /* An Any in an Any: the inner one is under "value", as in JSON. */
    if (check_any_in_any_keys(c, t, m) < 0) return -1;
    lua_pushliteral(L, "value");
    if (lua_rawget(L, t) != LUA_TNIL) {
      seg_name(c, "value", 5);
      if (lua_type(L, -1) != LUA_TTABLE)
        return fail(c, "expected table for message %s, got %s",
                    upb_MessageDef_FullName(packed), luaL_typename(L, -1));
      if (enc_msg(c, packed, lua_gettop(L)) < 0) return -1;
      seg_pop(c);
    }
    lua_pop(L, 1);
  } else if (enc_fields(c, packed, t, true) < 0) {
    return -1;
  }
  if (c->out.len == slot + 1) { /* an empty value is not written */
    c->out.len = mark;
    return 0;
  }
  return wr_close(c, slot);
}

/* The fields of the table at t as message m (like fill_message). */
static int enc_msg(mw_ctx *c, const upb_MessageDef *m, int t) {
  lua_State *L = c->L;
  if (++c->depth > MW_CODEC_MAX_DEPTH)
    return fail(c, "message nesting deeper than %d", MW_CODEC_MAX_DEPTH);
  if (!lua_checkstack(L, 8)) return fail(c, "Lua stack overflow");
  int rc;
  if (upb_MessageDef_WellKnownType(m) == kUpb_WellKnown_Any) {
    lua_pushliteral(L, "@type");
    if (lua_rawget(L, t) != LUA_TNIL) {
      rc = enc_any(c, m, t);
      c->depth--;
      return rc;
    }
    lua_pop(L, 1);
  }
  rc = enc_fields(c, m, t, false);
  c->depth--;
  return rc;
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
  char inner[MW_CODEC_ERRLEN];
  mw_ctx c;
  ctx_init(&c, L, a, inner, sizeof inner);
  int top = lua_gettop(L);
  const char *p = buf ? buf : "";
  int rc = dec_msg(&c, m, &p, p + len, 0, 0);
  if (c.own_arena) upb_Arena_Free(c.own_arena);
  if (rc == 0) return 0;
  lua_settop(L, top);
  if (err && errlen)
    snprintf(err, errlen, "cannot decode %s: %s", upb_MessageDef_FullName(m),
             rc == -1 ? inner : dec_status_str(rc));
  return -1;
}

/* The table at idx into c->out (set up by the caller); 0 or -1. */
static int encode_top(mw_ctx *c, int idx, const upb_MessageDef *m) {
  lua_State *L = c->L;
  c->ents = c->ent0;
  c->nent = 0;
  c->ent_cap = MW_CODEC_ENTS;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  int rc;
  if (lua_type(L, idx) != LUA_TTABLE)
    rc = fail(c, "expected table for message %s, got %s",
              upb_MessageDef_FullName(m), luaL_typename(L, idx));
  else
    rc = enc_msg(c, m, idx);
  lua_settop(L, top);
  return rc;
}

char *mw_codec_encode(lua_State *L, int idx, const upb_MessageDef *m,
                      upb_Arena *a, size_t *len, char *err, size_t errlen) {
  char stackbuf[512];
  mw_ctx c;
  ctx_init(&c, L, a, err, errlen);
  c.out.p = stackbuf;
  c.out.len = 0;
  c.out.cap = sizeof stackbuf;
  c.out.heap = false;
  c.out.block = NULL;
  if (!a) {
    fail(&c, "no arena for the bytes");
    return NULL;
  }
  if (encode_top(&c, idx, m) < 0) return NULL;
  char *out = c.out.p;
  if (!c.out.heap) { /* still in stackbuf */
    out = upb_Arena_Malloc(a, c.out.len ? c.out.len : 1);
    if (!out) {
      fail_oom(&c);
      return NULL;
    }
    memcpy(out, c.out.p, c.out.len);
  }
  *len = c.out.len;
  return out;
}

const char *mw_codec_encode_buf(lua_State *L, int idx, const upb_MessageDef *m,
                                upb_Arena *a, char *stack, size_t cap, char **block,
                                size_t *len, bool *oom, char *err, size_t errlen) {
  mw_ctx c;
  ctx_init(&c, L, a, err, errlen);
  *block = NULL;
  c.out.p = stack;
  c.out.len = 0;
  c.out.cap = cap;
  c.out.heap = false;
  c.out.block = block;
  int rc = encode_top(&c, idx, m);
  if (c.own_arena) upb_Arena_Free(c.own_arena);
  if (oom) *oom = c.oom;
  if (rc < 0) {
    free(*block);
    *block = NULL;
    return NULL;
  }
  *len = c.out.len;
  if (*block && c.out.cap - c.out.len > c.out.len / 4 + 64) {
    /* growth doubled it, and sorting wanted scratch room: the block goes on
     * to a send queue that counts only len, so give the rest back */
    char *p = realloc(*block, c.out.len ? c.out.len : 1);
    if (p) *block = c.out.p = p;
  }
  return c.out.p;
}
