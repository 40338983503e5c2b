"""The Lua sandbox and a log that attackers write into: each escape of the
sandbox list tried from a handler (it raises or finds nil, and the server
keeps serving), globals not shared between calls, lua.unsafe giving the
libraries back, print in the log; hostile log content kept one escaped,
bounded line per record, and an error storm rate-limited."""

import os
import re
import time

import grpc

import mwtest
from mwtest import Protos, Server

PROTO = """
syntax = "proto3";
package sb;

message Req { string name = 1; }
message Resp { string text = 1; }

service S {
  rpc Try(Req) returns (Resp);
  rpc Log(Req) returns (Resp);
}
"""

# Each attempt runs under pcall in the handler; the reply is
# "raised: <message>" or "ok: <what it returned>".
LUA = r"""
local mw = require "moonwire"
local S = mw.service "sb.S"

local DIR = [[@DIR@]]
VISIBLE = "set at load time"
local calls = 0 -- module state: explicit, per worker

local bytecode = "\27LuaT\0\25\147\r\n\26\n\4\8\8xV\0\0\0\0\0\0\0\0\0\0\0(w@\1"

local attempts = {
  io_popen = function() return io.popen("id") end,
  io_open = function() return io.open("/etc/passwd") end,
  require_io = function() return require("io") end,
  os_execute = function() return os.execute("true") end,
  os_exit = function() return os.exit(3) end,
  os_remove = function() return os.remove(DIR .. "/sb.lua") end,
  os_rename = function() return os.rename(DIR .. "/sb.lua", DIR .. "/x.lua") end,
  os_tmpname = function() return os.tmpname() end,
  os_setlocale = function() return os.setlocale("C") end,
  os_time = function() return math.type(os.time()) end,
  os_getenv = function() return os.getenv("MW_SANDBOX_TEST") end,
  package_loadlib = function() return package.loadlib("libc.so.6", "*") end,
  package_searchers = function() return tostring(package.searchers) end,
  package_cpath = function() return tostring(package.cpath) end,
  package_path_write = function() package.path = "/tmp/?.lua" end,
  package_loaded_write = function() package.loaded.moonwire = {} end,
  package_preload = function() return tostring(package.preload) end,
  require_c = function() return require("sb_native") end,
  require_lua = function() return require("sb_helper").answer end,
  load_bytecode = function()
    local f, err = load(bytecode, "=x", "b")
    return tostring(f) .. " " .. tostring(err)
  end,
  load_text = function() return load("return 6 * 7")() end,
  load_text_env = function() return load("return x", "=x", "t", {x = "env"})() end,
  string_dump = function() return string.dump(function() end) end,
  method_dump = function() return ("").dump(function() end) end,
  debug_sethook = function() return debug.sethook(function() end, "l") end,
  debug_getregistry = function() return debug.getregistry() end,
  debug_setupvalue = function() return debug.setupvalue(S.Try, 1, nil) end,
  debug_getupvalue = function() return debug.getupvalue(S.Try, 1) end,
  debug_getlocal = function() return debug.getlocal(1, 1) end,
  debug_upvaluejoin = function() return debug.upvaluejoin(S.Try, 1, S.Log, 1) end,
  debug_setmetatable = function() return debug.setmetatable(1, {}) end,
  debug_getinfo = function() return debug.getinfo(1) end,
  debug_traceback = function() return (debug.traceback("tb"):match("^tb\nstack traceback:")) end,
  dofile_passwd = function() return dofile("/etc/passwd") end,
  loadfile_passwd = function()
    local f, err = loadfile("/etc/passwd")
    return tostring(f) .. " " .. tostring(err)
  end,
  dofile_link = function() return dofile(DIR .. "/files/passwd_link.lua") end,
  dofile_stdin = function() return dofile() end,
  dofile_inside = function() return dofile(DIR .. "/files/data.lua") end,
  string_mt_index = function() getmetatable("").__index = {} end,
  string_mt_method = function() getmetatable("").__index.upper = nil end,
  string_mt_set = function() return setmetatable("", {}) end,
  string_write = function() string.upper = nil end,
  string_method_still = function() return ("abc"):upper() end,
  rawset_string = function() rawset(string, "evil", 1) end,
  rawset_table = function() rawset(table, "insert", nil) end,
  rawset_G = function() rawset(_G, "leak", 1) end,
  rawset_mw = function() rawset(mw, "fail", nil) end,
  rawset_plain = function() local t = {} rawset(t, "k", "v") return t.k end,
  mw_write = function() mw.fail = nil end,
  mw_log_write = function() mw.log.error = print end,
  mw_codes_write = function() mw.codes.OK = 5 end,
  table_insert_lib = function() table.insert(math, 1) end,
  setmetatable_G = function() return setmetatable(_G, nil) end,
  getmetatable_G = function() return tostring(getmetatable(_G)) end,
  ctx_metatable = function(ctx) return tostring(getmetatable(ctx)) end,
  collect_stop = function() return collectgarbage("stop") end,
  collect_tune = function() return collectgarbage("incremental", 0, 0) end,
  collect_count = function() return math.type(collectgarbage("count")) end,
  global_write = function(ctx, name) leak = name end,
  global_write_G = function(ctx, name) _G.leak = name end,
  global_write_co = function(ctx, name) coroutine.wrap(function() leak = name end)() end,
  global_read = function() return tostring(leak) end,
  global_visible = function() return VISIBLE end,
  global_pairs = function()
    local n = 0
    for k in pairs(_G) do n = n + 1 end
    return n > 10 and "many" or tostring(n)
  end,
  module_state = function() calls = calls + 1 return calls > 0 and "counted" end,
  print = function(ctx, name) print("printed by", name) return "printed" end,
}

function S.Try(req, ctx)
  local fn = attempts[req.name]
  if not fn then return {text = "no attempt " .. req.name} end
  local ok, res = pcall(fn, ctx, req.name)
  if ok then return {text = "ok: " .. tostring(res)} end
  return {text = "raised: " .. tostring(res)}
end

function S.Log(req, ctx)
  if req.name == "hostile" then
    mw.log.error("esc \27[31mred\27[0m bell \7 cr \r nl \n2030-01-01T00:00:00.000Z error forged",
                 {field = "v\27]0;title\7"})
  elseif req.name == "big" then
    mw.log.error(string.rep("z", 2 * 1024 * 1024))
  elseif req.name == "storm" then
    for i = 1, 10000 do mw.log.error("storm " .. i) end
  else
    mw.log.error("after the storm")
  end
  return {text = "logged"}
end
"""

