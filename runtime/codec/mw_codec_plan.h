/* The compiled plan of a message type, for decode.c and encode.c (nothing
 * outside codec/ includes it): what the descriptors say about each field
 * (number, type, wire type, presence, oneof, sub-message), read once per
 * message type instead of through upb's accessors for every field of every
 * message, and the field names as Lua strings: tables are written with
 * lua_rawset and ready keys, and a table's keys are found among the fields
 * by their string's address instead of by hashing the name.
 *
 * Plans live in the Lua state, so each state has its own strings: the
 * registry holds a cache (with the schema epoch it was filled in, see
 * schema/mw_schema.h) whose table maps a upb_MessageDef's address to the
 * plan's key table K, and the K found last:
 *   K[1]              the plan (a full userdata holding the mw_plan)
 *   K[MW_PLAN_KEY(i)] the name of field i (upb's field index) as a string
 *   K[MW_PLAN_SUB(p, i)] the key table of field i's message type (for a
 *                     map, its value's type), once it has been needed
 * A change of epoch (a schema was freed, so a later pool may have a message
 * at an address the cache knows) empties the cache before the next lookup,
 * and the K found last is taken only for a plan of the current epoch.
 * Plans themselves are never changed but for linking a sub-message's plan
 * the first time it is needed, so one in use stays valid: its K on the Lua
 * stack keeps it and every plan it links to alive, and they all belong to
 * the same live pool. */
#ifndef MW_CODEC_PLAN_H
#define MW_CODEC_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "upb/def.h"

enum {
  MW_PK_SCALAR, /* singular scalar, string, bytes or enum */
  MW_PK_MESSAGE, /* singular message or group */
  MW_PK_ARRAY,   /* repeated, not a map */
  MW_PK_MAP
};

typedef struct mw_plan mw_plan;

typedef struct {
  const upb_FieldDef *f;
  const void *key;            /* its name's Lua string (lua_topointer) */
  const upb_OneofDef *o;      /* its real oneof (not a synthetic one), if any */
  const upb_MessageDef *sub;  /* message or group type; a map's value type */
  mw_plan *subplan;           /* sub's plan, linked on first use */
  const upb_FieldDef *kf, *vf; /* a map entry's key and value fields */
  const char *enum_zero;      /* an enum's value 0's name, or NULL */
  uint32_t num;
  uint8_t type;     /* upb_FieldType */
  uint8_t kind;     /* MW_PK_* */
  uint8_t wt;       /* its wire type (LEN for maps) */
  uint8_t kt, vt;   /* a map's key and value upb_FieldType */
  bool packed_in;   /* repeated and packable: a LEN run is read as packed */
  bool packed_out;  /* written packed */
  bool implicit;    /* proto3 without presence: a default is not written */
  bool dflt;        /* decode: a table lacking it gets its default */
  int16_t oneof_bit; /* bit of its real oneof in a 64-bit mask, or -1 */
} mw_pfield;

struct mw_plan {
  const upb_MessageDef *m;
  unsigned epoch;   /* mw_schema_epoch() when it was built */
  int n;            /* fields */
  bool proto3;
  bool any;         /* google.protobuf.Any */
  bool wide_oneofs; /* more real oneofs than a mask holds: encode the old way */
  const uint32_t *order; /* field indexes in field-number order */
  const int32_t *slots;  /* field index + 1 by the address of its name's
                            string (open addressing; 0: empty) */
  uint32_t slot_mask;
  mw_pfield f[];    /* by upb's field index */
};

#define MW_PLAN_KEY(i) ((lua_Integer)(i) + 2)
#define MW_PLAN_SUB(p, i) ((lua_Integer)(p)->n + 2 + (lua_Integer)(i))

/* The plan of m, its key table K pushed (building and caching it on first
 * use). The caller leaves room on the Lua stack for three values. Raises a
 * Lua error only for want of memory. */
mw_plan *mw_plan_push(lua_State *L, const upb_MessageDef *m);

/* The plan of field i's message type (p's K at index k): its K pushed. */
static inline mw_plan *mw_plan_push_sub(lua_State *L, mw_plan *p, int k, int i) {
  mw_plan *s = p->f[i].subplan;
  if (s) {
    lua_rawgeti(L, k, MW_PLAN_SUB(p, i));
    return s;
  }
  s = mw_plan_push(L, p->f[i].sub);
  lua_pushvalue(L, -1);
  lua_rawseti(L, k, MW_PLAN_SUB(p, i));
  p->f[i].subplan = s;
  return s;
}

/* The field whose name is the Lua string at address key (lua_topointer),
 * or -1. Short strings are interned, so a key of a table equal to a field's
 * name is that very string (K keeps it alive); a name longer than Lua's
 * short strings, or a key of another type, is not found here. */
static inline int mw_plan_by_key(const mw_plan *p, const void *key) {
  uint32_t h = (uint32_t)(((uint64_t)(uintptr_t)key * UINT64_C(0x9E3779B97F4A7C15)) >> 40);
  for (;; h++) {
    int32_t s = p->slots[h & p->slot_mask];
    if (s == 0) return -1;
    if (p->f[s - 1].key == key) return s - 1;
  }
}

/* The index of the field numbered num (-1: none); hint is the field read
 * last (-1: none): fields mostly come in declaration order, and repeated
 * ones in runs, so it and the one after it are tried first. */
static inline int mw_plan_find(const mw_plan *p, uint32_t num, int hint) {
  if (hint >= 0) {
    if (p->f[hint].num == num) return hint;
    if (hint + 1 < p->n && p->f[hint + 1].num == num) return hint + 1;
  }
  int lo = 0, hi = p->n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    uint32_t i = p->order[mid], x = p->f[i].num;
    if (x == num) return (int)i;
    if (x < num)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

#endif
