"""Hot reload: scripts and protos change while the server keeps serving.

Every test runs its own server on its own copy of a small service, because
each one moves the server to later generations. Replies carry the script's
version string, so a reply tells which generation served it; a finalizer in
each generation's scripts writes a marker file when that generation's Lua
states are closed, so a test can see an old generation being freed.
"""

import os
import queue
import signal
import time

import grpc

import mwtest
from mwtest import Protos, Server

DEBOUNCE = 0.2  # reload.debounce_ms's default, in seconds


def proto(rpcs=("Old",), req_extra="", resp_extra=""):
    """The service's .proto: Hello, Chat and Stats always, plus unary rpcs."""
    extra = "".join("  rpc %s(Req) returns (Resp);\n" % r for r in rpcs)
    return """
syntax = "proto3";
package rl;

message Req {
  string name = 1;
%s}
message Resp {
  string text = 1;
  int64 n = 2;
%s}
message StatsReq { bool gc = 1; }
message StatsReply {
  int64 live_calls = 1;
  int64 generation = 2;
  int64 reloads = 3;
  int64 reload_failures = 4;
  int64 lua_memory = 5;
}

service R {
  rpc Hello(Req) returns (Resp);
  rpc Chat(stream Req) returns (stream Resp);
  rpc Stats(StatsReq) returns (StatsReply);
%s}
""" % (req_extra, resp_extra, extra)


# A .proto of messages only, for a subdirectory of the service directory.
EXTRA_PROTO = """
syntax = "proto3";
package rl.extra;

message Extra { string s = 1; }
"""


STATS_LUA = """
local mw = require "moonwire"
local R = mw.service "rl.R"

function R.Stats(req, ctx)
  if req.gc then collectgarbage("collect") end
  return mw.stats()
end
"""


