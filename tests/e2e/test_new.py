"""moonwire new: the directory it writes passes `moonwire check` and serves
at once, a starter one and one from a user's .proto (with an import beside
it), every RPC kind answered by the skeleton's handlers; bad input writes
nothing."""
import os
import tempfile
import unittest

import grpc

import mwtest
from mwtest import Protos, Server, run_cli

ROUTE_GUIDE = os.path.join(mwtest.SOURCE_DIR, "examples", "routeguide", "route_guide.proto")


class NewTest(mwtest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def path(self, *parts):
        return os.path.join(self.tmp.name, *parts)

    def test_starter_serves_at_once(self):
        d = self.path("my-shop")
        r = run_cli("new", d)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(os.listdir(d)), ["moonwire.yaml", "my_shop.lua", "my_shop.proto",
                                                   "my_shop_spec.lua"])
        self.assertIn("moonwire serve " + d, r.stdout)
        c = run_cli("check", d)
        self.assertEqual(c.returncode, 0, c.stderr)
        self.assertIn("2 methods, 2 with handlers", c.stdout)
        protos = Protos(d)
        with Server(d) as s:
            ch = s.channel()
            hello = protos.unary(ch, "/my_shop.MyShop/Hello")
            self.assertEqual(hello(protos.msg("my_shop.HelloRequest")(name="Ada"), timeout=5).message,
                             "Hello, Ada")
            with self.assertRaises(grpc.RpcError) as cm:
                hello(protos.msg("my_shop.HelloRequest")(), timeout=5)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            count = protos.server_stream(ch, "/my_shop.MyShop/Count")
            got = [m.n for m in count(protos.msg("my_shop.CountRequest")(to=3), timeout=5)]
            self.assertEqual(got, [1, 2, 3])

    def test_from_a_proto_with_an_import(self):
        src = self.path("src")
        os.makedirs(os.path.join(src, "common"))
        with open(os.path.join(src, "common", "money.proto"), "w") as f:
            f.write('syntax = "proto3";\npackage common;\nmessage Money { int64 cents = 1; }\n')
        with open(ROUTE_GUIDE) as f:
            rg = f.read()
        with open(os.path.join(src, "rg.proto"), "w") as f:
            f.write(rg.replace('package routeguide;',
                               'package routeguide;\nimport "common/money.proto";')
                    .replace("message Point {", "message Price { common.Money m = 1; }\nmessage Point {"))
        d = self.path("guide")
        r = run_cli("new", d, "--proto", os.path.join(src, "rg.proto"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.isfile(os.path.join(d, "common", "money.proto")))
        self.assertTrue(os.path.isfile(os.path.join(d, "rg.proto")))
        with open(os.path.join(d, "guide.lua")) as f:
            lua = f.read()
        # the signature each kind needs, and the fields in a comment
        self.assertIn("function RouteGuide.GetFeature(req, ctx)", lua)
        self.assertIn("function RouteGuide.ListFeatures(req, stream, ctx)", lua)
        self.assertIn("function RouteGuide.RecordRoute(stream, ctx)", lua)
        self.assertIn("function RouteGuide.RouteChat(stream, ctx)", lua)
        self.assertIn("--   req: routeguide.Point {latitude: int32, longitude: int32}", lua)
        c = run_cli("check", d)
        self.assertEqual(c.returncode, 0, c.stderr)
        self.assertIn("4 methods, 4 with handlers", c.stdout)
        protos = Protos(d)
        with Server(d) as s:
            ch = s.channel()
            Point = protos.msg("routeguide.Point")
            self.assertEqual(protos.unary(ch, "/routeguide.RouteGuide/GetFeature")(
                Point(latitude=1), timeout=5).name, "")
            self.assertEqual(list(protos.server_stream(ch, "/routeguide.RouteGuide/ListFeatures")(
                protos.msg("routeguide.Rectangle")(), timeout=5)), [])
            summary = protos.client_stream(ch, "/routeguide.RouteGuide/RecordRoute")(
                iter([Point(), Point()]), timeout=5)
            self.assertEqual(summary.point_count, 0)
            notes = protos.bidi(ch, "/routeguide.RouteGuide/RouteChat")(
                iter([protos.msg("routeguide.RouteNote")(message="hi")]), timeout=5)
            self.assertEqual(list(notes), [])

    def test_lua_keywords_as_names(self):
        src = self.path("kw.proto")
        with open(src, "w") as f:
            f.write('syntax = "proto3";\npackage kw;\nmessage M {}\n'
                    'service mw { rpc end(M) returns (M); rpc Go(M) returns (M); }\n')
        d = self.path("kw")
        r = run_cli("new", d, "--proto", src)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(d, "kw.lua")) as f:
            lua = f.read()
        self.assertIn('local mw_ = mw.service "kw.mw"', lua)
        self.assertIn('mw_["end"] = function(req, ctx)', lua)
        c = run_cli("check", d)
        self.assertEqual(c.returncode, 0, c.stderr + c.stdout)

    def test_bad_input_writes_nothing(self):
        d = self.path("out")
        bad = self.path("bad.proto")
        with open(bad, "w") as f:
            f.write('syntax = "proto3";\nmessage M { strin x = 1; }\n')
        r = run_cli("new", d, "--proto", bad)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.proto:2", r.stderr)
        self.assertFalse(os.path.exists(d))

        plain = self.path("plain.proto")
        with open(plain, "w") as f:
            f.write('syntax = "proto3";\nmessage M {}\n')
        r = run_cli("new", d, "--proto", plain)
        self.assertEqual(r.returncode, 1)
        self.assertIn("defines no service", r.stderr)
        self.assertFalse(os.path.exists(d))

        os.makedirs(d)
        with open(os.path.join(d, "keep.txt"), "w") as f:
            f.write("mine")
        r = run_cli("new", d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("is not empty", r.stderr)
        self.assertEqual(os.listdir(d), ["keep.txt"])

        r = run_cli("new")
        self.assertEqual(r.returncode, 1)
        self.assertIn("needs a directory", r.stderr)
        r = run_cli("check", "--proto", plain, d)
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    mwtest.main()
