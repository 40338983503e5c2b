"""`make install`: the installed binary carries its Lua library and serves
from any directory; MOONWIRE_LUA_DIR replaces the embedded library."""
import os
import shutil
import subprocess
import tempfile
import unittest

import mwtest
from mwtest import BUILD_DIR, SOURCE_DIR, Protos, Server, example, service_dir

PROTO = """
syntax = "proto3";
package inst;
service Probe { rpc Version (Empty) returns (Text); rpc Broken (Empty) returns (Text); }
message Empty {}
message Text { string text = 1; }
"""

SCRIPT = """
local mw = require "moonwire"
local Probe = mw.service "inst.Probe"
function Probe.Version() return {text = mw.version} end
function Probe.Broken() mw.log.info(nil) end
return Probe
"""


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.prefix = tempfile.mkdtemp(prefix="mw-install-")
        r = subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", cls.prefix],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise AssertionError("cmake --install failed:\n" + r.stdout + r.stderr)
        cls.bin = os.path.join(cls.prefix, "bin", "moonwire")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.prefix, ignore_errors=True)

    def test_installs_one_binary(self):
        self.assertTrue(os.access(self.bin, os.X_OK))
        files = [os.path.relpath(os.path.join(d, f), self.prefix)
                 for d, _, fs in os.walk(self.prefix) for f in fs]
        self.assertEqual(files, ["bin/moonwire"])

    def test_serves_a_copy_of_helloworld_from_elsewhere(self):
        # The service lives outside the source tree and the server runs in /,
        # without the development override: only the binary is used.
        copy = tempfile.mkdtemp(prefix="mw-install-hello-")
        self.addCleanup(shutil.rmtree, copy, True)
        shutil.copytree(example("helloworld"), copy, dirs_exist_ok=True)
        protos = Protos(copy)
        with Server(copy, bin=self.bin, cwd="/", env={"MOONWIRE_LUA_DIR": None}) as s:
            say = protos.unary(s.channel(), "/helloworld.Greeter/SayHello")
            reply = say(protos.msg("helloworld.HelloRequest")(name="Ada"), timeout=10)
            self.assertEqual(reply.message, "Hello Ada")
            self.assertEqual(s.stop(), 0, s.logs())

    def test_protos_of_the_project_are_compiled_in(self):
        d = service_dir(self, {
            "rich.proto": """
                syntax = "proto3";
                package rich;
                import "google/rpc/status.proto";
                service Echo { rpc Same (google.rpc.Status) returns (google.rpc.Status); }
            """,
            "rich.lua": """
                local mw = require "moonwire"
                local Echo = mw.service "rich.Echo"
                function Echo.Same(st) return st end
                return Echo
            """})
        tmp = tempfile.mkdtemp(prefix="mw-install-tmp-")
        self.addCleanup(shutil.rmtree, tmp, True)
        env = dict(os.environ, TMPDIR=tmp)
        env.pop("MOONWIRE_PROTO_DIR", None)
        r = subprocess.run([self.bin, "check", d.path], capture_output=True, text=True,
                           timeout=60, env=env, cwd="/")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("/rich.Echo/Same", r.stdout)
        # the private copy protoc read them from is gone with the process
        self.assertEqual(os.listdir(tmp), [])

    def test_tracebacks_name_the_library_files(self):
        d = service_dir(self, {"inst.proto": PROTO, "probe.lua": SCRIPT})
        protos = Protos(d.path)
        with Server(d, bin=self.bin, cwd="/", env={"MOONWIRE_LUA_DIR": None}) as s:
            broken = protos.unary(s.channel(), "/inst.Probe/Broken")
            with self.assertRaises(mwtest.grpc.RpcError) as cm:
                broken(protos.msg("inst.Empty")(), timeout=10)
            self.assertEqual(cm.exception.code(), mwtest.grpc.StatusCode.INTERNAL)
            self.assertTrue(s.wait_log("moonwire/init.lua:"), s.logs())

    def test_lua_dir_replaces_the_embedded_library(self):
        lib = tempfile.mkdtemp(prefix="mw-install-lua-")
        self.addCleanup(shutil.rmtree, lib, True)
        shutil.copytree(os.path.join(SOURCE_DIR, "lua"), lib, dirs_exist_ok=True)
        init = os.path.join(lib, "moonwire", "init.lua")
        with open(init) as f:
            text = f.read()
        self.assertIn("M.version = core.version", text)
        with open(init, "w") as f:
            f.write(text.replace("M.version = core.version", 'M.version = "from-lua-dir"'))
        d = service_dir(self, {"inst.proto": PROTO, "probe.lua": SCRIPT})
        protos = Protos(d.path)
        version = lambda s: protos.unary(s.channel(), "/inst.Probe/Version")(
            protos.msg("inst.Empty")(), timeout=10).text
        with Server(d, bin=self.bin, env={"MOONWIRE_LUA_DIR": lib}) as s:
            self.assertEqual(version(s), "from-lua-dir")
        with Server(d, bin=self.bin, env={"MOONWIRE_LUA_DIR": None}) as s:
            self.assertRegex(version(s), r"^\d+\.\d+\.\d+$")


if __name__ == "__main__":
    mwtest.main()
