#include "schema/mw_methods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_util.h"

struct mw_methods {
  const mw_schema *schema;
  mw_method *v; /* owned array */
  size_t n;
  size_t *index; /* owned open-addressing table of method indexes + 1 */
  size_t index_cap;
};

const char *mw_kind_name(mw_kind k) {
  switch (k) {
  case MW_KIND_UNARY: return "unary";
  case MW_KIND_SERVER_STREAMING: return "server-streaming";
  case MW_KIND_CLIENT_STREAMING: return "client-streaming";
  case MW_KIND_BIDI_STREAMING: return "bidi-streaming";
  }
  return "?";
}

static size_t hash_path(const char *s, size_t len) { return (size_t)mw_fnv1a(s, len); }

static int build_index(mw_methods *t) {
  size_t cap = 16;
  while (cap < t->n * 2) cap *= 2;
  t->index = calloc(cap, sizeof *t->index);
  if (!t->index) return -1;
  t->index_cap = cap;
  for (size_t i = 0; i < t->n; i++) {
    const char *p = t->v[i].path;
    size_t slot = hash_path(p, t->v[i].path_len) & (cap - 1);
    while (t->index[slot]) slot = (slot + 1) & (cap - 1);
    t->index[slot] = i + 1;
  }
  return 0;
}

mw_methods *mw_methods_new(const mw_schema *s) {
  mw_methods *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->schema = s;
  size_t total = 0, n_svc = mw_schema_service_count(s);
  for (size_t i = 0; i < n_svc; i++)
    total += (size_t)upb_ServiceDef_MethodCount(mw_schema_service(s, i));
  t->v = calloc(total ? total : 1, sizeof *t->v);
  if (!t->v) goto oom;
  for (size_t i = 0; i < n_svc; i++) {
    const upb_ServiceDef *sd = mw_schema_service(s, i);
    const char *svc = upb_ServiceDef_FullName(sd);
    for (int k = 0; k < upb_ServiceDef_MethodCount(sd); k++) {
      const upb_MethodDef *md = upb_ServiceDef_Method(sd, k);
      const char *name = upb_MethodDef_Name(md);
      size_t len = strlen(svc) + strlen(name) + 3;
      mw_method *m = &t->v[t->n];
      m->path = malloc(len);
      if (!m->path) goto oom;
      snprintf(m->path, len, "/%s/%s", svc, name);
      m->path_len = len - 1;
      m->service = svc;
      m->name = name;
      m->def = md;
      m->input = upb_MethodDef_InputType(md);
      m->output = upb_MethodDef_OutputType(md);
      int cs = upb_MethodDef_ClientStreaming(md), ss = upb_MethodDef_ServerStreaming(md);
      m->kind = cs ? (ss ? MW_KIND_BIDI_STREAMING : MW_KIND_CLIENT_STREAMING)
                   : (ss ? MW_KIND_SERVER_STREAMING : MW_KIND_UNARY);
      m->index = t->n++;
    }
  }
  if (build_index(t) != 0) goto oom;
  return t;
oom:
  mw_methods_free(t);
  return NULL;
}

void mw_methods_free(mw_methods *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n; i++) free(t->v[i].path);
  free(t->v);
  free(t->index);
  free(t);
}

size_t mw_methods_count(const mw_methods *t) { return t->n; }
const mw_method *mw_methods_at(const mw_methods *t, size_t i) { return &t->v[i]; }
const mw_schema *mw_methods_schema(const mw_methods *t) { return t->schema; }

const mw_method *mw_methods_find(const mw_methods *t, const char *path, size_t len) {
  size_t slot = hash_path(path, len) & (t->index_cap - 1);
  while (t->index[slot]) {
    const mw_method *m = &t->v[t->index[slot] - 1];
    /* by length first: a path may hold a NUL, and must not match a
     * shorter method's path with it */
    if (m->path_len == len && memcmp(m->path, path, len) == 0) return m;
    slot = (slot + 1) & (t->index_cap - 1);
  }
  return NULL;
}

int mw_methods_has_service(const mw_methods *t, const char *name, size_t len) {
  for (size_t i = 0; i < mw_schema_service_count(t->schema); i++) {
    const char *full = upb_ServiceDef_FullName(mw_schema_service(t->schema, i));
    if (strlen(full) == len && memcmp(full, name, len) == 0) return 1;
  }
  return 0;
}
