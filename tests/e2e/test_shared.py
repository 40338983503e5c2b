"""Shared dicts (mw.shared) with the real binary and two workers: one
store seen by every worker, exact counts under concurrent incr, contents
that survive reloads, and the errors of unknown names and bad config."""

import os
import signal
import threading
import time
import unittest

import grpc

import mwtest
from mwtest import Protos, Server, run_cli, service_dir

PROTO = """
syntax = "proto3";
package shd;

message Req { string key = 1; string value = 2; int64 n = 3; string dict = 4; string op = 5; }
message Resp { string value = 1; int64 n = 2; string state = 3; double seconds = 4; }

service S {
  rpc Set(Req) returns (Resp);
  rpc Get(Req) returns (Resp);
  rpc Incr(Req) returns (Resp);
  rpc Loop(Req) returns (Resp);
}
"""

LUA = """
local mw = require "moonwire"
local S = mw.service "shd.S"

-- module code reaches the dicts too, on every worker
local cache = mw.shared.cache
-- this worker's tag, different in each worker's state
local STATE = string.format("%x", math.random(1 << 40))
local VERSION = "v1"

local function dict(req) return mw.shared[req.dict ~= "" and req.dict or "cache"] end

function S.Set(req)
  local ok, err = dict(req):set(req.key, req.value)
  assert(ok, err)
  return {state = STATE}
end

function S.Get(req)
  local v = dict(req):get(req.key)
  return {value = v and tostring(v) or "<nil>", state = STATE .. ":" .. VERSION}
end

-- n increments of one key in one call
function S.Incr(req)
  local d, v = dict(req)
  for _ = 1, req.n do v = d:incr(req.key, 1, 0) end
  return {n = v, state = STATE}
end

-- n operations of one kind, timed (docs/performance.md's figures)
function S.Loop(req)
  local d, key, n = dict(req), req.key, req.n
  local t0 = os.clock()
  if req.op == "get" then
    d:set(key, "value")
    for _ = 1, n do d:get(key) end
  elseif req.op == "set" then
    for i = 1, n do d:set(key, i) end
  elseif req.op == "incr" then
    for _ = 1, n do d:incr(key, 1, 0) end
  end
  return {seconds = os.clock() - t0, state = STATE}
end

return S
"""

CONFIG = """
workers: 2
shared:
  cache: {size: 1MiB}
  counters: {size: 64KiB}
"""


