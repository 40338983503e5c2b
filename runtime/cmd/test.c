/* moonwire test [DIR]: the directory's *_spec.lua files run by busted in
 * a Lua state of this process, while the directory's services are served
 * by a server of this process on a free loopback port. The specs reach it
 * through mw.test (lua/moonwire/test.lua, the policy); this file is the
 * mechanism that module stands on, as moonwire.testcore: the server's
 * address, a reload, the clock's skew, and blocking calls (cmd/rpc.h)
 * whose messages go through the real codec with the served protos. */
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mw_log.h"
#include "base/mw_timer.h"
#include "cmd/cmd.h"
#include "cmd/rpc.h"
#include "codec/mw_codec.h"
#include "core/mw_client.h"
#include "core/mw_post.h"
#include "core/mw_server.h"
#include "gen/mw_gen.h"
#include "lua/l_api.h"
#include "lua/mw_embed.h"
#include "lua/mw_health.h"
#include "lua/mw_lutil.h"
#include "lua/mw_vm.h"
#include "sessions/mw_sessions.h"
#include "shared/mw_shared.h"
#include "shared/mw_stubreg.h"

#define MT_CALL "moonwire.test.call"

/* The one test run of the process: what moonwire.testcore's functions
 * reach (a pointer in the registry would buy nothing, there is one). */
typedef struct testing {
  const options *o;
  mw_config cfg;    /* the config the current generation was built from */
  mw_server *s;
  mw_lua_mem *mem;  /* the worker's memory account, owned */
  mw_gen *g;        /* the current generation: its methods give the codec
                       the message types (one reference, owned) */
  unsigned gen_id;
  mw_rpc_conn *conn; /* the client's channel to s */
} testing;

static testing *T;

/* What the config says that a test run does otherwise: plaintext (the
 * specs' client speaks it), one worker, no watching. The listener is
 * options' (127.0.0.1:0). */
static void under_test(mw_config *cfg) {
  free(cfg->tls.cert);
  free(cfg->tls.key);
  free(cfg->tls.client_ca);
  cfg->tls.cert = cfg->tls.key = cfg->tls.client_ca = NULL;
  cfg->tls.require_client_cert = 0;
  cfg->workers = 1;
  cfg->reload.watch = 0;
}

/* A call of the spec's client. Holds its path, not its method: a reload
 * replaces the generation whose method table the codec reads. */
typedef struct tcall {
  mw_rpc *r;
  char path[256];
  int finished;
} tcall;

static const mw_method *method_of(lua_State *L, const char *path) {
  const mw_method *m = mw_methods_find(mw_gen_methods(T->g), path, strlen(path));
  if (!m) luaL_error(L, "%s: not a method of the loaded protos", path);
  return m;
}

/* testcore.kind(path) -> "unary" | "server-streaming" | ... */
static int t_kind(lua_State *L) {
  lua_pushstring(L, mw_kind_name(method_of(L, luaL_checkstring(L, 1))->kind));
  return 1;
}

/* testcore.address() -> "127.0.0.1:PORT" */
static int t_address(lua_State *L) {
  lua_pushstring(L, mw_server_listener(T->s, 0));
  return 1;
}

/* Every worker runs what it was sent before this returns: a mail to each,
 * waited for (at most 5 s, for a worker stuck in a handler). */
typedef struct barrier_mail {
  mw_mail m;
  atomic_int *done;
} barrier_mail;

static void barrier_fn(mw_mail *m) {
  barrier_mail *b = (barrier_mail *)m;
  atomic_fetch_add(b->done, 1);
  free(b);
}

static void settle_workers(void) {
  static atomic_int done;
  atomic_store(&done, 0);
  int want = 0, n = mw_post_workers();
  for (int i = 0; i < n; i++) {
    barrier_mail *b = malloc(sizeof *b);
    if (!b) continue;
    b->m.fn = barrier_fn;
    b->done = &done;
    if (mw_post(i, &b->m) == 0) want++;
    else free(b);
  }
  struct timespec ms = {0, 1000000};
  for (int i = 0; i < 5000 && atomic_load(&done) < want; i++) nanosleep(&ms, NULL);
}

/* testcore.advance(seconds): the runtime's clock moves ahead; timers that
 * fall due run before this returns. What was sent before runs first (a
 * call just started has reached its handler's wait). */
static int t_advance(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0 && s == s, 1, "seconds >= 0 expected");
  struct timespec pause = {0, 20000000};
  settle_workers();
  nanosleep(&pause, NULL); /* what gRPC core's threads still hold */
  settle_workers();
  mw_clock_advance(s);
  settle_workers(); /* wakes each worker, which then runs its due timers */
  settle_workers();
  return 0;
}

