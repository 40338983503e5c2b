/* mw.sessions.NAME: the stream session rooms (sessions/mw_sessions.h) for
 * Lua. The policy (waiting while a queue is full, what a close means, the
 * snapshot's shape) is lua/moonwire/sessions.lua's; this file is the
 * mechanism under it:
 *
 *   - a joined stream is a child of its call (lua/mw_co.h's mw_lchild): it
 *     leaves when the handler ends or the call is cancelled;
 *   - publications reach a stream on its own worker: the room lists it on
 *     that worker's ready list and the waker installed here posts one mail
 *     per worker (core/mw_post.h), whose run drains each listed stream
 *     into its call with mw_call_send, as an event of that call, until the
 *     call's queue is full; the call's on_writable (mw_lsessions_on_writable)
 *     resumes the drain, so a slow client holds publications in its own
 *     queue, where the room's policy applies;
 *   - a publisher that must wait (policy block) waits on a notice
 *     (lua/mw_notice.h) that a drain bumps when it makes room in a full
 *     queue.
 * A message is encoded once per publication, as the room's type, and the
 * same bytes go to every stream. */
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_status.h"
#include "codec/mw_codec.h"
#include "core/mw_loopback.h"
#include "core/mw_post.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"
#include "lua/mw_details.h"
#include "lua/mw_notice.h"
#include "sessions/mw_sessions.h"
#include "upb/def.h"

#define MW_MT_SESSIONS "moonwire.sessions"

typedef struct room_handle {
  const mw_sess_room *r; /* the registry's: lives until the process stops */
} room_handle;

/* A joined stream: the call's child. */
typedef struct lsub {
  mw_lchild child;
  mw_lcall *h;
  const mw_sess_room *room;
  mw_sess_sub *sub; /* the joiner's reference */
  int stalled;      /* the call's queue was full: on_writable resumes */
  int event_ids;    /* the call's client wants each publication's event id */
  char epoch[MW_SESS_EPOCH_LEN]; /* the topic's at the join, for those ids */
} lsub;

/* Publishers waiting for room in a full queue. */
static mw_notice g_notice = MW_NOTICE_INIT;

/* --- delivery -------------------------------------------------------------------- */

static void lsub_cancel(mw_lchild *c);

/* A publication with its event id in front, "<epoch>:<offset>" as field
 * MW_LB_EVENT_ID_FIELD, for the HTTP listener to take off and show as the
 * server-sent event's id (core/mw_loopback.h). mw_call_send's result. */
static int send_with_id(mw_lcall *h, const char *epoch, const mw_sess_pub *p) {
  char id[MW_SESS_EPOCH_LEN + 24];
  int il = snprintf(id, sizeof id, "%s:%llu", epoch, (unsigned long long)p->offset);
  size_t head = sizeof MW_LB_EVENT_ID_TAG - 1 + 1 + (size_t)il; /* il < 128: one length byte */
  char *block = malloc(head + p->len);
  if (!block) return -1;
  memcpy(block, MW_LB_EVENT_ID_TAG, sizeof MW_LB_EVENT_ID_TAG - 1);
  block[sizeof MW_LB_EVENT_ID_TAG - 1] = (char)il;
  memcpy(block + sizeof MW_LB_EVENT_ID_TAG, id, (size_t)il);
  memcpy(block + head, p->data, p->len);
  return mw_call_send_block(h->call, block, head + p->len);
}

/* As an event of the stream's call: queued publications into the call
 * until its queue is full. May end the call (the room closed the session),
 * which frees ls: nothing touches it after. */
