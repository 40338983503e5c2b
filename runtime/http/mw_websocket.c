/* WebSocket calls on the HTTP listener (http/mw_websocket.h). */
#define _GNU_SOURCE /* POLLRDHUP */
#include "http/mw_websocket.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <h2o.h>
#include <h2o/http1.h>

#include "base/mw_buf.h"
#include "base/mw_status.h"
#include "base/mw_timer.h"
#include "codec/mw_json.h"
#include "core/mw_router.h"
#include "http/mw_web.h"
#include "http/mw_webwire.h"
#include "http/mw_wsframe.h"
#include "upb/def.h"

#define SUBPROTO_JSON "moonwire.json"
#define SUBPROTO_PROTO "moonwire.proto"
#define CLOSE_WAIT_MS 1000 /* for the peer's part of the close handshake */
#define WATCH_MS 100       /* hang-up checks while the socket is not read */
#define MAX_MD 64          /* metadata entries from one upgrade request */

typedef struct wsconn wsconn;

struct mw_ws {
  mw_loopback *lb;
  mw_server *server;
  size_t max_message;
  size_t max_conns;
  long linger_ms; /* http.timeout: for the last frames to be written */
  h2o_evloop_t *loop; /* the HTTP thread's, from the first request */
  h2o_timeout_t close_timeout, watch_timeout, linger_timeout;
  wsconn *conns; /* every socket, upgrading or open */
  size_t n;
};

/* One WebSocket and its call. Owned by ws's list from the upgrade on;
 * freed by finish() once the socket is closed and the call released. */
struct wsconn {
  mw_ws *ws;
  wsconn *prev, *next;
  h2o_socket_t *sock; /* NULL until the 101 was written, and after the close */
  int upgrading;      /* h2o still writes the 101: the connection is h2o's */
  mw_lb_call *lb;     /* NULL once the call is over or cancelled */
  mw_router *router;  /* holds m's schema (JSON conversions) */
  const mw_method *m;
  int json;        /* responses in text frames as JSON, else binary frames */
  int one_request; /* unary and server streaming: the first message is all */
  int early_code;  /* a status known before the call (unknown method...), or 0 */
  char early_msg[200];
  int reading;      /* h2o reads the socket for us */
  int sending;      /* a request is with the call, until on_sent */
  int client_done;  /* the requests are closed (the end frame, or implied) */
  int ended;        /* the responses ended */
  int final_queued; /* the status and close frames are in pend */
  int draining;     /* our close is out: input is discarded until EOF */
  int closing;      /* close the socket when the entry point returns */
  int busy;
  int msg_op;           /* the opcode of a fragmented message under way, or 0 */
  mw_buf msg;           /* its payload so far */
  mw_buf out;           /* the bytes h2o writes (valid until on_written) */
  mw_buf pend;          /* the bytes after them */
  int writing;
  int pong_queued; /* a pong waits in pend: pings until it goes are not answered again */
  h2o_timeout_entry_t close_wait, watch;
};

static void process_input(wsconn *c);
static void flush_out(wsconn *c);

/* --- lifetime ------------------------------------------------------------- */

static void conn_free(wsconn *c) {
  mw_ws *ws = c->ws;
  if (c->prev) c->prev->next = c->next;
  else ws->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  ws->n--;
  if (h2o_timeout_is_linked(&c->close_wait)) h2o_timeout_unlink(&c->close_wait);
  if (h2o_timeout_is_linked(&c->watch)) h2o_timeout_unlink(&c->watch);
  mw_lb_call_release(c->lb);
  mw_router_unref(c->router);
  mw_buf_free(&c->msg);
  mw_buf_free(&c->out);
  mw_buf_free(&c->pend);
  free(c);
}

/* The end of every entry point: a socket marked for closing is closed here,
 * not inside the frame loop (h2o frees its input buffer at once). */
static void finish(wsconn *c) {
  if (c->busy > 0 || !c->closing) return;
  if (c->sock) {
    h2o_socket_close(c->sock);
    c->sock = NULL;
  }
  conn_free(c);
}

#define ENTER(c) ((c)->busy++)
#define LEAVE(c)     \
  do {               \
    (c)->busy--;     \
    finish(c);       \
  } while (0)

/* The call is over for this side: cancelled if it still runs. */
static void drop_call(wsconn *c) {
  mw_lb_call_release(c->lb);
  c->lb = NULL;
}

/* The peer is gone (hang-up, error): nothing more can be said. */
static void peer_gone(wsconn *c) {
  drop_call(c);
  c->closing = 1;
}

/* --- writing ------------------------------------------------------------------- */

