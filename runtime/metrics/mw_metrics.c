/* The registry (mw_metrics.h): families in a list under one lock, series
 * in a per-family hash, slots in per-shard pages allocated for every shard
 * when a series first needs them. */
#include "metrics/mw_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mw_log.h"
#include "metrics/mw_promtext.h"

#define PAGE_SLOTS 512 /* 4 KiB of slots */
#define MAX_PAGES 4096 /* 2 M slots: far past any series cap in practice */
#define NBUCKETS_HASH 64

const double mw_met_default_buckets[11] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

mw_metrics *mw_metrics_g;
static _Thread_local int tl_shard = -1;

typedef struct shard {
  _Atomic(_Atomic uint64_t *) pages[MAX_PAGES];
} shard;

struct mw_met_family {
  mw_metrics *r;
  mw_met_type type;
  char *name, *help;
  char *labels[MW_MET_MAX_LABELS];
  size_t nlabels;
  double buckets[MW_MET_MAX_BUCKETS];
  size_t nbuckets;
  size_t nslots; /* per series */
  mw_met_series *first, **last;
  mw_met_series *hash[NBUCKETS_HASH];
  size_t nseries;
  int warned;
  mw_met_family *next;
};

struct mw_metrics {
  pthread_mutex_t mu;
  int nshards; /* workers + the shared one */
  shard **shards;
  size_t next_slot;
  size_t max_series;
  mw_met_family *families, **last;
};

void mw_metrics_set_current(mw_metrics *r) { mw_metrics_g = r; }
void mw_metrics_thread_shard(int s) { tl_shard = s; }

mw_metrics *mw_metrics_new(int shards, size_t max_series) {
  mw_metrics *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  pthread_mutex_init(&r->mu, NULL);
  r->nshards = (shards > 0 ? shards : 0) + 1;
  r->max_series = max_series ? max_series : 10000;
  r->last = &r->families;
  r->shards = calloc((size_t)r->nshards, sizeof *r->shards);
  if (!r->shards) goto fail;
  for (int i = 0; i < r->nshards; i++)
    if (!(r->shards[i] = calloc(1, sizeof(shard)))) goto fail;
  return r;
fail:
  mw_metrics_free(r);
  return NULL;
}

static void series_free(mw_met_series *s, size_t n) {
  /* Also for a series whose arrays could not be allocated. */
  for (size_t i = 0; s->values && i < n; i++) free(s->values[i]);
  free(s->values);
  free(s->lens);
  free(s);
}

void mw_metrics_free(mw_metrics *r) {
  if (!r) return;
  if (mw_metrics_g == r) mw_metrics_g = NULL;
  mw_met_family *f = r->families;
  while (f) {
    mw_met_family *nf = f->next;
    mw_met_series *s = f->first;
    while (s) {
      mw_met_series *ns = s->next;
      series_free(s, f->nlabels);
      s = ns;
    }
    for (size_t i = 0; i < f->nlabels; i++) free(f->labels[i]);
    free(f->name);
    free(f->help);
    free(f);
    f = nf;
  }
  if (r->shards) {
    for (int i = 0; i < r->nshards; i++) {
      if (!r->shards[i]) continue;
      for (size_t p = 0; p < MAX_PAGES; p++) free((void *)atomic_load(&r->shards[i]->pages[p]));
      free(r->shards[i]);
    }
    free(r->shards);
  }
  pthread_mutex_destroy(&r->mu);
  free(r);
}

/* --- names ---------------------------------------------------------------- */

static int name_ok(const char *s, int colon) {
  if (!s || !*s) return 0;
  for (const char *p = s; *p; p++) {
    char c = *p;
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
    if (!alpha && !(p != s && c >= '0' && c <= '9')) return 0;
  }
  return 1;
}

static const char *type_name(mw_met_type t) {
  return t == MW_MET_COUNTER ? "counter" : t == MW_MET_GAUGE ? "gauge" : "histogram";
}

mw_met_type mw_met_family_type(const mw_met_family *f) { return f->type; }
size_t mw_met_family_nlabels(const mw_met_family *f) { return f->nlabels; }
const char *mw_met_family_label(const mw_met_family *f, size_t i) { return f->labels[i]; }

static int same_shape(const mw_met_family *f, mw_met_type type, const char *const *labels,
                      size_t nlabels, const double *b, size_t nb) {
  if (f->type != type || f->nlabels != nlabels) return 0;
  for (size_t i = 0; i < nlabels; i++)
    if (strcmp(f->labels[i], labels[i]) != 0) return 0;
  if (type != MW_MET_HISTOGRAM) return 1;
  if (f->nbuckets != nb) return 0;
  for (size_t i = 0; i < nb; i++)
    if (f->buckets[i] != b[i]) return 0;
  return 1;
}

