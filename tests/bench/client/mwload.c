/*
 * mwload: streaming load generator for the bench.Echo service
 * (tests/bench/proto/bench.proto), written directly on gRPC core's
 * completion-queue API so that the client is not the bottleneck.
 *
 *   mwload MODE --target HOST:PORT [options]     (mwload --help lists them)
 *
 * Modes:
 *   unary          S concurrent Unary calls, re-issued as they finish (each
 *                  call one batch, as gRPC's own unary clients send it);
 *                  counts calls, p50/p99 latency.
 *   server-stream  S concurrent ServerStream calls asking for N messages each
 *                  (request n = N), re-issued as they finish; counts
 *                  messages received.
 *   client-stream  S concurrent ClientStream calls sending N messages each
 *                  (one SEND_MESSAGE in flight per call), then half-close and
 *                  read the response; counts messages sent.
 *   bidi           S concurrent Bidi ping-pong streams (send one message, wait
 *                  for its echo, repeat); counts round trips, p50/p99 RTT.
 *   bidi-duplex    S concurrent Bidi streams, full duplex: each sends N
 *                  messages back to back (one SEND_MESSAGE in flight,
 *                  --write-batch applies) while it reads the echoes, then
 *                  half-closes; counts echoes received.
 *   idle-streams   opens COUNT Bidi streams (one message + its echo each, so
 *                  the server has started every handler), prints
 *                  {"opened": n, ...} (flushed) once all are open, holds them
 *                  H seconds, then cancels them and exits.
 *
 * Each measuring mode prints one JSON object: rate, count, the measured
 * seconds (after --warmup) and the client's CPU seconds (getrusage, whole
 * process) over the same window. Any call ending with a non-OK status (other
 * than our own cancellation at the end) exits 1 with the status and details.
 *
 * Streams run on --threads T threads (default 1), each with its own
 * completion queue, over --channels C connections (GRPC_ARG_USE_LOCAL_
 * SUBCHANNEL_POOL, so one TCP connection per channel): stream g uses thread
 * g % T and connection g % C.
 *
 * Messages are encoded by hand (bench.Msg: payload = 1 bytes, text = 2
 * string, n = 3 int64) once; every send reuses the stream's byte buffer over
 * that static encoding. Responses are only counted, except the single
 * ClientStream response per call whose n is checked against N.
 *
 * Build: tests/bench/client/build.sh OUT_DIR
 *        (cc -O2 -std=c11 -Wall -Wextra -Werror ... $(pkg-config grpc)).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/slice_buffer.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "base/mw_absl.h"

/* ------------------------------------------------------------------------ */
/* configuration                                                             */

enum mode { MODE_SERVER_STREAM, MODE_CLIENT_STREAM, MODE_BIDI, MODE_IDLE, MODE_UNARY,
            MODE_DUPLEX };
#define N_MODES 6

static const char *const mode_names[] = {"server-stream", "client-stream", "bidi",
                                         "idle-streams",  "unary",         "bidi-duplex"};
static const char *const method_names[] = {
    "/bench.Echo/ServerStream", "/bench.Echo/ClientStream", "/bench.Echo/Bidi",
    "/bench.Echo/Bidi",         "/bench.Echo/Unary",        "/bench.Echo/Bidi"};

#define STREAMS_PER_CHANNEL_HINT 100

static struct config {
  enum mode mode;
  const char *target;
  long payload;       /* bytes in Msg.payload */
  long text;          /* bytes in Msg.text */
  long streams;       /* concurrent calls (streaming modes) */
  long long per_call; /* messages/round trips per call; -1: mode default */
  double duration;    /* measured seconds */
  double warmup;      /* unmeasured seconds before */
  long channels;      /* connections; idle-streams: at least ceil(count/100) */
  long threads;       /* worker threads, each with its own completion queue */
  long count;         /* idle-streams: streams to open */
  double hold;        /* idle-streams: seconds to hold them open */
  double open_timeout; /* idle-streams: max seconds to open them all */
  long write_batch;   /* client-stream: flush every K messages (buffer hint) */
} cfg = {
    .mode = MODE_SERVER_STREAM,
    .target = NULL,
    .payload = 64,
    .text = 0,
    .streams = 16,
    .per_call = -1,
    .duration = 10,
    .warmup = 1,
    .channels = 0, /* 0: not given; becomes max(1, threads) */
    .threads = 1,
    .count = 10000,
    .hold = 10,
    .open_timeout = 60,
    .write_batch = 1,
};