static void queue_frame(wsconn *c, int opcode, const char *data, size_t len) {
  unsigned char head[10];
  size_t hl = mw_ws_put_head(head, opcode, len);
  mw_buf_put(&c->pend, (const char *)head, hl);
  mw_buf_put(&c->pend, data, len);
}

static void on_close_wait(h2o_timeout_entry_t *e) {
  wsconn *c = (wsconn *)((char *)e - offsetof(wsconn, close_wait));
  ENTER(c);
  c->closing = 1; /* the peer did not finish the close handshake in time */
  LEAVE(c);
}

/* Our close frame is on the wire: the TCP side closes for writing (so the
 * peer reads everything before its EOF, instead of a reset that could
 * lose the status), and what the peer still sends is read and dropped
 * until its EOF or CLOSE_WAIT_MS. Over TLS the socket is just closed
 * (h2o sends close_notify). */
static void begin_drain(wsconn *c) {
  c->draining = 1;
  drop_call(c);
  if (c->sock->ssl) {
    c->closing = 1;
    return;
  }
  shutdown(h2o_socket_get_fd(c->sock), SHUT_WR);
  if (h2o_timeout_is_linked(&c->close_wait)) h2o_timeout_unlink(&c->close_wait);
  c->close_wait.cb = on_close_wait;
  h2o_timeout_link(c->ws->loop, &c->ws->close_timeout, &c->close_wait);
  process_input(c);
}

/* The last frames are queued: a client that does not read them is
 * dropped after http.timeout, whatever the handler does. */
static void linger(wsconn *c) {
  if (h2o_timeout_is_linked(&c->close_wait) || !c->ws->loop) return;
  c->close_wait.cb = on_close_wait;
  h2o_timeout_link(c->ws->loop, &c->ws->linger_timeout, &c->close_wait);
}

static void on_written(h2o_socket_t *sock, const char *err) {
  wsconn *c = sock->data;
  c->writing = 0;
  ENTER(c);
  if (err) {
    peer_gone(c);
  } else if (c->pend.len) {
    flush_out(c);
  } else if (c->final_queued) {
    if (!c->draining) begin_drain(c);
  } else if (c->lb && !c->ended) {
    mw_lb_call_recv(c->lb); /* -1 while one is asked already: fine */
  }
  LEAVE(c);
}

static void flush_out(wsconn *c) {
  if (c->writing || !c->sock || c->pend.len == 0 || c->closing) return;
  mw_buf_free(&c->out);
  c->out = c->pend;
  c->pend = (mw_buf){0};
  c->pong_queued = 0;
  if (c->out.oom) {
    peer_gone(c);
    return;
  }
  h2o_iovec_t b = h2o_iovec_init(c->out.p, c->out.len);
  c->writing = 1;
  h2o_socket_write(c->sock, &b, 1, on_written);
}

/* The metadata of one side as a JSON object's members ("k":["v"]), -bin
 * values in base64; grpc-* keys are the protocol's own. */
static int put_md(mw_buf *j, const mw_lb_call *lb, int trailers, int any) {
  size_t n = lb ? mw_lb_call_md_count(lb, trailers) : 0;
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_lb_call_md_at(lb, trailers, i, &k, &kl, &v, &vl);
    if (kl >= 5 && memcmp(k, "grpc-", 5) == 0) continue;
    mw_buf_puts(j, any ? "," : "");
    mw_buf_json(j, k, kl);
    mw_buf_puts(j, ":[");
    if (kl > 4 && memcmp(k + kl - 4, "-bin", 4) == 0) {
      mw_buf val = {0};
      mw_web_b64_encode(&val, (const unsigned char *)v, vl, 0);
      mw_buf_json(j, val.p ? val.p : "", val.len);
      mw_buf_free(&val);
    } else {
      mw_buf_json(j, v, vl);
    }
    mw_buf_puts(j, "]");
    any = 1;
  }
  return any;
}

