/*
 * Unit tests of the notification service (activities/notification/): seeding contacts,
 * prepare, send (rendered text per template and channel, one delivery per channel per
 * key, idempotency, refusals, invalid input, compensation), provider failures with
 * their tracking and retries (chaos provider_failure_rate), crash leftovers, deadlines,
 * concurrent redeliveries, status, events, out of memory, and close/reopen. The
 * database is checked through a connection of the test's own.
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
#include "activities/notification/notification_int.h"
#include "tests/support/module_harness.h"

static const char seed_json[] =
    "{\"contacts\":["
    "{\"customer_id\":\"cus_alice\",\"name\":\"Alice Martin\",\"email\":\"alice@example.com\","
    "\"phone\":\"+15550100001\",\"channels\":[\"email\",\"sms\"]},"
    "{\"customer_id\":\"cus_bob\",\"name\":\"Bob Chen\",\"email\":\"bob@example.com\","
    "\"push_token\":\"push-bob-1\",\"channels\":[\"push\",\"email\"]},"
    "{\"customer_id\":\"cus_dan\",\"name\":\"Dan Okafor\",\"phone\":\"+15550100004\","
    "\"channels\":[\"sms\"]},"
    "{\"customer_id\":\"cus_quiet\",\"name\":\"Quiet Quinn\",\"channels\":[]},"
    "{\"customer_id\":\"ops\",\"name\":\"Shop Operator\",\"email\":\"ops@example.com\","
    "\"channels\":[\"email\"]}]}";

/* Alice's order o-1, as order_create's notify_customer step sends it. */
static const char confirm_alice[] =
    "{\"template\":\"order_confirmed\",\"order_id\":\"o-1\",\"customer_id\":\"cus_alice\","
    "\"email\":null,\"total\":5980,\"currency\":\"EUR\"}";

/* ---- harness (tests/support/module_harness.h) ---- */

static int setup(void **state)
{
    *state = mh_new("notification", NULL, seed_json);
    return 0;
}

/* Runs operation op with idempotency key "<instance>/<step>[/compensate]". */
static void call(mh_t *h, const char *op, const char *key, const char *input, uint64_t deadline_ms,
                 sg_task_result_t *res)
{
    mh_call_key(h, NULL, op, key, input, deadline_ms, res);
}

/* An invalid_input failure whose message names field. */
static void assert_invalid(const sg_task_result_t *r, const char *field)
{
    mh_assert_failed(r, SG_TASK_FATAL, "notification.invalid_input", field);
}

/* ---- the database, through a connection of the test's own ---- */

static void assert_q_text(const mh_t *h, const char *expect, const char *sql)
{
    char *v = mh_query_text(h->db, "%s", sql);
    if (v == NULL || strcmp(v, expect) != 0) {
        fail_msg("%s:\n  got    \"%s\"\n  expect \"%s\"", sql, v ? v : "(null)", expect);
    }
    free(v);
}

static long long rows_of(const mh_t *h, const char *key)
{
    return mh_query_int(h->db, "SELECT count(*) FROM deliveries WHERE idempotency_key = '%s'", key);
}

static long long recorded(const mh_t *h, const char *key)
{
    return mh_query_int(h->db, "SELECT count(*) FROM svc_idempotency WHERE key = '%s'", key);
}

/* ---- the outbox, through the module ---- */

/* Up to 64 events of the outbox, each with its JSON and its protobuf bytes, without
 * removing them. mh_events_free it. */
static void events_get(mh_t *h, mh_events_t *e)
{
    mh_events_peek(h, 64, e);
    for (size_t i = 0; i < e->n; i++) {
        assert_non_null(e->json[i]);
        assert_true(e->proto_len[i] > 0);
    }
}

/* The first event of type on channel, or NULL. */
static const cJSON *event_on(const mh_events_t *e, const char *type, const char *channel)
{
    for (size_t i = 0; i < e->n; i++) {
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(e->json[i], "channel");
        if (strcmp(e->type[i], type) == 0 && strcmp(cJSON_GetStringValue(ch), channel) == 0) {
            return e->json[i];
        }
    }
    return NULL;
}

static double ev_num(const cJSON *ev, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, field);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* ---- seed ---- */

