/*
 * bench_engine: end-to-end saga throughput of sagad's engine in embedded mode, with
 * durability on. Runs N order-like sagas (4 steps: reserve, charge, approve (pivot),
 * notify; 10% fail at the pivot and compensate) through the real driver, SQLite file,
 * and embedded workers running the built-in test activities, keeping C sagas in
 * flight. Prints sagas/s, p50/p99 latency from start call to durable end, CPU seconds
 * and peak RSS. Not a test: it asserts nothing about speed.
 *
 * usage: bench_engine [N=20000] [C=64] [SYNC=full|normal] [DIR=/tmp]
 */
#include "orchestrator/driver/driver.h"
#include "orchestrator/log/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char saga[] =
    "saga: bench_order\nversion: 1\n"
    "defaults: {timeout: 30s, retry: {max_attempts: 3, initial: 10ms}}\n"
    "steps:\n"
    "  - id: reserve\n    activity: test.echo\n    input: '{order: .input.order, qty: 2}'\n"
    "    compensate: {activity: test.echo, input: '{release: .input.order}'}\n"
    "  - id: charge\n    activity: test.echo\n    input: '{order: .input.order, amount: 100}'\n"
    "    compensate: {activity: test.echo, input: '{refund: .input.order}'}\n"
    "  - id: approve\n    activity: test.fail\n    input: '{fail: (.input.fail // false)}'\n    "
    "pivot: true\n"
    "  - id: notify\n    activity: test.echo\n    input: '{order: .input.order}'\n";

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t in_flight, finished, failed_starts;
    double *lat_ms;
    size_t n_lat;
    uint64_t *start_ms_by_slot;
} state_t;

static state_t S = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static double now_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void on_finish(void *ctx, const char *id, const char *status, uint64_t created_ms,
                      uint64_t finished_ms)
{
    (void)ctx;
    (void)id;
    (void)status;
    (void)finished_ms;
    double lat = now_ms_f() - (double)created_ms;
    pthread_mutex_lock(&S.mu);
    S.lat_ms[S.n_lat++] = lat;
    S.in_flight--;
    S.finished++;
    pthread_cond_signal(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    size_t c = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
    const char *sync = argc > 3 ? argv[3] : "full";
    const char *base = argc > 4 ? argv[4] : "/tmp";
    if (n == 0 || c == 0 || n > 10000000) {
        fprintf(stderr, "usage: bench_engine [N] [C] [full|normal] [DIR]\n");
        return 2;
    }
    char dir[256], wf[300], db[300], path[400];
    snprintf(dir, sizeof(dir), "%s/sg_benchXXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(wf, sizeof(wf), "%s/wf", dir);
    snprintf(db, sizeof(db), "%s/sagad.db", dir);
    snprintf(path, sizeof(path), "mkdir -p %s", wf);
    if (system(path) != 0) {
        return 1;
    }
    snprintf(path, sizeof(path), "%s/bench.yaml", wf);
    FILE *f = fopen(path, "w");
    fputs(saga, f);
    fclose(f);

    sg_log_set_level(SG_LOG_WARN);
    sg_driver_opts_t o = {.db_path = db,
                          .workflows_dir = wf,
                          .data_dir = dir,
                          .test_activities = true,
                          .threads = 4,
                          .on_finish = on_finish};
    sg_sync_parse(sync, &o.sync);
    S.lat_ms = calloc(n, sizeof(double));
    sg_driver_t *d = NULL;
    char err[256];
    if (sg_driver_start(&o, &d, err, sizeof(err)) != SG_OK) {
        fprintf(stderr, "start: %s\n", err);
        return 1;
    }
    double cpu0 = cpu_seconds(), t0 = now_ms_f();
    char input[128];
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&S.mu);
        while (S.in_flight >= c) {
            pthread_cond_wait(&S.cv, &S.mu);
        }
        S.in_flight++;
        pthread_mutex_unlock(&S.mu);
        snprintf(input, sizeof(input), "{\"order\":\"o%zu\",\"fail\":%s}", i,
                 i % 10 == 9 ? "true" : "false");
        if (sg_driver_start_saga_async(d, "bench_order", 0, input, NULL, NULL, NULL, NULL) !=
            SG_OK) {
            pthread_mutex_lock(&S.mu);
            S.in_flight--;
            S.failed_starts++;
            pthread_mutex_unlock(&S.mu);
        }
    }
    pthread_mutex_lock(&S.mu);
    while (S.finished + S.failed_starts < n) {
        pthread_cond_wait(&S.cv, &S.mu);
    }
    pthread_mutex_unlock(&S.mu);
    double secs = (now_ms_f() - t0) / 1e3, cpu = cpu_seconds() - cpu0;
    sg_driver_stats_t st;
    sg_driver_stats(d, &st);
    sg_driver_stop(d);
    qsort(S.lat_ms, S.n_lat, sizeof(double), cmp_double);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("engine embedded sync=%s concurrency=%zu: %zu sagas in %.2f s = %.0f sagas/s; "
           "latency p50 %.1f ms p99 %.1f ms; CPU %.2f s (%.0f us/saga); peak RSS %.1f MB; "
           "%llu commits, %.1f items/commit, engine thread busy %.0f%%; completed %llu "
           "compensated %llu\n",
           sync, c, S.n_lat, secs, (double)S.n_lat / secs, S.lat_ms[S.n_lat / 2],
           S.lat_ms[S.n_lat * 99 / 100], cpu, cpu * 1e6 / (double)S.n_lat,
           (double)ru.ru_maxrss / 1024.0, (unsigned long long)st.batches,
           st.batches ? (double)st.items / (double)st.batches : 0.0,
           (double)st.batch_us_total / 1e4 / secs, (unsigned long long)st.completed,
           (unsigned long long)st.compensated);
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    return system(path) == 0 && S.failed_starts == 0 ? 0 : 1;
}
