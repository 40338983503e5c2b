/* Configuration: one YAML file read with libyaml's event API into a small
 * tree (each node keeps its 1-based line:column), then validated key by key.
 *
 * Every problem becomes "NAME:LINE:COLUMN: message"; the messages of one load
 * are sorted by position before they go to the mw_diag, so a YAML syntax
 * error found late and the key errors found before it read in file order.
 *
 * A key whose value is valid is applied to the config; a key whose value is
 * not keeps what the config held (the defaults after mw_config_init). Lists
 * (listen, services, proto_path) are replaced as a whole, never merged. */
#include "config/mw_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "base/mw_fs.h"
#include "base/mw_log.h"
#include "base/mw_status.h"

#define WORKERS_MAX 256
#define MAX_DEPTH 64
#define MAX_FILE_BYTES (16u << 20)

/* ------------------------------------------------------------------------ */
/* The default listen list                                                   */

/* It lives in static storage, borrowed by the config's vector, so that
 * mw_config_init and mw_config_free allocate nothing: a config reset to its
 * defaults owns no memory. The vector copies it on its first change. */
static char default_listen_addr[] = "127.0.0.1:50051";
static char *default_listen_v[1] = {default_listen_addr};

/* ------------------------------------------------------------------------ */
/* Defaults                                                                  */

static int auto_workers(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > WORKERS_MAX) n = WORKERS_MAX;
  return (int)n;
}

void mw_config_init(mw_config *c) {
  memset(c, 0, sizeof *c);
  c->file = NULL;
  c->listen = mw_strvec_borrow(default_listen_v, 1);
  c->workers = auto_workers();
  c->services.v = NULL;
  c->proto_path.v = NULL;
  c->protos.v = NULL;
  c->protos.n = 0;
  c->tracing.sample = 1.0;
  c->client.deadline_margin_ms = 5;
  c->client.max_receive_bytes = 4 << 20;
  c->client.max_metadata_bytes = 16384;
  c->client.connect_timeout_ms = 20000;
  c->client.max_backoff_ms = 10000;
  c->client.max_channels = 64;
  c->client.retry = (mw_config_retry){0, 1, 100, 1000, 2.0, 1u << 14};
  c->client.budget_tokens = 10;
  c->client.budget_ratio = 0.1;
  c->tracing.batch = 512;
  c->tracing.flush_ms = 1000;
  c->tracing.queue = 4096;
  c->limits.max_receive_bytes = 4 << 20;
  c->limits.max_send_bytes = 4 << 20;
  c->limits.send_queue_bytes = 1 << 20;
  c->limits.send_queue_messages = 64;
  c->limits.handler_cpu_ms = 10000;
  c->limits.handler_slice_ms = 5;
  c->limits.lua_memory_mb = 256;
  c->limits.max_concurrent_streams = 100;
  c->limits.max_header_list_size = 16384;
  c->limits.max_inflight_calls = 0;
  c->limits.max_rss_mb = 0;
  c->methods = NULL;
  c->n_methods = 0;
  c->keepalive.time_ms = 60000;
  c->keepalive.timeout_ms = 20000;
  c->keepalive.min_client_ping_ms = 300000;
  c->keepalive.max_ping_strikes = 2;
  c->keepalive.max_connection_idle_ms = 300000;
  c->keepalive.max_connection_age_ms = 1800000;
  c->keepalive.max_connection_age_grace_ms = 60000;
  c->transport.bdp_probe = 0;
  c->transport.stream_window = 65536;
  c->transport.max_frame_size = 16384;
  c->transport.handshake_timeout_ms = 10000;
  c->transport.memory_mb = 1024;
  c->reload.watch = 1;
  c->reload.debounce_ms = 200;
  c->log.level = MW_LOG_INFO;
  c->log.json = 0;
  c->shutdown_grace_ms = 10000;
  c->shutdown_drain_delay_ms = 0;
  c->health = 1;
  c->reflection = 1;
  c->console = 1;
  c->admin.max_connections = 64;
  c->admin.timeout_ms = 10000;
  c->http.max_connections = 1024;
  c->http.timeout_ms = 30000;
  c->http.sse_keepalive_ms = 15000;
  c->metrics.max_series = 1000;
  c->compression.algorithm = MW_CONFIG_COMPRESS_NONE;
  c->compression.min_bytes = 1024;
}

static void value_free(mw_config_value *v) {
  for (size_t i = 0; i < v->n; i++) {
    if (v->keys) free(v->keys[i]);
    value_free(&v->items[i]);
  }
  free(v->keys);
  free(v->items);
  free(v->s);
  *v = (mw_config_value){0};
}

static void interceptors_free(mw_config_interceptors *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].name);
    free(l->v[i].where);
    value_free(&l->v[i].opts);
  }
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

/* An http.rules entry's strings and bindings (not the entry itself), and
 * an owned array of entries. */
static void http_rules_free(mw_config_http_rule *r, size_t n);
static void http_rule_clear(mw_config_http_rule *r) {
  free(r->selector);
  free(r->method);
  free(r->path);
  free(r->body);
  free(r->response_body);
  http_rules_free(r->additional, r->n_additional);
  *r = (mw_config_http_rule){0};
}

static void http_rules_free(mw_config_http_rule *r, size_t n) {
  for (size_t i = 0; i < n; i++) http_rule_clear(&r[i]);
  free(r);
}

void mw_config_free(mw_config *c) {
  if (!c) return;
  free(c->file);
  mw_strvec_free(&c->listen);
  mw_strvec_free(&c->services);
  mw_strvec_free(&c->proto_path);
  mw_strvec_free(&c->protos);
  free(c->tls.cert);
  free(c->tls.key);
  free(c->tls.client_ca);
  free(c->admin.listen);
  c->admin.listen = NULL;
  free(c->http.listen);
  c->http.listen = NULL;
  mw_strvec_free(&c->http.cors_origins);
  mw_strvec_free(&c->http.cors_headers);
  mw_strvec_free(&c->http.cors_expose);
  free(c->http.tls_cert);
  free(c->http.tls_key);
  free(c->http.tls_client_ca);
  c->http.tls_cert = c->http.tls_key = c->http.tls_client_ca = NULL;
  free(c->upstream);
  c->upstream = NULL;
  free(c->upstream_tls.ca);
  free(c->upstream_tls.cert);
  free(c->upstream_tls.key);
  free(c->upstream_tls.server_name);
  memset(&c->upstream_tls, 0, sizeof c->upstream_tls);
  free(c->record);
  c->record = NULL;
  for (size_t i = 0; i < c->n_methods; i++) {
    free(c->methods[i].path);
    interceptors_free(&c->methods[i].interceptors);
    free(c->methods[i].deadline_where);
    value_free(&c->methods[i].idempotency);
    free(c->methods[i].idempotency_where);
  }
  free(c->methods);
  interceptors_free(&c->interceptors);
  http_rules_free(c->http_rules, c->n_http_rules);
  c->http_rules = NULL;
  c->n_http_rules = 0;
  for (size_t i = 0; i < c->compression.n_methods; i++)
    free(c->compression.methods[i].path);
  free(c->compression.methods);
  mw_strvec_free(&c->client.allow);
  mw_strvec_free(&c->client.propagate);
  for (size_t i = 0; i < c->client.n_methods; i++) free(c->client.methods[i].path);
  free(c->client.methods);
  c->client.methods = NULL;
  c->client.n_methods = 0;
  for (size_t i = 0; i < c->shared.n; i++) {
    free(c->shared.v[i].name);
    free(c->shared.v[i].redis);
    free(c->shared.v[i].prefix);
  }
  free(c->shared.v);
  c->shared.v = NULL;
  c->shared.n = 0;
  for (size_t i = 0; i < c->sessions.n; i++) {
    free(c->sessions.v[i].name);
    free(c->sessions.v[i].message);
    free(c->sessions.v[i].offset_field);
    free(c->sessions.v[i].redis);
    free(c->sessions.v[i].prefix);
  }
  free(c->sessions.v);
  c->sessions.v = NULL;
  c->sessions.n = 0;
  free(c->tracing.otlp);
  free(c->tracing.service_name);
  mw_config_init(c);
}

/* ------------------------------------------------------------------------ */
/* Paths                                                                     */

/* The current directory, malloc'd; NULL on failure. */
static char *cwd_dup(void) {
  size_t cap = 256;
  for (;;) {
    char *buf = malloc(cap);
    if (!buf) return NULL;
    if (getcwd(buf, cap)) return buf;
    free(buf);
    if (errno != ERANGE || cap > (1u << 20)) return NULL;
    cap *= 2;
  }
}

/* The absolute, lexically normalized form of p against the current
 * directory. malloc'd; NULL on failure. */
static char *path_absolute(const char *p) {
  if (p[0] == '/') return mw_fs_join_norm("/", p);
  char *cwd = cwd_dup();
  if (!cwd) return NULL;
  char *r = mw_fs_join_norm(cwd, p);
  free(cwd);
  return r;
}

/* The directory part of an absolute normalized path. malloc'd. */
static char *path_dirname(const char *abs) {
  const char *slash = strrchr(abs, '/');
  size_t n = slash && slash != abs ? (size_t)(slash - abs) : 1;
  char *r = malloc(n + 1);
  if (!r) return NULL;
  memcpy(r, abs, n);
  r[n] = '\0';
  return r;
}

/* ------------------------------------------------------------------------ */
/* The YAML tree                                                             */

enum { N_SCALAR, N_SEQ, N_MAP, N_BAD };

typedef struct node {
  int type;
  int complete; /* a collection saw its end event (scalars always do) */
  int plain;    /* scalar: written without quotes or block indicators */
  size_t line, col; /* 1-based */
  char *s;          /* scalar text, NUL-terminated */
  size_t len;
  struct node **kid; /* mapping: key, value, key, value, ... */
  size_t n, cap;
} node;

static void node_free(node *n) {
  if (!n) return;
  for (size_t i = 0; i < n->n; i++) node_free(n->kid[i]);
  free(n->kid);
  free(n->s);
  free(n);
}

static int node_append(node *parent, node *child) {
  if (parent->n == parent->cap) {
    size_t cap = parent->cap ? parent->cap * 2 : 8;
    node **k = realloc(parent->kid, cap * sizeof *k);
    if (!k) return -1;
    parent->kid = k;
    parent->cap = cap;
  }
  parent->kid[parent->n++] = child;
  return 0;
}

static int is_null(const node *n) {
  if (n->type != N_SCALAR || !n->plain) return 0;
  return n->len == 0 || strcmp(n->s, "~") == 0 || strcmp(n->s, "null") == 0 ||
         strcmp(n->s, "Null") == 0 || strcmp(n->s, "NULL") == 0;
}

static const char *kind_name(const node *n) {
  switch (n->type) {
  case N_SEQ: return "a list";
  case N_MAP: return "a mapping";
  default: return is_null(n) ? "nothing (an empty value)" : "a scalar";
  }
}

/* ------------------------------------------------------------------------ */
/* Errors of one load, sorted by position before they reach the diag         */

typedef struct perr {
  size_t line, col, seq;
  char *msg;
} perr;

typedef struct ctx {
  mw_method_config *method; /* the `methods` entry being read */
  mw_config_retry *retry;   /* the retry policy being read */
  mw_config_client_method *cmethod; /* the client.methods entry being read */
  mw_config_shared *shdict; /* the shared entry being read */
  mw_config_session *session; /* the sessions entry being read */
  mw_config_http_rule *hrule; /* the http.rules entry (or binding) being read */
  int hrule_binding;          /* 1 while reading an additional_bindings entry */
  const char *name;
  const char *base_dir; /* absolute */
  perr *errs;
  size_t nerr, caperr;
  size_t lost; /* messages dropped for lack of memory */
} ctx;

