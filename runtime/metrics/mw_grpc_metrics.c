/* go-grpc-prometheus's metrics (mw_grpc_metrics.h). A method's record holds
 * its series; the per-thread cache maps a path to it without the
 * registry's lock, so a call costs a hash of its path and a few slot adds. */
#include "metrics/mw_grpc_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NCODES 17
#define CACHE 256 /* per thread, direct-mapped */

struct mw_grpc_series {
  char *path;
  size_t len;
  int kind;
  unsigned long hash;
  const char *labels[3]; /* type, service, method: into svc/name */
  char *svc, *name;      /* owned */
  mw_met_series *started, *recv, *sent, *seconds;
  _Atomic(mw_met_series *) handled[NCODES];
  mw_grpc_series *next;
};

static const char *const code_names[NCODES] = {
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
    "Unauthenticated"};
static const char *const kind_names[4] = {"unary", "server_stream", "client_stream",
                                          "bidi_stream"};

const char *mw_grpc_code_name(int code) {
  return code >= 0 && code < NCODES ? code_names[code] : "Unknown";
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned epoch; /* moves at every declare: thread caches go stale */
static mw_met_family *f_started, *f_handled, *f_recv, *f_sent, *f_seconds;
static mw_met_series *s_shed, *s_unknown, *s_cpu;
static mw_grpc_series *records; /* owned list */

typedef struct cache_entry {
  unsigned long hash;
  unsigned epoch;
  mw_grpc_series *s;
} cache_entry;
static _Thread_local cache_entry tl_cache[CACHE];

static const char *const method_labels[3] = {"grpc_type", "grpc_service", "grpc_method"};
static const char *const handled_labels[4] = {"grpc_type", "grpc_service", "grpc_method",
                                              "grpc_code"};

void mw_grpc_metrics_forget(void) {
  pthread_mutex_lock(&mu);
  while (records) {
    mw_grpc_series *n = records->next;
    free(records->path);
    free(records->svc);
    free(records->name);
    free(records);
    records = n;
  }
  f_started = f_handled = f_recv = f_sent = f_seconds = NULL;
  s_shed = s_unknown = s_cpu = NULL;
  epoch++;
  pthread_mutex_unlock(&mu);
}

static mw_met_series *single(mw_metrics *r, mw_met_type t, const char *name, const char *help,
                             char *err, size_t errlen) {
  mw_met_family *f = mw_metrics_family(r, t, name, help, NULL, 0, NULL, 0, err, errlen);
  return f ? mw_met_series_get(f, NULL, NULL) : NULL;
}

int mw_grpc_metrics_declare(mw_metrics *r, char *err, size_t errlen) {
  mw_grpc_metrics_forget();
  pthread_mutex_lock(&mu);
  f_started = mw_metrics_family(r, MW_MET_COUNTER, "grpc_server_started_total",
                                "Total number of RPCs started on the server.", method_labels,
                                3, NULL, 0, err, errlen);
  f_handled = mw_metrics_family(
      r, MW_MET_COUNTER, "grpc_server_handled_total",
      "Total number of RPCs completed on the server, regardless of success or failure.",
      handled_labels, 4, NULL, 0, err, errlen);
  f_recv = mw_metrics_family(r, MW_MET_COUNTER, "grpc_server_msg_received_total",
                             "Total number of RPC stream messages received on the server.",
                             method_labels, 3, NULL, 0, err, errlen);
  f_sent = mw_metrics_family(r, MW_MET_COUNTER, "grpc_server_msg_sent_total",
                             "Total number of gRPC stream messages sent by the server.",
                             method_labels, 3, NULL, 0, err, errlen);
  f_seconds = mw_metrics_family(
      r, MW_MET_HISTOGRAM, "grpc_server_handling_seconds",
      "Histogram of response latency (seconds) of gRPC that had been application-level "
      "handled by the server.",
      method_labels, 3, NULL, 0, err, errlen);
  s_shed = single(r, MW_MET_COUNTER, "moonwire_shed_calls_total",
                  "Calls ended with RESOURCE_EXHAUSTED as they arrived (limits.max_inflight_calls, "
                  "methods.PATH.max_concurrent, limits.max_rss_mb).", err, errlen);
  s_cpu = single(r, MW_MET_COUNTER, "moonwire_handler_cpu_stops_total",
                 "Handlers stopped by their CPU budget or deadline while running.", err, errlen);
  s_unknown = single(r, MW_MET_COUNTER, "moonwire_unknown_method_calls_total",
                     "Calls to methods the current generation does not serve (UNIMPLEMENTED).",
                     err, errlen);
  epoch++;
  int ok = f_started && f_handled && f_recv && f_sent && f_seconds && s_shed && s_cpu && s_unknown;
  pthread_mutex_unlock(&mu);
  return ok ? 0 : -1;
}

static unsigned long hash_path(const char *p, size_t n, int kind) {
  unsigned long h = 1469598103934665603UL ^ (unsigned long)kind;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211UL;
  return h;
}

/* Under mu: the record of path and kind, made on first use. */
static mw_grpc_series *record_for(const char *path, size_t len, int kind, unsigned long h) {
  for (mw_grpc_series *s = records; s; s = s->next)
    if (s->hash == h && s->kind == kind && s->len == len && memcmp(s->path, path, len) == 0)
      return s;
  if (!f_started) return NULL;
  mw_grpc_series *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->path = strndup(path, len);
  /* "/pkg.Service/Method" -> "pkg.Service", "Method" */
  const char *p = len && path[0] == '/' ? path + 1 : path;
  const char *end = path + len;
  const char *slash = memchr(p, '/', (size_t)(end - p));
  s->svc = slash ? strndup(p, (size_t)(slash - p)) : strndup(p, (size_t)(end - p));
  s->name = slash ? strndup(slash + 1, (size_t)(end - slash - 1)) : strdup("");
  if (!s->path || !s->svc || !s->name) goto fail;
  s->len = len;
  s->kind = kind;
  s->hash = h;
  s->labels[0] = kind_names[kind & 3];
  s->labels[1] = s->svc;
  s->labels[2] = s->name;
  s->started = mw_met_series_get(f_started, s->labels, NULL);
  s->recv = mw_met_series_get(f_recv, s->labels, NULL);
  s->sent = mw_met_series_get(f_sent, s->labels, NULL);
  s->seconds = mw_met_series_get(f_seconds, s->labels, NULL);
  s->next = records;
  records = s;
  return s;
fail:
  free(s->path);
  free(s->svc);
  free(s->name);
  free(s);
  return NULL;
}

mw_grpc_series *mw_grpc_series_for(const char *path, size_t len, int kind) {
  unsigned long h = hash_path(path, len, kind);
  cache_entry *e = &tl_cache[h % CACHE];
  unsigned ep = __atomic_load_n(&epoch, __ATOMIC_ACQUIRE);
  if (e->s && e->hash == h && e->epoch == ep && e->s->kind == kind && e->s->len == len &&
      memcmp(e->s->path, path, len) == 0)
    return e->s;
  pthread_mutex_lock(&mu);
  mw_grpc_series *s = record_for(path, len, kind, h);
  ep = epoch;
  pthread_mutex_unlock(&mu);
  if (s) *e = (cache_entry){h, ep, s};
  return s;
}

void mw_grpc_started(mw_grpc_series *s) { mw_met_add(s->started, 1); }

void mw_grpc_handled(mw_grpc_series *s, int code, double secs, unsigned long msgs_in,
                     unsigned long msgs_out) {
  if (code < 0 || code >= NCODES) code = 2; /* Unknown */
  mw_met_series *h = atomic_load_explicit(&s->handled[code], memory_order_acquire);
  if (!h) {
    const char *v[4] = {s->labels[0], s->labels[1], s->labels[2], code_names[code]};
    h = mw_met_series_get(f_handled, v, NULL);
    atomic_store_explicit(&s->handled[code], h, memory_order_release);
  }
  mw_met_add(h, 1);
  if (msgs_in) mw_met_add(s->recv, (double)msgs_in);
  if (msgs_out) mw_met_add(s->sent, (double)msgs_out);
  mw_met_observe(s->seconds, secs);
}

void mw_grpc_count_shed(void) { mw_met_add(s_shed, 1); }
void mw_grpc_count_unknown(void) { mw_met_add(s_unknown, 1); }
void mw_grpc_count_cpu_stop(void) { mw_met_add(s_cpu, 1); }
