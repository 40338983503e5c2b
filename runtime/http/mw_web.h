/* The HTTP listener for browsers and HTTP clients (config http:): gRPC-Web
 * (binary and text), Connect (unary and streaming, binary and JSON) and
 * REST routes from google.api.http (unary, JSON) on HTTP/1.1 and h2c, served by the HTTP server thread (http/mw_http.h).
 *
 * Every request becomes a loopback gRPC call into this process's own
 * server (core/mw_loopback.h), so interceptors, deadlines, cancellation,
 * limits, metrics, access logs and handlers apply to it as to any gRPC
 * call; a handler tells the protocol only by ctx.protocol, and ctx.peer is
 * the HTTP client's address.
 *
 * Threads: everything here runs on the HTTP thread. The loopback's pump
 * thread only rings an eventfd that sits on the HTTP event loop; the loop
 * then runs the calls' events (mw_loopback_run), so a call's completions
 * never block the loop and never race with h2o.
 *
 * Flow control: a streaming response is read from the loopback call one
 * message at a time, the next one asked for only when h2o's generator has
 * proceeded (the previous bytes were written to the client): a slow client
 * holds the handler back through the call's send queue, not memory here.
 * A client that goes away (its request disposed by h2o: a closed connection
 * or a reset stream) cancels the loopback call; the handler sees it.
 *
 * With console on, GET /console and below are the browser console's
 * (http/mw_console.h), ahead of REST routes.
 *
 * Bounds: request bodies at most limits.max_receive_bytes (413 past it),
 * http.timeout for idle or slow connections, http.max_connections. */
#ifndef MW_WEB_H
#define MW_WEB_H

#include "base/mw_diag.h"
#include "config/mw_config.h"
#include "core/mw_server.h"

typedef struct mw_web mw_web;

struct mw_transcode;
struct mw_router;
/* The REST routes (google.api.http) of the generation a router belongs
 * to, or NULL: installed by the layer that owns generations (cmd/), which
 * this one does not see. Called on the HTTP thread with a reference to r
 * held; the table lives as long as r. */
typedef const struct mw_transcode *(*mw_web_rest_fn)(struct mw_router *r);

/* Starts the listener on cfg->http.listen, with a loopback channel to
 * server's internal listener (mw_server_internal_target). server is
 * borrowed and must outlive the listener. rest (may be NULL: no REST
 * routes) gives each request's REST table. NULL with diag filled. */
mw_web *mw_web_start(const mw_config *cfg, mw_server *server, mw_web_rest_fn rest,
                     mw_diag *diag);
/* "host:port" with the port actually bound. */
const char *mw_web_address(const mw_web *w);

/* The same handler without a listener of its own, for requests another
 * HTTP server hands it on that server's thread (the admin listener's
 * console calls, http/mw_admin.h): the loopback channel is opened here,
 * the rest is the server's to call. NULL with diag filled. */
mw_web *mw_web_new(const mw_config *cfg, mw_server *server, mw_web_rest_fn rest,
                   mw_diag *diag);
struct st_h2o_req_t;
struct st_h2o_evloop_t;
/* The client's address as gRPC names a peer ("ipv4:1.2.3.4:5678",
 * "ipv6:[::1]:5678", else "unknown"), for the calls the listener starts. */
void mw_web_peer(struct st_h2o_req_t *req, char *out, size_t len);
/* Answers req as the listener would (mw_http_opts.raw); returns 0. */
int mw_web_handle(mw_web *w, struct st_h2o_req_t *req);
/* The server's on_loop and on_stop (mw_http_opts), passed on. */
void mw_web_on_loop(mw_web *w, struct st_h2o_evloop_t *loop);
void mw_web_on_stop(mw_web *w, size_t leftover);
/* Frees a handler of mw_web_new once its server has stopped. NULL ok. */
void mw_web_free(mw_web *w);
/* Stops the thread (requests in flight are cancelled), closes the
 * loopback channel, frees w. NULL ok. */
void mw_web_stop(mw_web *w);

#endif
