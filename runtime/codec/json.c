/* Canonical proto3 JSON <-> protobuf binary (codec/mw_json.h): a writer of
 * its own over upb's reflection, upb_JsonDecode for reading with the field
 * path added to its errors. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/mw_json.h"
#include "upb/decode.h"
#include "upb/encode.h"
#include "upb/reflection.h"

#define ANY_PREFIX_MAX 2048

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static int depth_limit(const mw_json_limits *limits) {
  return limits && limits->max_depth > 0 ? limits->max_depth : MW_JSON_DEPTH_LIMIT;
}

/* The same limit for upb's binary decoder and encoder: a level of
 * Struct/ListValue nesting in JSON is two messages on the wire (the Value
 * and the Struct or ListValue in it), so the wire gets twice the levels;
 * the JSON side counts its own. */
static int wire_depth(int json_depth) { return 2 * json_depth + 2; }

/* ---- paths --------------------------------------------------------------- */

/* One segment of the path of the value being written or read. */
enum { SEG_NAME, SEG_INDEX, SEG_KEY };
typedef struct {
  int kind;
  const char *s; /* SEG_NAME, SEG_KEY */
  size_t len;
  size_t index; /* SEG_INDEX */
} seg;

#define MAX_SEGS (2 * MW_JSON_DEPTH_LIMIT + 16)

typedef struct {
  seg segs[MAX_SEGS];
  int n;
} path;

static void path_push(path *p, int kind, const char *s, size_t len, size_t index) {
  if (p->n < MAX_SEGS) {
    p->segs[p->n].kind = kind;
    p->segs[p->n].s = s;
    p->segs[p->n].len = len;
    p->segs[p->n].index = index;
  }
  p->n++;
}

static void path_pop(path *p) { p->n--; }

static void path_render_full(const path *p, char *buf, size_t cap);

/* "a.b[0][\"k\"]" into buf; a path longer than 240 bytes keeps its end
 * ("...child.child.id"), where the error is. */
static void path_render(const path *p, char *buf, size_t cap) {
  char full[4096];
  path_render_full(p, full, sizeof full);
  size_t n = strlen(full);
  if (n > 240)
    snprintf(buf, cap, "...%s", full + n - 240);
  else
    snprintf(buf, cap, "%s", full);
}

static void path_render_full(const path *p, char *buf, size_t cap) {
  size_t o = 0;
  buf[0] = '\0';
  int n = p->n < MAX_SEGS ? p->n : MAX_SEGS;
  for (int i = 0; i < n && o + 1 < cap; i++) {
    const seg *s = &p->segs[i];
    int w;
    switch (s->kind) {
      case SEG_NAME:
        w = snprintf(buf + o, cap - o, "%s%.*s", o ? "." : "", (int)(s->len > 200 ? 200 : s->len),
                     s->s);
        break;
      case SEG_INDEX:
        w = snprintf(buf + o, cap - o, "[%zu]", s->index);
        break;
      default:
        w = snprintf(buf + o, cap - o, "[\"%.*s\"]", (int)(s->len > 200 ? 200 : s->len), s->s);
        break;
    }
    if (w < 0) break;
    o += (size_t)w;
  }
  if (o >= cap) buf[cap - 1] = '\0';
}

/* ---- the writer ---------------------------------------------------------- */

typedef struct {
  char *buf;
  size_t len, cap;
  size_t max_out; /* 0: none */
  upb_Arena *a;
  const upb_DefPool *pool;
  int options;
  int depth, max_depth;
  path p;
  mw_json_status status;
  char *err;
  size_t errlen;
} writer;

/* Everything but the path's segments, which are written before they are
 * read (a few KiB not to clear for every message). */
static void writer_clear(writer *w) {
  memset(w, 0, offsetof(writer, p));
  w->p.n = 0;
  memset(&w->status, 0, sizeof *w - offsetof(writer, status));
}

static bool w_fail(writer *w, mw_json_status st, const char *fmt, ...) {
  if (w->status != MW_JSON_OK) return false;
  w->status = st;
  if (w->err && w->errlen) {
    char where[512], msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    path_render(&w->p, where, sizeof where);
    if (where[0])
      snprintf(w->err, w->errlen, "field '%s': %s", where, msg);
    else
      snprintf(w->err, w->errlen, "%s", msg);
  }
  return false;
}

static bool w_reserve(writer *w, size_t n) {
  if (w->len + n + 1 <= w->cap) return true;
  if (w->max_out && w->len + n > w->max_out)
    return w_fail(w, MW_JSON_TOO_LARGE, "JSON output larger than %zu bytes", w->max_out);
  size_t cap = w->cap ? w->cap : 256;
  while (cap < w->len + n + 1) cap *= 2;
  char *nb = upb_Arena_Realloc(w->a, w->buf, w->cap, cap);
  if (!nb) return w_fail(w, MW_JSON_NOMEM, "out of memory");
  w->buf = nb;
  w->cap = cap;
  return true;
}

static bool w_put(writer *w, const char *s, size_t n) {
  if (n == 0) return true;
  if (!w_reserve(w, n)) return false;
  memcpy(w->buf + w->len, s, n);
  w->len += n;
  return true;
}

static bool w_str(writer *w, const char *s) { return w_put(w, s, strlen(s)); }

static bool w_ch(writer *w, char c) { return w_put(w, &c, 1); }

static bool w_printf(writer *w, const char *fmt, ...) {
  char tmp[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) return w_fail(w, MW_JSON_INVALID, "cannot format a number");
  return w_put(w, tmp, (size_t)n);
}

/* Integers without printf (the most common values of a response). */
static bool w_u64(writer *w, uint64_t v, bool neg, bool quoted) {
  char tmp[24];
  char *e = tmp + sizeof tmp, *p = e;
  if (quoted) *--p = '"';
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  if (neg) *--p = '-';
  if (quoted) *--p = '"';
  return w_put(w, p, (size_t)(e - p));
}

static bool w_i64(writer *w, int64_t v, bool quoted) {
  return w_u64(w, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0, quoted);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned min;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (n < len) return 0;
  unsigned cp = c & (0xFF >> (len + 1));
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

/* A JSON string body (no quotes): the escapes JSON requires, UTF-8 checked
 * (a proto2 string field is not validated by the binary decoder, and JSON
 * must be valid UTF-8). */
static bool w_strbody(writer *w, const char *s, size_t n) {
  if (n == 0) return true; /* an unset string's data may be NULL */
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  const unsigned char *run = p;
  while (p < end) {
    unsigned c = *p;
    const char *esc = NULL;
    char ubuf[8];
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      p++;
      continue;
    }
    if (c >= 0x80) {
      size_t l = utf8_len(p, (size_t)(end - p));
      if (l == 0) return w_fail(w, MW_JSON_INVALID, "invalid UTF-8 in string");
      p += l;
      continue;
    }
    switch (c) {
      case '"':
        esc = "\\\"";
        break;
      case '\\':
        esc = "\\\\";
        break;
      case '\n':
        esc = "\\n";
        break;
      case '\r':
        esc = "\\r";
        break;
      case '\t':
        esc = "\\t";
        break;
      case '\b':
        esc = "\\b";
        break;
      case '\f':
        esc = "\\f";
        break;
      default:
        snprintf(ubuf, sizeof ubuf, "\\u%04x", c);
        esc = ubuf;
    }
    if (!w_put(w, (const char *)run, (size_t)(p - run)) || !w_str(w, esc)) return false;
    p++;
    run = p;
  }
  return w_put(w, (const char *)run, (size_t)(p - run));
}

static bool w_string(writer *w, const char *s, size_t n) {
  return w_ch(w, '"') && w_strbody(w, s, n) && w_ch(w, '"');
}

static bool w_bytes(writer *w, upb_StringView v) {
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t out = (v.size + 2) / 3 * 4;
  if (!w_ch(w, '"') || !w_reserve(w, out + 1)) return false;
  const unsigned char *p = (const unsigned char *)v.data;
  size_t i = 0;
  char *o = w->buf + w->len;
  for (; i + 3 <= v.size; i += 3) {
    *o++ = b64[p[i] >> 2];
    *o++ = b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
    *o++ = b64[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
    *o++ = b64[p[i + 2] & 63];
  }
  if (v.size - i == 1) {
    *o++ = b64[p[i] >> 2];
    *o++ = b64[(p[i] & 3) << 4];
    *o++ = '=';
    *o++ = '=';
  } else if (v.size - i == 2) {
    *o++ = b64[p[i] >> 2];
    *o++ = b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
    *o++ = b64[(p[i + 1] & 15) << 2];
    *o++ = '=';
  }
  w->len += out;
  return w_ch(w, '"');
}

/* Shortest text that reads back as the same value: the fewest %g digits
 * that round-trip (protobuf's own writers do the same). Locale-proof: a ','
 * written by a locale's printf becomes '.'. */
static bool w_float(writer *w, double v, bool is_float) {
  if (isnan(v)) return w_str(w, "\"NaN\"");
  if (isinf(v)) return w_str(w, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  /* -0 as "-0.0": readers that take "-0" for the integer 0 (Python's
   * json) would lose the sign. */
  if (v == 0 && signbit(v)) return w_str(w, "-0.0");
  char tmp[40];
  /* Subnormals have fewer significant digits than %g's usual start. */
  bool sub = is_float ? fabs(v) < 1.17549435e-38 : fabs(v) < 2.2250738585072014e-308;
  int lo = sub ? 1 : is_float ? 6 : 15, hi = is_float ? 9 : 17;
  for (int prec = lo; prec <= hi; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, v);
    for (char *c = tmp; *c; c++)
      if (*c == ',') *c = '.';
    if (is_float ? (strtof(tmp, NULL) == (float)v) : (strtod(tmp, NULL) == v)) break;
  }
  return w_str(w, tmp);
}

static bool w_scalar(writer *w, upb_MessageValue v, const upb_FieldDef *f);
static bool w_message(writer *w, const upb_Message *msg, const upb_MessageDef *m);
static bool w_fields(writer *w, const upb_Message *msg, const upb_MessageDef *m, bool first);

static bool w_enum(writer *w, int32_t v, const upb_FieldDef *f) {
  const upb_EnumDef *e = upb_FieldDef_EnumSubDef(f);
  if (strcmp(upb_EnumDef_FullName(e), "google.protobuf.NullValue") == 0) return w_str(w, "null");
  const upb_EnumValueDef *ev = upb_EnumDef_FindValueByNumber(e, v);
  if (ev) return w_ch(w, '"') && w_str(w, upb_EnumValueDef_Name(ev)) && w_ch(w, '"');
  return w_printf(w, "%" PRId32, v);
}

static bool w_nanos(writer *w, int32_t nanos) {
  if (nanos == 0) return true;
  if (nanos % 1000000 == 0) return w_printf(w, ".%03" PRId32, nanos / 1000000);
  if (nanos % 1000 == 0) return w_printf(w, ".%06" PRId32, nanos / 1000);
  return w_printf(w, ".%09" PRId32, nanos);
}

static void seconds_nanos(const upb_Message *msg, const upb_MessageDef *m, int64_t *s, int32_t *n) {
  *s = upb_Message_Get(msg, upb_MessageDef_FindFieldByNumber(m, 1)).int64_val;
  *n = upb_Message_Get(msg, upb_MessageDef_FindFieldByNumber(m, 2)).int32_val;
}

/* Days since 1970-01-01 -> civil date (H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *mo, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t yy = (int64_t)yoe + era * 400;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *mo = mp < 10 ? mp + 3 : mp - 9;
  *y = yy + (*mo <= 2);
}

static bool w_timestamp(writer *w, const upb_Message *msg, const upb_MessageDef *m) {
  int64_t s;
  int32_t n;
  seconds_nanos(msg, m, &s, &n);
  if (s < -62135596800LL || s > 253402300799LL)
    return w_fail(
        w, MW_JSON_INVALID,
        "Timestamp seconds %" PRId64 " outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z", s);
  if (n < 0 || n > 999999999)
    return w_fail(w, MW_JSON_INVALID, "Timestamp nanos %" PRId32 " outside 0..999999999", n);
  int64_t days = s >= 0 ? s / 86400 : -((-s + 86399) / 86400);
  int64_t rem = s - days * 86400;
  int64_t y;
  unsigned mo, d;
  civil_from_days(days, &y, &mo, &d);
  return w_printf(w, "\"%04" PRId64 "-%02u-%02uT%02d:%02d:%02d", y, mo, d, (int)(rem / 3600),
                  (int)(rem / 60 % 60), (int)(rem % 60)) &&
         w_nanos(w, n) && w_str(w, "Z\"");
}

static bool w_duration(writer *w, const upb_Message *msg, const upb_MessageDef *m) {
  int64_t s;
  int32_t n;
  seconds_nanos(msg, m, &s, &n);
  if (s < -315576000000LL || s > 315576000000LL)
    return w_fail(w, MW_JSON_INVALID, "Duration seconds %" PRId64 " outside +-315576000000", s);
  if (n < -999999999 || n > 999999999)
    return w_fail(w, MW_JSON_INVALID, "Duration nanos %" PRId32 " outside +-999999999", n);
  if ((s < 0 && n > 0) || (s > 0 && n < 0))
    return w_fail(w, MW_JSON_INVALID, "Duration seconds and nanos of different signs");
  bool neg = s < 0 || n < 0;
  /* "-0.5s": the sign is written apart, as seconds may be 0. */
  return w_printf(w, "\"%s%" PRIu64, neg ? "-" : "", (uint64_t)(s < 0 ? -s : s)) &&
         w_nanos(w, n < 0 ? -n : n) && w_str(w, "s\"");
}

