/*
 * Unit tests of the payment service (activities/payment/): charges and every decline,
 * one charge per order, refunds (whole, once per payment whatever the key, nothing
 * captured = no-op), get, idempotency, the kit's guards, invalid input, events, the
 * chaos knobs, seeding, the ledger's SQL invariants, concurrency on one card's limit,
 * reopening and out-of-memory. The database is checked through a connection of its own,
 * like the lead's conservation check.
 */
/* cmocka.h needs these before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activities/activity.h"
#include "activities/common/events.h"
#include "tests/support/module_harness.h"

static const char seed_json[] =
    "{\"_comment\": \"test cards\", \"cards\": ["
    "{\"token\": \"tok_alice\", \"customer_id\": \"cus_alice\", \"holder\": \"Alice\","
    " \"last4\": \"4242\", \"limit\": 10000, \"blocked\": false},"
    "{\"token\": \"tok_bob\", \"customer_id\": \"cus_bob\", \"holder\": \"Bob\","
    " \"last4\": \"1881\", \"limit\": 5000},"
    "{\"token\": \"tok_blocked\", \"customer_id\": \"cus_frank\", \"holder\": \"Frank\","
    " \"last4\": \"0002\", \"limit\": 100000, \"blocked\": true}]}";

/* ---- harness (tests/support/module_harness.h) ---- */

static int setup(void **state)
{
    *state = mh_new("payment", NULL, seed_json);
    return 0;
}

/* The charge_payment step of instance inst. */
static void charge(mh_t *h, const char *inst, const char *order, const char *customer,
                   const char *token, long long amount, sg_task_result_t *res)
{
    char in[512];
    snprintf(in, sizeof(in),
             "{\"order_id\":\"%s\",\"customer_id\":\"%s\",\"card_token\":\"%s\","
             "\"amount\":%lld,\"currency\":\"EUR\"}",
             order, customer, token, amount);
    mh_call(h, "charge", inst, "charge_payment", false, in, res);
}

/* payment.refund with payment_id (NULL: JSON null) as the given step. */
static void refund(mh_t *h, const char *inst, const char *sid, bool comp, const char *order,
                   const char *payment_id, long long amount, sg_task_result_t *res)
{
    char in[512], pid[96];
    snprintf(pid, sizeof(pid), payment_id ? "\"%s\"" : "null", payment_id ? payment_id : "");
    snprintf(in, sizeof(in),
             "{\"order_id\":\"%s\",\"payment_id\":%s,\"amount\":%lld,\"currency\":\"EUR\"}", order,
             pid, amount);
    mh_call(h, "refund", inst, sid, comp, in, res);
}

/* A string field of an output, or NULL when it is absent or not a string. */
static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jnull(const cJSON *o, const char *key)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* Copies the payment_id of a charge result into out. */
static void payment_id_of(const sg_task_result_t *r, char out[64])
{
    cJSON *o = mh_output(r);
    assert_non_null(jstr(o, "payment_id"));
    snprintf(out, 64, "%s", jstr(o, "payment_id"));
    cJSON_Delete(o);
}

static long long ledger_count(const mh_t *h, const char *kind, const char *order)
{
    return mh_query_int(h->db, "SELECT count(*) FROM ledger WHERE kind = '%s' AND order_id = '%s'",
                        kind, order);
}

/* What the conservation check computes: charges - refunds of an order. */
static long long net_of(const mh_t *h, const char *order)
{
    return mh_query_int(h->db,
                        "SELECT coalesce(sum(CASE kind WHEN 'charge' THEN amount WHEN 'refund'"
                        " THEN -amount ELSE 0 END), 0) FROM ledger WHERE order_id = '%s'",
                        order);
}

/* ---- the outbox ---- */

/* Every event in the outbox, each decoded from its JSON and from its protobuf bytes, then
 * acknowledged, so the next take sees only new ones. mh_events_free it. */
static mh_events_t events_take(mh_t *h)
{
    mh_events_t e;
    mh_events_peek(h, 100, &e);
    for (size_t i = 0; i < e.n; i++) {
        assert_non_null(e.proto[i]);
        assert_non_null(e.json[i]);
    }
    mh_events_ack(h, &e);
    return e;
}

/* ---- charge ---- */

