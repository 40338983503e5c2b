/* mw.shared.NAME: the shared dicts (shared/mw_shared.h) for Lua, with
 * OpenResty's ngx.shared.DICT methods and return values (docs/lua-api.md,
 * "Shared dicts"). Every worker's states reach the same dicts, through the
 * registry; a state keeps one handle per name (the facade caches it).
 *
 * Each method turns its arguments into one request, runs it, and turns the
 * result into Lua values; misuse (a wrong argument type, a negative ttl)
 * raises, expected failures return nil or false and a message, as
 * OpenResty's do. The dict's lock is never held while Lua runs: a value is
 * copied out into a buffer of this state's first, then pushed.
 *
 * A dict on Redis answers later: in a handler the operation is a pending
 * operation of the handler (lua/mw_co.h), woken on its own worker by mail
 * (core/mw_post.h) when the answer comes, or by a timer after the dict's
 * timeout (bounded by the call's deadline) with nil, "redis: timeout";
 * outside a handler it blocks for at most that timeout. */
#include <lauxlib.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_timer.h"
#include "core/mw_post.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"
#include "shared/mw_shared.h"

#define MW_MT_SHARED_BUF "moonwire.shared.buf"

typedef struct shared_handle {
  const mw_shared_dict *d; /* the registry's: lives until the process stops */
} shared_handle;

/* The state's copy buffer (upvalue 1 of every method): a userdata whose
 * __gc frees it. One per state suffices: a method runs to its end without
 * yielding, and the buffer is consumed (copied into a Lua string) before
 * anything that could run another Lua function (a finalizer) can run. */
static mw_shbuf *state_buf(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static int buf_gc(lua_State *L) {
  mw_shbuf *b = luaL_checkudata(L, 1, MW_MT_SHARED_BUF);
  free(b->p);
  b->p = NULL;
  b->cap = 0;
  return 0;
}

static const mw_shared_dict *check_dict(lua_State *L) {
  shared_handle *h = luaL_checkudata(L, 1, MW_MT_SHARED);
  return h->d;
}

/* The key at idx into rq: a string, or a number (as tostring writes it).
 * Returns 0, or pushes OpenResty's nil, message and returns 2. A key of
 * another type is misuse: it raises. */
static int get_key(lua_State *L, int idx, mw_shreq *rq) {
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TNONE) {
    lua_pushnil(L);
    lua_pushliteral(L, "nil key");
    return 2;
  }
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    return luaL_error(L, "bad argument #1 (key): a string expected, got %s", luaL_typename(L, idx));
  rq->key = lua_tolstring(L, idx, &rq->klen); /* a number becomes a string in place */
  if (rq->klen == 0 || rq->klen > MW_SH_MAX_KEY) {
    lua_pushnil(L);
    lua_pushstring(L, mw_shared_strerror(rq->klen ? MW_SH_LONG_KEY : MW_SH_EMPTY_KEY));
    return 2;
  }
  return 0;
}

/* A Lua value into v; 0 when its type cannot be stored. */
static int get_value(lua_State *L, int idx, mw_shval *v) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: case LUA_TNONE: v->type = MW_SHV_NIL; return 1;
  case LUA_TBOOLEAN: v->type = MW_SHV_BOOL; v->u.b = lua_toboolean(L, idx); return 1;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      v->type = MW_SHV_INT;
      v->u.i = (int64_t)lua_tointeger(L, idx);
    } else {
      v->type = MW_SHV_FLOAT;
      v->u.d = (double)lua_tonumber(L, idx);
    }
    return 1;
  case LUA_TSTRING:
    v->type = MW_SHV_STR;
    v->u.s.p = lua_tolstring(L, idx, &v->u.s.len);
    return 1;
  default: return 0;
  }
}

