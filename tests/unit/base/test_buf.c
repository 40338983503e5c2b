/* Unit tests for mw_buf: appends, printf past the stack buffer, JSON
 * string escaping of every byte, take and free, and the oom latch. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_buf.h"
#include "mw_test.h"

static void test_put_printf_take(void) {
  mw_buf b = {0};
  mw_buf_put(&b, "ab", 2);
  mw_buf_puts(&b, "cd");
  mw_buf_put(&b, NULL, 0);
  mw_buf_printf(&b, "-%d-", 42);
  MW_CHECK_STR(b.p, "abcd-42-");
  MW_CHECK_INT(b.len, 8);
  /* longer than printf's stack buffer: formatted straight into b */
  char big[1000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  mw_buf_printf(&b, "%s!", big);
  MW_CHECK_INT(b.len, 8 + 999 + 1);
  MW_CHECK(b.p[b.len] == 0 && b.p[b.len - 1] == '!' && b.p[8] == 'x');
  size_t n = 0;
  char *s = mw_buf_take(&b, &n);
  MW_CHECK_INT(n, 1008);
  MW_CHECK(s && strlen(s) == 1008);
  free(s);
  MW_CHECK(b.p == NULL && b.len == 0 && b.cap == 0);
  /* an empty buffer gives an empty string, not NULL */
  s = mw_buf_take(&b, &n);
  MW_CHECK_STR(s, "");
  MW_CHECK_INT(n, 0);
  free(s);
  mw_buf_free(&b);
  mw_buf_free(&b);
}

static void test_json(void) {
  mw_buf b = {0};
  mw_buf_json(&b, "a\"b\\c\nd\r\t\x01\x1f\x7f\xc3\xa9 ", 15);
  MW_CHECK_STR(b.p, "\"a\\\"b\\\\c\\nd\\r\\t\\u0001\\u001f\\u007f\xc3\xa9 \"");
  mw_buf_free(&b);
  mw_buf_json(&b, "", 0);
  MW_CHECK_STR(b.p, "\"\"");
  mw_buf_free(&b);
  /* a NUL inside the string is escaped too */
  mw_buf_json(&b, "x\0y", 3);
  MW_CHECK_STR(b.p, "\"x\\u0000y\"");
  mw_buf_free(&b);
  /* every byte below 0x20, DEL, " and \ is escaped; nothing else is */
  for (int c = 0; c < 256; c++) {
    char ch = (char)c;
    mw_buf_json(&b, &ch, 1);
    int esc = c < 0x20 || c == 0x7f || c == '"' || c == '\\';
    MW_CHECK(b.p[0] == '"' && b.p[b.len - 1] == '"');
    if (esc) MW_CHECK(b.p[1] == '\\' && (b.len == 4 || b.len == 8));
    else MW_CHECK(b.len == 3 && (unsigned char)b.p[1] == c);
    for (size_t i = 1; i + 1 < b.len; i++) MW_CHECK((unsigned char)b.p[i] >= 0x20);
    mw_buf_free(&b);
  }
}

static void test_oom(void) {
  mw_buf b = {0};
  mw_buf_puts(&b, "abc");
  /* a size that cannot be allocated latches oom; later appends do nothing */
  mw_buf_put(&b, "x", SIZE_MAX - 1);
  MW_CHECK_INT(b.oom, 1);
  mw_buf_puts(&b, "def");
  mw_buf_json(&b, "g", 1);
  MW_CHECK_INT(b.len, 3);
  size_t n = 99;
  MW_CHECK(mw_buf_take(&b, &n) == NULL);
  MW_CHECK_INT(n, 0);
  MW_CHECK(b.p == NULL && b.oom == 0);
  /* and the buffer is usable again after take */
  mw_buf_puts(&b, "ok");
  MW_CHECK_STR(b.p, "ok");
  mw_buf_free(&b);
}

int main(void) {
  MW_RUN(test_put_printf_take);
  MW_RUN(test_json);
  MW_RUN(test_oom);
  return mw_test_done();
}
