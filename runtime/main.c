/* moonwire: the command-line entry point; each command is in cmd/. */
#include <string.h>

#include "cmd/cmd.h"

int main(int argc, char **argv) {
  /* The client commands parse their own flags (cmd/client.h). */
  if (argc > 1 && !strcmp(argv[1], "call")) return mw_cmd_call(argc, argv);
  if (argc > 1 && !strcmp(argv[1], "list")) return mw_cmd_list(argc, argv);
  if (argc > 1 && !strcmp(argv[1], "describe")) return mw_cmd_describe(argc, argv);
  options o;
  int rc = mw_cmd_parse(argc, argv, &o);
  /* moonwire test's usage errors are EX_USAGE, as the client commands',
   * not busted's 1 (a failing spec). */
  if (rc == 2 && argc > 1 && !strcmp(argv[1], "test")) return 64;
  if (rc >= 0) return rc;
  if (!strcmp(o.cmd, "check")) return mw_cmd_check(&o);
  if (!strcmp(o.cmd, "new")) return mw_cmd_new(&o);
  if (!strcmp(o.cmd, "test")) return mw_cmd_test(&o);
  return mw_cmd_serve(&o);
}
