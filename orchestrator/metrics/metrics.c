/*
 * metrics: the registry, lock-free series, and the Prometheus text format 0.0.4.
 *
 * A family keeps its series in an open-addressing table of atomic pointers, sized at
 * registration for max_series + 1 entries at half load, and never shrunk or rehashed:
 * a series once published stays where it is until the registry is freed, so readers
 * probe without a lock and updates are single atomic operations. Writers of new series
 * take the family's mutex, probe again, and publish with a release store.
 *
 * It must never block an update on a scrape, and never let a label value break the
 * exposition format (values are escaped as the format requires).
 */
#include "orchestrator/metrics/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_SERIES 1000
#define MAX_NAME 128

const double sg_metric_latency_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                            0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                            1,      2.5,     5,      10,    30};
const size_t sg_metric_n_latency_buckets = SG_ARRAY_LEN(sg_metric_latency_buckets);
const double sg_metric_size_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
const size_t sg_metric_n_size_buckets = SG_ARRAY_LEN(sg_metric_size_buckets);

typedef enum { K_COUNTER, K_GAUGE, K_HISTOGRAM } kind_t;

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

struct sg_series {
    const sg_metric_t *fam;
    uint64_t hash;
    const char *values[SG_METRIC_MAX_LABELS]; /* point into the same allocation */
    _Atomic uint64_t value;                   /* counter: the count; gauge: double bits */
    _Atomic uint64_t sum;                     /* histogram: double bits */
    _Atomic uint64_t buckets[];               /* histogram: n_bounds + 1, not cumulative */
};

struct sg_metric {
    struct sg_metric *next; /* registration order */
    kind_t kind;
    char *name, *help;
    size_t n_labels;
    char *labels[SG_METRIC_MAX_LABELS]; /* point into label_text */
    char *label_text;
    double bounds[SG_METRIC_MAX_BUCKETS];
    size_t n_bounds;
    size_t max_series;
    sg_metric_read_fn fn; /* callback family: no series */
    void *ctx;
    pthread_mutex_t mu; /* creating series */
    size_t count;       /* series created (under mu) */
    sg_series_t *overflow;
    sg_series_t *single; /* the series of an unlabelled family */
    size_t mask;
    _Atomic(sg_series_t *) *slots;
};

struct sg_metrics {
    pthread_mutex_t mu; /* the family list; held while rendering */
    sg_metric_t *head, *tail;
};

/* ---- names ---- */

static bool valid_name(const char *s, bool colon)
{
    if (s == NULL || *s == '\0' || strlen(s) > MAX_NAME || (*s >= '0' && *s <= '9')) {
        return false;
    }
    for (; *s; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || (colon && c == ':');
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Splits "a,b" into f->labels; false for bad or too many names. */
static bool parse_labels(sg_metric_t *f, const char *labels)
{
    if (labels == NULL || labels[0] == '\0') {
        return true;
    }
    f->label_text = sg_strdup(labels);
    if (f->label_text == NULL) {
        return false;
    }
    for (char *p = f->label_text; p != NULL;) {
        char *comma = strchr(p, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        if (f->n_labels == SG_METRIC_MAX_LABELS || !valid_name(p, false) ||
            strncmp(p, "__", 2) == 0 || (f->kind == K_HISTOGRAM && strcmp(p, "le") == 0)) {
            return false;
        }
        for (size_t i = 0; i < f->n_labels; i++) {
            if (strcmp(f->labels[i], p) == 0) {
                return false;
            }
        }
        f->labels[f->n_labels++] = p;
        p = comma != NULL ? comma + 1 : NULL;
    }
    return true;
}

/* ---- series ---- */

static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        for (const char *p = values[i] != NULL ? values[i] : ""; *p; p++) {
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        }
        h = (h ^ 0xffu) * 1099511628211ull; /* a separator no UTF-8 text contains */
    }
    return h;
}

static bool same_values(const sg_series_t *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s->values[i], values[i] != NULL ? values[i] : "") != 0) {
            return false;
        }
    }
    return true;
}

