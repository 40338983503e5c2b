#include "base/mw_status.h"

static const char *const names[MW_STATUS_COUNT] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *mw_status_name(int code) {
  return (code >= 0 && code < MW_STATUS_COUNT) ? names[code] : "UNKNOWN";
}

int mw_status_parse(const char *name) {
  for (int i = 0; i < MW_STATUS_COUNT; i++) {
    const char *a = names[i], *b = name;
    while (*a && *b && (*a == *b || *a == (*b & ~0x20))) a++, b++;
    if (!*a && !*b) return i;
  }
  return -1;
}
