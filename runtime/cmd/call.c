/* moonwire call ADDR METHOD [JSON | @FILE | -]: one call of any kind, its
 * requests and responses in canonical proto3 JSON (codec/mw_json.h), a
 * failure's status and error details on stderr, the exit status its code
 * (client.h). Streams are NDJSON both ways; a client or bidi stream's
 * requests are read and sent on a thread of their own, so that responses
 * print as they arrive while stdin is still open. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mw_buf.h"
#include "base/mw_status.h"
#include "cmd/client.h"
#include "cmd/cmd.h"
#include "cmd/output.h"
#include "codec/mw_json.h"
#include "upb/decode.h"
#include "upb/reflection.h"

/* A request document read whole (unary, server-streaming) at most. */
#define MW_CALL_INPUT_MAX (64u << 20)

/* The method argument: pkg.Svc/Method, /pkg.Svc/Method or pkg.Svc.Method,
 * split into the service's full name and the method's. */
static int split_method(const char *arg, char **svc, char **method) {
  const char *s = arg[0] == '/' ? arg + 1 : arg;
  const char *cut = strchr(s, '/');
  if (!cut) cut = strrchr(s, '.');
  if (!cut || cut == s || !cut[1] || strchr(cut + 1, '/')) return -1;
  *svc = strndup(s, (size_t)(cut - s));
  *method = strdup(cut + 1);
  if (!*svc || !*method) {
    free(*svc);
    free(*method);
    return -1;
  }
  return 0;
}

/* The request's source: the argument itself, @FILE, or - (stdin). NULL
 * with err filled when a file cannot be opened. */
static FILE *open_input(const char *arg, char *err, size_t errlen) {
  if (!strcmp(arg, "-")) return stdin;
  if (arg[0] == '@') {
    FILE *f = fopen(arg + 1, "r");
    if (!f) snprintf(err, errlen, "%s: cannot open: %m", arg + 1);
    return f;
  }
  FILE *f = fmemopen((void *)arg, strlen(arg), "r");
  if (!f) snprintf(err, errlen, "cannot read the request argument: %m");
  return f;
}

static char *read_all(FILE *f, size_t *len) {
  mw_buf b = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= MW_CALL_INPUT_MAX)
    mw_buf_put(&b, chunk, n);
  if (b.len > MW_CALL_INPUT_MAX) {
    mw_buf_free(&b);
    return NULL;
  }
  return mw_buf_take(&b, len);
}

/* Whether s holds only white space. */
static int blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
  return 1;
}

/* The request feeder of client and bidi streams, on its own thread. It
 * lives as long as the process: a person may leave stdin open after the
 * server ended the call, and the thread then stays blocked in its read
 * until exit, so nothing it touches may be freed before. */
typedef struct feeder {
  FILE *in;
  mw_rpc *rpc;
  const upb_MessageDef *m;
  const upb_DefPool *pool;
  pthread_mutex_t mu; /* held while the call is used; guards stop */
  int stop;           /* the call is over for the main thread */
  int done;           /* the thread has returned */
  int failed;         /* a request line is not valid JSON for m */
  char err[1024];
} feeder;

