/* Stream sessions: named rooms (mw.sessions.NAME in Lua) where streams join
 * topics and every publication on a topic reaches every stream joined to it,
 * on whatever worker that stream runs. This header is the contract between
 * the Lua binding (lua/l_sessions.c) and whatever keeps the rooms:
 *
 *   - a room is a backend (mw_sess_backend: a table of functions) over its
 *     own state: the in-process store (sessions/mw_sesmem.h), or Redis
 *     (sessions/mw_sesredis.h: offsets and history in Redis, fan-out
 *     through pub/sub, the local delivery through an in-process room's
 *     subscriber records and ready lists);
 *   - a publication (mw_sess_pub) is the message's bytes, encoded once by
 *     the publisher, with its offset; every queue and the history share it
 *     by reference count;
 *   - a joined stream is a subscriber (mw_sess_sub): a bounded queue of
 *     publications owned by the backend, drained on the stream's own
 *     worker. Crossing threads is this module's job only as far as lists
 *     go: the backend lists a subscriber with work on its worker's ready
 *     list (mw_sess_ready) and the worker is woken through the function
 *     the upper layer installed (mw_sessions_set_waker), which posts mail;
 *     that worker then takes its ready list (mw_sess_ready_take) and drains
 *     each subscriber (backend take) into its stream;
 *   - the registry maps the names of the config's `sessions:` section to
 *     rooms. It is process-wide and outlives generations, like the shared
 *     dicts: rooms are made once, a reload may add rooms but never changes
 *     one, and they are freed when the process stops.
 *
 * Nothing here knows Lua or gRPC. */
#ifndef MW_SESSIONS_H
#define MW_SESSIONS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mw_diag.h"

/* Workers a ready list exists for (the config allows 1 to 256). */
#define MW_SESS_MAX_WORKERS 256
/* An epoch: 16 hex digits and the NUL. */
#define MW_SESS_EPOCH_LEN 17

/* What a publication does to a subscriber whose queue is full. */
typedef enum mw_sess_policy {
  MW_SESS_BLOCK = 0,   /* the publisher waits until every queue has room */
  MW_SESS_DROP_OLDEST, /* the oldest queued publication makes room */
  MW_SESS_CLOSE,       /* the slow stream ends with RESOURCE_EXHAUSTED */
} mw_sess_policy;

/* What the config asks for (strings borrowed for the call). */
typedef struct mw_sess_spec {
  const char *name;         /* a Lua identifier */
  const char *message;      /* the full name of the publications' type */
  const char *offset_field; /* a 64-bit integer field of it stamped with each
                               publication's offset, or NULL */
  size_t history_size;      /* publications kept per topic (0: none) */
  int64_t history_ttl_ms;   /* how long one is kept (0: until pushed out) */
  size_t buffer;            /* publications queued per subscriber, >= 1 */
  mw_sess_policy policy;
  const char *redis;        /* redis://HOST:PORT/DB: the room is on Redis
                               (sessions/mw_sesredis.h); NULL: in memory */
  const char *prefix;       /* its keys' prefix, NULL: "sessions:NAME:" */
  int64_t timeout_ms;       /* the wait for Redis's answer, 0: 1s */
} mw_sess_spec;

/* One publication, shared by every queue and the history it is in. */
typedef struct mw_sess_pub {
  _Atomic unsigned refs;
  uint64_t offset;
  double at; /* mw_now() when published: the history's TTL */
  size_t len;
  char data[];
} mw_sess_pub;

/* Drops one reference; the last frees p. Any thread. */
void mw_sess_pub_unref(mw_sess_pub *p);

typedef enum mw_sess_rc {
  MW_SESS_OK = 0,
  MW_SESS_FULL,      /* "full": a queue is full under policy block */
  MW_SESS_NOT_FOUND, /* "not found": no such session */
  MW_SESS_NO_MEMORY, /* "no memory" */
  MW_SESS_BACKEND,   /* the backend's store failed: mw_sess_error() says how
                        ("redis: connection refused") */
} mw_sess_rc;

const char *mw_sess_strerror(mw_sess_rc rc);
/* Backends, on the caller's thread, before returning MW_SESS_BACKEND: the
 * message mw_sess_error gives back on that thread. */
void mw_sess_set_error(const char *msg);
/* The calling thread's last MW_SESS_BACKEND message. */
const char *mw_sess_error(void);

/* The part of a subscriber this module reads; a backend embeds it first in
 * its own record. */
typedef struct mw_sess_sub {
  _Atomic unsigned refs;  /* the joiner's, the backend's, the ready list's */
  int worker;             /* where the stream runs */
  void *owner;            /* the joiner's record; read and cleared on that
                             worker only (cleared by leave) */
  uint64_t id;            /* the session id, unique in the process */
  struct mw_sess_sub *ready_next; /* under the ready list's lock */
  int ready_listed;
  void (*destroy)(struct mw_sess_sub *s); /* the backend's, at refs 0 */
} mw_sess_sub;

void mw_sess_sub_ref(mw_sess_sub *s);
void mw_sess_sub_unref(mw_sess_sub *s);

/* Backends, with their room's lock held (lock order: room, then ready
 * list): lists s on its worker's ready list (taking a reference) unless it
 * is listed already. Returns 1 when the list was empty: the caller calls
 * mw_sess_wake(s->worker) once it has released its lock. */
