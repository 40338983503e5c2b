/* The command line of call / list / describe, and their schema (client.h). */
#include "cmd/client.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_buf.h"
#include "base/mw_fs.h"

/* A descriptor set larger than this is not one someone hands a client. */
#define MW_CLI_PROTOSET_MAX (64u << 20)

static const char usage[] =
    "usage: moonwire call ADDR METHOD [JSON | @FILE | -] [OPTIONS]\n"
    "       moonwire list ADDR [SERVICE] [OPTIONS]\n"
    "       moonwire describe ADDR [SYMBOL] [OPTIONS]\n"
    "\n"
    "  call      call METHOD (pkg.Service/Method or pkg.Service.Method) with\n"
    "            a request in proto3 JSON: the argument, @FILE, or - for\n"
    "            stdin (default: {} for unary and server-streaming methods,\n"
    "            stdin for client- and bidi-streaming ones). Streams read\n"
    "            and write NDJSON: one message a line. The response goes to\n"
    "            stdout (indented at a terminal); a failure's status,\n"
    "            message and error details to stderr\n"
    "  list      the server's services; with SERVICE, its methods\n"
    "  describe  SYMBOL (a service, method, message or enum) in .proto\n"
    "            syntax; without SYMBOL, every service\n"
    "\n"
    "  ADDR is HOST:PORT, [IPv6]:PORT or unix:PATH. The schema comes from\n"
    "  the server's reflection unless --proto or --protoset is given (then\n"
    "  list and describe need no ADDR).\n"
    "\n"
    "  -H, --header 'KEY: VALUE'  request metadata (repeatable); a -bin\n"
    "                          key's VALUE is base64\n"
    "      --deadline DUR      give up after DUR (1.5, 1.5s, 200ms, 2m)\n"
    "  -v, --verbose           print the request metadata, the response\n"
    "                          headers and trailers to stderr\n"
    "      --emit-defaults     print fields at their default value too\n"
    "      --plaintext         no TLS (the default without a TLS option)\n"
    "      --tls               TLS, verified against the system's roots\n"
    "      --cacert FILE       TLS, verified against these PEM roots\n"
    "      --cert FILE         client certificate (PEM; with --key)\n"
    "      --key FILE          its private key (PEM)\n"
    "      --servername NAME   the name the server's certificate must carry\n"
    "      --insecure          TLS without verifying the server's certificate\n"
    "      --proto FILE        the schema from this .proto (repeatable)\n"
    "  -I, --import-path DIR   where --proto's imports are (repeatable)\n"
    "      --protoset FILE     the schema from this descriptor set (repeatable)\n"
    "  -h, --help              this text\n"
    "\n"
    "  Exit status: 0 OK; the gRPC status code (1-16) of a failed call or\n"
    "  reflection request; 64 a usage error; 65 a local error (a file, the\n"
    "  request JSON, the schema).\n";

int mw_cli_fail(const mw_cli *c, int rc, const char *msg) {
  fprintf(stderr, "moonwire %s: %s\n", c->cmd ? c->cmd : "", msg);
  return rc;
}

static int usage_error(const mw_cli *c, const char *fmt, const char *arg) {
  fprintf(stderr, "moonwire %s: ", c->cmd);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (moonwire %s --help)\n", c->cmd);
  return MW_CLI_USAGE;
}

/* "1.5", "1.5s", "200ms", "2m" in seconds; -1 when not a duration. */
static double parse_duration(const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || !(v > 0) || v > 1e9) return -1;
  if (!strcmp(end, "") || !strcmp(end, "s")) return v;
  if (!strcmp(end, "ms")) return v / 1000;
  if (!strcmp(end, "m")) return v * 60;
  if (!strcmp(end, "h")) return v * 3600;
  return -1;
}

static signed char b64_val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return (signed char)(c - 'A');
  if (c >= 'a' && c <= 'z') return (signed char)(c - 'a' + 26);
  if (c >= '0' && c <= '9') return (signed char)(c - '0' + 52);
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

