#!/usr/bin/env python3
"""What an outbound call (mw.client) costs, side by side in one run.

Moonwire servers with one worker each, all serving bench.Echo
(tests/bench/proto/bench.proto):

  direct    the Lua echo (tests/bench/moonwire), pinned to core 0
  gateway   a Lua bench.Echo/Unary whose handler calls the backend's
            bench.Echo/Unary with mw.client and returns its answer, core 0
  backend   the same Lua echo, for the gateway, pinned to core 1
  and, unpinned, for the last two measurements: an echo listening on many
  ports, a gateway of its own, and a slow backend.

mwload (tests/bench/client, C on gRPC core) sends unary calls at each
concurrency, pinned to core 1:
  (a) mwload -> direct               one call, served by Lua
  (b) mwload -> gateway -> backend   the same call, served by Lua that makes
                                     one outbound call for it
The process on core 0 is the one under test in both, so (b)/(a) is what an
outbound call per request leaves of a worker's capacity. Each server's CPU
(utime + stime from /proc, every thread) over each mwload run, divided by
the calls made, gives CPU per call; gateway (b) minus direct (a) is the cost
of the outbound call on the gateway: the client's Lua and C, the encode and
decode, the extra round trip's completions.

Memory per idle cached channel: a fresh gateway calls an echo listening on
N+1 ports, once per port (a distinct target each: its own channel and
connection, kept cached; client.max_channels is 64 by default, N stays
below it), and the RSS growth over N is the figure, with the open file
descriptors as a check that each call made one connection.

Parent to child cancellation: a Python client calls the gateway, whose
handler calls a slow backend (it sleeps); once the backend has logged the
call's start, the client notes the time and cancels. The backend's
ctx:on_cancel logs mw.now(); the difference is the time the cancellation
took to cross the gateway (one machine, one clock). The same with the client
calling the slow backend directly gives the base, interleaved; the
gateway's own ctx:on_cancel logs too, which splits the time into the
client's cancellation reaching the gateway and the gateway's reaching the
backend (the child cancellation proper).

Throughput runs are repeated --runs times, (a) and (b) interleaved, and each
figure is the median. Nothing here is a timed test: --smoke (ctest runs it)
checks only that every part runs and its figures make sense.

usage: client_bench.py [--build-dir build] [--runs 5] [--seconds 3]
                       [--concurrency 1,16,64] [--channels 50] [--cancels 20]
                       [--json FILE] [--smoke]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (free_port, mwload: the same as make bench's)

import grpc  # noqa: E402

PROTO_DIR = os.path.join(HERE, "proto")
ECHO_DIR = os.path.join(HERE, "moonwire")
GATEWAY_CPU, BACKEND_CPU = "0", "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

GATEWAY_LUA = """\
-- bench.Echo/Unary answered by the backend: one outbound call per call.
-- A request whose text is a target calls that target instead (one channel
-- per target, for the channel memory; a slow backend, for cancellation,
-- when n numbers the try).
local mw = require "moonwire"
local Echo = mw.service "bench.Echo"

local back = mw.client(os.getenv("BENCH_BACKEND"))

function Echo.Unary(req, ctx)
  local ch = back
  if req.text ~= "" then
    ch = mw.client(req.text)
    if req.n ~= 0 then -- the cancellation measurement: when this call heard of it
      ctx:on_cancel(function()
        mw.log.warn("parent cancelled", {id = req.n, at = string.format("%.6f", mw.now())})
      end)
    end
  end
  local res, err = ch:call("/bench.Echo/Unary", req)
  if not res then mw.fail(err) end
  return res
end

