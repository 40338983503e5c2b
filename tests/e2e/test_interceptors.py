"""Interceptors from the config and from Lua: their order across the global,
service and method levels, per-message hooks on every kind of call, an
interceptor failing or replacing, the stops pcall cannot swallow, the
access_log and deadline built-ins, and a bad entry failing the load."""

import json
import os
import re
import signal
import time

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package icpt;

message Msg { string text = 1; int32 n = 2; }

service Svc {
  rpc Unary(Msg) returns (Msg);
  rpc Server(Msg) returns (stream Msg);
  rpc Client(stream Msg) returns (Msg);
  rpc Bidi(stream Msg) returns (stream Msg);
  rpc Fail(Msg) returns (Msg);
  rpc Replace(Msg) returns (Msg);
  rpc Crash(Msg) returns (Msg);
  rpc Spin(Msg) returns (Msg);
  rpc Sleep(Msg) returns (Msg);
}
service Other { rpc Ping(Msg) returns (Msg); }
service Dl {
  rpc Default(Msg) returns (Msg);
  rpc Max(Msg) returns (Msg);
}
"""

# An interceptor module of the service directory, found as the config's
# `tag` like a built-in: it marks the order of its call and of its
# per-message hooks in the messages themselves.
TAG = """
local M = {}
function M.new(opts, env)
  if type(opts.tag) ~= "string" then error("tag: give a tag", 0) end
  local t = opts.tag
  return {
    call = function(req, ctx, next)
      ctx.values.order = (ctx.values.order or "") .. ">" .. t
      local res = next(req, ctx)
      if res then res.text = res.text .. "<" .. t end
      return res
    end,
    recv = function(msg, ctx) msg.text = msg.text .. "+r" .. t; return msg end,
    send = function(msg, ctx) msg.text = msg.text .. "+s" .. t end,
  }
end
return M
"""

LUA = """
local mw = require "moonwire"

mw.intercept(mw.interceptors.tag{tag = "lg"})
mw.intercept("icpt.Svc", mw.interceptors.tag{tag = "ls"})
mw.intercept("/icpt.Svc/Unary", mw.interceptors.tag{tag = "lm"})

mw.intercept("/icpt.Svc/Fail", function(req, ctx, next)
  if req.text:find "^deny" then mw.fail(mw.PERMISSION_DENIED, "denied by an interceptor") end
  if req.text:find "^bug" then error("interceptor bug") end
  return next(req, ctx)
end)

mw.intercept("/icpt.Svc/Replace", {
  recv = function(msg, ctx) return {text = "new request"} end,
  send = function(msg, ctx) return {text = "new response to " .. msg.text} end,
})

-- Observes the outcome with pcall and re-raises the same value.
mw.intercept("/icpt.Svc/Crash", function(req, ctx, next)
  local ok, res = pcall(next, req, ctx)
  if not ok then error(res, 0) end
  return res
end)

-- Tries to swallow whatever next() raises.
local function swallow(req, ctx, next)
  local ok, res = pcall(next, req, ctx)
  if ok then return res end
  return {text = "swallowed"}
end
mw.intercept("/icpt.Svc/Spin", swallow)
-- Swallows, then waits again: a cancelled call raises at every wait.
mw.intercept("/icpt.Svc/Sleep", function(req, ctx, next)
  local ok, res = pcall(next, req, ctx)
  if ok then return res end
  mw.sleep(0)
  return {text = "swallowed"}
end)

local Svc = mw.service "icpt.Svc"
function Svc.Unary(req, ctx)
  return {text = req.text .. "|" .. ctx.values.order .. "|" .. ctx.kind .. "|" ..
                 ctx.service .. "|" .. ctx.method_name}
end
function Svc.Server(req, stream, ctx)
  for i = 1, 2 do stream:send{text = req.text .. "|" .. ctx.values.order .. "#" .. i} end
