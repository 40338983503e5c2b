/* The server-side call state machine. A call is created when a requested
 * call arrives (mw_call_arrived), routed, handed to its handler's start,
 * and then driven by the backend's commands; batches complete through
 * mw_call_on_batch. It is freed once no batch is in flight, the final
 * status is sent and no event is running ("busy"): the backend hears
 * on_done just before, unconditionally. */
#include "core/mw_call.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "base/mw_log.h"
#include "base/mw_status.h"
#include "core/mw_compress.h"
#include "core/mw_core_internal.h"
#include "core/mw_loopback.h"
#include "tls/mw_tlsctx.h"
#include "core/mw_metadata.h"
#include "metrics/mw_grpc_metrics.h"

enum { OP_RECV = 1, OP_SEND, OP_CLOSE, OP_FINAL, OP_SENDRECV };

struct mw_call {
  mw_worker *w;
  grpc_call *call;    /* one reference, dropped in call_free */
  mw_router *router;  /* one reference */
  const mw_method *method;
  const mw_call_ops *ops; /* the backend's events, once attached */
  void *self;             /* the backend's record, passed to every event */
  const char *path;        /* the method's path, or path_buf */
  int counted;             /* counted in the server's inflight */
  mw_method_limit *limit;  /* its method's limit, counted in; else NULL */
  mw_method_limit *service_limit; /* its service's, the same way */
  char *path_buf;          /* owned copy of an unknown path, else NULL */
  grpc_metadata_array md;  /* request metadata, owned */
  double deadline;         /* epoch seconds, 0 = none */
  char *peer;              /* gpr_malloc'd, lazily */
  /* Set by authenticated loopback metadata (core/mw_loopback.h): the HTTP
   * protocol the call came in by and its real client; else NULL ("grpc"
   * and core's peer). */
  const char *protocol;    /* static */
  char *lb_peer;           /* owned */
  int event_ids;           /* the HTTP client reads server-sent events */
  int lb_tls, lb_tls_reused; /* the HTTP client came over TLS (resumed) */
  char *lb_cert;           /* owned: its verified certificate, base64 DER */
  int inflight;            /* batches started, not completed */
  int busy;                /* inside a hook: freeing waits */
  mw_tag recv_tag, send_tag, close_tag, final_tag, sendrecv_tag;

  grpc_byte_buffer *recv_buf;
  int recv_started;
  int want_recv;   /* the backend asked for a message inside an event: the read
                      starts at the pump, with the send when there is one */
  int sends_anytime; /* mw_call_sends_anytime: never a send with the read */
  int close_started, close_done, close_cancelled;
  int cancelled;

  /* The send queue: messages wait here while one is in flight. */
  grpc_byte_buffer **q; /* ring of owned buffers: q_inline, or owned */
  size_t q_head, q_len, q_cap, q_bytes;
  grpc_byte_buffer *q_inline[2]; /* a unary reply needs no allocation */
  grpc_byte_buffer *sending; /* in flight, owned */
  size_t sending_bytes;
  int want_writable;
  size_t hinted_bytes; /* sent with GRPC_WRITE_BUFFER_HINT since the last flush */

  mw_md_list headers, trailers;
  int headers_sent;
  /* How core compresses the responses, once the initial metadata asked it
   * to (mw_compress.h); NULL: uncompressed. */
  const mw_compress_rule *compress;

  int finish_requested, final_started, final_done, done_told;
  int await_first;  /* reading the request of a unary or server-streaming
                       call that arrived without it; handler waits */
  mw_handler *handler;
  grpc_status_code code;
  grpc_slice status_msg;
  grpc_byte_buffer *final_msg; /* the last message, sent with the status */
  mw_call_io io;               /* what the call has moved so far */
  mw_timer deadline_timer;     /* a deadline the server set (mw_call_set_deadline);
                                  armed only then, disarmed at call_free */
  /* Observation, only while the admin listener runs (w->observe): the
   * method's metric series, and the links in the worker's list of live
   * calls (for /debug/calls). */
  mw_grpc_series *ms;
  mw_call *dnext, *dprev;
};

/* --- accessors ------------------------------------------------------------ */

const mw_method *mw_call_method(const mw_call *c) { return c->method; }
int mw_call_worker_id(const mw_call *c) { return c->w->id; }
double mw_call_deadline(const mw_call *c) { return c->deadline; }
int mw_call_cancelled(const mw_call *c) { return c->cancelled; }
const mw_call_io *mw_call_io_of(const mw_call *c) { return &c->io; }
int mw_call_status(const mw_call *c) {
  if (c->finish_requested) return (int)c->code;
  if (!c->cancelled) return -1;
  return c->deadline != 0 && mw_wall_now() >= c->deadline ? MW_STATUS_DEADLINE_EXCEEDED
                                                          : MW_STATUS_CANCELLED;
}
void mw_call_server_stats(const mw_call *c, mw_server_stats *out) {
  mw_counters_read(c->w->counters, out);
}
void mw_call_attach(mw_call *c, const mw_call_ops *ops, void *self) {
  c->ops = ops;
  c->self = self;
}
int mw_call_reading(const mw_call *c) {
  return c->recv_started || c->want_recv;
}

const char *mw_call_protocol(const mw_call *c) { return c->protocol ? c->protocol : "grpc"; }
int mw_call_event_ids(const mw_call *c) { return c->event_ids; }

const char *mw_call_peer(mw_call *c) {
  if (c->lb_peer) return c->lb_peer;
  if (!c->peer) c->peer = grpc_call_get_peer(c->call);
  return c->peer ? c->peer : "";
}

