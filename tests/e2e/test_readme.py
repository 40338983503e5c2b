"""The README's five-minute tour runs as written: its shop/ files are
examples/shop, served and called the way the README shows."""
import json
import os
import re
import shlex
import subprocess
import time
import unittest

import grpc

import mwtest
from mwtest import Protos, Server, example

SHOP = example("shop")
README = os.path.join(os.environ.get("MOONWIRE_SOURCE_DIR",
                                     os.path.join(os.path.dirname(__file__), "..", "..")),
                      "README.md")


def readme_files():
    """{name: text} of the README code blocks that start with a shop/ path."""
    with open(README) as f:
        text = f.read()
    files = {}
    for body in re.findall(r"```\w*\n(.*?)```", text, re.S):
        m = re.match(r"(?://|--) shop/(\S+)", body)
        if m:
            files[m.group(1)] = body
    return files


class Readme(unittest.TestCase):
    def test_snippets_are_the_example(self):
        files = readme_files()
        self.assertEqual(sorted(files), ["cart.lua", "shop.proto"])
        for name, body in files.items():
            with open(os.path.join(SHOP, name)) as f:
                self.assertEqual(f.read(), body, name)

    def test_tour(self):
        protos = Protos(SHOP)
        Item = protos.msg("shop.Item")
        with Server(SHOP) as s:
            price = protos.unary(s.channel(), "/shop.Cart/Price")
            self.assertEqual(price(Item(sku="tea", quantity=2), timeout=10).cents, 900)
            for bad, code, msg in [
                (Item(sku="tea", quantity=0), grpc.StatusCode.INVALID_ARGUMENT,
                 "quantity must be positive"),
                (Item(sku="milk", quantity=1), grpc.StatusCode.NOT_FOUND,
                 "no such item: milk")]:
                with self.assertRaises(grpc.RpcError) as e:
                    price(bad, timeout=10)
                self.assertEqual((e.exception.code(), e.exception.details()), (code, msg))
            countdown = protos.server_stream(s.channel(), "/shop.Cart/Countdown")
            t0 = time.monotonic()
            left = [q.left for q in countdown(Item(sku="tea", quantity=3), timeout=20)]
            self.assertEqual(left, [3, 2, 1])
            self.assertGreater(time.monotonic() - t0, 1.2)  # it sleeps between sends

    def test_call_through_reflection(self):
        # The README's buf curl lines, as written but for the address.
        with open(README) as f:
            unary, stream = [l.strip() for l in f if l.strip().startswith("buf curl ")]
        with Server(SHOP) as s:
            def run(line):
                args = shlex.split(line)
                args = [mwtest.tool("buf")] + args[1:-1] + [
                    args[-1].replace("127.0.0.1:50051", s.target())]
                r = subprocess.run(args, capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                return r.stdout
            self.assertEqual(json.loads(run(unary)), {"cents": "900"})
            # buf curl prints each streamed message as its own JSON document
            dec, out, pos, msgs = json.JSONDecoder(), run(stream), 0, []
            while out[pos:].strip():
                while out[pos].isspace():
                    pos += 1
                m, pos = dec.raw_decode(out, pos)
                msgs.append(m)
            self.assertEqual(msgs, [{"left": 3}, {"left": 2}, {"left": 1}])

    def test_moonwire_call(self):
        # The README's moonwire call lines, as written but for the address
        # and the binary's path.
        with open(README) as f:
            lines = [l.strip() for l in f if l.strip().startswith("build/moonwire call ")]
        self.assertEqual(len(lines), 2)
        with Server(SHOP) as s:
            def run(line, *extra):
                args = shlex.split(line)
                args = [mwtest.MOONWIRE_BIN, "call", s.target()] + args[3:] + list(extra)
                return subprocess.run(args, capture_output=True, text=True, timeout=60)
            r = run(lines[0])
            self.assertEqual((r.returncode, r.stdout), (0, '{"cents":"900"}\n'), r.stderr)
            r = run(lines[1])
            self.assertEqual((r.returncode, r.stdout),
                             (0, '{"left":3}\n{"left":2}\n{"left":1}\n'), r.stderr)
            # the failure the README shows: exit 5, the status on stderr
            args = shlex.split(lines[0])
            r = subprocess.run([mwtest.MOONWIRE_BIN, "call", s.target(), args[3],
                                '{"sku": "milk", "quantity": 1}'],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 5)
            self.assertIn("NOT_FOUND (5): no such item: milk", r.stderr)

    def test_stub(self):
        # The README's stub file beside a copy of shop.proto answers Price
        # with no Lua, and what no stub matches is UNIMPLEMENTED.
        with open(README) as f:
            text = f.read()
        blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S)
                  if b.startswith("# mock/cart.stubs.yaml\n")]
        self.assertEqual(len(blocks), 1)
        with open(os.path.join(SHOP, "shop.proto")) as f:
            proto = f.read()
        d = mwtest.ServiceDir({"shop.proto": proto, "cart.stubs.yaml": blocks[0]})
        self.addCleanup(d.cleanup)
        protos = Protos(SHOP)
        Item = protos.msg("shop.Item")
        with Server(d.path) as s:
            price = protos.unary(s.channel(), "/shop.Cart/Price")
            self.assertEqual(price(Item(sku="tea", quantity=2), timeout=10).cents, 900)
            with self.assertRaises(grpc.RpcError) as e:
                price(Item(sku="coffee", quantity=1), timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_rest_rule(self):
        # The README's REST rule for helloworld and its curl line, as
        # written but for the address: the HTTP listener's port is picked
        # at start. (Its other curl lines: test_web.ReadmeCurlTest.)
        with open(README) as f:
            text = f.read()
        block = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S)
                 if b.startswith("# hello-rest.yaml\n")]
        self.assertEqual(len(block), 1)
        curl = [l.strip() for l in text.splitlines() if l.strip().startswith("curl ") and "/v1/" in l]
        self.assertEqual(curl, ["curl -s http://127.0.0.1:8080/v1/hello/world"])
        cfg = block[0].replace("127.0.0.1:8080", "127.0.0.1:0")
        with Server(example("helloworld"), config=cfg) as s:
            deadline = time.monotonic() + 10
            while "http listening on " not in s.stdout() and time.monotonic() < deadline:
                time.sleep(0.05)
            addr = s.stdout().split("http listening on ")[1].split()[0]
            r = subprocess.run(["bash", "-c", curl[0].replace("127.0.0.1:8080", addr)],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.stdout, '{"message":"Hello world"}', r.stderr)


if __name__ == "__main__":
    mwtest.main()
