/* The wire rules of gRPC-Web and Connect (http/mw_webwire.h). */
#include "http/mw_webwire.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "compress/mw_inflate.h"

static int ieq(const char *a, size_t al, const char *b) {
  size_t bl = strlen(b);
  return al == bl && strncasecmp(a, b, bl) == 0;
}

mw_web_kind mw_web_classify(const char *ct, size_t len, int *json) {
  *json = 0;
  if (!ct) return MW_WEB_NONE;
  const char *semi = memchr(ct, ';', len);
  if (semi) len = (size_t)(semi - ct);
  while (len && (ct[len - 1] == ' ' || ct[len - 1] == '\t')) len--;
  static const struct {
    const char *name;
    mw_web_kind kind;
    int json;
  } table[] = {
      {"application/grpc-web", MW_WEB_GRPC_WEB, 0},
      {"application/grpc-web+proto", MW_WEB_GRPC_WEB, 0},
      {"application/grpc-web+json", MW_WEB_GRPC_WEB, 1},
      {"application/grpc-web-text", MW_WEB_GRPC_WEB_TEXT, 0},
      {"application/grpc-web-text+proto", MW_WEB_GRPC_WEB_TEXT, 0},
      {"application/proto", MW_WEB_CONNECT_UNARY, 0},
      {"application/json", MW_WEB_CONNECT_UNARY, 1},
      {"application/connect+proto", MW_WEB_CONNECT_STREAM, 0},
      {"application/connect+json", MW_WEB_CONNECT_STREAM, 1},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (ieq(ct, len, table[i].name)) {
      *json = table[i].json;
      return table[i].kind;
    }
  return MW_WEB_NONE;
}

long mw_web_frames(const char *body, size_t len, mw_web_frame *out, size_t max, char *err,
                   size_t errlen) {
  size_t pos = 0;
  long n = 0;
  while (pos < len) {
    if (len - pos < 5) {
      snprintf(err, errlen, "the body ends inside an envelope's 5-byte prefix");
      return -1;
    }
    const unsigned char *p = (const unsigned char *)body + pos;
    size_t flen = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4];
    if (flen > len - pos - 5) {
      snprintf(err, errlen, "an envelope says %zu bytes but %zu follow", flen, len - pos - 5);
      return -1;
    }
    if ((size_t)n == max) {
      snprintf(err, errlen, "more than %zu request messages", max);
      return -1;
    }
    if (out) {
      out[n].flags = p[0];
      out[n].data = body + pos + 5;
      out[n].len = flen;
    }
    n++;
    pos += 5 + flen;
  }
  return n;
}

void mw_web_put_frame(mw_buf *b, uint8_t flags, const char *data, size_t len) {
  char h[5] = {(char)flags, (char)(len >> 24), (char)(len >> 16), (char)(len >> 8),
               (char)len};
  mw_buf_put(b, h, 5);
  if (len) mw_buf_put(b, data, len);
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void mw_web_b64_encode(mw_buf *b, const unsigned char *in, size_t len, int pad) {
  char q[4];
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    unsigned v = ((unsigned)in[i] << 16) | ((unsigned)in[i + 1] << 8) | in[i + 2];
    q[0] = b64chars[v >> 18];
    q[1] = b64chars[(v >> 12) & 63];
    q[2] = b64chars[(v >> 6) & 63];
    q[3] = b64chars[v & 63];
    mw_buf_put(b, q, 4);
  }
  size_t rest = len - i;
  if (rest) {
    unsigned v = (unsigned)in[i] << 16;
    if (rest == 2) v |= (unsigned)in[i + 1] << 8;
    q[0] = b64chars[v >> 18];
    q[1] = b64chars[(v >> 12) & 63];
    q[2] = rest == 2 ? b64chars[(v >> 6) & 63] : '=';
    q[3] = '=';
    size_t n = pad ? 4 : rest + 1;
    mw_buf_put(b, q, n);
  }
}

static int b64val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

