/* The stub registry (mw_stubreg.h). */
#include "shared/mw_stubreg.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/mw_buf.h"

typedef struct added {
  char id[MW_STUBREG_ID_MAX];
  char *json; /* owned */
  size_t len;
  uint64_t serial; /* which add this was: a stub replaced or added again is a new one */
} added;

typedef struct entry {
  char *service, *method, *stub, *request; /* owned */
  size_t request_len;
  int code;
  double time; /* seconds since the epoch */
} entry;

typedef struct count {
  char *service, *method; /* owned */
  uint64_t n;
} count;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t version;
static uint64_t serials; /* adds so far */
static added *stubs;  /* owned, n_stubs used of cap_stubs */
static size_t n_stubs, cap_stubs;
static entry history[MW_STUBREG_HISTORY];
static size_t hist_next, hist_n; /* ring: next slot, entries held */
static count *counts;            /* owned */
static size_t n_counts, cap_counts;

uint64_t mw_stubreg_version(void) { return atomic_load_explicit(&version, memory_order_acquire); }

static void bump(void) { atomic_fetch_add_explicit(&version, 1, memory_order_release); }

/* A random UUID v4 from /dev/urandom (rand() as a last resort: ids need to
 * be unique, not secret). */
static void make_uuid(char *out) {
  unsigned char r[16];
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  ssize_t got = fd >= 0 ? read(fd, r, sizeof r) : -1;
  if (fd >= 0) close(fd);
  if (got != (ssize_t)sizeof r)
    for (size_t i = 0; i < sizeof r; i++) r[i] = (unsigned char)rand();
  r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
  r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
  snprintf(out, MW_STUBREG_ID_MAX,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0], r[1],
           r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
           r[15]);
}

int mw_stubreg_add(const char *json, size_t len, const char *id, char *id_out,
                   const char **why) {
  char use[MW_STUBREG_ID_MAX];
  if (id && *id) {
    if (strlen(id) >= MW_STUBREG_ID_MAX) {
      *why = "an id is at most 63 bytes";
      return -1;
    }
    strcpy(use, id);
  } else {
    make_uuid(use);
  }
  char *copy = malloc(len + 1);
  if (!copy) {
    *why = "out of memory";
    return -1;
  }
  memcpy(copy, json, len);
  copy[len] = 0;
  pthread_mutex_lock(&mu);
  size_t i = 0;
  while (i < n_stubs && strcmp(stubs[i].id, use) != 0) i++;
  if (i == n_stubs) {
    if (n_stubs >= MW_STUBREG_MAX_STUBS) {
      pthread_mutex_unlock(&mu);
      free(copy);
      *why = "too many stubs (at most 10000 added at run time)";
      return -1;
    }
    if (n_stubs == cap_stubs) {
      size_t cap = cap_stubs ? 2 * cap_stubs : 16;
      added *grown = realloc(stubs, cap * sizeof *grown);
      if (!grown) {
        pthread_mutex_unlock(&mu);
        free(copy);
        *why = "out of memory";
        return -1;
      }
      stubs = grown;
      cap_stubs = cap;
    }
    n_stubs++;
    strcpy(stubs[i].id, use);
  } else {
    free(stubs[i].json);
  }
  stubs[i].json = copy;
  stubs[i].len = len;
  stubs[i].serial = ++serials;
  bump();
  pthread_mutex_unlock(&mu);
  strcpy(id_out, use);
  return 0;
}

int mw_stubreg_delete(const char *id, size_t len) {
  int found = 0;
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < n_stubs; i++) {
    if (strlen(stubs[i].id) != len || memcmp(stubs[i].id, id, len) != 0) continue;
    free(stubs[i].json);
    memmove(&stubs[i], &stubs[i + 1], (n_stubs - i - 1) * sizeof *stubs);
    n_stubs--;
    found = 1;
    bump();
    break;
  }
  pthread_mutex_unlock(&mu);
  return found;
}

void mw_stubreg_clear(void) {
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < n_stubs; i++) free(stubs[i].json);
  n_stubs = 0;
  bump();
  pthread_mutex_unlock(&mu);
}

uint64_t mw_stubreg_each(void (*fn)(void *ud, const char *id, const char *json, size_t len,
                                    uint64_t serial),
                         void *ud) {
  pthread_mutex_lock(&mu);
  uint64_t v = mw_stubreg_version();
  for (size_t i = 0; i < n_stubs; i++)
    fn(ud, stubs[i].id, stubs[i].json, stubs[i].len, stubs[i].serial);
  pthread_mutex_unlock(&mu);
  return v;
}

/* --- history ----------------------------------------------------------------- */

static void entry_free(entry *e) {
  free(e->service);
  free(e->method);
  free(e->stub);
  free(e->request);
  memset(e, 0, sizeof *e);
}

/* Whether name (a full service name) is service, given full or by its last
 * component. */
static int same_service(const char *name, const char *service) {
  if (strcmp(name, service) == 0) return 1;
  const char *dot = strrchr(name, '.');
  return dot && strcmp(dot + 1, service) == 0;
}

