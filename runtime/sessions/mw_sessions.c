/* Stream sessions: the registry of rooms, publications and subscribers'
 * references, and the per-worker ready lists (see mw_sessions.h). */
#include "sessions/mw_sessions.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sessions/mw_sesmem.h"
#include "sessions/mw_sesredis.h"

void mw_sess_pub_unref(mw_sess_pub *p) {
  if (p && atomic_fetch_sub(&p->refs, 1) == 1) free(p);
}

void mw_sess_sub_ref(mw_sess_sub *s) { atomic_fetch_add(&s->refs, 1); }

void mw_sess_sub_unref(mw_sess_sub *s) {
  if (s && atomic_fetch_sub(&s->refs, 1) == 1) s->destroy(s);
}

const char *mw_sess_strerror(mw_sess_rc rc) {
  switch (rc) {
  case MW_SESS_OK: return "ok";
  case MW_SESS_FULL: return "full";
  case MW_SESS_NOT_FOUND: return "not found";
  case MW_SESS_NO_MEMORY: return "no memory";
  case MW_SESS_BACKEND: return mw_sess_error();
  }
  return "unknown";
}

/* Per thread: a backend fails on its caller's thread and the caller reads
 * the reason right after. */
static _Thread_local char tl_error[192];

void mw_sess_set_error(const char *msg) {
  snprintf(tl_error, sizeof tl_error, "%s", msg ? msg : "");
}

const char *mw_sess_error(void) { return tl_error[0] ? tl_error : "backend error"; }

static _Atomic uint64_t g_next_id;
uint64_t mw_sess_next_id(void) { return atomic_fetch_add(&g_next_id, 1) + 1; }

/* --- ready lists ----------------------------------------------------------------- */

/* One per worker: the subscribers with publications to take (or an end to
 * report), in the order they became ready. Static: a publisher on any
 * thread may reach any worker's list while the process lives. */
static struct ready_list {
  pthread_mutex_t lock;
  mw_sess_sub *head, *tail;
} g_ready[MW_SESS_MAX_WORKERS];
static pthread_once_t g_ready_once = PTHREAD_ONCE_INIT;
static void (*_Atomic g_waker)(int w);

static void ready_init(void) {
  for (int i = 0; i < MW_SESS_MAX_WORKERS; i++) pthread_mutex_init(&g_ready[i].lock, NULL);
}

int mw_sess_ready(mw_sess_sub *s) {
  pthread_once(&g_ready_once, ready_init);
  if (s->worker < 0 || s->worker >= MW_SESS_MAX_WORKERS) return 0;
  struct ready_list *r = &g_ready[s->worker];
  pthread_mutex_lock(&r->lock);
  int was_empty = 0;
  if (!s->ready_listed) {
    s->ready_listed = 1;
    mw_sess_sub_ref(s);
    s->ready_next = NULL;
    was_empty = r->head == NULL;
    if (r->tail) r->tail->ready_next = s;
    else r->head = s;
    r->tail = s;
  }
  pthread_mutex_unlock(&r->lock);
  return was_empty;
}

void mw_sess_wake(int w) {
  void (*fn)(int) = atomic_load(&g_waker);
  if (fn) fn(w);
}

mw_sess_sub *mw_sess_ready_take(int w) {
  pthread_once(&g_ready_once, ready_init);
  if (w < 0 || w >= MW_SESS_MAX_WORKERS) return NULL;
  struct ready_list *r = &g_ready[w];
  pthread_mutex_lock(&r->lock);
  mw_sess_sub *head = r->head;
  r->head = r->tail = NULL;
  /* Still marked listed: unlisted one by one as the taker reaches them
   * (mw_sess_ready_unlist), since listing one again rewrites its
   * ready_next, which the taker has not read yet. */
  pthread_mutex_unlock(&r->lock);
  return head;
}

void mw_sess_ready_unlist(mw_sess_sub *s) {
  if (s->worker < 0 || s->worker >= MW_SESS_MAX_WORKERS) return;
  struct ready_list *r = &g_ready[s->worker];
  pthread_mutex_lock(&r->lock);
  s->ready_listed = 0;
  pthread_mutex_unlock(&r->lock);
}

void mw_sessions_set_waker(void (*waker)(int w)) { atomic_store(&g_waker, waker); }

/* --- the registry ---------------------------------------------------------------- */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static mw_sess_room **g_rooms;
static size_t g_n;

static mw_sess_room *find_locked(const char *name) {
  for (size_t i = 0; i < g_n; i++)
    if (strcmp(g_rooms[i]->name, name) == 0) return g_rooms[i];
  return NULL;
}

