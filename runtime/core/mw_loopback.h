/* The loopback: calls from the HTTP listener (http/mw_web.h) into this
 * process's own gRPC server, so that a gRPC-Web or Connect request takes the
 * one call path every gRPC call takes (interceptors, deadlines, limits,
 * metrics, access logs, Lua handlers). Like mw_client.h this header includes
 * nothing of gRPC.
 *
 * Two halves:
 * - The server side: an internal listener only this process's user can reach
 *   (a unix socket in a 0700 directory, core/mw_server.c opens it), and the
 *   per-process secret that authenticates the internal metadata
 *   (MW_LOOPBACK_KEY: "<secret>;<protocol>;<peer>[;<flags>[;<cert>]]"). The call layer
 *   (core/mw_call.c) removes that key from every call's metadata before any
 *   handler sees it, and believes the protocol and the peer it names only
 *   when the secret matches (compared in constant time): an external client
 *   cannot choose ctx.protocol or ctx.peer.
 * - The client side: one channel to the internal listener, one completion
 *   queue, and a pump thread that waits on it. The pump never runs a call's
 *   events: it queues each completion and makes mw_loopback_fd readable;
 *   the one thread that drives the calls (the HTTP event loop) then runs
 *   mw_loopback_run, which runs the events there. So every call record is
 *   touched by that thread only, and the loop is never blocked. */
#ifndef MW_LOOPBACK_H
#define MW_LOOPBACK_H

#include <stddef.h>

/* The internal metadata key (its value never reaches a handler). */
#define MW_LOOPBACK_KEY "mw-loopback"

/* --- the server side ------------------------------------------------------ */
/* Makes the process's secret (once; from the kernel's random source) and
 * turns on the check of mw_call.c. Called by mw_server_new when the config
 * has an HTTP listener, before any call can arrive. Returns 0, or -1 when
 * no random bytes could be had. */
int mw_loopback_secret_init(void);
/* Whether the secret exists (whether calls are checked for the key). */
int mw_loopback_active(void);
/* The secret as hex (64 characters), for the client side's metadata. */
const char *mw_loopback_secret(void);
/* What an authenticated MW_LOOPBACK_KEY value says about its call. The
 * flags are letters: 'e' the HTTP client reads server-sent events, so
 * session publications carry their event id (MW_LB_EVENT_ID_FIELD); 't' it
 * came over TLS; 'r' its TLS session was resumed. cert is the client
 * certificate the HTTP listener verified, as base64 DER (no newlines, so it
 * fits a metadata value), or empty. Spans point into the value. */
typedef struct mw_lb_claims {
  const char *protocol; /* "grpc-web", "grpc-web-text", "connect", "rest",
                           "websocket" (static) */
  const char *peer;
  size_t peer_len;
  int event_ids, tls, tls_reused;
  const char *cert;
  size_t cert_len;
} mw_lb_claims;
/* Checks a MW_LOOPBACK_KEY value: 1 with *out filled when the secret
 * matches and the value is well formed, else 0. */
int mw_loopback_verify(const char *v, size_t vl, mw_lb_claims *out);

/* The field number of the event id a session publication carries to a
 * call with the 'e' flag: a length-delimited field put before the
 * message's own bytes, holding "<epoch>:<offset>". 19999 is in the range
 * protobuf keeps for itself (19000 to 19999, which protoc refuses in a
 * .proto), so no message type of a service can mean anything by it. Its
 * tag is these three bytes. */
#define MW_LB_EVENT_ID_FIELD 19999
#define MW_LB_EVENT_ID_TAG "\xfa\xe1\x09"

/* --- the client side ------------------------------------------------------ */
typedef struct mw_loopback mw_loopback;
typedef struct mw_lb_call mw_lb_call;

