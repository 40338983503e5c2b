"""examples/gateway served by three real binaries, started and called the way
its README says: the front fans out to both backends in parallel, merges
their answers, maps a backend's failure to a status, and its deadline and
cancellation reach the backends."""
import json
import os
import re
import shlex
import subprocess
import time

import grpc

import mwtest
from mwtest import Protos, Server, ServiceDir, example

GW = example("gateway")
README = os.path.join(GW, "README.md")
PYTHON = "/usr/bin/python3"
USERS_TARGET, ORDERS_TARGET = "127.0.0.1:50061", "127.0.0.1:50062"


def readme_commands():
    """The README's command lines (indented blocks), by what they start
    with: {"serve": [...], "buf": [...], "client": [...]}, each shlex-split."""
    with open(README) as f:
        lines = [l[4:].rstrip("\n") for l in f if l.startswith("    ") and l[4:5] != " "]
    out = {"serve": [], "buf": [], "client": []}
    for l in lines:
        for key, prefix in (("serve", "build/moonwire serve "), ("buf", "buf curl "),
                            ("client", "python3 examples/gateway/client.py ")):
            if l.startswith(prefix):
                out[key].append(shlex.split(l))
    return out


def readme_json_after(command_line):
    """The ```json block that follows the README line holding command_line."""
    with open(README) as f:
        text = f.read()
    at = text.index(command_line)
    m = re.compile(r"```json\n(.*?)```", re.S).search(text, at)
    return m.group(1)


def delay_of(name):
    """DELAY (seconds) of examples/gateway/NAME/NAME.lua, read from the file
    so the timing checks follow the example."""
    with open(os.path.join(GW, name, name + ".lua")) as f:
        return float(re.search(r"^local DELAY = ([\d.]+)", f.read(), re.M).group(1))


def backend(cmd):
    """A Server for a README line `build/moonwire serve --listen ADDR DIR`, on
    a free port instead of ADDR."""
    assert cmd[:4] == ["build/moonwire", "serve", "--listen", cmd[3]] and len(cmd) == 5, cmd
    return Server(os.path.join(mwtest.SOURCE_DIR, cmd[4]))


def gateway(cmd, users, orders, cleanup):
    """A Server for the README line `build/moonwire serve -c .../moonwire.yaml`.
    The config is the example's with the backends' ports replaced by the
    test's, beside links to the example's directories (its relative paths
    resolve as they do in examples/gateway); the Lua finds the backends
    through USERS_ADDR and ORDERS_ADDR. cleanup(fn) registers the removal
    of that directory."""
    assert cmd[:3] == ["build/moonwire", "serve", "-c"] and len(cmd) == 4, cmd
    src = os.path.join(mwtest.SOURCE_DIR, cmd[3])
    with open(src) as f:
        text = f.read()
    allow = 'allow: ["%s", "%s"]' % (USERS_TARGET, ORDERS_TARGET)
    assert allow in text, "moonwire.yaml no longer says " + allow
    text = text.replace(USERS_TARGET, users.addr).replace(ORDERS_TARGET, orders.addr)
    d = ServiceDir()
    cleanup(d.cleanup)
    for name in ("front", "users", "orders"):
        os.symlink(os.path.join(os.path.dirname(src), name), d.file(name))
    with open(d.file("moonwire.yaml"), "w") as f:
        f.write(text)
    return Server(args=["-c", d.file("moonwire.yaml")],
                  env={"USERS_ADDR": users.addr, "ORDERS_ADDR": orders.addr})


def profile_stub(gw):
    """GetProfileRequest and a stub of GetProfile on gw."""
    protos = Protos(os.path.join(GW, "front"),
                    includes=[os.path.join(GW, "users"), os.path.join(GW, "orders")])
    return (protos.msg("gateway.GetProfileRequest"),
            protos.unary(gw.channel(), "/gateway.Gateway/GetProfile"))


