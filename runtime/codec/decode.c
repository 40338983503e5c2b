/* Codec, wire -> Lua (mw_codec_decode_push, every call's hot path): the
 * protobuf wire format parsed straight into Lua tables, driven by each
 * message type's plan (codec/mw_codec_plan.h: the descriptors read once,
 * the field names ready as Lua strings), with no upb_Message in between. Where the wire format leaves
 * a choice (merging, unknown fields, closed enums) it does what upb 1.51's
 * decoder did; test_codec.c checks it against upb_Decode and the reflection
 * path. */
#include "codec/mw_codec.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "codec/mw_codec_internal.h"
#include "codec/mw_codec_plan.h"

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
    case MW_WT_VARINT: return rd_varint(p, end, &v->u);
    case MW_WT_64BIT:
      if (end - p < 8) return NULL;
      v->u = rd_le64(p);
      return p + 8;
    case MW_WT_32BIT:
      if (end - p < 4) return NULL;
      v->u = rd_le32(p);
      return p + 4;
    case MW_WT_LEN: {
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
  if (wt != MW_WT_SGROUP) {
    p = wt == MW_WT_EGROUP ? NULL : rd_value(p, end, wt, &v);
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
    if (w == MW_WT_EGROUP) {
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
    case kUpb_FieldType_Fixed64: mw_codec_push_u64(L, v->u); return 0;
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
      if (!mw_codec_utf8_valid(v->s, v->n))
        return proto3 ? DEC_BADUTF8
                      : mw_codec_fail(c, "invalid UTF-8 in string");
      /* fall through */
    case kUpb_FieldType_Bytes: lua_pushlstring(L, v->s, v->n); return 0;
    default: return DEC_MALFORMED;
  }
}

/* The value of an implicit-presence field that is not on the wire (a map
 * entry's key or value; a message's fields have push_plan_default). */
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

/* The value of plan field pf when a new table lacks it (pf->dflt). */
static void push_plan_default(lua_State *L, const mw_pfield *pf) {
  switch (pf->kind) {
    case MW_PK_ARRAY:
    case MW_PK_MAP: lua_createtable(L, 0, 0); return;
  }
  switch (pf->type) {
    case kUpb_FieldType_Bool: lua_pushboolean(L, 0); break;
    case kUpb_FieldType_Float:
    case kUpb_FieldType_Double: lua_pushnumber(L, 0.0); break;
    case kUpb_FieldType_String:
    case kUpb_FieldType_Bytes: lua_pushliteral(L, ""); break;
    case kUpb_FieldType_Enum:
      if (pf->enum_zero)
        lua_pushstring(L, pf->enum_zero);
      else
        lua_pushinteger(L, 0);
      break;
    default: lua_pushinteger(L, 0); break;
  }
}

/* The decoding of one message into its table, driven by its plan: fields
 * are set with lua_rawset and the plan's keys (the tables are the
 * decoder's own, without metatables). */
typedef struct {
  mw_plan *pl;
  int k;        /* absolute index of the plan's key table */
  int t;        /* absolute index of the table */
  bool merging; /* the table came from an earlier occurrence: merge into it */
  int open_i;   /* repeated or map field whose table is at t+1, or -1 */
  lua_Integer open_n; /* elements in that array */
  int last;     /* the field read last (index), for the next lookup; -1 */
  uint64_t *seen; /* a bit per field index set in this table */
  uint64_t seen0[4];
} mw_dframe;

static bool fr_seen(const mw_dframe *fr, uint32_t i) {
  return (fr->seen[i >> 6] >> (i & 63)) & 1;
}

static void fr_mark(mw_dframe *fr, uint32_t i) {
  fr->seen[i >> 6] |= UINT64_C(1) << (i & 63);
}

static void fr_unmark(mw_dframe *fr, uint32_t i) {
  fr->seen[i >> 6] &= ~(UINT64_C(1) << (i & 63));
}

/* Pushes the key (field name) of field i. */
static inline void fr_key(lua_State *L, const mw_dframe *fr, int i) {
  lua_rawgeti(L, fr->k, MW_PLAN_KEY(i));
}

static int dec_msg(mw_ctx *c, mw_plan *pl, int k, const char **pp,
                   const char *end, uint32_t group, int into);
static int dec_body(mw_ctx *c, mw_plan *pl, int k, const char **pp,
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

/* Makes the table of repeated or map field i the one at t + 1, unless it is
 * already. A new table is sized for count elements, or (count 0) for the
 * run of values starting at p. */
static void open_container(mw_ctx *c, mw_dframe *fr, int i, size_t count,
                           const char *p, const char *end, uint32_t num,
                           int wt) {
  lua_State *L = c->L;
  if (fr->open_i == i) return;
  lua_settop(L, fr->t);
  fr->open_i = i;
  bool had = fr->merging || fr_seen(fr, (uint32_t)i);
  fr_mark(fr, (uint32_t)i);
  if (had) {
    fr_key(L, fr, i);
    if (lua_rawget(L, fr->t) == LUA_TTABLE) {
      fr->open_n = (lua_Integer)lua_rawlen(L, -1);
      return;
    }
    lua_pop(L, 1);
  }
  int n = count > INT32_MAX ? INT32_MAX
          : count           ? (int)count
                            : count_run(p, end, num, wt);
  if (fr->pl->f[i].kind == MW_PK_MAP)
    lua_createtable(L, 0, n);
  else
    lua_createtable(L, n, 0);
  fr_key(L, fr, i);
  lua_pushvalue(L, -2);
  lua_rawset(L, fr->t);
  fr->open_n = 0;
}

/* A member of a oneof is being set: the others go (the last one wins). */
static void clear_oneof(mw_ctx *c, mw_dframe *fr, const upb_OneofDef *o,
                        int keep) {
  lua_State *L = c->L;
  const mw_plan *pl = fr->pl;
  for (int i = 0; i < pl->n; i++) {
    if (pl->f[i].o != o || i == keep ||
        !(fr->merging || fr_seen(fr, (uint32_t)i)))
      continue;
    fr_key(L, fr, i);
    lua_pushnil(L);
    lua_rawset(L, fr->t);
    fr_unmark(fr, (uint32_t)i);
  }
}

/* The path segment of a map key read from the wire (before it is checked,
 * so that an error about the key names it). */
static void seg_wire_key(mw_ctx *c, upb_FieldType kt, const mw_wval *k) {
  mw_seg *s;
  switch (kt) {
    case kUpb_FieldType_String:
    case kUpb_FieldType_Bytes:
      s = mw_seg_push(c, MW_SEG_STR);
      s->s = k->s;
      s->len = k->n;
      break;
    case kUpb_FieldType_Bool: mw_seg_push(c, MW_SEG_BOOL)->i = k->u != 0; break;
    case kUpb_FieldType_Int32:
    case kUpb_FieldType_SFixed32:
    case kUpb_FieldType_Enum:
      mw_seg_push(c, MW_SEG_INT)->i = (int32_t)(uint32_t)k->u;
      break;
    case kUpb_FieldType_SInt32:
      mw_seg_push(c, MW_SEG_INT)->i = zigzag32(k->u);
      break;
    case kUpb_FieldType_SInt64:
      mw_seg_push(c, MW_SEG_INT)->i = zigzag64(k->u);
      break;
    case kUpb_FieldType_Int64:
    case kUpb_FieldType_SFixed64:
      mw_seg_push(c, MW_SEG_INT)->i = (int64_t)k->u;
      break;
    case kUpb_FieldType_UInt32:
    case kUpb_FieldType_Fixed32:
      mw_seg_push(c, MW_SEG_UINT)->u = (uint32_t)k->u;
      break;
    default: mw_seg_push(c, MW_SEG_UINT)->u = k->u; break;
  }
}

/* One entry of map field i (bytes s, n) into the map table at t + 1. The
 * entry is read twice: first for the key (so that errors in the value have
 * the key in their path), then for the value; a message value that appears
 * more than once is merged. As upb 1.51 did, an entry with a field other
 * than key and value is dropped (after its key and value are checked), and
 * a closed enum value the enum lacks stays a number. */
static int dec_map_entry(mw_ctx *c, mw_dframe *fr, int i, const char *s,
                         size_t n) {
  lua_State *L = c->L;
  const mw_pfield *pf = &fr->pl->f[i];
  const upb_FieldDef *kf = pf->kf, *vf = pf->vf;
  upb_FieldType kt = pf->kt, vt = pf->vt;
  bool proto3 = fr->pl->proto3;
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
      if (wt != mw_wire_type[is_key ? kt : vt]) return DEC_MALFORMED;
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
    if ((rc = push_wval(c, kf, kt, &k, proto3)) < 0) return rc;
  } else {
    push_default(L, kf);
  }
  if (vt == kUpb_FieldType_Message) {
    mw_plan *sub = mw_plan_push_sub(L, fr->pl, fr->k, i);
    int sk = lua_gettop(L);
    if (nv <= 1) {
      const char *q = v.s;
      rc = dec_msg(c, sub, sk, &q, v.s + v.n, 0, 0);
    } else { /* merge every occurrence, in order */
      int into = 0;
      for (p = s; p < end;) { /* read once already: well-formed */
        uint32_t num = 0;
        int wt = 0;
        mw_wval w = {0, NULL, 0}; /* as v in dec_field: for -O3 */
        if (!(p = rd_tag(p, end, &num, &wt))) return DEC_MALFORMED;
        if (num != kUpb_MapEntry_ValueFieldNumber) {
          if (!(p = skip_value(p, end, num, wt, c->depth, &rc))) return rc;
          continue;
        }
        if (!(p = rd_value(p, end, wt, &w))) return DEC_MALFORMED;
        const char *q = w.s;
        if ((rc = dec_msg(c, sub, sk, &q, w.s + w.n, 0, into)) < 0) return rc;
        if (into)
          lua_replace(L, into);
        else
          into = lua_gettop(L);
      }
    }
    if (rc == 0) lua_remove(L, sk);
  } else if (nv) {
    rc = push_wval(c, vf, vt, &v, proto3);
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
  mw_seg_pop(c);
  return 0;
}

/* Field i (number num) with wire type wt at *pp. */
static int dec_field(mw_ctx *c, mw_dframe *fr, int i, uint32_t num, int wt,
                     const char **pp, const char *end) {
  lua_State *L = c->L;
  const char *p = *pp;
  mw_pfield *pf = &fr->pl->f[i];
  const upb_FieldDef *f = pf->f;
  upb_FieldType ft = pf->type;
  bool proto3 = fr->pl->proto3;
  int want = mw_wire_type[ft], rc = 0;
  /* Zeroed: rd_value fills only the members of the wire type it read, and
   * -O3 (CMAKE_BUILD_TYPE=Release) cannot see that a message field's
   * value is always length-delimited, so it warns, and warnings fail the
   * build. */
  mw_wval v = {0, NULL, 0};

  if (pf->kind == MW_PK_MAP) {
    const char *at = p;
    if (wt != MW_WT_LEN || !(p = rd_value(p, end, wt, &v)))
      return DEC_MALFORMED;
    open_container(c, fr, i, 0, at, end, num, wt);
    *pp = p;
    return dec_map_entry(c, fr, i, v.s, v.n);
  }
  if (pf->kind == MW_PK_ARRAY) {
    if (wt == MW_WT_LEN && pf->packed_in) { /* packed */
      if (!(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
      size_t count = 0;
      if (want == MW_WT_32BIT) {
        if (v.n % 4) return DEC_MALFORMED;
        count = v.n / 4;
      } else if (want == MW_WT_64BIT) {
        if (v.n % 8) return DEC_MALFORMED;
        count = v.n / 8;
      } else {
        for (size_t j = 0; j < v.n; j++) count += (unsigned char)v.s[j] < 0x80;
      }
      open_container(c, fr, i, count ? count : 1, NULL, NULL, 0, 0);
      for (const char *q = v.s, *e = v.s + v.n; q < e;) {
        mw_wval w;
        if (!(q = rd_value(q, e, want, &w))) return DEC_MALFORMED;
        mw_seg_index(c, (int64_t)fr->open_n + 1);
        if ((rc = push_wval(c, f, ft, &w, proto3)) < 0) return rc;
        if (rc == 0) lua_rawseti(L, fr->t + 1, ++fr->open_n);
        mw_seg_pop(c);
      }
      *pp = p;
      return 0;
    }
    if (wt != want) return DEC_MALFORMED;
    open_container(c, fr, i, 0, p, end, num, wt);
    mw_seg_index(c, (int64_t)fr->open_n + 1);
    if (ft == kUpb_FieldType_Message || ft == kUpb_FieldType_Group) {
      mw_plan *sub = mw_plan_push_sub(L, fr->pl, fr->k, i);
      int sk = lua_gettop(L);
      if (ft == kUpb_FieldType_Group) {
        rc = dec_msg(c, sub, sk, &p, end, num, 0);
      } else {
        if (!(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
        const char *q = v.s;
        rc = dec_msg(c, sub, sk, &q, v.s + v.n, 0, 0);
      }
      if (rc == 0) lua_remove(L, sk);
    } else {
      if (!(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
      rc = push_wval(c, f, ft, &v, proto3);
    }
    if (rc < 0) return rc;
    if (rc == 0) lua_rawseti(L, fr->t + 1, ++fr->open_n);
    mw_seg_pop(c);
    *pp = p;
    return 0;
  }

  if (wt != want) return DEC_MALFORMED;
  const upb_OneofDef *o = pf->o;
  if (pf->kind == MW_PK_MESSAGE) {
    if (o) clear_oneof(c, fr, o, i);
    fr_key(L, fr, i);
    int key = lua_gettop(L);
    /* A message field seen again is merged into the table it has. */
    int into = 0;
    if (fr->merging || fr_seen(fr, (uint32_t)i)) {
      lua_pushvalue(L, key);
      if (lua_rawget(L, fr->t) == LUA_TTABLE)
        into = lua_gettop(L);
      else
        lua_pop(L, 1);
    }
    mw_plan *sub = mw_plan_push_sub(L, fr->pl, fr->k, i);
    int sk = lua_gettop(L);
    if (ft == kUpb_FieldType_Group) {
      rc = dec_msg(c, sub, sk, &p, end, num, into);
    } else {
      if (!(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
      const char *q = v.s;
      rc = dec_msg(c, sub, sk, &q, v.s + v.n, 0, into);
    }
    if (rc < 0) return rc;
    lua_copy(L, -1, key + 1);
    lua_settop(L, key + 1);
    lua_rawset(L, fr->t);
  } else {
    if (!(p = rd_value(p, end, wt, &v))) return DEC_MALFORMED;
    fr_key(L, fr, i);
    if ((rc = push_wval(c, f, ft, &v, proto3)) < 0) return rc;
    if (rc == 1) { /* dropped closed-enum number: nothing changes */
      lua_pop(L, 1);
      *pp = p;
      return 0;
    }
    if (o) {
      /* clear_oneof leaves the stack as it is */
      clear_oneof(c, fr, o, i);
    }
    lua_rawset(L, fr->t);
  }
  fr_mark(fr, (uint32_t)i);
  *pp = p;
  return 0;
}

/* The fields at *pp up to end, or up to the end tag of group number group
 * (which must come). */
static int dec_fields(mw_ctx *c, mw_dframe *fr, const char **pp,
                      const char *end, uint32_t group) {
  const char *p = *pp;
  const mw_plan *pl = fr->pl;
  while (p < end) {
    uint32_t num;
    int wt, rc = 0;
    if (!(p = rd_tag(p, end, &num, &wt))) return DEC_MALFORMED;
    if (wt == MW_WT_EGROUP) {
      if (num != group) return DEC_MALFORMED;
      *pp = p;
      return 0;
    }
    int i = mw_plan_find(pl, num, fr->last);
    if (i >= 0) fr->last = i;
    if (i < 0 ||
        !(wt == pl->f[i].wt || (wt == MW_WT_LEN && pl->f[i].packed_in))) {
      /* Unknown fields are skipped, and so is a known number with a wire
       * type its field cannot have (a peer whose schema changed the
       * field's type), as protobuf's own parsers do. */
      if (!(p = skip_value(p, end, num, wt, c->depth, &rc))) return rc;
      continue;
    }
    mw_seg_field(c, pl->f[i].f);
    if ((rc = dec_field(c, fr, i, num, wt, &p, end)) < 0) return rc;
    mw_seg_pop(c);
  }
  if (group) return DEC_MALFORMED;
  *pp = p;
  return 0;
}

/* The fields of pl's message into a new table (extra: more hash slots) or,
 * with into, into the table at that index; either way the table is left on
 * top. k is the plan's key table. Fields without presence that are not on
 * the wire get their defaults in a new table. */
static int dec_body(mw_ctx *c, mw_plan *pl, int k, const char **pp,
                    const char *end, uint32_t group, int into, int extra) {
  lua_State *L = c->L;
  int n = pl->n;
  size_t words = ((size_t)n + 63) / 64;
  mw_dframe fr;
  fr.pl = pl;
  fr.k = k;
  fr.merging = into != 0;
  fr.open_i = -1;
  fr.open_n = 0;
  fr.last = -1;
  if (words <= sizeof fr.seen0 / sizeof fr.seen0[0]) {
    fr.seen = fr.seen0;
  } else {
    upb_Arena *a = mw_ctx_arena(c);
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
    if (!pl->f[i].dflt || fr_seen(&fr, (uint32_t)i)) continue;
    fr_key(L, &fr, i);
    push_plan_default(L, &pl->f[i]);
    lua_rawset(L, fr.t);
  }
  return 0;
}

/* google.protobuf.Any: its two fields are read, then the value is unpacked
 * when the type is in the pool. With into (an Any seen before in the same
 * field) the fields merge as upb merged them: each one the wire lacks is
 * taken from the earlier table. */
static int dec_any(mw_ctx *c, const mw_plan *pl, const char *p,
                   const char *end, int into) {
  lua_State *L = c->L;
  const upb_MessageDef *m = pl->m;
  bool proto3 = pl->proto3;
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
      if (wt != MW_WT_LEN || !(p = rd_value(p, end, wt, &v)))
        return DEC_MALFORMED;
      if (num == kUpb_Any_TypeFieldNumber) {
        if (proto3 && !mw_codec_utf8_valid(v.s, v.n)) return DEC_BADUTF8;
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
    /* The strings taken stay anchored in the earlier table at into (a
     * plain one, see mw_codec_any_plain, keeps them as type_url, value). */
    int plain = lua_getfield(L, into, "@type") != LUA_TSTRING;
    if (plain) {
      lua_pop(L, 1);
      lua_getfield(L, into, "type_url");
    }
    size_t olen = 0;
    const char *old =
        lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &olen) : "";
    lua_pop(L, 1);
    if (!has_url) {
      url = old;
      ulen = olen;
    }
    if (!has_val) {
      if (lua_getfield(L, into, plain ? "value" : "@value") == LUA_TSTRING) {
        val = lua_tolstring(L, -1, &vlen);
      } else if (ulen == olen && memcmp(url, old, ulen) == 0) {
        lua_pop(L, 1); /* same type, value unpacked before: no change */
        lua_pushvalue(L, into);
        return 0;
      } /* else the unpacked value's bytes are gone: the new type is empty */
      lua_pop(L, 1);
    }
  }
  if (mw_codec_any_plain(url, ulen)) {
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, url, ulen);
    lua_setfield(L, -2, "type_url");
    lua_pushlstring(L, val, vlen);
    lua_setfield(L, -2, "value");
    return 0;
  }
  size_t nlen;
  const char *name = mw_codec_any_type_name(url, ulen, &nlen);
  const upb_MessageDef *packed = nlen ? upb_DefPool_FindMessageByNameWithSize(
                                            mw_codec_pool_of(m), name, nlen)
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
    mw_plan *ppl = mw_plan_push(L, packed);
    int pk = lua_gettop(L);
    mw_seg_name(c, "value", 5);
    rc = dec_msg(c, ppl, pk, &q, val + vlen, 0, 0);
    if (rc == 0) {
      lua_remove(L, pk);
      lua_setfield(L, -2, "value");
    }
  } else {
    mw_plan *ppl = mw_plan_push(L, packed);
    int pk = lua_gettop(L);
    rc = dec_body(c, ppl, pk, &q, val + vlen, 0, 0, 1);
    if (rc == 0) lua_remove(L, pk);
  }
  c->nseg = nseg;
  if (rc < -1)
    return mw_codec_fail(c, "cannot unpack google.protobuf.Any of type %s: %s",
                         upb_MessageDef_FullName(packed), dec_status_str(rc));
  if (rc < 0) return rc;
  lua_pushlstring(L, url, ulen);
  lua_setfield(L, -2, "@type");
  return 0;
}

/* A message of pl's type at *pp (up to end, or to the end tag of group
 * number group): its table is pushed (or the one at into, merged into). */
static int dec_msg(mw_ctx *c, mw_plan *pl, int k, const char **pp,
                   const char *end, uint32_t group, int into) {
  if (++c->depth > MW_CODEC_MAX_DEPTH)
    return mw_codec_fail(c, "message nesting deeper than %d",
                         MW_CODEC_MAX_DEPTH);
  if (!lua_checkstack(c->L, 16)) return mw_codec_fail(c, "Lua stack overflow");
  int rc;
  if (group == 0 && pl->any) {
    rc = dec_any(c, pl, *pp, end, into);
    *pp = end;
  } else {
    rc = dec_body(c, pl, k, pp, end, group, into, 0);
  }
  c->depth--;
  return rc;
}

/* ---- public API -------------------------------------------------------- */

int mw_codec_decode_push(lua_State *L, const char *buf, size_t len,
                         const upb_MessageDef *m, upb_Arena *a, char *err,
                         size_t errlen) {
  char inner[MW_CODEC_ERRLEN];
  mw_ctx c;
  mw_ctx_init(&c, L, a, inner, sizeof inner);
  int top = lua_gettop(L);
  const char *p = buf ? buf : "";
  if (!lua_checkstack(L, 4)) {
    if (err && errlen)
      snprintf(err, errlen, "cannot decode %s: Lua stack overflow",
               upb_MessageDef_FullName(m));
    return -1;
  }
  mw_plan *pl = mw_plan_push(L, m);
  int rc = dec_msg(&c, pl, top + 1, &p, p + len, 0, 0);
  if (c.own_arena) upb_Arena_Free(c.own_arena);
  if (rc == 0) {
    lua_replace(L, top + 1); /* the table, where the plan's keys were */
    return 0;
  }
  lua_settop(L, top);
  if (err && errlen)
    snprintf(err, errlen, "cannot decode %s: %s", upb_MessageDef_FullName(m),
             rc == -1 ? inner : dec_status_str(rc));
  return -1;
}
