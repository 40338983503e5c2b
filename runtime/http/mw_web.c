/* The HTTP listener (http/mw_web.h): gRPC-Web and Connect requests, each
 * turned into one loopback call (core/mw_loopback.h) and its answer written
 * back through an h2o generator. Wire details are in http/mw_webwire.h. */
/* POLLRDHUP (a peer that hung up) is Linux's. */
#define _GNU_SOURCE
#include "http/mw_web.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>

#include "base/mw_buf.h"
#include "base/mw_log.h"
#include "base/mw_status.h"
#include "base/mw_timer.h"
#include "codec/mw_json.h"
#include "codec/mw_transcode.h"
#include "compress/mw_deflate.h"
#include "compress/mw_inflate.h"
#include "core/mw_compress.h"
#include "core/mw_loopback.h"
#include "core/mw_router.h"
#include "google/protobuf/descriptor.upb.h"
#include "http/mw_console.h"
#include "http/mw_http.h"
#include "http/mw_websocket.h"
#include "http/mw_webwire.h"
#include "upb/def.h"

#define MAX_FRAMES 4096 /* request messages in one body at most */
#define PREFLIGHT_MAX_AGE "7200"
#define EXPOSE_HEADERS "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Grpc-Encoding"
#define ALLOW_HEADERS                                                                     \
  "Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, Connect-Content-Encoding, " \
  "Connect-Accept-Encoding, Content-Encoding, Accept-Encoding, Grpc-Timeout, "            \
  "Grpc-Encoding, Grpc-Accept-Encoding, X-Grpc-Web, X-User-Agent"

struct mw_web {
  mw_http *http; /* NULL for a handler on another listener (mw_web_new) */
  mw_server *server;
  int console;   /* serve the console's pages (http/mw_console.h) */
  mw_web_rest_fn rest; /* the REST routes of a router's generation (NULL: none) */
  mw_loopback *lb;
  mw_ws *ws;             /* the WebSocket calls (http/mw_websocket.h) */
  h2o_socket_t *lb_sock; /* the loopback's eventfd (a dup) on the loop */
  char **origins;        /* http.cors.origins, copied */
  size_t n_origins;
  int any_origin;
  char *allow_headers; /* ALLOW_HEADERS plus http.cors.headers */
  char *expose_headers; /* EXPOSE_HEADERS plus http.cors.expose (and their
                           Connect unary trailers, Trailer-NAME) */
  mw_compress_policy compress; /* which gRPC-Web answers are compressed */
  size_t max_body;
  size_t compress_min; /* Connect answers this big or more are compressed
                          when the client accepts it (compression.min_bytes) */
  size_t leftover; /* connections still open at the stop */
  h2o_evloop_t *loop;
  /* HTTP/1 reads nothing while a request is being answered, so h2o would
   * not see a client that went away until it writes: calls waiting on an
   * HTTP/1 connection look at their socket this often (see on_watch). */
  h2o_timeout_t watch_timeout;
  int watch_ready;
  /* An event stream that sent nothing for this long gets a comment line, so
   * that proxies and browsers keep it open (http.sse_keepalive; 0: none). */
  uint64_t keepalive_ms;
  uint64_t retry_ms; /* http.sse_retry: each event stream's retry: field; 0: none */
  h2o_timeout_t keepalive_timeout;
  int keepalive_ready;
};

/* One request and its loopback call; lives as long as h2o's request (its
 * pool's dispose frees it), the loopback call released with it. */
typedef struct wcall {
  mw_web *w;
  h2o_req_t *req;
  h2o_generator_t gen;
  mw_lb_call *lb;
  mw_web_kind kind;
  int text;          /* answer grpc-web-text (base64 per flush) */
  int unary;         /* one request, one reply, one batch */
  int cors;          /* the origin is allowed: CORS headers on the answer */
  int started;       /* h2o_start_response made; the head goes with the first send */
  int sending;       /* h2o has bytes of ours; waiting for proceed */
  int final_queued;  /* the end is in pend, to go at the next proceed */
  int finished;      /* the final send was made */
  int ended;         /* the loopback call's responses ended */
  int busy;          /* inside an event of ours: the dispose waits */
  int disposed;      /* h2o disposed the request while busy */
  int json;          /* the JSON codec: messages converted both ways */
  int coding;        /* the answer's compression (a mw_coding), 0: none */
  size_t zmin;       /* gRPC-Web: messages smaller than this go uncompressed */
  mw_router *router; /* with json (and REST): a reference that keeps m's
                        schema (and the REST table) alive */
  const mw_transcode *rest;  /* REST: the table the route is in */
  mw_transcode_call route;   /* REST: the matched route (points into rest, arena) */
  upb_Arena *arena;          /* REST: the request's conversions, until the call ends */
  int sse;                   /* REST server stream: server-sent events, else NDJSON */
  const mw_method *m; /* with json: the method, in router's generation */
  h2o_timeout_entry_t watch; /* linked while an HTTP/1 request waits */
  h2o_timeout_entry_t keepalive; /* SSE: linked while the stream is open */
  h2o_iovec_t last_event_id; /* SSE: the lastEventId query parameter (req's pool) */
  mw_buf out;        /* the bytes h2o holds (valid until proceed) */
  mw_buf pend;       /* bytes waiting for the next proceed */
} wcall;

/* --- small helpers ------------------------------------------------------------ */

static const char *reason_of(int status) {
  switch (status) {
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 429: return "Too Many Requests";
  case 499: return "Client Closed Request";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return status < 500 ? "Error" : "Internal Server Error";
  }
}

static h2o_iovec_t find_header(h2o_req_t *req, const h2o_token_t *tok) {
  ssize_t i = h2o_find_header(&req->headers, tok, -1);
  return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

static h2o_iovec_t find_header_str(h2o_req_t *req, const char *name) {
  ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
  return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

static int iov_is(h2o_iovec_t v, const char *s) {
  size_t n = strlen(s);
  return v.len == n && strncasecmp(v.base, s, n) == 0;
}

static void add_header(h2o_req_t *req, const char *name, size_t nlen, const char *val,
                       size_t vlen) {
  /* Both go into the request's pool: h2o sends the head later. */
  h2o_iovec_t n = h2o_strdup(&req->pool, name, nlen);
  h2o_iovec_t v = h2o_strdup(&req->pool, val, vlen);
  h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1, NULL, v.base, v.len);
}

static void add_header_s(h2o_req_t *req, const char *name, const char *val) {
  add_header(req, name, strlen(name), val, strlen(val));
}

static int origin_allowed(const mw_web *w, h2o_iovec_t origin) {
  if (!origin.base) return 0;
  if (w->any_origin) return 1;
  for (size_t i = 0; i < w->n_origins; i++)
    if (strlen(w->origins[i]) == origin.len &&
        memcmp(w->origins[i], origin.base, origin.len) == 0)
      return 1;
  return 0;
}

static void add_cors_exposing(h2o_req_t *req, const char *expose) {
  h2o_iovec_t origin = find_header_str(req, "origin");
  add_header(req, "access-control-allow-origin", 27, origin.base, origin.len);
  add_header_s(req, "vary", "Origin");
  add_header_s(req, "access-control-expose-headers", expose);
}

/* Answers without a call's metadata (plain errors) expose only the status. */
static void add_cors(h2o_req_t *req) { add_cors_exposing(req, EXPOSE_HEADERS); }

/* A call's answer: the status and the headers http.cors.expose names. */
static void add_call_cors(wcall *wc) {
  if (wc->cors) add_cors_exposing(wc->req, wc->w->expose_headers);
}

/* One metadata entry as an HTTP header (or trailer-frame line): -bin
 * values as unpadded base64. */
static void md_value(mw_buf *b, const char *k, size_t kl, const char *v, size_t vl) {
  if (kl > 4 && memcmp(k + kl - 4, "-bin", 4) == 0)
    mw_web_b64_encode(b, (const unsigned char *)v, vl, 0);
  else
    mw_buf_put(b, v, vl);
}

/* The response metadata of one side as HTTP headers, names prefixed. */
static void add_md_headers(wcall *wc, int trailers, const char *prefix) {
  size_t n = mw_lb_call_md_count(wc->lb, trailers), pl = strlen(prefix);
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_lb_call_md_at(wc->lb, trailers, i, &k, &kl, &v, &vl);
    if (kl >= 5 && memcmp(k, "grpc-", 5) == 0 && wc->kind != MW_WEB_GRPC_WEB &&
        wc->kind != MW_WEB_GRPC_WEB_TEXT)
      continue; /* grpc-status-details-bin: Connect carries it in its error JSON */
    mw_buf name = {0}, val = {0};
    mw_buf_put(&name, prefix, pl);
    mw_buf_put(&name, k, kl);
    md_value(&val, k, kl, v, vl);
    if (!name.oom && !val.oom) add_header(wc->req, name.p, name.len, val.p, val.len);
    mw_buf_free(&name);
    mw_buf_free(&val);
  }
}

/* The grpc-status-details-bin trailer, binary, or NULL. */
static const char *details_of(const mw_lb_call *lb, size_t *len) {
  size_t n = mw_lb_call_md_count(lb, 1);
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_lb_call_md_at(lb, 1, i, &k, &kl, &v, &vl);
    if (kl == 23 && memcmp(k, "grpc-status-details-bin", 23) == 0) {
      *len = vl;
      return v;
    }
  }
  *len = 0;
  return NULL;
}

