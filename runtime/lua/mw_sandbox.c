/* The Lua sandbox (see mw_sandbox.h).
 *
 * Read-only tables are views: an empty proxy whose metatable reads from the
 * real table (__index, a table: no C call on a read), refuses writes
 * (__newindex), iterates with a closure that never hands the real table out
 * (__pairs, __len) and hides itself (__metatable). Every proxy is in the
 * registry's set of frozen tables, which the rawset of the sandbox checks:
 * rawset on a proxy would otherwise add a key that every call then sees.
 * The real tables stay reachable from C and from the embedded library only. */
#include "lua/mw_sandbox.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "base/mw_log.h"
#include "lua/l_api.h"

/* Registry keys (their addresses). */
static const char frozen_key;   /* proxy -> true (weak keys) */
static const char proxy_key;    /* real table -> its proxy (weak keys) */
static const char dirs_key;     /* the service directories, resolved */
static const char libenv_key;   /* the embedded library's environment */

/* --- read-only views ---------------------------------------------------------- */

/* __newindex of a view: upvalue 1 names the table. */
static int ro_newindex(lua_State *L) {
  const char *what = lua_tostring(L, lua_upvalueindex(1));
  return luaL_error(L, "attempt to modify the read-only table '%s' (key '%s')", what,
                    luaL_tolstring(L, 2, NULL));
}

/* The globals once sealed: the message says what to do instead. */
static int global_newindex(lua_State *L) {
  return luaL_error(L,
                    "cannot assign the global '%s': globals are read-only once the "
                    "service scripts have loaded (use a local; keep state that "
                    "outlives a call in a module-level local)",
                    luaL_tolstring(L, 2, NULL));
}

/* Iteration over the real table (upvalue 1) without handing it out. */
static int view_next(lua_State *L) {
  lua_settop(L, 2);
  if (lua_next(L, lua_upvalueindex(1))) return 2;
  lua_pushnil(L);
  return 1;
}

static int view_pairs(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, view_next, 1);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

static int view_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
  return 1;
}

/* Sets the metatable of the proxy at `proxy` to a view of the table at
 * `real`, with newindex as its __newindex (its upvalue: name). */
static void set_view(lua_State *L, int proxy, int real, lua_CFunction newindex,
                     const char *name) {
  proxy = lua_absindex(L, proxy);
  real = lua_absindex(L, real);
  lua_createtable(L, 0, 5);
  lua_pushvalue(L, real);
  lua_setfield(L, -2, "__index");
  lua_pushstring(L, name);
  lua_pushcclosure(L, newindex, 1);
  lua_setfield(L, -2, "__newindex");
  lua_pushvalue(L, real);
  lua_pushcclosure(L, view_pairs, 1);
  lua_setfield(L, -2, "__pairs");
  lua_pushvalue(L, real);
  lua_pushcclosure(L, view_len, 1);
  lua_setfield(L, -2, "__len");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, proxy);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &frozen_key);
  lua_pushvalue(L, proxy);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static int is_frozen(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &frozen_key);
  lua_pushvalue(L, idx);
  int yes = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return yes;
}

/* Replaces the table at the top by its read-only view, and the tables it
 * holds by theirs (the real ones are changed in place to hold the views). A
 * table already frozen, or a value that is no table, stays as it is. */
