/* moonwire.core as a loadable Lua module (build/lua/moonwire/core.so), so the
 * Lua library's specs run under a plain lua5.4 + busted. Functions that need
 * a running call (mw.sleep, streams) raise when used outside a handler. */
#include <lauxlib.h>
#include <lua.h>

#include "lua/l_api.h"

int luaopen_moonwire_core(lua_State *L);

int luaopen_moonwire_core(lua_State *L) {
  mw_lcore_open(L);
  /* No config makes shared dicts here: the specs make their own. */
  mw_lshared_open_define(L);
  return 1;
}
