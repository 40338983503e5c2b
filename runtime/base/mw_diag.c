#include "base/mw_diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mw_diag_add(mw_diag *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *msg = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (msg) {
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)len + 1, fmt, ap);
    va_end(ap);
  }
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 8;
    char **v = realloc(d->msgs, cap * sizeof *v);
    if (!v) {
      free(msg);
      d->n++; /* counted, though the text is lost */
      return;
    }
    d->msgs = v;
    d->cap = cap;
  }
  d->msgs[d->n++] = msg; /* may be NULL on OOM; readers skip NULLs */
}

size_t mw_diag_count(const mw_diag *d) { return d->n; }

void mw_diag_move(mw_diag *dst, mw_diag *src) {
  for (size_t i = 0; i < src->n && i < src->cap; i++) {
    char *m = src->msgs[i];
    if (m) {
      mw_diag_add(dst, "%s", m);
    } else {
      mw_diag_add(dst, "(message lost: out of memory)");
    }
  }
  mw_diag_free(src);
}

void mw_diag_free(mw_diag *d) {
  for (size_t i = 0; i < d->n && i < d->cap; i++) free(d->msgs[i]);
  free(d->msgs);
  d->msgs = NULL;
  d->n = d->cap = 0;
}
