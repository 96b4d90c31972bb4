/*
 * Integration tests of activity heartbeats (leases) in the driver: a real SQLite file and
 * the real driver, started through drv__start with a fake transport that records the
 * tasks it is given and lets the test play the worker: it sends heartbeats and results
 * through the callbacks the driver installed, exactly as a transport thread would.
 *
 * Timing is asserted on what the driver recorded (attempt rows: started_ms, heartbeat_ms,
 * finished_ms), never on how long the test slept; waits are bounded polls of a condition.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"

/* ---- a transport played by the test ---- */

typedef struct {
    char id[32];
    uint32_t step, attempt;
    bool compensation;
    uint64_t deadline_ms, heartbeat_ms;
} sent_t;

struct sg_transport {
    pthread_mutex_t mu;
    sg_transport_opts_t opts; /* on_result, on_heartbeat and ctx are what the test uses */
    sent_t sent[64];
    size_t n_sent;
};

/* The running fake (one driver at a time); the test calls its callbacks. */
static sg_transport_t *fake;

static sg_err_t fake_start(const sg_transport_opts_t *opts, sg_transport_t **out, char *err,
                           size_t errlen)
{
    (void)err;
    (void)errlen;
    sg_transport_t *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    pthread_mutex_init(&t->mu, NULL);
    t->opts = *opts;
    fake = t;
    *out = t;
    return SG_OK;
}

static sg_err_t fake_dispatch(sg_transport_t *t, const sg_task_t *task)
{
    pthread_mutex_lock(&t->mu);
    if (t->n_sent < SG_ARRAY_LEN(t->sent)) {
        sent_t *s = &t->sent[t->n_sent++];
        snprintf(s->id, sizeof(s->id), "%s", task->instance_id);
        s->step = task->step;
        s->attempt = task->attempt;
        s->compensation = task->compensation;
        s->deadline_ms = task->deadline_ms;
        s->heartbeat_ms = task->heartbeat_ms;
    }
    pthread_mutex_unlock(&t->mu);
    return SG_OK;
}

static void fake_stop(sg_transport_t *t)
{
    if (t != NULL) {
        fake = NULL;
        pthread_mutex_destroy(&t->mu);
        free(t);
    }
}

static const sg_transport_vt_t fake_vt = {
    .name = "fake", .start = fake_start, .dispatch = fake_dispatch, .stop = fake_stop};

/* The worker's side: a heartbeat of attempt (step, attempt, comp) of instance id. */
static void heartbeat(const char *id, uint32_t step, uint32_t attempt, bool comp,
                      const char *progress)
{
    sg_task_heartbeat_t hb = {.instance_id = id,
                              .step = step,
                              .attempt = attempt,
                              .compensation = comp,
                              .worker_id = "host:42",
                              .details = progress,
                              .sent_ms = sg_now_ms()};
    assert_non_null(fake->opts.on_heartbeat);
    fake->opts.on_heartbeat(fake->opts.ctx, &hb);
}

static void result_ok(const char *id, uint32_t step, uint32_t attempt, bool comp)
{
    sg_task_t task = {.instance_id = id, .step = step, .attempt = attempt, .compensation = comp};
    sg_task_result_t res = {0};
    sg_task_ok(&res, "{}");
    fake->opts.on_result(fake->opts.ctx, &task, &res);
    sg_task_result_fini(&res);
}

/* ---- fixture ---- */

typedef struct {
    char dir[64];
    char db[128];
    char wf[128];
    sg_driver_t *d;
} fx_t;

/* hb: a long step whose worker must heartbeat every 200 ms; retried once. whole: the
 * same with a short timeout and no retry, compensated when it times out. */
static const char hb_yaml[] = "saga: hb\nversion: 1\n"
                              "steps:\n"
                              "  - id: long\n    activity: test.sleep\n    input: '{ms: 1}'\n"
                              "    timeout: 3s\n    heartbeat: 200ms\n"
                              "    retry: {max_attempts: 2, initial: 10ms, max_delay: 10ms}\n"
                              "    compensate: none\n";
