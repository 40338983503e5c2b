/* The server: gRPC core server, listeners and channel arguments, worker
 * threads (one completion queue each), request slots, the current router,
 * graceful shutdown. What the server knows of generations is their router
 * (core/mw_router.h) and the per-worker hooks below, installed by the
 * layer that builds them. */
#ifndef MW_SERVER_H
#define MW_SERVER_H

#include <stddef.h>

#include "base/mw_diag.h"
#include "config/mw_config.h"
#include "core/mw_call.h"
#include "core/mw_router.h"

typedef struct mw_server mw_server;

/* Per-worker events, installed at creation by whoever builds generations
 * (h2o's on_context_init / on_context_dispose). Each runs on the worker's
 * own thread. */
typedef struct mw_worker_hooks {
  void *self;
  /** Worker `worker` moves from router `from` to router `to`, before its
   * first call on `to`: backends hand module state over. */
  void (*switch_router)(void *self, mw_router *from, mw_router *to, int worker);
  /** The server began to drain (mw_server_drain): the worker runs the
   * drain hooks of its current router's backends. */
  void (*drain)(void *self, mw_router *current, int worker);
  /** The worker thread ends: backends free what they cached for it. */
  void (*thread_exit)(void *self, int worker);
} mw_worker_hooks;

/* Creates the server and binds every listen address (port 0 picks one).
 * Takes a reference to router, whose methods are registered with gRPC core
 * for the fast path. hooks is copied (may be NULL). Returns NULL with diag
 * filled. */
mw_server *mw_server_new(const mw_config *cfg, mw_router *router,
                         const mw_worker_hooks *hooks, mw_diag *diag);
/* "host:port" of listener i, with the port actually bound. */
size_t mw_server_listener_count(const mw_server *s);
const char *mw_server_listener(const mw_server *s, size_t i);
/* The internal listener's target ("unix:/tmp/moonwire-XXXXXX/grpc.sock")
 * for the HTTP listener's loopback calls (core/mw_loopback.h), opened by
 * mw_server_new when the config has http.listen (or admin.listen with the
 * console on, whose calls take the same path); NULL otherwise. */
const char *mw_server_internal_target(const mw_server *s);
/* A reference to the current router (drop it with mw_router_unref), for a
 * thread other than the workers' that needs the current generation's
 * methods (the HTTP listener, per request). Any thread. */
mw_router *mw_server_router_acquire(mw_server *s);
/* Starts the workers. */
int mw_server_start(mw_server *s);
/* Publishes a new current router (takes a reference to it); every worker is
 * told through its mailbox and lets go of the old one at once. */
void mw_server_swap(mw_server *s, mw_router *r);
/* Begins the stop: the listeners close (new connections are refused),
 * every connection is sent GOAWAY, calls in flight go on, and each worker
 * runs hooks.drain. Safe to call twice. */
void mw_server_drain(mw_server *s);
/* Waits up to ms for the calls in flight to end; returns how many remain. */
size_t mw_server_wait_idle(mw_server *s, long ms);
/* The whole stop: drains (if not yet), lets calls in flight finish for up
 * to grace_ms, cancels the rest (their handlers see the cancellation),
 * joins the workers. */
void mw_server_stop(mw_server *s, long grace_ms);
/* The memory guard (limits.max_rss_mb): while mib > 0, every new call is
 * shed as it arrives, with a message saying how much is in use; 0 lifts it. */
void mw_server_shed_for_memory(mw_server *s, int mib);
/* The watchdog, from the thread that runs the server, every second or so:
 * a worker that has stayed in one call's event for stuck_after seconds (a
 * C function that does not return: the CPU budget stops Lua code) is
 * logged once with the call's method. Returns how many are stuck. gRPC
 * core's C API cannot take such a worker's posted request slots away, so
 * calls matched to them wait; the stop goes on without a stuck worker. */
int mw_server_watch_workers(mw_server *s, double stuck_after);
/* Whether the stop left a stuck worker behind (the server is then not
 * freed: mw_server_free returns at once, for the process to exit). */
int mw_server_stuck(const mw_server *s);
/* Live calls over every worker (approximate while running). */
size_t mw_server_live_calls(const mw_server *s);
/* For the admin listener, from any thread: the counters (generation,
 * reloads), the number of workers, and one worker's live calls and queued
 * response bytes (the latter kept only while observation is on, that is
 * when admin.listen is set). */
void mw_server_read_stats(const mw_server *s, mw_server_stats *out);
int mw_server_workers(const mw_server *s);
void mw_server_worker_load(const mw_server *s, int worker, size_t *live, size_t *queued);
/* Request slots one worker has posted now (grows with a burst of calls,
 * see mw_server.c); from any thread. */
size_t mw_server_worker_slots(const mw_server *s, int worker);
void mw_server_note_reload_failure(mw_server *s);
/* A descriptor that becomes readable when a listener has stopped accepting
 * for good (gRPC core 1.51 gives up on a listener whose accept fails, for
 * instance for want of descriptors), for the serve loop to poll; and
 * whether that happened. Process-wide; the descriptor lives as long as the
 * process. */
int mw_server_listener_alarm_fd(void);
int mw_server_listener_dead(void);
/* Frees the server; safe after mw_server_stop, and with NULL. */
void mw_server_free(mw_server *s);

#endif