static void test_seed(void **state)
{
    mh_t *h = *state;
    char err[256] = "";
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM contacts"), 5);
    assert_q_text(h, "push,email", "SELECT channels FROM contacts WHERE customer_id = 'cus_bob'");
    assert_q_text(h, "+15550100004", "SELECT phone FROM contacts WHERE customer_id = 'cus_dan'");
    assert_int_equal(
        mh_query_int(h->db, "SELECT email IS NULL FROM contacts WHERE customer_id = 'cus_dan'"), 1);

    /* Twice is harmless; a seed replaces what it names and leaves the rest alone. */
    assert_int_equal(h->mod->seed(h->actx, seed_json, err, sizeof(err)), SG_OK);
    assert_int_equal(h->mod->seed(h->actx,
                                  "{\"contacts\":[{\"customer_id\":\"cus_dan\",\"name\":\"Dan O.\","
                                  "\"email\":\"dan@example.com\",\"channels\":[\"email\"]}]}",
                                  err, sizeof(err)),
                     SG_OK);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM contacts"), 5);
    assert_q_text(h, "Dan O.", "SELECT name FROM contacts WHERE customer_id = 'cus_dan'");
    assert_q_text(h, "email", "SELECT channels FROM contacts WHERE customer_id = 'cus_dan'");
    assert_int_equal(
        mh_query_int(h->db, "SELECT phone IS NULL FROM contacts WHERE customer_id = 'cus_dan'"), 1);
    assert_int_equal(h->mod->seed(h->actx, "{}", err, sizeof(err)), SG_OK);
    assert_int_equal(h->mod->seed(h->actx, "{\"contacts\":[]}", err, sizeof(err)), SG_OK);

    /* Bad seeds are refused whole, with the contact and the field named. */
    static const struct {
        const char *json;
        const char *says;
    } bad[] = {
        {"not json", "object"},
        {"[]", "object"},
        {"{\"contacts\":{}}", "object"},
        {"{\"contacts\":[{\"customer_id\":\"new1\",\"name\":\"N\",\"channels\":[]},"
         "{\"name\":\"x\",\"channels\":[]}]}",
         "contacts[1]: field \"customer_id\""},
        {"{\"contacts\":[{\"customer_id\":\"x\",\"channels\":[]}]}", "\"name\""},
        {"{\"contacts\":[{\"customer_id\":\"x\",\"name\":\"X\"}]}", "\"channels\""},
        {"{\"contacts\":[{\"customer_id\":\"x\",\"name\":\"X\",\"channels\":[\"fax\"]}]}",
         "\"push\""},
        {"{\"contacts\":[{\"customer_id\":\"x\",\"name\":\"X\",\"email\":\"x@y\","
         "\"channels\":[\"email\",\"email\"]}]}",
         "twice"},
        {"{\"contacts\":[{\"customer_id\":\"x\",\"name\":\"X\",\"channels\":[\"sms\"]}]}", "phone"},
        {"{\"contacts\":[{\"customer_id\":\"x\",\"name\":\"X\",\"email\":\"nope\","
         "\"channels\":[]}]}",
         "\"email\""},
        {"{\"contacts\":[{\"customer_id\":7,\"name\":\"X\",\"channels\":[]}]}", "customer_id"},
        {"{\"contacts\":[3]}", "contacts[0]: must be an object"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        assert_int_equal(h->mod->seed(h->actx, bad[i].json, err, sizeof(err)), SG_ERR_INVALID);
        if (strstr(err, bad[i].says) == NULL) {
            fail_msg("seed %s: \"%s\" does not say \"%s\"", bad[i].json, err, bad[i].says);
        }
    }
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM contacts"), 5); /* new1 not kept */
}

/* ---- prepare ---- */

static void test_prepare(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    call(h, "prepare", "i1/prepare_notice",
         "{\"order_id\":\"o-1\",\"customer_id\":\"cus_alice\",\"email\":null}", 0, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output,
                        "{\"customer_id\":\"cus_alice\",\"channels\":[\"email\",\"sms\"]}");

    /* The contact's preference order; an unknown customer with an email gets e-mail;
     * so does a contact who chose no channel. */
    call(h, "prepare", "i2/prepare_notice", "{\"order_id\":\"o-2\",\"customer_id\":\"cus_bob\"}", 0,
         &r);
    assert_string_equal(r.output,
                        "{\"customer_id\":\"cus_bob\",\"channels\":[\"push\",\"email\"]}");
    call(h, "prepare", "i3/prepare_notice",
         "{\"order_id\":\"o-3\",\"customer_id\":\"cus_new\",\"email\":\"new@example.com\"}", 0, &r);
    assert_string_equal(r.output, "{\"customer_id\":\"cus_new\",\"channels\":[\"email\"]}");
    call(h, "prepare", "i4/prepare_notice",
         "{\"order_id\":\"o-4\",\"customer_id\":\"cus_quiet\",\"email\":\"q@example.com\"}", 0, &r);
    assert_string_equal(r.output, "{\"customer_id\":\"cus_quiet\",\"channels\":[\"email\"]}");

    /* Nobody to tell: refused for good, and the refusal is what a redelivery gets. */
    call(h, "prepare", "i5/prepare_notice", "{\"order_id\":\"o-5\",\"customer_id\":\"cus_nobody\"}",
         0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "notification.no_contact", NULL);
    assert_non_null(strstr(r.error_message, "cus_nobody"));
    call(h, "prepare", "i5/prepare_notice", "{\"order_id\":\"o-5\",\"customer_id\":\"cus_nobody\"}",
         0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "notification.no_contact", NULL);
    call(h, "prepare", "i6/prepare_notice", "{\"order_id\":\"o-6\",\"customer_id\":\"cus_quiet\"}",
         0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "notification.no_contact", NULL);

    /* Invalid input names the field. */
    call(h, "prepare", "i7/p", "{\"customer_id\":\"cus_alice\"}", 0, &r);
    assert_invalid(&r, "order_id");
    call(h, "prepare", "i7/q", "{\"order_id\":\"o\",\"customer_id\":3}", 0, &r);
    assert_invalid(&r, "customer_id");
    call(h, "prepare", "i7/r", "{\"order_id\":\"o\",\"customer_id\":\"c\",\"email\":\"x\"}", 0, &r);
    assert_invalid(&r, "email");
    call(h, "prepare", "i7/s", "[1]", 0, &r);
    assert_invalid(&r, "object");

    /* No message goes out. */
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries"), 0);
    mh_events_t e;
    events_get(h, &e);
    assert_int_equal(e.n, 0);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

/* ---- send ---- */

static void test_send_renders_and_delivers(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);

    /* One delivery per channel, sent at the first try, the row being the message. */
    assert_int_equal(rows_of(h, "i1/notify_customer"), 2);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries WHERE status = 'sent'"
                                         " AND attempts = 1 AND sent_ms > 0 AND last_error IS NULL"
                                         " AND order_id = 'o-1' AND customer_id = 'cus_alice'"
                                         " AND template = 'order_confirmed'"),
                     2);
    assert_q_text(h, "alice@example.com",
                  "SELECT recipient FROM deliveries WHERE channel = 'email'");
    assert_q_text(h, "+15550100001", "SELECT recipient FROM deliveries WHERE channel = 'sms'");
    assert_q_text(h, "Your order o-1 is confirmed",
                  "SELECT subject FROM deliveries WHERE channel = 'email'");
    assert_q_text(h,
                  "Hello Alice Martin,\n\nthank you for your order o-1. We have received your "
                  "payment of 59.80 EUR and are preparing your parcel.\n\nThe Saga Shop",
                  "SELECT body FROM deliveries WHERE channel = 'email'");
    assert_q_text(h, "Saga Shop: order o-1 confirmed, 59.80 EUR paid. Thank you, Alice Martin!",
                  "SELECT body FROM deliveries WHERE channel = 'sms'");

    /* The answer says where it went. */
    cJSON *out = cJSON_Parse(r.output);
    assert_non_null(out);
    assert_string_equal(mh_jstr(out, "order_id"), "o-1");
    assert_string_equal(mh_jstr(out, "customer_id"), "cus_alice");
    assert_string_equal(mh_jstr(out, "template"), "order_confirmed");
    const cJSON *chans = cJSON_GetObjectItemCaseSensitive(out, "channels");
    assert_int_equal(cJSON_GetArraySize(chans), 2);
    assert_string_equal(cJSON_GetArrayItem(chans, 0)->valuestring, "email");
    assert_string_equal(cJSON_GetArrayItem(chans, 1)->valuestring, "sms");
    const cJSON *d0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(out, "deliveries"), 0);
    char *email_id = mh_query_text(h->db, "SELECT id FROM deliveries WHERE channel = 'email'");
    assert_string_equal(mh_jstr(d0, "id"), email_id);
    assert_string_equal(mh_jstr(d0, "recipient"), "alice@example.com");
    assert_int_equal((int)ev_num(d0, "attempts"), 1);
    cJSON_Delete(out);

    /* notification.sent per channel, with the saga as correlation. */
    mh_events_t e;
    events_get(h, &e);
    assert_int_equal(e.n, 2);
    assert_int_equal(mh_events_count(&e, "notification.sent"), 2);
    const cJSON *ev = event_on(&e, "notification.sent", "email");
    assert_non_null(ev);
    assert_string_equal(mh_jstr(ev, "notification_id"), email_id);
    assert_string_equal(mh_jstr(ev, "order_id"), "o-1");
    assert_string_equal(mh_jstr(ev, "customer_id"), "cus_alice");
    assert_string_equal(mh_jstr(ev, "template"), "order_confirmed");
    assert_string_equal(mh_jstr(ev, "recipient"), "alice@example.com");
    assert_string_equal(mh_jstr(ev, "correlation_id"), "i1");
    assert_string_equal(mh_jstr(ev, "source"), "notification");
    assert_int_equal((int)ev_num(ev, "attempts"), 1);
    assert_null(cJSON_GetObjectItemCaseSensitive(ev, "error"));
    assert_non_null(event_on(&e, "notification.sent", "sms"));
    /* ack removes them */
    assert_int_equal(h->mod->events_ack(h->actx, e.last_seq), SG_OK);
    mh_events_free(&e);
    events_get(h, &e);
    assert_int_equal(e.n, 0);
    mh_events_free(&e);
    free(email_id);
    sg_task_result_fini(&r);
}

