/* Outbound calls from Lua: the C half of mw.client (lua/moonwire/client.lua
 * holds the policy: retries, what metadata propagates, the error objects).
 *
 * core.client_channel(target, tls) -> a channel userdata: where to connect
 *   and how, checked against client.allow at once. The connection itself is
 *   the worker's (core/mw_client.h caches one per worker and options).
 * core.client_deadline(timeout) -> the deadline of a child call: the
 *   smaller of now + timeout and the parent call's deadline less the margin.
 * core.client_unary(ch, path, req, deadline, md, wait_for_ready) -> waits,
 *   then res, or nil, code, message, details_bin, trailers.
 * core.client_start(...) -> a future: f:wait() gives the same; f:cancel().
 * core.client_open(ch, path, deadline, md, wait_for_ready) -> a stream:
 *   send, recv, close_send, cancel, headers.
 *
 * Every wait is a pending operation of the handler (lua/mw_co.h), and every
 * call is a child of the handler's call: cancelled with it, released when
 * its handler ends at the latest, so nothing runs on without a parent. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/mw_fs.h"
#include "base/mw_status.h"
#include "base/mw_timer.h"
#include "codec/mw_codec.h"
#include "core/mw_client.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"
#include "lua/mw_lstate.h"
#include "google/protobuf/descriptor.upb.h"
#include "upb/def.h"

#define MT_CHANNEL "moonwire.client.channel"
#define MT_FUTURE "moonwire.client.future"
#define MT_CSTREAM "moonwire.client.stream"

/* The margin a child's deadline keeps from its parent's (config
 * client.deadline_margin) and the metadata keys children inherit
 * (client.propagate): process-wide, set before any state runs. */
static double margin_s = 0.005;
static char **prop_keys; /* owned */
static size_t n_prop;

int mw_lclient_configure(double margin, const char *const *propagate, size_t n) {
  for (size_t i = 0; i < n_prop; i++) free(prop_keys[i]);
  free(prop_keys);
  prop_keys = NULL;
  n_prop = 0;
  margin_s = margin;
  if (!n) return 0;
  prop_keys = calloc(n, sizeof *prop_keys);
  if (!prop_keys) return -1;
  for (; n_prop < n; n_prop++) {
    prop_keys[n_prop] = strdup(propagate[n_prop]);
    if (!prop_keys[n_prop]) return -1;
  }
  return 0;
}

/* --- channels ------------------------------------------------------------- */

typedef struct lchannel {
  mw_channel_opts o; /* its strings are the fields below */
  char *target, *ca, *cert, *key, *server_name;
} lchannel;

static int channel_gc(lua_State *L) {
  lchannel *c = luaL_checkudata(L, 1, MT_CHANNEL);
  free(c->target);
  free(c->ca);
  free(c->cert);
  free(c->key);
  free(c->server_name);
  memset(c, 0, sizeof *c);
  return 0;
}

static int channel_tostring(lua_State *L) {
  lchannel *c = luaL_checkudata(L, 1, MT_CHANNEL);
  lua_pushfstring(L, "moonwire.client(%s)", c->target ? c->target : "?");
  return 1;
}

/* The PEM file at tls[field] into *out; raises when it cannot be read. */
static void read_pem(lua_State *L, int tls, const char *field, char **out) {
  if (lua_getfield(L, tls, field) == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  const char *path = luaL_checkstring(L, -1);
  size_t len;
  int err = 0;
  if (mw_fs_read(path, 1 << 20, out, &len, &err) != MW_FS_OK)
    luaL_error(L, "mw.client: cannot read tls.%s '%s': %s", field, path,
               err ? strerror(err) : "too large");
  lua_pop(L, 1);
}

static int l_client_channel(lua_State *L) {
  const char *target = luaL_checkstring(L, 1);
  char err[256];
  if (!mw_client_allowed(target, err, sizeof err)) return luaL_error(L, "mw.client: %s", err);
  lchannel *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, MT_CHANNEL);
  c->target = strdup(target);
  if (!c->target) return luaL_error(L, "out of memory");
  c->o.target = c->target;
  if (lua_toboolean(L, 2)) {
    c->o.tls = 1;
    if (lua_istable(L, 2)) {
      read_pem(L, 2, "ca", &c->ca);
      read_pem(L, 2, "cert", &c->cert);
      read_pem(L, 2, "key", &c->key);
      if (!c->cert != !c->key)
        return luaL_error(L, "mw.client: tls.cert and tls.key go together");
      if (lua_getfield(L, 2, "server_name") != LUA_TNIL) {
        c->server_name = strdup(luaL_checkstring(L, -1));
        if (!c->server_name) return luaL_error(L, "out of memory");
      }
      lua_pop(L, 1);
    }
    c->o.ca_pem = c->ca;
    c->o.cert_pem = c->cert;
    c->o.key_pem = c->key;
    c->o.server_name = c->server_name;
  }
  return 1;
}

/* core.client_deadline(timeout) -> deadline (epoch seconds) or nil, and
 * whether the parent's deadline decided it. */