long mw_web_b64_decode(const char *in, size_t len, unsigned char *out, int allow_unpadded) {
  size_t pad = 0;
  if (len % 4 != 0) {
    if (!allow_unpadded || len % 4 == 1) return -1;
  } else {
    while (pad < 2 && len > pad && in[len - 1 - pad] == '=') pad++;
  }
  size_t n = len - pad, o = 0;
  unsigned acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64val(in[i]);
    if (v < 0) return -1;
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  /* The leftover bits of the last character must be zero (canonical). */
  if (bits && (acc & ((1u << bits) - 1)) != 0) return -1;
  return (long)o;
}

long mw_web_b64_decode_chunks(const char *in, size_t len, unsigned char *out) {
  if (len % 4 != 0) return -1;
  size_t pos = 0;
  long total = 0;
  while (pos < len) {
    /* A chunk ends after a group with padding, or at the end. */
    size_t end = pos;
    while (end < len) {
      end += 4;
      if (in[end - 1] == '=') break;
    }
    long n = mw_web_b64_decode(in + pos, end - pos, out + total, 0);
    if (n < 0) return -1;
    total += n;
    pos = end;
  }
  return total;
}

double mw_web_grpc_timeout(const char *v, size_t len) {
  if (len < 2 || len > 9) return -1;
  double n = 0;
  for (size_t i = 0; i + 1 < len; i++) {
    if (v[i] < '0' || v[i] > '9') return -1;
    n = n * 10 + (v[i] - '0');
  }
  switch (v[len - 1]) {
  case 'H': return n * 3600;
  case 'M': return n * 60;
  case 'S': return n;
  case 'm': return n / 1e3;
  case 'u': return n / 1e6;
  case 'n': return n / 1e9;
  default: return -1;
  }
}

double mw_web_connect_timeout(const char *v, size_t len) {
  if (len < 1 || len > 10) return -1;
  double n = 0;
  for (size_t i = 0; i < len; i++) {
    if (v[i] < '0' || v[i] > '9') return -1;
    n = n * 10 + (v[i] - '0');
  }
  return n / 1e3;
}

static const char *const code_names[17] = {
    "ok",        "canceled",          "unknown",          "invalid_argument",
    "deadline_exceeded", "not_found",  "already_exists",   "permission_denied",
    "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
    "unimplemented", "internal",       "unavailable",      "data_loss",
    "unauthenticated"};
static const int code_http[17] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
                                  400, 409, 400, 501, 500, 503, 500, 401};

const char *mw_web_code_name(int code) {
  return code >= 0 && code < 17 ? code_names[code] : "unknown";
}
int mw_web_code_http(int code) { return code >= 0 && code < 17 ? code_http[code] : 500; }

void mw_web_percent_encode(mw_buf *b, const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c > 0x7e || c == '%') mw_buf_printf(b, "%%%02X", c);
    else mw_buf_put(b, (const char *)&c, 1);
  }
}

int mw_web_accepted_codings(const char *v, size_t len) {
  int gzip = 0, deflate = 0;
  if (!v) return 0;
  size_t i = 0;
  while (i < len) {
    /* One element: [i, e), its name [n0, n1), its parameters after ';'. */
    size_t e = i;
    while (e < len && v[e] != ',') e++;
    size_t n0 = i;
    while (n0 < e && (v[n0] == ' ' || v[n0] == '\t')) n0++;
    size_t n1 = n0;
    while (n1 < e && v[n1] != ';' && v[n1] != ' ' && v[n1] != '\t') n1++;
    int refused = 0;
    for (size_t q = n1; q + 2 < e; q++) {
      if (v[q] != 'q' || v[q + 1] != '=') continue;
      /* "q=0", "q=0.0", "q=0.000": a weight of zero refuses the coding. */
      refused = 1;
      for (size_t c = q + 2; c < e && v[c] != ' ' && v[c] != ';'; c++)
        if (v[c] >= '1' && v[c] <= '9') refused = 0;
      break;
    }
    if (!refused) {
      if (n1 - n0 == 4 && strncasecmp(v + n0, "gzip", 4) == 0) gzip = 1;
      if (n1 - n0 == 7 && strncasecmp(v + n0, "deflate", 7) == 0) deflate = 1;
    }
    i = e + 1;
  }
  return (gzip << MW_CODING_GZIP) | (deflate << MW_CODING_DEFLATE);
}

