/* Timers: a binary min-heap of pointers to the owners' entries, ordered by
 * deadline, then by arming order, so that timers due at the same moment run
 * in the order they were armed. Each entry keeps its heap index. */
#include "base/mw_timer.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* Nanoseconds, so that a relaxed atomic load is all a reading costs. */
static _Atomic int64_t skew_ns;

void mw_clock_advance(double seconds) {
  if (seconds > 0) atomic_fetch_add(&skew_ns, (int64_t)(seconds * 1e9));
}

static atomic_int virtual_clock;

void mw_clock_set_virtual(void) { atomic_store(&virtual_clock, 1); }

int mw_clock_is_virtual(void) {
  return atomic_load_explicit(&virtual_clock, memory_order_relaxed);
}

double mw_clock_skew(void) {
  return (double)atomic_load_explicit(&skew_ns, memory_order_relaxed) * 1e-9;
}

double mw_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + mw_clock_skew();
}

double mw_wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + mw_clock_skew();
}

void mw_timers_init(mw_timers *t) {
  t->heap = NULL;
  t->n = t->cap = 0;
  t->next_seq = 1;
}

static int earlier(const mw_timer *a, const mw_timer *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void place(mw_timers *t, size_t i, mw_timer *e) {
  t->heap[i] = e;
  e->slot = i;
}

static void sift_up(mw_timers *t, size_t i) {
  mw_timer *e = t->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(e, t->heap[parent])) break;
    place(t, i, t->heap[parent]);
    i = parent;
  }
  place(t, i, e);
}

static void sift_down(mw_timers *t, size_t i) {
  mw_timer *e = t->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const mw_timer *best = e;
    if (l < t->n && earlier(t->heap[l], best)) m = l, best = t->heap[l];
    if (r < t->n && earlier(t->heap[r], best)) m = r;
    if (m == i) break;
    place(t, i, t->heap[m]);
    i = m;
  }
  place(t, i, e);
}

static void remove_at(mw_timers *t, size_t i) {
  t->heap[i]->seq = 0;
  t->n--;
  if (i == t->n) return;
  mw_timer *moved = t->heap[t->n];
  place(t, i, moved);
  sift_down(t, i);
  sift_up(t, moved->slot);
}

void mw_timers_cancel(mw_timers *t, mw_timer *e) {
  if (!mw_timer_armed(e)) return;
  remove_at(t, e->slot);
}

int mw_timers_add(mw_timers *t, mw_timer *e, double when) {
  mw_timers_cancel(t, e);
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    mw_timer **h = realloc(t->heap, cap * sizeof *h);
    if (!h) return -1;
    t->heap = h;
    t->cap = cap;
  }
  e->when = when;
  e->seq = t->next_seq++;
  place(t, t->n, e);
  sift_up(t, t->n++);
  return 0;
}

double mw_timers_next(const mw_timers *t) {
  return t->n ? t->heap[0]->when : -1.0;
}

size_t mw_timers_run(mw_timers *t, double now) {
  size_t ran = 0;
  uint64_t horizon = t->next_seq; /* timers armed by callbacks wait a turn */
  while (t->n && t->heap[0]->when <= now && t->heap[0]->seq < horizon) {
    mw_timer *e = t->heap[0];
    remove_at(t, 0);
    e->fn(e);
    ran++;
  }
  return ran;
}

void mw_timers_free(mw_timers *t) {
  for (size_t i = 0; i < t->n; i++) t->heap[i]->seq = 0;
  free(t->heap);
  t->heap = NULL;
  t->n = t->cap = 0;
}
