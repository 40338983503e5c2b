"""Stream session rooms on Redis with the real binary: two Moonwire
instances (two workers each) sharing a room through a real redis-server on
a free loopback port. Streams on both instances receive every publication
of both instances exactly once and in order; a client resumes on instance
B from an offset it saw on A; the epoch changes when the topic's keys are
deleted; Redis killed mid-test (publish and history say so, the streams
stay open) and restarted (they receive again); and the figures of
docs/performance.md (fan-out through Redis, publish-to-receipt latency)."""

import threading
import time
import unittest

import mwtest
from mwtest import Protos, RedisServer, Server

PROTO = """
syntax = "proto3";
package rsess;

message Event { uint64 offset = 1; string kind = 2; int64 seq = 3; string text = 4;
                string epoch = 5; bool recovered = 6; int64 replayed = 7; double at = 8; }
message Join { string topic = 1; bool resume = 2; uint64 offset = 3; string epoch = 4; }
message Pub { string topic = 1; int64 n = 2; string text = 3; int64 pace = 4; }
message PubResp { uint64 offset = 1; string err = 2; string epoch = 3; uint64 top = 4;
                  int64 count = 5; double seconds = 6; }

service S {
  rpc Watch(Join) returns (stream Event);
  rpc Publish(Pub) returns (PubResp);
  rpc History(Pub) returns (PubResp);
}
"""

LUA = """
local mw = require "moonwire"
local S = mw.service "rsess.S"

function S.Watch(req, stream)
  local opts
  if req.resume then opts = {resume = {offset = req.offset, epoch = req.epoch}} end
  local sub = mw.sessions.room:join(req.topic, stream, opts)
  stream:send({kind = "joined", epoch = sub.epoch, offset = sub.offset,
               recovered = sub.recovered == true, replayed = sub.replayed})
  sub:wait()
end

-- n publications; the first error ends the loop and is answered
function S.Publish(req)
  local off, err
  local t0 = mw.now()
  for i = 1, req.n do
    off, err = mw.sessions.room:publish(req.topic,
      {kind = "pub", seq = i, text = req.text, at = mw.now()})
    if not off then return {err = err, count = i - 1} end
    if req.pace > 0 then mw.sleep(req.pace / 1000) end
  end
  return {offset = off, count = req.n, seconds = mw.now() - t0}
end

function S.History(req)
  local h, err = mw.sessions.room:history(req.topic)
  if not h then return {err = err} end
  return {epoch = h.epoch, top = h.offset, count = #h.publications}
end

return S
"""


def config(url):
    return """
workers: 2
sessions:
  room: {message: rsess.Event, offset_field: offset, history: {size: 100, ttl: 60s},
         buffer: 1000, policy: close, redis: "%s", timeout: 500ms}
""" % url


