"""examples/routeguide served by the real binary: all four kinds of method."""
import math
import os
import re
import time

import grpc

import mwtest
from mwtest import Protos, Server, example, run_cli

ROUTE = example("routeguide")
SVC = "/routeguide.RouteGuide/"


def load_features():
    """(name, lat, lon) of every entry of examples/routeguide/data/features.lua,
    read from the file so the test follows the data."""
    with open(os.path.join(ROUTE, "data", "features.lua")) as f:
        text = f.read()
    rows = re.findall(r'\{name = "([^"]*)",\s*location = \{latitude = (-?\d+), '
                      r'longitude = (-?\d+)\}\}', text)
    return [(name, int(lat), int(lon)) for name, lat, lon in rows]


def haversine(p1, p2):
    lat1, lat2 = math.radians(p1[0] / 1e7), math.radians(p2[0] / 1e7)
    dlat = lat2 - lat1
    dlon = math.radians((p2[1] - p1[1]) / 1e7)
    a = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 6371000 * 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a))


class RouteGuide(mwtest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.features = load_features()
        assert len(cls.features) >= 20, cls.features
        cls.named = [f for f in cls.features if f[0]]
        cls.protos = Protos(ROUTE)
        cls.Point = cls.protos.msg("routeguide.Point")
        cls.Rectangle = cls.protos.msg("routeguide.Rectangle")
        cls.RouteNote = cls.protos.msg("routeguide.RouteNote")
        # one worker: RouteChat's notes live in one Lua state
        cls.server = Server(ROUTE, config="workers: 1\n").start()
        cls.ch = cls.server.channel()

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def stub(self, kind, method):
        return getattr(self.protos, kind)(self.ch, SVC + method)

    def point(self, lat, lon):
        return self.Point(latitude=lat, longitude=lon)

    def test_check(self):
        r = run_cli("check", ROUTE)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("4 with handlers", r.stdout)

    def test_serve_dir_as_is(self):
        # `moonwire serve examples/routeguide`, no config at all
        with Server(ROUTE) as s:
            get = self.protos.unary(s.channel(), SVC + "GetFeature")
            name, lat, lon = self.named[0]
            self.assertEqual(get(self.point(lat, lon), timeout=10).name, name)

    # -- unary --

    def test_get_feature(self):
        get = self.stub("unary", "GetFeature")
        for name, lat, lon in self.features:
            with self.subTest(name=name, lat=lat, lon=lon):
                f = get(self.point(lat, lon), timeout=10)
                self.assertEqual(f.name, name)
                self.assertEqual((f.location.latitude, f.location.longitude), (lat, lon))

    def test_get_feature_nothing_there(self):
        get = self.stub("unary", "GetFeature")
        for lat, lon in ((0, 0), (1, 1), (-900000000, 1800000000),
                         (self.named[0][1] + 1, self.named[0][2])):
            with self.subTest(lat=lat, lon=lon):
                f = get(self.point(lat, lon), timeout=10)
                self.assertEqual(f.name, "")
                self.assertEqual((f.location.latitude, f.location.longitude), (lat, lon))

    # -- server streaming --

    def list_features(self, lo, hi):
        lst = self.stub("server_stream", "ListFeatures")
        rect = self.Rectangle(lo=self.point(*lo), hi=self.point(*hi))
        return [(f.name, f.location.latitude, f.location.longitude)
                for f in lst(rect, timeout=10)]

    def test_list_features_everything(self):
        got = self.list_features((-900000000, -1800000000), (900000000, 1800000000))
        self.assertEqual(got, self.named)  # named ones only, database order

    def test_list_features_window(self):
        lo, hi = (405000000, -746000000), (412000000, -741000000)
        want = [f for f in self.named
                if lo[0] <= f[1] <= hi[0] and lo[1] <= f[2] <= hi[1]]
        self.assertGreaterEqual(len(want), 3)
        self.assertLess(len(want), len(self.named))
        self.assertEqual(self.list_features(lo, hi), want)
        # corners given the other way round: the same rectangle
        self.assertEqual(self.list_features(hi, lo), want)
        self.assertEqual(self.list_features((lo[0], hi[1]), (hi[0], lo[1])), want)

    def test_list_features_edges_and_empty(self):
        name, lat, lon = self.named[3]
        # a rectangle that is a single point: the feature on it is inside
        self.assertEqual(self.list_features((lat, lon), (lat, lon)), [(name, lat, lon)])
        # somewhere with nothing: an empty stream, status OK
        self.assertEqual(self.list_features((0, 0), (10, 10)), [])

    # -- client streaming --

    def record(self, points):
        rec = self.stub("client_stream", "RecordRoute")
        return rec(iter([self.point(*p) for p in points]), timeout=10)

    def test_record_route(self):
        route = [(f[1], f[2]) for f in self.named[:6]]
        route += [(401000000, -745000000), (self.features[-1][1], self.features[-1][2])]
        route += [(f[1], f[2]) for f in self.named[6:8]]
        summary = self.record(route)
        self.assertEqual(summary.point_count, len(route))
        self.assertEqual(summary.feature_count, 8)  # the unnamed entry does not count
        want = sum(haversine(a, b) for a, b in zip(route, route[1:]))
        self.assertGreater(want, 100000)
        self.assertLessEqual(abs(summary.distance - math.floor(want)), 1,
                             (summary.distance, want))
        self.assertIn(summary.elapsed_time, (0, 1, 2))

    def test_record_route_known_distance(self):
        # one degree of latitude along a meridian: R * pi / 180 metres
        summary = self.record([(0, 0), (10000000, 0)])
        self.assertEqual(summary.point_count, 2)
        self.assertEqual(summary.feature_count, 0)
        self.assertEqual(summary.distance, math.floor(6371000 * math.pi / 180))  # 111194
        # a quarter of the equator
        summary = self.record([(0, 0), (0, 900000000)])
        self.assertEqual(summary.distance, math.floor(6371000 * math.pi / 2))

    def test_record_route_empty_and_single(self):
        summary = self.record([])
        self.assertEqual((summary.point_count, summary.feature_count, summary.distance),
                         (0, 0, 0))
        name, lat, lon = self.named[0]
        summary = self.record([(lat, lon)])
        self.assertEqual((summary.point_count, summary.feature_count, summary.distance),
                         (1, 1, 0))

    def test_record_route_elapsed_time(self):
        rec = self.stub("client_stream", "RecordRoute")

        def slow():
            yield self.point(0, 0)
            time.sleep(1.2)
            yield self.point(0, 10)

        start = time.time()
        summary = rec(slow(), timeout=10)
        took = time.time() - start
        self.assertEqual(summary.point_count, 2)
        # whole seconds from os.time(): 1 or 2 for a call of 1.2 s
        self.assertGreaterEqual(summary.elapsed_time, 1)
        self.assertLessEqual(summary.elapsed_time, math.ceil(took) + 1)

    # -- bidi --

    def test_route_chat(self):
        chat = self.stub("bidi", "RouteChat")
        # points used by no other test, so earlier calls do not add notes
        a, b, c = (123456700, 7654321), (123456701, 7654321), (-123456700, -7654321)
        sent = [(a, "first at a"), (b, "first at b"), (a, "second at a"),
                (c, "only at c"), (a, "third at a"), (b, "second at b")]
        notes = [self.RouteNote(location=self.point(*p), message=m) for p, m in sent]
        got = [((n.location.latitude, n.location.longitude), n.message)
               for n in chat(iter(notes), timeout=10)]
        self.assertEqual(got, [
            (a, "first at a"),                       # for "second at a"
            (a, "first at a"), (a, "second at a"),   # for "third at a"
            (b, "first at b"),                       # for "second at b"
        ])
        # a later call sees the notes the first one left (one worker)
        again = [n.message for n in chat(iter([self.RouteNote(location=self.point(*b),
                                                              message="third at b")]),
                                         timeout=10)]
        self.assertEqual(again, ["first at b", "second at b"])

    def test_route_chat_interleaved(self):
        # the reply to each note arrives before the next note is sent
        chat = self.stub("bidi", "RouteChat")
        p = (-333333333, 444444444)
        import queue
        q = queue.Queue()

        def requests():
            for i in range(4):
                yield self.RouteNote(location=self.point(*p), message="n%d" % i)
                # wait until the i replies for this note have arrived
                for _ in range(i):
                    q.get(timeout=5)
        call = chat(requests(), timeout=10)
        got = []
        for n in call:
            got.append(n.message)
            q.put(n.message)
        self.assertEqual(got, ["n0", "n0", "n1", "n0", "n1", "n2"])


if __name__ == "__main__":
    mwtest.main()