static void freeze_top(lua_State *L, const char *name) {
  if (!lua_istable(L, -1) || is_frozen(L, -1)) return;
  int real = lua_gettop(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &proxy_key);
  lua_pushvalue(L, real);
  if (lua_rawget(L, -2) != LUA_TNIL) { /* [real, proxies, proxy] */
    lua_replace(L, real);
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_newtable(L); /* [real, proxies, proxy] */
  lua_pushvalue(L, real);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4); /* known before the walk: cycles end here */
  set_view(L, -1, real, ro_newindex, name);
  /* The tables inside, with the keys collected first: the walk changes
   * values of the table it walks, which next() allows. */
  lua_pushnil(L);
  while (lua_next(L, real)) {
    if (lua_istable(L, -1) && lua_type(L, -2) == LUA_TSTRING) {
      lua_pushfstring(L, "%s.%s", name, lua_tostring(L, -2));
      lua_insert(L, -2); /* [.., key, subname, value] */
      freeze_top(L, lua_tostring(L, -2));
      lua_pushvalue(L, -3);
      lua_insert(L, -2);
      lua_rawset(L, real); /* real[key] = view */
      lua_pop(L, 1);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_replace(L, real); /* [proxy, proxies] */
  lua_pop(L, 1);
}

/* --- the functions that replace the standard ones ------------------------------- */

/* rawset, refusing read-only views. */
static int l_rawset(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  luaL_checkany(L, 3);
  if (is_frozen(L, 1)) return luaL_error(L, "rawset: the table is read-only");
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 1;
}

/* load(chunk [, chunkname [, mode [, env]]]): mode is always "t". Upvalue 1
 * is the standard load. */
static int l_load(lua_State *L) {
  int n = lua_gettop(L);
  if (n < 3) lua_settop(L, n = 3);
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* Whether path (a file that exists) lies under one of the service dirs,
 * symbolic links resolved. */
static int path_allowed(lua_State *L, const char *path) {
  char real[PATH_MAX];
  if (!realpath(path, real)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &dirs_key);
  int ok = 0;
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n && !ok; i++) {
    lua_rawgeti(L, -1, i);
    size_t len;
    const char *dir = lua_tolstring(L, -1, &len);
    ok = strncmp(real, dir, len) == 0 && real[len] == '/';
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return ok;
}

/* Loads a text chunk from a file under the service dirs; on failure pushes
 * nil and a message and returns 2. */
static int load_allowed(lua_State *L, const char *path) {
  if (!path) {
    lua_pushnil(L);
    lua_pushliteral(L, "loading from standard input is not available in the sandbox");
    return 2;
  }
  if (!path_allowed(L, path)) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: only files inside the service directories can be loaded",
                    path);
    return 2;
  }
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  return 1;
}

/* loadfile(path [, mode [, env]]) */
static int l_loadfile(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  int env = !lua_isnone(L, 3) ? 3 : 0;
  int r = load_allowed(L, path);
  if (r == 1 && env) {
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  }
  return r;
}

static int dofile_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L) - 1;
}

/* dofile(path): as the standard one, for files under the service dirs. */
static int l_dofile(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  lua_settop(L, 1);
  if (load_allowed(L, path) != 1) return lua_error(L);
  lua_callk(L, 0, LUA_MULTRET, 0, dofile_k);
  return dofile_k(L, 0, 0);
}

/* The searcher of Lua modules: package.path (the service dirs), text only.
 * Upvalue 1 is the real package table. */
static int search_lua(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_getfield(L, lua_upvalueindex(1), "searchpath");
  lua_pushvalue(L, 1);
  lua_getfield(L, lua_upvalueindex(1), "path");
  lua_call(L, 2, 2); /* [file|nil, err] */
  if (lua_isnil(L, -2)) return 1; /* the "no file ..." lines */
  const char *file = lua_tostring(L, -2);
  if (!path_allowed(L, file))
    return luaL_error(L, "module '%s': %s is outside the service directories", name, file);
  if (luaL_loadfilex(L, file, "t") != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, file,
                      lua_tostring(L, -1));
  lua_pushvalue(L, -3); /* the loader's second argument: the file */
  return 2;
}

/* collectgarbage: only the options that neither stop nor tune the collector:
 * a stopped one lets the worker's heap grow to its cap for every call on it,
 * and the settings are the runtime's choice (mw_vm.c). Upvalue 1 is the
 * standard one. */
