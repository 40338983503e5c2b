/* Building a generation, and its end when its router's last reference
 * goes. */
#include "gen/mw_gen.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "codec/mw_transcode.h"
#include "lua/mw_backend.h"

struct mw_gen {
  unsigned id;
  mw_schema *schema;   /* owned */
  mw_methods *methods; /* owned; borrows schema */
  mw_lua_backend *lua; /* owned; borrows methods */
  mw_router *router;   /* the generation's lifetime: freed with its last ref */
  mw_transcode *rest;  /* owned: REST routes (google.api.http), maybe empty */
  int builtin_on[2];   /* which of `builtins` below it serves */
};

static void gen_free(mw_gen *g) {
  mw_transcode_free(g->rest);
  mw_lua_backend_free(g->lua);
  mw_methods_free(g->methods);
  mw_schema_free(g->schema);
  free(g);
}

static void on_router_released(void *self) { gen_free(self); }

/* The built-in services (the scripts of services/ over gRPC's own protos), each on
 * unless the config turns it off. Their protos join the config's `protos`,
 * so they are served, listed and reflected like the user's. */
typedef struct builtin {
  const char *script;
  const char *protos[2];
  size_t offset; /* of the config's int that turns it on */
} builtin;

static const builtin builtins[] = {
    {"health.lua", {"grpc/health/v1/health.proto", NULL}, offsetof(mw_config, health)},
    {"reflection.lua",
     {"grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"},
     offsetof(mw_config, reflection)},
};
#define N_BUILTINS (sizeof builtins / sizeof builtins[0])
_Static_assert(N_BUILTINS == sizeof ((mw_gen *)0)->builtin_on / sizeof(int),
               "one builtin_on flag per built-in service");

static int builtin_on(const mw_config *cfg, const builtin *b) {
  return *(const int *)((const char *)cfg + b->offset);
}

/* The REST route table of the served protos' google.api.http options and
 * the config's http.rules (their rules borrowed for the build, which copies
 * what it keeps). NULL with diag filled when a rule is wrong, so that check
 * and reload report it like a proto error. */
static mw_transcode *rest_routes(const mw_config *cfg, const mw_schema *schema, mw_diag *diag) {
  size_t n_svc = mw_schema_service_count(schema), n_more = 0;
  for (size_t i = 0; i < cfg->n_http_rules; i++) n_more += cfg->http_rules[i].n_additional;
  const upb_ServiceDef **svcs = malloc((n_svc + 1) * sizeof *svcs);
  mw_transcode_rule *rules = malloc((cfg->n_http_rules + 1) * sizeof *rules);
  mw_transcode_rule *more = malloc((n_more + 1) * sizeof *more);
  mw_transcode *t = NULL;
  if (svcs && rules && more) {
    for (size_t i = 0; i < n_svc; i++) svcs[i] = mw_schema_service(schema, i);
    size_t m = 0;
    for (size_t i = 0; i < cfg->n_http_rules; i++) {
      const mw_config_http_rule *c = &cfg->http_rules[i];
      rules[i] = (mw_transcode_rule){c->selector, c->method, c->path, c->body, c->response_body,
                                     more + m, c->n_additional};
      for (size_t k = 0; k < c->n_additional; k++, m++) {
        const mw_config_http_rule *b = &c->additional[k];
        more[m] = (mw_transcode_rule){NULL, b->method, b->path, b->body, b->response_body, NULL, 0};
      }
    }
    mw_diag d = {0};
    t = mw_transcode_build(mw_schema_pool(schema), svcs, n_svc, rules, cfg->n_http_rules, &d);
    for (size_t i = 0; i < d.n; i++)
      mw_diag_add(diag, "%s: %s", cfg->file ? cfg->file : "config", d.msgs[i] ? d.msgs[i] : "?");
    if (!t && d.n == 0) mw_diag_add(diag, "out of memory while building the REST routes");
    mw_diag_free(&d);
  } else {
    mw_diag_add(diag, "out of memory while building the REST routes");
  }
  free(svcs);
  free(rules);
  free(more);
  return t;
}