int mw_web_accepted_coding(const char *v, size_t len) {
  int mask = mw_web_accepted_codings(v, len);
  return mask & (1 << MW_CODING_GZIP) ? MW_CODING_GZIP
         : mask & (1 << MW_CODING_DEFLATE) ? MW_CODING_DEFLATE
                                           : 0;
}

/* --- a minimal protobuf reader for google.rpc.Status ----------------------- */

static int varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    unsigned char c = *(*p)++;
    *v |= (uint64_t)(c & 127) << shift;
    if (!(c & 128)) return 0;
  }
  return -1;
}

/* Calls fn for each length-delimited field of msg; -1 on malformed input. */
typedef void (*field_fn)(void *ud, uint32_t num, const unsigned char *d, size_t n);
static int each_bytes_field(const unsigned char *p, size_t len, field_fn fn, void *ud) {
  const unsigned char *end = p + len;
  while (p < end) {
    uint64_t key, v;
    if (varint(&p, end, &key) != 0) return -1;
    switch (key & 7) {
    case 0:
      if (varint(&p, end, &v) != 0) return -1;
      break;
    case 1:
      if (end - p < 8) return -1;
      p += 8;
      break;
    case 5:
      if (end - p < 4) return -1;
      p += 4;
      break;
    case 2:
      if (varint(&p, end, &v) != 0 || v > (uint64_t)(end - p)) return -1;
      fn(ud, (uint32_t)(key >> 3), p, (size_t)v);
      p += v;
      break;
    default:
      return -1;
    }
  }
  return 0;
}

typedef struct any_parts {
  const unsigned char *type, *value;
  size_t type_len, value_len;
} any_parts;

static void any_field(void *ud, uint32_t num, const unsigned char *d, size_t n) {
  any_parts *a = ud;
  if (num == 1) {
    a->type = d;
    a->type_len = n;
  } else if (num == 2) {
    a->value = d;
    a->value_len = n;
  }
}

typedef struct details_out {
  mw_buf *b;
  int n;
} details_out;

static void status_field(void *ud, uint32_t num, const unsigned char *d, size_t n) {
  details_out *o = ud;
  if (num != 3) return;
  any_parts a = {0};
  if (each_bytes_field(d, n, any_field, &a) != 0 || !a.type) return;
  /* type: the message's full name, without the type URL's prefix. */
  const unsigned char *slash = NULL;
  for (size_t i = 0; i < a.type_len; i++)
    if (a.type[i] == '/') slash = a.type + i;
  const char *t = (const char *)(slash ? slash + 1 : a.type);
  size_t tl = a.type_len - (size_t)(slash ? slash + 1 - a.type : 0);
  mw_buf_puts(o->b, o->n++ ? ",{\"type\":" : "{\"type\":");
  mw_buf_json(o->b, t, tl);
  mw_buf_puts(o->b, ",\"value\":\"");
  mw_web_b64_encode(o->b, a.value ? a.value : (const unsigned char *)"", a.value_len, 0);
  mw_buf_puts(o->b, "\"}");
}

void mw_web_error_json(mw_buf *b, int code, const char *msg, size_t msg_len,
                       const char *details, size_t details_len) {
  mw_buf_puts(b, "{\"code\":\"");
  mw_buf_puts(b, mw_web_code_name(code));
  mw_buf_puts(b, "\"");
  if (msg_len) {
    mw_buf_puts(b, ",\"message\":");
    mw_buf_json(b, msg, msg_len);
  }
  if (details && details_len) {
    mw_buf b2 = {0};
    details_out o = {&b2, 0};
    if (each_bytes_field((const unsigned char *)details, details_len, status_field, &o) == 0 &&
        o.n && !b2.oom) {
      mw_buf_puts(b, ",\"details\":[");
      mw_buf_put(b, b2.p, b2.len);
      mw_buf_puts(b, "]");
    }
    mw_buf_free(&b2);
  }
  mw_buf_puts(b, "}");
}
