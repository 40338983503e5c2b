/* Timers: a per-worker binary min-heap of deadlines (monotonic seconds).
 * The worker sleeps in grpc_completion_queue_next until the earliest one. */
#ifndef MW_TIMER_H
#define MW_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef void (*mw_timer_fn)(void *arg);

typedef struct mw_timer_entry {
  double when;
  uint64_t id;
  mw_timer_fn fn;
  void *arg;
} mw_timer_entry;

typedef struct mw_timers {
  mw_timer_entry *heap; /* owned */
  size_t n, cap;
  uint64_t next_id;
} mw_timers;

/* Monotonic clock in seconds. */
double mw_now(void);
/* Wall clock in seconds since the epoch (deadlines are in it). */
double mw_wall_now(void);

void mw_timers_init(mw_timers *t);
/* Schedules fn(arg) at `when`; returns a non-zero id, or 0 on OOM. */
uint64_t mw_timer_add(mw_timers *t, double when, mw_timer_fn fn, void *arg);
/* Cancels a pending timer; returns 1 if it was pending. */
int mw_timer_cancel(mw_timers *t, uint64_t id);
/* The earliest deadline, or a negative number when there is none. */
double mw_timers_next(const mw_timers *t);
/* Runs every timer due at `now` (timers added meanwhile for later wait);
 * returns how many ran. */
size_t mw_timers_run(mw_timers *t, double now);
void mw_timers_free(mw_timers *t);

#endif