static void push_value(lua_State *L, const mw_shval *v) {
  switch (v->type) {
  case MW_SHV_BOOL: lua_pushboolean(L, v->u.b); break;
  case MW_SHV_INT: lua_pushinteger(L, (lua_Integer)v->u.i); break;
  case MW_SHV_FLOAT: lua_pushnumber(L, (lua_Number)v->u.d); break;
  case MW_SHV_STR: lua_pushlstring(L, v->u.s.p, v->u.s.len); break;
  default: lua_pushnil(L); break;
  }
}

/* Seconds (a number >= 0, ms resolution; nil when optional) into ms. A
 * positive time under a millisecond is one millisecond, never "forever". */
static int64_t get_seconds(lua_State *L, int idx, int optional, const char *what) {
  if (optional && lua_isnoneornil(L, idx)) return 0;
  int ok = 0;
  lua_Number s = lua_tonumberx(L, idx, &ok);
  if (!ok || !(s >= 0) || s > 1e12)
    return luaL_error(L, "bad \"%s\" argument (seconds, a number >= 0, expected; got %s)", what,
                      ok ? lua_tostring(L, idx) : luaL_typename(L, idx));
  int64_t ms = (int64_t)(s * 1000);
  return ms == 0 && s > 0 ? 1 : ms;
}

static uint32_t get_flags(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  int ok = 0;
  lua_Integer f = lua_tointegerx(L, idx, &ok);
  if (!ok || f < 0 || f > (lua_Integer)UINT32_MAX)
    return (uint32_t)luaL_error(L, "bad \"flags\" argument (an integer from 0 to 2^32-1 expected)");
  return (uint32_t)f;
}

/* A number argument of incr (step, init): integers stay integers; a
 * numeric string is read as Lua reads it. */
static void get_number(lua_State *L, int idx, const char *what, mw_shval *v) {
  if (lua_type(L, idx) == LUA_TSTRING && lua_stringtonumber(L, lua_tostring(L, idx)) != 0) {
    lua_replace(L, idx);
  }
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "bad \"%s\" argument (a number expected, got %s)", what, luaL_typename(L, idx));
  get_value(L, idx, v);
}

/* --- results ---------------------------------------------------------------- */

/* Whether op answers false (not nil) first on failure: the stores. */
static int is_store(mw_shop op) {
  return op == MW_SHOP_SET || op == MW_SHOP_SAFE_SET || op == MW_SHOP_ADD ||
         op == MW_SHOP_SAFE_ADD || op == MW_SHOP_REPLACE;
}

/* A failure's values: OpenResty's message, or the backend's own. */
static int push_fail(lua_State *L, int first_false, mw_shrc rc, const mw_shres *res) {
  if (first_false) lua_pushboolean(L, 0);
  else lua_pushnil(L);
  if (rc == MW_SH_BACKEND && res->val.type == MW_SHV_STR)
    lua_pushlstring(L, res->val.u.s.p, res->val.u.s.len);
  else lua_pushstring(L, mw_shared_strerror(rc));
  return 2;
}

/* The keys packed in b as a table. Filling the table can run a collection
 * step, and with it a finalizer that uses a dict and so the state's
 * buffer: the packed keys are first copied into one Lua string (anchored
 * on the stack), and read from there. */
static int push_keys(lua_State *L, const mw_shbuf *b, int64_t n) {
  size_t off = 0, len;
  const char *k;
  while (mw_shared_next_key(b, &off, &k, &len)) {
  }
  lua_pushlstring(L, b->p ? b->p : "", b->p ? off + sizeof(uint32_t) : 0); /* with the end mark */
  mw_shbuf copy = {(char *)lua_tostring(L, -1), b->p ? off + sizeof(uint32_t) : 0};
  lua_createtable(L, n > 0 && n < INT32_MAX ? (int)n : 0, 0);
  off = 0;
  lua_Integer i = 0;
  while (mw_shared_next_key(&copy, &off, &k, &len)) {
    lua_pushlstring(L, k, len);
    lua_rawseti(L, -2, ++i);
  }
  lua_remove(L, -2);
  return 1;
}

