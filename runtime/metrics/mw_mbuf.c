#include "metrics/mw_mbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(mw_mbuf *b, size_t n) {
  if (b->oom) return -1;
  if (b->len + n + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

void mw_mbuf_put(mw_mbuf *b, const char *s, size_t n) {
  if (reserve(b, n) != 0) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

void mw_mbuf_puts(mw_mbuf *b, const char *s) { mw_mbuf_put(b, s, strlen(s)); }

void mw_mbuf_printf(mw_mbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof tmp) {
    mw_mbuf_put(b, tmp, (size_t)n);
    return;
  }
  if (reserve(b, (size_t)n) != 0) return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void mw_mbuf_label_value(mw_mbuf *b, const char *s, size_t n) {
  size_t i = 0, run = 0;
  for (; i < n; i++) {
    const char *esc = s[i] == '\\' ? "\\\\" : s[i] == '"' ? "\\\"" : s[i] == '\n' ? "\\n" : NULL;
    if (!esc) continue;
    mw_mbuf_put(b, s + run, i - run);
    mw_mbuf_puts(b, esc);
    run = i + 1;
  }
  mw_mbuf_put(b, s + run, n - run);
}

void mw_mbuf_help(mw_mbuf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\') mw_mbuf_puts(b, "\\\\");
    else if (*s == '\n') mw_mbuf_puts(b, "\\n");
    else mw_mbuf_put(b, s, 1);
  }
}

void mw_mbuf_json(mw_mbuf *b, const char *s, size_t n) {
  mw_mbuf_put(b, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
    mw_mbuf_put(b, s + run, i - run);
    if (ch == '"') mw_mbuf_puts(b, "\\\"");
    else if (ch == '\\') mw_mbuf_puts(b, "\\\\");
    else if (ch == '\n') mw_mbuf_puts(b, "\\n");
    else mw_mbuf_printf(b, "\\u%04x", ch);
    run = i + 1;
  }
  mw_mbuf_put(b, s + run, n - run);
  mw_mbuf_put(b, "\"", 1);
}

void mw_mbuf_value(mw_mbuf *b, double v) {
  if (isnan(v)) {
    mw_mbuf_puts(b, "NaN");
  } else if (isinf(v)) {
    mw_mbuf_puts(b, v > 0 ? "+Inf" : "-Inf");
  } else if (v == floor(v) && fabs(v) < 1e15) {
    mw_mbuf_printf(b, "%.0f", v);
  } else {
    char tmp[40];
    for (int prec = 6; prec <= 17; prec++) {
      snprintf(tmp, sizeof tmp, "%.*g", prec, v);
      if (strtod(tmp, NULL) == v) break;
    }
    mw_mbuf_puts(b, tmp);
  }
}

char *mw_mbuf_take(mw_mbuf *b, size_t *len) {
  char *p = b->p;
  if (len) *len = b->len;
  if (!p && !b->oom) p = calloc(1, 1);
  if (b->oom) {
    free(p);
    p = NULL;
  }
  b->p = NULL;
  b->len = b->cap = 0;
  b->oom = 0;
  return p;
}

void mw_mbuf_free(mw_mbuf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
  b->oom = 0;
}
