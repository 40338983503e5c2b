/*
 * sess_sub: the subscribers of the session fan-out benchmark
 * (tests/bench/sessions/bench.py), on gRPC core's completion-queue API so
 * that the client is not what is measured.
 *
 *   sess_sub --target HOST:PORT --streams S --expect M [--channels C]
 *            [--threads T] [--topic NAME] [--timeout SECONDS]
 *
 * Opens S calls of /sbench.Room/Watch (request: sbench.Join{topic}), spread
 * over C connections and T threads (each its own completion queue), and
 * waits for each stream's first message (seq 0: the server has joined it);
 * then prints {"ready": S} on stdout (flushed). From then on every message
 * (sbench.Ev: seq = 1 int64, sent_ns = 2 int64, wall clock of the publish)
 * is checked to be the stream's previous seq + 1 and its latency (now -
 * sent_ns, CLOCK_REALTIME) recorded. Once every stream has M messages, or
 * at the timeout, it prints one JSON object: delivered, seconds (first to
 * last delivery), rate, p50_us, p99_us, max_us, out_of_order, missing.
 * Exit 1 when a call fails.
 *
 * Build: cc -O2 -std=c11 sess_sub.c $(pkg-config --cflags --libs grpc)
 * (CMake builds it as build/bench/sess_sub).
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

static struct {
  const char *target, *topic;
  long streams, expect, channels, threads;
  double timeout;
} cfg = {NULL, "bench", 1000, 1000, 8, 2, 60};

struct sub {
  grpc_call *call;
  grpc_byte_buffer *buf;
  grpc_metadata_array md, trail;
  grpc_status_code status;
  grpc_slice details;
  int64_t last; /* the seq last seen (-1: none yet) */
  long got;
  int failed;
};

struct worker {
  pthread_t th;
  grpc_completion_queue *cq;
  struct sub *subs;
  long n;
  int64_t *lat; /* latencies in ns, expect * n of them */
  long nlat;
  long out_of_order;
  int64_t first_ns, last_ns;
  int error;
};

static grpc_channel **channels;
static grpc_slice method, request;
static _Atomic long ready_count;

static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *msg) {
  fprintf(stderr, "sess_sub: %s\n", msg);
  exit(1);
}

/* tag: sub pointer, low bit 1 for the status op */
static void start_recv(struct worker *w, struct sub *s) {
  (void)w;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &s->buf;
  if (grpc_call_start_batch(s->call, &op, 1, s, NULL) != GRPC_CALL_OK) die("start_batch recv");
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; *p < end && shift < 64; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 0;
  }
  return -1;
}

/* sbench.Ev's seq and sent_ns; other fields skipped. */
static void parse_ev(grpc_byte_buffer *bb, int64_t *seq, int64_t *sent) {
  grpc_byte_buffer_reader r;
  *seq = *sent = 0;
  if (!grpc_byte_buffer_reader_init(&r, bb)) return;
  grpc_slice s = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  const uint8_t *p = GRPC_SLICE_START_PTR(s), *end = GRPC_SLICE_END_PTR(s);
  while (p < end) {
    uint64_t key, v;
    if (read_varint(&p, end, &key)) break;
    switch (key & 7) {
    case 0:
      if (read_varint(&p, end, &v)) goto out;
      if ((key >> 3) == 1) *seq = (int64_t)v;
      else if ((key >> 3) == 2) *sent = (int64_t)v;
      break;
    case 2:
      if (read_varint(&p, end, &v) || v > (uint64_t)(end - p)) goto out;
      p += v;
      break;
    case 1: p += 8; break;
    case 5: p += 4; break;
    default: goto out;
    }
  }
out:
  grpc_slice_unref(s);
}

