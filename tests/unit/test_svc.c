/*
 * Unit tests of the services' kit (activities/common): the idempotent transaction
 * (first outcome returned again, retryable not recorded, a forward task after its
 * compensation refused), chaos injection, the outbox (peek, ack, events committed with
 * the effect and dropped with a rollback), the strict JSON -> protobuf encoding of
 * events, and seeding through the registry.
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

#include "activities/common/events.h"
#include "activities/common/svc.h"
#include "tests/support/module_harness.h"

typedef struct {
    char dir[256];
    char db[512]; /* kit.db in dir */
    sg_svc_t *svc;
} h_t;

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS counter(n INTEGER NOT NULL);"
    "INSERT INTO counter SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM counter);";

static void h_open(h_t *h, const char *chaos)
{
    char err[256] = "";
    sg_activity_env_t env = {.data_dir = h->dir, .chaos = chaos};
    assert_int_equal(sg_svc_open(&env, "kit", schema, &h->svc, err, sizeof(err)), SG_OK);
}

static int setup(void **state)
{
    h_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    mh_dir_make(h->dir, sizeof(h->dir), "svc");
    snprintf(h->db, sizeof(h->db), "%s/kit.db", h->dir);
    h_open(h, NULL);
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    h_t *h = *state;
    sg_svc_close(h->svc);
    int rc = mh_dir_remove(h->dir);
    free(h);
    return rc;
}

/* ---- a tiny operation: adds input.by to the counter, emits an event, answers
 * according to input.answer ("ok", "fatal", "retry") ---- */

static int64_t counter_value(sg_svc_tx_t *tx)
{
    sqlite3_stmt *s;
    int64_t n = -1;
    if (sqlite3_prepare_v2(sg_svc_db(tx), "SELECT n FROM counter", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        n = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return n;
}

static void op_add(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *input, void *arg,
                   sg_task_result_t *res)
{
    (void)task;
    int *calls = arg;
    (*calls)++;
    int64_t by;
    const char *answer;
    if (!sg_svc_int(tx, input, "by", 0, 1000, &by, res) ||
        !sg_svc_str(tx, input, "answer", 16, &answer, res)) {
        return;
    }
    char sql[64];
    snprintf(sql, sizeof(sql), "UPDATE counter SET n = n + %lld", (long long)by);
    if (sqlite3_exec(sg_svc_db(tx), sql, NULL, NULL, NULL) != SQLITE_OK) {
        sg_svc_db_fail(tx, res, "update");
        return;
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "sku", "SKU-1");
    cJSON_AddNumberToObject(f, "stock", (double)counter_value(tx));
    cJSON_AddNumberToObject(f, "delta", (double)by);
    cJSON_AddStringToObject(f, "reason", "restock");
    if (sg_svc_emit(tx, "inventory.updated", f) != SG_OK) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "kit.emit", "emit failed");
        return;
    }
    if (strcmp(answer, "fatal") == 0) {
        sg_task_fail(res, SG_TASK_FATAL, "kit.refused", "refused after the effect");
    } else if (strcmp(answer, "retry") == 0) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "kit.later", "try again");
    } else {
        char out[64];
        snprintf(out, sizeof(out), "{\"n\":%lld}", (long long)counter_value(tx));
        sg_task_ok(res, out);
    }
}

static int64_t counter(h_t *h)
{
    return mh_query_int(h->db, "SELECT n FROM counter");
}

static void run(h_t *h, const char *key, bool comp, const char *input, int *calls,
                sg_task_result_t *res)
{
    sg_task_t t = {.instance_id = "inst1",
                   .step_id = "s",
                   .attempt = 1,
                   .compensation = comp,
                   .activity = "kit.add",
                   .input = input,
                   .idempotency_key = key};
    memset(res, 0, sizeof(*res));
    sg_svc_run(h->svc, &t, op_add, calls, res);
}

