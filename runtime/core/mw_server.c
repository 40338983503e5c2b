/* The server: gRPC core's server, its listeners and channel arguments, the
 * registered methods and the request slots each worker keeps posted, the
 * current router (one per generation), and graceful shutdown. The worker
 * loop itself is mw_worker.c. */
/* pthread_timedjoin_np */
#define _GNU_SOURCE
#include "core/mw_server.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "base/mw_absl.h"
#include "base/mw_log.h"
#include "core/mw_call.h"
#include "core/mw_compress.h"
#include "core/mw_core_internal.h"
#include "core/mw_credentials.h"
#include "core/mw_loopback.h"
#include "core/mw_transport.h"

/* Request slots each worker keeps posted: per registered method, and for
 * the generic path (methods a reload added, unknown methods). A call that
 * arrives while its method has no slot posted waits in gRPC core's pending
 * list until a slot is posted again. Every posted slot is an outstanding
 * tag on the worker's completion queue, and Debian's libgrpc (built without
 * NDEBUG) scans the queue's outstanding tags linearly on every completion
 * (cq_check_tag): ~6 instructions per slot per event, every message of a
 * stream included. So the count adapts (on_slot_arrival): a method keeps one
 * slot posted per worker while it is idle, and up to MW_SLOTS_PER_METHOD
 * (the generic path MW_SLOTS_GENERIC) only while its calls arrive in a
 * burst: one slot more each time a call arrives within MW_SLOTS_DENSE turns
 * of the worker's loop (its beat) after the method's previous one there,
 * while the worker already has as many calls live (of any method) as the
 * method has slots; one less each time a call arrives after a longer gap,
 * or with fewer calls live than slots. A beat, not a clock: no clock read
 * per call, and calls one at a time on an otherwise idle worker never grow
 * a method. gRPC core cannot take a posted slot back, so the count only
 * drops as calls arrive: a burst that stops dead leaves its slots posted
 * (never more than the fixed 8 a method had before). With the bench's 8
 * methods an idle worker has 9 slots posted instead of 80 (make profile,
 * one worker; moonwire_request_slots on /metrics shows the count): unary
 * 16 B at 100 calls in flight from ~52,300 to ~51,300-51,700 instructions
 * per call (Unary grows to 6-8 slots; every method held at 1
 * measured the same, the pending list costing what the shorter scan
 * saves), server-stream 64 B from ~11,000 to ~10,400 per message, bidi 64 B
 * from ~22,800 to ~22,100-22,600 per round trip. A slot is about 160
 * bytes, allocated at start for the most each method may post. */
#define MW_SLOTS_PER_METHOD 8
#define MW_SLOTS_GENERIC 16
#define MW_SLOTS_DENSE 16
/* How long the stop waits for each worker after cancelling every call. */
#define MW_JOIN_WAIT_S 2

typedef struct mw_regmethod {
  char *path; /* owned */
  void *handle;
  int with_payload;
} mw_regmethod;

/* One method's (or the generic path's) request slots on one worker, on
 * that worker's thread only: how many are posted, how many it wants posted
 * now, the slots not posted (a list through mw_slot.next), and the worker's
 * beat at the method's last arrival there. */
typedef struct mw_slot_group {
  struct mw_slot *idle;
  unsigned posted, want, max;
  unsigned long last_beat;
} mw_slot_group;

typedef struct mw_slot {
  mw_tag tag;
  mw_worker *w;
  mw_slot_group *group;
  struct mw_slot *next; /* in group->idle while not posted */
  int reg; /* index into s->reg, or -1 for the generic path */
  grpc_call *call;
  grpc_call_details details;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *payload;
} mw_slot;

struct mw_server {
  grpc_server *server;
  int n_workers;
  mw_worker *workers; /* owned array */
  mw_slot *slots;     /* owned array */
  size_t n_slots;
  mw_slot_group *groups; /* owned: n_reg + 1 per worker, the generic last */
  mw_regmethod *reg;  /* owned array */
  size_t n_reg;
  char **listeners;   /* owned */
  size_t n_listeners;
  /* The internal listener of the HTTP listener's loopback calls
   * (core/mw_loopback.h): a unix socket in a 0700 directory of its own,
   * removed with the server; NULL without an HTTP listener. */
  char *internal_dir, *internal_sock, *internal_target;
  mw_credentials *creds; /* owned: what every listener speaks */
  mw_tag shutdown_tag;
  mw_worker_hooks hooks;
  _Atomic int stopping;
  _Atomic int shutdown_done;
  _Atomic int started;
  pthread_mutex_t gen_lock;
  mw_router *current;          /* one reference */
  _Atomic unsigned gen_counter;
  mw_counters counters;        /* read by the workers' calls */
  /* The watchdog's view of each worker (main thread only): the beat last
   * seen, since when, and whether it was reported stuck. */
  struct worker_watch {
    unsigned long beat;
    double since;
    int reported;
  } *watch;                    /* owned, n_workers long */
  int stuck;                   /* a worker did not stop: the server is not freed */
  pthread_mutex_t idle_lock;   /* with idle_cond: a worker ran out of calls */
  pthread_cond_t idle_cond;    /* while the server stops */
  mw_compress_policy compress; /* read by the workers' calls */
};

