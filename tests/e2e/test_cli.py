"""`moonwire check` and `serve` on broken inputs, shutdown, JSON logs."""
import json
import signal
import subprocess
import time

import grpc

import mwtest
from mwtest import Protos, Server, example, run_cli

HELLO_DIR = example("helloworld")

GOOD_PROTO = """
syntax = "proto3";
package s;
message M { string x = 1; double sleep = 2; }
service S { rpc Get(M) returns (M); }
"""

GOOD_LUA = """
local mw = require "moonwire"
local S = mw.service "s.S"
function S.Get(req, ctx)
  return req
end
return S
"""

BROKEN_PROTO = """
syntax = "proto3";
package b;
message M {
  string x = ;
}
"""

BAD_SYNTAX_LUA = """
local mw = require "moonwire"
local S = mw.service "s.S"
function S.Get(req) return {x = } end
return S
"""

LOAD_ERROR_LUA = """
local mw = require "moonwire"
error("boom while loading")
"""

UNKNOWN_METHOD_LUA = """
local mw = require "moonwire"
local S = mw.service "s.S"
function S.Get(req) return req end
function S.Missing(req)
  return req
end
return S
"""

UNKNOWN_SERVICE_LUA = """
local mw = require "moonwire"
local S = mw.service "s.S"
local N = mw.service "s.Nope"
return S
"""

# line 4, column 3: the unknown key
BAD_CONFIG = """\
workers: 2
log:
  level: info
  formt: json
"""

SLOW_LUA = """
local mw = require "moonwire"
local S = mw.service "s.S"
function S.Get(req, ctx)
  mw.log.info("handler started", {x = req.x})
  if req.sleep > 0 then mw.sleep(req.sleep) end
  return {x = req.x .. " done"}
end
return S
"""

LOGGING_LUA = """
local mw = require "moonwire"
local S = mw.service "s.S"
function S.Get(req, ctx)
  if req.x == "fail" then error("a \\"quoted\\"\\n\\tmulti-line failure") end
  if req.x == "long" then mw.log.info(string.rep("long ", 4000), {k = string.rep("v", 9000)}) end
  if req.x == "binary" then mw.log.warn("bad \\xff\\xfe bytes", {["k\\1"] = "\\0\\xc3"}) end
  mw.log.info("quote \\" backslash \\\\ tab \\t nl \\n unicode \\u{e9}\\u{2713}",
              {user = "ada \\"lovelace\\"", n = 42, t = true})
  mw.log.debug("not shown at info")
  return req
end
return S
"""


