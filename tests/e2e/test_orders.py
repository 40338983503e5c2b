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
        serve = readme_commands("build/moonwire serve ")[:3]  # then the Redis section
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


class AcrossInstances(mwtest.TestCase):
    """The README's Redis section: every piece twice, state in one Redis,
    each server started as its line says but on a free port, and with the
    test's Redis in place of 127.0.0.1:6379."""

    @classmethod
    def setUpClass(cls):
        cls.redis = mwtest.RedisServer().start()
        cls.addClassCleanup(cls.redis.kill)
        with open(README) as f:
            text = f.read()
        section = text[text.index("## Across two instances"):]
        lines = [l[4:] for l in section.splitlines() if l.startswith("    ")]
        serve = [shlex.split(l) for l in lines if "moonwire serve" in l]
        cls.buf_lines = [shlex.split(l) for l in lines if l.startswith("buf curl ")]
        assert len(serve) == 6 and len(cls.buf_lines) == 2, serve
        d = ServiceDir()
        cls.addClassCleanup(d.cleanup)
        for name in ("front", "stock", "payments"):
            os.symlink(os.path.join(EX, name), d.file(name))
        os.makedirs(d.file("cfg"))
        ports = {}  # the README's address -> the test's server

        def config(rel):
            """The example's config file with the test's Redis and ports."""
            with open(os.path.join(mwtest.SOURCE_DIR, rel)) as f:
                body = f.read().replace("redis://127.0.0.1:6379/0", cls.redis.url())
            for old, srv in ports.items():
                body = body.replace(old, srv.addr)
            rel_in = rel.replace("examples/orders/", "")
            if "/" in rel_in:  # a backend's: its directory by absolute path
                sub = rel_in.split("/")[0]
                path = os.path.join(d.file("cfg"), sub + ".yaml")
                body = body.replace('services: ["."]', 'services: ["%s"]' % os.path.join(EX, sub))
            else:  # the front's, beside links to the directories it names
                path = d.file(rel_in)
            with open(path, "w") as f:
                f.write(body)
            return path

        cls.servers = []
        for cmd in serve:
            env = dict(a.split("=", 1) for a in cmd if "=" in a and not a.startswith("-")
                       and a.split("=", 1)[0].isupper())
            argv = [a for a in cmd if a.split("=", 1)[0] not in env]
            cfg, addr = argv[argv.index("-c") + 1], argv[argv.index("--listen") + 1]
            # the front's own defaults when the line sets none (orders.lua)
            if cfg == "examples/orders/redis.yaml" and not env:
                env = {"STOCK_ADDR": STOCK_TARGET, "PAYMENTS_ADDR": PAYMENTS_TARGET}
            env = {k: ports[v].addr for k, v in env.items()}
            srv = Server(args=["-c", config(cfg)], env=env or None).start()
            cls.addClassCleanup(srv.close)
            ports[addr] = srv
            cls.servers.append(srv)
        cls.ports = ports

    def place(self, cmd):
        if not os.path.exists(BUF):
            self.skipTest("buf is not installed (tests/tools/setup.sh)")
        url = cmd[-1]
        for old, srv in self.ports.items():
            url = url.replace(old, srv.addr)
        r = subprocess.run([BUF] + cmd[1:-1] + [url], capture_output=True, text=True,
                           timeout=30)
        return r

    def test_a_retry_on_the_other_front_runs_once_and_the_stock_is_shared(self):
        first, retry = (self.place(c) for c in self.buf_lines)
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertEqual(retry.returncode, 0, retry.stderr)
        self.assertEqual(json.loads(first.stdout), json.loads(retry.stdout))
        charged = sum(order_lines(self.ports[a], "o3").count("charged")
                      for a in ("127.0.0.1:50072", "127.0.0.1:50082"))
        self.assertEqual(charged, 1)
        # both teapots are gone, for either stock instance
        for front in ("127.0.0.1:50070", "127.0.0.1:50080"):
            cmd = [a.replace('"o3"', '"o4-%s"' % front[-2:]).replace('"qty": 2', '"qty": 1')
                   for a in self.buf_lines[0]]
            cmd[-1] = cmd[-1].replace("127.0.0.1:50070", front)
            r = self.place(cmd)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("not enough teapot in stock", r.stderr)


if __name__ == "__main__":
    mwtest.main()
