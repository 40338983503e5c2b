/* The in-process room (see mw_sesmem.h). Every operation takes the room's
 * lock for its whole length: publications reach every queue of a topic in
 * one order, a resume's replay and the live publications after it cannot
 * interleave, and offsets are dense. Workers are woken after the lock is
 * released. */
#include "sessions/mw_sesmem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_siphash.h"
#include "base/mw_status.h"
#include "base/mw_timer.h"

#define BUCKETS 1024 /* topics and ids per room, chained */

typedef struct topic topic;

typedef struct msub {
  mw_sess_sub base;           /* first: the registry's view */
  struct msub *tnext, *tprev; /* in its topic */
  struct msub *inext;         /* in its id bucket */
  topic *t;                   /* NULL once out of its topic */
  mw_sess_pub **q;            /* ring of queued publications (references) */
  size_t qcap, qhead, qn;
  int ended, end_told, left;
  int pending;   /* mw_sesmem_join_pending until join_done: held, unsent */
  uint64_t seen; /* mw_sesmem_deliver drops offsets up to this */
  char epoch[MW_SESS_EPOCH_LEN]; /* ... in this epoch ("": not known yet) */
  mw_sess_end end;
} msub;

struct topic {
  topic *next;
  uint64_t hash;
  char *name;
  size_t nlen;
  char epoch[MW_SESS_EPOCH_LEN];
  uint64_t top;      /* the last offset given */
  mw_sess_pub **h;   /* history ring, history_size long (references) */
  size_t hhead, hn;
  msub *subs;
  size_t nsubs;
};

typedef struct room {
  pthread_mutex_t lock;
  size_t hist, buffer;
  double ttl_s; /* 0: no age limit */
  mw_sess_policy policy;
  uint64_t key[2];
  topic *busy; /* the topic a publish walks: not dropped under it */
  topic *topics[BUCKETS];
  msub *ids[BUCKETS];
} room;

/* Workers to wake once the lock is released. */
typedef struct wakes {
  uint64_t bits[MW_SESS_MAX_WORKERS / 64];
} wakes;

static void want_wake(wakes *w, mw_sess_sub *s) {
  if (mw_sess_ready(s)) w->bits[s->worker / 64] |= UINT64_C(1) << (s->worker % 64);
}

static void do_wakes(const wakes *w) {
  for (int i = 0; i < MW_SESS_MAX_WORKERS; i++)
    if (w->bits[i / 64] & (UINT64_C(1) << (i % 64))) mw_sess_wake(i);
}

/* --- queues ---------------------------------------------------------------------- */

static int q_push(msub *s, mw_sess_pub *p) {
  if (s->qn == s->qcap) {
    size_t cap = s->qcap ? s->qcap * 2 : 4;
    mw_sess_pub **q = malloc(cap * sizeof *q);
    if (!q) return -1;
    for (size_t i = 0; i < s->qn; i++) q[i] = s->q[(s->qhead + i) % s->qcap];
    free(s->q);
    s->q = q;
    s->qcap = cap;
    s->qhead = 0;
  }
  atomic_fetch_add(&p->refs, 1);
  s->q[(s->qhead + s->qn) % s->qcap] = p;
  s->qn++;
  return 0;
}

static mw_sess_pub *q_pop(msub *s) {
  if (!s->qn) return NULL;
  mw_sess_pub *p = s->q[s->qhead];
  s->qhead = (s->qhead + 1) % s->qcap;
  s->qn--;
  return p;
}

static void q_clear(msub *s) {
  mw_sess_pub *p;
  while ((p = q_pop(s))) mw_sess_pub_unref(p);
}

static void msub_destroy(mw_sess_sub *b) {
  msub *s = (msub *)b;
  q_clear(s);
  free(s->q);
  free(s);
}

/* --- topics ---------------------------------------------------------------------- */

static void make_epoch(char out[MW_SESS_EPOCH_LEN]) {
  uint64_t k[2];
  mw_siphash_seed(k);
  snprintf(out, MW_SESS_EPOCH_LEN, "%016llx", (unsigned long long)(k[0] ^ (k[1] << 1)));
}