void mw_call_auth_each(mw_call *c,
                       void (*fn)(void *ud, const char *name,
                                  const char *value, size_t len),
                       void *ud) {
  if (c->lb_tls) {
    /* The HTTP listener's client came over TLS: the internal connection is
     * plaintext, so the identity is the one the listener verified and
     * passed along, under the names gRPC's auth context uses. */
    fn(ud, "transport_security_type", "ssl", 3);
    fn(ud, "security_level", "TSI_PRIVACY_AND_INTEGRITY", 25);
    if (c->lb_cert) mw_tlsctx_cert_each(c->lb_cert, strlen(c->lb_cert), fn, ud);
    fn(ud, "ssl_session_reused", c->lb_tls_reused ? "true" : "false", c->lb_tls_reused ? 4 : 5);
    return;
  }
  /* A reference of our own for the walk: the call keeps the context, but
   * this does not depend on how. */
  grpc_auth_context *ac = grpc_call_auth_context(c->call);
  if (!ac) return;
  grpc_auth_property_iterator it = grpc_auth_context_property_iterator(ac);
  const grpc_auth_property *p;
  while ((p = grpc_auth_property_iterator_next(&it)))
    if (p->name) fn(ud, p->name, p->value ? p->value : "", p->value_length);
  grpc_auth_context_release(ac);
}

size_t mw_call_metadata_count(const mw_call *c) { return c->md.count; }

void mw_call_metadata_at(const mw_call *c, size_t i, const char **key,
                         size_t *klen, const char **val, size_t *vlen) {
  const grpc_metadata *m = &c->md.metadata[i];
  *key = (const char *)GRPC_SLICE_START_PTR(m->key);
  *klen = GRPC_SLICE_LENGTH(m->key);
  *val = (const char *)GRPC_SLICE_START_PTR(m->value);
  *vlen = GRPC_SLICE_LENGTH(m->value);
}

/* --- observation ------------------------------------------------------------ */

/* The call's queued response bytes change by delta (the worker's total is
 * kept for the metrics only when they are on). */
static inline void q_bytes_add(mw_call *c, long delta) {
  c->q_bytes += (size_t)delta;
  if (c->w->observe)
    atomic_store_explicit(&c->w->queued_bytes,
                          atomic_load_explicit(&c->w->queued_bytes, memory_order_relaxed) +
                              (size_t)delta,
                          memory_order_relaxed);
}

/* The call ends: its final counts go to its series. */
static void observe_end(mw_call *c) {
  if (c->dprev) c->dprev->dnext = c->dnext;
  else if (c->w->calls == c) c->w->calls = c->dnext;
  if (c->dnext) c->dnext->dprev = c->dprev;
  if (c->q_bytes) q_bytes_add(c, -(long)c->q_bytes);
  if (!c->ms || !mw_metrics_current()) return;
  int code = mw_call_status(c);
  if (code < 0) code = MW_STATUS_UNKNOWN; /* ended neither finished nor cancelled */
  mw_grpc_handled(c->ms, code, mw_now() - c->io.start, c->io.msgs_in, c->io.msgs_out);
}

/* What a call is doing, for /debug/calls. */
const char *mw_call_wait_state(const mw_call *c) {
  if (c->ops && c->ops->wait_state && !c->done_told) return c->ops->wait_state(c->self);
  if (c->await_first) return "read:request";
  if (c->finish_requested) return "finishing";
  return "queued";
}

static void call_debug_json(mw_call *c, mw_buf *b, double now) {
  static const char *const kinds[4] = {"unary", "server_stream", "client_stream", "bidi_stream"};
  mw_buf_puts(b, "{\"method\":");
  mw_buf_json(b, c->path, strlen(c->path));
  mw_buf_printf(b, ",\"kind\":\"%s\",\"age_s\":%.3f,\"generation\":%u,\"worker\":%d,"
                    "\"state\":",
                 c->method ? kinds[c->method->kind & 3] : "unknown", now - c->io.start,
                 mw_router_id(c->router), c->w->id);
  const char *st = mw_call_wait_state(c);
  mw_buf_json(b, st, strlen(st));
  mw_buf_printf(b, ",\"msgs_in\":%lu,\"msgs_out\":%lu,\"bytes_in\":%zu,\"bytes_out\":%zu,"
                    "\"cancelled\":%s,\"peer\":",
                 c->io.msgs_in, c->io.msgs_out, c->io.bytes_in, c->io.bytes_out,
                 c->cancelled ? "true" : "false");
  const char *peer = mw_call_peer(c);
  mw_buf_json(b, peer, strlen(peer));
  mw_buf_puts(b, "}");
}

void mw_worker_debug_calls(mw_worker *w, mw_buf *b) {
  double now = mw_now();
  int first = 1;
  for (mw_call *c = w->calls; c; c = c->dnext) {
    if (!first) mw_buf_puts(b, ",");
    first = 0;
    call_debug_json(c, b, now);
  }
}

/* --- lifetime -------------------------------------------------------------- */

static void call_free(mw_call *c) {
  mw_timers_cancel(&c->w->timers, &c->deadline_timer);
  if (c->w->observe) observe_end(c);
  while (c->q_len) {
    grpc_byte_buffer_destroy(c->q[c->q_head]);
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
  }
  if (c->q != c->q_inline) free(c->q);
  c->q = NULL;
  if (c->sending) grpc_byte_buffer_destroy(c->sending);
  if (c->final_msg) grpc_byte_buffer_destroy(c->final_msg);
  if (c->recv_buf) grpc_byte_buffer_destroy(c->recv_buf);
  mw_md_list_free(&c->headers);
  mw_md_list_free(&c->trailers);
  grpc_slice_unref(c->status_msg);
  grpc_metadata_array_destroy(&c->md);
  if (c->peer) gpr_free(c->peer);
  free(c->lb_peer);
  free(c->lb_cert);
  grpc_call_unref(c->call);
  c->w->live_calls--;
  if (c->counted) atomic_fetch_sub(&c->w->counters->inflight, 1);
  if (c->limit) atomic_fetch_sub(&c->limit->live, 1);
  if (c->service_limit) atomic_fetch_sub(&c->service_limit->live, 1);
  mw_router_unref(c->router);
  free(c->path_buf);
#ifndef __SANITIZE_ADDRESS__ /* there, every record is freed and poisoned */
  mw_worker *w = c->w;
  if (w->n_spare_calls < MW_SPARE_CALLS) {
    w->spare_calls[w->n_spare_calls++] = c;
    return;
  }
#endif
  free(c);
}

