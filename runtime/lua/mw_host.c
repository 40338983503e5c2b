#include "lua/mw_host.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "core/mw_call.h"
#include "codec/mw_codec.h"
#include "base/mw_log.h"
#include "base/mw_util.h"
#include "core/mw_server.h"
#include "upb/arena.h"

#define MT_CTX "moonwire.ctx"
#define MT_STREAM "moonwire.stream"
#define MT_STATUS "moonwire.status"
#define REG_SERVICES "moonwire.services"
#define REG_SERVICE_FILES "moonwire.service_files"

/* Registry keys by address. */
static const char key_gen = 'g';
static const char key_pool = 'p';
static const char key_on_reload = 'r';
static const char key_on_restore = 's';

/* A state's pool of handler coroutines. Every coroutine lives in the pool
 * table (registry[key_pool].table) at a fixed slot, in use or not; free
 * slots are kept on a stack here. Coroutines that ended normally are reused,
 * others are dropped and their slot refilled on demand. */
#define MW_POOL_FREE_MAX 1024
typedef struct co_pool {
  int table_ref;
  int top_slot;  /* highest slot used so far */
  int n_free;
  int free_slots[MW_POOL_FREE_MAX];
  int mt_ref[2]; /* registry refs of the ctx and stream metatables, made on
                    first use (0: not yet) */
} co_pool;

typedef enum wait_kind {
  WAIT_NONE = 0,
  WAIT_RECV,
  WAIT_WRITABLE,
  WAIT_TIMER,
} wait_kind;

/* The host's state of one call. Owned by the call (mw_call_set_host) from
 * mw_host_on_call until mw_host_on_done frees it. */
typedef struct mw_hcall {
  mw_call *call;
  lua_State *L;  /* the generation's state for this worker */
  lua_State *co; /* the handler's coroutine, from the state's pool */
  int co_slot;    /* its index in the pool table */
  int anchors;    /* stack slots below the handler: ctx [, stream] */
  int cancel_ref; /* table of on_cancel functions, LUA_NOREF when none */
  const mw_method *m;
  upb_Arena *arena; /* the call's arena, over arena_mem first; made on first
                       use for small states (call_arena) */
  wait_kind wait;
  uint64_t timer;
  int woke_cancelled; /* the current wait ended by cancellation */
  int finished;       /* the handler ended and the call was finished */
  /* A first message delivered with the call to a streaming handler. */
  char *first;
  size_t first_len;
  int has_first;
  int half_closed;    /* the client half-closed its side */
  int kill_code;      /* non-zero once the budget hook stopped the handler */
  int oom;            /* the handler failed for want of memory */
  int small;          /* allocated without arena_mem (client- and bidi-
                         streaming calls, whose messages use scratch arenas) */
  struct co_pool *pool; /* the state's coroutine pool */
  char *out_block;    /* a big response while it is encoded (owned) */
  char arena_mem[1024];
} mw_hcall;

/* Userdata for ctx and stream: a handle that outlives the call safely. */
typedef struct handle {
  mw_hcall *h; /* NULL once the call has ended */
} handle;

static unsigned long internal_error_seq;

/* The call whose handler this worker thread is running, for the budget
 * hook (which may fire in a coroutine the handler created itself). */
static _Thread_local mw_hcall *tl_running;

/* Each worker thread keeps the host states of ended calls for the next ones
 * (they are too big for malloc's fast path); mw_host_thread_exit frees them. */
#define MW_HCALL_CACHE 256
static _Thread_local mw_hcall *tl_hcall_cache[MW_HCALL_CACHE];
static _Thread_local int tl_hcall_cached;
static _Thread_local double tl_run_start;

/* Instructions between two looks at the clock. */
#define MW_HOOK_COUNT 10000

/* --- small helpers -------------------------------------------------------- */

/* The call's arena, made on first use when the state has no first block. */
static upb_Arena *call_arena(mw_hcall *h) {
  if (!h->arena) h->arena = upb_Arena_New();
  return h->arena;
}

/* Encodes the response table at idx and queues it: 1 or 0 as
 * mw_call_send; -1 with err filled (the table is not a valid response), -2
 * when memory ran out. A big response goes to gRPC in the block it was
 * encoded into; h owns that block until then, even when Lua raises an error
 * through the encoder. */
static int send_table(mw_hcall *h, lua_State *L, int idx, upb_Arena *a, char *err,
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

/* The call whose coroutine L is. Only states the host made carry call
 * pointers in their extra space (moonwire.core loaded into a plain lua5.4
 * has none), so check that first. */
static mw_hcall *current(lua_State *L) {
  int ours = lua_rawgetp(L, LUA_REGISTRYINDEX, &key_gen) == LUA_TLIGHTUSERDATA;
  lua_pop(L, 1);
  return ours ? *(mw_hcall **)lua_getextraspace(L) : NULL;
}

static void set_current(lua_State *co, mw_hcall *h) {
  *(mw_hcall **)lua_getextraspace(co) = h;
}

/* Pushes a status error object {code=, message=}. */
static void push_status(lua_State *L, int code, const char *msg) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, MT_STATUS);
}

static int is_status(lua_State *L, int idx) {
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, MT_STATUS);
  int eq = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return eq;
}

static int check_code(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    int code = mw_status_parse(lua_tostring(L, idx));
    if (code < 0) luaL_argerror(L, idx, "unknown status code name");
    return code;
  }
  lua_Integer code = luaL_checkinteger(L, idx);
  if (code < 0 || code >= MW_STATUS_COUNT)
    luaL_argerror(L, idx, "status code out of range 0..16");
  return (int)code;
}

static mw_hcall *check_live(lua_State *L, int idx, const char *mt) {
  handle *hd = luaL_checkudata(L, idx, mt);
  if (!hd->h) luaL_error(L, "the call has ended");
  return hd->h;
}

/* --- moonwire.core ---------------------------------------------------------- */

/* core.status(code, message) -> status object */
static int l_status(lua_State *L) {
  int code = check_code(L, 1);
  const char *msg = luaL_optstring(L, 2, "");
  push_status(L, code, msg);
  return 1;
}