static int l_client_deadline(lua_State *L) {
  double now = mw_wall_now();
  double d = 0;
  if (!lua_isnoneornil(L, 1)) {
    lua_Number t = luaL_checknumber(L, 1);
    if (!(t > 0)) return luaL_error(L, "timeout must be a positive number of seconds");
    d = now + t;
  }
  int parent = 0;
  mw_lcall *h = mw_co_current(L);
  if (h && !h->finished) {
    double pd = mw_co_deadline(h);
    if (pd > 0 && (d == 0 || pd - margin_s < d)) {
      d = pd - margin_s;
      parent = 1;
    }
  }
  if (d == 0) lua_pushnil(L);
  else lua_pushnumber(L, d);
  lua_pushboolean(L, parent);
  return 2;
}

/* core.in_handler() -> whether a handler's own coroutine runs this (and so
 * may wait). */
static int l_in_handler(lua_State *L) {
  mw_lcall *h = mw_co_current(L);
  lua_pushboolean(L, h && !h->finished && h->co == L);
  return 1;
}

/* core.wall_now() -> seconds since the epoch (deadlines are in it). */
static int l_wall_now(lua_State *L) {
  lua_pushnumber(L, mw_wall_now());
  return 1;
}

/* --- one outbound call ------------------------------------------------------ */

enum { W_NONE = 0, W_RESULT, W_RECV, W_SEND, W_RELAY };
/* lout.relay: the relay's read of the replies. */
enum { RELAY_IDLE = 0, RELAY_ASKED, RELAY_KEPT };

typedef struct lout {
  mw_lchild link;     /* in h's children while h runs */
  mw_lcall *h;        /* the parent; NULL once it ended or the call was
                         detached from it */
  mw_ccall *cc;       /* NULL once released */
  const mw_method *m; /* the generation's, which outlives h's handler */
  int sync;           /* made by client_unary: released as soon as its
                         wait ends (every record is a userdata's) */
  int waiting;        /* W_*: what the parent's handler waits for here */
  int done;           /* the status arrived */
  int sent_close;
  char *block;        /* a big request while it is encoded (owned: freed
                         once sent, or by the finalizer when Lua raised
                         through the encoder) */
  int relay;          /* RELAY_*: core.client_relay's read of the replies */
  char *relay_msg;    /* the reply it brought while the handler waited
                         elsewhere (owned) */
  size_t relay_len;
} lout;

static void out_child_cancel(mw_lchild *l) {
  lout *r = (lout *)l;
  mw_co_child_remove(r->h, l);
  r->h = NULL;
  if (!r->cc) return;
  if (r->sync && r->waiting) {
    mw_ccall_cancel(r->cc); /* the wait releases it */
  } else {
    mw_ccall_release(r->cc);
    r->cc = NULL;
  }
}

/* A call made by client_unary is over for its handler: the core record
 * goes now, not when the userdata is collected. */
static void out_done_sync(lout *r) {
  if (r->h) mw_co_child_remove(r->h, &r->link);
  r->h = NULL;
  if (r->cc) mw_ccall_release(r->cc);
  r->cc = NULL;
}

/* The trailers of the call as a table {key = value} (the last of a
 * repeated key wins; -bin values are the decoded bytes, as core gives
 * them). */
static void push_trailers(lua_State *L, mw_ccall *cc) {
  size_t n = mw_ccall_trailer_count(cc);
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_ccall_trailer_at(cc, i, &k, &kl, &v, &vl);
    lua_pushlstring(L, k, kl);
    lua_pushlstring(L, v, vl);
    lua_rawset(L, -3);
  }
}

/* nil, code, message, details_bin | nil, trailers: 5 values. */
static int push_failure(lua_State *L, mw_ccall *cc, int code, const char *msg, size_t mlen) {
  lua_pushnil(L);
  lua_pushinteger(L, code);
  lua_pushlstring(L, msg, mlen);
  int found = 0;
  if (cc) {
    size_t n = mw_ccall_trailer_count(cc);
    for (size_t i = 0; i < n; i++) {
      const char *k, *v;
      size_t kl, vl;
      mw_ccall_trailer_at(cc, i, &k, &kl, &v, &vl);
      if (kl == 23 && memcmp(k, "grpc-status-details-bin", 23) == 0) {
        lua_pushlstring(L, v, vl);
        found = 1;
        break;
      }
    }
  }
  if (!found) lua_pushnil(L);
  if (cc) push_trailers(L, cc);
  else lua_newtable(L);
  return 5;
}

static int push_lit_failure(lua_State *L, int code, const char *msg) {
  return push_failure(L, NULL, code, msg, strlen(msg));
}

/* Decodes a response with the method's output type onto L: 1, or the
 * failure's 5 values. */
static int push_message(lua_State *L, const mw_method *m, const char *data, size_t len) {
  char err[MW_CODEC_ERRLEN];
  char mem[1024];
  upb_Arena *a = upb_Arena_Init(mem, sizeof mem, &upb_alloc_global);
  int rc = mw_codec_decode_push(L, data, len, m->output, a, err, sizeof err);
  upb_Arena_Free(a);
  if (rc == 0) return 1;
  return push_failure(L, NULL, MW_STATUS_INTERNAL, err, strlen(err));
}

/* The outcome of a finished call onto L: the reply (unary), nil (a stream
 * that ended OK) or the failure. */
