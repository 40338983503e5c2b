/* core.rate_take: the process-wide token buckets (base/mw_ratelimit.h) for
 * Lua. Every worker's state reaches the same table, so a limit holds per
 * process whichever worker a call lands on. */
#include <lauxlib.h>

#include "base/mw_ratelimit.h"
#include "lua/l_api.h"

/* core.rate_take(key, rate, burst [, cost]) -> true | false, retry_after.
 * key: a string naming the bucket (the caller puts the limiter's identity
 * in it); rate: tokens per second (> 0); burst: the bucket's size (>= cost);
 * cost: tokens this call takes (default 1). */
static int l_rate_take(lua_State *L) {
  size_t len;
  const char *key = luaL_checklstring(L, 1, &len);
  lua_Number rate = luaL_checknumber(L, 2), burst = luaL_checknumber(L, 3);
  lua_Number cost = luaL_optnumber(L, 4, 1);
  luaL_argcheck(L, rate > 0 && rate < 1e12, 2, "rate must be > 0");
  luaL_argcheck(L, cost > 0, 4, "cost must be > 0");
  luaL_argcheck(L, burst >= cost, 3, "burst must be >= cost");
  mw_ratelimit *rl = mw_ratelimit_shared();
  if (!rl) return luaL_error(L, "rate limit table: out of memory");
  double retry = 0;
  int ok = mw_ratelimit_take(rl, key, len, rate, burst, cost, mw_ratelimit_now(), &retry);
  lua_pushboolean(L, ok);
  if (ok) return 1;
  lua_pushnumber(L, retry);
  return 2;
}

void mw_lratelimit_open(lua_State *L) {
  lua_pushcfunction(L, l_rate_take);
  lua_setfield(L, -2, "rate_take");
}
