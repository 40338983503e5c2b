/* OTLP/HTTP JSON encoding and the exporter thread: see mw_otlp.h. */
#include "trace/mw_otlp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/mw_log.h"
#include "trace/mw_tracectx.h"

/* --- JSON ---------------------------------------------------------------- */

static void attr_head(mw_buf *b, const char *key, size_t klen) {
  if (b->len && b->p[b->len - 1] != '[' && b->p[b->len - 1] != '{') mw_buf_put(b, ",", 1);
  mw_buf_puts(b, "{\"key\":");
  mw_buf_json(b, key, klen);
  mw_buf_puts(b, ",\"value\":{");
}

void mw_otlp_attr_str(mw_buf *b, const char *key, size_t klen, const char *v, size_t vlen) {
  attr_head(b, key, klen);
  mw_buf_puts(b, "\"stringValue\":");
  mw_buf_json(b, v, vlen);
  mw_buf_puts(b, "}}");
}

void mw_otlp_attr_int(mw_buf *b, const char *key, size_t klen, int64_t v) {
  char num[32];
  attr_head(b, key, klen);
  snprintf(num, sizeof num, "\"intValue\":\"%lld\"}}", (long long)v); /* int64: a string */
  mw_buf_puts(b, num);
}

void mw_otlp_attr_double(mw_buf *b, const char *key, size_t klen, double v) {
  char num[48];
  attr_head(b, key, klen);
  if (v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308)
    snprintf(num, sizeof num, "\"doubleValue\":\"%s\"}}",
             v != v ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
  else
    snprintf(num, sizeof num, "\"doubleValue\":%.17g}}", v);
  mw_buf_puts(b, num);
}

void mw_otlp_attr_bool(mw_buf *b, const char *key, size_t klen, int v) {
  attr_head(b, key, klen);
  mw_buf_puts(b, v ? "\"boolValue\":true}}" : "\"boolValue\":false}}");
}

static void put_hex(mw_buf *b, const char *key, const uint8_t *id, size_t n) {
  char hex[33];
  mw_trace_hex(id, n, hex);
  mw_buf_puts(b, key);
  mw_buf_put(b, "\"", 1);
  mw_buf_put(b, hex, 2 * n);
  mw_buf_put(b, "\"", 1);
}

void mw_otlp_span_json(mw_buf *b, const mw_otlp_span *s) {
  char num[96];
  put_hex(b, "{\"traceId\":", s->trace_id, 16);
  put_hex(b, ",\"spanId\":", s->span_id, 8);
  if (s->has_parent) put_hex(b, ",\"parentSpanId\":", s->parent_id, 8);
  mw_buf_puts(b, ",\"name\":");
  mw_buf_json(b, s->name ? s->name : "", s->name ? strlen(s->name) : 0);
  snprintf(num, sizeof num, ",\"kind\":%d,\"startTimeUnixNano\":\"%llu\",\"endTimeUnixNano\":\"%llu\"",
           s->kind, (unsigned long long)s->start_ns, (unsigned long long)s->end_ns);
  mw_buf_puts(b, num);
  mw_buf_puts(b, ",\"attributes\":[");
  if (s->attrs) mw_buf_puts(b, s->attrs);
  mw_buf_puts(b, "],\"events\":[");
  if (s->events) mw_buf_puts(b, s->events);
  snprintf(num, sizeof num, "],\"status\":{\"code\":%d", s->status);
  mw_buf_puts(b, num);
  if (s->status_message && *s->status_message) {
    mw_buf_puts(b, ",\"message\":");
    mw_buf_json(b, s->status_message, strlen(s->status_message));
  }
  mw_buf_puts(b, "}}");
}

void mw_otlp_request_json(mw_buf *b, const char *service_name, const char *const *spans,
                          const size_t *lens, size_t n) {
  const char *svc = service_name ? service_name : "moonwire";
  mw_buf_puts(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
  mw_otlp_attr_str(b, "service.name", 12, svc, strlen(svc));
  mw_buf_puts(b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"moonwire\",\"version\":\"" MW_VERSION
                  "\"},\"spans\":[");
  for (size_t i = 0; i < n; i++) {
    if (i) mw_buf_put(b, ",", 1);
    mw_buf_put(b, spans[i], lens[i]);
  }
  mw_buf_puts(b, "]}]}]}");
}

/* --- HTTP/1.1 POST over a blocking socket -------------------------------- */

typedef struct url {
  char host[256], port[8], path[1024];
} url;

static int parse_url(const char *s, url *u) {
  if (strncmp(s, "http://", 7) != 0) return -1;
  s += 7;
  const char *slash = strchr(s, '/');
  size_t hl = slash ? (size_t)(slash - s) : strlen(s);
  const char *path = slash ? slash : "/";
  if (hl == 0 || strlen(path) >= sizeof u->path) return -1;
  const char *colon = NULL;
  if (s[0] == '[') { /* [v6]:port */
    const char *close = memchr(s, ']', hl);
    if (!close) return -1;
    if ((size_t)(close - s - 1) >= sizeof u->host) return -1;
    memcpy(u->host, s + 1, (size_t)(close - s - 1));
    u->host[close - s - 1] = 0;
    if (close + 1 < s + hl) {
      if (close[1] != ':') return -1;
      colon = close + 1;
    }
  } else {
    colon = memchr(s, ':', hl);
    size_t n = colon ? (size_t)(colon - s) : hl;
    if (n == 0 || n >= sizeof u->host) return -1;
    memcpy(u->host, s, n);
    u->host[n] = 0;
  }
  if (colon) {
    size_t pl = (size_t)(s + hl - colon - 1);
    if (pl == 0 || pl >= sizeof u->port) return -1;
    memcpy(u->port, colon + 1, pl);
    u->port[pl] = 0;
    for (size_t i = 0; i < pl; i++)
      if (u->port[i] < '0' || u->port[i] > '9') return -1;
  } else {
    strcpy(u->port, "80");
  }
  strcpy(u->path, path);
  return 0;
}

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for fd to be ready for ev until the deadline; 0 when it is. */
static int wait_fd(int fd, short ev, double deadline) {
  for (;;) {
    int ms = (int)((deadline - mono()) * 1000);
    if (ms <= 0) return -1;
    struct pollfd p = {fd, ev, 0};
    int r = poll(&p, 1, ms);
    if (r > 0) return 0;
    if (r < 0 && errno != EINTR) return -1;
  }
}

static int connect_to(const url *u, double deadline) {
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(u->host, u->port, &hints, &ai) != 0) return -1;
  int fd = -1;
  for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      int ok = errno == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0;
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      if (ok && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr)) ok = 0;
      if (!ok) {
        close(fd);
        fd = -1;
      }
    }
  }
  freeaddrinfo(ai);
  return fd;
}