static void drain(void *arg) {
  lsub *ls = arg;
  mw_lcall *h = ls->h;
  const mw_sess_backend *b = ls->room->backend;
  while (!ls->stalled) {
    mw_sess_pub *p = NULL;
    mw_sess_end end;
    int freed = 0;
    int r = b->take(ls->room->self, ls->sub, &p, &end, &freed);
    if (freed) mw_notice_bump(&g_notice);
    if (r == 0) return;
    if (r < 0) {
      mw_co_end(h, end.code, end.msg);
      return;
    }
    /* room:send's messages have no offset, so no id: a client resumes
     * from the last publication it saw. */
    int room = ls->event_ids && p->offset ? send_with_id(h, ls->epoch, p)
                                          : mw_call_send(h->call, p->data, p->len);
    mw_sess_pub_unref(p);
    if (room < 0) {
      mw_co_end(h, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
      return;
    }
    if (room == 0) ls->stalled = 1;
  }
}

void mw_lsessions_on_writable(mw_lcall *h) {
  mw_lchild *next;
  for (mw_lchild *c = h->children; c; c = next) {
    next = c->next;
    if (c->cancel != lsub_cancel) continue;
    lsub *ls = (lsub *)c;
    if (!ls->stalled) continue;
    ls->stalled = 0;
    drain(ls);
    /* Ended (the children are gone with the call), or the queue is full
     * again: the others wait for the next on_writable, which that full
     * send has asked for. */
    if (h->finished || ls->stalled) return;
  }
}

/* One mail per worker, posted when its ready list stops being empty. */
static struct worker_mail {
  mw_mail mail;
  int worker;
  _Atomic int queued;
} g_mail[MW_SESS_MAX_WORKERS];

static void on_mail(mw_mail *m) {
  struct worker_mail *wm = (struct worker_mail *)m;
  atomic_store(&wm->queued, 0);
  mw_sess_sub *s = mw_sess_ready_take(wm->worker), *next;
  for (; s; s = next) {
    next = s->ready_next;
    mw_sess_ready_unlist(s); /* after reading next: listing it rewrites it */
    lsub *ls = s->owner; /* cleared by leave, on this thread */
    if (ls) mw_call_run(ls->h->call, drain, ls);
    mw_sess_sub_unref(s);
  }
}

static void waker(int w) {
  struct worker_mail *wm = &g_mail[w];
  if (atomic_exchange(&wm->queued, 1)) return;
  wm->mail.fn = on_mail;
  wm->worker = w;
  if (mw_post(w, &wm->mail) != 0) atomic_store(&wm->queued, 0); /* no server */
}

static void lsub_cancel(mw_lchild *c) {
  lsub *ls = (lsub *)c;
  mw_co_child_remove(ls->h, c);
  ls->room->backend->leave(ls->room->self, ls->sub);
  mw_sess_sub_unref(ls->sub);
  free(ls);
  /* Its queue may have been the full one a publisher waits on. */
  mw_notice_bump(&g_notice);
}

/* --- arguments ------------------------------------------------------------------- */

static const mw_sess_room *check_room(lua_State *L, int idx) {
  room_handle *rh = luaL_checkudata(L, idx, MW_MT_SESSIONS);
  return rh->r;
}

static const char *check_topic(lua_State *L, int idx, size_t *len) {
  const char *t = luaL_checklstring(L, idx, len);
  if (*len == 0 || *len > 65535) luaL_argerror(L, idx, "a topic is 1 to 65535 bytes");
  return t;
}

static const upb_MessageDef *room_type(lua_State *L, const mw_sess_room *r, int *offset_field) {
  const upb_DefPool *pool = mw_details_pool(L);
  const upb_MessageDef *m = pool ? upb_DefPool_FindMessageByName(pool, r->message) : NULL;
  if (!m)
    luaL_error(L, "sessions '%s': the message type '%s' is not in the loaded .proto files",
               r->name, r->message);
  if (offset_field) {
    *offset_field = 0;
    if (r->offset_field) {
      const upb_FieldDef *f = upb_MessageDef_FindFieldByName(m, r->offset_field);
      upb_CType t = f ? upb_FieldDef_CType(f) : kUpb_CType_Bool;
      if (!f || upb_FieldDef_IsRepeated(f) || (t != kUpb_CType_Int64 && t != kUpb_CType_UInt64))
        luaL_error(L, "sessions '%s': offset_field '%s' is not a (u)int64 field of %s", r->name,
                   r->offset_field, r->message);
      *offset_field = (int)upb_FieldDef_Number(f);
    }
  }
  return m;
}

/* A big message's block while it is encoded and published, owned here: a
 * Lua error raised through the encoder (out of memory) leaves it for the
 * next publish on this thread to free. Encoding and publishing never yield,
 * so one slot per thread serves every state the thread runs. */
static _Thread_local char *tl_block;

/* The message at idx as the room's bytes: a table is encoded (into stack
 * while it fits, else into tl_block, freed by the caller with
 * free_block); a string is taken as already encoded. Raises on a table
 * that is not a valid message. */
static const char *message_bytes(lua_State *L, int idx, const mw_sess_room *r,
                                 const upb_MessageDef *m, char *stack, size_t cap,
                                 size_t *len) {
  free(tl_block);
  tl_block = NULL;
  if (lua_type(L, idx) == LUA_TSTRING) return lua_tolstring(L, idx, len);
  luaL_checktype(L, idx, LUA_TTABLE);
  char err[MW_CODEC_ERRLEN];
  char mem[256];
  upb_Arena *a = upb_Arena_Init(mem, sizeof mem, &upb_alloc_global);
  bool oom = false;
  const char *bytes =
      mw_codec_encode_buf(L, idx, m, a, stack, cap, &tl_block, len, &oom, err, sizeof err);
  upb_Arena_Free(a);
  if (!bytes) {
    if (oom) luaL_error(L, "out of memory");
    luaL_error(L, "sessions '%s': not a valid %s: %s", r->name, r->message, err);
  }
  return bytes;
}

static void free_block(void) {
  free(tl_block);
  tl_block = NULL;
}

static int push_rc(lua_State *L, mw_sess_rc rc) {
  lua_pushnil(L);
  lua_pushstring(L, mw_sess_strerror(rc));
  return 2;
}

/* --- core.session_* -------------------------------------------------------------- */

/* core.session_room(name) -> handle | nil, "a, b" (the configured names);
 * one handle per state and name. */
static const char handles_key;

static int l_session_room(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &handles_key);
  if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  const mw_sess_room *r = mw_sessions_find(name);
  if (!r) {
    char names[512];
    mw_sessions_names(names, sizeof names);
    lua_pushnil(L);
    lua_pushstring(L, names);
    return 2;
  }
  room_handle *rh = lua_newuserdatauv(L, sizeof *rh, 0);
  rh->r = r;
  luaL_setmetatable(L, MW_MT_SESSIONS);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  return 1;
}