/* The kit's outbox, without removing anything (mh_events_free it). */
static void peek(h_t *h, mh_events_t *e)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(sg_svc_events_peek(h->svc, 100, mh_events_collect, e), SG_OK);
}

/* How many events the outbox holds. */
static size_t outbox_len(h_t *h)
{
    mh_events_t e;
    peek(h, &e);
    size_t n = e.n;
    mh_events_free(&e);
    return n;
}

/* ---- tests ---- */

static void test_once_per_key(void **state)
{
    h_t *h = *state;
    int calls = 0;
    sg_task_result_t r;
    run(h, "inst1/s", false, "{\"by\":5,\"answer\":\"ok\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_OK);
    assert_string_equal(r.output, "{\"n\":5}");
    sg_task_result_fini(&r);
    /* redelivered, even with other input: the first outcome, no second effect */
    run(h, "inst1/s", false, "{\"by\":7,\"answer\":\"ok\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_OK);
    assert_string_equal(r.output, "{\"n\":5}");
    sg_task_result_fini(&r);
    assert_int_equal(calls, 1);
    assert_int_equal(counter(h), 5);
    mh_events_t s;
    peek(h, &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.type[0], "inventory.updated");
    assert_string_equal(s.corr[0], "inst1");
    assert_true(s.proto_len[0] > 0);
    mh_events_free(&s);
}

static void test_fatal_recorded_with_effect(void **state)
{
    h_t *h = *state;
    int calls = 0;
    sg_task_result_t r;
    run(h, "inst1/f", false, "{\"by\":3,\"answer\":\"fatal\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_FATAL);
    assert_string_equal(r.error_code, "kit.refused");
    sg_task_result_fini(&r);
    run(h, "inst1/f", false, "{\"by\":3,\"answer\":\"ok\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_FATAL);
    assert_string_equal(r.error_code, "kit.refused");
    assert_string_equal(r.error_message, "refused after the effect");
    sg_task_result_fini(&r);
    assert_int_equal(calls, 1);
    assert_int_equal(counter(h), 3); /* a business refusal may commit (payment.failed) */
    assert_int_equal(outbox_len(h), 1);
}

static void test_retryable_rolls_back(void **state)
{
    h_t *h = *state;
    int calls = 0;
    sg_task_result_t r;
    run(h, "inst1/r", false, "{\"by\":4,\"answer\":\"retry\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_RETRYABLE);
    sg_task_result_fini(&r);
    assert_int_equal(counter(h), 0);
    assert_int_equal(outbox_len(h), 0); /* the event went with the rollback */
    run(h, "inst1/r", false, "{\"by\":4,\"answer\":\"ok\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_OK);
    sg_task_result_fini(&r);
    assert_int_equal(calls, 2);
    assert_int_equal(counter(h), 4);
}

static void test_forward_after_compensation_refused(void **state)
{
    h_t *h = *state;
    int calls = 0;
    sg_task_result_t r;
    run(h, "inst1/late/compensate", true, "{\"by\":0,\"answer\":\"ok\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_OK);
    sg_task_result_fini(&r);
    run(h, "inst1/late", false, "{\"by\":9,\"answer\":\"ok\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_FATAL);
    assert_string_equal(r.error_code, "kit.compensated");
    sg_task_result_fini(&r);
    assert_int_equal(calls, 1);
    assert_int_equal(counter(h), 0);
    /* and it stays refused */
    run(h, "inst1/late", false, "{\"by\":9,\"answer\":\"ok\"}", &calls, &r);
    assert_string_equal(r.error_code, "kit.compensated");
    sg_task_result_fini(&r);
}

static void test_invalid_input(void **state)
{
    h_t *h = *state;
    int calls = 0;
    sg_task_result_t r;
    const char *bad[] = {"",
                         "[1]",
                         "{\"by\":",
                         "{\"by\":\"x\",\"answer\":\"ok\"}",
                         "{\"by\":1}",
                         "{\"by\":1.5,\"answer\":\"ok\"}",
                         "{\"by\":5000,\"answer\":\"ok\"}"};
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        char key[32];
        snprintf(key, sizeof(key), "inst1/bad%zu", i);
        run(h, key, false, bad[i], &calls, &r);
        assert_int_equal(r.outcome, SG_TASK_FATAL);
        assert_string_equal(r.error_code, "kit.invalid_input");
        sg_task_result_fini(&r);
    }
    run(h, "inst1/bad1", false, "{\"by\":1,\"answer\":\"x\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_OK); /* not-an-object input was not recorded */
    sg_task_result_fini(&r);
    assert_int_equal(counter(h), 1);
}

static void test_ack_removes(void **state)
{
    h_t *h = *state;
    int calls = 0;
    sg_task_result_t r;
    for (int i = 0; i < 3; i++) {
        char key[32];
        snprintf(key, sizeof(key), "inst1/a%d", i);
        run(h, key, false, "{\"by\":1,\"answer\":\"ok\"}", &calls, &r);
        sg_task_result_fini(&r);
    }
    mh_events_t s;
    peek(h, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(outbox_len(h), 3); /* peeking does not remove */
    mh_events_t first = {0};
    /* ack the first two only */
    assert_int_equal(sg_svc_events_ack(h->svc, s.last_seq - 1), SG_OK);
    peek(h, &first);
    assert_int_equal(first.n, 1);
    assert_int_equal(first.last_seq, s.last_seq);
    assert_int_equal(sg_svc_events_ack(h->svc, s.last_seq), SG_OK);
    assert_int_equal(outbox_len(h), 0);
    mh_events_free(&first);
    mh_events_free(&s);
}

static void test_chaos(void **state)
{
    h_t *h = *state;
    assert_true(sg_chaos_value("payment.error_rate=0.25,kit.x=3", "payment", "error_rate", 0) ==
                0.25);
    assert_true(sg_chaos_value("payment.error_rate=0.25, kit.x=3", "kit", "x", 0) == 3);
    assert_true(sg_chaos_value("payment.error_rate=oops", "payment", "error_rate", 7) == 7);
    assert_true(sg_chaos_value("payment.error_rate_x=1", "payment", "error_rate", 0) == 0);
    assert_true(sg_chaos_value(NULL, "payment", "error_rate", 2) == 2);

    sg_svc_close(h->svc);
    h_open(h, "kit.error_rate=1");
    int calls = 0;
    sg_task_result_t r;
    run(h, "inst1/c", false, "{\"by\":1,\"answer\":\"ok\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_RETRYABLE);
    assert_string_equal(r.error_code, "kit.unavailable");
    sg_task_result_fini(&r);
    assert_int_equal(calls, 0);

    sg_svc_close(h->svc);
    h_open(h, "kit.lost_reply_rate=1");
    run(h, "inst1/c", false, "{\"by\":1,\"answer\":\"ok\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_RETRYABLE);
    assert_string_equal(r.error_code, "kit.reply_lost");
    sg_task_result_fini(&r);
    assert_int_equal(counter(h), 1); /* the effect happened and is recorded */

    sg_svc_close(h->svc);
    h_open(h, NULL);
    run(h, "inst1/c", false, "{\"by\":1,\"answer\":\"ok\"}", &calls, &r);
    assert_int_equal(r.outcome, SG_TASK_OK); /* the retry finds the recorded outcome */
    assert_string_equal(r.output, "{\"n\":1}");
    sg_task_result_fini(&r);
    assert_int_equal(calls, 1);
    assert_int_equal(counter(h), 1);
}

/* ---- events: JSON <-> protobuf ---- */

static void test_event_encode_roundtrip(void **state)
{
    (void)state;
    cJSON *ev = cJSON_Parse("{\"event_id\":\"01J\",\"type\":\"inventory.reserved\",\"time_ms\":"
                            "1700000000000,\"correlation_id\":\"i1\",\"source\":\"inventory\","
                            "\"order_id\":\"o1\",\"reservation_id\":\"r1\",\"items\":[{\"sku\":"
                            "\"A\",\"qty\":2},{\"sku\":\"B\",\"qty\":1}]}");
    uint8_t *buf = NULL;
    size_t len = 0;
    char err[256] = "";
    assert_int_equal(sg_event_encode("inventory.reserved", ev, &buf, &len, err, sizeof(err)),
                     SG_OK);
    cJSON *back = sg_event_decode("inventory.reserved", buf, len);
    assert_non_null(back);
    assert_true(cJSON_Compare(ev, back, true));
    cJSON_Delete(back);
    sg_free(buf);
    cJSON_Delete(ev);
    assert_string_equal(sg_event_message_name("inventory.low_stock"), "InventoryLowStock");
    assert_null(sg_event_message_name("inventory.nope"));
    assert_null(sg_event_decode("inventory.reserved", (const uint8_t *)"\xff\xff\xff", 3));
}

static void test_event_encode_strict(void **state)
{
    (void)state;
    const char *bad[][2] = {
        {"order.created", "{\"order_id\":\"o\",\"oops\":1}"},       /* unknown field */
        {"order.created", "{\"order_id\":5}"},                      /* wrong type */
        {"order.created", "{\"total\":1.5}"},                       /* not an integer */
        {"order.created", "{\"items\":{\"sku\":\"A\"}}"},           /* not an array */
        {"order.created", "{\"items\":[{\"sku\":\"A\",\"x\":1}]}"}, /* nested unknown */
        {"order.created", "[]"},                                    /* not an object */
        {"order.nope", "{}"},                                       /* unknown type */
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        cJSON *ev = cJSON_Parse(bad[i][1]);
        uint8_t *buf = NULL;
        size_t len = 0;
        char err[256] = "";
        assert_int_equal(sg_event_encode(bad[i][0], ev, &buf, &len, err, sizeof(err)),
                         SG_ERR_INVALID);
        assert_null(buf);
        assert_true(err[0] != '\0');
        cJSON_Delete(ev);
    }
    size_t n = 0;
    const char *const *types = sg_event_types(&n);
    assert_true(n >= 14);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(sg_event_message_name(types[i]));
    }
}

static void test_emit_rejects_unknown_field(void **state)
{
    h_t *h = *state;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "not_a_field", "x");
    assert_int_equal(sg_svc_emit_now(h->svc, "order.updated", NULL, f), SG_ERR_INVALID);
    assert_int_equal(outbox_len(h), 0);
    f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "order_id", "o1");
    cJSON_AddStringToObject(f, "status", "approved");
    assert_int_equal(sg_svc_emit_now(h->svc, "order.updated", NULL, f), SG_OK);
    mh_events_t s;
    peek(h, &s);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.corr[0], "");
    mh_events_free(&s);
}

/* ---- seeding through the registry ---- */

static void test_seed_all_errors(void **state)
{
    h_t *h = *state;
    sg_activity_env_t env = {.data_dir = h->dir};
    char err[256] = "";
    assert_int_equal(sg_activity_seed_all(&env, "{\"nosuch\":{}}", err, sizeof(err), NULL, NULL),
                     SG_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "nosuch"));
    assert_int_equal(sg_activity_seed_all(&env, "[", err, sizeof(err), NULL, NULL), SG_ERR_INVALID);
    assert_int_equal(sg_activity_seed_all(&env, "{\"test\":{}}", err, sizeof(err), NULL, NULL),
                     SG_ERR_NOT_FOUND);
    assert_int_equal(
        sg_activity_seed_all(&env, "{\"_comment\":\"x\"}", err, sizeof(err), NULL, NULL), SG_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_once_per_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_recorded_with_effect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retryable_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_after_compensation_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_removes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chaos, setup, teardown),
        cmocka_unit_test(test_event_encode_roundtrip),
        cmocka_unit_test(test_event_encode_strict),
        cmocka_unit_test_setup_teardown(test_emit_rejects_unknown_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed_all_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
