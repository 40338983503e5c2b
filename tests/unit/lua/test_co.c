/* The Lua backend's hard parts (lua/mw_co.c, mw_lcall.c, l_sleep.c,
 * l_stream.c, l_ctx.c) driven through core/mw_handler.h with a scripted
 * call layer (fake_call.h) in place of core: no network, no clock. Each
 * case starts a call, delivers events in a chosen order and checks exactly
 * what the call layer saw (the trace of commands, codes, messages, counts).
 *
 * The handlers live in one script written to a temp dir with its .proto;
 * their side effects go to the Lua global `counters`, read back through
 * the Probe method.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mw_log.h"
#include "base/mw_status.h"
#include "fake_call.h"
#include "lua/mw_backend.h"
#include "lua/mw_health.h"
#include "mw_test.h"
#include "schema/mw_methods.h"
#include "schema/mw_schema.h"
#include "sessions/mw_sessions.h"

#define DIR MW_TEST_TMP "/co"
#define LOG MW_TEST_TMP "/co.log"

static const char proto_src[] =
    "syntax = \"proto3\";\n"
    "package co;\n"
    "message Msg { string text = 1; }\n"
    "service T {\n"
    "  rpc Echo(Msg) returns (Msg);\n"
    "  rpc Sleep(Msg) returns (Msg);\n"
    "  rpc SleepCatch(Msg) returns (Msg);\n"
    "  rpc OnCancel(Msg) returns (Msg);\n"
    "  rpc Keep(Msg) returns (Msg);\n"
    "  rpc Touch(Msg) returns (Msg);\n"
    "  rpc Boom(Msg) returns (Msg);\n"
    "  rpc Yield(Msg) returns (Msg);\n"
    "  rpc Headers(Msg) returns (Msg);\n"
    "  rpc Probe(Msg) returns (Msg);\n"
    "  rpc Victim(Msg) returns (Msg);\n"
    "  rpc Spin(Msg) returns (Msg);\n"
    "  rpc SpinElsewhere(Msg) returns (Msg);\n"
    "  rpc SpinInside(Msg) returns (Msg);\n"
    "  rpc LateOnCancel(Msg) returns (Msg);\n"
    "  rpc Big(Msg) returns (Msg);\n"
    "  rpc BigFeed(Msg) returns (stream Msg);\n"
    "  rpc Poke(Msg) returns (Msg);\n"
    "  rpc Unbound(Msg) returns (Msg);\n"
    "  rpc Feed(Msg) returns (stream Msg);\n"
    "  rpc Collect(stream Msg) returns (Msg);\n"
    "  rpc CollectCatch(stream Msg) returns (Msg);\n"
    "  rpc KeepStream(stream Msg) returns (Msg);\n"
    "  rpc StreamMisuse(stream Msg) returns (Msg);\n"
    "  rpc IterLate(Msg) returns (Msg);\n"
    "  rpc Chat(stream Msg) returns (stream Msg);\n"
    "  rpc HealthWait(Msg) returns (Msg);\n"
    "  rpc HealthSet(Msg) returns (Msg);\n"
    "  rpc Auth(Msg) returns (Msg);\n"
    "  rpc AuthLate(Msg) returns (Msg);\n"
    "  rpc CallInfo(Msg) returns (Msg);\n"
    "  rpc SessJoin(Msg) returns (stream Msg);\n"
    "  rpc SessPub(Msg) returns (Msg);\n"
    "  rpc SessClose(Msg) returns (Msg);\n"
    "  rpc SessList(Msg) returns (Msg);\n"
    "  rpc Lone(Msg) returns (Msg);\n"
    "  rpc Pair(Msg) returns (Msg);\n"
    "  rpc Vararg(Msg) returns (Msg);\n"
    "  rpc VarargFeed(Msg) returns (stream Msg);\n"
    "  rpc VarargChat(stream Msg) returns (stream Msg);\n"
    "  rpc LoneFeed(Msg) returns (stream Msg);\n"
    "  rpc LoneChat(stream Msg) returns (stream Msg);\n"
    "  rpc LoneSleep(Msg) returns (Msg);\n"
    "  rpc Watched(Msg) returns (Msg);\n"
    "  rpc WatchedChat(stream Msg) returns (stream Msg);\n"
    "}\n";

static const char lua_src[] =
    "local mw = require 'moonwire'\n"
    "local T = mw.service 'co.T'\n"
    "counters = {}\n"
    "-- handlers cannot assign globals (the sandbox): what outlives a call\n"
    "-- is a module-level local\n"
    "local kept_ctx, victim_ctx, kept_auth\n"
    "local function bump(k) counters[k] = (counters[k] or 0) + 1 end\n"
    "\n"
    "function T.CallInfo(req, ctx)\n"
    "  ctx:set_deadline(100)\n"
    "  local shortened = ctx:remaining() <= 100\n"
    "  ctx:set_deadline(1000) -- later: ignored\n"
    "  local io = ctx:io()\n"
    "  ctx:on_done(function(code)\n"
    "    local done_io = ctx:io()\n"
    "    counters.done = ('%d:%d:%d'):format(code, done_io.msgs_in, done_io.bytes_out)\n"
    "  end)\n"
    "  return {text = table.concat({ctx.service, ctx.method_name, ctx.kind,\n"
    "    tostring(shortened), tostring(ctx:remaining() <= 100), tostring(ctx.deadline ~= nil),\n"
    "    io.msgs_in, io.bytes_in, tostring(math.abs(mw.now() - io.start) < 60)}, ',')}\n"
    "end\n"
    "\n"
    "-- stream sessions (the room 'co' is made by setup)\n"
    "function T.SessJoin(req, stream)\n"
    "  local sub = mw.sessions.co:join(req.text, stream)\n"
    "  stream:send({text = 'joined:' .. sub.id})\n"
    "  sub:wait()\n"
    "end\n"
    "function T.SessPub(req)\n"
    "  local topic, n = req.text:match('^(.*):(%d+)$')\n"
    "  local off\n"
    "  for i = 1, tonumber(n) do off = mw.sessions.co:publish(topic, {text = 'm' .. i}) end\n"
    "  return {text = tostring(off)}\n"
    "end\n"
    "function T.SessClose(req)\n"
    "  return {text = tostring(mw.sessions.co:close(math.tointeger(tonumber(req.text)),\n"
    "    {code = 'ABORTED', message = 'bye'}))}\n"
    "end\n"
    "function T.SessList(req)\n"
    "  return {text = tostring(#mw.sessions.co:list(req.text))}\n"
    "end\n"
    "\n"
    "function T.Echo(req, ctx)\n"
    "  bump('echo')\n"
    "  return {text = 'echo:' .. req.text}\n"
    "end\n"
    "\n"
    "function T.Sleep(req, ctx)\n"
    "  bump('sleep_before')\n"
    "  mw.sleep(tonumber(req.text) or 0.5)\n"
    "  bump('sleep_after')\n"
    "  return {text = 'slept'}\n"
    "end\n"
    "\n"
    "function T.SleepCatch(req, ctx)\n"
    "  local ok, err = pcall(mw.sleep, 5)\n"
    "  if not ok and mw.is_cancelled(err) then\n"
    "    return {text = ('caught:%d:%s:%s'):format(err.code, err.message,\n"
    "                                             tostring(ctx:cancelled()))}\n"
    "  end\n"
    "  return {text = 'not cancelled: ' .. tostring(err)}\n"
    "end\n"
    "\n"
    "function T.OnCancel(req, ctx)\n"
    "  ctx:on_cancel(function() bump('cancel_a') end)\n"
    "  ctx:on_cancel(function() bump('cancel_b') end)\n"
    "  if req.text == 'wait' then mw.sleep(5) end\n"
    "  return {text = 'returned'}\n"
    "end\n"
    "\n"
    "function T.Keep(req, ctx)\n"
    "  kept_ctx = ctx\n"
    "  if req.text == 'wait' then\n"
    "    mw.sleep(5)\n"
    "    bump('keep_resumed')\n"
    "  elseif req.text == 'fail' then\n"
    "    error('failing with ctx kept')\n"
    "  end\n"
    "  return {text = 'kept'}\n"
    "end\n"
    "\n"
    "function T.KeepStream(stream, ctx)\n"
    "  kept_ctx = ctx\n"
    "  stream:recv()\n"
    "  bump('keep_resumed')\n"
    "  return {text = 'kept'}\n"
    "end\n"
    "\n"
    "local kept_iter\n"
    "-- stream's methods on values that are not a stream; an iterator kept\n"
    "-- for IterLate, called after its call has ended.\n"
    "function T.StreamMisuse(stream, ctx)\n"
    "  local out = {}\n"
    "  local function try(f, ...)\n"
    "    local ok, err = pcall(f, ...)\n"
    "    out[#out + 1] = ok and 'ok' or tostring(err):match('^bad argument #1 to .-%((.*)%)$')\n"
    "  end\n"
    "  try(stream.recv, ctx)\n"
    "  try(stream.send, {}, {text = 'x'})\n"
    "  try(stream.iter, 42)\n"
    "  try(stream.recv, coroutine.create(print))\n"
    "  try(ctx.remaining, stream)\n"
    "  try(ctx.cancelled, {})\n"
    "  out[#out + 1] = tostring(ctx:cancelled())\n"
    "  kept_iter = stream:iter()\n"
    "  local m = kept_iter()\n"
    "  out[#out + 1] = m.text\n"
    "  return {text = table.concat(out, '|')}\n"
    "end\n"
    "\n"
    "function T.IterLate(req, ctx)\n"
    "  local ok, err = pcall(kept_iter)\n"
    "  return {text = tostring(ok) .. ':' .. tostring(err):gsub('^.-: ', '')}\n"
    "end\n"
    "\n"
    "function T.Touch(req, ctx)\n"
    "  local ok, err = pcall(function() return kept_ctx:remaining() end)\n"
    "  return {text = tostring(ok) .. ':' .. tostring(err)}\n"
    "end\n"
    "\n"
    "function T.Boom(req, ctx)\n"
    "  mw.sleep(0)\n"
    "  error('boom after the wait')\n"
    "end\n"
    "\n"
    "function T.Yield(req, ctx)\n"
    "  coroutine.yield('a value')\n"
    "  bump('yield_resumed')\n"
    "  return {text = 'after yield'}\n"
    "end\n"
    "\n"
    "function T.Headers(req, ctx)\n"
    "  ctx:set_header('x-early', 'e')\n"
    "  ctx:set_trailer('x-trail', 't')\n"
    "  return {text = 'ok'}\n"
    "end\n"
    "\n"
    "-- Runs without waiting; pcall must not swallow the stop.\n"
    "function T.Spin(req, ctx)\n"
    "  pcall(function() for i = 1, 1e6 do end end)\n"
    "  bump('spin_after')\n"
    "  for i = 1, 1e6 do end\n"
    "  return {text = 'survived'}\n"
    "end\n"
    "\n"
    "-- The same spin inside a coroutine the script made when it loaded.\n"
    "local spinner = coroutine.wrap(function()\n"
    "  while true do\n"
    "    for i = 1, 1e6 do end\n"
    "    coroutine.yield()\n"
    "  end\n"
    "end)\n"
    "-- The spin inside a coroutine the handler makes: it runs in a thread\n"
    "-- of its own, which must look at the clock itself.\n"
    "function T.SpinInside(req, ctx)\n"
    "  local spin = function() for i = 1, 3e8 do end bump('spin_inside_after') end\n"
    "  if req.text == 'wrap' then coroutine.wrap(spin)()\n"
    "  else coroutine.resume(coroutine.create(spin)) end\n"
    "  bump('spin_inside_after')\n"
    "  return {text = 'survived'}\n"
    "end\n"
    "function T.SpinElsewhere(req, ctx)\n"
    "  spinner()\n"
    "  bump('spin_elsewhere_after')\n"
    "  return {text = 'survived'}\n"
    "end\n"
    "\n"
    "-- Registers an on_cancel function once the call is already cancelled.\n"
    "function T.LateOnCancel(req, ctx)\n"
    "  pcall(mw.sleep, 5)\n"
    "  ctx:on_cancel(function() bump('late_cancel') end)\n"
    "  return {text = tostring(ctx:cancelled())}\n"
    "end\n"
    "\n"
    "-- Responses too big for the encoder's stack buffer go as blocks.\n"
    "function T.Big(req, ctx) return {text = ('x'):rep(5000)} end\n"
    "function T.BigFeed(req, stream, ctx)\n"
    "  stream:send{text = ('y'):rep(5000)}\n"
    "  stream:send{text = ('z'):rep(5000)}\n"
    "end\n"
    "\n"
    "-- Victim waits, then uses its own ctx; Poke fails inside a ctx method\n"
    "-- called on Victim's ctx.\n"
    "function T.Victim(req, ctx)\n"
    "  victim_ctx = ctx\n"
    "  mw.sleep(5)\n"
    "  return {text = tostring(ctx:remaining())}\n"
    "end\n"
    "\n"
    "function T.Poke(req, ctx)\n"
    "  victim_ctx:on_cancel(42)\n"
    "end\n"
    "\n"
    "-- Waits for the health board to change, then says what changed.\n"
    "function T.HealthWait(req, ctx)\n"
    "  local before, version = mw.health.get(req.text)\n"
    "  mw.health.wait(version)\n"
    "  return {text = tostring(before) .. '>' .. tostring((mw.health.get(req.text)))}\n"
    "end\n"
    "function T.HealthSet(req, ctx)\n"
    "  mw.health.set(req.text, 'NOT_SERVING')\n"
    "  return {text = 'set'}\n"
    "end\n"
    "mw.on_drain(function() counters.drained = (counters.drained or 0) + 1 end)\n"
    "mw.on_drain(function() error('drain hook boom') end)\n"
    "mw.on_drain(function() counters.drained_after = mw.draining() end)\n"
    "\n"
    "-- Reads a global by dotted path: the test's window on Lua state.\n"
    "function T.Probe(req, ctx)\n"
    "  local v = _G\n"
    "  for k in req.text:gmatch('[^.]+') do v = type(v) == 'table' and v[k] or nil end\n"
    "  return {text = tostring(v)}\n"
    "end\n"
    "\n"
    "function T.Feed(req, stream, ctx)\n"
    "  for i = 1, tonumber(req.text) do stream:send{text = 'm' .. i} end\n"
    "  bump('feed_done')\n"
    "end\n"
    "\n"
    "function T.Collect(stream, ctx)\n"
    "  local got = {}\n"
    "  for m in stream:iter() do got[#got + 1] = m.text end\n"
    "  local again = stream:recv()\n"
    "  return {text = table.concat(got, ',') .. '|' .. tostring(again)}\n"
    "end\n"
    "\n"
    "function T.CollectCatch(stream, ctx)\n"
    "  local ok, err = pcall(stream.recv, stream)\n"
    "  if ok then return {text = 'ok:' .. tostring(err and err.text)} end\n"
    "  return {text = ('%s:%s:%s'):format(tostring(err.code), err.message,\n"
    "                                     tostring(mw.is_cancelled(err)))}\n"
    "end\n"
    "\n"
    "-- ctx.auth as text; 'nil' reads it twice, 'pem' reads the certificate\n"
    "-- twice (keys listed before), 'keep' keeps the table for AuthLate.\n"
    "function T.Auth(req, ctx)\n"
    "  local a = ctx.auth\n"
    "  if req.text == 'nil' then return {text = tostring(a) .. ',' .. tostring(ctx.auth)} end\n"
    "  if req.text == 'keep' then kept_auth = a; return {text = 'kept'} end\n"
    "  local function l(t) return table.concat(t, ',') end\n"
    "  local out = {a.transport, a.security_level, tostring(a.common_name),\n"
    "               tostring(a.subject), tostring(a.spiffe_id), tostring(a.session_reused),\n"
    "               l(a.sans), l(a.dns), l(a.uri), l(a.email), l(a.ip)}\n"
    "  if req.text == 'pem' then\n"
    "    local keys = 0\n"
    "    for k in pairs(a) do keys = keys + 1 end\n"
    "    out[#out + 1] = keys .. ':' .. tostring(rawget(a, 'pem'))\n"
    "    out[#out + 1] = tostring(a.pem) .. ':' .. tostring(a.pem)\n"
    "    out[#out + 1] = tostring(ctx.auth == a) .. ':' .. tostring(getmetatable(a))\n"
    "  end\n"
    "  return {text = table.concat(out, '|')}\n"
    "end\n"
    "\n"
    "function T.AuthLate(req, ctx)\n"
    "  local ok, err = pcall(function() return kept_auth.pem end)\n"
    "  return {text = tostring(ok) .. ':' .. tostring(err)}\n"
    "end\n"
    "\n"
    "-- ctx is made only for a handler that declares it (or takes ...):\n"
    "-- these see the same as if it were always made.\n"
    "function T.Lone(req) return {text = 'lone:' .. req.text .. ':' .. select('#', req)} end\n"
    "function T.Pair(req, ctx)\n"
    "  return {text = ('%s:%s:%s'):format(req.text, ctx.method, type(ctx))}\n"
    "end\n"
    "function T.Vararg(...)\n"
    "  local req, ctx = ...\n"
    "  return {text = ('%d:%s:%s'):format(select('#', ...), req.text, ctx.method_name)}\n"
    "end\n"
    "function T.VarargFeed(...)\n"
    "  local req, stream, ctx = ...\n"
    "  stream:send{text = ('%d:%s:%s'):format(select('#', ...), req.text, ctx.kind)}\n"
    "end\n"
    "function T.VarargChat(...)\n"
    "  local stream, ctx = ...\n"
    "  for m in stream:iter() do\n"
    "    stream:send{text = ('%d:%s:%s'):format(select('#', ...), m.text, ctx.kind)}\n"
    "  end\n"
    "end\n"
    "function T.LoneFeed(req, stream)\n"
    "  stream:send{text = 'a:' .. req.text}\n"
    "  stream:send{text = 'b:' .. req.text}\n"
    "end\n"
    "function T.LoneChat(stream)\n"
    "  for m in stream:iter() do stream:send{text = 'lone:' .. m.text} end\n"
    "end\n"
    "function T.LoneSleep(req)\n"
    "  mw.sleep(5)\n"
    "  bump('lone_sleep_after')\n"
    "  return {text = 'slept'}\n"
    "end\n"
    "-- Interceptors that read ctx around handlers that do not take it.\n"
    "function T.Watched(req) return {text = 'w:' .. req.text} end\n"
    "mw.intercept('/co.T/Watched', function(req, ctx, next)\n"
    "  ctx:on_done(function(code) counters.watched_done = code .. ':' .. ctx.method_name end)\n"
    "  ctx:set_header('x-seen', ctx.method_name)\n"
    "  local res = next(req, ctx)\n"
    "  res.text = res.text .. ':' .. ctx.kind\n"
    "  return res\n"
    "end)\n"
    "function T.WatchedChat(stream)\n"
    "  for m in stream:iter() do stream:send{text = m.text} end\n"
    "end\n"
    "mw.intercept('/co.T/WatchedChat', {\n"
    "  recv = function(msg, ctx) msg.text = ctx.method_name .. '<' .. msg.text; return msg end,\n"
    "  send = function(msg, ctx) msg.text = msg.text .. '>' .. ctx.kind; return msg end,\n"
    "})\n"
    "\n"
    "function T.Chat(stream, ctx)\n"
    "  while true do\n"
    "    local m = stream:recv()\n"
    "    if m == nil then break end\n"
    "    stream:send{text = 're:' .. m.text}\n"
    "  end\n"
    "end\n";

static mw_schema *g_schema;
static mw_methods *g_methods;
static mw_lua_backend *g_b;

/* ---- helpers ------------------------------------------------------------ */