static mw_lcall *check_stream(lua_State *L, int idx, const char *what) {
  mw_lcall *h = mw_handle_check(L, idx, MW_MT_STREAM);
  if (h->m->kind != MW_KIND_SERVER_STREAMING && h->m->kind != MW_KIND_BIDI_STREAMING)
    luaL_error(L, "%s: %s is not a server- or bidi-streaming method", what, h->m->path);
  return h;
}

/* core.session_join(room, topic, stream, offset|nil, epoch|nil)
 *   -> id, epoch, top, recovered (nil without a resume), replayed */
static int l_session_join(lua_State *L) {
  const mw_sess_room *r = check_room(L, 1);
  size_t tlen;
  const char *topic = check_topic(L, 2, &tlen);
  mw_lcall *h = check_stream(L, 3, "join");
  if (h->finished) return luaL_error(L, "join: the stream has ended");
  const char *out = upb_MessageDef_FullName(h->m->output);
  if (strcmp(out, r->message) != 0)
    return luaL_error(L, "join: sessions '%s' carry %s, and %s streams %s", r->name, r->message,
                      h->m->path, out);
  mw_sess_join j = {.topic = topic, .tlen = tlen, .worker = mw_call_worker_id(h->call)};
  if (!lua_isnoneornil(L, 4)) {
    lua_Integer off = luaL_checkinteger(L, 4);
    luaL_argcheck(L, off >= 0, 4, "an offset is >= 0");
    j.resume = 1;
    j.offset = (uint64_t)off;
    j.epoch = luaL_optstring(L, 5, "");
  }
  lsub *ls = calloc(1, sizeof *ls);
  if (!ls) return luaL_error(L, "out of memory");
  ls->child.cancel = lsub_cancel;
  ls->h = h;
  ls->room = r;
  j.owner = ls;
  ls->event_ids = mw_call_event_ids(h->call);
  mw_sess_rc rc = r->backend->join(r->self, &j, &ls->sub);
  if (rc != MW_SESS_OK) {
    free(ls);
    return luaL_error(L, "join: %s", mw_sess_strerror(rc));
  }
  memcpy(ls->epoch, j.epoch_now, sizeof ls->epoch);
  mw_co_child_add(h, &ls->child);
  /* Publications are sent while the handler may wait in stream:recv. */
  mw_call_sends_anytime(h->call);
  /* Cancellation must reach a stream that only ever waits in sub:wait or
   * never waits at all. */
  mw_call_watch_cancel(h->call);
  lua_pushinteger(L, (lua_Integer)ls->sub->id);
  lua_pushstring(L, j.epoch_now);
  lua_pushinteger(L, (lua_Integer)j.top);
  if (j.resume) lua_pushboolean(L, j.recovered);
  else lua_pushnil(L);
  lua_pushinteger(L, (lua_Integer)j.replayed);
  return 5;
}