HELPER = """
local M = {answer = 42}
return M
"""

RAISES = {
    "io_popen": "global 'io'",
    "io_open": "global 'io'",
    "require_io": "module 'io' not found",
    "os_execute": "field 'execute'",
    "os_exit": "field 'exit'",
    "os_remove": "field 'remove'",
    "os_rename": "field 'rename'",
    "os_tmpname": "field 'tmpname'",
    "os_setlocale": "field 'setlocale'",
    "package_loadlib": "field 'loadlib'",
    "package_path_write": "read-only table 'package'",
    "package_loaded_write": "read-only table 'package.loaded'",
    "require_c": "module 'sb_native' not found",
    "string_dump": "field 'dump'",
    "method_dump": "field 'dump'",
    "debug_sethook": "field 'sethook'",
    "debug_getregistry": "field 'getregistry'",
    "debug_setupvalue": "field 'setupvalue'",
    "debug_getupvalue": "field 'getupvalue'",
    "debug_getlocal": "field 'getlocal'",
    "debug_upvaluejoin": "field 'upvaluejoin'",
    "debug_setmetatable": "field 'setmetatable'",
    "debug_getinfo": "field 'getinfo'",
    "dofile_passwd": "/etc/passwd: only files inside the service directories",
    "dofile_link": "passwd_link.lua: only files inside the service directories",
    "dofile_stdin": "standard input",
    "string_mt_index": "read-only table 'string metatable'",
    "string_mt_method": "read-only table 'string'",
    "string_mt_set": "table expected",
    "string_write": "read-only table 'string' (key 'upper')",
    "rawset_string": "rawset: the table is read-only",
    "rawset_table": "rawset: the table is read-only",
    "rawset_G": "rawset: the table is read-only",
    "rawset_mw": "rawset: the table is read-only",
    "mw_write": "read-only table 'moonwire' (key 'fail')",
    "mw_log_write": "read-only table 'moonwire.log' (key 'error')",
    "mw_codes_write": "read-only table",
    "table_insert_lib": "read-only table 'math'",
    "setmetatable_G": "cannot change a protected metatable",
    "collect_stop": "collectgarbage('stop') is not available",
    "collect_tune": "collectgarbage('incremental') is not available",
    "global_write": "cannot assign the global 'leak'",
    "global_write_G": "cannot assign the global 'leak'",
    "global_write_co": "cannot assign the global 'leak'",
}