/* The grpc-status-details-bin trailer, or NULL. */
static const char *details_of(const mw_lb_call *lb, size_t *len) {
  size_t n = lb ? mw_lb_call_md_count(lb, 1) : 0;
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

/* The end of the call: the status frame, Connect's end-of-stream JSON
 * ({} or {"error":{code,message,details}}, with "metadata": the response
 * headers and trailers), in a frame of the other type than the messages',
 * then the close: 1000 for OK, 4000 + the code otherwise (close_code > 0:
 * that code instead, for a broken protocol), the message as its reason. */
static void queue_final(wsconn *c, int code, const char *msg, size_t ml, int close_code) {
  if (c->final_queued || c->draining) return;
  mw_buf j = {0};
  mw_buf_puts(&j, "{");
  if (code != MW_STATUS_OK) {
    size_t dl = 0;
    const char *d = details_of(c->lb, &dl);
    mw_buf_puts(&j, "\"error\":");
    mw_web_error_json(&j, code, msg, ml, d, dl);
  }
  mw_buf md = {0};
  int any = put_md(&md, c->lb, 0, 0);
  any = put_md(&md, c->lb, 1, any);
  if (any) {
    mw_buf_puts(&j, code != MW_STATUS_OK ? ",\"metadata\":{" : "\"metadata\":{");
    mw_buf_put(&j, md.p, md.len);
    mw_buf_puts(&j, "}");
  }
  mw_buf_free(&md);
  mw_buf_puts(&j, "}");
  if (!j.oom) {
    /* A text frame must be UTF-8, whatever bytes a handler put in its
     * message or metadata. */
    mw_ws_utf8_fix(j.p, j.len);
    queue_frame(c, c->json ? MW_WS_BINARY : MW_WS_TEXT, j.p, j.len);
  }
  mw_buf_free(&j);
  unsigned char cp[125];
  int cc = close_code > 0 ? close_code
           : code == MW_STATUS_OK ? MW_WS_CLOSE_NORMAL
                                  : MW_WS_CLOSE_STATUS_BASE + code;
  size_t cl = mw_ws_put_close(cp, cc, msg, ml);
  mw_ws_utf8_fix((char *)cp + 2, cl - 2);
  queue_frame(c, MW_WS_CLOSE, (const char *)cp, cl);
  c->final_queued = 1;
  drop_call(c);
  linger(c);
  flush_out(c);
}

/* A broken rule of the client's: the status says what, the close code
 * which rule; the call is cancelled. */
static void fail(wsconn *c, int code, int close_code, const char *why) {
  /* The trailers are the call's; a failure here has none. */
  drop_call(c);
  queue_final(c, code, why, strlen(why), close_code);
}

/* --- the call's events ------------------------------------------------------------ */

static void on_lb_message(void *self, const char *data, size_t len, int has_msg) {
  wsconn *c = self;
  ENTER(c);
  if (!has_msg) {
    c->ended = 1; /* the status follows */
  } else if (c->json) {
    upb_Arena *a = upb_Arena_New();
    const char *out = NULL;
    size_t ol = 0;
    char err[200] = "out of memory";
    if (a && mw_json_from_binary(data, len, c->m->output,
                                 mw_schema_pool(mw_methods_schema(mw_router_methods(c->router))),
                                 0, NULL, a, &out, &ol, err, sizeof err) == MW_JSON_OK) {
      queue_frame(c, MW_WS_TEXT, out, ol);
      flush_out(c);
    } else {
      fail(c, MW_STATUS_INTERNAL, MW_WS_CLOSE_INTERNAL, err);
    }
    if (a) upb_Arena_Free(a);
  } else {
    queue_frame(c, MW_WS_BINARY, data, len);
    flush_out(c);
  }
  LEAVE(c);
}

static void on_lb_status(void *self) {
  wsconn *c = self;
  ENTER(c);
  int code = mw_lb_call_code(c->lb);
  size_t ml;
  const char *msg = mw_lb_call_message(c->lb, &ml);
  if (code == MW_STATUS_UNAVAILABLE && ml >= 17 && memcmp(msg, "failed to connect", 17) == 0) {
    msg = "the server is shutting down"; /* not the internal socket's name */
    ml = strlen(msg);
  }
  /* msg lives in the call, which queue_final releases after copying. */
  queue_final(c, code, msg, ml, 0);
  LEAVE(c);
}

static void on_lb_sent(void *self, int ok) {
  wsconn *c = self;
  ENTER(c);
  c->sending = 0;
  (void)ok; /* not taken: the call ended, and its status says why */
  process_input(c);
  LEAVE(c);
}

static const mw_lb_ops lb_ops = {on_lb_message, on_lb_status, on_lb_sent};

/* --- reading -------------------------------------------------------------------------- */

/* One whole request message from the client. */
static void deliver(wsconn *c, int opcode, const char *data, size_t len) {
  if (!c->lb || c->final_queued) return; /* the call is over: its status is on the way */
  if (opcode == MW_WS_TEXT && len == 0) {
    /* The agreed end of the client's stream (an empty text frame is no
     * JSON message, and a binary message is never a text frame). */
    if (c->client_done && c->one_request) return; /* already implied */
    c->client_done = 1;
    mw_lb_call_close_send(c->lb);
    return;
  }
  if (c->client_done) {
    fail(c, MW_STATUS_INVALID_ARGUMENT, MW_WS_CLOSE_PROTOCOL,
         c->one_request ? "this method takes one request message"
                        : "a message after the end of the client's stream");
    return;
  }
  upb_Arena *a = NULL;
  if (opcode == MW_WS_TEXT) {
    if (!mw_ws_utf8_valid(data, len)) {
      fail(c, MW_STATUS_INVALID_ARGUMENT, MW_WS_CLOSE_BAD_DATA, "a text frame is not UTF-8");
      return;
    }
    a = upb_Arena_New();
    const char *out = NULL;
    size_t ol = 0;
    char err[200] = "out of memory", m[260];
    mw_json_limits lim = {0, c->ws->max_message, 0};
    mw_json_status st =
        a ? mw_json_to_binary(data, len, c->m->input,
                              mw_schema_pool(mw_methods_schema(mw_router_methods(c->router))),
                              MW_JSON_IGNORE_UNKNOWN, &lim, a, &out, &ol, err, sizeof err)
          : MW_JSON_INVALID;
    if (st != MW_JSON_OK) {
      snprintf(m, sizeof m, "request message: %s", err);
      fail(c, st == MW_JSON_INVALID ? MW_STATUS_INVALID_ARGUMENT : MW_STATUS_RESOURCE_EXHAUSTED,
           st == MW_JSON_INVALID ? MW_WS_CLOSE_BAD_DATA : MW_WS_CLOSE_TOO_BIG, m);
      if (a) upb_Arena_Free(a);
      return;
    }
    data = out;
    len = ol;
  }
  if (mw_lb_call_send(c->lb, data, len) == 0) c->sending = 1;
  if (a) upb_Arena_Free(a);
  if (c->one_request) {
    c->client_done = 1;
    mw_lb_call_close_send(c->lb);
  }
}

/* One frame, its payload unmasked. */
static void on_frame(wsconn *c, const mw_ws_head *h, const char *p, size_t len) {
  switch (h->opcode) {
  case MW_WS_PING:
    if (!c->pong_queued && !c->final_queued) {
      queue_frame(c, MW_WS_PONG, p, len);
      c->pong_queued = 1;
      flush_out(c);
    }
    return;
  case MW_WS_PONG:
    return;
  case MW_WS_CLOSE: {
    int code;
    const char *reason;
    size_t rl;
    if (mw_ws_read_close((const unsigned char *)p, len, &code, &reason, &rl) != 0) {
      fail(c, MW_STATUS_INVALID_ARGUMENT, MW_WS_CLOSE_PROTOCOL, "a close frame is not valid");
      return;
    }
    /* The client leaves: a call still running is cancelled (a browser
     * drops what comes after its close()), and the close is echoed. */
    drop_call(c);
    if (!c->final_queued) {
      unsigned char cp[125];
      size_t cl = mw_ws_put_close(cp, code ? code : MW_WS_CLOSE_NORMAL, "", 0);
      queue_frame(c, MW_WS_CLOSE, (const char *)cp, cl);
      c->final_queued = 1;
      linger(c);
      flush_out(c);
    }
    return;
  }
  case MW_WS_CONT:
    if (!c->msg_op) {
      fail(c, MW_STATUS_INVALID_ARGUMENT, MW_WS_CLOSE_PROTOCOL,
           "a continuation frame with no message to continue");
      return;
    }
    mw_buf_put(&c->msg, p, len);
    if (c->msg.oom) {
      fail(c, MW_STATUS_RESOURCE_EXHAUSTED, MW_WS_CLOSE_INTERNAL, "out of memory");
      return;
    }
    if (h->fin) {
      int op = c->msg_op;
      c->msg_op = 0;
      deliver(c, op, c->msg.p ? c->msg.p : "", c->msg.len);
      mw_buf_free(&c->msg);
    }
    return;
  default: /* text, binary */
    if (c->msg_op) {
      fail(c, MW_STATUS_INVALID_ARGUMENT, MW_WS_CLOSE_PROTOCOL,
           "a new message began inside a fragmented one");
      return;
    }
    if (h->fin) {
      deliver(c, h->opcode, p, len);
      return;
    }
    c->msg_op = h->opcode;
    mw_buf_put(&c->msg, p, len);
    return;
  }
}

static void on_watch(h2o_timeout_entry_t *e);

/* Reads only while the call can take a message: the socket's buffer then
 * holds at most one frame more than the handler asked for. */
static void set_reading(wsconn *c, int on);

static void on_read(h2o_socket_t *sock, const char *err) {
  wsconn *c = sock->data;
  ENTER(c);
  if (err) peer_gone(c);
  else process_input(c);
  LEAVE(c);
}

static void set_reading(wsconn *c, int on) {
  if (!c->sock || c->closing || on == c->reading) return;
  c->reading = on;
  if (on) {
    if (h2o_timeout_is_linked(&c->watch)) h2o_timeout_unlink(&c->watch);
    h2o_socket_read_start(c->sock, on_read);
  } else {
    h2o_socket_read_stop(c->sock);
    c->watch.cb = on_watch;
    h2o_timeout_link(c->ws->loop, &c->ws->watch_timeout, &c->watch);
  }
}

/* While the socket is not read, a hang-up would go unseen until the
 * handler takes the message: the socket is looked at every WATCH_MS. */
static void on_watch(h2o_timeout_entry_t *e) {
  wsconn *c = (wsconn *)((char *)e - offsetof(wsconn, watch));
  if (!c->sock || c->reading) return;
  struct pollfd p = {h2o_socket_get_fd(c->sock), POLLRDHUP, 0};
  if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
    ENTER(c);
    peer_gone(c);
    LEAVE(c);
    return;
  }
  h2o_timeout_link(c->ws->loop, &c->ws->watch_timeout, &c->watch);
}