/* A zeroed call record: a spare the worker kept, or a new one. glibc's
 * calloc bypasses its per-thread cache (~490 instructions a call in make
 * profile), and gcc turns malloc followed by a memset of the same size
 * into calloc, so records are reused rather than allocated each time. */
static mw_call *call_alloc(mw_worker *w) {
  mw_call *c = w->n_spare_calls ? w->spare_calls[--w->n_spare_calls] : malloc(sizeof *c);
  if (c) memset(c, 0, sizeof *c);
  return c;
}

void mw_call_spares_free(mw_worker *w) {
  while (w->n_spare_calls) free(w->spare_calls[--w->n_spare_calls]);
}

/* Frees the call once nothing refers to it any more, telling the backend
 * first: whatever it does in on_done, the call is freed afterwards. */
static void maybe_free(mw_call *c) {
  if (c->busy || c->inflight || !c->final_done) return;
  if (c->ops && !c->done_told) {
    c->done_told = 1;
    c->busy++;
    c->ops->on_done(c->self);
    c->busy--;
  }
  call_free(c);
}

static int start_batch(mw_call *c, const grpc_op *ops, size_t n, mw_tag *tag) {
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
  if (e != GRPC_CALL_OK) {
    mw_log(MW_LOG_ERROR, "%s: grpc_call_start_batch failed (%d)", c->path,
           (int)e);
    return -1;
  }
  c->inflight++;
  return 0;
}

/* --- the ops of a batch: each builder fills one grpc_op ------------------------ */

static void add_initial_md(mw_call *c, grpc_op *op) {
  memset(op, 0, sizeof *op);
  op->op = GRPC_OP_SEND_INITIAL_METADATA;
  op->data.send_initial_metadata.count = c->headers.n;
  op->data.send_initial_metadata.metadata = c->headers.v;
  c->headers_sent = 1;
  if (c->w->compress->active) {
    c->compress = mw_compress_policy_for(c->w->compress, c->path);
    if (c->compress) {
      op->data.send_initial_metadata.maybe_compression_level.is_set = 1;
      op->data.send_initial_metadata.maybe_compression_level.level =
          mw_compress_level(c->compress);
    }
  }
}

static void add_send(mw_call *c, grpc_op *op, grpc_byte_buffer *bb) {
  memset(op, 0, sizeof *op);
  op->op = GRPC_OP_SEND_MESSAGE;
  op->data.send_message.send_message = bb;
  /* Below min_bytes compression costs more than it saves. */
  if (c->compress && grpc_byte_buffer_length(bb) < c->compress->min_bytes)
    op->flags = GRPC_WRITE_NO_COMPRESS;
}

static void add_status(mw_call *c, grpc_op *op) {
  memset(op, 0, sizeof *op);
  op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  op->data.send_status_from_server.status = c->code;
  op->data.send_status_from_server.status_details =
      GRPC_SLICE_LENGTH(c->status_msg) ? &c->status_msg : NULL;
  op->data.send_status_from_server.trailing_metadata_count = c->trailers.n;
  op->data.send_status_from_server.trailing_metadata = c->trailers.v;
}

static void add_close(mw_call *c, grpc_op *op) {
  memset(op, 0, sizeof *op);
  op->op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op->data.recv_close_on_server.cancelled = &c->close_cancelled;
  c->close_started = 1;
}

static void add_recv(mw_call *c, grpc_op *op) {
  memset(op, 0, sizeof *op);
  op->op = GRPC_OP_RECV_MESSAGE;
  op->data.recv_message.recv_message = &c->recv_buf;
}

/* --- batches ----------------------------------------------------------------------- */

static void start_close_watch(mw_call *c) {
  if (c->close_started || c->final_started) return;
  grpc_op op;
  add_close(c, &op);
  if (start_batch(c, &op, 1, &c->close_tag) != 0) c->close_started = 0;
}

void mw_call_watch_cancel(mw_call *c) { start_close_watch(c); }

static void start_final(mw_call *c) {
  grpc_op ops[4];
  size_t n = 0;
  if (!c->headers_sent) add_initial_md(c, &ops[n++]);
  if (c->q_len == 1) {
    c->final_msg = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len = 0;
    q_bytes_add(c, -(long)c->q_bytes);
    add_send(c, &ops[n++], c->final_msg);
  }
  add_status(c, &ops[n++]);
  if (!c->close_started) add_close(c, &ops[n++]);
  c->final_started = 1;
  if (start_batch(c, ops, n, &c->final_tag) != 0) {
    /* The call is beyond saving: make sure the peer hears of it. */
    grpc_call_cancel(c->call, NULL);
    c->final_done = 1;
  }
}

static void start_recv(mw_call *c) {
  grpc_op op;
  add_recv(c, &op);
  if (start_batch(c, &op, 1, &c->recv_tag) == 0) {
    c->recv_started = 1;
  } else {
    /* Report the failure as a failed read, from the next loop turn on. */
    grpc_call_cancel(c->call, NULL);
  }
}

/* At most this many bytes go out hinted in a row; the next message is sent
 * unhinted, which makes core write. A hinted send completes at once only
 * while core holds less than its write buffer for the stream; past that its
 * completion waits for a write that nothing else may start, and with one
 * send in flight the stream stalls (seen with ten streams under valgrind:
 * every stream stuck after ~18 KiB of hinted messages, the worker idle). */
