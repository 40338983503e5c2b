"""The hardened transport defaults, as a client sees them: the HTTP/2
SETTINGS the server advertises (read with nghttp), and the config keys that
change them."""

import re
import subprocess

import mwtest
from mwtest import Server


def settings(server):
    r = subprocess.run(["nghttp", "-nv", "http://%s/helloworld.Greeter/SayHello" % server.target()],
                       capture_output=True, text=True, timeout=20)
    # the server's first SETTINGS frame: its lines up to the next frame's
    first = re.split(r"\n\[ *\d", r.stdout.split("recv SETTINGS frame", 1)[1], 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"\[SETTINGS_(\w+)\(0x\w+\):(\d+)\]", first)}


class Transport(mwtest.TestCase):
    def test_defaults(self):
        with Server(mwtest.example("helloworld")) as s:
            got = settings(s)
        self.assertEqual(got.get("MAX_CONCURRENT_STREAMS"), 100)
        self.assertEqual(got.get("INITIAL_WINDOW_SIZE"), 65536)  # BDP probing off
        self.assertEqual(got.get("MAX_HEADER_LIST_SIZE"), 16384)
        # 16384 is HTTP/2's own default, so it goes unsaid (core 1.51 would
        # otherwise advertise 4,194,303)
        self.assertNotIn("MAX_FRAME_SIZE", got)

    def test_overrides(self):
        cfg = ("limits: {max_concurrent_streams: 7}\n"
               "transport: {max_frame_size: 1MiB, stream_window: 256KiB}\n")
        with Server(mwtest.example("helloworld"), config=cfg) as s:
            got = settings(s)
        self.assertEqual(got.get("MAX_CONCURRENT_STREAMS"), 7)
        self.assertEqual(got.get("MAX_FRAME_SIZE"), 1 << 20)
        self.assertEqual(got.get("INITIAL_WINDOW_SIZE"), 256 << 10)


if __name__ == "__main__":
    mwtest.main()
