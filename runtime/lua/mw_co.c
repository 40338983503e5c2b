/* Handler coroutines and the resume loop.
 *
 *   mw_call (core) --ops/self--> mw_lcall --co--> coroutine (slot in the
 *        ^                          |  ^           pool table of st)
 *        |                          |  |             stack: [ctx?] [stream?]
 *        +------ h->call -----------+  +-- mw_handle.h (cleared at on_done)
 *
 * The call owns the mw_lcall (freed at on_done, lua/mw_lcall.c); the pool
 * table owns the coroutine; the coroutine's bottom slots anchor the ctx
 * (made only for a handler that takes it) and stream handles for the
 * call's whole life; the lcall owns its arena, its copy of a first
 * streaming message and a big response block while it is being encoded. */
#include "lua/mw_co.h"
#include "metrics/mw_grpc_metrics.h"
#include "metrics/mw_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/mw_alarm.h"
#include "base/mw_log.h"
#include "base/mw_status.h"
#include "base/mw_timer.h"
#include "codec/mw_codec.h"
#include "lua/l_api.h"
#include "lua/mw_details.h"
#include "lua/mw_lutil.h"

/* The call whose handler this worker thread is running, for the budget
 * hook (which may fire in a coroutine the handler created itself). */
static void cancel_children(mw_lcall *h);

static _Thread_local mw_lcall *tl_running;
static _Thread_local double tl_run_start;

/* Set while mw_co_pcall_bounded runs a function outside any handler: its
 * state's main thread, when it must stop, and whether it was stopped. */
static _Thread_local lua_State *tl_bound_L;
static _Thread_local double tl_bound_until;
static _Thread_local int tl_bound_stopped;

/* Instructions between two looks at the clock, once the hook is on. */
#define MW_HOOK_COUNT 10000

/* The handler coroutine this thread runs, for the alarm's signal (see
 * mw_co_resume); NULL between runs. */
static _Thread_local lua_State *volatile tl_alarm_co;

static unsigned long internal_error_seq;

/* --- the current call ------------------------------------------------------- */

mw_lcall *mw_co_current(lua_State *L) {
  /* Only states the VM made carry call pointers in their extra space. */
  return mw_lstate_of(L) ? *(mw_lcall **)lua_getextraspace(L) : NULL;
}

static void set_current(lua_State *co, mw_lcall *h) {
  *(mw_lcall **)lua_getextraspace(co) = h;
}

mw_lcall *mw_co_running(void) { return tl_running; }

mw_lcall *mw_co_check(lua_State *L, mw_lcall *h, const char *what) {
  if (!h) h = mw_co_current(L);
  if (!h && tl_running)
    luaL_error(L, "%s must be called from the handler itself, not from another "
                  "coroutine", what);
  if (!h || h->finished) luaL_error(L, "%s must be called from a handler", what);
  /* Before anything is armed: a yield that cannot happen would leave it
   * armed with nobody waiting. */
  if (!lua_isyieldable(L))
    luaL_error(L, "%s cannot wait here: Lua cannot yield across this C call (a "
                  "metamethod, a table.sort comparator, a C function's callback)", what);
  if (h->co != L)
    luaL_error(L, "%s must be called from the handler itself, not from "
                  "another coroutine", what);
  if (mw_call_cancelled(h->call) && !mw_co_shielded(h)) mw_co_raise_cancelled(L, h);
  return h;
}

int mw_co_shielded(const mw_lcall *h) {
  return h->shield && h->shield->depth > 0 && mw_wall_now() < h->shield->until;
}

double mw_co_deadline(const mw_lcall *h) {
  double d = mw_call_deadline(h->call);
  if (d != 0 && mw_co_shielded(h) && h->shield->until > d) d = h->shield->until;
  return d;
}

void mw_co_shield_free(mw_lcall *h) {
  if (!h->shield) return;
  mw_call_timer_cancel(&h->shield->timer);
  free(h->shield);
  h->shield = NULL;
}

