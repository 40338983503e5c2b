/* The in-process shared dict: see mw_shdict.h. The steps of each write
 * follow OpenResty's ngx_http_lua_shdict.c (lookup, the sweep of expired
 * entries, reuse of an entry in place, eviction from the LRU tail), so
 * that results match it case by case. */
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP */
#include "shared/mw_shdict.h"
#include "base/mw_timer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mw_siphash.h"

/* OpenResty gives up after this many evictions for one write. */
#define EVICT_TRIES 30

typedef struct link {
  struct link *prev, *next;
} link;

/* One element of a list value. */
typedef struct lnode {
  link l; /* first: a link * is an lnode * */
  mw_shtype type; /* MW_SHV_INT, MW_SHV_FLOAT or MW_SHV_STR */
  union {
    int64_t i;
    double d;
  } n;
  size_t len; /* bytes of a string, in data */
  char data[];
} lnode;

typedef struct entry {
  link lru;              /* first: a link * is an entry *; head = most recent */
  struct entry *hnext;   /* the bucket's chain */
  uint64_t hash;
  int64_t expires;       /* ms on the dict's clock; 0: never */
  size_t charge;         /* what this block costs the budget */
  uint32_t flags;
  uint32_t klen;
  mw_shtype type;
  union {
    int b;
    int64_t i;
    double d;
    size_t slen; /* MW_SHV_STR: bytes after the key */
    struct {
      link head;  /* sentinel of the elements, head.next first */
      size_t n;
    } list;
  } v;
  char data[]; /* the key, then a string value */
} entry;

struct mw_shdict {
  pthread_mutex_t lock;
  size_t size;   /* the budget */
  size_t used;   /* bytes charged, table included */
  size_t count;  /* entries */
  size_t mask;   /* buckets - 1 */
  entry **buckets;
  link lru;      /* sentinel */
  uint64_t seed[2];
  int64_t (*now)(void *ud);
  void *now_ud;
};

static int64_t mono_ms(void *ud) {
  (void)ud;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  /* + 1: 0 means "never" in an entry, and flush_all marks entries with 1,
   * which must always be in the past. */
  /* The skew: under moonwire test, TTLs pass with the test clock. */
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1 +
         (int64_t)(mw_clock_skew() * 1000);
}

mw_shdict *mw_shdict_new(size_t size) {
  if (size < MW_SHARED_MIN_SIZE) return NULL;
  /* One bucket per 512 bytes of budget: a dict full of small entries
   * (the smallest is charged about 100 bytes) has chains of about five.
   * The table is never resized, so no write pays for a rehash. */
  size_t n = 64;
  while (n < size / 512) n <<= 1;
  mw_shdict *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->buckets = calloc(n, sizeof *d->buckets);
  if (!d->buckets) {
    free(d);
    return NULL;
  }
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(&d->lock, &attr);
  pthread_mutexattr_destroy(&attr);
  d->size = size;
  d->mask = n - 1;
  d->used = sizeof *d + n * sizeof *d->buckets;
  d->lru.prev = d->lru.next = &d->lru;
  /* Keyed, so that clients choosing keys cannot pile them into one chain. */
  mw_siphash_seed(d->seed);
  d->now = mono_ms;
  return d;
}

static void free_list(entry *e) {
  link *s = &e->v.list.head;
  for (link *l = s->next; l != s;) {
    link *next = l->next;
    free(l);
    l = next;
  }
}

void mw_shdict_free(mw_shdict *d) {
  if (!d) return;
  for (link *l = d->lru.next; l != &d->lru;) {
    link *next = l->next;
    entry *e = (entry *)l;
    if (e->type == MW_SHV_LIST) free_list(e);
    free(e);
    l = next;
  }
  free(d->buckets);
  pthread_mutex_destroy(&d->lock);
  free(d);
}

void mw_shdict_set_clock(mw_shdict *d, int64_t (*now_ms)(void *ud), void *ud) {
  d->now = now_ms ? now_ms : mono_ms;
  d->now_ud = now_ms ? ud : NULL;
}

size_t mw_shdict_count(mw_shdict *d) {
  pthread_mutex_lock(&d->lock);
  size_t n = d->count;
  pthread_mutex_unlock(&d->lock);
  return n;
}

