"""moonwire call / list / describe against two real servers: Moonwire
itself, and a python3-grpcio server whose reflection (grpc.reflection
v1alpha only, so the client's fall-back from v1 is exercised) is written
here from Debian's grpc-proto reflection.proto, compiled by protoc. Unary
calls and each streaming kind through NDJSON, metadata both ways, error
details and exit statuses, TLS, --proto and --protoset without reflection,
and list/describe output compared to the source .proto."""

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
from concurrent import futures

import grpc

import mwtest
from mwtest import Protos, Server

SHOP = """
syntax = "proto3";

package shop;

import "common/money.proto";
import "google/protobuf/timestamp.proto";

message Item {
  string sku = 1;
  common.Money price = 2;
  int32 count = 3;
  google.protobuf.Timestamp at = 4;
  repeated string tags = 5;
  map<string, int32> stock = 6;
  oneof pick {
    string code = 7;
    Kind kind = 8;
  }
  enum Kind {
    KIND_UNSPECIFIED = 0;
    BOOK = 1;
  }
}

message Query {
  string sku = 1;
  int32 n = 2;
  double sleep = 3;
}

message Total {
  int32 items = 1;
  repeated string skus = 2;
}

service Shop {
  rpc Buy(Item) returns (Item);
  rpc Watch(Query) returns (stream Item);
  rpc Upload(stream Item) returns (Total);
  rpc Chat(stream Item) returns (stream Item);
  rpc Fail(Query) returns (Item);
  rpc Slow(Query) returns (Item);
}
"""

MONEY = """
syntax = "proto3";

package common;

message Money {
  string currency = 1;
  int64 units = 2;
}
"""

LUA = r"""
local mw = require "moonwire"
local S = mw.service "shop.Shop"

function S.Buy(req, ctx)
  ctx:set_header("x-echo", ctx.metadata["x-token"] or "none")
  local bin = ctx.metadata["x-raw-bin"]
  if bin then ctx:set_header("x-raw-len", tostring(#bin)) end
  ctx:set_trailer("x-trailer", "t")
  return req
end

function S.Watch(req, stream, ctx)
  for i = 1, req.n do stream:send{sku = req.sku, count = i} end
end

function S.Upload(stream, ctx)
  local t = {items = 0, skus = {}}
  for item in stream:iter() do
    t.items = t.items + item.count
    t.skus[#t.skus + 1] = item.sku
  end
  return t
end

function S.Chat(stream, ctx)
  for item in stream:iter() do stream:send{sku = item.sku:upper(), count = item.count} end
end

function S.Fail(req, ctx)
  mw.fail(mw.INVALID_ARGUMENT, "no such sku: " .. req.sku, {
    mw.details.BadRequest{sku = "unknown"},
    mw.details.ErrorInfo{reason = "SKU_UNKNOWN", domain = "shop.test"},
  })
end

function S.Slow(req, ctx)
  mw.sleep(req.sleep)
  return {sku = req.sku}
end
"""


def write_protos(d):
    os.makedirs(os.path.join(d, "common"), exist_ok=True)
    with open(os.path.join(d, "shop.proto"), "w") as f:
        f.write(mwtest.dedent(SHOP))
    with open(os.path.join(d, "common", "money.proto"), "w") as f:
        f.write(mwtest.dedent(MONEY))


def block(text, head):
    """The lines of text from `head` (at column 0) to the next '}' at column 0."""
    lines = text.splitlines()
    start = lines.index(head)
    end = lines.index("}", start)
    return "\n".join(lines[start:end + 1]) + "\n"


def cli(*args, input=None, timeout=30):
    return subprocess.run([mwtest.MOONWIRE_BIN] + [str(a) for a in args], input=input,
                          capture_output=True, text=True, timeout=timeout)