#define MW_HINT_MAX_BYTES (8 * 1024)

/* Sends the next queued message; with_recv adds the read the handler waits
 * for to the same batch (a bidi echo costs one batch a message). */
static void start_send(mw_call *c, int with_recv) {
  grpc_op ops[3];
  size_t n = 0;
  if (!c->headers_sent) add_initial_md(c, &ops[n++]);
  c->sending = c->q[c->q_head];
  c->sending_bytes = grpc_byte_buffer_length(c->sending);
  c->q_head = (c->q_head + 1) % c->q_cap;
  c->q_len--;
  add_send(c, &ops[n], c->sending);
  /* More messages already wait: let the transport buffer this one instead
   * of writing it out alone (it completes once buffered, up to
   * MW_HINT_MAX_BYTES in a row). The last queued message goes without the
   * hint, so the stream is always flushed.
   * The batch that carries the initial metadata is never hinted: core then
   * holds the message until a later flush. */
  if (c->q_len > 0 && n == 0 && c->hinted_bytes + c->sending_bytes < MW_HINT_MAX_BYTES) {
    ops[n].flags |= GRPC_WRITE_BUFFER_HINT;
    c->hinted_bytes += c->sending_bytes;
  } else {
    c->hinted_bytes = 0;
  }
  n++;
  if (with_recv) add_recv(c, &ops[n++]);
  if (start_batch(c, ops, n, with_recv ? &c->sendrecv_tag : &c->send_tag) == 0) {
    if (with_recv) c->recv_started = 1;
  } else {
    grpc_byte_buffer_destroy(c->sending);
    c->sending = NULL;
    q_bytes_add(c, -(long)c->sending_bytes);
    grpc_call_cancel(c->call, NULL);
  }
}

static void pump(mw_call *c) {
  if (c->final_started) return;
  if (!c->sending) {
    if (c->finish_requested && c->q_len <= 1) {
      start_final(c);
      return;
    }
    if (c->q_len > 0) {
      int with_recv =
          c->want_recv && c->q_len == 1 && !c->recv_started && !c->sends_anytime;
      if (with_recv) c->want_recv = 0;
      start_send(c, with_recv);
    }
  }
  if (c->want_recv) {
    c->want_recv = 0;
    if (!c->recv_started) start_recv(c);
  }
}

/* Runs a backend event with the call pinned, then starts what it queued. */
#define EVENT(c, expr)                                                        \
  do {                                                                        \
    const char *prev_ = atomic_load_explicit(&(c)->w->running, memory_order_relaxed); \
    atomic_store_explicit(&(c)->w->running, (c)->path, memory_order_release); \
    (c)->busy++;                                                              \
    expr;                                                                     \
    (c)->busy--;                                                              \
    atomic_store_explicit(&(c)->w->running, prev_, memory_order_release);    \
    pump(c);                                                                  \
  } while (0)

void mw_call_run(mw_call *c, void (*fn)(void *arg), void *arg) {
  EVENT(c, fn(arg));
  maybe_free(c);
}

/* --- timers ------------------------------------------------------------------ */

static void call_timer_fire(mw_timer *e) {
  mw_call_timer *t = (mw_call_timer *)((char *)e - offsetof(mw_call_timer, entry));
  mw_call *c = t->call;
  EVENT(c, t->fn(t));
  maybe_free(c);
}

int mw_call_timer_start(mw_call *c, mw_call_timer *t, double secs) {
  mw_call_timer_cancel(t);
  t->call = c;
  t->entry.fn = call_timer_fire;
  return mw_timers_add(&c->w->timers, &t->entry, mw_now() + (secs > 0 ? secs : 0));
}

void mw_call_timer_cancel(mw_call_timer *t) {
  if (mw_timer_armed(&t->entry)) mw_timers_cancel(&t->call->w->timers, &t->entry);
}

/* --- deadlines the server sets ------------------------------------------------- */

/* The deadline the server set has passed: the call ends for the client
 * with DEADLINE_EXCEEDED at once, and the handler hears of it as of a
 * cancellation (its wait raises DEADLINE_EXCEEDED, mw_co_raise_cancelled,
 * since the deadline it reads has passed). */
static void mark_cancelled(mw_call *c);

static void deadline_fire(mw_timer *e) {
  mw_call *c = (mw_call *)((char *)e - offsetof(mw_call, deadline_timer));
  if (c->finish_requested || c->cancelled) return;
  grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                               "deadline exceeded", NULL);
  mark_cancelled(c);
  maybe_free(c);
}

int mw_call_set_deadline(mw_call *c, double at) {
  if (c->deadline != 0 && at >= c->deadline) return 0; /* only ever shorter */
  if (c->finish_requested) return 0;
  c->deadline = at;
  c->deadline_timer.fn = deadline_fire;
  double when = mw_now() + (at - mw_wall_now());
  return mw_timers_add(&c->w->timers, &c->deadline_timer, when);
}

/* --- commands ------------------------------------------------------------------ */

void mw_call_recv(mw_call *c) {
  if (c->recv_started || c->final_started) return;
  if (c->busy) {
    c->want_recv = 1; /* the pump after the hook starts it */
  } else {
    start_recv(c);
  }
}

static int queue_has_room(const mw_call *c) {
  const mw_worker *w = c->w;
  return c->q_len + (c->sending ? 1 : 0) < w->send_queue_messages &&
         c->q_bytes < w->send_queue_bytes;
}

/* A backend told the queue was full hears on_writable once the queue has
 * drained to half (the last message in flight counts), not at the first
 * free place: a producer that fills the queue then runs once per half a
 * queue of messages instead of once per message (server streaming, 64
 * messages queued: 1 resume per 32 messages instead of 1 per message). */