def line_of(text, needle):
    """The 1-based line of needle in text as ServiceDir writes it."""
    for i, line in enumerate(mwtest.dedent(text).splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError("%r not in the text" % needle)


class Check(mwtest.TestCase):
    def check(self, files, *extra):
        d = self.service_dir(files)
        r = run_cli("check", *(list(extra) + [d.path]))
        return d, r, r.stdout + r.stderr

    def serve_fails(self, d, *extra):
        try:
            r = run_cli("serve", "--listen", "127.0.0.1:0", *(list(extra) + [d.path]),
                        timeout=15)
        except subprocess.TimeoutExpired:
            self.fail("moonwire serve kept running on a broken service dir")
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("listening on", r.stdout)
        return r.stdout + r.stderr

    def test_good(self):
        d, r, out = self.check({"s.proto": GOOD_PROTO, "s.lua": GOOD_LUA})
        self.assertEqual(r.returncode, 0, out)

    def test_broken_proto(self):
        d, r, out = self.check({"broken.proto": BROKEN_PROTO})
        self.assertEqual(r.returncode, 1, out)
        where = "broken.proto:%d:" % line_of(BROKEN_PROTO, "x = ;")
        self.assertIn(where, out)
        self.assertIn(where, self.serve_fails(d))

    def test_lua_syntax_error(self):
        d, r, out = self.check({"s.proto": GOOD_PROTO, "x.lua": BAD_SYNTAX_LUA})
        self.assertEqual(r.returncode, 1, out)
        where = "x.lua:%d:" % line_of(BAD_SYNTAX_LUA, "{x = }")
        self.assertIn(where, out)
        self.assertIn(where, self.serve_fails(d))

    def test_lua_error_while_loading(self):
        d, r, out = self.check({"s.proto": GOOD_PROTO, "y.lua": LOAD_ERROR_LUA})
        self.assertEqual(r.returncode, 1, out)
        where = "y.lua:%d:" % line_of(LOAD_ERROR_LUA, "boom")
        self.assertIn(where, out)
        self.assertIn("boom while loading", out)
        self.assertNotIn("stack traceback", out)
        self.assertIn(where, self.serve_fails(d))

    def test_config_unknown_key(self):
        d = self.service_dir({"s.proto": GOOD_PROTO, "s.lua": GOOD_LUA,
                              "cfg.yaml": BAD_CONFIG})
        r = run_cli("check", "-c", d.file("cfg.yaml"), d.path)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("cfg.yaml:4:3", out)
        self.assertIn("formt", out)
        out = self.serve_fails(d, "-c", d.file("cfg.yaml"))
        self.assertIn("cfg.yaml:4:3", out)

    def test_handler_for_unknown_method(self):
        d, r, out = self.check({"s.proto": GOOD_PROTO, "h.lua": UNKNOWN_METHOD_LUA})
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("Missing", out)
        self.assertIn("h.lua:%d:" % line_of(UNKNOWN_METHOD_LUA, "S.Missing"), out)
        self.assertIn("h.lua", self.serve_fails(d))

    def test_unknown_service(self):
        d, r, out = self.check({"s.proto": GOOD_PROTO, "u.lua": UNKNOWN_SERVICE_LUA})
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("s.Nope", out)
        self.assertIn("u.lua:%d:" % line_of(UNKNOWN_SERVICE_LUA, "s.Nope"), out)
        self.serve_fails(d)

    def test_every_problem_reported(self):
        d = self.service_dir({"s.proto": GOOD_PROTO, "h.lua": UNKNOWN_METHOD_LUA,
                              "cfg.yaml": BAD_CONFIG})
        r = run_cli("check", "-c", d.file("cfg.yaml"), d.path)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("formt", out)
        self.assertIn("Missing", out)

    def test_broken_proto_lua_syntax_and_config_in_one_pass(self):
        d = self.service_dir({"broken.proto": BROKEN_PROTO, "x.lua": BAD_SYNTAX_LUA,
                              "cfg.yaml": BAD_CONFIG})
        r = run_cli("check", "-c", d.file("cfg.yaml"), d.path)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("cfg.yaml:4:3", out)
        self.assertIn("broken.proto:%d:" % line_of(BROKEN_PROTO, "x = ;"), out)
        self.assertIn("x.lua:%d:" % line_of(BAD_SYNTAX_LUA, "{x = }"), out)
        self.assertIn("3 problems found", out)

    def test_listen_address_checked(self):
        for addr, why in (("127.0.0.1:99999", "port must be a number from 0 to 65535"),
                          ("nohost", "missing port")):
            r = run_cli("serve", "--listen", addr, HELLO_DIR)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(why, r.stderr)
            self.assertNotIn("listening on", r.stdout)

    def test_port_in_use_is_an_error(self):
        with Server(HELLO_DIR) as s:
            r = run_cli("serve", "--listen", s.addr, HELLO_DIR)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            # one line of ours: the reason, what to do, none of core's dump
            self.assertEqual(r.stderr.strip().splitlines(),
                             ["cannot listen on %s: Address already in use (another server has "
                              "the port; --listen HOST:0 picks a free one)" % s.addr])

    def test_second_listener_in_use_is_an_error(self):
        # The first address binds, the second cannot: a clean error, no abort.
        with Server(HELLO_DIR) as s:
            d = mwtest.ServiceDir({"moonwire.yaml": "listen: [127.0.0.1:0, %s]\n" % s.addr})
            try:
                r = run_cli("serve", "-c", d.file("moonwire.yaml"), HELLO_DIR)
            finally:
                d.cleanup()
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("cannot listen on %s" % s.addr, r.stderr)
            self.assertNotIn("assertion failed", r.stderr)

    def test_missing_dir(self):
        r = run_cli("check", "/nonexistent/moonwire/dir")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/moonwire/dir", r.stdout + r.stderr)


class Shutdown(mwtest.TestCase):
    def setUp(self):
        self.dir = self.service_dir({"s.proto": GOOD_PROTO, "s.lua": SLOW_LUA})
        self.protos = Protos(self.dir)
        self.M = self.protos.msg("s.M")

    def test_sigterm_idle_exits_0(self):
        with Server(self.dir) as s:
            get = self.protos.unary(s.channel(), "/s.S/Get")
            self.assertEqual(get(self.M(x="a"), timeout=10).x, "a done")
            self.assertEqual(s.stop(signal.SIGTERM, timeout=15), 0, s.logs())

    def test_sigint_exits_0(self):
        with Server(self.dir) as s:
            self.assertEqual(s.stop(signal.SIGINT, timeout=15), 0, s.logs())

    def test_sigterm_lets_call_in_flight_finish(self):
        with Server(self.dir) as s:
            get = self.protos.unary(s.channel(), "/s.S/Get")
            fut = get.future(self.M(x="slow", sleep=0.5), timeout=20)
            self.assertTrue(s.wait_log("handler started", timeout=10), s.logs())
            start = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            resp = fut.result()
            self.assertEqual(resp.x, "slow done")
            self.assertEqual(s.stop(timeout=15), 0, s.logs())
            self.assertLess(time.monotonic() - start, 10)

    def test_new_calls_refused_while_draining(self):
        with Server(self.dir, config="shutdown_grace_ms: 3s\n") as s:
            ch = s.channel()
            get = self.protos.unary(ch, "/s.S/Get")
            fut = get.future(self.M(x="slow", sleep=2.0), timeout=20)
            self.assertTrue(s.wait_log("handler started", timeout=10), s.logs())
            s.proc.send_signal(signal.SIGTERM)
            self.assertTrue(s.wait_log("SIGTERM: draining"), s.logs())
            # the server stops taking calls right after that line: a call
            # that still slipped in is served, the next ones are refused
            deadline = time.monotonic() + 1.0
            while True:
                try:
                    self.assertEqual(get(self.M(x="late"), timeout=5).x, "late done")
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE, e.details())
                    break
                self.assertLess(time.monotonic(), deadline, "calls still served while draining")
                time.sleep(0.02)
            self.assertFalse(fut.done(), "the slow call should still be running")
            self.assertEqual(fut.result().x, "slow done")
            self.assertEqual(s.stop(timeout=15), 0, s.logs())