__attribute__((format(printf, 4, 5))) static void err_at_pos(
    ctx *x, size_t line, size_t col, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *msg = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (!msg) {
    x->lost++;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(msg, (size_t)len + 1, fmt, ap);
  va_end(ap);
  if (x->nerr == x->caperr) {
    size_t cap = x->caperr ? x->caperr * 2 : 8;
    perr *e = realloc(x->errs, cap * sizeof *e);
    if (!e) {
      free(msg);
      x->lost++;
      return;
    }
    x->errs = e;
    x->caperr = cap;
  }
  x->errs[x->nerr] = (perr){line, col, x->nerr, msg};
  x->nerr++;
}

#define ERR(x, n, ...) err_at_pos((x), (n)->line, (n)->col, __VA_ARGS__)

static int perr_cmp(const void *a, const void *b) {
  const perr *p = a, *q = b;
  if (p->line != q->line) return p->line < q->line ? -1 : 1;
  if (p->col != q->col) return p->col < q->col ? -1 : 1;
  return p->seq < q->seq ? -1 : p->seq > q->seq;
}

/* Moves the errors to diag; returns how many there were. */
static size_t flush_errors(ctx *x, mw_diag *diag) {
  if (x->nerr > 1) qsort(x->errs, x->nerr, sizeof *x->errs, perr_cmp);
  for (size_t i = 0; i < x->nerr; i++) {
    mw_diag_add(diag, "%s:%zu:%zu: %s", x->name, x->errs[i].line,
                x->errs[i].col, x->errs[i].msg);
    free(x->errs[i].msg);
  }
  for (size_t i = 0; i < x->lost; i++)
    mw_diag_add(diag, "%s: out of memory while reading the config", x->name);
  size_t total = x->nerr + x->lost;
  free(x->errs);
  x->errs = NULL;
  x->nerr = x->caperr = x->lost = 0;
  return total;
}

/* A printable excerpt of a scalar for messages: at most 60 bytes, control
 * characters and quotes replaced. */
typedef struct {
  char s[72];
} excerpt;

static excerpt ex(const char *s, size_t len) {
  excerpt e;
  size_t o = 0, i = 0;
  for (; i < len && o < 60; i++) {
    unsigned char ch = (unsigned char)s[i];
    e.s[o++] = (ch < 0x20 || ch == 0x7f || ch == '\'') ? '?' : (char)ch;
  }
  if (i < len) {
    memcpy(e.s + o, "...", 3);
    o += 3;
  }
  e.s[o] = '\0';
  return e;
}

#define EX(n) (ex((n)->s, (n)->len).s)

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */

/* 1-based line and column of a byte offset, for reader errors. */
static void offset_pos(const unsigned char *buf, size_t len, size_t off,
                       size_t *line, size_t *col) {
  size_t l = 1, c = 1;
  if (off > len) off = len;
  for (size_t i = 0; i < off; i++) {
    if (buf[i] == '\n') {
      l++;
      c = 1;
    } else if ((buf[i] & 0xC0) != 0x80) {
      c++;
    }
  }
  *line = l;
  *col = c;
}

/* The byte at a 1-based line and column (columns count characters), or -1
 * when there is none. */
static int byte_at(const unsigned char *buf, size_t len, size_t line,
                   size_t col) {
  size_t i = 0;
  for (size_t l = 1; l < line; l++) {
    const unsigned char *nl = memchr(buf + i, '\n', len - i);
    if (!nl) return -1;
    i = (size_t)(nl - buf) + 1;
  }
  for (size_t c = 1; i < len; i++) {
    if ((buf[i] & 0xC0) == 0x80) continue;
    if (c++ == col) return buf[i];
    if (buf[i] == '\n') break;
  }
  return -1;
}

static void syntax_error(ctx *x, yaml_parser_t *p, const unsigned char *buf,
                         size_t len) {
  const char *problem = p->problem ? p->problem : "unknown error";
  switch (p->error) {
  case YAML_MEMORY_ERROR:
    err_at_pos(x, 1, 1, "out of memory while parsing YAML");
    return;
  case YAML_READER_ERROR: {
    size_t line, col;
    offset_pos(buf, len, p->problem_offset, &line, &col);
    err_at_pos(x, line, col, "invalid input: %s", problem);
    return;
  }
  default:
    break;
  }
  size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;
  const char *hint = byte_at(buf, len, line, col) == '\t'
                         ? "; tabs cannot indent YAML, use spaces"
                         : "";
  if (p->context)
    err_at_pos(x, line, col,
               "YAML syntax error: %s (%s at line %zu, column %zu)%s", problem,
               p->context, p->context_mark.line + 1,
               p->context_mark.column + 1, hint);
  else
    err_at_pos(x, line, col, "YAML syntax error: %s%s", problem, hint);
}

/* Builds the tree of the (single) document. Returns the root, or NULL when
 * the stream holds no document or nothing could be read. When the parse
 * stops on an error the tree holds what came before it; collections that
 * never saw their end event are marked incomplete. */
static node *parse_tree(ctx *x, const unsigned char *buf, size_t len) {
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) {
    err_at_pos(x, 1, 1, "out of memory while parsing YAML");
    return NULL;
  }
  yaml_parser_set_input_string(&p, buf, len);

  node *root = NULL;
  node *stack[MAX_DEPTH];
  int depth = 0, docs = 0, done = 0;

  while (!done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      syntax_error(x, &p, buf, len);
      break;
    }
    size_t line = ev.start_mark.line + 1, col = ev.start_mark.column + 1;
    const yaml_char_t *anchor = NULL, *tag = NULL;
    int type = -1;
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = 1;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (docs++ > 0) {
        err_at_pos(x, line, col,
                   "only one YAML document is allowed in a config file");
        done = 1;
      }
      break;
    case YAML_ALIAS_EVENT:
      err_at_pos(x, line, col,
                 "aliases (*%s) are not supported in config files; write "
                 "the value out",
                 (const char *)ev.data.alias.anchor);
      type = N_BAD;
      break;
    case YAML_SCALAR_EVENT:
      anchor = ev.data.scalar.anchor;
      tag = ev.data.scalar.tag;
      type = N_SCALAR;
      break;
    case YAML_SEQUENCE_START_EVENT:
      anchor = ev.data.sequence_start.anchor;
      tag = ev.data.sequence_start.tag;
      type = N_SEQ;
      break;
    case YAML_MAPPING_START_EVENT:
      anchor = ev.data.mapping_start.anchor;
      tag = ev.data.mapping_start.tag;
      type = N_MAP;
      break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      if (depth > 0) stack[--depth]->complete = 1;
      break;
    default:
      break;
    }
    if (type >= 0) {
      if (anchor)
        err_at_pos(x, line, col,
                   "anchors (&%s) are not supported in config files",
                   (const char *)anchor);
      if (tag)
        err_at_pos(x, line, col,
                   "YAML tags (%s) are not supported in config files",
                   (const char *)tag);
      node *nd = calloc(1, sizeof *nd);
      if (nd) {
        nd->type = type;
        nd->line = line;
        nd->col = col;
        nd->complete = type == N_SCALAR || type == N_BAD;
        if (type == N_SCALAR) {
          nd->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
          nd->len = ev.data.scalar.length;
          nd->s = malloc(nd->len + 1);
          if (nd->s) {
            memcpy(nd->s, ev.data.scalar.value, nd->len);
            nd->s[nd->len] = '\0';
          }
        }
      }
      if (!nd || (type == N_SCALAR && !nd->s) ||
          (depth > 0 && node_append(stack[depth - 1], nd) != 0)) {
        node_free(nd);
        err_at_pos(x, line, col, "out of memory while parsing YAML");
        done = 1;
      } else {
        if (depth == 0) {
          node_free(root); /* cannot happen: one root per document */
          root = nd;
        }
        if (type == N_SEQ || type == N_MAP) {
          if (depth == MAX_DEPTH) {
            err_at_pos(x, line, col, "the YAML is nested too deeply");
            done = 1;
          } else {
            stack[depth++] = nd;
          }
        }
      }
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&p);
  return root;
}

/* ------------------------------------------------------------------------ */
/* Key suggestions                                                           */

static int lower(int ch) {
  return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* Optimal string alignment distance, case-insensitive; capped inputs. */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return (size_t)-1;
  size_t d[64][64];
  for (size_t i = 0; i <= la; i++) d[i][0] = i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = j;
  for (size_t i = 1; i <= la; i++) {
    for (size_t j = 1; j <= lb; j++) {
      size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      size_t v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
          lower(a[i - 2]) == lower(b[j - 1]) && d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  }
  return d[la][lb];
}

/* The closest candidate when it is a near miss, else NULL. */
static const char *suggest(const char *key, const char *const *cands) {
  size_t kl = strlen(key);
  size_t limit = kl >= 5 ? 2 : 1;
  const char *best = NULL;
  size_t bestd = (size_t)-1;
  for (size_t i = 0; cands[i]; i++) {
    size_t d = edit_distance(key, cands[i]);
    /* "timeout" for "timeout_ms", "debounce" for "debounce_ms" */
    size_t cl = strlen(cands[i]);
    if (d > limit && kl >= 4 && cl > kl && strncmp(cands[i], key, kl) == 0)
      d = limit;
    if (d <= limit && d < bestd) {
      best = cands[i];
      bestd = d;
    }
  }
  return best;
}

/* ------------------------------------------------------------------------ */
/* Scalars                                                                   */

enum { NUM_OK = 0, NUM_BAD = -1, NUM_NEG = -2, NUM_BIG = -3 };

/* Decimal digits s[*i..] into *out; advances *i. */
static int digits(const char *s, size_t len, size_t *i, uint64_t *out) {
  size_t start = *i;
  uint64_t v = 0;
  int big = 0;
  while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
    unsigned dgt = (unsigned)(s[*i] - '0');
    if (v > (UINT64_MAX - dgt) / 10) big = 1;
    else v = v * 10 + dgt;
    (*i)++;
  }
  if (*i == start) return NUM_BAD;
  *out = v;
  return big ? NUM_BIG : NUM_OK;
}

/* A negative number ("-5", "-5s", "-1MiB") gets its own message. */
static int looks_negative(const char *s, size_t len) {
  return len >= 2 && s[0] == '-' && s[1] >= '0' && s[1] <= '9';
}

/* A plain non-negative decimal integer ("+" allowed). */
static int parse_int(const char *s, size_t len, uint64_t *out) {
  size_t i = 0;
  if (looks_negative(s, len)) return NUM_NEG;
  if (len > 0 && s[0] == '+') i++;
  int r = digits(s, len, &i, out);
  if (r == NUM_BAD || i != len) return NUM_BAD;
  return r;
}

static int mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
  if (b != 0 && a > UINT64_MAX / b) return 0;
  *out = a * b;
  return 1;
}

/* An integer with an optional unit: B, KB, MB, GB (powers of 1000),
 * KiB, MiB, GiB (powers of 1024); case-insensitive; spaces allowed before
 * the unit. */
static int parse_size(const char *s, size_t len, uint64_t *out) {
  if (looks_negative(s, len)) return NUM_NEG;
  size_t i = 0;
  uint64_t v;
  if (len > 0 && s[0] == '+') i++;
  int r = digits(s, len, &i, &v);
  if (r == NUM_BAD) return r;
  while (i < len && s[i] == ' ') i++;
  static const struct {
    const char *unit;
    uint64_t mult;
  } units[] = {{"", 1},
               {"b", 1},
               {"kb", 1000},
               {"mb", 1000000},
               {"gb", 1000000000},
               {"kib", 1024},
               {"mib", 1024 * 1024},
               {"gib", 1024 * 1024 * 1024}};
  size_t ul = len - i;
  for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
    if (strlen(units[u].unit) != ul) continue;
    size_t k = 0;
    while (k < ul && lower(s[i + k]) == units[u].unit[k]) k++;
    if (k != ul) continue;
    if (ul == 0 && i != len) continue;
    if (r == NUM_BIG || !mul_ok(v, units[u].mult, out)) return NUM_BIG;
    return NUM_OK;
  }
  return NUM_BAD;
}

/* Milliseconds: an integer, or one or more NUMBER UNIT parts with the units
 * h, m, s, ms, in any order ("1h30m", "1m30s", "1s500ms"). */
static int parse_duration(const char *s, size_t len, uint64_t *out) {
  if (looks_negative(s, len)) return NUM_NEG;
  size_t i = 0;
  if (len > 0 && s[0] == '+') i++;
  uint64_t v;
  int r = digits(s, len, &i, &v);
  if (r == NUM_BAD) return r;
  if (i == len) {
    *out = v;
    return r;
  }
  uint64_t total = 0;
  int big = 0;
  for (;;) {
    uint64_t mult;
    if (i + 1 < len && s[i] == 'm' && s[i + 1] == 's') {
      mult = 1;
      i += 2;
    } else if (i < len && s[i] == 's') {
      mult = 1000;
      i++;
    } else if (i < len && s[i] == 'm') {
      mult = 60000;
      i++;
    } else if (i < len && s[i] == 'h') {
      mult = 3600000;
      i++;
    } else {
      return NUM_BAD;
    }
    uint64_t part;
    if (r == NUM_BIG || !mul_ok(v, mult, &part) || total + part < total)
      big = 1;
    else
      total += part;
    if (i == len) break;
    r = digits(s, len, &i, &v);
    if (r == NUM_BAD) return r;
  }
  if (big) return NUM_BIG;
  *out = total;
  return NUM_OK;
}

