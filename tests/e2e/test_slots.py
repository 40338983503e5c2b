"""Request slots (the requests for new calls each worker keeps posted to
gRPC core), read from moonwire_request_slots on /metrics: one per method
and one for the generic path while the server is idle, more for a method
while a burst of its calls arrives, back to one once its calls come one at
a time; every call of the burst completes over two workers."""

import threading
import time
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package sl;
message M { int64 n = 1; double sleep = 2; }
service S {
  rpc Work(M) returns (M);
  rpc Other(M) returns (M);
  rpc Feed(M) returns (stream M);
}
"""

LUA = """
local mw = require "moonwire"
local S = mw.service "sl.S"
function S.Work(req)
  if req.sleep > 0 then mw.sleep(req.sleep) end
  return {n = req.n + 1}
end
function S.Other(req) return {n = req.n} end
function S.Feed(req, stream) stream:send {n = req.n} end
return S
"""

BURST = 400
WORKERS = 2


def admin_addr(server):
    for line in server.stdout().splitlines():
        if line.startswith("admin listening on "):
            return line.split()[-1]
    raise AssertionError("no 'admin listening on' line:\n" + server.stdout())


class RequestSlots(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = mwtest.ServiceDir({"sl.proto": PROTO, "sl.lua": LUA})
        cls.protos = Protos(cls.svc.path)
        cls.M = cls.protos.msg("sl.M")
        cls.server = Server(cls.svc, config="""
            workers: %d
            admin: {listen: "127.0.0.1:0"}
        """ % WORKERS).start()
        cls.addr = admin_addr(cls.server)
        cls.ch = cls.server.channel()
        cls.work = cls.protos.unary(cls.ch, "/sl.S/Work")

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        cls.server.close()
        cls.svc.cleanup()

    def slots(self):
        """[posted request slots of each worker]."""
        with urllib.request.urlopen("http://%s/metrics" % self.addr, timeout=10) as r:
            body = r.read().decode()
        got = {}
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                if s.name == "moonwire_request_slots":
                    got[int(s.labels["worker"])] = s.value
        self.assertEqual(sorted(got), list(range(WORKERS)), body)
        return [got[i] for i in range(WORKERS)]

    def settle(self):
        """Calls one at a time until every worker is back to its idle
        count. gRPC core hands a connection's calls to one worker's slots
        first and to the others' only when those are taken, so the calls
        come over several connections, for every worker to see some."""
        chans = [self.server.channel(options=[("grpc.use_local_subchannel_pool", 1)])
                 for _ in range(8)]
        try:
            works = [self.protos.unary(ch, "/sl.S/Work") for ch in chans]
            for i in range(400):
                works[i % len(works)](self.M(n=1), timeout=10)
                if self.slots() == self.idle:
                    return
            self.fail("slots did not come back to %s: %s" % (self.idle, self.slots()))
        finally:
            for ch in chans:
                ch.close()

    def test_1_idle_one_slot_per_method(self):
        # Registered methods (the 3 here and whatever the server serves
        # itself) keep one slot each, plus one generic: the same number on
        # each worker, far below the fixed 8 a method of before.
        idle = self.slots()
        self.assertEqual(len(set(idle)), 1, idle)
        self.assertGreaterEqual(idle[0], 4)
        self.assertLess(idle[0], 3 * 8)
        type(self).idle = idle
        # A call now and then leaves them where they are.
        for i in range(20):
            self.assertEqual(self.work(self.M(n=i), timeout=10).n, i + 1)
        self.assertEqual(self.slots(), idle)

    def test_2_burst_grows_then_shrinks(self):
        idle = type(self).idle
        futures = [self.work.future(self.M(n=i, sleep=0.3), timeout=60) for i in range(BURST)]
        peak = list(idle)
        while not all(f.done() for f in futures):
            peak = [max(a, b) for a, b in zip(peak, self.slots())]
            time.sleep(0.02)
        bad = []
        for i, f in enumerate(futures):
            try:
                if f.result().n != i + 1:
                    bad.append("call %d: %d" % (i, f.result().n))
            except grpc.RpcError as e:
                bad.append("call %d: %s %s" % (i, e.code(), e.details()))
        self.assertEqual(bad, [])
        # The burst's method took more slots, on at least one worker, never
        # more than its 8 (7 more than idle).
        self.assertGreater(max(p - i for p, i in zip(peak, idle)), 0, (peak, idle))
        self.assertLessEqual(max(p - i for p, i in zip(peak, idle)), 7, (peak, idle))
        # Calls one at a time bring them back, and every method still
        # answers on both workers.
        self.settle()
        other = self.protos.unary(self.ch, "/sl.S/Other")
        feed = self.protos.server_stream(self.ch, "/sl.S/Feed")
        for i in range(20):
            self.assertEqual(other(self.M(n=i), timeout=10).n, i)
            self.assertEqual([m.n for m in feed(self.M(n=i), timeout=10)], [i])
        self.assertTrue(self.server.alive(), self.server.logs())

    def test_3_bursts_from_threads(self):
        # Bursts on several channels at once, again and again: no call is
        # lost, and the server still answers afterwards.
        errors = []

        def burst():
            ch = self.server.channel(options=[("grpc.use_local_subchannel_pool", 1)])
            work = self.protos.unary(ch, "/sl.S/Work")
            try:
                for _ in range(3):
                    fs = [work.future(self.M(n=i), timeout=60) for i in range(100)]
                    for i, f in enumerate(fs):
                        if f.result().n != i + 1:
                            errors.append(i)
            except grpc.RpcError as e:
                errors.append(str(e))
            finally:
                ch.close()

        threads = [threading.Thread(target=burst) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.settle()


if __name__ == "__main__":
    mwtest.main()
