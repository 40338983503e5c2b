/* What the files of codec/ share and nothing outside codec/ includes: the
 * context of one conversion (the path of the value being converted, the
 * error buffer, the encoder's output), the checks that turn a Lua value
 * into a field's value for both Lua -> X paths (convert.c), and the wire
 * types the decoder and the encoder share.
 *
 * Errors never raise a Lua error: they are formatted into the caller's
 * buffer together with the path of the offending value
 * ("items[2].inner.x"), which is kept as a small stack of segments in the
 * context and only rendered when something goes wrong. The public functions
 * reset the Lua stack to where it was on failure, so the helpers may return
 * early with values still pushed.
 *
 * What decode.c and encode.c call for every value (the path segments, the
 * context, UTF-8 validation) is static inline here, so that the hot paths
 * never call into another file for it. */
#ifndef MW_CODEC_INTERNAL_H
#define MW_CODEC_INTERNAL_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lua.h>

#include "codec/mw_codec.h"
#include "upb/arena.h"
#include "upb/def.h"
#include "upb/message_value.h"

/* Nesting limit in both directions (upb's decoder default is also 100); it
 * also stops a self-referencing Lua table. */
#define MW_CODEC_MAX_DEPTH 100
/* Each level pushes at most a field and an index/key segment. */
#define MW_CODEC_MAX_SEGS (2 * MW_CODEC_MAX_DEPTH + 8)

/* Put in front of a google.protobuf.Any type given without a '/'. */
#define MW_CODEC_ANY_PREFIX "type.googleapis.com/"

/* ---- context ----------------------------------------------------------- */

enum {
  MW_SEG_NAME,  /* field name (or an unknown key): s, len */
  MW_SEG_FIELD, /* field f; its name is only looked up to render a path */
  MW_SEG_INDEX, /* array index, 1-based like Lua: i */
  MW_SEG_STR,   /* string map key: s, len */
  MW_SEG_INT,   /* signed integer map key: i */
  MW_SEG_UINT,  /* unsigned integer map key: u */
  MW_SEG_BOOL,  /* bool map key: i */
  MW_SEG_OTHER  /* a Lua key of another type: s = type name */
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
  /* encoder (encode.c) only */
  bool slow; /* the lua_next path, for the error to report (encode.c) */
  mw_wbuf out;
  mw_ent *ents; /* a stack shared by the nested tables: ent0, then arena */
  size_t nent, ent_cap;
  mw_ent ent0[MW_CODEC_ENTS];
  mw_seg spare; /* written past the limit, never rendered */
  mw_seg seg[MW_CODEC_MAX_SEGS];
} mw_ctx;

/* The key and value fields of a map field's entry type. */
static inline void mw_codec_map_fields(const upb_FieldDef *f, const upb_FieldDef **kf,
                                       const upb_FieldDef **vf) {
  const upb_MessageDef *entry = upb_FieldDef_MessageSubDef(f);
  *kf = upb_MessageDef_FindFieldByNumber(entry, kUpb_MapEntry_KeyFieldNumber);
  *vf = upb_MessageDef_FindFieldByNumber(entry, kUpb_MapEntry_ValueFieldNumber);
}