/* core.fail(code, message): raises a status object */
static int l_fail(lua_State *L) {
  int code = check_code(L, 1);
  const char *msg = luaL_optstring(L, 2, "");
  if (code == 0) luaL_argerror(L, 1, "mw.fail needs an error code, not OK");
  push_status(L, code, msg);
  return lua_error(L);
}

static int l_is_status(lua_State *L) {
  lua_pushboolean(L, is_status(L, 1));
  return 1;
}

static int status_tostring(lua_State *L) {
  lua_getfield(L, 1, "code");
  int code = (int)lua_tointeger(L, -1);
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "%s: %s", mw_status_name(code), luaL_optstring(L, -1, ""));
  return 1;
}

/* core.service(name) -> the handler table of a service (created once). */
static int l_service(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_gen);
  mw_gen *g = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (g && !mw_gen_has_service(g, name, len)) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "no service '%s' in the loaded .proto files", name);
    luaL_addvalue(&b);
    size_t n = mw_schema_service_count(g->schema);
    for (size_t i = 0; i < n; i++) {
      luaL_addstring(&b, i == 0 ? " (services: " : ", ");
      luaL_addstring(&b, upb_ServiceDef_FullName(mw_schema_service(g->schema, i)));
    }
    if (n) luaL_addstring(&b, ")");
    luaL_pushresult(&b);
    luaL_where(L, 1); /* the script calling mw.service */
    lua_insert(L, -2);
    lua_concat(L, 2);
    return lua_error(L);
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, REG_SERVICES);
  if (lua_getfield(L, -1, name) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  /* Remember where the service was declared, for messages. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, REG_SERVICE_FILES);
  lua_Debug ar;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "S", &ar)) {
    lua_pushstring(L, ar.short_src);
  } else {
    lua_pushstring(L, "?");
  }
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  return 1;
}

static int l_log(lua_State *L) {
  const char *lvl = luaL_checkstring(L, 1);
  int level = mw_log_level_parse(lvl);
  if (level < 0) luaL_argerror(L, 1, "level must be debug, info, warn or error");
  size_t msg_len;
  const char *msg = luaL_checklstring(L, 2, &msg_len);
  if (!mw_log_enabled(level)) return 0;
  const char *keys[32], *vals[32];
  size_t lens[32];
  int n = 0;
  if (lua_istable(L, 3)) {
    lua_settop(L, 3);
    lua_pushnil(L);
    while (n < 32 && lua_next(L, 3)) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        keys[n] = lua_tostring(L, -2);
        vals[n] = luaL_tolstring(L, -1, &lens[n]); /* anchored on the stack */
        lua_insert(L, 4);                          /* below the key */
        n++;
      }
      lua_pop(L, 1);
    }
  }
  mw_log_record(level, msg, msg_len, n, keys, vals, lens);
  return 0;
}

static void wait_for(mw_hcall *h, wait_kind w);
static void pool_init(lua_State *L);
static int sleep_k(lua_State *L, int status, lua_KContext kctx);
static void on_timer(void *arg);

/* mw.sleep(seconds): suspends only the calling handler. */
static int l_sleep(lua_State *L) {
  lua_Number secs = luaL_checknumber(L, 1);
  mw_hcall *h = current(L);
  if (!h || h->co != L) return luaL_error(L, "mw.sleep must be called from a handler");
  if (mw_call_cancelled(h->call)) return sleep_k(L, LUA_YIELD, 0);
  if (!(secs > 0)) secs = 0;
  mw_timers *t = &mw_call_worker(h->call)->timers;
  h->timer = mw_timer_add(t, mw_now() + secs, on_timer, h);
  if (!h->timer) return luaL_error(L, "out of memory");
  wait_for(h, WAIT_TIMER);
  return lua_yieldk(L, 0, 0, sleep_k);
}

/* mw.stats() -> {live_calls=, generation=, reloads=, reload_failures=,
 * lua_memory=} as the server sees them now. Handlers only. */
static int l_stats(lua_State *L) {
  mw_hcall *h = current(L);
  if (!h) return luaL_error(L, "mw.stats must be called from a handler");
  mw_worker *w = mw_call_worker(h->call);
  mw_server_stats st;
  mw_server_get_stats(w->server, &st);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)st.live_calls);
  lua_setfield(L, -2, "live_calls");
  lua_pushinteger(L, (lua_Integer)st.generation);
  lua_setfield(L, -2, "generation");
  lua_pushinteger(L, (lua_Integer)st.reloads);
  lua_setfield(L, -2, "reloads");
  lua_pushinteger(L, (lua_Integer)st.reload_failures);
  lua_setfield(L, -2, "reload_failures");
  lua_pushinteger(L, (lua_Integer)lua_gc(L, LUA_GCCOUNT, 0) * 1024 +
                         lua_gc(L, LUA_GCCOUNTB, 0));
  lua_setfield(L, -2, "lua_memory");
  return 1;
}

/* mw.on_reload(fn): fn() runs in this generation when a worker moves to the
 * next one; what it returns (plain data) goes to the next generation's
 * mw.on_restore function. */
static int l_on_reload(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_on_reload);
  return 0;
}

/* mw.on_restore(fn): fn(data) runs once per worker, before the worker's
 * first call in this generation, with what the previous one handed over. */
static int l_on_restore(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_on_restore);
  return 0;
}

static const luaL_Reg core_funcs[] = {
    {"on_reload", l_on_reload}, {"on_restore", l_on_restore},
    {"status", l_status},   {"fail", l_fail},   {"is_status", l_is_status},
    {"service", l_service}, {"log", l_log},     {"sleep", l_sleep},
    {"stats", l_stats},     {NULL, NULL},
};

static void push_codes(lua_State *L) {
  lua_createtable(L, 0, MW_STATUS_COUNT);
  for (int i = 0; i < MW_STATUS_COUNT; i++) {
    lua_pushinteger(L, i);
    lua_setfield(L, -2, mw_status_name(i));
  }
}

static void make_metatables(lua_State *L);

