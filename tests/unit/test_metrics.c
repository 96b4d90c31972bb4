/*
 * Tests of orchestrator/metrics: the exact text format 0.0.4 against a golden string
 * (HELP/TYPE lines, escaping, histograms with cumulative buckets, +Inf, _sum, _count),
 * registration rules, the bound on label values (overflow series), counters and series
 * creation from many threads at once with exact totals, and out-of-memory at every
 * allocation of building and rendering a registry.
 */
/* cmocka.h needs these first; the blank line keeps clang-format from reordering them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/metrics/metrics.h"

static char *render(sg_metrics_t *m)
{
    sg_buf_t b;
    sg_buf_init(&b);
    sg_metrics_render(m, &b);
    assert_false(b.oom);
    char *text = sg_buf_take(&b);
    assert_non_null(text);
    return text;
}

static double forty_two(void *ctx)
{
    (void)ctx;
    return 42;
}

static double seven(void *ctx)
{
    return *(const double *)ctx;
}

static const char golden[] = "# HELP sagad_test_total Things \\\\ counted.\\nTwice.\n"
                             "# TYPE sagad_test_total counter\n"
                             "sagad_test_total{workflow=\"a\",status=\"ok\"} 2\n"
                             "sagad_test_total{workflow=\"b\\\"q\\\\\\n\",status=\"x\"} 1\n"
                             "# HELP sagad_test_gauge A gauge.\n"
                             "# TYPE sagad_test_gauge gauge\n"
                             "sagad_test_gauge 1.5\n"
                             "# HELP sagad_test_seconds Latency.\n"
                             "# TYPE sagad_test_seconds histogram\n"
                             "sagad_test_seconds_bucket{route=\"/v1/x/{id}\",le=\"0.005\"} 1\n"
                             "sagad_test_seconds_bucket{route=\"/v1/x/{id}\",le=\"0.1\"} 2\n"
                             "sagad_test_seconds_bucket{route=\"/v1/x/{id}\",le=\"1\"} 3\n"
                             "sagad_test_seconds_bucket{route=\"/v1/x/{id}\",le=\"+Inf\"} 4\n"
                             "sagad_test_seconds_sum{route=\"/v1/x/{id}\"} 2.56640625\n"
                             "sagad_test_seconds_count{route=\"/v1/x/{id}\"} 4\n"
                             "# HELP sagad_test_batch_size Items.\n"
                             "# TYPE sagad_test_batch_size histogram\n"
                             "sagad_test_batch_size_bucket{le=\"1\"} 0\n"
                             "sagad_test_batch_size_bucket{le=\"2.5\"} 0\n"
                             "sagad_test_batch_size_bucket{le=\"+Inf\"} 0\n"
                             "sagad_test_batch_size_sum 0\n"
                             "sagad_test_batch_size_count 0\n"
                             "# HELP sagad_test_depth Read at scrape time.\n"
                             "# TYPE sagad_test_depth gauge\n"
                             "sagad_test_depth 42\n"
                             "# HELP sagad_test_ignored_total Kept elsewhere.\n"
                             "# TYPE sagad_test_ignored_total counter\n"
                             "sagad_test_ignored_total 7\n"
                             "# HELP sagad_test_unused_total Nothing yet.\n"
                             "# TYPE sagad_test_unused_total counter\n";

static void test_format_golden(void **state)
{
    (void)state;
    sg_metrics_t *m = sg_metrics_new();
    assert_non_null(m);
    sg_metric_t *c = sg_metrics_counter(m, "sagad_test_total", "Things \\ counted.\nTwice.",
                                        "workflow,status", 10);
    sg_metric_t *g = sg_metrics_gauge(m, "sagad_test_gauge", "A gauge.", NULL, 0);
    const double bounds[] = {0.005, 0.1, 1};
    sg_metric_t *h = sg_metrics_histogram(m, "sagad_test_seconds", "Latency.", "route", bounds,
                                          SG_ARRAY_LEN(bounds), 10);
    const double sizes[] = {1, 2.5};
    sg_metric_t *u = sg_metrics_histogram(m, "sagad_test_batch_size", "Items.", "", sizes,
                                          SG_ARRAY_LEN(sizes), 0);
    double seven_v = 7;
    assert_non_null(
        sg_metrics_gauge_fn(m, "sagad_test_depth", "Read at scrape time.", forty_two, NULL));
    assert_non_null(
        sg_metrics_counter_fn(m, "sagad_test_ignored_total", "Kept elsewhere.", seven, &seven_v));
    assert_non_null(sg_metrics_counter(m, "sagad_test_unused_total", "Nothing yet.", "x", 0));
    assert_non_null(c);
    assert_non_null(g);
    assert_non_null(h);
    assert_non_null(u);

    /* Registered out of order: series are rendered sorted by label values. */
    sg_metric_add(c, (const char *[]){"b\"q\\\n", "x"}, 1);
    sg_metric_add(c, (const char *[]){"a", "ok"}, 1);
    sg_series_add(sg_metric_series(c, (const char *[]){"a", "ok"}), 1);
    sg_series_set(sg_metric_series(g, NULL), 1.5);
    /* Binary fractions, so the sum is exact: 2^-8 + 2^-4 + 2^-1 + 2. */
    const char *route[] = {"/v1/x/{id}"};
    sg_metric_observe(h, route, 0.00390625);
    sg_metric_observe(h, route, 0.0625);
    sg_metric_observe(h, route, 0.5);
    sg_metric_observe(h, route, 2);

    char *text = render(m);
    assert_string_equal(text, golden);
    sg_free(text);
    assert_int_equal((int)sg_series_value(sg_metric_series(h, route)), 4);
    assert_int_equal((int)sg_series_value(sg_metric_series(c, (const char *[]){"a", "ok"})), 2);
    sg_metrics_free(m);
}