return Echo
"""

SLOW_LUA = """\
-- bench.Echo/Unary that waits until cancelled, logging when it started and
-- when its cancellation arrived (mw.now(): the wall clock, as Python's).
local mw = require "moonwire"
local Echo = mw.service "bench.Echo"

function Echo.Unary(req, ctx)
  mw.log.warn("started", {id = req.n})
  ctx:on_cancel(function()
    mw.log.warn("cancelled", {id = req.n, at = string.format("%.6f", mw.now())})
  end)
  mw.sleep(60)
  return req
end

return Echo
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def encode_msg(text=b"", n=0):
    """bench.Msg{text, n} on the wire."""
    def varint(v):
        out = b""
        while True:
            b, v = v & 0x7F, v >> 7
            out += bytes([b | (0x80 if v else 0)])
            if not v:
                return out
    out = b""
    if text:
        out += b"\x12" + varint(len(text)) + text
    if n:
        out += b"\x18" + varint(n)
    return out


class Moonwire:
    """moonwire serve with a generated config, optionally pinned; its stderr
    kept (the slow backend's log is read as it comes)."""

    def __init__(self, build, tmp, name, services, cpus=None, listen=None, extra="",
                 env=None):
        self.name = name
        cfg = os.path.join(tmp, name + ".yaml")
        lines = ["workers: 1", "services: [%s]" % ", ".join(services),
                 "proto_path: [%s]" % PROTO_DIR, "protos: [bench.proto]",
                 "log: {level: warn, format: json}", "reload: {watch: false}"]
        if isinstance(listen, list):
            lines.append("listen: [%s]" % ", ".join('"%s"' % a for a in listen))
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n" + extra)
        cmd = [os.path.join(build, "moonwire"), "serve", "-c", cfg]
        if listen is None:
            cmd += ["--listen", "127.0.0.1:0"]
        if cpus is not None:
            cmd = ["taskset", "-c", cpus] + cmd
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=e, text=True)
        self.lines = []
        self.cond = threading.Condition()
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError("%s did not start (%s): %s\n%s"
                               % (name, " ".join(cmd), line, self.proc.stderr.read()))
        self.target = line[len("listening on "):].strip()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def wait_record(self, pred, timeout=10.0):
        """The first JSON log record for which pred holds, waiting for it."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if pred(rec):
                        return rec
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("%s: no such log record within %.0f s; log:\n%s"
                                       % (self.name, timeout, "".join(self.lines[-20:])))
                self.cond.wait(left)

    def forget(self):
        """Drops the log read so far (later waits see only what follows)."""
        with self.cond:
            self.lines.clear()

    def cpu_s(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def rss_bytes(self):
        with open("/proc/%d/statm" % self.proc.pid) as f:
            return int(f.read().split()[1]) * PAGE

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited (status %s):\n%s"
                               % (self.name, self.proc.returncode, "".join(self.lines[-20:])))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def load(args, target, conc, servers):
    """One mwload unary run at conc calls in flight; the CPU each of servers
    spent over it, per call completed, in microseconds."""
    before = [s.cpu_s() for s in servers]
    r = run.mwload(args.build_dir, "unary", target, args.seconds,
                   ["--streams", str(conc), "--payload", "16", "--warmup", str(args.warmup)])
    after = [s.cpu_s() for s in servers]
    calls = r["calls_completed"]
    r["server_cpu_us"] = [(b - a) * 1e6 / calls for a, b in zip(before, after)]
    for s in servers:
        s.check_alive()
    return r


def throughput(args, direct, gateway, backend):
    rows = []
    for conc in args.concurrency:
        a_runs, b_runs = [], []
        for i in range(args.runs):  # interleaved, so drift hits both alike
            a_runs.append(load(args, direct.target, conc, [direct]))
            b_runs.append(load(args, gateway.target, conc, [gateway, backend]))
            log("  concurrency %3d, run %d: direct %8.0f calls/s, via the gateway %8.0f calls/s"
                % (conc, i + 1, a_runs[-1]["calls_per_s"], b_runs[-1]["calls_per_s"]))
        med = lambda runs, f: statistics.median(f(r) for r in runs)  # noqa: E731
        row = {
            "concurrency": conc,
            "direct_calls_per_s": med(a_runs, lambda r: r["calls_per_s"]),
            "gateway_calls_per_s": med(b_runs, lambda r: r["calls_per_s"]),
            "direct_p50_us": med(a_runs, lambda r: r["p50_us"]),
            "gateway_p50_us": med(b_runs, lambda r: r["p50_us"]),
            "direct_cpu_us": med(a_runs, lambda r: r["server_cpu_us"][0]),
            "gateway_cpu_us": med(b_runs, lambda r: r["server_cpu_us"][0]),
            "backend_cpu_us": med(b_runs, lambda r: r["server_cpu_us"][1]),
            "runs": {"direct": a_runs, "gateway": b_runs},
        }
        row["ratio"] = row["gateway_calls_per_s"] / row["direct_calls_per_s"]
        # The same ratio from CPU: what (b)/(a) would be with each server the
        # limit on a core of its own; steadier than calls/s on a shared
        # machine, where other work takes the cores at times.
        row["cpu_ratio"] = row["direct_cpu_us"] / row["gateway_cpu_us"]
        row["spread"] = {k: [min(r["calls_per_s"] for r in v), max(r["calls_per_s"] for r in v)]
                         for k, v in (("direct", a_runs), ("gateway", b_runs))}
        row["overhead_cpu_us"] = row["gateway_cpu_us"] - row["direct_cpu_us"]
        # The share of its core the gateway used: near 100 % when it was the
        # limit, lower when core 1 (backend and mwload) was.
        row["gateway_core_pct"] = row["gateway_cpu_us"] * row["gateway_calls_per_s"] / 1e4
        rows.append(row)
    return rows


def free_ports(n):
    """n distinct free ports (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def unary(channel):
    return channel.unary_unary("/bench.Echo/Unary", request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)


def channel_memory(args, tmp, gw_dir):
    """RSS per idle cached channel of a fresh gateway, from N distinct
    targets called once each."""
    n = args.channels
    ports = free_ports(n + 1)
    echo = Moonwire(args.build_dir, tmp, "multi-echo", [ECHO_DIR],
                    listen=["127.0.0.1:%d" % p for p in ports])
    gw = None
    try:
        gw = Moonwire(args.build_dir, tmp, "channels-gateway", [gw_dir],
                      extra='client: {allow: ["127.0.0.1:*"]}\n',
                      env={"BENCH_BACKEND": "127.0.0.1:%d" % ports[0]})
        with grpc.insecure_channel(gw.target) as ch:
            call = unary(ch)
            # The first call loads what every call needs (the client's Lua,
            # core's client side); the baseline is taken after it.
            for _ in range(20):
                call(encode_msg(b"127.0.0.1:%d" % ports[0]), timeout=10)
            time.sleep(0.3)
            rss0, fds0 = gw.rss_bytes(), gw.fds()
            for p in ports[1:]:
                call(encode_msg(b"127.0.0.1:%d" % p), timeout=10)
            time.sleep(0.5)
            rss1, fds1 = gw.rss_bytes(), gw.fds()
            gw.check_alive()
        return {"channels": n, "rss_before": rss0, "rss_after": rss1,
                "bytes_per_channel": (rss1 - rss0) / n, "fds_added": fds1 - fds0}
    finally:
        if gw:
            gw.stop()
        echo.stop()


def cancellation(args, tmp, gateway):
    """Median time from a client's cancel to the slow backend's on_cancel,
    through the gateway and directly."""
    slow_dir = os.path.join(tmp, "slow")
    os.makedirs(slow_dir, exist_ok=True)
    with open(os.path.join(slow_dir, "slow.lua"), "w") as f:
        f.write(SLOW_LUA)
    slow = Moonwire(args.build_dir, tmp, "slow", [slow_dir])
    out = {"gateway": [], "direct": [], "to_gateway": [], "gateway_to_backend": []}
    try:
        with grpc.insecure_channel(gateway.target) as gch, \
                grpc.insecure_channel(slow.target) as sch:
            via, direct = unary(gch), unary(sch)
            for _ in range(2):  # connections up (gateway -> slow included)
                for call, text in ((via, slow.target.encode()), (direct, b"")):
                    f = call.future(encode_msg(text, 10 ** 9), timeout=5)
                    slow.wait_record(lambda r: r.get("msg") == "started" and
                                     str(r.get("id")) == str(10 ** 9))
                    f.cancel()
                    slow.wait_record(lambda r: r.get("msg") == "cancelled" and
                                     str(r.get("id")) == str(10 ** 9))
                    slow.forget()
            for i in range(1, args.cancels + 1):
                for key, call, text in (("gateway", via, slow.target.encode()),
                                        ("direct", direct, b"")):
                    cid = i * 2 + (key == "direct")
                    f = call.future(encode_msg(text, cid), timeout=60)
                    slow.wait_record(lambda r: r.get("msg") == "started" and
                                     str(r.get("id")) == str(cid))
                    time.sleep(0.02)  # the gateway is waiting on its child
                    t = time.time()
                    f.cancel()
                    rec = slow.wait_record(lambda r: r.get("msg") == "cancelled" and
                                           str(r.get("id")) == str(cid))
                    at = float(rec["at"])
                    out[key].append((at - t) * 1e6)
                    if key == "gateway":
                        # where the time went: client -> the gateway's
                        # ctx:on_cancel -> the backend's
                        g = gateway.wait_record(lambda r: r.get("msg") == "parent cancelled"
                                                and str(r.get("id")) == str(cid))
                        out["to_gateway"].append((float(g["at"]) - t) * 1e6)
                        out["gateway_to_backend"].append((at - float(g["at"])) * 1e6)
        slow.check_alive()
    finally:
        slow.stop()
    res = {}
    for key, v in out.items():
        res[key] = {"median_us": statistics.median(v), "min_us": min(v), "max_us": max(v),
                    "tries": len(v)}
    res["added_by_gateway_us"] = res["gateway"]["median_us"] - res["direct"]["median_us"]
    return res


def report(rows, mem, cancel, args):
    out = ["Outbound calls (tests/bench/client_bench.py, %s): one worker per server; the "
           "server under test on core %s, the gateway's backend and mwload on core %s; "
           "%d run(s) of %g s per figure (after %g s of warm-up), medians; 16-byte payloads."
           % (time.strftime("%Y-%m-%d"), GATEWAY_CPU, BACKEND_CPU, args.runs, args.seconds,
              args.warmup), "",
           "| calls in flight | (a) direct, calls/s | (b) via the gateway, calls/s | (b)/(a) "
           "| (b)/(a) from CPU | p50 (a) / (b), us | CPU per call: direct (a) / gateway (b) "
           "/ its backend, us | outbound call, gateway CPU us | gateway's core busy |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append("| %d | %s | %s | %.2f | %.2f | %.0f / %.0f | %.1f / %.1f / %.1f | %.1f "
                   "| %.0f %% |"
                   % (r["concurrency"], run.fmt(r["direct_calls_per_s"]),
                      run.fmt(r["gateway_calls_per_s"]), r["ratio"], r["cpu_ratio"],
                      r["direct_p50_us"], r["gateway_p50_us"], r["direct_cpu_us"],
                      r["gateway_cpu_us"], r["backend_cpu_us"], r["overhead_cpu_us"],
                      r["gateway_core_pct"]))
    out += ["", "calls/s, lowest and highest run: " + "; ".join(
        "%d in flight: direct %s-%s, via the gateway %s-%s"
        % (r["concurrency"], run.fmt(r["spread"]["direct"][0]), run.fmt(r["spread"]["direct"][1]),
           run.fmt(r["spread"]["gateway"][0]), run.fmt(r["spread"]["gateway"][1]))
        for r in rows) + "."]
    out += ["", "Memory per idle cached channel: %d targets called once each: RSS %.1f -> "
            "%.1f MiB, %.1f KiB per channel; %d file descriptors added (one connection "
            "per channel)." % (mem["channels"], mem["rss_before"] / 2 ** 20,
                               mem["rss_after"] / 2 ** 20, mem["bytes_per_channel"] / 1024,
                               mem["fds_added"]),
            "",
            "Cancellation, client cancel -> the slow backend's ctx:on_cancel (%d tries each, "
            "median [min, max]): through the gateway %.0f us [%.0f, %.0f]; directly %.0f us "
            "[%.0f, %.0f]; the gateway hop adds %.0f us. Through the gateway: client -> "
            "the gateway's ctx:on_cancel %.0f us, the gateway's ctx:on_cancel -> the "
            "backend's %.0f us."
            % (cancel["gateway"]["tries"], cancel["gateway"]["median_us"],
               cancel["gateway"]["min_us"], cancel["gateway"]["max_us"],
               cancel["direct"]["median_us"], cancel["direct"]["min_us"],
               cancel["direct"]["max_us"], cancel["added_by_gateway_us"],
               cancel["to_gateway"]["median_us"], cancel["gateway_to_backend"]["median_us"])]
    return "\n".join(out) + "\n"


def sanity(rows, mem, cancel):
    """What the smoke run checks: every part ran and its figures are
    figures (not how large they are: this is not a timed test)."""
    problems = []
    for r in rows:
        if not (r["direct_calls_per_s"] > 0 and r["gateway_calls_per_s"] > 0):
            problems.append("no calls at concurrency %d" % r["concurrency"])
        if not r["gateway_cpu_us"] > 0 or not r["backend_cpu_us"] > 0:
            problems.append("no server CPU counted at concurrency %d" % r["concurrency"])
    if mem["fds_added"] < mem["channels"]:
        problems.append("%d channels opened only %d connections"
                        % (mem["channels"], mem["fds_added"]))
    for key in ("gateway", "direct"):
        if not cancel[key]["median_us"] > 0:
            problems.append("cancellation %s: %r" % (key, cancel[key]))
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(run.ROOT, "build"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--channels", type=int, default=50)
    ap.add_argument("--cancels", type=int, default=20)
    ap.add_argument("--json", default=None, help="write the raw results here too")
    ap.add_argument("--smoke", action="store_true",
                    help="briefly, to check that the script works (ctest runs it)")
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    if args.smoke:
        args.runs, args.seconds, args.warmup = 1, 0.5, 0.2
        args.concurrency, args.channels, args.cancels = "1,16", 5, 3
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    if args.channels >= 64:
        sys.exit("client_bench.py: --channels must stay below client.max_channels (64)")
    if not shutil.which("taskset"):
        sys.exit("client_bench.py: taskset is missing (util-linux)")

    tmp = tempfile.mkdtemp(prefix="mw-client-bench-")
    gw_dir = os.path.join(tmp, "gateway")
    os.makedirs(gw_dir)
    with open(os.path.join(gw_dir, "gateway.lua"), "w") as f:
        f.write(GATEWAY_LUA)
    servers = []
    try:
        direct = Moonwire(args.build_dir, tmp, "direct", [ECHO_DIR], cpus=GATEWAY_CPU)
        servers.append(direct)
        backend = Moonwire(args.build_dir, tmp, "backend", [ECHO_DIR], cpus=BACKEND_CPU)
        servers.append(backend)
        gateway = Moonwire(args.build_dir, tmp, "gateway", [gw_dir], cpus=GATEWAY_CPU,
                           extra='client: {allow: ["127.0.0.1:*"]}\n',
                           env={"BENCH_BACKEND": backend.target})
        servers.append(gateway)
        log("unary calls, direct and through the gateway")
        rows = throughput(args, direct, gateway, backend)
        log("memory per idle cached channel (%d targets)" % args.channels)
        mem = channel_memory(args, tmp, gw_dir)
        log("parent to child cancellation (%d tries each)" % args.cancels)
        cancel = cancellation(args, tmp, gateway)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    text = report(rows, mem, cancel, args)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"throughput": rows, "channel_memory": mem, "cancellation": cancel},
                      f, indent=1)
    problems = sanity(rows, mem, cancel)
    if problems:
        sys.exit("client_bench.py: " + "; ".join(problems))


if __name__ == "__main__":
    main()
