"""examples/orders served by three real binaries, started and called the way
its README says: an order that goes through, and one whose shipping fails,
undone in reverse order on both backends, with the outcome in the status
details the client decodes."""
import base64
import json
import os
import re
import shlex
import subprocess
import time
import urllib.request
import unittest

import grpc
from prometheus_client.parser import text_string_to_metric_families

import mwtest
from mwtest import Protos, Server, ServiceDir, example

EX = example("orders")
README = os.path.join(EX, "README.md")
STOCK_TARGET, PAYMENTS_TARGET = "127.0.0.1:50071", "127.0.0.1:50072"
BUF = os.path.join(mwtest.SOURCE_DIR, "tests/tools/node_modules/.bin/buf")

_RPC_DIR = os.path.join(mwtest.SOURCE_DIR, "proto")
RPC = Protos(files=[os.path.join(_RPC_DIR, "google/rpc/status.proto"),
                    os.path.join(_RPC_DIR, "google/rpc/error_details.proto")])


def readme_commands(prefix):
    with open(README) as f:
        lines = [l[4:].rstrip("\n") for l in f if l.startswith("    ") and l[4:5] != " "]
    return [shlex.split(l) for l in lines if l.startswith(prefix)]


def readme_json_after(command_line):
    with open(README) as f:
        text = f.read()
    at = text.index(command_line)
    return json.loads(re.compile(r"```json\n(.*?)```", re.S).search(text, at).group(1))


def order_lines(server, order_id):
    """The messages a backend logged for order_id, in order."""
    return [l.split()[2] for l in server.logs().splitlines() if "order_id=" + order_id in l]


class Orders(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        serve = readme_commands("build/moonwire serve ")
        assert len(serve) == 3, serve
        assert [c[3] for c in serve[:2]] == [STOCK_TARGET, PAYMENTS_TARGET], serve
        cls.stock = Server(os.path.join(mwtest.SOURCE_DIR, serve[0][4])).start()
        cls.addClassCleanup(cls.stock.close)
        cls.payments = Server(os.path.join(mwtest.SOURCE_DIR, serve[1][4])).start()
        cls.addClassCleanup(cls.payments.close)
        # The example's config with the test's ports, beside links to its
        # directories so that its relative paths resolve as they do there.
        src = os.path.join(mwtest.SOURCE_DIR, serve[2][3])
        with open(src) as f:
            text = f.read()
        text = text.replace(STOCK_TARGET, cls.stock.addr).replace(PAYMENTS_TARGET,
                                                                   cls.payments.addr)
        d = ServiceDir()
        cls.addClassCleanup(d.cleanup)
        for name in ("front", "stock", "payments"):
            os.symlink(os.path.join(EX, name), d.file(name))
        with open(d.file("moonwire.yaml"), "w") as f:
            f.write(text)
        cls.front = Server(args=["-c", d.file("moonwire.yaml"), "--admin", "127.0.0.1:0"],
                           env={"STOCK_ADDR": cls.stock.addr,
                                "PAYMENTS_ADDR": cls.payments.addr}).start()
        cls.addClassCleanup(cls.front.close)
        deadline = time.monotonic() + 5
        while "admin listening on " not in cls.front.stdout() and time.monotonic() < deadline:
            time.sleep(0.02)
        cls.admin = cls.front.stdout().split("admin listening on ")[1].split()[0]
        protos = Protos(os.path.join(EX, "front"))
        cls.Order = protos.msg("orders.PlaceOrder")
        cls.Place = protos.unary(cls.front.channel(), "/orders.Orders/Place")

    def buf(self, cmd):
        if not os.path.exists(BUF):
            self.skipTest("buf is not installed (tests/tools/setup.sh)")
        url = cmd[-1].replace("127.0.0.1:50070", self.front.addr)
        r = subprocess.run([BUF] + cmd[1:-1] + [url], capture_output=True, text=True,
                           timeout=30)
        return r

    @staticmethod
    def error_info(b64):
        info = RPC.msg("google.rpc.ErrorInfo").FromString(
            base64.b64decode(b64 + "=" * (-len(b64) % 4)))
        return (info.reason, info.domain, dict(info.metadata))

    def test_an_order_goes_through(self):
        cmd = readme_commands("buf curl ")[0]
        r = self.buf(cmd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), readme_json_after(shlex.join(cmd[:4])))
        self.assertEqual(order_lines(self.stock, "o1"), ["reserved", "shipped"])
        self.assertEqual(order_lines(self.payments, "o1"), ["charged"])

    def test_shipping_fails_and_is_compensated_as_the_readme_says(self):
        cmd = readme_commands("buf curl ")[1]
        r = self.buf(cmd)
        self.assertNotEqual(r.returncode, 0)
        with open(README) as f:
            text = f.read()
        want = json.loads(re.compile(r"```json\n(.*?)```", re.S).search(
            text, text.index('"Atlantis"}')).group(1))
        got = json.loads(r.stderr)
        # The ErrorInfo compared decoded: a map's entries have no set order
        # in its bytes.
        got_d, want_d = got.pop("details"), want.pop("details")
        self.assertEqual(got, want)
        self.assertEqual([d["type"] for d in got_d], [d["type"] for d in want_d])
        self.assertEqual([self.error_info(d["value"]) for d in got_d],
                         [self.error_info(d["value"]) for d in want_d])
        self.front.wait_log("pipeline compensated")
        self.assertEqual(order_lines(self.payments, "o2"), ["charged", "refunded"])
        self.assertEqual(order_lines(self.stock, "o2"), ["reserved", "released"])

    def test_the_client_decodes_the_outcome(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.Place(self.Order(order_id="o3", sku="teapot", qty=1, cents=2900,
                                  address="Atlantis"), timeout=5)
        err = cm.exception
        self.assertEqual(err.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(err.details(), "we do not ship to Atlantis")
        st = RPC.msg("google.rpc.Status").FromString(
            dict(err.trailing_metadata())["grpc-status-details-bin"])
        info = RPC.msg("google.rpc.ErrorInfo")()
        self.assertTrue(st.details[0].Unpack(info))
        self.assertEqual(info.reason, "PIPELINE_FAILED")
        self.assertEqual(dict(info.metadata), {"pipeline": "place_order", "failed_step": "ship",
                                               "compensated": "charge,reserve",
                                               "undo_failed": ""})

    def test_the_runs_are_counted(self):
        with self.assertRaises(grpc.RpcError):
            self.Place(self.Order(order_id="o4", sku="tea", qty=1, cents=450,
                                  address="Atlantis"), timeout=5)
        with urllib.request.urlopen("http://%s/metrics" % self.admin, timeout=5) as r:
            text = r.read().decode()
        runs = {(s.labels["pipeline"], s.labels["outcome"]): s.value
                for fam in text_string_to_metric_families(text)
                if fam.name == "moonwire_pipeline_runs" for s in fam.samples
                if s.name.endswith("_total")}
        self.assertGreaterEqual(runs[("place_order", "compensated")], 1)
        self.assertIn('moonwire_pipeline_step_seconds_count{pipeline="place_order",'
                      'step="undo:charge",outcome="ok"}', text)


if __name__ == "__main__":
    mwtest.main()
