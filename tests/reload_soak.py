#!/usr/bin/python3
"""Reload soak: hot reloads under steady load. A measurement, not a ctest test.

    /usr/bin/python3 tests/reload_soak.py --binary build/moonwire

Serves a temp copy of examples/helloworld with workers: 2, keeps a steady
load of unary calls going from a few client threads, and then

  1. saves greeter.lua 20 times, each time with a new version in the reply,
     and lets the file watcher reload it. A poller thread calling every few
     milliseconds measures the time from the save to the first reply that
     shows the new version;
  2. sends 200 SIGHUPs, one at a time (each waits for its "reloaded" log
     line), and reads the server's RSS before and after.

Every call is checked; the script exits 1 when a call failed, a reload was
not seen, or the server died. Everything is bounded in count and time.
"""

import argparse
import os
import shutil
import signal
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "e2e"))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "build", "moonwire"),
                    help="the moonwire binary (default: build/moonwire)")
    ap.add_argument("--threads", type=int, default=4, help="load threads (default 4)")
    ap.add_argument("--rate", type=float, default=100.0,
                    help="calls/s per load thread (default 100)")
    ap.add_argument("--file-reloads", type=int, default=20)
    ap.add_argument("--sighup-reloads", type=int, default=200)
    ap.add_argument("--max-seconds", type=float, default=240.0,
                    help="give up after this long (default 240)")
    return ap.parse_args()


ARGS = parse_args()
os.environ["MOONWIRE_BIN"] = os.path.abspath(ARGS.binary)

import grpc  # noqa: E402

import mwtest  # noqa: E402
from mwtest import Protos, Server  # noqa: E402

GREETER = """
local mw = require "moonwire"

local Greeter = mw.service "helloworld.Greeter"

function Greeter.SayHello(req, ctx)
  return {message = "@VERSION@|Hello " .. req.name}
end

return Greeter
"""

METHOD = "/helloworld.Greeter/SayHello"


def greeter(version):
    return GREETER.replace("@VERSION@", version)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0
        self.failed = 0
        self.errors = []  # the first few failures, for the report

    def ok(self):
        with self.lock:
            self.calls += 1

    def fail(self, what):
        with self.lock:
            self.calls += 1
            self.failed += 1
            if len(self.errors) < 10:
                self.errors.append(what)


def check_reply(reply, name):
    version, sep, rest = reply.message.partition("|")
    if not sep or not version.startswith("v") or rest != "Hello " + name:
        return None
    return version


def load_thread(idx, server, protos, stats, stop):
    """Calls at a steady rate until stop; checks every reply."""
    ch = server.channel(options=[("grpc.use_local_subchannel_pool", 1)])
    call = protos.unary(ch, METHOD)
    Req = protos.msg("helloworld.HelloRequest")
    period = 1.0 / ARGS.rate
    nxt = time.monotonic()
    i = 0
    while not stop.is_set():
        name = "t%d-%d" % (idx, i)
        i += 1
        try:
            r = call(Req(name=name), timeout=10)
            if check_reply(r, name) is None:
                stats.fail("bad reply %r to %s" % (r.message, name))
            else:
                stats.ok()
        except grpc.RpcError as e:
            stats.fail("%s: %s %s" % (name, e.code(), e.details()))
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            nxt = time.monotonic()  # behind: do not burst to catch up


