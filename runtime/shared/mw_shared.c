/* The registry of shared dicts and the contract's helpers: see
 * mw_shared.h. */
#include "shared/mw_shared.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/mw_redis.h"
#include "shared/mw_shdict.h"

const char *mw_shared_strerror(mw_shrc rc) {
  switch (rc) {
  case MW_SH_OK: return "ok";
  case MW_SH_NOT_FOUND: return "not found";
  case MW_SH_EXISTS: return "exists";
  case MW_SH_NO_MEMORY: return "no memory";
  case MW_SH_NOT_NUMBER: return "not a number";
  case MW_SH_NOT_LIST: return "value not a list";
  case MW_SH_IS_LIST: return "value is a list";
  case MW_SH_EMPTY_KEY: return "empty key";
  case MW_SH_LONG_KEY: return "key too long";
  case MW_SH_BAD_VALUE: return "bad value type";
  case MW_SH_BACKEND: return "backend error";
  }
  return "unknown error";
}

int mw_shared_next_key(const mw_shbuf *buf, size_t *off, const char **key, size_t *len) {
  if (!buf->p || *off + sizeof(uint32_t) > buf->cap) return 0;
  uint32_t k;
  memcpy(&k, buf->p + *off, sizeof k);
  if (k == 0) return 0;
  *key = buf->p + *off + sizeof k;
  *len = k;
  *off += sizeof k + k;
  return 1;
}

mw_shrc mw_shared_exec(const mw_shared_dict *d, const mw_shreq *req, mw_shres *res,
                       mw_shbuf *buf) {
  return d->backend->exec(d->self, req, res, buf);
}

/* The registry: an array of pointers, so that a dict's record never moves
 * when the array grows (states keep pointers to records). Lookups take
 * the lock too: they happen once per name and Lua state, not per
 * operation (the binding caches the dict). */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static mw_shared_dict **g_dicts; /* owned, g_n long */
static size_t g_n;

static mw_shared_dict *find_locked(const char *name) {
  for (size_t i = 0; i < g_n; i++)
    if (strcmp(g_dicts[i]->name, name) == 0) return g_dicts[i];
  return NULL;
}

/* A dict's Redis URL and prefix, kept to tell a reload that changes them
 * (the registry's record has no room for them in its public part). */
typedef struct dict_rec {
  mw_shared_dict d; /* first: the registry hands out &rec->d */
  char *redis, *prefix;
} dict_rec;

static void dict_free(mw_shared_dict *d) {
  if (!d) return;
  if (d->backend) d->backend->free(d->self);
  free((char *)d->name);
  dict_rec *r = (dict_rec *)d;
  free(r->redis);
  free(r->prefix);
  free(r);
}

static int make_dict(const mw_shared_spec *s, char *err, size_t errlen) {
  snprintf(err, errlen, "out of memory");
  mw_shared_dict **grown = realloc(g_dicts, (g_n + 1) * sizeof *grown);
  if (!grown) return -1;
  g_dicts = grown;
  dict_rec *d = calloc(1, sizeof *d);
  char *name = strdup(s->name);
  char prefix[128];
  snprintf(prefix, sizeof prefix, "%s:", s->name);
  if (s->redis && d) {
    d->redis = strdup(s->redis);
    d->prefix = strdup(s->prefix ? s->prefix : prefix);
  }
  if (!d || !name || (s->redis && (!d->redis || !d->prefix))) goto fail;
  if (s->redis) {
    int64_t t = s->timeout_ms > 0 ? s->timeout_ms : 1000;
    mw_redis *r = mw_redis_new(s->redis, d->prefix, t, err, errlen);
    if (!r) goto fail;
    d->d = (mw_shared_dict){.name = name, .timeout_s = (double)t / 1000,
                            .backend = &mw_redis_backend, .self = r};
  } else {
    mw_shdict *store = mw_shdict_new(s->size);
    if (!store) goto fail;
    d->d = (mw_shared_dict){.name = name, .size = s->size, .backend = &mw_shdict_backend,
                            .self = store};
  }
  g_dicts[g_n++] = &d->d;
  return 0;
fail:
  if (d) {
    free(d->redis);
    free(d->prefix);
  }
  free(d);
  free(name);
  return -1;
}

