/* Token buckets shared by every thread of the process, for rate limits
 * that must hold per process (a client spreading calls over the workers
 * gets the configured rate, not workers times it). Policy (what the key
 * is, the rate, what a refusal becomes) is the Lua library's
 * (lua/moonwire/interceptors/rate_limit.lua); this is the table.
 *
 * A fixed-size, set-associative hash: a key's 64-bit hash (keyed with a
 * random seed per table, so clients cannot aim keys at one set) picks a
 * set of MW_RL_WAYS buckets, and the set is guarded by one of
 * MW_RL_STRIPES mutexes. A key missing from its set takes the way touched
 * least recently: memory is bounded (sets * ways buckets, allocated once),
 * and an evicted key comes back with a full bucket, which only ever errs
 * towards letting a call through. Keys are not stored, only their hashes
 * (two keys of one set would have to collide in 64 bits to share a bucket). */
#ifndef MW_RATELIMIT_H
#define MW_RATELIMIT_H

#include <stddef.h>

#define MW_RL_WAYS 8
#define MW_RL_STRIPES 64
/* Sets of the process-wide table: 4096 * 8 buckets, 1 MiB. */
#define MW_RL_SHARED_SETS 4096

typedef struct mw_ratelimit mw_ratelimit;

/* A table of `sets` sets (rounded up to a power of two, at least
 * MW_RL_STRIPES); the caller owns it. NULL on OOM. */
mw_ratelimit *mw_ratelimit_new(size_t sets);
/* Frees the table; NULL is ignored. No thread may use it any more. */
void mw_ratelimit_free(mw_ratelimit *rl);

/* The process's table, made at the first call (thread-safe); it lives
 * until the process exits, owned by this module. NULL on OOM. */
mw_ratelimit *mw_ratelimit_shared(void);

/* Takes `cost` tokens from the bucket of key (len bytes) that fills at
 * `rate` tokens per second up to `burst`, as of `now` (seconds on a
 * monotonic clock; see mw_ratelimit_now). A key seen for the first time
 * starts with a full bucket. Returns 1 when the tokens were there (and are
 * taken); 0 when not, nothing taken, with *retry_after (may be NULL) the
 * seconds until they will be. rate > 0, burst >= cost > 0. */
int mw_ratelimit_take(mw_ratelimit *rl, const void *key, size_t len, double rate,
                      double burst, double cost, double now, double *retry_after);

/* Seconds on CLOCK_MONOTONIC. */
double mw_ratelimit_now(void);

/* How many buckets the table holds (sets * ways), for tests and docs. */
size_t mw_ratelimit_capacity(const mw_ratelimit *rl);

#endif
