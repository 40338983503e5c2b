"""moonwire test: a directory's *_spec.lua files run by busted inside the
runtime, against the directory served in the same process: the example
specs pass, a failing one fails with busted's output and status, the
client's four call shapes, status errors, the test clock over sleeps and
deadlines, stubs answering a handler's downstream, a reload between spec
files, and the specs `moonwire new` writes."""
import os
import shutil
import tempfile
import time
import unittest

import mwtest
from mwtest import example, run_cli, service_dir

HELLO = example("helloworld")

DEMO_PROTO = """
    syntax = "proto3";
    package demo;

    service Slow {
      rpc Wait(Req) returns (Reply);
      rpc Fail(Req) returns (Reply);
      rpc Count(Req) returns (Reply);
      rpc Ask(Req) returns (Reply);
      rpc Ticks(Req) returns (stream Reply);
      rpc Remember(Req) returns (Reply);
    }

    // No handler: the stub file answers it.
    service Upstream {
      rpc Lookup(Req) returns (Reply);
    }

    message Req { double seconds = 1; string name = 2; }
    message Reply { string message = 1; double slept = 2; }
"""

DEMO_LUA = """
    local mw = require "moonwire"
    local Slow = mw.service "demo.Slow"
    local upstream = mw.client("upstream.internal:9000")
    local n = 0

    function Slow.Wait(req, ctx)
      local t0 = mw.now()
      mw.sleep(req.seconds)
      return {message = "awake", slept = mw.now() - t0}
    end

    function Slow.Fail(req)
      mw.fail(mw.NOT_FOUND, "no " .. req.name,
              {mw.details.ErrorInfo{reason = "MISSING", domain = "demo"}})
    end

    function Slow.Count()
      n = n + 1
      return {message = tostring(n)}
    end

    -- upstream.internal does not exist: under test the in-process server
    -- answers, here with the stub of demo.Upstream/Lookup.
    function Slow.Ask(req)
      local res, err = upstream:call("/demo.Upstream/Lookup", {name = req.name}, {timeout = 2})
      if not res then mw.fail(err) end
      return {message = "upstream said " .. res.message}
    end

    function Slow.Remember(req)
      local cache = mw.shared.cache
      if cache:get(req.name) then return {message = "seen"} end
      cache:set(req.name, true, 60)
      return {message = "new"}
    end

    function Slow.Ticks(req, stream)
      for i = 1, 3 do
        mw.sleep(req.seconds)
        stream:send{message = "tick " .. i}
      end
    end
"""

DEMO_STUBS = """
    - service: demo.Upstream
      method: Lookup
      input:
        equals: {name: ada}
      output:
        data: {message: "found ada"}
"""

# What a test run replaces: an address this host does not have, workers,
# TLS files that do not exist.
DEMO_CONFIG = """
    listen: 203.0.113.1:50051
    workers: 4
    tls:
      cert: /nonexistent/cert.pem
      key: /nonexistent/key.pem
    client:
      allow: ["upstream.internal:9000"]
    shared:
      cache: {size: 1MiB}
"""

# The clock: sleeps of an hour and a deadline of a minute, advanced past.
CLOCK_SPEC = """
    local mw = require "moonwire"
    describe("the test clock", function()
      local c = mw.test.client()

      it("ends a handler's sleep", function()
        local f = c:start("demo.Slow/Wait", {seconds = 3600})
        mw.test.clock.advance(3600)
        local res, err = f:wait()
        assert.is_nil(err)
        assert.are.equal("awake", res.message)
        assert.is_true(res.slept >= 3600)          -- mw.now moved too
        assert.is_true(mw.test.clock.offset() >= 3600)
      end)

      it("passes a call's deadline", function()
        local f = c:start("demo.Slow/Wait", {seconds = 600}, {timeout = 60})
        mw.test.clock.advance(61)
        local res, err = f:wait()
        assert.is_nil(res)
        assert.are.equal(mw.DEADLINE_EXCEEDED, err.code)
      end)

      it("expires shared dict entries", function()
        local function remember() return c:call("demo.Slow/Remember", {name = "ada"}).message end
        assert.are.equal("new", remember())
        mw.test.clock.advance(59)
        assert.are.equal("seen", remember())
        mw.test.clock.advance(2)
        assert.are.equal("new", remember())
      end)

      it("paces a stream", function()
        local s = c:open("demo.Slow/Ticks", {seconds = 30})
        for i = 1, 3 do
          mw.test.clock.advance(30)
          assert.are.equal("tick " .. i, s:recv().message)
        end
        assert.is_true(s:finish())
      end)
    end)
"""

CALLS_SPEC = """
    local mw = require "moonwire"
    describe("calls", function()
      local c = mw.test.client()

      it("returns nil and the status error", function()
        local res, err = c:call("demo.Slow/Fail", {name = "bob"})
        assert.is_nil(res)
        assert.are.equal(mw.NOT_FOUND, err.code)
        assert.are.equal("no bob", err.message)
        assert.are.equal("MISSING", err.details[1].reason)
      end)

      it("counts from a fresh state in each spec file", function()
        assert.are.equal("1", c:call("demo.Slow/Count", {}).message)
        assert.are.equal("2", c:call("demo.Slow/Count", {}).message)
        mw.test.reload()
        assert.are.equal("1", c:call("demo.Slow/Count", {}).message)
      end)

      it("has the directory's stubs answer a handler's downstream", function()
        assert.are.equal("found ada", c:call("demo.Upstream/Lookup", {name = "ada"}).message)
        assert.are.equal("upstream said found ada", c:call("demo.Slow/Ask", {name = "ada"}).message)
        local res, err = c:call("demo.Slow/Ask", {name = "zed"})  -- no stub matches
        assert.is_nil(res)
        assert.are.equal(mw.UNIMPLEMENTED, err.code)
      end)

      it("raises on a method the protos lack", function()
        assert.has_error(function() c:call("demo.Slow/Nope", {}) end)
      end)
    end)
"""

