"""Stub mode's upstream: bidi calls relayed both ways as messages arrive
(metadata, status and cancellation too), recorded as stubs that answer the
same; an upstream reached over TLS (verified, mutual)."""

import os
import queue
import tempfile

import grpc

import mwtest
from mwtest import Protos, Server
from test_tls import PKI

PROTO = """
syntax = "proto3";
package hello;
message HelloRequest { string name = 1; int64 n = 2; }
message HelloReply { string message = 1; int64 n = 2; }
service Greeter {
  rpc SayHello(HelloRequest) returns (HelloReply);
  rpc Chat(stream HelloRequest) returns (stream HelloReply);
}
"""

# The real server: says hello first, answers each message as it comes
# (twice for "two"), fails on "boom", and logs a cancellation.
REAL_LUA = """
local mw = require "moonwire"
local Greeter = mw.service "hello.Greeter"

function Greeter.SayHello(req, ctx)
  return {message = "real hello " .. req.name, n = req.n + 1}
end

function Greeter.Chat(stream, ctx)
  ctx:on_cancel(function() mw.log.info("upstream chat cancelled") end)
  ctx:set_header("x-up", ctx.metadata["x-tenant"] or "none")
  stream:send{message = "welcome"}
  local k = 0
  for m in stream:iter() do
    k = k + 1
    if m.name == "boom" then mw.fail(mw.FAILED_PRECONDITION, "boom at " .. k) end
    stream:send{message = "re " .. m.name, n = k}
    if m.name == "two" then stream:send{message = "again " .. m.name, n = k} end
  end
  ctx:set_trailer("x-up-end", tostring(k))
  stream:send{message = "bye", n = k}
end
"""


class PingPong:
    """A bidi call driven one message at a time: send, then read what the
    server answers before sending the next (a relay that waited for the
    half-close would never answer)."""

    def __init__(self, fn, metadata=()):
        self.q = queue.Queue()

        def gen():
            while True:
                x = self.q.get()
                if x is None:
                    return
                yield x
        self.call = fn(gen(), timeout=15, metadata=list(metadata))

    def send(self, msg):
        self.q.put(msg)

    def recv(self, n=1):
        return [next(self.call) for _ in range(n)]

    def close(self):
        self.q.put(None)
        return list(self.call)


class BidiUpstream(mwtest.TestCase):
    def converse(self, protos, ch):
        """The same conversation against the upstream or the recorded stubs:
        the replies, the metadata, and the status of a failing call."""
        Req = protos.msg("hello.HelloRequest")
        chat = protos.bidi(ch, "/hello.Greeter/Chat")
        p = PingPong(chat, metadata=[("x-tenant", "acme")])
        p.send(Req(name="one"))
        got = [(m.message, m.n) for m in p.recv(2)]  # the welcome came before it
        p.send(Req(name="two"))
        got += [(m.message, m.n) for m in p.recv(2)]
        got += [(m.message, m.n) for m in p.close()]
        meta = dict(p.call.initial_metadata()), dict(p.call.trailing_metadata())
        f = PingPong(chat)
        f.send(Req(name="x"))
        f.recv(2)
        f.send(Req(name="boom"))
        with self.assertRaises(grpc.RpcError) as cm:
            f.close()
        return got, meta, (cm.exception.code(), cm.exception.details())

    def test_relay_record_replay(self):
        with mwtest.ServiceDir({"hello.proto": PROTO, "real.lua": REAL_LUA}) as real_dir, \
                mwtest.ServiceDir({"hello.proto": PROTO}) as mock_dir, \
                tempfile.TemporaryDirectory(prefix="mw-e2e-rec-") as rec:
            protos = Protos(real_dir)
            with Server(real_dir) as real:
                with Server(mock_dir, args=["--upstream", real.target(), "--record", rec]) as mock:
                    got, meta, failed = self.converse(protos, mock.channel())
                    self.assertEqual(got, [("welcome", 0), ("re one", 1), ("re two", 2),
                                           ("again two", 2), ("bye", 2)], mock.logs())
                    self.assertEqual(meta[0].get("x-up"), "acme")  # request metadata went up
                    self.assertEqual(meta[1].get("x-up-end"), "2")  # trailers came back
                    self.assertEqual(failed, (grpc.StatusCode.FAILED_PRECONDITION, "boom at 2"))
                    # the client cancels: the upstream's call is cancelled at once
                    Req = protos.msg("hello.HelloRequest")
                    c = PingPong(protos.bidi(mock.channel(), "/hello.Greeter/Chat"))
                    c.send(Req(name="one"))
                    c.recv(2)
                    c.call.cancel()
                    real.wait_log("upstream chat cancelled", timeout=5)
            files = sorted(os.listdir(rec))
            self.assertEqual(len(files), 2, files)  # a cancelled call is not recorded
            # the recorded stubs answer the same, with the upstream gone
            with mwtest.ServiceDir({"hello.proto": PROTO}) as replay_dir:
                for f in files:
                    with open(os.path.join(rec, f)) as src:
                        replay_dir.write("stubs/" + f, src.read())
                with Server(replay_dir) as replay:
                    again, _, failed_again = self.converse(protos, replay.channel())
                    self.assertEqual(again, got, replay.logs())
                    self.assertEqual(failed_again, failed)

    def test_stub_first_then_upstream(self):
        """A bidi method with stubs answers from them when the first message
        matches one, and goes upstream whole when it does not."""
        stub = """
- service: Greeter
  method: Chat
  input: {equals: {name: local}}
  output: {stream: [{message: from the stub}]}
"""
        with mwtest.ServiceDir({"hello.proto": PROTO, "real.lua": REAL_LUA}) as real_dir, \
                mwtest.ServiceDir({"hello.proto": PROTO, "chat.stubs.yaml": stub}) as mock_dir:
            protos = Protos(real_dir)
            Req = protos.msg("hello.HelloRequest")
            with Server(real_dir) as real, \
                    Server(mock_dir, config="upstream: %s\n" % real.target()) as mock:
                chat = protos.bidi(mock.channel(), "/hello.Greeter/Chat")
                self.assertEqual([m.message for m in chat(iter([Req(name="local")]), timeout=10)],
                                 ["from the stub"])
                self.assertEqual([m.message for m in chat(iter([Req(name="far")]), timeout=10)],
                                 ["welcome", "re far", "bye"])


