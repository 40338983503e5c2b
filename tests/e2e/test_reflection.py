"""The built-in server reflection (grpc.reflection.v1 and v1alpha,
services/reflection.lua) against real clients: a Python client of both
protocol versions built from Debian's grpc-proto, and `buf curl` listing,
describing and calling through reflection."""

import json
import signal
import subprocess

import grpc
from google.protobuf import descriptor_pb2

import mwtest
from mwtest import Server

SHOP = """
syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "common/money.proto";
enum Color { COLOR_UNSPECIFIED = 0; RED = 1; }
message Item {
  message Detail { string text = 1; }
  string sku = 1;
  common.Money price = 2;
  Color color = 3;
  Detail detail = 4;
}
message BuyRequest { string sku = 1; int32 count = 2; }
message Receipt { string sku = 1; google.protobuf.Timestamp at = 2; common.Money total = 3; }
service Shop {
  rpc Buy(BuyRequest) returns (Receipt);
  rpc Watch(BuyRequest) returns (stream Item);
}
"""

MONEY = """
syntax = "proto3";
package common;
message Money { string currency = 1; int64 units = 2; }
"""

EXT = """
syntax = "proto2";
package shop;
message Base {
  optional string id = 1;
  extensions 100 to 200;
}
extend Base {
  optional string note = 100;
  optional int32 level = 101;
}
message Holder {
  extend Base { optional bool flag = 150; }
}
"""

LUA = """
local mw = require "moonwire"
local Shop = mw.service "shop.Shop"
function Shop.Buy(req)
  return {sku = req.sku, at = {seconds = 1700000000}, total = {currency = "EUR", units = 3 * req.count}}
end
function Shop.Watch(req, stream)
  for i = 1, 3 do stream:send {sku = req.sku .. i, color = "RED"} end
end
"""

EXTRA = """
syntax = "proto3";
package extra;
message E { string x = 1; }
service Extra { rpc Get(E) returns (E); }
"""

VERSIONS = ("v1", "v1alpha")