static void room_free(mw_sess_room *r) {
  if (!r) return;
  if (r->backend) r->backend->free(r->self);
  free((char *)r->name);
  free((char *)r->message);
  free((char *)r->offset_field);
  free((char *)r->redis);
  free((char *)r->prefix);
  free(r);
}

static int make_room(const mw_sess_spec *s, mw_diag *errors) {
  mw_sess_room **grown = realloc(g_rooms, (g_n + 1) * sizeof *grown);
  if (!grown) return -1;
  g_rooms = grown;
  mw_sess_room *r = calloc(1, sizeof *r);
  if (!r) return -1;
  *r = (mw_sess_room){.name = strdup(s->name),
                      .message = strdup(s->message ? s->message : ""),
                      .offset_field = s->offset_field ? strdup(s->offset_field) : NULL,
                      .policy = s->policy,
                      .buffer = s->buffer ? s->buffer : 1,
                      .history_size = s->history_size,
                      .history_ttl_ms = s->history_ttl_ms,
                      .redis = s->redis ? strdup(s->redis) : NULL,
                      .prefix = s->prefix ? strdup(s->prefix) : NULL,
                      .timeout_ms = s->timeout_ms,
                      .backend = s->redis ? &mw_sesredis_backend : &mw_sesmem_backend};
  char err[256] = "out of memory";
  if (s->redis) r->self = mw_sesredis_new(s, err, sizeof err);
  else r->self = mw_sesmem_new(s);
  if (!r->name || !r->message || (s->offset_field && !r->offset_field) ||
      (s->redis && !r->redis) || (s->prefix && !r->prefix) || !r->self) {
    if (!r->self) r->backend = NULL;
    room_free(r);
    if (errors) mw_diag_add(errors, "sessions '%s': %s", s->name, err);
    return -1;
  }
  g_rooms[g_n++] = r;
  return 0;
}

static int same_spec(const mw_sess_room *r, const mw_sess_spec *s) {
  const char *of = s->offset_field ? s->offset_field : "";
  return strcmp(r->message, s->message ? s->message : "") == 0 &&
         strcmp(r->offset_field ? r->offset_field : "", of) == 0 && r->policy == s->policy &&
         r->buffer == (s->buffer ? s->buffer : 1) && r->history_size == s->history_size &&
         r->history_ttl_ms == s->history_ttl_ms &&
         strcmp(r->redis ? r->redis : "", s->redis ? s->redis : "") == 0 &&
         strcmp(r->prefix ? r->prefix : "", s->prefix ? s->prefix : "") == 0 &&
         r->timeout_ms == s->timeout_ms;
}

int mw_sessions_configure(const mw_sess_spec *specs, size_t n, mw_diag *warnings,
                          mw_diag *errors) {
  int rc = 0;
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < n; i++) {
    mw_sess_room *r = find_locked(specs[i].name);
    if (r) {
      if (!same_spec(r, &specs[i]) && warnings)
        mw_diag_add(warnings, "sessions '%s' keep their settings (the config changes them: "
                              "a change applies at the next start)",
                    r->name);
      continue;
    }
    if (make_room(&specs[i], errors) != 0) rc = -1;
  }
  for (size_t j = 0; j < g_n && warnings; j++) {
    int named = 0;
    for (size_t i = 0; i < n && !named; i++) named = strcmp(specs[i].name, g_rooms[j]->name) == 0;
    if (!named)
      mw_diag_add(warnings, "sessions '%s' are no longer in the config: kept, with their "
                            "streams and history, until the next start",
                  g_rooms[j]->name);
  }
  pthread_mutex_unlock(&g_lock);
  return rc;
}

const mw_sess_room *mw_sessions_find(const char *name) {
  pthread_mutex_lock(&g_lock);
  mw_sess_room *r = find_locked(name);
  pthread_mutex_unlock(&g_lock);
  return r;
}

void mw_sessions_names(char *out, size_t cap) {
  if (!cap) return;
  out[0] = '\0';
  size_t o = 0;
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < g_n && o < cap; i++) {
    int w = snprintf(out + o, cap - o, "%s%s", i ? ", " : "", g_rooms[i]->name);
    if (w < 0) break;
    o += (size_t)w;
  }
  pthread_mutex_unlock(&g_lock);
}

void mw_sessions_free(void) {
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < g_n; i++) room_free(g_rooms[i]);
  free(g_rooms);
  g_rooms = NULL;
  g_n = 0;
  pthread_mutex_unlock(&g_lock);
  /* Ready entries left by streams of a server that stopped hold only
   * references; drop them. */
  for (int w = 0; w < MW_SESS_MAX_WORKERS; w++) {
    mw_sess_sub *s = mw_sess_ready_take(w), *next;
    for (; s; s = next) {
      next = s->ready_next;
      mw_sess_sub_unref(s);
    }
  }
}
