"""Streams under stress: deadlines and cancels mid-stream, backpressure, the
CPU and memory limits, many sleeping calls, call storms, and connection
settings reaching gRPC core.

Every server here runs one worker (workers: 1), so module-level tables of the
test service are shared by all calls and mw.stats() speaks for the whole
server."""
import os
import queue
import socket
import struct
import threading
import time

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package strm;

message Req {
  string id = 1;
  int32 n = 2;
  int32 size = 3;
  double sleep = 4;
  string text = 5;
  bytes data = 6;
}
message Resp {
  string id = 1;
  int32 n = 2;
  bytes data = 3;
  string text = 4;
  int64 value = 5;
  map<string, string> info = 6;
}

service Strm {
  rpc Unary(Req) returns (Resp);
  rpc Probe(Req) returns (Resp);
  rpc Stats(Req) returns (Resp);
  rpc SendThenSleep(Req) returns (stream Resp);
  rpc Chat(stream Req) returns (stream Resp);
  rpc Collect(stream Req) returns (Resp);
  rpc Flood(Req) returns (stream Resp);
  rpc Spin(Req) returns (Resp);
  rpc SpinPcall(Req) returns (Resp);
  rpc Bomb(Req) returns (Resp);
  rpc Greet(stream Req) returns (stream Resp);
  rpc PartialFail(Req) returns (stream Resp);
  rpc ChatFail(stream Req) returns (stream Resp);
}
"""

LUA = r"""
local mw = require "moonwire"
local S = mw.service "strm.Strm"

-- What each watched call saw, by id. Module state: one worker, so every
-- call of the test reaches the same table.
local reports = {}

local function call_id(req, ctx)
  return (req and req.id ~= "" and req.id) or ctx.metadata["x-id"]
end

-- Registers an on_cancel function for the call and returns its report.
local function watch(id, ctx)
  local r = {on_cancel = 0, sent = 0, received = 0}
  reports[id] = r
  ctx:on_cancel(function()
    r.on_cancel = r.on_cancel + 1
    r.cancelled_in_on_cancel = ctx:cancelled()
  end)
  return r
end

