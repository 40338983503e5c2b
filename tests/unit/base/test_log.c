/* Log records: text and JSON lines, escaping, invalid UTF-8, cutting. */
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
  MW_CHECK_CONTAINS(r, " warn with \"quotes\"\n  and newline method=/a.B/C n=7\n");
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

static void test_json_cut(void) {
  /* A 3 MiB field is dropped whole; the record stays valid JSON. A pipe
   * holds 64 KiB by default, so the writer must not block: use a file. */
  size_t n = 3u << 20;
  big = malloc(n + 1);
  memset(big, 'x', n);
  big[n] = 0;
  char path[] = "/tmp/mw_log_testXXXXXX";
  int fd = mkstemp(path);
  MW_CHECK(fd >= 0);
  mw_log_configure(MW_LOG_INFO, 1, fd);
  log_big();
  mw_log_configure(MW_LOG_INFO, 0, 2);
  lseek(fd, 0, SEEK_SET);
  ssize_t k = read(fd, out, sizeof out - 1);
  out[k > 0 ? k : 0] = 0;
  close(fd);
  unlink(path);
  free(big);
  MW_CHECK_CONTAINS(out, "\"msg\":\"big\",\"truncated\":true}\n");
  MW_CHECK(strlen(out) < 200);
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
  MW_RUN(test_json_cut);
  MW_RUN(test_levels);
  return mw_test_done();
}
