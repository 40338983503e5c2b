/* The browser console's routes (http/mw_console.h). */
#include "http/mw_console.h"

#include <stdlib.h>
#include <string.h>

#include <h2o.h>

#include "base/mw_buf.h"
#include "base/mw_embedded.h"
#include "codec/mw_json.h"
#include "core/mw_router.h"
#include "http/mw_webwire.h"
#include "schema/mw_methods.h"
#include "upb/def.h"

/* Generated at build time (build/gen/): runtime/http/console/. */
extern const mw_embedded mw_console_assets[];
extern const size_t mw_console_assets_count;

/* The page runs only its own script and style, talks only to its own
 * origin, and may not be framed (no clickjacking of the send button). */
#define CSP "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " \
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#define MAX_DEPTH 24 /* nested messages a template goes into at most */

/* --- the request templates ------------------------------------------------- */

typedef struct tmpl {
  mw_buf *b;
  const upb_MessageDef *stack[MAX_DEPTH]; /* the types being filled */
  int depth;
} tmpl;

static int being_filled(const tmpl *t, const upb_MessageDef *m) {
  for (int i = 0; i < t->depth; i++)
    if (t->stack[i] == m) return 1;
  return 0;
}

static void message_json(tmpl *t, const upb_MessageDef *m);

/* The example of one value of f (not its repetition): 0 when it has none
 * (a type already being filled, google.protobuf.Any), nothing written. */
static int value_json(tmpl *t, const upb_FieldDef *f, int as_key) {
  mw_buf *b = t->b;
  switch (upb_FieldDef_CType(f)) {
  case kUpb_CType_Bool: mw_buf_puts(b, as_key ? "\"true\"" : "true"); return 1;
  case kUpb_CType_Float:
  case kUpb_CType_Double: mw_buf_puts(b, "1.5"); return 1;
  case kUpb_CType_Int32:
  case kUpb_CType_UInt32:
  case kUpb_CType_Int64:
  case kUpb_CType_UInt64: mw_buf_puts(b, as_key ? "\"1\"" : "1"); return 1;
  case kUpb_CType_String: {
    const char *n = upb_FieldDef_Name(f);
    mw_buf_json(b, n, strlen(n));
    return 1;
  }
  case kUpb_CType_Bytes: mw_buf_puts(b, "\"\""); return 1; /* base64 of nothing */
  case kUpb_CType_Enum: {
    const upb_EnumDef *e = upb_FieldDef_EnumSubDef(f);
    if (!e || upb_EnumDef_ValueCount(e) == 0) return 0;
    const char *n = upb_EnumValueDef_Name(upb_EnumDef_Value(e, 0));
    mw_buf_json(b, n, strlen(n));
    return 1;
  }
  case kUpb_CType_Message: {
    const upb_MessageDef *m = upb_FieldDef_MessageSubDef(f);
    if (!m || being_filled(t, m) || t->depth >= MAX_DEPTH) return 0;
    /* The well-known types have JSON forms of their own. */
    switch (upb_MessageDef_WellKnownType(m)) {
    case kUpb_WellKnown_Any: return 0;
    case kUpb_WellKnown_Timestamp: mw_buf_puts(b, "\"1970-01-01T00:00:00Z\""); return 1;
    case kUpb_WellKnown_Duration: mw_buf_puts(b, "\"1s\""); return 1;
    case kUpb_WellKnown_FieldMask: mw_buf_puts(b, "\"\""); return 1;
    case kUpb_WellKnown_Struct: mw_buf_puts(b, "{}"); return 1;
    case kUpb_WellKnown_ListValue: mw_buf_puts(b, "[]"); return 1;
    case kUpb_WellKnown_Value: mw_buf_puts(b, "null"); return 1;
    case kUpb_WellKnown_DoubleValue:
    case kUpb_WellKnown_FloatValue:
    case kUpb_WellKnown_Int64Value:
    case kUpb_WellKnown_UInt64Value:
    case kUpb_WellKnown_Int32Value:
    case kUpb_WellKnown_UInt32Value:
    case kUpb_WellKnown_StringValue:
    case kUpb_WellKnown_BytesValue:
    case kUpb_WellKnown_BoolValue: {
      /* A wrapper is its value alone. */
      const upb_FieldDef *v = upb_MessageDef_FindFieldByNumber(m, 1);
      return v ? value_json(t, v, 0) : 0;
    }
    default: message_json(t, m); return 1;
    }
  }
  }
  return 0;
}

