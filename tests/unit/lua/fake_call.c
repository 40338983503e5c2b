/* The scripted call layer (fake_call.h): core/mw_call.h over plain records,
 * with the ordering rules of core/mw_call.c kept and everything else left
 * to the test. */
#include "fake_call.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_status.h"
#include "core/mw_post.h"

static int g_violations;

int fake_violations(void) { return g_violations; }

/* A breach of the call layer's contract, by the backend or by the test's
 * script: counted (the tests check the count) and printed with the path. */
static void violate(mw_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violate(mw_call *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fake call %s: contract violation: ",
          c && c->method ? c->method->path : "?");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  g_violations++;
  if (c) c->violations++;
}

static void trace(mw_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(mw_call *c, const char *fmt, ...) {
  size_t used = strlen(c->trace);
  if (used + 2 >= sizeof c->trace) return;
  if (used) c->trace[used++] = ' ';
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->trace + used, sizeof c->trace - used, fmt, ap);
  va_end(ap);
}

/* Every entry point from the backend goes through here: in core a dead
 * call is freed memory, so touching it is always a bug. */
static int alive(const mw_call *cc, const char *what) {
  mw_call *c = (mw_call *)cc;
  if (!c->done) return 1;
  violate(c, "%s after on_done", what);
  return 0;
}

/* --- mail to workers: one queue for every worker -------------------------- */

#define FAKE_MAX_MAIL 64
static mw_mail *g_mail[FAKE_MAX_MAIL];
static int g_n_mail;
static int g_workers = 2;

void fake_set_workers(int n) { g_workers = n; }
int fake_mail_pending(void) { return g_n_mail; }
int mw_post_workers(void) { return g_workers; }

int mw_post(int worker, mw_mail *m) {
  if (worker < 0 || worker >= g_workers || g_n_mail == FAKE_MAX_MAIL) return -1;
  g_mail[g_n_mail++] = m;
  return 0;
}

int fake_run_mail(void) {
  int n = g_n_mail;
  mw_mail *batch[FAKE_MAX_MAIL];
  memcpy(batch, g_mail, (size_t)n * sizeof *batch);
  g_n_mail = 0;
  for (int i = 0; i < n; i++) batch[i]->fn(batch[i]);
  return n;
}

/* --- timers: one list for every call, like a worker's timer heap -------- */

#define FAKE_MAX_TIMERS 64
static mw_call_timer *g_timers[FAKE_MAX_TIMERS];
static int g_n_timers;
static uint64_t g_timer_seq;

static int timer_find(const mw_call_timer *t, uint64_t id) {
  for (int i = 0; i < g_n_timers; i++)
    if (g_timers[i] == t && t->entry.seq == id) return i;
  return -1;
}

static void timer_remove_at(int i) {
  memmove(&g_timers[i], &g_timers[i + 1], (size_t)(g_n_timers - i - 1) * sizeof *g_timers);
  g_n_timers--;
}

int fake_timers_pending(void) { return g_n_timers; }

int mw_call_timer_start(mw_call *c, mw_call_timer *t, double secs) {
  mw_call_timer_cancel(t);
  if (!alive(c, "mw_call_timer_start")) return -1;
  if (g_n_timers == FAKE_MAX_TIMERS) return -1; /* as core does out of memory */
  t->call = c;
  t->entry.seq = ++g_timer_seq;
  g_timers[g_n_timers++] = t;
  c->timer_starts++;
  c->last_timer_secs = secs;
  trace(c, "timer+");
  return 0;
}

void mw_call_timer_cancel(mw_call_timer *t) {
  if (!t->entry.seq) return;
  int i = timer_find(t, t->entry.seq);
  if (i >= 0) timer_remove_at(i);
  t->entry.seq = 0;
  mw_call *c = t->call;
  if (!alive(c, "mw_call_timer_cancel")) return;
  c->timer_cancels++;
  trace(c, "timer-");
}

/* --- what a backend reads ------------------------------------------------ */

const mw_method *mw_call_method(const mw_call *c) {
  alive(c, "mw_call_method");
  return c->method;
}
int mw_call_worker_id(const mw_call *c) {
  alive(c, "mw_call_worker_id");
  return c->worker_id;
}
const char *mw_call_peer(mw_call *c) {
  alive(c, "mw_call_peer");
  return c->peer;
}
const char *mw_call_protocol(const mw_call *c) {
  alive((mw_call *)c, "mw_call_protocol");
  return "grpc";
}
int mw_call_event_ids(const mw_call *c) {
  alive((mw_call *)c, "mw_call_event_ids");
  return 0;
}
double mw_call_deadline(const mw_call *c) {
  alive(c, "mw_call_deadline");
  return c->deadline;
}
int mw_call_status(const mw_call *c) {
  alive(c, "mw_call_status");
  return c->finished ? c->finish_code : -1;
}
const mw_call_io *mw_call_io_of(const mw_call *c) {
  alive(c, "mw_call_io_of");
  return &c->io;
}
/* Lowers the deadline only; the timer that would end the call is core's
 * (tested end to end). */
