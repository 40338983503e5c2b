/* An HTTP server on its own thread, on h2o's event loop (libh2o-evloop:
 * HTTP/1.1 and HTTP/2 over cleartext; docs/architecture.md says why h2o).
 * Today it carries the admin listener (http/mw_admin.h); the route
 * function is the only thing it knows of what it serves.
 *
 * Bounds: request bodies over 64 KiB are refused by h2o (413), request
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

typedef struct mw_http_opts {
  long max_connections; /* > 0 */
  long timeout_ms;      /* > 0 */
} mw_http_opts;

typedef struct mw_http mw_http;

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
