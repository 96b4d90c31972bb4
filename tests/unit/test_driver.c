/*
 * Integration tests of the driver with a real SQLite file and the embedded workers
 * running the built-in test activities: sagas run end to end, compensate, start
 * idempotently, survive a stop and restart in the middle, and are acknowledged only
 * once durable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/driver/driver.h"
#include "orchestrator/log/log.h"

typedef struct {
    char dir[64];
    char db[128];
    char wf[128];
    sg_driver_t *d;
} fx_t;

static const char saga_yaml[] =
    "saga: t\nversion: 1\n"
    "input:\n  schema: {type: object, properties: {fail: {type: boolean}}}\n"
    "defaults: {timeout: 10s, retry: {max_attempts: 3, initial: 10ms, max_delay: 50ms}}\n"
    "events: {on_complete: [t.done], on_compensated: [t.undone]}\n"
    "steps:\n"
    "  - id: a\n    activity: test.echo\n    input: '{n: 1}'\n"
    "    compensate: {activity: test.echo, input: '{undo: .steps.a.output.n}'}\n"
    "  - id: b\n    activity: test.flaky\n    input: '{failures: 1}'\n"
    "    compensate: {activity: test.echo}\n"
    "  - id: c\n    activity: test.fail\n    input: '{fail: (.input.fail // false)}'\n"
    "    pivot: true\n"
    "  - id: d\n    activity: test.echo\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void start(fx_t *fx)
{
    sg_log_set_level(SG_LOG_WARN);
    sg_driver_opts_t o = {.db_path = fx->db,
                          .workflows_dir = fx->wf,
                          .data_dir = fx->dir,
                          .test_activities = true,
                          .threads = 4,
                          .sync = SG_SYNC_NORMAL};
    char err[256] = "";
    sg_err_t rc = sg_driver_start(&o, &fx->d, err, sizeof(err));
    if (rc != SG_OK) {
        fail_msg("driver start: %s (%s)", sg_strerror(rc), err);
    }
    assert_true(sg_driver_ready(fx->d));
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/sg_drvXXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->db, sizeof(fx->db), "%s/sagad.db", fx->dir);
    snprintf(fx->wf, sizeof(fx->wf), "%s/workflows", fx->dir);
    char path[192];
    snprintf(path, sizeof(path), "mkdir -p %s", fx->wf);
    assert_int_equal(system(path), 0);
    snprintf(path, sizeof(path), "%s/t.yaml", fx->wf);
    write_file(path, saga_yaml);
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

/* Reads one integer with SQL from a database file (a separate connection). */
static long long query_int(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK) {
        fail_msg("%s: %s", sql, sqlite3_errmsg(h));
    }
    long long v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static long long count_status(fx_t *fx, const char *status)
{
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM instances WHERE status = '%s'", status);
    return query_int(fx->db, sql);
}

static void test_runs_to_completion_and_compensation(void **state)
{
    fx_t *fx = *state;
    sg_start_result_t ok_res, bad_res;
    assert_int_equal(sg_driver_start_saga(fx->d, "t", 0, "{\"fail\":false}", NULL, &ok_res, NULL),
                     SG_OK);
    assert_true(ok_res.created);
    assert_int_equal(sg_driver_start_saga(fx->d, "t", 0, "{\"fail\":true}", NULL, &bad_res, NULL),
                     SG_OK);
    assert_true(sg_driver_wait_idle(fx->d, 30000));
    assert_int_equal(count_status(fx, "COMPLETED"), 1);
    assert_int_equal(count_status(fx, "COMPENSATED"), 1);
    char sql[256];
    /* the failing saga undid b then a (reverse order), and published its event */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM history WHERE instance_id = '%s' AND type = 'step_compensated'",
             bad_res.id);
    assert_int_equal(query_int(fx->db, sql), 2);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM events WHERE correlation_id = '%s' AND type = 't.undone'",
             bad_res.id);
    assert_int_equal(query_int(fx->db, sql), 1);
    /* b failed once (flaky) and succeeded on attempt 2 */
    snprintf(sql, sizeof(sql),
             "SELECT max(attempt) FROM step_attempts WHERE instance_id = '%s' AND step = 1 "
             "AND compensation = 0",
             ok_res.id);
    assert_int_equal(query_int(fx->db, sql), 2);
    sg_driver_stats_t s;
    sg_driver_stats(fx->d, &s);
    assert_int_equal(s.completed, 1);
    assert_int_equal(s.compensated, 1);
    assert_int_equal(s.active, 0);
}

