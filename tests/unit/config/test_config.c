/* Unit tests for mw_config: defaults, every key, each kind of error with its
 * exact line:column, path resolution, size and duration units. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/mw_config.h"
#include "base/mw_log.h"
#include "mw_test.h"

static char tmp_root[1024]; /* realpath of MW_TEST_TMP/config */

static void mkdir_p(const char *path) {
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(buf, 0755);
      *p = '/';
    }
  }
  mkdir(buf, 0755);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  MW_CHECK(f != NULL);
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

/* Paths under tmp_root. */
static const char *tmp_path(char *buf, const char *rel) {
  snprintf(buf, PATH_MAX, "%s/%s", tmp_root, rel);
  return buf;
}

/* Loads yaml from a string named "t.yaml" with base_dir tmp_root. */
static int load(mw_config *c, mw_diag *d, const char *yaml) {
  mw_config_init(c);
  memset(d, 0, sizeof *d);
  return mw_config_load_string(c, yaml, strlen(yaml), "t.yaml", tmp_root, d);
}

static const char *msg(const mw_diag *d, size_t i) {
  return i < d->n ? d->msgs[i] : "(no such message)";
}

/* The only error of yaml is expected. */
static void expect_one(const char *yaml, const char *expected) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, yaml), -1);
  MW_CHECK_INT(mw_diag_count(&d), 1);
  MW_CHECK_STR(msg(&d, 0), expected);
  mw_diag_free(&d);
  mw_config_free(&c);
}

static void expect_ok(const char *yaml) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, yaml), 0);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  for (size_t i = 0; i < d.n; i++) fprintf(stderr, "  %s\n", msg(&d, i));
  mw_diag_free(&d);
  mw_config_free(&c);
}

static void check_defaults(const mw_config *c) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1) cores = 1;
  if (cores > 256) cores = 256;
  MW_CHECK(c->file == NULL);
  MW_CHECK_INT(c->listen.n, 1);
  if (c->listen.n == 1) MW_CHECK_STR(c->listen.v[0], "127.0.0.1:50051");
  MW_CHECK_INT(c->workers, cores);
  MW_CHECK_INT(c->services.n, 0);
  MW_CHECK_INT(c->proto_path.n, 0);
  MW_CHECK_INT(c->limits.max_receive_bytes, 4 * 1024 * 1024);
  MW_CHECK_INT(c->limits.max_send_bytes, 4 * 1024 * 1024);
  MW_CHECK_INT(c->limits.send_queue_bytes, 1024 * 1024);
  MW_CHECK_INT(c->limits.send_queue_messages, 64);
  MW_CHECK_INT(c->limits.handler_cpu_ms, 10000);
  MW_CHECK_INT(c->limits.handler_slice_ms, 5);
  MW_CHECK_INT(c->limits.lua_memory_mb, 256);
  MW_CHECK_INT(c->limits.max_concurrent_streams, 100);
  MW_CHECK_INT(c->limits.max_header_list_size, 16384);
  MW_CHECK_INT(c->keepalive.time_ms, 60000);
  MW_CHECK_INT(c->keepalive.timeout_ms, 20000);
  MW_CHECK_INT(c->keepalive.min_client_ping_ms, 300000);
  MW_CHECK_INT(c->keepalive.max_ping_strikes, 2);
  MW_CHECK_INT(c->keepalive.max_connection_idle_ms, 300000);
  MW_CHECK_INT(c->keepalive.max_connection_age_ms, 1800000);
  MW_CHECK_INT(c->keepalive.max_connection_age_grace_ms, 60000);
  MW_CHECK_INT(c->transport.bdp_probe, 0);
  MW_CHECK_INT(c->transport.stream_window, 65536);
  MW_CHECK_INT(c->transport.max_frame_size, 16384);
  MW_CHECK_INT(c->transport.handshake_timeout_ms, 10000);
  MW_CHECK_INT(c->transport.memory_mb, 1024);
  MW_CHECK_INT(c->reload.watch, 1);
  MW_CHECK_INT(c->reload.debounce_ms, 200);
  MW_CHECK_INT(c->log.level, MW_LOG_INFO);
  MW_CHECK_INT(c->log.json, 0);
  MW_CHECK_INT(c->shutdown_grace_ms, 10000);
  MW_CHECK_INT(c->shutdown_drain_delay_ms, 0);
  MW_CHECK_INT(c->health, 1);
  MW_CHECK_INT(c->reflection, 1);
  MW_CHECK_INT(c->lua.unsafe, 0);
}

static void test_defaults(void) {
  mw_config c;
  mw_config_init(&c);
  check_defaults(&c);
  mw_config_free(&c);
  check_defaults(&c);
}

static void test_empty_files(void) {
  const char *empties[] = {"", "# only a comment\n\n   # another\n", "---\n",
                           "--- ~\n", "---\n...\n", "\n\n"};
  for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
    mw_config c;
    mw_diag d;
    MW_CHECK_INT(load(&c, &d, empties[i]), 0);
    MW_CHECK_INT(mw_diag_count(&d), 0);
    check_defaults(&c);
    mw_diag_free(&d);
    mw_config_free(&c);
  }
  /* NULL with length 0 is an empty string too */
  mw_config c;
  mw_diag d = {0};
  mw_config_init(&c);
  MW_CHECK_INT(mw_config_load_string(&c, NULL, 0, NULL, NULL, &d), 0);
  mw_config_free(&c);
  mw_diag_free(&d);
}

static void test_every_key_from_file(void) {
  char p[PATH_MAX], q[PATH_MAX];
  mkdir_p(tmp_path(p, "app/conf"));
  mkdir_p(tmp_path(p, "app/services"));
  mkdir_p(tmp_path(p, "app/conf/more"));
  mkdir_p(tmp_path(p, "protos"));
  write_file(tmp_path(p, "app/conf/moonwire.yaml"),
             "# every key\n"
             "listen:\n"
             "  - 0.0.0.0:9000\n"
             "  - \"[::1]:9001\"\n"
             "  - localhost:0\n"
             "workers: 3\n"
             "services:\n"
             "  - ../services\n"
             "  - more/\n"
             "  - ./more/../more\n" /* the same directory: kept once */
             "proto_path: ../../protos\n"
             "limits:\n"
             "  max_receive_bytes: 8MiB\n"
             "  max_send_bytes: 2MB\n"
             "  send_queue_bytes: 512KiB\n"
             "  send_queue_messages: 16\n"
             "  handler_cpu_ms: 2s\n"
             "  handler_slice_ms: 1ms\n"
             "  lua_memory_mb: 0\n"
             "  max_concurrent_streams: 100\n"
             "  max_header_list_size: 8192\n"
             "keepalive:\n"
             "  time_ms: 1h\n"
             "  timeout_ms: 20s\n"
             "  min_client_ping_ms: 5m\n"
             "  max_ping_strikes: 0\n"
             "  max_connection_idle_ms: 250ms\n"
             "  max_connection_age_ms: 1h30m\n"
             "  max_connection_age_grace_ms: 1500\n"
             "reload:\n"
             "  watch: off\n"
             "  debounce_ms: 1s\n"
             "log:\n"
             "  level: debug\n"
             "  format: json\n"
             "shutdown_grace_ms: 30s\n");
  mw_config c;
  mw_diag d = {0};
  mw_config_init(&c);
  int rc = mw_config_load_file(&c, tmp_path(p, "app/conf/moonwire.yaml"), &d);
  MW_CHECK_INT(rc, 0);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  for (size_t i = 0; i < d.n; i++) fprintf(stderr, "  %s\n", msg(&d, i));
  MW_CHECK_STR(c.file, tmp_path(q, "app/conf/moonwire.yaml"));
  MW_CHECK_INT(c.listen.n, 3);
  if (c.listen.n == 3) {
    MW_CHECK_STR(c.listen.v[0], "0.0.0.0:9000");
    MW_CHECK_STR(c.listen.v[1], "[::1]:9001");
    MW_CHECK_STR(c.listen.v[2], "localhost:0");
  }
  MW_CHECK_INT(c.workers, 3);
  MW_CHECK_INT(c.services.n, 2);
  if (c.services.n == 2) {
    MW_CHECK_STR(c.services.v[0], tmp_path(q, "app/services"));
    MW_CHECK_STR(c.services.v[1], tmp_path(q, "app/conf/more"));
  }
  MW_CHECK_INT(c.proto_path.n, 1);
  if (c.proto_path.n == 1) MW_CHECK_STR(c.proto_path.v[0], tmp_path(q, "protos"));
  MW_CHECK_INT(c.limits.max_receive_bytes, 8 * 1024 * 1024);
  MW_CHECK_INT(c.limits.max_send_bytes, 2000000);
  MW_CHECK_INT(c.limits.send_queue_bytes, 512 * 1024);
  MW_CHECK_INT(c.limits.send_queue_messages, 16);
  MW_CHECK_INT(c.limits.handler_cpu_ms, 2000);
  MW_CHECK_INT(c.limits.handler_slice_ms, 1);
  MW_CHECK_INT(c.limits.lua_memory_mb, 0);
  MW_CHECK_INT(c.limits.max_concurrent_streams, 100);
  MW_CHECK_INT(c.limits.max_header_list_size, 8192);
  MW_CHECK_INT(c.keepalive.time_ms, 3600000);
  MW_CHECK_INT(c.keepalive.timeout_ms, 20000);
  MW_CHECK_INT(c.keepalive.min_client_ping_ms, 300000);
  MW_CHECK_INT(c.keepalive.max_ping_strikes, 0);
  MW_CHECK_INT(c.keepalive.max_connection_idle_ms, 250);
  MW_CHECK_INT(c.keepalive.max_connection_age_ms, 5400000);
  MW_CHECK_INT(c.keepalive.max_connection_age_grace_ms, 1500);
  MW_CHECK_INT(c.reload.watch, 0);
  MW_CHECK_INT(c.reload.debounce_ms, 1000);
  MW_CHECK_INT(c.log.level, MW_LOG_DEBUG);
  MW_CHECK_INT(c.log.json, 1);
  MW_CHECK_INT(c.shutdown_grace_ms, 30000);
  mw_diag_free(&d);

  /* free twice: safe, and back to the defaults */
  mw_config_free(&c);
  check_defaults(&c);
  mw_config_free(&c);
  check_defaults(&c);
}

