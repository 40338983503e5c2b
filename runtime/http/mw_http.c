/* The HTTP server thread (mw_http.h) on h2o's own event loop. One h2o
 * context on one thread: the admin listener's requests are answered
 * synchronously by the route function; the HTTP listener's go to its raw
 * handler, which answers later through h2o's generators (proceed/stop). */
#include "http/mw_http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>

#include "base/mw_log.h"
#include "tls/mw_tls.h"
#include "tls/mw_tlsctx.h"

#ifdef __SANITIZE_ADDRESS__
/* LeakSanitizer: h2o 2.2.5 keeps memory-pool chunks in a thread-local
 * recycler that nothing frees when the thread ends, and its context
 * disposal leaves the context's message queue: memory of the library's,
 * freed by the process's exit, not leaks of ours. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:h2o_mem_alloc_recycle\nleak:h2o_multithread_create_queue\n";
}
#endif

#define MW_HTTP_MAX_BODY 65536
#define MW_HTTP_TURN_MS 100 /* how often the loop looks at the stop flag */

typedef struct route_handler {
  h2o_handler_t super; /* first: h2o allocates it */
  mw_http *http;
} route_handler;

struct mw_http {
  h2o_globalconf_t config;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept_ctx;
  h2o_evloop_t *loop;
  h2o_socket_t *listener;
  int fd;
  char address[96];
  mw_http_route route;
  void *ud;
  mw_http_opts opts;
  const char *name;
  long max_connections;
  pthread_t thread;
  int thread_started;
  _Atomic int stop;
  int config_ready, ctx_ready;
  SSL_CTX *ssl_ctx; /* with TLS, the one new handshakes get; NULL for cleartext */
  /* The files behind it, looked at every second on the loop: a new set
   * that passes the checks gets a new context; connections keep the one
   * they started with (each SSL holds a reference to it). */
  mw_tls_source *tls;
  unsigned tls_seen;
  /* Contexts replaced by a rotation. h2o makes a connection's SSL only
   * when its first bytes arrive, from the context it was accepted with
   * (a plain pointer), so a replaced context lives on until no connection
   * can still be waiting for that: past the handshake timeout. */
  struct retired_ctx {
    SSL_CTX *ctx;
    uint64_t at; /* the loop's clock (ms) when it was replaced */
  } *retired;
  size_t n_retired;
  h2o_timeout_t tls_timeout;
  h2o_timeout_entry_t tls_entry;
  int tls_timer;
  size_t leftover; /* connections that outlived the stop */
};

static size_t list_len(h2o_linklist_t *l) {
  size_t n = 0;
  for (h2o_linklist_t *e = l->next; e != l; e = e->next) n++;
  return n;
}

static size_t open_connections(mw_http *h) {
  return list_len(&h->ctx.http1._conns) + list_len(&h->ctx.http2._conns);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
  mw_http *h = ((route_handler *)self)->http;
  if (h->opts.raw) {
    int rc = h->opts.raw(h->ud, req);
    if (rc == 0 || !h->route) return rc;
  }
  mw_http_reply r = {0};
  size_t plen = req->path_normalized.len;
  h->route(h->ud, req->method.base, req->method.len, req->path_normalized.base, plen,
           req->entity.base, req->entity.base ? req->entity.len : 0, &r);
  req->res.status = r.status ? r.status : 500;
  req->res.reason = r.status == 200 ? "OK" : r.status == 404 ? "Not Found"
                  : r.status == 405 ? "Method Not Allowed" : r.status == 503 ? "Service Unavailable"
                  : r.status == 400 ? "Bad Request"
                  : "Error";
  const char *ct = r.content_type ? r.content_type : "text/plain; charset=utf-8";
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ct, strlen(ct));
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                 H2O_STRLIT("no-store"));
  if (r.allow)
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, r.allow,
                   strlen(r.allow));
  req->res.content_length = r.body ? r.len : 0;
  /* h2o_send_inline copies the body into the request's pool. */
  h2o_send_inline(req, r.body ? r.body : "", r.body ? r.len : 0);
  free(r.body);
  return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err) {
  mw_http *h = listener->data;
  if (err) return;
  h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
  if (!sock) return;
  if (open_connections(h) >= (size_t)h->max_connections) {
    mw_log(MW_LOG_WARN, "%s: %ld connections open (%s.max_connections): "
                        "closing a new one", h->name, h->max_connections, h->name);
    h2o_socket_close(sock);
    return;
  }
  h2o_accept(&h->accept_ctx, sock);
}

/* all: at the stop, when the loop is gone already (its clock with it). */
static void free_retired(mw_http *h, int all) {
  uint64_t now = all ? 0 : h2o_now(h->loop), keep = h->config.handshake_timeout + 5000;
  size_t out = 0;
  for (size_t i = 0; i < h->n_retired; i++) {
    if (all || now - h->retired[i].at > keep) mw_tlsctx_free(h->retired[i].ctx);
    else h->retired[out++] = h->retired[i];
  }
  h->n_retired = out;
  if (all) {
    free(h->retired);
    h->retired = NULL;
  }
}

