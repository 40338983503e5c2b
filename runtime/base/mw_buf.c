/* The growable text buffer: see mw_buf.h. */
#include "base/mw_buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL; -1 (and oom set) when there is none. */
static int reserve(mw_buf *b, size_t n) {
  if (b->oom) return -1;
  if (n > SIZE_MAX - 1 - b->len) {
    b->oom = 1;
    return -1;
  }
  size_t need = b->len + n + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

void mw_buf_put(mw_buf *b, const char *s, size_t n) {
  if (reserve(b, n) != 0) return;
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

void mw_buf_puts(mw_buf *b, const char *s) { mw_buf_put(b, s, strlen(s)); }

void mw_buf_printf(mw_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof tmp) {
    mw_buf_put(b, tmp, (size_t)n);
    return;
  }
  /* too long for the stack: format again straight into the buffer */
  if (reserve(b, (size_t)n) != 0) return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void mw_buf_json(mw_buf *b, const char *s, size_t n) {
  mw_buf_put(b, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != 0x7f && c != '"' && c != '\\') continue;
    /* runs of bytes that need no escaping go in one copy */
    mw_buf_put(b, s + run, i - run);
    run = i + 1;
    switch (c) {
    case '"': mw_buf_put(b, "\\\"", 2); break;
    case '\\': mw_buf_put(b, "\\\\", 2); break;
    case '\n': mw_buf_put(b, "\\n", 2); break;
    case '\r': mw_buf_put(b, "\\r", 2); break;
    case '\t': mw_buf_put(b, "\\t", 2); break;
    default: {
      static const char hex[] = "0123456789abcdef";
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      mw_buf_put(b, u, sizeof u);
    }
    }
  }
  mw_buf_put(b, s + run, n - run);
  mw_buf_put(b, "\"", 1);
}

char *mw_buf_take(mw_buf *b, size_t *len) {
  char *p = b->p;
  if (len) *len = b->oom ? 0 : b->len;
  if (b->oom) {
    free(p);
    p = NULL;
  } else if (!p) {
    p = calloc(1, 1);
  }
  *b = (mw_buf){0};
  return p;
}

void mw_buf_free(mw_buf *b) {
  free(b->p);
  *b = (mw_buf){0};
}
