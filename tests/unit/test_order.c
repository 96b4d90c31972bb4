/*
 * Unit tests of the order service (activities/order): the whole state machine (every
 * operation from every status, allowed and refused), the total check, orders belonging
 * to their sagas, idempotency (one effect per key, first outcome returned again,
 * retryable failures neither recorded nor applied), compensations without a forward
 * effect, late forward tasks after their compensation, invalid input, the events in the
 * outbox (JSON and protobuf), the history rows, the seed, sg_order_get_json, and the
 * database surviving close/reopen. The database is checked through a connection of the
 * test's own, like another process would.
 */
/* cmocka.h needs these before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activities/activity.h"
#include "activities/common/events.h"
#include "activities/order/order.h"
#include "tests/support/module_harness.h"

/* ---- harness (tests/support/module_harness.h) ---- */

static int setup(void **state)
{
    *state = mh_new("order", NULL, NULL);
    return 0;
}

/* Runs order.<op> as step sid of saga inst (its compensation when comp). */
static void call(mh_t *h, const char *inst, const char *sid, bool comp, const char *op,
                 const char *input, sg_task_result_t *res)
{
    mh_call(h, op, inst, sid, comp, input, res);
}

/* The status of an order, or "none". */
static const char *status_of(const mh_t *h, const char *order_id)
{
    static char buf[32];
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE order_id = '%s'", order_id);
    sqlite3 *db = mh_db_open(h->db);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    snprintf(buf, sizeof(buf), "none");
    if (sqlite3_step(s) == SQLITE_ROW) {
        snprintf(buf, sizeof(buf), "%s", (const char *)sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return buf;
}

static long long history_of(const mh_t *h, const char *order_id)
{
    return mh_query_int(h->db, "SELECT count(*) FROM order_history WHERE order_id = '%s'",
                        order_id);
}

/* ---- events ---- */

/* Up to max events of the outbox, oldest first, as an array of their JSON objects
 * (cJSON_Delete it), each checked; *last_seq is the last one's seq, -1 when none. */
static cJSON *peek_events(mh_t *h, size_t max, int64_t *last_seq)
{
    mh_events_t e;
    mh_events_peek(h, max, &e);
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < e.n; i++) {
        cJSON *j = e.json[i];
        assert_non_null(j);
        /* The JSON and the protobuf bytes are the same event. */
        cJSON *p = e.proto[i];
        assert_non_null(p);
        assert_string_equal(cJSON_GetObjectItem(p, "order_id")->valuestring,
                            cJSON_GetObjectItem(j, "order_id")->valuestring);
        assert_string_equal(cJSON_GetObjectItem(j, "type")->valuestring, e.type[i]);
        assert_string_equal(cJSON_GetObjectItem(j, "source")->valuestring, "order");
        cJSON_AddItemToArray(arr, j);
        e.json[i] = NULL; /* the array's now */
    }
    *last_seq = e.n > 0 ? e.last_seq : -1;
    mh_events_free(&e);
    return arr;
}

/* Every event in the outbox, oldest first, as an array of their JSON objects; acked,
 * so the outbox is empty afterwards. */
static cJSON *drain(mh_t *h)
{
    int64_t last_seq;
    cJSON *arr = peek_events(h, 1000, &last_seq);
    if (last_seq >= 0) {
        assert_int_equal(h->mod->events_ack(h->actx, last_seq), SG_OK);
    }
    return arr;
}

/* The types of the drained events, comma-separated. */
static const char *types_of(const cJSON *evs)
{
    static char buf[512];
    buf[0] = '\0';
    const cJSON *ev;
    cJSON_ArrayForEach(ev, evs)
    {
        if (buf[0] != '\0') {
            strcat(buf, ",");
        }
        strcat(buf, cJSON_GetObjectItem(ev, "type")->valuestring);
    }
    return buf;
}

static const char *ev_str(const cJSON *evs, int i, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetArrayItem(evs, i), key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void assert_events(mh_t *h, const char *types)
{
    cJSON *evs = drain(h);
    assert_string_equal(types_of(evs), types);
    cJSON_Delete(evs);
}

/* ---- orders in given states ---- */

#define ORDER_FMT                                                                                \
    "{\"order_id\":\"%s\",\"customer_id\":\"cus_alice\",\"email\":\"alice@example.com\","        \
    "\"items\":[{\"sku\":\"BOOK-001\",\"qty\":2,\"price\":2990},"                                \
    "{\"sku\":\"MUG-001\",\"qty\":1,\"price\":1200}],\"total\":%d,\"currency\":\"EUR\","         \
    "\"shipping_address\":{\"name\":\"Alice Martin\",\"line1\":\"1 Main St\",\"city\":\"Lyon\"," \
    "\"postal_code\":\"69001\",\"country\":\"FR\"}}"
#define ORDER_TOTAL 7180

static void order_input(char *buf, size_t len, const char *id, int total)
{
    snprintf(buf, len, ORDER_FMT, id, total);
}

/* Saga ids of an order: "s-<id>" placed it, "c-<id>" cancels it. */
static void sagas(const char *id, char s[80], char c[80])
{
    snprintf(s, 80, "s-%.60s", id);
    snprintf(c, 80, "c-%.60s", id);
}

/* Drives order id to status through the operations, as the sagas would. */
static void make_order(mh_t *h, const char *id, const char *status)
{
    sg_task_result_t r = {0};
    char in[1024], s[80], c[80];
    sagas(id, s, c);
    order_input(in, sizeof(in), id, ORDER_TOTAL);
    call(h, s, "create_order", false, "create_pending", in, &r);
    mh_assert_ok(&r, NULL);
    snprintf(in, sizeof(in), "{\"order_id\":\"%s\"}", id);
    if (strcmp(status, "rejected") == 0) {
        call(h, s, "create_order", true, "reject", in, &r);
        mh_assert_ok(&r, NULL);
    } else if (strcmp(status, "pending") != 0) {
        snprintf(in, sizeof(in),
                 "{\"order_id\":\"%s\",\"reservation_id\":\"res-%s\",\"payment_id\":\"pay-%s\"}",
                 id, id, id);
        call(h, s, "approve_order", false, "approve", in, &r);
        mh_assert_ok(&r, NULL);
    }
    if (strcmp(status, "cancelling") == 0 || strcmp(status, "cancelled") == 0) {
        snprintf(in, sizeof(in), "{\"order_id\":\"%s\",\"reason\":\"customer_request\"}", id);
        call(h, c, "begin_cancel", false, "begin_cancel", in, &r);
        mh_assert_ok(&r, NULL);
        if (strcmp(status, "cancelled") == 0) {
            call(h, c, "mark_cancelled", false, "cancel", in, &r);
            mh_assert_ok(&r, NULL);
        }
    }
    assert_string_equal(status_of(h, id), status);
    sg_task_result_fini(&r);
}

/* ---- the state machine, cell by cell ---- */

static const char *const statuses[] = {"pending",    "approved",  "rejected",
                                       "cancelling", "cancelled", NULL};

typedef struct {
    const char *op;
    /* per status above, then for an unknown order: "ok:<new status>" (changed),
     * "noop" (success, nothing changed), or the refusal code */
    const char *expect[6];
} row_t;

static const row_t matrix[] = {
    {"approve",
     {"ok:approved", "order.not_pending", "order.not_pending", "order.not_pending",
      "order.not_pending", "order.not_found"}},
    {"reject", {"ok:rejected", "noop", "noop", "noop", "noop", "noop"}},
    {"begin_cancel",
     {"order.not_cancellable", "ok:cancelling", "order.not_cancellable", "order.not_cancellable",
      "order.not_cancellable", "order.not_found"}},
    {"restore", {"noop", "noop", "noop", "ok:approved", "noop", "noop"}},
    {"cancel",
     {"order.not_cancellable", "order.not_cancellable", "order.not_cancellable", "ok:cancelled",
      "noop", "order.not_found"}},
};

/* Runs op on order id with keys no earlier step used, as the saga that may do it. */
static void probe(mh_t *h, const char *op, const char *id, sg_task_result_t *r)
{
    char in[512], s[80], c[80];
    sagas(id, s, c);
    snprintf(in, sizeof(in),
             "{\"order_id\":\"%s\",\"reservation_id\":\"r9\",\"payment_id\":\"p9\","
             "\"reason\":\"other\"}",
             id);
    if (strcmp(op, "approve") == 0) {
        call(h, s, "probe", false, op, in, r);
    } else if (strcmp(op, "reject") == 0) {
        call(h, s, "probe", true, op, in, r);
    } else if (strcmp(op, "begin_cancel") == 0) {
        char c2[96];
        snprintf(c2, sizeof(c2), "%s-2", c);
        call(h, c2, "probe", false, op, in, r);
    } else if (strcmp(op, "restore") == 0) {
        call(h, c, "probe", true, op, in, r); /* the saga holding it, if any */
    } else {
        call(h, c, "probe", false, op, in, r);
    }
}

static void test_state_machine(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    for (size_t m = 0; m < SG_ARRAY_LEN(matrix); m++) {
        for (int st = 0; st < 6; st++) {
            char id[64];
            snprintf(id, sizeof(id), "m-%s-%d", matrix[m].op, st);
            const char *before = statuses[st] ? statuses[st] : "none";
            if (statuses[st] != NULL) {
                make_order(h, id, statuses[st]);
            }
            long long hist = history_of(h, id);
            cJSON_Delete(drain(h));
            probe(h, matrix[m].op, id, &r);
            const char *want = matrix[m].expect[st];
            print_message("%s on %s: %s\n", matrix[m].op, before, want);
            if (strncmp(want, "ok:", 3) == 0) {
                mh_assert_ok(&r, NULL);
                assert_string_equal(status_of(h, id), want + 3);
                assert_int_equal(history_of(h, id), hist + 1);
                assert_int_equal(mh_query_int(h->db,
                                              "SELECT count(*) FROM order_history WHERE order_id ="
                                              " '%s' AND from_status = '%s' AND to_status = '%s'"
                                              " AND activity = 'order.%s'",
                                              id, before, want + 3, matrix[m].op),
                                 1);
                cJSON *evs = drain(h);
                assert_string_equal(ev_str(evs, 0, "type"), "order.updated");
                assert_string_equal(ev_str(evs, 0, "status"), want + 3);
                assert_string_equal(ev_str(evs, 0, "previous_status"), before);
                cJSON_Delete(evs);
            } else {
                if (strcmp(want, "noop") == 0) {
                    mh_assert_ok(&r, NULL);
                    assert_non_null(strstr(r.output, "\"changed\":false"));
                } else {
                    mh_assert_failed(&r, SG_TASK_FATAL, want, NULL);
                }
                assert_string_equal(status_of(h, id), before);
                assert_int_equal(history_of(h, id), hist);
                assert_events(h, "");
            }
        }
    }
    sg_task_result_fini(&r);
}

/* ---- operations one by one ---- */

static void test_create_pending(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char in[1024];
    order_input(in, sizeof(in), "o1", ORDER_TOTAL);
    call(h, "s1", "create_order", false, "create_pending", in, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"pending\"}");
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM orders WHERE order_id = 'o1' AND"
                                  " customer_id = 'cus_alice' AND email = 'alice@example.com'"
                                  " AND total = 7180 AND currency = 'EUR' AND status ="
                                  " 'pending' AND previous_status IS NULL AND saga_id = 's1'"
                                  " AND json_extract(shipping_address, '$.city') = 'Lyon'"),
                     1);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM order_lines WHERE order_id = 'o1'"),
                     2);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM order_lines WHERE order_id = 'o1' AND"
                                  " line_no = 1 AND sku = 'BOOK-001' AND qty = 2 AND"
                                  " price = 2990"),
                     1);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM order_history WHERE order_id = 'o1' AND"
                                  " from_status IS NULL AND to_status = 'pending' AND"
                                  " reason = 'created' AND saga_id = 's1' AND"
                                  " activity = 'order.create_pending' AND ts_ms > 0"),
                     1);

    cJSON *evs = drain(h);
    assert_string_equal(types_of(evs), "order.created");
    cJSON *ev = cJSON_GetArrayItem(evs, 0);
    assert_string_equal(ev_str(evs, 0, "correlation_id"), "s1");
    assert_string_equal(ev_str(evs, 0, "customer_id"), "cus_alice");
    assert_string_equal(ev_str(evs, 0, "currency"), "EUR");
    assert_string_equal(ev_str(evs, 0, "status"), "pending");
    assert_int_equal(cJSON_GetObjectItem(ev, "total")->valueint, ORDER_TOTAL);
    cJSON *items = cJSON_GetObjectItem(ev, "items");
    assert_int_equal(cJSON_GetArraySize(items), 2);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(items, 1), "sku")->valuestring,
                        "MUG-001");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(items, 0), "qty")->valueint, 2);
    cJSON_Delete(evs);

    /* Optional fields absent, extra fields in lines ignored (the event keeps only the
     * message's fields), a zero total of free items. */
    call(h, "s2", "create_order", false, "create_pending",
         "{\"order_id\":\"o2\",\"customer_id\":\"cus_bob\",\"items\":[{\"sku\":\"FREE-1\","
         "\"qty\":3,\"price\":0,\"note\":\"gift\"}],\"total\":0,\"currency\":\"USD\","
         "\"email\":null}",
         &r);
    mh_assert_ok(&r, "{\"order_id\":\"o2\",\"status\":\"pending\"}");
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM orders WHERE order_id = 'o2' AND"
                                  " email IS NULL AND shipping_address IS NULL AND total = 0"),
                     1);
    assert_events(h, "order.created");
    sg_task_result_fini(&r);
}

