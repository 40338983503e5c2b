"""Idempotency keys kept in a shared dict on Redis (`store: {shared:
NAME}`): every case of test_idempotency.py again, with the keys in a real
redis-server, and then two instances sharing that Redis: a duplicate sent
to the second while the first runs on the first waits for it and gets its
reply; a crashed instance's claim runs out with its lease; Redis down
fails keyed calls UNAVAILABLE without running them."""

import os
import threading
import time
import unittest
import uuid

import grpc

import mwtest
import test_idempotency as base
from mwtest import Protos, RedisServer, Server


def config(redis, lease=None):
    store = "{shared: idem%s}" % (", lease: %s" % lease if lease else "")
    return """
workers: 2
log: {format: json}
shared:
  idem: {redis: "%s", timeout: 1s}
methods:
  /idem.Svc/Run: {idempotency: {key: metadata, store: %s}}
  /idem.Svc/Abort: {idempotency: {concurrent: abort, store: %s}}
  /idem.Svc/Short: {idempotency: {ttl: 300ms, store: %s}}
  /idem.Svc/Required: {idempotency: {required: true, store: %s}}
  /idem.Svc/ByField: {idempotency: {key: {field: id}, store: %s}}
""" % ((redis.url(2),) + (store,) * 5)


class IdempotencyOnRedis(base.Idempotency):
    """The cases of test_idempotency.py, with the keys in Redis."""

    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer().start()
        cls.dir = mwtest.ServiceDir({"idem.proto": base.PROTO, "idem.lua": base.LUA})
        cls.protos = Protos(cls.dir.path)
        cls.Req = cls.protos.msg("idem.Req")
        cls.server = Server(cls.dir, config=config(cls.redis),
                            args=["--admin", "127.0.0.1:0"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)
        cls.dir.cleanup()
        cls.redis.close()

    def test_keys_are_in_redis(self):
        k, text = base.key(), "inredis-" + base.key()
        self.stub("Run")(self.Req(text=text), metadata=base.md(k), timeout=10)
        # (the entry's name holds NULs, which redis-cli's output cuts)
        self.assertNotEqual(self.redis.cli("-n", "2", "--scan", "--pattern", "idem:*" + k).strip(), "")


class AcrossInstances(mwtest.TestCase):
    def setUp(self):
        self.redis = RedisServer().start()
        self.addCleanup(self.redis.close)
        self.dir = self.service_dir({"idem.proto": base.PROTO, "idem.lua": base.LUA})
        self.protos = Protos(self.dir.path)
        self.Req = self.protos.msg("idem.Req")

    def start(self, lease=None):
        s = Server(self.dir, config=config(self.redis, lease)).start()
        self.addCleanup(s.close)
        return s

    def stub(self, s, method):
        return self.protos.unary(s.channel(), "/idem.Svc/" + method)

    def runs(self, servers, text):
        return sum(s.logs().count('"text":"%s"' % text) for s in servers)

    def test_a_duplicate_on_another_instance_waits_and_replays(self):
        a, b = self.start(), self.start()
        k, text = str(uuid.uuid4()), "across-" + str(uuid.uuid4())
        req = self.Req(text=text, sleep_ms=800)
        out = {}

        def first():
            out["a"] = self.stub(a, "Run")(req, metadata=base.md(k), timeout=10)

        t = threading.Thread(target=first)
        t.start()
        deadline = time.monotonic() + 5
        while self.runs([a], text) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.runs([a], text), 1)
        t0 = time.monotonic()
        dup, call = self.stub(b, "Run").with_call(req, metadata=base.md(k), timeout=10)
        waited = time.monotonic() - t0
        t.join(10)
        self.assertEqual(dup, out["a"])
        self.assertEqual(dict(call.initial_metadata())["idempotent-replayed"], "true")
        self.assertGreater(waited, 0.3)
        # and later, a replay from either instance; the handler ran once
        self.assertEqual(self.stub(b, "Run")(req, metadata=base.md(k), timeout=10), out["a"])
        self.assertEqual(self.stub(a, "Run")(req, metadata=base.md(k), timeout=10), out["a"])
        # another request with the key, on the other instance
        with self.assertRaises(grpc.RpcError) as e:
            self.stub(b, "Run")(self.Req(text="other"), metadata=base.md(k), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        time.sleep(0.1)
        self.assertEqual(self.runs([a, b], text), 1)

    def crash_holding(self, timeout):
        """Starts a long keyed call on an instance and kills the instance;
        returns the other instance, the key and a request of another text."""
        a, b = self.start(lease="1s"), self.start(lease="1s")
        k, text = str(uuid.uuid4()), "crash-" + str(uuid.uuid4())
        req = self.Req(text=text, sleep_ms=8000)
        fut = self.stub(a, "Abort").future(req, metadata=base.md(k), timeout=timeout)
        deadline = time.monotonic() + 5
        while self.runs([a], text) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        t0 = time.monotonic()
        a.kill()  # no release: the claim stays until it runs out
        fut.cancel()
        with self.assertRaises(grpc.RpcError) as e:
            self.stub(b, "Abort")(req, metadata=base.md(k), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.ABORTED)
        return b, k, self.Req(text=text), t0

    def free_at(self, b, k, quick):
        """Waits until the key can be claimed by another request: while the
        old claim holds, that request is a mismatch."""
        t0 = time.monotonic()
        while True:
            try:
                res = self.stub(b, "Abort")(quick, metadata=base.md(k), timeout=10)
                self.assertEqual(res.text, quick.text)
                return time.monotonic() - t0
            except grpc.RpcError as err:
                self.assertEqual(err.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertLess(time.monotonic() - t0, 10)
                time.sleep(0.05)

    def test_a_crashed_instance_claim_runs_out_with_its_lease(self):
        # no deadline: the claim holds for the lease (1s)
        b, k, quick, t0 = self.crash_holding(timeout=None)
        self.free_at(b, k, quick)
        self.assertLess(time.monotonic() - t0, 2.5 * mwtest.SLOW)

    def test_a_claim_holds_until_its_call_deadline(self):
        # a deadline of 3s, past the lease: the key stays claimed until then,
        # since the first call could still be running
        b, k, quick, t0 = self.crash_holding(timeout=3)
        self.free_at(b, k, quick)
        self.assertGreater(time.monotonic() - t0, 2.0)

    def test_redis_down_fails_unavailable_without_running(self):
        a = self.start()
        k, text = str(uuid.uuid4()), "down-" + str(uuid.uuid4())
        self.redis.kill()
        with self.assertRaises(grpc.RpcError) as e:
            self.stub(a, "Run")(self.Req(text=text), metadata=base.md(k), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("the idempotency store is unavailable: redis: ", e.exception.details())
        time.sleep(0.1)
        self.assertEqual(self.runs([a], text), 0)
        self.redis.restart()
        deadline = time.monotonic() + 10
        while True:
            try:
                res = self.stub(a, "Run")(self.Req(text=text), metadata=base.md(k), timeout=10)
                break
            except grpc.RpcError as err:
                self.assertEqual(err.code(), grpc.StatusCode.UNAVAILABLE)
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
        self.assertEqual(res.text, text)


class ShopExample(mwtest.TestCase):
    def test_redis_yaml_charges_once_across_instances(self):
        """examples/shop/redis.yaml as written, but for the Redis URL (the
        test's own Redis) and the services path (the file is copied)."""
        shop = mwtest.example("shop")
        with open(os.path.join(shop, "redis.yaml")) as f:
            yaml = f.read()
        with open(os.path.join(shop, "README.md")) as f:
            readme = f.read()
        # the README shows the file's settings
        for line in ("idem: {redis: \"redis://127.0.0.1:6379/0\", prefix: \"shop:idem:\", "
                     "timeout: 500ms}",
                     "idempotency: {key: metadata, ttl: 24h, concurrent: wait, store: "
                     "{shared: idem}}"):
            self.assertIn(line, yaml)
            self.assertIn(line, readme)
        redis = RedisServer().start()
        self.addCleanup(redis.close)
        cfg = yaml.replace("redis://127.0.0.1:6379/0", redis.url()).replace(
            'services: ["."]', 'services: ["%s"]' % shop)
        protos = Protos(shop)
        Req = protos.msg("shop.ChargeRequest")
        with Server(config=cfg) as a, Server(config=cfg) as b:
            k = str(uuid.uuid4())
            first = protos.unary(a.channel(), "/shop.Payments/Charge")(
                Req(card="visa", cents=500), metadata=base.md(k), timeout=10)
            again, call = protos.unary(b.channel(), "/shop.Payments/Charge").with_call(
                Req(card="visa", cents=500), metadata=base.md(k), timeout=10)
            self.assertEqual(again, first)
            self.assertEqual(dict(call.initial_metadata())["idempotent-replayed"], "true")
            other = protos.unary(b.channel(), "/shop.Payments/Charge")(
                Req(card="visa", cents=500), metadata=base.md(str(uuid.uuid4())), timeout=10)
            self.assertNotEqual(other.charge_id, first.charge_id)
            self.assertNotEqual(redis.cli("--scan", "--pattern", "shop:idem:*").strip(), "")


class Figures(mwtest.TestCase):
    @unittest.skipIf(mwtest.SANITIZED, "figures only from the optimised build")
    def test_latency_figures(self):
        """Prints the median wall time of a keyed call (a new key: claimed,
        run, kept; and a replay) with the process store and with the Redis
        store, beside a call without a key, from one client calling in a
        row (docs/performance.md). Checks only that the calls ran."""
        redis = RedisServer().start()
        self.addCleanup(redis.close)
        d = self.service_dir({"idem.proto": base.PROTO, "idem.lua": base.LUA.replace(
            'mw.log.info("handler ran"', '-- mw.log.info("handler ran"')})
        protos = Protos(d.path)
        Req = protos.msg("idem.Req")
        cfg = """
workers: 1
shared:
  idem: {redis: "%s"}
methods:
  /idem.Svc/Run: {idempotency: {}}
  /idem.Svc/Abort: {idempotency: {store: {shared: idem}}}
""" % redis.url()
        n = 400
        with Server(d, config=cfg) as s:
            ch = s.channel()
            for label, method, keyed, same in (
                    ("no key", "Run", False, False),
                    ("process store, new key", "Run", True, False),
                    ("process store, replay", "Run", True, True),
                    ("redis store, new key", "Abort", True, False),
                    ("redis store, replay", "Abort", True, True)):
                stub = protos.unary(ch, "/idem.Svc/" + method)
                k0 = str(uuid.uuid4())
                times = []
                for i in range(n):
                    md = base.md(k0 if same else "%s-%d" % (k0, i)) if keyed else None
                    t0 = time.perf_counter()
                    stub(Req(text="x"), metadata=md, timeout=10)
                    times.append(time.perf_counter() - t0)
                times.sort()
                print("idempotency %-24s median %.0f us, p90 %.0f us" % (
                    label, times[n // 2] * 1e6, times[n * 9 // 10] * 1e6))


if __name__ == "__main__":
    unittest.main()
