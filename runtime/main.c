/* moonwire: the command-line entry point; each command is in cmd/. */
#include <string.h>

#include "cmd/cmd.h"

int main(int argc, char **argv) {
  options o;
  int rc = mw_cmd_parse(argc, argv, &o);
  if (rc >= 0) return rc;
  if (!strcmp(o.cmd, "check")) return mw_cmd_check(&o);
  if (!strcmp(o.cmd, "new")) return mw_cmd_new(&o);
  return mw_cmd_serve(&o);
}
