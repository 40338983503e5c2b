/* The in-process room (sessions/mw_sessions.h's memory backend): topics in
 * a hash table keyed by SipHash with a random key, each with its
 * subscribers, its last offset, a random epoch made with the topic, and a
 * ring of its recent publications bounded by count and age; a bounded
 * queue per subscriber; one lock per room. A topic is dropped when its
 * last subscriber leaves and its history is empty: made again, it has a
 * new epoch, so no client resumes across the gap. */
#ifndef MW_SESMEM_H
#define MW_SESMEM_H

#include "sessions/mw_sessions.h"

extern const mw_sess_backend mw_sesmem_backend;

/* A room for spec (its numbers; the strings are not kept). NULL on OOM. */
void *mw_sesmem_new(const mw_sess_spec *spec);

/* A room on Redis (sessions/mw_sesredis.h) delivers to its instance's
 * streams through one of these, made with history size 0: offsets and
 * history are Redis's, the queues, policies and ready lists are this
 * room's. The three calls below are that backend's. */

/* Joins j->topic (no resume here: j->top, epoch_now and recovered are
 * left for the caller): until mw_sesmem_join_done, publications delivered
 * to the new subscriber are held, neither sent nor under the policy. */
mw_sess_rc mw_sesmem_join_pending(void *self, mw_sess_join *j, mw_sess_sub **out);
/* Ends that join: pubs (n, oldest first: the history the client missed;
 * the caller keeps its references) are queued first, then the held
 * publications whose offset is above top and above the last of pubs;
 * from then on a publication at or below the last offset queued is
 * dropped, so the history and the live ones meet without a gap or a
 * duplicate. epoch: the topic's at the join ("" when unknown: the first
 * publication delivered tells it). Nothing when the room ended s
 * meanwhile. */
void mw_sesmem_join_done(void *self, mw_sess_sub *s, mw_sess_pub *const *pubs, size_t n,
                         uint64_t top, const char *epoch);
/* p (offset set, bytes stamped), published in epoch, to topic's
 * subscribers here, each of them once: the room's policy applies (block,
 * which cannot hold a publisher on another instance, ends a stream whose
 * queue is full, as close does). A subscriber that knew another epoch
 * ends with ABORTED: the topic was made again (its keys expired or Redis
 * lost them), its offsets start over, and a stream never goes back; the
 * client's resume then tells it it did not recover. Any thread; topics
 * without subscribers are not made. */
void mw_sesmem_deliver(void *self, const char *topic, size_t tlen, const char *epoch,
                       mw_sess_pub *p);

#endif