static int push_outcome(lua_State *L, lout *r) {
  if (!r->cc)
    return push_lit_failure(L, MW_STATUS_CANCELLED,
                            "cancelled: the call that made it was cancelled or ended");
  int code = mw_ccall_code(r->cc);
  if (code == MW_STATUS_OK) {
    if (r->m->kind != MW_KIND_UNARY) { /* a stream's messages came through recv */
      lua_pushnil(L);
      return 1;
    }
    const char *data;
    size_t len;
    if (mw_ccall_response(r->cc, &data, &len)) return push_message(L, r->m, data, len);
    return push_lit_failure(L, MW_STATUS_INTERNAL, "the server sent no response message");
  }
  size_t mlen;
  const char *msg = mw_ccall_message(r->cc, &mlen);
  return push_failure(L, r->cc, code, msg, mlen);
}

static const mw_wait_ops client_wait, client_recv_wait, client_send_wait, relay_wait;

/* Whether h's handler waits on r now. */
static int waits_on(const mw_lcall *h, const lout *r) {
  return h->wait_arg == r && (h->wait == &client_wait || h->wait == &client_recv_wait ||
                              h->wait == &client_send_wait);
}

/* The handler resumes as in an event of its own call (mw_call_run), so
 * that what it does to the call (finish it, send) starts at once. */
typedef struct wake_args {
  mw_lcall *h;
  mw_wake how;
  int n;
} wake_args;

static void do_wake(void *arg) {
  wake_args *w = arg;
  mw_co_wake(w->h, w->how, w->n);
}

static void wake_how(mw_lcall *h, mw_wake how, int n) {
  wake_args w = {h, how, n};
  mw_call_run(h->call, do_wake, &w);
}

static void wake(mw_lcall *h, int n) { wake_how(h, MW_WAKE_OK, n); }

/* What an event pushes for the handler, made under lua_pcall on the
 * state's main thread and moved onto the handler's coroutine: events run
 * outside lua_resume, where a memory error raised by the decoder would
 * have nowhere to land. */
typedef struct push_args {
  lout *r;
  const char *data; /* a message's bytes (msg), else the outcome */
  size_t len;
  int msg;
} push_args;

static int push_protected(lua_State *L) {
  push_args *a = lua_touserdata(L, 1);
  lua_pop(L, 1);
  return a->msg ? push_message(L, a->r->m, a->data, a->len) : push_outcome(L, a->r);
}

/* Moves what push_protected makes onto h's coroutine: the values (*ok), or
 * the error it raised (out of memory: the handler then ends
 * RESOURCE_EXHAUSTED). Returns how many values were moved. */
static int push_safely(mw_lcall *h, push_args *a, int *ok) {
  lua_State *L = h->st->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, push_protected);
  lua_pushlightuserdata(L, a);
  int rc = lua_pcall(L, 1, LUA_MULTRET, 0);
  int n = lua_gettop(L) - top;
  /* A C function has LUA_MINSTACK free slots: the 5 values at most fit. */
  lua_xmove(L, h->co, n);
  if (rc == LUA_ERRMEM) h->oom = 1;
  *ok = rc == LUA_OK;
  return n;
}

static void wake_pushed(mw_lcall *h, int ok, int n) {
  wake_how(h, ok ? MW_WAKE_OK : MW_WAKE_RAISE, n);
}

/* A relay's wait ends with nothing pushed: core.client_relay is called
 * again and takes what arrived. */
static void relay_wake(mw_lcall *h, lout *r) {
  r->waiting = 0;
  h->wait_arg = NULL;
  wake(h, 0);
}

static void ev_status(void *self) {
  lout *r = self;
  r->done = 1;
  r->relay = r->relay == RELAY_KEPT ? RELAY_KEPT : RELAY_IDLE;
  mw_lcall *h = r->h;
  if (h && h->wait == &relay_wait && h->wait_arg == r) {
    relay_wake(h, r);
    return;
  }
  if (!h || !r->waiting || !waits_on(h, r)) return;
  int w = r->waiting;
  r->waiting = 0;
  if (w == W_SEND) {
    lua_pushboolean(h->co, 0);
    wake(h, 1);
    return;
  }
  push_args a = {r, NULL, 0, 0};
  int ok, n = push_safely(h, &a, &ok);
  if (r->sync) out_done_sync(r); /* read: the core record can go */
  wake_pushed(h, ok, n);
}

static void ev_message(void *self, int ok, const char *data, size_t len, int has_msg) {
  lout *r = self;
  mw_lcall *h = r->h;
  if (r->relay == RELAY_ASKED) {
    r->relay = RELAY_IDLE;
    if (!ok || !has_msg) return; /* the status follows and wakes the relay */
    r->relay_msg = malloc(len ? len : 1);
    if (!r->relay_msg) {
      mw_ccall_cancel(r->cc); /* a reply we cannot keep */
      return;
    }
    memcpy(r->relay_msg, data, len);
    r->relay_len = len;
    r->relay = RELAY_KEPT;
    if (h && h->wait == &relay_wait && h->wait_arg == r) relay_wake(h, r);
    return;
  }
  if (!ok || !has_msg) return; /* the status follows and wakes the reader */
  if (!h || r->waiting != W_RECV || !waits_on(h, r)) return;
  r->waiting = 0;
  push_args a = {r, data, len, 1};
  int pushed, n = push_safely(h, &a, &pushed);
  if (!pushed || n != 1) mw_ccall_cancel(r->cc); /* a reply we cannot read */
  wake_pushed(h, pushed, n);
}

