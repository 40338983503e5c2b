/* The Redis backend of shared dicts (shared/mw_shared.h, kind "redis"):
 * the same operations and results as the memory dict, kept in a Redis
 * server, so that several instances share them (docs/lua-api.md, "Shared
 * dicts on Redis").
 *
 * Mapping (every key is PREFIX..KEY; the prefix defaults to "NAME:"):
 *   - a value is a hash {v = payload, t = type letter and flags}: "s" a
 *     string, "i" an integer (decimal), "f" a float (%.17g), "b" a
 *     boolean ("1"/"0"); flags follow the letter in decimal when not 0.
 *     get is HMGET (one command, no script), delete is DEL;
 *   - set/add/replace are one script (existence check, DEL, HSET, PEXPIRE
 *     when a ttl is given), incr another (HINCRBY for integers, exact to
 *     64 bits, HINCRBYFLOAT once a float is involved; init and init_ttl
 *     applied in the same script), expire a third (PEXPIRE, or PERSIST for
 *     0). Scripts go as EVALSHA, and as EVAL once when Redis answers
 *     NOSCRIPT (after a restart or SCRIPT FLUSH);
 *   - lists are Redis lists of "s"/"i"/"f"-tagged elements (LPUSH, RPUSH,
 *     LPOP, RPOP, LLEN); a list where a value is wanted and the reverse
 *     are Redis's WRONGTYPE, reported with the memory dict's messages;
 *   - ttl is PTTL; expired keys are gone in Redis, so get_stale never
 *     reports a stale value and flush_expired frees nothing (0);
 *   - get_keys walks SCAN MATCH PREFIX* (never KEYS), one step of COUNT
 *     1000 per script call, the next step sent from the I/O thread when
 *     a reply comes, until max keys (0: all) or the end, in Redis's
 *     order; flush_all deletes the prefix's keys the same way (UNLINK,
 *     never FLUSHDB), so no call holds Redis for long;
 *   - capacity is Redis's maxmemory and free_space maxmemory less
 *     used_memory (INFO memory), both 0 when Redis has no maxmemory: the
 *     memory is Redis's, shared by every prefix, and set never evicts on
 *     our side (forcible is always false).
 *
 * Errors of Redis itself (down, slow, refusing) are MW_SH_BACKEND with a
 * message "redis: connection refused", "redis: timeout",
 * "redis: ERR ...". Commands go through one connection per dict, owned by
 * its I/O thread (shared/mw_rconn.h), pipelined across every worker. */
#ifndef MW_REDIS_H
#define MW_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "shared/mw_shared.h"

typedef struct mw_redis mw_redis;

/* A dict over the Redis at url (redis://HOST:PORT/DB), its keys under
 * prefix, with timeout_ms bounding a blocking operation (mw_shared_exec)
 * and each connect attempt. Connects in the background: a Redis that is
 * down is not an error here. NULL with the reason in err when the URL is
 * bad or the thread cannot start. */
mw_redis *mw_redis_new(const char *url, const char *prefix, int64_t timeout_ms, char *err,
                       size_t errlen);
void mw_redis_free(mw_redis *r);

/* The backend table over mw_redis (self is a mw_redis *). */
extern const mw_shared_backend mw_redis_backend;

#endif
