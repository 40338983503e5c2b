/* Timers: a binary min-heap per worker, ordered by deadline, then by id so
 * that timers due at the same moment run in the order they were added. */
#include "base/mw_timer.h"

#include <stdlib.h>
#include <time.h>

double mw_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double mw_wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void mw_timers_init(mw_timers *t) {
  t->heap = NULL;
  t->n = t->cap = 0;
  t->next_id = 1;
}

static int earlier(const mw_timer_entry *a, const mw_timer_entry *b) {
  return a->when < b->when || (a->when == b->when && a->id < b->id);
}

static void swap(mw_timer_entry *a, mw_timer_entry *b) {
  mw_timer_entry tmp = *a;
  *a = *b;
  *b = tmp;
}

static void sift_up(mw_timers *t, size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(&t->heap[i], &t->heap[parent])) break;
    swap(&t->heap[i], &t->heap[parent]);
    i = parent;
  }
}

static void sift_down(mw_timers *t, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->n && earlier(&t->heap[l], &t->heap[m])) m = l;
    if (r < t->n && earlier(&t->heap[r], &t->heap[m])) m = r;
    if (m == i) return;
    swap(&t->heap[i], &t->heap[m]);
    i = m;
  }
}

uint64_t mw_timer_add(mw_timers *t, double when, mw_timer_fn fn, void *arg) {
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    mw_timer_entry *h = realloc(t->heap, cap * sizeof *h);
    if (!h) return 0;
    t->heap = h;
    t->cap = cap;
  }
  uint64_t id = t->next_id++;
  t->heap[t->n] = (mw_timer_entry){when, id, fn, arg};
  sift_up(t, t->n++);
  return id;
}

static void remove_at(mw_timers *t, size_t i) {
  t->n--;
  if (i == t->n) return;
  t->heap[i] = t->heap[t->n];
  sift_down(t, i);
  sift_up(t, i);
}

int mw_timer_cancel(mw_timers *t, uint64_t id) {
  /* Linear in the worker's pending timers: every call that ends during a
   * mw.sleep cancels one, which is cheap while heaps stay small; index the
   * entries before anything arms many long timers per worker. */
  for (size_t i = 0; i < t->n; i++) {
    if (t->heap[i].id == id) {
      remove_at(t, i);
      return 1;
    }
  }
  return 0;
}

double mw_timers_next(const mw_timers *t) {
  return t->n ? t->heap[0].when : -1.0;
}

size_t mw_timers_run(mw_timers *t, double now) {
  size_t ran = 0;
  uint64_t horizon = t->next_id; /* timers added by callbacks wait a turn */
  while (t->n && t->heap[0].when <= now && t->heap[0].id < horizon) {
    mw_timer_entry e = t->heap[0];
    remove_at(t, 0);
    e.fn(e.arg);
    ran++;
  }
  return ran;
}

void mw_timers_free(mw_timers *t) {
  free(t->heap);
  t->heap = NULL;
  t->n = t->cap = 0;
}