/* --- generations ------------------------------------------------------------ */

void mw_server_refresh(mw_worker *w) {
  mw_server *s = w->server;
  unsigned counter = atomic_load_explicit(&s->gen_counter, memory_order_acquire);
  if (counter == w->gen_seen && w->router) return;
  pthread_mutex_lock(&s->gen_lock);
  mw_router *r = s->current;
  mw_router_ref(r);
  w->gen_seen = atomic_load(&s->gen_counter);
  pthread_mutex_unlock(&s->gen_lock);
  mw_router *old = w->router;
  w->router = r;
  if (old && old != r && s->hooks.switch_router)
    s->hooks.switch_router(s->hooks.self, old, r, w->id);
  mw_router_unref(old);
}

/* Mail to a worker: let go of the replaced generation now, not at the
 * next call. */
static void on_gen_mail(mw_mail *m) {
  mw_worker *w = (mw_worker *)((char *)m - offsetof(mw_worker, gen_mail));
  atomic_store(&w->gen_mail_queued, 0);
  mw_server_refresh(w);
}

void mw_server_swap(mw_server *s, mw_router *r) {
  mw_router_ref(r);
  pthread_mutex_lock(&s->gen_lock);
  mw_router *old = s->current;
  s->current = r;
  atomic_store(&s->counters.generation, mw_router_id(r));
  atomic_fetch_add_explicit(&s->gen_counter, 1, memory_order_release);
  pthread_mutex_unlock(&s->gen_lock);
  atomic_fetch_add(&s->counters.reloads, 1);
  mw_router_unref(old);
  if (!atomic_load(&s->started)) return;
  for (int i = 0; i < s->n_workers; i++) {
    mw_worker *w = &s->workers[i];
    if (atomic_exchange(&w->gen_mail_queued, 1)) continue; /* already told */
    if (mw_mailbox_post(w->mailbox, &w->gen_mail) != 0) atomic_store(&w->gen_mail_queued, 0);
  }
}

void mw_server_note_reload_failure(mw_server *s) {
  atomic_fetch_add(&s->counters.reload_failures, 1);
}

/* --- request slots ---------------------------------------------------------- */

/* Puts a slot that is not posted on its group's idle list. */
static void park(mw_slot *sl) {
  sl->next = sl->group->idle;
  sl->group->idle = sl;
}

/* Moves the worker's count of posted slots by d; only its thread writes
 * it, the admin thread reads it. */
static void count_posted(mw_worker *w, int d) {
  size_t n = atomic_load_explicit(&w->live_slots, memory_order_relaxed);
  atomic_store_explicit(&w->live_slots, n + (size_t)(ptrdiff_t)d, memory_order_relaxed);
}

static int post_slot(mw_server *s, mw_slot *sl) {
  grpc_call_error e;
  grpc_metadata_array_init(&sl->md);
  sl->call = NULL;
  sl->payload = NULL;
  if (sl->reg >= 0) {
    mw_regmethod *rm = &s->reg[sl->reg];
    e = grpc_server_request_registered_call(
        s->server, rm->handle, &sl->call, &sl->deadline, &sl->md,
        rm->with_payload ? &sl->payload : NULL, sl->w->cq, sl->w->cq, &sl->tag);
  } else {
    grpc_call_details_init(&sl->details);
    e = grpc_server_request_call(s->server, &sl->call, &sl->details, &sl->md,
                                 sl->w->cq, sl->w->cq, &sl->tag);
  }
  if (e != GRPC_CALL_OK) {
    grpc_metadata_array_destroy(&sl->md);
    if (sl->reg < 0) grpc_call_details_destroy(&sl->details);
    mw_log(MW_LOG_ERROR, "cannot request calls (%d)", (int)e);
    park(sl);
    return -1;
  }
  sl->group->posted++;
  count_posted(sl->w, 1);
  return 0;
}

