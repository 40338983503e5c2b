"""Stub mode: methods without a Lua handler answer from gripmock v3 stub
files, called by python3-grpcio; --stub-all answers every method."""

import json
import os
import tempfile
import time

import grpc

import mwtest
from mwtest import Protos, Server, run_cli
from test_admin import admin_addr, get
from test_rich_errors import load_rpc_modules

PROTO = """
syntax = "proto3";
package hello;

enum Kind { KIND_UNSPECIFIED = 0; FRIEND = 1; FOE = 2; }
message Inner { string city = 1; int32 zip = 2; }
message HelloRequest {
  string name = 1;
  repeated string tags = 2;
  int64 big_number = 3;
  Kind kind = 4;
  bytes blob = 5;
  Inner inner = 6;
  string email = 7;
}
message HelloReply {
  string message = 1;
  int64 count = 2;
  Kind kind = 3;
  repeated Inner places = 4;
  map<string, int32> scores = 5;
  bytes blob = 6;
  bool ok = 7;
  double ratio = 8;
}
service Greeter {
  rpc SayHello(HelloRequest) returns (HelloReply);
  rpc Many(HelloRequest) returns (stream HelloReply);
  rpc Collect(stream HelloRequest) returns (HelloReply);
  rpc Chat(stream HelloRequest) returns (stream HelloReply);
  rpc Scripted(HelloRequest) returns (HelloReply);
  rpc Bare(HelloRequest) returns (HelloReply);
}
"""

LUA = """
local mw = require "moonwire"
local Greeter = mw.service "hello.Greeter"

-- A handler wins over any stub of its method.
function Greeter.Scripted(req, ctx)
  return {message = "from Lua"}
end
"""

STUBS = """
# equals: the declared fields are equal; other request fields are ignored
- service: hello.Greeter
  method: SayHello
  input:
    equals: {name: bob}
  output:
    data: {message: "Hi bob", count: "9007199254740993", kind: FRIEND, ratio: 0.5}

# contains: a subset, arrays in any order
- service: Greeter
  method: SayHello
  input:
    contains: {tags: [grpc]}
  output:
    data: {message: "tagged grpc"}

# matches: a POSIX extended regular expression
- service: hello.Greeter
  method: SayHello
  input:
    matches: {email: "^[a-z]+@example\\\\.com$"}
  output:
    data: {message: "example.com user"}

# specificity first: two equals leaves beat one, whatever the priority
- service: hello.Greeter
  method: SayHello
  priority: 100
  input: {equals: {name: carol}}
  output: {data: {message: "carol, one field"}}
- service: hello.Greeter
  method: SayHello
  input: {equals: {name: carol, kind: FOE}}
  output: {data: {message: "carol the foe"}}

# ignoreArrayOrder: equals on a list in any order
- service: hello.Greeter
  method: SayHello
  input:
    ignoreArrayOrder: true
    equals: {name: ivy, tags: [b, a]}
  output: {data: {message: "ivy, any order"}}
- service: hello.Greeter
  method: SayHello
  input:
    equals: {name: jo, tags: [b, a]}
  output: {data: {message: "jo, in order"}}

# priority breaks a tie
- service: hello.Greeter
  method: SayHello
  priority: 1
  input: {equals: {name: dave}}
  output: {data: {message: "dave low"}}
- service: hello.Greeter
  method: SayHello
  priority: 5
  input: {equals: {name: dave}}
  output: {data: {message: "dave high"}}

# times: used up after two calls, then the next stub answers
- service: hello.Greeter
  method: SayHello
  priority: 10
  options: {times: 2}
  input: {equals: {name: erin}}
  output: {data: {message: "erin limited"}}
- service: hello.Greeter
  method: SayHello
  input: {equals: {name: erin}}
  output: {data: {message: "erin again"}}

# headers, proto3 JSON forms (JSON names, int64 as a string, bytes base64,
# nested messages)
- service: hello.Greeter
  method: SayHello
  headers: {equals: {X-Env: prod}}
  input: {equals: {name: frank}}
  output: {data: {message: "frank in prod"}}
- service: hello.Greeter
  method: SayHello
  input:
    equals: {name: frank, bigNumber: "12345678901234", blob: "AAEC", inner: {city: Oslo}}
  output: {data: {message: "frank elsewhere", blob: "/w==", places: [{city: Oslo, zip: 150}],
                  scores: {a: 1}}}

# errors with details, metadata, delay
- service: hello.Greeter
  method: SayHello
  input: {equals: {name: ghost}}
  output:
    error: "no such ghost"
    code: 5
    details:
      - type: type.googleapis.com/google.rpc.ErrorInfo
        reason: GHOST
        domain: example.com
        metadata: {who: ghost}
    trailers: {x-why: spooky}
- service: hello.Greeter
  method: SayHello
  input: {equals: {name: slow}}
  output:
    delay: 300ms
    headers: {x-stub: slow}
    trailers: {x-done: "yes"}
    data: {message: "finally"}

# Lua outputs: an expression, and a chunk with state
- service: hello.Greeter
  method: SayHello
  input: {matches: {name: "^lua"}}
  output:
    lua: "{message = 'Hi ' .. req.name .. ' #' .. calls}"
- service: hello.Greeter
  method: SayHello
  input: {equals: {name: fn}}
  output:
    lua: "function(req, ctx) return {message = 'fn for ' .. req.name, count = #req.tags} end"
- service: hello.Greeter
  method: SayHello
  input: {equals: {name: flaky}}
  output:
    lua: |
      if calls < 3 then
        mw.fail(mw.UNAVAILABLE, "try again (" .. calls .. ")")
      end
      return {message = "third time lucky", count = calls}

# streams
- service: hello.Greeter
  method: Many
  input: {equals: {name: three}}
  output:
    stream: [{message: one}, {message: two}, {message: three}]
- service: hello.Greeter
  method: Many
  input: {equals: {name: broken}}
  output:
    stream: [{message: partial}]
    error: "stream broke"
    code: UNAVAILABLE
- service: hello.Greeter
  method: Collect
  inputs:
    - equals: {name: a}
    - equals: {name: b}
  output: {data: {message: "a then b"}}
- service: hello.Greeter
  method: Collect
  inputs:
    - contains: {tags: [x]}
  output: {data: {message: "every one tagged x"}}
- service: hello.Greeter
  method: Chat
  input: {equals: {name: ping}}
  output: {data: {message: pong}}
- service: hello.Greeter
  method: Chat
  input: {equals: {name: ding}}
  output: {data: {message: dong}}
- service: hello.Greeter
  method: Scripted
  output: {data: {message: "from a stub"}}
"""