static int queue_low(const mw_call *c) {
  const mw_worker *w = c->w;
  return (c->q_len + (c->sending ? 1 : 0)) * 2 <= w->send_queue_messages &&
         c->q_bytes * 2 <= w->send_queue_bytes;
}

/* Queues bb (owned), which holds len bytes. */
static int queue_push(mw_call *c, grpc_byte_buffer *bb, size_t len) {
  if (!c->q) {
    c->q = c->q_inline;
    c->q_cap = sizeof c->q_inline / sizeof c->q_inline[0];
  }
  if (c->q_len == c->q_cap) {
    size_t cap = c->q_cap * 2;
    grpc_byte_buffer **q = malloc(cap * sizeof *q);
    if (!q) {
      grpc_byte_buffer_destroy(bb);
      return -1;
    }
    for (size_t i = 0; i < c->q_len; i++) q[i] = c->q[(c->q_head + i) % c->q_cap];
    if (c->q != c->q_inline) free(c->q);
    c->q = q;
    c->q_cap = cap;
    c->q_head = 0;
  }
  c->q[(c->q_head + c->q_len) % c->q_cap] = bb;
  c->q_len++;
  q_bytes_add(c, (long)len);
  c->io.msgs_out++;
  c->io.bytes_out += len;
  if (queue_has_room(c)) return 1;
  c->want_writable = 1;
  return 0;
}

/* A response message over limits.max_send_bytes ends the call here, with
 * the method and the size in the log: core would refuse it with nothing in
 * our log and nothing for the client to go on. Messages sent after the call
 * was ended this way are dropped. Returns whether data must not be sent. */
static int refuse_send(mw_call *c, size_t len) {
  if (c->finish_requested) return 1;
  size_t max = c->w->max_send_bytes;
  int own = c->limit && c->limit->max_send && (max == 0 || c->limit->max_send < max);
  if (own) max = c->limit->max_send;
  if (max == 0 || len <= max) return 0;
  mw_log(MW_LOG_ERROR, "%s: response message of %zu bytes is over %s%s%s "
                       "(%zu bytes): the call ends with RESOURCE_EXHAUSTED",
         c->method ? c->method->path : "?", len, own ? "methods." : "limits",
         own ? c->limit->path : "", own ? ".max_send_bytes" : ".max_send_bytes", max);
  char msg[128];
  snprintf(msg, sizeof msg, "response message too large (%zu bytes, limit %zu)", len, max);
  mw_call_finish(c, MW_STATUS_RESOURCE_EXHAUSTED, msg);
  return 1;
}

void mw_call_sends_anytime(mw_call *c) { c->sends_anytime = 1; }

int mw_call_send(mw_call *c, const char *data, size_t len) {
  if (refuse_send(c, len)) return 1;
  grpc_slice s = grpc_slice_from_copied_buffer(data, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return queue_push(c, bb, len);
}

int mw_call_send_block(mw_call *c, char *block, size_t len) {
  if (refuse_send(c, len)) {
    free(block);
    return 1;
  }
  grpc_slice s = grpc_slice_new(block, len, free);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return queue_push(c, bb, len);
}

int mw_call_add_header(mw_call *c, const char *k, size_t kl, const char *v,
                       size_t vl, char *err, size_t errlen) {
  if (c->headers_sent) {
    snprintf(err, errlen, "headers were already sent with the first message");
    return -1;
  }
  return mw_md_list_add(&c->headers, k, kl, v, vl, c->w->max_response_md, "headers",
                        err, errlen);
}

int mw_call_add_trailer(mw_call *c, const char *k, size_t kl, const char *v,
                        size_t vl, char *err, size_t errlen) {
  if (c->finish_requested) {
    snprintf(err, errlen, "the call has already finished");
    return -1;
  }
  return mw_md_list_add(&c->trailers, k, kl, v, vl, c->w->max_response_md,
                        "trailers", err, errlen);
}

size_t mw_call_response_md_count(const mw_call *c, int trailers) {
  return trailers ? c->trailers.n : c->headers.n;
}

void mw_call_response_md_at(const mw_call *c, int trailers, size_t i, const char **key,
                            size_t *klen, const char **val, size_t *vlen) {
  const grpc_metadata *md = &(trailers ? &c->trailers : &c->headers)->v[i];
  *key = (const char *)GRPC_SLICE_START_PTR(md->key);
  *klen = GRPC_SLICE_LENGTH(md->key);
  *val = (const char *)GRPC_SLICE_START_PTR(md->value);
  *vlen = GRPC_SLICE_LENGTH(md->value);
}

int mw_call_set_status_details(mw_call *c, const char *bin, size_t len, char *err,
                               size_t errlen) {
  static const char key[] = "grpc-status-details-bin";
  if (c->finish_requested) {
    snprintf(err, errlen, "the call has already finished");
    return -1;
  }
  return mw_md_list_add_reserved(&c->trailers, key, sizeof key - 1, bin, len,
                                 c->w->max_response_md, "trailers", err, errlen);
}

void mw_call_finish(mw_call *c, int code, const char *msg) {
  if (c->finish_requested) return;
  c->finish_requested = 1;
  c->code = (grpc_status_code)code;
  c->status_msg = grpc_slice_from_copied_string(msg ? msg : "");
}

/* --- arrival and completions ----------------------------------------------- */

/* A request message reached the backend (len bytes, decompressed). */
static void count_in(mw_call *c, size_t len) {
  c->io.msgs_in++;
  c->io.bytes_in += len;
}

/* What a refused message's status says at most. */
#define MW_RECV_ERR 160

/* Past this size a message that came in several slices gets a block of
 * its own: a worker keeps its gather block for good, so it stays small. */
#define MW_RECV_GATHER_MAX (64 * 1024)

/* The slices of an uncompressed message of len bytes copied into the
 * worker's gather block, lent to this message (*out does not own it:
 * recv_done gives it back). Returns 0 when the block cannot be had (too
 * big, lent already, out of memory): the caller makes its own. */
static int gather(mw_worker *w, grpc_byte_buffer *bb, size_t len, grpc_slice *out) {
  if (len == 0 || len > MW_RECV_GATHER_MAX || w->gather_lent) return 0;
  if (w->gather_cap < len) {
    size_t cap = w->gather_cap ? w->gather_cap : 4096;
    while (cap < len) cap *= 2;
    char *p = realloc(w->gather, cap);
    if (!p) return 0;
    w->gather = p;
    w->gather_cap = cap;
  }
  const grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
  size_t off = 0;
  for (size_t i = 0; i < sb->count; i++) {
    size_t n = GRPC_SLICE_LENGTH(sb->slices[i]);
    memcpy(w->gather + off, GRPC_SLICE_START_PTR(sb->slices[i]), n);
    off += n;
  }
  w->gather_lent = 1;
  *out = grpc_slice_from_static_buffer(w->gather, len);
  return 1;
}

/* The end of a received message's bytes from bb_slice: its reference
 * dropped, or the worker's gather block given back. Takes the worker, not
 * the call, which the backend may have freed meanwhile. */
static void recv_done(mw_worker *w, grpc_slice s) {
  if (w->gather_lent && GRPC_SLICE_LENGTH(s) > 0 &&
      GRPC_SLICE_START_PTR(s) == (uint8_t *)w->gather) {
    w->gather_lent = 0;
    return;
  }
  grpc_slice_unref(s);
}

/* The bytes of a received message as one slice (*out, given back with
 * recv_done): the common single-slice, uncompressed case is not copied;
 * one in several slices is gathered into the worker's block (a new block
 * from malloc per message costs a 4 KiB message a fifth of its copy again);
 * a compressed one is inflated within limits.max_receive_bytes. Returns
 * MW_STATUS_OK, or the status that ends the call, with its message. */
static mw_status bb_slice_any(const mw_call *c, grpc_byte_buffer *bb, size_t max,
                              grpc_slice *out, char *msg, size_t msglen) {
  if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE &&
      bb->data.raw.slice_buffer.count == 1) {
    *out = grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
    return MW_STATUS_OK;
  }
  if (bb->type == GRPC_BB_RAW && bb->data.raw.compression != GRPC_COMPRESS_NONE)
    return mw_compress_inflate(bb, max, out, msg, msglen);
  if (bb->type == GRPC_BB_RAW && gather(c->w, bb, bb->data.raw.slice_buffer.length, out))
    return MW_STATUS_OK;
  grpc_byte_buffer_reader r;
  *out = grpc_empty_slice();
  if (grpc_byte_buffer_reader_init(&r, bb)) {
    *out = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
  }
  return MW_STATUS_OK;
}

