/* Diagnostics: messages in a doubling array. Running out of memory loses
 * text, never the count: a message without a slot is only counted. */
#include "base/mw_diag.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *(*mw_diag_realloc)(void *p, size_t size) = realloc;

/* Makes room for one more message; -1 when there is none to be had. */
static int reserve_one(mw_diag *d) {
  if (d->n < d->cap) return 0;
  size_t cap = d->cap ? d->cap * 2 : 8;
  if (cap < d->cap || cap > SIZE_MAX / sizeof *d->msgs) return -1;
  char **v = mw_diag_realloc(d->msgs, cap * sizeof *v);
  if (!v) return -1;
  d->msgs = v;
  d->cap = cap;
  return 0;
}

void mw_diag_add(mw_diag *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *msg = len >= 0 ? mw_diag_realloc(NULL, (size_t)len + 1) : NULL;
  if (msg) {
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)len + 1, fmt, ap);
    va_end(ap);
  }
  if (reserve_one(d) != 0) {
    free(msg);
    d->dropped++; /* counted, though the text is lost */
    return;
  }
  d->msgs[d->n++] = msg; /* may be NULL on OOM; readers skip NULLs */
}

size_t mw_diag_count(const mw_diag *d) { return d->n + d->dropped; }

void mw_diag_move(mw_diag *dst, mw_diag *src) {
  for (size_t i = 0; i < src->n; i++) {
    char *m = src->msgs[i];
    if (m) {
      mw_diag_add(dst, "%s", m);
    } else {
      mw_diag_add(dst, "(message lost: out of memory)");
    }
  }
  dst->dropped += src->dropped;
  mw_diag_free(src);
}

void mw_diag_free(mw_diag *d) {
  for (size_t i = 0; i < d->n; i++) free(d->msgs[i]);
  free(d->msgs);
  d->msgs = NULL;
  d->n = d->cap = d->dropped = 0;
}
