"""examples/chat served as its README says: the README's buf session (a
listener, a talker who leaves, the snapshot) with the outputs it shows,
broadcast across both workers with presence, resume after a reconnect, and
the snapshot a client reloads from when it cannot resume."""
import json
import os
import shlex
import signal
import subprocess
import time
import unittest

import grpc

import mwtest
from mwtest import Protos, Server, example

EX = example("chat")
README = os.path.join(EX, "README.md")
BUF = os.path.join(mwtest.SOURCE_DIR, "tests/tools/node_modules/.bin/buf")
PORT = "127.0.0.1:50080"


REDIS_SECTION = "## Across two instances, with Redis"


def readme_text(redis=False):
    """The README before its Redis section, or that section."""
    with open(README) as f:
        text = f.read()
    at = text.index(REDIS_SECTION)
    return text[at:] if redis else text[:at]


def readme_commands(prefix, redis=False):
    lines = [l[4:] for l in readme_text(redis).splitlines()
             if l.startswith("    ") and l[4:5] != " "]
    return [shlex.split(l) for l in lines if l.startswith(prefix)]


def readme_json_blocks(redis=False):
    text, out, at = readme_text(redis), [], 0
    while True:
        at = text.find("```json\n", at)
        if at < 0:
            return out
        end = text.index("```", at + 8)
        out.append(text[at + 8:end])
        at = end + 3


def json_docs(text):
    """Concatenated JSON documents (buf's output for a stream)."""
    dec, docs, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return docs
        doc, i = dec.raw_decode(text, i)
        docs.append(doc)


def no_epoch(doc):
    doc = dict(doc)
    if "epoch" in doc:
        doc["epoch"] = "<16 hex digits>"
    return doc


