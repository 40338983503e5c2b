/* moonwire.core as a loadable Lua module (build/lua/moonwire/core.so), so the
 * Lua library's specs run under a plain lua5.4 + busted. Functions that need
 * a running call (mw.sleep, streams) raise when used outside a handler. */
#include <lauxlib.h>
#include <lua.h>

#include "lua/l_api.h"
#include "shared/mw_shared.h"

int luaopen_moonwire_core(lua_State *L);

/* The dicts the specs made go with the state that loaded this module: a
 * dict on Redis has a thread running this library's code, which must stop
 * before lua_close unloads the library. This finalizer is made after the
 * package library's (which unloads it), so it runs first. */
static int free_dicts(lua_State *L) {
  mw_shared_free();
  return 0;
}

int luaopen_moonwire_core(lua_State *L) {
  mw_lcore_open(L);
  /* No config makes shared dicts here: the specs make their own. */
  mw_lshared_open_define(L);
  lua_newuserdatauv(L, 0, 0);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, free_dicts);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, (void *)free_dicts);
  return 1;
}
