/* Status objects and codes: core.status, core.fail, core.is_status,
 * core.codes, and their wire form: core.encode_status, core.decode_status.
 * A status object is a table {code=, message=, details=} with the
 * moonwire.status metatable (its __tostring reads "NOT_FOUND: message");
 * details, when present, is the array of detail tables the runtime sends in
 * grpc-status-details-bin (lua/mw_details.h). moonwire.status checks the
 * details before they get here. */
#include <lauxlib.h>

#include "base/mw_status.h"
#include "codec/mw_codec.h"
#include "lua/l_api.h"
#include "lua/mw_details.h"

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

/* Sets the details array at idx (nil: none) on the status object on top. */
static void set_details(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, "details");
}

/* core.status(code, message [, details]) -> status object */
static int l_status(lua_State *L) {
  int code = check_code(L, 1);
  mw_lstatus_push(L, code, luaL_optstring(L, 2, ""));
  set_details(L, 3);
  return 1;
}

/* core.fail(code, message [, details]): raises a status object */
static int l_fail(lua_State *L) {
  int code = check_code(L, 1);
  const char *msg = luaL_optstring(L, 2, "");
  if (code == MW_STATUS_OK) luaL_argerror(L, 1, "mw.fail needs an error code, not OK");
  mw_lstatus_push(L, code, msg);
  set_details(L, 3);
  return lua_error(L);
}

#define MW_MT_ARENA "moonwire.arena"

static int arena_gc(lua_State *L) {
  upb_Arena **p = luaL_checkudata(L, 1, MW_MT_ARENA);
  if (*p) upb_Arena_Free(*p);
  *p = NULL;
  return 0;
}

/* A scratch arena owned by a userdata pushed on L: freed when it is
 * collected, so an error raised while it is in use (out of memory in the
 * codec) leaks nothing. */
static upb_Arena *push_arena(lua_State *L) {
  upb_Arena **p = lua_newuserdatauv(L, sizeof *p, 0);
  *p = NULL;
  luaL_setmetatable(L, MW_MT_ARENA);
  *p = upb_Arena_New();
  if (!*p) luaL_error(L, "out of memory");
  return *p;
}

/* Frees the arena of the userdata at idx now, rather than at collection. */
static void drop_arena(lua_State *L, int idx) {
  upb_Arena **p = lua_touserdata(L, idx);
  upb_Arena_Free(*p);
  *p = NULL;
}

/* core.encode_status(st) -> the google.rpc.Status bytes of a status object
 * (what the runtime sends as grpc-status-details-bin), or nil, err when a
 * detail cannot be encoded. */
static int l_encode_status(lua_State *L) {
  if (!mw_lstatus_is(L, 1)) luaL_argerror(L, 1, "a status object expected");
  lua_getfield(L, 1, "code");
  int code = (int)lua_tointeger(L, -1);
  lua_getfield(L, 1, "message");
  const char *msg = lua_tostring(L, -1);
  if (lua_getfield(L, 1, "details") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  int details = lua_gettop(L);
  upb_Arena *a = push_arena(L);
  int arena = lua_gettop(L);
  char err[MW_CODEC_ERRLEN];
  size_t len = 0;
  const char *bytes =
      mw_details_encode(L, code, msg, details, mw_details_pool(L), a, &len, err, sizeof err);
  if (!bytes) {
    drop_arena(L, arena);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, bytes, len);
  drop_arena(L, arena);
  return 1;
}

/* core.decode_status(bin) -> status object with details as tables, or
 * nil, err for bytes that are not a google.rpc.Status. */
static int l_decode_status(lua_State *L) {
  size_t len;
  const char *bin = luaL_checklstring(L, 1, &len);
  upb_Arena *a = push_arena(L);
  int arena = lua_gettop(L);
  char err[MW_CODEC_ERRLEN];
  int rc = mw_details_decode_push(L, bin, len, mw_details_pool(L), a, err, sizeof err);
  drop_arena(L, arena);
  if (rc == 0) return 1;
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
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
    {"status", l_status},
    {"fail", l_fail},
    {"is_status", l_is_status},
    {"encode_status", l_encode_status},
    {"decode_status", l_decode_status},
    {NULL, NULL},
};

void mw_lstatus_open(lua_State *L) {
  if (luaL_newmetatable(L, MW_MT_STATUS)) {
    lua_pushcfunction(L, l_status_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, MW_MT_ARENA)) {
    lua_pushcfunction(L, arena_gc);
    lua_setfield(L, -2, "__gc");
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
