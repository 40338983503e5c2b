"""Real browser clients against the HTTP listener, across origins: Debian's
chromium (headless, driven by puppeteer-core) loads a page from one loopback
origin (a static server this test runs) that calls the listener, another
origin, with Google's grpc-web (text and binary modes, MethodDescriptors with
@bufbuild/protobuf's serializers, no protoc plugin) and Connect-ES's
connect-web (Connect binary and JSON, gRPC-Web). The routeguide example
answers the unary and server-streaming calls; a small probe service the
errors and the custom metadata http.cors.expose lets the page read. A page
from an origin not in http.cors.origins must see every call fail."""

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import mwtest
from mwtest import Protos, Server

PROBE_PROTO = """
syntax = "proto3";
package probe;

message Req { string name = 1; int32 n = 2; }
message Resp { string text = 1; int32 i = 2; }

service Probe {
  rpc Echo(Req) returns (Resp) { option idempotency_level = NO_SIDE_EFFECTS; }
  rpc Fail(Req) returns (Resp);
  rpc Count(Req) returns (stream Resp);
  rpc Slow(Req) returns (Resp);
}
"""

PROBE_LUA = """
local mw = require "moonwire"
local Probe = mw.service "probe.Probe"

function Probe.Echo(req, ctx)
  ctx:set_header("x-echo", "h")
  ctx:set_header("x-hidden", "not exposed")
  ctx:set_trailer("x-trail", "t")
  return {text = "hi " .. req.name .. " from " .. tostring(ctx.metadata["x-from"])}
end

function Probe.Fail(req)
  mw.fail(mw.INVALID_ARGUMENT, "bad name", {mw.details.BadRequest{name = "must not be empty"}})
end

function Probe.Slow(req)
  mw.sleep(3)
  return {text = "late"}
end

function Probe.Count(req, stream)
  for i = 1, req.n do stream:send{i = i} end
  if req.name == "fail" then mw.fail(mw.NOT_FOUND, "no more") end
end
"""