char *mw_cli_unbase64(const char *s, size_t n, size_t *len) {
  while (n && s[n - 1] == '=') n--;
  if (n % 4 == 1) return NULL;
  char *out = malloc(n / 4 * 3 + 3);
  if (!out) return NULL;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    signed char v = b64_val((unsigned char)s[i]);
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (char)(acc >> bits & 0xff);
    }
  }
  *len = o;
  return out;
}

void mw_cli_base64(mw_buf *b, const char *s, size_t n) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
    if (i + 1 < n) v |= (uint32_t)(unsigned char)s[i + 1] << 8;
    if (i + 2 < n) v |= (unsigned char)s[i + 2];
    char q[4] = {t[v >> 18 & 63], t[v >> 12 & 63], i + 1 < n ? t[v >> 6 & 63] : '=',
                 i + 2 < n ? t[v & 63] : '='};
    mw_buf_put(b, q, 4);
  }
}

/* -H 'key: value': the key lowercased (HTTP/2 wants it so), checked; the
 * value trimmed, decoded for -bin keys. */
static int add_header(mw_cli *c, const char *h) {
  const char *colon = strchr(h, ':');
  if (!colon || colon == h)
    return usage_error(c, "-H %s: a header is 'KEY: VALUE'", h);
  size_t kl = (size_t)(colon - h);
  while (kl && h[kl - 1] == ' ') kl--;
  char *key = strndup(h, kl);
  if (!key) return mw_cli_fail(c, MW_CLI_LOCAL, "out of memory");
  for (char *p = key; *p; p++) {
    *p = (char)tolower((unsigned char)*p);
    if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.')) {
      free(key);
      return usage_error(c, "-H %s: a metadata key has only letters, digits, - _ and .", h);
    }
  }
  const char *v = colon + 1;
  while (*v == ' ' || *v == '\t') v++;
  size_t vl = strlen(v);
  while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
  char *val;
  size_t len = vl;
  if (kl > 4 && !strcmp(key + kl - 4, "-bin")) {
    val = mw_cli_unbase64(v, vl, &len);
    if (!val) {
      free(key);
      return usage_error(c, "-H %s: the value of a -bin key is base64", h);
    }
  } else {
    val = strndup(v, vl);
  }
  mw_rpc_md *md = realloc(c->md, (c->n_md + 1) * sizeof *md);
  if (!md || !val) {
    free(key);
    free(val);
    if (md) c->md = md;
    return mw_cli_fail(c, MW_CLI_LOCAL, "out of memory");
  }
  c->md = md;
  c->md[c->n_md++] = (mw_rpc_md){key, val, len};
  return -1;
}

void mw_cli_free(mw_cli *c) {
  for (size_t i = 0; i < c->n_md; i++) {
    free((char *)c->md[i].key);
    free((char *)c->md[i].val);
  }
  free(c->md);
  c->md = NULL;
  c->n_md = 0;
  mw_strvec_free(&c->protos);
  mw_strvec_free(&c->includes);
  mw_strvec_free(&c->protosets);
}

/* The flags that take a value: the long name, the short one (or NULL). */
enum { F_HEADER, F_DEADLINE, F_CACERT, F_CERT, F_KEY, F_SERVERNAME, F_PROTO, F_IMPORT,
       F_PROTOSET, F_NVALUED };
static const char *const valued[F_NVALUED][2] = {
    {"--header", "-H"}, {"--deadline", NULL}, {"--cacert", NULL}, {"--cert", NULL},
    {"--key", NULL}, {"--servername", NULL}, {"--proto", NULL}, {"--import-path", "-I"},
    {"--protoset", NULL}};