/* testcore.skew() -> seconds the clock has been moved ahead */
static int t_skew(lua_State *L) {
  lua_pushnumber(L, mw_clock_skew());
  return 1;
}

/* testcore.reload() -> true | nil, problems: the directory's files built
 * again into a generation that replaces the served one, as serve's reload
 * does, so each spec file starts from fresh handler states. */
static int t_reload(lua_State *L) {
  mw_config ncfg;
  mw_diag diag = {0};
  mw_gen *g = NULL;
  if (mw_cmd_load_config(T->o, &ncfg, &diag) == 0) {
    under_test(&ncfg);
    mw_cmd_shared_configure(&ncfg, NULL, &diag);
    mw_gen_options go = {.config = &ncfg, .n_states = 1, .mem = T->mem, .id = T->gen_id + 1};
    g = mw_gen_build(&go, &diag);
  }
  if (!g) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < diag.n && i < diag.cap; i++)
      if (diag.msgs[i]) {
        if (i) luaL_addchar(&b, '\n');
        luaL_addstring(&b, diag.msgs[i]);
      }
    mw_diag_free(&diag);
    mw_config_free(&ncfg);
    lua_pushnil(L);
    luaL_pushresult(&b);
    return 2;
  }
  T->gen_id++;
  mw_server_swap(T->s, mw_gen_router(g));
  mw_gen_unref(T->g);
  T->g = g;
  mw_config_free(&T->cfg);
  T->cfg = ncfg;
  mw_diag_free(&diag);
  lua_pushboolean(L, 1);
  return 1;
}

/* testcore.open(path, timeout_s, metadata) -> call: headers sent. */
static int t_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  method_of(L, path);
  double timeout = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, strlen(path) < sizeof ((tcall *)0)->path, 1, "path too long");
  mw_rpc_md md[32];
  size_t n = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (n == sizeof md / sizeof md[0]) return luaL_error(L, "more than 32 metadata keys");
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "metadata: string keys and values expected");
      md[n].key = lua_tostring(L, -2);
      md[n].val = lua_tolstring(L, -1, &md[n].len);
      n++;
      lua_pop(L, 1); /* the strings stay referenced by the table */
    }
  }
  tcall *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, MT_CALL);
  strcpy(c->path, path);
  char err[256];
  c->r = mw_rpc_start(T->conn, path, timeout, md, n, err, sizeof err);
  if (!c->r) return luaL_error(L, "%s: %s", path, err);
  return 1;
}

static tcall *check_call(lua_State *L) {
  tcall *c = luaL_checkudata(L, 1, MT_CALL);
  if (!c->r) luaL_error(L, "the call was released");
  return c;
}

/* call:send(msg) -> true, or false once the call is over. */
static int c_send(lua_State *L) {
  tcall *c = check_call(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  const mw_method *m = method_of(L, c->path);
  char err[MW_CODEC_ERRLEN];
  upb_Arena *a = upb_Arena_New();
  if (!a) return luaL_error(L, "out of memory");
  size_t len;
  char *bytes = mw_codec_encode(L, 2, m->input, a, &len, err, sizeof err);
  if (!bytes) {
    upb_Arena_Free(a);
    return luaL_error(L, "%s: bad request: %s", c->path, err);
  }
  int rc = mw_rpc_send(c->r, bytes, len);
  upb_Arena_Free(a);
  lua_pushboolean(L, rc == 0);
  return 1;
}

static int c_close_send(lua_State *L) {
  lua_pushboolean(L, mw_rpc_close_send(check_call(L)->r) == 0);
  return 1;
}

/* call:recv() -> the next response as a table, or nil at the end (or when
 * the call failed: finish tells). A response that does not decode
 * raises. */
static int c_recv(lua_State *L) {
  tcall *c = check_call(L);
  const mw_method *m = method_of(L, c->path);
  char *data;
  size_t len;
  if (!mw_rpc_recv(c->r, &data, &len)) {
    lua_pushnil(L);
    return 1;
  }
  char err[MW_CODEC_ERRLEN];
  upb_Arena *a = upb_Arena_New();
  int rc = a ? mw_codec_decode_push(L, data, len, m->output, a, err, sizeof err) : -1;
  if (!a) snprintf(err, sizeof err, "out of memory");
  upb_Arena_Free(a);
  free(data);
  if (rc != 0) return luaL_error(L, "%s: bad response: %s", c->path, err);
  return 1;
}

static void push_md(lua_State *L, const mw_rpc *r, int trailers, size_t n) {
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    size_t kl, vl;
    mw_rpc_md_at(r, trailers, i, &k, &kl, &v, &vl);
    lua_pushlstring(L, k, kl);
    lua_pushlstring(L, v, vl);
    lua_rawset(L, -3);
  }
}

