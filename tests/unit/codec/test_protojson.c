/* Canonical proto3 JSON (codec/mw_json.h), case by case: each direction,
 * every well-known type, options, limits and the errors with their paths.
 * The comparison with protobuf's own json_format over many random messages
 * is tests/e2e/test_json_format.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mw_diag.h"
#include "codec/mw_json.h"
#include "mw_test.h"
#include "schema/mw_schema.h"
#include "upb/decode.h"
#include "upb/encode.h"
#include "upb/reflection.h"

static mw_schema *g_schema;
static const upb_DefPool *g_pool;
static char g_err[512];

static const upb_MessageDef *msgdef(const char *name) {
  const upb_MessageDef *m = upb_DefPool_FindMessageByName(g_pool, name);
  if (!m) fprintf(stderr, "no message %s\n", name);
  return m;
}

/* JSON -> binary -> JSON; the text (static, overwritten by the next call)
 * or NULL with g_err filled. */
static const char *rt_opts(const char *type, const char *json, int in_opts, int out_opts) {
  static char out[8192];
  const upb_MessageDef *m = msgdef(type);
  if (!m) return NULL;
  upb_Arena *a = upb_Arena_New();
  const char *bin, *text;
  size_t blen, tlen;
  g_err[0] = '\0';
  const char *res = NULL;
  if (mw_json_to_binary(json, strlen(json), m, g_pool, in_opts, NULL, a, &bin, &blen, g_err,
                        sizeof g_err) == MW_JSON_OK &&
      mw_json_from_binary(bin, blen, m, g_pool, out_opts, NULL, a, &text, &tlen, g_err,
                          sizeof g_err) == MW_JSON_OK) {
    snprintf(out, sizeof out, "%s", text);
    res = out;
  }
  upb_Arena_Free(a);
  return res;
}

/* JSON -> binary: the status (g_err filled on failure). */
static int j2b(const char *type, const char *json, int opts, const mw_json_limits *lim) {
  upb_Arena *a = upb_Arena_New();
  const char *bin;
  size_t blen;
  g_err[0] = '\0';
  int rc = mw_json_to_binary(json, strlen(json), msgdef(type), g_pool, opts, lim, a, &bin, &blen,
                             g_err, sizeof g_err);
  upb_Arena_Free(a);
  return rc;
}

/* Each case: type, JSON in, and the JSON that comes back out (defaults
 * options), or "!" + a part of the error. */
typedef struct {
  const char *type, *in, *out;
} rtcase;

static void run_cases(const rtcase *c, size_t n, int in_opts, int out_opts) {
  for (size_t i = 0; i < n; i++) {
    const char *o = rt_opts(c[i].type, c[i].in, in_opts, out_opts);
    if (c[i].out[0] == '!') {
      MW_CHECK(o == NULL);
      MW_CHECK_CONTAINS(g_err, c[i].out + 1);
      if (o) fprintf(stderr, "  case %zu: %s -> %s\n", i, c[i].in, o);
    } else {
      MW_CHECK_STR(o ? o : g_err, c[i].out);
    }
  }
}

#define RUN_CASES(arr, i, o) run_cases(arr, sizeof arr / sizeof arr[0], i, o)