static void test_scalar_forms(void) {
  mw_config c;
  mw_diag d;
  /* a single listen string, workers auto, flow mappings, quoted numbers */
  MW_CHECK_INT(load(&c, &d,
                    "listen: 10.0.0.1:443\n"
                    "workers: auto\n"
                    "limits: {max_receive_bytes: \"1024\", lua_memory_mb: "
                    "'64'}\n"
                    "reload: {watch: yes}\n"
                    "log: {level: warning, format: text}\n"
                    "shutdown_grace_ms: \"0\"\n"),
               0);
  MW_CHECK_INT(c.listen.n, 1);
  if (c.listen.n) MW_CHECK_STR(c.listen.v[0], "10.0.0.1:443");
  MW_CHECK(c.workers >= 1 && c.workers <= 256);
  MW_CHECK_INT(c.limits.max_receive_bytes, 1024);
  MW_CHECK_INT(c.limits.lua_memory_mb, 64);
  MW_CHECK_INT(c.reload.watch, 1);
  MW_CHECK_INT(c.log.level, MW_LOG_WARN);
  MW_CHECK_INT(c.log.json, 0);
  MW_CHECK_INT(c.shutdown_grace_ms, 0);
  mw_diag_free(&d);
  mw_config_free(&c);

  /* every YAML 1.1 spelling of a boolean */
  const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "ON"};
  const char *no[] = {"false", "False", "no", "NO", "off", "Off"};
  char buf[128];
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    snprintf(buf, sizeof buf, "reload:\n  watch: %s\n", yes[i]);
    MW_CHECK_INT(load(&c, &d, buf), 0);
    MW_CHECK_INT(c.reload.watch, 1);
    mw_diag_free(&d);
    mw_config_free(&c);
  }
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
    snprintf(buf, sizeof buf, "reload:\n  watch: %s\n", no[i]);
    MW_CHECK_INT(load(&c, &d, buf), 0);
    MW_CHECK_INT(c.reload.watch, 0);
    mw_diag_free(&d);
    mw_config_free(&c);
  }

  /* an empty section is an empty mapping */
  expect_ok("limits:\nkeepalive: ~\nreload: {}\nlog:\n");
  /* quoted keys are keys like any other */
  expect_ok("\"workers\": 2\n");
  /* each log level */
  const char *levels[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++) {
    snprintf(buf, sizeof buf, "log:\n  level: %s\n", levels[i]);
    MW_CHECK_INT(load(&c, &d, buf), 0);
    MW_CHECK_INT(c.log.level, i);
    mw_diag_free(&d);
    mw_config_free(&c);
  }
}

static int64_t size_of(const char *text, int *ok) {
  char buf[128];
  mw_config c;
  mw_diag d;
  snprintf(buf, sizeof buf, "limits:\n  max_receive_bytes: %s\n", text);
  *ok = load(&c, &d, buf) == 0;
  int64_t v = c.limits.max_receive_bytes;
  mw_diag_free(&d);
  mw_config_free(&c);
  return v;
}

static int64_t duration_of(const char *text, int *ok) {
  char buf[128];
  mw_config c;
  mw_diag d;
  snprintf(buf, sizeof buf, "shutdown_grace_ms: %s\n", text);
  *ok = load(&c, &d, buf) == 0;
  int64_t v = c.shutdown_grace_ms;
  mw_diag_free(&d);
  mw_config_free(&c);
  return v;
}

/* shutdown, health and reflection: the drain and the built-in services. */
static void test_drain_and_builtins(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, "shutdown:\n  grace: 30s\n  drain_delay: 1500ms\n"
                            "health: false\nreflection: off\n"), 0);
  MW_CHECK_INT(c.shutdown_grace_ms, 30000);
  MW_CHECK_INT(c.shutdown_drain_delay_ms, 1500);
  MW_CHECK_INT(c.health, 0);
  MW_CHECK_INT(c.reflection, 0);
  mw_diag_free(&d);
  mw_config_free(&c);
  /* the older top-level key still sets the grace */
  MW_CHECK_INT(load(&c, &d, "shutdown_grace_ms: 2s\n"), 0);
  MW_CHECK_INT(c.shutdown_grace_ms, 2000);
  mw_diag_free(&d);
  mw_config_free(&c);
  expect_one("shutdown:\n  grace: soon\n",
             "t.yaml:2:10: shutdown.grace: expected a duration in milliseconds (an "
             "integer, or with a unit: 250ms, 20s, 5m, 1h), got 'soon'");
  expect_one("shutdown:\n  drain: 1s\n",
             "t.yaml:2:3: unknown key 'drain' in 'shutdown' (did you mean 'drain_delay'?)");
  expect_one("health: maybe\n",
             "t.yaml:1:9: health: expected a boolean (true/false, yes/no, on/off), got 'maybe'");
  expect_one("reflection: [1]\n",
             "t.yaml:1:13: reflection: expected a boolean (true/false, yes/no, on/off), got a list");
}

/* methods: per-method settings keyed by path; limits.max_inflight_calls. */
static void test_methods_and_shedding(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, "limits: {max_inflight_calls: 100}\nmethods:\n"
                            "  \"/a.B/C\": {max_concurrent: 4}\n  /a.B/D: {}\n"), 0);
  MW_CHECK_INT(c.limits.max_inflight_calls, 100);
  MW_CHECK_INT(c.n_methods, 2);
  if (c.n_methods == 2) {
    MW_CHECK_STR(c.methods[0].path, "/a.B/C");
    MW_CHECK_INT(c.methods[0].max_concurrent, 4);
    MW_CHECK_STR(c.methods[1].path, "/a.B/D");
    MW_CHECK_INT(c.methods[1].max_concurrent, 0);
  }
  mw_diag_free(&d);
  mw_config_free(&c);
  MW_CHECK_INT(c.n_methods, 0); /* freed and reset */
  expect_one("methods:\n  a.B/C: {max_concurrent: 1}\n",
             "t.yaml:2:3: methods: 'a.B/C' is not a method path (expected "
             "\"/package.Service/Method\") "
             "or a service name (\"package.Service\")");
  expect_one("methods:\n  /a.B/C/D: {}\n",
             "t.yaml:2:3: methods: '/a.B/C/D' is not a method path (expected "
             "\"/package.Service/Method\") "
             "or a service name (\"package.Service\")");
  expect_one("methods:\n  /a.B/C: {}\n  /a.B/C: {}\n",
             "t.yaml:3:3: methods: '/a.B/C' is listed twice");
  expect_one("methods:\n  /a.B/C: 3\n",
             "t.yaml:2:11: /a.B/C: expected a mapping (indented 'key: value' lines), got a "
             "scalar");
}

/* interceptors: names and one-key mappings, options as typed trees; per
 * service and per method under methods, with deadline. */
static void test_interceptors(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d,
                    "interceptors:\n"
                    "  - access_log\n"
                    "  - rate_limit: {rate: 10, burst: 2.5, key: peer, on: true, "
                    "every: 500ms, q: '7', l: [1, x], m: {a: ~}}\n"
                    "methods:\n"
                    "  a.B:\n"
                    "    interceptors: [x]\n"
                    "    max_concurrent: 3\n"
                    "  /a.B/C:\n"
                    "    deadline: {default: 2s, max: 10s}\n"
                    "    max_receive_bytes: 1KiB\n"),
               0);
  MW_CHECK_INT(c.interceptors.n, 2);
  if (c.interceptors.n == 2) {
    MW_CHECK_STR(c.interceptors.v[0].name, "access_log");
    MW_CHECK_INT(c.interceptors.v[0].opts.type, MW_CV_MAP);
    MW_CHECK_INT(c.interceptors.v[0].opts.n, 0);
    MW_CHECK_STR(c.interceptors.v[0].where, "t.yaml:2:5");
    const mw_config_value *o = &c.interceptors.v[1].opts;
    MW_CHECK_STR(c.interceptors.v[1].name, "rate_limit");
    MW_CHECK_INT(o->n, 8);
    if (o->n == 8) {
      MW_CHECK_STR(o->keys[0], "rate");
      MW_CHECK_INT(o->items[0].type, MW_CV_INT);
      MW_CHECK_INT(o->items[0].i, 10);
      MW_CHECK_INT(o->items[1].type, MW_CV_FLOAT);
      MW_CHECK(o->items[1].f == 2.5);
      MW_CHECK_INT(o->items[2].type, MW_CV_STRING);
      MW_CHECK_STR(o->items[2].s, "peer");
      MW_CHECK_INT(o->items[3].type, MW_CV_BOOL);
      MW_CHECK_INT(o->items[3].boolean, 1);
      MW_CHECK_STR(o->items[4].s, "500ms");
      MW_CHECK_INT(o->items[5].type, MW_CV_STRING); /* quoted: a string */
      MW_CHECK_INT(o->items[6].type, MW_CV_LIST);
      MW_CHECK_INT(o->items[6].n, 2);
      MW_CHECK_INT(o->items[7].type, MW_CV_MAP);
      MW_CHECK_INT(o->items[7].items[0].type, MW_CV_NIL);
    }
  }
  MW_CHECK_INT(c.n_methods, 2);
  if (c.n_methods == 2) {
    MW_CHECK_STR(c.methods[0].path, "a.B");
    MW_CHECK_INT(c.methods[0].service, 1);
    MW_CHECK_INT(c.methods[0].max_concurrent, 3);
    MW_CHECK_INT(c.methods[0].interceptors.n, 1);
    MW_CHECK_INT(c.methods[1].service, 0);
    MW_CHECK_INT(c.methods[1].max_receive_bytes, 1024);
    MW_CHECK_INT(c.methods[1].deadline_default_ms, 2000);
    MW_CHECK_INT(c.methods[1].deadline_max_ms, 10000);
    MW_CHECK_STR(c.methods[1].deadline_where, "t.yaml:9:5");
  }
  mw_diag_free(&d);
  mw_config_free(&c);
  mw_config_free(&c); /* twice is safe */
  expect_one("interceptors: access_log\n",
             "t.yaml:1:15: interceptors: expected a list of interceptors (names, or "
             "'name: {options}'), got a scalar");
  expect_one("interceptors: [{a: 1, b: 2}]\n",
             "t.yaml:1:16: interceptors: each entry is a name or a one-key mapping name: "
             "{options}, not a mapping with several keys");
  expect_one("interceptors: [Bad-Name]\n",
             "t.yaml:1:16: interceptors: 'Bad-Name' is not an interceptor name (lower-case "
             "letters, digits and _)");
  expect_one("interceptors: [{a: 3}]\n",
             "t.yaml:1:20: interceptors.a: the options must be a mapping, not a scalar");
  expect_one("methods:\n  a.B: {max_send_bytes: 1KiB}\n",
             "t.yaml:2:9: methods.a.B.max_send_bytes: message sizes are set per method "
             "(\"/a.B/Method\"), not per service");
  expect_one("methods:\n  /a.B/C: {deadline: {default: 5s, max: 1s}}\n",
             "t.yaml:2:22: methods./a.B/C.deadline: default (5000 ms) is longer than max "
             "(1000 ms)");
}

/* methods.PATH.idempotency: its options kept as written (checked by the
 * interceptor), with where they were; no value is an empty mapping. */
