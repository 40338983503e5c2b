/* Mailboxes on a real completion queue: the owner blocks in
 * grpc_completion_queue_next with no deadline, so every delivery below is a
 * real wake. Checks are made on the main thread; other threads record what
 * they saw and the main thread checks it after joining them. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "base/mw_absl.h"
#include "core/mw_mailbox.h"
#include "mw_test.h"

typedef struct tmail {
  mw_mail mail; /* first: the mail is the message */
  int poster;
  int seq;
} tmail;

static grpc_event next_event(grpc_completion_queue *cq, int wait) {
  return grpc_completion_queue_next(
      cq, wait ? gpr_inf_future(GPR_CLOCK_REALTIME) : gpr_inf_past(GPR_CLOCK_REALTIME),
      NULL);
}

/* --- one thread: coalescing, order, close ---------------------------------- */

static int ran[8], n_ran;

static void record(mw_mail *m) { ran[n_ran++] = ((tmail *)m)->seq; }

static mw_mailbox *chain_mb;
static int chain_left;

/* Posts itself again from the owner thread while its mailbox runs. */
static void chain(mw_mail *m) {
  if (--chain_left > 0) mw_mailbox_post(chain_mb, m);
}

static void test_one_thread(void) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  int wake_tag;
  mw_mailbox *mb = mw_mailbox_new(cq, &wake_tag);
  MW_CHECK(mb != NULL);
  tmail m[3];
  n_ran = 0;
  for (int i = 0; i < 3; i++) {
    m[i] = (tmail){{NULL, record}, 0, i};
    MW_CHECK_INT(mw_mailbox_post(mb, &m[i].mail), 0);
  }
  /* three posts, one wake */
  grpc_event ev = next_event(cq, 1);
  MW_CHECK_INT(ev.type, GRPC_OP_COMPLETE);
  MW_CHECK(ev.tag == &wake_tag);
  MW_CHECK_INT(ev.success, 0);
  MW_CHECK_INT(next_event(cq, 0).type, GRPC_QUEUE_TIMEOUT);
  MW_CHECK_INT(mw_mailbox_run(mb), 3);
  MW_CHECK_INT(n_ran, 3);
  for (int i = 0; i < 3; i++) MW_CHECK_INT(ran[i], i);

  /* mail that posts itself runs once per wake, not in a loop inside run */
  chain_mb = mb;
  chain_left = 5;
  mw_mail c = {NULL, chain};
  MW_CHECK_INT(mw_mailbox_post(mb, &c), 0);
  int wakes = 0;
  while (chain_left > 0) {
    ev = next_event(cq, 1);
    MW_CHECK(ev.type == GRPC_OP_COMPLETE && ev.tag == &wake_tag);
    MW_CHECK_INT(mw_mailbox_run(mb), 1);
    wakes++;
  }
  MW_CHECK_INT(wakes, 5);
  MW_CHECK_INT(next_event(cq, 0).type, GRPC_QUEUE_TIMEOUT);

  /* accepted before close: runs after it; posted after close: refused */
  m[0].seq = 7;
  MW_CHECK_INT(mw_mailbox_post(mb, &m[0].mail), 0);
  mw_mailbox_close(mb);
  mw_mailbox_close(mb); /* twice is safe */
  MW_CHECK_INT(mw_mailbox_post(mb, &m[1].mail), -1);
  grpc_completion_queue_shutdown(cq);
  ev = next_event(cq, 1);
  MW_CHECK(ev.type == GRPC_OP_COMPLETE && ev.tag == &wake_tag);
  n_ran = 0;
  MW_CHECK_INT(mw_mailbox_run(mb), 1);
  MW_CHECK_INT(ran[0], 7);
  MW_CHECK_INT(next_event(cq, 1).type, GRPC_QUEUE_SHUTDOWN);
  mw_mailbox_free(mb);
  mw_mailbox_free(NULL);
  grpc_completion_queue_destroy(cq);
}

/* --- several posters, one blocked owner ------------------------------------ */

#define POSTERS 4
#define PER_POSTER 5000

typedef struct owner {
  grpc_completion_queue *cq;
  mw_mailbox *mb;
  int wake_tag;
  int ignore_after_close; /* drain like a teardown loop that runs nothing */
  int closed;
  /* written by the owner thread only */
  int next_seq[POSTERS];
  long out_of_order;
  long ran;
  long wakes;
  long wakes_after_close;
} owner;

static owner the_owner;
static unsigned char delivered[POSTERS][PER_POSTER];

static void deliver(mw_mail *mm) {
  tmail *m = (tmail *)mm;
  owner *o = &the_owner;
  if (m->seq != o->next_seq[m->poster]) o->out_of_order++;
  o->next_seq[m->poster] = m->seq + 1;
  if (delivered[m->poster][m->seq] < 255) delivered[m->poster][m->seq]++;
  o->ran++;
}