static void test_scalars(void) {
  static const rtcase c[] = {
      {"types.AllTypes", "{}", "{}"},
      {"types.AllTypes", " {\"fInt32\": -5, \"fUint32\": 4294967295, \"fSint32\": -2147483648} ",
       "{\"fInt32\":-5,\"fUint32\":4294967295,\"fSint32\":-2147483648}"},
      /* 64-bit integers come out as strings; numbers and strings go in */
      {"types.AllTypes",
       "{\"fInt64\": 123, \"fUint64\": 18446744073709551615, \"fSint64\": "
       "\"-9223372036854775808\", \"fFixed64\": \"0\", \"fSfixed64\": -1}",
       "{\"fInt64\":\"123\",\"fUint64\":\"18446744073709551615\",\"fSint64\":\"-"
       "9223372036854775808\",\"fSfixed64\":\"-1\"}"},
      {"types.AllTypes", "{\"fInt64\": 9007199254740993}", "{\"fInt64\":\"9007199254740993\"}"},
      {"types.AllTypes", "{\"fInt32\": 1e2, \"fUint32\": 5.0, \"fInt64\": \"-0\"}",
       "{\"fInt32\":100,\"fUint32\":5}"},
      {"types.AllTypes", "{\"fInt32\": 1.5}", "!field 'fInt32': 1.5 is not an integer"},
      {"types.AllTypes", "{\"fInt32\": 2147483648}",
       "!field 'fInt32': integer 2147483648 out of range"},
      {"types.AllTypes", "{\"fUint32\": -1}", "!integer -1 out of range"},
      {"types.AllTypes", "{\"fUint64\": 18446744073709551616}", "!out of range"},
      {"types.AllTypes", "{\"fInt64\": \"1e3\"}", "!'1e3' is not an integer"},
      {"types.AllTypes", "{\"fInt64\": \" 1\"}", "!' 1' is not an integer"},
      {"types.AllTypes", "{\"fInt64\": \"0x10\"}", "!is not an integer"},
      {"types.AllTypes", "{\"fInt32\": true}", "!field 'fInt32': expected an integer"},
      /* floats: shortest form, NaN/Infinity strings, -0 */
      {"types.AllTypes", "{\"fDouble\": 0.1, \"fFloat\": 0.1}", "{\"fDouble\":0.1,\"fFloat\":0.1}"},
      {"types.AllTypes", "{\"fDouble\": -0, \"fFloat\": -0.0}",
       "{\"fDouble\":-0.0,\"fFloat\":-0.0}"},
      {"types.AllTypes",
       "{\"fDouble\": \"NaN\", \"fFloat\": \"-Infinity\", \"rDouble\": [\"Infinity\", \"1.5\", "
       "1e300, 5e-324]}",
       "{\"fDouble\":\"NaN\",\"fFloat\":\"-Infinity\",\"rDouble\":[\"Infinity\",1.5,1e+300,5e-324]"
       "}"},
      {"types.AllTypes", "{\"rFloat\": [3.4028235e38, -3.4028235e38, 1e-45]}",
       "{\"rFloat\":[3.4028235e+38,-3.4028235e+38,1e-45]}"},
      {"types.AllTypes", "{\"fFloat\": 3.5e38}", "!out of the float range"},
      {"types.AllTypes", "{\"fDouble\": 1e400}", "!number 1e400 out of range"},
      {"types.AllTypes", "{\"fDouble\": \"1e400\"}", "!out of range"},
      {"types.AllTypes", "{\"fDouble\": NaN}", "!field 'fDouble': expected a number"},
      {"types.AllTypes", "{\"fDouble\": \"nan\"}", "!'nan' is not a number"},
      {"types.AllTypes", "{\"fDouble\": \" 1\"}", "!is not a number"},
      /* bool, string, bytes */
      {"types.AllTypes",
       "{\"fBool\": true, \"fString\": \"h\\u00e9\\ud83d\\ude00 \\\"q\\\" \\\\ \\/ "
       "\\b\\f\\n\\r\\t\\u0001\"}",
       "{\"fBool\":true,\"fString\":\"h\xc3\xa9\xf0\x9f\x98\x80 \\\"q\\\" \\\\ / "
       "\\b\\f\\n\\r\\t\\u0001\"}"},
      {"types.AllTypes", "{\"fBool\": \"true\"}", "!field 'fBool': expected true or false"},
      {"types.AllTypes", "{\"fBool\": 1}", "!expected true or false"},
      {"types.AllTypes", "{\"fString\": 5}", "!field 'fString': expected a string"},
      {"types.AllTypes", "{\"fString\": \"\\ud800\"}", "!lone surrogate"},
      {"types.AllTypes", "{\"fString\": \"\\udc00x\"}", "!lone surrogate"},
      {"types.AllTypes", "{\"fString\": \"\xff\"}", "!invalid UTF-8"},
      {"types.AllTypes", "{\"fString\": \"\xed\xa0\x80\"}", "!invalid UTF-8"},
      {"types.AllTypes", "{\"fString\": \"a\nb\"}", "!control character"},
      {"types.AllTypes", "{\"fString\": \"\\x\"}", "!bad escape"},
      {"types.AllTypes",
       "{\"fBytes\": \"AQID\", \"rBytes\": [\"AQI\", \"AQ==\", \"-_8\", \"+/8=\", \"\"]}",
       "{\"fBytes\":\"AQID\",\"rBytes\":[\"AQI=\",\"AQ==\",\"+/8=\",\"+/8=\",\"\"]}"},
      {"types.AllTypes", "{\"fBytes\": \"AQI*\"}", "!field 'fBytes': invalid base64"},
      {"types.AllTypes", "{\"fBytes\": \"A\"}", "!invalid base64"},
      {"types.AllTypes", "{\"fBytes\": \"AQ=\"}", "!invalid base64"},
      /* enums by name or number; unknown numbers of open enums stay */
      {"types.AllTypes",
       "{\"fEnum\": \"INFRARED\", \"rEnum\": [1, \"GREEN\", 7], \"mEnum\": {\"1\": \"BLUE\"}}",
       "{\"fEnum\":\"INFRARED\",\"rEnum\":[\"RED\",\"GREEN\",7],\"mEnum\":{\"1\":\"BLUE\"}}"},
      {"types.AllTypes", "{\"fEnum\": \"2\", \"rEnum\": [\"-1\"]}",
       "{\"fEnum\":\"GREEN\",\"rEnum\":[\"INFRARED\"]}"},
      {"types.AllTypes", "{\"fEnum\": \"PURPLE\"}",
       "!field 'fEnum': unknown value \"PURPLE\" of enum types.Color"},
      {"types.AllTypes", "{\"fEnum\": 1.5}", "!is not an enum number"},
  };
  RUN_CASES(c, 0, 0);
}

