/* A scripted call layer for testing backends without gRPC: implements
 * every function of core/mw_call.h, records the commands a backend gives,
 * and lets a test deliver the events core would deliver, in the order the
 * test chooses.
 *
 * What it records: messages sent (the "room" each send returns can be
 * scripted, so a test can make a backend wait for on_writable), reads
 * asked for and whether one is pending, headers and trailers, the finish
 * code and message, watch_cancel, timers armed, disarmed and fired, plus a
 * one-line trace of every command in order.
 *
 * What it mirrors of core (core/mw_call.c), so that what passes here holds
 * there: events run through the attached mw_call_ops only; on_cancel comes
 * at most once and sets mw_call_cancelled first; a failed read (ok == 0)
 * marks the call cancelled before it is delivered, with the read no longer
 * pending; on_message only for a read that was asked for; on_writable only
 * after a send returned 0; timers fire only from fake_fire_timers; on_done
 * comes last and once. After on_done the record is dead: the fake keeps it
 * (so a test can still read what was recorded) but any command or event on
 * it counts as a violation, as would any timer of the call still armed. */
#ifndef MW_FAKE_CALL_H
#define MW_FAKE_CALL_H

#include <stddef.h>

#include "core/mw_call.h"

#define FAKE_MAX_SENT 64
#define FAKE_MAX_MD 8
#define FAKE_MAX_AUTH 16
#define FAKE_MAX_ROOM 16
#define FAKE_TRACE_LEN 2048

typedef struct fake_msg {
  char *data; /* owned copy */
  size_t len;
} fake_msg;

/* The fake's call record. Fields marked "set" may be set by a test before
 * the call starts; the rest is what the fake recorded. */
struct mw_call {
  /* set: what the backend reads */
  const mw_method *method;
  int worker_id;
  double deadline;  /* epoch seconds, 0: none */
  const char *peer;
  size_t n_md;
  const char *md_key[FAKE_MAX_MD], *md_val[FAKE_MAX_MD];
  size_t n_auth;    /* the auth context's properties, in order */
  const char *auth_name[FAKE_MAX_AUTH], *auth_val[FAKE_MAX_AUTH];
  mw_server_stats stats;
  mw_call_io io;    /* what mw_call_io_of shows */

  /* set: scripted answers */
  int room_default;               /* what a send returns when the script is empty (1) */
  int room_script[FAKE_MAX_ROOM]; /* consumed one per send, in order */
  int n_room_script, room_next;
  int reads_fail_to_start;        /* mw_call_recv leaves no read pending,
                                     as when core cannot start the batch */

  /* recorded */
  const mw_call_ops *ops;
  void *self;
  int attach_calls;
  fake_msg sent[FAKE_MAX_SENT];
  int n_sent;           /* messages sent, in order (sent[] keeps the first
                           FAKE_MAX_SENT) */
  int recv_calls;       /* mw_call_recv commands */
  int reading;          /* a read is pending */
  int want_writable;    /* a send returned 0 and on_writable is owed */
  int watch_cancel_calls;
  int headers_sent;     /* the first message or the status has gone out */
  int n_headers, n_trailers;
  char headers[256], trailers[256]; /* "k=v;k=v;" */
  char *details;        /* the grpc-status-details-bin bytes (owned), or NULL */
  size_t details_len;
  size_t details_max;   /* set: refuse details longer than this (0: none) */
  int finish_calls;     /* mw_call_finish commands (the first wins) */
  int finished;
  int finish_code;
  char finish_msg[512];
  int sends_after_finish;
  int timer_starts, timer_cancels, timer_fires;
  double last_timer_secs;
  int auth_walks;       /* mw_call_auth_each commands */
  int cancelled;        /* mw_call_cancelled */
  int cancel_told;      /* on_cancel was delivered */
  int done;             /* on_done was delivered: the record is dead */
  int busy;             /* inside an event */
  int violations;       /* contract breaches seen on this call */
  char trace[FAKE_TRACE_LEN]; /* every command, in order */
};

/* A call of method m with the defaults (worker 0, no deadline, a send
 * always has room). */
mw_call *fake_call_new(const mw_method *m);
/* Frees the record. A call that has not had on_done gets it first. */
void fake_call_free(mw_call *c);
/* Adds request metadata (the strings are borrowed). */
void fake_call_add_metadata(mw_call *c, const char *key, const char *val);
/* Adds a property of the call's auth context (borrowed), as gRPC core
 * names them ("transport_security_type", "x509_common_name", ...). */
void fake_call_add_auth(mw_call *c, const char *name, const char *val);
/* Makes the next sends return these values in turn (1 room, 0 full, -1
 * out of memory), then room_default. */
void fake_call_script_room(mw_call *c, const int *rooms, int n);

/* --- events, as core delivers them --------------------------------------- */

/* Hands the call to its handler (mw_handler.start), as an event. The
 * handler must attach or finish before returning. */
void fake_start(mw_call *c, mw_handler *h, const char *first, size_t len,
                int has_first);
/* Completes the pending read: a message (ok, has_msg), the client's
 * half-close (ok, !has_msg) or a failed read (!ok: the call is marked
 * cancelled and on_cancel delivered first, as core does). */
void fake_message(mw_call *c, int ok, const char *data, size_t len, int has_msg);
/* The send queue has room again (after a send returned 0). */
void fake_writable(mw_call *c);
/* The client cancelled: marks the call cancelled and delivers on_cancel,
 * once; later calls are ignored as core ignores them. */
void fake_cancel(mw_call *c);
/* The last event: on_done. Afterwards the record is dead. */
void fake_done(mw_call *c);
/* Fires every timer armed before this call (a timer armed by a firing one
 * waits for the next turn), each as an event. Returns how many fired. */
int fake_fire_timers(void);
/* Timers armed now, of every call. */
int fake_timers_pending(void);

/* Mail to workers (core/mw_post.h): mw_post queues it here, for
 * fake_run_mail to run as a worker would. fake_set_workers(0) is "no
 * server running" (posts refused); the default is 2 workers. */
void fake_set_workers(int n);
/* Runs the mail queued before this call; returns how many ran. */
int fake_run_mail(void);
/* Mail queued now. */
int fake_mail_pending(void);

/* Contract breaches seen so far, on every call (each is also printed). */
int fake_violations(void);

#endif
