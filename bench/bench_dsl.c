/*
 * bench_dsl: how long loading and validating definitions takes. Generates N
 * definitions of S steps each (realistic: jq input mappings that read earlier
 * outputs, compensations, retry policies, a condition now and then, a pivot and
 * retriable tail), then loads every one with the full checks, R rounds, and
 * prints the median. Not a test: it asserts nothing about speed.
 *
 * usage: bench_dsl [N=1000] [S=50] [R=5]
 */
#include "orchestrator/dsl/dsl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *make_def(int n, int steps)
{
    sg_buf_t b;
    sg_buf_init(&b);
    sg_buf_printf(
        &b,
        "saga: bench_%d\nversion: 1\ntimeout: 10m\n"
        "input:\n  schema:\n    type: object\n    required: [order_id]\n"
        "    properties:\n      order_id: {type: string, minLength: 1}\n"
        "      qty: {type: integer, minimum: 1}\n"
        "defaults: {timeout: 5s, retry: {max_attempts: 3, initial: 100ms}}\n"
        "events:\n  on_complete: [{type: order.completed, data: '{id: .input.order_id}'}]\n"
        "steps:\n",
        n);
    int pivot = steps * 4 / 5;
    for (int i = 0; i < steps; i++) {
        sg_buf_printf(&b, "  - id: step_%d\n    activity: svc%d.op_%d\n", i, i % 7, i);
        if (i == 0) {
            sg_buf_puts(&b, "    input: '{order_id: .input.order_id, qty: .input.qty}'\n");
        } else {
            sg_buf_printf(&b,
                          "    input: '{order_id: .input.order_id, prev: .steps.step_%d.output.id, "
                          "n: ((.input.qty // 1) * %d)}'\n",
                          i - 1, i);
        }
        if (i % 10 == 5) {
            sg_buf_puts(&b,
                        "    when: '.input.qty > 1 and (.input.order_id | startswith(\"o\"))'\n");
        }
        if (i < pivot) {
            sg_buf_printf(
                &b,
                "    retry: {max_attempts: 4, non_retryable: [svc.rejected]}\n"
                "    compensate:\n      activity: svc%d.undo_%d\n"
                "      input: '{id: .steps.step_%d.output.id, reason: \"saga failed\"}'\n",
                i % 7, i, i);
        } else if (i == pivot) {
            sg_buf_puts(&b, "    pivot: true\n");
        } else {
            sg_buf_puts(&b, "    retry: {max_attempts: unlimited, max_delay: 1m}\n");
        }
    }
    return sg_buf_take(&b);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    int steps = argc > 2 ? atoi(argv[2]) : 50;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    if (n <= 0 || steps <= 1 || rounds <= 0 || rounds > 100) {
        fprintf(stderr, "usage: bench_dsl [N>0] [STEPS>1] [ROUNDS 1..100]\n");
        return 2;
    }
    char **src = calloc((size_t)n, sizeof(*src));
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        src[i] = make_def(i, steps);
        bytes += strlen(src[i]);
    }
    double times[100];
    for (int r = 0; r < rounds; r++) {
        double t0 = now_s();
        for (int i = 0; i < n; i++) {
            sg_diags_t d;
            sg_diags_init(&d, 20);
            sg_def_t *def = NULL;
            if (sg_def_load("bench.yaml", src[i], strlen(src[i]), NULL, &def, &d) != SG_OK) {
                sg_buf_t out;
                sg_buf_init(&out);
                sg_diags_format(&d, "bench.yaml", &out);
                fprintf(stderr, "generated definition is invalid:\n%s", out.data);
                return 1;
            }
            sg_diags_fini(&d);
            sg_def_free(def);
        }
        times[r] = now_s() - t0;
    }
    qsort(times, (size_t)rounds, sizeof(double), cmp_double);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double med = times[rounds / 2];
    printf("dsl load+validate: %d definitions x %d steps (%.1f MB YAML, %d jq expressions each)\n",
           n, steps, (double)bytes / 1e6, steps * 2 + steps / 10 + 1);
    printf("  median of %d rounds: %.3f s total, %.1f us/definition, %.0f definitions/s, "
           "%.1f MB/s (min %.3f s, max %.3f s)\n",
           rounds, med, med * 1e6 / n, n / med, (double)bytes / 1e6 / med, times[0],
           times[rounds - 1]);
    printf("  peak RSS %.1f MB\n", (double)ru.ru_maxrss / 1024.0);
    for (int i = 0; i < n; i++) {
        free(src[i]);
    }
    free(src);
    return 0;
}
