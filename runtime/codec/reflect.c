/* Codec, upb message <-> Lua table through upb's reflection
 * (mw_codec_push_message, mw_codec_to_message), with the mapping and the
 * errors of the wire functions. Not part of the runtime: the unit tests use
 * it as the oracle the wire decoder and encoder are compared with, through
 * upb_Decode and upb_Encode. Lua values go through the same checks as in
 * the encoder (convert.c). */
#include "codec/mw_codec_reflect.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

#include "codec/mw_codec_internal.h"
#include "upb/array.h"
#include "upb/decode.h"
#include "upb/encode.h"
#include "upb/map.h"
#include "upb/reflection.h"

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

static void seg_map_key(mw_ctx *c, const upb_FieldDef *kf, upb_MessageValue k) {
  mw_seg *s;
  switch (upb_FieldDef_CType(kf)) {
    case kUpb_CType_String:
      s = mw_seg_push(c, MW_SEG_STR);
      s->s = k.str_val.data;
      s->len = k.str_val.size;
      break;
    case kUpb_CType_Bool: mw_seg_push(c, MW_SEG_BOOL)->i = k.bool_val; break;
    case kUpb_CType_Int32: mw_seg_push(c, MW_SEG_INT)->i = k.int32_val; break;
    case kUpb_CType_Int64: mw_seg_push(c, MW_SEG_INT)->i = k.int64_val; break;
    case kUpb_CType_UInt32:
      mw_seg_push(c, MW_SEG_UINT)->u = k.uint32_val;
      break;
    default: mw_seg_push(c, MW_SEG_UINT)->u = k.uint64_val; break;
  }
}

/* ---- message -> Lua ---------------------------------------------------- */

static int push_msg(mw_ctx *c, const upb_Message *msg, const upb_MessageDef *m);
static int push_fields(mw_ctx *c, const upb_Message *msg,
                       const upb_MessageDef *m, int extra);

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
    case kUpb_CType_UInt64: mw_codec_push_u64(L, v.uint64_val); return 0;
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
      if (!mw_codec_utf8_valid(v.str_val.data, v.str_val.size))
        return mw_codec_fail(c, "invalid UTF-8 in string");
      /* fall through */
    case kUpb_CType_Bytes:
      lua_pushlstring(L, v.str_val.data, v.str_val.size);
      return 0;
    case kUpb_CType_Message: {
      const upb_MessageDef *sub = upb_FieldDef_MessageSubDef(f);
      const upb_Message *m = v.msg_val;
      if (!m) { /* not expected from upb; treat as the empty message */
        upb_Arena *a = mw_ctx_arena(c);
        if (!a || !(m = upb_Message_New(sub, a))) return mw_codec_fail_oom(c);
      }
      return push_msg(c, m, sub);
    }
  }
  return mw_codec_fail(c, "unsupported field type");
}

static int push_array(mw_ctx *c, const upb_FieldDef *f, const upb_Array *arr) {
  size_t n = arr ? upb_Array_Size(arr) : 0;
  lua_createtable(c->L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    mw_seg_index(c, (int64_t)i + 1);
    if (push_value(c, f, upb_Array_Get(arr, i)) < 0) return -1;
    mw_seg_pop(c);
    lua_rawseti(c->L, -2, (lua_Integer)i + 1);
  }
  return 0;
}

