/* A Redis connection owned by an I/O thread of its own (hiredis's async
 * API over a small poll loop), for the Redis backend of shared dicts
 * (shared/mw_redis.h). Any thread hands it a command already formatted
 * (RESP bytes); the I/O thread writes every command queued since its last
 * turn in one write (pipelining across all workers) and calls each
 * command's on_reply, in order, when its reply arrives.
 *
 * The connection is made at once in the background and made again after
 * a loss, with a backoff from 50 ms doubling to 1 s. While it is down a
 * command fails at once with the reason of the last failure ("connection
 * refused"): a worker never waits on a Redis that is not there. A connect
 * attempt is bounded by the configured timeout, and a connection with
 * commands pending that gets no reply for three times that timeout (a
 * stopped Redis, a half-open connection) is dropped and made again, so
 * pending commands never pile up without end. Losses and recoveries are
 * logged once each. Nothing here knows the dict operations, and nothing
 * here blocks the caller of submit. */
#ifndef MW_RCONN_H
#define MW_RCONN_H

#include <stddef.h>
#include <stdint.h>

struct redisReply;
typedef struct mw_rconn mw_rconn;
typedef struct mw_rcmd mw_rcmd;

/* One command. The submitter owns it and its bytes; the connection links
 * it (next) from submit until on_reply, which runs exactly once on the I/O
 * thread (a SUBSCRIBE on a subscriber connection aside: see
 * mw_rconn_new_sub): with the reply (err NULL; the reply is freed when on_reply
 * returns), or with r NULL and err the reason ("connection refused",
 * "server closed the connection", "shutting down"). */
struct mw_rcmd {
  mw_rcmd *next;
  char *cmd; /* RESP bytes */
  size_t len;
  void (*on_reply)(mw_rcmd *c, struct redisReply *r, const char *err);
};

/* Where to connect: host and port, the database SELECTed on each new
 * connection, and an optional password (AUTH). */
typedef struct mw_rconn_addr {
  char host[256];
  int port;
  int db;
  char password[256]; /* "" when none */
} mw_rconn_addr;

/* Reads redis://[:PASSWORD@]HOST[:PORT][/DB] (port 6379, db 0 by
 * default). Returns 0, or -1 with the reason in err. */
int mw_rconn_parse_url(const char *url, mw_rconn_addr *out, char *err, size_t errlen);

/* Starts the I/O thread, which connects at once. connect_timeout_ms > 0.
 * NULL with the reason in err when the thread cannot start. */
mw_rconn *mw_rconn_new(const mw_rconn_addr *addr, int64_t connect_timeout_ms, char *err,
                       size_t errlen);

/* A subscriber connection (pub/sub, for session rooms on Redis): as
 * mw_rconn_new, and on every new connection, once AUTH and SELECT are
 * sent, on_up(conn, arg) runs on the I/O thread, where the owner sends
 * its SUBSCRIBE with mw_rconn_resend (a lost connection loses its
 * subscriptions). A SUBSCRIBE's on_reply is not called once: it runs for
 * the subscribe confirmation and for each message pushed, then once with r
 * NULL when the connection goes (the owner keeps the record; nothing else
 * is sent on such a connection). */
mw_rconn *mw_rconn_new_sub(const mw_rconn_addr *addr, int64_t connect_timeout_ms,
                           void (*on_up)(mw_rconn *conn, void *arg), void *arg, char *err,
                           size_t errlen);

/* Any thread: queues c for the I/O thread; on_reply follows. */
void mw_rconn_submit(mw_rconn *conn, mw_rcmd *c);

/* The I/O thread only (from an on_reply): sends c again, now, after its
 * cmd bytes were changed (a script sent as EVAL after NOSCRIPT). */
void mw_rconn_resend(mw_rconn *conn, mw_rcmd *c);

/* Whether the connection is up now (a hint: for tests and messages). */
int mw_rconn_up(mw_rconn *conn);

/* Stops the thread: every command not answered yet gets "shutting down".
 * NULL is ignored. */
void mw_rconn_free(mw_rconn *conn);

#endif
