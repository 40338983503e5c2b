"""bench.Msg as a dynamic protobuf class, from a protoc-built descriptor set.

No generated code and no grpc_tools: protoc (Debian's protobuf-compiler)
compiles tests/bench/proto/bench.proto into a FileDescriptorSet at import time,
or BENCH_PROTO_DESC names one built beforehand
(protoc --include_imports --descriptor_set_out=FILE -I DIR bench.proto).
"""

import os
import subprocess
import tempfile

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
SERVICE = "bench.Echo"


def _descriptor_set():
    path = os.environ.get("BENCH_PROTO_DESC")
    if path:
        with open(path, "rb") as f:
            return f.read()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.desc")
        subprocess.run(
            ["protoc", "--include_imports", "--descriptor_set_out=" + out,
             "-I", PROTO_DIR, "bench.proto"],
            check=True)
        with open(out, "rb") as f:
            return f.read()


def _load():
    fds = descriptor_pb2.FileDescriptorSet.FromString(_descriptor_set())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    desc = pool.FindMessageTypeByName("bench.Msg")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


Msg = _load()


def method(name):
    """Full method path, e.g. /bench.Echo/Unary."""
    return "/%s/%s" % (SERVICE, name)


def serialize(msg):
    return msg.SerializeToString()


def deserialize(data):
    return Msg.FromString(data)