int mw_call_set_deadline(mw_call *c, double at) {
  alive(c, "mw_call_set_deadline");
  if (c->deadline == 0 || at < c->deadline) c->deadline = at;
  return 0;
}
int mw_call_cancelled(const mw_call *c) {
  alive(c, "mw_call_cancelled");
  return c->cancelled;
}
size_t mw_call_metadata_count(const mw_call *c) {
  alive(c, "mw_call_metadata_count");
  return c->n_md;
}
void mw_call_metadata_at(const mw_call *c, size_t i, const char **key, size_t *klen,
                         const char **val, size_t *vlen) {
  alive(c, "mw_call_metadata_at");
  *key = c->md_key[i];
  *klen = strlen(c->md_key[i]);
  *val = c->md_val[i];
  *vlen = strlen(c->md_val[i]);
}
void mw_call_auth_each(mw_call *c,
                       void (*fn)(void *ud, const char *name, const char *value,
                                  size_t len),
                       void *ud) {
  if (!alive(c, "mw_call_auth_each")) return;
  c->auth_walks++;
  for (size_t i = 0; i < c->n_auth; i++)
    fn(ud, c->auth_name[i], c->auth_val[i], strlen(c->auth_val[i]));
}
void mw_call_server_stats(const mw_call *c, mw_server_stats *out) {
  alive(c, "mw_call_server_stats");
  *out = c->stats;
}
int mw_call_reading(const mw_call *c) {
  alive(c, "mw_call_reading");
  return c->reading;
}

/* --- commands -------------------------------------------------------------- */

void mw_call_attach(mw_call *c, const mw_call_ops *ops, void *self) {
  if (!alive(c, "mw_call_attach")) return;
  if (c->attach_calls++) violate(c, "attached twice");
  c->ops = ops;
  c->self = self;
  trace(c, "attach");
}

void mw_call_recv(mw_call *c) {
  if (!alive(c, "mw_call_recv")) return;
  c->recv_calls++;
  trace(c, "recv");
  /* One read at a time, as in core: asking again while one is pending is
   * a no-op there too. */
  if (!c->reads_fail_to_start && !c->finished) c->reading = 1;
}

static int next_room(mw_call *c) {
  if (c->room_next < c->n_room_script) return c->room_script[c->room_next++];
  return c->room_default;
}

static int record_send(mw_call *c, const char *data, size_t len) {
  int room = next_room(c);
  trace(c, room == 1 ? "send" : "send:%d", room);
  if (room < 0) return -1;
  if (c->finished) c->sends_after_finish++;
  if (c->n_sent < FAKE_MAX_SENT) {
    fake_msg *m = &c->sent[c->n_sent];
    m->data = malloc(len ? len : 1);
    if (m->data) memcpy(m->data, data, len);
    m->len = len;
  }
  c->n_sent++;
  if (room == 0) c->want_writable = 1;
  return room;
}

int mw_call_send(mw_call *c, const char *data, size_t len) {
  if (!alive(c, "mw_call_send")) return -1;
  return record_send(c, data, len);
}

int mw_call_send_block(mw_call *c, char *block, size_t len) {
  if (!alive(c, "mw_call_send_block")) {
    free(block);
    return -1;
  }
  int room = record_send(c, block, len);
  free(block); /* the call owns the block in every case */
  return room;
}

static int add_md(mw_call *c, char *buf, size_t cap, int *n, const char *k, size_t kl,
                  const char *v, size_t vl) {
  size_t used = strlen(buf);
  snprintf(buf + used, cap - used, "%.*s=%.*s;", (int)kl, k, (int)vl, v);
  (*n)++;
  return 0;
}

int mw_call_add_header(mw_call *c, const char *k, size_t kl, const char *v, size_t vl,
                       char *err, size_t errlen) {
  if (!alive(c, "mw_call_add_header")) return -1;
  trace(c, "hdr:%.*s", (int)kl, k);
  if (c->headers_sent) { /* core's rule and message */
    snprintf(err, errlen, "headers were already sent with the first message");
    return -1;
  }
  return add_md(c, c->headers, sizeof c->headers, &c->n_headers, k, kl, v, vl);
}

