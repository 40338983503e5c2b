/*
 * wake_bench: what a cross-worker wake costs (runtime/core/mw_mailbox.h).
 *
 *   wake_bench [--samples N] [--spacing-us US] [--messages N] [--raw N] [--pin]
 *
 * 1. Latency: one poster, one consumer blocked in grpc_completion_queue_next
 *    with no deadline. Each sample posts one message and waits until the
 *    consumer has run it, then sleeps --spacing-us so that the consumer is
 *    blocked again: every sample is a real wake. Reported: post-to-run
 *    latency (median, p99, p99.9) and what the post call itself cost the
 *    poster, for
 *      mailbox    mw_mailbox_post (connectivity watch on a lame channel);
 *      lame-call  the alternative with a call per wake: a call on a lame
 *                 channel bound to the consumer's cq, whose RECV_STATUS
 *                 batch fails at once (the consumer then unrefs the call);
 *      condvar    a pthread condition variable, without gRPC: the floor of
 *                 waking a thread on this machine.
 * 2. Load: two posters flood one consumer with --messages messages each
 *    through one mailbox. Reported: messages/s and ns/message (wall time
 *    from the start to the last message run), the posters' CPU ns per
 *    message, and the fraction of posts that needed a wake.
 * 3. Raw wakes: the same two posters each start --raw wakes themselves, no
 *    coalescing (a watch, or a lame call, per message), to show the unit
 *    cost coalescing saves.
 *
 * --pin puts the latency poster on CPU 0 and the consumer on CPU 1, so that
 * the woken thread cannot preempt the one that woke it.
 *
 * Output: one line per figure, then one JSON object with all of them.
 * Built into build/bench/; not run by ctest.
 */
#define _GNU_SOURCE /* pthread_setaffinity_np */
#include <getopt.h>
#include <sched.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "base/mw_absl.h"
#include "core/mw_mailbox.h"

static long opt_samples = 20000;
static long opt_spacing_us = 50;
static long opt_messages = 500000; /* per poster */
static long opt_raw = 100000;      /* per poster */
static int opt_pin;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin_to(pthread_t t, int cpu) {
  if (!opt_pin) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(t, sizeof set, &set);
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

typedef struct pct {
  double p50, p99, p999;
} pct;

/* Percentiles in microseconds; sorts v. */
static pct percentiles(uint64_t *v, size_t n) {
  qsort(v, n, sizeof *v, cmp_u64);
  pct p = {v[n / 2] / 1e3, v[n * 99 / 100] / 1e3, v[n * 999 / 1000] / 1e3};
  return p;
}

/* --- the consumer: a worker loop on its own cq ------------------------------- */

enum { TAG_WAKE = 1, TAG_LAME_CALL, TAG_RAW };

typedef struct btag {
  int kind;
} btag;

typedef struct consumer {
  grpc_completion_queue *cq;
  mw_mailbox *mb;
  btag wake_tag;
  btag raw_tag;
  long wakes;        /* consumer thread only */
  long raws;         /* consumer thread only */
  long raw_target;   /* raw mode: stop after this many */
  uint64_t raw_done; /* when the last raw wake arrived */
  pthread_t thread;
} consumer;

/* One lame call, started by a poster, finished by the consumer. */
typedef struct lame_call {
  btag tag;
  grpc_call *call;
  grpc_metadata_array trailers;
  grpc_status_code status;
  grpc_slice details;
  uint64_t t0;
  uint64_t *sample;     /* latency mode: where the latency goes */
  _Atomic long *done;   /* latency mode: set to 1 once finished */
  consumer *c;
} lame_call;

static void lame_call_finish(lame_call *lc) {
  uint64_t t = now_ns();
  if (lc->sample) *lc->sample = t - lc->t0;
  grpc_call_unref(lc->call);
  grpc_metadata_array_destroy(&lc->trailers);
  grpc_slice_unref(lc->details);
  if (lc->done) atomic_store_explicit(lc->done, 1, memory_order_release);
  else free(lc);
}

static void *consumer_main(void *arg) {
  consumer *c = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    btag *t = ev.tag;
    switch (t->kind) {
    case TAG_WAKE:
      c->wakes++;
      mw_mailbox_run(c->mb);
      break;
    case TAG_LAME_CALL: {
      lame_call *lc = (lame_call *)t;
      consumer *cc = lc->c;
      lame_call_finish(lc);
      if (++cc->raws == cc->raw_target) cc->raw_done = now_ns();
      break;
    }
    case TAG_RAW:
      if (++c->raws == c->raw_target) c->raw_done = now_ns();
      break;
    }
  }
  return NULL;
}