class Reflection(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.P = mwtest.standard_protos()

    def setUp(self):
        self.dir = self.service_dir({"shop.proto": SHOP, "common/money.proto": MONEY,
                                     "ext.proto": EXT, "shop.lua": LUA})

    def stream(self, ch, version, reqs):
        """Sends the requests (dicts) on one stream; returns the responses."""
        path = "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version
        Req = self.P.msg("grpc.reflection.%s.ServerReflectionRequest" % version)
        call = self.P.bidi(ch, path)
        return list(call(iter([Req(**r) for r in reqs]), timeout=10))

    @staticmethod
    def files(resp):
        return [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in resp.file_descriptor_response.file_descriptor_proto]

    def test_list_services(self):
        with Server(self.dir) as s:
            for v in VERSIONS:
                (r,) = self.stream(s.channel(), v, [{"host": "h1", "list_services": "*"}])
                names = [x.name for x in r.list_services_response.service]
                self.assertEqual(sorted(names), [
                    "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection", "shop.Shop"])
                self.assertEqual(r.valid_host, "h1")
                self.assertEqual(r.original_request.list_services, "*")

    def test_symbols_and_dependencies(self):
        with Server(self.dir) as s:
            for v in VERSIONS:
                ch = s.channel()
                (r,) = self.stream(ch, v, [{"file_containing_symbol": "shop.Shop"}])
                fds = self.files(r)
                self.assertEqual(fds[0].name, "shop.proto")
                self.assertEqual(sorted(f.name for f in fds),
                                 ["common/money.proto", "google/protobuf/timestamp.proto",
                                  "shop.proto"])
                # every dependency named is fetchable by exactly that name
                for dep in fds[0].dependency:
                    (d,) = self.stream(ch, v, [{"file_by_filename": dep}])
                    self.assertEqual(self.files(d)[0].name, dep)
                for sym, file in [("shop.Shop.Buy", "shop.proto"), ("shop.Item", "shop.proto"),
                                  ("shop.Item.Detail", "shop.proto"), ("shop.Color", "shop.proto"),
                                  ("common.Money", "common/money.proto"),
                                  ("shop.note", "ext.proto"), ("shop.Holder.flag", "ext.proto"),
                                  ("grpc.health.v1.Health", "grpc/health/v1/health.proto"),
                                  ("google.protobuf.Timestamp", "google/protobuf/timestamp.proto")]:
                    (r,) = self.stream(ch, v, [{"file_containing_symbol": sym}])
                    self.assertEqual(self.files(r)[0].name, file, sym)

    def test_dedupe_on_one_stream(self):
        with Server(self.dir) as s:
            for v in VERSIONS:
                rs = self.stream(s.channel(), v, [
                    {"file_containing_symbol": "shop.Shop"},
                    {"file_containing_symbol": "shop.Item"},        # shop.proto again
                    {"file_by_filename": "common/money.proto"},     # asked: sent again
                    {"file_by_filename": "ext.proto"},              # new, no deps
                ])
                self.assertEqual([[f.name for f in self.files(r)] for r in rs], [
                    ["shop.proto", "google/protobuf/timestamp.proto", "common/money.proto"],
                    ["shop.proto"],
                    ["common/money.proto"],
                    ["ext.proto"],
                ])
                # a new stream starts afresh
                (r,) = self.stream(s.channel(), v, [{"file_by_filename": "shop.proto"}])
                self.assertEqual(len(self.files(r)), 3)

    def test_extensions(self):
        with Server(self.dir) as s:
            for v in VERSIONS:
                Ext = self.P.msg("grpc.reflection.%s.ExtensionRequest" % v)
                rs = self.stream(s.channel(), v, [
                    {"all_extension_numbers_of_type": "shop.Base"},
                    {"file_containing_extension": Ext(containing_type="shop.Base", extension_number=150)},
                    {"file_containing_extension": Ext(containing_type="shop.Base", extension_number=100)},
                    {"all_extension_numbers_of_type": "shop.Item"},
                ])
                self.assertEqual(rs[0].all_extension_numbers_response.base_type_name, "shop.Base")
                self.assertEqual(list(rs[0].all_extension_numbers_response.extension_number),
                                 [100, 101, 150])
                self.assertEqual(self.files(rs[1])[0].name, "ext.proto")
                self.assertEqual(self.files(rs[2])[0].name, "ext.proto")
                self.assertEqual(list(rs[3].all_extension_numbers_response.extension_number), [])

    def test_not_found_keeps_the_stream(self):
        with Server(self.dir) as s:
            for v in VERSIONS:
                Ext = self.P.msg("grpc.reflection.%s.ExtensionRequest" % v)
                rs = self.stream(s.channel(), v, [
                    {"file_by_filename": "location/location.proto"},
                    {"file_containing_symbol": "shop.Nope"},
                    {"file_containing_symbol": "shop.Shop.Nope"},
                    {"file_containing_extension": Ext(containing_type="shop.Base", extension_number=199)},
                    {"file_containing_extension": Ext(containing_type="shop.Nope", extension_number=100)},
                    {"all_extension_numbers_of_type": "shop.Nope"},
                    {"list_services": ""},
                ])
                for r in rs[:6]:
                    self.assertEqual(r.WhichOneof("message_response"), "error_response", r)
                    self.assertEqual(r.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
                self.assertEqual(rs[0].error_response.error_message,
                                 "file not found: location/location.proto")
                self.assertEqual(rs[6].WhichOneof("message_response"), "list_services_response")

    def test_empty_request_fails_the_call(self):
        with Server(self.dir) as s:
            for v in VERSIONS:
                with self.assertRaises(grpc.RpcError) as e:
                    self.stream(s.channel(), v, [{"host": "x"}])
                self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_reload_changes_what_is_shown(self):
        with Server(self.dir) as s:
            (r,) = self.stream(s.channel(), "v1", [{"list_services": "*"}])
            self.assertNotIn("extra.Extra", [x.name for x in r.list_services_response.service])
            self.dir.write("extra.proto", EXTRA)
            s.proc.send_signal(signal.SIGHUP)
            self.assertTrue(s.wait_log("generation 2"), s.logs())
            (r,) = self.stream(s.channel(), "v1", [{"list_services": "*"}])
            self.assertIn("extra.Extra", [x.name for x in r.list_services_response.service])
            (r,) = self.stream(s.channel(), "v1alpha", [{"file_containing_symbol": "extra.E"}])
            self.assertEqual(self.files(r)[0].name, "extra.proto")

    def test_off(self):
        with Server(self.dir, config="reflection: false\n") as s:
            for v in VERSIONS:
                with self.assertRaises(grpc.RpcError) as e:
                    self.stream(s.channel(), v, [{"list_services": "*"}])
                self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


class BufCurl(mwtest.TestCase):
    """buf curl as users run it: no .proto at hand, reflection only."""

    def setUp(self):
        self.buf = mwtest.tool("buf")
        self.dir = self.service_dir({"shop.proto": SHOP, "common/money.proto": MONEY,
                                     "ext.proto": EXT, "shop.lua": LUA})

    def curl(self, s, *args, protocol=None, path=""):
        cmd = [self.buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge"]
        if protocol:
            cmd += ["--reflect-protocol", protocol]
        cmd += list(args) + ["http://%s%s" % (s.target(), path)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return r

    def test_list_describe_call(self):
        with Server(self.dir) as s:
            for protocol in ("grpc-v1", "grpc-v1alpha"):
                r = self.curl(s, "--list-services", protocol=protocol)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.split(), [
                    "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection", "shop.Shop"])
                r = self.curl(s, "--list-methods", protocol=protocol)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.split(), [
                    "grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch",
                    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                    "shop.Shop/Buy", "shop.Shop/Watch"])
                # a call whose messages need both dependencies (a WKT and a
                # file in a subdirectory) resolved through reflection
                r = self.curl(s, "-d", '{"sku": "tea", "count": 2}', protocol=protocol,
                              path="/shop.Shop/Buy")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(json.loads(r.stdout), {
                    "sku": "tea", "at": "2023-11-14T22:13:20Z",
                    "total": {"currency": "EUR", "units": "6"}})
                r = self.curl(s, "-d", '{"sku": "tea"}', protocol=protocol, path="/shop.Shop/Watch")
                self.assertEqual(r.returncode, 0, r.stderr)
                items = [json.loads(x) for x in r.stdout.replace("}\n{", "}\x00{").split("\x00")]
                self.assertEqual([i["sku"] for i in items], ["tea1", "tea2", "tea3"])
                self.assertEqual(items[0]["color"], "RED")

    def test_health_through_reflection(self):
        with Server(self.dir) as s:
            r = self.curl(s, "-d", '{"service": "shop.Shop"}', path="/grpc.health.v1.Health/Check")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout), {"status": "SERVING"})

    def test_reflection_off(self):
        with Server(self.dir, config="reflection: false\n") as s:
            r = self.curl(s, "--list-services")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("reflection", r.stderr.lower())


if __name__ == "__main__":
    mwtest.main()
