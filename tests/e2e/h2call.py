"""One gRPC call over a raw HTTP/2 connection (Debian's python3-hyperframe
and python3-hpack), for what grpcio hides: sending bytes already compressed
(a compression bomb costs the test nothing to build twice), choosing
grpc-accept-encoding, and reading the response's grpc-encoding header and
each message's compressed flag. Obeys HTTP/2 flow control, so a large
message really arrives (a sender that ignores it stalls at 64 KiB).

    r = h2call.call(port, "/pkg.Svc/M", [h2call.message(b"...", compressed=False)],
                    headers=[("grpc-encoding", "gzip")])
    r.headers, r.messages ([(compressed_flag, payload)]), r.trailers, r.status
"""

import socket
import struct
import time

from hpack import Decoder, Encoder
from hyperframe.frame import (DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

# What this client lets the server send before it reads: enough for every
# response of the tests, so it never has to return window.
RECV_WINDOW = (1 << 31) - 1


def message(payload, compressed=False):
    """A gRPC length-prefixed message."""
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(payload)) + payload


class Result:
    def __init__(self):
        self.headers = {}
        self.trailers = {}
        self.data = b""
        self.reset = None  # RST_STREAM error code
        self.sent = 0      # request bytes the server took before it answered

    @property
    def status(self):
        s = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return int(s) if s is not None else None

    @property
    def message(self):
        return self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))

    @property
    def messages(self):
        out, d = [], self.data
        while len(d) >= 5:
            n = struct.unpack(">I", d[1:5])[0]
            out.append((d[0], d[5:5 + n]))
            d = d[5 + n:]
        return out


def call(port, path, body, headers=(), timeout=30.0, authority="localhost"):
    """Sends the messages in body (bytes, already framed) on one stream and
    returns the Result once the stream ends (or timeout passes)."""
    enc, dec = Encoder(), Decoder()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                  + SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: RECV_WINDOW}).serialize()
                  + WindowUpdateFrame(0, window_increment=RECV_WINDOW - 65535).serialize())
        h = [(":method", "POST"), (":scheme", "http"), (":path", path),
             (":authority", authority), ("content-type", "application/grpc"),
             ("te", "trailers")] + list(headers)
        s.sendall(HeadersFrame(1, data=enc.encode(h), flags=["END_HEADERS"]).serialize())
        st = {"conn": 65535, "stream": 65535, "initial": 65535, "max_frame": 16384,
              "done": False}
        r = Result()
        buf = bytearray()
        deadline = time.monotonic() + timeout

        def on_frame(f):
            if isinstance(f, SettingsFrame):
                if "ACK" in f.flags:
                    return
                if SettingsFrame.INITIAL_WINDOW_SIZE in f.settings:
                    new = f.settings[SettingsFrame.INITIAL_WINDOW_SIZE]
                    st["stream"] += new - st["initial"]
                    st["initial"] = new
                if SettingsFrame.MAX_FRAME_SIZE in f.settings:
                    st["max_frame"] = f.settings[SettingsFrame.MAX_FRAME_SIZE]
                s.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
            elif isinstance(f, PingFrame):
                if "ACK" not in f.flags:
                    s.sendall(PingFrame(0, opaque_data=f.opaque_data, flags=["ACK"]).serialize())
            elif isinstance(f, WindowUpdateFrame):
                if f.stream_id == 0:
                    st["conn"] += f.window_increment
                elif f.stream_id == 1:
                    st["stream"] += f.window_increment
            elif isinstance(f, HeadersFrame) and f.stream_id == 1:
                fields = {k if isinstance(k, str) else k.decode(): v if isinstance(v, str) else v.decode()
                          for k, v in dec.decode(bytes(f.data))}
                (r.trailers if r.headers else r.headers).update(fields)
                if "END_STREAM" in f.flags:
                    st["done"] = True
            elif isinstance(f, DataFrame) and f.stream_id == 1:
                r.data += bytes(f.data)
                if "END_STREAM" in f.flags:
                    st["done"] = True
            elif isinstance(f, RstStreamFrame) and f.stream_id == 1:
                r.reset = f.error_code
                st["done"] = True
            elif isinstance(f, GoAwayFrame):
                st["done"] = True

        def pump(block):
            """Reads what has arrived (waits for something when block)."""
            s.settimeout(max(0.01, deadline - time.monotonic()) if block else 0.0)
            try:
                chunk = s.recv(1 << 20)
            except (BlockingIOError, socket.timeout):
                return
            finally:
                s.settimeout(timeout)
            if not chunk:
                st["done"] = True
                return
            buf.extend(chunk)
            while len(buf) >= 9:
                f, n = Frame.parse_frame_header(memoryview(bytes(buf[:9])))
                if len(buf) < 9 + n:
                    break
                f.parse_body(memoryview(bytes(buf[9:9 + n])))
                del buf[:9 + n]
                on_frame(f)

        off = 0
        while off < len(body) and not st["done"] and time.monotonic() < deadline:
            room = min(st["conn"], st["stream"], st["max_frame"], len(body) - off)
            if room <= 0:
                pump(True)
                continue
            last = off + room == len(body)
            s.sendall(DataFrame(1, data=body[off:off + room],
                                flags=["END_STREAM"] if last else []).serialize())
            off += room
            st["conn"] -= room
            st["stream"] -= room
            pump(False)
        if not body and not st["done"]:
            s.sendall(DataFrame(1, data=b"", flags=["END_STREAM"]).serialize())
        r.sent = off
        while not st["done"] and time.monotonic() < deadline:
            pump(True)
        return r
    finally:
        s.close()