/* The Lua values of one operation's outcome, whichever backend answered
 * and whenever: the one place results become values. */
static int push_result(lua_State *L, mw_shop op, int has_init, mw_shrc rc, const mw_shres *res,
                       const mw_shbuf *buf) {
  if (rc == MW_SH_BACKEND) {
    if (!is_store(op)) return push_fail(L, 0, rc, res);
    push_fail(L, 1, rc, res);
    lua_pushboolean(L, 0);
    return 3;
  }
  switch (op) {
  case MW_SHOP_GET:
  case MW_SHOP_GET_STALE:
    if (rc == MW_SH_NOT_FOUND) {
      lua_pushnil(L);
      return 1;
    }
    if (rc != MW_SH_OK) return push_fail(L, 0, rc, res);
    push_value(L, &res->val);
    if (op == MW_SHOP_GET) {
      if (!res->flags) return 1;
      lua_pushinteger(L, (lua_Integer)res->flags);
      return 2;
    }
    if (res->flags) lua_pushinteger(L, (lua_Integer)res->flags);
    else lua_pushnil(L);
    lua_pushboolean(L, res->stale);
    return 3;
  case MW_SHOP_SET:
  case MW_SHOP_SAFE_SET:
  case MW_SHOP_ADD:
  case MW_SHOP_SAFE_ADD:
  case MW_SHOP_REPLACE:
    if (rc == MW_SH_OK) {
      lua_pushboolean(L, 1);
      lua_pushnil(L);
      lua_pushboolean(L, res->forcible);
      return 3;
    }
    if ((op == MW_SHOP_SAFE_SET || op == MW_SHOP_SAFE_ADD) && rc == MW_SH_NO_MEMORY)
      return push_fail(L, 0, rc, res);
    push_fail(L, 1, rc, res);
    lua_pushboolean(L, res->forcible);
    return 3;
  case MW_SHOP_INCR:
    if (rc != MW_SH_OK) return push_fail(L, 0, rc, res);
    push_value(L, &res->val);
    if (!has_init) return 1;
    lua_pushnil(L);
    lua_pushboolean(L, res->forcible);
    return 3;
  case MW_SHOP_LPOP:
  case MW_SHOP_RPOP:
    if (rc == MW_SH_NOT_FOUND) {
      lua_pushnil(L);
      return 1;
    }
    if (rc != MW_SH_OK) return push_fail(L, 0, rc, res);
    push_value(L, &res->val);
    return 1;
  case MW_SHOP_TTL:
    if (rc != MW_SH_OK) return push_fail(L, 0, rc, res);
    lua_pushnumber(L, (lua_Number)res->n / 1000);
    return 1;
  case MW_SHOP_EXPIRE:
    if (rc != MW_SH_OK) return push_fail(L, 0, rc, res);
    lua_pushboolean(L, 1);
    return 1;
  case MW_SHOP_FLUSH_ALL:
    return 0;
  case MW_SHOP_KEYS:
    if (rc != MW_SH_OK) return push_fail(L, 0, rc, res);
    return push_keys(L, buf, res->n);
  default: /* pushes, llen, flush_expired, capacity, free_space: a count */
    if (rc != MW_SH_OK) return push_fail(L, 0, rc, res);
    lua_pushinteger(L, (lua_Integer)res->n);
    return 1;
  }
}

/* --- waiting for a backend that answers later (Redis) ----------------------- */

/* One operation a handler waits for. Two owners: the backend (until done
 * has run and its mail has been handled) and the waiting handler (until
 * its wait ends: the answer, its timeout, or its cancellation); the last
 * to let go frees it. `h` is touched only on the handler's worker. */
typedef struct lpend {
  mw_shared_async a; /* first */
  mw_mail mail;
  _Atomic int refs;
  mw_lcall *h; /* the waiting handler; NULL once its wait ended */
  int worker;
  mw_shop op;
  int has_init;
} lpend;