/* bb_slice_any within the server's limit, or the method's own
 * (methods.PATH.max_receive_bytes) when it has a lower one: checked only
 * for calls of a method with settings (c->limit). */
static mw_status bb_slice(const mw_call *c, grpc_byte_buffer *bb, grpc_slice *out,
                          char *msg, size_t msglen) {
  size_t max = c->w->max_receive_bytes;
  if (!c->limit || !c->limit->max_recv || (max && c->limit->max_recv >= max))
    return bb_slice_any(c, bb, max, out, msg, msglen);
  max = c->limit->max_recv;
  mw_status st = bb_slice_any(c, bb, max, out, msg, msglen);
  if (st != MW_STATUS_OK || GRPC_SLICE_LENGTH(*out) <= max) return st;
  snprintf(msg, msglen, "request message too large (%zu bytes, limit %zu: "
                        "methods.%s.max_receive_bytes)",
           (size_t)GRPC_SLICE_LENGTH(*out), max, c->limit->path);
  recv_done(c->w, *out);
  *out = grpc_empty_slice();
  return MW_STATUS_RESOURCE_EXHAUSTED;
}

static double deadline_seconds(gpr_timespec d) {
  if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0) return 0;
  gpr_timespec r = gpr_convert_clock_type(d, GPR_CLOCK_REALTIME);
  /* Into the runtime's clock, which a test may have moved ahead. */
  return (double)r.tv_sec + (double)r.tv_nsec * 1e-9 + mw_clock_skew();
}

static void reject(mw_call *c, mw_status code, const char *msg) {
  mw_call_finish(c, code, msg);
  pump(c);
  maybe_free(c);
}

/* Whether the call is over a limit (limits.max_inflight_calls, the
 * method's max_concurrent): it is counted first, and a call over a limit
 * keeps being counted until it is freed, like any other, so the counts stay
 * exact. Costs nothing when no limit is set. */
static int shed(mw_call *c, const char *path, size_t path_len, char *msg, size_t len) {
  mw_counters *k = c->w->counters;
  int over = atomic_load_explicit(&k->over_memory, memory_order_relaxed);
  if (over) {
    snprintf(msg, len, "the server is over its memory limit: %d MiB in use "
                       "(limits.max_rss_mb)", over);
    return 1;
  }
  if (k->max_inflight > 0) {
    c->counted = 1;
    long now = atomic_fetch_add(&k->inflight, 1) + 1;
    if (now > k->max_inflight) {
      snprintf(msg, len, "the server is overloaded: %ld calls in flight "
                         "(limits.max_inflight_calls)", k->max_inflight);
      return 1;
    }
  }
  /* A method's limit and its service's ("pkg.Service", no slash): each
   * counts the call once. */
  for (size_t i = 0; i < k->n_limits; i++) {
    mw_method_limit *l = &k->limits[i];
    size_t pl = strlen(l->path);
    int svc = l->path[0] != '/';
    int match = svc ? path_len > pl + 1 && path[0] == '/' && path[pl + 1] == '/' &&
                          memcmp(path + 1, l->path, pl) == 0
                    : pl == path_len && memcmp(l->path, path, path_len) == 0;
    mw_method_limit **slot = svc ? &c->service_limit : &c->limit;
    if (!match || *slot) continue;
    *slot = l;
    if (atomic_fetch_add(&l->live, 1) + 1 > l->max && l->max > 0) {
      snprintf(msg, len, "%s is overloaded: %ld calls in flight (methods.%s.max_concurrent)",
               l->path, l->max, l->path);
      return 1;
    }
  }
  return 0;
}

