/* The command line and the config it names. */
#include "cmd/cmd.h"
#include "core/mw_client.h"
#include "lua/l_api.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mw_fs.h"
#include "gen/mw_gen.h"
#include "schema/mw_schema.h"
#include "sessions/mw_sessions.h"
#include "shared/mw_shared.h"

static const char usage[] =
    "usage: moonwire serve [-c FILE] [--listen HOST:PORT] [TLS FILES] [DIR]\n"
    "       moonwire check [-c FILE] [TLS FILES] [DIR]\n"
    "       moonwire new DIR [--proto FILE]\n"
    "       moonwire test [-c FILE] [DIR]\n"
    "       moonwire call ADDR METHOD [JSON | @FILE | -] [OPTIONS]\n"
    "       moonwire list ADDR [SERVICE] [OPTIONS]\n"
    "       moonwire describe ADDR [SYMBOL] [OPTIONS]\n"
    "       moonwire --version | --help\n"
    "\n"
    "  serve   serve the .proto and .lua files of DIR (default: the config's\n"
    "          services, else the current directory); DIR/moonwire.yaml is\n"
    "          read as the config when -c is not given\n"
    "  check   load the config, protos and scripts, report every problem;\n"
    "          exit status 1 when there is any\n"
    "  new     make DIR a service directory that serves at once: FILE (and\n"
    "          its imports beside it) or a starter .proto, a .lua with a\n"
    "          handler for every method, a spec, a moonwire.yaml\n"
    "  test    run the *_spec.lua files of DIR with busted, against DIR's\n"
    "          services served in this process (docs/commands/test.md);\n"
    "          busted's output and exit status\n"
    "  call, list, describe\n"
    "          a client of any gRPC server: call a method with JSON, list\n"
    "          services and methods, describe them in .proto syntax\n"
    "          (moonwire call --help)\n"
    "\n"
    "  -c, --config FILE     YAML configuration (see docs/config.md)\n"
    "  -l, --listen ADDR     listen on ADDR instead of the config's listen;\n"
    "                        port 0 picks a free port\n"
    "      --admin ADDR      serve the admin listener (/metrics, /healthz,\n"
    "                        /readyz, /debug/...) on ADDR (admin.listen)\n"
    "      --http ADDR       serve gRPC-Web and Connect for browsers and HTTP\n"
    "                        clients on ADDR (http.listen)\n"
    "      --upstream ADDR   forward calls that no handler or stub answers to\n"
    "                        the gRPC server at ADDR (upstream); https://ADDR:\n"
    "                        over TLS, verified against the system's roots\n"
    "      --record DIR      write each call forwarded upstream, with its\n"
    "                        reply, as a stub file in DIR\n"
    "      --stub-all DIR    serve DIR, and answer every method that has no\n"
    "                        handler and no stub with a default message\n"
    "  -h, --help            this text\n"
    "  -V, --version         the version\n"
    "\n"
    "  TLS FILES (each replaces its key of the config's tls section; the\n"
    "  files are checked at start and re-read when they are replaced):\n"
    "      --tls-cert FILE       serve TLS on every listener with this PEM\n"
    "                            certificate, then its chain (tls.cert)\n"
    "      --tls-key FILE        the certificate's PEM private key (tls.key)\n"
    "      --tls-client-ca FILE  verify client certificates against these PEM\n"
    "                            CAs (tls.client_ca); with the config's\n"
    "                            tls.require_client_cert, one is required\n";

/* --tls-cert, --tls-key and --tls-client-ca, alone or as --NAME=FILE: the
 * field of o the flag sets, with *val the text after '=' (else NULL); NULL
 * when a is none of them. */
static const char **tls_flag(options *o, const char *a, const char **val) {
  static const struct {
    const char *name;
    size_t off;
  } flags[] = {{"--tls-cert", offsetof(options, tls_cert)},
               {"--tls-key", offsetof(options, tls_key)},
               {"--tls-client-ca", offsetof(options, tls_client_ca)}};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    size_t n = strlen(flags[i].name);
    if (strncmp(a, flags[i].name, n) != 0 || (a[n] != '\0' && a[n] != '='))
      continue;
    *val = a[n] == '=' ? a + n + 1 : NULL;
    return (const char **)(void *)((char *)o + flags[i].off);
  }
  return NULL;
}

