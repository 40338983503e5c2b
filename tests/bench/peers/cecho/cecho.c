/* cecho: the ceiling for the Moonwire benchmark.
 *
 * bench.Echo on gRPC core's completion-queue API with raw bytes: no protobuf
 * library, no Lua. One thread drives one completion queue; every method is a
 * registered method.
 *
 *   Unary         payload read with the call (READ_INITIAL_BYTE_BUFFER) and sent
 *                 back as it is, in one batch: SEND_INITIAL_METADATA +
 *                 SEND_MESSAGE + SEND_STATUS_FROM_SERVER + RECV_CLOSE_ON_SERVER.
 *   ServerStream  request read with the call; field 3 (n) parsed from the raw
 *                 bytes; the request bytes sent back n times, one write in
 *                 flight, the status riding with the last write.
 *   ClientStream  messages counted, the last one kept; the answer
 *                 {payload = last payload, n = count} encoded by hand, the
 *                 payload bytes referenced, not copied.
 *   Bidi          each message echoed as it arrives; the echo and the read of
 *                 the next message share one batch.
 *
 * usage: bench-cecho PORT [--moonwire-transport]   (listens on 127.0.0.1:PORT)
 *
 *   By default gRPC core runs with its own defaults (as grpc-go and the C++
 *   server run with theirs), plus a 64 MiB receive limit. With
 *   --moonwire-transport it runs with the channel arguments Moonwire's
 *   defaults give (core/mw_transport.h: limits, keepalive, connection idle
 *   and age, the hardened transport, the resource quota), so that Moonwire
 *   against it measures only what Moonwire adds to a call.
 *
 * Threads: this program runs everything on its main thread. gRPC core 1.51
 * still starts its own helper threads (timer manager, executor, resolver
 * executor, EventEngine pool), mostly idle here since the main thread polls
 * the completion queue itself.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>

#include "base/mw_absl.h"
#include "config/mw_config.h"
#include "core/mw_transport.h"
#include <grpc/support/time.h>

enum method { M_UNARY, M_SSTREAM, M_CSTREAM, M_BIDI, M_COUNT };

static const char *const method_paths[M_COUNT] = {
    "/bench.Echo/Unary",
    "/bench.Echo/ServerStream",
    "/bench.Echo/ClientStream",
    "/bench.Echo/Bidi",
};

/* Calls requested ahead for each method, so that new streams find one. */
static const int ahead[M_COUNT] = {64, 8, 8, 8};

enum event { EV_NEW, EV_IO, EV_CLOSE };

struct ecall;

struct tag {
  struct ecall *c;
  enum event ev;
};

struct ecall {
  enum method m;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *in;   /* request (Unary, ServerStream) / read target */
  grpc_byte_buffer *last; /* ClientStream: the last message */
  grpc_byte_buffer *out;  /* message being sent */
  grpc_slice flat;        /* ServerStream: the request bytes */
  int have_flat;
  int64_t left;  /* ServerStream: messages still to send */
  int64_t count; /* ClientStream: messages read */
  int refs;      /* batches in flight */
  int cancelled; /* RECV_CLOSE_ON_SERVER */
  int finishing; /* the status is on its way */
  int sent_md;
  struct tag t_new, t_io, t_close;
};

static grpc_server *server;
static grpc_completion_queue *cq;
static void *handles[M_COUNT];
static int shutting_down;
/* Calls allocated and not yet freed (requested slots included). The queue
 * is shut down only once the server's shutdown has completed and this is
 * 0: a call whose last event is still queued may start one more batch,
 * and a batch on a shut queue aborts core. */
static long live_calls;
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void die(const char *what) {
  fprintf(stderr, "bench-cecho: %s\n", what);
  exit(1);
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (p == NULL) die("out of memory");
  return p;
}

