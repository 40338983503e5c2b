/* moonwire serve: the server, reloads on file changes and SIGHUP, a bounded
 * graceful drain on SIGTERM and SIGINT:
 *   1. health reports NOT_SERVING for everything (load balancers stop
 *      sending new calls), for shutdown.drain_delay;
 *   2. the listeners close and connections are sent GOAWAY; mw.on_drain
 *      hooks run on every worker; calls in flight get shutdown.grace;
 *   3. what remains is cancelled, and the process exits 0.
 * A second SIGTERM or SIGINT skips to 3 at once. */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base/mw_log.h"
#include "base/mw_timer.h"
#include "cmd/cmd.h"
#include "core/mw_conns.h"
#include "core/mw_router.h"
#include "core/mw_server.h"
#include "trace/mw_otlp.h"
#include "gen/mw_gen.h"
#include "gen/mw_watch.h"
#include "core/mw_client.h"
#include "http/mw_admin.h"
#include "http/mw_web.h"
#include "lua/l_api.h"
#include "shared/mw_stubreg.h"
#include "lua/mw_health.h"
#include "metrics/mw_grpc_metrics.h"
#include "metrics/mw_metrics.h"
#include "sessions/mw_sessions.h"
#include "shared/mw_shared.h"

/* Everything a running server needs to reload. */
typedef struct serving {
  const options *o;
  mw_config cfg;     /* the config the current generation was built from */
  mw_server *s;
  mw_lua_mem *mem;   /* one account per worker, owned */
  int workers;
  unsigned gen_id;
  mw_watch *watch;   /* NULL when watching is off or unavailable */
  mw_admin *admin;   /* the admin listener, NULL when admin.listen is unset */
  mw_web *web;       /* the HTTP listener, NULL when http.listen is unset */
  mw_metrics *metrics; /* the registry, while the admin listener is on */
} serving;

/* Health reports SERVING for what generation g serves. */
/* The HTTP listener's view of a generation's REST routes: its router is
 * the generation's own (gen/ owns both; http/ sees neither gen/ nor this). */
static const struct mw_transcode *rest_of_router(struct mw_router *r) {
  mw_gen *g = mw_router_owner_self(r);
  return g ? mw_gen_rest(g) : NULL;
}

static void publish_served(mw_gen *g) {
  const mw_schema *schema = mw_gen_schema(g);
  size_t n = mw_schema_service_count(schema);
  const char **names = calloc(n ? n : 1, sizeof *names);
  if (names) {
    for (size_t i = 0; i < n; i++) names[i] = upb_ServiceDef_FullName(mw_schema_service(schema, i));
    if (mw_health_set_served(names, n) == 0) {
      free(names);
      return;
    }
  }
  free(names);
  mw_log(MW_LOG_ERROR, "out of memory: health still reports the previous generation's services");
}

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

static int same_str(const char *a, const char *b);

static int same_strvec(const mw_strvec *a, const mw_strvec *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++)
    if (strcmp(a->v[i], b->v[i]) != 0) return 0;
  return 1;
}

/* Whether two configs' http sections are the same (the listener reads its
 * section at start only). */
static int same_http(const mw_config *a, const mw_config *b) {
  return same_str(a->http.listen, b->http.listen) &&
         a->http.max_connections == b->http.max_connections &&
         a->http.timeout_ms == b->http.timeout_ms &&
         same_str(a->http.tls_cert, b->http.tls_cert) &&
         same_str(a->http.tls_key, b->http.tls_key) &&
         same_str(a->http.tls_client_ca, b->http.tls_client_ca) &&
         a->http.tls_require_client_cert == b->http.tls_require_client_cert &&
         a->http.sse_keepalive_ms == b->http.sse_keepalive_ms &&
         a->http.sse_retry_ms == b->http.sse_retry_ms &&
         same_strvec(&a->http.cors_origins, &b->http.cors_origins) &&
         same_strvec(&a->http.cors_headers, &b->http.cors_headers);
}

