/* The Lua state of one worker in one generation, as the rest of lua/ sees
 * it: the lua_State, the handler coroutines' pool, the metatable refs and
 * the limits handlers run under. One record per state, kept in the state's
 * registry (as a full userdata, so lua_close frees it). */
#ifndef MW_LSTATE_H
#define MW_LSTATE_H

#include <lua.h>

#include "config/mw_config.h"
#include "schema/mw_methods.h"

/* Free pool slots kept at most; a burst past it shrinks back. */
#define MW_POOL_FREE_MAX 1024

typedef struct mw_lstate {
  lua_State *L;
  int worker;
  const mw_methods *methods; /* the generation's (NULL in a plain lua5.4) */
  double handler_cpu_s;      /* limits.handler_cpu_ms in seconds; 0: none */
  double handler_slice_s;    /* limits.handler_slice_ms in seconds; 0: never
                                preempted */
  /* The coroutine pool: every handler coroutine lives in the pool table at
   * a fixed slot, in use or not; free slots are stacked here. Coroutines
   * that ended normally are reused, others dropped and refilled on demand. */
  int pool_ref;    /* registry ref of the pool table */
  int top_slot;    /* highest slot used so far */
  int n_free;
  int free_slots[MW_POOL_FREE_MAX];
  int mt_ref[2];   /* registry refs of the ctx and stream metatables */
  unsigned generation;  /* the id of the generation the state serves */
  const mw_config *cfg; /* while the scripts run and the handlers are bound
                           only (borrowed): what core.config_interceptors and
                           core.client_config read; NULL after */
} mw_lstate;

/* The record of a state the VM made; NULL for any other state (moonwire.core
 * loaded into a plain lua5.4). lua/mw_lutil.c. */
mw_lstate *mw_lstate_of(lua_State *L);

#endif
