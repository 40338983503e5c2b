/* Lua states and service scripts. */
#include "lua/mw_vm.h"

#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "base/mw_fs.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"
#include "lua/mw_embed.h"
#include "lua/mw_lutil.h"
#include "lua/mw_sandbox.h"

static int open_core(lua_State *L) {
  mw_lcore_open(L);
  mw_sandbox_freeze_module(L, "moonwire.core");
  return 1;
}

void mw_vm_close(lua_State *L) {
  if (!L) return;
  void *a = NULL;
  lua_getallocf(L, &a);
  lua_close(L);
  mw_lalloc_free(a);
}

lua_State *mw_vm_new(const mw_vm_options *o) {
  mw_lalloc *a = mw_lalloc_new(o->mem);
  lua_State *L = a ? lua_newstate(mw_lalloc_fn, a) : NULL;
  if (!L) {
    mw_lalloc_free(a);
    return NULL;
  }
  /* No call runs in the main thread: its extra space (copied into every
   * coroutine made from it) says so. */
  *(void **)lua_getextraspace(L) = NULL;
  luaL_openlibs(L);
  mw_lpattern_install(L);
  /* Calls leave short-lived garbage: the generational collector keeps its
   * cost per call low. A minor collection walks every coroutine of the pool
   * whatever the garbage, so it runs when the heap has grown by 100 % rather
   * than Lua's default 20 %: with 4 KiB requests that cut the collector's
   * share of a call by about 2,400 instructions. Lua's collector does a major
   * (full) collection instead of a minor one whenever the heap has grown by
   * more than the major multiplier since the last major: at 100 % against
   * 100 % that was nearly every step (the heap at a step is twice what the
   * minor left), so every 4 KiB streamed message paid a share of walking
   * the whole heap, ~3,100 instructions. At 300 % a major comes when what
   * survives minors has doubled. */
  lua_gc(L, LUA_GCGEN, 100, 300);
  mw_lstate *st = mw_lstate_new(L);
  if (!st) {
    mw_vm_close(L);
    return NULL;
  }
  st->worker = o->worker;
  st->methods = o->methods;
  st->handler_cpu_s = o->handler_cpu_s;
  st->handler_slice_s = o->handler_slice_s;
  /* package.path: each service directory; the library is preloaded. */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < o->n_dirs; i++) {
    lua_pushfstring(L, "%s%s/?.lua;%s/?/init.lua", i ? ";" : "", o->dirs[i], o->dirs[i]);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_getglobal(L, "package"); /* [path, package] */
  lua_insert(L, -2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  mw_embed_install(L);
  mw_co_install_hook(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open_core);
  lua_setfield(L, -2, "moonwire.core");
  lua_pop(L, 1);
  if (!o->unsafe) mw_sandbox_install(L, o->dirs, o->n_dirs);
  return L;
}

/* --- service scripts ----------------------------------------------------------- */

/* A traceback's message without the traceback (a message may have lines
 * of its own: require's list of the files it looked for). */
static void add_first_line(mw_diag *diag, const char *msg) {
  const char *nl = strstr(msg, "\nstack traceback:");
  mw_diag_add(diag, "%.*s", nl ? (int)(nl - msg) : (int)strlen(msg), msg);
}

static int run_script(lua_State *L, const char *path, mw_diag *diag) {
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    mw_diag_add(diag, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  if (mw_lutil_pcall(L, 0, 0) != LUA_OK) {
    add_first_line(diag, lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

static int compile_only(lua_State *L, const char *path, mw_diag *diag) {
  int rc = luaL_loadfilex(L, path, "t");
  if (rc != LUA_OK) mw_diag_add(diag, "%s", lua_tostring(L, -1));
  lua_settop(L, 0);
  return rc != LUA_OK;
}

int mw_vm_is_spec(const char *path) {
  size_t n = strlen(path), k = sizeof "_spec.lua" - 1;
  return n >= k && strcmp(path + n - k, "_spec.lua") == 0;
}

/* Runs fn on every service script: the top-level regular *.lua files of
 * each dir, in alphabetical order. Returns how many failed; an unreadable
 * dir counts, and is reported unless quiet_dirs. */
typedef int (*script_fn)(lua_State *L, const char *path, mw_diag *diag);

static int for_each_script(lua_State *L, const char *const *dirs, size_t n_dirs,
                           script_fn fn, int quiet_dirs, mw_diag *diag) {
  int bad = 0;
  for (size_t i = 0; i < n_dirs; i++) {
    mw_strvec paths = {0};
    if (mw_fs_list(dirs[i], ".lua", &paths, NULL) != 0) {
      if (!quiet_dirs) mw_diag_add(diag, "%s: cannot read the directory", dirs[i]);
      bad++;
      continue;
    }
    for (size_t k = 0; k < paths.n; k++)
      if (!mw_vm_is_spec(paths.v[k]) && fn(L, paths.v[k], diag) != 0) bad++;
    mw_strvec_free(&paths);
  }
  return bad;
}

/* The built-in services (the .lua files of services/), generated at build
 * time. */
extern const mw_embedded mw_builtin_services[];
extern const size_t mw_builtin_services_count;

int mw_vm_run_builtin(lua_State *L, const char *name, mw_diag *diag) {
  for (size_t i = 0; i < mw_builtin_services_count; i++) {
    const mw_embedded *e = &mw_builtin_services[i];
    if (strcmp(e->path, name) != 0) continue;
    lua_pushfstring(L, "@services/%s", e->path);
    int rc = luaL_loadbufferx(L, e->data, e->len, lua_tostring(L, -1), "t");
    lua_remove(L, -2);
    if (rc != LUA_OK || mw_lutil_pcall(L, 0, 0) != LUA_OK) {
      add_first_line(diag, lua_tostring(L, -1));
      lua_pop(L, 1);
      return -1;
    }
    return 0;
  }
  mw_diag_add(diag, "no built-in service script %s", name);
  return -1;
}

int mw_vm_run_scripts(lua_State *L, const char *const *dirs, size_t n_dirs,
                      mw_diag *diag) {
  return for_each_script(L, dirs, n_dirs, run_script, 0, diag);
}

int mw_vm_check_syntax(const char *const *dirs, size_t n_dirs, mw_diag *diag) {
  lua_State *L = luaL_newstate();
  if (!L) return 0;
  /* an unreadable dir was reported with the protos already */
  int bad = for_each_script(L, dirs, n_dirs, compile_only, 1, diag);
  lua_close(L);
  return bad;
}
