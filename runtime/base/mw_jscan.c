/* The JSON scanner (mw_jscan.h). */
#include "base/mw_jscan.h"

#include <string.h>

const char *mw_jscan_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The end of the string at p (p at its opening quote), or NULL. */
static const char *skip_string(const char *p, const char *end) {
  for (p++; p < end; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') return p + 1;
    if (c < 0x20) return NULL;
    if (c == '\\') {
      if (++p >= end) return NULL;
      if (*p == 'u') {
        if (end - p < 5) return NULL;
        for (int i = 1; i <= 4; i++)
          if (hexval(p[i]) < 0) return NULL;
        p += 4;
      } else if (!strchr("\"\\/bfnrt", *p)) {
        return NULL;
      }
    }
  }
  return NULL;
}

static const char *value(const char *p, const char *end, int depth) {
  p = mw_jscan_ws(p, end);
  if (p >= end || depth > MW_JSCAN_MAX_DEPTH) return NULL;
  if (*p == '"') return skip_string(p, end);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    int obj = *p == '{';
    p = mw_jscan_ws(p + 1, end);
    if (p < end && *p == close) return p + 1;
    for (;;) {
      if (obj) {
        p = mw_jscan_ws(p, end);
        if (p >= end || *p != '"' || !(p = skip_string(p, end))) return NULL;
        p = mw_jscan_ws(p, end);
        if (p >= end || *p != ':') return NULL;
        p++;
      }
      if (!(p = value(p, end, depth + 1))) return NULL;
      p = mw_jscan_ws(p, end);
      if (p >= end) return NULL;
      if (*p == close) return p + 1;
      if (*p != ',') return NULL;
      p++;
    }
  }
  const char *s = p;
  while (p < end && (strchr("+-.eE", *p) || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
    p++;
  if (p == s) return NULL;
  if (*s >= 'a' && *s <= 'z') {
    size_t n = (size_t)(p - s);
    if (!((n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5)) ||
          (n == 4 && !memcmp(s, "null", 4))))
      return NULL;
  }
  return p;
}

const char *mw_jscan_value(const char *p, const char *end) { return value(p, end, 0); }

int mw_jscan_array(const char *p, const char *end,
                   int (*fn)(void *ud, const char *v, const char *vend), void *ud) {
  p = mw_jscan_ws(p, end);
  if (p >= end || *p != '[' || !mw_jscan_value(p, end)) return -1;
  p = mw_jscan_ws(p + 1, end);
  if (*p == ']') return 0;
  int n = 0;
  for (;;) {
    const char *v = mw_jscan_ws(p, end), *ve = mw_jscan_value(v, end);
    if (fn(ud, v, ve)) return -1;
    n++;
    p = mw_jscan_ws(ve, end);
    if (*p == ']') return n;
    p++; /* the comma: the array was checked whole above */
  }
}

int mw_jscan_member(const char *p, const char *end, const char *key, const char **v,
                    const char **vend) {
  p = mw_jscan_ws(p, end);
  if (p >= end || *p != '{' || !mw_jscan_value(p, end)) return -1;
  p = mw_jscan_ws(p + 1, end);
  if (*p == '}') return 0;
  size_t klen = strlen(key);
  for (;;) {
    const char *k = p, *ke = skip_string(p, end);
    p = mw_jscan_ws(ke, end) + 1; /* past ':' */
    const char *vs = mw_jscan_ws(p, end), *ve = mw_jscan_value(vs, end);
    /* a key written with escapes is not matched: the admin's keys never need them */
    if ((size_t)(ke - k) == klen + 2 && memcmp(k + 1, key, klen) == 0) {
      *v = vs;
      *vend = ve;
      return 1;
    }
    p = mw_jscan_ws(ve, end);
    if (*p == '}') return 0;
    p = mw_jscan_ws(p + 1, end);
  }
}

long mw_jscan_string(const char *v, const char *vend, char *out, size_t cap) {
  if (v >= vend || *v != '"' || skip_string(v, vend) != vend) return -1;
  size_t n = 0;
  for (const char *p = v + 1; p < vend - 1; p++) {
    unsigned cp = (unsigned char)*p;
    if (cp == '\\') {
      p++;
      switch (*p) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
          cp = (unsigned)(hexval(p[1]) << 12 | hexval(p[2]) << 8 | hexval(p[3]) << 4 |
                          hexval(p[4]));
          p += 4;
          break;
        default: cp = (unsigned char)*p; break;
      }
    }
    char enc[3];
    size_t k = 0;
    if (cp < 0x80 || (unsigned char)p[0] >= 0x80) {
      enc[k++] = (char)cp; /* raw bytes (UTF-8 as written) pass as they are */
    } else if (cp < 0x800) {
      enc[k++] = (char)(0xc0 | cp >> 6);
      enc[k++] = (char)(0x80 | (cp & 0x3f));
    } else {
      enc[k++] = (char)(0xe0 | cp >> 12);
      enc[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
      enc[k++] = (char)(0x80 | (cp & 0x3f));
    }
    if (n + k + 1 > cap) return -1;
    memcpy(out + n, enc, k);
    n += k;
  }
  if (n + 1 > cap) return -1;
  out[n] = 0;
  return (long)n;
}