def stopped_early(server, backend, user, why=r"\w+"):
    """How many `BACKEND stopped early` lines the server logged for USER's
    calls (id=USER or user_id=USER) with why=WHY. Counted by user, since a
    line may come a little after the call that caused it ended."""
    n = 0
    for line in server.logs().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if (backend + " stopped early" in line and user in (fields.get("id"), fields.get("user_id"))
                and re.fullmatch(why, fields.get("why", ""))):
            n += 1
    return n


def wait_count(fn, n, timeout=5.0):
    deadline = time.monotonic() + timeout * mwtest.SLOW
    while fn() < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return fn()


class Gateway(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cmds = readme_commands()
        serve = cls.cmds["serve"]
        assert len(serve) == 3, serve
        # Killed at the end whatever happens; tearDownClass stops them first.
        cls.users = backend(serve[0]).start()
        cls.addClassCleanup(cls.users.close)
        cls.orders = backend(serve[1]).start()
        cls.addClassCleanup(cls.orders.close)
        cls.gw = gateway(serve[2], cls.users, cls.orders, cls.addClassCleanup).start()
        cls.addClassCleanup(cls.gw.close)
        cls.Req, cls.get = profile_stub(cls.gw)

    @classmethod
    def tearDownClass(cls):
        # The gateway first, while its backends still run; each must drain
        # and exit 0 (the gateway with its connections to the backends open).
        servers = (cls.gw, cls.users, cls.orders)
        codes = [s.stop() for s in servers]
        marks = [m for s in servers for m in mwtest.SANITIZER_MARKS if m in s.logs()]
        assert codes == [0, 0, 0] and not marks, (codes, marks)

    def test_readme_serves_what_the_config_allows(self):
        serve = self.cmds["serve"]
        self.assertEqual([c[3] for c in serve[:2]], [USERS_TARGET, ORDERS_TARGET])
        self.assertEqual(serve[0][4], "examples/gateway/users")
        self.assertEqual(serve[1][4], "examples/gateway/orders")

    def test_merged_answer(self):
        p = self.get(self.Req(user_id="u1"), timeout=10)
        self.assertEqual((p.user.id, p.user.name, p.user.email),
                         ("u1", "Ada Lovelace", "ada@example.org"))
        self.assertEqual([(o.id, o.item, o.cents) for o in p.orders],
                         [("o-100", "tea", 450), ("o-101", "teapot", 2900)])
        self.assertEqual(p.total_cents, 3350)
        p = self.get(self.Req(user_id="u2"), timeout=10)
        self.assertEqual(p.user.name, "Alan Turing")
        self.assertEqual(p.total_cents, 600)

    def test_buf_curl_as_the_readme_shows(self):
        # Both buf curl lines, as written but for the address; each prints
        # the JSON block that follows it in the README (the answer on
        # stdout, a failure's status on stderr).
        lines = self.cmds["buf"]
        self.assertEqual(len(lines), 2)
        with open(README) as f:
            raw = [l[4:].strip() for l in f if l.startswith("    buf curl ")]
        for args, line in zip(lines, raw):
            with self.subTest(line=line):
                url = args[-1].replace("127.0.0.1:50051", self.gw.target())
                r = subprocess.run([mwtest.tool("buf")] + args[1:-1] + [url],
                                   capture_output=True, text=True, timeout=60)
                want = json.loads(readme_json_after(line))
                if "code" in want:
                    self.assertNotEqual(r.returncode, 0)
                    self.assertEqual(json.loads(r.stderr), want)
                else:
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(json.loads(r.stdout), want)

    def test_backend_calls_overlap(self):
        du, do = delay_of("users"), delay_of("orders")
        best = None
        for _ in range(3):  # the best of three: one slow moment must not fail it
            t0 = time.monotonic()
            self.get(self.Req(user_id="u1"), timeout=10)
            took = time.monotonic() - t0
            best = took if best is None else min(best, took)
        self.assertGreaterEqual(best, max(du, do))
        self.assertLess(best, du + do, "the two backend calls ran one after the other")

    def test_unknown_user_fails_with_users_status_and_cancels_orders(self):
        before = stopped_early(self.orders, "orders.List", "nobody", "cancelled")
        with self.assertRaises(grpc.RpcError) as e:
            self.get(self.Req(user_id="nobody"), timeout=10)
        self.assertStatus(e, grpc.StatusCode.NOT_FOUND, "users: no user nobody")
        # users answers first (its delay is shorter): the handler ends and
        # the orders call it still had in flight is cancelled
        self.assertLess(delay_of("users"), delay_of("orders"))
        self.assertEqual(wait_count(lambda: stopped_early(self.orders, "orders.List",
                                                          "nobody", "cancelled"), before + 1),
                         before + 1, self.orders.logs())

    def test_missing_user_id(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.get(self.Req(), timeout=10)
        self.assertStatus(e, grpc.StatusCode.INVALID_ARGUMENT, "user_id is required")

    def run_client(self, args):
        self.assertEqual(args[:2], ["python3", "examples/gateway/client.py"])
        return subprocess.run([PYTHON, os.path.join(GW, "client.py"),
                               "--target", self.gw.target()] + args[2:],
                              capture_output=True, text=True, timeout=60)

    def test_deadline_shorter_than_a_backend(self):
        (line,) = [c for c in self.cmds["client"] if "--timeout" in c]
        timeout = float(line[line.index("--timeout") + 1])
        self.assertLess(timeout, min(delay_of("users"), delay_of("orders")))
        # Each backend's deadline is the gateway's less 5 ms, and the gateway
        # cancels its outbound call when that passes: which of the two the
        # backend hears first is a race (why=deadline or why=cancelled).
        user = line[-1]
        before = {b: stopped_early(s, b, user)
                  for b, s in (("users.Get", self.users), ("orders.List", self.orders))}
        r = self.run_client(line)
        self.assertEqual(r.returncode, 1, r.stderr)
        # The gateway's answer names the backend; it has the 5 ms margin to
        # reach the client before the client's own deadline fires, which a
        # loaded machine can miss (then the client's library reports it).
        self.assertIn(r.stdout.strip(), ("DEADLINE_EXCEEDED: users: Deadline Exceeded",
                                         "DEADLINE_EXCEEDED: Deadline Exceeded"))
        for b, s in (("users.Get", self.users), ("orders.List", self.orders)):
            self.assertEqual(wait_count(lambda: stopped_early(s, b, user), before[b] + 1),
                             before[b] + 1, s.logs())

    def test_deadline_from_python(self):
        # The same with the deadline set here: the call ends when it passes,
        # not when the backends would have answered.
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as e:
            self.get(self.Req(user_id="late"), timeout=0.1)
        took = time.monotonic() - t0
        self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(took, delay_of("users"))

    def test_cancel_reaches_both_backends(self):
        (line,) = [c for c in self.cmds["client"] if "--cancel-after" in c]
        user = line[-1]
        before = {b: stopped_early(s, b, user, "cancelled")
                  for b, s in (("users.Get", self.users), ("orders.List", self.orders))}
        r = self.run_client(line)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout.strip(), "CANCELLED: cancelled by this client")
        for b, s in (("users.Get", self.users), ("orders.List", self.orders)):
            self.assertEqual(wait_count(lambda: stopped_early(s, b, user, "cancelled"),
                                        before[b] + 1), before[b] + 1, s.logs())

    def test_client_py_answer(self):
        r = self.run_client(["python3", "examples/gateway/client.py", "u1"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout),
                         json.loads(readme_json_after("/gateway.Gateway/GetProfile\n")))


class BackendDown(mwtest.TestCase):
    """The README's 'stop the orders server and call again'."""

    def test_orders_down_is_unavailable_naming_it(self):
        serve = readme_commands()["serve"]
        with backend(serve[0]) as users, backend(serve[1]) as orders:
            with gateway(serve[2], users, orders, self.addCleanup) as gw:
                Req, get = profile_stub(gw)
                self.assertEqual(get(Req(user_id="u1"), timeout=10).total_cents, 3350)
                orders.stop()
                with self.assertRaises(grpc.RpcError) as e:
                    get(Req(user_id="u1"), timeout=10)
                self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
                self.assertTrue(e.exception.details().startswith(
                    "orders: failed to connect to all addresses"), e.exception.details())


if __name__ == "__main__":
    mwtest.main()