/* The rule of stub mode's default message (lua/moonwire/stub.lua):
 * strings hold their field's name, numbers 1, booleans true, enums their
 * first value, repeated fields and maps one element, messages recurse;
 * the first field of each oneof only. Names are the JSON names. */
static void message_json(tmpl *t, const upb_MessageDef *m) {
  mw_buf *b = t->b;
  t->stack[t->depth++] = m;
  mw_buf_puts(b, "{");
  int n = 0, nf = upb_MessageDef_FieldCount(m);
  const upb_OneofDef *done[64];
  int n_done = 0;
  for (int i = 0; i < nf; i++) {
    const upb_FieldDef *f = upb_MessageDef_Field(m, i);
    const upb_OneofDef *o = upb_FieldDef_RealContainingOneof(f);
    int skip = 0;
    for (int k = 0; o && k < n_done; k++) skip |= done[k] == o;
    if (skip) continue;
    size_t mark = b->len;
    mw_buf_puts(b, n ? "," : "");
    const char *jn = upb_FieldDef_JsonName(f);
    mw_buf_json(b, jn, strlen(jn));
    mw_buf_puts(b, ":");
    int ok;
    if (upb_FieldDef_IsMap(f)) {
      const upb_MessageDef *entry = upb_FieldDef_MessageSubDef(f);
      mw_buf_puts(b, "{");
      ok = value_json(t, upb_MessageDef_FindFieldByNumber(entry, 1), 1);
      mw_buf_puts(b, ":");
      ok = ok && value_json(t, upb_MessageDef_FindFieldByNumber(entry, 2), 0);
      mw_buf_puts(b, "}");
    } else if (upb_FieldDef_IsRepeated(f)) {
      mw_buf_puts(b, "[");
      ok = value_json(t, f, 0);
      mw_buf_puts(b, "]");
    } else {
      ok = value_json(t, f, 0);
    }
    if (!ok) {
      b->len = mark; /* the field has no example: left out */
      continue;
    }
    n++;
    if (o && n_done < (int)(sizeof done / sizeof done[0])) done[n_done++] = o;
  }
  mw_buf_puts(b, "}");
  t->depth--;
}

char *mw_console_template_json(const upb_MessageDef *m, size_t *len) {
  mw_buf b = {0};
  tmpl t = {.b = &b};
  message_json(&t, m);
  return mw_buf_take(&b, len);
}

/* --- the schema document ---------------------------------------------------- */

static void jstr(mw_buf *b, const char *key, const char *v) {
  mw_buf_printf(b, "\"%s\":", key);
  mw_buf_json(b, v, strlen(v));
}