int mw_cli_parse(int argc, char **argv, mw_cli *c) {
  memset(c, 0, sizeof *c);
  c->cmd = argv[1];
  int plaintext = 0;
  const char *addr = NULL;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage, stdout);
      return 0;
    }
    if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      c->verbose = 1;
      continue;
    }
    if (!strcmp(a, "--emit-defaults")) {
      c->emit_defaults = 1;
      continue;
    }
    if (!strcmp(a, "--plaintext")) {
      plaintext = 1;
      continue;
    }
    if (!strcmp(a, "--tls")) {
      c->target.tls = 1;
      continue;
    }
    if (!strcmp(a, "--insecure")) {
      c->target.tls = c->target.insecure = 1;
      continue;
    }
    int flag = -1;
    const char *val = NULL;
    for (int f = 0; f < F_NVALUED && flag < 0; f++) {
      size_t n = strlen(valued[f][0]);
      if (!strcmp(a, valued[f][0]) || (valued[f][1] && !strcmp(a, valued[f][1]))) {
        flag = f;
      } else if (!strncmp(a, valued[f][0], n) && a[n] == '=') {
        flag = f;
        val = a + n + 1;
      } else if (valued[f][1] && !strncmp(a, valued[f][1], 2) && a[2]) {
        flag = f; /* -Ifoo, -H'k: v' */
        val = a + 2;
      }
    }
    if (flag >= 0 && !val) {
      if (i + 1 >= argc) return usage_error(c, "%s needs a value", a);
      val = argv[++i];
    }
    int rc = -1;
    switch (flag) {
      case F_HEADER: rc = add_header(c, val); break;
      case F_DEADLINE:
        if ((c->deadline_s = parse_duration(val)) < 0)
          rc = usage_error(c, "--deadline %s: not a duration (1.5, 1.5s, 200ms, 2m)", val);
        break;
      case F_CACERT: c->target.cacert = val, c->target.tls = 1; break;
      case F_CERT: c->target.cert = val, c->target.tls = 1; break;
      case F_KEY: c->target.key = val, c->target.tls = 1; break;
      case F_SERVERNAME: c->target.servername = val, c->target.tls = 1; break;
      case F_PROTO: rc = mw_strvec_push(&c->protos, val) ? MW_CLI_LOCAL : -1; break;
      case F_IMPORT: rc = mw_strvec_push(&c->includes, val) ? MW_CLI_LOCAL : -1; break;
      case F_PROTOSET: rc = mw_strvec_push(&c->protosets, val) ? MW_CLI_LOCAL : -1; break;
      default:
        if (a[0] == '-' && a[1]) {
          rc = usage_error(c, "unknown option %s", a);
        } else if (!addr) {
          addr = a;
        } else if (c->n_args < 2) {
          c->args[c->n_args++] = a;
        } else {
          rc = usage_error(c, "unexpected argument %s", a);
        }
        break;
    }
    if (rc >= 0) return rc;
  }
  /* list and describe over --proto / --protoset ask no server: ADDR may be
   * left out (an address has a ':', a symbol never does). */
  int local = c->protos.n || c->protosets.n;
  if (local && strcmp(c->cmd, "call") && addr && !strchr(addr, ':')) {
    if (c->n_args == 2) return usage_error(c, "unexpected argument %s", c->args[1]);
    c->args[1] = c->args[0];
    c->args[0] = addr;
    c->n_args = c->n_args ? 2 : 1;
    addr = NULL;
  }
  if (!addr && !(local && strcmp(c->cmd, "call")))
    return usage_error(c, "%s", "no ADDR given");
  /* `-` as the request is an argument, not an option: taken above. */
  if (addr && (!strncmp(addr, "unix:", 5) ? !addr[5] : !strchr(addr, ':')))
    return usage_error(c, "%s: ADDR is HOST:PORT, [IPv6]:PORT or unix:PATH", addr);
  c->target.addr = addr;
  if (plaintext && c->target.tls)
    return usage_error(c, "%s", "--plaintext and a TLS option (--tls, --cacert, --cert, "
                                 "--key, --servername, --insecure) do not go together");
  if ((c->target.cert != NULL) != (c->target.key != NULL))
    return usage_error(c, "%s", c->target.cert ? "--cert needs --key" : "--key needs --cert");
  if (c->includes.n && !c->protos.n)
    return usage_error(c, "%s", "-I is for --proto's imports: give --proto FILE too");
  if (!strcmp(c->cmd, "call") && c->n_args < 1)
    return usage_error(c, "%s", "no METHOD given");
  if (strcmp(c->cmd, "call") && c->n_args > 1)
    return usage_error(c, "unexpected argument %s", c->args[1]);
  return -1;
}

