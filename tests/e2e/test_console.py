"""The browser console (/console) with the real binary: the page in
headless chromium (puppeteer-core, console_check.cjs) loads, calls
helloworld's SayHello and shows "Hello", shows a server stream message by
message, an error with its status and details, and follows a reload that
adds a method; a screenshot of the first call is kept as a test artifact at
BUILD_DIR/artifacts/console.png. Over plain HTTP: the schema document and
its templates, the console on the admin listener when the HTTP listener is
off (calls under /console/rpc), and console: false."""

import http.client
import json
import os
import signal
import subprocess
import time
import unittest

import mwtest
from mwtest import Server, service_dir

DEMO_PROTO = """
syntax = "proto3";
package console;

import "google/protobuf/timestamp.proto";

enum Color { COLOR_UNSPECIFIED = 0; RED = 1; }
message Inner { int64 id = 1; Inner again = 2; }
message Req {
  string name = 1; int32 n = 2; double pause = 3; bool flag = 4; Color color = 5;
  repeated string tags = 6; map<string, int32> counts = 7; Inner inner = 8;
  google.protobuf.Timestamp at = 9; bytes raw = 10;
  oneof choice { string first = 11; string second = 12; }
}
message Resp { string text = 1; int32 i = 2; }

service Demo {
  rpc Count(Req) returns (stream Resp);
  rpc Fail(Req) returns (Resp);
  rpc Sum(stream Req) returns (Resp);
  rpc Echo(Req) returns (Resp);%s
}
"""

DEMO_LUA = """
local mw = require "moonwire"
local Demo = mw.service "console.Demo"

function Demo.Count(req, stream)
  for i = 1, req.n do
    if i > 1 then mw.sleep(req.pause) end
    stream:send{i = i, text = "part " .. i}
  end
end

function Demo.Fail(req)
  mw.fail(mw.INVALID_ARGUMENT, "bad name", {mw.details.BadRequest{name = "must not be empty"}})
end

function Demo.Echo(req, ctx)
  ctx:set_header("x-head", "h1")
  ctx:set_trailer("x-trail", "t1")
  return {text = ctx.metadata["x-from"] or "none"}
end

function Demo.Sum(stream)
  local n = 0
  for req in stream:iter() do n = n + req.n end
  return {i = n}
end
%s
return Demo
"""

ADDED_RPC = "\n  rpc Added(Req) returns (Resp);"
ADDED_LUA = """
function Demo.Added(req)
  return {text = "added " .. req.name}
end
"""


def read_example(name):
    with open(os.path.join(mwtest.example("helloworld"), name)) as f:
        return f.read()


def files(added=False):
    return {
        "helloworld.proto": read_example("helloworld.proto"),
        "greeter.lua": read_example("greeter.lua"),
        "demo.proto": DEMO_PROTO % (ADDED_RPC if added else ""),
        "demo.lua": DEMO_LUA % (ADDED_LUA if added else ""),
    }


