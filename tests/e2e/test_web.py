"""The HTTP listener (http:) with the real binary: gRPC-Web (binary and
text) and Connect (unary, GET, streaming) from hand-made requests over
http.client, real clients (buf curl), CORS, the conformance suite's edge
cases, deadlines, cancellation by disconnect, ctx.protocol and the peer
(which no external client can spoof), and a reload during HTTP calls."""

import base64
import gzip
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import zlib

import grpc

import mwtest
from mwtest import Protos, Server, service_dir

PROTO = """
syntax = "proto3";
package web;

message Req { string name = 1; int32 n = 2; double sleep = 3; string key = 4; }
message Resp { string text = 1; string protocol = 2; string peer = 3; string md = 4;
               double remaining = 5; int32 i = 6; }

service W {
  rpc Echo(Req) returns (Resp) { option idempotency_level = NO_SIDE_EFFECTS; }
  rpc Count(Req) returns (stream Resp);
  rpc Fail(Req) returns (Resp);
  rpc Slow(Req) returns (Resp);
  rpc Peek(Req) returns (Resp);
  rpc Total(stream Req) returns (Resp);
  rpc Flood(Req) returns (stream Resp);
  rpc Size(Req) returns (Resp);
}
"""

LUA = """
local mw = require "moonwire"
local W = mw.service "web.W"
local VERSION = "v1"
local marks = mw.shared.marks

function W.Echo(req, ctx)
  ctx:set_header("x-echo", "h")
  ctx:set_trailer("x-trail", "t")
  local md = {}
  for k, v in pairs(ctx.metadata) do md[#md + 1] = k .. "=" .. v end
  table.sort(md)
  local left = ctx:remaining()
  return {text = VERSION .. " hi " .. req.name, protocol = ctx.protocol, peer = ctx.peer,
          md = table.concat(md, ","), remaining = left == math.huge and -1 or left}
end

function W.Count(req, stream, ctx)
  for i = 1, req.n do stream:send{i = i, protocol = ctx.protocol} end
  if req.name == "fail" then mw.fail(mw.NOT_FOUND, "no more") end
end

function W.Fail(req)
  mw.fail(mw.INVALID_ARGUMENT, "bad name", {mw.details.BadRequest{name = "must not be empty"}})
end

function W.Slow(req, ctx)
  ctx:on_cancel(function() marks:set(req.key, "cancelled") end)
  marks:set(req.key, "started")
  mw.sleep(req.sleep)
  marks:set(req.key, "finished")
  return {text = VERSION}
end

function W.Peek(req)
  return {text = tostring(marks:get(req.key))}
end

-- n messages of 8 KiB, counting in marks[key] how many were queued
function W.Flood(req, stream)
  local pad = string.rep("x", 8192)
  for i = 1, req.n do
    stream:send{i = i, text = pad}
    marks:set(req.key, i)
  end
end

function W.Size(req)
  return {i = #req.name}
end

function W.Total(stream)
  local n = 0
  for m in stream:iter() do n = n + m.n end
  return {i = n}
end
"""

CONFIG = """
interceptors: [access_log]
shared:
  marks: {size: 1MiB}
limits:
  max_receive_bytes: 64KiB
http:
  listen: 127.0.0.1:0
  cors:
    origins: ["https://app.example.com"]
    headers: [authorization]
"""

ORIGIN = "https://app.example.com"


def frame(payload, flags=0):
    return struct.pack(">BI", flags, len(payload)) + payload


def frames(data):
    """[(flags, payload)] of an enveloped body."""
    data = memoryview(data)
    out, pos = [], 0
    while pos < len(data):
        flags, n = struct.unpack(">BI", data[pos:pos + 5])
        out.append((flags, bytes(data[pos + 5:pos + 5 + n])))
        pos += 5 + n
    return out


def text_chunks(data):
    """A grpc-web-text body: padded base64 chunks, each decoded on its own
    (the concatenation is not one valid base64 document)."""
    out, start = b"", 0
    for i in range(0, len(data), 4):
        if data[i + 3:i + 4] == b"=" or i + 4 == len(data):
            out += base64.b64decode(data[start:i + 4], validate=True)
            start = i + 4
    return out


def trailer_lines(payload):
    d = {}
    for line in payload.decode().split("\r\n"):
        if line:
            k, v = line.split(":", 1)
            d[k] = v
    return d


class WebTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"web.proto": PROTO, "web.lua": LUA})
        cls.protos = Protos(cls.dir.path)
        cls.Req = cls.protos.msg("web.Req")
        cls.Resp = cls.protos.msg("web.Resp")
        cls.server = Server(cls.dir.path, config=CONFIG)
        cls.server.start()
        deadline = time.monotonic() + 10
        while "http listening on " not in cls.server.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        addr = cls.server.stdout().split("http listening on ")[1].split()[0]
        cls.http_port = int(addr.rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.dir.cleanup()

    # --- helpers ---------------------------------------------------------
    def post(self, path, body, ct, headers=None, method="POST"):
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        h = {"content-type": ct} if ct else {}
        h.update(headers or {})
        c.request(method, path, body, h)
        r = c.getresponse()
        data = r.read()
        local = c.sock.getsockname() if c.sock else None
        c.close()
        return r, data, local

    def req(self, **kw):
        return self.Req(**kw).SerializeToString()

    def grpc_web(self, path, msg_bytes, text=False, accept_text=True, headers=None):
        body = frame(msg_bytes)
        ct = "application/grpc-web+proto"
        h = dict(headers or {})
        if text:
            body = base64.b64encode(body)
            ct = "application/grpc-web-text"
            if accept_text:
                h["accept"] = "application/grpc-web-text"
        return self.post(path, body, ct, h)

    def peek(self, key):
        with self.server.channel() as ch:
            r = self.protos.unary(ch, "/web.W/Peek")(self.Req(key=key), timeout=5)
        return r.text

    # --- Connect unary -----------------------------------------------------
    def test_connect_unary_proto(self):
        r, data, local = self.post("/web.W/Echo", self.req(name="c"), "application/proto",
                                   {"connect-protocol-version": "1", "x-user": "u1"})
        self.assertEqual(r.status, 200, data)
        self.assertEqual(r.getheader("content-type"), "application/proto")
        self.assertEqual(r.getheader("x-echo"), "h")
        self.assertEqual(r.getheader("trailer-x-trail"), "t")
        m = self.Resp.FromString(data)
        self.assertEqual(m.text, "v1 hi c")
        self.assertEqual(m.protocol, "connect")
        # the HTTP client's own address, not the loopback's
        self.assertEqual(m.peer, "ipv4:127.0.0.1:%d" % local[1])
        self.assertIn("x-user=u1", m.md)
        self.assertNotIn("content-type", m.md)
        self.assertEqual(m.remaining, -1)
        # the access log names the protocol and the HTTP client
        line = "peer=ipv4:127.0.0.1:%d" % local[1]
        self.assertTrue(self.server.wait_log(line), self.server.logs())
        (logged,) = [l for l in self.server.logs().splitlines() if line in l]
        self.assertIn("protocol=connect", logged)
        self.assertIn("method=/web.W/Echo", logged)

    def test_connect_get(self):
        msg = base64.urlsafe_b64encode(self.req(name="g")).rstrip(b"=").decode()
        r, data, _ = self.post("/web.W/Echo?encoding=proto&base64=1&connect=v1&message=" + msg,
                               None, None, method="GET")
        self.assertEqual(r.status, 200, data)
        self.assertEqual(self.Resp.FromString(data).text, "v1 hi g")
        # GET only for NO_SIDE_EFFECTS methods
        r, data, _ = self.post("/web.W/Fail?encoding=proto&base64=1&message=", None, None,
                               method="GET")
        self.assertEqual(r.status, 405, data)

    def test_connect_error_json_and_details(self):
        r, data, _ = self.post("/web.W/Fail", self.req(), "application/proto")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.getheader("content-type"), "application/json")
        e = json.loads(data)
        self.assertEqual(e["code"], "invalid_argument")
        self.assertEqual(e["message"], "bad name")
        self.assertEqual(e["details"][0]["type"], "google.rpc.BadRequest")
        raw = base64.b64decode(e["details"][0]["value"] + "==")
        self.assertIn(b"must not be empty", raw)

    def test_connect_compressed_request(self):
        r, data, _ = self.post("/web.W/Echo", gzip.compress(self.req(name="z")),
                               "application/proto", {"content-encoding": "gzip"})
        self.assertEqual(r.status, 200, data)
        self.assertEqual(self.Resp.FromString(data).text, "v1 hi z")

    def test_json_codec(self):
        """application/json, +json: canonical proto3 JSON both ways."""
        r, data, _ = self.post("/web.W/Echo", b'{"name": "j", "unknownField": 1}',
                               "application/json")
        self.assertEqual(r.status, 200, data)
        self.assertEqual(r.getheader("content-type"), "application/json")
        m = json.loads(data)
        self.assertEqual((m["text"], m["protocol"]), ("v1 hi j", "connect"))
        self.assertEqual(m["remaining"], -1)
        # an empty body is the empty message
        r, data, _ = self.post("/web.W/Echo", b"", "application/json")
        self.assertEqual(json.loads(data)["text"], "v1 hi ")
        # not valid for the type: invalid_argument, with the field's path
        r, data, _ = self.post("/web.W/Echo", b'{"n": "many"}', "application/json")
        self.assertEqual(r.status, 400, data)
        e = json.loads(data)
        self.assertEqual(e["code"], "invalid_argument")
        self.assertIn("n", e["message"])
        # GET with encoding=json
        q = "%7B%22name%22%3A%22q%22%7D"
        r, data, _ = self.post("/web.W/Echo?encoding=json&message=" + q, None, None,
                               method="GET")
        self.assertEqual((r.status, json.loads(data)["text"]), (200, "v1 hi q"))
        # streaming, both ways JSON
        r, data, _ = self.post("/web.W/Count", frame(b'{"n": 2}'), "application/connect+json")
        self.assertEqual(r.getheader("content-type"), "application/connect+json")
        fs = frames(data)
        self.assertEqual([json.loads(p).get("i") for f, p in fs if f == 0], [1, 2])
        self.assertEqual(json.loads(fs[-1][1]), {})
        r, data, _ = self.post("/web.W/Echo", frame(b'{"name": "w"}'), "application/grpc-web+json")
        self.assertEqual(r.getheader("content-type"), "application/grpc-web+json")
        fs = frames(data)
        self.assertEqual(json.loads(fs[0][1])["protocol"], "grpc-web")
        self.assertEqual(trailer_lines(fs[1][1])["grpc-status"], "0")

    def test_connect_compressed_answers(self):
        """Accept-Encoding (unary) and connect-accept-encoding (streams):
        answers of compression.min_bytes or more come back gzipped."""
        big = "n" * 2000
        r, data, _ = self.post("/web.W/Echo", self.req(name=big), "application/proto",
                               {"accept-encoding": "br, gzip"})
        self.assertEqual(r.getheader("content-encoding"), "gzip")
        self.assertEqual(self.Resp.FromString(gzip.decompress(data)).text, "v1 hi " + big)
        # small answers, and clients that do not accept it, get identity
        r, data, _ = self.post("/web.W/Echo", self.req(name="s"), "application/proto",
                               {"accept-encoding": "gzip"})
        self.assertIsNone(r.getheader("content-encoding"))
        self.assertEqual(self.Resp.FromString(data).text, "v1 hi s")
        r, data, _ = self.post("/web.W/Echo", self.req(name=big), "application/proto",
                               {"accept-encoding": "gzip;q=0"})
        self.assertIsNone(r.getheader("content-encoding"))
        r, data, _ = self.post("/web.W/Flood", frame(self.req(n=2, key="fz")),
                               "application/connect+proto",
                               {"connect-accept-encoding": "gzip"})
        self.assertEqual(r.getheader("connect-content-encoding"), "gzip")
        fs = frames(data)
        self.assertEqual([f for f, _ in fs], [1, 1, 2])
        self.assertEqual([self.Resp.FromString(gzip.decompress(p)).i for _, p in fs[:2]], [1, 2])
        self.assertEqual(json.loads(fs[2][1]), {})

    # --- gRPC-Web --------------------------------------------------------------
    def test_grpc_web_binary_unary(self):
        r, data, _ = self.grpc_web("/web.W/Echo", self.req(name="b"))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("content-type"), "application/grpc-web+proto")
        self.assertEqual(r.getheader("x-echo"), "h")
        fs = frames(data)
        self.assertEqual([f for f, _ in fs], [0, 0x80])
        m = self.Resp.FromString(fs[0][1])
        self.assertEqual((m.text, m.protocol), ("v1 hi b", "grpc-web"))
        t = trailer_lines(fs[1][1])
        self.assertEqual(t["grpc-status"], "0")
        self.assertEqual(t["x-trail"], "t")

    def test_grpc_web_text(self):
        r, data, _ = self.grpc_web("/web.W/Echo", self.req(name="t"), text=True)
        self.assertEqual(r.getheader("content-type"), "application/grpc-web-text+proto")
        # one padded base64 chunk per flush: decoded chunk by chunk
        fs = frames(text_chunks(data))
        m = self.Resp.FromString(fs[0][1])
        self.assertEqual((m.text, m.protocol), ("v1 hi t", "grpc-web-text"))
        self.assertEqual(trailer_lines(fs[-1][1])["grpc-status"], "0")
        # without Accept asking for text, the answer is binary
        r, data, _ = self.grpc_web("/web.W/Echo", self.req(name="t"), text=True,
                                   accept_text=False)
        self.assertEqual(r.getheader("content-type"), "application/grpc-web+proto")
        self.assertEqual(self.Resp.FromString(frames(data)[0][1]).text, "v1 hi t")
        # bad base64: 400
        r, data, _ = self.post("/web.W/Echo", b"AAA*", "application/grpc-web-text")
        self.assertEqual(r.status, 400, data)

    def test_grpc_web_trailers_only_error(self):
        r, data, _ = self.grpc_web("/web.W/Fail", self.req())
        self.assertEqual(r.status, 200)
        self.assertEqual(data, b"")
        self.assertEqual(r.getheader("grpc-status"), "3")
        self.assertEqual(r.getheader("grpc-message"), "bad name")
        details = r.getheader("grpc-status-details-bin")
        self.assertIn(b"must not be empty", base64.b64decode(details + "=" * (-len(details) % 4)))

    def test_server_streaming(self):
        r, data, _ = self.grpc_web("/web.W/Count", self.req(n=3))
        fs = frames(data)
        self.assertEqual([self.Resp.FromString(p).i for f, p in fs if f == 0], [1, 2, 3])
        self.assertEqual(trailer_lines(fs[-1][1])["grpc-status"], "0")
        # an error after messages: in the trailer frame
        r, data, _ = self.grpc_web("/web.W/Count", self.req(n=2, name="fail"))
        t = trailer_lines(frames(data)[-1][1])
        self.assertEqual((t["grpc-status"], t["grpc-message"]), ("5", "no more"))
        # Connect streaming: the end-of-stream frame
        r, data, _ = self.post("/web.W/Count", frame(self.req(n=2)), "application/connect+proto")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("content-type"), "application/connect+proto")
        fs = frames(data)
        self.assertEqual([f for f, _ in fs], [0, 0, 2])
        self.assertEqual(self.Resp.FromString(fs[0][1]).protocol, "connect")
        self.assertEqual(json.loads(fs[2][1]), {})
        r, data, _ = self.post("/web.W/Count", frame(self.req(n=1, name="fail")),
                               "application/connect+proto")
        end = json.loads(frames(data)[-1][1])
        self.assertEqual(end["error"], {"code": "not_found", "message": "no more"})

    def test_backpressure(self):
        """A client that does not read holds the handler back (h2o's
        generator asks for the next message only once the last is written);
        reading again lets it finish, every message there."""
        n = 4000  # 32 MiB, far past the socket buffers, windows and queues
        s = socket.create_connection(("127.0.0.1", self.http_port))
        self.addCleanup(s.close)
        body = frame(self.req(n=n, key="flood"))
        s.sendall(b"POST /web.W/Flood HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/grpc-web+proto\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(1.0)
        stalled = int(self.peek("flood"))
        self.assertLess(stalled, n // 2)
        time.sleep(0.3)
        self.assertLess(int(self.peek("flood")) - stalled, 10)  # not moving
        f = s.makefile("rb")
        while f.readline() not in (b"\r\n", b""):
            pass  # the head
        parts = []
        while True:  # chunked
            size = int(f.readline().strip(), 16)
            if size == 0:
                break
            parts.append(f.read(size))
            f.readline()
        fs = frames(b"".join(parts))
        self.assertEqual(sum(1 for fl, _ in fs if fl == 0), n)
        self.assertEqual(trailer_lines(fs[-1][1])["grpc-status"], "0")
        self.assertEqual(self.peek("flood"), str(n))

    def test_client_streaming_over_connect(self):
        body = b"".join(frame(self.req(n=n)) for n in (1, 2, 3))
        r, data, _ = self.post("/web.W/Total", body, "application/connect+proto")
        fs = frames(data)
        self.assertEqual(self.Resp.FromString(fs[0][1]).i, 6)
        self.assertEqual(json.loads(fs[-1][1]), {})

    # --- the conformance suite's edge cases -------------------------------------
    def test_edge_cases(self):
        r, _, _ = self.post("/web.W/Echo", self.req(), "image/jpeg")
        self.assertEqual(r.status, 415)
        r, _, _ = self.post("/web.W/Echo", self.req(), "application/proto", method="DELETE")
        self.assertEqual(r.status, 405)
        r, data, _ = self.post("/web.Nope/Echo", self.req(), "application/proto")
        self.assertEqual((r.status, json.loads(data)["code"]), (404, "unimplemented"))
        r, data, _ = self.grpc_web("/web.Nope/Echo", self.req())
        self.assertEqual(r.getheader("grpc-status"), "12")
        r, data, _ = self.post("/web.W/Echo", self.req(), "application/proto",
                               {"content-encoding": "foo"})
        self.assertEqual(json.loads(data)["code"], "unimplemented")
        r, _, _ = self.grpc_web("/web.W/Echo", self.req(), headers={"grpc-encoding": "foo"})
        self.assertEqual(r.getheader("grpc-status"), "12")
        # 0 or 2 request messages for unary and server streaming
        for path in ("/web.W/Echo", "/web.W/Count"):
            for body in (b"", frame(self.req()) * 2):
                r, _, _ = self.post(path, body, "application/grpc-web+proto")
                self.assertEqual(r.getheader("grpc-status"), "12", (path, body))
        for body in (b"", frame(self.req()) * 2):
            r, data, _ = self.post("/web.W/Count", body, "application/connect+proto")
            self.assertEqual(json.loads(frames(data)[-1][1])["error"]["code"], "unimplemented")
        # flag 0x01 with identity: internal
        r, _, _ = self.post("/web.W/Echo", frame(self.req(), flags=1),
                            "application/grpc-web+proto")
        self.assertEqual(r.getheader("grpc-status"), "13")
        r, data, _ = self.post("/web.W/Count", frame(self.req(), flags=1),
                               "application/connect+proto",
                               {"connect-content-encoding": "identity"})
        self.assertEqual(json.loads(frames(data)[-1][1])["error"]["code"], "internal")
        # a compressed message with its encoding is read
        r, data, _ = self.post("/web.W/Echo", frame(gzip.compress(self.req(name="gz")), flags=1),
                               "application/grpc-web+proto", {"grpc-encoding": "gzip"})
        self.assertEqual(self.Resp.FromString(frames(data)[0][1]).text, "v1 hi gz")
        # a body over limits.max_receive_bytes (and its base64 share)
        r, _, _ = self.post("/web.W/Echo", b"\0" * (200 * 1024), "application/proto")
        self.assertEqual(r.status, 413)
        # grpc-web-text has no JSON form
        r, _, _ = self.post("/web.W/Echo", b"", "application/grpc-web-text+json")
        self.assertEqual(r.status, 415)

    def test_cors_vary(self):
        """Every answer says Vary: Origin when http.cors.origins is set, with
        or without the CORS headers, so caches keep them apart."""
        for origin in (ORIGIN, "https://evil.example.com", None):
            h = {"origin": origin} if origin else {}
            r, _, _ = self.grpc_web("/web.W/Echo", self.req(), headers=h)
            self.assertEqual(r.getheader("vary"), "Origin", origin)
            self.assertEqual(r.getheader("access-control-allow-origin"),
                             ORIGIN if origin == ORIGIN else None)
            r, _, _ = self.post("/web.W/Echo", self.req(), "image/jpeg", h)
            self.assertEqual((r.status, r.getheader("vary")), (415, "Origin"), origin)

    def test_edge_cases_more(self):
        """The rest of the conformance suite's unexpected requests
        (connect_server_unexpected, grpc_web_server_unexpected,
        server_message_size)."""
        # Connect unary, a codec it does not serve: 415
        r, _, _ = self.post("/web.W/Echo", self.req(), "application/foo")
        self.assertEqual(r.status, 415)
        # gRPC-Web: DELETE is 405; an unknown codec 415 (not a gRPC-Web call)
        r, _, _ = self.post("/web.W/Echo", frame(self.req()), "application/grpc-web",
                            method="DELETE")
        self.assertEqual(r.status, 405)
        r, _, _ = self.post("/web.W/Echo", frame(self.req()), "application/grpc-web+foo")
        self.assertEqual(r.status, 415)
        # gRPC-Web, flag 0x01 with grpc-encoding: identity said outright
        r, _, _ = self.post("/web.W/Echo", frame(self.req(), flags=1),
                            "application/grpc-web+proto", {"grpc-encoding": "identity"})
        self.assertEqual(r.getheader("grpc-status"), "13")
        # text mode, unknown method
        r, data, _ = self.grpc_web("/web.Nope/Echo", self.req(), text=True)
        self.assertEqual(r.getheader("grpc-status"), "12")
        # Connect streaming, an encoding it does not know
        r, data, _ = self.post("/web.W/Count", frame(self.req(n=1), flags=1),
                               "application/connect+proto", {"connect-content-encoding": "foo"})
        self.assertEqual(json.loads(frames(data)[-1][1])["error"]["code"], "unimplemented")
        # flags a request must not carry: Connect's end-of-stream (0x02),
        # gRPC-Web's trailer frame (0x80)
        r, data, _ = self.post("/web.W/Count", frame(self.req(n=1), flags=2),
                               "application/connect+proto")
        self.assertEqual(json.loads(frames(data)[-1][1])["error"]["code"], "internal")
        r, _, _ = self.post("/web.W/Echo", frame(self.req(), flags=0x80),
                            "application/grpc-web+proto")
        self.assertEqual(r.getheader("grpc-status"), "13")
        # server_message_size: a request message of exactly
        # limits.max_receive_bytes (64 KiB) is served, 10 bytes more is
        # resource_exhausted in each protocol (a call's error, not HTTP's 413)
        limit = 64 * 1024
        at = self.req(name="x" * (limit - 4))
        self.assertEqual(len(at), limit)
        over = self.req(name="x" * (limit + 6))
        r, data, _ = self.post("/web.W/Size", at, "application/proto")
        self.assertEqual((r.status, self.Resp.FromString(data).i), (200, limit - 4))
        r, data, _ = self.post("/web.W/Size", over, "application/proto")
        self.assertEqual((r.status, json.loads(data)["code"]), (429, "resource_exhausted"))
        r, data, _ = self.grpc_web("/web.W/Size", at)
        self.assertEqual(self.Resp.FromString(frames(data)[0][1]).i, limit - 4)
        r, data, _ = self.grpc_web("/web.W/Size", over)
        self.assertEqual(r.getheader("grpc-status"), "8")
        r, data, _ = self.grpc_web("/web.W/Size", over, text=True)
        self.assertEqual(r.getheader("grpc-status"), "8")
        r, data, _ = self.post("/web.W/Count", frame(self.req(n=1, name="x" * (limit - 6))),
                               "application/connect+proto")
        self.assertEqual(json.loads(frames(data)[-1][1]), {})
        r, data, _ = self.post("/web.W/Count", frame(self.req(n=1, name="x" * (limit + 6))),
                               "application/connect+proto")
        self.assertEqual(json.loads(frames(data)[-1][1])["error"]["code"],
                         "resource_exhausted")
        # client streams: the first or a later message over the limit
        small = frame(self.req(n=1))
        for body in (frame(over) + small, small + frame(over)):
            r, data, _ = self.post("/web.W/Total", body, "application/connect+proto")
            self.assertEqual(json.loads(frames(data)[-1][1])["error"]["code"],
                             "resource_exhausted")

    # --- CORS ----------------------------------------------------------------------
    def test_cors(self):
        r, _, _ = self.post("/web.W/Echo", None, None, method="OPTIONS", headers={
            "origin": ORIGIN, "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.getheader("access-control-allow-origin"), ORIGIN)
        self.assertIn("POST", r.getheader("access-control-allow-methods"))
        allowed = r.getheader("access-control-allow-headers").lower()
        for h in ("content-type", "x-grpc-web", "grpc-timeout", "connect-timeout-ms",
                  "connect-protocol-version", "authorization"):
            self.assertIn(h, allowed)
        self.assertEqual(r.getheader("access-control-max-age"), "7200")
        r, _, _ = self.post("/web.W/Echo", None, None, method="OPTIONS", headers={
            "origin": "https://evil.example.com", "access-control-request-method": "POST"})
        self.assertEqual(r.status, 403)
        self.assertIsNone(r.getheader("access-control-allow-origin"))
        # the actual answer exposes the status headers (trailers-only errors)
        r, _, _ = self.grpc_web("/web.W/Fail", self.req(), headers={"origin": ORIGIN})
        self.assertEqual(r.getheader("access-control-allow-origin"), ORIGIN)
        exposed = r.getheader("access-control-expose-headers").lower()
        for h in ("grpc-status", "grpc-message", "grpc-status-details-bin"):
            self.assertIn(h, exposed)
        r, _, _ = self.grpc_web("/web.W/Echo", self.req(), headers={"origin": "https://x.org"})
        self.assertIsNone(r.getheader("access-control-allow-origin"))

    # --- deadlines, cancellation --------------------------------------------------
    def test_deadlines(self):
        t0 = time.monotonic()
        r, data, _ = self.post("/web.W/Slow", self.req(sleep=3, key="d1"), "application/proto",
                               {"connect-timeout-ms": "200"})
        self.assertLess(time.monotonic() - t0, 2)
        self.assertEqual((r.status, json.loads(data)["code"]), (504, "deadline_exceeded"))
        r, data, _ = self.grpc_web("/web.W/Slow", self.req(sleep=3, key="d2"),
                                   headers={"grpc-timeout": "200m"})
        self.assertEqual(r.getheader("grpc-status"), "4")
        # the handler sees the budget
        r, data, _ = self.post("/web.W/Echo", self.req(), "application/proto",
                               {"connect-timeout-ms": "5000"})
        left = self.Resp.FromString(data).remaining
        self.assertTrue(3 < left <= 5.1, left)

    def test_disconnect_cancels(self):
        s = socket.create_connection(("127.0.0.1", self.http_port))
        body = frame(self.req(sleep=10, key="gone"))
        s.sendall(b"POST /web.W/Slow HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/grpc-web+proto\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.monotonic() + 5
        while self.peek("gone") != "started" and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.peek("gone"), "started")
        s.close()
        deadline = time.monotonic() + 5
        while self.peek("gone") != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.peek("gone"), "cancelled")

    def test_h2_stream_reset_cancels(self):
        """h2c: a reset stream cancels its call; the connection lives on."""
        from hpack import Encoder
        from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, SettingsFrame
        body = frame(self.req(sleep=10, key="rst"))
        s = socket.create_connection(("127.0.0.1", self.http_port))
        self.addCleanup(s.close)
        hdrs = Encoder().encode([(":method", "POST"), (":scheme", "http"),
                                 (":path", "/web.W/Slow"), (":authority", "x"),
                                 ("content-type", "application/grpc-web+proto")])
        h = HeadersFrame(1, hdrs)
        h.flags.add("END_HEADERS")
        d = DataFrame(1, body)
        d.flags.add("END_STREAM")
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize() +
                  h.serialize() + d.serialize())
        deadline = time.monotonic() + 5
        while self.peek("rst") != "started" and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.peek("rst"), "started")
        s.sendall(RstStreamFrame(1, error_code=8).serialize())  # CANCEL
        deadline = time.monotonic() + 5
        while self.peek("rst") != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.peek("rst"), "cancelled")

    # --- protocol and peer: not spoofable -------------------------------------------
    def test_protocol_on_grpc_and_spoofing(self):
        fake = "0" * 64 + ";connect;ipv4:6.6.6.6:1"
        with self.server.channel() as ch:
            m = self.protos.unary(ch, "/web.W/Echo")(
                self.Req(name="g"), metadata=[("mw-loopback", fake)], timeout=5)
        self.assertEqual(m.protocol, "grpc")
        self.assertNotIn("6.6.6.6", m.peer)
        self.assertNotIn("mw-loopback", m.md)
        # nor from an HTTP client
        r, data, _ = self.post("/web.W/Echo", self.req(), "application/proto",
                               {"mw-loopback": fake})
        m = self.Resp.FromString(data)
        self.assertEqual(m.protocol, "connect")
        self.assertNotIn("6.6.6.6", m.peer)
        self.assertNotIn("mw-loopback", m.md)

    # --- real clients ------------------------------------------------------------
    def test_buf_curl(self):
        buf = mwtest.tool("buf")
        fd, desc = tempfile.mkstemp(suffix=".binpb")
        os.close(fd)
        self.addCleanup(os.unlink, desc)
        with open(desc, "wb") as f:
            f.write(self.protos.fds.SerializeToString())
        base = "http://127.0.0.1:%d" % self.http_port
        for proto in ("connect", "grpcweb"):
            r = subprocess.run([buf, "curl", "--schema", desc, "--protocol", proto,
                                "-d", '{"name": "buf"}', base + "/web.W/Echo"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = json.loads(r.stdout)
            self.assertEqual(out["text"], "v1 hi buf")
            self.assertEqual(out["protocol"], "connect" if proto == "connect" else "grpc-web")
            r = subprocess.run([buf, "curl", "--schema", desc, "--protocol", proto,
                                "-d", '{"n": 2}', base + "/web.W/Count"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.count('"i"'), 2, r.stdout)
            r = subprocess.run([buf, "curl", "--schema", desc, "--protocol", proto,
                                "-d", "{}", base + "/web.W/Fail"],
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("invalid_argument", r.stderr)

    def test_connect_es_clients(self):
        """Connect-ES's Node transports (Connect binary and JSON, gRPC-Web; HTTP/1.1)
        with a runtime registry built from a descriptor set."""
        mwtest.tool("buf")  # the tools are installed (the same npm cache)
        fd, desc = tempfile.mkstemp(suffix=".binpb")
        os.close(fd)
        self.addCleanup(os.unlink, desc)
        with open(desc, "wb") as f:
            f.write(self.protos.fds.SerializeToString())
        env = dict(os.environ, NODE_PATH=os.path.join(mwtest.SOURCE_DIR, "tests", "tools",
                                                      "node_modules"))
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_client.cjs")
        r = subprocess.run(["node", script, "http://127.0.0.1:%d" % self.http_port, desc],
                           capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        for name, proto in (("connect", "connect"), ("connectjson", "connect"),
                            ("grpcweb", "grpc-web")):
            res = out[name]
            self.assertEqual(res["echo"]["text"], "v1 hi " + name)
            self.assertEqual(res["echo"]["protocol"], proto)
            self.assertIn("x-from=node", res["echo"]["md"])
            self.assertEqual(res["count"], [1, 2, 3])
            self.assertEqual(res["fail"], {"code": "InvalidArgument", "message": "bad name",
                                           "details": 1})
            self.assertEqual(res["deadline"], "DeadlineExceeded")

    # --- reload ------------------------------------------------------------------------
    def test_reload_during_calls(self):
        out = {}

        def slow():
            out["r"] = self.post("/web.W/Slow", self.req(sleep=1.0, key="rl"),
                                 "application/proto")

        t = threading.Thread(target=slow)
        t.start()
        deadline = time.monotonic() + 5
        while self.peek("rl") != "started" and time.monotonic() < deadline:
            time.sleep(0.02)
        n = self.server.logs().count("reloaded (")
        self.dir.write("web.lua", LUA.replace('VERSION = "v1"', 'VERSION = "v2"'))
        self.addCleanup(self.dir.write, "web.lua", LUA)
        deadline = time.monotonic() + 10
        while self.server.logs().count("reloaded (") <= n and time.monotonic() < deadline:
            time.sleep(0.05)
        r, data, _ = self.post("/web.W/Echo", self.req(name="r"), "application/proto")
        self.assertEqual(self.Resp.FromString(data).text, "v2 hi r")
        t.join(10)
        r, data, _ = out["r"]
        self.assertEqual(r.status, 200, data)
        self.assertEqual(self.Resp.FromString(data).text, "v1")
        # back to v1 for the other tests
        n = self.server.logs().count("reloaded (")
        self.dir.write("web.lua", LUA)
        deadline = time.monotonic() + 10
        while self.server.logs().count("reloaded (") <= n and time.monotonic() < deadline:
            time.sleep(0.05)
        # the http section is read at start: a change to it says so
        with open(self.server.config_path, "w") as f:
            f.write(CONFIG.replace("https://app.example.com", "https://other.example.com"))
        n = self.server.logs().count("reloaded (")
        os.kill(self.server.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.server.logs().count("reloaded (") <= n and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("http changes take effect at the next start", self.server.logs())
        with open(self.server.config_path, "w") as f:
            f.write(CONFIG)


class _Recorder:
    """A TCP proxy on loopback that keeps every byte each way, to check what
    a real client and the server put on the wire."""

    def __init__(self, port):
        self.port = port
        self.up, self.down = bytearray(), bytearray()
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.port))
            for a, b, sink in ((c, u, self.up), (u, c, self.down)):
                threading.Thread(target=self._pump, args=(a, b, sink), daemon=True).start()

    def _pump(self, src, dst, sink):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    sink += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


class GrpcWebCompressionTest(unittest.TestCase):
    """gRPC-Web answers compressed per message (flag 0x01, grpc-encoding) by
    the compression section, for clients whose grpc-accept-encoding allows
    it; compressed requests read; connect-node's gRPC-Web transport with gzip
    both ways, its wire recorded."""

    CONFIG = CONFIG + """
compression:
  algorithm: gzip
  min_bytes: 1KiB
  methods:
    /web.W/Echo: {algorithm: deflate}
    /web.W/Count: {min_bytes: 0}
    /web.W/Peek: {algorithm: none, min_bytes: 0}
"""

    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"web.proto": PROTO, "web.lua": LUA})
        cls.protos = Protos(cls.dir.path)
        cls.Req = cls.protos.msg("web.Req")
        cls.Resp = cls.protos.msg("web.Resp")
        cls.server = Server(cls.dir.path, config=cls.CONFIG)
        cls.server.start()
        deadline = time.monotonic() + 10
        while "http listening on " not in cls.server.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        addr = cls.server.stdout().split("http listening on ")[1].split()[0]
        cls.http_port = int(addr.rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        cls.dir.cleanup()
        found = [m for m in mwtest.SANITIZER_MARKS if m in cls.server.logs()]
        if rc != 0 or found:
            raise mwtest.ServerError("moonwire did not stop cleanly (exit %s) %s\n%s"
                                     % (rc, found, cls.server.logs()))

    def call(self, path, req, accept=None, text=False):
        h = {"content-type": "application/grpc-web+proto"}
        if accept is not None:
            h["grpc-accept-encoding"] = accept
        body = frame(self.Req(**req).SerializeToString())
        if text:
            h["content-type"] = "application/grpc-web-text"
            h["accept"] = "application/grpc-web-text"
            body = base64.b64encode(body)
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        c.request("POST", path, body, h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, frames(text_chunks(data) if text else data)

    def test_per_message_compression(self):
        # the section's gzip, for messages of min_bytes or more
        r, fs = self.call("/web.W/Flood", {"n": 2, "key": "gz"}, "identity, gzip")
        self.assertEqual(r.getheader("grpc-encoding"), "gzip")
        self.assertEqual([f for f, _ in fs], [1, 1, 0x80])
        self.assertLess(len(fs[0][1]), 200)
        self.assertEqual([(m.i, len(m.text)) for m in
                          (self.Resp.FromString(gzip.decompress(p)) for _, p in fs[:2])],
                         [(1, 8192), (2, 8192)])
        self.assertEqual(trailer_lines(fs[2][1])["grpc-status"], "0")
        # a client that accepts only the other algorithm gets that one
        r, fs = self.call("/web.W/Flood", {"n": 1, "key": "df"}, "deflate")
        self.assertEqual(r.getheader("grpc-encoding"), "deflate")
        self.assertEqual(self.Resp.FromString(zlib.decompress(fs[0][1])).i, 1)
        # none accepted, or no header: identity
        for accept in (None, "identity", "gzip;q=0"):
            r, fs = self.call("/web.W/Flood", {"n": 1, "key": "id"}, accept)
            self.assertIsNone(r.getheader("grpc-encoding"), accept)
            self.assertEqual([f for f, _ in fs], [0, 0x80])
        # small messages go uncompressed, each message deciding on its own
        r, fs = self.call("/web.W/Echo", {"name": "s"}, "gzip")
        self.assertEqual(r.getheader("grpc-encoding"), "gzip")
        self.assertEqual([f for f, _ in fs], [0, 0x80])
        self.assertEqual(self.Resp.FromString(fs[0][1]).text, "v1 hi s")

    def test_method_rules(self):
        big = "e" * 3000
        # Echo's rule says deflate: taken when accepted, else gzip
        r, fs = self.call("/web.W/Echo", {"name": big}, "gzip, deflate")
        self.assertEqual(r.getheader("grpc-encoding"), "deflate")
        self.assertEqual(self.Resp.FromString(zlib.decompress(fs[0][1])).text, "v1 hi " + big)
        r, fs = self.call("/web.W/Echo", {"name": big}, "gzip")
        self.assertEqual(r.getheader("grpc-encoding"), "gzip")
        self.assertEqual(self.Resp.FromString(gzip.decompress(fs[0][1])).text, "v1 hi " + big)
        # Count's min_bytes 0: even tiny messages
        r, fs = self.call("/web.W/Count", {"n": 2}, "gzip")
        self.assertEqual([f for f, _ in fs], [1, 1, 0x80])
        self.assertEqual(self.Resp.FromString(gzip.decompress(fs[1][1])).i, 2)
        # Peek's algorithm none wins over its min_bytes 0
        r, fs = self.call("/web.W/Peek", {"key": "nothing"}, "gzip")
        self.assertIsNone(r.getheader("grpc-encoding"))
        self.assertEqual([f for f, _ in fs], [0, 0x80])

    def test_compressed_requests(self):
        """Requests compressed per message are read: deflate, and gzip in
        text mode (base64 of the compressed envelope)."""
        msg = self.Req(name="d" * 2000).SerializeToString()
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        c.request("POST", "/web.W/Size", frame(zlib.compress(msg), flags=1),
                  {"content-type": "application/grpc-web+proto", "grpc-encoding": "deflate"})
        r = c.getresponse()
        fs = frames(r.read())
        self.assertEqual(self.Resp.FromString(fs[0][1]).i, 2000)
        c.request("POST", "/web.W/Size",
                  base64.b64encode(frame(gzip.compress(msg), flags=1)),
                  {"content-type": "application/grpc-web-text", "grpc-encoding": "gzip",
                   "accept": "application/grpc-web-text"})
        r = c.getresponse()
        fs = frames(text_chunks(r.read()))
        c.close()
        self.assertEqual(self.Resp.FromString(fs[0][1]).i, 2000)
        self.assertEqual(trailer_lines(fs[1][1])["grpc-status"], "0")

    def test_text_mode(self):
        big = "t" * 3000
        r, fs = self.call("/web.W/Echo", {"name": big}, "gzip", text=True)
        self.assertEqual(r.getheader("content-type"), "application/grpc-web-text+proto")
        self.assertEqual(r.getheader("grpc-encoding"), "gzip")
        self.assertEqual([f for f, _ in fs], [1, 0x80])
        self.assertEqual(self.Resp.FromString(gzip.decompress(fs[0][1])).text, "v1 hi " + big)

    def test_connect_node_gzip_both_ways(self):
        fd, desc = tempfile.mkstemp(suffix=".binpb")
        os.close(fd)
        self.addCleanup(os.unlink, desc)
        with open(desc, "wb") as f:
            f.write(self.protos.fds.SerializeToString())
        rec = _Recorder(self.http_port)
        self.addCleanup(rec.close)
        env = dict(os.environ, NODE_PATH=os.path.join(mwtest.SOURCE_DIR, "tests", "tools",
                                                      "node_modules"))
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web_gzip.cjs")
        r = subprocess.run(["node", script, "http://" + rec.addr, desc],
                           capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["echo"], len("v1 hi ") + 3000)
        self.assertEqual(out["flood"], [[1, 8192], [2, 8192], [3, 8192]])
        self.assertEqual(out["fail"], {"code": "InvalidArgument", "message": "bad name"})
        with rec.lock:
            up, down = bytes(rec.up).lower(), bytes(rec.down).lower()
        # the requests went compressed (3000 bytes of 'z' are a few dozen);
        # the client names its encoding on every request
        self.assertEqual(up.count(b"\r\ngrpc-encoding: gzip\r\n"), 3)
        self.assertIn(b"\r\ngrpc-accept-encoding: gzip", up)
        self.assertNotIn(b"z" * 100, up)
        # the answers too: Echo's (deflate rule, gzip accepted) and Flood's
        self.assertEqual(down.count(b"\r\ngrpc-encoding: gzip\r\n"), 2)
        self.assertNotIn(b"x" * 100, down)
        self.assertNotIn(b"z" * 100, down)
        self.assertLess(len(down), 8192)


class BoundsTest(unittest.TestCase):
    """http.timeout closes a client that is slow to send its request;
    http.max_connections closes connections past the bound."""

    def test_slow_client_and_connection_cap(self):
        svc = service_dir(self, {"web.proto": PROTO, "web.lua": LUA})
        cfg = CONFIG.replace("  listen: 127.0.0.1:0\n",
                             "  listen: 127.0.0.1:0\n  timeout: 500ms\n  max_connections: 2\n")
        with Server(svc, config=cfg) as s:
            deadline = time.monotonic() + 10
            while "http listening on " not in s.stdout() and time.monotonic() < deadline:
                time.sleep(0.02)
            port = int(s.stdout().split("http listening on ")[1].split()[0].rsplit(":", 1)[1])
            slow = socket.create_connection(("127.0.0.1", port))
            slow.sendall(b"POST /web.W/Echo HTTP/1.1\r\nHost: x\r\n")  # and no more
            other = socket.create_connection(("127.0.0.1", port))
            time.sleep(0.1)
            # a third connection is closed as it is accepted
            third = socket.create_connection(("127.0.0.1", port))
            third.settimeout(5)
            self.assertEqual(third.recv(1), b"")
            third.close()
            t0 = time.monotonic()
            slow.settimeout(5)
            while slow.recv(4096):  # h2o may answer 408 first; then it closes
                pass
            self.assertLess(time.monotonic() - t0, 3)
            slow.close()
            other.close()
            self.assertTrue(s.wait_log("http: 2 connections open (http.max_connections)"),
                            s.logs())


class DrainTest(unittest.TestCase):
    """SIGTERM: an HTTP call in flight finishes; a new one is told the
    server is shutting down (503 unavailable), without internal details."""

    def test_drain(self):
        svc = service_dir(self, {"web.proto": PROTO, "web.lua": LUA})
        protos = Protos(svc.path)
        Req, Resp = protos.msg("web.Req"), protos.msg("web.Resp")
        with Server(svc, config=CONFIG) as s:
            deadline = time.monotonic() + 10
            while "http listening on " not in s.stdout() and time.monotonic() < deadline:
                time.sleep(0.02)
            port = int(s.stdout().split("http listening on ")[1].split()[0].rsplit(":", 1)[1])

            def call(req):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("POST", "/web.W/Slow", req.SerializeToString(),
                          {"content-type": "application/proto"})
                r = c.getresponse()
                data = r.read()
                c.close()
                return r.status, data

            out = {}
            t = threading.Thread(target=lambda: out.update(r=call(Req(sleep=1.0, key="dr"))))
            t.start()
            with s.channel() as ch:
                peek = protos.unary(ch, "/web.W/Peek")
                deadline = time.monotonic() + 5
                while peek(Req(key="dr"), timeout=5).text != "started" and \
                        time.monotonic() < deadline:
                    time.sleep(0.02)
            os.kill(s.pid, signal.SIGTERM)
            self.assertTrue(s.wait_log("draining"))
            time.sleep(0.2)
            status, body = call(Req(sleep=0, key="late"))
            self.assertEqual(status, 503, body)
            self.assertEqual(json.loads(body), {"code": "unavailable",
                                                "message": "the server is shutting down"})
            t.join(10)
            status, body = out["r"]
            self.assertEqual(status, 200, body)
            self.assertEqual(Resp.FromString(body).text, "v1")
            s.proc.wait(10)
            self.assertIn("stopped", s.logs())


class TlsTest(unittest.TestCase):
    """http.tls: HTTPS with ALPN (h2 and http/1.1), the files checked at
    start."""

    def test_https_alpn(self):
        from test_tls import PKI
        import ssl
        tmp = tempfile.mkdtemp(prefix="mw-web-tls-")
        self.addCleanup(subprocess.run, ["rm", "-rf", tmp])
        pki = PKI(tmp)
        pki.ca("ca", "Moonwire Test CA")
        pki.issue("server", "ca", "localhost", ["DNS:localhost", "IP:127.0.0.1"], "serverAuth")
        svc = service_dir(self, {"web.proto": PROTO, "web.lua": LUA})
        protos = Protos(svc.path)
        cfg = CONFIG.replace("  listen: 127.0.0.1:0\n", "  listen: 127.0.0.1:0\n  tls: {cert: %s, key: %s}\n"
                             % (pki.path("server.pem"), pki.path("server.key")))
        with Server(svc, config=cfg) as s:
            deadline = time.monotonic() + 10
            while "http listening on " not in s.stdout() and time.monotonic() < deadline:
                time.sleep(0.02)
            port = int(s.stdout().split("http listening on ")[1].split()[0].rsplit(":", 1)[1])
            for alpn in (["h2", "http/1.1"], ["http/1.1"]):
                ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
                ctx.set_alpn_protocols(alpn)
                with socket.create_connection(("127.0.0.1", port)) as raw:
                    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                        self.assertEqual(tls.selected_alpn_protocol(), alpn[0])
            ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
            c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
            c.request("POST", "/web.W/Echo", protos.msg("web.Req")(name="s").SerializeToString(),
                      {"content-type": "application/proto"})
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(protos.msg("web.Resp").FromString(r.read()).text, "v1 hi s")
            c.close()
            # HTTP/2 over TLS, as browsers speak it
            r = subprocess.run(["curl", "-s", "--http2", "--cacert", pki.path("ca.pem"),
                                "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                "-H", "content-type: application/proto", "--data-binary", "",
                                "https://localhost:%d/web.W/Echo" % port],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.stdout, "2 200", r.stderr)
        # a key that is not the certificate's: refused at start, by file name
        pki.issue("other", "ca", "localhost", ["DNS:localhost"], "serverAuth")
        bad = CONFIG.replace("  listen: 127.0.0.1:0\n", "  listen: 127.0.0.1:0\n  tls: {cert: %s, key: %s}\n"
                             % (pki.path("server.pem"), pki.path("other.key")))
        with self.assertRaises(mwtest.ServerError) as e:
            Server(svc, config=bad).start()
        self.assertIn("http.tls:", str(e.exception))


class ReadmeCurlTest(unittest.TestCase):
    """The README's curl lines, as written but for the port, against
    helloworld served with --http (what `make run` passes)."""

    def test_readme_curl(self):
        with open(os.path.join(mwtest.SOURCE_DIR, "README.md")) as f:
            text = f.read()
        section = text.split("## From a browser, or curl", 1)[1].split("\n## ", 1)[0]
        # (the REST rule's line needs its own config: test_readme runs it)
        lines = [l.strip() for l in section.splitlines()
                 if l.strip().startswith(("curl ", "printf ")) and "/v1/" not in l]
        self.assertEqual(len(lines), 3, lines)
        with Server(mwtest.example("helloworld"), args=["--http", "127.0.0.1:0"]) as s:
            deadline = time.monotonic() + 10
            while "http listening on " not in s.stdout() and time.monotonic() < deadline:
                time.sleep(0.02)
            addr = s.stdout().split("http listening on ")[1].split()[0]
            outs = []
            for line in lines:
                r = subprocess.run(["bash", "-c", line.replace("127.0.0.1:8080", addr)],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                outs.append(" ".join(r.stdout.split()))
        # what the README says each prints
        self.assertEqual(outs[0], section.split("prints `", 1)[1].split("`", 1)[0])
        envelope = section.split("prints the reply's envelope, `", 1)[1].split("`", 1)[0]
        trailer = section.split("then the trailer frame's `", 1)[1].split("`", 1)[0]
        self.assertIn("H e l l o w o r l d", outs[1])
        self.assertTrue(outs[1].startswith(" ".join(envelope.split())[:13]), outs[1])
        self.assertIn("g r p c - s t a t u s : 0", outs[1])
        self.assertIn("200 \\0 \\0 \\0 017", outs[1])
        self.assertIn("grpc-status:0", trailer)
        text_mode = section.split("Text mode", 1)[1].split("prints `", 1)[1].split("`", 1)[0]
        self.assertEqual(outs[2], text_mode)


if __name__ == "__main__":
    unittest.main()