/* Posts g's idle slots until it has as many posted as it wants. */
static void fill_group(mw_server *s, mw_slot_group *g) {
  while (g->posted < g->want && g->idle) {
    mw_slot *sl = g->idle;
    g->idle = sl->next;
    if (post_slot(s, sl) != 0) return;
  }
}

/* A call arrived on sl, already taken out of it (MW_SLOTS_PER_METHOD says
 * why and how the count adapts): sl goes back to its group's idle list,
 * the group's wish moves with the demand, and the group is posted up to
 * it. The wish stays at least 1, and only the slot that just completed
 * may stay unposted when it drops, so a group never runs out of posted
 * slots while the server runs. */
static void on_slot_arrival(mw_server *s, mw_slot *sl) {
  mw_worker *w = sl->w;
  mw_slot_group *g = sl->group;
  unsigned long beat = atomic_load_explicit(&w->beat, memory_order_relaxed);
  unsigned long gap = beat - g->last_beat;
  size_t live = atomic_load_explicit(&w->live_calls, memory_order_relaxed);
  g->last_beat = beat;
  park(sl);
  if (gap <= MW_SLOTS_DENSE && live >= g->want) {
    if (g->want < g->max) g->want++;
  } else if (g->want > 1 && (gap > MW_SLOTS_DENSE || live + 1 < g->want)) {
    g->want--;
  }
  fill_group(s, g);
}

void mw_server_on_slot(void *slot, int ok) {
  mw_slot *sl = slot;
  mw_worker *w = sl->w;
  mw_server *s = w->server;
  count_posted(w, -1);
  sl->group->posted--;
  if (!ok) {
    /* The server is shutting down: the slot is not posted again. */
    grpc_metadata_array_destroy(&sl->md);
    if (sl->reg < 0) grpc_call_details_destroy(&sl->details);
    if (sl->payload) grpc_byte_buffer_destroy(sl->payload);
    park(sl);
    if (!atomic_load(&s->stopping)) fill_group(s, sl->group);
    return;
  }
  /* Take what arrived, then post the slot again before serving the call so
   * that the next call can already be matched. */
  grpc_call *call = sl->call;
  grpc_metadata_array md = sl->md;
  grpc_byte_buffer *payload = sl->payload;
  int has_payload = 0;
  const char *path;
  size_t path_len;
  gpr_timespec deadline;
  grpc_slice method = grpc_empty_slice();
  if (sl->reg >= 0) {
    mw_regmethod *rm = &s->reg[sl->reg];
    path = rm->path;
    path_len = strlen(path);
    deadline = sl->deadline;
    has_payload = rm->with_payload;
  } else {
    method = grpc_slice_ref(sl->details.method);
    path = (const char *)GRPC_SLICE_START_PTR(method);
    path_len = GRPC_SLICE_LENGTH(method);
    deadline = sl->details.deadline;
    grpc_call_details_destroy(&sl->details);
  }
  if (atomic_load(&s->stopping))
    park(sl);
  else
    on_slot_arrival(s, sl);
  mw_server_refresh(w);
  mw_call_arrived(w, call, path, path_len, deadline, &md, payload, has_payload);
  grpc_metadata_array_destroy(&md);
  grpc_slice_unref(method);
}

/* --- mail to workers by number (core/mw_post.h) ----------------------------- */

/* The running server, whose workers mw_post reaches. Set at start, cleared
 * once the workers are joined; posts come from the workers themselves or
 * from the thread that starts and stops the server, so none outlives it. */
static _Atomic(mw_server *) posting;

int mw_post_workers(void) {
  mw_server *s = atomic_load(&posting);
  return s ? s->n_workers : 0;
}

int mw_post(int worker, mw_mail *m) {
  mw_server *s = atomic_load(&posting);
  if (!s || worker < 0 || worker >= s->n_workers) return -1;
  return mw_mailbox_post(s->workers[worker].mailbox, m);
}

/* --- workers ------------------------------------------------------------------ */

/* Mail to every worker when the drain begins: the backends' drain hooks. */
static void on_drain_mail(mw_mail *m) {
  mw_worker *w = (mw_worker *)((char *)m - offsetof(mw_worker, drain_mail));
  mw_server *s = w->server;
  if (s->hooks.drain) s->hooks.drain(s->hooks.self, w->router, w->id);
}

