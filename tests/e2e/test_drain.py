"""The bounded graceful drain on SIGTERM: health goes NOT_SERVING first,
then after shutdown.drain_delay the listener closes (new connections are
refused) and mw.on_drain hooks run, calls get shutdown.grace, whatever
remains is cancelled (its handlers see it), and the process exits 0; a
second signal stops at once. The stop stays bounded with a stream that
never ends and a client that never reads."""

import queue
import signal
import threading
import time

import grpc

import mwtest
from mwtest import Server

PROTO = """
syntax = "proto3";
package d;
message M { string x = 1; }
service D {
  rpc Get(M) returns (M);
  rpc Forever(M) returns (stream M);
  rpc Polite(M) returns (stream M);
  rpc Flood(M) returns (stream M);
}
"""

LUA = """
local mw = require "moonwire"
local D = mw.service "d.D"
mw.on_drain(function() mw.log.info("on_drain ran", {draining = tostring(mw.draining())}) end)
function D.Get(req) return {x = req.x} end
-- never ends by itself
function D.Forever(req, stream, ctx)
  ctx:on_cancel(function() mw.log.info("forever cancelled") end)
  while true do
    stream:send {x = "tick"}
    mw.sleep(0.05)
  end
end
-- winds down when the server drains, with a resume token
function D.Polite(req, stream)
  local n = 0
  while not mw.draining() do
    n = n + 1
    stream:send {x = "tick"}
    mw.sleep(0.02)
  end
  stream:send {x = "resume:" .. n}
end
-- to a client that never reads: the send queue fills and the handler waits
function D.Flood(req, stream, ctx)
  ctx:on_cancel(function() mw.log.info("flood cancelled") end)
  local big = string.rep("x", 65536)
  while true do stream:send {x = big} end
end
"""

DELAY, GRACE = 0.5, 1.5


class Reader:
    """Reads a stream in a thread; .q gets each message then ('end', code)."""

    def __init__(self, call, field=None):
        self.call = call
        self.q = queue.Queue()
        self.field = field
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for r in self.call:
                self.q.put(getattr(r, self.field) if self.field else r)
            self.q.put(("end", grpc.StatusCode.OK))
        except grpc.RpcError as e:
            self.q.put(("end", e.code()))

    def next(self, timeout=5):
        return self.q.get(timeout=timeout * mwtest.SLOW)

    def until_end(self, timeout=10):
        seen = []
        while True:
            m = self.next(timeout)
            if isinstance(m, tuple):
                return seen, m[1]
            seen.append(m)