/* A value exactly on a bound belongs to that bucket (le = less or equal). */
static void test_histogram_bounds(void **state)
{
    (void)state;
    sg_metrics_t *m = sg_metrics_new();
    const double bounds[] = {1, 2};
    sg_metric_t *h = sg_metrics_histogram(m, "h", "", NULL, bounds, 2, 0);
    sg_series_t *s = sg_metric_series(h, NULL);
    sg_series_observe(s, 1);
    sg_series_observe(s, 2);
    sg_series_observe(s, 2.0000001);
    sg_series_observe(s, -5);
    char *text = render(m);
    assert_non_null(strstr(text, "h_bucket{le=\"1\"} 2\n"));
    assert_non_null(strstr(text, "h_bucket{le=\"2\"} 3\n"));
    assert_non_null(strstr(text, "h_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "h_sum "));
    assert_non_null(strstr(text, "h_count 4\n"));
    sg_free(text);
    sg_metrics_free(m);
}

static void test_registration_rules(void **state)
{
    (void)state;
    sg_metrics_t *m = sg_metrics_new();
    const double b[] = {1, 2};
    const double bad_b[] = {2, 1};
    sg_metric_t *c = sg_metrics_counter(m, "x_total", "X.", "a,b", 5);
    assert_non_null(c);
    /* The same registration again is the same family (help text may differ). */
    assert_ptr_equal(sg_metrics_counter(m, "x_total", "other help", "a,b", 5), c);
    /* The name taken by another shape. */
    assert_null(sg_metrics_gauge(m, "x_total", "X.", "a,b", 5));
    assert_null(sg_metrics_counter(m, "x_total", "X.", "a", 5));
    assert_null(sg_metrics_counter(m, "x_total", "X.", "b,a", 5));
    sg_metric_t *h = sg_metrics_histogram(m, "h_seconds", "H.", NULL, b, 2, 0);
    assert_non_null(h);
    assert_ptr_equal(sg_metrics_histogram(m, "h_seconds", "H.", NULL, b, 2, 0), h);
    assert_null(sg_metrics_histogram(m, "h_seconds", "H.", NULL, b, 1, 0));
    /* Invalid names, labels and buckets. */
    assert_null(sg_metrics_counter(m, "", "", NULL, 0));
    assert_null(sg_metrics_counter(m, "1x", "", NULL, 0));
    assert_null(sg_metrics_counter(m, "x-y", "", NULL, 0));
    assert_null(sg_metrics_counter(m, "ok_total", "", "a:b", 0));
    assert_null(sg_metrics_counter(m, "ok_total", "", "__reserved", 0));
    assert_null(sg_metrics_counter(m, "ok_total", "", "a,a", 0));
    assert_null(sg_metrics_counter(m, "ok_total", "", "a,", 0));
    assert_null(sg_metrics_counter(m, "ok_total", "", "a,b,c,d,e", 0));
    assert_null(sg_metrics_histogram(m, "ok_seconds", "", "le", b, 2, 0));
    assert_null(sg_metrics_histogram(m, "ok_seconds", "", NULL, bad_b, 2, 0));
    assert_null(sg_metrics_histogram(m, "ok_seconds", "", NULL, b, 0, 0));
    assert_null(sg_metrics_gauge_fn(m, "ok_fn", "", NULL, NULL));
    assert_non_null(sg_metrics_counter(m, "ok:total", "", "a,b,c,d", 0));
    /* Wrong updates do nothing; NULL is accepted everywhere. */
    sg_series_t *s = sg_metric_series(c, (const char *[]){"1", "2"});
    sg_series_set(s, 5);
    sg_series_observe(s, 5);
    assert_true(sg_series_value(s) == 0);
    assert_null(sg_metric_series(c, NULL));
    assert_null(sg_metric_series(NULL, NULL));
    sg_series_add(NULL, 1);
    sg_series_set(NULL, 1);
    sg_series_observe(NULL, 1);
    sg_metric_add(NULL, NULL, 1);
    assert_null(sg_metrics_counter(NULL, "a", "", NULL, 0));
    sg_metrics_render(NULL, NULL);
    sg_metrics_free(NULL);
    sg_metrics_free(m);
}

/* Past max_series, new label values share one "_other" series; known ones keep theirs. */
static void test_label_bound(void **state)
{
    (void)state;
    sg_metrics_t *m = sg_metrics_new();
    sg_metric_t *c = sg_metrics_counter(m, "wf_total", "W.", "workflow,outcome", 3);
    char name[32];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "wf%d", i);
        sg_metric_add(c, (const char *[]){name, "ok"}, 1);
    }
    assert_int_equal(sg_metric_count(c), 4);
    sg_metric_add(c, (const char *[]){"wf1", "ok"}, 5);
    assert_true(sg_series_value(sg_metric_series(c, (const char *[]){"wf1", "ok"})) == 6);
    sg_series_t *other = sg_metric_series(c, (const char *[]){"never-seen", "ok"});
    assert_ptr_equal(other, sg_metric_series(c, (const char *[]){"_other", "_other"}));
    assert_true(sg_series_value(other) == 7);
    char *text = render(m);
    assert_non_null(strstr(text, "wf_total{workflow=\"_other\",outcome=\"_other\"} 7\n"));
    assert_non_null(strstr(text, "wf_total{workflow=\"wf0\",outcome=\"ok\"} 1\n"));
    assert_null(strstr(text, "wf3"));
    sg_free(text);
    assert_int_equal(sg_metric_count(c), 4);
    sg_metrics_free(m);
}

