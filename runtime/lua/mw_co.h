/* Handler coroutines: the per-call record, the coroutine pool, THE resume
 * loop and pending operations. This is the only place lua_resume is called.
 *
 * A waiting API (mw.sleep, stream:recv, stream:send, later client calls,
 * shared-state locks, session receives) follows one pattern, copied from
 * OpenResty's ngx.sleep:
 *   1. check the context (mw_co_check(L) gives the running call or raises);
 *   2. raise at once if the call is already cancelled (mw_co_check does);
 *   3. arm its event (a timer, a read) with the call record as the target;
 *   4. yield with mw_co_wait(L, h, &ops), ops holding its cancel function.
 * When the event happens, its handler pushes the results on h->co and calls
 * mw_co_wake(h, MW_WAKE_OK, nres). On cancellation the resume loop calls
 * ops->cancel and, when it says so, wakes the handler with
 * MW_WAKE_CANCELLED, which raises the cancelled error in the handler. */
#ifndef MW_CO_H
#define MW_CO_H

#include <lua.h>

#include "core/mw_call.h"
#include "lua/mw_lstate.h"
#include "upb/arena.h"

typedef struct mw_lcall mw_lcall;

/* Work a handler started that may outlive the wait it started in (an
 * outbound call: a future not waited for yet, an open stream). Linked in
 * its call's list while it runs; when the call is cancelled or its handler
 * ends, cancel runs for each (it must unlink the child, mw_co_child_remove)
 * so that nothing a call started runs on without it. */
typedef struct mw_lchild {
  struct mw_lchild *next, *prev;
  void (*cancel)(struct mw_lchild *c);
  int shielded; /* started inside mw.shield: a cancellation of the call
                   leaves it running until the shield ends */
} mw_lchild;

/* A kind of pending operation (one static instance per waiting API). */
typedef struct mw_wait_ops {
  const char *what; /* "mw.sleep", "stream:recv": for messages */
  /** The call was cancelled (ending == 0) or is ending for good (ending ==
   * 1: the handler will not run again) while its handler waits here: undo
   * what the operation armed. Returns 1 when the handler must be woken as
   * cancelled now, 0 when the operation still completes by itself (a
   * pending read that the transport fails). */
  int (*cancel)(mw_lcall *h, int ending);
} mw_wait_ops;

typedef enum mw_wake {
  MW_WAKE_OK = 0,        /* nres results pushed on h->co are returned */
  MW_WAKE_CANCELLED = 1, /* the cancelled error is raised in the handler */
  MW_WAKE_RAISE = 2,     /* the value pushed on h->co is raised */
} mw_wake;

/* The Lua side of one call. Owned by the call from start until on_done
 * (lua/mw_lcall.c frees it there); the ctx and stream handles point to it
 * until then and are cleared at on_done. */
