/* Building a generation, and its end when its router's last reference
 * goes. */
#include "gen/mw_gen.h"

#include <stdlib.h>

#include "lua/mw_backend.h"

struct mw_gen {
  unsigned id;
  mw_schema *schema;   /* owned */
  mw_methods *methods; /* owned; borrows schema */
  mw_lua_backend *lua; /* owned; borrows methods */
  mw_router *router;   /* the generation's lifetime: freed with its last ref */
};

static void gen_free(mw_gen *g) {
  mw_lua_backend_free(g->lua);
  mw_methods_free(g->methods);
  mw_schema_free(g->schema);
  free(g);
}

static void on_router_released(void *self) { gen_free(self); }

mw_gen *mw_gen_build(const mw_gen_options *opt, mw_diag *diag) {
  const mw_config *cfg = opt->config;
  mw_schema_input in = {
      .dirs = (const char *const *)cfg->services.v,
      .n_dirs = cfg->services.n,
      .proto_path = (const char *const *)cfg->proto_path.v,
      .n_proto_path = cfg->proto_path.n,
      .protos = (const char *const *)cfg->protos.v,
      .n_protos = cfg->protos.n,
  };
  mw_schema *schema = mw_schema_load(&in, diag);
  if (!schema) {
    /* Without a schema the scripts cannot run, but their syntax can still
     * be checked, so that one pass reports both kinds of problem. */
    mw_lua_check_syntax(in.dirs, in.n_dirs, diag);
    return NULL;
  }
  mw_gen *g = calloc(1, sizeof *g);
  if (!g) {
    mw_schema_free(schema);
    mw_diag_add(diag, "out of memory");
    return NULL;
  }
  g->id = opt->id;
  g->schema = schema;
  g->methods = mw_methods_new(schema);
  if (!g->methods) goto oom;
  mw_lua_options lo = {
      .methods = g->methods,
      .dirs = in.dirs,
      .n_dirs = in.n_dirs,
      .n_states = opt->n_states,
      .mem = opt->mem,
      .handler_cpu_s = (double)cfg->limits.handler_cpu_ms / 1000.0,
  };
  g->lua = mw_lua_backend_new(&lo, diag);
  if (!g->lua) {
    gen_free(g);
    return NULL;
  }
  g->router = mw_router_new(g->methods, g->id, (mw_router_owner){g, on_router_released});
  if (!g->router) goto oom;
  for (size_t i = 0; i < mw_methods_count(g->methods); i++)
    mw_router_bind(g->router, i, mw_lua_backend_handler(g->lua, i));
  return g;
oom:
  mw_diag_add(diag, "out of memory while building the service generation");
  gen_free(g);
  return NULL;
}

const mw_schema *mw_gen_schema(const mw_gen *g) { return g->schema; }
const mw_methods *mw_gen_methods(const mw_gen *g) { return g->methods; }
mw_router *mw_gen_router(const mw_gen *g) { return g->router; }

int mw_gen_has_handler(const mw_gen *g, size_t i) {
  return mw_router_handler(g->router, i) != NULL;
}

size_t mw_gen_handler_count(const mw_gen *g) {
  size_t n = 0;
  for (size_t i = 0; i < mw_methods_count(g->methods); i++) n += mw_gen_has_handler(g, i);
  return n;
}

void mw_gen_unref(mw_gen *g) {
  if (g) mw_router_unref(g->router);
}

/* --- per-worker hooks ---------------------------------------------------------- */

static void switch_router(void *self, mw_router *from, mw_router *to, int worker) {
  mw_gen *old = mw_router_owner_self(from), *next = mw_router_owner_self(to);
  mw_lua_backend_switch(old->lua, next->lua, worker);
}

static void thread_exit(void *self, int worker) { mw_lua_thread_exit(); }

static const mw_worker_hooks hooks = {NULL, switch_router, thread_exit};

const mw_worker_hooks *mw_gen_worker_hooks(void) { return &hooks; }
