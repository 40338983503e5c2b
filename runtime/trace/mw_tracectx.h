/* W3C Trace Context (Level 1, with Level 2's random trace-id bits used for
 * sampling) and the ids of spans: parsing traceparent and tracestate,
 * making ids, the sampling decision. Pure functions over caller-owned
 * buffers; no allocation. */
#ifndef MW_TRACECTX_H
#define MW_TRACECTX_H

#include <stddef.h>
#include <stdint.h>

typedef struct mw_traceparent {
  uint8_t trace_id[16];
  uint8_t parent_id[8];
  uint8_t flags; /* bit 0: sampled */
} mw_traceparent;

/* Parses a traceparent header value (not NUL-terminated: s, len). Returns 0
 * and fills out when it is valid: version 00 exactly "00-<32 hex>-<16 hex>-
 * <2 hex>"; a later version (not ff) its first 55 characters in that form,
 * followed by nothing or by '-' (the spec's forward compatibility). Hex is
 * lowercase only; all-zero trace or parent ids are invalid. -1 otherwise. */
int mw_traceparent_parse(const char *s, size_t len, mw_traceparent *out);

/* Whether a tracestate value is kept: at most 512 characters and at most
 * 32 list members, printable ASCII only. The value is kept verbatim. */
int mw_tracestate_ok(const char *s, size_t len);

/* Fills id with n random bytes, never all zero: a per-thread xoshiro256**
 * generator seeded from getrandom(2) on the thread's first use. */
void mw_trace_random(uint8_t *id, size_t n);

/* Lowercase hex of n bytes into out (2n characters and a NUL). */
void mw_trace_hex(const uint8_t *id, size_t n, char *out);

/* Whether a new trace with this id is sampled at ratio (0..1): decided on
 * the id's last 7 bytes (the random part per Trace Context Level 2), so
 * every process with the same ratio decides the same. */
int mw_trace_sample(const uint8_t trace_id[16], double ratio);

#endif