static void process_input(wsconn *c) {
  while (c->sock && !c->closing) {
    h2o_buffer_t *in = c->sock->input;
    if (c->draining) {
      h2o_buffer_consume(&c->sock->input, in->size);
      break;
    }
    if (c->sending || c->final_queued) break;
    mw_ws_head h;
    int code = 0;
    const char *why = NULL;
    int r = mw_ws_read_head((const unsigned char *)in->bytes, in->size, &h, &code, &why);
    if (r < 0) {
      fail(c, MW_STATUS_INVALID_ARGUMENT, code, why);
      break;
    }
    if (r == 0) break;
    if (h.opcode < MW_WS_CLOSE && (h.len > c->ws->max_message ||
                                   c->msg.len + h.len > c->ws->max_message)) {
      char m[160];
      snprintf(m, sizeof m, "a message is larger than limits.max_receive_bytes (%zu)",
               c->ws->max_message);
      fail(c, MW_STATUS_RESOURCE_EXHAUSTED, MW_WS_CLOSE_TOO_BIG, m);
      break;
    }
    if (in->size - h.head_len < h.len) break; /* the payload is still coming */
    size_t len = (size_t)h.len;
    unsigned char *p = (unsigned char *)in->bytes + h.head_len;
    mw_ws_unmask(p, len, h.mask, 0);
    /* Consumed after: consuming the last bytes frees h2o's buffer. The
     * socket stays open until the entry point returns (finish). */
    on_frame(c, &h, (const char *)p, len);
    h2o_buffer_consume(&c->sock->input, h.head_len + len);
  }
  int want = c->sock && !c->closing &&
             (c->draining || (!c->sending && !c->final_queued));
  set_reading(c, want);
}