static void test_charge(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 2990, &r);
    cJSON *o = mh_output(&r);
    assert_int_equal(strlen(jstr(o, "payment_id")), 26);
    assert_int_equal(mh_jint(o, "amount"), 2990);
    assert_string_equal(jstr(o, "currency"), "EUR");
    assert_string_equal(jstr(o, "card_last4"), "4242");
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM ledger WHERE kind = 'charge' AND id = '%s'"
                                  " AND order_id = 'o1' AND amount = 2990 AND currency = 'EUR'"
                                  " AND card_token = 'tok_alice'",
                                  jstr(o, "payment_id")),
                     1);
    assert_int_equal(net_of(h, "o1"), 2990);

    mh_events_t e = events_take(h);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.type[0], "payment.processed");
    assert_string_equal(jstr(e.json[0], "correlation_id"), "i1");
    assert_string_equal(jstr(e.json[0], "source"), "payment");
    assert_string_equal(jstr(e.json[0], "order_id"), "o1");
    assert_string_equal(jstr(e.json[0], "payment_id"), jstr(o, "payment_id"));
    assert_string_equal(jstr(e.json[0], "customer_id"), "cus_alice");
    assert_int_equal(mh_jint(e.json[0], "amount"), 2990);
    assert_string_equal(jstr(e.json[0], "currency"), "EUR");
    assert_string_equal(jstr(e.json[0], "card_last4"), "4242");
    mh_events_free(&e);
    e = events_take(h); /* acknowledged: gone */
    assert_int_equal(e.n, 0);

    /* Redelivered (same key): the first output again, no second charge or event. */
    char *first = strdup(r.output);
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 2990, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output, first);
    assert_int_equal(ledger_count(h, "charge", "o1"), 1);
    e = events_take(h);
    assert_int_equal(e.n, 0);
    free(first);
    cJSON_Delete(o);
    sg_task_result_fini(&r);
}

/* A decline: FATAL payment.declined naming the reason, a decline row (no money), one
 * payment.failed event; redelivered, the same answer and nothing more. */
static void check_decline(mh_t *h, const char *inst, const char *order, const char *customer,
                          const char *token, long long amount, const char *reason)
{
    sg_task_result_t r = {0};
    mh_events_t before = events_take(h); /* only this decline's events below */
    mh_events_free(&before);
    for (int delivery = 0; delivery < 2; delivery++) {
        charge(h, inst, order, customer, token, amount, &r);
        mh_assert_failed(&r, SG_TASK_FATAL, "payment.declined", reason);
    }
    assert_int_equal(ledger_count(h, "charge", order), 0);
    assert_int_equal(ledger_count(h, "decline", order), 1);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM ledger WHERE kind = 'decline' AND"
                                  " order_id = '%s' AND amount = %lld AND instr(reason, '%s') > 0",
                                  order, amount, reason),
                     1);
    assert_int_equal(net_of(h, order), 0);
    mh_events_t e = events_take(h);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.type[0], "payment.failed");
    assert_string_equal(jstr(e.json[0], "correlation_id"), inst);
    assert_string_equal(jstr(e.json[0], "order_id"), order);
    assert_string_equal(jstr(e.json[0], "customer_id"), customer);
    assert_int_equal(mh_jint(e.json[0], "amount"), amount);
    assert_string_equal(jstr(e.json[0], "currency"), "EUR");
    assert_string_equal(jstr(e.json[0], "code"), "payment.declined");
    assert_non_null(strstr(jstr(e.json[0], "reason"), reason));
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

static void test_declines(void **state)
{
    mh_t *h = *state;
    check_decline(h, "d1", "od1", "cus_alice", "tok_nope", 100, "unknown card token");
    check_decline(h, "d2", "od2", "cus_frank", "tok_blocked", 100, "blocked");
    check_decline(h, "d3", "od3", "cus_bob", "tok_alice", 100,
                  "does not belong to customer cus_bob");
    check_decline(h, "d4", "od4", "cus_bob", "tok_bob", 5001, "insufficient funds");
}

/* Insufficient funds = outstanding (charges - refunds) + amount over the limit. */
static void test_limit(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "l1", "ol1", "cus_bob", "tok_bob", 3000, &r);
    payment_id_of(&r, pid);
    check_decline(h, "l2", "ol2", "cus_bob", "tok_bob", 2001,
                  "insufficient funds: 3000 outstanding + 2001 exceeds the limit 5000");
    charge(h, "l3", "ol3", "cus_bob", "tok_bob", 2000, &r); /* exactly the limit */
    mh_assert_ok(&r, NULL);
    check_decline(h, "l4", "ol4", "cus_bob", "tok_bob", 1, "insufficient funds");
    /* A refund frees its amount on the card again. */
    refund(h, "l1", "charge_payment", true, "ol1", pid, 3000, &r);
    mh_assert_ok(&r, NULL);
    charge(h, "l5", "ol5", "cus_bob", "tok_bob", 3000, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(
        mh_query_int(h->db, "SELECT sum(CASE kind WHEN 'charge' THEN amount ELSE -amount END)"
                            " FROM ledger WHERE card_token = 'tok_bob' AND kind != 'decline'"),
        5000);
    sg_task_result_fini(&r);
}

