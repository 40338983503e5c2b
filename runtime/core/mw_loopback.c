/* The loopback (core/mw_loopback.h): the secret of the internal metadata,
 * and calls on a channel to the internal listener whose completions a pump
 * thread hands to the driving thread through a queue and an eventfd. */
#include "core/mw_loopback.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "base/mw_status.h"

/* --- the secret --------------------------------------------------------------- */

#define SECRET_HEX 64

static char secret[SECRET_HEX + 1];
static _Atomic int secret_ready;

int mw_loopback_secret_init(void) {
  if (atomic_load(&secret_ready)) return 0;
  unsigned char raw[SECRET_HEX / 2];
  size_t got = 0;
  while (got < sizeof raw) {
    ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < sizeof raw; i++) {
    secret[2 * i] = hex[raw[i] >> 4];
    secret[2 * i + 1] = hex[raw[i] & 15];
  }
  secret[SECRET_HEX] = '\0';
  atomic_store(&secret_ready, 1);
  return 0;
}

int mw_loopback_active(void) { return atomic_load_explicit(&secret_ready, memory_order_relaxed); }
const char *mw_loopback_secret(void) { return secret; }

int mw_loopback_verify(const char *v, size_t vl, mw_lb_claims *out) {
  memset(out, 0, sizeof *out);
  if (!mw_loopback_active() || vl < SECRET_HEX + 2 || v[SECRET_HEX] != ';') return 0;
  /* Constant time over the secret: a caller learns nothing from timing. */
  unsigned diff = 0;
  for (size_t i = 0; i < SECRET_HEX; i++) diff |= (unsigned char)(v[i] ^ secret[i]);
  if (diff != 0) return 0;
  const char *p = v + SECRET_HEX + 1, *end = v + vl;
  const char *semi = memchr(p, ';', (size_t)(end - p));
  if (!semi) return 0;
  static const char *const known[] = {"grpc-web", "grpc-web-text", "connect", "rest",
                                       "websocket", NULL};
  for (size_t i = 0; known[i]; i++)
    if (strlen(known[i]) == (size_t)(semi - p) && memcmp(known[i], p, (size_t)(semi - p)) == 0)
      out->protocol = known[i];
  if (!out->protocol) return 0;
  out->peer = semi + 1;
  const char *pe = memchr(out->peer, ';', (size_t)(end - out->peer));
  out->peer_len = (size_t)((pe ? pe : end) - out->peer);
  if (!pe) return 1;
  const char *f = pe + 1, *fe = memchr(f, ';', (size_t)(end - f));
  if (!fe) fe = end;
  for (; f < fe; f++) {
    if (*f == 'e') out->event_ids = 1;
    else if (*f == 't') out->tls = 1;
    else if (*f == 'r') out->tls_reused = 1;
  }
  if (fe < end) {
    out->cert = fe + 1;
    out->cert_len = (size_t)(end - fe - 1);
  }
  return 1;
}

/* --- the client side ------------------------------------------------------- */

enum { OP_UNARY, OP_SEND, OP_RECV, OP_STATUS };

/* A batch's tag, and its completion's place in the queue: each kind of
 * batch has at most one in flight per call (sends go one after another),
 * so the pump links the tag itself and allocates nothing. */
typedef struct lb_tag {
  mw_lb_call *c;
  int op;
  int ok;               /* set by the pump */
  struct lb_tag *next;  /* in the queue, under the lock */
} lb_tag;

struct mw_loopback {
  grpc_channel *ch;
  grpc_completion_queue *cq;
  pthread_t pump;
  int pump_started;
  int efd;
  pthread_mutex_t lock;
  lb_tag *head, *tail;   /* completions waiting for mw_loopback_run */
  size_t live;           /* call records alive (driving thread only) */
};