/* --- the upgrade --------------------------------------------------------------- */

static void on_upgraded(void *ud, h2o_socket_t *sock, size_t reqsize) {
  wsconn *c = ud;
  c->upgrading = 0;
  ENTER(c);
  if (!sock) {
    peer_gone(c); /* the 101 could not be written */
    LEAVE(c);
    return;
  }
  c->sock = sock;
  sock->data = c;
  h2o_buffer_consume(&sock->input, reqsize);
  if (c->early_code) {
    queue_final(c, c->early_code, c->early_msg, strlen(c->early_msg), 0);
  } else {
    mw_lb_call_recv(c->lb);
    process_input(c); /* frames may have come with the request */
  }
  LEAVE(c);
}

static h2o_iovec_t header_str(h2o_req_t *req, const char *name) {
  ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
  return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

/* Whether a comma-separated header value holds token (case-blind). */
static int has_token(h2o_iovec_t v, const char *token) {
  size_t tl = strlen(token);
  const char *p = v.base, *end = v.base + v.len;
  while (p && p < end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
    const char *e = p;
    while (e < end && *e != ',') e++;
    const char *t = e;
    while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
    if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0) return 1;
    p = e;
  }
  return 0;
}

static int plain(h2o_req_t *req, int status, const char *reason, const char *text) {
  req->res.status = status;
  req->res.reason = reason;
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                 H2O_STRLIT("text/plain; charset=utf-8"));
  h2o_send_inline(req, text, strlen(text));
  return 0;
}

/* Request headers that are HTTP's, the handshake's or the protocols' own. */
static int skip_header(const char *k, size_t kl) {
  static const char *const skip[] = {
      "host", "content-type", "content-length", "connection", "keep-alive", "te",
      "transfer-encoding", "upgrade", "accept", "accept-encoding", "user-agent", "origin",
      "referer", "pragma", "cache-control", "x-user-agent", NULL};
  if (kl == 0 || k[0] == ':') return 1;
  if (kl >= 5 && memcmp(k, "grpc-", 5) == 0) return 1;
  if (kl >= 8 && memcmp(k, "connect-", 8) == 0) return 1;
  if (kl >= 14 && memcmp(k, "sec-websocket-", 14) == 0) return 1;
  if (kl == sizeof MW_LOOPBACK_KEY - 1 && memcmp(k, MW_LOOPBACK_KEY, kl) == 0) return 1;
  for (size_t i = 0; skip[i]; i++)
    if (strlen(skip[i]) == kl && memcmp(skip[i], k, kl) == 0) return 1;
  return 0;
}