/* An order is charged once: another key (another saga) is refused, not charged again. */
static void test_one_charge_per_order(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 1000, &r);
    mh_assert_ok(&r, NULL);
    mh_events_t e = events_take(h);
    mh_events_free(&e);
    charge(h, "i2", "o1", "cus_alice", "tok_alice", 1000, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "payment.already_charged", "already charged");
    assert_int_equal(ledger_count(h, "charge", "o1"), 1);
    assert_int_equal(ledger_count(h, "decline", "o1"), 0);
    e = events_take(h);
    assert_int_equal(e.n, 0);
    /* Even after a refund the order is not charged again. */
    refund(h, "i1", "charge_payment", true, "o1", NULL, 1000, &r);
    mh_assert_ok(&r, NULL);
    charge(h, "i3", "o1", "cus_alice", "tok_alice", 1000, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "payment.already_charged", NULL);
    assert_int_equal(ledger_count(h, "charge", "o1"), 1);
    assert_int_equal(net_of(h, "o1"), 0);

    /* A decline is no charge: a later saga for the order may charge it. */
    charge(h, "i4", "o2", "cus_alice", "tok_nope", 1000, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "payment.declined", NULL);
    charge(h, "i5", "o2", "cus_alice", "tok_alice", 1000, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(net_of(h, "o2"), 1000);
    e = events_take(h);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

/* ---- refund ---- */

static void test_refund(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 2500, &r);
    payment_id_of(&r, pid);
    mh_events_t e = events_take(h);
    mh_events_free(&e);

    /* The compensation of the charge. */
    refund(h, "i1", "charge_payment", true, "o1", pid, 2500, &r);
    cJSON *o = mh_output(&r);
    assert_string_equal(jstr(o, "status"), "refunded");
    assert_string_equal(jstr(o, "payment_id"), pid);
    assert_int_equal(mh_jint(o, "refunded"), 2500);
    assert_int_equal(mh_jint(o, "captured"), 2500);
    assert_string_equal(jstr(o, "currency"), "EUR");
    assert_null(jstr(o, "note"));
    char refund_id[64];
    snprintf(refund_id, sizeof(refund_id), "%s", jstr(o, "refund_id"));
    assert_int_equal(strlen(refund_id), 26);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM ledger WHERE kind = 'refund' AND id = '%s'"
                                  " AND payment_id = '%s' AND amount = 2500 AND order_id = 'o1'",
                                  refund_id, pid),
                     1);
    assert_int_equal(net_of(h, "o1"), 0);
    e = events_take(h);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.type[0], "payment.refunded");
    assert_string_equal(jstr(e.json[0], "correlation_id"), "i1");
    assert_string_equal(jstr(e.json[0], "order_id"), "o1");
    assert_string_equal(jstr(e.json[0], "payment_id"), pid);
    assert_string_equal(jstr(e.json[0], "refund_id"), refund_id);
    assert_int_equal(mh_jint(e.json[0], "amount"), 2500);
    assert_string_equal(jstr(e.json[0], "currency"), "EUR");
    mh_events_free(&e);

    /* Same key again: the same answer, no second refund. */
    char *first = strdup(r.output);
    refund(h, "i1", "charge_payment", true, "o1", pid, 2500, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output, first);
    free(first);

    /* Another key (order_cancel's pivot) for the same payment: refunded once only. */
    refund(h, "c1", "refund_payment", false, "o1", pid, 2500, &r);
    cJSON_Delete(o);
    o = mh_output(&r);
    assert_string_equal(jstr(o, "status"), "already_refunded");
    assert_int_equal(mh_jint(o, "refunded"), 0);
    assert_string_equal(jstr(o, "refund_id"), refund_id);
    /* ... and by order id, with payment_id null. */
    refund(h, "c2", "refund_payment", false, "o1", NULL, 2500, &r);
    cJSON_Delete(o);
    o = mh_output(&r);
    assert_string_equal(jstr(o, "status"), "already_refunded");
    assert_int_equal(ledger_count(h, "refund", "o1"), 1);
    assert_int_equal(net_of(h, "o1"), 0);
    e = events_take(h);
    assert_int_equal(e.n, 0);
    cJSON_Delete(o);
    sg_task_result_fini(&r);
}

