"""The proto3 JSON codec (runtime/codec/mw_json.h) against protobuf's own
google.protobuf.json_format (python3-protobuf), over every message of
examples/types and tests/data/json (proto3 and proto2) filled with many
random values, both directions, default options and emit-defaults + proto
names:

  binary -> codec JSON  must equal json_format.MessageToJson (as JSON values)
  codec JSON -> json_format.Parse  must give the message back
  json_format's JSON -> codec binary  must parse back to the message

plus inputs both must refuse. Where the two differ on purpose (the spec
against json_format 3.21), the case says so."""
import base64
import json
import math
import os
import random
import struct
import subprocess
import unittest

from google.protobuf import descriptor, json_format

import mwtest
from mwtest import BUILD_DIR, SOURCE_DIR, Protos

FD = descriptor.FieldDescriptor
JSON_DIR = os.path.join(SOURCE_DIR, "tests", "data", "json")
TYPES_DIR = os.path.join(SOURCE_DIR, "examples", "types")
CONV = os.path.join(BUILD_DIR, "tests", "tools", "json_conv")

EMIT_DEFAULTS, PROTO_NAMES, IGNORE_UNKNOWN = 1, 2, 4
ROUNDS = int(os.environ.get("MW_JSON_ROUNDS", "300"))

FLT_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
INTERESTING_DOUBLES = [0.0, -0.0, 0.1, 1.5, -2.25, 1e300, -1e-300, 5e-324, 1.7976931348623157e308,
                       123456789.125, float("nan"), float("inf"), float("-inf"), 2.0 ** 53 + 2]
INTERESTING_FLOATS = [0.0, -0.0, 0.1, 1.5, 1e-45, 3.0e38, -7.5, float("nan"), float("inf"),
                      float("-inf"), 16777216.0]
WORDS = ["a", "b", "x_y", "foo_bar", "id", "name", "deep_field_name"]
STRINGS = ["", "plain", "h\u00e9llo \u2713 \U0001d11e \u65e5\u672c", "quote\" back\\slash",
           "ctl\x00\x01\x1f\n\t", "\u2028\u2029", "</script>"]


class Conv:
    """json_conv on a pipe: one request, one answer."""

    def __init__(self, dirs):
        self.p = subprocess.Popen([CONV] + dirs, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)

    def call(self, op, opts, type_name, data):
        self.p.stdin.write("%s %d %s %s\n" % (op, opts, type_name,
                                              base64.b64encode(data).decode()))
        self.p.stdin.flush()
        line = self.p.stdout.readline().rstrip("\n")
        if line.startswith("ok "):
            return True, base64.b64decode(line[3:])
        if line == "ok":
            return True, b""
        return False, line

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