mw_met_family *mw_metrics_family(mw_metrics *r, mw_met_type type, const char *name,
                                 const char *help, const char *const *labels,
                                 size_t nlabels, const double *buckets,
                                 size_t nbuckets, char *err, size_t errlen) {
  if (!name_ok(name, 1) || strncmp(name, "__", 2) == 0) {
    snprintf(err, errlen, "bad metric name '%s' (want [a-zA-Z_:][a-zA-Z0-9_:]*)", name ? name : "");
    return NULL;
  }
  if (nlabels > MW_MET_MAX_LABELS) {
    snprintf(err, errlen, "%s: at most %d labels", name, MW_MET_MAX_LABELS);
    return NULL;
  }
  for (size_t i = 0; i < nlabels; i++) {
    if (!name_ok(labels[i], 0) || strncmp(labels[i], "__", 2) == 0 ||
        (type == MW_MET_HISTOGRAM && strcmp(labels[i], "le") == 0)) {
      snprintf(err, errlen, "%s: bad label name '%s'", name, labels[i] ? labels[i] : "");
      return NULL;
    }
    for (size_t j = 0; j < i; j++)
      if (strcmp(labels[i], labels[j]) == 0) {
        snprintf(err, errlen, "%s: label '%s' twice", name, labels[i]);
        return NULL;
      }
  }
  if (type == MW_MET_HISTOGRAM) {
    if (!buckets) {
      buckets = mw_met_default_buckets;
      nbuckets = sizeof mw_met_default_buckets / sizeof mw_met_default_buckets[0];
    }
    if (nbuckets == 0 || nbuckets > MW_MET_MAX_BUCKETS) {
      snprintf(err, errlen, "%s: between 1 and %d buckets", name, MW_MET_MAX_BUCKETS);
      return NULL;
    }
    for (size_t i = 0; i < nbuckets; i++)
      if (!isfinite(buckets[i]) || (i && buckets[i] <= buckets[i - 1])) {
        snprintf(err, errlen, "%s: buckets must be finite and increasing", name);
        return NULL;
      }
  } else {
    nbuckets = 0;
  }
  pthread_mutex_lock(&r->mu);
  for (mw_met_family *f = r->families; f; f = f->next) {
    if (strcmp(f->name, name) != 0) continue;
    pthread_mutex_unlock(&r->mu);
    if (same_shape(f, type, labels, nlabels, buckets, nbuckets)) return f;
    snprintf(err, errlen, "metric %s is already declared with another type, labels or buckets",
             name);
    return NULL;
  }
  mw_met_family *f = calloc(1, sizeof *f);
  if (!f) goto oom;
  f->r = r;
  f->type = type;
  f->name = strdup(name);
  f->help = strdup(help ? help : "");
  if (!f->name || !f->help) goto oom_f;
  for (size_t i = 0; i < nlabels; i++) {
    if (!(f->labels[i] = strdup(labels[i]))) goto oom_f;
    f->nlabels = i + 1;
  }
  for (size_t i = 0; i < nbuckets; i++) f->buckets[i] = buckets[i];
  f->nbuckets = nbuckets;
  /* histogram: one count per bucket and +Inf, then the sum */
  f->nslots = type == MW_MET_HISTOGRAM ? nbuckets + 2 : 1;
  f->last = &f->first;
  *r->last = f;
  r->last = &f->next;
  pthread_mutex_unlock(&r->mu);
  return f;
oom_f:
  for (size_t i = 0; i < f->nlabels; i++) free(f->labels[i]);
  free(f->name);
  free(f->help);
  free(f);
oom:
  pthread_mutex_unlock(&r->mu);
  snprintf(err, errlen, "out of memory");
  return NULL;
}

/* --- series --------------------------------------------------------------- */

static unsigned long hash_values(const char *const *v, const size_t *lens, size_t n) {
  unsigned long h = 1469598103934665603UL;
  for (size_t i = 0; i < n; i++) {
    size_t len = lens[i];
    for (size_t j = 0; j < len; j++) h = (h ^ (unsigned char)v[i][j]) * 1099511628211UL;
    h = (h ^ 0xff) * 1099511628211UL;
  }
  return h;
}