size_t mw_shdict_used(mw_shdict *d) {
  pthread_mutex_lock(&d->lock);
  size_t n = d->used;
  pthread_mutex_unlock(&d->lock);
  return n;
}

/* ------------------------------------------------------------------------ */
/* Entries (all under the lock)                                              */

static void link_remove(link *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
}

static void link_after(link *at, link *l) {
  l->prev = at;
  l->next = at->next;
  at->next->prev = l;
  at->next = l;
}

static void touch(mw_shdict *d, entry *e) {
  link_remove(&e->lru);
  link_after(&d->lru, &e->lru);
}

static int expired(const entry *e, int64_t now) { return e->expires && e->expires <= now; }

static int64_t expiry(int64_t now, int64_t ttl_ms) { return ttl_ms > 0 ? now + ttl_ms : 0; }

static entry *lookup(mw_shdict *d, uint64_t h, const char *key, size_t klen) {
  for (entry *e = d->buckets[h & d->mask]; e; e = e->hnext)
    if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0) return e;
  return NULL;
}

static void entry_remove(mw_shdict *d, entry *e) {
  entry **pp = &d->buckets[e->hash & d->mask];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  link_remove(&e->lru);
  if (e->type == MW_SHV_LIST) {
    link *s = &e->v.list.head;
    for (link *l = s->next; l != s; l = l->next)
      d->used -= sizeof(lnode) + ((lnode *)l)->len + MW_SHDICT_BLOCK_OVERHEAD;
    free_list(e);
  }
  d->used -= e->charge;
  d->count--;
  free(e);
}

/* OpenResty's ngx_http_lua_shdict_expire: with force == 0, frees at most
 * two expired entries from the LRU tail, stopping at the first live one;
 * with force, first frees the tail entry whatever it holds. Returns how
 * many were freed. */
static int sweep(mw_shdict *d, int force, int64_t now) {
  int freed = 0;
  for (int i = force ? 0 : 1; i < 3; i++) {
    if (d->lru.prev == &d->lru) return freed;
    entry *e = (entry *)d->lru.prev;
    if (i != 0 && !expired(e, now)) return freed;
    entry_remove(d, e);
    freed++;
  }
  return freed;
}

/* Makes room for need more bytes: evicting from the LRU tail when allowed
 * (*forcible then set), refusing otherwise. A block larger than the whole
 * budget is refused before anything is evicted for it. */
static int room(mw_shdict *d, size_t need, int evict, int *forcible, int64_t now) {
  if (d->used + need <= d->size) return 1;
  if (!evict || need > d->size - (sizeof *d + (d->mask + 1) * sizeof *d->buckets)) return 0;
  for (int i = 0; i < EVICT_TRIES; i++) {
    if (sweep(d, 1, now) == 0) return 0;
    *forcible = 1;
    if (d->used + need <= d->size) return 1;
  }
  return 0;
}

static size_t str_len(const mw_shval *v) { return v->type == MW_SHV_STR ? v->u.s.len : 0; }

static size_t entry_charge(size_t klen, size_t slen) {
  return sizeof(entry) + klen + slen + MW_SHDICT_BLOCK_OVERHEAD;
}

/* Writes a plain value into e (whose block has room for its string). */
static void put_value(entry *e, const mw_shval *v) {
  e->type = v->type;
  switch (v->type) {
  case MW_SHV_BOOL: e->v.b = v->u.b != 0; break;
  case MW_SHV_INT: e->v.i = v->u.i; break;
  case MW_SHV_FLOAT: e->v.d = v->u.d; break;
  case MW_SHV_STR:
    e->v.slen = v->u.s.len;
    if (v->u.s.len) memcpy(e->data + e->klen, v->u.s.p, v->u.s.len);
    break;
  default: break;
  }
}

/* A new entry with value v, at the LRU head; NULL when out of memory
 * (room must have been made). */
