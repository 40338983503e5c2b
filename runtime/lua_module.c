#include <lua.h>
#include <lauxlib.h>
int luaopen_moonwire_core(lua_State *L);
int luaopen_moonwire_core(lua_State *L) { lua_newtable(L); return 1; }
