/* mw.shared.NAME: the shared dicts (shared/mw_shared.h) for Lua, with
 * OpenResty's ngx.shared.DICT methods and return values (docs/lua-api.md,
 * "Shared dicts"). Every worker's states reach the same dicts, through the
 * registry; a state keeps one handle per name (the facade caches it).
 *
 * Each method turns its arguments into one request, runs it, and turns the
 * result into Lua values; misuse (a wrong argument type, a negative ttl)
 * raises, expected failures return nil or false and a message, as
 * OpenResty's do. The dict's lock is never held while Lua runs: a value is
 * copied out into a buffer of this state's first, then pushed. */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>

#include "lua/l_api.h"
#include "shared/mw_shared.h"

#define MW_MT_SHARED_BUF "moonwire.shared.buf"

typedef struct shared_handle {
  const mw_shared_dict *d; /* the registry's: lives until the process stops */
} shared_handle;

/* The state's copy buffer (upvalue 1 of every method): a userdata whose
 * __gc frees it. One per state suffices: a method runs to its end without
 * yielding, and the buffer is consumed (copied into a Lua string) before
 * anything that could run another Lua function (a finalizer) can run. */
static mw_shbuf *state_buf(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static int buf_gc(lua_State *L) {
  mw_shbuf *b = luaL_checkudata(L, 1, MW_MT_SHARED_BUF);
  free(b->p);
  b->p = NULL;
  b->cap = 0;
  return 0;
}

static const mw_shared_dict *check_dict(lua_State *L) {
  shared_handle *h = luaL_checkudata(L, 1, MW_MT_SHARED);
  return h->d;
}

static int push_err(lua_State *L, int first_false, mw_shrc rc) {
  if (first_false) lua_pushboolean(L, 0);
  else lua_pushnil(L);
  lua_pushstring(L, mw_shared_strerror(rc));
  return 2;
}

/* The key at idx into rq: a string, or a number (as tostring writes it).
 * Returns 0, or pushes OpenResty's nil, message and returns 2. A key of
 * another type is misuse: it raises. */
static int get_key(lua_State *L, int idx, mw_shreq *rq) {
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TNONE) {
    lua_pushnil(L);
    lua_pushliteral(L, "nil key");
    return 2;
  }
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    return luaL_error(L, "bad argument #1 (key): a string expected, got %s", luaL_typename(L, idx));
  rq->key = lua_tolstring(L, idx, &rq->klen); /* a number becomes a string in place */
  if (rq->klen == 0 || rq->klen > MW_SH_MAX_KEY) {
    lua_pushnil(L);
    lua_pushstring(L, mw_shared_strerror(rq->klen ? MW_SH_LONG_KEY : MW_SH_EMPTY_KEY));
    return 2;
  }
  return 0;
}

/* A Lua value into v; 0 when its type cannot be stored. */
static int get_value(lua_State *L, int idx, mw_shval *v) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: case LUA_TNONE: v->type = MW_SHV_NIL; return 1;
  case LUA_TBOOLEAN: v->type = MW_SHV_BOOL; v->u.b = lua_toboolean(L, idx); return 1;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      v->type = MW_SHV_INT;
      v->u.i = (int64_t)lua_tointeger(L, idx);
    } else {
      v->type = MW_SHV_FLOAT;
      v->u.d = (double)lua_tonumber(L, idx);
    }
    return 1;
  case LUA_TSTRING:
    v->type = MW_SHV_STR;
    v->u.s.p = lua_tolstring(L, idx, &v->u.s.len);
    return 1;
  default: return 0;
  }
}

static void push_value(lua_State *L, const mw_shval *v) {
  switch (v->type) {
  case MW_SHV_BOOL: lua_pushboolean(L, v->u.b); break;
  case MW_SHV_INT: lua_pushinteger(L, (lua_Integer)v->u.i); break;
  case MW_SHV_FLOAT: lua_pushnumber(L, (lua_Number)v->u.d); break;
  case MW_SHV_STR: lua_pushlstring(L, v->u.s.p, v->u.s.len); break;
  default: lua_pushnil(L); break;
  }
}

/* Seconds (a number >= 0, ms resolution; nil when optional) into ms. A
 * positive time under a millisecond is one millisecond, never "forever". */
