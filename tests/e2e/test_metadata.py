"""Request metadata in, headers and trailers out, and the ctx fields."""
import time

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package md;

message Req {
  string key = 1;
  string value = 2;
  bytes bvalue = 3;
  bool trailer = 4;
}

message Resp {
  map<string, string> md = 1;
  map<string, bytes> bin = 2;
  repeated bytes values = 3;
  string method = 4;
  string peer = 5;
  bool has_deadline = 6;
  double deadline = 7;
  double remaining = 8;
  double now = 9;
  string error = 10;
  bool cancelled = 11;
  bool same_table = 12;
  string deadline_type = 13;
  string unknown_type = 14;
}

service Md {
  rpc Echo(Req) returns (Resp);
  rpc Info(Req) returns (Resp);
  rpc SetHeader(Req) returns (Resp);
  rpc TrySetHeader(Req) returns (Resp);
  rpc Values(Req) returns (Resp);
  rpc Keep(Req) returns (Resp);
  rpc UseKept(Req) returns (Resp);
}
"""

LUA = """
local mw = require "moonwire"
local Md = mw.service "md.Md"

-- Every x-* key comes back as header echo-* and trailer trail-*.
function Md.Echo(req, ctx)
  local md, bin = {}, {}
  for k, v in pairs(ctx.metadata) do
    if k:sub(1, 2) == "x-" then
      if k:sub(-4) == "-bin" then bin[k] = v else md[k] = v end
      ctx:set_header("echo-" .. k:sub(3), v)
      ctx:set_trailer("trail-" .. k:sub(3), v)
    end
  end
  return {md = md, bin = bin, same_table = ctx.metadata == ctx.metadata}
end

function Md.Info(req, ctx)
  local d = ctx.deadline
  ctx.values.seen = true
  return {
    method = ctx.method,
    peer = ctx.peer,
    has_deadline = d ~= nil,
    deadline = type(d) == "number" and d or 0,
    deadline_type = type(d),
    unknown_type = type(ctx.no_such_field),
    remaining = ctx:remaining(),
    cancelled = ctx:cancelled() or not ctx.values.seen,
  }
end

-- Sets what the client asks for, and lets a failure end the call.
function Md.SetHeader(req, ctx)
  local v = req.value ~= "" and req.value or req.bvalue
  if req.trailer then
    ctx:set_trailer(req.key, v)
  else
    ctx:set_header(req.key, v)
  end
  return {}
end

-- The same, reporting the error in the response.
function Md.TrySetHeader(req, ctx)
  local v = req.value ~= "" and req.value or req.bvalue
  local fn = req.trailer and ctx.set_trailer or ctx.set_header
  local ok, err = pcall(fn, ctx, req.key, v)
  return {error = ok and "" or tostring(err)}
end

function Md.Values(req, ctx)
  return {values = ctx:metadata_values(req.key)}
end

local kept
function Md.Keep(req, ctx)
  kept = ctx
  return {}
end

function Md.UseKept(req, ctx)
  local ok, err = pcall(function() return kept:remaining() end)
  return {error = ok and "" or tostring(err), cancelled = kept:cancelled()}
end

