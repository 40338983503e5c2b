#!/usr/bin/env python3
"""What the web protocols cost per unary call, on Moonwire and on a peer that
does the same job: examples/helloworld's SayHello ("Hello " + name), called
by one load tool, h2load (nghttp2-client), as

  grpc          gRPC over h2c straight to the gRPC listener (Moonwire only:
                the baseline every other mode is a loopback call into)
  connect       Connect unary, application/proto, h2c
  connect-json  Connect unary, application/json, h2c
  connect-h1    Connect unary, application/proto, HTTP/1.1 (one request per
                connection at a time)
  grpc-web      gRPC-Web binary, h2c
  rest-json     POST /v1/hello with a JSON body, through an `http.rules`
                binding in the generated config (Moonwire only: the peer has
                no transcoding)

against Moonwire (one worker, its HTTP listener) and against
@connectrpc/connect-node serving the same method from a run-time
FileDescriptorSet (tests/bench/peers/connect/server.cjs), at 1 and 16 calls
in flight, every mode on both servers interleaved and repeated (--rounds).
Each server is pinned to core 0 (taskset), h2load to core 1. For each:
calls/s and the server's CPU per call (utime + stime of every thread, from
/proc, over the run, divided by the calls made: steadier than calls/s on a
shared machine), as medians with the spread (lowest-highest) of the rounds,
and the ratios Moonwire / connect-node and, on Moonwire, each mode's CPU per
call over gRPC's, taken round by round.

Before any load, every mode on both servers is called once and its answer
checked (status, content type, "Hello world" in the body, grpc-status 0);
h2load counts only HTTP statuses.

usage: tests/bench/web_bench.py [--build-dir build] [--calls 10000] [--rounds 3]
                                [--json FILE] [--out docs/benchmarks.md] [--smoke]
--out: writes the table as the section SECTION of that file (replacing the
section if the file has it, else appended: run.py writes the rest of
docs/benchmarks.md, so `make bench` runs it first).
--smoke: a few hundred calls per mode, one round, the answers checked: the
harness works (a ctest).
"""
import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
NODE_MODULES = os.path.join(SRC, "tests", "tools", "node_modules")
SERVER_CPU = "0"
LOAD_CPU = "1"
MSG = b"\x0a\x05world"  # HelloRequest{name: "world"}
FRAMED = b"\x00" + len(MSG).to_bytes(4, "big") + MSG
JSON_MSG = b'{"name":"world"}'
REPLY = b"\x0a\x0bHello world"  # HelloReply{message: "Hello world"}
SECTION = "## Web protocols against connect-node (unary)"
TICK = os.sysconf("SC_CLK_TCK")
PATH = "/helloworld.Greeter/SayHello"
REST_PATH = "/v1/hello"

# name -> (listener: "grpc" or "http", path, body, request headers, HTTP/1.1?)
MODES = {
    "grpc": ("grpc", PATH, "framed", ["content-type: application/grpc", "te: trailers"], False),
    "connect": ("http", PATH, "raw", ["content-type: application/proto"], False),
    "connect-json": ("http", PATH, "json", ["content-type: application/json"], False),
    "connect-h1": ("http", PATH, "raw", ["content-type: application/proto"], True),
    "grpc-web": ("http", PATH, "framed", ["content-type: application/grpc-web+proto"], False),
    "rest-json": ("http", REST_PATH, "json", ["content-type: application/json"], False),
}
SERVERS = {"moonwire": list(MODES),
           "connect-node": ["connect", "connect-json", "connect-h1", "grpc-web"]}
LABELS = {"grpc": "gRPC, direct", "connect": "Connect proto, h2c",
          "connect-json": "Connect JSON, h2c", "connect-h1": "Connect proto, HTTP/1.1",
          "grpc-web": "gRPC-Web, h2c", "rest-json": "REST JSON, h2c"}


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def h2load(url, body, headers, calls, inflight, h1):
    args = ["taskset", "-c", LOAD_CPU, "h2load", "-n", str(calls), "-d", body]
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
        sys.exit("h2load failed on %s:\n%s%s" % (url, r.stdout, r.stderr))
    return float(m.group(1))


def call_once(addr, path, body, headers, h1):
    """One request, its answer as (status, headers dict, body bytes)."""
    if h1:
        host, port = addr.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("POST", path, body, dict(h.split(": ", 1) for h in headers))
        r = c.getresponse()
        out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        c.close()
        return out
    # nghttp (nghttp2-client, as h2load): h2c with prior knowledge. -v prints
    # the frames (headers, trailers) mixed with the body on stdout, so the
    # headers come from a verbose call and the body from a quiet one.
    args = ["nghttp", "-d", "-", "-t", "10"]
    for h in headers:
        args += ["-H", h]
    v = subprocess.run(args + ["-v", "http://" + addr + path], input=body,
                       capture_output=True, timeout=20)
    q = subprocess.run(args + ["http://" + addr + path], input=body,
                       capture_output=True, timeout=20)
    if q.returncode != 0:
        return (0, {}, q.stderr)
    hdrs = {}
    for k, val in re.findall(rb"recv \(stream_id=\d+\) ([^:\s][^:]*|:status): (.*)",
                             v.stdout):
        hdrs[k.decode().lower()] = val.decode().strip()
    return (int(hdrs.get(":status", "0")), hdrs, q.stdout)