upb_Arena *mw_co_arena(mw_lcall *h) {
  if (!h->arena) h->arena = upb_Arena_New();
  return h->arena;
}

int mw_co_raise_cancelled(lua_State *L, mw_lcall *h) {
  double d = mw_call_deadline(h->call);
  int expired = d != 0 && mw_wall_now() >= d;
  mw_lstatus_push(L, expired ? MW_STATUS_DEADLINE_EXCEEDED : MW_STATUS_CANCELLED,
                  expired ? "deadline exceeded" : "the call was cancelled");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "cancelled");
  return lua_error(L);
}

/* --- the coroutine pool ------------------------------------------------------ */

static void budget_hook(lua_State *L, lua_Debug *ar);

/* The alarm's signal, on the thread running the handler: from the next
 * instruction on, the hook looks at the clock (lua_sethook is safe in a
 * signal handler). */
static void on_alarm(void) {
  lua_State *co = tl_alarm_co;
  if (co) lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1);
}

/* coroutine.create and coroutine.wrap, giving the coroutine the counting
 * hook: the alarm reaches the handler's own coroutine only, so those a
 * handler makes look at the clock themselves, as every coroutine did. */
static int l_co_create(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_sethook(co, budget_hook, LUA_MASKCOUNT, MW_HOOK_COUNT);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  return 1;
}

static int l_co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 1, 1); /* the library's wrap: its closure holds the thread */
  if (lua_getupvalue(L, -1, 1) && lua_type(L, -1) == LUA_TTHREAD)
    lua_sethook(lua_tothread(L, -1), budget_hook, LUA_MASKCOUNT, MW_HOOK_COUNT);
  lua_pop(L, 1);
  return 1;
}

void mw_co_install_hook(lua_State *L) {
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, MW_HOOK_COUNT);
  mw_alarm_init(on_alarm);
  if (lua_getglobal(L, "coroutine") == LUA_TTABLE) {
    lua_pushcfunction(L, l_co_create);
    lua_setfield(L, -2, "create");
    if (lua_getfield(L, -1, "wrap") == LUA_TFUNCTION) {
      lua_pushcclosure(L, l_co_wrap, 1);
      lua_setfield(L, -2, "wrap");
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

lua_State *mw_co_acquire(mw_lstate *st, mw_lcall *h) {
  lua_State *L = st->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->pool_ref);
  lua_State *co = NULL;
  if (st->n_free > 0) {
    h->co_slot = st->free_slots[--st->n_free];
    if (lua_rawgeti(L, -1, h->co_slot) == LUA_TTHREAD) co = lua_tothread(L, -1);
    lua_pop(L, 1);
  } else {
    h->co_slot = ++st->top_slot;
  }
  if (!co) {
    /* No hook (lua_newthread copied the main thread's): the handler runs
     * at full speed, and the alarm turns the hook on when it is due. */
    co = lua_newthread(L);
    lua_sethook(co, NULL, 0, 0);
    lua_rawseti(L, -2, h->co_slot);
  }
  lua_pop(L, 1);
  set_current(co, h);
  h->co = co;
  return co;
}

static void pool_clear_slot(mw_lstate *st, int slot) {
  lua_State *L = st->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->pool_ref);
  lua_pushnil(L);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
}

void mw_co_release(mw_lcall *h) {
  mw_lstate *st = h->st;
  lua_State *co = h->co;
  int reusable = lua_status(co) == LUA_OK && !h->kill_code;
  if (reusable) lua_settop(co, 0);
  set_current(co, NULL);
  if (!reusable) pool_clear_slot(st, h->co_slot);
  if (st->n_free < MW_POOL_FREE_MAX) {
    st->free_slots[st->n_free++] = h->co_slot;
  } else if (h->co_slot == st->top_slot) {
    st->top_slot--; /* keep slots dense after a burst */
  } else if (reusable) {
    pool_clear_slot(st, h->co_slot); /* the burst's peak is past */
  }
  h->co = NULL;
}