/* The loopback's metadata (core/mw_loopback.h) is removed from every
 * call, whoever sent it, so that no handler sees it; the protocol and the
 * peer it names are believed only when its secret matches. */
static void take_loopback_md(mw_call *c) {
  static const size_t klen = sizeof MW_LOOPBACK_KEY - 1;
  size_t out = 0;
  for (size_t i = 0; i < c->md.count; i++) {
    const grpc_metadata *m = &c->md.metadata[i];
    if (GRPC_SLICE_LENGTH(m->key) == klen &&
        memcmp(GRPC_SLICE_START_PTR(m->key), MW_LOOPBACK_KEY, klen) == 0) {
      mw_lb_claims cl;
      if (!c->protocol &&
          mw_loopback_verify((const char *)GRPC_SLICE_START_PTR(m->value),
                             GRPC_SLICE_LENGTH(m->value), &cl)) {
        c->protocol = cl.protocol;
        c->lb_peer = strndup(cl.peer, cl.peer_len);
        c->event_ids = cl.event_ids;
        c->lb_tls = cl.tls;
        c->lb_tls_reused = cl.tls_reused;
        if (cl.cert_len) c->lb_cert = strndup(cl.cert, cl.cert_len);
      }
      continue;
    }
    c->md.metadata[out++] = *m;
  }
  c->md.count = out;
}

void mw_call_arrived(mw_worker *w, grpc_call *call, const char *path,
                     size_t path_len, gpr_timespec deadline,
                     grpc_metadata_array *md, grpc_byte_buffer *payload,
                     int has_payload) {
  mw_call *c = call_alloc(w);
  if (!c) {
    if (payload) grpc_byte_buffer_destroy(payload);
    grpc_metadata_array_destroy(md);
    grpc_call_cancel_with_status(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                 "out of memory", NULL);
    grpc_call_unref(call);
    return;
  }
  c->w = w;
  c->call = call;
  c->md = *md;
  grpc_metadata_array_init(md);
  if (mw_loopback_active()) take_loopback_md(c);
  c->deadline = deadline_seconds(deadline);
  /* Under a virtual clock (moonwire test) the runtime's own timer ends the
   * call at its deadline as well: core's runs on the system's clock, which
   * a spec's advance does not move. */
  if (c->deadline != 0 && mw_clock_is_virtual()) {
    double at = c->deadline;
    c->deadline = 0;
    if (mw_call_set_deadline(c, at) != 0) c->deadline = at;
  }
  c->io.start = mw_now();
  c->status_msg = grpc_empty_slice();
  c->recv_tag = (mw_tag){MW_TAG_CALL, OP_RECV, c};
  c->send_tag = (mw_tag){MW_TAG_CALL, OP_SEND, c};
  c->close_tag = (mw_tag){MW_TAG_CALL, OP_CLOSE, c};
  c->final_tag = (mw_tag){MW_TAG_CALL, OP_FINAL, c};
  c->sendrecv_tag = (mw_tag){MW_TAG_CALL, OP_SENDRECV, c};
  w->live_calls++;
  mw_router_ref(w->router);
  c->router = w->router;

  const mw_method *m;
  mw_handler *h;
  char msg[512];
  int routed = mw_router_route(c->router, path, path_len, &m, &h, msg, sizeof msg);
  c->method = m;
  if (m) {
    c->path = m->path; /* the call holds the router that holds the method */
  } else {
    c->path = c->path_buf = strndup(path, path_len);
    if (!c->path_buf) c->path = "?";
  }
  if (w->observe) {
    c->dnext = w->calls;
    if (w->calls) w->calls->dprev = c;
    w->calls = c;
  }
  if (routed != 0) {
    if (w->observe && mw_metrics_current()) mw_grpc_count_unknown();
    if (payload) grpc_byte_buffer_destroy(payload);
    reject(c, MW_STATUS_UNIMPLEMENTED, msg);
    return;
  }
  if (w->observe && mw_metrics_current()) {
    c->ms = mw_grpc_series_for(m->path, m->path_len, (int)m->kind);
    if (c->ms) mw_grpc_started(c->ms);
  }
  if (shed(c, path, path_len, msg, sizeof msg)) {
    if (w->observe && mw_metrics_current()) mw_grpc_count_shed();
    if (payload) grpc_byte_buffer_destroy(payload);
    reject(c, MW_STATUS_RESOURCE_EXHAUSTED, msg);
    return;
  }

  if (m->kind == MW_KIND_CLIENT_STREAMING || m->kind == MW_KIND_BIDI_STREAMING) {
    /* Streaming requests are read on demand; a payload the transport
     * already read (a registration from an older generation) comes first. */
    start_close_watch(c);
  }
  if (has_payload && payload) {
    grpc_slice s;
    char emsg[MW_RECV_ERR];
    mw_status st = bb_slice(c, payload, &s, emsg, sizeof emsg);
    grpc_byte_buffer_destroy(payload);
    if (st != MW_STATUS_OK) {
      reject(c, st, emsg);
      return;
    }
    count_in(c, GRPC_SLICE_LENGTH(s));
    mw_worker *cw = c->w;
    EVENT(c, h->start(h, c, (const char *)GRPC_SLICE_START_PTR(s),
                      GRPC_SLICE_LENGTH(s), 1));
    recv_done(cw, s);
  } else if (has_payload) {
    /* The client half-closed without sending the request. */
    reject(c, MW_STATUS_INVALID_ARGUMENT, "the request message is missing");
    return;
  } else if (m->kind == MW_KIND_UNARY || m->kind == MW_KIND_SERVER_STREAMING) {
    /* Arrived on the generic path (a method a reload added, or one whose
     * kind changed): read the request before the handler runs. */
    c->await_first = 1;
    c->handler = h;
    mw_call_recv(c);
  } else {
    EVENT(c, h->start(h, c, NULL, 0, 0));
  }
  maybe_free(c);
}