struct mw_lb_call {
  mw_loopback *lb;
  grpc_call *call;
  const mw_lb_ops *ops;
  void *self;
  int unary;
  int inflight;  /* batches started, not completed */
  int released;
  int in_event;  /* inside one of its events: freeing waits */
  lb_tag t_unary, t_send, t_recv, t_status;
  /* request */
  grpc_metadata *md;
  size_t md_n;
  grpc_byte_buffer **msgs;
  size_t n_msgs, next_msg;
  int close_sent;
  /* stream_requests: messages one at a time through mw_lb_call_send */
  int stream_req;
  grpc_byte_buffer *out_msg; /* the message in flight */
  int close_wanted;          /* the half-close waits for out_msg */
  /* response */
  grpc_metadata_array headers, trailers;
  int headers_read;
  grpc_byte_buffer *recv_buf;
  int reading, ended;
  grpc_slice reply;
  int has_reply;
  grpc_status_code code;
  grpc_slice details;
  int status_done, status_told;
};

static void *pump_main(void *arg) {
  mw_loopback *lb = arg;
  for (;;) {
    grpc_event ev =
        grpc_completion_queue_next(lb->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    lb_tag *e = ev.tag;
    e->ok = ev.success;
    e->next = NULL;
    pthread_mutex_lock(&lb->lock);
    int was_empty = lb->head == NULL;
    if (lb->tail) lb->tail->next = e;
    else lb->head = e;
    lb->tail = e;
    pthread_mutex_unlock(&lb->lock);
    if (was_empty) {
      uint64_t one = 1;
      ssize_t w = write(lb->efd, &one, sizeof one);
      (void)w; /* the counter is only a doorbell */
    }
  }
  return NULL;
}

mw_loopback *mw_loopback_open(const char *target, char *err, size_t errlen) {
  mw_loopback *lb = calloc(1, sizeof *lb);
  if (!lb) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  grpc_init();
  lb->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  pthread_mutex_init(&lb->lock, NULL);
  grpc_arg args[5];
  size_t n = 0;
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = (char *)GRPC_ARG_ENABLE_HTTP_PROXY;
  args[n++].value.integer = 0;
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = (char *)GRPC_ARG_ENABLE_RETRIES;
  args[n++].value.integer = 0;
  /* The server's limits apply on its side; this side takes what it sends. */
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[n++].value.integer = -1;
  args[n].type = GRPC_ARG_STRING;
  args[n].key = (char *)GRPC_ARG_PRIMARY_USER_AGENT_STRING;
  args[n++].value.string = (char *)"moonwire-http";
  /* Identity only (grpc-accept-encoding: identity): the HTTP side compresses
   * for its own client, so the server compressing here too would cost a
   * deflate and an inflate per message for nothing. */
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = (char *)GRPC_COMPRESSION_CHANNEL_ENABLED_ALGORITHMS_BITSET;
  args[n++].value.integer = 1 << GRPC_COMPRESS_NONE;
  grpc_channel_args ca = {n, args};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  lb->ch = grpc_channel_create(target, creds, &ca);
  grpc_channel_credentials_release(creds);
  lb->cq = grpc_completion_queue_create_for_next(NULL);
  if (lb->efd < 0 || !lb->ch || !lb->cq ||
      pthread_create(&lb->pump, NULL, pump_main, lb) != 0) {
    snprintf(err, errlen, "cannot open the loopback channel to %s", target);
    mw_loopback_close(lb, 0);
    return NULL;
  }
  lb->pump_started = 1;
  return lb;
}

int mw_loopback_fd(const mw_loopback *lb) { return lb->efd; }
size_t mw_loopback_live(const mw_loopback *lb) { return lb->live; }

static void call_free(mw_lb_call *c) {
  for (size_t i = 0; i < c->md_n; i++) {
    grpc_slice_unref(c->md[i].key);
    grpc_slice_unref(c->md[i].value);
  }
  free(c->md);
  for (size_t i = 0; i < c->n_msgs; i++)
    if (c->msgs[i]) grpc_byte_buffer_destroy(c->msgs[i]);
  free(c->msgs);
  if (c->out_msg) grpc_byte_buffer_destroy(c->out_msg);
  grpc_metadata_array_destroy(&c->headers);
  grpc_metadata_array_destroy(&c->trailers);
  if (c->recv_buf) grpc_byte_buffer_destroy(c->recv_buf);
  grpc_slice_unref(c->reply);
  grpc_slice_unref(c->details);
  if (c->call) grpc_call_unref(c->call);
  c->lb->live--;
  free(c);
}

static void maybe_free(mw_lb_call *c) {
  if (c->released && c->inflight == 0 && !c->in_event) call_free(c);
}

static grpc_slice flatten(grpc_byte_buffer *bb) {
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, bb)) return grpc_empty_slice();
  grpc_slice s = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  return s;
}