/* Mail to every worker when the server's shutdown completed: an idle
 * worker wakes up to shut its queue down. */
static void on_stop_mail(mw_mail *m) { (void)m; }

void mw_server_note_shutdown_done(mw_server *s) {
  atomic_store(&s->shutdown_done, 1);
  for (int i = 0; i < s->n_workers; i++)
    mw_mailbox_post(s->workers[i].mailbox, &s->workers[i].stop_mail);
}

int mw_server_worker_may_close(const mw_worker *w) {
  mw_server *s = w->server;
  if (!atomic_load_explicit(&s->stopping, memory_order_relaxed)) return 0;
  if (w->live_calls == 0) {
    pthread_mutex_lock(&s->idle_lock);
    pthread_cond_broadcast(&s->idle_cond);
    pthread_mutex_unlock(&s->idle_lock);
  }
  return atomic_load(&s->shutdown_done) && w->live_calls == 0 && w->live_slots == 0 &&
         w->client_calls == 0;
}

void mw_server_thread_exit(mw_worker *w) {
  mw_server *s = w->server;
  if (s->hooks.thread_exit) s->hooks.thread_exit(s->hooks.self, w->id);
}

/* --- construction ------------------------------------------------------------ */

static char *listener_name(const char *addr, int port) {
  const char *colon = strrchr(addr, ':');
  size_t host_len = colon ? (size_t)(colon - addr) : strlen(addr);
  char *out = malloc(host_len + 16);
  if (out) snprintf(out, host_len + 16, "%.*s:%d", (int)host_len, addr, port);
  return out;
}

/* The internal listener: only this user can enter the directory, and the
 * secret authenticates what the HTTP side says of its calls. */
static void add_internal_listener(mw_server *s, mw_diag *diag) {
  const char *tmp = getenv("TMPDIR");
  char tmpl[256];
  snprintf(tmpl, sizeof tmpl, "%s/moonwire-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mw_loopback_secret_init() != 0) {
    mw_diag_add(diag, "http: no random bytes for the loopback secret");
    return;
  }
  if (!mkdtemp(tmpl)) {
    mw_diag_add(diag, "http: cannot make the internal socket's directory %s: %s", tmpl,
                strerror(errno));
    return;
  }
  s->internal_dir = strdup(tmpl);
  size_t n = strlen(tmpl) + 16;
  s->internal_sock = malloc(n);
  s->internal_target = malloc(n + 5);
  if (!s->internal_dir || !s->internal_sock || !s->internal_target) {
    mw_diag_add(diag, "out of memory");
    return;
  }
  snprintf(s->internal_sock, n, "%s/grpc.sock", tmpl);
  snprintf(s->internal_target, n + 5, "unix:%s", s->internal_sock);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(s->server, s->internal_target, creds);
  grpc_server_credentials_release(creds);
  if (port <= 0) mw_diag_add(diag, "http: cannot listen on the internal socket %s",
                             s->internal_sock);
}

const char *mw_server_internal_target(const mw_server *s) { return s->internal_target; }

mw_router *mw_server_router_acquire(mw_server *s) {
  pthread_mutex_lock(&s->gen_lock);
  mw_router *r = s->current;
  mw_router_ref(r);
  pthread_mutex_unlock(&s->gen_lock);
  return r;
}

/* Written once when a listener has died (see grpc_log_to_mw); the serve
 * loop polls it. Process-wide like gRPC's log function itself. */
static int listener_alarm = -1;
static _Atomic int listener_dead;

/* gRPC core 1.51's listener stops accepting for good once accept4 fails
 * (CVE-2023-4785: EMFILE, ENFILE, ENOMEM), and says so only in one log
 * line; connections already open keep working, so nothing else shows it.
 * That line is the only signal there is. */
static void note_listener_death(const char *msg) {
  if (!strstr(msg, "Failed accept4") || atomic_exchange(&listener_dead, 1)) return;
  uint64_t one = 1;
  if (listener_alarm >= 0 && write(listener_alarm, &one, sizeof one) < 0) {
    /* nothing more to do: the flag is set */
  }
}

int mw_server_listener_alarm_fd(void) {
  if (listener_alarm < 0) listener_alarm = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return listener_alarm;
}

int mw_server_listener_dead(void) { return atomic_load(&listener_dead); }

/* gRPC core's own log lines go through ours, so that JSON logs stay JSON;
 * its errors are details of what Moonwire reports itself: warn level. */