int mw_host_open_core(lua_State *L) {
  make_metatables(L);
  luaL_newlib(L, core_funcs);
  push_codes(L);
  lua_setfield(L, -2, "codes");
  lua_pushstring(L, MW_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}

/* --- ctx ------------------------------------------------------------------ */

static int ctx_remaining(lua_State *L) {
  mw_hcall *h = check_live(L, 1, MT_CTX);
  double d = mw_call_deadline(h->call);
  if (d == 0) {
    lua_pushnumber(L, HUGE_VAL);
  } else {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    double left = d - ((double)tv.tv_sec + (double)tv.tv_usec * 1e-6);
    lua_pushnumber(L, left > 0 ? left : 0);
  }
  return 1;
}

static int ctx_cancelled(lua_State *L) {
  handle *hd = luaL_checkudata(L, 1, MT_CTX);
  lua_pushboolean(L, !hd->h || mw_call_cancelled(hd->h->call));
  return 1;
}

static int set_md(lua_State *L, int trailer) {
  mw_hcall *h = check_live(L, 1, MT_CTX);
  size_t kl, vl;
  const char *k = luaL_checklstring(L, 2, &kl);
  const char *v = luaL_checklstring(L, 3, &vl);
  char err[256];
  int rc = trailer ? mw_call_add_trailer(h->call, k, kl, v, vl, err, sizeof err)
                   : mw_call_add_header(h->call, k, kl, v, vl, err, sizeof err);
  if (rc != 0) return luaL_error(L, "%s", err);
  return 0;
}
static int ctx_set_header(lua_State *L) { return set_md(L, 0); }
static int ctx_set_trailer(lua_State *L) { return set_md(L, 1); }

static int ctx_on_cancel(lua_State *L) {
  mw_hcall *h = check_live(L, 1, MT_CTX);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (h->cancel_ref == LUA_NOREF) {
    lua_newtable(L);
    h->cancel_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cancel_ref);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* ctx:metadata_values(key) -> every value of a repeated key, in order. */
static int ctx_metadata_values(lua_State *L) {
  mw_hcall *h = check_live(L, 1, MT_CTX);
  size_t kl;
  const char *key = luaL_checklstring(L, 2, &kl);
  lua_newtable(L);
  size_t n = mw_call_metadata_count(h->call);
  lua_Integer k = 1;
  for (size_t i = 0; i < n; i++) {
    const char *mk, *mv;
    size_t mkl, mvl;
    mw_call_metadata_at(h->call, i, &mk, &mkl, &mv, &mvl);
    if (mkl == kl && memcmp(mk, key, kl) == 0) {
      lua_pushlstring(L, mv, mvl);
      lua_rawseti(L, -2, k++);
    }
  }
  return 1;
}

static void push_metadata(lua_State *L, mw_hcall *h) {
  size_t n = mw_call_metadata_count(h->call);
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_call_metadata_at(h->call, i, &k, &kl, &v, &vl);
    lua_pushlstring(L, k, kl);
    if (lua_rawget(L, -2) == LUA_TNIL) { /* the first value wins */
      lua_pop(L, 1);
      lua_pushlstring(L, k, kl);
      lua_pushlstring(L, v, vl);
      lua_rawset(L, -3);
    } else {
      lua_pop(L, 1);
    }
  }
}

static const luaL_Reg ctx_methods[] = {
    {"remaining", ctx_remaining},       {"cancelled", ctx_cancelled},
    {"set_header", ctx_set_header},     {"set_trailer", ctx_set_trailer},
    {"on_cancel", ctx_on_cancel},       {"metadata_values", ctx_metadata_values},
    {NULL, NULL},
};

/* ctx fields are made on first use and cached in the userdata's user value,
 * so a handler that reads none of them pays for none. */
static int ctx_index(lua_State *L) {
  handle *hd = luaL_checkudata(L, 1, MT_CTX);
  const char *key = luaL_checkstring(L, 2);
  /* methods first */
  luaL_getmetatable(L, MT_CTX);
  lua_getfield(L, -1, "__methods");
  if (lua_getfield(L, -1, key) != LUA_TNIL) return 1;
  lua_pop(L, 3);
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  if (lua_getfield(L, -1, key) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  if (!hd->h) return luaL_error(L, "the call has ended");
  mw_hcall *h = hd->h;
  if (strcmp(key, "method") == 0) {
    lua_pushstring(L, h->m->path);
  } else if (strcmp(key, "peer") == 0) {
    lua_pushstring(L, mw_call_peer(h->call));
  } else if (strcmp(key, "metadata") == 0) {
    push_metadata(L, h);
  } else if (strcmp(key, "deadline") == 0) {
    double d = mw_call_deadline(h->call);
    if (d == 0) {
      lua_pushnil(L); /* no deadline; not cached */
      return 1;
    }
    lua_pushnumber(L, d);
  } else if (strcmp(key, "values") == 0) {
    lua_newtable(L);
  } else {
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, key);
  return 1;
}

enum { HANDLE_CTX, HANDLE_STREAM };

static void push_handle(lua_State *L, mw_hcall *h, int which) {
  handle *hd = lua_newuserdatauv(L, sizeof *hd, 1); /* cache table: lazily */
  hd->h = h;
  /* The metatable by a registry ref the pool keeps: an integer index, not a
   * lookup by name on every call. */
  int *ref = &h->pool->mt_ref[which];
  if (*ref <= 0) {
    luaL_getmetatable(L, which == HANDLE_CTX ? MT_CTX : MT_STREAM);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
  lua_setmetatable(L, -2);
}

/* --- stream ------------------------------------------------------------------ */

static int recv_k(lua_State *L, int status, lua_KContext kctx);
static int send_k(lua_State *L, int status, lua_KContext kctx);

static mw_hcall *check_stream_call(lua_State *L) {
  mw_hcall *h = check_live(L, 1, MT_STREAM);
  if (h->co != L)
    luaL_error(L, "stream functions must be called from the handler itself, "
                  "not from another coroutine");
  return h;
}

static int raise_cancelled(lua_State *L, mw_hcall *h) {
  double d = mw_call_deadline(h->call);
  struct timeval tv;
  gettimeofday(&tv, NULL);
  int expired = d != 0 && (double)tv.tv_sec + (double)tv.tv_usec * 1e-6 >= d;
  push_status(L, expired ? 4 : 1,
              expired ? "deadline exceeded" : "the call was cancelled");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "cancelled");
  return lua_error(L);
}

/* stream:recv() -> the next request message, or nil at the client's
 * half-close. Raises when the call is cancelled. */
static int stream_recv(lua_State *L) {
  mw_hcall *h = check_stream_call(L);
  if (h->m->kind != MW_CLIENT_STREAMING && h->m->kind != MW_BIDI_STREAMING)
    return luaL_error(L, "%s is not a client- or bidi-streaming method", h->m->path);
  if (mw_call_cancelled(h->call)) return raise_cancelled(L, h);
  if (h->has_first) {
    h->has_first = 0;
    char err[MW_CODEC_ERRLEN];
    upb_Arena *arena = call_arena(h);
    if (!arena) return luaL_error(L, "out of memory");
    int rc = mw_codec_decode_push(L, h->first, h->first_len, h->m->input, arena,
                                  err, sizeof err);
    free(h->first);
    h->first = NULL;
    if (rc != 0) {
      push_status(L, 3, err);
      return lua_error(L);
    }
    return 1;
  }
  if (h->half_closed) {
    lua_pushnil(L);
    return 1;
  }
  mw_call_recv(h->call);
  wait_for(h, WAIT_RECV);
  return lua_yieldk(L, 0, 0, recv_k);
}

static int recv_k(lua_State *L, int status, lua_KContext kctx) {
  mw_hcall *h = current(L);
  if (h->woke_cancelled) return raise_cancelled(L, h);
  /* on_message pushed either the decoded message or nil, or a status error
   * (a message that did not decode) with `true` above it. */
  if (lua_gettop(L) >= 2 && lua_toboolean(L, -1) && is_status(L, -2)) {
    lua_pop(L, 1);
    return lua_error(L);
  }
  return 1;
}

/* stream:send(msg): queues one response; suspends while the queue is full. */
static int stream_send(lua_State *L) {
  mw_hcall *h = check_stream_call(L);
  if (h->m->kind != MW_SERVER_STREAMING && h->m->kind != MW_BIDI_STREAMING)
    return luaL_error(L, "%s is not a server- or bidi-streaming method", h->m->path);
  if (mw_call_cancelled(h->call)) return raise_cancelled(L, h);
  luaL_checktype(L, 2, LUA_TTABLE);
  char err[MW_CODEC_ERRLEN];
  /* A scratch arena per message keeps a long stream's memory flat. */
  char mem[256];
  upb_Arena *a = upb_Arena_Init(mem, sizeof mem, &upb_alloc_global);
  int room = send_table(h, L, 2, a, err, sizeof err);
  upb_Arena_Free(a);
  if (room < 0) return luaL_error(L, "stream:send: %s", err);
  if (room) return 0;
  wait_for(h, WAIT_WRITABLE);
  return lua_yieldk(L, 0, 0, send_k);
}

static int send_k(lua_State *L, int status, lua_KContext kctx) {
  mw_hcall *h = current(L);
  if (h->woke_cancelled) return raise_cancelled(L, h);
  return 0;
}

static int iter_next(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  return stream_recv(L);
}

/* for msg in stream:iter() do ... end */
static int stream_iter(lua_State *L) {
  luaL_checkudata(L, 1, MT_STREAM);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, iter_next, 1);
  return 1;
}

static const luaL_Reg stream_methods[] = {
    {"recv", stream_recv}, {"send", stream_send}, {"iter", stream_iter},
    {NULL, NULL},
};

static void make_metatables(lua_State *L) {
  if (luaL_newmetatable(L, MT_STATUS)) {
    lua_pushcfunction(L, status_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, MT_CTX)) {
    luaL_newlib(L, ctx_methods);
    lua_setfield(L, -2, "__methods");
    lua_pushcfunction(L, ctx_index);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, MT_STREAM)) {
    luaL_newlib(L, stream_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

/* --- states and scripts ----------------------------------------------------- */

static char lua_dir[PATH_MAX];

const char *mw_host_lua_dir(void) {
  if (lua_dir[0]) return lua_dir;
  const char *env = getenv("MOONWIRE_LUA_DIR");
  if (env && *env) {
    snprintf(lua_dir, sizeof lua_dir, "%s", env);
    return lua_dir;
  }
  snprintf(lua_dir, sizeof lua_dir, "%s", MW_SOURCE_LUA_DIR);
  return lua_dir;
}

static int open_core(lua_State *L) { return mw_host_open_core(L); }

void mw_host_close_state(lua_State *L) {
  if (!L) return;
  void *a = NULL;
  lua_getallocf(L, &a);
  lua_close(L);
  mw_lalloc_free(a);
}

lua_State *mw_host_new_state(mw_gen *g, int worker, mw_lua_mem *mem,
                             const char *const *dirs, size_t n_dirs) {
  mw_lalloc *a = mw_lalloc_new(mem);
  lua_State *L = a ? lua_newstate(mw_lalloc_fn, a) : NULL;
  if (!L) {
    mw_lalloc_free(a);
    return NULL;
  }
  set_current(L, NULL);
  luaL_openlibs(L);
  /* Calls leave short-lived garbage: the generational collector keeps its
   * cost per call low. A minor collection walks every coroutine of the pool
   * whatever the garbage, so it runs when the heap has grown by 100 % rather
   * than Lua's default 20 %: with 4 KiB requests that cut the collector's
   * share of a call by about 2,400 instructions. */
  lua_gc(L, LUA_GCGEN, 100, 0);
  lua_pushlightuserdata(L, g);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_gen);
  /* package.path: the Lua library, then each service directory. */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *lib = mw_host_lua_dir();
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", lib, lib);
  luaL_addvalue(&b);
  for (size_t i = 0; i < n_dirs; i++) {
    lua_pushfstring(L, ";%s/?.lua;%s/?/init.lua", dirs[i], dirs[i]);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_getglobal(L, "package");
  lua_insert(L, -2);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, open_core);
  lua_setfield(L, -2, "moonwire.core");
  lua_pop(L, 2);
  lua_pushinteger(L, worker);
  lua_setfield(L, LUA_REGISTRYINDEX, "moonwire.worker");
  pool_init(L);
  return L;
}


static int lua_file_filter(const struct dirent *e) {
  return e->d_name[0] != '.' && mw_has_suffix(e->d_name, ".lua");
}

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (is_status(L, 1)) {
      luaL_tolstring(L, 1, NULL);
      msg = lua_tostring(L, -1);
    } else {
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* The first line of a traceback: the message itself. */
static void add_first_line(mw_diag *diag, const char *msg) {
  const char *nl = strchr(msg, '\n');
  mw_diag_add(diag, "%.*s", nl ? (int)(nl - msg) : (int)strlen(msg), msg);
}

static int run_script(lua_State *L, const char *path, mw_diag *diag) {
  lua_pushcfunction(L, msgh);
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    mw_diag_add(diag, "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return -1;
  }
  if (lua_pcall(L, 0, 0, -2) != LUA_OK) {
    add_first_line(diag, lua_tostring(L, -1));
    lua_pop(L, 2);
    return -1;
  }
  lua_pop(L, 1);
  return 0;
}

static void method_list(lua_State *L, const upb_ServiceDef *sd) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; i < upb_ServiceDef_MethodCount(sd); i++) {
    if (i) luaL_addstring(&b, ", ");
    luaL_addstring(&b, upb_MethodDef_Name(upb_ServiceDef_Method(sd, i)));
  }
  luaL_pushresult(&b);
}

/* Checks the handler tables the scripts declared; fills handlers[]. */
static int resolve_handlers(lua_State *L, mw_gen *g, int *handlers, mw_diag *diag) {
  int bad = 0;
  const upb_DefPool *pool = mw_schema_pool(g->schema);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, REG_SERVICES);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, REG_SERVICE_FILES);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    const char *svc = lua_tostring(L, -2);
    const upb_ServiceDef *sd = upb_DefPool_FindServiceByName(pool, svc);
    lua_getfield(L, -3, svc);
    const char *file = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_Debug ar;
      int line = 0;
      if (lua_isfunction(L, -1)) {
        lua_pushvalue(L, -1);
        if (lua_getinfo(L, ">S", &ar)) line = ar.linedefined;
      }
      if (lua_type(L, -2) != LUA_TSTRING) {
        mw_diag_add(diag, "%s: the handler table of %s has a key that is not a method name",
                    file, svc);
        bad = 1;
      } else {
        const char *name = lua_tostring(L, -2);
        const upb_MethodDef *md = upb_ServiceDef_FindMethodByName(sd, name);
        if (!md) {
          method_list(L, sd);
          mw_diag_add(diag, "%s:%d: %s has no method '%s' (methods: %s)", file,
                      line, svc, name, lua_tostring(L, -1));
          lua_pop(L, 1);
          bad = 1;
        } else if (!lua_isfunction(L, -1)) {
          mw_diag_add(diag, "%s: handler %s.%s must be a function, not a %s",
                      file, svc, name, luaL_typename(L, -1));
          bad = 1;
        } else {
          char path[1024];
          snprintf(path, sizeof path, "/%s/%s", svc, name);
          const mw_method *m = mw_gen_find(g, path, strlen(path));
          if (m) {
            lua_pushvalue(L, -1);
            handlers[mw_gen_method_index(g, m)] = luaL_ref(L, LUA_REGISTRYINDEX);
          }
        }
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return bad ? -1 : 0;
}