static void pend_unref(lpend *p) {
  if (atomic_fetch_sub(&p->refs, 1) != 1) return;
  free(p->a.buf.p);
  free(p);
}

/* Pushes the outcome for the handler, under lua_pcall on the state's main
 * thread, then moves it onto the handler's coroutine: this runs outside
 * lua_resume, where a memory error would have nowhere to land. */
typedef struct push_args {
  lpend *p;
  int timeout;
} push_args;

static int push_protected(lua_State *L) {
  push_args *a = lua_touserdata(L, 1);
  lua_pop(L, 1);
  if (a->timeout) {
    mw_shres res = {.rc = MW_SH_BACKEND, .val = {.type = MW_SHV_STR}};
    res.val.u.s.p = "redis: timeout";
    res.val.u.s.len = strlen(res.val.u.s.p);
    return push_result(L, a->p->op, a->p->has_init, MW_SH_BACKEND, &res, NULL);
  }
  return push_result(L, a->p->op, a->p->has_init, a->p->a.res.rc, &a->p->a.res, &a->p->a.buf);
}

typedef struct wake_args {
  mw_lcall *h;
  mw_wake how;
  int n;
} wake_args;

static void do_wake(void *arg) {
  wake_args *w = arg;
  mw_co_wake(w->h, w->how, w->n);
}

/* Ends h's wait on p with its outcome (or the timeout). */
static void finish_wait(mw_lcall *h, lpend *p, int timeout, int via_run) {
  p->h = NULL;
  h->wait_arg = NULL;
  lua_State *L = h->st->L;
  int top = lua_gettop(L);
  push_args a = {p, timeout};
  lua_pushcfunction(L, push_protected);
  lua_pushlightuserdata(L, &a);
  int rc = lua_pcall(L, 1, LUA_MULTRET, 0);
  int n = lua_gettop(L) - top;
  lua_xmove(L, h->co, n); /* 3 values at most: within LUA_MINSTACK */
  if (rc == LUA_ERRMEM) h->oom = 1;
  wake_args w = {h, rc == LUA_OK ? MW_WAKE_OK : MW_WAKE_RAISE, n};
  /* From mail the handler resumes as in an event of its own call, so that
   * what it does to the call starts at once; a timer is such an event. */
  if (via_run) mw_call_run(h->call, do_wake, &w);
  else do_wake(&w);
  pend_unref(p);
}

/* The answer reached the handler's worker. */
static void on_mail(mw_mail *m) {
  lpend *p = (lpend *)((char *)m - offsetof(lpend, mail));
  mw_lcall *h = p->h;
  if (h) {
    mw_call_timer_cancel(&h->timer);
    finish_wait(h, p, 0, 1);
  }
  pend_unref(p);
}

/* The backend's thread: the answer goes to the handler's worker. When no
 * worker takes it (the server stops), the handler's timer ends its wait. */
static void on_done(mw_shared_async *a) {
  lpend *p = (lpend *)a;
  if (mw_post(p->worker, &p->mail) != 0) pend_unref(p);
}

static void on_timeout(mw_call_timer *t) {
  mw_lcall *h = (mw_lcall *)((char *)t - offsetof(mw_lcall, timer));
  lpend *p = h->wait_arg;
  if (p) finish_wait(h, p, 1, 0);
}

static int pend_cancel(mw_lcall *h, int ending) {
  mw_call_timer_cancel(&h->timer);
  lpend *p = h->wait_arg;
  h->wait_arg = NULL;
  if (p) {
    p->h = NULL;
    pend_unref(p);
  }
  return 1;
}

static const mw_wait_ops shared_wait = {"shared:redis", pend_cancel};

/* Sends rq and makes h wait for its answer, at most the dict's timeout
 * (and the call's deadline, which cancels the wait on its own). */
