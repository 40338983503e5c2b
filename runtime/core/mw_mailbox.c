#include "core/mw_mailbox.h"

#include <pthread.h>
#include <stdlib.h>

#include <grpc/support/time.h>

/* Why a lame channel: its connectivity watch is the cheapest public C call
 * that completes a tag of ours on a queue of ours, from any thread, at once.
 * In gRPC core 1.51 the watcher counts an operation on the cq
 * (grpc_cq_begin_op), sees the channel is lame and starts a timer; a
 * deadline already past runs the timer's closure in the caller's ExecCtx,
 * and grpc_cq_end_op queues the tag and kicks the thread blocked in next.
 * A call on a lame channel does the same with a call object to create and
 * unref, several times the CPU per wake (tests/bench/wake). The rule
 * close relies on needs only the first step, which happens inside the
 * watch call: were a later gRPC to fire the timer on another thread, wakes
 * would come later but shutdown would stay safe.
 *
 * One channel per mailbox rather than one shared: creating and destroying it
 * then follows the mailbox's life, inside the user's grpc_init/grpc_shutdown,
 * with no reference count or global state here; a lame channel is a small
 * channel stack, one per worker. */
struct mw_mailbox {
  pthread_mutex_t lock;
  pthread_cond_t started; /* a post finished starting its wake (for close) */
  mw_mail *head, *tail;   /* queued mail, oldest first */
  int wake_pending;       /* a wake was started and run has not retired it */
  int starting;           /* posts inside the watch call right now */
  int closed;
  grpc_completion_queue *cq; /* not owned */
  void *wake_tag;
  grpc_channel *lame; /* owned */
};

mw_mailbox *mw_mailbox_new(grpc_completion_queue *cq, void *wake_tag) {
  mw_mailbox *mb = calloc(1, sizeof *mb);
  if (!mb) return NULL;
  if (pthread_mutex_init(&mb->lock, NULL) != 0) {
    free(mb);
    return NULL;
  }
  if (pthread_cond_init(&mb->started, NULL) != 0) {
    pthread_mutex_destroy(&mb->lock);
    free(mb);
    return NULL;
  }
  mb->cq = cq;
  mb->wake_tag = wake_tag;
  mb->lame = grpc_lame_client_channel_create("moonwire-mailbox",
                                             GRPC_STATUS_UNAVAILABLE,
                                             "mailbox wake channel");
  return mb;
}

/* Puts wake_tag on the owner's cq. Never called once close has returned:
 * close waits for `starting` to fall to 0, and posts after it fail, so the
 * operation this begins always finds the cq not yet shut down (gRPC core
 * aborts on an operation begun on a drained queue). */
static void start_wake(mw_mailbox *mb) {
  grpc_channel_watch_connectivity_state(mb->lame, GRPC_CHANNEL_TRANSIENT_FAILURE,
                                        gpr_inf_past(GPR_CLOCK_MONOTONIC),
                                        mb->cq, mb->wake_tag);
}

int mw_mailbox_post(mw_mailbox *mb, mw_mail *m) {
  m->next = NULL;
  pthread_mutex_lock(&mb->lock);
  if (mb->closed) {
    pthread_mutex_unlock(&mb->lock);
    return -1;
  }
  if (mb->tail)
    mb->tail->next = m;
  else
    mb->head = m;
  mb->tail = m;
  int wake = !mb->wake_pending;
  if (wake) {
    mb->wake_pending = 1;
    mb->starting++;
  }
  pthread_mutex_unlock(&mb->lock);
  if (!wake) return 0;
  /* Outside the lock: the watch costs microseconds and other posts need
   * not wait for it. `starting` is a count, not a flag, because the owner
   * can take this wake and run before the count goes down, and the next
   * post then starts another. */
  start_wake(mb);
  pthread_mutex_lock(&mb->lock);
  mb->starting--;
  if (mb->closed && mb->starting == 0) pthread_cond_broadcast(&mb->started);
  pthread_mutex_unlock(&mb->lock);
  return 0;
}

/* Runs a detached list in order; next is read first since fn owns m. */
static size_t run_list(mw_mail *m) {
  size_t n = 0;
  while (m) {
    mw_mail *next = m->next;
    m->fn(m);
    m = next;
    n++;
  }
  return n;
}

size_t mw_mailbox_run(mw_mailbox *mb) {
  pthread_mutex_lock(&mb->lock);
  mw_mail *m = mb->head;
  mb->head = mb->tail = NULL;
  /* Retired here, before the mail runs, so that a post from now on (the
   * mail itself may post) starts a new wake instead of being stranded. */
  mb->wake_pending = 0;
  pthread_mutex_unlock(&mb->lock);
  return run_list(m);
}

void mw_mailbox_close(mw_mailbox *mb) {
  pthread_mutex_lock(&mb->lock);
  mb->closed = 1;
  while (mb->starting > 0) pthread_cond_wait(&mb->started, &mb->lock);
  pthread_mutex_unlock(&mb->lock);
}

void mw_mailbox_free(mw_mailbox *mb) {
  if (!mb) return;
  mw_mailbox_close(mb);
  /* Mail whose wake the owner's drain loop took without running it. */
  run_list(mb->head);
  mb->head = mb->tail = NULL;
  /* A watcher keeps its own reference to the channel until its tag is
   * taken from the cq; the cq is drained, so this one is the last. */
  if (mb->lame) grpc_channel_destroy(mb->lame);
  pthread_cond_destroy(&mb->started);
  pthread_mutex_destroy(&mb->lock);
  free(mb);
}
