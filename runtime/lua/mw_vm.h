/* Lua states: made with Moonwire's allocator and libraries, the embedded
 * Lua library and moonwire.core preloaded; service scripts loaded and
 * checked; protected calls with a traceback. */
#ifndef MW_VM_H
#define MW_VM_H

#include <stddef.h>

#include <lua.h>

#include "base/mw_diag.h"
#include "lua/mw_lalloc.h"
#include "lua/mw_lstate.h"

typedef struct mw_vm_options {
  int worker;                /* the worker the state serves */
  mw_lua_mem *mem;           /* the worker's memory account (NULL: no cap) */
  const mw_methods *methods; /* the generation's methods (borrowed) */
  double handler_cpu_s;      /* limits.handler_cpu_ms in seconds; 0: none */
  double handler_slice_s;    /* limits.handler_slice_ms in seconds; 0: none */
  const char *const *dirs;   /* service directories, for package.path */
  size_t n_dirs;
  int unsafe;                /* lua.unsafe: no sandbox (lua/mw_sandbox.h) */
} mw_vm_options;

/* A new state with its mw_lstate record; NULL when out of memory. */
lua_State *mw_vm_new(const mw_vm_options *o);
/* Closes a state made by mw_vm_new, and its allocator. NULL is ignored. */
void mw_vm_close(lua_State *L);

/* Whether a file is a spec of moonwire test (NAME_spec.lua), which
 * scripts, check and serve leave alone. */
int mw_vm_is_spec(const char *path);
/* Runs every top-level *.lua of the dirs in L but the specs, in
 * alphabetical order.
 * Problems go to diag with file and line; returns how many files failed
 * (an unreadable dir counts). */
int mw_vm_run_scripts(lua_State *L, const char *const *dirs, size_t n_dirs,
                      mw_diag *diag);
/* Runs the built-in service script `name` ("health.lua": services/, compiled
 * into the binary) in L. Problems go to diag; returns 0 or -1. */
int mw_vm_run_builtin(lua_State *L, const char *name, mw_diag *diag);
/* Compiles (without running) the same files and reports syntax errors:
 * used when the protos failed, so one `check` still shows both kinds of
 * problem. Returns the number of files that failed. */
int mw_vm_check_syntax(const char *const *dirs, size_t n_dirs, mw_diag *diag);

#endif
