"""Tracing: W3C trace context in, OTLP/HTTP JSON spans out to a small
collector in the test (http.server on loopback): ids, parents, status
mapping, per-message events, sampling, and a collector that is down or
hung costing the clients nothing."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package tr;
message Msg { string text = 1; int32 n = 2; }
service Svc {
  rpc Unary(Msg) returns (Msg);
  rpc Fail(Msg) returns (Msg);
  rpc Bidi(stream Msg) returns (stream Msg);
  rpc Stats(Msg) returns (Msg);
}
"""

LUA = """
local mw = require "moonwire"
local Svc = mw.service "tr.Svc"
function Svc.Unary(req, ctx)
  local t = ctx.trace
  if t then
    t:set("app.user", req.text)
    t:event("app.step", {n = req.n})
  end
  return {text = t and (t.trace_id .. " " .. t.span_id .. " " .. tostring(t.parent_span_id) ..
                        " " .. tostring(t.sampled) .. " " .. t.traceparent .. " " ..
                        tostring(t.tracestate)) or "none"}
end
function Svc.Fail(req, ctx)
  mw.fail(req.n, "failed: " .. req.text)
end
function Svc.Bidi(stream, ctx)
  for msg in stream:iter() do stream:send{text = msg.text} end
end
function Svc.Stats(req, ctx)
  local s = mw.stats()
  return {text = s.tracing.exported .. " " .. s.tracing.dropped .. " " .. s.tracing.queued}
end
"""


class Collector:
    """An OTLP/HTTP receiver: keeps every span POSTed to /v1/traces.
    status: what it answers (a list is consumed first, then 200)."""

    def __init__(self):
        self.spans = []
        self.bodies = []
        self.answers = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    code = outer.answers.pop(0) if outer.answers else 200
                    outer.bodies.append((self.path, self.headers.get("Content-Type"), code))
                    if code == 200:
                        doc = json.loads(body)
                        for rs in doc["resourceSpans"]:
                            for ss in rs["scopeSpans"]:
                                for sp in ss["spans"]:
                                    sp["_resource"] = rs["resource"]
                                    outer.spans.append(sp)
                self.send_response(code)
                if code != 200:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/v1/traces" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout * mwtest.SLOW
        while time.monotonic() < deadline:
            with self.lock:
                found = [s for s in self.spans if pred(s)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError("no such span; got %r" % self.spans)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def attrs(span):
    out = {}
    for a in span["attributes"]:
        (kind, v), = a["value"].items()
        out[a["key"]] = int(v) if kind == "intValue" else v
    return out


def config(url, sample=1.0, extra=""):
    return ("tracing:\n  otlp: %s\n  sample: %s\n  flush_ms: 50\n  service_name: trtest\n%s"
            % (url, sample, extra))


class Base(mwtest.TestCase):
    SAMPLE = 1.0

    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"tr.proto": PROTO, "svc.lua": LUA})
        cls.protos = Protos(cls.dir)
        cls.Msg = cls.protos.msg("tr.Msg")
        cls.collector = Collector()
        cls.server = Server(cls.dir, config=config(cls.collector.url, cls.SAMPLE)).start()
        cls.channel = cls.server.channel()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.collector.close()
        cls.dir.cleanup()

    def unary(self, text="x", n=0, md=None, path="/tr.Svc/Unary"):
        return self.protos.unary(self.channel, path)(self.Msg(text=text, n=n), metadata=md,
                                                     timeout=10)


