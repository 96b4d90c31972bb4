/*
 * test activities: the "test" queue that tests and benchmarks build sagas from
 * (sagad --test-activities): echo, fail, sleep, flaky.
 *
 * Inputs: echo {anything} answers its input; fail {"fail": true} fails fatally
 * ("test.failed"); flaky {"failures": n} fails retryably on attempts 1..n; sleep
 * {"ms": n} sleeps n ms (at most 60 s, cut at the deadline: retryable "test.deadline")
 * and answers its input. With "heartbeat_every_ms": p it reports its progress every p ms
 * through sg_task_heartbeat() as {"slept_ms": n, "of": ms} and learns from that call when
 * to stop instead: it gives up with a retryable "test.abandoned" (no effect recorded)
 * once the attempt is no longer wanted (past its deadline, or the worker is stopping).
 *
 * Every call is written to its own SQLite file, <data_dir>/test-effects.db, so a test
 * can count effects after the fact, even after `kill -9` of the process serving it:
 *   effects(key PRIMARY KEY, ...)  one row per idempotency key: the first final outcome,
 *                                  "ok", "fatal" or "noop" (a compensation with nothing
 *                                  to undo); seq orders rows globally (1, 2, ...), which
 *                                  is how a checker sees compensations in reverse order.
 *   deliveries(key, attempt, ts_us) one row per call, whatever happened, ts_us = when
 *                                  the call began; with effects.ts_us (when the outcome
 *                                  was recorded) it shows how many calls overlapped.
 * The effect of an operation IS its effects row: it is committed (WAL, synchronous=FULL)
 * before the call returns, so "recorded" and "happened" cannot disagree after a crash.
 *
 * With SAGAD_TEST_EFFECTS=off in the environment the journal is not kept at all (no
 * file, no dedupe): benchmarks use it to measure the orchestrator rather than this
 * module's own fsync per call.
 *
 * This module must never be served unless asked for: it writes a row per call.
 */
#include "activities/activity.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLEEP_MAX_MS 60000u

struct sg_activity_ctx {
    bool journal; /* false with SAGAD_TEST_EFFECTS=off */
    /* One connection shared by every worker thread: SQLite has one writer anyway, and
     * the mutex keeps a statement's bind/step/reset sequence whole. */
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *lookup;
    sqlite3_stmt *put_effect;
    sqlite3_stmt *put_delivery;
    sqlite3_stmt *begin;
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS effects(key TEXT PRIMARY KEY, instance_id TEXT, step_id TEXT,"
    " activity TEXT, compensation INTEGER, attempt INTEGER, outcome TEXT, output TEXT,"
    " error_code TEXT, ts_us INTEGER, seq INTEGER);"
    "CREATE INDEX IF NOT EXISTS effects_seq ON effects(seq);"
    "CREATE TABLE IF NOT EXISTS deliveries(key TEXT, attempt INTEGER, ts_us INTEGER);"
    "CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries(key);";

/* The seq sub-select uses the index above, and runs inside the write transaction, so
 * two processes sharing the file cannot hand out the same number. */
static const char put_effect_sql[] =
    "INSERT INTO effects(key, instance_id, step_id, activity, compensation, attempt, outcome,"
    " output, error_code, ts_us, seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
    " (SELECT COALESCE(MAX(seq), 0) + 1 FROM effects))";

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- the recorded outcome of a key ---- */

typedef enum { REC_NONE, REC_OK, REC_FATAL, REC_NOOP } rec_kind_t;

typedef struct {
    rec_kind_t kind;
    char *output;
    char *error_code;
} rec_t;

static void rec_fini(rec_t *rec)
{
    sg_free(rec->output);
    sg_free(rec->error_code);
    memset(rec, 0, sizeof(*rec));
}

static void store_fail(sg_activity_ctx_t *ctx, sg_task_result_t *res, const char *what)
{
    /* Nothing was recorded, so running again is safe: retryable. */
    sg_task_fail(res, SG_TASK_RETRYABLE, "test.store", "test-effects.db: %s: %s", what,
                 sqlite3_errmsg(ctx->db));
}

/*
 * Reads the row of key into rec (REC_NONE if absent). Returns false on a database
 * error or a row this module did not write; res then holds the failure. Caller holds mu.
 */
static bool rec_load(sg_activity_ctx_t *ctx, const char *key, rec_t *rec, sg_task_result_t *res)
{
    sqlite3_stmt *s = ctx->lookup;
    bool ok = false;
    memset(rec, 0, sizeof(*rec));
    if (sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC) != SQLITE_OK) {
        store_fail(ctx, res, "lookup");
        goto out;
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        ok = true;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        store_fail(ctx, res, "lookup");
        goto out;
    }
    const char *outcome = (const char *)sqlite3_column_text(s, 0);
    const char *output = (const char *)sqlite3_column_text(s, 1);
    const char *code = (const char *)sqlite3_column_text(s, 2);
    if (outcome != NULL && strcmp(outcome, "ok") == 0 && output != NULL) {
        rec->kind = REC_OK;
    } else if (outcome != NULL && strcmp(outcome, "noop") == 0 && output != NULL) {
        rec->kind = REC_NOOP;
    } else if (outcome != NULL && strcmp(outcome, "fatal") == 0 && code != NULL) {
        rec->kind = REC_FATAL;
    } else {
        sg_task_fail(res, SG_TASK_RETRYABLE, "test.store",
                     "test-effects.db: the row of key \"%s\" is not one this module wrote", key);
        goto out;
    }
    rec->output = output != NULL ? sg_strdup(output) : NULL;
    rec->error_code = code != NULL ? sg_strdup(code) : NULL;
    if ((output != NULL && rec->output == NULL) || (code != NULL && rec->error_code == NULL)) {
        rec_fini(rec);
        sg_task_result_fini(res);
        res->outcome = SG_TASK_RETRYABLE; /* the out-of-memory form, see activity.h */
        goto out;
    }
    ok = true;
out:
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return ok;
}

/* The answer to a delivery of a key that already has its outcome. */
static void rec_replay(const rec_t *rec, sg_task_result_t *res)
{
    if (rec->kind == REC_FATAL) {
        sg_task_fail(res, SG_TASK_FATAL, rec->error_code,
                     "%s (the recorded outcome of an earlier delivery of this task)",
                     rec->error_code);
    } else {
        sg_task_ok(res, rec->output);
    }
}

static bool step_done(sg_activity_ctx_t *ctx, sqlite3_stmt *s, sg_task_result_t *res,
                      const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) {
        store_fail(ctx, res, what);
        return false;
    }
    return true;
}

