/* Generations: what a reload replaces as one unit. A generation is a schema
 * (upb_DefPool), the method table built from it, its backends (today the
 * Lua backend: a state per worker with the scripts loaded) and the router
 * that binds each method to its backend's handler. It sits above core/ and
 * lua/ and joins them: core/ sees only the router, lua/ only its methods.
 *
 * Lifetime: a generation lives as long as its router has references (core/
 * holds one for the current generation and one per live call); the builder
 * gets the first. */
#ifndef MW_GEN_H
#define MW_GEN_H

#include <stddef.h>

#include "base/mw_diag.h"
#include "config/mw_config.h"
#include "core/mw_router.h"
#include "core/mw_server.h"
#include "lua/mw_lalloc.h"
#include "schema/mw_methods.h"
#include "schema/mw_schema.h"

typedef struct mw_gen mw_gen;
typedef struct mw_transcode mw_transcode; /* codec/mw_transcode.h */

typedef struct mw_gen_options {
  const mw_config *config;
  int n_states;    /* Lua states to build: workers, or 1 for a check */
  mw_lua_mem *mem; /* n_states accounts (may be NULL: no cap) */
  unsigned id;
} mw_gen_options;

/* Builds and fully validates a generation: protos compile, every script
 * loads, every handler names a method. Returns NULL with every problem in
 * diag. The caller owns one reference. */
mw_gen *mw_gen_build(const mw_gen_options *opt, mw_diag *diag);

const mw_schema *mw_gen_schema(const mw_gen *g);
const mw_methods *mw_gen_methods(const mw_gen *g);
/* Whether method i has a handler (else its calls are UNIMPLEMENTED). */
int mw_gen_has_handler(const mw_gen *g, size_t i);
/* Whether method i belongs to a built-in service (health, reflection) that
 * the config left on, rather than to the user's protos. */
int mw_gen_is_builtin(const mw_gen *g, size_t i);
int mw_gen_is_builtin_service(const mw_gen *g, const upb_ServiceDef *svc);
/* Whether method i is answered by the stub engine (docs/stubs.md) rather
 * than by a script's handler; mw_gen_has_handler is true for it too. */
int mw_gen_is_stub(const mw_gen *g, size_t i);
/* How many methods have a handler. */
size_t mw_gen_handler_count(const mw_gen *g);
/* The generation's router (the caller's reference is the generation's). */
mw_router *mw_gen_router(const mw_gen *g);
/* The generation's REST routes (codec/mw_transcode.h): the served protos'
 * google.api.http options and the config's http.rules, compiled when the
 * generation is built (a wrong rule fails the build, so check and reload
 * report it). Never NULL; empty when there is no rule. Lives as long as
 * the generation; the HTTP listener matches requests against it. */
const mw_transcode *mw_gen_rest(const mw_gen *g);

/* Drops the caller's reference; NULL is ignored. */
void mw_gen_unref(mw_gen *g);

/* The per-worker hooks the server runs for generations: hand module state
 * over when a worker switches, free thread caches when it ends. */
const mw_worker_hooks *mw_gen_worker_hooks(void);

#endif