# A second file: the reload between files gives the counter back its 1.
RELOAD_SPEC = """
    local mw = require "moonwire"
    describe("another spec file", function()
      it("starts from fresh handler states", function()
        assert.are.equal("1", mw.test.client():call("demo.Slow/Count", {}).message)
      end)
    end)
"""


class MoonwireTest(mwtest.TestCase):
    def test_helloworld_spec_passes(self):
        r = run_cli("test", HELLO)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("1 success / 0 failures / 0 errors", r.stdout)

    def test_routeguide_spec_streams(self):
        r = run_cli("test", example("routeguide"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("4 successes / 0 failures / 0 errors", r.stdout)

    def test_failing_spec_fails_with_busted_output(self):
        tmp = tempfile.mkdtemp(prefix="mw-e2e-")
        self.addCleanup(shutil.rmtree, tmp, True)
        d = os.path.join(tmp, "hello")
        shutil.copytree(HELLO, d)
        with open(os.path.join(d, "wrong_spec.lua"), "w") as f:
            f.write('local mw = require "moonwire"\n'
                    'describe("greeter", function()\n'
                    '  it("is polite", function()\n'
                    '    local res = mw.test.client():call("helloworld.Greeter/SayHello", {name = "Ada"})\n'
                    '    assert.are.equal("Good day Ada", res.message)\n'
                    '  end)\n'
                    'end)\n')
        r = run_cli("test", d)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("1 success / 1 failure / 0 errors", r.stdout)
        self.assertIn("wrong_spec.lua", r.stdout)
        self.assertIn("Hello Ada", r.stdout)  # luassert's "Passed in"
        # a spec is not a handler script: check and serve leave it alone
        c = run_cli("check", d)
        self.assertEqual(c.returncode, 0, c.stdout + c.stderr)

    def test_clock_calls_stubs_and_reloads(self):
        d = service_dir(self, {"demo.proto": DEMO_PROTO, "slow.lua": DEMO_LUA,
                               "upstream.stubs.yaml": DEMO_STUBS, "moonwire.yaml": DEMO_CONFIG,
                               "clock_spec.lua": CLOCK_SPEC, "calls_spec.lua": CALLS_SPEC,
                               "reload_spec.lua": RELOAD_SPEC})
        t0 = time.monotonic()
        r = run_cli("test", d, timeout=60)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("9 successes / 0 failures / 0 errors", r.stdout)
        # an hour of sleep, a minute's deadline and TTL, 90 s of ticks: in seconds
        self.assertLess(elapsed, 20 * mwtest.SLOW, r.stdout)

    def test_new_writes_passing_specs(self):
        tmp = tempfile.mkdtemp(prefix="mw-e2e-")
        self.addCleanup(shutil.rmtree, tmp, True)
        d = os.path.join(tmp, "shop")
        r = run_cli("new", d)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.isfile(os.path.join(d, "shop_spec.lua")))
        self.assertIn("moonwire test " + d, r.stdout)
        t = run_cli("test", d)
        self.assertEqual(t.returncode, 0, t.stdout + t.stderr)
        self.assertIn("3 successes / 0 failures / 0 errors", t.stdout)
        c = run_cli("check", d)
        self.assertEqual(c.returncode, 0, c.stdout + c.stderr)
        self.assertIn("2 methods, 2 with handlers", c.stdout)

        g = os.path.join(tmp, "guide")
        r = run_cli("new", g, "--proto", os.path.join(example("routeguide"), "route_guide.proto"))
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(g, "route_guide_spec.lua")) as f:
            spec = f.read()
        for m in ("GetFeature", "ListFeatures", "RecordRoute", "RouteChat"):
            self.assertIn('c:call("routeguide.RouteGuide/%s"' % m, spec)
        t = run_cli("test", g)
        self.assertEqual(t.returncode, 0, t.stdout + t.stderr)
        self.assertIn("4 successes / 0 failures / 0 errors", t.stdout)
        c = run_cli("check", g)
        self.assertEqual(c.returncode, 0, c.stdout + c.stderr)

    def test_usage_and_bad_directories(self):
        r = run_cli("test", HELLO, "extra")
        self.assertEqual(r.returncode, 64, r.stderr)
        self.assertIn("unexpected argument", r.stderr)
        r = run_cli("test", "--nope")
        self.assertEqual(r.returncode, 64, r.stderr)
        r = run_cli("test", "--listen", "127.0.0.1:0", HELLO)
        self.assertEqual(r.returncode, 64, r.stderr)
        self.assertIn("options of serve", r.stderr)
        r = run_cli("test", "/nonexistent/dir")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("not a directory", r.stderr)


if __name__ == "__main__":
    unittest.main()