class TestShared(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"shd.proto": PROTO, "s.lua": LUA})
        cls.protos = Protos(cls.dir.path)
        cls.Req = cls.protos.msg("shd.Req")

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    @staticmethod
    def conn(s):
        """A channel of its own connection: connections spread over the
        workers, calls on one connection need not."""
        return s.channel(options=[("grpc.use_local_subchannel_pool", 1)])

    def call(self, ch, method, **kw):
        return self.protos.unary(ch, "/shd.S/" + method)(self.Req(**kw), timeout=10)

    def test_incr_from_both_workers_sums_exactly(self):
        with Server(self.dir.path, config=CONFIG) as s:
            per_call, calls, threads = 200, 100, 8
            states, errors, lock = set(), [], threading.Lock()
            chans = [self.conn(s) for _ in range(threads)]

            def worker(i):
                try:
                    for _ in range(calls // threads + (i < calls % threads)):
                        r = self.call(chans[i], "Incr", key="hits", n=per_call,
                                      dict="counters")
                        with lock:
                            states.add(r.state)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append(e)

            ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(errors, [])
            self.assertEqual(len(states), 2, "both workers served incr calls")
            r = self.call(s.channel(), "Incr", key="hits", n=0, dict="counters")
            r = self.call(s.channel(), "Get", key="hits", dict="counters")
            self.assertEqual(r.value, str(per_call * calls))

    def test_value_set_on_one_worker_is_read_on_the_other(self):
        with Server(self.dir.path, config=CONFIG) as s:
            setter = self.call(self.conn(s), "Set", key="k", value="from one worker").state
            seen = set()
            for _ in range(200):
                r = self.call(self.conn(s), "Get", key="k")
                self.assertEqual(r.value, "from one worker")
                seen.add(r.state.split(":")[0])
                if seen - {setter}:
                    break
            self.assertTrue(seen - {setter}, "no Get landed on the other worker")

    def test_contents_survive_reloads(self):
        d = service_dir(self, {"shd.proto": PROTO, "s.lua": LUA})
        cfg_dir = service_dir(self, {})
        cfg = cfg_dir.write("moonwire.yaml", CONFIG)
        with Server(d.path, args=["-c", cfg]) as s:
            for i in range(20):
                self.call(s.channel(), "Set", key="k%d" % i, value="v%d" % i)
            self.call(s.channel(), "Incr", key="n", n=5, dict="counters")
            # a script change
            d.write("s.lua", LUA.replace('VERSION = "v1"', 'VERSION = "v2"'))
            self.assertTrue(s.wait_log("reloaded (", timeout=10), s.logs())
            deadline = time.monotonic() + 10 * mwtest.SLOW
            while time.monotonic() < deadline:
                r = self.call(s.channel(), "Get", key="k3")
                if r.state.endswith(":v2"):
                    break
                time.sleep(0.05)
            self.assertTrue(r.state.endswith(":v2"), r.state)
            for i in range(20):
                self.assertEqual(self.call(s.channel(), "Get", key="k%d" % i).value, "v%d" % i)
            # SIGHUP with a changed shared: section: a dict added, one resized,
            # one dropped; the existing ones keep their contents
            with open(cfg, "w") as f:
                f.write("workers: 2\nshared:\n  cache: {size: 2MiB}\n  extra: {size: 64KiB}\n")
            n = s.logs().count("reloaded (SIGHUP)")
            os.kill(s.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10 * mwtest.SLOW
            while s.logs().count("reloaded (SIGHUP)") <= n and time.monotonic() < deadline:
                time.sleep(0.02)
            logs = s.logs()
            self.assertIn("reloaded (SIGHUP)", logs)
            self.assertIn("shared dict 'cache' keeps its size of 1MiB (the config asks for 2MiB", logs)
            self.assertIn("shared dict 'counters' is no longer in the config: kept", logs)
            self.assertEqual(self.call(s.channel(), "Get", key="k7").value, "v7")
            self.assertEqual(self.call(s.channel(), "Get", key="n", dict="counters").value, "5")
            self.call(s.channel(), "Set", key="x", value="new", dict="extra")
            self.assertEqual(self.call(s.channel(), "Get", key="x", dict="extra").value, "new")

    def test_unknown_dict(self):
        with Server(self.dir.path, config=CONFIG) as s:
            with self.assertRaises(grpc.RpcError) as e:
                self.call(s.channel(), "Get", key="k", dict="nope")
            self.assertEqual(e.exception.code(), grpc.StatusCode.INTERNAL)
            # the client sees an error id; the log has the message and the line
            self.assertTrue(s.wait_log("unknown shared dict 'nope' (configured: cache, counters)"),
                            s.logs())
            self.assertIn("s.lua:10: unknown shared dict", s.logs())
        # at load time, `moonwire check` names the script's file and line
        bad = service_dir(self, {"shd.proto": PROTO, "s.lua": LUA.replace(
            "local cache = mw.shared.cache", "local cache = mw.shared.caches")})
        cfg = service_dir(self, {}).write("c.yaml", CONFIG)
        r = run_cli("check", "-c", cfg, bad.path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("s.lua:5: unknown shared dict", r.stderr)
        self.assertIn("unknown shared dict 'caches' (configured: cache, counters)", r.stderr)
        # and without a shared: section, what to add
        r = run_cli("check", bad.path)
        self.assertIn("unknown shared dict 'caches' (none is configured", r.stderr)

    def test_config_errors(self):
        d = service_dir(self, {})
        cfg = d.write("c.yaml", "shared:\n  cache: {size: 1KiB}\n  my-dict: {size: 1MiB}\n"
                                "  ok: {}\n")
        r = run_cli("check", "-c", cfg, self.dir.path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("c.yaml:2:17: shared.cache.size: must be at least 65536, got '1KiB'",
                      r.stderr)
        self.assertIn("c.yaml:3:3: shared: 'my-dict' is not a dict name", r.stderr)
        self.assertIn("c.yaml:4:3: shared.ok: 'size' is required", r.stderr)
        r = run_cli("serve", "--listen", "127.0.0.1:0", "-c", cfg, self.dir.path, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("c.yaml:2:17:", r.stderr)

    @unittest.skipIf(mwtest.SANITIZED, "figures only from the optimised build")
    def test_loop_figures(self):
        """Prints ops/s of get, set and incr from Lua, with 1 and 2 workers
        busy, on one dict and on a dict each (docs/performance.md); checks
        only that each loop ran."""
        n = 200000
        cfg = "workers: 2\nshared:\n  cache: {size: 16MiB}\n  other: {size: 16MiB}\n"
        with Server(self.dir.path, config=cfg) as s:
            for workers, dicts in ((1, ["cache"]), (2, ["cache", "cache"]), (2, ["cache", "other"])):
                for op in ("get", "set", "incr"):
                    results, lock = [], threading.Lock()

                    def run(i):
                        # incr: one key for both workers (contended); else a key each
                        key = "k" if op == "incr" else "k%d" % i
                        r = self.call(self.conn(s), "Loop", op=op, key=key, n=n, dict=dicts[i])
                        with lock:
                            results.append(r)

                    for _ in range(20):  # until each call ran on a worker of its own
                        results.clear()
                        ts = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
                        for t in ts:
                            t.start()
                        for t in ts:
                            t.join()
                        if len({r.state for r in results}) == workers:
                            break
                    self.assertEqual(len(results), workers)
                    rate = sum(n / r.seconds for r in results)
                    print("shared %-4s %d worker(s), dicts %s: %.2f M ops/s in all (%s)" % (
                        op, workers, "+".join(dicts), rate / 1e6,
                        ", ".join("%.2f" % (n / r.seconds / 1e6) for r in results)))


if __name__ == "__main__":
    unittest.main()