static sg_series_t *series_new(const sg_metric_t *f, const char *const *values, uint64_t hash)
{
    size_t nb = f->kind == K_HISTOGRAM ? f->n_bounds + 1 : 0;
    size_t head = sizeof(sg_series_t) + nb * sizeof(_Atomic uint64_t);
    size_t text = 0;
    for (size_t i = 0; i < f->n_labels; i++) {
        text += strlen(values[i] != NULL ? values[i] : "") + 1;
    }
    sg_series_t *s = sg_calloc(1, head + text);
    if (s == NULL) {
        return NULL;
    }
    s->fam = f;
    s->hash = hash;
    char *p = (char *)s + head;
    for (size_t i = 0; i < f->n_labels; i++) {
        const char *v = values[i] != NULL ? values[i] : "";
        size_t len = strlen(v) + 1;
        memcpy(p, v, len);
        s->values[i] = p;
        p += len;
    }
    return s;
}

/* The slot of (values, hash): the series there, or the empty slot where it would go.
 * Lock-free; a slot once filled never changes. */
static sg_series_t *probe(const sg_metric_t *f, const char *const *values, uint64_t hash,
                          size_t *empty)
{
    for (size_t i = hash & f->mask;; i = (i + 1) & f->mask) {
        sg_series_t *s = atomic_load_explicit(&f->slots[i], memory_order_acquire);
        if (s == NULL) {
            *empty = i;
            return NULL;
        }
        if (s->hash == hash && same_values(s, values, f->n_labels)) {
            return s;
        }
    }
}

/* Creates the series (or finds that another thread did), or the overflow series. */
static sg_series_t *series_create(sg_metric_t *f, const char *const *values, uint64_t hash)
{
    pthread_mutex_lock(&f->mu);
    size_t empty = 0;
    sg_series_t *s = probe(f, values, hash, &empty);
    if (s == NULL && f->count < f->max_series) {
        s = series_new(f, values, hash);
        if (s != NULL) {
            f->count++;
            atomic_store_explicit(&f->slots[empty], s, memory_order_release);
        }
    } else if (s == NULL) {
        if (f->overflow == NULL) {
            const char *other[SG_METRIC_MAX_LABELS];
            for (size_t i = 0; i < f->n_labels; i++) {
                other[i] = SG_METRIC_OVERFLOW;
            }
            uint64_t oh = hash_values(other, f->n_labels);
            sg_series_t *o = probe(f, other, oh, &empty);
            if (o == NULL && (o = series_new(f, other, oh)) != NULL) {
                /* The table has room for max_series + 1 at half load. */
                atomic_store_explicit(&f->slots[empty], o, memory_order_release);
            }
            f->overflow = o;
        }
        s = f->overflow;
    }
    pthread_mutex_unlock(&f->mu);
    return s;
}

sg_series_t *sg_metric_series(sg_metric_t *f, const char *const *values)
{
    if (f == NULL || f->fn != NULL) {
        return NULL;
    }
    if (f->n_labels == 0) {
        return f->single;
    }
    if (values == NULL) {
        return NULL;
    }
    uint64_t hash = hash_values(values, f->n_labels);
    size_t empty;
    sg_series_t *s = probe(f, values, hash, &empty);
    return s != NULL ? s : series_create(f, values, hash);
}