static void consumer_start(consumer *c) {
  memset(c, 0, sizeof *c);
  c->cq = grpc_completion_queue_create_for_next(NULL);
  c->wake_tag.kind = TAG_WAKE;
  c->raw_tag.kind = TAG_RAW;
  c->mb = mw_mailbox_new(c->cq, &c->wake_tag);
  c->raw_target = -1;
  pthread_create(&c->thread, NULL, consumer_main, c);
  pin_to(c->thread, 1);
  sleep_us(2000); /* blocked before the first post */
}

static consumer *stopping;

/* Runs on the consumer: close the mailbox, then the cq, from the owner. */
static void stop_mail(mw_mail *m) {
  mw_mailbox_close(stopping->mb);
  grpc_completion_queue_shutdown(stopping->cq);
  free(m);
}

static void consumer_stop(consumer *c) {
  mw_mail *m = malloc(sizeof *m);
  m->fn = stop_mail;
  stopping = c;
  if (mw_mailbox_post(c->mb, m) != 0) abort();
  pthread_join(c->thread, NULL);
  mw_mailbox_free(c->mb);
  grpc_completion_queue_destroy(c->cq);
}

static grpc_channel *lame_channel(void) {
  return grpc_lame_client_channel_create("wake-bench", GRPC_STATUS_UNAVAILABLE, "bench");
}

static void lame_call_start(grpc_channel *ch, consumer *c, lame_call *lc) {
  lc->tag.kind = TAG_LAME_CALL;
  lc->c = c;
  grpc_metadata_array_init(&lc->trailers);
  lc->details = grpc_empty_slice();
  lc->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
                                      grpc_slice_from_static_string("/bench.Wake/Wake"),
                                      NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[1].data.recv_status_on_client.trailing_metadata = &lc->trailers;
  ops[1].data.recv_status_on_client.status = &lc->status;
  ops[1].data.recv_status_on_client.status_details = &lc->details;
  if (grpc_call_start_batch(lc->call, ops, 2, &lc->tag, NULL) != GRPC_CALL_OK) abort();
}

/* --- 1. latency -------------------------------------------------------------- */

typedef struct lat_mail {
  mw_mail mail;
  uint64_t t0;
  uint64_t *sample;
  _Atomic long *done;
} lat_mail;

static void lat_run(mw_mail *mm) {
  lat_mail *m = (lat_mail *)mm;
  *m->sample = now_ns() - m->t0;
  atomic_store_explicit(m->done, 1, memory_order_release);
}

static void wait_done(_Atomic long *done) {
  while (!atomic_load_explicit(done, memory_order_acquire)) {
  }
}

typedef struct lat_result {
  pct latency;
  pct post_cost;
  long wakes;
} lat_result;

#define WARMUP 200

static lat_result latency_mailbox(void) {
  consumer c;
  consumer_start(&c);
  uint64_t *lat = calloc((size_t)opt_samples, sizeof *lat);
  uint64_t *cost = calloc((size_t)opt_samples, sizeof *cost);
  for (long i = -WARMUP; i < opt_samples; i++) {
    uint64_t scratch;
    _Atomic long done = 0;
    lat_mail m = {{NULL, lat_run}, 0, i < 0 ? &scratch : &lat[i], &done};
    sleep_us(opt_spacing_us);
    m.t0 = now_ns();
    if (mw_mailbox_post(c.mb, &m.mail) != 0) abort();
    uint64_t t1 = now_ns();
    if (i >= 0) cost[i] = t1 - m.t0;
    wait_done(&done);
  }
  consumer_stop(&c);
  lat_result r = {percentiles(lat, (size_t)opt_samples),
                  percentiles(cost, (size_t)opt_samples), c.wakes};
  free(lat);
  free(cost);
  return r;
}

