/* moonwire list ADDR [SERVICE] and moonwire describe ADDR [SYMBOL]: what
 * a server serves, from its reflection (or the files given), in .proto
 * syntax (schema/mw_protoprint.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_buf.h"
#include "base/mw_status.h"
#include "cmd/client.h"
#include "cmd/cmd.h"
#include "schema/mw_protoprint.h"

typedef struct desc_ctx {
  mw_cli *c;
  mw_rpc_conn *conn;
  mw_reflect *refl; /* NULL with files given */
  mw_schema *schema;
  char err[2048];
} desc_ctx;

/* The service names: the server's list, or those the files define. */
static int service_names(desc_ctx *x, mw_strvec *names) {
  if (!x->refl) {
    const mw_schema *s = x->schema;
    for (size_t i = 0; i < mw_schema_pool_file_count(s); i++) {
      const upb_FileDef *f =
          upb_DefPool_FindFileByName(mw_schema_pool(s), mw_schema_pool_file(s, i));
      for (int j = 0; f && j < upb_FileDef_ServiceCount(f); j++)
        if (mw_strvec_push(names, upb_ServiceDef_FullName(upb_FileDef_Service(f, j))) != 0)
          return MW_CLI_LOCAL;
    }
    return 0;
  }
  int rc = mw_reflect_services(x->refl, names, x->err, sizeof x->err);
  return rc == MW_REFLECT_LOCAL ? MW_CLI_LOCAL : rc;
}

/* Makes sure the schema has symbol: asks reflection for its file. */
static int load_symbol(desc_ctx *x, const char *symbol) {
  if (!x->refl) return 0;
  if (upb_DefPool_FindFileContainingSymbol(mw_schema_pool(x->schema), symbol)) return 0;
  int rc = mw_reflect_symbol(x->refl, symbol, x->schema, x->err, sizeof x->err);
  return rc == MW_REFLECT_LOCAL ? MW_CLI_LOCAL : rc;
}

/* The symbol in .proto syntax, after a comment line naming it and its
 * file. Returns 0, or an exit status with x->err filled. */
static int describe(desc_ctx *x, const char *symbol, mw_buf *b) {
  const upb_DefPool *pool = mw_schema_pool(x->schema);
  const upb_ServiceDef *svc = upb_DefPool_FindServiceByName(pool, symbol);
  const upb_MessageDef *msg = upb_DefPool_FindMessageByName(pool, symbol);
  const upb_EnumDef *en = upb_DefPool_FindEnumByName(pool, symbol);
  const upb_MethodDef *method = NULL;
  const char *dot = strrchr(symbol, '.');
  if (!svc && !msg && !en && dot) {
    char *parent = strndup(symbol, (size_t)(dot - symbol));
    const upb_ServiceDef *ps = parent ? upb_DefPool_FindServiceByName(pool, parent) : NULL;
    if (ps) method = upb_ServiceDef_FindMethodByName(ps, dot + 1);
    free(parent);
  }
  if (svc) {
    mw_buf_printf(b, "// %s: a service of %s\n", symbol,
                  upb_FileDef_Name(upb_ServiceDef_File(svc)));
    mw_protoprint_service(b, svc, 0);
  } else if (method) {
    mw_buf_printf(b, "// %s: a method of %s\n", symbol,
                  upb_ServiceDef_FullName(upb_MethodDef_Service(method)));
    mw_protoprint_method(b, method, 0);
  } else if (msg) {
    mw_buf_printf(b, "// %s: a message of %s\n", symbol,
                  upb_FileDef_Name(upb_MessageDef_File(msg)));
    mw_protoprint_message(b, msg, 0);
  } else if (en) {
    mw_buf_printf(b, "// %s: an enum of %s\n", symbol, upb_FileDef_Name(upb_EnumDef_File(en)));
    mw_protoprint_enum(b, en, 0);
  } else {
    snprintf(x->err, sizeof x->err, "%s is not a service, method, message or enum%s", symbol,
             upb_DefPool_FindFileContainingSymbol(pool, symbol) ? "" : " of the schema");
    return x->refl ? MW_STATUS_NOT_FOUND : MW_CLI_LOCAL;
  }
  return 0;
}

static int run(desc_ctx *x, int is_list) {
  mw_cli *c = x->c;
  const char *arg = c->n_args ? c->args[0] : NULL;
  mw_strvec names = {0};
  mw_buf b = {0};
  int rc = 0;
  if (is_list && !arg) {
    rc = service_names(x, &names);
    for (size_t i = 0; rc == 0 && i < names.n; i++) mw_buf_printf(&b, "%s\n", names.v[i]);
  } else if (is_list) {
    rc = load_symbol(x, arg);
    const upb_ServiceDef *svc =
        rc ? NULL : upb_DefPool_FindServiceByName(mw_schema_pool(x->schema), arg);
    if (rc == 0 && !svc) {
      snprintf(x->err, sizeof x->err, "%s is not a service", arg);
      rc = x->refl ? MW_STATUS_NOT_FOUND : MW_CLI_LOCAL;
    }
    for (int i = 0; rc == 0 && i < upb_ServiceDef_MethodCount(svc); i++)
      mw_buf_printf(&b, "%s\n", upb_MethodDef_FullName(upb_ServiceDef_Method(svc, i)));
  } else if (arg) {
    rc = load_symbol(x, arg);
    if (rc == 0) rc = describe(x, arg, &b);
  } else {
    rc = service_names(x, &names);
    for (size_t i = 0; rc == 0 && i < names.n; i++) {
      rc = load_symbol(x, names.v[i]);
      if (rc == 0 && i) mw_buf_puts(&b, "\n");
      if (rc == 0) rc = describe(x, names.v[i], &b);
    }
  }
  if (rc == MW_STATUS_NOT_FOUND && arg && strstr(x->err, arg) == NULL)
    snprintf(x->err, sizeof x->err, "the server does not know %s", arg);
  if (b.oom && rc == 0) {
    snprintf(x->err, sizeof x->err, "out of memory");
    rc = MW_CLI_LOCAL;
  }
  if (rc == 0) fputs(b.p ? b.p : "", stdout);
  mw_buf_free(&b);
  mw_strvec_free(&names);
  return rc;
}

static int list_or_describe(int argc, char **argv, int is_list) {
  mw_cli c;
  int rc = mw_cli_parse(argc, argv, &c);
  if (rc >= 0) {
    mw_cli_free(&c);
    return rc;
  }
  desc_ctx x = {.c = &c};
  if (mw_cli_local_schema(&c)) {
    x.schema = mw_cli_load_files(&c, x.err, sizeof x.err);
    rc = x.schema ? 0 : MW_CLI_LOCAL;
  } else if (!(x.conn = mw_rpc_connect(&c.target, x.err, sizeof x.err))) {
    rc = MW_CLI_LOCAL;
  } else {
    x.schema = mw_cli_new_schema();
    x.refl = x.schema ? mw_reflect_new(x.conn, c.md, c.n_md, c.deadline_s) : NULL;
    rc = x.refl ? 0 : MW_CLI_LOCAL;
    if (rc) snprintf(x.err, sizeof x.err, "out of memory");
  }
  if (rc == 0) rc = run(&x, is_list);
  if (rc && x.err[0]) mw_cli_fail(&c, rc, x.err);
  mw_reflect_free(x.refl);
  mw_schema_free(x.schema);
  mw_rpc_conn_free(x.conn);
  mw_cli_free(&c);
  return rc;
}

int mw_cmd_list(int argc, char **argv) { return list_or_describe(argc, argv, 1); }
int mw_cmd_describe(int argc, char **argv) { return list_or_describe(argc, argv, 0); }