static inline void mw_ctx_init(mw_ctx *c, lua_State *L, upb_Arena *a, char *err,
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

static inline upb_Arena *mw_ctx_arena(mw_ctx *c) {
  if (!c->arena) c->arena = c->own_arena = upb_Arena_New();
  return c->arena;
}

/* ---- paths and errors (convert.c) -------------------------------------- */

static inline mw_seg *mw_seg_push(mw_ctx *c, int kind) {
  mw_seg *s = c->nseg < MW_CODEC_MAX_SEGS ? &c->seg[c->nseg] : &c->spare;
  c->nseg++;
  s->kind = kind;
  return s;
}

static inline void mw_seg_name(mw_ctx *c, const char *name, size_t len) {
  mw_seg *s = mw_seg_push(c, MW_SEG_NAME);
  s->s = name;
  s->len = len;
}

/* upb_FieldDef_Name is a strrchr over the full name, so it is deferred. */
static inline void mw_seg_field(mw_ctx *c, const upb_FieldDef *f) {
  mw_seg_push(c, MW_SEG_FIELD)->f = f;
}

static inline void mw_seg_index(mw_ctx *c, int64_t i) {
  mw_seg_push(c, MW_SEG_INDEX)->i = i;
}

static inline void mw_seg_pop(mw_ctx *c) { c->nseg--; }

/* The map key or array key at Lua index idx. */
void mw_seg_lua_key(mw_ctx *c, int idx);

/* "field 'path': message", or just the message at the top level. Returns
 * -1, so that callers can return it. */
int mw_codec_fail(mw_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "unknown field 'path.key' in message pkg.Msg"; returns -1. */
int mw_codec_fail_unknown(mw_ctx *c, const char *key, size_t len,
                          const upb_MessageDef *m);

static inline int mw_codec_fail_oom(mw_ctx *c) {
  c->oom = true;
  return mw_codec_fail(c, "out of memory");
}

/* ---- values (convert.c) ------------------------------------------------ */

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
 * Every string field is checked, both ways: defined here so that the
 * decoder and the encoder each have it in their own file, next to the
 * loops that call it, where the compiler sees what it touches. */
static inline bool mw_codec_utf8_valid(const char *str, size_t n) {
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

/* The message name of a type URL: what follows the last '/'. */
static inline const char *mw_codec_any_type_name(const char *url, size_t len,
                                                 size_t *nlen) {
  size_t i = len;
  while (i > 0 && url[i - 1] != '/') i--;
  *nlen = len - i;
  return url + i;
}

/* Whether an Any with this type_url comes out as the plain message
 * {type_url, value}: a url without '/' is no type URL (protobuf unpacks
 * nothing from it), and as "@type" it would go back out with
 * MW_CODEC_ANY_PREFIX in front, so the bytes would not round-trip. */
static inline bool mw_codec_any_plain(const char *url, size_t len) {
  return len > 0 && !memchr(url, '/', len);
}

static inline const upb_DefPool *mw_codec_pool_of(const upb_MessageDef *m) {
  return upb_FileDef_Pool(upb_MessageDef_File(m));
}

/* A uint64 as a Lua integer, or as its decimal string above INT64_MAX. */
static inline void mw_codec_push_u64(lua_State *L, uint64_t v) {
  if (v <= (uint64_t)INT64_MAX) {
    lua_pushinteger(L, (lua_Integer)v);
  } else {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    lua_pushstring(L, buf);
  }
}

/* Whether the Lua value at idx is the string lit (len bytes). */
bool mw_codec_key_is(lua_State *L, int idx, const char *lit, size_t len);

/* Makes a Lua string safe to keep in a message: with copy_strings the
 * bytes are copied into the arena (the table may be collected afterwards). */
int mw_codec_take_string(mw_ctx *c, const char *s, size_t n,
                         upb_StringView *out);

/* Converts the Lua value at vi for (one element of) field f, with the
 * checks of mw_codec.h; a message field is each path's own business. */
int mw_codec_to_value(mw_ctx *c, const upb_FieldDef *f, int vi,
                      upb_MessageValue *out);

/* Checks that the table at t is a sequence 1..n for repeated field f and
 * sets *len. Returns 0, or -1 with the error set. */
int mw_codec_check_sequence(mw_ctx *c, const upb_FieldDef *f, int t,
                            lua_Unsigned *len);

/* The Lua side of a google.protobuf.Any: "@type" (on top of the stack,
 * popped) and either "@value" (raw bytes, alone) or the packed message's
 * fields, whose type must then be in the pool. */
typedef struct {
  const char *url;              /* anchored in the table */
  size_t ulen, nlen;            /* nlen: the message name's length within url */
  const upb_MessageDef *packed; /* NULL when not in the pool */
  const char *value;            /* "@value", anchored in the table, or NULL */
  size_t vlen;
} mw_any_table;

int mw_codec_read_any_table(mw_ctx *c, const upb_MessageDef *m, int t,
                            mw_any_table *a);

/* A table packing an Any in an Any has "@type" and "value" (the inner Any,
 * as in JSON) and nothing else. Returns 0, or -1 with the error set. */
int mw_codec_check_any_in_any_keys(mw_ctx *c, int t, const upb_MessageDef *m);

/* ---- wire format (decode.c, encode.c) ---------------------------------- */

enum {
  MW_WT_VARINT = 0,
  MW_WT_64BIT = 1,
  MW_WT_LEN = 2,
  MW_WT_SGROUP = 3,
  MW_WT_EGROUP = 4,
  MW_WT_32BIT = 5
};

/* The wire type of each field type (index: upb_FieldType, 1..18). */
static const uint8_t mw_wire_type[19] = {
    [kUpb_FieldType_Double] = MW_WT_64BIT,
    [kUpb_FieldType_Float] = MW_WT_32BIT,
    [kUpb_FieldType_Int64] = MW_WT_VARINT,
    [kUpb_FieldType_UInt64] = MW_WT_VARINT,
    [kUpb_FieldType_Int32] = MW_WT_VARINT,
    [kUpb_FieldType_Fixed64] = MW_WT_64BIT,
    [kUpb_FieldType_Fixed32] = MW_WT_32BIT,
    [kUpb_FieldType_Bool] = MW_WT_VARINT,
    [kUpb_FieldType_String] = MW_WT_LEN,
    [kUpb_FieldType_Group] = MW_WT_SGROUP,
    [kUpb_FieldType_Message] = MW_WT_LEN,
    [kUpb_FieldType_Bytes] = MW_WT_LEN,
    [kUpb_FieldType_UInt32] = MW_WT_VARINT,
    [kUpb_FieldType_Enum] = MW_WT_VARINT,
    [kUpb_FieldType_SFixed32] = MW_WT_32BIT,
    [kUpb_FieldType_SFixed64] = MW_WT_64BIT,
    [kUpb_FieldType_SInt32] = MW_WT_VARINT,
    [kUpb_FieldType_SInt64] = MW_WT_VARINT,
};

/* Scalars other than strings and bytes may be packed. */
static inline bool mw_codec_packable(upb_FieldType ft) {
  return mw_wire_type[ft] != MW_WT_LEN && ft != kUpb_FieldType_Group;
}

#endif
