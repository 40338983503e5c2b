"""Shared dicts on Redis with the real binary, two workers and a real
redis-server on a free loopback port: the dict semantics from handlers
(the same Lua cases run against a memory dict and a Redis one), exact
counts under concurrent incr from both workers and from two instances,
Redis killed and restarted mid-test (errors, then recovery), a stopped
Redis bounded by the dict's timeout and by the call's deadline without a
hung worker, module code at load, and the figures of docs/performance.md."""

import json
import os
import random
import signal
import threading
import time
import unittest
import urllib.request

import grpc

import mwtest
from mwtest import Protos, RedisServer, Server

PROTO = """
syntax = "proto3";
package rds;

message Req { string key = 1; string value = 2; int64 n = 3; string dict = 4; string op = 5; }
message Resp { string value = 1; int64 n = 2; string state = 3; double seconds = 4; string err = 5; }

service S {
  rpc Case(Req) returns (Resp);
  rpc Get(Req) returns (Resp);
  rpc Set(Req) returns (Resp);
  rpc Incr(Req) returns (Resp);
  rpc Loop(Req) returns (Resp);
  rpc Ping(Req) returns (Resp);
}
"""

LUA = r"""
local mw = require "moonwire"
local S = mw.service "rds.S"

local STATE = string.format("%x", math.random(1 << 40))
-- module code at load: a blocking operation, bounded by the dict's timeout
local LOADED = assert(mw.shared.red:incr("loads", 1, 0))

local function same(want, ...)
  local got = table.pack(...)
  assert(got.n == #want or got.n == want.n, ("%d values, wanted %d"):format(got.n, want.n or #want))
  for i = 1, got.n do
    assert(got[i] == want[i], ("value %d: %s, wanted %s"):format(i, tostring(got[i]), tostring(want[i])))
  end
end

-- The dict semantics, from a handler: each case runs on either backend.
local cases = {}
function cases.types(d)
  same({nil, n = 1}, d:get("missing"))
  same({true, nil, false}, d:set("s", "a\0b"))
  same({"a\0b"}, d:get("s"))
  d:set("i", 42); assert(math.type(d:get("i")) == "integer")
  d:set("f", 42.0); assert(math.type(d:get("f")) == "float")
  d:set("t", true); d:set("b", false)
  same({true}, d:get("t")); same({false}, d:get("b"))
  d:set("k", "v", 0, 7)
  same({"v", 7}, d:get("k"))
  same({"v", 7, false}, d:get_stale("k"))
  same({nil, "bad value type"}, d:set("k", {}))
  same({nil, "empty key"}, d:get(""))
end
function cases.add_replace(d)
  same({false, "not found", false}, d:replace("k", 1))
  same({true, nil, false}, d:add("k", 1))
  same({false, "exists", false}, d:add("k", 2))
  same({true, nil, false}, d:replace("k", 3))
  same({3}, d:get("k"))
  d:delete("k")
  same({nil, n = 1}, d:get("k"))
end
function cases.incr(d)
  same({nil, "not found"}, d:incr("c", 1))
  same({11, nil, false}, d:incr("c", 1, 10))
  same({12}, d:incr("c", 1))
  same({12.5}, d:incr("c", 0.5))
  d:set("str", "x")
  same({nil, "not a number"}, d:incr("str", 1))
end
function cases.ttl(d)
  d:set("k", "v", 0.05)
  local t = d:ttl("k"); assert(t > 0 and t <= 0.05, t)
  mw.sleep(0.1)
  same({nil, n = 1}, d:get("k"))
  same({nil, "not found"}, d:ttl("k"))
  d:set("n", 1)
  same({0}, d:ttl("n"))
  same({true}, d:expire("n", 10))
  assert(d:ttl("n") > 9.9)
  same({nil, "not found"}, d:expire("missing", 1))
end
function cases.lists(d)
  same({0}, d:llen("l"))
  same({1}, d:rpush("l", "b"))
  same({2}, d:lpush("l", "a"))
  same({3}, d:rpush("l", 3))
  same({nil, "value is a list"}, d:get("l"))
  same({"a"}, d:lpop("l"))
  same({3}, d:rpop("l"))
  same({"b"}, d:rpop("l"))
  same({nil, n = 1}, d:rpop("l"))
  d:set("v", 1)
  same({nil, "value not a list"}, d:lpush("v", 1))
end
function cases.keys(d)
  for i = 1, 5 do d:set("k" .. i, i) end
  local keys = d:get_keys(0)
  assert(#keys == 5, #keys)
  assert(#d:get_keys(2) == 2)
  d:flush_all()
  same({nil, n = 1}, d:get("k1"))
  assert(#d:get_keys() == 0)
end

function S.Case(req)
  local d = mw.shared[req.dict]
  d:flush_all()
  cases[req.op](d)
  return {value = "ok", state = STATE}
end

function S.Get(req)
  local v, err = mw.shared[req.dict]:get(req.key)
  return {value = v and tostring(v) or "<nil>", err = err, state = STATE, n = LOADED}
end

function S.Set(req)
  local ok, err = mw.shared[req.dict]:set(req.key, req.value)
  return {value = tostring(ok), err = err, state = STATE}
end

function S.Incr(req)
  local d, v, err = mw.shared[req.dict]
  for _ = 1, req.n do
    v, err = d:incr(req.key, 1, 0)
    if not v then break end
  end
  return {n = v or -1, err = err, state = STATE}
end

-- n operations of one kind in a row, timed on the wall clock (a Redis
-- operation waits: CPU time would not count it)
function S.Loop(req)
  local d, key, n = mw.shared[req.dict], req.key, req.n
  local t0 = mw.now()
  if req.op == "get" then
    d:set(key, "value")
    for _ = 1, n do d:get(key) end
  elseif req.op == "set" then
    for i = 1, n do d:set(key, i) end
  elseif req.op == "incr" then
    for _ = 1, n do d:incr(key, 1, 0) end
  end
  return {seconds = mw.now() - t0, state = STATE}
end

function S.Ping(req) return {state = STATE} end

return S
"""


