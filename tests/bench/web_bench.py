#!/usr/bin/env python3
"""What the HTTP listener's loopback costs per unary call: the same method
(examples/helloworld's SayHello, one worker) called by one load tool,
h2load (nghttp2-client), as

  grpc         gRPC over h2c straight to the gRPC listener
  connect      Connect unary (application/proto) to the HTTP listener, h2c
  connect-h1   the same over HTTP/1.1 (one request per connection at a time)
  grpc-web     gRPC-Web binary to the HTTP listener, h2c

at 1 and 16 calls in flight, interleaved and repeated (--rounds). For each:
calls/s (median), and the server's CPU per call (utime + stime of every
thread, from /proc, over the run, divided by the calls made), which says
more than calls/s on a shared machine.

usage: tests/bench/web_bench.py [--build-dir build] [--calls 20000] [--rounds 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
MSG = b"\x0a\x05world"  # HelloRequest{name: "world"}
FRAMED = b"\x00" + len(MSG).to_bytes(4, "big") + MSG
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def h2load(url, body, headers, calls, inflight, h1):
    args = ["h2load", "-n", str(calls), "-d", body]
    if h1:
        args += ["--h1", "-c", str(inflight), "-m", "1"]
    else:
        args += ["-c", "1", "-m", str(inflight)]
    for h in headers:
        args += ["-H", h]
    r = subprocess.run(args + [url], capture_output=True, text=True, timeout=600)
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", r.stdout)
    ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", r.stdout)
    if r.returncode != 0 or not m or not ok or int(ok.group(1)) != calls:
        sys.exit("h2load failed:\n" + r.stdout + r.stderr)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(SRC, "build"))
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mw-webbench-")
    cfg = os.path.join(tmp, "c.yaml")
    with open(cfg, "w") as f:
        f.write("workers: 1\nreload: {watch: false}\n")
    bodies = {}
    for name, data in (("raw", MSG), ("framed", FRAMED)):
        bodies[name] = os.path.join(tmp, name)
        with open(bodies[name], "wb") as f:
            f.write(data)
    p = subprocess.Popen([os.path.join(a.build_dir, "moonwire"), "serve", "-c", cfg,
                          "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                          os.path.join(SRC, "examples", "helloworld")],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        grpc_addr = http_addr = None
        while not (grpc_addr and http_addr):
            line = p.stdout.readline()
            if not line:
                sys.exit("the server did not start")
            if line.startswith("listening on "):
                grpc_addr = line.split()[-1]
            elif line.startswith("http listening on "):
                http_addr = line.split()[-1]
        path = "/helloworld.Greeter/SayHello"
        modes = {
            "grpc": ("http://%s%s" % (grpc_addr, path), "framed",
                     ["content-type: application/grpc", "te: trailers"], False),
            "connect": ("http://%s%s" % (http_addr, path), "raw",
                        ["content-type: application/proto"], False),
            "connect-h1": ("http://%s%s" % (http_addr, path), "raw",
                           ["content-type: application/proto"], True),
            "grpc-web": ("http://%s%s" % (http_addr, path), "framed",
                         ["content-type: application/grpc-web+proto"], False),
        }
        # warm up every path once
        for url, body, hdrs, h1 in modes.values():
            h2load(url, bodies[body], hdrs, 2000, 4, h1)
        results = {}
        for _ in range(a.rounds):
            for inflight in (1, 16):
                for name, (url, body, hdrs, h1) in modes.items():
                    c0 = cpu_seconds(p.pid)
                    rate = h2load(url, bodies[body], hdrs, a.calls, inflight, h1)
                    cpu = (cpu_seconds(p.pid) - c0) / a.calls * 1e6
                    results.setdefault((name, inflight), []).append((rate, cpu))
        print("| mode | in flight | calls/s (median) | server CPU per call (µs, median) |")
        print("|------|-----------|------------------|-----------------------------------|")
        for (name, inflight), runs in results.items():
            print("| %s | %d | %.0f | %.1f |" % (
                name, inflight, statistics.median(r for r, _ in runs),
                statistics.median(c for _, c in runs)))
    finally:
        p.terminate()
        p.wait(15)


if __name__ == "__main__":
    main()
