/* mw.on_drain: functions a state runs when the server begins to drain
 * (SIGTERM), so that long streams can wind down: a hook typically marks
 * module state that stream handlers read (mw.draining()) to send a last
 * message or a resume token and return before the grace ends.
 *
 *   core.on_drain(fn)  registers fn (at load time or from a handler)
 *   mw_ldrain_run(L)   runs them, in registration order, each protected */
#include <lauxlib.h>

#include "base/mw_log.h"
#include "lua/l_api.h"
#include "lua/mw_lutil.h"

/* Registry key by address: the array of hooks. */
static const char key_hooks = 'd';

static int l_on_drain(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_hooks) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_hooks);
  }
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
  return 0;
}

int mw_ldrain_run(lua_State *L) {
  int top = lua_gettop(L), n = 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &key_hooks) == LUA_TTABLE) {
    lua_Integer count = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= count; i++) {
      lua_rawgeti(L, top + 1, i);
      /* Hooks run outside any call: they cannot wait (mw.sleep raises). */
      if (mw_lutil_pcall(L, 0, 0) != LUA_OK) {
        mw_log(MW_LOG_ERROR, "mw.on_drain function failed: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
      }
      n++;
    }
  }
  lua_settop(L, top);
  return n;
}

void mw_ldrain_open(lua_State *L) {
  lua_pushcfunction(L, l_on_drain);
  lua_setfield(L, -2, "on_drain");
}
