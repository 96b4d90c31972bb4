/*
 * bench_store: how many rows per second the store commits for the engine's typical write
 * batch. One saga step is 1 instance update + 1 attempt insert + 1 attempt finish + 3
 * history rows (6 rows); a transaction holds the steps of 1, 64 or 512 different sagas;
 * synchronous FULL and NORMAL. Then heartbeats: a transaction of 64 or 512 heartbeats, each
 * an UPDATE of a running attempt row (time, worker, progress) and nothing else, which is
 * what sagad writes per heartbeat. Each configuration gets a fresh file in a temporary
 * directory ($TMPDIR or /tmp: put it on the disk you care about) and R rounds; it prints
 * the median. Not a test: it asserts nothing about speed.
 *
 * usage: bench_store [STEPS=4096] [R=5]
 *   STEPS saga steps per round, the same for every batch size so that every round grows
 *   the WAL and runs checkpoints alike. With batches of 1 each step is a commit, and under
 *   FULL each commit waits for the disk: on a slow disk pass a smaller STEPS.
 */
#include "orchestrator/store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POOL 512 /* sagas in flight: each transaction touches `batch` of them */
#define ROWS_PER_STEP 6

typedef struct {
    sg_store_t *st;
    char ids[POOL][32];
    int64_t seq[POOL], hist_seq[POOL];
    size_t next; /* saga steps done so far, over all rounds */
    char state[1200], input[240], output[120];
} bench_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill_json(char *out, size_t len, const char *key)
{
    size_t n = (size_t)snprintf(out, len, "{\"%s\":\"", key);
    while (n + 3 < len) {
        out[n] = (char)('a' + n % 26);
        n++;
    }
    memcpy(out + n, "\"}", 3);
}

static void check(sg_err_t rc, const bench_t *b, const char *what)
{
    if (rc != SG_OK) {
        fprintf(stderr, "bench_store: %s: %s (%s)\n", what, sg_store_errmsg(b->st),
                sg_strerror(rc));
        exit(1);
    }
}

/* One engine step of saga i: what the driver persists after an activity result. */
static void saga_step(bench_t *b, int64_t now)
{
    size_t i = b->next % POOL;
    int64_t step = (int64_t)(b->next / POOL);
    b->next++;
    sg_store_inst_t r = {.status = "RUNNING",
                         .reason = "",
                         .state = b->state,
                         .updated_ms = now,
                         .seq = ++b->seq[i],
                         .hist_seq = b->hist_seq[i] + 3};
    memcpy(r.id, b->ids[i], sizeof(r.id));
    check(sg_store_inst_update(b->st, &r), b, "update instance");
    sg_store_attempt_t a = {.instance_id = b->ids[i],
                            .step = step,
                            .attempt = 1,
                            .activity = "inventory.reserve",
                            .input = b->input,
                            .started_ms = now,
                            .deadline_ms = now + 5000};
    check(sg_store_attempt_insert(b->st, &a), b, "insert attempt");
    check(sg_store_attempt_finish(b->st, b->ids[i], step, false, 1, "ok", b->output, NULL, NULL,
                                  now + 3),
          b, "finish attempt");
    static const char *const types[] = {"task_completed", "step_completed", "step_started"};
    for (int k = 0; k < 3; k++) {
        check(sg_store_hist_append(b->st, b->ids[i], ++b->hist_seq[i], now, types[k], step, 1,
                                   k == 0 ? "{\"duration_ms\":3,\"worker\":\"w-17\"}" : NULL),
              b, "append history");
    }
}