static void test_idempotency(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d,
                    "methods:\n"
                    "  /a.B/C:\n"
                    "    idempotency: {key: {field: request_id}, ttl: 300ms, required: true}\n"
                    "  a.B:\n"
                    "    idempotency:\n"
                    "  /a.B/D: {max_concurrent: 1}\n"),
               0);
  MW_CHECK_INT(c.n_methods, 3);
  if (c.n_methods == 3) {
    const mw_config_value *o = &c.methods[0].idempotency;
    MW_CHECK_INT(o->type, MW_CV_MAP);
    MW_CHECK_INT(o->n, 3);
    if (o->n == 3) {
      MW_CHECK_STR(o->keys[0], "key");
      MW_CHECK_INT(o->items[0].type, MW_CV_MAP);
      MW_CHECK_STR(o->items[0].keys[0], "field");
      MW_CHECK_STR(o->items[0].items[0].s, "request_id");
      MW_CHECK_STR(o->items[1].s, "300ms");
      MW_CHECK_INT(o->items[2].type, MW_CV_BOOL);
    }
    MW_CHECK_STR(c.methods[0].idempotency_where, "t.yaml:3:5");
    MW_CHECK_INT(c.methods[1].idempotency.type, MW_CV_MAP);
    MW_CHECK_INT(c.methods[1].idempotency.n, 0);
    MW_CHECK_STR(c.methods[1].idempotency_where, "t.yaml:5:5");
    MW_CHECK_INT(c.methods[2].idempotency.type, MW_CV_NIL);
    MW_CHECK(c.methods[2].idempotency_where == NULL);
  }
  mw_diag_free(&d);
  mw_config_free(&c);
  mw_config_free(&c);
  expect_one("methods:\n  /a.B/C: {idempotency: true}\n",
             "t.yaml:2:25: methods./a.B/C.idempotency: expected a mapping of options "
             "({key: metadata, ttl: 24h, ...}), got a scalar");
  expect_one("methods:\n  /a.B/C: {idempotency: {ttl: 1s, ttl: 2s}}\n",
             "t.yaml:2:35: methods./a.B/C.idempotency: duplicate option 'ttl'");
}

static void test_transport(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, "transport: {bdp_probe: true, stream_window: 1MiB, "
                            "max_frame_size: 64KiB, handshake_timeout_ms: 3s, memory_mb: 0}\n"),
               0);
  MW_CHECK_INT(c.transport.bdp_probe, 1);
  MW_CHECK_INT(c.transport.stream_window, 1 << 20);
  MW_CHECK_INT(c.transport.max_frame_size, 65536);
  MW_CHECK_INT(c.transport.handshake_timeout_ms, 3000);
  MW_CHECK_INT(c.transport.memory_mb, 0);
  mw_diag_free(&d);
  mw_config_free(&c);
  expect_one("transport: {max_frame_size: 1000}\n",
             "t.yaml:1:29: transport.max_frame_size: must be at least 16384, got '1000'");
}

/* lua: the sandbox stays on unless lua.unsafe says otherwise. */
static void test_lua_section(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, "lua:\n  unsafe: true\n"), 0);
  MW_CHECK_INT(c.lua.unsafe, 1);
  mw_diag_free(&d);
  mw_config_free(&c);
  MW_CHECK_INT(load(&c, &d, "lua: {unsafe: off}\n"), 0);
  MW_CHECK_INT(c.lua.unsafe, 0);
  mw_diag_free(&d);
  mw_config_free(&c);
  expect_one("lua:\n  unsafe: please\n",
             "t.yaml:2:11: lua.unsafe: expected a boolean (true/false, yes/no, on/off), got 'please'");
  expect_one("lua:\n  unsfe: true\n",
             "t.yaml:2:3: unknown key 'unsfe' in 'lua' (did you mean 'unsafe'?)");
  expect_one("unsafe: true\n",
             "t.yaml:1:1: unknown key 'unsafe' (did you mean 'lua.unsafe'? it belongs under 'lua:')");
  expect_one("lua: true\n",
             "t.yaml:1:6: lua: expected a mapping (indented 'key: value' lines), got a scalar");
}

static void test_sizes(void) {
  static const struct {
    const char *text;
    int64_t bytes;
  } good[] = {
      {"1", 1},           {"100B", 100},          {"4KB", 4000},
      {"4MB", 4000000},   {"1GB", 1000000000},    {"512KiB", 524288},
      {"4MiB", 4194304},  {"1GiB", 1073741824},   {"4 MiB", 4194304},
      {"4mib", 4194304},  {"\"8MiB\"", 8388608},  {"2147483647", 2147483647},
      {"+7", 7},
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    int ok;
    int64_t v = size_of(good[i].text, &ok);
    MW_CHECK(ok);
    MW_CHECK_INT(v, good[i].bytes);
    if (!ok || v != good[i].bytes) fprintf(stderr, "  size '%s'\n", good[i].text);
  }
  const char *bad[] = {"0",    "4M",  "4 M iB", "1.5MiB", "MiB", "-1",
                       "2GiB", "4TB", "0x10",   "abc",    "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int ok;
    int64_t v = size_of(bad[i], &ok);
    MW_CHECK(!ok);
    MW_CHECK_INT(v, 4 * 1024 * 1024); /* the default is kept */
    if (ok) fprintf(stderr, "  size '%s' accepted\n", bad[i]);
  }
  expect_one("limits:\n  max_send_bytes: 4M\n",
             "t.yaml:2:19: limits.max_send_bytes: expected a size in bytes (an "
             "integer, or with a unit: 512KiB, 4MiB, 1GiB, 4MB), got '4M'");
  expect_one("limits:\n  max_receive_bytes: 0\n",
             "t.yaml:2:22: limits.max_receive_bytes: must be at least 1, got "
             "'0'");
  expect_one("limits:\n  send_queue_bytes: 2GiB\n",
             "t.yaml:2:21: limits.send_queue_bytes: '2GiB' is too large (at "
             "most 2147483647 bytes)");
  expect_one("limits:\n  max_header_list_size: -5\n",
             "t.yaml:2:25: limits.max_header_list_size: must not be negative, "
             "got '-5'");
}

static void test_durations(void) {
  static const struct {
    const char *text;
    int64_t ms;
  } good[] = {
      {"0", 0},           {"1500", 1500},       {"250ms", 250},
      {"20s", 20000},     {"5m", 300000},       {"1h", 3600000},
      {"1m30s", 90000},   {"1s500ms", 1500},    {"1h30m", 5400000},
      {"'2s'", 2000},     {"2147483647", 2147483647},
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    int ok;
    int64_t v = duration_of(good[i].text, &ok);
    MW_CHECK(ok);
    MW_CHECK_INT(v, good[i].ms);
    if (!ok || v != good[i].ms)
      fprintf(stderr, "  duration '%s'\n", good[i].text);
  }
  const char *bad[] = {"1.5s", "5 s", "5x", "s",  "1m30", "-1s",
                       "25d",  "600h", "1H", "ms", "true"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int ok;
    int64_t v = duration_of(bad[i], &ok);
    MW_CHECK(!ok);
    MW_CHECK_INT(v, 10000);
    if (ok) fprintf(stderr, "  duration '%s' accepted\n", bad[i]);
  }
  expect_one("keepalive:\n  time_ms: 20 s\n",
             "t.yaml:2:12: keepalive.time_ms: expected a duration in "
             "milliseconds (an integer, or with a unit: 250ms, 20s, 5m, 1h), "
             "got '20 s'");
  expect_one("keepalive:\n  timeout_ms: 0\n",
             "t.yaml:2:15: keepalive.timeout_ms: must be at least 1, got '0'");
  expect_one("reload:\n  debounce_ms: 999h\n",
             "t.yaml:2:16: reload.debounce_ms: '999h' is too large (at most "
             "2147483647 ms)");
}

static void test_listen(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d,
                    "listen: [\"[::]:50051\", \"[fe80::1%eth0]:1\", "
                    "my-host.example.com:65535, 127.0.0.1:0]\n"),
               0);
  MW_CHECK_INT(c.listen.n, 4);
  mw_diag_free(&d);
  mw_config_free(&c);

  expect_one("listen: 50051\n",
             "t.yaml:1:9: listen: invalid address '50051': missing port "
             "(expected HOST:PORT)");
  expect_one("listen: \":50051\"\n",
             "t.yaml:1:9: listen: invalid address ':50051': missing host (use "
             "0.0.0.0:PORT or [::]:PORT for every interface)");
  expect_one("listen: localhost:65536\n",
             "t.yaml:1:9: listen: invalid address 'localhost:65536': the port "
             "must be a number from 0 to 65535");
  expect_one("listen: \"::1:80\"\n",
             "t.yaml:1:9: listen: invalid address '::1:80': IPv6 addresses "
             "must be written in brackets, like [::1]:50051");
  expect_one("listen: \"[::1]\"\n",
             "t.yaml:1:9: listen: invalid address '[::1]': missing port "
             "(expected [ADDRESS]:PORT)");
  expect_one("listen: \"[nothex]:1\"\n",
             "t.yaml:1:9: listen: invalid address '[nothex]:1': not an IPv6 "
             "address in brackets");
  expect_one("listen: []\n", "t.yaml:1:9: listen: at least one address is "
                             "required");
  expect_one("listen:\n  - a:1\n  - a:1\n",
             "t.yaml:3:5: listen: address 'a:1' is listed twice");
  expect_one("listen:\n  - a:1\n  -\n",
             "t.yaml:3:4: listen: each list item must be a HOST:PORT address, "
             "got nothing (an empty value)");
  expect_one("listen:\n  host: a\n",
             "t.yaml:2:3: listen: expected a HOST:PORT address or a list of "
             "them, got a mapping");

  /* a failed list leaves the previous value whole */
  MW_CHECK_INT(load(&c, &d, "listen: [a:1, bad]\n"), -1);
  MW_CHECK_INT(c.listen.n, 1);
  if (c.listen.n) MW_CHECK_STR(c.listen.v[0], "127.0.0.1:50051");
  mw_diag_free(&d);
  mw_config_free(&c);
}

static void test_wrong_types(void) {
  expect_one("workers: [1, 2]\n",
             "t.yaml:1:10: workers: expected 'auto' or an integer from 1 to "
             "256, got a list");
  expect_one("workers: abc\n",
             "t.yaml:1:10: workers: expected 'auto' or an integer from 1 to "
             "256, got 'abc'");
  expect_one("workers: 0\n",
             "t.yaml:1:10: workers: '0' is out of range (1 to 256)");
  expect_one("workers: 257\n",
             "t.yaml:1:10: workers: '257' is out of range (1 to 256)");
  expect_one("workers:\n",
             "t.yaml:1:9: workers: expected 'auto' or an integer from 1 to "
             "256, got nothing (an empty value)");
  expect_one("limits: 5\n",
             "t.yaml:1:9: limits: expected a mapping (indented 'key: value' "
             "lines), got a scalar");
  expect_one("log:\n  - level\n",
             "t.yaml:2:3: log: expected a mapping (indented 'key: value' "
             "lines), got a list");
  expect_one("limits:\n  send_queue_messages: 0\n",
             "t.yaml:2:24: limits.send_queue_messages: must be at least 1, "
             "got '0'");
  expect_one("limits:\n  max_concurrent_streams: {a: 1}\n",
             "t.yaml:2:27: limits.max_concurrent_streams: expected a "
             "non-negative integer, got a mapping");
  expect_one("limits:\n  lua_memory_mb: 12MiB\n",
             "t.yaml:2:18: limits.lua_memory_mb: expected a non-negative "
             "integer, got '12MiB'");
  expect_one("keepalive:\n  max_ping_strikes: 2.5\n",
             "t.yaml:2:21: keepalive.max_ping_strikes: expected a "
             "non-negative integer, got '2.5'");
  expect_one("reload:\n  watch: maybe\n",
             "t.yaml:2:10: reload.watch: expected a boolean (true/false, "
             "yes/no, on/off), got 'maybe'");
  expect_one("log:\n  level: verbose\n",
             "t.yaml:2:10: log.level: expected one of debug, info, warn, "
             "error, got 'verbose'");
  expect_one("log:\n  format: xml\n",
             "t.yaml:2:11: log.format: expected text or json, got 'xml'");
  expect_one("shutdown_grace_ms: [1]\n",
             "t.yaml:1:20: shutdown_grace_ms: expected a duration in "
             "milliseconds (an integer, or with a unit: 250ms, 20s, 5m, 1h), "
             "got a list");
  expect_one("services: {a: 1}\n",
             "t.yaml:1:11: services: expected a directory or a list of them, "
             "got a mapping");
  expect_one("proto_path: [[a]]\n",
             "t.yaml:1:14: proto_path: each list item must be a directory, got "
             "a list");
  expect_one("? [a, b]\n: 1\n",
             "t.yaml:1:3: keys must be plain strings, not a list");
}

