/* moonwire serve: the server, reloads on file changes and SIGHUP, graceful
 * stop on SIGINT and SIGTERM. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base/mw_log.h"
#include "base/mw_timer.h"
#include "cmd/cmd.h"
#include "core/mw_server.h"
#include "gen/mw_gen.h"
#include "gen/mw_watch.h"

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
  size_t n = mw_schema_file_count(mw_gen_schema(g));
  const char **files = calloc(n ? n : 1, sizeof *files);
  if (!files) return;
  for (size_t i = 0; i < n; i++) files[i] = mw_schema_file(mw_gen_schema(g), i);
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
  if (mw_cmd_load_config(sv->o, &ncfg, &diag) == 0) {
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
  mw_server_swap(sv->s, mw_gen_router(g));
  mw_config_free(&sv->cfg);
  sv->cfg = ncfg;
  watch_gen(sv, g);
  mw_log(MW_LOG_INFO, "reloaded (%s): generation %u, %zu method(s), %.0f ms", why,
         sv->gen_id, mw_methods_count(mw_gen_methods(g)), (mw_now() - t0) * 1000);
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

int mw_cmd_serve(const options *o) {
  serving sv;
  memset(&sv, 0, sizeof sv);
  sv.o = o;
  mw_diag diag = {0};
  if (mw_cmd_load_config(o, &sv.cfg, &diag) != 0) {
    mw_cmd_print_diag(&diag);
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
  sv.s = g ? mw_server_new(&sv.cfg, mw_gen_router(g), mw_gen_worker_hooks(), &diag) : NULL;
  if (!sv.s || mw_server_start(sv.s) != 0) {
    mw_cmd_print_diag(&diag);
    if (sv.s) fprintf(stderr, "moonwire: cannot start the server\n");
    mw_server_free(sv.s);
    mw_gen_unref(g);
    mw_diag_free(&diag);
    mw_config_free(&sv.cfg);
    free(sv.mem);
    return 1;
  }
  mw_log(MW_LOG_INFO, "serving %zu method(s) with %zu handler(s) on %d worker(s)",
         mw_methods_count(mw_gen_methods(g)), mw_gen_handler_count(g), sv.workers);
  if (mw_methods_count(mw_gen_methods(g)) == 0)
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

