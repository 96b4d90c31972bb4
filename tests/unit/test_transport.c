/*
 * Unit tests of the transport table and the embedded worker pool: many tasks across
 * threads each answered exactly once, the per-queue concurrency limit, unknown
 * activities answered fatally, expired tasks shed, the queue cap, stop() with tasks
 * still queued, start errors and out-of-memory in start; heartbeats of running tasks (at
 * the start, then each third of heartbeat_ms with the handler's progress, none after the
 * result or stop(), none without heartbeat_ms) and sg_task_heartbeat's answer.
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

/* What the heartbeats of one task showed. */
typedef struct {
    unsigned n;
    unsigned with_progress;
    uint64_t first_ms, last_ms; /* sg_mono_ms() of the first and last arrival */
    bool first_had_details;
    bool answered; /* its result arrived */
    char details[96];
} hb_seen_t;

#define HB_STEPS 4u

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
    hb_seen_t hb[HB_STEPS]; /* heartbeats, per task->step */
    unsigned hb_total;
    unsigned hb_after_result; /* heartbeats of a task whose result had arrived */
    unsigned hb_bad;          /* wrong worker id, instance, attempt or step */
    bool stopped;             /* stop() returned */
    unsigned hb_after_stop;
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
    if (task->step < HB_STEPS) {
        c->hb[task->step].answered = true;
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

static void on_heartbeat(void *ctx, const sg_task_heartbeat_t *hb)
{
    col_t *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->hb_total++;
    c->hb_after_stop += c->stopped;
    if (hb->step >= HB_STEPS || strcmp(hb->worker_id, "sagad") != 0 ||
        strcmp(hb->instance_id, "inst") != 0 || hb->attempt != 1 || hb->compensation ||
        hb->sent_ms < sg_now_ms() - 60000 || hb->sent_ms > sg_now_ms()) {
        c->hb_bad++;
    } else {
        hb_seen_t *h = &c->hb[hb->step];
        c->hb_after_result += h->answered;
        uint64_t now = sg_mono_ms();
        if (h->n++ == 0) {
            h->first_ms = now;
            h->first_had_details = hb->details != NULL;
        }
        h->last_ms = now;
        if (hb->details != NULL) {
            h->with_progress++;
            snprintf(h->details, sizeof(h->details), "%s", hb->details);
        }
    }
    pthread_cond_broadcast(&c->cv);
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

static sg_err_t dispatch_hb(h_t *h, const char *activity, uint32_t i, const char *input,
                            uint64_t deadline_ms, uint64_t heartbeat_ms)
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
                      .deadline_ms = deadline_ms,
                      .heartbeat_ms = heartbeat_ms};
    return h->vt->dispatch(h->t, &task);
}

