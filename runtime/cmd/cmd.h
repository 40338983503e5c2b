/* The commands of the moonwire binary (serve, check, new; call, list and
 * describe, the client ones) and what they share:
 * the command line and the config it names. main.c only dispatches. */
#ifndef MW_CMD_H
#define MW_CMD_H

#include "base/mw_diag.h"
#include "config/mw_config.h"

typedef struct options {
  const char *cmd;
  const char *config;
  const char *listen;
  const char *admin; /* --admin ADDR: replaces admin.listen */
  const char *http;  /* --http ADDR: replaces http.listen */
  const char *dir;
  const char *upstream; /* --upstream ADDR: replaces upstream */
  const char *record;   /* --record DIR: forwarded calls written as stubs */
  int stub_all; /* --stub-all DIR: DIR is dir, and every method without a
                   handler or stub answers a default message */
  /* --tls-cert, --tls-key, --tls-client-ca: each replaces its tls key */
  const char *tls_cert, *tls_key, *tls_client_ca;
  const char *proto; /* moonwire new --proto FILE */
} options;

/* Parses argv; returns an exit status to stop with (after --help, --version
 * or a usage error), or -1 to go on with o filled. */
int mw_cmd_parse(int argc, char **argv, options *o);
/* Prints diag's messages to stderr, one a line. */
void mw_cmd_print_diag(const mw_diag *d);
/* The config: -c FILE, else DIR/moonwire.yaml when there is one; then the
 * command line on top. Returns 0, or -1 with diag filled. */
int mw_cmd_load_config(const options *o, mw_config *cfg, mw_diag *diag);

int mw_cmd_check(const options *o);

struct mw_gen;
/* Adds a problem to diag when g serves no service of the user's (only the
 * built-in ones): an empty or misspelt directory is an error of check and
 * of serve's start, not a server that answers UNIMPLEMENTED to everything.
 * Returns 1 when it added one. */
int mw_cmd_nothing_to_serve(const mw_config *cfg, const struct mw_gen *g, mw_diag *diag);
int mw_cmd_serve(const options *o);
/* moonwire test [DIR] (cmd/test.c): the *_spec.lua files under busted
 * against the directory served in-process; busted's exit status. */
int mw_cmd_test(const options *o);
/* moonwire new DIR [--proto FILE] (cmd/new.c). */
int mw_cmd_new(const options *o);

/* moonwire call / list / describe (cmd/call.c, cmd/describe.c): clients of
 * any gRPC server, with a command line of their own (cmd/client.h); main.c
 * hands them argv whole when argv[1] names one. Return the exit status. */
int mw_cmd_call(int argc, char **argv);
int mw_cmd_list(int argc, char **argv);
int mw_cmd_describe(int argc, char **argv);

/* The outbound client's policy from cfg (allow-list, limits, deadline
 * margin), before any script runs; mw_client_shutdown undoes it. Returns 0,
 * or -1 when out of memory. */
int mw_cmd_client_configure(const mw_config *cfg);

/* The shared dicts of cfg's `shared:` section (shared/mw_shared.h): made
 * at the first call; a later one (a reload) adds the new ones and puts
 * what it could not apply (a dict dropped or resized) in warnings.
 * mw_shared_free undoes it. Returns 0, or -1 with errors filled. */
int mw_cmd_shared_configure(const mw_config *cfg, mw_diag *warnings, mw_diag *errors);

#endif
