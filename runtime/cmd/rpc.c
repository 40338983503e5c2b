/* One channel and blocking calls on it, for the client commands (rpc.h). */
#include "cmd/rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_fs.h"

/* A PEM file is small; anything bigger is not one. */
#define MW_RPC_PEM_MAX (1u << 20)

struct mw_rpc_conn {
  grpc_channel *ch;
  grpc_completion_queue *cq;
};

struct mw_rpc {
  mw_rpc_conn *conn;
  grpc_call *call;
  /* One tag per kind of batch: each is plucked by whoever started it. */
  int start_tag, send_tag, close_tag, recv_tag, status_tag;
  grpc_metadata *md;
  size_t n_md;
  grpc_metadata_array headers, trailers;
  grpc_status_code code;
  grpc_slice details;
  const char *error_string; /* core's, gpr_malloc'd */
  char *message;            /* details as a C string */
  int got_headers, ended, finished;
};

static char *read_pem(const char *what, const char *path, char *err, size_t errlen) {
  char *data = NULL;
  size_t len = 0;
  int e = 0;
  if (mw_fs_read(path, MW_RPC_PEM_MAX, &data, &len, &e) != MW_FS_OK) {
    snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
    return NULL;
  }
  if (!strstr(data, "-----BEGIN ")) {
    snprintf(err, errlen, "%s %s: not a PEM file", what, path);
    free(data);
    return NULL;
  }
  return data;
}

/* --insecure: TLS that accepts any server certificate (a test server's
 * self-signed one), through the TLS credentials API, the only one of core
 * that can turn verification off. */
static grpc_channel_credentials *insecure_tls(const char *ca, const char *cert,
                                              const char *key) {
  grpc_tls_credentials_options *o = grpc_tls_credentials_options_create();
  grpc_tls_identity_pairs *pairs = NULL;
  if (cert) {
    pairs = grpc_tls_identity_pairs_create();
    grpc_tls_identity_pairs_add_pair(pairs, key, cert);
  }
  if (ca || pairs) {
    grpc_tls_certificate_provider *p = grpc_tls_certificate_provider_static_data_create(ca, pairs);
    grpc_tls_credentials_options_set_certificate_provider(o, p);
    grpc_tls_certificate_provider_release(p);
    if (ca) grpc_tls_credentials_options_watch_root_certs(o);
    if (pairs) grpc_tls_credentials_options_watch_identity_key_cert_pairs(o);
  }
  grpc_tls_credentials_options_set_verify_server_cert(o, 0);
  grpc_tls_certificate_verifier *v = grpc_tls_certificate_verifier_no_op_create();
  grpc_tls_credentials_options_set_certificate_verifier(o, v);
  grpc_tls_certificate_verifier_release(v);
  grpc_tls_credentials_options_set_check_call_host(o, 0);
  return grpc_tls_credentials_create(o); /* takes o */
}

mw_rpc_conn *mw_rpc_connect(const mw_rpc_target *t, char *err, size_t errlen) {
  char *ca = NULL, *cert = NULL, *key = NULL;
  if ((t->cert != NULL) != (t->key != NULL)) {
    snprintf(err, errlen, "%s", t->cert ? "--cert needs --key" : "--key needs --cert");
    return NULL;
  }
  if (t->tls && ((t->cacert && !(ca = read_pem("--cacert", t->cacert, err, errlen))) ||
                 (t->cert && !(cert = read_pem("--cert", t->cert, err, errlen))) ||
                 (t->key && !(key = read_pem("--key", t->key, err, errlen))))) {
    free(ca);
    free(cert);
    return NULL;
  }
  mw_rpc_conn *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    free(ca), free(cert), free(key);
    return NULL;
  }
  grpc_init();
  grpc_channel_credentials *creds;
  if (!t->tls) {
    creds = grpc_insecure_credentials_create();
  } else if (t->insecure) {
    creds = insecure_tls(ca, cert, key);
  } else {
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
  }
  grpc_arg args[3];
  size_t n = 0;
  args[n].type = GRPC_ARG_STRING;
  args[n].key = (char *)GRPC_ARG_PRIMARY_USER_AGENT_STRING;
  args[n++].value.string = (char *)"moonwire-call/" MW_VERSION;
  /* A response of any size: the person asked for it. */
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[n++].value.integer = -1;
  if (t->servername) {
    args[n].type = GRPC_ARG_STRING;
    args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[n++].value.string = (char *)t->servername;
  }
  grpc_channel_args cargs = {n, args};
  c->ch = creds ? grpc_channel_create(t->addr, creds, &cargs) : NULL;
  if (creds) grpc_channel_credentials_release(creds);
  free(ca), free(cert), free(key);
  if (!c->ch) {
    snprintf(err, errlen, "cannot make a channel to %s", t->addr);
    free(c);
    grpc_shutdown();
    return NULL;
  }
  c->cq = grpc_completion_queue_create_for_pluck(NULL);
  return c;
}

