/* moonwire new DIR [--proto FILE]: a service directory that serves at once.
 *
 * Writes into a new (or empty) DIR: the .proto (FILE and the imports found
 * beside it, or a starter one), a .lua with a handler for every method of
 * every service FILE defines (the signature its RPC kind needs, the request
 * and response fields in a comment above it) and a moonwire.yaml with the
 * common keys commented, and a spec for moonwire test (a busted file that
 * calls every method). FILE is compiled first, so a .proto with errors
 * writes nothing. Nothing existing is ever overwritten. */
#include "cmd/cmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mw_buf.h"
#include "base/mw_fs.h"
#include "schema/mw_schema.h"

#define MW_NEW_MAX_PROTO (16u << 20)
#define MW_NEW_FIELDS 8 /* fields named in a message's comment */

static int fail(const char *fmt, const char *a, const char *b) {
  fputs("moonwire new: ", stderr);
  fprintf(stderr, fmt, a, b);
  fputc('\n', stderr);
  return 1;
}

/* The directory's last component as a proto package and Lua file name:
 * lower case letters, digits and '_', starting with a letter. */
static void base_name(const char *dir, char *out, size_t cap) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  size_t s = n;
  while (s > 0 && dir[s - 1] != '/') s--;
  size_t j = 0;
  for (size_t i = s; i < n && j + 1 < cap; i++) {
    char c = dir[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') out[j++] = c;
    else if (j > 0 && out[j - 1] != '_') out[j++] = '_';
  }
  while (j > 0 && out[j - 1] == '_') j--;
  out[j] = '\0';
  if (j == 0 || !(out[0] >= 'a' && out[0] <= 'z')) {
    /* Room for the prefix: the name is cut to fit. */
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%.40s", out);
    snprintf(out, cap, "app%s%s", j ? "_" : "", tmp);
  }
}

/* Creates path's missing parent directories (every component before its last '/'). */
static int make_parents(const char *path) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return 0;
}

/* 0 when dir does not exist or is an empty directory (made if missing). */
static int prepare_dir(const char *dir) {
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (errno != ENOENT) return fail("%s: %s", dir, strerror(errno));
    char *slashed = mw_fs_join(dir, "");
    int made = slashed && make_parents(slashed) == 0;
    free(slashed);
    if (!made) return fail("cannot create %s: %s", dir, strerror(errno));
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) return fail("%s exists and is not a directory%s", dir, "");
  DIR *d = opendir(dir);
  if (!d) return fail("cannot read %s: %s", dir, strerror(errno));
  size_t n = 0;
  for (struct dirent *e; (e = readdir(d));)
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  if (n) return fail("%s is not empty: moonwire new writes only into a new or empty directory", dir, "");
  return 0;
}

/* Writes len bytes to dir/name, refusing to replace a file. */
static int write_new(const char *dir, const char *name, const char *data, size_t len) {
  char *path = mw_fs_join(dir, name);
  if (!path) return fail("out of memory%s%s", "", "");
  FILE *f = NULL;
  if (make_parents(path) == 0) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd >= 0) f = fdopen(fd, "w");
    if (!f && fd >= 0) close(fd);
  }
  int ok = f && fwrite(data, 1, len, f) == len;
  if (f && fclose(f) != 0) ok = 0;
  if (!ok) fail("cannot write %s: %s", path, strerror(errno));
  free(path);
  return ok ? 0 : 1;
}

static const char *kw[] = {"and", "break", "do", "else", "elseif", "end", "false", "for",
                           "function", "goto", "if", "in", "local", "nil", "not", "or",
                           "repeat", "return", "then", "true", "until", "while"};

static int lua_keyword(const char *s) {
  for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
    if (!strcmp(s, kw[i])) return 1;
  return 0;
}

static const char *scalar_name(upb_CType t) {
  switch (t) {
  case kUpb_CType_Bool: return "bool";
  case kUpb_CType_Float: return "float";
  case kUpb_CType_Double: return "double";
  case kUpb_CType_Int32: return "int32";
  case kUpb_CType_UInt32: return "uint32";
  case kUpb_CType_Int64: return "int64";
  case kUpb_CType_UInt64: return "uint64";
  case kUpb_CType_String: return "string";
  case kUpb_CType_Bytes: return "bytes";
  default: return "?";
  }
}

