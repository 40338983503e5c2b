/* The worker loop: one thread per worker blocks in its completion queue
 * until the next event or timer, and turns each completed tag into the next
 * step. Nothing polls: mail from other threads (a new generation, the
 * server shutting down, later cross-worker messages) arrives as a wake tag
 * on the same queue (core/mw_mailbox.h). */
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

/* Most events a worker takes from its queue before due timers run. */
#define MW_DRAIN_MAX 256

static gpr_timespec until_next_timer(const mw_worker *w) {
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
    if (open && w->timers.n) {
      double now = mw_now(), next = mw_timers_next(&w->timers);
      if (next >= 0 && next <= now) {
        /* Events already queued go first: a timer that fell due while this
         * thread was busy or descheduled must not overtake what happened
         * before it (a deadline must not end a call whose answer or
         * cancellation is already queued). */
        for (int i = 0; open && i < MW_DRAIN_MAX; i++) {
          grpc_event q = grpc_completion_queue_next(w->cq, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL);
          if (q.type == GRPC_QUEUE_TIMEOUT) break;
          open = dispatch(w, q);
        }
        if (open) {
          now = mw_now();
          mw_timers_run(&w->timers, now);
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
