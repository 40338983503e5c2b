/* mw.on_reload / mw.on_restore and the copy of plain data between two
 * states. */
#include "lua/mw_handoff.h"

#include <lauxlib.h>

#include "base/mw_log.h"
#include "lua/l_api.h"
#include "lua/mw_lutil.h"

/* Registry keys by address. */
static const char key_on_reload = 'r';
static const char key_on_restore = 's';

#define MW_HANDOFF_DEPTH 32

/* Copies the plain value at index idx of `from` onto `to`: nil, booleans,
 * numbers, strings and tables of those (no cycles). Returns NULL, or what
 * could not be copied. */
static const char *copy_value(lua_State *from, int idx, lua_State *to, int depth) {
  idx = lua_absindex(from, idx);
  switch (lua_type(from, idx)) {
  case LUA_TNIL: lua_pushnil(to); return NULL;
  case LUA_TBOOLEAN: lua_pushboolean(to, lua_toboolean(from, idx)); return NULL;
  case LUA_TNUMBER:
    if (lua_isinteger(from, idx)) {
      lua_pushinteger(to, lua_tointeger(from, idx));
    } else {
      lua_pushnumber(to, lua_tonumber(from, idx));
    }
    return NULL;
  case LUA_TSTRING: {
    size_t len;
    const char *str = lua_tolstring(from, idx, &len);
    lua_pushlstring(to, str, len);
    return NULL;
  }
  case LUA_TTABLE: {
    if (depth >= MW_HANDOFF_DEPTH) return "a table nested too deep (or a cycle)";
    if (!lua_checkstack(from, 3) || !lua_checkstack(to, 3)) return "too deep";
    lua_newtable(to);
    lua_pushnil(from);
    while (lua_next(from, idx)) {
      const char *bad = copy_value(from, -2, to, depth + 1);
      if (!bad) bad = copy_value(from, -1, to, depth + 1);
      if (bad) {
        lua_pop(from, 2);
        return bad;
      }
      lua_rawset(to, -3);
      lua_pop(from, 1);
    }
    return NULL;
  }
  default: return luaL_typename(from, idx);
  }
}

void mw_handoff_run(lua_State *from, lua_State *to) {
  int top_from = lua_gettop(from), top_to = lua_gettop(to);
  if (lua_rawgetp(to, LUA_REGISTRYINDEX, &key_on_restore) != LUA_TFUNCTION) goto out;
  /* to: [on_restore] */
  if (lua_rawgetp(from, LUA_REGISTRYINDEX, &key_on_reload) == LUA_TFUNCTION) {
    if (mw_lutil_pcall(from, 0, 1) != LUA_OK) {
      mw_log(MW_LOG_ERROR, "mw.on_reload function failed: %s", lua_tostring(from, -1));
      goto out;
    }
    /* from: [data] */
    const char *bad = copy_value(from, -1, to, 0);
    if (bad) {
      mw_log(MW_LOG_ERROR, "mw.on_reload returned what cannot be handed over (%s): "
                           "only nil, booleans, numbers, strings and tables of them", bad);
      goto out;
    }
  } else {
    lua_pushnil(to);
  }
  /* to: [on_restore, data] */
  if (mw_lutil_pcall(to, 1, 0) != LUA_OK)
    mw_log(MW_LOG_ERROR, "mw.on_restore function failed: %s", lua_tostring(to, -1));
out:
  lua_settop(from, top_from);
  lua_settop(to, top_to);
}

/* mw.on_reload(fn): fn() runs in this generation when a worker moves to the
 * next one; what it returns (plain data) goes to the next generation's
 * mw.on_restore function. */
static int l_on_reload(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_on_reload);
  return 0;
}

/* mw.on_restore(fn): fn(data) runs once per worker, before the worker's
 * first call in this generation, with what the previous one handed over. */
static int l_on_restore(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_on_restore);
  return 0;
}

static const luaL_Reg funcs[] = {
    {"on_reload", l_on_reload}, {"on_restore", l_on_restore}, {NULL, NULL},
};

void mw_lhandoff_open(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
