/* The metrics registry: families (counter, gauge, histogram) with label
 * names, their series (one per combination of label values), and the
 * Prometheus text rendering (format 0.0.4).
 *
 * Sharding. Counters and histograms live in per-shard slot pages: shard i
 * belongs to worker thread i, which alone writes its slots, with a plain
 * load and store (relaxed atomics: no lock, no read-modify-write, and each
 * shard's pages are separate cache-line-aligned allocations, so workers
 * never share a line). Any other thread (a script loading on the main
 * thread, the admin thread) writes the shared shard with atomic adds. A
 * scrape sums the shards. Gauges are one shared value per series (set has
 * no meaning per shard), updated atomically: they are for rare updates.
 *
 * One registry runs per process (mw_metrics_current); with none (admin
 * off) every caller skips its counting after one NULL check.
 *
 * Thread safety: declaring families, creating series and rendering take
 * the registry's lock; updating a series takes none. Series and families
 * live as long as the registry (they are never removed, so a reload keeps
 * them). */
#ifndef MW_METRICS_H
#define MW_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mw_buf.h"

typedef enum mw_met_type {
  MW_MET_COUNTER = 0,
  MW_MET_GAUGE = 1,
  MW_MET_HISTOGRAM = 2,
} mw_met_type;

typedef struct mw_metrics mw_metrics;
typedef struct mw_met_family mw_met_family;

#define MW_MET_MAX_LABELS 16
#define MW_MET_MAX_BUCKETS 60

/* One series. The fields are the registry's; callers only pass it to the
 * update functions. */
typedef struct mw_met_series {
  mw_met_family *family;
  size_t slot;              /* first slot in every shard (counter, histogram) */
  _Atomic uint64_t gauge;   /* a gauge's value (double bits) */
  char **values;            /* label values, owned */
  size_t *lens;
  struct mw_met_series *next, *hnext; /* creation order; hash chain */
} mw_met_series;

/* A registry of shards + 1 shards (the last is the shared one). Series per
 * family at most max_series (0: 10000); past it new combinations are
 * dropped with one warning in the log. NULL when out of memory. */
mw_metrics *mw_metrics_new(int shards, size_t max_series);
/* Frees everything; no thread may update a series any more. NULL ok. */
void mw_metrics_free(mw_metrics *r);

/* The process's registry (NULL: metrics are off), set before the workers
 * start and cleared after they stopped. */
extern mw_metrics *mw_metrics_g;
static inline mw_metrics *mw_metrics_current(void) { return mw_metrics_g; }
void mw_metrics_set_current(mw_metrics *r);
/* The calling thread's shard from now on (a worker's id); -1 or a number
 * past the registry's shards: the shared shard. */
void mw_metrics_thread_shard(int shard);

/* Declares a family, or returns the one already declared under name when
 * it has the same type, label names and buckets (help may differ: the
 * first one stays). buckets (histograms only; NULL: DefBuckets) must be
 * increasing and finite. Returns NULL with a message in err for a bad
 * name, a bad label name, bad buckets or a different shape. */
mw_met_family *mw_metrics_family(mw_metrics *r, mw_met_type type, const char *name,
                                 const char *help, const char *const *labels,
                                 size_t nlabels, const double *buckets,
                                 size_t nbuckets, char *err, size_t errlen);
/* The family's shape. */
mw_met_type mw_met_family_type(const mw_met_family *f);
size_t mw_met_family_nlabels(const mw_met_family *f);
const char *mw_met_family_label(const mw_met_family *f, size_t i);

/* The series for these label values (nlabels of them; lens may be NULL for
 * NUL-terminated values), created on first use. NULL when the family is at
 * its cap (logged once) or out of memory. */
mw_met_series *mw_met_series_get(mw_met_family *f, const char *const *values,
                                 const size_t *lens);

/* Updates, from any thread (see the sharding rule above). */
void mw_met_add(mw_met_series *s, double v);        /* counter, gauge */
void mw_met_set(mw_met_series *s, double v);        /* gauge */
void mw_met_observe(mw_met_series *s, double v);    /* histogram */
/* What a counter or gauge holds now (summed over shards). */
double mw_met_value(const mw_met_series *s);

/* Appends every family in the text format 0.0.4, in declaration order. */
void mw_metrics_render(mw_metrics *r, mw_buf *out);
/* For values computed at scrape time: "# HELP"/"# TYPE" lines, then one
 * sample per call (labels: "k", "v" pairs, n pairs). */
void mw_metrics_render_header(mw_buf *out, const char *name, const char *help,
                              const char *type);
void mw_metrics_render_sample(mw_buf *out, const char *name,
                              const char *const *labels, size_t n, double v);

/* go-client's DefBuckets: .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10. */
extern const double mw_met_default_buckets[11];

#endif