class JsonLogs(mwtest.TestCase):
    def test_json_lines(self):
        d = self.service_dir({"s.proto": GOOD_PROTO, "s.lua": LOGGING_LUA})
        protos = Protos(d)
        M = protos.msg("s.M")
        with Server(d, config="log: {format: json}\n") as s:
            get = protos.unary(s.channel(), "/s.S/Get")
            self.assertEqual(get(M(x="hi"), timeout=10).x, "hi")
            with self.assertRaises(grpc.RpcError):
                get(M(x="fail"), timeout=10)
            self.assertTrue(s.wait_log("multi-line failure"), s.logs())
            self.assertEqual(s.stop(), 0, s.logs())
            lines = s.log_lines()
        records = self.parse(lines)
        msgs = [r["msg"] for r in records]
        self.assertIn("handler error", msgs)
        hello = [r for r in records
                 if r["msg"].startswith("quote \" backslash \\ tab \t nl \n unicode \u00e9\u2713")]
        self.assertEqual(len(hello), 1, msgs)
        self.assertEqual(hello[0]["user"], "ada \"lovelace\"")
        self.assertEqual(hello[0]["n"], "42")
        self.assertEqual(hello[0]["level"], "info")
        self.assertNotIn("not shown at info", msgs)
        err = [r for r in records if r["msg"] == "handler error"][0]
        self.assertEqual(err["level"], "error")
        self.assertIn("stack traceback", err["error"])
        self.assertIn("s.lua", err["error"])

    def logged_lines(self, x):
        d = self.service_dir({"s.proto": GOOD_PROTO, "s.lua": LOGGING_LUA})
        protos = Protos(d)
        M = protos.msg("s.M")
        with Server(d, config="log: {format: json}\n") as s:
            get = protos.unary(s.channel(), "/s.S/Get")
            self.assertEqual(get(M(x=x), timeout=10).x, x)
            self.assertEqual(s.stop(), 0, s.logs())
            return s.log_lines()

    def test_json_line_longer_than_8k(self):
        # a record too long for one line may be cut, but must stay JSON
        self.parse(self.logged_lines("long"))

    def test_json_line_with_invalid_utf8(self):
        # bytes that are not UTF-8 must not make the line invalid JSON text
        self.parse(self.logged_lines("binary"))

    def parse(self, lines):
        self.assertTrue(lines)
        records = []
        for raw in lines:
            try:
                text = raw.decode("utf-8")  # JSON text is UTF-8
                rec = json.loads(text)
            except ValueError as e:
                self.fail("not a JSON line (%s): %r" % (e, raw[:300]))
            self.assertIsInstance(rec, dict)
            for key in ("ts", "level", "msg"):
                self.assertIn(key, rec, raw)
            records.append(rec)
        return records


if __name__ == "__main__":
    mwtest.main()