static void test_top_level(void) {
  expect_one("- a\n- b\n",
             "t.yaml:1:1: the top level of a config file must be a mapping "
             "('key: value' lines), got a list");
  expect_one("just text\n",
             "t.yaml:1:1: the top level of a config file must be a mapping "
             "('key: value' lines), got a scalar");
  expect_one("workers: 1\n---\nworkers: 2\n",
             "t.yaml:2:1: only one YAML document is allowed in a config file");
}

static void test_unknown_keys(void) {
  expect_one("workrs: 4\n",
             "t.yaml:1:1: unknown key 'workrs' (did you mean 'workers'?)");
  expect_one("limits:\n  max_recieve_bytes: 1\n",
             "t.yaml:2:3: unknown key 'max_recieve_bytes' in 'limits' (did you "
             "mean 'max_receive_bytes'?)");
  expect_one("reload:\n  debounce: 10\n",
             "t.yaml:2:3: unknown key 'debounce' in 'reload' (did you mean "
             "'debounce_ms'?)");
  expect_one("Workers: 4\n",
             "t.yaml:1:1: unknown key 'Workers' (did you mean 'workers'?)");
  expect_one("log:\n  colour: true\n",
             "t.yaml:2:3: unknown key 'colour' in 'log' (valid keys: level, "
             "format)");
  expect_one("time_ms: 5\n",
             "t.yaml:1:1: unknown key 'time_ms' (did you mean "
             "'keepalive.time_ms'? it belongs under 'keepalive:')");
  expect_one("keepalive:\n  workers: 5\n",
             "t.yaml:2:3: unknown key 'workers' in 'keepalive' ('workers' is a "
             "top-level key)");
  expect_one("zzz: 1\n",
             "t.yaml:1:1: unknown key 'zzz' (valid keys: listen, workers, "
             "services, proto_path, limits, keepalive, reload, log, "
             "shutdown_grace_ms, protos, shutdown, health, reflection, tls, methods, "
             "transport, lua, compression, interceptors, tracing, admin, metrics, client, "
             "shared, sessions, http, upstream, console)");
}

static void test_duplicates(void) {
  expect_one("workers: 1\nlisten: a:1\nworkers: 2\n",
             "t.yaml:3:1: duplicate key 'workers' (first set at line 1, column "
             "1)");
  expect_one("limits:\n  lua_memory_mb: 1\n  lua_memory_mb: 2\n",
             "t.yaml:3:3: duplicate key 'lua_memory_mb' in 'limits' (first set "
             "at line 2, column 3)");
  /* the first value stays */
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, "workers: 7\nworkers: 8\n"), -1);
  MW_CHECK_INT(c.workers, 7);
  mw_diag_free(&d);
  mw_config_free(&c);
}

static void test_yaml_features(void) {
  expect_one("workers: 1\nlisten: [a:1\n",
             "t.yaml:3:1: YAML syntax error: did not find expected ',' or ']' "
             "(while parsing a flow sequence at line 2, column 9)");
  expect_one("workers: 4: 5\n",
             "t.yaml:1:11: YAML syntax error: mapping values are not allowed in "
             "this context");
  expect_one("limits:\n\tlua_memory_mb: 1\n",
             "t.yaml:2:1: YAML syntax error: found character that cannot start "
             "any token (while scanning for the next token at line 2, column "
             "1); tabs cannot indent YAML, use spaces");
  expect_one("log:\n  level: \"info\n",
             "t.yaml:3:1: YAML syntax error: found unexpected end of stream "
             "(while scanning a quoted scalar at line 2, column 10)");
  expect_one("workers: 1\n\xff\n",
             "t.yaml:2:1: invalid input: invalid leading UTF-8 octet");
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, "workers: &w 4\nshutdown_grace_ms: *w\n"), -1);
  MW_CHECK_INT(mw_diag_count(&d), 2);
  MW_CHECK_STR(msg(&d, 0),
               "t.yaml:1:10: anchors (&w) are not supported in config files");
  MW_CHECK_STR(msg(&d, 1), "t.yaml:2:20: aliases (*w) are not supported in "
                           "config files; write the value out");
  mw_diag_free(&d);
  mw_config_free(&c);
  expect_one("workers: !!int 4\n",
             "t.yaml:1:10: YAML tags (tag:yaml.org,2002:int) are not supported "
             "in config files");
}

static void test_many_errors_one_pass(void) {
  mw_config c;
  mw_diag d;
  int rc = load(&c, &d,
                "workrs: 4\n"               /* 1: unknown key */
                "workers: many\n"           /* 2: bad value */
                "limits:\n"                 /* 3 */
                "  max_receive_bytes: 0\n"  /* 4: out of range */
                "  max_send_bytes: 1KiB\n"  /* 5: fine, applied */
                "  foo: 1\n"                /* 6: unknown */
                "log:\n"                    /* 7 */
                "  level: loud\n"           /* 8: bad value */
                "  format: json\n"          /* 9: fine */
                "log: {}\n"                 /* 10: duplicate */
                "services: does-not-exist\n" /* 11: missing dir */
                "reload: {watch: [x]\n");   /* 12: bad value, then a */
  MW_CHECK_INT(rc, -1);                     /* syntax error at the end */
  MW_CHECK_INT(mw_diag_count(&d), 9);
  MW_CHECK_CONTAINS(msg(&d, 0), "t.yaml:1:1: unknown key 'workrs'");
  MW_CHECK_CONTAINS(msg(&d, 1), "t.yaml:2:10: workers:");
  MW_CHECK_CONTAINS(msg(&d, 2), "t.yaml:4:22: limits.max_receive_bytes:");
  MW_CHECK_CONTAINS(msg(&d, 3), "t.yaml:6:3: unknown key 'foo' in 'limits'");
  MW_CHECK_CONTAINS(msg(&d, 4), "t.yaml:8:10: log.level:");
  MW_CHECK_CONTAINS(msg(&d, 5), "t.yaml:10:1: duplicate key 'log'");
  MW_CHECK_CONTAINS(msg(&d, 6), "t.yaml:11:11: services: directory "
                                "'does-not-exist' does not exist");
  MW_CHECK_CONTAINS(msg(&d, 7), "t.yaml:12:17: reload.watch: expected a "
                                "boolean");
  MW_CHECK_CONTAINS(msg(&d, 8), "t.yaml:13:1: YAML syntax error: did not "
                                "find expected ',' or '}'");
  /* what was valid was applied; what failed kept its default */
  MW_CHECK_INT(c.limits.max_send_bytes, 1024);
  MW_CHECK_INT(c.limits.max_receive_bytes, 4 * 1024 * 1024);
  MW_CHECK_INT(c.log.json, 1);
  MW_CHECK_INT(c.log.level, MW_LOG_INFO);
  MW_CHECK_INT(c.services.n, 0);
  mw_diag_free(&d);
  mw_config_free(&c);
}

static void test_paths(void) {
  char p[PATH_MAX], q[PATH_MAX], yaml[PATH_MAX + 64];
  mkdir_p(tmp_path(p, "paths/conf/svc"));
  mkdir_p(tmp_path(p, "paths/shared"));
  write_file(tmp_path(p, "paths/conf/file.txt"), "not a dir\n");

  mw_config c;
  mw_diag d = {0};

  /* load_string resolves against base_dir */
  mw_config_init(&c);
  const char *y1 = "services: svc\nproto_path: [../shared, svc/.., /]\n";
  MW_CHECK_INT(mw_config_load_string(&c, y1, strlen(y1), "x.yaml",
                                     tmp_path(q, "paths/conf"), &d),
               0);
  MW_CHECK_INT(c.services.n, 1);
  if (c.services.n) MW_CHECK_STR(c.services.v[0], tmp_path(q, "paths/conf/svc"));
  MW_CHECK_INT(c.proto_path.n, 3);
  if (c.proto_path.n == 3) {
    MW_CHECK_STR(c.proto_path.v[0], tmp_path(q, "paths/shared"));
    MW_CHECK_STR(c.proto_path.v[1], tmp_path(q, "paths/conf"));
    MW_CHECK_STR(c.proto_path.v[2], "/");
  }
  mw_config_free(&c);
  mw_diag_free(&d);

  /* an absolute path is used as it is */
  mw_config_init(&c);
  snprintf(yaml, sizeof yaml, "services: '%s/paths/shared'\n", tmp_root);
  MW_CHECK_INT(mw_config_load_string(&c, yaml, strlen(yaml), "x.yaml", "/",
                                     &d),
               0);
  if (c.services.n) MW_CHECK_STR(c.services.v[0], tmp_path(q, "paths/shared"));
  mw_config_free(&c);
  mw_diag_free(&d);

  /* NULL base_dir: the current directory */
  char cwd[PATH_MAX];
  MW_CHECK(getcwd(cwd, sizeof cwd) != NULL);
  char cwd_real[PATH_MAX];
  MW_CHECK(realpath(cwd, cwd_real) != NULL);
  mw_config_init(&c);
  MW_CHECK_INT(mw_config_load_string(&c, "services: .\n", 12, NULL, NULL, &d),
               0);
  if (c.services.n) MW_CHECK_STR(c.services.v[0], cwd_real);
  mw_config_free(&c);
  mw_diag_free(&d);

  /* a config file resolves against its own directory, wherever we are */
  write_file(tmp_path(p, "paths/conf/moonwire.yaml"),
             "services:\n"
             "  - svc\n"
             "  - missing\n"
             "  - file.txt\n"
             "proto_path: ../shared\n");
  mw_config_init(&c);
  MW_CHECK_INT(mw_config_load_file(&c, tmp_path(p, "paths/conf/moonwire.yaml"),
                                   &d),
               -1);
  MW_CHECK_INT(mw_diag_count(&d), 2);
  char want[PATH_MAX * 3];
  snprintf(want, sizeof want,
           "%s/paths/conf/moonwire.yaml:3:5: services: directory 'missing' "
           "does not exist (resolved to '%s/paths/conf/missing')",
           tmp_root, tmp_root);
  MW_CHECK_STR(msg(&d, 0), want);
  snprintf(want, sizeof want,
           "%s/paths/conf/moonwire.yaml:4:5: services: 'file.txt' is not a "
           "directory (resolved to '%s/paths/conf/file.txt')",
           tmp_root, tmp_root);
  MW_CHECK_STR(msg(&d, 1), want);
  MW_CHECK_INT(c.services.n, 0); /* the list failed as a whole */
  MW_CHECK_INT(c.proto_path.n, 1);
  if (c.proto_path.n) MW_CHECK_STR(c.proto_path.v[0], tmp_path(q, "paths/shared"));
  mw_config_free(&c);
  mw_diag_free(&d);

  /* a relative config path: from the directory of the file */
  char old[PATH_MAX];
  MW_CHECK(getcwd(old, sizeof old) != NULL);
  if (chdir(tmp_path(p, "paths")) == 0) {
    write_file("conf/rel.yaml", "services: svc\n");
    mw_config_init(&c);
    MW_CHECK_INT(mw_config_load_file(&c, "conf/rel.yaml", &d), 0);
    MW_CHECK_STR(c.file, tmp_path(q, "paths/conf/rel.yaml"));
    if (c.services.n) MW_CHECK_STR(c.services.v[0], tmp_path(q, "paths/conf/svc"));
    mw_config_free(&c);
    mw_diag_free(&d);
    MW_CHECK_INT(chdir(old), 0);
  } else {
    MW_CHECK(0);
  }

  expect_one("services: ''\n", "t.yaml:1:11: services: empty path");
}

