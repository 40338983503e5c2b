#include "base/mw_log.h"

#include <pthread.h>
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

/* A record is at most this long: what does not fit is cut, counted and
 * marked, and the record keeps its timestamp and level and stays one
 * well-formed line. 16 KiB holds any traceback the runtime writes (Lua's are
 * cut at 22 levels) and keeps one record within one write to a pipe. */
#define MAX_RECORD (16u << 10)

/* The rate limit (see mw_log.h): a token bucket, refilled continuously. */
static double g_rate = MW_LOG_RATE_PER_S, g_burst = MW_LOG_RATE_BURST;
static double g_tokens = MW_LOG_RATE_BURST, g_refilled;
static unsigned long g_suppressed;
static pthread_mutex_t g_rate_mu = PTHREAD_MUTEX_INITIALIZER;

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
 * it outgrows it. Once it reaches MAX_RECORD - TAIL_ROOM it is cut: the rest
 * of its input is only counted (`dropped`), and the end of the record says
 * how many bytes were left out. */
typedef struct line {
  char *buf;
  size_t len, cap;
  size_t dropped; /* input bytes left out */
  int cut;
  char stack[4096];
} line;

#define TAIL_ROOM 64 /* always kept free for the marker and the closing */
#define LIMIT (MAX_RECORD - TAIL_ROOM)

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

/* Appends n bytes, all or none; returns 0 (and cuts the record) when they do
 * not fit. */
static int put(line *l, const char *s, size_t n) {
  if (l->cut) return 0;
  if (l->len + n > LIMIT || !grow(l, l->len + n + TAIL_ROOM)) {
    l->cut = 1;
    return 0;
  }
  memcpy(l->buf + l->len, s, n);
  l->len += n;
  return 1;
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

/* The bytes of a string member, escaped by one of the formats' functions,
 * which returns how many input bytes it consumed and fills esc/k. */
typedef size_t (*escape_fn)(const unsigned char *p, size_t n, char *esc,
                            size_t *k);

static size_t escape_json(const unsigned char *p, size_t n, char *esc, size_t *k) {
  switch (*p) {
  case '"': memcpy(esc, "\\\"", *k = 2); return 1;
  case '\\': memcpy(esc, "\\\\", *k = 2); return 1;
  case '\n': memcpy(esc, "\\n", *k = 2); return 1;
  case '\r': memcpy(esc, "\\r", *k = 2); return 1;
  case '\t': memcpy(esc, "\\t", *k = 2); return 1;
  default: break;
  }
  if (*p < 0x20 || *p == 0x7f) {
    *k = (size_t)snprintf(esc, 8, "\\u%04x", *p);
    return 1;
  }
  size_t q = utf8_seq(p, n);
  if (q == 0) {
    memcpy(esc, "\\ufffd", *k = 6);
    return 1;
  }
  memcpy(esc, p, *k = q);
  return q;
}

/* Text format: printable ASCII and valid UTF-8 as they are; control bytes
 * (C0, DEL, and the C1 controls U+0080..U+009F, which some terminals obey),
 * invalid UTF-8 and the backslash itself escaped, so that what an attacker
 * put in a message cannot move the cursor, forge a record on a new line or
 * look like an escape it is not. */
static size_t escape_text(const unsigned char *p, size_t n, char *esc, size_t *k) {
  switch (*p) {
  case '\\': memcpy(esc, "\\\\", *k = 2); return 1;
  case '\n': memcpy(esc, "\\n", *k = 2); return 1;
  case '\r': memcpy(esc, "\\r", *k = 2); return 1;
  case '\t': memcpy(esc, "\\t", *k = 2); return 1;
  default: break;
  }
  size_t q = *p < 0x20 || *p == 0x7f ? 0 : utf8_seq(p, n);
  if (q == 2 && p[0] == 0xc2 && p[1] < 0xa0) q = 0; /* a C1 control */
  if (q == 0) {
    *k = (size_t)snprintf(esc, 8, "\\x%02x", *p);
    return 1;
  }
  memcpy(esc, p, *k = q);
  return q;
}

/* Writes s escaped; a cut inside it counts the rest as dropped. */
static void put_escaped(line *l, const char *s, size_t n, escape_fn fn) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    /* runs of bytes that need no escaping go in one copy */
    size_t run = i;
    while (run < n && p[run] >= 0x20 && p[run] < 0x7f && p[run] != '\\' &&
           (fn == escape_text || p[run] != '"'))
      run++;
    if (run > i) {
      size_t room = l->cut ? 0 : LIMIT - l->len;
      size_t take = run - i < room ? run - i : room;
      put(l, s + i, take);
      i += take;
      if (i < run) {
        l->cut = 1;
        break;
      }
      continue;
    }
    char esc[8];
    size_t k;
    size_t used = fn(p + i, n - i, esc, &k);
    if (!put(l, esc, k)) break;
    i += used;
  }
  l->dropped += n - i;
}

static void put_json_string(line *l, const char *s, size_t n) {
  if (!put(l, "\"", 1)) {
    l->dropped += n;
    return;
  }
  put_escaped(l, s, n, escape_json);
  if (l->cut) put_tail(l, "\""); /* the room is kept for it */
  else if (!put(l, "\"", 1)) put_tail(l, "\"");
}

static void put_text(line *l, const char *s, size_t n) { put_escaped(l, s, n, escape_text); }

/* A key and its value, written only if the key and the start of the value
 * fit, so that a cut never leaves a key without its value. */
static int member_fits(line *l, size_t key_len) {
  return !l->cut && l->len + key_len + 8 <= LIMIT;
}

static void timestamp(char *out, size_t n) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + k, n - k, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