static int write_file(const char *path, const char *data) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t n = strlen(data);
  int ok = fwrite(data, 1, n, f) == n;
  return fclose(f) == 0 && ok ? 0 : -1;
}

/* co.Msg{text = s}: field 1, length-delimited (texts here stay short). */
static char enc_buf[256];
static size_t enc(const char *s) {
  size_t n = strlen(s);
  if (n == 0) return 0;
  enc_buf[0] = 0x0a;
  enc_buf[1] = (char)n;
  memcpy(enc_buf + 2, s, n);
  return n + 2;
}

/* The text of a co.Msg a backend sent, or "(not a co.Msg)". */
static char dec_buf[256];
static const char *dec(const fake_msg *m) {
  const unsigned char *p = (const unsigned char *)m->data;
  if (m->len == 0) return "";
  if (m->len < 2 || p[0] != 0x0a) return "(not a co.Msg)";
  /* the length: a varint of one or two bytes */
  size_t n = p[1] & 0x7f, head = 2;
  if (p[1] & 0x80) {
    if (m->len < 3 || p[2] >= 0x80) return "(not a co.Msg)";
    n |= (size_t)p[2] << 7;
    head = 3;
  }
  if (n + head != m->len) return "(not a co.Msg)";
  snprintf(dec_buf, sizeof dec_buf, "%.*s", (int)n, (const char *)p + head);
  return dec_buf;
}

