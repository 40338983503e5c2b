/* Plans of message types, built once per Lua state and schema epoch (see
 * mw_codec_plan.h for where they live and why they stay valid). */
#include "codec/mw_codec_plan.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

#include "codec/mw_codec_internal.h"
#include "schema/mw_schema.h"

/* The registry holds the cache (under a short string key): a userdata with
 * the epoch its table of plans (message address -> key table, its
 * uservalue) was filled in, and the registry reference that holds the key
 * table of the plan found last, which most lookups want again (a request
 * and its reply, a stream's messages). */
#define CACHE_KEY "mw.plans"

typedef struct {
  unsigned epoch;
  int last_ref;     /* registry index of the last plan's key table */
  unsigned version; /* changes with what last_ref holds */
} mw_plan_cache;

/* Caches that went, with their states: a thread's memo (below) of a state
 * is good only while none went, as a later state may get a gone one's
 * registry address. */
static atomic_uint caches_gone;

/* The plan found last on this thread, to find it again without a lookup by
 * name in the registry: good while its state (known by the address of its
 * registry) lives, its cache's last_ref still holds that plan's key table
 * and the schema epoch is the one it was found in. */
static _Thread_local struct {
  const void *registry;
  mw_plan_cache *pc;
  unsigned version, epoch, gone;
  const upb_MessageDef *m;
  mw_plan *p;
} memo;

static int cache_gc(lua_State *L) {
  (void)L;
  atomic_fetch_add_explicit(&caches_gone, 1, memory_order_acq_rel);
  return 0;
}

static void fill_field(mw_plan *p, int i, const upb_FieldDef *f) {
  mw_pfield *pf = &p->f[i];
  upb_FieldType ft = upb_FieldDef_Type(f);
  pf->f = f;
  pf->num = upb_FieldDef_Number(f);
  pf->type = (uint8_t)ft;
  pf->o = upb_FieldDef_RealContainingOneof(f);
  pf->oneof_bit = -1;
  if (pf->o) {
    uint32_t bit = upb_OneofDef_Index(pf->o);
    if (bit < 64)
      pf->oneof_bit = (int16_t)bit;
    else
      p->wide_oneofs = true;
  }
  pf->sub = NULL;
  pf->subplan = NULL;
  pf->kf = pf->vf = NULL;
  pf->kt = pf->vt = 0;
  pf->enum_zero = NULL;
  pf->packed_in = pf->packed_out = false;
  if (upb_FieldDef_IsMap(f)) {
    pf->kind = MW_PK_MAP;
    pf->wt = MW_WT_LEN;
    mw_codec_map_fields(f, &pf->kf, &pf->vf);
    pf->kt = (uint8_t)upb_FieldDef_Type(pf->kf);
    pf->vt = (uint8_t)upb_FieldDef_Type(pf->vf);
    if (pf->vt == kUpb_FieldType_Message)
      pf->sub = upb_FieldDef_MessageSubDef(pf->vf);
  } else {
    pf->wt = mw_wire_type[ft];
    if (upb_FieldDef_IsRepeated(f)) {
      pf->kind = MW_PK_ARRAY;
      pf->packed_in = mw_codec_packable(ft);
      pf->packed_out = pf->packed_in && upb_FieldDef_IsPacked(f);
    } else {
      pf->kind = upb_FieldDef_IsSubMessage(f) ? MW_PK_MESSAGE : MW_PK_SCALAR;
    }
    if (upb_FieldDef_IsSubMessage(f)) pf->sub = upb_FieldDef_MessageSubDef(f);
  }
  if (ft == kUpb_FieldType_Enum) {
    const upb_EnumDef *e = upb_FieldDef_EnumSubDef(f);
    const upb_EnumValueDef *ev = upb_EnumDef_FindValueByNumber(e, 0);
    pf->enum_zero = ev ? upb_EnumValueDef_Name(ev) : NULL;
  }
  /* Presence: proto3 scalars outside any oneof (a proto3 optional has a
   * synthetic one) have none: their defaults are not written, and a table
   * decoded without them gets them. Repeated fields and maps come out as
   * empty tables. */
  bool none = p->proto3 && !upb_FieldDef_ContainingOneof(f);
  pf->implicit = none && pf->kind == MW_PK_SCALAR;
  pf->dflt = pf->kind == MW_PK_ARRAY || pf->kind == MW_PK_MAP || pf->implicit;
}

