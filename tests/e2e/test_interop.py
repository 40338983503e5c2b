"""gRPC's interop test cases against `moonwire serve examples/interop`.

Each test method is one case of gRPC's interop-test-descriptions document
(doc/interop-test-descriptions.md in the grpc repository), run by a Python
client against grpc.testing.TestService as examples/interop implements it,
with the protos of Debian's grpc-proto package."""
import queue
import threading

import grpc

import mwtest
from mwtest import Protos, Server, example

INTEROP = example("interop")
GRPC_PROTO = "/usr/share/grpc-proto"
TS = "/grpc.testing.TestService/"

REQUEST_SIZES = [27182, 8, 1828, 45904]
RESPONSE_SIZES = [31415, 9, 2653, 58979]
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
INITIAL_KEY, INITIAL_VALUE = "x-grpc-test-echo-initial", "test_initial_metadata_value"
TRAILING_KEY, TRAILING_VALUE = "x-grpc-test-echo-trailing-bin", b"\xab\xab\xab"

TIMEOUT = 10


class Requests:
    """A request iterator fed from the test thread: put() a message, close()
    to half-close. Lets a test wait for a response before sending the next
    request (ping_pong) or hold the stream open (cancel cases)."""

    _END = object()

    def __init__(self):
        self.q = queue.Queue()

    def put(self, msg):
        self.q.put(msg)

    def close(self):
        self.q.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        # bounded: a test that forgets to close() does not hang forever
        item = self.q.get(timeout=30)
        if item is self._END:
            raise StopIteration
        return item


def metadata_dict(md):
    return {k: v for k, v in (md or ())}


