/* Helpers at the bottom of lua/: the state's record (lua/mw_lstate.h) and
 * protected calls with a traceback. */
#ifndef MW_LUTIL_H
#define MW_LUTIL_H

#include <lua.h>

#include "lua/mw_lstate.h"

/* Makes L's record (zeroed but for L and its pool table) and keeps it in
 * L's registry; lua_close frees it. NULL when out of memory. */
mw_lstate *mw_lstate_new(lua_State *L);

/* lua_pcall with a message handler that adds a traceback: the function and
 * its nargs arguments are on top. On error, the message is left on top
 * (one value) and the status returned. */
int mw_lutil_pcall(lua_State *L, int nargs, int nres);

#endif
