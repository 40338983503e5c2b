/* Notices (see mw_notice.h). */
#include "lua/mw_notice.h"

#include <stdlib.h>

#include <lauxlib.h>

#include "core/mw_post.h"

/* A worker's waiters on one notice. The list is touched only on that
 * worker's thread; `waiting` and `queued` are what other threads read. */
struct mw_notice_worker {
  mw_mail mail;          /* "the version moved": wakes this worker's waiters */
  _Atomic int queued;    /* the mail is posted and has not run yet */
  _Atomic int waiting;   /* waiters in the list */
  mw_notice *notice;
  mw_lcall *head;        /* waiters, linked through notice_next/prev */
};

unsigned long mw_notice_version(mw_notice *n) { return atomic_load(&n->version); }

static void unlink_waiter(mw_notice_worker *nw, mw_lcall *h) {
  if (h->notice_prev) h->notice_prev->notice_next = h->notice_next;
  else nw->head = h->notice_next;
  if (h->notice_next) h->notice_next->notice_prev = h->notice_prev;
  h->notice_next = h->notice_prev = NULL;
  h->notice_on = NULL;
  atomic_fetch_sub(&nw->waiting, 1);
}

static void on_fire(mw_call_timer *t) {
  mw_lcall *h = (mw_lcall *)((char *)t - offsetof(mw_lcall, timer));
  mw_co_wake(h, MW_WAKE_OK, 0);
}

/* On the worker's thread: every waiter that saw an older version is moved
 * from the list to a zero-second timer, which resumes it as a call event. */
static void on_mail(mw_mail *m) {
  mw_notice_worker *nw = (mw_notice_worker *)m;
  atomic_store(&nw->queued, 0);
  unsigned long v = atomic_load(&nw->notice->version);
  mw_lcall *next;
  for (mw_lcall *h = nw->head; h; h = next) {
    next = h->notice_next;
    if (h->notice_seen == v) continue;
    unlink_waiter(nw, h);
    h->timer.fn = on_fire;
    if (mw_call_timer_start(h->call, &h->timer, 0) != 0) {
      /* No memory for the timer: the waiter stays and retries at the next
       * bump rather than being lost. */
      h->notice_on = nw;
      h->notice_next = nw->head;
      if (nw->head) nw->head->notice_prev = h;
      nw->head = h;
      atomic_fetch_add(&nw->waiting, 1);
    }
  }
}

void mw_notice_bump(mw_notice *n) {
  atomic_fetch_add(&n->version, 1);
  mw_notice_worker *ws = atomic_load(&n->workers);
  if (!ws) return;
  /* Paired with the waiter's order (count itself, then read the version):
   * either it sees the new version or this sees it waiting. */
  for (int i = 0; i < n->n_workers; i++) {
    mw_notice_worker *nw = &ws[i];
    if (atomic_load(&nw->waiting) == 0 || atomic_exchange(&nw->queued, 1)) continue;
    if (mw_post(i, &nw->mail) != 0) atomic_store(&nw->queued, 0);
  }
}

static mw_notice_worker *workers_of(mw_notice *n) {
  mw_notice_worker *ws = atomic_load(&n->workers);
  if (ws) return ws;
  pthread_mutex_lock(&n->lock);
  ws = atomic_load(&n->workers);
  int count = mw_post_workers();
  if (!ws && count > 0 && (ws = calloc((size_t)count, sizeof *ws))) {
    for (int i = 0; i < count; i++) {
      ws[i].mail.fn = on_mail;
      ws[i].notice = n;
    }
    n->n_workers = count;
    atomic_store(&n->workers, ws);
  }
  pthread_mutex_unlock(&n->lock);
  return ws;
}

static int notice_cancel(mw_lcall *h, int ending) {
  if (h->notice_on) unlink_waiter(h->notice_on, h);
  mw_call_timer_cancel(&h->timer);
  return 1;
}

static const mw_wait_ops notice_wait_ops = {"a notice", notice_cancel};

int mw_notice_wait(lua_State *L, mw_notice *n, unsigned long seen, const char *what) {
  mw_lcall *h = mw_co_check(L, NULL, what);
  if (atomic_load(&n->version) != seen) return 0;
  mw_notice_worker *ws = workers_of(n);
  int w = mw_call_worker_id(h->call);
  if (!ws || w >= n->n_workers) return luaL_error(L, "%s: no server is running", what);
  mw_notice_worker *nw = &ws[w];
  h->notice_seen = seen;
  h->notice_on = nw;
  h->notice_prev = NULL;
  h->notice_next = nw->head;
  if (nw->head) nw->head->notice_prev = h;
  nw->head = h;
  atomic_fetch_add(&nw->waiting, 1);
  if (atomic_load(&n->version) != seen) {
    /* Bumped while this joined: the bump may not have seen it. */
    unlink_waiter(nw, h);
    return 0;
  }
  return mw_co_wait(L, h, &notice_wait_ops);
}

void mw_notice_free(mw_notice *n) {
  mw_notice_worker *ws = atomic_exchange(&n->workers, NULL);
  free(ws);
  n->n_workers = 0;
}
