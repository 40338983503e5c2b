/* Diagnostics: a list of human-readable problems ("file:line:col: message"),
 * collected so that `moonwire check` and a reload can report every one. */
#ifndef MW_DIAG_H
#define MW_DIAG_H

#include <stddef.h>

typedef struct mw_diag {
  char **msgs;    /* msgs[0..n): owned, each malloc'd, or NULL when its text
                     was lost for lack of memory */
  size_t n, cap;  /* n <= cap always */
  size_t dropped; /* messages that found no slot (out of memory) */
} mw_diag;

/* Appends one formatted message. Never fails loudly: on OOM the text (or
 * the whole message) is dropped but still counted, so callers still see a
 * failure. */
void mw_diag_add(mw_diag *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Number of problems recorded (including dropped ones). */
size_t mw_diag_count(const mw_diag *d);
/* Moves every message of src to the end of dst; src is left empty. */
void mw_diag_move(mw_diag *dst, mw_diag *src);
/* Frees the messages; the diag may be reused. Safe to call twice. */
void mw_diag_free(mw_diag *d);

/* The allocator behind mw_diag_add (realloc unless replaced), so that tests
 * can make it fail. */
extern void *(*mw_diag_realloc)(void *p, size_t size);

#endif