static int send_all(int fd, const char *p, size_t n, double deadline) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (wait_fd(fd, POLLOUT, deadline) != 0) return -1;
    } else {
      return -1;
    }
  }
  return 0;
}

int mw_otlp_post(const char *urls, const char *body, size_t len, int timeout_ms,
                 int *retry_after_ms) {
  *retry_after_ms = -1;
  url u;
  if (parse_url(urls, &u) != 0) return 0;
  double deadline = mono() + timeout_ms / 1000.0;
  int fd = connect_to(&u, deadline);
  if (fd < 0) return 0;
  char head[1536];
  int hn = snprintf(head, sizeof head,
                    "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\nUser-Agent: moonwire/" MW_VERSION
                    "\r\n\r\n",
                    u.path, u.host, u.port, len);
  int status = 0;
  if (hn > 0 && (size_t)hn < sizeof head && send_all(fd, head, (size_t)hn, deadline) == 0 &&
      send_all(fd, body, len, deadline) == 0) {
    /* The status line and headers are all we read (bodies are small and
     * say nothing the status does not). */
    char resp[4096];
    size_t got = 0;
    while (got < sizeof resp - 1) {
      ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
      if (r > 0) {
        got += (size_t)r;
        resp[got] = 0;
        if (strstr(resp, "\r\n\r\n")) break;
      } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (wait_fd(fd, POLLIN, deadline) != 0) break;
      } else {
        break;
      }
    }
    resp[got] = 0;
    int code;
    if (sscanf(resp, "HTTP/1.%*d %d", &code) == 1) status = code;
    for (char *h = strstr(resp, "\r\n"); h && h[2] && h[2] != '\r'; h = strstr(h + 2, "\r\n")) {
      if (strncasecmp(h + 2, "retry-after:", 12) == 0) {
        long secs = strtol(h + 14, NULL, 10); /* delta-seconds; an HTTP date reads as 0 */
        if (secs >= 0) *retry_after_ms = (int)(secs > 60 ? 60000 : secs * 1000);
      }
    }
  }
  close(fd);
  return status;
}

