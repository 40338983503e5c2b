"""Overload shedding: past limits.max_inflight_calls (server-wide) or a
method's methods.PATH.max_concurrent, a new call ends RESOURCE_EXHAUSTED as
it arrives, before any decode or Lua work; memory stays flat; the limits
free up as calls end."""

import concurrent.futures
import subprocess
import time

import grpc

import mwtest
from mwtest import Server

PROTO = """
syntax = "proto3";
package s;
message M { string x = 1; double secs = 2; }
service S {
  rpc Slow(M) returns (M);
  rpc Echo(M) returns (M);
  rpc Hold(M) returns (M);
}
"""

LUA = """
local mw = require "moonwire"
local S = mw.service "s.S"
function S.Slow(req) mw.sleep(req.secs) return {x = "slow"} end
function S.Echo(req) return {x = req.x} end
-- holds about req.x MiB for req.secs, then lets it go
function S.Hold(req)
  local t = {}
  for i = 1, tonumber(req.x) do t[i] = ("x"):rep(1048575) .. (i % 10) end
  mw.sleep(req.secs)
  t = nil
  collectgarbage()
  return {x = "held"}
end
"""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Shedding(mwtest.TestCase):
    def setUp(self):
        self.dir = self.service_dir({"s.proto": PROTO, "s.lua": LUA})
        self.p = mwtest.Protos(self.dir)
        self.M = self.p.msg("s.M")

    def burst(self, rpc, n, secs):
        with concurrent.futures.ThreadPoolExecutor(n) as ex:
            futs = [ex.submit(self.outcome, rpc, secs) for _ in range(n)]
            return [f.result() for f in futs]

    def outcome(self, rpc, secs):
        try:
            return rpc(self.M(secs=secs), timeout=20).x
        except grpc.RpcError as e:
            return (e.code(), e.details())

    def test_server_wide_limit(self):
        with Server(self.dir, config="limits: {max_inflight_calls: 4}\n") as s:
            slow = self.p.unary(s.channel(), "/s.S/Slow")
            got = self.burst(slow, 10, 0.6)
            self.assertEqual(got.count("slow"), 4, got)
            shed = [g for g in got if g != "slow"]
            self.assertEqual(len(shed), 6)
            for code, details in shed:
                self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
                self.assertEqual(details, "the server is overloaded: 4 calls in flight "
                                          "(limits.max_inflight_calls)")
            # the slots free up as calls end
            self.assertEqual(self.burst(slow, 4, 0.05).count("slow"), 4)

    def test_rejects_keep_memory_flat(self):
        with Server(self.dir, config="limits: {max_inflight_calls: 2}\n") as s:
            ch = s.channel()
            slow = self.p.unary(ch, "/s.S/Slow")
            echo = self.p.unary(ch, "/s.S/Echo")
            holders = [slow.future(self.M(secs=30), timeout=60) for _ in range(2)]
            time.sleep(0.3)

            def shed_many(n):
                for _ in range(n):
                    with self.assertRaises(grpc.RpcError) as e:
                        echo(self.M(x="x"), timeout=10)
                    self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            shed_many(300)
            before = rss_kib(s.pid)
            shed_many(1500)
            grew = rss_kib(s.pid) - before
            # (AddressSanitizer keeps freed memory in quarantine: RSS says
            # nothing about leaks there, its leak check does)
            if not mwtest.SANITIZED:
                self.assertLess(grew, 2048, "RSS grew by %d KiB over 1,500 shed calls" % grew)
            for h in holders:
                h.cancel()
            time.sleep(0.3)
            self.assertEqual(echo(self.M(x="back"), timeout=10).x, "back")

    def test_per_method_limit(self):
        cfg = 'methods:\n  "/s.S/Slow": {max_concurrent: 2}\n'
        with Server(self.dir, config=cfg) as s:
            ch = s.channel()
            slow = self.p.unary(ch, "/s.S/Slow")
            echo = self.p.unary(ch, "/s.S/Echo")
            holders = [slow.future(self.M(secs=1.0), timeout=20) for _ in range(2)]
            time.sleep(0.3)
            with self.assertRaises(grpc.RpcError) as e:
                slow(self.M(secs=0), timeout=10)
            self.assertStatus(e, grpc.StatusCode.RESOURCE_EXHAUSTED,
                              "/s.S/Slow is overloaded: 2 calls in flight "
                              "(methods./s.S/Slow.max_concurrent)")
            # other methods are not limited by it
            self.assertEqual(echo(self.M(x="free"), timeout=10).x, "free")
            self.assertEqual([h.result().x for h in holders], ["slow", "slow"])
            self.assertEqual(slow(self.M(secs=0), timeout=10).x, "slow")

    def test_bad_method_settings(self):
        for cfg, expected in [
            ('methods:\n  "/s.S/Nope": {max_concurrent: 1}\n',
             "methods: /s.S/Nope names no method of the loaded protos"),
            ('methods:\n  "s.S/Slow": {max_concurrent: 1}\n',
             "methods: 's.S/Slow' is not a method path (expected \"/package.Service/Method\")"),
            ('methods:\n  "/s.S/Slow": {max_inflight: 1}\n',
             "unknown key 'max_inflight' in '/s.S/Slow'"),
            ('methods:\n  "/s.S/Slow": {max_concurrent: -1}\n',
             "methods./s.S/Slow.max_concurrent"),
        ]:
            self.dir.write("moonwire.yaml", cfg)
            r = mwtest.run_cli("check", str(self.dir))
            self.assertEqual(r.returncode, 1, cfg)
            self.assertIn(expected, r.stderr + r.stdout, cfg)

    def test_memory_guard(self):
        # The limit is set from what an idle server uses, plus 60 MiB: a
        # call holding 120 MiB pushes it over, new calls are shed while it
        # holds, and taken again once it let go.
        with Server(self.dir) as s:
            base = rss_kib(s.pid) // 1024
        cfg = "limits: {max_rss_mb: %d}\n" % (base + 60)
        with Server(self.dir, config=cfg) as s:
            ch = s.channel()
            echo = self.p.unary(ch, "/s.S/Echo")
            self.assertEqual(echo(self.M(x="before"), timeout=10).x, "before")
            hold = self.p.unary(ch, "/s.S/Hold").future(self.M(x="120", secs=1.5), timeout=30)
            self.assertTrue(s.wait_log("memory guard:", timeout=5), s.logs())
            with self.assertRaises(grpc.RpcError) as e:
                echo(self.M(x="during"), timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("the server is over its memory limit", e.exception.details())
            self.assertEqual(hold.result().x, "held")  # the call in flight finished
            if mwtest.SANITIZED:
                return  # freed memory stays in AddressSanitizer's quarantine
            self.assertTrue(s.wait_log("taking calls again", timeout=5), s.logs())
            self.assertEqual(echo(self.M(x="after"), timeout=10).x, "after")


class OpenFiles(mwtest.TestCase):
    def test_soft_limit_raised_to_hard(self):
        # Started with a soft limit of 256 under a hard one of 4096.
        p = subprocess.Popen(["prlimit", "--nofile=256:4096", mwtest.MOONWIRE_BIN, "serve",
                              "--listen", "127.0.0.1:0", mwtest.example("helloworld")],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            self.assertIn("listening on", p.stdout.readline())
            with open("/proc/%d/limits" % p.pid) as f:
                line = [l for l in f if l.startswith("Max open files")][0]
            self.assertEqual(line.split()[3:5], ["4096", "4096"], line)
        finally:
            p.terminate()
            self.assertEqual(p.wait(15), 0)
            p.stdout.close()

    def test_dead_listener_exits_for_a_restart(self):
        # gRPC core 1.51 stops accepting for good once accept fails for want
        # of descriptors (CVE-2023-4785). Soft = hard = 64: the limit cannot
        # be raised, so a storm of connections hits it. The server notices,
        # drains (the open connection still gets its answer) and exits 75.
        import socket
        d = mwtest.ServiceDir({"s.proto": PROTO, "s.lua": LUA,
                               "moonwire.yaml": "shutdown: {grace: 2s}\n"})
        p = subprocess.Popen(["prlimit", "--nofile=64:64", mwtest.MOONWIRE_BIN, "serve",
                              "--listen", "127.0.0.1:0", d.path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        socks = []
        try:
            line = p.stdout.readline()
            self.assertIn("listening on", line)
            port = int(line.rsplit(":", 1)[1])
            for _ in range(150):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                except OSError:
                    break
            rc = p.wait(20 * mwtest.SLOW)
            err = p.stderr.read()
            self.assertEqual(rc, 75, err)
            self.assertIn("a listener stopped accepting connections for good", err)
            self.assertIn("listener failure: draining", err)
        finally:
            for so in socks:
                so.close()
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()
            d.cleanup()


if __name__ == "__main__":
    mwtest.main()