/* --- responses ------------------------------------------------------------------ */

int mw_co_send_table(mw_lcall *h, lua_State *L, int idx, upb_Arena *a, char *err,
                     size_t errlen) {
  char stack[512];
  size_t len;
  free(h->out_block); /* left by an error raised through an earlier encode */
  h->out_block = NULL;
  bool oom = false;
  const char *bytes = mw_codec_encode_buf(L, idx, h->m->output, a, stack, sizeof stack,
                                          &h->out_block, &len, &oom, err, errlen);
  if (!bytes) return oom ? -2 : -1;
  int room;
  if (h->out_block) {
    char *block = h->out_block;
    h->out_block = NULL;
    room = mw_call_send_block(h->call, block, len);
  } else {
    room = mw_call_send(h->call, bytes, len);
  }
  if (room < 0) {
    snprintf(err, errlen, "out of memory");
    return -2;
  }
  return room;
}

/* --- how a handler ends ------------------------------------------------------------ */

/* What attach_details hands its protected part and hears back. */
typedef struct details_job {
  mw_lcall *h;
  int code;
  const char *msg;
  const char *bytes; /* in the call's arena */
  size_t len;
  char err[MW_CODEC_ERRLEN];
} details_job;

/* Protected: [job, details] -> job's bytes, or its err. */
static int encode_details(lua_State *L) {
  details_job *j = lua_touserdata(L, 1);
  upb_Arena *a = mw_co_arena(j->h);
  if (!a) return luaL_error(L, "out of memory");
  j->bytes = mw_details_encode(L, j->code, j->msg, 2, mw_details_pool(L), a, &j->len,
                               j->err, sizeof j->err);
  return 0;
}

/* The status object on top of co has details (a non-empty array): they go
 * out as grpc-status-details-bin, a google.rpc.Status with the call's code
 * and message. Details that cannot be sent (a detail the schema cannot
 * encode, trailers over their limit, no memory) are dropped with one log
 * line naming the method: the call still ends with its code and message. */
static void attach_details(mw_lcall *h, lua_State *co, int code, const char *msg) {
  lua_State *L = h->st->L;
  details_job j = {.h = h, .code = code, .msg = msg};
  /* Encoded on the worker's main state, protected: the failed coroutine
   * cannot run a protected call, and an encoder out of memory must not
   * unwind through the resume loop. */
  lua_getfield(co, -1, "details");
  lua_xmove(co, L, 1);
  lua_pushcfunction(L, encode_details);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, &j);
  lua_insert(L, -2); /* [encode_details, job, details] */
  int rc = lua_pcall(L, 2, 0, 0);
  if (rc != LUA_OK) {
    snprintf(j.err, sizeof j.err, "%s",
             rc == LUA_ERRMEM ? "out of memory" : luaL_optstring(L, -1, "error"));
    lua_pop(L, 1);
    j.bytes = NULL;
  }
  if (j.bytes &&
      mw_call_set_status_details(h->call, j.bytes, j.len, j.err, sizeof j.err) == 0)
    return;
  mw_log(MW_LOG_WARN, "%s: error details dropped (the call ends with %s all the same): %s",
         h->m->path, mw_status_name(code), j.err);
}

/* Whether the status object at idx carries details to send. */
static int has_details(lua_State *co, int idx) {
  int t = lua_getfield(co, idx, "details");
  int yes = t == LUA_TTABLE && lua_rawlen(co, -1) > 0;
  lua_pop(co, 1);
  return yes;
}

/* Ends the call with the status a failed handler produced: the one place a
 * Lua error value becomes a reply. Status objects keep their code; anything
 * else is INTERNAL with an error id, the traceback going to the log only. */