static void test_send_idempotent(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);
    char *first = strdup(r.output);
    /* A redelivery: the same answer, no second message, no second event. */
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output, first);
    assert_int_equal(rows_of(h, "i1/notify_customer"), 2);
    assert_int_equal(mh_query_int(h->db, "SELECT sum(attempts) FROM deliveries"), 2);
    mh_events_t e;
    events_get(h, &e);
    assert_int_equal(mh_events_count(&e, "notification.sent"), 2);
    mh_events_free(&e);

    /* Another key is another message (the same order, another saga step). */
    call(h, "send", "i9/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);
    assert_string_not_equal(r.output, first);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries WHERE order_id = 'o-1'"),
                     4);
    free(first);
    sg_task_result_fini(&r);
}

/* Every template, money in several currencies, the fallbacks for names and channels. */
static void test_templates(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    /* order_cancel's notify step sends "amount"; JPY has no minor unit. */
    call(h, "send", "c1/notify_customer",
         "{\"template\":\"order_cancelled\",\"order_id\":\"o-7\",\"customer_id\":\"cus_bob\","
         "\"email\":\"bob@example.com\",\"amount\":1200,\"currency\":\"JPY\"}",
         0, &r);
    mh_assert_ok(&r, NULL);
    assert_q_text(h, "Your order o-7 is cancelled",
                  "SELECT subject FROM deliveries WHERE idempotency_key = 'c1/notify_customer'"
                  " AND channel = 'email'");
    assert_q_text(h,
                  "Hello Bob Chen,\n\nyour order o-7 has been cancelled. We have refunded "
                  "1200 JPY to your card; it may take a few days to appear on your statement."
                  "\n\nThe Saga Shop",
                  "SELECT body FROM deliveries WHERE idempotency_key = 'c1/notify_customer'"
                  " AND channel = 'email'");
    assert_q_text(h, "Saga Shop: order o-7 cancelled, 1200 JPY refunded.",
                  "SELECT body FROM deliveries WHERE idempotency_key = 'c1/notify_customer'"
                  " AND channel = 'push'");
    assert_q_text(h, "push-bob-1",
                  "SELECT recipient FROM deliveries WHERE idempotency_key = 'c1/notify_customer'"
                  " AND channel = 'push'");

    /* No contact, an email: e-mail only, "customer" for the name; 5 cents. */
    call(h, "send", "r1/prepare_notice/compensate",
         "{\"template\":\"order_rejected\",\"order_id\":\"o-8\",\"customer_id\":\"cus_new\","
         "\"email\":\"new@example.com\",\"total\":5,\"currency\":\"EUR\"}",
         0, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(rows_of(h, "r1/prepare_notice/compensate"), 1);
    assert_q_text(h, "Your order o-8 could not be placed",
                  "SELECT subject FROM deliveries WHERE order_id = 'o-8'");
    assert_q_text(h,
                  "Hello customer,\n\nwe are sorry: we could not complete your order o-8 "
                  "(0.05 EUR). You have not been charged; any amount taken from your card has "
                  "been refunded in full.\n\nThe Saga Shop",
                  "SELECT body FROM deliveries WHERE order_id = 'o-8'");

    /* Three minor digits; SMS only. */
    call(h, "send", "c2/notify_customer",
         "{\"template\":\"order_confirmed\",\"order_id\":\"o-9\",\"customer_id\":\"cus_dan\","
         "\"total\":123456,\"currency\":\"KWD\"}",
         0, &r);
    mh_assert_ok(&r, NULL);
    assert_q_text(h, "Saga Shop: order o-9 confirmed, 123.456 KWD paid. Thank you, Dan Okafor!",
                  "SELECT body FROM deliveries WHERE order_id = 'o-9' AND channel = 'sms'");

    /* low_stock, for operators: no order needed. */
    call(h, "send", "inv1/alert",
         "{\"template\":\"low_stock\",\"customer_id\":\"ops\",\"sku\":\"BOOK-001\",\"stock\":3}", 0,
         &r);
    mh_assert_ok(&r, NULL);
    cJSON *out = cJSON_Parse(r.output);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(out, "order_id")));
    cJSON_Delete(out);
    assert_q_text(h, "Low stock: BOOK-001",
                  "SELECT subject FROM deliveries WHERE idempotency_key = 'inv1/alert'");
    assert_q_text(h,
                  "Hello Shop Operator,\n\nthe stock of BOOK-001 is down to 3. Please restock "
                  "it.\n\nThe Saga Shop",
                  "SELECT body FROM deliveries WHERE idempotency_key = 'inv1/alert'");
    assert_int_equal(
        mh_query_int(
            h->db, "SELECT order_id IS NULL FROM deliveries WHERE idempotency_key = 'inv1/alert'"),
        1);
    mh_events_t e;
    events_get(h, &e);
    const cJSON *ev = event_on(&e, "notification.sent", "email");
    assert_non_null(ev);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

