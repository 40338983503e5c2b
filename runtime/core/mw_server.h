/* The server: gRPC core server, listeners and channel arguments, worker
 * threads (one completion queue each), request slots, the current
 * generation, graceful shutdown. */
#ifndef MW_SERVER_H
#define MW_SERVER_H

#include <pthread.h>
#include <stddef.h>

#include <grpc/grpc.h>

#include "config/mw_config.h"
#include "base/mw_diag.h"
#include "gen/mw_gen.h"
#include "base/mw_timer.h"

typedef struct mw_server mw_server;

/* Tags handed to grpc_call_start_batch and request functions all start with
 * this header; one function turns a completed tag into the next step. */
typedef enum mw_tag_kind {
  MW_TAG_SLOT = 1,  /* a requested call arrived */
  MW_TAG_CALL = 2,  /* a batch of a call completed */
  MW_TAG_SHUTDOWN = 3,
} mw_tag_kind;

typedef struct mw_tag {
  int kind;
  int op; /* MW_TAG_CALL: which batch of the call (mw_call.c) */
  void *owner;
} mw_tag;

struct mw_worker {
  int id;
  mw_server *server;
  grpc_completion_queue *cq;
  mw_timers timers;
  mw_gen *gen;       /* this worker's reference to the current generation */
  unsigned gen_seen; /* server generation counter when gen was taken */
  _Atomic size_t live_calls; /* written by the worker, read by anyone */
  size_t live_slots;
  size_t send_queue_messages; /* limits.send_queue_messages */
  size_t send_queue_bytes;    /* limits.send_queue_bytes */
  int cq_shut;
  pthread_t thread;
};

/* Creates the server and binds every listen address (port 0 picks one).
 * Takes a reference to gen. Returns NULL with diag filled. */
mw_server *mw_server_new(const mw_config *cfg, mw_gen *gen, mw_diag *diag);
/* "host:port" of listener i, with the port actually bound. */
size_t mw_server_listener_count(const mw_server *s);
const char *mw_server_listener(const mw_server *s, size_t i);
/* Starts the workers. */
int mw_server_start(mw_server *s);
/* Publishes a new current generation (takes a reference to it). */
void mw_server_swap_gen(mw_server *s, mw_gen *gen);
/* Stops accepting calls, lets calls in flight finish for up to grace_ms,
 * cancels the rest, joins the workers. */
void mw_server_stop(mw_server *s, long grace_ms);
/* Live calls over every worker (approximate while running). */
size_t mw_server_live_calls(const mw_server *s);

/* Counters for reloads, readable from any thread. */
typedef struct mw_server_stats {
  size_t live_calls;
  unsigned generation;    /* id of the current generation */
  unsigned long reloads;  /* successful reloads */
  unsigned long reload_failures;
} mw_server_stats;
void mw_server_note_reload_failure(mw_server *s);
void mw_server_get_stats(mw_server *s, mw_server_stats *out);
/* Frees the server; safe after mw_server_stop, and with NULL. */
void mw_server_free(mw_server *s);

#endif