class Interop(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.protos = Protos(files=[GRPC_PROTO + "/grpc/testing/test.proto"],
                            includes=[GRPC_PROTO])
        m = cls.protos.msg
        cls.Empty = m("grpc.testing.Empty")
        cls.SimpleRequest = m("grpc.testing.SimpleRequest")
        cls.StreamingInputCallRequest = m("grpc.testing.StreamingInputCallRequest")
        cls.StreamingOutputCallRequest = m("grpc.testing.StreamingOutputCallRequest")
        cls.ResponseParameters = m("grpc.testing.ResponseParameters")
        cls.Payload = m("grpc.testing.Payload")
        cls.EchoStatus = m("grpc.testing.EchoStatus")
        cls.server, cls.ch = cls.serve()

    @classmethod
    def serve(cls):
        """The server under test and a channel to it (test_tls.py runs
        these cases over TLS by replacing this)."""
        server = Server(INTEROP).start()
        return server, server.channel()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def tearDown(self):
        # every case leaves the server serving
        self.assertTrue(self.server.alive(), self.server.logs())

    def stub(self, kind, method, service=TS):
        return getattr(self.protos, kind)(self.ch, service + method)

    def payload(self, size):
        return self.Payload(body=b"\0" * size)

    def assertZeros(self, payload, size):
        self.assertEqual(len(payload.body), size)
        self.assertEqual(payload.body, b"\0" * size)
        self.assertEqual(payload.type, 0)  # COMPRESSABLE

    def assertServing(self):
        r = self.stub("unary", "EmptyCall")(self.Empty(), timeout=TIMEOUT)
        self.assertEqual(r, self.Empty())

    # -- the cases --

    def test_empty_unary(self):
        r = self.stub("unary", "EmptyCall")(self.Empty(), timeout=TIMEOUT)
        self.assertIsInstance(r, self.Empty)
        self.assertEqual(r.SerializeToString(), b"")

    def test_large_unary(self):
        req = self.SimpleRequest(response_type=0, response_size=314159,
                                 payload=self.payload(271828))
        r = self.stub("unary", "UnaryCall")(req, timeout=TIMEOUT)
        self.assertZeros(r.payload, 314159)

    def test_client_streaming(self):
        reqs = [self.StreamingInputCallRequest(payload=self.payload(n))
                for n in REQUEST_SIZES]
        r = self.stub("client_stream", "StreamingInputCall")(iter(reqs), timeout=TIMEOUT)
        self.assertEqual(r.aggregated_payload_size, 74922)

    def test_server_streaming(self):
        req = self.StreamingOutputCallRequest(
            response_type=0,
            response_parameters=[self.ResponseParameters(size=n) for n in RESPONSE_SIZES])
        call = self.stub("server_stream", "StreamingOutputCall")(req, timeout=TIMEOUT)
        got = list(call)
        self.assertEqual([len(r.payload.body) for r in got], RESPONSE_SIZES)
        for r, n in zip(got, RESPONSE_SIZES):
            self.assertZeros(r.payload, n)
        self.assertEqual(call.code(), grpc.StatusCode.OK)

    def test_ping_pong(self):
        reqs = Requests()
        call = self.stub("bidi", "FullDuplexCall")(reqs, timeout=TIMEOUT)
        try:
            for out, inp in zip(RESPONSE_SIZES, REQUEST_SIZES):
                reqs.put(self.StreamingOutputCallRequest(
                    response_type=0,
                    response_parameters=[self.ResponseParameters(size=out)],
                    payload=self.payload(inp)))
                r = next(call)  # the response to this request, before the next one
                self.assertZeros(r.payload, out)
            reqs.close()
            self.assertEqual(list(call), [])
            self.assertEqual(call.code(), grpc.StatusCode.OK)
        finally:
            call.cancel()

    def test_empty_stream(self):
        call = self.stub("bidi", "FullDuplexCall")(iter([]), timeout=TIMEOUT)
        self.assertEqual(list(call), [])
        self.assertEqual(call.code(), grpc.StatusCode.OK)

    def test_timeout_on_sleeping_server(self):
        reqs = Requests()
        reqs.put(self.StreamingOutputCallRequest(payload=self.payload(27182)))
        call = self.stub("bidi", "FullDuplexCall")(reqs, timeout=0.001)
        try:
            with self.assertRaises(grpc.RpcError) as cm:
                list(call)
            self.assertStatus(cm, grpc.StatusCode.DEADLINE_EXCEEDED)
        finally:
            reqs.close()
        self.assertServing()

    def test_cancel_after_begin(self):
        reqs = Requests()  # nothing is ever sent
        fut = self.stub("client_stream", "StreamingInputCall").future(reqs, timeout=TIMEOUT)
        self.assertTrue(fut.cancel())
        reqs.close()
        self.assertEqual(fut.code(), grpc.StatusCode.CANCELLED)
        with self.assertRaises(grpc.FutureCancelledError):
            fut.result()
        self.assertServing()

    def test_cancel_after_first_response(self):
        reqs = Requests()
        call = self.stub("bidi", "FullDuplexCall")(reqs, timeout=TIMEOUT)
        reqs.put(self.StreamingOutputCallRequest(
            response_type=0, response_parameters=[self.ResponseParameters(size=31415)],
            payload=self.payload(27182)))
        r = next(call)
        self.assertZeros(r.payload, 31415)
        self.assertTrue(call.cancel())
        reqs.close()
        self.assertEqual(call.code(), grpc.StatusCode.CANCELLED)
        self.assertServing()

    def test_status_code_and_message(self):
        status = self.EchoStatus(code=2, message="test status message")
        with self.subTest(kind="unary"):
            with self.assertRaises(grpc.RpcError) as cm:
                self.stub("unary", "UnaryCall")(
                    self.SimpleRequest(response_status=status), timeout=TIMEOUT)
            self.assertStatus(cm, grpc.StatusCode.UNKNOWN, "test status message")
        with self.subTest(kind="full duplex"):
            call = self.stub("bidi", "FullDuplexCall")(
                iter([self.StreamingOutputCallRequest(response_status=status)]),
                timeout=TIMEOUT)
            with self.assertRaises(grpc.RpcError) as cm:
                list(call)
            self.assertStatus(cm, grpc.StatusCode.UNKNOWN, "test status message")

    def test_special_status_message(self):
        status = self.EchoStatus(code=2, message=SPECIAL_MESSAGE)
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub("unary", "UnaryCall")(self.SimpleRequest(response_status=status),
                                            timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.UNKNOWN, SPECIAL_MESSAGE)

    def test_custom_metadata(self):
        md = ((INITIAL_KEY, INITIAL_VALUE), (TRAILING_KEY, TRAILING_VALUE))
        with self.subTest(kind="unary"):
            req = self.SimpleRequest(response_type=0, response_size=314159,
                                     payload=self.payload(271828))
            r, call = self.stub("unary", "UnaryCall").with_call(req, metadata=md,
                                                                timeout=TIMEOUT)
            self.assertZeros(r.payload, 314159)
            self.assertEqual(metadata_dict(call.initial_metadata()).get(INITIAL_KEY),
                             INITIAL_VALUE)
            self.assertEqual(metadata_dict(call.trailing_metadata()).get(TRAILING_KEY),
                             TRAILING_VALUE)
        with self.subTest(kind="full duplex"):
            req = self.StreamingOutputCallRequest(
                response_type=0, response_parameters=[self.ResponseParameters(size=314159)],
                payload=self.payload(271828))
            call = self.stub("bidi", "FullDuplexCall")(iter([req]), metadata=md,
                                                       timeout=TIMEOUT)
            got = list(call)
            self.assertEqual(len(got), 1)
            self.assertZeros(got[0].payload, 314159)
            self.assertEqual(metadata_dict(call.initial_metadata()).get(INITIAL_KEY),
                             INITIAL_VALUE)
            self.assertEqual(metadata_dict(call.trailing_metadata()).get(TRAILING_KEY),
                             TRAILING_VALUE)
            self.assertEqual(call.code(), grpc.StatusCode.OK)

    def test_unimplemented_method(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub("unary", "UnimplementedCall")(self.Empty(), timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.UNIMPLEMENTED)

    def test_unimplemented_service(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.stub("unary", "UnimplementedCall",
                      service="/grpc.testing.UnimplementedService/")(self.Empty(),
                                                                     timeout=TIMEOUT)
        self.assertStatus(cm, grpc.StatusCode.UNIMPLEMENTED)


if __name__ == "__main__":
    mwtest.main()
