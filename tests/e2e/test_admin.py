"""The admin listener (admin.listen): /metrics in Prometheus's text format
(read by prometheus_client's parser, checked by promtool, scraped by a
real Prometheus server), exact go-grpc-prometheus counts after a known mix
of calls, Lua-declared metrics, /healthz and /readyz through a drain,
/debug/calls showing an open stream and what its handler waits on,
/debug/config with the TLS key's path but never the key, 404 and 405, and
the request size bound."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package m;
message M { string x = 1; int32 n = 2; }
service S {
  rpc Get(M) returns (M);
  rpc Many(M) returns (stream M);
  rpc Sum(stream M) returns (M);
  rpc Hold(stream M) returns (stream M);
  rpc Spin(M) returns (M);
}
"""

LUA = """
local mw = require "moonwire"
local S = mw.service "m.S"
local orders = mw.metrics.counter("app_orders_total", "Orders by kind.", {"kind"})
local depth = mw.metrics.gauge("app_depth", "A gauge.")
local lat = mw.metrics.histogram("app_seconds", "A histogram.", {"op"}, {0.1, 1})
-- the same shape again is the same metric; another shape or a bad name raises
local again = mw.metrics.counter("app_orders_total", "Orders by kind.", {"kind"})
local ok1, shape_err = pcall(mw.metrics.gauge, "app_orders_total", "x", {"kind"})
local ok2, name_err = pcall(mw.metrics.counter, "bad-name", "x")
local ok3, label_err = pcall(mw.metrics.counter, "app_x_total", "x", {"__reserved"})

function S.Get(req)
  if req.x == "check" then
    return {x = table.concat({tostring(ok1), tostring(shape_err), tostring(ok2),
                              tostring(name_err), tostring(ok3), tostring(label_err)}, "|")}
  end
  if req.x == "missing" then
    mw.fail(mw.NOT_FOUND, "no such thing")
  end
  if req.x == "bad" then
    mw.fail(mw.INVALID_ARGUMENT, "bad request")
  end
  orders:inc({kind = req.x})
  again:add(2, {"total"})
  depth:set(req.n)
  lat:observe(0.5, {op = "get"})
  return {x = req.x}
end

function S.Many(req, stream)
  for i = 1, req.n do stream:send {n = i} end
end

function S.Sum(stream)
  local n = 0
  for m in stream:iter() do n = n + m.n end
  return {n = n}
end

function S.Spin(req)
  if req.x == "labels" then
    for i = 1, req.n do orders:inc({kind = "k" .. i}) end
    return {}
  end
  while true do end
end

function S.Hold(stream)
  local first = stream:recv()
  stream:send {x = first.x}
  while stream:recv() do end
end
"""

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
TIMEOUT = 60  # what a loaded machine may need; the checks end as soon as they pass