/* The text of message i that c sent. */
static const char *sent(mw_call *c, int i) {
  if (i >= c->n_sent) return "(not sent)";
  return dec(&c->sent[i]);
}

static const mw_method *method(const char *name) {
  char path[128];
  snprintf(path, sizeof path, "/co.T/%s", name);
  return mw_methods_find(g_methods, path, strlen(path));
}

/* A new call of method name, started with a request (has_first) or none. */
static mw_call *start_raw(const char *name, const char *first, size_t len, int has_first) {
  const mw_method *m = method(name);
  if (!m) {
    fprintf(stderr, "no method %s\n", name);
    exit(2);
  }
  mw_handler *h = mw_lua_backend_handler(g_b, m->index);
  if (!h) {
    fprintf(stderr, "no handler for %s\n", name);
    exit(2);
  }
  mw_call *c = fake_call_new(m);
  fake_start(c, h, first, len, has_first);
  return c;
}

static mw_call *start(const char *name, const char *text) {
  size_t n = enc(text);
  return start_raw(name, enc_buf, n, 1);
}

/* Runs Probe: a complete call of its own, returning the value of a Lua
 * global (dotted path) as text. */
static char probe_buf[256];
static const char *probe(const char *path) {
  mw_call *c = start("Probe", path);
  snprintf(probe_buf, sizeof probe_buf, "%s",
           c->finished && c->finish_code == MW_STATUS_OK ? sent(c, 0) : "(probe failed)");
  fake_done(c);
  fake_call_free(c);
  return probe_buf;
}

static long probe_int(const char *path) {
  const char *v = probe(path);
  return strcmp(v, "nil") == 0 ? 0 : strtol(v, NULL, 10);
}

static char *read_log(void) {
  FILE *f = fopen(LOG, "rb");
  if (!f) return NULL;
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

/* The number in "... (error id N)", or -1. */
static long error_id(const char *msg) {
  const char *p = strstr(msg, "(error id ");
  if (!p) return -1;
  char *end;
  long id = strtol(p + 10, &end, 10);
  return end != p + 10 && strcmp(end, ")") == 0 ? id : -1;
}

/* What Touch returns when the kept ctx raised "the call has ended" (with
 * the position of the Lua line that touched it). */
static void check_ended(const char *got) {
  MW_CHECK(strncmp(got, "false:", 6) == 0);
  MW_CHECK_CONTAINS(got, "co.lua:");
  size_t n = strlen(got), k = strlen(": the call has ended");
  MW_CHECK(n >= k && strcmp(got + n - k, ": the call has ended") == 0);
}

/* ---- unary ---------------------------------------------------------------- */

static void test_unary_returns(void) {
  mw_call *c = start("Echo", "hi");
  MW_CHECK_STR(c->trace, "@start attach send finish:OK");
  MW_CHECK_INT(c->n_sent, 1);
  MW_CHECK_STR(sent(c, 0), "echo:hi");
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(c->finish_msg, "");
  MW_CHECK_INT(c->finish_calls, 1);
  /* a unary handler that never waits neither reads nor watches */
  MW_CHECK_INT(c->recv_calls, 0);
  MW_CHECK_INT(c->watch_cancel_calls, 0);
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.echo"), 1);
}

/* ctx.service, method_name, kind, io, set_deadline (only shorter) and
 * on_done (after the end, with the status, ctx still readable). */
static void test_call_info(void) {
  const mw_method *m = method("CallInfo");
  mw_call *c = fake_call_new(m);
  c->io.start = mw_now(); /* core's arrival time, on the monotonic clock */
  c->io.msgs_in = 1;
  c->io.bytes_in = 4;
  fake_start(c, mw_lua_backend_handler(g_b, m->index), "", 0, 1);
  MW_CHECK_STR(sent(c, 0), "co.T,CallInfo,unary,true,true,true,1,4,true");
  MW_CHECK(c->deadline > 0);
  MW_CHECK_STR(probe("counters.done"), "nil"); /* not before the end */
  c->io.bytes_out = 9;
  fake_done(c);
  MW_CHECK_STR(probe("counters.done"), "0:1:9");
  fake_call_free(c);
}

static void test_unary_bad_request(void) {
  long before = probe_int("counters.echo");
  /* a length prefix running past the end: does not decode */
  mw_call *c = start_raw("Echo", "\x0a\x05" "ab", 4, 1);
  MW_CHECK_STR(c->trace, "@start attach finish:INVALID_ARGUMENT");
  MW_CHECK_INT(c->finish_code, MW_STATUS_INVALID_ARGUMENT);
  MW_CHECK(strncmp(c->finish_msg, "cannot decode co.Msg: ", 22) == 0);
  MW_CHECK_INT(c->n_sent, 0);
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.echo"), before); /* the handler never ran */
}

static void test_headers_and_trailers(void) {
  mw_call *c = start("Headers", "");
  MW_CHECK_STR(c->trace, "@start attach hdr:x-early trl:x-trail send finish:OK");
  MW_CHECK_STR(c->headers, "x-early=e;");
  MW_CHECK_STR(c->trailers, "x-trail=t;");
  fake_done(c);
  fake_call_free(c);
}

static void test_unbound_method_has_no_handler(void) {
  const mw_method *m = method("Unbound");
  MW_CHECK(m != NULL);
  MW_CHECK(m && mw_lua_backend_handler(g_b, m->index) == NULL);
  MW_CHECK(mw_lua_backend_handler(g_b, method("Echo")->index) != NULL);
}

/* ---- ctx, made only for a handler that can receive it ----------------------------- */

/* A bidi call of name that gets msgs (n of them) and then the client's
 * half-close. */
static mw_call *chat(const char *name, const char *const *msgs, size_t n) {
  mw_call *c = start_raw(name, NULL, 0, 0);
  for (size_t i = 0; i < n; i++) {
    size_t len = enc(msgs[i]);
    fake_message(c, 1, enc_buf, len, 1);
  }
  fake_message(c, 1, NULL, 0, 0);
  return c;
}

static const char *call_text(const char *name, const char *text) {
  static char buf[1024];
  mw_call *c = start(name, text);
  snprintf(buf, sizeof buf, "%.500s|%.256s", c->finish_code == MW_STATUS_OK ? "OK" : c->finish_msg,
           sent(c, 0));
  fake_done(c);
  fake_call_free(c);
  return buf;
}

static void test_ctx_by_declared_parameters(void) {
  MW_CHECK_STR(call_text("Lone", "x"), "OK|lone:x:1");
  MW_CHECK_STR(call_text("Pair", "y"), "OK|y:/co.T/Pair:userdata");
  /* f(...) gets ctx as if it had named it */
  MW_CHECK_STR(call_text("Vararg", "z"), "OK|2:z:Vararg");
  mw_call *c = start("VarargFeed", "f");
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "3:f:server_stream");
  fake_done(c);
  fake_call_free(c);
  c = chat("VarargChat", (const char *const[]){"m"}, 1);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "2:m:bidi_stream");
  fake_done(c);
  fake_call_free(c);
}