static int64_t get_seconds(lua_State *L, int idx, int optional, const char *what) {
  if (optional && lua_isnoneornil(L, idx)) return 0;
  int ok = 0;
  lua_Number s = lua_tonumberx(L, idx, &ok);
  if (!ok || !(s >= 0) || s > 1e12)
    return luaL_error(L, "bad \"%s\" argument (seconds, a number >= 0, expected; got %s)", what,
                      ok ? lua_tostring(L, idx) : luaL_typename(L, idx));
  int64_t ms = (int64_t)(s * 1000);
  return ms == 0 && s > 0 ? 1 : ms;
}

static uint32_t get_flags(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  int ok = 0;
  lua_Integer f = lua_tointegerx(L, idx, &ok);
  if (!ok || f < 0 || f > (lua_Integer)UINT32_MAX)
    return (uint32_t)luaL_error(L, "bad \"flags\" argument (an integer from 0 to 2^32-1 expected)");
  return (uint32_t)f;
}

/* A number argument of incr (step, init): integers stay integers; a
 * numeric string is read as Lua reads it. */
static void get_number(lua_State *L, int idx, const char *what, mw_shval *v) {
  if (lua_type(L, idx) == LUA_TSTRING && lua_stringtonumber(L, lua_tostring(L, idx)) != 0) {
    lua_replace(L, idx);
  }
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "bad \"%s\" argument (a number expected, got %s)", what, luaL_typename(L, idx));
  get_value(L, idx, v);
}

static mw_shrc exec(lua_State *L, const mw_shared_dict *d, const mw_shreq *rq, mw_shres *res) {
  return mw_shared_exec(d, rq, res, state_buf(L));
}

/* d:get(key) -> value, flags (flags only when not 0) | nil | nil, err */
static int get_common(lua_State *L, mw_shop op) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = op};
  int n = get_key(L, 2, &rq);
  if (n) return n;
  mw_shres res;
  mw_shrc rc = exec(L, d, &rq, &res);
  if (rc == MW_SH_NOT_FOUND) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != MW_SH_OK) return push_err(L, 0, rc);
  push_value(L, &res.val);
  if (op == MW_SHOP_GET) {
    if (!res.flags) return 1;
    lua_pushinteger(L, (lua_Integer)res.flags);
    return 2;
  }
  if (res.flags) lua_pushinteger(L, (lua_Integer)res.flags);
  else lua_pushnil(L);
  lua_pushboolean(L, res.stale);
  return 3;
}

static int l_get(lua_State *L) { return get_common(L, MW_SHOP_GET); }
static int l_get_stale(lua_State *L) { return get_common(L, MW_SHOP_GET_STALE); }

/* d:set(key, value [, exptime [, flags]]) -> ok, err, forcible; the safe_
 * forms answer nil, "no memory" instead of evicting. */
static int store_common(lua_State *L, mw_shop op) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = op};
  rq.ttl_ms = get_seconds(L, 4, 1, "exptime");
  rq.flags = get_flags(L, 5);
  int n = get_key(L, 2, &rq);
  if (n) return n;
  if (!get_value(L, 3, &rq.val)) {
    lua_pushnil(L);
    lua_pushliteral(L, "bad value type");
    return 2;
  }
  mw_shres res;
  mw_shrc rc = exec(L, d, &rq, &res);
  if (rc == MW_SH_OK) {
    lua_pushboolean(L, 1);
    lua_pushnil(L);
    lua_pushboolean(L, res.forcible);
    return 3;
  }
  int safe = op == MW_SHOP_SAFE_SET || op == MW_SHOP_SAFE_ADD;
  if (safe && rc == MW_SH_NO_MEMORY) return push_err(L, 0, rc);
  push_err(L, 1, rc);
  lua_pushboolean(L, res.forcible);
  return 3;
}

static int l_set(lua_State *L) { return store_common(L, MW_SHOP_SET); }
static int l_safe_set(lua_State *L) { return store_common(L, MW_SHOP_SAFE_SET); }
static int l_add(lua_State *L) { return store_common(L, MW_SHOP_ADD); }
static int l_safe_add(lua_State *L) { return store_common(L, MW_SHOP_SAFE_ADD); }
static int l_replace(lua_State *L) { return store_common(L, MW_SHOP_REPLACE); }

/* d:delete(key): set(key, nil). */
static int l_delete(lua_State *L) {
  lua_settop(L, 2);
  lua_pushnil(L);
  return store_common(L, MW_SHOP_SET);
}

/* d:incr(key, step [, init [, init_ttl]]) -> newval | newval, nil,
 * forcible (with init) | nil, err */