static void put_type(mw_buf *b, const upb_FieldDef *f) {
  upb_CType t = upb_FieldDef_CType(f);
  if (t == kUpb_CType_Message) mw_buf_puts(b, upb_MessageDef_FullName(upb_FieldDef_MessageSubDef(f)));
  else if (t == kUpb_CType_Enum) mw_buf_puts(b, upb_EnumDef_FullName(upb_FieldDef_EnumSubDef(f)));
  else mw_buf_puts(b, scalar_name(t));
}

/* "pkg.Msg {a: string, b: repeated int32, m: map<string, pkg.V>}" */
static void describe_message(mw_buf *b, const upb_MessageDef *m) {
  mw_buf_printf(b, "%s {", upb_MessageDef_FullName(m));
  int n = upb_MessageDef_FieldCount(m);
  for (int i = 0; i < n && i < MW_NEW_FIELDS; i++) {
    const upb_FieldDef *f = upb_MessageDef_Field(m, i);
    mw_buf_printf(b, "%s%s: ", i ? ", " : "", upb_FieldDef_Name(f));
    if (upb_FieldDef_IsMap(f)) {
      const upb_MessageDef *e = upb_FieldDef_MessageSubDef(f);
      mw_buf_puts(b, "map<");
      put_type(b, upb_MessageDef_FindFieldByNumber(e, 1));
      mw_buf_puts(b, ", ");
      put_type(b, upb_MessageDef_FindFieldByNumber(e, 2));
      mw_buf_puts(b, ">");
    } else {
      if (upb_FieldDef_IsRepeated(f)) mw_buf_puts(b, "repeated ");
      put_type(b, f);
    }
  }
  if (n > MW_NEW_FIELDS) mw_buf_printf(b, ", ... %d more", n - MW_NEW_FIELDS);
  mw_buf_puts(b, "}");
}

/* One handler skeleton, its signature fixed by the RPC kind. */
static void put_handler(mw_buf *b, const char *var, const upb_MethodDef *md) {
  const char *name = upb_MethodDef_Name(md);
  int cs = upb_MethodDef_ClientStreaming(md), ss = upb_MethodDef_ServerStreaming(md);
  const upb_MessageDef *in = upb_MethodDef_InputType(md), *out = upb_MethodDef_OutputType(md);
  mw_buf_printf(b, "\n-- rpc %s(%s%s) returns (%s%s)\n", name, cs ? "stream " : "",
                upb_MessageDef_Name(in), ss ? "stream " : "", upb_MessageDef_Name(out));
  mw_buf_puts(b, cs ? "--   each message: " : "--   req: ");
  describe_message(b, in);
  mw_buf_puts(b, ss ? "\n--   each reply:   " : "\n--   returns: ");
  describe_message(b, out);
  mw_buf_puts(b, "\n");
  const char *params = !cs && !ss ? "req, ctx" : !cs ? "req, stream, ctx" : "stream, ctx";
  if (lua_keyword(name)) mw_buf_printf(b, "%s[\"%s\"] = function(%s)\n", var, name, params);
  else mw_buf_printf(b, "function %s.%s(%s)\n", var, name, params);
  if (!cs && !ss) {
    mw_buf_puts(b, "  return {}\n");
  } else if (!cs) {
    mw_buf_puts(b, "  -- stream:send{...} once for each reply; returning ends the stream with OK\n");
  } else if (!ss) {
    mw_buf_puts(b, "  for msg in stream:iter() do\n    -- msg is one request message\n  end\n"
                   "  return {}\n");
  } else {
    mw_buf_puts(b, "  for msg in stream:iter() do\n    -- stream:send{...} whenever a reply is ready\n"
                   "  end\n");
  }
  mw_buf_puts(b, "end\n");
}

/* The Lua file for every service of the schema's own files. */
static char *handlers_lua(const mw_schema *s, size_t *len) {
  mw_buf b = {0};
  mw_buf_puts(&b, "-- Handlers: one function per method. Edit and save: the server reloads.\n"
                  "-- docs/lua-api.md has the API (ctx, stream, mw.fail, mw.client...).\n"
                  "local mw = require \"moonwire\"\n");
  for (size_t i = 0; i < mw_schema_service_count(s); i++) {
    const upb_ServiceDef *svc = mw_schema_service(s, i);
    char var[128];
    snprintf(var, sizeof var, "%s%s", upb_ServiceDef_Name(svc),
             lua_keyword(upb_ServiceDef_Name(svc)) || !strcmp(upb_ServiceDef_Name(svc), "mw") ? "_" : "");
    mw_buf_printf(&b, "\nlocal %s = mw.service \"%s\"\n", var, upb_ServiceDef_FullName(svc));
    for (int j = 0; j < upb_ServiceDef_MethodCount(svc); j++)
      put_handler(&b, var, upb_ServiceDef_Method(svc, j));
  }
  return mw_buf_take(&b, len);
}