RETURNS = {
    "os_time": "ok: integer",
    "os_getenv": "ok: from the environment",
    "package_searchers": "ok: nil",
    "package_cpath": "ok: nil",
    "package_preload": "ok: nil",
    "require_lua": "ok: 42",
    "load_text": "ok: 42",
    "load_text_env": "ok: env",
    "debug_traceback": "ok: tb\nstack traceback:",
    "dofile_inside": "ok: inside",
    "string_method_still": "ok: ABC",
    "rawset_plain": "ok: v",
    "getmetatable_G": "ok: false",
    "ctx_metatable": "ok: false",
    "collect_count": "ok: float",
    "global_read": "ok: nil",
    "global_visible": "ok: set at load time",
    "global_pairs": "ok: many",
    "module_state": "ok: counted",
    "print": "ok: printed",
}


def make_dir(test):
    d = test.service_dir({"sb.proto": PROTO, "sb_helper.lua": HELPER,
                          "files/data.lua": 'return "inside"\n'})
    d.write("sb.lua", LUA.replace("@DIR@", d.path))
    os.symlink("/etc/passwd", d.file("files/passwd_link.lua"))
    return d


class Sandbox(mwtest.TestCase):
    def setUp(self):
        self.dir = make_dir(self)
        self.protos = Protos(self.dir)

    def start(self, config="workers: 1\n"):
        server = Server(self.dir, config=config,
                        env=dict(os.environ, MW_SANDBOX_TEST="from the environment"))
        server.start()
        self.addCleanup(server.close)
        return server

    def attempt(self, server, name):
        fn = self.protos.unary(server.channel(), "/sb.S/Try")
        return fn(self.protos.msg("sb.Req")(name=name), timeout=10).text

    def test_every_escape_raises_or_finds_nil(self):
        server = self.start()
        for name, want in RAISES.items():
            with self.subTest(attempt=name):
                got = self.attempt(server, name)
                self.assertTrue(got.startswith("raised: "), got)
                self.assertIn(want, got)
        # binary chunks: refused even when asked for mode "b"
        got = self.attempt(server, "load_bytecode")
        self.assertRegex(got, r"^ok: nil .*attempt to load a binary chunk")
        got = self.attempt(server, "loadfile_passwd")
        self.assertRegex(got, r"^ok: nil /etc/passwd: only files inside the service directories")
        for name, want in RETURNS.items():
            with self.subTest(attempt=name):
                self.assertEqual(self.attempt(server, name), want)
        # os.exit and the rest left the server serving, on its one worker
        self.assertEqual(self.attempt(server, "string_method_still"), "ok: ABC")
        self.assertIsNone(server.proc.poll())

    def test_globals_are_not_shared_between_calls(self):
        server = self.start()  # one worker: both calls run in the same state
        self.assertIn("cannot assign the global 'leak'",
                      self.attempt(server, "global_write"))
        self.assertEqual(self.attempt(server, "global_read"), "ok: nil")
        self.assertIn("rawset: the table is read-only", self.attempt(server, "rawset_G"))
        self.assertEqual(self.attempt(server, "global_read"), "ok: nil")

    def test_print_goes_to_the_log(self):
        server = self.start()
        self.assertEqual(self.attempt(server, "print"), "ok: printed")
        self.assertTrue(server.wait_log("printed by\\tprint at="), server.logs())
        line = [l for l in server.logs().splitlines() if "printed by" in l][0]
        self.assertRegex(line, r"^\S+ info printed by\\tprint at=\S*sb\.lua:\d+$")

    def test_unsafe_gives_the_libraries_back(self):
        server = self.start("workers: 1\nlua: {unsafe: true}\n")
        self.assertEqual(self.attempt(server, "os_tmpname")[:4], "ok: ")
        self.assertEqual(self.attempt(server, "debug_getregistry")[:4], "ok: ")
        self.assertEqual(self.attempt(server, "package_loadlib")[:4], "ok: ")
        got = self.attempt(server, "io_open")
        self.assertTrue(got.startswith("ok: file ("), got)
        # globals are the worker's, shared between calls, as without the sandbox
        self.assertEqual(self.attempt(server, "global_write"), "ok: nil")
        self.assertEqual(self.attempt(server, "global_read"), "ok: global_write")