# The rectangle the page lists: the features of the example's data inside it.
LO = (400000000, -750000000)
HI = (420000000, -730000000)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def static_server(directory):
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=directory))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class BrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"probe.proto": PROBE_PROTO, "probe.lua": PROBE_LUA})
        shutil.copytree(mwtest.example("routeguide"), cls.dir.path, dirs_exist_ok=True)
        cls.protos = Protos(cls.dir.path)
        # the page: bundled into the build tree, served by two static servers
        # (two origins: one listed in http.cors.origins, one not)
        cls.www = tempfile.mkdtemp(prefix="browser-page-", dir=mwtest.BUILD_DIR)
        here = os.path.dirname(os.path.abspath(__file__))
        nm = os.path.join(mwtest.SOURCE_DIR, "tests", "tools", "node_modules")
        cls.env = dict(os.environ, NODE_PATH=nm)
        r = subprocess.run([mwtest.tool("esbuild"), os.path.join(here, "browser", "page.mjs"),
                            "--bundle", "--format=iife", "--platform=browser",
                            "--outfile=" + os.path.join(cls.www, "page.js"),
                            "--log-level=warning"],
                           capture_output=True, text=True, timeout=60, env=cls.env)
        if r.returncode != 0:
            raise AssertionError("esbuild: " + r.stderr)
        with open(os.path.join(cls.www, "index.html"), "w") as f:
            f.write("<!doctype html><title>moonwire</title><script src=\"page.js\"></script>\n")
        cls.allowed = static_server(cls.www)
        cls.denied = static_server(cls.www)
        cls.origin = "http://127.0.0.1:%d" % cls.allowed.server_address[1]
        cls.other = "http://127.0.0.1:%d" % cls.denied.server_address[1]
        cls.server = Server(cls.dir.path, config="""
            interceptors: [access_log]
            http:
              listen: 127.0.0.1:0
              cors:
                origins: ["%s"]
                headers: [x-from]
                expose: [x-echo, x-trail]
            """ % cls.origin)
        cls.server.start()
        deadline = time.monotonic() + 10
        while "http listening on " not in cls.server.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        addr = cls.server.stdout().split("http listening on ")[1].split()[0]
        cls.base = "http://" + addr
        with open(os.path.join(cls.www, "config.json"), "w") as f:
            json.dump({"base": cls.base, "descriptor": base64.b64encode(
                cls.protos.fds.SerializeToString()).decode()}, f)
        # one browser for every case: both pages, in turn
        urls = [cls.origin + "/index.html", cls.other + "/index.html#denied"]
        r = subprocess.run(["node", os.path.join(here, "browser", "run.cjs")] + urls,
                           capture_output=True, text=True, timeout=120, env=cls.env)
        if r.returncode != 0:
            raise AssertionError("the browser run failed:\n" + r.stderr + r.stdout)
        out = json.loads(r.stdout)
        cls.page, cls.page_console = out[urls[0]]["results"], out[urls[0]]["console"]
        cls.page_requests = out[urls[0]]["requests"]
        cls.deny, cls.deny_console = out[urls[1]]["results"], out[urls[1]]["console"]

    @classmethod
    def tearDownClass(cls):
        for s in (getattr(cls, "allowed", None), getattr(cls, "denied", None)):
            if s:
                s.shutdown()
                s.server_close()
        shutil.rmtree(cls.www, ignore_errors=True)
        cls.dir.cleanup()
        if getattr(cls, "server", None):
            rc = cls.server.stop()
            found = [m for m in mwtest.SANITIZER_MARKS if m in cls.server.logs()]
            if rc != 0 or found:
                raise mwtest.ServerError("moonwire did not stop cleanly (exit %s) %s\n%s"
                                         % (rc, found, cls.server.logs()))

    def expected_features(self):
        """What ListFeatures answers for the page's rectangle (over gRPC)."""
        with self.server.channel() as ch:
            call = self.protos.server_stream(ch, "/routeguide.RouteGuide/ListFeatures")
            Rect = self.protos.msg("routeguide.Rectangle")
            rect = Rect()
            rect.lo.latitude, rect.lo.longitude = LO
            rect.hi.latitude, rect.hi.longitude = HI
            return [f.name for f in call(rect, timeout=10)]

    def setUp(self):
        self.assertNotIn("fatal", self.page, self.page.get("fatal"))
        self.assertNotIn("fatal", self.deny, self.deny.get("fatal"))

    def test_page_origin_is_not_the_servers(self):
        self.assertEqual(self.page["origin"], self.origin)
        self.assertNotEqual(self.origin, self.base)
        # the calls really were cross-origin: the access log has them all,
        # five per client and mode
        logs = self.server.logs()
        self.assertGreaterEqual(logs.count("method=/routeguide.RouteGuide/GetFeature"), 5)
        # with preflights (each URL's answer cached for Access-Control-Max-Age)
        pre = [r for r in self.page_requests if r.startswith("OPTIONS " + self.base)]
        self.assertTrue(any("/routeguide.RouteGuide/GetFeature" in r for r in pre), pre)

    def test_google_grpc_web(self):
        names = self.expected_features()
        self.assertGreater(len(names), 1)
        for fmt in ("text", "binary"):
            r = self.page["google-" + fmt]
            with self.subTest(fmt=fmt):
                self.assertNotIn("fatal", r, self.page_console)
                self.assertIsNone(r["unary"]["error"])
                self.assertEqual(r["unary"]["name"],
                                 "Old Mill Bridge")
                self.assertIsNone(r["stream"]["error"])
                self.assertEqual(r["stream"]["count"], len(names))
                self.assertEqual(r["stream"]["first"], names[0])
                self.assertEqual(r["stream"]["status"], 0)
                # request metadata in, exposed headers and trailers out
                e = r["echo"]
                self.assertIsNone(e["error"])
                self.assertEqual(e["text"], "hi gw-%s from browser" % fmt)
                self.assertEqual(e["headers"].get("x-echo"), "h")
                self.assertNotIn("x-hidden", e["headers"])
                self.assertEqual(e["status"]["code"], 0)
                self.assertEqual(e["status"]["metadata"].get("x-trail"), "t")
                # a trailers-only error: code, message, details header
                err = r["fail"]["error"]
                self.assertEqual(err["code"], 3)
                self.assertEqual(err["message"], "bad name")
                self.assertIn("grpc-status-details-bin", err["metadata"])
                # an error after messages: from the trailer frame
                self.assertEqual(r["streamFail"]["count"], 2)
                self.assertEqual(r["streamFail"]["error"]["code"], 5)
                self.assertEqual(r["streamFail"]["error"]["message"], "no more")
                # the page's deadline (grpc-timeout) ends the call
                self.assertEqual(r["deadline"]["code"], 4, r["deadline"])

    def test_connect_web(self):
        names = self.expected_features()
        for kind in ("connect", "connectjson", "grpcweb"):
            r = self.page["connect-web-" + kind]
            with self.subTest(kind=kind):
                self.assertNotIn("fatal", r, self.page_console)
                self.assertEqual(r["unary"]["name"],
                                 "Old Mill Bridge")
                self.assertEqual(r["stream"], {"count": len(names), "first": names[0]})
                e = r["echo"]
                self.assertEqual(e["text"], "hi cw-%s from browser" % kind)
                self.assertEqual(e["headers"].get("x-echo"), "h")
                self.assertNotIn("x-hidden", e["headers"])
                self.assertEqual(e["trailers"].get("x-trail"), "t")
                self.assertEqual(r["fail"]["code"], "InvalidArgument")
                self.assertEqual(r["fail"]["message"], "bad name")
                self.assertEqual(r["fail"]["details"], ["google.rpc.BadRequest"])
                self.assertEqual(r["streamFail"], {"code": "NotFound", "message": "no more"})
                # timeoutMs (connect-timeout-ms, grpc-timeout)
                self.assertEqual(r["deadline"], "DeadlineExceeded")
        # Connect GET (a NO_SIDE_EFFECTS method, no custom header: no preflight)
        g = self.page["connect-web-get"]
        self.assertNotIn("fatal", g, self.page_console)
        self.assertEqual(g["text"], "hi get from nil")
        self.assertEqual(g["headers"].get("x-echo"), "h")
        gets = [r for r in self.page_requests if r.startswith("GET " + self.base)]
        self.assertEqual(len(gets), 1, self.page_requests)
        self.assertIn("/probe.Probe/Echo?", gets[0])

    def test_deadlines_reach_the_server(self):
        """The pages' deadlines ended the handler's call on the server (3 s
        of sleep), not only the client's wait."""
        deadline = time.monotonic() + 5 * mwtest.SLOW
        lines = []
        while time.monotonic() < deadline:
            lines = [l for l in self.server.logs().splitlines()
                     if "method=/probe.Probe/Slow" in l]
            if len(lines) == 5:
                break
            time.sleep(0.05)
        self.assertEqual(len(lines), 5, self.server.logs())
        for line in lines:
            ms = float(line.split("duration_ms=")[1].split()[0])
            self.assertLess(ms, 2000, line)
            # the client's own timer may give up a moment before the server's
            self.assertTrue("status=DEADLINE_EXCEEDED" in line or "status=CANCELLED" in line,
                            line)
        self.assertGreaterEqual(sum("status=DEADLINE_EXCEEDED" in l for l in lines), 1)

    def test_disallowed_origin(self):
        d = self.deny["denied"]
        self.assertEqual(d["grpcweb"]["messages"], 0)
        self.assertIsNotNone(d["grpcweb"]["error"])
        for kind in ("connect", "grpcwebconnect"):
            self.assertIsInstance(d[kind], dict, d)
        # chromium says why: the preflight was refused
        text = "\n".join(self.deny_console)
        self.assertIn("blocked by CORS policy: Response to preflight request doesn't pass "
                      "access control check", text)
        self.assertIn(self.other, text)


if __name__ == "__main__":
    unittest.main()