enum { THREADS = 4, LABELS = 50 };

typedef struct {
    sg_metric_t *c, *h, *g;
    sg_series_t *shared;
    int rounds;
} race_t;

static void *racer(void *arg)
{
    race_t *r = arg;
    char name[32];
    for (int i = 0; i < r->rounds; i++) {
        sg_series_add(r->shared, 1);
        snprintf(name, sizeof(name), "v%d", i % LABELS);
        sg_metric_add(r->c, (const char *[]){name}, 2);
        sg_metric_observe(r->h, NULL, (i % 4) * 0.5);
        sg_series_add(sg_metric_series(r->g, NULL), 1);
    }
    return NULL;
}

/* Many threads update and create series at once; no count may be lost. */
static void test_concurrency(void **state)
{
    (void)state;
    race_t r = {.rounds = getenv("SG_UNDER_VALGRIND") != NULL ? 5000 : 100000};
    sg_metrics_t *m = sg_metrics_new();
    sg_metric_t *shared = sg_metrics_counter(m, "shared_total", "S.", NULL, 0);
    r.shared = sg_metric_series(shared, NULL);
    r.c = sg_metrics_counter(m, "by_label_total", "L.", "v", 0);
    const double b[] = {0.25, 0.75};
    r.h = sg_metrics_histogram(m, "h", "H.", NULL, b, 2, 0);
    r.g = sg_metrics_gauge(m, "g", "G.", NULL, 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, racer, &r), 0);
    }
    /* Scrapes run alongside the updates. */
    for (int i = 0; i < 20; i++) {
        sg_free(render(m));
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    double total = (double)THREADS * r.rounds;
    assert_true(sg_series_value(r.shared) == total);
    assert_true(sg_series_value(sg_metric_series(r.g, NULL)) == total);
    assert_int_equal(sg_metric_count(r.c), LABELS);
    double sum = 0;
    char name[32];
    for (int i = 0; i < LABELS; i++) {
        snprintf(name, sizeof(name), "v%d", i);
        sum += sg_series_value(sg_metric_series(r.c, (const char *[]){name}));
    }
    assert_true(sum == 2 * total);
    char *text = render(m);
    char want[128];
    /* Each thread observes 0, 0.5, 1, 1.5 in turn: a quarter <= 0.25, half <= 0.75. */
    snprintf(want, sizeof(want), "h_bucket{le=\"0.25\"} %.0f\n", total / 4);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof(want), "h_bucket{le=\"0.75\"} %.0f\n", total / 2);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof(want), "h_sum %.0f\nh_count %.0f\n", total * 0.75, total);
    assert_non_null(strstr(text, want));
    sg_free(text);
    sg_metrics_free(m);
}

