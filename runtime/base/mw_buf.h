/* A growable byte buffer for rendered text (Prometheus exposition, JSON
 * bodies, OTLP requests) and the JSON string escaping they share.
 *
 * Ownership: the buffer owns p. A zeroed mw_buf is empty and ready. A
 * failed allocation (or a size that would overflow) sets oom; every later
 * append does nothing, so a writer checks once at the end (oom, or a NULL
 * from mw_buf_take) instead of after every call. mw_buf_free and
 * mw_buf_take reset the buffer to empty, and are safe to call twice. */
#ifndef MW_BUF_H
#define MW_BUF_H

#include <stddef.h>

typedef struct mw_buf {
  char *p;          /* NUL-terminated once anything was written; owned */
  size_t len, cap;  /* bytes written (without the NUL), bytes allocated */
  int oom;          /* an allocation failed: the contents are incomplete */
} mw_buf;

/* Appends n bytes of s (which may hold NULs). */
void mw_buf_put(mw_buf *b, const char *s, size_t n);
/* Appends the NUL-terminated s. */
void mw_buf_puts(mw_buf *b, const char *s);
/* Appends printf(fmt, ...); an encoding error of vsnprintf appends nothing. */
void mw_buf_printf(mw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends n bytes of s as a JSON string with its quotes: " \ as \" \\,
 * newline, CR and tab as \n \r \t, the other control bytes and DEL as
 * \u00XX; bytes >= 0x80 are copied as they are (UTF-8 passes through). */
void mw_buf_json(mw_buf *b, const char *s, size_t n);
/* Gives up the bytes, NUL-terminated (the caller frees them; an empty
 * buffer gives ""), stores the length in *len when len is not NULL, and
 * resets b. After an allocation failure gives NULL (and frees what was
 * written). */
char *mw_buf_take(mw_buf *b, size_t *len);
/* Frees the bytes and resets b to empty. */
void mw_buf_free(mw_buf *b);

#endif
