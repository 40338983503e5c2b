/* What Lua may ask of the generation's schema: whether a service exists
 * (with the message to raise when not) and its methods. Used by
 * moonwire.service to declare services and check their handlers. */
#include <string.h>

#include <lauxlib.h>

#include "lua/l_api.h"
#include "lua/mw_lstate.h"

/* core.service_problem(name) -> nil, or the message for a service the
 * loaded .proto files do not define. Always nil outside the runtime (a
 * plain lua5.4 has no schema). */
static int l_service_problem(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  mw_lstate *st = mw_lstate_of(L);
  if (!st || !st->methods || mw_methods_has_service(st->methods, name, len)) {
    lua_pushnil(L);
    return 1;
  }
  const mw_schema *schema = mw_methods_schema(st->methods);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "no service '%s' in the loaded .proto files", name);
  luaL_addvalue(&b);
  size_t n = mw_schema_service_count(schema);
  for (size_t i = 0; i < n; i++) {
    luaL_addstring(&b, i == 0 ? " (services: " : ", ");
    luaL_addstring(&b, upb_ServiceDef_FullName(mw_schema_service(schema, i)));
  }
  if (n) luaL_addstring(&b, ")");
  luaL_pushresult(&b);
  return 1;
}

/* core.methods(service) -> names (array, in .proto order), index (name ->
 * method index for the runtime), kinds (name -> "unary", "server_stream",
 * "client_stream" or "bidi_stream", as ctx.kind); nil when the schema lacks
 * the service. */
static int l_methods(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  mw_lstate *st = mw_lstate_of(L);
  if (!st || !st->methods) return 0;
  lua_newtable(L);
  lua_newtable(L);
  lua_newtable(L); /* [names, index, kinds] */
  static const char *const kinds[] = {"unary", "server_stream", "client_stream",
                                      "bidi_stream"};
  lua_Integer k = 1;
  size_t n = mw_methods_count(st->methods);
  for (size_t i = 0; i < n; i++) {
    const mw_method *m = mw_methods_at(st->methods, i);
    if (strlen(m->service) != len || memcmp(m->service, name, len) != 0) continue;
    lua_pushstring(L, m->name);
    lua_rawseti(L, -4, k++);
    lua_pushinteger(L, (lua_Integer)i);
    lua_setfield(L, -3, m->name);
    lua_pushstring(L, kinds[m->kind & 3]);
    lua_setfield(L, -2, m->name);
  }
  return 3;
}

static const luaL_Reg funcs[] = {
    {"service_problem", l_service_problem}, {"methods", l_methods}, {NULL, NULL},
};

void mw_lschema_open(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
