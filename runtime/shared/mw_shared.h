/* Shared dicts: named key-value stores every worker of the process sees
 * (mw.shared.NAME in Lua), with OpenResty's ngx.shared.DICT operations and
 * results. This header is the contract between the Lua binding
 * (lua/l_shared.c) and whatever keeps the data:
 *
 *   - an operation is a request (mw_shreq) and its outcome a result
 *     (mw_shres): plain data, so that a backend that answers later, over a
 *     network (Redis), can carry them across threads and hand the same
 *     result to the binding, which turns results into Lua values in one
 *     place whatever the backend;
 *   - a backend is a table of functions (mw_shared_backend): the
 *     in-process store (shared/mw_shdict.h), which answers at once, and
 *     Redis (shared/mw_redis.h), which answers later from a thread of its
 *     own (submit) and blocks only when asked to (exec);
 *   - the registry maps the names of the config's `shared:` section to
 *     backends. It is process-wide and outlives generations: dicts are
 *     made once from the config the server starts with, a reload may add
 *     dicts but never removes or resizes one (mw_shared_configure says
 *     what it kept), and they are freed when the process stops.
 *
 * Nothing here knows Lua or gRPC. */
#ifndef MW_SHARED_H
#define MW_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "base/mw_diag.h"

/* Value types. A list is never a request value: only a result's type,
 * when an operation met a list where it wanted a plain value. */
typedef enum mw_shtype {
  MW_SHV_NIL = 0,
  MW_SHV_BOOL,
  MW_SHV_INT,   /* Lua integers stay integers */
  MW_SHV_FLOAT, /* and floats floats */
  MW_SHV_STR,   /* binary-safe */
  MW_SHV_LIST,
} mw_shtype;

typedef struct mw_shval {
  mw_shtype type;
  union {
    int b;
    int64_t i;
    double d;
    struct {
      const char *p; /* in a request: the caller's; in a result: in buf */
      size_t len;
    } s;
  } u;
} mw_shval;

/* Keys are 1 to 65535 bytes, any bytes (OpenResty's limit). */
#define MW_SH_MAX_KEY 65535

typedef enum mw_shop {
  MW_SHOP_GET,           /* key -> val, flags */
  MW_SHOP_GET_STALE,     /* key -> val, flags, stale */
  MW_SHOP_SET,           /* key, val (nil deletes), ttl_ms, flags -> forcible */
  MW_SHOP_SAFE_SET,      /* the same, never evicting */
  MW_SHOP_ADD,           /* only when absent or expired */
  MW_SHOP_SAFE_ADD,
  MW_SHOP_REPLACE,       /* only when present */
  MW_SHOP_INCR,          /* key, val (step), init?, init_ttl_ms -> val, forcible */
  MW_SHOP_LPUSH,         /* key, val (number or string) -> n (length) */
  MW_SHOP_RPUSH,
  MW_SHOP_LPOP,          /* key -> val (nil when none) */
  MW_SHOP_RPOP,
  MW_SHOP_LLEN,          /* key -> n */
  MW_SHOP_TTL,           /* key -> n (ms left; 0: never expires) */
  MW_SHOP_EXPIRE,        /* key, ttl_ms (0: never) */
  MW_SHOP_FLUSH_ALL,     /* every item expired (get_stale still sees them) */
  MW_SHOP_FLUSH_EXPIRED, /* max (0: all) -> n (items freed) */
  MW_SHOP_KEYS,          /* max (0: all) -> n keys packed in buf */
  MW_SHOP_CAPACITY,      /* -> n (bytes) */
  MW_SHOP_FREE_SPACE,    /* -> n (bytes) */
} mw_shop;

typedef struct mw_shreq {
  mw_shop op;
  const char *key;
  size_t klen;
  mw_shval val;
  int64_t ttl_ms;      /* >= 0; 0: never expires */
  uint32_t flags;      /* the user's 32 bits, stored with the value */
  int has_init;        /* incr: init given */
  mw_shval init;       /* incr: MW_SHV_INT or MW_SHV_FLOAT */
  int64_t init_ttl_ms; /* incr: the ttl of a value init made */
  size_t max;          /* flush_expired, keys */
} mw_shreq;

/* Outcomes, with OpenResty's messages (mw_shared_strerror). */
typedef enum mw_shrc {
  MW_SH_OK = 0,
  MW_SH_NOT_FOUND,  /* "not found" */
  MW_SH_EXISTS,     /* "exists" */
  MW_SH_NO_MEMORY,  /* "no memory" */
  MW_SH_NOT_NUMBER, /* "not a number" */
  MW_SH_NOT_LIST,   /* "value not a list" */
  MW_SH_IS_LIST,    /* "value is a list" */
  MW_SH_EMPTY_KEY,  /* "empty key" */
  MW_SH_LONG_KEY,   /* "key too long" */
  MW_SH_BAD_VALUE,  /* "bad value type" */
  MW_SH_BACKEND,    /* the store failed (Redis down, slow, refusing): the
                       message is res->val, a string ("redis: timeout") */
} mw_shrc;