/* Runs fn on every service script: the top-level regular *.lua files of
 * each dir, in alphabetical order. Returns how many failed; an unreadable
 * dir counts, and is reported unless quiet_dirs. */
typedef int (*script_fn)(lua_State *L, const char *path, mw_diag *diag);

static int for_each_script(lua_State *L, const char *const *dirs, size_t n_dirs,
                           script_fn fn, int quiet_dirs, mw_diag *diag) {
  int bad = 0;
  for (size_t i = 0; i < n_dirs; i++) {
    struct dirent **list = NULL;
    int n = scandir(dirs[i], &list, lua_file_filter, alphasort);
    if (n < 0) {
      if (!quiet_dirs) mw_diag_add(diag, "%s: cannot read the directory", dirs[i]);
      bad++;
      continue;
    }
    for (int k = 0; k < n; k++) {
      char path[PATH_MAX];
      snprintf(path, sizeof path, "%s/%s", dirs[i], list[k]->d_name);
      struct stat st;
      if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && fn(L, path, diag) != 0) bad++;
      free(list[k]);
    }
    free(list);
  }
  return bad;
}

static int compile_only(lua_State *L, const char *path, mw_diag *diag) {
  int rc = luaL_loadfilex(L, path, "t");
  if (rc != LUA_OK) mw_diag_add(diag, "%s", lua_tostring(L, -1));
  lua_settop(L, 0);
  return rc != LUA_OK;
}

