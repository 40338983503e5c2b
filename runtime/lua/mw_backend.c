/* The Lua backend: states per worker, handlers per state and method, and
 * the mw_handler of each bound method. */
#include "lua/mw_backend.h"

#include <stdlib.h>

#include <lauxlib.h>

#include "lua/l_api.h"
#include "lua/mw_handoff.h"
#include "lua/mw_lcall.h"
#include "lua/mw_lutil.h"
#include "lua/mw_vm.h"
#include "lua/mw_sandbox.h"

/* A bound handler: its registry ref, and how many parameters it declares
 * (looked at once, at bind time, so that a call makes ctx only for a
 * function that can receive it: mw_lcall_start). */
typedef struct lua_bound {
  int ref;    /* registry ref, or LUA_NOREF: no handler */
  int params; /* declared parameters, MW_LCALL_VARARG for f(...) or C */
} lua_bound;

typedef struct lua_method {
  mw_handler base; /* first: the router hands this pointer back */
  mw_lua_backend *b;
  size_t index;
} lua_method;

struct mw_lua_backend {
  int n_states;
  lua_State **states; /* owned, one per worker */
  mw_lstate **lstates; /* each state's record (owned by the state) */
  lua_bound **bound;  /* owned: bound[w][m], the handler of method m in state w */
  lua_method *methods; /* owned, one per method */
  unsigned char *stub; /* owned: stub[m] = 1 when state 0 bound the stub engine's */
  size_t n_methods;
};

static void start(mw_handler *hd, mw_call *c, const char *first, size_t first_len,
                  int has_first) {
  lua_method *lm = (lua_method *)hd;
  int w = mw_call_worker_id(c);
  const lua_bound *fn = &lm->b->bound[w][lm->index];
  mw_lcall_start(lm->b->lstates[w], fn->ref, fn->params, c, first, first_len, has_first);
}

/* bind(index, fn [, is_stub]), called by moonwire.service for each
 * handler (the function it binds: the handler itself, or its interceptors'
 * wrapper, which takes ctx): upvalue 1 is the state's bound array, upvalue
 * 2 the stub flags (NULL but for state 0). */
static int l_bind(lua_State *L) {
  lua_bound *bound = lua_touserdata(L, lua_upvalueindex(1));
  unsigned char *stub = lua_touserdata(L, lua_upvalueindex(2));
  lua_Integer i = luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (stub) stub[i] = (unsigned char)lua_toboolean(L, 3);
  lua_settop(L, 2);
  lua_Debug ar;
  lua_pushvalue(L, 2);
  lua_getinfo(L, ">u", &ar); /* a C function reads as vararg */
  lua_bound *b = &bound[i];
  if (b->ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, b->ref);
  b->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  b->params = ar.isvararg ? MW_LCALL_VARARG : ar.nparams; /* never 255: Lua allows < 250 */
  return 0;
}

/* Binds what the scripts declared in L through moonwire.service; problems
 * go to diag. */