def greeter(version, marks, rpcs=("Old",), hello=None, extra=""):
    """greeter.lua answering with `version`; rpcs get a handler each.

    When this generation's Lua states are closed, the finalizer prints
    "generation closed: <version>;" to the server log (handlers have no io in
    the sandbox). marks: the test's scratch directory."""
    hello = hello or 'return {text = VERSION .. ":" .. req.name, n = count}'
    handlers = "".join("""
function R.%s(req, ctx)
  return {text = VERSION .. ":%s:" .. req.name}
end
""" % (r, r) for r in rpcs)
    text = """
local mw = require "moonwire"
local R = mw.service "rl.R"

local VERSION = "@VERSION@"
local count = 0

-- Collected only when the whole state is closed: it marks that this
-- generation was freed.
mw_test_sentinel = setmetatable({}, {__gc = function()
  print("generation closed: " .. VERSION .. ";")
end})

function R.Hello(req, ctx)
  count = count + 1
  @HELLO@
end

function R.Chat(stream, ctx)
  for msg in stream:iter() do
    stream:send{text = VERSION .. ":" .. msg.name}
  end
end
@HANDLERS@@EXTRA@
return R
"""
    return (text.replace("@VERSION@", version).replace("@MARKS@", os.fspath(marks))
            .replace("@HELLO@", hello).replace("@HANDLERS@", handlers)
            .replace("@EXTRA@", extra))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class Reload(mwtest.TestCase):

    # -- setup --

    def start(self, workers=1, config="", version="v1"):
        """A service dir with greeter `version`, and a server on it."""
        self.marks = self.service_dir({})
        self.dir = self.service_dir({
            "rl.proto": proto(),
            "stats.lua": STATS_LUA,
            "greeter.lua": greeter(version, self.marks),
        })
        self.protos = Protos(self.dir)
        cfg = "workers: %d\n%s" % (workers, mwtest.dedent(config))
        self.server = Server(self.dir, config=cfg)
        self.server.start()
        self.addCleanup(self.server.close)
        self.ch = self.server.channel()
        return self.server

    def write(self, name, text):
        self.dir.write(name, text)

    def write_greeter(self, version, **kw):
        self.write("greeter.lua", greeter(version, self.marks, **kw))

    # -- calls --

    def hello(self, name="x", protos=None):
        p = protos or self.protos
        return p.unary(self.ch, "/rl.R/Hello")(p.msg("rl.Req")(name=name), timeout=10)

    def call(self, method, protos=None, **fields):
        p = protos or self.protos
        return p.unary(self.ch, "/rl.R/" + method)(p.msg("rl.Req")(**fields), timeout=10)

    def stats(self, gc=False):
        fn = self.protos.unary(self.ch, "/rl.R/Stats")
        return fn(self.protos.msg("rl.StatsReq")(gc=gc), timeout=10)

    def poll(self, fn, ok, what, timeout=5.0):
        """Calls fn() (a grpc.RpcError counts as its result) until ok(result);
        fails after timeout seconds, saying what was last seen."""
        deadline = time.monotonic() + timeout * mwtest.SLOW
        while True:
            try:
                last = fn()
            except grpc.RpcError as e:
                last = e
            if ok(last):
                return last
            if time.monotonic() > deadline:
                if isinstance(last, grpc.RpcError):
                    last = "%s %r" % (last.code(), last.details())
                self.fail("%s: not seen within %.0f s; last result: %r\nserver log:\n%s"
                          % (what, timeout, last, self.server.logs()))
            time.sleep(0.02)

    def wait_text(self, prefix, timeout=5.0, name="x"):
        """Polls Hello until its reply starts with prefix."""
        return self.poll(lambda: self.hello(name),
                         lambda r: not isinstance(r, grpc.RpcError) and
                         r.text.startswith(prefix),
                         "a Hello reply starting with %r" % prefix, timeout)

    # -- the log --

    def count_log(self, text):
        return sum(1 for line in self.server.logs().splitlines() if text in line)

    def wait_count(self, text, n, timeout=5.0):
        deadline = time.monotonic() + timeout * mwtest.SLOW
        while self.count_log(text) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertGreaterEqual(self.count_log(text), n,
                                "%d log line(s) with %r expected\nserver log:\n%s"
                                % (n, text, self.server.logs()))

    def sighup_and_wait(self, timeout=10.0):
        n = self.count_log("reloaded (SIGHUP)")
        os.kill(self.server.pid, signal.SIGHUP)
        self.wait_count("reloaded (SIGHUP)", n + 1, timeout)

    def closed(self, version):
        return ("generation closed: %s;" % version) in self.server.logs()

    def wait_closed(self, version, timeout=5.0):
        deadline = time.monotonic() + timeout * mwtest.SLOW
        while not self.closed(version) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.closed(version)

    # -- tests --

    def test_edit_handler_is_served(self):
        self.start()
        self.assertEqual(self.hello("a").text, "v1:a")
        self.write_greeter("v2")
        self.assertEqual(self.wait_text("v2:", name="a").text, "v2:a")
        self.assertTrue(self.server.wait_log("reloaded (greeter.lua changed)"),
                        self.server.logs())
        self.assertRegex(self.server.logs(), r"reloaded \(greeter\.lua changed\): generation 2,")
        st = self.stats()
        self.assertEqual((st.generation, st.reloads, st.reload_failures), (2, 1, 0))

    def test_save_by_rename_is_picked_up(self):
        # how many editors save: write a hidden temp file, rename it over
        self.start()
        tmp = self.dir.write(".greeter.lua.tmp", greeter("v2", self.marks))
        os.replace(tmp, self.dir.file("greeter.lua"))
        self.assertEqual(self.wait_text("v2:").text, "v2:x")
        # the log line follows the swap, so a reply can arrive before it
        self.wait_count("reloaded (", 1)
        time.sleep(DEBOUNCE * 2)  # a second reload would be logged by now
        self.assertEqual(self.count_log("reloaded ("), 1, self.server.logs())

    def test_syntax_error_keeps_old_then_fix_is_picked_up(self):
        self.start()
        self.assertEqual(self.hello().text, "v1:x")
        self.assertEqual(self.stats().reload_failures, 0)
        broken = greeter("v2", self.marks, hello='return {text = "v2" .. }')
        line = next(i for i, l in enumerate(mwtest.dedent(broken).split("\n"), 1)
                    if '"v2" .. }' in l)
        self.write("greeter.lua", broken)
        self.assertTrue(self.server.wait_log("failed; still serving generation 1:"),
                        self.server.logs())
        self.assertTrue(self.server.wait_log("greeter.lua:%d:" % line),
                        "the log should name greeter.lua:%d:\n%s" % (line, self.server.logs()))
        self.assertIn("reload (greeter.lua changed) failed", self.server.logs())
        # the old generation keeps serving
        for _ in range(5):
            self.assertEqual(self.hello().text, "v1:x")
        st = self.stats()
        self.assertEqual((st.generation, st.reload_failures, st.reloads), (1, 1, 0))
        # the fix is picked up
        self.write_greeter("v3")
        self.wait_text("v3:")
        st = self.stats()
        self.assertEqual((st.generation, st.reload_failures), (2, 1))
        self.wait_count("reloaded (", 1)
        self.assertEqual(self.count_log("reloaded ("), 1)

    def test_handler_for_unknown_method_fails_reload(self):
        self.start()
        self.write_greeter("v2", extra="""
function R.Nope(req, ctx)
  return {text = "nope"}
end
""")
        self.assertTrue(self.server.wait_log("failed; still serving generation 1:"),
                        self.server.logs())
        # the file's problems follow the "failed" line, as lines of their own
        self.assertTrue(self.server.wait_log("rl.R has no method 'Nope'"), self.server.logs())
        self.assertRegex(self.server.logs(), r"greeter\.lua:\d+: rl\.R has no method 'Nope'")
        self.assertEqual(self.hello().text, "v1:x")
        self.assertEqual(self.call("Old", name="o").text, "v1:Old:o")
        st = self.stats()
        self.assertEqual((st.generation, st.reload_failures), (1, 1))
        self.assertNotIn("reloaded (", self.server.logs())

    def assertProtoReloadsClean(self):
        self.assertEqual(self.stats().reload_failures, 0, self.server.logs())
        self.assertNotIn("failed", self.server.logs())

    def test_added_rpc_is_callable_without_restart(self):
        self.start()
        # proto first: the old script is valid for the new proto too
        self.write("rl.proto", proto(rpcs=("Old", "Bye")))
        self.write_greeter("v2", rpcs=("Old", "Bye"))
        p2 = Protos(self.dir)
        r = self.poll(lambda: self.call("Bye", protos=p2, name="b"),
                      lambda r: not isinstance(r, grpc.RpcError) and r.text.startswith("v2:"),
                      "the added rpc Bye answering")
        # the handler of the added rpc sees the request the client sent
        self.assertEqual(r.text, "v2:Bye:b")
        self.assertEqual(self.call("Bye", protos=p2, name="again").text, "v2:Bye:again")
        self.assertEqual(self.hello().text, "v2:x")
        self.assertEqual(self.call("Old", name="o").text, "v2:Old:o")
        self.assertProtoReloadsClean()

    def test_rpc_changed_to_unary_gets_its_request(self):
        # Chat was registered at start as a streaming-request method; a
        # reload makes it unary: its handler must still get the request.
        self.start()
        self.write("rl.proto", proto().replace(
            "rpc Chat(stream Req) returns (stream Resp);", "rpc Chat(Req) returns (Resp);"))
        self.write_greeter("v2", extra="""
R.Chat = nil
function R.Chat(req, ctx)
  return {text = VERSION .. ":unary-chat:" .. req.name}
end
""")
        p2 = Protos(self.dir)
        fn = p2.unary(self.ch, "/rl.R/Chat")
        r = self.poll(lambda: fn(p2.msg("rl.Req")(name="c"), timeout=10),
                      lambda r: not isinstance(r, grpc.RpcError) and r.text.startswith("v2:"),
                      "Chat answering as a unary rpc")
        self.assertEqual(r.text, "v2:unary-chat:c")
        self.assertProtoReloadsClean()

    def test_proto_error_keeps_old(self):
        self.start()
        self.write("rl.proto", proto() + "\nmessage Broken {\n  strin x = 1;\n}\n")
        line = mwtest.dedent(proto()).count("\n") + 3
        self.assertTrue(self.server.wait_log("failed; still serving generation 1:"),
                        self.server.logs())
        self.assertTrue(self.server.wait_log("rl.proto:%d:" % line), self.server.logs())
        self.assertEqual(self.hello().text, "v1:x")
        self.assertEqual(self.stats().reload_failures, 1)
        # fixed again: picked up
        self.write("rl.proto", proto(rpcs=("Old", "Bye")))
        self.write_greeter("v2", rpcs=("Old", "Bye"))
        self.wait_text("v2:")

    def test_removed_rpc_is_unimplemented(self):
        self.start()
        self.assertEqual(self.call("Old", name="o").text, "v1:Old:o")
        self.write("rl.proto", proto(rpcs=("Old", "Bye")))
        self.write_greeter("v2", rpcs=("Old", "Bye"))
        p2 = Protos(self.dir)
        self.poll(lambda: self.call("Bye", protos=p2, name="b"),
                  lambda r: not isinstance(r, grpc.RpcError) and r.text.startswith("v2:Bye:"),
                  "the added rpc Bye answering")

        # remove the rpc that was there at start (script first, then proto)
        self.write_greeter("v3", rpcs=("Bye",))
        self.write("rl.proto", proto(rpcs=("Bye",)))
        err = self.poll(lambda: self.call("Old", name="o"),
                        lambda r: isinstance(r, grpc.RpcError) and
                        "unknown method" in (r.details() or ""),
                        "Old gone from the schema")
        self.assertEqual(err.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertEqual(err.details(), "unknown method /rl.R/Old")
        self.wait_text("v3:")
        self.assertTrue(self.call("Bye", protos=p2, name="b").text.startswith("v3:Bye:"))

        # and the one a reload added
        self.write_greeter("v4", rpcs=())
        self.write("rl.proto", proto(rpcs=()))
        err = self.poll(lambda: self.call("Bye", protos=p2, name="b"),
                        lambda r: isinstance(r, grpc.RpcError) and
                        "unknown method" in (r.details() or ""),
                        "Bye gone from the schema")
        self.assertEqual(err.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertEqual(err.details(), "unknown method /rl.R/Bye")
        self.assertEqual(self.hello().text, "v4:x")
        self.assertProtoReloadsClean()

    def test_changed_message_shape_is_seen_by_new_calls(self):
        self.start()
        self.assertEqual(self.hello("ab").text, "v1:ab")
        # proto first: the old script is valid for the new proto too
        self.write("rl.proto", proto(req_extra="  int32 times = 2;\n",
                                     resp_extra="  string extra = 3;\n"))
        self.write_greeter("v2", hello=(
            'return {text = VERSION .. ":" .. req.name, n = count, '
            'extra = string.rep(req.name, req.times)}'))
        p2 = Protos(self.dir)
        req = p2.msg("rl.Req")(name="ab", times=3)
        fn = p2.unary(self.ch, "/rl.R/Hello")
        r = self.poll(lambda: fn(req, timeout=10),
                      lambda r: not isinstance(r, grpc.RpcError) and r.text.startswith("v2:"),
                      "Hello with the new fields")
        self.assertEqual((r.text, r.extra), ("v2:ab", "ababab"))
        # a client with the old shape still gets its fields
        self.assertEqual(self.hello("cd").text, "v2:cd")
        self.assertProtoReloadsClean()

    def test_bidi_stream_keeps_its_generation(self):
        self.start(workers=1)
        chat = self.protos.bidi(self.ch, "/rl.R/Chat")
        Req = self.protos.msg("rl.Req")
        q = queue.Queue()

        def requests():
            for _ in range(100):
                item = q.get(timeout=30)
                if item is None:
                    return
                yield item

        responses = chat(requests(), timeout=30)
        try:
            q.put(Req(name="a"))
            self.assertEqual(next(responses).text, "v1:a")

            self.write_greeter("v2")
            self.wait_text("v2:")
            # the open stream still runs the old code, new calls the new
            q.put(Req(name="b"))
            self.assertEqual(next(responses).text, "v1:b")
            self.assertEqual(self.hello().text, "v2:x")
            q.put(Req(name="c"))
            self.assertEqual(next(responses).text, "v1:c")
            # a new stream gets the new code
            other = chat(iter([Req(name="d")]), timeout=10)
            self.assertEqual([r.text for r in other], ["v2:d"])
            self.assertFalse(self.closed("v1"), "generation 1 freed while a call uses it")
            # the stream and the Stats call itself; the calls that just
            # ended leave the count when their last completion is in
            st = self.poll(self.stats, lambda r: not isinstance(r, grpc.RpcError) and
                           r.live_calls == 2, "live_calls == 2 (the stream and Stats)")
            self.assertEqual(st.generation, 2)
        finally:
            q.put(None)
        self.assertEqual(list(responses), [])
        self.assertEqual(responses.code(), grpc.StatusCode.OK)

        # the stream was the last call on generation 1: it is freed
        self.assertTrue(self.wait_closed("v1"),
                        "generation 1 not freed after its last call ended\n"
                        + self.server.logs())
        st = self.stats()
        self.assertEqual((st.generation, st.live_calls), (2, 1))
        self.assertFalse(self.closed("v2"))

    def test_idle_old_generation_is_freed(self):
        # No call in flight when the reload is published: nothing holds the
        # old generation, so it goes without waiting for more traffic.
        self.start(workers=2)
        self.assertEqual(self.hello().text, "v1:x")
        self.write_greeter("v2")
        self.wait_count("reloaded (", 1)
        self.assertTrue(self.wait_closed("v1", timeout=3.0),
                        "generation 1 still not freed 3 s after generation 2 was "
                        "published with no call in flight\n" + self.server.logs())

    def test_sighup_reloads_with_watch_off(self):
        self.start(config="reload: {watch: false}\n")
        self.assertEqual(self.hello().text, "v1:x")
        self.write_greeter("v2")
        # a file change alone does not reload
        time.sleep(DEBOUNCE * 4)
        for _ in range(3):
            self.assertEqual(self.hello().text, "v1:x")
        self.assertNotIn("reloaded", self.server.logs())
        # SIGHUP does
        self.sighup_and_wait()
        self.assertEqual(self.hello().text, "v2:x")
        self.assertEqual(self.stats().generation, 2)
        # still no watching after the reload
        self.write_greeter("v3")
        time.sleep(DEBOUNCE * 4)
        self.assertEqual(self.hello().text, "v2:x")
        self.assertEqual(self.count_log("reloaded ("), 1)

    def test_debounce_makes_one_reload_of_a_burst(self):
        self.start()
        t0 = time.monotonic()
        for i in range(10):
            self.write_greeter("b%d" % i)
            time.sleep(0.01)
        span = time.monotonic() - t0
        if span >= DEBOUNCE * 0.75:
            self.skipTest("the writes took %.0f ms: too slow a machine to judge" % (span * 1000))
        self.wait_text("b9:")
        time.sleep(DEBOUNCE * 3)  # any second reload would be logged by now
        self.assertEqual(self.count_log("reloaded ("), 1, self.server.logs())
        self.assertEqual(self.stats().generation, 2)
        self.assertEqual(self.hello().text, "b9:x")

    def test_unrelated_changes_keep_module_state(self):
        # What editors and tools leave next to the sources is not what a
        # generation is built from: no reload, so no reset of module state.
        self.start(workers=1)
        self.assertEqual([self.hello().n for _ in range(3)], [1, 2, 3])
        self.write("4913", "")  # vim's check that it may write here
        os.unlink(self.dir.file("4913"))
        self.write("greeter.lua.swp", "swap")
        self.write("greeter.lua~", "backup")
        os.symlink("user@host.4242:1", self.dir.file(".#greeter.lua"))  # emacs' lock
        self.write("node_modules/left-pad/package.json", '{"name": "left-pad"}')
        os.rename(self.dir.file("node_modules"), self.marks.file("node_modules"))
        os.mkdir(self.dir.file("later"))
        # a wrong reload would be due after the debounce; let it come due
        time.sleep(DEBOUNCE * 2)
        self.assertEqual(self.hello().n, 4)
        # the new directory is watched: a .proto written into it reloads
        self.write("later/extra.proto", EXTRA_PROTO)
        self.wait_count("reloaded (extra.proto changed)", 1)
        self.assertEqual([self.hello().n for _ in range(2)], [1, 2])
        self.assertEqual(self.count_log("reloaded ("), 1, self.server.logs())
        st = self.stats()
        self.assertEqual((st.generation, st.reloads), (2, 1))

    def test_directory_moved_in_or_away_with_protos_reloads(self):
        self.start(workers=1)
        outside = self.service_dir({"extra/extra.proto": EXTRA_PROTO})
        self.assertEqual([self.hello().n for _ in range(2)], [1, 2])
        os.rename(outside.file("extra"), self.dir.file("extra"))
        self.wait_count("reloaded (extra changed)", 1)
        self.assertEqual(self.hello().n, 1)
        # moving it away takes its .proto out of the schema: a reload too
        os.rename(self.dir.file("extra"), outside.file("extra"))
        self.wait_count("reloaded (extra changed)", 2)
        self.assertEqual(self.hello().n, 1)
        self.assertEqual(self.count_log("reloaded ("), 2, self.server.logs())
        self.assertEqual(self.stats().generation, 3)
        self.assertProtoReloadsClean()

    def test_module_state_starts_fresh(self):
        self.start(workers=1)
        self.assertEqual([self.hello().n for _ in range(3)], [1, 2, 3])
        self.sighup_and_wait()
        self.assertEqual([self.hello().n for _ in range(2)], [1, 2])
        self.write_greeter("v2")
        self.assertEqual(self.wait_text("v2:").n, 1)  # the first call on v2
        self.assertEqual(self.hello().n, 2)
        self.assertEqual(self.stats().generation, 3)

    def test_state_handed_over_with_on_reload(self):
        keep = """
mw.on_reload(function() return {count = count, tags = {"a", "b"}, ok = true} end)
mw.on_restore(function(saved)
  if saved and saved.ok then count = saved.count + 1000 * #saved.tags end
end)
"""
        self.start(workers=1)
        self.write_greeter("v2", extra=keep)
        self.assertEqual(self.wait_text("v2:").n, 1)  # v1 had no on_reload
        self.assertEqual(self.hello().n, 2)
        self.write_greeter("v3", extra=keep)
        # v2 handed {count = c, tags = {a, b}, ok = true} over, c being the
        # calls v2 served (2 and the polls while v3 loaded): 2000 + c + 1
        n = self.wait_text("v3:").n
        self.assertGreater(n, 2002)
        self.assertLess(n, 2500)

    def test_on_reload_returning_a_function_is_logged_not_fatal(self):
        bad = """
mw.on_reload(function() return {f = print} end)
mw.on_restore(function(saved) count = 50 end)
"""
        self.start(workers=1, version="v1")
        self.write_greeter("v2", extra=bad)
        self.wait_text("v2:")
        self.write_greeter("v3", extra=bad)
        # restore does not run when the hand-over fails; the count restarts
        self.assertEqual(self.wait_text("v3:").n, 1)
        self.wait_count("cannot be handed over (function)", 1)

    def test_many_reloads_no_failed_call_no_leak(self):
        self.start(workers=2, config="reload: {watch: false}\n")
        failures = []

        def check_call(i):
            try:
                r = self.hello("r%d" % i)
                if r.text != "v1:r%d" % i:
                    failures.append("after reload %d: %r" % (i, r.text))
            except grpc.RpcError as e:
                failures.append("after reload %d: %s %s" % (i, e.code(), e.details()))

        def settled_rss():
            time.sleep(0.3)
            for _ in range(6):  # collect on both workers
                self.stats(gc=True)
            time.sleep(0.1)
            return rss_kib(self.server.pid)

        limit = 60 * mwtest.SLOW
        deadline = time.monotonic() + limit
        rss20 = None
        for i in range(1, 201):
            self.assertLess(time.monotonic(), deadline, "200 reloads took over %d s" % limit)
            self.sighup_and_wait()
            if i % 20 == 0:
                check_call(i)
            if i == 20:
                rss20 = settled_rss()
        rss200 = settled_rss()
        self.assertEqual(failures, [])
        st = self.stats()
        self.assertEqual((st.generation, st.reloads, st.reload_failures), (201, 200, 0))
        self.assertTrue(self.server.alive())
        growth_mib = (rss200 - rss20) / 1024.0
        if mwtest.SANITIZED:
            return  # ASan's quarantine holds freed memory; LSan checks at exit
        self.assertLess(growth_mib, 20.0,
                        "RSS grew by %.1f MiB from reload 20 (%d KiB) to reload 200 (%d KiB)"
                        % (growth_mib, rss20, rss200))


if __name__ == "__main__":
    mwtest.main()
