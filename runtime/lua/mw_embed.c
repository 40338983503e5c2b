/* Preloaders for the embedded Lua library (see mw_embed.h). */
#include "lua/mw_embed.h"

#include <stdlib.h>

#include <lauxlib.h>

#include "lua/mw_sandbox.h"

const char *mw_embed_override(void) {
  const char *dir = getenv("MOONWIRE_LUA_DIR");
  return dir && *dir ? dir : NULL;
}

/* package.preload loader: upvalue 1 is the index in mw_lua_library.
 * Called by require as loader(name, ":preload:"); returns the module. */
static int load_embedded(lua_State *L) {
  const mw_embedded *e = &mw_lua_library[lua_tointeger(L, lua_upvalueindex(1))];
  const char *dir = mw_embed_override();
  int rc;
  if (dir) {
    lua_pushfstring(L, "%s/%s", dir, e->path);
    rc = luaL_loadfilex(L, lua_tostring(L, -1), "t");
    lua_remove(L, -2);
  } else {
    lua_pushfstring(L, "@%s", e->path);
    rc = luaL_loadbufferx(L, e->data, e->len, lua_tostring(L, -1), "t");
    lua_remove(L, -2);
  }
  if (rc != LUA_OK) return lua_error(L);
  mw_sandbox_library_env(L);
  lua_pushstring(L, e->module); /* [chunk, name] */
  lua_call(L, 1, 1);
  mw_sandbox_freeze_module(L, e->module);
  return 1;
}

void mw_embed_install(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE); /* [preload] */
  for (size_t i = 0; i < mw_lua_library_count; i++) {
    lua_pushinteger(L, (lua_Integer)i);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, mw_lua_library[i].module);
  }
  lua_pop(L, 1);
}