static bool w_fieldmask(writer *w, const upb_Message *msg, const upb_MessageDef *m) {
  const upb_Array *paths = upb_Message_Get(msg, upb_MessageDef_FindFieldByNumber(m, 1)).array_val;
  size_t n = paths ? upb_Array_Size(paths) : 0;
  if (!w_ch(w, '"')) return false;
  for (size_t i = 0; i < n; i++) {
    upb_StringView p = upb_Array_Get(paths, i).str_val;
    if (i && !w_ch(w, ',')) return false;
    for (size_t j = 0; j < p.size; j++) {
      char c = p.data[j];
      if (c >= 'A' && c <= 'Z')
        return w_fail(w, MW_JSON_INVALID, "FieldMask path '%.*s' has an upper-case letter",
                      (int)p.size, p.data);
      if (c == '_') {
        if (j + 1 >= p.size || p.data[j + 1] < 'a' || p.data[j + 1] > 'z')
          return w_fail(w, MW_JSON_INVALID,
                        "FieldMask path '%.*s': '_' not followed by a lower-case letter",
                        (int)p.size, p.data);
        c = (char)(p.data[++j] - 32);
      }
      if (c == '"' || c == '\\' || (unsigned char)c < 0x20) {
        if (!w_strbody(w, &c, 1)) return false;
      } else if (!w_ch(w, c)) {
        return false;
      }
    }
  }
  return w_ch(w, '"');
}

static bool w_value(writer *w, const upb_Message *msg, const upb_MessageDef *m);

static bool w_depth_in(writer *w) {
  if (++w->depth > w->max_depth)
    return w_fail(w, MW_JSON_TOO_LARGE, "nested deeper than %d levels", w->max_depth);
  return true;
}

static bool w_struct(writer *w, const upb_Message *msg, const upb_MessageDef *m) {
  const upb_FieldDef *ff = upb_MessageDef_FindFieldByNumber(m, 1);
  const upb_Map *map = upb_Message_Get(msg, ff).map_val;
  const upb_MessageDef *vm = upb_FieldDef_MessageSubDef(
      upb_MessageDef_FindFieldByNumber(upb_FieldDef_MessageSubDef(ff), 2));
  if (!w_depth_in(w) || !w_ch(w, '{')) return false;
  size_t it = kUpb_Map_Begin;
  bool first = true;
  while (map && upb_MapIterator_Next(map, &it)) {
    upb_StringView k = upb_MapIterator_Key(map, it).str_val;
    if (!first && !w_ch(w, ',')) return false;
    first = false;
    path_push(&w->p, SEG_KEY, k.data, k.size, 0);
    if (!w_string(w, k.data, k.size) || !w_ch(w, ':') ||
        !w_value(w, upb_MapIterator_Value(map, it).msg_val, vm))
      return false;
    path_pop(&w->p);
  }
  w->depth--;
  return w_ch(w, '}');
}

static bool w_list(writer *w, const upb_Message *msg, const upb_MessageDef *m) {
  const upb_FieldDef *ff = upb_MessageDef_FindFieldByNumber(m, 1);
  const upb_Array *arr = upb_Message_Get(msg, ff).array_val;
  const upb_MessageDef *vm = upb_FieldDef_MessageSubDef(ff);
  size_t n = arr ? upb_Array_Size(arr) : 0;
  if (!w_depth_in(w) || !w_ch(w, '[')) return false;
  for (size_t i = 0; i < n; i++) {
    if (i && !w_ch(w, ',')) return false;
    path_push(&w->p, SEG_INDEX, NULL, 0, i);
    if (!w_value(w, upb_Array_Get(arr, i).msg_val, vm)) return false;
    path_pop(&w->p);
  }
  w->depth--;
  return w_ch(w, ']');
}

static bool w_value(writer *w, const upb_Message *msg, const upb_MessageDef *m) {
  const upb_OneofDef *o = upb_MessageDef_FindOneofByName(m, "kind");
  const upb_FieldDef *f = msg && o ? upb_Message_WhichOneof(msg, o) : NULL;
  if (!f) return w_str(w, "null"); /* no kind: null, as json_format */
  upb_MessageValue v = upb_Message_Get(msg, f);
  switch (upb_FieldDef_Number(f)) {
    case 1:
      return w_str(w, "null");
    case 2:
      if (!isfinite(v.double_val))
        return w_fail(w, MW_JSON_INVALID, "Value number %s has no JSON form",
                      isnan(v.double_val) ? "NaN"
                      : v.double_val > 0  ? "Infinity"
                                          : "-Infinity");
      return w_float(w, v.double_val, false);
    case 3:
      return w_string(w, v.str_val.data, v.str_val.size);
    case 4:
      return w_str(w, v.bool_val ? "true" : "false");
    case 5:
      return w_struct(w, v.msg_val, upb_FieldDef_MessageSubDef(f));
    case 6:
      return w_list(w, v.msg_val, upb_FieldDef_MessageSubDef(f));
  }
  return w_fail(w, MW_JSON_INVALID, "unknown Value kind");
}

static bool w_any(writer *w, const upb_Message *msg, const upb_MessageDef *m) {
  upb_StringView url = upb_Message_Get(msg, upb_MessageDef_FindFieldByNumber(m, 1)).str_val;
  upb_StringView value = upb_Message_Get(msg, upb_MessageDef_FindFieldByNumber(m, 2)).str_val;
  if (url.size == 0 && value.size == 0) return w_str(w, "{}");
  const char *slash = NULL;
  for (size_t i = 0; i < url.size; i++)
    if (url.data[i] == '/') slash = url.data + i;
  if (!slash)
    return w_fail(w, MW_JSON_INVALID, "Any type URL '%.*s' has no '/'", (int)url.size, url.data);
  const char *name = slash + 1;
  size_t nlen = (size_t)(url.data + url.size - name);
  const upb_MessageDef *am = upb_DefPool_FindMessageByNameWithSize(w->pool, name, nlen);
  if (!am)
    return w_fail(w, MW_JSON_INVALID, "Any type '%.*s' is not in the schema", (int)nlen, name);
  upb_Message *inner = upb_Message_New(am, w->a);
  if (!inner) return w_fail(w, MW_JSON_NOMEM, "out of memory");
  int left = w->max_depth - w->depth;
  upb_DecodeStatus ds =
      upb_Decode(value.data, value.size, inner, upb_MessageDef_MiniTable(am), NULL,
                 UPB_DECODE_MAXDEPTH(wire_depth(left > 0 ? left : 1)), w->a);
  if (ds == kUpb_DecodeStatus_OutOfMemory) return w_fail(w, MW_JSON_NOMEM, "out of memory");
  if (ds == kUpb_DecodeStatus_MaxDepthExceeded)
    return w_fail(w, MW_JSON_TOO_LARGE, "nested deeper than %d levels", w->max_depth);
  if (ds != kUpb_DecodeStatus_Ok)
    return w_fail(w, MW_JSON_INVALID, "cannot decode the %s in an Any: %s",
                  upb_MessageDef_FullName(am),
                  ds == kUpb_DecodeStatus_BadUtf8 ? "invalid UTF-8" : "malformed wire data");
  if (!w_str(w, "{\"@type\":") || !w_string(w, url.data, url.size)) return false;
  if (upb_MessageDef_WellKnownType(am) == kUpb_WellKnown_Unspecified) {
    if (!w_depth_in(w) || !w_fields(w, inner, am, false)) return false;
    w->depth--;
  } else {
    path_push(&w->p, SEG_NAME, "value", 5, 0);
    if (!w_str(w, ",\"value\":") || !w_message(w, inner, am)) return false;
    path_pop(&w->p);
  }
  return w_ch(w, '}');
}

/* A message value, in its JSON form (well-known types included). */
static bool w_message(writer *w, const upb_Message *msg, const upb_MessageDef *m) {
  switch (upb_MessageDef_WellKnownType(m)) {
    case kUpb_WellKnown_Any:
      return w_any(w, msg, m);
    case kUpb_WellKnown_FieldMask:
      return w_fieldmask(w, msg, m);
    case kUpb_WellKnown_Duration:
      return w_duration(w, msg, m);
    case kUpb_WellKnown_Timestamp:
      return w_timestamp(w, msg, m);
    case kUpb_WellKnown_DoubleValue:
    case kUpb_WellKnown_FloatValue:
    case kUpb_WellKnown_Int64Value:
    case kUpb_WellKnown_UInt64Value:
    case kUpb_WellKnown_Int32Value:
    case kUpb_WellKnown_UInt32Value:
    case kUpb_WellKnown_StringValue:
    case kUpb_WellKnown_BytesValue:
    case kUpb_WellKnown_BoolValue: {
      const upb_FieldDef *f = upb_MessageDef_FindFieldByNumber(m, 1);
      return w_scalar(w, upb_Message_Get(msg, f), f);
    }
    case kUpb_WellKnown_Value:
      return w_value(w, msg, m);
    case kUpb_WellKnown_ListValue:
      return w_list(w, msg, m);
    case kUpb_WellKnown_Struct:
      return w_struct(w, msg, m);
    default:
      break;
  }
  if (!w_depth_in(w) || !w_ch(w, '{') || !w_fields(w, msg, m, true)) return false;
  w->depth--;
  return w_ch(w, '}');
}