static void *run(void *arg) {
  struct worker *w = arg;
  long done = 0;
  gpr_timespec limit = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                    gpr_time_from_millis((int64_t)(cfg.timeout * 1000),
                                                         GPR_TIMESPAN));
  while (done < w->n) {
    grpc_event ev = grpc_completion_queue_next(w->cq, limit, NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) break;
    if (ev.type != GRPC_OP_COMPLETE) die("completion queue shut down");
    uintptr_t tag = (uintptr_t)ev.tag;
    struct sub *s = (struct sub *)(tag & ~(uintptr_t)1);
    if (tag & 1) { /* the status: only a failure ends a stream early */
      if (s->got < cfg.expect) {
        char *d = grpc_slice_to_c_string(s->details);
        fprintf(stderr, "sess_sub: stream ended with status %d: %s\n", (int)s->status, d);
        gpr_free(d);
        w->error = 1;
        if (!s->failed) done++;
        s->failed = 1;
      }
      continue;
    }
    if (!ev.success || !s->buf) {
      if (!s->failed) {
        s->failed = 1;
        done++;
      }
      continue;
    }
    int64_t seq, sent;
    parse_ev(s->buf, &seq, &sent);
    grpc_byte_buffer_destroy(s->buf);
    s->buf = NULL;
    int64_t now = wall_ns();
    if (s->last < 0) {
      atomic_fetch_add(&ready_count, 1); /* the joined message */
    } else {
      if (seq != s->last + 1) w->out_of_order++;
      if (w->nlat < w->n * cfg.expect) w->lat[w->nlat++] = now - sent;
      if (!w->first_ns || now < w->first_ns) w->first_ns = now;
      w->last_ns = now;
      if (++s->got == cfg.expect) done++;
    }
    s->last = seq;
    if (s->got < cfg.expect) start_recv(w, s);
  }
  return NULL;
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static grpc_channel *make_channel(long idx) {
  grpc_arg args[2];
  memset(args, 0, sizeof args);
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
  args[0].value.integer = 1;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = (char *)"sess_sub.channel_index";
  args[1].value.integer = (int)idx;
  grpc_channel_args ca = {2, args};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  grpc_channel *ch = grpc_channel_create(cfg.target, creds, &ca);
  grpc_channel_credentials_release(creds);
  return ch;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"target", 1, 0, 't'},  {"streams", 1, 0, 's'}, {"expect", 1, 0, 'e'},
      {"channels", 1, 0, 'c'}, {"threads", 1, 0, 'T'}, {"topic", 1, 0, 'p'},
      {"timeout", 1, 0, 'o'}, {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 't': cfg.target = optarg; break;
    case 's': cfg.streams = atol(optarg); break;
    case 'e': cfg.expect = atol(optarg); break;
    case 'c': cfg.channels = atol(optarg); break;
    case 'T': cfg.threads = atol(optarg); break;
    case 'p': cfg.topic = optarg; break;
    case 'o': cfg.timeout = atof(optarg); break;
    default: die("usage: sess_sub --target HOST:PORT [--streams S] [--expect M] ...");
    }
  }
  if (!cfg.target || cfg.streams < 1 || cfg.expect < 1 || cfg.channels < 1 || cfg.threads < 1)
    die("usage: sess_sub --target HOST:PORT [--streams S] [--expect M] ...");
  grpc_init();
  /* sbench.Join{topic = 1} */
  size_t tl = strlen(cfg.topic);
  uint8_t *req = malloc(tl + 3);
  req[0] = 0x0a;
  req[1] = (uint8_t)tl; /* topics under 128 bytes */
  memcpy(req + 2, cfg.topic, tl);
  request = grpc_slice_from_copied_buffer((char *)req, tl + 2);
  free(req);
  method = grpc_slice_from_static_string("/sbench.Room/Watch");
  channels = calloc((size_t)cfg.channels, sizeof *channels);
  for (long i = 0; i < cfg.channels; i++) channels[i] = make_channel(i);
  struct worker *ws = calloc((size_t)cfg.threads, sizeof *ws);
  struct sub *subs = calloc((size_t)cfg.streams, sizeof *subs);
  for (long t = 0, first = 0; t < cfg.threads; t++) {
    struct worker *w = &ws[t];
    w->cq = grpc_completion_queue_create_for_next(NULL);
    w->n = cfg.streams / cfg.threads + (t < cfg.streams % cfg.threads);
    w->subs = &subs[first];
    w->lat = malloc((size_t)(w->n * cfg.expect) * sizeof *w->lat);
    if (!w->lat) die("out of memory");
    for (long j = 0; j < w->n; j++) {
      struct sub *s = &w->subs[j];
      s->last = -1;
      s->call = grpc_channel_create_call(channels[(first + j) % cfg.channels], NULL,
                                         GRPC_PROPAGATE_DEFAULTS, w->cq, method, NULL,
                                         gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
      grpc_metadata_array_init(&s->md);
      grpc_metadata_array_init(&s->trail);
      grpc_op ops[5];
      memset(ops, 0, sizeof ops);
      grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&request, 1);
      ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
      ops[1].op = GRPC_OP_SEND_MESSAGE;
      ops[1].data.send_message.send_message = bb;
      ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
      ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
      ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->md;
      ops[4].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
      ops[4].data.recv_status_on_client.trailing_metadata = &s->trail;
      ops[4].data.recv_status_on_client.status = &s->status;
      ops[4].data.recv_status_on_client.status_details = &s->details;
      if (grpc_call_start_batch(s->call, ops, 5, (void *)((uintptr_t)s | 1), NULL) !=
          GRPC_CALL_OK)
        die("start_batch");
      grpc_byte_buffer_destroy(bb);
      start_recv(w, s);
    }
    first += w->n;
  }
  for (long t = 0; t < cfg.threads; t++) pthread_create(&ws[t].th, NULL, run, &ws[t]);
  struct timespec tick = {0, 5 * 1000 * 1000};
  double waited = 0;
  while (atomic_load(&ready_count) < cfg.streams && waited < cfg.timeout) {
    nanosleep(&tick, NULL);
    waited += 0.005;
  }
  printf("{\"ready\": %ld}\n", atomic_load(&ready_count));
  fflush(stdout);
  long delivered = 0, ooo = 0, missing = 0;
  int64_t first = 0, last = 0;
  int error = 0;
  for (long t = 0; t < cfg.threads; t++) {
    pthread_join(ws[t].th, NULL);
    delivered += ws[t].nlat;
    ooo += ws[t].out_of_order;
    error |= ws[t].error;
    if (ws[t].first_ns && (!first || ws[t].first_ns < first)) first = ws[t].first_ns;
    if (ws[t].last_ns > last) last = ws[t].last_ns;
  }
  for (long i = 0; i < cfg.streams; i++) missing += cfg.expect - subs[i].got;
  int64_t *all = malloc((size_t)(delivered ? delivered : 1) * sizeof *all);
  long k = 0;
  for (long t = 0; t < cfg.threads; t++) {
    memcpy(all + k, ws[t].lat, (size_t)ws[t].nlat * sizeof *all);
    k += ws[t].nlat;
  }
  qsort(all, (size_t)delivered, sizeof *all, cmp64);
  double secs = (double)(last - first) / 1e9;
  printf("{\"streams\": %ld, \"delivered\": %ld, \"seconds\": %.4f, \"rate\": %.0f, "
         "\"p50_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f, \"out_of_order\": %ld, "
         "\"missing\": %ld}\n",
         cfg.streams, delivered, secs, secs > 0 ? (double)delivered / secs : 0.0,
         delivered ? (double)all[delivered / 2] / 1e3 : 0.0,
         delivered ? (double)all[(long)((double)delivered * 0.99)] / 1e3 : 0.0,
         delivered ? (double)all[delivered - 1] / 1e3 : 0.0, ooo, missing);
  fflush(stdout);
  /* exit without teardown: the calls are cancelled with the process */
  _exit(error || missing ? 1 : 0);
}