static bool put_delivery(sg_activity_ctx_t *ctx, const sg_task_t *task, uint64_t start_us,
                         sg_task_result_t *res)
{
    sqlite3_stmt *s = ctx->put_delivery;
    sqlite3_bind_text(s, 1, task->idempotency_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, task->attempt);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)start_us);
    return step_done(ctx, s, res, "recording the delivery");
}

static bool put_effect(sg_activity_ctx_t *ctx, const sg_task_t *task, const char *outcome,
                       const char *output, const char *code, sg_task_result_t *res)
{
    sqlite3_stmt *s = ctx->put_effect;
    sqlite3_bind_text(s, 1, task->idempotency_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, task->instance_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, task->step_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, task->activity, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 5, task->compensation ? 1 : 0);
    sqlite3_bind_int64(s, 6, task->attempt);
    sqlite3_bind_text(s, 7, outcome, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, output, -1, SQLITE_STATIC); /* NULL binds SQL NULL */
    sqlite3_bind_text(s, 9, code, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 10, (sqlite3_int64)now_us());
    return step_done(ctx, s, res, "recording the effect");
}

/* ---- the operations: pure functions of the task, except for sleeping ---- */

typedef void (*perform_fn)(const sg_task_t *task, const cJSON *in, sg_task_result_t *res);

/* A non-negative integer field of in, or false with an invalid_input result. */
static bool int_field(const cJSON *in, const char *name, uint64_t *out, sg_task_result_t *res)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, name);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(uint64_t)v->valuedouble) {
        sg_task_fail(res, SG_TASK_FATAL, "test.invalid_input",
                     "input field \"%s\" must be a non-negative integer", name);
        return false;
    }
    *out = (uint64_t)v->valuedouble;
    return true;
}

static void perform_echo(const sg_task_t *task, const cJSON *in, sg_task_result_t *res)
{
    (void)in;
    sg_task_ok(res, task->input);
}

static void perform_fail(const sg_task_t *task, const cJSON *in, sg_task_result_t *res)
{
    const cJSON *fail = cJSON_IsObject(in) ? cJSON_GetObjectItemCaseSensitive(in, "fail") : NULL;
    if (fail != NULL && !cJSON_IsBool(fail)) {
        sg_task_fail(res, SG_TASK_FATAL, "test.invalid_input",
                     "input field \"fail\" must be true or false");
    } else if (cJSON_IsTrue(fail)) {
        sg_task_fail(res, SG_TASK_FATAL, "test.failed",
                     "failed on purpose: input has \"fail\": true");
    } else {
        sg_task_ok(res, task->input);
    }
}