int mw_cmd_parse(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  if (argc < 2) {
    fputs(usage, stderr);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **tls_field, *tls_val;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(usage, stdout);
      return 0;
    }
    if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
      printf("moonwire %s\n", MW_VERSION);
      return 0;
    }
    if (!strcmp(a, "-c") || !strcmp(a, "--config") || !strcmp(a, "-l") ||
        !strcmp(a, "--listen")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "moonwire: %s needs a value\n", a);
        return 2;
      }
      if (a[1] == 'c' || !strcmp(a, "--config")) {
        o->config = argv[++i];
      } else {
        o->listen = argv[++i];
      }
    } else if (!strncmp(a, "--config=", 9)) {
      o->config = a + 9;
    } else if (!strncmp(a, "--listen=", 9)) {
      o->listen = a + 9;
    } else if (!strcmp(a, "--proto")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "moonwire: %s needs a value\n", a);
        return 2;
      }
      o->proto = argv[++i];
    } else if (!strncmp(a, "--proto=", 8)) {
      o->proto = a + 8;
    } else if (!strcmp(a, "--admin")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "moonwire: %s needs a value\n", a);
        return 2;
      }
      o->admin = argv[++i];
    } else if (!strncmp(a, "--admin=", 8)) {
      o->admin = a + 8;
    } else if (!strcmp(a, "--http")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "moonwire: %s needs a value\n", a);
        return 2;
      }
      o->http = argv[++i];
    } else if (!strncmp(a, "--http=", 7)) {
      o->http = a + 7;
    } else if (!strcmp(a, "--upstream") || !strcmp(a, "--record")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "moonwire: %s needs a value\n", a);
        return 2;
      }
      if (a[2] == 'u') o->upstream = argv[++i];
      else o->record = argv[++i];
    } else if (!strncmp(a, "--upstream=", 11)) {
      o->upstream = a + 11;
    } else if (!strncmp(a, "--record=", 9)) {
      o->record = a + 9;
    } else if (!strcmp(a, "--stub-all") || !strncmp(a, "--stub-all=", 11)) {
      if (!a[10] && i + 1 >= argc) {
        fprintf(stderr, "moonwire: %s needs a directory\n", a);
        return 2;
      }
      if (o->dir) {
        fprintf(stderr, "moonwire: --stub-all names the directory: give DIR once\n");
        return 2;
      }
      o->dir = a[10] ? a + 11 : argv[++i];
      o->stub_all = 1;
    } else if ((tls_field = tls_flag(o, a, &tls_val))) {
      if (!tls_val && i + 1 >= argc) {
        fprintf(stderr, "moonwire: %s needs a value\n", a);
        return 2;
      }
      *tls_field = tls_val ? tls_val : argv[++i];
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "moonwire: unknown option %s\n\n%s", a, usage);
      return 2;
    } else if (!o->cmd) {
      o->cmd = a;
    } else if (!o->dir) {
      o->dir = a;
    } else {
      fprintf(stderr, "moonwire: unexpected argument %s\n", a);
      return 2;
    }
  }
  if (!o->cmd || (strcmp(o->cmd, "serve") && strcmp(o->cmd, "check") && strcmp(o->cmd, "new") &&
                 strcmp(o->cmd, "test"))) {
    fprintf(stderr, "moonwire: unknown command %s\n\n%s", o->cmd ? o->cmd : "", usage);
    return 2;
  }
  if ((o->upstream || o->record) && strcmp(o->cmd, "serve") && strcmp(o->cmd, "check")) {
    fprintf(stderr, "moonwire: --upstream and --record are options of moonwire serve\n");
    return 2;
  }
  if (o->stub_all && strcmp(o->cmd, "serve") && strcmp(o->cmd, "check")) {
    fprintf(stderr, "moonwire: --stub-all is an option of moonwire serve\n");
    return 2;
  }
  if (!strcmp(o->cmd, "test") && (o->listen || o->admin || o->http || o->tls_cert ||
                                  o->tls_key || o->tls_client_ca)) {
    fprintf(stderr, "moonwire: moonwire test serves on a free loopback port, in "
                    "plaintext: --listen, --admin, --http and --tls-* are options of serve\n");
    return 2;
  }
  if (o->proto && strcmp(o->cmd, "new")) {
    fprintf(stderr, "moonwire: --proto is an option of moonwire new\n");
    return 2;
  }
  return -1; /* go on */
}

