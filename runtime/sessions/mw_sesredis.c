/* A room on Redis: see mw_sesredis.h for the mapping. publish, join and
 * history wait on their caller's thread for Redis's answer, bounded by the
 * room's timeout, as a shared dict's blocking operations do; the answer is
 * read on the connection's I/O thread into the waiting record (hiredis
 * frees the reply when the callback returns). */
#include "sessions/mw_sesredis.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "base/mw_siphash.h"
#include "base/mw_timer.h"
#include "sessions/mw_sesmem.h"
#include "shared/mw_rconn.h"

/* KEYS = epoch, offset, history; ARGV = a new epoch, history size, ttl ms,
 * offset field (0: none), bytes, channel, topic. Returns the offset. Lua
 * numbers are doubles in Redis: offsets are exact to 2^53. */
static const char SCRIPT_PUBLISH[] =
    "local function vi(n) local s='' repeat local b=n%128 n=(n-b)/128 "
    "if n>0 then b=b+128 end s=s..string.char(b) until n==0 return s end "
    "local e=redis.call('GET',KEYS[1]) "
    "if not e then e=ARGV[1] redis.call('SET',KEYS[1],e) redis.call('DEL',KEYS[2],KEYS[3]) end "
    "local off=redis.call('INCR',KEYS[2]) local d=ARGV[5] local f=tonumber(ARGV[4]) "
    "if f>0 then d=d..vi(f*8)..vi(off) end "
    "local size=tonumber(ARGV[2]) local ttl=tonumber(ARGV[3]) "
    "if size>0 then local t=redis.call('TIME') "
    "local ms=tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000) "
    "redis.call('RPUSH',KEYS[3],off..' '..ms..' '..d) redis.call('LTRIM',KEYS[3],-size,-1) end "
    "if ttl>0 then redis.call('PEXPIRE',KEYS[1],ttl) redis.call('PEXPIRE',KEYS[2],ttl) "
    "if size>0 then redis.call('PEXPIRE',KEYS[3],ttl) end end "
    "redis.call('PUBLISH',ARGV[6],off..' '..e..' '..#ARGV[7]..' '..ARGV[7]..d) return off";

/* KEYS = epoch, offset, history; ARGV = a new epoch, ttl ms. Returns
 * {epoch, last offset, Redis's clock in ms, history entries}. */
static const char SCRIPT_READ[] =
    "local e=redis.call('GET',KEYS[1]) "
    "if not e then e=ARGV[1] redis.call('DEL',KEYS[2],KEYS[3]) local ttl=tonumber(ARGV[2]) "
    "if ttl>0 then redis.call('SET',KEYS[1],e,'PX',ttl) else redis.call('SET',KEYS[1],e) end "
    "end local top=tonumber(redis.call('GET',KEYS[2]) or '0') local t=redis.call('TIME') "
    "return {e,top,tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000),"
    "redis.call('LRANGE',KEYS[3],0,-1)}";

typedef struct rroom {
  void *mem; /* the local delivery (mw_sesmem) */
  mw_rconn *cmd, *sub;
  char *prefix, *channel;
  size_t plen;
  size_t hist;
  int64_t ttl_ms, timeout_ms;
  mw_rcmd subcmd;         /* SUBSCRIBE channel: sent again on each connection */
  _Atomic int subscribed; /* the channel's subscription is confirmed */
} rroom;

/* --- one blocking command ----------------------------------------------------------- */

enum { OP_PUBLISH, OP_READ };

/* Shared by the waiter and the I/O thread; the last of the two frees it. */
typedef struct rop {
  mw_rcmd cmd; /* first */
  int kind;
  int64_t ttl_ms;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int answered;
  _Atomic int refs;
  char err[192]; /* "" when it worked */
  uint64_t offset; /* publish */
  char epoch[MW_SESS_EPOCH_LEN]; /* read: */
  uint64_t top;
  mw_sess_pub **pubs; /* the live history entries, oldest first (references) */
  size_t n;
} rop;

static void rop_unref(rop *o) {
  if (atomic_fetch_sub(&o->refs, 1) != 1) return;
  for (size_t i = 0; i < o->n; i++) mw_sess_pub_unref(o->pubs[i]);
  free(o->pubs);
  free(o->cmd.cmd);
  pthread_cond_destroy(&o->cond);
  pthread_mutex_destroy(&o->lock);
  free(o);
}