/* Whether two configs name the same TLS files (the server's listeners keep
 * the ones they started with; the files' contents are re-read anyway). */
static int same_str(const char *a, const char *b) {
  return a == b || (a && b && strcmp(a, b) == 0);
}
static int same_tls(const mw_config *a, const mw_config *b) {
  return same_str(a->tls.cert, b->tls.cert) && same_str(a->tls.key, b->tls.key) &&
         same_str(a->tls.client_ca, b->tls.client_ca) &&
         a->tls.require_client_cert == b->tls.require_client_cert;
}

/* Builds and validates the next generation from the files as they are now;
 * publishes it only when everything loads. A failure changes nothing. */
static void reload(serving *sv, const char *why) {
  double t0 = mw_now();
  mw_config ncfg;
  mw_diag diag = {0};
  mw_gen *g = NULL;
  if (mw_cmd_load_config(sv->o, &ncfg, &diag) == 0) {
    /* Before the build: the new scripts may use a dict this reload adds.
     * Existing dicts stay as they are, contents and size. */
    mw_diag warns = {0};
    mw_cmd_shared_configure(&ncfg, &warns, &diag);
    for (size_t i = 0; i < warns.n && i < warns.cap; i++)
      if (warns.msgs[i]) mw_log(MW_LOG_WARN, "reload (%s): %s", why, warns.msgs[i]);
    mw_diag_free(&warns);
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
  if (!same_tls(&ncfg, &sv->cfg))
    mw_log(MW_LOG_WARN, "tls changes take effect at the next start (replacing the "
                        "files themselves needs no restart)");
  if (!same_http(&ncfg, &sv->cfg))
    mw_log(MW_LOG_WARN, "http changes take effect at the next start");
  if (ncfg.console != sv->cfg.console)
    mw_log(MW_LOG_WARN, "console changes take effect at the next start");
  sv->gen_id++;
  mw_server_swap(sv->s, mw_gen_router(g));
  publish_served(g);
  mw_config_free(&sv->cfg);
  sv->cfg = ncfg;
  if (sv->admin) mw_admin_set_config(sv->admin, &sv->cfg);
  watch_gen(sv, g);
  mw_log(MW_LOG_INFO, "reloaded (%s): generation %u, %zu method(s), %.0f ms", why,
         sv->gen_id, mw_methods_count(mw_gen_methods(g)), (mw_now() - t0) * 1000);
  mw_gen_unref(g);
  mw_diag_free(&diag);
}

/* The process's resident memory in MiB (0 when it cannot be read). */
static long rss_mib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024) / 1024;
}

/* The memory guard's state between ticks. */
typedef struct guard {
  int shedding;
  long outside_mib; /* resident outside the Lua states at the tick before */
  long lua_mib;     /* held by the Lua states at the tick before */
  mw_conns *conns; /* the gRPC listeners' connections, made at the first need */
} guard;

/* The local ports of the gRPC listeners, for the census. */
static mw_conns *listener_conns(const mw_server *s) {
  int ports[64];
  size_t n = 0;
  for (size_t i = 0; i < mw_server_listener_count(s) && n < 64; i++) {
    const char *colon = strrchr(mw_server_listener(s, i), ':');
    if (colon) ports[n++] = atoi(colon + 1);
  }
  return mw_conns_new(ports, n);
}