void mw_cmd_print_diag(const mw_diag *d) {
  for (size_t i = 0; i < d->n && i < d->cap; i++)
    if (d->msgs[i]) fprintf(stderr, "%s\n", d->msgs[i]);
}

/* One --tls-* flag over its key: the path made absolute against the current
 * directory (lexically, like the config's: a symbolic link stays one). */
static void tls_override(const char *flag, const char *val, char **dst,
                         mw_diag *diag) {
  if (!val) return;
  if (!*val) {
    mw_diag_add(diag, "%s: empty path", flag);
    return;
  }
  char cwd[PATH_MAX] = "/";
  if (val[0] != '/' && !getcwd(cwd, sizeof cwd)) {
    mw_diag_add(diag, "%s: cannot determine the current directory: %s", flag,
                strerror(errno));
    return;
  }
  char *abs = mw_fs_join_norm(cwd, val);
  if (!abs) {
    mw_diag_add(diag, "%s: out of memory", flag);
    return;
  }
  free(*dst);
  *dst = abs;
}

/* The --tls-* flags on top of the config's tls section, and what the keys
 * need of each other once both are merged. */
static void apply_tls_flags(const options *o, mw_config *cfg, mw_diag *diag) {
  if (!o->tls_cert && !o->tls_key && !o->tls_client_ca) return;
  tls_override("--tls-cert", o->tls_cert, &cfg->tls.cert, diag);
  tls_override("--tls-key", o->tls_key, &cfg->tls.key, diag);
  tls_override("--tls-client-ca", o->tls_client_ca, &cfg->tls.client_ca, diag);
  if (cfg->tls.cert && !cfg->tls.key)
    mw_diag_add(diag, "--tls-cert needs --tls-key (or tls.key in the config)");
  if (cfg->tls.key && !cfg->tls.cert)
    mw_diag_add(diag, "--tls-key needs --tls-cert (or tls.cert in the config)");
  if (cfg->tls.client_ca && !cfg->tls.cert)
    mw_diag_add(diag, "--tls-client-ca needs --tls-cert and --tls-key: client "
                      "certificates are only asked for over TLS");
}

/* The config: -c FILE, else DIR/moonwire.yaml when there is one; then the
 * command line on top. A DIR given with -c replaces the config's services;
 * a config without services serves DIR (default: the current directory). */
