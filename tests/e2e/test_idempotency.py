"""Idempotency keys end to end: the real binary with two workers and python
grpcio clients. A keyed call runs once and its duplicates get its reply
(with idempotent-replayed: true), whatever connection or worker they land
on; another request with the key is refused; a duplicate of a running call
waits for it (up to its own deadline) or is aborted; a short ttl expires;
errors are kept or not as documented; a cancelled first call lets the key
go; a required key, a key too long; idempotency on a streaming method fails
the load; the examples/shop Charge as configured there."""

import re
import threading
import time
import urllib.request
import uuid

import grpc

import mwtest
from mwtest import Protos, Server, example, run_cli

PROTO = """
syntax = "proto3";
package idem;

message Req {
  string id = 1;
  string text = 2;
  int32 sleep_ms = 3;
  string fail = 4;
  map<string, string> tags = 5;
}
message Res { string text = 1; string run = 2; }

service Svc {
  rpc Run(Req) returns (Res);       // concurrent: wait (the default)
  rpc Abort(Req) returns (Res);     // concurrent: abort
  rpc Short(Req) returns (Res);     // ttl: 300ms
  rpc Required(Req) returns (Res);  // required: true
  rpc ByField(Req) returns (Res);   // key: {field: id}
  rpc Stream(Req) returns (stream Res);
}
"""

LUA = """
local mw = require "moonwire"
local Svc = mw.service "idem.Svc"

local n = 0
local function handle(req, ctx)
  n = n + 1
  -- One line per run, whichever worker: the test counts them.
  mw.log.info("handler ran", {method = ctx.method_name, text = req.text})
  if req.sleep_ms > 0 then mw.sleep(req.sleep_ms / 1000) end
  ctx:set_header("x-run", tostring(n))
  ctx:set_trailer("x-trailer", req.text)
  if req.fail == "lua" then error("handler bug") end
  if req.fail ~= "" then
    mw.fail(req.fail, "failed: " .. req.text, {mw.details.ErrorInfo{reason = "NOPE", domain = "idem"}})
  end
  return {text = req.text, run = ("%.6f/%d"):format(mw.now(), n)}
end
for _, m in ipairs {"Run", "Abort", "Short", "Required", "ByField"} do Svc[m] = handle end
function Svc.Stream(req, stream, ctx) stream:send{text = req.text} end
"""

CONFIG = """
workers: 2
log: {format: json}
methods:
  /idem.Svc/Run: {idempotency: {key: metadata}}
  /idem.Svc/Abort: {idempotency: {concurrent: abort}}
  /idem.Svc/Short: {idempotency: {ttl: 300ms}}
  /idem.Svc/Required: {idempotency: {required: true}}
  /idem.Svc/ByField: {idempotency: {key: {field: id}}}
"""


def key():
    return str(uuid.uuid4())


def md(k):
    return [("idempotency-key", k)]