static const char whole_yaml[] = "saga: whole\nversion: 1\n"
                                 "steps:\n"
                                 "  - id: long\n    activity: test.sleep\n    input: '{ms: 1}'\n"
                                 "    timeout: 700ms\n    heartbeat: 200ms\n"
                                 "    retry: {max_attempts: 1}\n"
                                 "    compensate: {activity: test.echo, timeout: 10s}\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void start(fx_t *fx)
{
    sg_log_set_level(SG_LOG_ERROR);
    sg_driver_opts_t o = {
        .db_path = fx->db, .workflows_dir = fx->wf, .data_dir = fx->dir, .sync = SG_SYNC_NORMAL};
    char err[256] = "";
    sg_err_t rc = drv__start(&o, &fake_vt, &fx->d, err, sizeof(err));
    if (rc != SG_OK) {
        fail_msg("driver start: %s (%s)", sg_strerror(rc), err);
    }
    assert_non_null(fake);
}

static void stop(fx_t *fx)
{
    sg_driver_stop(fx->d);
    fx->d = NULL;
    assert_null(fake);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/sg_drvhbXXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->db, sizeof(fx->db), "%s/sagad.db", fx->dir);
    snprintf(fx->wf, sizeof(fx->wf), "%s/workflows", fx->dir);
    char path[192];
    snprintf(path, sizeof(path), "mkdir -p %s", fx->wf);
    assert_int_equal(system(path), 0);
    snprintf(path, sizeof(path), "%s/hb.yaml", fx->wf);
    write_file(path, hb_yaml);
    snprintf(path, sizeof(path), "%s/whole.yaml", fx->wf);
    write_file(path, whole_yaml);
    start(fx);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    sg_driver_stop(fx->d);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

/* ---- what the driver recorded ---- */

typedef struct {
    bool found;
    char status[16], error_code[48], worker[32], progress[64];
    int64_t started_ms, deadline_ms, heartbeat_ms, finished_ms;
} att_t;

static void copy_col(sqlite3_stmt *s, int i, char *out, size_t len)
{
    const unsigned char *v = sqlite3_column_text(s, i);
    snprintf(out, len, "%s", v != NULL ? (const char *)v : "-");
}