static void test_file_errors(void) {
  char p[PATH_MAX], want[PATH_MAX + 64];
  mw_config c;
  mw_diag d = {0};
  mw_config_init(&c);
  MW_CHECK_INT(mw_config_load_file(&c, tmp_path(p, "no/such.yaml"), &d), -1);
  MW_CHECK_INT(mw_diag_count(&d), 1);
  snprintf(want, sizeof want,
           "%s: cannot open the config file: No such file or directory", p);
  MW_CHECK_STR(msg(&d, 0), want);
  mw_diag_free(&d);
  MW_CHECK_STR(c.file, p); /* the file it tried, even when it failed */
  free(c.file);
  c.file = NULL;
  check_defaults(&c);
  mw_config_free(&c);

  mw_config_init(&c);
  MW_CHECK_INT(mw_config_load_file(&c, tmp_root, &d), -1);
  MW_CHECK_INT(mw_diag_count(&d), 1);
  snprintf(want, sizeof want, "%s: is a directory, not a config file", tmp_root);
  MW_CHECK_STR(msg(&d, 0), want);
  mw_diag_free(&d);
  mw_config_free(&c);

  /* over the 16 MiB a config file may have (a sparse file: quick) */
  FILE *f = fopen(tmp_path(p, "huge.yaml"), "w");
  MW_CHECK(f != NULL);
  if (f) {
    MW_CHECK_INT(ftruncate(fileno(f), (16 << 20) + 1), 0);
    fclose(f);
  }
  mw_config_init(&c);
  MW_CHECK_INT(mw_config_load_file(&c, p, &d), -1);
  MW_CHECK_INT(mw_diag_count(&d), 1);
  snprintf(want, sizeof want,
           "%s: the config file is too large (over 16777216 bytes)", p);
  MW_CHECK_STR(msg(&d, 0), want);
  mw_diag_free(&d);
  mw_config_free(&c);
  unlink(p);

  /* an empty file is a valid, empty config */
  write_file(tmp_path(p, "empty.yaml"), "");
  mw_config_init(&c);
  MW_CHECK_INT(mw_config_load_file(&c, p, &d), 0);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  mw_diag_free(&d);
  mw_config_free(&c);

  /* errors in a file carry its path */
  write_file(tmp_path(p, "bad.yaml"), "\n\nworkers: nope\n");
  mw_config_init(&c);
  MW_CHECK_INT(mw_config_load_file(&c, p, &d), -1);
  snprintf(want, sizeof want, "%s:3:10: workers:", p);
  MW_CHECK_CONTAINS(msg(&d, 0), want);
  mw_diag_free(&d);
  mw_config_free(&c);
}

static void test_config_lists(void) {
  mw_config c;
  mw_config_init(&c);
  /* push onto the default list copies it first */
  MW_CHECK_INT(mw_strvec_push(&c.listen, "[::]:1"), 0);
  MW_CHECK_INT(c.listen.n, 2);
  if (c.listen.n == 2) {
    MW_CHECK_STR(c.listen.v[0], "127.0.0.1:50051");
    MW_CHECK_STR(c.listen.v[1], "[::]:1");
  }
  MW_CHECK_INT(mw_strvec_set1(&c.listen, "0.0.0.0:9"), 0);
  MW_CHECK_INT(c.listen.n, 1);
  if (c.listen.n) MW_CHECK_STR(c.listen.v[0], "0.0.0.0:9");
  MW_CHECK_INT(mw_strvec_set1(&c.services, "/srv"), 0);
  MW_CHECK_INT(mw_strvec_push(&c.services, "/srv2"), 0);
  MW_CHECK_INT(c.services.n, 2);
  MW_CHECK_INT(mw_strvec_push(&c.services, NULL), -1);
  mw_config_free(&c);
  check_defaults(&c);
  mw_config_free(&c);

  mw_strvec l = {0};
  mw_strvec_free(&l);
  MW_CHECK_INT(mw_strvec_set1(&l, "a"), 0);
  MW_CHECK_INT(mw_strvec_set1(&l, "b"), 0);
  MW_CHECK_INT(l.n, 1);
  if (l.n) MW_CHECK_STR(l.v[0], "b");
  mw_strvec_free(&l);
  mw_strvec_free(&l);
  MW_CHECK(l.v == NULL && l.n == 0);
}

static void test_protos(void) {
  mw_config c;
  mw_diag d = {0};
  mw_config_init(&c);
  MW_CHECK_INT(load(&c, &d, "protos: [grpc/testing/test.proto, a.proto]\n"), 0);
  MW_CHECK_INT(c.protos.n, 2);
  MW_CHECK_STR(c.protos.v[0], "grpc/testing/test.proto");
  mw_config_free(&c);
  MW_CHECK_INT(load(&c, &d, "protos: b.proto\n"), 0);
  MW_CHECK_INT(c.protos.n, 1);
  MW_CHECK_STR(c.protos.v[0], "b.proto");
  mw_config_free(&c);
  mw_diag_free(&d);
  expect_one("protos: [ok.proto, /abs/x.proto]\n",
             "t.yaml:1:20: protos: '/abs/x.proto' is not a .proto name relative "
             "to proto_path (like grpc/testing/test.proto)");
  expect_one("protos: notproto.txt\n",
             "t.yaml:1:9: protos: 'notproto.txt' is not a .proto name relative "
             "to proto_path (like grpc/testing/test.proto)");
}

static void test_tls(void) {
  mw_config c;
  mw_diag d;
  char q[PATH_MAX];
  /* paths resolve against the config's directory, lexically */
  MW_CHECK_INT(load(&c, &d,
                    "tls:\n"
                    "  cert: certs/../tls/server.pem\n"
                    "  key: /etc/tls/server.key\n"
                    "  client_ca: ca.pem\n"
                    "  require_client_cert: yes\n"),
               0);
  MW_CHECK_STR(c.tls.cert, tmp_path(q, "tls/server.pem"));
  MW_CHECK_STR(c.tls.key, "/etc/tls/server.key");
  MW_CHECK_STR(c.tls.client_ca, tmp_path(q, "ca.pem"));
  MW_CHECK_INT(c.tls.require_client_cert, 1);
  mw_diag_free(&d);
  mw_config_free(&c);
  mw_config_free(&c); /* twice: harmless */
  MW_CHECK(c.tls.cert == NULL && c.tls.key == NULL && c.tls.client_ca == NULL);
  /* defaults: no TLS; an empty section is no TLS either */
  MW_CHECK_INT(load(&c, &d, "tls:\n"), 0);
  MW_CHECK(c.tls.cert == NULL);
  MW_CHECK_INT(c.tls.require_client_cert, 0);
  mw_diag_free(&d);
  mw_config_free(&c);
  expect_ok("tls: {cert: a.pem, key: a.key}\n");
  expect_ok("tls: {cert: a.pem, key: a.key, client_ca: ca.pem}\n");
  /* what the keys need of each other */
  expect_one("tls:\n  cert: a.pem\n",
             "t.yaml:2:3: tls.cert needs tls.key (the certificate's private key) as well");
  expect_one("tls:\n  key: a.key\n",
             "t.yaml:2:3: tls.key needs tls.cert (the certificate it belongs to) as well");
  MW_CHECK_INT(load(&c, &d, "tls:\n  client_ca: ca.pem\n"), -1);
  MW_CHECK_INT(mw_diag_count(&d), 1);
  MW_CHECK_STR(msg(&d, 0), "t.yaml:2:3: tls.client_ca needs tls.cert and tls.key: client "
                           "certificates are only asked for over TLS");
  mw_diag_free(&d);
  mw_config_free(&c);
  expect_one("tls: {cert: a.pem, key: a.key, require_client_cert: true}\n",
             "t.yaml:1:32: tls.require_client_cert needs tls.client_ca (the CAs client "
             "certificates are checked against)");
  /* values */
  expect_one("tls: {cert: a.pem, key: a.key, require_client_cert: maybe}\n",
             "t.yaml:1:53: tls.require_client_cert: expected a boolean (true/false, "
             "yes/no, on/off), got 'maybe'");
  expect_one("tls: {cert: '', key: a.key}\n", "t.yaml:1:13: tls.cert: empty path");
  expect_one("tls: {cert: [a, b], key: a.key}\n",
             "t.yaml:1:13: tls.cert: expected a file path, got a list");
  expect_one("tls: yes\n",
             "t.yaml:1:6: tls: expected a mapping (indented 'key: value' lines), got a "
             "scalar");
  /* keys */
  expect_one("tls: {cert: a.pem, keyy: a.key, key: a.key}\n",
             "t.yaml:1:20: unknown key 'keyy' in 'tls' (did you mean 'key'?)");
  expect_one("cert: a.pem\n",
             "t.yaml:1:1: unknown key 'cert' (did you mean 'tls.cert'? it belongs under "
             "'tls:')");
  expect_one("tls: {cert: a.pem, key: a.key, password: x}\n",
             "t.yaml:1:32: unknown key 'password' in 'tls' (valid keys: cert, key, "
             "client_ca, require_client_cert)");
}

static void test_load_twice(void) {
  /* a second load layers over the first; lists are replaced, not merged */
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, "listen: [a:1, b:2]\nworkers: 2\n"), 0);
  const char *y = "listen: c:3\n";
  MW_CHECK_INT(mw_config_load_string(&c, y, strlen(y), "u.yaml", NULL, &d), 0);
  MW_CHECK_INT(c.listen.n, 1);
  if (c.listen.n) MW_CHECK_STR(c.listen.v[0], "c:3");
  MW_CHECK_INT(c.workers, 2);
  mw_diag_free(&d);
  mw_config_free(&c);
}

