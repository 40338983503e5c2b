"""How handler failures, unknown methods and bad requests reach the client."""

import grpc

import mwtest
from mwtest import Protos, Server, raw_unary

PROTO = """
syntax = "proto3";
package errs;

message Req {
  string name = 1;
  int32 code = 2;
  string msg = 3;
  bytes data = 4;
}
message Resp { string text = 1; }

service Errs {
  rpc Fail(Req) returns (Resp);
  rpc FailByName(Req) returns (Resp);
  rpc RaiseStatus(Req) returns (Resp);
  rpc Raise(Req) returns (Resp);
  rpc RaiseDeep(Req) returns (Resp);
  rpc RaiseTable(Req) returns (Resp);
  rpc BadFail(Req) returns (Resp);
  rpc ReturnNil(Req) returns (Resp);
  rpc ReturnNothing(Req) returns (Resp);
  rpc ReturnString(Req) returns (Resp);
  rpc ReturnUnknownField(Req) returns (Resp);
  rpc ReturnWrongType(Req) returns (Resp);
  rpc ReturnBadUtf8(Req) returns (Resp);
  rpc Echo(Req) returns (Resp);
  rpc NoHandler(Req) returns (Resp);
}
"""

LUA = """
local mw = require "moonwire"
local helper = require "errs_helper"

local Errs = mw.service "errs.Errs"

function Errs.Fail(req, ctx)
  mw.fail(req.code, req.msg)
end

function Errs.FailByName(req, ctx)
  mw.fail(req.name, req.msg)
end

function Errs.RaiseStatus(req, ctx)
  error(mw.status(req.code, req.msg))
end

function Errs.Raise(req, ctx)
  error("secret failure " .. req.name)
end

function Errs.RaiseDeep(req, ctx)
  return helper.explode(req.name)
end

function Errs.RaiseTable(req, ctx)
  error({reason = "a table"})
end

function Errs.BadFail(req, ctx)
  mw.fail(req.code, "bad code")
end

function Errs.ReturnNil(req, ctx)
  return nil
end

function Errs.ReturnNothing(req, ctx)
end

function Errs.ReturnString(req, ctx)
  return "a string"
end

function Errs.ReturnUnknownField(req, ctx)
  return {text = "ok", bogus_field = 1}
end

function Errs.ReturnWrongType(req, ctx)
  return {text = 42}
end

function Errs.ReturnBadUtf8(req, ctx)
  return {text = "\\xc3\\x28"}
end

function Errs.Echo(req, ctx)
  return {text = req.name}
end

return Errs
"""

HELPER = """
local M = {}
function M.explode(name)
  local t = nil
  return t.field .. name -- attempt to index a nil value
end
return M
"""

CODES = [
    (grpc.StatusCode.CANCELLED, 1), (grpc.StatusCode.UNKNOWN, 2),
    (grpc.StatusCode.INVALID_ARGUMENT, 3), (grpc.StatusCode.DEADLINE_EXCEEDED, 4),
    (grpc.StatusCode.NOT_FOUND, 5), (grpc.StatusCode.ALREADY_EXISTS, 6),
    (grpc.StatusCode.PERMISSION_DENIED, 7), (grpc.StatusCode.RESOURCE_EXHAUSTED, 8),
    (grpc.StatusCode.FAILED_PRECONDITION, 9), (grpc.StatusCode.ABORTED, 10),
    (grpc.StatusCode.OUT_OF_RANGE, 11), (grpc.StatusCode.UNIMPLEMENTED, 12),
    (grpc.StatusCode.INTERNAL, 13), (grpc.StatusCode.UNAVAILABLE, 14),
    (grpc.StatusCode.DATA_LOSS, 15), (grpc.StatusCode.UNAUTHENTICATED, 16),
]