def check_answer(mode, status, hdrs, body):
    """None when the answer is right, else what is wrong."""
    if status != 200:
        return "HTTP status %d: %r" % (status, body[:200])
    ctype = hdrs.get("content-type", "")
    if mode == "grpc":
        want = b"\x00" + len(REPLY).to_bytes(4, "big") + REPLY
        if body != want or hdrs.get("grpc-status") != "0":
            return "grpc-status %s, body %r" % (hdrs.get("grpc-status"), body)
    elif mode in ("connect", "connect-h1"):
        if not ctype.startswith("application/proto") or body != REPLY:
            return "content-type %r, body %r" % (ctype, body)
    elif mode in ("connect-json", "rest-json"):
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not ctype.startswith("application/json") or doc != {"message": "Hello world"}:
            return "content-type %r, body %r" % (ctype, body)
    elif mode == "grpc-web":
        frame = b"\x00" + len(REPLY).to_bytes(4, "big") + REPLY
        trailers = body[len(frame) + 5:].lower()
        if (not ctype.startswith("application/grpc-web") or not body.startswith(frame)
                or body[len(frame):len(frame) + 1] != b"\x80"
                or b"grpc-status:0" not in trailers.replace(b" ", b"")):
            return "content-type %r, body %r" % (ctype, body)
    return None


def start(cmd, lines_wanted, env=None):
    """Starts a server pinned to SERVER_CPU; returns (process, {prefix: addr})."""
    p = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env=env)
    found = {}
    while len(found) < len(lines_wanted):
        line = p.stdout.readline()
        if not line:
            sys.exit("%s did not start" % cmd[0])
        for prefix in lines_wanted:
            if line.startswith(prefix):
                found[prefix] = line.split()[-1]
    return p, found


def spread(values, fmt):
    if len(values) == 1:
        return fmt % values[0]
    return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(values), min(values),
                                                   max(values))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(SRC, "build"))
    ap.add_argument("--calls", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write every run's figures here")
    ap.add_argument("--out", help="write the table as a section of this markdown file")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.calls, a.rounds = 300, 1
    for tool in ("h2load", "nghttp", "taskset", "protoc", "node"):
        if not shutil.which(tool):
            sys.exit("web_bench.py: %s not found (tests/bench/setup.sh installs it)" % tool)
    if not os.path.isfile(os.path.join(NODE_MODULES, "@connectrpc", "connect-node",
                                       "package.json")):
        sys.exit("web_bench.py: no @connectrpc/connect-node in %s; run tests/tools/setup.sh"
                 % NODE_MODULES)
    tmp = tempfile.mkdtemp(prefix="mw-webbench-")
    cfg = os.path.join(tmp, "c.yaml")
    with open(cfg, "w") as f:
        f.write("workers: 1\nreload: {watch: false}\n"
                "http:\n  rules:\n    - selector: helloworld.Greeter.SayHello\n"
                "      post: %s\n      body: \"*\"\n" % REST_PATH)
    desc = os.path.join(tmp, "helloworld.pb")
    hw = os.path.join(SRC, "examples", "helloworld")
    subprocess.run(["protoc", "-I" + hw, "--include_imports", "--descriptor_set_out=" + desc,
                    os.path.join(hw, "helloworld.proto")], check=True)
    bodies = {}
    for name, data in (("raw", MSG), ("framed", FRAMED), ("json", JSON_MSG)):
        bodies[name] = os.path.join(tmp, name)
        with open(bodies[name], "wb") as f:
            f.write(data)
    procs = []
    try:
        mw, mw_addr = start([os.path.join(a.build_dir, "moonwire"), "serve", "-c", cfg,
                             "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", hw],
                            ["listening on ", "http listening on "])
        procs.append(mw)
        env = dict(os.environ, NODE_PATH=NODE_MODULES)
        cn, cn_addr = start(["node", "--v8-pool-size=1",
                             os.path.join(HERE, "peers", "connect", "server.cjs"), "0", desc],
                            ["listening on "], env=env)
        procs.append(cn)
        servers = {
            "moonwire": (mw.pid, {"grpc": mw_addr["listening on "],
                                  "http": mw_addr["http listening on "]}),
            "connect-node": (cn.pid, {"http": cn_addr["listening on "]}),
        }
        runs = []  # (server, mode, url, body file, headers, h1)
        wrong = []
        for server, modes in SERVERS.items():
            pid, addrs = servers[server]
            for mode in modes:
                listener, path, body, hdrs, h1 = MODES[mode]
                with open(bodies[body], "rb") as f:
                    data = f.read()
                problem = check_answer(mode, *call_once(addrs[listener], path, data, hdrs, h1))
                if problem:
                    wrong.append("%s %s: %s" % (server, mode, problem))
                runs.append((server, mode, "http://%s%s" % (addrs[listener], path),
                             bodies[body], hdrs, h1))
        if wrong:
            sys.exit("wrong answers:\n  " + "\n  ".join(wrong))
        # warm up every path (V8's JIT most of all)
        for _, _, url, body, hdrs, h1 in runs:
            h2load(url, body, hdrs, min(a.calls, 3000), 4, h1)
        results = {}
        a.load = [os.getloadavg()[0]]
        for _ in range(a.rounds):
            for inflight in (1, 16):
                for server, mode, url, body, hdrs, h1 in runs:
                    pid = servers[server][0]
                    c0 = cpu_seconds(pid)
                    rate = h2load(url, body, hdrs, a.calls, inflight, h1)
                    cpu = (cpu_seconds(pid) - c0) / a.calls * 1e6
                    results.setdefault((server, mode, inflight), []).append((rate, cpu))
        a.load.append(os.getloadavg()[0])
        lines = report(results, a)
        print("\n".join(lines))
        if a.out:
            write_section(a.out, lines)
        if a.json:
            with open(a.json, "w") as f:
                json.dump([{"server": s, "mode": m, "inflight": i,
                            "runs": [{"calls_per_s": r, "cpu_us_per_call": c} for r, c in v]}
                           for (s, m, i), v in results.items()], f, indent=1)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)
        shutil.rmtree(tmp, ignore_errors=True)