static void test_invalid_total(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char in[1024];
    order_input(in, sizeof(in), "o1", ORDER_TOTAL + 1);
    call(h, "s1", "create_order", false, "create_pending", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.invalid_total", NULL);
    assert_non_null(strstr(r.error_message, "7181"));
    assert_non_null(strstr(r.error_message, "7180"));
    assert_string_equal(status_of(h, "o1"), "none");
    assert_int_equal(history_of(h, "o1"), 0);
    assert_events(h, "");
    /* A refusal is final: the same task again gets it again, even with a right total. */
    order_input(in, sizeof(in), "o1", ORDER_TOTAL);
    call(h, "s1", "create_order", false, "create_pending", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.invalid_total", NULL);
    assert_string_equal(status_of(h, "o1"), "none");

    order_input(in, sizeof(in), "o1", ORDER_TOTAL - 1);
    call(h, "s2", "create_order", false, "create_pending", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.invalid_total", NULL);
    /* A total beyond what the lines could ever sum to. */
    order_input(in, sizeof(in), "o1", 0);
    call(h, "s3", "create_order", false, "create_pending", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.invalid_total", NULL);
    assert_string_equal(status_of(h, "o1"), "none");
    sg_task_result_fini(&r);
}

static void test_create_exists(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char in[1024];
    make_order(h, "o1", "pending");
    cJSON_Delete(drain(h));
    /* Another saga, same content: an order is created once. */
    order_input(in, sizeof(in), "o1", ORDER_TOTAL);
    call(h, "s2", "create_order", false, "create_pending", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.exists", NULL);
    assert_non_null(strstr(r.error_message, "s-o1"));
    /* Another saga, other content. */
    call(h, "s3", "create_order", false, "create_pending",
         "{\"order_id\":\"o1\",\"customer_id\":\"cus_bob\",\"items\":[{\"sku\":\"PEN-001\","
         "\"qty\":1,\"price\":250}],\"total\":250,\"currency\":\"USD\"}",
         &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.exists", NULL);
    /* Nothing of the first changed. */
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM orders WHERE order_id = 'o1' AND"
                                         " customer_id = 'cus_alice' AND total = 7180 AND"
                                         " saga_id = 's-o1'"),
                     1);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM order_lines WHERE order_id = 'o1'"),
                     2);
    assert_int_equal(history_of(h, "o1"), 1);
    assert_events(h, "");

    /* The other saga compensates its (maybe timed-out) create: the order is not its
     * own, so nothing happens; its owner still approves it. */
    call(h, "s3", "create_order", true, "reject", "{\"order_id\":\"o1\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"pending\",\"changed\":false}");
    assert_string_equal(status_of(h, "o1"), "pending");
    assert_events(h, "");
    call(h, "s3", "approve_order", false, "approve",
         "{\"order_id\":\"o1\",\"reservation_id\":\"r\",\"payment_id\":\"p\"}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.not_pending", NULL);
    assert_non_null(strstr(r.error_message, "s-o1"));
    assert_string_equal(status_of(h, "o1"), "pending");
    call(h, "s-o1", "approve_order", false, "approve",
         "{\"order_id\":\"o1\",\"reservation_id\":\"r\",\"payment_id\":\"p\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"approved\"}");
    sg_task_result_fini(&r);
}

static void test_approve(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    make_order(h, "o1", "pending");
    cJSON_Delete(drain(h));
    call(h, "s-o1", "approve_order", false, "approve",
         "{\"order_id\":\"o1\",\"reservation_id\":\"res-1\",\"payment_id\":\"pay-1\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"approved\"}");
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM orders WHERE order_id = 'o1' AND"
                                         " status = 'approved' AND previous_status = 'pending' AND"
                                         " reservation_id = 'res-1' AND payment_id = 'pay-1' AND"
                                         " updated_ms >= created_ms"),
                     1);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM order_history WHERE order_id = 'o1' AND"
                                  " from_status = 'pending' AND to_status = 'approved' AND"
                                  " reason = 'approved' AND saga_id = 's-o1'"),
                     1);
    cJSON *evs = drain(h);
    assert_string_equal(types_of(evs), "order.updated");
    assert_string_equal(ev_str(evs, 0, "order_id"), "o1");
    assert_string_equal(ev_str(evs, 0, "status"), "approved");
    assert_string_equal(ev_str(evs, 0, "previous_status"), "pending");
    assert_string_equal(ev_str(evs, 0, "correlation_id"), "s-o1");
    cJSON_Delete(evs);

    call(h, "s-o1", "approve_again", false, "approve",
         "{\"order_id\":\"o1\",\"reservation_id\":\"res-2\",\"payment_id\":\"pay-2\"}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.not_pending", NULL);
    assert_int_equal(
        mh_query_int(h->db, "SELECT count(*) FROM orders WHERE reservation_id = 'res-1'"), 1);
    call(h, "s9", "approve_order", false, "approve",
         "{\"order_id\":\"nope\",\"reservation_id\":\"r\",\"payment_id\":\"p\"}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.not_found", NULL);
    assert_events(h, "");
    sg_task_result_fini(&r);
}

