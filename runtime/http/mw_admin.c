/* The admin routes (mw_admin.h). */
#include "http/mw_admin.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o.h>

#include "core/mw_debug.h"
#include "http/mw_console.h"
#include "http/mw_http.h"
#include "http/mw_web.h"
#include "lua/mw_health.h"
#include "base/mw_buf.h"
#include "base/mw_jscan.h"
#include "metrics/mw_metrics.h"
#include "shared/mw_stubreg.h"
#include "trace/mw_otlp.h"

/* How long /debug/calls waits for each worker's answer. */
#define MW_ADMIN_DEBUG_WAIT_S 1.0

struct mw_admin {
  mw_http *http;
  mw_server *server;
  mw_lua_mem *mem;
  int n_mem;
  /* The console's calls (/console/rpc/...), when the console is served
   * here (console on, no HTTP listener); NULL otherwise. */
  mw_web *web;
  pthread_mutex_t mu; /* config_json */
  char *config_json;  /* owned */
  size_t config_len;
};

/* --- /debug/config ------------------------------------------------------ */

static void jkey(mw_buf *b, int *first, const char *k) {
  mw_buf_puts(b, *first ? "" : ",");
  *first = 0;
  mw_buf_json(b, k, strlen(k));
  mw_buf_puts(b, ":");
}
int mw_admin_is_secret(const char *key) {
  static const char *const words[] = {"secret", "token", "password", "passwd", "credential",
                                      "private", "hmac"};
  size_t n = strlen(key);
  char low[128];
  if (n >= sizeof low) n = sizeof low - 1;
  for (size_t i = 0; i < n; i++)
    low[i] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] - 'A' + 'a' : key[i]);
  low[n] = 0;
  if ((n >= 5 && strcmp(low + n - 5, "_file") == 0) ||
      (n >= 5 && strcmp(low + n - 5, "_path") == 0))
    return 0;
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strstr(low, words[i])) return 1;
  return n >= 4 && strcmp(low + n - 4, "_key") == 0;
}

static void jstr(mw_buf *b, int *first, const char *k, const char *v) {
  jkey(b, first, k);
  if (v && mw_admin_is_secret(k)) mw_buf_puts(b, "\"<redacted>\"");
  else if (v) mw_buf_json(b, v, strlen(v));
  else mw_buf_puts(b, "null");
}
static void jint(mw_buf *b, int *first, const char *k, long long v) {
  jkey(b, first, k);
  mw_buf_printf(b, "%lld", v);
}
static void jbool(mw_buf *b, int *first, const char *k, int v) {
  jkey(b, first, k);
  mw_buf_puts(b, v ? "true" : "false");
}
static void jlist(mw_buf *b, int *first, const char *k, const mw_strvec *l) {
  jkey(b, first, k);
  mw_buf_puts(b, "[");
  for (size_t i = 0; i < l->n; i++) {
    if (i) mw_buf_puts(b, ",");
    mw_buf_json(b, l->v[i], strlen(l->v[i]));
  }
  mw_buf_puts(b, "]");
}

/* An interceptor's options as written, any value under a secret-looking key
 * (a JWT shared secret, a token) redacted however deep it sits. */
static void jvalue(mw_buf *b, const mw_config_value *v, int secret) {
  if (secret && v->type != MW_CV_NIL) {
    mw_buf_puts(b, "\"<redacted>\"");
    return;
  }
  switch (v->type) {
  case MW_CV_BOOL: mw_buf_puts(b, v->boolean ? "true" : "false"); break;
  case MW_CV_INT: mw_buf_printf(b, "%lld", (long long)v->i); break;
  case MW_CV_FLOAT: /* JSON has no inf or nan (.inf, .nan in YAML) */
    if (isfinite(v->f)) mw_buf_printf(b, "%.17g", v->f);
    else mw_buf_puts(b, "null");
    break;
  case MW_CV_STRING: mw_buf_json(b, v->s, v->len); break;
  case MW_CV_MAP: {
    int f = 1;
    mw_buf_puts(b, "{");
    for (size_t i = 0; i < v->n; i++) {
      jkey(b, &f, v->keys[i]);
      jvalue(b, &v->items[i], mw_admin_is_secret(v->keys[i]));
    }
    mw_buf_puts(b, "}");
    break;
  }
  case MW_CV_LIST:
    mw_buf_puts(b, "[");
    for (size_t i = 0; i < v->n; i++) {
      if (i) mw_buf_puts(b, ",");
      jvalue(b, &v->items[i], 0);
    }
    mw_buf_puts(b, "]");
    break;
  default: mw_buf_puts(b, "null"); break;
  }
}