static void finish_with_error(mw_lcall *h, int status) {
  lua_State *co = h->co, *L = h->st->L;
  /* h->oom without LUA_ERRMEM: memory ran out where a wake was being made
   * (an outbound reply decoded outside the resume) and was raised in the
   * handler as a plain error. */
  if (status == LUA_ERRMEM || h->oom) {
    h->oom = 1;
    mw_log(MW_LOG_ERROR, "%s: handler ran out of memory", h->m->path);
    mw_call_finish(h->call, MW_STATUS_RESOURCE_EXHAUSTED, "handler ran out of memory");
    return;
  }
  if (mw_lstatus_is(co, -1)) {
    lua_getfield(co, -1, "code");
    int code = (int)lua_tointeger(co, -1);
    lua_getfield(co, -2, "message");
    const char *msg = lua_tostring(co, -1);
    if (code == MW_STATUS_OK) code = MW_STATUS_UNKNOWN; /* an error must not read as success */
    lua_pushvalue(co, -3);
    if (has_details(co, -1)) attach_details(h, co, code, msg ? msg : "");
    lua_pop(co, 1);
    mw_call_finish(h->call, code, msg ? msg : "");
    lua_pop(co, 2);
    return;
  }
  unsigned long id = __atomic_add_fetch(&internal_error_seq, 1, __ATOMIC_RELAXED);
  int noted = 0;
  if (h->tb_ref) {
    /* Raised inside an interceptor's next() and re-raised as it was: the
     * traceback of where it was first raised. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->tb_ref); /* [{err, tb}] */
    lua_rawgeti(L, -1, 1);
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1); /* [{err, tb}, err, final] */
    noted = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (noted) {
      lua_rawgeti(L, -1, 2);
      lua_pushliteral(L, "\n(re-raised through the interceptors)");
      lua_concat(L, 2);
    }
    lua_remove(L, noted ? -2 : -1);
  }
  const char *msg = lua_tostring(co, -1);
  if (!noted) luaL_traceback(L, co, msg ? msg : luaL_typename(co, -1), 0);
  char idbuf[32];
  snprintf(idbuf, sizeof idbuf, "%lu", id);
  const char *keys[] = {"method", "error_id", "error"};
  const char *vals[] = {h->m->path, idbuf, lua_tostring(L, -1)};
  mw_log_fields(MW_LOG_ERROR, "handler error", 3, keys, vals);
  lua_pop(L, 1);
  char client[96];
  snprintf(client, sizeof client, "internal error in the handler (error id %lu)", id);
  mw_call_finish(h->call, MW_STATUS_INTERNAL, client);
}

/* " (the handler at file:line)" of h's method, as moonwire.service bound
 * it, else "": for the message of a reply that is not a valid message,
 * when the handler's frames are gone. Runs Lua on the idle main thread. */
static void handler_where(mw_lcall *h, char *out, size_t cap) {
  out[0] = '\0';
  lua_State *L = h->st->L;
  int top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "moonwire.service") == LUA_TTABLE &&
      lua_getfield(L, -1, "where") == LUA_TFUNCTION) {
    lua_pushstring(L, h->m->path);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
      snprintf(out, cap, " (the handler at %s)", lua_tostring(L, -1));
  }
  lua_settop(L, top);
}

/* A handler returned: unary and client-streaming handlers return the
 * response table, streaming-response handlers have sent theirs. */
