/* Notices: a process-wide change counter that any thread bumps, and
 * handlers on any worker that wait for it to move. A waiting handler is
 * woken on its own worker: a bump posts one mail (core/mw_post.h) to each
 * worker that has waiters, and that worker wakes them through a zero-second
 * call timer, so the handler resumes as if from any other event.
 *
 * The health board (lua/mw_health.h) has one; shared state will have more.
 * A notice is a static object (MW_NOTICE_INIT) living as long as the
 * process; the per-worker part is made at the first wait and freed by
 * mw_notice_free once no worker runs. */
#ifndef MW_NOTICE_H
#define MW_NOTICE_H

#include <pthread.h>
#include <stdatomic.h>

#include <lua.h>

#include "lua/mw_co.h"

typedef struct mw_notice_worker mw_notice_worker;

typedef struct mw_notice {
  _Atomic unsigned long version;
  pthread_mutex_t lock;               /* guards making `workers` */
  _Atomic(mw_notice_worker *) workers; /* one per worker (owned), or NULL */
  int n_workers;
} mw_notice;

#define MW_NOTICE_INIT {0, PTHREAD_MUTEX_INITIALIZER, NULL, 0}

/* The current version. */
unsigned long mw_notice_version(mw_notice *n);
/* Any thread: the version moves on and every waiter is woken. */
void mw_notice_bump(mw_notice *n);
/* In a handler (L is its coroutine): yields until the version differs from
 * seen (at once when it already does); the wait returns nothing. Raises the
 * cancelled error when the call is cancelled meanwhile. Use as `return
 * mw_notice_wait(...)`. */
int mw_notice_wait(lua_State *L, mw_notice *n, unsigned long seen, const char *what);
/* Frees the per-worker part; only when no server runs. Safe twice. */
void mw_notice_free(mw_notice *n);

#endif