static void sleep_until_ms(uint64_t until_ms)
{
    struct timespec ts = {.tv_sec = (time_t)(until_ms / 1000),
                          .tv_nsec = (long)(until_ms % 1000) * 1000000L};
    /* Absolute time, so an interrupted sleep resumes without drifting. */
    while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* Sleeps from start until `until`, heartbeating {"slept_ms", "of"} each `every` ms.
 * False when sg_task_heartbeat said to give up (which is also how the deadline shows);
 * res then holds the failure. */
static bool sleep_beating(const sg_task_t *task, uint64_t start, uint64_t until, uint64_t every,
                          uint64_t ms, sg_task_result_t *res)
{
    for (uint64_t beat = start + every; beat < until; beat += every) {
        sleep_until_ms(beat);
        char progress[80];
        snprintf(progress, sizeof(progress), "{\"slept_ms\":%llu,\"of\":%llu}",
                 (unsigned long long)(beat - start), (unsigned long long)ms);
        if (!sg_task_heartbeat(task, progress)) {
            /* Nothing is recorded for a retryable failure: a retry sleeps again. */
            sg_task_fail(res, SG_TASK_RETRYABLE, "test.abandoned",
                         "gave up after %llu of %llu ms: the attempt is no longer wanted "
                         "(past its deadline, or the worker is stopping)",
                         (unsigned long long)(beat - start), (unsigned long long)ms);
            return false;
        }
    }
    sleep_until_ms(until);
    return true;
}

static void perform_sleep(const sg_task_t *task, const cJSON *in, sg_task_result_t *res)
{
    uint64_t ms, every = 0;
    if (!int_field(in, "ms", &ms, res)) {
        return;
    }
    if (cJSON_GetObjectItemCaseSensitive(in, "heartbeat_every_ms") != NULL &&
        !int_field(in, "heartbeat_every_ms", &every, res)) {
        return;
    }
    if (ms > SLEEP_MAX_MS) {
        ms = SLEEP_MAX_MS;
    }
    uint64_t now = now_us() / 1000;
    uint64_t until = now + ms;
    if (every != 0) {
        if (sleep_beating(task, now, until, every, ms, res)) {
            sg_task_ok(res, task->input);
        }
        return;
    }
    bool cut = task->deadline_ms != 0 && task->deadline_ms < until;
    if (cut) {
        until = task->deadline_ms > now ? task->deadline_ms : now;
    }
    sleep_until_ms(until);
    if (cut) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "test.deadline",
                     "gave up at the deadline after %llu of %llu ms",
                     (unsigned long long)(until - now), (unsigned long long)ms);
    } else {
        sg_task_ok(res, task->input);
    }
}

static void perform_flaky(const sg_task_t *task, const cJSON *in, sg_task_result_t *res)
{
    uint64_t failures;
    if (!int_field(in, "failures", &failures, res)) {
        return;
    }
    if (task->attempt <= failures) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "test.flaky",
                     "attempt %u fails on purpose (the first %llu do)", (unsigned)task->attempt,
                     (unsigned long long)failures);
    } else {
        sg_task_ok(res, task->input);
    }
}

static void perform(const sg_task_t *task, perform_fn fn, sg_task_result_t *res)
{
    if (task->input == NULL) {
        sg_task_fail(res, SG_TASK_FATAL, "test.invalid_input", "the task has no input");
        return;
    }
    /* cJSON allocates with malloc and reports out-of-memory as a parse error; a test
     * module can live with calling that invalid input. */
    cJSON *in = cJSON_Parse(task->input);
    if (in == NULL) {
        sg_task_fail(res, SG_TASK_FATAL, "test.invalid_input", "the input is not JSON text");
        return;
    }
    fn(task, in, res);
    cJSON_Delete(in);
}

/* ---- one call: look up, perform, record ---- */

/*
 * What a call does when its key has no outcome yet: run the operation; or, for a
 * compensation whose forward effect never happened, nothing ("noop"); or, for a
 * forward task delivered after its compensation (a timed-out attempt arriving late),
 * nothing either, reported as fatal "test.already_compensated".
 */
typedef enum { PLAN_REPLAY, PLAN_RUN, PLAN_NOOP, PLAN_BLOCKED } plan_t;