static void finish_ok(mw_lcall *h, int nres) {
  lua_State *co = h->co;
  if (h->m->kind == MW_KIND_SERVER_STREAMING || h->m->kind == MW_KIND_BIDI_STREAMING) {
    mw_call_finish(h->call, MW_STATUS_OK, NULL);
    return;
  }
  if (nres < 1 || !lua_istable(co, -nres)) {
    mw_log(MW_LOG_ERROR, "%s: the handler returned %s instead of a response table",
           h->m->path, nres < 1 ? "nothing" : luaL_typename(co, -nres));
    mw_call_finish(h->call, MW_STATUS_INTERNAL, "the handler returned no response");
    return;
  }
  char err[MW_CODEC_ERRLEN];
  upb_Arena *arena = mw_co_arena(h);
  int rc = arena ? mw_co_send_table(h, co, lua_absindex(co, -nres), arena, err, sizeof err)
                 : -2;
  if (rc == -2) {
    mw_call_finish(h->call, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  } else if (rc == -1) {
    char where[256];
    handler_where(h, where, sizeof where);
    mw_log(MW_LOG_ERROR, "%s: invalid response%s: %s", h->m->path, where, err);
    char msg[MW_CODEC_ERRLEN + 32];
    snprintf(msg, sizeof msg, "invalid response: %s", err);
    mw_call_finish(h->call, MW_STATUS_INTERNAL, msg);
  } else {
    mw_call_finish(h->call, MW_STATUS_OK, NULL);
  }
}

/* --- the budget ------------------------------------------------------------------- */

static const char *kill_reason(int code) {
  return code == MW_STATUS_DEADLINE_EXCEEDED ? "deadline exceeded while the handler was running"
                                             : "the handler ran past its CPU budget";
}

/* A handler preempted at the end of its time slice waits for a zero-second
 * timer, so that what is queued on the worker runs first. The wait cannot
 * end in the cancelled error (a hook's yield has no continuation to raise
 * it from): a cancelled call resumes and meets it at its next wait. */
static void on_slice_timer(mw_call_timer *t) {
  mw_lcall *h = (mw_lcall *)((char *)t - offsetof(mw_lcall, timer));
  h->wait = NULL;
  mw_co_resume(h, 0);
}

static int slice_cancel(mw_lcall *h, int ending) {
  if (ending) mw_call_timer_cancel(&h->timer);
  return 0;
}

static const mw_wait_ops slice_wait = {"a time slice", slice_cancel};

/* Stops a handler that runs past its deadline or its CPU budget without
 * waiting. Once it has fired it fires on every instruction, in every
 * coroutine of the handler, so that pcall cannot swallow the stop. Between
 * those checks it preempts a handler that has run a whole time slice
 * (limits.handler_slice_ms), when it can yield: only the handler's own
 * coroutine (a yield in one the handler made would return to the handler's
 * resume, not to the worker) and not across a C call. */
/* Whether the bounded function (mw_co_pcall_bounded) must stop; when it
 * must, the hook fires on every instruction from now on. */
static int bound_overrun(lua_State *L) {
  if (!tl_bound_stopped) {
    if (mw_now() < tl_bound_until) return 0;
    tl_bound_stopped = 1;
  }
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  if (L != tl_bound_L) lua_sethook(tl_bound_L, budget_hook, LUA_MASKCOUNT, 1);
  return 1;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
  mw_lcall *h = tl_running;
  if (!h) {
    if (tl_bound_L) {
      if (!bound_overrun(L)) return;
      lua_pushliteral(L, "ran past limits.handler_cpu_ms");
      lua_error(L);
    }
    /* A coroutine a stopped function left behind: back to the usual. */
    if (lua_gethookcount(L) == 1) lua_sethook(L, budget_hook, LUA_MASKCOUNT, MW_HOOK_COUNT);
    return;
  }
  if (!h->kill_code) {
    /* A coroutine a stopped handler left behind (one made at load time
     * outlives it) still fires on every instruction: back to the usual. */
    if (lua_gethookcount(L) == 1) lua_sethook(L, budget_hook, LUA_MASKCOUNT, MW_HOOK_COUNT);
    double deadline = mw_co_deadline(h);
    double budget = h->st->handler_cpu_s, slice = h->st->handler_slice_s;
    double ran = mw_now() - tl_run_start;
    if (deadline != 0 && mw_wall_now() >= deadline) {
      h->kill_code = MW_STATUS_DEADLINE_EXCEEDED;
    } else if (budget > 0 && h->ran_s + ran > budget) {
      h->kill_code = MW_STATUS_RESOURCE_EXHAUSTED;
    } else {
      if (slice > 0 && ran > slice && L == h->co && lua_isyieldable(L)) {
        h->wait = &slice_wait;
        lua_yield(L, 0);
      }
      return;
    }
  }
  if (mw_metrics_current() && !h->counted_stop) {
    h->counted_stop = 1;
    mw_grpc_count_cpu_stop();
  }
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  if (L != h->co) lua_sethook(h->co, budget_hook, LUA_MASKCOUNT, 1);
  mw_lstatus_push(L, h->kill_code, kill_reason(h->kill_code));
  lua_error(L);
}

int mw_co_overrun(lua_State *L) {
  mw_lcall *h = tl_running;
  if (!h) {
    if (!tl_bound_L || !bound_overrun(L)) return 0;
    lua_pushliteral(L, "ran past limits.handler_cpu_ms");
    return 1;
  }
  if (!h->kill_code) {
    double deadline = mw_co_deadline(h), budget = h->st->handler_cpu_s;
    if (deadline != 0 && mw_wall_now() >= deadline)
      h->kill_code = MW_STATUS_DEADLINE_EXCEEDED;
    else if (budget > 0 && h->ran_s + mw_now() - tl_run_start > budget)
      h->kill_code = MW_STATUS_RESOURCE_EXHAUSTED;
    else
      return 0;
    if (mw_metrics_current() && !h->counted_stop) {
      h->counted_stop = 1;
      mw_grpc_count_cpu_stop();
    }
    /* From now on the hook fires at every instruction, as after its own stop. */
    lua_sethook(h->co, budget_hook, LUA_MASKCOUNT, 1);
    if (L != h->co) lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  }
  mw_lstatus_push(L, h->kill_code, kill_reason(h->kill_code));
  return 1;
}

int mw_co_pcall_bounded(lua_State *L, int nargs, double budget_s, int *stopped) {
  /* on_done may come while a handler runs (one that ends its call): that
   * handler's budget is not this function's, and comes back after it. */
  mw_lcall *outer = tl_running;
  double outer_start = tl_run_start, outer_until = tl_bound_until;
  lua_State *outer_L = tl_bound_L;
  int outer_stopped = tl_bound_stopped;
  int count = lua_gethookcount(L);
  tl_running = NULL;
  tl_bound_L = budget_s > 0 ? L : NULL;
  tl_bound_until = mw_now() + budget_s;
  tl_bound_stopped = 0;
  int st = mw_lutil_pcall(L, nargs, 0);
  *stopped = tl_bound_stopped;
  tl_running = outer;
  tl_run_start = outer_start;
  tl_bound_L = outer_L;
  tl_bound_until = outer_until;
  tl_bound_stopped = outer_stopped;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, count > 0 ? count : MW_HOOK_COUNT);
  return st;
}