/* Booleans as YAML 1.1 spells them, in any case. */
static int parse_bool(const char *s, int *out) {
  static const char *const t[] = {"true", "yes", "on"};
  static const char *const f[] = {"false", "no", "off"};
  for (int i = 0; i < 3; i++) {
    if (strcasecmp(s, t[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcasecmp(s, f[i]) == 0) {
      *out = 0;
      return 0;
    }
  }
  return -1;
}

/* A scalar that is not null and holds no NUL byte; otherwise reports. */
static int want_scalar(ctx *x, const node *v, const char *key,
                       const char *what) {
  if (v->type == N_BAD) return -1; /* reported already */
  if (v->type != N_SCALAR || is_null(v)) {
    ERR(x, v, "%s: expected %s, got %s", key, what, kind_name(v));
    return -1;
  }
  if (strlen(v->s) != v->len) {
    ERR(x, v, "%s: the value contains a NUL character", key);
    return -1;
  }
  return 0;
}

enum { K_INT, K_SIZE, K_DURATION };

static const char *const kind_what[] = {
    "a non-negative integer",
    "a size in bytes (an integer, or with a unit: 512KiB, 4MiB, 1GiB, 4MB)",
    ("a duration in milliseconds (an integer, or with a unit: 250ms, 20s, "
     "5m, 1h)"),
};

static int number_value(ctx *x, const node *v, const char *key, int kind,
                        int64_t min, int64_t max, int64_t *out) {
  if (want_scalar(x, v, key, kind_what[kind]) != 0) return -1;
  uint64_t u = 0;
  int r = kind == K_SIZE       ? parse_size(v->s, v->len, &u)
          : kind == K_DURATION ? parse_duration(v->s, v->len, &u)
                               : parse_int(v->s, v->len, &u);
  if (r == NUM_BAD) {
    ERR(x, v, "%s: expected %s, got '%s'", key, kind_what[kind], EX(v));
    return -1;
  }
  if (r == NUM_NEG) {
    ERR(x, v, "%s: must not be negative, got '%s'", key, EX(v));
    return -1;
  }
  if (r == NUM_BIG || u > (uint64_t)max) {
    ERR(x, v, "%s: '%s' is too large (at most %lld%s)", key, EX(v),
        (long long)max,
        kind == K_SIZE ? " bytes" : kind == K_DURATION ? " ms" : "");
    return -1;
  }
  if ((int64_t)u < min) {
    ERR(x, v, "%s: must be at least %lld, got '%s'", key, (long long)min,
        EX(v));
    return -1;
  }
  *out = (int64_t)u;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                      */

static const char *const top_keys[] = {
    "listen", "workers",   "services", "proto_path",        "limits",
    "keepalive", "reload", "log",      "shutdown_grace_ms", "protos",
    "shutdown", "health", "reflection", "tls", "methods", "transport", "lua",
    "compression", "interceptors", "tracing", "admin", "metrics", "client", "shared", "sessions",
    "http", "upstream", "console", NULL};

typedef struct numfield {
  const char *key;
  int kind;
  int64_t min, max;
  size_t off;
} numfield;

#define LIM(f) offsetof(mw_config, limits.f)
#define KA(f) offsetof(mw_config, keepalive.f)
#define TR(f) offsetof(mw_config, transport.f)

static const numfield limit_fields[] = {
    {"max_receive_bytes", K_SIZE, 1, INT32_MAX, LIM(max_receive_bytes)},
    {"max_send_bytes", K_SIZE, 1, INT32_MAX, LIM(max_send_bytes)},
    {"send_queue_bytes", K_SIZE, 1, INT32_MAX, LIM(send_queue_bytes)},
    {"send_queue_messages", K_INT, 1, INT32_MAX, LIM(send_queue_messages)},
    {"handler_cpu_ms", K_DURATION, 0, INT32_MAX, LIM(handler_cpu_ms)},
    {"handler_slice_ms", K_DURATION, 0, INT32_MAX, LIM(handler_slice_ms)},
    {"lua_memory_mb", K_INT, 0, 1048576, LIM(lua_memory_mb)},
    {"max_concurrent_streams", K_INT, 1, INT32_MAX,
     LIM(max_concurrent_streams)},
    {"max_header_list_size", K_SIZE, 1, INT32_MAX, LIM(max_header_list_size)},
    {"max_inflight_calls", K_INT, 0, INT32_MAX, LIM(max_inflight_calls)},
    {"max_rss_mb", K_INT, 0, 1048576, LIM(max_rss_mb)},
    {NULL, 0, 0, 0, 0},
};

static const numfield keepalive_fields[] = {
    {"time_ms", K_DURATION, 1, INT32_MAX, KA(time_ms)},
    {"timeout_ms", K_DURATION, 1, INT32_MAX, KA(timeout_ms)},
    {"min_client_ping_ms", K_DURATION, 0, INT32_MAX, KA(min_client_ping_ms)},
    {"max_ping_strikes", K_INT, 0, INT32_MAX, KA(max_ping_strikes)},
    {"max_connection_idle_ms", K_DURATION, 0, INT32_MAX,
     KA(max_connection_idle_ms)},
    {"max_connection_age_ms", K_DURATION, 0, INT32_MAX,
     KA(max_connection_age_ms)},
    {"max_connection_age_grace_ms", K_DURATION, 0, INT32_MAX,
     KA(max_connection_age_grace_ms)},
    {NULL, 0, 0, 0, 0},
};

/* transport: bdp_probe (a boolean) first, then these, in key order. */
static const numfield transport_fields[] = {
    {"stream_window", K_SIZE, 1024, INT32_MAX, TR(stream_window)},
    {"max_frame_size", K_SIZE, 16384, 16777215, TR(max_frame_size)},
    {"handshake_timeout_ms", K_DURATION, 1, INT32_MAX, TR(handshake_timeout_ms)},
    {"memory_mb", K_INT, 0, 1048576, TR(memory_mb)},
    {NULL, 0, 0, 0, 0},
};
static const char *const transport_keys[] = {"bdp_probe", "stream_window", "max_frame_size",
                                             "handshake_timeout_ms", "memory_mb", NULL};

static const char *const limit_keys[] = {
    "max_receive_bytes", "max_send_bytes", "send_queue_bytes",
    "send_queue_messages", "handler_cpu_ms", "handler_slice_ms", "lua_memory_mb",
    "max_concurrent_streams", "max_header_list_size", "max_inflight_calls", "max_rss_mb", NULL};
static const char *const keepalive_keys[] = {
    "time_ms", "timeout_ms", "min_client_ping_ms", "max_ping_strikes",
    "max_connection_idle_ms", "max_connection_age_ms",
    "max_connection_age_grace_ms", NULL};
static const char *const reload_keys[] = {"watch", "debounce_ms", NULL};
static const char *const log_keys[] = {"level", "format", NULL};
static const char *const shutdown_keys[] = {"grace", "drain_delay", NULL};
static const char *const tls_keys[] = {"cert", "key", "client_ca",
                                       "require_client_cert", NULL};
static const char *const lua_keys[] = {"unsafe", NULL};
static const char *const upstream_keys[] = {"address", "tls", NULL};
static const char *const upstream_tls_keys[] = {"ca", "cert", "key", "server_name", NULL};
static const char *const admin_keys[] = {"listen", "max_connections", "timeout", NULL};
static const char *const metrics_keys[] = {"max_series", NULL};
static const char *const http_keys[] = {"listen", "max_connections", "timeout", "cors", "tls",
                                        "rules", "sse_keepalive", "sse_retry", NULL};
static const char *const http_tls_keys[] = {"cert", "key", "client_ca", "require_client_cert",
                                            NULL};
static const char *const http_cors_keys[] = {"origins", "headers", "expose", NULL};
static const char *const http_rule_keys[] = {"selector", "get", "put", "post", "delete", "patch",
                                             "custom", "body", "response_body",
                                             "additional_bindings", NULL};
static const char *const http_custom_keys[] = {"kind", "path", NULL};
static const char *const client_keys[] = {
    "allow", "propagate", "deadline_margin", "max_receive_bytes", "max_metadata_bytes",
    "keepalive", "connect_timeout", "max_backoff", "max_channels", "retry", "retry_budget",
    "methods", NULL};
static const char *const retry_keys[] = {"max_attempts", "initial_backoff", "max_backoff",
                                         "multiplier", "codes", NULL};
static const char *const budget_keys[] = {"tokens", "ratio", NULL};
static const char *const client_method_keys[] = {"idempotent", "timeout", "retry", NULL};
static const char *const shared_dict_keys[] = {"size", "redis", "prefix", "timeout", NULL};
static const char *const session_keys[] = {"message", "offset_field", "history", "buffer",
                                           "policy", "redis", "prefix", "timeout", NULL};
static const char *const session_history_keys[] = {"size", "ttl", NULL};
static const char *const compression_keys[] = {"algorithm", "min_bytes",
                                               "methods", NULL};
static const char *const tracing_keys[] = {"otlp", "sample", "service_name", "batch",
                                           "flush_ms", "queue", NULL};
/* What one method of compression.methods may set. */
static const char *const compress_method_keys[] = {"algorithm", "min_bytes",
                                                   NULL};

static const struct {
  const char *name;
  const char *const *keys;
} sections[] = {{"limits", limit_keys},
                {"keepalive", keepalive_keys},
                {"reload", reload_keys},
                {"log", log_keys},
                {"shutdown", shutdown_keys},
                {"transport", transport_keys},
                {"tls", tls_keys},
                {"lua", lua_keys},
                {"compression", compression_keys},
                {"tracing", tracing_keys},
                {"admin", admin_keys},
                {"http", http_keys},
                {"metrics", metrics_keys},
                {"client", client_keys}};

static void key_list(char *buf, size_t cap, const char *const *keys) {
  size_t o = 0;
  buf[0] = '\0';
  for (size_t i = 0; keys[i] && o < cap; i++) {
    int w = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", keys[i]);
    if (w < 0) break;
    o += (size_t)w;
  }
}

static void unknown_key(ctx *x, const node *k, const char *section,
                        const char *const *keys) {
  const char *near = suggest(k->s, keys);
  char where[64] = "";
  if (section) snprintf(where, sizeof where, " in '%s'", section);
  if (near) {
    ERR(x, k, "unknown key '%s'%s (did you mean '%s'?)", EX(k), where, near);
    return;
  }
  if (!section) { /* a section's key written at the top level? */
    for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++) {
      for (size_t i = 0; sections[s].keys[i]; i++) {
        if (strcmp(sections[s].keys[i], k->s) == 0) {
          ERR(x, k, "unknown key '%s' (did you mean '%s.%s'? it belongs "
                    "under '%s:')",
              EX(k), sections[s].name, k->s, sections[s].name);
          return;
        }
      }
    }
  } else {
    for (size_t i = 0; top_keys[i]; i++) {
      if (strcmp(top_keys[i], k->s) == 0) {
        ERR(x, k, "unknown key '%s'%s ('%s' is a top-level key)", EX(k),
            where, k->s);
        return;
      }
    }
  }
  char list[512];
  key_list(list, sizeof list, keys);
  ERR(x, k, "unknown key '%s'%s (valid keys: %s)", EX(k), where, list);
}

/* Walks the pairs of a mapping: checks that each key is a known string that
 * appears once, then calls fn with its index in keys (at most 16 keys). A key
 * whose value a syntax error cut off is skipped. */
typedef void (*pair_fn)(ctx *x, mw_config *c, int idx, const node *k,
                        const node *v);

/* Keys a section may have (the top level has the most). */
#define MW_MAX_KEYS 32
_Static_assert(sizeof top_keys / sizeof top_keys[0] <= MW_MAX_KEYS + 1,
               "walk_map would not see every top-level key");

static void walk_map(ctx *x, mw_config *c, const node *m, const char *section,
                     const char *const *keys, pair_fn fn) {
  const node *seen[MW_MAX_KEYS] = {NULL}; /* the first node of each known key */
  for (size_t i = 0; i + 1 < m->n; i += 2) {
    const node *k = m->kid[i], *v = m->kid[i + 1];
    if (k->type == N_BAD) continue;
    if (k->type != N_SCALAR) {
      ERR(x, k, "keys must be plain strings, not %s", kind_name(k));
      continue;
    }
    int idx = -1;
    for (int j = 0; keys[j] && j < MW_MAX_KEYS; j++)
      if (strlen(keys[j]) == k->len && strcmp(keys[j], k->s) == 0) idx = j;
    if (idx < 0) {
      unknown_key(x, k, section, keys);
      continue;
    }
    if (seen[idx]) {
      ERR(x, k, "duplicate key '%s'%s%s%s (first set at line %zu, column %zu)",
          EX(k), section ? " in '" : "", section ? section : "",
          section ? "'" : "", seen[idx]->line, seen[idx]->col);
      continue;
    }
    seen[idx] = k;
    /* A list cut short by a syntax error is not used; a mapping cut short
     * still has its complete pairs checked. */
    if (!v->complete && v->type != N_MAP) continue;
    fn(x, c, idx, k, v);
  }
}

/* A section's value: a mapping, or nothing at all (an empty section). */
static int want_section(ctx *x, const node *v, const char *name) {
  if (v->type == N_BAD || is_null(v)) return -1;
  if (v->type != N_MAP) {
    ERR(x, v, "%s: expected a mapping (indented 'key: value' lines), got %s",
        name, kind_name(v));
    return -1;
  }
  return 0;
}

static void numeric_pair(ctx *x, mw_config *c, const numfield *f,
                         const char *section, const node *v) {
  char key[96];
  snprintf(key, sizeof key, "%s.%s", section, f->key);
  int64_t val;
  if (number_value(x, v, key, f->kind, f->min, f->max, &val) == 0)
    *(int64_t *)(void *)((char *)c + f->off) = val;
}

static void limits_pair(ctx *x, mw_config *c, int idx, const node *k,
                        const node *v) {
  numeric_pair(x, c, &limit_fields[idx], "limits", v);
}

static void keepalive_pair(ctx *x, mw_config *c, int idx, const node *k,
                           const node *v) {
  numeric_pair(x, c, &keepalive_fields[idx], "keepalive", v);
}

/* A boolean key (name as messages show it); *out is left alone on error. */
static void bool_value(ctx *x, const node *v, const char *name, int *out) {
  const char *what = "a boolean (true/false, yes/no, on/off)";
  if (want_scalar(x, v, name, what) != 0) return;
  int b;
  if (parse_bool(v->s, &b) != 0) {
    ERR(x, v, "%s: expected %s, got '%s'", name, what, EX(v));
    return;
  }
  *out = b;
}

static void transport_pair(ctx *x, mw_config *c, int idx, const node *k,
                           const node *v) {
  if (idx == 0) bool_value(x, v, "transport.bdp_probe", &c->transport.bdp_probe);
  else numeric_pair(x, c, &transport_fields[idx - 1], "transport", v);
}

static void reload_pair(ctx *x, mw_config *c, int idx, const node *k,
                        const node *v) {
  if (idx == 0) {
    bool_value(x, v, "reload.watch", &c->reload.watch);
  } else {
    int64_t val;
    if (number_value(x, v, "reload.debounce_ms", K_DURATION, 0, INT32_MAX,
                     &val) == 0)
      c->reload.debounce_ms = val;
  }
}

static void shutdown_pair(ctx *x, mw_config *c, int idx, const node *k,
                          const node *v) {
  int64_t val;
  const char *name = idx == 0 ? "shutdown.grace" : "shutdown.drain_delay";
  if (number_value(x, v, name, K_DURATION, 0, INT32_MAX, &val) != 0) return;
  if (idx == 0) c->shutdown_grace_ms = val;
  else c->shutdown_drain_delay_ms = val;
}


static void log_pair(ctx *x, mw_config *c, int idx, const node *k,
                     const node *v) {
  if (idx == 0) {
    const char *what = "one of debug, info, warn, error";
    if (want_scalar(x, v, "log.level", what) != 0) return;
    int lvl = mw_log_level_parse(v->s);
    if (lvl < 0) {
      ERR(x, v, "log.level: expected %s, got '%s'", what, EX(v));
      return;
    }
    c->log.level = lvl;
  } else {
    const char *what = "text or json";
    if (want_scalar(x, v, "log.format", what) != 0) return;
    if (strcmp(v->s, "text") == 0) {
      c->log.json = 0;
    } else if (strcmp(v->s, "json") == 0) {
      c->log.json = 1;
    } else {
      ERR(x, v, "log.format: expected %s, got '%s'", what, EX(v));
    }
  }
}

/* A HOST:PORT scalar into *dst (replacing what it held). */
static void address_value(ctx *x, const node *v, const char *key, char **dst) {
  if (want_scalar(x, v, key, "a HOST:PORT address") != 0) return;
  const char *problem = mw_config_check_address(v->s);
  if (problem) {
    ERR(x, v, "%s: invalid address '%s': %s", key, EX(v), problem);
    return;
  }
  char *dup = strdup(v->s);
  if (!dup) {
    ERR(x, v, "%s: out of memory", key);
    return;
  }
  free(*dst);
  *dst = dup;
}

static void tls_path(ctx *x, const node *v, const char *key, char **dst);

const char *mw_config_upstream_address(const char *s, int *tls) {
  if (strncmp(s, "https://", 8) == 0) {
    *tls = 1;
    return s + 8;
  }
  if (strncmp(s, "http://", 7) == 0) {
    *tls = 0;
    return s + 7;
  }
  return s;
}

static void upstream_address(ctx *x, mw_config *c, const node *v, const char *key) {
  if (want_scalar(x, v, key, "a HOST:PORT address or an https://HOST:PORT URL") != 0) return;
  int tls = c->upstream_tls.tls;
  const char *addr = mw_config_upstream_address(v->s, &tls);
  const char *problem = mw_config_check_address(addr);
  if (problem) {
    ERR(x, v, "%s: invalid address '%s': %s", key, EX(v), problem);
    return;
  }
  char *dup = strdup(addr);
  if (!dup) {
    ERR(x, v, "%s: out of memory", key);
    return;
  }
  free(c->upstream);
  c->upstream = dup;
  c->upstream_tls.tls = tls;
}

static void upstream_tls_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  (void)k;
  switch (idx) {
  case 0: tls_path(x, v, "upstream.tls.ca", &c->upstream_tls.ca); return;
  case 1: tls_path(x, v, "upstream.tls.cert", &c->upstream_tls.cert); return;
  case 2: tls_path(x, v, "upstream.tls.key", &c->upstream_tls.key); return;
  default:
    if (want_scalar(x, v, "upstream.tls.server_name", "a host name") != 0) return;
    free(c->upstream_tls.server_name);
    c->upstream_tls.server_name = strdup(v->s);
    if (!c->upstream_tls.server_name) ERR(x, v, "upstream.tls.server_name: out of memory");
    return;
  }
}

static void upstream_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  (void)k;
  if (idx == 0) {
    upstream_address(x, c, v, "upstream.address");
    return;
  }
  /* tls: true (the system's roots), false, or the files' mapping */
  if (v->type == N_MAP) {
    c->upstream_tls.tls = 1;
    walk_map(x, c, v, "upstream.tls", upstream_tls_keys, upstream_tls_pair);
    if (!c->upstream_tls.cert != !c->upstream_tls.key)
      ERR(x, v, "upstream.tls: cert and key go together (a client certificate and its key)");
    return;
  }
  bool_value(x, v, "upstream.tls", &c->upstream_tls.tls);
}

