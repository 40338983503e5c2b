"""Stream sessions (mw.sessions) with the real binary and two workers:
100 streams over both workers receiving every broadcast exactly once and
in order, a slow subscriber under each policy (block, drop_oldest, close),
resume with and without history (size, TTL, epoch), the unary snapshot,
send/list/close, leaving on cancel, streams that keep receiving across a
script reload, and the errors of misuse."""

import os
import signal
import threading
import time
import unittest

import grpc

import mwtest
from mwtest import Protos, Server, run_cli, service_dir

PROTO = """
syntax = "proto3";
package sess;

message Event {
  uint64 offset = 1;
  string kind = 2;     // "joined" first, then "pub" / "direct"
  int64 seq = 3;
  string text = 4;
  string epoch = 5;
  bool recovered = 6;
  int64 id = 7;
  int64 replayed = 8;
  string state = 9;    // which worker's state answered
}
message Join { string room = 1; string topic = 2; bool resume = 3; uint64 offset = 4;
               string epoch = 5; }
message Pub { string room = 1; string topic = 2; int64 n = 3; int64 size = 4; int64 id = 5;
              string code = 6; string text = 7; int64 pace = 8; }
message PubResp { uint64 offset = 1; repeated int64 ids = 2; bool ok = 3; string err = 4;
                  double seconds = 5; }
message Snap { string epoch = 1; uint64 offset = 2; repeated Event events = 3; }
message Plain { string text = 1; }

service S {
  rpc Watch(Join) returns (stream Event);
  rpc Chat(stream Event) returns (stream Event);
  rpc Publish(Pub) returns (PubResp);
  rpc Send(Pub) returns (PubResp);
  rpc Close(Pub) returns (PubResp);
  rpc List(Pub) returns (PubResp);
  rpc Snapshot(Pub) returns (Snap);
  rpc Misuse(Pub) returns (PubResp);
  rpc WrongType(Join) returns (stream Plain);
}
"""

LUA = """
local mw = require "moonwire"
local S = mw.service "sess.S"
local STATE = string.format("%x", math.random(1 << 40))
local VERSION = "v1"

function S.Watch(req, stream)
  local room = mw.sessions[req.room ~= "" and req.room or "news"]
  local opts
  if req.resume then opts = {resume = {offset = req.offset, epoch = req.epoch}} end
  local sub = room:join(req.topic, stream, opts)
  stream:send({kind = "joined", epoch = sub.epoch, offset = sub.offset, id = sub.id,
               recovered = sub.recovered == true, replayed = sub.replayed,
               state = STATE .. ":" .. VERSION})
  sub:wait()
end

-- bidi: every message received is published to the topic named by its text
function S.Chat(stream)
  local first = stream:recv()
  local room = mw.sessions.news
  local sub = room:join(first.text, stream)
  stream:send({kind = "joined", id = sub.id, state = STATE})
  for msg in stream:iter() do
    room:publish(first.text, {kind = "pub", seq = msg.seq, text = msg.text})
  end
end

function S.Publish(req)
  local room = mw.sessions[req.room ~= "" and req.room or "news"]
  local pad = string.rep("x", req.size)
  local off
  local t0 = mw.now()
  for i = 1, req.n do
    off = room:publish(req.topic, {kind = "pub", seq = i, text = pad})
    -- paced: a client that reads keeps up with the publications (bursts
    -- of 4, a quarter of the room's buffer, leave a reader that the test
    -- machine stalls for a while 12 messages of slack)
    if req.pace > 0 and i % 4 == 0 then mw.sleep(req.pace / 1000) end
  end
  return {offset = off, seconds = mw.now() - t0}
end

function S.Send(req)
  local ok, err = mw.sessions[req.room ~= "" and req.room or "news"]:send(req.id,
    {kind = "direct", text = req.text})
  return {ok = ok == true, err = err}
end

function S.Close(req)
  local st
  if req.code ~= "" then st = {code = req.code, message = req.text} end
  local ok, err = mw.sessions[req.room ~= "" and req.room or "news"]:close(req.id, st)
  return {ok = ok == true, err = err}
end

function S.List(req)
  return {ids = mw.sessions[req.room ~= "" and req.room or "news"]:list(req.topic)}
end

function S.Snapshot(req)
  local snap = mw.sessions[req.room ~= "" and req.room or "news"]:snapshot(req.topic)
  local events = {}
  for i, p in ipairs(snap.publications) do events[i] = p.message end
  return {epoch = snap.epoch, offset = snap.offset, events = events}
end

function S.Misuse(req)
  local room = mw.sessions.news
  local ok, err = pcall(function()
    if req.code == "topic" then room:publish("", {})
    elseif req.code == "field" then room:publish("t", {nope = 1})
    elseif req.code == "unknown" then return mw.sessions.nope
    elseif req.code == "id" then room:send("x", {}) end
  end)
  return {ok = ok, err = tostring(err)}
end

function S.WrongType(req, stream)
  mw.sessions.news:join("t", stream)
end

return S
"""