/* --- the resume loop -------------------------------------------------------------- */

/* When the run starting at `start` must be looked at: the end of its time
 * slice, of its CPU budget or its deadline, whichever comes first (0: none
 * bounds it). */
static double run_due(const mw_lcall *h, double start) {
  double due = 0, slice = h->st->handler_slice_s, budget = h->st->handler_cpu_s;
  if (slice > 0) due = start + slice;
  if (budget > 0 && (due == 0 || start + budget - h->ran_s < due))
    due = start + budget - h->ran_s;
  double deadline = mw_co_deadline(h);
  if (deadline != 0) {
    double d = start + (deadline - mw_wall_now());
    if (due == 0 || d < due) due = d;
  }
  return due;
}

/* A run goes at full speed, with no hook: the thread's alarm is armed for
 * the run's due time, and only if the run is still going then does the
 * alarm's signal turn the counting hook on (on_alarm), which then does what
 * it always did. The hook counts from the start, as it did for every run
 * before, when the run is due already or there is no alarm (no memory for
 * it, or no watchdog). */
void mw_co_resume(mw_lcall *h, int nargs) {
  int nres = 0;
  h->wait = NULL;
  mw_lcall *outer = tl_running;
  double outer_start = tl_run_start;
  lua_State *outer_co = tl_alarm_co;
  tl_running = h;
  tl_run_start = mw_now();
  mw_alarm *alarm = mw_alarm_self();
  double outer_due = 0;
  tl_alarm_co = h->co;
  double due = alarm ? run_due(h, tl_run_start) : 0;
  if (alarm && (due == 0 || due > tl_run_start)) {
    outer_due = mw_alarm_arm(alarm, due);
  } else {
    /* Due already (a deadline past): the hook looks from the start, at
     * once rather than when the watchdog gets to it. */
    if (alarm) outer_due = mw_alarm_arm(alarm, 0);
    lua_sethook(h->co, budget_hook, LUA_MASKCOUNT, MW_HOOK_COUNT);
  }
  int st = lua_resume(h->co, h->st->L, nargs, &nres);
  double ran = mw_now() - tl_run_start;
  if (alarm) mw_alarm_arm(alarm, outer_due);
  tl_alarm_co = outer_co;
  /* A signal that landed before the line above armed the hook here: the
   * next run starts without it. A stopped handler keeps it (its coroutine
   * is not reused, and the hook must go on raising in it). */
  if (!h->kill_code && lua_gethookmask(h->co)) lua_sethook(h->co, NULL, 0, 0);
  tl_running = outer;
  tl_run_start = outer_start;
  if (!h->kill_code && st == LUA_YIELD && h->wait == &slice_wait) {
    h->ran_s += ran;
    h->timer.fn = on_slice_timer;
    if (mw_call_timer_start(h->call, &h->timer, 0) == 0) return;
    h->wait = NULL; /* no memory for the timer: run on now */
    mw_co_resume(h, 0);
    return;
  }
  /* The budget is checked again when the handler stops running, so that
   * time spent in a C function it called (out of the hook's reach) counts
   * even when the handler returns or waits right after it. */
  double budget = h->st->handler_cpu_s;
  if (!h->kill_code && budget > 0 && h->ran_s + ran > budget) {
    h->kill_code = MW_STATUS_RESOURCE_EXHAUSTED;
    if (st == LUA_YIELD && h->wait) h->wait->cancel(h, 1);
  }
  if (st == LUA_YIELD && h->wait) h->ran_s = 0; /* it waits: a fresh budget */
  if (h->kill_code) {
    /* Whatever the coroutine did with the stop, the call ends with it. */
    h->finished = 1;
    h->wait = NULL;
    cancel_children(h);
    mw_co_shield_free(h);
    mw_log(MW_LOG_WARN, "%s: handler stopped: %s", h->m->path,
           h->kill_code == MW_STATUS_DEADLINE_EXCEEDED
               ? "deadline exceeded while running"
               : "ran past limits.handler_cpu_ms without waiting");
    mw_call_finish(h->call, h->kill_code,
                   h->kill_code == MW_STATUS_DEADLINE_EXCEEDED ? "deadline exceeded"
                                                               : kill_reason(h->kill_code));
    return;
  }
  if (st == LUA_YIELD) {
    if (h->wait) return; /* a moonwire wait: woken later by mw_co_wake */
    lua_pop(h->co, nres);
    lua_pushstring(h->co, "the handler yielded outside a moonwire wait "
                          "(coroutine.yield at the top level of a handler)");
    st = LUA_ERRRUN;
  }
  h->finished = 1;
  cancel_children(h);
  mw_co_shield_free(h);
  if (st == LUA_OK) {
    /* A finished coroutine reports its whole stack as results: the anchors
     * below the handler are not among them. */
    finish_ok(h, nres - h->anchors);
    lua_settop(h->co, h->anchors);
  } else {
    /* A coroutine that failed keeps its stack as it is: settop could run
     * its pending __close handlers. */
    finish_with_error(h, st);
  }
}

