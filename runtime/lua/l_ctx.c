/* ctx: the call's context handle. Its fields (method, service,
 * method_name, kind, peer, metadata, deadline, values, auth) are made on first use and cached in the
 * userdata's user value, so a handler that reads none of them pays for
 * none. */
#include <math.h>
#include <string.h>

#include <lauxlib.h>

#include "base/mw_log.h"
#include "base/mw_timer.h"
#include "core/mw_call.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"
#include "lua/mw_lutil.h"

mw_lcall *mw_handle_check(lua_State *L, int idx, const char *mt) {
  mw_handle *hd = luaL_checkudata(L, idx, mt);
  if (!hd->h) luaL_error(L, "the call has ended");
  return hd->h;
}

void mw_handle_push(lua_State *L, mw_lcall *h, int which) {
  mw_handle *hd = lua_newuserdatauv(L, sizeof *hd, 1); /* cache table: lazily */
  hd->h = h;
  h->handles[which] = hd;
  /* The metatable by a registry ref the state keeps: an integer index, not
   * a lookup by name on every call. */
  int *ref = &h->st->mt_ref[which];
  if (*ref <= 0) {
    luaL_getmetatable(L, which == MW_HANDLE_CTX ? MW_MT_CTX : MW_MT_STREAM);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, *ref);
  lua_setmetatable(L, -2);
}

mw_handle *mw_handle_self(lua_State *L, const char *mt) {
  mw_handle *hd = lua_touserdata(L, 1);
  int is = hd && lua_getmetatable(L, 1);
  if (is) {
    is = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
  }
  if (!is) luaL_typeerror(L, 1, mt);
  return hd;
}

/* ctx's __index and its methods hold its metatable as upvalue 1
 * (mw_lctx_open; a method call checks twice, in __index and in the
 * method). */
static mw_handle *ctx_handle(lua_State *L) { return mw_handle_self(L, MW_MT_CTX); }

static mw_lcall *ctx_call(lua_State *L) {
  mw_handle *hd = ctx_handle(L);
  if (!hd->h) luaL_error(L, "the call has ended");
  return hd->h;
}

static int ctx_remaining(lua_State *L) {
  mw_lcall *h = ctx_call(L);
  double d = mw_call_deadline(h->call);
  double left = d == 0 ? HUGE_VAL : d - mw_wall_now();
  lua_pushnumber(L, left > 0 ? left : 0);
  return 1;
}

/* ctx:io() -> {msgs_in=, msgs_out=, bytes_in=, bytes_out=, start=}: what
 * the call has moved so far. start is when it arrived on mw.now()'s clock
 * (wall seconds), so that mw.now() - start is its age; core keeps it on the
 * monotonic clock, which a clock step cannot disturb. */
static int ctx_io(lua_State *L) {
  mw_lcall *h = ctx_call(L);
  const mw_call_io *io = mw_call_io_of(h->call);
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)io->msgs_in);
  lua_setfield(L, -2, "msgs_in");
  lua_pushinteger(L, (lua_Integer)io->msgs_out);
  lua_setfield(L, -2, "msgs_out");
  lua_pushinteger(L, (lua_Integer)io->bytes_in);
  lua_setfield(L, -2, "bytes_in");
  lua_pushinteger(L, (lua_Integer)io->bytes_out);
  lua_setfield(L, -2, "bytes_out");
  lua_pushnumber(L, mw_wall_now() - (mw_now() - io->start));
  lua_setfield(L, -2, "start");
  lua_pushinteger(L, h->out_calls);
  lua_setfield(L, -2, "client_calls");
  lua_pushinteger(L, h->out_retries);
  lua_setfield(L, -2, "client_retries");
  return 1;
}

/* ctx:set_deadline(seconds) shortens the call's deadline to `seconds` from
 * now (never lengthens it); at the deadline the call ends with
 * DEADLINE_EXCEEDED as if the client had asked for it. */
