/* Codec, Lua -> wire (mw_codec_encode_buf, every reply's hot path, and
 * mw_codec_encode): the bytes of a Lua table written straight into a
 * buffer, driven by each message type's plan (codec/mw_codec_plan.h), with
 * no upb_Message in between. Single values go through the checks of
 * convert.c, as on the reflection path, so both give the same errors; the
 * bytes are upb_Encode's for the same message (test_codec.c compares
 * them). */
#include "codec/mw_codec.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "codec/mw_codec_internal.h"
#include "codec/mw_codec_plan.h"

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
  upb_Arena *a = mw_ctx_arena(c);
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
  *slot = 0; /* set on failure too: -O3 cannot see that callers stop then */
  if (!wb_reserve(c, 6)) return mw_codec_fail_oom(c);
  char *q = wr_tag(c->out.p + c->out.len, num, MW_WT_LEN);
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
  if (!wb_reserve(c, k - 1)) return mw_codec_fail_oom(c);
  memmove(c->out.p + slot + k, c->out.p + slot + 1, body);
  wr_varint(c->out.p + slot, body);
  c->out.len += k - 1;
  return 0;
}

static int wr_raw_tag(mw_ctx *c, uint32_t num, int wt) {
  if (!wb_reserve(c, 5)) return mw_codec_fail_oom(c);
  c->out.len = (size_t)(wr_tag(c->out.p + c->out.len, num, wt) - c->out.p);
  return 0;
}

