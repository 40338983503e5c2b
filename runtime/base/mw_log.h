/* Logging: human-readable lines by default, JSON lines with log.format: json.
 * Thread-safe; each record is written with one write(2).
 *
 * Records carry what clients and scripts put in them, so every record is one
 * line whatever its bytes: the text format escapes control bytes, invalid
 * UTF-8 and backslashes (\x1b, \n, \\), JSON escapes as JSON does. A record
 * is at most 16 KiB: past that its message and fields are cut, and it ends
 * with " [truncated: N bytes cut]" (JSON: "truncated_bytes":N). Warn and error
 * records, and every record scripts write, go through a rate limit (a token
 * bucket, MW_LOG_RATE_PER_S a second, bursts of MW_LOG_RATE_BURST); the first
 * record written after some were refused is preceded by a warn record
 * "N log records suppressed". */
#ifndef MW_LOG_H
#define MW_LOG_H

#include <stdarg.h>
#include <stddef.h>

#define MW_LOG_RATE_PER_S 100
#define MW_LOG_RATE_BURST 200

typedef enum mw_log_level {
  MW_LOG_DEBUG = 0,
  MW_LOG_INFO = 1,
  MW_LOG_WARN = 2,
  MW_LOG_ERROR = 3,
} mw_log_level;

/* fd defaults to 2 (stderr), level to info, format to text. */
void mw_log_configure(mw_log_level level, int json, int fd);
int mw_log_enabled(mw_log_level level);
/* Parses "debug"/"info"/"warn"/"error"; returns -1 when unknown. */
int mw_log_level_parse(const char *s);

void mw_log(mw_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A record with extra fields: keys[i] = vals[i], for i < n. In text format
 * they follow the message as key=value; in JSON they are string members. */
void mw_log_fields(mw_log_level level, const char *msg, int n,
                   const char *const *keys, const char *const *vals);

/* The same with explicit lengths for the message and the values (which may
 * hold any bytes: JSON output escapes them and replaces invalid UTF-8 with
 * U+FFFD, text output escapes them as \xNN). vlens may be NULL for
 * NUL-terminated values. */
void mw_log_record(mw_log_level level, const char *msg, size_t msg_len, int n,
                   const char *const *keys, const char *const *vals,
                   const size_t *vlens);

/* The same for a record a script wrote (print, mw.log): rate-limited at
 * every level. */
void mw_log_script(mw_log_level level, const char *msg, size_t msg_len, int n,
                   const char *const *keys, const char *const *vals,
                   const size_t *vlens);

/* Sets the rate limit (records per second, burst size) and resets it. */
void mw_log_set_rate(double per_second, double burst);

#endif
