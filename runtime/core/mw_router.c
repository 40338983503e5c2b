/* The router: a method table borrowed from the generation and one handler
 * pointer per method. A lookup is the method table's hash probe plus an
 * index. */
#include "core/mw_router.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mw_router {
  _Atomic int refs;
  unsigned id;
  const mw_methods *methods;
  mw_handler **handlers; /* owned array, one per method; entries borrowed */
  mw_router_owner owner;
};

mw_router *mw_router_new(const mw_methods *methods, unsigned id,
                         mw_router_owner owner) {
  mw_router *r = calloc(1, sizeof *r);
  size_t n = mw_methods_count(methods);
  if (r) r->handlers = calloc(n ? n : 1, sizeof *r->handlers);
  if (!r || !r->handlers) {
    free(r);
    return NULL;
  }
  atomic_init(&r->refs, 1);
  r->id = id;
  r->methods = methods;
  r->owner = owner;
  return r;
}

void mw_router_bind(mw_router *r, size_t i, mw_handler *h) { r->handlers[i] = h; }
mw_handler *mw_router_handler(const mw_router *r, size_t i) { return r->handlers[i]; }
const mw_methods *mw_router_methods(const mw_router *r) { return r->methods; }
unsigned mw_router_id(const mw_router *r) { return r->id; }
void *mw_router_owner_self(const mw_router *r) { return r->owner.self; }

int mw_router_route(const mw_router *r, const char *path, size_t len,
                    const mw_method **m, mw_handler **h, char *msg,
                    size_t msglen) {
  *h = NULL;
  *m = mw_methods_find(r->methods, path, len);
  if (*m) {
    *h = r->handlers[(*m)->index];
    if (*h) return 0;
    snprintf(msg, msglen, "method %s has no handler", (*m)->path);
    return -1;
  }
  const char *slash = len > 1 ? memchr(path + 1, '/', len - 1) : NULL;
  size_t svc_len = slash ? (size_t)(slash - path - 1) : 0;
  if (slash && !mw_methods_has_service(r->methods, path + 1, svc_len)) {
    snprintf(msg, msglen, "unknown service %.*s", (int)svc_len, path + 1);
  } else {
    snprintf(msg, msglen, "unknown method %.*s", (int)len, path);
  }
  return -1;
}

void mw_router_ref(mw_router *r) { atomic_fetch_add(&r->refs, 1); }

void mw_router_unref(mw_router *r) {
  if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
  mw_router_owner owner = r->owner;
  free(r->handlers);
  free(r);
  if (owner.release) owner.release(owner.self);
}