def report(results, a):
    out = ["web_bench.py (`make bench-web`, part of `make bench`) on %s: examples/helloworld's "
           "SayHello, Moonwire with one worker (its HTTP listener, a REST binding from "
           "`http.rules`) against @connectrpc/connect-node 2.1.1 on Node %s "
           "(tests/bench/peers/connect/server.cjs), the same method from the same run-time "
           "descriptors. h2load, %d calls per run, every mode on both servers interleaved, "
           "%d round(s); each server pinned to core %s, h2load to core %s. At 16 in flight h2c "
           "runs 16 streams on one connection, HTTP/1.1 16 connections. CPU per call is the "
           "server's utime + stime (every thread) over a run divided by its calls. Figures are "
           "medians, lowest-highest in brackets; ratios are Moonwire's over connect-node's "
           "(or over Moonwire's own gRPC), taken round by round. Load average (1 min) %.1f "
           "at the start, %.1f at the end, on %d cores: above 2, other work shared the "
           "machine, so read calls/s by its spread and lean on CPU per call."
           % (time.strftime("%Y-%m-%d"), node_version(), a.calls, a.rounds, SERVER_CPU,
              LOAD_CPU, a.load[0], a.load[1], os.cpu_count()), "",
           "| mode | in flight | Moonwire calls/s | Moonwire CPU µs/call | connect-node calls/s "
           "| connect-node CPU µs/call | calls/s MW/CN | CPU per call MW/CN "
           "| MW CPU per call / gRPC's |",
           "|------|----------:|-----------------:|---------------------:|---------------------:"
           "|-------------------------:|--------------:|-------------------:"
           "|-------------------------:|"]
    for inflight in (1, 16):
        for mode in MODES:
            mw = results.get(("moonwire", mode, inflight))
            cn = results.get(("connect-node", mode, inflight))
            row = [LABELS[mode], str(inflight)]
            for runs in (mw, cn):
                if runs:
                    row += [spread([r for r, _ in runs], "%.0f"),
                            spread([c for _, c in runs], "%.1f")]
                else:
                    row += ["-", "-"]
            if mw and cn:
                row += [spread([m[0] / c[0] for m, c in zip(mw, cn)], "%.2f"),
                        spread([m[1] / c[1] for m, c in zip(mw, cn) if c[1] > 0], "%.2f")
                        if any(c[1] > 0 for c in cn) else "-"]
            else:
                row += ["-", "-"]
            base = results.get(("moonwire", "grpc", inflight))
            if mw and base and mode != "grpc" and all(b[1] > 0 for b in base):
                row.append(spread([m[1] / b[1] for m, b in zip(mw, base)], "%.2f"))
            else:
                row.append("-")
            out.append("| " + " | ".join(row) + " |")
    return out


def node_version():
    r = subprocess.run(["node", "--version"], capture_output=True, text=True)
    return r.stdout.strip().lstrip("v") or "?"


def write_section(path, lines):
    """SECTION of the markdown file at path replaced by lines (to the next
    heading of the same level), or appended when the file has none."""
    text = open(path).read() if os.path.exists(path) else ""
    section = SECTION + "\n\n" + "\n".join(lines) + "\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