/* upstream: HOST:PORT, https://HOST:PORT, or {address:, tls:}. */
static void upstream_value(ctx *x, mw_config *c, const node *v) {
  if (v->type != N_MAP) {
    upstream_address(x, c, v, "upstream");
    return;
  }
  walk_map(x, c, v, "upstream", upstream_keys, upstream_pair);
  if (!c->upstream) ERR(x, v, "upstream: needs an address (HOST:PORT)");
}

static void lua_pair(ctx *x, mw_config *c, int idx, const node *k,
                     const node *v) {
  (void)idx;
  bool_value(x, v, "lua.unsafe", &c->lua.unsafe);
}

static void admin_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  int64_t val;
  switch (idx) {
  case 0: /* listen */
    address_value(x, v, "admin.listen", &c->admin.listen);
    return;
  case 1:
    if (number_value(x, v, "admin.max_connections", K_INT, 1, 100000, &val) == 0)
      c->admin.max_connections = val;
    return;
  case 2:
    if (number_value(x, v, "admin.timeout", K_DURATION, 1, INT32_MAX, &val) == 0)
      c->admin.timeout_ms = val;
    return;
  }
}

static void metrics_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  int64_t val;
  (void)idx;
  if (number_value(x, v, "metrics.max_series", K_INT, 1, 1000000, &val) == 0)
    c->metrics.max_series = val;
}

/* "host:port", "[v6]:port"; returns NULL when valid, else the problem. */
const char *mw_config_check_address(const char *s) {
  const char *colon;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close) return "missing ']' after the IPv6 address";
    if (close == s + 1) return "empty IPv6 address in brackets";
    const char *zone = memchr(s, '%', (size_t)(close - s));
    const char *end = zone ? zone : close;
    if (!memchr(s + 1, ':', (size_t)(end - s - 1)))
      return "not an IPv6 address in brackets";
    for (const char *p = s + 1; p < end; p++)
      if (!strchr("0123456789abcdefABCDEF:.", *p))
        return "invalid character in the IPv6 address";
    if (zone) {
      if (zone + 1 == close) return "empty IPv6 zone after '%'";
      for (const char *p = zone + 1; p < close; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z') || *p == '.' || *p == '-' ||
              *p == '_'))
          return "invalid character in the IPv6 zone";
    }
    if (close[1] != ':')
      return close[1] ? "expected ':PORT' after ']'"
                      : "missing port (expected [ADDRESS]:PORT)";
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon) return "missing port (expected HOST:PORT)";
    if (colon == s)
      return "missing host (use 0.0.0.0:PORT or [::]:PORT for every "
             "interface)";
    if (memchr(s, ':', (size_t)(colon - s)))
      return "IPv6 addresses must be written in brackets, like [::1]:50051";
    for (const char *p = s; p < colon; p++) {
      char ch = *p;
      if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
            (ch >= 'A' && ch <= 'Z') || ch == '.' || ch == '-' || ch == '_'))
        return "invalid character in the host name";
    }
  }
  const char *port = colon + 1;
  if (!*port) return "missing port number after ':'";
  size_t n = strlen(port);
  if (n > 5 || strspn(port, "0123456789") != n)
    return "the port must be a number from 0 to 65535";
  if (atol(port) > 65535) return "the port must be a number from 0 to 65535";
  return NULL;
}

/* A string or a list of strings: calls each(elem) for every element; returns
 * -1 when the value's shape is wrong or an element fails. */
typedef int (*elem_fn)(ctx *x, const node *elem, const char *key, void *arg);

static int string_or_list(ctx *x, const node *v, const char *key,
                          const char *what, elem_fn each, void *arg) {
  if (v->type == N_BAD) return -1;
  if (v->type == N_SCALAR) {
    if (want_scalar(x, v, key, what) != 0) return -1;
    return each(x, v, key, arg);
  }
  if (v->type != N_SEQ) {
    ERR(x, v, "%s: expected %s or a list of them, got %s", key, what,
        kind_name(v));
    return -1;
  }
  int rc = 0;
  for (size_t i = 0; i < v->n; i++) {
    const node *e = v->kid[i];
    if (e->type != N_BAD && (e->type != N_SCALAR || is_null(e))) {
      ERR(x, e, "%s: each list item must be %s, got %s", key, what,
          kind_name(e));
      rc = -1;
      continue;
    }
    if (want_scalar(x, e, key, what) != 0 || each(x, e, key, arg) != 0)
      rc = -1;
  }
  return rc;
}

static int listen_elem(ctx *x, const node *e, const char *key, void *arg) {
  mw_strvec *l = arg;
  const char *problem = mw_config_check_address(e->s);
  if (problem) {
    ERR(x, e, "%s: invalid address '%s': %s", key, EX(e), problem);
    return -1;
  }
  if (mw_strvec_has(l, e->s)) {
    ERR(x, e, "%s: address '%s' is listed twice", key, EX(e));
    return -1;
  }
  if (mw_strvec_push(l, e->s) != 0) {
    ERR(x, e, "%s: out of memory", key);
    return -1;
  }
  return 0;
}

/* A .proto name relative to proto_path, as protoc takes it. */
static int proto_elem(ctx *x, const node *e, const char *key, void *arg) {
  mw_strvec *l = arg;
  size_t n = e->len;
  if (n < 7 || strcmp(e->s + n - 6, ".proto") != 0 || e->s[0] == '/' ||
      strstr(e->s, "..")) {
    ERR(x, e,
        "%s: '%s' is not a .proto name relative to proto_path (like "
        "grpc/testing/test.proto)",
        key, EX(e));
    return -1;
  }
  if (mw_strvec_push(l, e->s) != 0) {
    ERR(x, e, "%s: out of memory", key);
    return -1;
  }
  return 0;
}

static int dir_elem(ctx *x, const node *e, const char *key, void *arg) {
  mw_strvec *l = arg;
  if (e->len == 0) {
    ERR(x, e, "%s: empty path", key);
    return -1;
  }
  char *joined = mw_fs_join_norm(x->base_dir, e->s);
  if (!joined) {
    ERR(x, e, "%s: out of memory", key);
    return -1;
  }
  int rc = -1;
  char *real = realpath(joined, NULL);
  struct stat st;
  if (!real) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR)
      ERR(x, e, "%s: directory '%s' does not exist (resolved to '%s')", key,
          EX(e), joined);
    else
      ERR(x, e, "%s: cannot use directory '%s' (resolved to '%s'): %s", key,
          EX(e), joined, strerror(err));
  } else if (stat(real, &st) != 0) {
    ERR(x, e, "%s: cannot use directory '%s' (resolved to '%s'): %s", key,
        EX(e), real, strerror(errno));
  } else if (!S_ISDIR(st.st_mode)) {
    ERR(x, e, "%s: '%s' is not a directory (resolved to '%s')", key, EX(e),
        real);
  } else if (mw_strvec_has(l, real)) {
    rc = 0; /* the same directory twice: kept once */
  } else if (mw_strvec_push(l, real) != 0) {
    ERR(x, e, "%s: out of memory", key);
  } else {
    rc = 0;
  }
  free(real);
  free(joined);
  return rc;
}

/* A file path of the tls section: resolved against the config file's
 * directory, lexically only (see mw_config.h); whether the file exists and
 * holds what it should is checked by tls/ when the server starts. */
static void tls_path(ctx *x, const node *v, const char *key, char **dst) {
  if (want_scalar(x, v, key, "a file path") != 0) return;
  if (v->len == 0) {
    ERR(x, v, "%s: empty path", key);
    return;
  }
  char *joined = mw_fs_join_norm(x->base_dir, v->s);
  if (!joined) {
    ERR(x, v, "%s: out of memory", key);
    return;
  }
  free(*dst);
  *dst = joined;
}

static void tls_pair(ctx *x, mw_config *c, int idx, const node *k,
                     const node *v) {
  switch (idx) {
  case 0: tls_path(x, v, "tls.cert", &c->tls.cert); return;
  case 1: tls_path(x, v, "tls.key", &c->tls.key); return;
  case 2: tls_path(x, v, "tls.client_ca", &c->tls.client_ca); return;
  default: bool_value(x, v, "tls.require_client_cert", &c->tls.require_client_cert); return;
  }
}

/* The key node named key in mapping m, else m itself (for positions). */
static const node *key_node(const node *m, const char *key) {
  for (size_t i = 0; i + 1 < m->n; i += 2)
    if (m->kid[i]->type == N_SCALAR && strcmp(m->kid[i]->s, key) == 0)
      return m->kid[i];
  return m;
}

/* What the tls keys need of each other, once the section is read. */
/* ---- interceptor entries and their options ------------------------------ */

/* A plain scalar typed as YAML 1.2's core schema does for the values an
 * interceptor reads: true/false, integers, floats; the rest stays a string
 * (durations like "500ms" too: the interceptor parses them). */
static int scalar_value(const node *n, mw_config_value *out) {
  *out = (mw_config_value){0};
  if (is_null(n)) return 0;
  if (n->plain) {
    if (strcmp(n->s, "true") == 0 || strcmp(n->s, "false") == 0) {
      out->type = MW_CV_BOOL;
      out->boolean = n->s[0] == 't';
      return 0;
    }
    char *end = NULL;
    errno = 0;
    long long ll = strtoll(n->s, &end, 10);
    if (n->len && end == n->s + n->len && errno == 0) {
      out->type = MW_CV_INT;
      out->i = ll;
      return 0;
    }
    double d = strtod(n->s, &end);
    if (n->len && end == n->s + n->len && strspn(n->s, "+-.0123456789eE") == n->len) {
      out->type = MW_CV_FLOAT;
      out->f = d;
      return 0;
    }
  }
  out->type = MW_CV_STRING;
  out->s = malloc(n->len + 1);
  if (!out->s) return -1;
  memcpy(out->s, n->s, n->len + 1);
  out->len = n->len;
  return 0;
}

/* Copies a YAML subtree as a generic value; problems go to x. */
static int tree_value(ctx *x, const node *n, const char *key, mw_config_value *out) {
  *out = (mw_config_value){0};
  if (n->type == N_BAD) return -1;
  if (n->type == N_SCALAR) {
    if (scalar_value(n, out) != 0) {
      ERR(x, n, "%s: out of memory", key);
      return -1;
    }
    return 0;
  }
  size_t count = n->type == N_MAP ? n->n / 2 : n->n;
  out->type = n->type == N_MAP ? MW_CV_MAP : MW_CV_LIST;
  out->items = calloc(count ? count : 1, sizeof *out->items);
  if (n->type == N_MAP) out->keys = calloc(count ? count : 1, sizeof *out->keys);
  if (!out->items || (n->type == N_MAP && !out->keys)) {
    ERR(x, n, "%s: out of memory", key);
    value_free(out);
    return -1;
  }
  int bad = 0;
  for (size_t i = 0; i < count; i++) {
    const node *v = n->type == N_MAP ? n->kid[2 * i + 1] : n->kid[i];
    if (n->type == N_MAP) {
      const node *k = n->kid[2 * i];
      if (k->type != N_SCALAR) {
        if (k->type != N_BAD) ERR(x, k, "%s: option names must be strings, not %s", key, kind_name(k));
        bad = 1;
        continue;
      }
      for (size_t j = 0; j < out->n; j++)
        if (strcmp(out->keys[j], k->s) == 0) {
          ERR(x, k, "%s: duplicate option '%s'", key, EX(k));
          bad = 1;
        }
      out->keys[out->n] = strdup(k->s);
      if (!out->keys[out->n]) {
        ERR(x, k, "%s: out of memory", key);
        bad = 1;
        continue;
      }
    }
    if (tree_value(x, v, key, &out->items[out->n]) != 0) {
      if (out->keys) free(out->keys[out->n]);
      bad = 1;
      continue;
    }
    out->n++;
  }
  if (bad) {
    value_free(out);
    return -1;
  }
  return 0;
}

static char *where_of(ctx *x, const node *n) {
  int len = snprintf(NULL, 0, "%s:%zu:%zu", x->name, n->line, n->col);
  char *w = malloc((size_t)len + 1);
  if (w) snprintf(w, (size_t)len + 1, "%s:%zu:%zu", x->name, n->line, n->col);
  return w;
}