/* Without ctx the stream is the only anchor: the handler still gets it. */
static void test_stream_handlers_without_ctx(void) {
  mw_call *c = start("LoneFeed", "q");
  MW_CHECK_STR(c->trace, "@start attach send send finish:OK");
  MW_CHECK_STR(sent(c, 0), "a:q");
  MW_CHECK_STR(sent(c, 1), "b:q");
  fake_done(c);
  fake_call_free(c);
  c = chat("LoneChat", (const char *const[]){"one", "two"}, 2);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "lone:one");
  MW_CHECK_STR(sent(c, 1), "lone:two");
  fake_done(c);
  fake_call_free(c);
}

/* Cancellation and the end of a call reach a handler without ctx as any. */
static void test_cancel_and_done_without_ctx(void) {
  long before = probe_int("counters.lone_sleep_after");
  mw_call *c = start("LoneSleep", "");
  fake_cancel(c);
  MW_CHECK_STR(c->trace, "@start attach timer+ watch @cancel timer- finish:CANCELLED");
  MW_CHECK_STR(c->finish_msg, "the call was cancelled");
  fake_done(c);
  fake_call_free(c);
  c = start("LoneSleep", "");
  fake_done(c);
  MW_CHECK_STR(c->trace, "@start attach timer+ watch @done timer-");
  MW_CHECK_INT(fake_timers_pending(), 0);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.lone_sleep_after"), before);
  /* the state goes on serving */
  MW_CHECK_STR(call_text("Lone", "after"), "OK|lone:after:1");
}

/* An interceptor gets the call's ctx whatever the handler declares: its
 * fields, set_header and on_done (run at the end), and the stream hooks'. */
static void test_interceptor_ctx_around_a_handler_without_it(void) {
  mw_call *c = start("Watched", "v");
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "w:v:unary");
  MW_CHECK_STR(c->headers, "x-seen=Watched;");
  MW_CHECK_STR(probe("counters.watched_done"), "nil");
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_STR(probe("counters.watched_done"), "0:Watched");
  c = chat("WatchedChat", (const char *const[]){"hi"}, 1);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "WatchedChat<hi>bidi_stream");
  fake_done(c);
  fake_call_free(c);
}

/* ---- mw.sleep ------------------------------------------------------------------ */

static void test_sleep_then_timer_fires(void) {
  long before = probe_int("counters.sleep_after");
  mw_call *c = start("Sleep", "0.25");
  MW_CHECK_STR(c->trace, "@start attach timer+ watch");
  MW_CHECK_INT(c->finished, 0);
  MW_CHECK_INT(c->n_sent, 0);
  MW_CHECK(c->last_timer_secs == 0.25);
  MW_CHECK_INT(fake_timers_pending(), 1);
  MW_CHECK_INT(probe_int("counters.sleep_after"), before); /* still asleep */
  MW_CHECK_INT(fake_fire_timers(), 1);
  MW_CHECK_STR(c->trace, "@start attach timer+ watch @timer send finish:OK");
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "slept");
  MW_CHECK_INT(c->timer_fires, 1);
  MW_CHECK_INT(c->timer_cancels, 0);
  MW_CHECK_INT(fake_timers_pending(), 0);
  MW_CHECK_INT(fake_fire_timers(), 0);
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.sleep_after"), before + 1);
}

static void test_sleep_zero_and_negative(void) {
  /* both wait for the next timer turn, and nothing happens before it */
  mw_call *c = start("Sleep", "-3");
  MW_CHECK(c->last_timer_secs == 0);
  MW_CHECK_INT(c->finished, 0);
  MW_CHECK_INT(fake_fire_timers(), 1);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  fake_done(c);
  fake_call_free(c);
}

static void test_cancel_during_sleep(void) {
  long before = probe_int("counters.sleep_after");
  mw_call *c = start("Sleep", "5");
  fake_cancel(c);
  MW_CHECK_STR(c->trace, "@start attach timer+ watch @cancel timer- finish:CANCELLED");
  MW_CHECK_INT(c->finish_code, MW_STATUS_CANCELLED);
  MW_CHECK_STR(c->finish_msg, "the call was cancelled");
  MW_CHECK_INT(c->n_sent, 0);
  MW_CHECK_INT(fake_timers_pending(), 0);
  MW_CHECK_INT(fake_fire_timers(), 0); /* disarmed: nothing left to fire */
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.sleep_after"), before);
}

static void test_cancel_during_sleep_past_deadline(void) {
  const mw_method *m = method("Sleep");
  mw_call *c = fake_call_new(m);
  c->deadline = 1.0; /* long past */
  size_t n = enc("5");
  fake_start(c, mw_lua_backend_handler(g_b, m->index), enc_buf, n, 1);
  MW_CHECK_INT(c->finished, 0);
  fake_cancel(c);
  MW_CHECK_INT(c->finish_code, MW_STATUS_DEADLINE_EXCEEDED);
  MW_CHECK_STR(c->finish_msg, "deadline exceeded");
  MW_CHECK_INT(fake_timers_pending(), 0);
  fake_done(c);
  fake_call_free(c);
}

static void test_cancel_during_sleep_caught(void) {
  mw_call *c = start("SleepCatch", "");
  MW_CHECK_INT(c->finished, 0);
  fake_cancel(c);
  /* the handler caught the cancelled error and returned a response */
  MW_CHECK_STR(c->trace, "@start attach timer+ watch @cancel timer- send finish:OK");
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "caught:1:the call was cancelled:true");
  MW_CHECK_INT(fake_timers_pending(), 0);
  fake_done(c);
  fake_call_free(c);
}

/* ---- ctx:on_cancel ------------------------------------------------------------ */

static void test_on_cancel_runs_once(void) {
  long a = probe_int("counters.cancel_a"), b = probe_int("counters.cancel_b");
  mw_call *c = start("OnCancel", "wait");
  MW_CHECK_INT(probe_int("counters.cancel_a"), a); /* not before the cancel */
  fake_cancel(c);
  MW_CHECK_INT(c->finish_code, MW_STATUS_CANCELLED);
  MW_CHECK_INT(probe_int("counters.cancel_a"), a + 1);
  MW_CHECK_INT(probe_int("counters.cancel_b"), b + 1);
  fake_cancel(c); /* core tells once; the fake ignores a second one too */
  /* The backend promises "once" on its own as well (lua/mw_co.h): a second
   * notification, which core never sends, runs nothing. */
  c->ops->on_cancel(c->self);
  MW_CHECK_INT(probe_int("counters.cancel_a"), a + 1);
  fake_done(c); /* and the end of the call does not run them again */
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.cancel_a"), a + 1);
  MW_CHECK_INT(probe_int("counters.cancel_b"), b + 1);
}

