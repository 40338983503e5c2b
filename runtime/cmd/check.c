/* moonwire check: load everything as serve would, report every problem,
 * list every method. */
#include <stdio.h>

#include "cmd/cmd.h"
#include "gen/mw_gen.h"

int mw_cmd_check(const options *o) {
  mw_config cfg;
  mw_diag diag = {0};
  mw_cmd_load_config(o, &cfg, &diag);
  mw_gen *g = NULL;
  if (cfg.services.n) {
    mw_gen_options go = {.config = &cfg, .n_states = 1, .mem = NULL, .id = 1};
    g = mw_gen_build(&go, &diag);
  }
  int rc = 0;
  if (mw_diag_count(&diag)) {
    mw_cmd_print_diag(&diag);
    fprintf(stderr, "%zu problem%s found\n", mw_diag_count(&diag),
            mw_diag_count(&diag) == 1 ? "" : "s");
    rc = 1;
  } else {
    const mw_methods *methods = mw_gen_methods(g);
    size_t n_svc = mw_schema_service_count(mw_gen_schema(g)), n = mw_methods_count(methods);
    printf("ok: %zu service%s, %zu method%s, %zu with handlers\n", n_svc,
           n_svc == 1 ? "" : "s", n, n == 1 ? "" : "s", mw_gen_handler_count(g));
    for (size_t i = 0; i < n; i++) {
      const mw_method *m = mw_methods_at(methods, i);
      printf("  %-48s %-16s %s\n", m->path, mw_kind_name(m->kind),
             mw_gen_has_handler(g, i) ? "handler" : "no handler (UNIMPLEMENTED)");
    }
  }
  mw_gen_unref(g);
  mw_diag_free(&diag);
  mw_config_free(&cfg);
  return rc;
}