static void test_messages_and_names(void) {
  static const rtcase c[] = {
      {"jt.Names", "{\"snakeCaseField\": 1, \"MyCustom\": 2, \"color\": \"RED\"}",
       "{\"snakeCaseField\":1,\"MyCustom\":2,\"color\":\"RED\"}"},
      /* .proto names are accepted too */
      {"jt.Names", "{\"snake_case_field\": 1, \"custom\": 2}",
       "{\"snakeCaseField\":1,\"MyCustom\":2}"},
      {"jt.Names", "{\"snake_case_field\": 1, \"snakeCaseField\": 2}",
       "!field 'snakeCaseField': field given twice"},
      {"jt.Names", "{\"maybe\": 0}", "{\"maybe\":0}"},
      {"jt.Names", "{\"maybe\": null, \"color\": null}", "{}"},
      {"jt.Names", "{\"nope\": 1}", "!field 'nope': no such field in jt.Names"},
      {"jt.Inner", "{\"kids\": [{}, {\"child\": {\"id\": \"x\"}}]}",
       "!field 'kids[1].child.id': 'x' is not an integer"},
      {"jt.Inner", "{\"byName\": {\"a\": {\"id\": true}}}",
       "!field 'byName[\"a\"].id': expected an integer"},
      {"jt.Inner",
       "{\"child\": {\"child\": {\"name\": \"deep\"}}, \"kids\": [{\"id\": 1}], \"byName\": "
       "{\"k\": {}}}",
       "{\"child\":{\"child\":{\"name\":\"deep\"}},\"kids\":[{\"id\":1}],\"byName\":{\"k\":{}}}"},
      /* oneofs, optional */
      {"types.AllTypes",
       "{\"choiceInt\": \"5\", \"oInt32\": 0, \"oString\": \"\", \"oEnum\": \"COLOR_UNSPECIFIED\"}",
       "{\"choiceInt\":\"5\",\"oInt32\":0,\"oString\":\"\",\"oEnum\":\"COLOR_UNSPECIFIED\"}"},
      {"types.AllTypes", "{\"choiceInt\": 1, \"choiceText\": \"x\"}",
       "!'choice_int' and 'choice_text' of oneof 'choice' both set"},
      {"types.AllTypes", "{\"choiceInt\": null, \"choiceText\": \"x\"}", "{\"choiceText\":\"x\"}"},
      /* maps: every key type */
      {"types.AllTypes",
       "{\"mInt32\": {\"-1\": \"x\"}, \"mInt64\": {\"-9223372036854775808\": \"1\"}, \"mUint64\": "
       "{\"18446744073709551615\": 2}, \"mBool\": {\"true\": true, \"false\": false}, \"mString\": "
       "{\"\": \"e\"}}",
       "{\"mInt32\":{\"-1\":\"x\"},\"mInt64\":{\"-9223372036854775808\":\"1\"},\"mUint64\":{"
       "\"18446744073709551615\":\"2\"},\"mBool\":{\"true\":true,\"false\":false},\"mString\":{"
       "\"\":\"e\"}}"},
      {"types.AllTypes", "{\"mBool\": {\"1\": true}}",
       "!field 'mBool[\"1\"]': map key must be \"true\" or \"false\""},
      {"types.AllTypes", "{\"mInt32\": {\"2147483648\": \"x\"}}",
       "!map key is not a valid 32-bit integer"},
      {"types.AllTypes", "{\"mInt32\": {\"1\": \"x\", \"1\": \"y\"}}", "!map key given twice"},
      {"types.AllTypes", "{\"mString\": {\"a\": null}}", "!null is not a map value"},
      {"types.AllTypes", "{\"rInt32\": [1, null]}", "!field 'rInt32[1]': null is not an element"},
      {"types.AllTypes", "{\"rInt32\": null, \"fInner\": null, \"mString\": null}", "{}"},
      {"types.AllTypes", "{\"rInt32\": 1}", "!field 'rInt32': expected an array"},
      {"types.AllTypes", "{\"mInt32\": []}", "!field 'mInt32': expected an object"},
      /* syntax */
      {"types.AllTypes", "[]", "!expected an object (a types.AllTypes)"},
      {"types.AllTypes", "", "!expected an object"},
      {"types.AllTypes", "{\"fInt32\": 1,}", "!invalid JSON: expected a string at byte 13"},
      {"types.AllTypes", "{\"fInt32\": 1} x", "!text after the JSON value at byte 14"},
      {"types.AllTypes", "{\"fInt32\" 1}", "!expected ':'"},
      {"types.AllTypes", "{\"fInt32\": 01}", "!expected ',' or '}'"},
      {"types.AllTypes", "{\"fInner\": {\"id\": 1}", "!at the end"},
      {"types.AllTypes", "{\"fString\": \"abc", "!unterminated string"},
  };
  RUN_CASES(c, 0, 0);
}