/* "RouteGuide" -> "route_guide" (cap > 0). */
static void snake_name(const char *s, char *out, size_t cap) {
  size_t j = 0;
  for (size_t i = 0; s[i] && j + 2 < cap; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') {
      if (i > 0 && j > 0 && out[j - 1] != '_' && !(s[i - 1] >= 'A' && s[i - 1] <= 'Z'))
        out[j++] = '_';
      c = (char)(c - 'A' + 'a');
    } else if (c == '.') {
      c = '_';
    }
    out[j++] = c;
  }
  out[j] = '\0';
}

/* The spec of one service: each method called once the way its kind is
 * called, asserting only that the skeleton answers without an error, so
 * the spec passes at once and keeps passing while the handlers are filled
 * in; the place to write what they should answer. */
static char *service_spec(const upb_ServiceDef *svc, const char *dir, const char *lua_name,
                          size_t *len) {
  mw_buf b = {0};
  const char *full = upb_ServiceDef_FullName(svc);
  mw_buf_printf(&b, "-- Specs of %s: `moonwire test %s` runs them\n"
                    "-- with busted against the directory's services, served in the same\n"
                    "-- process (docs/commands/test.md). Each calls a handler of %s\n"
                    "-- once; write what yours should answer.\n"
                    "local mw = require \"moonwire\"\n\n"
                    "describe(\"%s\", function()\n"
                    "  local c = mw.test.client()\n",
                full, dir, lua_name, full);
  for (int j = 0; j < upb_ServiceDef_MethodCount(svc); j++) {
    const upb_MethodDef *md = upb_ServiceDef_Method(svc, j);
    int cs = upb_MethodDef_ClientStreaming(md), ss = upb_MethodDef_ServerStreaming(md);
    const char *name = upb_MethodDef_Name(md);
    /* Requests: a message for one, a list of messages for a stream of them. */
    const char *req = cs ? "{{}}" : "{}";
    const char *what = !cs && !ss ? "answers" : !cs ? "streams" : !ss ? "takes a stream and answers"
                                                                      : "chats";
    mw_buf_printf(&b, "\n  it(\"%s %s\", function()\n"
                      "    local %s, err = c:call(\"%s/%s\", %s)\n"
                      "    assert.is_nil(err)\n"
                      "    assert.is_table(%s)\n"
                      "  end)\n",
                  what, name, ss ? "replies" : "res", full, name, req, ss ? "replies" : "res");
  }
  mw_buf_puts(&b, "end)\n");
  return mw_buf_take(&b, len);
}

/* A spec file for every service of the schema's own files, named after the
 * service (route_guide_spec.lua); added to names. */
static int write_specs(const mw_schema *s, const char *dir, const char *lua_name, mw_buf *names) {
  size_t n = mw_schema_service_count(s);
  for (size_t i = 0; i < n; i++) {
    const upb_ServiceDef *svc = mw_schema_service(s, i);
    /* Two services of one name in two packages: the full names tell them apart. */
    int clash = 0;
    for (size_t k = 0; k < n; k++)
      clash |= k != i && !strcmp(upb_ServiceDef_Name(mw_schema_service(s, k)), upb_ServiceDef_Name(svc));
    char base[200], file[220];
    snake_name(clash ? upb_ServiceDef_FullName(svc) : upb_ServiceDef_Name(svc), base, sizeof base);
    snprintf(file, sizeof file, "%s_spec.lua", base);
    size_t len;
    char *spec = service_spec(svc, dir, lua_name, &len);
    if (!spec) return fail("out of memory%s%s", "", "");
    int rc = write_new(dir, file, spec, len);
    free(spec);
    if (rc) return rc;
    mw_buf_printf(names, "%s, ", file);
  }
  return 0;
}

static const char starter_proto[] =
    "syntax = \"proto3\";\n"
    "\n"
    "package %s;\n"
    "\n"
    "// A starter service: edit it, save, and the server reloads.\n"
    "service %s {\n"
    "  // Unary: one request, one reply.\n"
    "  rpc Hello(HelloRequest) returns (HelloReply);\n"
    "  // Server streaming: one request, a stream of replies.\n"
    "  rpc Count(CountRequest) returns (stream CountReply);\n"
    "}\n"
    "\n"
    "message HelloRequest { string name = 1; }\n"
    "message HelloReply { string message = 1; }\n"
    "message CountRequest { int32 to = 1; }\n"
    "message CountReply { int32 n = 1; }\n";

