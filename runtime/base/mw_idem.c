/* The idempotency table: see mw_idem.h. */
#include "base/mw_idem.h"
#include "base/mw_timer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mw_siphash.h"

enum { RUNNING = 1, DONE = 2 };

struct mw_idem_reply {
  _Atomic size_t refs;
  size_t len;
  char data[];
};

typedef struct entry {
  struct entry *next; /* in its bucket's chain */
  uint64_t hash;
  uint64_t token;     /* the running claim's; 0 once done */
  int state;          /* RUNNING or DONE */
  double expires;     /* DONE: when it stops counting */
  unsigned char fp[MW_IDEM_FP_LEN];
  mw_idem_reply *reply; /* DONE: one reference, or NULL when not kept */
  size_t charge;      /* what it counts against the cap */
  size_t slen, klen;
  char name[];        /* scope then key, slen + klen bytes */
} entry;

struct mw_idem {
  pthread_mutex_t lock;
  uint64_t seed[2];
  entry **buckets;     /* the table's own, nbuckets (a power of two) long */
  size_t nbuckets;
  size_t entries, running;
  size_t used, max_bytes;
  uint64_t next_token;
  size_t cursor;       /* the next bucket the incremental sweep looks at */
  double next_expiry;  /* no DONE entry expires before this: a full sweep
                          before then would free nothing */
};

/* The table starts with this many buckets and doubles while entries
 * outnumber them; each bucket is charged to the entries (two per entry at
 * the most, counted in the overhead). */
#define MIN_BUCKETS 1024
/* Buckets the incremental sweep looks at per claim. */
#define SWEEP_STEP 4

size_t mw_idem_entry_overhead(void) { return sizeof(entry) + 2 * sizeof(entry *); }

const char *mw_idem_reply_data(const mw_idem_reply *r, size_t *len) {
  *len = r->len;
  return r->data;
}

void mw_idem_reply_unref(mw_idem_reply *r) {
  if (r && atomic_fetch_sub(&r->refs, 1) == 1) free(r);
}

double mw_idem_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  /* The skew: under moonwire test, TTLs pass with the test clock. */
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + mw_clock_skew();
}

mw_idem *mw_idem_new(size_t max_bytes) {
  mw_idem *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->buckets = calloc(MIN_BUCKETS, sizeof *s->buckets);
  if (!s->buckets) {
    free(s);
    return NULL;
  }
  s->nbuckets = MIN_BUCKETS;
  s->max_bytes = max_bytes;
  s->next_token = 1;
  s->next_expiry = 1e300;
  mw_siphash_seed(s->seed);
  pthread_mutex_init(&s->lock, NULL);
  return s;
}

static void entry_free(entry *e) {
  mw_idem_reply_unref(e->reply);
  free(e);
}