static void test_well_known(void) {
  static const rtcase c[] = {
      {"jt.WellKnown",
       "{\"ts\": \"1972-01-01T10:00:20.021Z\", \"rTs\": [\"1970-01-01T00:00:00Z\", "
       "\"1969-12-31T23:59:59.999999999Z\", \"2000-02-29T12:00:00.100200Z\", "
       "\"1972-01-01T10:00:20.021+01:30\", \"0001-01-01T00:00:00Z\", "
       "\"9999-12-31T23:59:59.5-00:00\"]}",
       "{\"ts\":\"1972-01-01T10:00:20.021Z\",\"rTs\":[\"1970-01-01T00:00:00Z\",\"1969-12-31T23:59:"
       "59.999999999Z\",\"2000-02-29T12:00:00.100200Z\",\"1972-01-01T08:30:20.021Z\",\"0001-01-"
       "01T00:00:00Z\",\"9999-12-31T23:59:59.500Z\"]}"},
      {"jt.WellKnown", "{\"ts\": \"1972-01-01t10:00:20z\"}", "!field 'ts': invalid Timestamp"},
      {"jt.WellKnown", "{\"ts\": \"2001-02-29T00:00:00Z\"}", "!invalid Timestamp"},
      {"jt.WellKnown", "{\"ts\": \"1972-01-01T10:00:20.0000000001Z\"}", "!invalid Timestamp"},
      {"jt.WellKnown", "{\"ts\": \"0001-01-01T00:00:00+01:00\"}",
       "!outside 0001-01-01..9999-12-31"},
      {"jt.WellKnown", "{\"ts\": 5}", "!expected a Timestamp string"},
      {"jt.WellKnown",
       "{\"dur\": \"-0.5s\", \"rDur\": [\"1.000000001s\", \"-1.5s\", \"0s\", \"315576000000s\", "
       "\"-315576000000.999999999s\", \"0.010s\"]}",
       "{\"dur\":\"-0.500s\",\"rDur\":[\"1.000000001s\",\"-1.500s\",\"0s\",\"315576000000s\",\"-"
       "315576000000.999999999s\",\"0.010s\"]}"},
      {"jt.WellKnown", "{\"dur\": \"315576000001s\"}",
       "!field 'dur': Duration \"315576000001s\" outside"},
      {"jt.WellKnown", "{\"dur\": \"1\"}", "!invalid Duration"},
      {"jt.WellKnown", "{\"dur\": \"1.s\"}", "!invalid Duration"},
      {"jt.WellKnown", "{\"dur\": \"+1s\"}", "!invalid Duration"},
      {"jt.WellKnown", "{\"mask\": \"a.bC,dEf,g\"}", "{\"mask\":\"a.bC,dEf,g\"}"},
      {"jt.WellKnown", "{\"mask\": \"\"}", "{\"mask\":\"\"}"},
      {"jt.WellKnown", "{\"mask\": \"a_b\"}", "!has a '_'"},
      {"jt.WellKnown",
       "{\"st\": {\"a\": [1, \"x\", null, true, {\"b\": {}}, -2.5]}, \"val\": null, \"list\": [], "
       "\"mVal\": {\"k\": null, \"s\": \"v\"}}",
       "{\"st\":{\"a\":[1,\"x\",null,true,{\"b\":{}},-2.5]},\"val\":null,\"list\":[],\"mVal\":{"
       "\"k\":null,\"s\":\"v\"}}"},
      {"jt.WellKnown", "{\"val\": {\"x\": [[]]}}", "{\"val\":{\"x\":[[]]}}"},
      {"jt.WellKnown", "{\"st\": {\"a\": 1, \"a\": 2}}", "!field 'st[\"a\"]': key given twice"},
      {"jt.WellKnown", "{\"st\": []}", "!expected an object (a Struct)"},
      {"jt.WellKnown", "{\"val\": 1e999}", "!out of range"},
      {"jt.WellKnown",
       "{\"wDouble\": 0, \"wFloat\": \"NaN\", \"wInt64\": \"-9223372036854775808\", \"wUint64\": "
       "\"18446744073709551615\", \"wInt32\": 0, \"wUint32\": 4294967295, \"wBool\": false, "
       "\"wString\": \"\", \"wBytes\": \"\"}",
       "{\"wDouble\":0,\"wFloat\":\"NaN\",\"wInt64\":\"-9223372036854775808\",\"wUint64\":"
       "\"18446744073709551615\",\"wInt32\":0,\"wUint32\":4294967295,\"wBool\":false,\"wString\":"
       "\"\",\"wBytes\":\"\"}"},
      {"jt.WellKnown", "{\"wInt32\": null, \"wString\": null}", "{}"},
      {"jt.WellKnown", "{\"wInt32\": {\"value\": 1}}", "!field 'wInt32': expected an integer"},
      {"jt.WellKnown", "{\"nullVal\": null, \"empty\": {}}", "{\"empty\":{}}"},
      {"jt.WellKnown", "{\"nullVal\": \"NULL_VALUE\"}", "{}"},
      {"jt.WellKnown", "{\"empty\": {\"x\": 1}}",
       "!field 'empty.x': no such field in google.protobuf.Empty"},
      /* Any: @type anywhere in the object, WKTs under "value", nested Any */
      {"jt.WellKnown",
       "{\"any\": {\"@type\": \"type.googleapis.com/jt.Inner\", \"id\": 3, \"kids\": [{\"name\": "
       "\"k\"}]}}",
       "{\"any\":{\"@type\":\"type.googleapis.com/"
       "jt.Inner\",\"id\":3,\"kids\":[{\"name\":\"k\"}]}}"},
      {"jt.WellKnown", "{\"any\": {\"id\": 3, \"@type\": \"x.example/jt.Inner\"}}",
       "{\"any\":{\"@type\":\"x.example/jt.Inner\",\"id\":3}}"},
      {"jt.WellKnown",
       "{\"any\": {\"@type\": \"type.googleapis.com/google.protobuf.Duration\", \"value\": "
       "\"1s\"}}",
       "{\"any\":{\"@type\":\"type.googleapis.com/google.protobuf.Duration\",\"value\":\"1s\"}}"},
      {"jt.WellKnown",
       "{\"rAny\": [{\"@type\": \"type.googleapis.com/google.protobuf.Any\", \"value\": "
       "{\"@type\": \"type.googleapis.com/jt.Inner\", \"name\": \"n\"}}, {\"@type\": "
       "\"type.googleapis.com/google.protobuf.Struct\", \"value\": {\"a\": 1}}, {}]}",
       "{\"rAny\":[{\"@type\":\"type.googleapis.com/"
       "google.protobuf.Any\",\"value\":{\"@type\":\"type.googleapis.com/"
       "jt.Inner\",\"name\":\"n\"}},{\"@type\":\"type.googleapis.com/"
       "google.protobuf.Struct\",\"value\":{\"a\":1}},{}]}"},
      {"jt.WellKnown", "{\"any\": {}}", "{\"any\":{}}"},
      {"jt.WellKnown", "{\"any\": {\"@type\": \"type.googleapis.com/jt.Nope\", \"id\": 3}}",
       "!field 'any.@type': Any type 'jt.Nope' is not in the schema"},
      {"jt.WellKnown", "{\"any\": {\"@type\": \"jt.Inner\"}}", "!has no '/'"},
      {"jt.WellKnown", "{\"any\": {\"id\": 3}}", "!field 'any': Any without \"@type\""},
      {"jt.WellKnown", "{\"any\": {\"@type\": \"type.googleapis.com/jt.Inner\", \"nope\": 3}}",
       "!field 'any.nope': no such field in jt.Inner"},
      {"jt.WellKnown",
       "{\"any\": {\"@type\": \"type.googleapis.com/google.protobuf.Duration\", \"seconds\": 3}}",
       "!has only \"@type\" and \"value\""},
      {"jt.WellKnown", "{\"any\": {\"@type\": \"type.googleapis.com/google.protobuf.Duration\"}}",
       "!needs \"value\""},
      {"jt.WellKnown",
       "{\"any\": {\"@type\": \"type.googleapis.com/jt.Inner\", \"@type\": "
       "\"type.googleapis.com/jt.Inner\"}}",
       "!\"@type\" given twice"},
  };
  RUN_CASES(c, 0, 0);
}