static int push_map(mw_ctx *c, const upb_FieldDef *f, const upb_Map *map) {
  const upb_FieldDef *kf, *vf;
  mw_codec_map_fields(f, &kf, &vf);
  size_t n = map ? upb_Map_Size(map) : 0;
  lua_createtable(c->L, 0, n > INT32_MAX ? INT32_MAX : (int)n);
  if (!map) return 0;
  size_t iter = kUpb_Map_Begin;
  while (upb_MapIterator_Next(map, &iter)) {
    upb_MessageValue k = upb_MapIterator_Key(map, iter);
    seg_map_key(c, kf, k);
    if (push_value(c, kf, k) < 0) return -1;
    if (push_value(c, vf, upb_MapIterator_Value(map, iter)) < 0) return -1;
    mw_seg_pop(c);
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
  if (!mw_codec_utf8_valid(url.data, url.size))
    return mw_codec_fail(c, "invalid UTF-8 in google.protobuf.Any type_url");
  if (mw_codec_any_plain(url.data, url.size)) {
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, url.data, url.size);
    lua_setfield(L, -2, "type_url");
    lua_pushlstring(L, val.data, val.size);
    lua_setfield(L, -2, "value");
    return 0;
  }
  size_t nlen;
  const char *name = mw_codec_any_type_name(url.data, url.size, &nlen);
  const upb_DefPool *pool = mw_codec_pool_of(m);
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
  upb_Arena *a = mw_ctx_arena(c);
  upb_Message *inner = a ? upb_Message_New(packed, a) : NULL;
  if (!inner) return mw_codec_fail_oom(c);
  upb_DecodeStatus st = upb_Decode(val.size ? val.data : "", val.size, inner,
                                   upb_MessageDef_MiniTable(packed),
                                   upb_DefPool_ExtensionRegistry(pool),
                                   kUpb_DecodeOption_AliasString, a);
  if (st != kUpb_DecodeStatus_Ok)
    return mw_codec_fail(c, "cannot unpack google.protobuf.Any of type %s: %s",
                         upb_MessageDef_FullName(packed),
                         decode_status_str(st));
  if (upb_MessageDef_WellKnownType(packed) == kUpb_WellKnown_Any) {
    /* An Any in an Any: the inner one goes under "value", as in JSON. */
    lua_createtable(L, 0, 2);
    mw_seg_name(c, "value", 5);
    if (push_msg(c, inner, packed) < 0) return -1;
    mw_seg_pop(c);
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
    mw_seg_field(c, f);
    int rc;
    if (upb_FieldDef_IsRepeated(f)) {
      upb_MessageValue v = upb_Message_Get(msg, f);
      rc = upb_FieldDef_IsMap(f) ? push_map(c, f, v.map_val)
                                 : push_array(c, f, v.array_val);
    } else if (upb_FieldDef_HasPresence(f) && !upb_Message_Has(msg, f)) {
      mw_seg_pop(c);
      continue; /* absent: nil */
    } else {
      rc = push_value(c, f, upb_Message_Get(msg, f));
    }
    if (rc < 0) return -1;
    mw_seg_pop(c);
    lua_setfield(L, -2, upb_FieldDef_Name(f));
  }
  return 0;
}

static int push_msg(mw_ctx *c, const upb_Message *msg,
                    const upb_MessageDef *m) {
  if (++c->depth > MW_CODEC_MAX_DEPTH)
    return mw_codec_fail(c, "message nesting deeper than %d",
                         MW_CODEC_MAX_DEPTH);
  if (!lua_checkstack(c->L, 8)) return mw_codec_fail(c, "Lua stack overflow");
  int rc = upb_MessageDef_WellKnownType(m) == kUpb_WellKnown_Any
               ? push_any(c, msg, m)
               : push_fields(c, msg, m, 0);
  c->depth--;
  return rc;
}

/* ---- Lua -> message ---------------------------------------------------- */

static int fill_message(mw_ctx *c, upb_Message *msg, const upb_MessageDef *m,
                        int t);

/* Converts the Lua value at vi for (one element of) field f: a message
 * here, anything else by the checks the encoder uses too. */
static int to_value(mw_ctx *c, const upb_FieldDef *f, int vi,
                    upb_MessageValue *out) {
  lua_State *L = c->L;
  if (upb_FieldDef_CType(f) != kUpb_CType_Message)
    return mw_codec_to_value(c, f, vi, out);
  const upb_MessageDef *sub = upb_FieldDef_MessageSubDef(f);
  if (lua_type(L, vi) != LUA_TTABLE)
    return mw_codec_fail(c, "expected table for message %s, got %s",
                         upb_MessageDef_FullName(sub), luaL_typename(L, vi));
  upb_Message *m = upb_Message_New(sub, c->arena);
  if (!m) return mw_codec_fail_oom(c);
  if (fill_message(c, m, sub, vi) < 0) return -1;
  out->msg_val = m;
  return 0;
}

