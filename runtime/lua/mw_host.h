/* The Lua host: lua_States, the moonwire.core module Lua sees, one coroutine
 * per call and the resume loop. Lua never sees a grpc_call: everything goes
 * through mw_call.h. */
#ifndef MW_HOST_H
#define MW_HOST_H

#include <lua.h>

#include "base/mw_diag.h"
#include "gen/mw_gen.h"

/* Creates a state for worker `worker` of generation g: standard libraries,
 * package.path with the Lua library and the service dirs, moonwire.core.
 * mem may be NULL. Returns NULL on allocation failure. */
lua_State *mw_host_new_state(mw_gen *g, int worker, mw_lua_mem *mem,
                             const char *const *dirs, size_t n_dirs);

/* Closes a state made by mw_host_new_state, and its allocator. */
void mw_host_close_state(lua_State *L);

/* Runs every top-level *.lua of the service dirs in L, then resolves the
 * handlers they registered into handlers[] (one registry ref per method of g,
 * LUA_NOREF when none). Problems go to diag with file and line. */
int mw_host_load_scripts(lua_State *L, mw_gen *g, const char *const *dirs,
                         size_t n_dirs, int *handlers, mw_diag *diag);

/* Compiles (without running) every top-level *.lua of the dirs and reports
 * syntax errors: used when the protos failed, so one `check` still shows
 * both kinds of problem. Returns the number of files that failed. */
int mw_host_check_syntax(const char *const *dirs, size_t n_dirs, mw_diag *diag);

/* Opens moonwire.core on L (pushes the module table). */
int mw_host_open_core(lua_State *L);

/* The directory holding the Lua library (lua/): $MOONWIRE_LUA_DIR, else the
 * source tree's lua/ the binary was built from. */
const char *mw_host_lua_dir(void);

#endif