static void test_options(void) {
  /* ignore unknown: fields, enum names (singular keeps its default, a
   * repeated element is dropped), whatever the unknown value's shape */
  static const rtcase ign[] = {
      {"jt.Names",
       "{\"nope\": {\"x\": [1, {\"y\": null}]}, \"color\": \"BLUE\", \"colors\": [\"BLUE\", "
       "\"RED\"], \"maybe\": 1}",
       "{\"colors\":[\"RED\"],\"maybe\":1}"},
      {"jt.Names", "{\"nope\": [1,]}", "!invalid JSON"},
  };
  RUN_CASES(ign, MW_JSON_IGNORE_UNKNOWN, 0);
  /* emit defaults: proto3 scalars, repeated and maps; not fields with
   * presence; proto names */
  static const rtcase def[] = {
      {"jt.Names", "{}",
       "{\"snake_case_field\":0,\"custom\":0,\"color\":\"COLOR_UNSPECIFIED\",\"colors\":[]}"},
      {"jt.WellKnown", "{}",
       "{\"r_ts\":[],\"m_val\":{},\"null_val\":null,\"r_any\":[],\"r_dur\":[]}"},
      {"jt.Inner", "{\"child\": {}}",
       "{\"id\":0,\"name\":\"\",\"child\":{\"id\":0,\"name\":\"\",\"kids\":[],\"by_name\":{}},"
       "\"kids\":[],\"by_name\":{}}"},
  };
  RUN_CASES(def, 0, MW_JSON_EMIT_DEFAULTS | MW_JSON_PROTO_NAMES);
  /* proto2: set fields come out even at their default; with emit
   * defaults, absent scalars come out with their declared defaults */
  static const rtcase old[] = {
      {"jt.Old", "{\"count\": 0, \"kind\": \"LEGACY_A\"}", "{\"count\":0,\"kind\":\"LEGACY_A\"}"},
      {"jt.Old", "{\"kind\": 5}", "!5 is not a value of enum jt.Legacy"},
      {"jt.Old", "{\"kind\": \"5\"}", "!unknown value \"5\" of enum jt.Legacy"},
  };
  RUN_CASES(old, 0, 0);
  static const rtcase old_def[] = {
      {"jt.Old", "{}",
       "{\"count\":7,\"label\":\"none\",\"kind\":\"LEGACY_B\",\"ids\":[],\"blob\":\"\",\"ratio\":0."
       "5,\"counts\":{}}"},
  };
  RUN_CASES(old_def, 0, MW_JSON_EMIT_DEFAULTS);
  const char *o = rt_opts("jt.Names", "{\"MyCustom\": 3}", 0, MW_JSON_PROTO_NAMES);
  MW_CHECK_STR(o, "{\"custom\":3}");
}

/* binary -> JSON of messages JSON cannot produce: built with upb. */
static const char *encode_with(const char *type, const char *json, const char *field, int64_t s,
                               int32_t n, double d) {
  static char out[4096];
  const upb_MessageDef *m = msgdef(type);
  upb_Arena *a = upb_Arena_New();
  upb_Message *msg = upb_Message_New(m, a);
  g_err[0] = '\0';
  const char *res = NULL;
  if (mw_json_decode_msg(json, strlen(json), msg, m, g_pool, 0, NULL, a, g_err, sizeof g_err) ==
      MW_JSON_OK) {
    const upb_FieldDef *f = upb_MessageDef_FindFieldByName(m, field);
    const upb_MessageDef *sm = upb_FieldDef_MessageSubDef(f);
    upb_Message *sub = upb_Message_Mutable(msg, f, a).msg;
    upb_MessageValue v;
    if (upb_MessageDef_WellKnownType(sm) == kUpb_WellKnown_Value) {
      v.double_val = d;
      upb_Message_Set(sub, upb_MessageDef_FindFieldByNumber(sm, 2), v, a);
    } else {
      v.int64_val = s;
      upb_Message_Set(sub, upb_MessageDef_FindFieldByNumber(sm, 1), v, a);
      v.int32_val = n;
      upb_Message_Set(sub, upb_MessageDef_FindFieldByNumber(sm, 2), v, a);
    }
    char *bin;
    size_t blen;
    upb_Encode(msg, upb_MessageDef_MiniTable(m), 0, a, &bin, &blen);
    const char *text;
    size_t tlen;
    if (mw_json_from_binary(bin, blen, m, g_pool, 0, NULL, a, &text, &tlen, g_err, sizeof g_err) ==
        MW_JSON_OK) {
      snprintf(out, sizeof out, "%s", text);
      res = out;
    }
  }
  upb_Arena_Free(a);
  return res;
}