/* A repeated field from a sequence 1..n, the elements in order. */
static int fill_array(mw_ctx *c, upb_Message *msg, const upb_FieldDef *f,
                      int t) {
  lua_State *L = c->L;
  lua_Unsigned n;
  if (mw_codec_check_sequence(c, f, t, &n) < 0) return -1;
  if (n == 0) return 0;
  upb_Array *arr = upb_Message_Mutable(msg, f, c->arena).array;
  if (!arr || !upb_Array_Resize(arr, n, c->arena)) return mw_codec_fail_oom(c);
  for (lua_Unsigned i = 1; i <= n; i++) {
    upb_MessageValue v;
    lua_rawgeti(L, t, (lua_Integer)i);
    mw_seg_index(c, (int64_t)i);
    if (to_value(c, f, lua_gettop(L), &v) < 0) return -1;
    mw_seg_pop(c);
    upb_Array_Set(arr, i - 1, v);
    lua_pop(L, 1);
  }
  return 0;
}

static int fill_map(mw_ctx *c, upb_Message *msg, const upb_FieldDef *f, int t) {
  lua_State *L = c->L;
  if (lua_type(L, t) != LUA_TTABLE)
    return mw_codec_fail(c, "expected table for map, got %s",
                         luaL_typename(L, t));
  const upb_FieldDef *kf, *vf;
  mw_codec_map_fields(f, &kf, &vf);
  upb_Map *map = NULL;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int vi = lua_gettop(L);
    upb_MessageValue k, v;
    if (!map && !(map = upb_Message_Mutable(msg, f, c->arena).map))
      return mw_codec_fail_oom(c);
    mw_seg_lua_key(c, vi - 1);
    if (to_value(c, kf, vi - 1, &k) < 0 || to_value(c, vf, vi, &v) < 0)
      return -1;
    mw_seg_pop(c);
    if (!upb_Map_Set(map, k, v, c->arena)) return mw_codec_fail_oom(c);
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
  if (!upb_Message_Set(msg, f, v, c->arena)) return mw_codec_fail_oom(c);
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
      mw_seg_lua_key(c, vi - 1);
      return mw_codec_fail(c, "message %s has only string keys (field names)",
                           upb_MessageDef_FullName(m));
    }
    size_t klen;
    const char *key = lua_tolstring(L, vi - 1, &klen);
    const upb_FieldDef *f = NULL;
    const upb_OneofDef *o = NULL;
    if (!upb_MessageDef_FindByNameWithSize(m, key, klen, &f, &o) || !f) {
      if (skip_type && mw_codec_key_is(L, vi - 1, "@type", 5)) {
        lua_pop(L, 1);
        continue;
      }
      return mw_codec_fail_unknown(c, key, klen, m);
    }
    mw_seg_field(c, f);
    const upb_OneofDef *oneof = upb_FieldDef_RealContainingOneof(f);
    if (oneof) {
      const upb_FieldDef *set = upb_Message_WhichOneof(msg, oneof);
      if (set && set != f)
        return mw_codec_fail(c, "oneof '%s' already has '%s' set",
                             upb_OneofDef_Name(oneof), upb_FieldDef_Name(set));
    }
    if (fill_field(c, msg, f, vi) < 0) return -1;
    mw_seg_pop(c);
    lua_pop(L, 1);
  }
  return 0;
}

/* An Any given as {["@type"] = url, <fields of that type>} or
 * {["@type"] = url, ["@value"] = bytes}; the "@type" value is on top. */
