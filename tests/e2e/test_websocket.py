"""WebSocket calls on the HTTP listener with the real binary: the `ws`
npm client (ws_client.cjs: bidi and client streaming in JSON and
protobuf, fragments, ping, an error status, a refused origin), and a
hand-made RFC 6455 client here for what a good client never sends
(unmasked, oversized and bad JSON frames), metadata from headers and the
query, deadlines, cancellation by disconnect and backpressure."""

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import tempfile
import time
import unittest

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package wst;

message Msg { string text = 1; int32 n = 2; string protocol = 3; string peer = 4;
              string md = 5; double sleep = 6; string key = 7; double remaining = 8; }

service W {
  rpc Echo(Msg) returns (Msg);
  rpc Count(Msg) returns (stream Msg);
  rpc Total(stream Msg) returns (Msg);
  rpc Chat(stream Msg) returns (stream Msg);
  rpc Fail(Msg) returns (Msg);
  rpc Hold(stream Msg) returns (Msg);
  rpc Peek(Msg) returns (Msg);
}
"""

LUA = """
local mw = require "moonwire"
local W = mw.service "wst.W"
local marks = mw.shared.marks

local function md_of(ctx)
  local md = {}
  for k, v in pairs(ctx.metadata) do md[#md + 1] = k .. "=" .. v end
  table.sort(md)
  return table.concat(md, ",")
end

function W.Echo(req, ctx)
  local left = ctx:remaining()
  return {text = req.text, protocol = ctx.protocol, peer = ctx.peer, md = md_of(ctx),
          remaining = left == math.huge and -1 or left}
end

function W.Count(req, stream, ctx)
  for i = 1, req.n do stream:send{n = i, protocol = ctx.protocol} end
end

function W.Total(stream)
  local n = 0
  for m in stream:iter() do n = n + m.n end
  return {n = n}
end

function W.Chat(stream, ctx)
  ctx:set_trailer("x-trail", "t")
  for m in stream:iter() do
    stream:send{text = m.text, n = m.n, protocol = ctx.protocol, md = md_of(ctx)}
  end
end

function W.Fail(req)
  mw.fail(mw.INVALID_ARGUMENT, "bad name", {mw.details.BadRequest{name = "must not be empty"}})
end

-- Takes one message, then waits (sleep) before taking the rest.
function W.Hold(stream, ctx)
  local first = stream:recv()
  ctx:on_cancel(function() marks:set(first.key, "cancelled") end)
  marks:set(first.key, "started")
  mw.sleep(first.sleep)
  marks:set(first.key, "slept")
  local n = 1
  for _ in stream:iter() do n = n + 1 end
  marks:set(first.key, "finished " .. n)
  return {n = n}
end

function W.Peek(req)
  return {text = tostring(marks:get(req.key))}
end
"""

CONFIG = """
shared:
  marks: {size: 1MiB}
limits:
  max_receive_bytes: 64KiB
http:
  listen: 127.0.0.1:0
  cors:
    origins: ["https://app.example.com", "http://127.0.0.1:9"]
"""

ORIGIN = "https://app.example.com"


class WS:
    """A minimal RFC 6455 client over a plain socket, which can also break
    the rules on purpose."""

    def __init__(self, port, path, headers=None, protocols=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1)
            if not chunk:
                break
            head += chunk
        self.head = head.decode("latin-1")
        self.status = int(self.head.split(" ")[1]) if head else 0
        self.buf = b""
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            assert ("sec-websocket-accept: " + want).lower() in self.head.lower(), self.head

    def send(self, op, payload=b"", fin=True, mask=True):
        self.s.sendall(self.frame(op, payload, fin, mask))

    @staticmethod
    def frame(op, payload=b"", fin=True, mask=True):
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload)
        b0 = (0x80 if fin else 0) | op
        m = 0x80 if mask else 0
        if n < 126:
            head = struct.pack(">BB", b0, m | n)
        elif n < 65536:
            head = struct.pack(">BBH", b0, m | 126, n)
        else:
            head = struct.pack(">BBQ", b0, m | 127, n)
        if mask:
            k = os.urandom(4)
            km = (k * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(km, "big")).to_bytes(n, "big")
            head += k
        return head + payload

    def text(self, s):
        self.send(1, s)

    def binary(self, b):
        self.send(2, b)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buf += chunk

    def recv(self):
        """(opcode, payload) of the next frame (server frames are unmasked)."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert not (b1 & 0x80), "server frames must not be masked"
        n, at = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, at = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(at + n)
        payload = self.buf[at:at + n]
        self.buf = self.buf[at + n:]
        return b0 & 0x0F, payload

    def until_close(self):
        """Every frame up to the close: (messages, status dict, close code, reason)."""
        msgs, status = [], None
        while True:
            op, p = self.recv()
            if op == 8:
                code = struct.unpack(">H", p[:2])[0] if len(p) >= 2 else None
                return msgs, status, code, p[2:].decode()
            if op in (1, 2):
                msgs.append((op, p))
        return msgs, status, None, None

    def close(self):
        self.s.close()


def status_of(msgs, json_mode=True):
    """Splits frames into messages and the status frame (the other type)."""
    status_op = 2 if json_mode else 1
    out, status = [], None
    for op, p in msgs:
        if op == status_op:
            status = json.loads(p.decode())
        else:
            out.append(json.loads(p.decode()) if op == 1 else p)
    return out, status


class WebSocketTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"wst.proto": PROTO, "wst.lua": LUA})
        cls.protos = Protos(cls.dir.path)
        cls.Msg = cls.protos.msg("wst.Msg")
        cls.server = Server(cls.dir.path, config=CONFIG)
        cls.server.start()
        deadline = time.monotonic() + 10
        while "http listening on " not in cls.server.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        addr = cls.server.stdout().split("http listening on ")[1].split()[0]
        cls.port = int(addr.rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.dir.cleanup()

    def ws(self, path, **kw):
        w = WS(self.port, path, **kw)
        self.addCleanup(w.close)
        return w

    def peek(self, key):
        ch = self.server.channel()
        return self.protos.unary(ch, "/wst.W/Peek")(self.Msg(key=key), timeout=5).text

    def wait_mark(self, key, want, timeout=5.0):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.peek(key)
            if got == want:
                return
            time.sleep(0.05)
        self.fail("mark %s: %r, not %r" % (key, got, want))

    # --- the ws client ----------------------------------------------------------
    def test_ws_client(self):
        """Bidi (JSON, protobuf), client and server streaming, an error and a
        refused origin, with the `ws` npm client."""
        mwtest.tool("buf")  # the tools are installed
        fd, desc = tempfile.mkstemp(suffix=".binpb")
        os.close(fd)
        self.addCleanup(os.unlink, desc)
        with open(desc, "wb") as f:
            f.write(self.protos.fds.SerializeToString())
        env = dict(os.environ, NODE_PATH=os.path.join(mwtest.SOURCE_DIR, "tests", "tools",
                                                      "node_modules"))
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ws_client.cjs")
        r = subprocess.run(["node", script, "ws://127.0.0.1:%d" % self.port, desc, ORIGIN],
                           capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)

        b = out["bidiJson"]
        self.assertEqual(b["protocol"], "moonwire.json")
        self.assertEqual(b["interleaved"], ["a", "b", "c"])
        self.assertEqual(b["messages"], [])
        self.assertEqual(b["status"], {"metadata": {"x-trail": ["t"]}})
        self.assertEqual(b["close"], {"code": 1000, "reason": ""})

        p = out["bidiProto"]
        self.assertEqual(p["protocol"], "moonwire.proto")
        self.assertTrue(p["pong"])
        self.assertEqual([(m["text"], m["n"], m["protocol"]) for m in p["messages"]],
                         [("fragmented", 7, "websocket"), ("whole", 8, "websocket")])
        self.assertEqual(p["close"]["code"], 1000)

        self.assertEqual(out["total"]["messages"], [{"n": 6}])
        self.assertEqual(out["total"]["close"]["code"], 1000)
        self.assertEqual([m["n"] for m in out["count"]["messages"]], [1, 2, 3])

        f = out["fail"]
        self.assertEqual(f["messages"], [])
        self.assertEqual(f["status"]["error"]["code"], "invalid_argument")
        self.assertEqual(f["status"]["error"]["message"], "bad name")
        self.assertEqual(len(f["status"]["error"]["details"]), 1)
        self.assertEqual(f["close"], {"code": 4003, "reason": "bad name"})

        self.assertEqual(out["evil"], {"http": 403})

    def test_chromium(self):
        """Headless Chromium's own WebSocket: a bidi exchange from a page of an
        allowed origin, metadata from the query, the status in a binary frame."""
        env = dict(os.environ, NODE_PATH=os.path.join(mwtest.SOURCE_DIR, "tests", "tools",
                                                      "node_modules"))
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ws_browser.cjs")
        r = subprocess.run(["node", script, "ws://127.0.0.1:%d/wst.W/Chat" % self.port],
                           capture_output=True, text=True, timeout=90, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out.get("protocol"), "moonwire.json", out)
        self.assertEqual([m["text"] for m in out["messages"]], ["one", "two"])
        self.assertEqual(out["messages"][0]["protocol"], "websocket")
        self.assertIn("x-user=browser", out["messages"][0]["md"])
        self.assertEqual(out["status"], {"metadata": {"x-trail": ["t"]}})
        self.assertEqual(out["close"], {"code": 1000, "reason": ""})

    # --- the hand-made client ----------------------------------------------------
    def test_metadata_protocol_peer(self):
        """Headers and md.* query parameters become metadata; ctx.protocol is
        websocket, ctx.peer the client; a unary call takes one message."""
        w = self.ws("/wst.W/Echo?md.x-user=bob&md.x-tag=a%20b&other=1",
                    headers={"X-From": "raw", "Origin": ORIGIN})
        self.assertEqual(w.status, 101)
        w.text(json.dumps({"text": "hi"}))
        msgs, status = status_of(w.until_close()[0])
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual(m["text"], "hi")
        self.assertEqual(m["protocol"], "websocket")
        self.assertTrue(m["peer"].startswith("ipv4:127.0.0.1:"), m["peer"])
        self.assertIn("x-user=bob", m["md"])
        self.assertIn("x-tag=a b", m["md"])
        self.assertIn("x-from=raw", m["md"])
        self.assertNotIn("sec-websocket", m["md"])
        self.assertNotIn("other", m["md"])
        self.assertEqual(m["remaining"], -1)
        self.assertEqual(status, {})

    def test_subprotocol_binary(self):
        """moonwire.proto: binary frames both ways, the status in a text frame."""
        w = self.ws("/wst.W/Total", protocols=["other", "moonwire.proto"])
        self.assertIn("sec-websocket-protocol: moonwire.proto", w.head.lower())
        for n in (4, 5):
            w.binary(self.Msg(n=n).SerializeToString())
        w.text("")
        frames, _, code, _ = w.until_close()
        msgs, status = status_of(frames, json_mode=False)
        self.assertEqual([self.Msg.FromString(m).n for m in msgs], [9])
        self.assertEqual(status, {})
        self.assertEqual(code, 1000)

    def test_unmasked_frame(self):
        w = self.ws("/wst.W/Chat")
        w.send(1, json.dumps({"text": "x"}), mask=False)
        frames, _, code, reason = w.until_close()
        _, status = status_of(frames)
        self.assertEqual(code, 1002)
        self.assertEqual(status["error"]["code"], "invalid_argument")
        self.assertEqual(status["error"]["message"], "client frames must be masked")
        self.assertEqual(reason, "client frames must be masked")

    def test_oversized_message(self):
        """Past limits.max_receive_bytes (64 KiB), in one frame or in fragments."""
        for fragments in (1, 3):
            w = self.ws("/wst.W/Chat?encoding=proto")
            big = self.Msg(text="x" * 70000).SerializeToString()
            step = len(big) // fragments + 1
            parts = [big[i:i + step] for i in range(0, len(big), step)]
            for i, part in enumerate(parts):
                w.send(2 if i == 0 else 0, part, fin=i == len(parts) - 1)
            frames, _, code, _ = w.until_close()
            _, status = status_of(frames, json_mode=False)
            self.assertEqual(code, 1009)
            self.assertEqual(status["error"]["code"], "resource_exhausted")
            self.assertIn("max_receive_bytes", status["error"]["message"])

    def test_bad_json_and_utf8(self):
        for payload, want in ((b'{"text": ', "request message"),
                              (b'{"nope": 1, "n": "x"}', "request message"),
                              (b'"\xff"', "not UTF-8")):
            w = self.ws("/wst.W/Chat")
            w.send(1, payload)
            frames, _, code, _ = w.until_close()
            _, status = status_of(frames)
            self.assertEqual(code, 1007, payload)
            self.assertEqual(status["error"]["code"], "invalid_argument")
            self.assertIn(want, status["error"]["message"])

    def test_protocol_errors(self):
        """A continuation with nothing to continue, a message after the end,
        a second request to a unary method."""
        cases = (("/wst.W/Chat", [(0, b"x")], "no message to continue"),
                 ("/wst.W/Chat", [(1, b""), (1, b"{}")], "after the end"),
                 ("/wst.W/Echo", [(1, b"{}"), (1, b"{}")], "one request message"))
        for path, frames_out, want in cases:
            w = self.ws(path)
            # in one write: the server reads them together, before the call can end
            w.s.sendall(b"".join(WS.frame(op, p) for op, p in frames_out))
            frames, _, code, _ = w.until_close()
            msgs, status = status_of(frames)
            self.assertEqual(code, 1002, want)
            self.assertIn(want, status["error"]["message"])

    def test_unknown_method_and_handshake(self):
        w = self.ws("/wst.W/Nope")
        self.assertEqual(w.status, 101)
        frames, _, code, _ = w.until_close()
        _, status = status_of(frames)
        self.assertEqual(code, 4012)
        self.assertEqual(status["error"]["code"], "unimplemented")
        w = self.ws("/wst.W/Chat", headers={"Origin": "https://evil.example"})
        self.assertEqual(w.status, 403)
        # no Sec-WebSocket-Key of 16 bytes, another version
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(b"GET /wst.W/Chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        head = s.recv(4096).decode()
        self.assertIn("426", head.split("\r\n")[0])
        self.assertIn("sec-websocket-version: 13", head.lower())

    def test_deadline(self):
        w = self.ws("/wst.W/Hold?timeout=200")
        w.text(json.dumps({"key": "ws-deadline", "sleep": 3}))
        t0 = time.monotonic()
        frames, _, code, _ = w.until_close()
        self.assertLess(time.monotonic() - t0, 2.5)
        _, status = status_of(frames)
        self.assertEqual(code, 4004)
        self.assertEqual(status["error"]["code"], "deadline_exceeded")

    def test_disconnect_cancels(self):
        """A hang-up mid-stream, and a close frame, cancel the handler."""
        for how in ("hangup", "close"):
            key = "ws-cancel-" + how
            w = self.ws("/wst.W/Hold")
            w.text(json.dumps({"key": key, "sleep": 5}))
            self.wait_mark(key, "started")
            if how == "close":
                w.send(8, struct.pack(">H", 1000))
                op, p = w.recv()
                self.assertEqual((op, struct.unpack(">H", p[:2])[0]), (8, 1000))
            else:
                w.close()
            self.wait_mark(key, "cancelled")

    def test_backpressure(self):
        """A handler that does not read holds the client back: the server does
        not read the socket past what the call took."""
        key = "ws-backpressure"
        w = self.ws("/wst.W/Hold?encoding=proto")
        w.binary(self.Msg(key=key, sleep=4).SerializeToString())
        self.wait_mark(key, "started")
        chunk = self.Msg(text="y" * 32000).SerializeToString()
        w.s.settimeout(1.0)
        sent = 0
        try:
            for _ in range(2000):  # 64 MB
                w.binary(chunk)
                sent += len(chunk)
        except socket.timeout:
            pass
        # Kernel buffers on loopback and HTTP/2's window on the internal
        # connection hold a few MB; the handler took one message.
        self.assertLess(sent, 32 * 1024 * 1024, "the server read %d bytes ahead" % sent)
        w.s.close()
        self.wait_mark(key, "cancelled")


class WebSocketStopTest(unittest.TestCase):
    def test_stop_with_open_sockets(self):
        """The server stops with WebSockets open (one mid-call, one idle): the
        calls end by the grace, the client gets a status and a close, the exit
        is clean."""
        d = mwtest.ServiceDir({"wst.proto": PROTO, "wst.lua": LUA})
        self.addCleanup(d.cleanup)
        server = Server(d.path, config=CONFIG + "shutdown: {grace: 300ms}\n")
        server.start()
        self.addCleanup(server.close)
        deadline = time.monotonic() + 10
        while "http listening on " not in server.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        port = int(server.stdout().split("http listening on ")[1].split()[0].rsplit(":", 1)[1])
        busy = WS(port, "/wst.W/Chat")
        self.addCleanup(busy.close)
        busy.text(json.dumps({"text": "x"}))
        self.assertEqual(busy.recv()[0], 1)
        idle = WS(port, "/wst.W/Hold")  # upgraded, nothing sent yet
        self.addCleanup(idle.close)
        self.assertEqual(idle.status, 101)
        t0 = time.monotonic()
        server.stop()  # raises on an unclean exit or a sanitizer report
        self.assertLess(time.monotonic() - t0, 10)
        frames, _, code, _ = busy.until_close()
        _, status = status_of(frames)
        # cancelled by the drain, or unavailable once the internal listener closed
        self.assertIn(code, (4001, 4014), status)
        self.assertIn(status["error"]["code"], ("cancelled", "unavailable"))
        self.assertIn("message", status["error"])


if __name__ == "__main__":
    unittest.main()