static void human_size(char *out, size_t cap, size_t n) {
  if (n % (1u << 20) == 0) snprintf(out, cap, "%zuMiB", n >> 20);
  else if (n % (1u << 10) == 0) snprintf(out, cap, "%zuKiB", n >> 10);
  else snprintf(out, cap, "%zu bytes", n);
}

/* A store for messages: "memory", or its URL without the password a
 * redis://:PASSWORD@HOST URL may carry (logs are read by more people). */
static void redacted(char *out, size_t cap, const char *url) {
  if (!url) {
    snprintf(out, cap, "memory");
    return;
  }
  const char *at = strchr(url, '@');
  if (at && strncmp(url, "redis://", 8) == 0) snprintf(out, cap, "redis://***@%s", at + 1);
  else snprintf(out, cap, "%s", url);
}

int mw_shared_configure(const mw_shared_spec *specs, size_t n, mw_diag *warnings,
                        mw_diag *errors) {
  int rc = 0;
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < n; i++) {
    mw_shared_dict *d = find_locked(specs[i].name);
    if (d) {
      const dict_rec *r = (const dict_rec *)d;
      const char *url = specs[i].redis;
      if (warnings && (!url != !r->redis || (url && strcmp(url, r->redis) != 0))) {
        char was[160], want[160];
        redacted(was, sizeof was, r->redis);
        redacted(want, sizeof want, url);
        mw_diag_add(warnings, "shared dict '%s' keeps its store (%s; the config asks for %s: "
                              "a store changes at the next start)",
                    d->name, was, want);
        continue;
      }
      if (!url && d->size != specs[i].size && warnings) {
        char was[32], want[32];
        human_size(was, sizeof was, d->size);
        human_size(want, sizeof want, specs[i].size);
        mw_diag_add(warnings, "shared dict '%s' keeps its size of %s (the config asks for %s: "
                              "a size changes at the next start)",
                    d->name, was, want);
      }
      continue;
    }
    char why[256];
    if (make_dict(&specs[i], why, sizeof why) != 0) {
      if (errors) mw_diag_add(errors, "shared dict '%s': %s", specs[i].name, why);
      rc = -1;
    }
  }
  for (size_t j = 0; j < g_n && warnings; j++) {
    int named = 0;
    for (size_t i = 0; i < n && !named; i++) named = strcmp(specs[i].name, g_dicts[j]->name) == 0;
    if (!named)
      mw_diag_add(warnings, "shared dict '%s' is no longer in the config: kept, with its "
                            "contents, until the next start",
                  g_dicts[j]->name);
  }
  pthread_mutex_unlock(&g_lock);
  return rc;
}

const mw_shared_dict *mw_shared_find(const char *name) {
  pthread_mutex_lock(&g_lock);
  mw_shared_dict *d = find_locked(name);
  pthread_mutex_unlock(&g_lock);
  return d;
}

void mw_shared_names(char *out, size_t cap) {
  if (!cap) return;
  out[0] = '\0';
  size_t o = 0;
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < g_n && o < cap; i++) {
    int w = snprintf(out + o, cap - o, "%s%s", i ? ", " : "", g_dicts[i]->name);
    if (w < 0) break;
    o += (size_t)w;
  }
  pthread_mutex_unlock(&g_lock);
}

size_t mw_shared_count(void) {
  pthread_mutex_lock(&g_lock);
  size_t n = g_n;
  pthread_mutex_unlock(&g_lock);
  return n;
}

void mw_shared_free(void) {
  pthread_mutex_lock(&g_lock);
  for (size_t i = 0; i < g_n; i++) dict_free(g_dicts[i]);
  free(g_dicts);
  g_dicts = NULL;
  g_n = 0;
  pthread_mutex_unlock(&g_lock);
}