int mw_sess_ready(mw_sess_sub *s);
/* Any thread, no lock held: wakes worker w through the installed waker. */
void mw_sess_wake(int w);
/* Worker w's thread: its ready subscribers, linked by ready_next, each
 * holding the reference mw_sess_ready took (the caller drops it). They
 * stay marked listed, so that a publisher on another thread cannot link
 * one into a new list (rewriting its ready_next) while the caller walks
 * the chain: the caller reads each one's ready_next, then calls
 * mw_sess_ready_unlist on it, then drains it. */
mw_sess_sub *mw_sess_ready_take(int w);
/* The taker, for each subscriber taken, after reading its ready_next and
 * before draining it: a publication from then on lists it again, so none
 * is missed between the take and the drain. */
void mw_sess_ready_unlist(mw_sess_sub *s);
/* The upper layer's wake (posts mail to worker w); installed once. */
void mw_sessions_set_waker(void (*waker)(int w));

/* A join: what the joiner gives and what it hears back. */
typedef struct mw_sess_join {
  const char *topic; /* 1 to 65535 bytes */
  size_t tlen;
  int worker;
  void *owner;
  int resume;          /* the stream resumes from (offset, epoch) */
  uint64_t offset;     /* the last offset the client saw */
  const char *epoch;   /* the epoch it saw it in */
  /* out */
  uint64_t top;        /* the topic's last offset at the join */
  char epoch_now[MW_SESS_EPOCH_LEN];
  int recovered;       /* resume: every publication after offset is queued */
  size_t replayed;     /* how many */
} mw_sess_join;

/* How a subscriber ended, when the room ended it (close, policy close). */
typedef struct mw_sess_end {
  int code;
  char msg[128];
} mw_sess_end;

/* A room's implementation. Every function is atomic against the others on
 * the same room; none calls back into the caller. */
typedef struct mw_sess_backend {
  const char *kind; /* "memory", "redis" */
  /* Joins j->topic; *out holds the joiner's reference (dropped with
   * mw_sess_sub_unref after leave). On resume, the missed publications are
   * queued before any later one. */
  mw_sess_rc (*join)(void *self, mw_sess_join *j, mw_sess_sub **out);
  /* The subscriber's worker, when its stream ends: out of its topic, its
   * queue dropped; owner cleared. Safe after the room ended it. */
  void (*leave)(void *self, mw_sess_sub *s);
  /* data (len bytes of the room's type) to every subscriber of topic, with
   * the offset it gets (stamped as field number offset_field, a varint,
   * appended: the last value of a field wins, so the bytes decode with it;
   * 0: not stamped). MW_SESS_FULL (nothing published) under policy block
   * when a queue is full; MW_SESS_BACKEND when the backend's store did not
   * take it (Redis: down, timeout), mw_sess_error() saying why. May wait
   * for that store, bounded by the room's timeout. */
  mw_sess_rc (*publish)(void *self, const char *topic, size_t tlen, const char *data,
                        size_t len, int offset_field, uint64_t *offset);
  /* data to one session (no offset, no history). */
  mw_sess_rc (*send)(void *self, uint64_t id, const char *data, size_t len);
  /* Ends session id with code and msg: its queue is dropped, its stream
   * ends with that status. */
  mw_sess_rc (*close)(void *self, uint64_t id, int code, const char *msg);
  /* The sessions joined to topic: up to max ids into ids; returns how many
   * there are. */
  size_t (*list)(void *self, const char *topic, size_t tlen, uint64_t *ids, size_t max);
  /* The history of topic after offset since, oldest first: up to max
   * publications (each with a reference for the caller) into out, *n set;
   * the topic's last offset and epoch. MW_SESS_BACKEND as publish. */
  mw_sess_rc (*history)(void *self, const char *topic, size_t tlen, uint64_t since,
                        mw_sess_pub **out, size_t max, size_t *n, uint64_t *top,
                        char epoch[MW_SESS_EPOCH_LEN]);
  /* The subscriber's worker: the next queued publication into *out (the
   * reference is the caller's) and 1; 0 when none; -1 once when the room
   * ended the session (*end filled). *freed is set when this made room in
   * a queue that was full (publishers blocked on it may retry). */
  int (*take)(void *self, mw_sess_sub *s, mw_sess_pub **out, mw_sess_end *end, int *freed);
  void (*free)(void *self);
} mw_sess_backend;

/* A room of the registry; valid until mw_sessions_free. */
typedef struct mw_sess_room {
  const char *name;
  const char *message;      /* the publications' type */
  const char *offset_field; /* or NULL */
  mw_sess_policy policy;
  size_t buffer, history_size;
  int64_t history_ttl_ms;
  const char *redis, *prefix; /* NULL in memory; the prefix as configured */
  int64_t timeout_ms;
  const mw_sess_backend *backend;
  void *self;
} mw_sess_room;

/* A new session id (process-wide, from 1). */
uint64_t mw_sess_next_id(void);

/* Makes the registry's rooms from specs (see mw_shared_configure: a reload
 * adds new rooms and keeps existing ones as they are, warning about what
 * it could not apply). A spec with redis makes a room on Redis
 * (sessions/mw_sesredis.h). Returns 0, or -1 when a room could not be made
 * (errors says why: out of memory, a bad URL). */
int mw_sessions_configure(const mw_sess_spec *specs, size_t n, mw_diag *warnings,
                          mw_diag *errors);
const mw_sess_room *mw_sessions_find(const char *name);
/* Comma-separated names, as mw_shared_names. */
void mw_sessions_names(char *out, size_t cap);
/* Frees every room; no stream may be joined any more. Safe twice. */
void mw_sessions_free(void);

#endif