/* Decides the plan from the database; *rec gets the key's own row. Caller holds mu. */
static bool plan_load(sg_activity_ctx_t *ctx, const sg_task_t *task, plan_t *plan, rec_t *rec,
                      sg_task_result_t *res)
{
    if (!rec_load(ctx, task->idempotency_key, rec, res)) {
        return false;
    }
    if (rec->kind != REC_NONE) {
        *plan = PLAN_REPLAY;
        return true;
    }
    /* The other half of the pair: forward key "<instance>/<step_id>" and its
     * compensation "<instance>/<step_id>/compensate". */
    char *other = sg_task_key(task->instance_id, task->step_id, !task->compensation);
    if (other == NULL) {
        sg_task_result_fini(res);
        res->outcome = SG_TASK_RETRYABLE;
        return false;
    }
    rec_t orec;
    bool ok = rec_load(ctx, other, &orec, res);
    sg_free(other);
    if (!ok) {
        return false;
    }
    if (task->compensation) {
        *plan = orec.kind == REC_OK ? PLAN_RUN : PLAN_NOOP;
    } else {
        *plan = orec.kind == REC_NONE ? PLAN_RUN : PLAN_BLOCKED;
    }
    rec_fini(&orec);
    return true;
}

/* Records the call (and, for a final outcome, the effect) in one transaction, deciding
 * again under the write lock because another delivery may have recorded meanwhile. */
static void record(sg_activity_ctx_t *ctx, const sg_task_t *task, plan_t plan0, uint64_t start_us,
                   sg_task_result_t *res)
{
    rec_t rec = {0};
    plan_t plan;
    sg_task_result_t err = {0};
    sg_task_result_t ignored = {0}; /* a failed rollback: the first error is the one to tell */
    if (!step_done(ctx, ctx->begin, &err, "begin")) {
        goto fail;
    }
    if (!plan_load(ctx, task, &plan, &rec, &err) || !put_delivery(ctx, task, start_us, &err)) {
        goto rollback;
    }
    bool ok = true;
    if (plan == PLAN_REPLAY) {
        rec_replay(&rec, res); /* first recorded outcome wins; this call's is dropped */
    } else if (plan == PLAN_NOOP && plan0 == PLAN_NOOP) {
        sg_task_ok(res, "{\"noop\":true}");
        if (res->outcome == SG_TASK_OK) {
            ok = put_effect(ctx, task, "noop", res->output, NULL, &err);
        }
    } else if (plan == PLAN_BLOCKED) {
        sg_task_fail(res, SG_TASK_FATAL, "test.already_compensated",
                     "this step was compensated before the task arrived; nothing was done");
        if (res->outcome == SG_TASK_FATAL) {
            ok = put_effect(ctx, task, "fatal", NULL, res->error_code, &err);
        }
    } else if (plan != plan0) {
        /* The forward effect appeared while this compensation was skipping it: let the
         * retry undo it. */
        sg_task_fail(res, SG_TASK_RETRYABLE, "test.raced",
                     "the forward effect was recorded while this compensation ran; retry");
    } else if (res->outcome != SG_TASK_RETRYABLE) {
        bool fatal = res->outcome == SG_TASK_FATAL;
        ok = put_effect(ctx, task, fatal ? "fatal" : "ok", res->output, res->error_code, &err);
    }
    if (!ok || !step_done(ctx, ctx->commit, &err, "commit")) {
        goto rollback;
    }
    rec_fini(&rec);
    return;
rollback:
    step_done(ctx, ctx->rollback, &ignored, "rollback");
    sg_task_result_fini(&ignored);
fail:
    rec_fini(&rec);
    sg_task_result_fini(res);
    *res = err; /* takes the strings */
}

static void run_task(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res,
                     perform_fn fn)
{
    if (task->idempotency_key == NULL || task->instance_id == NULL || task->step_id == NULL ||
        task->activity == NULL) {
        sg_task_fail(res, SG_TASK_FATAL, "test.invalid_input",
                     "the task lacks an idempotency key, instance id, step id or activity");
        return;
    }
    if (!ctx->journal) {
        perform(task, fn, res);
        return;
    }
    uint64_t start_us = now_us();
    rec_t rec;
    plan_t plan;
    pthread_mutex_lock(&ctx->mu);
    bool ok = plan_load(ctx, task, &plan, &rec, res);
    pthread_mutex_unlock(&ctx->mu);
    rec_fini(&rec);
    if (!ok) {
        return;
    }
    /* The operation runs outside the lock: test.sleep must not hold up other calls. */
    if (plan == PLAN_RUN) {
        perform(task, fn, res);
    }
    pthread_mutex_lock(&ctx->mu);
    record(ctx, task, plan, start_us, res);
    pthread_mutex_unlock(&ctx->mu);
}