/* --- the queue and the thread -------------------------------------------- */

typedef struct item {
  char *json;
  size_t len;
} item;

/* The queue's lock and the exporter's wake-up, held only to move pointers
 * (never across a send). */
static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcv = PTHREAD_COND_INITIALIZER;
static struct {
  item *ring;
  size_t cap, head, count;
  size_t batch;
  int flush_ms;
  char *url, *service_name;
  pthread_t thread;
  int stopping;
  double stop_deadline; /* monotonic, once stopping */
} X;

static atomic_int running;
static atomic_uint_least64_t n_exported, n_dropped, n_failed;
/* X.count, mirrored so that the stats never take the lock. */
static atomic_size_t n_queued;

int mw_otlp_running(void) { return atomic_load_explicit(&running, memory_order_relaxed); }

void mw_otlp_submit(char *json, size_t len) {
  if (!json) return;
  /* A worker never waits for the exporter: the lock is held only to move
   * pointers, so a few tries get it; past that the span is dropped. */
  int locked = 0;
  for (int i = 0; i < 64 && !locked; i++) locked = pthread_mutex_trylock(&qmu) == 0;
  if (locked) {
    if (X.ring && !X.stopping && X.count < X.cap) {
      X.ring[(X.head + X.count) % X.cap] = (item){json, len};
      X.count++;
      atomic_store_explicit(&n_queued, X.count, memory_order_relaxed);
      if (X.count == X.batch) pthread_cond_signal(&qcv);
      pthread_mutex_unlock(&qmu);
      return;
    }
    pthread_mutex_unlock(&qmu);
  }
  free(json);
  atomic_fetch_add(&n_dropped, 1);
}