static void jinterceptors(mw_buf *b, int *first, const mw_config_interceptors *l) {
  jkey(b, first, "interceptors");
  mw_buf_puts(b, "[");
  for (size_t i = 0; i < l->n; i++) {
    int f = 1;
    mw_buf_puts(b, i ? ",{" : "{");
    jkey(b, &f, l->v[i].name);
    jvalue(b, &l->v[i].opts, 0);
    mw_buf_puts(b, "}");
  }
  mw_buf_puts(b, "]");
}

/* Only what the config holds is shown: file paths (the TLS key's path, never
 * the key), numbers and switches. Settings that carry secrets themselves
 * (tokens, shared keys) are written as "<redacted>" by their sections. */
char *mw_admin_config_json(const mw_config *c, size_t *len) {
  mw_buf b = {0};
  int f = 1, s;
  mw_buf_puts(&b, "{");
  jstr(&b, &f, "file", c->file);
  jlist(&b, &f, "listen", &c->listen);
  jint(&b, &f, "workers", c->workers);
  jlist(&b, &f, "services", &c->services);
  jlist(&b, &f, "proto_path", &c->proto_path);
  jlist(&b, &f, "protos", &c->protos);
  jkey(&b, &f, "limits");
  s = 1;
  mw_buf_puts(&b, "{");
  jint(&b, &s, "max_receive_bytes", c->limits.max_receive_bytes);
  jint(&b, &s, "max_send_bytes", c->limits.max_send_bytes);
  jint(&b, &s, "send_queue_bytes", c->limits.send_queue_bytes);
  jint(&b, &s, "send_queue_messages", c->limits.send_queue_messages);
  jint(&b, &s, "handler_cpu_ms", c->limits.handler_cpu_ms);
  jint(&b, &s, "handler_slice_ms", c->limits.handler_slice_ms);
  jint(&b, &s, "lua_memory_mb", c->limits.lua_memory_mb);
  jint(&b, &s, "max_concurrent_streams", c->limits.max_concurrent_streams);
  jint(&b, &s, "max_header_list_size", c->limits.max_header_list_size);
  jint(&b, &s, "max_inflight_calls", c->limits.max_inflight_calls);
  jint(&b, &s, "max_rss_mb", c->limits.max_rss_mb);
  mw_buf_puts(&b, "}");
  jkey(&b, &f, "keepalive");
  s = 1;
  mw_buf_puts(&b, "{");
  jint(&b, &s, "time_ms", c->keepalive.time_ms);
  jint(&b, &s, "timeout_ms", c->keepalive.timeout_ms);
  jint(&b, &s, "min_client_ping_ms", c->keepalive.min_client_ping_ms);
  jint(&b, &s, "max_ping_strikes", c->keepalive.max_ping_strikes);
  jint(&b, &s, "max_connection_idle_ms", c->keepalive.max_connection_idle_ms);
  jint(&b, &s, "max_connection_age_ms", c->keepalive.max_connection_age_ms);
  jint(&b, &s, "max_connection_age_grace_ms", c->keepalive.max_connection_age_grace_ms);
  mw_buf_puts(&b, "}");
  jkey(&b, &f, "transport");
  s = 1;
  mw_buf_puts(&b, "{");
  jbool(&b, &s, "bdp_probe", c->transport.bdp_probe);
  jint(&b, &s, "stream_window", c->transport.stream_window);
  jint(&b, &s, "max_frame_size", c->transport.max_frame_size);
  jint(&b, &s, "handshake_timeout_ms", c->transport.handshake_timeout_ms);
  jint(&b, &s, "memory_mb", c->transport.memory_mb);
  mw_buf_puts(&b, "}");
  jkey(&b, &f, "reload");
  s = 1;
  mw_buf_puts(&b, "{");
  jbool(&b, &s, "watch", c->reload.watch);
  mw_buf_puts(&b, "}");
  jkey(&b, &f, "shutdown");
  s = 1;
  mw_buf_puts(&b, "{");
  jint(&b, &s, "grace_ms", c->shutdown_grace_ms);
  jint(&b, &s, "drain_delay_ms", c->shutdown_drain_delay_ms);
  mw_buf_puts(&b, "}");
  jkey(&b, &f, "methods");
  mw_buf_puts(&b, "{");
  s = 1;
  for (size_t i = 0; i < c->n_methods; i++) {
    jkey(&b, &s, c->methods[i].path);
    int m = 1;
    mw_buf_puts(&b, "{");
    jint(&b, &m, "max_concurrent", c->methods[i].max_concurrent);
    jint(&b, &m, "max_receive_bytes", c->methods[i].max_receive_bytes);
    jint(&b, &m, "max_send_bytes", c->methods[i].max_send_bytes);
    jint(&b, &m, "deadline_default_ms", c->methods[i].deadline_default_ms);
    jint(&b, &m, "deadline_max_ms", c->methods[i].deadline_max_ms);
    jinterceptors(&b, &m, &c->methods[i].interceptors);
    jkey(&b, &m, "idempotency"); /* its options, null when not set */
    jvalue(&b, &c->methods[i].idempotency, 0);
    mw_buf_puts(&b, "}");
  }
  mw_buf_puts(&b, "}");
  jstr(&b, &f, "upstream", c->upstream);
  jbool(&b, &f, "health", c->health);
  jbool(&b, &f, "reflection", c->reflection);
  jbool(&b, &f, "console", c->console);
  jkey(&b, &f, "tls");
  s = 1;
  mw_buf_puts(&b, "{");
  jstr(&b, &s, "cert", c->tls.cert);
  jstr(&b, &s, "key", c->tls.key); /* a path; the key itself is never read here */
  jstr(&b, &s, "client_ca", c->tls.client_ca);
  jbool(&b, &s, "require_client_cert", c->tls.require_client_cert);
  mw_buf_puts(&b, "}");
  jkey(&b, &f, "lua");
  s = 1;
  mw_buf_puts(&b, "{");
  jbool(&b, &s, "unsafe", c->lua.unsafe);
  mw_buf_puts(&b, "}");
  jinterceptors(&b, &f, &c->interceptors);
  jkey(&b, &f, "tracing");
  if (c->tracing.otlp) {
    s = 1;
    mw_buf_puts(&b, "{");
    jstr(&b, &s, "otlp", c->tracing.otlp);
    jstr(&b, &s, "service_name", c->tracing.service_name);
    jkey(&b, &s, "sample");
    mw_buf_printf(&b, "%g", c->tracing.sample);
    jint(&b, &s, "batch", c->tracing.batch);
    jint(&b, &s, "flush_ms", c->tracing.flush_ms);
    jint(&b, &s, "queue", c->tracing.queue);
    mw_buf_puts(&b, "}");
  } else {
    mw_buf_puts(&b, "null");
  }
  jkey(&b, &f, "admin");
  s = 1;
  mw_buf_puts(&b, "{");
  jstr(&b, &s, "listen", c->admin.listen);
  jint(&b, &s, "max_connections", c->admin.max_connections);
  jint(&b, &s, "timeout_ms", c->admin.timeout_ms);
  mw_buf_puts(&b, "}");
  jkey(&b, &f, "http");
  s = 1;
  mw_buf_puts(&b, "{");
  jstr(&b, &s, "listen", c->http.listen);
  jint(&b, &s, "max_connections", c->http.max_connections);
  jint(&b, &s, "timeout_ms", c->http.timeout_ms);
  jkey(&b, &s, "cors");
  {
    int s2 = 1;
    mw_buf_puts(&b, "{");
    jlist(&b, &s2, "origins", &c->http.cors_origins);
    jlist(&b, &s2, "headers", &c->http.cors_headers);
    mw_buf_puts(&b, "}");
  }
  mw_buf_puts(&b, "}");
  jkey(&b, &f, "metrics");
  s = 1;
  mw_buf_puts(&b, "{");
  jint(&b, &s, "max_series", c->metrics.max_series);
  mw_buf_puts(&b, "}");
  mw_buf_puts(&b, "}\n");
  return mw_buf_take(&b, len);
}