/* The memory guard, every MW_GUARD_MS while limits.max_rss_mb is set (a
 * flood gains tens of MiB in 50 ms; a look costs a read of
 * /proc/self/statm): over the limit, new calls are shed (the calls in
 * flight finish and give their memory back); under 90 % of it, they are
 * taken again. Logged both ways, so an OOM kill is never the first sign.
 * Shedding cannot bound what core 1.51 spends inside a connection (a Rapid
 * Reset flood's streams are never calls of ours), so while over the limit
 * with the memory outside the Lua states growing and the Lua states not,
 * the guard also closes the connection that received the most in the last
 * tick, one per tick, when that is a flood's worth (MW_GUARD_FLOOD_BYTES:
 * the calls of a client that merely talks are never cut; an HPACK bomb
 * sends tens of KiB a tick, Rapid Reset hundreds). Memory that handlers
 * hold is Lua's and left to them: their calls finish and give it back.
 * While Lua grows, what grows beside it may be its own (blocks the
 * allocator keeps, a sanitizer's quarantine), so no connection is judged
 * then. From 90 % of the limit the census samples every tick, so that
 * "the most" is measured over the last tick, not over a connection's
 * life. */
#define MW_GUARD_MS 50
#define MW_GUARD_FLOOD_BYTES 4096
/* Returns the milliseconds to the next tick. */
static int guard_memory(serving *sv, guard *gd) {
  long limit = (long)sv->cfg.limits.max_rss_mb, now = rss_mib();
  int near = now > limit - limit / 10;
  if (near) {
    /* What handlers freed may still be held by malloc: give it back before
     * deciding (glibc returns free pages anywhere in the heap). */
    malloc_trim(0);
    now = rss_mib();
  }
  if (!gd->shedding && now > limit) {
    gd->shedding = 1;
    mw_log(MW_LOG_ERROR, "memory guard: %ld MiB resident, over limits.max_rss_mb (%ld): "
                         "shedding new calls", now, limit);
  } else if (gd->shedding && now < limit - limit / 10) {
    gd->shedding = 0;
    mw_log(MW_LOG_WARN, "memory guard: %ld MiB resident: taking calls again", now);
  }
  mw_server_shed_for_memory(sv->s, gd->shedding ? (int)now : 0);
  size_t lua = 0;
  for (int i = 0; i < sv->workers; i++) lua += atomic_load(&sv->mem[i].used);
  long lua_mib = (long)(lua >> 20), outside = now - lua_mib;
  int lua_grew = lua_mib > gd->lua_mib;
  gd->lua_mib = lua_mib;
  if (!near) {
    gd->outside_mib = outside;
    return MW_GUARD_MS;
  }
  if (!gd->conns) gd->conns = listener_conns(sv->s);
  mw_conn_cut cut;
  if (gd->conns && now > limit && outside > gd->outside_mib && !lua_grew &&
      mw_conns_cut_busiest(gd->conns, MW_GUARD_FLOOD_BYTES, &cut) == 1)
    mw_log(MW_LOG_WARN, "memory guard: %ld MiB resident, %ld MiB of it outside Lua and "
                        "growing: closed the connection from %s (%llu bytes received in "
                        "the last %d ms or waiting unread)",
           now, outside, cut.peer, (unsigned long long)cut.bytes, MW_GUARD_MS);
  else if (gd->conns)
    mw_conns_sample(gd->conns);
  gd->outside_mib = outside;
  return MW_GUARD_MS;
}

/* Shortens a poll timeout (ms, -1: none) so that poll returns by due. */
static void poll_until(int *timeout, double due) {
  double left = due - mw_now();
  int ms = left > 0 ? (int)(left * 1000) + 1 : 0;
  if (*timeout < 0 || ms < *timeout) *timeout = ms;
}

/* Waits for signals and file changes until SIGINT or SIGTERM; returns
 * that signal's name. gd is the memory guard's state. */
