#include "mw_log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static mw_log_level g_level = MW_LOG_INFO;
static int g_json = 0;
static int g_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

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

const char *mw_log_level_name(mw_log_level level) {
  return (level >= MW_LOG_DEBUG && level <= MW_LOG_ERROR) ? level_names[level]
                                                          : "?";
}

/* A bounded line buffer: appends truncate silently at the end. */
typedef struct {
  char buf[8192];
  size_t len;
} line;

static void put(line *l, const char *s, size_t n) {
  size_t room = sizeof l->buf - 2 - l->len; /* keep room for "\n\0" */
  if (n > room) n = room;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static void puts_(line *l, const char *s) { put(l, s, strlen(s)); }

static void put_json_string(line *l, const char *s) {
  put(l, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    switch (*p) {
    case '"': put(l, "\\\"", 2); break;
    case '\\': put(l, "\\\\", 2); break;
    case '\n': put(l, "\\n", 2); break;
    case '\r': put(l, "\\r", 2); break;
    case '\t': put(l, "\\t", 2); break;
    default:
      if (*p < 0x20) {
        snprintf(esc, sizeof esc, "\\u%04x", *p);
        puts_(l, esc);
      } else {
        put(l, (const char *)p, 1);
      }
    }
  }
  put(l, "\"", 1);
}

static void timestamp(char *out, size_t n) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + k, n - k, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

static void emit(mw_log_level level, const char *msg, int n,
                 const char *const *keys, const char *const *vals) {
  line l;
  l.len = 0;
  char ts[40];
  timestamp(ts, sizeof ts);
  if (g_json) {
    puts_(&l, "{\"ts\":\"");
    puts_(&l, ts);
    puts_(&l, "\",\"level\":\"");
    puts_(&l, mw_log_level_name(level));
    puts_(&l, "\",\"msg\":");
    put_json_string(&l, msg);
    for (int i = 0; i < n; i++) {
      put(&l, ",", 1);
      put_json_string(&l, keys[i]);
      put(&l, ":", 1);
      put_json_string(&l, vals[i] ? vals[i] : "");
    }
    put(&l, "}", 1);
  } else {
    puts_(&l, ts);
    put(&l, " ", 1);
    puts_(&l, mw_log_level_name(level));
    put(&l, " ", 1);
    puts_(&l, msg);
    for (int i = 0; i < n; i++) {
      put(&l, " ", 1);
      puts_(&l, keys[i]);
      put(&l, "=", 1);
      puts_(&l, vals[i] ? vals[i] : "");
    }
  }
  l.buf[l.len++] = '\n';
  ssize_t w = write(g_fd, l.buf, l.len);
  (void)w;
}

void mw_log(mw_log_level level, const char *fmt, ...) {
  if (!mw_log_enabled(level)) return;
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  emit(level, msg, 0, NULL, NULL);
}

void mw_log_fields(mw_log_level level, const char *msg, int n,
                   const char *const *keys, const char *const *vals) {
  if (!mw_log_enabled(level)) return;
  emit(level, msg, n, keys, vals);
}