/* payment_id null (the charge timed out): the charge of the order is refunded. */
static void test_refund_by_order(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 700, &r);
    payment_id_of(&r, pid);
    refund(h, "i1", "charge_payment", true, "o1", NULL, 700, &r);
    cJSON *o = mh_output(&r);
    assert_string_equal(jstr(o, "status"), "refunded");
    assert_string_equal(jstr(o, "payment_id"), pid);
    assert_int_equal(mh_jint(o, "refunded"), 700);
    assert_int_equal(net_of(h, "o1"), 0);
    cJSON_Delete(o);
    /* amount and currency are optional cross-checks. */
    charge(h, "i2", "o2", "cus_alice", "tok_alice", 800, &r);
    mh_call(h, "refund", "i2", "charge_payment", true, "{\"order_id\":\"o2\"}", &r);
    o = mh_output(&r);
    assert_int_equal(mh_jint(o, "refunded"), 800);
    assert_int_equal(net_of(h, "o2"), 0);
    cJSON_Delete(o);
    sg_task_result_fini(&r);
}

/* The compensation of a charge that never happened succeeds and does nothing; the late
 * forward task is then refused by the kit and takes no effect. */
static void test_refund_nothing_captured(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    refund(h, "i1", "charge_payment", true, "o1", NULL, 1200, &r);
    cJSON *o = mh_output(&r);
    assert_string_equal(jstr(o, "status"), "nothing_captured");
    assert_int_equal(mh_jint(o, "refunded"), 0);
    assert_true(jnull(o, "payment_id"));
    cJSON_Delete(o);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM ledger"), 0);

    charge(h, "i1", "o1", "cus_alice", "tok_alice", 1200, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "payment.compensated", NULL);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM ledger"), 0);
    mh_events_t e = events_take(h);
    assert_int_equal(e.n, 0);

    /* A declined charge captured nothing either. */
    charge(h, "i2", "o2", "cus_frank", "tok_blocked", 100, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "payment.declined", NULL);
    refund(h, "i2", "charge_payment", true, "o2", NULL, 100, &r);
    o = mh_output(&r);
    assert_string_equal(jstr(o, "status"), "nothing_captured");
    assert_int_equal(ledger_count(h, "refund", "o2"), 0);
    cJSON_Delete(o);
    e = events_take(h);
    assert_int_equal(e.n, 1); /* the payment.failed only */
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

/* Another amount or currency than captured: the captured amount is refunded, and the
 * output says so. */
static void test_refund_other_amount(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 3000, &r);
    payment_id_of(&r, pid);
    refund(h, "i1", "charge_payment", true, "o1", pid, 1000, &r);
    cJSON *o = mh_output(&r);
    assert_int_equal(mh_jint(o, "refunded"), 3000);
    assert_non_null(strstr(jstr(o, "note"), "asked for 1000 EUR"));
    assert_int_equal(mh_query_int(h->db, "SELECT amount FROM ledger WHERE kind = 'refund'"), 3000);
    cJSON_Delete(o);

    charge(h, "i2", "o2", "cus_alice", "tok_alice", 500, &r);
    mh_call(h, "refund", "i2", "charge_payment", true,
            "{\"order_id\":\"o2\",\"amount\":500,\"currency\":\"USD\"}", &r);
    o = mh_output(&r);
    assert_int_equal(mh_jint(o, "refunded"), 500);
    assert_string_equal(jstr(o, "currency"), "EUR");
    assert_non_null(strstr(jstr(o, "note"), "500 USD"));
    assert_int_equal(net_of(h, "o2"), 0);
    cJSON_Delete(o);
    sg_task_result_fini(&r);
}

static void test_refund_refusals(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 3000, &r);
    payment_id_of(&r, pid);
    refund(h, "x1", "refund_payment", false, "o1", "01NOSUCHPAYMENT00000000000", 3000, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "payment.not_found", "01NOSUCHPAYMENT00000000000");
    /* Another order's payment is never refunded. */
    refund(h, "x2", "refund_payment", false, "o9", pid, 3000, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "payment.invalid_input", "belongs to order o1");
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0);
    assert_int_equal(net_of(h, "o1"), 3000);
    sg_task_result_fini(&r);
}

/* ---- get ---- */