def listening(server, name):
    """The port of the `NAME listening on HOST:PORT` line."""
    deadline = time.monotonic() + 10
    mark = name + " listening on "
    while mark not in server.stdout() and time.monotonic() < deadline:
        time.sleep(0.02)
    return int(server.stdout().split(mark)[1].split()[0].rsplit(":", 1)[1])


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def post_json(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


class ConsoleBrowserTest(unittest.TestCase):
    """The page itself, in chromium."""

    def test_console_in_chromium(self):
        d = service_dir(self, files())
        config = "http:\n  listen: 127.0.0.1:0\nreload:\n  watch: false\n"
        with Server(d.path, config=config) as s:
            port = listening(s, "http")
            artifacts = os.path.join(mwtest.BUILD_DIR, "artifacts")
            os.makedirs(artifacts, exist_ok=True)
            shot = os.path.join(artifacts, "console.png")
            if os.path.exists(shot):
                os.remove(shot)
            env = dict(os.environ, NODE_PATH=os.path.join(mwtest.SOURCE_DIR, "tests", "tools",
                                                          "node_modules"))
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "console_check.cjs")
            p = subprocess.Popen(["node", script, "http://127.0.0.1:%d" % port, shot],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
            steps = {}
            try:
                for line in p.stdout:
                    step = json.loads(line)
                    steps[step["step"]] = step
                    if step["step"] == "reload":
                        n = s.logs().count("reloaded (")
                        d.write("demo.proto", files(added=True)["demo.proto"])
                        d.write("demo.lua", files(added=True)["demo.lua"])
                        os.kill(s.pid, signal.SIGHUP)
                        deadline = time.monotonic() + 10 * mwtest.SLOW
                        while s.logs().count("reloaded (") <= n and time.monotonic() < deadline:
                            time.sleep(0.02)
                        self.assertGreater(s.logs().count("reloaded ("), n, s.logs())
                        p.stdin.write("reloaded\n")
                        p.stdin.flush()
                p.wait(timeout=60)
                err = p.stderr.read()
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                for f in (p.stdin, p.stdout, p.stderr):
                    f.close()
            self.assertNotIn("failed", steps, steps.get("failed", {}).get("error", "") + err)
            self.assertEqual(p.returncode, 0, err)

            # Loaded: the live schema's methods, the template in the editor,
            # the call's answer, headers and timing shown.
            load = steps["load"]
            self.assertIn("/helloworld.Greeter/SayHello", load["methods"])
            self.assertIn("/console.Demo/Count", load["methods"])
            self.assertEqual(load["generation"], "generation 1")
            self.assertEqual(json.loads(load["template"]), {"name": "name"})
            self.assertEqual(load["status"], "ok")
            self.assertEqual(load["messages"], [{"message": "Hello console"}])
            self.assertIn("content-type", [h[0] for h in load["headers"]])
            self.assertRegex(load["timing"], r"^[0-9.]+ ms")
            self.assertIsNone(load["error"])
            self.assertTrue(os.path.getsize(shot) > 1000, "the screenshot " + shot)
            with open(shot, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

            # The server stream, message by message: the first was on the
            # page while the call was still going.
            st = steps["stream"]
            self.assertEqual(st["status"], "ok")
            self.assertEqual([m["text"] for m in st["messages"]], ["part 1", "part 2", "part 3"])
            arr = st["arrivals"]
            self.assertEqual([a["n"] for a in arr], [1, 2, 3], arr)
            self.assertTrue(arr[0]["status"].startswith("receiving"), arr)
            self.assertGreater(arr[2]["at"] - arr[0]["at"], 400, arr)

            # Metadata sent; response headers and trailers apart.
            ec = steps["echo"]
            self.assertEqual(ec["messages"], [{"text": "browser"}])
            self.assertIn(["x-head", "h1"], ec["headers"])
            self.assertEqual(ec["trailers"], [["x-trail", "t1"]])

            # A client stream: the editor holds an array of messages.
            self.assertEqual(json.loads(steps["sum"]["template"])[0]["n"], 1)
            self.assertEqual(steps["sum"]["messages"], [{"i": 6}], steps["sum"])

            # The deadline field: the stream is cut after its first message.
            dl = steps["deadline"]
            self.assertEqual(dl["status"], "deadline_exceeded", dl)
            self.assertEqual([m["text"] for m in dl["messages"]], ["part 1"])

            # The error: its status, message and details.
            e = steps["error"]
            self.assertEqual(e["status"], "invalid_argument (HTTP 400)")
            self.assertEqual(e["error"]["message"], "bad name")
            self.assertEqual(len(e["error"]["details"]), 1, e)
            kind, _, value = e["error"]["details"][0].partition(" ")
            self.assertEqual(kind, "google.rpc.BadRequest", e)
            self.assertIn("must not be empty",
                          json.dumps(json.loads(value)), e)
            self.assertEqual(e["messages"], [])

            # The reload: the new method appeared without reloading the page,
            # and answers.
            r = steps["reloaded"]
            self.assertEqual(r["generation"], "generation 2")
            self.assertEqual(r["status"], "ok")
            self.assertEqual(r["messages"], [{"text": "added new"}])
            self.assertLess(r["seenMs"], 5000)
            self.assertEqual(steps["done"]["problems"], [])


class ConsoleHttpTest(unittest.TestCase):
    """The console's documents and switches, over plain HTTP."""

    def test_pages_and_schema(self):
        d = service_dir(self, files())
        with Server(d.path, config="http:\n  listen: 127.0.0.1:0\n") as s:
            port = listening(s, "http")
            status, h, body = get(port, "/console")
            self.assertEqual(status, 200)
            self.assertTrue(h["content-type"].startswith("text/html"))
            self.assertIn("default-src 'none'", h["content-security-policy"])
            self.assertIn(b"/console/console.js", body)
            for path, ct in (("/console/console.js", "text/javascript"),
                             ("/console/console.css", "text/css")):
                status, h, body = get(port, path)
                self.assertEqual(status, 200, path)
                self.assertTrue(h["content-type"].startswith(ct), h)
            self.assertEqual(get(port, "/console/nothing")[0], 404)
            status, _, body = get(port, "/console/schema")
            self.assertEqual(status, 200)
            doc = json.loads(body)
            self.assertEqual(doc["generation"], 1)
            self.assertEqual(doc["call_base"], "")
            by = {m["path"]: m for svc in doc["services"] for m in svc["methods"]}
            self.assertEqual(by["/console.Demo/Count"]["kind"], "server-streaming")
            self.assertEqual(by["/console.Demo/Sum"]["kind"], "client-streaming")
            self.assertEqual(by["/console.Demo/Count"]["input"], "console.Req")
            # The template: every field from its type, JSON names, the
            # first of a oneof, a recursive type once, well-known types in
            # their JSON form.
            self.assertEqual(by["/console.Demo/Count"]["template"], {
                "name": "name", "n": 1, "pause": 1.5, "flag": True, "color": "COLOR_UNSPECIFIED",
                "tags": ["tags"], "counts": {"key": 1}, "inner": {"id": 1},
                "at": "1970-01-01T00:00:00Z", "raw": "", "first": "first"})
            # The template is a request the method takes.
            status, out = post_json(port, "/console.Demo/Fail", by["/console.Demo/Count"]["template"])
            self.assertEqual(out["code"], "invalid_argument")
            self.assertEqual(json.loads(get(port, "/console/generation")[2]), {"generation": 1})
            # An error detail decoded with the live schema: a google.rpc
            # type, or one of the services' own (here console.Resp{text:
            # "hi"}, bytes 0a 02 68 69, unpadded base64 as Connect sends it).
            status, _, body = get(port, "/console/detail?type=console.Resp&value=CgJoaQ")
            self.assertEqual((status, json.loads(body)), (200, {"text": "hi"}))
            status, _, body = get(port, "/console/detail?type=google.rpc.BadRequest&value=")
            self.assertEqual((status, json.loads(body)), (200, {}))
            self.assertEqual(get(port, "/console/detail?type=no.Such&value=")[0], 404)
            self.assertEqual(get(port, "/console/detail?type=console.Resp&value=%%%")[0], 400)
            self.assertEqual(get(port, "/console/detail?type=console.Resp&value=!!!!")[0], 400)
            self.assertEqual(get(port, "/console/detail?value=CgJoaQ")[0], 400)
            # Only GET.
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("POST", "/console/schema", "{}", {"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            c.close()
            self.assertEqual(r.status, 405)

    def test_on_the_admin_listener_without_http(self):
        d = service_dir(self, files())
        with Server(d.path, config="admin:\n  listen: 127.0.0.1:0\n") as s:
            port = listening(s, "admin")
            self.assertEqual(get(port, "/console")[0], 200)
            doc = json.loads(get(port, "/console/schema")[2])
            self.assertEqual(doc["call_base"], "/console/rpc")
            status, out = post_json(port, "/console/rpc/helloworld.Greeter/SayHello",
                                    {"name": "admin"})
            self.assertEqual((status, out), (200, {"message": "Hello admin"}))
            status, out = post_json(port, "/console/rpc/console.Demo/Nope", {})
            self.assertEqual(out["code"], "unimplemented")
            # The admin's own routes are still there.
            self.assertEqual(get(port, "/healthz")[0], 200)
            self.assertEqual(get(port, "/metrics")[0], 200)

    def test_off(self):
        d = service_dir(self, files())
        config = "console: false\nhttp:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n"
        with Server(d.path, config=config) as s:
            hport, aport = listening(s, "http"), listening(s, "admin")
            self.assertNotEqual(get(hport, "/console")[0], 200)
            self.assertEqual(get(hport, "/console/schema")[0], 415)
            self.assertEqual(get(aport, "/console")[0], 404)
            self.assertEqual(get(aport, "/console/schema")[0], 404)
            self.assertEqual(post_json(hport, "/helloworld.Greeter/SayHello", {"name": "x"})[1],
                             {"message": "Hello x"})
        # Off with only the admin listener: no calls under /console/rpc.
        with Server(d.path, config="console: false\nadmin:\n  listen: 127.0.0.1:0\n") as s:
            aport = listening(s, "admin")
            self.assertEqual(get(aport, "/console")[0], 404)
            c = http.client.HTTPConnection("127.0.0.1", aport, timeout=10)
            c.request("POST", "/console/rpc/helloworld.Greeter/SayHello", "{}",
                      {"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            c.close()
            self.assertEqual(r.status, 404)


if __name__ == "__main__":
    unittest.main()
