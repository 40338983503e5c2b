/* The Lua backend's side of a call: a handler coroutine started for a call
 * and the mw_call_ops that turn the call's events into wakes of it. */
#ifndef MW_LCALL_H
#define MW_LCALL_H

#include <stddef.h>

#include "core/mw_call.h"
#include "lua/mw_lstate.h"

/* fn_params for a function that takes whatever it is given: f(...), or
 * a C function. */
#define MW_LCALL_VARARG 255

/* Starts the handler (a registry ref in st) for call c: allocates the
 * call's record, attaches it to c, decodes the request of a unary or
 * server-streaming call and runs the handler until it first waits or ends.
 * fn_params is how many parameters the handler declares (MW_LCALL_VARARG
 * for any): ctx is made only when they reach its position, (req, ctx),
 * (req, stream, ctx) or (stream, ctx), since nothing else can reach it.
 * On failure the call is finished with a status instead. */
void mw_lcall_start(mw_lstate *st, int fn_ref, int fn_params, mw_call *c, const char *first,
                    size_t first_len, int has_first);

/* Frees what this thread cached of ended calls' records. */
void mw_lcall_thread_exit(void);

#endif