static entry *entry_insert(mw_shdict *d, uint64_t h, const char *key, size_t klen,
                           const mw_shval *v, int64_t expires, uint32_t flags) {
  size_t slen = v->type == MW_SHV_LIST ? 0 : str_len(v);
  size_t charge = entry_charge(klen, slen);
  entry *e = malloc(sizeof(entry) + klen + slen);
  if (!e) return NULL;
  memset(e, 0, sizeof *e);
  e->hash = h;
  e->klen = (uint32_t)klen;
  e->charge = charge;
  e->expires = expires;
  e->flags = flags;
  memcpy(e->data, key, klen);
  if (v->type == MW_SHV_LIST) {
    e->type = MW_SHV_LIST;
    e->v.list.head.prev = e->v.list.head.next = &e->v.list.head;
  } else {
    put_value(e, v);
  }
  e->hnext = d->buckets[h & d->mask];
  d->buckets[h & d->mask] = e;
  link_after(&d->lru, &e->lru);
  d->used += charge;
  d->count++;
  return e;
}

/* Copies bytes into the caller's buffer. */
static int buf_put(mw_shbuf *b, size_t at, const void *p, size_t len) {
  if (at + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < at + len + 1) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return -1;
    b->p = np;
    b->cap = cap;
  }
  if (len) memcpy(b->p + at, p, len);
  b->p[at + len] = '\0';
  return 0;
}

/* The value of e into res->val (a string into buf). */
static mw_shrc get_value(const entry *e, mw_shres *res, mw_shbuf *buf) {
  res->val.type = e->type;
  switch (e->type) {
  case MW_SHV_BOOL: res->val.u.b = e->v.b; break;
  case MW_SHV_INT: res->val.u.i = e->v.i; break;
  case MW_SHV_FLOAT: res->val.u.d = e->v.d; break;
  case MW_SHV_STR:
    if (buf_put(buf, 0, e->data + e->klen, e->v.slen) != 0) {
      res->val.type = MW_SHV_NIL;
      return MW_SH_NO_MEMORY;
    }
    res->val.u.s.p = buf->p;
    res->val.u.s.len = e->v.slen;
    break;
  default: break;
  }
  return MW_SH_OK;
}

static int is_number(mw_shtype t) { return t == MW_SHV_INT || t == MW_SHV_FLOAT; }

/* a + b as Lua adds them: integers wrap around, anything else is a float. */
static mw_shval add_numbers(mw_shtype ta, int64_t ia, double da, const mw_shval *b) {
  mw_shval r;
  if (ta == MW_SHV_INT && b->type == MW_SHV_INT) {
    r.type = MW_SHV_INT;
    r.u.i = (int64_t)((uint64_t)ia + (uint64_t)b->u.i);
  } else {
    r.type = MW_SHV_FLOAT;
    r.u.d = (ta == MW_SHV_INT ? (double)ia : da) +
            (b->type == MW_SHV_INT ? (double)b->u.i : b->u.d);
  }
  return r;
}

/* ------------------------------------------------------------------------ */
/* Operations (each takes the lock)                                          */

static mw_shrc op_get(mw_shdict *d, const mw_shreq *rq, uint64_t h, mw_shres *res,
                      mw_shbuf *buf) {
  entry *e = lookup(d, h, rq->key, rq->klen);
  if (!e) return MW_SH_NOT_FOUND;
  touch(d, e); /* OpenResty's lookup moves every entry it finds */
  int stale = expired(e, d->now(d->now_ud));
  if (stale && rq->op == MW_SHOP_GET) return MW_SH_NOT_FOUND;
  if (e->type == MW_SHV_LIST) return MW_SH_IS_LIST;
  res->flags = e->flags;
  res->stale = stale;
  return get_value(e, res, buf);
}

