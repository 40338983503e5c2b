"""Limits at the call: response metadata past limits.max_header_list_size is
refused where the handler sets it, with the limit named; a response message
past limits.max_send_bytes ends the call with RESOURCE_EXHAUSTED and a log
line naming the method and the size."""

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package lim;

message Req { int32 size = 1; int32 count = 2; bool trailer = 3; }
message Resp { string text = 1; string error = 2; }

service L {
  rpc Header(Req) returns (Resp);
  rpc Big(Req) returns (Resp);
  rpc Stream(Req) returns (stream Resp);
}
"""

LUA = """
local mw = require "moonwire"
local L = mw.service "lim.L"

-- count entries of `size` bytes each, as headers or trailers; the first
-- refusal is reported and the call still answers.
function L.Header(req, ctx)
  local set = req.trailer and ctx.set_trailer or ctx.set_header
  for i = 1, math.max(req.count, 1) do
    local ok, err = pcall(set, ctx, "x-big-" .. i, string.rep("a", req.size))
    if not ok then return {text = "refused at " .. i, error = err} end
  end
  return {text = "all set"}
end

function L.Big(req, ctx)
  return {text = string.rep("b", req.size)}
end

-- small, then `size`, then small again
function L.Stream(req, stream, ctx)
  stream:send{text = "first"}
  stream:send{text = string.rep("c", req.size)}
  stream:send{text = "after"}
end
"""

CONFIG = """
workers: 1
limits:
  max_send_bytes: 65536
"""


class Limits(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"lim.proto": PROTO, "lim.lua": LUA})
        cls.protos = Protos(cls.dir)
        cls.server = Server(cls.dir, config=CONFIG).start()
        cls.ch = cls.server.channel()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()

    def req(self, **kw):
        return self.protos.msg("lim.Req")(**kw)

    def test_big_header_is_refused_with_the_limit(self):
        fn = self.protos.unary(self.ch, "/lim.L/Header")
        resp = fn(self.req(size=100 * 1024), timeout=10)
        self.assertEqual(resp.text, "refused at 1")
        # the default limits.max_header_list_size (16 KiB): 8 KiB, less 1 KiB
        self.assertIn("metadata 'x-big-1' (102439 bytes) would make the response headers "
                      "102439 bytes, over their limit of 7168 (limits.max_header_list_size",
                      resp.error)
        resp = fn(self.req(size=100 * 1024, trailer=True), timeout=10)
        self.assertEqual(resp.text, "refused at 1")
        self.assertIn("response trailers", resp.error)

    def test_headers_add_up_to_the_limit(self):
        fn = self.protos.unary(self.ch, "/lim.L/Header")
        # 2 KiB each (2,087 bytes as counted): three fit in 7 KiB, the fourth does not
        resp, call = fn.with_call(self.req(size=2048, count=5), timeout=10)
        self.assertEqual(resp.text, "refused at 4")
        self.assertIn("would make the response headers 8348 bytes, over their limit of 7168",
                      resp.error)
        got = dict(call.initial_metadata())
        self.assertEqual(got.get("x-big-3"), "a" * 2048)
        self.assertNotIn("x-big-4", got)
        # below the limit nothing changes
        resp = fn(self.req(size=100, count=3), timeout=10)
        self.assertEqual(resp.text, "all set")

    def test_big_reply_is_resource_exhausted_and_logged(self):
        fn = self.protos.unary(self.ch, "/lim.L/Big")
        with self.assertRaises(grpc.RpcError) as cm:
            fn(self.req(size=100 * 1024), timeout=10)
        self.assertStatus(cm, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertRegex(cm.exception.details(),
                         r"^response message too large \(10240\d bytes, limit 65536\)$")
        self.assertTrue(self.server.wait_log("/lim.L/Big: response message of 10240"),
                        self.server.logs())
        self.assertRegex(self.server.logs(), r" error /lim\.L/Big: response message of 10240\d "
                         r"bytes is over limits\.max_send_bytes \(65536 bytes\)")
        # the server goes on serving, and a reply under the limit passes
        self.assertEqual(len(fn(self.req(size=60000), timeout=10).text), 60000)

    def test_big_stream_message_ends_the_stream(self):
        fn = self.protos.server_stream(self.ch, "/lim.L/Stream")
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for msg in fn(self.req(size=70000), timeout=10):
                got.append(msg.text)
        self.assertStatus(cm, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(got, ["first"])
        self.assertTrue(self.server.wait_log("/lim.L/Stream: response message of"),
                        self.server.logs())


if __name__ == "__main__":
    mwtest.main()