static mw_sess_pub *pub_make(const char *data, size_t len, uint64_t offset) {
  mw_sess_pub *p = malloc(sizeof *p + len + 1);
  if (!p) return NULL;
  atomic_init(&p->refs, 1);
  p->offset = offset;
  p->at = mw_now();
  p->len = len;
  memcpy(p->data, data, len);
  return p;
}

/* "DECIMAL " at *p (within end): the number, *p past the space; -1 when
 * it is not there. */
static int read_num(const char **p, const char *end, uint64_t *out) {
  const char *q = *p;
  uint64_t v = 0;
  if (q >= end || *q < '0' || *q > '9') return -1;
  while (q < end && *q >= '0' && *q <= '9') v = v * 10 + (uint64_t)(*q++ - '0');
  if (q >= end || *q != ' ') return -1;
  *p = q + 1;
  *out = v;
  return 0;
}

static void parse_read(rop *o, const redisReply *r) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
      r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_INTEGER ||
      r->element[2]->type != REDIS_REPLY_INTEGER || r->element[3]->type != REDIS_REPLY_ARRAY) {
    snprintf(o->err, sizeof o->err, "redis: unexpected reply");
    return;
  }
  snprintf(o->epoch, sizeof o->epoch, "%s", r->element[0]->str);
  o->top = (uint64_t)r->element[1]->integer;
  int64_t now = r->element[2]->integer;
  const redisReply *h = r->element[3];
  o->pubs = h->elements ? calloc(h->elements, sizeof *o->pubs) : NULL;
  if (h->elements && !o->pubs) {
    snprintf(o->err, sizeof o->err, "redis: out of memory");
    return;
  }
  for (size_t i = 0; i < h->elements; i++) {
    const redisReply *e = h->element[i];
    if (e->type != REDIS_REPLY_STRING) continue;
    const char *p = e->str, *end = e->str + e->len;
    uint64_t off, ms;
    if (read_num(&p, end, &off) != 0 || read_num(&p, end, &ms) != 0) continue;
    /* the history's age limit is per publication, as in memory */
    if (o->ttl_ms > 0 && (int64_t)ms + o->ttl_ms < now) continue;
    mw_sess_pub *pub = pub_make(p, (size_t)(end - p), off);
    if (!pub) {
      snprintf(o->err, sizeof o->err, "redis: out of memory");
      return;
    }
    o->pubs[o->n++] = pub;
  }
}

static void on_reply(mw_rcmd *c, redisReply *r, const char *err) {
  rop *o = (rop *)c;
  if (!r) snprintf(o->err, sizeof o->err, "redis: %s", err);
  else if (r->type == REDIS_REPLY_ERROR) snprintf(o->err, sizeof o->err, "redis: %s", r->str);
  else if (o->kind == OP_PUBLISH) {
    if (r->type == REDIS_REPLY_INTEGER) o->offset = (uint64_t)r->integer;
    else snprintf(o->err, sizeof o->err, "redis: unexpected reply");
  } else {
    parse_read(o, r);
  }
  pthread_mutex_lock(&o->lock);
  o->answered = 1;
  pthread_cond_signal(&o->cond);
  pthread_mutex_unlock(&o->lock);
  rop_unref(o);
}

static rop *rop_new(int kind) {
  rop *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->kind = kind;
  o->cmd.on_reply = on_reply;
  pthread_mutex_init(&o->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&o->cond, &ca);
  pthread_condattr_destroy(&ca);
  atomic_init(&o->refs, 2); /* the waiter's and the I/O thread's */
  return o;
}

/* Sends o (its cmd formatted) and waits for the answer; 0, or -1 with
 * the reason set (mw_sess_set_error). The caller unrefs o. */
static int rop_run(rroom *rr, rop *o) {
  mw_rconn_submit(rr->cmd, &o->cmd);
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += rr->timeout_ms / 1000;
  until.tv_nsec += (rr->timeout_ms % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&o->lock);
  while (!o->answered)
    if (pthread_cond_timedwait(&o->cond, &o->lock, &until) == ETIMEDOUT) break;
  int answered = o->answered;
  pthread_mutex_unlock(&o->lock);
  if (!answered) {
    mw_sess_set_error("redis: timeout");
    return -1;
  }
  if (o->err[0]) {
    mw_sess_set_error(o->err);
    return -1;
  }
  return 0;
}

