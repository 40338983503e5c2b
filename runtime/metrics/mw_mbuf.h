/* A growable byte buffer for rendered text (Prometheus exposition, JSON),
 * and the escapings those formats need. The buffer owns its bytes; a
 * failed allocation sets oom and later appends do nothing, so a writer
 * checks once at the end. */
#ifndef MW_MBUF_H
#define MW_MBUF_H

#include <stddef.h>

typedef struct mw_mbuf {
  char *p;     /* NUL-terminated while len < cap; owned */
  size_t len, cap;
  int oom;
} mw_mbuf;

void mw_mbuf_put(mw_mbuf *b, const char *s, size_t n);
void mw_mbuf_puts(mw_mbuf *b, const char *s);
void mw_mbuf_printf(mw_mbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A label value of the text format: \ " and newline escaped. */
void mw_mbuf_label_value(mw_mbuf *b, const char *s, size_t n);
/* HELP text: \ and newline escaped. */
void mw_mbuf_help(mw_mbuf *b, const char *s);
/* A JSON string with its quotes; control bytes as \u00XX, bytes >= 0x80
 * copied as they are. */
void mw_mbuf_json(mw_mbuf *b, const char *s, size_t n);
/* A sample value as Prometheus writes it: integers without a fraction,
 * +Inf, -Inf, NaN, else the shortest form that reads back the same. */
void mw_mbuf_value(mw_mbuf *b, double v);
/* Gives up the bytes (the caller frees them) and resets b. */
char *mw_mbuf_take(mw_mbuf *b, size_t *len);
void mw_mbuf_free(mw_mbuf *b);

#endif
