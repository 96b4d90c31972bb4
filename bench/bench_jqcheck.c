/*
 * Benchmark: jqcheck against libjq's own compiler on a mix of typical saga expressions.
 * Prints ns per expression for sg_jq_check (1e6 checks, without and with a path callback)
 * and for libjq's jq_compile (200 compiles, each on a fresh jq_state), and their ratio.
 *
 * Measures speed only; it asserts nothing beyond every expression being valid.
 */
#include "orchestrator/jqcheck/jqcheck.h"

#include <jq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const mix[] = {
    ".input.order.id",
    ".steps.reserve.output.reservation_id",
    "{order_id: .input.order.id, amount: .steps.quote.output.total, "
    "currency: (.input.currency // \"EUR\")}",
    ".steps.charge.output.status == \"captured\"",
    "if .input.express then \"express\" else \"standard\" end",
    "[.input.items[] | {sku, qty: .quantity}]",
    ".input.items | map(.price * .quantity) | add",
    "\"order-\\(.input.order.id)-\\(.steps.reserve.output.id)\"",
    "select(.steps.fraud.output.score < 0.8) | .input",
    "reduce .input.items[] as $i (0; . + $i.quantity)",
    ".input | {id, customer: .customer.email} + {ts: (now | todate)}",
    "def total: map(.price) | add; .input.items | total",
};

#define N_MIX (sizeof(mix) / sizeof(mix[0]))

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void count_paths(void *ctx, const sg_jq_field_t *fields, size_t n, uint32_t offset)
{
    (void)fields;
    (void)offset;
    *(size_t *)ctx += n;
}

static void swallow(void *data, jv msg)
{
    (void)data;
    jv_free(msg);
}

static double bench_check(size_t iters, sg_jq_path_fn fn, size_t *sink)
{
    size_t lens[N_MIX];
    for (size_t i = 0; i < N_MIX; i++) {
        lens[i] = strlen(mix[i]);
    }
    double t0 = now_ns();
    for (size_t i = 0; i < iters; i++) {
        size_t k = i % N_MIX;
        if (!sg_jq_check(mix[k], lens[k], fn, sink, NULL)) {
            fprintf(stderr, "unexpectedly invalid: %s\n", mix[k]);
            exit(1);
        }
    }
    return (now_ns() - t0) / (double)iters;
}

static double bench_libjq(size_t iters)
{
    double total = 0;
    for (size_t i = 0; i < iters; i++) {
        jq_state *jq = jq_init();
        if (jq == NULL) {
            exit(1);
        }
        jq_set_error_cb(jq, swallow, NULL);
        double t0 = now_ns();
        int ok = jq_compile(jq, mix[i % N_MIX]);
        total += now_ns() - t0;
        jq_teardown(&jq);
        if (!ok) {
            fprintf(stderr, "libjq rejects: %s\n", mix[i % N_MIX]);
            exit(1);
        }
    }
    return total / (double)iters;
}

int main(void)
{
    size_t sink = 0;
    bench_check(10000, NULL, &sink); /* warm up */
    double plain = bench_check(1000000, NULL, &sink);
    double paths = bench_check(1000000, count_paths, &sink);
    double jq = bench_libjq(200);
    printf("jqcheck:            %8.0f ns/expression (%zu expressions, 1e6 checks)\n", plain, N_MIX);
    printf("jqcheck with paths: %8.0f ns/expression (%zu path fields seen)\n", paths, sink);
    printf("libjq jq_compile:   %8.0f ns/expression (200 compiles)\n", jq);
    printf("ratio:              %8.0fx faster\n", jq / plain);
    printf("1000 defs x 50 steps x 2 expressions: %.3f s with jqcheck, %.0f s with libjq\n",
           plain * 1e5 / 1e9, jq * 1e5 / 1e9);
    return 0;
}