int mw_cli_local_schema(const mw_cli *c) { return c->protos.n || c->protosets.n; }

mw_schema *mw_cli_new_schema(void) { return mw_schema_new(); }

int mw_cli_finish_schema(mw_schema *s, char *err, size_t errlen) {
  mw_diag diag = {0};
  int rc = mw_schema_add_rpc_types(s, &diag);
  if (rc != 0)
    snprintf(err, errlen, "%s", diag.n && diag.msgs[0] ? diag.msgs[0] : "google.rpc types");
  mw_diag_free(&diag);
  return rc;
}

/* Every message of diag in err, one a line. */
static void diag_to(const mw_diag *d, char *err, size_t errlen) {
  mw_buf b = {0};
  for (size_t i = 0; i < d->n && i < d->cap; i++)
    if (d->msgs[i]) mw_buf_printf(&b, "%s%s", b.len ? "\n" : "", d->msgs[i]);
  snprintf(err, errlen, "%s", b.p ? b.p : "the schema cannot be loaded");
  mw_buf_free(&b);
}

mw_schema *mw_cli_load_files(const mw_cli *c, char *err, size_t errlen) {
  mw_schema *s = mw_schema_new();
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  mw_diag diag = {0};
  int ok = 1;
  for (size_t i = 0; ok && i < c->protosets.n; i++) {
    char *data = NULL;
    size_t len = 0;
    int e = 0;
    if (mw_fs_read(c->protosets.v[i], MW_CLI_PROTOSET_MAX, &data, &len, &e) != MW_FS_OK) {
      mw_diag_add(&diag, "--protoset %s: %s", c->protosets.v[i], strerror(e));
      ok = 0;
    } else {
      ok = mw_schema_add_set(s, data, len, c->protosets.v[i], &diag) == 0;
    }
    free(data);
  }
  if (ok && c->protos.n) {
    /* Without -I, each file's own directory is where it and its imports
     * are found, as protoc does with "." for a file given by its name. */
    mw_strvec incs = {0}, names = {0};
    for (size_t i = 0; i < c->includes.n; i++) mw_strvec_push(&incs, c->includes.v[i]);
    for (size_t i = 0; i < c->protos.n; i++) {
      const char *p = c->protos.v[i];
      const char *slash = strrchr(p, '/');
      if (c->includes.n || !slash) {
        mw_strvec_push(&names, p);
        if (!c->includes.n && !mw_strvec_has(&incs, ".")) mw_strvec_push(&incs, ".");
      } else {
        char *dir = strndup(p, (size_t)(slash - p) + (slash == p));
        if (dir && !mw_strvec_has(&incs, dir)) mw_strvec_push(&incs, dir);
        free(dir);
        mw_strvec_push(&names, slash + 1);
      }
    }
    size_t len = 0;
    char *set = mw_protoc_compile((const char *const *)names.v, names.n,
                                  (const char *const *)incs.v, incs.n, &len, &diag);
    ok = set && mw_schema_add_set(s, set, len, "--proto", &diag) == 0;
    free(set);
    mw_strvec_free(&incs);
    mw_strvec_free(&names);
  }
  if (ok) ok = mw_schema_add_rpc_types(s, &diag) == 0;
  if (!ok) {
    diag_to(&diag, err, errlen);
    mw_diag_free(&diag);
    mw_schema_free(s);
    return NULL;
  }
  mw_diag_free(&diag);
  return s;
}