#define TEST_OP(name)                                                                            \
    static void run_##name(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res) \
    {                                                                                            \
        run_task(ctx, task, res, perform_##name);                                                \
    }
TEST_OP(echo)
TEST_OP(fail)
TEST_OP(sleep)
TEST_OP(flaky)

/* ---- open / close ---- */

static void test_close(sg_activity_ctx_t *ctx)
{
    if (ctx == NULL) {
        return;
    }
    sqlite3_finalize(ctx->lookup);
    sqlite3_finalize(ctx->put_effect);
    sqlite3_finalize(ctx->put_delivery);
    sqlite3_finalize(ctx->begin);
    sqlite3_finalize(ctx->commit);
    sqlite3_finalize(ctx->rollback);
    sqlite3_close(ctx->db);
    pthread_mutex_destroy(&ctx->mu);
    sg_free(ctx);
}

/* WAL can be refused (a file system without shared memory): check what we got. Two
 * processes opening a new file at once race to switch it to WAL, and SQLite answers the
 * loser with SQLITE_BUSY without waiting (the busy timeout does not apply): try again,
 * a bounded number of times, as the services' kit does (seen in CI: two saga-workers
 * started together, one died with "database is locked"). */
static bool wal_on(sqlite3 *db)
{
    for (int i = 0; i < 200; i++) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(s);
        }
        if (rc == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(s, 0);
            bool on = mode != NULL && strcmp(mode, "wal") == 0;
            sqlite3_finalize(s);
            return on;
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
            return false;
        }
        sqlite3_sleep(25);
    }
    return false;
}

static sg_err_t test_open(const sg_activity_env_t *env, sg_activity_ctx_t **out, char *err,
                          size_t errlen)
{
    const char *data_dir = env ? env->data_dir : NULL;
    if (data_dir == NULL) {
        snprintf(err, errlen, "the test queue needs a data directory");
        return SG_ERR_INVALID;
    }
    sg_activity_ctx_t *ctx = sg_calloc(1, sizeof(*ctx));
    char *path = sg_asprintf("%s/test-effects.db", data_dir);
    if (ctx == NULL || path == NULL) {
        sg_free(ctx);
        sg_free(path);
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    pthread_mutex_init(&ctx->mu, NULL);
    const char *knob = getenv("SAGAD_TEST_EFFECTS");
    ctx->journal = knob == NULL || strcmp(knob, "off") != 0;
    if (!ctx->journal) {
        sg_free(path);
        *out = ctx;
        return SG_OK;
    }
    const char *what = "open";
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &ctx->db, flags, NULL) != SQLITE_OK) {
        goto fail;
    }
    /* Other processes (a checker, a saga-worker sharing the directory) may hold the
     * write lock for a moment. */
    sqlite3_busy_timeout(ctx->db, 5000);
    what = "journal_mode=WAL";
    if (!wal_on(ctx->db)) {
        goto fail;
    }
    what = "schema";
    if (sqlite3_exec(ctx->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(ctx->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
        goto fail;
    }
    what = "prepare";
    if (sqlite3_prepare_v2(ctx->db,
                           "SELECT outcome, output, error_code FROM effects WHERE key = ?1", -1,
                           &ctx->lookup, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ctx->db, put_effect_sql, -1, &ctx->put_effect, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ctx->db,
                           "INSERT INTO deliveries(key, attempt, ts_us) VALUES(?1, ?2, ?3)", -1,
                           &ctx->put_delivery, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ctx->db, "BEGIN IMMEDIATE", -1, &ctx->begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ctx->db, "COMMIT", -1, &ctx->commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(ctx->db, "ROLLBACK", -1, &ctx->rollback, NULL) != SQLITE_OK) {
        goto fail;
    }
    sg_free(path);
    *out = ctx;
    return SG_OK;
fail:
    snprintf(err, errlen, "%s: %s: %s", path, what,
             ctx->db != NULL ? sqlite3_errmsg(ctx->db) : "out of memory");
    sg_free(path);
    test_close(ctx);
    return SG_ERR_IO;
}

static const sg_activity_op_t test_ops[] = {
    {.name = "echo", .run = run_echo},
    {.name = "fail", .run = run_fail},
    {.name = "sleep", .run = run_sleep},
    {.name = "flaky", .run = run_flaky},
};

const sg_activity_module_t sg_activity_test_module = {
    .queue = "test",
    .ops = test_ops,
    .n_ops = SG_ARRAY_LEN(test_ops),
    .open = test_open,
    .close = test_close,
};