static void test_send_refusals_and_invalid_input(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    call(h, "send", "i1/n",
         "{\"template\":\"order_shipped\",\"order_id\":\"o-1\",\"customer_id\":\"cus_alice\"}", 0,
         &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "notification.unknown_template", NULL);
    assert_non_null(strstr(r.error_message, "order_shipped"));
    call(h, "send", "i1/n", confirm_alice, 0, &r); /* recorded: stays refused */
    mh_assert_failed(&r, SG_TASK_FATAL, "notification.unknown_template", NULL);
    assert_int_equal(recorded(h, "i1/n"), 1);

    call(h, "send", "i2/n",
         "{\"template\":\"order_confirmed\",\"order_id\":\"o-2\",\"customer_id\":\"cus_nobody\","
         "\"total\":100,\"currency\":\"EUR\"}",
         0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "notification.no_contact", NULL);

    static const struct {
        const char *input;
        const char *field;
    } bad[] = {
        {"\"text\"", "object"},
        {"{\"order_id\":\"o\",\"customer_id\":\"cus_alice\"}", "template"},
        {"{\"template\":\"order_confirmed\",\"order_id\":\"o\",\"total\":1,\"currency\":\"EUR\"}",
         "customer_id"},
        {"{\"template\":\"order_confirmed\",\"order_id\":\"o\",\"customer_id\":\"cus_alice\","
         "\"total\":\"12\",\"currency\":\"EUR\"}",
         "total"},
        {"{\"template\":\"order_confirmed\",\"order_id\":\"o\",\"customer_id\":\"cus_alice\","
         "\"total\":-1,\"currency\":\"EUR\"}",
         "total"},
        {"{\"template\":\"order_cancelled\",\"order_id\":\"o\",\"customer_id\":\"cus_alice\","
         "\"amount\":1.5,\"currency\":\"EUR\"}",
         "amount"},
        {"{\"template\":\"order_confirmed\",\"order_id\":\"o\",\"customer_id\":\"cus_alice\","
         "\"total\":1,\"currency\":\"eur\"}",
         "currency"},
        {"{\"template\":\"order_confirmed\",\"order_id\":\"o\",\"customer_id\":\"cus_alice\","
         "\"total\":1,\"currency\":\"EUR\",\"email\":\"nope\"}",
         "email"},
        {"{\"template\":\"order_confirmed\",\"order_id\":\"o\",\"customer_id\":\"cus_alice\"}",
         "\"total\" (or \"amount\") is required by template \"order_confirmed\""},
        {"{\"template\":\"order_confirmed\",\"order_id\":\"o\",\"customer_id\":\"cus_alice\","
         "\"total\":1}",
         "\"currency\" is required"},
        {"{\"template\":\"order_confirmed\",\"customer_id\":\"cus_alice\",\"total\":1,"
         "\"currency\":\"EUR\"}",
         "\"order_id\" is required"},
        {"{\"template\":\"low_stock\",\"customer_id\":\"ops\",\"stock\":1}", "sku"},
        {"{\"template\":\"low_stock\",\"customer_id\":\"ops\",\"sku\":\"X\",\"stock\":\"1\"}",
         "stock"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        char key[32];
        snprintf(key, sizeof(key), "bad%zu/n", i);
        call(h, "send", key, bad[i].input, 0, &r);
        assert_invalid(&r, bad[i].field);
    }
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries"), 0);
    mh_events_t e;
    events_get(h, &e);
    assert_int_equal(e.n, 0);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

/* send is order_create's compensation of prepare_notice: the rejection notice. */
static void test_compensation(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    static const char reject[] =
        "{\"template\":\"order_rejected\",\"order_id\":\"o-3\",\"customer_id\":\"cus_alice\","
        "\"email\":null,\"total\":2990,\"currency\":\"EUR\"}";
    call(h, "send", "i3/prepare_notice/compensate", reject, 0, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(rows_of(h, "i3/prepare_notice/compensate"), 2);
    call(h, "send", "i3/prepare_notice/compensate", reject, 0, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(rows_of(h, "i3/prepare_notice/compensate"), 2);

    /* The late forward task after its compensation: refused by the kit, no effect. */
    call(h, "prepare", "i3/prepare_notice", "{\"order_id\":\"o-3\",\"customer_id\":\"cus_alice\"}",
         0, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "notification.compensated", NULL);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries"), 2);

    /* A compensation with nobody to tell has nothing to do: it succeeds, empty. */
    call(h, "send", "i4/prepare_notice/compensate",
         "{\"template\":\"order_rejected\",\"order_id\":\"o-4\",\"customer_id\":\"cus_nobody\","
         "\"total\":100,\"currency\":\"EUR\"}",
         0, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output,
                        "{\"order_id\":\"o-4\",\"customer_id\":\"cus_nobody\","
                        "\"template\":\"order_rejected\",\"channels\":[],\"deliveries\":[]}");
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries"), 2);
    mh_events_t e;
    events_get(h, &e);
    assert_int_equal(e.n, 2);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

/* ---- provider failures ---- */

static void test_provider_failure_then_retry(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    mh_reopen(h, "notification.provider_failure_rate=1.0");
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "notification.provider_unavailable", NULL);
    assert_int_equal(recorded(h, "i1/notify_customer"), 0); /* not final */
    /* The tracking survives the retryable answer: both channels failed, 4 calls each. */
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries WHERE status = 'failed'"
                                         " AND attempts = 4 AND sent_ms IS NULL"),
                     2);
    assert_q_text(h, "smtp: 451 4.3.0 temporary failure (simulated outage)",
                  "SELECT last_error FROM deliveries WHERE channel = 'email'");
    mh_events_t e;
    events_get(h, &e);
    assert_int_equal(e.n, 2);
    assert_int_equal(mh_events_count(&e, "notification.failed"), 2);
    const cJSON *ev = event_on(&e, "notification.failed", "sms");
    assert_non_null(ev);
    assert_int_equal((int)ev_num(ev, "attempts"), 4);
    assert_non_null(strstr(mh_jstr(ev, "error"), "sms gateway"));
    assert_string_equal(mh_jstr(ev, "recipient"), "+15550100001");
    mh_events_free(&e);

    /* The saga retries: still failing, the attempts add up on the same rows. */
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "notification.provider_unavailable", NULL);
    assert_int_equal(rows_of(h, "i1/notify_customer"), 2);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries WHERE attempts = 8"), 2);

    /* The providers are back: the retry sends each channel once, and records. */
    mh_reopen(h, NULL);
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);
    char *first = strdup(r.output);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries WHERE status = 'sent'"
                                         " AND attempts = 9 AND last_error IS NOT NULL"),
                     2);
    assert_int_equal(recorded(h, "i1/notify_customer"), 1);
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    assert_string_equal(r.output, first);
    assert_int_equal(mh_query_int(h->db, "SELECT sum(attempts) FROM deliveries"), 18);
    events_get(h, &e);
    assert_int_equal(mh_events_count(&e, "notification.failed"), 4);
    assert_int_equal(mh_events_count(&e, "notification.sent"), 2);
    assert_int_equal((int)ev_num(event_on(&e, "notification.sent", "email"), "attempts"), 9);
    mh_events_free(&e);
    free(first);
    sg_task_result_fini(&r);
}