static int fill_any(mw_ctx *c, upb_Message *msg, const upb_MessageDef *m,
                    int t) {
  lua_State *L = c->L;
  mw_any_table a;
  if (mw_codec_read_any_table(c, m, t, &a) < 0) return -1;
  const char *url = a.url;
  size_t ulen = a.ulen, nlen = a.nlen;
  const upb_MessageDef *packed = a.packed;
  upb_StringView value;
  if (a.value) {
    if (mw_codec_take_string(c, a.value, a.vlen, &value) < 0) return -1;
  } else {
    upb_Message *inner = upb_Message_New(packed, c->arena);
    if (!inner) return mw_codec_fail_oom(c);
    if (upb_MessageDef_WellKnownType(packed) == kUpb_WellKnown_Any) {
      /* An Any in an Any: the inner one is under "value", as in JSON. */
      if (mw_codec_check_any_in_any_keys(c, t, m) < 0) return -1;
      lua_pushliteral(L, "value");
      if (lua_rawget(L, t) != LUA_TNIL) {
        mw_seg_name(c, "value", 5);
        if (lua_type(L, -1) != LUA_TTABLE)
          return mw_codec_fail(c, "expected table for message %s, got %s",
                               upb_MessageDef_FullName(packed),
                               luaL_typename(L, -1));
        if (fill_message(c, inner, packed, lua_gettop(L)) < 0) return -1;
        mw_seg_pop(c);
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
      return mw_codec_fail(c, "cannot encode %s for google.protobuf.Any: %s",
                           upb_MessageDef_FullName(packed),
                           encode_status_str(st));
    value.data = len ? buf : "";
    value.size = len;
  }

  upb_StringView type_url;
  if (ulen > 0 && nlen == ulen) { /* no '/': add the usual prefix */
    size_t plen = sizeof MW_CODEC_ANY_PREFIX - 1;
    char *p = upb_Arena_Malloc(c->arena, plen + ulen);
    if (!p) return mw_codec_fail_oom(c);
    memcpy(p, MW_CODEC_ANY_PREFIX, plen);
    memcpy(p + plen, url, ulen);
    type_url.data = p;
    type_url.size = plen + ulen;
  } else if (mw_codec_take_string(c, url, ulen, &type_url) < 0) {
    return -1;
  }
  upb_MessageValue v;
  v.str_val = type_url;
  if (!upb_Message_Set(
          msg, upb_MessageDef_FindFieldByNumber(m, kUpb_Any_TypeFieldNumber), v,
          c->arena))
    return mw_codec_fail_oom(c);
  v.str_val = value;
  if (!upb_Message_Set(
          msg, upb_MessageDef_FindFieldByNumber(m, kUpb_Any_ValueFieldNumber),
          v, c->arena))
    return mw_codec_fail_oom(c);
  return 0;
}

static int fill_message(mw_ctx *c, upb_Message *msg, const upb_MessageDef *m,
                        int t) {
  lua_State *L = c->L;
  if (++c->depth > MW_CODEC_MAX_DEPTH)
    return mw_codec_fail(c, "message nesting deeper than %d",
                         MW_CODEC_MAX_DEPTH);
  if (!lua_checkstack(L, 8)) return mw_codec_fail(c, "Lua stack overflow");
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

/* The table at idx as a new message of type m in c->arena. */
static upb_Message *build(mw_ctx *c, int idx, const upb_MessageDef *m) {
  lua_State *L = c->L;
  if (lua_type(L, idx) != LUA_TTABLE) {
    mw_codec_fail(c, "expected table for message %s, got %s",
                  upb_MessageDef_FullName(m), luaL_typename(L, idx));
    return NULL;
  }
  upb_Message *msg = upb_Message_New(m, c->arena);
  if (!msg) {
    mw_codec_fail_oom(c);
    return NULL;
  }
  return fill_message(c, msg, m, idx) < 0 ? NULL : msg;
}

/* ---- public API -------------------------------------------------------- */

int mw_codec_push_message(lua_State *L, const upb_Message *msg,
                          const upb_MessageDef *m, char *err, size_t errlen) {
  mw_ctx c;
  mw_ctx_init(&c, L, NULL, err, errlen);
  int top = lua_gettop(L);
  int rc = push_msg(&c, msg, m);
  if (c.own_arena) upb_Arena_Free(c.own_arena);
  if (rc < 0) lua_settop(L, top);
  return rc;
}

upb_Message *mw_codec_to_message(lua_State *L, int idx, const upb_MessageDef *m,
                                 upb_Arena *a, char *err, size_t errlen) {
  mw_ctx c;
  mw_ctx_init(&c, L, a, err, errlen);
  c.copy_strings = true; /* the message outlives this call, the table may not */
  int top = lua_gettop(L);
  upb_Message *msg = build(&c, lua_absindex(L, idx), m);
  lua_settop(L, top);
  return msg;
}