static void test_on_cancel_after_the_handler_returned(void) {
  long a = probe_int("counters.cancel_a");
  mw_call *c = start("OnCancel", "");
  MW_CHECK_STR(c->trace, "@start attach send finish:OK");
  /* cancelled before the status went out: the functions still run, once */
  fake_cancel(c);
  MW_CHECK_INT(probe_int("counters.cancel_a"), a + 1);
  MW_CHECK_INT(c->finish_calls, 1);
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.cancel_a"), a + 1);
}

static void test_on_cancel_registered_after_the_cancel(void) {
  long before = probe_int("counters.late_cancel");
  mw_call *c = start("LateOnCancel", "");
  fake_cancel(c);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "true");
  fake_done(c);
  fake_call_free(c);
  /* docs/lua-api.md: "runs fn() once if the call is cancelled" */
  MW_CHECK_INT(probe_int("counters.late_cancel"), before + 1);
}

static void test_on_cancel_never_cancelled(void) {
  long a = probe_int("counters.cancel_a");
  mw_call *c = start("OnCancel", "");
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.cancel_a"), a);
}

/* ---- stream:recv -------------------------------------------------------------- */

static void test_recv_message_then_half_close(void) {
  mw_call *c = start_raw("Chat", NULL, 0, 0);
  MW_CHECK_STR(c->trace, "@start attach recv watch");
  MW_CHECK_INT(c->reading, 1);
  size_t n = enc("one");
  fake_message(c, 1, enc_buf, n, 1);
  MW_CHECK_INT(c->n_sent, 1);
  MW_CHECK_STR(sent(c, 0), "re:one");
  MW_CHECK_INT(c->finished, 0);
  MW_CHECK_INT(c->recv_calls, 2);
  n = enc("two");
  fake_message(c, 1, enc_buf, n, 1);
  MW_CHECK_STR(sent(c, 1), "re:two");
  MW_CHECK_INT(c->finished, 0);
  fake_message(c, 1, NULL, 0, 0); /* the client half-closes: recv gives nil */
  MW_CHECK_STR(c->trace, "@start attach recv watch @msg send recv watch @msg send recv "
                         "watch @eos finish:OK");
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_INT(c->n_sent, 2);
  MW_CHECK_INT(c->reading, 0);
  fake_done(c);
  fake_call_free(c);
}

/* stream's and ctx's methods tell their handle from any other value (the
 * other handle, a table, a number, a thread) and say which they wanted;
 * an iterator kept past its call says the call has ended. */
static void test_handle_methods_check_their_handle(void) {
  mw_call *c = start_raw("StreamMisuse", NULL, 0, 0);
  size_t n = enc("one");
  fake_message(c, 1, enc_buf, n, 1);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "moonwire.stream expected, got moonwire.ctx|"
                           "moonwire.stream expected, got table|"
                           "moonwire.stream expected, got number|"
                           "moonwire.stream expected, got thread|"
                           "moonwire.ctx expected, got moonwire.stream|"
                           "moonwire.ctx expected, got table|false|one");
  fake_done(c);
  fake_call_free(c);
  c = start("IterLate", "");
  MW_CHECK_STR(sent(c, 0), "false:the call has ended");
  fake_done(c);
  fake_call_free(c);
}

static void test_recv_after_half_close_reads_nothing(void) {
  mw_call *c = start_raw("Collect", NULL, 0, 0);
  size_t n = enc("a");
  fake_message(c, 1, enc_buf, n, 1);
  fake_message(c, 1, NULL, 0, 0);
  /* iter ended at nil; the recv after it gave nil without a read */
  MW_CHECK_INT(c->recv_calls, 2);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "a|nil");
  fake_done(c);
  fake_call_free(c);
}

static void test_first_message_with_the_call(void) {
  size_t n = enc("first");
  mw_call *c = start_raw("Collect", enc_buf, n, 1);
  /* the first recv returned it: only the second asked for a read */
  MW_CHECK_STR(c->trace, "@start attach recv watch");
  MW_CHECK_INT(c->recv_calls, 1);
  n = enc("second");
  fake_message(c, 1, enc_buf, n, 1);
  fake_message(c, 1, NULL, 0, 0);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "first,second|nil");
  fake_done(c);
  fake_call_free(c);
}

static void test_first_message_that_does_not_decode(void) {
  mw_call *c = start_raw("CollectCatch", "\x0a\x05" "ab", 4, 1);
  MW_CHECK_INT(c->recv_calls, 0);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK(strncmp(sent(c, 0), "3:cannot decode co.Msg: ", 24) == 0);
  MW_CHECK_CONTAINS(sent(c, 0), ":false");
  fake_done(c);
  fake_call_free(c);
}

static void test_recv_message_that_does_not_decode(void) {
  /* uncaught: the handler fails with INVALID_ARGUMENT */
  mw_call *c = start_raw("Collect", NULL, 0, 0);
  fake_message(c, 1, "\x0a\x05" "ab", 4, 1);
  MW_CHECK_STR(c->trace, "@start attach recv watch @msg finish:INVALID_ARGUMENT");
  MW_CHECK_INT(c->finish_code, MW_STATUS_INVALID_ARGUMENT);
  MW_CHECK(strncmp(c->finish_msg, "cannot decode co.Msg: ", 22) == 0);
  fake_done(c);
  fake_call_free(c);
  /* caught: it is a status error with the code, not a cancellation */
  c = start_raw("CollectCatch", NULL, 0, 0);
  fake_message(c, 1, "\x0a\x05" "ab", 4, 1);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK(strncmp(sent(c, 0), "3:cannot decode co.Msg: ", 24) == 0);
  MW_CHECK_CONTAINS(sent(c, 0), ":false");
  fake_done(c);
  fake_call_free(c);
}

static void test_cancel_during_recv_with_read_pending(void) {
  mw_call *c = start_raw("CollectCatch", NULL, 0, 0);
  MW_CHECK_INT(c->reading, 1);
  fake_cancel(c);
  /* the pending read fails by itself: no wake until it does */
  MW_CHECK_STR(c->trace, "@start attach recv watch @cancel");
  MW_CHECK_INT(c->finished, 0);
  fake_message(c, 0, NULL, 0, 0);
  MW_CHECK_STR(c->trace, "@start attach recv watch @cancel @fail send finish:OK");
  MW_CHECK_STR(sent(c, 0), "1:the call was cancelled:true");
  fake_done(c);
  fake_call_free(c);
  /* uncaught: CANCELLED */
  c = start_raw("Collect", NULL, 0, 0);
  fake_cancel(c);
  MW_CHECK_INT(c->finished, 0);
  fake_message(c, 0, NULL, 0, 0);
  MW_CHECK_INT(c->finish_code, MW_STATUS_CANCELLED);
  MW_CHECK_STR(c->finish_msg, "the call was cancelled");
  MW_CHECK_INT(c->finish_calls, 1);
  fake_done(c);
  fake_call_free(c);
}

static void test_cancel_during_recv_no_read_pending(void) {
  /* The read failed first (core clears it before telling anyone): the
   * cancellation wakes the handler at once, and the failed read that
   * follows finds nobody waiting. */
  mw_call *c = start_raw("Collect", NULL, 0, 0);
  fake_message(c, 0, NULL, 0, 0);
  MW_CHECK_STR(c->trace, "@start attach recv watch @fail finish:CANCELLED");
  MW_CHECK_INT(c->cancel_told, 1);
  MW_CHECK_INT(c->finish_code, MW_STATUS_CANCELLED);
  MW_CHECK_INT(c->finish_calls, 1);
  fake_done(c);
  fake_call_free(c);
  /* A read that could not even start: woken by the cancellation alone. */
  const mw_method *m = method("CollectCatch");
  c = fake_call_new(m);
  c->reads_fail_to_start = 1;
  fake_start(c, mw_lua_backend_handler(g_b, m->index), NULL, 0, 0);
  MW_CHECK_INT(c->reading, 0);
  MW_CHECK_INT(c->finished, 0);
  fake_cancel(c);
  MW_CHECK_STR(c->trace, "@start attach recv watch @cancel send finish:OK");
  MW_CHECK_STR(sent(c, 0), "1:the call was cancelled:true");
  fake_done(c);
  fake_call_free(c);
}

/* ---- stream:send ---------------------------------------------------------------- */

static void test_send_waits_for_room_then_writable(void) {
  long before = probe_int("counters.feed_done");
  const mw_method *m = method("Feed");
  mw_call *c = fake_call_new(m);
  int rooms[] = {0};
  fake_call_script_room(c, rooms, 1);
  size_t n = enc("3");
  fake_start(c, mw_lua_backend_handler(g_b, m->index), enc_buf, n, 1);
  MW_CHECK_STR(c->trace, "@start attach send:0 watch");
  MW_CHECK_INT(c->n_sent, 1);
  MW_CHECK_INT(c->finished, 0);
  fake_writable(c);
  MW_CHECK_STR(c->trace, "@start attach send:0 watch @writable send send finish:OK");
  MW_CHECK_INT(c->n_sent, 3);
  MW_CHECK_STR(sent(c, 0), "m1");
  MW_CHECK_STR(sent(c, 1), "m2");
  MW_CHECK_STR(sent(c, 2), "m3");
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.feed_done"), before + 1);
}

