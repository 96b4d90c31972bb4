/*
 * Unit tests of the activity registry, the result helpers and the test queue: each
 * operation, idempotency on the key (one effect per key, the first outcome returned
 * again, retryable failures not recorded), compensation without a forward effect,
 * deadlines, test.sleep's heartbeats (progress, giving up when no longer wanted), invalid
 * input, out-of-memory, and the effects file surviving a reopen.
 */
/* cmocka.h needs these before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activities/activity.h"
#include "tests/support/module_harness.h"

/* ---- harness ---- */

/* The module "test" in a directory of the test's own; its database is test-effects.db. */
static int setup(void **state)
{
    *state = mh_new("test", "test-effects.db", NULL);
    return 0;
}

/* Runs queue operation op on a task of instance "i1", step sid. */
static void call(mh_t *h, const char *op, const char *sid, bool comp, uint32_t attempt,
                 const char *input, uint64_t deadline_ms, sg_task_result_t *res)
{
    sg_task_t task = {.instance_id = "i1",
                      .step_id = sid,
                      .attempt = attempt,
                      .compensation = comp,
                      .input = input,
                      .deadline_ms = deadline_ms};
    mh_run(h, NULL, op, &task, res);
}

static long long effects_of(const mh_t *h, const char *key)
{
    return mh_query_int(h->db, "SELECT count(*) FROM effects WHERE key = '%s'", key);
}

static long long deliveries_of(const mh_t *h, const char *key)
{
    return mh_query_int(h->db, "SELECT count(*) FROM deliveries WHERE key = '%s'", key);
}

/* ---- registry and helpers ---- */

static void test_registry(void **state)
{
    (void)state;
    size_t n = 0;
    const sg_activity_module_t *const *mods = sg_activity_modules(&n);
    assert_true(n >= 1);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        assert_null(strchr(mods[i]->queue, '.'));
        assert_ptr_equal(sg_activity_module(mods[i]->queue), mods[i]);
        found = found || strcmp(mods[i]->queue, "test") == 0;
    }
    assert_true(found);
    assert_null(sg_activity_module("nope"));
    assert_null(sg_activity_module(NULL));

    const sg_activity_module_t *m = sg_activity_module("test");
    static const char *const ops[] = {"echo", "fail", "sleep", "flaky"};
    for (size_t i = 0; i < SG_ARRAY_LEN(ops); i++) {
        assert_non_null(sg_activity_module_op(m, ops[i]));
    }
    assert_null(sg_activity_module_op(m, "ecko"));

    size_t qlen = 0;
    assert_string_equal(sg_activity_split("payment.charge.v2", &qlen), "charge.v2");
    assert_int_equal(qlen, 7);
    assert_null(sg_activity_split("payment", &qlen));
    assert_null(sg_activity_split(".charge", &qlen));
    assert_null(sg_activity_split("payment.", &qlen));
    assert_null(sg_activity_split(NULL, &qlen));
}

static void test_result_helpers(void **state)
{
    (void)state;
    sg_task_result_t r = {0};
    sg_task_ok(&r, NULL);
    mh_assert_ok(&r, "null");
    assert_null(sg_task_result_code(&r));
    sg_task_fail(&r, SG_TASK_FATAL, "q.bad", "field \"%s\" is %d", "x", 3);
    mh_assert_failed(&r, SG_TASK_FATAL, "q.bad", NULL);
    assert_string_equal(r.error_message, "field \"x\" is 3");
    assert_null(r.output);
    sg_task_ok(&r, "{\"a\":1}"); /* refilling frees what was there */
    mh_assert_ok(&r, "{\"a\":1}");
    assert_null(r.error_code);

    /* out of memory: retryable, no strings, named saga.nomem */
    sg_alloc_fail_at(1);
    sg_task_fail(&r, SG_TASK_FATAL, "q.bad", "x");
    sg_alloc_fail_at(0);
    assert_int_equal(r.outcome, SG_TASK_RETRYABLE);
    assert_null(r.error_code);
    assert_string_equal(sg_task_result_code(&r), "saga.nomem");
    sg_alloc_fail_at(1);
    sg_task_ok(&r, "1");
    sg_alloc_fail_at(0);
    assert_int_equal(r.outcome, SG_TASK_RETRYABLE);
    sg_task_result_fini(&r);
    sg_task_result_fini(NULL);
    assert_string_equal(sg_task_outcome_name(SG_TASK_RETRYABLE), "retryable");
}