static void add_double(_Atomic uint64_t *a, double d)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed), next;
    do {
        double x;
        memcpy(&x, &old, sizeof(x));
        x += d;
        memcpy(&next, &x, sizeof(next));
    } while (!atomic_compare_exchange_weak_explicit(a, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

static double load_double(const _Atomic uint64_t *a)
{
    uint64_t bits = atomic_load_explicit(a, memory_order_relaxed);
    double x;
    memcpy(&x, &bits, sizeof(x));
    return x;
}

void sg_series_add(sg_series_t *s, uint64_t n)
{
    if (s == NULL) {
        return;
    }
    if (s->fam->kind == K_COUNTER) {
        atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
    } else if (s->fam->kind == K_GAUGE) {
        add_double(&s->value, (double)n);
    }
}

void sg_series_set(sg_series_t *s, double v)
{
    if (s != NULL && s->fam->kind == K_GAUGE) {
        uint64_t bits;
        memcpy(&bits, &v, sizeof(bits));
        atomic_store_explicit(&s->value, bits, memory_order_relaxed);
    }
}

void sg_series_observe(sg_series_t *s, double v)
{
    if (s == NULL || s->fam->kind != K_HISTOGRAM) {
        return;
    }
    size_t i = 0;
    while (i < s->fam->n_bounds && !(v <= s->fam->bounds[i])) {
        i++;
    }
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    add_double(&s->sum, v);
}

void sg_metric_add(sg_metric_t *f, const char *const *values, uint64_t n)
{
    sg_series_add(sg_metric_series(f, values), n);
}

void sg_metric_observe(sg_metric_t *f, const char *const *values, double v)
{
    sg_series_observe(sg_metric_series(f, values), v);
}

static uint64_t hist_count(const sg_series_t *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= s->fam->n_bounds; i++) {
        n += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    }
    return n;
}

double sg_series_value(const sg_series_t *s)
{
    if (s == NULL) {
        return 0;
    }
    switch (s->fam->kind) {
    case K_COUNTER:
        return (double)atomic_load_explicit(&s->value, memory_order_relaxed);
    case K_GAUGE:
        return load_double(&s->value);
    case K_HISTOGRAM:
        return (double)hist_count(s);
    }
    return 0;
}

size_t sg_metric_count(const sg_metric_t *f)
{
    if (f == NULL || f->fn != NULL) {
        return 0;
    }
    size_t n = 0;
    for (size_t i = 0; i <= f->mask; i++) {
        n += atomic_load_explicit(&f->slots[i], memory_order_acquire) != NULL;
    }
    return n;
}

/* ---- the registry ---- */

sg_metrics_t *sg_metrics_new(void)
{
    sg_metrics_t *m = sg_calloc(1, sizeof(*m));
    if (m != NULL) {
        pthread_mutex_init(&m->mu, NULL);
    }
    return m;
}

static void family_free(sg_metric_t *f)
{
    if (f == NULL) {
        return;
    }
    for (size_t i = 0; f->slots != NULL && i <= f->mask; i++) {
        sg_free(atomic_load_explicit(&f->slots[i], memory_order_relaxed));
    }
    sg_free(f->slots);
    pthread_mutex_destroy(&f->mu);
    sg_free(f->name);
    sg_free(f->help);
    sg_free(f->label_text);
    sg_free(f);
}

void sg_metrics_free(sg_metrics_t *m)
{
    if (m == NULL) {
        return;
    }
    for (sg_metric_t *f = m->head; f != NULL;) {
        sg_metric_t *next = f->next;
        family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&m->mu);
    sg_free(m);
}

/* A registration as asked for, checked but not yet in the registry. */
static sg_metric_t *family_new(kind_t kind, const char *name, const char *help, const char *labels,
                               const double *bounds, size_t n_bounds, size_t max_series)
{
    if (!valid_name(name, true) || n_bounds > SG_METRIC_MAX_BUCKETS ||
        (kind == K_HISTOGRAM && (n_bounds == 0 || bounds == NULL))) {
        return NULL;
    }
    for (size_t i = 0; i < n_bounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
            return NULL;
        }
    }
    sg_metric_t *f = sg_calloc(1, sizeof(*f));
    if (f == NULL) {
        return NULL;
    }
    pthread_mutex_init(&f->mu, NULL);
    f->kind = kind;
    f->name = sg_strdup(name);
    f->help = sg_strdup(help != NULL ? help : "");
    f->n_bounds = n_bounds;
    if (n_bounds > 0) {
        memcpy(f->bounds, bounds, n_bounds * sizeof(*bounds));
    }
    f->max_series = max_series != 0 ? max_series : DEFAULT_MAX_SERIES;
    if (f->name == NULL || f->help == NULL || !parse_labels(f, labels)) {
        family_free(f);
        return NULL;
    }
    return f;
}

/* Slots for max_series + 1 series at most half full; the unlabelled series. */
static bool family_alloc(sg_metric_t *f)
{
    size_t n = 8;
    size_t want = f->n_labels == 0 ? 2 : 2 * (f->max_series + 1);
    while (n < want) {
        n *= 2;
    }
    f->slots = sg_calloc(n, sizeof(*f->slots));
    if (f->slots == NULL) {
        return false;
    }
    f->mask = n - 1;
    if (f->n_labels == 0) {
        uint64_t h = hash_values(NULL, 0);
        f->single = series_new(f, NULL, h);
        if (f->single == NULL) {
            return false;
        }
        atomic_store_explicit(&f->slots[h & f->mask], f->single, memory_order_release);
        f->count = 1;
    }
    return true;
}