CONFIG = """
workers: 2
sessions:
  news: {message: sess.Event, offset_field: offset, history: {size: 50, ttl: 60s}}
  slow_block: {message: sess.Event, offset_field: offset, buffer: 4, policy: block}
  slow_drop: {message: sess.Event, offset_field: offset, buffer: 16, policy: drop_oldest}
  slow_close: {message: sess.Event, offset_field: offset, buffer: 16, policy: close}
  short: {message: sess.Event, offset_field: offset, history: {size: 5, ttl: 1s}}
"""


class TestSessions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"sess.proto": PROTO, "s.lua": LUA})
        cls.protos = Protos(cls.dir.path)
        cls.Join = cls.protos.msg("sess.Join")
        cls.Pub = cls.protos.msg("sess.Pub")
        cls.Event = cls.protos.msg("sess.Event")
        cls.server = Server(cls.dir.path, config=CONFIG)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()

    def conn(self, **opts):
        """A channel of its own connection (connections spread over the
        workers); bdp probing off so that a client that does not read
        holds a fixed window."""
        o = [("grpc.use_local_subchannel_pool", 1), ("grpc.http2.bdp_probe", 0)]
        return self.server.channel(options=o)

    def unary(self, method, ch=None, timeout=20, **kw):
        return self.protos.unary(ch or self.server.channel(), "/sess.S/" + method)(
            self.Pub(**kw), timeout=timeout)

    def watch(self, ch=None, timeout=60, **kw):
        """Opens Watch and returns (stream, the joined event)."""
        st = self.protos.server_stream(ch or self.conn(), "/sess.S/Watch")(
            self.Join(**kw), timeout=timeout)
        joined = next(st)
        self.assertEqual(joined.kind, "joined")
        return st, joined

    def wait_listed(self, topic, n, room=""):
        deadline = time.monotonic() + 10 * mwtest.SLOW
        while time.monotonic() < deadline:
            ids = list(self.unary("List", topic=topic, room=room).ids)
            if len(ids) == n:
                return ids
            time.sleep(0.02)
        self.fail("%s: %d sessions listed, not %d" % (topic, len(ids), n))

    def test_100_streams_over_two_workers_every_broadcast_once_in_order(self):
        n_streams, n_pubs = 100, 200
        streams, states = [], set()
        for _ in range(n_streams):
            st, joined = self.watch(topic="fanout")
            streams.append(st)
            states.add(joined.state.split(":")[0])
        self.assertEqual(len(states), 2, "the streams landed on both workers")
        got = [[] for _ in range(n_streams)]
        errors = []

        def reader(i):
            try:
                for ev in streams[i]:
                    got[i].append((ev.seq, ev.offset))
                    if len(got[i]) == n_pubs:
                        return
            except grpc.RpcError as e:  # noqa: PERF203
                errors.append(e)

        ts = [threading.Thread(target=reader, args=(i,)) for i in range(n_streams)]
        for t in ts:
            t.start()
        r = self.unary("Publish", topic="fanout", n=n_pubs, size=16)
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])
        first = got[0][0][1]
        want = [(i + 1, first + i) for i in range(n_pubs)]
        for i in range(n_streams):
            self.assertEqual(got[i], want, "stream %d" % i)
        self.assertEqual(r.offset, first + n_pubs - 1)
        for st in streams:
            st.cancel()
        self.wait_listed("fanout", 0)

    def slow_and_fast(self, room, n=300, size=65536, pace=0):
        """A subscriber that does not read and one that does, on room; the
        publisher runs in a thread. Returns (slow, fast events, publish
        thread, its result holder)."""
        slow, _ = self.watch(topic="t", room=room)
        fast, _ = self.watch(topic="t", room=room)
        fast_got, res = [], {}

        def read_fast():
            try:
                for ev in fast:
                    fast_got.append(ev.seq)
                    if ev.seq == n:
                        return
            except grpc.RpcError as e:
                res["fast_error"] = e

        def publish():
            try:
                res["resp"] = self.unary("Publish", topic="t", room=room, n=n, size=size,
                                         pace=pace, timeout=60)
            except grpc.RpcError as e:
                res["error"] = e

        rf = threading.Thread(target=read_fast)
        rf.start()
        p = threading.Thread(target=publish)
        p.start()
        return slow, fast, fast_got, rf, p, res

    def test_slow_subscriber_block_holds_the_publisher(self):
        n = 300
        slow, fast, fast_got, rf, p, res = self.slow_and_fast("slow_block", n)
        time.sleep(1.0 * mwtest.SLOW)
        # the slow client's window, its call's queue and its 4 queued hold
        # far fewer than 300 messages of 64 KiB: the publisher waits, and so
        # does the topic
        self.assertTrue(p.is_alive(), "the publisher finished with a stalled subscriber")
        self.assertLess(len(fast_got), n)
        seqs = [q for q, _ in self.read_until_seq(slow, n)]  # read: the publisher goes on
        p.join(30)
        rf.join(30)
        self.assertIn("resp", res, res)
        self.assertEqual(seqs[:n], list(range(1, n + 1)))
        self.assertEqual(fast_got, list(range(1, n + 1)))
        slow.cancel()
        fast.cancel()

    def test_block_publisher_goes_on_when_the_slow_stream_leaves(self):
        n = 300
        slow, fast, fast_got, rf, p, res = self.slow_and_fast("slow_block", n)
        time.sleep(0.5 * mwtest.SLOW)
        self.assertTrue(p.is_alive(), "the publisher finished with a stalled subscriber")
        slow.cancel()  # the stalled stream goes: its queue no longer holds the topic
        p.join(30)
        rf.join(30)
        self.assertIn("resp", res, res)
        self.assertEqual(fast_got, list(range(1, n + 1)))
        fast.cancel()

    def read_until_seq(self, st, n):
        seqs = []
        for ev in st:
            seqs.append((ev.seq, ev.offset))
            if ev.seq == n:
                break
        return seqs

    def test_slow_subscriber_drop_oldest_loses_the_oldest(self):
        n = 300
        slow, fast, fast_got, rf, p, res = self.slow_and_fast("slow_drop", n, size=16384, pace=10 * mwtest.SLOW)
        p.join(30)
        self.assertIn("resp", res, "the publisher never waits under drop_oldest: %s" % res)
        rf.join(30)
        self.assertEqual(fast_got, list(range(1, n + 1)))
        got = self.read_until_seq(slow, n)
        seqs = [s for s, _ in got]
        self.assertLess(len(seqs), n, "the slow subscriber lost some")
        self.assertEqual(seqs, sorted(set(seqs)), "in order, none twice")
        self.assertEqual(seqs[-16:], list(range(n - 15, n + 1)), "the newest 16 were kept")
        self.assertEqual([o - got[0][1] for _, o in got], [s - got[0][0] for s in seqs],
                         "offsets stamped on each")
        slow.cancel()
        fast.cancel()

    def test_slow_subscriber_close_ends_it_with_resource_exhausted(self):
        n = 300
        slow, fast, fast_got, rf, p, res = self.slow_and_fast("slow_close", n, size=16384, pace=10 * mwtest.SLOW)
        p.join(30)
        self.assertIn("resp", res, res)
        rf.join(30)
        self.assertEqual(fast_got, list(range(1, n + 1)))
        seqs = []
        with self.assertRaises(grpc.RpcError) as e:
            for ev in slow:
                seqs.append(ev.seq)
        self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("fell behind", e.exception.details())
        self.assertLess(len(seqs), n)
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "what it got came whole")
        self.wait_listed("t", 1, room="slow_close")
        fast.cancel()
        self.wait_listed("t", 0, room="slow_close")

    def test_resume_with_history(self):
        st, joined = self.watch(topic="resume")
        keep, _ = self.watch(topic="resume")  # keeps the topic joined meanwhile
        self.unary("Publish", topic="resume", n=5, size=0)
        seen = [next(st) for _ in range(5)]
        last = seen[-1].offset
        self.assertEqual([e.offset for e in seen], list(range(last - 4, last + 1)))
        st.cancel()
        self.unary("Publish", topic="resume", n=3, size=0)  # missed while away
        st2, j2 = self.watch(topic="resume", resume=True, offset=last, epoch=joined.epoch)
        self.assertTrue(j2.recovered)
        self.assertEqual(j2.replayed, 3)
        self.assertEqual(j2.epoch, joined.epoch)
        self.unary("Publish", topic="resume", n=1, size=0)
        got = [next(st2) for _ in range(4)]
        self.assertEqual([e.offset for e in got], [last + 1, last + 2, last + 3, last + 4])
        self.assertEqual([e.seq for e in got], [1, 2, 3, 1])
        # the unary snapshot: the recent messages and where to resume from
        snap = self.protos.unary(self.server.channel(), "/sess.S/Snapshot")(
            self.Pub(topic="resume"), timeout=10)
        self.assertEqual(snap.epoch, joined.epoch)
        self.assertEqual(snap.offset, last + 4)
        self.assertEqual([e.offset for e in snap.events][-4:], [e.offset for e in got])
        st2.cancel()
        keep.cancel()

    def test_resume_without_history(self):
        # another epoch: told to reload
        st, joined = self.watch(topic="noresume")
        self.unary("Publish", topic="noresume", n=2, size=0)
        _, bad = self.watch(topic="noresume", resume=True, offset=1, epoch="0123456789abcdef")
        self.assertFalse(bad.recovered)
        self.assertEqual(bad.replayed, 0)
        # history pushed out (size 5)
        s2, j2 = self.watch(topic="gone", room="short")
        self.unary("Publish", topic="gone", room="short", n=10, size=0)
        _, r = self.watch(topic="gone", room="short", resume=True, offset=j2.offset + 2,
                          epoch=j2.epoch)
        self.assertFalse(r.recovered)
        _, r = self.watch(topic="gone", room="short", resume=True, offset=j2.offset + 5,
                          epoch=j2.epoch)
        self.assertTrue(r.recovered)
        self.assertEqual(r.replayed, 5)
        # history expired (TTL 1 s)
        self.unary("Publish", topic="gone", room="short", n=1, size=0)
        time.sleep(1.3)
        _, r = self.watch(topic="gone", room="short", resume=True, offset=j2.offset + 10,
                          epoch=j2.epoch)
        self.assertFalse(r.recovered)
        st.cancel()
        s2.cancel()

    def test_send_list_close_and_leave_on_cancel(self):
        a, ja = self.watch(topic="direct")
        b, jb = self.watch(topic="direct")
        self.assertEqual(sorted(self.wait_listed("direct", 2)), sorted([ja.id, jb.id]))
        r = self.unary("Send", id=jb.id, text="hello b")
        self.assertTrue(r.ok)
        ev = next(b)
        self.assertEqual((ev.kind, ev.text), ("direct", "hello b"))
        r = self.unary("Send", id=123456789, text="nobody")
        self.assertEqual((r.ok, r.err), (False, "not found"))
        r = self.unary("Close", id=ja.id, code="ABORTED", text="moved out")
        self.assertTrue(r.ok)
        with self.assertRaises(grpc.RpcError) as e:
            next(a)
        self.assertEqual(e.exception.code(), grpc.StatusCode.ABORTED)
        self.assertEqual(e.exception.details(), "moved out")
        self.assertEqual(self.wait_listed("direct", 1), [jb.id])
        r = self.unary("Close", id=ja.id)
        self.assertEqual(r.err, "not found")
        b.cancel()  # leaving is automatic
        self.wait_listed("direct", 0)
        # closed with no status: the stream ends OK
        c, jc = self.watch(topic="direct")
        self.assertTrue(self.unary("Close", id=jc.id).ok)
        self.assertEqual(list(c), [])

    def test_bidi_chat(self):
        send_q = []
        cond = threading.Condition()

        def requests():
            yield self.Event(text="room1")
            i = 0
            while True:
                with cond:
                    while len(send_q) <= i:
                        cond.wait()
                    item = send_q[i]
                i += 1
                if item is None:
                    return
                yield item

        chat = self.protos.bidi(self.conn(), "/sess.S/Chat")(requests(), timeout=30)
        self.assertEqual(next(chat).kind, "joined")
        # a member that says nothing after its first message: publications
        # reach it while its handler waits for the client's next message
        quiet_stop = threading.Event()

        def quiet_requests():
            yield self.Event(text="room1")
            quiet_stop.wait(30)

        quiet = self.protos.bidi(self.conn(), "/sess.S/Chat")(quiet_requests(), timeout=30)
        self.assertEqual(next(quiet).kind, "joined")
        watcher, _ = self.watch(topic="room1")
        for i in range(1, 4):
            with cond:
                send_q.append(self.Event(seq=i, text="m%d" % i))
                cond.notify()
        # the chat stream receives its own publications, and so does the watcher
        self.assertEqual([next(chat).text for _ in range(3)], ["m1", "m2", "m3"])
        self.assertEqual([next(watcher).text for _ in range(3)], ["m1", "m2", "m3"])
        self.assertEqual([next(quiet).text for _ in range(3)], ["m1", "m2", "m3"])
        quiet_stop.set()
        self.assertEqual(list(quiet), [])
        with cond:
            send_q.append(None)
            cond.notify()
        self.assertEqual(list(chat), [])
        watcher.cancel()
        self.wait_listed("room1", 0)

    def test_misuse(self):
        r = self.unary("Misuse", code="topic")
        self.assertIn("a topic (a non-empty string) expected", r.err)
        r = self.unary("Misuse", code="field")
        self.assertIn("not a valid sess.Event", r.err)
        r = self.unary("Misuse", code="unknown")
        self.assertIn("unknown sessions 'nope' (configured: news, slow_block", r.err)
        r = self.unary("Misuse", code="id")
        self.assertIn("a session id (an integer) expected", r.err)
        with self.assertRaises(grpc.RpcError) as e:
            list(self.protos.server_stream(self.server.channel(), "/sess.S/WrongType")(
                self.Join(), timeout=10))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INTERNAL)
        self.assertTrue(self.server.wait_log(
            "join: sessions 'news' carry sess.Event, and /sess.S/WrongType streams sess.Plain"),
            self.server.logs())


