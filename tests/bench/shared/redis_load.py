#!/usr/bin/env python3
"""What a shared dict operation costs under load, in memory and on Redis.

A Moonwire server (1 or 2 workers) serves bench.Echo/Unary
(tests/bench/proto/bench.proto) with a handler doing OPS operations of one
kind on a shared dict before it answers: `get`, `set` or `incr` (one key for
every call, the contended case), on a dict in memory or on a redis-server
(Debian's, started here on a free loopback port, no persistence). mwload
(tests/bench/client, C on gRPC core) keeps STREAMS unary calls in flight for
DURATION seconds; dict operations per second = calls per second x OPS.

Run by hand, after a build (and tests/bench/client/build.sh, which `make`
runs into build/bench):

    python3 tests/bench/shared/redis_load.py [--ops 10] [--streams 32] [--duration 3]

Prints one line per case; docs/performance.md ("Shared dicts on Redis")
has figures from it. A measurement, not a test: it checks nothing but that
the calls succeeded."""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BUILD = os.environ.get("MOONWIRE_BUILD_DIR") or os.path.join(ROOT, "build")

LUA = """
local mw = require "moonwire"
local Echo = mw.service "bench.Echo"
local OPS = %d
local mem, red = mw.shared.mem, mw.shared.red

-- mwload sends bytes of a size, not of a content: the sizes say what to do
-- (payload: 1 get, 2 set, 3 incr; text: 1 memory, 2 Redis)
local OPNAMES = {"get", "set", "incr"}

function Echo.Unary(req, ctx)
  local d = #req.text == 2 and red or mem
  local op = OPNAMES[#req.payload]
  if op == "get" then
    for _ = 1, OPS do d:get("k") end
  elseif op == "set" then
    for i = 1, OPS do d:set("k", i) end
  else
    for _ = 1, OPS do d:incr("c", 1, 0) end
  end
  return req
end
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=10)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--duration", type=float, default=3)
    a = ap.parse_args()
    mwload = os.path.join(BUILD, "bench", "mwload")
    moonwire = os.path.join(BUILD, "moonwire")
    tmp = tempfile.mkdtemp(prefix="mw-redis-load-")
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", tmp],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(rport), "ping"],
                                        capture_output=True, text=True).stdout.strip() == "PONG")
        svc = os.path.join(tmp, "svc")
        os.makedirs(svc)
        shutil.copy(os.path.join(ROOT, "tests", "bench", "proto", "bench.proto"), svc)
        with open(os.path.join(svc, "echo.lua"), "w") as f:
            f.write(LUA % a.ops)
        for workers in (1, 2):
            port = free_port()
            cfg = os.path.join(tmp, "w%d.yaml" % workers)
            with open(cfg, "w") as f:
                f.write("workers: %d\nlog: {level: warn}\nshared:\n  mem: {size: 16MiB}\n"
                        "  red: {redis: \"redis://127.0.0.1:%d/0\", prefix: \"load:\"}\n"
                        % (workers, rport))
            srv = subprocess.Popen([moonwire, "serve", "-c", cfg, "--listen",
                                    "127.0.0.1:%d" % port, svc],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                def up():
                    with socket.socket() as s:
                        return s.connect_ex(("127.0.0.1", port)) == 0
                if not wait_for(up):
                    sys.exit("moonwire did not start: " + srv.stderr.read().decode())
                for si, store in enumerate(("mem", "red")):
                    for oi, op in enumerate(("get", "set", "incr")):
                        r = subprocess.run([mwload, "unary", "--target", "127.0.0.1:%d" % port,
                                            "--streams", str(a.streams), "--duration",
                                            str(a.duration), "--warmup", "0.5",
                                            "--channels", "2", "--payload", str(oi + 1),
                                            "--text", str(si + 1)],
                                           capture_output=True, text=True)
                        if r.returncode != 0:
                            sys.exit("mwload failed: " + r.stderr)
                        res = json.loads(r.stdout)
                        print("%-3s %-4s %d worker(s), %d calls in flight, %d ops/call: "
                              "%8.0f calls/s, %9.0f ops/s, p50 %6.0f us" % (
                                  store, op, workers, a.streams, a.ops, res["calls_per_s"],
                                  res["calls_per_s"] * a.ops, res["p50_us"]))
            finally:
                srv.send_signal(signal.SIGTERM)
                srv.wait(20)
    finally:
        redis.kill()
        redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
