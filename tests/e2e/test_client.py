"""Outbound calls from Lua (mw.client): Moonwire calling Moonwire and calling
a python3-grpcio server, all four kinds, deadlines and cancellation reaching
the downstream, a fan-out the client walks away from, 200 handlers waiting
on downstreams on one worker, retries with RetryInfo, the allow-list."""
import concurrent.futures
import threading
import time
import unittest

import os
import shutil
import tempfile

import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

import mwtest
from test_tls import PKI
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package clt;
message Num { int64 n = 1; string s = 2; }
message Req { string op = 1; string target = 2; int64 n = 3; string key = 4; }
service Echo {
  rpc Unary(Num) returns (Num);
  rpc Count(Num) returns (stream Num);
  rpc Sum(stream Num) returns (Num);
  rpc Chat(stream Num) returns (stream Num);
  rpc Slow(Num) returns (Num);
  rpc Flaky(Num) returns (Num) { option idempotency_level = IDEMPOTENT; }
  rpc Charge(Num) returns (Num);
  rpc Live(Num) returns (Num);
  rpc Big(Num) returns (Num);
}
service Front { rpc Run(Req) returns (Num); }
"""

# The Moonwire backend: Echo in Lua.
BACKEND = """
local mw = require "moonwire"
local E = mw.service "clt.Echo"
local cancels = 0
function E.Unary(req, ctx)
  return {n = req.n, s = "mw tp=" .. tostring(ctx.metadata.traceparent) ..
                         " rid=" .. tostring(ctx.metadata["x-request-id"]) ..
                         " cn=" .. tostring(ctx.auth and ctx.auth.common_name)}
end
function E.Big(req, ctx)
  return {n = req.n, s = ("x"):rep(req.n)}
end
function E.Count(req, stream, ctx)
  for i = 1, req.n do stream:send({n = i, s = "c" .. i}) end
end
function E.Sum(stream, ctx)
  local t, k = 0, 0
  for m in stream:iter() do t = t + m.n; k = k + 1 end
  return {n = t, s = "sum of " .. k}
end
function E.Chat(stream, ctx)
  for m in stream:iter() do stream:send({n = m.n * 10}) end
end
function E.Slow(req, ctx)
  ctx:on_cancel(function() cancels = cancels + 1 end)
  mw.sleep(req.n / 1000)
  return {n = req.n}
end
function E.Live(req, ctx)
  return {n = mw.stats().live_calls - 1, s = tostring(cancels)}
end
"""

# The front: one handler that calls req.target as req.op says.
FRONT = """
local mw = require "moonwire"
local F = mw.service "clt.Front"
local ops = {}
function ops.unary(ch, req)
  local res, err = ch:call("/clt.Echo/Unary", {n = req.n})
  if not res then mw.fail(err) end
  return res
end
function ops.typed(ch, req)
  local Echo = ch:service "clt.Echo"
  local res, err = Echo.Unary({n = req.n})
  if not res then mw.fail(err) end
  return res
