"""Outbound streams (mw.client): a Lua relay in front of a Lua backend, for
every streaming kind. A handler waiting in an outbound stream's recv must
wake for each message, for the end of the stream and for its status, and
its cancellation must reach the backend."""
import os
import time

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package relay;
message M { string text = 1; int32 n = 2; }
service Echo {
  rpc Down(M) returns (stream M);        // n messages, then the end
  rpc Up(stream M) returns (M);          // how many, and the texts joined
  rpc Both(stream M) returns (stream M); // each message back as it comes
  rpc Fail(M) returns (stream M);        // one message, then NOT_FOUND
  rpc Hang(M) returns (stream M);        // nothing until cancelled
}
"""

BACKEND = """
local mw = require "moonwire"
local Echo = mw.service "relay.Echo"
function Echo.Down(req, stream)
  for i = 1, req.n do stream:send{text = req.text, n = i} end
end
function Echo.Up(stream)
  local n, texts = 0, {}
  for m in stream:iter() do n = n + 1; texts[n] = m.text end
  return {n = n, text = table.concat(texts, ",")}
end
function Echo.Both(stream)
  for m in stream:iter() do stream:send{text = m.text, n = m.n + 1} end
end
function Echo.Fail(req, stream)
  stream:send{text = "one"}
  mw.fail(mw.NOT_FOUND, "no more " .. req.text)
end
function Echo.Hang(req, stream, ctx)
  ctx:on_cancel(function() mw.log.info("hang cancelled", {id = req.text}) end)
  mw.sleep(30)
end
return Echo
"""

# Each relay method opens the same method on the backend and passes the
# messages through, so every wait of an outbound stream is exercised.
RELAY = """
local mw = require "moonwire"
local Echo = mw.service "relay.Echo"
local back = mw.client(os.getenv("BACKEND"))
function Echo.Down(req, stream)
  local s = back:call("/relay.Echo/Down", req)
  for m in s:iter() do stream:send(m) end
end
function Echo.Up(stream)
  local up = back:stream("/relay.Echo/Up")
  for m in stream:iter() do up:send(m) end
  up:close_send()
  local res, err = up:recv()
  if not res then mw.fail(err) end
  return res
end
function Echo.Both(stream)
  local up = back:stream("/relay.Echo/Both")
  for m in stream:iter() do
    up:send(m)
    local back_msg, err = up:recv()
    if not back_msg then mw.fail(err) end
    stream:send(back_msg)
  end
  up:close_send()
  local rest, err = up:recv()
  if rest ~= nil or err ~= nil then mw.fail(mw.INTERNAL, "expected the end, got " .. tostring(rest or err)) end
end
function Echo.Fail(req, stream)
  local s = back:call("/relay.Echo/Fail", req)
  local first = s:recv()
  stream:send(first)
  local none, err = s:recv()
  mw.fail(err)
end
function Echo.Hang(req, stream)
  local s = back:call("/relay.Echo/Hang", req)
  s:recv()
end
return Echo
"""


class ClientStreams(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.backend_dir = mwtest.ServiceDir({"relay.proto": PROTO, "echo.lua": BACKEND})
        cls.addClassCleanup(cls.backend_dir.cleanup)
        cls.relay_dir = mwtest.ServiceDir({"relay.proto": PROTO, "relay.lua": RELAY})
        cls.addClassCleanup(cls.relay_dir.cleanup)
        cls.backend = Server(cls.backend_dir).start()
        cls.addClassCleanup(cls.backend.close)
        cls.relay = Server(cls.relay_dir, config='client: {allow: ["%s"]}\n' % cls.backend.addr,
                           env={"BACKEND": cls.backend.addr}).start()
        cls.addClassCleanup(cls.relay.close)
        cls.protos = Protos(cls.relay_dir)
        cls.M = cls.protos.msg("relay.M")
        cls.ch = cls.relay.channel()

    @classmethod
    def tearDownClass(cls):
        servers = (cls.relay, cls.backend)
        codes = [s.stop() for s in servers]
        marks = [m for s in servers for m in mwtest.SANITIZER_MARKS if m in s.logs()]
        assert codes == [0, 0] and not marks, (codes, marks)

    def test_server_streaming(self):
        down = self.protos.server_stream(self.ch, "/relay.Echo/Down")
        t0 = time.monotonic()
        got = [(m.text, m.n) for m in down(self.M(text="x", n=5), timeout=10)]
        self.assertEqual(got, [("x", i) for i in range(1, 6)])
        self.assertLess(time.monotonic() - t0, 5)  # not ended by the deadline
        self.assertEqual(list(down(self.M(text="x", n=0), timeout=10)), [])

    def test_client_streaming(self):
        up = self.protos.client_stream(self.ch, "/relay.Echo/Up")
        res = up(iter([self.M(text=t) for t in "abc"]), timeout=10)
        self.assertEqual((res.n, res.text), (3, "a,b,c"))
        res = up(iter([]), timeout=10)
        self.assertEqual((res.n, res.text), (0, ""))

    def test_bidi(self):
        both = self.protos.bidi(self.ch, "/relay.Echo/Both")
        got = [(m.text, m.n) for m in both(iter([self.M(text=t, n=i)
                                                  for i, t in enumerate("pqr")]), timeout=10)]
        self.assertEqual(got, [("p", 1), ("q", 2), ("r", 3)])

    def test_downstream_status_after_a_message(self):
        fail = self.protos.server_stream(self.ch, "/relay.Echo/Fail")
        got = []
        with self.assertRaises(grpc.RpcError) as e:
            for m in fail(self.M(text="x"), timeout=10):
                got.append(m.text)
        self.assertEqual(got, ["one"])
        self.assertStatus(e, grpc.StatusCode.NOT_FOUND, "no more x")

    def test_cancel_while_waiting_in_recv(self):
        hang = self.protos.server_stream(self.ch, "/relay.Echo/Hang")
        call = hang(self.M(text="h1"), timeout=30)
        time.sleep(0.3)
        call.cancel()
        self.assertTrue(self.backend.wait_log("hang cancelled id=h1"), self.backend.logs())


if __name__ == "__main__":
    mwtest.main()