static void test_reject(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    make_order(h, "o1", "pending");
    cJSON_Delete(drain(h));
    /* The input order_create sends (notify_customer is ignored: no notice from here). */
    const char *in = "{\"order_id\":\"o1\",\"customer_id\":\"cus_alice\",\"email\":null,"
                     "\"notify_customer\":true}";
    call(h, "s-o1", "create_order", true, "reject", in, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"rejected\",\"changed\":true}");
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM order_history WHERE order_id = 'o1' AND"
                                  " from_status = 'pending' AND to_status = 'rejected' AND"
                                  " reason = 'rejected' AND activity = 'order.reject'"),
                     1);
    cJSON *evs = drain(h);
    assert_string_equal(types_of(evs), "order.updated,order.cancelled");
    assert_string_equal(ev_str(evs, 0, "status"), "rejected");
    assert_string_equal(ev_str(evs, 0, "previous_status"), "pending");
    assert_string_equal(ev_str(evs, 1, "customer_id"), "cus_alice");
    assert_string_equal(ev_str(evs, 1, "reason"), "rejected");
    assert_string_equal(ev_str(evs, 1, "correlation_id"), "s-o1");
    cJSON_Delete(evs);

    /* Redelivered: the first result, no second effect. */
    call(h, "s-o1", "create_order", true, "reject", in, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"rejected\",\"changed\":true}");
    assert_int_equal(history_of(h, "o1"), 2);
    assert_events(h, "");
    /* Already rejected, another key: no effect either. */
    call(h, "s-o1", "other_step", true, "reject", in, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"rejected\",\"changed\":false}");
    assert_int_equal(history_of(h, "o1"), 2);
    assert_events(h, "");
    /* The create redelivered after its compensation: its first answer, no effect. */
    char cin[1024];
    order_input(cin, sizeof(cin), "o1", ORDER_TOTAL);
    call(h, "s-o1", "create_order", false, "create_pending", cin, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"pending\"}"); /* its first outcome */
    assert_string_equal(status_of(h, "o1"), "rejected");
    sg_task_result_fini(&r);
}