static void on_tls_look(h2o_timeout_entry_t *e) {
  mw_http *h = (mw_http *)((char *)e - offsetof(mw_http, tls_entry));
  free_retired(h, 0);
  mw_tls_set *set = mw_tls_source_fetch(h->tls, &h->tls_seen);
  struct retired_ctx *r =
      set ? realloc(h->retired, (h->n_retired + 1) * sizeof *h->retired) : NULL;
  if (r) h->retired = r;
  if (set && !r) {
    mw_log(MW_LOG_WARN, "%s.tls: out of memory; the previous certificate stays", h->name);
    /* seen again at the next look */
    h->tls_seen--;
  } else if (set) {
    char err[512];
    SSL_CTX *ctx = mw_tlsctx_server_set(set, h->opts.tls_require_client_cert, err, sizeof err);
    if (ctx) {
      h->retired[h->n_retired++] = (struct retired_ctx){h->ssl_ctx, h2o_now(h->loop)};
      h->ssl_ctx = ctx;
      h->accept_ctx.ssl_ctx = ctx;
      mw_log(MW_LOG_INFO, "%s.tls: new connections get the certificate %s", h->name,
             set->subject);
    } else {
      mw_log(MW_LOG_WARN, "%s.tls: %s; the previous certificate stays", h->name, err);
    }
    mw_tls_set_unref(set);
  }
  h2o_timeout_link(h->loop, &h->tls_timeout, &h->tls_entry);
}

char *mw_http_peer_tls(h2o_req_t *req, int *tls, int *reused) {
  *tls = *reused = 0;
  h2o_socket_t *sock =
      req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
  if (!sock || !sock->ssl) return NULL;
  *tls = 1;
  *reused = h2o_socket_get_ssl_session_reused(sock) == 1;
  /* h2o 2.2 gives no accessor for a socket's SSL: its record begins with
   * the context the handshake used and the SSL made from it. Believed only
   * when that SSL is one of that context's, else no certificate. */
  struct h2o_ssl_head {
    SSL_CTX *ctx;
    SSL *ossl;
  } *head = (struct h2o_ssl_head *)sock->ssl;
  if (!head->ctx || !head->ossl || SSL_get_SSL_CTX(head->ossl) != head->ctx) return NULL;
  return mw_tlsctx_peer_cert(head->ossl);
}

static void *http_main(void *arg) {
  mw_http *h = arg;
  while (!atomic_load(&h->stop)) h2o_evloop_run(h->loop, MW_HTTP_TURN_MS);
  if (h->tls_timer) {
    if (h2o_timeout_is_linked(&h->tls_entry)) h2o_timeout_unlink(&h->tls_entry);
    h2o_timeout_dispose(h->loop, &h->tls_timeout);
    h->tls_timer = 0;
  }
  /* Idle HTTP/1 connections close, HTTP/2 ones get GOAWAY; requests in
   * progress get a moment to end. */
  h2o_socket_read_stop(h->listener);
  h2o_socket_close(h->listener);
  h->listener = NULL;
  h2o_context_request_shutdown(&h->ctx);
  /* The shutdown arms a timer of its own (HTTP/2's second GOAWAY): it must
   * have fired, and the connections be gone, before the context can be
   * disposed of. A client that holds on past the bound is left behind. */
  for (int i = 0; i < 30 && (open_connections(h) > 0 ||
                             h2o_timeout_is_linked(&h->ctx.http2._graceful_shutdown_timeout));
       i++)
    h2o_evloop_run(h->loop, MW_HTTP_TURN_MS);
  if (h2o_timeout_is_linked(&h->ctx.http2._graceful_shutdown_timeout))
    h2o_timeout_unlink(&h->ctx.http2._graceful_shutdown_timeout);
  h->leftover = open_connections(h);
  if (h->leftover)
    mw_log(MW_LOG_WARN, "%s: %zu connection(s) still open at the stop", h->name, h->leftover);
  if (h->opts.on_stop) h->opts.on_stop(h->ud, h->leftover);
  return NULL;
}

