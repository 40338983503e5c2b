/* The health board's Lua face (lua/mw_health.h), for lua/moonwire/health.lua:
 *   core.health_lookup(name) -> explicit status (number) or nil, served,
 *                               the drain's stage (0 none, 1 draining,
 *                               2 closing), version
 *   core.health_set(name, status or nil)
 *   core.health_wait(version)  waits until the board changes after version
 *   core.draining()            whether the server is draining */
#include <lauxlib.h>

#include "lua/l_api.h"
#include "lua/mw_health.h"

static int l_health_lookup(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  mw_health_entry e;
  mw_health_lookup(name, len, &e);
  if (e.explicit_status >= 0) lua_pushinteger(L, e.explicit_status);
  else lua_pushnil(L);
  lua_pushboolean(L, e.served);
  lua_pushinteger(L, e.draining);
  lua_pushinteger(L, (lua_Integer)e.version);
  return 4;
}

static int l_health_set(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  int status = -1;
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer v = luaL_checkinteger(L, 2);
    luaL_argcheck(L, v >= MW_HEALTH_UNKNOWN && v <= MW_HEALTH_NOT_SERVING, 2,
                  "not a serving status");
    status = (int)v;
  }
  if (mw_health_set(name, len, status) != 0) return luaL_error(L, "out of memory");
  return 0;
}

static int l_health_wait(lua_State *L) {
  lua_Integer seen = luaL_checkinteger(L, 1);
  return mw_notice_wait(L, mw_health_notice(), (unsigned long)seen, "mw.health.wait");
}

static int l_draining(lua_State *L) {
  lua_pushboolean(L, mw_health_draining() != MW_HEALTH_RUNNING);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"health_lookup", l_health_lookup},
    {"health_set", l_health_set},
    {"health_wait", l_health_wait},
    {"draining", l_draining},
    {NULL, NULL},
};

void mw_lhealth_open(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