/* Whether a record may be written now (the token bucket); *suppressed gets
 * the count of records refused since the last one that was written. */
static int rate_ok(unsigned long *suppressed) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  pthread_mutex_lock(&g_rate_mu);
  if (g_refilled == 0) g_refilled = now;
  g_tokens += (now - g_refilled) * g_rate;
  if (g_tokens > g_burst) g_tokens = g_burst;
  g_refilled = now;
  int ok = g_tokens >= 1;
  if (ok) {
    g_tokens -= 1;
    *suppressed = g_suppressed;
    g_suppressed = 0;
  } else {
    g_suppressed++;
  }
  pthread_mutex_unlock(&g_rate_mu);
  return ok;
}

static void emit(mw_log_level level, const char *msg, size_t msg_len, size_t cut,
                 int n, const char *const *keys, const char *const *vals,
                 const size_t *vlens) {
  line l;
  l.buf = l.stack;
  l.len = 0;
  l.cap = sizeof l.stack;
  l.cut = 0;
  l.dropped = cut;
  char ts[40];
  timestamp(ts, sizeof ts);
  /* the header always fits: it is far below the limit */
  if (g_json) {
    puts_(&l, "{\"ts\":\"");
    puts_(&l, ts);
    puts_(&l, "\",\"level\":\"");
    puts_(&l, level_name(level));
    puts_(&l, "\",\"msg\":");
    put_json_string(&l, msg, msg_len);
    for (int i = 0; i < n; i++) {
      const char *v = vals[i] ? vals[i] : "";
      size_t vlen = vlens ? vlens[i] : strlen(v), klen = strlen(keys[i]);
      if (!member_fits(&l, klen * 6)) {
        l.cut = 1;
        l.dropped += klen + vlen;
        continue;
      }
      put(&l, ",", 1);
      put_json_string(&l, keys[i], klen);
      put(&l, ":", 1);
      put_json_string(&l, v, vlen);
    }
  } else {
    puts_(&l, ts);
    put(&l, " ", 1);
    puts_(&l, level_name(level));
    put(&l, " ", 1);
    put_text(&l, msg, msg_len);
    for (int i = 0; i < n; i++) {
      const char *v = vals[i] ? vals[i] : "";
      size_t vlen = vlens ? vlens[i] : strlen(v), klen = strlen(keys[i]);
      if (!member_fits(&l, klen * 4)) {
        l.cut = 1;
        l.dropped += klen + vlen;
        continue;
      }
      put(&l, " ", 1);
      put_text(&l, keys[i], klen);
      put(&l, "=", 1);
      put_text(&l, v, vlen);
    }
  }
  if (l.dropped) {
    char mark[TAIL_ROOM];
    snprintf(mark, sizeof mark, g_json ? ",\"truncated_bytes\":%zu" : " [truncated: %zu bytes cut]",
             l.dropped);
    put_tail(&l, mark);
  }
  put_tail(&l, g_json ? "}\n" : "\n");
  ssize_t w = write(g_fd, l.buf, l.len);
  (void)w;
  if (l.buf != l.stack) free(l.buf);
}

/* A record, after the rate limit: warn and error records, and every record
 * scripts write, spend a token; when one goes out after others were refused,
 * a record saying how many goes first. */
static void emit_limited(mw_log_level level, int limited, const char *msg,
                         size_t msg_len, size_t cut, int n, const char *const *keys,
                         const char *const *vals, const size_t *vlens) {
  if (limited || level >= MW_LOG_WARN) {
    unsigned long suppressed = 0;
    if (!rate_ok(&suppressed)) return;
    if (suppressed) {
      char note[160];
      int k = snprintf(note, sizeof note,
                       "%lu log records suppressed (rate limit: %g per second, bursts "
                       "of %g)",
                       suppressed, g_rate, g_burst);
      emit(MW_LOG_WARN, note, (size_t)k, 0, 0, NULL, NULL, NULL);
    }
  }
  emit(level, msg, msg_len, cut, n, keys, vals, vlens);
}

void mw_log_set_rate(double per_second, double burst) {
  pthread_mutex_lock(&g_rate_mu);
  g_rate = per_second;
  g_burst = burst < 1 ? 1 : burst;
  g_tokens = g_burst;
  g_refilled = 0;
  g_suppressed = 0;
  pthread_mutex_unlock(&g_rate_mu);
}

void mw_log(mw_log_level level, const char *fmt, ...) {
  if (!mw_log_enabled(level)) return;
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t len = k < 0 ? 0 : (size_t)k < sizeof msg ? (size_t)k : sizeof msg - 1;
  emit_limited(level, 0, msg, len, k < 0 ? 0 : (size_t)k - len, 0, NULL, NULL, NULL);
}

void mw_log_fields(mw_log_level level, const char *msg, int n,
                   const char *const *keys, const char *const *vals) {
  if (!mw_log_enabled(level)) return;
  emit_limited(level, 0, msg, strlen(msg), 0, n, keys, vals, NULL);
}

void mw_log_record(mw_log_level level, const char *msg, size_t msg_len, int n,
                   const char *const *keys, const char *const *vals,
                   const size_t *vlens) {
  if (!mw_log_enabled(level)) return;
  emit_limited(level, 0, msg, msg_len, 0, n, keys, vals, vlens);
}

void mw_log_script(mw_log_level level, const char *msg, size_t msg_len, int n,
                   const char *const *keys, const char *const *vals,
                   const size_t *vlens) {
  if (!mw_log_enabled(level)) return;
  emit_limited(level, 1, msg, msg_len, 0, n, keys, vals, vlens);
}
