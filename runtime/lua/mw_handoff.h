/* Handing module state from one generation to the next: mw.on_reload and
 * mw.on_restore. */
#ifndef MW_HANDOFF_H
#define MW_HANDOFF_H

#include <lua.h>

/* A worker moves from state `from` to state `to` (the same worker's, one
 * generation later), on the worker's thread: runs from's on_reload function
 * and hands what it returns (plain data, copied) to to's on_restore
 * function. Failures are logged; both stacks are left as they were. */
void mw_handoff_run(lua_State *from, lua_State *to);

#endif