static void ev_writable(void *self) {
  lout *r = self;
  mw_lcall *h = r->h;
  if (!h || r->waiting != W_SEND || !waits_on(h, r)) return;
  r->waiting = 0;
  lua_pushboolean(h->co, 1);
  wake(h, 1);
}

static const mw_ccall_ops out_ops = {ev_message, ev_writable, ev_status};

/* The handler is cancelled or ends while it waits on an outbound call. */
static int client_cancel(mw_lcall *h, int ending) {
  lout *r = h->wait_arg;
  h->wait_arg = NULL;
  if (!r) return 1;
  r->waiting = 0;
  if (r->sync) out_done_sync(r);
  else if (r->cc) mw_ccall_cancel(r->cc);
  return 1;
}

static const mw_wait_ops client_wait = {"client:call", client_cancel};
static const mw_wait_ops client_recv_wait = {"client:recv", client_cancel};
static const mw_wait_ops client_send_wait = {"client:send", client_cancel};

static int wait_on(lua_State *L, mw_lcall *h, lout *r, int what) {
  r->waiting = what;
  h->wait_arg = r;
  return mw_co_wait(L, h, &client_wait);
}

/* --- starting --------------------------------------------------------------- */

#define MD_MAX 64 /* the caller's entries at most */
typedef struct md_args {
  const char *keys[MD_MAX + 40], *vals[MD_MAX + 40]; /* room for the inherited */
  size_t lens[MD_MAX + 40];
  size_t n;
  char attempts[24];
} md_args;

static int md_has(const md_args *md, const char *k, size_t kl) {
  for (size_t i = 0; i < md->n; i++)
    if (strlen(md->keys[i]) == kl && memcmp(md->keys[i], k, kl) == 0) return 1;
  return 0;
}

/* What a child inherits from its parent h: the trace context (the call's
 * own span when tracing made one, else the traceparent it came with) and
 * the configured keys, unless the caller set them itself. Values point
 * into the parent's metadata and keys are literals or the configured
 * list's: both outlive the start, which copies them. */
static void inherit_md(mw_lcall *h, md_args *md) {
  int own_tp = h->traceparent[0] != '\0';
  if (own_tp && !md_has(md, "traceparent", 11)) {
    md->keys[md->n] = "traceparent";
    md->vals[md->n] = h->traceparent;
    md->lens[md->n++] = 55;
  }
  size_t count = mw_call_metadata_count(h->call);
  for (size_t i = 0; i < count && md->n < MD_MAX + 40; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_call_metadata_at(h->call, i, &k, &kl, &v, &vl);
    const char *key = NULL;
    if (kl == 11 && memcmp(k, "traceparent", 11) == 0) key = own_tp ? NULL : "traceparent";
    else if (kl == 10 && memcmp(k, "tracestate", 10) == 0) key = "tracestate";
    else
      for (size_t j = 0; j < n_prop && !key; j++)
        if (strlen(prop_keys[j]) == kl && memcmp(prop_keys[j], k, kl) == 0) key = prop_keys[j];
    if (!key || md_has(md, key, kl)) continue;
    md->keys[md->n] = key;
    md->vals[md->n] = v;
    md->lens[md->n++] = vl;
  }
}

/* md at idx: a flat array {k1, v1, k2, v2, ...} (client.lua builds it). */
static void read_md(lua_State *L, int idx, md_args *md) {
  md->n = 0;
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  if (n / 2 > MD_MAX) luaL_error(L, "too many metadata entries (at most %d)", MD_MAX);
  for (lua_Integer i = 1; i + 1 <= n; i += 2) {
    lua_rawgeti(L, idx, i);
    lua_rawgeti(L, idx, i + 1);
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "metadata keys and values must be strings");
    const char *k = lua_tostring(L, -2), *v;
    size_t vl;
    v = lua_tolstring(L, -1, &vl);
    /* Both stay reachable from the table at idx while the call starts. */
    lua_pop(L, 2);
    md->keys[md->n] = k;
    md->vals[md->n] = v;
    md->lens[md->n] = vl;
    md->n++;
  }
}

static const mw_method *find_method(lua_State *L, const char *path, int want_stream) {
  mw_lstate *st = mw_lstate_of(L);
  const mw_method *m = st && st->methods ? mw_methods_find(st->methods, path, strlen(path)) : NULL;
  if (!m)
    luaL_error(L, "%s: no such method in the loaded protos (an outbound call's "
                  "types come from the .proto files the server loads)", path);
  int streaming = m->kind != MW_KIND_UNARY;
  if (want_stream != streaming)
    luaL_error(L, "%s is a %s method: %s", path, mw_kind_name(m->kind),
               streaming ? "open it as a stream" : "call it with call()");
  return m;
}

/* Starts r's call; raises on misuse, returns nil, code, msg... (5) through
 * *nfail on an expected failure (the target is down is not one: that is
 * the status; only a start that cannot happen). */