def ndjson(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# --------------------------------------------------------------------------
# the Python server: the shop service and reflection written by hand


class PyServer:
    """grpcio serving shop.Shop and grpc.reflection.v1alpha (only) from the
    descriptors protoc made of SHOP; `reflection=False` leaves it out."""

    def __init__(self, proto_dir, reflection=True):
        rpc = os.path.join(mwtest.SOURCE_DIR, "proto")
        self.protos = Protos(proto_dir, files=[
            os.path.join(proto_dir, "shop.proto"),
            os.path.join(rpc, "google", "rpc", "status.proto"),
            os.path.join(rpc, "google", "rpc", "error_details.proto")])
        self.refl = mwtest.standard_protos()
        self.files = {f.name: f.SerializeToString() for f in self.protos.fds.file}
        self.reflection = reflection
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        m = self.protos.msg
        item, query, total = m("shop.Item"), m("shop.Query"), m("shop.Total")

        def handler(kind, fn, req, resp):
            return getattr(grpc, kind + "_rpc_method_handler")(
                fn, request_deserializer=req.FromString,
                response_serializer=resp.SerializeToString)

        shop = {
            "Buy": handler("unary_unary", self.buy, item, item),
            "Watch": handler("unary_stream", self.watch, query, item),
            "Upload": handler("stream_unary", self.upload, item, total),
            "Chat": handler("stream_stream", self.chat, item, item),
            "Fail": handler("unary_unary", self.fail, query, item),
            "Slow": handler("unary_unary", self.slow, query, item),
        }
        handlers = [grpc.method_handlers_generic_handler("shop.Shop", shop)]
        if reflection:
            rq = self.refl.msg("grpc.reflection.v1alpha.ServerReflectionRequest")
            rs = self.refl.msg("grpc.reflection.v1alpha.ServerReflectionResponse")
            handlers.append(grpc.method_handlers_generic_handler(
                "grpc.reflection.v1alpha.ServerReflection",
                {"ServerReflectionInfo": handler("stream_stream", self.reflect, rq, rs)}))
        self.server.add_generic_rpc_handlers(handlers)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = "127.0.0.1:%d" % self.port
        self.asked = []  # what reflection was asked, in order
        self.server.start()

    def stop(self):
        self.server.stop(0)

    # shop.Shop
    def buy(self, req, ctx):
        md = dict(ctx.invocation_metadata())
        extra = [("x-raw-len", str(len(md["x-raw-bin"])))] if "x-raw-bin" in md else []
        ctx.send_initial_metadata([("x-echo", md.get("x-token", "none"))] + extra)
        ctx.set_trailing_metadata([("x-trailer", "t")])
        return req

    def watch(self, req, ctx):
        for i in range(1, req.n + 1):
            yield self.protos.msg("shop.Item")(sku=req.sku, count=i)

    def upload(self, reqs, ctx):
        t = self.protos.msg("shop.Total")()
        for item in reqs:
            t.items += item.count
            t.skus.append(item.sku)
        return t

    def chat(self, reqs, ctx):
        for item in reqs:
            yield self.protos.msg("shop.Item")(sku=item.sku.upper(), count=item.count)

    def fail(self, req, ctx):
        m = self.protos.msg
        st = m("google.rpc.Status")(code=3, message="no such sku: " + req.sku)
        br = m("google.rpc.BadRequest")()
        br.field_violations.add(field="sku", description="unknown")
        st.details.add().Pack(br)
        st.details.add().Pack(m("google.rpc.ErrorInfo")(reason="SKU_UNKNOWN",
                                                          domain="shop.test"))
        ctx.set_trailing_metadata([("grpc-status-details-bin", st.SerializeToString())])
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, st.message)

    def slow(self, req, ctx):
        time.sleep(req.sleep)
        return self.protos.msg("shop.Item")(sku=req.sku)

    # grpc.reflection.v1alpha.ServerReflection: each file alone (the
    # client must ask for the imports by name itself)
    def reflect(self, reqs, ctx):
        rs = self.refl.msg("grpc.reflection.v1alpha.ServerReflectionResponse")
        for req in reqs:
            res = rs(valid_host=req.host)
            res.original_request.CopyFrom(req)
            which = req.WhichOneof("message_request")
            self.asked.append((which, getattr(req, which)))
            name = None
            if which == "list_services":
                for s in ("shop.Shop", "grpc.reflection.v1alpha.ServerReflection"):
                    res.list_services_response.service.add(name=s)
            elif which == "file_by_filename":
                name = req.file_by_filename
            elif which == "file_containing_symbol":
                try:
                    name = self.protos.pool.FindFileContainingSymbol(
                        req.file_containing_symbol).name
                except KeyError:
                    name = ""
            if which != "list_services":
                if name in self.files:
                    res.file_descriptor_response.file_descriptor_proto.append(self.files[name])
                else:
                    res.error_response.error_code = 5
                    res.error_response.error_message = "not found: " + getattr(req, which)
            yield res