static sg_err_t dispatch(h_t *h, const char *activity, uint32_t i, const char *input,
                         uint64_t deadline_ms)
{
    return dispatch_hb(h, activity, i, input, deadline_ms, 0);
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

/* ---- heartbeats ---- */

static bool two_with_progress(const col_t *c, size_t n)
{
    return c->hb[0].with_progress >= n && c->hb[1].with_progress >= n;
}

static bool step3_ticked(const col_t *c, size_t n)
{
    return c->hb[3].n >= n;
}

/* Stops the transport and marks the moment: no heartbeat may come after it. */
static void stop_transport(h_t *h)
{
    h->vt->stop(h->t);
    h->t = NULL;
    pthread_mutex_lock(&h->col.mu);
    h->col.stopped = true;
    pthread_mutex_unlock(&h->col.mu);
}

/* At most one heartbeat at the start and one per period after it. */
static void assert_at_most_one_per_period(const hb_seen_t *s, uint64_t period_ms)
{
    uint64_t most = 2 + (s->last_ms - s->first_ms) / period_ms;
    if (s->n > most) {
        fail_msg("%u heartbeats in %llu ms; at most %llu with a period of %llu ms", s->n,
                 (unsigned long long)(s->last_ms - s->first_ms), (unsigned long long)most,
                 (unsigned long long)period_ms);
    }
}

/* Two long tasks beat at once (one ticker serves both), each at its own period, with the
 * handler's progress; stop() makes sg_task_heartbeat say "give up". */
static void test_heartbeats_periodic(void **state)
{
    h_t *h = *state;
    sg_transport_opts_t opts = opts_of(h, 2, 0, 0);
    opts.on_heartbeat = on_heartbeat;
    start(h, &opts);
    const char *in = "{\"ms\":20000,\"heartbeat_every_ms\":20}";
    uint64_t deadline = now_ms() + 120000;
    assert_int_equal(dispatch_hb(h, "test.sleep", 0, in, deadline, 150), SG_OK);
    assert_int_equal(dispatch_hb(h, "test.sleep", 1, in, deadline, 90), SG_OK);

    pthread_mutex_lock(&h->col.mu);
    assert_true(wait_locked(&h->col, two_with_progress, 3));
    hb_seen_t seen[2] = {h->col.hb[0], h->col.hb[1]};
    assert_int_equal(h->col.n_results, 0);
    pthread_mutex_unlock(&h->col.mu);
    for (size_t i = 0; i < 2; i++) {
        assert_true(seen[i].n >= 4);             /* the start's, then ticks */
        assert_false(seen[i].first_had_details); /* sent before the handler said anything */
        assert_non_null(strstr(seen[i].details, "\"slept_ms\":"));
        assert_non_null(strstr(seen[i].details, "\"of\":20000}"));
    }
    assert_at_most_one_per_period(&seen[0], 50);
    assert_at_most_one_per_period(&seen[1], 30);

    /* The handlers hear of the stop at their next sg_task_heartbeat and give up. */
    uint64_t t0 = sg_mono_ms();
    stop_transport(h);
    assert_true(sg_mono_ms() - t0 < 15000);
    assert_int_equal(h->col.n_results, 2);
    assert_int_equal(h->col.last_outcome, SG_TASK_RETRYABLE);
    assert_string_equal(h->col.last_code, "test.abandoned");
    assert_int_equal(h->col.hb_bad, 0);
    assert_int_equal(h->col.hb_after_result, 0);
    assert_int_equal(query_int(h, "SELECT count(*) FROM effects"), 0);
}

/* A short task beats at its start at least, never after its result; a task without
 * heartbeat_ms never beats; nothing comes after stop(). */
static void test_heartbeats_end_with_result(void **state)
{
    h_t *h = *state;
    sg_transport_opts_t opts = opts_of(h, 2, 0, 0);
    opts.on_heartbeat = on_heartbeat;
    start(h, &opts);
    assert_int_equal(
        dispatch_hb(h, "test.sleep", 0, "{\"ms\":150,\"heartbeat_every_ms\":10}", 0, 30), SG_OK);
    assert_int_equal(dispatch_hb(h, "test.sleep", 1, "{\"ms\":150}", 0, 0), SG_OK);
    assert_int_equal(dispatch_hb(h, "test.echo", 2, "{}", 0, 0), SG_OK);
    assert_true(wait_results(&h->col, 3));
    stop_transport(h);
    assert_int_equal(h->col.n_ok, 3);
    assert_true(h->col.hb[0].n >= 1);
    assert_false(h->col.hb[0].first_had_details);
    assert_at_most_one_per_period(&h->col.hb[0], 10);
    assert_int_equal(h->col.hb[1].n, 0);
    assert_int_equal(h->col.hb[2].n, 0);
    assert_int_equal(h->col.hb_bad, 0);
    assert_int_equal(h->col.hb_after_result, 0);

    /* No heartbeat after stop() returned: start and stop again with a task running. */
    memset(h->col.hb, 0, sizeof(h->col.hb));
    h->col.stopped = false;
    start(h, &opts);
    assert_int_equal(
        dispatch_hb(h, "test.sleep", 3, "{\"ms\":20000,\"heartbeat_every_ms\":10}", 0, 30), SG_OK);
    pthread_mutex_lock(&h->col.mu);
    assert_true(wait_locked(&h->col, step3_ticked, 2));
    pthread_mutex_unlock(&h->col.mu);
    stop_transport(h);
    assert_int_equal(h->col.n_results, 4);
    assert_int_equal(h->col.hb_after_stop, 0);
}

/* Past the task's deadline sg_task_heartbeat says "give up", and the handler does. */
static void test_heartbeat_past_deadline(void **state)
{
    h_t *h = *state;
    sg_transport_opts_t opts = opts_of(h, 1, 0, 0);
    opts.on_heartbeat = on_heartbeat;
    start(h, &opts);
    uint64_t t0 = now_ms();
    assert_int_equal(
        dispatch_hb(h, "test.sleep", 0, "{\"ms\":20000,\"heartbeat_every_ms\":10}", t0 + 1000, 60),
        SG_OK);
    assert_true(wait_results(&h->col, 1));
    uint64_t took = now_ms() - t0;
    assert_string_equal(h->col.last_code, "test.abandoned");
    assert_true(took >= 1000 && took < 15000);
    assert_true(h->col.hb[0].n >= 1);
    assert_int_equal(h->col.hb_after_result, 0);
}

static void test_start_oom(void **state)
{
    h_t *h = *state;
    char err[256] = "";
    sg_transport_opts_t opts = opts_of(h, 3, 0, 0);
    opts.on_heartbeat = on_heartbeat;
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
        cmocka_unit_test_setup_teardown(test_heartbeats_periodic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeats_end_with_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_past_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_oom, setup, teardown),
    };
    return cmocka_run_group_tests_name("transport", tests, NULL, NULL);
}
