/* The WebSocket wire (http/mw_wsframe.h). */
#include "http/mw_wsframe.h"

#include <string.h>

#include "base/mw_buf.h"
#include "http/mw_webwire.h"
#include "tls/mw_digest.h"

int mw_ws_read_head(const unsigned char *buf, size_t len, mw_ws_head *h, int *close_code,
                    const char **why) {
  if (len < 2) return 0;
  int opcode = buf[0] & 0x0f;
  h->fin = (buf[0] & 0x80) != 0;
  h->opcode = opcode;
  if (buf[0] & 0x70) {
    *close_code = MW_WS_CLOSE_PROTOCOL;
    *why = "a frame has reserved bits set (no extension was agreed)";
    return -1;
  }
  if (opcode != MW_WS_CONT && opcode != MW_WS_TEXT && opcode != MW_WS_BINARY &&
      opcode != MW_WS_CLOSE && opcode != MW_WS_PING && opcode != MW_WS_PONG) {
    *close_code = MW_WS_CLOSE_PROTOCOL;
    *why = "a frame has an unknown opcode";
    return -1;
  }
  if (!(buf[1] & 0x80)) {
    *close_code = MW_WS_CLOSE_PROTOCOL;
    *why = "client frames must be masked";
    return -1;
  }
  uint64_t n = buf[1] & 0x7f;
  size_t at = 2;
  if (n == 126) {
    if (len < 4) return 0;
    n = ((uint64_t)buf[2] << 8) | buf[3];
    at = 4;
  } else if (n == 127) {
    if (len < 10) return 0;
    n = 0;
    for (int i = 0; i < 8; i++) n = (n << 8) | buf[2 + i];
    if (n >> 63) {
      *close_code = MW_WS_CLOSE_PROTOCOL;
      *why = "a frame's length has its top bit set";
      return -1;
    }
    at = 10;
  }
  if (opcode >= MW_WS_CLOSE && (!h->fin || n > 125)) {
    *close_code = MW_WS_CLOSE_PROTOCOL;
    *why = "a control frame is fragmented or longer than 125 bytes";
    return -1;
  }
  if (len < at + 4) return 0;
  memcpy(h->mask, buf + at, 4);
  h->len = n;
  h->head_len = at + 4;
  return 1;
}

void mw_ws_unmask(unsigned char *data, size_t len, const unsigned char mask[4],
                  uint64_t offset) {
  for (size_t i = 0; i < len; i++) data[i] ^= mask[(offset + i) & 3];
}

size_t mw_ws_put_head(unsigned char out[10], int opcode, uint64_t len) {
  out[0] = (unsigned char)(0x80 | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (unsigned char)len;
    return 2;
  }
  if (len <= 0xffff) {
    out[1] = 126;
    out[2] = (unsigned char)(len >> 8);
    out[3] = (unsigned char)len;
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; i++) out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
  return 10;
}

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void mw_ws_accept_key(const char *key, size_t key_len, char out[29]) {
  unsigned char md[MW_SHA1_LEN];
  mw_digest_part parts[2] = {{key, key_len}, {WS_GUID, sizeof WS_GUID - 1}};
  out[0] = '\0';
  if (mw_sha1(parts, 2, md) != 0) return;
  mw_buf b = {0};
  mw_web_b64_encode(&b, md, MW_SHA1_LEN, 1);
  if (!b.oom && b.len == 28) memcpy(out, b.p, 29);
  mw_buf_free(&b);
}

int mw_ws_key_valid(const char *key, size_t key_len) {
  unsigned char raw[24];
  return key && key_len == 24 && mw_web_b64_decode(key, key_len, raw, 0) == 16;
}

/* The length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t len) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07;
  else return 0;
  if (len < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

int mw_ws_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    size_t n = utf8_seq(p + i, len - i);
    if (!n) return 0;
    i += n;
  }
  return 1;
}

void mw_ws_utf8_fix(char *s, size_t len) {
  unsigned char *p = (unsigned char *)s;
  for (size_t i = 0; i < len;) {
    size_t n = utf8_seq(p + i, len - i);
    if (!n) {
      p[i] = '?';
      n = 1;
    }
    i += n;
  }
}

int mw_ws_read_close(const unsigned char *p, size_t len, int *code, const char **reason,
                     size_t *reason_len) {
  *code = 0;
  *reason = "";
  *reason_len = 0;
  if (len == 0) return 0;
  if (len == 1) return -1;
  int c = (p[0] << 8) | p[1];
  /* 1004-1006 and 1015 are never sent; 1012-1014 are IANA's later ones. */
  if (c < 1000 || (c >= 1004 && c <= 1006) || (c > 1014 && c < 3000) || c > 4999) return -1;
  if (!mw_ws_utf8_valid((const char *)p + 2, len - 2)) return -1;
  *code = c;
  *reason = (const char *)p + 2;
  *reason_len = len - 2;
  return 0;
}

size_t mw_ws_put_close(unsigned char out[125], int code, const char *reason, size_t reason_len) {
  out[0] = (unsigned char)(code >> 8);
  out[1] = (unsigned char)code;
  size_t n = reason_len > 123 ? 123 : reason_len;
  /* Not inside a character: back off continuation bytes. */
  while (n < reason_len && n > 0 && ((unsigned char)reason[n] & 0xc0) == 0x80) n--;
  memcpy(out + 2, reason, n);
  return 2 + n;
}
