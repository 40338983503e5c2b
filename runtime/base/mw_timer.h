/* Timers: a per-worker binary min-heap of deadlines (monotonic seconds).
 * The worker sleeps in grpc_completion_queue_next until the earliest one.
 *
 * Entries are intrusive: the owner embeds an mw_timer in its own record and
 * the heap points at it while it is armed, keeping its position in it, so
 * cancelling costs O(log n) and arming allocates only when the heap grows.
 * Client deadlines, retries and TTLs cancel most of their timers. */
#ifndef MW_TIMER_H
#define MW_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct mw_timer mw_timer;
/* Runs when the timer is due; t is no longer armed (it may be re-armed). */
typedef void (*mw_timer_fn)(mw_timer *t);

struct mw_timer {
  mw_timer_fn fn;  /* set by the owner */
  double when;     /* the deadline while armed */
  uint64_t seq;    /* arming order (ties run in it); 0 when not armed */
  size_t slot;     /* the entry's index in the heap while armed */
};

typedef struct mw_timers {
  mw_timer **heap; /* owned array of borrowed entries */
  size_t n, cap;
  uint64_t next_seq;
} mw_timers;

/* Monotonic clock in seconds. */
double mw_now(void);
/* Wall clock in seconds since the epoch (deadlines are in it). */
double mw_wall_now(void);
/* The runtime's clock runs ahead of the system's by a skew, 0 except under
 * moonwire test, whose specs move it forward (never back) to make sleeps,
 * timers and deadlines fall due at once. Both clocks above include it;
 * what crosses into gRPC core (a deadline it received, one it is given)
 * is converted with mw_clock_skew. Any thread; seconds >= 0. */
void mw_clock_advance(double seconds);
double mw_clock_skew(void);
/* moonwire test says so before its server starts: calls' deadlines then
 * get timers of the runtime's own too (core's follow the system's clock). */
void mw_clock_set_virtual(void);
int mw_clock_is_virtual(void);

void mw_timers_init(mw_timers *t);
/* Arms e (t->fn set) to run at `when`; an armed e moves to the new time.
 * Returns 0, or -1 when out of memory (e is then not armed). */
int mw_timers_add(mw_timers *t, mw_timer *e, double when);
/* Disarms e; harmless when it is not armed. */
void mw_timers_cancel(mw_timers *t, mw_timer *e);
static inline int mw_timer_armed(const mw_timer *e) { return e->seq != 0; }
/* The earliest deadline, or a negative number when there is none. */
double mw_timers_next(const mw_timers *t);
/* Runs every timer due at `now` (timers armed meanwhile wait for the next
 * run, even when due); returns how many ran. A callback may arm or cancel
 * any timer, its own included. */
size_t mw_timers_run(mw_timers *t, double now);
/* Frees the heap; the entries (the owners') are left disarmed. Safe to
 * call twice. */
void mw_timers_free(mw_timers *t);

#endif
