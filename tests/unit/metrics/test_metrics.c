/* The metrics registry: declaring families (names, shapes), series and
 * their cap, sharded updates from several threads summed on render, and
 * the text format's escaping and number forms. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/mw_grpc_metrics.h"
#include "base/mw_buf.h"
#include "metrics/mw_promtext.h"
#include "metrics/mw_metrics.h"
#include "mw_test.h"

static char *render(mw_metrics *r) {
  mw_buf b = {0};
  mw_metrics_render(r, &b);
  return mw_buf_take(&b, NULL);
}

static void test_escaping(void) {
  mw_buf b = {0};
  const char v[] = "a\\b\"c\nd";
  mw_promtext_label_value(&b, v, sizeof v - 1);
  MW_CHECK_STR(b.p, "a\\\\b\\\"c\\nd");
  mw_buf_free(&b);
  mw_promtext_help(&b, "line\\one\nline \"two\"");
  MW_CHECK_STR(b.p, "line\\\\one\\nline \"two\"");
  mw_buf_free(&b);
  const char j[] = "q\"\\\x01\n\xc3\xa9";
  mw_buf_json(&b, j, sizeof j - 1);
  MW_CHECK_STR(b.p, "\"q\\\"\\\\\\u0001\\n\xc3\xa9\"");
  mw_buf_free(&b);
}

static void test_values(void) {
  const double in[] = {0, 3, -2, 0.005, 2.5, 1e300, 1.0 / 3};
  const char *out[] = {"0", "3", "-2", "0.005", "2.5", "1e+300", "0.333333333333333"};
  for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
    mw_buf b = {0};
    mw_promtext_value(&b, in[i]);
    if (i < 6) MW_CHECK_STR(b.p, out[i]);
    else MW_CHECK(strtod(b.p, NULL) == in[i]);
    mw_buf_free(&b);
  }
  mw_buf b = {0};
  mw_promtext_value(&b, 1.0 / 0.0);
  MW_CHECK_STR(b.p, "+Inf");
  mw_buf_free(&b);
}

static void test_declare(void) {
  mw_metrics *r = mw_metrics_new(2, 0);
  char err[256];
  const char *l1[] = {"kind"};
  mw_met_family *c = mw_metrics_family(r, MW_MET_COUNTER, "orders_total", "Orders.", l1, 1,
                                       NULL, 0, err, sizeof err);
  MW_CHECK(c != NULL);
  /* The same shape is the same family, whatever the help says. */
  MW_CHECK(mw_metrics_family(r, MW_MET_COUNTER, "orders_total", "Other help.", l1, 1, NULL, 0,
                             err, sizeof err) == c);
  MW_CHECK(mw_metrics_family(r, MW_MET_GAUGE, "orders_total", "x", l1, 1, NULL, 0, err,
                             sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "already declared");
  const char *l2[] = {"other"};
  MW_CHECK(mw_metrics_family(r, MW_MET_COUNTER, "orders_total", "x", l2, 1, NULL, 0, err,
                             sizeof err) == NULL);
  MW_CHECK(mw_metrics_family(r, MW_MET_COUNTER, "9lives", "x", NULL, 0, NULL, 0, err,
                             sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "bad metric name");
  MW_CHECK(mw_metrics_family(r, MW_MET_COUNTER, "a-b", "x", NULL, 0, NULL, 0, err,
                             sizeof err) == NULL);
  const char *bad[] = {"a:b"};
  MW_CHECK(mw_metrics_family(r, MW_MET_COUNTER, "ok_total", "x", bad, 1, NULL, 0, err,
                             sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "bad label name");
  const char *le[] = {"le"};
  MW_CHECK(mw_metrics_family(r, MW_MET_HISTOGRAM, "h", "x", le, 1, NULL, 0, err,
                             sizeof err) == NULL);
  const double down[] = {1, 0.5};
  MW_CHECK(mw_metrics_family(r, MW_MET_HISTOGRAM, "h", "x", NULL, 0, down, 2, err,
                             sizeof err) == NULL);
  MW_CHECK_CONTAINS(err, "increasing");
  const double b1[] = {1, 2}, b2[] = {1, 3};
  mw_met_family *h = mw_metrics_family(r, MW_MET_HISTOGRAM, "h", "x", NULL, 0, b1, 2, err,
                                       sizeof err);
  MW_CHECK(h != NULL);
  MW_CHECK(mw_metrics_family(r, MW_MET_HISTOGRAM, "h", "x", NULL, 0, b2, 2, err,
                             sizeof err) == NULL);
  mw_metrics_free(r);
}

static void test_render(void) {
  mw_metrics *r = mw_metrics_new(1, 0);
  char err[256];
  const char *l[] = {"path"};
  mw_met_family *c = mw_metrics_family(r, MW_MET_COUNTER, "req_total", "Requests\nseen.", l, 1,
                                       NULL, 0, err, sizeof err);
  const char *v[] = {"/a\"b\\c\n"};
  mw_met_add(mw_met_series_get(c, v, NULL), 2);
  mw_met_family *g = mw_metrics_family(r, MW_MET_GAUGE, "depth", "Depth.", NULL, 0, NULL, 0,
                                       err, sizeof err);
  mw_met_series *gs = mw_met_series_get(g, NULL, NULL);
  mw_met_set(gs, 5);
  mw_met_add(gs, -1.5);
  const double b[] = {0.1, 1};
  mw_met_family *h = mw_metrics_family(r, MW_MET_HISTOGRAM, "lat_seconds", "Latency.", NULL, 0,
                                       b, 2, err, sizeof err);
  mw_met_series *hs = mw_met_series_get(h, NULL, NULL);
  mw_met_observe(hs, 0.05);
  mw_met_observe(hs, 0.1); /* upper bounds are inclusive */
  mw_met_observe(hs, 0.5);
  mw_met_observe(hs, 7);
  char *text = render(r);
  MW_CHECK_STR(text,
               "# HELP req_total Requests\\nseen.\n"
               "# TYPE req_total counter\n"
               "req_total{path=\"/a\\\"b\\\\c\\n\"} 2\n"
               "# HELP depth Depth.\n"
               "# TYPE depth gauge\n"
               "depth 3.5\n"
               "# HELP lat_seconds Latency.\n"
               "# TYPE lat_seconds histogram\n"
               "lat_seconds_bucket{le=\"0.1\"} 2\n"
               "lat_seconds_bucket{le=\"1\"} 3\n"
               "lat_seconds_bucket{le=\"+Inf\"} 4\n"
               "lat_seconds_sum 7.65\n"
               "lat_seconds_count 4\n");
  free(text);
  mw_metrics_free(r);
}

static void test_cap(void) {
  mw_metrics *r = mw_metrics_new(1, 3);
  char err[256];
  const char *l[] = {"k"};
  mw_met_family *c = mw_metrics_family(r, MW_MET_COUNTER, "c_total", "", l, 1, NULL, 0, err,
                                       sizeof err);
  const char *names[] = {"a", "b", "c", "d", "e"};
  for (int i = 0; i < 5; i++) {
    mw_met_series *s = mw_met_series_get(c, &names[i], NULL);
    if (i < 3) MW_CHECK(s != NULL);
    else MW_CHECK(s == NULL);
  }
  /* Known combinations still count past the cap. */
  MW_CHECK(mw_met_series_get(c, &names[1], NULL) != NULL);
  mw_metrics_free(r);
}

/* Workers on their shards, another thread on the shared one: the sums are
 * exact. */
typedef struct worker_arg {
  mw_met_series *s, *h;
  int shard;
} worker_arg;

static void *worker(void *p) {
  worker_arg *a = p;
  mw_metrics_thread_shard(a->shard);
  for (int i = 0; i < 100000; i++) {
    mw_met_add(a->s, 1);
    mw_met_observe(a->h, 0.5);
  }
  return NULL;
}

static void test_shards(void) {
  mw_metrics *r = mw_metrics_new(3, 0);
  char err[256];
  mw_met_family *c = mw_metrics_family(r, MW_MET_COUNTER, "n_total", "", NULL, 0, NULL, 0, err,
                                       sizeof err);
  mw_met_family *h = mw_metrics_family(r, MW_MET_HISTOGRAM, "h", "", NULL, 0, NULL, 0, err,
                                       sizeof err);
  /* Enough series to cross a slot page. */
  const char *l[] = {"i"};
  mw_met_family *many = mw_metrics_family(r, MW_MET_HISTOGRAM, "many", "", l, 1, NULL, 0, err,
                                          sizeof err);
  for (int i = 0; i < 200; i++) {
    char buf[16];
    snprintf(buf, sizeof buf, "%d", i);
    const char *v[] = {buf};
    mw_met_observe(mw_met_series_get(many, v, NULL), 1);
  }
  worker_arg args[5];
  pthread_t t[5];
  for (int i = 0; i < 5; i++) {
    /* shards 0..2 are workers'; -1 and 7 land on the shared one */
    args[i] = (worker_arg){mw_met_series_get(c, NULL, NULL), mw_met_series_get(h, NULL, NULL),
                           i < 3 ? i : (i == 3 ? -1 : 7)};
    pthread_create(&t[i], NULL, worker, &args[i]);
  }
  for (int i = 0; i < 5; i++) pthread_join(t[i], NULL);
  MW_CHECK(mw_met_value(args[0].s) == 500000);
  char *text = render(r);
  MW_CHECK_CONTAINS(text, "n_total 500000\n");
  MW_CHECK_CONTAINS(text, "h_bucket{le=\"0.5\"} 500000\n");
  MW_CHECK_CONTAINS(text, "h_sum 250000\n");
  MW_CHECK_CONTAINS(text, "many_count{i=\"199\"} 1\n");
  free(text);
  mw_metrics_free(r);
}

static void test_grpc(void) {
  mw_metrics *r = mw_metrics_new(1, 0);
  char err[256];
  MW_CHECK_INT(mw_grpc_metrics_declare(r, err, sizeof err), 0);
  mw_metrics_set_current(r);
  const char p[] = "/pkg.Svc/Do";
  mw_grpc_series *s = mw_grpc_series_for(p, sizeof p - 1, 3);
  MW_CHECK(s == mw_grpc_series_for(p, sizeof p - 1, 3)); /* cached */
  MW_CHECK(s != mw_grpc_series_for(p, sizeof p - 1, 0)); /* by kind too */
  mw_grpc_started(s);
  mw_grpc_handled(s, 4, 0.02, 3, 2);
  mw_grpc_handled(s, 99, 0.02, 0, 0);
  mw_grpc_count_shed();
  char *text = render(r);
  MW_CHECK_CONTAINS(text, "grpc_server_started_total{grpc_type=\"bidi_stream\","
                          "grpc_service=\"pkg.Svc\",grpc_method=\"Do\"} 1\n");
  MW_CHECK_CONTAINS(text, "grpc_server_handled_total{grpc_type=\"bidi_stream\","
                          "grpc_service=\"pkg.Svc\",grpc_method=\"Do\","
                          "grpc_code=\"DeadlineExceeded\"} 1\n");
  MW_CHECK_CONTAINS(text, "grpc_code=\"Unknown\"} 1\n");
  MW_CHECK_CONTAINS(text, "grpc_server_msg_received_total{grpc_type=\"bidi_stream\","
                          "grpc_service=\"pkg.Svc\",grpc_method=\"Do\"} 3\n");
  MW_CHECK_CONTAINS(text, "grpc_server_handling_seconds_bucket{grpc_type=\"bidi_stream\","
                          "grpc_service=\"pkg.Svc\",grpc_method=\"Do\",le=\"0.025\"} 2\n");
  MW_CHECK_CONTAINS(text, "moonwire_shed_calls_total 1\n");
  free(text);
  MW_CHECK_STR(mw_grpc_code_name(1), "Canceled");
  MW_CHECK_STR(mw_grpc_code_name(16), "Unauthenticated");
  mw_grpc_metrics_forget();
  mw_metrics_free(r);
  MW_CHECK(mw_metrics_current() == NULL);
}

int main(void) {
  MW_RUN(test_escaping);
  MW_RUN(test_values);
  MW_RUN(test_declare);
  MW_RUN(test_render);
  MW_RUN(test_cap);
  MW_RUN(test_shards);
  MW_RUN(test_grpc);
  return mw_test_done();
}
