/* Status objects and codes: core.status, core.fail, core.is_status,
 * core.codes. A status object is a table {code=, message=} with the
 * moonwire.status metatable (its __tostring reads "NOT_FOUND: message"). */
#include <lauxlib.h>

#include "base/mw_status.h"
#include "lua/l_api.h"

void mw_lstatus_push(lua_State *L, int code, const char *msg) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, MW_MT_STATUS);
}

int mw_lstatus_is(lua_State *L, int idx) {
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, MW_MT_STATUS);
  int eq = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return eq;
}

static int check_code(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    int code = mw_status_parse(lua_tostring(L, idx));
    if (code < 0) luaL_argerror(L, idx, "unknown status code name");
    return code;
  }
  lua_Integer code = luaL_checkinteger(L, idx);
  if (code < 0 || code >= MW_STATUS_COUNT)
    luaL_argerror(L, idx, "status code out of range 0..16");
  return (int)code;
}

/* core.status(code, message) -> status object */
static int l_status(lua_State *L) {
  int code = check_code(L, 1);
  mw_lstatus_push(L, code, luaL_optstring(L, 2, ""));
  return 1;
}

/* core.fail(code, message): raises a status object */
static int l_fail(lua_State *L) {
  int code = check_code(L, 1);
  const char *msg = luaL_optstring(L, 2, "");
  if (code == MW_STATUS_OK) luaL_argerror(L, 1, "mw.fail needs an error code, not OK");
  mw_lstatus_push(L, code, msg);
  return lua_error(L);
}

static int l_is_status(lua_State *L) {
  lua_pushboolean(L, mw_lstatus_is(L, 1));
  return 1;
}

static int l_status_tostring(lua_State *L) {
  lua_getfield(L, 1, "code");
  int code = (int)lua_tointeger(L, -1);
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "%s: %s", mw_status_name(code), luaL_optstring(L, -1, ""));
  return 1;
}

static const luaL_Reg funcs[] = {
    {"status", l_status}, {"fail", l_fail}, {"is_status", l_is_status}, {NULL, NULL},
};

void mw_lstatus_open(lua_State *L) {
  if (luaL_newmetatable(L, MW_MT_STATUS)) {
    lua_pushcfunction(L, l_status_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
  lua_createtable(L, 0, MW_STATUS_COUNT); /* [core, codes] */
  for (int i = 0; i < MW_STATUS_COUNT; i++) {
    lua_pushinteger(L, i);
    lua_setfield(L, -2, mw_status_name(i));
  }
  lua_setfield(L, -2, "codes");
}