static int bind_handlers(lua_State *L, lua_bound *bound, unsigned char *stub, mw_diag *diag) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  int declared = lua_getfield(L, -1, "moonwire.service") == LUA_TTABLE;
  lua_remove(L, -2); /* [service] */
  if (!declared) {
    /* No script used mw.service: the config's interceptor entries are
     * still instantiated, so that a bad one fails the load. */
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_getfield(L, -1, "moonwire.service");
    lua_remove(L, -2);
    lua_pushliteral(L, "moonwire.service");
    if (mw_lutil_pcall(L, 1, 1) != LUA_OK || !lua_istable(L, -1)) {
      mw_diag_add(diag, "loading moonwire.service: %s",
                  lua_isstring(L, -1) ? lua_tostring(L, -1) : "not a table");
      lua_pop(L, 1);
      return -1;
    }
  }
  lua_getfield(L, -1, "bind");
  lua_remove(L, -2); /* [bind] */
  lua_pushlightuserdata(L, bound);
  lua_pushlightuserdata(L, stub);
  lua_pushcclosure(L, l_bind, 2); /* [bind, l_bind] */
  if (mw_lutil_pcall(L, 1, 1) != LUA_OK) {
    mw_diag_add(diag, "binding handlers: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  int bad = 0; /* [problems] */
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    mw_diag_add(diag, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    bad = 1;
  }
  lua_pop(L, 1);
  return bad ? -1 : 0;
}

mw_lua_backend *mw_lua_backend_new(const mw_lua_options *o, mw_diag *diag) {
  mw_lua_backend *b = calloc(1, sizeof *b);
  if (!b) goto oom;
  b->n_methods = mw_methods_count(o->methods);
  b->states = calloc((size_t)o->n_states, sizeof *b->states);
  b->bound = calloc((size_t)o->n_states, sizeof *b->bound);
  b->lstates = calloc((size_t)o->n_states, sizeof *b->lstates);
  b->methods = calloc(b->n_methods ? b->n_methods : 1, sizeof *b->methods);
  b->stub = calloc(b->n_methods ? b->n_methods : 1, 1);
  if (!b->states || !b->bound || !b->lstates || !b->methods || !b->stub) goto oom;
  b->n_states = o->n_states;
  for (size_t k = 0; k < b->n_methods; k++)
    b->methods[k] = (lua_method){{start}, b, k};
  for (int i = 0; i < o->n_states; i++) {
    b->bound[i] = malloc((b->n_methods ? b->n_methods : 1) * sizeof(lua_bound));
    if (!b->bound[i]) goto oom;
    for (size_t k = 0; k < b->n_methods; k++) b->bound[i][k] = (lua_bound){LUA_NOREF, 0};
    mw_vm_options vo = {.worker = i, .mem = o->mem ? &o->mem[i] : NULL,
                        .methods = o->methods, .handler_cpu_s = o->handler_cpu_s,
                        .handler_slice_s = o->handler_slice_s,
                        .dirs = o->dirs, .n_dirs = o->n_dirs, .unsafe = o->unsafe};
    lua_State *L = b->states[i] = mw_vm_new(&vo);
    if (!L) goto oom;
    b->lstates[i] = mw_lstate_of(L);
    /* Every state loads the same scripts: the first reports the problems,
     * the others can only fail where the first did. */
    mw_diag scratch = {0};
    mw_diag *d = i == 0 ? diag : &scratch;
    int bad = 0;
    b->lstates[i]->cfg = o->cfg; /* for the scripts and the bind */
    for (size_t k = 0; k < o->n_builtins; k++)
      if (mw_vm_run_builtin(L, o->builtins[k], d) != 0) bad = 1;
    if (mw_vm_run_scripts(L, o->dirs, o->n_dirs, d) != 0) bad = 1;
    b->lstates[i]->generation = o->generation;
    if (bind_handlers(L, b->bound[i], i == 0 ? b->stub : NULL, d) != 0) bad = 1;
    b->lstates[i]->cfg = NULL;
    mw_sandbox_seal(L); /* the scripts have run: globals are read-only now */
    lua_gc(L, LUA_GCCOLLECT);
    if (i > 0 && bad) mw_diag_move(diag, &scratch);
    mw_diag_free(&scratch);
    if (bad) {
      mw_lua_backend_free(b);
      return NULL;
    }
  }
  return b;
oom:
  mw_diag_add(diag, "out of memory while building the service generation");
  mw_lua_backend_free(b);
  return NULL;
}

mw_handler *mw_lua_backend_handler(mw_lua_backend *b, size_t i) {
  return b->n_states > 0 && b->bound[0][i].ref != LUA_NOREF ? &b->methods[i].base : NULL;
}

int mw_lua_backend_is_stub(const mw_lua_backend *b, size_t i) {
  return b->n_states > 0 && b->bound[0][i].ref != LUA_NOREF && b->stub[i];
}

void mw_lua_backend_switch(mw_lua_backend *from, mw_lua_backend *to, int worker) {
  if (worker >= from->n_states || worker >= to->n_states) return;
  mw_handoff_run(from->states[worker], to->states[worker]);
}

void mw_lua_backend_drain(mw_lua_backend *b, int worker) {
  if (worker < b->n_states) mw_ldrain_run(b->states[worker]);
}

void mw_lua_backend_free(mw_lua_backend *b) {
  if (!b) return;
  for (int i = 0; i < b->n_states; i++) {
    if (b->states) mw_vm_close(b->states[i]);
    if (b->bound) free(b->bound[i]);
  }
  free(b->states);
  free(b->bound);
  free(b->lstates);
  free(b->methods);
  free(b->stub);
  free(b);
}

int mw_lua_check_syntax(const char *const *dirs, size_t n_dirs, mw_diag *diag) {
  return mw_vm_check_syntax(dirs, n_dirs, diag);
}

void mw_lua_thread_exit(void) { mw_lcall_thread_exit(); }
