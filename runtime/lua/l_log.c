/* core.log and core.stats: the server's log and counters, seen from Lua. */
#include <lauxlib.h>

#include "base/mw_log.h"
#include "core/mw_call.h"
#include "trace/mw_otlp.h"
#include "lua/l_api.h"
#include "lua/mw_co.h"

/* core.log(level, message, fields) */
static int l_log(lua_State *L) {
  const char *lvl = luaL_checkstring(L, 1);
  int level = mw_log_level_parse(lvl);
  if (level < 0) luaL_argerror(L, 1, "level must be debug, info, warn or error");
  size_t msg_len;
  const char *msg = luaL_checklstring(L, 2, &msg_len);
  if (!mw_log_enabled(level)) return 0;
  const char *keys[32], *vals[32];
  size_t lens[32];
  char ints[32][24]; /* integers, written here rather than through snprintf */
  int n = 0;
  if (lua_istable(L, 3)) {
    lua_settop(L, 3);
    lua_pushnil(L);
    while (n < 32 && lua_next(L, 3)) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        keys[n] = lua_tostring(L, -2);
        if (lua_isinteger(L, -1)) {
          lua_Integer v = lua_tointeger(L, -1);
          unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
          char *end = ints[n] + sizeof ints[n], *p = end;
          do *--p = (char)('0' + u % 10); while (u /= 10);
          if (v < 0) *--p = '-';
          vals[n] = p;
          lens[n] = (size_t)(end - p);
        } else {
          vals[n] = luaL_tolstring(L, -1, &lens[n]); /* anchored on the stack */
          lua_insert(L, 4);                          /* below the key */
        }
        n++;
      }
      lua_pop(L, 1);
    }
  }
  mw_log_script(level, msg, msg_len, n, keys, vals, lens);
  return 0;
}

/* core.stats() -> {live_calls=, generation=, reloads=, reload_failures=,
 * lua_memory=, tracing = {exported=, dropped=, queued=, failed_requests=} (tracing on only)} as the server sees them now. Handlers only. */
static int l_stats(lua_State *L) {
  mw_lcall *h = mw_co_current(L);
  if (!h) return luaL_error(L, "mw.stats must be called from a handler");
  mw_server_stats st;
  mw_call_server_stats(h->call, &st);
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
  /* Only with tracing on: scripts that reply with this table as a message
   * keep working while it is off. */
  if (mw_otlp_running()) {
    mw_ltrace_push_stats(L);
    lua_setfield(L, -2, "tracing");
  }
  return 1;
}

static const luaL_Reg funcs[] = {{"log", l_log}, {"stats", l_stats}, {NULL, NULL}};

void mw_llog_open(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
