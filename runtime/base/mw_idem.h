/* Idempotency keys: a table shared by every thread of the process that
 * remembers, per (scope, key), whether a call ran and what it answered, so
 * that a client retrying a call with the same key gets the first answer
 * instead of running it twice. Policy (where the key comes from, which
 * outcomes are kept, what a duplicate gets, the reply's format) is the Lua
 * library's (lua/moonwire/interceptors/idempotency.lua); this is the
 * mechanism: an atomic claim, then a completion that stores the reply or a
 * release that forgets the claim.
 *
 * An entry is RUNNING from its claim until the claim's owner completes or
 * releases it, then DONE until it expires. A running entry never expires by
 * itself: its owner must end it (the Lua side releases at the end of the
 * call at the latest). Each entry keeps the fingerprint the claim gave
 * (whatever the caller hashes; 32 bytes); a later claim with another
 * fingerprint is a mismatch, not a duplicate.
 *
 * Memory is bounded: entries, their names and their replies count against
 * the table's cap. A claim of a new key that finds the table full drops the
 * expired entries and, if that is not enough, is refused (MW_IDEM_FULL), so
 * the caller never runs a keyed call it could not protect. A completion
 * that finds no room keeps the entry DONE without its reply: a duplicate is
 * then told the call ran (MW_IDEM_DONE with no reply), never run again.
 *
 * One mutex guards the table: a claim or a completion holds it for a hash
 * lookup and a few stores (and, only when the table is full and something
 * has expired, one sweep over it). Replies are reference counted, so a
 * duplicate copies its reply out after the lock is released. */
#ifndef MW_IDEM_H
#define MW_IDEM_H

#include <stddef.h>
#include <stdint.h>

/* Fingerprint bytes (a SHA-256). */
#define MW_IDEM_FP_LEN 32
/* The process-wide table's cap: entries, names and replies. */
#define MW_IDEM_SHARED_BYTES ((size_t)64 << 20)
/* What an entry costs besides its names and its reply (its record and its
 * share of the hash table), as counted against the cap. */
size_t mw_idem_entry_overhead(void);

typedef struct mw_idem mw_idem;

/* A stored reply: immutable bytes, reference counted (the entry holds one
 * reference, each duplicate that was handed it one more). */
typedef struct mw_idem_reply mw_idem_reply;
const char *mw_idem_reply_data(const mw_idem_reply *r, size_t *len);
/* Drops one reference; NULL is ignored. Any thread. */
void mw_idem_reply_unref(mw_idem_reply *r);

/* A table capped at max_bytes; the caller owns it. NULL on OOM. */
mw_idem *mw_idem_new(size_t max_bytes);
/* Frees the table and its entries (replies still referenced by a caller
 * live on until their last unref); NULL is ignored. No thread may use it
 * any more. */
void mw_idem_free(mw_idem *s);

/* The process's table (MW_IDEM_SHARED_BYTES), made at the first call
 * (thread-safe) and owned by this module. NULL on OOM. */
mw_idem *mw_idem_shared(void);
/* Frees the process's table, once no thread uses it (the server's end);
 * a later mw_idem_shared makes a new, empty one. Safe twice. */
void mw_idem_shared_free(void);

typedef enum mw_idem_claim_result {
  MW_IDEM_NEW = 0,  /* no live entry: this call runs; *token names its
                       claim for complete/release */
  MW_IDEM_DONE,     /* a call with this key and fingerprint ran: *reply is
                       its reply (a reference the caller drops), or NULL
                       when the reply could not be kept */
  MW_IDEM_RUNNING,  /* a call with this key and fingerprint runs now */
  MW_IDEM_MISMATCH, /* the key was claimed with another fingerprint
                       (running or done) */
  MW_IDEM_FULL,     /* a new key, and no room even after dropping the
                       expired entries (or no memory): refuse the call */
} mw_idem_claim_result;

/* Claims (scope, key) for a call whose request has fingerprint fp, as of
 * `now` (seconds on a monotonic clock, see mw_idem_now). An expired DONE
 * entry counts as absent. *token is set for MW_IDEM_NEW, *reply for
 * MW_IDEM_DONE (both may be left NULL for the other results). */
mw_idem_claim_result mw_idem_claim(mw_idem *s, const char *scope, size_t slen,
                                   const char *key, size_t klen,
                                   const unsigned char fp[MW_IDEM_FP_LEN], double now,
                                   uint64_t *token, mw_idem_reply **reply);

typedef enum mw_idem_complete_result {
  MW_IDEM_STORED = 0, /* the entry is DONE with the reply until now + ttl */
  MW_IDEM_UNKEPT,     /* DONE until now + ttl, without the reply: no room
                         for it (or no memory) */
  MW_IDEM_STALE,      /* no running claim with this token: nothing changed */
} mw_idem_complete_result;

/* Ends the claim `token` of (scope, key): the entry becomes DONE, holding a
 * copy of the reply's len bytes, and expires ttl seconds after now. */
mw_idem_complete_result mw_idem_complete(mw_idem *s, const char *scope, size_t slen,
                                         const char *key, size_t klen, uint64_t token,
                                         const void *reply, size_t len, double ttl,
                                         double now);

/* Drops the claim `token` of (scope, key): nothing is stored and the next
 * claim of the key runs. Returns 0, or -1 when there is no such running
 * claim (nothing changed). */
int mw_idem_release(mw_idem *s, const char *scope, size_t slen, const char *key,
                    size_t klen, uint64_t token);

/* Drops every DONE entry expired as of now; returns how many. Claims also
 * sweep a few hash buckets each as they go, and the whole table when it is
 * full, so calling this is never required. */
size_t mw_idem_sweep(mw_idem *s, double now);

typedef struct mw_idem_stats {
  size_t entries, running; /* all live entries, and those of them running */
  size_t bytes, max_bytes; /* counted against the cap, and the cap */
} mw_idem_stats;
void mw_idem_stats_get(mw_idem *s, mw_idem_stats *out);

/* Seconds on CLOCK_MONOTONIC. */
double mw_idem_now(void);

#endif
