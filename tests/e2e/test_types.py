"""examples/types: every proto3 type through the codec, both ways.

Echo must give back exactly what was sent; Transform must apply the rules of
examples/types/README.md, which expected_transform() below restates."""
import math
import struct
import unittest

from google.protobuf import descriptor

import mwtest
from mwtest import Protos, Server, example, run_cli

TYPES = example("types")
FD = descriptor.FieldDescriptor

INT32_MIN, INT32_MAX = -2**31, 2**31 - 1
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
UINT32_MAX, UINT64_MAX = 2**32 - 1, 2**64 - 1
FLT_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
FLT_TRUE_MIN = struct.unpack("<f", b"\x01\x00\x00\x00")[0]
DBL_MAX = 1.7976931348623157e308
DBL_TRUE_MIN = 5e-324
INF, NAN = float("inf"), float("nan")

UNICODE = "h\u00e9llo w\u00f6rld \u2713 \U0001d11e \u65e5\u672c\u8a9e \u0000 end"
ALL_BYTES = bytes(range(256))

SIGNED32 = (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32)
UNSIGNED32 = (FD.TYPE_UINT32, FD.TYPE_FIXED32)
SIGNED64 = (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64)
UNSIGNED64 = (FD.TYPE_UINT64, FD.TYPE_FIXED64)
FLOATS = (FD.TYPE_DOUBLE, FD.TYPE_FLOAT)


def is_map(fd):
    return fd.type == FD.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


# -- a canonical, comparable form of a message --------------------------------
# Protobuf equality cannot compare nan (nan != nan) and compares Any by its
# bytes, which need not be canonical (map order inside). canon() makes a
# plain structure: floats as (repr, sign) so nan == nan and -0.0 != 0.0, Any
# unpacked when the pool knows its type.

class Canon:
    def __init__(self, protos):
        self.protos = protos

    def value(self, fd, v):
        if fd.type in FLOATS:
            return ("float", repr(v), math.copysign(1.0, v))
        if fd.type == FD.TYPE_MESSAGE:
            return self.msg(v)
        return v

    def msg(self, m):
        d = m.DESCRIPTOR
        if d.full_name == "google.protobuf.Any":
            name = m.type_url.rpartition("/")[2]
            try:
                cls = self.protos.msg(name)
            except KeyError:
                cls = None
            if cls is not None:
                inner = cls.FromString(m.value)
                return {"@type": m.type_url, "@msg": self.msg(inner)}
            return {"@type": m.type_url, "@value": m.value}
        out = {}
        for fd, v in m.ListFields():
            if is_map(fd):
                vfd = fd.message_type.fields_by_name["value"]
                out[fd.name] = {k: self.value(vfd, v[k]) for k in v}
            elif fd.label == FD.LABEL_REPEATED:
                out[fd.name] = [self.value(fd, x) for x in v]
            else:
                out[fd.name] = self.value(fd, v)
        return out


# -- Transform, as README.md documents it ------------------------------------

def wrap(v, lo, hi):
    return lo if v == hi else v + 1


