#include "lua/mw_lalloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* A cached block is poisoned: a use after Lua freed it is still reported. */
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define GRAIN 16
#define CLASSES 16                  /* blocks of 16, 32, ... 256 bytes */
#define SMALL (GRAIN * CLASSES)     /* the largest cached block */
#define CACHE_MAX MW_LALLOC_CACHE_MAX

struct mw_lalloc {
  mw_lua_mem *mem;
  size_t cached;
  void *list[CLASSES]; /* singly linked through each block's first word */
};

mw_lalloc *mw_lalloc_new(mw_lua_mem *mem) {
  mw_lalloc *a = calloc(1, sizeof *a);
  if (a) a->mem = mem;
  return a;
}

size_t mw_lalloc_cached(const mw_lalloc *a) { return a ? a->cached : 0; }

/* The class of a block of n bytes (1 <= n <= SMALL) and its real size. */
static size_t class_of(size_t n) { return (n - 1) / GRAIN; }
static size_t class_size(size_t k) { return (k + 1) * GRAIN; }

static void *take(mw_lalloc *a, size_t n) {
  if (n > SMALL) return malloc(n);
  size_t k = class_of(n), sz = class_size(k);
  void *p = a->list[k];
  if (p) {
    UNPOISON(p, sz);
    memcpy(&a->list[k], p, sizeof(void *));
    a->cached -= sz;
  } else if (!(p = malloc(sz))) { /* every block of a class has its size */
    return NULL;
  }
  POISON((char *)p + n, sz - n); /* the rounding tail is not Lua's */
  return p;
}

static void give(mw_lalloc *a, void *p, size_t n) {
  if (n <= SMALL) {
    size_t k = class_of(n), sz = class_size(k);
    if (a->cached + sz <= CACHE_MAX) {
      UNPOISON(p, sizeof(void *));
      memcpy(p, &a->list[k], sizeof(void *));
      a->list[k] = p;
      a->cached += sz;
      POISON(p, sz);
      return;
    }
    UNPOISON(p, sz);
  }
  free(p);
}

void *mw_lalloc_fn(void *ud, void *ptr, size_t osize, size_t nsize) {
  mw_lalloc *a = ud;
  mw_lua_mem *mem = a->mem;
  size_t old = ptr ? osize : 0; /* without ptr, osize is a type tag */
  if (nsize == 0) {
    if (ptr) {
      if (mem) atomic_fetch_sub(&mem->used, old);
      give(a, ptr, old);
    }
    return NULL;
  }
  if (mem && mem->limit && nsize > old &&
      atomic_load(&mem->used) + (nsize - old) > mem->limit)
    return NULL;
  void *p;
  if (!ptr) {
    p = take(a, nsize);
  } else if (old <= SMALL && nsize <= SMALL && class_of(old) == class_of(nsize)) {
    p = ptr; /* the block already has room */
    size_t sz = class_size(class_of(old));
    UNPOISON(p, nsize);
    POISON((char *)p + nsize, sz - nsize);
  } else if (old > SMALL && nsize > SMALL) {
    p = realloc(ptr, nsize);
  } else {
    p = take(a, nsize);
    if (p) {
      memcpy(p, ptr, old < nsize ? old : nsize);
      give(a, ptr, old);
    }
  }
  /* A shrink never fails: the old block is big enough (a bigger block on
   * a smaller class's list later is harmless). */
  if (!p && nsize < old) p = ptr;
  if (p && mem) {
    if (nsize > old)
      atomic_fetch_add(&mem->used, nsize - old);
    else
      atomic_fetch_sub(&mem->used, old - nsize);
  }
  return p;
}

void mw_lalloc_free(mw_lalloc *a) {
  if (!a) return;
  for (size_t k = 0; k < CLASSES; k++) {
    void *p = a->list[k];
    while (p) {
      void *next;
      UNPOISON(p, class_size(k));
      memcpy(&next, p, sizeof next);
      free(p);
      p = next;
    }
    a->list[k] = NULL;
  }
  a->cached = 0;
  free(a);
}
