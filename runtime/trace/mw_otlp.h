/* OTLP/HTTP JSON: the encoding of spans (ExportTraceServiceRequest, with the
 * OTLP JSON rules: hex ids, int64 as strings, enums as ints, lowerCamelCase)
 * and the process's exporter: a bounded span queue that workers hand
 * finished spans to without ever waiting, and one background thread that
 * batches them and POSTs them to the collector over plain HTTP/1.1. */
#ifndef MW_OTLP_H
#define MW_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "base/mw_buf.h"

/* One attribute, {"key":k,"value":{...}}, preceded by a comma unless b is
 * empty or ends in '[' or '{' (the first of a list). */
void mw_otlp_attr_str(mw_buf *b, const char *key, size_t klen, const char *v, size_t vlen);
void mw_otlp_attr_int(mw_buf *b, const char *key, size_t klen, int64_t v);
void mw_otlp_attr_double(mw_buf *b, const char *key, size_t klen, double v);
void mw_otlp_attr_bool(mw_buf *b, const char *key, size_t klen, int v);

/* A finished span. attrs and events are JSON list bodies (the text between
 * the brackets, possibly empty), borrowed. */
typedef struct mw_otlp_span {
  uint8_t trace_id[16], span_id[8], parent_id[8];
  int has_parent;
  const char *name;
  int kind;                   /* 2: SERVER */
  uint64_t start_ns, end_ns;  /* Unix epoch nanoseconds */
  const char *attrs, *events; /* may be NULL */
  int status;                 /* 0 unset, 1 ok, 2 error */
  const char *status_message; /* NULL: none */
} mw_otlp_span;

/* Appends the span's JSON object to b. */
void mw_otlp_span_json(mw_buf *b, const mw_otlp_span *s);

/* Appends the whole ExportTraceServiceRequest around n span objects. */
void mw_otlp_request_json(mw_buf *b, const char *service_name, const char *const *spans,
                          const size_t *lens, size_t n);

/* --- the exporter (one per process) ------------------------------------- */

typedef struct mw_otlp_options {
  const char *url;          /* http://host[:port]/path */
  const char *service_name; /* NULL: "moonwire" */
  size_t batch, queue;
  int flush_ms;
} mw_otlp_options;

/* Starts the exporter thread. Returns 0, or -1 with a message in err (a
 * URL it cannot use, no thread). A second call while running does nothing
 * and returns 0 (the settings of a reload apply at the next start). */
int mw_otlp_start(const mw_otlp_options *o, char *err, size_t errlen);

/* Whether the exporter runs (the trace interceptor is installed then). */
int mw_otlp_running(void);

/* Hands one span's JSON (malloc'd, owned by the exporter from here on) to
 * the queue. Never waits: when the queue is full or its lock is busy for
 * long, the span is freed and counted as dropped. Thread-safe. */
void mw_otlp_submit(char *json, size_t len);

/* Stops the exporter: what is queued is sent for at most grace_ms, the rest
 * dropped; then the thread is joined. Safe to call twice or unstarted. */
void mw_otlp_stop(int grace_ms);

/* The exporter's counters, for mw.stats() and metrics: atomics, read
 * without a lock from any thread. */
typedef struct mw_otlp_stats {
  uint64_t exported;   /* spans the collector accepted */
  uint64_t dropped;    /* spans lost: queue full, or the collector failing */
  uint64_t queued;     /* spans waiting now */
  uint64_t requests_failed; /* export requests that gave up */
} mw_otlp_stats;
void mw_otlp_stats_get(mw_otlp_stats *out);

/* Test hook: one POST of body to url with the exporter's client; returns
 * the HTTP status (0 when no answer) and sets *retry_after_ms (-1: none). */
int mw_otlp_post(const char *url, const char *body, size_t len, int timeout_ms,
                 int *retry_after_ms);

#endif
