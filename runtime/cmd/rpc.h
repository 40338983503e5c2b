/* The client side of moonwire call / list / describe: one channel to one
 * server and calls on it, on gRPC core's C API with a completion queue of
 * the command's own (no worker, no Lua). Every operation blocks until gRPC
 * core has done it, on a tag of its own plucked from the queue, so one
 * thread may send (a stream's requests from stdin) while another receives
 * (its responses to stdout): core allows a send and a receive batch in
 * flight at once, and several pluckers on distinct tags.
 *
 * Used by cmd/call.c (the call itself) and cmd/reflect_client.c (the
 * reflection stream that finds the schema). */
#ifndef MW_CMD_RPC_H
#define MW_CMD_RPC_H

#include <stddef.h>

/* How to reach the server: from the command line (cmd/call.c). Files are
 * paths; they are read when the connection is made. */
typedef struct mw_rpc_target {
  const char *addr;       /* HOST:PORT, [IPv6]:PORT or unix:PATH */
  int tls;                /* 0: plaintext */
  int insecure;           /* TLS without checking the server's certificate */
  const char *cacert;     /* PEM roots; NULL: the system's */
  const char *cert, *key; /* client certificate and key (mTLS), or NULL */
  const char *servername; /* the name the certificate must carry, when not
                             the address's host */
} mw_rpc_target;

/* Request metadata: a key, its value (len bytes: binary for -bin keys). */
typedef struct mw_rpc_md {
  const char *key;
  const char *val;
  size_t len;
} mw_rpc_md;

typedef struct mw_rpc_conn mw_rpc_conn;
typedef struct mw_rpc mw_rpc;

/* Takes a gRPC core reference, reads the TLS files and makes the channel
 * (connecting lazily, at the first call). Returns the connection, or NULL
 * with err filled (a file cannot be read, a certificate without its key).
 * cmd/call.c calls it once per command. */
mw_rpc_conn *mw_rpc_connect(const mw_rpc_target *t, char *err, size_t errlen);
/* Closes the channel and drops the reference; no call may be open. NULL
 * is fine. */
void mw_rpc_conn_free(mw_rpc_conn *c);

/* Opens a call of path ("/pkg.Svc/Method") with the metadata (copied by
 * core), timeout_s seconds from now (0: none), and sends the headers.
 * Returns the call, or NULL with err filled (out of memory). A server that
 * cannot be reached shows as the call's status (UNAVAILABLE), not here. */
mw_rpc *mw_rpc_start(mw_rpc_conn *c, const char *path, double timeout_s,
                     const mw_rpc_md *md, size_t n_md, char *err, size_t errlen);
/* Sends one request message and waits until core took it. Returns 0, or
 * -1 when the call is over (its status says why). */
int mw_rpc_send(mw_rpc *r, const char *data, size_t len);
/* No more requests. Returns 0, or -1 when the call is over. */
int mw_rpc_close_send(mw_rpc *r);
/* Waits for the next response message: 1 with it in *data (malloc'd, the
 * caller frees it), 0 at the end of the responses or when the call failed
 * (mw_rpc_finish tells which). */
int mw_rpc_recv(mw_rpc *r, char **data, size_t *len);
/* Waits for the status (every receive asked for has completed) and
 * returns its code; then the accessors below may be read. Cancels nothing:
 * a caller that wants to stop early calls mw_rpc_cancel first. */
int mw_rpc_finish(mw_rpc *r);
/* Cancels the call (the server hears RST_STREAM); harmless after the end. */
void mw_rpc_cancel(mw_rpc *r);
/* Ends the call's record (after mw_rpc_finish). NULL is fine. */
void mw_rpc_free(mw_rpc *r);

/* After mw_rpc_finish: the message (NUL-terminated), core's own
 * description of a transport failure (or NULL), and the metadata. Headers
 * are there once the first response message or the status arrived. */
const char *mw_rpc_message(const mw_rpc *r);
const char *mw_rpc_error_string(const mw_rpc *r);
size_t mw_rpc_header_count(const mw_rpc *r);
size_t mw_rpc_trailer_count(const mw_rpc *r);
/* Entry i of the headers (trailers == 0) or trailers; not NUL-terminated. */
void mw_rpc_md_at(const mw_rpc *r, int trailers, size_t i, const char **k, size_t *kl,
                  const char **v, size_t *vl);

#endif