static void check_get(mh_t *h, const char *inst, const char *order, const char *status,
                      long long charged, long long refunded)
{
    sg_task_result_t r = {0};
    char in[128];
    snprintf(in, sizeof(in), "{\"order_id\":\"%s\"}", order);
    mh_call(h, "get", inst, "get", false, in, &r);
    cJSON *o = mh_output(&r);
    assert_string_equal(jstr(o, "order_id"), order);
    assert_string_equal(jstr(o, "status"), status);
    assert_int_equal(mh_jint(o, "charged"), charged);
    assert_int_equal(mh_jint(o, "refunded"), refunded);
    assert_true(charged > 0 ? jstr(o, "payment_id") != NULL : jnull(o, "payment_id"));
    cJSON_Delete(o);
    sg_task_result_fini(&r);
}

static void test_get(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    check_get(h, "g0", "o1", "none", 0, 0);
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 900, &r);
    check_get(h, "g1", "o1", "charged", 900, 0);
    charge(h, "i2", "o2", "cus_alice", "tok_nope", 900, &r);
    check_get(h, "g2", "o2", "declined", 0, 0);
    refund(h, "i1", "charge_payment", true, "o1", NULL, 900, &r);
    check_get(h, "g3", "o1", "refunded", 900, 900);
    /* Read only: no ledger rows, no events of its own. */
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM ledger"), 3);
    mh_events_t e = events_take(h);
    assert_int_equal(e.n, 3);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

/* ---- invalid input ---- */

static void check_invalid(mh_t *h, const char *op, const char *input, const char *field)
{
    sg_task_result_t r = {0};
    static int n;
    char sid[32];
    snprintf(sid, sizeof(sid), "bad%d", n++);
    mh_call(h, op, "iv", sid, false, input, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "payment.invalid_input", field);
    sg_task_result_fini(&r);
}

static void test_invalid_input(void **state)
{
    mh_t *h = *state;
    const char *ok_tail = "\"customer_id\":\"cus_alice\",\"card_token\":\"tok_alice\"";
    char in[512];
    check_invalid(h, "charge", "[1,2]", "JSON object");
    check_invalid(h, "charge", "not json", "JSON object");
    check_invalid(h, "charge",
                  "{\"customer_id\":\"c\",\"card_token\":\"t\",\"amount\":1,"
                  "\"currency\":\"EUR\"}",
                  "\"order_id\"");
    snprintf(in, sizeof(in), "{\"order_id\":\"o1\",%s,\"currency\":\"EUR\"}", ok_tail);
    check_invalid(h, "charge", in, "\"amount\"");
    snprintf(in, sizeof(in), "{\"order_id\":\"o1\",%s,\"amount\":0,\"currency\":\"EUR\"}", ok_tail);
    check_invalid(h, "charge", in, "\"amount\"");
    snprintf(in, sizeof(in), "{\"order_id\":\"o1\",%s,\"amount\":\"10\",\"currency\":\"EUR\"}",
             ok_tail);
    check_invalid(h, "charge", in, "\"amount\"");
    snprintf(in, sizeof(in), "{\"order_id\":\"o1\",%s,\"amount\":1.5,\"currency\":\"EUR\"}",
             ok_tail);
    check_invalid(h, "charge", in, "\"amount\"");
    snprintf(in, sizeof(in), "{\"order_id\":\"o1\",%s,\"amount\":10,\"currency\":\"eur\"}",
             ok_tail);
    check_invalid(h, "charge", in, "\"currency\"");
    snprintf(in, sizeof(in), "{\"order_id\":\"o1\",%s,\"amount\":10}", ok_tail);
    check_invalid(h, "charge", in, "\"currency\"");
    check_invalid(h, "charge",
                  "{\"order_id\":\"o1\",\"customer_id\":\"c\",\"card_token\":7,\"amount\":10,"
                  "\"currency\":\"EUR\"}",
                  "\"card_token\"");
    check_invalid(h, "refund", "{\"payment_id\":null}", "\"order_id\"");
    check_invalid(h, "refund", "{\"order_id\":\"o1\",\"payment_id\":5}", "\"payment_id\"");
    check_invalid(h, "refund", "{\"order_id\":\"o1\",\"amount\":-1}", "\"amount\"");
    check_invalid(h, "refund", "{\"order_id\":\"o1\",\"currency\":\"EURO\"}", "\"currency\"");
    check_invalid(h, "get", "{}", "\"order_id\"");
    check_invalid(h, "get", "{\"order_id\":\"\"}", "\"order_id\"");
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM ledger"), 0);
    mh_events_t e = events_take(h);
    assert_int_equal(e.n, 0);
}

/* ---- chaos ---- */

