/* The Redis backend of shared dicts: see mw_redis.h for the mapping. Each
 * operation is formatted on the caller's thread into one command record,
 * handed to the connection's I/O thread, and its reply turned into the
 * contract's result there (the reply is freed when the callback returns,
 * so strings are copied into the record's buffer). */
#include "shared/mw_redis.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "shared/mw_rconn.h"

/* --- the scripts ---------------------------------------------------------- */

/* set, add, replace: ARGV = mode (s, n: only when absent, x: only when
 * present), payload, type+flags ('' for nil: the key is deleted, as the
 * memory store does), ttl ms (0: none). 1 ok, 0 exists, -1 not found. */
static const char SCRIPT_SET[] =
    "local k=KEYS[1] local m=ARGV[1] "
    "if m~='s' then local e=redis.call('EXISTS',k)==1 "
    "if m=='n' and e then return 0 end if m=='x' and not e then return -1 end end "
    "redis.call('DEL',k) if ARGV[3]=='' then return 1 end "
    "redis.call('HSET',k,'v',ARGV[2],'t',ARGV[3]) "
    "if ARGV[4]~='0' then redis.call('PEXPIRE',k,ARGV[4]) end return 1";

/* incr: ARGV = step, step type (i/f), init ('' when none), init type,
 * init ttl ms. {1, type, value} or {-1} not found, {-2} not a number.
 * The value comes back as the stored string: Lua numbers in Redis are
 * doubles, and HINCRBY's own reply would lose integers above 2^53. */
static const char SCRIPT_INCR[] =
    "local k=KEYS[1] local ty=redis.call('TYPE',k).ok "
    "if ty=='none' then if ARGV[3]=='' then return {-1} end "
    "redis.call('HSET',k,'v',ARGV[3],'t',ARGV[4]) "
    "if ARGV[5]~='0' then redis.call('PEXPIRE',k,ARGV[5]) end "
    "elseif ty~='hash' then return {-2} end "
    "local tf=redis.call('HGET',k,'t') local t=string.sub(tf,1,1) "
    "if t~='i' and t~='f' then return {-2} end "
    "if t=='i' and ARGV[2]=='i' then redis.call('HINCRBY',k,'v',ARGV[1]) "
    "return {1,'i',redis.call('HGET',k,'v')} end "
    "local v=redis.call('HINCRBYFLOAT',k,'v',ARGV[1]) "
    "if t~='f' then redis.call('HSET',k,'t','f'..string.sub(tf,2)) end return {1,'f',v}";

/* expire: ARGV = ttl ms (0: never). 1 ok, 0 not found. */
static const char SCRIPT_EXPIRE[] =
    "local k=KEYS[1] if redis.call('EXISTS',k)==0 then return 0 end "
    "if ARGV[1]=='0' then redis.call('PERSIST',k) else redis.call('PEXPIRE',k,ARGV[1]) end "
    "return 1";

/* get_keys / flush_all, one SCAN step (COUNT 1000) at a time, so that
 * Redis is never held by one long script: ARGV = MATCH pattern, how many
 * keys are still wanted (0: all), delete (1/0), cursor. {next cursor,
 * keys found} or {next cursor, how many went}. */
static const char SCRIPT_SCAN[] =
    "local r=redis.call('SCAN',ARGV[4],'MATCH',ARGV[1],'COUNT',1000) "
    "local want=tonumber(ARGV[2]) local out={} local n=0 "
    "for _,k in ipairs(r[2]) do "
    "if ARGV[3]=='1' then redis.call('UNLINK',k) n=n+1 "
    "elseif want==0 or #out<want then out[#out+1]=k end end "
    "if ARGV[3]=='1' then return {r[1],n} end return {r[1],out}";

enum { S_SET, S_INCR, S_EXPIRE, S_SCAN, S_COUNT };
static const char *const scripts[S_COUNT] = {SCRIPT_SET, SCRIPT_INCR, SCRIPT_EXPIRE,
                                             SCRIPT_SCAN};

/* SHA1 of each script, for EVALSHA (Redis names a script by it). A name,
 * not a security measure: computed here (FIPS 180-4, forty lines) because
 * shared/ sits on base/ only and OpenSSL is tls/'s alone; the spec checks
 * that Redis runs our EVALSHAs without falling back to EVAL. */