/* --- pending operations ----------------------------------------------------------- */

/* The continuation of every wait: raises what the wake asked for, or
 * returns the results its event pushed. */
static int wait_k(lua_State *L, int status, lua_KContext kctx) {
  mw_lcall *h = (mw_lcall *)kctx;
  switch (h->wake) {
  case MW_WAKE_CANCELLED: return mw_co_raise_cancelled(L, h);
  case MW_WAKE_RAISE: return lua_error(L);
  case MW_WAKE_OK: break;
  }
  return h->wake_nres;
}

int mw_co_wait(lua_State *L, mw_lcall *h, const mw_wait_ops *ops) {
  h->wait = ops;
  h->wake = MW_WAKE_OK;
  h->wake_nres = 0;
  /* Once a handler waits, cancellation must be able to reach it. */
  mw_call_watch_cancel(h->call);
  return lua_yieldk(L, 0, (lua_KContext)h, wait_k);
}

void mw_co_wake(mw_lcall *h, mw_wake how, int nres) {
  h->wait = NULL;
  h->wake = how;
  h->wake_nres = nres;
  mw_co_resume(h, nres);
}

static void run_cancel_fns(mw_lcall *h);

void mw_co_child_add(mw_lcall *h, mw_lchild *c) {
  c->shielded = mw_co_shielded(h);
  c->prev = NULL;
  c->next = h->children;
  if (h->children) h->children->prev = c;
  h->children = c;
}

