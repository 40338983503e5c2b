/* Outbound calls on gRPC core (core/mw_client.h). A call is one grpc_call
 * on a channel the worker caches; its batches complete on the worker's
 * queue as MW_TAG_CLIENT tags. The record lives until the caller released
 * it and no batch is in flight, so a completion never finds it gone. */
#include "core/mw_client.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "base/mw_status.h"
#include "base/mw_timer.h"
#include "core/mw_compress.h"
#include "core/mw_core_internal.h"
#include "core/mw_metadata.h"

/* --- policy ----------------------------------------------------------------- */

static struct {
  char **allow;
  size_t n_allow;
  size_t max_receive_bytes, max_metadata_bytes;
  int keepalive_ms, connect_timeout_ms, max_backoff_ms, max_channels;
  int configured;
} policy = {NULL, 0, 4u << 20, 16384, 0, 20000, 10000, 64, 0};

static void free_allow(void) {
  for (size_t i = 0; i < policy.n_allow; i++) free(policy.allow[i]);
  free(policy.allow);
  policy.allow = NULL;
  policy.n_allow = 0;
}

int mw_client_configure(const mw_client_policy *p) {
  free_allow();
  if (p) {
    if (p->n_allow) {
      policy.allow = calloc(p->n_allow, sizeof *policy.allow);
      if (!policy.allow) return -1;
      for (size_t i = 0; i < p->n_allow; i++) {
        policy.allow[i] = strdup(p->allow[i]);
        if (!policy.allow[i]) {
          policy.n_allow = i;
          free_allow();
          return -1;
        }
      }
      policy.n_allow = p->n_allow;
    }
    if (p->max_receive_bytes) policy.max_receive_bytes = p->max_receive_bytes;
    if (p->max_metadata_bytes) policy.max_metadata_bytes = p->max_metadata_bytes;
    policy.keepalive_ms = p->keepalive_ms;
    if (p->connect_timeout_ms) policy.connect_timeout_ms = p->connect_timeout_ms;
    if (p->max_backoff_ms) policy.max_backoff_ms = p->max_backoff_ms;
    if (p->max_channels) policy.max_channels = p->max_channels;
  }
  if (!policy.configured) grpc_init();
  policy.configured = 1;
  return 0;
}

void mw_client_shutdown(void) {
  free_allow();
  if (policy.configured) grpc_shutdown();
  policy.configured = 0;
}

/* "host:port", "[v6]:port" or "unix:path"; 1 when the form is one of them. */
static int target_form(const char *t, const char **host_end) {
  if (strncmp(t, "unix:", 5) == 0) {
    *host_end = NULL;
    return t[5] != '\0';
  }
  const char *colon;
  if (t[0] == '[') {
    const char *close = strchr(t, ']');
    if (!close || close[1] != ':') return 0;
    colon = close + 1;
  } else {
    colon = strrchr(t, ':');
    if (!colon || colon == t || memchr(t, ':', (size_t)(colon - t))) return 0;
    if (strchr(t, '/')) return 0;
  }
  const char *port = colon + 1;
  if (!*port || strlen(port) > 5) return 0;
  for (const char *q = port; *q; q++)
    if (*q < '0' || *q > '9') return 0;
  *host_end = colon;
  return 1;
}

int mw_client_allowed(const char *target, char *err, size_t errlen) {
  const char *host_end = NULL;
  if (!target_form(target, &host_end)) {
    snprintf(err, errlen,
             "'%s' is not a target (expected HOST:PORT, [IPv6]:PORT or unix:PATH)", target);
    return 0;
  }
  for (size_t i = 0; i < policy.n_allow; i++) {
    const char *p = policy.allow[i];
    if (strcmp(p, "*") == 0 || strcmp(p, target) == 0) return 1;
    size_t pl = strlen(p);
    if (host_end && pl >= 2 && strcmp(p + pl - 2, ":*") == 0 &&
        (size_t)(host_end - target) == pl - 2 && memcmp(p, target, pl - 2) == 0)
      return 1;
  }
  snprintf(err, errlen,
           "target '%s' is not in client.allow (the config's list of what outbound "
           "calls may reach)",
           target);
  return 0;
}

/* --- channels --------------------------------------------------------------- */

struct mw_channel {
  grpc_channel *ch;
  char *key;          /* the options, joined: equal keys share the channel */
  mw_channel *next;   /* the thread's cache, most recently used first */
};

