/* Generations: what a reload replaces as one unit. A generation is a schema
 * (upb_DefPool), the method table built from it, and, for each worker, a
 * lua_State with the service scripts loaded and their handlers resolved.
 *
 * Reference counting: the server holds one reference to the current
 * generation and every live call holds one to the generation it started on,
 * so a generation is freed when it is no longer current and its last call
 * has ended. */
#ifndef MW_GEN_H
#define MW_GEN_H

#include <stdatomic.h>
#include <stddef.h>

#include <lua.h>

#include "config/mw_config.h"
#include "base/mw_diag.h"
#include "lua/mw_lalloc.h"
#include "schema/mw_schema.h"

typedef enum mw_kind {
  MW_UNARY = 0,
  MW_SERVER_STREAMING = 1,
  MW_CLIENT_STREAMING = 2,
  MW_BIDI_STREAMING = 3,
} mw_kind;

const char *mw_kind_name(mw_kind k);

typedef struct mw_method {
  char *path; /* "/pkg.Service/Method" (owned) */
  const upb_MethodDef *def;
  const upb_MessageDef *input, *output;
  mw_kind kind;
} mw_method;

typedef struct mw_gen {
  _Atomic int refs;
  unsigned id;
  mw_schema *schema;  /* owned */
  mw_method *methods; /* owned array, n_methods long */
  size_t n_methods;
  size_t *index;      /* owned open-addressing table of method indexes + 1 */
  size_t index_cap;
  int n_states;
  lua_State **states; /* owned; one per worker */
  int **handlers;     /* owned; handlers[w][m] = registry ref or LUA_NOREF */
  double handler_cpu_s; /* limits.handler_cpu_ms, in seconds; 0 = none */
} mw_gen;

typedef struct mw_gen_options {
  const mw_config *config;
  int n_states;        /* lua_States to build: workers, or 1 for a check */
  mw_lua_mem *mem;     /* n_states accounts (may be NULL: no cap) */
  unsigned id;
} mw_gen_options;

/* Builds and fully validates a generation: protos compile, every script
 * loads, every handler names a method. Returns NULL with every problem in
 * diag. The result has one reference, owned by the caller. */
mw_gen *mw_gen_build(const mw_gen_options *opt, mw_diag *diag);

/* Finds a method by its HTTP/2 path; NULL when the generation has none. */
const mw_method *mw_gen_find(const mw_gen *g, const char *path, size_t len);
size_t mw_gen_method_index(const mw_gen *g, const mw_method *m);
/* Whether the schema defines the service (full name, not NUL-terminated). */
int mw_gen_has_service(const mw_gen *g, const char *name, size_t len);

void mw_gen_ref(mw_gen *g);
/* Drops a reference; frees the generation at zero. NULL is ignored. */
void mw_gen_unref(mw_gen *g);

#endif