static lat_result latency_lame_call(void) {
  consumer c;
  consumer_start(&c);
  grpc_channel *ch = lame_channel();
  uint64_t *lat = calloc((size_t)opt_samples, sizeof *lat);
  uint64_t *cost = calloc((size_t)opt_samples, sizeof *cost);
  for (long i = -WARMUP; i < opt_samples; i++) {
    uint64_t scratch;
    _Atomic long done = 0;
    lame_call lc;
    memset(&lc, 0, sizeof lc);
    lc.sample = i < 0 ? &scratch : &lat[i];
    lc.done = &done;
    sleep_us(opt_spacing_us);
    lc.t0 = now_ns();
    lame_call_start(ch, &c, &lc);
    uint64_t t1 = now_ns();
    if (i >= 0) cost[i] = t1 - lc.t0;
    wait_done(&done);
  }
  consumer_stop(&c);
  grpc_channel_destroy(ch);
  lat_result r = {percentiles(lat, (size_t)opt_samples),
                  percentiles(cost, (size_t)opt_samples), 0};
  free(lat);
  free(cost);
  return r;
}

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t t0;
  int posted, quit;
  uint64_t *sample;
  _Atomic long *done;
} cvb = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL, NULL};

static void *cv_consumer(void *arg) {
  pthread_mutex_lock(&cvb.mu);
  for (;;) {
    while (!cvb.posted && !cvb.quit) pthread_cond_wait(&cvb.cv, &cvb.mu);
    if (cvb.quit) break;
    cvb.posted = 0;
    *cvb.sample = now_ns() - cvb.t0;
    atomic_store_explicit(cvb.done, 1, memory_order_release);
  }
  pthread_mutex_unlock(&cvb.mu);
  return NULL;
}

static lat_result latency_condvar(void) {
  pthread_t t;
  pthread_create(&t, NULL, cv_consumer, NULL);
  pin_to(t, 1);
  sleep_us(2000);
  uint64_t *lat = calloc((size_t)opt_samples, sizeof *lat);
  uint64_t *cost = calloc((size_t)opt_samples, sizeof *cost);
  for (long i = -WARMUP; i < opt_samples; i++) {
    uint64_t scratch;
    _Atomic long done = 0;
    sleep_us(opt_spacing_us);
    uint64_t t0 = now_ns();
    pthread_mutex_lock(&cvb.mu);
    cvb.t0 = t0;
    cvb.sample = i < 0 ? &scratch : &lat[i];
    cvb.done = &done;
    cvb.posted = 1;
    pthread_cond_signal(&cvb.cv);
    pthread_mutex_unlock(&cvb.mu);
    uint64_t t1 = now_ns();
    if (i >= 0) cost[i] = t1 - t0;
    wait_done(&done);
  }
  pthread_mutex_lock(&cvb.mu);
  cvb.quit = 1;
  pthread_cond_signal(&cvb.cv);
  pthread_mutex_unlock(&cvb.mu);
  pthread_join(t, NULL);
  lat_result r = {percentiles(lat, (size_t)opt_samples),
                  percentiles(cost, (size_t)opt_samples), 0};
  free(lat);
  free(cost);
  return r;
}

/* --- 2. load through one mailbox --------------------------------------------- */

#define POSTERS 2

typedef struct load_mail {
  mw_mail mail;
} load_mail;

static struct {
  long total;
  long ran; /* consumer thread only */
  _Atomic uint64_t end;
  _Atomic int go;
} load;

static void load_run(mw_mail *m) {
  (void)m;
  if (++load.ran == load.total) atomic_store(&load.end, now_ns());
}