static void test_chaos_decline(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    mh_reopen(h, "payment.decline_rate=1");
    check_decline(h, "k1", "ok1", "cus_alice", "tok_alice", 100, "declined by issuer (chaos)");
    /* Refunds are never declined. */
    refund(h, "k1", "charge_payment", true, "ok1", NULL, 100, &r);
    mh_assert_ok(&r, NULL);
    mh_reopen(h, "payment.decline_rate=0");
    charge(h, "k2", "ok2", "cus_alice", "tok_alice", 100, &r);
    mh_assert_ok(&r, NULL);
    mh_reopen(h, "inventory.decline_rate=1"); /* another queue's knob */
    charge(h, "k3", "ok3", "cus_alice", "tok_alice", 100, &r);
    mh_assert_ok(&r, NULL);
    mh_events_t e = events_take(h);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

/* The kit's knobs on payment: a transient error is not recorded and has no effect; a
 * lost reply keeps the charge, and the retry finds it. */
static void test_chaos_kit(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    mh_reopen(h, "payment.error_rate=1");
    charge(h, "k1", "ok1", "cus_alice", "tok_alice", 100, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "payment.unavailable", NULL);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM ledger"), 0);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM svc_idempotency"), 0);
    mh_reopen(h, "payment.error_rate=0");
    charge(h, "k1", "ok1", "cus_alice", "tok_alice", 100, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(ledger_count(h, "charge", "ok1"), 1);

    mh_reopen(h, "payment.lost_reply_rate=1");
    charge(h, "k2", "ok2", "cus_alice", "tok_alice", 200, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "payment.reply_lost", NULL);
    assert_int_equal(ledger_count(h, "charge", "ok2"), 1);
    mh_reopen(h, "payment.latency_ms=1");
    charge(h, "k2", "ok2", "cus_alice", "tok_alice", 200, &r);
    mh_assert_ok(&r, NULL);
    char pid[64];
    payment_id_of(&r, pid);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM ledger WHERE kind = 'charge' AND"
                                  " order_id = 'ok2' AND id = '%s'",
                                  pid),
                     1);
    mh_events_t e = events_take(h);
    assert_int_equal(e.n, 2); /* one payment.processed per charge */
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

/* ---- seed ---- */

static void check_bad_seed(mh_t *h, const char *json, const char *err_part)
{
    char err[256] = "";
    assert_int_equal(h->mod->seed(h->actx, json, err, sizeof(err)), SG_ERR_INVALID);
    if (strstr(err, err_part) == NULL) {
        fail_msg("seed error \"%s\" lacks \"%s\"", err, err_part);
    }
}

static void test_seed(void **state)
{
    mh_t *h = *state;
    char err[256] = "";
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM cards"), 3);
    assert_int_equal(h->mod->seed(h->actx, seed_json, err, sizeof(err)), SG_OK); /* again */
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM cards"), 3);
    assert_int_equal(mh_query_int(h->db, "SELECT blocked FROM cards WHERE token = 'tok_blocked'"),
                     1);
    assert_int_equal(mh_query_int(h->db, "SELECT limit_cents FROM cards WHERE token = 'tok_bob'"),
                     5000);
    assert_int_equal(h->mod->seed(h->actx, "{}", err, sizeof(err)), SG_OK);

    /* Upsert: what a seed names is replaced. */
    assert_int_equal(h->mod->seed(h->actx,
                                  "{\"cards\":[{\"token\":\"tok_bob\",\"customer_id\":\"cus_bob\","
                                  "\"holder\":\"Bob\",\"last4\":\"1881\",\"limit\":10,"
                                  "\"blocked\":true}]}",
                                  err, sizeof(err)),
                     SG_OK);
    assert_int_equal(mh_query_int(h->db, "SELECT limit_cents FROM cards WHERE token = 'tok_bob'"),
                     10);
    assert_int_equal(mh_query_int(h->db, "SELECT blocked FROM cards WHERE token = 'tok_bob'"), 1);

    check_bad_seed(h, "[]", "JSON object");
    check_bad_seed(h, "{\"cards\":{}}", "array");
    check_bad_seed(h, "{\"cardz\":[]}", "unknown key \"cardz\"");
    check_bad_seed(h, "{\"cards\":[1]}", "cards[0] must be an object");
    /* All or nothing: the valid first card is not written either. */
    const char *ok_card = "{\"token\":\"tok_new\",\"customer_id\":\"c\",\"holder\":\"H\","
                          "\"last4\":\"1234\",\"limit\":1}";
    static const struct {
        const char *card, *err;
    } bad[] = {
        {"{\"customer_id\":\"c\",\"holder\":\"H\",\"last4\":\"1234\",\"limit\":1}", "\"token\""},
        {"{\"token\":\"t\",\"holder\":\"H\",\"last4\":\"1234\",\"limit\":1}", "\"customer_id\""},
        {"{\"token\":\"t\",\"customer_id\":\"c\",\"last4\":\"1234\",\"limit\":1}", "\"holder\""},
        {"{\"token\":\"t\",\"customer_id\":\"c\",\"holder\":\"H\",\"last4\":\"12a4\",\"limit\":1}",
         "\"last4\""},
        {"{\"token\":\"t\",\"customer_id\":\"c\",\"holder\":\"H\",\"last4\":\"1234\",\"limit\":-1}",
         "\"limit\""},
        {"{\"token\":\"t\",\"customer_id\":\"c\",\"holder\":\"H\",\"last4\":\"1234\",\"limit\":1,"
         "\"blocked\":\"no\"}",
         "\"blocked\""},
        {"{\"token\":\"t\",\"customer_id\":\"c\",\"holder\":\"H\",\"last4\":\"1234\",\"limit\":1,"
         "\"limits\":2}",
         "unknown key \"limits\""},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        char json[512];
        snprintf(json, sizeof(json), "{\"cards\":[%s,%s]}", ok_card, bad[i].card);
        check_bad_seed(h, json, bad[i].err);
    }
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM cards WHERE token = 'tok_new'"), 0);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM cards"), 3);
}