class TestSessionsRedis(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer().start()
        cls.dir = mwtest.ServiceDir({"rsess.proto": PROTO, "s.lua": LUA})
        cls.protos = Protos(cls.dir.path)
        cls.Join = cls.protos.msg("rsess.Join")
        cls.Pub = cls.protos.msg("rsess.Pub")
        cls.a = Server(cls.dir.path, config=config(cls.redis.url()))
        cls.b = Server(cls.dir.path, config=config(cls.redis.url()))
        cls.a.start()
        cls.b.start()

    @classmethod
    def tearDownClass(cls):
        cls.a.close()
        cls.b.close()
        cls.redis.close()
        cls.dir.cleanup()

    def conn(self, server):
        o = [("grpc.use_local_subchannel_pool", 1)]
        return server.channel(options=o)

    def unary(self, server, method, **kw):
        return self.protos.unary(server.channel(), "/rsess.S/" + method)(self.Pub(**kw),
                                                                          timeout=60)

    def watch(self, server, **kw):
        st = self.protos.server_stream(self.conn(server), "/rsess.S/Watch")(
            self.Join(**kw), timeout=120)
        joined = next(st)
        self.assertEqual(joined.kind, "joined")
        return st, joined

    def take(self, st, n):
        return [next(st) for _ in range(n)]

    def test_two_instances_every_publication_once_in_order(self):
        streams = [self.watch(s, topic="both")[0] for s in (self.a, self.b) for _ in range(10)]
        out = {}

        def pub(server, tag):
            out[tag] = self.unary(server, "Publish", topic="both", n=100, text=tag)

        ts = [threading.Thread(target=pub, args=(s, t)) for s, t in ((self.a, "A"), (self.b, "B"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(out["A"].err, "")
        self.assertEqual(out["B"].err, "")
        for st in streams:
            evs = self.take(st, 200)
            offs = [e.offset for e in evs]
            self.assertEqual(offs, list(range(offs[0], offs[0] + 200)))  # dense, in order
            for tag in "AB":  # each publisher's own order kept, nothing twice
                self.assertEqual([e.seq for e in evs if e.text == tag], list(range(1, 101)))
            st.cancel()

    def test_resume_on_the_other_instance(self):
        st, joined = self.watch(self.a, topic="resume")
        self.unary(self.a, "Publish", topic="resume", n=5, text="x")
        seen = self.take(st, 5)
        st.cancel()
        last = seen[2].offset  # the client saw only three of them
        self.unary(self.b, "Publish", topic="resume", n=3, text="y")
        st2, j2 = self.watch(self.b, topic="resume", resume=True, offset=last,
                             epoch=joined.epoch)
        self.assertTrue(j2.recovered)
        self.assertEqual(j2.replayed, 5)
        self.assertEqual(j2.epoch, joined.epoch)
        self.unary(self.a, "Publish", topic="resume", n=2, text="z")
        got = self.take(st2, 7)
        self.assertEqual([e.offset for e in got], list(range(last + 1, last + 8)))
        self.assertEqual([e.text for e in got], ["x", "x", "y", "y", "y", "z", "z"])
        st2.cancel()

    def test_epoch_changes_when_the_topic_is_gone(self):
        self.unary(self.a, "Publish", topic="gone", n=3, text="x")
        h = self.unary(self.b, "History", topic="gone")
        self.assertEqual((h.top, h.count), (3, 3))
        for k in ("e", "o", "h"):
            self.redis.cli("DEL", "sessions:room:%s:gone" % k)
        st, j = self.watch(self.b, topic="gone", resume=True, offset=3, epoch=h.epoch)
        self.assertFalse(j.recovered)
        self.assertNotEqual(j.epoch, h.epoch)
        self.assertEqual(j.offset, 0)
        self.unary(self.a, "Publish", topic="gone", n=1, text="again")
        self.assertEqual(next(st).offset, 1)  # offsets start over in the new epoch
        st.cancel()

    def wait_subscribed(self):
        """Until both instances' subscriber connections are subscribed."""
        deadline = time.monotonic() + 10 * mwtest.SLOW
        while self.redis.cli("PUBSUB", "NUMSUB", "sessions:room:pub").split() != \
                ["sessions:room:pub", "2"]:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)

    def test_redis_killed_then_restarted(self):
        st, joined = self.watch(self.b, topic="kill")
        self.unary(self.a, "Publish", topic="kill", n=1, text="before")
        self.assertEqual(next(st).text, "before")
        self.redis.kill()
        try:
            r = self.unary(self.a, "Publish", topic="kill", n=1, text="down")
            self.assertTrue(r.err.startswith("redis: "), r.err)
            self.assertEqual(r.count, 0)
            h = self.unary(self.b, "History", topic="kill")
            self.assertTrue(h.err.startswith("redis: "), h.err)
        finally:
            self.redis.start()
        self.wait_subscribed()
        deadline = time.monotonic() + 10 * mwtest.SLOW
        while True:
            r = self.unary(self.a, "Publish", topic="kill", n=1, text="after")
            if not r.err:
                break
            self.assertLess(time.monotonic(), deadline, r.err)
            time.sleep(0.05)
        # This Redis kept nothing: the topic is made again with a new epoch
        # and offsets from 1, so the stream that saw offset 1 ends rather
        # than go back, and its resume is told it did not recover.
        with self.assertRaises(Exception) as cm:
            next(st)
        self.assertEqual(cm.exception.code().name, "ABORTED")
        self.assertIn("new epoch", cm.exception.details())
        st2, j2 = self.watch(self.a, topic="kill", resume=True, offset=1, epoch=joined.epoch)
        self.assertFalse(j2.recovered)
        self.assertEqual(j2.offset, 1)
        st2.cancel()

    def test_subscriber_connection_lost_stream_goes_on(self):
        st, _ = self.watch(self.b, topic="lost")
        self.unary(self.a, "Publish", topic="lost", n=1, text="one")
        self.assertEqual(next(st).offset, 1)
        self.redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
        self.wait_subscribed()
        self.unary(self.a, "Publish", topic="lost", n=1, text="two")
        e = next(st)  # the same epoch: the stream goes on
        self.assertEqual((e.offset, e.text), (2, "two"))
        st.cancel()

    def test_figures(self):
        """Fan-out through Redis (100 streams on each instance) and
        publish-to-receipt latency at a modest rate (printed for
        docs/performance.md)."""
        n_streams, n_pubs = 100, 200
        streams = [self.watch(s, topic="fig")[0] for s in (self.a, self.b)
                   for _ in range(n_streams)]
        done = []

        def drain(st):
            self.take(st, n_pubs)
            done.append(time.monotonic())

        t0 = time.monotonic()
        ths = [threading.Thread(target=drain, args=(st,)) for st in streams]
        for t in ths:
            t.start()
        self.unary(self.a, "Publish", topic="fig", n=n_pubs, text="f")
        for t in ths:
            t.join()
        secs = max(done) - t0
        rate = n_pubs * len(streams) / secs
        for st in streams:
            st.cancel()
        # latency: one stream on B, one publication at a time from a client
        # of A, timed from the call's start to the stream's receipt
        st, _ = self.watch(self.b, topic="lat")
        lat = []
        for i in range(200):
            t0 = time.monotonic()
            self.unary(self.a, "Publish", topic="lat", n=1, text="l")
            next(st)
            lat.append(time.monotonic() - t0)
            time.sleep(0.005)
        st.cancel()
        lat.sort()
        # one handler publishing in a loop: a Redis round trip each
        r = self.unary(self.a, "Publish", topic="nobody", n=2000, text="p")
        print("\nsessions on redis: one handler publishes %.0f/s (%.0f us each)"
              % (2000 / r.seconds, r.seconds / 2000 * 1e6))
        print("\nsessions on redis: fan-out %d pubs x %d streams (2 instances) in %.2fs: "
              "%.0f msgs/s; publish call on A -> receipt on B p50 %.2f ms p99 %.2f ms"
              % (n_pubs, len(streams), secs, rate, lat[len(lat) // 2] * 1e3,
                 lat[int(len(lat) * 0.99)] * 1e3))
        self.assertGreater(rate, 1000)


if __name__ == "__main__":
    unittest.main()