static void test_compensation_without_forward(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    /* create_pending timed out before writing: reject succeeds and does nothing ... */
    call(h, "s1", "create_order", true, "reject", "{\"order_id\":\"o1\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":null,\"changed\":false}");
    assert_string_equal(status_of(h, "o1"), "none");
    assert_int_equal(history_of(h, "o1"), 0);
    assert_events(h, "");
    /* ... and the late create is refused by the kit, with no effect. */
    char in[1024];
    order_input(in, sizeof(in), "o1", ORDER_TOTAL);
    call(h, "s1", "create_order", false, "create_pending", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.compensated", NULL);
    assert_string_equal(status_of(h, "o1"), "none");
    assert_events(h, "");
    /* Another saga may still place o1: the refusal was about s1's step only. */
    call(h, "s2", "create_order", false, "create_pending", in, &r);
    mh_assert_ok(&r, NULL);

    /* begin_cancel timed out before writing: restore does nothing, the late
     * begin_cancel is refused, the order stays approved. */
    make_order(h, "o2", "approved");
    cJSON_Delete(drain(h));
    call(h, "c1", "begin_cancel", true, "restore", "{\"order_id\":\"o2\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"o2\",\"status\":\"approved\",\"changed\":false}");
    call(h, "c1", "begin_cancel", false, "begin_cancel",
         "{\"order_id\":\"o2\",\"reason\":\"other\"}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.compensated", NULL);
    assert_string_equal(status_of(h, "o2"), "approved");
    assert_events(h, "");
    /* restore of an order that does not exist at all */
    call(h, "c2", "begin_cancel", true, "restore", "{\"order_id\":\"nope\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"nope\",\"status\":null,\"changed\":false}");
    sg_task_result_fini(&r);
}

static void test_begin_cancel_and_restore(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    make_order(h, "o1", "approved");
    cJSON_Delete(drain(h));
    call(h, "c1", "begin_cancel", false, "begin_cancel",
         "{\"order_id\":\"o1\",\"reason\":\"customer_request\",\"requested_by\":\"cus_alice\"}",
         &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"customer_id\":\"cus_alice\",\"email\":"
                     "\"alice@example.com\",\"reservation_id\":\"res-o1\",\"payment_id\":"
                     "\"pay-o1\",\"amount\":7180,\"currency\":\"EUR\"}");
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM orders WHERE order_id = 'o1' AND"
                                  " status = 'cancelling' AND previous_status = 'approved' AND"
                                  " cancel_reason = 'customer_request' AND"
                                  " cancel_requested_by = 'cus_alice' AND"
                                  " cancel_saga_id = 'c1'"),
                     1);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM order_history WHERE order_id = 'o1' AND"
                                  " from_status = 'approved' AND to_status = 'cancelling' AND"
                                  " reason = 'customer_request' AND saga_id = 'c1'"),
                     1);
    cJSON *evs = drain(h);
    assert_string_equal(types_of(evs), "order.updated");
    assert_string_equal(ev_str(evs, 0, "status"), "cancelling");
    assert_string_equal(ev_str(evs, 0, "reason"), "customer_request");
    assert_string_equal(ev_str(evs, 0, "correlation_id"), "c1");
    cJSON_Delete(evs);

    /* A second cancel saga is refused, and its compensation (the refused step may have
     * timed out) must not undo the first saga's CANCELLING. */
    call(h, "c2", "begin_cancel", false, "begin_cancel",
         "{\"order_id\":\"o1\",\"reason\":\"other\"}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.not_cancellable", NULL);
    call(h, "c2", "begin_cancel", true, "restore", "{\"order_id\":\"o1\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"cancelling\",\"changed\":false}");
    assert_string_equal(status_of(h, "o1"), "cancelling");
    assert_events(h, "");

    /* The refund failed: c1 restores. */
    call(h, "c1", "begin_cancel", true, "restore", "{\"order_id\":\"o1\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"approved\",\"changed\":true}");
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM orders WHERE order_id = 'o1' AND"
                                  " status = 'approved' AND previous_status = 'cancelling' AND"
                                  " cancel_reason IS NULL AND cancel_requested_by IS NULL AND"
                                  " cancel_saga_id IS NULL"),
                     1);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM order_history WHERE order_id = 'o1' AND"
                                  " from_status = 'cancelling' AND to_status = 'approved' AND"
                                  " reason = 'cancel_undone' AND activity = 'order.restore'"),
                     1);
    evs = drain(h);
    assert_string_equal(types_of(evs), "order.updated");
    assert_string_equal(ev_str(evs, 0, "status"), "approved");
    assert_string_equal(ev_str(evs, 0, "previous_status"), "cancelling");
    cJSON_Delete(evs);
    /* Redelivered restore: first result, no second effect. */
    call(h, "c1", "begin_cancel", true, "restore", "{\"order_id\":\"o1\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"approved\",\"changed\":true}");
    assert_int_equal(history_of(h, "o1"), 4);
    assert_events(h, "");
    /* Restored, the order can be cancelled again by a new saga. */
    call(h, "c3", "begin_cancel", false, "begin_cancel",
         "{\"order_id\":\"o1\",\"reason\":\"other\"}", &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM orders WHERE order_id = 'o1' AND"
                                  " cancel_saga_id = 'c3' AND cancel_requested_by IS NULL AND"
                                  " cancel_reason = 'other'"),
                     1);
    sg_task_result_fini(&r);
}