static int start_call(lua_State *L, lout *r, lchannel *ch, const char *path, int req_idx,
                      int dl_idx, int md_idx, int wfr_idx, int unary) {
  md_args md;
  read_md(L, md_idx, &md);
  /* After wait_for_ready: the attempt (1 first; a retry says so, gRFC A6)
   * and whether to inherit the parent's metadata. */
  lua_Integer attempt = luaL_optinteger(L, wfr_idx + 1, 1);
  int inherit = lua_isnoneornil(L, wfr_idx + 2) || lua_toboolean(L, wfr_idx + 2);
  mw_lcall *parent = mw_co_current(L);
  if (parent && parent->finished) parent = NULL;
  if (attempt > 1) {
    snprintf(md.attempts, sizeof md.attempts, "%lld", (long long)(attempt - 1));
    md.keys[md.n] = "grpc-previous-rpc-attempts";
    md.vals[md.n] = md.attempts;
    md.lens[md.n++] = strlen(md.attempts);
  }
  if (parent && inherit) inherit_md(parent, &md);
  double deadline = lua_isnoneornil(L, dl_idx) ? 0 : luaL_checknumber(L, dl_idx);
  if (deadline > 0 && deadline <= mw_wall_now())
    return push_lit_failure(L, MW_STATUS_DEADLINE_EXCEEDED,
                            "deadline exceeded before the call started");
  mw_ccall_start_args a = {.channel = &ch->o, .path = path, .deadline = deadline,
                           .wait_for_ready = lua_toboolean(L, wfr_idx),
                           .md_keys = md.keys, .md_vals = md.vals, .md_lens = md.lens,
                           .md_n = md.n, .ops = &out_ops, .self = r, .unary = unary};
  char stack[512];
  if (unary) {
    luaL_checktype(L, req_idx, LUA_TTABLE);
    char err[MW_CODEC_ERRLEN];
    char mem[512];
    upb_Arena *ar = upb_Arena_Init(mem, sizeof mem, &upb_alloc_global);
    size_t len;
    bool oom = false;
    const char *bytes = mw_codec_encode_buf(L, req_idx, r->m->input, ar, stack, sizeof stack,
                                            &r->block, &len, &oom, err, sizeof err);
    upb_Arena_Free(ar);
    if (!bytes) return luaL_error(L, "%s: bad request: %s", path, err);
    a.request = bytes;
    a.request_len = len;
  }
  a.md_n = md.n;
  char err[256];
  mw_lcall *h = parent;
  if (h) {
    h->out_calls++;
    if (attempt > 1) h->out_retries++;
    r->cc = mw_ccall_start(&a, err, sizeof err);
  } else {
    r->cc = mw_ccall_unary_blocking(&a, err, sizeof err);
  }
  free(r->block); /* core copied it */
  r->block = NULL;
  if (!r->cc) return luaL_error(L, "%s: %s", path, err);
  if (h) {
    r->h = h;
    mw_co_child_add(h, &r->link);
  } else {
    r->done = 1;
  }
  return 0;
}

/* A new record for a call of m, as a userdata with metatable mt on L. */
static lout *new_out(lua_State *L, const mw_method *m, const char *mt, int sync) {
  lout *r = lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);
  r->link.cancel = out_child_cancel;
  r->m = m;
  r->sync = sync;
  luaL_setmetatable(L, mt);
  return r;
}

/* core.client_unary(ch, path, req, deadline, md, wait_for_ready) */
static int l_client_unary(lua_State *L) {
  lchannel *ch = luaL_checkudata(L, 1, MT_CHANNEL);
  const char *path = luaL_checkstring(L, 2);
  const mw_method *m = find_method(L, path, 0);
  mw_lcall *h = mw_co_current(L);
  if (h || mw_co_running()) h = mw_co_check(L, h, "an outbound call");
  mw_lstate *st = mw_lstate_of(L);
  if (!h && st && !st->cfg)
    /* A worker runs this (an on_done or on_drain function): a blocking
     * call would stall every call on it. */
    return luaL_error(L, "%s: outbound calls wait, so they are made in handlers (or in "
                         "module code at load), not in on_done or on_drain functions", path);
  /* A userdata, so that a raise anywhere below leaves nothing behind; the
   * wait keeps it on the handler's stack while it runs. */
  lout *r = new_out(L, m, MT_FUTURE, 1);
  int n = start_call(L, r, ch, path, 3, 4, 5, 6, 1);
  if (n) return n;
  if (!h) { /* a blocking call outside a handler: already over */
    n = push_outcome(L, r);
    out_done_sync(r);
    return n;
  }
  return wait_on(L, h, r, W_RESULT);
}

static int l_client_start(lua_State *L) {
  lchannel *ch = luaL_checkudata(L, 1, MT_CHANNEL);
  const char *path = luaL_checkstring(L, 2);
  const mw_method *m = find_method(L, path, 0);
  mw_co_check(L, NULL, "a future (client:start)");
  lout *r = new_out(L, m, MT_FUTURE, 0);
  int n = start_call(L, r, ch, path, 3, 4, 5, 6, 1);
  return n ? n : 1;
}

