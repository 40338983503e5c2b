/* The worker loop: one thread per worker blocks in its completion queue
 * until the next event or timer, and turns each completed tag into the next
 * step. Nothing polls, but for the fraction of a millisecond an end of
 * stream waits to be told from a cancellation (mw_core_internal.h,
 * settle): mail from other threads (a new generation, the server shutting
 * down, later cross-worker messages) arrives as a wake tag on the same
 * queue (core/mw_mailbox.h). */
#include <sched.h>
#include <stdatomic.h>

#include <grpc/support/time.h>

#include "core/mw_client.h"
#include "core/mw_core_internal.h"
#include "metrics/mw_metrics.h"

static _Thread_local mw_worker *tl_self;

mw_worker *mw_worker_self(void) { return tl_self; }

/* Hands one event to its owner; 0 once the queue is shut down. */
static int dispatch(mw_worker *w, grpc_event ev) {
  if (ev.type == GRPC_QUEUE_SHUTDOWN) return 0;
  if (ev.type == GRPC_OP_COMPLETE) {
    mw_tag *tag = ev.tag;
    switch (tag->kind) {
    case MW_TAG_SLOT: mw_server_on_slot(tag->owner, ev.success); break;
    case MW_TAG_CALL: mw_call_on_batch(tag, ev.success); break;
    case MW_TAG_SHUTDOWN: mw_server_note_shutdown_done(w->server); break;
    case MW_TAG_WAKE: mw_mailbox_run(w->mailbox); break;
    case MW_TAG_CLIENT: mw_client_on_batch(tag, ev.success); break;
    }
  }
  return 1;
}

/* A yield that gives the core away this long (one that finds nothing
 * else to run returns in about a microsecond) says the cores are
 * contended: a thread about to queue a cancellation may be waiting for one
 * too. For MW_SETTLE_LATE_HOLD after that, an end of stream waits
 * MW_SETTLE_LATE_EXTRA longer (about the fixed wait of before, which told
 * every cancellation under the same load). Seconds. */
#define MW_SETTLE_LATE 0.00015
#define MW_SETTLE_LATE_HOLD 0.1
#define MW_SETTLE_LATE_EXTRA 0.002

/* The time ends of stream are judged at: now, or MW_SETTLE_LATE_EXTRA
 * earlier while the cores are contended. */
static double settle_clock(const mw_worker *w, double now) {
  return now < w->settle_late_until ? now - MW_SETTLE_LATE_EXTRA : now;
}

/* Most events a worker takes from its queue before due timers run. */
#define MW_DRAIN_MAX 256

static gpr_timespec until_next_timer(const mw_worker *w) {
  if (w->settle.n) return gpr_inf_past(GPR_CLOCK_MONOTONIC); /* poll, don't sleep */
  double next = mw_timers_next(&w->timers);
  if (next < 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  double wait = next - mw_now();
  if (wait < 0) wait = 0;
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_micros((int64_t)(wait * 1e6), GPR_TIMESPAN));
}

void *mw_worker_main(void *arg) {
  mw_worker *w = arg;
  int open = 1;
  tl_self = w;
  mw_metrics_thread_shard(w->id); /* this thread's slots in the registry */
  while (open) {
    atomic_fetch_add_explicit(&w->beat, 1, memory_order_relaxed);
    grpc_event ev = grpc_completion_queue_next(w->cq, until_next_timer(w), NULL);
    open = dispatch(w, ev);
    /* Nothing queued while an end of stream waits: let a thread that is to
     * queue its cancellation have this core (mw_core_internal.h, settle).
     * Not a sleep: data arriving meanwhile would wait for its end (20 us
     * naps cost 7 to 19 % of the calls/s with 100 client streams at once). */
    if (open && ev.type == GRPC_QUEUE_TIMEOUT && w->settle.n) {
      double t0 = mw_now();
      sched_yield();
      double t1 = mw_now();
      if (t1 - t0 > MW_SETTLE_LATE) w->settle_late_until = t1 + MW_SETTLE_LATE_HOLD;
    }
    if (open && (w->timers.n || w->settle.n)) {
      double now = mw_now(), next = mw_timers_next(&w->timers);
      double settle = mw_timers_next(&w->settle);
      if ((next >= 0 && next <= now) || (settle >= 0 && settle <= settle_clock(w, now))) {
        /* Events already queued go first: a timer that fell due while this
         * thread was busy or descheduled must not overtake what happened
         * before it (an end of stream waits for a cancellation this way). */
        for (int i = 0; open && i < MW_DRAIN_MAX; i++) {
          grpc_event q = grpc_completion_queue_next(w->cq, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL);
          if (q.type == GRPC_QUEUE_TIMEOUT) break;
          open = dispatch(w, q);
        }
        if (open) {
          now = mw_now();
          mw_timers_run(&w->timers, now);
          mw_timers_run(&w->settle, settle_clock(w, now));
        }
      }
    }
    if (open && !w->cq_shut && mw_server_worker_may_close(w)) {
      /* Mail accepted until now still runs: its wake is delivered before
       * the queue reports its shutdown. */
      mw_mailbox_close(w->mailbox);
      grpc_completion_queue_shutdown(w->cq);
      w->cq_shut = 1;
    }
  }
  mw_server_thread_exit(w);
  mw_client_thread_exit();
  tl_self = NULL;
  mw_metrics_thread_shard(-1);
  return NULL;
}