def config(redis, timeout="1s", workers=2):
    return ("workers: %d\nshared:\n  mem: {size: 1MiB}\n"
            "  red: {redis: \"%s\", prefix: \"t:\", timeout: %s}\n" % (workers, redis.url(1), timeout))


class TestSharedRedis(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"rds.proto": PROTO, "s.lua": LUA})
        cls.protos = Protos(cls.dir.path)
        cls.Req = cls.protos.msg("rds.Req")

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    @staticmethod
    def conn(s):
        return s.channel(options=[("grpc.use_local_subchannel_pool", 1)])

    def call(self, ch, method, timeout=10, **kw):
        return self.protos.unary(ch, "/rds.S/" + method)(self.Req(**kw), timeout=timeout)

    def test_semantics_from_handlers_on_both_backends(self):
        with RedisServer() as r, Server(self.dir.path, config=config(r)) as s:
            # module code ran at load on each worker (a blocking incr)
            self.assertGreaterEqual(int(r.cli("-n", "1", "hget", "t:loads", "v")), 2)
            for dict_ in ("mem", "red"):
                for case in ("types", "add_replace", "incr", "ttl", "lists", "keys"):
                    with self.subTest(dict=dict_, case=case):
                        try:
                            res = self.call(s.channel(), "Case", dict=dict_, op=case)
                        except grpc.RpcError as e:
                            self.fail("%s on %s: %s\n%s" % (case, dict_, e.details(), s.logs()))
                        self.assertEqual(res.value, "ok")
            # the keys are Redis's, under the prefix, in the URL's database
            self.call(s.channel(), "Set", dict="red", key="seen", value="yes")
            self.assertEqual(r.cli("-n", "1", "hget", "t:seen", "v").strip(), "yes")

    def test_incr_from_both_workers_sums_exactly(self):
        with RedisServer() as r, Server(self.dir.path, config=config(r)) as s:
            per_call, calls, threads = 50, 64, 8
            states, errors, lock = set(), [], threading.Lock()
            chans = [self.conn(s) for _ in range(threads)]

            def worker(i):
                try:
                    for _ in range(calls // threads):
                        res = self.call(chans[i], "Incr", key="hits", n=per_call, dict="red")
                        self.assertEqual(res.err, "")
                        with lock:
                            states.add(res.state)
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
            self.assertEqual(self.call(s.channel(), "Get", key="hits", dict="red").value,
                             str(per_call * calls))

    def test_two_instances_share_one_redis(self):
        with RedisServer() as r, Server(self.dir.path, config=config(r)) as a, \
                Server(self.dir.path, config=config(r)) as b:
            self.call(a.channel(), "Set", dict="red", key="k", value="from a")
            self.assertEqual(self.call(b.channel(), "Get", dict="red", key="k").value, "from a")
            errors = []

            def bump(s):
                try:
                    for _ in range(10):
                        self.call(self.conn(s), "Incr", key="n", n=20, dict="red")
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

            ts = [threading.Thread(target=bump, args=(s,)) for s in (a, b, a, b)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(errors, [])
            self.assertEqual(self.call(a.channel(), "Get", dict="red", key="n").value, "800")

    def test_redis_killed_and_restarted(self):
        with RedisServer() as r, Server(self.dir.path, config=config(r)) as s:
            self.assertEqual(self.call(s.channel(), "Set", dict="red", key="k", value="v").value,
                             "true")
            r.kill()
            # the loss is seen ("server closed the connection"), then the
            # reconnects are refused, and every call fails fast with that
            errs = set()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 5 and "redis: connection refused" not in errs:
                c0 = time.monotonic()
                res = self.call(s.channel(), "Get", dict="red", key="k")
                self.assertLess(time.monotonic() - c0, 0.5 * mwtest.SLOW, "a call failed fast")
                self.assertEqual(res.value, "<nil>")
                errs.add(res.err)
            self.assertIn("redis: connection refused", errs)
            for e in errs:
                self.assertTrue(e.startswith("redis: "), e)
            res = self.call(s.channel(), "Set", dict="red", key="k", value="x")
            self.assertEqual((res.value, res.err), ("false", "redis: connection refused"))
            # the memory dict and the workers carry on meanwhile
            self.assertEqual(self.call(s.channel(), "Set", dict="mem", key="k", value="m").value,
                             "true")
            r.restart()  # empty: nothing was saved
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                res = self.call(s.channel(), "Set", dict="red", key="k", value="again")
                if res.value == "true":
                    break
                time.sleep(0.05)
            self.assertEqual(res.value, "true", res.err)
            self.assertEqual(self.call(s.channel(), "Get", dict="red", key="k").value, "again")
            # scripts were lost with the restart: EVAL loads them again
            self.assertEqual(self.call(s.channel(), "Incr", dict="red", key="c", n=3).n, 3)

    def test_stopped_redis_is_bounded_and_no_worker_hangs(self):
        with RedisServer() as r, Server(self.dir.path, config=config(r, timeout="300ms"),
                                        args=["--admin", "127.0.0.1:0"]) as s:
            self.call(s.channel(), "Set", dict="red", key="k", value="v")
            r.pause()
            try:
                # a waiting handler shows what it waits on in /debug/calls
                admin = [l.split()[-1] for l in s.stdout().splitlines()
                         if l.startswith("admin listening on ")][0]
                states, futs = [], []
                deadline = time.monotonic() + 5
                while "shared:redis" not in states and time.monotonic() < deadline:
                    futs.append(self.protos.unary(s.channel(), "/rds.S/Get").future(
                        self.Req(dict="red", key="k"), timeout=10))
                    time.sleep(0.05)
                    with urllib.request.urlopen("http://%s/debug/calls" % admin,
                                                timeout=5) as resp:
                        states = [c["state"] for c in json.loads(resp.read())["calls"]]
                self.assertIn("shared:redis", states)
                for f in futs:
                    self.assertEqual(f.result().err, "redis: timeout")
                # the dict's timeout
                t0 = time.monotonic()
                res = self.call(s.channel(), "Get", dict="red", key="k")
                took = time.monotonic() - t0
                self.assertEqual((res.value, res.err), ("<nil>", "redis: timeout"))
                self.assertGreater(took, 0.25)
                self.assertLess(took, 2.0 * mwtest.SLOW)
                # the call's deadline, shorter than the timeout
                t0 = time.monotonic()
                with self.assertRaises(grpc.RpcError) as e:
                    self.call(s.channel(), "Get", dict="red", key="k", timeout=0.1)
                self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
                self.assertLess(time.monotonic() - t0, 1.0 * mwtest.SLOW)
                # meanwhile both workers answer other calls at once
                states = set()
                t0 = time.monotonic()
                for _ in range(40):
                    states.add(self.call(self.conn(s), "Ping", timeout=2).state)
                self.assertEqual(len(states), 2)
                self.assertLess(time.monotonic() - t0, 3.0 * mwtest.SLOW)
                # commands pending with no reply for 3 timeouts: the
                # connection is dropped and made again (nothing piles up)
                self.assertTrue(s.wait_log("no reply in time: connection dropped", timeout=5),
                                s.logs())
            finally:
                r.resume()
            # the late replies are dropped, and the dict works again
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                res = self.call(s.channel(), "Get", dict="red", key="k")
                if res.err == "":
                    break
                time.sleep(0.05)
            self.assertEqual((res.value, res.err), ("v", ""))
            self.assertTrue(s.wait_log("connected", timeout=5), s.logs())

    def test_a_storm_of_kills_and_stops_leaves_it_serving(self):
        """12 clients calling the Redis dict while Redis is killed,
        restarted and stopped at random for 4 s: every call ends within
        its deadline (an answer, a "redis: ..." error or
        DEADLINE_EXCEEDED), and afterwards the dict works."""
        rnd = random.Random(7)
        with RedisServer() as r, Server(self.dir.path, config=config(r, timeout="200ms")) as s:
            stop, late, lock = [False], [], threading.Lock()
            counts = {"ok": 0, "err": 0, "deadline": 0}

            def client(i):
                ch = self.conn(s)
                own = random.Random(i)
                while not stop[0]:
                    m = own.choice(["Incr", "Get", "Set", "Case"])
                    timeout = own.choice([0.05, 0.3, 2.0])
                    t0 = time.monotonic()
                    try:
                        res = self.call(ch, m, timeout=timeout, dict="red", key="k%d" % (i % 4),
                                        n=3, value="v", op=own.choice(["types", "lists", "keys"]))
                        kind = "err" if res.err else "ok"
                    except grpc.RpcError as e:
                        kind = "deadline"
                        if e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                            grpc.StatusCode.INTERNAL):  # Case: an assert
                            kind = "other: %s" % e.code()
                    took = time.monotonic() - t0
                    with lock:
                        counts[kind] = counts.get(kind, 0) + 1
                        if took > timeout + 1.0 * mwtest.SLOW:
                            late.append((m, timeout, took))

            ts = [threading.Thread(target=client, args=(i,)) for i in range(12)]
            for t in ts:
                t.start()
            t0 = time.monotonic()
            try:
                while time.monotonic() - t0 < 4:
                    act = rnd.choice(["kill", "pause", "none"])
                    if act == "kill":
                        r.restart()
                    elif act == "pause":
                        r.pause()
                        time.sleep(rnd.uniform(0.1, 0.8))
                        r.resume()
                    time.sleep(rnd.uniform(0.2, 0.6))
            finally:
                stop[0] = True
                for t in ts:
                    t.join()
            self.assertEqual(late, [])
            self.assertEqual([k for k in counts if k.startswith("other")], [], counts)
            self.assertGreater(counts["ok"], 0, counts)
            deadline = time.monotonic() + 5
            while True:
                res = self.call(s.channel(), "Set", dict="red", key="z", value="fine")
                if res.value == "true" or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertEqual((res.value, res.err), ("true", ""))
            self.assertTrue(s.alive())

    def test_reload_keeps_a_dict_on_redis(self):
        with RedisServer() as r:
            cfg_dir = mwtest.service_dir(self, {})
            cfg = cfg_dir.write("moonwire.yaml", config(r))
            with Server(self.dir.path, args=["-c", cfg]) as s:
                self.call(s.channel(), "Set", dict="red", key="k", value="kept")
                # another URL (with a password, which no log shows) and a new
                # dict on Redis: the first keeps its store, the second is made
                with open(cfg, "w") as f:
                    f.write("workers: 2\nshared:\n  mem: {size: 1MiB}\n"
                            "  red: {redis: \"redis://:secret@127.0.0.1:1/0\"}\n"
                            "  more: {redis: \"%s\"}\n" % r.url(1))
                n = s.logs().count("reloaded (SIGHUP)")
                os.kill(s.pid, signal.SIGHUP)
                deadline = time.monotonic() + 10 * mwtest.SLOW
                while s.logs().count("reloaded (SIGHUP)") <= n and time.monotonic() < deadline:
                    time.sleep(0.02)
                logs = s.logs()
                self.assertIn("shared dict 'red' keeps its store (%s; the config asks for "
                              "redis://***@127.0.0.1:1/0" % r.url(1), logs)
                self.assertNotIn("secret", logs)
                self.assertEqual(self.call(s.channel(), "Get", dict="red", key="k").value, "kept")
                self.call(s.channel(), "Set", dict="more", key="k", value="new")
                self.assertEqual(self.call(s.channel(), "Get", dict="more", key="k").value, "new")
                self.assertEqual(r.cli("-n", "1", "hget", "more:k", "v").strip(), "new")

    def test_redis_down_at_start(self):
        r = RedisServer()  # not started: the server starts anyway
        try:
            cfg = ("workers: 1\nshared:\n  red: {redis: \"%s\", timeout: 200ms}\n" % r.url())
            lua = LUA.replace('local LOADED = assert(mw.shared.red:incr("loads", 1, 0))',
                              'local LOADED = 0')
            d = mwtest.service_dir(self, {"rds.proto": PROTO, "s.lua": lua})
            with Server(d.path, config=cfg) as s:
                res = self.call(s.channel(), "Get", dict="red", key="k")
                self.assertTrue(res.err.startswith("redis: "), res.err)
                r.start()
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    res = self.call(s.channel(), "Set", dict="red", key="k", value="v")
                    if res.value == "true":
                        break
                    time.sleep(0.05)
                self.assertEqual(res.value, "true", res.err)
        finally:
            r.close()

    @unittest.skipIf(mwtest.SANITIZED, "figures only from the optimised build")
    def test_loop_figures(self):
        """Prints ops/s of get, set and incr from Lua handlers, on the memory
        dict and on Redis, with servers of 1 and 2 workers, and for Redis
        with 1 and 16 handlers in flight per worker (docs/performance.md):
        each handler runs its operations one after another, so Redis's
        figure with one handler is one round trip per operation, and with
        many it is what the pipelined connection carries. Checks only that
        each loop ran."""
        with RedisServer() as r:
            for workers in (1, 2):
                with Server(self.dir.path, config=config(r, workers=workers)) as s:
                    for dict_, n, conc in (("mem", 200000, 1), ("red", 5000, 1),
                                           ("red", 1000, 16)):
                        for op in ("get", "set", "incr"):
                            results, lock = [], threading.Lock()

                            def run(i):
                                key = "k" if op == "incr" else "k%d" % i
                                res = self.call(self.conn(s), "Loop", op=op, key=key, n=n,
                                                dict=dict_, timeout=120)
                                with lock:
                                    results.append(res)

                            ts = [threading.Thread(target=run, args=(i,))
                                  for i in range(workers * conc)]
                            t0 = time.monotonic()
                            for t in ts:
                                t.start()
                            for t in ts:
                                t.join()
                            wall = time.monotonic() - t0
                            self.assertEqual(len(results), workers * conc)
                            if conc == 1:  # each handler's own time, summed
                                rate = sum(n / x.seconds for x in results)
                            else:  # every operation over the wall time
                                rate = n * workers * conc / wall
                            print("shared %-3s %-4s %d worker(s), %2d handler(s) in flight "
                                  "each: %.3f M ops/s" % (dict_, op, workers, conc, rate / 1e6))


if __name__ == "__main__":
    unittest.main()