static int wait_async(lua_State *L, mw_lcall *h, const mw_shared_dict *d, const mw_shreq *rq) {
  lpend *p = calloc(1, sizeof *p);
  if (!p) return luaL_error(L, "out of memory");
  p->a.done = on_done;
  p->mail.fn = on_mail;
  p->op = rq->op;
  p->has_init = rq->has_init;
  p->worker = mw_call_worker_id(h->call);
  atomic_store(&p->refs, 2);
  int rc = d->backend->submit(d->self, rq, &p->a);
  if (rc == 1) { /* answered at once: no wait */
    int n = push_result(L, p->op, p->has_init, p->a.res.rc, &p->a.res, &p->a.buf);
    free(p->a.buf.p);
    free(p);
    return n;
  }
  p->h = h;
  h->wait_arg = p;
  double wait_s = d->timeout_s;
  double dl = mw_call_deadline(h->call);
  if (dl > 0) {
    double left = dl - mw_wall_now();
    if (left < wait_s) wait_s = left > 0 ? left : 0;
  }
  h->timer.fn = on_timeout;
  if (mw_call_timer_start(h->call, &h->timer, wait_s) != 0) {
    /* no timer, no bound on the wait: give up on this one now */
    p->h = NULL;
    h->wait_arg = NULL;
    pend_unref(p);
    return luaL_error(L, "out of memory");
  }
  return mw_co_wait(L, h, &shared_wait);
}

/* Runs rq on d and returns its values: at once for the memory store; for
 * Redis, a handler waits (its worker goes on with other calls), and code
 * outside any handler (a module's top level, ctx:on_done functions)
 * blocks, for at most the dict's timeout. So does a handler whose call was
 * cancelled: it cannot wait any more, but it may still have to tidy up
 * (release what it claimed) rather than raise. */
static int run(lua_State *L, const mw_shared_dict *d, const mw_shreq *rq) {
  if (d->backend->submit) {
    mw_lcall *h = mw_co_current(L);
    if (h && (h->finished || mw_call_cancelled(h->call))) h = NULL;
    else if (h || mw_co_running()) h = mw_co_check(L, h, "mw.shared (on redis)");
    if (h) return wait_async(L, h, d, rq);
  }
  mw_shres res;
  mw_shbuf *buf = state_buf(L);
  mw_shrc rc = mw_shared_exec(d, rq, &res, buf);
  return push_result(L, rq->op, rq->has_init, rc, &res, buf);
}

/* --- the methods -------------------------------------------------------------- */

/* d:get(key) -> value, flags (flags only when not 0) | nil | nil, err */
static int get_common(lua_State *L, mw_shop op) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = op};
  int n = get_key(L, 2, &rq);
  if (n) return n;
  return run(L, d, &rq);
}

static int l_get(lua_State *L) { return get_common(L, MW_SHOP_GET); }
static int l_get_stale(lua_State *L) { return get_common(L, MW_SHOP_GET_STALE); }

/* d:set(key, value [, exptime [, flags]]) -> ok, err, forcible; the safe_
 * forms answer nil, "no memory" instead of evicting. */
static int store_common(lua_State *L, mw_shop op) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = op};
  rq.ttl_ms = get_seconds(L, 4, 1, "exptime");
  rq.flags = get_flags(L, 5);
  int n = get_key(L, 2, &rq);
  if (n) return n;
  if (!get_value(L, 3, &rq.val)) {
    lua_pushnil(L);
    lua_pushliteral(L, "bad value type");
    return 2;
  }
  return run(L, d, &rq);
}

static int l_set(lua_State *L) { return store_common(L, MW_SHOP_SET); }
static int l_safe_set(lua_State *L) { return store_common(L, MW_SHOP_SAFE_SET); }
static int l_add(lua_State *L) { return store_common(L, MW_SHOP_ADD); }
static int l_safe_add(lua_State *L) { return store_common(L, MW_SHOP_SAFE_ADD); }
static int l_replace(lua_State *L) { return store_common(L, MW_SHOP_REPLACE); }