void mw_admin_set_config(mw_admin *a, const mw_config *cfg) {
  size_t len = 0;
  char *j = mw_admin_config_json(cfg, &len);
  if (!j) return;
  pthread_mutex_lock(&a->mu);
  free(a->config_json);
  a->config_json = j;
  a->config_len = len;
  pthread_mutex_unlock(&a->mu);
}

/* --- /metrics ------------------------------------------------------------ */

static void render_metrics(mw_admin *a, mw_buf *b) {
  mw_metrics *r = mw_metrics_current();
  if (r) mw_metrics_render(r, b);
  mw_server_stats st;
  mw_server_read_stats(a->server, &st);
  int n = mw_server_workers(a->server);
  char wbuf[16];
  const char *lab[2] = {"worker", wbuf};
  mw_metrics_render_header(b, "moonwire_live_calls", "Calls in flight, per worker.", "gauge");
  for (int i = 0; i < n; i++) {
    size_t live, queued;
    mw_server_worker_load(a->server, i, &live, &queued);
    snprintf(wbuf, sizeof wbuf, "%d", i);
    mw_metrics_render_sample(b, "moonwire_live_calls", lab, 1, (double)live);
  }
  mw_metrics_render_header(b, "moonwire_queued_send_bytes",
                           "Response bytes queued and not yet written, per worker.", "gauge");
  for (int i = 0; i < n; i++) {
    size_t live, queued;
    mw_server_worker_load(a->server, i, &live, &queued);
    snprintf(wbuf, sizeof wbuf, "%d", i);
    mw_metrics_render_sample(b, "moonwire_queued_send_bytes", lab, 1, (double)queued);
  }
  mw_metrics_render_header(b, "moonwire_request_slots",
                           "Requests for new calls posted to gRPC core, per worker.", "gauge");
  for (int i = 0; i < n; i++) {
    snprintf(wbuf, sizeof wbuf, "%d", i);
    mw_metrics_render_sample(b, "moonwire_request_slots", lab, 1,
                             (double)mw_server_worker_slots(a->server, i));
  }
  mw_metrics_render_header(b, "moonwire_lua_memory_bytes",
                           "Memory held by the Lua states of each worker.", "gauge");
  for (int i = 0; i < a->n_mem; i++) {
    snprintf(wbuf, sizeof wbuf, "%d", i);
    mw_metrics_render_sample(b, "moonwire_lua_memory_bytes", lab, 1,
                             (double)atomic_load_explicit(&a->mem[i].used, memory_order_relaxed));
  }
  mw_metrics_render_header(b, "moonwire_generation", "Id of the generation now serving.",
                           "gauge");
  mw_metrics_render_sample(b, "moonwire_generation", NULL, 0, st.generation);
  mw_metrics_render_header(b, "moonwire_reloads_total", "Successful reloads.", "counter");
  mw_metrics_render_sample(b, "moonwire_reloads_total", NULL, 0, (double)st.reloads);
  mw_metrics_render_header(b, "moonwire_reload_failures_total",
                           "Reloads that failed (the previous generation kept serving).",
                           "counter");
  mw_metrics_render_sample(b, "moonwire_reload_failures_total", NULL, 0,
                           (double)st.reload_failures);
  mw_metrics_render_header(b, "moonwire_draining", "1 from the start of the drain on.", "gauge");
  mw_metrics_render_sample(b, "moonwire_draining", NULL, 0, mw_health_draining() ? 1 : 0);
  if (mw_otlp_running()) {
    mw_otlp_stats ts;
    mw_otlp_stats_get(&ts);
    mw_metrics_render_header(b, "moonwire_trace_spans_exported_total",
                             "Spans the OTLP collector accepted.", "counter");
    mw_metrics_render_sample(b, "moonwire_trace_spans_exported_total", NULL, 0,
                             (double)ts.exported);
    mw_metrics_render_header(b, "moonwire_trace_spans_dropped_total",
                             "Spans lost: the export queue was full or the collector failed.",
                             "counter");
    mw_metrics_render_sample(b, "moonwire_trace_spans_dropped_total", NULL, 0,
                             (double)ts.dropped);
    mw_metrics_render_header(b, "moonwire_trace_spans_queued",
                             "Spans waiting for the exporter.", "gauge");
    mw_metrics_render_sample(b, "moonwire_trace_spans_queued", NULL, 0, (double)ts.queued);
  }
}