/* call:finish() -> code, message, trailers, headers (tables of strings;
 * the status details stay in trailers["grpc-status-details-bin"]). */
static int c_finish(lua_State *L) {
  tcall *c = check_call(L);
  int code = mw_rpc_finish(c->r);
  c->finished = 1;
  lua_pushinteger(L, code);
  const char *msg = mw_rpc_message(c->r);
  if (code != 0 && (!msg || !*msg) && mw_rpc_error_string(c->r))
    msg = mw_rpc_error_string(c->r);
  lua_pushstring(L, msg ? msg : "");
  push_md(L, c->r, 1, mw_rpc_trailer_count(c->r));
  push_md(L, c->r, 0, mw_rpc_header_count(c->r));
  return 4;
}

static int c_cancel(lua_State *L) {
  mw_rpc_cancel(check_call(L)->r);
  return 0;
}

/* Collected or closed: an unfinished call is cancelled and waited for, so
 * that its record can go. */
static int c_gc(lua_State *L) {
  tcall *c = luaL_checkudata(L, 1, MT_CALL);
  if (!c->r) return 0;
  if (!c->finished) {
    mw_rpc_cancel(c->r);
    mw_rpc_finish(c->r);
  }
  mw_rpc_free(c->r);
  c->r = NULL;
  return 0;
}

static int open_testcore(lua_State *L) {
  static const luaL_Reg call_m[] = {{"send", c_send},     {"close_send", c_close_send},
                                    {"recv", c_recv},     {"finish", c_finish},
                                    {"cancel", c_cancel}, {"release", c_gc},
                                    {NULL, NULL}};
  if (luaL_newmetatable(L, MT_CALL)) {
    luaL_newlib(L, call_m);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, c_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, c_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"address", t_address}, {"reload", t_reload},
                                 {"advance", t_advance}, {"skew", t_skew},
                                 {"open", t_open},       {"kind", t_kind},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}

/* busted's runner ends with os.exit: here that unwinds to run_specs with
 * the status, so the server still drains and frees. */
static int t_exit(lua_State *L) {
  int code = lua_isboolean(L, 1) ? (lua_toboolean(L, 1) ? 0 : 1) : (int)luaL_optinteger(L, 1, 0);
  lua_pushinteger(L, code);
  lua_setfield(L, LUA_REGISTRYINDEX, "moonwire.test.exit");
  lua_pushliteral(L, "moonwire.test.exit");
  return lua_error(L);
}

/* The spec state: the standard libraries whole (specs are the user's own
 * code, like busted's), the moonwire library and moonwire.testcore
 * preloaded, package.path the service directories then Lua's defaults
 * (where busted lives). Runs busted's runner; returns its exit status. */
static int run_specs(const char *dir) {
  const char *const *dirs = (const char *const *)T->cfg.services.v;
  mw_vm_options vo = {.worker = -1, .mem = NULL, .methods = mw_gen_methods(T->g),
                      .dirs = dirs, .n_dirs = T->cfg.services.n, .unsafe = 1};
  lua_State *L = mw_vm_new(&vo);
  if (!L) {
    fprintf(stderr, "moonwire: out of memory\n");
    return 1;
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open_testcore);
  lua_setfield(L, -2, "moonwire.testcore");
  lua_pop(L, 1);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, t_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  const char *env = getenv("LUA_PATH_5_4");
  if (!env) env = getenv("LUA_PATH");
  lua_pushfstring(L, "%s;%s", lua_tostring(L, -1), env ? env : LUA_PATH_DEFAULT);
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  /* The runner reads its command line from arg: the directory is busted's
   * ROOT, the specs its default pattern (_spec). */
  lua_createtable(L, 2, 1);
  lua_pushliteral(L, "moonwire test");
  lua_rawseti(L, -2, 0);
  lua_pushstring(L, dir);
  lua_rawseti(L, -2, 1);
  lua_setglobal(L, "arg");
  static const char boot[] =
      "local test = require 'moonwire.test'\n"
      "local ok, runner = pcall(require, 'busted.runner')\n"
      "if not ok then\n"
      "  io.stderr:write('moonwire test: busted for Lua 5.4 is not installed (Debian, Ubuntu: ',\n"
      "    'apt-get install lua-busted; else luarocks --lua-version 5.4 install busted)\\n',\n"
      "    tostring(runner), '\\n')\n"
      "  os.exit(1)\n"
      "end\n"
      "test.start()\n"
      "runner({standalone = false})\n";
  int rc = 0;
  if (luaL_loadbuffer(L, boot, sizeof boot - 1, "=moonwire test") != LUA_OK ||
      mw_lutil_pcall(L, 0, 0) != LUA_OK) {
    lua_getfield(L, LUA_REGISTRYINDEX, "moonwire.test.exit");
    if (lua_isinteger(L, -1)) {
      rc = (int)lua_tointeger(L, -1);
    } else {
      fprintf(stderr, "moonwire test: %s\n", lua_tostring(L, -2));
      rc = 1;
    }
  }
  mw_vm_close(L); /* unfinished calls are cancelled by their __gc */
  return rc;
}

