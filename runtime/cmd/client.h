/* What moonwire call, list and describe share: their command line, the
 * connection it describes, and the schema (server reflection, or the
 * --proto / --protoset files given instead). cmd/call.c and
 * cmd/describe.c are the commands; main.c reaches them through cmd.h.
 *
 * Exit statuses (docs/commands/call.md): 0 when everything worked; the
 * gRPC status code (1..16) when a call failed, the reflection exchange
 * included (UNIMPLEMENTED: the server has no reflection; NOT_FOUND: it does
 * not know the symbol); MW_CLI_USAGE when the command line is wrong;
 * MW_CLI_LOCAL when something failed here (a file, the request JSON, the
 * schema). The last two are sysexits.h's EX_USAGE and EX_DATAERR: above
 * 16, so that a script can tell a server's UNKNOWN (2) from its own typo. */
#ifndef MW_CMD_CLIENT_H
#define MW_CMD_CLIENT_H

#include <stddef.h>

#include "base/mw_strvec.h"
#include "cmd/reflect_client.h"
#include "cmd/rpc.h"
#include "schema/mw_schema.h"

#define MW_CLI_USAGE 64
#define MW_CLI_LOCAL 65

typedef struct mw_cli {
  const char *cmd;        /* "call", "list" or "describe" */
  mw_rpc_target target;   /* target.addr: the ADDR argument */
  mw_rpc_md *md;          /* -H, values decoded (-bin: from base64); owned */
  size_t n_md;
  double deadline_s;      /* --deadline; 0: none */
  int verbose;            /* -v */
  int emit_defaults;      /* --emit-defaults (call) */
  mw_strvec protos, includes, protosets; /* --proto, -I, --protoset */
  const char *args[2];    /* the arguments after ADDR (METHOD and the
                             request; SERVICE; SYMBOL) */
  size_t n_args;
} mw_cli;

/* Parses argv (argv[1] is the command). Returns -1 to go on with c
 * filled, else the status to exit with (0 after --help). Messages go to
 * stderr. mw_cli_free undoes it. */
int mw_cli_parse(int argc, char **argv, mw_cli *c);
void mw_cli_free(mw_cli *c);

/* Whether the schema comes from files (--proto, --protoset) instead of
 * reflection. */
int mw_cli_local_schema(const mw_cli *c);
/* The --proto and --protoset files compiled and loaded into a new schema
 * (with google.rpc's error types). NULL with err filled on failure. */
mw_schema *mw_cli_load_files(const mw_cli *c, char *err, size_t errlen);
/* An empty schema to load reflection's files into; NULL when out of
 * memory. mw_cli_finish_schema adds google.rpc's error types after. */
mw_schema *mw_cli_new_schema(void);
int mw_cli_finish_schema(mw_schema *s, char *err, size_t errlen);

/* Prints "moonwire CMD: msg" to stderr and returns rc (an exit status). */
int mw_cli_fail(const mw_cli *c, int rc, const char *msg);

/* Standard base64 (RFC 4648 section 4, padding optional on input), for -bin
 * metadata. Encode appends to b; decode returns the bytes (malloc'd, *len
 * set) or NULL when s is not base64. */
struct mw_buf;
void mw_cli_base64(struct mw_buf *b, const char *s, size_t n);
char *mw_cli_unbase64(const char *s, size_t n, size_t *len);

#endif