static int ctx_set_deadline(lua_State *L) {
  mw_lcall *h = ctx_call(L);
  double secs = luaL_checknumber(L, 2);
  luaL_argcheck(L, secs == secs && secs >= 0, 2, "expected seconds >= 0");
  if (mw_call_set_deadline(h->call, mw_wall_now() + secs) != 0)
    return luaL_error(L, "ctx:set_deadline: out of memory");
  if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE) { /* ctx.deadline, cached */
    lua_pushnil(L);
    lua_setfield(L, -2, "deadline");
  }
  return 0;
}

static int ctx_cancelled(lua_State *L) {
  mw_handle *hd = ctx_handle(L);
  lua_pushboolean(L, !hd->h || mw_call_cancelled(hd->h->call));
  return 1;
}

static int set_md(lua_State *L, int trailer) {
  mw_lcall *h = ctx_call(L);
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

/* ctx:response_metadata() -> headers, trailers: what ctx:set_header and
 * ctx:set_trailer added so far, each an array of {key, value} in order
 * (the runtime's own grpc-* entries left out), for an interceptor that
 * keeps a reply to give again (idempotency). */
static int ctx_response_metadata(lua_State *L) {
  mw_lcall *h = ctx_call(L);
  for (int t = 0; t < 2; t++) {
    size_t n = mw_call_response_md_count(h->call, t);
    lua_createtable(L, (int)n, 0);
    lua_Integer k = 1;
    for (size_t i = 0; i < n; i++) {
      const char *key, *val;
      size_t kl, vl;
      mw_call_response_md_at(h->call, t, i, &key, &kl, &val, &vl);
      if (kl >= 5 && memcmp(key, "grpc-", 5) == 0) continue;
      lua_createtable(L, 2, 0);
      lua_pushlstring(L, key, kl);
      lua_rawseti(L, -2, 1);
      lua_pushlstring(L, val, vl);
      lua_rawseti(L, -2, 2);
      lua_rawseti(L, -2, k++);
    }
  }
  return 2;
}

static int ctx_on_cancel(lua_State *L) {
  mw_lcall *h = ctx_call(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (mw_call_cancelled(h->call)) {
    /* Already cancelled: the functions registered before have run; this
     * one runs now, as they did (an error is logged, not raised). */
    lua_settop(L, 2);
    if (mw_lutil_pcall(L, 0, 0) != LUA_OK)
      mw_log(MW_LOG_ERROR, "%s: on_cancel function failed: %s", h->m->path,
             lua_tostring(L, -1));
    return 0;
  }
  if (h->cancel_ref == LUA_NOREF) {
    lua_newtable(L);
    h->cancel_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cancel_ref);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* ctx:on_done(fn): fn(code) runs once the call has ended (its status
 * sent, or the client gone), with ctx still readable: ctx:io() then has
 * the final counts and code is the status the call ended with. Errors are
 * logged. For access logs and metrics, which want what the client got. */
static int ctx_on_done(lua_State *L) {
  mw_lcall *h = ctx_call(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (h->done_ref == 0) {
    lua_newtable(L);
    h->done_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->done_ref);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* ctx:metadata_values(key) -> every value of a repeated key, in order. */
static int ctx_metadata_values(lua_State *L) {
  mw_lcall *h = ctx_call(L);
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

static void push_metadata(lua_State *L, mw_lcall *h) {
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

/* Pushes the first value of request metadata key and 1, or nothing and 0. */
static int push_metadata_first(lua_State *L, mw_lcall *h, const char *key) {
  size_t n = mw_call_metadata_count(h->call), len = strlen(key);
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_call_metadata_at(h->call, i, &k, &kl, &v, &vl);
    if (kl == len && memcmp(k, key, len) == 0) {
      lua_pushlstring(L, v, vl);
      return 1;
    }
  }
  return 0;
}

/* ---- ctx.auth ----------------------------------------------------------- */

/* The auth context's properties ctx.auth shows, by kind. The single values
 * come first, then the lists, then the peer's certificate (read only when
 * asked for: auth.pem). */
enum {
  A_TRANSPORT, A_LEVEL, A_CN, A_SUBJECT, A_SPIFFE, A_REUSED,
  A_SANS, A_DNS, A_URI, A_EMAIL, A_IP, /* lists */
  A_PEM, A_KINDS
};
#define A_FIRST_LIST A_SANS
#define A_LAST_LIST A_IP

static const struct {
  const char *prop;  /* gRPC core's name (grpc_security_constants.h) */
  const char *field; /* ctx.auth's */
} auth_props[A_KINDS] = {
    {"transport_security_type", "transport"},
    {"security_level", "security_level"},
    {"x509_common_name", "common_name"},
    {"x509_subject", "subject"},
    {"peer_spiffe_id", "spiffe_id"},
    {"ssl_session_reused", "session_reused"},
    {"x509_subject_alternative_name", "sans"},
    {"peer_dns", "dns"},
    {"peer_uri", "uri"},
    {"peer_email", "email"},
    {"peer_ip", "ip"},
    {"x509_pem_cert", "pem"},
};

static int auth_kind(const char *name) {
  for (int k = 0; k < A_KINDS; k++)
    if (strcmp(name, auth_props[k].prop) == 0) return k;
  return -1;
}

/* One pass over the properties. The walk runs inside core, where a Lua
 * error must not unwind (mw_call_auth_each), so it only counts (first
 * pass) or copies into a block made before it (second pass). */
typedef struct auth_entry {
  int kind;
  size_t off, len; /* in data */
} auth_entry;

typedef struct auth_walk {
  int pem;             /* collect the certificate (1) or the rest (0) */
  size_t n, bytes;     /* entries and bytes seen so far */
  size_t cap_n, cap_bytes;
  auth_entry *e;       /* NULL while counting */
  char *data;
} auth_walk;

static void auth_visit(void *ud, const char *name, const char *value,
                       size_t len) {
  auth_walk *w = ud;
  int k = auth_kind(name);
  if (k < 0 || (k == A_PEM) != w->pem) return;
  if (w->e) {
    /* The context does not change during a call; this only guards. */
    if (w->n == w->cap_n || len > w->cap_bytes - w->bytes) return;
    w->e[w->n] = (auth_entry){k, w->bytes, len};
    memcpy(w->data + w->bytes, value, len);
  }
  w->n++;
  w->bytes += len;
}

/* Copies the properties of one pass into a userdata left on the stack
 * (the Lua collector owns it, so an error later leaks nothing). */
static auth_walk auth_collect(lua_State *L, mw_lcall *h, int pem) {
  auth_walk w = {.pem = pem};
  mw_call_auth_each(h->call, auth_visit, &w);
  size_t n = w.n, bytes = w.bytes;
  char *block = lua_newuserdatauv(L, n * sizeof(auth_entry) + bytes + 1, 0);
  w = (auth_walk){.pem = pem,
                  .cap_n = n,
                  .cap_bytes = bytes,
                  .e = (auth_entry *)(void *)block,
                  .data = block + n * sizeof(auth_entry)};
  mw_call_auth_each(h->call, auth_visit, &w);
  return w;
}

/* auth.pem, the first time it is read: the peer's certificate, put into
 * the table, after which the table drops this hook. Upvalue 1: the ctx. */
static int auth_index(lua_State *L) {
  if (lua_type(L, 2) != LUA_TSTRING || strcmp(lua_tostring(L, 2), "pem") != 0)
    return 0;
  mw_handle *hd = lua_touserdata(L, lua_upvalueindex(1));
  if (!hd || !hd->h) return luaL_error(L, "the call has ended");
  auth_walk w = auth_collect(L, hd->h, 1);
  if (w.n)
    lua_pushlstring(L, w.data + w.e[0].off, w.e[0].len);
  else
    lua_pushnil(L); /* the peer sent no certificate */
  lua_pushliteral(L, "pem");
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  lua_pushnil(L);
  lua_setmetatable(L, 1);
  return 1;
}

/* Pushes ctx.auth of the ctx at index 1: a table for a TLS call, nothing
 * (returns 0) for a plaintext one. */
static int push_auth(lua_State *L, mw_lcall *h) {
  auth_walk w = auth_collect(L, h, 0);
  int block = lua_gettop(L);
  const auth_entry *tr = NULL;
  for (size_t i = 0; i < w.n && !tr; i++)
    if (w.e[i].kind == A_TRANSPORT) tr = &w.e[i];
  int tls = tr && tr->len == 3 &&
            (memcmp(w.data + tr->off, "ssl", 3) == 0 ||
             memcmp(w.data + tr->off, "tls", 3) == 0);
  if (!tls) {
    lua_pop(L, 1);
    return 0;
  }
  lua_createtable(L, 0, A_KINDS);
  int t = lua_gettop(L);
  for (int k = A_FIRST_LIST; k <= A_LAST_LIST; k++) { /* empty when none */
    lua_newtable(L);
    lua_setfield(L, t, auth_props[k].field);
  }
  for (size_t i = 0; i < w.n; i++) {
    const auth_entry *e = &w.e[i];
    const char *v = w.data + e->off;
    if (e->kind == A_REUSED) {
      lua_pushboolean(L, e->len == 4 && memcmp(v, "true", 4) == 0);
      lua_setfield(L, t, auth_props[e->kind].field);
    } else if (e->kind >= A_FIRST_LIST && e->kind <= A_LAST_LIST) {
      lua_getfield(L, t, auth_props[e->kind].field);
      lua_pushlstring(L, v, e->len);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      lua_pop(L, 1);
    } else {
      lua_pushlstring(L, v, e->len);
      lua_setfield(L, t, auth_props[e->kind].field);
    }
  }
  /* pem on demand: a metatable per table, its __index holding the ctx. */
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, auth_index, 1);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, t);
  lua_remove(L, block);
  return 1;
}

static const luaL_Reg ctx_methods[] = {
    {"remaining", ctx_remaining},     {"cancelled", ctx_cancelled},
    {"set_header", ctx_set_header},
    {"set_trailer", ctx_set_trailer}, {"on_cancel", ctx_on_cancel},
    {"metadata_values", ctx_metadata_values},
    {"io", ctx_io},                   {"set_deadline", ctx_set_deadline},
    {"on_done", ctx_on_done},         {"response_metadata", ctx_response_metadata},
    {NULL, NULL},
};

static int ctx_index(lua_State *L) {
  mw_handle *hd = ctx_handle(L);
  const char *key = luaL_checkstring(L, 2);
  /* methods first (upvalue 2): [ctx, key, method] */
  if (lua_getfield(L, lua_upvalueindex(2), key) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  /* then the cache: [ctx, key, cache] */
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  if (lua_getfield(L, -1, key) != LUA_TNIL) {
    /* false: a field known to be absent (ctx.auth of a plaintext call) */
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) lua_pushnil(L);
    return 1;
  }
  lua_pop(L, 1);
  if (!hd->h) return luaL_error(L, "the call has ended");
  mw_lcall *h = hd->h;
  if (strcmp(key, "method") == 0) {
    lua_pushstring(L, h->m->path);
  } else if (strcmp(key, "service") == 0) {
    lua_pushstring(L, h->m->service);
  } else if (strcmp(key, "method_name") == 0) {
    lua_pushstring(L, h->m->name);
  } else if (strcmp(key, "kind") == 0) {
    static const char *const kinds[] = {"unary", "server_stream", "client_stream",
                                        "bidi_stream"};
    lua_pushstring(L, kinds[h->m->kind & 3]);
  } else if (strcmp(key, "peer") == 0) {
    lua_pushstring(L, mw_call_peer(h->call));
  } else if (strcmp(key, "protocol") == 0) {
    lua_pushstring(L, mw_call_protocol(h->call));
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
  } else if (strcmp(key, "last_event_id") == 0 || strcmp(key, "resume") == 0) {
    unsigned long long off;
    char epoch[17];
    if (key[0] == 'l') {
      if (!push_metadata_first(L, h, "last-event-id")) {
        lua_pushboolean(L, 0); /* cached as absent */
        lua_setfield(L, -2, key);
        lua_pushnil(L);
        return 1;
      }
    } else if (!mw_lsessions_last_event_id(h, &off, epoch)) {
      lua_pushboolean(L, 0);
      lua_setfield(L, -2, key);
      lua_pushnil(L);
      return 1;
    } else {
      lua_createtable(L, 0, 2);
      lua_pushinteger(L, (lua_Integer)off);
      lua_setfield(L, -2, "offset");
      lua_pushstring(L, epoch);
      lua_setfield(L, -2, "epoch");
    }
  } else if (strcmp(key, "auth") == 0) {
    if (!push_auth(L, h)) {
      lua_pushboolean(L, 0); /* cached as absent; read as nil */
      lua_setfield(L, -2, key);
      lua_pushnil(L);
      return 1;
    }
  } else {
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, key); /* [ctx, key, cache, value] */
  return 1;
}

/* core.ctx_metadata_first(ctx, key) -> ctx.metadata[key] (the first value
 * of a request metadata key, or nil) without building ctx.metadata: for an
 * interceptor that reads one key per call. Anything but a ctx is indexed
 * as Lua would (specs pass tables). */
static int l_ctx_metadata_first(lua_State *L) {
  size_t len;
  const char *key = luaL_checklstring(L, 2, &len);
  mw_handle *hd = luaL_testudata(L, 1, MW_MT_CTX);
  if (!hd) {
    lua_getfield(L, 1, "metadata");
    lua_getfield(L, -1, key);
    return 1;
  }
  if (!hd->h) return luaL_error(L, "the call has ended");
  size_t n = mw_call_metadata_count(hd->h->call);
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_call_metadata_at(hd->h->call, i, &k, &kl, &v, &vl);
    if (kl == len && memcmp(k, key, len) == 0) {
      lua_pushlstring(L, v, vl);
      return 1;
    }
  }
  lua_pushnil(L);
  return 1;
}

/* core.ctx_values_peek(ctx) -> ctx.values once something has made it, else
 * nil (without making it): whether an interceptor before left values. */
static int l_ctx_values_peek(lua_State *L) {
  if (!luaL_testudata(L, 1, MW_MT_CTX)) {
    lua_getfield(L, 1, "values");
    return 1;
  }
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pushnil(L);
    return 1;
  }
  lua_getfield(L, -1, "values");
  return 1;
}

/* core.ctx_response_counts(ctx) -> how many headers and trailers
 * ctx:response_metadata() would list now, without listing them (what an
 * interceptor notes before next(), to keep only what was added inside).
 * Anything but a ctx: the lengths of its response_metadata(). */
static int l_ctx_response_counts(lua_State *L) {
  mw_handle *hd = luaL_testudata(L, 1, MW_MT_CTX);
  if (!hd) {
    lua_settop(L, 1);
    lua_getfield(L, 1, "response_metadata");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2);
    lua_pushinteger(L, (lua_Integer)luaL_len(L, 2));
    lua_pushinteger(L, (lua_Integer)luaL_len(L, 3));
    return 2;
  }
  if (!hd->h) return luaL_error(L, "the call has ended");
  for (int t = 0; t < 2; t++) {
    size_t n = mw_call_response_md_count(hd->h->call, t), k = 0;
    for (size_t i = 0; i < n; i++) {
      const char *key, *val;
      size_t kl, vl;
      mw_call_response_md_at(hd->h->call, t, i, &key, &kl, &val, &vl);
      if (!(kl >= 5 && memcmp(key, "grpc-", 5) == 0)) k++;
    }
    lua_pushinteger(L, (lua_Integer)k);
  }
  return 2;
}

void mw_lctx_open(lua_State *L) {
  lua_pushcfunction(L, l_ctx_response_counts);
  lua_setfield(L, -2, "ctx_response_counts");
  lua_pushcfunction(L, l_ctx_metadata_first);
  lua_setfield(L, -2, "ctx_metadata_first");
  lua_pushcfunction(L, l_ctx_values_peek);
  lua_setfield(L, -2, "ctx_values_peek");
  if (luaL_newmetatable(L, MW_MT_CTX)) { /* [core, mt] */
    lua_pushvalue(L, -1); /* upvalue 1 of ctx_index and of each method */
    luaL_newlibtable(L, ctx_methods);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, ctx_methods, 1); /* [core, mt, mt, methods] */
    lua_pushcclosure(L, ctx_index, 2);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