/* A heartbeat of saga i's running attempt (step 0, attempt 1). */
static void heartbeat(bench_t *b, size_t n, int64_t now)
{
    size_t i = n % POOL;
    char progress[48];
    snprintf(progress, sizeof(progress), "{\"done\":%zu,\"total\":1000000}", n);
    check(sg_store_attempt_heartbeat(b->st, b->ids[i], 0, false, 1, now, "host-3:4711",
                                     n % 4 == 0 ? progress : NULL),
          b, "record heartbeat");
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* hb: heartbeats (one row each) instead of saga steps (ROWS_PER_STEP rows each). */
static void run_config(bench_t *b, const char *dir, sg_sync_t sync, size_t batch, size_t steps,
                       int rounds, bool hb)
{
    static const char *const sync_names[] = {"FULL", "NORMAL", "OFF"};
    char path[600];
    snprintf(path, sizeof(path), "%s/bench-%s-%zu%s.db", dir, sync_names[sync], batch,
             hb ? "-hb" : "");
    sg_store_opts_t o = {.sync = sync};
    char err[256];
    memset(b->seq, 0, sizeof(b->seq));
    memset(b->hist_seq, 0, sizeof(b->hist_seq));
    b->next = 0;
    if (sg_store_open(path, &o, &b->st, err, sizeof(err)) != SG_OK) {
        fprintf(stderr, "bench_store: %s\n", err);
        exit(1);
    }
    check(sg_store_begin(b->st), b, "begin");
    for (size_t i = 0; i < POOL; i++) {
        snprintf(b->ids[i], 32, "01HXBENCH%017zu", i);
        sg_store_inst_t r = {.workflow = "order",
                             .version = 1,
                             .status = "RUNNING",
                             .input = b->input,
                             .state = b->state,
                             .created_ms = 1};
        memcpy(r.id, b->ids[i], 32);
        check(sg_store_inst_insert(b->st, &r), b, "insert instance");
        sg_store_attempt_t a = {.instance_id = b->ids[i],
                                .attempt = 1,
                                .activity = "payment.settle",
                                .input = b->input,
                                .started_ms = 1,
                                .deadline_ms = 7200001};
        check(sg_store_attempt_insert(b->st, &a), b, "insert attempt");
    }
    check(sg_store_commit(b->st), b, "commit");

    double t[100];
    for (int round = 0; round < rounds; round++) {
        double t0 = now_s();
        for (size_t done = 0; done < steps; done += batch) {
            check(sg_store_begin(b->st), b, "begin");
            for (size_t k = 0; k < batch; k++) {
                if (hb) {
                    heartbeat(b, done + k, 1700000000000 + (int64_t)done);
                } else {
                    saga_step(b, 1700000000000 + (int64_t)done);
                }
            }
            check(sg_store_commit(b->st), b, "commit");
        }
        t[round] = now_s() - t0;
    }
    qsort(t, (size_t)rounds, sizeof(double), cmp_double);
    double med = t[rounds / 2];
    double per_commit = med * 1e3 / (double)(steps / batch);
    if (hb) {
        printf("  %-6s batch %3zu heartbeats: %9.0f heartbeats/s  %7.3f ms/commit\n",
               sync_names[sync], batch, (double)steps / med, per_commit);
    } else {
        printf("  %-6s batch %3zu sagas: %9.0f rows/s  %8.0f steps/s  %7.3f ms/commit"
               "  (%zu steps/round, min %.3f s, max %.3f s)\n",
               sync_names[sync], batch, (double)(steps * ROWS_PER_STEP) / med, (double)steps / med,
               per_commit, steps, t[0], t[rounds - 1]);
    }
    fflush(stdout);
    sg_store_close(b->st);
    b->st = NULL;
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[640];
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        unlink(p);
    }
}

int main(int argc, char **argv)
{
    long steps_arg = argc > 1 ? atol(argv[1]) : 4096;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (steps_arg < 512 || rounds <= 0 || rounds > 100) {
        fprintf(stderr, "usage: bench_store [STEPS>=512] [ROUNDS 1..100]\n");
        return 2;
    }
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/sg_bench_storeXXXXXX", tmp);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    bench_t *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return 1;
    }
    fill_json(b->state, sizeof(b->state), "state");
    fill_json(b->input, sizeof(b->input), "order_id");
    fill_json(b->output, sizeof(b->output), "reservation");
    printf("store write batches in %s: 1 saga step = %d rows (update + attempt insert + finish +"
           " 3 history), state %zu B; median of %d rounds\n",
           dir, ROWS_PER_STEP, strlen(b->state), rounds);
    const sg_sync_t syncs[] = {SG_SYNC_FULL, SG_SYNC_NORMAL};
    const size_t batches[] = {1, 64, 512};
    for (size_t s = 0; s < 2; s++) {
        for (size_t k = 0; k < 3; k++) {
            size_t steps = (size_t)steps_arg - (size_t)steps_arg % batches[k];
            run_config(b, dir, syncs[s], batches[k], steps, rounds, false);
        }
    }
    printf("heartbeats (1 attempt row UPDATE each; progress in 1 of 4)\n");
    for (size_t s = 0; s < 2; s++) {
        for (size_t k = 1; k < 3; k++) {
            size_t steps = (size_t)steps_arg - (size_t)steps_arg % batches[k];
            run_config(b, dir, syncs[s], batches[k], steps, rounds, true);
        }
    }
    rmdir(dir);
    free(b);
    return 0;
}