typedef struct poster {
  consumer *c;
  int mode; /* 0 mailbox, 1 raw watch, 2 raw lame call */
  grpc_channel *lame;
  load_mail *mails;
  long n;
  uint64_t cpu_ns;
  pthread_t thread;
} poster;

static void *poster_main(void *arg) {
  poster *p = arg;
  while (!atomic_load(&load.go)) {
  }
  uint64_t cpu0 = thread_cpu_ns();
  for (long i = 0; i < p->n; i++) {
    switch (p->mode) {
    case 0:
      p->mails[i].mail.fn = load_run;
      if (mw_mailbox_post(p->c->mb, &p->mails[i].mail) != 0) abort();
      break;
    case 1:
      grpc_channel_watch_connectivity_state(p->lame, GRPC_CHANNEL_TRANSIENT_FAILURE,
                                            gpr_inf_past(GPR_CLOCK_MONOTONIC),
                                            p->c->cq, &p->c->raw_tag);
      break;
    case 2: {
      lame_call *lc = calloc(1, sizeof *lc);
      lame_call_start(p->lame, p->c, lc);
      break;
    }
    }
  }
  p->cpu_ns = thread_cpu_ns() - cpu0;
  return NULL;
}

typedef struct load_result {
  double per_s, ns_per_msg, poster_cpu_ns, wake_fraction;
  long wakes;
} load_result;

static load_result run_load(int mode, long per_poster) {
  consumer c;
  consumer_start(&c);
  grpc_channel *lame = lame_channel();
  poster p[POSTERS];
  memset(&load, 0, sizeof load);
  load.total = per_poster * POSTERS;
  if (mode != 0) c.raw_target = load.total;
  for (int i = 0; i < POSTERS; i++) {
    p[i] = (poster){&c, mode, lame, NULL, per_poster, 0, 0};
    if (mode == 0) p[i].mails = calloc((size_t)per_poster, sizeof *p[i].mails);
    pthread_create(&p[i].thread, NULL, poster_main, &p[i]);
  }
  sleep_us(2000);
  uint64_t t0 = now_ns();
  atomic_store(&load.go, 1);
  for (int i = 0; i < POSTERS; i++) pthread_join(p[i].thread, NULL);
  /* The consumer may still be running what the posters queued. Raw wakes
   * need no wait: the cq hands out every one of them before the shutdown
   * the stop below ends with, and joining the consumer publishes raw_done. */
  while (mode == 0 && atomic_load(&load.end) == 0) sleep_us(100);
  consumer_stop(&c);
  uint64_t end = mode == 0 ? atomic_load(&load.end) : c.raw_done;
  double secs = (double)(end - t0) / 1e9;
  uint64_t cpu = 0;
  for (int i = 0; i < POSTERS; i++) {
    cpu += p[i].cpu_ns;
    free(p[i].mails);
  }
  grpc_channel_destroy(lame);
  load_result r;
  r.per_s = (double)load.total / secs;
  r.ns_per_msg = secs * 1e9 / (double)load.total;
  r.poster_cpu_ns = (double)cpu / (double)load.total;
  r.wakes = mode == 0 ? c.wakes - 1 : c.raws; /* less the stop mail's */
  r.wake_fraction = (double)r.wakes / (double)load.total;
  return r;
}