/* interceptors: [name, {name: {options}}, ...] */
static void interceptors_list(ctx *x, const node *v, const char *key,
                              mw_config_interceptors *out) {
  if (v->type == N_BAD || is_null(v)) return;
  if (v->type != N_SEQ) {
    ERR(x, v, "%s: expected a list of interceptors (names, or 'name: {options}'), got %s",
        key, kind_name(v));
    return;
  }
  mw_config_interceptors l = {calloc(v->n ? v->n : 1, sizeof *l.v), 0};
  if (!l.v) {
    ERR(x, v, "%s: out of memory", key);
    return;
  }
  int bad = 0;
  for (size_t i = 0; i < v->n; i++) {
    const node *e = v->kid[i], *name = NULL, *opts = NULL;
    if (e->type == N_SCALAR && !is_null(e)) {
      name = e;
    } else if (e->type == N_MAP && e->n == 2 && e->kid[0]->type == N_SCALAR) {
      name = e->kid[0];
      opts = e->kid[1];
    } else {
      if (e->type != N_BAD)
        ERR(x, e, "%s: each entry is a name or a one-key mapping name: {options}, not %s",
            key, e->type == N_MAP ? "a mapping with several keys" : kind_name(e));
      bad = 1;
      continue;
    }
    if (!name->len || strspn(name->s, "abcdefghijklmnopqrstuvwxyz0123456789_") != name->len) {
      ERR(x, name, "%s: '%s' is not an interceptor name (lower-case letters, digits and _)",
          key, EX(name));
      bad = 1;
      continue;
    }
    mw_config_interceptor *it = &l.v[l.n];
    *it = (mw_config_interceptor){0};
    char okey[320];
    snprintf(okey, sizeof okey, "%s.%s", key, name->s);
    if (opts && !is_null(opts) && opts->type != N_MAP) {
      if (opts->type != N_BAD)
        ERR(x, opts, "%s: the options must be a mapping, not %s", okey, kind_name(opts));
      bad = 1;
      continue;
    }
    if (opts && !is_null(opts)) {
      if (tree_value(x, opts, okey, &it->opts) != 0) {
        bad = 1;
        continue;
      }
    } else {
      it->opts.type = MW_CV_MAP;
    }
    it->name = strdup(name->s);
    it->where = where_of(x, e);
    if (!it->name || !it->where) {
      ERR(x, e, "%s: out of memory", key);
      free(it->name);
      free(it->where);
      value_free(&it->opts);
      bad = 1;
      continue;
    }
    l.n++;
  }
  if (bad) {
    interceptors_free(&l);
    return;
  }
  interceptors_free(out);
  *out = l;
}

/* ---- methods -------------------------------------------------------------- */

static const char *const method_keys[] = {"max_concurrent", "interceptors", "deadline",
                                          "max_receive_bytes", "max_send_bytes", "compression",
                                          "idempotency", NULL};
static int add_compress_method(ctx *x, mw_config *c, const node *k, const char *p,
                               const node *v);
static const char *const deadline_keys[] = {"default", "max", NULL};

static void deadline_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  int64_t val;
  char name[320];
  snprintf(name, sizeof name, "methods.%s.deadline.%s", x->method->path, deadline_keys[idx]);
  if (number_value(x, v, name, K_DURATION, 1, INT32_MAX, &val) != 0) return;
  if (idx == 0) x->method->deadline_default_ms = val;
  else x->method->deadline_max_ms = val;
}

static void method_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  int64_t val;
  char name[300];
  snprintf(name, sizeof name, "methods.%s.%s", x->method->path, method_keys[idx]);
  switch (idx) {
  case 0:
    if (number_value(x, v, name, K_INT, 0, INT32_MAX, &val) == 0) x->method->max_concurrent = val;
    return;
  case 1:
    interceptors_list(x, v, name, &x->method->interceptors);
    return;
  case 2:
    if (want_section(x, v, name) != 0) return;
    walk_map(x, c, v, name, deadline_keys, deadline_pair);
    if (x->method->deadline_default_ms && x->method->deadline_max_ms &&
        x->method->deadline_default_ms > x->method->deadline_max_ms)
      ERR(x, v, "%s: default (%lld ms) is longer than max (%lld ms)", name,
          (long long)x->method->deadline_default_ms, (long long)x->method->deadline_max_ms);
    free(x->method->deadline_where);
    x->method->deadline_where = where_of(x, k);
    return;
  case 3:
  case 4:
    if (x->method->service) {
      ERR(x, k, "%s: message sizes are set per method (\"/%s/Method\"), not per service",
          name, x->method->path);
      return;
    }
    if (number_value(x, v, name, K_SIZE, 1, INT32_MAX, &val) != 0) return;
    if (idx == 3) x->method->max_receive_bytes = val;
    else x->method->max_send_bytes = val;
    return;
  case 5: /* the same as compression.methods.PATH */
    if (x->method->service) {
      ERR(x, k, "%s: compression is set per method (\"/%s/Method\"), not per service",
          name, x->method->path);
      return;
    }
    add_compress_method(x, c, k, x->method->path, v);
    return;
  case 6: /* options checked by the interceptor, with this position */
    if (v->type == N_BAD) return;
    if (!is_null(v) && v->type != N_MAP) {
      ERR(x, v, "%s: expected a mapping of options ({key: metadata, ttl: 24h, ...}), got %s",
          name, kind_name(v));
      return;
    }
    value_free(&x->method->idempotency);
    if (is_null(v)) {
      x->method->idempotency.type = MW_CV_MAP;
    } else if (tree_value(x, v, name, &x->method->idempotency) != 0) {
      return;
    }
    free(x->method->idempotency_where);
    x->method->idempotency_where = where_of(x, k);
    return;
  }
}

/* Whether a key names a service ("pkg.Service": no slash, no spaces). */
static int is_service_name(const node *k) {
  return k->len && k->s[0] != '/' && k->s[0] != '.' && !strchr(k->s, '/') &&
         strspn(k->s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") ==
             k->len;
}

static int is_method_path(const char *s, size_t len);

/* methods: {"/pkg.Service/Method": {...}, "pkg.Service": {...}, ...} */
static void methods_section(ctx *x, mw_config *c, const node *m) {
  for (size_t i = 0; i + 1 < m->n; i += 2) {
    const node *k = m->kid[i], *v = m->kid[i + 1];
    if (k->type != N_SCALAR) {
      if (k->type != N_BAD) ERR(x, k, "methods: keys must be method paths, not %s", kind_name(k));
      continue;
    }
    int service = is_service_name(k);
    if (!service && !is_method_path(k->s, k->len)) {
      ERR(x, k, "methods: '%s' is not a method path (expected \"/package.Service/Method\") "
                "or a service name (\"package.Service\")",
          EX(k));
      continue;
    }
    int dup = 0;
    for (size_t j = 0; j < c->n_methods && !dup; j++) dup = strcmp(c->methods[j].path, k->s) == 0;
    if (dup) {
      ERR(x, k, "methods: '%s' is listed twice", EX(k));
      continue;
    }
    if (want_section(x, v, k->s) != 0) continue;
    mw_method_config *grown = realloc(c->methods, (c->n_methods + 1) * sizeof *grown);
    char *path = grown ? strdup(k->s) : NULL;
    if (grown) c->methods = grown;
    if (!path) {
      ERR(x, k, "out of memory");
      return;
    }
    x->method = &c->methods[c->n_methods++];
    *x->method = (mw_method_config){.path = path, .service = service};
    walk_map(x, c, v, k->s, method_keys, method_pair);
    x->method = NULL;
  }
}

static void tls_section(ctx *x, mw_config *c, const node *m) {
  size_t before = x->nerr + x->lost;
  walk_map(x, c, m, "tls", tls_keys, tls_pair);
  /* A key that failed has been reported; what it lacks would repeat it. */
  if (x->nerr + x->lost != before) return;
  if (c->tls.cert && !c->tls.key)
    ERR(x, key_node(m, "cert"), "tls.cert needs tls.key (the certificate's "
                                "private key) as well");
  if (c->tls.key && !c->tls.cert)
    ERR(x, key_node(m, "key"), "tls.key needs tls.cert (the certificate "
                               "it belongs to) as well");
  if (c->tls.client_ca && !c->tls.cert)
    ERR(x, key_node(m, "client_ca"), "tls.client_ca needs tls.cert and "
                                     "tls.key: client certificates are only "
                                     "asked for over TLS");
  if (c->tls.require_client_cert && !c->tls.client_ca)
    ERR(x, key_node(m, "require_client_cert"),
        "tls.require_client_cert needs tls.client_ca (the CAs client "
        "certificates are checked against)");
}

/* compression.algorithm, or a method's; -1 when the value is wrong. */
static int compress_algorithm(ctx *x, const node *v, const char *key) {
  const char *what = "one of gzip, deflate, none";
  if (want_scalar(x, v, key, what) != 0) return -1;
  if (strcmp(v->s, "gzip") == 0) return MW_CONFIG_COMPRESS_GZIP;
  if (strcmp(v->s, "deflate") == 0) return MW_CONFIG_COMPRESS_DEFLATE;
  if (strcmp(v->s, "none") == 0) return MW_CONFIG_COMPRESS_NONE;
  ERR(x, v, "%s: expected %s, got '%s'", key, what, EX(v));
  return -1;
}

/* A key of one method's mapping: it sets the last entry of methods, the one
 * compress_methods just added. */
static void compress_method_pair(ctx *x, mw_config *c, int idx, const node *k,
                                 const node *v) {
  mw_config_compress_method *m =
      &c->compression.methods[c->compression.n_methods - 1];
  char key[96];
  snprintf(key, sizeof key, "compression.methods.%s.%s", m->path,
           compress_method_keys[idx]);
  if (idx == 0) {
    m->algorithm = compress_algorithm(x, v, key);
  } else {
    int64_t val;
    if (number_value(x, v, key, K_SIZE, 0, INT32_MAX, &val) == 0)
      m->min_bytes = val;
  }
}

/* A method path as gRPC writes it: "/package.Service/Method". */
static int is_method_path(const char *s, size_t len) {
  if (len < 4 || s[0] != '/' || strlen(s) != len) return 0;
  const char *slash = strchr(s + 1, '/');
  return slash && slash > s + 1 && slash[1] && !strchr(slash + 1, '/');
}

/* One method's compression settings (v), from compression.methods or
 * methods.PATH.compression: k is the node problems are reported at.
 * Returns -1 only when out of memory. */
static int add_compress_method(ctx *x, mw_config *c, const node *k, const char *p,
                               const node *v) {
  int dup = 0;
  for (size_t j = 0; j < c->compression.n_methods && !dup; j++)
    dup = strcmp(c->compression.methods[j].path, p) == 0;
  if (dup) {
    ERR(x, k, "compression of %s is set twice (compression.methods and "
              "methods.%s.compression)", p, p);
    return 0;
  }
  char key[96];
  snprintf(key, sizeof key, "compression.methods.%s", p);
  if (want_section(x, v, key) != 0) return 0;
  mw_config_compress_method *grown =
      realloc(c->compression.methods, (c->compression.n_methods + 1) * sizeof *grown);
  char *path = grown ? strdup(p) : NULL;
  if (!path) {
    if (grown) c->compression.methods = grown;
    ERR(x, k, "compression.methods: out of memory");
    return -1;
  }
  c->compression.methods = grown;
  c->compression.methods[c->compression.n_methods++] = (mw_config_compress_method){path, -1, -1};
  walk_map(x, c, v, key, compress_method_keys, compress_method_pair);
  return 0;
}

static void compress_methods(ctx *x, mw_config *c, const node *m) {
  for (size_t i = 0; i + 1 < m->n; i += 2) {
    const node *k = m->kid[i], *v = m->kid[i + 1];
    if (k->type == N_BAD) continue;
    if (k->type != N_SCALAR || !is_method_path(k->s, k->len)) {
      ERR(x, k, "compression.methods: keys must be method paths like "
                "/package.Service/Method, got '%s'",
          k->type == N_SCALAR ? EX(k) : kind_name(k));
      continue;
    }
    if (add_compress_method(x, c, k, k->s, v) != 0) return;
  }
}

static void compression_pair(ctx *x, mw_config *c, int idx, const node *k,
                             const node *v) {
  if (idx == 0) {
    int a = compress_algorithm(x, v, "compression.algorithm");
    if (a >= 0) c->compression.algorithm = a;
  } else if (idx == 1) {
    int64_t val;
    if (number_value(x, v, "compression.min_bytes", K_SIZE, 0, INT32_MAX,
                     &val) == 0)
      c->compression.min_bytes = val;
  } else if (v->type == N_MAP) {
    compress_methods(x, c, v);
  } else if (!is_null(v) && v->type != N_BAD) {
    ERR(x, v, "compression.methods: expected a mapping of method paths, "
              "got %s",
        kind_name(v));
  }
}

/* tracing: the exporter's URL (http:// only: the exporter speaks plain
 * HTTP/1.1), the sampling ratio and the queue's sizes. */
static void tracing_pair(ctx *x, mw_config *c, int idx, const node *k,
                         const node *v) {
  int64_t val;
  switch (idx) {
  case 0:
    if (want_scalar(x, v, "tracing.otlp", "an http:// URL") != 0) return;
    if (strncmp(v->s, "https://", 8) == 0) {
      ERR(x, v, "tracing.otlp: https is not supported (the exporter speaks plain "
                "HTTP/1.1); use http:// to a local collector or agent, got '%s'", EX(v));
      return;
    }
    if (strncmp(v->s, "http://", 7) != 0 || v->len <= 7 || v->s[7] == '/') {
      ERR(x, v, "tracing.otlp: expected an http://HOST[:PORT]/PATH URL, got '%s'", EX(v));
      return;
    }
    free(c->tracing.otlp);
    c->tracing.otlp = strdup(v->s);
    return;
  case 1: {
    if (want_scalar(x, v, "tracing.sample", "a ratio from 0.0 to 1.0") != 0) return;
    char *end;
    errno = 0;
    double d = strtod(v->s, &end);
    if (!v->len || end != v->s + v->len || errno || !(d >= 0.0 && d <= 1.0)) {
      ERR(x, v, "tracing.sample: expected a ratio from 0.0 to 1.0, got '%s'", EX(v));
      return;
    }
    c->tracing.sample = d;
    return;
  }
  case 2:
    if (want_scalar(x, v, "tracing.service_name", "a name") != 0) return;
    if (!v->len) {
      ERR(x, v, "tracing.service_name: must not be empty");
      return;
    }
    free(c->tracing.service_name);
    c->tracing.service_name = strdup(v->s);
    return;
  case 3:
    if (number_value(x, v, "tracing.batch", K_INT, 1, 65536, &val) == 0) c->tracing.batch = val;
    return;
  case 4:
    if (number_value(x, v, "tracing.flush_ms", K_DURATION, 1, 3600000, &val) == 0)
      c->tracing.flush_ms = val;
    return;
  case 5:
    if (number_value(x, v, "tracing.queue", K_INT, 1, 1 << 20, &val) == 0) c->tracing.queue = val;
    return;
  default:
    return;
  }
}

/* client: outbound calls. */
static int target_elem(ctx *x, const node *e, const char *key, void *arg) {
  mw_strvec *l = arg;
  const char *t = e->s;
  int ok = strcmp(t, "*") == 0;
  if (!ok && strncmp(t, "unix:", 5) == 0) ok = t[5] != '\0';
  if (!ok) {
    const char *colon = t[0] == '[' ? strstr(t, "]:") : strrchr(t, ':');
    if (colon && t[0] == '[') colon++;
    ok = colon && colon > t && colon[1] && !strchr(t, '/') && !strchr(t, ' ');
    if (ok && strcmp(colon + 1, "*") != 0)
      for (const char *q = colon + 1; *q; q++) ok = ok && *q >= '0' && *q <= '9';
  }
  if (!ok) {
    ERR(x, e, "%s: '%s' is not a target (expected HOST:PORT, HOST:*, [IPv6]:PORT, "
              "unix:PATH or *)", key, EX(e));
    return -1;
  }
  if (mw_strvec_has(l, t) || mw_strvec_push(l, t) != 0) {
    if (!mw_strvec_has(l, t)) ERR(x, e, "%s: out of memory", key);
  }
  return 0;
}

static int md_key_elem(ctx *x, const node *e, const char *key, void *arg) {
  mw_strvec *l = arg;
  int ok = e->len > 0 && strncmp(e->s, "grpc-", 5) != 0 && e->s[0] != ':';
  for (size_t i = 0; ok && i < e->len; i++) {
    char ch = e->s[i];
    ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
         ch == '.';
  }
  if (!ok) {
    ERR(x, e, "%s: '%s' is not a metadata key a call may carry (lowercase letters, digits, "
              "'-', '_', '.'; not grpc-*)", key, EX(e));
    return -1;
  }
  if (!mw_strvec_has(l, e->s) && mw_strvec_push(l, e->s) != 0) {
    ERR(x, e, "%s: out of memory", key);
    return -1;
  }
  return 0;
}

static int code_elem(ctx *x, const node *e, const char *key, void *arg) {
  unsigned *codes = arg;
  int code = mw_status_parse(e->s);
  if (code < 0 || code == 0) {
    ERR(x, e, "%s: '%s' is not a status code that can be retried (UNAVAILABLE, "
              "RESOURCE_EXHAUSTED, ABORTED...)", key, EX(e));
    return -1;
  }
  *codes |= 1u << code;
  return 0;
}

static void retry_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  mw_config_retry *r = x->retry;
  int64_t val;
  switch (idx) {
  case 0:
    if (number_value(x, v, "retry.max_attempts", K_INT, 1, 10, &val) == 0) r->max_attempts = val;
    return;
  case 1:
    if (number_value(x, v, "retry.initial_backoff", K_DURATION, 1, 3600000, &val) == 0)
      r->initial_backoff_ms = val;
    return;
  case 2:
    if (number_value(x, v, "retry.max_backoff", K_DURATION, 1, 3600000, &val) == 0)
      r->max_backoff_ms = val;
    return;
  case 3: {
    if (want_scalar(x, v, "retry.multiplier", "a number of at least 1") != 0) return;
    char *end;
    double d = strtod(v->s, &end);
    if (end == v->s || *end || !(d >= 1.0) || d > 100.0) {
      ERR(x, v, "retry.multiplier: expected a number from 1 to 100, got '%s'", EX(v));
      return;
    }
    r->multiplier = d;
    return;
  }
  case 4: {
    unsigned codes = 0;
    if (string_or_list(x, v, "retry.codes", "a status code name", code_elem, &codes) == 0)
      r->codes = codes;
    return;
  }
  }
}