static int l_collectgarbage(lua_State *L) {
  const char *opt = luaL_optstring(L, 1, "collect");
  if (strcmp(opt, "collect") != 0 && strcmp(opt, "count") != 0 &&
      strcmp(opt, "step") != 0 && strcmp(opt, "isrunning") != 0)
    return luaL_error(L, "collectgarbage('%s') is not available in the sandbox "
                         "(collect, count, step and isrunning are)", opt);
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* print(...): one info record in the server log, with the caller's position. */
static int l_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  if (!mw_log_enabled(MW_LOG_INFO)) return 0;
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  luaL_where(L, 1);
  size_t wlen;
  const char *where = lua_tolstring(L, -1, &wlen);
  if (wlen > 0 && where[wlen - 1] == ' ') wlen--; /* "file:line: " */
  if (wlen > 0 && where[wlen - 1] == ':') wlen--;
  const char *keys[] = {"at"};
  const char *vals[] = {where};
  mw_log_script(MW_LOG_INFO, msg, len, wlen ? 1 : 0, keys, vals, &wlen);
  return 0;
}

/* --- building the environment --------------------------------------------------- */

/* A new table with the named fields of the table at src (an absent one is
 * skipped), left on the stack. */
static void pick(lua_State *L, int src, const char *const *names) {
  src = lua_absindex(L, src);
  lua_newtable(L);
  for (; *names; names++) {
    if (lua_getfield(L, src, *names) == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    lua_setfield(L, -2, *names);
  }
}

/* Sets global and package.loaded entry `name` to the value at the top (which
 * it pops). */
static void set_lib(lua_State *L, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  lua_setglobal(L, name);
}

/* Freezes the global library `name` in place (global and package.loaded). */
static void freeze_lib(lua_State *L, const char *name) {
  lua_getglobal(L, name);
  freeze_top(L, name);
  set_lib(L, name);
}

static void remove_lib(lua_State *L, const char *name) {
  lua_pushnil(L);
  set_lib(L, name);
}

int mw_sandbox_on(lua_State *L) {
  int on = lua_rawgetp(L, LUA_REGISTRYINDEX, &frozen_key) == LUA_TTABLE;
  lua_pop(L, 1);
  return on;
}

int mw_sandbox_may_read(lua_State *L, const char *path) {
  return !mw_sandbox_on(L) || path_allowed(L, path);
}

static void new_weak_table(lua_State *L, const void *key) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

void mw_sandbox_install(lua_State *L, const char *const *dirs, size_t n_dirs) {
  new_weak_table(L, &frozen_key);
  new_weak_table(L, &proxy_key);
  lua_createtable(L, (int)n_dirs, 0);
  for (size_t i = 0; i < n_dirs; i++) {
    char real[PATH_MAX];
    if (!realpath(dirs[i], real)) continue; /* a missing dir allows nothing */
    lua_pushstring(L, real);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &dirs_key);

  /* The embedded library's environment: the globals, and the whole debug
   * library (moonwire.service names handlers' files with debug.getinfo). */
  lua_createtable(L, 0, 1);
  lua_getglobal(L, LUA_DBLIBNAME);
  lua_setfield(L, -2, LUA_DBLIBNAME);
  lua_createtable(L, 0, 1);
  lua_pushglobaltable(L);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &libenv_key);

  /* Base functions: binary chunks, files outside the service dirs, the
   * collector's settings and rawset on read-only tables are refused. */
  lua_getglobal(L, "load");
  lua_pushcclosure(L, l_load, 1);
  lua_setglobal(L, "load");
  lua_getglobal(L, "collectgarbage");
  lua_pushcclosure(L, l_collectgarbage, 1);
  lua_setglobal(L, "collectgarbage");
  lua_register(L, "loadfile", l_loadfile);
  lua_register(L, "dofile", l_dofile);
  lua_register(L, "rawset", l_rawset);
  lua_register(L, "print", l_print);

  /* string.dump makes binary chunks; nothing could load them, but nothing
   * needs them either. */
  lua_getglobal(L, LUA_STRLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);

  /* os: the clock and the environment; nothing that acts on the process or
   * the file system. getenv stays: handlers read their settings there. */
  static const char *const os_keep[] = {"time", "clock", "date", "difftime", "getenv",
                                        NULL};
  lua_getglobal(L, LUA_OSLIBNAME);
  pick(L, -1, os_keep);
  lua_remove(L, -2);
  set_lib(L, LUA_OSLIBNAME);
  static const char *const debug_keep[] = {"traceback", NULL};
  lua_getglobal(L, LUA_DBLIBNAME);
  pick(L, -1, debug_keep);
  lua_remove(L, -2);
  set_lib(L, LUA_DBLIBNAME);
  remove_lib(L, LUA_IOLIBNAME);

  /* require: package.preload (the embedded library) and Lua files of the
   * service dirs, text only; no C searchers, no loadlib. The real package
   * table stays require's own; handlers see a read-only part of it. */
  lua_getglobal(L, LUA_LOADLIBNAME); /* [package] */
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  lua_createtable(L, 2, 0);
  lua_getfield(L, -2, "searchers");
  lua_rawgeti(L, -1, 1); /* the preload searcher */
  lua_remove(L, -2);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, search_lua, 1);
  lua_rawseti(L, -2, 2);
  lua_setfield(L, -2, "searchers");
  lua_getglobal(L, LUA_LOADLIBNAME);
  static const char *const package_keep[] = {"path", "config", "searchpath", NULL};
  pick(L, -1, package_keep); /* [package, package, view] */
  lua_remove(L, -2);
  lua_newtable(L); /* package.loaded: a live, read-only view of it */
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  set_view(L, -2, -1, ro_newindex, "package.loaded");
  lua_pop(L, 1);
  lua_setfield(L, -2, "loaded");
  freeze_top(L, LUA_LOADLIBNAME);
  set_lib(L, LUA_LOADLIBNAME);
  lua_pop(L, 1); /* the real package */

  static const char *const frozen[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                       LUA_UTF8LIBNAME, LUA_COLIBNAME, LUA_OSLIBNAME,
                                       LUA_DBLIBNAME, NULL};
  for (const char *const *p = frozen; *p; p++) freeze_lib(L, *p);

  /* The string metatable: __index stays the real string table (method calls
   * on strings cost what they did); getmetatable("") shows a read-only copy
   * whose __index is the view. */
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1); /* ["", mt] */
  lua_createtable(L, 0, 1);
  lua_getglobal(L, LUA_STRLIBNAME);
  lua_setfield(L, -2, "__index");
  freeze_top(L, "string metatable");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 2);
}