void mw_idem_free(mw_idem *s) {
  if (!s) return;
  for (size_t i = 0; i < s->nbuckets; i++) {
    entry *next;
    for (entry *e = s->buckets[i]; e; e = next) {
      next = e->next;
      entry_free(e);
    }
  }
  free(s->buckets);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static mw_idem *g_shared; /* this module's, until mw_idem_shared_free */

mw_idem *mw_idem_shared(void) {
  mw_idem *s = __atomic_load_n(&g_shared, __ATOMIC_ACQUIRE);
  if (s) return s;
  pthread_mutex_lock(&g_lock);
  if (!g_shared) __atomic_store_n(&g_shared, mw_idem_new(MW_IDEM_SHARED_BYTES), __ATOMIC_RELEASE);
  s = g_shared;
  pthread_mutex_unlock(&g_lock);
  return s;
}

void mw_idem_shared_free(void) {
  pthread_mutex_lock(&g_lock);
  mw_idem *s = g_shared;
  __atomic_store_n(&g_shared, NULL, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&g_lock);
  mw_idem_free(s);
}

/* The scope's hash keys the key's, so that (scope, key) pairs never need
 * copying into one buffer to be hashed. */
static uint64_t hash_of(const mw_idem *s, const char *scope, size_t slen, const char *key,
                        size_t klen) {
  uint64_t k2[2] = {s->seed[0] ^ mw_siphash(s->seed, scope, slen), s->seed[1]};
  return mw_siphash(k2, key, klen);
}

static entry **find(mw_idem *s, uint64_t h, const char *scope, size_t slen, const char *key,
                    size_t klen) {
  entry **pp = &s->buckets[h & (s->nbuckets - 1)];
  for (; *pp; pp = &(*pp)->next) {
    entry *e = *pp;
    if (e->hash == h && e->slen == slen && e->klen == klen &&
        memcmp(e->name, scope, slen) == 0 && memcmp(e->name + slen, key, klen) == 0)
      return pp;
  }
  return pp;
}

static void unlink_entry(mw_idem *s, entry **pp) {
  entry *e = *pp;
  *pp = e->next;
  s->entries--;
  if (e->state == RUNNING) s->running--;
  s->used -= e->charge;
  entry_free(e);
}

static int expired(const entry *e, double now) { return e->state == DONE && e->expires <= now; }

/* Drops the expired entries of bucket i. */
static size_t sweep_bucket(mw_idem *s, size_t i, double now) {
  size_t n = 0;
  entry **pp = &s->buckets[i];
  while (*pp) {
    if (expired(*pp, now)) {
      unlink_entry(s, pp);
      n++;
    } else {
      pp = &(*pp)->next;
    }
  }
  return n;
}

static size_t sweep_all(mw_idem *s, double now) {
  size_t n = 0;
  double next = 1e300;
  for (size_t i = 0; i < s->nbuckets; i++) {
    n += sweep_bucket(s, i, now);
    for (entry *e = s->buckets[i]; e; e = e->next)
      if (e->state == DONE && e->expires < next) next = e->expires;
  }
  s->next_expiry = next;
  return n;
}

size_t mw_idem_sweep(mw_idem *s, double now) {
  pthread_mutex_lock(&s->lock);
  size_t n = sweep_all(s, now);
  pthread_mutex_unlock(&s->lock);
  return n;
}

/* Whether `need` more bytes fit, after dropping what has expired when they
 * do not (and when anything can have). */
static int fits(const mw_idem *s, size_t need) {
  return need <= s->max_bytes && s->used <= s->max_bytes - need;
}
static int room_for(mw_idem *s, size_t need, double now) {
  if (fits(s, need)) return 1;
  if (now >= s->next_expiry) sweep_all(s, now);
  return fits(s, need);
}

/* Doubles the buckets while entries outnumber them; on OOM the chains just
 * grow longer. */
static void grow(mw_idem *s) {
  if (s->entries < s->nbuckets) return;
  size_t n = s->nbuckets * 2;
  entry **b = calloc(n, sizeof *b);
  if (!b) return;
  for (size_t i = 0; i < s->nbuckets; i++) {
    entry *next;
    for (entry *e = s->buckets[i]; e; e = next) {
      next = e->next;
      entry **head = &b[e->hash & (n - 1)];
      e->next = *head;
      *head = e;
    }
  }
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = n;
  s->cursor = 0;
}

mw_idem_claim_result mw_idem_claim(mw_idem *s, const char *scope, size_t slen,
                                   const char *key, size_t klen,
                                   const unsigned char fp[MW_IDEM_FP_LEN], double now,
                                   uint64_t *token, mw_idem_reply **reply) {
  uint64_t h = hash_of(s, scope, slen, key, klen);
  size_t charge = mw_idem_entry_overhead() + slen + klen;
  entry *fresh = NULL;
  mw_idem_claim_result r;

  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < SWEEP_STEP; i++)
    sweep_bucket(s, s->cursor++ & (s->nbuckets - 1), now);
  entry **pp = find(s, h, scope, slen, key, klen);
  entry *e = *pp;
  if (e && expired(e, now)) {
    unlink_entry(s, pp);
    e = NULL;
  }
  if (e) {
    if (memcmp(e->fp, fp, MW_IDEM_FP_LEN) != 0) {
      r = MW_IDEM_MISMATCH;
    } else if (e->state == RUNNING) {
      r = MW_IDEM_RUNNING;
    } else {
      r = MW_IDEM_DONE;
      if (reply) {
        if (e->reply) atomic_fetch_add(&e->reply->refs, 1);
        *reply = e->reply;
      }
    }
  } else if (!room_for(s, charge, now) || !(fresh = malloc(sizeof(entry) + slen + klen))) {
    /* (a new key's record is made under the lock: duplicates, the common
     * case of a lookup, then allocate nothing) */
    r = MW_IDEM_FULL;
  } else {
    e = fresh;
    *e = (entry){.hash = h, .state = RUNNING, .charge = charge, .slen = slen, .klen = klen};
    memcpy(e->name, scope, slen);
    memcpy(e->name + slen, key, klen);
    memcpy(e->fp, fp, MW_IDEM_FP_LEN);
    e->token = s->next_token++;
    if (token) *token = e->token;
    /* find() may have been made stale by the sweep in room_for. */
    pp = &s->buckets[h & (s->nbuckets - 1)];
    e->next = *pp;
    *pp = e;
    s->entries++;
    s->running++;
    s->used += charge;
    grow(s);
    r = MW_IDEM_NEW;
  }
  pthread_mutex_unlock(&s->lock);
  return r;
}