/* ---- operations ---- */

static void test_echo_and_idempotency(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    call(h, "echo", "s1", false, 1, "{\"n\":1}", 0, &r);
    mh_assert_ok(&r, "{\"n\":1}");
    assert_int_equal(effects_of(h, "i1/s1"), 1);

    /* Same key again, even with other input and a later attempt: the first outcome,
     * no second effect, one more delivery. */
    call(h, "echo", "s1", false, 2, "{\"n\":2}", 0, &r);
    mh_assert_ok(&r, "{\"n\":1}");
    assert_int_equal(effects_of(h, "i1/s1"), 1);
    assert_int_equal(deliveries_of(h, "i1/s1"), 2);

    /* Another key is another effect, later in seq. */
    call(h, "echo", "s2", false, 1, "[1,2]", 0, &r);
    mh_assert_ok(&r, "[1,2]");
    assert_int_equal(effects_of(h, "i1/s2"), 1);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM effects"), 2);
    assert_int_equal(mh_query_int(h->db, "SELECT seq FROM effects WHERE key = 'i1/s1'"), 1);
    assert_int_equal(mh_query_int(h->db, "SELECT seq FROM effects WHERE key = 'i1/s2'"), 2);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM effects WHERE key = 'i1/s1' AND "
                                  "outcome = 'ok' AND output = '{\"n\":1}' AND attempt = 1 AND "
                                  "instance_id = 'i1' AND step_id = 's1' AND "
                                  "activity = 'test.echo' AND compensation = 0"),
                     1);
    sg_task_result_fini(&r);
}

