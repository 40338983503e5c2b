/* What the call layer knows of whoever serves a call: the interface the
 * upper layer installs, in the manner of h2o's h2o_handler_t and
 * h2o_generator_t. Commands go down by name (mw_call.h); events come up only
 * through these pointers, so core/ never names a backend. The Lua backend
 * (lua/mw_backend.h) is one implementation; a stub or built-in backend is
 * another.
 *
 * Every event below runs on the worker thread that owns the call, with the
 * call pinned: whatever the callee queues with mw_call_* is started when it
 * returns. */
#ifndef MW_HANDLER_H
#define MW_HANDLER_H

#include <stddef.h>

typedef struct mw_call mw_call;

/* The events of one call, installed by its server with mw_call_attach. self
 * is the server's per-call record. */
typedef struct mw_call_ops {
  /** The next request message (has_msg == 1) or the client's half-close
   * (has_msg == 0), for a read asked with mw_call_recv. ok == 0 when the
   * read failed because the call is being cancelled. data is valid only
   * during the call. */
  void (*on_message)(void *self, int ok, const char *data, size_t len,
                     int has_msg);
  /** The send queue has room again after mw_call_send returned 0. */
  void (*on_writable)(void *self);
  /** The client cancelled, the deadline passed or the transport went away.
   * Called once, before on_done; a pending read fails on its own. */
  void (*on_cancel)(void *self);
  /** The last event: the call is over and is freed as soon as this returns,
   * whatever the callee did. Release everything held for the call; do not
   * touch it afterwards. */
  void (*on_done)(void *self);
  /** What the backend's handler waits on now, as a static string
   * ("stream:recv", "stream:send", "sleep", "running"...), for
   * /debug/calls; called on the call's worker between events. NULL: the
   * backend does not say. */
  const char *(*wait_state)(void *self);
} mw_call_ops;

/* One per routed method and generation: what the router hands a new call. */
typedef struct mw_handler {
  /** A call arrived. first is the first request message when the transport
   * read it with the call (has_first; valid only during the call), else
   * NULL. The callee either attaches with mw_call_attach or ends the call
   * with mw_call_finish before returning. */
  void (*start)(struct mw_handler *h, mw_call *c, const char *first,
                size_t first_len, int has_first);
} mw_handler;

#endif