/* d:delete(key): set(key, nil). */
static int l_delete(lua_State *L) {
  lua_settop(L, 2);
  lua_pushnil(L);
  return store_common(L, MW_SHOP_SET);
}

/* d:incr(key, step [, init [, init_ttl]]) -> newval | newval, nil,
 * forcible (with init) | nil, err */
static int l_incr(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_INCR};
  get_number(L, 3, "value", &rq.val);
  if (!lua_isnoneornil(L, 4)) {
    get_number(L, 4, "init", &rq.init);
    rq.has_init = 1;
  }
  if (!lua_isnoneornil(L, 5)) {
    if (!rq.has_init) return luaL_error(L, "must provide \"init\" when providing \"init_ttl\"");
    rq.init_ttl_ms = get_seconds(L, 5, 0, "init_ttl");
  }
  int n = get_key(L, 2, &rq);
  if (n) return n;
  return run(L, d, &rq);
}

/* d:lpush(key, value) / d:rpush -> length | nil, err */
static int push_common(lua_State *L, mw_shop op) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = op};
  int n = get_key(L, 2, &rq);
  if (n) return n;
  int t = lua_type(L, 3);
  if (t != LUA_TNUMBER && t != LUA_TSTRING) {
    lua_pushnil(L);
    lua_pushliteral(L, "bad value type");
    return 2;
  }
  get_value(L, 3, &rq.val);
  return run(L, d, &rq);
}

static int l_lpush(lua_State *L) { return push_common(L, MW_SHOP_LPUSH); }
static int l_rpush(lua_State *L) { return push_common(L, MW_SHOP_RPUSH); }

/* d:lpop(key) / d:rpop, d:llen(key), d:ttl(key): one key, no more. */
static int key_only(lua_State *L, mw_shop op) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = op};
  int n = get_key(L, 2, &rq);
  if (n) return n;
  return run(L, d, &rq);
}

/* -> value | nil | nil, err */
static int l_lpop(lua_State *L) { return key_only(L, MW_SHOP_LPOP); }
static int l_rpop(lua_State *L) { return key_only(L, MW_SHOP_RPOP); }
/* -> length (0 when missing) | nil, err */
static int l_llen(lua_State *L) { return key_only(L, MW_SHOP_LLEN); }
/* -> seconds left (0: never expires) | nil, "not found" */
static int l_ttl(lua_State *L) { return key_only(L, MW_SHOP_TTL); }

/* d:expire(key, exptime) -> true | nil, "not found" */
static int l_expire(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_EXPIRE};
  rq.ttl_ms = get_seconds(L, 3, 0, "exptime");
  int n = get_key(L, 2, &rq);
  if (n) return n;
  return run(L, d, &rq);
}

static size_t get_max(lua_State *L, int idx, size_t dflt) {
  if (lua_isnoneornil(L, idx)) return dflt;
  int ok = 0;
  lua_Integer m = lua_tointegerx(L, idx, &ok);
  if (!ok || m < 0) return (size_t)luaL_error(L, "bad \"max_count\" argument (an integer >= 0 expected)");
  return (size_t)m;
}

/* d:flush_all(): every item expired, nothing freed (on Redis: deleted). */
static int l_flush_all(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_FLUSH_ALL};
  return run(L, d, &rq);
}

/* d:flush_expired([max_count]) -> items freed (max 0 or nil: all) */
static int l_flush_expired(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_FLUSH_EXPIRED, .max = get_max(L, 2, 0)};
  return run(L, d, &rq);
}

/* d:get_keys([max_count]) -> {key...} (default 1024; 0: all, with the
 * dict locked meanwhile), most recently used first */
static int l_get_keys(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_KEYS, .max = get_max(L, 2, 1024)};
  return run(L, d, &rq);
}

