"""REST routes (google.api.http) on the HTTP listener with the real binary:
tests/data/transcode/library.proto's rules served by library.lua, called
with plain HTTP and JSON (http.client and curl): path, query and body
mapping, response_body, the error statuses of code.proto's table with
google.rpc.Status bodies and their details, metadata both ways, ctx.protocol,
a rule from the config, and what stays Connect's."""
import base64
import http.client
import json
import os
import shutil
import subprocess
import time
import unittest

import mwtest
from mwtest import Server

DATA = os.path.join(mwtest.SOURCE_DIR, "tests", "data", "transcode")

EXTRA = """
local mw = require "moonwire"
local Extra = mw.service "library.v1.Extra"
-- "3" sends 1..3; "fail2" sends 1..2 then fails; "none" fails at once
function Extra.Count(req, stream, ctx)
  if req.id == "none" then mw.fail(mw.NOT_FOUND, "nothing to count") end
  local n, fail = tonumber(req.id:match("%d+")), req.id:find("fail")
  for i = 1, n do
    stream:send{id = tostring(i), text = ctx.protocol}
    mw.sleep(req.id:find("slow") and 0.8 or 0.01)
  end
  if fail then mw.fail(mw.ABORTED, "stopped at " .. n) end
end

function Extra.Who(req, ctx)
  if req.id == "deny" then
    mw.fail(mw.PERMISSION_DENIED, "not you", {mw.details.ErrorInfo {reason = "DENIED",
                                                                    domain = "library"}})
  end
  ctx:set_header("x-served-by", "moonwire")
  return {id = ctx.protocol .. ":" .. (ctx.metadata["x-team"] or "") .. ":" ..
               (ctx.metadata["authorization"] or "")}
end
"""

EXTRA_PROTO = """
syntax = "proto3";
package library.v1;
import "library.proto";
service Extra {
  rpc Who(EchoRequest) returns (EchoRequest);
  rpc Count(EchoRequest) returns (stream EchoRequest);
}
"""

CONFIG = """
workers: 1
http:
  listen: 127.0.0.1:0
  rules:
    - selector: library.v1.Extra.Who
      get: /v1/who/{id}
    - selector: library.v1.Extra.Count
      get: /v1/count/{id}
"""


class RestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"extra.proto": EXTRA_PROTO, "extra.lua": EXTRA})
        for f in ("library.proto", "library.lua"):
            shutil.copy(os.path.join(DATA, f), cls.dir.file(f))
        cls.server = Server(cls.dir.path, config=CONFIG)
        cls.server.start()
        deadline = time.monotonic() + 10
        while "http listening on " not in cls.server.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        cls.addr = cls.server.stdout().split("http listening on ")[1].split()[0]

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.dir.cleanup()

    def call(self, method, path, body=None, headers=None):
        host, port = self.addr.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        h = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("content-type", "application/json")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), raw

    def json_call(self, *a, **kw):
        st, h, raw = self.call(*a, **kw)
        return st, h, json.loads(raw) if raw else None

    def test_path_query_and_body(self):
        st, h, shelf = self.json_call("GET", "/v1/shelves/1")
        self.assertEqual((st, shelf), (200, {"name": "shelves/1", "theme": "fiction"}))
        self.assertTrue(h["content-type"].startswith("application/json"))
        st, _, book = self.json_call("POST", "/v1/shelves/1/books",
                                     {"title": "Odes", "genre": "POETRY", "pages": "120"})
        self.assertEqual(st, 200, book)
        self.assertEqual(book["title"], "Odes")
        self.assertEqual(book["pages"], "120")  # int64 as a string
        name = book["name"]
        st, _, upd = self.json_call("PATCH", "/v1/" + name, {"title": "More odes"})
        self.assertEqual((st, upd["title"], upd["name"]), (200, "More odes", name))
        st, _, lst = self.json_call("GET", "/v1/shelves/1/books?page_size=5")
        self.assertEqual(st, 200)
        self.assertIn(name, [b["name"] for b in lst["books"]])
        st, _, novel = self.json_call("POST", "/v1/shelves/1/books",
                                      {"title": "Saga", "genre": "FICTION"})
        # an additional binding, an enum by name in the query
        st, _, lst = self.json_call("GET", "/v1/books?genre=FICTION")
        self.assertEqual(st, 200)
        self.assertEqual([b["name"] for b in lst["books"]], [novel["name"]])
        st, _, echo = self.json_call("PUT", "/v1/echo/a%20b/c", {"text": "hi"})
        self.assertEqual(st, 200, echo)
        self.assertEqual(echo["id"], "a b")
        self.assertEqual(echo["sub"]["id"], "c")
        st, _, gone = self.json_call("DELETE", "/v1/" + name)
        self.assertEqual((st, gone), (200, {}))

    def test_response_body(self):
        # the response's bytes field alone, as JSON has bytes: base64
        st, _, content = self.json_call("GET", "/files/a/b/c.txt")
        self.assertEqual(st, 200)
        self.assertEqual(base64.b64decode(content), b"contents of a/b/c.txt")

    def test_errors_are_google_rpc_status_with_code_protos_http_status(self):
        st, _, e = self.json_call("GET", "/v1/shelves/9")
        self.assertEqual(st, 404)
        self.assertEqual(e, {"code": 5, "message": "no shelf shelves/9", "details": []})
        st, _, e = self.json_call("GET", "/v1/shelves/1/books?page_size=many")
        self.assertEqual(st, 400)
        self.assertEqual(e["code"], 3)
        self.assertIn("page_size", e["message"])
        st, _, e = self.json_call("GET", "/nowhere")
        self.assertEqual((st, e["code"]), (404, 5))
        st, h, e = self.json_call("DELETE", "/v1/shelves/1")
        self.assertEqual((st, e["code"]), (405, 12))
        self.assertIn("GET", h.get("allow", ""))
        st, _, e = self.json_call("GET", "/v1/who/deny")
        self.assertEqual(st, 403)
        self.assertEqual(e["code"], 7)
        self.assertEqual(e["details"], [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                         "reason": "DENIED", "domain": "library"}])
        st, _, e = self.json_call("POST", "/v1/shelves/1/books", b"{not json")
        self.assertEqual(st, 400)
        self.assertEqual(e["code"], 3)

    def test_metadata_protocol_and_a_config_rule(self):
        st, h, who = self.json_call("GET", "/v1/who/x", headers={
            "Grpc-Metadata-X-Team": "blue", "Authorization": "Bearer t"})
        self.assertEqual(st, 200, who)
        self.assertEqual(who["id"], "rest:blue:Bearer t")
        self.assertEqual(h.get("grpc-metadata-x-served-by"), "moonwire")

    def stream(self, path, accept=None):
        host, port = self.addr.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("GET", path, headers={"accept": accept} if accept else {})
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, r.getheader("content-type"), body

    def test_server_streams_as_ndjson(self):
        st, ct, body = self.stream("/v1/count/3")
        self.assertEqual((st, ct), (200, "application/x-ndjson"))
        self.assertEqual([json.loads(l) for l in body.splitlines()],
                         [{"id": str(i), "text": "rest"} for i in (1, 2, 3)])
        st, _, body = self.stream("/v1/count/fail2")
        lines = [json.loads(l) for l in body.splitlines()]
        self.assertEqual(st, 200)
        self.assertEqual(lines[:2], [{"id": "1", "text": "rest"}, {"id": "2", "text": "rest"}])
        self.assertEqual(lines[2], {"error": {"code": 10, "message": "stopped at 2",
                                              "details": []}})
        # before the first message, the error is the answer's own status
        st, ct, body = self.stream("/v1/count/none")
        self.assertEqual((st, json.loads(body)["code"]), (404, 5))

    def test_each_message_is_sent_as_it_comes(self):
        host, port = self.addr.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        t0 = time.monotonic()
        c.request("GET", "/v1/count/slow2")
        r = c.getresponse()
        first = r.readline()
        took = time.monotonic() - t0
        self.assertEqual(json.loads(first), {"id": "1", "text": "rest"})
        self.assertLess(took, 0.7)  # the second message is 0.8 s behind it
        self.assertEqual(json.loads(r.readline()), {"id": "2", "text": "rest"})
        c.close()

    def test_server_streams_as_server_sent_events(self):
        st, ct, body = self.stream("/v1/count/fail2", accept="text/event-stream")
        self.assertEqual((st, ct), (200, "text/event-stream"))
        events = [e for e in body.split("\n\n") if e]
        self.assertEqual(events[:2], ['data: {"id":"1","text":"rest"}',
                                      'data: {"id":"2","text":"rest"}'])
        self.assertTrue(events[2].startswith("event: error\ndata: "), events[2])
        self.assertEqual(json.loads(events[2].split("data: ", 1)[1])["error"]["code"], 10)

    def test_connect_keeps_its_paths(self):
        st, _, r = self.json_call("POST", "/library.v1.Library/Plain", {"id": "p"})
        self.assertEqual((st, r), (200, {"id": "p"}))

    def test_curl(self):
        if not shutil.which("curl"):
            self.skipTest("no curl")
        r = subprocess.run(["curl", "-sS", "http://%s/v1/shelves/1" % self.addr],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(json.loads(r.stdout), {"name": "shelves/1", "theme": "fiction"})


if __name__ == "__main__":
    mwtest.main()