/* ------------------------------------------------------------------------ */
/* small helpers                                                             */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fputs("mwload: error: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  /* gRPC's threads are still running: skip atexit/static destructors. */
  _exit(1);
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* gpr deadlines for CLOCK_MONOTONIC instants (gpr's monotonic clock has its
   own epoch, so translate through an offset taken once at startup). */
static gpr_timespec gpr_base;
static uint64_t gpr_base_ns;

static gpr_timespec deadline_at(uint64_t t_ns) {
  int64_t d = (int64_t)(t_ns - gpr_base_ns);
  return gpr_time_add(gpr_base, gpr_time_from_nanos(d, GPR_TIMESPAN));
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void sleep_until(uint64_t t_ns) {
  struct timespec ts = {.tv_sec = (time_t)(t_ns / 1000000000u),
                        .tv_nsec = (long)(t_ns % 1000000000u)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static const char *status_name(grpc_status_code c) {
  static const char *const names[] = {
      "OK",           "CANCELLED",          "UNKNOWN",
      "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS",   "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED",        "OUT_OF_RANGE",
      "UNIMPLEMENTED",    "INTERNAL",          "UNAVAILABLE",
      "DATA_LOSS",        "UNAUTHENTICATED"};
  if ((int)c >= 0 && (size_t)c < sizeof names / sizeof names[0]) return names[c];
  return "?";
}

/* ------------------------------------------------------------------------ */
/* bench.Msg encoding                                                        */

static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

/* Msg{payload = `payload` bytes, text = `text` chars, n}; proto3 omits
   default values. Returns a malloc'd buffer (lives for the whole run). */
static uint8_t *encode_msg(size_t payload, size_t text, int64_t n, size_t *len) {
  uint8_t *buf = malloc(payload + text + 32);
  size_t o = 0;
  if (!buf) die("out of memory");
  if (payload > 0) {
    buf[o++] = (1 << 3) | 2;
    o += put_varint(buf + o, payload);
    for (size_t i = 0; i < payload; i++) buf[o++] = (uint8_t)(i * 31 + 7);
  }
  if (text > 0) {
    buf[o++] = (2 << 3) | 2;
    o += put_varint(buf + o, text);
    for (size_t i = 0; i < text; i++) buf[o++] = (uint8_t)('a' + i % 26);
  }
  if (n != 0) {
    buf[o++] = (3 << 3) | 0;
    o += put_varint(buf + o, (uint64_t)n);
  }
  *len = o;
  return buf;
}

/* Field 3 (n) of an encoded Msg; 0 when absent, -1 when malformed. */
static int64_t decode_msg_n(grpc_byte_buffer *bb) {
  grpc_byte_buffer_reader r;
  grpc_slice s;
  int64_t n = 0;
  if (!grpc_byte_buffer_reader_init(&r, bb)) return -1;
  s = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  const uint8_t *p = GRPC_SLICE_START_PTR(s), *end = p + GRPC_SLICE_LENGTH(s);
  while (p < end) {
    uint64_t key = 0, v = 0;
    int shift = 0;
    while (p < end && shift < 64) {
      key |= (uint64_t)(*p & 0x7f) << shift;
      shift += 7;
      if (!(*p++ & 0x80)) break;
    }
    switch (key & 7) {
      case 0:
        shift = 0;
        while (p < end && shift < 64) {
          v |= (uint64_t)(*p & 0x7f) << shift;
          shift += 7;
          if (!(*p++ & 0x80)) break;
        }
        if ((key >> 3) == 3) n = (int64_t)v;
        break;
      case 1:
        if (end - p < 8) { n = -1; p = end; break; }
        p += 8;
        break;
      case 2:
        shift = 0;
        while (p < end && shift < 64) {
          v |= (uint64_t)(*p & 0x7f) << shift;
          shift += 7;
          if (!(*p++ & 0x80)) break;
        }
        if (v > (uint64_t)(end - p)) { n = -1; p = end; break; }
        p += v;
        break;
      case 5:
        if (end - p < 4) { n = -1; p = end; break; }
        p += 4;
        break;
      default: n = -1; p = end; break;
    }
  }
  grpc_slice_unref(s);
  return n;
}

/* ------------------------------------------------------------------------ */
/* latency histogram: log-linear, 64 sub-buckets per power of two (<1.6%)   */

#define HIST_SUB_BITS 6
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_MAX_SHIFT 34 /* values up to 2^41 ns */
#define HIST_N (HIST_SUB + (HIST_MAX_SHIFT + 1) * HIST_SUB)

static int hist_index(uint64_t v) {
  if (v >= (1ull << (HIST_SUB_BITS + 1 + HIST_MAX_SHIFT)))
    v = (1ull << (HIST_SUB_BITS + 1 + HIST_MAX_SHIFT)) - 1;
  if (v < HIST_SUB) return (int)v;
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - HIST_SUB_BITS;
  return HIST_SUB + shift * HIST_SUB + (int)((v >> shift) - HIST_SUB);
}

static double hist_value(int i) { /* middle of bucket i */
  if (i < HIST_SUB) return i;
  int shift = (i - HIST_SUB) / HIST_SUB;
  uint64_t m = (uint64_t)((i - HIST_SUB) % HIST_SUB + HIST_SUB);
  return (double)(m << shift) + (double)(1ull << shift) / 2.0;
}

static double hist_percentile(const uint64_t *h, uint64_t total, double p) {
  if (total == 0) return 0;
  uint64_t rank = (uint64_t)(p * (double)total); /* nearest rank: ceil */
  if ((double)rank < p * (double)total) rank++;
  if (rank < 1) rank = 1;
  uint64_t acc = 0;
  for (int i = 0; i < HIST_N; i++) {
    acc += h[i];
    if (acc >= rank) return hist_value(i);
  }
  return hist_value(HIST_N - 1);
}

/* ------------------------------------------------------------------------ */
/* calls                                                                     */

enum tag_kind { TAG_IO, TAG_STATUS, TAG_SEND };

struct stream;
struct tag {
  struct stream *s;
  enum tag_kind kind;
};

struct worker;

struct stream {
  struct worker *w;
  long id;
  grpc_channel *ch;
  grpc_call *call;
  int pending;     /* batches in flight */
  int half_closed; /* SEND_CLOSE_FROM_CLIENT issued */
  int io_had_msg;  /* the IO batch in flight carries a SEND_MESSAGE (cs) */
  int early_eof;   /* bidi: server ended the stream before we half-closed */
  int call_started_md; /* duplex: SEND_INITIAL_METADATA issued */
  int64_t done;    /* per call: received (ss, duplex), sent (cs), round trips (bidi) */
  int64_t sent;    /* duplex: messages sent */
  int64_t resp_n;  /* cs: n in the response */
  uint64_t t_send;
  struct tag t_io, t_status, t_dsend; /* t_dsend: duplex sends */
  grpc_byte_buffer *req_bb;     /* this stream's request buffer, reused */
  grpc_byte_buffer *send_buf;   /* == req_bb while a SEND_MESSAGE is in flight */
  grpc_byte_buffer *recv_buf;   /* IO batch */
  grpc_byte_buffer *resp_buf;   /* cs: response, received with the status */
  grpc_metadata_array md_init, md_trail;
  grpc_status_code status;
  grpc_slice details;
  const char *error_string;
};

struct worker {
  long id;
  grpc_completion_queue *cq;
  struct stream *streams;
  long nstreams;
  long active; /* calls alive */
  int stopping;
  uint64_t t_warm, t_end; /* measured window [t_warm, t_end) */
  uint64_t counted;       /* messages / round trips inside the window */
  uint64_t calls;         /* calls completed */
  long opened;            /* idle-streams */
  uint64_t *hist;         /* bidi and unary latencies (ns) */
  pthread_t thread;
};

static grpc_channel **channels;
static grpc_slice method_slice;
static grpc_slice req_slice; /* static slice over the encoded request */
static int64_t per_call;

static void call_failed(struct stream *s, const char *what) __attribute__((noreturn));
static void call_failed(struct stream *s, const char *what) {
  die("%s: %s call (stream %ld) %s: status %d (%s), details \"%.*s\"%s%s",
      cfg.target, method_names[cfg.mode], s->id, what, (int)s->status,
      status_name(s->status), (int)GRPC_SLICE_LENGTH(s->details),
      (const char *)GRPC_SLICE_START_PTR(s->details),
      s->error_string ? ", error " : "",
      s->error_string ? s->error_string : "");
}

static void start_batch(struct stream *s, const grpc_op *ops, size_t n,
                        struct tag *tag) {
  grpc_call_error e = grpc_call_start_batch(s->call, ops, n, tag, NULL);
  if (e != GRPC_CALL_OK)
    die("grpc_call_start_batch (%s, stream %ld): %s", method_names[cfg.mode],
        s->id, grpc_call_error_to_string(e));
  s->pending++;
}

/* The request for the next SEND_MESSAGE. Each stream reuses one byte
   buffer: a send takes the slices out of it, so refill it with the static
   slice over the encoded request (no copy, no refcount, no allocation). */
static grpc_byte_buffer *new_request(struct stream *s) {
  grpc_slice_buffer *sb = &s->req_bb->data.raw.slice_buffer;
  grpc_slice_buffer_reset_and_unref(sb);
  grpc_slice_buffer_add(sb, req_slice);
  return s->req_bb;
}

/* client-stream: flags for message number m (1-based) of a call. With
   --write-batch K > 1, all but every K-th and the last message carry
   GRPC_WRITE_BUFFER_HINT, so core may complete them without a write and put
   K messages into one write (default K = 1: every message is written). */
static uint32_t cs_write_flags(int64_t m) {
  if (cfg.write_batch <= 1 || m >= per_call || m % cfg.write_batch == 0)
    return 0;
  return GRPC_WRITE_BUFFER_HINT;
}

static inline int in_window(struct worker *w, uint64_t now) {
  return now >= w->t_warm && now < w->t_end;
}

/* duplex: the next send on t_send: message number sent + 1, or the
   half-close once all N are out. */
static void duplex_send(struct stream *s) {
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!s->call_started_md) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    s->call_started_md = 1;
  }
  if (s->sent < per_call) {
    s->send_buf = new_request(s);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].flags = cs_write_flags(s->sent + 1);
    ops[n++].data.send_message.send_message = s->send_buf;
    s->sent++;
  } else {
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    s->half_closed = 1;
  }
  start_batch(s, ops, n, &s->t_dsend);
}

static void start_call(struct stream *s, uint64_t now) {
  struct worker *w = s->w;
  grpc_op ops[6];
  size_t n = 0;

  s->call = grpc_channel_create_call(s->ch, NULL, GRPC_PROPAGATE_DEFAULTS,
                                     w->cq, method_slice, NULL,
                                     gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  if (!s->call) die("grpc_channel_create_call failed");
  s->pending = 0;
  s->half_closed = 0;
  s->io_had_msg = 0;
  s->early_eof = 0;
  s->done = 0;
  s->sent = 0;
  s->call_started_md = 0;
  s->resp_n = -1;
  s->send_buf = s->recv_buf = s->resp_buf = NULL;
  grpc_metadata_array_init(&s->md_init);
  grpc_metadata_array_init(&s->md_trail);
  s->status = GRPC_STATUS_UNKNOWN;
  s->details = grpc_empty_slice();
  s->error_string = NULL;
  w->active++;

  memset(ops, 0, sizeof ops);
  if (cfg.mode == MODE_UNARY) {
    /* The whole call in one batch: one completion per call. */
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    s->send_buf = new_request(s);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = s->send_buf;
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    s->half_closed = 1;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->resp_buf;
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &s->md_trail;
    ops[n].data.recv_status_on_client.status = &s->status;
    ops[n].data.recv_status_on_client.status_details = &s->details;
    ops[n++].data.recv_status_on_client.error_string = &s->error_string;
    s->t_send = now;
    start_batch(s, ops, n, &s->t_status);
    return;
  }
  /* RECV_STATUS_ON_CLIENT (client-stream: with the single response) */
  if (cfg.mode == MODE_CLIENT_STREAM) {
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->resp_buf;
  }
  ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[n].data.recv_status_on_client.trailing_metadata = &s->md_trail;
  ops[n].data.recv_status_on_client.status = &s->status;
  ops[n].data.recv_status_on_client.status_details = &s->details;
  ops[n++].data.recv_status_on_client.error_string = &s->error_string;
  start_batch(s, ops, n, &s->t_status);

  if (cfg.mode == MODE_DUPLEX) {
    /* Sends on t_send, reads on t_io, each one op in flight. */
    duplex_send(s);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &s->recv_buf;
    start_batch(s, ops, 2, &s->t_io);
    return;
  }
  memset(ops, 0, sizeof ops);
  n = 0;
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  switch (cfg.mode) {
    case MODE_SERVER_STREAM:
      s->send_buf = new_request(s);
      ops[n].op = GRPC_OP_SEND_MESSAGE;
      ops[n++].data.send_message.send_message = s->send_buf;
      ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
      s->half_closed = 1;
      ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
      ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
      ops[n].op = GRPC_OP_RECV_MESSAGE;
      ops[n++].data.recv_message.recv_message = &s->recv_buf;
      break;
    case MODE_CLIENT_STREAM:
      if (per_call > 0) {
        s->send_buf = new_request(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].flags = cs_write_flags(1);
        ops[n++].data.send_message.send_message = s->send_buf;
        s->io_had_msg = 1;
      }
      if (per_call <= 1) {
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        s->half_closed = 1;
      }
      break;
    case MODE_BIDI:
    case MODE_IDLE:
      s->send_buf = new_request(s);
      ops[n].op = GRPC_OP_SEND_MESSAGE;
      ops[n++].data.send_message.send_message = s->send_buf;
      ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
      ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
      ops[n].op = GRPC_OP_RECV_MESSAGE;
      ops[n++].data.recv_message.recv_message = &s->recv_buf;
      s->t_send = now;
      break;
    case MODE_UNARY:
    case MODE_DUPLEX: break; /* started whole above */
  }
  start_batch(s, ops, n, &s->t_io);
}

static void finish_call(struct stream *s, uint64_t now) {
  struct worker *w = s->w;
  int ok = s->status == GRPC_STATUS_OK;

  if (!ok && !(w->stopping && s->status == GRPC_STATUS_CANCELLED))
    call_failed(s, "failed");
  if (ok && !w->stopping) {
    switch (cfg.mode) {
      case MODE_SERVER_STREAM:
        if (s->done != per_call)
          die("%s: ServerStream call (stream %ld) ended OK after %" PRId64
              " of %" PRId64 " messages",
              cfg.target, s->id, s->done, per_call);
        break;
      case MODE_CLIENT_STREAM:
        if (s->resp_n != per_call)
          die("%s: ClientStream response says n = %" PRId64
              " after %" PRId64 " messages were sent (stream %ld)",
              cfg.target, s->resp_n, per_call, s->id);
        break;
      case MODE_BIDI:
        if (s->early_eof)
          die("%s: Bidi stream %ld ended OK by the server after %" PRId64
              " round trips, before the client half-closed",
              cfg.target, s->id, s->done);
        break;
      case MODE_DUPLEX:
        if (s->done != per_call)
          die("%s: Bidi stream %ld (duplex) ended OK with %" PRId64 " of %" PRId64
              " echoes", cfg.target, s->id, s->done, per_call);
        break;
      case MODE_IDLE:
        die("%s: server ended idle Bidi stream %ld (status OK) while it was "
            "being held open", cfg.target, s->id);
      case MODE_UNARY:
        if (!s->resp_buf)
          die("%s: Unary call (stream %ld) ended OK without a response", cfg.target, s->id);
        if (in_window(w, now)) {
          w->counted++;
          w->hist[hist_index(now - s->t_send)]++;
        }
        break;
    }
  }
  grpc_metadata_array_destroy(&s->md_init);
  grpc_metadata_array_destroy(&s->md_trail);
  grpc_slice_unref(s->details);
  if (s->error_string) gpr_free((void *)s->error_string);
  s->error_string = NULL;
  if (s->resp_buf) grpc_byte_buffer_destroy(s->resp_buf);
  s->resp_buf = NULL;
  grpc_call_unref(s->call);
  s->call = NULL;
  w->active--;
  w->calls++;
  if (!w->stopping && cfg.mode != MODE_IDLE) start_call(s, now);
}

/* duplex: a send (or the half-close) completed. */
static void on_duplex_send(struct stream *s, int success, uint64_t now) {
  s->pending--;
  s->send_buf = NULL;
  if (success && !s->half_closed && !s->w->stopping) duplex_send(s);
  if (s->pending == 0) finish_call(s, now);
}

/* duplex: an echo arrived (or the stream ended). */
static void on_duplex_recv(struct stream *s, uint64_t now) {
  struct worker *w = s->w;
  s->pending--;
  if (s->recv_buf) {
    grpc_byte_buffer_destroy(s->recv_buf);
    s->recv_buf = NULL;
    s->done++;
    if (in_window(w, now)) w->counted++;
    if (!w->stopping) {
      grpc_op op;
      memset(&op, 0, sizeof op);
      op.op = GRPC_OP_RECV_MESSAGE;
      op.data.recv_message.recv_message = &s->recv_buf;
      start_batch(s, &op, 1, &s->t_io);
    }
  }
  if (s->pending == 0) finish_call(s, now);
}

static void on_io(struct stream *s, int success, uint64_t now) {
  struct worker *w = s->w;
  grpc_op ops[2];
  size_t n = 0;

  if (cfg.mode == MODE_DUPLEX) {
    on_duplex_recv(s, now);
    return;
  }
  s->pending--;
  s->send_buf = NULL; /* req_bb is free again */
  memset(ops, 0, sizeof ops);
  switch (cfg.mode) {
    case MODE_SERVER_STREAM:
      if (s->recv_buf) {
        grpc_byte_buffer_destroy(s->recv_buf);
        s->recv_buf = NULL;
        s->done++;
        if (in_window(w, now)) w->counted++;
        if (!w->stopping) {
          ops[0].op = GRPC_OP_RECV_MESSAGE;
          ops[0].data.recv_message.recv_message = &s->recv_buf;
          start_batch(s, ops, 1, &s->t_io);
        }
      }
      break;

    case MODE_CLIENT_STREAM:
      if (!success) break; /* the call failed: the status says why */
      if (s->io_had_msg) {
        s->done++;
        if (in_window(w, now)) w->counted++;
      }
      if (s->half_closed || w->stopping) break;
      s->send_buf = new_request(s);
      ops[n].op = GRPC_OP_SEND_MESSAGE;
      ops[n].flags = cs_write_flags(s->done + 1);
      ops[n++].data.send_message.send_message = s->send_buf;
      s->io_had_msg = 1;
      if (s->done + 1 >= per_call) {
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        s->half_closed = 1;
      }
      start_batch(s, ops, n, &s->t_io);
      break;

    case MODE_BIDI:
      if (!s->recv_buf) {
        if (!s->half_closed && !w->stopping) s->early_eof = 1;
        break;
      }
      grpc_byte_buffer_destroy(s->recv_buf);
      s->recv_buf = NULL;
      if (!s->half_closed) {
        s->done++;
        if (in_window(w, now)) {
          w->counted++;
          w->hist[hist_index(now - s->t_send)]++;
        }
      }
      if (w->stopping) break;
      if (!s->half_closed && per_call > 0 && s->done >= per_call) {
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        s->half_closed = 1;
      } else if (!s->half_closed) {
        s->send_buf = new_request(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = s->send_buf;
        s->t_send = now;
      }
      ops[n].op = GRPC_OP_RECV_MESSAGE;
      ops[n++].data.recv_message.recv_message = &s->recv_buf;
      start_batch(s, ops, n, &s->t_io);
      break;

    case MODE_IDLE:
      if (s->recv_buf) {
        grpc_byte_buffer_destroy(s->recv_buf);
        s->recv_buf = NULL;
        s->done = 1;
        w->opened++;
      }
      /* else: the stream ended; its status arrives on t_status */
      break;
    case MODE_UNARY:
    case MODE_DUPLEX: break; /* its one batch completes on t_status */
  }
  if (s->pending == 0) finish_call(s, now);
}

static void on_status(struct stream *s, uint64_t now) {
  s->pending--;
  if (cfg.mode == MODE_CLIENT_STREAM && s->resp_buf)
    s->resp_n = decode_msg_n(s->resp_buf);
  if (s->pending == 0) finish_call(s, now);
}

static void dispatch(grpc_event ev, uint64_t now) {
  struct tag *t = ev.tag;
  if (t->kind == TAG_IO)
    on_io(t->s, ev.success, now);
  else if (t->kind == TAG_SEND)
    on_duplex_send(t->s, ev.success, now);
  else
    on_status(t->s, now);
}

static void cancel_all(struct worker *w) {
  w->stopping = 1;
  for (long i = 0; i < w->nstreams; i++)
    if (w->streams[i].call) grpc_call_cancel(w->streams[i].call, NULL);
}

/* After cancel_all: wait for every call to finish (bounded). */
static void drain_calls(struct worker *w) {
  uint64_t limit = mono_ns() + 30ull * 1000000000u;
  while (w->active > 0) {
    grpc_event ev = grpc_completion_queue_next(w->cq, deadline_at(limit), NULL);
    if (ev.type == GRPC_OP_COMPLETE)
      dispatch(ev, mono_ns());
    else if (ev.type == GRPC_QUEUE_TIMEOUT)
      die("%ld calls did not finish within 30 s of being cancelled", w->active);
    else
      die("completion queue shut down unexpectedly");
  }
}

static void shutdown_cq(grpc_completion_queue *cq) {
  grpc_completion_queue_shutdown(cq);
  for (;;) {
    grpc_event ev =
        grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
  }
  grpc_completion_queue_destroy(cq);
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  uint64_t now = mono_ns();
  gpr_timespec dl_warm = deadline_at(w->t_warm), dl_end = deadline_at(w->t_end);

  for (long i = 0; i < w->nstreams; i++) start_call(&w->streams[i], now);
  while (now < w->t_end) {
    grpc_event ev = grpc_completion_queue_next(
        w->cq, now < w->t_warm ? dl_warm : dl_end, NULL);
    now = mono_ns();
    if (ev.type == GRPC_OP_COMPLETE)
      dispatch(ev, now);
    else if (ev.type == GRPC_QUEUE_SHUTDOWN)
      die("completion queue shut down unexpectedly");
  }
  cancel_all(w);
  drain_calls(w);
  shutdown_cq(w->cq);
  w->cq = NULL;
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* idle-streams                                                              */

static void run_idle(struct worker *w) {
  uint64_t t0 = mono_ns();
  uint64_t open_limit = t0 + (uint64_t)(cfg.open_timeout * 1e9);
  w->t_warm = w->t_end = 0; /* nothing is "measured" */

  for (long i = 0; i < w->nstreams; i++) start_call(&w->streams[i], t0);
  while (w->opened < w->nstreams) {
    grpc_event ev =
        grpc_completion_queue_next(w->cq, deadline_at(open_limit), NULL);
    if (ev.type == GRPC_OP_COMPLETE)
      dispatch(ev, mono_ns());
    else if (ev.type == GRPC_QUEUE_TIMEOUT)
      die("only %ld of %ld idle streams opened within %.1f s (server "
          "concurrent-stream limit? try more --channels)",
          w->opened, w->nstreams, cfg.open_timeout);
    else
      die("completion queue shut down unexpectedly");
  }
  uint64_t t_open = mono_ns();
  printf("{\"mode\":\"idle-streams\",\"opened\":%ld,\"channels\":%ld,"
         "\"open_s\":%.3f,\"hold_s\":%.1f}\n",
         w->opened, cfg.channels, (double)(t_open - t0) / 1e9, cfg.hold);
  fflush(stdout);

  uint64_t hold_end = t_open + (uint64_t)(cfg.hold * 1e9);
  gpr_timespec dl = deadline_at(hold_end);
  while (mono_ns() < hold_end) {
    grpc_event ev = grpc_completion_queue_next(w->cq, dl, NULL);
    if (ev.type == GRPC_OP_COMPLETE) dispatch(ev, mono_ns());
    else if (ev.type == GRPC_QUEUE_SHUTDOWN)
      die("completion queue shut down unexpectedly");
  }
  cancel_all(w);
  drain_calls(w);
  shutdown_cq(w->cq);
  w->cq = NULL;
}

/* ------------------------------------------------------------------------ */
/* setup                                                                     */

static void raise_nofile(long need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= (rlim_t)need) return;
  rlim_t want = (rlim_t)need;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
    struct rlimit hard = {want, want};
    if (setrlimit(RLIMIT_NOFILE, &hard) == 0) return;
    fprintf(stderr,
            "mwload: warning: need %ld file descriptors, hard limit is %llu\n",
            need, (unsigned long long)rl.rlim_max);
    want = rl.rlim_max;
  }
  rl.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    fprintf(stderr, "mwload: warning: setrlimit(RLIMIT_NOFILE, %llu): %s\n",
            (unsigned long long)want, strerror(errno));
}

static grpc_channel *make_channel(long idx) {
  grpc_arg args[4];
  memset(args, 0, sizeof args);
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL; /* own connection */
  args[0].value.integer = 1;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[1].value.integer = -1;
  args[2].type = GRPC_ARG_INTEGER;
  args[2].key = (char *)GRPC_ARG_ENABLE_RETRIES; /* no retry buffering */
  args[2].value.integer = 0;
  args[3].type = GRPC_ARG_INTEGER;
  args[3].key = (char *)"mwload.channel_index"; /* distinct subchannel keys */
  args[3].value.integer = (int)idx;
  grpc_channel_args ca = {sizeof args / sizeof args[0], args};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  grpc_channel *ch = grpc_channel_create(cfg.target, creds, &ca);
  grpc_channel_credentials_release(creds);
  if (!ch) die("grpc_channel_create(%s) failed", cfg.target);
  return ch;
}

static void usage(FILE *f) {
  fputs(
      "usage: mwload MODE --target HOST:PORT [options]\n"
      "modes:\n"
      "  unary           S concurrent Unary calls, each re-issued as it ends\n"
      "  server-stream   S ServerStream calls asking for N messages each\n"
      "  client-stream   S ClientStream calls sending N messages each\n"
      "  bidi            S Bidi ping-pong streams (N round trips per stream,\n"
      "                  0 = one stream for the whole run)\n"
      "  bidi-duplex     S Bidi streams sending N messages each back to back\n"
      "                  while reading the echoes (full duplex)\n"
      "  idle-streams    open --count Bidi streams, hold them --hold seconds\n"
      "options:\n"
      "  --target HOST:PORT   server address (required)\n"
      "  --payload BYTES      Msg.payload size (default 64)\n"
      "  --text BYTES         Msg.text size (default 0)\n"
      "  --streams S          concurrent calls (default 16)\n"
      "  --per-call N         messages (round trips) per call (default 1000;\n"
      "                       bidi: 0)\n"
      "  --duration SECONDS   measured time (default 10)\n"
      "  --warmup SECONDS     unmeasured time first (default 1)\n"
      "  --channels C         connections, streams spread across them\n"
      "                       (default: --threads; idle-streams: at least\n"
      "                       count/100)\n"
      "  --threads T          threads, one completion queue each (default 1);\n"
      "                       stream g runs on thread g%T and connection g%C\n"
      "  --count N            idle-streams: streams to open (default 10000)\n"
      "  --hold SECONDS       idle-streams: hold time (default 10)\n"
      "  --open-timeout SECONDS  idle-streams: limit for opening (default 60)\n"
      "  --write-batch K      client-stream, bidi-duplex: let gRPC buffer\n"
      "                       messages and write\n"
      "                       every K-th (GRPC_WRITE_BUFFER_HINT); default 1:\n"
      "                       each message is written on its own\n"
      "Prints one JSON object on stdout; exits 1 if any call fails.\n",
      f);
}

static long parse_long(const char *opt, const char *s, long lo, long hi) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) {
    fprintf(stderr, "mwload: bad value for --%s: '%s' (want %ld..%ld)\n", opt,
            s, lo, hi);
    exit(2);
  }
  return (long)v;
}

