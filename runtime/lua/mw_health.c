/* The health board (see mw_health.h). A few dozen names at most: arrays
 * under one lock, searched linearly. */
#include "lua/mw_health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_strvec.h"

typedef struct explicit_status {
  char *name; /* owned */
  size_t len;
  int status;
} explicit_status;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static mw_strvec served;           /* owned names, under lock */
static explicit_status *statuses;  /* owned array, under lock */
static size_t n_statuses, cap_statuses;
static _Atomic int draining;
static mw_notice notice = MW_NOTICE_INIT;

mw_notice *mw_health_notice(void) { return &notice; }

int mw_health_set_served(const char *const *names, size_t n) {
  mw_strvec next = {0};
  for (size_t i = 0; i < n; i++) {
    if (mw_strvec_push(&next, names[i]) != 0) {
      mw_strvec_free(&next);
      return -1;
    }
  }
  pthread_mutex_lock(&lock);
  mw_strvec old = served;
  served = next;
  pthread_mutex_unlock(&lock);
  mw_strvec_free(&old);
  mw_notice_bump(&notice);
  return 0;
}

static long find(const char *name, size_t len) {
  for (size_t i = 0; i < n_statuses; i++)
    if (statuses[i].len == len && memcmp(statuses[i].name, name, len) == 0) return (long)i;
  return -1;
}

int mw_health_set(const char *name, size_t len, int status) {
  int rc = 0, changed = 1;
  pthread_mutex_lock(&lock);
  long at = find(name, len);
  if (status < 0) {
    if (at >= 0) {
      free(statuses[at].name);
      statuses[at] = statuses[--n_statuses];
    } else {
      changed = 0;
    }
  } else if (at >= 0) {
    changed = statuses[at].status != status;
    statuses[at].status = status;
  } else {
    if (n_statuses == cap_statuses) {
      size_t cap = cap_statuses ? cap_statuses * 2 : 8;
      explicit_status *v = realloc(statuses, cap * sizeof *v);
      if (v) statuses = v, cap_statuses = cap;
    }
    char *copy = n_statuses < cap_statuses ? malloc(len + 1) : NULL;
    if (copy) {
      memcpy(copy, name, len);
      copy[len] = 0;
      statuses[n_statuses++] = (explicit_status){copy, len, status};
    } else {
      rc = -1;
      changed = 0;
    }
  }
  pthread_mutex_unlock(&lock);
  /* Watchers are woken only by a real change, so that setting the same
   * status again sends nothing. */
  if (changed) mw_notice_bump(&notice);
  return rc;
}

void mw_health_lookup(const char *name, size_t len, mw_health_entry *out) {
  pthread_mutex_lock(&lock);
  /* Read before the state it describes: a change after this bumps it, so a
   * waiter on this version cannot miss that change. */
  out->version = mw_notice_version(&notice);
  long at = find(name, len);
  out->explicit_status = at >= 0 ? statuses[at].status : -1;
  out->served = 0;
  for (size_t i = 0; i < served.n && !out->served; i++)
    out->served = strlen(served.v[i]) == len && memcmp(served.v[i], name, len) == 0;
  pthread_mutex_unlock(&lock);
  out->draining = atomic_load(&draining);
}

void mw_health_drain(int stage) {
  int was = atomic_load(&draining);
  while (was < stage && !atomic_compare_exchange_weak(&draining, &was, stage)) {
  }
  if (was < stage) mw_notice_bump(&notice);
}

int mw_health_draining(void) { return atomic_load(&draining); }

void mw_health_free(void) {
  pthread_mutex_lock(&lock);
  mw_strvec_free(&served);
  for (size_t i = 0; i < n_statuses; i++) free(statuses[i].name);
  free(statuses);
  statuses = NULL;
  n_statuses = cap_statuses = 0;
  pthread_mutex_unlock(&lock);
  atomic_store(&draining, 0);
  mw_notice_free(&notice);
}
