/* moonwire: the command-line entry point (serve, check). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mw_call.h"
#include "config/mw_config.h"
#include "base/mw_diag.h"
#include "gen/mw_gen.h"
#include "base/mw_log.h"
#include "core/mw_server.h"
#include "base/mw_timer.h"
#include "gen/mw_watch.h"

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
  if (o->listen) {
    const char *problem = mw_config_check_address(o->listen);
    if (problem) {
      mw_diag_add(diag, "--listen %s: %s", o->listen, problem);
    } else {
      mw_strlist_set1(&cfg->listen, o->listen);
    }
  }
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
    for (size_t i = 0; i < g->n_methods; i++)
      printf("  %-48s %-16s %s\n", g->methods[i].path, mw_kind_name(g->methods[i].kind),
             g->handlers[0][i] >= 0 ? "handler" : "no handler (UNIMPLEMENTED)");
  }
  mw_gen_unref(g);
  mw_diag_free(&diag);
  mw_config_free(&cfg);
  return rc;
}

/* Everything a running server needs to reload. */
typedef struct serving {
  const options *o;
  mw_config cfg;     /* the config the current generation was built from */
  mw_server *s;
  mw_lua_mem *mem;   /* one account per worker, owned */
  int workers;
  unsigned gen_id;
  mw_watch *watch;   /* NULL when watching is off or unavailable */
} serving;

static void watch_gen(serving *sv, mw_gen *g) {
  if (!sv->watch) return;
  size_t n = mw_schema_file_count(g->schema);
  const char **files = calloc(n ? n : 1, sizeof *files);
  if (!files) return;
  for (size_t i = 0; i < n; i++) files[i] = mw_schema_file(g->schema, i);
  mw_watch_set(sv->watch, (const char *const *)sv->cfg.services.v, sv->cfg.services.n,
               files, n, sv->cfg.file);
  free(files);
}

/* Builds and validates the next generation from the files as they are now;
 * publishes it only when everything loads. A failure changes nothing. */
static void reload(serving *sv, const char *why) {
  double t0 = mw_now();
  mw_config ncfg;
  mw_diag diag = {0};
  mw_gen *g = NULL;
  if (load_config(sv->o, &ncfg, &diag) == 0) {
    mw_gen_options go = {.config = &ncfg, .n_states = sv->workers, .mem = sv->mem,
                         .id = sv->gen_id + 1};
    g = mw_gen_build(&go, &diag);
  }
  if (!g) {
    mw_server_note_reload_failure(sv->s);
    mw_log(MW_LOG_ERROR, "reload (%s) failed; still serving generation %u:", why,
           sv->gen_id);
    for (size_t i = 0; i < diag.n && i < diag.cap; i++)
      if (diag.msgs[i]) mw_log(MW_LOG_ERROR, "  %s", diag.msgs[i]);
    mw_config_free(&ncfg);
    mw_diag_free(&diag);
    return;
  }
  if (ncfg.listen.n != sv->cfg.listen.n || ncfg.workers != sv->cfg.workers)
    mw_log(MW_LOG_WARN, "listen and workers changes take effect at the next start");
  sv->gen_id++;
  mw_server_swap_gen(sv->s, g);
  mw_config_free(&sv->cfg);
  sv->cfg = ncfg;
  watch_gen(sv, g);
  mw_log(MW_LOG_INFO, "reloaded (%s): generation %u, %zu method(s), %.0f ms", why,
         sv->gen_id, g->n_methods, (mw_now() - t0) * 1000);
  mw_gen_unref(g);
  mw_diag_free(&diag);
}