int mw_lsessions_last_event_id(mw_lcall *h, unsigned long long *offset, char epoch[17]) {
  size_t n = mw_call_metadata_count(h->call);
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_call_metadata_at(h->call, i, &k, &kl, &v, &vl);
    if (kl != 13 || memcmp(k, "last-event-id", 13) != 0) continue;
    const char *colon = memchr(v, ':', vl);
    if (!colon || colon - v > MW_SESS_EPOCH_LEN - 1) return 0;
    size_t el = (size_t)(colon - v), dl = vl - el - 1;
    if (dl == 0 || dl > 19) return 0;
    for (size_t j = 0; j < el; j++)
      if (!((v[j] >= '0' && v[j] <= '9') || (v[j] >= 'a' && v[j] <= 'f'))) return 0;
    unsigned long long o = 0;
    for (size_t j = 0; j < dl; j++) {
      if (colon[1 + j] < '0' || colon[1 + j] > '9') return 0;
      o = o * 10 + (unsigned long long)(colon[1 + j] - '0');
    }
    if (o > (unsigned long long)INT64_MAX) return 0;
    memcpy(epoch, v, el);
    epoch[el] = 0;
    *offset = o;
    return 1;
  }
  return 0;
}

/* core.session_last_event_id(stream) -> offset, epoch | nil: the stream's
 * Last-Event-ID, for join's resume when the handler gives none. */
static int l_session_last_event_id(lua_State *L) {
  /* Anything but a live stream: nothing (join itself says what is wrong). */
  mw_handle *hd = luaL_testudata(L, 1, MW_MT_STREAM);
  mw_lcall *h = hd ? hd->h : NULL;
  unsigned long long off;
  char epoch[MW_SESS_EPOCH_LEN];
  if (!h || h->finished || !mw_lsessions_last_event_id(h, &off, epoch)) return 0;
  lua_pushinteger(L, (lua_Integer)off);
  lua_pushstring(L, epoch);
  return 2;
}

static lsub *find_sub(mw_lcall *h, lua_Integer id) {
  for (mw_lchild *c = h->children; c; c = c->next)
    if (c->cancel == lsub_cancel && (lua_Integer)((lsub *)c)->sub->id == id) return (lsub *)c;
  return NULL;
}

/* core.session_leave(stream, id) -> whether it was joined */
static int l_session_leave(lua_State *L) {
  mw_lcall *h = mw_handle_check(L, 1, MW_MT_STREAM);
  lsub *ls = find_sub(h, luaL_checkinteger(L, 2));
  if (ls) lsub_cancel(&ls->child);
  lua_pushboolean(L, ls != NULL);
  return 1;
}

static int hold_cancel(mw_lcall *h, int ending) { return 1; }
static const mw_wait_ops hold_wait = {"sessions:wait", hold_cancel};

/* core.session_hold(stream): the handler waits while publications flow to
 * its stream, until the call ends (cancelled: raises; closed by the room:
 * the call ends with the room's status). */
static int l_session_hold(lua_State *L) {
  mw_lcall *h = check_stream(L, 1, "wait");
  if (h->co != L)
    return luaL_error(L, "sub:wait must be called from the handler itself, not from "
                         "another coroutine");
  mw_co_check(L, h, "sub:wait");
  return mw_co_wait(L, h, &hold_wait);
}