static topic *topic_find(room *r, const char *name, size_t len, int create) {
  uint64_t hash = mw_siphash(r->key, name, len);
  topic **slot = &r->topics[hash % BUCKETS];
  for (topic *t = *slot; t; t = t->next)
    if (t->hash == hash && t->nlen == len && memcmp(t->name, name, len) == 0) return t;
  if (!create) return NULL;
  topic *t = calloc(1, sizeof *t);
  char *copy = malloc(len + 1);
  mw_sess_pub **h = r->hist ? calloc(r->hist, sizeof *h) : NULL;
  if (!t || !copy || (r->hist && !h)) {
    free(t);
    free(copy);
    free(h);
    return NULL;
  }
  memcpy(copy, name, len);
  copy[len] = '\0';
  t->name = copy;
  t->nlen = len;
  t->hash = hash;
  t->h = h;
  make_epoch(t->epoch);
  t->next = *slot;
  *slot = t;
  return t;
}

static void hist_clear(room *r, topic *t) {
  while (t->hn) {
    mw_sess_pub_unref(t->h[t->hhead]);
    t->hhead = (t->hhead + 1) % r->hist;
    t->hn--;
  }
}

/* A topic nobody listens to and nothing can be resumed from is dropped. */
static void topic_maybe_drop(room *r, topic *t) {
  if (t->nsubs || t->hn || t == r->busy) return;
  topic **slot = &r->topics[t->hash % BUCKETS];
  while (*slot && *slot != t) slot = &(*slot)->next;
  if (*slot) *slot = t->next;
  free(t->h);
  free(t->name);
  free(t);
}

static void hist_expire(room *r, topic *t, double now) {
  if (r->ttl_s <= 0) return;
  while (t->hn && t->h[t->hhead]->at + r->ttl_s < now) {
    mw_sess_pub_unref(t->h[t->hhead]);
    t->hhead = (t->hhead + 1) % r->hist;
    t->hn--;
  }
}

static void hist_push(room *r, topic *t, mw_sess_pub *p) {
  if (!r->hist) return;
  if (t->hn == r->hist) {
    mw_sess_pub_unref(t->h[t->hhead]);
    t->hhead = (t->hhead + 1) % r->hist;
    t->hn--;
  }
  atomic_fetch_add(&p->refs, 1);
  t->h[(t->hhead + t->hn) % r->hist] = p;
  t->hn++;
}

/* --- subscribers ----------------------------------------------------------------- */

static void id_link(room *r, msub *s) {
  msub **slot = &r->ids[s->base.id % BUCKETS];
  s->inext = *slot;
  *slot = s;
}

static void id_unlink(room *r, msub *s) {
  msub **slot = &r->ids[s->base.id % BUCKETS];
  while (*slot && *slot != s) slot = &(*slot)->inext;
  if (*slot) *slot = s->inext;
  s->inext = NULL;
}

static msub *id_find(room *r, uint64_t id) {
  for (msub *s = r->ids[id % BUCKETS]; s; s = s->inext)
    if (s->base.id == id) return s;
  return NULL;
}

/* Out of its topic and the id table; drops the room's reference. */
static void sub_remove(room *r, msub *s) {
  topic *t = s->t;
  if (!t) return;
  if (s->tprev) s->tprev->tnext = s->tnext;
  else t->subs = s->tnext;
  if (s->tnext) s->tnext->tprev = s->tprev;
  s->tnext = s->tprev = NULL;
  t->nsubs--;
  s->t = NULL;
  id_unlink(r, s);
  topic_maybe_drop(r, t);
  mw_sess_sub_unref(&s->base);
}

/* The room ends s: its queue goes, its worker hears of the end. */
static void sub_end(room *r, msub *s, int code, const char *msg, wakes *w) {
  if (s->ended || s->left) return;
  s->ended = 1;
  s->end.code = code;
  snprintf(s->end.msg, sizeof s->end.msg, "%s", msg ? msg : "");
  q_clear(s);
  want_wake(w, &s->base);
  sub_remove(r, s);
}

/* One publication for s under the room's policy (room checked by the
 * caller for block). */