static void test_writer_errors(void) {
  MW_CHECK_STR(encode_with("jt.WellKnown", "{}", "dur", 0, -1000, 0), "{\"dur\":\"-0.000001s\"}");
  MW_CHECK(encode_with("jt.WellKnown", "{}", "dur", 1, -1, 0) == NULL);
  MW_CHECK_CONTAINS(g_err, "field 'dur': Duration seconds and nanos of different signs");
  MW_CHECK(encode_with("jt.WellKnown", "{}", "dur", 315576000001LL, 0, 0) == NULL);
  MW_CHECK_CONTAINS(g_err, "outside +-315576000000");
  MW_CHECK(encode_with("jt.WellKnown", "{}", "dur", 0, 1000000000, 0) == NULL);
  MW_CHECK_CONTAINS(g_err, "nanos");
  MW_CHECK(encode_with("jt.WellKnown", "{}", "ts", 253402300800LL, 0, 0) == NULL);
  MW_CHECK_CONTAINS(g_err, "field 'ts': Timestamp seconds 253402300800 outside");
  MW_CHECK(encode_with("jt.WellKnown", "{}", "ts", 0, -1, 0) == NULL);
  MW_CHECK_CONTAINS(g_err, "Timestamp nanos -1");
  MW_CHECK_STR(encode_with("jt.WellKnown", "{}", "ts", -1, 0, 0),
               "{\"ts\":\"1969-12-31T23:59:59Z\"}");
  MW_CHECK(encode_with("jt.WellKnown", "{}", "val", 0, 0, NAN) == NULL);
  MW_CHECK_CONTAINS(g_err, "field 'val': Value number NaN has no JSON form");
  MW_CHECK(encode_with("jt.WellKnown", "{\"st\": {\"a\": {\"b\": [1]}}}", "val", 0, 0, -INFINITY) ==
           NULL);
  MW_CHECK_CONTAINS(g_err, "-Infinity");
  /* a path deep inside: Struct keys, list indexes, map keys, Any */
  MW_CHECK(encode_with("jt.WellKnown",
                       "{\"any\": {\"@type\": \"type.googleapis.com/jt.WellKnown\", \"rTs\": "
                       "[\"1970-01-01T00:00:00Z\"]}}",
                       "ts", 0, -5, 0) == NULL);
  MW_CHECK_CONTAINS(g_err, "field 'ts'");

  /* An Any of a type the schema lacks, a FieldMask json cannot say, a
   * Value without a kind (null, as json_format) */
  upb_Arena *a = upb_Arena_New();
  const upb_MessageDef *m = msgdef("jt.WellKnown");
  upb_Message *msg = upb_Message_New(m, a);
  const upb_FieldDef *any_f = upb_MessageDef_FindFieldByName(m, "any");
  const upb_MessageDef *any_m = upb_FieldDef_MessageSubDef(any_f);
  upb_Message *any = upb_Message_Mutable(msg, any_f, a).msg;
  upb_MessageValue v;
  v.str_val.data = "type.googleapis.com/no.Such";
  v.str_val.size = strlen(v.str_val.data);
  upb_Message_Set(any, upb_MessageDef_FindFieldByNumber(any_m, 1), v, a);
  const char *text;
  size_t tlen;
  MW_CHECK(mw_json_encode_msg(msg, m, g_pool, 0, NULL, a, &text, &tlen, g_err, sizeof g_err) ==
           MW_JSON_INVALID);
  MW_CHECK_STR(g_err, "field 'any': Any type 'no.Such' is not in the schema");
  v.str_val.data = "type.googleapis.com/jt.Inner";
  v.str_val.size = strlen(v.str_val.data);
  upb_Message_Set(any, upb_MessageDef_FindFieldByNumber(any_m, 1), v, a);
  v.str_val.data = "\xff\xff";
  v.str_val.size = 2;
  upb_Message_Set(any, upb_MessageDef_FindFieldByNumber(any_m, 2), v, a);
  MW_CHECK(mw_json_encode_msg(msg, m, g_pool, 0, NULL, a, &text, &tlen, g_err, sizeof g_err) ==
           MW_JSON_INVALID);
  MW_CHECK_CONTAINS(g_err, "cannot decode the jt.Inner in an Any");
  upb_Message_ClearField(msg, any_f);

  const upb_FieldDef *mask_f = upb_MessageDef_FindFieldByName(m, "mask");
  upb_Message *mask = upb_Message_Mutable(msg, mask_f, a).msg;
  upb_Array *paths =
      upb_Message_Mutable(
          mask, upb_MessageDef_FindFieldByNumber(upb_FieldDef_MessageSubDef(mask_f), 1), a)
          .array;
  v.str_val.data = "fooBar";
  v.str_val.size = 6;
  upb_Array_Append(paths, v, a);
  MW_CHECK(mw_json_encode_msg(msg, m, g_pool, 0, NULL, a, &text, &tlen, g_err, sizeof g_err) ==
           MW_JSON_INVALID);
  MW_CHECK_CONTAINS(g_err, "field 'mask': FieldMask path 'fooBar' has an upper-case letter");
  upb_Message_ClearField(msg, mask_f);

  const upb_FieldDef *val_f = upb_MessageDef_FindFieldByName(m, "val");
  upb_Message_Mutable(msg, val_f, a);
  MW_CHECK(mw_json_encode_msg(msg, m, g_pool, 0, NULL, a, &text, &tlen, g_err, sizeof g_err) ==
           MW_JSON_OK);
  MW_CHECK_STR(text, "{\"val\":null}");

  /* a proto2 string is not checked by the binary decoder: the writer does */
  const upb_MessageDef *old = msgdef("jt.Old");
  MW_CHECK(mw_json_from_binary("\x2a\x02\x0a\x00\x2a\x03\x12\x01\xff", 9, old, g_pool, 0, NULL, a,
                               &text, &tlen, g_err, sizeof g_err) == MW_JSON_INVALID);
  MW_CHECK_STR(g_err, "field 'child.label': invalid UTF-8 in string");

  /* malformed binary */
  MW_CHECK(mw_json_from_binary("\x0a\x05", 2, m, g_pool, 0, NULL, a, &text, &tlen, g_err,
                               sizeof g_err) == MW_JSON_INVALID);
  MW_CHECK_STR(g_err, "cannot decode jt.WellKnown: malformed wire data");
  upb_Arena_Free(a);
}