struct mw_lcall {
  mw_call *call;
  mw_lstate *st;
  lua_State *co;    /* the handler's coroutine, from st's pool */
  int co_slot;      /* its slot in the pool table */
  int anchors;      /* stack slots below the handler: [ctx?, stream?] (ctx
                       only for a handler that takes it: mw_lcall.h) */
  struct mw_handle *handles[2]; /* ctx and stream (NULL: none), which the
                                   anchors keep alive until on_done */
  int cancel_ref;   /* table of on_cancel functions, LUA_NOREF when none */
  const mw_method *m;
  upb_Arena *arena; /* the call's arena: over the embedded block of a big
                       record, else made on first use (mw_co_arena) */
  const mw_wait_ops *wait; /* the pending operation; NULL when none */
  void *wait_arg;   /* what it waits on, for operations with several
                       (the outbound call), else unused */
  mw_lchild *children; /* running work it started (see mw_lchild) */
  struct mw_shield *shield; /* mw.shield's window while the handler is in
                               one, made on first use (owned; l_shield.c) */
  char traceparent[56]; /* the call's own span as a traceparent, once the
                           trace interceptor made it ("" before): what its
                           outbound calls carry */
  unsigned out_calls, out_retries; /* outbound calls it made, and how many
                                      of them were retries (ctx:io()) */
  mw_wake wake;     /* how the last wait ended */
  int wake_nres;
  mw_call_timer timer; /* mw.sleep's, and a notice's wake */
  /* While waiting on a notice (lua/mw_notice.h): its worker list, the
   * links in it and the version seen. */
  struct mw_notice_worker *notice_on;
  mw_lcall *notice_next, *notice_prev;
  unsigned long notice_seen;
  double ran_s;     /* time the handler has run since it last waited, over
                       the slices it was preempted between */
  int finished;     /* the handler ended and the call was finished */
  int kill_code;    /* non-zero once the budget hook stopped the handler */
  int counted_stop; /* the stop was counted (moonwire_handler_cpu_stops_total) */
  int oom;          /* the handler failed for want of memory */
  int big;          /* allocated as mw_lcall_big */
  int half_closed;  /* the client half-closed its side */
  /* While core.client_relay reads the requests beside an outbound stream's
   * replies (l_client.c): the state of that read (MW_RELAY_*) and the
   * request it brought while the handler waited elsewhere (owned). */
  int relay_in;
  char *relay_msg;
  size_t relay_len;
  /* A first message delivered with the call to a streaming handler. */
  char *first;
  size_t first_len;
  int has_first;
  char *out_block;  /* a big response while it is encoded (owned) */
  int done_ref;     /* registry ref of the ctx:on_done functions; 0: none */
  int tb_ref;       /* registry ref of {error, traceback} noted where an
                       error inside an interceptor's next() was raised
                       (l_intercept.c); 0 when none */
};

/* mw_lcall.relay_in: no relay read yet; a read asked for; a request, the
 * half-close or a failed read kept until the handler takes it. */
enum { MW_RELAY_NONE = 0, MW_RELAY_ARMED, MW_RELAY_MSG, MW_RELAY_END, MW_RELAY_FAILED };

/* Unary and server-streaming calls decode their request into a first arena
 * block held in the record itself; streaming requests use scratch arenas
 * per message, so those calls take the plain record. */
#define MW_LCALL_ARENA 1024
typedef struct mw_lcall_big {
  mw_lcall h;
  char arena_mem[MW_LCALL_ARENA];
} mw_lcall_big;

/* The call whose handler coroutine L is; NULL outside a handler, and in a
 * coroutine the handler made (lua_newthread gives it the main thread's
 * extra space, which names no call). */
mw_lcall *mw_co_current(lua_State *L);
/* The call whose handler runs on this thread now, whatever coroutine of it
 * runs; NULL when none does. */
mw_lcall *mw_co_running(void);
/* Checks that h (NULL: the current call) may wait now: raises "<what> must
 * be called from a handler" when there is no running call, an error when L
 * is not the handler's own coroutine or cannot yield where it is, and the
 * cancelled error when the call is cancelled. Returns h. */
mw_lcall *mw_co_check(lua_State *L, mw_lcall *h, const char *what);
upb_Arena *mw_co_arena(mw_lcall *h);

/* For C functions that may run long without returning to Lua (the pattern
 * functions): whether the handler this thread runs has gone past its
 * deadline or CPU budget. When it has, the stop is recorded as the hook
 * records it and its error is pushed on L: the caller raises it
 * (lua_error) once it has released what it holds. 0 outside a handler. */
int mw_co_overrun(lua_State *L);

/* Runs the function below its nargs arguments on top of L (a state's main
 * thread, outside any handler's run: the ctx:on_done functions) as
 * mw_lutil_pcall does, with no results, under a CPU budget of its own of
 * budget_s seconds (0: none): past it the budget hook raises, on every
 * instruction from then on so that pcall cannot swallow the stop, until
 * the function has returned. *stopped says whether it was stopped. */
int mw_co_pcall_bounded(lua_State *L, int nargs, double budget_s, int *stopped);

