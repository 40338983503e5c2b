/* The state's record and protected calls: what every file of lua/ may use,
 * at the bottom of the layer. */
#include "lua/mw_lutil.h"

#include <string.h>

#include <lauxlib.h>

#include "lua/l_api.h"

/* Registry key of the state's mw_lstate (a full userdata). */
static const char key_lstate = 'l';

mw_lstate *mw_lstate_new(lua_State *L) {
  mw_lstate *st = lua_newuserdatauv(L, sizeof *st, 0); /* [st] */
  memset(st, 0, sizeof *st);
  st->L = L;
  lua_newtable(L); /* [st, pool] */
  st->pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_lstate);
  return st;
}

mw_lstate *mw_lstate_of(lua_State *L) {
  mw_lstate *st = lua_rawgetp(L, LUA_REGISTRYINDEX, &key_lstate) == LUA_TUSERDATA
                      ? lua_touserdata(L, -1)
                      : NULL;
  lua_pop(L, 1);
  return st;
}

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (mw_lstatus_is(L, 1)) {
      luaL_tolstring(L, 1, NULL);
      msg = lua_tostring(L, -1);
    } else {
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int mw_lutil_pcall(lua_State *L, int nargs, int nres) {
  int base = lua_gettop(L) - nargs; /* the function's index */
  lua_pushcfunction(L, msgh);
  lua_insert(L, base); /* [msgh, fn, args...] */
  int rc = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base); /* [results...] or [message] */
  return rc;
}