static mw_shrc op_store(mw_shdict *d, const mw_shreq *rq, uint64_t h, mw_shres *res) {
  int safe = rq->op == MW_SHOP_SAFE_SET || rq->op == MW_SHOP_SAFE_ADD;
  int add = rq->op == MW_SHOP_ADD || rq->op == MW_SHOP_SAFE_ADD;
  int64_t now = d->now(d->now_ud);
  sweep(d, 0, now);
  entry *e = lookup(d, h, rq->key, rq->klen);
  int live = e && !expired(e, now);
  if (rq->op == MW_SHOP_REPLACE && !live) return MW_SH_NOT_FOUND;
  if (add && live) return MW_SH_EXISTS;
  if (e) {
    /* Set, replace, or add over an expired entry: the entry's block is
     * reused when the new value fits it exactly. */
    size_t old = e->type == MW_SHV_STR ? e->v.slen : 0;
    if (rq->val.type != MW_SHV_NIL && e->type != MW_SHV_LIST && old == str_len(&rq->val)) {
      touch(d, e);
      put_value(e, &rq->val);
      e->flags = rq->flags;
      e->expires = expiry(now, rq->ttl_ms);
      return MW_SH_OK;
    }
    entry_remove(d, e);
  }
  if (rq->val.type == MW_SHV_NIL) return MW_SH_OK; /* a delete */
  if (!room(d, entry_charge(rq->klen, str_len(&rq->val)), !safe, &res->forcible, now) ||
      !entry_insert(d, h, rq->key, rq->klen, &rq->val, expiry(now, rq->ttl_ms), rq->flags))
    return MW_SH_NO_MEMORY;
  return MW_SH_OK;
}

static mw_shrc op_incr(mw_shdict *d, const mw_shreq *rq, uint64_t h, mw_shres *res) {
  int64_t now = d->now(d->now_ud);
  sweep(d, 0, now);
  entry *e = lookup(d, h, rq->key, rq->klen);
  if (e && !expired(e, now)) {
    if (!is_number(e->type)) return MW_SH_NOT_NUMBER;
    touch(d, e);
    res->val = add_numbers(e->type, e->v.i, e->v.d, &rq->val);
    put_value(e, &res->val); /* the ttl and flags stay */
    return MW_SH_OK;
  }
  if (!rq->has_init) return MW_SH_NOT_FOUND;
  mw_shval v = add_numbers(rq->init.type, rq->init.u.i, rq->init.u.d, &rq->val);
  res->val = v;
  if (e) { /* expired: reused in place when it holds no string */
    if (e->type != MW_SHV_LIST && e->type != MW_SHV_STR) {
      touch(d, e);
      put_value(e, &v);
      e->flags = 0;
      e->expires = expiry(now, rq->init_ttl_ms);
      return MW_SH_OK;
    }
    entry_remove(d, e);
  }
  if (!room(d, entry_charge(rq->klen, 0), 1, &res->forcible, now) ||
      !entry_insert(d, h, rq->key, rq->klen, &v, expiry(now, rq->init_ttl_ms), 0)) {
    res->val.type = MW_SHV_NIL;
    return MW_SH_NO_MEMORY;
  }
  return MW_SH_OK;
}

static mw_shrc op_push(mw_shdict *d, const mw_shreq *rq, uint64_t h, mw_shres *res) {
  int64_t now = d->now(d->now_ud);
  sweep(d, 0, now);
  entry *e = lookup(d, h, rq->key, rq->klen);
  if (e && expired(e, now)) {
    entry_remove(d, e);
    e = NULL;
  }
  if (e && e->type != MW_SHV_LIST) return MW_SH_NOT_LIST;
  size_t len = str_len(&rq->val);
  size_t need = sizeof(lnode) + len + MW_SHDICT_BLOCK_OVERHEAD;
  if (!e) need += entry_charge(rq->klen, 0);
  /* Pushes never evict (OpenResty's lists allocate without forcing). */
  int unused = 0;
  if (!room(d, need, 0, &unused, now)) return MW_SH_NO_MEMORY;
  lnode *n = malloc(sizeof *n + len);
  if (!n) return MW_SH_NO_MEMORY;
  if (!e) {
    mw_shval list = {.type = MW_SHV_LIST};
    e = entry_insert(d, h, rq->key, rq->klen, &list, 0, 0);
    if (!e) {
      free(n);
      return MW_SH_NO_MEMORY;
    }
  } else {
    touch(d, e);
  }
  n->type = rq->val.type;
  n->len = len;
  if (rq->val.type == MW_SHV_INT) n->n.i = rq->val.u.i;
  else if (rq->val.type == MW_SHV_FLOAT) n->n.d = rq->val.u.d;
  else if (len) memcpy(n->data, rq->val.u.s.p, len);
  link *s = &e->v.list.head;
  link_after(rq->op == MW_SHOP_LPUSH ? s : s->prev, &n->l);
  e->v.list.n++;
  d->used += sizeof(lnode) + len + MW_SHDICT_BLOCK_OVERHEAD;
  res->n = (int64_t)e->v.list.n;
  return MW_SH_OK;
}