return Md
"""


class Metadata(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"md.proto": PROTO, "md.lua": LUA})
        cls.protos = Protos(cls.dir)
        cls.Req = cls.protos.msg("md.Req")
        # one worker: test_ctx_after_the_call keeps a ctx in one Lua state
        # and uses it from a later call, which must run in the same state
        cls.server = Server(cls.dir, config="workers: 1\n").start()
        cls.ch = cls.server.channel()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()

    def fn(self, method):
        return self.protos.unary(self.ch, "/md.Md/" + method)

    def test_echo_headers_and_trailers(self):
        raw = b"\x00\xff\x01 binary \x00\x80\xfe"
        md = (("x-ascii", "hello world"), ("x-empty", ""), ("x-raw-bin", raw),
              ("x-printable", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"))
        resp, call = self.fn("Echo").with_call(self.Req(), metadata=md, timeout=10)
        self.assertEqual(resp.md["x-ascii"], "hello world")
        self.assertEqual(resp.md["x-empty"], "")
        self.assertEqual(resp.md["x-printable"], md[3][1])
        self.assertEqual(resp.bin["x-raw-bin"], raw)
        self.assertTrue(resp.same_table)
        headers = dict(call.initial_metadata())
        trailers = dict(call.trailing_metadata())
        self.assertEqual(headers.get("echo-ascii"), "hello world")
        self.assertEqual(headers.get("echo-raw-bin"), raw)
        self.assertEqual(headers.get("echo-printable"), md[3][1])
        self.assertEqual(trailers.get("trail-ascii"), "hello world")
        self.assertEqual(trailers.get("trail-raw-bin"), raw)
        self.assertEqual(trailers.get("trail-empty"), "")

    def test_metadata_values_repeated_key(self):
        md = (("x-multi", "a"), ("x-multi", "b"), ("x-other", "o"), ("x-multi", "c"))
        resp = self.fn("Values")(self.Req(key="x-multi"), metadata=md, timeout=10)
        self.assertEqual(list(resp.values), [b"a", b"b", b"c"])
        resp = self.fn("Values")(self.Req(key="x-absent"), metadata=md, timeout=10)
        self.assertEqual(list(resp.values), [])
        md = (("x-b-bin", b"\x00"), ("x-b-bin", b"\xff\xfe"))
        resp = self.fn("Values")(self.Req(key="x-b-bin"), metadata=md, timeout=10)
        self.assertEqual(list(resp.values), [b"\x00", b"\xff\xfe"])
        # ctx.metadata keeps the first value of a repeated key
        resp = self.fn("Echo")(self.Req(), metadata=(("x-multi", "first"), ("x-multi", "second")),
                               timeout=10)
        self.assertEqual(resp.md["x-multi"], "first")

    def test_set_header_and_trailer_values(self):
        for trailer in (False, True):
            with self.subTest(trailer=trailer):
                resp, call = self.fn("SetHeader").with_call(
                    self.Req(key="y-bin", bvalue=b"\x00\xff", trailer=trailer), timeout=10)
                md = dict(call.trailing_metadata() if trailer else call.initial_metadata())
                self.assertEqual(md.get("y-bin"), b"\x00\xff")

    def test_invalid_header_key_fails_the_call(self):
        for key, value, trailer in (("Bad Key", "v", False), ("UPPER", "v", False),
                                    ("grpc-status", "0", True), ("", "v", False),
                                    ("x-newline", "a\nb", False), ("x-high", "caf\u00e9", True)):
            with self.subTest(key=key, value=value):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.fn("SetHeader")(self.Req(key=key, value=value, trailer=trailer),
                                         timeout=10)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL,
                                 cm.exception.details())
                resp = self.fn("TrySetHeader")(self.Req(key=key, value=value, trailer=trailer),
                                               timeout=10)
                self.assertIn("metadata", resp.error)
                if key:
                    self.assertIn(key, resp.error)
        self.assertTrue(self.server.wait_log("metadata key 'Bad Key' is not valid"),
                        self.server.logs())

    def test_method_and_peer(self):
        resp = self.fn("Info")(self.Req(), timeout=10)
        self.assertEqual(resp.method, "/md.Md/Info")
        self.assertRegex(resp.peer, r"^ipv4:127\.0\.0\.1:\d+$")
        self.assertFalse(resp.cancelled)

    def test_ctx_unknown_field_is_nil(self):
        resp = self.fn("Info")(self.Req(), timeout=10)
        self.assertEqual(resp.unknown_type, "nil")  # type(ctx.no_such_field)

    def test_no_deadline(self):
        resp = self.fn("Info")(self.Req())
        self.assertEqual(resp.deadline_type, "nil")
        self.assertFalse(resp.has_deadline)
        self.assertEqual(resp.remaining, float("inf"))

    def test_deadline(self):
        before = time.time()
        resp = self.fn("Info")(self.Req(), timeout=5)
        after = time.time()
        # gRPC may round the timeout up on the wire (grpc-timeout has at most
        # 8 digits and coarse units), so allow a little above.
        self.assertEqual(resp.deadline_type, "number")
        self.assertTrue(resp.has_deadline)
        self.assertGreater(resp.deadline, before + 4.0)
        self.assertLess(resp.deadline, after + 5.5)
        self.assertGreater(resp.remaining, 3.0)
        self.assertLessEqual(resp.remaining, 5.5)
        resp = self.fn("Info")(self.Req(), timeout=120)
        self.assertGreater(resp.remaining, 110)
        self.assertLessEqual(resp.remaining, 122)

    def test_ctx_after_the_call(self):
        self.fn("Keep")(self.Req(), timeout=10)
        resp = self.fn("UseKept")(self.Req(), timeout=10)
        self.assertIn("the call has ended", resp.error)
        self.assertTrue(resp.cancelled)


if __name__ == "__main__":
    mwtest.main()