static att_t get_attempt(fx_t *fx, const char *id, int step, bool comp, int attempt)
{
    att_t a = {0};
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(fx->db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    int rc = sqlite3_prepare_v2(h,
                                "SELECT status, error_code, worker, progress, started_ms,"
                                " deadline_ms, heartbeat_ms, finished_ms FROM step_attempts"
                                " WHERE instance_id = ?1 AND step = ?2 AND compensation = ?3"
                                " AND attempt = ?4",
                                -1, &s, NULL);
    if (rc != SQLITE_OK) {
        fail_msg("attempt query: %s", sqlite3_errmsg(h));
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, step);
    sqlite3_bind_int(s, 3, comp ? 1 : 0);
    sqlite3_bind_int(s, 4, attempt);
    if (sqlite3_step(s) == SQLITE_ROW) {
        a.found = true;
        copy_col(s, 0, a.status, sizeof(a.status));
        copy_col(s, 1, a.error_code, sizeof(a.error_code));
        copy_col(s, 2, a.worker, sizeof(a.worker));
        copy_col(s, 3, a.progress, sizeof(a.progress));
        a.started_ms = sqlite3_column_int64(s, 4);
        a.deadline_ms = sqlite3_column_int64(s, 5);
        a.heartbeat_ms = sqlite3_column_int64(s, 6);
        a.finished_ms = sqlite3_column_int64(s, 7);
    }
    sqlite3_finalize(s);
    sqlite3_close(h);
    return a;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls until the attempt row exists and is no longer running; fails after 20 s. */
static att_t wait_finished(fx_t *fx, const char *id, int step, bool comp, int attempt)
{
    for (int i = 0; i < 4000; i++) {
        att_t a = get_attempt(fx, id, step, comp, attempt);
        if (a.found && strcmp(a.status, "running") != 0) {
            return a;
        }
        sleep_ms(5);
    }
    fail_msg("attempt %d of %s step %d never finished", attempt, id, step);
    return (att_t){0};
}

/* Polls until the fake transport got that task; its record. Fails after 20 s. */
static sent_t wait_dispatched(const char *id, uint32_t step, uint32_t attempt, bool comp,
                              size_t nth)
{
    for (int i = 0; i < 4000; i++) {
        size_t seen = 0;
        pthread_mutex_lock(&fake->mu);
        for (size_t k = 0; k < fake->n_sent; k++) {
            const sent_t *s = &fake->sent[k];
            if (strcmp(s->id, id) == 0 && s->step == step && s->attempt == attempt &&
                s->compensation == comp && ++seen == nth) {
                sent_t copy = *s;
                pthread_mutex_unlock(&fake->mu);
                return copy;
            }
        }
        pthread_mutex_unlock(&fake->mu);
        sleep_ms(5);
    }
    fail_msg("attempt %u of %s step %u was never dispatched", attempt, id, step);
    return (sent_t){.step = 0};
}

/* Polls until a heartbeat counter reaches n (the driver applied what was sent). */
static double hb_count(fx_t *fx, const char *result)
{
    sg_metric_t *f =
        sg_metrics_counter(sg_driver_metrics(fx->d), "sagad_heartbeats_total", "", "result", 3);
    assert_non_null(f);
    return sg_series_value(sg_metric_series(f, (const char *[]){result}));
}

static void wait_hb_count(fx_t *fx, const char *result, double n)
{
    for (int i = 0; i < 4000 && hb_count(fx, result) < n; i++) {
        sleep_ms(5);
    }
    assert_true(hb_count(fx, result) == n);
}

static double timeouts(fx_t *fx, const char *code)
{
    sg_metric_t *f =
        sg_metrics_counter(sg_driver_metrics(fx->d), "sagad_attempt_timeouts_total", "", "code", 8);
    assert_non_null(f);
    return sg_series_value(sg_metric_series(f, (const char *[]){code}));
}

static long long query_int(fx_t *fx, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(fx->db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
    long long v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

static const char *inst_status(fx_t *fx, const char *id)
{
    static const char *const names[] = {"RUNNING", "COMPLETED", "COMPENSATING", "COMPENSATED",
                                        "FAILED"};
    char sql[160];
    for (size_t i = 0; i < SG_ARRAY_LEN(names); i++) {
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM instances WHERE id = '%s' AND status = '%s'", id, names[i]);
        if (query_int(fx, sql) == 1) {
            return names[i];
        }
    }
    return "?";
}

/* Sends heartbeats for attempt 1 of step 0 every ~60 ms for about ms; returns how many. */
static int heartbeat_for(const char *id, uint32_t attempt, uint64_t ms)
{
    uint64_t end = sg_now_ms() + ms;
    int n = 0;
    char progress[32];
    while (sg_now_ms() < end) {
        snprintf(progress, sizeof(progress), "{\"done\":%d}", ++n);
        heartbeat(id, 0, attempt, false, progress);
        sleep_ms(60);
    }
    return n;
}

/* ---- tests ---- */

/* Heartbeats keep a 3 s attempt alive for a second; when they stop, it times out one
 * heartbeat timeout after the last, well before its 3 s, and is retried. */
static void test_heartbeat_timeout_retries(void **state)
{
    fx_t *fx = *state;
    sg_start_result_t r;
    assert_int_equal(sg_driver_start_saga(fx->d, "hb", 0, "{}", NULL, &r, NULL), SG_OK);
    sent_t t = wait_dispatched(r.id, 0, 1, false, 1);
    assert_int_equal(t.heartbeat_ms, 200); /* the worker learns its heartbeat timeout */
    att_t a = get_attempt(fx, r.id, 0, false, 1);
    assert_int_equal(a.deadline_ms, a.started_ms + 3000);
    assert_int_equal(a.heartbeat_ms, 0);

    int sent = heartbeat_for(r.id, 1, 1000);
    assert_true(sent >= 5);
    a = wait_finished(fx, r.id, 0, false, 1);
    assert_string_equal(a.status, "timeout");
    assert_string_equal(a.error_code, "saga.heartbeat_timeout");
    /* The row shows the last heartbeat: who sent it and its progress. */
    assert_string_equal(a.worker, "host:42");
    char last[32];
    snprintf(last, sizeof(last), "{\"done\":%d}", sent);
    assert_string_equal(a.progress, last);
    /* Kept alive by the heartbeats, then timed out one heartbeat timeout after the last
     * (the bound on lateness is loose: the engine thread may be slow under valgrind). */
    assert_true(a.heartbeat_ms >= a.started_ms + 800);
    assert_true(a.finished_ms >= a.heartbeat_ms + 200);
    assert_true(a.finished_ms < a.heartbeat_ms + 200 + 1000);
    assert_true(a.finished_ms < a.started_ms + 3000);
    assert_true(timeouts(fx, "saga.heartbeat_timeout") == 1);
    assert_true(timeouts(fx, "saga.timeout") == 0);
    wait_hb_count(fx, "applied", sent);
    assert_true(hb_count(fx, "stale") == 0);

    /* A late heartbeat of the finished attempt is stale: it changes nothing. */
    heartbeat(r.id, 0, 1, false, "{\"late\":true}");
    wait_hb_count(fx, "stale", 1);
    att_t again = get_attempt(fx, r.id, 0, false, 1);
    assert_int_equal(again.heartbeat_ms, a.heartbeat_ms);
    assert_string_equal(again.progress, a.progress);

    /* Its policy retries it: attempt 2 runs with a fresh lease and completes. */
    t = wait_dispatched(r.id, 0, 2, false, 1);
    assert_int_equal(t.heartbeat_ms, 200);
    heartbeat(r.id, 0, 2, false, NULL);
    wait_hb_count(fx, "applied", sent + 1);
    a = get_attempt(fx, r.id, 0, false, 2);
    assert_string_equal(a.status, "running");
    assert_true(a.heartbeat_ms >= a.started_ms);
    assert_string_equal(a.progress, "-"); /* none given yet */
    result_ok(r.id, 0, 2, false);
    assert_true(sg_driver_wait_idle(fx->d, 20000));
    assert_string_equal(inst_status(fx, r.id), "COMPLETED");
    a = get_attempt(fx, r.id, 0, false, 2);
    assert_string_equal(a.status, "ok");
}

/* Heartbeats that name no running attempt (or a step without a heartbeat timeout) are
 * counted as stale and change nothing: the attempt keeps its whole timeout. */
static void test_stale_heartbeats_change_nothing(void **state)
{
    fx_t *fx = *state;
    sg_start_result_t r;
    assert_int_equal(sg_driver_start_saga(fx->d, "hb", 0, "{}", NULL, &r, NULL), SG_OK);
    wait_dispatched(r.id, 0, 1, false, 1);
    heartbeat(r.id, 0, 2, false, "{}"); /* an attempt that does not run */
    heartbeat(r.id, 0, 1, true, "{}");  /* no compensation runs */
    heartbeat(r.id, 7, 1, false, "{}"); /* no such step */
    heartbeat("01NOSUCHINSTANCE0000000000", 0, 1, false, "{}");
    wait_hb_count(fx, "stale", 4);
    assert_true(hb_count(fx, "applied") == 0);
    att_t a = get_attempt(fx, r.id, 0, false, 1);
    assert_string_equal(a.status, "running");
    assert_int_equal(a.heartbeat_ms, 0);
    assert_string_equal(a.worker, "-");
    assert_int_equal(query_int(fx, "SELECT count(*) FROM step_attempts WHERE heartbeat_ms IS NOT"
                                   " NULL"),
                     0);
    /* Nothing else may be in the instance's history either: heartbeats are not audited. */
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM history WHERE instance_id = '%s'", r.id);
    long long hist = query_int(fx, sql);
    heartbeat(r.id, 0, 1, false, "{\"done\":1}");
    wait_hb_count(fx, "applied", 1);
    assert_int_equal(query_int(fx, sql), hist);
    /* A progress too big to record every few seconds is dropped; the last one stays. */
    char big[5000];
    memset(big, '1', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    heartbeat(r.id, 0, 1, false, big);
    wait_hb_count(fx, "applied", 2);
    assert_string_equal(get_attempt(fx, r.id, 0, false, 1).progress, "{\"done\":1}");
    result_ok(r.id, 0, 1, false);
    assert_true(sg_driver_wait_idle(fx->d, 20000));
    /* A heartbeat after the result is stale too. */
    heartbeat(r.id, 0, 1, false, "{\"done\":2}");
    wait_hb_count(fx, "stale", 5);
    a = get_attempt(fx, r.id, 0, false, 1);
    assert_string_equal(a.status, "ok");
    assert_string_equal(a.progress, "{\"done\":1}");
}

/* Heartbeats are lossy: with two batches' worth of work waiting, the engine is behind
 * and a heartbeat is dropped (counted) instead of growing the queue. */
static void test_heartbeats_dropped_when_engine_behind(void **state)
{
    fx_t *fx = *state;
    sg_start_result_t r;
    assert_int_equal(sg_driver_start_saga(fx->d, "hb", 0, "{}", NULL, &r, NULL), SG_OK);
    wait_dispatched(r.id, 0, 1, false, 1);
    sg_driver_t *d = fx->d;
    size_t backlog = 2 * d->opts.max_batch;
    pthread_mutex_lock(&d->mu);
    d->queued += backlog; /* as if that many items waited */
    pthread_mutex_unlock(&d->mu);
    heartbeat(r.id, 0, 1, false, "{\"done\":1}");
    heartbeat(r.id, 0, 1, false, "{\"done\":2}");
    pthread_mutex_lock(&d->mu);
    d->queued -= backlog;
    pthread_mutex_unlock(&d->mu);
    assert_true(hb_count(fx, "dropped") == 2);
    heartbeat(r.id, 0, 1, false, "{\"done\":3}");
    wait_hb_count(fx, "applied", 1);
    assert_true(hb_count(fx, "dropped") == 2);
    assert_string_equal(get_attempt(fx, r.id, 0, false, 1).progress, "{\"done\":3}");
}

/* Counts the dispatches of one attempt the fake transport got. */
static size_t dispatches_of(const char *id, uint32_t step, uint32_t attempt, bool comp)
{
    size_t n = 0;
    pthread_mutex_lock(&fake->mu);
    for (size_t k = 0; k < fake->n_sent; k++) {
        const sent_t *s = &fake->sent[k];
        n += strcmp(s->id, id) == 0 && s->step == step && s->attempt == attempt &&
             s->compensation == comp;
    }
    pthread_mutex_unlock(&fake->mu);
    return n;
}

/* A heartbeat whose attempt row cannot be written (here: finished behind the driver's
 * back) is skipped with a warning; its batch still commits. A failed batch would reload
 * every live instance and dispatch their running attempts again: none is. */
static void test_heartbeat_write_failure_keeps_batch(void **state)
{
    fx_t *fx = *state;
    sg_start_result_t r, other, last;
    assert_int_equal(sg_driver_start_saga(fx->d, "hb", 0, "{}", NULL, &other, NULL), SG_OK);
    assert_int_equal(sg_driver_start_saga(fx->d, "hb", 0, "{}", NULL, &r, NULL), SG_OK);
    wait_dispatched(other.id, 0, 1, false, 1);
    wait_dispatched(r.id, 0, 1, false, 1);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(fx->db, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    char sql[160];
    snprintf(sql, sizeof(sql), "UPDATE step_attempts SET status = 'stale' WHERE instance_id = '%s'",
             r.id);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    heartbeat(r.id, 0, 1, false, "{\"done\":1}");
    heartbeat(r.id, 0, 1, false, "{\"done\":2}");
    wait_hb_count(fx, "applied", 2);
    /* answered after every batch before it: a recovery would have run by now */
    assert_int_equal(sg_driver_start_saga(fx->d, "whole", 0, "{}", NULL, &last, NULL), SG_OK);
    assert_true(sg_driver_ready(fx->d));
    assert_int_equal(dispatches_of(other.id, 0, 1, false), 1);
    att_t a = get_attempt(fx, r.id, 0, false, 1);
    assert_string_equal(a.status, "stale");
    assert_int_equal(a.heartbeat_ms, 0);
}

/* Without heartbeats an attempt has its whole timeout (it may wait in a queue), then
 * times out as saga.timeout; its saga compensates it. */
static void test_whole_timeout_without_heartbeats(void **state)
{
    fx_t *fx = *state;
    sg_start_result_t r;
    assert_int_equal(sg_driver_start_saga(fx->d, "whole", 0, "{}", NULL, &r, NULL), SG_OK);
    wait_dispatched(r.id, 0, 1, false, 1);
    att_t a = wait_finished(fx, r.id, 0, false, 1);
    assert_string_equal(a.status, "timeout");
    assert_string_equal(a.error_code, "saga.timeout");
    assert_true(a.finished_ms >= a.started_ms + 700);
    assert_int_equal(a.heartbeat_ms, 0);
    assert_true(timeouts(fx, "saga.timeout") == 1);
    /* The effect may have happened: the timed-out step is compensated. */
    wait_dispatched(r.id, 0, 1, true, 1);
    result_ok(r.id, 0, 1, true);
    assert_true(sg_driver_wait_idle(fx->d, 20000));
    assert_string_equal(inst_status(fx, r.id), "COMPENSATED");
}

/* Heartbeats never extend an attempt past its own timeout (its lease's end): a stuck
 * handler in a live worker still times out, as saga.timeout. */
static void test_lease_end_bounds_heartbeats(void **state)
{
    fx_t *fx = *state;
    sg_start_result_t r;
    assert_int_equal(sg_driver_start_saga(fx->d, "whole", 0, "{}", NULL, &r, NULL), SG_OK);
    wait_dispatched(r.id, 0, 1, false, 1);
    att_t a = {0};
    for (int i = 0; i < 400; i++) { /* heartbeats until it is over (bounded: 400 x 20 ms) */
        heartbeat(r.id, 0, 1, false, NULL);
        a = get_attempt(fx, r.id, 0, false, 1);
        if (strcmp(a.status, "running") != 0) {
            break;
        }
        sleep_ms(20);
    }
    assert_string_equal(a.status, "timeout");
    assert_string_equal(a.error_code, "saga.timeout");
    assert_true(a.finished_ms >= a.started_ms + 700);
    assert_true(a.heartbeat_ms > a.started_ms);
    assert_true(hb_count(fx, "applied") >= 2);
}

/* After a restart a running attempt is dispatched again with a fresh whole timeout, and
 * heartbeats shorten it again. */
static void test_restart_fresh_timeout_then_heartbeats(void **state)
{
    fx_t *fx = *state;
    sg_start_result_t r;
    assert_int_equal(sg_driver_start_saga(fx->d, "hb", 0, "{}", NULL, &r, NULL), SG_OK);
    wait_dispatched(r.id, 0, 1, false, 1);
    stop(fx);
    uint64_t restart = sg_now_ms();
    start(fx);
    sent_t t = wait_dispatched(r.id, 0, 1, false, 1);
    assert_int_equal(t.heartbeat_ms, 200);
    assert_true(t.deadline_ms >= restart + 3000); /* the whole timeout, afresh */
    int sent = heartbeat_for(r.id, 1, 400);
    att_t a = wait_finished(fx, r.id, 0, false, 1);
    assert_string_equal(a.status, "timeout");
    assert_string_equal(a.error_code, "saga.heartbeat_timeout");
    assert_true(a.heartbeat_ms >= (int64_t)restart);
    assert_true(a.finished_ms >= a.heartbeat_ms + 200);
    assert_true(a.finished_ms < (int64_t)t.deadline_ms);
    wait_hb_count(fx, "applied", sent);
    /* retried as its policy says, then done */
    wait_dispatched(r.id, 0, 2, false, 1);
    result_ok(r.id, 0, 2, false);
    assert_true(sg_driver_wait_idle(fx->d, 20000));
    assert_string_equal(inst_status(fx, r.id), "COMPLETED");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_heartbeat_timeout_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_heartbeats_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_write_failure_keeps_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeats_dropped_when_engine_behind, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_whole_timeout_without_heartbeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_end_bounds_heartbeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_fresh_timeout_then_heartbeats, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("driver_heartbeat", tests, NULL, NULL);
}
