/* Diagnostics: a list of human-readable problems ("file:line:col: message"),
 * collected so that `moonwire check` and a reload can report every one. */
#ifndef MW_DIAG_H
#define MW_DIAG_H

#include <stddef.h>

typedef struct mw_diag {
  char **msgs; /* owned; each malloc'd */
  size_t n, cap;
} mw_diag;

/* Appends one formatted message. Never fails loudly: on OOM the message is
 * dropped but the count still grows, so callers still see a failure. */
void mw_diag_add(mw_diag *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Number of problems recorded (including dropped ones). */
size_t mw_diag_count(const mw_diag *d);
/* Moves every message of src to the end of dst; src is left empty. */
void mw_diag_move(mw_diag *dst, mw_diag *src);
/* Frees the messages; the diag may be reused. Safe to call twice. */
void mw_diag_free(mw_diag *d);

#endif