/* One channel down: the other goes out at once and is never sent again. */
static void test_partial_failure(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    mh_reopen(h, "notification.sms_failure_rate=1");
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "notification.provider_unavailable", NULL);
    assert_non_null(strstr(r.error_message, "sms gateway"));
    assert_int_equal(mh_query_int(h->db, "SELECT attempts FROM deliveries WHERE channel = 'email'"
                                         " AND status = 'sent'"),
                     1);
    assert_int_equal(mh_query_int(h->db, "SELECT attempts FROM deliveries WHERE channel = 'sms'"
                                         " AND status = 'failed'"),
                     4);
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "notification.provider_unavailable", NULL);

    mh_reopen(h, NULL);
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(mh_query_int(h->db, "SELECT attempts FROM deliveries WHERE channel = 'email'"),
                     1);
    assert_int_equal(mh_query_int(h->db, "SELECT attempts FROM deliveries WHERE channel = 'sms'"
                                         " AND status = 'sent'"),
                     9);
    mh_events_t e;
    events_get(h, &e);
    assert_int_equal(mh_events_count(&e, "notification.sent"), 2);
    assert_non_null(event_on(&e, "notification.sent", "email"));
    assert_non_null(event_on(&e, "notification.sent", "sms"));
    assert_int_equal(mh_events_count(&e, "notification.failed"), 2);
    assert_null(event_on(&e, "notification.failed", "email"));
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

