/* An HTTP server on its own thread, on h2o's event loop (libh2o-evloop:
 * HTTP/1.1 and HTTP/2 over cleartext, or over TLS with ALPN;
 * docs/architecture.md says why h2o). It carries the admin listener
 * (http/mw_admin.h: a synchronous route function) and the HTTP listener
 * (http/mw_web.h: raw requests answered through h2o's generators); each is
 * a server of its own, and what it serves is all in those callbacks.
 *
 * Bounds: request bodies over max_body (64 KiB) are refused by h2o (413), request
 * heads over h2o's 8 KiB / 100 headers are refused, an idle or slow
 * connection is closed after timeout_ms, and past max_connections new
 * connections are closed as they are accepted. */
#ifndef MW_HTTP_H
#define MW_HTTP_H

#include <stddef.h>

#include "base/mw_diag.h"

/* What a route answers: body is malloc'd and taken over by the server
 * (NULL: empty); content_type a static string (NULL: text/plain). */
typedef struct mw_http_reply {
  int status;
  const char *content_type;
  char *body;
  size_t len;
  const char *allow; /* the Allow header of a 405, else NULL */
} mw_http_reply;

/* Called on the server's thread for every request. method and path (the
 * path without its query) are not NUL-terminated; body is the request's
 * whole body (blen 0 when it has none), valid during the call. */
typedef void (*mw_http_route)(void *ud, const char *method, size_t mlen, const char *path,
                              size_t plen, const char *body, size_t blen,
                              mw_http_reply *out);

struct st_h2o_req_t;
struct st_h2o_evloop_t;

typedef struct mw_http_opts {
  long max_connections; /* > 0 */
  long timeout_ms;      /* > 0 */
  /* The rest may be left zero (the admin listener does). */
  const char *name;     /* the config section, in messages; NULL: "admin" */
  size_t max_body;      /* request bodies at most; 0: 64 KiB */
  /* TLS: PEM files of the certificate chain and its key, checked at start
   * (each problem named by file) and looked at every second afterwards: a
   * replacement that passes the checks serves the next handshakes, the
   * open connections go on with theirs (tls/mw_tls.h's source); ALPN
   * offers h2 and http/1.1. NULL: cleartext (h2c). With tls_client_ca,
   * clients are asked for a certificate, verified against it, and with
   * tls_require_client_cert refused without one. */
  const char *tls_cert, *tls_key, *tls_client_ca;
  int tls_require_client_cert;
  /* A listener that answers asynchronously (http/mw_web.h): every request
   * goes to raw, on the server's thread, instead of the route function;
   * it answers through h2o itself (h2o_start_response / h2o_send) and
   * returns 0. With a route function too, raw may return -1 to leave a
   * request to it (the admin listener's console, http/mw_admin.h). */
  int (*raw)(void *ud, struct st_h2o_req_t *req);
  /* Called once with the event loop before it runs (on the starting
   * thread), to put the listener's own sockets on it. */
  void (*on_loop)(void *ud, struct st_h2o_evloop_t *loop);
  /* Called on the server's thread when it stops, after the connections
   * closed (leftover: how many did not), before the loop is freed. */
  void (*on_stop)(void *ud, size_t leftover);
} mw_http_opts;

typedef struct mw_http mw_http;

/* The TLS side of a request's connection, for the call it becomes: *tls 1
 * over TLS, *reused 1 when its session was resumed, and the client's
 * verified certificate as base64 DER (malloc'd, the caller frees it) or
 * NULL. A cleartext connection: all zero. */
char *mw_http_peer_tls(struct st_h2o_req_t *req, int *tls, int *reused);

/* Binds listen ("host:port", port 0 picks one) on the calling thread, so
 * that a busy port is an error of the start, then serves on a new thread.
 * NULL with diag filled. */
mw_http *mw_http_start(const char *listen, const mw_http_opts *opts, mw_http_route route,
                       void *ud, mw_diag *diag);
/* "host:port" with the port actually bound. */
const char *mw_http_address(const mw_http *h);
/* Stops the thread (within a tenth of a second), closes the listener and
 * every connection, frees h. NULL ok. */
void mw_http_stop(mw_http *h);

#endif