/* The request of a call that arrived without it. */
static void on_first(mw_call *c, int ok, grpc_byte_buffer *bb) {
  c->await_first = 0;
  if (!ok) {
    if (bb) grpc_byte_buffer_destroy(bb);
    c->cancelled = 1;
    reject(c, MW_STATUS_CANCELLED, "the call was cancelled");
    return;
  }
  if (!bb) {
    reject(c, MW_STATUS_INVALID_ARGUMENT, "the request message is missing");
    return;
  }
  grpc_slice s;
  char emsg[MW_RECV_ERR];
  mw_status st = bb_slice(c, bb, &s, emsg, sizeof emsg);
  grpc_byte_buffer_destroy(bb);
  if (st != MW_STATUS_OK) {
    reject(c, st, emsg);
    return;
  }
  count_in(c, GRPC_SLICE_LENGTH(s));
  mw_worker *w = c->w;
  EVENT(c, c->handler->start(c->handler, c, (const char *)GRPC_SLICE_START_PTR(s),
                             GRPC_SLICE_LENGTH(s), 1));
  recv_done(w, s);
}

/* The call is over for the client (cancelled, deadline passed, transport
 * gone): tell the backend once, whichever completion noticed it first. */
static void mark_cancelled(mw_call *c) {
  if (c->cancelled) return;
  c->cancelled = 1;
  if (c->ops && !c->done_told) EVENT(c, c->ops->on_cancel(c->self));
}

/* Hands a read's outcome to the backend (if one is attached: a call
 * rejected before its handler started has none). */
static void deliver(mw_call *c, int ok, const char *data, size_t len, int has_msg) {
  if (c->ops && !c->done_told) EVENT(c, c->ops->on_message(c->self, ok, data, len, has_msg));
  else pump(c);
}

static void on_recv(mw_call *c, int ok) {
  c->recv_started = 0;
  grpc_byte_buffer *bb = c->recv_buf;
  c->recv_buf = NULL;
  if (c->await_first) {
    on_first(c, ok, bb);
    return;
  }
  if (!ok) {
    if (bb) grpc_byte_buffer_destroy(bb);
    mark_cancelled(c);
    deliver(c, 0, NULL, 0, 0);
    return;
  }
  if (!bb) {
    /* gRPC core ends a pending read with no message both when the client
     * half-closes and when the stream is reset (a cancel, the deadline, a
     * closed connection), and queues the RECV_CLOSE_ON_SERVER completion
     * that says which only after it, from whichever thread read the reset:
     * a thread descheduled between the two made any wait for it too short
     * now and then. Whether the read failed is set before the read's own
     * completion is queued, so it tells them apart at once. */
    if (grpc_call_failed_before_recv_message(c->call)) mark_cancelled(c);
    deliver(c, !c->cancelled, NULL, 0, 0);
    return;
  }
  grpc_slice s;
  char emsg[MW_RECV_ERR];
  mw_status st = bb_slice(c, bb, &s, emsg, sizeof emsg);
  grpc_byte_buffer_destroy(bb);
  if (st != MW_STATUS_OK) {
    /* A handler is running: the call ends with this status for the client,
     * and the handler's read fails as on a cancellation. */
    grpc_call_cancel_with_status(c->call, (grpc_status_code)st, emsg, NULL);
    mark_cancelled(c);
    deliver(c, 0, NULL, 0, 0);
    return;
  }
  count_in(c, GRPC_SLICE_LENGTH(s));
  mw_worker *w = c->w;
  deliver(c, 1, (const char *)GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), 1);
  recv_done(w, s);
}

static void on_send(mw_call *c, int ok) {
  grpc_byte_buffer_destroy(c->sending);
  c->sending = NULL;
  q_bytes_add(c, -(long)c->sending_bytes);
  c->sending_bytes = 0;
  if (!ok) {
    /* The stream is gone. */
    start_close_watch(c);
    mark_cancelled(c);
  }
  if (c->want_writable && queue_low(c)) {
    c->want_writable = 0;
    if (c->ops && !c->done_told) EVENT(c, c->ops->on_writable(c->self));
    else pump(c);
  } else {
    pump(c);
  }
}

static void on_close(mw_call *c) {
  c->close_done = 1;
  if (c->close_cancelled) mark_cancelled(c);
}

void mw_call_on_batch(mw_tag *tag, int ok) {
  mw_call *c = tag->owner;
  c->inflight--;
  switch (tag->op) {
  case OP_RECV: on_recv(c, ok); break;
  case OP_SEND: on_send(c, ok); break;
  case OP_SENDRECV:
    on_send(c, ok);
    on_recv(c, ok);
    break;
  case OP_CLOSE: on_close(c); break;
  case OP_FINAL:
    c->final_done = 1;
    if (c->close_cancelled) c->cancelled = 1;
    break;
  }
  maybe_free(c);
}
