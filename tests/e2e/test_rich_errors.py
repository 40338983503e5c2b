"""Rich errors: details in grpc-status-details-bin, decoded by a Python
client into google.rpc.Status, for every RPC kind; the error catalogue (Lua
and YAML); details that cannot be sent are dropped, the status kept."""

import importlib.util
import os
import shutil
import subprocess
import tempfile

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package rich;

message Req {
  string kind = 1;
  string name = 2;
  int32 n = 3;
}
message Resp { string text = 1; int32 n = 2; }

service Rich {
  rpc Unary(Req) returns (Resp);
  rpc Caught(Req) returns (Resp);
  rpc Collect(stream Req) returns (Resp);
  rpc Stream(Req) returns (stream Resp);
  rpc Chat(stream Req) returns (stream Resp);
}
"""

ERRORS_YAML = """
# The shop's errors: one place for codes, messages and reasons.
NAME_TAKEN:
  code: ALREADY_EXISTS
  message: "name {name} is taken"
  reason: NAME_TAKEN
  domain: shop.example
  details:
    - "@type": type.googleapis.com/google.rpc.Help
      links:
        - description: naming rules
          url: https://shop.example/names
OUT_OF_STOCK:
  code: FAILED_PRECONDITION
  message: "{item} is out of stock"
  domain: shop.example
"""

LUA = r"""
local mw = require "moonwire"
local d = mw.details

mw.errors "errors.yaml"
mw.errors {
  CART_FULL = {code = "RESOURCE_EXHAUSTED", message = "the cart holds {max} items at most",
               reason = "CART_FULL", domain = "shop.example", metadata = {team = "cart"}},
}

local Rich = mw.service "rich.Rich"

local function all_details()
  return {
    d.ErrorInfo{reason = "R", domain = "rich.example", metadata = {user = "ann", n = 3}},
    d.RetryInfo(2.5),
    d.DebugInfo{detail = "oops", stack_entries = "frame one\nframe two"},
    d.QuotaFailure{["user:ann"] = "daily quota used up"},
    d.PreconditionFailure{{type = "TOS", subject = "ann", description = "terms not accepted"}},
    d.BadRequest{name = "must not be empty", age = "must be positive"},
    d.RequestInfo{request_id = "req-1", serving_data = "pod-7"},
    d.ResourceInfo{resource_type = "user", resource_name = "ann", owner = "team-a",
                   description = "no such user"},
    d.Help{url = "https://rich.example/help", description = "the manual"},
    d.LocalizedMessage("fr-FR", "introuvable"),
  }
end

local function fail(req)
  local k = req.kind
  if k == "all" then
    mw.fail(mw.NOT_FOUND, "no such user", all_details())
  elseif k == "raw" then
    mw.fail("INVALID_ARGUMENT", "raw", {{["@type"] = "type.googleapis.com/google.rpc.ErrorInfo",
                                         reason = "RAW"}})
  elseif k == "name_taken" then
    mw.fail("NAME_TAKEN", {name = req.name}, {d.RequestInfo{request_id = "req-9"}})
  elseif k == "out_of_stock" then
    mw.fail("OUT_OF_STOCK", {item = req.name})
  elseif k == "cart_full" then
    mw.fail("CART_FULL", {max = 10})
  elseif k == "unknown_type" then
    mw.fail(mw.UNAVAILABLE, "try later", {{["@type"] = "type.googleapis.com/nope.Missing", x = 1}})
  elseif k == "wrong_field" then
    mw.fail(mw.UNAVAILABLE, "try later", {{["@type"] = "type.googleapis.com/google.rpc.ErrorInfo",
                                           reasn = "typo"}})
  elseif k == "huge" then
    mw.fail(mw.ABORTED, "too much", {d.DebugInfo(string.rep("x", 20000))})
  elseif k == "not_array" then
    mw.fail(mw.ABORTED, "misuse", {reason = "x"})
  elseif k == "no_type" then
    mw.fail(mw.ABORTED, "misuse", {{reason = "x"}})
  elseif k == "unknown_name" then
    mw.fail("NO_SUCH_ERROR", {})
  elseif k == "status" then
    error(mw.status(mw.PERMISSION_DENIED, "denied", {d.ErrorInfo{reason = "DENIED"}}))
  end
end

function Rich.Unary(req, ctx)
  fail(req)
  return {text = "no failure"}
end