void mw_rpc_conn_free(mw_rpc_conn *c) {
  if (!c) return;
  grpc_completion_queue_shutdown(c->cq);
  while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(c->cq);
  grpc_channel_destroy(c->ch);
  free(c);
  grpc_shutdown();
}

/* Starts ops as one batch on tag and waits for it; returns core's ok. */
static int run_batch(mw_rpc *r, const grpc_op *ops, size_t n, void *tag) {
  if (grpc_call_start_batch(r->call, ops, n, tag, NULL) != GRPC_CALL_OK) return 0;
  grpc_event ev = grpc_completion_queue_pluck(r->conn->cq, tag,
                                              gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  return ev.type == GRPC_OP_COMPLETE && ev.success;
}

mw_rpc *mw_rpc_start(mw_rpc_conn *c, const char *path, double timeout_s,
                     const mw_rpc_md *md, size_t n_md, char *err, size_t errlen) {
  mw_rpc *r = calloc(1, sizeof *r);
  if (!r || (n_md && !(r->md = calloc(n_md, sizeof *r->md)))) {
    free(r);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  r->conn = c;
  r->details = grpc_empty_slice();
  grpc_metadata_array_init(&r->headers);
  grpc_metadata_array_init(&r->trailers);
  for (size_t i = 0; i < n_md; i++) {
    r->md[i].key = grpc_slice_from_copied_string(md[i].key);
    r->md[i].value = grpc_slice_from_copied_buffer(md[i].val, md[i].len);
  }
  r->n_md = n_md;
  gpr_timespec deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
  if (timeout_s > 0)
    deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                            gpr_time_from_micros((int64_t)(timeout_s * 1e6), GPR_TIMESPAN));
  grpc_slice method = grpc_slice_from_copied_string(path);
  r->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, method, NULL,
                                     deadline, NULL);
  grpc_slice_unref(method);
  /* The status is asked for at once: it ends whatever else waits. */
  grpc_op st = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
  st.data.recv_status_on_client.trailing_metadata = &r->trailers;
  st.data.recv_status_on_client.status = &r->code;
  st.data.recv_status_on_client.status_details = &r->details;
  st.data.recv_status_on_client.error_string = &r->error_string;
  if (grpc_call_start_batch(r->call, &st, 1, &r->status_tag, NULL) != GRPC_CALL_OK) {
    snprintf(err, errlen, "cannot start a call of %s", path);
    r->finished = 1; /* nothing of it is in flight */
    mw_rpc_free(r);
    return NULL;
  }
  grpc_op h = {.op = GRPC_OP_SEND_INITIAL_METADATA};
  h.data.send_initial_metadata.count = r->n_md;
  h.data.send_initial_metadata.metadata = r->md;
  /* A failure (no connection) shows as the status. */
  run_batch(r, &h, 1, &r->start_tag);
  return r;
}