/* PREFIX + tag + ':' + topic, malloc'd (the caller frees it); *len set. */
static char *key(rroom *rr, char tag, const char *topic, size_t tlen, size_t *len) {
  *len = rr->plen + 2 + tlen;
  char *k = malloc(*len);
  if (!k) return NULL;
  memcpy(k, rr->prefix, rr->plen);
  k[rr->plen] = tag;
  k[rr->plen + 1] = ':';
  memcpy(k + rr->plen + 2, topic, tlen);
  return k;
}

static void new_epoch(char out[MW_SESS_EPOCH_LEN]) {
  uint64_t k[2];
  mw_siphash_seed(k);
  snprintf(out, MW_SESS_EPOCH_LEN, "%016llx", (unsigned long long)(k[0] ^ (k[1] << 1)));
}

/* The EVAL of script over the topic's three keys, then extra arguments. */
static int format_eval(rroom *rr, rop *o, const char *script, const char *topic, size_t tlen,
                       int nextra, const char **xv, const size_t *xl) {
  const char *v[16];
  size_t l[16];
  char *keys[3] = {NULL, NULL, NULL};
  size_t kl[3];
  static const char tags[3] = {'e', 'o', 'h'};
  int n = 0, rc = -1;
  v[n] = "EVAL", l[n++] = 4;
  v[n] = script, l[n++] = strlen(script);
  v[n] = "3", l[n++] = 1;
  for (int i = 0; i < 3; i++) {
    keys[i] = key(rr, tags[i], topic, tlen, &kl[i]);
    if (!keys[i]) goto out;
    v[n] = keys[i], l[n++] = kl[i];
  }
  for (int i = 0; i < nextra; i++) v[n] = xv[i], l[n++] = xl[i];
  int len = redisFormatCommandArgv(&o->cmd.cmd, n, v, l);
  if (len >= 0) {
    o->cmd.len = (size_t)len;
    rc = 0;
  }
out:
  for (int i = 0; i < 3; i++) free(keys[i]);
  return rc;
}

/* The topic's epoch, last offset and live history; NULL with the reason
 * set when Redis did not answer. */
static rop *read_topic(rroom *rr, const char *topic, size_t tlen) {
  rop *o = rop_new(OP_READ);
  if (!o) {
    mw_sess_set_error("out of memory");
    return NULL;
  }
  o->ttl_ms = rr->ttl_ms;
  char ep[MW_SESS_EPOCH_LEN], ttl[24];
  new_epoch(ep);
  snprintf(ttl, sizeof ttl, "%" PRId64, rr->ttl_ms);
  const char *xv[2] = {ep, ttl};
  size_t xl[2] = {strlen(ep), strlen(ttl)};
  if (format_eval(rr, o, SCRIPT_READ, topic, tlen, 2, xv, xl) != 0) {
    mw_sess_set_error("out of memory");
    atomic_store(&o->refs, 1);
    rop_unref(o);
    return NULL;
  }
  if (rop_run(rr, o) != 0) {
    rop_unref(o);
    return NULL;
  }
  return o;
}

/* --- the subscriber connection ------------------------------------------------------ */