/* While this thread adds a listening port: where core's error about it
 * goes instead of the log, so that a busy port is one line of ours. */
static _Thread_local char *tl_port_err;
#define MW_PORT_ERR 2048

static void grpc_log_to_mw(gpr_log_func_args *a) {
  if (tl_port_err && a->severity == GPR_LOG_SEVERITY_ERROR) {
    size_t n = strlen(tl_port_err);
    snprintf(tl_port_err + n, MW_PORT_ERR - n, "%s", a->message ? a->message : "");
    return;
  }
  if (a->severity == GPR_LOG_SEVERITY_ERROR && a->message) note_listener_death(a->message);
  mw_log_level level = a->severity == GPR_LOG_SEVERITY_ERROR  ? MW_LOG_WARN
                       : a->severity == GPR_LOG_SEVERITY_INFO ? MW_LOG_INFO
                                                              : MW_LOG_DEBUG;
  if (!mw_log_enabled(level)) return;
  const char *keys[] = {"source"};
  char where[256];
  snprintf(where, sizeof where, "grpc %s:%d", a->file ? a->file : "?", a->line);
  const char *vals[] = {where};
  mw_log_fields(level, a->message ? a->message : "", 1, keys, vals);
}

mw_server *mw_server_new(const mw_config *cfg, mw_router *router,
                         const mw_worker_hooks *hooks, mw_diag *diag) {
  mw_server *s = calloc(1, sizeof *s);
  if (!s) {
    mw_diag_add(diag, "out of memory");
    return NULL;
  }
  mw_server_listener_alarm_fd(); /* before a listener exists that could die */
  gpr_set_log_function(grpc_log_to_mw);
  mw_absl_fast_mutexes();
  grpc_init();
  pthread_mutex_init(&s->gen_lock, NULL);
  pthread_mutex_init(&s->idle_lock, NULL);
  pthread_cond_init(&s->idle_cond, NULL);
  if (hooks) s->hooks = *hooks;
  mw_router_ref(router);
  s->current = router;
  atomic_init(&s->counters.generation, mw_router_id(router));
  s->shutdown_tag = (mw_tag){MW_TAG_SHUTDOWN, 0, s};

  grpc_arg args[MW_TRANSPORT_MAX_ARGS];
  grpc_resource_quota *quota;
  size_t n = mw_transport_args(cfg, args, &quota);
  grpc_channel_args cargs = {n, args};
  s->server = grpc_server_create(&cargs, NULL);
  if (quota) grpc_resource_quota_unref(quota); /* the server holds its own */

  s->n_workers = cfg->workers;
  if (mw_compress_policy_init(&s->compress, cfg) != 0) goto oom;
  s->workers = calloc((size_t)s->n_workers, sizeof *s->workers);
  if (!s->workers) goto oom;
  s->counters.workers = s->workers;
  s->counters.n_workers = s->n_workers;
  s->counters.max_inflight = (long)cfg->limits.max_inflight_calls;
  for (size_t i = 0; i < cfg->n_methods; i++) {
    if (cfg->methods[i].max_concurrent <= 0 && cfg->methods[i].max_receive_bytes <= 0 &&
        cfg->methods[i].max_send_bytes <= 0)
      continue;
    mw_method_limit *v = realloc(s->counters.limits, (s->counters.n_limits + 1) * sizeof *v);
    if (!v) goto oom;
    s->counters.limits = v;
    mw_method_limit *l = &v[s->counters.n_limits];
    l->path = strdup(cfg->methods[i].path);
    if (!l->path) goto oom;
    l->max = (long)cfg->methods[i].max_concurrent;
    l->max_recv = (size_t)cfg->methods[i].max_receive_bytes;
    l->max_send = (size_t)cfg->methods[i].max_send_bytes;
    atomic_init(&l->live, 0);
    s->counters.n_limits++;
  }
  for (int i = 0; i < s->n_workers; i++) {
    mw_worker *w = &s->workers[i];
    w->id = i;
    w->server = s;
    w->counters = &s->counters;
    w->send_queue_messages = (size_t)cfg->limits.send_queue_messages;
    w->send_queue_bytes = (size_t)cfg->limits.send_queue_bytes;
    w->max_send_bytes = (size_t)cfg->limits.max_send_bytes;
    /* What a handler may put in the response headers (and, apart, in the
     * trailers): what a client accepts, less room for the runtime's own
     * entries (:status, content-type, grpc-status, grpc-message). Clients
     * accept limits.max_header_list_size when they are configured like the
     * server, and gRPC's accept 8 KiB by default (grpc.max_metadata_size). */
    size_t hl = (size_t)cfg->limits.max_header_list_size;
    if (hl > 8192) hl = 8192;
    w->max_response_md = hl > 2048 ? hl - 1024 : hl / 2;
    w->max_receive_bytes = (size_t)cfg->limits.max_receive_bytes;
    w->compress = &s->compress;
    w->observe = cfg->admin.listen != NULL;
    mw_timers_init(&w->timers);
    w->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, w->cq, NULL);
    w->wake_tag = (mw_tag){MW_TAG_WAKE, 0, w};
    w->gen_mail.fn = on_gen_mail;
    w->stop_mail.fn = on_stop_mail;
    w->drain_mail.fn = on_drain_mail;
    w->mailbox = mw_mailbox_new(w->cq, &w->wake_tag);
    if (!w->mailbox) goto oom;
  }

  /* Register the methods known now: their calls arrive on a fast path, with
   * the first request already read for unary and server-streaming calls. */
  const mw_methods *methods = mw_router_methods(router);
  size_t n_methods = mw_methods_count(methods);
  s->reg = calloc(n_methods ? n_methods : 1, sizeof *s->reg);
  if (!s->reg) goto oom;
  for (size_t i = 0; i < n_methods; i++) {
    const mw_method *m = mw_methods_at(methods, i);
    int payload = m->kind == MW_KIND_UNARY || m->kind == MW_KIND_SERVER_STREAMING;
    void *h = grpc_server_register_method(
        s->server, m->path, NULL,
        payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE,
        0);
    if (!h) continue;
    s->reg[s->n_reg].path = strdup(m->path);
    s->reg[s->n_reg].handle = h;
    s->reg[s->n_reg].with_payload = payload;
    s->n_reg++;
  }

  s->listeners = calloc(cfg->listen.n ? cfg->listen.n : 1, sizeof *s->listeners);
  if (!s->listeners) goto oom;
  /* The TLS files are checked before any listener exists: a bad file is
   * reported with its name, not as a listener that failed. */
  s->creds = mw_credentials_new(cfg, diag);
  if (!s->creds) {
    mw_server_free(s);
    return NULL;
  }
  for (size_t i = 0; i < cfg->listen.n; i++) {
    grpc_server_credentials *creds = mw_credentials_listener(s->creds);
    if (!creds) goto oom;
    char err[MW_PORT_ERR] = "";
    tl_port_err = err;
    int port = grpc_server_add_http2_port(s->server, cfg->listen.v[i], creds);
    tl_port_err = NULL;
    grpc_server_credentials_release(creds);
    if (port <= 0) {
      /* Core's status text nests the system's reason as os_error:"...". */
      const char *why = strstr(err, "os_error:\"");
      const char *end = why ? strchr(why + 10, '"') : NULL;
      if (why && end)
        mw_diag_add(diag, "cannot listen on %s: %.*s%s", cfg->listen.v[i], (int)(end - why - 10),
                    why + 10, strstr(err, "errno:98") ? " (another server has the port; "
                                                        "--listen HOST:0 picks a free one)" : "");
      else
        mw_diag_add(diag, "cannot listen on %s: not an address this host can listen on",
                    cfg->listen.v[i]);
      continue;
    }
    s->listeners[s->n_listeners++] = listener_name(cfg->listen.v[i], port);
  }
  /* The HTTP listener's calls, or the console's on the admin listener. */
  if ((cfg->http.listen || (cfg->admin.listen && cfg->console)) && !mw_diag_count(diag))
    add_internal_listener(s, diag);
  if (mw_diag_count(diag)) {
    mw_server_free(s);
    return NULL;
  }
  return s;
