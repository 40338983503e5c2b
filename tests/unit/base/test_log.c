/* Log records: text and JSON lines, escaping, invalid UTF-8, cutting, the
 * rate limit. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mw_log.h"
#include "mw_test.h"

/* Logs through a pipe and returns the record (static buffer). */
static char out[1 << 21];

static const char *capture(int json, void (*fn)(void)) {
  int fds[2];
  if (pipe(fds) != 0) return "";
  mw_log_configure(MW_LOG_DEBUG, json, fds[1]);
  fn();
  close(fds[1]);
  size_t n = 0;
  ssize_t k;
  while ((k = read(fds[0], out + n, sizeof out - 1 - n)) > 0) n += (size_t)k;
  out[n] = 0;
  close(fds[0]);
  mw_log_configure(MW_LOG_INFO, 0, 2);
  return out;
}

static void log_plain(void) { mw_log(MW_LOG_INFO, "hello %d", 42); }

static void log_fields(void) {
  const char *keys[] = {"method", "n"};
  const char *vals[] = {"/a.B/C", "7"};
  mw_log_fields(MW_LOG_WARN, "with \"quotes\"\nand newline", 2, keys, vals);
}

static void log_bytes(void) {
  const char *keys[] = {"k"};
  const char *vals[] = {"a\0b\xc3"};
  size_t lens[] = {4};
  mw_log_record(MW_LOG_ERROR, "bad \xff\xfe bytes \xe2\x82\xac ok", 19, 1, keys,
                vals, lens);
}

static void log_debug_filtered(void) {
  mw_log_configure(MW_LOG_WARN, 1, 1);
}

static void test_text(void) {
  const char *r = capture(0, log_plain);
  MW_CHECK_CONTAINS(r, " info hello 42\n");
  r = capture(0, log_fields);
  MW_CHECK_CONTAINS(r, " warn with \"quotes\"\\nand newline method=/a.B/C n=7\n");
}

/* What an attacker may put in a record, in the text format: one line, no
 * byte a terminal acts on, invalid UTF-8 shown as it is, valid kept. */
static void log_hostile(void) {
  const char *keys[] = {"k\x1b"};
  const char *vals[] = {"v\r\n2026-01-01T00:00:00.000Z error forged"};
  const char *msg = "\x1b[2J\x07" "bell\ttab\x7f \xc2\x9b \xff\\ \xe2\x82\xac";
  mw_log_record(MW_LOG_ERROR, msg, strlen(msg), 1, keys, vals, NULL);
}

static void test_text_escapes(void) {
  const char *r = capture(0, log_hostile);
  MW_CHECK_CONTAINS(r, " error \\x1b[2J\\x07bell\\ttab\\x7f \\xc2\\x9b \\xff\\\\ \xe2\x82\xac "
                       "k\\x1b=v\\r\\n2026-01-01T00:00:00.000Z error forged\n");
  /* one record, one line */
  MW_CHECK(strchr(r, '\n') == r + strlen(r) - 1);
  for (const char *p = r; *p; p++) MW_CHECK(*p == '\n' || ((unsigned char)*p >= 0x20 && *p != 0x7f));
}

static void test_json(void) {
  const char *r = capture(1, log_plain);
  MW_CHECK(r[0] == '{');
  MW_CHECK_CONTAINS(r, "\"level\":\"info\",\"msg\":\"hello 42\"}\n");
  r = capture(1, log_fields);
  MW_CHECK_CONTAINS(r, "\"msg\":\"with \\\"quotes\\\"\\nand newline\",\"method\":\"/a.B/C\",\"n\":\"7\"}");
}

static void test_json_bytes(void) {
  const char *r = capture(1, log_bytes);
  /* invalid bytes become U+FFFD, valid multi-byte stays, NUL is escaped */
  MW_CHECK_CONTAINS(r, "\"msg\":\"bad \\ufffd\\ufffd bytes \xe2\x82\xac ok\"");
  MW_CHECK_CONTAINS(r, "\"k\":\"a\\u0000b\\ufffd\"}");
}

static char *big;
static void log_big(void) {
  const char *keys[] = {"tail"};
  const char *vals[] = {big};
  mw_log_fields(MW_LOG_INFO, "big", 1, keys, vals);
}

/* Runs fn with the log in a file (a pipe holds 64 KiB by default, and the
 * writer must not block); the file's content goes to out. */
static void capture_file(int json, void (*fn)(void)) {
  char path[] = "/tmp/mw_log_testXXXXXX";
  int fd = mkstemp(path);
  MW_CHECK(fd >= 0);
  mw_log_configure(MW_LOG_INFO, json, fd);
  fn();
  mw_log_configure(MW_LOG_INFO, 0, 2);
  lseek(fd, 0, SEEK_SET);
  ssize_t k = read(fd, out, sizeof out - 1);
  out[k > 0 ? k : 0] = 0;
  close(fd);
  unlink(path);
}