static void retry_section(ctx *x, mw_config *c, const node *v, mw_config_retry *r) {
  if (want_section(x, v, "retry") != 0) return;
  mw_config_retry *saved = x->retry;
  x->retry = r;
  r->set = 1;
  walk_map(x, c, v, "retry", retry_keys, retry_pair);
  x->retry = saved;
}

static void budget_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  int64_t val;
  if (idx == 0) {
    if (number_value(x, v, "retry_budget.tokens", K_INT, 0, 1000000, &val) == 0)
      c->client.budget_tokens = val;
    return;
  }
  if (want_scalar(x, v, "retry_budget.ratio", "a number from 0 to 1") != 0) return;
  char *end;
  double d = strtod(v->s, &end);
  if (end == v->s || *end || !(d >= 0.0) || d > 1.0) {
    ERR(x, v, "retry_budget.ratio: expected a number from 0 to 1, got '%s'", EX(v));
    return;
  }
  c->client.budget_ratio = d;
}

static void client_method_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  mw_config_client_method *m = x->cmethod;
  int64_t val;
  switch (idx) {
  case 0: {
    int b = -1;
    bool_value(x, v, "idempotent", &b);
    if (b >= 0) m->idempotent = b;
    return;
  }
  case 1:
    if (number_value(x, v, "timeout", K_DURATION, 1, INT32_MAX, &val) == 0) m->timeout_ms = val;
    return;
  case 2:
    m->retry = c->client.retry; /* a method's retry starts from the default */
    retry_section(x, c, v, &m->retry);
    return;
  }
}

static void client_methods(ctx *x, mw_config *c, const node *m) {
  if (want_section(x, m, "client.methods") != 0) return;
  for (size_t i = 0; i + 1 < m->n; i += 2) {
    const node *k = m->kid[i], *v = m->kid[i + 1];
    if (k->type != N_SCALAR) continue;
    if (!is_service_name(k) && !is_method_path(k->s, k->len)) {
      ERR(x, k, "client.methods: '%s' is not a method path (expected \"/package.Service/Method\") "
                "or a service name (\"package.Service\")", EX(k));
      continue;
    }
    int dup = 0;
    for (size_t j = 0; j < c->client.n_methods && !dup; j++)
      dup = strcmp(c->client.methods[j].path, k->s) == 0;
    if (dup) {
      ERR(x, k, "client.methods: '%s' is listed twice", EX(k));
      continue;
    }
    if (want_section(x, v, k->s) != 0) continue;
    mw_config_client_method *grown =
        realloc(c->client.methods, (c->client.n_methods + 1) * sizeof *grown);
    char *path = grown ? strdup(k->s) : NULL;
    if (grown) c->client.methods = grown;
    if (!path) {
      ERR(x, k, "out of memory");
      return;
    }
    x->cmethod = &c->client.methods[c->client.n_methods++];
    *x->cmethod = (mw_config_client_method){.path = path, .idempotent = -1};
    walk_map(x, c, v, k->s, client_method_keys, client_method_pair);
    x->cmethod = NULL;
  }
}

/* An origin of http.cors.origins: "*", or scheme://host[:port] as a
 * browser sends it in Origin (no path, no trailing slash). */
static int origin_elem(ctx *x, const node *e, const char *key, void *arg) {
  mw_strvec *l = arg;
  const char *sep = strstr(e->s, "://");
  int ok = strcmp(e->s, "*") == 0 ||
           (sep && sep > e->s && sep[3] != '\0' && !strchr(sep + 3, '/'));
  if (!ok) {
    ERR(x, e, "%s: '%s' is not an origin (expected \"*\" or SCHEME://HOST[:PORT], "
              "e.g. https://app.example.com)", key, EX(e));
    return -1;
  }
  if (!mw_strvec_has(l, e->s) && mw_strvec_push(l, e->s) != 0) {
    ERR(x, e, "%s: out of memory", key);
    return -1;
  }
  return 0;
}

/* A header name of http.cors.headers or .expose (an HTTP token, compared
 * case-blind). */
static int header_elem(ctx *x, const node *e, const char *key, void *arg) {
  mw_strvec *l = arg;
  int ok = e->len > 0;
  for (size_t i = 0; ok && i < e->len; i++) {
    char ch = e->s[i];
    ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '-' || ch == '_';
  }
  if (!ok) {
    ERR(x, e, "%s: '%s' is not a header name (letters, digits, '-', '_')", key, EX(e));
    return -1;
  }
  if (!mw_strvec_has(l, e->s) && mw_strvec_push(l, e->s) != 0) {
    ERR(x, e, "%s: out of memory", key);
    return -1;
  }
  return 0;
}

static void http_cors_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  (void)k;
  mw_strvec l = {0};
  static const char *const keys[] = {"http.cors.origins", "http.cors.headers",
                                     "http.cors.expose"};
  const char *key = keys[idx];
  int rc = idx == 0 ? string_or_list(x, v, key, "an origin", origin_elem, &l)
                    : string_or_list(x, v, key, "a header name", header_elem, &l);
  if (rc == 0) {
    mw_strvec *dst = idx == 0   ? &c->http.cors_origins
                     : idx == 1 ? &c->http.cors_headers
                                : &c->http.cors_expose;
    mw_strvec_free(dst);
    *dst = l;
    return;
  }
  mw_strvec_free(&l);
}

static void http_tls_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  (void)k;
  switch (idx) {
  case 0: tls_path(x, v, "http.tls.cert", &c->http.tls_cert); return;
  case 1: tls_path(x, v, "http.tls.key", &c->http.tls_key); return;
  case 2: tls_path(x, v, "http.tls.client_ca", &c->http.tls_client_ca); return;
  default:
    bool_value(x, v, "http.tls.require_client_cert", &c->http.tls_require_client_cert);
    return;
  }
}

static void http_rules_value(ctx *x, mw_config *c, const node *v);

static void http_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  int64_t val;
  switch (idx) {
  case 0: /* listen */
    address_value(x, v, "http.listen", &c->http.listen);
    return;
  case 1:
    if (number_value(x, v, "http.max_connections", K_INT, 1, 100000, &val) == 0)
      c->http.max_connections = val;
    return;
  case 2:
    if (number_value(x, v, "http.timeout", K_DURATION, 1, INT32_MAX, &val) == 0)
      c->http.timeout_ms = val;
    return;
  case 3:
    if (want_section(x, v, "http.cors") == 0)
      walk_map(x, c, v, "http.cors", http_cors_keys, http_cors_pair);
    return;
  case 4:
    if (want_section(x, v, "http.tls") != 0) return;
    walk_map(x, c, v, "http.tls", http_tls_keys, http_tls_pair);
    if (!c->http.tls_cert != !c->http.tls_key)
      ERR(x, v, "http.tls needs both cert and key (the certificate chain and its "
                "private key, PEM files)");
    else if (c->http.tls_client_ca && !c->http.tls_cert)
      ERR(x, key_node(v, "client_ca"), "http.tls.client_ca needs http.tls.cert and key");
    else if (c->http.tls_require_client_cert && !c->http.tls_client_ca)
      ERR(x, key_node(v, "require_client_cert"),
          "http.tls.require_client_cert needs http.tls.client_ca (the CAs client "
          "certificates must chain to)");
    return;
  case 5: /* rules: REST bindings, further down */
    http_rules_value(x, c, v);
    return;
  case 6: /* sse_keepalive; 0: none */
    if (number_value(x, v, "http.sse_keepalive", K_DURATION, 0, INT32_MAX, &val) == 0)
      c->http.sse_keepalive_ms = val;
    return;
  case 7: /* sse_retry; 0: the client's own */
    if (number_value(x, v, "http.sse_retry", K_DURATION, 0, INT32_MAX, &val) == 0)
      c->http.sse_retry_ms = val;
    return;
  }
}

static void client_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  int64_t val;
  switch (idx) {
  case 0: {
    mw_strvec l = {0};
    if (string_or_list(x, v, "client.allow", "a target", target_elem, &l) == 0) {
      mw_strvec_free(&c->client.allow);
      c->client.allow = l;
      return;
    }
    mw_strvec_free(&l);
    return;
  }
  case 1: {
    mw_strvec l = {0};
    if (string_or_list(x, v, "client.propagate", "a metadata key", md_key_elem, &l) == 0) {
      mw_strvec_free(&c->client.propagate);
      c->client.propagate = l;
      return;
    }
    mw_strvec_free(&l);
    return;
  }
  case 2:
    if (number_value(x, v, "client.deadline_margin", K_DURATION, 0, 60000, &val) == 0)
      c->client.deadline_margin_ms = val;
    return;
  case 3:
    if (number_value(x, v, "client.max_receive_bytes", K_SIZE, 1, INT32_MAX, &val) == 0)
      c->client.max_receive_bytes = val;
    return;
  case 4:
    if (number_value(x, v, "client.max_metadata_bytes", K_SIZE, 1024, INT32_MAX, &val) == 0)
      c->client.max_metadata_bytes = val;
    return;
  case 5:
    if (number_value(x, v, "client.keepalive", K_DURATION, 0, INT32_MAX, &val) == 0) {
      if (val > 0 && val < 10000) {
        ERR(x, v, "client.keepalive: at least 10s (servers answer faster pings with "
                  "GOAWAY too_many_pings), or 0 for none");
        return;
      }
      c->client.keepalive_ms = val;
    }
    return;
  case 6:
    if (number_value(x, v, "client.connect_timeout", K_DURATION, 100, INT32_MAX, &val) == 0)
      c->client.connect_timeout_ms = val;
    return;
  case 7:
    if (number_value(x, v, "client.max_backoff", K_DURATION, 100, 3600000, &val) == 0)
      c->client.max_backoff_ms = val;
    return;
  case 8:
    if (number_value(x, v, "client.max_channels", K_INT, 1, 65536, &val) == 0)
      c->client.max_channels = val;
    return;
  case 9:
    retry_section(x, c, v, &c->client.retry);
    return;
  case 10:
    if (want_section(x, v, "client.retry_budget") == 0)
      walk_map(x, c, v, "retry_budget", budget_keys, budget_pair);
    return;
  case 11:
    client_methods(x, c, v);
    return;
  }
}

