/* The Lua sandbox: what service scripts, the modules they require and their
 * handlers can reach (docs/lua-api.md, "Sandbox"). On unless lua.unsafe.
 *
 * A state gets it in two steps. mw_sandbox_install, at state creation,
 * replaces the standard libraries by allow-listed, read-only views: no io,
 * a reduced os and debug, no C modules, text chunks only, file loading only
 * inside the service directories, print to the server log. mw_sandbox_seal,
 * once every script has run and the handlers are bound, makes the globals
 * read-only: what the scripts defined stays visible, and a write from then
 * on raises, so one call cannot leave data for another in a global.
 *
 * The runtime keeps what it needs: the budget hook is set from C, and the
 * embedded library (lua/moonwire/) runs with the full debug library. */
#ifndef MW_SANDBOX_H
#define MW_SANDBOX_H

#include <stddef.h>

#include <lua.h>

/* Installs the sandbox in a state made with luaL_openlibs whose package.path
 * is already set; dirs are the service directories (loadfile, dofile and
 * require may read files under them only). */
void mw_sandbox_install(lua_State *L, const char *const *dirs, size_t n_dirs);
/* Makes the globals read-only. A no-op in a state without the sandbox. */
void mw_sandbox_seal(lua_State *L);
/* Whether L has the sandbox. */
int mw_sandbox_on(lua_State *L);
/* Whether a script of L may read the file at path: always without the
 * sandbox, else when it lies under a service directory (links resolved). */
int mw_sandbox_may_read(lua_State *L, const char *path);

/* For the loaders of the embedded library, in a sandboxed state. Before the
 * chunk at the top runs: gives it the library's environment (the globals,
 * plus the full debug library). After it has run: replaces the module at the
 * top by a read-only view of it (tables inside it too), which is what every
 * require of it then returns. Both are no-ops without the sandbox. */
void mw_sandbox_library_env(lua_State *L);
void mw_sandbox_freeze_module(lua_State *L, const char *name);

#endif
