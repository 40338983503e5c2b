/* What moonwire.intercept needs of C: the wall clock (mw.now), the message
 * handler that keeps the traceback of an error raised inside next() (so the
 * log points at the raise, not at an interceptor's re-raise), and the
 * config's interceptor entries, pushed as tables at bind time. */
#include <lauxlib.h>

#include "base/mw_timer.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"
#include "lua/mw_lstate.h"

/* core.now() -> wall-clock seconds since the epoch, as a float. */
static int l_now(lua_State *L) {
  lua_pushnumber(L, mw_wall_now());
  return 1;
}

/* core.keep_traceback(err) -> err: the message handler of the xpcall
 * around every interceptor's next(). A non-status error gets its traceback
 * noted in the call's record the first time it passes (a re-raise of the
 * same value through outer layers keeps the first); finish_with_error
 * (mw_co.c) logs that one when the call ends with the same value. In C so
 * that it runs no Lua instruction: once the budget hook has stopped a
 * handler it fires on every one. */
static int l_keep_traceback(lua_State *L) {
  lua_settop(L, 1);
  mw_lcall *h = mw_co_current(L);
  if (!h || h->kill_code || mw_lstatus_is(L, 1)) return 1;
  if (h->tb_ref) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->tb_ref);
    lua_rawgeti(L, -1, 1);
    int same = lua_rawequal(L, 1, -1);
    lua_pop(L, 2);
    if (same) return 1;
    luaL_unref(L, LUA_REGISTRYINDEX, h->tb_ref);
    h->tb_ref = 0;
  }
  const char *msg = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : luaL_typename(L, 1);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  luaL_traceback(L, L, msg, 1);
  lua_rawseti(L, -2, 2);
  h->tb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static void push_value(lua_State *L, const mw_config_value *v) {
  luaL_checkstack(L, 4, "config value");
  switch (v->type) {
  case MW_CV_BOOL: lua_pushboolean(L, v->boolean); return;
  case MW_CV_INT: lua_pushinteger(L, (lua_Integer)v->i); return;
  case MW_CV_FLOAT: lua_pushnumber(L, v->f); return;
  case MW_CV_STRING: lua_pushlstring(L, v->s, v->len); return;
  case MW_CV_MAP:
    lua_createtable(L, 0, (int)v->n);
    for (size_t i = 0; i < v->n; i++) {
      if (v->items[i].type == MW_CV_NIL) continue;
      push_value(L, &v->items[i]);
      lua_setfield(L, -2, v->keys[i]);
    }
    return;
  case MW_CV_LIST:
    lua_createtable(L, (int)v->n, 0);
    for (size_t i = 0; i < v->n; i++) {
      push_value(L, &v->items[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return;
  default: lua_pushnil(L); return;
  }
}

static void push_entry(lua_State *L, const char *name, const char *where) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, where ? where : "config");
  lua_setfield(L, -2, "where");
}

/* Pushes one level's entries as {name=, opts=, where=} tables. A method's
 * or service's `deadline:` comes first, as the deadline interceptor. */
static void push_list(lua_State *L, const mw_config_interceptors *l,
                      const mw_method_config *m) {
  lua_createtable(L, (int)l->n + 1, 0);
  lua_Integer k = 1;
  if (m && (m->deadline_default_ms || m->deadline_max_ms)) {
    push_entry(L, "deadline", m->deadline_where);
    lua_createtable(L, 0, 2);
    if (m->deadline_default_ms) {
      lua_pushnumber(L, (double)m->deadline_default_ms / 1000.0);
      lua_setfield(L, -2, "default");
    }
    if (m->deadline_max_ms) {
      lua_pushnumber(L, (double)m->deadline_max_ms / 1000.0);
      lua_setfield(L, -2, "max");
    }
    lua_setfield(L, -2, "opts");
    lua_rawseti(L, -2, k++);
  }
  for (size_t i = 0; i < l->n; i++) {
    push_entry(L, l->v[i].name, l->v[i].where);
    push_value(L, &l->v[i].opts);
    lua_setfield(L, -2, "opts");
    lua_rawseti(L, -2, k++);
  }
}

/* core.config_interceptors() -> {global = entries, services = {name =
 * entries}, methods = {path = entries}, idempotency = {path or name =
 * entry}}, or nil outside a bind (or in a plain lua5.4). A method's or
 * service's `idempotency:` is an entry of its own (with a label naming the
 * key, for its problems): moonwire.service puts it innermost, next to the
 * handler, after every other interceptor of the method. */
static int l_config_interceptors(lua_State *L) {
  mw_lstate *st = mw_lstate_of(L);
  const mw_config *c = st ? st->cfg : NULL;
  if (!c) return 0;
  lua_createtable(L, 0, 4);
  push_list(L, &c->interceptors, NULL);
  lua_setfield(L, -2, "global");
  lua_newtable(L); /* idempotency */
  lua_newtable(L); /* services */
  lua_newtable(L); /* methods */
  for (size_t i = 0; i < c->n_methods; i++) {
    const mw_method_config *m = &c->methods[i];
    if (m->idempotency.type == MW_CV_MAP) {
      push_entry(L, "idempotency", m->idempotency_where);
      push_value(L, &m->idempotency);
      lua_setfield(L, -2, "opts");
      lua_pushfstring(L, "methods.%s.idempotency", m->path);
      lua_setfield(L, -2, "label");
      lua_setfield(L, -4, m->path);
    }
    if (!m->interceptors.n && !m->deadline_default_ms && !m->deadline_max_ms) continue;
    push_list(L, &m->interceptors, m);
    lua_setfield(L, m->service ? -3 : -2, m->path);
  }
  lua_setfield(L, -4, "methods");
  lua_setfield(L, -3, "services");
  lua_setfield(L, -2, "idempotency");
  return 1;
}

/* core.generation() -> the id of the generation this state serves, at
 * load time too (0 outside the runtime). */
static int l_generation(lua_State *L) {
  mw_lstate *st = mw_lstate_of(L);
  lua_pushinteger(L, st ? (lua_Integer)st->generation : 0);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"now", l_now},
    {"generation", l_generation},
    {"keep_traceback", l_keep_traceback},
    {"config_interceptors", l_config_interceptors},
    {NULL, NULL},
};

void mw_lintercept_open(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