# --------------------------------------------------------------------------
# the same checks against both servers


class Calls:
    """What both servers must answer alike; a subclass sets cls.addr."""

    def call(self, *args, input=None):
        return cli("call", self.addr, *args, input=input)

    def test_unary(self):
        r = self.call("shop.Shop/Buy", '{"sku": "b-1", "price": {"currency": "EUR", "units": "12"},'
                      ' "at": "2024-05-01T10:00:00Z", "stock": {"a": 2}, "kind": "BOOK"}')
        self.assertEqual(r.returncode, 0, r.stderr)
        # piped: compact, one line, canonical proto3 JSON (int64 as a string)
        self.assertEqual(r.stdout.count("\n"), 1)
        self.assertEqual(json.loads(r.stdout), {
            "sku": "b-1", "price": {"currency": "EUR", "units": "12"},
            "at": "2024-05-01T10:00:00Z", "stock": {"a": 2}, "kind": "BOOK"})
        # the other spellings of a method, and the default request {}
        for m in ("shop.Shop.Buy", "/shop.Shop/Buy"):
            r = self.call(m)
            self.assertEqual((r.returncode, r.stdout), (0, "{}\n"), r.stderr)
        r = self.call("shop.Shop/Buy", "--emit-defaults")
        self.assertEqual(json.loads(r.stdout)["count"], 0)

    def test_request_from_file_and_stdin(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write('{\n  "sku": "from-file"\n}\n')
            f.flush()
            r = self.call("shop.Shop/Buy", "@" + f.name)
        self.assertEqual(json.loads(r.stdout), {"sku": "from-file"}, r.stderr)
        r = self.call("shop.Shop/Buy", "-", input='{"sku": "from-stdin"}')
        self.assertEqual(json.loads(r.stdout), {"sku": "from-stdin"}, r.stderr)

    def test_server_stream(self):
        r = self.call("shop.Shop/Watch", '{"sku": "w", "n": 3}')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(ndjson(r.stdout), [{"sku": "w", "count": i} for i in (1, 2, 3)])

    def test_client_stream(self):
        lines = '{"sku": "a", "count": 2}\n\n{"sku": "b", "count": 5}\n'
        r = self.call("shop.Shop/Upload", input=lines)  # stdin by default
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"items": 7, "skus": ["a", "b"]})
        r = self.call("shop.Shop/Upload", input="")
        self.assertEqual((r.returncode, r.stdout), (0, "{}\n"), r.stderr)

    def test_bidi_stream_answers_as_it_reads(self):
        p = subprocess.Popen([mwtest.MOONWIRE_BIN, "call", self.addr, "shop.Shop/Chat"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            # each response comes back while stdin is still open
            for i, sku in enumerate(("x", "y")):
                p.stdin.write('{"sku": "%s", "count": %d}\n' % (sku, i))
                p.stdin.flush()
                self.assertEqual(json.loads(p.stdout.readline()),
                                 {"sku": sku.upper(), "count": i} if i else {"sku": "X"})
            p.stdin.close()
            self.assertEqual(p.wait(timeout=20), 0, p.stderr.read())
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()

    def test_call_ends_while_stdin_stays_open(self):
        p = subprocess.Popen([mwtest.MOONWIRE_BIN, "call", self.addr, "shop.Shop/Chat",
                              "--deadline", "1"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            # the status ends the command; the input is never closed
            self.assertEqual(p.wait(timeout=15), 4)
            self.assertIn("DEADLINE_EXCEEDED", p.stderr.read())
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdin.close()
            p.stdout.close()
            p.stderr.close()

    def test_metadata_and_verbose(self):
        r = self.call("shop.Shop/Buy", "{}", "-H", "X-Token: secret", "-H",
                      "x-raw-bin: AAECAw==", "-v")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "{}\n")  # -v writes to stderr only
        self.assertIn("request metadata:\n  x-token: secret\n  x-raw-bin: AAECAw==\n", r.stderr)
        self.assertIn("  x-echo: secret\n", r.stderr)
        self.assertIn("  x-raw-len: 4\n", r.stderr)  # decoded from base64 before sending
        self.assertIn("response trailers:\n  x-trailer: t\n", r.stderr)
        r = self.call("shop.Shop/Buy", "{}", "-H", "x-raw-bin: not base64!")
        self.assertEqual(r.returncode, 64, r.stderr)
        self.assertIn("base64", r.stderr)

    def test_error_status_and_details(self):
        r = self.call("shop.Shop/Fail", '{"sku": "nope"}')
        self.assertEqual(r.returncode, 3, r.stderr)  # INVALID_ARGUMENT
        self.assertEqual(r.stdout, "")
        lines = r.stderr.splitlines()
        self.assertEqual(lines[0], "ERROR: INVALID_ARGUMENT (3): no such sku: nope")
        details = [json.loads(l) for l in lines[1:]]
        self.assertEqual(details[0], {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "sku", "description": "unknown"}]})
        self.assertEqual(details[1]["@type"], "type.googleapis.com/google.rpc.ErrorInfo")
        self.assertEqual(details[1]["reason"], "SKU_UNKNOWN")

    def test_deadline(self):
        t0 = time.monotonic()
        r = self.call("shop.Shop/Slow", '{"sleep": 5}', "--deadline", "300ms")
        self.assertEqual(r.returncode, 4, r.stderr)  # DEADLINE_EXCEEDED
        self.assertIn("DEADLINE_EXCEEDED", r.stderr)
        self.assertLess(time.monotonic() - t0, 4)

    def test_local_errors(self):
        r = self.call("shop.Shop/Buy", '{"nope": 1}')
        self.assertEqual(r.returncode, 65)
        self.assertIn("not a valid shop.Item", r.stderr)
        self.assertIn("nope", r.stderr)
        r = self.call("shop.Shop/Upload", input='{"sku": "a"}\n{"count": "x"}\n')
        self.assertEqual(r.returncode, 65)
        self.assertIn("request line 2", r.stderr)
        r = self.call("shop.Shop/Nope")
        self.assertEqual(r.returncode, 5)
        self.assertIn("shop.Shop has no method Nope (it has: Buy, Watch", r.stderr)
        r = self.call("shop.Nope/Buy")
        self.assertEqual(r.returncode, 5)
        self.assertIn("no service shop.Nope", r.stderr)
        r = self.call("shop.Shop/Buy", "@/nonexistent/req.json")
        self.assertEqual(r.returncode, 65)
        self.assertIn("/nonexistent/req.json", r.stderr)

    def test_list(self):
        r = cli("list", self.addr)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("shop.Shop", r.stdout.splitlines())
        r = cli("list", self.addr, "shop.Shop")
        self.assertEqual(r.stdout.splitlines(), [
            "shop.Shop." + m for m in ("Buy", "Watch", "Upload", "Chat", "Fail", "Slow")])
        r = cli("list", self.addr, "shop.Nope")
        self.assertEqual(r.returncode, 5, r.stderr)

    def test_describe_reads_as_the_source(self):
        src = mwtest.dedent(SHOP)
        for symbol, head in (("shop.Shop", "service Shop {"), ("shop.Item", "message Item {"),
                             ("shop.Query", "message Query {")):
            r = cli("describe", self.addr, symbol)
            self.assertEqual(r.returncode, 0, r.stderr)
            first, rest = r.stdout.split("\n", 1)
            self.assertEqual(first, "// %s: a %s of shop.proto" % (
                symbol, "service" if symbol == "shop.Shop" else "message"))
            self.assertEqual(rest, block(src, head))
        r = cli("describe", self.addr, "common.Money")
        self.assertEqual(r.stdout.split("\n", 1)[1], block(mwtest.dedent(MONEY), "message Money {"))
        r = cli("describe", self.addr, "shop.Shop.Watch")
        self.assertEqual(r.stdout, "// shop.Shop.Watch: a method of shop.Shop\n"
                                   "rpc Watch(Query) returns (stream Item);\n")
        r = cli("describe", self.addr, "shop.Nothing")
        self.assertEqual(r.returncode, 5)
        self.assertIn("shop.Nothing", r.stderr)


class MoonwireTest(Calls, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="mw-e2e-call-")
        write_protos(cls.dir)
        with open(os.path.join(cls.dir, "shop.lua"), "w") as f:
            f.write(LUA)
        cls.server = Server(cls.dir)
        cls.server.start()
        cls.addr = cls.server.addr

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_indented_at_a_terminal(self):
        import pty
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([mwtest.MOONWIRE_BIN, "call", self.addr, "shop.Shop/Buy",
                                  '{"sku": "p", "tags": ["a", "b"], "price": {}}'],
                                 stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            os.close(slave)
            slave = None
            out = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the pty closes when the process exits
                    break
                if not chunk:
                    break
                out += chunk
            self.assertEqual(p.wait(timeout=20), 0)
            p.stderr.close()
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        self.assertEqual(out.decode().replace("\r\n", "\n"),
                         '{\n  "sku": "p",\n  "price": {},\n  "tags": [\n    "a",\n    "b"\n  ]\n}\n')

    def test_unreachable(self):
        r = cli("call", "127.0.0.1:1", "shop.Shop/Buy", "--deadline", "5")
        self.assertEqual(r.returncode, 14, r.stderr)  # UNAVAILABLE, from reflection
        self.assertIn("UNAVAILABLE", r.stderr)

    def test_usage_errors(self):
        for args in (["call", self.addr], ["call"], ["call", "nohostport", "a.B/C"],
                     ["call", self.addr, "Buy"], ["call", self.addr, "a.B/C", "--bogus"],
                     ["call", self.addr, "a.B/C", "-H", "no colon"],
                     ["call", self.addr, "a.B/C", "--deadline", "soon"],
                     ["call", self.addr, "a.B/C", "--plaintext", "--tls"],
                     ["call", self.addr, "a.B/C", "--cert", "c.pem"],
                     ["list", self.addr, "a", "b"]):
            r = cli(*args)
            self.assertEqual(r.returncode, 64, (args, r.stderr))
            self.assertTrue(r.stderr.startswith("moonwire %s: " % args[0]), r.stderr)
        r = cli("call", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("Exit status", r.stdout)


class PythonServerTest(Calls, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="mw-e2e-call-py-")
        write_protos(cls.dir)
        cls.py = PyServer(cls.dir)
        cls.addr = cls.py.addr

    @classmethod
    def tearDownClass(cls):
        cls.py.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_reflection_resolves_imports_by_name(self):
        self.py.asked.clear()
        r = cli("call", self.addr, "shop.Shop/Buy", '{"price": {"units": "3"}}')
        self.assertEqual(r.returncode, 0, r.stderr)
        # v1 was refused (UNIMPLEMENTED), v1alpha asked for the service,
        # then each import the server did not send
        self.assertEqual(self.py.asked[0], ("file_containing_symbol", "shop.Shop"))
        self.assertEqual(sorted(a[1] for a in self.py.asked[1:]),
                         ["common/money.proto", "google/protobuf/timestamp.proto"])


class WithoutReflectionTest(unittest.TestCase):
    """Reflection off: the call says so (UNIMPLEMENTED) and --proto or
    --protoset give the schema instead."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="mw-e2e-call-norefl-")
        write_protos(cls.dir)
        cls.py = PyServer(cls.dir, reflection=False)
        with open(os.path.join(cls.dir, "shop.lua"), "w") as f:
            f.write(LUA)
        cls.mw = Server(cls.dir, config="reflection: false\n")
        cls.mw.start()

    @classmethod
    def tearDownClass(cls):
        cls.mw.close()
        cls.py.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_unimplemented_then_proto(self):
        shop = os.path.join(self.dir, "shop.proto")
        for addr in (self.mw.addr, self.py.addr):
            r = cli("call", addr, "shop.Shop/Buy", '{"sku": "s"}')
            self.assertEqual(r.returncode, 12, r.stderr)  # UNIMPLEMENTED
            self.assertIn("does not support the reflection API", r.stderr)
            self.assertIn("--proto", r.stderr)
            r = cli("call", addr, "shop.Shop/Buy", '{"sku": "s"}', "--proto", shop)
            self.assertEqual((r.returncode, json.loads(r.stdout or "null")), (0, {"sku": "s"}),
                             r.stderr)
            r = cli("call", addr, "shop.Shop/Fail", '{"sku": "s"}', "--proto", shop)
            self.assertEqual(r.returncode, 3)
            self.assertIn("google.rpc.BadRequest", r.stderr)  # details decode without reflection
            r = cli("call", addr, "shop.Shop/Watch", '{"sku": "s", "n": 2}',
                    "-I", self.dir, "--proto", shop)
            self.assertEqual(len(ndjson(r.stdout)), 2, r.stderr)
        r = cli("describe", self.mw.addr, "shop.Item", "--proto", shop)
        self.assertEqual(r.stdout.split("\n", 1)[1], block(mwtest.dedent(SHOP), "message Item {"))
        r = cli("list", self.mw.addr, "--proto", shop)
        self.assertEqual(r.stdout, "shop.Shop\n")
        # no server is asked: ADDR may be left out
        r = cli("list", "--proto", shop)
        self.assertEqual((r.returncode, r.stdout), (0, "shop.Shop\n"), r.stderr)
        r = cli("describe", "shop.Query", "--proto", shop)
        self.assertEqual(r.stdout.split("\n", 1)[1], block(mwtest.dedent(SHOP), "message Query {"))
        r = cli("call", "shop.Shop/Buy", "--proto", shop)
        self.assertEqual(r.returncode, 64)  # a call needs its server
        r = cli("call", self.mw.addr, "shop.Shop/Buy", "--proto", os.path.join(self.dir, "no.proto"))
        self.assertEqual(r.returncode, 65)
        self.assertIn("no.proto", r.stderr)

    def test_protoset(self):
        fd, pb = tempfile.mkstemp(suffix=".protoset")
        os.close(fd)
        try:
            subprocess.run([mwtest.PROTOC, "-I", self.dir, "--include_imports",
                            "--descriptor_set_out=" + pb, "shop.proto"], check=True)
            r = cli("call", self.py.addr, "shop.Shop/Upload", "--protoset", pb,
                    input='{"sku": "p", "count": 1}\n')
            self.assertEqual(json.loads(r.stdout), {"items": 1, "skus": ["p"]}, r.stderr)
        finally:
            os.unlink(pb)


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import test_tls
        test_tls.setUpModule()
        cls.tls = test_tls
        cls.dir = tempfile.mkdtemp(prefix="mw-e2e-call-tls-")
        write_protos(cls.dir)
        with open(os.path.join(cls.dir, "shop.lua"), "w") as f:
            f.write(LUA)
        pki = test_tls.pki
        cls.pki = pki
        cls.server = Server(cls.dir, args=test_tls.tls_args(client_ca="ca"))
        cls.server.start()
        cls.addr = cls.server.addr

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.dir, ignore_errors=True)
        cls.tls.tearDownModule()

    def test_tls(self):
        p = self.pki.path
        ok = cli("call", self.addr, "shop.Shop/Buy", '{"sku": "t"}', "--cacert", p("ca.pem"))
        self.assertEqual((ok.returncode, ok.stdout), (0, '{"sku":"t"}\n'), ok.stderr)
        r = cli("call", self.addr, "shop.Shop/Buy", "--cacert", p("ca.pem"),
                "--cert", p("client.pem"), "--key", p("client.key"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = cli("call", self.addr, "shop.Shop/Buy", "--insecure")
        self.assertEqual(r.returncode, 0, r.stderr)
        # the name checked is --servername's, not the address's
        r = cli("call", self.addr, "shop.Shop/Buy", "--cacert", p("ca.pem"),
                "--servername", "localhost")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = cli("call", self.addr, "shop.Shop/Buy", "--cacert", p("ca.pem"), "--deadline", "5",
                "--servername", "elsewhere.test")
        self.assertEqual(r.returncode, 14, r.stderr)
        # an unknown CA (the system's roots), another CA, plaintext to TLS
        for args in (["--tls"], ["--cacert", p("ca2.pem")], ["--plaintext"], []):
            r = cli("call", self.addr, "shop.Shop/Buy", "--deadline", "5", *args)
            self.assertEqual(r.returncode, 14, (args, r.stderr))
        r = cli("call", self.addr, "shop.Shop/Buy", "--cacert", p("nothere.pem"))
        self.assertEqual(r.returncode, 65)
        self.assertIn("nothere.pem", r.stderr)
        r = cli("call", self.addr, "shop.Shop/Buy", "--cacert", p("ca.db/ca.cnf"))
        self.assertEqual(r.returncode, 65)
        self.assertIn("not a PEM file", r.stderr)


DOCS = os.path.join(mwtest.SOURCE_DIR, "docs", "commands")


def doc_examples(name):
    """(command, expected output or None) of docs/commands/NAME: indented
    blocks, either `$ cmd` lines each followed by its output, or shell
    commands (as many lines as shlex needs to close their quotes, or ending
    in \\ or |) followed, in the same paragraph, by their output."""
    with open(os.path.join(DOCS, name)) as f:
        text = f.read()
    paragraphs, cur = [], []
    for line in text.splitlines():
        if line.startswith("    "):
            cur.append(line[4:])
        else:
            if cur:
                paragraphs.append(cur)
            cur = []
    if cur:
        paragraphs.append(cur)
    out = []
    for para in paragraphs:
        if para[0].startswith("$ moonwire "):
            out.append((para[0][2:], "\n".join(para[1:]) + "\n"))
            continue
        lines = [l for l in para if not l.startswith("#")]
        if not lines or not lines[0].startswith(("moonwire ", "printf ")):
            continue
        n = 0
        while n < len(lines):
            n += 1
            cmd = "\n".join(lines[:n])
            if cmd.endswith(("\\", "|")):
                continue
            try:
                shlex.split(cmd)
            except ValueError:
                continue
            break
        rest = lines[n:]
        out.append((cmd, "\n".join(rest) + "\n" if rest else None))
    # the synopses (ADDR) and quoted messages are not commands to run
    return [(c, w) for c, w in out if "127.0.0.1:50051" in c]


class DocsTest(unittest.TestCase):
    """The examples of docs/commands/ run as written against the examples/
    they name, and print what the pages show."""

    @classmethod
    def setUpClass(cls):
        cls.servers = {}
        for name in ("routeguide", "helloworld", "shop"):
            s = Server(mwtest.example(name))
            s.start()
            cls.servers[name] = s

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers.values():
            s.close()

    def run_example(self, cmd):
        # a command naming no package (list ADDR) is list.md's helloworld one
        pkg = next((p for p in self.servers if p + "." in cmd), "helloworld")
        script = cmd.replace("127.0.0.1:50051", self.servers[pkg].addr)
        script = 'moonwire() { "$MOONWIRE_BIN" "$@"; }\n' + script
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, MOONWIRE_BIN=mwtest.MOONWIRE_BIN))

    def test_examples(self):
        seen = 0
        for page in ("call.md", "list.md", "describe.md"):
            for cmd, want in doc_examples(page):
                seen += 1
                r = self.run_example(cmd)
                self.assertEqual(r.returncode, 0, (page, cmd, r.stderr))
                if want is not None:
                    self.assertEqual(r.stdout, want, (page, cmd))
                else:
                    for line in r.stdout.splitlines():
                        json.loads(line)  # NDJSON
                    self.assertTrue(r.stdout, (page, cmd))
        self.assertGreaterEqual(seen, 9)


if __name__ == "__main__":
    mwtest.main()
