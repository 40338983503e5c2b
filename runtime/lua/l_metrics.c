/* Metrics declared by scripts (mw.metrics, lua/moonwire/metrics.lua), on
 * the registry of metrics/mw_metrics.h:
 *   core.metric_declare(type, name, help, labels, buckets) -> family
 *       type "counter" | "gauge" | "histogram"; labels an array of names;
 *       buckets an array or nil (DefBuckets). Raises on a bad name or a
 *       shape different from an earlier declaration of the same name (in
 *       any worker or generation: the registry is the process's).
 *   family:inc([labels]), family:add(v [, labels]), family:dec([labels]),
 *   family:set(v [, labels]), family:observe(v [, labels])
 *       labels: a table by name ({method = "x"}) or by position ({"x"}).
 * The family userdata caches its series per Lua state (its user value maps
 * the joined label values to the series), so after the first use an
 * update takes no lock. With the admin listener off there is no registry:
 * families are declared on a private one (names and shapes are still
 * checked) and updates return at once. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/l_api.h"
#include "metrics/mw_metrics.h"

#define MW_MT_METRIC "moonwire.metric"

typedef struct lfamily {
  mw_met_family *f;
  mw_metrics *r; /* the registry f is on: updates count only when it is current */
  mw_met_type type;
} lfamily;

/* The registry families go to when metrics are off: kept for the process,
 * reachable from this pointer. */
static mw_metrics *scratch;
static pthread_mutex_t scratch_mu = PTHREAD_MUTEX_INITIALIZER;

static mw_metrics *registry(void) {
  mw_metrics *r = mw_metrics_current();
  if (r) return r;
  pthread_mutex_lock(&scratch_mu);
  if (!scratch) scratch = mw_metrics_new(0, 0);
  r = scratch;
  pthread_mutex_unlock(&scratch_mu);
  return r;
}

static int l_metric_declare(lua_State *L) {
  static const char *const types[] = {"counter", "gauge", "histogram", NULL};
  int type = luaL_checkoption(L, 1, NULL, types);
  const char *name = luaL_checkstring(L, 2);
  const char *help = luaL_optstring(L, 3, "");
  const char *labels[MW_MET_MAX_LABELS];
  size_t nl = 0;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    nl = (size_t)lua_rawlen(L, 4);
    if (nl > MW_MET_MAX_LABELS) return luaL_error(L, "%s: at most %d labels", name, MW_MET_MAX_LABELS);
    for (size_t i = 0; i < nl; i++) {
      lua_rawgeti(L, 4, (lua_Integer)i + 1);
      if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "%s: label names must be strings", name);
      labels[i] = lua_tostring(L, -1); /* anchored by the table */
      lua_pop(L, 1);
    }
  }
  double buckets[MW_MET_MAX_BUCKETS];
  size_t nb = 0;
  if (type == MW_MET_HISTOGRAM && !lua_isnoneornil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    nb = (size_t)lua_rawlen(L, 5);
    if (nb == 0 || nb > MW_MET_MAX_BUCKETS)
      return luaL_error(L, "%s: between 1 and %d buckets", name, MW_MET_MAX_BUCKETS);
    for (size_t i = 0; i < nb; i++) {
      lua_rawgeti(L, 5, (lua_Integer)i + 1);
      int isnum;
      buckets[i] = lua_tonumberx(L, -1, &isnum);
      lua_pop(L, 1);
      if (!isnum) return luaL_error(L, "%s: buckets must be numbers", name);
    }
  }
  mw_metrics *r = registry();
  if (!r) return luaL_error(L, "out of memory");
  char err[256];
  mw_met_family *f = mw_metrics_family(r, (mw_met_type)type, name, help, labels, nl,
                                       nb ? buckets : NULL, nb, err, sizeof err);
  if (!f) return luaL_error(L, "%s", err);
  lfamily *lf = lua_newuserdatauv(L, sizeof *lf, 1);
  lf->f = f;
  lf->r = r;
  lf->type = (mw_met_type)type;
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, MW_MT_METRIC);
  return 1;
}