static int key_ok(const char *k, size_t kl) {
  if (kl == 0) return 0;
  for (size_t i = 0; i < kl; i++) {
    char ch = k[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
          ch == '.'))
      return 0;
  }
  return 1;
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Percent-decodes (and '+' as space) into the pool; -1 when not valid. */
static long pct_decode(h2o_mem_pool_t *pool, const char *s, size_t n, char **out) {
  char *o = h2o_mem_alloc_pool(pool, n + 1);
  size_t ol = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      if (i + 2 >= n) return -1;
      int a = hexval(s[i + 1]), b = hexval(s[i + 2]);
      if (a < 0 || b < 0) return -1;
      o[ol++] = (char)(a * 16 + b);
      i += 2;
    } else {
      o[ol++] = s[i] == '+' ? ' ' : s[i];
    }
  }
  o[ol] = '\0';
  *out = o;
  return (long)ol;
}

/* The call's metadata, deadline and encoding from the upgrade request:
 * headers (for clients that can set them), and the query, which is all a
 * browser's WebSocket can set: encoding=json|proto, timeout=<ms>,
 * md.<key>=<value>. 0, or -1 with c->early_* set. */
typedef struct ws_args {
  const char *keys[MAX_MD + 1], *vals[MAX_MD + 1];
  size_t lens[MAX_MD + 1], n;
  double timeout; /* seconds */
  int has_timeout; /* one was given (0 is a budget already spent) */
} ws_args;

static int add_md(wsconn *c, h2o_req_t *req, ws_args *a, const char *k, size_t kl,
                  const char *v, size_t vl) {
  if (a->n >= MAX_MD) {
    c->early_code = MW_STATUS_INVALID_ARGUMENT;
    snprintf(c->early_msg, sizeof c->early_msg, "more than %d metadata entries", MAX_MD);
    return -1;
  }
  char *kz = h2o_strdup(&req->pool, k, kl).base;
  if (kl > 4 && memcmp(k + kl - 4, "-bin", 4) == 0) {
    unsigned char *bin = h2o_mem_alloc_pool(&req->pool, vl * 3 / 4 + 4);
    long bl = mw_web_b64_decode(v, vl, bin, 1);
    if (bl < 0) {
      c->early_code = MW_STATUS_INVALID_ARGUMENT;
      snprintf(c->early_msg, sizeof c->early_msg, "metadata %s: not valid base64", kz);
      return -1;
    }
    v = (const char *)bin;
    vl = (size_t)bl;
  }
  a->keys[a->n] = kz;
  a->vals[a->n] = v;
  a->lens[a->n++] = vl;
  return 0;
}

static int read_args(wsconn *c, h2o_req_t *req, ws_args *a) {
  for (size_t i = 0; i < req->headers.size; i++) {
    const h2o_header_t *h = &req->headers.entries[i];
    if (skip_header(h->name->base, h->name->len) || !key_ok(h->name->base, h->name->len))
      continue;
    if (add_md(c, req, a, h->name->base, h->name->len, h->value.base, h->value.len) != 0)
      return -1;
  }
  h2o_iovec_t tv = header_str(req, "grpc-timeout");
  if (tv.base) a->timeout = mw_web_grpc_timeout(tv.base, tv.len);
  else if ((tv = header_str(req, "connect-timeout-ms")).base)
    a->timeout = mw_web_connect_timeout(tv.base, tv.len);
  a->has_timeout = tv.base != NULL;
  if (a->timeout < 0) {
    c->early_code = MW_STATUS_INVALID_ARGUMENT;
    snprintf(c->early_msg, sizeof c->early_msg, "the timeout header is not valid");
    return -1;
  }
  if (req->query_at == SIZE_MAX) return 0;
  const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *e = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(e - p));
    const char *ke = eq ? eq : e;
    char *k, *v;
    long kl = pct_decode(&req->pool, p, (size_t)(ke - p), &k);
    long vl = eq ? pct_decode(&req->pool, eq + 1, (size_t)(e - eq - 1), &v) : 0;
    if (!eq) v = "";
    if (kl < 0 || vl < 0) {
      c->early_code = MW_STATUS_INVALID_ARGUMENT;
      snprintf(c->early_msg, sizeof c->early_msg, "the query is not valid percent-encoding");
      return -1;
    }
    if (kl > 3 && memcmp(k, "md.", 3) == 0) {
      if (!key_ok(k + 3, (size_t)kl - 3) || skip_header(k + 3, (size_t)kl - 3)) {
        c->early_code = MW_STATUS_INVALID_ARGUMENT;
        snprintf(c->early_msg, sizeof c->early_msg,
                 "metadata key '%.80s' is not allowed (lower case a-z 0-9 - _ . and not a "
                 "protocol's own header)", k + 3);
        return -1;
      }
      if (add_md(c, req, a, k + 3, (size_t)kl - 3, v, (size_t)vl) != 0) return -1;
    } else if (kl == 7 && memcmp(k, "timeout", 7) == 0) {
      a->timeout = mw_web_connect_timeout(v, (size_t)vl);
      a->has_timeout = 1;
      if (a->timeout < 0) {
        c->early_code = MW_STATUS_INVALID_ARGUMENT;
        snprintf(c->early_msg, sizeof c->early_msg,
                 "timeout must be milliseconds (1 to 10 digits)");
        return -1;
      }
    }
    /* encoding is read by the caller; other parameters are the page's own */
    p = e + 1;
  }
  return 0;
}

