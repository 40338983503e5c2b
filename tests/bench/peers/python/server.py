#!/usr/bin/python3
"""grpc.aio peer for the Moonwire benchmark: bench.Echo with native handlers.

usage: /usr/bin/python3 tests/bench/peers/python/server.py PORT
       (listens on 127.0.0.1:PORT)

Uses Debian's python3-grpcio (1.51) and a dynamic bench.Msg class (see
bench_proto.py); the handlers are registered through a generic handler, so no
generated stubs are needed.

Threads: the handlers run as coroutines on one asyncio loop in the main thread.
gRPC core adds its own threads (in 1.51 grpc.aio's completion-queue poller
thread, plus core's timer/executor threads, mostly idle); no handler thread
pool is used (no migration_thread_pool).
"""

import asyncio
import signal
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from bench_proto import Msg, SERVICE, serialize, deserialize  # noqa: E402


async def unary(request, context):
    return request


async def server_stream(request, context):
    for _ in range(request.n):
        yield request


async def client_stream(request_iterator, context):
    n = 0
    last = b""
    async for msg in request_iterator:
        n += 1
        last = msg.payload
    return Msg(n=n, payload=last)


async def bidi(request_iterator, context):
    async for msg in request_iterator:
        yield msg


def handler():
    kw = dict(request_deserializer=deserialize, response_serializer=serialize)
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, **kw),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, **kw),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, **kw),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, **kw),
    })


async def serve(port):
    addr = "127.0.0.1:%d" % port
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.so_reuseport", 0),
    ])
    server.add_generic_rpc_handlers((handler(),))
    try:
        bound = server.add_insecure_port(addr)
    except RuntimeError:  # grpcio raises where older versions returned 0
        bound = 0
    if bound == 0:
        print("bench-python: cannot listen on %s" % addr, file=sys.stderr)
        sys.exit(1)
    await server.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    print("listening on %s" % addr, flush=True)
    await stop.wait()
    await server.stop(grace=1.0)


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: server.py PORT", file=sys.stderr)
        sys.exit(2)
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