static int l_incr(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_INCR};
  get_number(L, 3, "value", &rq.val);
  if (!lua_isnoneornil(L, 4)) {
    get_number(L, 4, "init", &rq.init);
    rq.has_init = 1;
  }
  if (!lua_isnoneornil(L, 5)) {
    if (!rq.has_init) return luaL_error(L, "must provide \"init\" when providing \"init_ttl\"");
    rq.init_ttl_ms = get_seconds(L, 5, 0, "init_ttl");
  }
  int n = get_key(L, 2, &rq);
  if (n) return n;
  mw_shres res;
  mw_shrc rc = exec(L, d, &rq, &res);
  if (rc != MW_SH_OK) return push_err(L, 0, rc);
  push_value(L, &res.val);
  if (!rq.has_init) return 1;
  lua_pushnil(L);
  lua_pushboolean(L, res.forcible);
  return 3;
}

/* d:lpush(key, value) / d:rpush -> length | nil, err */
static int push_common(lua_State *L, mw_shop op) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = op};
  int n = get_key(L, 2, &rq);
  if (n) return n;
  int t = lua_type(L, 3);
  if (t != LUA_TNUMBER && t != LUA_TSTRING) {
    lua_pushnil(L);
    lua_pushliteral(L, "bad value type");
    return 2;
  }
  get_value(L, 3, &rq.val);
  mw_shres res;
  mw_shrc rc = exec(L, d, &rq, &res);
  if (rc != MW_SH_OK) return push_err(L, 0, rc);
  lua_pushinteger(L, (lua_Integer)res.n);
  return 1;
}

static int l_lpush(lua_State *L) { return push_common(L, MW_SHOP_LPUSH); }
static int l_rpush(lua_State *L) { return push_common(L, MW_SHOP_RPUSH); }

/* d:lpop(key) / d:rpop -> value | nil | nil, err */
static int pop_common(lua_State *L, mw_shop op) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = op};
  int n = get_key(L, 2, &rq);
  if (n) return n;
  mw_shres res;
  mw_shrc rc = exec(L, d, &rq, &res);
  if (rc == MW_SH_NOT_FOUND) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != MW_SH_OK) return push_err(L, 0, rc);
  push_value(L, &res.val);
  return 1;
}

static int l_lpop(lua_State *L) { return pop_common(L, MW_SHOP_LPOP); }
static int l_rpop(lua_State *L) { return pop_common(L, MW_SHOP_RPOP); }

/* d:llen(key) -> length (0 when missing) | nil, err */
static int l_llen(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_LLEN};
  int n = get_key(L, 2, &rq);
  if (n) return n;
  mw_shres res;
  mw_shrc rc = exec(L, d, &rq, &res);
  if (rc != MW_SH_OK) return push_err(L, 0, rc);
  lua_pushinteger(L, (lua_Integer)res.n);
  return 1;
}

/* d:ttl(key) -> seconds left (0: never expires) | nil, "not found" */
static int l_ttl(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_TTL};
  int n = get_key(L, 2, &rq);
  if (n) return n;
  mw_shres res;
  mw_shrc rc = exec(L, d, &rq, &res);
  if (rc != MW_SH_OK) return push_err(L, 0, rc);
  lua_pushnumber(L, (lua_Number)res.n / 1000);
  return 1;
}

/* d:expire(key, exptime) -> true | nil, "not found" */
static int l_expire(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_EXPIRE};
  rq.ttl_ms = get_seconds(L, 3, 0, "exptime");
  int n = get_key(L, 2, &rq);
  if (n) return n;
  mw_shres res;
  mw_shrc rc = exec(L, d, &rq, &res);
  if (rc != MW_SH_OK) return push_err(L, 0, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static size_t get_max(lua_State *L, int idx, size_t dflt) {
  if (lua_isnoneornil(L, idx)) return dflt;
  int ok = 0;
  lua_Integer m = lua_tointegerx(L, idx, &ok);
  if (!ok || m < 0) return (size_t)luaL_error(L, "bad \"max_count\" argument (an integer >= 0 expected)");
  return (size_t)m;
}

/* d:flush_all(): every item expired, nothing freed. */
static int l_flush_all(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_FLUSH_ALL};
  mw_shres res;
  exec(L, d, &rq, &res);
  return 0;
}

/* d:flush_expired([max_count]) -> items freed (max 0 or nil: all) */
static int l_flush_expired(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_FLUSH_EXPIRED, .max = get_max(L, 2, 0)};
  mw_shres res;
  exec(L, d, &rq, &res);
  lua_pushinteger(L, (lua_Integer)res.n);
  return 1;
}