static void test_cancel(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    make_order(h, "o1", "cancelling");
    cJSON_Delete(drain(h));
    const char *in = "{\"order_id\":\"o1\",\"reason\":\"fraud_suspected\"}";
    call(h, "c-o1", "mark_cancelled", false, "cancel", in, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"cancelled\",\"changed\":true}");
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM orders WHERE order_id = 'o1' AND"
                                  " status = 'cancelled' AND previous_status = 'cancelling' AND"
                                  " cancel_reason = 'fraud_suspected'"),
                     1);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM order_history WHERE order_id = 'o1' AND"
                                  " from_status = 'cancelling' AND to_status = 'cancelled' AND"
                                  " reason = 'fraud_suspected'"),
                     1);
    cJSON *evs = drain(h);
    assert_string_equal(types_of(evs), "order.updated,order.cancelled");
    assert_string_equal(ev_str(evs, 1, "order_id"), "o1");
    assert_string_equal(ev_str(evs, 1, "customer_id"), "cus_alice");
    assert_string_equal(ev_str(evs, 1, "reason"), "fraud_suspected");
    assert_string_equal(ev_str(evs, 1, "correlation_id"), "c-o1");
    cJSON_Delete(evs);

    /* Already cancelled: success, no effect; a restore now changes nothing either. */
    call(h, "c-o1", "mark_cancelled_again", false, "cancel", in, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"cancelled\",\"changed\":false}");
    call(h, "c-o1", "begin_cancel", true, "restore", "{\"order_id\":\"o1\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"cancelled\",\"changed\":false}");
    assert_int_equal(history_of(h, "o1"), 4);
    assert_events(h, "");
    call(h, "c9", "mark_cancelled", false, "cancel", "{\"order_id\":\"x\",\"reason\":\"other\"}",
         &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.not_found", NULL);
    sg_task_result_fini(&r);
}

/* ---- idempotency and atomicity ---- */

static void test_idempotency(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char in[1024];
    order_input(in, sizeof(in), "o1", ORDER_TOTAL);
    call(h, "s1", "create_order", false, "create_pending", in, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"pending\"}");
    /* Same key, other input: the first outcome, no second effect. */
    order_input(in, sizeof(in), "o2", ORDER_TOTAL);
    call(h, "s1", "create_order", false, "create_pending", in, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"pending\"}");
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM orders"), 1);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM order_lines"), 2);
    assert_int_equal(history_of(h, "o1"), 1);
    assert_events(h, "order.created");

    /* A refusal is recorded too: the same key keeps its answer after the order exists. */
    call(h, "s2", "approve_order", false, "approve",
         "{\"order_id\":\"o2\",\"reservation_id\":\"r\",\"payment_id\":\"p\"}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.not_found", NULL);
    call(h, "s2", "create_order", false, "create_pending", in, &r);
    mh_assert_ok(&r, NULL);
    call(h, "s2", "approve_order", false, "approve",
         "{\"order_id\":\"o2\",\"reservation_id\":\"r\",\"payment_id\":\"p\"}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.not_found", NULL);
    assert_string_equal(status_of(h, "o2"), "pending");
    sg_task_result_fini(&r);
}