static int out_gc(lua_State *L) {
  lout *r = lua_touserdata(L, 1);
  free(r->block);
  r->block = NULL;
  free(r->relay_msg);
  r->relay_msg = NULL;
  r->relay = RELAY_IDLE;
  if (r->h) mw_co_child_remove(r->h, &r->link);
  r->h = NULL;
  if (r->cc) mw_ccall_release(r->cc);
  r->cc = NULL;
  return 0;
}

/* The record at 1, usable by the running handler. */
static lout *check_out(lua_State *L, const char *mt, mw_lcall **hp) {
  lout *r = luaL_checkudata(L, 1, mt);
  mw_lcall *h = mw_co_check(L, NULL, "an outbound call");
  if (r->h && r->h != h)
    luaL_error(L, "this outbound call belongs to another call's handler");
  if (r->waiting) luaL_error(L, "this outbound call is already waited on");
  *hp = h;
  return r;
}

/* f:wait() -> res | nil, code, message, details_bin, trailers */
static int future_wait(lua_State *L) {
  mw_lcall *h;
  lout *r = check_out(L, MT_FUTURE, &h);
  if (r->done || !r->cc || !r->h) return push_outcome(L, r);
  return wait_on(L, h, r, W_RESULT);
}

static int out_cancel(lua_State *L) {
  lout *r = lua_touserdata(L, 1);
  if (!r || (!luaL_testudata(L, 1, MT_FUTURE) && !luaL_testudata(L, 1, MT_CSTREAM)))
    return luaL_argerror(L, 1, "an outbound call expected");
  if (r->cc) mw_ccall_cancel(r->cc);
  return 0;
}

/* --- streams ---------------------------------------------------------------- */

/* core.client_open(ch, path, deadline, md, wait_for_ready) -> stream */
static int l_client_open(lua_State *L) {
  lchannel *ch = luaL_checkudata(L, 1, MT_CHANNEL);
  const char *path = luaL_checkstring(L, 2);
  const mw_method *m = find_method(L, path, 1);
  mw_co_check(L, NULL, "a stream (client:stream)");
  lout *r = new_out(L, m, MT_CSTREAM, 0);
  int n = start_call(L, r, ch, path, 0, 3, 4, 5, 0);
  return n ? n : 1;
}

/* s:send(msg) -> true, or false when the call has ended (recv tells why).
 * Waits while the send queue is full. */