static const char starter_lua[] =
    "-- Handlers: one function per method. Edit and save: the server reloads.\n"
    "-- docs/lua-api.md has the API (ctx, stream, mw.fail, mw.client...).\n"
    "local mw = require \"moonwire\"\n"
    "\n"
    "local %s = mw.service \"%s.%s\"\n"
    "\n"
    "-- rpc Hello(HelloRequest) returns (HelloReply)\n"
    "function %s.Hello(req, ctx)\n"
    "  if req.name == \"\" then mw.fail(mw.INVALID_ARGUMENT, \"name is required\") end\n"
    "  return {message = \"Hello, \" .. req.name}\n"
    "end\n"
    "\n"
    "-- rpc Count(CountRequest) returns (stream CountReply)\n"
    "function %s.Count(req, stream, ctx)\n"
    "  for i = 1, req.to do\n"
    "    stream:send{n = i}\n"
    "    mw.sleep(0.1)\n"
    "  end\n"
    "end\n";

static const char starter_spec[] =
    "-- Specs: `moonwire test %s` runs the *_spec.lua files with busted\n"
    "-- against this directory's services, served in the same process\n"
    "-- (docs/commands/test.md).\n"
    "local mw = require \"moonwire\"\n"
    "\n"
    "describe(\"%s.%s\", function()\n"
    "  local c = mw.test.client()\n"
    "\n"
    "  it(\"says hello\", function()\n"
    "    local res, err = c:call(\"%s.%s/Hello\", {name = \"Ada\"})\n"
    "    assert.is_nil(err)\n"
    "    assert.are.equal(\"Hello, Ada\", res.message)\n"
    "  end)\n"
    "\n"
    "  it(\"wants a name\", function()\n"
    "    local res, err = c:call(\"%s.%s/Hello\", {name = \"\"})\n"
    "    assert.is_nil(res)\n"
    "    assert.are.equal(mw.INVALID_ARGUMENT, err.code)\n"
    "  end)\n"
    "\n"
    "  it(\"counts\", function()\n"
    "    -- the handler sleeps 0.1 s between replies: the test clock skips them\n"
    "    local f = c:start(\"%s.%s/Count\", {to = 3})\n"
    "    for _ = 1, 3 do mw.test.clock.advance(0.1) end\n"
    "    local replies, err = f:wait()\n"
    "    assert.is_nil(err)\n"
    "    assert.are.same({{n = 1}, {n = 2}, {n = 3}}, replies)\n"
    "  end)\n"
    "end)\n";

static const char config_yaml[] =
    "# Read by `moonwire serve %s` and `moonwire check %s`: the directory is\n"
    "# served. Every key is optional; docs/config.md has them all.\n"
    "listen: 127.0.0.1:50051   # port 0 picks a free one\n"
    "# workers: 2              # threads, each with its own Lua state (default: one per core)\n"
    "# admin:\n"
    "#   listen: 127.0.0.1:9090  # /metrics, /healthz, /readyz, /debug/calls\n"
    "# log:\n"
    "#   level: info           # debug, info, warn, error\n"
    "#   format: text          # or json\n"
    "interceptors:\n"
    "  - access_log            # one log line per call: see what arrives\n"
    "# limits:\n"
    "#   max_receive_bytes: 4MiB\n"
    "#   handler_cpu_ms: 10000\n"
    "# reflection: true        # grpcurl, buf curl and Postman list the services\n";

/* Copies the files of the compiled schema that lie under root (FILE and
 * its local imports), by the names they are imported with. */
static int copy_sources(const mw_schema *s, const char *root, const char *dir, mw_buf *names) {
  for (size_t i = 0; i < mw_schema_pool_file_count(s); i++) {
    const char *name = mw_schema_pool_file(s, i);
    char *src = mw_fs_join(root, name);
    if (!src) return fail("out of memory%s%s", "", "");
    char *data = NULL;
    size_t len = 0;
    int err = 0;
    mw_fs_status st = mw_fs_read(src, MW_NEW_MAX_PROTO, &data, &len, &err);
    free(src);
    if (st != MW_FS_OK) continue; /* from an include path of the runtime's own */
    int rc = write_new(dir, name, data, len);
    free(data);
    if (rc) return rc;
    mw_buf_printf(names, "%s, ", name);
  }
  return 0;
}