/* ---- raw protobuf: just enough of bench.Msg ---------------------------- */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    x |= (uint64_t)(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

static size_t put_varint(uint8_t *buf, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  buf[n++] = (uint8_t)v;
  return n;
}

/* Finds field 1 (payload, bytes) and field 3 (n, int64) in a bench.Msg;
 * the last occurrence wins, as in protobuf. Returns -1 when malformed. */
static int parse_msg(const uint8_t *b, size_t len, size_t *pay_off,
                     size_t *pay_len, int64_t *n) {
  const uint8_t *p = b, *end = b + len;
  *pay_off = 0;
  *pay_len = 0;
  *n = 0;
  while (p < end) {
    uint64_t key, v;
    if (read_varint(&p, end, &key) != 0) return -1;
    uint64_t field = key >> 3;
    if (field == 0) return -1;
    switch (key & 7) {
      case 0: /* varint */
        if (read_varint(&p, end, &v) != 0) return -1;
        if (field == 3) *n = (int64_t)v;
        break;
      case 1: /* fixed64 */
        if (end - p < 8) return -1;
        p += 8;
        break;
      case 2: /* length-delimited */
        if (read_varint(&p, end, &v) != 0) return -1;
        if (v > (uint64_t)(end - p)) return -1;
        if (field == 1) {
          *pay_off = (size_t)(p - b);
          *pay_len = (size_t)v;
        }
        p += v;
        break;
      case 5: /* fixed32 */
        if (end - p < 4) return -1;
        p += 4;
        break;
      default: /* groups: not in bench.Msg */
        return -1;
    }
  }
  return 0;
}

/* The bytes of a byte buffer as one slice (a new reference). */
static grpc_slice flatten(grpc_byte_buffer *bb) {
  if (bb->type == GRPC_BB_RAW &&
      bb->data.raw.compression == GRPC_COMPRESS_NONE &&
      bb->data.raw.slice_buffer.count == 1) {
    return grpc_slice_ref(bb->data.raw.slice_buffer.slices[0]);
  }
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init(&reader, bb)) die("cannot read a message");
  grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  return s;
}

/* ---- calls ------------------------------------------------------------- */

static void request_call(enum method m) {
  struct ecall *c = xcalloc(1, sizeof *c);
  live_calls++;
  c->m = m;
  c->t_new = (struct tag){c, EV_NEW};
  c->t_io = (struct tag){c, EV_IO};
  c->t_close = (struct tag){c, EV_CLOSE};
  grpc_metadata_array_init(&c->md);
  int with_payload = (m == M_UNARY || m == M_SSTREAM);
  grpc_call_error e = grpc_server_request_registered_call(
      server, handles[m], &c->call, &c->deadline, &c->md,
      with_payload ? &c->in : NULL, cq, cq, &c->t_new);
  if (e != GRPC_CALL_OK) die("grpc_server_request_registered_call failed");
}

static void free_call(struct ecall *c) {
  live_calls--;
  if (c->call != NULL) grpc_call_unref(c->call);
  grpc_metadata_array_destroy(&c->md);
  if (c->in != NULL) grpc_byte_buffer_destroy(c->in);
  if (c->last != NULL) grpc_byte_buffer_destroy(c->last);
  if (c->out != NULL) grpc_byte_buffer_destroy(c->out);
  if (c->have_flat) grpc_slice_unref(c->flat);
  free(c);
}

static void unref_call(struct ecall *c) {
  if (--c->refs == 0) free_call(c);
}

static void start_batch(struct ecall *c, const grpc_op *ops, size_t n,
                        struct tag *t) {
  c->refs++;
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "bench-cecho: grpc_call_start_batch: %d\n", (int)e);
    exit(1);
  }
}

static void op_send_md(grpc_op *op, struct ecall *c) {
  memset(op, 0, sizeof *op);
  op->op = GRPC_OP_SEND_INITIAL_METADATA;
  c->sent_md = 1;
}

static void op_send_msg(grpc_op *op, grpc_byte_buffer *bb) {
  memset(op, 0, sizeof *op);
  op->op = GRPC_OP_SEND_MESSAGE;
  op->data.send_message.send_message = bb;
}

static void op_recv_msg(grpc_op *op, grpc_byte_buffer **bb) {
  memset(op, 0, sizeof *op);
  op->op = GRPC_OP_RECV_MESSAGE;
  op->data.recv_message.recv_message = bb;
}

static void op_status(grpc_op *op, struct ecall *c, grpc_status_code code,
                      grpc_slice *details) {
  memset(op, 0, sizeof *op);
  op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  op->data.send_status_from_server.status = code;
  op->data.send_status_from_server.status_details = details;
  c->finishing = 1;
}

static void op_recv_close(grpc_op *op, struct ecall *c) {
  memset(op, 0, sizeof *op);
  op->op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op->data.recv_close_on_server.cancelled = &c->cancelled;
}

/* Ends the call with an error status (streaming calls: the RECV_CLOSE batch
 * is already in flight). */
static void finish_error(struct ecall *c, grpc_status_code code,
                         const char *msg) {
  grpc_op ops[2];
  size_t n = 0;
  grpc_slice details = grpc_slice_from_static_string(msg);
  if (!c->sent_md) op_send_md(&ops[n++], c);
  op_status(&ops[n++], c, code, &details);
  start_batch(c, ops, n, &c->t_io);
}

/* A batch failed (client gone, deadline, shutdown): stop and let the close
 * batch complete. */
