/* Calls: one state machine per RPC on gRPC core. This layer owns the
 * grpc_call, its batches, the bounded send queue and receive-on-demand. The
 * layer above (a backend: lua/, later stubs and built-ins) drives it through
 * the commands below and hears of progress only through the mw_call_ops it
 * attached (core/mw_handler.h). This header includes nothing of gRPC, so a
 * backend can use it without seeing the transport. */
#ifndef MW_CALL_H
#define MW_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "base/mw_timer.h"
#include "core/mw_handler.h"
#include "schema/mw_methods.h"

typedef struct mw_call mw_call;

/* --- what a backend reads ----------------------------------------------- */
const mw_method *mw_call_method(const mw_call *c);
/* The worker the call runs on (0 .. workers-1). */
int mw_call_worker_id(const mw_call *c);
/* The protocol the call came in by: "grpc", or for a call of the HTTP
 * listener (core/mw_loopback.h) "grpc-web", "grpc-web-text", "connect". A
 * static string. */
const char *mw_call_protocol(const mw_call *c);
/* Whether the call's client is the HTTP listener answering server-sent
 * events: session publications then carry their event id in front
 * (core/mw_loopback.h, MW_LB_EVENT_ID_FIELD). */
int mw_call_event_ids(const mw_call *c);
/* The peer address ("ipv4:127.0.0.1:5555"), the HTTP client's for a call
 * of the HTTP listener; owned by the call. */
const char *mw_call_peer(mw_call *c);
/* Absolute deadline in seconds since the epoch; 0 when there is none. */
double mw_call_deadline(const mw_call *c);
int mw_call_cancelled(const mw_call *c);
/* What the call has moved so far: request messages handed to the backend
 * and response messages it queued (bytes as encoded, before compression),
 * and when it arrived (mw_now(), monotonic seconds). Kept for every call:
 * a few adds per message, read by the access log, metrics and traces. */
typedef struct mw_call_io {
  double start;
  unsigned long msgs_in, msgs_out;
  size_t bytes_in, bytes_out;
} mw_call_io;
const mw_call_io *mw_call_io_of(const mw_call *c);
/* What the call waits on now, for /debug/calls: the backend's answer
 * (mw_call_ops.wait_state: "stream:recv", "stream:send", "sleep",
 * "running"...), else the call layer's own ("read:request", "finishing",
 * "queued"). A static string. */
const char *mw_call_wait_state(const mw_call *c);
/* The status the call ends with: the one mw_call_finish chose; for a call
 * cancelled before that, DEADLINE_EXCEEDED when its deadline has passed, else
 * CANCELLED; -1 while neither has happened. */
int mw_call_status(const mw_call *c);
/* Request metadata: count, then key/value by index (not NUL-terminated). */
size_t mw_call_metadata_count(const mw_call *c);
void mw_call_metadata_at(const mw_call *c, size_t i, const char **key,
                         size_t *klen, const char **val, size_t *vlen);

/* The call's transport security, property by property, as gRPC core's auth
 * context has it: fn(ud, name, value, len) for each, in order, with names
 * such as "transport_security_type" ("ssl", or "insecure" for plaintext),
 * "security_level", "x509_common_name", "x509_subject",
 * "x509_subject_alternative_name", "peer_dns", "peer_uri",
 * "peer_spiffe_id", "peer_email", "peer_ip", "ssl_session_reused",
 * "x509_pem_cert" (grpc_security_constants.h). value holds len bytes, not
 * NUL-terminated, valid while fn runs. fn must return normally (no
 * longjmp, so no Lua error): the walk holds a reference it releases at the
 * end. Nothing is copied unless fn copies it. */
void mw_call_auth_each(mw_call *c,
                       void (*fn)(void *ud, const char *name,
                                  const char *value, size_t len),
                       void *ud);

/* The server's counters, as the call's worker sees them now. */
typedef struct mw_server_stats {
  size_t live_calls;
  unsigned generation;   /* id of the current generation */
  unsigned long reloads; /* successful reloads */
  unsigned long reload_failures;
} mw_server_stats;
void mw_call_server_stats(const mw_call *c, mw_server_stats *out);