/* core.session_publish(room, topic, msg) -> offset | nil, "full" |
 * nil, "redis: ..." */
static int l_session_publish(lua_State *L) {
  const mw_sess_room *r = check_room(L, 1);
  size_t tlen, len;
  const char *topic = check_topic(L, 2, &tlen);
  int field;
  const upb_MessageDef *m = room_type(L, r, &field);
  char stack[1024];
  const char *bytes = message_bytes(L, 3, r, m, stack, sizeof stack, &len);
  uint64_t off = 0;
  mw_sess_rc rc = r->backend->publish(r->self, topic, tlen, bytes, len, field, &off);
  free_block();
  if (rc != MW_SESS_OK) return push_rc(L, rc);
  lua_pushinteger(L, (lua_Integer)off);
  return 1;
}

/* core.session_send(room, id, msg) -> true | nil, "full" | "not found" */
static int l_session_send(lua_State *L) {
  const mw_sess_room *r = check_room(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  const upb_MessageDef *m = room_type(L, r, NULL);
  char stack[1024];
  size_t len;
  const char *bytes = message_bytes(L, 3, r, m, stack, sizeof stack, &len);
  mw_sess_rc rc = r->backend->send(r->self, (uint64_t)id, bytes, len);
  free_block();
  if (rc != MW_SESS_OK) return push_rc(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.session_close(room, id, code, msg) -> true | nil, "not found" */
static int l_session_close(lua_State *L) {
  const mw_sess_room *r = check_room(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  lua_Integer code = luaL_checkinteger(L, 3);
  luaL_argcheck(L, code >= 0 && code <= 16, 3, "a status code (0 to 16)");
  const char *msg = luaL_optstring(L, 4, "");
  mw_sess_rc rc = r->backend->close(r->self, (uint64_t)id, (int)code, msg);
  if (rc != MW_SESS_OK) return push_rc(L, rc);
  mw_notice_bump(&g_notice); /* its queue is gone: a publisher may go on */
  lua_pushboolean(L, 1);
  return 1;
}

/* core.session_list(room, topic) -> {id, ...} (oldest join first) */
static int l_session_list(lua_State *L) {
  const mw_sess_room *r = check_room(L, 1);
  size_t tlen;
  const char *topic = check_topic(L, 2, &tlen);
  uint64_t small[64], *ids = small;
  size_t n = r->backend->list(r->self, topic, tlen, small, 64);
  while (n > 64 && ids == small) {
    /* more than fit: ask again with room for them (and a margin for joins
     * since) */
    size_t cap = n + 64;
    ids = malloc(cap * sizeof *ids);
    if (!ids) return luaL_error(L, "out of memory");
    n = r->backend->list(r->self, topic, tlen, ids, cap);
    if (n > cap) {
      free(ids);
      ids = small;
    }
  }
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)ids[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  if (ids != small) free(ids);
  return 1;
}

/* Decodes the history (protected: a Lua error frees nothing of ours). */
typedef struct history_job {
  mw_sess_pub **pubs;
  size_t n;
  const upb_MessageDef *m;
  char err[MW_CODEC_ERRLEN];
} history_job;

static int push_history(lua_State *L) {
  history_job *j = lua_touserdata(L, 1);
  lua_createtable(L, (int)j->n, 0);
  for (size_t i = 0; i < j->n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)j->pubs[i]->offset);
    lua_setfield(L, -2, "offset");
    char mem[1024];
    upb_Arena *a = upb_Arena_Init(mem, sizeof mem, &upb_alloc_global);
    int rc = mw_codec_decode_push(L, j->pubs[i]->data, j->pubs[i]->len, j->m, a, j->err,
                                  sizeof j->err);
    upb_Arena_Free(a);
    if (rc != 0) return luaL_error(L, "%s", j->err);
    lua_setfield(L, -2, "message");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* core.session_history(room, topic, since, max) -> epoch, top,
 * {{offset =, message =}, ...} (oldest first) | nil, "redis: ..." */
static int l_session_history(lua_State *L) {
  const mw_sess_room *r = check_room(L, 1);
  size_t tlen;
  const char *topic = check_topic(L, 2, &tlen);
  lua_Integer since = luaL_optinteger(L, 3, 0);
  lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)r->history_size);
  luaL_argcheck(L, since >= 0, 3, "an offset is >= 0");
  luaL_argcheck(L, max >= 0, 4, "a count is >= 0");
  if ((size_t)max > r->history_size) max = (lua_Integer)r->history_size;
  const upb_MessageDef *m = room_type(L, r, NULL);
  history_job j = {.m = m};
  j.pubs = max ? malloc((size_t)max * sizeof *j.pubs) : NULL;
  if (max && !j.pubs) return luaL_error(L, "out of memory");
  uint64_t top = 0;
  char epoch[MW_SESS_EPOCH_LEN];
  mw_sess_rc rc = r->backend->history(r->self, topic, tlen, (uint64_t)since, j.pubs,
                                      (size_t)max, &j.n, &top, epoch);
  if (rc != MW_SESS_OK) {
    free(j.pubs);
    if (rc == MW_SESS_BACKEND) return push_rc(L, rc); /* Redis down: nil, "redis: ..." */
    return luaL_error(L, "history: %s", mw_sess_strerror(rc));
  }
  lua_pushstring(L, epoch);
  lua_pushinteger(L, (lua_Integer)top);
  lua_pushcfunction(L, push_history);
  lua_pushlightuserdata(L, &j);
  int st = lua_pcall(L, 1, 1, 0);
  for (size_t i = 0; i < j.n; i++) mw_sess_pub_unref(j.pubs[i]);
  free(j.pubs);
  if (st != LUA_OK) return lua_error(L);
  return 3;
}

static int l_session_version(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mw_notice_version(&g_notice));
  return 1;
}

/* core.session_wait(seen): a publisher waits for room in a full queue */
static int l_session_wait(lua_State *L) {
  lua_Integer seen = luaL_checkinteger(L, 1);
  return mw_notice_wait(L, &g_notice, (unsigned long)seen,
                        "a publish that waits for a full queue (policy block)");
}

/* core.session_config(room) -> {name=, message=, policy=, buffer=,
 * history = {size=, ttl=}, offset_field=} */
static int l_session_config(lua_State *L) {
  const mw_sess_room *r = check_room(L, 1);
  static const char *const policies[] = {"block", "drop_oldest", "close"};
  lua_createtable(L, 0, 6);
  lua_pushstring(L, r->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, r->message);
  lua_setfield(L, -2, "message");
  lua_pushstring(L, policies[r->policy]);
  lua_setfield(L, -2, "policy");
  lua_pushinteger(L, (lua_Integer)r->buffer);
  lua_setfield(L, -2, "buffer");
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)r->history_size);
  lua_setfield(L, -2, "size");
  lua_pushnumber(L, (double)r->history_ttl_ms / 1000.0);
  lua_setfield(L, -2, "ttl");
  lua_setfield(L, -2, "history");
  if (r->offset_field) {
    lua_pushstring(L, r->offset_field);
    lua_setfield(L, -2, "offset_field");
  }
  return 1;
}

static int l_room_tostring(lua_State *L) {
  lua_pushfstring(L, "sessions: %s", check_room(L, 1)->name);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"session_room", l_session_room},       {"session_join", l_session_join},
    {"session_leave", l_session_leave},     {"session_hold", l_session_hold},
    {"session_publish", l_session_publish}, {"session_send", l_session_send},
    {"session_close", l_session_close},     {"session_list", l_session_list},
    {"session_history", l_session_history}, {"session_version", l_session_version},
    {"session_wait", l_session_wait},       {"session_config", l_session_config},
    {"session_last_event_id", l_session_last_event_id},
    {NULL, NULL},
};

void mw_lsessions_open(lua_State *L) {
  mw_sessions_set_waker(waker);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &handles_key);
  if (luaL_newmetatable(L, MW_MT_SESSIONS)) {
    lua_pushcfunction(L, l_room_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}

void mw_lsessions_free(void) { mw_notice_free(&g_notice); }