/* shared: NAME: {size: SIZE} in memory, or {redis: URL, prefix: P,
 * timeout: DURATION} in Redis. */
#define SHARED_MIN_SIZE (64 << 10) /* shared/mw_shared.h's MW_SHARED_MIN_SIZE */
#define SHARED_MAX_SIZE (INT64_C(64) << 30)

static void shared_dict_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  char key[96];
  snprintf(key, sizeof key, "shared.%s.%s", x->shdict->name, shared_dict_keys[idx]);
  int64_t val;
  switch (idx) {
  case 0: /* size */
    if (number_value(x, v, key, K_SIZE, SHARED_MIN_SIZE, SHARED_MAX_SIZE, &val) == 0)
      x->shdict->size = val;
    return;
  case 1: /* redis: the URL is read in full when the dict is made */
    if (want_scalar(x, v, key, "a redis:// URL") != 0) return;
    if (strncmp(v->s, "redis://", 8) != 0 || v->len <= 8 || v->s[8] == '/') {
      ERR(x, v, "%s: expected a redis://HOST[:PORT][/DB] URL, got '%s'", key, EX(v));
      return;
    }
    free(x->shdict->redis);
    x->shdict->redis = strdup(v->s);
    return;
  case 2: /* prefix */
    if (want_scalar(x, v, key, "a key prefix") != 0) return;
    if (v->len > 100 || strlen(v->s) != v->len) {
      ERR(x, v, "%s: expected a key prefix of at most 100 bytes, got '%s'", key, EX(v));
      return;
    }
    free(x->shdict->prefix);
    x->shdict->prefix = strdup(v->s);
    return;
  case 3: /* timeout */
    if (number_value(x, v, key, K_DURATION, 1, 3600000, &val) == 0) x->shdict->timeout_ms = val;
    return;
  }
}

/* A name mw.shared.NAME can spell: an identifier that is not a keyword. */
static int lua_identifier(const char *s, size_t len) {
  static const char *const reserved[] = {
      "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
      "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
      NULL};
  if (len == 0 || len > 64 || isdigit((unsigned char)s[0])) return 0;
  for (size_t i = 0; i < len; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '_') return 0;
  for (size_t i = 0; reserved[i]; i++)
    if (strcmp(reserved[i], s) == 0) return 0;
  return 1;
}

static void shared_section(ctx *x, mw_config *c, const node *m) {
  if (want_section(x, m, "shared") != 0) return;
  for (size_t i = 0; i + 1 < m->n; i += 2) {
    const node *k = m->kid[i], *v = m->kid[i + 1];
    if (k->type != N_SCALAR) {
      if (k->type != N_BAD) ERR(x, k, "keys must be plain strings, not %s", kind_name(k));
      continue;
    }
    if (!lua_identifier(k->s, k->len) || strlen(k->s) != k->len) {
      ERR(x, k, "shared: '%s' is not a dict name (letters, digits and _, not starting with "
                "a digit, at most 64, not a Lua keyword: it is spelt mw.shared.NAME)", EX(k));
      continue;
    }
    int dup = 0;
    for (size_t j = 0; j < c->shared.n && !dup; j++) dup = strcmp(c->shared.v[j].name, k->s) == 0;
    if (dup) {
      ERR(x, k, "shared: '%s' is listed twice", EX(k));
      continue;
    }
    if (v->type == N_BAD) continue;
    if (v->type != N_MAP) {
      ERR(x, v, "shared.%s: expected a mapping with its size (size: 1MiB) or its Redis "
                "(redis: \"redis://127.0.0.1:6379/0\"), got %s", k->s,
          kind_name(v));
      continue;
    }
    mw_config_shared *grown = realloc(c->shared.v, (c->shared.n + 1) * sizeof *grown);
    char *name = grown ? strdup(k->s) : NULL;
    if (grown) c->shared.v = grown;
    if (!name) {
      ERR(x, k, "out of memory");
      return;
    }
    mw_config_shared *d = &c->shared.v[c->shared.n++];
    *d = (mw_config_shared){.name = name, .size = -1};
    x->shdict = d;
    char section[80];
    snprintf(section, sizeof section, "shared.%s", name);
    walk_map(x, c, v, section, shared_dict_keys, shared_dict_pair);
    x->shdict = NULL;
    if (d->redis && d->size >= 0) {
      ERR(x, k, "shared.%s: 'size' and 'redis' exclude each other (Redis keeps the "
                "memory of a dict on Redis)", name);
    } else if (!d->redis && (d->prefix || d->timeout_ms)) {
      ERR(x, k, "shared.%s: 'prefix' and 'timeout' are for a dict on Redis (redis: URL)",
          name);
    }
    if (d->size < 0 && !d->redis) {
      int bad = 0; /* a size given but refused has its own message already */
      for (size_t j = 0; j + 1 < v->n && !bad; j += 2)
        bad = v->kid[j]->type == N_SCALAR &&
              (strcmp(v->kid[j]->s, "size") == 0 || strcmp(v->kid[j]->s, "redis") == 0);
      if (!bad)
        ERR(x, k, "shared.%s: 'size' is required (for example size: 16MiB), or 'redis' (a URL) "
                  "for a dict on Redis", name);
      /* dropped: a config with errors is not used, and no entry is
       * left without its size */
      free(d->name);
      free(d->prefix);
      c->shared.n--;
    }
  }
}

/* ---- http.rules ---------------------------------------------------------- */
/* REST bindings for methods whose .proto files have no google.api.http
 * option (codec/mw_transcode.h checks the templates and fields against the
 * schema when a generation is built; here only their shape):
 *
 *   http:
 *     rules:
 *       - selector: pkg.Service.Method
 *         get: /v1/things/{id}          # or put/post/delete/patch, or
 *         # custom: {kind: HEAD, path: /v1/things/{id}}
 *         body: "*"                     # optional
 *         response_body: thing          # optional
 *         additional_bindings:          # optional, same keys but selector
 *           - post: /v1/things
 *             body: "*" */

static int http_rule_string(ctx *x, const node *v, const char *key, char **dst) {
  if (want_scalar(x, v, key, "a string") != 0) return -1;
  char *d = strdup(v->s);
  if (!d) {
    ERR(x, v, "%s: out of memory", key);
    return -1;
  }
  free(*dst);
  *dst = d;
  return 0;
}

/* pkg.Service.Method: dotted identifiers, at least three parts. */
static int is_selector(const char *s) {
  int parts = 0, len = 0;
  for (;; s++) {
    char ch = *s;
    if (ch == '.' || ch == '\0') {
      if (len == 0) return 0;
      parts++;
      len = 0;
      if (ch == '\0') break;
      continue;
    }
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
             (len > 0 && ch >= '0' && ch <= '9');
    if (!ok) return 0;
    len++;
  }
  return parts >= 3;
}

static int http_rule_pattern(ctx *x, const node *k, const node *v, const char *kind) {
  mw_config_http_rule *r = x->hrule;
  char key[64];
  snprintf(key, sizeof key, "http.rules.%s", k->s);
  if (r->method) {
    ERR(x, k, "%s: the rule already has a pattern (%s): give one of get, put, post, delete, "
              "patch or custom per rule, and more in additional_bindings",
        key, r->method);
    return -1;
  }
  if (want_scalar(x, v, key, "a path template (\"/v1/...\")") != 0) return -1;
  if (v->s[0] != '/') {
    ERR(x, v, "%s: '%s' is not a path template (it starts with '/')", key, EX(v));
    return -1;
  }
  r->method = strdup(kind);
  r->path = strdup(v->s);
  if (!r->method || !r->path) {
    ERR(x, v, "%s: out of memory", key);
    return -1;
  }
  return 0;
}

static void http_custom_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  (void)c;
  (void)k;
  mw_config_http_rule *r = x->hrule;
  if (idx == 0) {
    if (want_scalar(x, v, "http.rules.custom.kind", "an HTTP method name") != 0) return;
    for (size_t i = 0; i < v->len; i++) {
      char ch = v->s[i];
      if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '-' || ch == '*')) {
        ERR(x, v, "http.rules.custom.kind: '%s' is not an HTTP method name", EX(v));
        return;
      }
    }
    http_rule_string(x, v, "http.rules.custom.kind", &r->method);
  } else {
    if (want_scalar(x, v, "http.rules.custom.path", "a path template (\"/v1/...\")") != 0) return;
    if (v->s[0] != '/') {
      ERR(x, v, "http.rules.custom.path: '%s' is not a path template (it starts with '/')", EX(v));
      return;
    }
    http_rule_string(x, v, "http.rules.custom.path", &r->path);
  }
}

static void http_rule_entry(ctx *x, mw_config *c, const node *e, mw_config_http_rule *r,
                            int binding);

static void http_rule_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  static const char *const kinds[] = {NULL, "GET", "PUT", "POST", "DELETE", "PATCH"};
  mw_config_http_rule *r = x->hrule;
  switch (idx) {
    case 0: /* selector */
      if (x->hrule_binding) {
        ERR(x, k, "http.rules.additional_bindings: a binding has no selector (it is the rule's)");
        return;
      }
      if (want_scalar(x, v, "http.rules.selector", "a method name (pkg.Service.Method)") != 0)
        return;
      if (!is_selector(v->s)) {
        ERR(x, v, "http.rules.selector: '%s' is not a method name (pkg.Service.Method, dots, not "
                  "slashes)", EX(v));
        return;
      }
      http_rule_string(x, v, "http.rules.selector", &r->selector);
      return;
    case 1: case 2: case 3: case 4: case 5:
      http_rule_pattern(x, k, v, kinds[idx]);
      return;
    case 6: /* custom */
      if (r->method) {
        ERR(x, k, "http.rules.custom: the rule already has a pattern (%s)", r->method);
        return;
      }
      if (want_section(x, v, "http.rules.custom") != 0) return;
      walk_map(x, c, v, "http.rules.custom", http_custom_keys, http_custom_pair);
      if (!r->method || !r->path) {
        int given = 0; /* keys there but wrong were reported already */
        for (size_t i = 0; i + 1 < v->n; i += 2)
          if (v->kid[i]->type == N_SCALAR &&
              (strcmp(v->kid[i]->s, "kind") == 0 || strcmp(v->kid[i]->s, "path") == 0))
            given++;
        if (given < 2) ERR(x, v, "http.rules.custom needs kind and path");
        free(r->method);
        free(r->path);
        r->method = r->path = NULL;
      }
      return;
    case 7:
      http_rule_string(x, v, "http.rules.body", &r->body);
      return;
    case 8:
      http_rule_string(x, v, "http.rules.response_body", &r->response_body);
      return;
    case 9: /* additional_bindings */
      if (x->hrule_binding) {
        ERR(x, k, "http.rules.additional_bindings: bindings do not nest (one level only)");
        return;
      }
      if (v->type == N_BAD) return;
      if (v->type != N_SEQ) {
        ERR(x, v, "http.rules.additional_bindings: expected a list of bindings, got %s",
            kind_name(v));
        return;
      }
      for (size_t i = 0; i < v->n; i++) {
        mw_config_http_rule *grown =
            realloc(r->additional, (r->n_additional + 1) * sizeof *grown);
        if (!grown) {
          ERR(x, v, "http.rules: out of memory");
          return;
        }
        r->additional = grown;
        mw_config_http_rule *b = &r->additional[r->n_additional];
        *b = (mw_config_http_rule){0};
        http_rule_entry(x, c, v->kid[i], b, 1);
        x->hrule = r;
        if (b->method)
          r->n_additional++;
        else
          http_rule_clear(b);
      }
      return;
  }
}

/* One entry: a mapping of http_rule_keys; r is filled (method NULL when the
 * entry was not usable, errors reported). */
static void http_rule_entry(ctx *x, mw_config *c, const node *e, mw_config_http_rule *r,
                            int binding) {
  r->line = e->line;
  r->col = e->col;
  const char *what = binding ? "http.rules.additional_bindings" : "http.rules";
  if (e->type == N_BAD) return;
  if (e->type != N_MAP) {
    ERR(x, e, "%s: each entry must be a mapping (selector, get: /path...), got %s", what,
        kind_name(e));
    return;
  }
  x->hrule = r;
  x->hrule_binding = binding;
  walk_map(x, c, e, what, http_rule_keys, http_rule_pair);
  x->hrule_binding = 0;
  /* What is missing, unless it was there and already reported. */
  int has_selector = 0, has_pattern = 0;
  for (size_t i = 0; i + 1 < e->n; i += 2) {
    const node *k = e->kid[i];
    if (k->type != N_SCALAR) continue;
    for (int j = 0; j <= 6; j++) {
      if (strcmp(k->s, http_rule_keys[j]) == 0) {
        if (j == 0) has_selector = 1;
        else has_pattern = 1;
      }
    }
  }
  if (!binding && !has_selector)
    ERR(x, e, "http.rules: a rule needs a selector (the method it binds: pkg.Service.Method)");
  else if (!has_pattern)
    ERR(x, e, "%s: a rule needs one of get, put, post, delete, patch or custom", what);
  if (!binding && !r->selector) {
    free(r->method);
    r->method = NULL;
  }
}

/* http.rules: the list of rules. The function the http section calls. */
static void http_rules_value(ctx *x, mw_config *c, const node *v) {
  if (v->type == N_BAD || is_null(v)) return;
  if (v->type != N_SEQ) {
    ERR(x, v, "http.rules: expected a list of rules (- selector: pkg.Service.Method ...), got %s",
        kind_name(v));
    return;
  }
  for (size_t i = 0; i < v->n; i++) {
    mw_config_http_rule *grown = realloc(c->http_rules, (c->n_http_rules + 1) * sizeof *grown);
    if (!grown) {
      ERR(x, v, "http.rules: out of memory");
      return;
    }
    c->http_rules = grown;
    mw_config_http_rule *r = &c->http_rules[c->n_http_rules];
    *r = (mw_config_http_rule){0};
    http_rule_entry(x, c, v->kid[i], r, 0);
    x->hrule = NULL;
    if (r->method && r->selector)
      c->n_http_rules++;
    else
      http_rule_clear(r);
  }
}