static int stream_send(lua_State *L) {
  mw_lcall *h;
  lout *r = check_out(L, MT_CSTREAM, &h);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (r->m->kind == MW_KIND_SERVER_STREAMING && r->sent_close)
    return luaL_error(L, "%s is server-streaming: it takes one request", r->m->path);
  if (r->sent_close) return luaL_error(L, "send after close_send");
  if (!r->cc || r->done) {
    lua_pushboolean(L, 0);
    return 1;
  }
  char err[MW_CODEC_ERRLEN];
  char stack[512];
  char mem[256];
  upb_Arena *ar = upb_Arena_Init(mem, sizeof mem, &upb_alloc_global);
  size_t len;
  bool oom = false;
  const char *bytes = mw_codec_encode_buf(L, 2, r->m->input, ar, stack, sizeof stack, &r->block,
                                          &len, &oom, err, sizeof err);
  upb_Arena_Free(ar);
  if (!bytes) return luaL_error(L, "%s: bad request: %s", r->m->path, err);
  int room = mw_ccall_send(r->cc, bytes, len);
  free(r->block); /* copied */
  r->block = NULL;
  if (r->m->kind == MW_KIND_SERVER_STREAMING) {
    mw_ccall_close_send(r->cc);
    r->sent_close = 1;
  }
  if (room < 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (room > 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  r->waiting = W_SEND;
  h->wait_arg = r;
  return mw_co_wait(L, h, &client_send_wait);
}

static int stream_close_send(lua_State *L) {
  lout *r = luaL_checkudata(L, 1, MT_CSTREAM);
  if (r->cc && !r->sent_close) mw_ccall_close_send(r->cc);
  r->sent_close = 1;
  return 0;
}

/* s:recv() -> msg, or nil at the end (OK), or nil, code, message,
 * details_bin, trailers. A client-streaming call's one reply comes the same
 * way, after close_send. */
static int stream_recv(lua_State *L) {
  mw_lcall *h;
  lout *r = check_out(L, MT_CSTREAM, &h);
  if (!r->cc || !r->h) return push_outcome(L, r);
  if (r->done) return push_outcome(L, r);
  if (mw_ccall_recv(r->cc) != 0) {
    /* The responses ended: the status comes (or came). */
    if (r->done) return push_outcome(L, r);
  }
  r->waiting = W_RECV;
  h->wait_arg = r;
  return mw_co_wait(L, h, &client_recv_wait);
}

/* s:headers() -> the response headers as a table (empty before the first
 * message). */
static int stream_headers(lua_State *L) {
  lout *r = luaL_checkudata(L, 1, MT_CSTREAM);
  lua_newtable(L);
  if (!r->cc) return 1;
  size_t n = mw_ccall_header_count(r->cc);
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_ccall_header_at(r->cc, i, &k, &kl, &v, &vl);
    lua_pushlstring(L, k, kl);
    lua_pushlstring(L, v, vl);
    lua_rawset(L, -3);
  }
  return 1;
}

/* --- relays ------------------------------------------------------------------ */

/* A proxy's two directions in one handler, which waits on one thing at a
 * time: core.client_relay keeps a read asked on each side (the handler's
 * requests, the outbound stream's replies) and returns whichever came
 * first, keeping the other for the next turn. Each side holds one message
 * at most, so a slow side slows the other through flow control instead of
 * buffering. The sends stay the handler's (stream:send, s:send), with
 * their own waits. */

static int relay_cancel(mw_lcall *h, int ending) { return client_cancel(h, ending); }
static const mw_wait_ops relay_wait = {"client:relay", relay_cancel};

static void relay_in_event(mw_lcall *h, int ok, const char *data, size_t len, int has_msg) {
  if (!ok) {
    h->relay_in = MW_RELAY_FAILED;
  } else if (!has_msg) {
    h->relay_in = MW_RELAY_END;
    h->half_closed = 1;
  } else {
    h->relay_msg = malloc(len ? len : 1);
    if (h->relay_msg) {
      memcpy(h->relay_msg, data, len);
      h->relay_len = len;
      h->relay_in = MW_RELAY_MSG;
    } else {
      h->relay_in = MW_RELAY_FAILED;
      h->oom = 1;
    }
  }
  if (h->wait == &relay_wait) {
    lout *r = h->wait_arg;
    if (r) r->waiting = 0;
    h->wait_arg = NULL;
    mw_co_wake(h, MW_WAKE_OK, 0); /* an event of h's own call */
  }
}

/* A request's bytes decoded onto L as "in", msg; raises INVALID_ARGUMENT
 * when they do not decode. Frees data. */
static int relay_push_in(lua_State *L, mw_lcall *h, char *data, size_t len) {
  char err[MW_CODEC_ERRLEN];
  char mem[1024];
  upb_Arena *a = upb_Arena_Init(mem, sizeof mem, &upb_alloc_global);
  lua_pushliteral(L, "in");
  int rc = mw_codec_decode_push(L, data, len, h->m->input, a, err, sizeof err);
  upb_Arena_Free(a);
  free(data);
  if (rc != 0) {
    mw_lstatus_push(L, MW_STATUS_INVALID_ARGUMENT, err);
    return lua_error(L);
  }
  return 2;
}

/* "out", nil, code, message, details_bin | nil, trailers: the outbound
 * call's end (code 0 when it ended OK). */
static int relay_push_end(lua_State *L, lout *r) {
  lua_pushliteral(L, "out");
  if (!r->cc)
    return 1 + push_lit_failure(L, MW_STATUS_CANCELLED,
                                "cancelled: the call that made it was cancelled or ended");
  size_t mlen;
  const char *msg = mw_ccall_message(r->cc, &mlen);
  return 1 + push_failure(L, r->cc, mw_ccall_code(r->cc), msg, mlen);
}

/* core.client_relay(s, stream) -> "in", request | "in", nil (the client
 * half-closed) | "out", reply | "out", nil, code, message, details_bin,
 * trailers (the outbound call ended) | nothing: something arrived, ask
 * again. s is an outbound stream, stream the handler's own (client- or
 * bidi-streaming). */
static int l_client_relay(lua_State *L) {
  mw_lcall *h;
  lout *r = check_out(L, MT_CSTREAM, &h);
  mw_lcall *in = mw_handle_check(L, 2, MW_MT_STREAM);
  if (in != h) return luaL_argerror(L, 2, "the running handler's own stream expected");
  if (h->m->kind != MW_KIND_CLIENT_STREAMING && h->m->kind != MW_KIND_BIDI_STREAMING)
    return luaL_error(L, "%s is not a client- or bidi-streaming method", h->m->path);
  if (h->has_first) {
    h->has_first = 0;
    char *first = h->first;
    h->first = NULL;
    return relay_push_in(L, h, first, h->first_len);
  }
  switch (h->relay_in) {
  case MW_RELAY_MSG: {
    char *data = h->relay_msg;
    h->relay_msg = NULL;
    h->relay_in = MW_RELAY_NONE;
    return relay_push_in(L, h, data, h->relay_len);
  }
  case MW_RELAY_END:
    h->relay_in = MW_RELAY_NONE;
    lua_pushliteral(L, "in");
    lua_pushnil(L);
    return 2;
  case MW_RELAY_FAILED:
    h->relay_in = MW_RELAY_NONE;
    if (h->oom) return luaL_error(L, "out of memory");
    return mw_co_raise_cancelled(L, h);
  default:
    break;
  }
  if (r->relay == RELAY_KEPT) {
    char *data = r->relay_msg;
    r->relay_msg = NULL;
    r->relay = RELAY_IDLE;
    lua_pushliteral(L, "out");
    int n = push_message(L, r->m, data, r->relay_len);
    free(data);
    return 1 + n;
  }
  if (!r->cc || !r->h || r->done) return relay_push_end(L, r);
  if (h->relay_in == MW_RELAY_NONE && !h->half_closed) {
    h->relay_in = MW_RELAY_ARMED;
    mw_call_recv(h->call);
  }
  /* -1 from recv: a read is asked already, or the replies ended and the
   * status is on its way; either wakes this wait. */
  if (r->relay == RELAY_IDLE && mw_ccall_recv(r->cc) == 0) r->relay = RELAY_ASKED;
  r->waiting = W_RELAY;
  h->wait_arg = r;
  return mw_co_wait(L, h, &relay_wait);
}

/* --- config ----------------------------------------------------------------- */

static void push_retry(lua_State *L, const mw_config_retry *r) {
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, r->max_attempts);
  lua_setfield(L, -2, "max_attempts");
  lua_pushnumber(L, (double)r->initial_backoff_ms / 1000.0);
  lua_setfield(L, -2, "initial_backoff");
  lua_pushnumber(L, (double)r->max_backoff_ms / 1000.0);
  lua_setfield(L, -2, "max_backoff");
  lua_pushnumber(L, r->multiplier);
  lua_setfield(L, -2, "multiplier");
  lua_newtable(L);
  for (int code = 1; code < MW_STATUS_COUNT; code++) {
    if (!(r->codes & (1u << code))) continue;
    lua_pushboolean(L, 1);
    lua_rawseti(L, -2, code);
  }
  lua_setfield(L, -2, "codes");
}