int mw_host_check_syntax(const char *const *dirs, size_t n_dirs, mw_diag *diag) {
  lua_State *L = luaL_newstate();
  if (!L) return 0;
  /* an unreadable dir was reported with the protos already */
  int bad = for_each_script(L, dirs, n_dirs, compile_only, 1, diag);
  lua_close(L);
  return bad;
}

int mw_host_load_scripts(lua_State *L, mw_gen *g, const char *const *dirs,
                         size_t n_dirs, int *handlers, mw_diag *diag) {
  int bad = for_each_script(L, dirs, n_dirs, run_script, 0, diag) != 0;
  if (resolve_handlers(L, g, handlers, diag) != 0) bad = 1;
  lua_gc(L, LUA_GCCOLLECT);
  return bad ? -1 : 0;
}

/* --- the resume loop ---------------------------------------------------------- */

static void wait_for(mw_hcall *h, wait_kind w) {
  h->wait = w;
  h->woke_cancelled = 0;
  /* Once a handler waits, cancellation must be able to reach it. */
  mw_call_watch_cancel(h->call);
}

static void run_cancel_fns(mw_hcall *h) {
  if (h->cancel_ref == LUA_NOREF) return;
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cancel_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, h->cancel_ref);
  h->cancel_ref = LUA_NOREF;
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_pushcfunction(L, msgh);
    lua_rawgeti(L, -2, i);
    if (lua_pcall(L, 0, 0, -2) != LUA_OK) {
      mw_log(MW_LOG_ERROR, "%s: on_cancel function failed: %s", h->m->path,
             lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Ends the call with the status a finished or failed handler produced. */
static void finish_with_error(mw_hcall *h, int status) {
  lua_State *co = h->co;
  if (status == LUA_ERRMEM) {
    h->oom = 1;
    mw_log(MW_LOG_ERROR, "%s: handler ran out of memory", h->m->path);
    mw_call_finish(h->call, 8, "handler ran out of memory", NULL, 0);
    return;
  }
  if (is_status(co, -1)) {
    lua_getfield(co, -1, "code");
    int code = (int)lua_tointeger(co, -1);
    lua_getfield(co, -2, "message");
    const char *msg = lua_tostring(co, -1);
    if (code == 0) code = 2; /* an error must not read as success */
    mw_call_finish(h->call, code, msg ? msg : "", NULL, 0);
    lua_pop(co, 2);
    return;
  }
  unsigned long id = __atomic_add_fetch(&internal_error_seq, 1, __ATOMIC_RELAXED);
  const char *msg = lua_tostring(co, -1);
  luaL_traceback(h->L, co, msg ? msg : luaL_typename(co, -1), 0);
  char idbuf[32];
  snprintf(idbuf, sizeof idbuf, "%lu", id);
  const char *keys[] = {"method", "error_id", "error"};
  const char *vals[] = {h->m->path, idbuf, lua_tostring(h->L, -1)};
  mw_log_fields(MW_LOG_ERROR, "handler error", 3, keys, vals);
  lua_pop(h->L, 1);
  char client[96];
  snprintf(client, sizeof client, "internal error in the handler (error id %lu)", id);
  mw_call_finish(h->call, 13, client, NULL, 0);
}

static void finish_ok(mw_hcall *h, int nres) {
  lua_State *co = h->co;
  if (h->m->kind == MW_SERVER_STREAMING || h->m->kind == MW_BIDI_STREAMING) {
    mw_call_finish(h->call, 0, NULL, NULL, 0);
    return;
  }
  if (nres < 1 || !lua_istable(co, -nres)) {
    mw_log(MW_LOG_ERROR, "%s: the handler returned %s instead of a response table",
           h->m->path, nres < 1 ? "nothing" : luaL_typename(co, -nres));
    mw_call_finish(h->call, 13, "the handler returned no response", NULL, 0);
    return;
  }
  char err[MW_CODEC_ERRLEN];
  upb_Arena *arena = call_arena(h);
  if (!arena) {
    mw_call_finish(h->call, 8, "out of memory", NULL, 0);
    return;
  }
  int rc = send_table(h, co, lua_absindex(co, -nres), arena, err, sizeof err);
  if (rc < 0) {
    if (rc == -2) {
      mw_call_finish(h->call, 8, "out of memory", NULL, 0);
      return;
    }
    mw_log(MW_LOG_ERROR, "%s: invalid response: %s", h->m->path, err);
    char msg[MW_CODEC_ERRLEN + 32];
    snprintf(msg, sizeof msg, "invalid response: %s", err);
    mw_call_finish(h->call, 13, msg, NULL, 0);
    return;
  }
  mw_call_finish(h->call, 0, NULL, NULL, 0);
}

static double wall_now(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/* Stops a handler that runs past its deadline or its CPU budget without
 * waiting. Once it has fired it fires on every instruction, in every
 * coroutine of the handler, so that pcall cannot swallow the stop. */
static void budget_hook(lua_State *L, lua_Debug *ar) {
  mw_hcall *h = tl_running;
  if (!h) return;
  if (!h->kill_code) {
    double deadline = mw_call_deadline(h->call);
    double budget = mw_call_gen(h->call)->handler_cpu_s;
    if (deadline != 0 && wall_now() >= deadline) {
      h->kill_code = 4;
    } else if (budget > 0 && mw_now() - tl_run_start > budget) {
      h->kill_code = 8;
    } else {
      return;
    }
  }
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  if (L != h->co) lua_sethook(h->co, budget_hook, LUA_MASKCOUNT, 1);
  push_status(L, h->kill_code,
              h->kill_code == 4 ? "deadline exceeded while the handler was running"
                                : "the handler ran past its CPU budget");
  lua_error(L);
}

static void resume(mw_hcall *h, int nargs) {
  int nres = 0;
  h->wait = WAIT_NONE;
  mw_hcall *outer = tl_running;
  double outer_start = tl_run_start;
  tl_running = h;
  tl_run_start = mw_now();
  int st = lua_resume(h->co, h->L, nargs, &nres);
  tl_running = outer;
  tl_run_start = outer_start;
  if (h->kill_code) {
    /* Whatever the coroutine did with the stop, the call ends with it. */
    h->finished = 1;
    mw_log(MW_LOG_WARN, "%s: handler stopped: %s", h->m->path,
           h->kill_code == 4 ? "deadline exceeded while running"
                             : "ran past limits.handler_cpu_ms without waiting");
    mw_call_finish(h->call, h->kill_code,
                   h->kill_code == 4 ? "deadline exceeded"
                                     : "the handler ran past its CPU budget",
                   NULL, 0);
    return;
  }
  if (st == LUA_YIELD) {
    if (h->wait != WAIT_NONE) return; /* a moonwire wait: resumed later */
    lua_pop(h->co, nres);
    lua_pushstring(h->co, "the handler yielded outside a moonwire wait "
                          "(coroutine.yield at the top level of a handler)");
    st = LUA_ERRRUN;
  }
  h->finished = 1;
  if (st == LUA_OK) {
    /* A finished coroutine reports its whole stack as results: the anchors
     * below the handler are not among them. */
    finish_ok(h, nres - h->anchors);
  } else {
    finish_with_error(h, st);
  }
  /* Drop the results, keep the anchors. A coroutine that failed keeps its
   * stack as it is: settop could run its pending __close handlers. */
  if (st == LUA_OK) lua_settop(h->co, h->anchors);
}

static void on_timer(void *arg) {
  mw_hcall *h = arg;
  h->timer = 0;
  if (h->wait != WAIT_TIMER) return;
  resume(h, 0);
  mw_call_flush(h->call);
}

static int sleep_k(lua_State *L, int status, lua_KContext kctx) {
  mw_hcall *h = current(L);
  if (h->woke_cancelled || mw_call_cancelled(h->call)) return raise_cancelled(L, h);
  return 0;
}

/* --- handing state to the next generation ---------------------------------------- */

#define MW_HANDOFF_DEPTH 32

/* Copies the plain value at index idx of `from` onto `to`: nil, booleans,
 * numbers, strings and tables of those (no cycles). Returns NULL, or what
 * could not be copied. */
static const char *copy_value(lua_State *from, int idx, lua_State *to, int depth) {
  idx = lua_absindex(from, idx);
  switch (lua_type(from, idx)) {
  case LUA_TNIL: lua_pushnil(to); return NULL;
  case LUA_TBOOLEAN: lua_pushboolean(to, lua_toboolean(from, idx)); return NULL;
  case LUA_TNUMBER:
    if (lua_isinteger(from, idx)) {
      lua_pushinteger(to, lua_tointeger(from, idx));
    } else {
      lua_pushnumber(to, lua_tonumber(from, idx));
    }
    return NULL;
  case LUA_TSTRING: {
    size_t len;
    const char *str = lua_tolstring(from, idx, &len);
    lua_pushlstring(to, str, len);
    return NULL;
  }
  case LUA_TTABLE: {
    if (depth >= MW_HANDOFF_DEPTH) return "a table nested too deep (or a cycle)";
    if (!lua_checkstack(from, 3) || !lua_checkstack(to, 3)) return "too deep";
    lua_newtable(to);
    lua_pushnil(from);
    while (lua_next(from, idx)) {
      const char *bad = copy_value(from, -2, to, depth + 1);
      if (!bad) bad = copy_value(from, -1, to, depth + 1);
      if (bad) {
        lua_pop(from, 2);
        return bad;
      }
      lua_rawset(to, -3);
      lua_pop(from, 1);
    }
    return NULL;
  }
  default: return luaL_typename(from, idx);
  }
}

void mw_host_on_generation(mw_gen *old, mw_gen *next, int worker) {
  if (worker >= old->n_states || worker >= next->n_states) return;
  lua_State *from = old->states[worker], *to = next->states[worker];
  int top_from = lua_gettop(from), top_to = lua_gettop(to);
  if (lua_rawgetp(to, LUA_REGISTRYINDEX, &key_on_restore) != LUA_TFUNCTION) goto out;
  if (lua_rawgetp(from, LUA_REGISTRYINDEX, &key_on_reload) == LUA_TFUNCTION) {
    lua_pushcfunction(from, msgh);
    lua_insert(from, -2);
    if (lua_pcall(from, 0, 1, -2) != LUA_OK) {
      mw_log(MW_LOG_ERROR, "mw.on_reload function failed: %s", lua_tostring(from, -1));
      goto out;
    }
    const char *bad = copy_value(from, -1, to, 0);
    if (bad) {
      mw_log(MW_LOG_ERROR, "mw.on_reload returned what cannot be handed over (%s): "
                           "only nil, booleans, numbers, strings and tables of them", bad);
      lua_settop(to, top_to + 1);
      goto out;
    }
  } else {
    lua_pushnil(to);
  }
  lua_pushcfunction(to, msgh);
  lua_insert(to, -3);
  if (lua_pcall(to, 1, 0, -3) != LUA_OK)
    mw_log(MW_LOG_ERROR, "mw.on_restore function failed: %s", lua_tostring(to, -1));
out:
  lua_settop(from, top_from);
  lua_settop(to, top_to);
}

/* --- coroutine pool ------------------------------------------------------------ */

static co_pool *pool_of(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &key_pool);
  co_pool *p = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return p;
}

static void pool_init(lua_State *L) {
  co_pool *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->top_slot = 0;
  p->n_free = 0;
  p->mt_ref[0] = p->mt_ref[1] = 0;
  lua_newtable(L);
  p->table_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &key_pool);
}

/* A coroutine ready to run a handler; *slot receives its pool slot. */
static lua_State *co_acquire(lua_State *L, co_pool *p, int *slot) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->table_ref);
  lua_State *co = NULL;
  if (p->n_free > 0) {
    *slot = p->free_slots[--p->n_free];
    if (lua_rawgeti(L, -1, *slot) == LUA_TTHREAD) co = lua_tothread(L, -1);
    lua_pop(L, 1);
  } else {
    *slot = ++p->top_slot;
  }
  if (!co) {
    co = lua_newthread(L);
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, MW_HOOK_COUNT);
    lua_rawseti(L, -2, *slot);
  }
  lua_pop(L, 1);
  return co;
}