/* encoding from the subprotocol offered, else the query, else JSON: 1 JSON,
 * 0 binary, -1 not valid. *chosen: the subprotocol to answer with. */
static int encoding_of(h2o_req_t *req, const char **chosen) {
  *chosen = NULL;
  h2o_iovec_t sp = header_str(req, "sec-websocket-protocol");
  if (sp.base) {
    /* The first of ours the client lists, in its order. */
    const char *p = sp.base, *end = sp.base + sp.len;
    while (p < end) {
      while (p < end && (*p == ' ' || *p == ',')) p++;
      const char *e = p;
      while (e < end && *e != ',' && *e != ' ') e++;
      if ((size_t)(e - p) == strlen(SUBPROTO_JSON) && memcmp(p, SUBPROTO_JSON, e - p) == 0) {
        *chosen = SUBPROTO_JSON;
        return 1;
      }
      if ((size_t)(e - p) == strlen(SUBPROTO_PROTO) && memcmp(p, SUBPROTO_PROTO, e - p) == 0) {
        *chosen = SUBPROTO_PROTO;
        return 0;
      }
      p = e;
    }
  }
  if (req->query_at != SIZE_MAX) {
    const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    while (p < end) {
      const char *amp = memchr(p, '&', (size_t)(end - p));
      const char *e = amp ? amp : end;
      if (e - p >= 9 && memcmp(p, "encoding=", 9) == 0) {
        if (e - p == 13 && memcmp(p + 9, "json", 4) == 0) return 1;
        if (e - p == 14 && memcmp(p + 9, "proto", 5) == 0) return 0;
        return -1;
      }
      p = e + 1;
    }
  }
  return 1;
}

int mw_ws_wanted(h2o_req_t *req) {
  /* h2o keeps Upgrade apart from the headers, and only with Connection:
   * upgrade (h2c's is taken before any handler runs). */
  return req->upgrade.base && has_token(req->upgrade, "websocket");
}

