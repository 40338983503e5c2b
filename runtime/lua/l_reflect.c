/* What server reflection (services/reflection.lua) asks of the schema of
 * the generation a call runs in: the protocol and its policy (what to send,
 * deduplication per stream, error responses) are Lua; the lookups are here.
 *
 *   core.reflect_services()            -> names of the services served
 *   core.reflect_file(name)            -> FileDescriptorProto bytes, names
 *                                         of its dependencies; nil if unknown
 *   core.reflect_symbol(symbol)        -> the name of the file defining a
 *                                         service, method, message, enum,
 *                                         enum value or extension; nil
 *   core.reflect_extension(type, num)  -> the file defining extension num
 *                                         of message type; nil
 *   core.reflect_extension_numbers(type) -> the extension numbers of a
 *                                         message type; nil if no such type */
#include <string.h>

#include <lauxlib.h>

#include "lua/l_api.h"
#include "lua/mw_lstate.h"
#include "schema/mw_methods.h"
#include "schema/mw_schema.h"

static const mw_schema *schema_of(lua_State *L) {
  mw_lstate *st = mw_lstate_of(L);
  return st && st->methods ? mw_methods_schema(st->methods) : NULL;
}

static int l_reflect_services(lua_State *L) {
  const mw_schema *s = schema_of(L);
  size_t n = mw_schema_service_count(s);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, upb_ServiceDef_FullName(mw_schema_service(s, i)));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int l_reflect_file(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const mw_schema *s = schema_of(L);
  size_t len = 0;
  const char *bytes = mw_schema_file_proto(s, name, &len);
  const upb_FileDef *f = bytes ? upb_DefPool_FindFileByName(mw_schema_pool(s), name) : NULL;
  if (!f) return 0;
  lua_pushlstring(L, bytes, len);
  int n = upb_FileDef_DependencyCount(f);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, upb_FileDef_Name(upb_FileDef_Dependency(f, i)));
    lua_rawseti(L, -2, i + 1);
  }
  return 2;
}

static int l_reflect_symbol(lua_State *L) {
  size_t len;
  const char *sym = luaL_checklstring(L, 1, &len);
  const upb_DefPool *pool = mw_schema_pool(schema_of(L));
  if (!pool) return 0;
  const upb_FileDef *f = upb_DefPool_FindFileContainingSymbol(pool, sym);
  if (!f) {
    /* Methods are not symbols of upb's table: pkg.Service.Method is found
     * through its service. */
    const char *dot = strrchr(sym, '.');
    const upb_ServiceDef *svc =
        dot ? upb_DefPool_FindServiceByNameWithSize(pool, sym, (size_t)(dot - sym)) : NULL;
    if (svc && upb_ServiceDef_FindMethodByName(svc, dot + 1)) f = upb_ServiceDef_File(svc);
  }
  if (!f) return 0;
  lua_pushstring(L, upb_FileDef_Name(f));
  return 1;
}

static int l_reflect_extension(lua_State *L) {
  const char *type = luaL_checkstring(L, 1);
  lua_Integer num = luaL_checkinteger(L, 2);
  const upb_DefPool *pool = mw_schema_pool(schema_of(L));
  const upb_MessageDef *m = pool ? upb_DefPool_FindMessageByName(pool, type) : NULL;
  const upb_FieldDef *ext =
      m && num > 0 && num <= 0x1fffffff ? upb_DefPool_FindExtensionByNumber(pool, m, (int32_t)num)
                                        : NULL;
  if (!ext) return 0;
  lua_pushstring(L, upb_FileDef_Name(upb_FieldDef_File(ext)));
  return 1;
}

/* Appends f's number to the table on top when f extends base. */
static void add_if_extends(lua_State *L, const upb_FieldDef *f, const upb_MessageDef *base) {
  if (upb_FieldDef_ContainingType(f) != base) return;
  lua_pushinteger(L, upb_FieldDef_Number(f));
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* Appends to the table on top the numbers of the extensions of `base`
 * declared in m and the messages nested in it. */
static void nested_extensions(lua_State *L, const upb_MessageDef *m,
                              const upb_MessageDef *base) {
  for (int i = 0; i < upb_MessageDef_NestedExtensionCount(m); i++)
    add_if_extends(L, upb_MessageDef_NestedExtension(m, i), base);
  for (int i = 0; i < upb_MessageDef_NestedMessageCount(m); i++)
    nested_extensions(L, upb_MessageDef_NestedMessage(m, i), base);
}

static int l_reflect_extension_numbers(lua_State *L) {
  const char *type = luaL_checkstring(L, 1);
  const mw_schema *s = schema_of(L);
  const upb_DefPool *pool = mw_schema_pool(s);
  const upb_MessageDef *base = pool ? upb_DefPool_FindMessageByName(pool, type) : NULL;
  if (!base) return 0;
  /* upb keeps no index by extended type: every file is walked (a rare
   * request, over a schema of a few hundred definitions at most). */
  lua_newtable(L);
  for (size_t k = 0; k < mw_schema_pool_file_count(s); k++) {
    const upb_FileDef *f = upb_DefPool_FindFileByName(pool, mw_schema_pool_file(s, k));
    if (!f) continue;
    for (int i = 0; i < upb_FileDef_TopLevelExtensionCount(f); i++)
      add_if_extends(L, upb_FileDef_TopLevelExtension(f, i), base);
    for (int i = 0; i < upb_FileDef_TopLevelMessageCount(f); i++)
      nested_extensions(L, upb_FileDef_TopLevelMessage(f, i), base);
  }
  return 1;
}

static const luaL_Reg funcs[] = {
    {"reflect_services", l_reflect_services},
    {"reflect_file", l_reflect_file},
    {"reflect_symbol", l_reflect_symbol},
    {"reflect_extension", l_reflect_extension},
    {"reflect_extension_numbers", l_reflect_extension_numbers},
    {NULL, NULL},
};

void mw_lreflect_open(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