/* Gives a coroutine back: kept when it ended normally, dropped otherwise. */
static void co_release(lua_State *L, co_pool *p, lua_State *co, int slot,
                       int reusable) {
  set_current(co, NULL);
  if (!reusable) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->table_ref);
    lua_pushnil(L);
    lua_rawseti(L, -2, slot);
    lua_pop(L, 1);
  }
  if (p->n_free < MW_POOL_FREE_MAX) {
    p->free_slots[p->n_free++] = slot;
  } else if (slot == p->top_slot) {
    p->top_slot--; /* keep slots dense after a burst */
  } else if (reusable) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->table_ref);
    lua_pushnil(L);
    lua_rawseti(L, -2, slot); /* slot stays empty; the burst's peak is past */
    lua_pop(L, 1);
  }
}

/* --- hooks from the call layer ---------------------------------------------- */

void mw_host_on_call(mw_call *c, int handler_ref, const char *first,
                     size_t first_len, int has_first) {
  mw_gen *g = mw_call_gen(c);
  lua_State *L = g->states[mw_call_worker_id(c)];
  const mw_method *m = mw_call_method(c);
  /* Streaming requests decode into scratch arenas, so those calls skip the
   * embedded first block: an idle stream costs a kilobyte less. */
  int small = m->kind == MW_CLIENT_STREAMING || m->kind == MW_BIDI_STREAMING;
  mw_hcall *h = small ? malloc(offsetof(mw_hcall, arena_mem))
                      : tl_hcall_cached ? tl_hcall_cache[--tl_hcall_cached]
                                        : malloc(sizeof *h);
  if (!h) {
    mw_call_finish(c, 8, "out of memory", NULL, 0);
    return;
  }
  memset(h, 0, offsetof(mw_hcall, arena_mem));
  h->call = c;
  h->L = L;
  h->m = m;
  h->cancel_ref = LUA_NOREF;
  h->small = small;
  h->arena = small ? NULL : upb_Arena_Init(h->arena_mem, sizeof h->arena_mem, &upb_alloc_global);
  mw_call_set_host(c, h);

  h->pool = pool_of(L);
  lua_State *co = h->co = co_acquire(L, h->pool, &h->co_slot);
  set_current(co, h);
  /* Below the handler the stack anchors ctx (and stream) for the call's
   * whole life, whatever the handler does with them. */
  push_handle(co, h, HANDLE_CTX);
  h->anchors = 1;
  if (m->kind != MW_UNARY) {
    push_handle(co, h, HANDLE_STREAM);
    h->anchors = 2;
  }
  lua_rawgeti(co, LUA_REGISTRYINDEX, handler_ref);
  int nargs = 0;
  if (m->kind == MW_UNARY || m->kind == MW_SERVER_STREAMING) {
    char err[MW_CODEC_ERRLEN];
    if (mw_codec_decode_push(co, first, first_len, m->input, h->arena, err, sizeof err) != 0) {
      h->finished = 1;
      lua_settop(co, h->anchors);
      mw_call_finish(c, 3, err, NULL, 0);
      return;
    }
    nargs++;
  } else if (has_first) {
    h->first = malloc(first_len ? first_len : 1);
    if (h->first) memcpy(h->first, first, first_len);
    h->first_len = first_len;
    h->has_first = 1;
  }
  if (m->kind != MW_UNARY) {
    lua_pushvalue(co, 2); /* stream */
    nargs++;
  }
  lua_pushvalue(co, 1); /* ctx */
  resume(h, nargs + 1);
}