static const char *serve_events(serving *sv, int sfd, guard *gd) {
  double due = -1; /* when a debounced reload runs */
  double guard_due = mw_now(), watch_due = mw_now() + 1;
  for (;;) {
    struct pollfd fds[3] = {{sfd, POLLIN, 0},
                            {sv->watch ? mw_watch_fd(sv->watch) : -1, POLLIN, 0},
                            {mw_server_listener_alarm_fd(), POLLIN, 0}};
    int timeout = -1;
    if (due >= 0) poll_until(&timeout, due);
    /* The watchdog: a worker in one event for longer than any handler may
     * run is stuck in a C function. */
    if (mw_now() >= watch_due) {
      double budget = (double)sv->cfg.limits.handler_cpu_ms / 1000.0;
      mw_server_watch_workers(sv->s, budget > 0 ? budget + 1 : 30);
      watch_due = mw_now() + 1;
    }
    poll_until(&timeout, watch_due);
    if (sv->cfg.limits.max_rss_mb > 0) {
      if (mw_now() >= guard_due) {
        guard_due = mw_now() + guard_memory(sv, gd) / 1000.0;
      }
      poll_until(&timeout, guard_due);
    }
    int n = poll(fds, 3, timeout);
    if (n < 0 && errno != EINTR) return "poll failed";
    if (n > 0 && (fds[2].revents & POLLIN)) {
      /* Connections already open still work, so nothing else would show
       * it: drain them and exit non-zero for the supervisor to restart. */
      mw_log(MW_LOG_ERROR, "a listener stopped accepting connections for good (gRPC "
                           "core's accept failed, e.g. out of file descriptors): "
                           "draining, then exiting with status 75 for a restart");
      return "listener failure";
    }
    if (n > 0 && (fds[0].revents & POLLIN)) {
      struct signalfd_siginfo si;
      if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) reload(sv, "SIGHUP");
        else return si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
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
}

static const char *serve_loop(serving *sv, int sfd) {
  guard gd = {0};
  const char *why = serve_events(sv, sfd, &gd);
  mw_conns_free(gd.conns);
  return why;
}

/* Waits up to ms for SIGINT or SIGTERM (SIGHUP is read and ignored: no
 * reload while draining). Returns 1 when one came. */
static int stop_signal(int sfd, long ms) {
  double until = mw_now() + (double)ms / 1000.0;
  for (;;) {
    double left = until - mw_now();
    struct pollfd p = {sfd, POLLIN, 0};
    int n = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
    if (n > 0) {
      struct signalfd_siginfo si;
      if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si && si.ssi_signo != SIGHUP) return 1;
    }
    if (n == 0 || left <= 0) return 0;
  }
}

/* The bounded drain (see the top of this file). */
static void drain(serving *sv, int sfd, const char *why) {
  long delay = (long)sv->cfg.shutdown_drain_delay_ms, grace = (long)sv->cfg.shutdown_grace_ms;
  mw_log(MW_LOG_INFO, "%s: draining (drain_delay %ld ms, grace %ld ms)", why, delay, grace);
  mw_health_drain(MW_HEALTH_DRAINING);
  int now = delay > 0 && stop_signal(sfd, delay);
  if (!now) {
    mw_health_drain(MW_HEALTH_CLOSING);
    mw_server_drain(sv->s);
    double until = mw_now() + (double)grace / 1000.0;
    while (mw_server_live_calls(sv->s) > 0 && mw_now() < until) {
      if (stop_signal(sfd, 0)) {
        now = 1;
        break;
      }
      double left = until - mw_now();
      mw_server_wait_idle(sv->s, left < 0.05 ? (long)(left * 1000) + 1 : 50);
    }
  }
  if (now) mw_log(MW_LOG_WARN, "second signal: stopping now");
  mw_server_stop(sv->s, 0);
}