static void test_cancel_while_send_waits(void) {
  long before = probe_int("counters.feed_done");
  const mw_method *m = method("Feed");
  mw_call *c = fake_call_new(m);
  int rooms[] = {1, 0};
  fake_call_script_room(c, rooms, 2);
  size_t n = enc("5");
  fake_start(c, mw_lua_backend_handler(g_b, m->index), enc_buf, n, 1);
  MW_CHECK_INT(c->n_sent, 2);
  MW_CHECK_INT(c->finished, 0);
  fake_cancel(c);
  MW_CHECK_STR(c->trace, "@start attach send send:0 watch @cancel finish:CANCELLED");
  MW_CHECK_INT(c->finish_code, MW_STATUS_CANCELLED);
  MW_CHECK_STR(c->finish_msg, "the call was cancelled");
  MW_CHECK_INT(c->n_sent, 2);
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.feed_done"), before);
}

static void test_send_out_of_memory(void) {
  const mw_method *m = method("Feed");
  mw_call *c = fake_call_new(m);
  int rooms[] = {-1};
  fake_call_script_room(c, rooms, 1);
  size_t n = enc("2");
  fake_start(c, mw_lua_backend_handler(g_b, m->index), enc_buf, n, 1);
  /* stream:send raises: an error of the handler, INTERNAL with an id */
  MW_CHECK_STR(c->trace, "@start attach send:-1 finish:INTERNAL");
  MW_CHECK(error_id(c->finish_msg) > 0);
  fake_done(c);
  fake_call_free(c);
}

static void test_big_responses(void) {
  mw_call *c = start("Big", "");
  MW_CHECK_STR(c->trace, "@start attach send finish:OK");
  /* tag, a two-byte length, the text */
  MW_CHECK_INT(c->sent[0].len, 5003);
  MW_CHECK(c->sent[0].len == 5003 && c->sent[0].data[0] == 0x0a &&
           c->sent[0].data[3] == 'x' && c->sent[0].data[5002] == 'x');
  fake_done(c);
  fake_call_free(c);
  c = start("BigFeed", "");
  MW_CHECK_STR(c->trace, "@start attach send send finish:OK");
  MW_CHECK(c->n_sent == 2 && c->sent[1].len == 5003 && c->sent[1].data[3] == 'z');
  fake_done(c);
  fake_call_free(c);
  /* out of memory on a block: the call layer freed it, the handler fails */
  const mw_method *m = method("BigFeed");
  c = fake_call_new(m);
  int rooms[] = {-1};
  fake_call_script_room(c, rooms, 1);
  fake_start(c, mw_lua_backend_handler(g_b, m->index), NULL, 0, 1);
  MW_CHECK_STR(c->trace, "@start attach send:-1 finish:INTERNAL");
  fake_done(c);
  fake_call_free(c);
}

/* ---- how handlers fail ------------------------------------------------------------ */

static void test_error_after_yield(void) {
  mw_call *c = start("Boom", "");
  MW_CHECK_INT(c->finished, 0);
  MW_CHECK_INT(fake_fire_timers(), 1);
  MW_CHECK_STR(c->trace, "@start attach timer+ watch @timer finish:INTERNAL");
  MW_CHECK_INT(c->finish_code, MW_STATUS_INTERNAL);
  MW_CHECK(strncmp(c->finish_msg, "internal error in the handler (error id ", 40) == 0);
  long id = error_id(c->finish_msg);
  MW_CHECK(id > 0);
  /* the traceback goes to the log only, under the same id */
  char want[64];
  snprintf(want, sizeof want, "error_id=%ld ", id);
  const char *log = read_log();
  MW_CHECK_CONTAINS(log, want);
  MW_CHECK_CONTAINS(log, "boom after the wait");
  MW_CHECK(strstr(c->finish_msg, "boom") == NULL);
  fake_done(c);
  fake_call_free(c);
  /* ids are not reused */
  c = start("Boom", "");
  fake_fire_timers();
  MW_CHECK_INT(error_id(c->finish_msg), id + 1);
  fake_done(c);
  fake_call_free(c);
}

static void test_stopped_past_the_deadline(void) {
  /* The deadline is long past, so the budget hook's first look stops the
   * handler however the clock reads. */
  const mw_method *m = method("Spin");
  mw_call *c = fake_call_new(m);
  c->deadline = 1.0;
  fake_start(c, mw_lua_backend_handler(g_b, m->index), NULL, 0, 1);
  MW_CHECK_STR(c->trace, "@start attach finish:DEADLINE_EXCEEDED");
  MW_CHECK_STR(c->finish_msg, "deadline exceeded");
  MW_CHECK_INT(c->n_sent, 0);
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_STR(probe("counters.spin_after"), "nil");
  /* the state goes on serving */
  c = start("Echo", "alive");
  MW_CHECK_STR(sent(c, 0), "echo:alive");
  fake_done(c);
  fake_call_free(c);
}

static void test_stopped_in_a_coroutine_made_at_load(void) {
  const mw_method *m = method("SpinElsewhere");
  mw_call *c = fake_call_new(m);
  c->deadline = 1.0;
  fake_start(c, mw_lua_backend_handler(g_b, m->index), NULL, 0, 1);
  MW_CHECK_STR(c->trace, "@start attach finish:DEADLINE_EXCEEDED");
  MW_CHECK_STR(c->finish_msg, "deadline exceeded");
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_STR(probe("counters.spin_elsewhere_after"), "nil");
}

static void test_stopped_in_a_coroutine_made_by_the_handler(void) {
  const mw_method *m = method("SpinInside");
  const char *how[] = {"wrap", "create"};
  for (int i = 0; i < 2; i++) {
    mw_call *c = fake_call_new(m);
    c->deadline = 1.0;
    size_t n = enc(how[i]);
    fake_start(c, mw_lua_backend_handler(g_b, m->index), enc_buf, n, 1);
    MW_CHECK_STR(c->trace, "@start attach finish:DEADLINE_EXCEEDED");
    fake_done(c);
    fake_call_free(c);
    MW_CHECK_STR(probe("counters.spin_inside_after"), "nil");
  }
}

static void test_yield_at_top_level(void) {
  long before = probe_int("counters.yield_resumed");
  mw_call *c = start("Yield", "");
  MW_CHECK_STR(c->trace, "@start attach finish:INTERNAL");
  MW_CHECK_INT(c->finish_code, MW_STATUS_INTERNAL);
  MW_CHECK(error_id(c->finish_msg) > 0);
  MW_CHECK_CONTAINS(read_log(), "coroutine.yield at the top level of a handler");
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.yield_resumed"), before);
  /* the state goes on serving */
  c = start("Echo", "after");
  MW_CHECK_STR(sent(c, 0), "echo:after");
  fake_done(c);
  fake_call_free(c);
}

/* ---- the end of a call --------------------------------------------------------------- */

static void test_kept_ctx_after_a_normal_end(void) {
  mw_call *c = start("Keep", "");
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  fake_done(c);
  fake_call_free(c);
  c = start("Touch", "");
  check_ended(sent(c, 0));
  fake_done(c);
  fake_call_free(c);
}

static void test_done_while_sleeping(void) {
  long before = probe_int("counters.keep_resumed");
  mw_call *c = start("Keep", "wait");
  MW_CHECK_INT(fake_timers_pending(), 1);
  fake_done(c);
  /* disarmed at on_done (else the fake reports a violation), never resumed */
  MW_CHECK_STR(c->trace, "@start attach timer+ watch @done timer-");
  MW_CHECK_INT(c->finished, 0);
  MW_CHECK_INT(fake_timers_pending(), 0);
  MW_CHECK_INT(fake_fire_timers(), 0);
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.keep_resumed"), before);
  c = start("Touch", "");
  check_ended(sent(c, 0));
  fake_done(c);
  fake_call_free(c);
}

static void test_done_while_receiving(void) {
  long before = probe_int("counters.keep_resumed");
  mw_call *c = start_raw("KeepStream", NULL, 0, 0);
  MW_CHECK_INT(c->reading, 1);
  fake_done(c);
  MW_CHECK_STR(c->trace, "@start attach recv watch @done");
  fake_call_free(c);
  MW_CHECK_INT(probe_int("counters.keep_resumed"), before);
  c = start("Touch", "");
  check_ended(sent(c, 0));
  fake_done(c);
  fake_call_free(c);
}