int mw_call_add_trailer(mw_call *c, const char *k, size_t kl, const char *v, size_t vl,
                        char *err, size_t errlen) {
  if (!alive(c, "mw_call_add_trailer")) return -1;
  trace(c, "trl:%.*s", (int)kl, k);
  if (c->finished) { /* core's rule and message */
    snprintf(err, errlen, "the call has already finished");
    return -1;
  }
  return add_md(c, c->trailers, sizeof c->trailers, &c->n_trailers, k, kl, v, vl);
}

/* The recorded "k=v;" entries, parsed back (keys and values without '='
 * or ';', as the tests write them). */
static const char *md_entry(const mw_call *c, int trailers, size_t i, size_t *len) {
  const char *p = trailers ? c->trailers : c->headers;
  for (; i; i--) p = strchr(p, ';') + 1;
  *len = strcspn(p, ";");
  return p;
}

size_t mw_call_response_md_count(const mw_call *c, int trailers) {
  return (size_t)(trailers ? c->n_trailers : c->n_headers);
}

void mw_call_response_md_at(const mw_call *c, int trailers, size_t i, const char **key,
                            size_t *klen, const char **val, size_t *vlen) {
  size_t len;
  const char *e = md_entry(c, trailers, i, &len);
  size_t k = strcspn(e, "=");
  *key = e;
  *klen = k;
  *val = e + k + 1;
  *vlen = len - k - 1;
}

int mw_call_set_status_details(mw_call *c, const char *bin, size_t len, char *err,
                               size_t errlen) {
  if (!alive(c, "mw_call_set_status_details")) return -1;
  trace(c, "details:%zu", len);
  if (c->finished) {
    snprintf(err, errlen, "the call has already finished");
    return -1;
  }
  if (c->details_max && len > c->details_max) {
    snprintf(err, errlen, "over the trailers' limit");
    return -1;
  }
  free(c->details);
  c->details = malloc(len ? len : 1);
  if (!c->details) abort();
  memcpy(c->details, bin, len);
  c->details_len = len;
  return 0;
}

void mw_call_finish(mw_call *c, int code, const char *msg) {
  if (!alive(c, "mw_call_finish")) return;
  c->finish_calls++;
  trace(c, "finish:%s", mw_status_name(code));
  if (c->finished) return; /* the first call wins */
  c->finished = 1;
  c->finish_code = code;
  snprintf(c->finish_msg, sizeof c->finish_msg, "%s", msg ? msg : "");
}

void mw_call_sends_anytime(mw_call *c) {
  if (!alive(c, "mw_call_sends_anytime")) return;
  trace(c, "sends_anytime");
}

void mw_call_watch_cancel(mw_call *c) {
  if (!alive(c, "mw_call_watch_cancel")) return;
  c->watch_cancel_calls++;
  trace(c, "watch");
}

/* --- events ---------------------------------------------------------------- */

/* What core does when an event returns: whatever was queued starts; the
 * first message or the status carries the headers. */
static void event_end(mw_call *c) {
  c->busy--;
  if (c->n_sent > 0 || c->finished) c->headers_sent = 1;
}

#define EVENT(c, expr) \
  do {                 \
    (c)->busy++;       \
    expr;              \
    event_end(c);      \
  } while (0)

void mw_call_run(mw_call *c, void (*fn)(void *arg), void *arg) { EVENT(c, fn(arg)); }

mw_call *fake_call_new(const mw_method *m) {
  mw_call *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->method = m;
  c->peer = "ipv4:127.0.0.1:5555";
  c->room_default = 1;
  return c;
}

void fake_call_free(mw_call *c) {
  if (!c) return;
  if (!c->done) fake_done(c);
  for (int i = 0; i < c->n_sent && i < FAKE_MAX_SENT; i++) free(c->sent[i].data);
  free(c->details);
  free(c);
}

void fake_call_add_metadata(mw_call *c, const char *key, const char *val) {
  if (c->n_md == FAKE_MAX_MD) return;
  c->md_key[c->n_md] = key;
  c->md_val[c->n_md] = val;
  c->n_md++;
}

void fake_call_add_auth(mw_call *c, const char *name, const char *val) {
  if (c->n_auth == FAKE_MAX_AUTH) return;
  c->auth_name[c->n_auth] = name;
  c->auth_val[c->n_auth] = val;
  c->n_auth++;
}

void fake_call_script_room(mw_call *c, const int *rooms, int n) {
  c->n_room_script = n < FAKE_MAX_ROOM ? n : FAKE_MAX_ROOM;
  c->room_next = 0;
  memcpy(c->room_script, rooms, (size_t)c->n_room_script * sizeof *rooms);
}

void fake_start(mw_call *c, mw_handler *h, const char *first, size_t len, int has_first) {
  trace(c, "@start");
  EVENT(c, h->start(h, c, first, len, has_first));
  if (!c->attach_calls && !c->finished)
    violate(c, "start returned without attaching or finishing");
}