/* core.client_config() -> {propagate = {keys}, retry = policy, budget =
 * {tokens, ratio}, methods = {path = {idempotent, timeout, retry}}}, or
 * nil when no config is being loaded (a plain lua5.4, a handler). */
static int l_client_config(lua_State *L) {
  mw_lstate *st = mw_lstate_of(L);
  const mw_config *c = st ? st->cfg : NULL;
  if (!c) return 0;
  lua_createtable(L, 0, 4);
  lua_createtable(L, (int)c->client.propagate.n, 0);
  for (size_t i = 0; i < c->client.propagate.n; i++) {
    lua_pushstring(L, c->client.propagate.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "propagate");
  push_retry(L, &c->client.retry);
  lua_setfield(L, -2, "retry");
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, c->client.budget_tokens);
  lua_setfield(L, -2, "tokens");
  lua_pushnumber(L, c->client.budget_ratio);
  lua_setfield(L, -2, "ratio");
  lua_setfield(L, -2, "budget");
  lua_newtable(L);
  for (size_t i = 0; i < c->client.n_methods; i++) {
    const mw_config_client_method *m = &c->client.methods[i];
    lua_createtable(L, 0, 3);
    if (m->idempotent >= 0) {
      lua_pushboolean(L, m->idempotent);
      lua_setfield(L, -2, "idempotent");
    }
    if (m->timeout_ms) {
      lua_pushnumber(L, (double)m->timeout_ms / 1000.0);
      lua_setfield(L, -2, "timeout");
    }
    if (m->retry.set) {
      push_retry(L, &m->retry);
      lua_setfield(L, -2, "retry");
    }
    lua_setfield(L, -2, m->path);
  }
  lua_setfield(L, -2, "methods");
  return 1;
}

/* core.client_method(path) -> kind ("unary", ...), idempotent (the proto's
 * idempotency_level is IDEMPOTENT or NO_SIDE_EFFECTS), or nil when the
 * loaded protos do not have it. */
static int l_client_method(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mw_lstate *st = mw_lstate_of(L);
  const mw_method *m = st && st->methods ? mw_methods_find(st->methods, path, strlen(path)) : NULL;
  if (!m) return 0;
  lua_pushstring(L, mw_kind_name(m->kind));
  const google_protobuf_MethodOptions *o = upb_MethodDef_Options(m->def);
  int level = o ? google_protobuf_MethodOptions_idempotency_level(o) : 0;
  lua_pushboolean(L, level == 1 || level == 2);
  return 2;
}

static const luaL_Reg future_methods[] = {
    {"wait", future_wait}, {"cancel", out_cancel}, {NULL, NULL}};
static const luaL_Reg stream_methods[] = {
    {"send", stream_send},     {"recv", stream_recv},     {"close_send", stream_close_send},
    {"cancel", out_cancel},    {"headers", stream_headers}, {NULL, NULL}};

static void new_mt(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
  if (luaL_newmetatable(L, name)) {
    if (methods) {
      lua_newtable(L);
      luaL_setfuncs(L, methods, 0);
      lua_setfield(L, -2, "__index");
    }
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

void mw_lclient_open(lua_State *L) {
  new_mt(L, MT_CHANNEL, NULL, channel_gc);
  luaL_getmetatable(L, MT_CHANNEL);
  lua_pushcfunction(L, channel_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  new_mt(L, MT_FUTURE, future_methods, out_gc);
  new_mt(L, MT_CSTREAM, stream_methods, out_gc);
  mw_lstream_relay_in = relay_in_event;
  static const luaL_Reg fns[] = {
      {"client_channel", l_client_channel}, {"client_deadline", l_client_deadline},
      {"client_unary", l_client_unary},     {"client_start", l_client_start},
      {"client_open", l_client_open},       {"client_config", l_client_config},
      {"client_relay", l_client_relay},
      {"client_method", l_client_method},   {"wall_now", l_wall_now},
      {"in_handler", l_in_handler},
      {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