static void test_kept_ctx_after_an_error(void) {
  mw_call *c = start("Keep", "fail");
  MW_CHECK_INT(c->finish_code, MW_STATUS_INTERNAL);
  fake_done(c);
  fake_call_free(c);
  c = start("Touch", "");
  check_ended(sent(c, 0));
  fake_done(c);
  fake_call_free(c);
}

static void test_failed_handler_leaves_other_calls_alone(void) {
  mw_call *victim = start("Victim", "");
  MW_CHECK_INT(victim->finished, 0);
  mw_call *c = start("Poke", "");
  MW_CHECK_INT(c->finish_code, MW_STATUS_INTERNAL);
  MW_CHECK_CONTAINS(read_log(), "bad argument #1 to 'on_cancel' (function expected, got number)");
  fake_done(c);
  fake_call_free(c);
  /* on_done of the failed handler left the other call's ctx alone */
  MW_CHECK_INT(fake_fire_timers(), 1);
  MW_CHECK_INT(victim->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(victim, 0), "inf");
  fake_done(victim);
  fake_call_free(victim);
}

/* ---- ctx.auth ---------------------------------------------------------------------- */

/* A call of Auth with these auth context properties (name, value pairs). */
static mw_call *start_auth(const char *text, const char *const *props, size_t n) {
  const mw_method *m = method("Auth");
  mw_call *c = fake_call_new(m);
  for (size_t i = 0; i + 1 < n; i += 2) fake_call_add_auth(c, props[i], props[i + 1]);
  size_t len = enc(text);
  fake_start(c, mw_lua_backend_handler(g_b, m->index), enc_buf, len, 1);
  return c;
}

static const char *const tls_props[] = {
    "transport_security_type", "ssl",
    "security_level", "TSI_PRIVACY_AND_INTEGRITY",
    "x509_subject", "CN=client,O=Test",
    "x509_common_name", "client",
    "x509_subject_alternative_name", "spiffe://test/client",
    "x509_subject_alternative_name", "client.test",
    "peer_dns", "client.test",
    "peer_uri", "spiffe://test/client",
    "peer_spiffe_id", "spiffe://test/client",
    "x509_pem_cert", "PEM-OF-CLIENT",
    "ssl_session_reused", "false",
    "x509_pem_cert_chain", "CHAIN-NOT-SHOWN",
};

static void test_auth_plaintext_is_nil(void) {
  static const char *const insecure[] = {"transport_security_type", "insecure",
                                         "security_level", "TSI_SECURITY_NONE"};
  mw_call *c = start_auth("nil", insecure, 4);
  MW_CHECK_STR(sent(c, 0), "nil,nil");
  /* read twice, collected once (a count pass and a copy pass) */
  MW_CHECK_INT(c->auth_walks, 2);
  fake_done(c);
  fake_call_free(c);
  c = start_auth("nil", NULL, 0); /* no auth context at all */
  MW_CHECK_STR(sent(c, 0), "nil,nil");
  fake_done(c);
  fake_call_free(c);
}

static void test_auth_fields(void) {
  mw_call *c = start_auth("", tls_props, sizeof tls_props / sizeof tls_props[0]);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "ssl|TSI_PRIVACY_AND_INTEGRITY|client|CN=client,O=Test|"
                           "spiffe://test/client|false|spiffe://test/client,client.test|"
                           "client.test|spiffe://test/client||");
  /* the certificate was not asked for: nothing read it */
  MW_CHECK_INT(c->auth_walks, 2);
  fake_done(c);
  fake_call_free(c);
}

static void test_auth_pem_on_demand(void) {
  mw_call *c = start_auth("pem", tls_props, sizeof tls_props / sizeof tls_props[0]);
  const char *got = sent(c, 0);
  /* 11 fields before pem was read, none of them pem; then the same value
   * twice, the same table from ctx.auth, and the hook gone */
  MW_CHECK_CONTAINS(got, "|11:nil|PEM-OF-CLIENT:PEM-OF-CLIENT|true:nil");
  MW_CHECK_INT(c->auth_walks, 4); /* 2 for the fields, 2 for pem, once */
  fake_done(c);
  fake_call_free(c);
  /* a client without a certificate: pem is nil, and still read once */
  static const char *const no_cert[] = {"transport_security_type", "ssl",
                                        "security_level", "TSI_PRIVACY_AND_INTEGRITY",
                                        "ssl_session_reused", "true"};
  c = start_auth("pem", no_cert, 6);
  MW_CHECK_STR(sent(c, 0), "ssl|TSI_PRIVACY_AND_INTEGRITY|nil|nil|nil|true|||||"
                           "|8:nil|nil:nil|true:nil");
  MW_CHECK_INT(c->auth_walks, 4);
  fake_done(c);
  fake_call_free(c);
}

static void test_auth_pem_after_the_call(void) {
  mw_call *c = start_auth("keep", tls_props, sizeof tls_props / sizeof tls_props[0]);
  MW_CHECK_STR(sent(c, 0), "kept");
  fake_done(c);
  fake_call_free(c);
  c = start("AuthLate", "");
  check_ended(sent(c, 0));
  fake_done(c);
  fake_call_free(c);
}

/* ---- stream sessions ---------------------------------------------------------------- */

/* Runs mail and timers until neither has work: the workers' loops. */
static void settle(void) {
  while (fake_run_mail() + fake_fire_timers() > 0) {
  }
}

static mw_call *join_scripted(const char *topic, const int *rooms, int n) {
  const mw_method *m = method("SessJoin");
  mw_call *c = fake_call_new(m);
  if (n) fake_call_script_room(c, rooms, n);
  size_t len = enc(topic);
  fake_start(c, mw_lua_backend_handler(g_b, m->index), enc_buf, len, 1);
  return c;
}

/* Publications reach each joined stream through its worker's mail, in
 * order; a publisher facing a full queue (block, buffer 2) waits and goes
 * on as the queues drain; a stream whose call queue is full holds the rest
 * until on_writable; cancelled streams leave. */
static void test_sessions_delivery_and_backpressure(void) {
  static const int stall[] = {1, 0}; /* the joined message, then full */
  mw_call *a = join_scripted("t1", stall, 2), *b = join_scripted("t1", NULL, 0);
  MW_CHECK_INT(a->n_sent, 1);
  MW_CHECK_CONTAINS(a->trace, "sends_anytime");
  mw_call *p = start("SessPub", "t1:3");
  MW_CHECK_INT(p->finished, 0); /* the third found both queues full */
  settle();
  MW_CHECK_INT(p->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(p, 0), "3");
  MW_CHECK_INT(b->n_sent, 4);
  MW_CHECK_STR(sent(b, 1), "m1");
  MW_CHECK_STR(sent(b, 2), "m2");
  MW_CHECK_STR(sent(b, 3), "m3");
  MW_CHECK_INT(a->n_sent, 2); /* m1, then its call's queue was full */
  MW_CHECK_STR(sent(a, 1), "m1");
  fake_writable(a);
  MW_CHECK_INT(a->n_sent, 4);
  MW_CHECK_STR(sent(a, 2), "m2");
  MW_CHECK_STR(sent(a, 3), "m3");
  fake_done(p);
  fake_call_free(p);
  mw_call *l = start("SessList", "t1");
  MW_CHECK_STR(sent(l, 0), "2");
  fake_done(l);
  fake_call_free(l);
  fake_cancel(a);
  fake_cancel(b);
  MW_CHECK_INT(a->finish_code, MW_STATUS_CANCELLED);
  l = start("SessList", "t1");
  MW_CHECK_STR(sent(l, 0), "0"); /* they left with their calls */
  fake_done(l);
  fake_call_free(l);
  fake_done(a);
  fake_done(b);
  fake_call_free(a);
  fake_call_free(b);
}

/* room:close ends a stream whose handler waits in sub:wait with the status
 * given, from its own worker's mail. */
static void test_sessions_close_ends_a_waiting_stream(void) {
  mw_call *a = join_scripted("t2", NULL, 0);
  const char *joined = sent(a, 0);
  MW_CHECK(strncmp(joined, "joined:", 7) == 0);
  mw_call *c = start("SessClose", joined + 7);
  MW_CHECK_STR(sent(c, 0), "true");
  fake_done(c);
  fake_call_free(c);
  MW_CHECK_INT(a->finished, 0);
  settle();
  MW_CHECK_INT(a->finish_code, MW_STATUS_ABORTED);
  MW_CHECK_STR(a->finish_msg, "bye");
  fake_done(a);
  fake_call_free(a);
  mw_call *l = start("SessList", "t2");
  MW_CHECK_STR(sent(l, 0), "0");
  fake_done(l);
  fake_call_free(l);
}

/* ---- setup ------------------------------------------------------------------------------ */

/* A handler waiting on the health board is woken on its worker: the set
 * posts mail to the worker, the mail arms a zero-second timer, the timer
 * resumes the handler. */