static void mark_cancelled(mw_call *c) {
  if (c->cancelled) return;
  c->cancelled = 1;
  if (c->ops) {
    c->cancel_told = 1;
    EVENT(c, c->ops->on_cancel(c->self));
  }
}

void fake_message(mw_call *c, int ok, const char *data, size_t len, int has_msg) {
  if (!alive(c, "fake_message")) return;
  if (!c->reading) {
    violate(c, "on_message without a pending read");
    return;
  }
  c->reading = 0; /* as core: the read is over before anyone hears of it */
  trace(c, !ok ? "@fail" : has_msg ? "@msg" : "@eos");
  if (!ok) mark_cancelled(c);
  if (c->ops) EVENT(c, c->ops->on_message(c->self, ok, data, len, ok && has_msg));
}

void fake_writable(mw_call *c) {
  if (!alive(c, "fake_writable")) return;
  if (!c->want_writable) {
    violate(c, "on_writable without a send that returned 0");
    return;
  }
  c->want_writable = 0;
  trace(c, "@writable");
  if (c->ops) EVENT(c, c->ops->on_writable(c->self));
}

void fake_cancel(mw_call *c) {
  if (!alive(c, "fake_cancel")) return;
  if (c->cancelled) return;
  trace(c, "@cancel");
  mark_cancelled(c);
}

void fake_done(mw_call *c) {
  if (c->done) {
    violate(c, "on_done twice");
    return;
  }
  trace(c, "@done");
  if (c->ops) EVENT(c, c->ops->on_done(c->self));
  c->done = 1;
  c->reading = 0;
  /* A timer left armed would fire into a freed record: drop it without
   * touching it (it may live in that record). */
  for (int i = g_n_timers - 1; i >= 0; i--) {
    if (g_timers[i]->call != c) continue;
    violate(c, "a timer is still armed after on_done");
    timer_remove_at(i);
  }
}

int fake_fire_timers(void) {
  mw_call_timer *due[FAKE_MAX_TIMERS];
  uint64_t ids[FAKE_MAX_TIMERS];
  int n = g_n_timers, fired = 0;
  for (int i = 0; i < n; i++) {
    due[i] = g_timers[i];
    ids[i] = g_timers[i]->entry.seq;
  }
  for (int i = 0; i < n; i++) {
    /* An earlier timer's event may have disarmed or re-armed this one. */
    int at = timer_find(due[i], ids[i]);
    if (at < 0) continue;
    timer_remove_at(at);
    mw_call_timer *t = due[i];
    mw_call *c = t->call;
    t->entry.seq = 0;
    c->timer_fires++;
    trace(c, "@timer");
    EVENT(c, t->fn(t));
    fired++;
  }
  return fired;
}

/* --- core/mw_client.h: outbound calls are not part of this fake -------------
 * The Lua layer links them; test_co makes none, so every entry refuses or
 * is never reached (a channel is refused before any call exists). */
#include <stdio.h>

#include "core/mw_client.h"

int mw_client_allowed(const char *target, char *err, size_t errlen) {
  snprintf(err, errlen, "'%s': the fake call layer makes no outbound calls", target);
  return 0;
}
mw_ccall *mw_ccall_start(const mw_ccall_start_args *a, char *err, size_t errlen) {
  return mw_ccall_unary_blocking(a, err, errlen);
}
mw_ccall *mw_ccall_unary_blocking(const mw_ccall_start_args *a, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: the fake call layer makes no outbound calls", a->path);
  return NULL;
}
int mw_ccall_send(mw_ccall *c, const char *data, size_t len) { return -1; }
void mw_ccall_close_send(mw_ccall *c) {}
int mw_ccall_recv(mw_ccall *c) { return -1; }
void mw_ccall_cancel(mw_ccall *c) {}
void mw_ccall_release(mw_ccall *c) {}
int mw_ccall_code(const mw_ccall *c) { return -1; }
const char *mw_ccall_message(const mw_ccall *c, size_t *len) {
  *len = 0;
  return "";
}
int mw_ccall_response(mw_ccall *c, const char **data, size_t *len) { return 0; }
size_t mw_ccall_header_count(const mw_ccall *c) { return 0; }
void mw_ccall_header_at(const mw_ccall *c, size_t i, const char **k, size_t *kl,
                        const char **v, size_t *vl) {}
size_t mw_ccall_trailer_count(const mw_ccall *c) { return 0; }
void mw_ccall_trailer_at(const mw_ccall *c, size_t i, const char **k, size_t *kl,
                         const char **v, size_t *vl) {}
