#!/usr/bin/env python3
"""Stream session benchmark: broadcast fan-out on one instance.

  tests/bench/sessions/bench.py [--build-dir build] [--streams 1000]
                                [--messages 200] [--workers 2] [--smoke]
                                [--redis redis://127.0.0.1:6379/0]

Runs moonwire serve on this directory's service (sbench.proto, sbench.lua)
and measures:

  fan-out     sess_sub (C, on gRPC core) opens --streams Watch streams
              joined to one topic; one unary Publish sends --messages
              publications as fast as policy block lets it (the publisher
              waits for the slowest queue): deliveries per second over all
              streams, and the latency from publish to receipt (p50, p99);
  paced       the same at --paced-rate publications per second: the
              latency when the server is not saturated;
  resume      --resumes reconnects, each with an offset picked at random
              (inside the history, past it, or in the future) and the right
              or a wrong epoch: whether each was recovered exactly when it
              should be, and got exactly the publications it missed;
  memory      the server's RSS with --streams streams held open without
              joining and then joined: the session's own cost per stream,
              and the whole cost of an open, joined stream.

Prints a table and one JSON object (the figures in docs/performance.md).
--smoke: small counts, every delivery checked (ctest bench.sessions_smoke).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import grpc  # noqa: E402

from mwtest import Protos  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")

CONFIG = """
services: [{here}]
workers: {workers}
log: {{level: warn}}
reload: {{watch: false}}
limits: {{handler_cpu_ms: 600000}}
sessions:
  bench: {{message: sbench.Ev, buffer: 256, policy: block}}
  hist: {{message: sbench.Ev, offset_field: offset, history: {{size: 100, ttl: 10m}}}}
"""

# --redis URL: the same rooms on Redis (keys under a prefix of this run's).
# A publisher never waits for a queue there, so the fan-out room's queues
# are deep enough for every publication of a run.
CONFIG_REDIS = """
services: [{here}]
workers: {workers}
log: {{level: warn}}
reload: {{watch: false}}
limits: {{handler_cpu_ms: 600000}}
sessions:
  bench: {{message: sbench.Ev, buffer: 100000, policy: close, redis: "{redis}",
          prefix: "sbench:{run}:b:"}}
  hist: {{message: sbench.Ev, offset_field: offset, history: {{size: 100, ttl: 10m}},
         redis: "{redis}", prefix: "sbench:{run}:h:"}}