/* --- commands ------------------------------------------------------------- */
/* Shortens the call's deadline to `at` (epoch seconds, like
 * mw_call_deadline); a later or equal time is ignored, so a deadline only
 * ever shrinks. Everything that reads mw_call_deadline (the handler's
 * budget hook, mw_co_raise_cancelled) sees the new one, and a timer on the
 * worker ends the call at `at`: the client gets DEADLINE_EXCEEDED and the
 * backend ops->on_cancel. Returns 0, or -1 when out of memory (the
 * deadline is lowered, only the timer is missing). */
int mw_call_set_deadline(mw_call *c, double at);
/* Installs the call's event interface; self is passed to every event. Done
 * once, from mw_handler.start. */
void mw_call_attach(mw_call *c, const mw_call_ops *ops, void *self);
/* Asks for the next request message: ops->on_message follows. */
void mw_call_recv(mw_call *c);
/* Queues one response message (the bytes are copied). Returns 1 when the
 * queue still has room for more, 0 when the backend must wait for
 * ops->on_writable before sending again, -1 when out of memory. */
int mw_call_send(mw_call *c, const char *data, size_t len);
/* The same for bytes in a block from malloc(), which the call takes over in
 * every case (no copy: gRPC frees it when it is written; on -1 it is already
 * freed). */
int mw_call_send_block(mw_call *c, char *block, size_t len);
/* Response metadata; headers must precede the first message. Returns 0, or
 * -1 with a message in err when the key or value is not valid. */
int mw_call_add_header(mw_call *c, const char *k, size_t kl, const char *v,
                       size_t vl, char *err, size_t errlen);
int mw_call_add_trailer(mw_call *c, const char *k, size_t kl, const char *v,
                        size_t vl, char *err, size_t errlen);
/* The response metadata added so far (mw_call_add_header, or with
 * trailers set mw_call_add_trailer and the details trailer): count, then
 * key/value by index (not NUL-terminated), valid until the next add. For a
 * backend that keeps a reply to send again (idempotent replays). */
size_t mw_call_response_md_count(const mw_call *c, int trailers);
void mw_call_response_md_at(const mw_call *c, int trailers, size_t i, const char **key,
                            size_t *klen, const char **val, size_t *vlen);
/* The grpc-status-details-bin trailer (a serialized google.rpc.Status, the
 * bytes copied) of the status the backend is about to finish with; before
 * mw_call_finish. Returns 0, or -1 with a message in err when the call has
 * finished or the trailers would grow past their limit (the same as
 * mw_call_add_trailer's, shared with the handler's own trailers). */
int mw_call_set_status_details(mw_call *c, const char *bin, size_t len, char *err,
                               size_t errlen);
/* Whether a read is pending (its completion will reach ops->on_message). */
int mw_call_reading(const mw_call *c);
/* Ends the call with a status (base/mw_status.h) once the send queue has
 * drained; the first call wins. ops->on_done follows, after which the
 * backend must not touch the call. */
void mw_call_finish(mw_call *c, int code, const char *msg);
/* The backend may queue messages while its read is pending (a joined
 * session's publications, sent while the handler waits in stream:recv).
 * From then on a send is never started in one batch with a read: such a
 * batch completes only when the client's next message arrives, and the
 * sends behind it would wait for the client to talk. */
void mw_call_sends_anytime(mw_call *c);
/* Makes sure cancellation is observed (starts RECV_CLOSE_ON_SERVER). Called
 * when a handler first waits; unary handlers that never wait skip it. */
void mw_call_watch_cancel(mw_call *c);

/* Runs fn(arg) as an event of the call, on its worker: pinned, seen by
 * the watchdog as the call's, and what fn queues is started when it
 * returns. For events that reach a backend from elsewhere on the same
 * worker (an outbound call it made completing). */
void mw_call_run(mw_call *c, void (*fn)(void *arg), void *arg);

/* A timer on the call's worker that runs with the call pinned, like an
 * event: what fn queues is started when it returns. The record is the
 * caller's (embed it); a timer does not keep the call alive, so the backend
 * cancels it at on_done at the latest. */
typedef struct mw_call_timer {
  void (*fn)(struct mw_call_timer *t);
  mw_call *call;  /* set by mw_call_timer_start */
  mw_timer entry; /* in the worker's heap while pending (mw_timer_armed) */
} mw_call_timer;
/* Arms t to fire in secs seconds (0 and less: at the next timer turn).
 * Returns 0, or -1 when out of memory. */
int mw_call_timer_start(mw_call *c, mw_call_timer *t, double secs);
/* Disarms t when pending; harmless otherwise. */
void mw_call_timer_cancel(mw_call_timer *t);

#endif
