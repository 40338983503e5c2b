/* Outbound calls: channels to other gRPC services and calls on them, on
 * gRPC core, for a backend that serves calls and makes its own. Like
 * mw_call.h this header includes nothing of gRPC: the Lua layer drives an
 * outbound call with the commands below and hears of it only through the
 * mw_ccall_ops it passed at the start.
 *
 * On a worker thread a call's batches complete on the worker's own
 * completion queue, so its events run on that worker between the others,
 * and channels are cached per worker (each worker keeps its own
 * connections: nothing is shared between threads). On any other thread
 * (module code at load) only the blocking unary form exists, on a channel
 * made for it and destroyed after it.
 *
 * What may be reached is the process's policy, set once before any call:
 * a target outside the allow-list is refused before any channel exists. */
#ifndef MW_CLIENT_H
#define MW_CLIENT_H

#include <stddef.h>

typedef struct mw_channel mw_channel;
typedef struct mw_ccall mw_ccall;

/* --- process-wide policy ------------------------------------------------- */
typedef struct mw_client_policy {
  const char *const *allow; /* target patterns (config client.allow); see
                               mw_client_allowed */
  size_t n_allow;
  size_t max_receive_bytes;  /* one response message at most */
  size_t max_metadata_bytes; /* response headers, and trailers, at most */
  int keepalive_ms;          /* keepalive pings while calls run; 0: none */
  int connect_timeout_ms;    /* one connection attempt at most */
  int max_backoff_ms;        /* reconnect backoff at most */
  int max_channels;          /* cached per worker; the least recently used
                                beyond it is closed */
} mw_client_policy;

/* Copies p (NULL: the defaults, nothing allowed). Takes a gRPC core
 * reference kept until mw_client_shutdown. Returns 0, or -1 when out of
 * memory. */
int mw_client_configure(const mw_client_policy *p);
/* Drops the policy and the reference; safe twice. No call may run. */
void mw_client_shutdown(void);

/* Whether the target may be reached under the policy: a pattern matches
 * the target written the same way, "HOST:*" any port of HOST, "*" every
 * target. Returns 1, or 0 with the reason in err. A target must be
 * "HOST:PORT", "[IPv6]:PORT" or "unix:PATH"; anything else (a resolver
 * scheme such as dns:/// or xds:) is refused. */
int mw_client_allowed(const char *target, char *err, size_t errlen);

/* Under moonwire test: every channel made from now on reaches target
 * (the in-process server, plaintext) whatever it names, so that a
 * handler's downstreams are answered by the directory's own handlers and
 * stubs. The allow-list still judges the target as written. NULL: off.
 * Set before any worker runs. */
void mw_client_redirect(const char *target);

/* --- channels ------------------------------------------------------------- */
/* How to reach a target. Equal options share one cached channel. */
typedef struct mw_channel_opts {
  const char *target;
  int tls;                 /* 0: plaintext */
  const char *ca_pem;      /* PEM roots; NULL: the system's */
  const char *cert_pem;    /* client certificate chain (mTLS), or NULL */
  const char *key_pem;     /* its key, with cert_pem */
  const char *server_name; /* the name the certificate must carry, when
                              not the target's host */
} mw_channel_opts;

/* --- calls ---------------------------------------------------------------- */
/* The events of one outbound call; each runs on the worker thread that
 * started it, with the call pinned (commands issued in it start when it
 * returns). self is the caller's record. */
typedef struct mw_ccall_ops {
  /** A response message (has_msg == 1; data valid during the event), or
   * the end of the responses (has_msg == 0), for a read asked with
   * mw_ccall_recv. ok == 0: the call failed; its status follows. */
  void (*on_message)(void *self, int ok, const char *data, size_t len, int has_msg);
  /** The send queue has room again after mw_ccall_send returned 0. */
  void (*on_writable)(void *self);
  /** The call is over: mw_ccall_code and the rest may be read. For a unary
   * call this is the only event, and mw_ccall_response holds the reply.
   * Comes once, after every read asked for has completed. */
  void (*on_status)(void *self);
} mw_ccall_ops;

typedef struct mw_ccall_start_args {
  const mw_channel_opts *channel;
  const char *path;        /* "/pkg.Service/Method" */
  double deadline;         /* epoch seconds; 0: none */
  int wait_for_ready;      /* wait for a connection instead of failing fast */
  /* Request metadata: n pairs, values len bytes (binary for -bin keys). */
  const char *const *md_keys;
  const char *const *md_vals;
  const size_t *md_lens;
  size_t md_n;
  const mw_ccall_ops *ops;
  void *self;
  /* Unary: the request, sent with the call in one batch. */
  const char *request;
  size_t request_len;
  int unary;
} mw_ccall_start_args;

/* Starts a call on the current worker (a worker thread only) over the
 * cached channel of a->channel (made on first use). A unary call (a->unary)
 * goes out whole; any other is opened: send, close_send and recv drive it.
 * Returns the call, owned by the caller until mw_ccall_release, or NULL
 * with err filled (the target is not allowed, the metadata or the TLS
 * files are not valid, not on a worker, out of memory). */
mw_ccall *mw_ccall_start(const mw_ccall_start_args *a, char *err, size_t errlen);

/* Queues one request message (copied). 1: room for more; 0: wait for
 * on_writable; -1: the call has ended or sending was closed (nothing
 * queued). */
int mw_ccall_send(mw_ccall *c, const char *data, size_t len);
/* No more request messages; sent once the queue has drained. */
void mw_ccall_close_send(mw_ccall *c);
/* Asks for the next response message: on_message follows. Returns 0, or
 * -1 when a read is already pending or the responses have ended. */
int mw_ccall_recv(mw_ccall *c);
/* Cancels the call (status CANCELLED, the server hears RST_STREAM); the
 * events still come. Harmless after the end. */
void mw_ccall_cancel(mw_ccall *c);
/* The caller is done with c: no event reaches it any more. A call still
 * running is cancelled; the record goes once gRPC core gives it back. */
void mw_ccall_release(mw_ccall *c);

/* After on_status: the status code (base/mw_status.h) and message. */
int mw_ccall_code(const mw_ccall *c);
const char *mw_ccall_message(const mw_ccall *c, size_t *len);
/* The unary reply: 1 with the bytes (valid until release), 0 when none. */
int mw_ccall_response(mw_ccall *c, const char **data, size_t *len);
/* Response headers (once a message or the status arrived) and trailers
 * (after on_status), entry by entry; not NUL-terminated. */
size_t mw_ccall_header_count(const mw_ccall *c);
void mw_ccall_header_at(const mw_ccall *c, size_t i, const char **k, size_t *kl,
                        const char **v, size_t *vl);
size_t mw_ccall_trailer_count(const mw_ccall *c);
void mw_ccall_trailer_at(const mw_ccall *c, size_t i, const char **k, size_t *kl,
                         const char **v, size_t *vl);
/* A unary call made and waited for on the calling thread, for code that
 * runs outside any worker (module code at load): the same as above with
 * the events replaced by waiting, on a channel of its own. deadline is
 * required. Returns the finished call (read it as after on_status, then
 * release it), or NULL with err filled. */
mw_ccall *mw_ccall_unary_blocking(const mw_ccall_start_args *a, char *err, size_t errlen);

/* A worker thread ends: its cached channels are closed. */
void mw_client_thread_exit(void);

#endif