static char script_sha[S_COUNT][41];
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void sha1(const unsigned char *data, size_t len, unsigned char out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  uint64_t bits = (uint64_t)len * 8;
  size_t total = ((len + 8) / 64 + 1) * 64;
  for (size_t off = 0; off < total; off += 64) {
    unsigned char blk[64];
    for (size_t i = 0; i < 64; i++) {
      size_t at = off + i;
      if (at < len) blk[i] = data[at];
      else if (at == len) blk[i] = 0x80;
      else if (at >= total - 8) blk[i] = (unsigned char)(bits >> (8 * (total - 1 - at)));
      else blk[i] = 0;
    }
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
      w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16 |
             (uint32_t)blk[4 * i + 2] << 8 | blk[4 * i + 3];
    for (int i = 16; i < 80; i++) {
      uint32_t x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
      w[i] = x << 1 | x >> 31;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
      uint32_t f, k;
      if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
      else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
      else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      else f = b ^ c ^ d, k = 0xCA62C1D6;
      uint32_t t = (a << 5 | a >> 27) + f + e + k + w[i];
      e = d, d = c, c = b << 30 | b >> 2, b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

static void init_shas(void) {
  for (int s = 0; s < S_COUNT; s++) {
    unsigned char d[20];
    sha1((const unsigned char *)scripts[s], strlen(scripts[s]), d);
    for (int i = 0; i < 20; i++) snprintf(script_sha[s] + 2 * i, 3, "%02x", d[i]);
  }
}

/* --- the dict ------------------------------------------------------------- */

struct mw_redis {
  mw_rconn *conn;
  char *prefix;
  size_t plen;
  char *match; /* the prefix with glob characters escaped, then '*' */
  int64_t timeout_ms;
};

/* One operation on its way: the command and what its reply means. */
typedef struct rop {
  mw_rcmd cmd; /* first */
  mw_redis *r;
  mw_shop op;
  int script; /* S_* when sent as EVALSHA, else -1 */
  int evalled; /* sent again as EVAL already */
  int del;     /* a plain DEL (set to nil): an integer reply, nothing to say */
  size_t max;  /* get_keys: the most keys wanted (0: all) */
  size_t koff; /* get_keys: bytes of keys packed so far in the buffer */
  mw_shared_async *a;
} rop;

static int grow(mw_shbuf *b, size_t need) {
  if (b->cap >= need) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

/* MW_SH_BACKEND with "redis: MSG" as its message, in buf. */
static void fail(mw_shres *res, mw_shbuf *buf, const char *msg, size_t len) {
  memset(res, 0, sizeof *res);
  res->rc = MW_SH_BACKEND;
  size_t n = 7 + len;
  if (grow(buf, n + 1) != 0) {
    res->val.type = MW_SHV_STR;
    res->val.u.s.p = "redis: out of memory";
    res->val.u.s.len = strlen(res->val.u.s.p);
    return;
  }
  memcpy(buf->p, "redis: ", 7);
  memcpy(buf->p + 7, msg, len);
  buf->p[n] = '\0';
  res->val.type = MW_SHV_STR;
  res->val.u.s.p = buf->p;
  res->val.u.s.len = n;
}

static void failz(mw_shres *res, mw_shbuf *buf, const char *msg) {
  fail(res, buf, msg, strlen(msg));
}

static int is_wrongtype(const redisReply *r) {
  return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9) == 0;
}

/* A payload of type letter t into v (strings copied into buf). */
static int decode(char t, const char *p, size_t len, mw_shval *v, mw_shbuf *buf) {
  /* HINCRBYFLOAT writes floats without an exponent: 1e300 is 300 digits */
  char num[400];
  switch (t) {
  case 's':
    if (grow(buf, len + 1) != 0) return -1;
    memcpy(buf->p, p, len);
    v->type = MW_SHV_STR;
    v->u.s.p = buf->p;
    v->u.s.len = len;
    return 0;
  case 'b':
    v->type = MW_SHV_BOOL;
    v->u.b = len == 1 && p[0] == '1';
    return 0;
  case 'i':
  case 'f':
    if (len >= sizeof num) return -1;
    memcpy(num, p, len);
    num[len] = '\0';
    if (t == 'i') {
      v->type = MW_SHV_INT;
      v->u.i = strtoll(num, NULL, 10);
    } else {
      v->type = MW_SHV_FLOAT;
      v->u.d = strtod(num, NULL);
    }
    return 0;
  }
  return -1;
}

/* The contract's result of one reply (I/O thread). */
static void parse(rop *o, const redisReply *r, mw_shres *res, mw_shbuf *buf) {
  if (r->type == REDIS_REPLY_ERROR && !is_wrongtype(r)) {
    fail(res, buf, r->str, r->len);
    return;
  }
  if (o->del) return;
  switch (o->op) {
  case MW_SHOP_GET:
  case MW_SHOP_GET_STALE:
    if (is_wrongtype(r)) {
      res->rc = MW_SH_IS_LIST;
      return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) break;
    if (r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
      res->rc = MW_SH_NOT_FOUND;
      return;
    }
    {
      const redisReply *t = r->element[1], *v = r->element[0];
      if (t->len < 1 || decode(t->str[0], v->str, v->len, &res->val, buf) != 0) break;
      res->flags = (uint32_t)strtoul(t->str + 1, NULL, 10);
    }
    return;
  case MW_SHOP_SET:
  case MW_SHOP_SAFE_SET:
  case MW_SHOP_ADD:
  case MW_SHOP_SAFE_ADD:
  case MW_SHOP_REPLACE:
    if (r->type != REDIS_REPLY_INTEGER) break;
    res->rc = r->integer == 1 ? MW_SH_OK : r->integer == 0 ? MW_SH_EXISTS : MW_SH_NOT_FOUND;
    return;
  case MW_SHOP_INCR:
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
      break;
    if (r->element[0]->integer == -1) {
      res->rc = MW_SH_NOT_FOUND;
      return;
    }
    if (r->element[0]->integer != 1) {
      res->rc = MW_SH_NOT_NUMBER;
      return;
    }
    if (r->elements != 3 || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_STRING ||
        decode(r->element[1]->str[0], r->element[2]->str, r->element[2]->len, &res->val, buf) != 0)
      break;
    return;
  case MW_SHOP_LPUSH:
  case MW_SHOP_RPUSH:
  case MW_SHOP_LLEN:
    if (is_wrongtype(r)) {
      res->rc = MW_SH_NOT_LIST;
      return;
    }
    if (r->type != REDIS_REPLY_INTEGER) break;
    res->n = r->integer;
    return;
  case MW_SHOP_LPOP:
  case MW_SHOP_RPOP:
    if (is_wrongtype(r)) {
      res->rc = MW_SH_NOT_LIST;
      return;
    }
    if (r->type == REDIS_REPLY_NIL) {
      res->rc = MW_SH_NOT_FOUND;
      return;
    }
    if (r->type != REDIS_REPLY_STRING || r->len < 1 ||
        decode(r->str[0], r->str + 1, r->len - 1, &res->val, buf) != 0)
      break;
    return;
  case MW_SHOP_TTL:
    if (r->type != REDIS_REPLY_INTEGER) break;
    if (r->integer == -2) res->rc = MW_SH_NOT_FOUND;
    else res->n = r->integer < 0 ? 0 : r->integer;
    return;
  case MW_SHOP_EXPIRE:
    if (r->type != REDIS_REPLY_INTEGER) break;
    if (r->integer == 0) res->rc = MW_SH_NOT_FOUND;
    return;
  case MW_SHOP_FLUSH_ALL:
  case MW_SHOP_KEYS: /* one step's: what it found is added to the result */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) break;
    if (o->op == MW_SHOP_FLUSH_ALL) {
      if (r->element[1]->type != REDIS_REPLY_INTEGER) break;
      res->n += r->element[1]->integer;
      return;
    }
    if (r->element[1]->type != REDIS_REPLY_ARRAY) break;
    {
      const redisReply *ks = r->element[1];
      size_t plen = o->r->plen;
      for (size_t i = 0; i < ks->elements; i++) {
        const redisReply *k = ks->element[i];
        if (k->type != REDIS_REPLY_STRING || k->len <= plen) continue;
        if (o->max && (size_t)res->n >= o->max) break;
        uint32_t kl = (uint32_t)(k->len - plen);
        if (grow(buf, o->koff + 2 * sizeof kl + kl) != 0) {
          failz(res, buf, "out of memory");
          return;
        }
        memcpy(buf->p + o->koff, &kl, sizeof kl);
        memcpy(buf->p + o->koff + sizeof kl, k->str + plen, kl);
        o->koff += sizeof kl + kl;
        res->n++;
      }
      uint32_t zero = 0;
      if (grow(buf, o->koff + sizeof zero) != 0) {
        failz(res, buf, "out of memory");
        return;
      }
      memcpy(buf->p + o->koff, &zero, sizeof zero);
    }
    return;
  case MW_SHOP_CAPACITY:
  case MW_SHOP_FREE_SPACE: {
    if (r->type != REDIS_REPLY_STRING) break;
    const char *mm = strstr(r->str, "\nmaxmemory:"), *um = strstr(r->str, "used_memory:");
    long long max = mm ? strtoll(mm + 11, NULL, 10) : 0;
    long long used = um ? strtoll(um + 12, NULL, 10) : 0;
    if (o->op == MW_SHOP_CAPACITY) res->n = max;
    else res->n = max > used ? max - used : 0;
    return;
  }
  case MW_SHOP_FLUSH_EXPIRED:
    return;
  }
  failz(res, buf, "unexpected reply");
}

static void rop_free(rop *o) {
  free(o->cmd.cmd);
  free(o);
}

/* EVALSHA -> EVAL with the script's text: the arguments after the SHA are
 * the same bytes, so the command is rebuilt around them. */
static int to_eval(rop *o) {
  const char *s = scripts[o->script];
  const char *p = o->cmd.cmd;
  const char *argc_end = strstr(p, "\r\n");
  /* "*N\r\n$7\r\nEVALSHA\r\n$40\r\n<sha>\r\n" then the rest */
  size_t head = (size_t)(argc_end + 2 - p);
  size_t skip = head + strlen("$7\r\nEVALSHA\r\n$40\r\n") + 40 + 2;
  if (skip > o->cmd.len) return -1;
  char lenbuf[32];
  int ln = snprintf(lenbuf, sizeof lenbuf, "$%zu\r\n", strlen(s));
  size_t n = head + strlen("$4\r\nEVAL\r\n") + (size_t)ln + strlen(s) + 2 + (o->cmd.len - skip);
  char *q = malloc(n);
  if (!q) return -1;
  size_t off = 0;
  memcpy(q, p, head);
  off = head;
  memcpy(q + off, "$4\r\nEVAL\r\n", 10);
  off += 10;
  memcpy(q + off, lenbuf, (size_t)ln);
  off += (size_t)ln;
  memcpy(q + off, s, strlen(s));
  off += strlen(s);
  memcpy(q + off, "\r\n", 2);
  off += 2;
  memcpy(q + off, p + skip, o->cmd.len - skip);
  free(o->cmd.cmd);
  o->cmd.cmd = q;
  o->cmd.len = n;
  return 0;
}

static int format_scan(rop *o, const char *cursor, size_t clen, size_t found);

static void on_reply(mw_rcmd *c, redisReply *r, const char *err) {
  rop *o = (rop *)c;
  mw_shared_async *a = o->a;
  if (!r) {
    failz(&a->res, &a->buf, err);
  } else if (r->type == REDIS_REPLY_ERROR && o->script >= 0 && !o->evalled &&
             strncmp(r->str, "NOSCRIPT", 8) == 0 && to_eval(o) == 0) {
    /* Redis lost its script cache (a restart, SCRIPT FLUSH): once as
     * EVAL, which loads the script for the EVALSHAs that follow. */
    o->evalled = 1;
    mw_rconn_resend(o->r->conn, &o->cmd);
    return;
  } else {
    parse(o, r, &a->res, &a->buf);
    /* get_keys, flush_all: the next SCAN step, until the cursor is back at
     * 0 or get_keys has its keys */
    if ((o->op == MW_SHOP_KEYS || o->op == MW_SHOP_FLUSH_ALL) && a->res.rc == MW_SH_OK &&
        r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING &&
        !(r->element[0]->len == 1 && r->element[0]->str[0] == '0') &&
        !(o->max && (size_t)a->res.n >= o->max)) {
      if (format_scan(o, r->element[0]->str, r->element[0]->len, (size_t)a->res.n) == 0) {
        mw_rconn_resend(o->r->conn, &o->cmd);
        return;
      }
      failz(&a->res, &a->buf, "out of memory");
    }
  }
  rop_free(o);
  a->done(a);
}

/* --- formatting --------------------------------------------------------- */

#define MAX_ARGS 10

typedef struct args {
  int n;
  const char *v[MAX_ARGS];
  size_t len[MAX_ARGS];
  char num[MAX_ARGS][48]; /* numbers formatted in place */
} args;

static void arg(args *a, const char *p, size_t len) {
  a->v[a->n] = p;
  a->len[a->n++] = len;
}
static void argz(args *a, const char *s) { arg(a, s, strlen(s)); }
static void argf(args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argf(args *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(a->num[a->n], sizeof a->num[0], fmt, ap);
  va_end(ap);
  arg(a, a->num[a->n], (size_t)(n < 0 ? 0 : n));
}

/* A number's payload: integers in decimal, floats exactly (%.17g). */
static void argnum(args *a, const mw_shval *v) {
  if (v->type == MW_SHV_INT) argf(a, "%" PRId64, v->u.i);
  else argf(a, "%.17g", v->u.d);
}

/* The type letter of a plain value. */
static char letter(const mw_shval *v) {
  switch (v->type) {
  case MW_SHV_BOOL: return 'b';
  case MW_SHV_INT: return 'i';
  case MW_SHV_FLOAT: return 'f';
  default: return 's';
  }
}

static void argscript(args *a, int s) {
  pthread_once(&sha_once, init_shas);
  argz(a, "EVALSHA");
  arg(a, script_sha[s], 40);
  argz(a, "1");
}

/* One SCAN step of get_keys or flush_all from cursor into o's command;
 * found: how many keys get_keys has so far. Any thread (the I/O thread
 * formats the steps after the first). Returns 0, or -1 when out of memory. */
static int format_scan(rop *o, const char *cursor, size_t clen, size_t found) {
  args a = {0};
  argscript(&a, S_SCAN);
  o->script = S_SCAN;
  o->evalled = 0;
  arg(&a, "", 0); /* KEYS[1]: unused, the script reads what SCAN finds */
  argz(&a, o->r->match);
  argf(&a, "%zu", o->max ? o->max - found : 0);
  argz(&a, o->op == MW_SHOP_FLUSH_ALL ? "1" : "0");
  arg(&a, cursor, clen);
  free(o->cmd.cmd);
  o->cmd.cmd = NULL;
  int n = redisFormatCommandArgv(&o->cmd.cmd, a.n, a.v, a.len);
  if (n < 0) return -1;
  o->cmd.len = (size_t)n;
  return 0;
}

/* The command of rq into o (the key is prefixed in a scratch block that
 * only lives for the formatting). Returns 0, 1 when answered at once
 * (res/buf filled), -1 when out of memory. */
static int format(mw_redis *r, const mw_shreq *rq, rop *o, mw_shres *res, mw_shbuf *buf) {
  args a = {0};
  char *key = NULL;
  size_t klen = 0;
  o->script = -1;
  memset(res, 0, sizeof *res);
  if (rq->op == MW_SHOP_FLUSH_EXPIRED) return 1; /* Redis frees expired keys itself */
  if (rq->op != MW_SHOP_FLUSH_ALL && rq->op != MW_SHOP_KEYS && rq->op != MW_SHOP_CAPACITY &&
      rq->op != MW_SHOP_FREE_SPACE) {
    klen = r->plen + rq->klen;
    key = malloc(klen ? klen : 1);
    if (!key) return -1;
    memcpy(key, r->prefix, r->plen);
    memcpy(key + r->plen, rq->key, rq->klen);
  }
  char tf[16];
  char *elem = NULL;
  switch (rq->op) {
  case MW_SHOP_GET:
  case MW_SHOP_GET_STALE:
    argz(&a, "HMGET");
    arg(&a, key, klen);
    argz(&a, "v");
    argz(&a, "t");
    break;
  case MW_SHOP_SET:
  case MW_SHOP_SAFE_SET:
  case MW_SHOP_ADD:
  case MW_SHOP_SAFE_ADD:
  case MW_SHOP_REPLACE:
    if (rq->val.type == MW_SHV_NIL && (rq->op == MW_SHOP_SET || rq->op == MW_SHOP_SAFE_SET)) {
      argz(&a, "DEL");
      arg(&a, key, klen);
      o->del = 1;
      break;
    }
    argscript(&a, S_SET);
    o->script = S_SET;
    arg(&a, key, klen);
    argz(&a, rq->op == MW_SHOP_ADD || rq->op == MW_SHOP_SAFE_ADD ? "n"
             : rq->op == MW_SHOP_REPLACE                          ? "x"
                                                                  : "s");
    if (rq->val.type == MW_SHV_STR) arg(&a, rq->val.u.s.p, rq->val.u.s.len);
    else if (rq->val.type == MW_SHV_BOOL) argz(&a, rq->val.u.b ? "1" : "0");
    else if (rq->val.type == MW_SHV_NIL) argz(&a, "");
    else argnum(&a, &rq->val);
    if (rq->val.type == MW_SHV_NIL) tf[0] = '\0';
    else if (rq->flags) snprintf(tf, sizeof tf, "%c%" PRIu32, letter(&rq->val), rq->flags);
    else snprintf(tf, sizeof tf, "%c", letter(&rq->val));
    argz(&a, tf);
    argf(&a, "%" PRId64, rq->ttl_ms);
    break;
  case MW_SHOP_INCR:
    argscript(&a, S_INCR);
    o->script = S_INCR;
    arg(&a, key, klen);
    argnum(&a, &rq->val);
    argz(&a, rq->val.type == MW_SHV_INT ? "i" : "f");
    if (rq->has_init) argnum(&a, &rq->init);
    else argz(&a, "");
    argz(&a, rq->has_init && rq->init.type == MW_SHV_INT ? "i" : "f");
    argf(&a, "%" PRId64, rq->has_init ? rq->init_ttl_ms : 0);
    break;
  case MW_SHOP_LPUSH:
  case MW_SHOP_RPUSH: {
    argz(&a, rq->op == MW_SHOP_LPUSH ? "LPUSH" : "RPUSH");
    arg(&a, key, klen);
    char n[48];
    const char *p;
    size_t len;
    if (rq->val.type == MW_SHV_STR) {
      p = rq->val.u.s.p;
      len = rq->val.u.s.len;
    } else {
      len = (size_t)(rq->val.type == MW_SHV_INT ? snprintf(n, sizeof n, "%" PRId64, rq->val.u.i)
                                                : snprintf(n, sizeof n, "%.17g", rq->val.u.d));
      p = n;
    }
    elem = malloc(len + 1);
    if (!elem) {
      free(key);
      return -1;
    }
    elem[0] = letter(&rq->val);
    memcpy(elem + 1, p, len);
    arg(&a, elem, len + 1);
    break;
  }
  case MW_SHOP_LPOP: argz(&a, "LPOP"); arg(&a, key, klen); break;
  case MW_SHOP_RPOP: argz(&a, "RPOP"); arg(&a, key, klen); break;
  case MW_SHOP_LLEN: argz(&a, "LLEN"); arg(&a, key, klen); break;
  case MW_SHOP_TTL: argz(&a, "PTTL"); arg(&a, key, klen); break;
  case MW_SHOP_EXPIRE:
    argscript(&a, S_EXPIRE);
    o->script = S_EXPIRE;
    arg(&a, key, klen);
    argf(&a, "%" PRId64, rq->ttl_ms);
    break;
  case MW_SHOP_FLUSH_ALL:
  case MW_SHOP_KEYS:
    o->max = rq->op == MW_SHOP_KEYS ? rq->max : 0;
    free(key);
    return format_scan(o, "0", 1, 0) == 0 ? 0 : -1;
  case MW_SHOP_CAPACITY:
  case MW_SHOP_FREE_SPACE:
    argz(&a, "INFO");
    argz(&a, "memory");
    break;
  case MW_SHOP_FLUSH_EXPIRED: break;
  }
  int n = redisFormatCommandArgv(&o->cmd.cmd, a.n, a.v, a.len);
  free(key);
  free(elem);
  if (n < 0) return -1;
  o->cmd.len = (size_t)n;
  return 0;
}

/* --- the backend table -------------------------------------------------- */

static int backend_submit(void *self, const mw_shreq *rq, mw_shared_async *as) {
  mw_redis *r = self;
  rop *o = calloc(1, sizeof *o);
  if (!o) {
    failz(&as->res, &as->buf, "out of memory");
    return 1;
  }
  o->r = r;
  o->op = rq->op;
  o->a = as;
  o->cmd.on_reply = on_reply;
  int rc = format(r, rq, o, &as->res, &as->buf);
  if (rc != 0) {
    if (rc < 0) failz(&as->res, &as->buf, "out of memory");
    rop_free(o);
    return 1;
  }
  mw_rconn_submit(r->conn, &o->cmd);
  return 0;
}

/* A blocking operation: the answer, or "timeout" after timeout_ms. The
 * record is shared with the I/O thread, the last of the two frees it. */
typedef struct sync_wait {
  mw_shared_async a; /* first */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int answered;
  _Atomic int refs;
} sync_wait;

static void sync_unref(sync_wait *w) {
  if (atomic_fetch_sub(&w->refs, 1) != 1) return;
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->lock);
  free(w->a.buf.p);
  free(w);
}

static void sync_done(mw_shared_async *a) {
  sync_wait *w = (sync_wait *)a;
  pthread_mutex_lock(&w->lock);
  w->answered = 1;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  sync_unref(w);
}

static mw_shrc backend_exec(void *self, const mw_shreq *rq, mw_shres *res, mw_shbuf *buf) {
  mw_redis *r = self;
  sync_wait *w = calloc(1, sizeof *w);
  if (!w) {
    failz(res, buf, "out of memory");
    return res->rc;
  }
  pthread_mutex_init(&w->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cond, &ca);
  pthread_condattr_destroy(&ca);
  w->a.done = sync_done;
  atomic_store(&w->refs, 2);
  if (backend_submit(r, rq, &w->a) == 1) {
    atomic_store(&w->refs, 1);
    w->answered = 1;
  }
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += r->timeout_ms / 1000;
  until.tv_nsec += (r->timeout_ms % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&w->lock);
  while (!w->answered)
    if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT) break;
  int answered = w->answered;
  pthread_mutex_unlock(&w->lock);
  if (answered) {
    /* the result points into w's buffer: the buffers change hands */
    *res = w->a.res;
    mw_shbuf mine = *buf;
    *buf = w->a.buf;
    w->a.buf = mine;
  } else {
    failz(res, buf, "timeout");
  }
  sync_unref(w);
  return res->rc;
}

static void backend_free(void *self) { mw_redis_free(self); }

const mw_shared_backend mw_redis_backend = {"redis", backend_exec, backend_submit, backend_free};

mw_redis *mw_redis_new(const char *url, const char *prefix, int64_t timeout_ms, char *err,
                       size_t errlen) {
  mw_rconn_addr addr;
  if (mw_rconn_parse_url(url, &addr, err, errlen) != 0) return NULL;
  mw_redis *r = calloc(1, sizeof *r);
  if (!r) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  r->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
  r->plen = strlen(prefix);
  r->prefix = strdup(prefix);
  r->match = malloc(2 * r->plen + 2);
  if (!r->prefix || !r->match) {
    snprintf(err, errlen, "out of memory");
    mw_redis_free(r);
    return NULL;
  }
  size_t m = 0;
  for (size_t i = 0; i < r->plen; i++) {
    if (strchr("*?[]\\", prefix[i])) r->match[m++] = '\\';
    r->match[m++] = prefix[i];
  }
  r->match[m++] = '*';
  r->match[m] = '\0';
  r->conn = mw_rconn_new(&addr, r->timeout_ms, err, errlen);
  if (!r->conn) {
    mw_redis_free(r);
    return NULL;
  }
  return r;
}

void mw_redis_free(mw_redis *r) {
  if (!r) return;
  mw_rconn_free(r->conn);
  r->conn = NULL;
  free(r->prefix);
  free(r->match);
  free(r);
}