static int start_batch(mw_lb_call *c, grpc_op *ops, size_t n, lb_tag *t) {
  c->inflight++;
  if (grpc_call_start_batch(c->call, ops, n, t, NULL) != GRPC_CALL_OK) {
    c->inflight--;
    return -1;
  }
  return 0;
}

/* The next request message (with the metadata first, the close after the
 * last), one batch at a time. */
static void send_next(mw_lb_call *c) {
  grpc_op ops[3];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (c->next_msg == 0 && !c->close_sent) {
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = c->md_n;
    ops[n].data.send_initial_metadata.metadata = c->md;
    n++;
  }
  if (c->next_msg < c->n_msgs) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = c->msgs[c->next_msg];
    n++;
    c->next_msg++;
  }
  if (c->next_msg == c->n_msgs && !c->close_sent) {
    ops[n].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    n++;
    c->close_sent = 1;
  }
  if (n) start_batch(c, ops, n, &c->t_send);
}

/* The half-close of a stream_requests call (no send in flight). */
static void send_close(mw_lb_call *c) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  c->close_sent = 1;
  start_batch(c, &op, 1, &c->t_send);
}

static void tell_status(mw_lb_call *c) {
  if (c->status_told || !c->status_done) return;
  if (!c->unary && !c->ended) return; /* after the last message was read */
  c->status_told = 1;
  if (!c->released && c->ops->on_status) c->ops->on_status(c->self);
}

static void on_complete(lb_tag *t, int ok) {
  mw_lb_call *c = t->c;
  c->inflight--;
  c->in_event = 1;
  switch (t->op) {
  case OP_UNARY:
    if (c->recv_buf) {
      c->reply = flatten(c->recv_buf);
      c->has_reply = 1;
      grpc_byte_buffer_destroy(c->recv_buf);
      c->recv_buf = NULL;
    }
    c->headers_read = 1;
    c->status_done = 1;
    if (!ok && c->code == GRPC_STATUS_OK) c->code = GRPC_STATUS_INTERNAL;
    tell_status(c);
    break;
  case OP_SEND:
    if (c->stream_req) {
      int was_msg = c->out_msg != NULL;
      if (c->out_msg) grpc_byte_buffer_destroy(c->out_msg);
      c->out_msg = NULL;
      if (ok && c->close_wanted && !c->close_sent && !c->released) send_close(c);
      if (was_msg && !c->released && c->ops->on_sent) c->ops->on_sent(c->self, ok);
      break;
    }
    /* A failed send means the call has ended: its status says why. */
    if (ok && !c->released) send_next(c);
    break;
  case OP_RECV: {
    c->reading = 0;
    c->headers_read = 1;
    grpc_byte_buffer *bb = c->recv_buf;
    c->recv_buf = NULL;
    if (ok && bb) {
      grpc_slice s = flatten(bb);
      grpc_byte_buffer_destroy(bb);
      if (!c->released)
        c->ops->on_message(c->self, (const char *)GRPC_SLICE_START_PTR(s),
                           GRPC_SLICE_LENGTH(s), 1);
      grpc_slice_unref(s);
    } else {
      if (bb) grpc_byte_buffer_destroy(bb);
      c->ended = 1;
      if (!c->released) c->ops->on_message(c->self, NULL, 0, 0);
      tell_status(c);
    }
    break;
  }
  case OP_STATUS:
    c->status_done = 1;
    tell_status(c);
    break;
  }
  c->in_event = 0;
  maybe_free(c);
}