end
function Svc.Client(stream, ctx)
  local got = {}
  for msg in stream:iter() do got[#got + 1] = msg.text end
  return {text = table.concat(got, ",") .. "|" .. ctx.values.order}
end
function Svc.Bidi(stream, ctx)
  while true do
    local msg = stream:recv()
    if not msg then return end
    stream:send{text = msg.text .. "|" .. ctx.values.order}
  end
end
function Svc.Fail(req, ctx) return {text = "passed"} end
function Svc.Replace(req, ctx) return {text = "handled " .. req.text} end
function Svc.Crash(req, ctx)
  error("handler boom") -- CRASH LINE
end
function Svc.Spin(req, ctx)
  while true do end
end
function Svc.Sleep(req, ctx)
  mw.sleep(30)
  return {text = "slept"}
end

local Other = mw.service "icpt.Other"
function Other.Ping(req, ctx) return {text = req.text .. "|" .. ctx.values.order} end

local Dl = mw.service "icpt.Dl"
function Dl.Default(req, ctx)
  if req.n > 0 then mw.sleep(req.n) end
  return {text = string.format("%.3f", ctx:remaining())}
end
Dl.Max = Dl.Default
"""

CONFIG = """
log: {format: json}
interceptors:
  - tag: {tag: g1}
  - access_log
methods:
  icpt.Svc:
    interceptors: [{tag: {tag: s1}}]
  /icpt.Svc/Unary:
    interceptors:
      - tag: {tag: m1}
  /icpt.Dl/Default:
    deadline: {default: 300ms}
  /icpt.Dl/Max:
    deadline: {max: 1s}
"""


def lead(text):
    """The number a Dl reply starts with (the global tags follow it)."""
    return float(re.match(r"[0-9.]+", text).group(0))


def crash_line():
    for i, line in enumerate(mwtest.dedent(LUA).splitlines(), 1):
        if "CRASH LINE" in line:
            return i
    raise AssertionError("no crash line")


class InterceptorTest(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"icpt.proto": PROTO, "svc.lua": LUA,
                                     "moonwire/interceptors/tag.lua": TAG})
        cls.protos = Protos(cls.dir)
        cls.Msg = cls.protos.msg("icpt.Msg")
        cls.server = Server(cls.dir, config=CONFIG).start()
        cls.channel = cls.server.channel()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()

    def call(self, path, text="x", n=0, timeout=10):
        return self.protos.unary(self.channel, path)(self.Msg(text=text, n=n), timeout=timeout)

    def access_lines(self, method, want=1, timeout=5.0):
        deadline = time.monotonic() + timeout * mwtest.SLOW
        while True:
            lines = []
            for line in self.server.logs().splitlines():
                if not line.startswith("{"):
                    continue
                rec = json.loads(line)
                if rec.get("msg") == "access" and rec.get("method") == method:
                    lines.append(rec)
            if len(lines) >= want or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    # -- order ------------------------------------------------------------

    def test_unary_order_across_levels(self):
        res = self.call("/icpt.Svc/Unary")
        self.assertEqual(
            res.text,
            "x+rg1+rlg+rs1+rls+rm1+rlm"
            "|>g1>lg>s1>ls>m1>lm|unary|icpt.Svc|Unary"
            "<lm+slm<m1+sm1<ls+sls<s1+ss1<lg+slg<g1+sg1")

    def test_other_service_gets_only_the_global_ones(self):
        res = self.call("/icpt.Other/Ping")
        self.assertEqual(res.text, "x+rg1+rlg|>g1>lg<lg+slg<g1+sg1")

    def test_server_streaming_hooks(self):
        got = [m.text for m in self.protos.server_stream(self.channel, "/icpt.Svc/Server")(
            self.Msg(text="x"), timeout=10)]
        self.assertEqual(got, ["x+rg1+rlg+rs1+rls|>g1>lg>s1>ls#%d+sls+ss1+slg+sg1" % i
                               for i in (1, 2)])

    def test_client_streaming_hooks(self):
        res = self.protos.client_stream(self.channel, "/icpt.Svc/Client")(
            iter([self.Msg(text="a"), self.Msg(text="b")]), timeout=10)
        self.assertEqual(res.text, "a+rg1+rlg+rs1+rls,b+rg1+rlg+rs1+rls|>g1>lg>s1>ls"
                                   "<ls+sls<s1+ss1<lg+slg<g1+sg1")

    def test_bidi_hooks(self):
        got = [m.text for m in self.protos.bidi(self.channel, "/icpt.Svc/Bidi")(
            iter([self.Msg(text="a"), self.Msg(text="b")]), timeout=10)]
        self.assertEqual(got, ["%s+rg1+rlg+rs1+rls|>g1>lg>s1>ls+sls+ss1+slg+sg1" % t
                               for t in "ab"])

    # -- failing and replacing -----------------------------------------------

    def test_interceptor_fails_the_call(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("/icpt.Svc/Fail", "deny")
        self.assertStatus(cm, grpc.StatusCode.PERMISSION_DENIED, "denied by an interceptor")
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("/icpt.Svc/Fail", "bug")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)
        self.assertRegex(cm.exception.details(), r"error id \d+")
        self.assertNotIn("interceptor bug", cm.exception.details())
        self.assertTrue(self.call("/icpt.Svc/Fail", "ok").text.startswith("passed"))

    def test_replacing_request_and_response(self):
        res = self.call("/icpt.Svc/Replace", "old")
        self.assertTrue(res.text.startswith("new response to handled new request"), res.text)

    def test_traceback_points_at_the_original_raise(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("/icpt.Svc/Crash")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)
        err = None
        deadline = time.monotonic() + 5 * mwtest.SLOW
        while err is None and time.monotonic() < deadline:
            for line in self.server.logs().splitlines():
                if line.startswith("{") and "/icpt.Svc/Crash" in line and "handler error" in line:
                    err = json.loads(line)["error"]
            time.sleep(0.05)
        self.assertIsNotNone(err, self.server.logs())
        self.assertIn("handler boom", err)
        # the message and the handler's own frame: where it was raised
        self.assertGreaterEqual(err.count("svc.lua:%d:" % crash_line()), 2, err)
        self.assertIn("re-raised through the interceptors", err)

    # -- stops pcall cannot swallow ------------------------------------------

    def test_deadline_stop_through_pcall(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("/icpt.Svc/Spin", timeout=0.5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        recs = self.access_lines("/icpt.Svc/Spin")
        self.assertEqual([r["status"] for r in recs], ["DEADLINE_EXCEEDED"])

    def test_cancellation_through_pcall(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("/icpt.Svc/Sleep", timeout=0.3)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        recs = self.access_lines("/icpt.Svc/Sleep")
        # not OK: the wait after the swallowed error raised again (core's
        # deadline timer may fire a hair before the deadline's time, when
        # the wait reads as a cancel)
        self.assertEqual(len(recs), 1, recs)
        self.assertIn(recs[0]["status"], ("DEADLINE_EXCEEDED", "CANCELLED"))

    # -- built-ins ----------------------------------------------------------------

    def test_access_log_lines(self):
        self.call("/icpt.Other/Ping", "count me")
        recs = self.access_lines("/icpt.Other/Ping")
        self.assertTrue(recs)
        r = recs[-1]
        self.assertEqual(r["level"], "info")
        self.assertEqual(r["kind"], "unary")
        self.assertEqual(r["status"], "OK")
        self.assertGreaterEqual(float(r["duration_ms"]), 0)
        self.assertTrue(r["peer"].startswith("ipv4:127.0.0.1:"), r["peer"])
        self.assertEqual(int(r["request_messages"]), 1)
        self.assertEqual(int(r["response_messages"]), 1)
        self.assertEqual(int(r["request_bytes"]), len(self.Msg(text="count me").SerializeToString()))
        self.assertGreater(int(r["response_bytes"]), int(r["request_bytes"]))
        self.assertGreaterEqual(int(r["generation"]), 1)
        # streams: counts each way
        list(self.protos.bidi(self.channel, "/icpt.Svc/Bidi")(
            iter([self.Msg(text=t) for t in "abc"]), timeout=10))
        recs = self.access_lines("/icpt.Svc/Bidi")
        self.assertTrue(any(int(r["request_messages"]) == 3 and int(r["response_messages"]) == 3
                            and r["kind"] == "bidi_stream" for r in recs), recs)
        with self.assertRaises(grpc.RpcError):
            self.call("/icpt.Svc/Fail", "deny")
        recs = self.access_lines("/icpt.Svc/Fail")
        self.assertIn("PERMISSION_DENIED", [r["status"] for r in recs])

    def test_deadline_default(self):
        # no client deadline: the server's default ends the call
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            self.protos.unary(self.channel, "/icpt.Dl/Default")(self.Msg(n=20))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.monotonic() - t0, 15)
        # a client's own deadline is kept
        res = self.call("/icpt.Dl/Default", n=0, timeout=60)
        self.assertGreater(lead(res.text), 1.0)

    def test_deadline_max(self):
        res = self.call("/icpt.Dl/Max", n=0, timeout=60)
        self.assertLessEqual(lead(res.text), 1.0)
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("/icpt.Dl/Max", n=20, timeout=60)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)


class LoadFailureTest(mwtest.TestCase):
    def check_fails(self, config, pattern, files=None):
        d = self.service_dir(files or {"icpt.proto": PROTO})
        s = Server(d, config=config)
        with self.assertRaises(mwtest.ServerError) as cm:
            s.start()
        self.assertRegex(str(cm.exception), pattern)

    def test_unknown_interceptor_name(self):
        self.check_fails("interceptors:\n  - access_log\n  - no_such_thing\n",
                         r"moonwire\.yaml:3:5: unknown interceptor 'no_such_thing'")

    def test_bad_options(self):
        self.check_fails("methods:\n  icpt.Svc:\n    interceptors:\n"
                         "      - access_log: {calls: some}\n",
                         r"moonwire\.yaml:4:9: interceptor 'access_log': calls must be "
                         r"'all' or 'errors'")

    def test_unknown_service_in_lua(self):
        self.check_fails(None, r"svc\.lua:2: mw\.intercept: no service 'icpt\.Nope'",
                         {"icpt.proto": PROTO,
                          "svc.lua": 'local mw = require "moonwire"\n'
                                     'mw.intercept("icpt.Nope", function(r, c, n) return n(r, c) end)\n'})

    def test_unknown_method_in_lua(self):
        self.check_fails(None, r"svc\.lua:2: mw\.intercept: icpt\.Svc has no method 'Nope'",
                         {"icpt.proto": PROTO,
                          "svc.lua": 'local mw = require "moonwire"\n'
                                     'mw.intercept("/icpt.Svc/Nope", function(r, c, n) return n(r, c) end)\n'})


SIZES_LUA = """
local mw = require "moonwire"
local O = mw.service "icpt.Other"
function O.Ping(req) return {text = string.rep("y", req.n)} end
local D = mw.service "icpt.Dl"
D.Default = O.Ping
function D.Max(req)
  if req.text == "wait" then mw.sleep(req.n) end
  return {text = "done"}
end
"""


class MethodSizesTest(mwtest.TestCase):
    def test_service_max_concurrent(self):
        d = self.service_dir({"icpt.proto": PROTO, "svc.lua": SIZES_LUA})
        protos = Protos(d)
        Msg = protos.msg("icpt.Msg")
        with Server(d, config="methods:\n  icpt.Dl: {max_concurrent: 1}\n") as s:
            slow_call = protos.unary(s.channel(), "/icpt.Dl/Max")
            other = protos.unary(s.channel(), "/icpt.Dl/Default")
            refused = None
            for _ in range(5):
                slow = slow_call.future(Msg(text="wait", n=2), timeout=30)
                time.sleep(0.3 * mwtest.SLOW)  # let it arrive and wait
                try:
                    other(Msg(n=1), timeout=10)
                except grpc.RpcError as e:
                    refused = e
                    break
                slow.exception()  # refused itself (it came second): again
            self.assertIsNotNone(refused)
            self.assertEqual(refused.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("icpt.Dl is overloaded", refused.details())
            # another service is not limited
            self.assertEqual(protos.unary(s.channel(), "/icpt.Other/Ping")(Msg(n=1),
                                                                         timeout=10).text, "y")
            self.assertEqual(slow.result().text, "done")
            self.assertEqual(other(Msg(n=2), timeout=10).text, "yy")

    def test_per_method_message_sizes(self):
        d = self.service_dir({"icpt.proto": PROTO, "svc.lua": SIZES_LUA})
        protos = Protos(d)
        Msg = protos.msg("icpt.Msg")
        config = "methods:\n  /icpt.Other/Ping: {max_receive_bytes: 64, max_send_bytes: 1KiB}\n"
        with Server(d, config=config) as s:
            ping = protos.unary(s.channel(), "/icpt.Other/Ping")
            other = protos.unary(s.channel(), "/icpt.Dl/Default")
            self.assertEqual(len(ping(Msg(text="small", n=10), timeout=10).text), 10)
            with self.assertRaises(grpc.RpcError) as cm:
                ping(Msg(text="z" * 100, n=1), timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("methods./icpt.Other/Ping.max_receive_bytes", cm.exception.details())
            with self.assertRaises(grpc.RpcError) as cm:
                ping(Msg(n=2000), timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("response message too large", cm.exception.details())
            self.assertTrue(s.wait_log("methods./icpt.Other/Ping.max_send_bytes"), s.logs())
            # the other methods keep the server's limits
            self.assertEqual(len(other(Msg(text="z" * 100, n=2000), timeout=10).text), 2000)


class StopsTest(mwtest.TestCase):
    """The CPU budget and a client's cancel, through an interceptor that
    tries to swallow them."""

    def test_budget_and_cancel_through_pcall(self):
        d = self.service_dir({"icpt.proto": PROTO, "svc.lua": LUA,
                              "moonwire/interceptors/tag.lua": TAG})
        protos = Protos(d)
        Msg = protos.msg("icpt.Msg")
        config = "log: {format: json}\nlimits: {handler_cpu_ms: 200}\ninterceptors: [access_log]\n"
        with Server(d, config=config) as s:
            with self.assertRaises(grpc.RpcError) as cm:
                protos.unary(s.channel(), "/icpt.Svc/Spin")(Msg(), timeout=30)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            fut = protos.unary(s.channel(), "/icpt.Svc/Sleep").future(Msg(), timeout=30)
            time.sleep(0.3 * mwtest.SLOW)
            fut.cancel()
            statuses = {}
            deadline = time.monotonic() + 5 * mwtest.SLOW
            while len(statuses) < 2 and time.monotonic() < deadline:
                for line in s.logs().splitlines():
                    if line.startswith("{"):
                        rec = json.loads(line)
                        if rec.get("msg") == "access":
                            statuses[rec["method"]] = rec["status"]
                time.sleep(0.05)
            self.assertEqual(statuses, {"/icpt.Svc/Spin": "RESOURCE_EXHAUSTED",
                                        "/icpt.Svc/Sleep": "CANCELLED"})


    def test_endless_on_done_is_stopped_and_the_worker_serves_on(self):
        lua = """
local mw = require "moonwire"
local O = mw.service "icpt.Other"
function O.Ping(req, ctx)
  if req.text == "spin" then
    ctx:on_done(function() while true do end end)
    ctx:on_done(function()  -- tries to swallow the stop
      while true do pcall(function() while true do end end) end
    end)
  end
  return {text = req.text}
end
"""
        d = self.service_dir({"icpt.proto": PROTO, "svc.lua": lua})
        protos = Protos(d)
        Msg = protos.msg("icpt.Msg")
        config = "workers: 1\nlimits: {handler_cpu_ms: 200}\n"
        with Server(d, config=config) as s:
            ping = protos.unary(s.channel(), "/icpt.Other/Ping")
            self.assertEqual(ping(Msg(text="spin"), timeout=30).text, "spin")
            # the only worker ran both on_done functions: it must be free again
            self.assertEqual(ping(Msg(text="next"), timeout=30).text, "next")
            deadline = time.monotonic() + 10 * mwtest.SLOW
            while (s.logs().count("on_done function stopped") < 2
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            self.assertEqual(s.logs().count("on_done function stopped"), 2, s.logs())
            self.assertTrue(s.alive())


class ReloadTest(mwtest.TestCase):
    def test_reload_applies_entries_and_keeps_the_old_generation_on_a_bad_one(self):
        d = self.service_dir({"icpt.proto": PROTO, "svc.lua": LUA,
                              "moonwire/interceptors/tag.lua": TAG})
        protos = Protos(d)
        Msg = protos.msg("icpt.Msg")
        with Server(d, config="reload: {watch: false}\n") as s:
            ping = protos.unary(s.channel(), "/icpt.Other/Ping")
            self.assertEqual(ping(Msg(text="x"), timeout=10).text, "x+rlg|>lg<lg+slg")
            with open(s.config_path, "w") as f:
                f.write("reload: {watch: false}\ninterceptors: [{tag: {tag: g1}}]\n")
            os.kill(s.pid, signal.SIGHUP)
            self.assertTrue(s.wait_log("reloaded (SIGHUP)", 10 * mwtest.SLOW), s.logs())
            self.assertEqual(ping(Msg(text="x"), timeout=10).text,
                             "x+rg1+rlg|>g1>lg<lg+slg<g1+sg1")
            with open(s.config_path, "w") as f:
                f.write("reload: {watch: false}\ninterceptors:\n  - tag: {tag: 3}\n")
            os.kill(s.pid, signal.SIGHUP)
            self.assertTrue(s.wait_log("failed; still serving generation 2:", 10 * mwtest.SLOW),
                            s.logs())
            self.assertTrue(s.wait_log("moonwire.yaml:3:5: interceptor 'tag': tag: give a tag"),
                            s.logs())
            self.assertEqual(ping(Msg(text="x"), timeout=10).text,
                             "x+rg1+rlg|>g1>lg<lg+slg<g1+sg1")


if __name__ == "__main__":
    mwtest.main()