-- Runs fn; when it raises, records the error and the call's state, logs
-- them, and raises the error again.
local function guarded(id, r, ctx, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then
    r.finished = true
    return
  end
  r.err = tostring(err)
  r.is_cancelled = mw.is_cancelled(err)
  r.is_status = mw.is_status(err)
  r.code = type(err) == "table" and err.code or -1
  r.cancelled = ctx:cancelled()
  mw.log.info("wait raised", {call = id, is_cancelled = r.is_cancelled,
                              code = r.code, err = r.err})
  error(err, 0)
end

function S.Unary(req, ctx)
  if req.sleep > 0 then mw.sleep(req.sleep) end
  return {id = req.id, text = req.text, n = #req.data}
end

function S.Probe(req, ctx)
  local r = reports[req.id]
  if not r then return {id = req.id} end
  local info = {}
  for k, v in pairs(r) do info[k] = tostring(v) end
  return {id = req.id, info = info}
end

function S.Stats(req, ctx)
  local s = mw.stats()
  return {n = s.live_calls, value = s.lua_memory}
end

-- Sends one message, then sleeps req.sleep seconds.
function S.SendThenSleep(req, stream, ctx)
  local id = call_id(req, ctx)
  if not id then
    stream:send{n = 1}
    mw.sleep(req.sleep)
    return
  end
  local r = watch(id, ctx)
  guarded(id, r, ctx, function()
    stream:send{id = id, n = 1}
    r.sent = 1
    mw.sleep(req.sleep)
  end)
end

-- Echoes every message.
function S.Chat(stream, ctx)
  local id = call_id(nil, ctx)
  if not id then
    for msg in stream:iter() do stream:send{text = msg.text} end
    return
  end
  local r = watch(id, ctx)
  guarded(id, r, ctx, function()
    for msg in stream:iter() do
      r.received = r.received + 1
      stream:send{id = id, text = msg.text}
      r.sent = r.sent + 1
    end
  end)
end

-- Sums n over the requests.
function S.Collect(stream, ctx)
  local id = call_id(nil, ctx)
  local r = watch(id, ctx)
  local total = 0
  guarded(id, r, ctx, function()
    for msg in stream:iter() do
      r.received = r.received + 1
      total = total + msg.n
    end
  end)
  return {id = id, n = total}
end

-- Tries to send req.n messages of req.size bytes each.
function S.Flood(req, stream, ctx)
  local id = call_id(req, ctx)
  local r = watch(id, ctx)
  local chunk = string.rep("x", req.size)
  guarded(id, r, ctx, function()
    for i = 1, req.n do
      stream:send{data = chunk}
      r.sent = i
    end
  end)
end

function S.Spin(req, ctx)
  while true do end
end

function S.SpinPcall(req, ctx)
  local caught = 0
  while true do
    pcall(function() while true do end end)
    caught = caught + 1
  end
end

-- Allocates 1 MiB strings until memory runs out.
function S.Bomb(req, ctx)
  local t = {}
  while true do
    t[#t + 1] = string.rep(string.char(#t % 256), 1024 * 1024)
  end
end

-- Greets before reading anything, then echoes.
function S.Greet(stream, ctx)
  stream:send{text = "hello"}
  for msg in stream:iter() do stream:send{text = "echo:" .. msg.text} end
  stream:send{text = "bye"}
end

-- Sends req.n messages, then fails with trailers.
function S.PartialFail(req, stream, ctx)
  ctx:set_trailer("x-sent", tostring(req.n))
  ctx:set_trailer("x-detail-bin", "\0\1\2\255")
  for i = 1, req.n do stream:send{n = i} end
  mw.fail(mw.ABORTED, "stopped after " .. req.n)
end

-- Echoes until a message says "stop", then fails with a trailer.
function S.ChatFail(stream, ctx)
  local count = 0
  for msg in stream:iter() do
    if msg.text == "stop" then
      ctx:set_trailer("x-echoed", tostring(count))
      mw.fail("FAILED_PRECONDITION", "told to stop after " .. count)
    end
    count = count + 1
    stream:send{text = msg.text, n = count}
  end
end

return S
"""

MiB = 1024 * 1024
TIMEOUT = 10
# A deadline that passes mid-stream: long enough for the first message to
# arrive first on a loaded machine, short enough to keep the tests quick.
MID_DEADLINE = 0.5 * mwtest.SLOW


def ticks_per_second():
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


def cpu_seconds(pid):
    """utime + stime of the process, in seconds (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / ticks_per_second()


def rss_bytes(pid):
    """VmRSS of the process (/proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


class Requests:
    """A request iterator fed from the test: put() messages, close() to
    half-close. Bounded: it gives up (half-closes) after `wait` seconds."""

    _END = object()

    def __init__(self, *msgs, wait=30):
        self.q = queue.Queue()
        self.wait = wait
        for m in msgs:
            self.q.put(m)

    def put(self, msg):
        self.q.put(msg)

    def close(self):
        self.q.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            item = self.q.get(timeout=self.wait)
        except queue.Empty:
            raise StopIteration
        if item is self._END:
            raise StopIteration
        return item


class Base(mwtest.TestCase):
    CONFIG = "workers: 1\n"

    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"strm.proto": PROTO, "strm.lua": LUA})
        cls.protos = Protos(cls.dir)
        cls.Req = cls.protos.msg("strm.Req")
        cls.server = Server(cls.dir, config=cls.CONFIG).start()
        cls.ch = cls.server.channel()

    @classmethod
    def tearDownClass(cls):
        # after all that, the server still stops cleanly on SIGTERM
        try:
            cls.server._close_channels()
            rc = cls.server.stop()
        finally:
            cls.server.close()
            cls.dir.cleanup()
        problems = [m for m in mwtest.SANITIZER_MARKS if m in cls.server.logs()]
        if rc != 0 or problems:
            raise mwtest.ServerError("moonwire did not stop cleanly (exit %s) %s\nstderr:\n%s"
                                     % (rc, problems, cls.server.logs()))

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.logs())

    def stub(self, kind, method, channel=None):
        return getattr(self.protos, kind)(channel or self.ch, "/strm.Strm/" + method)

    def unary(self, method, timeout=TIMEOUT, **fields):
        return self.stub("unary", method)(self.Req(**fields), timeout=timeout)

    def assertServing(self, text="still serving"):
        self.assertEqual(self.unary("Unary", text=text).text, text)

    def probe(self, id):
        return dict(self.unary("Probe", id=id).info)

    def wait_probe(self, id, pred, timeout=3.0):
        """Polls the report of call `id` until pred(report) holds."""
        deadline = time.monotonic() + timeout * mwtest.SLOW
        while True:
            info = self.probe(id)
            if pred(info) or time.monotonic() > deadline:
                return info
            time.sleep(0.05)

    def live_calls(self):
        return self.unary("Stats").n

    def wait_live_calls(self, want=1, timeout=5.0):
        deadline = time.monotonic() + timeout * mwtest.SLOW
        while True:
            n = self.live_calls()
            if n == want or time.monotonic() > deadline:
                return n
            time.sleep(0.05)


# --------------------------------------------------------------------------

class DeadlinesAndCancels(Base):
    def test_deadline_mid_stream(self):
        start = time.monotonic()
        call = self.stub("server_stream", "SendThenSleep")(
            self.Req(id="deadline-1", sleep=30), timeout=MID_DEADLINE)
        first = next(call)
        self.assertEqual((first.id, first.n), ("deadline-1", 1))
        with self.assertRaises(grpc.RpcError) as cm:
            next(call)
        self.assertStatus(cm, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.monotonic() - start, MID_DEADLINE + 2.5 * mwtest.SLOW)
        # the handler saw it: on_cancel ran once, its sleep raised a
        # cancellation error, ctx:cancelled() turned true
        info = self.wait_probe("deadline-1", lambda i: "err" in i and i["on_cancel"] != "0")
        self.assertEqual(info.get("on_cancel"), "1", info)
        self.assertEqual(info.get("cancelled_in_on_cancel"), "true", info)
        self.assertEqual(info.get("is_cancelled"), "true", info)
        self.assertEqual(info.get("is_status"), "true", info)
        self.assertEqual(info.get("cancelled"), "true", info)
        # DEADLINE_EXCEEDED, or CANCELLED when the client's RST_STREAM wins
        # the race with the server's own deadline (lua-api.md allows both)
        self.assertIn(info.get("code"), ("4", "1"), info)
        self.assertNotIn("finished", info)
        # the sleep of 30 s ended at once, not when it ran out
        self.assertLess(time.monotonic() - start, MID_DEADLINE + 5.5 * mwtest.SLOW)
        self.assertTrue(self.server.wait_log("call=deadline-1"), self.server.logs())
        line = [l for l in self.server.logs().splitlines() if "call=deadline-1" in l][0]
        self.assertIn("is_cancelled=true", line)
        print("\n  the handler's sleep raised code %s" % info.get("code"))
        self.assertServing()
        self.assertEqual(self.wait_live_calls(1), 1)

    def test_client_cancel_mid_stream(self):
        reqs = Requests(self.Req(text="one"))
        call = self.stub("bidi", "Chat")(reqs, metadata=(("x-id", "cancel-1"),),
                                         timeout=TIMEOUT)
        try:
            self.assertEqual(next(call).text, "one")
            self.assertTrue(call.cancel())
            self.assertEqual(call.code(), grpc.StatusCode.CANCELLED)
        finally:
            reqs.close()
        info = self.wait_probe("cancel-1", lambda i: "err" in i and i["on_cancel"] != "0")
        # the wait must raise, not end as if the client had half-closed
        self.assertNotIn("finished", info,
                         "stream:iter() ended normally on a cancelled call: %r" % (info,))
        self.assertEqual(info.get("on_cancel"), "1", info)
        self.assertEqual(info.get("cancelled_in_on_cancel"), "true", info)
        self.assertEqual(info.get("cancelled"), "true", info)
        self.assertEqual(info.get("is_cancelled"), "true", info)
        self.assertEqual(info.get("code"), "1", info)  # CANCELLED: no deadline passed
        self.assertEqual((info.get("received"), info.get("sent")), ("1", "1"), info)
        # the log has the error the wait raised, recognised by mw.is_cancelled
        self.assertTrue(self.server.wait_log("call=cancel-1"), self.server.logs())
        line = [l for l in self.server.logs().splitlines() if "call=cancel-1" in l][0]
        self.assertIn("wait raised", line)
        self.assertIn("is_cancelled=true", line)
        self.assertIn("CANCELLED", line)
        # on_cancel does not run again later
        time.sleep(0.2)
        self.assertEqual(self.probe("cancel-1").get("on_cancel"), "1")
        self.assertServing()
        self.assertEqual(self.wait_live_calls(1), 1)

    def test_deadline_mid_bidi_while_reading(self):
        # the handler waits in stream:iter() when the deadline passes
        reqs = Requests(self.Req(text="one"))
        call = self.stub("bidi", "Chat")(reqs, metadata=(("x-id", "deadline-2"),),
                                         timeout=MID_DEADLINE)
        try:
            self.assertEqual(next(call).text, "one")
            with self.assertRaises(grpc.RpcError) as cm:
                next(call)
            self.assertStatus(cm, grpc.StatusCode.DEADLINE_EXCEEDED)
        finally:
            reqs.close()
        info = self.wait_probe("deadline-2", lambda i: "err" in i and i["on_cancel"] != "0")
        # the wait must raise, not end as if the client had half-closed
        self.assertNotIn("finished", info,
                         "stream:iter() ended normally after the deadline passed: %r" % (info,))
        self.assertEqual(info.get("on_cancel"), "1", info)
        self.assertEqual(info.get("cancelled"), "true", info)
        self.assertEqual(info.get("is_cancelled"), "true", info)
        self.assertIn(info.get("code"), ("4", "1"), info)
        self.assertServing()
        self.assertEqual(self.wait_live_calls(1), 1)

    def test_client_cancel_client_stream(self):
        # the handler waits in stream:iter() of a client-streaming call
        reqs = Requests(self.Req(n=5))
        fut = self.stub("client_stream", "Collect").future(
            reqs, metadata=(("x-id", "cancel-3"),), timeout=TIMEOUT)
        try:
            info = self.wait_probe("cancel-3", lambda i: i.get("received") == "1")
            self.assertEqual(info.get("received"), "1", info)
            self.assertTrue(fut.cancel())
        finally:
            reqs.close()
        self.assertEqual(fut.code(), grpc.StatusCode.CANCELLED)
        info = self.wait_probe("cancel-3", lambda i: "err" in i and i["on_cancel"] != "0")
        # the wait must raise, not end as if the client had half-closed
        self.assertNotIn("finished", info,
                         "stream:iter() ended normally on a cancelled call: %r" % (info,))
        self.assertEqual(info.get("on_cancel"), "1", info)
        self.assertEqual(info.get("cancelled"), "true", info)
        self.assertEqual(info.get("is_cancelled"), "true", info)
        self.assertEqual(info.get("code"), "1", info)
        self.assertServing()
        self.assertEqual(self.wait_live_calls(1), 1)

    def test_cancel_server_stream_before_first_message_read(self):
        call = self.stub("server_stream", "SendThenSleep")(
            self.Req(id="cancel-2", sleep=30), timeout=TIMEOUT)
        info = self.wait_probe("cancel-2", lambda i: i.get("sent") == "1")
        self.assertEqual(info.get("sent"), "1", info)
        call.cancel()
        info = self.wait_probe("cancel-2", lambda i: "err" in i)
        self.assertEqual((info.get("on_cancel"), info.get("is_cancelled"), info.get("code")),
                         ("1", "true", "1"), info)
        self.assertServing()

    def test_sleeping_calls_interleave(self):
        # 100 handlers each sleeping 1 s on one worker take about 1 s together
        unary = self.stub("unary", "Unary")
        start = time.monotonic()
        futures = [unary.future(self.Req(text=str(i), sleep=1.0), timeout=TIMEOUT)
                   for i in range(100)]
        texts = [f.result().text for f in futures]
        took = time.monotonic() - start
        self.assertEqual(texts, [str(i) for i in range(100)])
        self.assertGreaterEqual(took, 0.95)
        limit = 1.0 + 1.5 * mwtest.SLOW
        self.assertLess(took, limit, "100 sleeps of 1 s took %.2f s" % took)
        print("\n  100 x mw.sleep(1) on one worker: %.2f s" % took)

    def test_storm_of_cancelled_and_expired_calls(self):
        # 1,000 calls that never finish normally: unary calls that sleep past
        # their deadline, server-streaming and bidi calls the client cancels
        # (some after the first response, some at once) or whose deadline
        # passes mid-stream. Afterwards no call may be left live.
        channels = [self.server.channel() for _ in range(2)]
        unary = [self.stub("unary", "Unary", ch) for ch in channels]
        sstream = [self.stub("server_stream", "SendThenSleep", ch) for ch in channels]
        bidi = [self.stub("bidi", "Chat", ch) for ch in channels]
        release = threading.Event()

        def held_requests(text):
            yield self.Req(text=text)
            release.wait(30)

        start = time.monotonic()
        unary_futures, streams, chats = [], [], []
        try:
            for i in range(1000):
                ch = i % 2
                kind = i % 5
                if kind in (0, 1):      # 400 unary, deadline 50..250 ms
                    unary_futures.append(unary[ch].future(
                        self.Req(sleep=5.0), timeout=0.05 + (i % 5) * 0.05))
                elif kind == 2:         # 200 server streaming
                    timeout = 0.3 if i % 3 == 0 else TIMEOUT
                    streams.append(sstream[ch](self.Req(sleep=30.0), timeout=timeout))
                else:                   # 400 bidi
                    chats.append(bidi[ch](held_requests(str(i)), timeout=TIMEOUT))
            for n, call in enumerate(streams + chats):
                if n % 2 == 0:
                    try:
                        next(call)   # the first response, then cancel
                    except grpc.RpcError:
                        pass         # (its deadline may have passed already)
                call.cancel()
            bad = []
            for f in unary_futures:
                try:
                    f.result()
                    bad.append("a unary call succeeded")
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                        bad.append("unary: %s %s" % (e.code(), e.details()))
            for call in streams + chats:
                if call.code() not in (grpc.StatusCode.CANCELLED,
                                       grpc.StatusCode.DEADLINE_EXCEEDED):
                    bad.append("stream: %s %s" % (call.code(), call.details()))
            self.assertEqual(bad, [])
        finally:
            release.set()
        storm = time.monotonic() - start
        n = self.wait_live_calls(1, timeout=5.0)
        print("\n  storm of 1000 calls: %.2f s; live_calls after: %d" % (storm, n))
        self.assertEqual(n, 1, "live calls left after the storm (1 is the Stats call)")
        self.assertServing()


# --------------------------------------------------------------------------

class StreamShapes(Base):
    def test_bidi_sends_before_reading(self):
        reqs = Requests()
        call = self.stub("bidi", "Greet")(reqs, timeout=TIMEOUT)
        try:
            # nothing sent yet: the greeting comes first
            self.assertEqual(next(call).text, "hello")
            for word in ("a", "b", "c"):
                reqs.put(self.Req(text=word))
                self.assertEqual(next(call).text, "echo:" + word)
            reqs.close()
            self.assertEqual([m.text for m in call], ["bye"])
            self.assertEqual(call.code(), grpc.StatusCode.OK)
        finally:
            reqs.close()
            call.cancel()

    def test_big_requests_arrive_whole_one_after_another(self):
        # Requests past one HTTP/2 frame (16 KiB) come in several slices and
        # are gathered into one block the worker lends to each message in
        # turn; past 64 KiB each gets its own. Every message differs, so a
        # block that still held an earlier one's bytes would show.
        sizes = [5000, 20000, 100, 40000, 70000, 17000, 65536, 90000, 30000, 1]
        texts = ["%d:" % i + chr(ord("a") + i) * n for i, n in enumerate(sizes)]
        echoed = [m.text for m in self.stub("bidi", "Chat")(
            iter([self.Req(text=t) for t in texts]), timeout=TIMEOUT)]
        self.assertEqual([len(t) for t in echoed], [len(t) for t in texts])
        self.assertEqual(echoed, texts)
        for t in texts:  # the first message of a call, and a unary request
            self.assertEqual(self.unary("Unary", text=t).text, t)
        self.assertServing()

    def test_server_stream_fails_after_partial_output(self):
        for n in (0, 1, 5):
            with self.subTest(n=n):
                call = self.stub("server_stream", "PartialFail")(self.Req(n=n),
                                                                 timeout=TIMEOUT)
                got = []
                with self.assertRaises(grpc.RpcError) as cm:
                    for m in call:
                        got.append(m.n)
                self.assertEqual(got, list(range(1, n + 1)))
                self.assertStatus(cm, grpc.StatusCode.ABORTED, "stopped after %d" % n)
                trailers = dict(call.trailing_metadata())
                self.assertEqual(trailers.get("x-sent"), str(n))
                self.assertEqual(trailers.get("x-detail-bin"), b"\0\1\2\xff")

    def test_bidi_fails_after_partial_output(self):
        reqs = Requests(self.Req(text="a"), self.Req(text="b"), self.Req(text="stop"),
                        self.Req(text="never"))
        call = self.stub("bidi", "ChatFail")(reqs, timeout=TIMEOUT)
        got = []
        try:
            with self.assertRaises(grpc.RpcError) as cm:
                for m in call:
                    got.append((m.text, m.n))
        finally:
            reqs.close()
        self.assertEqual(got, [("a", 1), ("b", 2)])
        self.assertStatus(cm, grpc.StatusCode.FAILED_PRECONDITION, "told to stop after 2")
        self.assertEqual(dict(call.trailing_metadata()).get("x-echoed"), "2")


# --------------------------------------------------------------------------

class Backpressure(Base):
    CONFIG = """
    workers: 1
    limits:
      send_queue_bytes: 1MiB
      send_queue_messages: 64
    """

    def test_unread_flood_is_held_back(self):
        pid = self.server.pid
        # warm up: a short flood read to the end
        got = list(self.stub("server_stream", "Flood")(
            self.Req(id="warmup", n=32, size=64 * 1024), timeout=TIMEOUT))
        self.assertEqual(len(got), 32)
        self.assertServing()
        time.sleep(0.2)
        idle_rss = rss_bytes(pid)

        # 1 GiB in 64 KiB messages to a client that reads nothing. BDP
        # probing off: the client's windows stay fixed, so how much it
        # buffers does not change while the test watches
        ch = self.server.channel(options=[("grpc.http2.bdp_probe", 0)])
        call = self.stub("server_stream", "Flood", ch)(
            self.Req(id="flood", n=16384, size=64 * 1024), timeout=30)
        try:
            info = self.wait_probe("flood", lambda i: int(i.get("sent", "0")) > 0)
            # let the queue and the windows fill: wait until the count has
            # stayed the same for half a second
            last, since = -1, time.monotonic()
            deadline = since + 10 * mwtest.SLOW
            while time.monotonic() < deadline:
                n = int(self.probe("flood")["sent"])
                if n != last:
                    last, since = n, time.monotonic()
                elif time.monotonic() - since >= 0.5:
                    break
                time.sleep(0.05)
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            sent0 = int(self.probe("flood")["sent"])
            peak = rss_bytes(pid)
            while time.monotonic() - t0 < 3.0:
                peak = max(peak, rss_bytes(pid))
                time.sleep(0.1)
            cpu = cpu_seconds(pid) - cpu0
            info = self.probe("flood")
            sent1 = int(info["sent"])
            growth = peak - idle_rss
            print("\n  backpressure: idle RSS %.1f MiB, peak %.1f MiB (+%.1f MiB); "
                  "server CPU over 3 s: %.2f s; messages queued or sent: %d -> %d"
                  % (idle_rss / MiB, peak / MiB, growth / MiB, cpu, sent0, sent1))
            if not mwtest.SANITIZED:  # shadow memory and quarantine blur RSS
                self.assertLess(growth, 100 * MiB)
            self.assertLess(cpu, 0.5, "the suspended handler is not spinning")
            # the handler is held back: a small part of 1 GiB left it, and
            # nothing more while the client read nothing
            self.assertLess(sent1, 1024, info)   # < 64 MiB of 1 GiB
            self.assertEqual(sent0, sent1, info)
            self.assertNotIn("err", info)
            self.assertTrue(self.server.alive())
        finally:
            call.cancel()
        self.assertEqual(call.code(), grpc.StatusCode.CANCELLED)
        info = self.wait_probe("flood", lambda i: "err" in i)
        self.assertEqual((info.get("on_cancel"), info.get("is_cancelled"), info.get("code")),
                         ("1", "true", "1"), info)
        self.assertServing()
        self.assertEqual(self.wait_live_calls(1), 1)

    def test_flood_read_slowly_arrives_whole(self):
        # the same handler, read: every message arrives, in order, complete
        call = self.stub("server_stream", "Flood")(
            self.Req(id="read", n=300, size=64 * 1024), timeout=TIMEOUT)
        count = 0
        for m in call:
            self.assertEqual(len(m.data), 64 * 1024)
            count += 1
            if count == 100:
                time.sleep(0.3)  # a pause: the handler waits, then resumes
        self.assertEqual(count, 300)
        self.assertEqual(self.probe("read").get("finished"), "true")


class TinySendQueue(Base):
    # A handler that fills its queue is woken once the queue has drained to
    # half (mw_call.c, queue_low): with a queue of 1 or 3 messages that is
    # the empty queue or one message in flight. Every message must still
    # arrive, in order, and the call end.
    CONFIG = """
    workers: 1
    limits:
      send_queue_messages: 3
    """

    def test_small_messages_arrive_whole(self):
        for n in (1, 2, 3, 4, 7, 2000):
            with self.subTest(n=n):
                got = [len(m.data) for m in self.stub("server_stream", "Flood")(
                    self.Req(id="tiny%d" % n, n=n, size=16), timeout=TIMEOUT)]
                self.assertEqual(got, [16] * n)


class OneMessageSendQueue(TinySendQueue):
    CONFIG = """
    workers: 1
    limits:
      send_queue_messages: 1
    """


# --------------------------------------------------------------------------

class CpuBudget(Base):
    CONFIG = """
    workers: 1
    limits: {handler_cpu_ms: 300}
    """

    def check_stopped_alone(self, method):
        unary = self.stub("unary", "Unary")
        spin = self.stub("unary", method)
        start = time.monotonic()
        spins = [spin.future(self.Req(), timeout=TIMEOUT) for _ in range(2)]
        others = [unary.future(self.Req(text="other %d" % i, sleep=0.01 * (i % 3)),
                               timeout=TIMEOUT) for i in range(20)]
        for f in spins:
            with self.assertRaises(grpc.RpcError) as cm:
                f.result()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED,
                             cm.exception.details())
        self.assertEqual([f.result().text for f in others],
                         ["other %d" % i for i in range(20)])
        took = time.monotonic() - start
        self.assertLess(took, 5.0)
        self.assertServing()
        return took

    def test_busy_loop_is_stopped(self):
        took = self.check_stopped_alone("Spin")
        print("\n  two busy loops stopped at 300 ms each, 20 calls beside: %.2f s" % took)

    def test_busy_loop_in_pcall_is_stopped(self):
        self.check_stopped_alone("SpinPcall")

    def test_other_calls_sleeping_beside_a_busy_loop(self):
        # calls waiting on the worker when the loop starts finish afterwards
        unary = self.stub("unary", "Unary")
        sleepers = [unary.future(self.Req(text=str(i), sleep=0.2), timeout=TIMEOUT)
                    for i in range(10)]
        time.sleep(0.05)
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary("Spin")
        self.assertStatus(cm, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual([f.result().text for f in sleepers], [str(i) for i in range(10)])
        self.assertEqual(self.wait_live_calls(1), 1)


class BigBudget(Base):
    CONFIG = """
    workers: 1
    limits: {lua_memory_mb: 64, handler_cpu_ms: 20000}
    """

    def test_busy_loop_past_deadline(self):
        start = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary("Spin", timeout=0.5)
        self.assertStatus(cm, grpc.StatusCode.DEADLINE_EXCEEDED)
        # the loop was stopped at the deadline: the one worker answers at
        # once, not after the 20 s budget
        self.assertEqual(self.unary("Unary", text="after", timeout=3.0).text, "after")
        self.assertLess(time.monotonic() - start, 3.0)
        self.assertEqual(self.wait_live_calls(1), 1)

    def test_memory_bomb(self):
        unary = self.stub("unary", "Unary")
        self.assertServing("before")
        base = self.unary("Stats").value
        # calls in flight on the worker when the bomb goes off
        sleepers = [unary.future(self.Req(text="beside %d" % i, data=b"y" * 1000,
                                          sleep=0.3), timeout=TIMEOUT)
                    for i in range(10)]
        time.sleep(0.05)
        for round in range(2):
            with self.subTest(round=round):
                with self.assertRaises(grpc.RpcError) as cm:
                    self.unary("Bomb")
                self.assertStatus(cm, grpc.StatusCode.RESOURCE_EXHAUSTED)
                self.assertServing("after %d" % round)
        self.assertEqual([f.result().text for f in sleepers],
                         ["beside %d" % i for i in range(10)])
        self.assertEqual([f.result().n for f in sleepers], [1000] * 10)
        # the bomb's garbage is collected (lua-api.md: "The garbage of the
        # failed handler is collected and the worker goes on serving"), not
        # left holding the worker at its cap
        deadline = time.monotonic() + 2.0
        after = self.unary("Stats").value
        while after >= base + 16 * MiB and time.monotonic() < deadline:
            time.sleep(0.1)
            after = self.unary("Stats").value
        print("\n  lua_memory: %d before the bombs, %d after" % (base, after))
        self.assertLess(after, base + 16 * MiB, (base, after))
        self.assertEqual(self.wait_live_calls(1), 1)


# --------------------------------------------------------------------------

def h2_frame(ftype, flags=0, stream=0, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, stream) \
        + payload


class H2Conn:
    """A bare HTTP/2 client connection: sends the preface and SETTINGS,
    acknowledges the server's SETTINGS, and reports the frames it reads."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(self.PREFACE + h2_frame(4))
        self.buf = b""
        self.closed = False

    def frames_until(self, deadline, want_type):
        """Reads frames until one of want_type arrives (returns its payload
        and the time) or deadline passes (returns None)."""
        while True:
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                payload = self.buf[9:9 + length]
                self.buf = self.buf[9 + length:]
                if ftype == 4 and not flags & 1:
                    self.sock.sendall(h2_frame(4, flags=1))  # SETTINGS ACK
                if ftype == 6 and not flags & 1:
                    self.sock.sendall(h2_frame(6, flags=1, payload=payload))  # PING ACK
                if ftype == want_type:
                    return payload, time.monotonic()
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:
                self.closed = True
                return None
            if not data:
                self.closed = True
                return None
            self.buf += data

    def close(self):
        self.sock.close()


GOAWAY = 7


class ConnectionSettings(Base):
    CONFIG = """
    workers: 1
    keepalive: {max_connection_idle_ms: 500}
    limits: {max_receive_bytes: 1024}
    """

    def test_idle_connection_gets_goaway(self):
        # this server (idle 500 ms) and one without the setting, side by side
        with Server(self.dir, config="workers: 1\n") as plain:
            start = time.monotonic()
            idle = H2Conn(self.server.port)
            control = H2Conn(plain.port)
            try:
                got = idle.frames_until(start + 3.0, GOAWAY)
                self.assertIsNotNone(got, "no GOAWAY on a connection idle for 3 s")
                payload, at = got
                last_stream, code = struct.unpack(">II", payload[:8])
                # no stream was ever opened; the error code is gRPC core's
                # choice (1.51 sends INTERNAL_ERROR with "enter idle")
                self.assertEqual(last_stream & 0x7fffffff, 0)
                self.assertGreater(at - start, 0.3)
                print("\n  GOAWAY after %.2f s idle (code %d, %r)"
                      % (at - start, code, payload[8:]))
                # then the server closes the connection
                self.assertIsNone(idle.frames_until(time.monotonic() + 2.0, -1))
                self.assertTrue(idle.closed, "the connection stays open after GOAWAY")
                self.assertIsNone(control.frames_until(start + 1.5, GOAWAY),
                                  "GOAWAY from a server without max_connection_idle_ms")
            finally:
                idle.close()
                control.close()

    def test_channel_reconnects_after_idle_goaway(self):
        ch = self.server.channel()
        states = []
        ch.subscribe(states.append, try_to_connect=False)
        unary = self.stub("unary", "Unary", ch)
        self.assertEqual(unary(self.Req(text="1"), timeout=TIMEOUT).text, "1")
        C = grpc.ChannelConnectivity

        def idle_after_ready():
            seen = list(states)
            return C.READY in seen and C.IDLE in seen[seen.index(C.READY) + 1:]

        deadline = time.monotonic() + 3.0
        while not idle_after_ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        ch.unsubscribe(states.append)
        self.assertTrue(idle_after_ready(), states)
        # the next call connects again
        self.assertEqual(unary(self.Req(text="2"), timeout=TIMEOUT).text, "2")

    def test_max_receive_bytes(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.unary("Unary", data=b"z" * 2048)
        self.assertStatus(cm, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(self.unary("Unary", data=b"z" * 512).n, 512)
        # streams too: the oversized message goes once the reply to the
        # first is in (sent together, the reset may overtake that reply)
        reqs = Requests(self.Req(text="ok"))
        call = self.stub("bidi", "Chat")(reqs, timeout=TIMEOUT)
        try:
            self.assertEqual(next(call).text, "ok")
            reqs.put(self.Req(text="x" * 2048))
            with self.assertRaises(grpc.RpcError) as cm:
                next(call)
        finally:
            reqs.close()
        self.assertStatus(cm, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertServing()


if __name__ == "__main__":
    mwtest.main()
