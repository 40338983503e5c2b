/* stream: recv, send and iter for streaming handlers, as waits on the
 * call (lua/mw_co.h). A read is asked for only when the handler waits for
 * one; a send suspends the handler only while the call's queue is full. */
#include <stdlib.h>

#include <lauxlib.h>

#include "base/mw_status.h"
#include "codec/mw_codec.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"

/* The call behind a stream handle known to be one. */
static mw_lcall *stream_of(lua_State *L, const mw_handle *hd) {
  mw_lcall *h = hd->h;
  if (!h) luaL_error(L, "the call has ended");
  if (h->co != L)
    luaL_error(L, "stream functions must be called from the handler itself, "
                  "not from another coroutine");
  return mw_co_check(L, h, "stream functions");
}

/* The stream's methods hold its metatable as upvalue 1 (mw_lstream_open;
 * two checks a message in a bidi echo). */
static mw_handle *check_handle(lua_State *L) { return mw_handle_self(L, MW_MT_STREAM); }

static mw_lcall *check_stream(lua_State *L) { return stream_of(L, check_handle(L)); }

/* A pending read fails by itself when the call is cancelled; a read that
 * could not even start needs the wake. */
static int recv_cancel(mw_lcall *h, int ending) { return !mw_call_reading(h->call); }
static const mw_wait_ops recv_wait = {"stream:recv", recv_cancel};

void (*mw_lstream_relay_in)(mw_lcall *h, int ok, const char *data, size_t len, int has_msg);

void mw_lstream_on_message(mw_lcall *h, int ok, const char *data, size_t len,
                           int has_msg) {
  if (h->relay_in == MW_RELAY_ARMED && mw_lstream_relay_in) {
    mw_lstream_relay_in(h, ok, data, len, has_msg);
    return;
  }
  if (h->wait != &recv_wait) return;
  lua_State *co = h->co;
  if (!ok) {
    mw_co_wake(h, MW_WAKE_CANCELLED, 0);
    return;
  }
  if (!has_msg) {
    h->half_closed = 1;
    lua_pushnil(co);
    mw_co_wake(h, MW_WAKE_OK, 1);
    return;
  }
  char err[MW_CODEC_ERRLEN];
  char mem[1024];
  upb_Arena *a = upb_Arena_Init(mem, sizeof mem, &upb_alloc_global);
  int rc = mw_codec_decode_push(co, data, len, h->m->input, a, err, sizeof err);
  upb_Arena_Free(a);
  if (rc != 0) {
    mw_lstatus_push(co, MW_STATUS_INVALID_ARGUMENT, err);
    mw_co_wake(h, MW_WAKE_RAISE, 1);
    return;
  }
  mw_co_wake(h, MW_WAKE_OK, 1);
}

/* stream:recv() -> the next request message, or nil at the client's
 * half-close. Raises when the call is cancelled. */
static int recv_on(lua_State *L, mw_lcall *h) {
  if (h->m->kind != MW_KIND_CLIENT_STREAMING && h->m->kind != MW_KIND_BIDI_STREAMING)
    return luaL_error(L, "%s is not a client- or bidi-streaming method", h->m->path);
  if (h->relay_in != MW_RELAY_NONE)
    return luaL_error(L, "stream:recv: this call's requests are read by a relay");
  if (h->has_first) {
    h->has_first = 0;
    char err[MW_CODEC_ERRLEN];
    upb_Arena *arena = mw_co_arena(h);
    if (!arena) return luaL_error(L, "out of memory");
    int rc = mw_codec_decode_push(L, h->first, h->first_len, h->m->input, arena,
                                  err, sizeof err);
    free(h->first);
    h->first = NULL;
    if (rc != 0) {
      mw_lstatus_push(L, MW_STATUS_INVALID_ARGUMENT, err);
      return lua_error(L);
    }
    return 1;
  }
  if (h->half_closed) {
    lua_pushnil(L);
    return 1;
  }
  mw_call_recv(h->call);
  return mw_co_wait(L, h, &recv_wait);
}

static int stream_recv(lua_State *L) { return recv_on(L, check_stream(L)); }

static int send_cancel(mw_lcall *h, int ending) { return 1; }
static const mw_wait_ops send_wait = {"stream:send", send_cancel};

void mw_lstream_on_writable(mw_lcall *h) {
  if (h->wait == &send_wait) mw_co_wake(h, MW_WAKE_OK, 0);
}

/* stream:send(msg): queues one response; suspends while the queue is full. */
static int stream_send(lua_State *L) {
  mw_lcall *h = check_stream(L);
  if (h->m->kind != MW_KIND_SERVER_STREAMING && h->m->kind != MW_KIND_BIDI_STREAMING)
    return luaL_error(L, "%s is not a server- or bidi-streaming method", h->m->path);
  luaL_checktype(L, 2, LUA_TTABLE);
  char err[MW_CODEC_ERRLEN];
  /* A scratch arena per message keeps a long stream's memory flat. */
  char mem[256];
  upb_Arena *a = upb_Arena_Init(mem, sizeof mem, &upb_alloc_global);
  int room = mw_co_send_table(h, L, 2, a, err, sizeof err);
  upb_Arena_Free(a);
  if (room < 0) return luaL_error(L, "stream:send: %s", err);
  if (room) return 0;
  return mw_co_wait(L, h, &send_wait);
}

/* The iterator's upvalue is the stream stream:iter was called on (checked
 * there). */
static int iter_next(lua_State *L) {
  lua_settop(L, 0);
  return recv_on(L, stream_of(L, lua_touserdata(L, lua_upvalueindex(1))));
}

/* for msg in stream:iter() do ... end */
static int stream_iter(lua_State *L) {
  check_handle(L);
  lua_settop(L, 1);
  lua_pushcclosure(L, iter_next, 1);
  return 1;
}

static const luaL_Reg stream_methods[] = {
    {"recv", stream_recv}, {"send", stream_send}, {"iter", stream_iter},
    {NULL, NULL},
};

void mw_lstream_open(lua_State *L) {
  if (luaL_newmetatable(L, MW_MT_STREAM)) {
    luaL_newlibtable(L, stream_methods);
    lua_pushvalue(L, -2); /* each method's upvalue: check_handle */
    luaL_setfuncs(L, stream_methods, 1);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