/* "host:port" -> a bound, listening socket; -1 with diag. */
static int bind_listen(const char *name, const char *listen_addr, char *bound, size_t blen,
                       mw_diag *diag) {
  char host[80];
  const char *colon = strrchr(listen_addr, ':');
  if (!colon || (size_t)(colon - listen_addr) >= sizeof host) {
    mw_diag_add(diag, "%s.listen: invalid address '%s'", name, listen_addr);
    return -1;
  }
  const char *hs = listen_addr, *he = colon;
  if (*hs == '[' && he > hs && he[-1] == ']') {
    hs++;
    he--;
  }
  memcpy(host, hs, (size_t)(he - hs));
  host[he - hs] = 0;
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
  if (rc != 0) {
    mw_diag_add(diag, "%s.listen: cannot resolve '%s': %s", name, listen_addr,
                gai_strerror(rc));
    return -1;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
    mw_diag_add(diag, "%s.listen: cannot listen on %s: %s", name, listen_addr,
                strerror(errno));
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return -1;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char hbuf[64] = "?", pbuf[16] = "0";
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
    getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof hbuf, pbuf, sizeof pbuf,
                NI_NUMERICHOST | NI_NUMERICSERV);
  snprintf(bound, blen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", hbuf, pbuf);
  freeaddrinfo(ai);
  return fd;
}

mw_http *mw_http_start(const char *listen_addr, const mw_http_opts *opts, mw_http_route route,
                       void *ud, mw_diag *diag) {
  mw_http *h = calloc(1, sizeof *h);
  if (!h) {
    mw_diag_add(diag, "%s: out of memory", opts->name ? opts->name : "admin");
    return NULL;
  }
  h->route = route;
  h->ud = ud;
  h->opts = *opts;
  h->name = opts->name ? opts->name : "admin";
  h->max_connections = opts->max_connections > 0 ? opts->max_connections : 64;
  h->fd = bind_listen(h->name, listen_addr, h->address, sizeof h->address, diag);
  if (h->fd < 0) {
    free(h);
    return NULL;
  }
  h2o_config_init(&h->config);
  h->config_ready = 1;
  h->config.max_request_entity_size = opts->max_body ? opts->max_body : MW_HTTP_MAX_BODY;
  uint64_t t = (uint64_t)(opts->timeout_ms > 0 ? opts->timeout_ms : 10000);
  h->config.http1.req_timeout = t;
  h->config.http2.idle_timeout = t;
  h->config.http2.graceful_shutdown_timeout = 300;
  h2o_hostconf_t *host =
      h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
  route_handler *rh = (route_handler *)h2o_create_handler(path, sizeof *rh);
  rh->super.on_req = on_req;
  rh->http = h;
  h->loop = h2o_evloop_create();
  h2o_context_init(&h->ctx, h->loop, &h->config);
  h->ctx_ready = 1;
  if (opts->tls_cert) {
    char err[512];
    mw_tls_files tf = {opts->tls_cert, opts->tls_key, opts->tls_client_ca};
    mw_diag errs = {0};
    /* interval 0: the files are looked at on each tick of the timer below */
    h->tls = mw_tls_source_new(&tf, 0, &errs);
    for (size_t i = 0; i < errs.n; i++)
      if (errs.msgs[i]) mw_diag_add(diag, "%s.tls: %s", h->name, errs.msgs[i]);
    mw_diag_free(&errs);
    mw_tls_set *set = h->tls ? mw_tls_source_fetch(h->tls, &h->tls_seen) : NULL;
    h->ssl_ctx = set ? mw_tlsctx_server_set(set, opts->tls_require_client_cert, err, sizeof err)
                     : NULL;
    if (set && !h->ssl_ctx) mw_diag_add(diag, "%s.tls: %s", h->name, err);
    mw_tls_set_unref(set);
    if (!h->ssl_ctx) {
      mw_http_stop(h);
      return NULL;
    }
    h2o_timeout_init(h->loop, &h->tls_timeout, 1000);
    h->tls_entry.cb = on_tls_look;
    h2o_timeout_link(h->loop, &h->tls_timeout, &h->tls_entry);
    h->tls_timer = 1;
  }
  h->accept_ctx.ctx = &h->ctx;
  h->accept_ctx.ssl_ctx = h->ssl_ctx;
  h->accept_ctx.hosts = h->config.hosts;
  h->listener = h2o_evloop_socket_create(h->loop, h->fd, H2O_SOCKET_FLAG_DONT_READ);
  h->listener->data = h;
  h2o_socket_read_start(h->listener, on_accept);
  if (opts->on_loop) opts->on_loop(ud, h->loop);
  if (pthread_create(&h->thread, NULL, http_main, h) != 0) {
    mw_diag_add(diag, "%s: cannot start its thread", h->name);
    mw_http_stop(h);
    return NULL;
  }
  h->thread_started = 1;
  return h;
}

const char *mw_http_address(const mw_http *h) { return h->address; }

void mw_http_stop(mw_http *h) {
  if (!h) return;
  atomic_store(&h->stop, 1);
  if (h->thread_started) pthread_join(h->thread, NULL);
  else if (h->listener) h2o_socket_close(h->listener);
  if (h->leftover) return; /* their timers still point into h: the process exits */
  if (h->ctx_ready) h2o_context_dispose(&h->ctx);
  if (h->loop) h2o_evloop_destroy(h->loop);
  if (h->config_ready) h2o_config_dispose(&h->config);
  mw_tlsctx_free(h->ssl_ctx);
  free_retired(h, 1);
  mw_tls_source_free(h->tls);
  free(h);
}