/* --- answering ------------------------------------------------------------------ */

static void gen_proceed(h2o_generator_t *g, h2o_req_t *req);
static void gen_stop(h2o_generator_t *g, h2o_req_t *req) {
  (void)g;
  (void)req; /* the pool's dispose does the work */
}

static const char *content_type_of(const wcall *wc) {
  switch (wc->kind) {
  case MW_WEB_GRPC_WEB:
  case MW_WEB_GRPC_WEB_TEXT:
    if (wc->json) return "application/grpc-web+json";
    return wc->text ? "application/grpc-web-text+proto" : "application/grpc-web+proto";
  case MW_WEB_CONNECT_STREAM:
    return wc->json ? "application/connect+json" : "application/connect+proto";
  case MW_WEB_REST:
    return wc->unary ? "application/json" : wc->sse ? "text/event-stream" : "application/x-ndjson";
  default: return wc->json ? "application/json" : "application/proto";
  }
}

/* A response message as the client's codec wants it: the bytes, or their
 * canonical JSON (in *arena, the caller frees it). NULL with err filled
 * when the conversion fails. */
static const char *response_bytes(wcall *wc, const char *data, size_t len, size_t *out_len,
                                  upb_Arena **arena, char *err, size_t errlen) {
  *arena = NULL;
  if (!wc->json) {
    *out_len = len;
    return data;
  }
  *arena = upb_Arena_New();
  const char *out = NULL;
  if (!*arena ||
      mw_json_from_binary(data, len, wc->m->output, mw_schema_pool(mw_methods_schema(
                              mw_router_methods(wc->router))),
                          0, NULL, *arena, &out, out_len, err, errlen) != MW_JSON_OK) {
    if (!*arena) snprintf(err, errlen, "out of memory");
    return NULL;
  }
  return out;
}

/* The head: status, content type, CORS. */
static void set_head(wcall *wc, int status, const char *ct) {
  h2o_req_t *req = wc->req;
  req->res.status = status;
  req->res.reason = reason_of(status);
  add_header_s(req, "content-type", ct);
  add_call_cors(wc);
  if ((wc->kind == MW_WEB_GRPC_WEB || wc->kind == MW_WEB_GRPC_WEB_TEXT) && wc->coding)
    add_header_s(req, "grpc-encoding", wc->coding == MW_CODING_GZIP ? "gzip" : "deflate");
}

/* The head of a Connect stream: its compression, when one was agreed. */
static void stream_head(wcall *wc) {
  set_head(wc, 200, content_type_of(wc));
  if (wc->kind == MW_WEB_CONNECT_STREAM && wc->coding)
    add_header_s(wc->req, "connect-content-encoding", wc->coding == MW_CODING_GZIP ? "gzip"
                                                                                  : "deflate");
  if (wc->kind == MW_WEB_REST) {
    /* Each message is flushed as it comes; proxies must not hold them. */
    add_header_s(wc->req, "cache-control", "no-cache");
    add_header_s(wc->req, "x-accel-buffering", "no");
    if (wc->sse && wc->w->retry_ms)
      mw_buf_printf(&wc->pend, "retry: %llu\n\n", (unsigned long long)wc->w->retry_ms);
  }
  add_md_headers(wc, 0, wc->kind == MW_WEB_REST ? "grpc-metadata-" : "");
}

/* Hands pend to h2o (final: the last bytes of the answer). */
static void flush(wcall *wc, int final) {
  if (!wc->req || wc->finished) return;
  mw_buf_free(&wc->out);
  wc->out = wc->pend;
  wc->pend = (mw_buf){0};
  if (!wc->started) {
    wc->gen.proceed = gen_proceed;
    wc->gen.stop = gen_stop;
    if (final) wc->req->res.content_length = wc->out.len;
    h2o_start_response(wc->req, &wc->gen);
    wc->started = 1;
  }
  h2o_iovec_t buf = h2o_iovec_init(wc->out.p ? wc->out.p : "", wc->out.len);
  if (final) wc->finished = 1;
  else wc->sending = 1;
  if (h2o_timeout_is_linked(&wc->keepalive)) h2o_timeout_unlink(&wc->keepalive);
  if (!final && wc->sse && wc->w->keepalive_ready)
    h2o_timeout_link(wc->w->loop, &wc->w->keepalive_timeout, &wc->keepalive);
  h2o_send(wc->req, &buf, 1, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

/* One envelope into pend; in text mode each is its own padded base64 chunk. */
static void put_frame(wcall *wc, uint8_t flags, const char *data, size_t len) {
  if (wc->kind == MW_WEB_REST) {
    /* One message per line (NDJSON), or per event; the codec's JSON has no
     * newline in it. */
    if (wc->sse) mw_buf_puts(&wc->pend, "data: ");
    mw_buf_put(&wc->pend, data, len);
    mw_buf_puts(&wc->pend, wc->sse ? "\n\n" : "\n");
    return;
  }
  if (!wc->text) {
    mw_web_put_frame(&wc->pend, flags, data, len);
    return;
  }
  mw_buf raw = {0};
  mw_web_put_frame(&raw, flags, data, len);
  mw_web_b64_encode(&wc->pend, (const unsigned char *)raw.p, raw.len, 1);
  mw_buf_free(&raw);
}

/* A response message as a frame: compressed (flag 0x01) when the stream's
 * coding says so and the message is big enough (gRPC-Web, Connect streams;
 * each message decides on its own, as gRPC's do). */
static void put_message(wcall *wc, const char *data, size_t len) {
  size_t min = wc->kind == MW_WEB_CONNECT_STREAM ? wc->w->compress_min : wc->zmin;
  char *z = NULL;
  size_t zl = 0;
  if (wc->kind != MW_WEB_REST && wc->coding && len >= min &&
      mw_deflate((mw_coding)wc->coding, data, len, &z, &zl) == 0)
    put_frame(wc, 1, z, zl);
  else
    put_frame(wc, 0, data, len);
  free(z);
}

/* gRPC-Web's trailer frame: status, message, trailers, as header lines. */
static void put_trailer_frame(wcall *wc, int code, const char *msg, size_t msg_len) {
  mw_buf t = {0};
  mw_buf_printf(&t, "grpc-status:%d\r\n", code);
  if (msg_len) {
    mw_buf_puts(&t, "grpc-message:");
    mw_web_percent_encode(&t, msg, msg_len);
    mw_buf_puts(&t, "\r\n");
  }
  size_t n = wc->lb ? mw_lb_call_md_count(wc->lb, 1) : 0;
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_lb_call_md_at(wc->lb, 1, i, &k, &kl, &v, &vl);
    mw_buf_put(&t, k, kl);
    mw_buf_puts(&t, ":");
    md_value(&t, k, kl, v, vl);
    mw_buf_puts(&t, "\r\n");
  }
  put_frame(wc, 0x80, t.p ? t.p : "", t.len);
  mw_buf_free(&t);
}

/* A gRPC-Web answer without a body: the status in the HTTP headers. */
static void grpc_web_trailers_only(wcall *wc, int code, const char *msg, size_t msg_len) {
  h2o_req_t *req = wc->req;
  req->res.status = 200;
  req->res.reason = "OK";
  add_header_s(req, "content-type", content_type_of(wc));
  add_call_cors(wc);
  char num[16];
  snprintf(num, sizeof num, "%d", code);
  add_header_s(req, "grpc-status", num);
  if (msg_len) {
    mw_buf m = {0};
    mw_web_percent_encode(&m, msg, msg_len);
    if (!m.oom) add_header(req, "grpc-message", 12, m.p, m.len);
    mw_buf_free(&m);
  }
}

/* The Connect end-of-stream message: {} or {"error":{..},"metadata":{..}}. */
static void put_end_stream(wcall *wc, int code, const char *msg, size_t msg_len) {
  mw_buf j = {0};
  mw_buf_puts(&j, "{");
  int comma = 0;
  if (code != MW_STATUS_OK) {
    size_t dl = 0;
    const char *d = wc->lb ? details_of(wc->lb, &dl) : NULL;
    mw_buf_puts(&j, "\"error\":");
    mw_web_error_json(&j, code, msg, msg_len, d, dl);
    comma = 1;
  }
  size_t n = wc->lb ? mw_lb_call_md_count(wc->lb, 1) : 0;
  int any = 0;
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_lb_call_md_at(wc->lb, 1, i, &k, &kl, &v, &vl);
    if (kl >= 5 && memcmp(k, "grpc-", 5) == 0) continue;
    mw_buf val = {0};
    md_value(&val, k, kl, v, vl);
    mw_buf_puts(&j, any ? "," : comma ? ",\"metadata\":{" : "\"metadata\":{");
    mw_buf_json(&j, k, kl);
    mw_buf_puts(&j, ":[");
    mw_buf_json(&j, val.p ? val.p : "", val.len);
    mw_buf_puts(&j, "]");
    mw_buf_free(&val);
    any = 1;
  }
  if (any) mw_buf_puts(&j, "}");
  mw_buf_puts(&j, "}");
  put_frame(wc, 0x02, j.p ? j.p : "", j.len);
  mw_buf_free(&j);
}

/* An answer made here, without a loopback call (a bad request, an unknown
 * method): in each protocol's own form. */
static void rest_error(wcall *wc, int code, const char *msg, size_t ml, const char *details,
                       size_t dl);
static void rest_stream_error(wcall *wc, int code, const char *msg, size_t ml,
                              const char *details, size_t dl);