/* Every allocation of building, updating and rendering fails in turn: no crash, no leak,
 * and whatever was built still renders. */
static void test_oom(void **state)
{
    (void)state;
    const double b[] = {1};
    for (size_t nth = 1; nth < 200; nth++) {
        sg_alloc_fail_at(nth);
        sg_metrics_t *m = sg_metrics_new();
        sg_metric_t *c = sg_metrics_counter(m, "c_total", "C.", "a", 4);
        sg_metric_t *h = sg_metrics_histogram(m, "h", "H.", NULL, b, 1, 0);
        sg_metric_t *f = sg_metrics_gauge_fn(m, "f", "F.", forty_two, NULL);
        sg_metric_add(c, (const char *[]){"x"}, 1);
        sg_metric_observe(h, NULL, 0.5);
        sg_buf_t out;
        sg_buf_init(&out);
        sg_metrics_render(m, &out);
        size_t used = sg_alloc_fail_at(0);
        sg_buf_fini(&out);
        sg_metrics_free(m);
        if (used < nth) {
            assert_non_null(c);
            assert_non_null(h);
            assert_non_null(f);
            return; /* nothing failed: every path was covered */
        }
    }
    fail_msg("more than 200 allocations");
}

/* Doubles print as the shortest text that reads back exactly. */
static void test_number_format(void **state)
{
    (void)state;
    sg_metrics_t *m = sg_metrics_new();
    sg_metric_t *g = sg_metrics_gauge(m, "g", "", "k", 0);
    static const struct {
        const char *k;
        double v;
        const char *want;
    } cases[] = {{"a", 0.1, "0.1"},
                 {"b", 1e-05, "1e-05"},
                 {"c", 123456789, "123456789"},
                 {"d", -2.5, "-2.5"},
                 {"e", 1.0 / 3, "0.3333333333333333"},
                 {"f", 1e300 * 1e300, "+Inf"}};
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        sg_series_set(sg_metric_series(g, (const char *[]){cases[i].k}), cases[i].v);
    }
    char *text = render(m);
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        char want[64];
        snprintf(want, sizeof(want), "g{k=\"%s\"} %s\n", cases[i].k, cases[i].want);
        if (strstr(text, want) == NULL) {
            fail_msg("missing %s in:\n%s", want, text);
        }
    }
    sg_free(text);
    sg_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_golden),      cmocka_unit_test(test_histogram_bounds),
        cmocka_unit_test(test_registration_rules), cmocka_unit_test(test_label_bound),
        cmocka_unit_test(test_concurrency),        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_number_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
