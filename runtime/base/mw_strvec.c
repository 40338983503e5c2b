/* String vector: owned strings in a doubling array; a borrowed vector is
 * copied on its first change. */
#include "base/mw_strvec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int is_borrowed(const mw_strvec *l) { return l->cap == 0 && l->n > 0; }

mw_strvec mw_strvec_borrow(char **v, size_t n) {
  mw_strvec l = {v, n, 0};
  if (n == 0) l.v = NULL; /* nothing borrowed: an ordinary empty vector */
  return l;
}

/* Makes room for one more string, copying a borrowed array first. */
static int reserve_one(mw_strvec *l) {
  if (l->n < l->cap) return 0;
  int borrowed = is_borrowed(l);
  size_t cap = l->cap ? l->cap * 2 : (l->n < 4 ? 8 : l->n * 2);
  if (cap > SIZE_MAX / sizeof *l->v) return -1;
  char **v;
  if (borrowed) {
    v = malloc(cap * sizeof *v);
    if (!v) return -1;
    for (size_t i = 0; i < l->n; i++) {
      v[i] = strdup(l->v[i]);
      if (!v[i]) {
        while (i--) free(v[i]);
        free(v);
        return -1;
      }
    }
  } else {
    v = realloc(l->v, cap * sizeof *v);
    if (!v) return -1;
  }
  l->v = v;
  l->cap = cap;
  return 0;
}

int mw_strvec_take(mw_strvec *l, char *s) {
  if (!s) return -1;
  if (reserve_one(l) != 0) {
    free(s);
    return -1;
  }
  l->v[l->n++] = s;
  return 0;
}

int mw_strvec_push(mw_strvec *l, const char *s) {
  return s ? mw_strvec_take(l, strdup(s)) : -1;
}

int mw_strvec_set1(mw_strvec *l, const char *s) {
  mw_strvec one = {0};
  if (mw_strvec_push(&one, s) != 0) return -1;
  mw_strvec_free(l);
  *l = one;
  return 0;
}

int mw_strvec_has(const mw_strvec *l, const char *s) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i], s) == 0) return 1;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int mw_strvec_sort(mw_strvec *l) {
  if (l->n < 2) return 0;
  /* a borrowed array is never written: sort an owned copy */
  if (is_borrowed(l) && reserve_one(l) != 0) return -1;
  qsort(l->v, l->n, sizeof *l->v, cmp_str);
  return 0;
}

int mw_strvec_has_sorted(const mw_strvec *l, const char *s) {
  return l->n && bsearch(&s, l->v, l->n, sizeof *l->v, cmp_str) != NULL;
}

void mw_strvec_free(mw_strvec *l) {
  if (!l) return;
  if (!is_borrowed(l)) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
  }
  l->v = NULL;
  l->n = l->cap = 0;
}