class Idempotency(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"idem.proto": PROTO, "idem.lua": LUA})
        cls.protos = Protos(cls.dir.path)
        cls.Req = cls.protos.msg("idem.Req")
        cls.server = Server(cls.dir, config=CONFIG, args=["--admin", "127.0.0.1:0"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)
        cls.dir.cleanup()

    def channel(self):
        """A channel of its own: its own connection (no shared subchannel),
        so its calls may land on the other worker."""
        return self.server.channel(options=[("grpc.use_local_subchannel_pool", 1)])

    def stub(self, method, ch=None):
        return self.protos.unary(ch or self.channel(), "/idem.Svc/" + method)

    def runs(self, text):
        """How many times a handler ran for requests with this text."""
        return len(re.findall(r'"msg":"handler ran"[^\n]*"text":"%s"' % re.escape(text),
                              self.server.logs()))

    def wait_runs(self, text, n, timeout=5):
        deadline = time.monotonic() + timeout * mwtest.SLOW
        while time.monotonic() < deadline and self.runs(text) < n:
            time.sleep(0.02)
        return self.runs(text)

    def assertRuns(self, text, n):
        """The handler ran exactly n times for text. The server logs a run
        before it answers, but the log reaches this process on a thread of
        its own: wait for n lines, then a moment for any more."""
        self.wait_runs(text, n)
        time.sleep(0.05)
        self.assertEqual(self.runs(text), n)

    def test_replay_runs_once_on_any_connection(self):
        k, text = key(), "replay-" + key()
        first, call = self.stub("Run").with_call(self.Req(text=text), metadata=md(k), timeout=10)
        headers = dict(call.initial_metadata())
        self.assertNotIn("idempotent-replayed", headers)
        self.assertIn("x-run", headers)
        for _ in range(4):  # new connections each time: both workers get some
            again, call2 = self.stub("Run").with_call(self.Req(text=text), metadata=md(k),
                                                      timeout=10)
            self.assertEqual(again, first)
            h2 = dict(call2.initial_metadata())
            self.assertEqual(h2["idempotent-replayed"], "true")
            self.assertEqual(h2["x-run"], headers["x-run"])  # the first call's header
            self.assertEqual(dict(call2.trailing_metadata())["x-trailer"], text)
        self.assertRuns(text, 1)

    def test_same_request_with_maps_in_another_order_is_a_duplicate(self):
        k, text = key(), "maps-" + key()
        raw = self.protos.raw_unary(self.channel(), "/idem.Svc/Run")
        base = self.Req(text=text).SerializeToString()

        def entry(a, b):
            e = b"\x0a" + bytes([len(a)]) + a + b"\x12" + bytes([len(b)]) + b
            return b"\x2a" + bytes([len(e)]) + e
        one = raw(base + entry(b"a", b"1") + entry(b"b", b"2"), metadata=md(k), timeout=10)
        two = raw(entry(b"b", b"2") + base + entry(b"a", b"1"), metadata=md(k), timeout=10)
        self.assertEqual(one, two)
        self.assertRuns(text, 1)

    def test_another_request_with_the_key_is_refused(self):
        k, text = key(), "mismatch-" + key()
        run = self.stub("Run")
        run(self.Req(text=text), metadata=md(k), timeout=10)
        with self.assertRaises(grpc.RpcError) as e:
            run(self.Req(text=text, tags={"x": "y"}), metadata=md(k), timeout=10)
        self.assertStatus(e, grpc.StatusCode.INVALID_ARGUMENT,
                          "the idempotency key was already used with a different request "
                          "to /idem.Svc/Run")
        # The key is scoped per method: the same key runs on another one.
        other = self.stub("Abort")(self.Req(text=text), metadata=md(k), timeout=10)
        self.assertEqual(other.text, text)
        self.assertRuns(text, 2)

    def _in_background(self, fn):
        out = {}

        def go():
            try:
                out["res"] = fn()
            except grpc.RpcError as err:
                out["err"] = err
        t = threading.Thread(target=go)
        t.start()
        return t, out

    def test_a_duplicate_waits_for_the_running_call(self):
        k, text = key(), "wait-" + key()
        req = self.Req(text=text, sleep_ms=1000)
        t0 = time.monotonic()
        first, out1 = self._in_background(
            lambda: self.stub("Run").with_call(req, metadata=md(k), timeout=10))
        self.assertEqual(self.wait_runs(text, 1), 1)  # the first one runs
        dup, out2 = self._in_background(
            lambda: self.stub("Run").with_call(req, metadata=md(k), timeout=10))
        # One that cannot wait that long ends at its own deadline.
        with self.assertRaises(grpc.RpcError) as e:
            self.stub("Run")(req, metadata=md(k), timeout=0.3)
        self.assertStatus(e, grpc.StatusCode.DEADLINE_EXCEEDED)
        first.join(15)
        dup.join(15)
        self.assertNotIn("err", out1)
        self.assertNotIn("err", out2)
        self.assertEqual(out2["res"][0], out1["res"][0])
        self.assertEqual(dict(out2["res"][1].initial_metadata())["idempotent-replayed"], "true")
        self.assertGreater(time.monotonic() - t0, 0.9)
        self.assertRuns(text, 1)

    def test_a_duplicate_is_aborted_with_concurrent_abort(self):
        k, text = key(), "abort-" + key()
        req = self.Req(text=text, sleep_ms=600)
        first, out1 = self._in_background(
            lambda: self.stub("Abort")(req, metadata=md(k), timeout=10))
        self.assertEqual(self.wait_runs(text, 1), 1)
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as e:
            self.stub("Abort")(req, metadata=md(k), timeout=10)
        self.assertStatus(e, grpc.StatusCode.ABORTED,
                          "a call with this idempotency key is in progress")
        self.assertLess(time.monotonic() - t0, 0.5)
        first.join(15)
        self.assertEqual(self.stub("Abort")(req, metadata=md(k), timeout=10), out1["res"])
        self.assertRuns(text, 1)

    def test_a_short_ttl_expires(self):
        k, text = key(), "ttl-" + key()
        short = self.stub("Short")
        a = short(self.Req(text=text), metadata=md(k), timeout=10)
        self.assertEqual(short(self.Req(text=text), metadata=md(k), timeout=10), a)
        time.sleep(0.4)
        b = short(self.Req(text=text), metadata=md(k), timeout=10)
        self.assertNotEqual(b.run, a.run)
        self.assertRuns(text, 2)

    def test_kept_errors_are_replayed_with_their_details(self):
        k, text = key(), "kept-" + key()
        run = self.stub("Run")
        got = []
        for _ in range(2):
            with self.assertRaises(grpc.RpcError) as e:
                run(self.Req(text=text, fail="FAILED_PRECONDITION"), metadata=md(k), timeout=10)
            self.assertStatus(e, grpc.StatusCode.FAILED_PRECONDITION, "failed: " + text)
            trailers = dict(e.exception.trailing_metadata())
            got.append(trailers["grpc-status-details-bin"])
            self.assertEqual(trailers["x-trailer"], text)
        self.assertEqual(got[0], got[1])
        self.assertIn(b"NOPE", got[1])
        self.assertRuns(text, 1)
        # A Lua error is kept as the INTERNAL the client got.
        k, text = key(), "bug-" + key()
        for message in ("internal error in the handler (error id ", "internal error in the handler"):
            with self.assertRaises(grpc.RpcError) as e:
                run(self.Req(text=text, fail="lua"), metadata=md(k), timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INTERNAL)
            self.assertTrue(e.exception.details().startswith(message), e.exception.details())
        self.assertRuns(text, 1)

    def test_invalid_argument_is_not_kept(self):
        k, text = key(), "invalid-" + key()
        for _ in range(2):
            with self.assertRaises(grpc.RpcError) as e:
                self.stub("Run")(self.Req(text=text, fail="INVALID_ARGUMENT"), metadata=md(k),
                                 timeout=10)
            self.assertStatus(e, grpc.StatusCode.INVALID_ARGUMENT, "failed: " + text)
        self.assertRuns(text, 2)
        # Once it passes, it is kept.
        ok = self.stub("Run")(self.Req(text=text), metadata=md(k), timeout=10)
        self.assertEqual(self.stub("Run")(self.Req(text=text), metadata=md(k), timeout=10), ok)
        self.assertRuns(text, 3)

    def test_a_cancelled_first_call_lets_the_key_go(self):
        k, text = key(), "cancel-" + key()
        req = self.Req(text=text, sleep_ms=1500)
        fut = self.stub("Run").future(req, metadata=md(k), timeout=10)
        self.assertEqual(self.wait_runs(text, 1), 1)
        fut.cancel()
        # The retry waits for the cancellation to release the key, then runs.
        res = self.stub("Run")(req, metadata=md(k), timeout=10)
        self.assertEqual(res.text, text)
        self.assertRuns(text, 2)
        # A deadline passing in the handler lets it go too.
        k, text = key(), "deadline-" + key()
        req = self.Req(text=text, sleep_ms=400)
        with self.assertRaises(grpc.RpcError) as e:
            self.stub("Abort")(req, metadata=md(k), timeout=0.2)
        self.assertStatus(e, grpc.StatusCode.DEADLINE_EXCEEDED)
        deadline = time.monotonic() + 5 * mwtest.SLOW
        while True:  # abort mode: ABORTED until the server has let the key go
            try:
                self.stub("Abort")(req, metadata=md(k), timeout=10)
                break
            except grpc.RpcError as err:
                self.assertEqual(err.code(), grpc.StatusCode.ABORTED)
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
        self.assertRuns(text, 2)

    def test_required_and_bounded_keys(self):
        text = "required-" + key()
        with self.assertRaises(grpc.RpcError) as e:
            self.stub("Required")(self.Req(text=text), timeout=10)
        self.assertStatus(e, grpc.StatusCode.INVALID_ARGUMENT,
                          "/idem.Svc/Required needs an idempotency key (the 'idempotency-key' "
                          "metadata)")
        with self.assertRaises(grpc.RpcError) as e:
            self.stub("Run")(self.Req(text=text), metadata=md("k" * 256), timeout=10)
        self.assertStatus(e, grpc.StatusCode.INVALID_ARGUMENT,
                          "the idempotency key is longer than 255 bytes")
        self.assertRuns(text, 0)
        # Without `required`, a call without a key just runs, every time.
        for _ in range(2):
            self.stub("Run")(self.Req(text=text), timeout=10)
        self.assertRuns(text, 2)
        # A key from a request field.
        text = "field-" + key()
        req = self.Req(id=key(), text=text)
        a = self.stub("ByField")(req, timeout=10)
        self.assertEqual(self.stub("ByField")(req, timeout=10), a)
        self.assertRuns(text, 1)

    def test_metrics_count_outcomes(self):
        k, text = key(), "metrics-" + key()
        run = self.stub("Run")
        run(self.Req(text=text), metadata=md(k), timeout=10)
        run(self.Req(text=text), metadata=md(k), timeout=10)
        addr = [l.split()[-1] for l in self.server.stdout().splitlines()
                if l.startswith("admin listening on ")][0]
        with urllib.request.urlopen("http://%s/metrics" % addr, timeout=10) as r:
            body = r.read().decode()
        counts = dict(re.findall(
            r'moonwire_idempotency_total\{method="/idem.Svc/Run",outcome="(\w+)"\} (\d+)', body))
        self.assertGreaterEqual(int(counts.get("executed", 0)), 1, body)
        self.assertGreaterEqual(int(counts.get("replayed", 0)), 1, body)

    def test_streaming_method_is_a_load_error(self):
        d = self.service_dir({"idem.proto": PROTO, "idem.lua": LUA})
        cfg = d.write("bad.yaml", """
            methods:
              /idem.Svc/Stream:
                idempotency: {}
            """)
        r = run_cli("check", "-c", cfg, d.path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("bad.yaml:3:5: methods./idem.Svc/Stream.idempotency: idempotency "
                      "applies to unary methods only; /idem.Svc/Stream is server-stream",
                      r.stderr + r.stdout)
        cfg = d.write("bad2.yaml", """
            methods:
              /idem.Svc/Run: {idempotency: {ttl: soon}}
            """)
        r = run_cli("check", "-c", cfg, d.path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("bad2.yaml:2:19: methods./idem.Svc/Run.idempotency: ttl must be a "
                      "positive duration", r.stderr + r.stdout)


class ShopExample(mwtest.TestCase):
    def test_charge_is_idempotent_as_configured(self):
        shop = example("shop")
        protos = Protos(shop)
        Req = protos.msg("shop.ChargeRequest")
        with Server(shop) as s:
            charge = protos.unary(s.channel(), "/shop.Payments/Charge")
            k = key()
            a = charge(Req(card="visa", cents=500), metadata=md(k), timeout=10)
            b, call = charge.with_call(Req(card="visa", cents=500), metadata=md(k), timeout=10)
            self.assertEqual(a, b)
            self.assertEqual(dict(call.initial_metadata())["idempotent-replayed"], "true")
            c = charge(Req(card="visa", cents=500), metadata=md(key()), timeout=10)
            self.assertNotEqual(c.charge_id, a.charge_id)
            with self.assertRaises(grpc.RpcError) as e:
                charge(Req(card="visa", cents=900), metadata=md(k), timeout=10)
            self.assertStatus(e, grpc.StatusCode.INVALID_ARGUMENT)


if __name__ == "__main__":
    mwtest.main()
