/* W3C traceparent/tracestate parsing, ids, sampling, and the OTLP JSON the
 * exporter sends (trace/). */
#include <stdlib.h>
#include <string.h>

#include "mw_test.h"
#include "trace/mw_otlp.h"
#include "trace/mw_tracectx.h"

#define TP(s) mw_traceparent_parse(s, strlen(s), &p)

static void test_traceparent(void) {
  mw_test_current = "traceparent";
  mw_traceparent p;
  MW_CHECK_INT(TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), 0);
  MW_CHECK_INT(p.trace_id[0], 0x4b);
  MW_CHECK_INT(p.trace_id[15], 0x36);
  MW_CHECK_INT(p.parent_id[0], 0x00);
  MW_CHECK_INT(p.parent_id[7], 0xb7);
  MW_CHECK_INT(p.flags, 1);
  MW_CHECK_INT(TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), 0);
  MW_CHECK_INT(p.flags, 0);
  /* flags other than sampled are kept (and ignored) */
  MW_CHECK_INT(TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09"), 0);
  MW_CHECK_INT(p.flags & 1, 1);
  /* a later version: the first 55 characters, then nothing or '-' */
  MW_CHECK_INT(TP("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), 0);
  MW_CHECK_INT(TP("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"), 0);
  MW_CHECK_INT(TP("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"), -1);
  const char *bad[] = {
      "",
      "00",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",    /* short */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",  /* 00 with more */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* version ff */
      "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   /* uppercase */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   /* zero trace */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   /* zero parent */
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
      "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
      " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    memset(&p, 0x5a, sizeof p);
    int rc = TP(bad[i]);
    if (rc != -1) fprintf(stderr, "accepted: '%s'\n", bad[i]);
    MW_CHECK_INT(rc, -1);
    MW_CHECK_INT(p.flags, 0x5a); /* untouched on failure */
  }
  MW_CHECK_INT(mw_traceparent_parse(NULL, 0, &p), -1);
}

static void test_tracestate(void) {
  mw_test_current = "tracestate";
  MW_CHECK(mw_tracestate_ok("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", 39));
  MW_CHECK(mw_tracestate_ok("", 0));
  char buf[600];
  memset(buf, 'a', sizeof buf);
  MW_CHECK(mw_tracestate_ok(buf, 512));
  MW_CHECK(!mw_tracestate_ok(buf, 513));
  /* 32 members fine, 33 not */
  size_t n = 0;
  for (int i = 0; i < 33; i++) n += (size_t)sprintf(buf + n, "%sk%d=v", i ? "," : "", i);
  MW_CHECK(!mw_tracestate_ok(buf, n));
  MW_CHECK(mw_tracestate_ok(buf, (size_t)(strrchr(buf, ',') - buf)));
  MW_CHECK(!mw_tracestate_ok("a=b\n", 4));
}

static void test_ids(void) {
  mw_test_current = "ids";
  uint8_t a[16], b[16];
  int distinct = 1;
  for (int i = 0; i < 1000; i++) {
    mw_trace_random(a, 16);
    mw_trace_random(b, 16);
    if (memcmp(a, b, 16) == 0) distinct = 0;
  }
  MW_CHECK(distinct);
  uint8_t one;
  int zero_seen = 0;
  /* one byte ids: 1 in 256 would be zero without the retry */
  for (int i = 0; i < 5000; i++) {
    mw_trace_random(&one, 1);
    if (one == 0) zero_seen = 1;
  }
  MW_CHECK(!zero_seen);
  char hex[33];
  uint8_t id[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
  mw_trace_hex(id, 8, hex);
  MW_CHECK_STR(hex, "00f067aa0ba902b7");
}

static void test_sample(void) {
  mw_test_current = "sample";
  uint8_t id[16] = {0};
  MW_CHECK(mw_trace_sample(id, 1.0));
  MW_CHECK(!mw_trace_sample(id, 0.0));
  memset(id + 9, 0xff, 7); /* the highest random part */
  MW_CHECK(!mw_trace_sample(id, 0.5));
  memset(id + 9, 0x00, 7);
  id[15] = 1;
  MW_CHECK(mw_trace_sample(id, 0.5));
  /* a ratio samples about that share of random ids */
  int n = 0;
  for (int i = 0; i < 20000; i++) {
    mw_trace_random(id, 16);
    n += mw_trace_sample(id, 0.25);
  }
  MW_CHECK(n > 4000 && n < 6000);
}

static void test_json(void) {
  mw_test_current = "json";
  mw_buf b = {0};
  mw_buf_json(&b, "a\"b\\c\nd\x01\x7f\xc3\xa9", 11);
  MW_CHECK_STR(b.p, "\"a\\\"b\\\\c\\nd\\u0001\\u007f\xc3\xa9\"");
  mw_buf_free(&b);

  mw_buf attrs = {0};
  mw_otlp_attr_str(&attrs, "rpc.system", 10, "grpc", 4);
  mw_otlp_attr_int(&attrs, "rpc.grpc.status_code", 20, 13);
  mw_otlp_attr_double(&attrs, "x", 1, 0.5);
  mw_otlp_attr_bool(&attrs, "y", 1, 1);
  MW_CHECK_STR(attrs.p,
               "{\"key\":\"rpc.system\",\"value\":{\"stringValue\":\"grpc\"}},"
               "{\"key\":\"rpc.grpc.status_code\",\"value\":{\"intValue\":\"13\"}},"
               "{\"key\":\"x\",\"value\":{\"doubleValue\":0.5}},"
               "{\"key\":\"y\",\"value\":{\"boolValue\":true}}");

  mw_otlp_span s = {0};
  for (int i = 0; i < 16; i++) s.trace_id[i] = (uint8_t)(0x10 + i);
  for (int i = 0; i < 8; i++) s.span_id[i] = (uint8_t)(0xa0 + i);
  for (int i = 0; i < 8; i++) s.parent_id[i] = (uint8_t)(0x01 + i);
  s.has_parent = 1;
  s.name = "pkg.Svc/M";
  s.kind = 2;
  s.start_ns = 1700000000123456789ull;
  s.end_ns = 1700000000223456789ull;
  s.attrs = attrs.p;
  s.events = "{\"timeUnixNano\":\"1\",\"name\":\"rpc.message\",\"attributes\":[]}";
  s.status = 2;
  s.status_message = "boom \"x\"";
  mw_buf sp = {0};
  mw_otlp_span_json(&sp, &s);
  const char *want =
      "{\"traceId\":\"101112131415161718191a1b1c1d1e1f\",\"spanId\":\"a0a1a2a3a4a5a6a7\","
      "\"parentSpanId\":\"0102030405060708\",\"name\":\"pkg.Svc/M\",\"kind\":2,"
      "\"startTimeUnixNano\":\"1700000000123456789\",\"endTimeUnixNano\":\"1700000000223456789\","
      "\"attributes\":[";
  MW_CHECK(strncmp(sp.p, want, strlen(want)) == 0);
  MW_CHECK_CONTAINS(sp.p, "],\"events\":[{\"timeUnixNano\":\"1\",\"name\":\"rpc.message\"");
  MW_CHECK_CONTAINS(sp.p, ",\"status\":{\"code\":2,\"message\":\"boom \\\"x\\\"\"}}");

  /* no parent, no events, status unset: neither parentSpanId nor message */
  mw_otlp_span s2 = s;
  s2.has_parent = 0;
  s2.events = NULL;
  s2.attrs = NULL;
  s2.status = 0;
  s2.status_message = NULL;
  mw_buf sp2 = {0};
  mw_otlp_span_json(&sp2, &s2);
  MW_CHECK(strstr(sp2.p, "parentSpanId") == NULL);
  MW_CHECK_CONTAINS(sp2.p, "\"attributes\":[],\"events\":[],\"status\":{\"code\":0}}");

  const char *spans[2] = {sp.p, sp2.p};
  size_t lens[2] = {sp.len, sp2.len};
  mw_buf req = {0};
  mw_otlp_request_json(&req, "svc", spans, lens, 2);
  const char *head =
                   "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
                   "\"value\":{\"stringValue\":\"svc\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":"
                   "\"moonwire\",\"version\":\"";
  MW_CHECK(strncmp(req.p, head, strlen(head)) == 0);
  MW_CHECK_CONTAINS(req.p, "\"spans\":[{\"traceId\"");
  MW_CHECK(strstr(req.p, "}]}]}]}") == req.p + req.len - 7);
  MW_CHECK_INT(req.oom, 0);
  mw_buf_free(&req);
  mw_buf_free(&sp);
  mw_buf_free(&sp2);
  mw_buf_free(&attrs);
}

static void test_exporter_down(void) {
  mw_test_current = "exporter";
  char err[256];
  mw_otlp_options bad = {.url = "https://x/v1/traces"};
  MW_CHECK_INT(mw_otlp_start(&bad, err, sizeof err), -1);
  MW_CHECK_CONTAINS(err, "tracing.otlp");
  /* Port 1 on loopback: refused at once. Spans are dropped and counted,
   * submit never waits, and stop returns within its grace. */
  mw_otlp_options o = {.url = "http://127.0.0.1:1/v1/traces", .batch = 2, .queue = 4,
                       .flush_ms = 10};
  MW_CHECK_INT(mw_otlp_start(&o, err, sizeof err), 0);
  MW_CHECK(mw_otlp_running());
  for (int i = 0; i < 100; i++) mw_otlp_submit(strdup("{}"), 2);
  mw_otlp_stop(200);
  mw_otlp_stop(200); /* twice is fine */
  MW_CHECK(!mw_otlp_running());
  mw_otlp_stats st;
  mw_otlp_stats_get(&st);
  MW_CHECK_INT(st.exported, 0);
  MW_CHECK_INT(st.dropped, 100);
  MW_CHECK_INT(st.queued, 0);
  mw_otlp_submit(strdup("{}"), 2); /* after the stop: dropped, not leaked */
  mw_otlp_stats_get(&st);
  MW_CHECK_INT(st.dropped, 101);
  int ra;
  MW_CHECK_INT(mw_otlp_post("http://127.0.0.1:1/", "{}", 2, 500, &ra), 0);
  MW_CHECK_INT(ra, -1);
}

int main(void) {
  test_traceparent();
  test_tracestate();
  test_ids();
  test_sample();
  test_json();
  test_exporter_down();
  return mw_test_done();
}