end
function ops.count(ch, req)
  local s = assert(ch:call("/clt.Echo/Count", {n = req.n}))
  local parts, total = {}, 0
  for m in s:iter() do parts[#parts + 1] = m.s; total = total + m.n end
  return {n = total, s = table.concat(parts, ",")}
end
function ops.sum(ch, req)
  local s = assert(ch:stream "/clt.Echo/Sum")
  for i = 1, req.n do assert(s:send({n = i})) end
  s:close_send()
  local res, err = s:recv()
  if not res then mw.fail(err) end
  return res
end
function ops.chat(ch, req)
  local s = assert(ch:stream "/clt.Echo/Chat")
  local got = {}
  for i = 1, req.n do
    s:send({n = i})
    got[#got + 1] = tostring(s:recv().n)
  end
  s:close_send()
  local last, err = s:recv()
  assert(last == nil and err == nil, "the stream should end cleanly")
  return {n = #got, s = table.concat(got, ",")}
end
function ops.slow(ch, req)
  local res, err = ch:call("/clt.Echo/Slow", {n = req.n}, {timeout = 10})
  if not res then mw.fail(err) end
  return res
end
function ops.fan(ch, req)
  local a = ch:start("/clt.Echo/Slow", {n = req.n}, {timeout = 10})
  local b = ch:start("/clt.Echo/Slow", {n = req.n}, {timeout = 10})
  local ra, ea = a:wait()
  local rb, eb = b:wait()
  if not ra then mw.fail(ea) end
  if not rb then mw.fail(eb) end
  return {n = ra.n + rb.n}
end
function ops.flaky(ch, req)
  local res, err = ch:call("/clt.Echo/Flaky", {s = req.key})
  if not res then return {n = -err.attempts, s = err.message} end
  return res
end
function ops.charge(ch, req)
  local res, err = ch:call("/clt.Echo/Charge", {s = req.key})
  return {n = err.attempts, s = tostring(err.code)}
end
function ops.big(ch, req)
  local res, err = ch:call("/clt.Echo/Big", {n = req.n})
  if not res then mw.fail(err) end
  return {n = #res.s}
end
function ops.ondone(ch, req, ctx)
  ctx:on_done(function()
    local ok, err = pcall(ch.call, ch, "/clt.Echo/Unary", {n = 1}, {timeout = 1})
    mw.log.info("on_done call", {ok = ok, err = tostring(err)})
  end)
  return {n = 1}
end
function ops.wfr(ch, req)
  local res, err = ch:call("/clt.Echo/Unary", {n = 1}, {timeout = 0.5, wait_for_ready = req.n == 1})
  return {n = err.code, s = err.message}
end
function ops.sortcall(ch, req)
  local ok, err = pcall(table.sort, {3, 1, 2}, function(a, b)
    ch:call("/clt.Echo/Unary", {n = 1})
    return a < b
  end)
  mw.sleep(0.01)
  return {n = ok and 1 or 0, s = tostring(err)}
end
function ops.coro(ch, req)
  local ok, err = pcall(coroutine.wrap(function() return ch:call("/clt.Echo/Unary", {n = 1}) end))
  return {n = ok and 1 or 0, s = tostring(err)}
end
function ops.hold(ch, req)
  local held = ("x"):rep(req.n)                      -- most of the worker's Lua memory
  local res, err = ch:call("/clt.Echo/Big", {n = 3000000})
  return {n = #held + (res and #res.s or 0)}
end
function ops.live(ch, req)
  return assert(ch:call("/clt.Echo/Live", {}))
end
-- TLS: req.key is the directory of the test's certificates, and "mtls"
-- in op presents the client certificate.
function ops.tls(ch, req) return ops.unary(ch, req) end
ops.mtls = ops.tls
local function tls_opts(req)
  if req.op == "tls" then return {tls = {ca = req.key .. "/ca.pem", server_name = "localhost"}} end
  if req.op == "mtls" then
    return {tls = {ca = req.key .. "/ca.pem", cert = req.key .. "/client.pem",
                   key = req.key .. "/client.key"}}
  end
end
function F.Run(req, ctx)
  local ok, ch = pcall(mw.client, req.target, tls_opts(req))
  if not ok then mw.fail(mw.PERMISSION_DENIED, ch) end
  return ops[req.op](ch, req, ctx)
end
"""


# google.rpc's types, from the project's copy of the protos.
_RPC_DIR = os.path.join(mwtest.SOURCE_DIR, "proto")
RPC = Protos(files=[os.path.join(_RPC_DIR, "google/rpc/status.proto"),
                    os.path.join(_RPC_DIR, "google/rpc/error_details.proto")])


def closed_port():
    """A loopback port nothing listens on."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PyEcho:
    """clt.Echo on python3-grpcio, recording what it saw."""

    def __init__(self, protos):
        self.p = protos
        self.Num = protos.msg("clt.Num")
        self.lock = threading.Lock()
        self.arrivals = {}   # Flaky key -> [(time, grpc-previous-rpc-attempts)]
        self.charges = 0
        self.cancelled_at = []
        self.live = 0
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=64))
        N = self.Num
        ser, de = N.SerializeToString, N.FromString

        def h(kind, fn):
            return getattr(grpc, kind)(fn, request_deserializer=de, response_serializer=ser)
        handlers = {
            "Unary": h("unary_unary_rpc_method_handler", self.unary),
            "Count": h("unary_stream_rpc_method_handler", self.count),
            "Sum": h("stream_unary_rpc_method_handler", self.sum),
            "Chat": h("stream_stream_rpc_method_handler", self.chat),
            "Slow": h("unary_unary_rpc_method_handler", self.slow),
            "Flaky": h("unary_unary_rpc_method_handler", self.flaky),
            "Charge": h("unary_unary_rpc_method_handler", self.charge),
            "Live": h("unary_unary_rpc_method_handler", self.live_count),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("clt.Echo", handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.sock_dir = tempfile.mkdtemp(prefix="mw-e2e-sock-")
        self.unix = "unix:" + os.path.join(self.sock_dir, "echo.sock")
        self.server.add_insecure_port(self.unix)
        self.server.start()
        self.target = "127.0.0.1:%d" % self.port

    def stop(self):
        self.server.stop(0)
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    def unary(self, req, ctx):
        md = dict(ctx.invocation_metadata())
        return self.Num(n=req.n, s="py tp=%s rid=%s" % (md.get("traceparent"),
                                                       md.get("x-request-id")))

    def count(self, req, ctx):
        for i in range(1, req.n + 1):
            yield self.Num(n=i, s="c%d" % i)

    def sum(self, it, ctx):
        msgs = list(it)
        return self.Num(n=sum(m.n for m in msgs), s="sum of %d" % len(msgs))

    def chat(self, it, ctx):
        for m in it:
            yield self.Num(n=m.n * 10)

    def slow(self, req, ctx):
        with self.lock:
            self.live += 1
        done = threading.Event()

        def on_done():
            if not done.is_set():
                with self.lock:
                    self.cancelled_at.append(time.monotonic())
        ctx.add_callback(on_done)
        try:
            end = time.monotonic() + req.n / 1000
            while time.monotonic() < end and ctx.is_active():
                time.sleep(0.005)
            done.set()
            return self.Num(n=req.n)
        finally:
            with self.lock:
                self.live -= 1

    def flaky(self, req, ctx):
        md = dict(ctx.invocation_metadata())
        with self.lock:
            seen = self.arrivals.setdefault(req.s, [])
            seen.append((time.monotonic(), md.get("grpc-previous-rpc-attempts")))
            n = len(seen)
        if n <= 2:
            # RetryInfo: wait 200 ms before trying again.
            info = RPC.msg("google.rpc.RetryInfo")()
            info.retry_delay.FromMilliseconds(200)
            st = RPC.msg("google.rpc.Status")(code=grpc.StatusCode.UNAVAILABLE.value[0],
                                              message="try later")
            d = st.details.add()
            d.type_url = "type.googleapis.com/google.rpc.RetryInfo"
            d.value = info.SerializeToString()
            ctx.abort_with_status(_RichStatus(grpc.StatusCode.UNAVAILABLE, "try later",
                                              (("grpc-status-details-bin",
                                                st.SerializeToString()),)))
        return self.Num(n=n, s="ok")

    def charge(self, req, ctx):
        with self.lock:
            self.charges += 1
        ctx.abort(grpc.StatusCode.UNAVAILABLE, "down")

    def live_count(self, req, ctx):
        with self.lock:
            return self.Num(n=self.live)


class _RichStatus(grpc.Status):
    def __init__(self, code, details, trailing_metadata):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


class ClientTest(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mw-e2e-client-")
        cls.pki = PKI(cls.tmp)
        cls.pki.ca("ca", "Moonwire Test CA")
        cls.pki.issue("server", "ca", "localhost", ["DNS:localhost", "IP:127.0.0.1"],
                      "serverAuth")
        cls.pki.issue("client", "ca", "gateway-1", ["DNS:gateway-1.test"], "clientAuth")
        cls.dirs = []
        cls.back_dir = mwtest.ServiceDir({"clt.proto": PROTO, "echo.lua": BACKEND})
        cls.front_dir = mwtest.ServiceDir({"clt.proto": PROTO, "front.lua": FRONT})
        cls.closed_port = closed_port()
        cls.protos = Protos(cls.back_dir)
        cls.py = PyEcho(cls.protos)
        cls.back = Server(config="workers: 2\nservices: [%s]\n" % cls.back_dir)
        cls.back.start()
        p = cls.pki.path
        cls.tls_back = Server(config=(
            "services: [%s]\ntls:\n  cert: %s\n  key: %s\n  client_ca: %s\n"
            "  require_client_cert: true\n" % (cls.back_dir, p("server.pem"), p("server.key"),
                                                p("ca.pem"))))
        cls.tls_back.start()
        cfg = mwtest.dedent("""
            workers: 1
            services: [%s]
            interceptors: [{access_log: {calls: all}}]
            client:
              allow: ["%s", "%s", "%s", "%s", "127.0.0.1:%d"]
              propagate: [x-request-id]
              max_receive_bytes: 64KiB
              retry: {max_attempts: 4, initial_backoff: 20ms, max_backoff: 50ms}
            """ % (cls.front_dir, cls.back.addr, cls.py.target, cls.tls_back.addr, cls.py.unix,
                   cls.closed_port))
        # Proxy variables pointing nowhere: outbound calls ignore them.
        cls.front = Server(config=cfg, args=["--admin", "127.0.0.1:0"],
                           env={"http_proxy": "http://127.0.0.1:9", "https_proxy":
                                "http://127.0.0.1:9", "grpc_proxy": "http://127.0.0.1:9"})
        cls.front.start()
        deadline = time.monotonic() + 5
        while "admin listening on " not in cls.front.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        cls.front_admin = cls.front.stdout().split("admin listening on ")[1].split()[0]
        ch = cls.front.channel()
        cls.Run = cls.protos.unary(ch, "/clt.Front/Run")
        cls.Req = cls.protos.msg("clt.Req")

    @classmethod
    def tearDownClass(cls):
        cls.front.close()
        cls.back.close()
        cls.tls_back.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        cls.py.stop()
        cls.back_dir.cleanup()
        cls.front_dir.cleanup()

    def call(self, op, target, n=0, key="", timeout=10, metadata=None):
        return self.Run(self.Req(op=op, target=target, n=n, key=key), timeout=timeout,
                        metadata=metadata)

    def targets(self):
        return (("moonwire", self.back.addr), ("python", self.py.target))

    def test_four_kinds(self):
        for name, t in self.targets():
            with self.subTest(backend=name):
                r = self.call("unary", t, 7)
                self.assertEqual(r.n, 7)
                self.assertTrue(r.s.startswith("mw" if name == "moonwire" else "py"), r.s)
                self.assertEqual(self.call("typed", t, 8).n, 8)
                r = self.call("count", t, 4)
                self.assertEqual((r.n, r.s), (10, "c1,c2,c3,c4"))
                r = self.call("sum", t, 5)
                self.assertEqual((r.n, r.s), (15, "sum of 5"))
                r = self.call("chat", t, 3)
                self.assertEqual((r.n, r.s), (3, "10,20,30"))

    def test_trace_context_and_configured_keys_propagate(self):
        tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        for name, t in self.targets():
            with self.subTest(backend=name):
                r = self.call("unary", t, 1, metadata=[("traceparent", tp),
                                                       ("x-request-id", "req-42"),
                                                       ("x-secret", "no")])
                self.assertIn("tp=" + tp, r.s)
                self.assertIn("rid=req-42", r.s)

    def test_parent_deadline_cancels_the_child(self):
        before = len(self.py.cancelled_at)
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("slow", self.py.target, 3000, timeout=0.4)
        self.assertStatus(cm, grpc.StatusCode.DEADLINE_EXCEEDED)
        # The downstream hears of it at the parent's deadline, not at the
        # child's own 10 s timeout.
        deadline = time.monotonic() + 3
        while len(self.py.cancelled_at) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertGreater(len(self.py.cancelled_at), before)
        waited = self.py.cancelled_at[-1] - t0
        self.assertLess(waited, 1.5)
        self.assertGreater(waited, 0.3)

    def test_client_gone_mid_fan_out(self):
        for name, t in self.targets():
            with self.subTest(backend=name):
                f = self.Run.future(self.Req(op="fan", target=t, n=5000), timeout=20)
                # Both children are running downstream...
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    live = self.call("live", t).n
                    if live >= 2:
                        break
                    time.sleep(0.02)
                self.assertGreaterEqual(live, 2)
                f.cancel()
                # ...and neither outlives the parent.
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    live = self.call("live", t).n
                    if live == 0:
                        break
                    time.sleep(0.02)
                self.assertEqual(live, 0)

    def test_200_waiting_handlers_on_one_worker(self):
        # Each caller its own connection (a connection carries at most 100
        # streams), the health check one more.
        def conn(i):
            ch = grpc.insecure_channel(self.front.addr, options=[
                ("grpc.use_local_subchannel_pool", 1), ("mw.test.conn", i)])
            self.addCleanup(ch.close)
            return ch
        health = mwtest.standard_protos().unary(conn(99), "/grpc.health.v1.Health/Check")
        HReq = mwtest.standard_protos().msg("grpc.health.v1.HealthCheckRequest")
        runs = [self.protos.unary(conn(i), "/clt.Front/Run") for i in range(4)]
        futures = [runs[i % 4].future(self.Req(op="slow", target=self.back.addr, n=1000),
                                      timeout=20) for i in range(200)]
        t0 = time.monotonic()
        health_times = []
        while any(not f.done() for f in futures) and time.monotonic() - t0 < 15:
            h0 = time.monotonic()
            health(HReq(), timeout=5)
            health_times.append(time.monotonic() - h0)
            time.sleep(0.05)
        results = [f.result() for f in futures]
        self.assertEqual([r.n for r in results], [1000] * 200)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertTrue(health_times)
        self.assertLess(max(health_times), 1.0)

    def test_retries_honour_retry_info(self):
        r = self.call("flaky", self.py.target, key="k1")
        self.assertEqual((r.n, r.s), (3, "ok"))
        seen = self.py.arrivals["k1"]
        self.assertEqual([a for _, a in seen], [None, "1", "2"])
        # RetryInfo said 200 ms: each retry waited at least that long.
        self.assertGreaterEqual(seen[1][0] - seen[0][0], 0.19)
        self.assertGreaterEqual(seen[2][0] - seen[1][0], 0.19)
        # The access log line of the parent call counts them.
        def logged():
            return any("client_calls=3" in l and "client_retries=2" in l and
                       "/clt.Front/Run" in l for l in self.front.logs().splitlines())
        deadline = time.monotonic() + 5
        while not logged() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(logged(), self.front.logs()[-2000:])

    def test_no_retry_for_a_method_not_idempotent(self):
        before = self.py.charges
        r = self.call("charge", self.py.target, key="c1")
        self.assertEqual((r.n, r.s), (1, "14"))
        self.assertEqual(self.py.charges - before, 1)

    def test_retries_never_pass_the_deadline(self):
        # RetryInfo asks for 200 ms; a parent with 100 ms left does not wait.
        t0 = time.monotonic()
        r = self.call("flaky", self.py.target, key="k2", timeout=0.1)
        self.assertLess(time.monotonic() - t0, 0.2)
        self.assertEqual(r.n, -1)
        self.assertEqual(len(self.py.arrivals["k2"]), 1)

    def test_response_size_is_bounded(self):
        self.assertEqual(self.call("big", self.back.addr, 60000).n, 60000)
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("big", self.back.addr, 70000)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_metrics_count_calls_and_attempts(self):
        self.call("flaky", self.py.target, key="m1")
        text = urllib.request.urlopen("http://%s/metrics" % self.front_admin, timeout=5).read()
        fams = {f.name: f for f in text_string_to_metric_families(text.decode())}
        def value(name, **labels):
            for s in fams[name].samples:
                if all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
            return None
        self.assertGreaterEqual(value("grpc_client_handled", grpc_method="Flaky",
                                      grpc_code="OK"), 1)
        self.assertGreaterEqual(value("moonwire_client_attempts", grpc_method="Flaky",
                                      grpc_code="Unavailable"), 2)
        self.assertGreaterEqual(value("grpc_client_started", grpc_method="Flaky",
                                      grpc_type="unary"), 1)
        # Futures count too, once each.
        def slow_counts():
            nonlocal fams
            text = urllib.request.urlopen("http://%s/metrics" % self.front_admin,
                                          timeout=5).read()
            fams = {f.name: f for f in text_string_to_metric_families(text.decode())}
            return (value("grpc_client_started", grpc_method="Slow") or 0,
                    value("grpc_client_handled", grpc_method="Slow", grpc_code="OK") or 0)
        s0, h0 = slow_counts()
        self.call("fan", self.back.addr, 1)
        s1, h1 = slow_counts()
        self.assertEqual((s1 - s0, h1 - h0), (2, 2))

    def test_unix_socket_target(self):
        r = self.call("unary", self.py.unix, 9)
        self.assertEqual(r.n, 9)

    def test_wait_for_ready(self):
        down = "127.0.0.1:%d" % self.closed_port
        t0 = time.monotonic()
        r = self.call("wfr", down, 0)        # fails fast: nothing listens
        self.assertEqual(r.n, grpc.StatusCode.UNAVAILABLE.value[0])
        self.assertLess(time.monotonic() - t0, 0.45)
        t0 = time.monotonic()
        r = self.call("wfr", down, 1)        # waits for a connection until its deadline
        self.assertEqual(r.n, grpc.StatusCode.DEADLINE_EXCEEDED.value[0])
        self.assertGreater(time.monotonic() - t0, 0.45)

    def test_waits_refused_where_lua_cannot_yield(self):
        r = self.call("sortcall", self.back.addr)
        self.assertEqual(r.n, 0)
        self.assertIn("cannot wait here", r.s)
        r = self.call("coro", self.back.addr)
        self.assertEqual(r.n, 0)
        self.assertIn("not from another coroutine", r.s)
        # Nothing was left in flight: live calls drain to the one asking.
        self.assertEqual(self.call("live", self.back.addr).n, 0)

    def test_no_blocking_call_on_a_worker(self):
        self.assertEqual(self.call("ondone", self.back.addr).n, 1)
        self.assertTrue(self.front.wait_log("not in on_done or on_drain functions"))

    def test_mutual_tls(self):
        r = self.call("mtls", self.tls_back.addr, 3, key=self.tmp)
        self.assertEqual(r.n, 3)
        self.assertIn("cn=gateway-1", r.s)
        # Without a client certificate the backend refuses the handshake.
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("tls", self.tls_back.addr, 3, key=self.tmp)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)

    def test_target_outside_the_allow_list(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("unary", "10.255.0.1:80")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("not in client.allow", cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            self.call("unary", "dns:///evil:80")
        self.assertIn("is not a target", cm.exception.details())


LOSSY = """
local mw = require "moonwire"
-- The first attempt's reply is lost after the charge was made (and kept by
-- the idempotency interceptor, which sits next to the handler).
mw.intercept(function(req, ctx, next)
  local res = next(req, ctx)
  if ctx.method == "/shop.Payments/Charge" and
     ctx.metadata["grpc-previous-rpc-attempts"] == nil then
    mw.fail(mw.UNAVAILABLE, "connection reset after the charge")
  end
  return res
end)
"""

CHECKOUT = """
local mw = require "moonwire"
local F = mw.service "clt.Front"
function F.Run(req, ctx)
  local pay = mw.client(req.target)
  local res, err = pay:call("/shop.Payments/Charge", {card = "visa", cents = req.n},
                            {metadata = {["idempotency-key"] = req.key}})
  if not res then mw.fail(err) end
  return {n = res.charges, s = res.charge_id}
end
"""


class RetriedSafelyTest(mwtest.TestCase):
    """examples/shop's idempotent Charge, retried by an outbound call whose
    first reply is lost: the card is charged once."""

    def test_a_lost_reply_retried_charges_once(self):
        shop = os.path.join(mwtest.EXAMPLES, "shop")
        files = {"payments.proto": open(os.path.join(shop, "payments.proto")).read(),
                 "payments.lua": open(os.path.join(shop, "payments.lua")).read(),
                 "lossy.lua": LOSSY}
        back_dir = self.service_dir(files)
        back_cfg = ("workers: 1\nservices: [%s]\n" % back_dir +
                    open(os.path.join(shop, "moonwire.yaml")).read())
        front_dir = self.service_dir({"clt.proto": PROTO, "checkout.lua": CHECKOUT,
                                      "payments.proto": files["payments.proto"]})
        with Server(config=back_cfg) as back:
            cfg = mwtest.dedent("""
                services: [%s]
                client:
                  allow: ["%s"]
                  methods:
                    # Safe to retry: the server keeps replies by idempotency key.
                    /shop.Payments/Charge: {idempotent: true,
                                            retry: {max_attempts: 3, initial_backoff: 10ms}}
                """ % (front_dir, back.addr))
            with Server(config=cfg) as front:
                p = Protos(front_dir)
                run = p.unary(front.channel(), "/clt.Front/Run")
                Req = p.msg("clt.Req")
                # The first attempt's reply is lost (UNAVAILABLE after the
                # charge): this answer is the retry's, replayed from the key.
                first = run(Req(target=back.addr, n=500, key="order-1"), timeout=10)
                self.assertEqual(first.n, 1)
                again = run(Req(target=back.addr, n=500, key="order-1"), timeout=10)
                self.assertEqual((again.n, again.s), (1, first.s))
                other = run(Req(target=back.addr, n=500, key="order-2"), timeout=10)
                self.assertEqual(other.n, 2)


class MemoryTest(mwtest.TestCase):
    def test_a_reply_past_the_memory_cap_fails_the_call_not_the_server(self):
        back_dir = self.service_dir({"clt.proto": PROTO, "echo.lua": BACKEND})
        front_dir = self.service_dir({"clt.proto": PROTO, "front.lua": FRONT})
        with Server(back_dir) as back:
            cfg = ("workers: 1\nservices: [%s]\nlimits: {lua_memory_mb: 8}\n"
                   "client: {allow: [\"%s\"], max_receive_bytes: 8MiB}\n" % (front_dir, back.addr))
            with Server(config=cfg) as front:
                p = Protos(back_dir)
                run = p.unary(front.channel(), "/clt.Front/Run")
                Req = p.msg("clt.Req")
                with self.assertRaises(grpc.RpcError) as cm:
                    run(Req(op="hold", target=back.addr, n=6000000), timeout=10)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                # The worker serves on.
                self.assertEqual(run(Req(op="unary", target=back.addr, n=4), timeout=5).n, 4)


class LoadTimeTest(mwtest.TestCase):
    def test_module_code_calls_with_a_timeout(self):
        py = PyEcho(Protos(self.service_dir({"clt.proto": PROTO})))
        self.addCleanup(py.stop)
        script = """
            local mw = require "moonwire"
            local ch = mw.client("%s")
            local res, err = ch:call("/clt.Echo/Unary", {n = 5}, {timeout = 5})
            mw.log.info("at load", {n = res and res.n, err = err and err.message})
            local ok, why = pcall(ch.call, ch, "/clt.Echo/Unary", {n = 1})
            mw.log.info("no timeout", {why = tostring(why)})
            -- A failure's details and trailers, read after the call is over.
            local res2, err2 = ch:call("/clt.Echo/Flaky", {s = "load"}, {timeout = 5})
            mw.log.info("flaky at load", {code = err2 and err2.code,
              type = err2 and err2.details[1] and err2.details[1]["@type"],
              attempts = err2 and err2.attempts})
            """ % py.target
        d = self.service_dir({"clt.proto": PROTO, "load.lua": mwtest.dedent(script)})
        cfg = ("workers: 1\nservices: [%s]\nclient: {allow: [\"%s\"], retry: {max_attempts: 3}}\n"
               % (d, py.target))
        with Server(config=cfg) as s:
            s.wait_log("at load")
            logs = s.logs()
            self.assertIn("n=5", logs)
            self.assertIn("needs a timeout", logs)
            # One attempt at load (no waiting between attempts there).
            self.assertTrue(s.wait_log("flaky at load"))
            self.assertIn("type=type.googleapis.com/google.rpc.RetryInfo", s.logs())
            self.assertIn("attempts=1", s.logs())

    def test_client_methods_must_exist(self):
        d = self.service_dir({"clt.proto": PROTO, "x.lua": "require 'moonwire'\n"})
        cfg = self.service_dir({"moonwire.yaml":
                                "services: [%s]\nclient:\n  methods:\n"
                                "    \"/clt.Echo/Nope\": {idempotent: true}\n" % d})
        r = mwtest.run_cli("check", "-c", cfg.file("moonwire.yaml"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("'/clt.Echo/Nope' is not a method of the loaded protos", r.stderr + r.stdout)


if __name__ == "__main__":
    mwtest.main()