static void local_error(wcall *wc, int code, const char *msg) {
  size_t ml = strlen(msg);
  switch (wc->kind) {
  case MW_WEB_REST:
    rest_error(wc, code, msg, ml, NULL, 0);
    flush(wc, 1);
    return;
  case MW_WEB_GRPC_WEB:
  case MW_WEB_GRPC_WEB_TEXT:
    grpc_web_trailers_only(wc, code, msg, ml);
    flush(wc, 1);
    return;
  case MW_WEB_CONNECT_STREAM:
    set_head(wc, 200, content_type_of(wc));
    put_end_stream(wc, code, msg, ml);
    flush(wc, 1);
    return;
  default: {
    /* Connect unary: errors are JSON whatever the codec, with the
     * table's HTTP status. */
    int status = mw_web_code_http(code);
    set_head(wc, status, "application/json");
    mw_web_error_json(&wc->pend, code, msg, ml, NULL, 0);
    flush(wc, 1);
    return;
  }
  }
}

/* A plain HTTP answer (415, 405, 400...): text, with CORS when allowed. */
static int plain(h2o_req_t *req, int cors, int status, const char *allow, const char *text) {
  req->res.status = status;
  req->res.reason = reason_of(status);
  add_header_s(req, "content-type", "text/plain; charset=utf-8");
  if (allow) add_header_s(req, "allow", allow);
  if (cors) add_cors(req);
  size_t n = strlen(text);
  req->res.content_length = n;
  h2o_send_inline(req, text, n);
  return 0;
}

/* --- the loopback call's events ----------------------------------------------------- */

static void wcall_free(wcall *wc) {
  if (h2o_timeout_is_linked(&wc->watch)) h2o_timeout_unlink(&wc->watch);
  if (h2o_timeout_is_linked(&wc->keepalive)) h2o_timeout_unlink(&wc->keepalive);
  mw_lb_call_release(wc->lb);
  mw_router_unref(wc->router);
  if (wc->arena) upb_Arena_Free(wc->arena);
  mw_buf_free(&wc->out);
  mw_buf_free(&wc->pend);
  free(wc);
}

static void on_dispose(void *p) {
  wcall *wc = *(wcall **)p;
  wc->req = NULL;
  if (wc->busy) {
    wc->disposed = 1;
    return;
  }
  wcall_free(wc);
}

#define ENTER(wc) ((wc)->busy++)
#define LEAVE(wc)                                  \
  do {                                             \
    if (--(wc)->busy == 0 && (wc)->disposed) {     \
      wcall_free(wc);                              \
      return;                                      \
    }                                              \
  } while (0)

/* A session publication on an event stream comes with its event id in
 * front (core/mw_loopback.h, MW_LB_EVENT_ID_FIELD): *id gets it, and the
 * message is what follows. Anything else is left as it is (*idl 0). */
static void take_event_id(const char **data, size_t *len, const char **id, size_t *idl) {
  static const size_t tl = sizeof MW_LB_EVENT_ID_TAG - 1;
  const unsigned char *d = (const unsigned char *)*data;
  if (*len < tl + 1 || memcmp(d, MW_LB_EVENT_ID_TAG, tl) != 0) return;
  size_t n = d[tl];
  if (n >= 128 || *len < tl + 1 + n) return;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = d[tl + 1 + i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == ':')) return;
  }
  *id = *data + tl + 1;
  *idl = n;
  *data += tl + 1 + n;
  *len -= tl + 1 + n;
}

static void on_lb_message(void *self, const char *data, size_t len, int has_msg) {
  wcall *wc = self;
  if (!wc->req) return;
  ENTER(wc);
  if (!has_msg) {
    wc->ended = 1;
  } else {
    const char *id = NULL;
    size_t idl = 0;
    if (wc->sse) take_event_id(&data, &len, &id, &idl);
    upb_Arena *arena;
    char err[200];
    size_t ol;
    const char *out = response_bytes(wc, data, len, &ol, &arena, err, sizeof err);
    if (!out) {
      /* The handler's message cannot be shown in JSON: the call ends
       * (cancelled once the answer's end is written). */
      wc->ended = 1;
      if (!wc->started && !wc->sending) {
        local_error(wc, MW_STATUS_INTERNAL, err);
      } else {
        if (wc->kind == MW_WEB_CONNECT_STREAM) put_end_stream(wc, MW_STATUS_INTERNAL, err,
                                                              strlen(err));
        else if (wc->kind == MW_WEB_REST)
          rest_stream_error(wc, MW_STATUS_INTERNAL, err, strlen(err), NULL, 0);
        else put_trailer_frame(wc, MW_STATUS_INTERNAL, err, strlen(err));
        if (wc->sending) wc->final_queued = 1;
        else flush(wc, 1);
      }
      mw_lb_call_release(wc->lb);
      wc->lb = NULL;
      if (arena) upb_Arena_Free(arena);
      LEAVE(wc);
      return;
    }
    if (!wc->started && wc->pend.len == 0 && !wc->sending) stream_head(wc);
    if (idl) {
      mw_buf_puts(&wc->pend, "id: ");
      mw_buf_put(&wc->pend, id, idl);
      mw_buf_puts(&wc->pend, "\n");
    }
    put_message(wc, out, ol);
    if (arena) upb_Arena_Free(arena);
    if (!wc->sending) flush(wc, 0);
  }
  LEAVE(wc);
}

static void on_lb_status(void *self) {
  wcall *wc = self;
  if (!wc->req || wc->finished) return;
  ENTER(wc);
  int code = mw_lb_call_code(wc->lb);
  size_t ml;
  const char *msg = mw_lb_call_message(wc->lb, &ml);
  if (code == MW_STATUS_UNAVAILABLE && ml >= 17 && memcmp(msg, "failed to connect", 17) == 0) {
    /* The internal listener closed: the server drains. gRPC core's text
     * would name the internal socket. */
    msg = "the server is shutting down";
    ml = strlen(msg);
  }
  const char *reply = NULL;
  size_t rl = 0;
  int has_reply = wc->unary && mw_lb_call_response(wc->lb, &reply, &rl);
  upb_Arena *arena = NULL;
  char jerr[200];
  if (has_reply && wc->json) {
    size_t ol;
    const char *out = response_bytes(wc, reply, rl, &ol, &arena, jerr, sizeof jerr);
    if (out) {
      reply = out;
      rl = ol;
    } else {
      has_reply = 0;
      code = MW_STATUS_INTERNAL;
      msg = jerr;
      ml = strlen(jerr);
    }
  }
  switch (wc->kind) {
  case MW_WEB_GRPC_WEB:
  case MW_WEB_GRPC_WEB_TEXT:
    if (!wc->started && !wc->sending && !has_reply) {
      /* Nothing was sent: trailers-only, the status in the headers. */
      grpc_web_trailers_only(wc, code, msg, ml);
      add_md_headers(wc, 0, "");
      add_md_headers(wc, 1, "");
    } else {
      if (!wc->started && !wc->sending) {
        set_head(wc, 200, content_type_of(wc));
        add_md_headers(wc, 0, "");
      }
      if (has_reply) put_message(wc, reply, rl);
      put_trailer_frame(wc, code, msg, ml);
    }
    break;
  case MW_WEB_CONNECT_STREAM:
    if (!wc->started && !wc->sending) stream_head(wc);
    put_end_stream(wc, code, msg, ml);
    break;
  case MW_WEB_REST: {
    const char *out = NULL;
    size_t ol = 0;
    if (!wc->unary && (wc->started || wc->sending || wc->pend.len)) {
      /* A stream under way: its end is the end of the body, an error one
       * last item, {"error": google.rpc.Status} (an "error" event). */
      if (code != MW_STATUS_OK) {
        size_t dl = 0;
        const char *d = details_of(wc->lb, &dl);
        rest_stream_error(wc, code, msg, ml, d, dl);
      }
      break;
    }
    if (!wc->unary && code == MW_STATUS_OK) {
      /* A stream that ended OK with no message: an empty body. */
      stream_head(wc);
      break;
    }
    mw_transcode_error terr;
    mw_json_limits lim = {0, 0, 0};
    if (code == MW_STATUS_OK && has_reply &&
        mw_transcode_response(wc->rest, &wc->route, reply, rl, 0, &lim, wc->arena, &out, &ol,
                              &terr) == 0) {
      set_head(wc, 200, "application/json");
      add_md_headers(wc, 0, "grpc-metadata-");
      add_md_headers(wc, 1, "grpc-metadata-");
      mw_buf_put(&wc->pend, out, ol);
    } else {
      if (code == MW_STATUS_OK) {
        code = MW_STATUS_INTERNAL;
        msg = has_reply ? terr.message : "the handler gave no reply";
        ml = strlen(msg);
      }
      size_t dl = 0;
      const char *d = details_of(wc->lb, &dl);
      rest_error(wc, code, msg, ml, d, dl);
    }
    break;
  }
  default:
    if (code == MW_STATUS_OK && has_reply) {
      set_head(wc, 200, content_type_of(wc));
      add_md_headers(wc, 0, "");
      add_md_headers(wc, 1, "trailer-");
      char *z = NULL;
      size_t zl = 0;
      if (wc->coding && rl >= wc->w->compress_min &&
          mw_deflate((mw_coding)wc->coding, reply, rl, &z, &zl) == 0) {
        add_header_s(wc->req, "content-encoding", wc->coding == MW_CODING_GZIP ? "gzip"
                                                                              : "deflate");
        mw_buf_put(&wc->pend, z, zl);
        free(z);
      } else {
        mw_buf_put(&wc->pend, reply, rl);
      }
    } else {
      if (code == MW_STATUS_OK) {
        code = MW_STATUS_INTERNAL;
        msg = "the handler gave no reply";
        ml = strlen(msg);
      }
      size_t dl = 0;
      const char *d = details_of(wc->lb, &dl);
      set_head(wc, mw_web_code_http(code), "application/json");
      add_md_headers(wc, 0, "");
      add_md_headers(wc, 1, "trailer-");
      mw_web_error_json(&wc->pend, code, msg, ml, d, dl);
    }
    break;
  }
  if (wc->sending) wc->final_queued = 1;
  else flush(wc, 1);
  if (arena) upb_Arena_Free(arena);
  LEAVE(wc);
}