static _Thread_local mw_channel *tl_channels;
static _Thread_local int tl_n_channels;

/* The options as one string; NULL when out of memory. */
static char *channel_key(const mw_channel_opts *o) {
  const char *parts[] = {o->target, o->tls ? "tls" : "plain", o->ca_pem, o->cert_pem,
                         o->key_pem, o->server_name};
  size_t len = 0;
  for (size_t i = 0; i < 6; i++) len += (parts[i] ? strlen(parts[i]) : 0) + 1;
  char *k = malloc(len + 1), *p = k;
  if (!k) return NULL;
  for (size_t i = 0; i < 6; i++) {
    size_t l = parts[i] ? strlen(parts[i]) : 0;
    memcpy(p, parts[i] ? parts[i] : "", l);
    p += l;
    *p++ = '\x1f';
  }
  *p = '\0';
  return k;
}

static void add_int(grpc_arg *args, size_t *n, const char *key, int v) {
  args[*n].type = GRPC_ARG_INTEGER;
  args[*n].key = (char *)key;
  args[*n].value.integer = v;
  (*n)++;
}

static char redirect[128]; /* mw_client_redirect's target; "" when off */

void mw_client_redirect(const char *target) {
  snprintf(redirect, sizeof redirect, "%s", target ? target : "");
}