class Model:
    def __init__(self, protos):
        self.protos = protos

    def scalar(self, fd, v):
        t = fd.type
        if t in FLOATS:
            return -v
        if t in SIGNED32:
            return wrap(v, INT32_MIN, INT32_MAX)
        if t in UNSIGNED32:
            return wrap(v, 0, UINT32_MAX)
        if t in SIGNED64:
            return wrap(v, INT64_MIN, INT64_MAX)
        if t in UNSIGNED64:
            return wrap(v, 0, UINT64_MAX)
        if t == FD.TYPE_BOOL:
            return not v
        if t == FD.TYPE_STRING:
            return "".join(c.upper() if "a" <= c <= "z" else c for c in v)
        if t == FD.TYPE_BYTES:
            return v[::-1]
        if t == FD.TYPE_ENUM:
            values = fd.enum_type.values  # declaration order
            for i, ev in enumerate(values):
                if ev.number == v:
                    return values[(i + 1) % len(values)].number
            return v
        raise AssertionError("no scalar rule for %s" % fd.full_name)

    def any(self, src, dst):
        name = src.type_url.rpartition("/")[2]
        if name in ("types.Inner", "types.AllTypes"):
            inner = self.protos.msg(name).FromString(src.value)
            dst.type_url = src.type_url
            dst.value = self.msg(inner).SerializeToString()
        else:
            dst.CopyFrom(src)

    def msg(self, src):
        d = src.DESCRIPTOR
        dst = type(src)()
        if d.full_name == "google.protobuf.Any":
            self.any(src, dst)
            return dst
        for fd in d.fields:
            name = fd.name
            if fd.containing_oneof is not None and fd.containing_oneof.name == "choice":
                continue
            v = getattr(src, name)
            if is_map(fd):
                vfd = fd.message_type.fields_by_name["value"]
                for k in v:
                    if vfd.type == FD.TYPE_MESSAGE:
                        getattr(dst, name)[k].CopyFrom(self.msg(v[k]))
                    else:
                        getattr(dst, name)[k] = self.scalar(vfd, v[k])
            elif fd.label == FD.LABEL_REPEATED:
                for x in reversed(list(v)):
                    if fd.type == FD.TYPE_MESSAGE:
                        getattr(dst, name).add().CopyFrom(self.msg(x))
                    else:
                        getattr(dst, name).append(self.scalar(fd, x))
            elif fd.type == FD.TYPE_MESSAGE:
                if src.HasField(name):
                    getattr(dst, name).CopyFrom(self.msg(v))
            elif fd.containing_oneof is not None:  # proto3 optional
                if src.HasField(name):
                    setattr(dst, name, self.scalar(fd, v))
            else:
                setattr(dst, name, self.scalar(fd, v))
        if "choice" in d.oneofs_by_name:
            which = src.WhichOneof("choice")
            if which == "choice_int":
                dst.choice_text = "%d" % src.choice_int
            elif which == "choice_text":
                dst.choice_inner.name = src.choice_text
            elif which == "choice_inner":
                dst.choice_int = src.choice_inner.id
        return dst


class TypesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.protos = Protos(TYPES)
        cls.A = cls.protos.msg("types.AllTypes")
        cls.Inner = cls.protos.msg("types.Inner")
        cls.Point = cls.protos.msg("types.AllTypes.Point")
        cls.canon = Canon(cls.protos)
        cls.model = Model(cls.protos)
        cls.server = Server(TYPES).start()
        ch = cls.server.channel()
        cls._echo = cls.protos.unary(ch, "/types.Types/Echo")
        cls._transform = cls.protos.unary(ch, "/types.Types/Transform")

    @classmethod
    def tearDownClass(cls):
        cls.server.close()

    def echo(self, m):
        return self._echo(m, timeout=10)

    def transform(self, m):
        return self._transform(m, timeout=10)

    def assertSame(self, got, want, exact=True):
        self.assertEqual(self.canon.msg(got), self.canon.msg(want))
        if exact:  # protobuf equality too, where nan does not spoil it
            self.assertEqual(got, want)

    def assertEchoes(self, m, exact=True):
        got = self.echo(m)
        self.assertSame(got, m, exact)
        return got

    def assertTransforms(self, m):
        got = self.transform(m)
        self.assertEqual(self.canon.msg(got), self.canon.msg(self.model.msg(m)))
        return got

    # -- full messages --

    def full(self):
        """A message with every field set to something interesting."""
        A, Inner = self.A, self.Inner
        m = A(
            f_double=-1.5e300, f_float=0.25, f_int32=-42, f_int64=-(2**40),
            f_uint32=3000000000, f_uint64=2**63 + 5, f_sint32=-7, f_sint64=-(2**50),
            f_fixed32=4000000000, f_fixed64=2**64 - 2, f_sfixed32=-99, f_sfixed64=-(2**62),
            f_bool=True, f_string="Grüße, world", f_bytes=b"\x00\x01\xfe\xff",
            f_enum=self.color("GREEN"),
            f_inner=Inner(id=1, name="outer", values=[1, 2, 3], color=self.color("BLUE"),
                          child=Inner(id=2, name="child", values=[INT32_MAX])),
            f_point=self.Point(x=-3, y=4),
            r_double=[1.0, -2.5, INF], r_float=[0.5, -0.125], r_int32=[INT32_MIN, 0, INT32_MAX],
            r_int64=[INT64_MIN, -1, INT64_MAX], r_uint32=[0, 1, UINT32_MAX],
            r_uint64=[0, INT64_MAX, 2**63, UINT64_MAX], r_sint32=[-1, 1], r_sint64=[INT64_MIN, INT64_MAX],
            r_fixed32=[UINT32_MAX, 7], r_fixed64=[UINT64_MAX, 8], r_sfixed32=[INT32_MIN, 9],
            r_sfixed64=[INT64_MAX, -10], r_bool=[True, False, True], r_string=["a", "", "Zz", UNICODE],
            r_bytes=[b"", b"\x00", ALL_BYTES],
            r_enum=[self.color(n) for n in ("COLOR_UNSPECIFIED", "RED", "GREEN", "BLUE", "INFRARED")],
            r_inner=[Inner(id=10), Inner(name="x"), Inner()],
            m_int32={INT32_MIN: "min", 0: "zero", INT32_MAX: "max"},
            m_int64={INT64_MIN: INT64_MAX, INT64_MAX: INT64_MIN, 0: -1},
            m_uint32={0: UINT32_MAX, UINT32_MAX: 0},
            m_uint64={0: UINT64_MAX, UINT64_MAX: 0, 2**63: 2**63 - 1},
            m_sint32={INT32_MIN: -1, INT32_MAX: 1},
            m_sint64={INT64_MIN: 1, INT64_MAX: -1},
            m_fixed32={UINT32_MAX: 1, 0: 2},
            m_fixed64={UINT64_MAX: 3, 0: UINT64_MAX},
            m_sfixed32={INT32_MIN: INT32_MAX, -1: 0},
            m_sfixed64={INT64_MIN: INT64_MAX, -1: 0},
            m_bool={True: False, False: True},
            m_string={"": "empty", "k": "", UNICODE: UNICODE, "a\x00b": "nul"},
            m_enum={1: self.color("RED"), -1: self.color("INFRARED"), 0: 0},
            m_bytes={"all": ALL_BYTES, "none": b""},
            m_double={"inf": INF, "neg": -DBL_MAX, "tiny": DBL_TRUE_MIN},
            m_float={1: FLT_MAX, 2: -FLT_TRUE_MIN},
            choice_text="chosen",
            o_int32=0, o_uint64=UINT64_MAX, o_bool=False, o_string="", o_enum=0,
        )
        m.m_inner["a"].CopyFrom(Inner(id=5, name="five", values=[5, 55]))
        m.m_inner["empty"].CopyFrom(Inner())
        m.f_any.Pack(Inner(id=77, name="packed", values=[7, 7], color=self.color("RED")))
        m.r_any.add().Pack(Inner(id=1))
        m.r_any.add().Pack(A(f_int32=5, f_string="deep", r_int64=[1, 2]))
        raw = m.r_any.add()
        raw.type_url = "type.googleapis.com/unknown.Thing"
        raw.value = b"\x08\x96\x01\x00\xff"
        return m

    def color(self, name):
        return self.protos.pool.FindEnumTypeByName("types.Color").values_by_name[name].number

    def test_echo_full(self):
        self.assertEchoes(self.full())

    def test_echo_empty(self):
        got = self.assertEchoes(self.A())
        self.assertEqual(got.ByteSize(), 0)

    # -- scalars --

    def test_echo_integer_boundaries(self):
        for lo, hi, fields in (
            (INT32_MIN, INT32_MAX, ("f_int32", "f_sint32", "f_sfixed32")),
            (INT64_MIN, INT64_MAX, ("f_int64", "f_sint64", "f_sfixed64")),
            (0, UINT32_MAX, ("f_uint32", "f_fixed32")),
            (0, UINT64_MAX, ("f_uint64", "f_fixed64")),
        ):
            for v in (lo, lo + 1, -1, 0, 1, hi - 1, hi, 2**63 - 1, 2**63, 2**31):
                if not lo <= v <= hi:
                    continue
                for f in fields:
                    with self.subTest(field=f, value=v):
                        m = self.A(**{f: v})
                        got = self.assertEchoes(m)
                        self.assertEqual(getattr(got, f), v)

    def test_echo_floats(self):
        for v in (0.0, -0.0, 1.0, -1.0, 0.1, INF, -INF, NAN, DBL_MAX, -DBL_MAX,
                  DBL_TRUE_MIN, 2.2250738585072014e-308, 1e-300):
            with self.subTest(double=v):
                got = self.echo(self.A(f_double=v, r_double=[v, v], m_double={"k": v}))
                for x in (got.f_double, got.r_double[0], got.r_double[1], got.m_double["k"]):
                    self.assertEqual(repr(x), repr(v))
                    self.assertEqual(math.copysign(1, x), math.copysign(1, v))
        for v in (0.0, -0.0, 0.5, INF, -INF, NAN, FLT_MAX, -FLT_MAX, FLT_TRUE_MIN, struct.unpack("<f", struct.pack("<f", 3.4e-38))[0]):
            with self.subTest(float=v):
                got = self.echo(self.A(f_float=v, r_float=[v], m_float={3: v}, o_float=v))
                for x in (got.f_float, got.r_float[0], got.m_float[3], got.o_float):
                    self.assertEqual(repr(x), repr(v))
                    self.assertEqual(math.copysign(1, x), math.copysign(1, v))

    def test_echo_strings_and_bytes(self):
        for s in ("", "a", "\x00", "a\x00b", UNICODE, "\U0010ffff", "x" * 100000):
            with self.subTest(string=s[:20]):
                got = self.assertEchoes(self.A(f_string=s, r_string=[s, s], o_string=s))
                self.assertEqual(got.f_string, s)
        for b in (b"", b"\x00", b"\x00\x00", ALL_BYTES, b"\xff\xfe\xc0\x80", b"\x80" * 1000):
            with self.subTest(bytes=b[:20]):
                got = self.assertEchoes(self.A(f_bytes=b, r_bytes=[b], o_bytes=b,
                                               m_bytes={"k": b}))
                self.assertEqual(got.f_bytes, b)
                self.assertTrue(got.HasField("o_bytes"))

    def test_echo_bool(self):
        for v in (False, True):
            got = self.assertEchoes(self.A(f_bool=v, r_bool=[v, not v], o_bool=v))
            self.assertEqual(got.f_bool, v)

    def test_echo_enum_values(self):
        for ev in self.protos.pool.FindEnumTypeByName("types.Color").values:
            with self.subTest(enum=ev.name):
                got = self.assertEchoes(self.A(f_enum=ev.number, r_enum=[ev.number],
                                               m_enum={7: ev.number}, o_enum=ev.number))
                self.assertEqual(got.f_enum, ev.number)
                self.assertTrue(got.HasField("o_enum"))
        # proto3 enums are open: a number the enum lacks survives
        for n in (99, -5, INT32_MAX, INT32_MIN):
            with self.subTest(unknown_enum=n):
                got = self.assertEchoes(self.A(f_enum=n, r_enum=[n, 1], m_enum={1: n}))
                self.assertEqual(got.f_enum, n)

    # -- messages and containers --

    def test_echo_nested(self):
        Inner = self.Inner
        m = self.A(f_point=self.Point(), f_inner=Inner())  # present but empty
        got = self.assertEchoes(m)
        self.assertTrue(got.HasField("f_point"))
        self.assertTrue(got.HasField("f_inner"))
        self.assertFalse(got.f_inner.HasField("child"))
        self.assertFalse(self.echo(self.A()).HasField("f_inner"))
        deep = Inner(id=0)
        cur = deep
        for i in range(1, 60):
            cur.child.id = i
            cur = cur.child
        got = self.assertEchoes(self.A(f_inner=deep))
        self.assertEqual(got.f_inner.child.child.child.id, 3)

    def test_echo_empty_repeated(self):
        m = self.A(f_int32=1)
        got = self.assertEchoes(m)
        for fd in self.A.DESCRIPTOR.fields:
            if fd.label == FD.LABEL_REPEATED:
                self.assertEqual(len(getattr(got, fd.name)), 0, fd.name)

    def test_echo_repeated(self):
        m = self.A(r_int32=list(range(-500, 500)), r_string=["s%d" % i for i in range(300)],
                   r_uint64=[UINT64_MAX - i for i in range(50)])
        for i in range(100):
            m.r_inner.add(id=i, name=str(i))
        self.assertEchoes(m)

    def test_echo_maps_every_key_type(self):
        keys = {
            "m_int32": (INT32_MIN, -1, 0, 1, INT32_MAX),
            "m_int64": (INT64_MIN, -1, 0, 1, INT64_MAX),
            "m_uint32": (0, 1, UINT32_MAX),
            "m_uint64": (0, 1, INT64_MAX, 2**63, UINT64_MAX),
            "m_sint32": (INT32_MIN, -1, 0, 1, INT32_MAX),
            "m_sint64": (INT64_MIN, -1, 0, 1, INT64_MAX),
            "m_fixed32": (0, 1, UINT32_MAX),
            "m_fixed64": (0, 1, INT64_MAX, 2**63, UINT64_MAX),
            "m_sfixed32": (INT32_MIN, -1, 0, 1, INT32_MAX),
            "m_sfixed64": (INT64_MIN, -1, 0, 1, INT64_MAX),
            "m_bool": (False, True),
            "m_string": ("", "a", "A", "1", UNICODE, "a\x00b"),
        }
        for field, ks in keys.items():
            with self.subTest(field=field):
                m = self.A()
                mp = getattr(m, field)
                vfd = self.A.DESCRIPTOR.fields_by_name[field].message_type.fields_by_name["value"]
                for i, k in enumerate(ks):
                    if vfd.type == FD.TYPE_STRING:
                        mp[k] = "v%d" % i
                    elif vfd.type == FD.TYPE_BOOL:
                        mp[k] = not k
                    else:
                        mp[k] = i
                got = self.assertEchoes(m)
                self.assertEqual(dict(getattr(got, field)), dict(mp))

    def test_echo_message_and_enum_maps(self):
        m = self.A(m_enum={0: 0, 1: 1, 2: 2, 3: 3, -1: -1, 5: 42})
        m.m_inner["x"].id = 1
        m.m_inner["y"].CopyFrom(self.Inner(name="y", child=self.Inner(id=9)))
        m.m_inner[""].CopyFrom(self.Inner())
        got = self.assertEchoes(m)
        self.assertIn("", got.m_inner)
        self.assertEqual(got.m_enum[5], 42)

    def test_echo_oneof_each_member(self):
        cases = [
            ("choice_int", dict(choice_int=INT64_MIN)),
            ("choice_int", dict(choice_int=0)),        # set to the default
            ("choice_text", dict(choice_text="text")),
            ("choice_text", dict(choice_text="")),
            ("choice_inner", dict(choice_inner=self.Inner(id=4))),
            ("choice_inner", dict(choice_inner=self.Inner())),
        ]
        for which, kw in cases:
            with self.subTest(which=which, kw=kw):
                got = self.assertEchoes(self.A(**kw))
                self.assertEqual(got.WhichOneof("choice"), which)
        self.assertIsNone(self.echo(self.A()).WhichOneof("choice"))

    def test_echo_optional_presence(self):
        zeros = dict(o_int32=0, o_int64=0, o_uint64=0, o_double=0.0, o_float=0.0,
                     o_bool=False, o_string="", o_bytes=b"", o_enum=0)
        got = self.assertEchoes(self.A(**zeros))
        for name in zeros:
            self.assertTrue(got.HasField(name), name)
        got = self.assertEchoes(self.A())
        for name in zeros:
            self.assertFalse(got.HasField(name), name)
        got = self.assertEchoes(self.A(o_int64=INT64_MIN, o_uint64=UINT64_MAX))
        self.assertEqual(got.o_uint64, UINT64_MAX)

    def test_echo_any(self):
        Inner = self.Inner
        packed = Inner(id=3, name="in any", values=[1, 2], color=self.color("BLUE"),
                       child=Inner(id=4))
        m = self.A()
        m.f_any.Pack(packed)
        got = self.assertEchoes(m)
        self.assertEqual(got.f_any.type_url, "type.googleapis.com/types.Inner")
        out = Inner()
        self.assertTrue(got.f_any.Unpack(out))
        self.assertEqual(out, packed)

        # an AllTypes (with maps) inside an Any, and an Any inside an Any
        m = self.A()
        m.f_any.Pack(self.full())
        self.assertEchoes(m, exact=False)
        m = self.A()
        inner_any = self.protos.msg("google.protobuf.Any")()
        inner_any.Pack(Inner(id=8))
        m.f_any.Pack(inner_any)
        self.assertEchoes(m)

        # another type URL prefix
        m = self.A()
        m.f_any.Pack(Inner(id=5), type_url_prefix="example.com/protos")
        got = self.assertEchoes(m)
        self.assertEqual(got.f_any.type_url, "example.com/protos/types.Inner")

        # a type the server does not know: raw bytes through
        m = self.A()
        m.f_any.type_url = "type.googleapis.com/nowhere.Unknown"
        m.f_any.value = b"\x00\x01\x02\xff"
        self.assertEchoes(m)

        # an empty Any, present
        m = self.A()
        m.f_any.SetInParent()
        got = self.assertEchoes(m)
        self.assertTrue(got.HasField("f_any"))

        # repeated
        m = self.A()
        for i in range(5):
            m.r_any.add().Pack(Inner(id=i))
        self.assertEchoes(m)

    # -- Transform --

    def test_transform_full(self):
        self.assertTransforms(self.full())

    def test_transform_documented_values(self):
        A = self.A
        got = self.transform(A(
            f_int32=41, f_int64=INT64_MAX, f_uint32=UINT32_MAX, f_uint64=UINT64_MAX,
            f_sint32=INT32_MAX, f_fixed64=INT64_MAX, f_sfixed64=-1,
            f_double=1.5, f_float=-0.0, f_bool=False, f_string="abc Éé xyz",
            f_bytes=b"\x01\x02\x03", f_enum=self.color("INFRARED"),
            r_int32=[1, 2, 3], m_string={"k": "v"}, choice_int=7, o_int32=0,
        ))
        self.assertEqual(got.f_int32, 42)
        self.assertEqual(got.f_int64, INT64_MIN)
        self.assertEqual(got.f_uint32, 0)
        self.assertEqual(got.f_uint64, 0)
        self.assertEqual(got.f_sint32, INT32_MIN)
        self.assertEqual(got.f_fixed64, 2**63)
        self.assertEqual(got.f_sfixed64, 0)
        self.assertEqual(got.f_double, -1.5)
        self.assertEqual(math.copysign(1, got.f_float), 1.0)
        self.assertTrue(got.f_bool)
        self.assertEqual(got.f_string, "ABC Éé XYZ")
        self.assertEqual(got.f_bytes, b"\x03\x02\x01")
        self.assertEqual(got.f_enum, self.color("COLOR_UNSPECIFIED"))
        self.assertEqual(list(got.r_int32), [4, 3, 2])
        self.assertEqual(dict(got.m_string), {"k": "V"})
        self.assertEqual(got.WhichOneof("choice"), "choice_text")
        self.assertEqual(got.choice_text, "7")
        self.assertTrue(got.HasField("o_int32"))
        self.assertEqual(got.o_int32, 1)
        self.assertFalse(got.HasField("o_string"))
        self.assertFalse(got.HasField("f_inner"))

    def test_transform_defaults(self):
        got = self.transform(self.A())
        self.assertEqual(got.f_int32, 1)
        self.assertEqual(got.f_uint64, 1)
        self.assertTrue(got.f_bool)
        self.assertEqual(got.f_enum, self.color("RED"))
        self.assertEqual(math.copysign(1, got.f_double), -1.0)  # -(0.0)
        self.assertIsNone(got.WhichOneof("choice"))
        self.assertFalse(got.HasField("o_int32"))
        self.assertFalse(got.HasField("f_any"))
        self.assertTransforms(self.A())

    def test_transform_oneof_cycle(self):
        got = self.transform(self.A(choice_int=-12))
        self.assertEqual(got.choice_text, "-12")
        got = self.transform(got)
        self.assertEqual(got.WhichOneof("choice"), "choice_inner")
        self.assertEqual(got.choice_inner.name, "-12")
        got = self.transform(self.A(choice_inner=self.Inner(id=33)))
        self.assertEqual(got.WhichOneof("choice"), "choice_int")
        self.assertEqual(got.choice_int, 33)

    def test_transform_uint64_string_path(self):
        # values above 2^63-1 are decimal strings in Lua
        for v, want in ((INT64_MAX, 2**63), (2**63, 2**63 + 1), (2**63 + 9, 2**63 + 10),
                        (10**19 - 1, 10**19), (UINT64_MAX - 1, UINT64_MAX), (UINT64_MAX, 0)):
            with self.subTest(v=v):
                got = self.transform(self.A(f_uint64=v, r_fixed64=[v], m_uint64={v: v},
                                            o_uint64=v))
                self.assertEqual(got.f_uint64, want)
                self.assertEqual(list(got.r_fixed64), [want])
                self.assertEqual(dict(got.m_uint64), {v: want})
                self.assertEqual(got.o_uint64, want)

    def test_transform_any(self):
        m = self.A()
        m.f_any.Pack(self.Inner(id=1, name="any", values=[1, 2]))
        m.r_any.add().Pack(self.A(f_int32=1, choice_text="t"))
        raw = m.r_any.add()
        raw.type_url = "type.googleapis.com/nowhere.Unknown"
        raw.value = b"\x01\x02"
        got = self.assertTransforms(m)
        inner = self.Inner()
        got.f_any.Unpack(inner)
        self.assertEqual(inner.id, 2)
        self.assertEqual(inner.name, "ANY")
        self.assertEqual(list(inner.values), [3, 2])

    def test_transform_nan_inf(self):
        got = self.transform(self.A(f_double=NAN, f_float=INF, r_double=[-INF, NAN]))
        self.assertTrue(math.isnan(got.f_double))
        self.assertEqual(got.f_float, -INF)
        self.assertTrue(math.isnan(got.r_double[0]))  # reversed, then negated
        self.assertEqual(got.r_double[1], INF)


class TypesCli(unittest.TestCase):
    def test_check(self):
        r = run_cli("check", TYPES)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("2 with handlers", r.stdout)


if __name__ == "__main__":
    mwtest.main()