/* A string or bytes field (num) with its bytes. */
static int wr_bytes(mw_ctx *c, uint32_t num, const char *s, size_t n) {
  if (!wb_reserve(c, 15 + n)) return mw_codec_fail_oom(c);
  char *q = wr_tag(c->out.p + c->out.len, num, MW_WT_LEN);
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
  if (!wb_reserve(c, 15)) return mw_codec_fail_oom(c);
  char *q = c->out.p + c->out.len;
  if (num) q = wr_tag(q, num, mw_wire_type[ft]);
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

static int enc_msg(mw_ctx *c, mw_plan *pl, int k, int t);
static int enc_fields(mw_ctx *c, mw_plan *pl, int k, int t, bool skip_type);

/* One value of field f (type ft) at vi as field number num: a singular
 * value (skip_zero: not written when it is the default), an element of an
 * unpacked array, or a map entry's key or value. A message value's plan is
 * that of field i of pl (whose key table is at k). */
static int enc_value(mw_ctx *c, mw_plan *pl, int pk, int fi,
                     const upb_FieldDef *f, upb_FieldType ft, int vi,
                     uint32_t num, bool skip_zero) {
  lua_State *L = c->L;
  if (ft == kUpb_FieldType_Message || ft == kUpb_FieldType_Group) {
    if (lua_type(L, vi) != LUA_TTABLE)
      return mw_codec_fail(c, "expected table for message %s, got %s",
                           upb_MessageDef_FullName(pl->f[fi].sub),
                           luaL_typename(L, vi));
    mw_plan *sub = mw_plan_push_sub(L, pl, pk, fi);
    int sk = lua_gettop(L);
    if (ft == kUpb_FieldType_Group) {
      if (wr_raw_tag(c, num, MW_WT_SGROUP) < 0 || enc_msg(c, sub, sk, vi) < 0)
        return -1;
      lua_settop(L, sk - 1);
      return wr_raw_tag(c, num, MW_WT_EGROUP);
    }
    size_t slot;
    if (wr_open(c, num, &slot) < 0 || enc_msg(c, sub, sk, vi) < 0) return -1;
    lua_settop(L, sk - 1);
    return wr_close(c, slot);
  }
  /* The common cases first; anything else (and every error) goes through
   * mw_codec_to_value, which the reflection path uses too. */
  upb_MessageValue v;
  bool ok = false;
  switch (ft) {
    case kUpb_FieldType_String:
    case kUpb_FieldType_Bytes:
      if (lua_type(L, vi) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, vi, &n);
        if (ft == kUpb_FieldType_String && !mw_codec_utf8_valid(s, n))
          return mw_codec_fail(c, "invalid UTF-8 in string");
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
  if (!ok && mw_codec_to_value(c, f, vi, &v) < 0) return -1;
  if (skip_zero && is_zero(ft, &v)) return 0;
  return wr_scalar(c, ft, num, &v);
}

/* Repeated field i of pl from a sequence 1..n; packable types are packed
 * when the field is. */
static int enc_array(mw_ctx *c, mw_plan *pl, int pk, int fi, int t) {
  lua_State *L = c->L;
  const mw_pfield *pf = &pl->f[fi];
  const upb_FieldDef *f = pf->f;
  lua_Unsigned n;
  if (mw_codec_check_sequence(c, f, t, &n) < 0) return -1;
  if (n == 0) return 0;
  upb_FieldType ft = pf->type;
  uint32_t num = pf->num;
  bool packed = pf->packed_out;
  size_t slot = 0;
  if (packed && wr_open(c, num, &slot) < 0) return -1;
  for (lua_Unsigned i = 1; i <= n; i++) {
    lua_rawgeti(L, t, (lua_Integer)i);
    mw_seg_index(c, (int64_t)i);
    int vi = lua_gettop(L);
    if (packed) {
      upb_MessageValue v;
      if (mw_codec_to_value(c, f, vi, &v) < 0 || wr_scalar(c, ft, 0, &v) < 0)
        return -1;
    } else if (enc_value(c, pl, pk, fi, f, ft, vi, num, false) < 0) {
      return -1;
    }
    mw_seg_pop(c);
    lua_pop(L, 1);
  }
  return packed ? wr_close(c, slot) : 0;
}

/* Map field i of pl: one entry per key, both key and value always written
 * (as upb does), in the order lua_next gives. */
static int enc_map(mw_ctx *c, mw_plan *pl, int pk, int fi, int t) {
  lua_State *L = c->L;
  if (lua_type(L, t) != LUA_TTABLE)
    return mw_codec_fail(c, "expected table for map, got %s",
                         luaL_typename(L, t));
  const mw_pfield *pf = &pl->f[fi];
  const upb_FieldDef *kf = pf->kf, *vf = pf->vf;
  upb_FieldType kt = pf->kt, vt = pf->vt;
  uint32_t num = pf->num;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int vi = lua_gettop(L);
    upb_MessageValue k;
    size_t slot;
    mw_seg_lua_key(c, vi - 1);
    if (mw_codec_to_value(c, kf, vi - 1, &k) < 0 ||
        wr_open(c, num, &slot) < 0 ||
        wr_scalar(c, kt, kUpb_MapEntry_KeyFieldNumber, &k) < 0 ||
        enc_value(c, pl, pk, fi, vf, vt, vi, kUpb_MapEntry_ValueFieldNumber,
                  false) < 0 ||
        wr_close(c, slot) < 0)
      return -1;
    mw_seg_pop(c);
    lua_pop(L, 1);
  }
  return 0;
}

static mw_ent *ent_push(mw_ctx *c) {
  if (c->nent == c->ent_cap) {
    upb_Arena *a = mw_ctx_arena(c);
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
    if (!nb) return mw_codec_fail_oom(c);
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
  if (!scratch) return mw_codec_fail_oom(c);
  for (i = 0; i < n; i++) {
    memcpy(q, c->out.p + es[i].start, es[i].len);
    q += es[i].len;
  }
  memcpy(c->out.p + base, scratch, body);
  if (scratch != small) free(scratch);
  return 0;
}

/* One field (index i of pl) whose value is at vi. */
static int enc_field(mw_ctx *c, mw_plan *pl, int k, int i, int vi) {
  const mw_pfield *pf = &pl->f[i];
  switch (pf->kind) {
    case MW_PK_MAP: return enc_map(c, pl, k, i, vi);
    case MW_PK_ARRAY: return enc_array(c, pl, k, i, vi);
  }
  return enc_value(c, pl, k, i, pf->f, pf->type, vi, pf->num, pf->implicit);
}

/* The lua_next path: every key of the table at t is a field name of pl's
 * message (skip_type: but "@type" of an Any body), checked and converted in
 * the order lua_next gives, as fill_fields (reflect.c) does; the bytes are
 * sorted by field number at the end. Its errors are the ones users see:
 * the first wrong key or value in table order. */
static int enc_fields_next(mw_ctx *c, mw_plan *pl, int k, int t,
                           bool skip_type) {
  lua_State *L = c->L;
  const upb_MessageDef *m = pl->m;
  size_t e0 = c->nent;
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
      if (skip_type && klen == 5 && memcmp(key, "@type", 5) == 0) {
        lua_pop(L, 1);
        continue;
      }
      return mw_codec_fail_unknown(c, key, klen, m);
    }
    int i = (int)upb_FieldDef_Index(f);
    const mw_pfield *pf = &pl->f[i];
    mw_seg_field(c, f);
    o = pf->o;
    if (o) {
      for (size_t j = e0; j < c->nent; j++) {
        if (c->ents[j].o == o)
          return mw_codec_fail(c, "oneof '%s' already has '%s' set",
                               upb_OneofDef_Name(o),
                               upb_FieldDef_Name(c->ents[j].f));
      }
    }
    mw_ent *e = ent_push(c);
    if (!e) return mw_codec_fail_oom(c);
    e->o = o;
    e->f = f;
    e->num = pf->num;
    e->start = c->out.len;
    if (enc_field(c, pl, k, i, vi) < 0) return -1;
    mw_seg_pop(c);
    lua_pop(L, 1);
  }
  int rc = sort_fields(c, e0);
  c->nent = e0;
  return rc;
}