/* ----------------------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr, "usage: wake_bench [--samples N] [--spacing-us US] "
                  "[--messages N] [--raw N] [--pin]\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"samples", required_argument, NULL, 's'},
      {"spacing-us", required_argument, NULL, 'p'},
      {"messages", required_argument, NULL, 'm'},
      {"raw", required_argument, NULL, 'r'},
      {"pin", no_argument, NULL, 'P'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (ch) {
    case 's': opt_samples = atol(optarg); break;
    case 'p': opt_spacing_us = atol(optarg); break;
    case 'm': opt_messages = atol(optarg); break;
    case 'r': opt_raw = atol(optarg); break;
    case 'P': opt_pin = 1; break;
    default: usage();
    }
  }
  if (opt_samples < 100 || opt_messages < 1 || opt_raw < 1 || opt_spacing_us < 0) usage();

  mw_absl_fast_mutexes();
  grpc_init();

  pin_to(pthread_self(), 0);
  lat_result lm = latency_mailbox();
  printf("latency mailbox:   median %.1f us  p99 %.1f us  p99.9 %.1f us  "
         "(post call: median %.2f us, p99 %.2f us; %ld wakes for %ld samples)\n",
         lm.latency.p50, lm.latency.p99, lm.latency.p999, lm.post_cost.p50,
         lm.post_cost.p99, lm.wakes - 1, opt_samples + WARMUP);
  lat_result ll = latency_lame_call();
  printf("latency lame-call: median %.1f us  p99 %.1f us  p99.9 %.1f us  "
         "(start call: median %.2f us, p99 %.2f us)\n",
         ll.latency.p50, ll.latency.p99, ll.latency.p999, ll.post_cost.p50, ll.post_cost.p99);
  lat_result lc = latency_condvar();
  printf("latency condvar:   median %.1f us  p99 %.1f us  p99.9 %.1f us  "
         "(signal: median %.2f us, p99 %.2f us)\n",
         lc.latency.p50, lc.latency.p99, lc.latency.p999, lc.post_cost.p50, lc.post_cost.p99);
  fflush(stdout);

  /* the load runs unpinned: three threads on however many CPUs there are */
  if (opt_pin) {
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < CPU_SETSIZE; i++) CPU_SET(i, &all);
    pthread_setaffinity_np(pthread_self(), sizeof all, &all);
  }
  opt_pin = 0;
  load_result ld = run_load(0, opt_messages);
  printf("load mailbox (2 posters):   %.0f msg/s  %.0f ns/msg  poster CPU %.0f ns/msg  "
         "wakes %ld (%.4f%% of posts)\n",
         ld.per_s, ld.ns_per_msg, ld.poster_cpu_ns, ld.wakes, 100 * ld.wake_fraction);
  load_result rw = run_load(1, opt_raw);
  printf("raw watch (2 posters):      %.0f wakes/s  %.0f ns/wake  poster CPU %.0f ns/wake\n",
         rw.per_s, rw.ns_per_msg, rw.poster_cpu_ns);
  load_result rc = run_load(2, opt_raw);
  printf("raw lame-call (2 posters):  %.0f wakes/s  %.0f ns/wake  poster CPU %.0f ns/wake\n",
         rc.per_s, rc.ns_per_msg, rc.poster_cpu_ns);

  printf("{\"samples\":%ld,\"spacing_us\":%ld,"
         "\"mailbox\":{\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"post_p50_us\":%.3f},"
         "\"lame_call\":{\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"start_p50_us\":%.3f},"
         "\"condvar\":{\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f},"
         "\"load\":{\"messages\":%ld,\"msg_per_s\":%.0f,\"ns_per_msg\":%.1f,"
         "\"poster_cpu_ns_per_msg\":%.1f,\"wakes\":%ld,\"wake_fraction\":%.6f},"
         "\"raw_watch\":{\"per_s\":%.0f,\"ns\":%.1f,\"poster_cpu_ns\":%.1f},"
         "\"raw_lame_call\":{\"per_s\":%.0f,\"ns\":%.1f,\"poster_cpu_ns\":%.1f}}\n",
         opt_samples, opt_spacing_us, lm.latency.p50, lm.latency.p99, lm.latency.p999,
         lm.post_cost.p50, ll.latency.p50, ll.latency.p99, ll.latency.p999,
         ll.post_cost.p50, lc.latency.p50, lc.latency.p99, lc.latency.p999,
         opt_messages * POSTERS, ld.per_s, ld.ns_per_msg, ld.poster_cpu_ns, ld.wakes,
         ld.wake_fraction, rw.per_s, rw.ns_per_msg, rw.poster_cpu_ns, rc.per_s,
         rc.ns_per_msg, rc.poster_cpu_ns);

  grpc_shutdown();
  return 0;
}
