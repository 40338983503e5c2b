#include "base/mw_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static mw_log_level g_level = MW_LOG_INFO;
static int g_json = 0;
static int g_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* A record longer than this is cut, marked, and still well-formed. */
#define MAX_RECORD (1u << 20)

void mw_log_configure(mw_log_level level, int json, int fd) {
  g_level = level;
  g_json = json;
  g_fd = fd;
}

int mw_log_enabled(mw_log_level level) { return level >= g_level; }

int mw_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, level_names[i]) == 0) return i;
  if (strcmp(s, "warning") == 0) return MW_LOG_WARN;
  return -1;
}

static const char *level_name(mw_log_level level) {
  return (level >= MW_LOG_DEBUG && level <= MW_LOG_ERROR) ? level_names[level]
                                                          : "?";
}

/* A record under construction: a stack buffer that moves to the heap when
 * it outgrows it. Past MAX_RECORD the record is cut back to the end of its
 * last complete member (`safe`) and marked, so it stays well-formed. */
typedef struct line {
  char *buf;
  size_t len, cap, safe;
  int cut;
  char stack[4096];
} line;

#define TAIL_ROOM 64 /* always kept free for closing the record */

static int grow(line *l, size_t need) {
  if (need <= l->cap) return 1;
  size_t cap = l->cap * 2;
  while (cap < need) cap *= 2;
  char *nb = malloc(cap);
  if (!nb) return 0;
  memcpy(nb, l->buf, l->len);
  if (l->buf != l->stack) free(l->buf);
  l->buf = nb;
  l->cap = cap;
  return 1;
}

static void put(line *l, const char *s, size_t n) {
  if (l->cut) return;
  if (l->len + n > MAX_RECORD || !grow(l, l->len + n + TAIL_ROOM)) {
    l->cut = 1;
    return;
  }
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

/* The end of a member: a cut goes back to here. */
static void mark_safe(line *l) {
  if (!l->cut) l->safe = l->len;
}

/* Closing bytes: they fit in the room put() always leaves. */
static void put_tail(line *l, const char *s) {
  size_t n = strlen(s);
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static void puts_(line *l, const char *s) { put(l, s, strlen(s)); }

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  if (p[0] < 0x80) return 1;
  size_t len;
  unsigned cp;
  if ((p[0] & 0xe0) == 0xc0) {
    len = 2;
    cp = p[0] & 0x1f;
  } else if ((p[0] & 0xf0) == 0xe0) {
    len = 3;
    cp = p[0] & 0x0f;
  } else if ((p[0] & 0xf8) == 0xf0) {
    len = 4;
    cp = p[0] & 0x07;
  } else {
    return 0;
  }
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

static void put_json_string(line *l, const char *s, size_t n) {
  put(l, "\"", 1);
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  while (p < end && !l->cut) {
    char esc[8];
    switch (*p) {
    case '"': put(l, "\\\"", 2); p++; continue;
    case '\\': put(l, "\\\\", 2); p++; continue;
    case '\n': put(l, "\\n", 2); p++; continue;
    case '\r': put(l, "\\r", 2); p++; continue;
    case '\t': put(l, "\\t", 2); p++; continue;
    default: break;
    }
    if (*p < 0x20 || *p == 0x7f) {
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      puts_(l, esc);
      p++;
      continue;
    }
    size_t k = utf8_seq(p, (size_t)(end - p));
    if (k == 0) {
      put(l, "\\ufffd", 6);
      p++;
    } else {
      put(l, (const char *)p, k);
      p += k;
    }
  }
  put(l, "\"", 1);
}

/* Text format: bytes as they are, but no raw newlines inside a record. */
static void put_text(line *l, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) put(l, s[i] == '\n' ? "\n  " : s + i, s[i] == '\n' ? 3 : 1);
}

static void timestamp(char *out, size_t n) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + k, n - k, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

static void emit(mw_log_level level, const char *msg, size_t msg_len, int n,
                 const char *const *keys, const char *const *vals,
                 const size_t *vlens) {
  line l;
  l.buf = l.stack;
  l.len = l.safe = 0;
  l.cap = sizeof l.stack;
  l.cut = 0;
  char ts[40];
  timestamp(ts, sizeof ts);
  if (g_json) {
    puts_(&l, "{\"ts\":\"");
    puts_(&l, ts);
    puts_(&l, "\",\"level\":\"");
    puts_(&l, level_name(level));
    puts_(&l, "\"");
    mark_safe(&l);
    puts_(&l, ",\"msg\":");
    put_json_string(&l, msg, msg_len);
    mark_safe(&l);
    for (int i = 0; i < n; i++) {
      put(&l, ",", 1);
      put_json_string(&l, keys[i], strlen(keys[i]));
      put(&l, ":", 1);
      const char *v = vals[i] ? vals[i] : "";
      put_json_string(&l, v, vlens ? vlens[i] : strlen(v));
      mark_safe(&l);
    }
  } else {
    puts_(&l, ts);
    put(&l, " ", 1);
    puts_(&l, level_name(level));
    put(&l, " ", 1);
    put_text(&l, msg, msg_len);
    mark_safe(&l);
    for (int i = 0; i < n; i++) {
      put(&l, " ", 1);
      puts_(&l, keys[i]);
      put(&l, "=", 1);
      const char *v = vals[i] ? vals[i] : "";
      put_text(&l, v, vlens ? vlens[i] : strlen(v));
      mark_safe(&l);
    }
  }
  if (l.cut) {
    l.len = l.safe;
    put_tail(&l, g_json ? ",\"truncated\":true" : " (truncated)");
  }
  put_tail(&l, g_json ? "}\n" : "\n");
  ssize_t w = write(g_fd, l.buf, l.len);
  (void)w;
  if (l.buf != l.stack) free(l.buf);
}

void mw_log(mw_log_level level, const char *fmt, ...) {
  if (!mw_log_enabled(level)) return;
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t len = k < 0 ? 0 : (size_t)k < sizeof msg ? (size_t)k : sizeof msg - 1;
  emit(level, msg, len, 0, NULL, NULL, NULL);
}

void mw_log_fields(mw_log_level level, const char *msg, int n,
                   const char *const *keys, const char *const *vals) {
  if (!mw_log_enabled(level)) return;
  emit(level, msg, strlen(msg), n, keys, vals, NULL);
}

void mw_log_record(mw_log_level level, const char *msg, size_t msg_len, int n,
                   const char *const *keys, const char *const *vals,
                   const size_t *vlens) {
  if (!mw_log_enabled(level)) return;
  emit(level, msg, msg_len, n, keys, vals, vlens);
}