void mw_loopback_run(mw_loopback *lb) {
  uint64_t v;
  ssize_t r = read(lb->efd, &v, sizeof v);
  (void)r; /* EAGAIN: nothing rang; the list says what waits */
  for (;;) {
    pthread_mutex_lock(&lb->lock);
    lb_tag *e = lb->head;
    lb->head = lb->tail = NULL;
    pthread_mutex_unlock(&lb->lock);
    if (!e) return;
    while (e) {
      lb_tag *next = e->next; /* read first: the event may free the call */
      on_complete(e, e->ok);
      e = next;
    }
  }
}

void mw_loopback_close(mw_loopback *lb, long wait_ms) {
  if (!lb) return;
  /* Released calls still have batches in flight: their completions are run
   * here, now that no other thread drives them. */
  for (long waited = 0; lb->live > 0 && waited < wait_ms && lb->pump_started; waited += 10) {
    struct pollfd p = {lb->efd, POLLIN, 0};
    poll(&p, 1, 10);
    mw_loopback_run(lb);
  }
  if (lb->live > 0) return; /* their records point into lb: the process exits */
  if (lb->ch) grpc_channel_destroy(lb->ch);
  if (lb->cq) {
    grpc_completion_queue_shutdown(lb->cq);
    if (lb->pump_started) pthread_join(lb->pump, NULL);
    grpc_completion_queue_destroy(lb->cq);
  }
  mw_loopback_run(lb); /* nothing should wait by now */
  if (lb->efd >= 0) close(lb->efd);
  pthread_mutex_destroy(&lb->lock);
  free(lb);
  grpc_shutdown();
}

static gpr_timespec deadline_of(double at) {
  if (at <= 0) return gpr_inf_future(GPR_CLOCK_REALTIME);
  gpr_timespec t;
  t.clock_type = GPR_CLOCK_REALTIME;
  t.tv_sec = (int64_t)at;
  t.tv_nsec = (int32_t)((at - (double)t.tv_sec) * 1e9);
  return t;
}

mw_lb_call *mw_lb_call_start(mw_loopback *lb, const mw_lb_start *a, char *err,
                             size_t errlen) {
  mw_lb_call *c = calloc(1, sizeof *c);
  if (!c) goto oom;
  c->lb = lb;
  lb->live++;
  c->ops = a->ops;
  c->self = a->self;
  c->unary = a->unary;
  c->reply = grpc_empty_slice();
  c->details = grpc_empty_slice();
  grpc_metadata_array_init(&c->headers);
  grpc_metadata_array_init(&c->trailers);
  c->t_unary = (lb_tag){c, OP_UNARY, 0, NULL};
  c->t_send = (lb_tag){c, OP_SEND, 0, NULL};
  c->t_recv = (lb_tag){c, OP_RECV, 0, NULL};
  c->t_status = (lb_tag){c, OP_STATUS, 0, NULL};
  c->md = calloc(a->md_n ? a->md_n : 1, sizeof *c->md);
  c->msgs = calloc(a->n_msgs ? a->n_msgs : 1, sizeof *c->msgs);
  if (!c->md || !c->msgs) goto oom;
  for (size_t i = 0; i < a->md_n; i++) {
    c->md[i].key = grpc_slice_from_copied_string(a->md_keys[i]);
    c->md[i].value = grpc_slice_from_copied_buffer(a->md_vals[i], a->md_lens[i]);
    c->md_n++;
  }
  for (size_t i = 0; i < a->n_msgs; i++) {
    grpc_slice s = grpc_slice_from_copied_buffer(a->msgs[i], a->msg_lens[i]);
    c->msgs[i] = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    c->n_msgs++;
  }
  grpc_slice method = grpc_slice_from_copied_buffer(a->path, a->path_len);
  c->call = grpc_channel_create_call(lb->ch, NULL, GRPC_PROPAGATE_DEFAULTS, lb->cq, method,
                                     NULL, deadline_of(a->deadline), NULL);
  grpc_slice_unref(method);
  if (!c->call) goto oom;

  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  if (a->unary) {
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->md_n;
    ops[0].data.send_initial_metadata.metadata = c->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->msgs[0];
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->headers;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &c->recv_buf;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailers;
    ops[5].data.recv_status_on_client.status = &c->code;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    c->next_msg = 1;
    c->close_sent = 1;
    if (a->n_msgs != 1 || start_batch(c, ops, 6, &c->t_unary) != 0) goto failed;
    return c;
  }
  ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[0].data.recv_status_on_client.trailing_metadata = &c->trailers;
  ops[0].data.recv_status_on_client.status = &c->code;
  ops[0].data.recv_status_on_client.status_details = &c->details;
  if (a->stream_requests) {
    /* The metadata rides with the status batch: no send batch is held by
     * it, so the first message can follow at once. */
    c->stream_req = 1;
    ops[1].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].data.send_initial_metadata.count = c->md_n;
    ops[1].data.send_initial_metadata.metadata = c->md;
    if (a->n_msgs != 0 || start_batch(c, ops, 2, &c->t_status) != 0) goto failed;
    return c;
  }
  if (start_batch(c, ops, 1, &c->t_status) != 0) goto failed;
  send_next(c);
  return c;