static void test_compression(void) {
  mw_config c;
  mw_diag d;
  /* off by default */
  MW_CHECK_INT(load(&c, &d, ""), 0);
  MW_CHECK_INT(c.compression.algorithm, MW_CONFIG_COMPRESS_NONE);
  MW_CHECK_INT(c.compression.min_bytes, 1024);
  MW_CHECK_INT(c.compression.n_methods, 0);
  mw_diag_free(&d);
  mw_config_free(&c);
  /* the section, and methods that leave keys to it (-1) */
  MW_CHECK_INT(load(&c, &d,
                    "compression:\n"
                    "  methods:\n"
                    "    /pkg.Svc/A: {algorithm: deflate}\n"
                    "    \"/pkg.Svc/B\": {min_bytes: 0}\n"
                    "    /pkg.Svc/C: {algorithm: none, min_bytes: 4KiB}\n"
                    "  algorithm: gzip\n"
                    "  min_bytes: 512\n"),
               0);
  MW_CHECK_INT(c.compression.algorithm, MW_CONFIG_COMPRESS_GZIP);
  MW_CHECK_INT(c.compression.min_bytes, 512);
  MW_CHECK_INT(c.compression.n_methods, 3);
  if (c.compression.n_methods == 3) {
    MW_CHECK_STR(c.compression.methods[0].path, "/pkg.Svc/A");
    MW_CHECK_INT(c.compression.methods[0].algorithm, MW_CONFIG_COMPRESS_DEFLATE);
    MW_CHECK_INT(c.compression.methods[0].min_bytes, -1);
    MW_CHECK_STR(c.compression.methods[1].path, "/pkg.Svc/B");
    MW_CHECK_INT(c.compression.methods[1].algorithm, -1);
    MW_CHECK_INT(c.compression.methods[1].min_bytes, 0);
    MW_CHECK_INT(c.compression.methods[2].algorithm, MW_CONFIG_COMPRESS_NONE);
    MW_CHECK_INT(c.compression.methods[2].min_bytes, 4096);
  }
  mw_diag_free(&d);
  mw_config_free(&c);
  MW_CHECK(c.compression.methods == NULL && c.compression.n_methods == 0);
  expect_ok("compression:\n");
  expect_ok("compression: {algorithm: deflate, methods: {}}\n");
  /* what is refused */
  expect_one("compression:\n  algorithm: brotli\n",
             "t.yaml:2:14: compression.algorithm: expected one of gzip, deflate, none, got 'brotli'");
  expect_one("compression:\n  level: 9\n",
             "t.yaml:2:3: unknown key 'level' in 'compression' (valid keys: algorithm, min_bytes, methods)");
  expect_one("compression:\n  methods:\n    pkg.Svc/A: {algorithm: gzip}\n",
             "t.yaml:3:5: compression.methods: keys must be method paths like /package.Service/Method, got 'pkg.Svc/A'");
  expect_one("compression:\n  methods:\n    /a.B/C: {}\n    /a.B/C: {}\n",
             "t.yaml:4:5: compression of /a.B/C is set twice (compression.methods and "
             "methods./a.B/C.compression)");
  /* the same settings under methods */
  MW_CHECK_INT(load(&c, &d, "methods:\n  /a.B/C: {compression: {algorithm: gzip}}\n"), 0);
  MW_CHECK_INT(c.compression.n_methods, 1);
  if (c.compression.n_methods == 1) {
    MW_CHECK_STR(c.compression.methods[0].path, "/a.B/C");
    MW_CHECK_INT(c.compression.methods[0].algorithm, MW_CONFIG_COMPRESS_GZIP);
    MW_CHECK_INT(c.compression.methods[0].min_bytes, -1);
  }
  mw_diag_free(&d);
  mw_config_free(&c);
  expect_one("methods:\n  /a.B/C: {compression: {min_bytes: 1}}\n"
             "compression: {methods: {/a.B/C: {}}}\n",
             "t.yaml:3:25: compression of /a.B/C is set twice (compression.methods and "
             "methods./a.B/C.compression)");
  expect_one("methods:\n  a.B: {compression: {algorithm: gzip}}\n",
             "t.yaml:2:9: methods.a.B.compression: compression is set per method "
             "(\"/a.B/Method\"), not per service");
  expect_one("compression:\n  methods:\n    /a.B/C: {algorithm: zip}\n",
             "t.yaml:3:25: compression.methods./a.B/C.algorithm: expected one of gzip, deflate, none, got 'zip'");
  expect_one("compression:\n  methods:\n    /a.B/C: gzip\n",
             "t.yaml:3:13: compression.methods./a.B/C: expected a mapping (indented 'key: value' lines), got a scalar");
  expect_one("compression:\n  methods: [/a.B/C]\n",
             "t.yaml:2:12: compression.methods: expected a mapping of method paths, got a list");
  expect_one("compression:\n  min_bytes: -1\n",
             "t.yaml:2:14: compression.min_bytes: must not be negative, got '-1'");
}

static void test_tracing(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, ""), 0); /* off by default */
  MW_CHECK(c.tracing.otlp == NULL);
  MW_CHECK(c.tracing.sample == 1.0);
  MW_CHECK_INT(c.tracing.batch, 512);
  MW_CHECK_INT(c.tracing.flush_ms, 1000);
  MW_CHECK_INT(c.tracing.queue, 4096);
  mw_diag_free(&d);
  mw_config_free(&c);
  MW_CHECK_INT(load(&c, &d,
                    "tracing: {otlp: \"http://127.0.0.1:4318/v1/traces\", sample: 0.25,\n"
                    "  service_name: shop, batch: 64, flush_ms: 2s, queue: 100}\n"),
               0);
  MW_CHECK_STR(c.tracing.otlp, "http://127.0.0.1:4318/v1/traces");
  MW_CHECK(c.tracing.sample == 0.25);
  MW_CHECK_STR(c.tracing.service_name, "shop");
  MW_CHECK_INT(c.tracing.batch, 64);
  MW_CHECK_INT(c.tracing.flush_ms, 2000);
  MW_CHECK_INT(c.tracing.queue, 100);
  mw_diag_free(&d);
  mw_config_free(&c);
  mw_config_free(&c); /* twice is fine */
  static const struct { const char *yaml, *msg; } bad[] = {
      {"tracing: {otlp: \"https://c:4318/v1/traces\"}", "https is not supported"},
      {"tracing: {otlp: \"grpc://c:4317\"}", "expected an http://"},
      {"tracing: {sample: 1.5}", "tracing.sample: expected a ratio"},
      {"tracing: {sample: lots}", "tracing.sample: expected a ratio"},
      {"tracing: {batch: 0}", "tracing.batch"},
      {"tracing: {queue: -1}", "tracing.queue"},
      {"tracing: {service_name: \"\"}", "must not be empty"},
      {"tracing: {exporter: zipkin}", "unknown key 'exporter'"},
      {"tracing: 1", "tracing"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    MW_CHECK_INT(load(&c, &d, bad[i].yaml), -1);
    MW_CHECK_CONTAINS(msg(&d, 0), bad[i].msg);
    mw_diag_free(&d);
    mw_config_free(&c);
  }
}

static void test_sessions(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d,
                    "sessions:\n"
                    "  chat:\n"
                    "    message: chat.Event\n"
                    "    offset_field: offset\n"
                    "    history: {size: 100, ttl: 10m}\n"
                    "    buffer: 16\n"
                    "    policy: drop_oldest\n"
                    "  feed: {message: a.b.Feed, policy: close}\n"
                    "  plain: {message: P}\n"),
               0);
  MW_CHECK_INT((int)c.sessions.n, 3);
  if (c.sessions.n == 3) {
    MW_CHECK_STR(c.sessions.v[0].name, "chat");
    MW_CHECK_STR(c.sessions.v[0].message, "chat.Event");
    MW_CHECK_STR(c.sessions.v[0].offset_field, "offset");
    MW_CHECK_INT(c.sessions.v[0].history_size, 100);
    MW_CHECK_INT(c.sessions.v[0].history_ttl_ms, 600000);
    MW_CHECK_INT(c.sessions.v[0].buffer, 16);
    MW_CHECK_INT(c.sessions.v[0].policy, MW_CONFIG_SESS_DROP_OLDEST);
    MW_CHECK_INT(c.sessions.v[1].policy, MW_CONFIG_SESS_CLOSE);
    MW_CHECK(c.sessions.v[1].offset_field == NULL);
    /* the defaults */
    MW_CHECK_INT(c.sessions.v[2].buffer, 64);
    MW_CHECK_INT(c.sessions.v[2].history_size, 0);
    MW_CHECK_INT(c.sessions.v[2].history_ttl_ms, 0);
    MW_CHECK_INT(c.sessions.v[2].policy, MW_CONFIG_SESS_BLOCK);
  }
  mw_diag_free(&d);
  mw_config_free(&c);
  mw_config_free(&c); /* twice is safe */
  expect_ok("sessions:\n");
  MW_CHECK_INT(load(&c, &d,
                    "sessions:\n"
                    "  chat: {message: c.E, redis: 'redis://127.0.0.1:6390/2', prefix: 'x:',"
                    " timeout: 250ms}\n"),
               0);
  if (c.sessions.n == 1) {
    MW_CHECK_STR(c.sessions.v[0].redis, "redis://127.0.0.1:6390/2");
    MW_CHECK_STR(c.sessions.v[0].prefix, "x:");
    MW_CHECK_INT(c.sessions.v[0].timeout_ms, 250);
  }
  mw_diag_free(&d);
  mw_config_free(&c);
  expect_one("sessions:\n  chat: {message: c.E, redis: 'http://x'}\n",
             "t.yaml:2:31: sessions.chat.redis: expected a redis://HOST[:PORT][/DB] URL, got "
             "'http://x'");
  expect_one("sessions:\n  chat: {message: c.E, prefix: 'x:'}\n",
             "t.yaml:2:3: sessions.chat: 'prefix' and 'timeout' are for a room on Redis "
             "(redis: URL)");
  expect_one("sessions:\n  chat: {}\n",
             "t.yaml:2:3: sessions.chat: 'message' is required: the type every publication "
             "is (for example message: chat.Event)");
  expect_one("sessions:\n  chat: {message: chat..Event}\n",
             "t.yaml:2:19: sessions.chat.message: 'chat..Event' is not a full message type "
             "name such as chat.Event");
  expect_one("sessions:\n  chat: {message: c.E, policy: later}\n",
             "t.yaml:2:32: sessions.chat.policy: expected block, drop_oldest or close, got "
             "'later'");
  expect_one("sessions:\n  chat: {message: c.E, buffer: 0}\n",
             "t.yaml:2:32: sessions.chat.buffer: must be at least 1, got '0'");
  expect_one("sessions:\n  chat: {message: c.E, history: {size: 5, age: 1s}}\n",
             "t.yaml:2:43: unknown key 'age' in 'sessions.chat.history' (valid keys: size, "
             "ttl)");
  expect_one("sessions:\n  chat: {message: c.E, offset_field: a.b}\n",
             "t.yaml:2:38: sessions.chat.offset_field: 'a.b' is not a field name");
  expect_one("sessions:\n  my-room: {message: c.E}\n",
             "t.yaml:2:3: sessions: 'my-room' is not a room name (letters, digits and _, not "
             "starting with a digit, at most 64, not a Lua keyword: it is spelt "
             "mw.sessions.NAME)");
  expect_one("sessions:\n  a: {message: c.E}\n  a: {message: c.E}\n",
             "t.yaml:3:3: sessions: 'a' is listed twice");
  expect_one("sessions:\n  a: 5\n",
             "t.yaml:2:6: sessions.a: expected a mapping with its message type "
             "(message: pkg.Event), got a scalar");
}