/* Every connection is a descriptor: the soft limit (often 1,024) is raised
 * to the hard one, so that a connection storm meets the hard limit, not a
 * default that gRPC core 1.51's listener does not survive (its accept loop
 * stops for good on EMFILE). */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  rlim_t was = rl.rlim_cur;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
    mw_log(MW_LOG_DEBUG, "open files limit raised from %llu to %llu",
           (unsigned long long)was, (unsigned long long)rl.rlim_max);
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
  raise_fd_limit();

  /* Signals are taken by this thread through a signalfd; workers never see
   * them. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* After the mask: gRPC core's threads, started here, inherit it. */
  if (mw_cmd_client_configure(&sv.cfg) != 0) {
    fprintf(stderr, "moonwire: out of memory\n");
    mw_config_free(&sv.cfg);
    return 1;
  }

  sv.workers = sv.cfg.workers;
  sv.mem = calloc((size_t)sv.workers, sizeof *sv.mem);
  if (!sv.mem) {
    fprintf(stderr, "moonwire: out of memory\n");
    mw_config_free(&sv.cfg);
    return 1;
  }
  for (int i = 0; i < sv.workers; i++)
    sv.mem[i].limit = (size_t)sv.cfg.limits.lua_memory_mb << 20;

  /* The registry exists only with the admin listener: without it, nothing
   * counts (every update site checks mw_metrics_current() first). It comes
   * before the scripts load, which declare their own metrics. */
  if (sv.cfg.admin.listen) {
    char err[256] = "out of memory";
    sv.metrics = mw_metrics_new(sv.workers, (size_t)sv.cfg.metrics.max_series);
    if (!sv.metrics || mw_grpc_metrics_declare(sv.metrics, err, sizeof err) != 0) {
      fprintf(stderr, "moonwire: metrics: %s\n", err);
      mw_grpc_metrics_forget();
      mw_metrics_free(sv.metrics);
      mw_config_free(&sv.cfg);
      free(sv.mem);
      return 1;
    }
    mw_metrics_set_current(sv.metrics);
  }

  sv.gen_id = 1;
  if (sv.cfg.tracing.otlp) {
    char err[512];
    mw_otlp_options oo = {.url = sv.cfg.tracing.otlp,
                          .service_name = sv.cfg.tracing.service_name,
                          .batch = (size_t)sv.cfg.tracing.batch,
                          .queue = (size_t)sv.cfg.tracing.queue,
                          .flush_ms = (int)sv.cfg.tracing.flush_ms};
    if (mw_otlp_start(&oo, err, sizeof err) != 0) {
      fprintf(stderr, "moonwire: %s\n", err);
      mw_grpc_metrics_forget();
      mw_metrics_free(sv.metrics); /* NULL when admin is off */
      mw_diag_free(&diag);
      mw_config_free(&sv.cfg);
      free(sv.mem);
      return 1;
    }
    mw_log(MW_LOG_INFO, "tracing: spans to %s (sample %g)", sv.cfg.tracing.otlp,
           sv.cfg.tracing.sample);
  }
  /* The shared dicts, made once for the process's life: before the
   * scripts, whose module code may use them. */
  mw_gen *g = NULL;
  if (mw_cmd_shared_configure(&sv.cfg, NULL, &diag) == 0) {
    mw_gen_options go = {.config = &sv.cfg, .n_states = sv.workers, .mem = sv.mem,
                         .id = sv.gen_id};
    g = mw_gen_build(&go, &diag);
    if (g && mw_cmd_nothing_to_serve(&sv.cfg, g, &diag)) {
      mw_gen_unref(g);
      g = NULL;
    }
  }
  sv.s = g ? mw_server_new(&sv.cfg, mw_gen_router(g), mw_gen_worker_hooks(), &diag) : NULL;
  int started = sv.s && mw_server_start(sv.s) == 0;
  if (started && sv.cfg.admin.listen) {
    sv.admin = mw_admin_start(&sv.cfg, sv.s, sv.mem, sv.workers, &diag);
    if (!sv.admin) {
      mw_server_stop(sv.s, 0);
      started = 0;
    }
  }
  if (started && sv.cfg.http.listen) {
    sv.web = mw_web_start(&sv.cfg, sv.s, rest_of_router, &diag);
    if (!sv.web) {
      mw_admin_stop(sv.admin);
      sv.admin = NULL;
      mw_server_stop(sv.s, 0);
      started = 0;
    }
  }
  if (!started) {
    mw_cmd_print_diag(&diag);
    if (sv.s && !sv.cfg.admin.listen && !sv.cfg.http.listen) fprintf(stderr, "moonwire: cannot start the server\n");
    mw_server_free(sv.s);
    mw_otlp_stop(0);
    mw_gen_unref(g);
    mw_diag_free(&diag);
    mw_config_free(&sv.cfg);
    mw_grpc_metrics_forget();
    mw_metrics_free(sv.metrics);
    mw_shared_free();
    mw_sessions_free();
    free(sv.mem);
    return 1;
  }
  size_t n_user = 0, n_handlers = 0, n_stubs = 0, n_builtin = 0;
  for (size_t i = 0; i < mw_methods_count(mw_gen_methods(g)); i++) {
    if (mw_gen_is_builtin(g, i)) {
      n_builtin++;
      continue;
    }
    n_user++;
    n_stubs += mw_gen_is_stub(g, i);
    n_handlers += mw_gen_has_handler(g, i) && !mw_gen_is_stub(g, i);
  }
  char stubs[48] = "";
  if (n_stubs) snprintf(stubs, sizeof stubs, " and %zu answered by stubs", n_stubs);
  const char *builtin = !n_builtin                             ? ""
                        : sv.cfg.health && sv.cfg.reflection ? "; built in: health, reflection"
                        : sv.cfg.health                      ? "; built in: health"
                                                             : "; built in: reflection";
  mw_log(MW_LOG_INFO, "serving %zu method(s) with %zu handler(s)%s on %d worker(s)%s", n_user,
         n_handlers, stubs, sv.workers, builtin);
  if (sv.cfg.reload.watch) {
    sv.watch = mw_watch_new();
    if (!sv.watch) mw_log(MW_LOG_WARN, "cannot watch files (inotify): reload with SIGHUP");
    watch_gen(&sv, g);
  }
  publish_served(g);
  mw_gen_unref(g); /* the server holds its own reference */
  for (size_t i = 0; i < mw_server_listener_count(sv.s); i++)
    printf("listening on %s\n", mw_server_listener(sv.s, i));
  if (sv.web) printf("http listening on %s\n", mw_web_address(sv.web));
  if (sv.admin) printf("admin listening on %s\n", mw_admin_address(sv.admin));
  fflush(stdout);

  int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
  drain(&sv, sfd, serve_loop(&sv, sfd));
  close(sfd);
  /* Every call has ended: what spans are queued get the grace (at most 5 s)
   * to reach the collector. */
  mw_otlp_stop(sv.cfg.shutdown_grace_ms < 5000 ? (int)sv.cfg.shutdown_grace_ms : 5000);
  int rc = mw_server_listener_dead() ? 75 : 0; /* EX_TEMPFAIL */
  if (mw_server_stuck(sv.s)) rc = 70;           /* EX_SOFTWARE */
  mw_watch_free(sv.watch);
  mw_diag_free(&diag);
  /* The admin thread posts to the workers and reads the server: it stops
   * before the server goes. */
  mw_admin_stop(sv.admin);
  /* Its calls have ended with the server's drain; it reads the server's
   * router, so it too stops before the server goes. */
  mw_web_stop(sv.web);
  if (rc != 70) {
    /* With a stuck worker left running, what it may still touch stays:
     * the process ends right after this. */
    mw_server_free(sv.s);
    mw_health_free();
    mw_shared_free(); /* after the workers: no state uses a dict any more */
    mw_sessions_free(); /* nor a joined stream a room */
    mw_lsessions_free();
    mw_lidem_free();
    mw_lstub_free();
    mw_stubreg_free();
    mw_grpc_metrics_forget();
    mw_metrics_free(sv.metrics);
    free(sv.mem);
  }
  if (rc != 70) mw_client_shutdown();
  mw_config_free(&sv.cfg);
  mw_log(MW_LOG_INFO, "stopped");
  return rc;
}