static void log_big_msg(void) { mw_log_record(MW_LOG_ERROR, big, strlen(big), 0, NULL, NULL, NULL); }

static void test_text_cut(void) {
  /* A 2 MiB message: the record keeps its timestamp and level, the head of
   * the message, and says how much was cut. */
  size_t n = 2u << 20;
  big = malloc(n + 1);
  memset(big, 'y', n);
  big[n] = 0;
  capture_file(0, log_big_msg);
  size_t len = strlen(out);
  MW_CHECK(len <= 16384 && len > 16000);
  MW_CHECK(out[4] == '-' && out[10] == 'T');
  MW_CHECK_CONTAINS(out, "Z error yyyy");
  char mark[64];
  snprintf(mark, sizeof mark, "y [truncated: %zu bytes cut]\n",
           n - (size_t)(strstr(out, " [truncated") - strstr(out, "yyyy")));
  MW_CHECK_CONTAINS(out, mark);
  MW_CHECK(strchr(out, '\n') == out + len - 1);
  /* escapes count toward the cap, and are never split */
  memset(big, '\x1b', n);
  capture_file(0, log_big_msg);
  len = strlen(out);
  MW_CHECK(len <= 16384);
  MW_CHECK_CONTAINS(out, "\\x1b [truncated: ");
  free(big);
}

static void test_json_cut(void) {
  /* A 3 MiB field is cut; the record stays valid JSON and counts the cut. */
  size_t n = 3u << 20;
  big = malloc(n + 1);
  memset(big, 'x', n);
  big[n] = 0;
  capture_file(1, log_big);
  free(big);
  MW_CHECK_CONTAINS(out, "\"msg\":\"big\",\"tail\":\"xxxx");
  MW_CHECK_CONTAINS(out, "xx\",\"truncated_bytes\":");
  MW_CHECK(strlen(out) <= 16384);
  size_t kept = (size_t)(strstr(out, "\",\"truncated_bytes") - strstr(out, "xxxx"));
  char mark[64];
  snprintf(mark, sizeof mark, "\"truncated_bytes\":%zu}\n", n - kept);
  MW_CHECK_CONTAINS(out, mark);
}

/* 1,000 errors at once: the burst goes out, the rest are counted, and the
 * next record after the bucket refills says how many were refused. */
static void log_storm(void) {
  mw_log_set_rate(1000, 5);
  for (int i = 0; i < 1000; i++) mw_log(MW_LOG_ERROR, "storm %d", i);
  mw_log(MW_LOG_INFO, "runtime info is not limited");
  usleep(20000);
  mw_log(MW_LOG_ERROR, "after");
  const char *keys[] = {"at"};
  const char *vals[] = {"x.lua:1"};
  mw_log_set_rate(0, 2); /* script records spend tokens at every level */
  for (int i = 0; i < 4; i++) mw_log_script(MW_LOG_INFO, "printed", 7, 1, keys, vals, NULL);
  mw_log_set_rate(MW_LOG_RATE_PER_S, MW_LOG_RATE_BURST);
}

static void test_rate_limit(void) {
  const char *r = capture(0, log_storm);
  MW_CHECK_CONTAINS(r, " error storm 4\n");
  MW_CHECK(strstr(r, " error storm 5\n") == NULL);
  MW_CHECK_CONTAINS(r, " info runtime info is not limited\n");
  MW_CHECK_CONTAINS(r, " warn 995 log records suppressed (rate limit: 1000 per second, "
                       "bursts of 5)\n");
  MW_CHECK_CONTAINS(r, " error after\n");
  int printed = 0;
  for (const char *p = r; (p = strstr(p, " info printed at=x.lua:1\n")); p++) printed++;
  MW_CHECK_INT(printed, 2);
}

static void test_levels(void) {
  MW_CHECK_INT(mw_log_level_parse("debug"), MW_LOG_DEBUG);
  MW_CHECK_INT(mw_log_level_parse("warning"), MW_LOG_WARN);
  MW_CHECK_INT(mw_log_level_parse("loud"), -1);
  log_debug_filtered();
  MW_CHECK(!mw_log_enabled(MW_LOG_INFO));
  MW_CHECK(mw_log_enabled(MW_LOG_ERROR));
  mw_log_configure(MW_LOG_INFO, 0, 2);
}

int main(void) {
  MW_RUN(test_text);
  MW_RUN(test_json);
  MW_RUN(test_json_bytes);
  MW_RUN(test_text_escapes);
  MW_RUN(test_text_cut);
  MW_RUN(test_json_cut);
  MW_RUN(test_rate_limit);
  MW_RUN(test_levels);
  return mw_test_done();
}