"""
REDIS = None  # set by --redis


class Server:
    def __init__(self, build, workers, tmp):
        cfg = os.path.join(tmp, "moonwire.yaml")
        with open(cfg, "w") as f:
            if REDIS:
                f.write(CONFIG_REDIS.format(here=HERE, workers=workers, redis=REDIS,
                                            run="%x" % random.getrandbits(40)))
            else:
                f.write(CONFIG.format(here=HERE, workers=workers))
        self.proc = subprocess.Popen(
            [os.path.join(build, "moonwire"), "serve", "-c", cfg, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError("moonwire did not start: %s %s" % (line, self.proc.stderr.read()))
        self.target = line[len("listening on "):].strip()

    def rss(self):
        with open("/proc/%d/statm" % self.proc.pid) as f:
            return int(f.read().split()[1]) * PAGE

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Subscribers:
    """sess_sub running, its streams joined (or only held open)."""

    def __init__(self, build, target, streams, expect, topic, timeout=120):
        self.proc = subprocess.Popen(
            [os.path.join(build, "bench", "sess_sub"), "--target", target, "--streams",
             str(streams), "--expect", str(expect), "--topic", topic,
             "--channels", str(max(1, min(16, streams // 50))), "--threads", "2",
             "--timeout", str(timeout)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = json.loads(self.proc.stdout.readline() or "{}")
        if ready.get("ready") != streams:
            self.proc.kill()
            raise RuntimeError("sess_sub: %s %s" % (ready, self.proc.stderr.read()))

    def result(self):
        out, err = self.proc.communicate(timeout=300)
        if self.proc.returncode != 0:
            raise RuntimeError("sess_sub failed (%d): %s %s" % (self.proc.returncode, out, err))
        return json.loads(out.strip().splitlines()[-1])


def fanout(args, srv, protos, n, batch=0, pause=0.0, topic="bench"):
    subs = Subscribers(args.build_dir, srv.target, args.streams, n, topic)
    pub = protos.unary(grpc.insecure_channel(srv.target), "/sbench.Room/Publish")
    r = pub(protos.msg("sbench.Pub")(topic=topic, n=n, size=args.size, batch=batch,
                                     pause=pause), timeout=300)
    res = subs.result()
    res["joined"] = r.joined
    res["publish_seconds"] = r.seconds
    if res["delivered"] != args.streams * n or res["out_of_order"] or res["missing"]:
        raise RuntimeError("fan-out lost or reordered deliveries: %s" % res)
    return res


def rss_per_stream(args, srv, protos, hold):
    ch = [grpc.insecure_channel(srv.target, options=[("grpc.use_local_subchannel_pool", 1)])
          for _ in range(max(1, args.mem_streams // 100))]
    watch = [protos.server_stream(c, "/sbench.Room/Watch") for c in ch]
    Join = protos.msg("sbench.Join")
    time.sleep(0.3)
    before = srv.rss()
    streams = []
    for i in range(args.mem_streams):
        st = watch[i % len(watch)](Join(topic="mem", hold=hold), timeout=120)
        next(st)
        streams.append(st)
    time.sleep(0.5)
    after = srv.rss()
    for st in streams:
        st.cancel()
    for c in ch:
        c.close()
    time.sleep(0.5)
    return (after - before) / args.mem_streams


def resume(args, srv, protos):
    """Counts of resumes that were recovered exactly when they should be."""
    ch = grpc.insecure_channel(srv.target)
    watch = protos.server_stream(ch, "/sbench.Room/Watch")
    pub = protos.unary(ch, "/sbench.Room/Publish")
    Join, Pub = protos.msg("sbench.Join"), protos.msg("sbench.Pub")
    keep = watch(Join(topic="r", room="hist"), timeout=600)
    first = next(keep)
    epoch = first.epoch
    pub(Pub(topic="r", room="hist", n=args.resume_history, size=0), timeout=60)
    top = first.top + args.resume_history
    rnd = random.Random(7)
    counts = {"resumes": 0, "recovered": 0, "told_to_reload": 0, "wrong": 0,
              "replayed": 0}
    for _ in range(args.resumes):
        good_epoch = rnd.random() < 0.8
        off = rnd.randint(max(0, top - 150), top + 5)
        st = watch(Join(topic="r", room="hist", resume=True, offset=off,
                        epoch=epoch if good_epoch else "0123456789abcdef"), timeout=30)
        j = next(st)
        should = good_epoch and top - 100 <= off <= top
        counts["resumes"] += 1
        ok = j.recovered == should
        if j.recovered:
            got = [next(st).offset for _ in range(j.replayed)]
            ok = ok and got == list(range(off + 1, top + 1))
            counts["recovered"] += 1
            counts["replayed"] += j.replayed
        else:
            counts["told_to_reload"] += 1
            ok = ok and j.replayed == 0
        counts["wrong"] += not ok
        st.cancel()
    keep.cancel()
    ch.close()
    if counts["wrong"]:
        raise RuntimeError("resume: %s" % counts)
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--size", type=int, default=64, help="padding bytes per message")
    ap.add_argument("--paced-rate", type=float, default=100,
                    help="publications per second of the paced run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--resumes", type=int, default=500)
    ap.add_argument("--resume-history", type=int, default=300)
    ap.add_argument("--mem-streams", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--redis", help="the rooms on this Redis (redis://HOST:PORT/DB)")
    args = ap.parse_args()
    global REDIS
    REDIS = args.redis
    if args.smoke:
        args.streams, args.messages, args.resumes, args.mem_streams = 50, 50, 40, 100
    protos = Protos(HERE)
    with tempfile.TemporaryDirectory(prefix="mw-sbench-") as tmp:
        srv = Server(args.build_dir, args.workers, tmp)
        try:
            fanout(args, srv, protos, min(20, args.messages), topic="warmup")
            sat = fanout(args, srv, protos, args.messages)
            per = 1.0 / args.paced_rate
            paced_n = max(10, min(args.messages, int(args.paced_rate * 2)))
            paced = fanout(args, srv, protos, paced_n, batch=1, pause=per, topic="paced")
            counts = resume(args, srv, protos)
        finally:
            srv.stop()
        # each on a fresh server, so that neither reuses what the other grew
        mem = {}
        for hold in (True, False):
            srv = Server(args.build_dir, args.workers, tmp)
            try:
                mem[hold] = rss_per_stream(args, srv, protos, hold=hold)
            finally:
                srv.stop()
        held, joined = mem[True], mem[False]
    out = {"streams": args.streams, "workers": args.workers, "messages": args.messages,
           "size": args.size,
           "fanout_deliveries_per_s": sat["rate"], "fanout_p50_us": sat["p50_us"],
           "fanout_p99_us": sat["p99_us"],
           "paced_rate": args.paced_rate, "paced_p50_us": paced["p50_us"],
           "paced_p99_us": paced["p99_us"], "resume": counts,
           "rss_per_open_stream_bytes": round(held),
           "rss_per_joined_stream_bytes": round(joined),
           "session_bytes_per_stream": round(joined - held)}
    print("fan-out to %d streams (%d workers): %.0f deliveries/s, p50 %.0f us, p99 %.0f us"
          % (args.streams, args.workers, sat["rate"], sat["p50_us"], sat["p99_us"]))
    print("paced at %.0f publications/s: p50 %.0f us, p99 %.0f us"
          % (args.paced_rate, paced["p50_us"], paced["p99_us"]))
    print("resume: %(resumes)d reconnects, %(recovered)d recovered (%(replayed)d publications "
          "replayed), %(told_to_reload)d told to reload, %(wrong)d wrong" % counts)
    print("memory: %.0f bytes per open stream, %.0f per joined stream (the session's own: %.0f)"
          % (held, joined, joined - held))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