class TlsUpstream(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="mw-e2e-uptls-")
        cls.pki = PKI(cls.tmp.name)
        cls.pki.ca("ca", "Moonwire Test CA")
        cls.pki.issue("server", "ca", "localhost", ["DNS:localhost", "IP:127.0.0.1"],
                      "serverAuth")
        cls.pki.issue("client", "ca", "mock-1", ["DNS:mock-1.test"], "clientAuth")
        cls.real_dir = mwtest.ServiceDir({"hello.proto": PROTO, "real.lua": REAL_LUA})
        cls.mock_dir = mwtest.ServiceDir({"hello.proto": PROTO})
        p = cls.pki.path
        cls.real = Server(cls.real_dir, config=(
            "tls:\n  cert: %s\n  key: %s\n  client_ca: %s\n  require_client_cert: true\n"
            % (p("server.pem"), p("server.key"), p("ca.pem"))))
        cls.real.start()
        cls.protos = Protos(cls.real_dir)

    @classmethod
    def tearDownClass(cls):
        cls.real.close()
        cls.real_dir.cleanup()
        cls.mock_dir.cleanup()
        cls.tmp.cleanup()

    def hello(self, mock):
        Req = self.protos.msg("hello.HelloRequest")
        return self.protos.unary(mock.channel(), "/hello.Greeter/SayHello")(
            Req(name="tls", n=1), timeout=10)

    def test_mutual_tls_upstream(self):
        p = self.pki.path
        cfg = ("upstream:\n  address: 127.0.0.1:%d\n  tls:\n    ca: %s\n    cert: %s\n"
               "    key: %s\n    server_name: localhost\n"
               % (self.real.port, p("ca.pem"), p("client.pem"), p("client.key")))
        with Server(self.mock_dir, config=cfg) as mock:
            r = self.hello(mock)
            self.assertEqual((r.message, r.n), ("real hello tls", 2), mock.logs())
            # bidi over the same TLS channel
            Req = self.protos.msg("hello.HelloRequest")
            chat = self.protos.bidi(mock.channel(), "/hello.Greeter/Chat")
            self.assertEqual([m.message for m in chat(iter([Req(name="a")]), timeout=10)],
                             ["welcome", "re a", "bye"])

    def test_tls_is_verified(self):
        p = self.pki.path
        # without the client certificate the upstream refuses the handshake
        no_cert = ("upstream:\n  address: 127.0.0.1:%d\n  tls: {ca: %s, server_name: localhost}\n"
                   % (self.real.port, p("ca.pem")))
        # the https:// form verifies against the system's roots, which do
        # not know the test CA
        for kw in ({"config": no_cert},
                   {"args": ["--upstream", "https://127.0.0.1:%d" % self.real.port]}):
            with Server(self.mock_dir, **kw) as mock:
                with self.assertRaises(grpc.RpcError) as cm:
                    self.hello(mock)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE, kw)

    def test_config_errors(self):
        for cfg, want in (("upstream: {tls: true}\n", "upstream: needs an address"),
                          ("upstream: {address: 127.0.0.1:1, tls: {cert: a.pem}}\n",
                           "cert and key go together"),
                          ("upstream: {address: 127.0.0.1:1, tls: {sni: x}}\n",
                           "unknown key 'sni'"),
                          ("upstream: https://nowhere\n", "invalid address")):
            with tempfile.TemporaryDirectory(prefix="mw-e2e-cfg-") as d:
                path = os.path.join(d, "moonwire.yaml")
                with open(path, "w") as f:
                    f.write(cfg)
                r = mwtest.run_cli("check", "-c", path, str(self.mock_dir))
                self.assertNotEqual(r.returncode, 0, cfg)
                self.assertIn(want, r.stderr, cfg)


if __name__ == "__main__":
    mwtest.main()