int mw_cmd_new(const options *o) {
  if (!o->dir) return fail("needs a directory: moonwire new DIR [--proto FILE]%s%s", "", "");
  char name[64];
  base_name(o->dir, name, sizeof name);
  mw_schema *schema = NULL;
  char *root = NULL;
  if (o->proto) {
    /* Compiled before anything is written: a broken .proto leaves no trace. */
    root = strdup(o->proto);
    if (!root) return fail("out of memory%s%s", "", "");
    char *slash = strrchr(root, '/');
    const char *file = o->proto;
    if (slash) {
      *slash = '\0';
      file = slash + 1;
      if (!*root) strcpy(root, "/");
    } else {
      strcpy(root, ".");
    }
    const char *inc[] = {root}, *files[] = {file};
    mw_schema_input in = {.proto_path = inc, .n_proto_path = 1, .protos = files, .n_protos = 1};
    mw_diag diag = {0};
    schema = mw_schema_load(&in, &diag);
    if (!schema) {
      mw_cmd_print_diag(&diag);
      mw_diag_free(&diag);
      free(root);
      return 1;
    }
    mw_diag_free(&diag);
    if (mw_schema_service_count(schema) == 0) {
      mw_schema_free(schema);
      free(root);
      return fail("%s defines no service: nothing to serve%s", o->proto, "");
    }
  }
  int rc = prepare_dir(o->dir);
  char *lua = NULL;
  size_t lua_len = 0;
  char lua_name[80], buf[4096];
  mw_buf written = {0}; /* "a.proto, b.proto, " for the summary */
  mw_buf spec_names = {0}; /* "a_spec.lua, " likewise */
  snprintf(lua_name, sizeof lua_name, "%s.lua", name);
  if (!rc && schema) {
    rc = copy_sources(schema, root, o->dir, &written);
    if (!rc && !(lua = handlers_lua(schema, &lua_len))) rc = fail("out of memory%s%s", "", "");
    if (!rc) rc = write_new(o->dir, lua_name, lua, lua_len);
    if (!rc) rc = write_specs(schema, o->dir, lua_name, &spec_names);
  } else if (!rc) {
    /* The service is the package in CamelCase: shop_api -> ShopApi. */
    char svc[64];
    size_t j = 0;
    for (size_t i = 0; name[i] && j + 1 < sizeof svc; i++) {
      if (name[i] == '_') continue;
      int up = i == 0 || name[i - 1] == '_';
      svc[j++] = up && name[i] >= 'a' && name[i] <= 'z' ? (char)(name[i] - 'a' + 'A') : name[i];
    }
    svc[j] = '\0';
    char proto_name[80];
    snprintf(proto_name, sizeof proto_name, "%s.proto", name);
    int n = snprintf(buf, sizeof buf, starter_proto, name, svc);
    rc = write_new(o->dir, proto_name, buf, (size_t)n);
    mw_buf_printf(&written, "%s, ", proto_name);
    if (!rc) {
      n = snprintf(buf, sizeof buf, starter_lua, svc, name, svc, svc, svc);
      rc = write_new(o->dir, lua_name, buf, (size_t)n);
    }
    if (!rc) {
      char spec_name[80];
      snprintf(spec_name, sizeof spec_name, "%s_spec.lua", name);
      n = snprintf(buf, sizeof buf, starter_spec, o->dir, name, svc, name, svc, name, svc, name, svc);
      rc = write_new(o->dir, spec_name, buf, (size_t)n);
      mw_buf_printf(&spec_names, "%s, ", spec_name);
    }
  }
  if (!rc) {
    int n = snprintf(buf, sizeof buf, config_yaml, o->dir, o->dir);
    rc = write_new(o->dir, "moonwire.yaml", buf, (size_t)n);
  }
  if (!rc) {
    printf("created %s: %s%s, %smoonwire.yaml\n", o->dir, written.p ? written.p : "", lua_name,
           spec_names.p ? spec_names.p : "");
    printf("  moonwire check %s     # load everything, report problems\n", o->dir);
    printf("  moonwire test %s      # run the specs (*_spec.lua) with busted\n", o->dir);
    printf("  moonwire serve %s     # serve on 127.0.0.1:50051 (moonwire.yaml)\n", o->dir);
  }
  mw_buf_free(&written);
  mw_buf_free(&spec_names);
  free(lua);
  free(root);
  mw_schema_free(schema);
  return rc;
}