/* Waits for signals and file changes until SIGINT or SIGTERM. */
static void serve_loop(serving *sv, const sigset_t *sigs) {
  int sfd = signalfd(-1, sigs, SFD_CLOEXEC);
  double due = -1; /* when a debounced reload runs */
  for (;;) {
    struct pollfd fds[2] = {{sfd, POLLIN, 0}, {sv->watch ? mw_watch_fd(sv->watch) : -1, POLLIN, 0}};
    int timeout = -1;
    if (due >= 0) {
      double left = due - mw_now();
      timeout = left > 0 ? (int)(left * 1000) + 1 : 0;
    }
    int n = poll(fds, 2, timeout);
    if (n < 0 && errno != EINTR) break;
    if (n > 0 && (fds[0].revents & POLLIN)) {
      struct signalfd_siginfo si;
      if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
          reload(sv, "SIGHUP");
        } else {
          mw_log(MW_LOG_INFO, "%s: stopping (grace %lld ms)",
                 si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM",
                 (long long)sv->cfg.shutdown_grace_ms);
          break;
        }
      }
    }
    static char changed[256];
    if (n > 0 && (fds[1].revents & POLLIN) &&
        mw_watch_drain(sv->watch, changed, sizeof changed)) {
      /* Debounce: an editor's save burst becomes one reload. */
      due = mw_now() + (double)sv->cfg.reload.debounce_ms / 1000.0;
    }
    if (due >= 0 && mw_now() >= due) {
      due = -1;
      char why[300];
      snprintf(why, sizeof why, "%s changed", changed[0] ? changed : "a file");
      reload(sv, why);
    }
  }
  close(sfd);
}

static int cmd_serve(const options *o) {
  serving sv;
  memset(&sv, 0, sizeof sv);
  sv.o = o;
  mw_diag diag = {0};
  if (load_config(o, &sv.cfg, &diag) != 0) {
    print_diag(&diag);
    mw_diag_free(&diag);
    mw_config_free(&sv.cfg);
    return 1;
  }
  mw_log_configure((mw_log_level)sv.cfg.log.level, sv.cfg.log.json, 2);

  /* Signals are taken by this thread through a signalfd; workers never see
   * them. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  sv.workers = sv.cfg.workers;
  sv.mem = calloc((size_t)sv.workers, sizeof *sv.mem);
  if (!sv.mem) {
    fprintf(stderr, "moonwire: out of memory\n");
    mw_config_free(&sv.cfg);
    return 1;
  }
  for (int i = 0; i < sv.workers; i++)
    sv.mem[i].limit = (size_t)sv.cfg.limits.lua_memory_mb << 20;

  sv.gen_id = 1;
  mw_gen_options go = {.config = &sv.cfg, .n_states = sv.workers, .mem = sv.mem, .id = sv.gen_id};
  mw_gen *g = mw_gen_build(&go, &diag);
  sv.s = g ? mw_server_new(&sv.cfg, g, &diag) : NULL;
  if (!sv.s || mw_server_start(sv.s) != 0) {
    print_diag(&diag);
    if (sv.s) fprintf(stderr, "moonwire: cannot start the server\n");
    mw_server_free(sv.s);
    mw_gen_unref(g);
    mw_diag_free(&diag);
    mw_config_free(&sv.cfg);
    free(sv.mem);
    return 1;
  }
  mw_log(MW_LOG_INFO, "serving %zu method(s) with %zu handler(s) on %d worker(s)",
         g->n_methods, count_handlers(g), sv.workers);
  if (g->n_methods == 0)
    mw_log(MW_LOG_WARN, "no service to serve: the service directories hold no "
                        ".proto defining one (every call will be UNIMPLEMENTED)");
  if (sv.cfg.reload.watch) {
    sv.watch = mw_watch_new();
    if (!sv.watch) mw_log(MW_LOG_WARN, "cannot watch files (inotify): reload with SIGHUP");
    watch_gen(&sv, g);
  }
  mw_gen_unref(g); /* the server holds its own reference */
  for (size_t i = 0; i < mw_server_listener_count(sv.s); i++)
    printf("listening on %s\n", mw_server_listener(sv.s, i));
  fflush(stdout);

  serve_loop(&sv, &sigs);

  mw_server_stop(sv.s, (long)sv.cfg.shutdown_grace_ms);
  mw_server_free(sv.s);
  mw_watch_free(sv.watch);
  mw_diag_free(&diag);
  mw_config_free(&sv.cfg);
  free(sv.mem);
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