/* Slots for n more values in every shard, contiguous in one page; under
 * the lock. Returns the first, or (size_t)-1. */
static size_t alloc_slots(mw_metrics *r, size_t n) {
  size_t at = r->next_slot;
  if (at % PAGE_SLOTS + n > PAGE_SLOTS) at = (at / PAGE_SLOTS + 1) * PAGE_SLOTS;
  size_t page = at / PAGE_SLOTS;
  if (page >= MAX_PAGES) return (size_t)-1;
  for (int i = 0; i < r->nshards; i++) {
    if (atomic_load_explicit(&r->shards[i]->pages[page], memory_order_relaxed)) continue;
    _Atomic uint64_t *p = aligned_alloc(64, PAGE_SLOTS * sizeof *p);
    if (!p) return (size_t)-1;
    memset((void *)p, 0, PAGE_SLOTS * sizeof *p);
    atomic_store_explicit(&r->shards[i]->pages[page], p, memory_order_release);
  }
  r->next_slot = at + n;
  return at;
}

mw_met_series *mw_met_series_get(mw_met_family *f, const char *const *values,
                                 const size_t *lens_in) {
  size_t lens[MW_MET_MAX_LABELS];
  for (size_t i = 0; i < f->nlabels; i++) lens[i] = lens_in ? lens_in[i] : strlen(values[i]);
  unsigned long h = hash_values(values, lens, f->nlabels);
  mw_metrics *r = f->r;
  pthread_mutex_lock(&r->mu);
  mw_met_series *s = f->hash[h % NBUCKETS_HASH];
  for (; s; s = s->hnext) {
    size_t i = 0;
    for (; i < f->nlabels; i++)
      if (s->lens[i] != lens[i] || memcmp(s->values[i], values[i], lens[i]) != 0) break;
    if (i == f->nlabels) break;
  }
  if (s) goto out;
  if (f->nseries >= r->max_series) {
    if (!f->warned) {
      f->warned = 1;
      mw_log(MW_LOG_WARN, "metric %s has %zu series, its cap: new label combinations are "
                          "dropped", f->name, f->nseries);
    }
    goto out;
  }
  s = calloc(1, sizeof *s);
  if (!s) goto out;
  s->family = f;
  s->values = calloc(f->nlabels + 1, sizeof *s->values);
  s->lens = calloc(f->nlabels + 1, sizeof *s->lens);
  if (!s->values || !s->lens) goto fail;
  for (size_t i = 0; i < f->nlabels; i++) {
    if (!(s->values[i] = malloc(lens[i] + 1))) goto fail;
    memcpy(s->values[i], values[i], lens[i]);
    s->values[i][lens[i]] = 0;
    s->lens[i] = lens[i];
  }
  if (f->type != MW_MET_GAUGE) {
    s->slot = alloc_slots(r, f->nslots);
    if (s->slot == (size_t)-1) goto fail;
  }
  *f->last = s;
  f->last = &s->next;
  s->hnext = f->hash[h % NBUCKETS_HASH];
  f->hash[h % NBUCKETS_HASH] = s;
  f->nseries++;
  goto out;
fail:
  series_free(s, f->nlabels);
  s = NULL;
out:
  pthread_mutex_unlock(&r->mu);
  return s;
}

/* --- updates -------------------------------------------------------------- */

static inline double bits_d(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}
static inline uint64_t d_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static inline _Atomic uint64_t *slot_at(mw_metrics *r, int sh, size_t idx) {
  _Atomic uint64_t *p =
      atomic_load_explicit(&r->shards[sh]->pages[idx / PAGE_SLOTS], memory_order_acquire);
  return p + idx % PAGE_SLOTS;
}