/* The delivery rows' transitions, one store call at a time: queued -> failed ->
 * retried -> sent, and nothing moves a sent row. */
static void test_delivery_transitions(void **state)
{
    mh_t *h = *state;
    sqlite3 *db = mh_db_open(h->db);
    notif_message_t m = {.key = "k/s",
                         .order_id = "o",
                         .customer_id = "c",
                         .template_name = "order_confirmed",
                         .subject = "S",
                         .body = "B",
                         .short_text = "b"};
    notif_target_t t = {.channel = NOTIF_SMS};
    snprintf(t.recipient, sizeof(t.recipient), "+1555");
    assert_int_equal(notification__delivery_claim(db, &m, &t), 1);
    assert_q_text(h, "queued", "SELECT status FROM deliveries WHERE idempotency_key = 'k/s'");
    assert_int_equal(t.attempts, 1);
    assert_int_equal(strlen(t.id), 26);
    assert_int_equal(notification__delivery_finish(db, &t, "down"), 1);
    assert_q_text(h, "failed", "SELECT status FROM deliveries WHERE idempotency_key = 'k/s'");
    assert_int_equal(notification__delivery_claim(db, &m, &t), 1);
    assert_q_text(h, "retried", "SELECT status FROM deliveries WHERE idempotency_key = 'k/s'");
    assert_int_equal(t.attempts, 2);
    assert_q_text(h, "b", "SELECT body FROM deliveries WHERE idempotency_key = 'k/s'");
    assert_int_equal(notification__delivery_finish(db, &t, NULL), 1);
    assert_q_text(h, "sent", "SELECT status FROM deliveries WHERE idempotency_key = 'k/s'");
    /* sent is final: neither a claim nor another outcome changes it */
    assert_int_equal(notification__delivery_claim(db, &m, &t), 0);
    assert_true(t.sent);
    assert_int_equal(notification__delivery_finish(db, &t, "late failure"), 0);
    assert_int_equal(notification__delivery_finish(db, &t, NULL), 0);
    assert_q_text(h, "sent", "SELECT status FROM deliveries WHERE idempotency_key = 'k/s'");
    assert_int_equal(
        mh_query_int(h->db, "SELECT attempts FROM deliveries WHERE idempotency_key = 'k/s'"), 2);
    /* the schema refuses what the code must never write */
    assert_int_not_equal(
        sqlite3_exec(db, "UPDATE deliveries SET status = 'lost'", NULL, NULL, NULL), SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "UPDATE deliveries SET sent_ms = NULL", NULL, NULL, NULL),
                         SQLITE_OK);
    assert_int_not_equal(
        sqlite3_exec(db,
                     "INSERT INTO deliveries(id, idempotency_key, customer_id, channel, recipient,"
                     " template, subject, body, status, created_ms, updated_ms) VALUES('x',"
                     " 'k/s', 'c', 'sms', 'r', 't', 's', 'b', 'queued', 1, 1)",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
}

/* What a crash leaves behind is finished by the next delivery of the task, once. */
static void test_crash_leftovers(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    /* Crash after every channel went out but before the outcome was recorded. */
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);
    char *first = strdup(r.output);
    mh_events_drain(h);
    assert_int_equal(mh_exec(h->db, "DELETE FROM svc_idempotency"), SQLITE_OK);
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output, first);
    assert_int_equal(mh_query_int(h->db, "SELECT sum(attempts) FROM deliveries"), 2);
    mh_events_t e;
    events_get(h, &e);
    assert_int_equal(e.n, 0);
    mh_events_free(&e);

    /* Crash during provider calls: a row claimed (queued or retried) but no outcome. */
    mh_reopen(h, "notification.sms_failure_rate=1");
    call(h, "send", "i2/notify_customer", confirm_alice, 0, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "notification.provider_unavailable", NULL);
    assert_int_equal(mh_exec(h->db,
                             "UPDATE deliveries SET status = 'retried', attempts = attempts + 1"
                             " WHERE idempotency_key = 'i2/notify_customer' AND channel = 'sms'"),
                     SQLITE_OK);
    mh_reopen(h, NULL);
    mh_events_drain(h);
    call(h, "send", "i2/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(
        mh_query_int(h->db, "SELECT attempts FROM deliveries WHERE status = 'sent'"
                            " AND idempotency_key = 'i2/notify_customer' AND channel = 'sms'"),
        6);
    events_get(h, &e);
    assert_int_equal(e.n, 1);
    assert_non_null(event_on(&e, "notification.sent", "sms"));
    mh_events_free(&e);
    free(first);
    sg_task_result_fini(&r);
}