/* sessions: NAME: {message: pkg.Type, history: {size: N, ttl: 60s},
 * buffer: 64, policy: block|drop_oldest|close, offset_field: name}. */
#define SESSION_MAX_HISTORY 1000000
#define SESSION_MAX_BUFFER 1000000

static void session_history_pair(ctx *x, mw_config *c, int idx, const node *k,
                                 const node *v) {
  char key[112];
  snprintf(key, sizeof key, "sessions.%s.history.%s", x->session->name,
           session_history_keys[idx]);
  int64_t val;
  if (idx == 0) {
    if (number_value(x, v, key, K_INT, 0, SESSION_MAX_HISTORY, &val) == 0)
      x->session->history_size = val;
  } else if (number_value(x, v, key, K_DURATION, 0, INT64_C(1) << 40, &val) == 0) {
    x->session->history_ttl_ms = val;
  }
}

/* A dotted protobuf name (pkg.Type), or a field name. */
static int proto_name(const char *s, size_t len, int dots) {
  if (len == 0 || len > 512 || s[0] == '.' || s[len - 1] == '.') return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    if (ch == '.' && dots && s[i + 1] != '.') continue;
    if (!isalnum((unsigned char)ch) && ch != '_') return 0;
  }
  return !isdigit((unsigned char)s[0]);
}

static void session_pair(ctx *x, mw_config *c, int idx, const node *k, const node *v) {
  mw_config_session *s = x->session;
  char key[96];
  snprintf(key, sizeof key, "sessions.%s.%s", s->name, session_keys[idx]);
  switch (idx) {
  case 0: /* message */
  case 1: /* offset_field */
    if (want_scalar(x, v, key, idx ? "a field name" : "a message type (pkg.Type)") != 0) return;
    if (!proto_name(v->s, v->len, idx == 0)) {
      ERR(x, v, "%s: '%s' is not %s", key, EX(v),
          idx ? "a field name" : "a full message type name such as chat.Event");
      return;
    }
    {
      char **dst = idx ? &s->offset_field : &s->message;
      free(*dst);
      *dst = strdup(v->s);
      if (!*dst) ERR(x, v, "out of memory");
    }
    return;
  case 2: /* history */
    if (want_section(x, v, key) == 0) walk_map(x, c, v, key, session_history_keys,
                                               session_history_pair);
    return;
  case 3: { /* buffer */
    int64_t val;
    if (number_value(x, v, key, K_INT, 1, SESSION_MAX_BUFFER, &val) == 0) s->buffer = val;
    return;
  }
  case 4: /* policy */
    if (want_scalar(x, v, key, "block, drop_oldest or close") != 0) return;
    if (strcmp(v->s, "block") == 0) s->policy = MW_CONFIG_SESS_BLOCK;
    else if (strcmp(v->s, "drop_oldest") == 0) s->policy = MW_CONFIG_SESS_DROP_OLDEST;
    else if (strcmp(v->s, "close") == 0) s->policy = MW_CONFIG_SESS_CLOSE;
    else ERR(x, v, "%s: expected block, drop_oldest or close, got '%s'", key, EX(v));
    return;
  case 5: /* redis: the URL is read in full when the room is made */
    if (want_scalar(x, v, key, "a redis:// URL") != 0) return;
    if (strncmp(v->s, "redis://", 8) != 0 || v->len <= 8 || v->s[8] == '/') {
      ERR(x, v, "%s: expected a redis://HOST[:PORT][/DB] URL, got '%s'", key, EX(v));
      return;
    }
    free(s->redis);
    s->redis = strdup(v->s);
    if (!s->redis) ERR(x, v, "out of memory");
    return;
  case 6: /* prefix */
    if (want_scalar(x, v, key, "a key prefix") != 0) return;
    if (v->len > 100 || strlen(v->s) != v->len) {
      ERR(x, v, "%s: expected a key prefix of at most 100 bytes, got '%s'", key, EX(v));
      return;
    }
    free(s->prefix);
    s->prefix = strdup(v->s);
    if (!s->prefix) ERR(x, v, "out of memory");
    return;
  case 7: { /* timeout */
    int64_t val;
    if (number_value(x, v, key, K_DURATION, 1, 3600000, &val) == 0) s->timeout_ms = val;
    return;
  }
  }
}

static void sessions_section(ctx *x, mw_config *c, const node *m) {
  if (want_section(x, m, "sessions") != 0) return;
  for (size_t i = 0; i + 1 < m->n; i += 2) {
    const node *k = m->kid[i], *v = m->kid[i + 1];
    if (k->type != N_SCALAR) {
      if (k->type != N_BAD) ERR(x, k, "keys must be plain strings, not %s", kind_name(k));
      continue;
    }
    if (!lua_identifier(k->s, k->len) || strlen(k->s) != k->len) {
      ERR(x, k, "sessions: '%s' is not a room name (letters, digits and _, not starting "
                "with a digit, at most 64, not a Lua keyword: it is spelt mw.sessions.NAME)",
          EX(k));
      continue;
    }
    int dup = 0;
    for (size_t j = 0; j < c->sessions.n && !dup; j++)
      dup = strcmp(c->sessions.v[j].name, k->s) == 0;
    if (dup) {
      ERR(x, k, "sessions: '%s' is listed twice", EX(k));
      continue;
    }
    if (v->type == N_BAD) continue;
    if (v->type != N_MAP) {
      ERR(x, v, "sessions.%s: expected a mapping with its message type "
                "(message: pkg.Event), got %s", k->s, kind_name(v));
      continue;
    }
    mw_config_session *grown = realloc(c->sessions.v, (c->sessions.n + 1) * sizeof *grown);
    char *name = grown ? strdup(k->s) : NULL;
    if (grown) c->sessions.v = grown;
    if (!name) {
      ERR(x, k, "out of memory");
      return;
    }
    mw_config_session *s = &c->sessions.v[c->sessions.n++];
    *s = (mw_config_session){.name = name, .buffer = 64, .policy = MW_CONFIG_SESS_BLOCK};
    x->session = s;
    char section[80];
    snprintf(section, sizeof section, "sessions.%s", name);
    walk_map(x, c, v, section, session_keys, session_pair);
    x->session = NULL;
    if (!s->message) {
      int given = 0; /* a message given but refused has its own error */
      for (size_t j = 0; j + 1 < v->n && !given; j += 2)
        given = v->kid[j]->type == N_SCALAR && strcmp(v->kid[j]->s, "message") == 0;
      if (!given)
        ERR(x, k, "sessions.%s: 'message' is required: the type every publication is "
                  "(for example message: chat.Event)", name);
    }
    if (!s->redis && (s->prefix || s->timeout_ms))
      ERR(x, k, "sessions.%s: 'prefix' and 'timeout' are for a room on Redis (redis: URL)",
          name);
  }
}

static void top_pair(ctx *x, mw_config *c, int idx, const node *k,
                     const node *v) {
  const char *key = top_keys[idx];
  switch (idx) {
  case 0: { /* listen */
    mw_strvec l = {0};
    if (string_or_list(x, v, key, "a HOST:PORT address", listen_elem, &l) ==
        0) {
      if (l.n == 0) {
        ERR(x, v, "listen: at least one address is required");
      } else {
        mw_strvec_free(&c->listen);
        c->listen = l;
        return;
      }
    }
    mw_strvec_free(&l);
    return;
  }
  case 1: { /* workers */
    const char *what = "'auto' or an integer from 1 to 256";
    if (want_scalar(x, v, key, what) != 0) return;
    if (strcmp(v->s, "auto") == 0) {
      c->workers = auto_workers();
      return;
    }
    uint64_t u;
    int r = parse_int(v->s, v->len, &u);
    if (r == NUM_BAD)
      ERR(x, v, "workers: expected %s, got '%s'", what, EX(v));
    else if (r != NUM_OK || u < 1 || u > WORKERS_MAX)
      ERR(x, v, "workers: '%s' is out of range (1 to %d)", EX(v),
          WORKERS_MAX);
    else
      c->workers = (int)u;
    return;
  }
  case 2:   /* services */
  case 3: { /* proto_path */
    mw_strvec l = {0};
    if (string_or_list(x, v, key, "a directory", dir_elem, &l) == 0) {
      mw_strvec *dst = idx == 2 ? &c->services : &c->proto_path;
      mw_strvec_free(dst);
      *dst = l;
      return;
    }
    mw_strvec_free(&l);
    return;
  }
  case 4:
    if (want_section(x, v, key) == 0)
      walk_map(x, c, v, key, limit_keys, limits_pair);
    return;
  case 5:
    if (want_section(x, v, key) == 0)
      walk_map(x, c, v, key, keepalive_keys, keepalive_pair);
    return;
  case 6:
    if (want_section(x, v, key) == 0)
      walk_map(x, c, v, key, reload_keys, reload_pair);
    return;
  case 7:
    if (want_section(x, v, key) == 0)
      walk_map(x, c, v, key, log_keys, log_pair);
    return;
  case 8: {
    int64_t val;
    if (number_value(x, v, key, K_DURATION, 0, INT32_MAX, &val) == 0)
      c->shutdown_grace_ms = val;
    return;
  }
  case 9: { /* protos */
    mw_strvec l = {0};
    if (string_or_list(x, v, key, "a .proto name", proto_elem, &l) == 0) {
      mw_strvec_free(&c->protos);
      c->protos = l;
      return;
    }
    mw_strvec_free(&l);
    return;
  }
  case 10:
    if (want_section(x, v, key) == 0)
      walk_map(x, c, v, key, shutdown_keys, shutdown_pair);
    return;
  case 11:
    bool_value(x, v, key, &c->health);
    return;
  case 12:
    bool_value(x, v, key, &c->reflection);
    return;
  case 13:
    if (want_section(x, v, key) == 0) tls_section(x, c, v);
    return;
  case 14:
    if (want_section(x, v, key) == 0) methods_section(x, c, v);
    return;
  case 15:
    if (want_section(x, v, key) == 0) walk_map(x, c, v, key, transport_keys, transport_pair);
    return;
  case 16:
    if (want_section(x, v, key) == 0)
      walk_map(x, c, v, key, lua_keys, lua_pair);
    return;
  case 17:
    if (want_section(x, v, key) == 0)
      walk_map(x, c, v, key, compression_keys, compression_pair);
    return;
  case 18: /* interceptors */
    interceptors_list(x, v, key, &c->interceptors);
    return;
  case 19: /* tracing */
    if (want_section(x, v, key) == 0) walk_map(x, c, v, key, tracing_keys, tracing_pair);
    return;
  case 20: /* admin */
    if (want_section(x, v, key) == 0) walk_map(x, c, v, key, admin_keys, admin_pair);
    return;
  case 21: /* metrics */
    if (want_section(x, v, key) == 0) walk_map(x, c, v, key, metrics_keys, metrics_pair);
    return;
  case 22: /* client */
    if (want_section(x, v, key) == 0) walk_map(x, c, v, key, client_keys, client_pair);
    return;
  case 23: /* shared */
    shared_section(x, c, v);
    return;
  case 24: /* sessions */
    sessions_section(x, c, v);
    return;
  case 25: /* http */
    if (want_section(x, v, key) == 0) walk_map(x, c, v, key, http_keys, http_pair);
    return;
  case 26: /* upstream: where stub mode forwards what nothing answers */
    upstream_value(x, c, v);
    return;
  case 27: /* console: the browser console on the HTTP (or admin) listener */
    bool_value(x, v, key, &c->console);
    return;
  default:
    return;
  }
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */

static int load(mw_config *c, const unsigned char *buf, size_t len,
                const char *name, const char *base_abs, mw_diag *diag) {
  ctx x = {0};
  x.name = name;
  x.base_dir = base_abs;
  node *root = parse_tree(&x, buf, len);
  if (root && root->type != N_BAD && !is_null(root)) {
    if (root->type != N_MAP)
      ERR(&x, root,
          "the top level of a config file must be a mapping ('key: value' "
          "lines), got %s",
          kind_name(root));
    else
      walk_map(&x, c, root, NULL, top_keys, top_pair);
  }
  node_free(root);
  return flush_errors(&x, diag) == 0 ? 0 : -1;
}

int mw_config_load_string(mw_config *c, const char *yaml, size_t len,
                          const char *name, const char *base_dir,
                          mw_diag *diag) {
  if (!name) name = "<string>";
  char *base = base_dir ? path_absolute(base_dir) : cwd_dup();
  if (!base) {
    mw_diag_add(diag, "%s: cannot determine the base directory: %s", name,
                strerror(errno));
    return -1;
  }
  int rc = load(c, (const unsigned char *)(yaml ? yaml : ""), yaml ? len : 0,
                name, base, diag);
  free(base);
  return rc;
}

int mw_config_load_file(mw_config *c, const char *path, mw_diag *diag) {
  char *abs = path_absolute(path);
  char *dir = abs ? path_dirname(abs) : NULL;
  if (!abs || !dir) {
    mw_diag_add(diag, "%s: cannot resolve the path: %s", path,
                strerror(errno ? errno : ENOMEM));
    free(abs);
    free(dir);
    return -1;
  }
  free(c->file);
  c->file = abs;

  char *buf = NULL;
  size_t len = 0;
  int err = 0;
  int rc = -1;
  switch (mw_fs_read(path, MAX_FILE_BYTES, &buf, &len, &err)) {
  case MW_FS_OK:
    rc = load(c, (const unsigned char *)buf, len, path, dir, diag);
    break;
  case MW_FS_EOPEN:
    mw_diag_add(diag, "%s: cannot open the config file: %s", path,
                strerror(err));
    break;
  case MW_FS_EREAD:
    mw_diag_add(diag, "%s: cannot read the config file: %s", path,
                strerror(err));
    break;
  case MW_FS_EISDIR:
    mw_diag_add(diag, "%s: is a directory, not a config file", path);
    break;
  case MW_FS_EBIG:
    mw_diag_add(diag, "%s: the config file is too large (over %u bytes)",
                path, MAX_FILE_BYTES);
    break;
  case MW_FS_ENOMEM:
    mw_diag_add(diag, "%s: out of memory", path);
    break;
  }
  free(buf);
  free(dir);
  return rc;
}
