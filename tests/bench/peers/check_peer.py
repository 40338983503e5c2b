#!/usr/bin/python3
"""Checks that a bench.Echo server answers all four methods correctly.

usage: /usr/bin/python3 tests/bench/peers/check_peer.py PORT [--host H] [--wait S]

Exit 0 when Unary, ServerStream, ClientStream and Bidi all answer correctly,
1 with a message per failure otherwise (2 for bad usage, 3 when the server
cannot be reached within --wait seconds, default 10).
Uses Debian's python3-grpcio and the dynamic bench.Msg from
peers/python/bench_proto.py (protoc-built descriptor set, no stubs).
"""

import argparse
import os
import queue
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "python"))

import grpc  # noqa: E402
from bench_proto import Msg, method, serialize, deserialize  # noqa: E402

TIMEOUT = 10.0
failures = []


def check(name, cond, detail=""):
    if not cond:
        failures.append("%s: %s" % (name, detail or "wrong answer"))
    return cond


def same(a, b):
    return a.payload == b.payload and a.text == b.text and a.n == b.n


def show(m):
    p = m.payload
    ps = repr(p) if len(p) <= 16 else "<%d bytes>" % len(p)
    return "{payload=%s text=%r n=%d}" % (ps, m.text, m.n)


def rpc(name, fn):
    try:
        fn()
    except grpc.RpcError as e:
        failures.append("%s: RPC failed: %s %s" % (name, e.code(), e.details()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--wait", type=float, default=10.0)
    args = ap.parse_args()

    target = "%s:%d" % (args.host, args.port)
    opts = [("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)]
    ch = grpc.insecure_channel(target, options=opts)
    try:
        grpc.channel_ready_future(ch).result(timeout=args.wait)
    except grpc.FutureTimeoutError:
        print("check_peer: %s not reachable within %gs" % (target, args.wait))
        return 3

    kw = dict(request_serializer=serialize, response_deserializer=deserialize)
    unary = ch.unary_unary(method("Unary"), **kw)
    sstream = ch.unary_stream(method("ServerStream"), **kw)
    cstream = ch.stream_unary(method("ClientStream"), **kw)
    bidi = ch.stream_stream(method("Bidi"), **kw)

    # Unary: the request comes back as it is.
    def t_unary():
        for req in (Msg(payload=b"hello", text="h\u00e9llo", n=7),
                    Msg(),
                    Msg(payload=bytes(range(256)) * 1024, n=-3)):
            resp = unary(req, timeout=TIMEOUT)
            check("Unary", same(resp, req), "sent %s, got %s" % (show(req), show(resp)))

    # ServerStream: the request n times.
    def t_sstream():
        for req in (Msg(payload=b"abc", text="t", n=5),
                    Msg(payload=b"x" * 1000, n=100),
                    Msg(payload=b"zero", n=0)):
            got = list(sstream(req, timeout=TIMEOUT))
            ok = check("ServerStream", len(got) == req.n,
                       "n=%d, got %d messages" % (req.n, len(got)))
            if ok:
                bad = [m for m in got if not same(m, req)]
                check("ServerStream", not bad,
                      "sent %s, got %s" % (show(req), show(bad[0]) if bad else ""))

    # ClientStream: {n = count, payload = last payload}.
    def t_cstream():
        cases = ([Msg(payload=b"one", n=1), Msg(payload=b"two", text="x", n=2),
                  Msg(payload=b"three", n=3)],
                 [Msg(payload=b"y" * 100000)] * 10,
                 [])
        for msgs in cases:
            resp = cstream(iter(msgs), timeout=TIMEOUT)
            want = Msg(n=len(msgs), payload=msgs[-1].payload if msgs else b"")
            check("ClientStream", same(resp, want),
                  "%d messages: want %s, got %s" % (len(msgs), show(want), show(resp)))

    # Bidi: each message echoed as it arrives (the next one is only sent once
    # the previous echo came back, so a server that buffers until the end of
    # the stream would time out).
    def t_bidi():
        msgs = [Msg(payload=b"m%d" % i, text="t%d" % i, n=i) for i in range(5)]
        msgs.append(Msg(payload=b"z" * 70000, n=99))
        q = queue.Queue()

        def reqs():
            while True:
                m = q.get()
                if m is None:
                    return
                yield m

        q.put(msgs[0])
        it = bidi(reqs(), timeout=TIMEOUT)
        for i, m in enumerate(msgs):
            resp = next(it)
            if not check("Bidi", same(resp, m),
                         "message %d: sent %s, got %s" % (i, show(m), show(resp))):
                break
            q.put(msgs[i + 1] if i + 1 < len(msgs) else None)
        else:
            rest = list(it)
            check("Bidi", not rest, "%d extra messages after the end" % len(rest))
        q.put(None)

    rpc("Unary", t_unary)
    rpc("ServerStream", t_sstream)
    rpc("ClientStream", t_cstream)
    rpc("Bidi", t_bidi)
    ch.close()

    if failures:
        for f in failures:
            print("check_peer: FAIL %s" % f)
        return 1
    print("check_peer: %s ok (Unary, ServerStream, ClientStream, Bidi)" % target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