class Chat(mwtest.TestCase):
    def setUp(self):
        serve = readme_commands("build/moonwire serve ")
        self.assertEqual(len(serve), 1)
        self.server = Server(args=serve[0][2:], cwd=mwtest.SOURCE_DIR).start()
        self.addCleanup(self.server.close)
        self.protos = Protos(EX)
        self.Msg = self.protos.msg("chat.ClientMessage")

    def buf(self, cmd, **kw):
        if not os.path.exists(BUF):
            self.skipTest("buf is not installed (tests/tools/setup.sh)")
        url = cmd[-1].replace(PORT, self.server.addr)
        return [BUF] + cmd[1:-1] + [url]

    def test_the_readme_session(self):
        ann_cmd, bob_cmd, recent_cmd = readme_commands("buf curl ")
        # a group of its own: buf's launcher and the binary it runs stop together
        ann = subprocess.Popen(self.buf(ann_cmd), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 10 * mwtest.SLOW
            while time.monotonic() < deadline:  # ann is in before bob comes
                r = self.protos.unary(self.server.channel(), "/chat.Chat/Recent")(
                    self.protos.msg("chat.RecentRequest")(room="lobby"), timeout=5)
                if list(r.present) == ["ann"]:
                    break
                time.sleep(0.05)
            bob = subprocess.run(self.buf(bob_cmd), capture_output=True, text=True, timeout=30)
            self.assertEqual(bob.returncode, 0, bob.stderr)
            # bob's "left" is published once his stream is done
            deadline = time.monotonic() + 10 * mwtest.SLOW
            while time.monotonic() < deadline:
                recent = subprocess.run(self.buf(recent_cmd), capture_output=True, text=True,
                                        timeout=30)
                self.assertEqual(recent.returncode, 0, recent.stderr)
                got = json.loads(recent.stdout)
                if got["messages"][-1:] and got["messages"][-1]["kind"] == "left":
                    break
                time.sleep(0.05)
            want_ann, want_recent = readme_json_blocks()
            self.assertEqual(no_epoch(got), json.loads(want_recent))
            self.assertRegex(got["epoch"], "^[0-9a-f]{16}$")
        finally:
            time.sleep(0.2)
            os.killpg(ann.pid, signal.SIGINT)
            out, _ = ann.communicate(timeout=10)
        docs = [d for d in json_docs(out) if "code" not in d]
        self.assertEqual([no_epoch(d) for d in docs], json_docs(want_ann))
        self.assertEqual(docs[0]["epoch"], got["epoch"])

    def talk(self, first, *texts, stay=False):
        """A Talk stream: sends first, then texts; stays open while the
        returned close() is not called."""
        import queue
        q = queue.Queue()
        q.put(self.Msg(**first))
        for t in texts:
            q.put(self.Msg(text=t))

        def gen():
            while True:
                item = q.get()
                if item is None:
                    return
                yield item

        ch = self.server.channel(options=[("grpc.use_local_subchannel_pool", 1)])
        st = self.protos.bidi(ch, "/chat.Chat/Talk")(gen(), timeout=30)
        return st, q

    def test_broadcast_presence_resume_and_snapshot(self):
        # five listeners on their own connections: both workers
        listeners = []
        for i in range(5):
            st, q = self.talk({"room": "r", "user": "u%d" % i, "stay": True})
            welcome = next(st)
            self.assertEqual(welcome.kind, "welcome")
            listeners.append((st, q))
        self.assertEqual(list(welcome.present), ["u0", "u1", "u2", "u3", "u4"])
        epoch = welcome.epoch
        talker, tq = self.talk({"room": "r", "user": "cat"}, "one", "two")
        self.assertEqual(next(talker).kind, "welcome")
        for st, _ in listeners:
            evs = []
            while len(evs) < 2 or evs[-1].text != "two":
                ev = next(st)
                if ev.kind == "said":
                    evs.append(ev)
            self.assertEqual([e.text for e in evs], ["one", "two"])
            self.assertEqual(evs[1].offset, evs[0].offset + 1)
        last = evs[-1].offset
        # u0 drops its connection; cat talks on meanwhile
        listeners[0][0].cancel()
        tq.put(self.Msg(text="three"))
        tq.put(self.Msg(text="four"))
        st1 = listeners[1][0]
        seen = []
        while len(seen) < 3:
            ev = next(st1)
            if ev.offset > last:
                seen.append((ev.kind, ev.user, ev.text, ev.offset))
        self.assertEqual(sorted(k for k, *_ in seen), ["left", "said", "said"])
        # u0 comes back with its epoch and last offset: what it missed, once
        st, q = self.talk({"room": "r", "user": "u0", "stay": True, "resume_offset": last,
                           "resume_epoch": epoch})
        w = next(st)
        self.assertTrue(w.recovered)
        missed = [next(st) for _ in range(3)]
        self.assertEqual([(e.kind, e.user, e.text, e.offset) for e in missed], seen)
        joined_again = next(st)
        self.assertEqual((joined_again.kind, joined_again.user), ("joined", "u0"))
        self.assertEqual(joined_again.offset, seen[-1][3] + 1)
        # with an epoch the room never had: not recovered; the snapshot has it all
        st2, q2 = self.talk({"room": "r", "user": "u9", "stay": True, "resume_offset": 2,
                             "resume_epoch": "0000000000000000"})
        self.assertFalse(next(st2).recovered)
        snap = self.protos.unary(self.server.channel(), "/chat.Chat/Recent")(
            self.protos.msg("chat.RecentRequest")(room="r"), timeout=5)
        self.assertEqual(snap.epoch, epoch)
        self.assertEqual([m.offset for m in snap.messages], list(range(1, snap.offset + 1)))
        self.assertIn("three", [m.text for m in snap.messages])
        self.assertEqual(list(snap.present), ["cat", "u0", "u1", "u2", "u3", "u4", "u9"])
        for s in (st, st2, talker):
            s.cancel()
        for s, _ in listeners[1:]:
            s.cancel()


class ChatAcrossInstances(mwtest.TestCase):
    """The README's Redis section: both instances as its lines say, on free
    ports and with the test's Redis in place of 127.0.0.1:6379; Ann on the
    first sees Bob's lines said on the second, and both give one snapshot."""

    def setUp(self):
        self.redis = mwtest.RedisServer().start()
        self.addCleanup(self.redis.close)
        serve = readme_commands("build/moonwire serve ", redis=True)
        self.assertEqual(len(serve), 2)
        d = mwtest.ServiceDir()
        self.addCleanup(d.cleanup)
        with open(os.path.join(EX, "redis.yaml")) as f:
            body = f.read().replace("redis://127.0.0.1:6379/0", self.redis.url())
        body = body.replace("services: [.]", "services: [%s]" % json.dumps(EX))
        cfg = d.file("redis.yaml")
        with open(cfg, "w") as f:
            f.write(body)
        self.servers = {}
        for cmd in serve:
            self.assertEqual(cmd[2:4], ["-c", "examples/chat/redis.yaml"])
            srv = Server(args=["-c", cfg], cwd=mwtest.SOURCE_DIR).start()
            self.addCleanup(srv.close)
            self.servers[cmd[cmd.index("--listen") + 1]] = srv
        self.protos = Protos(EX)

    def buf(self, cmd):
        if not os.path.exists(BUF):
            self.skipTest("buf is not installed (tests/tools/setup.sh)")
        url = cmd[-1]
        for addr, srv in self.servers.items():
            url = url.replace(addr, srv.addr)
        return [BUF] + cmd[1:-1] + [url]

    def recent(self, srv):
        return self.protos.unary(srv.channel(), "/chat.Chat/Recent")(
            self.protos.msg("chat.RecentRequest")(room="hall"), timeout=5)

    def test_the_readme_session_across_two_instances(self):
        ann_cmd, bob_cmd = readme_commands("buf curl ", redis=True)
        a, b = self.servers.values()
        ann = subprocess.Popen(self.buf(ann_cmd), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 10 * mwtest.SLOW
            while list(self.recent(b).present) != ["ann"]:  # presence is in Redis too
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            bob = subprocess.run(self.buf(bob_cmd), capture_output=True, text=True, timeout=30)
            self.assertEqual(bob.returncode, 0, bob.stderr)
            while not [m for m in self.recent(a).messages if m.kind == "left"]:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            ra, rb = self.recent(a), self.recent(b)
            self.assertEqual(ra, rb)
            self.assertEqual([m.offset for m in ra.messages], [1, 2, 3, 4])
        finally:
            time.sleep(0.2)
            os.killpg(ann.pid, signal.SIGINT)
            out, _ = ann.communicate(timeout=10)
        (want_ann,) = readme_json_blocks(redis=True)
        docs = [d for d in json_docs(out) if "code" not in d]
        self.assertEqual([no_epoch(d) for d in docs], json_docs(want_ann))
        self.assertEqual(docs[0]["epoch"], ra.epoch)


if __name__ == "__main__":
    unittest.main()