static void test_retryable_not_recorded(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char in[1024];
    order_input(in, sizeof(in), "o1", ORDER_TOTAL);
    /* The history insert fails after the order and its lines were written: the whole
     * transaction rolls back, nothing is recorded, no event leaves. */
    assert_int_equal(mh_exec(h->db, "CREATE TRIGGER no_history BEFORE INSERT ON order_history"
                                    " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;"),
                     SQLITE_OK);
    call(h, "s1", "create_order", false, "create_pending", in, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "order.store", NULL);
    assert_non_null(strstr(r.error_message, "disk on fire"));
    assert_string_equal(status_of(h, "o1"), "none");
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM order_lines"), 0);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM svc_idempotency"), 0);
    assert_events(h, "");
    /* The retry runs the operation again and takes effect once. */
    assert_int_equal(mh_exec(h->db, "DROP TRIGGER no_history;"), SQLITE_OK);
    call(h, "s1", "create_order", false, "create_pending", in, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"pending\"}");
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM order_lines"), 2);
    assert_events(h, "order.created");

    /* Same for a status change: approve rolled back entirely. */
    assert_int_equal(mh_exec(h->db, "CREATE TRIGGER no_history BEFORE INSERT ON order_history"
                                    " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;"),
                     SQLITE_OK);
    const char *ain = "{\"order_id\":\"o1\",\"reservation_id\":\"r\",\"payment_id\":\"p\"}";
    call(h, "s1", "approve_order", false, "approve", ain, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "order.store", NULL);
    assert_string_equal(status_of(h, "o1"), "pending");
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM orders WHERE reservation_id IS NULL"
                                         " AND version = 1"),
                     1);
    assert_events(h, "");
    assert_int_equal(mh_exec(h->db, "DROP TRIGGER no_history;"), SQLITE_OK);
    call(h, "s1", "approve_order", false, "approve", ain, &r);
    mh_assert_ok(&r, NULL);
    assert_events(h, "order.updated");

    /* Injected transient failures (chaos) before the operation: not recorded. */
    mh_reopen(h, "order.error_rate=1");
    call(h, "s1", "get", false, "get", "{\"order_id\":\"o1\"}", &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "order.unavailable", NULL);
    /* A lost reply: the outcome is recorded, the retry finds it. */
    mh_reopen(h, "order.lost_reply_rate=1");
    call(h, "c1", "begin_cancel", false, "begin_cancel",
         "{\"order_id\":\"o1\",\"reason\":\"other\"}", &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "order.reply_lost", NULL);
    mh_reopen(h, NULL);
    call(h, "c1", "begin_cancel", false, "begin_cancel",
         "{\"order_id\":\"o1\",\"reason\":\"other\"}", &r);
    mh_assert_ok(&r, NULL);
    assert_non_null(strstr(r.output, "\"payment_id\":\"p\""));
    assert_int_equal(history_of(h, "o1"), 3);
    assert_events(h, "order.updated");
    sg_task_result_fini(&r);
}

/* ---- invalid input ---- */

typedef struct {
    const char *op;
    const char *input;
    const char *names; /* what the message must mention */
} bad_t;