static void test_deadline(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    /* Past its deadline the attempt gives up before any provider call. */
    call(h, "send", "i1/notify_customer", confirm_alice, sg_now_ms() - 1, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "notification.provider_unavailable", NULL);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries WHERE status = 'sent'"),
                     0);
    assert_int_equal(recorded(h, "i1/notify_customer"), 0);

    /* A failing provider: the backoff stops at the deadline (well before 4 calls of
     * 5, 10, 20 ms waits when the deadline is 1 ms away). */
    mh_reopen(h, "notification.provider_failure_rate=1");
    call(h, "send", "i2/notify_customer", confirm_alice, sg_now_ms() + 1, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "notification.provider_unavailable", NULL);
    assert_true(mh_query_int(h->db, "SELECT max(attempts) FROM deliveries") <= 2);

    mh_reopen(h, NULL);
    call(h, "send", "i1/notify_customer", confirm_alice, sg_now_ms() + 60000, &r);
    mh_assert_ok(&r, NULL);
    sg_task_result_fini(&r);
}

/* ---- concurrency: redeliveries of one task at the same time ---- */

typedef struct {
    mh_t *h;
    pthread_barrier_t *start;
    char key[32];
    sg_task_result_t res;
} racer_t;

static void *race(void *arg)
{
    racer_t *rc = arg;
    pthread_barrier_wait(rc->start);
    sg_task_t task = {.instance_id = "race",
                      .step_id = "notify_customer",
                      .attempt = 1,
                      .activity = "notification.send",
                      .input = confirm_alice,
                      .idempotency_key = rc->key};
    sg_activity_module_op(rc->h->mod, "send")->run(rc->h->actx, &task, &rc->res);
    return NULL;
}

enum { RACERS = 4 };

/* Runs RACERS deliveries of the task with key at once. */
static void race_key(mh_t *h, const char *key, racer_t rc[RACERS])
{
    pthread_barrier_t start;
    pthread_t th[RACERS];
    assert_int_equal(pthread_barrier_init(&start, NULL, RACERS), 0);
    for (int i = 0; i < RACERS; i++) {
        memset(&rc[i], 0, sizeof(rc[i]));
        rc[i].h = h;
        rc[i].start = &start;
        snprintf(rc[i].key, sizeof(rc[i].key), "%s", key);
        assert_int_equal(pthread_create(&th[i], NULL, race, &rc[i]), 0);
    }
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
    }
    pthread_barrier_destroy(&start);
}

static void test_concurrent_redeliveries(void **state)
{
    mh_t *h = *state;
    racer_t rc[RACERS];
    /* Slow providers (3 ms a call), four deliveries of one task at once: all of them
     * claim and call before any records; one message per channel goes out, and every
     * delivery answers the same recorded outcome. */
    mh_reopen(h, "notification.provider_latency_ms=3");
    race_key(h, "race/notify", rc);
    for (int i = 0; i < RACERS; i++) {
        mh_assert_ok(&rc[i].res, NULL);
        assert_string_equal(rc[i].res.output, rc[0].res.output);
    }
    for (int i = 0; i < RACERS; i++) {
        sg_task_result_fini(&rc[i].res);
    }
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries WHERE status = 'sent'"),
                     2);
    assert_int_equal(
        mh_query_int(h->db, "SELECT count(*) FROM svc_outbox WHERE type = 'notification.sent'"), 2);

    /* Flaky and slow providers: whatever the interleaving, never more than one sent
     * delivery (and one notification.sent) per channel. */
    mh_reopen(h, "notification.provider_failure_rate=0.5,notification.provider_latency_ms=2");
    enum { KEYS = 6 };
    for (int k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof(key), "race%d/notify", k);
        race_key(h, key, rc);
        for (int i = 0; i < RACERS; i++) {
            if (rc[i].res.outcome != SG_TASK_OK) {
                mh_assert_failed(&rc[i].res, SG_TASK_RETRYABLE, "notification.provider_unavailable",
                                 NULL);
            }
            sg_task_result_fini(&rc[i].res);
        }
    }
    /* Then the providers recover and every task finishes. */
    mh_reopen(h, NULL);
    sg_task_result_t r = {0};
    for (int k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof(key), "race%d/notify", k);
        call(h, "send", key, confirm_alice, 0, &r);
        mh_assert_ok(&r, NULL);
    }
    sg_task_result_fini(&r);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries"), (KEYS + 1) * 2);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries WHERE status = 'sent'"),
                     (KEYS + 1) * 2);
    assert_int_equal(
        mh_query_int(h->db, "SELECT count(*) FROM svc_outbox WHERE type = 'notification.sent'"),
        (KEYS + 1) * 2);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(DISTINCT json_extract(json, '$.notification_id'))"
                                  " FROM svc_outbox WHERE type = 'notification.sent'"),
                     (KEYS + 1) * 2);
}