static feeder the_feeder = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *feed(void *arg) {
  feeder *f = arg;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  long lineno = 0;
  while ((n = getline(&line, &cap, f->in)) >= 0) {
    lineno++;
    if (blank(line, (size_t)n)) continue;
    upb_Arena *a = upb_Arena_New();
    const char *bin = NULL;
    size_t bin_len = 0;
    char why[768] = "out of memory";
    mw_json_status st = a ? mw_json_to_binary(line, (size_t)n, f->m, f->pool, 0, NULL, a, &bin,
                                              &bin_len, why, sizeof why)
                          : MW_JSON_NOMEM;
    pthread_mutex_lock(&f->mu);
    int go = !f->stop;
    if (go && st != MW_JSON_OK) {
      snprintf(f->err, sizeof f->err, "request line %ld: %s", lineno, why);
      f->failed = 1;
      mw_rpc_cancel(f->rpc);
      go = 0;
    }
    if (go) go = mw_rpc_send(f->rpc, bin, bin_len) == 0;
    pthread_mutex_unlock(&f->mu);
    if (a) upb_Arena_Free(a);
    if (!go) break;
  }
  free(line);
  pthread_mutex_lock(&f->mu);
  if (!f->stop && !f->failed) mw_rpc_close_send(f->rpc);
  f->done = 1;
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

/* The details of grpc-status-details-bin (a google.rpc.Status), one JSON
 * line each, to stderr; what cannot be decoded is said so. */
static void print_details(const mw_schema *s, const char *bin, size_t len) {
  const upb_DefPool *pool = mw_schema_pool(s);
  const upb_MessageDef *st = upb_DefPool_FindMessageByName(pool, "google.rpc.Status");
  const upb_FieldDef *df = st ? upb_MessageDef_FindFieldByName(st, "details") : NULL;
  upb_Arena *a = upb_Arena_New();
  upb_Message *msg = st && a ? upb_Message_New(st, a) : NULL;
  if (!df || !msg ||
      upb_Decode(bin, len, msg, upb_MessageDef_MiniTable(st), NULL, 0, a) != kUpb_DecodeStatus_Ok) {
    fprintf(stderr, "  (grpc-status-details-bin is not a google.rpc.Status)\n");
    if (a) upb_Arena_Free(a);
    return;
  }
  const upb_Array *arr = upb_Message_Get(msg, df).array_val;
  const upb_MessageDef *any = upb_FieldDef_MessageSubDef(df);
  for (size_t i = 0; arr && i < upb_Array_Size(arr); i++) {
    const char *json = NULL;
    size_t jl = 0;
    char err[512];
    if (mw_json_encode_msg(upb_Array_Get(arr, i).msg_val, any, pool, 0, NULL, a, &json, &jl, err,
                           sizeof err) == MW_JSON_OK)
      fprintf(stderr, "  %s\n", json);
    else
      fprintf(stderr, "  (a detail that cannot be shown: %s)\n", err);
  }
  upb_Arena_Free(a);
}

/* Prints one response; returns 0, or -1 when it is not valid for m. */
static int print_response(const mw_cli *c, const mw_schema *s, const upb_MessageDef *m,
                          const char *bin, size_t len, int pretty) {
  upb_Arena *a = upb_Arena_New();
  const char *json = NULL;
  size_t jl = 0;
  char err[768] = "out of memory";
  mw_json_status st = a ? mw_json_from_binary(bin, len, m, mw_schema_pool(s),
                                              c->emit_defaults ? MW_JSON_EMIT_DEFAULTS : 0,
                                              NULL, a, &json, &jl, err, sizeof err)
                        : MW_JSON_NOMEM;
  if (st == MW_JSON_OK) {
    if (pretty) mw_out_json_pretty(stdout, json, jl);
    else fprintf(stdout, "%s\n", json);
    fflush(stdout);
  } else {
    fprintf(stderr, "moonwire call: a response that cannot be shown: %s\n", err);
  }
  if (a) upb_Arena_Free(a);
  return st == MW_JSON_OK ? 0 : -1;
}

typedef struct call_ctx {
  mw_cli *c;
  mw_rpc_conn *conn;
  mw_schema *schema;
  const upb_MethodDef *method;
  char path[1024];
  char err[2048];
} call_ctx;

/* The schema that defines svc: the files given, or reflection's. Returns
 * 0, or an exit status with ctx->err filled. */
static int find_method(call_ctx *x, const char *svc, const char *name) {
  if (mw_cli_local_schema(x->c)) {
    x->schema = mw_cli_load_files(x->c, x->err, sizeof x->err);
    if (!x->schema) return MW_CLI_LOCAL;
  } else {
    x->schema = mw_cli_new_schema();
    mw_reflect *r = x->schema ? mw_reflect_new(x->conn, x->c->md, x->c->n_md, x->c->deadline_s)
                              : NULL;
    if (!r) {
      snprintf(x->err, sizeof x->err, "out of memory");
      return MW_CLI_LOCAL;
    }
    int rc = mw_reflect_symbol(r, svc, x->schema, x->err, sizeof x->err);
    mw_reflect_free(r);
    if (rc == MW_REFLECT_LOCAL) return MW_CLI_LOCAL;
    if (rc == MW_STATUS_NOT_FOUND)
      snprintf(x->err, sizeof x->err, "the server has no service %s (moonwire list %s)", svc,
               x->c->target.addr);
    if (rc) return rc;
    if (mw_cli_finish_schema(x->schema, x->err, sizeof x->err) != 0) return MW_CLI_LOCAL;
  }
  const upb_ServiceDef *sd = upb_DefPool_FindServiceByName(mw_schema_pool(x->schema), svc);
  if (!sd) {
    snprintf(x->err, sizeof x->err, "no service %s in %s", svc,
             mw_cli_local_schema(x->c) ? "the files given" : "the server's schema");
    return mw_cli_local_schema(x->c) ? MW_CLI_LOCAL : MW_STATUS_NOT_FOUND;
  }
  x->method = upb_ServiceDef_FindMethodByName(sd, name);
  if (!x->method) {
    mw_buf b = {0};
    for (int i = 0; i < upb_ServiceDef_MethodCount(sd); i++)
      mw_buf_printf(&b, "%s%s", i ? ", " : "", upb_MethodDef_Name(upb_ServiceDef_Method(sd, i)));
    snprintf(x->err, sizeof x->err, "%s has no method %s (it has: %s)", svc, name,
             b.p ? b.p : "none");
    mw_buf_free(&b);
    return mw_cli_local_schema(x->c) ? MW_CLI_LOCAL : MW_STATUS_NOT_FOUND;
  }
  snprintf(x->path, sizeof x->path, "/%s/%s", svc, name);
  return 0;
}

/* The call once the method is known. */
static int run_call(call_ctx *x) {
  mw_cli *c = x->c;
  const upb_MessageDef *in = upb_MethodDef_InputType(x->method);
  const upb_MessageDef *out = upb_MethodDef_OutputType(x->method);
  int client_stream = upb_MethodDef_ClientStreaming(x->method);
  int server_stream = upb_MethodDef_ServerStreaming(x->method);
  const char *src = c->n_args > 1 ? c->args[1] : client_stream ? "-" : "{}";
  FILE *input = open_input(src, x->err, sizeof x->err);
  if (!input) return MW_CLI_LOCAL;
  /* A single request is read and checked before anything is sent. */
  char *doc = NULL;
  const char *bin = NULL;
  size_t bin_len = 0;
  upb_Arena *a = upb_Arena_New();
  if (!client_stream) {
    size_t len = 0;
    doc = read_all(input, &len);
    if (input != stdin) fclose(input);
    input = NULL;
    char why[768] = "out of memory";
    if (!doc) {
      snprintf(x->err, sizeof x->err, "the request is larger than %u bytes", MW_CALL_INPUT_MAX);
    } else if (blank(doc, len)) {
      snprintf(x->err, sizeof x->err, "the request is empty (give {} for an empty message)");
    } else if (!a || mw_json_to_binary(doc, len, in, mw_schema_pool(x->schema), 0, NULL, a, &bin,
                                       &bin_len, why, sizeof why) != MW_JSON_OK) {
      snprintf(x->err, sizeof x->err, "the request is not a valid %s: %s",
               upb_MessageDef_FullName(in), why);
    } else {
      why[0] = '\0';
    }
    free(doc);
    if (why[0]) {
      if (a) upb_Arena_Free(a);
      return MW_CLI_LOCAL;
    }
  }
  if (c->verbose) mw_out_request_md(c->md, c->n_md);
  mw_rpc *rpc = mw_rpc_start(x->conn, x->path, c->deadline_s, c->md, c->n_md, x->err,
                             sizeof x->err);
  if (!rpc) {
    if (a) upb_Arena_Free(a);
    if (input && input != stdin) fclose(input);
    return MW_CLI_LOCAL;
  }
  feeder *f = NULL;
  pthread_t th;
  if (client_stream) {
    f = &the_feeder;
    f->in = input;
    f->rpc = rpc;
    f->m = in;
    f->pool = mw_schema_pool(x->schema);
    if (pthread_create(&th, NULL, feed, f) != 0) {
      snprintf(x->err, sizeof x->err, "cannot start the request thread");
      mw_rpc_free(rpc);
      if (a) upb_Arena_Free(a);
      if (input != stdin) fclose(input);
      return MW_CLI_LOCAL;
    }
  } else {
    if (mw_rpc_send(rpc, bin, bin_len) == 0) mw_rpc_close_send(rpc);
  }
  /* One response prints indented at a terminal; a stream's, one a line. */
  int pretty = !server_stream && isatty(STDOUT_FILENO);
  int bad_output = 0, shown_headers = 0;
  char *msg;
  size_t len;
  while (mw_rpc_recv(rpc, &msg, &len) == 1) {
    if (c->verbose && !shown_headers) mw_out_md(rpc, 0), shown_headers = 1;
    if (print_response(c, x->schema, out, msg, len, pretty) != 0 && !bad_output) {
      bad_output = 1;
      mw_rpc_cancel(rpc);
    }
    free(msg);
  }
  int code = mw_rpc_finish(rpc);
  int local_failure = 0;
  if (f) {
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    int done = f->done;
    local_failure = f->failed;
    if (local_failure) snprintf(x->err, sizeof x->err, "%s", f->err);
    pthread_mutex_unlock(&f->mu);
    if (done) {
      pthread_join(th, NULL);
      if (input != stdin) fclose(input);
    } else {
      pthread_detach(th); /* blocked reading an input still open; see feeder */
    }
  }
  if (c->verbose) {
    if (!shown_headers) mw_out_md(rpc, 0);
    mw_out_md(rpc, 1);
  }
  int rc = code;
  if (local_failure) {
    rc = MW_CLI_LOCAL;
  } else if (bad_output && code == MW_STATUS_CANCELLED) {
    snprintf(x->err, sizeof x->err, "cancelled the call: a response did not decode as %s",
             upb_MessageDef_FullName(out));
    rc = MW_CLI_LOCAL;
  } else if (code != MW_STATUS_OK) {
    mw_out_status(rpc, code);
    for (size_t i = 0; i < mw_rpc_trailer_count(rpc); i++) {
      const char *k, *v;
      size_t kl, vl;
      mw_rpc_md_at(rpc, 1, i, &k, &kl, &v, &vl);
      if (kl == 23 && !memcmp(k, "grpc-status-details-bin", 23)) print_details(x->schema, v, vl);
    }
    x->err[0] = '\0';
  }
  mw_rpc_free(rpc);
  if (a) upb_Arena_Free(a);
  return rc;
}

int mw_cmd_call(int argc, char **argv) {
  mw_cli c;
  int rc = mw_cli_parse(argc, argv, &c);
  if (rc >= 0) {
    mw_cli_free(&c);
    return rc;
  }
  call_ctx x = {.c = &c};
  char *svc = NULL, *name = NULL;
  if (split_method(c.args[0], &svc, &name) != 0) {
    rc = MW_CLI_USAGE;
    snprintf(x.err, sizeof x.err, "%s: METHOD is pkg.Service/Method or pkg.Service.Method",
             c.args[0]);
  } else if (!(x.conn = mw_rpc_connect(&c.target, x.err, sizeof x.err))) {
    rc = MW_CLI_LOCAL;
  } else if ((rc = find_method(&x, svc, name)) == 0) {
    rc = run_call(&x);
  }
  if (x.err[0]) mw_cli_fail(&c, rc, x.err);
  free(svc);
  free(name);
  mw_schema_free(x.schema);
  mw_rpc_conn_free(x.conn);
  mw_cli_free(&c);
  return rc;
}
