"""Server-sent events of REST server streams on the HTTP listener: event ids
on session publications ("<epoch>:<offset>"), resumption by Last-Event-ID
(the header, and the lastEventId query parameter) with the missed
publications exactly once, keepalive comments on idle streams only, the
retry: field, and the eventsource npm client reconnecting after the server
ended its stream."""
import http.client
import json
import os
import subprocess
import time
import unittest

import mwtest
from mwtest import Server

PROTO = """
syntax = "proto3";
package feed.v1;
import "google/api/annotations.proto";
message Item { string text = 1; int64 offset = 2; }
message Topic { string topic = 1; }
message Post { string topic = 1; string text = 2; }
message Posted { int64 offset = 1; }
service Feed {
  rpc Watch(Topic) returns (stream Item) { option (google.api.http) = {get: "/v1/feed/{topic}"}; }
  rpc Publish(Post) returns (Posted) {
    option (google.api.http) = {post: "/v1/feed/{topic}", body: "*"};
  }
  rpc Kick(Topic) returns (Posted) { option (google.api.http) = {post: "/v1/kick/{topic}"}; }
}
"""

LUA = """
local mw = require "moonwire"
local feed = mw.sessions.feed
local Feed = mw.service "feed.v1.Feed"

function Feed.Watch(req, stream, ctx)
  local sub = feed:join(req.topic, stream)   -- resumes from Last-Event-ID by itself
  -- a message of the handler's own (not a publication): no id
  stream:send{text = "joined " .. tostring(sub.recovered) .. " " .. tostring(ctx.last_event_id) ..
                     " " .. (ctx.resume and ctx.resume.offset or -1)}
  if req.topic == "direct" then feed:send(sub.id, {text = "to you"}) end  -- no offset: no id
  sub:wait()
end

function Feed.Publish(req)
  return {offset = feed:publish(req.topic, {text = req.text})}
end

function Feed.Kick(req)   -- ends every stream of the topic: its clients reconnect
  local ids = feed:list(req.topic)
  for _, id in ipairs(ids) do feed:close(id) end
  return {offset = #ids}
end
"""

CONFIG = """
workers: 2
sessions:
  feed: {message: feed.v1.Item, offset_field: offset, history: {size: 100, ttl: 60s}}
http:
  listen: 127.0.0.1:0
  sse_keepalive: 300ms
  sse_retry: 200ms
"""

EVENTSOURCE = r"""
const { EventSource } = require(process.argv[2]);
const base = process.argv[3];
const seen = [];
const post = (text) => fetch(base + "/v1/feed/es", {
  method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify({text})});
let opens = 0, kicked = false;
const es = new EventSource(base + "/v1/feed/es");  // m1, m2 once it has joined
es.onopen = () => { opens++; };
es.onmessage = async (e) => {
  const d = JSON.parse(e.data);
  seen.push({id: e.lastEventId, text: d.text});
  if (d.text.startsWith("joined nil")) { await post("m1"); await post("m2"); }
  if (d.text === "m2" && !kicked) {
    kicked = true;
    // the server ends the stream; m3 and m4 are published before the client is back
    await fetch(base + "/v1/kick/es", {method: "POST"});
    for (const t of ["m3", "m4"])
      await post(t);
  }
  if (d.text === "m5") { es.close(); console.log(JSON.stringify({opens, seen})); process.exit(0); }
  if (d.text === "m4") await post("m5");
};
setTimeout(() => { console.log(JSON.stringify({opens, seen, timeout: true})); process.exit(1); }, 8000);
"""


def read_events(resp, n, timeout=5):
    """The next n events (dicts of their fields) and the comments met meanwhile."""
    events, comments, cur = [], [], {}
    deadline = time.monotonic() + timeout
    while len(events) < n and time.monotonic() < deadline:
        line = resp.readline().decode()
        if line == "":
            break
        line = line.rstrip("\n")
        if line == "":
            if cur:
                events.append(cur)
            cur = {}
        elif line.startswith(":"):
            comments.append(line)
        else:
            k, _, v = line.partition(": ")
            cur[k] = v
    return events, comments


class SseTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"feed.proto": PROTO, "feed.lua": LUA})
        cls.server = Server(cls.dir.path, config=CONFIG)
        cls.server.start()
        deadline = time.monotonic() + 10
        while "http listening on " not in cls.server.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        cls.addr = cls.server.stdout().split("http listening on ")[1].split()[0]
        cls.host, cls.port = cls.addr.rsplit(":", 1)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.dir.cleanup()

    def publish(self, topic, text):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=5)
        c.request("POST", "/v1/feed/" + topic, body=json.dumps({"text": text}),
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        self.assertEqual(r.status, 200, body)
        return int(body["offset"])

    def watch(self, path, headers=None):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=5)
        h = {"accept": "text/event-stream"}
        h.update(headers or {})
        c.request("GET", path, headers=h)
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("content-type"), "text/event-stream")
        self.addCleanup(c.close)
        return r

    def test_ids_and_keepalive(self):
        r = self.watch("/v1/feed/ids")
        # the retry field, then the handler's own message: no id
        ev, _ = read_events(r, 2)
        self.assertEqual(ev[0], {"retry": "200"})
        self.assertEqual(ev[1], {"data": json.dumps({"text": "joined nil nil -1"},
                                                    separators=(",", ":"))})
        # idle: keepalive comments
        _, comments = read_events(r, 0, timeout=0)  # nothing buffered
        t0 = time.monotonic()
        line = r.readline()
        self.assertEqual(line, b": keepalive\n")
        self.assertGreater(time.monotonic() - t0, 0.15)
        self.assertEqual(r.readline(), b"\n")
        # events flowing more often than the keepalive: no comments among them
        epoch = None
        for i in range(1, 9):
            off = self.publish("ids", "p%d" % i)
            ev, comments = read_events(r, 1)
            self.assertEqual(comments, [])
            eid = ev[0]["id"]
            e, _, o = eid.partition(":")
            self.assertEqual(int(o), off)
            self.assertRegex(e, "^[0-9a-f]{16}$")
            epoch = epoch or e
            self.assertEqual(e, epoch)
            self.assertEqual(json.loads(ev[0]["data"]), {"text": "p%d" % i, "offset": str(off)})
            time.sleep(0.05)

    def resume_check(self, topic, headers=None, query=""):
        first = self.publish(topic, "a")
        self.publish(topic, "b")
        self.publish(topic, "c")
        r = self.watch("/v1/feed/" + topic)
        ev, _ = read_events(r, 2)
        self.assertIn("joined nil", ev[1]["data"])
        last = self.publish(topic, "d")
        ev, _ = read_events(r, 1)
        eid = ev[0]["id"]
        self.assertTrue(eid.endswith(":%d" % last))
        r.close()
        # missed while away: e and f
        self.publish(topic, "e")
        self.publish(topic, "f")
        h = {"last-event-id": eid} if headers else {}
        path = "/v1/feed/" + topic + (("?lastEventId=" + eid) if query else "")
        r = self.watch(path, h)
        ev, _ = read_events(r, 4)
        self.assertEqual(json.loads(ev[1]["data"])["text"],
                         "joined true %s %d" % (eid, last))
        self.assertEqual([json.loads(e["data"])["text"] for e in ev[2:]], ["e", "f"])
        self.assertEqual([e["id"] for e in ev[2:]],
                         [eid.split(":")[0] + ":%d" % o for o in (last + 1, last + 2)])
        # then the live ones, once each
        self.publish(topic, "g")
        ev, _ = read_events(r, 1)
        self.assertEqual(json.loads(ev[0]["data"])["text"], "g")
        self.assertEqual(first, 1)

    def test_resume_by_last_event_id_header(self):
        self.resume_check("hdr", headers=True)

    def test_resume_by_query_parameter(self):
        self.resume_check("qry", query=True)

    def test_unknown_epoch_is_not_recovered(self):
        self.publish("old", "x")
        r = self.watch("/v1/feed/old", {"last-event-id": "0123456789abcdef:1"})
        ev, _ = read_events(r, 2)
        self.assertIn("joined false 0123456789abcdef:1 1", ev[1]["data"])
        # not of the form: no resume, the raw value still reaches the handler
        r = self.watch("/v1/feed/old", {"last-event-id": "nonsense"})
        ev, _ = read_events(r, 2)
        self.assertIn("joined nil nonsense -1", ev[1]["data"])
        # a query value that cannot be metadata is dropped, not an error
        r = self.watch("/v1/feed/old?lastEventId=%0Aa")
        ev, _ = read_events(r, 2)
        self.assertIn("joined nil nil -1", ev[1]["data"])

    def test_messages_to_one_session_carry_no_id(self):
        r = self.watch("/v1/feed/direct")
        ev, _ = read_events(r, 3)
        self.assertEqual(ev[2], {"data": json.dumps({"text": "to you"}, separators=(",", ":"))})
        off = self.publish("direct", "all")
        ev, _ = read_events(r, 1)
        self.assertTrue(ev[0]["id"].endswith(":%d" % off))

    def test_ndjson_streams_carry_no_ids(self):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=5)
        c.request("GET", "/v1/feed/nd")
        r = c.getresponse()
        self.addCleanup(c.close)
        self.assertEqual(r.getheader("content-type"), "application/x-ndjson")
        self.assertEqual(json.loads(r.readline())["text"], "joined nil nil -1")
        off = self.publish("nd", "n1")
        self.assertEqual(json.loads(r.readline()), {"text": "n1", "offset": str(off)})

    def test_eventsource_resumes_after_the_server_ends_the_stream(self):
        script = os.path.join(self.dir.path, "es.js")
        with open(script, "w") as f:
            f.write(EVENTSOURCE)
        es = os.path.join(mwtest.SOURCE_DIR, "tests", "tools", "node_modules", "eventsource")
        base = "http://" + self.addr
        p = subprocess.Popen(["node", script, es, base], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=15)
        self.assertEqual(p.returncode, 0, out + err)
        got = json.loads(out)
        texts = [s["text"] for s in got["seen"] if not s["text"].startswith("joined")]
        # every publication once, in order, across the reconnect
        self.assertEqual(texts, ["m1", "m2", "m3", "m4", "m5"])
        self.assertEqual(got["opens"], 2)
        joined = [s["text"] for s in got["seen"] if s["text"].startswith("joined")]
        self.assertEqual(joined[0], "joined nil nil -1")
        self.assertTrue(joined[1].startswith("joined true "), joined)
        ids = [s["id"] for s in got["seen"] if not s["text"].startswith("joined")]
        self.assertEqual([int(i.split(":")[1]) for i in ids], [1, 2, 3, 4, 5])


if __name__ == "__main__":
    unittest.main()