/* Fields a message may have for the plan path: where each one's value is
 * on the stack is kept in an array on the C stack. */
#define PLAN_FIELDS_MAX 64

/* The plan path: the table's keys from lua_next, each found in the plan by
 * the address of its string (no hashing of names, see mw_plan_by_key), the
 * values left on the Lua stack; then the fields are written in number
 * order, so the bytes need no sorting. It stops at the first problem of any
 * kind (a key that is no field, two members of a oneof, a bad value)
 * without a message of its own: encode_top then does it all again the
 * lua_next way, which finds the problem users are told of, as they always
 * were (the first in table order). */
static int enc_fields_plan(mw_ctx *c, mw_plan *pl, int k, int t,
                           bool skip_type) {
  lua_State *L = c->L;
  int at[PLAN_FIELDS_MAX]; /* stack index of field i's value, or 0 */
  memset(at, 0, (size_t)pl->n * sizeof at[0]);
  uint64_t oneofs = 0;
  int base = lua_gettop(L), found = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    /* (a light userdata has an address too: only a string is a name) */
    if (lua_type(L, -2) != LUA_TSTRING) return -1;
    int i = mw_plan_by_key(pl, lua_topointer(L, -2));
    if (i < 0) { /* a long name, "@type" of an Any's body, or no field */
      size_t klen;
      const char *key = lua_tolstring(L, -2, &klen);
      const upb_FieldDef *f = NULL;
      const upb_OneofDef *o = NULL;
      if (upb_MessageDef_FindByNameWithSize(pl->m, key, klen, &f, &o) && f) {
        i = (int)upb_FieldDef_Index(f);
      } else if (skip_type && klen == 5 && memcmp(key, "@type", 5) == 0) {
        lua_pop(L, 1);
        continue;
      } else {
        return -1;
      }
    }
    int bit = pl->f[i].oneof_bit;
    if (bit >= 0) {
      if (oneofs & (UINT64_C(1) << bit)) return -1;
      oneofs |= UINT64_C(1) << bit;
    }
    at[i] = lua_gettop(L);
    /* each pair stays: room for the next one (at most one per field) */
    if ((++found & 7) == 0 && !lua_checkstack(L, 20)) return -1;
    lua_pushvalue(L, -2);
  }
  for (int j = 0; found && j < pl->n; j++) {
    int i = (int)pl->order[j];
    if (!at[i]) continue;
    mw_seg_field(c, pl->f[i].f);
    if (enc_field(c, pl, k, i, at[i]) < 0) return -1;
    mw_seg_pop(c);
    found--;
  }
  lua_settop(L, base);
  return 0;
}

static int enc_fields(mw_ctx *c, mw_plan *pl, int k, int t, bool skip_type) {
  if (c->slow || pl->wide_oneofs || pl->n > PLAN_FIELDS_MAX)
    return enc_fields_next(c, pl, k, t, skip_type);
  return enc_fields_plan(c, pl, k, t, skip_type);
}

/* An Any given as {["@type"] = url, <fields of that type>} or
 * {["@type"] = url, ["@value"] = bytes} (the "@type" value on top), checked
 * as fill_any (reflect.c) does; the packed message is written in place as
 * the value. */