oom:
  snprintf(err, errlen, "out of memory");
  if (c) {
    c->released = 1;
    maybe_free(c);
  }
  return NULL;
failed:
  snprintf(err, errlen, "the loopback call could not start");
  c->released = 1;
  if (c->inflight) grpc_call_cancel(c->call, NULL);
  maybe_free(c);
  return NULL;
}

int mw_lb_call_recv(mw_lb_call *c) {
  if (c->unary || c->reading || c->ended || c->released) return -1;
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!c->headers_read) {
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->headers;
    n++;
  }
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n].data.recv_message.recv_message = &c->recv_buf;
  n++;
  if (start_batch(c, ops, n, &c->t_recv) != 0) return -1;
  c->reading = 1;
  return 0;
}

int mw_lb_call_send(mw_lb_call *c, const char *data, size_t len) {
  if (!c->stream_req || c->out_msg || c->close_sent || c->close_wanted || c->released ||
      c->status_done)
    return -1;
  grpc_slice s = grpc_slice_from_copied_buffer(data, len);
  c->out_msg = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_MESSAGE;
  op.data.send_message.send_message = c->out_msg;
  if (start_batch(c, &op, 1, &c->t_send) != 0) {
    grpc_byte_buffer_destroy(c->out_msg);
    c->out_msg = NULL;
    return -1;
  }
  return 0;
}

int mw_lb_call_close_send(mw_lb_call *c) {
  if (!c->stream_req || c->close_sent || c->close_wanted || c->released) return -1;
  if (c->out_msg) c->close_wanted = 1;
  else send_close(c);
  return 0;
}

void mw_lb_call_release(mw_lb_call *c) {
  if (!c || c->released) return;
  c->released = 1;
  if (!c->status_done && c->call) grpc_call_cancel(c->call, NULL);
  maybe_free(c);
}

int mw_lb_call_code(const mw_lb_call *c) { return (int)c->code; }
const char *mw_lb_call_message(const mw_lb_call *c, size_t *len) {
  *len = GRPC_SLICE_LENGTH(c->details);
  return (const char *)GRPC_SLICE_START_PTR(c->details);
}
int mw_lb_call_response(const mw_lb_call *c, const char **data, size_t *len) {
  if (!c->has_reply) return 0;
  *data = (const char *)GRPC_SLICE_START_PTR(c->reply);
  *len = GRPC_SLICE_LENGTH(c->reply);
  return 1;
}
size_t mw_lb_call_md_count(const mw_lb_call *c, int trailers) {
  return trailers ? c->trailers.count : c->headers_read ? c->headers.count : 0;
}
void mw_lb_call_md_at(const mw_lb_call *c, int trailers, size_t i, const char **k, size_t *kl,
                      const char **v, size_t *vl) {
  const grpc_metadata *m = &(trailers ? &c->trailers : &c->headers)->metadata[i];
  *k = (const char *)GRPC_SLICE_START_PTR(m->key);
  *kl = GRPC_SLICE_LENGTH(m->key);
  *v = (const char *)GRPC_SLICE_START_PTR(m->value);
  *vl = GRPC_SLICE_LENGTH(m->value);
}