static void abandon(struct ecall *c) {
  c->finishing = 1;
  grpc_call_cancel(c->call, NULL);
}

static void unary_start(struct ecall *c) {
  grpc_op ops[4];
  size_t n = 0;
  /* Referenced by ops until grpc_call_start_batch: same scope as ops. */
  grpc_slice details = grpc_slice_from_static_string("missing request");
  if (c->in == NULL) {
    op_send_md(&ops[n++], c);
    op_status(&ops[n++], c, GRPC_STATUS_INTERNAL, &details);
    op_recv_close(&ops[n++], c);
  } else {
    op_send_md(&ops[n++], c);
    op_send_msg(&ops[n++], c->in);
    op_status(&ops[n++], c, GRPC_STATUS_OK, NULL);
    op_recv_close(&ops[n++], c);
  }
  start_batch(c, ops, n, &c->t_io);
}

static void sstream_next(struct ecall *c) {
  grpc_op ops[3];
  size_t n = 0;
  if (!c->sent_md) op_send_md(&ops[n++], c);
  if (c->left > 0) {
    c->out = grpc_raw_byte_buffer_create(&c->flat, 1);
    op_send_msg(&ops[n++], c->out);
    c->left--;
  }
  if (c->left <= 0) op_status(&ops[n++], c, GRPC_STATUS_OK, NULL);
  start_batch(c, ops, n, &c->t_io);
}

static void sstream_start(struct ecall *c) {
  if (c->in == NULL) {
    finish_error(c, GRPC_STATUS_INTERNAL, "missing request");
    return;
  }
  c->flat = flatten(c->in);
  c->have_flat = 1;
  grpc_byte_buffer_destroy(c->in);
  c->in = NULL;
  size_t off, len;
  if (parse_msg(GRPC_SLICE_START_PTR(c->flat), GRPC_SLICE_LENGTH(c->flat), &off,
                &len, &c->left) != 0) {
    finish_error(c, GRPC_STATUS_INTERNAL, "malformed bench.Msg");
    return;
  }
  sstream_next(c);
}

static void read_next(struct ecall *c) {
  grpc_op op;
  op_recv_msg(&op, &c->in);
  start_batch(c, &op, 1, &c->t_io);
}

/* ClientStream's answer: {payload = last payload, n = count}. */
static void cstream_finish(struct ecall *c) {
  grpc_slice parts[3];
  size_t k = 0;
  grpc_slice full = c->last != NULL ? flatten(c->last) : grpc_empty_slice();
  size_t off = 0, len = 0;
  int64_t ignored;
  if (parse_msg(GRPC_SLICE_START_PTR(full), GRPC_SLICE_LENGTH(full), &off, &len,
                &ignored) != 0) {
    grpc_slice_unref(full);
    finish_error(c, GRPC_STATUS_INTERNAL, "malformed bench.Msg");
    return;
  }
  uint8_t head[11], tail[11];
  if (len > 0) {
    head[0] = 0x0a; /* field 1, length-delimited */
    size_t h = 1 + put_varint(head + 1, len);
    parts[k++] = grpc_slice_from_copied_buffer((const char *)head, h);
    parts[k++] = grpc_slice_sub(full, off, off + len);
  }
  if (c->count != 0) {
    tail[0] = 0x18; /* field 3, varint */
    size_t t = 1 + put_varint(tail + 1, (uint64_t)c->count);
    parts[k++] = grpc_slice_from_copied_buffer((const char *)tail, t);
  }
  c->out = grpc_raw_byte_buffer_create(parts, k);
  for (size_t i = 0; i < k; i++) grpc_slice_unref(parts[i]);
  grpc_slice_unref(full);

  grpc_op ops[3];
  size_t n = 0;
  op_send_md(&ops[n++], c);
  op_send_msg(&ops[n++], c->out);
  op_status(&ops[n++], c, GRPC_STATUS_OK, NULL);
  start_batch(c, ops, n, &c->t_io);
}

static void cstream_io(struct ecall *c) {
  if (c->in == NULL) {
    cstream_finish(c);
    return;
  }
  c->count++;
  if (c->last != NULL) grpc_byte_buffer_destroy(c->last);
  c->last = c->in;
  c->in = NULL;
  read_next(c);
}

static void bidi_io(struct ecall *c) {
  grpc_op ops[2];
  size_t n = 0;
  if (c->in == NULL) { /* the client is done sending */
    if (!c->sent_md) op_send_md(&ops[n++], c);
    op_status(&ops[n++], c, GRPC_STATUS_OK, NULL);
    start_batch(c, ops, n, &c->t_io);
    return;
  }
  c->out = c->in;
  c->in = NULL;
  op_send_msg(&ops[n++], c->out);
  op_recv_msg(&ops[n++], &c->in);
  start_batch(c, ops, n, &c->t_io);
}

