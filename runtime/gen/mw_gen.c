#include "gen/mw_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/mw_host.h"
#include "base/mw_log.h"
#include "base/mw_util.h"

const char *mw_kind_name(mw_kind k) {
  switch (k) {
  case MW_UNARY: return "unary";
  case MW_SERVER_STREAMING: return "server-streaming";
  case MW_CLIENT_STREAMING: return "client-streaming";
  case MW_BIDI_STREAMING: return "bidi-streaming";
  }
  return "?";
}

static size_t hash_path(const char *s, size_t len) { return (size_t)mw_fnv1a(s, len); }

static int build_index(mw_gen *g) {
  size_t cap = 16;
  while (cap < g->n_methods * 2) cap *= 2;
  g->index = calloc(cap, sizeof *g->index);
  if (!g->index) return -1;
  g->index_cap = cap;
  for (size_t i = 0; i < g->n_methods; i++) {
    const char *p = g->methods[i].path;
    size_t slot = hash_path(p, strlen(p)) & (cap - 1);
    while (g->index[slot]) slot = (slot + 1) & (cap - 1);
    g->index[slot] = i + 1;
  }
  return 0;
}

const mw_method *mw_gen_find(const mw_gen *g, const char *path, size_t len) {
  size_t slot = hash_path(path, len) & (g->index_cap - 1);
  while (g->index[slot]) {
    const mw_method *m = &g->methods[g->index[slot] - 1];
    if (strncmp(m->path, path, len) == 0 && m->path[len] == 0) return m;
    slot = (slot + 1) & (g->index_cap - 1);
  }
  return NULL;
}

size_t mw_gen_method_index(const mw_gen *g, const mw_method *m) {
  return (size_t)(m - g->methods);
}

int mw_gen_has_service(const mw_gen *g, const char *name, size_t len) {
  for (size_t i = 0; i < mw_schema_service_count(g->schema); i++) {
    const char *full = upb_ServiceDef_FullName(mw_schema_service(g->schema, i));
    if (strncmp(full, name, len) == 0 && full[len] == 0) return 1;
  }
  return 0;
}

static int add_methods(mw_gen *g) {
  size_t total = 0, n_svc = mw_schema_service_count(g->schema);
  for (size_t i = 0; i < n_svc; i++)
    total += (size_t)upb_ServiceDef_MethodCount(mw_schema_service(g->schema, i));
  g->methods = calloc(total ? total : 1, sizeof *g->methods);
  if (!g->methods) return -1;
  for (size_t i = 0; i < n_svc; i++) {
    const upb_ServiceDef *sd = mw_schema_service(g->schema, i);
    const char *svc = upb_ServiceDef_FullName(sd);
    for (int k = 0; k < upb_ServiceDef_MethodCount(sd); k++) {
      const upb_MethodDef *md = upb_ServiceDef_Method(sd, k);
      const char *name = upb_MethodDef_Name(md);
      size_t len = strlen(svc) + strlen(name) + 3;
      mw_method *m = &g->methods[g->n_methods];
      m->path = malloc(len);
      if (!m->path) return -1;
      snprintf(m->path, len, "/%s/%s", svc, name);
      m->def = md;
      m->input = upb_MethodDef_InputType(md);
      m->output = upb_MethodDef_OutputType(md);
      int cs = upb_MethodDef_ClientStreaming(md), ss = upb_MethodDef_ServerStreaming(md);
      m->kind = cs ? (ss ? MW_BIDI_STREAMING : MW_CLIENT_STREAMING)
                   : (ss ? MW_SERVER_STREAMING : MW_UNARY);
      g->n_methods++;
    }
  }
  return build_index(g);
}

static void gen_free(mw_gen *g) {
  for (int i = 0; i < g->n_states; i++) {
    if (g->states && g->states[i]) mw_host_close_state(g->states[i]);
    if (g->handlers) free(g->handlers[i]);
  }
  free(g->states);
  free(g->handlers);
  for (size_t i = 0; i < g->n_methods; i++) free(g->methods[i].path);
  free(g->methods);
  free(g->index);
  mw_schema_free(g->schema);
  free(g);
}

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
    mw_host_check_syntax(in.dirs, in.n_dirs, diag);
    return NULL;
  }
  mw_gen *g = calloc(1, sizeof *g);
  if (!g) {
    mw_schema_free(schema);
    mw_diag_add(diag, "out of memory");
    return NULL;
  }
  atomic_init(&g->refs, 1);
  g->id = opt->id;
  g->schema = schema;
  g->handler_cpu_s = (double)cfg->limits.handler_cpu_ms / 1000.0;
  if (add_methods(g) != 0) goto oom;
  g->states = calloc((size_t)opt->n_states, sizeof *g->states);
  g->handlers = calloc((size_t)opt->n_states, sizeof *g->handlers);
  if (!g->states || !g->handlers) goto oom;
  g->n_states = opt->n_states;
  for (int i = 0; i < opt->n_states; i++) {
    g->handlers[i] = malloc((g->n_methods ? g->n_methods : 1) * sizeof(int));
    if (!g->handlers[i]) goto oom;
    for (size_t k = 0; k < g->n_methods; k++) g->handlers[i][k] = LUA_NOREF;
    g->states[i] = mw_host_new_state(g, i, opt->mem ? &opt->mem[i] : NULL,
                                     in.dirs, in.n_dirs);
    if (!g->states[i]) goto oom;
    /* Every state loads the same scripts: the first reports the problems,
     * the others can only fail where the first did. */
    mw_diag scratch = {0};
    int rc = mw_host_load_scripts(g->states[i], g, in.dirs, in.n_dirs,
                                  g->handlers[i], i == 0 ? diag : &scratch);
    if (i > 0 && rc != 0) mw_diag_move(diag, &scratch);
    mw_diag_free(&scratch);
    if (rc != 0) {
      gen_free(g);
      return NULL;
    }
  }
  return g;
oom:
  mw_diag_add(diag, "out of memory while building the service generation");
  gen_free(g);
  return NULL;
}

void mw_gen_ref(mw_gen *g) { atomic_fetch_add(&g->refs, 1); }

void mw_gen_unref(mw_gen *g) {
  if (g && atomic_fetch_sub(&g->refs, 1) == 1) gen_free(g);
}