static void deliver(room *r, msub *s, mw_sess_pub *p, wakes *w) {
  if (s->qn >= r->buffer) {
    /* block gets here only from mw_sesmem_deliver: a publisher elsewhere
     * cannot wait for this queue */
    if (r->policy != MW_SESS_DROP_OLDEST) {
      char msg[128];
      snprintf(msg, sizeof msg, "the stream fell behind: %zu publications were waiting for it",
               r->buffer);
      sub_end(r, s, MW_STATUS_RESOURCE_EXHAUSTED, msg, w);
      return;
    }
    mw_sess_pub_unref(q_pop(s)); /* drop_oldest (block never gets here) */
  }
  size_t was = s->qn;
  if (q_push(s, p) != 0) {
    sub_end(r, s, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory", w);
    return;
  }
  if (was == 0) want_wake(w, &s->base);
}

/* Room for two varints after the bytes: the offset's stamp. */
static mw_sess_pub *pub_new(const char *data, size_t len) {
  mw_sess_pub *p = malloc(sizeof *p + len + 20);
  if (!p) return NULL;
  atomic_init(&p->refs, 1);
  memcpy(p->data, data, len);
  p->len = len;
  p->offset = 0;
  p->at = 0;
  return p;
}

static size_t put_varint(char *out, uint64_t v) {
  size_t n = 0;
  do {
    unsigned char b = v & 0x7f;
    v >>= 7;
    out[n++] = (char)(b | (v ? 0x80 : 0));
  } while (v);
  return n;
}

/* Appends field = offset (a varint): protobuf keeps the last value of a
 * scalar field, so whatever the publisher put there is overridden. */
static void stamp(mw_sess_pub *p, int field, uint64_t offset) {
  p->offset = offset;
  if (field <= 0) return;
  p->len += put_varint(p->data + p->len, (uint64_t)field << 3);
  p->len += put_varint(p->data + p->len, offset);
}

/* --- the backend ----------------------------------------------------------------- */

/* pending: mw_sesmem_join_pending's (set before s is visible to anyone). */
static mw_sess_rc join_impl(void *self, mw_sess_join *j, mw_sess_sub **out, int pending) {
  room *r = self;
  msub *s = calloc(1, sizeof *s);
  if (!s) return MW_SESS_NO_MEMORY;
  s->pending = pending;
  atomic_init(&s->base.refs, 2); /* the joiner's and the room's */
  s->base.worker = j->worker;
  s->base.owner = j->owner;
  s->base.id = mw_sess_next_id();
  s->base.destroy = msub_destroy;
  wakes w = {{0}};
  pthread_mutex_lock(&r->lock);
  topic *t = topic_find(r, j->topic, j->tlen, 1);
  if (!t) {
    pthread_mutex_unlock(&r->lock);
    free(s);
    return MW_SESS_NO_MEMORY;
  }
  hist_expire(r, t, mw_now());
  j->recovered = 0;
  j->replayed = 0;
  if (j->resume && j->epoch && strcmp(j->epoch, t->epoch) == 0 && j->offset <= t->top) {
    uint64_t oldest = t->hn ? t->h[t->hhead]->offset : t->top + 1;
    if (j->offset + 1 >= oldest) {
      j->recovered = 1;
      for (size_t i = 0; i < t->hn; i++) {
        mw_sess_pub *p = t->h[(t->hhead + i) % r->hist];
        if (p->offset <= j->offset) continue;
        if (q_push(s, p) != 0) {
          q_clear(s);
          topic_maybe_drop(r, t);
          pthread_mutex_unlock(&r->lock);
          msub_destroy(&s->base);
          return MW_SESS_NO_MEMORY;
        }
        j->replayed++;
      }
    }
  }
  s->t = t;
  s->tnext = t->subs;
  if (t->subs) t->subs->tprev = s;
  t->subs = s;
  t->nsubs++;
  id_link(r, s);
  if (s->qn) want_wake(&w, &s->base);
  j->top = t->top;
  memcpy(j->epoch_now, t->epoch, MW_SESS_EPOCH_LEN);
  pthread_mutex_unlock(&r->lock);
  do_wakes(&w);
  *out = &s->base;
  return MW_SESS_OK;
}

static mw_sess_rc m_join(void *self, mw_sess_join *j, mw_sess_sub **out) {
  return join_impl(self, j, out, 0);
}

static void m_leave(void *self, mw_sess_sub *b) {
  room *r = self;
  msub *s = (msub *)b;
  pthread_mutex_lock(&r->lock);
  if (!s->left) {
    s->left = 1;
    s->base.owner = NULL;
    q_clear(s);
    sub_remove(r, s); /* nothing when the room ended it */
  }
  pthread_mutex_unlock(&r->lock);
}

static int any_full(room *r, topic *t) {
  for (msub *s = t->subs; s; s = s->tnext)
    if (s->qn >= r->buffer) return 1;
  return 0;
}

static mw_sess_rc m_publish(void *self, const char *name, size_t tlen, const char *data,
                            size_t len, int field, uint64_t *offset) {
  room *r = self;
  mw_sess_pub *p = pub_new(data, len);
  if (!p) return MW_SESS_NO_MEMORY;
  wakes w = {{0}};
  pthread_mutex_lock(&r->lock);
  topic *t = topic_find(r, name, tlen, 1);
  if (!t) {
    pthread_mutex_unlock(&r->lock);
    free(p);
    return MW_SESS_NO_MEMORY;
  }
  double now = mw_now();
  hist_expire(r, t, now);
  if (r->policy == MW_SESS_BLOCK && any_full(r, t)) {
    pthread_mutex_unlock(&r->lock);
    free(p);
    return MW_SESS_FULL;
  }
  p->at = now;
  stamp(p, field, ++t->top);
  *offset = t->top;
  hist_push(r, t, p);
  msub *next;
  r->busy = t; /* deliver may end its last subscriber */
  for (msub *s = t->subs; s; s = next) {
    next = s->tnext; /* deliver may end s, which unlinks it */
    deliver(r, s, p, &w);
  }
  r->busy = NULL;
  topic_maybe_drop(r, t);
  pthread_mutex_unlock(&r->lock);
  mw_sess_pub_unref(p);
  do_wakes(&w);
  return MW_SESS_OK;
}

static mw_sess_rc m_send(void *self, uint64_t id, const char *data, size_t len) {
  room *r = self;
  mw_sess_pub *p = pub_new(data, len);
  if (!p) return MW_SESS_NO_MEMORY;
  p->at = mw_now();
  wakes w = {{0}};
  mw_sess_rc rc = MW_SESS_OK;
  pthread_mutex_lock(&r->lock);
  msub *s = id_find(r, id);
  if (!s) rc = MW_SESS_NOT_FOUND;
  else if (r->policy == MW_SESS_BLOCK && s->qn >= r->buffer) rc = MW_SESS_FULL;
  else deliver(r, s, p, &w);
  pthread_mutex_unlock(&r->lock);
  mw_sess_pub_unref(p);
  do_wakes(&w);
  return rc;
}

static mw_sess_rc m_close(void *self, uint64_t id, int code, const char *msg) {
  room *r = self;
  wakes w = {{0}};
  pthread_mutex_lock(&r->lock);
  msub *s = id_find(r, id);
  if (s) sub_end(r, s, code, msg, &w);
  pthread_mutex_unlock(&r->lock);
  do_wakes(&w);
  return s ? MW_SESS_OK : MW_SESS_NOT_FOUND;
}

static size_t m_list(void *self, const char *name, size_t tlen, uint64_t *ids, size_t max) {
  room *r = self;
  size_t n = 0;
  pthread_mutex_lock(&r->lock);
  topic *t = topic_find(r, name, tlen, 0);
  /* oldest first: the list is kept newest first */
  msub *last = t ? t->subs : NULL;
  while (last && last->tnext) last = last->tnext;
  for (msub *s = last; s; s = s->tprev) {
    if (n < max) ids[n] = s->base.id;
    n++;
  }
  pthread_mutex_unlock(&r->lock);
  return n;
}

static mw_sess_rc m_history(void *self, const char *name, size_t tlen, uint64_t since,
                            mw_sess_pub **out, size_t max, size_t *n, uint64_t *top,
                            char epoch[MW_SESS_EPOCH_LEN]) {
  room *r = self;
  *n = 0;
  pthread_mutex_lock(&r->lock);
  /* Made when missing, so that the epoch handed out is the one a join
   * made next resumes against. */
  topic *t = topic_find(r, name, tlen, 1);
  if (!t) {
    pthread_mutex_unlock(&r->lock);
    return MW_SESS_NO_MEMORY;
  }
  hist_expire(r, t, mw_now());
  for (size_t i = 0; i < t->hn && *n < max; i++) {
    mw_sess_pub *p = t->h[(t->hhead + i) % r->hist];
    if (p->offset <= since) continue;
    atomic_fetch_add(&p->refs, 1);
    out[(*n)++] = p;
  }
  *top = t->top;
  memcpy(epoch, t->epoch, MW_SESS_EPOCH_LEN);
  pthread_mutex_unlock(&r->lock);
  return MW_SESS_OK;
}

static int m_take(void *self, mw_sess_sub *b, mw_sess_pub **out, mw_sess_end *end, int *freed) {
  room *r = self;
  msub *s = (msub *)b;
  int rc = 0;
  *freed = 0;
  pthread_mutex_lock(&r->lock);
  if (s->qn && !s->pending) { /* held ones wait for join_done's order */
    *freed = s->qn >= r->buffer;
    *out = q_pop(s);
    rc = 1;
  } else if (s->ended && !s->end_told) {
    s->end_told = 1;
    *end = s->end;
    rc = -1;
  }
  pthread_mutex_unlock(&r->lock);
  return rc;
}

static void m_free(void *self) {
  room *r = self;
  if (!r) return;
  for (size_t i = 0; i < BUCKETS; i++) {
    topic *t = r->topics[i], *next;
    for (; t; t = next) {
      next = t->next;
      msub *sn;
      for (msub *s = t->subs; s; s = sn) {
        sn = s->tnext;
        s->t = NULL;
        q_clear(s);
        mw_sess_sub_unref(&s->base);
      }
      hist_clear(r, t);
      free(t->h);
      free(t->name);
      free(t);
    }
  }
  pthread_mutex_destroy(&r->lock);
  free(r);
}

/* --- the local delivery of a room on Redis ---------------------------------------- */

mw_sess_rc mw_sesmem_join_pending(void *self, mw_sess_join *j, mw_sess_sub **out) {
  mw_sess_join plain = *j;
  plain.resume = 0;
  mw_sess_rc rc = join_impl(self, &plain, out, 1);
  j->replayed = 0;
  j->recovered = 0;
  return rc;
}

void mw_sesmem_join_done(void *self, mw_sess_sub *b, mw_sess_pub *const *pubs, size_t n,
                         uint64_t top, const char *epoch) {
  room *r = self;
  msub *s = (msub *)b;
  wakes w = {{0}};
  pthread_mutex_lock(&r->lock);
  if (s->pending && !s->ended && !s->left) {
    s->pending = 0;
    snprintf(s->epoch, sizeof s->epoch, "%s", epoch ? epoch : "");
    uint64_t last = top;
    /* the held ones out, the history in, the held ones that are newer back */
    size_t held = s->qn;
    mw_sess_pub **h = held ? malloc(held * sizeof *h) : NULL;
    size_t nh = 0;
    if (held && !h) {
      sub_end(r, s, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory", &w);
    } else {
      mw_sess_pub *p;
      while ((p = q_pop(s))) h[nh++] = p;
      int oom = 0;
      for (size_t i = 0; i < n && !oom; i++) {
        oom = q_push(s, pubs[i]) != 0;
        if (pubs[i]->offset > last) last = pubs[i]->offset;
      }
      for (size_t i = 0; i < nh; i++) {
        if (!oom && h[i]->offset > last) {
          oom = q_push(s, h[i]) != 0;
          last = h[i]->offset;
        }
        mw_sess_pub_unref(h[i]);
      }
      free(h);
      s->seen = last;
      if (oom) sub_end(r, s, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory", &w);
      else if (s->qn) want_wake(&w, &s->base);
    }
  }
  pthread_mutex_unlock(&r->lock);
  do_wakes(&w);
}

void mw_sesmem_deliver(void *self, const char *name, size_t tlen, const char *epoch,
                       mw_sess_pub *p) {
  room *r = self;
  wakes w = {{0}};
  pthread_mutex_lock(&r->lock);
  topic *t = topic_find(r, name, tlen, 0);
  if (t) {
    msub *next;
    r->busy = t;
    for (msub *s = t->subs; s; s = next) {
      next = s->tnext;
      if (s->pending) {
        if (q_push(s, p) != 0) sub_end(r, s, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory", &w);
        continue;
      }
      if (!s->epoch[0]) {
        snprintf(s->epoch, sizeof s->epoch, "%s", epoch);
      } else if (strcmp(s->epoch, epoch) != 0) {
        sub_end(r, s, MW_STATUS_ABORTED,
                "the topic's history was reset (a new epoch): resume to know what was missed",
                &w);
        continue;
      }
      if (p->offset <= s->seen) continue;
      s->seen = p->offset;
      deliver(r, s, p, &w);
    }
    r->busy = NULL;
    topic_maybe_drop(r, t);
  }
  pthread_mutex_unlock(&r->lock);
  do_wakes(&w);
}

void *mw_sesmem_new(const mw_sess_spec *spec) {
  room *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  pthread_mutex_init(&r->lock, NULL);
  r->hist = spec->history_size;
  r->buffer = spec->buffer ? spec->buffer : 1;
  r->ttl_s = (double)spec->history_ttl_ms / 1000.0;
  r->policy = spec->policy;
  mw_siphash_seed(r->key);
  return r;
}

const mw_sess_backend mw_sesmem_backend = {
    "memory", m_join, m_leave, m_publish, m_send, m_close, m_list, m_history, m_take, m_free,
};