void mw_host_on_message(mw_call *c, int ok, const char *data, size_t len, int has_msg) {
  mw_hcall *h = mw_call_host(c);
  if (!h || h->finished || h->wait != WAIT_RECV) return;
  lua_State *co = h->co;
  if (!ok) {
    h->woke_cancelled = 1;
    resume(h, 0);
    return;
  }
  if (!has_msg) {
    h->half_closed = 1;
    lua_pushnil(co);
    resume(h, 1);
    return;
  }
  char err[MW_CODEC_ERRLEN];
  char mem[1024];
  upb_Arena *a = upb_Arena_Init(mem, sizeof mem, &upb_alloc_global);
  if (mw_codec_decode_push(co, data, len, h->m->input, a, err, sizeof err) != 0) {
    push_status(co, 3, err);
    lua_pushboolean(co, 1);
    upb_Arena_Free(a);
    resume(h, 2);
    return;
  }
  upb_Arena_Free(a);
  resume(h, 1);
}

void mw_host_on_writable(mw_call *c) {
  mw_hcall *h = mw_call_host(c);
  if (!h || h->finished || h->wait != WAIT_WRITABLE) return;
  resume(h, 0);
}

void mw_host_on_cancel(mw_call *c) {
  mw_hcall *h = mw_call_host(c);
  if (!h) return;
  run_cancel_fns(h); /* once, even when the handler already ended */
  if (h->finished) return;
  if (h->wait == WAIT_TIMER) {
    mw_timer_cancel(&mw_call_worker(c)->timers, h->timer);
    h->timer = 0;
  }
  /* A pending read is failed by the transport and wakes the handler itself;
   * every other wait (and a read that could not even start) is woken here. */
  if (h->wait == WAIT_TIMER || h->wait == WAIT_WRITABLE ||
      (h->wait == WAIT_RECV && !mw_call_reading(c))) {
    h->woke_cancelled = 1;
    resume(h, 0);
  }
}