class Poller:
    """Calls every ~2 ms and records when each version is first seen."""

    def __init__(self, server, protos, stats, stop):
        self.ch = server.channel(options=[("grpc.use_local_subchannel_pool", 1)])
        self.call = protos.unary(self.ch, METHOD)
        self.Req = protos.msg("helloworld.HelloRequest")
        self.stats = stats
        self.stop = stop
        self.first_seen = {}  # version -> monotonic time of the first reply
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop.is_set():
            name = "poll-%d" % i
            i += 1
            try:
                r = self.call(self.Req(name=name), timeout=10)
                now = time.monotonic()
                v = check_reply(r, name)
                if v is None:
                    self.stats.fail("bad reply %r to %s" % (r.message, name))
                else:
                    self.stats.ok()
                    with self.cond:
                        if v not in self.first_seen:
                            self.first_seen[v] = now
                            self.cond.notify_all()
            except grpc.RpcError as e:
                self.stats.fail("%s: %s %s" % (name, e.code(), e.details()))
            self.stop.wait(0.002)

    def wait_for(self, version, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while version not in self.first_seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.first_seen[version]


def count_lines(server, text):
    return sum(1 for line in server.logs().splitlines() if text in line)


def main():
    if not os.access(os.environ["MOONWIRE_BIN"], os.X_OK):
        sys.exit("no moonwire binary at %s (--binary)" % os.environ["MOONWIRE_BIN"])
    started = time.monotonic()
    deadline = started + ARGS.max_seconds
    problems = []

    svc = mwtest.ServiceDir(prefix="mw-soak-")
    shutil.copy(os.path.join(mwtest.example("helloworld"), "helloworld.proto"), svc.path)
    svc.write("greeter.lua", greeter("v0"))
    protos = Protos(svc)
    server = Server(svc, config="workers: 2\n")
    stats = Stats()
    stop = threading.Event()
    threads = []
    try:
        server.start()
        rss_start = rss_kib(server.pid)
        poller = Poller(server, protos, stats, stop)
        poller.thread.start()
        for i in range(ARGS.threads):
            t = threading.Thread(target=load_thread, args=(i, server, protos, stats, stop),
                                 daemon=True)
            t.start()
            threads.append(t)
        if poller.wait_for("v0", 10) is None:
            raise SystemExit("the server never answered\n" + server.logs())
        time.sleep(1.0)  # let the load settle

        # -- 1. file saves picked up by the watcher --
        latencies = []
        t_load0, calls0 = time.monotonic(), stats.calls
        for k in range(1, ARGS.file_reloads + 1):
            if time.monotonic() > deadline:
                problems.append("out of time after %d file reloads" % (k - 1))
                break
            version = "v%d" % k
            svc.write("greeter.lua", greeter(version))
            saved = time.monotonic()
            seen = poller.wait_for(version, 10)
            if seen is None:
                problems.append("%s: not served within 10 s of the save" % version)
                continue
            latencies.append((seen - saved) * 1000)
            time.sleep(0.3)  # a quiet gap: each save is its own reload
        file_phase_s = time.monotonic() - t_load0
        file_phase_calls = stats.calls - calls0
        n_file_reloaded = count_lines(server, "reloaded (")

        # -- 2. SIGHUP reloads, RSS before and after --
        time.sleep(1.0)
        rss_before = rss_kib(server.pid)
        rss_after20 = None
        t_hup0, calls_hup0 = time.monotonic(), stats.calls
        hups = 0
        base = count_lines(server, "reloaded (SIGHUP)")
        for i in range(1, ARGS.sighup_reloads + 1):
            if time.monotonic() > deadline:
                problems.append("out of time after %d SIGHUP reloads" % (i - 1))
                break
            os.kill(server.pid, signal.SIGHUP)
            limit = time.monotonic() + 10
            while count_lines(server, "reloaded (SIGHUP)") < base + i and time.monotonic() < limit:
                time.sleep(0.005)
            if count_lines(server, "reloaded (SIGHUP)") < base + i:
                problems.append("SIGHUP %d: no 'reloaded' line within 10 s" % i)
                break
            hups += 1
            if i == 20:
                rss_after20 = rss_kib(server.pid)
        hup_phase_s = time.monotonic() - t_hup0
        hup_phase_calls = stats.calls - calls_hup0
        time.sleep(1.0)  # settle, with the load still going
        rss_after = rss_kib(server.pid)

        stop.set()
        for t in threads + [poller.thread]:
            t.join(15)
        total_s = time.monotonic() - started
        alive = server.alive()
        if not alive:
            server.kill()
            rc = server.returncode
            tail = server.logs().splitlines()[-15:]
            problems.append("the server died (exit status %s); its last log lines:\n    %s"
                            % (rc, "\n    ".join(tail)))
        n_fail_logged = count_lines(server, "failed; still serving")
    finally:
        stop.set()
        server.close()
        svc.cleanup()

    if stats.failed:
        problems.append("%d failed call(s)" % stats.failed)
    if n_fail_logged:
        problems.append("%d failed reload(s) in the log" % n_fail_logged)

    def row(k, v):
        print("  %-50s %s" % (k, v))

    print("reload soak: moonwire %s, workers 2, %d load threads at %.0f calls/s each + poller"
          % (os.environ["MOONWIRE_BIN"], ARGS.threads, ARGS.rate))
    print("  " + "-" * 72)
    row("total calls", stats.calls)
    row("failed calls", stats.failed)
    row("load during file reloads (calls/s, incl. poller)", "%.0f" % (file_phase_calls / file_phase_s))
    row("file-save reloads (seen / made)", "%d / %d" % (len(latencies), ARGS.file_reloads))
    row("'reloaded' log lines after the saves", n_file_reloaded)
    if latencies:
        row("save -> first new reply, median (ms)", "%.0f" % statistics.median(latencies))
        row("save -> first new reply, max (ms)", "%.0f" % max(latencies))
        row("save -> first new reply, min (ms)", "%.0f" % min(latencies))
    row("SIGHUP reloads done", "%d in %.1f s (%.1f ms each)"
        % (hups, hup_phase_s, hup_phase_s * 1000 / max(hups, 1)))
    row("load during SIGHUP reloads (calls/s)", "%.0f" % (hup_phase_calls / max(hup_phase_s, 1e-9)))
    row("RSS at start (MiB)", "%.1f" % (rss_start / 1024))
    row("RSS before the SIGHUP reloads (MiB)", "%.1f" % (rss_before / 1024))
    if rss_after20 is not None:
        row("RSS after 20 SIGHUP reloads (MiB)", "%.1f" % (rss_after20 / 1024))
    row("RSS after %d SIGHUP reloads (MiB)" % hups, "%.1f" % (rss_after / 1024))
    row("RSS growth over the SIGHUP reloads (MiB)", "%+.1f" % ((rss_after - rss_before) / 1024))
    row("wall time (s)", "%.1f" % total_s)
    print("  " + "-" * 72)
    for e in stats.errors:
        print("  call failure: " + e)
    if problems:
        print("FAIL:\n  " + "\n  ".join(problems))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