static mw_shrc op_pop(mw_shdict *d, const mw_shreq *rq, uint64_t h, mw_shres *res,
                      mw_shbuf *buf) {
  int64_t now = d->now(d->now_ud);
  sweep(d, 0, now);
  entry *e = lookup(d, h, rq->key, rq->klen);
  if (!e || expired(e, now)) return MW_SH_NOT_FOUND;
  if (e->type != MW_SHV_LIST) return MW_SH_NOT_LIST;
  touch(d, e);
  link *s = &e->v.list.head;
  lnode *n = (lnode *)(rq->op == MW_SHOP_LPOP ? s->next : s->prev);
  /* Copied first: a pop that cannot hand its value over leaves the list. */
  res->val.type = n->type;
  if (n->type == MW_SHV_INT) {
    res->val.u.i = n->n.i;
  } else if (n->type == MW_SHV_FLOAT) {
    res->val.u.d = n->n.d;
  } else {
    if (buf_put(buf, 0, n->data, n->len) != 0) {
      res->val.type = MW_SHV_NIL;
      return MW_SH_NO_MEMORY;
    }
    res->val.u.s.p = buf->p;
    res->val.u.s.len = n->len;
  }
  link_remove(&n->l);
  d->used -= sizeof(lnode) + n->len + MW_SHDICT_BLOCK_OVERHEAD;
  free(n);
  if (--e->v.list.n == 0) entry_remove(d, e);
  return MW_SH_OK;
}

static mw_shrc op_llen(mw_shdict *d, const mw_shreq *rq, uint64_t h, mw_shres *res) {
  entry *e = lookup(d, h, rq->key, rq->klen);
  if (!e) return MW_SH_OK; /* n = 0 */
  touch(d, e);
  if (expired(e, d->now(d->now_ud))) return MW_SH_OK;
  if (e->type != MW_SHV_LIST) return MW_SH_NOT_LIST;
  res->n = (int64_t)e->v.list.n;
  return MW_SH_OK;
}

/* ttl and expire peek: they do not count as a use for the LRU order. An
 * expired entry is not found, as get sees it. */
static mw_shrc op_ttl(mw_shdict *d, const mw_shreq *rq, uint64_t h, mw_shres *res) {
  int64_t now = d->now(d->now_ud);
  entry *e = lookup(d, h, rq->key, rq->klen);
  if (!e || expired(e, now)) return MW_SH_NOT_FOUND;
  res->n = e->expires ? e->expires - now : 0;
  if (rq->op == MW_SHOP_EXPIRE) e->expires = expiry(now, rq->ttl_ms);
  return MW_SH_OK;
}

static mw_shrc op_flush_expired(mw_shdict *d, const mw_shreq *rq, mw_shres *res) {
  int64_t now = d->now(d->now_ud);
  size_t n = 0;
  for (link *l = d->lru.prev; l != &d->lru && (rq->max == 0 || n < rq->max);) {
    link *prev = l->prev;
    entry *e = (entry *)l;
    if (expired(e, now)) {
      entry_remove(d, e);
      n++;
    }
    l = prev;
  }
  res->n = (int64_t)n;
  return MW_SH_OK;
}

static mw_shrc op_keys(mw_shdict *d, const mw_shreq *rq, mw_shres *res, mw_shbuf *buf) {
  int64_t now = d->now(d->now_ud);
  size_t n = 0, off = 0;
  for (link *l = d->lru.next; l != &d->lru && (rq->max == 0 || n < rq->max); l = l->next) {
    entry *e = (entry *)l;
    if (expired(e, now)) continue;
    uint32_t k = e->klen;
    if (buf_put(buf, off, &k, sizeof k) != 0 ||
        buf_put(buf, off + sizeof k, e->data, k) != 0)
      return MW_SH_NO_MEMORY;
    off += sizeof k + k;
    n++;
  }
  uint32_t end = 0; /* keys are never empty: a zero length ends the list */
  if (buf_put(buf, off, &end, sizeof end) != 0) return MW_SH_NO_MEMORY;
  res->n = (int64_t)n;
  return MW_SH_OK;
}