static void test_shared(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, ""), 0);
  MW_CHECK_INT((int)c.shared.n, 0);
  mw_diag_free(&d);
  mw_config_free(&c);
  MW_CHECK_INT(load(&c, &d,
                    "shared:\n"
                    "  cache: {size: 64MB}\n"
                    "  counters:\n"
                    "    size: 64KiB\n"
                    "  _x9: {size: 1048576}\n"),
               0);
  MW_CHECK_INT((int)c.shared.n, 3);
  MW_CHECK_STR(c.shared.v[0].name, "cache");
  MW_CHECK_INT(c.shared.v[0].size, 64000000); /* MB is decimal */
  MW_CHECK_STR(c.shared.v[1].name, "counters");
  MW_CHECK_INT(c.shared.v[1].size, 64 << 10);
  MW_CHECK_STR(c.shared.v[2].name, "_x9");
  MW_CHECK_INT(c.shared.v[2].size, 1 << 20);
  mw_diag_free(&d);
  mw_config_free(&c);
  mw_config_free(&c); /* twice is safe */
  expect_ok("shared:\n");
  expect_one("shared: 5\n",
             "t.yaml:1:9: shared: expected a mapping (indented 'key: value' lines), got a scalar");
  expect_one("shared:\n  cache: {size: 1KiB}\n",
             "t.yaml:2:17: shared.cache.size: must be at least 65536, got '1KiB'");
  expect_one("shared:\n  cache: {size: lots}\n",
             "t.yaml:2:17: shared.cache.size: expected a size in bytes (an integer, or with a "
             "unit: 512KiB, 4MiB, 1GiB, 4MB), got 'lots'");
  expect_one("shared:\n  cache: {}\n",
             "t.yaml:2:3: shared.cache: 'size' is required (for example size: 16MiB), or "
             "'redis' (a URL) for a dict on Redis");
  expect_one("shared:\n  cache: 1MiB\n",
             "t.yaml:2:10: shared.cache: expected a mapping with its size (size: 1MiB) or its "
             "Redis (redis: \"redis://127.0.0.1:6379/0\"), got a scalar");
  expect_one("shared:\n  cache: {size: 1MiB, ttl: 5}\n",
             "t.yaml:2:23: unknown key 'ttl' in 'shared.cache' (valid keys: size, redis, "
             "prefix, timeout)");
  expect_one("shared:\n  my-cache: {size: 1MiB}\n",
             "t.yaml:2:3: shared: 'my-cache' is not a dict name (letters, digits and _, not "
             "starting with a digit, at most 64, not a Lua keyword: it is spelt "
             "mw.shared.NAME)");
  expect_one("shared:\n  9lives: {size: 1MiB}\n",
             "t.yaml:2:3: shared: '9lives' is not a dict name (letters, digits and _, not "
             "starting with a digit, at most 64, not a Lua keyword: it is spelt "
             "mw.shared.NAME)");
  expect_one("shared:\n  end: {size: 1MiB}\n",
             "t.yaml:2:3: shared: 'end' is not a dict name (letters, digits and _, not "
             "starting with a digit, at most 64, not a Lua keyword: it is spelt "
             "mw.shared.NAME)");
  expect_one("shared:\n  a: {size: 1MiB}\n  a: {size: 2MiB}\n",
             "t.yaml:3:3: shared: 'a' is listed twice");
  /* on Redis: a URL, an optional prefix and timeout, and no size */
  MW_CHECK_INT(load(&c, &d,
                    "shared:\n"
                    "  r: {redis: \"redis://127.0.0.1:6390/2\", prefix: \"app:\", timeout: 250ms}\n"
                    "  q: {redis: \"redis://localhost\"}\n"),
               0);
  MW_CHECK_INT((int)c.shared.n, 2);
  MW_CHECK_STR(c.shared.v[0].redis, "redis://127.0.0.1:6390/2");
  MW_CHECK_STR(c.shared.v[0].prefix, "app:");
  MW_CHECK_INT(c.shared.v[0].timeout_ms, 250);
  MW_CHECK_INT(c.shared.v[1].prefix == NULL, 1);
  MW_CHECK_INT(c.shared.v[1].timeout_ms, 0);
  mw_diag_free(&d);
  mw_config_free(&c);
  expect_one("shared:\n  r: {redis: \"http://x\"}\n",
             "t.yaml:2:14: shared.r.redis: expected a redis://HOST[:PORT][/DB] URL, got "
             "'http://x'");
  expect_one("shared:\n  r: {redis: \"redis://x\", size: 1MiB}\n",
             "t.yaml:2:3: shared.r: 'size' and 'redis' exclude each other (Redis keeps the "
             "memory of a dict on Redis)");
  expect_one("shared:\n  r: {size: 1MiB, timeout: 1s}\n",
             "t.yaml:2:3: shared.r: 'prefix' and 'timeout' are for a dict on Redis (redis: URL)");
  expect_one("shared:\n  a: {size: 128GiB}\n",
             "t.yaml:2:13: shared.a.size: '128GiB' is too large (at most 68719476736 bytes)");
}

static void test_client(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, ""), 0); /* nothing allowed by default */
  MW_CHECK_INT((int)c.client.allow.n, 0);
  MW_CHECK_INT(c.client.deadline_margin_ms, 5);
  MW_CHECK_INT(c.client.retry.max_attempts, 1);
  MW_CHECK_INT((int)c.client.retry.codes, 1 << 14);
  MW_CHECK_INT(c.client.budget_tokens, 10);
  mw_diag_free(&d);
  mw_config_free(&c);
  MW_CHECK_INT(load(&c, &d,
                    "client:\n"
                    "  allow: [\"127.0.0.1:50052\", \"inventory:*\", \"unix:/run/x.sock\", "
                    "\"[::1]:443\"]\n"
                    "  propagate: [x-request-id, x-tenant]\n"
                    "  deadline_margin: 10ms\n"
                    "  keepalive: 5m\n"
                    "  max_channels: 8\n"
                    "  retry: {max_attempts: 4, initial_backoff: 50ms, max_backoff: 2s,\n"
                    "          multiplier: 1.5, codes: [UNAVAILABLE, aborted]}\n"
                    "  retry_budget: {tokens: 20, ratio: 0.5}\n"
                    "  methods:\n"
                    "    \"/shop.Pay/Charge\": {idempotent: true, timeout: 2s,\n"
                    "                         retry: {max_attempts: 2}}\n"
                    "    shop.Inventory: {idempotent: false}\n"),
               0);
  MW_CHECK_INT((int)c.client.allow.n, 4);
  MW_CHECK_STR(c.client.allow.v[1], "inventory:*");
  MW_CHECK_INT((int)c.client.propagate.n, 2);
  MW_CHECK_INT(c.client.deadline_margin_ms, 10);
  MW_CHECK_INT(c.client.keepalive_ms, 300000);
  MW_CHECK_INT(c.client.max_channels, 8);
  MW_CHECK_INT(c.client.retry.max_attempts, 4);
  MW_CHECK_INT(c.client.retry.initial_backoff_ms, 50);
  MW_CHECK_INT(c.client.retry.max_backoff_ms, 2000);
  MW_CHECK(c.client.retry.multiplier == 1.5);
  MW_CHECK_INT((int)c.client.retry.codes, (1 << 14) | (1 << 10));
  MW_CHECK_INT(c.client.budget_tokens, 20);
  MW_CHECK(c.client.budget_ratio == 0.5);
  MW_CHECK_INT((int)c.client.n_methods, 2);
  MW_CHECK_STR(c.client.methods[0].path, "/shop.Pay/Charge");
  MW_CHECK_INT(c.client.methods[0].idempotent, 1);
  MW_CHECK_INT(c.client.methods[0].timeout_ms, 2000);
  MW_CHECK_INT(c.client.methods[0].retry.set, 1);
  MW_CHECK_INT(c.client.methods[0].retry.max_attempts, 2);
  /* A method's retry starts from the section's policy. */
  MW_CHECK_INT(c.client.methods[0].retry.initial_backoff_ms, 50);
  MW_CHECK_INT(c.client.methods[1].idempotent, 0);
  MW_CHECK_INT(c.client.methods[1].retry.set, 0);
  mw_diag_free(&d);
  mw_config_free(&c);
  mw_config_free(&c); /* twice is fine */
  static const struct { const char *yaml, *msg; } bad[] = {
      {"client: {allow: [\"dns:///x:1\"]}", "is not a target"},
      {"client: {allow: [\"host\"]}", "is not a target"},
      {"client: {allow: [\"h:port\"]}", "is not a target"},
      {"client: {propagate: [\"X-Upper\"]}", "is not a metadata key"},
      {"client: {propagate: [grpc-timeout]}", "is not a metadata key"},
      {"client: {keepalive: 1s}", "at least 10s"},
      {"client: {retry: {max_attempts: 11}}", "retry.max_attempts"},
      {"client: {retry: {multiplier: 0.5}}", "retry.multiplier"},
      {"client: {retry: {codes: [OK]}}", "retry.codes"},
      {"client: {retry: {codes: [NOPE]}}", "retry.codes"},
      {"client: {retry: {jitter: 1}}", "unknown key 'jitter'"},
      {"client: {retry_budget: {ratio: 2}}", "retry_budget.ratio"},
      {"client: {methods: {\"/Charge\": {}}}", "is not a method path"},
      {"client: {methods: {\"/a.B/C\": {timeout: soon}}}", "timeout"},
      {"client: {methods: {\"/a.B/C\": {idempotent: maybe}}}", "idempotent"},
      {"client: {alow: []}", "did you mean 'allow'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    MW_CHECK_INT(load(&c, &d, bad[i].yaml), -1);
    MW_CHECK_CONTAINS(msg(&d, 0), bad[i].msg);
    mw_diag_free(&d);
    mw_config_free(&c);
  }
}

