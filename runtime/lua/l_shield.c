/* mw.shield(seconds, fn, ...): runs fn so that a cancellation of the call
 * (the client gone, the deadline passed) does not interrupt it, for at
 * most `seconds`. Made for compensation: a pipeline's undo steps call
 * other services after the call that needed them has been cancelled.
 *
 * Inside the window, waits do not raise the cancelled error, the children
 * fn starts (outbound calls) are not stopped by the cancellation, and the
 * handler's deadline (what its budget hook and its children's deadlines
 * read, mw_co_deadline) is the later of the call's and the window's end.
 * When the window ends, by fn returning or by its time running out, a
 * cancellation held back is acted on (mw_co_unshield): what fn still waits
 * for is cancelled and its waits raise again. The CPU budget applies
 * throughout. The client has had its status from the moment of the
 * cancellation; what the handler returns afterwards is not sent. */
#include <lauxlib.h>
#include <stdlib.h>

#include "lua/l_api.h"
#include "lua/mw_co.h"

#define MW_SHIELD_MAX_S 3600.0

static void on_shield_timer(mw_call_timer *t) {
  mw_shield *s = (mw_shield *)((char *)t - offsetof(mw_shield, timer));
  mw_co_unshield(s->h);
}

/* Leaving the window: the enclosing window (if any) comes back, then fn's
 * results are returned or its error raised again. Stack: [outer until,
 * results... | error]. */
static int shield_k(lua_State *L, int status, lua_KContext k) {
  mw_lcall *h = (mw_lcall *)k;
  mw_shield *s = h->shield;
  if (s) {
    s->depth--;
    s->until = lua_tonumber(L, 1);
    mw_call_timer_cancel(&s->timer);
    if (s->depth > 0) {
      double left = s->until - mw_wall_now();
      /* Without memory for the timer the window still ends at the next
       * check of mw_co_shielded; only the wake at its end is missing. */
      (void)mw_call_timer_start(h->call, &s->timer, left > 0 ? left : 0);
    }
    mw_co_unshield(h);
  }
  if (status != LUA_OK && status != LUA_YIELD) return lua_error(L);
  return lua_gettop(L) - 1;
}

static int l_shield(lua_State *L) {
  lua_Number secs = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!(secs > 0 && secs <= MW_SHIELD_MAX_S))
    return luaL_argerror(L, 1, "seconds must be more than 0 and at most 3600");
  mw_lcall *h = mw_co_current(L);
  if (!h || h->finished || h->co != L)
    return luaL_error(L, "mw.shield must be called from the handler itself");
  if (!lua_isyieldable(L))
    return luaL_error(L, "mw.shield cannot run here: Lua cannot yield across this C call");
  if (!h->shield) {
    h->shield = calloc(1, sizeof *h->shield);
    if (!h->shield) return luaL_error(L, "out of memory");
    h->shield->h = h;
    h->shield->timer.fn = on_shield_timer;
  }
  mw_shield *s = h->shield;
  double now = mw_wall_now(), until = now + secs;
  /* A nested window never outlasts the one around it. */
  if (s->depth > 0 && s->until < until) until = s->until;
  lua_pushnumber(L, s->depth > 0 ? s->until : 0);
  lua_replace(L, 1); /* [outer until, fn, args...] */
  if (mw_call_timer_start(h->call, &s->timer, until - now) != 0) {
    if (s->depth > 0)
      (void)mw_call_timer_start(h->call, &s->timer, s->until - now);
    return luaL_error(L, "out of memory");
  }
  s->until = until;
  s->depth++;
  int st = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, (lua_KContext)h, shield_k);
  return shield_k(L, st, (lua_KContext)h);
}

void mw_lshield_open(lua_State *L) {
  lua_pushcfunction(L, l_shield);
  lua_setfield(L, -2, "shield");
}