static double parse_secs(const char *opt, const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= 0) || v > 1e6) {
    fprintf(stderr, "mwload: bad value for --%s: '%s'\n", opt, s);
    exit(2);
  }
  return v;
}

static void parse_args(int argc, char **argv) {
  static const struct option opts[] = {
      {"target", required_argument, 0, 't'},
      {"payload", required_argument, 0, 'p'},
      {"text", required_argument, 0, 'x'},
      {"streams", required_argument, 0, 's'},
      {"per-call", required_argument, 0, 'n'},
      {"duration", required_argument, 0, 'd'},
      {"warmup", required_argument, 0, 'w'},
      {"channels", required_argument, 0, 'c'},
      {"threads", required_argument, 0, 'T'},
      {"count", required_argument, 0, 'C'},
      {"hold", required_argument, 0, 'H'},
      {"open-timeout", required_argument, 0, 'O'},
      {"write-batch", required_argument, 0, 'B'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  if (argc < 2) {
    usage(stderr);
    exit(2);
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(stdout);
    exit(0);
  }
  int found = 0;
  for (int m = 0; m < N_MODES; m++)
    if (!strcmp(argv[1], mode_names[m])) {
      cfg.mode = (enum mode)m;
      found = 1;
    }
  if (!found) {
    fprintf(stderr, "mwload: unknown mode '%s'\n", argv[1]);
    usage(stderr);
    exit(2);
  }
  optind = 2;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 't': cfg.target = optarg; break;
      case 'p': cfg.payload = parse_long("payload", optarg, 0, 64L << 20); break;
      case 'x': cfg.text = parse_long("text", optarg, 0, 64L << 20); break;
      case 's': cfg.streams = parse_long("streams", optarg, 1, 1000000); break;
      case 'n':
        cfg.per_call = parse_long("per-call", optarg, 0, 1000000000000L);
        break;
      case 'd': cfg.duration = parse_secs("duration", optarg); break;
      case 'w': cfg.warmup = parse_secs("warmup", optarg); break;
      case 'c': cfg.channels = parse_long("channels", optarg, 1, 100000); break;
      case 'T': cfg.threads = parse_long("threads", optarg, 1, 256); break;
      case 'C': cfg.count = parse_long("count", optarg, 1, 10000000); break;
      case 'H': cfg.hold = parse_secs("hold", optarg); break;
      case 'O': cfg.open_timeout = parse_secs("open-timeout", optarg); break;
      case 'B': cfg.write_batch = parse_long("write-batch", optarg, 1, 1000000); break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); exit(2);
    }
  }
  if (optind < argc) {
    fprintf(stderr, "mwload: unexpected argument '%s'\n", argv[optind]);
    exit(2);
  }
  if (!cfg.target) {
    fprintf(stderr, "mwload: --target HOST:PORT is required\n");
    exit(2);
  }
  if (cfg.per_call < 0) cfg.per_call = cfg.mode == MODE_BIDI ? 0 : cfg.mode == MODE_UNARY ? 1 : 1000;
  if (cfg.mode == MODE_SERVER_STREAM && cfg.per_call < 1) {
    fprintf(stderr, "mwload: server-stream needs --per-call >= 1\n");
    exit(2);
  }
  if (cfg.mode != MODE_IDLE && cfg.duration <= 0) {
    fprintf(stderr, "mwload: --duration must be > 0\n");
    exit(2);
  }
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  per_call = cfg.per_call;

  long nstreams = cfg.mode == MODE_IDLE ? cfg.count : cfg.streams;
  if (cfg.mode == MODE_IDLE) {
    long need = (cfg.count + STREAMS_PER_CHANNEL_HINT - 1) / STREAMS_PER_CHANNEL_HINT;
    if (cfg.channels < need) cfg.channels = need;
    cfg.threads = 1;
  } else {
    if (cfg.threads > nstreams) cfg.threads = nstreams;
    if (cfg.channels == 0) cfg.channels = cfg.threads;
    if (cfg.channels % cfg.threads != 0)
      fprintf(stderr,
              "mwload: warning: %ld connection(s) for %ld threads: threads "
              "share connections and contend (use a multiple of --threads)\n",
              cfg.channels, cfg.threads);
    if ((cfg.streams + cfg.channels - 1) / cfg.channels > STREAMS_PER_CHANNEL_HINT)
      fprintf(stderr,
              "mwload: warning: %ld streams per connection; servers that "
              "limit concurrent streams to %d queue the rest (use --channels)\n",
              (cfg.streams + cfg.channels - 1) / cfg.channels,
              STREAMS_PER_CHANNEL_HINT);
  }
  raise_nofile(2 * cfg.channels + 256);

  mw_absl_fast_mutexes(); /* as Moonwire does: see runtime/mw_absl.h */
  grpc_init();
  gpr_base = gpr_now(GPR_CLOCK_MONOTONIC);
  gpr_base_ns = mono_ns();

  size_t req_len;
  uint8_t *req = encode_msg((size_t)cfg.payload, (size_t)cfg.text,
                            cfg.mode == MODE_SERVER_STREAM ? per_call : 0,
                            &req_len);
  req_slice = grpc_slice_from_static_buffer(req, req_len);
  method_slice = grpc_slice_from_static_string(method_names[cfg.mode]);

  channels = calloc((size_t)cfg.channels, sizeof *channels);
  struct stream *streams = calloc((size_t)nstreams, sizeof *streams);
  struct worker *workers = calloc((size_t)cfg.threads, sizeof *workers);
  if (!channels || !streams || !workers) die("out of memory");
  for (long i = 0; i < cfg.channels; i++) channels[i] = make_channel(i);

  /* Stream g (0 <= g < nstreams) runs on thread g % T and connection
     g % C, so with C a multiple of T no connection is shared by threads.
     Each thread's streams lie contiguous in the array. */
  for (long t = 0, first = 0; t < cfg.threads; t++) {
    struct worker *w = &workers[t];
    long cnt = nstreams / cfg.threads + (t < nstreams % cfg.threads);
    w->id = t;
    w->cq = grpc_completion_queue_create_for_next(NULL);
    w->streams = &streams[first];
    w->nstreams = cnt;
    int timed = cfg.mode == MODE_BIDI || cfg.mode == MODE_UNARY;
    w->hist = timed ? calloc(HIST_N, sizeof *w->hist) : NULL;
    if (timed && !w->hist) die("out of memory");
    for (long j = 0; j < cnt; j++) {
      struct stream *s = &streams[first + j];
      s->w = w;
      s->id = j * cfg.threads + t;
      s->ch = channels[s->id % cfg.channels];
      s->t_io.s = s->t_status.s = s->t_dsend.s = s;
      s->t_dsend.kind = TAG_SEND;
      s->t_io.kind = TAG_IO;
      s->t_status.kind = TAG_STATUS;
      s->req_bb = grpc_raw_byte_buffer_create(NULL, 0);
    }
    first += cnt;
  }

  if (cfg.mode == MODE_IDLE) {
    run_idle(&workers[0]);
  } else {
    uint64_t t0 = mono_ns();
    uint64_t t_warm = t0 + (uint64_t)(cfg.warmup * 1e9);
    uint64_t t_end = t_warm + (uint64_t)(cfg.duration * 1e9);
    for (long t = 0; t < cfg.threads; t++) {
      workers[t].t_warm = t_warm;
      workers[t].t_end = t_end;
      int e = pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]);
      if (e) die("pthread_create: %s", strerror(e));
    }
    sleep_until(t_warm);
    double cpu0 = cpu_seconds();
    sleep_until(t_end);
    double cpu1 = cpu_seconds();
    for (long t = 0; t < cfg.threads; t++) pthread_join(workers[t].thread, NULL);

    uint64_t counted = 0, calls = 0;
    static uint64_t hist[HIST_N];
    for (long t = 0; t < cfg.threads; t++) {
      counted += workers[t].counted;
      calls += workers[t].calls;
      if (workers[t].hist)
        for (int i = 0; i < HIST_N; i++) hist[i] += workers[t].hist[i];
    }
    double secs = (double)(t_end - t_warm) / 1e9;
    double cpu = cpu1 - cpu0;
    printf("{\"mode\":\"%s\",", mode_names[cfg.mode]);
    if (cfg.mode == MODE_BIDI || cfg.mode == MODE_UNARY)
      printf("\"%s_per_s\":%.1f,\"%s\":%" PRIu64 ",\"p50_us\":%.1f,\"p99_us\":%.1f,",
             cfg.mode == MODE_BIDI ? "round_trips" : "calls", counted / secs,
             cfg.mode == MODE_BIDI ? "round_trips" : "calls", counted,
             hist_percentile(hist, counted, 0.50) / 1e3,
             hist_percentile(hist, counted, 0.99) / 1e3);
    else
      printf("\"messages_per_s\":%.1f,\"messages\":%" PRIu64 ",",
             counted / secs, counted);
    printf("\"seconds\":%.3f,\"client_cpu_s\":%.3f,\"client_cpu_pct\":%.1f,"
           "\"streams\":%ld,\"per_call\":%" PRId64 ",\"payload\":%ld,"
           "\"channels\":%ld,\"threads\":%ld,\"calls_completed\":%" PRIu64,
           secs, cpu, 100.0 * cpu / secs, cfg.streams, per_call, cfg.payload,
           cfg.channels, cfg.threads, calls);
    if (cfg.mode == MODE_CLIENT_STREAM || cfg.mode == MODE_DUPLEX)
      printf(",\"write_batch\":%ld", cfg.write_batch);
    printf("}\n");
    fflush(stdout);
  }

  for (long i = 0; i < nstreams; i++) grpc_byte_buffer_destroy(streams[i].req_bb);
  for (long i = 0; i < cfg.channels; i++) grpc_channel_destroy(channels[i]);
  grpc_shutdown();
  for (long t = 0; t < cfg.threads; t++) free(workers[t].hist);
  free(workers);
  free(streams);
  free(channels);
  free(req);
  return 0;
}