/* Nesting and size limits, both ways. */
static void test_limits(void) {
  char deep[4096];
  size_t o = 0;
  for (int i = 0; i < 150; i++) o += (size_t)snprintf(deep + o, sizeof deep - o, "{\"child\":");
  o += (size_t)snprintf(deep + o, sizeof deep - o, "{}");
  for (int i = 0; i < 150; i++) deep[o++] = '}';
  deep[o] = '\0';
  MW_CHECK_INT(j2b("jt.Inner", deep, 0, NULL), MW_JSON_TOO_LARGE);
  MW_CHECK_CONTAINS(g_err, "nested deeper than 100 levels");
  MW_CHECK_CONTAINS(g_err, "field '...");
  MW_CHECK_CONTAINS(g_err, ".child.child': nested deeper than 100 levels");
  mw_json_limits lim = {0, 0, 200};
  MW_CHECK_INT(j2b("jt.Inner", deep, 0, &lim), MW_JSON_OK);
  lim.max_depth = 10;
  MW_CHECK_INT(j2b("jt.WellKnown", "{\"val\": [[[[[[[[[[[1]]]]]]]]]]]}", 0, &lim),
               MW_JSON_TOO_LARGE);
  MW_CHECK_INT(j2b("jt.WellKnown", "{\"val\": [[[[[[[[1]]]]]]]]}", 0, &lim), MW_JSON_OK);
  /* an unknown field's value counts too */
  MW_CHECK_INT(j2b("jt.Names", "{\"x\": [[[[[[[[[[[1]]]]]]]]]]]}", MW_JSON_IGNORE_UNKNOWN, &lim),
               MW_JSON_TOO_LARGE);

  /* binary deeper than the limit: upb's decoder stops it */
  lim.max_depth = 200;
  upb_Arena *a = upb_Arena_New();
  const upb_MessageDef *m = msgdef("jt.Inner");
  const char *bin, *text;
  size_t blen, tlen;
  MW_CHECK_INT(mw_json_to_binary(deep, strlen(deep), m, g_pool, 0, &lim, a, &bin, &blen, g_err,
                                 sizeof g_err),
               MW_JSON_OK);
  MW_CHECK_INT(
      mw_json_from_binary(bin, blen, m, g_pool, 0, NULL, a, &text, &tlen, g_err, sizeof g_err),
      MW_JSON_TOO_LARGE);
  MW_CHECK_CONTAINS(g_err, "nested deeper than 100 levels");
  MW_CHECK_INT(
      mw_json_from_binary(bin, blen, m, g_pool, 0, &lim, a, &text, &tlen, g_err, sizeof g_err),
      MW_JSON_OK);
  MW_CHECK_INT(tlen, strlen(deep) - 150 * 0);

  /* sizes: JSON in, binary out, binary in, JSON out */
  mw_json_limits small = {10, 0, 0};
  MW_CHECK_INT(j2b("jt.Names", "{\"snakeCaseField\": 1}", 0, &small), MW_JSON_TOO_LARGE);
  MW_CHECK_CONTAINS(g_err, "JSON of 21 bytes is larger than 10 bytes");
  mw_json_limits bout = {0, 3, 0};
  MW_CHECK_INT(j2b("jt.Inner", "{\"name\": \"abcdef\"}", 0, &bout), MW_JSON_TOO_LARGE);
  MW_CHECK_CONTAINS(g_err, "jt.Inner message of 8 bytes is larger than 3 bytes");
  MW_CHECK_INT(
      mw_json_from_binary(bin, blen, m, g_pool, 0, &small, a, &text, &tlen, g_err, sizeof g_err),
      MW_JSON_TOO_LARGE);
  mw_json_limits jout = {0, 100, 200};
  MW_CHECK_INT(
      mw_json_from_binary(bin, blen, m, g_pool, 0, &jout, a, &text, &tlen, g_err, sizeof g_err),
      MW_JSON_TOO_LARGE);
  MW_CHECK_CONTAINS(g_err, "JSON output larger than 100 bytes");
  upb_Arena_Free(a);
}

/* A message with every kind of field survives JSON -> binary -> JSON ->
 * binary byte for byte (deterministic encodings of both). */