static grpc_channel *channel_make(const mw_channel_opts *o, char *err, size_t errlen) {
  mw_channel_opts redirected;
  if (redirect[0]) {
    redirected = (mw_channel_opts){.target = redirect};
    o = &redirected;
  }
  grpc_arg args[20];
  size_t n = 0;
  /* Only the allow-listed target is reached: no proxy from the environment,
   * no service config from DNS, no retries of core's own (ours are in Lua
   * and count against the deadline and the retry budget). */
  add_int(args, &n, GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  add_int(args, &n, GRPC_ARG_SERVICE_CONFIG_DISABLE_RESOLUTION, 1);
  add_int(args, &n, GRPC_ARG_ENABLE_RETRIES, 0);
  /* Each worker its own connection: channels with equal arguments would
   * otherwise share core's global subchannel, one connection for all. */
  add_int(args, &n, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  add_int(args, &n, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)policy.max_receive_bytes);
  add_int(args, &n, GRPC_ARG_MAX_METADATA_SIZE, (int)policy.max_metadata_bytes);
  /* Compressed replies are read as they came (marked) and inflated here
   * within the limit: core 1.51 would inflate first and check after. */
  add_int(args, &n, GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, 0);
  /* Core reads this as the least time one connection attempt gets. */
  add_int(args, &n, GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, policy.connect_timeout_ms);
  add_int(args, &n, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  add_int(args, &n, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, policy.max_backoff_ms);
  add_int(args, &n, GRPC_ARG_ENABLE_CHANNELZ, 0);
  add_int(args, &n, GRPC_ARG_MAX_CHANNEL_TRACE_EVENT_MEMORY_PER_NODE, 0);
  /* Keepalive only while calls run, never more often than servers' default
   * minimum (5 minutes) unless asked: core's servers answer faster pings
   * with GOAWAY too_many_pings. */
  if (policy.keepalive_ms > 0) {
    add_int(args, &n, GRPC_ARG_KEEPALIVE_TIME_MS, policy.keepalive_ms);
    add_int(args, &n, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    add_int(args, &n, GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 2);
  } else {
    add_int(args, &n, GRPC_ARG_KEEPALIVE_TIME_MS, INT32_MAX);
  }
  if (o->server_name) {
    args[n].type = GRPC_ARG_STRING;
    args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[n].value.string = (char *)o->server_name;
    n++;
  }
  args[n].type = GRPC_ARG_STRING;
  args[n].key = (char *)GRPC_ARG_PRIMARY_USER_AGENT_STRING;
  args[n].value.string = (char *)"moonwire";
  n++;
  grpc_channel_args cargs = {n, args};
  grpc_channel_credentials *creds;
  if (o->tls) {
    grpc_ssl_pem_key_cert_pair pair = {o->key_pem, o->cert_pem};
    if ((o->cert_pem != NULL) != (o->key_pem != NULL)) {
      snprintf(err, errlen, "a client certificate needs its key, and a key its certificate");
      return NULL;
    }
    creds = grpc_ssl_credentials_create(o->ca_pem, o->cert_pem ? &pair : NULL, NULL, NULL);
  } else {
    creds = grpc_insecure_credentials_create();
  }
  if (!creds) {
    snprintf(err, errlen, "cannot make the credentials of '%s'", o->target);
    return NULL;
  }
  grpc_channel *ch = grpc_channel_create(o->target, creds, &cargs);
  grpc_channel_credentials_release(creds);
  if (!ch) snprintf(err, errlen, "cannot make a channel to '%s'", o->target);
  return ch;
}

static void channel_free(mw_channel *c) {
  /* Calls still running keep core's channel alive until they end. */
  grpc_channel_destroy(c->ch);
  free(c->key);
  free(c);
}

/* The thread's channel for o, made on first use; moved to the front. */
static mw_channel *channel_get(const mw_channel_opts *o, char *err, size_t errlen) {
  char *key = channel_key(o);
  if (!key) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  mw_channel **pp = &tl_channels, *last_prev = NULL;
  for (mw_channel *c = tl_channels; c; pp = &c->next, c = c->next) {
    if (strcmp(c->key, key) == 0) {
      free(key);
      if (c != tl_channels) { /* to the front */
        *pp = c->next;
        c->next = tl_channels;
        tl_channels = c;
      }
      return c;
    }
    if (c->next && !c->next->next) last_prev = c;
  }
  mw_channel *c = calloc(1, sizeof *c);
  if (!c) {
    free(key);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->key = key;
  c->ch = channel_make(o, err, errlen);
  if (!c->ch) {
    free(key);
    free(c);
    return NULL;
  }
  if (tl_n_channels >= policy.max_channels && tl_channels) {
    /* The least recently used goes: last_prev is the one before the last
     * (or the list holds a single channel). */
    mw_channel *victim;
    if (last_prev) {
      victim = last_prev->next;
      last_prev->next = NULL;
    } else {
      victim = tl_channels;
      tl_channels = NULL;
    }
    channel_free(victim);
    tl_n_channels--;
  }
  c->next = tl_channels;
  tl_channels = c;
  tl_n_channels++;
  return c;
}

void mw_client_thread_exit(void) {
  while (tl_channels) {
    mw_channel *c = tl_channels;
    tl_channels = c->next;
    channel_free(c);
  }
  tl_n_channels = 0;
}

/* --- calls ------------------------------------------------------------------ */

enum { COP_UNARY = 1, COP_START, COP_STATUS, COP_RECV, COP_SEND, COP_CLOSE };

/* Messages queued at most before send asks the caller to wait. */
#define MW_CCALL_QUEUE 16
#define MW_CCALL_QUEUE_BYTES (1u << 20)

struct mw_ccall {
  mw_worker *w;            /* NULL for a blocking call */
  grpc_call *call;
  const mw_ccall_ops *ops;
  void *self;
  int released;            /* the caller is done: no more events */
  int inflight;            /* batches started, not completed */
  int busy;                /* inside an event: freeing waits */
  mw_tag unary_tag, start_tag, status_tag, recv_tag, send_tag, close_tag;
  mw_md_list md;           /* request metadata (owned) */
  grpc_metadata_array headers, trailers;
  grpc_status_code code;
  grpc_slice details;
  int status_done, status_told;
  const char *error_string; /* core's, gpr_malloc'd */
  grpc_byte_buffer *send_buf; /* the unary request, or the message in flight */
  grpc_byte_buffer *recv_buf;
  int recv_pending, recv_ended, got_headers;
  /* The send queue: owned buffers, oldest first. */
  grpc_byte_buffer *q[MW_CCALL_QUEUE];
  size_t q_head, q_len, q_bytes;
  int sending, want_writable, close_asked, close_started;
  /* The unary reply, flattened. */
  char *reply;
  size_t reply_len;
  int has_reply;
  grpc_completion_queue *own_cq; /* a blocking call's queue and channel, */
  grpc_channel *own_channel;      /* with a grpc_init reference of its own */
};

static void blocking_teardown(grpc_completion_queue *cq, grpc_channel *ch) {
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  grpc_channel_destroy(ch);
  grpc_shutdown();
}

static void ccall_free(mw_ccall *c) {
  while (c->q_len) {
    grpc_byte_buffer_destroy(c->q[c->q_head]);
    c->q_head = (c->q_head + 1) % MW_CCALL_QUEUE;
    c->q_len--;
  }
  if (c->send_buf) grpc_byte_buffer_destroy(c->send_buf);
  if (c->recv_buf) grpc_byte_buffer_destroy(c->recv_buf);
  mw_md_list_free(&c->md);
  grpc_metadata_array_destroy(&c->headers);
  grpc_metadata_array_destroy(&c->trailers);
  grpc_slice_unref(c->details);
  gpr_free((void *)c->error_string);
  if (c->call) grpc_call_unref(c->call);
  if (c->own_cq) blocking_teardown(c->own_cq, c->own_channel);
  if (c->w) c->w->client_calls--;
  free(c->reply);
  free(c);
}

static void maybe_free(mw_ccall *c) {
  if (c->released && !c->inflight && !c->busy) ccall_free(c);
}

static void init_tag(mw_tag *t, mw_ccall *c, int op) {
  t->kind = MW_TAG_CLIENT;
  t->op = op;
  t->owner = c;
}

static int start_batch(mw_ccall *c, grpc_op *ops, size_t n, mw_tag *tag) {
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
  if (e != GRPC_CALL_OK) return -1;
  c->inflight++;
  return 0;
}

/* The bytes of a received message, inflated when the server compressed
 * it; 0, or the status that fails the call. */
static mw_status message_bytes(grpc_byte_buffer *bb, grpc_slice *out, char *msg, size_t msglen) {
  if (bb->data.raw.compression != GRPC_COMPRESS_NONE)
    return mw_compress_inflate(bb, policy.max_receive_bytes, out, msg, msglen);
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, bb)) {
    snprintf(msg, msglen, "cannot read the response");
    return MW_STATUS_INTERNAL;
  }
  *out = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  return MW_STATUS_OK;
}

static void tell_status(mw_ccall *c) {
  if (c->status_told || !c->status_done || c->recv_pending) return;
  c->status_told = 1;
  if (!c->released && c->ops && c->ops->on_status) c->ops->on_status(c->self);
}

/* A failure of ours (a reply we cannot read) ends the call with it. */
static void fail_locally(mw_ccall *c, mw_status code, const char *msg) {
  grpc_call_cancel_with_status(c->call, (grpc_status_code)code, msg, NULL);
}

static void pump_send(mw_ccall *c);

static void on_unary(mw_ccall *c, int ok) {
  c->status_done = 1;
  if (ok && c->code == GRPC_STATUS_OK && c->recv_buf) {
    grpc_slice s;
    char msg[128];
    mw_status st = message_bytes(c->recv_buf, &s, msg, sizeof msg);
    if (st == MW_STATUS_OK) {
      size_t len = GRPC_SLICE_LENGTH(s);
      c->reply = malloc(len ? len : 1);
      if (c->reply) {
        memcpy(c->reply, GRPC_SLICE_START_PTR(s), len);
        c->reply_len = len;
        c->has_reply = 1;
      } else {
        c->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        grpc_slice_unref(c->details);
        c->details = grpc_slice_from_static_string("out of memory reading the response");
      }
      grpc_slice_unref(s);
    } else {
      c->code = (grpc_status_code)st;
      grpc_slice_unref(c->details);
      c->details = grpc_slice_from_copied_string(msg);
    }
  } else if (ok && c->code == GRPC_STATUS_OK) {
    /* OK without a message is a protocol error of the server's. */
    c->code = GRPC_STATUS_INTERNAL;
    grpc_slice_unref(c->details);
    c->details = grpc_slice_from_static_string("the server sent no response message");
  }
  tell_status(c);
}

static void on_recv(mw_ccall *c, int ok) {
  c->recv_pending = 0;
  grpc_byte_buffer *bb = c->recv_buf;
  c->recv_buf = NULL;
  if (!c->released && c->ops && c->ops->on_message) {
    if (!ok) {
      c->recv_ended = 1;
      c->ops->on_message(c->self, 0, NULL, 0, 0);
    } else if (!bb) {
      c->recv_ended = 1;
      c->ops->on_message(c->self, 1, NULL, 0, 0);
    } else {
      grpc_slice s;
      char msg[128];
      mw_status st = message_bytes(bb, &s, msg, sizeof msg);
      if (st == MW_STATUS_OK) {
        c->ops->on_message(c->self, 1, (const char *)GRPC_SLICE_START_PTR(s),
                           GRPC_SLICE_LENGTH(s), 1);
        grpc_slice_unref(s);
      } else {
        fail_locally(c, st, msg);
        c->recv_ended = 1;
        c->ops->on_message(c->self, 0, NULL, 0, 0);
      }
    }
  }
  if (bb) grpc_byte_buffer_destroy(bb);
  tell_status(c);
}

static void on_send(mw_ccall *c, int ok) {
  c->sending = 0;
  if (c->send_buf) {
    grpc_byte_buffer_destroy(c->send_buf);
    c->send_buf = NULL;
  }
  if (!ok) {
    /* The call is failing: what waits to be sent never will be. */
    while (c->q_len) {
      grpc_byte_buffer_destroy(c->q[c->q_head]);
      c->q_head = (c->q_head + 1) % MW_CCALL_QUEUE;
      c->q_len--;
    }
    c->q_bytes = 0;
  }
  pump_send(c);
  if (c->want_writable && c->q_len < MW_CCALL_QUEUE && c->q_bytes < MW_CCALL_QUEUE_BYTES) {
    c->want_writable = 0;
    if (!c->released && c->ops && c->ops->on_writable) c->ops->on_writable(c->self);
  }
}

void mw_client_on_batch(mw_tag *tag, int ok) {
  mw_ccall *c = tag->owner;
  c->inflight--;
  c->busy++;
  switch (tag->op) {
  case COP_UNARY: on_unary(c, ok); break;
  case COP_START: break;
  case COP_STATUS:
    c->status_done = 1;
    tell_status(c);
    break;
  case COP_RECV: on_recv(c, ok); break;
  case COP_SEND: on_send(c, ok); break;
  case COP_CLOSE: break;
  }
  c->busy--;
  maybe_free(c);
}

static void pump_send(mw_ccall *c) {
  if (c->sending || c->status_done) return;
  grpc_op op;
  memset(&op, 0, sizeof op);
  if (c->q_len) {
    c->send_buf = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % MW_CCALL_QUEUE;
    c->q_len--;
    c->q_bytes -= grpc_byte_buffer_length(c->send_buf);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = c->send_buf;
    if (start_batch(c, &op, 1, &c->send_tag) == 0) {
      c->sending = 1;
    } else { /* the call is over: the message goes nowhere */
      grpc_byte_buffer_destroy(c->send_buf);
      c->send_buf = NULL;
    }
    return;
  }
  if (c->close_asked && !c->close_started) {
    c->close_started = 1;
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    start_batch(c, &op, 1, &c->close_tag);
  }
}

static gpr_timespec deadline_of(double d) {
  if (d <= 0) return gpr_inf_future(GPR_CLOCK_REALTIME);
  d -= mw_clock_skew(); /* the runtime's clock (base/mw_timer.h) to core's */
  gpr_timespec t;
  t.tv_sec = (int64_t)d;
  t.tv_nsec = (int32_t)((d - (double)t.tv_sec) * 1e9);
  if (t.tv_nsec >= 1000000000) t.tv_nsec = 999999999;
  t.clock_type = GPR_CLOCK_REALTIME;
  return t;
}

static grpc_byte_buffer *bytes_buffer(const char *data, size_t len) {
  grpc_slice s = grpc_slice_from_copied_buffer(data, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

/* Makes the record and the grpc_call on channel ch, queue cq. */
static mw_ccall *ccall_new(grpc_channel *ch, grpc_completion_queue *cq,
                           const mw_ccall_start_args *a, char *err, size_t errlen) {
  mw_ccall *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->ops = a->ops;
  c->self = a->self;
  c->details = grpc_empty_slice();
  grpc_metadata_array_init(&c->headers);
  grpc_metadata_array_init(&c->trailers);
  init_tag(&c->unary_tag, c, COP_UNARY);
  init_tag(&c->start_tag, c, COP_START);
  init_tag(&c->status_tag, c, COP_STATUS);
  init_tag(&c->recv_tag, c, COP_RECV);
  init_tag(&c->send_tag, c, COP_SEND);
  init_tag(&c->close_tag, c, COP_CLOSE);
  for (size_t i = 0; i < a->md_n; i++) {
    size_t kl = strlen(a->md_keys[i]);
    int rc = mw_md_list_add(&c->md, a->md_keys[i], kl, a->md_vals[i], a->md_lens[i],
                            policy.max_metadata_bytes, "request metadata", err, errlen);
    /* The attempt count is gRPC's own key (gRFC A6); the rest are the
     * caller's and must pass the checks. */
    if (rc != 0 && strcmp(a->md_keys[i], "grpc-previous-rpc-attempts") == 0)
      rc = mw_md_list_add_reserved(&c->md, a->md_keys[i], kl, a->md_vals[i], a->md_lens[i],
                                   policy.max_metadata_bytes, "request metadata", err,
                                   errlen);
    if (rc != 0) {
      mw_md_list_free(&c->md);
      grpc_metadata_array_destroy(&c->headers);
      grpc_metadata_array_destroy(&c->trailers);
      free(c);
      return NULL;
    }
  }
  grpc_slice method = grpc_slice_from_copied_string(a->path);
  c->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                     deadline_of(a->deadline), NULL);
  grpc_slice_unref(method);
  if (!c->call) {
    snprintf(err, errlen, "cannot start a call to %s", a->path);
    mw_md_list_free(&c->md);
    grpc_metadata_array_destroy(&c->headers);
    grpc_metadata_array_destroy(&c->trailers);
    free(c);
    return NULL;
  }
  return c;
}

/* The ops of a unary call, all in one batch. */
static size_t unary_ops(mw_ccall *c, const mw_ccall_start_args *a, grpc_op *ops) {
  memset(ops, 0, 6 * sizeof *ops);
  c->send_buf = bytes_buffer(a->request, a->request_len);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = c->md.n;
  ops[0].data.send_initial_metadata.metadata = c->md.v;
  ops[0].flags = a->wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = c->send_buf;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->headers;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &c->recv_buf;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &c->trailers;
  ops[5].data.recv_status_on_client.status = &c->code;
  ops[5].data.recv_status_on_client.status_details = &c->details;
  ops[5].data.recv_status_on_client.error_string = &c->error_string;
  c->got_headers = 1;
  return 6;
}

mw_ccall *mw_ccall_start(const mw_ccall_start_args *a, char *err, size_t errlen) {
  mw_worker *w = mw_worker_self();
  if (!w) {
    snprintf(err, errlen, "outbound calls that wait run in handlers only");
    return NULL;
  }
  if (!mw_client_allowed(a->channel->target, err, errlen)) return NULL;
  mw_channel *ch = channel_get(a->channel, err, errlen);
  if (!ch) return NULL;
  mw_ccall *c = ccall_new(ch->ch, w->cq, a, err, errlen);
  if (!c) return NULL;
  c->w = w;
  w->client_calls++;
  grpc_op ops[6];
  if (a->unary) {
    size_t n = unary_ops(c, a, ops);
    if (start_batch(c, ops, n, &c->unary_tag) != 0) goto failed;
    return c;
  }
  memset(ops, 0, 2 * sizeof *ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = c->md.n;
  ops[0].data.send_initial_metadata.metadata = c->md.v;
  ops[0].flags = a->wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0;
  if (start_batch(c, ops, 1, &c->start_tag) != 0) goto failed;
  ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[0].flags = 0;
  ops[0].data.recv_status_on_client.trailing_metadata = &c->trailers;
  ops[0].data.recv_status_on_client.status = &c->code;
  ops[0].data.recv_status_on_client.status_details = &c->details;
  ops[0].data.recv_status_on_client.error_string = &c->error_string;
  if (start_batch(c, ops, 1, &c->status_tag) != 0) {
    /* The first batch is in flight: the record goes when it completes. */
    grpc_call_cancel(c->call, NULL);
    c->released = 1;
    snprintf(err, errlen, "cannot start a call to %s", a->path);
    return NULL;
  }
  return c;
failed:
  snprintf(err, errlen, "cannot start a call to %s", a->path);
  ccall_free(c);
  return NULL;
}

int mw_ccall_send(mw_ccall *c, const char *data, size_t len) {
  if (c->status_done || c->close_asked || c->q_len >= MW_CCALL_QUEUE) return -1;
  grpc_byte_buffer *bb = bytes_buffer(data, len);
  c->q[(c->q_head + c->q_len) % MW_CCALL_QUEUE] = bb;
  c->q_len++;
  c->q_bytes += len;
  pump_send(c);
  if (c->q_len >= MW_CCALL_QUEUE || c->q_bytes >= MW_CCALL_QUEUE_BYTES) {
    c->want_writable = 1;
    return 0;
  }
  return 1;
}

void mw_ccall_close_send(mw_ccall *c) {
  if (c->close_asked) return;
  c->close_asked = 1;
  pump_send(c);
}

int mw_ccall_recv(mw_ccall *c) {
  if (c->recv_pending || c->recv_ended || c->status_told) return -1;
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!c->got_headers) {
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->headers;
    n++;
    c->got_headers = 1;
  }
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n].data.recv_message.recv_message = &c->recv_buf;
  n++;
  if (start_batch(c, ops, n, &c->recv_tag) != 0) return -1;
  c->recv_pending = 1;
  return 0;
}

void mw_ccall_cancel(mw_ccall *c) {
  if (c->call && !c->status_done) grpc_call_cancel(c->call, NULL);
}

void mw_ccall_release(mw_ccall *c) {
  if (!c) return;
  if (!c->status_done && c->call) grpc_call_cancel(c->call, NULL);
  c->released = 1;
  maybe_free(c);
}

int mw_ccall_code(const mw_ccall *c) { return c->status_done ? (int)c->code : -1; }

const char *mw_ccall_message(const mw_ccall *c, size_t *len) {
  *len = GRPC_SLICE_LENGTH(c->details);
  return (const char *)GRPC_SLICE_START_PTR(c->details);
}

int mw_ccall_response(mw_ccall *c, const char **data, size_t *len) {
  if (!c->has_reply) return 0;
  *data = c->reply;
  *len = c->reply_len;
  return 1;
}

size_t mw_ccall_header_count(const mw_ccall *c) { return c->headers.count; }

static void md_at(const grpc_metadata_array *a, size_t i, const char **k, size_t *kl,
                  const char **v, size_t *vl) {
  const grpc_metadata *m = &a->metadata[i];
  *k = (const char *)GRPC_SLICE_START_PTR(m->key);
  *kl = GRPC_SLICE_LENGTH(m->key);
  *v = (const char *)GRPC_SLICE_START_PTR(m->value);
  *vl = GRPC_SLICE_LENGTH(m->value);
}

void mw_ccall_header_at(const mw_ccall *c, size_t i, const char **k, size_t *kl,
                        const char **v, size_t *vl) {
  md_at(&c->headers, i, k, kl, v, vl);
}

size_t mw_ccall_trailer_count(const mw_ccall *c) { return c->trailers.count; }

void mw_ccall_trailer_at(const mw_ccall *c, size_t i, const char **k, size_t *kl,
                         const char **v, size_t *vl) {
  md_at(&c->trailers, i, k, kl, v, vl);
}

mw_ccall *mw_ccall_unary_blocking(const mw_ccall_start_args *a, char *err, size_t errlen) {
  if (a->deadline <= 0) {
    snprintf(err, errlen, "an outbound call outside a handler needs a timeout");
    return NULL;
  }
  if (!mw_client_allowed(a->channel->target, err, errlen)) return NULL;
  grpc_init();
  grpc_channel *ch = channel_make(a->channel, err, errlen);
  if (!ch) {
    grpc_shutdown();
    return NULL;
  }
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  mw_ccall *c = ccall_new(ch, cq, a, err, errlen);
  if (c) {
    grpc_op ops[6];
    size_t n = unary_ops(c, a, ops);
    if (start_batch(c, ops, n, &c->unary_tag) == 0) {
      /* The deadline ends the call; the pluck only waits for it. */
      grpc_event ev = grpc_completion_queue_pluck(cq, &c->unary_tag,
                                                  gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
      c->inflight--;
      on_unary(c, ev.type == GRPC_OP_COMPLETE && ev.success);
    } else {
      snprintf(err, errlen, "cannot start a call to %s", a->path);
      ccall_free(c);
      c = NULL;
    }
  }
  if (c) {
    /* The trailers' slices belong to the call: it, its queue, its channel
     * and the gRPC reference stay with the record until release. */
    c->own_cq = cq;
    c->own_channel = ch;
    return c;
  }
  blocking_teardown(cq, ch);
  return NULL;
}
