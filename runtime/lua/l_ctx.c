/* ctx: the call's context handle. Its fields (method, peer, metadata,
 * deadline, values) are made on first use and cached in the userdata's user
 * value, so a handler that reads none of them pays for none. */
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

static int ctx_remaining(lua_State *L) {
  mw_lcall *h = mw_handle_check(L, 1, MW_MT_CTX);
  double d = mw_call_deadline(h->call);
  double left = d == 0 ? HUGE_VAL : d - mw_wall_now();
  lua_pushnumber(L, left > 0 ? left : 0);
  return 1;
}

static int ctx_cancelled(lua_State *L) {
  mw_handle *hd = luaL_checkudata(L, 1, MW_MT_CTX);
  lua_pushboolean(L, !hd->h || mw_call_cancelled(hd->h->call));
  return 1;
}

static int set_md(lua_State *L, int trailer) {
  mw_lcall *h = mw_handle_check(L, 1, MW_MT_CTX);
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
  mw_lcall *h = mw_handle_check(L, 1, MW_MT_CTX);
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

/* ctx:metadata_values(key) -> every value of a repeated key, in order. */
static int ctx_metadata_values(lua_State *L) {
  mw_lcall *h = mw_handle_check(L, 1, MW_MT_CTX);
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

static const luaL_Reg ctx_methods[] = {
    {"remaining", ctx_remaining},     {"cancelled", ctx_cancelled},
    {"set_header", ctx_set_header},
    {"set_trailer", ctx_set_trailer}, {"on_cancel", ctx_on_cancel},
    {"metadata_values", ctx_metadata_values}, {NULL, NULL},
};

static int ctx_index(lua_State *L) {
  mw_handle *hd = luaL_checkudata(L, 1, MW_MT_CTX);
  const char *key = luaL_checkstring(L, 2);
  /* methods first: [ctx, key, mt, methods] */
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "__methods");
  if (lua_getfield(L, -1, key) != LUA_TNIL) return 1;
  lua_pop(L, 3);
  /* then the cache: [ctx, key, cache] */
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  if (lua_getfield(L, -1, key) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  if (!hd->h) return luaL_error(L, "the call has ended");
  mw_lcall *h = hd->h;
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
  lua_setfield(L, -3, key); /* [ctx, key, cache, value] */
  return 1;
}

void mw_lctx_open(lua_State *L) {
  if (luaL_newmetatable(L, MW_MT_CTX)) { /* [core, mt] */
    luaL_newlib(L, ctx_methods);
    lua_setfield(L, -2, "__methods");
    lua_pushcfunction(L, ctx_index);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
