/* String vector: a growable list of owned, NUL-terminated strings. The
 * vector owns the array and every string in it; readers use v[0..n).
 *
 * A vector may also borrow a static array (mw_strvec_borrow): it then owns
 * nothing, and the first change copies the strings. This lets a default
 * value (such as the config's listen list) cost no allocation. */
#ifndef MW_STRVEC_H
#define MW_STRVEC_H

#include <stddef.h>

typedef struct mw_strvec {
  char **v;   /* the strings, v[0..n) */
  size_t n;   /* how many */
  size_t cap; /* slots allocated; 0 with n > 0: v is borrowed */
} mw_strvec;

/* A vector reading n strings of v without owning them; v must outlive it
 * and is never written. */
mw_strvec mw_strvec_borrow(char **v, size_t n);

/* Appends a copy of s. Returns 0, or -1 when s is NULL or memory runs out
 * (the vector is unchanged then). */
int mw_strvec_push(mw_strvec *l, const char *s);
/* Appends s itself, taking ownership: s is freed here when it cannot be
 * added. s may be NULL (a failed allocation passed on): returns -1. */
int mw_strvec_take(mw_strvec *l, char *s);
/* Replaces the contents with a copy of s alone; on failure (-1) the vector
 * is unchanged. */
int mw_strvec_set1(mw_strvec *l, const char *s);

/* Whether s is one of the strings (compared with strcmp). */
int mw_strvec_has(const mw_strvec *l, const char *s);
/* Sorts the strings in strcmp order. Returns -1 only when a borrowed vector
 * cannot be copied for lack of memory (it is left as it was). */
int mw_strvec_sort(mw_strvec *l);
/* Whether s is one of the strings of a vector sorted by mw_strvec_sort
 * (binary search). */
int mw_strvec_has_sorted(const mw_strvec *l, const char *s);

/* Frees what the vector owns and empties it; safe to call twice. */
void mw_strvec_free(mw_strvec *l);

#endif
