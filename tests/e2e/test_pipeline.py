"""mw.pipeline with real binaries: a front running reserve -> charge -> ship
against a Moonwire ledger backend that records every call it sees, so the
order of steps and compensations is asserted where it happened; failures at
each step, a failing undo, the deadline budget, a client that cancels, and
the google.rpc.Status details the client decodes."""
import os
import time
import unittest

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package pipe;
message Op { string step = 1; string action = 2; int64 delay_ms = 3; bool fail = 4; }
message Ack { string id = 1; }
message Ops { repeated string ops = 1; }
message Order { string target = 1; string fail_at = 2; string undo_fail = 3;
                string slow = 4; int64 slow_ms = 5; }
service Ledger {
  rpc Do(Op) returns (Ack);
  rpc Seen(Ack) returns (Ops);
}
service Front { rpc Place(Order) returns (Ack); }
"""

# The backend: records "action:step" for every Do, in arrival order.
LEDGER = """
local mw = require "moonwire"
local L = mw.service "pipe.Ledger"
local seen = {}
function L.Do(op, ctx)
  seen[#seen + 1] = op.action .. ":" .. op.step
  if op.delay_ms > 0 then mw.sleep(op.delay_ms / 1000) end
  if op.fail then mw.fail(mw.FAILED_PRECONDITION, op.step .. " refused") end
  return {id = op.step .. "-1"}
end
function L.Seen(req, ctx)
  local out = seen
  if req.id == "reset" then seen = {} end
  return {ops = out}
end
"""

FRONT = """
local mw = require "moonwire"
local F = mw.service "pipe.Front"

-- One step: run and undo are calls to the ledger; the order says which
-- fails, which undo fails and which is slow.
local function step(name)
  local function call(ctx, action, fail, timeout)
    local o = ctx.values.order
    local ch = mw.client(o.target)
    return ch:call("/pipe.Ledger/Do", {step = name, action = action, fail = fail,
                   delay_ms = (action == "run" and o.slow == name) and o.slow_ms or 0},
                   {timeout = timeout})
  end
  return {name = name, timeout = 5, min_time = 0.2,
    run = function(state, ctx, timeout)
      local res, err = call(ctx, "run", ctx.values.order.fail_at == name, timeout)
      if not res then return nil, err end
      return res.id
    end,
    undo = function(state, ctx, err, timeout)
      local res, e = call(ctx, "undo", ctx.values.order.undo_fail == name, timeout)
      if not res then return nil, e end
    end}
end

local order = mw.pipeline("order", {step "reserve", step "charge", step "ship"},
                          {undo_timeout = 0.5, undo_attempts = 2, reserve = 0.3})

function F.Place(req, ctx)
  ctx.values.order = req
  local state, err = order:run({}, ctx)
  if not state then mw.fail(err) end
  return {id = state.reserve .. "," .. state.charge .. "," .. state.ship}
end
"""

_RPC_DIR = os.path.join(mwtest.SOURCE_DIR, "proto")
RPC = Protos(files=[os.path.join(_RPC_DIR, "google/rpc/status.proto"),
                    os.path.join(_RPC_DIR, "google/rpc/error_details.proto")])


def error_info(err):
    """The PIPELINE_FAILED ErrorInfo's metadata of a grpc.RpcError."""
    bin_ = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert bin_, "no grpc-status-details-bin"
    st = RPC.msg("google.rpc.Status").FromString(bin_)
    assert st.code == err.code().value[0]
    for any_ in st.details:
        info = RPC.msg("google.rpc.ErrorInfo")()
        if any_.Unpack(info) and info.reason == "PIPELINE_FAILED":
            return dict(info.metadata)
    raise AssertionError("no PIPELINE_FAILED ErrorInfo in %r" % st)


class PipelineTest(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.back_dir = mwtest.ServiceDir({"pipe.proto": PROTO, "ledger.lua": LEDGER})
        cls.front_dir = mwtest.ServiceDir({"pipe.proto": PROTO, "front.lua": FRONT})
        cls.protos = Protos(cls.back_dir)
        cls.back = Server(config="workers: 1\nservices: [%s]\n" % cls.back_dir)
        cls.back.start()
        cls.front = Server(config="workers: 1\nservices: [%s]\nclient:\n  allow: [\"%s\"]\n"
                           % (cls.front_dir, cls.back.addr))
        cls.front.start()
        cls.Place = cls.protos.unary(cls.front.channel(), "/pipe.Front/Place")
        cls.Seen = cls.protos.unary(cls.back.channel(), "/pipe.Ledger/Seen")
        cls.Order = cls.protos.msg("pipe.Order")
        cls.Ack = cls.protos.msg("pipe.Ack")

    @classmethod
    def tearDownClass(cls):
        cls.front.close()
        cls.back.close()
        cls.back_dir.cleanup()
        cls.front_dir.cleanup()

    def setUp(self):
        self.Seen(self.Ack(id="reset"), timeout=5)

    def seen(self):
        return list(self.Seen(self.Ack(id=""), timeout=5).ops)

    def order(self, **kw):
        return self.Order(target=self.back.addr, **kw)

    def test_success(self):
        r = self.Place(self.order(), timeout=10)
        self.assertEqual(r.id, "reserve-1,charge-1,ship-1")
        self.assertEqual(self.seen(), ["run:reserve", "run:charge", "run:ship"])
        self.front.wait_log("pipeline ok")

    def test_failure_at_each_step_compensates_in_reverse(self):
        cases = {
            "reserve": ([], ""),
            "charge": (["undo:reserve"], "reserve"),
            "ship": (["undo:charge", "undo:reserve"], "charge,reserve"),
        }
        for at, (undos, compensated) in cases.items():
            with self.subTest(fail_at=at):
                self.setUp()
                with self.assertRaises(grpc.RpcError) as cm:
                    self.Place(self.order(fail_at=at), timeout=10)
                err = cm.exception
                # The original failure, code and message kept.
                self.assertEqual(err.code(), grpc.StatusCode.FAILED_PRECONDITION)
                self.assertEqual(err.details(), at + " refused")
                md = error_info(err)
                self.assertEqual(md["failed_step"], at)
                self.assertEqual(md["compensated"], compensated)
                self.assertEqual(md["undo_failed"], "")
                runs = ["run:reserve", "run:charge", "run:ship"]
                runs = runs[:runs.index("run:" + at) + 1]
                self.assertEqual(self.seen(), runs + undos)

    def test_failing_undo_is_recorded_and_the_others_still_run(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.Place(self.order(fail_at="ship", undo_fail="charge"), timeout=10)
        md = error_info(cm.exception)
        self.assertEqual(md["compensated"], "reserve")
        self.assertEqual(md["undo_failed"], "charge")
        # Retried (undo_attempts = 2), then reserve's undo still ran.
        self.assertEqual(self.seen(), ["run:reserve", "run:charge", "run:ship",
                                       "undo:charge", "undo:charge", "undo:reserve"])
        self.front.wait_log("pipeline undo failed")

    def test_deadline_budget_exhausted_before_a_step(self):
        # charge takes 0.75 s of a 1.2 s deadline; 0.3 s are held back for
        # compensation, so ship has less than its min_time (0.2 s) left and
        # does not start.
        with self.assertRaises(grpc.RpcError) as cm:
            self.Place(self.order(slow="charge", slow_ms=750), timeout=1.2)
        err = cm.exception
        self.assertEqual(err.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        md = error_info(err)
        self.assertEqual(md["failed_step"], "ship")
        self.assertEqual(md["compensated"], "charge,reserve")
        self.assertEqual(self.seen(), ["run:reserve", "run:charge", "undo:charge",
                                       "undo:reserve"])

    def test_cancellation_mid_run_runs_the_undos(self):
        f = self.Place.future(self.order(slow="charge", slow_ms=3000), timeout=10)
        deadline = time.monotonic() + 5
        while "run:charge" not in self.seen() and time.monotonic() < deadline:
            time.sleep(0.02)
        f.cancel()
        # The charge in flight is cancelled with the call; the completed
        # reserve is undone by a call made after the cancellation, inside
        # the compensation's shield, and the backend sees it.
        self.front.wait_log("pipeline compensated")
        line = [l for l in self.front.logs().splitlines() if "pipeline compensated" in l][-1]
        self.assertIn("undo:reserve:ok", line)
        self.assertEqual(self.seen(), ["run:reserve", "run:charge", "undo:reserve"])

if __name__ == "__main__":
    mwtest.main()
