/*
 * Unit tests of the transport table and the embedded worker pool: many tasks across
 * threads each answered exactly once, the per-queue concurrency limit, unknown
 * activities answered fatally, expired tasks shed, the queue cap, stop() with tasks
 * still queued, start errors and out-of-memory in start.
 *
 * Every wait is on a condition variable with a bounded timeout, never a sleep.
 */
/* cmocka.h needs these before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orchestrator/transport/transport.h"

#define WAIT_SECONDS 120

/* ---- harness: a collector of results ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n_results;
    size_t n_ok;
    unsigned *seen; /* per task->step: how many results arrived */
    size_t n_seen;
    sg_task_outcome_t last_outcome;
    char last_code[64];
    char last_message[256];
    bool wrong_output; /* an ok result whose output is not its input */
    /* blocking: the first result's callback waits until `release` */
    bool block_first;
    bool blocked;
    bool release;
} col_t;

typedef struct {
    char dir[256];
    col_t col;
    const sg_transport_vt_t *vt;
    sg_transport_t *t;
} h_t;

static void on_result(void *ctx, const sg_task_t *task, const sg_task_result_t *res)
{
    col_t *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (task->step < c->n_seen) {
        c->seen[task->step]++;
    }
    c->n_results++;
    c->last_outcome = res->outcome;
    if (res->outcome == SG_TASK_OK) {
        c->n_ok++;
        if (task->input == NULL || strcmp(res->output, task->input) != 0) {
            c->wrong_output = true;
        }
    } else {
        snprintf(c->last_code, sizeof(c->last_code), "%s", sg_task_result_code(res));
        snprintf(c->last_message, sizeof(c->last_message), "%s",
                 res->error_message ? res->error_message : "");
    }
    pthread_cond_broadcast(&c->cv);
    if (c->block_first && !c->blocked) {
        c->blocked = true;
        while (!c->release) {
            pthread_cond_wait(&c->cv, &c->mu);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static struct timespec deadline_in(int seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += seconds;
    return ts;
}

/* Waits until pred(c) holds, at most WAIT_SECONDS. Caller holds c->mu. */
static bool wait_locked(col_t *c, bool (*pred)(const col_t *c, size_t n), size_t n)
{
    struct timespec until = deadline_in(WAIT_SECONDS);
    while (!pred(c, n)) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT) {
            return pred(c, n);
        }
    }
    return true;
}

static bool have_results(const col_t *c, size_t n)
{
    return c->n_results >= n;
}

static bool is_blocked(const col_t *c, size_t n)
{
    (void)n;
    return c->blocked;
}

static bool wait_results(col_t *c, size_t n)
{
    pthread_mutex_lock(&c->mu);
    bool ok = wait_locked(c, have_results, n);
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void release_blocked(col_t *c)
{
    pthread_mutex_lock(&c->mu);
    c->release = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static int setup(void **state)
{
    h_t *h = calloc(1, sizeof(*h));
    const char *tmp = getenv("TMPDIR");
    snprintf(h->dir, sizeof(h->dir), "%s/sg-test-transport-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(h->dir) == NULL) {
        return -1;
    }
    pthread_mutex_init(&h->col.mu, NULL);
    pthread_cond_init(&h->col.cv, NULL);
    h->vt = sg_transport_find("embedded");
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    h_t *h = *state;
    h->vt->stop(h->t);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    char path[512];
    for (size_t i = 0; i < SG_ARRAY_LEN(suffixes); i++) {
        snprintf(path, sizeof(path), "%s/test-effects.db%s", h->dir, suffixes[i]);
        unlink(path);
    }
    rmdir(h->dir);
    free(h->col.seen);
    pthread_cond_destroy(&h->col.cv);
    pthread_mutex_destroy(&h->col.mu);
    free(h);
    return 0;
}

static sg_transport_opts_t opts_of(h_t *h, unsigned threads, unsigned limit, size_t cap)
{
    return (sg_transport_opts_t){.data_dir = h->dir,
                                 .test_activities = true,
                                 .threads = threads,
                                 .per_queue_limit = limit,
                                 .queue_cap = cap,
                                 .on_result = on_result,
                                 .ctx = &h->col};
}

static void start(h_t *h, const sg_transport_opts_t *opts)
{
    char err[256] = "";
    sg_err_t rc = h->vt->start(opts, &h->t, err, sizeof(err));
    if (rc != SG_OK) {
        fail_msg("start: %s: %s", sg_strerror(rc), err);
    }
}

static sg_err_t dispatch(h_t *h, const char *activity, uint32_t i, const char *input,
                         uint64_t deadline_ms)
{
    char sid[32], key[64];
    snprintf(sid, sizeof(sid), "s%u", (unsigned)i);
    snprintf(key, sizeof(key), "inst/%s", sid);
    sg_task_t task = {.instance_id = "inst",
                      .step_id = sid,
                      .step = i,
                      .attempt = 1,
                      .activity = activity,
                      .input = input,
                      .idempotency_key = key,
                      .deadline_ms = deadline_ms};
    return h->vt->dispatch(h->t, &task);
}

static long long query_int(const h_t *h, const char *sql)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/test-effects.db", h->dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    long long v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- tests ---- */

static void test_find(void **state)
{
    (void)state;
    const sg_transport_vt_t *vt = sg_transport_find("embedded");
    assert_non_null(vt);
    assert_string_equal(vt->name, "embedded");
    assert_null(sg_transport_find("carrier-pigeon"));
    assert_null(sg_transport_find(NULL));
    vt->stop(NULL);
}

static void test_many_echo_each_answered_once(void **state)
{
    h_t *h = *state;
    size_t n = getenv("SG_UNDER_VALGRIND") != NULL ? 1000 : 10000;
    h->col.seen = calloc(n, sizeof(*h->col.seen));
    h->col.n_seen = n;
    sg_transport_opts_t opts = opts_of(h, 8, 0, 0);
    start(h, &opts);
    for (size_t i = 0; i < n; i++) {
        char input[32];
        snprintf(input, sizeof(input), "{\"i\":%zu}", i);
        assert_int_equal(dispatch(h, "test.echo", (uint32_t)i, input, 0), SG_OK);
    }
    assert_true(wait_results(&h->col, n));
    h->vt->stop(h->t);
    h->t = NULL;
    /* stop() joined the workers: no late result can arrive now */
    assert_int_equal(h->col.n_results, n);
    assert_int_equal(h->col.n_ok, n);
    assert_false(h->col.wrong_output);
    for (size_t i = 0; i < n; i++) {
        if (h->col.seen[i] != 1) {
            fail_msg("task %zu answered %u times", i, h->col.seen[i]);
        }
    }
    assert_int_equal(query_int(h, "SELECT count(*) FROM effects"), (long long)n);
}

/*
 * The most test.sleep calls that overlapped, from the effects file: each call's
 * delivery row has when it began, its effect row when it ended. An end and a start at
 * the same microsecond do not overlap (the slot is freed before the next call starts).
 */
static long long max_overlap(const h_t *h)
{
    return query_int(
        h, "WITH ev(t, d) AS (SELECT ts_us, 1 FROM deliveries UNION ALL "
           "SELECT ts_us, -1 FROM effects), "
           "run(c) AS (SELECT sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) FROM ev) "
           "SELECT max(c) FROM run");
}

static void test_per_queue_limit(void **state)
{
    h_t *h = *state;
    sg_transport_opts_t opts = opts_of(h, 8, 2, 0);
    start(h, &opts);
    size_t n = 12;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(dispatch(h, "test.sleep", (uint32_t)i, "{\"ms\":20}", 0), SG_OK);
    }
    /* While the test queue is at its limit, other work still gets a thread. */
    assert_int_equal(dispatch(h, "nope.op", 100, "{}", 0), SG_OK);
    assert_true(wait_results(&h->col, n + 1));
    assert_int_equal(h->col.n_ok, n);
    long long most = max_overlap(h);
    assert_true(most >= 1);
    if (most > 2) {
        fail_msg("%lld test.sleep calls ran at once; the limit is 2", most);
    }
}

static void test_unknown_activity(void **state)
{
    h_t *h = *state;
    sg_transport_opts_t opts = opts_of(h, 2, 0, 0);
    start(h, &opts);
    static const struct {
        const char *activity;
        const char *says;
    } cases[] = {
        {"test.ecko", "queue \"test\" has no operation \"ecko\""},
        {"billing.charge", "queue \"billing\" is not served"},
        {"noqueue", "not of the form queue.operation"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        assert_int_equal(dispatch(h, cases[i].activity, (uint32_t)i, "{}", 0), SG_OK);
        assert_true(wait_results(&h->col, i + 1));
        pthread_mutex_lock(&h->col.mu);
        assert_int_equal(h->col.last_outcome, SG_TASK_FATAL);
        assert_string_equal(h->col.last_code, "saga.unknown_activity");
        assert_non_null(strstr(h->col.last_message, cases[i].says));
        pthread_mutex_unlock(&h->col.mu);
    }
    /* A task that waited past its deadline is answered without running. */
    assert_int_equal(dispatch(h, "test.echo", 7, "{}", now_ms() - 1000), SG_OK);
    assert_true(wait_results(&h->col, SG_ARRAY_LEN(cases) + 1));
    assert_string_equal(h->col.last_code, "saga.deadline_expired");
    assert_int_equal(h->col.last_outcome, SG_TASK_RETRYABLE);
    assert_int_equal(query_int(h, "SELECT count(*) FROM deliveries"), 0);

    sg_task_t bad = {.instance_id = "x"};
    assert_int_equal(h->vt->dispatch(h->t, &bad), SG_ERR_INVALID);
    assert_int_equal(h->vt->dispatch(h->t, NULL), SG_ERR_INVALID);
}

/* Holds the only worker inside the first result's callback, so later tasks stay queued. */
static void hold_worker(h_t *h)
{
    h->col.block_first = true;
    assert_int_equal(dispatch(h, "test.echo", 0, "0", 0), SG_OK);
    pthread_mutex_lock(&h->col.mu);
    assert_true(wait_locked(&h->col, is_blocked, 0));
    pthread_mutex_unlock(&h->col.mu);
}

static void test_queue_cap(void **state)
{
    h_t *h = *state;
    sg_transport_opts_t opts = opts_of(h, 1, 0, 5);
    start(h, &opts);
    hold_worker(h);
    for (uint32_t i = 1; i <= 5; i++) {
        assert_int_equal(dispatch(h, "test.echo", i, "1", 0), SG_OK);
    }
    assert_int_equal(dispatch(h, "test.echo", 6, "1", 0), SG_ERR_LIMIT);
    assert_int_equal(dispatch(h, "nope.op", 7, "1", 0), SG_ERR_LIMIT);
    release_blocked(&h->col);
    /* 6 answers: the held task and the 5 queued; the refused ones never. */
    assert_true(wait_results(&h->col, 6));
    h->vt->stop(h->t);
    h->t = NULL;
    assert_int_equal(h->col.n_results, 6);
}

static void *stopper_main(void *arg)
{
    h_t *h = arg;
    h->vt->stop(h->t);
    return NULL;
}

static void test_stop_drops_queued(void **state)
{
    h_t *h = *state;
    sg_transport_opts_t opts = opts_of(h, 1, 0, 0);
    start(h, &opts);
    hold_worker(h);
    for (uint32_t i = 1; i <= 1000; i++) {
        assert_int_equal(dispatch(h, i % 2 ? "test.echo" : "nope.op", i, "1", 0), SG_OK);
    }
    /* stop() runs in its own thread; once it has begun, dispatch says so. Each probe
     * accepted before that is one more queued task to drop. */
    pthread_t stopper;
    assert_int_equal(pthread_create(&stopper, NULL, stopper_main, h), 0);
    sg_err_t rc;
    while ((rc = dispatch(h, "test.echo", 2000, "1", 0)) == SG_OK) {
        sched_yield();
    }
    assert_int_equal(rc, SG_ERR_STATE);
    release_blocked(&h->col);
    pthread_join(stopper, NULL);
    h->t = NULL;
    /* Only the task that was running finished; the queued ones were dropped. */
    assert_int_equal(h->col.n_results, 1);
    assert_int_equal(query_int(h, "SELECT count(*) FROM effects"), 1);
}

static void test_start_errors(void **state)
{
    h_t *h = *state;
    char err[256] = "";
    sg_transport_t *t = NULL;
    sg_transport_opts_t opts = opts_of(h, 2, 0, 0);

    opts.on_result = NULL;
    assert_int_equal(h->vt->start(&opts, &t, err, sizeof(err)), SG_ERR_INVALID);
    opts.on_result = on_result;

    static const char *const typo[] = {"tset", NULL};
    opts.queues = typo;
    assert_int_equal(h->vt->start(&opts, &t, err, sizeof(err)), SG_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "unknown activity queue \"tset\" (did you mean \"test\"?)"));

    static const char *const test_only[] = {"test", NULL};
    opts.queues = test_only;
    opts.test_activities = false;
    assert_int_equal(h->vt->start(&opts, &t, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "--test-activities"));

    opts.queues = NULL;
    opts.test_activities = true;
    opts.data_dir = "/nonexistent/dir";
    assert_int_equal(h->vt->start(&opts, &t, err, sizeof(err)), SG_ERR_IO);
    assert_non_null(strstr(err, "queue \"test\": "));
    assert_null(t);

    /* Without the test queue nothing is served here yet: every task is unknown. */
    opts.data_dir = h->dir;
    opts.test_activities = false;
    start(h, &opts);
    assert_int_equal(dispatch(h, "test.echo", 0, "1", 0), SG_OK);
    assert_true(wait_results(&h->col, 1));
    assert_string_equal(h->col.last_code, "saga.unknown_activity");
}

static void test_start_oom(void **state)
{
    h_t *h = *state;
    char err[256] = "";
    sg_transport_opts_t opts = opts_of(h, 3, 0, 0);
    for (size_t nth = 1;; nth++) {
        sg_transport_t *t = NULL;
        sg_alloc_fail_at(nth);
        sg_err_t rc = h->vt->start(&opts, &t, err, sizeof(err));
        size_t seen = sg_alloc_fail_at(0);
        if (rc == SG_OK) {
            h->vt->stop(t);
            assert_true(seen < nth && nth > 2);
            break;
        }
        assert_int_equal(rc, SG_ERR_NOMEM);
        assert_null(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test_setup_teardown(test_many_echo_each_answered_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_queue_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_activity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_drops_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_oom, setup, teardown),
    };
    return cmocka_run_group_tests_name("transport", tests, NULL, NULL);
}