oom:
  mw_diag_add(diag, "out of memory");
  mw_server_free(s);
  return NULL;
}

size_t mw_server_listener_count(const mw_server *s) { return s->n_listeners; }
const char *mw_server_listener(const mw_server *s, size_t i) {
  return s->listeners[i];
}

void mw_server_shed_for_memory(mw_server *s, int mib) {
  atomic_store(&s->counters.over_memory, mib > 0 ? mib : 0);
}

size_t mw_server_live_calls(const mw_server *s) {
  return mw_counters_live_calls(&s->counters);
}

void mw_server_read_stats(const mw_server *s, mw_server_stats *out) {
  mw_counters_read(&s->counters, out);
}

int mw_server_workers(const mw_server *s) { return s->n_workers; }

void mw_server_worker_load(const mw_server *s, int worker, size_t *live, size_t *queued) {
  const mw_worker *w = &s->workers[worker];
  *live = atomic_load_explicit(&w->live_calls, memory_order_relaxed);
  *queued = atomic_load_explicit(&w->queued_bytes, memory_order_relaxed);
}

size_t mw_server_worker_slots(const mw_server *s, int worker) {
  return atomic_load_explicit(&s->workers[worker].live_slots, memory_order_relaxed);
}

int mw_server_start(mw_server *s) {
  grpc_server_start(s->server);
  atomic_store(&s->started, 1);
  size_t n_groups = s->n_reg + 1;
  size_t per_worker = s->n_reg * MW_SLOTS_PER_METHOD + MW_SLOTS_GENERIC;
  s->slots = calloc(per_worker * (size_t)s->n_workers, sizeof *s->slots);
  s->groups = calloc(n_groups * (size_t)s->n_workers, sizeof *s->groups);
  if (!s->slots || !s->groups) return -1;
  for (int i = 0; i < s->n_workers; i++) {
    mw_worker *w = &s->workers[i];
    mw_server_refresh(w);
    for (size_t k = 0; k < n_groups; k++) {
      mw_slot_group *g = &s->groups[(size_t)i * n_groups + k];
      int reg = k < s->n_reg ? (int)k : -1;
      g->max = reg >= 0 ? MW_SLOTS_PER_METHOD : MW_SLOTS_GENERIC;
      g->want = 1;
      for (unsigned j = 0; j < g->max; j++) {
        mw_slot *sl = &s->slots[s->n_slots++];
        sl->tag = (mw_tag){MW_TAG_SLOT, 0, sl};
        sl->w = w;
        sl->group = g;
        sl->reg = reg;
        park(sl);
      }
      fill_group(s, g);
      if (g->posted == 0) return -1;
    }
  }
  for (int i = 0; i < s->n_workers; i++) {
    if (pthread_create(&s->workers[i].thread, NULL, mw_worker_main, &s->workers[i]) != 0)
      return -1;
  }
  atomic_store(&posting, s);
  return 0;
}

