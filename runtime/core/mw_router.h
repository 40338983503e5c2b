/* The router of one generation: maps an HTTP/2 path to its method and the
 * handler that serves it, and owns the text of the UNIMPLEMENTED replies.
 *
 * Reference counting: the server holds one reference to the current router
 * and every live call one to the router it started on. When the last one
 * goes, the owner's release function runs (on whichever thread dropped it):
 * that is how a generation learns it may free itself, without core/ knowing
 * what a generation is. */
#ifndef MW_ROUTER_H
#define MW_ROUTER_H

#include <stddef.h>

#include "core/mw_handler.h"
#include "schema/mw_methods.h"

typedef struct mw_router mw_router;

/* Who owns a router, told when it is no longer used. */
typedef struct mw_router_owner {
  void *self;
  void (*release)(void *self); /* the last reference was dropped */
} mw_router_owner;

/* A router over methods (borrowed: the owner keeps them alive) with no
 * handler bound yet; one reference, the caller's. id names the generation
 * in stats. NULL when out of memory. */
mw_router *mw_router_new(const mw_methods *methods, unsigned id,
                         mw_router_owner owner);
/* Binds the handler of method i (NULL: none, calls get UNIMPLEMENTED). */
void mw_router_bind(mw_router *r, size_t i, mw_handler *h);
mw_handler *mw_router_handler(const mw_router *r, size_t i);

/* Finds the route of a call. Returns 0 with *m and *h set, or -1 with the
 * UNIMPLEMENTED reply's message in msg ("unknown service x", "unknown
 * method /x/y", "method /x/y has no handler"); *m is set when the method
 * exists. */
int mw_router_route(const mw_router *r, const char *path, size_t len,
                    const mw_method **m, mw_handler **h, char *msg,
                    size_t msglen);

const mw_methods *mw_router_methods(const mw_router *r);
unsigned mw_router_id(const mw_router *r);
void *mw_router_owner_self(const mw_router *r);

void mw_router_ref(mw_router *r);
/* Drops a reference; at zero the router is freed and its owner told.
 * NULL is ignored. */
void mw_router_unref(mw_router *r);

#endif