class TestSessionsLifetime(unittest.TestCase):
    def test_joined_streams_keep_receiving_across_a_reload(self):
        d = service_dir(self, {"sess.proto": PROTO, "s.lua": LUA})
        protos = Protos(d.path)
        Join, Pub = protos.msg("sess.Join"), protos.msg("sess.Pub")
        with Server(d.path, config=CONFIG) as s:
            st = protos.server_stream(s.channel(), "/sess.S/Watch")(Join(topic="r"), timeout=30)
            joined = next(st)
            self.assertTrue(joined.state.endswith(":v1"))
            d.write("s.lua", LUA.replace('VERSION = "v1"', 'VERSION = "v2"'))
            self.assertTrue(s.wait_log("reloaded (", timeout=10), s.logs())
            # a stream joined in the new generation, and the old one, both get it
            deadline = time.monotonic() + 10 * mwtest.SLOW
            while True:
                st2 = protos.server_stream(s.channel(), "/sess.S/Watch")(Join(topic="r"),
                                                                          timeout=30)
                j2 = next(st2)
                if j2.state.endswith(":v2") or time.monotonic() > deadline:
                    break
                st2.cancel()
            self.assertTrue(j2.state.endswith(":v2"), j2.state)
            protos.unary(s.channel(), "/sess.S/Publish")(Pub(topic="r", n=3), timeout=10)
            self.assertEqual([next(st).seq for _ in range(3)], [1, 2, 3])
            self.assertEqual([next(st2).seq for _ in range(3)], [1, 2, 3])
            st.cancel()
            st2.cancel()

    def test_a_reload_adds_rooms_and_keeps_the_others(self):
        d = service_dir(self, {"sess.proto": PROTO, "s.lua": LUA})
        cfg_dir = service_dir(self, {})
        cfg = cfg_dir.write("moonwire.yaml", CONFIG)
        protos = Protos(d.path)
        Join, Pub = protos.msg("sess.Join"), protos.msg("sess.Pub")
        with Server(d.path, args=["-c", cfg]) as s:
            st = protos.server_stream(s.channel(), "/sess.S/Watch")(Join(topic="k"), timeout=30)
            joined = next(st)
            protos.unary(s.channel(), "/sess.S/Publish")(Pub(topic="k", n=2), timeout=10)
            self.assertEqual([next(st).seq for _ in range(2)], [1, 2])
            # a room added, one changed, one dropped
            with open(cfg, "w") as f:
                f.write(CONFIG.replace("history: {size: 50, ttl: 60s}", "history: {size: 9}")
                        .replace("  short:", "  extra: {message: sess.Event}\n  short_gone:"))
            n = s.logs().count("reloaded (SIGHUP)")
            os.kill(s.pid, signal.SIGHUP)
            deadline = time.monotonic() + 10 * mwtest.SLOW
            while s.logs().count("reloaded (SIGHUP)") <= n and time.monotonic() < deadline:
                time.sleep(0.02)
            logs = s.logs()
            self.assertIn("sessions 'news' keep their settings", logs)
            self.assertIn("sessions 'short' are no longer in the config: kept", logs)
            # the stream joined before goes on, in the same epoch and offsets
            protos.unary(s.channel(), "/sess.S/Publish")(Pub(topic="k", n=1), timeout=10)
            ev = next(st)
            self.assertEqual((ev.seq, ev.offset), (1, joined.offset + 3))
            # the new room serves
            st2 = protos.server_stream(s.channel(), "/sess.S/Watch")(Join(topic="k", room="extra"),
                                                                      timeout=30)
            next(st2)
            protos.unary(s.channel(), "/sess.S/Publish")(Pub(topic="k", room="extra", n=1),
                                                         timeout=10)
            self.assertEqual(next(st2).seq, 1)
            st.cancel()
            st2.cancel()

    def test_config_errors(self):
        d = service_dir(self, {"sess.proto": PROTO, "s.lua": LUA})
        cfg = service_dir(self, {}).write("c.yaml", "sessions:\n  news: {buffer: 0, policy: later}\n"
                                          "  bad-name: {message: a.B}\n")
        r = run_cli("check", "-c", cfg, d.path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("sessions.news.buffer", r.stderr)
        self.assertIn("sessions.news.policy: expected block, drop_oldest or close, got 'later'",
                      r.stderr)
        self.assertIn("sessions: 'bad-name' is not a room name", r.stderr)
        self.assertIn("sessions.news: 'message' is required", r.stderr)
        # a type the protos lack: the first use says so
        cfg = service_dir(self, {}).write("c.yaml", "sessions:\n  news: {message: sess.Nope}\n")
        with Server(d.path, args=["-c", cfg]) as s:
            with self.assertRaises(grpc.RpcError):
                protos = Protos(d.path)
                protos.unary(s.channel(), "/sess.S/Publish")(protos.msg("sess.Pub")(
                    topic="t", n=1), timeout=10)
            self.assertTrue(s.wait_log("sessions 'news': the message type 'sess.Nope' is not "
                                       "in the loaded .proto files"), s.logs())


if __name__ == "__main__":
    unittest.main()