static void test_input_schema_and_unknown_workflow(void **state)
{
    fx_t *fx = *state;
    sg_start_result_t res;
    sg_jsonschema_errors_t errs;
    sg_jsonschema_errors_init(&errs, 10);
    assert_int_equal(sg_driver_start_saga(fx->d, "t", 0, "{\"fail\":\"no\"}", NULL, &res, &errs),
                     SG_ERR_INVALID);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0].path, "/fail");
    sg_jsonschema_errors_fini(&errs);
    assert_int_equal(sg_driver_start_saga(fx->d, "nope", 0, "{}", NULL, &res, NULL),
                     SG_ERR_NOT_FOUND);
    assert_int_equal(sg_driver_start_saga(fx->d, "t", 0, "[1]", NULL, &res, NULL), SG_ERR_INVALID);
}

static void test_idempotent_start(void **state)
{
    fx_t *fx = *state;
    sg_start_result_t r1, r2;
    assert_int_equal(sg_driver_start_saga(fx->d, "t", 0, "{}", "key-1", &r1, NULL), SG_OK);
    assert_int_equal(sg_driver_start_saga(fx->d, "t", 0, "{}", "key-1", &r2, NULL), SG_OK);
    assert_true(r1.created);
    assert_false(r2.created);
    assert_string_equal(r1.id, r2.id);
    assert_true(sg_driver_wait_idle(fx->d, 30000));
    assert_int_equal(query_int(fx->db, "SELECT count(*) FROM instances"), 1);
}

static void test_many_sagas_and_restart(void **state)
{
    fx_t *fx = *state;
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        assert_int_equal(sg_driver_start_saga_async(fx->d, "t", 0,
                                                    i % 10 == 0 ? "{\"fail\":true}" : "{}", NULL,
                                                    NULL, NULL, NULL),
                         SG_OK);
    }
    /* Stop in the middle and start again: unfinished sagas resume from the database. */
    sg_driver_stop(fx->d);
    fx->d = NULL;
    start(fx);
    assert_true(sg_driver_wait_idle(fx->d, 60000));
    long long done = count_status(fx, "COMPLETED") + count_status(fx, "COMPENSATED");
    assert_int_equal(done, query_int(fx->db, "SELECT count(*) FROM instances"));
    assert_int_equal(count_status(fx, "COMPENSATED"),
                     query_int(fx->db, "SELECT count(*) FROM instances WHERE input LIKE "
                                       "'%\"fail\":true%'"));
    /* no attempt is left running */
    assert_int_equal(query_int(fx->db, "SELECT count(*) FROM step_attempts WHERE status = "
                                       "'running'"),
                     0);
}

static void test_cancel_and_retry_errors(void **state)
{
    fx_t *fx = *state;
    assert_int_equal(sg_driver_cancel(fx->d, "01NOSUCHINSTANCE0000000000"), SG_ERR_NOT_FOUND);
    sg_start_result_t r;
    assert_int_equal(sg_driver_start_saga(fx->d, "t", 0, "{}", NULL, &r, NULL), SG_OK);
    assert_true(sg_driver_wait_idle(fx->d, 30000));
    /* finished: neither cancel nor retry apply */
    assert_int_not_equal(sg_driver_cancel(fx->d, r.id), SG_OK);
    assert_int_equal(sg_driver_retry(fx->d, r.id), SG_ERR_STATE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_runs_to_completion_and_compensation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_schema_and_unknown_workflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_sagas_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_retry_errors, setup, teardown),
    };
    return cmocka_run_group_tests_name("driver", tests, NULL, NULL);
}
