/* A room on Redis (sessions/mw_sessions.h's "redis" backend): several
 * Moonwire instances share its topics. Per topic, under the room's prefix
 * (default "sessions:NAME:"):
 *
 *   - PREFIX e:TOPIC  the epoch, 16 hex digits, made (SET) by whichever
 *                     instance first finds it missing, which also deletes
 *                     the two keys below: a topic made again has a new
 *                     epoch, so no client resumes across the gap;
 *   - PREFIX o:TOPIC  the last offset (INCR);
 *   - PREFIX h:TOPIC  a list of the last history.size publications, each
 *                     "OFFSET MS BYTES" (MS: Redis's clock when published,
 *                     for history.ttl), trimmed by LTRIM.
 *
 * publish is one script (EVAL): the epoch made when missing, INCR, the
 * offset stamped into the bytes (offset_field, a varint appended), RPUSH
 * and LTRIM, PEXPIRE of the three keys by history.ttl when one is set, and
 * PUBLISH on the room's one channel (PREFIX pub) of "OFFSET TLEN TOPIC
 * BYTES"; it returns the offset. Every instance keeps one subscriber
 * connection per room (shared/mw_rconn.h's subscriber mode) on that
 * channel and hands each publication to its own streams through an
 * in-process room (sessions/mw_sesmem.h's local delivery): the same
 * queues, policies and ready lists as a memory room. A publication goes
 * to the local streams that way too, so every stream sees one order.
 *
 * A join reads the topic (epoch, offset, history: one script) after its
 * subscriber is linked and holding what arrives, then replays what a
 * resuming client missed and lets through only the live publications
 * after it. send, close and list are the instance's own (a session id
 * names a stream on one instance); history reads Redis.
 *
 * Redis down: publish and history fail with MW_SESS_BACKEND
 * ("redis: connection refused"); a join still joins (epoch "" and offset
 * 0: a client resuming from it is told it did not recover), and the
 * joined streams stay open and receive again once the subscriber
 * connection is back. What was published meanwhile is not pushed to them:
 * a client resumes from its last offset to get it. */
#ifndef MW_SESREDIS_H
#define MW_SESREDIS_H

#include <stddef.h>

#include "sessions/mw_sessions.h"

extern const mw_sess_backend mw_sesredis_backend;

/* A room for spec (spec->redis set): connects in the background (a Redis
 * that is down is not an error here). NULL with the reason in err when the
 * URL is bad or a thread cannot start. */
void *mw_sesredis_new(const mw_sess_spec *spec, char *err, size_t errlen);

#endif
