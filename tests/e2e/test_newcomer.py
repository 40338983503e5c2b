"""What a new user meets first: `check` and `serve` refuse a directory with
nothing to serve, and `check` names a handler written for another RPC kind
(its file, line and the signature it needs) before a call fails at run
time."""
import os
import pty
import re
import select
import subprocess
import tempfile
import time
import unittest

import grpc

import mwtest
from mwtest import Protos, Server, run_cli, service_dir

PROTO = """
syntax = "proto3";
package nc;
message M { string s = 1; }
service S {
  rpc Unary(M) returns (M);
  rpc Server(M) returns (stream M);
  rpc Client(stream M) returns (M);
  rpc Bidi(stream M) returns (stream M);
}
"""

GOOD = """
local mw = require "moonwire"
local S = mw.service "nc.S"
function S.Unary(req, ctx) return req end
function S.Server(req, stream, ctx) stream:send(req) end
function S.Client(stream, ctx) return {} end
function S.Bidi(stream, ctx) end
"""


class NewcomerTest(mwtest.TestCase):
    def check(self, files):
        d = self.service_dir(files)
        return d, run_cli("check", d.path)

    def line_of(self, d, name, num):
        with open("%s/%s" % (d.path, name)) as f:
            return f.read().splitlines()[num - 1].strip()

    def test_nothing_to_serve(self):
        for files in ({}, {"only.proto": 'syntax = "proto3";\nmessage M {}\n'},
                      {"a.lua": "local x = 1\n"}):
            d, r = self.check(files)
            self.assertEqual(r.returncode, 1, files)
            self.assertIn("nothing to serve: no .proto in %s defines a service" % d.path, r.stderr)
            s = run_cli("serve", "--listen", "127.0.0.1:0", d.path, timeout=10)
            self.assertEqual(s.returncode, 1)
            self.assertIn("nothing to serve", s.stderr)
            self.assertNotIn("listening on", s.stdout)

    def test_good_signatures_pass(self):
        _, r = self.check({"nc.proto": PROTO, "s.lua": GOOD})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("4 methods, 4 with handlers", r.stdout)

    def test_a_handler_written_for_another_kind(self):
        cases = [
            ("Server", "function S.Server(req, ctx) end",
             "nc.S.Server is a server-streaming method: its handler takes (req, stream, ctx), "
             "but parameter 2 is named 'ctx'"),
            ("Bidi", "function S.Bidi(req, ctx) end",
             "nc.S.Bidi is a bidi-streaming method: its handler takes (stream, ctx), "
             "but parameter 1 is named 'req'"),
            ("Client", "function S.Client(req, stream, ctx) return {} end",
             "nc.S.Client is a client-streaming method: its handler takes (stream, ctx), "
             "but parameter 1 is named 'req'"),
            ("Unary", "function S.Unary(req, stream, ctx) return {} end",
             "nc.S.Unary is a unary method: its handler takes (req, ctx), "
             "but parameter 2 is named 'stream'"),
        ]
        for method, line, message in cases:
            lua = GOOD.replace([l for l in GOOD.splitlines() if ("S.%s(" % method) in l][0],
                               line)
            d, r = self.check({"nc.proto": PROTO, "s.lua": lua})
            self.assertEqual(r.returncode, 1, method)
            self.assertIn("s.lua:", r.stderr)
            self.assertIn(message, r.stderr)
            # the line is the handler's own
            num = int(r.stderr.split("s.lua:")[1].split(":")[0])
            self.assertEqual(self.line_of(d, "s.lua", num), line)

    def test_other_names_are_left_alone(self):
        lua = GOOD.replace("function S.Server(req, stream, ctx)", "function S.Server(point, out)")
        lua = lua.replace("function S.Bidi(stream, ctx)", "function S.Bidi(s, ...)")
        _, r = self.check({"nc.proto": PROTO, "s.lua": lua})
        self.assertEqual(r.returncode, 0, r.stderr)


    def test_a_missing_module_names_where_it_was_looked_for(self):
        d, r = self.check({"nc.proto": PROTO, "s.lua": 'local util = require "util"\n' + GOOD})
        self.assertEqual(r.returncode, 1)
        self.assertIn("s.lua:1: module 'util' not found:", r.stderr)
        self.assertIn("no file '%s/util.lua'" % d.path, r.stderr)
        self.assertIn("no file '%s/util/init.lua'" % d.path, r.stderr)
        self.assertNotIn("stack traceback", r.stderr)

    def test_a_typo_in_a_reply_names_the_handler_and_the_field(self):
        lua = GOOD.replace("function S.Unary(req, ctx) return req end",
                           "function S.Unary(req, ctx) return {ss = req.s} end")
        lua = lua.replace("function S.Server(req, stream, ctx) stream:send(req) end",
                          "function S.Server(req, stream, ctx)\n  stream:send{s = 'a', sx = 1}\nend")
        d = self.service_dir({"nc.proto": PROTO, "s.lua": lua})
        protos = Protos(d)
        with Server(d.path) as srv:
            M = protos.msg("nc.M")
            with self.assertRaises(grpc.RpcError) as cm:
                protos.unary(srv.channel(), "/nc.S/Unary")(M(s="x"), timeout=5)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)
            self.assertIn("unknown field 'ss' in message nc.M (did you mean 's'?)",
                          cm.exception.details())
            srv.wait_log("invalid response (the handler at ")
            line = [l for l in srv.logs().splitlines() if "invalid response" in l][-1]
            num = int(line.split("s.lua:")[1].split(")")[0])
            self.assertEqual(self.line_of(d, "s.lua", num),
                             "function S.Unary(req, ctx) return {ss = req.s} end")
            with self.assertRaises(grpc.RpcError) as cm:
                list(protos.server_stream(srv.channel(), "/nc.S/Server")(M(), timeout=5))
            # a raised error: the client gets its id, the log the whole text
            self.assertIn("error id", cm.exception.details())
            srv.wait_log("unknown field 'sx' in message nc.M (did you mean 's'?)")


    def serve_at_a_terminal(self, d):
        """moonwire serve d with stdout and stderr on a pseudo-terminal:
        (process, read_until(pattern) -> match or None)."""
        master, slave = pty.openpty()
        p = subprocess.Popen([mwtest.MOONWIRE_BIN, "serve", "--listen", "127.0.0.1:0", d],
                             stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
        os.close(slave)
        self.addCleanup(os.close, master)
        self.addCleanup(p.wait)
        self.addCleanup(p.terminate)
        seen = [b""]

        def read_until(pattern, timeout=5.0):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                m = re.search(pattern, seen[0])
                if m:
                    return m
                if select.select([master], [], [], 0.05)[0]:
                    try:
                        seen[0] += os.read(master, 65536)
                    except OSError:
                        return None
            return re.search(pattern, seen[0])
        return p, read_until

    def test_calls_are_visible_to_someone_trying_things_out(self):
        d = self.service_dir({"nc.proto": PROTO, "s.lua": GOOD})
        protos = Protos(d)
        M = protos.msg("nc.M")
        # at a terminal, without a config: one access line per call
        _, read_until = self.serve_at_a_terminal(d.path)
        m = read_until(rb"listening on (\S+)")
        self.assertIsNotNone(m)
        ch = grpc.insecure_channel(m.group(1).decode())
        self.addCleanup(ch.close)
        protos.unary(ch, "/nc.S/Unary")(M(s="x"), timeout=5)
        self.assertIsNotNone(read_until(rb"info access [^\n]*method=/nc.S/Unary"))
        # piped (a supervisor, a test): no access log unless configured
        with Server(d.path) as srv:
            protos.unary(srv.channel(), "/nc.S/Unary")(M(s="x"), timeout=5)
            time.sleep(0.2)
            self.assertNotIn("info access", srv.logs())
        # what moonwire new writes turns it on in the config, for every way of running
        with tempfile.TemporaryDirectory() as tmp:
            nd = os.path.join(tmp, "fresh")
            self.assertEqual(run_cli("new", nd).returncode, 0)
            fp = Protos(nd)
            with Server(nd) as srv:
                fp.unary(srv.channel(), "/fresh.Fresh/Hello")(
                    fp.msg("fresh.HelloRequest")(name="Ada"), timeout=5)
                srv.wait_log("method=/fresh.Fresh/Hello")


if __name__ == "__main__":
    mwtest.main()
