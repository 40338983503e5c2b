/* What the files of core/ share and nothing above them sees: the worker
 * record, completion tags and the call layer's entry points for the
 * worker loop. Includes gRPC's headers. */
#ifndef MW_CORE_INTERNAL_H
#define MW_CORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include <grpc/grpc.h>

#include "base/mw_timer.h"
#include "core/mw_call.h"
#include "core/mw_mailbox.h"
#include "core/mw_router.h"
#include "base/mw_buf.h"

typedef struct mw_server mw_server;

/* Tags handed to grpc_call_start_batch and request functions all start with
 * this header; the worker turns a completed tag into the next step. */
typedef enum mw_tag_kind {
  MW_TAG_SLOT = 1,     /* a requested call arrived */
  MW_TAG_CALL = 2,     /* a batch of a call completed */
  MW_TAG_SHUTDOWN = 3, /* the server finished shutting down */
  MW_TAG_WAKE = 4,     /* the worker's mailbox has mail */
  MW_TAG_CLIENT = 5,   /* a batch of an outbound call completed */
} mw_tag_kind;

typedef struct mw_tag {
  int kind;
  int op; /* MW_TAG_CALL: which batch of the call (mw_call.c) */
  void *owner;
} mw_tag;

struct mw_worker;

/* The server's counters. The server writes them; each worker points to
 * them, so that a call reads them (mw.stats) without calling the server. */
/* A method with a concurrency limit (config methods.PATH.max_concurrent). */
typedef struct mw_method_limit {
  char *path;          /* owned: "/pkg.Service/Method", or "pkg.Service" for
                          every method of a service */
  long max;            /* calls in flight at once; 0 = no limit */
  size_t max_recv, max_send; /* a method's message sizes, when lower than
                                limits.max_*_bytes; 0 = the server's */
  _Atomic long live;   /* its calls in flight, counted from arrival to free */
} mw_method_limit;

typedef struct mw_counters {
  struct mw_worker *workers; /* the server's array, n_workers long */
  int n_workers;
  /* Shedding: past these a call ends RESOURCE_EXHAUSTED as it arrives,
   * before it is routed, decoded or run. Both are fixed at start. */
  long max_inflight;         /* limits.max_inflight_calls; 0: no limit */
  _Atomic int over_memory;   /* the memory guard says shed (MiB in use) */
  _Atomic long inflight;     /* calls counted against it (only when set) */
  mw_method_limit *limits;   /* owned array */
  size_t n_limits;
  _Atomic unsigned generation; /* id of the current generation */
  _Atomic unsigned long reloads, reload_failures;
} mw_counters;

/* How many freed call records a worker keeps (about 700 bytes each). */
#define MW_SPARE_CALLS 64

/* One worker: a thread, its completion queue, its timers and mailbox, and
 * its reference to the current router. Owned by the server. */
