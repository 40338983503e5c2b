/* Calls: one state machine per RPC on gRPC core. This layer owns the
 * grpc_call, its batches, the bounded send queue and receive-on-demand; it
 * never touches Lua. The host layer (mw_host.h) drives it through the
 * functions below and is told of progress through the mw_host_on_* hooks. */
#ifndef MW_CALL_H
#define MW_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "gen/mw_gen.h"

typedef struct mw_call mw_call;
typedef struct mw_worker mw_worker;
struct mw_hcall; /* the host's per-call state */

/* Status codes, as in grpc_status_code. */
#define MW_STATUS_COUNT 17
const char *mw_status_name(int code);
/* Parses "INVALID_ARGUMENT" (any case); -1 when unknown. */
int mw_status_parse(const char *name);

/* --- read by the host ------------------------------------------------- */
const mw_method *mw_call_method(const mw_call *c);
mw_gen *mw_call_gen(const mw_call *c);
int mw_call_worker_id(const mw_call *c);
mw_worker *mw_call_worker(const mw_call *c);
/* The peer address ("ipv4:127.0.0.1:5555"); owned by the call. */
const char *mw_call_peer(mw_call *c);
/* Absolute deadline in seconds since the epoch; 0 when there is none. */
double mw_call_deadline(const mw_call *c);
int mw_call_cancelled(const mw_call *c);
/* Request metadata: count, then key/value by index (not NUL-terminated). */
size_t mw_call_metadata_count(const mw_call *c);
void mw_call_metadata_at(const mw_call *c, size_t i, const char **key,
                         size_t *klen, const char **val, size_t *vlen);
struct mw_hcall *mw_call_host(const mw_call *c);
void mw_call_set_host(mw_call *c, struct mw_hcall *h);

/* --- called by the host ----------------------------------------------- */
/* Asks for the next request message. Completion: mw_host_on_message. */
void mw_call_recv(mw_call *c);
/* Queues one response message (the bytes are copied). Returns 1 when the
 * queue still has room for more, 0 when the host must wait for
 * mw_host_on_writable before sending again. */
int mw_call_send(mw_call *c, const char *data, size_t len);
/* The same for bytes in a block from malloc(), which the call takes over in
 * every case (no copy: gRPC frees it when it is written). -1: out of memory,
 * the block already freed. */
int mw_call_send_block(mw_call *c, char *block, size_t len);
/* Response metadata; headers must precede the first message. Returns 0, or
 * -1 with a message in err when the key or value is not valid. */
int mw_call_add_header(mw_call *c, const char *k, size_t kl, const char *v,
                       size_t vl, char *err, size_t errlen);
int mw_call_add_trailer(mw_call *c, const char *k, size_t kl, const char *v,
                        size_t vl, char *err, size_t errlen);
/* Whether a read is pending (its completion will reach mw_host_on_message). */
int mw_call_reading(const mw_call *c);
/* Ends the call with a status once the send queue has drained. details, when
 * not NULL, is a serialized google.rpc.Status for grpc-status-details-bin.
 * The host must not touch the call after mw_host_on_done. */
void mw_call_finish(mw_call *c, int code, const char *msg, const char *details,
                    size_t details_len);
/* Makes sure cancellation is observed (starts RECV_CLOSE_ON_SERVER). Called
 * when a handler first waits; unary handlers that never wait skip it. */
void mw_call_watch_cancel(mw_call *c);

/* --- implemented by the host (mw_host.c) ------------------------------- */
/* A call arrived for a method with a handler; first is the first request
 * message when the transport already has it (else NULL). */
void mw_host_on_call(mw_call *c, int handler_ref, const char *first,
                     size_t first_len, int has_first);
/* The next request message, or has_msg == 0 at the client's half-close.
 * ok == 0 when the read failed (the call is being cancelled). */
void mw_host_on_message(mw_call *c, int ok, const char *data, size_t len,
                        int has_msg);
/* The send queue has room again. */
void mw_host_on_writable(mw_call *c);
/* The client cancelled or the deadline passed. */
void mw_host_on_cancel(mw_call *c);
/* The call is over; release everything the host holds for it. */
void mw_host_on_done(mw_call *c);
/* Worker `worker` moves from generation old to next (on its own thread):
 * the host hands module state over (mw.on_reload / mw.on_restore). */
void mw_host_on_generation(mw_gen *old, mw_gen *next, int worker);
/* A worker thread ends: the host frees what it cached for the thread. */
void mw_host_thread_exit(void);


/* --- used by the server ------------------------------------------------ */
#include <grpc/grpc.h>

struct mw_tag;

/* Takes over a call that arrived on worker w: md and payload are moved
 * (payload may be NULL; has_payload says whether the transport read the
 * first message for us). path is copied. */
void mw_call_arrived(mw_worker *w, grpc_call *call, const char *path,
                     size_t path_len, gpr_timespec deadline,
                     grpc_metadata_array *md, grpc_byte_buffer *payload,
                     int has_payload);
/* A batch of a call completed. */
void mw_call_on_batch(struct mw_tag *tag, int ok);
/* Starts a batch that a host flush left pending (after every host hook). */
void mw_call_flush(mw_call *c);

#endif