def get(addr, path, method="GET", data=None):
    """(status, headers, body) of one request to the admin listener."""
    req = urllib.request.Request("http://%s%s" % (addr, path), method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def admin_addr(server):
    for line in server.stdout().splitlines():
        if line.startswith("admin listening on "):
            return line.split()[-1]
    raise AssertionError("no 'admin listening on' line:\n" + server.stdout())


def wait_until(what, fn, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def samples(text):
    """{(name, frozenset(labels.items())): value} of a /metrics body."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def val(smp, name, **labels):
    return smp.get((name, frozenset(labels.items())), 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AdminTest(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = mwtest.ServiceDir({"m.proto": PROTO, "m.lua": LUA})
        cls.protos = Protos(cls.svc.path)
        cls.server = Server(cls.svc, config="""
            workers: 2
            admin: {listen: "127.0.0.1:0"}
        """).start()
        cls.addr = admin_addr(cls.server)
        ch = cls.server.channel()
        cls.ch = ch
        get_ = cls.protos.unary(ch, "/m.S/Get")
        M = cls.protos.msg("m.M")
        # The known mix: 3 OK (and the "check" call), 2 NOT_FOUND, 1 INVALID_ARGUMENT, a server
        # stream of 5, a client stream of 4, and a method nobody serves.
        for x in ("a", "a", "b"):
            get_(M(x=x, n=7), timeout=10)
        cls.codes = []
        for x in ("missing", "missing", "bad"):
            try:
                get_(M(x=x), timeout=10)
            except grpc.RpcError as e:
                cls.codes.append(e.code())
        cls.check = get_(M(x="check"), timeout=10).x
        cls.many = list(cls.protos.server_stream(ch, "/m.S/Many")(M(n=5), timeout=10))
        cls.sum = cls.protos.client_stream(ch, "/m.S/Sum")(iter([M(n=i) for i in range(1, 5)]),
                                                          timeout=10)
        try:
            mwtest.raw_unary(ch, "/m.S/Nope")(b"", timeout=10)
        except grpc.RpcError as e:
            cls.unknown_code = e.code()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.svc.cleanup()

    def settled(self):
        """The /metrics body once every call of the mix is counted as handled
        (a call is counted when it is freed, just after its client heard)."""
        def ready():
            st, _, body = get(self.addr, "/metrics")
            smp = samples(body)
            n = sum(v for (name, _), v in smp.items() if name == "grpc_server_handled_total")
            return body if n >= 9 else None
        return wait_until("the calls to be counted", ready)

    def test_counts_are_exact(self):
        self.assertEqual(len(self.many), 5)
        self.assertEqual(self.sum.n, 10)
        self.assertEqual(self.unknown_code, grpc.StatusCode.UNIMPLEMENTED)
        self.assertEqual(self.codes, [grpc.StatusCode.NOT_FOUND] * 2 +
                         [grpc.StatusCode.INVALID_ARGUMENT])
        smp = samples(self.settled())
        u = dict(grpc_type="unary", grpc_service="m.S", grpc_method="Get")
        self.assertEqual(val(smp, "grpc_server_started_total", **u), 7)
        self.assertEqual(val(smp, "grpc_server_handled_total", grpc_code="OK", **u), 4)
        self.assertEqual(val(smp, "grpc_server_handled_total", grpc_code="NotFound", **u), 2)
        self.assertEqual(val(smp, "grpc_server_handled_total", grpc_code="InvalidArgument", **u), 1)
        self.assertEqual(val(smp, "grpc_server_msg_received_total", **u), 7)
        self.assertEqual(val(smp, "grpc_server_msg_sent_total", **u), 4)
        self.assertEqual(val(smp, "grpc_server_handling_seconds_count", **u), 7)
        self.assertEqual(val(smp, "grpc_server_handling_seconds_bucket", le="+Inf", **u), 7)
        ss = dict(grpc_type="server_stream", grpc_service="m.S", grpc_method="Many")
        self.assertEqual(val(smp, "grpc_server_started_total", **ss), 1)
        self.assertEqual(val(smp, "grpc_server_handled_total", grpc_code="OK", **ss), 1)
        self.assertEqual(val(smp, "grpc_server_msg_received_total", **ss), 1)
        self.assertEqual(val(smp, "grpc_server_msg_sent_total", **ss), 5)
        cs = dict(grpc_type="client_stream", grpc_service="m.S", grpc_method="Sum")
        self.assertEqual(val(smp, "grpc_server_started_total", **cs), 1)
        self.assertEqual(val(smp, "grpc_server_handled_total", grpc_code="OK", **cs), 1)
        self.assertEqual(val(smp, "grpc_server_msg_received_total", **cs), 4)
        self.assertEqual(val(smp, "grpc_server_msg_sent_total", **cs), 1)
        # Unknown methods get no series of their own.
        self.assertEqual(val(smp, "moonwire_unknown_method_calls_total"), 1)
        self.assertFalse([k for k in smp if ("grpc_method", "Nope") in k[1]])
        self.assertEqual(val(smp, "moonwire_shed_calls_total"), 0)
        self.assertEqual(val(smp, "moonwire_generation"), 1)
        self.assertEqual(val(smp, "moonwire_reloads_total"), 0)
        self.assertGreater(val(smp, "moonwire_lua_memory_bytes", worker="0") +
                           val(smp, "moonwire_lua_memory_bytes", worker="1"), 0)
        # Lua-declared metrics, summed over both workers.
        self.assertEqual(val(smp, "app_orders_total", kind="a"), 2)
        self.assertEqual(val(smp, "app_orders_total", kind="b"), 1)
        self.assertEqual(val(smp, "app_orders_total", kind="total"), 6)
        self.assertEqual(val(smp, "app_depth"), 7)
        self.assertEqual(val(smp, "app_seconds_bucket", op="get", le="0.1"), 0)
        self.assertEqual(val(smp, "app_seconds_bucket", op="get", le="1"), 3)
        self.assertEqual(val(smp, "app_seconds_count", op="get"), 3)
        self.assertEqual(val(smp, "app_seconds_sum", op="get"), 1.5)

    def test_lua_declarations_checked(self):
        ok1, shape, ok2, name, ok3, label = self.check.split("|")
        self.assertEqual((ok1, ok2, ok3), ("false", "false", "false"))
        self.assertIn("already declared", shape)
        self.assertIn("bad metric name", name)
        self.assertIn("bad label name", label)

    def test_format(self):
        st, headers, body = get(self.addr, "/metrics")
        self.assertEqual(st, 200)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        names = {f.name for f in text_string_to_metric_families(body)}
        for n in ("grpc_server_started", "grpc_server_handled", "grpc_server_msg_received",
                  "grpc_server_msg_sent", "grpc_server_handling_seconds", "moonwire_live_calls",
                  "moonwire_queued_send_bytes", "moonwire_lua_memory_bytes",
                  "moonwire_reloads", "moonwire_reload_failures", "moonwire_generation",
                  "moonwire_shed_calls", "moonwire_handler_cpu_stops"):
            self.assertIn(n, names)
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_scraped_by_prometheus(self):
        self.settled()
        tmp = tempfile.mkdtemp(prefix="mw-e2e-prom-")
        port = free_port()
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    "scrape_configs:\n"
                    "  - job_name: moonwire\n"
                    "    static_configs: [{targets: ['%s']}]\n" % self.addr)
        prom = subprocess.Popen([PROMETHEUS, "--config.file=" + cfg,
                                 "--storage.tsdb.path=" + os.path.join(tmp, "data"),
                                 "--web.listen-address=127.0.0.1:%d" % port],
                                stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(tmp, "prometheus.log"), "wb"))
        try:
            q = ('http://127.0.0.1:%d/api/v1/query?query=grpc_server_started_total'
                 '%%7Bgrpc_method%%3D%%22Get%%22%%7D' % port)

            def scraped():
                try:
                    with urllib.request.urlopen(q, timeout=5) as r:
                        res = json.loads(r.read())["data"]["result"]
                except (OSError, ValueError, KeyError):
                    return None
                return res or None
            res = wait_until("Prometheus to scrape the series", scraped)
            self.assertEqual(res[0]["metric"]["job"], "moonwire")
            self.assertEqual(res[0]["metric"]["grpc_type"], "unary")
            self.assertEqual(float(res[0]["value"][1]), 7)
        finally:
            prom.terminate()
            try:
                prom.wait(timeout=10)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_debug_calls_shows_open_stream(self):
        M = self.protos.msg("m.M")
        sent = threading.Event()
        done = threading.Event()

        def requests():
            yield M(x="held")
            sent.set()
            done.wait(TIMEOUT)
        call = self.protos.bidi(self.ch, "/m.S/Hold")(requests(), timeout=TIMEOUT)
        first = next(call)
        self.assertEqual(first.x, "held")
        try:
            def held():
                st, headers, body = get(self.addr, "/debug/calls")
                self.assertEqual(st, 200)
                self.assertEqual(headers["Content-Type"], "application/json")
                doc = json.loads(body)
                self.assertTrue(all(w["answered"] for w in doc["workers"]), doc)
                for c in doc["calls"]:
                    if c["method"] == "/m.S/Hold" and c["state"] == "stream:recv":
                        return c
                return None
            c = wait_until("the stream in /debug/calls", held)
            self.assertEqual(c["kind"], "bidi_stream")
            self.assertEqual(c["generation"], 1)
            self.assertIn(c["worker"], (0, 1))
            self.assertEqual((c["msgs_in"], c["msgs_out"]), (1, 1))
            self.assertTrue(c["peer"].startswith("ipv4:127.0.0.1:"), c)
            self.assertGreaterEqual(c["age_s"], 0)
        finally:
            done.set()
            for _ in call:
                pass

    def test_health_and_errors(self):
        self.assertEqual(get(self.addr, "/healthz")[0], 200)
        self.assertEqual(get(self.addr, "/readyz")[0], 200)
        self.assertEqual(get(self.addr, "/nope")[0], 404)
        st, headers, _ = get(self.addr, "/metrics", method="POST", data=b"x")
        self.assertEqual(st, 405)
        self.assertEqual(headers["Allow"], "GET")
        self.assertEqual(get(self.addr, "/healthz", method="DELETE")[0], 405)
        # Bodies over the bound are refused before any route sees them.
        self.assertEqual(get(self.addr, "/metrics", method="POST", data=b"x" * 200000)[0], 413)
        self.assertEqual(get(self.addr, "/healthz")[0], 200)

    def test_http2(self):
        """HTTP/2 over cleartext with prior knowledge (nghttp, from
        nghttp2-client), as h2o serves it next to HTTP/1.1."""
        nghttp = shutil.which("nghttp") or "/usr/bin/nghttp"
        r = subprocess.run([nghttp, "-s", "http://%s/metrics" % self.addr], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("# TYPE grpc_server_started_total counter", r.stdout)
        r = subprocess.run([nghttp, "-v", "http://%s/nope" % self.addr], capture_output=True,
                           text=True, timeout=30)
        self.assertIn(":status: 404", r.stdout)


class AdminReloadTest(mwtest.TestCase):
    def test_counts_survive_reload_and_bounds(self):
        svc = self.service_dir({"m.proto": PROTO, "m.lua": LUA})
        protos = Protos(svc.path)
        with Server(svc, config="""
            workers: 1
            admin: {listen: "127.0.0.1:0", max_connections: 2, timeout: 1s}
            metrics: {max_series: 5}
            limits: {handler_cpu_ms: 50}
            reload: {watch: false}
            methods: {"/m.S/Hold": {max_concurrent: 1}}
        """) as s:
            addr = admin_addr(s)
            ch = s.channel()
            M = protos.msg("m.M")
            get_ = protos.unary(ch, "/m.S/Get")
            get_(M(x="a"), timeout=10)
            get_(M(x="a"), timeout=10)
            os.kill(s.pid, signal.SIGHUP)
            self.assertTrue(s.wait_log("reloaded (SIGHUP)", timeout=TIMEOUT), s.logs())
            get_(M(x="a"), timeout=10)
            # A handler stopped by its CPU budget.
            with self.assertRaises(grpc.RpcError) as ctx:
                protos.unary(ch, "/m.S/Spin")(M(), timeout=30)
            self.assertStatus(ctx, grpc.StatusCode.RESOURCE_EXHAUSTED)
            # app_orders_total has kind="a" and kind="total": 3 more fit
            # under the cap of 5, the rest are dropped with one warning.
            protos.unary(ch, "/m.S/Spin")(M(x="labels", n=5), timeout=10)

            def counted():
                smp = samples(get(addr, "/metrics")[2])
                done = val(smp, "grpc_server_handled_total", grpc_type="unary",
                           grpc_service="m.S", grpc_method="Spin",
                           grpc_code="ResourceExhausted")
                return smp if done and val(smp, "grpc_server_handled_total", grpc_type="unary",
                                           grpc_service="m.S", grpc_method="Spin",
                                           grpc_code="OK") else None
            # A second Hold over max_concurrent is shed.
            done = threading.Event()

            def idle():
                yield M(x="held")
                done.wait(TIMEOUT)
            held = protos.bidi(ch, "/m.S/Hold")(idle(), timeout=TIMEOUT)
            next(held)
            with self.assertRaises(grpc.RpcError) as ctx:
                list(protos.bidi(ch, "/m.S/Hold")(iter([M()]), timeout=10))
            self.assertStatus(ctx, grpc.StatusCode.RESOURCE_EXHAUSTED)
            done.set()
            for _ in held:
                pass
            smp = wait_until("the calls to be counted", counted)
            self.assertEqual(val(smp, "moonwire_shed_calls_total"), 1)
            b = dict(grpc_type="bidi_stream", grpc_service="m.S", grpc_method="Hold")
            self.assertEqual(val(smp, "grpc_server_started_total", **b), 2)
            u = dict(grpc_type="unary", grpc_service="m.S", grpc_method="Get")
            self.assertEqual(val(smp, "grpc_server_started_total", **u), 3)
            self.assertEqual(val(smp, "grpc_server_handled_total", grpc_code="OK", **u), 3)
            self.assertEqual(val(smp, "app_orders_total", kind="a"), 3)
            self.assertEqual(val(smp, "app_orders_total", kind="total"), 6)
            self.assertEqual(val(smp, "moonwire_reloads_total"), 1)
            self.assertEqual(val(smp, "moonwire_generation"), 2)
            self.assertEqual(val(smp, "moonwire_handler_cpu_stops_total"), 1)
            kinds = sorted(dict(k[1])["kind"] for k in smp if k[0] == "app_orders_total")
            self.assertEqual(kinds, ["a", "k1", "k2", "k3", "total"])
            self.assertTrue(s.wait_log("app_orders_total has 5 series, its cap"), s.logs())
            self.assertEqual(s.logs().count("its cap"), 1, s.logs())

            # Connections: two idle ones fill admin.max_connections, a third
            # is closed as it is accepted; an idle one is closed after
            # admin.timeout.
            host, port = addr.rsplit(":", 1)
            a, b2 = (socket.create_connection((host, int(port)), timeout=10) for _ in range(2))
            for conn in (a, b2):  # answered, so accepted and counted; then idle
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while b"ok\n" not in got:
                    chunk = conn.recv(1000)
                    self.assertTrue(chunk, got)
                    got += chunk
            c = socket.create_connection((host, int(port)), timeout=10)
            self.assertEqual(c.recv(100), b"")
            c.close()
            self.assertTrue(s.wait_log("admin.max_connections"), s.logs())
            t0 = time.monotonic()
            self.assertEqual(a.recv(100), b"")  # the timeout closed it
            self.assertLess(time.monotonic() - t0, 9)
            a.close()
            b2.close()
            wait_until("the admin listener to take connections again",
                       lambda: get(addr, "/healthz")[0] == 200)


class AdminOffTest(mwtest.TestCase):
    def test_metrics_api_without_admin(self):
        """Without admin.listen scripts declare and update metrics as usual
        (names and shapes still checked); nothing listens."""
        svc = self.service_dir({"m.proto": PROTO, "m.lua": LUA})
        protos = Protos(svc.path)
        with Server(svc, config="workers: 1\n") as s:
            M = protos.msg("m.M")
            self.assertEqual(protos.unary(s.channel(), "/m.S/Get")(M(x="a"), timeout=10).x, "a")
            check = protos.unary(s.channel(), "/m.S/Get")(M(x="check"), timeout=10).x
            self.assertIn("already declared", check)
            self.assertNotIn("admin listening", s.stdout())

    def test_busy_port_fails_the_start(self):
        svc = self.service_dir({"m.proto": PROTO, "m.lua": LUA})
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            with self.assertRaises(mwtest.ServerError) as ctx:
                Server(svc, config='admin: {listen: "127.0.0.1:%d"}\n' % port).start()
            self.assertIn("admin.listen: cannot listen on 127.0.0.1:%d" % port,
                          str(ctx.exception))


class AdminFlagTest(mwtest.TestCase):
    def test_admin_flag(self):
        """--admin ADDR (what `make run` passes) turns the listener on over a
        config without admin; a bad address is refused before serving."""
        svc = self.service_dir({"m.proto": PROTO, "m.lua": LUA})
        protos = Protos(svc.path)
        with Server(svc, config="workers: 1\n", args=["--admin", "127.0.0.1:0"]) as s:
            addr = admin_addr(s)
            M = protos.msg("m.M")
            for _ in range(3):
                protos.unary(s.channel(), "/m.S/Get")(M(x="a"), timeout=10)
            status, _, body = get(addr, "/metrics")
            self.assertEqual(status, 200)
            self.assertIn('grpc_server_handled_total{grpc_type="unary",grpc_service="m.S",'
                          'grpc_method="Get",grpc_code="OK"} 3', body)
        r = mwtest.run_cli("check", "--admin", "nowhere", svc.path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--admin nowhere:", r.stderr)


class AdminDrainTest(mwtest.TestCase):
    def test_readyz_flips_during_drain(self):
        svc = self.service_dir({"m.proto": PROTO, "m.lua": LUA})
        with Server(svc, config="""
            workers: 1
            admin: {listen: "127.0.0.1:0"}
            shutdown: {drain_delay: 3s, grace: 1s}
        """) as s:
            addr = admin_addr(s)
            self.assertEqual(get(addr, "/readyz")[0], 200)
            os.kill(s.pid, signal.SIGTERM)
            wait_until("/readyz to say 503", lambda: get(addr, "/readyz")[0] == 503, timeout=3)
            self.assertEqual(get(addr, "/healthz")[0], 200)
            self.assertEqual(samples(get(addr, "/metrics")[2]).get(("moonwire_draining",
                                                                     frozenset())), 1)
            s.proc.wait(timeout=30)
            self.assertEqual(s.proc.returncode, 0, s.logs())


class AdminConfigTest(mwtest.TestCase):
    def test_debug_config_redacts(self):
        svc = self.service_dir({"m.proto": PROTO, "m.lua": LUA})
        tmp = tempfile.mkdtemp(prefix="mw-e2e-admin-tls-")
        self.addCleanup(shutil.rmtree, tmp, True)
        key, cert = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-subj", "/CN=localhost", "-days", "1"],
                       check=True, capture_output=True, timeout=30)
        with open(key) as f:
            key_body = "".join(l for l in f.read().splitlines() if "-----" not in l)
        with Server(svc, config="""
            workers: 1
            admin: {listen: "127.0.0.1:0", max_connections: 8}
            tls: {cert: %s, key: %s}
        """ % (cert, key)) as s:
            st, headers, body = get(admin_addr(s), "/debug/config")
            self.assertEqual(st, 200)
            doc = json.loads(body)
            self.assertEqual(doc["tls"]["key"], key)
            self.assertEqual(doc["tls"]["cert"], cert)
            self.assertEqual(doc["admin"]["max_connections"], 8)
            self.assertEqual(doc["workers"], 1)
            self.assertNotIn("PRIVATE KEY", body)
            self.assertNotIn(key_body[:40], body)


if __name__ == "__main__":
    mwtest.main()
