/* The Lua backend of one generation: a Lua state per worker with the
 * service scripts loaded, and one mw_handler per method that has a Lua
 * handler (core/mw_handler.h). The generation binds these handlers into
 * its router; the call layer never learns it is Lua. */
#ifndef MW_BACKEND_H
#define MW_BACKEND_H

#include <stddef.h>

#include "base/mw_diag.h"
#include "config/mw_config.h"
#include "core/mw_handler.h"
#include "lua/mw_lalloc.h"
#include "schema/mw_methods.h"

typedef struct mw_lua_backend mw_lua_backend;

typedef struct mw_lua_options {
  const mw_methods *methods; /* borrowed: must outlive the backend */
  const char *const *builtins; /* built-in service scripts to run first
                                  ("health.lua": mw_vm_run_builtin) */
  size_t n_builtins;
  const char *const *dirs;   /* service directories */
  size_t n_dirs;
  int n_states;              /* one per worker (1 for a check) */
  mw_lua_mem *mem;           /* n_states accounts (NULL: no cap) */
  double handler_cpu_s;      /* limits.handler_cpu_ms, in seconds; 0: none */
  double handler_slice_s;    /* limits.handler_slice_ms, in seconds; 0: none */
  int unsafe;                /* lua.unsafe: states without the sandbox */
  unsigned generation;       /* the generation's id (core.generation()) */
  const mw_config *cfg;      /* borrowed while the backend is built: the
                                interceptor entries the bind instantiates
                                (NULL: none) */
} mw_lua_options;

/* Builds every state: runs the service scripts and binds the handlers they
 * declared. Returns NULL with every problem in diag (file and line). */
mw_lua_backend *mw_lua_backend_new(const mw_lua_options *o, mw_diag *diag);
/* The handler of method i, or NULL when the scripts declare none. */
mw_handler *mw_lua_backend_handler(mw_lua_backend *b, size_t i);
/* Whether method i's handler is the stub engine's (lua/moonwire/stub.lua)
 * rather than a script's: for what check and serve report. */
int mw_lua_backend_is_stub(const mw_lua_backend *b, size_t i);
/* Worker `worker` moves from `from` to `to` (on its thread): module state
 * is handed over (mw.on_reload / mw.on_restore). */
void mw_lua_backend_switch(mw_lua_backend *from, mw_lua_backend *to, int worker);
/* The server began to drain: worker `worker`'s state runs its mw.on_drain
 * functions (on the worker's thread). */
void mw_lua_backend_drain(mw_lua_backend *b, int worker);
/* Frees the states; safe with NULL. No call may still run on them. */
void mw_lua_backend_free(mw_lua_backend *b);

/* Reports the syntax errors of the service scripts without running them. */
int mw_lua_check_syntax(const char *const *dirs, size_t n_dirs, mw_diag *diag);
/* A worker thread ends: frees what this thread cached. */
void mw_lua_thread_exit(void);

#endif