int mw_cmd_test(const options *given) {
  options o = *given;
  o.listen = "127.0.0.1:0";
  testing t;
  memset(&t, 0, sizeof t);
  t.o = &o;
  T = &t;
  mw_diag diag = {0};
  if (mw_cmd_load_config(&o, &t.cfg, &diag) != 0) {
    mw_cmd_print_diag(&diag);
    mw_diag_free(&diag);
    mw_config_free(&t.cfg);
    return 1;
  }
  /* Under test: one worker (calls still overlap, as coroutines), plaintext
   * on a free loopback port, no admin or HTTP listener, no watching; the
   * log for warnings and errors only, so that busted's output stays
   * readable. */
  mw_log_configure(MW_LOG_WARN, 0, 2);
  under_test(&t.cfg);
  mw_clock_set_virtual();
  signal(SIGPIPE, SIG_IGN);
  if (mw_cmd_client_configure(&t.cfg) != 0) {
    fprintf(stderr, "moonwire: out of memory\n");
    mw_config_free(&t.cfg);
    return 1;
  }
  t.mem = calloc(1, sizeof *t.mem);
  if (!t.mem) {
    fprintf(stderr, "moonwire: out of memory\n");
    mw_config_free(&t.cfg);
    return 1;
  }
  t.mem->limit = (size_t)t.cfg.limits.lua_memory_mb << 20;
  t.gen_id = 1;
  if (mw_cmd_shared_configure(&t.cfg, NULL, &diag) == 0) {
    mw_gen_options go = {.config = &t.cfg, .n_states = 1, .mem = t.mem, .id = t.gen_id};
    t.g = mw_gen_build(&go, &diag);
    if (t.g && mw_cmd_nothing_to_serve(&t.cfg, t.g, &diag)) {
      mw_gen_unref(t.g);
      t.g = NULL;
    }
  }
  t.s = t.g ? mw_server_new(&t.cfg, mw_gen_router(t.g), mw_gen_worker_hooks(), &diag) : NULL;
  char err[256] = "";
  int started = t.s && mw_server_start(t.s) == 0;
  if (started) {
    mw_client_redirect(mw_server_listener(t.s, 0));
    mw_rpc_target target = {.addr = mw_server_listener(t.s, 0)};
    t.conn = mw_rpc_connect(&target, err, sizeof err);
  }
  int rc;
  if (!t.conn) {
    mw_cmd_print_diag(&diag);
    if (err[0]) fprintf(stderr, "moonwire: %s\n", err);
    else if (t.s) fprintf(stderr, "moonwire: cannot start the server\n");
    rc = 1;
  } else {
    const char *const *dirs = (const char *const *)t.cfg.services.v;
    rc = run_specs(o.dir ? o.dir : t.cfg.services.n ? dirs[0] : ".");
  }
  mw_rpc_conn_free(t.conn);
  if (started) {
    /* Calls whose status the specs have read may still be ending on the
     * server's side: they get a moment, so that stop cancels nothing. */
    mw_server_drain(t.s);
    for (int i = 0; i < 40 && mw_server_live_calls(t.s) > 0; i++) mw_server_wait_idle(t.s, 50);
    mw_server_stop(t.s, 0);
  }
  mw_server_free(t.s);
  mw_gen_unref(t.g);
  mw_health_free();
  mw_shared_free();
  mw_sessions_free();
  mw_lsessions_free();
  mw_lidem_free();
  mw_lstub_free();
  mw_stubreg_free();
  mw_client_redirect(NULL);
  mw_client_shutdown();
  mw_diag_free(&diag);
  mw_config_free(&t.cfg);
  free(t.mem);
  T = NULL;
  return rc;
}