/* Builds m's plan: pushes its key table. */
static mw_plan *build(lua_State *L, const upb_MessageDef *m, unsigned epoch) {
  int n = upb_MessageDef_FieldCount(m);
  uint32_t nslots = 4;
  while (nslots < 2 * (uint32_t)n) nslots *= 2;
  size_t size = offsetof(mw_plan, f) + (size_t)n * sizeof(mw_pfield) +
                (size_t)n * sizeof(uint32_t) + nslots * sizeof(int32_t);
  luaL_checkstack(L, 4, "codec plan");
  mw_plan *p = lua_newuserdatauv(L, size, 0);
  uint32_t *order = (uint32_t *)(void *)(p->f + n);
  int32_t *slots = (int32_t *)(void *)(order + n);
  memset(slots, 0, nslots * sizeof *slots);
  p->slots = slots;
  p->slot_mask = nslots - 1;
  p->m = m;
  p->epoch = epoch;
  p->n = n;
  p->proto3 = upb_MessageDef_Syntax(m) == kUpb_Syntax_Proto3;
  p->any = upb_MessageDef_WellKnownType(m) == kUpb_WellKnown_Any;
  p->wide_oneofs = false;
  p->order = order;
  lua_createtable(L, 2 * n + 1, 0);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 1);
  lua_remove(L, -2);
  for (int i = 0; i < n; i++) {
    const upb_FieldDef *f = upb_MessageDef_Field(m, i);
    fill_field(p, i, f);
    lua_pushstring(L, upb_FieldDef_Name(f));
    p->f[i].key = lua_topointer(L, -1);
    lua_rawseti(L, -2, MW_PLAN_KEY(i));
    uint32_t h = (uint32_t)(((uint64_t)(uintptr_t)p->f[i].key *
                             UINT64_C(0x9E3779B97F4A7C15)) >> 40);
    while (slots[h & p->slot_mask]) h++;
    slots[h & p->slot_mask] = i + 1;
    /* insertion by number: built once, and fields are mostly in order */
    int j = i;
    for (; j > 0 && p->f[order[j - 1]].num > p->f[i].num; j--) order[j] = order[j - 1];
    order[j] = (uint32_t)i;
  }
  return p;
}

/* Pushes the state's cache, made on first use. */
static mw_plan_cache *cache_push(lua_State *L, unsigned epoch) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, CACHE_KEY) == LUA_TUSERDATA)
    return lua_touserdata(L, -1);
  lua_pop(L, 1);
  mw_plan_cache *pc = lua_newuserdatauv(L, sizeof *pc, 1);
  pc->epoch = epoch + 1; /* its table is made by the first lookup */
  pc->version = 0;
  lua_pushboolean(L, 0);
  pc->last_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, cache_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, CACHE_KEY);
  return pc;
}

/* The plan of m from the cache at the top (a miss: built and added), its
 * key table pushed, the cache emptied first if the epoch changed. */
static mw_plan *lookup(lua_State *L, mw_plan_cache *pc, const upb_MessageDef *m,
                       unsigned epoch) {
  if (pc->epoch != epoch) {
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    pc->epoch = epoch;
  }
  mw_plan *p;
  lua_getiuservalue(L, -1, 1);
  if (lua_rawgetp(L, -1, m) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 1);
    p = lua_touserdata(L, -1);
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
    p = build(L, m, epoch);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, -3, m);
  }
  lua_replace(L, -2); /* cache, K */
  return p;
}

mw_plan *mw_plan_push(lua_State *L, const upb_MessageDef *m) {
  unsigned epoch = mw_schema_epoch();
  unsigned gone = atomic_load_explicit(&caches_gone, memory_order_acquire);
  const void *registry = lua_topointer(L, LUA_REGISTRYINDEX);
  /* Callers leave room for the key table and two more values. */
  if (memo.registry == registry && memo.m == m && memo.epoch == epoch &&
      memo.gone == gone && memo.pc->version == memo.version) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, memo.pc->last_ref);
    return memo.p;
  }
  luaL_checkstack(L, 6, "codec plan");
  mw_plan_cache *pc = cache_push(L, epoch);
  mw_plan *p = NULL;
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, pc->last_ref) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 1);
    p = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (p->m != m || p->epoch != epoch) p = NULL;
  }
  if (p) {
    lua_replace(L, -2);
  } else {
    lua_pop(L, 1);
    p = lookup(L, pc, m, epoch);
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, pc->last_ref);
    pc->version++;
    lua_replace(L, -2);
  }
  memo.registry = registry;
  memo.pc = pc;
  memo.version = pc->version;
  memo.epoch = epoch;
  memo.gone = gone;
  memo.m = m;
  memo.p = p;
  return p;
}