int mw_ws_serve(mw_ws *ws, h2o_req_t *req, int origin_ok) {
  if (req->version >= 0x200)
    return plain(req, 400, "Bad Request", "WebSocket calls are served over HTTP/1.1\n");
  if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")))
    return plain(req, 405, "Method Not Allowed", "a WebSocket upgrade is a GET\n");
  ssize_t ci = h2o_find_header(&req->headers, H2O_TOKEN_CONNECTION, -1);
  if (ci < 0 || !has_token(req->headers.entries[ci].value, "upgrade"))
    return plain(req, 400, "Bad Request", "a WebSocket upgrade needs Connection: Upgrade\n");
  h2o_iovec_t ver = header_str(req, "sec-websocket-version");
  if (!ver.base || ver.len != 2 || memcmp(ver.base, "13", 2) != 0) {
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-version"), 0,
                          NULL, H2O_STRLIT("13"));
    return plain(req, 426, "Upgrade Required", "Sec-WebSocket-Version must be 13\n");
  }
  h2o_iovec_t key = header_str(req, "sec-websocket-key");
  if (!mw_ws_key_valid(key.base, key.len))
    return plain(req, 400, "Bad Request",
                 "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 section 4.1)\n");
  if (!origin_ok)
    return plain(req, 403, "Forbidden", "this origin is not in http.cors.origins\n");
  if (ws->n >= ws->max_conns)
    return plain(req, 503, "Service Unavailable",
                 "too many WebSockets open (http.max_connections)\n");
  const char *sub = NULL;
  int json = encoding_of(req, &sub);
  if (json < 0) return plain(req, 400, "Bad Request", "encoding must be json or proto\n");

  if (!ws->loop) {
    ws->loop = req->conn->ctx->loop;
    h2o_timeout_init(ws->loop, &ws->close_timeout, CLOSE_WAIT_MS);
    h2o_timeout_init(ws->loop, &ws->linger_timeout, (uint64_t)ws->linger_ms);
    h2o_timeout_init(ws->loop, &ws->watch_timeout, WATCH_MS);
  }
  wsconn *c = calloc(1, sizeof *c);
  if (!c) return plain(req, 503, "Service Unavailable", "out of memory\n");
  c->ws = ws;
  c->json = json;
  c->next = ws->conns;
  if (ws->conns) ws->conns->prev = c;
  ws->conns = c;
  ws->n++;

  /* The method, and a reference to its generation for the JSON codec. */
  c->router = mw_server_router_acquire(ws->server);
  c->m = mw_methods_find(mw_router_methods(c->router), req->path_normalized.base,
                         req->path_normalized.len);
  ws_args *a = h2o_mem_alloc_pool(&req->pool, sizeof *a);
  memset(a, 0, sizeof *a);
  if (!c->m) {
    c->early_code = MW_STATUS_UNIMPLEMENTED;
    snprintf(c->early_msg, sizeof c->early_msg, "unknown method %.*s",
             (int)(req->path_normalized.len > 150 ? 150 : req->path_normalized.len),
             req->path_normalized.base);
  } else if (read_args(c, req, a) == 0) {
    c->one_request = c->m->kind == MW_KIND_UNARY || c->m->kind == MW_KIND_SERVER_STREAMING;
    char peer[96], auth[256];
    mw_web_peer(req, peer, sizeof peer);
    int al = snprintf(auth, sizeof auth, "%s;websocket;%s", mw_loopback_secret(), peer);
    a->keys[a->n] = MW_LOOPBACK_KEY;
    a->vals[a->n] = auth;
    a->lens[a->n++] = (size_t)al;
    if (a->timeout == 0 && a->has_timeout) a->timeout = 1e-9; /* a zero budget is already over */
    mw_lb_start st = {
        .path = c->m->path,
        .path_len = c->m->path_len,
        .deadline = a->timeout > 0 ? mw_wall_now() + a->timeout : 0,
        .md_keys = a->keys,
        .md_vals = a->vals,
        .md_lens = a->lens,
        .md_n = a->n,
        .stream_requests = 1,
        .ops = &lb_ops,
        .self = c,
    };
    char err[160];
    c->lb = mw_lb_call_start(ws->lb, &st, err, sizeof err);
    if (!c->lb) {
      c->early_code = MW_STATUS_UNAVAILABLE;
      snprintf(c->early_msg, sizeof c->early_msg, "%s", err);
    }
  }

  char accept[29];
  mw_ws_accept_key(key.base, key.len, accept);
  req->res.status = 101;
  req->res.reason = "Switching Protocols";
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
  h2o_iovec_t av = h2o_strdup(&req->pool, accept, strlen(accept));
  h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0,
                        NULL, av.base, av.len);
  if (sub)
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-protocol"),
                          0, NULL, sub, strlen(sub));
  c->upgrading = 1;
  h2o_http1_upgrade(req, NULL, 0, on_upgraded, c);
  return 0;
}

mw_ws *mw_ws_new(mw_loopback *lb, mw_server *server, size_t max_message, size_t max_conns,
                 long timeout_ms) {
  mw_ws *ws = calloc(1, sizeof *ws);
  if (!ws) return NULL;
  ws->lb = lb;
  ws->server = server;
  ws->max_message = max_message;
  ws->max_conns = max_conns ? max_conns : 64;
  ws->linger_ms = timeout_ms > 0 ? timeout_ms : 30000;
  return ws;
}

size_t mw_ws_count(const mw_ws *ws) { return ws ? ws->n : 0; }

void mw_ws_free(mw_ws *ws) {
  if (!ws) return;
  for (wsconn *c = ws->conns, *next; c; c = next) {
    next = c->next;
    if (c->upgrading) continue; /* h2o's connection outlived the stop: the process exits */
    c->closing = 1;
    c->busy = 0;
    finish(c);
  }
  if (ws->loop) {
    h2o_timeout_dispose(ws->loop, &ws->close_timeout);
    h2o_timeout_dispose(ws->loop, &ws->linger_timeout);
    h2o_timeout_dispose(ws->loop, &ws->watch_timeout);
  }
  free(ws);
}
