/* The browser console (config console:, docs/console.md): a page, its
 * stylesheet and script (runtime/http/console/, compiled into the binary),
 * and two JSON documents made from the live schema, all under /console.
 *
 * The page calls methods through the listener's own Connect JSON protocol
 * (http/mw_web.h), so a call from the console is a call like any other:
 * interceptors, limits, metrics and logs apply. On the HTTP listener the
 * calls go to the methods' own paths; on the admin listener (when the HTTP
 * listener is off) to /console/rpc/pkg.Service/Method, which the admin
 * hands to a Connect handler of its own (http/mw_admin.h).
 *
 * GET /console, /console/console.css, /console/console.js: the assets.
 * GET /console/schema: {"generation", "call_base", "services": [{"name",
 *   "methods": [{"name", "path", "kind", "input", "output", "template"}]}]}
 *   where template is a request message with every field filled from its
 *   type (the rule of stub mode's default message).
 * GET /console/generation: {"generation": N}, polled by the page to follow
 *   reloads.
 * GET /console/detail?type=T&value=B64: an error detail (a Connect error's
 *   type and base64 value) as JSON, decoded with the live schema.
 *
 * Threads: called on the HTTP server's thread; the schema is read from a
 * router reference held for the request. */
#ifndef MW_CONSOLE_H
#define MW_CONSOLE_H

#include <stddef.h>

#include "core/mw_server.h"
#include "upb/def.h"

struct st_h2o_req_t;
struct mw_router;

/* The prefix of the console's calls on the admin listener. */
#define MW_CONSOLE_RPC_PREFIX "/console/rpc"

/* Answers req when its path is one of the console's (above) and returns
 * 0; returns -1, answering nothing, for any other path. call_base is the
 * prefix the page puts before a method's path ("" or
 * MW_CONSOLE_RPC_PREFIX). A method other than GET or HEAD on a console
 * path gets 405. */
int mw_console_serve(struct st_h2o_req_t *req, mw_server *server, const char *call_base);

/* The schema document of r's generation (malloc'd JSON, the caller's;
 * NULL when out of memory). */
char *mw_console_schema_json(const struct mw_router *r, const char *call_base, size_t *len);

/* A message of type m with every field filled from its type (the rule of
 * stub mode's default message, lua/moonwire/stub.lua), as proto3 JSON with
 * JSON names: malloc'd, the caller's; NULL when out of memory. */
char *mw_console_template_json(const upb_MessageDef *m, size_t *len);

#endif