JSON_STUB = """
[{"service": "hello.Greeter", "method": "SayHello",
  "input": {"equals": {"name": "json"}},
  "output": {"data": {"message": "from stubs/extra.json", "kind": 2}}}]
"""


class Stubs(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"hello.proto": PROTO, "hello.lua": LUA,
                                     "greeter.stubs.yaml": STUBS,
                                     "stubs/extra.json": JSON_STUB})
        cls.protos = Protos(cls.dir)
        cls.Req = cls.protos.msg("hello.HelloRequest")
        cls.server = Server(cls.dir).start()
        cls.ch = cls.server.channel()
        cls.tmp = tempfile.mkdtemp(prefix="mw-e2e-rpc-")
        cls.status_pb2, cls.ed = load_rpc_modules(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()
        import shutil
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def hello(self, metadata=None, **fields):
        fn = self.protos.unary(self.ch, "/hello.Greeter/SayHello")
        return fn(self.Req(**fields), timeout=10, metadata=metadata)

    def fails(self, method="SayHello", **fields):
        fn = self.protos.unary(self.ch, "/hello.Greeter/" + method)
        with self.assertRaises(grpc.RpcError) as cm:
            fn(self.Req(**fields), timeout=10)
        return cm.exception

    def test_equals_ignores_other_fields(self):
        r = self.hello(name="bob", tags=["whatever"])
        self.assertEqual(r.message, "Hi bob")
        self.assertEqual(r.count, 9007199254740993)  # exact past 2^53
        self.assertEqual(r.kind, 1)
        self.assertEqual(r.ratio, 0.5)

    def test_contains_is_a_subset_in_any_order(self):
        self.assertEqual(self.hello(name="x", tags=["a", "grpc", "b"]).message, "tagged grpc")
        # no substring matching: "grpcx" is not "grpc"
        err = self.fails(name="x", tags=["grpcx"])
        self.assertEqual(err.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_matches_uses_regular_expressions(self):
        self.assertEqual(self.hello(email="ann@example.com").message, "example.com user")
        err = self.fails(email="ann@exampleXcom")
        self.assertEqual(err.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_ignore_array_order(self):
        self.assertEqual(self.hello(name="ivy", tags=["a", "b"]).message, "ivy, any order")
        self.assertEqual(self.hello(name="jo", tags=["b", "a"]).message, "jo, in order")
        for tags in (["a", "b"], ["b"], ["b", "a", "c"]):
            with self.subTest(tags=tags):
                err = self.fails(name="jo", tags=tags)
                self.assertEqual(err.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_specificity_before_priority(self):
        self.assertEqual(self.hello(name="carol", kind=2).message, "carol the foe")
        self.assertEqual(self.hello(name="carol").message, "carol, one field")

    def test_priority_breaks_ties(self):
        self.assertEqual(self.hello(name="dave").message, "dave high")

    def test_times_then_the_next_stub(self):
        got = [self.hello(name="erin").message for _ in range(4)]
        self.assertEqual(got, ["erin limited", "erin limited", "erin again", "erin again"])

    def test_headers_matcher(self):
        self.assertEqual(self.hello(name="frank", metadata=[("x-env", "prod")]).message,
                         "frank in prod")
        self.assertNotEqual(self.hello(name="frank", big_number=12345678901234, blob=b"\0\1\2",
                                       inner={"city": "Oslo"}, metadata=[("x-env", "dev")]).message,
                            "frank in prod")

    def test_proto3_json_forms(self):
        r = self.hello(name="frank", big_number=12345678901234, blob=b"\0\1\2",
                       inner={"city": "Oslo", "zip": 7})
        self.assertEqual(r.message, "frank elsewhere")
        self.assertEqual(r.blob, b"\xff")
        self.assertEqual([(p.city, p.zip) for p in r.places], [("Oslo", 150)])
        self.assertEqual(dict(r.scores), {"a": 1})
        # one field off: no match
        err = self.fails(name="frank", big_number=1, blob=b"\0\1\2", inner={"city": "Oslo"})
        self.assertEqual(err.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_json_stub_in_stubs_folder(self):
        r = self.hello(name="json")
        self.assertEqual((r.message, r.kind), ("from stubs/extra.json", 2))

    def test_error_with_code_details_and_trailers(self):
        err = self.fails(name="ghost")
        self.assertEqual(err.code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(err.details(), "no such ghost")
        md = dict(err.trailing_metadata())
        self.assertEqual(md.get("x-why"), "spooky")
        st = self.status_pb2.Status.FromString(md["grpc-status-details-bin"])
        self.assertEqual(st.code, 5)
        info = self.ed.ErrorInfo()
        self.assertTrue(st.details[0].Unpack(info))
        self.assertEqual((info.reason, info.domain, dict(info.metadata)),
                         ("GHOST", "example.com", {"who": "ghost"}))

    def test_delay_headers_trailers(self):
        fn = self.protos.unary(self.ch, "/hello.Greeter/SayHello")
        t0 = time.monotonic()
        r, call = fn.with_call(self.Req(name="slow"), timeout=10)
        self.assertGreaterEqual(time.monotonic() - t0, 0.29)
        self.assertEqual(r.message, "finally")
        self.assertEqual(dict(call.initial_metadata()).get("x-stub"), "slow")
        self.assertEqual(dict(call.trailing_metadata()).get("x-done"), "yes")

    def test_lua_expression_output(self):
        a = self.hello(name="lua-a").message
        b = self.hello(name="lua-b").message
        self.assertRegex(a, r"^Hi lua-a #\d+$")
        self.assertEqual(int(b.split("#")[1]), int(a.split("#")[1]) + 1)

    def test_lua_function_output(self):
        r = self.hello(name="fn", tags=["a", "b"])
        self.assertEqual((r.message, r.count), ("fn for fn", 2))

    def test_lua_chunk_sequence_across_workers(self):
        codes = []
        for _ in range(2):
            err = self.fails(name="flaky")
            codes.append((err.code(), err.details()))
        self.assertEqual(codes, [(grpc.StatusCode.UNAVAILABLE, "try again (1)"),
                                 (grpc.StatusCode.UNAVAILABLE, "try again (2)")])
        r = self.hello(name="flaky")
        self.assertEqual((r.message, r.count), ("third time lucky", 3))

    def test_closest_stubs_when_none_matches(self):
        err = self.fails(name="nobody", kind=2)
        self.assertEqual(err.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertIn("no stub of /hello.Greeter/SayHello matches the request; closest:",
                      err.details())
        # the carol-the-foe stub has one of its two equals entries
        self.assertIn("greeter.stubs.yaml", err.details())
        self.assertIn("50% of its matchers", err.details())

    def test_check_and_serve_tell_stubs_from_handlers(self):
        self.assertTrue(self.server.wait_log("serving 6 method(s) with 1 handler(s) and 4 answered "
                                             "by stubs"), self.server.logs())
        r = run_cli("check", str(self.dir))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("6 methods, 1 with handlers, 4 answered by stubs", r.stdout)
        self.assertRegex(r.stdout, r"/hello\.Greeter/Many +server-streaming +stubs")
        self.assertRegex(r.stdout, r"/hello\.Greeter/Scripted +unary +handler")
        self.assertRegex(r.stdout, r"/hello\.Greeter/Bare +unary +no handler")

    def test_handler_wins_over_stub(self):
        fn = self.protos.unary(self.ch, "/hello.Greeter/Scripted")
        self.assertEqual(fn(self.Req(), timeout=10).message, "from Lua")

    def test_method_with_neither(self):
        err = self.fails("Bare", name="x")
        self.assertEqual(err.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_server_stream(self):
        fn = self.protos.server_stream(self.ch, "/hello.Greeter/Many")
        self.assertEqual([r.message for r in fn(self.Req(name="three"), timeout=10)],
                         ["one", "two", "three"])
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for r in fn(self.Req(name="broken"), timeout=10):
                got.append(r.message)
        self.assertEqual(got, ["partial"])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(cm.exception.details(), "stream broke")

    def test_client_stream_inputs(self):
        fn = self.protos.client_stream(self.ch, "/hello.Greeter/Collect")
        self.assertEqual(fn(iter([self.Req(name="a"), self.Req(name="b")]), timeout=10).message,
                         "a then b")
        self.assertEqual(fn(iter([self.Req(tags=["x"]), self.Req(tags=["y", "x"])]),
                            timeout=10).message, "every one tagged x")
        with self.assertRaises(grpc.RpcError) as cm:
            fn(iter([self.Req(name="a"), self.Req(name="b"), self.Req(name="c")]), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_bidi_answers_each_message(self):
        fn = self.protos.bidi(self.ch, "/hello.Greeter/Chat")
        names = ["ping", "ding", "ping"]
        got = [r.message for r in fn(iter([self.Req(name=n) for n in names]), timeout=10)]
        self.assertEqual(got, ["pong", "dong", "pong"])


GOOD = """
- service: hello.Greeter
  method: SayHello
  output: {data: {message: "v1"}}
"""


class StubFiles(mwtest.TestCase):
    def test_reload_rereads_stubs(self):
        with mwtest.ServiceDir({"hello.proto": PROTO, "a.stubs.yaml": GOOD}) as d:
            protos = Protos(d)
            with Server(d) as s:
                fn = protos.unary(s.channel(), "/hello.Greeter/SayHello")
                req = protos.msg("hello.HelloRequest")()
                self.assertEqual(fn(req, timeout=10).message, "v1")
                d.write("a.stubs.yaml", GOOD.replace("v1", "v2"))
                self.assertTrue(s.wait_log("reloaded (a.stubs.yaml changed)", timeout=10), s.logs())
                self.assertEqual(fn(req, timeout=10).message, "v2")
                # a file of the stubs/ folder reloads too; a more specific stub wins
                d.write("stubs/more.json", '[{"service": "Greeter", "method": "SayHello", '
                        '"input": {"equals": {"name": "z"}}, "output": {"data": {"message": "v3"}}}]')
                # (the reload names the new folder or its file, whichever event came first)
                self.assertTrue(s.wait_log("changed): generation 3,", timeout=10), s.logs())
                z = protos.msg("hello.HelloRequest")(name="z")
                deadline = time.monotonic() + 10
                while fn(z, timeout=10).message != "v3" and time.monotonic() < deadline:
                    time.sleep(0.1)
                self.assertEqual(fn(z, timeout=10).message, "v3")
                # a bad stub keeps the old generation, with the file and stub named
                d.write("a.stubs.yaml", GOOD + "- service: hello.Greeter\n  method: Nope\n"
                        "  output: {data: {}}\n")
                self.assertTrue(s.wait_log("has no method 'Nope'", timeout=10), s.logs())
                self.assertRegex(s.logs(), r"a\.stubs\.yaml:\d+: stub 2: hello\.Greeter has no method 'Nope'")
                self.assertEqual(fn(req, timeout=10).message, "v2")

    def check(self, stubs):
        with mwtest.ServiceDir({"hello.proto": PROTO, "bad.stubs.yaml": stubs}) as d:
            r = run_cli("check", str(d))
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            return r.stderr

    def test_bad_stubs_fail_the_load(self):
        cases = [
            ("- service: hello.Greeter\n  method: SayHello\n  output: {data: {nope: 1}}\n",
             "stub 1: output.data: message hello.HelloReply has no field 'nope'"),
            ("- service: hello.Greeter\n  method: SayHello\n  output: {data: {count: abc}}\n",
             "output.data.count: an integer expected"),
            ("- service: hello.Greeter\n  method: SayHello\n  input: {matches: {name: \"(\"}}\n"
             "  output: {data: {}}\n", "bad regular expression '('"),
            ("- service: nope.Svc\n  method: X\n  output: {data: {}}\n",
             "no service 'nope.Svc' in the loaded .proto files"),
            ("- service: hello.Greeter\n  method: SayHello\n  output: {data: {kind: ALLY}}\n",
             "no value ALLY in the enum"),
            ("- service: hello.Greeter\n  method: SayHello\n  inputz: {}\n  output: {data: {}}\n",
             "unknown key 'inputz' in a stub"),
            ("- service: hello.Greeter\n  method: SayHello\n  output: {}\n",
             "output needs data, stream, error/code or lua"),
            ("- service: hello.Greeter\n  method: SayHello\n  output: {lua: \"return {\"}\n",
             "output.lua"),
        ]
        for text, want in cases:
            with self.subTest(want=want):
                err = self.check(text)
                self.assertIn(want, err)
                self.assertIn("bad.stubs.yaml:", err)


class StubAll(mwtest.TestCase):
    def test_every_method_answers_a_default_message(self):
        with mwtest.ServiceDir({"hello.proto": PROTO}) as d:
            protos = Protos(d)
            with Server(args=["--stub-all", str(d)]) as s:
                ch = s.channel()
                req = protos.msg("hello.HelloRequest")()
                r = protos.unary(ch, "/hello.Greeter/SayHello")(req, timeout=10)
                self.assertEqual((r.message, r.count, r.kind, r.ok, r.ratio),
                                 ("message", 1, 0, True, 1.5))
                self.assertEqual([(p.city, p.zip) for p in r.places], [("city", 1)])
                self.assertEqual(dict(r.scores), {"key": 1})
                many = list(protos.server_stream(ch, "/hello.Greeter/Many")(req, timeout=10))
                self.assertEqual([m.message for m in many], ["message"])
                c = protos.client_stream(ch, "/hello.Greeter/Collect")(iter([req, req]),
                                                                      timeout=10)
                self.assertEqual(c.message, "message")
                chat = list(protos.bidi(ch, "/hello.Greeter/Chat")(iter([req, req]), timeout=10))
                self.assertEqual(len(chat), 2)

    def test_stubs_and_handlers_win_over_defaults(self):
        with mwtest.ServiceDir({"hello.proto": PROTO, "hello.lua": LUA,
                                "a.stubs.yaml": GOOD}) as d:
            protos = Protos(d)
            with Server(args=["--stub-all", str(d)]) as s:
                ch = s.channel()
                req = protos.msg("hello.HelloRequest")()
                self.assertEqual(protos.unary(ch, "/hello.Greeter/SayHello")(req, timeout=10).message, "v1")
                self.assertEqual(protos.unary(ch, "/hello.Greeter/Scripted")(req, timeout=10).message,
                                 "from Lua")
                self.assertEqual(protos.unary(ch, "/hello.Greeter/Bare")(req, timeout=10).message,
                                 "message")

    def test_stub_all_needs_a_directory(self):
        r = run_cli("serve", "--stub-all")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--stub-all needs a directory", r.stderr)


class AdminApi(mwtest.TestCase):
    """The admin listener's /api/: stubs added at run time reach every
    worker, the call history and verify."""

    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"hello.proto": PROTO, "hello.lua": LUA,
                                     "a.stubs.yaml": GOOD})
        cls.protos = Protos(cls.dir)
        cls.Req = cls.protos.msg("hello.HelloRequest")
        cls.server = Server(cls.dir, config="""
            workers: 4
            admin: {listen: "127.0.0.1:0"}
        """, listen="127.0.0.1:0").start()
        cls.addr = admin_addr(cls.server)

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()

    def setUp(self):
        self.api("DELETE", "/api/stubs")
        self.api("DELETE", "/api/history")

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        status, _, text = get(self.addr, path, method=method, data=data)
        return status, json.loads(text) if text.strip() else None

    def call(self, method="Bare", **fields):
        ch = grpc.insecure_channel(self.server.target())
        try:
            fn = self.protos.unary(ch, "/hello.Greeter/" + method)
            return fn(self.Req(**fields), timeout=10)
        finally:
            ch.close()

    def test_added_stub_answers_on_every_worker(self):
        status, ids = self.api("POST", "/api/stubs", {
            "service": "hello.Greeter", "method": "Bare",
            "input": {"equals": {"name": "x"}},
            "output": {"data": {"message": "added at run time", "count": "7"}}})
        self.assertEqual(status, 200)
        self.assertEqual(len(ids), 1)
        # a new channel per call: calls spread over the four workers
        for _ in range(8):
            r = self.call(name="x")
            self.assertEqual((r.message, r.count), ("added at run time", 7))
        status, listed = self.api("GET", "/api/stubs")
        self.assertEqual([s["id"] for s in listed], ids)
        self.assertEqual(listed[0]["stub"]["method"], "Bare")
        status, one = self.api("GET", "/api/stubs/" + ids[0])
        self.assertEqual((status, one["id"], one["stub"]["method"]), (200, ids[0], "Bare"))
        status, _ = self.api("DELETE", "/api/stubs/" + ids[0])
        self.assertEqual(status, 200)
        with self.assertRaises(grpc.RpcError) as cm:
            self.call(name="x")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertEqual(self.api("DELETE", "/api/stubs/" + ids[0])[0], 404)
        self.assertEqual(self.api("GET", "/api/stubs/" + ids[0])[0], 404)

    def test_list_of_stubs_with_ids_and_file_stubs_still_answer(self):
        status, ids = self.api("POST", "/api/stubs", [
            {"id": "one", "service": "Greeter", "method": "Bare",
             "input": {"equals": {"name": "1"}}, "output": {"data": {"message": "first"}}},
            {"id": "two", "service": "Greeter", "method": "Bare",
             "input": {"equals": {"name": "2"}}, "output": {"data": {"message": "second"}}}])
        self.assertEqual((status, ids), (200, ["one", "two"]))
        self.assertEqual(self.call(name="2").message, "second")
        self.assertEqual(self.call("SayHello").message, "v1")

    def test_bad_posts_are_refused(self):
        for body, want in ((b"{", "a stub"), (b'{"method": "Bare"}', "service"),
                           (b"[1]", "JSON object")):
            with self.subTest(body=body):
                status, _, text = get(self.addr, "/api/stubs", method="POST", data=body)
                self.assertEqual(status, 400)
                self.assertIn(want, json.loads(text)["error"])

    def test_history_and_verify(self):
        self.call("SayHello", name="h1")
        self.call("SayHello", name="h2")
        with self.assertRaises(grpc.RpcError):
            self.call(name="nothing")
        status, hist = self.api("GET", "/api/history")
        self.assertEqual(status, 200)
        said = [h for h in hist if h["method"] == "SayHello"]
        self.assertEqual([h["request"]["name"] for h in said], ["h1", "h2"])
        self.assertEqual(said[0]["service"], "hello.Greeter")
        self.assertIn("a.stubs.yaml", said[0]["stub"])
        bare = [h for h in hist if h["method"] == "Bare"]
        self.assertEqual((bare[0]["stub"], bare[0]["code"]), (None, 12))
        status, body = self.api("POST", "/api/verify", {"service": "hello.Greeter",
                                                        "method": "SayHello", "expectedCount": 2})
        self.assertEqual(status, 200, body)
        status, body = self.api("POST", "/api/verify", {"service": "Greeter",
                                                        "method": "SayHello", "expectedCount": 3})
        self.assertEqual(status, 400)
        self.assertEqual((body["expected"], body["actual"]), (3, 2))
        self.api("DELETE", "/api/history")
        status, body = self.api("POST", "/api/verify", {"service": "Greeter",
                                                        "method": "SayHello", "expectedCount": 0})
        self.assertEqual(status, 200, body)


REAL_LUA = """
local mw = require "moonwire"
local Greeter = mw.service "hello.Greeter"

function Greeter.SayHello(req, ctx)
  if req.name == "missing" then
    mw.fail(mw.NOT_FOUND, "no " .. req.name)
  end
  return {message = "real hello " .. req.name, count = req.big_number * 2, blob = req.blob,
          kind = "FOE", places = {{city = ctx.metadata["x-city"] or "none"}}}
end

function Greeter.Many(req, stream, ctx)
  for i = 1, 3 do stream:send{message = req.name .. i} end
end

function Greeter.Collect(stream, ctx)
  local names = {}
  for m in stream:iter() do names[#names + 1] = m.name end
  return {message = table.concat(names, "+")}
end
"""

MOCK_LUA = """
local mw = require "moonwire"
local Greeter = mw.service "hello.Greeter"
function Greeter.Bare(req, ctx) return {message = "mock's own"} end
"""


class Upstream(mwtest.TestCase):
    """upstream: forwards what neither a handler nor a stub answers to a real
    server (another Moonwire, with handlers); --record writes what it saw as
    stubs, which then answer the same without the upstream."""

    def test_fall_through_and_record(self):
        with mwtest.ServiceDir({"hello.proto": PROTO, "real.lua": REAL_LUA}) as real_dir, \
                mwtest.ServiceDir({"hello.proto": PROTO, "mock.lua": MOCK_LUA,
                                   "one.stubs.yaml": GOOD.replace("SayHello", "Scripted")}) as mock_dir, \
                tempfile.TemporaryDirectory(prefix="mw-e2e-rec-") as rec:
            protos = Protos(real_dir)
            Req = protos.msg("hello.HelloRequest")
            with Server(real_dir) as real:
                with Server(mock_dir, config="upstream: %s\n" % real.target(),
                            args=["--record", rec]) as mock:
                    ch = mock.channel()
                    hello = protos.unary(ch, "/hello.Greeter/SayHello")
                    live = [hello(Req(name="ann", big_number=21, blob=b"\xff\x00"), timeout=10,
                                  metadata=[("x-city", "Oslo")]),
                            hello(Req(name="bo"), timeout=10)]
                    self.assertEqual(live[0].message, "real hello ann")
                    self.assertEqual((live[0].count, live[0].blob, live[0].kind), (42, b"\xff\x00", 2))
                    self.assertEqual(live[0].places[0].city, "Oslo")  # metadata went along
                    with self.assertRaises(grpc.RpcError) as cm:
                        hello(Req(name="missing"), timeout=10)
                    self.assertEqual((cm.exception.code(), cm.exception.details()),
                                     (grpc.StatusCode.NOT_FOUND, "no missing"), mock.logs())
                    many = [m.message for m in protos.server_stream(ch, "/hello.Greeter/Many")(
                        Req(name="x"), timeout=10)]
                    self.assertEqual(many, ["x1", "x2", "x3"])
                    col = protos.client_stream(ch, "/hello.Greeter/Collect")(
                        iter([Req(name="a"), Req(name="b")]), timeout=10)
                    self.assertEqual(col.message, "a+b")
                    # the mock's own handler and stub still answer first
                    self.assertEqual(protos.unary(ch, "/hello.Greeter/Bare")(Req(), timeout=10).message,
                                     "mock's own")
                    self.assertEqual(protos.unary(ch, "/hello.Greeter/Scripted")(Req(), timeout=10).message,
                                     "v1")
                    # a request seen twice is recorded once
                    hello(Req(name="bo"), timeout=10)
            files = sorted(os.listdir(rec))
            self.assertEqual(len([f for f in files if f.startswith("hello.Greeter.SayHello.")]), 3,
                             files)
            self.assertEqual(len(files), 5, files)
            # the recorded stubs answer the same, with the upstream gone
            with mwtest.ServiceDir({"hello.proto": PROTO}) as replay_dir:
                for f in files:
                    with open(os.path.join(rec, f)) as src:
                        replay_dir.write("stubs/" + f, src.read())
                with Server(replay_dir) as replay:
                    ch = replay.channel()
                    hello = protos.unary(ch, "/hello.Greeter/SayHello")
                    again = hello(Req(name="ann", big_number=21, blob=b"\xff\x00"), timeout=10)
                    self.assertEqual(again, live[0])
                    self.assertEqual(hello(Req(name="bo"), timeout=10), live[1])
                    with self.assertRaises(grpc.RpcError) as cm:
                        hello(Req(name="missing"), timeout=10)
                    self.assertEqual((cm.exception.code(), cm.exception.details()),
                                     (grpc.StatusCode.NOT_FOUND, "no missing"))
                    self.assertEqual([m.message for m in protos.server_stream(
                        ch, "/hello.Greeter/Many")(Req(name="x"), timeout=10)], ["x1", "x2", "x3"])
                    self.assertEqual(protos.client_stream(ch, "/hello.Greeter/Collect")(
                        iter([Req(name="a"), Req(name="b")]), timeout=10).message, "a+b")
                    # a request never seen upstream is not answered
                    with self.assertRaises(grpc.RpcError) as cm:
                        hello(Req(name="new"), timeout=10)
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_record_needs_an_upstream(self):
        with mwtest.ServiceDir({"hello.proto": PROTO}) as d, \
                tempfile.TemporaryDirectory(prefix="mw-e2e-rec-") as rec:
            r = run_cli("check", "--record", rec, str(d))
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("--record needs an upstream", r.stderr)


HELLOWORLD = """
syntax = "proto3";
package helloworld;
message HelloRequest { string name = 1; }
message HelloReply { string message = 1; }
service Greeter { rpc SayHello(HelloRequest) returns (HelloReply); }
"""

SHOP = """
syntax = "proto3";
package shop;
message BuyRequest { string sku = 1; }
message BuyReply { string order = 1; }
service Shop { rpc Buy(BuyRequest) returns (BuyReply); }
"""


def doc_yaml_blocks():
    """The ```yaml blocks of docs/stubs.md, in order."""
    text = open(os.path.join(mwtest.SOURCE_DIR, "docs", "stubs.md")).read()
    return [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]


class DocExamples(mwtest.TestCase):
    """The stub files of docs/stubs.md, served as written."""

    def test_greeter_example(self):
        with mwtest.ServiceDir({"greeter.proto": HELLOWORLD,
                                "greeter.stubs.yaml": doc_yaml_blocks()[0]}) as d:
            protos = Protos(d)
            Req = protos.msg("helloworld.HelloRequest")
            with Server(d) as s:
                fn = protos.unary(s.channel(), "/helloworld.Greeter/SayHello")
                self.assertEqual(fn(Req(name="bob"), timeout=10).message, "Hi bob")
                self.assertEqual(fn(Req(name="alice"), timeout=10).message, "Hi alice (call 1)")
                self.assertEqual(fn(Req(name="al"), timeout=10).message, "Hi al (call 2)")

    def test_retry_example(self):
        with mwtest.ServiceDir({"shop.proto": SHOP, "shop.stubs.yaml": doc_yaml_blocks()[1]}) as d:
            protos = Protos(d)
            Req = protos.msg("shop.BuyRequest")
            with Server(d) as s:
                fn = protos.unary(s.channel(), "/shop.Shop/Buy")
                for _ in range(2):
                    with self.assertRaises(grpc.RpcError) as cm:
                        fn(Req(sku="tea"), timeout=10)
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
                self.assertEqual(fn(Req(sku="tea"), timeout=10).order, "A-3")


if __name__ == "__main__":
    mwtest.main()
