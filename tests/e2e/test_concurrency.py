"""Many calls at once on a server with two workers."""
import time

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package conc;

message Req {
  int64 n = 1;
  string tag = 2;
  double sleep = 3;
}
message Resp {
  int64 n = 1;
  string tag = 2;
}

service Conc {
  rpc Work(Req) returns (Resp);
}
"""

LUA = """
local mw = require "moonwire"
local Conc = mw.service "conc.Conc"

function Conc.Work(req, ctx)
  if req.sleep > 0 then mw.sleep(req.sleep) end
  local sum = 0
  for i = 1, req.n % 1000 do sum = sum + i end
  return {n = req.n * 2 + sum, tag = req.tag:upper() .. ":" .. ctx.metadata["x-call"]}
end

return Conc
"""

CALLS = 500


def expected(n, tag):
    return n * 2 + sum(range(1, n % 1000 + 1)), "%s:%d" % (tag.upper(), n)


class Concurrency(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"conc.proto": PROTO, "conc.lua": LUA})
        cls.protos = Protos(cls.dir)
        cls.Req = cls.protos.msg("conc.Req")
        cls.server = Server(cls.dir, config="workers: 2\n").start()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()

    def run_calls(self, channels, sleep=0.0):
        work = [self.protos.unary(ch, "/conc.Conc/Work") for ch in channels]
        futures = []
        for i in range(CALLS):
            req = self.Req(n=i, tag="call-%d" % i, sleep=sleep)
            futures.append(work[i % len(work)].future(
                req, metadata=(("x-call", str(i)),), timeout=30))
        bad = []
        for i, f in enumerate(futures):
            try:
                resp = f.result()
            except grpc.RpcError as e:
                bad.append("call %d: %s %s" % (i, e.code(), e.details()))
                continue
            want_n, want_tag = expected(i, "call-%d" % i)
            if resp.n != want_n or resp.tag != want_tag:
                bad.append("call %d: got (%d, %r), want (%d, %r)"
                           % (i, resp.n, resp.tag, want_n, want_tag))
        self.assertEqual(bad, [], "%d of %d calls went wrong" % (len(bad), CALLS))

    def test_many_calls_one_channel(self):
        self.run_calls([self.server.channel()])

    def test_many_calls_many_channels(self):
        self.run_calls([self.server.channel(options=[("grpc.use_local_subchannel_pool", 1)])
                        for _ in range(8)])

    def test_many_sleeping_calls_interleave(self):
        # 500 handlers each waiting 0.2 s: one after the other would take
        # 100 s; suspended coroutines let them overlap.
        start = time.monotonic()
        self.run_calls([self.server.channel()], sleep=0.2)
        self.assertLess(time.monotonic() - start, 15.0)
        self.assertTrue(self.server.alive(), self.server.logs())


if __name__ == "__main__":
    mwtest.main()