static int enc_any(mw_ctx *c, const mw_plan *pl, int t) {
  lua_State *L = c->L;
  const upb_MessageDef *m = pl->m;
  mw_any_table a;
  if (mw_codec_read_any_table(c, m, t, &a) < 0) return -1;
  const char *url = a.url;
  size_t ulen = a.ulen, nlen = a.nlen;
  const upb_MessageDef *packed = a.packed;
  if (ulen > 0 && nlen == ulen) { /* no '/': add the usual prefix */
    size_t plen = sizeof MW_CODEC_ANY_PREFIX - 1;
    if (!wb_reserve(c, 15 + plen + ulen)) return mw_codec_fail_oom(c);
    char *q =
        wr_tag(c->out.p + c->out.len, kUpb_Any_TypeFieldNumber, MW_WT_LEN);
    q = wr_varint(q, plen + ulen);
    memcpy(q, MW_CODEC_ANY_PREFIX, plen);
    memcpy(q + plen, url, ulen);
    c->out.len = (size_t)(q + plen + ulen - c->out.p);
  } else if (ulen > 0 && wr_bytes(c, kUpb_Any_TypeFieldNumber, url, ulen) < 0) {
    return -1;
  }
  if (a.value)
    return a.vlen ? wr_bytes(c, kUpb_Any_ValueFieldNumber, a.value, a.vlen) : 0;
  size_t mark = c->out.len, slot;
  if (wr_open(c, kUpb_Any_ValueFieldNumber, &slot) < 0) return -1;
  mw_plan *ppl = mw_plan_push(L, packed);
  int pk = lua_gettop(L);
  if (ppl->any) {
    /* An Any in an Any: the inner one is under "value", as in JSON. */
    if (mw_codec_check_any_in_any_keys(c, t, m) < 0) return -1;
    lua_pushliteral(L, "value");
    if (lua_rawget(L, t) != LUA_TNIL) {
      mw_seg_name(c, "value", 5);
      if (lua_type(L, -1) != LUA_TTABLE)
        return mw_codec_fail(c, "expected table for message %s, got %s",
                             upb_MessageDef_FullName(packed),
                             luaL_typename(L, -1));
      if (enc_msg(c, ppl, pk, lua_gettop(L)) < 0) return -1;
      mw_seg_pop(c);
    }
    lua_pop(L, 1);
  } else if (enc_fields(c, ppl, pk, t, true) < 0) {
    return -1;
  }
  lua_settop(L, pk - 1);
  if (c->out.len == slot + 1) { /* an empty value is not written */
    c->out.len = mark;
    return 0;
  }
  return wr_close(c, slot);
}

/* The fields of the table at t as pl's message (like fill_message in
 * reflect.c); k is the plan's key table. */
static int enc_msg(mw_ctx *c, mw_plan *pl, int k, int t) {
  lua_State *L = c->L;
  if (++c->depth > MW_CODEC_MAX_DEPTH)
    return mw_codec_fail(c, "message nesting deeper than %d",
                         MW_CODEC_MAX_DEPTH);
  if (!lua_checkstack(L, 24)) return mw_codec_fail(c, "Lua stack overflow");
  int rc;
  if (pl->any) {
    lua_pushliteral(L, "@type");
    if (lua_rawget(L, t) != LUA_TNIL) {
      rc = enc_any(c, pl, t);
      c->depth--;
      return rc;
    }
    lua_pop(L, 1);
  }
  rc = enc_fields(c, pl, k, t, false);
  c->depth--;
  return rc;
}

/* ---- public API -------------------------------------------------------- */

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
    rc = mw_codec_fail(c, "expected table for message %s, got %s",
                       upb_MessageDef_FullName(m), luaL_typename(L, idx));
  else if (!lua_checkstack(L, 4))
    rc = mw_codec_fail(c, "Lua stack overflow");
  else {
    mw_plan *pl = mw_plan_push(L, m);
    int k = lua_gettop(L);
    c->slow = false;
    rc = enc_msg(c, pl, k, idx);
    if (rc < 0) {
      /* The plan path stopped at a problem; the lua_next path finds the
       * one to report, from the start again. */
      lua_settop(L, k);
      c->out.len = 0;
      c->nent = 0;
      c->depth = 0;
      c->nseg = 0;
      c->oom = false;
      if (c->err && c->errlen) c->err[0] = '\0';
      c->slow = true;
      rc = enc_msg(c, pl, k, idx);
    }
  }
  lua_settop(L, top);
  return rc;
}

char *mw_codec_encode(lua_State *L, int idx, const upb_MessageDef *m,
                      upb_Arena *a, size_t *len, char *err, size_t errlen) {
  char stackbuf[512];
  mw_ctx c;
  mw_ctx_init(&c, L, a, err, errlen);
  c.out.p = stackbuf;
  c.out.len = 0;
  c.out.cap = sizeof stackbuf;
  c.out.heap = false;
  c.out.block = NULL;
  if (!a) {
    mw_codec_fail(&c, "no arena for the bytes");
    return NULL;
  }
  if (encode_top(&c, idx, m) < 0) return NULL;
  char *out = c.out.p;
  if (!c.out.heap) { /* still in stackbuf */
    out = upb_Arena_Malloc(a, c.out.len ? c.out.len : 1);
    if (!out) {
      mw_codec_fail_oom(&c);
      return NULL;
    }
    memcpy(out, c.out.p, c.out.len);
  }
  *len = c.out.len;
  return out;
}

const char *mw_codec_encode_buf(lua_State *L, int idx, const upb_MessageDef *m,
                                upb_Arena *a, char *stack, size_t cap,
                                char **block, size_t *len, bool *oom, char *err,
                                size_t errlen) {
  mw_ctx c;
  mw_ctx_init(&c, L, a, err, errlen);
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