/* ---- status ---- */

static void test_status(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);
    call(h, "status", "q1/status", "{\"order_id\":\"o-1\"}", 0, &r);
    mh_assert_ok(&r, NULL);
    cJSON *out = cJSON_Parse(r.output);
    assert_string_equal(mh_jstr(out, "order_id"), "o-1");
    const cJSON *dels = cJSON_GetObjectItemCaseSensitive(out, "deliveries");
    assert_int_equal(cJSON_GetArraySize(dels), 2);
    const cJSON *d = cJSON_GetArrayItem(dels, 0);
    assert_string_equal(mh_jstr(d, "status"), "sent");
    assert_string_equal(mh_jstr(d, "idempotency_key"), "i1/notify_customer");
    assert_string_equal(mh_jstr(d, "template"), "order_confirmed");
    assert_int_equal((int)ev_num(d, "attempts"), 1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(d, "last_error")));
    assert_non_null(strstr(mh_jstr(d, "body"), "59.80 EUR"));
    cJSON_Delete(out);

    call(h, "status", "q2/status", "{\"order_id\":\"o-unknown\"}", 0, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output, "{\"order_id\":\"o-unknown\",\"deliveries\":[]}");
    call(h, "status", "q3/status", "{}", 0, &r);
    assert_invalid(&r, "order_id");
    /* read only */
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries"), 2);
    assert_int_equal(mh_query_int(h->db, "SELECT sum(attempts) FROM deliveries"), 2);
    sg_task_result_fini(&r);
}

/* ---- lifecycle ---- */

static void test_survives_reopen(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    mh_assert_ok(&r, NULL);
    char *first = strdup(r.output);
    mh_reopen(h, NULL);
    call(h, "send", "i1/notify_customer", confirm_alice, 0, &r);
    assert_string_equal(r.output, first);
    call(h, "prepare", "i2/prepare_notice", "{\"order_id\":\"o-2\",\"customer_id\":\"cus_dan\"}", 0,
         &r);
    assert_string_equal(r.output, "{\"customer_id\":\"cus_dan\",\"channels\":[\"sms\"]}");
    mh_events_t e;
    events_get(h, &e); /* not acked: still there */
    assert_int_equal(mh_events_count(&e, "notification.sent"), 2);
    mh_events_free(&e);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM deliveries"), 2);
    free(first);
    sg_task_result_fini(&r);

    char err[256] = "";
    sg_activity_ctx_t *bad = NULL;
    sg_activity_env_t env = {.data_dir = "/nonexistent/dir"};
    assert_int_not_equal(h->mod->open(&env, &bad, err, sizeof(err)), SG_OK);
    assert_null(bad);
    assert_true(err[0] != '\0');
    h->mod->close(NULL);
}

/* Out of memory anywhere in a send: the answer is ok or retryable, never a wrong final
 * outcome, and the next delivery finishes with one message per channel. */
static void test_send_oom(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    for (size_t nth = 1;; nth++) {
        char key[32];
        snprintf(key, sizeof(key), "oom%zu/notify", nth);
        sg_alloc_fail_at(nth);
        call(h, "send", key, confirm_alice, 0, &r);
        size_t seen = sg_alloc_fail_at(0);
        if (r.outcome != SG_TASK_OK) {
            assert_int_equal(r.outcome, SG_TASK_RETRYABLE);
        }
        call(h, "send", key, confirm_alice, 0, &r);
        mh_assert_ok(&r, NULL);
        assert_int_equal(mh_query_int(h->db,
                                      "SELECT count(*) FROM deliveries WHERE idempotency_key = '%s'"
                                      " AND status = 'sent'",
                                      key),
                         2);
        if (seen < nth) {
            assert_true(nth > 3); /* the loop did fail some allocations */
            break;
        }
    }
    assert_int_equal(
        mh_query_int(h->db, "SELECT count(*) FROM svc_outbox WHERE type = 'notification.sent'"),
        mh_query_int(h->db, "SELECT count(*) FROM deliveries"));
    sg_task_result_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seed, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_prepare, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_send_renders_and_delivers, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_send_idempotent, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_templates, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_send_refusals_and_invalid_input, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_compensation, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_provider_failure_then_retry, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_partial_failure, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_delivery_transitions, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_crash_leftovers, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_redeliveries, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_status, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_send_oom, setup, mh_teardown),
    };
    return cmocka_run_group_tests_name("notification", tests, NULL, NULL);
}