/* A growable byte buffer a result's string (or a key list) is copied into,
 * so that nothing points into a dict once its lock is released. Owned by
 * the caller, who frees p; a backend grows it with realloc. */
typedef struct mw_shbuf {
  char *p;
  size_t cap;
} mw_shbuf;

typedef struct mw_shres {
  mw_shrc rc;
  mw_shval val;   /* get, get_stale, incr, pops */
  uint32_t flags; /* get, get_stale */
  int stale;      /* get_stale: the value has expired */
  int forcible;   /* set, add, replace, incr: valid items were evicted */
  int64_t n;      /* lengths, ms, counts, bytes */
} mw_shres;

/* MW_SHOP_KEYS packs its keys into the buffer as a 4-byte length in host
 * order followed by the key's bytes, and a length of 0 after the last;
 * this walks them: *off starts at 0,
 * and each call gives the next key, or returns 0 after the last. */
int mw_shared_next_key(const mw_shbuf *buf, size_t *off, const char **key, size_t *len);

/* OpenResty's message for rc ("ok" for MW_SH_OK). */
const char *mw_shared_strerror(mw_shrc rc);

/* An operation answered later (submit). The caller fills done and owns
 * the record; the backend fills res and buf (the bytes res->val or a key
 * list point to; the caller frees buf.p) and then calls done, exactly
 * once, on a thread of its own. The record must live until done runs. */
typedef struct mw_shared_async mw_shared_async;
struct mw_shared_async {
  mw_shres res; /* written by the backend before done */
  mw_shbuf buf; /* grown by the backend, freed by the record's owner */
  /* Set by the caller before submit; called by the backend once, from
   * its own thread (Redis: the connection's I/O thread), when res and buf
   * hold the outcome. It must not block: the binding posts mail. */
  void (*done)(mw_shared_async *a);
};

/* A dict's implementation. exec runs one operation atomically (against
 * every other thread's operations on the same dict) and fills *res; buf
 * receives the bytes res->val or the key list point to; returns res->rc.
 * A backend over the network blocks in exec for at most its timeout; it
 * also has submit, which never blocks: it returns 0 when the operation
 * was sent (done follows), 1 when it was answered at once (res and buf
 * filled, done does not run). submit is NULL for the memory store. */
typedef struct mw_shared_backend {
  const char *kind; /* "memory", "redis" */
  /* Any thread (the binding outside handlers, tests): the outcome now. */
  mw_shrc (*exec)(void *self, const mw_shreq *req, mw_shres *res, mw_shbuf *buf);
  /* Any thread (the binding in a handler): sends req, whose bytes are
   * copied before it returns; see above for what it returns. */
  int (*submit)(void *self, const mw_shreq *req, mw_shared_async *a);
  /* The registry, at mw_shared_free: stops the backend's threads (each
   * pending record's done runs first) and frees it. */
  void (*free)(void *self);
} mw_shared_backend;

/* A named dict of the registry. Pointers to it stay valid until
 * mw_shared_free, so a Lua state may keep one for its whole life. */
typedef struct mw_shared_dict {
  const char *name;
  size_t size; /* bytes, as configured (0 for Redis) */
  double timeout_s; /* how long a handler waits for an answer (Redis's
                       timeout; 0 for the memory store, which never waits) */
  const mw_shared_backend *backend;
  void *self;
} mw_shared_dict;

/* Runs one operation on d (through its backend). */
mw_shrc mw_shared_exec(const mw_shared_dict *d, const mw_shreq *req, mw_shres *res,
                       mw_shbuf *buf);

/* What the config asks for: a dict name (a Lua identifier) and its size,
 * or a Redis URL (then size is unused) with its key prefix (NULL:
 * "NAME:") and timeout (ms; 0: 1000). */
typedef struct mw_shared_spec {
  const char *name;
  size_t size;
  const char *redis;
  const char *prefix;
  int64_t timeout_ms;
} mw_shared_spec;

/* Smallest size a dict may have: its table and a few entries must fit. */
#define MW_SHARED_MIN_SIZE (64 << 10)

/* Makes the registry's dicts from specs. The first call makes them all;
 * a later one (a reload) makes the dicts it names that do not exist yet
 * and keeps every existing one as it is: what it could not apply (a dict
 * removed from the config, or with another size or Redis URL) is added
 * to warnings.
 * Returns 0, or -1 when a dict could not be made (out of memory, a bad
 * Redis URL; the message goes to errors, may be NULL) with the dicts made
 * so far kept.
 * Thread-safe against lookups. */
int mw_shared_configure(const mw_shared_spec *specs, size_t n, mw_diag *warnings,
                        mw_diag *errors);

/* The dict called name, or NULL. */
const mw_shared_dict *mw_shared_find(const char *name);

/* The names of the dicts, in the order they were made, comma-separated
 * into out (truncated to cap); "" when there are none. */
void mw_shared_names(char *out, size_t cap);
size_t mw_shared_count(void);

/* Frees every dict; no thread may use one any more. Safe to call twice;
 * mw_shared_configure may then start again (tests). */
void mw_shared_free(void);

#endif
