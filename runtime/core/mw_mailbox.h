/* Mailboxes: any thread hands a message to a worker, and the worker runs it
 * on its own thread, woken at once out of grpc_completion_queue_next (no
 * polling).
 *
 * gRPC core's C API has no alarm, so the wake is a connectivity watch on a
 * lame channel with a deadline already past: gRPC core fails it on the
 * posting thread and puts the mailbox's wake tag on the owner's completion
 * queue (success = 0), which wakes a thread blocked in next. At most one wake
 * is in flight per mailbox: a post that finds one pending only queues its
 * mail, so under load a message costs a lock and a push, not a watch.
 *
 * Each mailbox owns its lame channel (created by mw_mailbox_new, destroyed by
 * mw_mailbox_free), its lock, and the mail queued in it until it runs. It
 * does not own the completion queue. grpc_init() must have been called by
 * the user of the module and grpc_shutdown() must come after
 * mw_mailbox_free.
 *
 * Rule: every mail accepted (mw_mailbox_post returned 0) runs exactly once,
 * on the owner's thread: at the mw_mailbox_run of a later wake, or, for mail
 * still queued when the mailbox is freed, in mw_mailbox_free. Mail refused
 * (-1) stays the caller's. */
#ifndef MW_MAILBOX_H
#define MW_MAILBOX_H

#include <stddef.h>

#include <grpc/grpc.h>

#include "core/mw_post.h"

typedef struct mw_mailbox mw_mailbox;

/* A mailbox whose wakes go to cq (a GRPC_CQ_NEXT queue) as wake_tag. The
 * owner's loop, on receiving wake_tag, calls mw_mailbox_run once, whatever
 * the event's success (a wake always reports 0). NULL on OOM. */
mw_mailbox *mw_mailbox_new(grpc_completion_queue *cq, void *wake_tag);

/* Any thread. Queues m (m->fn must be set) and wakes the owner unless a wake
 * is already pending. 0 when accepted; -1 once the mailbox is closed (the
 * caller keeps m). Mail from one thread runs in posting order; mail from
 * different threads in the order their posts took the lock. */
int mw_mailbox_post(mw_mailbox *mb, mw_mail *m);

/* Owner thread, once per wake_tag received (and only then: a wake tag is a
 * pending wake this call retires). Runs every mail queued when it starts;
 * mail posted meanwhile (including by the mail it runs) gets a new wake.
 * Returns how many ran. Works after mw_mailbox_close too. */
size_t mw_mailbox_run(mw_mailbox *mb);

/* Owner thread, before grpc_completion_queue_shutdown of its cq: later posts
 * fail. Waits for a post that is starting a wake at that moment to have
 * handed it to the cq, so shutting the cq down afterwards is safe (gRPC core
 * aborts when an operation starts on a drained queue). A wake still pending
 * is delivered before GRPC_QUEUE_SHUTDOWN; the owner handles it as usual
 * (mw_mailbox_run) or ignores it and lets mw_mailbox_free run what is left.
 * Safe to call twice. */
void mw_mailbox_close(mw_mailbox *mb);

/* After the cq has been drained (GRPC_QUEUE_SHUTDOWN seen) and once no
 * thread can be inside mw_mailbox_post any more: closes if not closed, runs
 * mail still queued on the calling thread, and frees. Safe with NULL. */
void mw_mailbox_free(mw_mailbox *mb);

#endif