/* Sent by the main thread: the owner closes its mailbox and its cq, in
 * that order, from its own thread, unless it has already. */
static void stop(mw_mail *m) {
  owner *o = &the_owner;
  if (!o->closed) {
    mw_mailbox_close(o->mb);
    grpc_completion_queue_shutdown(o->cq);
    o->closed = 1;
  }
  free(m);
}

static void *owner_main(void *arg) {
  owner *o = arg;
  for (;;) {
    grpc_event ev = next_event(o->cq, 1);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE || ev.tag != &o->wake_tag) continue;
    o->wakes++;
    if (o->closed) {
      o->wakes_after_close++;
      if (o->ignore_after_close) continue;
    }
    mw_mailbox_run(o->mb);
  }
  return NULL;
}

static tmail mails[POSTERS][PER_POSTER];
static _Atomic int posts_failed;

static void *poster_main(void *arg) {
  int p = (int)(intptr_t)arg;
  for (int i = 0; i < PER_POSTER; i++) {
    mails[p][i] = (tmail){{NULL, deliver}, p, i};
    if (mw_mailbox_post(the_owner.mb, &mails[p][i].mail) != 0) atomic_fetch_add(&posts_failed, 1);
    /* Poster 0 pauses now and then so the owner goes idle and the next
     * post is a wake of a blocked thread, not only coalesced mail. */
    if (p == 0 && i % 500 == 0) usleep(200);
  }
  return NULL;
}

static void test_many_posters(void) {
  owner *o = &the_owner;
  memset(o, 0, sizeof *o);
  memset(delivered, 0, sizeof delivered);
  o->cq = grpc_completion_queue_create_for_next(NULL);
  o->mb = mw_mailbox_new(o->cq, &o->wake_tag);
  pthread_t ot, pt[POSTERS];
  pthread_create(&ot, NULL, owner_main, o);
  usleep(1000); /* let the owner block first */
  for (int p = 0; p < POSTERS; p++) pthread_create(&pt[p], NULL, poster_main, (void *)(intptr_t)p);
  for (int p = 0; p < POSTERS; p++) pthread_join(pt[p], NULL);
  mw_mail *s = malloc(sizeof *s);
  s->fn = stop;
  MW_CHECK_INT(mw_mailbox_post(o->mb, s), 0);
  pthread_join(ot, NULL);
  MW_CHECK_INT(atomic_load(&posts_failed), 0);
  MW_CHECK_INT(o->ran, POSTERS * PER_POSTER);
  MW_CHECK_INT(o->out_of_order, 0);
  long bad = 0;
  for (int p = 0; p < POSTERS; p++)
    for (int i = 0; i < PER_POSTER; i++) bad += delivered[p][i] != 1;
  MW_CHECK_INT(bad, 0);
  /* coalescing: some wakes, far fewer than mails */
  MW_CHECK(o->wakes >= 1 && o->wakes <= POSTERS * PER_POSTER + 1);
  MW_CHECK_INT(o->wakes_after_close, 0);
  tmail late = {{NULL, deliver}, 0, 0};
  MW_CHECK_INT(mw_mailbox_post(o->mb, &late.mail), -1);
  mw_mailbox_free(o->mb);
  grpc_completion_queue_destroy(o->cq);
  printf("many posters: %d mails, %ld wakes\n", POSTERS * PER_POSTER, o->wakes);
}

/* --- one poster, an idle owner: every post is a wake ---------------------- */

#define PINGS 200

static _Atomic int pinged;

static void ping(mw_mail *m) {
  (void)m;
  atomic_store(&pinged, 1);
}

static void test_idle_owner(void) {
  owner *o = &the_owner;
  memset(o, 0, sizeof *o);
  o->cq = grpc_completion_queue_create_for_next(NULL);
  o->mb = mw_mailbox_new(o->cq, &o->wake_tag);
  pthread_t ot;
  pthread_create(&ot, NULL, owner_main, o);
  mw_mail m = {NULL, ping};
  long failed = 0;
  for (int i = 0; i < PINGS; i++) {
    usleep(100); /* the owner is back in next, blocked */
    atomic_store(&pinged, 0);
    failed += mw_mailbox_post(o->mb, &m) != 0;
    while (!atomic_load(&pinged)) sched_yield();
  }
  mw_mail *s = malloc(sizeof *s);
  s->fn = stop;
  MW_CHECK_INT(mw_mailbox_post(o->mb, s), 0);
  pthread_join(ot, NULL);
  MW_CHECK_INT(failed, 0);
  /* the wake is retired before its mail runs, so the next post finds none
   * pending however soon it comes: one wake per ping, plus the stop's */
  MW_CHECK_INT(o->wakes, PINGS + 1);
  mw_mailbox_free(o->mb);
  grpc_completion_queue_destroy(o->cq);
}

