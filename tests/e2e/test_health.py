"""The built-in health service (grpc.health.v1.Health, services/health.lua)
called by a real client built from Debian's grpc-proto: Check, Watch,
mw.health.set from handlers on any worker, reloads, and turning it off."""

import queue
import signal
import threading

import grpc

import mwtest
from mwtest import Server

PROTO = """
syntax = "proto3";
package s;
message M { string x = 1; string y = 2; }
service S {
  rpc Get(M) returns (M);
  rpc SetHealth(M) returns (M);
}
"""

LUA = """
local mw = require "moonwire"
local S = mw.service "s.S"
function S.Get(req) return {x = req.x} end
-- y = "" clears what was set; a bad status comes back as the error text.
function S.SetHealth(req)
  local ok, err = pcall(mw.health.set, req.x, req.y ~= "" and req.y or nil)
  return {x = ok and "set" or tostring(err), y = tostring((mw.health.get(req.x)))}
end
"""

NEW_PROTO = """
syntax = "proto3";
package t;
message N { string x = 1; }
service T { rpc Get(N) returns (N); }
"""

SERVING, NOT_SERVING, SERVICE_UNKNOWN = 1, 2, 3


class Watcher:
    """A Watch stream read by a thread into a queue."""

    def __init__(self, call):
        self.call = call
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for r in self.call:
                self.q.put(r.status)
        except grpc.RpcError as e:
            self.q.put(e.code())
        self.q.put("end")

    def next(self, timeout=5):
        return self.q.get(timeout=timeout * mwtest.SLOW)

    def quiet(self, secs=0.3):
        try:
            got = self.q.get(timeout=secs)
        except queue.Empty:
            return True
        self.q.put(got)
        return False


class Health(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        P = mwtest.standard_protos()
        cls.P = P
        cls.Req = P.msg("grpc.health.v1.HealthCheckRequest")

    def setUp(self):
        self.dir = self.service_dir({"s.proto": PROTO, "s.lua": LUA})
        self.sp = mwtest.Protos(self.dir)

    def check(self, ch, name):
        return self.P.unary(ch, "/grpc.health.v1.Health/Check")(self.Req(service=name), timeout=5).status

    def watch(self, ch, name):
        return Watcher(self.P.server_stream(ch, "/grpc.health.v1.Health/Watch")(self.Req(service=name)))

    def set_health(self, ch, name, status):
        r = self.sp.unary(ch, "/s.S/SetHealth")(self.sp.msg("s.M")(x=name, y=status), timeout=5)
        return r.x, r.y

    def test_check(self):
        with Server(self.dir) as s:
            ch = s.channel()
            self.assertEqual(self.check(ch, ""), SERVING)
            self.assertEqual(self.check(ch, "s.S"), SERVING)
            self.assertEqual(self.check(ch, "grpc.health.v1.Health"), SERVING)
            self.assertEqual(self.check(ch, "grpc.reflection.v1.ServerReflection"), SERVING)
            with self.assertRaises(grpc.RpcError) as e:
                self.check(ch, "nope.Nope")
            self.assertStatus(e, grpc.StatusCode.NOT_FOUND, "unknown service nope.Nope")

    def test_set_reaches_every_watcher(self):
        # Two workers and one connection per watcher: the set runs on one
        # worker, watchers sit on both; each is told once per change.
        with Server(self.dir, config="workers: 2\n") as s:
            watchers = [self.watch(s.channel(), "s.S") for _ in range(6)]
            for w in watchers:
                self.assertEqual(w.next(), SERVING)
            ch = s.channel()
            self.assertEqual(self.set_health(ch, "s.S", "NOT_SERVING"), ("set", "NOT_SERVING"))
            for w in watchers:
                self.assertEqual(w.next(), NOT_SERVING)
            self.assertEqual(self.check(ch, "s.S"), NOT_SERVING)
            # the same status again sends nothing
            self.set_health(ch, "s.S", "NOT_SERVING")
            self.assertTrue(watchers[0].quiet())
            # clearing goes back to the default: served, so SERVING
            self.assertEqual(self.set_health(ch, "s.S", ""), ("set", "SERVING"))
            for w in watchers:
                self.assertEqual(w.next(), SERVING)
            for w in watchers:
                w.call.cancel()

    def test_names_of_dependencies(self):
        with Server(self.dir) as s:
            ch = s.channel()
            with self.assertRaises(grpc.RpcError):
                self.check(ch, "db")
            w = self.watch(ch, "db")
            self.assertEqual(w.next(), SERVICE_UNKNOWN)
            self.assertEqual(self.set_health(ch, "db", "NOT_SERVING"), ("set", "NOT_SERVING"))
            self.assertEqual(w.next(), NOT_SERVING)
            self.assertEqual(self.check(ch, "db"), NOT_SERVING)
            self.set_health(ch, "db", "SERVING")
            self.assertEqual(w.next(), SERVING)
            w.call.cancel()

    def test_bad_status_is_an_error(self):
        with Server(self.dir) as s:
            msg, now = self.set_health(s.channel(), "s.S", "HEALTHY")
            self.assertIn("bad argument #2 to 'set'", msg)
            self.assertIn("HEALTHY", msg)
            self.assertEqual(now, "SERVING")

    def test_unknown_watch_stays_open_until_a_reload_adds_it(self):
        with Server(self.dir) as s:
            w = self.watch(s.channel(), "t.T")
            self.assertEqual(w.next(), SERVICE_UNKNOWN)
            self.assertTrue(w.quiet())  # open, nothing more
            self.dir.write("t.proto", NEW_PROTO)
            s.proc.send_signal(signal.SIGHUP)
            self.assertTrue(s.wait_log("generation 2"), s.logs())
            self.assertEqual(w.next(), SERVING)
            w.call.cancel()

    def test_off(self):
        with Server(self.dir, config="health: false\n") as s:
            with self.assertRaises(grpc.RpcError) as e:
                self.check(s.channel(), "")
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_own_health_proto_needs_health_off(self):
        with open(mwtest.GRPC_PROTO_DIR + "/grpc/health/v1/health.proto") as f:
            own = f.read()
        d = self.service_dir({"grpc/health/v1/health.proto": own})
        r = mwtest.run_cli("check", str(d))
        self.assertEqual(r.returncode, 1)
        self.assertIn("duplicate service 'grpc.health.v1.Health': defined in ", r.stderr)
        self.assertIn("and in (built in)/grpc/health/v1/health.proto", r.stderr)
        d.write("moonwire.yaml", "health: false\n")
        r = mwtest.run_cli("check", str(d))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("/grpc.health.v1.Health/Check", r.stdout)

    def test_check_cli(self):
        r = mwtest.run_cli("check", str(self.dir))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ok: 1 service, 2 methods, 2 with handlers", r.stdout)
        self.assertIn("built in: grpc.health.v1.Health, grpc.reflection.v1.ServerReflection, "
                      "grpc.reflection.v1alpha.ServerReflection", r.stdout)
        self.assertNotIn("/grpc.health.v1.Health/Check", r.stdout)


if __name__ == "__main__":
    mwtest.main()
