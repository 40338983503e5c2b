#!/usr/bin/env python3
"""Calls gateway.Gateway/GetProfile with a deadline, or cancels the call.

buf curl cannot set a deadline (grpc-timeout is reserved to it) nor cancel a
call half-way, so this client does both. It needs python3-grpcio,
python3-protobuf and protoc (Debian: python3-grpcio, protobuf-compiler).

usage: client.py [--target HOST:PORT] [--timeout SECONDS] [--cancel-after SECONDS] USER_ID

Prints the profile as JSON and exits 0, or prints CODE: message and exits 1.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

HERE = os.path.dirname(os.path.abspath(__file__))
METHOD = "/gateway.Gateway/GetProfile"


def message_classes():
    """GetProfileRequest and Profile, built from the example's .proto files
    (the same files the servers load)."""
    fd, out = tempfile.mkstemp(suffix=".pb")
    os.close(fd)
    try:
        subprocess.run(["protoc", "-I" + os.path.join(HERE, "front"),
                        "-I" + os.path.join(HERE, "users"), "-I" + os.path.join(HERE, "orders"),
                        "--include_imports", "--descriptor_set_out=" + out, "gateway.proto"],
                       check=True)
        with open(out, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    finally:
        os.unlink(out)
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    factory = message_factory.MessageFactory(pool)
    return [factory.GetPrototype(pool.FindMessageTypeByName(n))
            for n in ("gateway.GetProfileRequest", "gateway.Profile")]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("user_id")
    ap.add_argument("--target", default="127.0.0.1:50051")
    ap.add_argument("--timeout", type=float, default=None,
                    help="the call's deadline, in seconds from now (default: none)")
    ap.add_argument("--cancel-after", type=float, default=None,
                    help="cancel the call after this many seconds")
    args = ap.parse_args()
    Request, Profile = message_classes()
    with grpc.insecure_channel(args.target) as ch:
        get = ch.unary_unary(METHOD, request_serializer=Request.SerializeToString,
                             response_deserializer=Profile.FromString)
        call = get.future(Request(user_id=args.user_id), timeout=args.timeout)
        if args.cancel_after is not None:
            threading.Timer(args.cancel_after, call.cancel).start()
        try:
            profile = call.result()
        except grpc.FutureCancelledError:
            print("CANCELLED: cancelled by this client")
            return 1
        except grpc.RpcError as e:
            print("%s: %s" % (e.code().name, e.details()))
            return 1
    print(json_format.MessageToJson(profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