static bool w_scalar(writer *w, upb_MessageValue v, const upb_FieldDef *f) {
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool:
      return w_str(w, v.bool_val ? "true" : "false");
    case kUpb_CType_Float:
      return w_float(w, v.float_val, true);
    case kUpb_CType_Double:
      return w_float(w, v.double_val, false);
    case kUpb_CType_Int32:
      return w_i64(w, v.int32_val, false);
    case kUpb_CType_UInt32:
      return w_u64(w, v.uint32_val, false, false);
    case kUpb_CType_Int64:
      return w_i64(w, v.int64_val, true);
    case kUpb_CType_UInt64:
      return w_u64(w, v.uint64_val, false, true);
    case kUpb_CType_String:
      return w_string(w, v.str_val.data, v.str_val.size);
    case kUpb_CType_Bytes:
      return w_bytes(w, v.str_val);
    case kUpb_CType_Enum:
      return w_enum(w, v.int32_val, f);
    case kUpb_CType_Message:
      return w_message(w, v.msg_val, upb_FieldDef_MessageSubDef(f));
  }
  return w_fail(w, MW_JSON_INVALID, "unknown field type");
}

static bool w_mapkey(writer *w, upb_MessageValue k, const upb_FieldDef *f) {
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool:
      return w_str(w, k.bool_val ? "\"true\"" : "\"false\"");
    case kUpb_CType_Int32:
      return w_i64(w, k.int32_val, true);
    case kUpb_CType_UInt32:
      return w_u64(w, k.uint32_val, false, true);
    case kUpb_CType_Int64:
      return w_i64(w, k.int64_val, true);
    case kUpb_CType_UInt64:
      return w_u64(w, k.uint64_val, false, true);
    default:
      return w_string(w, k.str_val.data, k.str_val.size);
  }
}

/* Renders a map key for a path (kept in the arena: the path outlives this
 * frame only until the error is rendered, which happens before return). */
static void push_mapkey(writer *w, upb_MessageValue k, const upb_FieldDef *f, char *tmp,
                        size_t cap) {
  int n;
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool:
      n = snprintf(tmp, cap, "%s", k.bool_val ? "true" : "false");
      break;
    case kUpb_CType_Int32:
      n = snprintf(tmp, cap, "%" PRId32, k.int32_val);
      break;
    case kUpb_CType_UInt32:
      n = snprintf(tmp, cap, "%" PRIu32, k.uint32_val);
      break;
    case kUpb_CType_Int64:
      n = snprintf(tmp, cap, "%" PRId64, k.int64_val);
      break;
    case kUpb_CType_UInt64:
      n = snprintf(tmp, cap, "%" PRIu64, k.uint64_val);
      break;
    default:
      path_push(&w->p, SEG_KEY, k.str_val.data, k.str_val.size, 0);
      return;
  }
  path_push(&w->p, SEG_KEY, tmp, n > 0 ? (size_t)n : 0, 0);
}

/* Field f of value v (the caller has decided it is written). */
static bool w_field(writer *w, const upb_FieldDef *f, upb_MessageValue v, bool *first) {
  const char *name =
      (w->options & MW_JSON_PROTO_NAMES) ? upb_FieldDef_Name(f) : upb_FieldDef_JsonName(f);
  if (!*first && !w_ch(w, ',')) return false;
  *first = false;
  path_push(&w->p, SEG_NAME, upb_FieldDef_Name(f), strlen(upb_FieldDef_Name(f)), 0);
  if (!w_string(w, name, strlen(name)) || !w_ch(w, ':')) return false;
  if (upb_FieldDef_IsMap(f)) {
    const upb_MessageDef *em = upb_FieldDef_MessageSubDef(f);
    const upb_FieldDef *kf = upb_MessageDef_FindFieldByNumber(em, 1);
    const upb_FieldDef *vf = upb_MessageDef_FindFieldByNumber(em, 2);
    if (!w_depth_in(w) || !w_ch(w, '{')) return false;
    size_t it = kUpb_Map_Begin;
    bool mfirst = true;
    char tmp[32];
    while (v.map_val && upb_MapIterator_Next(v.map_val, &it)) {
      upb_MessageValue k = upb_MapIterator_Key(v.map_val, it);
      if (!mfirst && !w_ch(w, ',')) return false;
      mfirst = false;
      push_mapkey(w, k, kf, tmp, sizeof tmp);
      if (!w_mapkey(w, k, kf) || !w_ch(w, ':') ||
          !w_scalar(w, upb_MapIterator_Value(v.map_val, it), vf))
        return false;
      path_pop(&w->p);
    }
    w->depth--;
    if (!w_ch(w, '}')) return false;
  } else if (upb_FieldDef_IsRepeated(f)) {
    size_t n = v.array_val ? upb_Array_Size(v.array_val) : 0;
    if (!w_depth_in(w) || !w_ch(w, '[')) return false;
    for (size_t i = 0; i < n; i++) {
      if (i && !w_ch(w, ',')) return false;
      path_push(&w->p, SEG_INDEX, NULL, 0, i);
      if (!w_scalar(w, upb_Array_Get(v.array_val, i), f)) return false;
      path_pop(&w->p);
    }
    w->depth--;
    if (!w_ch(w, ']')) return false;
  } else if (upb_FieldDef_CType(f) == kUpb_CType_Message && !v.msg_val) {
    /* emit defaults never reaches here for a message (it has presence) */
    if (!w_str(w, "null")) return false;
  } else if (!w_scalar(w, v, f)) {
    return false;
  }
  path_pop(&w->p);
  return true;
}

/* Whether field f is written under MW_JSON_EMIT_DEFAULTS: everything but
 * absent messages, oneof members and proto3 optional fields (a synthetic
 * oneof); an absent proto2 optional scalar comes out with its default, as
 * json_format writes it. */
static bool emit_default(const upb_Message *msg, const upb_FieldDef *f) {
  if (upb_FieldDef_IsRepeated(f) || !upb_FieldDef_HasPresence(f) || upb_Message_Has(msg, f))
    return true;
  return upb_FieldDef_CType(f) != kUpb_CType_Message && !upb_FieldDef_ContainingOneof(f);
}

static bool w_fields(writer *w, const upb_Message *msg, const upb_MessageDef *m, bool first) {
  if (w->options & MW_JSON_EMIT_DEFAULTS) {
    int n = upb_MessageDef_FieldCount(m);
    for (int i = 0; i < n; i++) {
      const upb_FieldDef *f = upb_MessageDef_Field(m, i);
      if (emit_default(msg, f) && !w_field(w, f, upb_Message_Get(msg, f), &first)) return false;
    }
    return true;
  }
  /* Only what is set: upb skips absent fields, empty repeated fields and
   * maps and proto3 scalars whose bits are all zero (so -0.0 is written),
   * which is the JSON mapping's rule. Extensions are not written. */
  const upb_FieldDef *f;
  upb_MessageValue v;
  size_t it = kUpb_Message_Begin;
  while (upb_Message_Next(msg, m, NULL, &f, &v, &it))
    if (!w_field(w, f, v, &first)) return false;
  return true;
}

/* A writer in a for one encode call (NULL when out of memory, err set);
 * *out and *out_len cleared. */
static writer *writer_start(upb_Arena *a, const upb_DefPool *pool, int options,
                            const mw_json_limits *limits, const char **out, size_t *out_len,
                            char *err, size_t errlen) {
  writer *w = upb_Arena_Malloc(a, sizeof *w);
  *out = NULL;
  *out_len = 0;
  if (!w) {
    set_err(err, errlen, "out of memory");
    return NULL;
  }
  writer_clear(w);
  w->a = a;
  w->pool = pool;
  w->options = options;
  w->max_depth = depth_limit(limits);
  w->max_out = limits ? limits->max_out_bytes : 0;
  w->err = err;
  w->errlen = errlen;
  return w;
}

mw_json_status mw_json_encode_msg(const upb_Message *msg, const upb_MessageDef *m,
                                  const upb_DefPool *pool, int options,
                                  const mw_json_limits *limits, upb_Arena *a, const char **out,
                                  size_t *out_len, char *err, size_t errlen) {
  writer *w = writer_start(a, pool, options, limits, out, out_len, err, errlen);
  if (!w) return MW_JSON_NOMEM;
  if (!w_message(w, msg, m)) return w->status;
  if (!w_reserve(w, 0)) return w->status;
  if (w->max_out && w->len > w->max_out) {
    w_fail(w, MW_JSON_TOO_LARGE, "JSON output larger than %zu bytes", w->max_out);
    return w->status;
  }
  w->buf[w->len] = '\0';
  *out = w->buf;
  *out_len = w->len;
  return MW_JSON_OK;
}

mw_json_status mw_json_from_binary(const char *buf, size_t len, const upb_MessageDef *m,
                                   const upb_DefPool *pool, int options,
                                   const mw_json_limits *limits, upb_Arena *a, const char **out,
                                   size_t *out_len, char *err, size_t errlen) {
  *out = NULL;
  *out_len = 0;
  if (limits && limits->max_in_bytes && len > limits->max_in_bytes) {
    set_err(err, errlen, "%s message of %zu bytes is larger than %zu bytes",
            upb_MessageDef_FullName(m), len, limits->max_in_bytes);
    return MW_JSON_TOO_LARGE;
  }
  upb_Message *msg = upb_Message_New(m, a);
  if (!msg) {
    set_err(err, errlen, "out of memory");
    return MW_JSON_NOMEM;
  }
  upb_DecodeStatus ds = upb_Decode(buf, len, msg, upb_MessageDef_MiniTable(m), NULL,
                                   UPB_DECODE_MAXDEPTH(wire_depth(depth_limit(limits))), a);
  switch (ds) {
    case kUpb_DecodeStatus_Ok:
      break;
    case kUpb_DecodeStatus_OutOfMemory:
      set_err(err, errlen, "out of memory");
      return MW_JSON_NOMEM;
    case kUpb_DecodeStatus_MaxDepthExceeded:
      set_err(err, errlen, "cannot decode %s: nested deeper than %d levels",
              upb_MessageDef_FullName(m), wire_depth(depth_limit(limits)));
      return MW_JSON_TOO_LARGE;
    case kUpb_DecodeStatus_BadUtf8:
      set_err(err, errlen, "cannot decode %s: invalid UTF-8 in a string field",
              upb_MessageDef_FullName(m));
      return MW_JSON_INVALID;
    default:
      set_err(err, errlen, "cannot decode %s: malformed wire data", upb_MessageDef_FullName(m));
      return MW_JSON_INVALID;
  }
  return mw_json_encode_msg(msg, m, pool, options, limits, a, out, out_len, err, errlen);
}

/* ---- the reader ---------------------------------------------------------- */