int mw_server_watch_workers(mw_server *s, double stuck_after) {
  if (!s || !atomic_load(&s->started)) return 0;
  if (!s->watch && !(s->watch = calloc((size_t)s->n_workers, sizeof *s->watch))) return 0;
  int stuck = 0;
  double now = mw_now();
  for (int i = 0; i < s->n_workers; i++) {
    mw_worker *w = &s->workers[i];
    struct worker_watch *ww = &s->watch[i];
    unsigned long beat = atomic_load_explicit(&w->beat, memory_order_relaxed);
    const char *path = atomic_load_explicit(&w->running, memory_order_acquire);
    if (beat != ww->beat || !path) {
      if (ww->reported && beat != ww->beat)
        mw_log(MW_LOG_WARN, "worker %d runs again after %.1f s in one event", i, now - ww->since);
      ww->beat = beat;
      ww->since = now;
      ww->reported = 0;
      continue;
    }
    if (now - ww->since < stuck_after) continue;
    stuck++;
    if (ww->reported) continue;
    ww->reported = 1;
    /* The worker has not moved since it began this event, so the call it
     * runs (and the path it points to) is still alive. */
    mw_log(MW_LOG_ERROR, "worker %d stuck for %.1f s in a call of %s (a C function that "
                         "does not return?): calls that land on this worker wait",
           i, now - ww->since, path);
  }
  return stuck;
}

void mw_server_drain(mw_server *s) {
  if (!s || !atomic_load(&s->started) || atomic_exchange(&s->stopping, 1)) return;
  grpc_server_shutdown_and_notify(s->server, s->workers[0].cq, &s->shutdown_tag);
  for (int i = 0; i < s->n_workers; i++)
    mw_mailbox_post(s->workers[i].mailbox, &s->workers[i].drain_mail);
}

/* The CLOCK_REALTIME time ms from now, for pthread's timed waits. */
static struct timespec realtime_in(long ms) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += ms / 1000;
  t.tv_nsec += (ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
  return t;
}

size_t mw_server_wait_idle(mw_server *s, long ms) {
  struct timespec until = realtime_in(ms);
  /* Woken by workers running out of calls (mw_server_worker_may_close). */
  pthread_mutex_lock(&s->idle_lock);
  while (mw_server_live_calls(s) > 0 &&
         pthread_cond_timedwait(&s->idle_cond, &s->idle_lock, &until) == 0) {
  }
  pthread_mutex_unlock(&s->idle_lock);
  return mw_server_live_calls(s);
}