-- A caught status error carries its details as tables; mw.decode_status turns
-- grpc-status-details-bin bytes back into the same.
function Rich.Caught(req, ctx)
  local ok, err = pcall(fail, req)
  assert(not ok and mw.is_status(err))
  local back = assert(mw.decode_status(assert(mw.encode_status(err))))
  local parts = {}
  for i, x in ipairs(back.details) do
    parts[i] = x["@type"]:match("[^.]+$") .. ":" .. tostring(err.details[i].reason or "")
  end
  return {text = table.concat(parts, ","), n = back.code}
end

function Rich.Collect(stream, ctx)
  local n = 0
  for msg in stream:iter() do
    n = n + 1
    if msg.kind ~= "" then fail(msg) end
  end
  return {n = n}
end

function Rich.Stream(req, stream, ctx)
  for i = 1, req.n do stream:send{n = i} end
  fail(req)
end

function Rich.Chat(stream, ctx)
  for msg in stream:iter() do
    if msg.kind ~= "" then fail(msg) end
    stream:send{text = msg.name}
  end
end

return Rich
"""


def load_rpc_modules(tmp):
    """google.rpc's Python modules, generated from the project's protos."""
    proto_dir = os.path.join(mwtest.SOURCE_DIR, "proto")
    subprocess.run([mwtest.PROTOC, "-I" + proto_dir, "-I/usr/include",
                    "--python_out=" + tmp, "google/rpc/status.proto",
                    "google/rpc/error_details.proto"], check=True, timeout=60)
    mods = {}
    # Loaded under names of their own: the installed google package (protobuf)
    # would shadow a second google/ directory on sys.path.
    for name in ("status_pb2", "error_details_pb2"):
        path = os.path.join(tmp, "google", "rpc", name + ".py")
        spec = importlib.util.spec_from_file_location("mw_rpc_" + name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods["status_pb2"], mods["error_details_pb2"]


class RichErrors(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mw-e2e-rpc-")
        cls.status_pb2, cls.ed = load_rpc_modules(cls.tmp)
        cls.dir = mwtest.ServiceDir({"rich.proto": PROTO, "rich.lua": LUA,
                                     "errors.yaml": ERRORS_YAML})
        cls.protos = Protos(cls.dir)
        cls.Req = cls.protos.msg("rich.Req")
        cls.server = Server(cls.dir).start()
        cls.ch = cls.server.channel()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers --

    def rpc_error(self, fn):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        return cm.exception

    def unary_error(self, **fields):
        fn = self.protos.unary(self.ch, "/rich.Rich/Unary")
        return self.rpc_error(lambda: fn(self.Req(**fields), timeout=10))

    def status_of(self, err):
        """The google.rpc.Status of grpc-status-details-bin, or None."""
        bins = [v for k, v in (err.trailing_metadata() or ()) if k == "grpc-status-details-bin"]
        self.assertLessEqual(len(bins), 1)
        if not bins:
            return None
        st = self.status_pb2.Status.FromString(bins[0])
        # The Status repeats the call's status, as the standard requires.
        self.assertEqual(st.code, err.code().value[0])
        self.assertEqual(st.message, err.details())
        return st

    def unpack(self, st, cls_name):
        cls = getattr(self.ed, cls_name)
        found = [a for a in st.details if a.Is(cls.DESCRIPTOR)]
        self.assertEqual(len(found), 1, "%s in %r" % (cls_name, st))
        msg = cls()
        self.assertTrue(found[0].Unpack(msg))
        return msg

    # -- every standard detail type --

    def test_every_standard_detail(self):
        err = self.unary_error(kind="all")
        self.assertEqual(err.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(err.details(), "no such user")
        st = self.status_of(err)
        self.assertEqual(len(st.details), 10)
        ei = self.unpack(st, "ErrorInfo")
        self.assertEqual((ei.reason, ei.domain), ("R", "rich.example"))
        self.assertEqual(dict(ei.metadata), {"user": "ann", "n": "3"})
        ri = self.unpack(st, "RetryInfo")
        self.assertEqual((ri.retry_delay.seconds, ri.retry_delay.nanos), (2, 500000000))
        di = self.unpack(st, "DebugInfo")
        self.assertEqual((di.detail, list(di.stack_entries)), ("oops", ["frame one", "frame two"]))
        qf = self.unpack(st, "QuotaFailure")
        self.assertEqual([(v.subject, v.description) for v in qf.violations],
                         [("user:ann", "daily quota used up")])
        pf = self.unpack(st, "PreconditionFailure")
        self.assertEqual([(v.type, v.subject, v.description) for v in pf.violations],
                         [("TOS", "ann", "terms not accepted")])
        br = self.unpack(st, "BadRequest")
        self.assertEqual([(v.field, v.description) for v in br.field_violations],
                         [("age", "must be positive"), ("name", "must not be empty")])
        rq = self.unpack(st, "RequestInfo")
        self.assertEqual((rq.request_id, rq.serving_data), ("req-1", "pod-7"))
        rs = self.unpack(st, "ResourceInfo")
        self.assertEqual((rs.resource_type, rs.resource_name, rs.owner, rs.description),
                         ("user", "ann", "team-a", "no such user"))
        hp = self.unpack(st, "Help")
        self.assertEqual([(l.url, l.description) for l in hp.links],
                         [("https://rich.example/help", "the manual")])
        lm = self.unpack(st, "LocalizedMessage")
        self.assertEqual((lm.locale, lm.message), ("fr-FR", "introuvable"))

    def test_detail_table_without_builder_and_status_object(self):
        st = self.status_of(self.unary_error(kind="raw"))
        self.assertEqual(self.unpack(st, "ErrorInfo").reason, "RAW")
        err = self.unary_error(kind="status")
        self.assertEqual(err.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(self.unpack(self.status_of(err), "ErrorInfo").reason, "DENIED")

    def test_no_details_no_trailer(self):
        fn = self.protos.unary(self.ch, "/rich.Rich/Unary")
        _, call = fn.with_call(self.Req(kind="fine"), timeout=10)
        self.assertNotIn("grpc-status-details-bin", dict(call.trailing_metadata() or ()))
        err = self.unary_error(kind="not_array")  # misuse: a plain error, INTERNAL
        self.assertIsNone(self.status_of(err))

    # -- the catalogue --

    def test_catalogue_error_from_yaml(self):
        err = self.unary_error(kind="name_taken", name="bob")
        self.assertEqual(err.code(), grpc.StatusCode.ALREADY_EXISTS)
        self.assertEqual(err.details(), "name bob is taken")
        st = self.status_of(err)
        self.assertEqual(len(st.details), 3)  # ErrorInfo, the entry's Help, the call's RequestInfo
        ei = self.unpack(st, "ErrorInfo")
        self.assertEqual((ei.reason, ei.domain, dict(ei.metadata)),
                         ("NAME_TAKEN", "shop.example", {"name": "bob"}))
        self.assertEqual(self.unpack(st, "Help").links[0].url, "https://shop.example/names")
        self.assertEqual(self.unpack(st, "RequestInfo").request_id, "req-9")
        self.assertTrue(st.details[0].Is(self.ed.ErrorInfo.DESCRIPTOR))

    def test_catalogue_reason_defaults_to_name_and_lua_entries(self):
        err = self.unary_error(kind="out_of_stock", name="tea")
        self.assertEqual(err.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(err.details(), "tea is out of stock")
        ei = self.unpack(self.status_of(err), "ErrorInfo")
        self.assertEqual((ei.reason, ei.domain), ("OUT_OF_STOCK", "shop.example"))
        err = self.unary_error(kind="cart_full")
        self.assertEqual(err.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(err.details(), "the cart holds 10 items at most")
        ei = self.unpack(self.status_of(err), "ErrorInfo")
        self.assertEqual(dict(ei.metadata), {"max": "10", "team": "cart"})

    def test_caught_error_carries_details(self):
        fn = self.protos.unary(self.ch, "/rich.Rich/Caught")
        resp = fn(self.Req(kind="name_taken", name="x"), timeout=10)
        self.assertEqual(resp.text, "ErrorInfo:NAME_TAKEN,Help:,RequestInfo:")
        self.assertEqual(resp.n, grpc.StatusCode.ALREADY_EXISTS.value[0])

    # -- every RPC kind --

    def test_server_stream_fails_after_messages(self):
        fn = self.protos.server_stream(self.ch, "/rich.Rich/Stream")
        got = []

        def run():
            for m in fn(self.Req(kind="cart_full", n=3), timeout=10):
                got.append(m.n)
        err = self.rpc_error(run)
        self.assertEqual(got, [1, 2, 3])
        self.assertEqual(err.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(self.unpack(self.status_of(err), "ErrorInfo").reason, "CART_FULL")

    def test_client_stream_fails(self):
        fn = self.protos.client_stream(self.ch, "/rich.Rich/Collect")
        reqs = [self.Req(), self.Req(), self.Req(kind="all")]
        err = self.rpc_error(lambda: fn(iter(reqs), timeout=10))
        self.assertEqual(err.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(len(self.status_of(err).details), 10)

    def test_bidi_fails_after_messages(self):
        fn = self.protos.bidi(self.ch, "/rich.Rich/Chat")
        reqs = [self.Req(name="a"), self.Req(name="b"), self.Req(kind="name_taken", name="c")]
        got = []

        def run():
            for m in fn(iter(reqs), timeout=10):
                got.append(m.text)
        err = self.rpc_error(run)
        self.assertEqual(got, ["a", "b"])
        self.assertEqual(err.code(), grpc.StatusCode.ALREADY_EXISTS)
        self.assertEqual(self.unpack(self.status_of(err), "ErrorInfo").metadata["name"], "c")

    # -- details that cannot be sent --

    def test_unknown_type_keeps_status_drops_details(self):
        for kind in ("unknown_type", "wrong_field"):
            with self.subTest(kind=kind):
                err = self.unary_error(kind=kind)
                self.assertEqual(err.code(), grpc.StatusCode.UNAVAILABLE)
                self.assertEqual(err.details(), "try later")
                self.assertIsNone(self.status_of(err))
        # The server is shared by the class: wait for each call's own line
        # (the log is read by a thread, so a line can lag its reply).
        for text in ("nope.Missing", "reasn"):
            self.assertTrue(self.server.wait_log(text), self.server.logs())
        self.assertIn("/rich.Rich/Unary: error details dropped", self.server.logs())

    def test_details_over_the_trailer_limit_are_dropped(self):
        err = self.unary_error(kind="huge")
        self.assertEqual(err.code(), grpc.StatusCode.ABORTED)
        self.assertEqual(err.details(), "too much")
        self.assertIsNone(self.status_of(err))
        self.assertTrue(self.server.wait_log("over their limit"), self.server.logs())

    def test_misuse_raises_at_the_call(self):
        for kind, text in (("not_array", "details must be an array of detail tables"),
                           ("no_type", 'details[1] has no "@type"'),
                           ("unknown_name", "unknown status code or error name 'NO_SUCH_ERROR'")):
            with self.subTest(kind=kind):
                err = self.unary_error(kind=kind)
                self.assertEqual(err.code(), grpc.StatusCode.INTERNAL)
                self.assertTrue(self.server.wait_log(text), self.server.logs())
        self.assertIn("rich.lua:", self.server.logs())

    def test_server_still_serves(self):
        fn = self.protos.unary(self.ch, "/rich.Rich/Unary")
        self.assertEqual(fn(self.Req(kind="fine"), timeout=10).text, "no failure")


class CatalogueErrors(mwtest.TestCase):
    """A bad catalogue stops the load with the file and line."""

    def check(self, yaml_text, lua_extra, want):
        files = {"rich.proto": PROTO, "errors.yaml": yaml_text,
                 "rich.lua": 'local mw = require "moonwire"\n' + lua_extra +
                             '\nreturn mw.service "rich.Rich"\n'}
        with mwtest.ServiceDir(files) as d:
            r = mwtest.run_cli("check", str(d))
            self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(want, r.stdout + r.stderr)

    def test_collision_with_a_status_code(self):
        self.check("NOT_FOUND:\n  code: NOT_FOUND\n  message: x\n", 'mw.errors "errors.yaml"',
                   "errors.yaml:1: 'NOT_FOUND' is a status code name")

    def test_unknown_code_names_the_line(self):
        self.check("A:\n  code: ALREADY\n  message: x\nB:\n  code: NOPE\n  message: y\n",
                   'mw.errors "errors.yaml"', "errors.yaml:1: A: unknown status code 'ALREADY'")

    def test_yaml_syntax_error_names_the_line(self):
        self.check("A:\n  code: NOT_FOUND\n  message: [x\n", 'mw.errors "errors.yaml"',
                   "errors.yaml:")

    def test_lua_catalogue_collision(self):
        self.check("{}\n", 'mw.errors {CANCELLED = {code = 1, message = "x"}}',
                   "rich.lua:2: mw.errors: 'CANCELLED' is a status code name")


if __name__ == "__main__":
    mwtest.main()
