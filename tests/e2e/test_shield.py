"""mw.shield with the real binary: work a handler does after its call was
cancelled or its deadline passed (its compensation) runs to its end within
the window, is cut at the window's end, and the rest of the handler's waits
raise again afterwards. What the handler saw is recorded in a shared dict
and read back by another call."""
import time
import unittest

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package shl;
message Req { string key = 1; double window = 2; double work = 3; }
message Resp { string value = 1; }
service S {
  rpc Hold(Req) returns (Resp);
  rpc Get(Req) returns (Resp);
  rpc Values(Req) returns (Resp);
}
"""

LUA = """
local mw = require "moonwire"
local S = mw.service "shl.S"
local rec = mw.shared.rec

-- Waits until cancelled (or its deadline), then works `work` seconds in a
-- shield of `window` seconds; records how each part ended.
function S.Hold(req, ctx)
  local ok, e = pcall(mw.sleep, 30)
  rec:set(req.key .. ":wait", ok and "slept" or (e.cancelled and "cancelled" or tostring(e)))
  local t0 = mw.now()
  local sok, se = pcall(mw.shield, req.window, function()
    mw.sleep(req.work)
    rec:set(req.key .. ":work", "done")
  end)
  rec:set(req.key .. ":shield", sok and "ok" or (se.cancelled and "cancelled" or tostring(se)))
  rec:set(req.key .. ":seconds", string.format("%.3f", mw.now() - t0))
  -- out of the window, a cancelled call's waits raise again
  local aok, ae = pcall(mw.sleep, 0.01)
  rec:set(req.key .. ":after", aok and "slept" or (ae.cancelled and "cancelled" or tostring(ae)))
  return {}
end

function S.Get(req)
  local v = rec:get(req.key)
  return {value = v and tostring(v) or ""}
end

-- results come back, errors go through, nesting never outlasts the outer window
function S.Values(req)
  local a, b = mw.shield(1, function(x, y) return x + 1, y .. "!" end, 1, "b")
  local ok, e = pcall(mw.shield, 1, function() error("inner failure", 0) end)
  local t0 = mw.now()
  local nok, ne = pcall(mw.shield, 0.2, function()
    return mw.shield(5, function() return "nested" end)
  end)
  return {value = table.concat({a, b, tostring(ok), tostring(e), tostring(nok), tostring(ne)}, ",")}
end
"""


class ShieldTest(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"shl.proto": PROTO, "shl.lua": LUA})
        cls.protos = Protos(cls.dir)
        cls.srv = Server(config="workers: 1\nservices: [%s]\nshared:\n  rec: {size: 1MB}\n"
                         % cls.dir)
        cls.srv.start()
        ch = cls.srv.channel()
        cls.Hold = cls.protos.unary(ch, "/shl.S/Hold")
        cls.Get = cls.protos.unary(ch, "/shl.S/Get")
        cls.Values = cls.protos.unary(ch, "/shl.S/Values")
        cls.Req = cls.protos.msg("shl.Req")

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()
        cls.dir.cleanup()

    def get(self, key, wait=5.0):
        deadline = time.monotonic() + wait
        while True:
            v = self.Get(self.Req(key=key), timeout=5).value
            if v or time.monotonic() > deadline:
                return v
            time.sleep(0.02)

    def test_work_after_a_cancel_runs_to_its_end(self):
        f = self.Hold.future(self.Req(key="c1", window=2, work=0.2), timeout=30)
        time.sleep(0.2)
        f.cancel()
        self.assertEqual(self.get("c1:after"), "cancelled")
        self.assertEqual(self.get("c1:wait"), "cancelled")
        self.assertEqual(self.get("c1:work"), "done")
        self.assertEqual(self.get("c1:shield"), "ok")
        self.assertGreaterEqual(float(self.get("c1:seconds")), 0.19)

    def test_the_window_bounds_the_work(self):
        f = self.Hold.future(self.Req(key="c2", window=0.3, work=5), timeout=30)
        time.sleep(0.2)
        f.cancel()
        self.assertEqual(self.get("c2:after"), "cancelled")
        # recorded before ":after", so known by now
        self.assertEqual(self.get("c2:work", wait=0), "")
        self.assertEqual(self.get("c2:shield"), "cancelled")
        secs = float(self.get("c2:seconds"))
        self.assertGreaterEqual(secs, 0.29)
        self.assertLess(secs, 1.5)

    def test_work_after_the_deadline(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.Hold(self.Req(key="d1", window=1, work=0.2), timeout=0.3)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertEqual(self.get("d1:after"), "cancelled")
        self.assertEqual(self.get("d1:wait"), "cancelled")
        self.assertEqual(self.get("d1:work"), "done")

    def test_results_errors_and_nesting(self):
        v = self.Values(self.Req(), timeout=5).value
        self.assertEqual(v, "2,b!,false,inner failure,true,nested")


if __name__ == "__main__":
    mwtest.main()