static void gen_proceed(h2o_generator_t *g, h2o_req_t *req) {
  (void)req;
  wcall *wc = (wcall *)((char *)g - offsetof(wcall, gen));
  wc->sending = 0;
  if (!wc->req) return;
  ENTER(wc);
  if (wc->final_queued) flush(wc, 1);
  else if (wc->pend.len) flush(wc, 0);
  else if (!wc->ended) mw_lb_call_recv(wc->lb);
  LEAVE(wc);
}

static const mw_lb_ops lb_ops = {on_lb_message, on_lb_status, NULL};

/* The client of an HTTP/1 request hung up (or reset): its call is
 * cancelled, and the answer ended so that h2o closes the connection. */
static void on_watch(h2o_timeout_entry_t *e) {
  wcall *wc = (wcall *)((char *)e - offsetof(wcall, watch));
  if (!wc->req || wc->finished) return;
  h2o_socket_t *sock =
      wc->req->conn->callbacks->get_socket ? wc->req->conn->callbacks->get_socket(wc->req->conn)
                                           : NULL;
  int fd = sock ? h2o_socket_get_fd(sock) : -1;
  struct pollfd p = {fd, POLLRDHUP, 0};
  if (fd < 0 || poll(&p, 1, 0) != 1 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
    h2o_timeout_link(wc->w->loop, &wc->w->watch_timeout, &wc->watch);
    return;
  }
  ENTER(wc);
  mw_lb_call_release(wc->lb);
  wc->lb = NULL;
  wc->ended = 1;
  if (!wc->started && !wc->sending) local_error(wc, MW_STATUS_CANCELLED, "the client went away");
  else if (wc->sending) wc->final_queued = 1;
  else flush(wc, 1);
  LEAVE(wc);
}

/* An event stream sent nothing for http.sse_keepalive: a comment line
 * (which EventSource ignores) keeps proxies and the browser from taking
 * it for dead. It also sends the head when no event came yet, so the
 * client's open fires. Not while bytes wait for the client to read them:
 * the stream is not idle then. */
static void on_keepalive(h2o_timeout_entry_t *e) {
  wcall *wc = (wcall *)((char *)e - offsetof(wcall, keepalive));
  if (!wc->req || wc->finished || wc->ended) return;
  if (wc->sending || wc->pend.len) {
    h2o_timeout_link(wc->w->loop, &wc->w->keepalive_timeout, &wc->keepalive);
    return;
  }
  ENTER(wc);
  if (!wc->started) stream_head(wc);
  mw_buf_puts(&wc->pend, ": keepalive\n\n");
  flush(wc, 0);
  LEAVE(wc);
}

/* --- requests ------------------------------------------------------------------------ */

/* Request headers that are HTTP's or the protocols' own, not metadata. */
static int skip_header(const char *k, size_t kl) {
  static const char *const skip[] = {
      "host", "content-type", "content-length", "connection", "keep-alive", "te",
      "transfer-encoding", "upgrade", "accept", "accept-encoding", "content-encoding",
      "user-agent", "origin", "referer", "x-grpc-web", "x-user-agent", "http2-settings",
      "access-control-request-method", "access-control-request-headers", "expect",
      "proxy-connection", "priority", NULL};
  if (kl == 0 || k[0] == ':') return 1;
  if (kl >= 5 && memcmp(k, "grpc-", 5) == 0) return 1;
  if (kl >= 8 && memcmp(k, "connect-", 8) == 0) return 1;
  if (kl == sizeof MW_LOOPBACK_KEY - 1 && memcmp(k, MW_LOOPBACK_KEY, kl) == 0) return 1;
  for (size_t i = 0; skip[i]; i++)
    if (strlen(skip[i]) == kl && memcmp(skip[i], k, kl) == 0) return 1;
  for (size_t i = 0; i < kl; i++) {
    char c = k[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
          c == '.'))
      return 1; /* not a key gRPC metadata may carry */
  }
  return 0;
}

void mw_web_peer(h2o_req_t *req, char *out, size_t len) {
  struct sockaddr_storage ss;
  socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
  char host[INET6_ADDRSTRLEN] = "?";
  if (sl && ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    snprintf(out, len, "ipv4:%s:%u", host, ntohs(a->sin_port));
  } else if (sl && ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    snprintf(out, len, "ipv6:[%s]:%u", host, ntohs(a->sin6_port));
  } else {
    snprintf(out, len, "unknown");
  }
}

/* What a request wants, once parsed. */
#define INLINE_FRAMES 4
typedef struct parsed {
  const mw_method *m;
  mw_web_frame *frames; /* n_frames: inline_frames, or malloc'd */
  char **owned;         /* per frame: an inflated payload to free, or NULL */
  size_t n_frames;
  mw_web_frame inline_frames[INLINE_FRAMES];
  char *inline_owned[INLINE_FRAMES];
  double timeout; /* seconds; 0: none */
  upb_Arena *arena; /* requests converted from JSON, until the call started */
} parsed;

static void parsed_free(parsed *p) {
  if (p->arena) upb_Arena_Free(p->arena);
  for (size_t i = 0; i < p->n_frames; i++) free(p->owned[i]);
  if (p->frames != p->inline_frames) {
    free(p->frames);
    free(p->owned);
  }
}

/* Which coding a request's encoding header names: 0 identity, a
 * mw_coding, or -1 for one not supported. */
static int coding_of(h2o_iovec_t v) {
  if (!v.base || iov_is(v, "identity")) return 0;
  if (iov_is(v, "gzip")) return MW_CODING_GZIP;
  if (iov_is(v, "deflate")) return MW_CODING_DEFLATE;
  return -1;
}

/* Inflates one payload in place of the frame; -1 with msg when it cannot. */
static int inflate_frame(mw_web *w, parsed *p, size_t i, int coding, char *msg, size_t ml) {
  mw_inflate_chunk in = {p->frames[i].data, p->frames[i].len};
  char *out = NULL;
  size_t out_len = 0;
  mw_inflate_result r = mw_inflate((mw_coding)coding, &in, 1, w->max_body, &out, &out_len);
  if (r != MW_INFLATE_OK) {
    snprintf(msg, ml, "request message: %s", mw_inflate_result_text(r));
    return -1;
  }
  p->owned[i] = out;
  p->frames[i].data = out;
  p->frames[i].len = out_len;
  return 0;
}

/* With the JSON codec, each request message's JSON becomes the input
 * type's binary (unknown fields skipped, as Connect's servers do). 0, or
 * -1 after answering. */
