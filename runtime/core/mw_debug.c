/* /debug/calls (mw_debug.h). The request is shared by the asking thread
 * and every worker it was posted to, and reference counted: a worker that
 * answers after the asker gave up still has a record to write to and
 * frees it if it is the last. */
#include "core/mw_debug.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mw_core_internal.h"
#include "core/mw_post.h"
#include "base/mw_buf.h"

typedef struct dbg_req dbg_req;

typedef struct dbg_mail {
  mw_mail mail; /* first */
  dbg_req *req;
  int worker;
  int answered;
  mw_buf out;  /* the worker's calls, owned by the request */
} dbg_mail;

struct dbg_req {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  int refs;     /* asker + posted mails not yet run; under mu */
  int pending;  /* answers still expected */
  int n;
  dbg_mail *mails; /* n of them, owned */
};

static void req_unref_locked(dbg_req *r) {
  if (--r->refs > 0) {
    pthread_mutex_unlock(&r->mu);
    return;
  }
  pthread_mutex_unlock(&r->mu);
  for (int i = 0; i < r->n; i++) mw_buf_free(&r->mails[i].out);
  free(r->mails);
  pthread_cond_destroy(&r->cond);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

/* On worker dm->worker's thread. */
static void on_debug_mail(mw_mail *m) {
  dbg_mail *dm = (dbg_mail *)m;
  mw_buf b = {0};
  mw_worker *w = mw_worker_self();
  if (w) mw_worker_debug_calls(w, &b);
  dbg_req *r = dm->req;
  pthread_mutex_lock(&r->mu);
  dm->out = b;
  dm->answered = 1;
  r->pending--;
  pthread_cond_broadcast(&r->cond);
  req_unref_locked(r);
}

char *mw_debug_calls(double timeout_s, size_t *len) {
  int n = mw_post_workers();
  dbg_req *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->mails = calloc((size_t)(n > 0 ? n : 1), sizeof *r->mails);
  if (!r->mails) {
    free(r);
    return NULL;
  }
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cond, NULL);
  r->n = n;
  r->refs = 1;
  pthread_mutex_lock(&r->mu);
  for (int i = 0; i < n; i++) {
    dbg_mail *dm = &r->mails[i];
    dm->mail.fn = on_debug_mail;
    dm->req = r;
    dm->worker = i;
    r->refs++;
    r->pending++;
    if (mw_post(i, &dm->mail) != 0) {
      r->refs--;
      r->pending--;
    }
  }
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  long ns = (long)(timeout_s * 1e9);
  until.tv_sec += ns / 1000000000L;
  until.tv_nsec += ns % 1000000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  while (r->pending > 0)
    if (pthread_cond_timedwait(&r->cond, &r->mu, &until) == ETIMEDOUT) break;
  /* Still under the lock: late answers wait, then find nobody reading. */
  mw_buf out = {0};
  mw_buf_puts(&out, "{\"calls\":[");
  int first = 1;
  for (int i = 0; i < n; i++) {
    dbg_mail *dm = &r->mails[i];
    if (!dm->answered || dm->out.len == 0) continue;
    if (!first) mw_buf_puts(&out, ",");
    first = 0;
    mw_buf_put(&out, dm->out.p, dm->out.len);
  }
  mw_buf_puts(&out, "],\"workers\":[");
  for (int i = 0; i < n; i++)
    mw_buf_printf(&out, "%s{\"worker\":%d,\"answered\":%s}", i ? "," : "", i,
                   r->mails[i].answered ? "true" : "false");
  mw_buf_puts(&out, "]}\n");
  req_unref_locked(r);
  return mw_buf_take(&out, len);
}