char *mw_console_schema_json(const mw_router *r, const char *call_base, size_t *len) {
  const mw_methods *ms = mw_router_methods(r);
  mw_buf b = {0};
  mw_buf_printf(&b, "{\"generation\":%u,", mw_router_id(r));
  jstr(&b, "call_base", call_base);
  mw_buf_puts(&b, ",\"services\":[");
  /* The table is in the schema's service order: a service's methods are
   * together. */
  const char *svc = NULL;
  size_t n = mw_methods_count(ms);
  for (size_t i = 0; i < n; i++) {
    const mw_method *m = mw_methods_at(ms, i);
    if (!svc || strcmp(svc, m->service) != 0) {
      mw_buf_puts(&b, svc ? "]}," : "");
      mw_buf_puts(&b, "{");
      jstr(&b, "name", m->service);
      mw_buf_puts(&b, ",\"methods\":[");
      svc = m->service;
    } else {
      mw_buf_puts(&b, ",");
    }
    mw_buf_puts(&b, "{");
    jstr(&b, "name", m->name);
    mw_buf_puts(&b, ",");
    jstr(&b, "path", m->path);
    mw_buf_puts(&b, ",");
    jstr(&b, "kind", mw_kind_name(m->kind));
    mw_buf_puts(&b, ",");
    jstr(&b, "input", upb_MessageDef_FullName(m->input));
    mw_buf_puts(&b, ",");
    jstr(&b, "output", upb_MessageDef_FullName(m->output));
    mw_buf_puts(&b, ",\"template\":");
    tmpl t = {.b = &b};
    message_json(&t, m->input);
    mw_buf_puts(&b, "}");
  }
  mw_buf_puts(&b, svc ? "]}]}\n" : "]}\n");
  return mw_buf_take(&b, len);
}

/* --- serving ------------------------------------------------------------------- */

static void add_header(h2o_req_t *req, const h2o_token_t *tok, const char *v) {
  h2o_add_header(&req->pool, &req->res.headers, tok, NULL, v, strlen(v));
}

/* Names h2o has no token for (static strings: h2o keeps the pointers). */
static void add_header_s(h2o_req_t *req, const char *name, const char *v) {
  h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, v,
                        strlen(v));
}

static int answer(h2o_req_t *req, int status, const char *ct, const char *body, size_t len) {
  req->res.status = status;
  req->res.reason = status == 200 ? "OK" : status == 400 ? "Bad Request"
                  : status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed"
                  : "Internal Server Error";
  add_header(req, H2O_TOKEN_CONTENT_TYPE, ct);
  add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
  add_header_s(req, "x-content-type-options", "nosniff");
  add_header_s(req, "content-security-policy", CSP);
  add_header_s(req, "x-frame-options", "DENY");
  if (status == 405) add_header(req, H2O_TOKEN_ALLOW, "GET");
  req->res.content_length = len;
  h2o_send_inline(req, body, len); /* copied into the request's pool */
  return 0;
}

static const char *content_type_of(const char *path) {
  const char *dot = strrchr(path, '.');
  if (dot && strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
  if (dot && strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
  return "text/html; charset=utf-8";
}

static const mw_embedded *asset(const char *name, size_t n) {
  for (size_t i = 0; i < mw_console_assets_count; i++)
    if (strlen(mw_console_assets[i].path) == n &&
        memcmp(mw_console_assets[i].path, name, n) == 0)
      return &mw_console_assets[i];
  return NULL;
}

/* --- error details ------------------------------------------------------------ */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The query parameter name, percent-decoded into a malloc'd string (NULL
 * when absent, malformed or out of memory). */
static char *query_param(h2o_req_t *req, const char *name, size_t *len) {
  if (req->query_at == SIZE_MAX) return NULL;
  const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
  size_t nl = strlen(name);
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *e = amp ? amp : end;
    if ((size_t)(e - q) > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
      const char *v = q + nl + 1;
      char *out = malloc((size_t)(e - v) + 1);
      size_t n = 0;
      for (; out && v < e; v++) {
        if (*v == '%') {
          int h = e - v > 2 ? hexval(v[1]) : -1, l = h >= 0 ? hexval(v[2]) : -1;
          if (l < 0) {
            free(out);
            return NULL;
          }
          out[n++] = (char)(h * 16 + l);
          v += 2;
        } else {
          out[n++] = *v == '+' ? ' ' : *v;
        }
      }
      if (out) out[n] = 0;
      if (len) *len = n;
      return out;
    }
    q = e + 1;
  }
  return NULL;
}

/* GET /console/detail?type=T&value=B64: an error detail (a Connect
 * error's {type, value}) as JSON, decoded with the live schema, which has
 * the google.rpc details and the services' own types. */