static void test_binary_roundtrip(void) {
  const char *json =
      "{\"fDouble\":1.25,\"fInt64\":\"-7\",\"fUint64\":\"18446744073709551615\",\"fBytes\":"
      "\"AAEC\","
      "\"fEnum\":\"BLUE\",\"fInner\":{\"id\":1,\"values\":[1,2],\"child\":{\"name\":\"c\"}},"
      "\"fPoint\":{\"x\":-1,\"y\":2},\"rString\":[\"a\",\"\"],\"rInner\":[{},{\"id\":2}],"
      "\"mSint64\":{\"-5\":\"-6\"},\"mInner\":{\"k\":{\"id\":3}},\"choiceInner\":{\"id\":4},"
      "\"oBool\":false,\"fAny\":{\"@type\":\"type.googleapis.com/types.Inner\",\"id\":9},"
      "\"rAny\":[{\"@type\":\"type.googleapis.com/google.protobuf.Any\",\"value\":{}}]}";
  upb_Arena *a = upb_Arena_New();
  const upb_MessageDef *m = msgdef("types.AllTypes");
  const char *bin, *text, *bin2;
  size_t blen, tlen, blen2;
  MW_CHECK_INT(mw_json_to_binary(json, strlen(json), m, g_pool, 0, NULL, a, &bin, &blen, g_err,
                                 sizeof g_err),
               MW_JSON_OK);
  MW_CHECK_INT(
      mw_json_from_binary(bin, blen, m, g_pool, 0, NULL, a, &text, &tlen, g_err, sizeof g_err),
      MW_JSON_OK);
  MW_CHECK_STR(text, json);
  MW_CHECK_INT(
      mw_json_to_binary(text, tlen, m, g_pool, 0, NULL, a, &bin2, &blen2, g_err, sizeof g_err),
      MW_JSON_OK);
  MW_CHECK(blen == blen2 && memcmp(bin, bin2, blen) == 0);
  /* an empty message: non-NULL, zero bytes */
  MW_CHECK_INT(mw_json_to_binary("{}", 2, m, g_pool, 0, NULL, a, &bin, &blen, g_err, sizeof g_err),
               MW_JSON_OK);
  MW_CHECK(bin != NULL && blen == 0);
  /* no error buffer */
  MW_CHECK_INT(mw_json_to_binary("{", 1, m, g_pool, 0, NULL, a, &bin, &blen, NULL, 0),
               MW_JSON_INVALID);
  upb_Arena_Free(a);
}

/* MW_JSON_BENCH=N: N conversions each way of test_binary_roundtrip's
 * message, timed (a measurement to run by hand, not a test). */
static int bench(long n) {
  const char *json =
      "{\"fDouble\":1.25,\"fInt64\":\"-7\",\"fUint64\":\"18446744073709551615\",\"fBytes\":"
      "\"AAEC\","
      "\"fString\":\"hello world\",\"fEnum\":\"BLUE\",\"fInner\":{\"id\":1,\"values\":[1,2,3,4],"
      "\"child\":{\"name\":\"c\"}},\"rString\":[\"a\",\"bb\",\"ccc\"],\"rInner\":[{},{\"id\":2}],"
      "\"mString\":{\"k1\":\"v1\",\"k2\":\"v2\"},\"rDouble\":[0.1,2.5,1e10],\"oBool\":false}";
  const upb_MessageDef *m = msgdef("types.AllTypes");
  const char *bin = NULL, *text;
  size_t blen = 0, tlen = 0;
  struct timespec t0, t1, t2;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) {
    upb_Arena *a = upb_Arena_New();
    if (mw_json_to_binary(json, strlen(json), m, g_pool, 0, NULL, a, &bin, &blen, NULL, 0) !=
        MW_JSON_OK)
      return 1;
    upb_Arena_Free(a);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  upb_Arena *keep = upb_Arena_New();
  mw_json_to_binary(json, strlen(json), m, g_pool, 0, NULL, keep, &bin, &blen, NULL, 0);
  for (long i = 0; i < n; i++) {
    upb_Arena *a = upb_Arena_New();
    if (mw_json_from_binary(bin, blen, m, g_pool, 0, NULL, a, &text, &tlen, NULL, 0) != MW_JSON_OK)
      return 1;
    upb_Arena_Free(a);
  }
  clock_gettime(CLOCK_MONOTONIC, &t2);
  double in_ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / (double)n;
  double out_ns = ((t2.tv_sec - t1.tv_sec) * 1e9 + (t2.tv_nsec - t1.tv_nsec)) / (double)n;
  printf("JSON -> binary: %.0f ns per message (%zu JSON bytes, %.0f MB/s)\n", in_ns, strlen(json),
         strlen(json) / in_ns * 1e3);
  printf("binary -> JSON: %.0f ns per message (%zu binary bytes, %.0f MB/s of JSON)\n", out_ns,
         blen, strlen(json) / out_ns * 1e3);
  upb_Arena_Free(keep);
  return 0;
}

int main(void) {
  const char *dirs[] = {MW_TEST_DATA "/json", MW_TEST_DATA "/../../examples/types"};
  mw_schema_input in = {dirs, 2, NULL, 0, NULL, 0};
  mw_diag d = {0};
  g_schema = mw_schema_load(&in, &d);
  if (!g_schema) {
    fprintf(stderr, "schema: %s\n", mw_diag_count(&d) ? d.msgs[0] : "?");
    return 1;
  }
  g_pool = mw_schema_pool(g_schema);
  const char *bench_n = getenv("MW_JSON_BENCH");
  if (bench_n) {
    int rc = bench(atol(bench_n));
    mw_schema_free(g_schema);
    return rc;
  }
  MW_RUN(test_scalars);
  MW_RUN(test_messages_and_names);
  MW_RUN(test_well_known);
  MW_RUN(test_options);
  MW_RUN(test_writer_errors);
  MW_RUN(test_limits);
  MW_RUN(test_binary_roundtrip);
  mw_schema_free(g_schema);
  return mw_test_done();
}