int mw_cmd_load_config(const options *o, mw_config *cfg, mw_diag *diag) {
  mw_config_init(cfg);
  const char *dir = o->dir ? o->dir : (o->config ? NULL : ".");
  char real[PATH_MAX];
  if (dir) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || !realpath(dir, real)) {
      mw_diag_add(diag, "%s: not a directory", dir);
      return -1;
    }
  }
  int had_file = 1;
  if (o->config) {
    mw_config_load_file(cfg, o->config, diag);
  } else {
    char implicit[PATH_MAX + 16];
    snprintf(implicit, sizeof implicit, "%s/moonwire.yaml", real);
    if (access(implicit, F_OK) == 0) mw_config_load_file(cfg, implicit, diag);
    else had_file = 0;
  }
  /* `moonwire serve DIR` at a terminal, with no config at all: someone
   * trying things out, who should see each call arrive. Piped or run by a
   * supervisor, or with any config file, nothing changes. */
  if (!had_file && o->cmd && !strcmp(o->cmd, "serve") && cfg->interceptors.n == 0 &&
      isatty(STDERR_FILENO)) {
    mw_config_interceptor *e = calloc(1, sizeof *e);
    char *name = strdup("access_log"), *where = strdup("(serve DIR at a terminal)");
    if (e && name && where) {
      e->name = name;
      e->where = where;
      e->opts.type = MW_CV_MAP;
      cfg->interceptors.v = e;
      cfg->interceptors.n = 1;
    } else {
      free(e);
      free(name);
      free(where);
    }
  }
  if (dir && (o->config || cfg->services.n == 0)) mw_strvec_set1(&cfg->services, real);
  if (o->listen) {
    const char *problem = mw_config_check_address(o->listen);
    if (problem) {
      mw_diag_add(diag, "--listen %s: %s", o->listen, problem);
    } else {
      mw_strvec_set1(&cfg->listen, o->listen);
    }
  }
  if (o->admin) {
    const char *problem = mw_config_check_address(o->admin);
    char *copy = problem ? NULL : strdup(o->admin);
    if (problem) {
      mw_diag_add(diag, "--admin %s: %s", o->admin, problem);
    } else if (!copy) {
      mw_diag_add(diag, "--admin: out of memory");
    } else {
      free(cfg->admin.listen);
      cfg->admin.listen = copy;
    }
  }
  if (o->http) {
    const char *problem = mw_config_check_address(o->http);
    char *copy = problem ? NULL : strdup(o->http);
    if (problem) {
      mw_diag_add(diag, "--http %s: %s", o->http, problem);
    } else if (!copy) {
      mw_diag_add(diag, "--http: out of memory");
    } else {
      free(cfg->http.listen);
      cfg->http.listen = copy;
    }
  }
  if (o->stub_all) cfg->stub_all = 1;
  if (o->upstream) {
    int tls = 0;
    const char *addr = mw_config_upstream_address(o->upstream, &tls);
    const char *problem = mw_config_check_address(addr);
    char *copy = problem ? NULL : strdup(addr);
    if (problem) {
      mw_diag_add(diag, "--upstream %s: %s", o->upstream, problem);
    } else if (!copy) {
      mw_diag_add(diag, "--upstream: out of memory");
    } else {
      /* The flag names the upstream anew: the config's TLS files were
       * for the config's upstream. */
      free(cfg->upstream);
      cfg->upstream = copy;
      free(cfg->upstream_tls.ca);
      free(cfg->upstream_tls.cert);
      free(cfg->upstream_tls.key);
      free(cfg->upstream_tls.server_name);
      memset(&cfg->upstream_tls, 0, sizeof cfg->upstream_tls);
      cfg->upstream_tls.tls = tls;
    }
  }
  if (o->record) {
    /* Made if missing (one level), so that `--record out` just works. */
    char cwd[PATH_MAX] = "/";
    struct stat st;
    char *abs = (o->record[0] == '/' || getcwd(cwd, sizeof cwd)) ? mw_fs_join_norm(cwd, o->record)
                                                                  : NULL;
    if (!abs) {
      mw_diag_add(diag, "--record %s: cannot make the path absolute", o->record);
    } else if (stat(abs, &st) != 0 && mkdir(abs, 0777) != 0) {
      mw_diag_add(diag, "--record %s: %s", o->record, strerror(errno));
      free(abs);
    } else if (stat(abs, &st) != 0 || !S_ISDIR(st.st_mode)) {
      mw_diag_add(diag, "--record %s: not a directory", o->record);
      free(abs);
    } else {
      free(cfg->record);
      cfg->record = abs;
    }
    if (!cfg->upstream && abs && cfg->record == abs)
      mw_diag_add(diag, "--record needs an upstream (--upstream ADDR or upstream: in the config)");
  }
  apply_tls_flags(o, cfg, diag);
  return mw_diag_count(diag) ? -1 : 0;
}


