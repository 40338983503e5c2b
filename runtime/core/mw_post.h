/* Mail to the running server's workers, for layers that do not hold the
 * server: a backend wakes waiters on other workers (a health change
 * reaching every Watch stream) by posting to each worker by number. This
 * header includes nothing of gRPC.
 *
 * One server runs per process; mw_server_start makes its workers the
 * targets and mw_server_stop withdraws them. Before and after, posts are
 * refused and nobody is waiting. */
#ifndef MW_POST_H
#define MW_POST_H

typedef struct mw_mail mw_mail;

/* Runs on the receiving worker's thread; m belongs to fn from then on (it
 * usually frees or reuses it, and may post it again, to any mailbox). */
typedef void (*mw_mail_fn)(mw_mail *m);

/* Intrusive: embed it in your message (first member, or recover the
 * message with offsetof). The mailbox owns next while the mail is queued. */
struct mw_mail {
  mw_mail *next;
  mw_mail_fn fn;
};

/* Workers of the running server (0 when none runs). */
int mw_post_workers(void);
/* Any thread: m->fn runs once on worker `worker`'s thread (the mailbox
 * rule of core/mw_mailbox.h). 0 when accepted; -1 when no server runs, the
 * worker does not exist or is closing (the caller keeps m). */
int mw_post(int worker, mw_mail *m);

#endif