/* http: the HTTP listener's section. */
static void test_http(void) {
  mw_test_current = "http";
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, "listen: 127.0.0.1:1\n"), 0);
  MW_CHECK(c.http.listen == NULL);
  MW_CHECK_INT(c.http.max_connections, 1024);
  MW_CHECK_INT(c.http.timeout_ms, 30000);
  MW_CHECK_INT(c.http.sse_keepalive_ms, 15000);
  MW_CHECK_INT(c.http.cors_origins.n, 0);
  mw_config_free(&c);
  mw_diag_free(&d);
  MW_CHECK_INT(load(&c, &d,
                    "http:\n  listen: 127.0.0.1:8080\n  max_connections: 10\n  timeout: 5s\n"
                    "  cors:\n    origins: [\"https://a.example.com\", \"http://localhost:3000\"]\n"
                    "    headers: authorization\n    expose: [x-request-id, X-Trace]\n"),
               0);
  MW_CHECK_STR(c.http.listen, "127.0.0.1:8080");
  MW_CHECK_INT(c.http.max_connections, 10);
  MW_CHECK_INT(c.http.timeout_ms, 5000);
  MW_CHECK_INT(c.http.cors_origins.n, 2);
  MW_CHECK_STR(c.http.cors_origins.v[1], "http://localhost:3000");
  MW_CHECK_INT(c.http.cors_headers.n, 1);
  MW_CHECK_STR(c.http.cors_headers.v[0], "authorization");
  MW_CHECK_INT(c.http.cors_expose.n, 2);
  MW_CHECK_STR(c.http.cors_expose.v[1], "X-Trace");
  mw_config_free(&c);
  mw_config_free(&c); /* twice: harmless */
  mw_diag_free(&d);
  expect_ok("http: {listen: \"[::1]:0\", cors: {origins: \"*\"}}\n");
  expect_one("http: {listen: 8080}\n",
             "t.yaml:1:16: http.listen: invalid address '8080': missing port (expected "
             "HOST:PORT)");
  expect_one("http: {cors: {origins: [\"app.example.com\"]}}\n",
             "t.yaml:1:25: http.cors.origins: 'app.example.com' is not an origin (expected "
             "\"*\" or SCHEME://HOST[:PORT], e.g. https://app.example.com)");
  expect_one("http: {cors: {origins: [\"https://a.com/\"]}}\n",
             "t.yaml:1:25: http.cors.origins: 'https://a.com/' is not an origin (expected "
             "\"*\" or SCHEME://HOST[:PORT], e.g. https://app.example.com)");
  expect_one("http: {cors: {headers: [\"x y\"]}}\n",
             "t.yaml:1:25: http.cors.headers: 'x y' is not a header name (letters, digits, "
             "'-', '_')");
  expect_one("http: {cors: {expose: \"a:b\"}}\n",
             "t.yaml:1:23: http.cors.expose: 'a:b' is not a header name (letters, digits, "
             "'-', '_')");
  expect_one("http: {cors: {allow: []}}\n",
             "t.yaml:1:15: unknown key 'allow' in 'http.cors' (valid keys: origins, headers, "
             "expose)");
  expect_one("http: {max_connections: 0}\n",
             "t.yaml:1:25: http.max_connections: must be at least 1, got '0'");
  expect_one("http: {origins: []}\n",
             "t.yaml:1:8: unknown key 'origins' in 'http' (valid keys: listen, "
             "max_connections, timeout, cors, tls, rules, sse_keepalive, sse_retry)");
  expect_one("http: {tls: {cert: a.pem}}\n",
             "t.yaml:1:13: http.tls needs both cert and key (the certificate chain and its "
             "private key, PEM files)");
  MW_CHECK_INT(load(&c, &d, "http: {tls: {cert: a.pem, key: k/a.key}}\n"), 0);
  MW_CHECK(c.http.tls_cert && strstr(c.http.tls_cert, "/a.pem"));
  MW_CHECK(c.http.tls_key && strstr(c.http.tls_key, "/k/a.key"));
  MW_CHECK(c.http.tls_client_ca == NULL);
  mw_config_free(&c);
  mw_diag_free(&d);
  MW_CHECK_INT(load(&c, &d,
                    "http: {sse_keepalive: 2s, tls: {cert: a.pem, key: a.key, client_ca: ca.pem, "
                    "require_client_cert: true}}\n"),
               0);
  MW_CHECK_INT(c.http.sse_keepalive_ms, 2000);
  MW_CHECK_INT(c.http.sse_retry_ms, 0);
  MW_CHECK(c.http.tls_client_ca && strstr(c.http.tls_client_ca, "/ca.pem"));
  MW_CHECK_INT(c.http.tls_require_client_cert, 1);
  mw_config_free(&c);
  mw_diag_free(&d);
  MW_CHECK_INT(load(&c, &d, "http: {sse_keepalive: 0, sse_retry: 500ms}\n"), 0);
  MW_CHECK_INT(c.http.sse_keepalive_ms, 0);
  MW_CHECK_INT(c.http.sse_retry_ms, 500);
  mw_config_free(&c);
  mw_diag_free(&d);
  expect_one("http: {tls: {cert: a.pem, key: a.key, require_client_cert: true}}\n",
             "t.yaml:1:39: http.tls.require_client_cert needs http.tls.client_ca (the CAs "
             "client certificates must chain to)");
}

static void test_http_rules(void) {
  mw_config c;
  mw_diag d;
  MW_CHECK_INT(load(&c, &d, ""), 0);
  MW_CHECK_INT((int)c.n_http_rules, 0);
  mw_diag_free(&d);
  mw_config_free(&c);
  MW_CHECK_INT(load(&c, &d,
                    "http:\n"
                    "  rules:\n"
                    "    - selector: pkg.v1.Things.Get\n"
                    "      get: /v1/things/{id}\n"
                    "      response_body: thing\n"
                    "      additional_bindings:\n"
                    "        - post: /v1/things:get\n"
                    "          body: \"*\"\n"
                    "        - custom: {kind: HEAD, path: \"/v1/things/{id}\"}\n"
                    "    - selector: pkg.v1.Things.Update\n"
                    "      patch: /v1/{thing.name=things/*}\n"
                    "      body: thing\n"),
               0);
  MW_CHECK_INT(mw_diag_count(&d), 0);
  MW_CHECK_INT((int)c.n_http_rules, 2);
  if (c.n_http_rules == 2) {
    const mw_config_http_rule *r = &c.http_rules[0];
    MW_CHECK_STR(r->selector, "pkg.v1.Things.Get");
    MW_CHECK_STR(r->method, "GET");
    MW_CHECK_STR(r->path, "/v1/things/{id}");
    MW_CHECK(r->body == NULL);
    MW_CHECK_STR(r->response_body, "thing");
    MW_CHECK_INT((int)r->n_additional, 2);
    MW_CHECK_INT((int)r->line, 3);
    if (r->n_additional == 2) {
      MW_CHECK(r->additional[0].selector == NULL);
      MW_CHECK_STR(r->additional[0].method, "POST");
      MW_CHECK_STR(r->additional[0].path, "/v1/things:get");
      MW_CHECK_STR(r->additional[0].body, "*");
      MW_CHECK_STR(r->additional[1].method, "HEAD");
      MW_CHECK_STR(r->additional[1].path, "/v1/things/{id}");
    }
    MW_CHECK_STR(c.http_rules[1].method, "PATCH");
    MW_CHECK_STR(c.http_rules[1].body, "thing");
  }
  mw_diag_free(&d);
  mw_config_free(&c);
  mw_config_free(&c); /* twice is fine */

  expect_one("http:\n  rules: {selector: a.b.C}\n",
             "t.yaml:2:10: http.rules: expected a list of rules (- selector: pkg.Service.Method "
             "...), got a mapping");
  expect_one("http:\n  rules:\n    - get: /x\n",
             "t.yaml:3:7: http.rules: a rule needs a selector (the method it binds: "
             "pkg.Service.Method)");
  expect_one("http:\n  rules:\n    - selector: a.B.C\n",
             "t.yaml:3:7: http.rules: a rule needs one of get, put, post, delete, patch or custom");
  expect_one("http:\n  rules:\n    - {selector: /a.B/C, get: /x}\n",
             "t.yaml:3:18: http.rules.selector: '/a.B/C' is not a method name "
             "(pkg.Service.Method, dots, not slashes)");
  expect_one("http:\n  rules:\n    - {selector: a.B.C, get: /x, post: /y}\n",
             "t.yaml:3:34: http.rules.post: the rule already has a pattern (GET): give one of get, "
             "put, post, delete, patch or custom per rule, and more in additional_bindings");
  expect_one("http:\n  rules:\n    - {selector: a.B.C, get: x}\n",
             "t.yaml:3:30: http.rules.get: 'x' is not a path template (it starts with '/')");
  expect_one("http:\n  rules:\n    - {selector: a.B.C, custom: {kind: HEAD}}\n",
             "t.yaml:3:33: http.rules.custom needs kind and path");
  expect_one("http:\n  rules:\n    - {selector: a.B.C, custom: {kind: 'A B', path: /x}}\n",
             "t.yaml:3:40: http.rules.custom.kind: 'A B' is not an HTTP method name");
  expect_one("http:\n  rules:\n    - {selector: a.B.C, get: /x, colour: red}\n",
             "t.yaml:3:34: unknown key 'colour' in 'http.rules' (valid keys: selector, get, put, "
             "post, delete, patch, custom, body, response_body, additional_bindings)");
  expect_one("http:\n  rules:\n    - {selector: a.B.C, get: /x, additional_bindings: [{selector: "
             "a.B.D, get: /y}]}\n",
             "t.yaml:3:57: http.rules.additional_bindings: a binding has no selector (it is the "
             "rule's)");
  expect_one("http:\n  rules:\n    - {selector: a.B.C, get: /x, additional_bindings: [{get: /y, "
             "additional_bindings: []}]}\n",
             "t.yaml:3:66: http.rules.additional_bindings: bindings do not nest (one level only)");
  expect_one("http:\n  rules:\n    - {selector: a.B.C, get: /x, additional_bindings: [{body: x}]}\n",
             "t.yaml:3:56: http.rules.additional_bindings: a rule needs one of get, put, post, "
             "delete, patch or custom");
  expect_one("http:\n  rules:\n    - 5\n",
             "t.yaml:3:7: http.rules: each entry must be a mapping (selector, get: /path...), got "
             "a scalar");
  expect_one("http:\n  colour: x\n",
             "t.yaml:2:3: unknown key 'colour' in 'http' (valid keys: listen, max_connections, "
             "timeout, cors, tls, rules, sse_keepalive, sse_retry)");
}

int main(void) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/config", MW_TEST_TMP);
  mkdir_p(p);
  char real[PATH_MAX];
  if (!realpath(p, real) || strlen(real) >= sizeof tmp_root) {
    fprintf(stderr, "cannot use %s: %s\n", p, strerror(errno));
    return 1;
  }
  memcpy(tmp_root, real, strlen(real) + 1);
  MW_RUN(test_defaults);
  MW_RUN(test_empty_files);
  MW_RUN(test_every_key_from_file);
  MW_RUN(test_scalar_forms);
  MW_RUN(test_sizes);
  MW_RUN(test_durations);
  MW_RUN(test_listen);
  MW_RUN(test_wrong_types);
  MW_RUN(test_top_level);
  MW_RUN(test_unknown_keys);
  MW_RUN(test_drain_and_builtins);
  MW_RUN(test_methods_and_shedding);
  MW_RUN(test_interceptors);
  MW_RUN(test_idempotency);
  MW_RUN(test_transport);
  MW_RUN(test_lua_section);
  MW_RUN(test_duplicates);
  MW_RUN(test_yaml_features);
  MW_RUN(test_many_errors_one_pass);
  MW_RUN(test_paths);
  MW_RUN(test_file_errors);
  MW_RUN(test_config_lists);
  MW_RUN(test_protos);
  MW_RUN(test_load_twice);
  MW_RUN(test_tls);
  MW_RUN(test_compression);
  MW_RUN(test_tracing);
  MW_RUN(test_client);
  MW_RUN(test_shared);
  MW_RUN(test_sessions);
  MW_RUN(test_http);
  MW_RUN(test_http_rules);
  return mw_test_done();
}