static void test_fail(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    call(h, "fail", "f1", false, 1, "{\"fail\":true}", 0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.failed", NULL);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM effects WHERE key = 'i1/f1' AND "
                                         "outcome = 'fatal' AND error_code = 'test.failed'"),
                     1);
    /* A non-retryable failure is final too: a redelivery gets it again. */
    call(h, "fail", "f1", false, 2, "{\"fail\":false}", 0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.failed", NULL);
    assert_int_equal(effects_of(h, "i1/f1"), 1);

    call(h, "fail", "f2", false, 1, "{\"fail\":false,\"x\":1}", 0, &r);
    mh_assert_ok(&r, "{\"fail\":false,\"x\":1}");
    call(h, "fail", "f3", false, 1, "[true]", 0, &r);
    mh_assert_ok(&r, "[true]");
    call(h, "fail", "f4", false, 1, "{\"fail\":\"yes\"}", 0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.invalid_input", NULL);
    assert_non_null(strstr(r.error_message, "\"fail\""));
    sg_task_result_fini(&r);
}

static void test_invalid_input(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    call(h, "echo", "v1", false, 1, "{not json", 0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.invalid_input", NULL);
    call(h, "echo", "v2", false, 1, NULL, 0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.invalid_input", NULL);
    static const char *const bad_sleep[] = {"{}", "{\"ms\":-1}", "{\"ms\":1.5}", "{\"ms\":\"5\"}",
                                            "[5]"};
    for (size_t i = 0; i < SG_ARRAY_LEN(bad_sleep); i++) {
        char sid[16];
        snprintf(sid, sizeof(sid), "bs%zu", i);
        call(h, "sleep", sid, false, 1, bad_sleep[i], 0, &r);
        mh_assert_failed(&r, SG_TASK_FATAL, "test.invalid_input", NULL);
        assert_non_null(strstr(r.error_message, "\"ms\""));
    }
    call(h, "flaky", "bf", false, 1, "{\"failures\":true}", 0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.invalid_input", NULL);
    assert_non_null(strstr(r.error_message, "\"failures\""));

    /* A task without its key cannot be made idempotent: refused, nothing recorded. */
    sg_task_t task = {.instance_id = "i1", .step_id = "x", .activity = "test.echo", .input = "1"};
    sg_task_result_fini(&r);
    sg_activity_module_op(h->mod, "echo")->run(h->actx, &task, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.invalid_input", NULL);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM effects WHERE key LIKE 'i1/x%%'"),
                     0);
    sg_task_result_fini(&r);
}

static void test_flaky(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    const char *in = "{\"failures\":2}";
    for (uint32_t attempt = 1; attempt <= 2; attempt++) {
        call(h, "flaky", "k", false, attempt, in, 0, &r);
        mh_assert_failed(&r, SG_TASK_RETRYABLE, "test.flaky", NULL);
        /* retryable: not final, nothing recorded but the delivery */
        assert_int_equal(effects_of(h, "i1/k"), 0);
    }
    call(h, "flaky", "k", false, 3, in, 0, &r);
    mh_assert_ok(&r, in);
    assert_int_equal(mh_query_int(h->db, "SELECT attempt FROM effects WHERE key = 'i1/k'"), 3);
    /* A late redelivery of attempt 1 now gets the recorded success. */
    call(h, "flaky", "k", false, 1, in, 0, &r);
    mh_assert_ok(&r, in);
    assert_int_equal(effects_of(h, "i1/k"), 1);
    assert_int_equal(deliveries_of(h, "i1/k"), 4);

    call(h, "flaky", "k0", false, 1, "{\"failures\":0}", 0, &r);
    mh_assert_ok(&r, "{\"failures\":0}");
    sg_task_result_fini(&r);
}

static void test_sleep_and_deadline(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    uint64_t t0 = sg_now_ms();
    call(h, "sleep", "z1", false, 1, "{\"ms\":30}", t0 + 60000, &r);
    mh_assert_ok(&r, "{\"ms\":30}");
    assert_true(sg_now_ms() - t0 >= 30);

    /* Gives up at the deadline, retryably, with nothing recorded. */
    t0 = sg_now_ms();
    call(h, "sleep", "z2", false, 1, "{\"ms\":20000}", t0 + 30, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "test.deadline", NULL);
    uint64_t took = sg_now_ms() - t0;
    assert_true(took >= 30 && took < 15000);
    assert_int_equal(effects_of(h, "i1/z2"), 0);

    /* Capped at 60 s; a deadline already past gives up at once. */
    call(h, "sleep", "z3", false, 1, "{\"ms\":99999999}", sg_now_ms() - 1, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "test.deadline", NULL);
    assert_non_null(strstr(r.error_message, "of 60000 ms"));

    /* A redelivery of a finished sleep returns at once with the recorded output. */
    call(h, "sleep", "z1", false, 2, "{\"ms\":50000}", sg_now_ms() + 60000, &r);
    mh_assert_ok(&r, "{\"ms\":30}");
    sg_task_result_fini(&r);
}

/* A transport's heartbeat_fn: records each call's progress; answers false from call
 * number give_up_at on (0: never). */
typedef struct {
    unsigned calls;
    unsigned give_up_at;
    char first[64], last[64];
} beats_t;

static bool record_beat(void *arg, const char *details)
{
    beats_t *b = arg;
    b->calls++;
    snprintf(b->calls == 1 ? b->first : b->last, sizeof(b->first), "%s", details ? details : "");
    return b->give_up_at == 0 || b->calls < b->give_up_at;
}

static void sleep_beating(mh_t *h, const char *sid, const char *input, beats_t *b,
                          sg_task_result_t *r)
{
    sg_task_t task = {.instance_id = "i1",
                      .step_id = sid,
                      .input = input,
                      .deadline_ms = sg_now_ms() + 60000,
                      .heartbeat_ms = 30,
                      .heartbeat_fn = record_beat,
                      .heartbeat_arg = b};
    mh_run(h, NULL, "sleep", &task, r);
}

static void test_sleep_heartbeats(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    /* 100 ms in steps of 30: progress at 30, 60 and 90, then done. */
    beats_t b = {0};
    const char *in = "{\"ms\":100,\"heartbeat_every_ms\":30}";
    sleep_beating(h, "hb1", in, &b, &r);
    mh_assert_ok(&r, in);
    assert_int_equal(b.calls, 3);
    assert_string_equal(b.first, "{\"slept_ms\":30,\"of\":100}");
    assert_string_equal(b.last, "{\"slept_ms\":90,\"of\":100}");
    assert_int_equal(effects_of(h, "i1/hb1"), 1);

    /* No longer wanted at the second beat: gives up retryably, nothing recorded. */
    b = (beats_t){.give_up_at = 2};
    in = "{\"ms\":20000,\"heartbeat_every_ms\":10}";
    uint64_t t0 = sg_now_ms();
    sleep_beating(h, "hb2", in, &b, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "test.abandoned", "after 20 of 20000 ms");
    assert_true(sg_now_ms() - t0 < 15000);
    assert_int_equal(b.calls, 2);
    assert_int_equal(effects_of(h, "i1/hb2"), 0);
    assert_int_equal(deliveries_of(h, "i1/hb2"), 1);
    /* ... and a retry that is wanted sleeps again and records the effect once. */
    b = (beats_t){0};
    in = "{\"ms\":25,\"heartbeat_every_ms\":10}";
    sleep_beating(h, "hb2", in, &b, &r);
    mh_assert_ok(&r, in);
    assert_int_equal(b.calls, 2);
    assert_int_equal(effects_of(h, "i1/hb2"), 1);

    /* Without the field, no heartbeat; with a bad one, invalid input. */
    b = (beats_t){0};
    sleep_beating(h, "hb3", "{\"ms\":40}", &b, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(b.calls, 0);
    sleep_beating(h, "hb4", "{\"ms\":40,\"heartbeat_every_ms\":-5}", &b, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.invalid_input", "\"heartbeat_every_ms\"");
    assert_int_equal(b.calls, 0);

    /* Without a transport (heartbeat_fn NULL) it is wanted until the deadline, and learns
     * of the deadline from sg_task_heartbeat. */
    call(h, "sleep", "hb5", false, 1, "{\"ms\":30,\"heartbeat_every_ms\":10}", sg_now_ms() + 60000,
         &r);
    mh_assert_ok(&r, NULL);
    t0 = sg_now_ms();
    call(h, "sleep", "hb6", false, 1, "{\"ms\":20000,\"heartbeat_every_ms\":10}", t0 + 50, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "test.abandoned", "past its deadline");
    uint64_t took = sg_now_ms() - t0;
    assert_true(took >= 50 && took < 15000);
    assert_int_equal(effects_of(h, "i1/hb6"), 0);
    sg_task_result_fini(&r);
}

static void test_compensation(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    /* Nothing to undo: succeeds and does nothing, even for an op that would fail. */
    call(h, "fail", "c0", true, 1, "{\"fail\":true}", 0, &r);
    mh_assert_ok(&r, "{\"noop\":true}");
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM effects WHERE key = 'i1/c0/compensate' AND "
                                  "outcome = 'noop' AND compensation = 1"),
                     1);
    /* ... and the forward task arriving late does nothing either. */
    call(h, "echo", "c0", false, 1, "{}", 0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.already_compensated", NULL);
    call(h, "echo", "c0", false, 2, "{}", 0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.already_compensated", NULL);
    assert_int_equal(effects_of(h, "i1/c0"), 1);

    /* A forward effect, then its compensation: recorded after it, exactly once. */
    call(h, "echo", "c1", false, 1, "{\"a\":1}", 0, &r);
    mh_assert_ok(&r, "{\"a\":1}");
    call(h, "flaky", "c1", true, 1, "{\"failures\":1}", 0, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "test.flaky", NULL);
    call(h, "flaky", "c1", true, 2, "{\"failures\":1}", 0, &r);
    mh_assert_ok(&r, "{\"failures\":1}");
    call(h, "flaky", "c1", true, 3, "{\"failures\":1}", 0, &r);
    mh_assert_ok(&r, "{\"failures\":1}");
    assert_int_equal(effects_of(h, "i1/c1/compensate"), 1);
    assert_true(mh_query_int(h->db, "SELECT seq FROM effects WHERE key = 'i1/c1/compensate'") >
                mh_query_int(h->db, "SELECT seq FROM effects WHERE key = 'i1/c1'"));

    /* A forward that failed fatally had no effect: its compensation is a no-op. */
    call(h, "fail", "c2", false, 1, "{\"fail\":true}", 0, &r);
    call(h, "echo", "c2", true, 1, "{}", 0, &r);
    mh_assert_ok(&r, "{\"noop\":true}");
    sg_task_result_fini(&r);
}

static void test_survives_reopen(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    call(h, "echo", "r1", false, 1, "\"before\"", 0, &r);
    call(h, "fail", "r2", false, 1, "{\"fail\":true}", 0, &r);
    mh_reopen(h, NULL);
    call(h, "echo", "r1", false, 2, "\"after\"", 0, &r);
    mh_assert_ok(&r, "\"before\"");
    call(h, "fail", "r2", false, 2, "{}", 0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "test.failed", NULL);
    call(h, "echo", "r3", false, 1, "3", 0, &r);
    assert_int_equal(mh_query_int(h->db, "SELECT seq FROM effects WHERE key = 'i1/r3'"), 3);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM effects"), 3);
    sg_task_result_fini(&r);
}

static void test_open_errors(void **state)
{
    mh_t *h = *state;
    char err[256] = "";
    sg_activity_ctx_t *actx = NULL;
    assert_int_equal(
        h->mod->open(&(sg_activity_env_t){.data_dir = "/nonexistent/dir"}, &actx, err, sizeof(err)),
        SG_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/dir/test-effects.db"));
    assert_null(actx);
    assert_int_equal(h->mod->open(&(sg_activity_env_t){0}, &actx, err, sizeof(err)),
                     SG_ERR_INVALID);

    /* OOM loop over open: every failure is clean (ASan checks the leaks). */
    for (size_t nth = 1;; nth++) {
        sg_alloc_fail_at(nth);
        sg_err_t rc =
            h->mod->open(&(sg_activity_env_t){.data_dir = h->dir}, &actx, err, sizeof(err));
        size_t seen = sg_alloc_fail_at(0);
        if (rc == SG_OK) {
            h->mod->close(actx);
            assert_true(seen < nth);
            break;
        }
        assert_int_equal(rc, SG_ERR_NOMEM);
    }
}

/* Out of memory anywhere in a call: the answer is ok or retryable (never a wrong
 * final outcome), and a later delivery still records exactly one effect. */
static void test_call_oom(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    for (size_t nth = 1;; nth++) {
        char sid[32];
        snprintf(sid, sizeof(sid), "oom%zu", nth);
        sg_alloc_fail_at(nth);
        call(h, "echo", sid, false, 1, "{\"x\":true}", 0, &r);
        size_t seen = sg_alloc_fail_at(0);
        if (r.outcome != SG_TASK_OK) {
            assert_int_equal(r.outcome, SG_TASK_RETRYABLE);
        }
        call(h, "echo", sid, false, 2, "{\"x\":true}", 0, &r);
        mh_assert_ok(&r, "{\"x\":true}");
        char key[48];
        snprintf(key, sizeof(key), "i1/%s", sid);
        assert_int_equal(effects_of(h, key), 1);
        if (seen < nth) {
            assert_true(nth > 3); /* the loop did fail some allocations */
            break;
        }
    }
    sg_task_result_fini(&r);
}

/* What sg_task_heartbeat hands the transport. */
typedef struct {
    int calls;
    const char *details;
    bool answer;
} hb_probe_t;

static bool probe_heartbeat(void *arg, const char *details)
{
    hb_probe_t *p = arg;
    p->calls++;
    p->details = details;
    return p->answer;
}

static void test_task_heartbeat(void **state)
{
    (void)state;
    hb_probe_t p = {.answer = true};
    sg_task_t task = {.instance_id = "i", .heartbeat_ms = 300};
    task.heartbeat_fn = probe_heartbeat;
    task.heartbeat_arg = &p;
    assert_true(sg_task_heartbeat(&task, "{\"done\":1}"));
    assert_int_equal(p.calls, 1);
    assert_string_equal(p.details, "{\"done\":1}");
    /* The transport's answer is the handler's: false = give up. */
    p.answer = false;
    assert_false(sg_task_heartbeat(&task, NULL));
    assert_null(p.details);
    /* Progress longer than the cap is dropped, the heartbeat still goes. */
    char big[SG_TASK_PROGRESS_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    p.answer = true;
    assert_true(sg_task_heartbeat(&task, big));
    assert_int_equal(p.calls, 3);
    assert_null(p.details);
    big[SG_TASK_PROGRESS_MAX] = '\0'; /* exactly the cap passes */
    assert_true(sg_task_heartbeat(&task, big));
    assert_ptr_equal(p.details, big);
    /* Without a transport: wanted until the deadline. */
    sg_task_t bare = {.instance_id = "i"};
    assert_true(sg_task_heartbeat(&bare, NULL));
    bare.deadline_ms = sg_now_ms() + 60000;
    assert_true(sg_task_heartbeat(&bare, NULL));
    bare.deadline_ms = sg_now_ms() - 1;
    assert_false(sg_task_heartbeat(&bare, NULL));
    assert_false(sg_task_heartbeat(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_result_helpers),
        cmocka_unit_test(test_task_heartbeat),
        cmocka_unit_test_setup_teardown(test_echo_and_idempotency, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_fail, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_flaky, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_sleep_and_deadline, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_sleep_heartbeats, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_compensation, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_call_oom, setup, mh_teardown),
    };
    return cmocka_run_group_tests_name("activities", tests, NULL, NULL);
}