static const bad_t bad_inputs[] = {
    {"create_pending", "[1]", "JSON object"},
    {"create_pending", "not json", "JSON object"},
    {"create_pending", "{}", "order_id"},
    {"create_pending", "{\"order_id\":7}", "order_id"},
    {"create_pending", "{\"order_id\":\"a b\"}", "order_id"},
    {"create_pending", "{\"order_id\":\"\"}", "order_id"},
    {"create_pending", "{\"order_id\":\"o1\"}", "customer_id"},
    {"create_pending", "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"email\":5}", "email"},
    {"create_pending", "{\"order_id\":\"o1\",\"customer_id\":\"c\"}", "items"},
    {"create_pending", "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":[]}", "items"},
    {"create_pending", "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":{}}", "items"},
    {"create_pending", "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":[1]}", "items[0]"},
    {"create_pending",
     "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"qty\":1,"
     "\"price\":1},{\"sku\":\"B\",\"qty\":0,\"price\":1}]}",
     "items[1]: field \"qty\""},
    {"create_pending",
     "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":[{\"qty\":1,\"price\":1}]}",
     "items[0]: field \"sku\""},
    {"create_pending",
     "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"qty\":1.5,"
     "\"price\":1}]}",
     "\"qty\""},
    {"create_pending",
     "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"qty\":1,"
     "\"price\":-1}]}",
     "\"price\""},
    {"create_pending",
     "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"qty\":1,"
     "\"price\":1}],\"total\":\"1\"}",
     "total"},
    {"create_pending",
     "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"qty\":1,"
     "\"price\":1}],\"total\":1}",
     "currency"},
    {"create_pending",
     "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"qty\":1,"
     "\"price\":1}],\"total\":1,\"currency\":\"eur\"}",
     "currency"},
    {"create_pending",
     "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"qty\":1,"
     "\"price\":1}],\"total\":1,\"currency\":\"EUR\",\"shipping_address\":\"here\"}",
     "shipping_address"},
    {"approve", "{\"order_id\":\"o1\",\"payment_id\":\"p\"}", "reservation_id"},
    {"approve", "{\"order_id\":\"o1\",\"reservation_id\":\"r\",\"payment_id\":1}", "payment_id"},
    {"reject", "{\"customer_id\":\"c\"}", "order_id"},
    {"begin_cancel", "{\"order_id\":\"o1\"}", "reason"},
    {"begin_cancel", "{\"order_id\":\"o1\",\"reason\":\"x\",\"requested_by\":[]}", "requested_by"},
    {"restore", "{\"order_id\":null}", "order_id"},
    {"cancel", "{\"order_id\":\"o1\",\"reason\":\"\"}", "reason"},
    {"get", "{\"order\":\"o1\"}", "order_id"},
};

static void test_invalid_input(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    make_order(h, "o1", "pending");
    cJSON_Delete(drain(h));
    for (size_t i = 0; i < SG_ARRAY_LEN(bad_inputs); i++) {
        const bad_t *b = &bad_inputs[i];
        char sid[32];
        snprintf(sid, sizeof(sid), "bad%zu", i);
        call(h, "s-bad", sid, strcmp(b->op, "reject") == 0 || strcmp(b->op, "restore") == 0, b->op,
             b->input, &r);
        print_message("%s %s -> %s\n", b->op, b->input, r.error_message);
        mh_assert_failed(&r, SG_TASK_FATAL, "order.invalid_input", NULL);
        assert_non_null(strstr(r.error_message, b->names));
    }
    /* A too long shipping address. */
    char big[6000];
    int n = snprintf(big, sizeof(big),
                     "{\"order_id\":\"o9\",\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\","
                     "\"qty\":1,\"price\":1}],\"total\":1,\"currency\":\"EUR\","
                     "\"shipping_address\":{\"line1\":\"");
    memset(big + n, 'x', 4200);
    snprintf(big + n + 4200, sizeof(big) - (size_t)n - 4200, "\"}}");
    call(h, "s-bad", "big", false, "create_pending", big, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.invalid_input", NULL);
    assert_non_null(strstr(r.error_message, "shipping_address"));

    /* Nothing happened to anything. */
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM orders"), 1);
    assert_string_equal(status_of(h, "o1"), "pending");
    assert_int_equal(history_of(h, "o1"), 1);
    assert_events(h, "");
    sg_task_result_fini(&r);
}

/* ---- reading ---- */

static void test_get(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    make_order(h, "o1", "cancelled");
    call(h, "x", "get", false, "get", "{\"order_id\":\"o1\"}", &r);
    mh_assert_ok(&r, NULL);
    cJSON *doc = cJSON_Parse(r.output);
    assert_non_null(doc);
    assert_string_equal(cJSON_GetObjectItem(doc, "order_id")->valuestring, "o1");
    assert_string_equal(cJSON_GetObjectItem(doc, "status")->valuestring, "cancelled");
    assert_string_equal(cJSON_GetObjectItem(doc, "previous_status")->valuestring, "cancelling");
    assert_string_equal(cJSON_GetObjectItem(doc, "saga_id")->valuestring, "s-o1");
    assert_string_equal(cJSON_GetObjectItem(doc, "cancel_saga_id")->valuestring, "c-o1");
    assert_string_equal(cJSON_GetObjectItem(doc, "payment_id")->valuestring, "pay-o1");
    assert_string_equal(cJSON_GetObjectItem(doc, "cancel_reason")->valuestring, "customer_request");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "cancel_requested_by")));
    assert_int_equal(cJSON_GetObjectItem(doc, "total")->valueint, ORDER_TOTAL);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "shipping_address"), "city")->valuestring,
        "Lyon");
    cJSON *items = cJSON_GetObjectItem(doc, "items");
    assert_int_equal(cJSON_GetArraySize(items), 2);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(items, 0), "price")->valueint, 2990);
    cJSON *hist = cJSON_GetObjectItem(doc, "history");
    assert_int_equal(cJSON_GetArraySize(hist), 4);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(hist, 0), "from")));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(hist, 3), "to")->valuestring,
                        "cancelled");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(hist, 2), "activity")->valuestring,
                        "order.begin_cancel");
    cJSON_Delete(doc);

    /* The gateway's reader gives the same document. */
    char *json = sg_order_get_json(h->dir, "o1");
    assert_non_null(json);
    assert_string_equal(json, r.output);
    sg_free(json);
    assert_null(sg_order_get_json(h->dir, "nope"));
    assert_null(sg_order_get_json("/nonexistent/dir", "o1"));
    assert_null(sg_order_get_json(NULL, "o1"));

    call(h, "x", "get2", false, "get", "{\"order_id\":\"nope\"}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "order.not_found", NULL);
    /* No address: null. */
    call(h, "s2", "create_order", false, "create_pending",
         "{\"order_id\":\"o2\",\"customer_id\":\"c\",\"items\":[{\"sku\":\"A\",\"qty\":1,"
         "\"price\":5}],\"total\":5,\"currency\":\"EUR\"}",
         &r);
    json = sg_order_get_json(h->dir, "o2");
    assert_non_null(strstr(json, "\"email\":null,\"items\":[{\"sku\":\"A\",\"qty\":1,"
                                 "\"price\":5}],\"total\":5"));
    assert_non_null(strstr(json, "\"shipping_address\":null"));
    sg_free(json);
    sg_task_result_fini(&r);
}

/* ---- events: ack ---- */

static void test_events_ack(void **state)
{
    mh_t *h = *state;
    make_order(h, "o1", "cancelled"); /* created, updated x3, cancelled */
    int64_t last_seq;
    cJSON *evs = peek_events(h, 2, &last_seq);
    assert_string_equal(types_of(evs), "order.created,order.updated");
    cJSON_Delete(evs);
    /* Peeking does not remove; acking up to a seq removes exactly those. */
    assert_int_equal(h->mod->events_ack(h->actx, last_seq), SG_OK);
    assert_events(h, "order.updated,order.updated,order.cancelled");
    assert_events(h, "");
}

/* ---- seed ---- */

#define SEED_ORDER                                                                        \
    "{\"order_id\":\"seed-1\",\"customer_id\":\"cus_bob\",\"email\":\"bob@example.com\"," \
    "\"items\":[{\"sku\":\"LAMP-001\",\"qty\":1,\"price\":5900}],\"total\":5900,"         \
    "\"currency\":\"EUR\",\"status\":\"%s\",\"reservation_id\":\"res-s1\","               \
    "\"payment_id\":\"pay-s1\"}"

static sg_err_t seed(mh_t *h, const char *json, char *err, size_t errlen)
{
    err[0] = '\0';
    return h->mod->seed(h->actx, json, err, errlen);
}