/* --- closing while posters post -------------------------------------------- */

#define RACERS 3
#define RACE_ROUNDS 60
#define RACE_MAILS 2000 /* per racer: a ring, each mail posted again once it ran */

static tmail race_mails[RACERS][RACE_MAILS];
static long race_accepted[RACERS];
/* Mails of each racer run so far (the owner's thread, or the free's). */
static atomic_long race_ran[RACERS];
/* Set once the owner's close has returned: every post after it is refused. */
static atomic_int race_closed;
/* What a racer posts when its ring is full and the owner has closed. */
static tmail race_late[RACERS];

static void race_deliver(mw_mail *mm) {
  tmail *m = (tmail *)mm;
  owner *o = &the_owner;
  if (m->seq != o->next_seq[m->poster]) o->out_of_order++;
  o->next_seq[m->poster] = m->seq + 1;
  o->ran++;
  atomic_fetch_add(&race_ran[m->poster], 1);
}

/* The owner closes after this many mails, with posts still arriving. */
static long race_close_after;

static void race_deliver_and_close(mw_mail *mm) {
  race_deliver(mm);
  owner *o = &the_owner;
  if (!o->closed && o->ran >= race_close_after) {
    mw_mailbox_close(o->mb);
    atomic_store(&race_closed, 1);
    grpc_completion_queue_shutdown(o->cq);
    o->closed = 1;
  }
}

/* Posts until a post is refused, however the threads are scheduled: a
 * racer that is ahead of the owner by a whole ring waits for its mails to
 * run (or, once the owner has closed, posts one more, which is refused). */
static void *racer_main(void *arg) {
  int p = (int)(intptr_t)arg;
  long n = 0;
  for (int seq = 0;; seq++) {
    tmail *m = &race_mails[p][seq % RACE_MAILS];
    while (seq - atomic_load(&race_ran[p]) >= RACE_MAILS) {
      if (atomic_load(&race_closed)) {
        m = &race_late[p];
        break;
      }
      sched_yield();
    }
    *m = (tmail){{NULL, race_deliver_and_close}, p, seq};
    if (mw_mailbox_post(the_owner.mb, &m->mail) != 0) break;
    n++;
  }
  race_accepted[p] = n;
  return NULL;
}

static void test_close_while_posting(void) {
  long lost = 0, disorder = 0, after_close = 0, posted = 0;
  for (int round = 0; round < RACE_ROUNDS; round++) {
    owner *o = &the_owner;
    memset(o, 0, sizeof *o);
    o->ignore_after_close = round % 2; /* odd rounds: free runs what is left */
    race_close_after = 50 + (round * 37) % 400;
    atomic_store(&race_closed, 0);
    for (int p = 0; p < RACERS; p++) atomic_store(&race_ran[p], 0);
    o->cq = grpc_completion_queue_create_for_next(NULL);
    o->mb = mw_mailbox_new(o->cq, &o->wake_tag);
    pthread_t ot, pt[RACERS];
    pthread_create(&ot, NULL, owner_main, o);
    for (int p = 0; p < RACERS; p++) pthread_create(&pt[p], NULL, racer_main, (void *)(intptr_t)p);
    for (int p = 0; p < RACERS; p++) pthread_join(pt[p], NULL);
    long accepted = 0;
    for (int p = 0; p < RACERS; p++) accepted += race_accepted[p];
    posted += accepted; /* each racer got here past a refused post: a post
                           after the close that was taken would never end */
    /* Refused: the owner has closed already. */
    mw_mail *s = malloc(sizeof *s);
    s->fn = stop;
    if (mw_mailbox_post(o->mb, s) != 0) free(s);
    pthread_join(ot, NULL);
    after_close += o->wakes_after_close;
    mw_mailbox_free(o->mb); /* runs the mail an ignored wake left */
    grpc_completion_queue_destroy(o->cq);
    lost += accepted - o->ran;
    disorder += o->out_of_order;
  }
  MW_CHECK_INT(lost, 0);
  MW_CHECK_INT(disorder, 0);
  printf("close while posting: %d rounds, %ld mails taken before the close, %ld wakes after close\n",
         RACE_ROUNDS, posted, after_close);
}

int main(void) {
  mw_absl_fast_mutexes();
  grpc_init();
  MW_RUN(test_one_thread);
  MW_RUN(test_many_posters);
  MW_RUN(test_idle_owner);
  MW_RUN(test_close_while_posting);
  grpc_shutdown();
  return mw_test_done();
}