static void test_health_wait_woken_by_a_set(void) {
  mw_call *c = start("HealthWait", "co-db");
  MW_CHECK_STR(c->trace, "@start attach watch");
  MW_CHECK_INT(fake_mail_pending(), 0);
  mw_call *s = start("HealthSet", "co-db");
  MW_CHECK_INT(s->finish_code, MW_STATUS_OK);
  fake_done(s);
  fake_call_free(s);
  MW_CHECK_INT(fake_mail_pending(), 1);
  MW_CHECK_INT(c->finished, 0);
  MW_CHECK_INT(fake_run_mail(), 1);
  MW_CHECK_INT(fake_timers_pending(), 1);
  MW_CHECK_INT(fake_fire_timers(), 1);
  MW_CHECK_INT(c->finish_code, MW_STATUS_OK);
  MW_CHECK_STR(sent(c, 0), "nil>NOT_SERVING");
  fake_done(c);
  fake_call_free(c);
  /* The same status again changes nothing: no waiter would be woken. */
  c = start("HealthWait", "co-db");
  s = start("HealthSet", "co-db");
  fake_done(s);
  fake_call_free(s);
  MW_CHECK_INT(fake_mail_pending(), 0);
  MW_CHECK_INT(c->finished, 0);
  fake_cancel(c);
  MW_CHECK_INT(c->finish_code, MW_STATUS_CANCELLED);
  fake_done(c);
  fake_call_free(c);
}

/* A cancelled waiter leaves the board's list: a later change posts
 * nothing and touches no dead record. */
static void test_health_wait_cancelled(void) {
  mw_call *c = start("HealthWait", "co-cache");
  fake_cancel(c);
  MW_CHECK_STR(c->trace, "@start attach watch @cancel finish:CANCELLED");
  fake_done(c);
  fake_call_free(c);
  mw_call *s = start("HealthSet", "co-cache");
  fake_done(s);
  fake_call_free(s);
  MW_CHECK_INT(fake_mail_pending(), 0);
  MW_CHECK_INT(fake_run_mail(), 0);
}

/* A waiter that the mail finds still on an old version goes; one that
 * joined after the change (it saw the new version) stays. */
static void test_health_wait_two_waiters(void) {
  mw_call *a = start("HealthWait", "co-two");
  mw_call *s = start("HealthSet", "co-two");
  fake_done(s);
  fake_call_free(s);
  mw_call *b = start("HealthWait", "co-two"); /* joins after the set */
  MW_CHECK_INT(fake_run_mail(), 1);
  MW_CHECK_INT(fake_fire_timers(), 1);
  MW_CHECK_INT(a->finish_code, MW_STATUS_OK);
  MW_CHECK_INT(b->finished, 0);
  fake_cancel(b);
  fake_done(a);
  fake_done(b);
  fake_call_free(a);
  fake_call_free(b);
}

/* Without a running server there is no worker to wake a waiter. */
static void test_health_wait_without_a_server(void) {
  mw_health_free(); /* what a stopped server leaves */
  fake_set_workers(0);
  mw_call *c = start("HealthWait", "co-none");
  MW_CHECK_INT(c->finish_code, MW_STATUS_INTERNAL);
  MW_CHECK(strstr(read_log(), "mw.health.wait: no server is running") != NULL);
  fake_done(c);
  fake_call_free(c);
  fake_set_workers(2);
}

/* The drain hooks run in order, each protected: one that fails is logged
 * and the next still runs. */
static void test_drain_hooks(void) {
  MW_CHECK_INT(probe_int("counters.drained"), 0);
  mw_health_drain(MW_HEALTH_DRAINING);
  mw_lua_backend_drain(g_b, 0);
  MW_CHECK_INT(probe_int("counters.drained"), 1);
  MW_CHECK_STR(probe("counters.drained_after"), "true");
  MW_CHECK(strstr(read_log(), "mw.on_drain function failed") != NULL);
  MW_CHECK(strstr(read_log(), "drain hook boom") != NULL);
  mw_lua_backend_drain(g_b, 7); /* no such state: nothing runs */
  MW_CHECK_INT(probe_int("counters.drained"), 1);
  mw_health_free();
}

static int setup(void) {
  mkdir(MW_TEST_TMP, 0777);
  mkdir(DIR, 0777);
  if (write_file(DIR "/co.proto", proto_src) != 0 || write_file(DIR "/co.lua", lua_src) != 0) {
    fprintf(stderr, "cannot write the fixtures in %s\n", DIR);
    return -1;
  }
  /* Handler errors are logged; the log is part of what is checked. */
  int fd = open(LOG, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  mw_log_configure(MW_LOG_WARN, 0, fd);
  const char *dirs[] = {DIR};
  mw_diag d = {0};
  mw_sess_spec room = {.name = "co", .message = "co.Msg", .buffer = 2, .history_size = 4,
                       .policy = MW_SESS_BLOCK};
  if (mw_sessions_configure(&room, 1, NULL, &d) != 0) return -1;
  mw_schema_input in = {dirs, 1, NULL, 0, NULL, 0};
  g_schema = mw_schema_load(&in, &d);
  if (g_schema) g_methods = mw_methods_new(g_schema);
  if (g_methods) {
    mw_lua_options o = {.methods = g_methods, .dirs = dirs, .n_dirs = 1, .n_states = 1};
    g_b = mw_lua_backend_new(&o, &d);
  }
  for (size_t i = 0; i < d.n; i++) fprintf(stderr, "%s\n", d.msgs[i] ? d.msgs[i] : "?");
  mw_diag_free(&d);
  return g_b ? 0 : -1;
}

/* Every case ends with its calls over: no timer left, no breach seen. */
#define RUN(fn)                                  \
  do {                                           \
    int v0_ = fake_violations();                 \
    MW_RUN(fn);                                  \
    MW_CHECK_INT(fake_violations(), v0_);        \
    MW_CHECK_INT(fake_timers_pending(), 0);      \
  } while (0)

int main(void) {
  if (setup() != 0) {
    fprintf(stderr, "setup failed\n");
    return 1;
  }
  RUN(test_unary_returns);
  RUN(test_call_info);
  RUN(test_unary_bad_request);
  RUN(test_headers_and_trailers);
  RUN(test_unbound_method_has_no_handler);
  RUN(test_ctx_by_declared_parameters);
  RUN(test_stream_handlers_without_ctx);
  RUN(test_cancel_and_done_without_ctx);
  RUN(test_interceptor_ctx_around_a_handler_without_it);
  RUN(test_sleep_then_timer_fires);
  RUN(test_sleep_zero_and_negative);
  RUN(test_cancel_during_sleep);
  RUN(test_cancel_during_sleep_past_deadline);
  RUN(test_cancel_during_sleep_caught);
  RUN(test_on_cancel_runs_once);
  RUN(test_on_cancel_after_the_handler_returned);
  RUN(test_on_cancel_registered_after_the_cancel);
  RUN(test_on_cancel_never_cancelled);
  RUN(test_recv_message_then_half_close);
  RUN(test_handle_methods_check_their_handle);
  RUN(test_recv_after_half_close_reads_nothing);
  RUN(test_first_message_with_the_call);
  RUN(test_first_message_that_does_not_decode);
  RUN(test_recv_message_that_does_not_decode);
  RUN(test_cancel_during_recv_with_read_pending);
  RUN(test_cancel_during_recv_no_read_pending);
  RUN(test_send_waits_for_room_then_writable);
  RUN(test_cancel_while_send_waits);
  RUN(test_send_out_of_memory);
  RUN(test_big_responses);
  RUN(test_error_after_yield);
  RUN(test_stopped_past_the_deadline);
  RUN(test_stopped_in_a_coroutine_made_at_load);
  RUN(test_stopped_in_a_coroutine_made_by_the_handler);
  RUN(test_yield_at_top_level);
  RUN(test_kept_ctx_after_a_normal_end);
  RUN(test_done_while_sleeping);
  RUN(test_done_while_receiving);
  RUN(test_kept_ctx_after_an_error);
  RUN(test_failed_handler_leaves_other_calls_alone);
  RUN(test_health_wait_woken_by_a_set);
  RUN(test_sessions_delivery_and_backpressure);
  RUN(test_sessions_close_ends_a_waiting_stream);
  RUN(test_health_wait_cancelled);
  RUN(test_health_wait_two_waiters);
  RUN(test_health_wait_without_a_server);
  RUN(test_drain_hooks);
  RUN(test_auth_plaintext_is_nil);
  RUN(test_auth_fields);
  RUN(test_auth_pem_on_demand);
  RUN(test_auth_pem_after_the_call);
  mw_lua_backend_free(g_b);
  mw_sessions_free();
  mw_methods_free(g_methods);
  mw_schema_free(g_schema);
  mw_lua_thread_exit();
  return mw_test_done();
}