class TracingTest(Base):
    def test_parent_from_traceparent(self):
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        parent = "00f067aa0ba902b7"
        r = self.unary("alice", 7, md=[("traceparent", "00-%s-%s-01" % (trace, parent)),
                                       ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")])
        tid, sid, pid, sampled, tp, ts = r.text.split(" ")
        self.assertEqual((tid, pid, sampled), (trace, parent, "true"))
        self.assertEqual(tp, "00-%s-%s-01" % (trace, sid))
        self.assertEqual(ts, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        span, = self.collector.wait(lambda s: s["spanId"] == sid)
        self.assertEqual(span["traceId"], trace)
        self.assertEqual(span["parentSpanId"], parent)
        self.assertEqual(span["name"], "tr.Svc/Unary")
        self.assertEqual(span["kind"], 2)
        self.assertRegex(span["spanId"], r"^[0-9a-f]{16}$")
        self.assertNotEqual(span["spanId"], "0" * 16)
        self.assertLess(int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"]))
        a = attrs(span)
        self.assertEqual(a["rpc.system"], "grpc")
        self.assertEqual(a["rpc.service"], "tr.Svc")
        self.assertEqual(a["rpc.method"], "Unary")
        self.assertEqual(a["rpc.grpc.status_code"], 0)
        self.assertEqual(a["network.peer.address"], "127.0.0.1")
        self.assertIsInstance(a["network.peer.port"], int)
        self.assertEqual(a["app.user"], "alice")
        self.assertEqual(span["status"].get("code", 0), 0)
        ev, = [e for e in span["events"] if e["name"] == "app.step"]
        self.assertEqual(attrs(ev)["n"], 7)
        self.assertEqual(span["_resource"]["attributes"][0],
                         {"key": "service.name", "value": {"stringValue": "trtest"}})
        path, ctype, _ = self.collector.bodies[0]
        self.assertEqual((path, ctype), ("/v1/traces", "application/json"))

    def test_no_traceparent_starts_a_trace(self):
        tid, sid, pid, sampled, tp, ts = self.unary().text.split(" ")
        self.assertRegex(tid, r"^[0-9a-f]{32}$")
        self.assertEqual((pid, sampled, ts), ("nil", "true", "nil"))
        span, = self.collector.wait(lambda s: s["spanId"] == sid)
        self.assertEqual(span["traceId"], tid)
        self.assertNotIn("parentSpanId", span)

    def test_invalid_traceparent_starts_a_new_trace(self):
        bad = ["00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase
               "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
               "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent
               "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
               "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  # 00 with more
               "garbage"]
        for tp in bad:
            with self.subTest(tp=tp):
                tid, sid, pid, sampled, _, _ = self.unary(md=[("traceparent", tp)]).text.split(" ")
                self.assertNotEqual(tid, "4bf92f3577b34da6a3ce929d0e0e4736")
                self.assertEqual(pid, "nil")
                span, = self.collector.wait(lambda s: s["spanId"] == sid)
                self.assertNotIn("parentSpanId", span)

    def test_future_version_is_read(self):
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        tp = "cc-%s-00f067aa0ba902b7-01-what-the-future-holds" % trace
        tid, _, pid, _, _, _ = self.unary(md=[("traceparent", tp)]).text.split(" ")
        self.assertEqual((tid, pid), (trace, "00f067aa0ba902b7"))

    def test_unsampled_parent_is_followed(self):
        trace = "5bf92f3577b34da6a3ce929d0e0e4736"
        tp = "00-%s-00f067aa0ba902b7-00" % trace
        tid, sid, _, sampled, tpo, _ = self.unary(md=[("traceparent", tp)]).text.split(" ")
        self.assertEqual((tid, sampled), (trace, "false"))
        self.assertTrue(tpo.endswith("-00"))
        # A sampled call after it: spans leave in order, so once this one
        # has arrived the unsampled one would have too.
        later = self.unary().text.split(" ")[1]
        self.collector.wait(lambda s: s["spanId"] == later)
        with self.collector.lock:
            self.assertFalse([s for s in self.collector.spans if s["traceId"] == trace])

    def test_status_mapping(self):
        # (code, span status): Error only for the server's own failures.
        for code, want in [(2, 2), (4, 2), (12, 2), (13, 2), (14, 2), (15, 2),
                           (3, 0), (5, 0), (7, 0), (16, 0)]:
            with self.subTest(code=code):
                tag = "c%d" % code
                with self.assertRaises(grpc.RpcError) as cm:
                    self.unary(tag, code, path="/tr.Svc/Fail")
                self.assertEqual(cm.exception.code().value[0], code)
                span, = self.collector.wait(
                    lambda s: s["name"] == "tr.Svc/Fail" and
                    attrs(s)["rpc.grpc.status_code"] == code)
                self.assertEqual(span["status"].get("code", 0), want)
                if want == 2:
                    self.assertEqual(span["status"]["message"], "failed: " + tag)

    def test_stream_message_events(self):
        md = [("traceparent", "00-6bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
        call = self.protos.bidi(self.channel, "/tr.Svc/Bidi")
        got = list(call(iter([self.Msg(text=str(i)) for i in range(3)]), metadata=md,
                        timeout=10))
        self.assertEqual([m.text for m in got], ["0", "1", "2"])
        span, = self.collector.wait(lambda s: s["traceId"] == "6bf92f3577b34da6a3ce929d0e0e4736")
        evs = [attrs(e) for e in span["events"] if e["name"] == "rpc.message"]
        recv = [e["rpc.message.id"] for e in evs if e["rpc.message.type"] == "RECEIVED"]
        sent = [e["rpc.message.id"] for e in evs if e["rpc.message.type"] == "SENT"]
        self.assertEqual(recv, [1, 2, 3])
        sizes = [e["rpc.message.uncompressed_size"] for e in evs
                 if e["rpc.message.type"] == "RECEIVED"]
        self.assertEqual(sizes, [len(self.Msg(text=str(i)).SerializeToString())
                                 for i in range(3)])
        self.assertEqual(sent, [1, 2, 3])
        for e in span["events"]:
            self.assertRegex(e["timeUnixNano"], r"^[0-9]+$")

    def test_stats_count_exports(self):
        self.unary()
        deadline = time.monotonic() + 10 * mwtest.SLOW
        while True:
            exported, dropped, _ = map(int, self.unary(path="/tr.Svc/Stats").text.split())
            if exported > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertGreater(exported, 0)
        self.assertEqual(dropped, 0)


class SampleZeroTest(Base):
    SAMPLE = 0.0

    def test_nothing_exported_ids_kept(self):
        for _ in range(20):
            tid, sid, pid, sampled, tp, _ = self.unary().text.split(" ")
            self.assertRegex(tid, r"^[0-9a-f]{32}$")
            self.assertRegex(sid, r"^[0-9a-f]{16}$")
            self.assertEqual(sampled, "false")
            self.assertEqual(tp, "00-%s-%s-00" % (tid, sid))
        # A caller's sampled flag still wins over the ratio; spans leave in
        # order, so once this one has arrived nothing else was sent.
        trace = "7bf92f3577b34da6a3ce929d0e0e4736"
        self.unary(md=[("traceparent", "00-%s-00f067aa0ba902b7-01" % trace)])
        self.collector.wait(lambda s: s["traceId"] == trace)
        with self.collector.lock:
            self.assertEqual([s["traceId"] for s in self.collector.spans], [trace])


class DeadCollectorTest(mwtest.TestCase):
    """A collector that is down or never answers: calls stay prompt, spans
    are dropped and counted, the server still stops within its grace."""

    def check(self, url):
        d = mwtest.service_dir(self, {"tr.proto": PROTO, "svc.lua": LUA})
        protos = Protos(d)
        Msg = protos.msg("tr.Msg")
        cfg = config(url, extra="  batch: 4\n  queue: 8\nshutdown:\n  grace: 1s\n")
        with Server(d, config=cfg) as s:
            ch = s.channel()
            unary = protos.unary(ch, "/tr.Svc/Unary")
            t0 = time.monotonic()
            for _ in range(60):
                self.assertNotEqual(unary(Msg(text="x"), timeout=10).text, "none")
            # 60 calls on loopback: well under the exporter's timeouts
            self.assertLess(time.monotonic() - t0, 20 * mwtest.SLOW)
            deadline = time.monotonic() + 15 * mwtest.SLOW
            while True:
                exported, dropped, _ = map(int, protos.unary(ch, "/tr.Svc/Stats")(
                    Msg(), timeout=10).text.split())
                if dropped > 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(exported, 0)
            self.assertGreater(dropped, 0)
            t0 = time.monotonic()
            s.stop(timeout=30)
            self.assertEqual(s.returncode, 0)
            self.assertLess(time.monotonic() - t0, 15 * mwtest.SLOW)

    def test_closed_port(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there now
        self.check("http://127.0.0.1:%d/v1/traces" % port)

    def test_hung_collector(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # connections complete in the backlog; nobody answers
        self.addCleanup(sock.close)
        self.check("http://127.0.0.1:%d/v1/traces" % sock.getsockname()[1])


class RetryTest(mwtest.TestCase):
    def test_503_then_ok(self):
        d = mwtest.service_dir(self, {"tr.proto": PROTO, "svc.lua": LUA})
        protos = Protos(d)
        c = Collector()
        self.addCleanup(c.close)
        c.answers = [503, 429]
        with Server(d, config=config(c.url)) as s:
            r = protos.unary(s.channel(), "/tr.Svc/Unary")(protos.msg("tr.Msg")(text="r"),
                                                           timeout=10)
            sid = r.text.split(" ")[1]
            c.wait(lambda sp: sp["spanId"] == sid)
        self.assertEqual([b[2] for b in c.bodies][:3], [503, 429, 200])


class ConfigTest(mwtest.TestCase):
    def test_https_refused(self):
        d = mwtest.service_dir(self, {"tr.proto": PROTO, "svc.lua": LUA})
        with self.assertRaises(mwtest.ServerError) as cm:
            Server(d, config="tracing: {otlp: 'https://collector:4318/v1/traces'}").start()
        self.assertIn("https is not supported", str(cm.exception))


if __name__ == "__main__":
    import unittest
    unittest.main()