static void test_seed(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char err[256], doc[1024];
    /* Today's section of activities/seed/shop.json, and the empty list. */
    assert_int_equal(seed(h, "{}", err, sizeof(err)), SG_OK);
    assert_int_equal(seed(h, "{\"orders\":[]}", err, sizeof(err)), SG_OK);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM orders"), 0);

    snprintf(doc, sizeof(doc), "{\"orders\":[" SEED_ORDER "]}", "approved");
    for (int i = 0; i < 2; i++) { /* twice is harmless */
        assert_int_equal(seed(h, doc, err, sizeof(err)), SG_OK);
        assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM orders WHERE order_id = 'seed-1'"
                                             " AND status = 'approved' AND saga_id IS NULL AND"
                                             " payment_id = 'pay-s1' AND total = 5900"),
                         1);
        assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM order_lines"), 1);
        assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM order_history WHERE"
                                             " order_id = 'seed-1' AND from_status IS NULL AND"
                                             " to_status = 'approved' AND reason = 'seeded' AND"
                                             " activity = 'seed'"),
                         1);
        assert_int_equal(history_of(h, "seed-1"), 1);
    }
    assert_events(h, "");
    /* A seeded approved order is what the demo cancels. */
    call(h, "c1", "begin_cancel", false, "begin_cancel",
         "{\"order_id\":\"seed-1\",\"reason\":\"customer_request\"}", &r);
    mh_assert_ok(&r, "{\"order_id\":\"seed-1\",\"customer_id\":\"cus_bob\",\"email\":"
                     "\"bob@example.com\",\"reservation_id\":\"res-s1\",\"payment_id\":"
                     "\"pay-s1\",\"amount\":5900,\"currency\":\"EUR\"}");
    /* Seeding replaces what it names: the status, and the cancel in progress. */
    assert_int_equal(seed(h, doc, err, sizeof(err)), SG_OK);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM orders WHERE order_id = 'seed-1' AND"
                                  " status = 'approved' AND previous_status = 'cancelling' AND"
                                  " cancel_saga_id IS NULL"),
                     1);
    assert_int_equal(history_of(h, "seed-1"), 3);
    /* Status defaults to pending. */
    assert_int_equal(seed(h,
                          "{\"orders\":[{\"order_id\":\"seed-2\",\"customer_id\":\"c\","
                          "\"items\":[{\"sku\":\"A\",\"qty\":2,\"price\":5}],\"total\":10,"
                          "\"currency\":\"EUR\"}]}",
                          err, sizeof(err)),
                     SG_OK);
    assert_string_equal(status_of(h, "seed-2"), "pending");
    sg_task_result_fini(&r);
}

static void test_seed_errors(void **state)
{
    mh_t *h = *state;
    char err[256], doc[2048], one[1024];
    static const struct {
        const char *json;
        const char *names;
    } bad[] = {
        {NULL, "JSON object"},
        {"[]", "JSON object"},
        {"{oops", "JSON object"},
        {"{\"orders\":[],\"products\":[]}", "unknown key \"products\""},
        {"{\"orders\":{}}", "\"orders\" must be an array"},
        {"{\"orders\":[1]}", "orders[0] must be an object"},
        {"{\"orders\":[{\"order_id\":\"x\",\"colour\":\"red\"}]}", "unknown key \"colour\""},
        {"{\"orders\":[{\"order_id\":\"x\"}]}", "orders[0]: field \"customer_id\""},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        assert_int_equal(seed(h, bad[i].json, err, sizeof(err)), SG_ERR_INVALID);
        print_message("%s -> %s\n", bad[i].json ? bad[i].json : "(null)", err);
        assert_non_null(strstr(err, bad[i].names));
    }
    /* A bad total, a status a seed cannot set; one bad order spoils the whole seed. */
    snprintf(one, sizeof(one), SEED_ORDER, "approved");
    snprintf(doc, sizeof(doc),
             "{\"orders\":[%s,{\"order_id\":\"x\",\"customer_id\":\"c\",\"items\":[{\"sku\":"
             "\"A\",\"qty\":2,\"price\":5}],\"total\":11,\"currency\":\"EUR\"}]}",
             one);
    assert_int_equal(seed(h, doc, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "orders[1]: order x: total 11"));
    snprintf(doc, sizeof(doc), "{\"orders\":[" SEED_ORDER "]}", "cancelling");
    assert_int_equal(seed(h, doc, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "status"));
    snprintf(doc, sizeof(doc), "{\"orders\":[" SEED_ORDER "]}", "shipped");
    assert_int_equal(seed(h, doc, err, sizeof(err)), SG_ERR_INVALID);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM orders"), 0);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM order_history"), 0);
}

/* ---- durability ---- */

static void test_survives_reopen(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    make_order(h, "o1", "approved");
    mh_reopen(h, NULL);
    assert_string_equal(status_of(h, "o1"), "approved");
    /* Recorded outcomes survive: a redelivery after the restart gets the first answer. */
    char in[1024];
    order_input(in, sizeof(in), "o1", ORDER_TOTAL);
    call(h, "s-o1", "create_order", false, "create_pending", in, &r);
    mh_assert_ok(&r, "{\"order_id\":\"o1\",\"status\":\"pending\"}");
    /* The outbox too. */
    assert_events(h, "order.created,order.updated");
    /* And the state machine goes on. */
    call(h, "c1", "begin_cancel", false, "begin_cancel",
         "{\"order_id\":\"o1\",\"reason\":\"other\"}", &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(status_of(h, "o1"), "cancelling");
    sg_task_result_fini(&r);
}

static void test_open_errors(void **state)
{
    mh_t *h = *state;
    char err[256] = "";
    sg_activity_ctx_t *actx = NULL;
    sg_activity_env_t env = {.data_dir = "/nonexistent/dir"};
    assert_int_equal(h->mod->open(&env, &actx, err, sizeof(err)), SG_ERR_IO);
    assert_non_null(strstr(err, "order.db"));
    assert_null(actx);
    env.data_dir = NULL;
    assert_int_equal(h->mod->open(&env, &actx, err, sizeof(err)), SG_ERR_INVALID);
    assert_null(actx);
    /* Every operation the workflows call exists. */
    static const char *const ops[] = {"create_pending", "approve", "reject", "begin_cancel",
                                      "restore",        "cancel",  "get"};
    for (size_t i = 0; i < SG_ARRAY_LEN(ops); i++) {
        assert_non_null(sg_activity_module_op(h->mod, ops[i]));
    }
    assert_string_equal(h->mod->queue, "order");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_state_machine, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_create_pending, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_total, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_create_exists, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_approve, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_reject, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_compensation_without_forward, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_begin_cancel_and_restore, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_retryable_not_recorded, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_get, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_events_ack, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_seed, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_seed_errors, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, mh_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
