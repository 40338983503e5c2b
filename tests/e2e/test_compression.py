"""Compressed messages: gzip and deflate requests for every kind of call,
compression bombs stopped at limits.max_receive_bytes with the server's
memory bounded, corrupt data refused, and responses compressed only when the
config asks and the client accepts (per method too).

grpcio compresses and inflates out of sight, so what the wire carries (a
bomb built once, the response's grpc-encoding and each message's
compressed flag) goes through h2call, a raw HTTP/2 client."""
import gzip
import os
import time
import unittest
import zlib

import grpc

import h2call
import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package cz;

message Req {
  bytes data = 1;
  int32 size = 2;
}
message Resp {
  bytes data = 1;
  int64 total = 2;
  int32 count = 3;
}

service Cz {
  rpc Echo(Req) returns (Resp);
  rpc Plain(Req) returns (Resp);
  rpc Deflated(Req) returns (Resp);
  rpc Collect(stream Req) returns (Resp);
  rpc Chat(stream Req) returns (stream Resp);
}
"""

LUA = r"""
local mw = require "moonwire"
local S = mw.service "cz.Cz"

-- size > 0 asks for a reply of that many bytes (it compresses well)
local function reply(req)
  local data = req.size > 0 and string.rep("a", req.size) or req.data
  return {data = data, total = #req.data}
end

function S.Echo(req) return reply(req) end
function S.Plain(req) return reply(req) end
function S.Deflated(req) return reply(req) end

function S.Collect(stream)
  local total, count = 0, 0
  for msg in stream:iter() do
    total = total + #msg.data
    count = count + 1
  end
  return {total = total, count = count}
end

function S.Chat(stream)
  for msg in stream:iter() do stream:send(reply(msg)) end
end
"""

MAX_RECEIVE = 4 << 20

CONFIG = """
workers: 1
limits:
  max_receive_bytes: 4MiB
compression:
  algorithm: gzip
  min_bytes: 1024
  methods:
    /cz.Cz/Plain: {algorithm: none}
    /cz.Cz/Deflated: {algorithm: deflate, min_bytes: 0}
"""

OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED = 0, 3, 8


def proc_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


def reset_peak(pid):
    """Resets the process's VmHWM to its VmRSS (Linux 4.0+), so that the
    peak read afterwards is this test's alone."""
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")


def gzip_bomb(prefix, gib=1):
    """prefix, then gib GiB of zeros, gzipped (about 1 MB per GiB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(prefix)]
    zeros = bytes(1 << 20)
    for _ in range(gib << 10):
        out.append(c.compress(zeros))
    out.append(c.flush())
    return b"".join(out)


class Base(mwtest.TestCase):
    CONFIG = CONFIG

    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"cz.proto": PROTO, "cz.lua": LUA})
        cls.protos = Protos(cls.dir)
        cls.Req = cls.protos.msg("cz.Req")
        cls.Resp = cls.protos.msg("cz.Resp")
        cls.server = Server(cls.dir, config=cls.CONFIG).start()
        cls.ch = cls.server.channel()

    @classmethod
    def tearDownClass(cls):
        try:
            # A clean stop (exit 0, nothing from the sanitizers) after all that.
            cls.server.__exit__(None, None, None)
        finally:
            cls.dir.cleanup()

    def raw(self, path, *msgs, headers=()):
        """msgs: (compressed_flag, payload) or Req; returns h2call's Result."""
        body = b""
        for m in msgs:
            if isinstance(m, tuple):
                body += h2call.message(m[1], compressed=m[0])
            else:
                body += h2call.message(m.SerializeToString())
        return h2call.call(self.server.port, path, body, headers=list(headers),
                           timeout=30 * mwtest.SLOW)

    def echo_ok(self):
        """The server still serves: a compressed call round-trips."""
        r = self.protos.unary(self.ch, "/cz.Cz/Echo")(
            self.Req(data=b"still here" * 100), compression=grpc.Compression.Gzip,
            timeout=10 * mwtest.SLOW)
        self.assertEqual(r.total, 1000)


class TestRequests(Base):
    def test_unary_gzip_and_deflate_per_call(self):
        echo = self.protos.unary(self.ch, "/cz.Cz/Echo")
        data = bytes(range(256)) * 400
        for comp in (grpc.Compression.Gzip, grpc.Compression.Deflate,
                     grpc.Compression.NoCompression):
            r = echo(self.Req(data=data), compression=comp, timeout=10)
            self.assertEqual(r.total, len(data), comp)
            self.assertEqual(r.data, data, comp)

    def test_unary_compressed_channel(self):
        for comp in (grpc.Compression.Gzip, grpc.Compression.Deflate):
            with grpc.insecure_channel(self.server.target(), compression=comp) as ch:
                r = self.protos.unary(ch, "/cz.Cz/Echo")(self.Req(data=b"x" * 5000), timeout=10)
                self.assertEqual(r.total, 5000)

    def test_client_streaming(self):
        msgs = [self.Req(data=bytes([i]) * (10000 * (i + 1))) for i in range(5)]
        for comp in (grpc.Compression.Gzip, grpc.Compression.Deflate):
            r = self.protos.client_stream(self.ch, "/cz.Cz/Collect")(
                iter(msgs), compression=comp, timeout=10)
            self.assertEqual((r.total, r.count), (150000, 5))
        with grpc.insecure_channel(self.server.target(),
                                   compression=grpc.Compression.Gzip) as ch:
            r = self.protos.client_stream(ch, "/cz.Cz/Collect")(iter(msgs), timeout=10)
            self.assertEqual((r.total, r.count), (150000, 5))

    def test_bidi_streaming(self):
        msgs = [self.Req(data=b"m%d" % i * 3000) for i in range(4)]
        for comp in (grpc.Compression.Gzip, grpc.Compression.Deflate):
            out = list(self.protos.bidi(self.ch, "/cz.Cz/Chat")(
                iter(msgs), compression=comp, timeout=10))
            self.assertEqual([m.data for m in out], [m.data for m in msgs])

    def test_first_message_read_with_the_call(self):
        # Unary calls arrive with their request already read by core: that
        # message is inflated too, and so is one a stream sends first.
        req = self.Req(data=b"first" * 1000).SerializeToString()
        r = self.raw("/cz.Cz/Echo", (1, gzip.compress(req)),
                     headers=[("grpc-encoding", "gzip")])
        self.assertEqual(r.status, OK, r.message)
        r = self.raw("/cz.Cz/Collect", (1, zlib.compress(req)), (0, req),
                     headers=[("grpc-encoding", "deflate")])
        self.assertEqual(r.status, OK, r.message)
        resp = self.Resp.FromString(r.messages[0][1])
        self.assertEqual((resp.total, resp.count), (10000, 2))

    def test_bomb_refused_with_memory_bounded(self):
        # A bytes field announcing 1 GiB, then 1 GiB of zeros: 1 MB gzipped.
        bomb = gzip_bomb(b"\x0a\x80\x80\x80\x80\x04")
        self.assertLess(len(bomb), 1100000)
        pid = self.server.pid
        self.echo_ok()
        reset_peak(pid)
        hwm0, rss0 = proc_kb(pid, "VmHWM"), proc_kb(pid, "VmRSS")
        t0 = time.monotonic()
        r = self.raw("/cz.Cz/Echo", (1, bomb), headers=[("grpc-encoding", "gzip")])
        took = time.monotonic() - t0
        hwm1, rss1 = proc_kb(pid, "VmHWM"), proc_kb(pid, "VmRSS")
        self.assertEqual(r.status, RESOURCE_EXHAUSTED, r.message)
        self.assertIn("larger than max (%d)" % MAX_RECEIVE, r.message)
        self.assertEqual(r.sent, len(bomb) + 5)  # it all arrived, and was refused
        print("\nbomb: %d bytes on the wire; VmHWM %d -> %d kB, VmRSS %d -> %d kB; %.3f s"
              % (len(bomb), hwm0, hwm1, rss0, rss1, took))
        # What the message costs: the wire bytes, the limit's worth of
        # inflated output and its growth, sanitizer overheads aside.
        bound = (3 if not mwtest.SANITIZED else 8) * MAX_RECEIVE
        self.assertLess((hwm1 - hwm0) * 1024, bound)
        self.assertLess(took, 10 * mwtest.SLOW)
        self.echo_ok()

    def test_bomb_in_a_stream(self):
        bomb = gzip_bomb(b"\x0a\x80\x80\x80\x80\x04")
        ok = self.Req(data=b"fine" * 100).SerializeToString()
        pid = self.server.pid
        reset_peak(pid)
        hwm0 = proc_kb(pid, "VmHWM")
        for path in ("/cz.Cz/Collect", "/cz.Cz/Chat"):
            r = self.raw(path, (1, gzip.compress(ok)), (1, bomb),
                         headers=[("grpc-encoding", "gzip")])
            self.assertEqual(r.status, RESOURCE_EXHAUSTED, (path, r.message))
            self.assertIn("larger than max", r.message)
        bound = (3 if not mwtest.SANITIZED else 8) * MAX_RECEIVE
        self.assertLess((proc_kb(pid, "VmHWM") - hwm0) * 1024, bound)
        self.echo_ok()

    def test_exactly_the_limit_is_served(self):
        # 4 MiB once inflated, field header included: allowed; one more
        # byte is not.
        def of_size(n):
            head, v = b"\x0a", n
            while True:
                head += bytes([(v & 0x7f) | (0x80 if v > 0x7f else 0)])
                v >>= 7
                if not v:
                    return head + bytes(n)

        n = MAX_RECEIVE - 5  # a 4-byte length and the tag
        r = self.raw("/cz.Cz/Collect", (1, gzip.compress(of_size(n))),
                     headers=[("grpc-encoding", "gzip")])
        self.assertEqual(r.status, OK, r.message)
        self.assertEqual(self.Resp.FromString(r.messages[0][1]).total, n)
        r = self.raw("/cz.Cz/Collect", (1, gzip.compress(of_size(n + 1))),
                     headers=[("grpc-encoding", "gzip")])
        self.assertEqual(r.status, RESOURCE_EXHAUSTED, r.message)

    def test_corrupt_data(self):
        good = self.Req(data=b"ok").SerializeToString()
        z = gzip.compress(good)
        cases = [
            ("/cz.Cz/Echo", "gzip", [(1, b"definitely not gzip")]),
            ("/cz.Cz/Echo", "gzip", [(1, z[:-3])]),           # cut short
            ("/cz.Cz/Echo", "gzip", [(1, z + b"tail")]),      # bytes after the end
            ("/cz.Cz/Echo", "deflate", [(1, z)]),             # gzip is not deflate
            ("/cz.Cz/Collect", "gzip", [(1, z), (1, b"\x1f\x8b broken")]),
            ("/cz.Cz/Chat", "deflate", [(1, zlib.compress(good)), (1, b"xx")]),
        ]
        for path, enc, msgs in cases:
            r = self.raw(path, *msgs, headers=[("grpc-encoding", enc)])
            self.assertEqual(r.status, INVALID_ARGUMENT, (path, enc, r.message))
            self.assertIn("not valid %s data" % enc, r.message)
        self.echo_ok()


class TestResponses(Base):
    def echo_raw(self, path, size, accept, msgs=None):
        headers = [] if accept is None else [("grpc-accept-encoding", accept)]
        return self.raw(path, *(msgs or [self.Req(size=size)]), headers=headers)

    def check_compressed(self, r, encoding, size):
        self.assertEqual(r.status, OK, r.message)
        self.assertEqual(r.headers.get("grpc-encoding"), encoding)
        flag, payload = r.messages[0]
        self.assertEqual(flag, 1)
        self.assertLess(len(payload), size // 4)
        raw = gzip.decompress(payload) if encoding == "gzip" else zlib.decompress(payload)
        self.assertEqual(self.Resp.FromString(raw).data, b"a" * size)

    def check_plain(self, r, size):
        self.assertEqual(r.status, OK, r.message)
        self.assertEqual([m[0] for m in r.messages], [0])
        self.assertEqual(self.Resp.FromString(r.messages[0][1]).data, b"a" * size)

    def test_compressed_when_accepted(self):
        self.check_compressed(self.echo_raw("/cz.Cz/Echo", 4000, "identity, deflate, gzip"),
                              "gzip", 4000)
        self.check_compressed(self.echo_raw("/cz.Cz/Echo", 4000, "gzip"), "gzip", 4000)

    def test_not_when_the_client_does_not_accept(self):
        for accept in ("identity", None):
            r = self.echo_raw("/cz.Cz/Echo", 4000, accept)
            self.check_plain(r, 4000)
            self.assertIn(r.headers.get("grpc-encoding", "identity"), ("identity",))

    def test_smaller_than_min_bytes_goes_uncompressed(self):
        self.check_plain(self.echo_raw("/cz.Cz/Echo", 500, "gzip"), 500)

    def test_per_method(self):
        # Plain: algorithm none.
        r = self.echo_raw("/cz.Cz/Plain", 4000, "identity, deflate, gzip")
        self.check_plain(r, 4000)
        self.assertEqual(r.headers.get("grpc-encoding", "identity"), "identity")
        # Deflated: deflate from the first byte (min_bytes 0) ...
        self.check_compressed(self.echo_raw("/cz.Cz/Deflated", 4000, "identity, deflate, gzip"),
                              "deflate", 4000)
        r = self.echo_raw("/cz.Cz/Deflated", 20, "deflate")
        self.assertEqual(r.headers.get("grpc-encoding"), "deflate")
        # ... and gzip for a client that accepts only that (core picks
        # among what the client accepts, see docs/config.md).
        self.check_compressed(self.echo_raw("/cz.Cz/Deflated", 4000, "gzip"), "gzip", 4000)

    def test_streamed_responses_each_by_size(self):
        r = self.raw("/cz.Cz/Chat", self.Req(size=4000), self.Req(size=10),
                     self.Req(size=3000), headers=[("grpc-accept-encoding", "gzip")])
        self.assertEqual(r.status, OK, r.message)
        self.assertEqual(r.headers.get("grpc-encoding"), "gzip")
        self.assertEqual([m[0] for m in r.messages], [1, 0, 1])

    def test_grpcio_reads_them(self):
        r = self.protos.unary(self.ch, "/cz.Cz/Echo")(self.Req(size=200000), timeout=10)
        self.assertEqual(r.data, b"a" * 200000)
        out = list(self.protos.bidi(self.ch, "/cz.Cz/Chat")(
            iter([self.Req(size=5000), self.Req(size=5)]),
            compression=grpc.Compression.Deflate, timeout=10))
        self.assertEqual([len(m.data) for m in out], [5000, 5])


class TestResponsesUnconfigured(Base):
    CONFIG = "workers: 1\n"

    def test_never_compressed(self):
        r = self.raw("/cz.Cz/Echo", self.Req(size=4000),
                     headers=[("grpc-accept-encoding", "identity, deflate, gzip")])
        self.assertEqual(r.status, OK, r.message)
        self.assertEqual([m[0] for m in r.messages], [0])
        self.assertEqual(r.headers.get("grpc-encoding", "identity"), "identity")
        # Requests are inflated whatever the config says.
        self.echo_ok()


if __name__ == "__main__":
    mwtest.main()