mw_gen *mw_gen_build(const mw_gen_options *opt, mw_diag *diag) {
  const mw_config *cfg = opt->config;
  /* The config's names and the built-ins' (borrowed strings; the array is
   * freed once the schema is loaded). */
  const char **protos = malloc((cfg->protos.n + 2 * N_BUILTINS) * sizeof *protos);
  const char *scripts[N_BUILTINS];
  size_t n_protos = 0, n_scripts = 0;
  if (!protos) {
    mw_diag_add(diag, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < cfg->protos.n; i++) protos[n_protos++] = cfg->protos.v[i];
  for (size_t i = 0; i < N_BUILTINS; i++) {
    if (!builtin_on(cfg, &builtins[i])) continue;
    scripts[n_scripts++] = builtins[i].script;
    for (size_t k = 0; k < 2 && builtins[i].protos[k]; k++) protos[n_protos++] = builtins[i].protos[k];
  }
  mw_schema_input in = {
      .dirs = (const char *const *)cfg->services.v,
      .n_dirs = cfg->services.n,
      .proto_path = (const char *const *)cfg->proto_path.v,
      .n_proto_path = cfg->proto_path.n,
      .protos = protos,
      .n_protos = n_protos,
  };
  mw_schema *schema = mw_schema_load(&in, diag);
  free(protos);
  in.protos = NULL;
  in.n_protos = 0;
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
  for (size_t i = 0; i < N_BUILTINS; i++) g->builtin_on[i] = builtin_on(cfg, &builtins[i]);
  g->methods = mw_methods_new(schema);
  if (!g->methods) goto oom;
  /* A setting for a method nobody defines is a typo, not a no-op. */
  int unknown = 0;
  for (size_t i = 0; i < cfg->n_methods; i++) {
    const char *p = cfg->methods[i].path;
    if (cfg->methods[i].service ? mw_methods_has_service(g->methods, p, strlen(p))
                                : mw_methods_find(g->methods, p, strlen(p)) != NULL)
      continue;
    mw_diag_add(diag, "%s: methods: %s names no %s of the loaded protos",
                cfg->file ? cfg->file : "config", p,
                cfg->methods[i].service ? "service" : "method");
    unknown = 1;
  }
  if (unknown) {
    gen_free(g);
    return NULL;
  }
  g->rest = rest_routes(cfg, schema, diag);
  if (!g->rest) {
    gen_free(g);
    return NULL;
  }
  mw_lua_options lo = {
      .methods = g->methods,
      .builtins = scripts,
      .n_builtins = n_scripts,
      .dirs = in.dirs,
      .n_dirs = in.n_dirs,
      .n_states = opt->n_states,
      .mem = opt->mem,
      .handler_cpu_s = (double)cfg->limits.handler_cpu_ms / 1000.0,
      .handler_slice_s = (double)cfg->limits.handler_slice_ms / 1000.0,
      .unsafe = cfg->lua.unsafe,
      .cfg = cfg,
      .generation = opt->id,
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
const mw_transcode *mw_gen_rest(const mw_gen *g) { return g->rest; }

int mw_gen_is_builtin_service(const mw_gen *g, const upb_ServiceDef *svc) {
  const char *file = upb_FileDef_Name(upb_ServiceDef_File(svc));
  for (size_t b = 0; b < N_BUILTINS; b++) {
    for (size_t k = 0; g->builtin_on[b] && k < 2 && builtins[b].protos[k]; k++)
      if (strcmp(file, builtins[b].protos[k]) == 0) return 1;
  }
  return 0;
}

int mw_gen_is_builtin(const mw_gen *g, size_t i) {
  return mw_gen_is_builtin_service(g, upb_MethodDef_Service(mw_methods_at(g->methods, i)->def));
}

int mw_gen_has_handler(const mw_gen *g, size_t i) {
  return mw_router_handler(g->router, i) != NULL;
}

int mw_gen_is_stub(const mw_gen *g, size_t i) { return mw_lua_backend_is_stub(g->lua, i); }

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

static void drain(void *self, mw_router *current, int worker) {
  mw_gen *g = mw_router_owner_self(current);
  mw_lua_backend_drain(g->lua, worker);
}

static void thread_exit(void *self, int worker) { mw_lua_thread_exit(); }

static const mw_worker_hooks hooks = {NULL, switch_router, drain, thread_exit};

const mw_worker_hooks *mw_gen_worker_hooks(void) { return &hooks; }