static bool same_family(const sg_metric_t *a, const sg_metric_t *b)
{
    if (a->kind != b->kind || a->n_labels != b->n_labels || a->n_bounds != b->n_bounds ||
        (a->fn == NULL) != (b->fn == NULL)) {
        return false;
    }
    for (size_t i = 0; i < a->n_labels; i++) {
        if (strcmp(a->labels[i], b->labels[i]) != 0) {
            return false;
        }
    }
    return a->n_bounds == 0 || memcmp(a->bounds, b->bounds, a->n_bounds * sizeof(double)) == 0;
}

/* Adds f (taken) or returns the equal family already there; NULL when the name is taken
 * by another kind of family or memory ran out. */
static sg_metric_t *add_family(sg_metrics_t *m, sg_metric_t *f)
{
    if (m == NULL || f == NULL) {
        family_free(f);
        return NULL;
    }
    pthread_mutex_lock(&m->mu);
    sg_metric_t *found = m->head;
    while (found != NULL && strcmp(found->name, f->name) != 0) {
        found = found->next;
    }
    if (found != NULL) {
        pthread_mutex_unlock(&m->mu);
        bool same = same_family(found, f);
        family_free(f);
        return same ? found : NULL;
    }
    if (f->fn == NULL && !family_alloc(f)) {
        pthread_mutex_unlock(&m->mu);
        family_free(f);
        return NULL;
    }
    if (m->tail != NULL) {
        m->tail->next = f;
    } else {
        m->head = f;
    }
    m->tail = f;
    pthread_mutex_unlock(&m->mu);
    return f;
}

sg_metric_t *sg_metrics_counter(sg_metrics_t *m, const char *name, const char *help,
                                const char *labels, size_t max_series)
{
    return add_family(m, family_new(K_COUNTER, name, help, labels, NULL, 0, max_series));
}

sg_metric_t *sg_metrics_gauge(sg_metrics_t *m, const char *name, const char *help,
                              const char *labels, size_t max_series)
{
    return add_family(m, family_new(K_GAUGE, name, help, labels, NULL, 0, max_series));
}

sg_metric_t *sg_metrics_histogram(sg_metrics_t *m, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t n_bounds,
                                  size_t max_series)
{
    return add_family(m, family_new(K_HISTOGRAM, name, help, labels, bounds, n_bounds, max_series));
}

static sg_metric_t *fn_family(sg_metrics_t *m, kind_t kind, const char *name, const char *help,
                              sg_metric_read_fn fn, void *ctx)
{
    if (fn == NULL) {
        return NULL;
    }
    sg_metric_t *f = family_new(kind, name, help, NULL, NULL, 0, 1);
    if (f != NULL) {
        f->fn = fn;
        f->ctx = ctx;
    }
    return add_family(m, f);
}

sg_metric_t *sg_metrics_gauge_fn(sg_metrics_t *m, const char *name, const char *help,
                                 sg_metric_read_fn fn, void *ctx)
{
    return fn_family(m, K_GAUGE, name, help, fn, ctx);
}

sg_metric_t *sg_metrics_counter_fn(sg_metrics_t *m, const char *name, const char *help,
                                   sg_metric_read_fn fn, void *ctx)
{
    return fn_family(m, K_COUNTER, name, help, fn, ctx);
}

/* ---- the text format ---- */

/* The shortest text that reads back as v; Prometheus spells infinities +Inf/-Inf. */
static void fmt_double(double v, char out[40])
{
    if (isnan(v)) {
        snprintf(out, 40, "NaN");
    } else if (isinf(v)) {
        snprintf(out, 40, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(out, 40, "0");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, 40, "%.0f", v); /* counts and sizes read better without exponents */
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, 40, "%.*g", prec, v);
            if (strtod(out, NULL) == v) {
                break;
            }
        }
    }
}

