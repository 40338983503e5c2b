/* The command line and the config it names. */
#include "cmd/cmd.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int mw_cmd_parse(int argc, char **argv, options *o) {
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

void mw_cmd_print_diag(const mw_diag *d) {
  for (size_t i = 0; i < d->n && i < d->cap; i++)
    if (d->msgs[i]) fprintf(stderr, "%s\n", d->msgs[i]);
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
  if (o->config) {
    mw_config_load_file(cfg, o->config, diag);
  } else {
    char implicit[PATH_MAX + 16];
    snprintf(implicit, sizeof implicit, "%s/moonwire.yaml", real);
    if (access(implicit, F_OK) == 0) mw_config_load_file(cfg, implicit, diag);
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
  return mw_diag_count(diag) ? -1 : 0;
}