/* ---- the ledger's own invariants (what a buggy or concurrent writer would hit) ---- */

static void test_ledger_invariants(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64], sql[512];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 1000, &r);
    payment_id_of(&r, pid);
    const char *cols = "INSERT INTO ledger(id, order_id, kind, amount, currency, card_token,"
                       " customer_id, payment_id, ts_ms) VALUES";
    /* A second charge of the order. */
    snprintf(sql, sizeof(sql), "%s('X1', 'o1', 'charge', 5, 'EUR', 'tok_alice', 'c', NULL, 0)",
             cols);
    assert_int_equal(mh_exec(h->db, sql), SQLITE_CONSTRAINT);
    /* A refund over the charge, of another order's charge, or of no charge. */
    snprintf(sql, sizeof(sql), "%s('X2', 'o1', 'refund', 1001, 'EUR', 'tok_alice', 'c', '%s', 0)",
             cols, pid);
    assert_int_equal(mh_exec(h->db, sql), SQLITE_CONSTRAINT);
    snprintf(sql, sizeof(sql), "%s('X3', 'o2', 'refund', 10, 'EUR', 'tok_alice', 'c', '%s', 0)",
             cols, pid);
    assert_int_equal(mh_exec(h->db, sql), SQLITE_CONSTRAINT);
    snprintf(sql, sizeof(sql), "%s('X4', 'o1', 'refund', 10, 'EUR', 'tok_alice', 'c', 'nope', 0)",
             cols);
    assert_int_equal(mh_exec(h->db, sql), SQLITE_CONSTRAINT);
    /* Two refunds of one payment. */
    refund(h, "i1", "charge_payment", true, "o1", pid, 1000, &r);
    mh_assert_ok(&r, NULL);
    snprintf(sql, sizeof(sql), "%s('X5', 'o1', 'refund', 1, 'EUR', 'tok_alice', 'c', '%s', 0)",
             cols, pid);
    assert_int_equal(mh_exec(h->db, sql), SQLITE_CONSTRAINT);
    /* Append-only, positive amounts, known kinds. */
    assert_int_equal(mh_exec(h->db, "UPDATE ledger SET amount = 1"), SQLITE_CONSTRAINT);
    assert_int_equal(mh_exec(h->db, "DELETE FROM ledger"), SQLITE_CONSTRAINT);
    snprintf(sql, sizeof(sql), "%s('X6', 'o3', 'charge', 0, 'EUR', 'tok_alice', 'c', NULL, 0)",
             cols);
    assert_int_equal(mh_exec(h->db, sql), SQLITE_CONSTRAINT);
    snprintf(sql, sizeof(sql), "%s('X7', 'o3', 'gift', 5, 'EUR', 'tok_alice', 'c', NULL, 0)", cols);
    assert_int_equal(mh_exec(h->db, sql), SQLITE_CONSTRAINT);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM ledger"), 2);
    assert_int_equal(net_of(h, "o1"), 0);
    sg_task_result_fini(&r);
}

/* ---- concurrency: two "processes" (two opened modules) charge one card ---- */

typedef struct {
    mh_t *h;
    sg_activity_ctx_t *actx;
    int id;
    int ok, declined, other;
} racer_t;