void mw_host_on_done(mw_call *c) {
  mw_hcall *h = mw_call_host(c);
  if (!h) return;
  if (h->timer) mw_timer_cancel(&mw_call_worker(c)->timers, h->timer);
  lua_State *L = h->L, *co = h->co;
  for (int i = 1; i <= h->anchors; i++) {
    handle *hd = lua_touserdata(co, i);
    if (hd) hd->h = NULL; /* the handle may outlive the call: detach it */
  }
  int reusable = lua_status(co) == LUA_OK && !h->kill_code;
  if (reusable) lua_settop(co, 0);
  if (h->cancel_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, h->cancel_ref);
  co_release(L, h->pool, co, h->co_slot, reusable);
  /* What a handler that ran out of memory held is garbage now: give it back
   * before the next call needs it. */
  if (h->oom) lua_gc(L, LUA_GCCOLLECT);
  if (h->arena) upb_Arena_Free(h->arena);
  free(h->first);
  free(h->out_block);
  h->out_block = NULL;
  if (h->small) {
    free(h);
  } else if (tl_hcall_cached < MW_HCALL_CACHE) {
    tl_hcall_cache[tl_hcall_cached++] = h;
  } else {
    free(h);
  }
  mw_call_set_host(c, NULL);
}

void mw_host_thread_exit(void) {
  while (tl_hcall_cached) free(tl_hcall_cache[--tl_hcall_cached]);
}