static int retryable(int status) {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

/* Sends one batch: a few tries, honouring Retry-After, never past the stop
 * deadline once stopping. */
static void export_batch(item *b, size_t n) {
  const char *spans[n ? n : 1];
  size_t lens[n ? n : 1];
  for (size_t i = 0; i < n; i++) {
    spans[i] = b[i].json;
    lens[i] = b[i].len;
  }
  mw_buf body = {0};
  mw_otlp_request_json(&body, X.service_name, spans, lens, n);
  int ok = 0;
  for (int attempt = 0; attempt < 4 && !body.oom; attempt++) {
    int timeout = 5000;
    pthread_mutex_lock(&qmu);
    int stopping = X.stopping;
    double left = X.stop_deadline - mono();
    pthread_mutex_unlock(&qmu);
    if (stopping) {
      if (left <= 0.01) break;
      if (left * 1000 < timeout) timeout = (int)(left * 1000);
    }
    int ra;
    int status = mw_otlp_post(X.url, body.p, body.len, timeout, &ra);
    if (status >= 200 && status < 300) {
      ok = 1;
      break;
    }
    if (status != 0 && !retryable(status)) break; /* 400 and the like: retrying won't help */
    if (status == 0 && attempt >= 1) break;        /* down or hung: don't pile up */
    int delay = ra >= 0 ? ra : 250 << attempt;
    if (delay > 10000) delay = 10000;
    /* Wait, but wake for a stop. */
    pthread_mutex_lock(&qmu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = (long long)ts.tv_nsec + (long long)delay * 1000000LL;
    ts.tv_sec += (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    while (!X.stopping && pthread_cond_timedwait(&qcv, &qmu, &ts) == 0) {
    }
    int now_stopping = X.stopping;
    double now_left = X.stop_deadline - mono();
    pthread_mutex_unlock(&qmu);
    if (now_stopping && now_left * 1000 < delay) break;
  }
  if (ok) {
    atomic_fetch_add(&n_exported, n);
  } else {
    atomic_fetch_add(&n_dropped, n);
    atomic_fetch_add(&n_failed, 1);
    static _Atomic double last_warn;
    double now = mono();
    if (now - atomic_load(&last_warn) > 10) {
      atomic_store(&last_warn, now);
      mw_log(MW_LOG_WARN, "tracing: cannot export %zu span(s) to %s: dropped", n, X.url);
    }
  }
  mw_buf_free(&body);
  for (size_t i = 0; i < n; i++) free(b[i].json);
}

static void *exporter(void *arg) {
  (void)arg;
  item *batch = malloc(X.batch * sizeof *batch);
  pthread_mutex_lock(&qmu);
  for (;;) {
    if (X.count < X.batch && !X.stopping) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      long long ns = (long long)ts.tv_nsec + (long long)X.flush_ms * 1000000LL;
      ts.tv_sec += (time_t)(ns / 1000000000LL);
      ts.tv_nsec = (long)(ns % 1000000000LL);
      while (X.count < X.batch && !X.stopping &&
             pthread_cond_timedwait(&qcv, &qmu, &ts) == 0) {
      }
    }
    if (X.count == 0) {
      if (X.stopping) break;
      continue;
    }
    if (X.stopping && X.stop_deadline <= mono()) break;
    size_t n = X.count < X.batch ? X.count : X.batch;
    for (size_t i = 0; i < n; i++) batch[i] = X.ring[(X.head + i) % X.cap];
    X.head = (X.head + n) % X.cap;
    X.count -= n;
    atomic_store_explicit(&n_queued, X.count, memory_order_relaxed);
    pthread_mutex_unlock(&qmu);
    if (batch) {
      export_batch(batch, n);
    } else {
      atomic_fetch_add(&n_dropped, n);
    }
    pthread_mutex_lock(&qmu);
  }
  /* What the grace left unsent. */
  while (X.count) {
    free(X.ring[X.head].json);
    X.head = (X.head + 1) % X.cap;
    X.count--;
    atomic_fetch_add(&n_dropped, 1);
  }
  atomic_store(&n_queued, 0);
  pthread_mutex_unlock(&qmu);
  free(batch);
  return NULL;
}

int mw_otlp_start(const mw_otlp_options *o, char *err, size_t errlen) {
  if (mw_otlp_running()) return 0;
  url u;
  if (!o->url || parse_url(o->url, &u) != 0) {
    snprintf(err, errlen, "tracing.otlp: cannot use '%s' (expected http://HOST[:PORT]/PATH)",
             o->url ? o->url : "");
    return -1;
  }
  pthread_mutex_lock(&qmu);
  X.cap = o->queue ? o->queue : 4096;
  X.batch = o->batch ? o->batch : 512;
  if (X.batch > X.cap) X.batch = X.cap;
  X.flush_ms = o->flush_ms > 0 ? o->flush_ms : 1000;
  X.ring = calloc(X.cap, sizeof *X.ring);
  X.url = strdup(o->url);
  X.service_name = strdup(o->service_name ? o->service_name : "moonwire");
  X.head = X.count = 0;
  X.stopping = 0;
  int rc = X.ring && X.url && X.service_name ? pthread_create(&X.thread, NULL, exporter, NULL) : -1;
  if (rc != 0) {
    free(X.ring);
    free(X.url);
    free(X.service_name);
    X.ring = NULL;
    X.url = X.service_name = NULL;
    pthread_mutex_unlock(&qmu);
    snprintf(err, errlen, "tracing: cannot start the exporter thread");
    return -1;
  }
  pthread_mutex_unlock(&qmu);
  atomic_store(&running, 1);
  return 0;
}

void mw_otlp_stop(int grace_ms) {
  if (!atomic_exchange(&running, 0)) return;
  pthread_mutex_lock(&qmu);
  X.stopping = 1;
  X.stop_deadline = mono() + (grace_ms > 0 ? grace_ms : 0) / 1000.0;
  pthread_cond_broadcast(&qcv);
  pthread_mutex_unlock(&qmu);
  pthread_join(X.thread, NULL);
  pthread_mutex_lock(&qmu);
  free(X.ring);
  free(X.url);
  free(X.service_name);
  X.ring = NULL;
  X.url = X.service_name = NULL;
  X.cap = X.count = X.head = 0;
  pthread_mutex_unlock(&qmu);
}

void mw_otlp_stats_get(mw_otlp_stats *out) {
  out->exported = atomic_load(&n_exported);
  out->dropped = atomic_load(&n_dropped);
  out->requests_failed = atomic_load(&n_failed);
  out->queued = atomic_load(&n_queued);
}