static void *racer(void *arg)
{
    racer_t *rc = arg;
    const sg_activity_op_t *op = sg_activity_module_op(rc->h->mod, "charge");
    for (int i = 0; i < 15; i++) {
        char inst[32], in[256], key[64];
        snprintf(inst, sizeof(inst), "r%d-%d", rc->id, i);
        snprintf(key, sizeof(key), "%s/charge_payment", inst);
        snprintf(in, sizeof(in),
                 "{\"order_id\":\"or%d-%d\",\"customer_id\":\"cus_alice\","
                 "\"card_token\":\"tok_alice\",\"amount\":1000,\"currency\":\"EUR\"}",
                 rc->id, i);
        sg_task_t task = {.instance_id = inst,
                          .step_id = "charge_payment",
                          .attempt = 1,
                          .activity = "payment.charge",
                          .input = in,
                          .idempotency_key = key};
        sg_task_result_t res = {0};
        op->run(rc->actx, &task, &res);
        if (res.outcome == SG_TASK_OK) {
            rc->ok++;
        } else if (res.outcome == SG_TASK_FATAL &&
                   strcmp(res.error_code, "payment.declined") == 0) {
            rc->declined++;
        } else {
            rc->other++;
        }
        sg_task_result_fini(&res);
    }
    return NULL;
}

static void test_concurrent_limit(void **state)
{
    mh_t *h = *state;
    char err[256] = "";
    racer_t rs[2] = {{.h = h, .actx = h->actx, .id = 0}, {.h = h, .id = 1}};
    sg_activity_env_t env = {.data_dir = h->dir};
    assert_int_equal(h->mod->open(&env, &rs[1].actx, err, sizeof(err)), SG_OK);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, racer, &rs[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    h->mod->close(rs[1].actx);
    /* The limit is 10000: exactly ten charges of 1000 fit, whoever won them. */
    assert_int_equal(rs[0].other + rs[1].other, 0);
    assert_int_equal(rs[0].ok + rs[1].ok, 10);
    assert_int_equal(rs[0].declined + rs[1].declined, 20);
    assert_int_equal(mh_query_int(h->db, "SELECT sum(amount) FROM ledger WHERE kind = 'charge'"),
                     10000);
}

/* ---- durability and out of memory ---- */

static void test_survives_reopen(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 4000, &r);
    payment_id_of(&r, pid);
    char *first = strdup(r.output);
    mh_reopen(h, NULL);
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 4000, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output, first);
    free(first);
    check_get(h, "g1", "o1", "charged", 4000, 0);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM cards"), 3);
    mh_events_t e = events_take(h); /* the outbox survived too */
    assert_int_equal(e.n, 1);
    mh_events_free(&e);
    refund(h, "i1", "charge_payment", true, "o1", pid, 4000, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(net_of(h, "o1"), 0);
    sg_task_result_fini(&r);
}

/* Out of memory anywhere in a charge or a refund: the answer is never a wrong final
 * outcome, and the next delivery still moves the money exactly once. */
static void test_oom(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    for (size_t nth = 1;; nth++) {
        char inst[32], order[32];
        snprintf(inst, sizeof(inst), "m%zu", nth);
        snprintf(order, sizeof(order), "om%zu", nth);
        sg_alloc_fail_at(nth);
        charge(h, inst, order, "cus_alice", "tok_alice", 1, &r);
        refund(h, inst, "charge_payment", true, order, NULL, 1, &r);
        size_t seen = sg_alloc_fail_at(0);
        if (r.outcome != SG_TASK_OK) {
            assert_int_equal(r.outcome, SG_TASK_RETRYABLE);
        }
        charge(h, inst, order, "cus_alice", "tok_alice", 1, &r);
        refund(h, inst, "charge_payment", true, order, NULL, 1, &r);
        mh_assert_ok(&r, NULL);
        assert_true(ledger_count(h, "charge", order) <= 1);
        assert_int_equal(ledger_count(h, "charge", order), ledger_count(h, "refund", order));
        assert_int_equal(net_of(h, order), 0);
        if (seen < nth) {
            assert_true(nth > 3);
            break;
        }
    }
    mh_events_t e = events_take(h);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_charge, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_declines, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_limit, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_one_charge_per_order, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_refund, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_refund_by_order, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_refund_nothing_captured, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_refund_other_amount, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_refund_refusals, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_get, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_chaos_decline, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_chaos_kit, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_seed, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_ledger_invariants, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_limit, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_oom, setup, mh_teardown),
    };
    return cmocka_run_group_tests_name("payment", tests, NULL, NULL);
}