typedef struct mw_worker {
  int id;
  mw_server *server;
  mw_counters *counters;      /* the server's */
  grpc_completion_queue *cq;
  mw_timers timers;
  /* Freed call records kept for the worker's next calls (mw_call.c,
   * call_alloc): owned here, freed by mw_call_spares_free. */
  struct mw_call *spare_calls[MW_SPARE_CALLS];
  int n_spare_calls;
  mw_mailbox *mailbox;
  mw_tag wake_tag;
  mw_mail gen_mail;           /* "a new generation is current" */
  _Atomic int gen_mail_queued;
  mw_mail stop_mail;          /* "the server is shutting down" */
  mw_mail drain_mail;         /* "the drain began": hooks.drain */
  mw_router *router;          /* this worker's reference to the current one */
  unsigned gen_seen;          /* server generation counter when taken */
  _Atomic size_t live_calls;  /* written by the worker, read by anyone */
  _Atomic size_t live_slots;  /* request slots posted: the same */
  size_t send_queue_messages; /* limits.send_queue_messages */
  size_t send_queue_bytes;    /* limits.send_queue_bytes */
  size_t max_send_bytes;      /* limits.max_send_bytes: one response message */
  size_t max_response_md;     /* response headers, and trailers, at most
                                 (mw_server.c says how it is derived) */
  size_t max_receive_bytes;   /* limits.max_receive_bytes, once inflated */
  /* A request message that came in several slices is gathered here for
   * the backend rather than into a new block per message (mw_call.c):
   * owned by the worker, at most MW_RECV_GATHER_MAX bytes, lent to one
   * message at a time. */
  char *gather;
  size_t gather_cap;
  int gather_lent;
  const struct mw_compress_policy *compress; /* the server's */
  int cq_shut;
  pthread_t thread;
  /* For the watchdog (mw_server_watch_workers), read by the main thread:
   * beat moves at every turn of the loop; running is the path of the call
   * whose event runs now (NULL between events). */
  _Atomic unsigned long beat;
  _Atomic(const char *) running;
  /* Observation (the admin listener is on): calls keep their metric series
   * and sit in the list below; queued_bytes is the send queues' total,
   * written by the worker only, read by the admin thread. */
  int observe;
  struct mw_call *calls;
  _Atomic size_t queued_bytes;
  /* Outbound calls started here whose records core has not given back
   * (mw_client.c); the queue stays open until they have. */
  size_t client_calls;
} mw_worker;

/* --- the call layer, for the worker (mw_call.c) --- */
/* Takes over a call that arrived on worker w: md and payload are moved
 * (payload may be NULL; has_payload says whether the transport read the
 * first message for us). */
void mw_call_arrived(mw_worker *w, grpc_call *call, const char *path,
                     size_t path_len, gpr_timespec deadline,
                     grpc_metadata_array *md, grpc_byte_buffer *payload,
                     int has_payload);
/* A batch of a call completed. */
void mw_call_on_batch(mw_tag *tag, int ok);
/* Frees the call records worker w keeps for reuse; at its teardown, once
 * no call of it is live. Safe to run twice. */
void mw_call_spares_free(mw_worker *w);
/* A batch of an outbound call completed (mw_client.c). */
void mw_client_on_batch(mw_tag *tag, int ok);

/* For /debug/calls, on the worker's thread: its live calls as JSON
 * objects separated by commas (only while w->observe). */
void mw_worker_debug_calls(mw_worker *w, mw_buf *b);

/* --- the server, for its workers (mw_server.c) --- */
/* Takes the current router if it changed since the worker last looked, and
 * lets the backends hand state over; on the worker's thread. */
void mw_server_refresh(mw_worker *w);
/* Whether the worker may shut its queue down (the server is stopping, its
 * shutdown completed, and w has no calls or slots left). */
int mw_server_worker_may_close(const mw_worker *w);
void mw_server_note_shutdown_done(mw_server *s);
/* A request slot (MW_TAG_SLOT) completed: a call arrived, or ok == 0. */
void mw_server_on_slot(void *slot, int ok);
void mw_server_thread_exit(mw_worker *w);

/* Live calls over every worker (approximate while running) and the rest. */
static inline size_t mw_counters_live_calls(const mw_counters *k) {
  size_t n = 0;
  for (int i = 0; i < k->n_workers; i++)
    n += atomic_load_explicit(&k->workers[i].live_calls, memory_order_relaxed);
  return n;
}

static inline void mw_counters_read(const mw_counters *k, mw_server_stats *out) {
  out->live_calls = mw_counters_live_calls(k);
  out->generation = atomic_load(&k->generation);
  out->reloads = atomic_load(&k->reloads);
  out->reload_failures = atomic_load(&k->reload_failures);
}

/* --- the worker loop (mw_worker.c) --- */
void *mw_worker_main(void *arg);
/* The worker whose thread calls this; NULL on any other thread. */
mw_worker *mw_worker_self(void);

#endif