static entry **find_claim(mw_idem *s, const char *scope, size_t slen, const char *key,
                          size_t klen, uint64_t token) {
  entry **pp = find(s, hash_of(s, scope, slen, key, klen), scope, slen, key, klen);
  if (!*pp || (*pp)->state != RUNNING || (*pp)->token != token) return NULL;
  return pp;
}

mw_idem_complete_result mw_idem_complete(mw_idem *s, const char *scope, size_t slen,
                                         const char *key, size_t klen, uint64_t token,
                                         const void *data, size_t len, double ttl,
                                         double now) {
  /* The copy is made before the lock and handed to the entry, or freed. */
  mw_idem_reply *r = len <= SIZE_MAX - sizeof *r ? malloc(sizeof *r + len) : NULL;
  if (r) {
    atomic_init(&r->refs, 1);
    r->len = len;
    if (len) memcpy(r->data, data, len);
  }
  mw_idem_complete_result out;
  pthread_mutex_lock(&s->lock);
  entry **pp = find_claim(s, scope, slen, key, klen, token);
  if (!pp) {
    out = MW_IDEM_STALE;
  } else {
    entry *e = *pp;
    /* Room is looked for while e still runs: the sweep never drops a
     * running entry (and pp may be stale after it). */
    if (r && room_for(s, len, now)) {
      e->reply = r;
      r = NULL;
      e->charge += len;
      s->used += len;
      out = MW_IDEM_STORED;
    } else {
      out = MW_IDEM_UNKEPT;
    }
    e->state = DONE;
    e->token = 0;
    e->expires = now + ttl;
    s->running--;
    if (e->expires < s->next_expiry) s->next_expiry = e->expires;
  }
  pthread_mutex_unlock(&s->lock);
  mw_idem_reply_unref(r);
  return out;
}

int mw_idem_release(mw_idem *s, const char *scope, size_t slen, const char *key, size_t klen,
                    uint64_t token) {
  pthread_mutex_lock(&s->lock);
  entry **pp = find_claim(s, scope, slen, key, klen, token);
  if (pp) unlink_entry(s, pp);
  pthread_mutex_unlock(&s->lock);
  return pp ? 0 : -1;
}

void mw_idem_stats_get(mw_idem *s, mw_idem_stats *out) {
  pthread_mutex_lock(&s->lock);
  out->entries = s->entries;
  out->running = s->running;
  out->bytes = s->used;
  out->max_bytes = s->max_bytes;
  pthread_mutex_unlock(&s->lock);
}
