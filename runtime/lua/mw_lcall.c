/* The mw_call_ops of the Lua backend, and the start of a handler. Every
 * event of the call comes in here and goes to the resume loop as a wake;
 * on_done tears the record down (it always comes, last). */
#include "lua/mw_lcall.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/mw_log.h"
#include "base/mw_status.h"
#include "codec/mw_codec.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"
#include "lua/mw_lutil.h"

/* Each worker thread keeps the big records of ended calls for the next ones
 * (they are too big for malloc's fast path). */
#define MW_LCALL_CACHE 256
static _Thread_local mw_lcall_big *tl_cache[MW_LCALL_CACHE];
static _Thread_local int tl_cached;

static void lcall_on_message(void *self, int ok, const char *data, size_t len, int has_msg) {
  mw_lstream_on_message(self, ok, data, len, has_msg);
}

/* The queue has room: for a handler waiting in stream:send, and for the
 * publications of a joined session waiting to be sent (l_sessions.c);
 * neither can free the call inside an event. */
static void lcall_on_writable(void *self) {
  mw_lstream_on_writable(self);
  mw_lcall *h = self;
  if (h->children) mw_lsessions_on_writable(h);
}

static void lcall_on_cancel(void *self) { mw_co_cancel(self); }

/* The ctx:on_done functions, in order, in the state's main thread, while
 * the handles still reach the call. Each runs under limits.handler_cpu_ms
 * of its own: one that loops would stall the worker, every call on it. */
static void run_done_fns(mw_lcall *h) {
  lua_State *L = h->st->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->done_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, h->done_ref);
  h->done_ref = 0;
  int code = mw_call_status(h->call);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_pushinteger(L, code);
    int stopped = 0;
    if (mw_co_pcall_bounded(L, 1, h->st->handler_cpu_s, &stopped) != LUA_OK) {
      if (stopped)
        mw_log(MW_LOG_WARN, "%s: on_done function stopped: ran past limits.handler_cpu_ms",
               h->m->path);
      else
        mw_log(MW_LOG_ERROR, "%s: on_done function failed: %s", h->m->path,
               lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

static void lcall_on_done(void *self) {
  mw_lcall *h = self;
  mw_co_abandon(h);
  if (h->done_ref) run_done_fns(h);
  for (int i = 0; i < 2; i++)
    if (h->handles[i]) h->handles[i]->h = NULL; /* they may outlive the call */
  lua_State *L = h->st->L;
  if (h->cancel_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, h->cancel_ref);
  if (h->tb_ref) luaL_unref(L, LUA_REGISTRYINDEX, h->tb_ref);
  h->tb_ref = 0;
  mw_co_release(h);
  /* What a handler that ran out of memory held is garbage now: give it back
   * before the next call needs it. */
  if (h->oom) lua_gc(L, LUA_GCCOLLECT);
  if (h->arena) upb_Arena_Free(h->arena);
  free(h->first);
  free(h->relay_msg);
  free(h->out_block);
  if (h->big && tl_cached < MW_LCALL_CACHE) {
    tl_cache[tl_cached++] = (mw_lcall_big *)h;
  } else {
    free(h);
  }
}

/* What the handler waits on, from its pending operation. */
static const char *lcall_wait_state(void *self) {
  const mw_lcall *h = self;
  if (h->finished) return "finished";
  if (!h->wait) return "running";
  if (strcmp(h->wait->what, "mw.sleep") == 0) return "sleep";
  if (strcmp(h->wait->what, "a time slice") == 0) return "running"; /* preempted */
  if (strcmp(h->wait->what, "a notice") == 0) return "notice";
  return h->wait->what;
}

static const mw_call_ops lua_call_ops = {lcall_on_message, lcall_on_writable,
                                         lcall_on_cancel, lcall_on_done,
                                         lcall_wait_state};

static mw_lcall *lcall_new(const mw_method *m) {
  /* Streaming requests decode into scratch arenas, so those calls skip the
   * embedded first block: an idle stream costs a kilobyte less. */
  int big = m->kind == MW_KIND_UNARY || m->kind == MW_KIND_SERVER_STREAMING;
  mw_lcall *h;
  if (big) {
    mw_lcall_big *b = tl_cached ? tl_cache[--tl_cached] : malloc(sizeof *b);
    if (!b) return NULL;
    h = &b->h;
    memset(h, 0, sizeof *h);
    h->big = 1;
    h->arena = upb_Arena_Init(b->arena_mem, sizeof b->arena_mem, &upb_alloc_global);
  } else {
    h = calloc(1, sizeof *h);
    if (!h) return NULL;
  }
  h->m = m;
  h->cancel_ref = LUA_NOREF;
  return h;
}

void mw_lcall_start(mw_lstate *st, int fn_ref, int fn_params, mw_call *c, const char *first,
                    size_t first_len, int has_first) {
  const mw_method *m = mw_call_method(c);
  mw_lcall *h = lcall_new(m);
  if (!h) {
    mw_call_finish(c, MW_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  h->call = c;
  h->st = st;
  mw_call_attach(c, &lua_call_ops, h);
  lua_State *co = mw_co_acquire(st, h);
  /* ctx is the last argument: a handler that declares fewer parameters
   * cannot see it, and nothing else reaches it (interceptors get theirs
   * through the wrapper bound in the handler's place, which takes it), so
   * it is not made at all: the userdata and its collection were most of
   * what ctx cost a call. */
  int with_ctx = fn_params >= (m->kind == MW_KIND_SERVER_STREAMING ? 3 : 2);
  /* Below the handler the stack anchors ctx (and stream) for the call's
   * whole life, whatever the handler does with them: [ctx?, stream?]. */
  int ctx_slot = 0, stream_slot = 0;
  if (with_ctx) {
    mw_handle_push(co, h, MW_HANDLE_CTX);
    ctx_slot = ++h->anchors;
  }
  if (m->kind != MW_KIND_UNARY) {
    mw_handle_push(co, h, MW_HANDLE_STREAM);
    stream_slot = ++h->anchors;
  }
  lua_rawgeti(co, LUA_REGISTRYINDEX, fn_ref); /* [anchors, fn] */
  int nargs = 0;
  if (m->kind == MW_KIND_UNARY || m->kind == MW_KIND_SERVER_STREAMING) {
    char err[MW_CODEC_ERRLEN];
    if (mw_codec_decode_push(co, first, first_len, m->input, h->arena, err, sizeof err) != 0) {
      h->finished = 1;
      lua_settop(co, h->anchors);
      mw_call_finish(c, MW_STATUS_INVALID_ARGUMENT, err);
      return;
    }
    nargs++; /* [anchors, fn, request] */
  } else if (has_first) {
    h->first = malloc(first_len ? first_len : 1);
    if (h->first) memcpy(h->first, first, first_len);
    h->first_len = first_len;
    h->has_first = 1;
  }
  if (stream_slot) {
    lua_pushvalue(co, stream_slot);
    nargs++;
  }
  if (ctx_slot) {
    lua_pushvalue(co, ctx_slot); /* [anchors, fn, request?, stream?, ctx] */
    nargs++;
  }
  mw_co_resume(h, nargs);
}

void mw_lcall_thread_exit(void) {
  while (tl_cached) free(tl_cache[--tl_cached]);
}