int mw_rpc_send(mw_rpc *r, const char *data, size_t len) {
  grpc_slice s = grpc_slice_from_copied_buffer(data, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
  op.data.send_message.send_message = bb;
  int ok = run_batch(r, &op, 1, &r->send_tag);
  grpc_byte_buffer_destroy(bb);
  return ok ? 0 : -1;
}

int mw_rpc_close_send(mw_rpc *r) {
  grpc_op op = {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT};
  return run_batch(r, &op, 1, &r->close_tag) ? 0 : -1;
}

int mw_rpc_recv(mw_rpc *r, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  if (r->ended) return 0;
  grpc_op ops[2];
  size_t n = 0;
  grpc_byte_buffer *bb = NULL;
  if (!r->got_headers) {
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &r->headers;
  }
  memset(&ops[n], 0, sizeof ops[n]);
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n++].data.recv_message.recv_message = &bb;
  int ok = run_batch(r, ops, n, &r->recv_tag);
  r->got_headers = 1;
  if (!ok || !bb) {
    if (bb) grpc_byte_buffer_destroy(bb);
    r->ended = 1;
    return 0;
  }
  grpc_byte_buffer_reader rd;
  if (!grpc_byte_buffer_reader_init(&rd, bb)) {
    grpc_byte_buffer_destroy(bb);
    r->ended = 1;
    return 0;
  }
  grpc_slice flat = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  grpc_byte_buffer_destroy(bb);
  size_t n_bytes = GRPC_SLICE_LENGTH(flat);
  char *p = malloc(n_bytes + 1);
  if (p) {
    memcpy(p, GRPC_SLICE_START_PTR(flat), n_bytes);
    p[n_bytes] = '\0';
  }
  grpc_slice_unref(flat);
  if (!p) {
    mw_rpc_cancel(r);
    r->ended = 1;
    return 0;
  }
  *data = p;
  *len = n_bytes;
  return 1;
}

int mw_rpc_finish(mw_rpc *r) {
  if (r->finished) return (int)r->code;
  grpc_event ev = grpc_completion_queue_pluck(r->conn->cq, &r->status_tag,
                                              gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  (void)ev; /* a status batch always succeeds */
  r->finished = 1;
  size_t n = GRPC_SLICE_LENGTH(r->details);
  r->message = malloc(n + 1);
  if (r->message) {
    memcpy(r->message, GRPC_SLICE_START_PTR(r->details), n);
    r->message[n] = '\0';
  }
  return (int)r->code;
}

void mw_rpc_cancel(mw_rpc *r) {
  if (r && r->call) grpc_call_cancel(r->call, NULL);
}

void mw_rpc_free(mw_rpc *r) {
  if (!r) return;
  if (!r->finished) {
    /* The status batch is in flight: end the call and let it complete. */
    grpc_call_cancel(r->call, NULL);
    mw_rpc_finish(r);
  }
  if (r->call) grpc_call_unref(r->call);
  for (size_t i = 0; i < r->n_md; i++) {
    grpc_slice_unref(r->md[i].key);
    grpc_slice_unref(r->md[i].value);
  }
  free(r->md);
  grpc_metadata_array_destroy(&r->headers);
  grpc_metadata_array_destroy(&r->trailers);
  grpc_slice_unref(r->details);
  gpr_free((void *)r->error_string);
  free(r->message);
  free(r);
}

const char *mw_rpc_message(const mw_rpc *r) { return r->message ? r->message : ""; }
const char *mw_rpc_error_string(const mw_rpc *r) { return r->error_string; }
size_t mw_rpc_header_count(const mw_rpc *r) { return r->headers.count; }
size_t mw_rpc_trailer_count(const mw_rpc *r) { return r->trailers.count; }

void mw_rpc_md_at(const mw_rpc *r, int trailers, size_t i, const char **k, size_t *kl,
                  const char **v, size_t *vl) {
  const grpc_metadata *m = &(trailers ? &r->trailers : &r->headers)->metadata[i];
  *k = (const char *)GRPC_SLICE_START_PTR(m->key);
  *kl = GRPC_SLICE_LENGTH(m->key);
  *v = (const char *)GRPC_SLICE_START_PTR(m->value);
  *vl = GRPC_SLICE_LENGTH(m->value);
}