class Errors(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"errs.proto": PROTO, "errs.lua": LUA,
                                     "errs_helper.lua": HELPER})
        cls.protos = Protos(cls.dir)
        cls.Req = cls.protos.msg("errs.Req")
        cls.server = Server(cls.dir).start()
        cls.ch = cls.server.channel()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()

    def call(self, _method, **fields):
        fn = self.protos.unary(self.ch, "/errs.Errs/" + _method)
        return fn(self.Req(**fields), timeout=10)

    def assertFails(self, _want, _method, **fields):
        with self.assertRaises(grpc.RpcError) as cm:
            self.call(_method, **fields)
        err = cm.exception
        self.assertEqual(err.code(), _want, "details: %r" % (err.details(),))
        return err.details()

    def assertNoLeak(self, details):
        self.assertNotIn(".lua", details)
        self.assertNotIn("stack traceback", details)
        self.assertNotIn(self.dir.path, details)
        self.assertNotIn("secret", details)

    # -- mw.fail --

    def test_fail_every_code(self):
        for code, num in CODES:
            with self.subTest(code=code):
                msg = "failed with %s" % code.name
                details = self.assertFails(code, "Fail", code=num, msg=msg)
                self.assertEqual(details, msg)

    def test_fail_by_name(self):
        details = self.assertFails(grpc.StatusCode.NOT_FOUND, "FailByName",
                                   name="NOT_FOUND", msg="no such user")
        self.assertEqual(details, "no such user")
        details = self.assertFails(grpc.StatusCode.PERMISSION_DENIED, "FailByName",
                                   name="permission_denied", msg="lower case")
        self.assertEqual(details, "lower case")

    def test_fail_messages(self):
        for msg in ("ünïcödé ✓ 日本語 \U0001f600", "", "percent % and %41 and %%",
                    "line one\nline two", "quote \" and backslash \\", "x" * 2000):
            with self.subTest(msg=msg[:30]):
                details = self.assertFails(grpc.StatusCode.FAILED_PRECONDITION,
                                           "Fail", code=9, msg=msg)
                self.assertEqual(details or "", msg)

    def test_error_with_status_object(self):
        details = self.assertFails(grpc.StatusCode.ALREADY_EXISTS, "RaiseStatus",
                                   code=6, msg="exists already")
        self.assertEqual(details, "exists already")

    def test_fail_with_invalid_code(self):
        for code in (0, 17, -1):
            with self.subTest(code=code):
                details = self.assertFails(grpc.StatusCode.INTERNAL, "BadFail", code=code)
                self.assertNoLeak(details)

    # -- Lua errors --

    def test_error_string_is_internal_without_leaks(self):
        details = self.assertFails(grpc.StatusCode.INTERNAL, "Raise", name="xyzzy")
        self.assertNoLeak(details)
        self.assertNotIn("xyzzy", details)
        # the server's log has the whole story
        script = self.dir.file("errs.lua")
        self.assertTrue(self.server.wait_log("secret failure xyzzy"), self.server.logs())
        # the traceback's lines follow the first one
        self.assertTrue(self.server.wait_log("/errs.Errs/Raise"), self.server.logs())
        self.assertTrue(self.server.wait_log(script), self.server.logs())
        logs = self.server.logs()
        self.assertIn("stack traceback", logs)
        self.assertIn(script, logs)
        self.assertIn("/errs.Errs/Raise", logs)

    def test_error_in_required_module(self):
        details = self.assertFails(grpc.StatusCode.INTERNAL, "RaiseDeep", name="deep")
        self.assertNoLeak(details)
        self.assertTrue(self.server.wait_log("attempt to index a nil value"), self.server.logs())
        self.assertTrue(self.server.wait_log(self.dir.file("errs_helper.lua")), self.server.logs())

    def test_error_with_table_value(self):
        details = self.assertFails(grpc.StatusCode.INTERNAL, "RaiseTable")
        self.assertNoLeak(details)

    def test_error_id_matches_log(self):
        details = self.assertFails(grpc.StatusCode.INTERNAL, "Raise", name="id-check")
        import re
        m = re.search(r"error id (\d+)", details)
        self.assertTrue(m, "the client's message names no error id: %r" % details)
        # the log line carries the same id
        self.assertTrue(self.server.wait_log("error_id=%s " % m.group(1)), self.server.logs())

    # -- bad responses --

    def test_return_nil(self):
        for method in ("ReturnNil", "ReturnNothing", "ReturnString"):
            with self.subTest(method=method):
                details = self.assertFails(grpc.StatusCode.INTERNAL, method)
                self.assertIn("response", details)
                self.assertNoLeak(details)

    def test_return_unknown_field(self):
        details = self.assertFails(grpc.StatusCode.INTERNAL, "ReturnUnknownField")
        self.assertIn("bogus_field", details)
        self.assertIn("errs.Resp", details)
        self.assertNoLeak(details)

    def test_return_wrong_type(self):
        details = self.assertFails(grpc.StatusCode.INTERNAL, "ReturnWrongType")
        self.assertIn("text", details)
        self.assertNoLeak(details)

    def test_return_invalid_utf8(self):
        details = self.assertFails(grpc.StatusCode.INTERNAL, "ReturnBadUtf8")
        self.assertIn("UTF-8", details)

    # -- unknown and unimplemented methods --

    def test_unknown_method(self):
        fn = raw_unary(self.ch, "/errs.Errs/NoSuchMethod")
        with self.assertRaises(grpc.RpcError) as cm:
            fn(b"", timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertIn("NoSuchMethod", cm.exception.details())

    def test_unknown_service(self):
        fn = raw_unary(self.ch, "/nowhere.Svc/Method")
        with self.assertRaises(grpc.RpcError) as cm:
            fn(b"", timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertIn("nowhere.Svc", cm.exception.details())

    def test_method_without_handler(self):
        details = self.assertFails(grpc.StatusCode.UNIMPLEMENTED, "NoHandler")
        self.assertIn("NoHandler", details)

    # -- bad requests --

    def test_malformed_request(self):
        fn = raw_unary(self.ch, "/errs.Errs/Echo")
        for data in (b"\xff\xff\xff\xff", b"\x0a\x05ab",  # truncated string
                     b"\x08", b"\x0f", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"):
            with self.subTest(data=data):
                with self.assertRaises(grpc.RpcError) as cm:
                    fn(data, timeout=10)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT,
                                 cm.exception.details())
                self.assertIn("errs.Req", cm.exception.details())
        self.assertEqual(self.call("Echo", name="still fine").text, "still fine")

    def test_invalid_utf8_in_string_field(self):
        fn = raw_unary(self.ch, "/errs.Errs/Echo")
        for bad in (b"\xc3\x28", b"\xff", b"ok\xed\xa0\x80", b"\xc0\x80"):
            with self.subTest(bad=bad):
                with self.assertRaises(grpc.RpcError) as cm:
                    fn(b"\x0a" + bytes([len(bad)]) + bad, timeout=10)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT,
                                 cm.exception.details())
                self.assertIn("UTF-8", cm.exception.details())
        # bytes fields take anything
        data = b"\x22\x02\xc3\x28"
        self.assertEqual(fn(data, timeout=10), b"")

    def test_unknown_fields_in_request_are_ignored(self):
        fn = raw_unary(self.ch, "/errs.Errs/Echo")
        # field 99 (varint) is not in errs.Req
        reply = fn(b"\x0a\x02hi" + b"\x98\x06\x01", timeout=10)
        self.assertEqual(reply, b"\x0a\x02hi")

    def test_server_survives(self):
        for method in ("Raise", "ReturnNil", "RaiseTable"):
            with self.assertRaises(grpc.RpcError):
                self.call(method)
        self.assertEqual(self.call("Echo", name="alive").text, "alive")
        self.assertTrue(self.server.alive())


if __name__ == "__main__":
    mwtest.main()