class Gen:
    """Random messages of any type of the pool, well-known types with
    values in their valid ranges."""

    def __init__(self, protos, rnd):
        self.protos = protos
        self.r = rnd

    def scalar(self, fd):
        r = self.r
        t = fd.type
        if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
            return r.choice([0, 1, -1, 2**31 - 1, -2**31, r.randint(-2**31, 2**31 - 1)])
        if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
            return r.choice([0, 1, 2**32 - 1, r.randint(0, 2**32 - 1)])
        if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
            return r.choice([0, -1, 2**63 - 1, -2**63, 2**53 + 1, r.randint(-2**63, 2**63 - 1)])
        if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
            return r.choice([0, 2**64 - 1, 2**53 + 1, r.randint(0, 2**64 - 1)])
        if t == FD.TYPE_DOUBLE:
            return r.choice(INTERESTING_DOUBLES + [r.uniform(-1e6, 1e6), r.random()])
        if t == FD.TYPE_FLOAT:
            v = r.choice(INTERESTING_FLOATS + [r.uniform(-1e6, 1e6)])
            return struct.unpack("<f", struct.pack("<f", v))[0]
        if t == FD.TYPE_BOOL:
            return r.random() < 0.5
        if t == FD.TYPE_STRING:
            return r.choice(STRINGS + ["s%d" % r.randint(0, 99)])
        if t == FD.TYPE_BYTES:
            return bytes(r.randint(0, 255) for _ in range(r.randint(0, 7)))
        if t == FD.TYPE_ENUM:
            vals = [v.number for v in fd.enum_type.values]
            if fd.enum_type.full_name == "google.protobuf.NullValue":
                return 0
            if fd.file.syntax == "proto2":
                return r.choice(vals)  # closed: only what it defines
            return r.choice(vals + [77])  # a number the enum lacks (open enum)
        raise AssertionError(t)

    def json_value(self, depth):
        r = self.r
        k = r.randint(0, 5 if depth < 3 else 3)
        if k == 0:
            return None
        if k == 1:
            # json_format writes NaN/Infinity in a Value as strings; the spec
            # (and this codec) refuses them: finite numbers only here.
            return r.choice([0, 1.5, -3.0, 1e20, 0.1, 2.0 ** 60])
        if k == 2:
            return r.choice(STRINGS)
        if k == 3:
            return r.random() < 0.5
        if k == 4:
            return {r.choice(WORDS + STRINGS): self.json_value(depth + 1)
                    for _ in range(r.randint(0, 3))}
        return [self.json_value(depth + 1) for _ in range(r.randint(0, 3))]

    def wkt(self, m, depth):
        """Fills m when it is a well-known type; False otherwise."""
        r = self.r
        name = m.DESCRIPTOR.full_name
        if name == "google.protobuf.Timestamp":
            m.seconds = r.choice([0, -1, 253402300799, -62135596800,
                                  r.randint(-62135596800, 253402300799)])
            m.nanos = r.choice([0, 1000000, 1000, 1, 999999999, r.randint(0, 999999999)])
        elif name == "google.protobuf.Duration":
            s = r.choice([0, 1, 315576000000, r.randint(0, 315576000000)])
            n = r.choice([0, 1000000, 1000, 1, 999999999, r.randint(0, 999999999)])
            sign = r.choice([1, -1])
            m.seconds, m.nanos = sign * s, sign * n
        elif name == "google.protobuf.FieldMask":
            for _ in range(r.randint(0, 3)):
                m.paths.append(".".join(r.choice(WORDS) for _ in range(r.randint(1, 3))))
        elif name == "google.protobuf.Struct":
            m.update({r.choice(WORDS + STRINGS): self.json_value(depth)
                      for _ in range(r.randint(0, 3))})
        elif name == "google.protobuf.Value":
            v = self.json_value(depth)
            if v is None:
                m.null_value = 0
            elif isinstance(v, bool):
                m.bool_value = v
            elif isinstance(v, (int, float)):
                m.number_value = v
            elif isinstance(v, str):
                m.string_value = v
            elif isinstance(v, dict):
                m.struct_value.SetInParent()  # {} too
                m.struct_value.update(v)
            else:
                m.list_value.SetInParent()
                m.list_value.extend(v)
        elif name == "google.protobuf.ListValue":
            m.extend([self.json_value(depth) for _ in range(r.randint(0, 3))])
        elif name == "google.protobuf.Any":
            if r.random() < 0.1:
                return True  # the empty Any: {}
            inner_type = r.choice(["types.Inner", "jt.Inner", "google.protobuf.Duration",
                                   "google.protobuf.Struct", "google.protobuf.Any",
                                   "types.AllTypes.Point", "google.protobuf.Int64Value"])
            if depth > 3 and inner_type == "google.protobuf.Any":
                inner_type = "types.Inner"
            inner = self.protos.msg(inner_type)()
            self.fill(inner, depth + 1)
            m.Pack(inner)
        elif name.startswith("google.protobuf.") and name.endswith("Value"):
            fd = m.DESCRIPTOR.fields_by_name["value"]
            m.value = self.scalar(fd)
        elif name == "google.protobuf.Empty":
            pass
        else:
            return False
        return True

    def fill(self, m, depth=0):
        if self.wkt(m, depth):
            return m
        r = self.r
        oneof_done = set()
        for fd in m.DESCRIPTOR.fields:
            if r.random() < 0.45:
                continue
            oo = fd.containing_oneof
            if oo is not None:
                if oo.name in oneof_done:
                    continue
                oneof_done.add(oo.name)
            is_map = fd.type == FD.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry
            if is_map:
                kf, vf = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
                target = getattr(m, fd.name)
                for _ in range(r.randint(0, 3)):
                    k = self.scalar(kf)
                    if vf.type == FD.TYPE_MESSAGE:
                        # (target[k] creates the entry: only when filled)
                        if depth < 4:
                            self.fill(target[k], depth + 1)
                    else:
                        target[k] = self.scalar(vf)
            elif fd.label == FD.LABEL_REPEATED:
                target = getattr(m, fd.name)
                for _ in range(r.randint(0, 3)):
                    if fd.type == FD.TYPE_MESSAGE:
                        if depth < 4:
                            self.fill(target.add(), depth + 1)
                    else:
                        target.append(self.scalar(fd))
            elif fd.type == FD.TYPE_MESSAGE:
                if depth < 4:
                    self.fill(getattr(m, fd.name), depth + 1)
                    getattr(m, fd.name).SetInParent()
            else:
                setattr(m, fd.name, self.scalar(fd))
        return m


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def json_equal(a, b):
    """JSON values compared as values: objects without order, numbers by
    value, where a float field's number may be written with fewer digits by
    one side (1e-45 and 1.4013e-45 are the same float)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        if a == b:
            return True
        try:
            return abs(a) < 3.5e38 and f32(a) == f32(b)
        except OverflowError:
            return False
    return type(a) == type(b) and a == b


def same_message(a, b):
    """Equal as messages: the same deterministic serialization, or (when an
    Any's packed bytes differ only in the order of map entries) the same
    message as json_format's own dict of it, where NaN equals NaN and -0.0
    differs from 0.0."""
    if a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True):
        return True
    pool = a.DESCRIPTOR.file.pool
    da = json_format.MessageToDict(a, descriptor_pool=pool)
    db = json_format.MessageToDict(b, descriptor_pool=pool)
    return json.dumps(da, sort_keys=True) == json.dumps(db, sort_keys=True)


class JsonFormatComparison(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.protos = Protos(TYPES_DIR, JSON_DIR)
        cls.conv = Conv([JSON_DIR, TYPES_DIR])
        cls.types = []
        for fdp in cls.protos.fds.file:
            if fdp.package in ("types", "jt"):
                def walk(prefix, msgs):
                    for d in msgs:
                        if d.options.map_entry:
                            continue
                        cls.types.append(prefix + d.name)
                        walk(prefix + d.name + ".", d.nested_type)
                walk(fdp.package + ".", fdp.message_type)

    @classmethod
    def tearDownClass(cls):
        cls.conv.close()

    def to_json(self, msg, opts):
        return json_format.MessageToJson(
            msg, including_default_value_fields=bool(opts & EMIT_DEFAULTS),
            preserving_proto_field_name=bool(opts & PROTO_NAMES),
            descriptor_pool=self.protos.pool)

    def check_one(self, type_name, msg, opts):
        cls = self.protos.msg(type_name)
        binary = msg.SerializeToString()
        ok, out = self.conv.call("b2j", opts, type_name, binary)
        self.assertTrue(ok, "%s: %s\n%s" % (type_name, out, msg))
        ours = json.loads(out)
        theirs = json.loads(self.to_json(msg, opts))
        self.assertTrue(json_equal(ours, theirs),
                        "%s (options %d)\nours:   %s\ntheirs: %s" % (type_name, opts, out.decode(),
                                                                     json.dumps(theirs)))
        # json_format reads what the codec writes, and the codec what
        # json_format writes. (With emit defaults a proto2 field written
        # at its default reads back present: not the same message, for
        # either writer.)
        back = cls()
        json_format.Parse(out, back, descriptor_pool=self.protos.pool)
        ok, bin2 = self.conv.call("j2b", 0, type_name, self.to_json(msg, opts).encode())
        self.assertTrue(ok, "%s: %s" % (type_name, bin2))
        if opts & EMIT_DEFAULTS and msg.DESCRIPTOR.file.syntax == "proto2":
            self.assertTrue(same_message(cls.FromString(bin2), back), type_name)
            return
        self.assertTrue(same_message(back, msg), "%s: %s" % (type_name, out.decode()))
        self.assertTrue(same_message(cls.FromString(bin2), msg), type_name)

    def test_random_messages(self):
        rnd = random.Random(20261202)
        gen = Gen(self.protos, rnd)
        n = 0
        for _ in range(ROUNDS):
            for type_name in self.types:
                msg = gen.fill(self.protos.msg(type_name)())
                for opts in (0, EMIT_DEFAULTS | PROTO_NAMES):
                    with self.subTest(type=type_name, round=n, opts=opts):
                        self.check_one(type_name, msg, opts)
                n += 1
        self.assertEqual(n, ROUNDS * len(self.types))

    def test_every_type_listed(self):
        for t in ("types.AllTypes", "types.Inner", "types.AllTypes.Point", "jt.WellKnown",
                  "jt.Names", "jt.Inner", "jt.Old"):
            self.assertIn(t, self.types)

    def both_refuse(self, type_name, text):
        ok, out = self.conv.call("j2b", 0, type_name, text.encode())
        self.assertFalse(ok, "codec accepted %s" % text)
        with self.assertRaises(json_format.ParseError, msg=text):
            json_format.Parse(text, self.protos.msg(type_name)(), descriptor_pool=self.protos.pool)
        return out

    def test_both_refuse(self):
        bad = [
            ("types.AllTypes", '{"fInt32": 1.5}'),
            ("types.AllTypes", '{"fInt32": 2147483648}'),
            ("types.AllTypes", '{"fUint32": -1}'),
            ("types.AllTypes", '{"fInt64": "1e3"}'),
            ("types.AllTypes", '{"fInt64": " 1"}'),
            ("types.AllTypes", '{"fBool": "true"}'),
            ("types.AllTypes", '{"fString": 5}'),
            ("types.AllTypes", '{"fEnum": "PURPLE"}'),
            ("types.AllTypes", '{"nope": 1}'),
            ("types.AllTypes", '{"fInt32": 1, "fInt32": 2}'),
            ("types.AllTypes", '{"choiceInt": 1, "choiceText": "x"}'),
            ("types.AllTypes", '{"rInt32": [1, null]}'),
            ("types.AllTypes", '{"mBool": {"1": true}}'),
            ("types.AllTypes", '{"fFloat": 3.5e38}'),
            ("types.AllTypes", '{"fDouble": NaN}'),
            ("types.AllTypes", '{"fInt32": 1} x'),
            ("jt.WellKnown", '{"ts": "1972-01-01T10:00:20"}'),
            ("jt.WellKnown", '{"ts": "10000-01-01T00:00:00Z"}'),
            ("jt.WellKnown", '{"dur": "1"}'),
            ("jt.WellKnown", '{"dur": "315576000001s"}'),
            ("jt.WellKnown", '{"mask": "a_b"}'),
            ("jt.WellKnown", '{"any": {"@type": "type.googleapis.com/jt.Nope"}}'),
            ("jt.WellKnown", '{"any": {"id": 1}}'),
            ("jt.WellKnown", '{"wInt32": "x"}'),
        ]
        for type_name, text in bad:
            with self.subTest(text=text):
                self.both_refuse(type_name, text)

    def test_both_accept(self):
        good = [
            ("types.AllTypes", '{"fInt32": 1e2, "fInt64": "-0", "fUint64": 18446744073709551615}'),
            ("types.AllTypes", '{"f_int32": 3, "fBytes": "-_8", "rBytes": ["AQI", "AQ=="]}'),
            ("types.AllTypes", '{"fDouble": "1.5", "fFloat": "-Infinity", "fEnum": 2}'),
            ("types.AllTypes", '{"fEnum": "2", "rEnum": ["-1", "RED", 1]}'),
            ("types.AllTypes", '{"fInner": null, "rInt32": null, "mString": null, "oInt32": null}'),
            ("jt.WellKnown", '{"ts": "1972-01-01T10:00:20.021+01:30", "dur": "-0.5s"}'),
            ("jt.WellKnown", '{"any": {"id": 3, "@type": "type.googleapis.com/jt.Inner"}}'),
            ("jt.WellKnown", '{"any": {}, "val": null, "mVal": {"k": null}, "nullVal": null}'),
            ("jt.WellKnown", '{"any": {"@type": "type.googleapis.com/google.protobuf.Any",'
                             ' "value": {"@type": "type.googleapis.com/jt.Inner", "name": "n"}}}'),
        ]
        for type_name, text in good:
            with self.subTest(text=text):
                ok, out = self.conv.call("j2b", 0, type_name, text.encode())
                self.assertTrue(ok, out)
                theirs = self.protos.msg(type_name)()
                json_format.Parse(text, theirs, descriptor_pool=self.protos.pool)
                self.assertTrue(same_message(self.protos.msg(type_name).FromString(out), theirs),
                                text)

    def test_ignore_unknown(self):
        text = '{"nope": {"x": [1, {"y": null}]}, "color": "GREEN", "colors": ["RED"]}'
        ok, out = self.conv.call("j2b", IGNORE_UNKNOWN, "jt.Names", text.encode())
        self.assertTrue(ok, out)
        theirs = self.protos.msg("jt.Names")()
        json_format.Parse(text, theirs, ignore_unknown_fields=True,
                          descriptor_pool=self.protos.pool)
        self.assertTrue(same_message(self.protos.msg("jt.Names").FromString(out), theirs))
        # Unknown enum names are skipped too (as protobuf's C++ parser does;
        # json_format 3.21 still refuses them).
        ok, out = self.conv.call("j2b", IGNORE_UNKNOWN, "jt.Names",
                                 b'{"color": "BLUE", "colors": ["BLUE", "RED"]}')
        self.assertTrue(ok, out)
        got = self.protos.msg("jt.Names").FromString(out)
        self.assertEqual((got.color, list(got.colors)), (0, [1]))

    def test_codec_stricter(self):
        """Inputs json_format 3.21 takes and the codec refuses: a field given
        twice under its two names (json_format keeps the last: two readers
        of one body must not see different values), a top-level array."""
        for type_name, text in [("types.AllTypes", '{"fInt32": 1, "f_int32": 2}'),
                                ("types.AllTypes", '[]')]:
            with self.subTest(text=text):
                ok, out = self.conv.call("j2b", 0, type_name, text.encode())
                self.assertFalse(ok, text)

    def test_where_the_spec_wins(self):
        """json_format 3.21 writes a Value's NaN as "NaN" (a string, which
        reads back as a string): the spec says a Value number must be
        finite, and the codec refuses to write it."""
        v = self.protos.msg("jt.WellKnown")()
        v.val.number_value = math.nan
        ok, out = self.conv.call("b2j", 0, "jt.WellKnown", v.SerializeToString())
        self.assertFalse(ok)
        self.assertIn(b"field 'val': Value number NaN has no JSON form", out.encode())
        # and FLT_MAX, which json_format writes as 3.4028235e+38 and then
        # refuses to read, reads back here.
        m = self.protos.msg("types.AllTypes")()
        m.f_float = FLT_MAX
        ok, out = self.conv.call("b2j", 0, "types.AllTypes", m.SerializeToString())
        self.assertTrue(ok)
        ok, b = self.conv.call("j2b", 0, "types.AllTypes", out)
        self.assertTrue(ok, b)
        self.assertEqual(self.protos.msg("types.AllTypes").FromString(b).f_float, FLT_MAX)


if __name__ == "__main__":
    unittest.main()