/* --- routing --------------------------------------------------------------- */

static int is(const char *p, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

static void text(mw_http_reply *out, int status, const char *s) {
  out->status = status;
  out->body = strdup(s);
  out->len = out->body ? strlen(s) : 0;
}

/* --- /api: the stub engine's (gripmock's admin API, shared/mw_stubreg.h) ---- */

static void json_reply(mw_http_reply *out, int status, mw_buf *b) {
  out->status = status;
  out->content_type = "application/json";
  out->body = mw_buf_take(b, &out->len);
  if (!out->body) text(out, 500, "out of memory\n");
}

static void json_error(mw_http_reply *out, int status, const char *msg) {
  mw_buf b = {0};
  mw_buf_puts(&b, "{\"error\":");
  mw_buf_json(&b, msg, strlen(msg));
  mw_buf_puts(&b, "}\n");
  json_reply(out, status, &b);
}

/* A stub posted: it must be an object naming its service and method; the
 * rest is checked by each worker's stub engine against its schema (a stub
 * it cannot compile is logged and left out). */
typedef struct post_state {
  mw_buf ids;
  int n;
  const char *why;
} post_state;

static int post_one(void *ud, const char *v, const char *vend) {
  post_state *ps = ud;
  const char *x, *xe;
  char buf[MW_STUBREG_ID_MAX];
  for (int k = 0; k < 2; k++) {
    const char *key = k ? "method" : "service";
    int has = mw_jscan_member(v, vend, key, &x, &xe);
    if (has < 0) {
      ps->why = "a stub must be a JSON object";
      return 1;
    }
    if (has == 0 || mw_jscan_string(x, xe, buf, sizeof buf) < 1) {
      ps->why = k ? "a stub needs \"method\" (a string)" : "a stub needs \"service\" (a string)";
      return 1;
    }
  }
  char id[MW_STUBREG_ID_MAX] = "";
  if (mw_jscan_member(v, vend, "id", &x, &xe) == 1 && mw_jscan_string(x, xe, id, sizeof id) < 0) {
    ps->why = "\"id\" must be a string of at most 63 bytes";
    return 1;
  }
  char used[MW_STUBREG_ID_MAX];
  if (mw_stubreg_add(v, (size_t)(vend - v), id, used, &ps->why) != 0) return 1;
  mw_buf_puts(&ps->ids, ps->n++ ? "," : "");
  mw_buf_json(&ps->ids, used, strlen(used));
  return 0;
}

static void api_post_stubs(const char *body, size_t blen, mw_http_reply *out) {
  const char *end = body + blen, *p = mw_jscan_ws(body, end);
  post_state ps = {{0}, 0, NULL};
  mw_buf_puts(&ps.ids, "[");
  int bad;
  if (p < end && *p == '[') {
    bad = mw_jscan_array(p, end, post_one, &ps) < 0;
  } else {
    const char *ve = mw_jscan_value(p, end);
    bad = !ve || mw_jscan_ws(ve, end) != end || post_one(&ps, p, ve);
  }
  if (bad) {
    mw_buf_free(&ps.ids);
    json_error(out, 400, ps.why ? ps.why : "the body must be a stub (a JSON object) or a list of them");
    return;
  }
  mw_buf_puts(&ps.ids, "]\n");
  json_reply(out, 200, &ps.ids);
}

/* POST /api/verify {"service", "method", "expectedCount"}: 200 when the
 * method was called that many times, else 400 with what was seen. */
static void api_verify(const char *body, size_t blen, mw_http_reply *out) {
  const char *end = body + blen, *x, *xe;
  char svc[256], meth[256], num[32];
  if (mw_jscan_member(body, end, "service", &x, &xe) != 1 ||
      mw_jscan_string(x, xe, svc, sizeof svc) < 1 ||
      mw_jscan_member(body, end, "method", &x, &xe) != 1 ||
      mw_jscan_string(x, xe, meth, sizeof meth) < 1) {
    json_error(out, 400, "verify needs {\"service\": ..., \"method\": ..., \"expectedCount\": N}");
    return;
  }
  long long want = 0;
  if (mw_jscan_member(body, end, "expectedCount", &x, &xe) == 1) {
    size_t n = (size_t)(xe - x);
    char *stop = NULL;
    if (n >= sizeof num) n = sizeof num - 1;
    memcpy(num, x, n);
    num[n] = 0;
    want = strtoll(num, &stop, 10);
    if (n == 0 || *stop || want < 0) {
      json_error(out, 400, "expectedCount must be a whole number");
      return;
    }
  }
  unsigned long long got = mw_stubreg_count(svc, meth);
  mw_buf b = {0};
  if (got == (unsigned long long)want) {
    mw_buf_printf(&b, "{\"message\":\"ok\",\"expected\":%lld,\"actual\":%llu}\n", want, got);
    json_reply(out, 200, &b);
  } else {
    char msg[600];
    snprintf(msg, sizeof msg, "%s/%s: expected %lld calls, got %llu", svc, meth, want, got);
    mw_buf_printf(&b, "{\"expected\":%lld,\"actual\":%llu,\"message\":", want, got);
    mw_buf_json(&b, msg, strlen(msg));
    mw_buf_puts(&b, "}\n");
    json_reply(out, 400, &b);
  }
}

static int starts(const char *p, size_t n, const char *lit) {
  size_t k = strlen(lit);
  return n > k && memcmp(p, lit, k) == 0;
}

/* The /api/ routes; 0 when path is none of them. */
static int api(const char *method, size_t mlen, const char *path, size_t plen, const char *body,
               size_t blen, mw_http_reply *out) {
  mw_buf b = {0};
  if (is(path, plen, "/api/stubs")) {
    if (is(method, mlen, "GET")) {
      out->status = 200;
      out->content_type = "application/json";
      out->body = mw_stubreg_stubs_json(&out->len);
      if (!out->body) text(out, 500, "out of memory\n");
    } else if (is(method, mlen, "POST")) {
      api_post_stubs(body, blen, out);
    } else if (is(method, mlen, "DELETE")) {
      mw_stubreg_clear();
      mw_buf_puts(&b, "{}\n");
      json_reply(out, 200, &b);
    } else {
      text(out, 405, "method not allowed\n");
      out->allow = "GET, POST, DELETE";
    }
  } else if (starts(path, plen, "/api/stubs/")) {
    if (is(method, mlen, "GET")) {
      out->body = mw_stubreg_stub_json(path + 11, plen - 11, &out->len);
      if (out->body) {
        out->status = 200;
        out->content_type = "application/json";
      } else if (out->len) {
        text(out, 500, "out of memory\n");
      } else {
        json_error(out, 404, "no stub with that id");
      }
    } else if (!is(method, mlen, "DELETE")) {
      text(out, 405, "method not allowed\n");
      out->allow = "GET, DELETE";
    } else if (mw_stubreg_delete(path + 11, plen - 11)) {
      mw_buf_puts(&b, "{}\n");
      json_reply(out, 200, &b);
    } else {
      json_error(out, 404, "no stub with that id");
    }
  } else if (is(path, plen, "/api/history")) {
    if (is(method, mlen, "GET")) {
      out->status = 200;
      out->content_type = "application/json";
      out->body = mw_stubreg_history_json(&out->len);
      if (!out->body) text(out, 500, "out of memory\n");
    } else if (is(method, mlen, "DELETE")) {
      mw_stubreg_clear_history();
      mw_buf_puts(&b, "{}\n");
      json_reply(out, 200, &b);
    } else {
      text(out, 405, "method not allowed\n");
      out->allow = "GET, DELETE";
    }
  } else if (is(path, plen, "/api/verify")) {
    if (is(method, mlen, "POST")) {
      api_verify(body, blen, out);
    } else {
      text(out, 405, "method not allowed\n");
      out->allow = "POST";
    }
  } else {
    return 0;
  }
  return 1;
}

static void route(void *ud, const char *method, size_t mlen, const char *path, size_t plen,
                  const char *body, size_t blen, mw_http_reply *out) {
  mw_admin *a = ud;
  if (api(method, mlen, path, plen, body, blen, out)) return;
  int known = is(path, plen, "/metrics") || is(path, plen, "/healthz") ||
              is(path, plen, "/readyz") || is(path, plen, "/debug/calls") ||
              is(path, plen, "/debug/config");
  if (!known) {
    text(out, 404, "not found\n");
    return;
  }
  if (!is(method, mlen, "GET")) {
    text(out, 405, "method not allowed\n");
    out->allow = "GET";
    return;
  }
  if (is(path, plen, "/healthz")) {
    text(out, 200, "ok\n");
  } else if (is(path, plen, "/readyz")) {
    if (mw_health_draining()) text(out, 503, "draining\n");
    else text(out, 200, "ready\n");
  } else if (is(path, plen, "/metrics")) {
    mw_buf b = {0};
    render_metrics(a, &b);
    out->status = 200;
    out->content_type = "text/plain; version=0.0.4; charset=utf-8";
    out->body = mw_buf_take(&b, &out->len);
    if (!out->body) text(out, 500, "out of memory\n");
  } else if (is(path, plen, "/debug/calls")) {
    out->status = 200;
    out->content_type = "application/json";
    out->body = mw_debug_calls(MW_ADMIN_DEBUG_WAIT_S, &out->len);
    if (!out->body) text(out, 500, "out of memory\n");
  } else {
    pthread_mutex_lock(&a->mu);
    out->body = a->config_json ? malloc(a->config_len + 1) : NULL;
    if (out->body) {
      memcpy(out->body, a->config_json, a->config_len + 1);
      out->len = a->config_len;
    }
    pthread_mutex_unlock(&a->mu);
    out->status = out->body ? 200 : 500;
    out->content_type = "application/json";
  }
}

/* --- the console (http/mw_console.h), when it is served here ------------- */

/* Its pages, and its calls through a Connect handler of the admin's own
 * (the methods' paths below MW_CONSOLE_RPC_PREFIX); everything else goes
 * to route(). */
static int console_raw(void *ud, h2o_req_t *req) {
  mw_admin *a = ud;
  size_t pl = strlen(MW_CONSOLE_RPC_PREFIX), n = req->path_normalized.len;
  const char *p = req->path_normalized.base;
  if (n > pl + 1 && memcmp(p, MW_CONSOLE_RPC_PREFIX "/", pl + 1) == 0) {
    /* The handler finds the method by the normalized path. */
    req->path_normalized = h2o_iovec_init(p + pl, n - pl);
    return mw_web_handle(a->web, req);
  }
  return mw_console_serve(req, a->server, MW_CONSOLE_RPC_PREFIX);
}

static void console_on_loop(void *ud, h2o_evloop_t *loop) {
  mw_admin *a = ud;
  mw_web_on_loop(a->web, loop);
}

static void console_on_stop(void *ud, size_t leftover) {
  mw_admin *a = ud;
  mw_web_on_stop(a->web, leftover);
}

mw_admin *mw_admin_start(const mw_config *cfg, mw_server *server, mw_lua_mem *mem, int n_mem,
                         mw_diag *diag) {
  mw_admin *a = calloc(1, sizeof *a);
  if (!a) {
    mw_diag_add(diag, "admin: out of memory");
    return NULL;
  }
  a->server = server;
  a->mem = mem;
  a->n_mem = n_mem;
  pthread_mutex_init(&a->mu, NULL);
  mw_admin_set_config(a, cfg);
  mw_http_opts o = {.max_connections = (long)cfg->admin.max_connections,
                    .timeout_ms = (long)cfg->admin.timeout_ms};
  if (cfg->console && !cfg->http.listen) {
    a->web = mw_web_new(cfg, server, NULL, diag);
    if (!a->web) {
      mw_admin_stop(a);
      return NULL;
    }
    o.raw = console_raw;
    o.on_loop = console_on_loop;
    o.on_stop = console_on_stop;
  }
  a->http = mw_http_start(cfg->admin.listen, &o, route, a, diag);
  if (!a->http) {
    mw_admin_stop(a);
    return NULL;
  }
  return a;
}

const char *mw_admin_address(const mw_admin *a) { return mw_http_address(a->http); }

void mw_admin_stop(mw_admin *a) {
  if (!a) return;
  mw_http_stop(a->http);
  a->http = NULL;
  mw_web_free(a->web); /* after the server: its requests are gone */
  a->web = NULL;
  free(a->config_json);
  pthread_mutex_destroy(&a->mu);
  free(a);
}