/* A strict RFC 8259 reader that fills a upb message as it goes: the JSON
 * mapping's rules need the field's type at each value (a quoted integer, a
 * Timestamp string, an Any whose "@type" may come last), and reading it
 * here gives every error its path. Nothing is kept of the text: strings are
 * copied into the arena. */
typedef struct {
  const char *start, *p, *end;
  upb_Arena *a;
  const upb_DefPool *pool;
  int options;
  int depth, max_depth;
  path path;
  mw_json_status status;
  char *err;
  size_t errlen;
} reader;

static void reader_clear(reader *r) {
  memset(r, 0, offsetof(reader, path));
  r->path.n = 0;
  memset(&r->status, 0, sizeof *r - offsetof(reader, status));
}

typedef struct {
  const char *s;
  size_t len;
} str;

static bool r_fail(reader *r, mw_json_status st, const char *fmt, ...) {
  if (r->status != MW_JSON_OK) return false;
  r->status = st;
  if (r->err && r->errlen) {
    char where[512], msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    path_render(&r->path, where, sizeof where);
    if (where[0])
      snprintf(r->err, r->errlen, "field '%s': %s", where, msg);
    else
      snprintf(r->err, r->errlen, "%s", msg);
  }
  return false;
}

static bool r_syntax(reader *r, const char *what) {
  if (r->p >= r->end) return r_fail(r, MW_JSON_INVALID, "invalid JSON: %s, at the end", what);
  return r_fail(r, MW_JSON_INVALID, "invalid JSON: %s at byte %zu", what,
                (size_t)(r->p - r->start));
}