static void on_new(struct ecall *c, int ok) {
  if (!ok) { /* the server is shutting down */
    free_call(c);
    return;
  }
  if (!shutting_down) request_call(c->m);
  if (c->m == M_UNARY) {
    unary_start(c);
    return;
  }
  grpc_op op;
  op_recv_close(&op, c);
  start_batch(c, &op, 1, &c->t_close);
  switch (c->m) {
    case M_SSTREAM:
      sstream_start(c);
      break;
    case M_CSTREAM:
      read_next(c);
      break;
    case M_BIDI: {
      grpc_op ops[2];
      op_send_md(&ops[0], c);
      op_recv_msg(&ops[1], &c->in);
      start_batch(c, ops, 2, &c->t_io);
      break;
    }
    default:
      break;
  }
}

static void on_io(struct ecall *c, int ok) {
  if (c->out != NULL) {
    grpc_byte_buffer_destroy(c->out);
    c->out = NULL;
  }
  if (!ok) {
    if (!c->finishing) abandon(c);
  } else if (!c->finishing) {
    switch (c->m) {
      case M_SSTREAM:
        sstream_next(c);
        break;
      case M_CSTREAM:
        cstream_io(c);
        break;
      case M_BIDI:
        bidi_io(c);
        break;
      default:
        break;
    }
  }
  unref_call(c);
}

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv) {
  int moonwire_transport = argc == 3 && strcmp(argv[2], "--moonwire-transport") == 0;
  if ((argc != 2 && !moonwire_transport) || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
    fprintf(stderr, "usage: bench-cecho PORT [--moonwire-transport]\n");
    return 2;
  }
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", atoi(argv[1]));

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  mw_absl_fast_mutexes(); /* as Moonwire does: see runtime/base/mw_absl.h */
  grpc_init();
  cq = grpc_completion_queue_create_for_next(NULL);

  grpc_arg args[MW_TRANSPORT_MAX_ARGS];
  grpc_resource_quota *quota = NULL;
  size_t n = 0;
  if (moonwire_transport) {
    mw_config cfg;
    mw_config_init(&cfg);
    n = mw_transport_args(&cfg, args, &quota);
    mw_config_free(&cfg);
  } else {
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = 64 << 20;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[1].value.integer = 0;
    n = 2;
  }
  grpc_channel_args chargs = {n, args};
  server = grpc_server_create(&chargs, NULL);
  if (quota) grpc_resource_quota_unref(quota); /* the server holds its own */
  grpc_server_register_completion_queue(server, cq, NULL);
  for (int m = 0; m < M_COUNT; m++) {
    grpc_server_register_method_payload_handling ph =
        (m == M_UNARY || m == M_SSTREAM) ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
                                          : GRPC_SRM_PAYLOAD_NONE;
    handles[m] = grpc_server_register_method(server, method_paths[m], NULL, ph, 0);
    if (handles[m] == NULL) die("grpc_server_register_method failed");
  }
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(server, addr, creds);
  grpc_server_credentials_release(creds);
  if (port == 0) {
    fprintf(stderr, "bench-cecho: cannot listen on %s\n", addr);
    return 1;
  }
  grpc_server_start(server);
  for (int m = 0; m < M_COUNT; m++)
    for (int i = 0; i < ahead[m]; i++) request_call((enum method)m);

  printf("listening on %s\n", addr);
  fflush(stdout);

  int shutdown_tag = 0;
  int server_down = 0, cq_shut = 0;
  for (;;) {
    if (stop_requested && !shutting_down) {
      shutting_down = 1;
      grpc_server_shutdown_and_notify(server, cq, &shutdown_tag);
      grpc_server_cancel_all_calls(server);
    }
    if (server_down && live_calls == 0 && !cq_shut) {
      cq_shut = 1;
      grpc_completion_queue_shutdown(cq);
    }
    grpc_event ev = grpc_completion_queue_next(
        cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                         gpr_time_from_millis(200, GPR_TIMESPAN)),
        NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) continue;
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.tag == &shutdown_tag) {
      server_down = 1;
      continue;
    }
    struct tag *t = ev.tag;
    switch (t->ev) {
      case EV_NEW:
        on_new(t->c, ev.success);
        break;
      case EV_IO:
        on_io(t->c, ev.success);
        break;
      case EV_CLOSE:
        unref_call(t->c);
        break;
    }
  }
  grpc_server_destroy(server);
  grpc_completion_queue_destroy(cq);
  grpc_shutdown();
  return 0;
}