static int detail(h2o_req_t *req, mw_server *server) {
  size_t vl = 0;
  char *type = query_param(req, "type", NULL), *value = query_param(req, "value", &vl);
  unsigned char *bin = value ? malloc(vl + 4) : NULL;
  long bl = bin ? mw_web_b64_decode(value, vl, bin, 1) : -1;
  int rc;
  if (!type || bl < 0) {
    rc = answer(req, 400, "text/plain; charset=utf-8",
                H2O_STRLIT("a detail needs ?type=NAME&value=BASE64\n"));
  } else {
    mw_router *r = mw_server_router_acquire(server);
    const upb_DefPool *pool = mw_schema_pool(mw_methods_schema(mw_router_methods(r)));
    const upb_MessageDef *m = upb_DefPool_FindMessageByName(pool, type);
    upb_Arena *a = m ? upb_Arena_New() : NULL;
    const char *out = NULL;
    size_t ol = 0;
    char err[256];
    if (!m)
      rc = answer(req, 404, "text/plain; charset=utf-8",
                  H2O_STRLIT("no such message type in the schema\n"));
    else if (!a || mw_json_from_binary((const char *)bin, (size_t)bl, m, pool, 0, NULL, a, &out,
                                       &ol, err, sizeof err) != MW_JSON_OK)
      rc = answer(req, 400, "text/plain; charset=utf-8", H2O_STRLIT("cannot decode it\n"));
    else
      rc = answer(req, 200, "application/json", out, ol);
    if (a) upb_Arena_Free(a);
    mw_router_unref(r);
  }
  free(type);
  free(value);
  free(bin);
  return rc;
}

int mw_console_serve(h2o_req_t *req, mw_server *server, const char *call_base) {
  const char *p = req->path_normalized.base;
  size_t n = req->path_normalized.len;
  if (n < 8 || memcmp(p, "/console", 8) != 0 || (n > 8 && p[8] != '/')) return -1;
  /* The calls on the admin listener are not the console's pages. */
  size_t rl = strlen(MW_CONSOLE_RPC_PREFIX);
  if (n > rl && memcmp(p, MW_CONSOLE_RPC_PREFIX "/", rl + 1) == 0) return -1;
  if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")))
    return answer(req, 405, "text/plain; charset=utf-8", H2O_STRLIT("the console takes GET\n"));
  const char *rest = p + 8;
  size_t restn = n - 8;
  if (restn > 0) rest++, restn--; /* the slash */
  if (restn == 0) {
    const mw_embedded *e = asset("index.html", 10);
    if (!e) return answer(req, 404, "text/plain; charset=utf-8", H2O_STRLIT("not found\n"));
    return answer(req, 200, content_type_of(e->path), e->data, e->len);
  }
  if (restn == 6 && memcmp(rest, "schema", 6) == 0) {
    mw_router *r = mw_server_router_acquire(server);
    size_t len = 0;
    char *json = mw_console_schema_json(r, call_base, &len);
    mw_router_unref(r);
    if (!json)
      return answer(req, 500, "text/plain; charset=utf-8", H2O_STRLIT("out of memory\n"));
    answer(req, 200, "application/json", json, len);
    free(json);
    return 0;
  }
  if (restn == 6 && memcmp(rest, "detail", 6) == 0) return detail(req, server);
  if (restn == 10 && memcmp(rest, "generation", 10) == 0) {
    mw_router *r = mw_server_router_acquire(server);
    char buf[48];
    int len = snprintf(buf, sizeof buf, "{\"generation\":%u}\n", mw_router_id(r));
    mw_router_unref(r);
    return answer(req, 200, "application/json", buf, (size_t)len);
  }
  const mw_embedded *e = memchr(rest, '/', restn) ? NULL : asset(rest, restn);
  if (!e) return answer(req, 404, "text/plain; charset=utf-8", H2O_STRLIT("not found\n"));
  return answer(req, 200, content_type_of(e->path), e->data, e->len);
}
