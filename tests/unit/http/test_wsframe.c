/* The WebSocket wire (http/mw_wsframe.h), on the examples of RFC 6455
 * (sections 1.3 and 5.7) and the rules of sections 5 and 7. */
#include <stdlib.h>
#include <string.h>

#include "http/mw_wsframe.h"
#include "mw_test.h"

static void test_accept_key(void) {
  mw_test_current = "accept key (section 1.3)";
  char out[29];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  mw_ws_accept_key(key, strlen(key), out);
  MW_CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  MW_CHECK(mw_ws_key_valid(key, strlen(key)));
  MW_CHECK(!mw_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ", 22));   /* unpadded */
  MW_CHECK(!mw_ws_key_valid("dGhlIHNhbXBsZSBub25j", 20));     /* 15 bytes */
  MW_CHECK(!mw_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ!=", 24)); /* not base64 */
  MW_CHECK(!mw_ws_key_valid(NULL, 0));
}

static void test_masked_hello(void) {
  mw_test_current = "a masked Hello (section 5.7)";
  unsigned char f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  mw_ws_head h;
  int code = 0;
  const char *why = NULL;
  /* Every prefix shorter than the head asks for more. */
  for (size_t n = 0; n < 6; n++) MW_CHECK_INT(mw_ws_read_head(f, n, &h, &code, &why), 0);
  MW_CHECK_INT(mw_ws_read_head(f, sizeof f, &h, &code, &why), 1);
  MW_CHECK_INT(h.fin, 1);
  MW_CHECK_INT(h.opcode, MW_WS_TEXT);
  MW_CHECK_INT(h.len, 5);
  MW_CHECK_INT(h.head_len, 6);
  unsigned char *p = f + h.head_len;
  /* Unmasked in two pieces: the offset carries the mask's phase. */
  mw_ws_unmask(p, 2, h.mask, 0);
  mw_ws_unmask(p + 2, 3, h.mask, 2);
  MW_CHECK(memcmp(p, "Hello", 5) == 0);

  mw_test_current = "a masked pong (section 5.7)";
  unsigned char g[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  MW_CHECK_INT(mw_ws_read_head(g, sizeof g, &h, &code, &why), 1);
  MW_CHECK_INT(h.opcode, MW_WS_PONG);
  mw_ws_unmask(g + 6, 5, h.mask, 0);
  MW_CHECK(memcmp(g + 6, "Hello", 5) == 0);
}

static void test_refused_heads(void) {
  mw_ws_head h;
  int code;
  const char *why;
  struct {
    const char *name;
    unsigned char b[14];
    size_t n;
    int code;
  } cases[] = {
      /* section 5.7's unmasked Hello, as a client would wrongly send it */
      {"unmasked", {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}, 7, MW_WS_CLOSE_PROTOCOL},
      {"unmasked fragment", {0x01, 0x03, 'H', 'e', 'l'}, 5, MW_WS_CLOSE_PROTOCOL},
      {"rsv1", {0xc1, 0x80, 1, 2, 3, 4}, 6, MW_WS_CLOSE_PROTOCOL},
      {"opcode 3", {0x83, 0x80, 1, 2, 3, 4}, 6, MW_WS_CLOSE_PROTOCOL},
      {"opcode 0xb", {0x8b, 0x80, 1, 2, 3, 4}, 6, MW_WS_CLOSE_PROTOCOL},
      {"fragmented ping", {0x09, 0x80, 1, 2, 3, 4}, 6, MW_WS_CLOSE_PROTOCOL},
      {"long close", {0x88, 0xfe, 0x00, 0x7e, 1, 2, 3, 4}, 8, MW_WS_CLOSE_PROTOCOL},
      {"top bit", {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 14, MW_WS_CLOSE_PROTOCOL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mw_test_current = cases[i].name;
    code = 0;
    why = NULL;
    MW_CHECK_INT(mw_ws_read_head(cases[i].b, cases[i].n, &h, &code, &why), -1);
    MW_CHECK_INT(code, cases[i].code);
    MW_CHECK(why != NULL);
  }
  mw_test_current = "unmasked: the reason";
  mw_ws_read_head(cases[0].b, cases[0].n, &h, &code, &why);
  MW_CHECK_STR(why, "client frames must be masked");
}

static void test_lengths(void) {
  mw_test_current = "256 bytes, 64 KiB (section 5.7)";
  unsigned char out[10];
  MW_CHECK_INT(mw_ws_put_head(out, MW_WS_TEXT, 5), 2);
  MW_CHECK(out[0] == 0x81 && out[1] == 0x05);
  MW_CHECK_INT(mw_ws_put_head(out, MW_WS_BINARY, 256), 4);
  MW_CHECK(out[0] == 0x82 && out[1] == 0x7e && out[2] == 0x01 && out[3] == 0x00);
  MW_CHECK_INT(mw_ws_put_head(out, MW_WS_BINARY, 65536), 10);
  unsigned char want[10] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
  MW_CHECK(memcmp(out, want, 10) == 0);
  MW_CHECK_INT(mw_ws_put_head(out, MW_WS_BINARY, 65535), 4);
  MW_CHECK_INT(mw_ws_put_head(out, MW_WS_BINARY, 125), 2);
  MW_CHECK_INT(mw_ws_put_head(out, MW_WS_BINARY, 126), 4);

  mw_test_current = "masked 16- and 64-bit lengths read";
  unsigned char a[] = {0x82, 0xfe, 0x01, 0x00, 9, 9, 9, 9};
  unsigned char b[] = {0x02, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9};
  mw_ws_head h;
  int code;
  const char *why;
  MW_CHECK_INT(mw_ws_read_head(a, sizeof a, &h, &code, &why), 1);
  MW_CHECK_INT(h.len, 256);
  MW_CHECK_INT(h.head_len, 8);
  MW_CHECK_INT(mw_ws_read_head(b, sizeof b - 1, &h, &code, &why), 0);
  MW_CHECK_INT(mw_ws_read_head(b, sizeof b, &h, &code, &why), 1);
  MW_CHECK_INT(h.len, 65536);
  MW_CHECK_INT(h.fin, 0);
  MW_CHECK_INT(h.opcode, MW_WS_BINARY);
  MW_CHECK_INT(h.head_len, 14);
}

static void test_close(void) {
  mw_test_current = "close payloads";
  int code;
  const char *r;
  size_t rl;
  unsigned char ok[] = {0x03, 0xe8, 'b', 'y', 'e'};
  MW_CHECK_INT(mw_ws_read_close(ok, sizeof ok, &code, &r, &rl), 0);
  MW_CHECK_INT(code, 1000);
  MW_CHECK_INT(rl, 3);
  MW_CHECK(memcmp(r, "bye", 3) == 0);
  MW_CHECK_INT(mw_ws_read_close(ok, 0, &code, &r, &rl), 0);
  MW_CHECK_INT(code, 0);
  MW_CHECK_INT(mw_ws_read_close(ok, 1, &code, &r, &rl), -1);
  unsigned char c1005[] = {0x03, 0xed}, c999[] = {0x03, 0xe7}, c4001[] = {0x0f, 0xa1};
  unsigned char badutf[] = {0x03, 0xe8, 0xc0, 0x80};
  MW_CHECK_INT(mw_ws_read_close(c1005, 2, &code, &r, &rl), -1);
  MW_CHECK_INT(mw_ws_read_close(c999, 2, &code, &r, &rl), -1);
  MW_CHECK_INT(mw_ws_read_close(c4001, 2, &code, &r, &rl), 0);
  MW_CHECK_INT(code, 4001);
  MW_CHECK_INT(mw_ws_read_close(badutf, sizeof badutf, &code, &r, &rl), -1);

  unsigned char out[125];
  MW_CHECK_INT(mw_ws_put_close(out, 4003, "invalid_argument", 16), 18);
  MW_CHECK(out[0] == 0x0f && out[1] == 0xa3 && memcmp(out + 2, "invalid_argument", 16) == 0);
  /* A long reason is cut to 123 bytes, not inside a character. */
  char longr[200];
  memset(longr, 'a', sizeof longr);
  memcpy(longr + 122, "\xc3\xa9", 2);
  size_t n = mw_ws_put_close(out, 1000, longr, sizeof longr);
  MW_CHECK_INT(n, 124);
  MW_CHECK(mw_ws_utf8_valid((const char *)out + 2, n - 2));
}

static void test_utf8(void) {
  mw_test_current = "UTF-8";
  MW_CHECK(mw_ws_utf8_valid("", 0));
  MW_CHECK(mw_ws_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
  MW_CHECK(!mw_ws_utf8_valid("\xc0\xaf", 2));          /* overlong '/' */
  MW_CHECK(!mw_ws_utf8_valid("\xe0\x80\xaf", 3));      /* overlong, 3 bytes */
  MW_CHECK(!mw_ws_utf8_valid("\xed\xa0\x80", 3));      /* a surrogate */
  MW_CHECK(!mw_ws_utf8_valid("\xf4\x90\x80\x80", 4));  /* past U+10FFFF */
  MW_CHECK(!mw_ws_utf8_valid("\xe2\x82", 2));          /* cut short */
  MW_CHECK(!mw_ws_utf8_valid("\x80", 1));              /* a lone continuation */
  char s[] = "a\xff" "b\xe2\x82" "c";
  mw_ws_utf8_fix(s, strlen(s));
  MW_CHECK_STR(s, "a?b??c");
  MW_CHECK(mw_ws_utf8_valid(s, strlen(s)));
}

int main(void) {
  test_accept_key();
  test_masked_hello();
  test_refused_heads();
  test_lengths();
  test_close();
  test_utf8();
  return mw_test_done();
}