static int key_op(mw_shop op) {
  return op != MW_SHOP_FLUSH_ALL && op != MW_SHOP_FLUSH_EXPIRED && op != MW_SHOP_KEYS &&
         op != MW_SHOP_CAPACITY && op != MW_SHOP_FREE_SPACE;
}

/* What the request's value may be, checked before the lock. */
static int value_ok(const mw_shreq *rq) {
  mw_shtype t = rq->val.type;
  switch (rq->op) {
  case MW_SHOP_SET: case MW_SHOP_SAFE_SET: case MW_SHOP_ADD: case MW_SHOP_SAFE_ADD:
  case MW_SHOP_REPLACE:
    return t <= MW_SHV_STR;
  case MW_SHOP_INCR:
    return is_number(t) && (!rq->has_init || is_number(rq->init.type));
  case MW_SHOP_LPUSH: case MW_SHOP_RPUSH:
    return is_number(t) || t == MW_SHV_STR;
  default:
    return 1;
  }
}

mw_shrc mw_shdict_exec(mw_shdict *d, const mw_shreq *rq, mw_shres *res, mw_shbuf *buf) {
  memset(res, 0, sizeof *res);
  uint64_t h = 0;
  if (key_op(rq->op)) {
    if (rq->klen == 0) return res->rc = MW_SH_EMPTY_KEY;
    if (rq->klen > MW_SH_MAX_KEY) return res->rc = MW_SH_LONG_KEY;
    h = mw_siphash(d->seed, rq->key, rq->klen);
  }
  if (!value_ok(rq)) return res->rc = MW_SH_BAD_VALUE;
  mw_shrc rc = MW_SH_OK;
  pthread_mutex_lock(&d->lock);
  switch (rq->op) {
  case MW_SHOP_GET: case MW_SHOP_GET_STALE: rc = op_get(d, rq, h, res, buf); break;
  case MW_SHOP_SET: case MW_SHOP_SAFE_SET: case MW_SHOP_ADD: case MW_SHOP_SAFE_ADD:
  case MW_SHOP_REPLACE:
    rc = op_store(d, rq, h, res);
    break;
  case MW_SHOP_INCR: rc = op_incr(d, rq, h, res); break;
  case MW_SHOP_LPUSH: case MW_SHOP_RPUSH: rc = op_push(d, rq, h, res); break;
  case MW_SHOP_LPOP: case MW_SHOP_RPOP: rc = op_pop(d, rq, h, res, buf); break;
  case MW_SHOP_LLEN: rc = op_llen(d, rq, h, res); break;
  case MW_SHOP_TTL: case MW_SHOP_EXPIRE: rc = op_ttl(d, rq, h, res); break;
  case MW_SHOP_FLUSH_ALL:
    /* OpenResty marks every item expired (1 is always in the past) and
     * frees nothing: get_stale still reads them, until reuse or a sweep. */
    for (link *l = d->lru.next; l != &d->lru; l = l->next) ((entry *)l)->expires = 1;
    break;
  case MW_SHOP_FLUSH_EXPIRED: rc = op_flush_expired(d, rq, res); break;
  case MW_SHOP_KEYS: rc = op_keys(d, rq, res, buf); break;
  case MW_SHOP_CAPACITY: res->n = (int64_t)d->size; break;
  case MW_SHOP_FREE_SPACE: res->n = (int64_t)(d->size - d->used); break;
  }
  pthread_mutex_unlock(&d->lock);
  return res->rc = rc;
}

static mw_shrc backend_exec(void *self, const mw_shreq *req, mw_shres *res, mw_shbuf *buf) {
  return mw_shdict_exec(self, req, res, buf);
}

static void backend_free(void *self) { mw_shdict_free(self); }

const mw_shared_backend mw_shdict_backend = {"memory", backend_exec, NULL, backend_free};