void mw_server_stop(mw_server *s, long grace_ms) {
  if (!s || !atomic_load(&s->started)) return;
  mw_server_drain(s);
  size_t left = grace_ms > 0 ? mw_server_wait_idle(s, grace_ms) : mw_server_live_calls(s);
  if (left > 0) mw_log(MW_LOG_WARN, "grace period over: cancelling %zu call(s)", left);
  /* Cancels every call and disconnects every connection, so the stop is
   * bounded even by a client that never reads. */
  grpc_server_cancel_all_calls(s->server);
  /* A worker stuck in a C function never comes back: the stop waits for it
   * a little, then goes on without it. */
  struct timespec until = realtime_in(MW_JOIN_WAIT_S * 1000L);
  for (int i = 0; i < s->n_workers; i++) {
    if (pthread_timedjoin_np(s->workers[i].thread, NULL, &until) != 0) {
      const char *path = atomic_load(&s->workers[i].running);
      if (path)
        mw_log(MW_LOG_ERROR, "worker %d did not stop (stuck in a call of %s): exiting without it",
               i, path);
      else /* idle, but the server's shutdown waits for the stuck call */
        mw_log(MW_LOG_ERROR, "worker %d did not stop (the server's shutdown waits for a "
                             "stuck call): exiting without it", i);
      s->stuck = 1;
    }
  }
  atomic_store(&s->started, 0);
  mw_server *self = s;
  atomic_compare_exchange_strong(&posting, &self, NULL);
}

int mw_server_stuck(const mw_server *s) { return s && s->stuck; }

void mw_server_free(mw_server *s) {
  if (!s) return;
  /* A stuck worker still uses all of it; the process is about to end. */
  if (s->stuck) return;
  if (atomic_load(&s->started)) mw_server_stop(s, 0);
  if (s->server && !atomic_load(&s->stopping) && s->workers && s->workers[0].cq) {
    /* Never started (a later listener failed to bind, say): gRPC core
     * refuses to destroy a server with listeners that was not shut down. */
    atomic_store(&s->stopping, 1);
    grpc_server_shutdown_and_notify(s->server, s->workers[0].cq, &s->shutdown_tag);
    grpc_server_cancel_all_calls(s->server);
    grpc_event ev;
    do {
      ev = grpc_completion_queue_next(s->workers[0].cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    } while (ev.type != GRPC_QUEUE_SHUTDOWN && ev.tag != &s->shutdown_tag);
  }
  if (s->server) grpc_server_destroy(s->server);
  for (int i = 0; s->workers && i < s->n_workers; i++) {
    mw_worker *w = &s->workers[i];
    if (w->cq) {
      if (!w->cq_shut) {
        grpc_completion_queue_shutdown(w->cq);
        while (grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                   .type != GRPC_QUEUE_SHUTDOWN) {
        }
      }
      grpc_completion_queue_destroy(w->cq);
    }
    mw_timers_free(&w->timers);
    mw_call_spares_free(w);
    free(w->gather);
    w->gather = NULL;
    mw_mailbox_free(w->mailbox);
    w->mailbox = NULL;
    mw_router_unref(w->router);
    w->router = NULL;
  }
  mw_compress_policy_free(&s->compress);
  free(s->workers);
  free(s->watch);
  for (size_t i = 0; i < s->counters.n_limits; i++) free(s->counters.limits[i].path);
  free(s->counters.limits);
  free(s->slots);
  free(s->groups);
  for (size_t i = 0; i < s->n_reg; i++) free(s->reg[i].path);
  free(s->reg);
  for (size_t i = 0; i < s->n_listeners; i++) free(s->listeners[i]);
  free(s->listeners);
  if (s->internal_sock) unlink(s->internal_sock);
  if (s->internal_dir) rmdir(s->internal_dir);
  free(s->internal_sock);
  free(s->internal_dir);
  free(s->internal_target);
  mw_router_unref(s->current);
  pthread_mutex_destroy(&s->gen_lock);
  pthread_mutex_destroy(&s->idle_lock);
  pthread_cond_destroy(&s->idle_cond);
  mw_credentials *creds = s->creds;
  free(s);
  grpc_shutdown();
  /* Last: gRPC core's listeners held pointers into the credentials'
   * fetcher records until the server and gRPC itself were torn down. */
  mw_credentials_free(creds);
}