/* The series for the labels at idx (or none), from the family's cache. */
static mw_met_series *series_of(lua_State *L, lfamily *lf, int fidx, int idx) {
  size_t n = mw_met_family_nlabels(lf->f);
  if (n == 0) {
    if (!lua_isnoneornil(L, idx) && !(lua_istable(L, idx) && lua_rawlen(L, idx) == 0))
      luaL_checktype(L, idx, LUA_TTABLE);
  } else {
    luaL_checktype(L, idx, LUA_TTABLE);
  }
  const char *vals[MW_MET_MAX_LABELS];
  size_t lens[MW_MET_MAX_LABELS];
  int base = lua_gettop(L);
  int by_pos = n > 0 && lua_rawlen(L, idx) > 0;
  /* The values stay on the stack (anchored) until the series is found. */
  for (size_t i = 0; i < n; i++) {
    if (by_pos) lua_rawgeti(L, idx, (lua_Integer)i + 1);
    else lua_getfield(L, idx, mw_met_family_label(lf->f, i));
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_error(L, "label '%s' is missing (or not a string)", mw_met_family_label(lf->f, i));
    vals[i] = lua_tolstring(L, -1, &lens[i]);
  }
  luaL_Buffer key;
  luaL_buffinit(L, &key);
  for (size_t i = 0; i < n; i++) {
    luaL_addlstring(&key, vals[i], lens[i]);
    luaL_addchar(&key, '\xff');
  }
  luaL_pushresult(&key);
  lua_getiuservalue(L, fidx, 1);
  lua_pushvalue(L, -2);
  lua_rawget(L, -2);
  mw_met_series *s = lua_touserdata(L, -1);
  if (!s) {
    s = mw_met_series_get(lf->f, vals, lens);
    if (s) {
      lua_pop(L, 1);
      lua_pushvalue(L, -2);
      lua_pushlightuserdata(L, s);
      lua_rawset(L, -3);
      lua_pushnil(L);
    }
  }
  lua_settop(L, base);
  return s;
}

static double check_value(lua_State *L, int idx) {
  double v = luaL_checknumber(L, idx);
  if (!isfinite(v)) luaL_argerror(L, idx, "not a finite number");
  return v;
}

static int update(lua_State *L, int op) {
  lfamily *lf = luaL_checkudata(L, 1, MW_MT_METRIC);
  /* op: 0 inc, 1 add, 2 dec, 3 set, 4 observe */
  static const char *const names[] = {"inc", "add", "dec", "set", "observe"};
  int ok = lf->type == MW_MET_COUNTER ? op <= 1
         : lf->type == MW_MET_GAUGE   ? op <= 3
                                      : op == 4;
  if (!ok) return luaL_error(L, "%s is not an operation of this metric", names[op]);
  int has_v = op == 1 || op == 3 || op == 4;
  double v = has_v ? check_value(L, 2) : op == 2 ? -1 : 1;
  if (lf->type == MW_MET_COUNTER && v < 0) return luaL_argerror(L, 2, "a counter only goes up");
  if (mw_metrics_current() != lf->r) return 0; /* metrics are off */
  mw_met_series *s = series_of(L, lf, 1, has_v ? 3 : 2);
  if (!s) return 0; /* over the family's cap: logged once */
  if (op == 3) mw_met_set(s, v);
  else if (op == 4) mw_met_observe(s, v);
  else mw_met_add(s, v);
  return 0;
}

static int l_inc(lua_State *L) { return update(L, 0); }
static int l_add(lua_State *L) { return update(L, 1); }
static int l_dec(lua_State *L) { return update(L, 2); }
static int l_set(lua_State *L) { return update(L, 3); }
static int l_observe(lua_State *L) { return update(L, 4); }

static int l_tostring(lua_State *L) {
  lfamily *lf = luaL_checkudata(L, 1, MW_MT_METRIC);
  (void)lf;
  lua_pushfstring(L, "moonwire.metric: %p", (void *)lf->f);
  return 1;
}

static const luaL_Reg methods[] = {
    {"inc", l_inc}, {"add", l_add}, {"dec", l_dec}, {"set", l_set}, {"observe", l_observe},
    {NULL, NULL},
};

/* core.metrics_on() -> whether metrics count in this process (the admin
 * listener is on; fixed from start), for library code that keeps its
 * label work off the hot path when they do not. */
static int l_metrics_on(lua_State *L) {
  lua_pushboolean(L, mw_metrics_current() != NULL);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"metric_declare", l_metric_declare},
    {"metrics_on", l_metrics_on},
    {NULL, NULL},
};

void mw_lmetrics_open(lua_State *L) {
  if (luaL_newmetatable(L, MW_MT_METRIC)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "moonwire.metric");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