static void on_push(mw_rcmd *c, redisReply *r, const char *err) {
  rroom *rr = (rroom *)((char *)c - offsetof(rroom, subcmd));
  if (!r) { /* the connection went: subscribed again by on_up */
    atomic_store(&rr->subscribed, 0);
    return;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
      r->element[0]->type != REDIS_REPLY_STRING)
    return;
  const char *kind = r->element[0]->str;
  if (strcmp(kind, "subscribe") == 0) {
    atomic_store(&rr->subscribed, 1);
    return;
  }
  if (strcmp(kind, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING) return;
  const redisReply *m = r->element[2];
  const char *p = m->str, *end = m->str + m->len;
  uint64_t off, tl;
  char epoch[MW_SESS_EPOCH_LEN];
  if (read_num(&p, end, &off) != 0 || end - p < MW_SESS_EPOCH_LEN ||
      p[MW_SESS_EPOCH_LEN - 1] != ' ')
    return;
  memcpy(epoch, p, MW_SESS_EPOCH_LEN - 1);
  epoch[MW_SESS_EPOCH_LEN - 1] = '\0';
  p += MW_SESS_EPOCH_LEN;
  if (read_num(&p, end, &tl) != 0 || tl > (uint64_t)(end - p)) return;
  const char *topic = p;
  p += tl;
  mw_sess_pub *pub = pub_make(p, (size_t)(end - p), off);
  if (!pub) return; /* the streams resume from their offset */
  mw_sesmem_deliver(rr->mem, topic, (size_t)tl, epoch, pub);
  mw_sess_pub_unref(pub);
}

static void on_up(mw_rconn *conn, void *arg) {
  rroom *rr = arg;
  mw_rconn_resend(conn, &rr->subcmd);
}

/* A join right after the start (or a reconnect) waits, within the timeout,
 * for the subscription, so that it misses nothing published after it;
 * not while Redis is down. */
static void wait_subscribed(rroom *rr) {
  double until = mw_now() + (double)rr->timeout_ms / 1000.0;
  while (!atomic_load(&rr->subscribed) && mw_rconn_up(rr->cmd) && mw_now() < until) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
}

/* --- the backend -------------------------------------------------------------------- */

static mw_sess_rc r_join(void *self, mw_sess_join *j, mw_sess_sub **out) {
  rroom *rr = self;
  wait_subscribed(rr);
  mw_sess_rc rc = mw_sesmem_join_pending(rr->mem, j, out);
  if (rc != MW_SESS_OK) return rc;
  j->top = 0;
  j->epoch_now[0] = '\0';
  j->recovered = 0;
  j->replayed = 0;
  rop *o = read_topic(rr, j->topic, j->tlen);
  size_t from = 0, n = 0;
  if (o) {
    memcpy(j->epoch_now, o->epoch, MW_SESS_EPOCH_LEN);
    j->top = o->top;
    if (j->resume && j->epoch && strcmp(j->epoch, o->epoch) == 0 && j->offset <= o->top) {
      uint64_t oldest = o->n ? o->pubs[0]->offset : o->top + 1;
      if (j->offset + 1 >= oldest) {
        j->recovered = 1;
        while (from < o->n && o->pubs[from]->offset <= j->offset) from++;
        n = o->n - from;
        j->replayed = n;
      }
    }
  }
  mw_sesmem_join_done(rr->mem, *out, o ? o->pubs + from : NULL, n, j->top, j->epoch_now);
  if (o) rop_unref(o);
  return MW_SESS_OK;
}

static void r_leave(void *self, mw_sess_sub *s) {
  rroom *rr = self;
  mw_sesmem_backend.leave(rr->mem, s);
}

static mw_sess_rc r_publish(void *self, const char *topic, size_t tlen, const char *data,
                            size_t len, int field, uint64_t *offset) {
  rroom *rr = self;
  rop *o = rop_new(OP_PUBLISH);
  if (!o) return MW_SESS_NO_MEMORY;
  char ep[MW_SESS_EPOCH_LEN], size[24], ttl[24], fl[24];
  new_epoch(ep);
  snprintf(size, sizeof size, "%zu", rr->hist);
  snprintf(ttl, sizeof ttl, "%" PRId64, rr->ttl_ms);
  snprintf(fl, sizeof fl, "%d", field > 0 ? field : 0);
  const char *xv[7] = {ep, size, ttl, fl, data, rr->channel, topic};
  size_t xl[7] = {strlen(ep), strlen(size), strlen(ttl), strlen(fl), len, strlen(rr->channel),
                  tlen};
  if (format_eval(rr, o, SCRIPT_PUBLISH, topic, tlen, 7, xv, xl) != 0) {
    atomic_store(&o->refs, 1);
    rop_unref(o);
    return MW_SESS_NO_MEMORY;
  }
  int rc = rop_run(rr, o);
  if (rc == 0) *offset = o->offset;
  rop_unref(o);
  return rc == 0 ? MW_SESS_OK : MW_SESS_BACKEND;
}

static mw_sess_rc r_send(void *self, uint64_t id, const char *data, size_t len) {
  rroom *rr = self;
  return mw_sesmem_backend.send(rr->mem, id, data, len);
}

static mw_sess_rc r_close(void *self, uint64_t id, int code, const char *msg) {
  rroom *rr = self;
  return mw_sesmem_backend.close(rr->mem, id, code, msg);
}

static size_t r_list(void *self, const char *topic, size_t tlen, uint64_t *ids, size_t max) {
  rroom *rr = self;
  return mw_sesmem_backend.list(rr->mem, topic, tlen, ids, max);
}

static mw_sess_rc r_history(void *self, const char *topic, size_t tlen, uint64_t since,
                            mw_sess_pub **out, size_t max, size_t *n, uint64_t *top,
                            char epoch[MW_SESS_EPOCH_LEN]) {
  rroom *rr = self;
  *n = 0;
  rop *o = read_topic(rr, topic, tlen);
  if (!o) return MW_SESS_BACKEND;
  for (size_t i = 0; i < o->n && *n < max; i++) {
    if (o->pubs[i]->offset <= since) continue;
    atomic_fetch_add(&o->pubs[i]->refs, 1);
    out[(*n)++] = o->pubs[i];
  }
  *top = o->top;
  memcpy(epoch, o->epoch, MW_SESS_EPOCH_LEN);
  rop_unref(o);
  return MW_SESS_OK;
}

static int r_take(void *self, mw_sess_sub *s, mw_sess_pub **out, mw_sess_end *end, int *freed) {
  rroom *rr = self;
  return mw_sesmem_backend.take(rr->mem, s, out, end, freed);
}

static void r_free(void *self) {
  rroom *rr = self;
  if (!rr) return;
  /* the subscriber first: no delivery reaches the local room after */
  mw_rconn_free(rr->sub);
  mw_rconn_free(rr->cmd);
  mw_sesmem_backend.free(rr->mem);
  free(rr->subcmd.cmd);
  free(rr->prefix);
  free(rr->channel);
  free(rr);
}

void *mw_sesredis_new(const mw_sess_spec *spec, char *err, size_t errlen) {
  mw_rconn_addr addr;
  if (mw_rconn_parse_url(spec->redis, &addr, err, errlen) != 0) return NULL;
  rroom *rr = calloc(1, sizeof *rr);
  if (!rr) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  rr->hist = spec->history_size;
  rr->ttl_ms = spec->history_ttl_ms;
  rr->timeout_ms = spec->timeout_ms > 0 ? spec->timeout_ms : 1000;
  char dflt[96];
  snprintf(dflt, sizeof dflt, "sessions:%s:", spec->name);
  rr->prefix = strdup(spec->prefix ? spec->prefix : dflt);
  rr->plen = rr->prefix ? strlen(rr->prefix) : 0;
  rr->channel = rr->prefix ? malloc(rr->plen + 4) : NULL;
  mw_sess_spec local = *spec;
  local.history_size = 0; /* the history is Redis's */
  rr->mem = mw_sesmem_new(&local);
  if (!rr->prefix || !rr->channel || !rr->mem) {
    snprintf(err, errlen, "out of memory");
    r_free(rr);
    return NULL;
  }
  memcpy(rr->channel, rr->prefix, rr->plen);
  memcpy(rr->channel + rr->plen, "pub", 4);
  const char *sv[2] = {"SUBSCRIBE", rr->channel};
  size_t sl[2] = {9, strlen(rr->channel)};
  int n = redisFormatCommandArgv(&rr->subcmd.cmd, 2, sv, sl);
  if (n < 0) {
    snprintf(err, errlen, "out of memory");
    r_free(rr);
    return NULL;
  }
  rr->subcmd.len = (size_t)n;
  rr->subcmd.on_reply = on_push;
  rr->cmd = mw_rconn_new(&addr, rr->timeout_ms, err, errlen);
  if (rr->cmd) rr->sub = mw_rconn_new_sub(&addr, rr->timeout_ms, on_up, rr, err, errlen);
  if (!rr->cmd || !rr->sub) {
    r_free(rr);
    return NULL;
  }
  return rr;
}

const mw_sess_backend mw_sesredis_backend = {
    "redis", r_join, r_leave, r_publish, r_send, r_close, r_list, r_history, r_take, r_free,
};