/* HELP text: backslash and newline escaped. Label values: also the double quote. */
static void put_escaped(sg_buf_t *b, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\'           ? "\\\\"
                          : *s == '\n'         ? "\\n"
                          : quote && *s == '"' ? "\\\""
                                               : NULL;
        if (esc != NULL) {
            sg_buf_append(b, run, (size_t)(s - run));
            sg_buf_puts(b, esc);
            run = s + 1;
        }
    }
    sg_buf_append(b, run, (size_t)(s - run));
}

/* name{a="x",b="y"[,le="bound"]} */
static void put_sample_name(sg_buf_t *b, const sg_metric_t *f, const char *suffix,
                            const sg_series_t *s, const char *le)
{
    sg_buf_puts(b, f->name);
    sg_buf_puts(b, suffix);
    if (f->n_labels == 0 && le == NULL) {
        return;
    }
    sg_buf_puts(b, "{");
    for (size_t i = 0; i < f->n_labels; i++) {
        sg_buf_printf(b, "%s%s=\"", i > 0 ? "," : "", f->labels[i]);
        put_escaped(b, s->values[i], true);
        sg_buf_puts(b, "\"");
    }
    if (le != NULL) {
        sg_buf_printf(b, "%sle=\"%s\"", f->n_labels > 0 ? "," : "", le);
    }
    sg_buf_puts(b, "}");
}

static void put_series(sg_buf_t *b, const sg_metric_t *f, const sg_series_t *s)
{
    char num[40];
    if (f->kind == K_COUNTER) {
        put_sample_name(b, f, "", s, NULL);
        sg_buf_printf(b, " %" PRIu64 "\n", atomic_load_explicit(&s->value, memory_order_relaxed));
        return;
    }
    if (f->kind == K_GAUGE) {
        put_sample_name(b, f, "", s, NULL);
        fmt_double(load_double(&s->value), num);
        sg_buf_printf(b, " %s\n", num);
        return;
    }
    /* Buckets are kept apart and summed here, so _count always equals le="+Inf". */
    uint64_t cum = 0;
    for (size_t i = 0; i <= f->n_bounds; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        fmt_double(i < f->n_bounds ? f->bounds[i] : INFINITY, num);
        put_sample_name(b, f, "_bucket", s, num);
        sg_buf_printf(b, " %" PRIu64 "\n", cum);
    }
    put_sample_name(b, f, "_sum", s, NULL);
    fmt_double(load_double(&s->sum), num);
    sg_buf_printf(b, " %s\n", num);
    put_sample_name(b, f, "_count", s, NULL);
    sg_buf_printf(b, " %" PRIu64 "\n", cum);
}

static int cmp_series(const void *a, const void *b)
{
    const sg_series_t *x = *(const sg_series_t *const *)a, *y = *(const sg_series_t *const *)b;
    for (size_t i = 0; i < x->fam->n_labels; i++) {
        int c = strcmp(x->values[i], y->values[i]);
        if (c != 0) {
            return c;
        }
    }
    return 0;
}

static void put_family(sg_buf_t *b, const sg_metric_t *f)
{
    sg_buf_printf(b, "# HELP %s ", f->name);
    put_escaped(b, f->help, false);
    sg_buf_printf(b, "\n# TYPE %s %s\n", f->name, kind_names[f->kind]);
    if (f->fn != NULL) {
        char num[40];
        fmt_double(f->fn(f->ctx), num);
        sg_buf_printf(b, "%s %s\n", f->name, num);
        return;
    }
    size_t n = 0;
    sg_series_t **list = sg_malloc((f->mask + 1) * sizeof(*list));
    if (list == NULL) {
        b->oom = true;
        return;
    }
    for (size_t i = 0; i <= f->mask; i++) {
        sg_series_t *s = atomic_load_explicit(&f->slots[i], memory_order_acquire);
        if (s != NULL) {
            list[n++] = s;
        }
    }
    qsort(list, n, sizeof(*list), cmp_series);
    for (size_t i = 0; i < n; i++) {
        put_series(b, f, list[i]);
    }
    sg_free(list);
}

void sg_metrics_render(sg_metrics_t *m, sg_buf_t *out)
{
    if (m == NULL) {
        return;
    }
    pthread_mutex_lock(&m->mu);
    for (const sg_metric_t *f = m->head; f != NULL && !out->oom; f = f->next) {
        put_family(out, f);
    }
    pthread_mutex_unlock(&m->mu);
}