static void r_ws(reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

/* The next significant byte, or 0 at the end. */
static char r_peek(reader *r) {
  r_ws(r);
  return r->p < r->end ? *r->p : 0;
}

static bool r_expect(reader *r, char c) {
  if (r_peek(r) != c) {
    char what[32];
    snprintf(what, sizeof what, "expected '%c'", c);
    return r_syntax(r, what);
  }
  r->p++;
  return true;
}

static bool r_depth_in(reader *r) {
  if (++r->depth > r->max_depth)
    return r_fail(r, MW_JSON_TOO_LARGE, "nested deeper than %d levels", r->max_depth);
  return true;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool r_hex4(reader *r, unsigned *out) {
  if (r->end - r->p < 4) return r_syntax(r, "bad \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(r->p[i]);
    if (h < 0) return r_syntax(r, "bad \\u escape");
    v = v * 16 + (unsigned)h;
  }
  r->p += 4;
  *out = v;
  return true;
}

/* A JSON string (r->p at the opening quote) -> s, in the arena unless it
 * has no escapes (then it points into the text, which outlives the call). */
static bool r_string(reader *r, str *s) {
  if (r_peek(r) != '"') return r_syntax(r, "expected a string");
  const char *b = ++r->p;
  bool plain = true;
  while (r->p < r->end && *r->p != '"') {
    unsigned char c = (unsigned char)*r->p;
    if (c < 0x20) return r_syntax(r, "control character in string");
    if (c == '\\') {
      plain = false;
      r->p += 2;
    } else if (c >= 0x80) {
      size_t l = utf8_len((const unsigned char *)r->p, (size_t)(r->end - r->p));
      if (!l) return r_syntax(r, "invalid UTF-8 in string");
      r->p += l;
    } else {
      r->p++;
    }
  }
  if (r->p >= r->end) return r_syntax(r, "unterminated string");
  const char *e = r->p;
  if (plain) {
    s->s = b;
    s->len = (size_t)(e - b);
    r->p++;
    return true;
  }
  char *o = upb_Arena_Malloc(r->a, (size_t)(e - b) + 1);
  if (!o) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  size_t n = 0;
  r->p = b;
  while (r->p < e) {
    char c = *r->p;
    if (c != '\\') {
      o[n++] = c;
      r->p++;
      continue;
    }
    r->p++;
    c = r->p < e ? *r->p : 0;
    r->p++;
    switch (c) {
      case '"':
        o[n++] = '"';
        break;
      case '\\':
        o[n++] = '\\';
        break;
      case '/':
        o[n++] = '/';
        break;
      case 'b':
        o[n++] = '\b';
        break;
      case 'f':
        o[n++] = '\f';
        break;
      case 'n':
        o[n++] = '\n';
        break;
      case 'r':
        o[n++] = '\r';
        break;
      case 't':
        o[n++] = '\t';
        break;
      case 'u': {
        unsigned cp;
        if (!r_hex4(r, &cp)) return false;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return r_syntax(r, "lone surrogate in string");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          unsigned lo;
          if (e - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u')
            return r_syntax(r, "lone surrogate in string");
          r->p += 2;
          if (!r_hex4(r, &lo)) return false;
          if (lo < 0xDC00 || lo > 0xDFFF) return r_syntax(r, "lone surrogate in string");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        /* 6 escaped bytes give at most 3 (12 give 4): o has room. */
        if (cp < 0x80) {
          o[n++] = (char)cp;
        } else if (cp < 0x800) {
          o[n++] = (char)(0xC0 | (cp >> 6));
          o[n++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
          o[n++] = (char)(0xE0 | (cp >> 12));
          o[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
          o[n++] = (char)(0x80 | (cp & 0x3F));
        } else {
          o[n++] = (char)(0xF0 | (cp >> 18));
          o[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
          o[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
          o[n++] = (char)(0x80 | (cp & 0x3F));
        }
        break;
      }
      default:
        r->p -= 1;
        return r_syntax(r, "bad escape in string");
    }
  }
  r->p = e + 1;
  o[n] = '\0';
  s->s = o;
  s->len = n;
  return true;
}

/* A JSON number token (RFC 8259 grammar) at r->p -> its text; *integral
 * when it has no fraction and no exponent. */
static bool r_number_token(reader *r, str *tok, bool *integral) {
  r_ws(r);
  const char *b = r->p, *q = r->p;
  *integral = true;
  if (q < r->end && *q == '-') q++;
  if (q >= r->end || *q < '0' || *q > '9') return r_syntax(r, "expected a value");
  if (*q == '0') {
    q++;
  } else {
    while (q < r->end && *q >= '0' && *q <= '9') q++;
  }
  if (q < r->end && *q == '.') {
    *integral = false;
    q++;
    if (q >= r->end || *q < '0' || *q > '9') return r_syntax(r, "bad number");
    while (q < r->end && *q >= '0' && *q <= '9') q++;
  }
  if (q < r->end && (*q == 'e' || *q == 'E')) {
    *integral = false;
    q++;
    if (q < r->end && (*q == '+' || *q == '-')) q++;
    if (q >= r->end || *q < '0' || *q > '9') return r_syntax(r, "bad number");
    while (q < r->end && *q >= '0' && *q <= '9') q++;
  }
  if (q - b > 400) return r_syntax(r, "number too long");
  tok->s = b;
  tok->len = (size_t)(q - b);
  r->p = q;
  return true;
}

static bool r_literal(reader *r, const char *lit) {
  size_t n = strlen(lit);
  r_ws(r);
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0)
    return r_syntax(r, "expected a value");
  r->p += n;
  return true;
}

/* Skips one JSON value of any shape (an unknown field's), checking it. */
static bool r_skip(reader *r) {
  char c = r_peek(r);
  str s;
  bool integral;
  switch (c) {
    case '"':
      return r_string(r, &s);
    case '{': {
      if (!r_depth_in(r)) return false;
      r->p++;
      if (r_peek(r) == '}') {
        r->p++;
        r->depth--;
        return true;
      }
      for (;;) {
        if (!r_string(r, &s) || !r_expect(r, ':') || !r_skip(r)) return false;
        c = r_peek(r);
        r->p++;
        if (c == '}') break;
        if (c != ',') {
          r->p--;
          return r_syntax(r, "expected ',' or '}'");
        }
      }
      r->depth--;
      return true;
    }
    case '[': {
      if (!r_depth_in(r)) return false;
      r->p++;
      if (r_peek(r) == ']') {
        r->p++;
        r->depth--;
        return true;
      }
      for (;;) {
        if (!r_skip(r)) return false;
        c = r_peek(r);
        r->p++;
        if (c == ']') break;
        if (c != ',') {
          r->p--;
          return r_syntax(r, "expected ',' or ']'");
        }
      }
      r->depth--;
      return true;
    }
    case 't':
      return r_literal(r, "true");
    case 'f':
      return r_literal(r, "false");
    case 'n':
      return r_literal(r, "null");
    default:
      return r_number_token(r, &s, &integral);
  }
}

/* Iterates the members of an object: call with *first true; returns 1 with
 * the key read and r->p at its value, 0 at the closing brace, -1 on error. */
static int r_member(reader *r, bool *first, str *key) {
  char c = r_peek(r);
  if (*first) {
    *first = false;
    if (c == '}') {
      r->p++;
      return 0;
    }
  } else {
    if (c == '}') {
      r->p++;
      return 0;
    }
    if (c != ',') {
      r_syntax(r, "expected ',' or '}'");
      return -1;
    }
    r->p++;
  }
  if (!r_string(r, key) || !r_expect(r, ':')) return -1;
  return 1;
}

/* Array elements likewise: 1 at an element, 0 at the closing bracket. */
static int r_element(reader *r, bool *first) {
  char c = r_peek(r);
  if (c == ']') {
    r->p++;
    return 0;
  }
  if (*first) {
    *first = false;
    return 1;
  }
  if (c != ',') {
    r_syntax(r, "expected ',' or ']'");
    return -1;
  }
  r->p++;
  return 1;
}

static bool r_is_null(reader *r) {
  r_ws(r);
  return r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0;
}

/* ---- scalars ---- */

static bool str_is(str s, const char *lit) {
  return s.len == strlen(lit) && memcmp(s.s, lit, s.len) == 0;
}

/* Decimal integer text "-?[0-9]+" -> value, with range [lo, hi] for signed
 * or [0, uhi] for unsigned. */
static bool parse_int_text(const char *s, size_t n, bool is_signed, int64_t *sv, uint64_t *uv) {
  size_t i = 0;
  bool neg = false;
  if (i < n && s[i] == '-') {
    neg = true;
    i++;
  }
  if (i == n) return false;
  uint64_t v = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (is_signed) {
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX) return false;
    *sv = neg ? (int64_t)(0 - v) : (int64_t)v;
  } else {
    if (neg && v != 0) return false;
    *uv = v;
  }
  return true;
}

static double parse_double_text(reader *r, const char *s, size_t n, bool *ok) {
  char tmp[410];
  *ok = false;
  if (n >= sizeof tmp) return 0;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  char *endp;
  double d = strtod(tmp, &endp);
  (void)r;
  *ok = endp == tmp + n && n > 0;
  return d;
}

/* An integer field's value: a JSON number (integral, possibly written with
 * a fraction or exponent: 1e3, 5.0) or a string of a decimal integer. */
static bool r_integer(reader *r, upb_CType t, upb_MessageValue *out) {
  bool is_signed = t == kUpb_CType_Int32 || t == kUpb_CType_Int64;
  int64_t sv = 0;
  uint64_t uv = 0;
  str tok;
  bool integral = true, quoted = r_peek(r) == '"';
  if (quoted ? !r_string(r, &tok) : !r_number_token(r, &tok, &integral)) {
    if (!quoted && r->status == MW_JSON_INVALID) {
      r->status = MW_JSON_OK;
      return r_fail(r, MW_JSON_INVALID, "expected an integer (a number or a string)");
    }
    return false;
  }
  bool ok;
  if (integral) {
    ok = parse_int_text(tok.s, tok.len, is_signed, &sv, &uv);
    if (!ok) {
      /* not a decimal integer, or out of 64 bits */
      bool isnum;
      parse_double_text(r, tok.s, tok.len, &isnum);
      bool digits = tok.len > 0;
      for (size_t i = tok.s[0] == '-' ? 1 : 0; i < tok.len; i++)
        if (tok.s[i] < '0' || tok.s[i] > '9') digits = false;
      if (digits)
        return r_fail(r, MW_JSON_INVALID, "integer %.*s out of range", (int)tok.len, tok.s);
      return r_fail(r, MW_JSON_INVALID, "'%.*s' is not an integer",
                    (int)(tok.len > 64 ? 64 : tok.len), tok.s);
    }
  } else {
    double d = parse_double_text(r, tok.s, tok.len, &ok);
    if (!ok || d != floor(d) || !isfinite(d))
      return r_fail(r, MW_JSON_INVALID, "%.*s is not an integer",
                    (int)(tok.len > 64 ? 64 : tok.len), tok.s);
    if (is_signed) {
      if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
        return r_fail(r, MW_JSON_INVALID, "integer %.*s out of range", (int)tok.len, tok.s);
      sv = (int64_t)d;
    } else {
      if (d < 0 || d >= 18446744073709551616.0)
        return r_fail(r, MW_JSON_INVALID, "integer %.*s out of range", (int)tok.len, tok.s);
      uv = (uint64_t)d;
    }
  }
  switch (t) {
    case kUpb_CType_Int32:
      if (sv < INT32_MIN || sv > INT32_MAX)
        return r_fail(r, MW_JSON_INVALID, "integer %.*s out of range", (int)tok.len, tok.s);
      out->int32_val = (int32_t)sv;
      break;
    case kUpb_CType_Int64:
      out->int64_val = sv;
      break;
    case kUpb_CType_UInt32:
      if (uv > UINT32_MAX)
        return r_fail(r, MW_JSON_INVALID, "integer %.*s out of range", (int)tok.len, tok.s);
      out->uint32_val = (uint32_t)uv;
      break;
    default:
      out->uint64_val = uv;
      break;
  }
  return true;
}

static bool r_float(reader *r, bool is_float, upb_MessageValue *out) {
  str tok;
  bool integral, ok;
  double d;
  if (r_peek(r) == '"') {
    if (!r_string(r, &tok)) return false;
    if (str_is(tok, "NaN")) {
      d = NAN;
    } else if (str_is(tok, "Infinity")) {
      d = INFINITY;
    } else if (str_is(tok, "-Infinity")) {
      d = -INFINITY;
    } else {
      /* A number in a string: the JSON grammar, nothing else. */
      reader sub = *r;
      sub.start = sub.p = tok.s;
      sub.end = tok.s + tok.len;
      sub.err = NULL;
      sub.errlen = 0;
      str t2;
      if (!r_number_token(&sub, &t2, &integral) || sub.p != sub.end || t2.s != tok.s)
        return r_fail(r, MW_JSON_INVALID, "'%.*s' is not a number",
                      (int)(tok.len > 64 ? 64 : tok.len), tok.s);
      d = parse_double_text(r, tok.s, tok.len, &ok);
      if (!isfinite(d))
        return r_fail(r, MW_JSON_INVALID, "number %.*s out of range", (int)tok.len, tok.s);
    }
  } else {
    if (!r_number_token(r, &tok, &integral)) {
      if (r->status == MW_JSON_INVALID) {
        r->status = MW_JSON_OK;
        return r_fail(r, MW_JSON_INVALID, "expected a number");
      }
      return false;
    }
    d = parse_double_text(r, tok.s, tok.len, &ok);
    if (!isfinite(d))
      return r_fail(r, MW_JSON_INVALID, "number %.*s out of range",
                    (int)(tok.len > 64 ? 64 : tok.len), tok.s);
  }
  if (is_float) {
    /* Beyond FLT_MAX but rounding to it (3.4028235e38, FLT_MAX's shortest
     * text) is FLT_MAX; what rounds to infinity is out of range. */
    float f = (float)d;
    if (isfinite(d) && !isfinite(f))
      return r_fail(r, MW_JSON_INVALID, "number %.*s out of the float range",
                    (int)(tok.len > 64 ? 64 : tok.len), tok.s);
    out->float_val = f;
  } else {
    out->double_val = d;
  }
  return true;
}

static int b64val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

/* Standard or URL-safe base64, padding optional. */
static bool r_bytes(reader *r, upb_MessageValue *out) {
  str s;
  if (r_peek(r) != '"') return r_fail(r, MW_JSON_INVALID, "expected a base64 string");
  if (!r_string(r, &s)) return false;
  size_t n = s.len;
  while (n > 0 && s.s[n - 1] == '=' && s.len - n < 2) n--;
  if (n % 4 == 1 || (n != s.len && (s.len % 4) != 0))
    return r_fail(r, MW_JSON_INVALID, "invalid base64");
  char *o = upb_Arena_Malloc(r->a, n / 4 * 3 + 3);
  if (!o) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  size_t k = 0;
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64val(s.s[i]);
    if (v < 0) return r_fail(r, MW_JSON_INVALID, "invalid base64");
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      o[k++] = (char)((acc >> bits) & 0xFF);
    }
  }
  out->str_val.data = o;
  out->str_val.size = k;
  return true;
}

/* Result of reading an enum: set, or skipped (unknown name, ignored). */
static bool r_enum(reader *r, const upb_FieldDef *f, upb_MessageValue *out, bool *skip) {
  const upb_EnumDef *e = upb_FieldDef_EnumSubDef(f);
  *skip = false;
  char c = r_peek(r);
  if (c == '"') {
    str s;
    if (!r_string(r, &s)) return false;
    const upb_EnumValueDef *ev = upb_EnumDef_FindValueByNameWithSize(e, s.s, s.len);
    int64_t num;
    if (!ev && parse_int_text(s.s, s.len, true, &num, NULL) && num >= INT32_MIN &&
        num <= INT32_MAX &&
        (upb_FileDef_Syntax(upb_EnumDef_File(e)) == kUpb_Syntax_Proto3 ||
         upb_EnumDef_FindValueByNumber(e, (int32_t)num))) {
      /* a number in a string, as json_format takes it */
      out->int32_val = (int32_t)num;
      return true;
    }
    if (!ev) {
      if (r->options & MW_JSON_IGNORE_UNKNOWN) {
        *skip = true;
        return true;
      }
      return r_fail(r, MW_JSON_INVALID, "unknown value \"%.*s\" of enum %s",
                    (int)(s.len > 64 ? 64 : s.len), s.s, upb_EnumDef_FullName(e));
    }
    out->int32_val = upb_EnumValueDef_Number(ev);
    return true;
  }
  if (c == 'n' && strcmp(upb_EnumDef_FullName(e), "google.protobuf.NullValue") == 0) {
    out->int32_val = 0;
    return r_literal(r, "null");
  }
  str tok;
  bool integral;
  if (!r_number_token(r, &tok, &integral)) {
    r->status = MW_JSON_OK;
    return r_fail(r, MW_JSON_INVALID, "expected an enum name or number");
  }
  int64_t v;
  if (!integral || !parse_int_text(tok.s, tok.len, true, &v, NULL) || v < INT32_MIN ||
      v > INT32_MAX)
    return r_fail(r, MW_JSON_INVALID, "%.*s is not an enum number",
                  (int)(tok.len > 64 ? 64 : tok.len), tok.s);
  if (upb_FileDef_Syntax(upb_EnumDef_File(e)) != kUpb_Syntax_Proto3 &&
      !upb_EnumDef_FindValueByNumber(e, (int32_t)v)) {
    if (r->options & MW_JSON_IGNORE_UNKNOWN) {
      *skip = true;
      return true;
    }
    return r_fail(r, MW_JSON_INVALID, "%" PRId64 " is not a value of enum %s", v,
                  upb_EnumDef_FullName(e));
  }
  out->int32_val = (int32_t)v;
  return true;
}

static bool r_message(reader *r, upb_Message *msg, const upb_MessageDef *m);
static bool r_field(reader *r, upb_Message *msg, const upb_MessageDef *m, str k, bool *seen);

/* The value of one (non-repeated) field or element: scalar or message. For
 * messages *out->msg_val is filled into msgval (allocated here). */
static bool r_single(reader *r, const upb_FieldDef *f, upb_MessageValue *out, bool *skip) {
  *skip = false;
  switch (upb_FieldDef_CType(f)) {
    case kUpb_CType_Bool: {
      char c = r_peek(r);
      if (c == 't') {
        out->bool_val = true;
        return r_literal(r, "true");
      }
      if (c == 'f') {
        out->bool_val = false;
        return r_literal(r, "false");
      }
      return r_fail(r, MW_JSON_INVALID, "expected true or false");
    }
    case kUpb_CType_Float:
      return r_float(r, true, out);
    case kUpb_CType_Double:
      return r_float(r, false, out);
    case kUpb_CType_Int32:
    case kUpb_CType_Int64:
    case kUpb_CType_UInt32:
    case kUpb_CType_UInt64:
      return r_integer(r, upb_FieldDef_CType(f), out);
    case kUpb_CType_String: {
      str s;
      if (r_peek(r) != '"') return r_fail(r, MW_JSON_INVALID, "expected a string");
      if (!r_string(r, &s)) return false;
      out->str_val.data = s.s;
      out->str_val.size = s.len;
      return true;
    }
    case kUpb_CType_Bytes:
      return r_bytes(r, out);
    case kUpb_CType_Enum:
      return r_enum(r, f, out, skip);
    case kUpb_CType_Message: {
      const upb_MessageDef *sm = upb_FieldDef_MessageSubDef(f);
      upb_Message *sub = upb_Message_New(sm, r->a);
      if (!sub) return r_fail(r, MW_JSON_NOMEM, "out of memory");
      out->msg_val = sub;
      return r_message(r, sub, sm);
    }
  }
  return r_fail(r, MW_JSON_INVALID, "unsupported field type");
}

static bool is_value_type(const upb_FieldDef *f) {
  return upb_FieldDef_CType(f) == kUpb_CType_Message &&
         upb_MessageDef_WellKnownType(upb_FieldDef_MessageSubDef(f)) == kUpb_WellKnown_Value;
}

static bool r_mapkey(reader *r, str k, const upb_FieldDef *kf, upb_MessageValue *out) {
  upb_CType t = upb_FieldDef_CType(kf);
  int64_t sv = 0;
  uint64_t uv = 0;
  switch (t) {
    case kUpb_CType_Bool:
      if (str_is(k, "true"))
        out->bool_val = true;
      else if (str_is(k, "false"))
        out->bool_val = false;
      else
        return r_fail(r, MW_JSON_INVALID, "map key must be \"true\" or \"false\"");
      return true;
    case kUpb_CType_String:
      out->str_val.data = k.s;
      out->str_val.size = k.len;
      return true;
    default:
      break;
  }
  bool is_signed = t == kUpb_CType_Int32 || t == kUpb_CType_Int64;
  if (!parse_int_text(k.s, k.len, is_signed, &sv, &uv) ||
      (t == kUpb_CType_Int32 && (sv < INT32_MIN || sv > INT32_MAX)) ||
      (t == kUpb_CType_UInt32 && uv > UINT32_MAX))
    return r_fail(
        r, MW_JSON_INVALID, "map key is not a valid %s",
        t == kUpb_CType_Int32 || t == kUpb_CType_UInt32 ? "32-bit integer" : "64-bit integer");
  switch (t) {
    case kUpb_CType_Int32:
      out->int32_val = (int32_t)sv;
      break;
    case kUpb_CType_Int64:
      out->int64_val = sv;
      break;
    case kUpb_CType_UInt32:
      out->uint32_val = (uint32_t)uv;
      break;
    default:
      out->uint64_val = uv;
      break;
  }
  return true;
}

static bool r_map(reader *r, upb_Message *msg, const upb_FieldDef *f) {
  if (r_peek(r) != '{') return r_fail(r, MW_JSON_INVALID, "expected an object (a map)");
  if (!r_depth_in(r)) return false;
  r->p++;
  const upb_MessageDef *em = upb_FieldDef_MessageSubDef(f);
  const upb_FieldDef *kf = upb_MessageDef_FindFieldByNumber(em, 1);
  const upb_FieldDef *vf = upb_MessageDef_FindFieldByNumber(em, 2);
  upb_Map *map = upb_Message_Mutable(msg, f, r->a).map;
  if (!map) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  bool first = true;
  str k;
  int rc;
  while ((rc = r_member(r, &first, &k)) == 1) {
    path_push(&r->path, SEG_KEY, k.s, k.len, 0);
    upb_MessageValue key, val;
    bool skip = false;
    if (!r_mapkey(r, k, kf, &key)) return false;
    if (upb_Map_Get(map, key, NULL)) return r_fail(r, MW_JSON_INVALID, "map key given twice");
    if (r_is_null(r) && !is_value_type(vf))
      return r_fail(r, MW_JSON_INVALID, "null is not a map value");
    if (r_is_null(r)) {
      upb_Message *nv = upb_Message_New(upb_FieldDef_MessageSubDef(vf), r->a);
      if (!nv || !r_literal(r, "null")) return r_fail(r, MW_JSON_NOMEM, "out of memory");
      upb_MessageValue z = {0};
      upb_Message_Set(nv, upb_MessageDef_FindFieldByNumber(upb_FieldDef_MessageSubDef(vf), 1), z,
                      r->a);
      val.msg_val = nv;
    } else if (!r_single(r, vf, &val, &skip)) {
      return false;
    }
    if (!skip && !upb_Map_Set(map, key, val, r->a))
      return r_fail(r, MW_JSON_NOMEM, "out of memory");
    path_pop(&r->path);
  }
  if (rc < 0) return false;
  r->depth--;
  return true;
}

static bool r_array(reader *r, upb_Message *msg, const upb_FieldDef *f) {
  if (r_peek(r) != '[') return r_fail(r, MW_JSON_INVALID, "expected an array");
  if (!r_depth_in(r)) return false;
  r->p++;
  upb_Array *arr = upb_Message_Mutable(msg, f, r->a).array;
  if (!arr) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  bool first = true;
  int rc;
  size_t i = 0;
  while ((rc = r_element(r, &first)) == 1) {
    path_push(&r->path, SEG_INDEX, NULL, 0, i++);
    upb_MessageValue v;
    bool skip;
    if (r_is_null(r) && !is_value_type(f))
      return r_fail(r, MW_JSON_INVALID, "null is not an element of a repeated field");
    if (!r_single(r, f, &v, &skip)) return false;
    if (!skip && !upb_Array_Append(arr, v, r->a)) return r_fail(r, MW_JSON_NOMEM, "out of memory");
    path_pop(&r->path);
  }
  if (rc < 0) return false;
  r->depth--;
  return true;
}

/* ---- well-known types ---- */

static bool digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

/* ".123" (1 to 9 digits) -> nanos; *n advanced past it. */
static bool fraction(const char *s, size_t len, size_t *i, int32_t *nanos) {
  *nanos = 0;
  if (*i >= len || s[*i] != '.') return true;
  (*i)++;
  int nd = 0;
  int32_t v = 0;
  while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
    if (++nd > 9) return false;
    v = v * 10 + (s[*i] - '0');
    (*i)++;
  }
  if (nd == 0) return false;
  for (int k = nd; k < 9; k++) v *= 10;
  *nanos = v;
  return true;
}

static void set_seconds_nanos(upb_Message *msg, const upb_MessageDef *m, int64_t s, int32_t n,
                              upb_Arena *a) {
  upb_MessageValue v;
  v.int64_val = s;
  upb_Message_Set(msg, upb_MessageDef_FindFieldByNumber(m, 1), v, a);
  v.int32_val = n;
  upb_Message_Set(msg, upb_MessageDef_FindFieldByNumber(m, 2), v, a);
}

static bool r_timestamp(reader *r, upb_Message *msg, const upb_MessageDef *m) {
  str s;
  if (r_peek(r) != '"') return r_fail(r, MW_JSON_INVALID, "expected a Timestamp string");
  if (!r_string(r, &s)) return false;
  int Y, M, D, h, mi, sec, oh = 0, om = 0;
  const char *t = s.s;
  size_t i = 19;
  int32_t nanos;
  if (s.len < 20 || !digits(t, 4, &Y) || t[4] != '-' || !digits(t + 5, 2, &M) || t[7] != '-' ||
      !digits(t + 8, 2, &D) || t[10] != 'T' || !digits(t + 11, 2, &h) || t[13] != ':' ||
      !digits(t + 14, 2, &mi) || t[16] != ':' || !digits(t + 17, 2, &sec) ||
      !fraction(t, s.len, &i, &nanos))
    goto bad;
  if (i < s.len && t[i] == 'Z') {
    i++;
  } else if (i < s.len && (t[i] == '+' || t[i] == '-')) {
    int sign = t[i] == '-' ? -1 : 1;
    if (s.len - i != 6 || !digits(t + i + 1, 2, &oh) || t[i + 3] != ':' ||
        !digits(t + i + 4, 2, &om) || oh > 23 || om > 59)
      goto bad;
    oh *= sign;
    om *= sign;
    i += 6;
  } else {
    goto bad;
  }
  if (i != s.len) goto bad;
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (Y < 1 || M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || h > 23 || mi > 59 || sec > 59)
    goto bad;
  if (M == 2 && D == 29 && !((Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0)) goto bad;
  int64_t secs = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + mi * 60 + sec -
                 (int64_t)oh * 3600 - (int64_t)om * 60;
  if (secs < -62135596800LL || secs > 253402300799LL)
    return r_fail(r, MW_JSON_INVALID, "Timestamp \"%.*s\" outside 0001-01-01..9999-12-31",
                  (int)(s.len > 64 ? 64 : s.len), s.s);
  set_seconds_nanos(msg, m, secs, nanos, r->a);
  return true;
bad:
  return r_fail(r, MW_JSON_INVALID,
                "invalid Timestamp \"%.*s\" (RFC 3339: 1972-01-01T10:00:20.021Z)",
                (int)(s.len > 64 ? 64 : s.len), s.s);
}

static bool r_duration(reader *r, upb_Message *msg, const upb_MessageDef *m) {
  str s;
  if (r_peek(r) != '"') return r_fail(r, MW_JSON_INVALID, "expected a Duration string");
  if (!r_string(r, &s)) return false;
  size_t i = 0;
  bool neg = false;
  if (i < s.len && s.s[i] == '-') {
    neg = true;
    i++;
  }
  size_t d0 = i;
  uint64_t secs = 0;
  while (i < s.len && s.s[i] >= '0' && s.s[i] <= '9') {
    if (secs > 1000000000000ULL) goto bad;
    secs = secs * 10 + (uint64_t)(s.s[i] - '0');
    i++;
  }
  int32_t nanos;
  if (i == d0 || !fraction(s.s, s.len, &i, &nanos) || i + 1 != s.len || s.s[i] != 's') goto bad;
  if (secs > 315576000000ULL)
    return r_fail(r, MW_JSON_INVALID, "Duration \"%.*s\" outside +-315576000000s",
                  (int)(s.len > 64 ? 64 : s.len), s.s);
  set_seconds_nanos(msg, m, neg ? -(int64_t)secs : (int64_t)secs, neg ? -nanos : nanos, r->a);
  return true;
bad:
  return r_fail(r, MW_JSON_INVALID, "invalid Duration \"%.*s\" (like \"1.5s\")",
                (int)(s.len > 64 ? 64 : s.len), s.s);
}

static bool r_fieldmask(reader *r, upb_Message *msg, const upb_MessageDef *m) {
  str s;
  if (r_peek(r) != '"') return r_fail(r, MW_JSON_INVALID, "expected a FieldMask string");
  if (!r_string(r, &s)) return false;
  const upb_FieldDef *pf = upb_MessageDef_FindFieldByNumber(m, 1);
  upb_Array *arr = upb_Message_Mutable(msg, pf, r->a).array;
  if (!arr) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  size_t i = 0;
  while (i < s.len) {
    size_t j = i;
    while (j < s.len && s.s[j] != ',') j++;
    /* camelCase -> snake_case: each upper-case letter becomes '_' + lower */
    char *o = upb_Arena_Malloc(r->a, 2 * (j - i) + 1);
    if (!o) return r_fail(r, MW_JSON_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t k = i; k < j; k++) {
      char c = s.s[k];
      if (c == '_')
        return r_fail(r, MW_JSON_INVALID,
                      "FieldMask path \"%.*s\" has a '_' (paths are lowerCamelCase)", (int)(j - i),
                      s.s + i);
      if (c >= 'A' && c <= 'Z') {
        o[n++] = '_';
        o[n++] = (char)(c + 32);
      } else {
        o[n++] = c;
      }
    }
    upb_MessageValue v;
    v.str_val.data = o;
    v.str_val.size = n;
    if (!upb_Array_Append(arr, v, r->a)) return r_fail(r, MW_JSON_NOMEM, "out of memory");
    i = j + 1;
  }
  return true;
}

static bool r_value(reader *r, upb_Message *msg, const upb_MessageDef *m);

static bool r_struct(reader *r, upb_Message *msg, const upb_MessageDef *m) {
  if (r_peek(r) != '{') return r_fail(r, MW_JSON_INVALID, "expected an object (a Struct)");
  if (!r_depth_in(r)) return false;
  r->p++;
  const upb_FieldDef *ff = upb_MessageDef_FindFieldByNumber(m, 1);
  const upb_MessageDef *vm = upb_FieldDef_MessageSubDef(
      upb_MessageDef_FindFieldByNumber(upb_FieldDef_MessageSubDef(ff), 2));
  upb_Map *map = upb_Message_Mutable(msg, ff, r->a).map;
  if (!map) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  bool first = true;
  str k;
  int rc;
  while ((rc = r_member(r, &first, &k)) == 1) {
    path_push(&r->path, SEG_KEY, k.s, k.len, 0);
    upb_MessageValue key, val;
    key.str_val.data = k.s;
    key.str_val.size = k.len;
    if (upb_Map_Get(map, key, NULL)) return r_fail(r, MW_JSON_INVALID, "key given twice");
    val.msg_val = upb_Message_New(vm, r->a);
    if (!val.msg_val) return r_fail(r, MW_JSON_NOMEM, "out of memory");
    if (!r_value(r, (upb_Message *)val.msg_val, vm)) return false;
    if (!upb_Map_Set(map, key, val, r->a)) return r_fail(r, MW_JSON_NOMEM, "out of memory");
    path_pop(&r->path);
  }
  if (rc < 0) return false;
  r->depth--;
  return true;
}

static bool r_list(reader *r, upb_Message *msg, const upb_MessageDef *m) {
  if (r_peek(r) != '[') return r_fail(r, MW_JSON_INVALID, "expected an array (a ListValue)");
  if (!r_depth_in(r)) return false;
  r->p++;
  const upb_FieldDef *ff = upb_MessageDef_FindFieldByNumber(m, 1);
  const upb_MessageDef *vm = upb_FieldDef_MessageSubDef(ff);
  upb_Array *arr = upb_Message_Mutable(msg, ff, r->a).array;
  if (!arr) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  bool first = true;
  int rc;
  size_t i = 0;
  while ((rc = r_element(r, &first)) == 1) {
    path_push(&r->path, SEG_INDEX, NULL, 0, i++);
    upb_MessageValue v;
    v.msg_val = upb_Message_New(vm, r->a);
    if (!v.msg_val) return r_fail(r, MW_JSON_NOMEM, "out of memory");
    if (!r_value(r, (upb_Message *)v.msg_val, vm)) return false;
    if (!upb_Array_Append(arr, v, r->a)) return r_fail(r, MW_JSON_NOMEM, "out of memory");
    path_pop(&r->path);
  }
  if (rc < 0) return false;
  r->depth--;
  return true;
}

/* Any JSON value into a google.protobuf.Value. */
static bool r_value(reader *r, upb_Message *msg, const upb_MessageDef *m) {
  char c = r_peek(r);
  upb_MessageValue v;
  const upb_FieldDef *f;
  switch (c) {
    case 'n':
      f = upb_MessageDef_FindFieldByNumber(m, 1);
      v.int32_val = 0;
      if (!r_literal(r, "null")) return false;
      break;
    case 't':
    case 'f':
      f = upb_MessageDef_FindFieldByNumber(m, 4);
      v.bool_val = c == 't';
      if (!r_literal(r, c == 't' ? "true" : "false")) return false;
      break;
    case '"': {
      str s;
      f = upb_MessageDef_FindFieldByNumber(m, 3);
      if (!r_string(r, &s)) return false;
      v.str_val.data = s.s;
      v.str_val.size = s.len;
      break;
    }
    case '{':
    case '[': {
      f = upb_MessageDef_FindFieldByNumber(m, c == '{' ? 5 : 6);
      const upb_MessageDef *sm = upb_FieldDef_MessageSubDef(f);
      upb_Message *sub = upb_Message_New(sm, r->a);
      if (!sub) return r_fail(r, MW_JSON_NOMEM, "out of memory");
      if (!(c == '{' ? r_struct(r, sub, sm) : r_list(r, sub, sm))) return false;
      v.msg_val = sub;
      break;
    }
    default: {
      f = upb_MessageDef_FindFieldByNumber(m, 2);
      str tok;
      bool integral, ok;
      if (!r_number_token(r, &tok, &integral)) return false;
      v.double_val = parse_double_text(r, tok.s, tok.len, &ok);
      if (!isfinite(v.double_val))
        return r_fail(r, MW_JSON_INVALID, "number %.*s out of range",
                      (int)(tok.len > 64 ? 64 : tok.len), tok.s);
      break;
    }
  }
  if (!upb_Message_Set(msg, f, v, r->a)) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  return true;
}

/* Any: {"@type": url, fields...} or {"@type": url, "value": <WKT JSON>};
 * "@type" may come anywhere in the object, so it is found first and the
 * object read again. {} is the empty Any. */
static bool r_any(reader *r, upb_Message *msg, const upb_MessageDef *m) {
  if (r_peek(r) != '{') return r_fail(r, MW_JSON_INVALID, "expected an object (an Any)");
  const char *obj = r->p;
  if (!r_depth_in(r)) return false;
  r->p++;
  bool first = true;
  str k, url = {NULL, 0};
  int rc;
  size_t members = 0;
  while ((rc = r_member(r, &first, &k)) == 1) {
    members++;
    if (str_is(k, "@type")) {
      if (url.s) return r_fail(r, MW_JSON_INVALID, "\"@type\" given twice");
      path_push(&r->path, SEG_NAME, "@type", 5, 0);
      if (r_peek(r) != '"') return r_fail(r, MW_JSON_INVALID, "expected a type URL string");
      if (!r_string(r, &url)) return false;
      path_pop(&r->path);
    } else if (!r_skip(r)) {
      return false;
    }
  }
  if (rc < 0) return false;
  const char *after = r->p;
  if (members == 0) {
    r->depth--;
    return true;
  }
  if (!url.s) return r_fail(r, MW_JSON_INVALID, "Any without \"@type\"");
  const char *slash = NULL;
  for (size_t i = 0; i < url.len; i++)
    if (url.s[i] == '/') slash = url.s + i;
  path_push(&r->path, SEG_NAME, "@type", 5, 0);
  if (!slash)
    return r_fail(r, MW_JSON_INVALID, "type URL \"%.*s\" has no '/'",
                  (int)(url.len > 200 ? 200 : url.len), url.s);
  size_t nlen = (size_t)(url.s + url.len - slash - 1);
  const upb_MessageDef *am = upb_DefPool_FindMessageByNameWithSize(r->pool, slash + 1, nlen);
  if (!am)
    return r_fail(r, MW_JSON_INVALID, "Any type '%.*s' is not in the schema",
                  (int)(nlen > 200 ? 200 : nlen), slash + 1);
  path_pop(&r->path);
  upb_Message *inner = upb_Message_New(am, r->a);
  if (!inner) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  /* Read the object again, now as the packed type. */
  r->p = obj + 1;
  first = true;
  bool wkt = upb_MessageDef_WellKnownType(am) != kUpb_WellKnown_Unspecified, have_value = false;
  int nf = upb_MessageDef_FieldCount(am);
  bool *seen = nf ? upb_Arena_Malloc(r->a, (size_t)nf) : NULL;
  if (nf && !seen) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  if (seen) memset(seen, 0, (size_t)nf);
  while ((rc = r_member(r, &first, &k)) == 1) {
    if (str_is(k, "@type")) {
      if (!r_skip(r)) return false;
      continue;
    }
    path_push(&r->path, SEG_NAME, k.s, k.len, 0);
    if (wkt) {
      if (!str_is(k, "value"))
        return r_fail(r, MW_JSON_INVALID, "an Any of %s has only \"@type\" and \"value\"",
                      upb_MessageDef_FullName(am));
      have_value = true;
      if (!r_message(r, inner, am)) return false;
    } else {
      if (!r_field(r, inner, am, k, seen)) return false;
    }
    path_pop(&r->path);
  }
  if (rc < 0) return false;
  if (wkt && !have_value)
    return r_fail(r, MW_JSON_INVALID, "an Any of %s needs \"value\"", upb_MessageDef_FullName(am));
  r->p = after;
  r->depth--;
  char *bin = NULL;
  size_t blen = 0;
  upb_EncodeStatus es = upb_Encode(inner, upb_MessageDef_MiniTable(am), 0, r->a, &bin, &blen);
  if (es != kUpb_EncodeStatus_Ok) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  upb_MessageValue v;
  v.str_val.data = url.s;
  v.str_val.size = url.len;
  upb_Message_Set(msg, upb_MessageDef_FindFieldByNumber(m, 1), v, r->a);
  v.str_val.data = bin;
  v.str_val.size = blen;
  upb_Message_Set(msg, upb_MessageDef_FindFieldByNumber(m, 2), v, r->a);
  return true;
}

/* One member of a message object (its key on the path already): the field
 * by JSON name or by .proto name. seen[] marks fields already given, so a
 * field given twice (by either name) is an error, as are two members of a
 * oneof: two readers must not read different values out of one body. */
static bool r_field(reader *r, upb_Message *msg, const upb_MessageDef *m, str k, bool *seen) {
  const upb_FieldDef *f = upb_MessageDef_FindByJsonNameWithSize(m, k.s, k.len);
  if (!f) f = upb_MessageDef_FindFieldByNameWithSize(m, k.s, k.len);
  if (!f || upb_FieldDef_IsExtension(f)) {
    if (r->options & MW_JSON_IGNORE_UNKNOWN) return r_skip(r);
    return r_fail(r, MW_JSON_INVALID, "no such field in %s", upb_MessageDef_FullName(m));
  }
  uint32_t idx = upb_FieldDef_Index(f);
  if (seen[idx]) return r_fail(r, MW_JSON_INVALID, "field given twice");
  seen[idx] = true;
  bool null = r_is_null(r);
  if (null && !(is_value_type(f) && !upb_FieldDef_IsRepeated(f))) {
    /* null: the field's default (json_format clears it) */
    return r_literal(r, "null");
  }
  const upb_OneofDef *o = upb_FieldDef_RealContainingOneof(f);
  if (o) {
    const upb_FieldDef *other = upb_Message_WhichOneof(msg, o);
    if (other && other != f)
      return r_fail(r, MW_JSON_INVALID, "'%s' and '%s' of oneof '%s' both set",
                    upb_FieldDef_Name(other), upb_FieldDef_Name(f), upb_OneofDef_Name(o));
  }
  if (upb_FieldDef_IsMap(f)) return r_map(r, msg, f);
  if (upb_FieldDef_IsRepeated(f)) return r_array(r, msg, f);
  upb_MessageValue v;
  bool skip;
  if (!r_single(r, f, &v, &skip)) return false;
  if (!skip && !upb_Message_Set(msg, f, v, r->a)) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  return true;
}

static bool r_message(reader *r, upb_Message *msg, const upb_MessageDef *m) {
  switch (upb_MessageDef_WellKnownType(m)) {
    case kUpb_WellKnown_Any:
      return r_any(r, msg, m);
    case kUpb_WellKnown_FieldMask:
      return r_fieldmask(r, msg, m);
    case kUpb_WellKnown_Duration:
      return r_duration(r, msg, m);
    case kUpb_WellKnown_Timestamp:
      return r_timestamp(r, msg, m);
    case kUpb_WellKnown_DoubleValue:
    case kUpb_WellKnown_FloatValue:
    case kUpb_WellKnown_Int64Value:
    case kUpb_WellKnown_UInt64Value:
    case kUpb_WellKnown_Int32Value:
    case kUpb_WellKnown_UInt32Value:
    case kUpb_WellKnown_StringValue:
    case kUpb_WellKnown_BytesValue:
    case kUpb_WellKnown_BoolValue: {
      const upb_FieldDef *f = upb_MessageDef_FindFieldByNumber(m, 1);
      upb_MessageValue v;
      bool skip;
      if (!r_single(r, f, &v, &skip)) return false;
      if (!upb_Message_Set(msg, f, v, r->a)) return r_fail(r, MW_JSON_NOMEM, "out of memory");
      return true;
    }
    case kUpb_WellKnown_Value:
      return r_value(r, msg, m);
    case kUpb_WellKnown_ListValue:
      return r_list(r, msg, m);
    case kUpb_WellKnown_Struct:
      return r_struct(r, msg, m);
    default:
      break;
  }
  if (r_peek(r) != '{')
    return r_fail(r, MW_JSON_INVALID, "expected an object (a %s)", upb_MessageDef_FullName(m));
  if (!r_depth_in(r)) return false;
  r->p++;
  int nf = upb_MessageDef_FieldCount(m);
  bool seen_stack[64];
  bool *seen = nf <= 64 ? seen_stack : upb_Arena_Malloc(r->a, (size_t)nf);
  if (!seen) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  memset(seen, 0, nf <= 64 ? sizeof seen_stack : (size_t)nf);
  bool first = true;
  str k;
  int rc;
  while ((rc = r_member(r, &first, &k)) == 1) {
    path_push(&r->path, SEG_NAME, k.s, k.len, 0);
    if (!r_field(r, msg, m, k, seen)) return false;
    path_pop(&r->path);
  }
  if (rc < 0) return false;
  r->depth--;
  return true;
}

mw_json_status mw_json_decode_msg(const char *json, size_t len, upb_Message *msg,
                                  const upb_MessageDef *m, const upb_DefPool *pool, int options,
                                  const mw_json_limits *limits, upb_Arena *a, char *err,
                                  size_t errlen) {
  if (limits && limits->max_in_bytes && len > limits->max_in_bytes) {
    set_err(err, errlen, "JSON of %zu bytes is larger than %zu bytes", len, limits->max_in_bytes);
    return MW_JSON_TOO_LARGE;
  }
  reader *r = upb_Arena_Malloc(a, sizeof *r);
  if (!r) {
    set_err(err, errlen, "out of memory");
    return MW_JSON_NOMEM;
  }
  reader_clear(r);
  r->start = r->p = json;
  r->end = json + len;
  r->a = a;
  r->pool = pool;
  r->options = options;
  r->max_depth = depth_limit(limits);
  r->err = err;
  r->errlen = errlen;
  if (!r_message(r, msg, m)) return r->status;
  if (r_peek(r) != 0) {
    r_syntax(r, "text after the JSON value");
    return r->status;
  }
  return MW_JSON_OK;
}

mw_json_status mw_json_to_binary(const char *json, size_t len, const upb_MessageDef *m,
                                 const upb_DefPool *pool, int options, const mw_json_limits *limits,
                                 upb_Arena *a, const char **out, size_t *out_len, char *err,
                                 size_t errlen) {
  *out = NULL;
  *out_len = 0;
  upb_Message *msg = upb_Message_New(m, a);
  if (!msg) {
    set_err(err, errlen, "out of memory");
    return MW_JSON_NOMEM;
  }
  mw_json_status rc = mw_json_decode_msg(json, len, msg, m, pool, options, limits, a, err, errlen);
  if (rc != MW_JSON_OK) return rc;
  char *buf = NULL;
  size_t n = 0;
  upb_EncodeStatus es =
      upb_Encode(msg, upb_MessageDef_MiniTable(m),
                 UPB_ENCODE_MAXDEPTH(wire_depth(depth_limit(limits))), a, &buf, &n);
  if (es == kUpb_EncodeStatus_OutOfMemory) {
    set_err(err, errlen, "out of memory");
    return MW_JSON_NOMEM;
  }
  if (es != kUpb_EncodeStatus_Ok) {
    set_err(err, errlen, "cannot encode %s: nested too deep", upb_MessageDef_FullName(m));
    return MW_JSON_TOO_LARGE;
  }
  if (limits && limits->max_out_bytes && n > limits->max_out_bytes) {
    set_err(err, errlen, "%s message of %zu bytes is larger than %zu bytes",
            upb_MessageDef_FullName(m), n, limits->max_out_bytes);
    return MW_JSON_TOO_LARGE;
  }
  if (!buf) buf = (char *)"";
  *out = buf;
  *out_len = n;
  return MW_JSON_OK;
}

/* ---- one field at a time (mw_json_internal.h) ----------------------------- */

#include "codec/mw_json_internal.h"

static void reader_init(reader *r, const char *json, size_t len, const upb_DefPool *pool,
                        int options, const mw_json_limits *limits, upb_Arena *a, char *err,
                        size_t errlen) {
  reader_clear(r);
  r->start = r->p = json;
  r->end = json + len;
  r->a = a;
  r->pool = pool;
  r->options = options;
  r->max_depth = depth_limit(limits);
  r->err = err;
  r->errlen = errlen;
}

/* Reads the value of field f (map, repeated or single) at r->p into msg. */
static bool r_field_value(reader *r, upb_Message *msg, const upb_FieldDef *f) {
  if (r_is_null(r) && !(is_value_type(f) && !upb_FieldDef_IsRepeated(f))) {
    upb_Message_ClearField(msg, f);
    return r_literal(r, "null");
  }
  if (upb_FieldDef_IsMap(f)) return r_map(r, msg, f);
  if (upb_FieldDef_IsRepeated(f)) return r_array(r, msg, f);
  upb_MessageValue v;
  bool skip;
  if (upb_FieldDef_CType(f) == kUpb_CType_Message) {
    /* merge into what is there (path variables may have set fields) */
    upb_Message *sub = upb_Message_Mutable(msg, f, r->a).msg;
    if (!sub) return r_fail(r, MW_JSON_NOMEM, "out of memory");
    return r_message(r, sub, upb_FieldDef_MessageSubDef(f));
  }
  if (!r_single(r, f, &v, &skip)) return false;
  if (!skip && !upb_Message_Set(msg, f, v, r->a)) return r_fail(r, MW_JSON_NOMEM, "out of memory");
  return true;
}

mw_json_status mw_json_decode_field(const char *json, size_t len, upb_Message *msg,
                                    const upb_FieldDef *f, const upb_DefPool *pool, int options,
                                    const mw_json_limits *limits, upb_Arena *a, char *err,
                                    size_t errlen) {
  if (limits && limits->max_in_bytes && len > limits->max_in_bytes) {
    set_err(err, errlen, "JSON of %zu bytes is larger than %zu bytes", len, limits->max_in_bytes);
    return MW_JSON_TOO_LARGE;
  }
  reader *r = upb_Arena_Malloc(a, sizeof *r);
  if (!r) {
    set_err(err, errlen, "out of memory");
    return MW_JSON_NOMEM;
  }
  reader_init(r, json, len, pool, options, limits, a, err, errlen);
  if (!r_field_value(r, msg, f)) return r->status;
  if (r_peek(r) != 0) {
    r_syntax(r, "text after the JSON value");
    return r->status;
  }
  return MW_JSON_OK;
}

mw_json_status mw_json_field_from_text(upb_Message *msg, const upb_FieldDef *f, const char *text,
                                       size_t len, const upb_DefPool *pool, upb_Arena *a, char *err,
                                       size_t errlen) {
  upb_CType t = upb_FieldDef_CType(f);
  const upb_MessageDef *sm = t == kUpb_CType_Message ? upb_FieldDef_MessageSubDef(f) : NULL;
  upb_WellKnown wk = sm ? upb_MessageDef_WellKnownType(sm) : kUpb_WellKnown_Unspecified;
  if (upb_FieldDef_IsMap(f) ||
      (sm && (wk == kUpb_WellKnown_Unspecified || wk == kUpb_WellKnown_Any ||
              wk == kUpb_WellKnown_Struct || wk == kUpb_WellKnown_ListValue))) {
    set_err(err, errlen, "%s cannot be given as text",
            upb_FieldDef_IsMap(f) ? "a map" : upb_MessageDef_FullName(sm));
    return MW_JSON_INVALID;
  }
  /* The text as one JSON token: a string literal, but for bools (true,
   * false) and Value, whose string form is a JSON string. */
  bool literal = t == kUpb_CType_Bool || wk == kUpb_WellKnown_BoolValue;
  char *json = upb_Arena_Malloc(a, 6 * len + 3);
  if (!json) {
    set_err(err, errlen, "out of memory");
    return MW_JSON_NOMEM;
  }
  size_t n = 0;
  if (literal) {
    if (!((len == 4 && memcmp(text, "true", 4) == 0) ||
          (len == 5 && memcmp(text, "false", 5) == 0))) {
      set_err(err, errlen, "'%.*s' is not true or false", (int)(len > 64 ? 64 : len), text);
      return MW_JSON_INVALID;
    }
    memcpy(json, text, len);
    n = len;
  } else {
    json[n++] = '"';
    for (size_t i = 0; i < len; i++) {
      unsigned char c = (unsigned char)text[i];
      if (c == '"' || c == '\\') {
        json[n++] = '\\';
        json[n++] = (char)c;
      } else if (c < 0x20) {
        n += (size_t)snprintf(json + n, 7, "\\u%04x", c);
      } else {
        json[n++] = (char)c;
      }
    }
    json[n++] = '"';
  }
  reader *r = upb_Arena_Malloc(a, sizeof *r);
  if (!r) {
    set_err(err, errlen, "out of memory");
    return MW_JSON_NOMEM;
  }
  reader_init(r, json, n, pool, 0, NULL, a, err, errlen);
  upb_MessageValue v;
  bool skip;
  if (!r_single(r, f, &v, &skip)) return r->status;
  bool ok = upb_FieldDef_IsRepeated(f)
                ? upb_Array_Append(upb_Message_Mutable(msg, f, a).array, v, a)
                : upb_Message_Set(msg, f, v, a);
  if (!ok) {
    set_err(err, errlen, "out of memory");
    return MW_JSON_NOMEM;
  }
  return MW_JSON_OK;
}

mw_json_status mw_json_encode_field(const upb_Message *msg, const upb_FieldDef *f,
                                    const upb_DefPool *pool, int options,
                                    const mw_json_limits *limits, upb_Arena *a, const char **out,
                                    size_t *out_len, char *err, size_t errlen) {
  writer *w = writer_start(a, pool, options, limits, out, out_len, err, errlen);
  if (!w) return MW_JSON_NOMEM;
  /* w_field writes "name":value; write into the buffer and keep the value. */
  bool first = true;
  if (!w_field(w, f, upb_Message_Get(msg, f), &first) || !w_reserve(w, 0)) return w->status;
  const char *name =
      (options & MW_JSON_PROTO_NAMES) ? upb_FieldDef_Name(f) : upb_FieldDef_JsonName(f);
  size_t skip = strlen(name) + 3; /* "name": */
  if (upb_FieldDef_CType(f) == kUpb_CType_Message && !upb_FieldDef_IsRepeated(f) &&
      !upb_Message_Has(msg, f)) {
    /* an unset message field: its empty message, in its JSON form */
    upb_Message *empty = upb_Message_New(upb_FieldDef_MessageSubDef(f), a);
    if (!empty) {
      set_err(err, errlen, "out of memory");
      return MW_JSON_NOMEM;
    }
    return mw_json_encode_msg(empty, upb_FieldDef_MessageSubDef(f), pool, options, limits, a, out,
                              out_len, err, errlen);
  }
  w->buf[w->len] = '\0';
  *out = w->buf + skip;
  *out_len = w->len - skip;
  return MW_JSON_OK;
}
