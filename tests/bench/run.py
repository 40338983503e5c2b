#!/usr/bin/env python3
"""Moonwire against the servers users would pick instead, side by side.

Every server implements bench.Echo (tests/bench/proto/bench.proto) and is
pinned to core 0; the load generators run on core 1. Unary load comes from
h2load POSTing a prebuilt gRPC frame (each server is first checked to answer
it with grpc-status 0); streaming load from mwload (tests/bench/client), a C
client on gRPC core, and from h2load POSTing prebuilt streams of messages
(it reads the answers as bytes, so it is cheaper per message than any gRPC
client and can drive the fastest servers at 64 B). Every figure is the median of --runs runs, and the
report gives Moonwire's ratio to each peer measured in the same run.

usage: run.py [--build-dir build] [--runs 3] [--seconds 5] [--servers a,b]
              [--stream-servers a,b] [--stream-clients mwload,h2load]
              [--no-unary] [--unary-only] [--out docs/benchmarks.md] [--smoke]

--smoke runs Moonwire alone, briefly, once: it checks the harness works
(ctest runs it) and writes no report unless --out is given.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
SERVER_CPU = "0"
LOAD_CPU = "1"

UNARY_CASES = [  # (name, connections, streams per connection, payload bytes)
    ("1x100, 16 B", 1, 100, 16),
    ("10x10, 16 B", 10, 10, 16),
    ("1x100, 4 KiB", 1, 100, 4096),
    ("10x10, 4 KiB", 10, 10, 4096),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def servers(build):
    bench = os.path.join(build, "bench")
    mw_dir = os.path.join(HERE, "moonwire")

    def moonwire(workers):
        cfg = os.path.join(tempfile.mkdtemp(prefix="mw-bench-"), "moonwire.yaml")
        with open(cfg, "w") as f:
            f.write("workers: %d\nproto_path: [%s]\nprotos: [bench.proto]\n"
                    "log: {level: warn}\nreload: {watch: false}\n"
                    % (workers, os.path.join(HERE, "proto")))
        return lambda port: [os.path.join(build, "moonwire"), "serve", "-c", cfg,
                             "--listen", "127.0.0.1:%d" % port, mw_dir]

    return {
        "moonwire": (moonwire(1), {}),
        "moonwire-2w": (moonwire(2), {}),
        "cecho": (lambda p: [os.path.join(bench, "bench-cecho"), str(p)], {}),
        # the same C echo with Moonwire's channel arguments (core/mw_transport.h):
        # Moonwire against it is what Moonwire adds to a call, nothing else
        "cecho-mwt": (lambda p: [os.path.join(bench, "bench-cecho"), str(p),
                                 "--moonwire-transport"], {}),
        "cpp": (lambda p: [os.path.join(bench, "bench-cpp"), str(p)], {}),
        "go": (lambda p: [os.path.join(bench, "bench-go"), str(p)], {"GOMAXPROCS": "1"}),
        "node": (lambda p: ["node", "--v8-pool-size=1",
                            os.path.join(HERE, "peers", "node", "server.js"), str(p)], {}),
        "python": (lambda p: [PYTHON, os.path.join(HERE, "peers", "python", "server.py"),
                              str(p)], {}),
    }


LABELS = {"moonwire": "Moonwire (Lua)", "cecho": "C echo on gRPC core (ceiling)",
          "cecho-mwt": "C echo, Moonwire's transport settings",
          "cpp": "C++ gRPC callback", "go": "grpc-go", "node": "Node grpc-js",
          "python": "Python grpc.aio", "moonwire-2w": "Moonwire, 2 workers"}


class Server:
    def __init__(self, name, build, cpus=SERVER_CPU):
        make, env = servers(build)[name]
        self.name = name
        self.port = free_port()
        cmd = make(self.port)
        if cpus:
            cmd = ["taskset", "-c", cpus] + cmd
        e = dict(os.environ)
        e.update(env)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=e, text=True)
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line or line.startswith("listening on"):
                break
        if not line.startswith("listening on"):
            self.stop()
            raise RuntimeError("%s did not start: %s" % (name, " ".join(cmd)))
        self.target = "127.0.0.1:%d" % self.port

    def rss_kib(self, field="VmRSS"):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def frame(payload, n=1):
    """A gRPC request frame for bench.Msg{payload, text = "bench", n}."""
    def varint(v):
        out = b""
        while True:
            b = v & 0x7F
            v >>= 7
            out += bytes([b | (0x80 if v else 0)])
            if not v:
                return out
    body = (b"\x0a" + varint(payload) + b"x" * payload + b"\x12\x05bench" + b"\x18" + varint(n))
    return b"\x00" + struct.pack(">I", len(body)) + body


def check_grpc_status(target, frame_path):
    """One request through nghttp, to see grpc-status: 0 in the trailers."""
    out = subprocess.run(
        ["nghttp", "-v", "-H", ":method: POST", "-H", "content-type: application/grpc",
         "-H", "te: trailers", "-d", frame_path, "http://%s/bench.Echo/Unary" % target],
        capture_output=True, text=True, timeout=20).stdout
    m = re.search(r"grpc-status: (\d+)", out)
    if not m or m.group(1) != "0":
        raise RuntimeError("unary frame against %s did not end with grpc-status 0:\n%s"
                           % (target, out[-2000:]))


def h2load(target, frame_path, conns, streams, seconds, logdir):
    logf = os.path.join(logdir, "h2load-%d.log" % time.monotonic_ns())
    cmd = ["taskset", "-c", LOAD_CPU, "h2load", "-c", str(conns), "-m", str(streams),
           "-D", str(seconds), "--warm-up-time", "1", "--log-file", logf,
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           "-d", frame_path, "http://%s/bench.Echo/Unary" % target]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed",
                     out)
    if (not m or not done or int(done.group(3)) != 0 or int(done.group(2)) == 0
            or int(done.group(2)) != int(done.group(1))):
        raise RuntimeError("h2load failed:\n" + out)
    lat = []
    with open(logf) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "200":
                lat.append(int(parts[2]))
    os.unlink(logf)
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0 if lat else 0.0
    return {"rps": float(m.group(1)), "p50_ms": pick(0.50), "p99_ms": pick(0.99)}


def mwload(build, mode, target, seconds, extra=()):
    cmd = ["taskset", "-c", LOAD_CPU, os.path.join(build, "bench", "mwload"), mode,
           "--target", target, "--duration", str(seconds)] + list(extra)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if p.returncode != 0:
        raise RuntimeError("mwload %s failed: %s %s" % (mode, p.stdout, p.stderr))
    return json.loads(p.stdout.strip().splitlines()[-1])


# The streaming matrix: every mode at 64 B and 4 KiB, 1 and 100 concurrent
# streams. Client streaming and full-duplex bidi let gRPC buffer 16
# messages per write (--write-batch 16): written one by one, the client's
# kernel path costs more than any server's work, and every server measured
# the same ~150 k/s. A case whose client used CLIENT_BOUND_PCT of its core
# or more is flagged and gets no ratio: it measured the client.
STREAM_MODES = [  # (key, label, mwload mode, options, result field)
    ("server_stream", "Server streaming, messages/s", "server-stream",
     ["--per-call", "10000"], "messages_per_s"),
    ("client_stream", "Client streaming (16 per write), messages/s", "client-stream",
     ["--per-call", "10000", "--write-batch", "16"], "messages_per_s"),
    ("bidi", "Bidi ping-pong, round trips/s", "bidi", [], "round_trips_per_s"),
    ("duplex", "Bidi full duplex (16 per write), echoes/s", "bidi-duplex",
     ["--per-call", "10000", "--write-batch", "16"], "messages_per_s"),
]
STREAM_SIZES = [(64, "64 B"), (4096, "4 KiB")]
STREAM_COUNTS = [1, 100]
CLIENT_BOUND_PCT = 90.0


def stream_cases(smoke=False):
    """(key, label, mode, mwload options, result field) for every case."""
    out = []
    for key, label, mode, opts, field in STREAM_MODES:
        for size, size_label in STREAM_SIZES:
            for n in STREAM_COUNTS:
                if smoke and (size != 64 or n != 100):
                    continue
                k = "%s %d %d" % (key, size, n)
                lab = "%s, %s, %d stream%s" % (label.split(",")[0], size_label, n,
                                               "" if n == 1 else "s")
                out.append((k, lab + "," + label.rsplit(",", 1)[1], mode,
                            ["--payload", str(size), "--streams", str(n)] + opts, field))
    return out


def measure(name, args, logdir):
    """One run of every measurement against one server."""
    res = {}
    srv = Server(name, args.build_dir)
    try:
        time.sleep(0.5)
        res["rss_idle_kib"] = srv.rss_kib()
        for case, conns, streams, payload in ([] if args.no_unary else UNARY_CASES):
            path = os.path.join(logdir, "frame-%d.bin" % payload)
            r = h2load(srv.target, path, conns, streams, args.seconds, logdir)
            res["unary " + case] = r
            log("  %-12s unary %-14s %9.0f calls/s  p50 %.2f ms  p99 %.2f ms"
                % (name, case, r["rps"], r["p50_ms"], r["p99_ms"]))
        if (not args.unary_only and name in args.stream_servers
                and "mwload" in args.stream_clients):
            for key, _, mode, opts, field in stream_cases(args.smoke):
                r = mwload(args.build_dir, mode, srv.target, args.seconds, opts)
                r["rate"] = r[field]
                r["rss_after_kib"] = srv.rss_kib()
                res[key] = r
                log("  %-12s %-22s %10.0f %s (client CPU %.0f %%%s)"
                    % (name, key, r[field], field, r.get("client_cpu_pct", 0),
                       ", client-bound" if r.get("client_cpu_pct", 0) >= CLIENT_BOUND_PCT
                       else ""))
        if (not args.unary_only and name in args.stream_servers
                and "h2load" in args.stream_clients):
            for key, _, method, body, payload, n in h2_cases(args.smoke):
                r = h2stream(srv.target, method, body, payload, n, args.seconds, logdir)
                r["rss_after_kib"] = srv.rss_kib()
                res[key] = r
                log("  %-12s %-22s %10.0f messages/s (h2load CPU %.0f %%%s)"
                    % (name, key, r["rate"], r["client_cpu_pct"],
                       ", client-bound" if r["client_cpu_pct"] >= CLIENT_BOUND_PCT else ""))
        if srv.proc.poll() is not None:
            raise RuntimeError("%s exited during the run (status %s)"
                               % (name, srv.proc.returncode))
        res["rss_peak_kib"] = srv.rss_kib("VmHWM")
    finally:
        srv.stop()
    return res


def idle_streams(name, args, count):
    """RSS per idle open bidi stream, from `count` streams held open."""
    srv = Server(name, args.build_dir)
    try:
        time.sleep(0.5)
        before = srv.rss_kib()
        cmd = [os.path.join(args.build_dir, "bench", "mwload"), "idle-streams",
               "--target", srv.target, "--count", str(count), "--hold", "3"]
        p = subprocess.Popen(["taskset", "-c", LOAD_CPU] + cmd, stdout=subprocess.PIPE,
                             text=True)
        line = p.stdout.readline()
        if '"opened"' not in line:
            p.kill()
            raise RuntimeError("idle-streams against %s: %s" % (name, line))
        time.sleep(1)
        held = srv.rss_kib()
        p.wait(60)
        opened = json.loads(line)["opened"]
        return {"opened": opened, "rss_before_kib": before, "rss_held_kib": held,
                "bytes_per_stream": (held - before) * 1024.0 / max(opened, 1)}
    finally:
        srv.stop()


def median_of(runs, path):
    vals = []
    for r in runs:
        v = r
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(v)
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if v >= 100:
        return "{:,.0f}{}".format(v, unit)
    return "{:.2f}{}".format(v, unit)


def ratio(a, b, higher_better=True):
    if not a or not b:
        return "n/a"
    return "%.2f" % (a / b if higher_better else b / a)


def report(results, scaling, idle, args):
    names = [n for n in ["moonwire", "cecho", "cecho-mwt", "go", "cpp", "node", "python"]
             if n in results]
    peers = [n for n in names if n != "moonwire"]
    rows = []
    metrics = []
    for case, _, _, _ in UNARY_CASES:
        metrics.append(("Unary %s, calls/s" % case, ("unary " + case, "rps"), True))
    for case, _, _, _ in UNARY_CASES:
        metrics.append(("Unary %s, p50 ms" % case, ("unary " + case, "p50_ms"), False))
        metrics.append(("Unary %s, p99 ms" % case, ("unary " + case, "p99_ms"), False))
    metrics += [("RSS idle, MiB", ("rss_idle_kib",), False),
                ("RSS peak, MiB", ("rss_peak_kib",), False)]
    head = "| metric | " + " | ".join(LABELS[n] for n in names) + " | " + \
        " | ".join("Moonwire / " + LABELS[n] for n in peers) + " |"
    rows.append(head)
    rows.append("|" + "---|" * (1 + len(names) + len(peers)))
    for label, path, higher in metrics:
        scale = (1 / 1024.0) if path[0].startswith("rss") else 1
        vals = {n: median_of(results[n], path) for n in names}
        vals = {n: (v * scale if v is not None else None) for n, v in vals.items()}
        cells = [fmt(vals[n]) for n in names]
        ratios = [ratio(vals.get("moonwire"), vals[n], higher) for n in peers]
        rows.append("| %s | %s | %s |" % (label, " | ".join(cells), " | ".join(ratios)))
    out = ["# Benchmarks", "",
           "Generated by `make bench` (tests/bench/run.py) on %s; %d run(s) per figure, "
           "each figure the median. Each server is pinned to core 0 (taskset), the load "
           "generators to core 1. Unary load: h2load, %d s per case after 1 s of warm-up; "
           "streaming load: mwload (C on gRPC core), see \"Streaming\" below. "
           "Ratios are Moonwire's figure over the peer's, measured in the same "
           "run; for latency and memory a ratio above 1 means Moonwire is lower (better)."
           % (time.strftime("%Y-%m-%d"), args.runs, args.seconds), "",
           "Servers: %s." % ", ".join("%s (%s)" % (LABELS[n], n) for n in names), "",
           "The targets these figures are held to, and the profiles of the ones not "
           "met, are in [performance.md](performance.md).", ""]
    out += rows
    if not args.unary_only:
        out += stream_report(results, args)
    if scaling:
        out += ["", "## Scaling: Moonwire with 1 and 2 workers on 2 cores", "",
                "Unpinned, with h2load sharing the two cores (1 connection x 100 streams, "
                "16 B).", "", "| workers | calls/s |", "|---|---|"]
        for w, v in scaling:
            out.append("| %d | %s |" % (w, fmt(v)))
    if idle:
        out += ["", "## Memory per idle open bidi stream", "",
                "| server | streams | RSS before, MiB | RSS holding them, MiB | bytes per stream |",
                "|---|---|---|---|---|"]
        for n, r in idle.items():
            out.append("| %s | %d | %.1f | %.1f | %s |" % (
                LABELS[n], r["opened"], r["rss_before_kib"] / 1024.0,
                r["rss_held_kib"] / 1024.0, fmt(r["bytes_per_stream"])))
    out += ["", "## Scaling over more cores", "",
            "`tests/bench/scaling.sh [BUILD_DIR]` runs Moonwire with 1, 2, 4 and 8 "
            "workers against grpc-go with GOMAXPROCS 1, 2, 4 and 8 (each server pinned "
            "to that many cores, mwload on the cores after them), unary 16 B and server "
            "streaming 64 B, 3 runs of 5 s each, and prints one table (about 6 minutes "
            "on 16 cores; `WORKERS`, `SECONDS_PER`, `RUNS` change that). On a two-core "
            "machine only the one-worker row runs."]
    return "\n".join(out) + "\n"


# The same modes driven by h2load (nghttp2, C), which does not parse the
# messages one by one: it POSTs a prebuilt body and reads the answer as
# bytes. It reaches rates mwload, which pays gRPC core's batch and
# completion for every message as the servers do, cannot give grpc-go at
# 64 B. Each request is one stream of H2_PER_STREAM[size] messages:
# ServerStream with n = that many (the answer streamed), ClientStream and
# Bidi with that many messages in the body (Bidi echoes each, reading and
# writing at once). messages/s = streams done per second x messages per
# stream; the client's CPU is its rusage over its wall time.
H2_MODES = [  # (key, label, method, messages come from the request body)
    ("h2 server_stream", "Server streaming, messages/s", "ServerStream", False),
    ("h2 client_stream", "Client streaming, messages/s", "ClientStream", True),
    ("h2 duplex", "Bidi full duplex, echoes/s", "Bidi", True),
]
# Messages per stream, by (payload, concurrent streams): a case's rate is
# counted in whole streams, so 100 at once get fewer each (a window of a
# few seconds must see many rounds of them end).
H2_PER_STREAM = {(64, 1): 10000, (64, 100): 200, (4096, 1): 500, (4096, 100): 10}


def h2_cases(smoke=False):
    """(key, label, method, body is messages, payload, streams) for every case."""
    out = []
    for key, label, method, body in H2_MODES:
        for size, size_label in STREAM_SIZES:
            for n in STREAM_COUNTS:
                if smoke and (size != 64 or n != 100):
                    continue
                lab = "%s, %s, %d stream%s,%s" % (label.split(",")[0], size_label, n,
                                                  "" if n == 1 else "s",
                                                  label.rsplit(",", 1)[1])
                out.append(("%s %d %d" % (key, size, n), lab, method, body, size, n))
    return out


def h2stream(target, method, body_msgs, payload, streams, seconds, logdir):
    per = H2_PER_STREAM[(payload, streams)]
    path = os.path.join(logdir, "h2-%s-%d-%d.bin" % (method, payload, streams))
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(frame(payload) * per if body_msgs else frame(payload, per))
    cmd = ["taskset", "-c", LOAD_CPU, "h2load", "-c", "1", "-m", str(streams),
           "-D", str(seconds), "--warm-up-time", "1",
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           "-d", path, "http://%s/bench.Echo/%s" % (target, method)]
    # The only child waited for in between is h2load (taskset execs it),
    # so the children's rusage grows by its CPU alone.
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed",
                     out)
    if not m or not done or int(done.group(3)) != 0 or int(done.group(2)) == 0:
        raise RuntimeError("h2load %s failed:\n%s" % (method, out))
    return {"rate": float(m.group(1)) * per, "client_cpu_pct": 100.0 * cpu / wall}


def spread(runs, path):
    """median, min, max over the runs (None when no run has the value)."""
    vals = []
    for r in runs:
        v = r
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(v)
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def stream_table(results, args, names, peers, cases):
    """Rows of one streaming table: each figure's median with its spread,
    the client's CPU, and Moonwire's ratios, left out where the client was
    the limit."""
    out = ["| case | " + " | ".join(LABELS[n] for n in names) + " | " +
           "".join("Moonwire / %s | " % LABELS[n] for n in peers),
           "|" + "---|" * (1 + len(names) + len(peers))]
    for key, label in cases:
        cells, med, bound = [], {}, {}
        for n in names:
            sp = spread(results[n], (key, "rate"))
            cpu = spread(results[n], (key, "client_cpu_pct"))
            if not sp:
                cells.append("n/a")
                continue
            med[n] = sp[0]
            bound[n] = cpu is not None and cpu[0] >= CLIENT_BOUND_PCT
            cells.append("%s [%s - %s], client %.0f %%%s" % (
                fmt(sp[0]), fmt(sp[1]), fmt(sp[2]), cpu[0] if cpu else 0,
                ", **client-bound**" if bound[n] else ""))
        ratios = []
        for p in peers:
            if "moonwire" not in med or p not in med:
                ratios.append("n/a")
            elif bound.get("moonwire") or bound.get(p):
                ratios.append("n/a (client-bound)")
            else:
                ratios.append(ratio(med["moonwire"], med[p]))
        out.append("| %s | %s | %s" % (label, " | ".join(cells),
                                         "".join(r + " | " for r in ratios)))
    return out


def stream_report(results, args):
    """The streaming matrix under each client, and the memory after it."""
    names = [n for n in ["moonwire", "go", "cecho", "cecho-mwt", "cpp", "node", "python"]
             if n in results and n in args.stream_servers]
    peers = [n for n in ("go", "cpp", "cecho", "cecho-mwt") if n in names]
    out = ["", "## Streaming", ""]
    if "mwload" in args.stream_clients:
        out += ["mwload (C on gRPC core, one thread, one connection) on core 1, %d s per "
                "case after 1 s of warm-up, %d run(s): each cell is the median, [the "
                "lowest - the highest], then the client's CPU over the window as a share "
                "of its core (median). A cell marked **client-bound** had the client at "
                "%.0f %% of its core or more: it measured the client, and gets no ratio. "
                "Ratios are Moonwire's median over the peer's, measured in the same run."
                % (args.seconds, args.runs, CLIENT_BOUND_PCT), ""]
        out += stream_table(results, args, names, peers,
                            [(c[0], c[1]) for c in stream_cases(args.smoke)])
    if "h2load" in args.stream_clients:
        out += ["", "### Streaming driven by h2load", "",
                "h2load (nghttp2) on core 1, one connection, %d s per case after 1 s of "
                "warm-up, %d run(s): each stream POSTs a prebuilt body and reads the "
                "answer as bytes, so the client does not pay a gRPC library's work per "
                "message and stays under the servers that mwload cannot drive to their "
                "limit. Server streaming asks for %d messages of 64 B (%d of 4 KiB) a "
                "stream with one stream at a time, %d (%d) each with 100 at once; client "
                "streaming and full duplex send as many in the body (full "
                "duplex: Bidi, which echoes each while the body still comes in). The "
                "client's CPU is its rusage over its wall time, warm-up included."
                % (args.seconds, args.runs, H2_PER_STREAM[(64, 1)], H2_PER_STREAM[(4096, 1)],
                   H2_PER_STREAM[(64, 100)], H2_PER_STREAM[(4096, 100)]), ""]
        out += stream_table(results, args, names, peers,
                            [(c[0], c[1]) for c in h2_cases(args.smoke)])
    rss = []
    for n in names:
        vals = [r[k]["rss_after_kib"] for r in results[n] for k in r
                if isinstance(r.get(k), dict) and k.endswith(" 100") and "rss_after_kib" in r[k]]
        if vals:
            rss.append("%s %.1f MiB" % (LABELS[n], max(vals) / 1024.0))
    if rss:
        out += ["", "Largest RSS right after a 100-stream case: " + ", ".join(rss) + "."]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--servers", default="moonwire,cecho,cecho-mwt,go,cpp,node,python")
    ap.add_argument("--idle-streams", type=int, default=10000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--json", default=None, help="write the raw results here too")
    ap.add_argument("--unary-only", action="store_true")
    ap.add_argument("--no-unary", action="store_true",
                    help="streaming and memory only (no h2load cases)")
    ap.add_argument("--stream-servers", default="moonwire,go,cecho,cpp",
                    help="the servers the streaming matrix runs against")
    ap.add_argument("--stream-clients", default="mwload,h2load",
                    help="the streaming load clients: mwload, h2load or both")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    if args.smoke:
        args.runs, args.seconds, args.servers = 1, 1, "moonwire"
        args.idle_streams = 200
    names = [n for n in args.servers.split(",") if n]
    args.stream_servers = [n for n in args.stream_servers.split(",") if n]
    args.stream_clients = [n for n in args.stream_clients.split(",") if n]
    for tool in ("h2load", "nghttp", "taskset"):
        if not shutil.which(tool):
            sys.exit("run.py: %s is missing (tests/bench/setup.sh installs it)" % tool)

    logdir = tempfile.mkdtemp(prefix="mw-bench-")
    for payload in (16, 4096):
        with open(os.path.join(logdir, "frame-%d.bin" % payload), "wb") as f:
            f.write(frame(payload))
    results = {n: [] for n in names}
    for n in names:  # every server answers the frame with grpc-status 0
        srv = Server(n, args.build_dir)
        try:
            check_grpc_status(srv.target, os.path.join(logdir, "frame-16.bin"))
            rc = subprocess.run([PYTHON, os.path.join(HERE, "peers", "check_peer.py"),
                                 str(srv.port)], capture_output=True, text=True)
            if rc.returncode != 0:
                raise RuntimeError("%s answers wrongly:\n%s%s" % (n, rc.stdout, rc.stderr))
        finally:
            srv.stop()
    for run in range(args.runs):
        log("run %d of %d" % (run + 1, args.runs))
        for n in names:  # interleaved, so drift hits every server alike
            results[n].append(measure(n, args, logdir))
    scaling = []
    if "moonwire" in names and not args.smoke and not args.no_unary:
        for w, name in ((1, "moonwire"), (2, "moonwire-2w")):
            vals = []
            for _ in range(args.runs):
                srv = Server(name, args.build_dir, cpus=None)
                try:
                    cmd = ["h2load", "-c", "1", "-m", "100", "-D", str(args.seconds),
                           "--warm-up-time", "1", "-H", "content-type: application/grpc",
                           "-H", "te: trailers", "-d", os.path.join(logdir, "frame-16.bin"),
                           "http://%s/bench.Echo/Unary" % srv.target]
                    out = subprocess.run(cmd, capture_output=True, text=True).stdout
                    vals.append(float(re.search(r"([\d.]+) req/s", out).group(1)))
                finally:
                    srv.stop()
            scaling.append((w, statistics.median(vals)))
            log("  moonwire %d worker(s), unpinned: %.0f calls/s" % (w, scaling[-1][1]))
    idle = {}
    for n in [x for x in names if x in ("moonwire", "go", "cpp", "cecho", "cecho-mwt")]:
        idle[n] = idle_streams(n, args, args.idle_streams)
        log("  %-12s %d idle streams: %.0f bytes each"
            % (n, idle[n]["opened"], idle[n]["bytes_per_stream"]))
    shutil.rmtree(logdir, ignore_errors=True)
    text = report(results, scaling, idle, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "scaling": scaling, "idle": idle}, f, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        log("wrote " + args.out)
    print(text)


if __name__ == "__main__":
    main()