void mw_stubreg_record(const char *service, const char *method, const char *stub,
                       const char *request_json, size_t len, int code) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  entry e = {strdup(service), strdup(method), strdup(stub ? stub : ""), malloc(len + 1), len,
             code, (double)ts.tv_sec + ts.tv_nsec / 1e9};
  if (!e.service || !e.method || !e.stub || !e.request) {
    entry_free(&e); /* a call is lost from the history, never the call itself */
    return;
  }
  memcpy(e.request, request_json, len);
  e.request[len] = 0;
  pthread_mutex_lock(&mu);
  entry_free(&history[hist_next]);
  history[hist_next] = e;
  hist_next = (hist_next + 1) % MW_STUBREG_HISTORY;
  if (hist_n < MW_STUBREG_HISTORY) hist_n++;
  size_t i = 0;
  while (i < n_counts && !(strcmp(counts[i].service, service) == 0 &&
                           strcmp(counts[i].method, method) == 0))
    i++;
  if (i == n_counts && n_counts == cap_counts) {
    size_t cap = cap_counts ? 2 * cap_counts : 16;
    count *grown = realloc(counts, cap * sizeof *grown);
    if (grown) {
      counts = grown;
      cap_counts = cap;
    }
  }
  if (i == n_counts && n_counts < cap_counts) {
    counts[i].service = strdup(service);
    counts[i].method = strdup(method);
    counts[i].n = 0;
    if (counts[i].service && counts[i].method) {
      n_counts++;
    } else {
      free(counts[i].service);
      free(counts[i].method);
    }
  }
  if (i < n_counts) counts[i].n++;
  pthread_mutex_unlock(&mu);
}

uint64_t mw_stubreg_count(const char *service, const char *method) {
  uint64_t n = 0;
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < n_counts; i++)
    if (same_service(counts[i].service, service) && strcmp(counts[i].method, method) == 0)
      n += counts[i].n;
  pthread_mutex_unlock(&mu);
  return n;
}

void mw_stubreg_clear_history(void) {
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < MW_STUBREG_HISTORY; i++) entry_free(&history[i]);
  hist_next = hist_n = 0;
  for (size_t i = 0; i < n_counts; i++) {
    free(counts[i].service);
    free(counts[i].method);
  }
  n_counts = 0;
  pthread_mutex_unlock(&mu);
}

char *mw_stubreg_stubs_json(size_t *len) {
  mw_buf b = {0};
  mw_buf_puts(&b, "[");
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < n_stubs; i++) {
    mw_buf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
    mw_buf_json(&b, stubs[i].id, strlen(stubs[i].id));
    mw_buf_puts(&b, ",\"stub\":");
    mw_buf_put(&b, stubs[i].json, stubs[i].len);
    mw_buf_puts(&b, "}");
  }
  pthread_mutex_unlock(&mu);
  mw_buf_puts(&b, "]\n");
  return mw_buf_take(&b, len);
}

char *mw_stubreg_stub_json(const char *id, size_t idlen, size_t *len) {
  mw_buf b = {0};
  int found = 0;
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < n_stubs && !found; i++) {
    if (strlen(stubs[i].id) != idlen || memcmp(stubs[i].id, id, idlen) != 0) continue;
    mw_buf_puts(&b, "{\"id\":");
    mw_buf_json(&b, stubs[i].id, strlen(stubs[i].id));
    mw_buf_puts(&b, ",\"stub\":");
    mw_buf_put(&b, stubs[i].json, stubs[i].len);
    mw_buf_puts(&b, "}\n");
    found = 1;
  }
  pthread_mutex_unlock(&mu);
  if (!found) {
    *len = 0;
    return NULL;
  }
  char *out = mw_buf_take(&b, len);
  if (!out) *len = 1;
  return out;
}

char *mw_stubreg_history_json(size_t *len) {
  mw_buf b = {0};
  mw_buf_puts(&b, "[");
  pthread_mutex_lock(&mu);
  size_t first = (hist_next + MW_STUBREG_HISTORY - hist_n) % MW_STUBREG_HISTORY;
  for (size_t k = 0; k < hist_n; k++) {
    const entry *e = &history[(first + k) % MW_STUBREG_HISTORY];
    mw_buf_puts(&b, k ? ",{\"service\":" : "{\"service\":");
    mw_buf_json(&b, e->service, strlen(e->service));
    mw_buf_puts(&b, ",\"method\":");
    mw_buf_json(&b, e->method, strlen(e->method));
    mw_buf_puts(&b, ",\"stub\":");
    if (*e->stub) mw_buf_json(&b, e->stub, strlen(e->stub));
    else mw_buf_puts(&b, "null");
    mw_buf_puts(&b, ",\"request\":");
    if (e->request_len) mw_buf_put(&b, e->request, e->request_len);
    else mw_buf_puts(&b, "null");
    mw_buf_printf(&b, ",\"code\":%d,\"time\":%.6f}", e->code, e->time);
  }
  pthread_mutex_unlock(&mu);
  mw_buf_puts(&b, "]\n");
  return mw_buf_take(&b, len);
}

void mw_stubreg_free(void) {
  mw_stubreg_clear();
  mw_stubreg_clear_history();
  pthread_mutex_lock(&mu);
  free(stubs);
  stubs = NULL;
  cap_stubs = 0;
  free(counts);
  counts = NULL;
  cap_counts = 0;
  pthread_mutex_unlock(&mu);
}
