/* mw.sleep: the smallest waiting API, and the template of every other one
 * (see lua/mw_co.h): check the context, arm the event, wait; the event
 * wakes the handler; cancellation disarms it. */
#include <lauxlib.h>

#include "lua/l_api.h"
#include "lua/mw_co.h"

static void on_timer(mw_call_timer *t) {
  mw_lcall *h = (mw_lcall *)((char *)t - offsetof(mw_lcall, timer));
  mw_co_wake(h, MW_WAKE_OK, 0);
}

static int sleep_cancel(mw_lcall *h, int ending) {
  mw_call_timer_cancel(&h->timer);
  return 1;
}

static const mw_wait_ops sleep_wait = {"mw.sleep", sleep_cancel};

/* mw.sleep(seconds): suspends only the calling handler. */
static int l_sleep(lua_State *L) {
  lua_Number secs = luaL_checknumber(L, 1);
  mw_lcall *h = mw_co_check(L, NULL, "mw.sleep");
  h->timer.fn = on_timer;
  if (mw_call_timer_start(h->call, &h->timer, secs > 0 ? secs : 0) != 0)
    return luaL_error(L, "out of memory");
  return mw_co_wait(L, h, &sleep_wait);
}

void mw_lsleep_open(lua_State *L) {
  lua_pushcfunction(L, l_sleep);
  lua_setfield(L, -2, "sleep");
}
