/* moonwire check: load everything as serve would, report every problem,
 * list every method. */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "core/mw_client.h"
#include "gen/mw_gen.h"
#include "shared/mw_shared.h"
#include "sessions/mw_sessions.h"
#include "tls/mw_tls.h"

int mw_cmd_check(const options *o) {
  mw_config cfg;
  mw_diag diag = {0};
  mw_cmd_load_config(o, &cfg, &diag);
  mw_cmd_client_configure(&cfg); /* module code's calls see the allow-list */
  mw_cmd_shared_configure(&cfg, NULL, &diag); /* and module code's mw.shared the dicts */
  mw_gen *g = NULL;
  if (cfg.services.n) {
    mw_gen_options go = {.config = &cfg, .n_states = 1, .mem = NULL, .id = 1};
    g = mw_gen_build(&go, &diag);
    if (g) mw_cmd_nothing_to_serve(&cfg, g, &diag);
  }
  /* The TLS files, with the checks serve makes at start. */
  mw_tls_set *tls = NULL;
  if (cfg.tls.cert && cfg.tls.key) {
    mw_tls_files files = {cfg.tls.cert, cfg.tls.key, cfg.tls.client_ca};
    mw_diag warns = {0};
    tls = mw_tls_load(&files, 0, &diag, &warns);
    for (size_t i = 0; i < warns.n && i < warns.cap; i++)
      if (warns.msgs[i]) fprintf(stderr, "warning: %s\n", warns.msgs[i]);
    mw_diag_free(&warns);
  }
  int rc = 0;
  if (mw_diag_count(&diag)) {
    mw_cmd_print_diag(&diag);
    fprintf(stderr, "%zu problem%s found\n", mw_diag_count(&diag),
            mw_diag_count(&diag) == 1 ? "" : "s");
    rc = 1;
  } else {
    /* The user's services first; the built-in ones on one line after. */
    const mw_methods *methods = mw_gen_methods(g);
    const mw_schema *schema = mw_gen_schema(g);
    size_t n = mw_methods_count(methods), n_user = 0, n_handlers = 0, n_stubs = 0, n_svc = 0;
    for (size_t i = 0; i < n; i++) {
      if (mw_gen_is_builtin(g, i)) continue;
      n_user++;
      n_stubs += mw_gen_is_stub(g, i);
      n_handlers += mw_gen_has_handler(g, i) && !mw_gen_is_stub(g, i);
    }
    for (size_t i = 0; i < mw_schema_service_count(schema); i++) {
      const upb_ServiceDef *svc = mw_schema_service(schema, i);
      n_svc += !mw_gen_is_builtin_service(g, svc);
    }
    printf("ok: %zu service%s, %zu method%s, %zu with handlers", n_svc, n_svc == 1 ? "" : "s",
           n_user, n_user == 1 ? "" : "s", n_handlers);
    if (n_stubs) printf(", %zu answered by stubs", n_stubs);
    printf("\n");
    const char *sep = "built in: ";
    for (size_t i = 0; i < n; i++) {
      const mw_method *m = mw_methods_at(methods, i);
      if (mw_gen_is_builtin(g, i)) continue;
      printf("  %-48s %-16s %s\n", m->path, mw_kind_name(m->kind),
             mw_gen_is_stub(g, i)       ? "stubs"
             : mw_gen_has_handler(g, i) ? "handler"
                                        : "no handler (UNIMPLEMENTED)");
    }
    const char *last = NULL;
    for (size_t i = 0; i < n; i++) {
      const mw_method *m = mw_methods_at(methods, i);
      if (!mw_gen_is_builtin(g, i) || (last && strcmp(last, m->service) == 0)) continue;
      printf("%s%s", sep, m->service);
      sep = ", ";
      last = m->service;
    }
    if (last) printf("\n");
    if (tls)
      printf("tls: %s (%s, expires %s)%s\n", cfg.tls.cert, tls->subject, tls->not_after,
             !cfg.tls.client_ca           ? ""
             : cfg.tls.require_client_cert ? "; client certificates required"
                                           : "; client certificates optional");
  }
  mw_tls_set_unref(tls);
  mw_gen_unref(g);
  mw_client_shutdown();
  mw_shared_free();
  mw_sessions_free();
  mw_diag_free(&diag);
  mw_config_free(&cfg);
  return rc;
}