/* d:get_keys([max_count]) -> {key...} (default 1024; 0: all, with the
 * dict locked meanwhile), most recently used first */
static int l_get_keys(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_KEYS, .max = get_max(L, 2, 1024)};
  mw_shres res;
  mw_shrc rc = exec(L, d, &rq, &res);
  if (rc != MW_SH_OK) return push_err(L, 0, rc);
  /* Filling the table can run a collection step, and with it a finalizer
   * that uses a dict and so this buffer: the packed keys are first copied
   * into one Lua string (anchored on the stack), and read from there. */
  mw_shbuf *b = state_buf(L);
  size_t off = 0, len;
  const char *k;
  while (mw_shared_next_key(b, &off, &k, &len)) {
  }
  lua_pushlstring(L, b->p, off + sizeof(uint32_t)); /* with the end mark */
  mw_shbuf copy = {(char *)lua_tostring(L, -1), off + sizeof(uint32_t)};
  lua_createtable(L, res.n > 0 && res.n < INT32_MAX ? (int)res.n : 0, 0);
  off = 0;
  lua_Integer i = 0;
  while (mw_shared_next_key(&copy, &off, &k, &len)) {
    lua_pushlstring(L, k, len);
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

static int l_capacity(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_CAPACITY};
  mw_shres res;
  exec(L, d, &rq, &res);
  lua_pushinteger(L, (lua_Integer)res.n);
  return 1;
}

static int l_free_space(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_FREE_SPACE};
  mw_shres res;
  exec(L, d, &rq, &res);
  lua_pushinteger(L, (lua_Integer)res.n);
  return 1;
}

static int l_tostring(lua_State *L) {
  lua_pushfstring(L, "moonwire.shared: %s", check_dict(L)->name);
  return 1;
}

static const luaL_Reg methods[] = {
    {"get", l_get},         {"get_stale", l_get_stale},
    {"set", l_set},         {"safe_set", l_safe_set},
    {"add", l_add},         {"safe_add", l_safe_add},
    {"replace", l_replace}, {"delete", l_delete},
    {"incr", l_incr},       {"lpush", l_lpush},
    {"rpush", l_rpush},     {"lpop", l_lpop},
    {"rpop", l_rpop},       {"llen", l_llen},
    {"ttl", l_ttl},         {"expire", l_expire},
    {"flush_all", l_flush_all}, {"flush_expired", l_flush_expired},
    {"get_keys", l_get_keys},   {"capacity", l_capacity},
    {"free_space", l_free_space}, {NULL, NULL},
};

/* core.shared_dict(name) -> handle | nil, "a, b" (the configured names).
 * One handle per state and name (registry table), so that handles compare
 * equal wherever they were looked up. */
static const char handles_key;

static int l_shared_dict(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &handles_key);
  if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  const mw_shared_dict *d = mw_shared_find(name);
  if (!d) {
    char names[512];
    mw_shared_names(names, sizeof names);
    lua_pushnil(L);
    lua_pushstring(L, names);
    return 2;
  }
  shared_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->d = d;
  luaL_setmetatable(L, MW_MT_SHARED);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  return 1;
}

void mw_lshared_open(lua_State *L) {
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &handles_key);
  if (luaL_newmetatable(L, MW_MT_SHARED_BUF)) {
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, MW_MT_SHARED)) {
    lua_createtable(L, 0, (int)(sizeof methods / sizeof methods[0]));
    mw_shbuf *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    b->cap = 0;
    luaL_setmetatable(L, MW_MT_SHARED_BUF);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    /* hidden from getmetatable: no handler can change the methods */
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_shared_dict);
  lua_setfield(L, -2, "shared_dict");
}

/* core.shared_define(name, size): makes a dict outside the server (the
 * specs' moonwire.core); a name already made is kept as it is. */
static int l_shared_define(lua_State *L) {
  mw_shared_spec s = {luaL_checkstring(L, 1), (size_t)luaL_checkinteger(L, 2)};
  luaL_argcheck(L, s.size >= MW_SHARED_MIN_SIZE, 2, "at least 64 KiB");
  if (mw_shared_find(s.name)) return 0;
  /* only this spec: the others are kept, and their warnings are not wanted */
  if (mw_shared_configure(&s, 1, NULL, NULL) != 0) return luaL_error(L, "out of memory");
  return 0;
}

void mw_lshared_open_define(lua_State *L) {
  lua_pushcfunction(L, l_shared_define);
  lua_setfield(L, -2, "shared_define");
}
