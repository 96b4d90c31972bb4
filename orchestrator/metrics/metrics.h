/*
 * metrics: counters, gauges and fixed-bucket histograms, in labelled families, rendered
 * in the Prometheus text exposition format 0.0.4 (what GET /metrics serves).
 *
 * A registry (sg_metrics_t) holds families (sg_metric_t: name, help, type, label names);
 * a family holds series (sg_series_t), one per combination of label values, created on
 * first use. Updating a series is lock-free (atomics); finding one is lock-free once it
 * exists; only creating one takes the family's lock. Gauges and counters may also be read
 * from a callback at scrape time (queue depths, counters kept elsewhere).
 *
 * It must never grow without bound: each family holds at most max_series series; label
 * values past that all land in one overflow series whose every label is "_other". Every
 * function accepts NULL families and series (and then does nothing), so code that
 * instruments a hot path needs no checks when metrics are off or ran out of memory.
 */
#ifndef SG_METRICS_H
#define SG_METRICS_H

#include "orchestrator/base/base.h"

typedef struct sg_metrics sg_metrics_t;
typedef struct sg_metric sg_metric_t;
typedef struct sg_series sg_series_t;

#define SG_METRIC_MAX_LABELS 4
#define SG_METRIC_MAX_BUCKETS 32
/* The label value of the overflow series of a family that reached max_series. */
#define SG_METRIC_OVERFLOW "_other"

/* Latency buckets in seconds (100 us to 30 s) and batch-size buckets (1 to 4096). */
extern const double sg_metric_latency_buckets[];
extern const size_t sg_metric_n_latency_buckets;
extern const double sg_metric_size_buckets[];
extern const size_t sg_metric_n_size_buckets;

/* A new, empty registry; NULL on OOM. Any thread. */
sg_metrics_t *sg_metrics_new(void);
/* Frees the registry with its families and series; NULL is a no-op. No other thread may
 * use it or anything from it any more. */
void sg_metrics_free(sg_metrics_t *m);

/*
 * Registers a family, or returns the one already registered under name when it has the
 * same type, label names (and buckets): registering at start is idempotent. Returns NULL
 * on OOM, for an invalid name (metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* not starting with "__", "le" not allowed in histograms), for
 * more than SG_METRIC_MAX_LABELS labels, or when name is taken by a different family.
 * labels: comma-separated label names ("workflow,status"), NULL or "" for none.
 * max_series: series kept at most before the overflow series (0 means 1000). help is
 * copied. The family lives as long as the registry. Any thread.
 */
sg_metric_t *sg_metrics_counter(sg_metrics_t *m, const char *name, const char *help,
                                const char *labels, size_t max_series);
sg_metric_t *sg_metrics_gauge(sg_metrics_t *m, const char *name, const char *help,
                              const char *labels, size_t max_series);
/* bounds: n_bounds (1..SG_METRIC_MAX_BUCKETS) finite upper bounds, strictly increasing,
 * copied; the +Inf bucket is implicit. */
sg_metric_t *sg_metrics_histogram(sg_metrics_t *m, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t n_bounds,
                                  size_t max_series);

/* A value read at scrape time: called on the scraping thread with the registry's lock
 * held, so it must be quick and must not call into this registry. */
typedef double (*sg_metric_read_fn)(void *ctx);
/* Unlabelled gauge or counter whose value fn returns; ctx must stay valid as long as
 * the registry. Same registration rules as above (an existing family is returned as it
 * is, with its own callback). */
sg_metric_t *sg_metrics_gauge_fn(sg_metrics_t *m, const char *name, const char *help,
                                 sg_metric_read_fn fn, void *ctx);
sg_metric_t *sg_metrics_counter_fn(sg_metrics_t *m, const char *name, const char *help,
                                   sg_metric_read_fn fn, void *ctx);

/*
 * The series of f for the given label values (one per label name, in order; NULL for an
 * unlabelled family). Created on first use (values are copied); once the family holds
 * max_series series, any new combination gets the overflow series. NULL when f is NULL,
 * f is a callback family, or out of memory. The pointer stays valid as long as the
 * registry, so callers may keep it. Any thread; lock-free when the series exists.
 */
sg_series_t *sg_metric_series(sg_metric_t *f, const char *const *values);

/* Counter: adds n. Gauge: adds n. Lock-free, any thread. */
void sg_series_add(sg_series_t *s, uint64_t n);
/* Gauge: sets the value. Lock-free, any thread. */
void sg_series_set(sg_series_t *s, double v);
/* Histogram: counts v in its bucket and adds it to the sum. Lock-free, any thread. */
void sg_series_observe(sg_series_t *s, double v);

/* Shortcuts for one labelled update: sg_metric_series then the update. */
void sg_metric_add(sg_metric_t *f, const char *const *values, uint64_t n);
void sg_metric_observe(sg_metric_t *f, const char *const *values, double v);

/* Reads back a counter or gauge (tests, tools); 0 for NULL. A histogram's count. */
double sg_series_value(const sg_series_t *s);
/* Series held by f now, the overflow series included (for tests). */
size_t sg_metric_count(const sg_metric_t *f);

/*
 * Appends the whole registry to out in the text format 0.0.4: families in registration
 * order, each with # HELP and # TYPE lines, then its series sorted by label values
 * (histograms as _bucket with le, _sum and _count). Label values and help texts are
 * escaped as the format wants. Out of memory leaves out->oom set. Any thread.
 */
void sg_metrics_render(sg_metrics_t *m, sg_buf_t *out);

/* The content type of what sg_metrics_render writes. */
#define SG_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