static inline void atomic_add_d(_Atomic uint64_t *p, double v) {
  uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(p, &old, d_bits(bits_d(old) + v),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* Adds v to slot idx of the calling thread's shard. */
static inline void slot_add(mw_metrics *r, size_t idx, double v) {
  int sh = tl_shard;
  if (sh < 0 || sh >= r->nshards - 1) {
    atomic_add_d(slot_at(r, r->nshards - 1, idx), v);
    return;
  }
  /* This thread alone writes its shard: load and store, no RMW. */
  _Atomic uint64_t *p = slot_at(r, sh, idx);
  atomic_store_explicit(p, d_bits(bits_d(atomic_load_explicit(p, memory_order_relaxed)) + v),
                        memory_order_relaxed);
}

void mw_met_add(mw_met_series *s, double v) {
  if (!s) return;
  if (s->family->type == MW_MET_GAUGE) atomic_add_d(&s->gauge, v);
  else slot_add(s->family->r, s->slot, v);
}

void mw_met_set(mw_met_series *s, double v) {
  if (s && s->family->type == MW_MET_GAUGE) atomic_store(&s->gauge, d_bits(v));
}

void mw_met_observe(mw_met_series *s, double v) {
  if (!s || s->family->type != MW_MET_HISTOGRAM) return;
  const mw_met_family *f = s->family;
  size_t i = 0;
  while (i < f->nbuckets && v > f->buckets[i]) i++;
  slot_add(f->r, s->slot + i, 1);
  slot_add(f->r, s->slot + f->nbuckets + 1, v);
}

static double slot_sum(mw_metrics *r, size_t idx) {
  double t = 0;
  for (int i = 0; i < r->nshards; i++)
    t += bits_d(atomic_load_explicit(slot_at(r, i, idx), memory_order_relaxed));
  return t;
}

double mw_met_value(const mw_met_series *s) {
  if (s->family->type == MW_MET_GAUGE) return bits_d(atomic_load(&s->gauge));
  return slot_sum(s->family->r, s->slot);
}

/* --- rendering ------------------------------------------------------------ */

void mw_metrics_render_header(mw_buf *out, const char *name, const char *help,
                              const char *type) {
  mw_buf_printf(out, "# HELP %s ", name);
  mw_promtext_help(out, help);
  mw_buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

void mw_metrics_render_sample(mw_buf *out, const char *name, const char *const *labels,
                              size_t n, double v) {
  mw_buf_puts(out, name);
  for (size_t i = 0; i < n; i++) {
    mw_buf_puts(out, i ? "," : "{");
    mw_buf_printf(out, "%s=\"", labels[2 * i]);
    mw_promtext_label_value(out, labels[2 * i + 1], strlen(labels[2 * i + 1]));
    mw_buf_puts(out, "\"");
  }
  if (n) mw_buf_puts(out, "}");
  mw_buf_puts(out, " ");
  mw_promtext_value(out, v);
  mw_buf_puts(out, "\n");
}

/* name{labels[,le="x"]} */
static void series_name(mw_buf *out, const mw_met_family *f, const mw_met_series *s,
                        const char *suffix, const char *le) {
  mw_buf_puts(out, f->name);
  mw_buf_puts(out, suffix);
  if (!f->nlabels && !le) return;
  mw_buf_puts(out, "{");
  for (size_t i = 0; i < f->nlabels; i++) {
    mw_buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
    mw_promtext_label_value(out, s->values[i], s->lens[i]);
    mw_buf_puts(out, "\"");
  }
  if (le) mw_buf_printf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
  mw_buf_puts(out, "}");
}

void mw_metrics_render(mw_metrics *r, mw_buf *out) {
  pthread_mutex_lock(&r->mu);
  for (const mw_met_family *f = r->families; f; f = f->next) {
    mw_metrics_render_header(out, f->name, f->help, type_name(f->type));
    for (const mw_met_series *s = f->first; s; s = s->next) {
      if (f->type != MW_MET_HISTOGRAM) {
        series_name(out, f, s, "", NULL);
        mw_buf_puts(out, " ");
        mw_promtext_value(out, mw_met_value(s));
        mw_buf_puts(out, "\n");
        continue;
      }
      double cum = 0;
      for (size_t i = 0; i <= f->nbuckets; i++) {
        cum += slot_sum(r, s->slot + i);
        char le[40];
        if (i == f->nbuckets) {
          snprintf(le, sizeof le, "+Inf");
        } else {
          mw_buf tmp = {0};
          mw_promtext_value(&tmp, f->buckets[i]);
          snprintf(le, sizeof le, "%s", tmp.p ? tmp.p : "0");
          mw_buf_free(&tmp);
        }
        series_name(out, f, s, "_bucket", le);
        mw_buf_puts(out, " ");
        mw_promtext_value(out, cum);
        mw_buf_puts(out, "\n");
      }
      series_name(out, f, s, "_sum", NULL);
      mw_buf_puts(out, " ");
      mw_promtext_value(out, slot_sum(r, s->slot + f->nbuckets + 1));
      mw_buf_puts(out, "\n");
      series_name(out, f, s, "_count", NULL);
      mw_buf_puts(out, " ");
      mw_promtext_value(out, cum);
      mw_buf_puts(out, "\n");
    }
  }
  pthread_mutex_unlock(&r->mu);
}