class HostileLogs(mwtest.TestCase):
    """One server: the storm comes last (unittest runs tests by name)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = mwtest.ServiceDir({"sb.proto": PROTO, "sb_helper.lua": HELPER})
        cls.dir.write("sb.lua", LUA.replace("@DIR@", cls.dir.path))
        cls.protos = Protos(cls.dir)
        cls.server = Server(cls.dir, config="workers: 1\n").start()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        cls.dir.cleanup()

    def log(self, what):
        fn = self.protos.unary(self.server.channel(), "/sb.S/Log")
        return fn(self.protos.msg("sb.Req")(name=what), timeout=30).text

    def assertOneLinePerRecord(self):
        for raw in self.server.log_lines():
            line = raw.rstrip(b"\n")
            self.assertRegex(line, rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) ")
            self.assertFalse(re.search(rb"[\x00-\x1f\x7f]", line), line[:200])
            self.assertLessEqual(len(raw), 16384)

    def test_1_control_bytes_are_escaped(self):
        self.assertEqual(self.log("hostile"), "logged")
        self.assertTrue(self.server.wait_log("esc \\x1b[31mred"), self.server.logs())
        self.assertIn(r"esc \x1b[31mred\x1b[0m bell \x07 cr \r nl \n2030-01-01T00:00:00.000Z "
                      r"error forged field=v\x1b]0;title\x07", self.server.logs())
        self.assertNotIn("\n2030-01-01", self.server.logs())
        self.assertOneLinePerRecord()

    def test_2_big_record_is_cut_with_its_header(self):
        self.assertEqual(self.log("big"), "logged")
        self.assertTrue(self.server.wait_log("bytes cut]"), self.server.logs()[-500:])
        line = [l for l in self.server.logs().splitlines() if "bytes cut]" in l][0]
        m = re.match(r"^\S+Z error (z+) \[truncated: (\d+) bytes cut\]$", line)
        self.assertTrue(m, line[:100] + "..." + line[-100:])
        self.assertEqual(len(m.group(1)) + int(m.group(2)), 2 * 1024 * 1024)
        self.assertOneLinePerRecord()

    def test_3_error_storm_is_rate_limited(self):
        self.assertEqual(self.log("storm"), "logged")
        time.sleep(1.2)  # the bucket refills
        self.assertEqual(self.log("after"), "logged")
        self.assertTrue(self.server.wait_log("after the storm"), self.server.logs()[-500:])
        logs = self.server.logs()
        written = len(re.findall(r" error storm \d+\n", logs))
        self.assertGreaterEqual(written, 150)
        self.assertLess(written, 500)
        # a token that comes back mid-storm lets one record out, after a
        # count of those refused so far
        counts = [int(n) for n in re.findall(
            r" warn (\d+) log records suppressed \(rate limit: 100 per second", logs)]
        self.assertTrue(counts, logs[-500:])
        self.assertEqual(sum(counts) + written, 10000)
        self.assertOneLinePerRecord()
        # and the server still serves
        self.assertEqual(self.log("hostile"), "logged")


if __name__ == "__main__":
    mwtest.main()