int mw_cmd_client_configure(const mw_config *cfg) {
  /* The upstream is reachable whatever client.allow says: naming it is
   * the permission. mw_client_configure copies the list. */
  const char *allow[cfg->client.allow.n + 1];
  size_t n_allow = 0;
  for (size_t i = 0; i < cfg->client.allow.n; i++) allow[n_allow++] = cfg->client.allow.v[i];
  if (cfg->upstream) allow[n_allow++] = cfg->upstream;
  mw_client_policy p = {
      .allow = allow,
      .n_allow = n_allow,
      .max_receive_bytes = (size_t)cfg->client.max_receive_bytes,
      .max_metadata_bytes = (size_t)cfg->client.max_metadata_bytes,
      .keepalive_ms = (int)cfg->client.keepalive_ms,
      .connect_timeout_ms = (int)cfg->client.connect_timeout_ms,
      .max_backoff_ms = (int)cfg->client.max_backoff_ms,
      .max_channels = (int)cfg->client.max_channels,
  };
  if (mw_lclient_configure((double)cfg->client.deadline_margin_ms / 1000.0,
                           (const char *const *)cfg->client.propagate.v,
                           cfg->client.propagate.n) != 0)
    return -1;
  return mw_client_configure(&p);
}

int mw_cmd_shared_configure(const mw_config *cfg, mw_diag *warnings, mw_diag *errors) {
  mw_shared_spec *specs = calloc(cfg->shared.n ? cfg->shared.n : 1, sizeof *specs);
  if (!specs) {
    mw_diag_add(errors, "shared dicts: out of memory");
    return -1;
  }
  for (size_t i = 0; i < cfg->shared.n; i++)
    specs[i] = (mw_shared_spec){.name = cfg->shared.v[i].name,
                                .size = cfg->shared.v[i].redis ? 0 : (size_t)cfg->shared.v[i].size,
                                .redis = cfg->shared.v[i].redis,
                                .prefix = cfg->shared.v[i].prefix,
                                .timeout_ms = cfg->shared.v[i].timeout_ms};
  int rc = mw_shared_configure(specs, cfg->shared.n, warnings, errors);
  free(specs);
  /* The session rooms share the dicts' lifetime and moment: made before the
   * scripts that use them, kept across reloads. */
  mw_sess_spec *ss = calloc(cfg->sessions.n ? cfg->sessions.n : 1, sizeof *ss);
  if (!ss) {
    mw_diag_add(errors, "sessions: out of memory");
    return -1;
  }
  for (size_t i = 0; i < cfg->sessions.n; i++) {
    const mw_config_session *s = &cfg->sessions.v[i];
    ss[i] = (mw_sess_spec){.name = s->name,
                           .message = s->message,
                           .offset_field = s->offset_field,
                           .history_size = (size_t)s->history_size,
                           .history_ttl_ms = s->history_ttl_ms,
                           .buffer = (size_t)s->buffer,
                           .redis = s->redis,
                           .prefix = s->prefix,
                           .timeout_ms = s->timeout_ms,
                           .policy = s->policy == MW_CONFIG_SESS_CLOSE ? MW_SESS_CLOSE
                                     : s->policy == MW_CONFIG_SESS_DROP_OLDEST
                                         ? MW_SESS_DROP_OLDEST
                                         : MW_SESS_BLOCK};
  }
  if (mw_sessions_configure(ss, cfg->sessions.n, warnings, errors) != 0) rc = -1;
  free(ss);
  return rc;
}

int mw_cmd_nothing_to_serve(const mw_config *cfg, const mw_gen *g, mw_diag *diag) {
  const mw_schema *schema = mw_gen_schema(g);
  for (size_t i = 0; i < mw_schema_service_count(schema); i++)
    if (!mw_gen_is_builtin_service(g, mw_schema_service(schema, i))) return 0;
  const char *dir = cfg->services.n ? cfg->services.v[0] : ".";
  if (cfg->services.n > 1)
    mw_diag_add(diag, "nothing to serve: no .proto in the %zu service directories (%s, ...) "
                      "defines a service", cfg->services.n, dir);
  else
    mw_diag_add(diag, "nothing to serve: no .proto in %s defines a service (moonwire new %s "
                      "writes a starter one)", dir, dir);
  return 1;
}
