/* moonwire: the command-line entry point (serve, check). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mw_call.h"
#include "mw_config.h"
#include "mw_diag.h"
#include "mw_gen.h"
#include "mw_log.h"
#include "mw_server.h"

static const char usage[] =
    "usage: moonwire serve [-c FILE] [--listen HOST:PORT] [DIR]\n"
    "       moonwire check [-c FILE] [DIR]\n"
    "       moonwire --version | --help\n"
    "\n"
    "  serve   serve the .proto and .lua files of DIR (default: the config's\n"
    "          services, else the current directory); DIR/moonwire.yaml is\n"
    "          read as the config when -c is not given\n"
    "  check   load the config, protos and scripts, report every problem;\n"
    "          exit status 1 when there is any\n"
    "\n"
    "  -c, --config FILE     YAML configuration (see docs/config.md)\n"
    "  -l, --listen ADDR     listen on ADDR instead of the config's listen;\n"
    "                        port 0 picks a free port\n"
    "  -h, --help            this text\n"
    "  -V, --version         the version\n";

typedef struct options {
  const char *cmd;
  const char *config;
  const char *listen;
  const char *dir;
} options;

static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  if (argc < 2) {
    fputs(usage, stderr);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
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
  if (!o->cmd || (strcmp(o->cmd, "serve") && strcmp(o->cmd, "check"))) {
    fprintf(stderr, "moonwire: unknown command %s\n\n%s", o->cmd ? o->cmd : "", usage);
    return 2;
  }
  return -1; /* go on */
}

static void print_diag(const mw_diag *d) {
  for (size_t i = 0; i < d->n && i < d->cap; i++)
    if (d->msgs[i]) fprintf(stderr, "%s\n", d->msgs[i]);
}

/* The config: -c FILE, else DIR/moonwire.yaml when there is one; then the
 * command line on top. A DIR given with -c replaces the config's services;
 * a config without services serves DIR (default: the current directory). */
static int load_config(const options *o, mw_config *cfg, mw_diag *diag) {
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
  if (o->config) {
    mw_config_load_file(cfg, o->config, diag);
  } else {
    char implicit[PATH_MAX + 16];
    snprintf(implicit, sizeof implicit, "%s/moonwire.yaml", real);
    if (access(implicit, F_OK) == 0) mw_config_load_file(cfg, implicit, diag);
  }
  if (dir && (o->config || cfg->services.n == 0)) mw_strlist_set1(&cfg->services, real);
  if (o->listen) mw_strlist_set1(&cfg->listen, o->listen);
  return mw_diag_count(diag) ? -1 : 0;
}

static size_t count_handlers(const mw_gen *g) {
  size_t n = 0;
  for (size_t i = 0; i < g->n_methods; i++) n += g->handlers[0][i] >= 0;
  return n;
}

static int cmd_check(const options *o) {
  mw_config cfg;
  mw_diag diag = {0};
  load_config(o, &cfg, &diag);
  mw_gen *g = NULL;
  if (cfg.services.n) {
    mw_gen_options go = {.config = &cfg, .n_states = 1, .mem = NULL, .id = 1};
    g = mw_gen_build(&go, &diag);
  }
  int rc = 0;
  if (mw_diag_count(&diag)) {
    print_diag(&diag);
    fprintf(stderr, "%zu problem%s found\n", mw_diag_count(&diag),
            mw_diag_count(&diag) == 1 ? "" : "s");
    rc = 1;
  } else {
    printf("ok: %zu service%s, %zu method%s, %zu with handlers\n",
           mw_schema_service_count(g->schema),
           mw_schema_service_count(g->schema) == 1 ? "" : "s", g->n_methods,
           g->n_methods == 1 ? "" : "s", count_handlers(g));
  }
  mw_gen_unref(g);
  mw_diag_free(&diag);
  mw_config_free(&cfg);
  return rc;
}

static int cmd_serve(const options *o) {
  mw_config cfg;
  mw_diag diag = {0};
  if (load_config(o, &cfg, &diag) != 0) {
    print_diag(&diag);
    mw_diag_free(&diag);
    mw_config_free(&cfg);
    return 1;
  }
  mw_log_configure((mw_log_level)cfg.log.level, cfg.log.json, 2);

  /* Signals are taken synchronously by this thread; workers never see them. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  int workers = cfg.workers;
  mw_lua_mem *mem = calloc((size_t)workers, sizeof *mem);
  if (!mem) {
    fprintf(stderr, "moonwire: out of memory\n");
    return 1;
  }
  for (int i = 0; i < workers; i++) mem[i].limit = (size_t)cfg.limits.lua_memory_mb << 20;

  unsigned gen_id = 1;
  mw_gen_options go = {.config = &cfg, .n_states = workers, .mem = mem, .id = gen_id};
  mw_gen *g = mw_gen_build(&go, &diag);
  mw_server *s = g ? mw_server_new(&cfg, g, &diag) : NULL;
  if (!s || mw_server_start(s) != 0) {
    print_diag(&diag);
    if (s) fprintf(stderr, "moonwire: cannot start the server\n");
    mw_server_free(s);
    mw_gen_unref(g);
    mw_diag_free(&diag);
    mw_config_free(&cfg);
    free(mem);
    return 1;
  }
  mw_log(MW_LOG_INFO, "serving %zu method(s) with %zu handler(s) on %d worker(s)",
         g->n_methods, count_handlers(g), workers);
  mw_gen_unref(g); /* the server holds its own reference */
  for (size_t i = 0; i < mw_server_listener_count(s); i++) {
    printf("listening on %s\n", mw_server_listener(s, i));
  }
  fflush(stdout);

  for (;;) {
    int sig = 0;
    if (sigwait(&sigs, &sig) != 0) continue;
    if (sig == SIGHUP) {
      mw_diag rd = {0};
      mw_gen_options ro = {.config = &cfg, .n_states = workers, .mem = mem, .id = ++gen_id};
      mw_gen *ng = mw_gen_build(&ro, &rd);
      if (ng) {
        mw_server_swap_gen(s, ng);
        mw_gen_unref(ng);
        mw_log(MW_LOG_INFO, "reloaded (generation %u)", gen_id);
      } else {
        for (size_t i = 0; i < rd.n && i < rd.cap; i++)
          if (rd.msgs[i]) mw_log(MW_LOG_ERROR, "reload failed: %s", rd.msgs[i]);
      }
      mw_diag_free(&rd);
      continue;
    }
    mw_log(MW_LOG_INFO, "%s: stopping (grace %lld ms)",
           sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)cfg.shutdown_grace_ms);
    break;
  }
  mw_server_stop(s, (long)cfg.shutdown_grace_ms);
  mw_server_free(s);
  mw_diag_free(&diag);
  mw_config_free(&cfg);
  free(mem);
  mw_log(MW_LOG_INFO, "stopped");
  return 0;
}

int main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc >= 0) return rc;
  if (!strcmp(o.cmd, "check")) return cmd_check(&o);
  return cmd_serve(&o);
}
