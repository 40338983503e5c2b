"""examples/helloworld served by the real binary, and the basic CLI."""
import unittest

import mwtest
from mwtest import Protos, Server, example, run_cli

HELLO = example("helloworld")


class HelloWorld(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.protos = Protos(HELLO)

    def test_say_hello(self):
        with Server(HELLO) as s:
            say = self.protos.unary(s.channel(), "/helloworld.Greeter/SayHello")
            Req = self.protos.msg("helloworld.HelloRequest")
            reply = say(Req(name="Ada"), timeout=10)
            self.assertEqual(reply.message, "Hello Ada")
            reply = say(Req(name=""), timeout=10)
            self.assertEqual(reply.message, "Hello ")
            self.assertEqual(s.stop(), 0, s.logs())

    def test_check(self):
        r = run_cli("check", HELLO)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("ok: 1 service, 1 method, 1 with handlers", r.stdout)
        self.assertRegex(r.stdout, r"/helloworld\.Greeter/SayHello +unary +handler")

    def test_version(self):
        r = run_cli("--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^moonwire \d+\.\d+")

    def test_help(self):
        for flag in ("--help", "-h"):
            r = run_cli(flag)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("usage: moonwire serve", r.stdout)

    def test_bad_usage(self):
        r = run_cli("frobnicate")
        self.assertNotEqual(r.returncode, 0)
        r = run_cli()
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    mwtest.main()