class Drain(mwtest.TestCase):
    def setUp(self):
        self.dir = self.service_dir({"d.proto": PROTO, "d.lua": LUA})
        self.p = mwtest.Protos(self.dir)
        self.M = self.p.msg("d.M")
        self.H = mwtest.standard_protos()

    def check(self, ch):
        Req = self.H.msg("grpc.health.v1.HealthCheckRequest")
        return self.H.unary(ch, "/grpc.health.v1.Health/Check")(Req(service=""), timeout=5).status

    def test_bounded_drain(self):
        cfg = "workers: 2\nshutdown:\n  drain_delay: %dms\n  grace: %dms\n" % (DELAY * 1000, GRACE * 1000)
        s = Server(self.dir, config=cfg).start()
        try:
            ch = s.channel()
            Req = self.H.msg("grpc.health.v1.HealthCheckRequest")
            watch = Reader(self.H.server_stream(ch, "/grpc.health.v1.Health/Watch")(Req(service="")),
                           "status")
            self.assertEqual(watch.next(), 1)
            forever = Reader(self.p.server_stream(ch, "/d.D/Forever")(self.M()), "x")
            polite = Reader(self.p.server_stream(ch, "/d.D/Polite")(self.M()), "x")
            flood = self.p.server_stream(s.channel(), "/d.D/Flood")(self.M())  # never read
            self.assertEqual(forever.next(), "tick")
            self.assertEqual(polite.next(), "tick")

            t0 = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            # 1. health first, while the listener still accepts
            self.assertEqual(watch.next(), 2)  # NOT_SERVING
            self.assertEqual(self.check(s.channel()), 2)
            self.assertLess(time.monotonic() - t0, DELAY, "NOT_SERVING came after the delay")
            self.assertNotIn("on_drain ran", s.logs())
            # the polite stream saw mw.draining() and ended with its token
            seen, code = polite.until_end()
            self.assertEqual(code, grpc.StatusCode.OK)
            self.assertTrue(seen[-1].startswith("resume:"), seen[-1:])
            # 2. after the delay: hooks ran, new connections are refused
            self.assertTrue(s.wait_log("on_drain ran", timeout=DELAY + 2), s.logs())
            self.assertGreaterEqual(time.monotonic() - t0, DELAY * 0.9)
            self.assertIn("draining=true", s.logs())
            fresh = grpc.insecure_channel(s.target())
            with self.assertRaises(grpc.RpcError) as e:
                self.p.unary(fresh, "/d.D/Get")(self.M(x="late"), timeout=2)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
            fresh.close()
            self.assertTrue(s.alive(), "exited before the grace was over")
            # the Watch stream ended once connections were told to go away
            seen, code = watch.until_end()
            self.assertEqual(code, grpc.StatusCode.OK)
            # 3. the rest is cancelled at the end of the grace, and exit 0
            s.proc.wait(DELAY + GRACE + 1 + (5 if mwtest.SANITIZED else 0))
            took = time.monotonic() - t0
            self.assertEqual(s.stop(), 0, s.logs())
            self.assertLess(took, DELAY + GRACE + 1 + (5 if mwtest.SANITIZED else 0))
            self.assertGreater(took, DELAY + GRACE * 0.9)
            seen, code = forever.until_end()
            self.assertNotEqual(code, grpc.StatusCode.OK)
            logs = s.logs()
            for line in ("SIGTERM: draining", "grace period over: cancelling 2 call(s)",
                         "forever cancelled", "flood cancelled", "stopped"):
                self.assertIn(line, logs)
            self.assertLess(logs.index("SIGTERM: draining"), logs.index("on_drain ran"))
            flood.cancel()
        finally:
            s.close()

    def test_second_signal_stops_at_once(self):
        for first, second in ((signal.SIGTERM, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)):
            s = Server(self.dir, config="shutdown: {grace: 20s, drain_delay: 5s}\n").start()
            try:
                forever = Reader(self.p.server_stream(s.channel(), "/d.D/Forever")(self.M()), "x")
                self.assertEqual(forever.next(), "tick")
                s.proc.send_signal(first)
                self.assertTrue(s.wait_log("draining"), s.logs())
                t0 = time.monotonic()
                s.proc.send_signal(second)
                self.assertEqual(s.stop(timeout=10), 0, s.logs())
                self.assertLess(time.monotonic() - t0, 3 * mwtest.SLOW)
                self.assertIn("second signal: stopping now", s.logs())
                self.assertIn("forever cancelled", s.logs())
            finally:
                s.close()

    def test_sighup_while_draining_is_ignored(self):
        s = Server(self.dir, config="shutdown: {grace: 2s, drain_delay: 300ms}\n").start()
        try:
            forever = Reader(self.p.server_stream(s.channel(), "/d.D/Forever")(self.M()), "x")
            self.assertEqual(forever.next(), "tick")
            s.proc.send_signal(signal.SIGTERM)
            self.assertTrue(s.wait_log("draining"), s.logs())
            s.proc.send_signal(signal.SIGHUP)
            s.proc.wait(10)
            self.assertEqual(s.stop(), 0, s.logs())
            self.assertIn("grace period over", s.logs())
            self.assertNotIn("reloaded", s.logs())
            self.assertNotIn("second signal", s.logs())
        finally:
            s.close()


if __name__ == "__main__":
    mwtest.main()