static int json_requests(mw_web *w, wcall *wc, parsed *p) {
  if (!wc->json) return 0;
  if (!p->arena) p->arena = upb_Arena_New();
  if (!p->arena) {
    local_error(wc, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return -1;
  }
  const upb_DefPool *pool = mw_schema_pool(mw_methods_schema(mw_router_methods(wc->router)));
  mw_json_limits lim = {0, w->max_body, 0};
  for (size_t i = 0; i < p->n_frames; i++) {
    char err[200];
    const char *out;
    size_t ol;
    /* An empty Connect unary body is the empty message. */
    if (p->frames[i].len == 0) continue;
    mw_json_status st = mw_json_to_binary(p->frames[i].data, p->frames[i].len, p->m->input,
                                          pool, MW_JSON_IGNORE_UNKNOWN, &lim, p->arena, &out,
                                          &ol, err, sizeof err);
    if (st != MW_JSON_OK) {
      char m[260];
      snprintf(m, sizeof m, "request message: %s", err);
      local_error(wc, st == MW_JSON_INVALID ? MW_STATUS_INVALID_ARGUMENT
                                            : MW_STATUS_RESOURCE_EXHAUSTED, m);
      return -1;
    }
    p->frames[i].data = out;
    p->frames[i].len = ol;
  }
  return 0;
}

/* Starts the loopback call of a parsed request. */
static void start_call(mw_web *w, wcall *wc, parsed *p) {
  h2o_req_t *req = wc->req;
  /* Metadata: the request's own headers, then ours. */
  const char *inline_msgs[INLINE_FRAMES], **msgs = inline_msgs;
  size_t inline_lens[INLINE_FRAMES], *msg_lens = inline_lens;
  size_t cap = req->headers.size + 2, n = 0;
  const char **keys = calloc(cap, sizeof *keys), **vals = calloc(cap, sizeof *vals);
  size_t *lens = calloc(cap, sizeof *lens);
  char **tofree = calloc(cap, sizeof *tofree);
  if (!keys || !vals || !lens || !tofree) {
    local_error(wc, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < req->headers.size; i++) {
    const h2o_header_t *h = &req->headers.entries[i];
    const char *hk = h->name->base;
    size_t hkl = h->name->len;
    /* REST clients name metadata Grpc-Metadata-<key> (grpc-gateway's form). */
    if (wc->kind == MW_WEB_REST && hkl > 14 && memcmp(hk, "grpc-metadata-", 14) == 0) {
      hk += 14;
      hkl -= 14;
    }
    if (skip_header(hk, hkl)) continue;
    char *k = h2o_strdup(&req->pool, hk, hkl).base;
    if (hkl > 4 && memcmp(k + hkl - 4, "-bin", 4) == 0) {
      char *bin = malloc(h->value.len * 3 / 4 + 3);
      long bl = bin ? mw_web_b64_decode(h->value.base, h->value.len, (unsigned char *)bin, 1)
                    : -1;
      if (bl < 0) {
        free(bin);
        char m[160];
        snprintf(m, sizeof m, "header %s: not valid base64", k);
        local_error(wc, MW_STATUS_INVALID_ARGUMENT, m);
        goto out;
      }
      tofree[n] = bin;
      vals[n] = bin;
      lens[n] = (size_t)bl;
    } else {
      vals[n] = h->value.base;
      lens[n] = h->value.len;
    }
    keys[n++] = k;
  }
  if (wc->last_event_id.base && find_header_str(req, "last-event-id").base == NULL) {
    /* EventSource cannot set headers: a client that builds its URL gives
     * the id it last saw as ?lastEventId=, and the handler reads it where
     * the browser's own reconnect puts it. */
    keys[n] = "last-event-id";
    vals[n] = wc->last_event_id.base;
    lens[n++] = wc->last_event_id.len;
  }
  char peer[96];
  mw_web_peer(req, peer, sizeof peer);
  int tls, reused;
  char *cert = mw_http_peer_tls(req, &tls, &reused);
  const char *proto = wc->kind == MW_WEB_GRPC_WEB        ? "grpc-web"
                      : wc->kind == MW_WEB_GRPC_WEB_TEXT ? "grpc-web-text"
                      : wc->kind == MW_WEB_REST          ? "rest"
                                                         : "connect";
  mw_buf auth = {0};
  mw_buf_printf(&auth, "%s;%s;%s;%s%s%s;%s", mw_loopback_secret(), proto, peer,
                wc->sse ? "e" : "", tls ? "t" : "", reused ? "r" : "", cert ? cert : "");
  free(cert);
  if (auth.oom) {
    mw_buf_free(&auth);
    local_error(wc, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    goto out;
  }
  keys[n] = MW_LOOPBACK_KEY;
  vals[n] = auth.p;
  lens[n++] = auth.len;
  tofree[n - 1] = auth.p; /* freed with the -bin values, after the start */

  if (p->n_frames > INLINE_FRAMES) {
    msgs = calloc(p->n_frames, sizeof *msgs);
    msg_lens = calloc(p->n_frames, sizeof *msg_lens);
  }
  if (!msgs || !msg_lens) {
    local_error(wc, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < p->n_frames; i++) {
    msgs[i] = p->frames[i].data;
    msg_lens[i] = p->frames[i].len;
  }
  mw_lb_start a = {
      .path = p->m->path,
      .path_len = p->m->path_len,
      .deadline = p->timeout > 0 ? mw_wall_now() + p->timeout : 0,
      .md_keys = keys,
      .md_vals = vals,
      .md_lens = lens,
      .md_n = n,
      .msgs = msgs,
      .msg_lens = msg_lens,
      .n_msgs = p->n_frames,
      .unary = wc->unary,
      .ops = &lb_ops,
      .self = wc,
  };
  char err[160];
  wc->lb = mw_lb_call_start(w->lb, &a, err, sizeof err);
  if (!wc->lb) {
    local_error(wc, MW_STATUS_UNAVAILABLE, err);
    goto out;
  }
  if (!wc->unary) mw_lb_call_recv(wc->lb);
  if (req->version < 0x200 && w->watch_ready) {
    wc->watch.cb = on_watch;
    h2o_timeout_link(w->loop, &w->watch_timeout, &wc->watch);
  }
  if (wc->sse && w->keepalive_ready) {
    wc->keepalive.cb = on_keepalive;
    h2o_timeout_link(w->loop, &w->keepalive_timeout, &wc->keepalive);
  }
out:
  if (msgs != inline_msgs) free(msgs);
  if (msg_lens != inline_lens) free(msg_lens);
  for (size_t i = 0; tofree && i < cap; i++) free(tofree[i]);
  free(tofree);
  free(keys);
  free(vals);
  free(lens);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes (and '+' as space) into out; the length, or -1. */
static long pct_decode(const char *s, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      if (i + 2 >= n) return -1;
      int a = hexval(s[i + 1]), b = hexval(s[i + 2]);
      if (a < 0 || b < 0) return -1;
      out[o++] = (char)(a * 16 + b);
      i += 2;
    } else {
      out[o++] = s[i] == '+' ? ' ' : s[i];
    }
  }
  return (long)o;
}

/* A query parameter's raw value, or {NULL,0}. */
static h2o_iovec_t query_param(h2o_iovec_t q, const char *name) {
  size_t nl = strlen(name);
  const char *p = q.base, *end = q.base + q.len;
  while (p && p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *e = amp ? amp : end;
    if ((size_t)(e - p) > nl && p[nl] == '=' && memcmp(p, name, nl) == 0)
      return h2o_iovec_init(p + nl + 1, (size_t)(e - p - nl - 1));
    if ((size_t)(e - p) == nl && memcmp(p, name, nl) == 0) return h2o_iovec_init(p + nl, 0);
    p = amp ? amp + 1 : NULL;
  }
  return h2o_iovec_init(NULL, 0);
}

static int method_no_side_effects(const mw_method *m) {
  const google_protobuf_MethodOptions *o = upb_MethodDef_Options(m->def);
  return o && google_protobuf_MethodOptions_idempotency_level(o) ==
                  google_protobuf_MethodOptions_NO_SIDE_EFFECTS;
}

/* How a gRPC-Web call's answers are compressed: as a gRPC call's would be
 * (the compression section, the method's rule), when the client's
 * grpc-accept-encoding lists the rule's algorithm, else the other one it
 * lists; browsers' clients list none, and get every message uncompressed. */
static void grpc_web_coding(mw_web *w, wcall *wc, const mw_method *m, h2o_iovec_t accept) {
  const mw_compress_rule *r = mw_compress_policy_for(&w->compress, m->path);
  int mask = r ? mw_web_accepted_codings(accept.base, accept.len) : 0;
  int want = r && r->algorithm == MW_CONFIG_COMPRESS_DEFLATE ? MW_CODING_DEFLATE
                                                             : MW_CODING_GZIP;
  int other = want == MW_CODING_GZIP ? MW_CODING_DEFLATE : MW_CODING_GZIP;
  wc->coding = mask & (1 << want) ? want : mask & (1 << other) ? other : 0;
  wc->zmin = r ? r->min_bytes : 0;
}

static int preflight(mw_web *w, h2o_req_t *req, int cors) {
  h2o_iovec_t rm = find_header_str(req, "access-control-request-method");
  if (!rm.base) return plain(req, 0, 405, "GET, POST", "only GET and POST are served\n");
  if (!cors) return plain(req, 0, 403, NULL, "this origin is not in http.cors.origins\n");
  req->res.status = 204;
  req->res.reason = "No Content";
  h2o_iovec_t origin = find_header_str(req, "origin");
  add_header(req, "access-control-allow-origin", 27, origin.base, origin.len);
  add_header_s(req, "access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE");
  add_header_s(req, "access-control-allow-headers", w->allow_headers);
  add_header_s(req, "access-control-max-age", PREFLIGHT_MAX_AGE);
  add_header_s(req, "vary",
               "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
  req->res.content_length = 0;
  h2o_send_inline(req, "", 0);
  return 0;
}

/* Splits, decodes and checks the request messages of an enveloped body
 * (gRPC-Web, Connect streaming). 0, or -1 after answering. */
static int read_frames(mw_web *w, wcall *wc, parsed *p, const char *body, size_t len,
                       h2o_iovec_t encoding) {
  char msg[200];
  long n = mw_web_frames(body, len, NULL, MAX_FRAMES, msg, sizeof msg);
  if (n < 0) {
    local_error(wc, MW_STATUS_INVALID_ARGUMENT, msg);
    return -1;
  }
  if (n > INLINE_FRAMES) {
    p->frames = calloc((size_t)n, sizeof *p->frames);
    p->owned = calloc((size_t)n, sizeof *p->owned);
    if (!p->frames || !p->owned) {
      free(p->frames);
      free(p->owned);
      p->frames = p->inline_frames;
      p->owned = p->inline_owned;
      local_error(wc, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
      return -1;
    }
  }
  mw_web_frames(body, len, p->frames, MAX_FRAMES, msg, sizeof msg);
  p->n_frames = (size_t)n;
  int coding = coding_of(encoding);
  if (coding < 0) {
    snprintf(msg, sizeof msg, "message encoding '%.*s' is not supported (supported: identity, "
             "gzip, deflate)", (int)(encoding.len > 40 ? 40 : encoding.len), encoding.base);
    local_error(wc, MW_STATUS_UNIMPLEMENTED, msg);
    return -1;
  }
  for (size_t i = 0; i < p->n_frames; i++) {
    uint8_t f = p->frames[i].flags;
    if (f & ~1u) {
      local_error(wc, MW_STATUS_INTERNAL, "a request envelope has reserved flags set");
      return -1;
    }
    if (f & 1) {
      if (coding == 0) {
        local_error(wc, MW_STATUS_INTERNAL,
                    "a request message is flagged compressed but the encoding is identity");
        return -1;
      }
      if (inflate_frame(w, p, i, coding, msg, sizeof msg) != 0) {
        local_error(wc, MW_STATUS_INTERNAL, msg);
        return -1;
      }
    }
  }
  /* A method that takes one request takes exactly one. */
  if ((p->m->kind == MW_KIND_UNARY || p->m->kind == MW_KIND_SERVER_STREAMING) &&
      p->n_frames != 1) {
    snprintf(msg, sizeof msg, "%s takes one request message, the body held %zu",
             p->m->path, p->n_frames);
    local_error(wc, MW_STATUS_UNIMPLEMENTED, msg);
    return -1;
  }
  return json_requests(w, wc, p);
}

/* --- REST (google.api.http routes) --------------------------------------------------- */

/* The last item of a REST stream that fails after it began:
 * {"error": google.rpc.Status} as a line (NDJSON) or an "error" event. */
static void rest_stream_error(wcall *wc, int code, const char *msg, size_t ml,
                              const char *details, size_t dl) {
  const char *out = NULL;
  size_t ol = 0;
  int hs;
  char e[160], text[512];
  snprintf(text, sizeof text, "%.*s", (int)(ml > 500 ? 500 : ml), msg);
  if (!wc->arena) wc->arena = upb_Arena_New();
  if (!wc->arena ||
      mw_transcode_status_json(mw_schema_pool(mw_methods_schema(mw_router_methods(wc->router))),
                               code, text, details, dl, wc->arena, &out, &ol, &hs, e,
                               sizeof e) != 0) {
    out = "{}";
    ol = 2;
  }
  mw_buf_puts(&wc->pend, wc->sse ? "event: error\ndata: {\"error\":" : "{\"error\":");
  mw_buf_put(&wc->pend, out, ol);
  mw_buf_puts(&wc->pend, wc->sse ? "}\n\n" : "}\n");
}

/* An error as google.rpc.Status JSON with code.proto's HTTP status, the
 * call's response metadata as grpc-metadata-* headers. */
static void rest_error(wcall *wc, int code, const char *msg, size_t ml, const char *details,
                       size_t dl) {
  char text[512], err[160];
  snprintf(text, sizeof text, "%.*s", (int)(ml > 500 ? 500 : ml), msg);
  const char *out = NULL;
  size_t ol = 0;
  int status = mw_transcode_http_status(code);
  const upb_DefPool *pool = wc->router ? mw_schema_pool(mw_methods_schema(
                                             mw_router_methods(wc->router)))
                                       : NULL;
  if (!wc->arena) wc->arena = upb_Arena_New();
  if (!pool || !wc->arena ||
      mw_transcode_status_json(pool, code, text, details, dl, wc->arena, &out, &ol, &status, err,
                               sizeof err) != 0) {
    /* The plain shape, without details. */
    set_head(wc, status, "application/json");
    mw_buf_printf(&wc->pend, "{\"code\":%d,\"message\":", code);
    mw_buf_json(&wc->pend, text, strlen(text));
    mw_buf_puts(&wc->pend, ",\"details\":[]}");
    return;
  }
  set_head(wc, status, "application/json");
  if (wc->lb) {
    add_md_headers(wc, 0, "grpc-metadata-");
    add_md_headers(wc, 1, "grpc-metadata-");
  }
  if (code == MW_STATUS_UNAUTHENTICATED) add_header(wc->req, "www-authenticate", 16, text,
                                                    strlen(text));
  mw_buf_put(&wc->pend, out, ol);
}

/* A request on a REST route: matched, its request made from the path, the
 * query and the body, and called. Returns 1 when answered (or started),
 * 0 when no route matched and the request is for the other protocols. */
/* An event stream's lastEventId query parameter is not a field of the
 * request: it is taken out of the query (a copy in the request's pool) and
 * kept, percent-decoded, in *id. */
static void take_last_event_id(h2o_req_t *req, const char **query, size_t *qlen,
                               h2o_iovec_t *id) {
  h2o_iovec_t q = h2o_iovec_init(*query, *qlen);
  h2o_iovec_t v = query_param(q, "lastEventId");
  if (!v.base) return;
  char *dec = h2o_mem_alloc_pool(&req->pool, v.len + 1);
  long dl = pct_decode(v.base, v.len, dec);
  /* a metadata value is printable ASCII: anything else is no id at all */
  for (long i = 0; i < dl; i++)
    if (dec[i] < 0x20 || dec[i] > 0x7e) dl = -1;
  if (dl > 0) *id = h2o_iovec_init(dec, (size_t)dl);
  /* the parameter spans from its name to its '&' (or the end) */
  const char *start = v.base - strlen("lastEventId=");
  if (start > q.base && start[-1] != '&') return; /* a value of another parameter: left */
  const char *end = v.base + v.len;
  char *nq = h2o_mem_alloc_pool(&req->pool, q.len + 1);
  size_t nl = (size_t)(start - q.base);
  memcpy(nq, q.base, nl);
  if (end < q.base + q.len) {
    end++; /* its '&' */
    memcpy(nq + nl, end, (size_t)(q.base + q.len - end));
    nl += (size_t)(q.base + q.len - end);
  } else if (nl > 0) {
    nl--; /* the '&' before it */
  }
  *query = nl ? nq : NULL;
  *qlen = nl;
}

static int rest_req(mw_web *w, h2o_req_t *req, mw_router *r, const mw_transcode *rest,
                    int cors, int others_may) {
  char method[16];
  snprintf(method, sizeof method, "%.*s", (int)(req->method.len < 15 ? req->method.len : 15),
           req->method.base);
  size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
  const char *query = req->query_at != SIZE_MAX ? req->path.base + req->query_at + 1 : NULL;
  size_t qlen = query ? req->path.len - req->query_at - 1 : 0;
  h2o_iovec_t acc = find_header(req, H2O_TOKEN_ACCEPT);
  int sse = acc.base && h2o_strstr(acc.base, acc.len, H2O_STRLIT("text/event-stream")) != SIZE_MAX;
  h2o_iovec_t last_id = h2o_iovec_init(NULL, 0);
  if (sse && query) take_last_event_id(req, &query, &qlen, &last_id);
  h2o_iovec_t ct = find_header(req, H2O_TOKEN_CONTENT_TYPE);
  char ctype[128];
  snprintf(ctype, sizeof ctype, "%.*s", (int)(ct.len < 127 ? ct.len : 127), ct.base ? ct.base : "");
  upb_Arena *arena = upb_Arena_New();
  if (!arena) {
    plain(req, cors, 503, NULL, "out of memory\n");
    return 1;
  }
  mw_json_limits lim = {w->max_body, w->max_body, 0};
  mw_transcode_call call;
  mw_transcode_error terr;
  int rc = mw_transcode_match(rest, method, req->path.base, plen, query, qlen,
                              req->entity.base ? req->entity.base : "",
                              req->entity.base ? req->entity.len : 0, ct.base ? ctype : NULL, 0,
                              &lim, arena, &call, &terr);
  if (rc != 0 && terr.http_status == 404 && others_may) {
    upb_Arena_Free(arena);
    return 0;
  }
  wcall *wc = calloc(1, sizeof *wc);
  if (!wc) {
    upb_Arena_Free(arena);
    plain(req, cors, 503, NULL, "out of memory\n");
    return 1;
  }
  wcall **anchor = h2o_mem_alloc_shared(&req->pool, sizeof *anchor, on_dispose);
  *anchor = wc;
  wc->w = w;
  wc->req = req;
  wc->kind = MW_WEB_REST;
  wc->cors = cors;
  wc->arena = arena;
  wc->router = r;
  mw_router_ref(r);
  wc->rest = rest;
  if (rc != 0) {
    if (terr.http_status == 405 && terr.allow[0]) add_header_s(req, "allow", terr.allow);
    rest_error(wc, terr.code, terr.message, strlen(terr.message), NULL, 0);
    /* the table's own status (415, 413...) where code.proto's differs */
    req->res.status = terr.http_status;
    req->res.reason = reason_of(terr.http_status);
    flush(wc, 1);
    return 1;
  }
  wc->route = call;
  const mw_method *m = mw_methods_find(mw_router_methods(r), call.grpc_path, strlen(call.grpc_path));
  if (!m || (m->kind != MW_KIND_UNARY && m->kind != MW_KIND_SERVER_STREAMING)) {
    wc->unary = 1;
    local_error(wc, MW_STATUS_UNIMPLEMENTED,
                m ? "REST routes serve unary and server-streaming methods; client and bidi "
                    "streams take Connect or gRPC-Web"
                  : "the route's method is not served");
    return 1;
  }
  if (m->kind == MW_KIND_SERVER_STREAMING) {
    /* Messages as they come: server-sent events when the client asks for
     * them (EventSource does), else one JSON object per line. */
    wc->sse = sse;
    wc->last_event_id = last_id;
    wc->json = 1;
    wc->m = m;
  }
  parsed pp = {0}, *p = &pp;
  p->frames = p->inline_frames;
  p->owned = p->inline_owned;
  p->m = m;
  p->frames[0] = (mw_web_frame){0, call.request, call.request_len};
  p->n_frames = 1;
  h2o_iovec_t tv = find_header_str(req, "grpc-timeout");
  if (tv.base) {
    p->timeout = mw_web_grpc_timeout(tv.base, tv.len);
    if (p->timeout < 0) {
      local_error(wc, MW_STATUS_INVALID_ARGUMENT, "the grpc-timeout header is not valid");
      return 1;
    }
    if (p->timeout == 0) p->timeout = 1e-9;
  }
  wc->unary = m->kind == MW_KIND_UNARY;
  start_call(w, wc, p);
  parsed_free(p);
  return 1;
}

static int on_req(void *ud, h2o_req_t *req) {
  mw_web *w = ud;
  if (w->console && mw_console_serve(req, w->server, "") == 0) return 0;
  int cors = origin_allowed(w, find_header_str(req, "origin"));
  /* An answer without CORS headers depends on Origin as much as one with
   * them (add_cors says so there): a cache must not give it to a page of
   * an allowed origin. */
  if (!cors && w->n_origins) add_header_s(req, "vary", "Origin");
  if (mw_ws_wanted(req))
    return mw_ws_serve(w->ws, req, cors || !find_header_str(req, "origin").base);
  if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS")))
    return preflight(w, req, cors);
  int get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
  int post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
  /* REST first, unless the request is plainly gRPC-Web's or Connect's: a
   * POST with their content types, or a Connect GET, to a method's path. */
  if (w->rest) {
    mw_router *rr = mw_server_router_acquire(w->server);
    const mw_transcode *rest = w->rest(rr);
    int answered = 0;
    if (rest && mw_transcode_route_count(rest) > 0) {
      /* looks: their content type (POST) or Connect's GET query; such a
       * request to no method's path still gets their protocol's error. */
      int looks = 0, classic = 0;
      if (get || post) {
        h2o_iovec_t cq = req->query_at != SIZE_MAX
                             ? h2o_iovec_init(req->path.base + req->query_at + 1,
                                              req->path.len - req->query_at - 1)
                             : h2o_iovec_init(NULL, 0);
        h2o_iovec_t cct = find_header(req, H2O_TOKEN_CONTENT_TYPE);
        int cj;
        looks = post ? mw_web_classify(cct.base, cct.len, &cj) != MW_WEB_NONE
                     : query_param(cq, "encoding").base != NULL;
        classic = looks && mw_methods_find(mw_router_methods(rr), req->path_normalized.base,
                                           req->path_normalized.len);
      }
      if (!classic) answered = rest_req(w, req, rr, rest, cors, looks);
    }
    mw_router_unref(rr);
    if (answered) return 0;
  }
  if (!get && !post)
    return plain(req, cors, 405, "GET, POST", "only GET (Connect) and POST are served\n");

  /* What it speaks: the content type, or for a GET the query. */
  h2o_iovec_t query = h2o_iovec_init(NULL, 0);
  if (req->query_at != SIZE_MAX)
    query = h2o_iovec_init(req->path.base + req->query_at + 1,
                           req->path.len - req->query_at - 1);
  mw_web_kind kind;
  int json = 0;
  h2o_iovec_t ct = find_header(req, H2O_TOKEN_CONTENT_TYPE);
  if (get) {
    h2o_iovec_t enc = query_param(query, "encoding");
    if (!enc.base)
      return plain(req, cors, 415, NULL,
                   "a Connect GET needs ?encoding=proto&message=...; gRPC-Web and Connect "
                   "take POST\n");
    kind = MW_WEB_CONNECT_UNARY;
    json = iov_is(enc, "json");
    if (!json && !iov_is(enc, "proto"))
      return plain(req, cors, 415, NULL, "encoding must be proto or json\n");
  } else {
    kind = mw_web_classify(ct.base, ct.len, &json);
    if (kind == MW_WEB_NONE)
      return plain(req, cors, 415, NULL,
                   "content-type must be application/grpc-web[+proto|+json], "
                   "application/grpc-web-text[+proto], application/proto, "
                   "application/json or application/connect+proto|+json\n");
  }

  wcall *wc = calloc(1, sizeof *wc);
  if (!wc) return plain(req, cors, 503, NULL, "out of memory\n");
  wcall **anchor = h2o_mem_alloc_shared(&req->pool, sizeof *anchor, on_dispose);
  *anchor = wc;
  wc->w = w;
  wc->req = req;
  wc->kind = kind;
  wc->cors = cors;
  if (kind == MW_WEB_GRPC_WEB_TEXT) {
    /* Answer in text only when asked to (Envoy's rule): browsers' text
     * clients send Accept: application/grpc-web-text. */
    h2o_iovec_t acc = find_header(req, H2O_TOKEN_ACCEPT);
    wc->text = acc.base && acc.len >= 25 &&
               h2o_strstr(acc.base, acc.len, H2O_STRLIT("application/grpc-web-text")) !=
                   SIZE_MAX;
  }

  if (kind == MW_WEB_CONNECT_UNARY)
    wc->coding = mw_web_accepted_coding(find_header(req, H2O_TOKEN_ACCEPT_ENCODING).base,
                                        find_header(req, H2O_TOKEN_ACCEPT_ENCODING).len);
  else if (kind == MW_WEB_CONNECT_STREAM)
    wc->coding = mw_web_accepted_coding(find_header_str(req, "connect-accept-encoding").base,
                                        find_header_str(req, "connect-accept-encoding").len);
  parsed pp = {0}, *p = &pp;
  p->frames = p->inline_frames;
  p->owned = p->inline_owned;
  /* The method, in the current generation (held only while we look). */
  mw_router *r = mw_server_router_acquire(w->server);
  const mw_method *m = mw_methods_find(mw_router_methods(r), req->path_normalized.base,
                                       req->path_normalized.len);
  char msg[256];
  unsigned char *decoded = NULL;
  if (!m) {
    snprintf(msg, sizeof msg, "unknown method %.*s",
             (int)(req->path_normalized.len > 200 ? 200 : req->path_normalized.len),
             req->path_normalized.base);
    if (kind == MW_WEB_CONNECT_UNARY) {
      /* Connect: 404 with the unimplemented code. */
      req->res.status = 404;
      req->res.reason = "Not Found";
      add_header_s(req, "content-type", "application/json");
      if (cors) add_cors(req);
      mw_web_error_json(&wc->pend, MW_STATUS_UNIMPLEMENTED, msg, strlen(msg), NULL, 0);
      flush(wc, 1);
    } else {
      local_error(wc, MW_STATUS_UNIMPLEMENTED, msg);
    }
    goto done;
  }
  p->m = m;
  if (json) {
    wc->json = 1;
    wc->m = m;
    wc->router = r;
    mw_router_ref(r);
  }
  const char *body = req->entity.base ? req->entity.base : "";
  size_t blen = req->entity.base ? req->entity.len : 0;

  /* The deadline. */
  h2o_iovec_t tv = kind == MW_WEB_GRPC_WEB || kind == MW_WEB_GRPC_WEB_TEXT
                       ? find_header_str(req, "grpc-timeout")
                       : find_header_str(req, "connect-timeout-ms");
  if (tv.base) {
    p->timeout = kind == MW_WEB_GRPC_WEB || kind == MW_WEB_GRPC_WEB_TEXT
                     ? mw_web_grpc_timeout(tv.base, tv.len)
                     : mw_web_connect_timeout(tv.base, tv.len);
    if (p->timeout < 0) {
      local_error(wc, MW_STATUS_INVALID_ARGUMENT, "the timeout header is not valid");
      goto done;
    }
    if (p->timeout == 0) p->timeout = 1e-9; /* a zero budget is already over */
  }

  switch (kind) {
  case MW_WEB_GRPC_WEB_TEXT: {
    decoded = malloc(blen * 3 / 4 + 4);
    long dl = decoded ? mw_web_b64_decode_chunks(body, blen, decoded) : -1;
    if (dl < 0) {
      /* Not a gRPC answer at all: the body could not be read. */
      plain(req, cors, 400, NULL, "invalid base64 in the grpc-web-text body\n");
      wc->finished = 1;
      goto done;
    }
    body = (const char *)decoded;
    blen = (size_t)dl;
  }
    /* fall through */
  case MW_WEB_GRPC_WEB:
    if (read_frames(w, wc, p, body, blen, find_header_str(req, "grpc-encoding")) != 0)
      goto done;
    wc->unary = m->kind == MW_KIND_UNARY;
    grpc_web_coding(w, wc, m, find_header_str(req, "grpc-accept-encoding"));
    break;
  case MW_WEB_CONNECT_STREAM:
    if (m->kind == MW_KIND_UNARY) {
      plain(req, cors, 415, NULL,
            "a unary method takes application/proto or application/json (Connect "
            "unary), not application/connect+*\n");
      wc->finished = 1;
      goto done;
    }
    if (read_frames(w, wc, p, body, blen, find_header_str(req, "connect-content-encoding")) !=
        0)
      goto done;
    break;
  default: { /* Connect unary, POST or GET */
    if (m->kind != MW_KIND_UNARY) {
      plain(req, cors, 415, NULL,
            "a streaming method takes application/connect+proto|+json, not the "
            "unary content types\n");
      wc->finished = 1;
      goto done;
    }
    h2o_iovec_t ver = get ? query_param(query, "connect")
                          : find_header_str(req, "connect-protocol-version");
    if (ver.base && !iov_is(ver, get ? "v1" : "1")) {
      local_error(wc, MW_STATUS_INVALID_ARGUMENT, "unsupported connect protocol version");
      goto done;
    }
    h2o_iovec_t enc = get ? query_param(query, "compression")
                          : find_header(req, H2O_TOKEN_CONTENT_ENCODING);
    if (get) {
      if (!method_no_side_effects(m)) {
        plain(req, cors, 405, "POST",
              "GET is only for methods with idempotency_level = NO_SIDE_EFFECTS\n");
        wc->finished = 1;
        goto done;
      }
      h2o_iovec_t mv = query_param(query, "message");
      decoded = malloc(mv.len + 4);
      long dl = decoded ? pct_decode(mv.base ? mv.base : "", mv.len, (char *)decoded) : -1;
      if (dl >= 0 && iov_is(query_param(query, "base64"), "1")) {
        /* base64url, padded or not, into the same buffer */
        for (long i = 0; i < dl; i++) {
          if (decoded[i] == '-') decoded[i] = '+';
          else if (decoded[i] == '_') decoded[i] = '/';
        }
        unsigned char *raw = malloc((size_t)dl + 4);
        long rl = raw ? mw_web_b64_decode((const char *)decoded, (size_t)dl, raw, 1) : -1;
        free(decoded);
        decoded = raw;
        dl = rl;
      }
      if (dl < 0) {
        local_error(wc, MW_STATUS_INVALID_ARGUMENT, "the message query parameter is not valid");
        goto done;
      }
      body = (const char *)decoded;
      blen = (size_t)dl;
    }
    int coding = coding_of(enc);
    if (coding < 0) {
      local_error(wc, MW_STATUS_UNIMPLEMENTED,
                  "content encoding not supported (supported: identity, gzip, deflate)");
      goto done;
    }
    p->frames[0] = (mw_web_frame){0, body, blen};
    p->n_frames = 1;
    /* Never inflate an empty body (the protocol's rule). */
    if (coding && blen && inflate_frame(w, p, 0, coding, msg, sizeof msg) != 0) {
      local_error(wc, MW_STATUS_INVALID_ARGUMENT, msg);
      goto done;
    }
    if (json_requests(w, wc, p) != 0) goto done;
    wc->unary = 1;
    break;
  }
  }
  start_call(w, wc, p);
done:
  mw_router_unref(r);
  parsed_free(p);
  free(decoded);
  return 0;
}

/* --- the listener ------------------------------------------------------------------- */

static void on_lb_ready(h2o_socket_t *sock, const char *err) {
  mw_web *w = sock->data;
  if (err) return;
  h2o_buffer_consume(&sock->input, sock->input->size);
  mw_loopback_run(w->lb);
}

static void on_loop(void *ud, h2o_evloop_t *loop) {
  mw_web *w = ud;
  w->loop = loop;
  h2o_timeout_init(loop, &w->watch_timeout, 100);
  w->watch_ready = 1;
  if (w->keepalive_ms) {
    h2o_timeout_init(loop, &w->keepalive_timeout, w->keepalive_ms);
    w->keepalive_ready = 1;
  }
  int fd = dup(mw_loopback_fd(w->lb));
  if (fd < 0) return;
  w->lb_sock = h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ);
  w->lb_sock->data = w;
  h2o_socket_read_start(w->lb_sock, on_lb_ready);
}

static void on_stop(void *ud, size_t leftover) {
  mw_web *w = ud;
  w->leftover = leftover;
  mw_ws_free(w->ws); /* its sockets are on this loop */
  w->ws = NULL;
  if (w->watch_ready && !leftover) {
    h2o_timeout_dispose(w->loop, &w->watch_timeout);
    w->watch_ready = 0;
    if (w->keepalive_ready) h2o_timeout_dispose(w->loop, &w->keepalive_timeout);
    w->keepalive_ready = 0;
  }
  if (w->lb_sock) {
    h2o_socket_read_stop(w->lb_sock);
    h2o_socket_close(w->lb_sock);
    w->lb_sock = NULL;
  }
}

static void web_free(mw_web *w) {
  for (size_t i = 0; i < w->n_origins; i++) free(w->origins[i]);
  free(w->origins);
  free(w->allow_headers);
  free(w->expose_headers);
  mw_compress_policy_free(&w->compress);
  free(w);
}

mw_web *mw_web_new(const mw_config *cfg, mw_server *server, mw_web_rest_fn rest,
                   mw_diag *diag) {
  mw_web *w = calloc(1, sizeof *w);
  if (!w) {
    mw_diag_add(diag, "http: out of memory");
    return NULL;
  }
  w->server = server;
  w->rest = rest;
  w->max_body = (size_t)cfg->limits.max_receive_bytes;
  w->keepalive_ms = cfg->http.sse_keepalive_ms > 0 ? (uint64_t)cfg->http.sse_keepalive_ms : 0;
  w->retry_ms = cfg->http.sse_retry_ms > 0 ? (uint64_t)cfg->http.sse_retry_ms : 0;
  w->compress_min = cfg->compression.min_bytes > 0 ? (size_t)cfg->compression.min_bytes : 0;
  const mw_strvec *o = &cfg->http.cors_origins;
  w->origins = calloc(o->n ? o->n : 1, sizeof *w->origins);
  mw_buf ah = {0};
  mw_buf_puts(&ah, ALLOW_HEADERS);
  for (size_t i = 0; i < cfg->http.cors_headers.n; i++) {
    mw_buf_puts(&ah, ", ");
    mw_buf_puts(&ah, cfg->http.cors_headers.v[i]);
  }
  w->allow_headers = mw_buf_take(&ah, NULL);
  mw_buf eh = {0};
  mw_buf_puts(&eh, EXPOSE_HEADERS);
  for (size_t i = 0; i < cfg->http.cors_expose.n; i++)
    mw_buf_printf(&eh, ", %s, Trailer-%s", cfg->http.cors_expose.v[i],
                  cfg->http.cors_expose.v[i]);
  w->expose_headers = mw_buf_take(&eh, NULL);
  if (!w->origins || !w->allow_headers || !w->expose_headers ||
      mw_compress_policy_init(&w->compress, cfg) != 0) {
    mw_diag_add(diag, "http: out of memory");
    web_free(w);
    return NULL;
  }
  for (size_t i = 0; i < o->n; i++) {
    if (strcmp(o->v[i], "*") == 0) w->any_origin = 1;
    w->origins[w->n_origins] = strdup(o->v[i]);
    if (w->origins[w->n_origins]) w->n_origins++;
  }
  const char *target = mw_server_internal_target(server);
  char err[256];
  w->lb = target ? mw_loopback_open(target, err, sizeof err) : NULL;
  if (!w->lb) {
    mw_diag_add(diag, "http: %s", target ? err : "the server has no internal listener");
    web_free(w);
    return NULL;
  }
  w->ws = mw_ws_new(w->lb, server, w->max_body, (size_t)cfg->http.max_connections,
                    (long)cfg->http.timeout_ms);
  if (!w->ws) {
    mw_diag_add(diag, "http: out of memory");
    mw_loopback_close(w->lb, 0);
    web_free(w);
    return NULL;
  }
  return w;
}

mw_web *mw_web_start(const mw_config *cfg, mw_server *server, mw_web_rest_fn rest,
                     mw_diag *diag) {
  mw_web *w = mw_web_new(cfg, server, rest, diag);
  if (!w) return NULL;
  w->console = cfg->console;
  /* A body holds one message (or a few) plus envelopes; text mode a third
   * more for base64. */
  size_t max_body = w->max_body + w->max_body / 3 + 64;
  mw_http_opts opts = {.max_connections = (long)cfg->http.max_connections,
                       .timeout_ms = (long)cfg->http.timeout_ms,
                       .name = "http",
                       .max_body = max_body,
                       .tls_cert = cfg->http.tls_cert,
                       .tls_key = cfg->http.tls_key,
                       .tls_client_ca = cfg->http.tls_client_ca,
                       .tls_require_client_cert = cfg->http.tls_require_client_cert,
                       .raw = on_req,
                       .on_loop = on_loop,
                       .on_stop = on_stop};
  w->http = mw_http_start(cfg->http.listen, &opts, NULL, w, diag);
  if (!w->http) {
    mw_ws_free(w->ws);
    mw_loopback_close(w->lb, 0);
    web_free(w);
    return NULL;
  }
  return w;
}

const char *mw_web_address(const mw_web *w) { return mw_http_address(w->http); }

int mw_web_handle(mw_web *w, struct st_h2o_req_t *req) { return on_req(w, req); }

void mw_web_on_loop(mw_web *w, struct st_h2o_evloop_t *loop) { on_loop(w, loop); }

void mw_web_on_stop(mw_web *w, size_t leftover) { on_stop(w, leftover); }

void mw_web_free(mw_web *w) {
  if (!w) return;
  /* Every request is gone, so every loopback call is released: their last
   * completions are run here. With connections left open, their calls are
   * left too (the process exits). */
  if (w->leftover == 0) mw_loopback_close(w->lb, 2000);
  web_free(w);
}

void mw_web_stop(mw_web *w) {
  if (!w) return;
  mw_http_stop(w->http);
  mw_web_free(w);
}