void mw_sandbox_seal(lua_State *L) {
  if (!mw_sandbox_on(L)) return;
  /* The globals move to a table only the view reads: the globals table
   * itself stays empty, so every write to it meets __newindex. */
  lua_pushglobaltable(L);
  if (is_frozen(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  int g = lua_gettop(L);
  lua_newtable(L); /* [G, real] */
  lua_pushnil(L);
  while (lua_next(L, g)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, g + 1);
  }
  lua_pushnil(L);
  while (lua_next(L, g + 1)) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    lua_rawset(L, g);
  }
  set_view(L, g, g + 1, global_newindex, "_G");
  lua_pop(L, 2);
}

void mw_sandbox_library_env(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &libenv_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
}

void mw_sandbox_freeze_module(lua_State *L, const char *name) {
  if (!mw_sandbox_on(L)) return;
  /* moonwire.core opens the handle metatables: hidden from getmetatable, so
   * no handler can change the methods every call's ctx and stream use. */
  static const char *const mts[] = {MW_MT_CTX, MW_MT_STREAM, MW_MT_STATUS, NULL};
  for (const char *const *p = mts; *p; p++) {
    if (luaL_getmetatable(L, *p) == LUA_TTABLE) {
      lua_pushboolean(L, 0);
      lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
  }
  freeze_top(L, name);
}