/* Installs the budget hook on a state's main thread, so that coroutines a
 * script makes at load time are stopped like the handler's own when a
 * handler resumes them (lua_newthread copies the hook). */
void mw_co_install_hook(lua_State *L);

/* Takes a coroutine from st's pool for h (h->co, h->co_slot). */
lua_State *mw_co_acquire(mw_lstate *st, mw_lcall *h);
/* Gives h's coroutine back: kept when it ended normally, dropped else. */
void mw_co_release(mw_lcall *h);

/* THE resume loop. Before: h->co holds, above its anchors, the function and
 * nargs arguments (first run) or nargs results of the wait it yielded in.
 * Runs the handler until it waits or ends. After: either the handler waits
 * (h->wait set; nothing above its stack is ours) or it ended and the call
 * was finished with its status (h->finished; the coroutine keeps only its
 * anchors when it returned, its whole stack when it failed). The call still
 * owns h either way; it is freed at on_done. */
void mw_co_resume(mw_lcall *h, int nargs);

/* Yields the running handler until mw_co_wake. Returns to the caller only
 * through lua_yieldk (use as `return mw_co_wait(...)`). */
int mw_co_wait(lua_State *L, mw_lcall *h, const mw_wait_ops *ops);
/* Ends h's wait: nres values are already pushed on h->co (MW_WAKE_OK), or
 * the value to raise (MW_WAKE_RAISE). */
void mw_co_wake(mw_lcall *h, mw_wake how, int nres);
/* The call was cancelled: runs ctx:on_cancel functions (once), and wakes a
 * waiting handler when its operation says so. */
void mw_co_cancel(mw_lcall *h);
/* Ends the call from outside its handler (a session the room closed):
 * disarms the pending operation, stops the children and finishes the call
 * with code and msg; the handler does not run again. No-op once the
 * handler has finished. From an event of the call. */
void mw_co_end(mw_lcall *h, int code, const char *msg);
/* The call is over: disarms a pending operation without resuming. */
void mw_co_abandon(mw_lcall *h);

/* Links c into h's children / unlinks it (harmless when not linked). */
void mw_co_child_add(mw_lcall *h, mw_lchild *c);
void mw_co_child_remove(mw_lcall *h, mw_lchild *c);

/* The handler's window inside mw.shield (l_shield.c): until it ends, a
 * cancellation of the call (the client gone, the deadline passed) neither
 * raises in the handler's waits nor stops the children it starts there;
 * it is acted on when the window ends. */
typedef struct mw_shield {
  mw_call_timer timer; /* fires when the window ends */
  mw_lcall *h;
  double until;        /* epoch seconds; the window is open while now < until */
  int depth;           /* nested shields; 0: not in one */
} mw_shield;

/* Whether h's handler is inside an open shield window now. */
int mw_co_shielded(const mw_lcall *h);
/* The deadline that bounds h's handler and the calls it starts (epoch
 * seconds, 0: none): the call's own, and inside a shield the later of it
 * and the window's end. */
double mw_co_deadline(const mw_lcall *h);
/* A shield window ended (left, or its time ran out): a cancellation it held
 * back stops the children and wakes a waiting handler as cancelled now. */
void mw_co_unshield(mw_lcall *h);
/* Frees h's shield record (at the end of the handler); harmless without. */
void mw_co_shield_free(mw_lcall *h);

/* Raises the error a wait raises when the call is cancelled or its deadline
 * passed: a status object with cancelled = true. */
int mw_co_raise_cancelled(lua_State *L, mw_lcall *h);

/* Encodes the response table at idx and queues it: 1 or 0 as mw_call_send;
 * -1 with err filled (the table is not a valid response), -2 when memory
 * ran out. A big response goes to gRPC in the block it was encoded into; h
 * owns that block until then, even when Lua raises through the encoder. */
int mw_co_send_table(mw_lcall *h, lua_State *L, int idx, upb_Arena *a,
                     char *err, size_t errlen);

#endif