void mw_co_child_remove(mw_lcall *h, mw_lchild *c) {
  if (c->prev) c->prev->next = c->next;
  else if (h->children == c) h->children = c->next;
  else return; /* not linked */
  if (c->next) c->next->prev = c->prev;
  c->next = c->prev = NULL;
}

/* Everything the call started stops with it, at once. */
static void cancel_children(mw_lcall *h) {
  while (h->children) h->children->cancel(h->children);
}

void mw_co_cancel(mw_lcall *h) {
  run_cancel_fns(h); /* once, even when the handler already ended */
  if (mw_co_shielded(h)) {
    /* Held back until the window ends (mw_co_unshield): only what the
     * handler started outside the shield stops now. */
    for (mw_lchild *c = h->children, *next; c; c = next) {
      next = c->next;
      if (!c->shielded) c->cancel(c);
    }
    return;
  }
  cancel_children(h);
  if (h->finished || !h->wait) return;
  if (h->wait->cancel(h, 0)) mw_co_wake(h, MW_WAKE_CANCELLED, 0);
}

void mw_co_unshield(mw_lcall *h) {
  if (h->finished || !mw_call_cancelled(h->call) || mw_co_shielded(h)) return;
  cancel_children(h);
  if (h->wait && h->wait->cancel(h, 0)) mw_co_wake(h, MW_WAKE_CANCELLED, 0);
}

void mw_co_end(mw_lcall *h, int code, const char *msg) {
  if (h->finished) return;
  /* as the budget's stop does: ending for good, whatever it waits on */
  if (h->wait) h->wait->cancel(h, 1);
  h->wait = NULL;
  h->finished = 1;
  cancel_children(h);
  mw_co_shield_free(h);
  mw_call_finish(h->call, code, msg);
}

void mw_co_abandon(mw_lcall *h) {
  if (h->wait) h->wait->cancel(h, 1);
  h->wait = NULL;
  cancel_children(h);
  mw_co_shield_free(h);
}

static void run_cancel_fns(mw_lcall *h) {
  if (h->cancel_ref == LUA_NOREF) return;
  lua_State *L = h->st->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cancel_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, h->cancel_ref);
  h->cancel_ref = LUA_NOREF;
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (mw_lutil_pcall(L, 0, 0) != LUA_OK) {
      mw_log(MW_LOG_ERROR, "%s: on_cancel function failed: %s", h->m->path,
             lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}