static int l_capacity(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_CAPACITY};
  return run(L, d, &rq);
}

static int l_free_space(lua_State *L) {
  const mw_shared_dict *d = check_dict(L);
  mw_shreq rq = {.op = MW_SHOP_FREE_SPACE};
  return run(L, d, &rq);
}

static int l_tostring(lua_State *L) {
  lua_pushfstring(L, "moonwire.shared: %s", check_dict(L)->name);
  return 1;
}

static const luaL_Reg methods[] = {
    {"get", l_get},         {"get_stale", l_get_stale},
    {"set", l_set},         {"safe_set", l_safe_set},
    {"add", l_add},         {"safe_add", l_safe_add},
    {"replace", l_replace}, {"delete", l_delete},
    {"incr", l_incr},       {"lpush", l_lpush},
    {"rpush", l_rpush},     {"lpop", l_lpop},
    {"rpop", l_rpop},       {"llen", l_llen},
    {"ttl", l_ttl},         {"expire", l_expire},
    {"flush_all", l_flush_all}, {"flush_expired", l_flush_expired},
    {"get_keys", l_get_keys},   {"capacity", l_capacity},
    {"free_space", l_free_space}, {NULL, NULL},
};

/* core.shared_dict(name) -> handle | nil, "a, b" (the configured names).
 * One handle per state and name (registry table), so that handles compare
 * equal wherever they were looked up. */
static const char handles_key;

static int l_shared_dict(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &handles_key);
  if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  const mw_shared_dict *d = mw_shared_find(name);
  if (!d) {
    char names[512];
    mw_shared_names(names, sizeof names);
    lua_pushnil(L);
    lua_pushstring(L, names);
    return 2;
  }
  shared_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->d = d;
  luaL_setmetatable(L, MW_MT_SHARED);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  return 1;
}

void mw_lshared_open(lua_State *L) {
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &handles_key);
  if (luaL_newmetatable(L, MW_MT_SHARED_BUF)) {
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, MW_MT_SHARED)) {
    lua_createtable(L, 0, (int)(sizeof methods / sizeof methods[0]));
    mw_shbuf *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    b->cap = 0;
    luaL_setmetatable(L, MW_MT_SHARED_BUF);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    /* hidden from getmetatable: no handler can change the methods */
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_shared_dict);
  lua_setfield(L, -2, "shared_dict");
}

/* core.shared_define(name, size | {redis = URL, prefix = P, timeout = S}):
 * makes a dict outside the server (the specs' moonwire.core); a name
 * already made is kept as it is. */
static int l_shared_define(lua_State *L) {
  mw_shared_spec s = {.name = luaL_checkstring(L, 1)};
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "redis");
    s.redis = luaL_checkstring(L, -1);
    if (lua_getfield(L, 2, "prefix") != LUA_TNIL) s.prefix = luaL_checkstring(L, -1);
    if (lua_getfield(L, 2, "timeout") != LUA_TNIL)
      s.timeout_ms = (int64_t)(luaL_checknumber(L, -1) * 1000);
  } else {
    s.size = (size_t)luaL_checkinteger(L, 2);
    luaL_argcheck(L, s.size >= MW_SHARED_MIN_SIZE, 2, "at least 64 KiB");
  }
  if (mw_shared_find(s.name)) return 0;
  /* only this spec: the others are kept, and their warnings are not wanted */
  mw_diag errors = {0};
  if (mw_shared_configure(&s, 1, NULL, &errors) != 0) {
    lua_pushstring(L, errors.n && errors.msgs[0] ? errors.msgs[0] : "out of memory");
    mw_diag_free(&errors);
    return lua_error(L);
  }
  mw_diag_free(&errors);
  return 0;
}

void mw_lshared_open_define(lua_State *L) {
  lua_pushcfunction(L, l_shared_define);
  lua_setfield(L, -2, "shared_define");
}