/* The events of one call, run by mw_loopback_run on the driving thread. */
typedef struct mw_lb_ops {
  /** A response message (has_msg 1; data valid during the event; the
   * response headers are readable from now), or the end of the responses
   * (has_msg 0), for a read asked with mw_lb_call_recv. */
  void (*on_message)(void *self, const char *data, size_t len, int has_msg);
  /** The call is over (after the end of the responses was read, for a
   * streaming call; the only event of a unary one): code, message,
   * headers, trailers and, for a unary call, the response may be read. */
  void (*on_status)(void *self);
  /** A message of mw_lb_call_send was taken by the call (ok 1), or the
   * call ended before it could be (ok 0; on_status follows): the next may
   * be sent. Only for calls started with stream_requests; may be NULL
   * otherwise. */
  void (*on_sent)(void *self, int ok);
} mw_lb_ops;

/* Opens the channel to target ("unix:/path") and starts the pump thread.
 * NULL with err filled. */
mw_loopback *mw_loopback_open(const char *target, char *err, size_t errlen);
/* Readable (an eventfd) while completions wait for mw_loopback_run. */
int mw_loopback_fd(const mw_loopback *lb);
/* Runs the waiting completions' events on the calling thread. */
void mw_loopback_run(mw_loopback *lb);
/* How many call records are still alive (released or not). */
size_t mw_loopback_live(const mw_loopback *lb);
/* Once every call is released: runs the last completions (on the calling
 * thread, up to wait_ms), closes the channel, joins the pump, frees lb.
 * With calls still alive after the wait, lb is left (the process exits).
 * NULL ok. */
void mw_loopback_close(mw_loopback *lb, long wait_ms);

typedef struct mw_lb_start {
  const char *path; /* "/pkg.Service/Method" */
  size_t path_len;
  double deadline; /* epoch seconds; 0: none */
  /* Request metadata: n pairs (binary values for -bin keys). */
  const char *const *md_keys;
  const char *const *md_vals;
  const size_t *md_lens;
  size_t md_n;
  /* The request messages, sent in order, then the half-close. */
  const char *const *msgs;
  const size_t *msg_lens;
  size_t n_msgs;
  /* One request, one reply, in one batch: on_status is the only event. */
  int unary;
  /* The requests are not known yet (n_msgs must be 0, unary 0): the
   * metadata goes now, each message later with mw_lb_call_send, the
   * half-close with mw_lb_call_close_send. */
  int stream_requests;
  const mw_lb_ops *ops;
  void *self;
} mw_lb_start;

/* Starts a call (copies what a holds). Returns it, owned by the caller
 * until mw_lb_call_release, or NULL with err filled. */
mw_lb_call *mw_lb_call_start(mw_loopback *lb, const mw_lb_start *a, char *err, size_t errlen);
/* Asks for the next response message (streaming calls): on_message
 * follows. Returns 0, or -1 when a read is pending or the responses ended. */
int mw_lb_call_recv(mw_lb_call *c);
/* With stream_requests: sends one request message (copied). One at a
 * time: on_sent tells when the next may go, which is how a caller holds a
 * fast client back (the call takes a message only as fast as the handler
 * and HTTP/2 flow control let it). Returns 0, or -1 when a send is still
 * pending, the requests were closed or the call is over. */
int mw_lb_call_send(mw_lb_call *c, const char *data, size_t len);
/* With stream_requests: the end of the requests (the half-close), after
 * the message in flight if there is one. Returns 0, or -1 when already
 * closed or not a stream_requests call. */
int mw_lb_call_close_send(mw_lb_call *c);
/* The caller is done: no event reaches it any more; a call still running
 * is cancelled (the handler sees the cancellation). Safe inside an event. */
void mw_lb_call_release(mw_lb_call *c);

/* After on_status: the status (base/mw_status.h) and its message. */
int mw_lb_call_code(const mw_lb_call *c);
const char *mw_lb_call_message(const mw_lb_call *c, size_t *len);
/* The unary reply: 1 with the bytes (valid until release), 0 when none. */
int mw_lb_call_response(const mw_lb_call *c, const char **data, size_t *len);
/* Response headers (from the first message or the status on) and trailers
 * (after on_status), entry by entry; values of -bin keys are binary. */
size_t mw_lb_call_md_count(const mw_lb_call *c, int trailers);
void mw_lb_call_md_at(const mw_lb_call *c, int trailers, size_t i, const char **k, size_t *kl,
                      const char **v, size_t *vl);

#endif
