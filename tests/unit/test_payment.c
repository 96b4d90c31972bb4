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
#include <unistd.h>

#include "activities/activity.h"
#include "activities/common/events.h"

static const char seed_json[] =
    "{\"_comment\": \"test cards\", \"cards\": ["
    "{\"token\": \"tok_alice\", \"customer_id\": \"cus_alice\", \"holder\": \"Alice\","
    " \"last4\": \"4242\", \"limit\": 10000, \"blocked\": false},"
    "{\"token\": \"tok_bob\", \"customer_id\": \"cus_bob\", \"holder\": \"Bob\","
    " \"last4\": \"1881\", \"limit\": 5000},"
    "{\"token\": \"tok_blocked\", \"customer_id\": \"cus_frank\", \"holder\": \"Frank\","
    " \"last4\": \"0002\", \"limit\": 100000, \"blocked\": true}]}";

/* ---- harness ---- */

typedef struct {
    char dir[256];
    const sg_activity_module_t *mod;
    sg_activity_ctx_t *actx;
} h_t;

static void h_open(h_t *h, const char *chaos)
{
    char err[256] = "";
    sg_activity_env_t env = {.data_dir = h->dir, .chaos = chaos};
    assert_int_equal(h->mod->open(&env, &h->actx, err, sizeof(err)), SG_OK);
}

static void h_reopen(h_t *h, const char *chaos)
{
    h->mod->close(h->actx);
    h->actx = NULL;
    h_open(h, chaos);
}

static int setup(void **state)
{
    h_t *h = calloc(1, sizeof(*h));
    const char *tmp = getenv("TMPDIR");
    snprintf(h->dir, sizeof(h->dir), "%s/sg-test-payment-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(h->dir) == NULL) {
        return -1;
    }
    h->mod = sg_activity_module("payment");
    h_open(h, NULL);
    char err[256] = "";
    if (h->mod->seed(h->actx, seed_json, err, sizeof(err)) != SG_OK) {
        fprintf(stderr, "seed: %s\n", err);
        return -1;
    }
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    h_t *h = *state;
    h->mod->close(h->actx);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    char path[512];
    for (size_t i = 0; i < SG_ARRAY_LEN(suffixes); i++) {
        snprintf(path, sizeof(path), "%s/payment.db%s", h->dir, suffixes[i]);
        unlink(path);
    }
    rmdir(h->dir);
    free(h);
    return 0;
}

/* Runs payment.<op> as step sid of instance inst (key "inst/sid[/compensate]"). */
static void call(h_t *h, const char *op, const char *inst, const char *sid, bool comp,
                 const char *input, sg_task_result_t *res)
{
    char key[128], act[64];
    snprintf(key, sizeof(key), "%s/%s%s", inst, sid, comp ? "/compensate" : "");
    snprintf(act, sizeof(act), "payment.%s", op);
    sg_task_t task = {.instance_id = inst,
                      .step_id = sid,
                      .attempt = 1,
                      .compensation = comp,
                      .activity = act,
                      .input = input,
                      .idempotency_key = key};
    const sg_activity_op_t *o = sg_activity_module_op(h->mod, op);
    assert_non_null(o);
    sg_task_result_fini(res);
    o->run(h->actx, &task, res);
}

/* The charge_payment step of instance inst. */
static void charge(h_t *h, const char *inst, const char *order, const char *customer,
                   const char *token, long long amount, sg_task_result_t *res)
{
    char in[512];
    snprintf(in, sizeof(in),
             "{\"order_id\":\"%s\",\"customer_id\":\"%s\",\"card_token\":\"%s\","
             "\"amount\":%lld,\"currency\":\"EUR\"}",
             order, customer, token, amount);
    call(h, "charge", inst, "charge_payment", false, in, res);
}

/* payment.refund with payment_id (NULL: JSON null) as the given step. */
static void refund(h_t *h, const char *inst, const char *sid, bool comp, const char *order,
                   const char *payment_id, long long amount, sg_task_result_t *res)
{
    char in[512], pid[96];
    snprintf(pid, sizeof(pid), payment_id ? "\"%s\"" : "null", payment_id ? payment_id : "");
    snprintf(in, sizeof(in),
             "{\"order_id\":\"%s\",\"payment_id\":%s,\"amount\":%lld,\"currency\":\"EUR\"}", order,
             pid, amount);
    call(h, "refund", inst, sid, comp, in, res);
}

static void assert_ok(const sg_task_result_t *r)
{
    if (r->outcome != SG_TASK_OK) {
        fail_msg("expected ok, got %s %s: %s", sg_task_outcome_name(r->outcome),
                 r->error_code ? r->error_code : "(null)",
                 r->error_message ? r->error_message : "(null)");
    }
}

static void assert_failed(const sg_task_result_t *r, sg_task_outcome_t o, const char *code,
                          const char *msg_part)
{
    if (r->outcome != o) {
        fail_msg("expected %s %s, got %s %s", sg_task_outcome_name(o), code,
                 sg_task_outcome_name(r->outcome), r->output ? r->output : "");
    }
    assert_string_equal(sg_task_result_code(r), code);
    assert_non_null(r->error_message);
    if (msg_part != NULL && strstr(r->error_message, msg_part) == NULL) {
        fail_msg("message \"%s\" lacks \"%s\"", r->error_message, msg_part);
    }
}

/* Output field helpers: the output parsed, then a string or an integer of it. */
static cJSON *out_json(const sg_task_result_t *r)
{
    assert_ok(r);
    cJSON *o = cJSON_Parse(r->output);
    assert_true(cJSON_IsObject(o));
    return o;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static long long jint(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return (long long)v->valuedouble;
}

static bool jnull(const cJSON *o, const char *key)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* Copies the payment_id of a charge result into out. */
static void payment_id_of(const sg_task_result_t *r, char out[64])
{
    cJSON *o = out_json(r);
    assert_non_null(jstr(o, "payment_id"));
    snprintf(out, 64, "%s", jstr(o, "payment_id"));
    cJSON_Delete(o);
}

/* One integer from payment.db through a connection of its own. */
static long long query_int(const h_t *h, const char *fmt, ...)
{
    char sql[512], path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s/payment.db", h->dir);
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

/* Runs sql on a connection of its own; returns SQLite's result code. */
static int exec_sql(const h_t *h, const char *sql)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/payment.db", h->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static long long ledger_count(const h_t *h, const char *kind, const char *order)
{
    return query_int(h, "SELECT count(*) FROM ledger WHERE kind = '%s' AND order_id = '%s'", kind,
                     order);
}

/* What the conservation check computes: charges - refunds of an order. */
static long long net_of(const h_t *h, const char *order)
{
    return query_int(h,
                     "SELECT coalesce(sum(CASE kind WHEN 'charge' THEN amount WHEN 'refund'"
                     " THEN -amount ELSE 0 END), 0) FROM ledger WHERE order_id = '%s'",
                     order);
}

/* ---- the outbox ---- */

typedef struct {
    size_t n;
    char type[16][32];
    cJSON *json[16];
    bool proto_ok[16];
    int64_t last_seq;
} evs_t;

static bool ev_cb(void *arg, const sg_domain_event_t *ev)
{
    evs_t *e = arg;
    if (e->n < SG_ARRAY_LEN(e->type)) {
        snprintf(e->type[e->n], sizeof(e->type[0]), "%s", ev->type);
        e->json[e->n] = cJSON_Parse(ev->json);
        cJSON *back = sg_event_decode(ev->type, ev->proto, ev->proto_len);
        e->proto_ok[e->n] = back != NULL;
        cJSON_Delete(back);
    }
    e->n++;
    e->last_seq = ev->seq;
    return true;
}

/* Every event in the outbox, then acknowledged (so the next take sees only new ones). */
static evs_t events_take(h_t *h)
{
    evs_t e = {0};
    assert_int_equal(h->mod->events_peek(h->actx, 100, ev_cb, &e), SG_OK);
    assert_true(e.n <= SG_ARRAY_LEN(e.type));
    for (size_t i = 0; i < e.n; i++) {
        assert_true(e.proto_ok[i]);
        assert_non_null(e.json[i]);
    }
    if (e.n > 0) {
        assert_int_equal(h->mod->events_ack(h->actx, e.last_seq), SG_OK);
    }
    return e;
}

static void events_free(evs_t *e)
{
    for (size_t i = 0; i < e->n && i < SG_ARRAY_LEN(e->json); i++) {
        cJSON_Delete(e->json[i]);
    }
}

/* ---- charge ---- */

static void test_charge(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 2990, &r);
    cJSON *o = out_json(&r);
    assert_int_equal(strlen(jstr(o, "payment_id")), 26);
    assert_int_equal(jint(o, "amount"), 2990);
    assert_string_equal(jstr(o, "currency"), "EUR");
    assert_string_equal(jstr(o, "card_last4"), "4242");
    assert_int_equal(query_int(h,
                               "SELECT count(*) FROM ledger WHERE kind = 'charge' AND id = '%s'"
                               " AND order_id = 'o1' AND amount = 2990 AND currency = 'EUR'"
                               " AND card_token = 'tok_alice'",
                               jstr(o, "payment_id")),
                     1);
    assert_int_equal(net_of(h, "o1"), 2990);

    evs_t e = events_take(h);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.type[0], "payment.processed");
    assert_string_equal(jstr(e.json[0], "correlation_id"), "i1");
    assert_string_equal(jstr(e.json[0], "source"), "payment");
    assert_string_equal(jstr(e.json[0], "order_id"), "o1");
    assert_string_equal(jstr(e.json[0], "payment_id"), jstr(o, "payment_id"));
    assert_string_equal(jstr(e.json[0], "customer_id"), "cus_alice");
    assert_int_equal(jint(e.json[0], "amount"), 2990);
    assert_string_equal(jstr(e.json[0], "currency"), "EUR");
    assert_string_equal(jstr(e.json[0], "card_last4"), "4242");
    events_free(&e);
    e = events_take(h); /* acknowledged: gone */
    assert_int_equal(e.n, 0);

    /* Redelivered (same key): the first output again, no second charge or event. */
    char *first = strdup(r.output);
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 2990, &r);
    assert_ok(&r);
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
static void check_decline(h_t *h, const char *inst, const char *order, const char *customer,
                          const char *token, long long amount, const char *reason)
{
    sg_task_result_t r = {0};
    evs_t before = events_take(h); /* only this decline's events below */
    events_free(&before);
    for (int delivery = 0; delivery < 2; delivery++) {
        charge(h, inst, order, customer, token, amount, &r);
        assert_failed(&r, SG_TASK_FATAL, "payment.declined", reason);
    }
    assert_int_equal(ledger_count(h, "charge", order), 0);
    assert_int_equal(ledger_count(h, "decline", order), 1);
    assert_int_equal(query_int(h,
                               "SELECT count(*) FROM ledger WHERE kind = 'decline' AND"
                               " order_id = '%s' AND amount = %lld AND instr(reason, '%s') > 0",
                               order, amount, reason),
                     1);
    assert_int_equal(net_of(h, order), 0);
    evs_t e = events_take(h);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.type[0], "payment.failed");
    assert_string_equal(jstr(e.json[0], "correlation_id"), inst);
    assert_string_equal(jstr(e.json[0], "order_id"), order);
    assert_string_equal(jstr(e.json[0], "customer_id"), customer);
    assert_int_equal(jint(e.json[0], "amount"), amount);
    assert_string_equal(jstr(e.json[0], "currency"), "EUR");
    assert_string_equal(jstr(e.json[0], "code"), "payment.declined");
    assert_non_null(strstr(jstr(e.json[0], "reason"), reason));
    events_free(&e);
    sg_task_result_fini(&r);
}

static void test_declines(void **state)
{
    h_t *h = *state;
    check_decline(h, "d1", "od1", "cus_alice", "tok_nope", 100, "unknown card token");
    check_decline(h, "d2", "od2", "cus_frank", "tok_blocked", 100, "blocked");
    check_decline(h, "d3", "od3", "cus_bob", "tok_alice", 100,
                  "does not belong to customer cus_bob");
    check_decline(h, "d4", "od4", "cus_bob", "tok_bob", 5001, "insufficient funds");
}

/* Insufficient funds = outstanding (charges - refunds) + amount over the limit. */
static void test_limit(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "l1", "ol1", "cus_bob", "tok_bob", 3000, &r);
    payment_id_of(&r, pid);
    check_decline(h, "l2", "ol2", "cus_bob", "tok_bob", 2001,
                  "insufficient funds: 3000 outstanding + 2001 exceeds the limit 5000");
    charge(h, "l3", "ol3", "cus_bob", "tok_bob", 2000, &r); /* exactly the limit */
    assert_ok(&r);
    check_decline(h, "l4", "ol4", "cus_bob", "tok_bob", 1, "insufficient funds");
    /* A refund frees its amount on the card again. */
    refund(h, "l1", "charge_payment", true, "ol1", pid, 3000, &r);
    assert_ok(&r);
    charge(h, "l5", "ol5", "cus_bob", "tok_bob", 3000, &r);
    assert_ok(&r);
    assert_int_equal(query_int(h,
                               "SELECT sum(CASE kind WHEN 'charge' THEN amount ELSE -amount END)"
                               " FROM ledger WHERE card_token = 'tok_bob' AND kind != 'decline'"),
                     5000);
    sg_task_result_fini(&r);
}

/* An order is charged once: another key (another saga) is refused, not charged again. */
static void test_one_charge_per_order(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 1000, &r);
    assert_ok(&r);
    evs_t e = events_take(h);
    events_free(&e);
    charge(h, "i2", "o1", "cus_alice", "tok_alice", 1000, &r);
    assert_failed(&r, SG_TASK_FATAL, "payment.already_charged", "already charged");
    assert_int_equal(ledger_count(h, "charge", "o1"), 1);
    assert_int_equal(ledger_count(h, "decline", "o1"), 0);
    e = events_take(h);
    assert_int_equal(e.n, 0);
    /* Even after a refund the order is not charged again. */
    refund(h, "i1", "charge_payment", true, "o1", NULL, 1000, &r);
    assert_ok(&r);
    charge(h, "i3", "o1", "cus_alice", "tok_alice", 1000, &r);
    assert_failed(&r, SG_TASK_FATAL, "payment.already_charged", NULL);
    assert_int_equal(ledger_count(h, "charge", "o1"), 1);
    assert_int_equal(net_of(h, "o1"), 0);

    /* A decline is no charge: a later saga for the order may charge it. */
    charge(h, "i4", "o2", "cus_alice", "tok_nope", 1000, &r);
    assert_failed(&r, SG_TASK_FATAL, "payment.declined", NULL);
    charge(h, "i5", "o2", "cus_alice", "tok_alice", 1000, &r);
    assert_ok(&r);
    assert_int_equal(net_of(h, "o2"), 1000);
    e = events_take(h);
    events_free(&e);
    sg_task_result_fini(&r);
}

/* ---- refund ---- */

static void test_refund(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 2500, &r);
    payment_id_of(&r, pid);
    evs_t e = events_take(h);
    events_free(&e);

    /* The compensation of the charge. */
    refund(h, "i1", "charge_payment", true, "o1", pid, 2500, &r);
    cJSON *o = out_json(&r);
    assert_string_equal(jstr(o, "status"), "refunded");
    assert_string_equal(jstr(o, "payment_id"), pid);
    assert_int_equal(jint(o, "refunded"), 2500);
    assert_int_equal(jint(o, "captured"), 2500);
    assert_string_equal(jstr(o, "currency"), "EUR");
    assert_null(jstr(o, "note"));
    char refund_id[64];
    snprintf(refund_id, sizeof(refund_id), "%s", jstr(o, "refund_id"));
    assert_int_equal(strlen(refund_id), 26);
    assert_int_equal(query_int(h,
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
    assert_int_equal(jint(e.json[0], "amount"), 2500);
    assert_string_equal(jstr(e.json[0], "currency"), "EUR");
    events_free(&e);

    /* Same key again: the same answer, no second refund. */
    char *first = strdup(r.output);
    refund(h, "i1", "charge_payment", true, "o1", pid, 2500, &r);
    assert_ok(&r);
    assert_string_equal(r.output, first);
    free(first);

    /* Another key (order_cancel's pivot) for the same payment: refunded once only. */
    refund(h, "c1", "refund_payment", false, "o1", pid, 2500, &r);
    cJSON_Delete(o);
    o = out_json(&r);
    assert_string_equal(jstr(o, "status"), "already_refunded");
    assert_int_equal(jint(o, "refunded"), 0);
    assert_string_equal(jstr(o, "refund_id"), refund_id);
    /* ... and by order id, with payment_id null. */
    refund(h, "c2", "refund_payment", false, "o1", NULL, 2500, &r);
    cJSON_Delete(o);
    o = out_json(&r);
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
    h_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 700, &r);
    payment_id_of(&r, pid);
    refund(h, "i1", "charge_payment", true, "o1", NULL, 700, &r);
    cJSON *o = out_json(&r);
    assert_string_equal(jstr(o, "status"), "refunded");
    assert_string_equal(jstr(o, "payment_id"), pid);
    assert_int_equal(jint(o, "refunded"), 700);
    assert_int_equal(net_of(h, "o1"), 0);
    cJSON_Delete(o);
    /* amount and currency are optional cross-checks. */
    charge(h, "i2", "o2", "cus_alice", "tok_alice", 800, &r);
    call(h, "refund", "i2", "charge_payment", true, "{\"order_id\":\"o2\"}", &r);
    o = out_json(&r);
    assert_int_equal(jint(o, "refunded"), 800);
    assert_int_equal(net_of(h, "o2"), 0);
    cJSON_Delete(o);
    sg_task_result_fini(&r);
}

/* The compensation of a charge that never happened succeeds and does nothing; the late
 * forward task is then refused by the kit and takes no effect. */
static void test_refund_nothing_captured(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    refund(h, "i1", "charge_payment", true, "o1", NULL, 1200, &r);
    cJSON *o = out_json(&r);
    assert_string_equal(jstr(o, "status"), "nothing_captured");
    assert_int_equal(jint(o, "refunded"), 0);
    assert_true(jnull(o, "payment_id"));
    cJSON_Delete(o);
    assert_int_equal(query_int(h, "SELECT count(*) FROM ledger"), 0);

    charge(h, "i1", "o1", "cus_alice", "tok_alice", 1200, &r);
    assert_failed(&r, SG_TASK_FATAL, "payment.compensated", NULL);
    assert_int_equal(query_int(h, "SELECT count(*) FROM ledger"), 0);
    evs_t e = events_take(h);
    assert_int_equal(e.n, 0);

    /* A declined charge captured nothing either. */
    charge(h, "i2", "o2", "cus_frank", "tok_blocked", 100, &r);
    assert_failed(&r, SG_TASK_FATAL, "payment.declined", NULL);
    refund(h, "i2", "charge_payment", true, "o2", NULL, 100, &r);
    o = out_json(&r);
    assert_string_equal(jstr(o, "status"), "nothing_captured");
    assert_int_equal(ledger_count(h, "refund", "o2"), 0);
    cJSON_Delete(o);
    e = events_take(h);
    assert_int_equal(e.n, 1); /* the payment.failed only */
    events_free(&e);
    sg_task_result_fini(&r);
}

/* Another amount or currency than captured: the captured amount is refunded, and the
 * output says so. */
static void test_refund_other_amount(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 3000, &r);
    payment_id_of(&r, pid);
    refund(h, "i1", "charge_payment", true, "o1", pid, 1000, &r);
    cJSON *o = out_json(&r);
    assert_int_equal(jint(o, "refunded"), 3000);
    assert_non_null(strstr(jstr(o, "note"), "asked for 1000 EUR"));
    assert_int_equal(query_int(h, "SELECT amount FROM ledger WHERE kind = 'refund'"), 3000);
    cJSON_Delete(o);

    charge(h, "i2", "o2", "cus_alice", "tok_alice", 500, &r);
    call(h, "refund", "i2", "charge_payment", true,
         "{\"order_id\":\"o2\",\"amount\":500,\"currency\":\"USD\"}", &r);
    o = out_json(&r);
    assert_int_equal(jint(o, "refunded"), 500);
    assert_string_equal(jstr(o, "currency"), "EUR");
    assert_non_null(strstr(jstr(o, "note"), "500 USD"));
    assert_int_equal(net_of(h, "o2"), 0);
    cJSON_Delete(o);
    sg_task_result_fini(&r);
}

static void test_refund_refusals(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 3000, &r);
    payment_id_of(&r, pid);
    refund(h, "x1", "refund_payment", false, "o1", "01NOSUCHPAYMENT00000000000", 3000, &r);
    assert_failed(&r, SG_TASK_FATAL, "payment.not_found", "01NOSUCHPAYMENT00000000000");
    /* Another order's payment is never refunded. */
    refund(h, "x2", "refund_payment", false, "o9", pid, 3000, &r);
    assert_failed(&r, SG_TASK_FATAL, "payment.invalid_input", "belongs to order o1");
    assert_int_equal(query_int(h, "SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0);
    assert_int_equal(net_of(h, "o1"), 3000);
    sg_task_result_fini(&r);
}

/* ---- get ---- */

static void check_get(h_t *h, const char *inst, const char *order, const char *status,
                      long long charged, long long refunded)
{
    sg_task_result_t r = {0};
    char in[128];
    snprintf(in, sizeof(in), "{\"order_id\":\"%s\"}", order);
    call(h, "get", inst, "get", false, in, &r);
    cJSON *o = out_json(&r);
    assert_string_equal(jstr(o, "order_id"), order);
    assert_string_equal(jstr(o, "status"), status);
    assert_int_equal(jint(o, "charged"), charged);
    assert_int_equal(jint(o, "refunded"), refunded);
    assert_true(charged > 0 ? jstr(o, "payment_id") != NULL : jnull(o, "payment_id"));
    cJSON_Delete(o);
    sg_task_result_fini(&r);
}

static void test_get(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    check_get(h, "g0", "o1", "none", 0, 0);
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 900, &r);
    check_get(h, "g1", "o1", "charged", 900, 0);
    charge(h, "i2", "o2", "cus_alice", "tok_nope", 900, &r);
    check_get(h, "g2", "o2", "declined", 0, 0);
    refund(h, "i1", "charge_payment", true, "o1", NULL, 900, &r);
    check_get(h, "g3", "o1", "refunded", 900, 900);
    /* Read only: no ledger rows, no events of its own. */
    assert_int_equal(query_int(h, "SELECT count(*) FROM ledger"), 3);
    evs_t e = events_take(h);
    assert_int_equal(e.n, 3);
    events_free(&e);
    sg_task_result_fini(&r);
}

/* ---- invalid input ---- */

static void check_invalid(h_t *h, const char *op, const char *input, const char *field)
{
    sg_task_result_t r = {0};
    static int n;
    char sid[32];
    snprintf(sid, sizeof(sid), "bad%d", n++);
    call(h, op, "iv", sid, false, input, &r);
    assert_failed(&r, SG_TASK_FATAL, "payment.invalid_input", field);
    sg_task_result_fini(&r);
}

static void test_invalid_input(void **state)
{
    h_t *h = *state;
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
    assert_int_equal(query_int(h, "SELECT count(*) FROM ledger"), 0);
    evs_t e = events_take(h);
    assert_int_equal(e.n, 0);
}

/* ---- chaos ---- */

static void test_chaos_decline(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    h_reopen(h, "payment.decline_rate=1");
    check_decline(h, "k1", "ok1", "cus_alice", "tok_alice", 100, "declined by issuer (chaos)");
    /* Refunds are never declined. */
    refund(h, "k1", "charge_payment", true, "ok1", NULL, 100, &r);
    assert_ok(&r);
    h_reopen(h, "payment.decline_rate=0");
    charge(h, "k2", "ok2", "cus_alice", "tok_alice", 100, &r);
    assert_ok(&r);
    h_reopen(h, "inventory.decline_rate=1"); /* another queue's knob */
    charge(h, "k3", "ok3", "cus_alice", "tok_alice", 100, &r);
    assert_ok(&r);
    evs_t e = events_take(h);
    events_free(&e);
    sg_task_result_fini(&r);
}

/* The kit's knobs on payment: a transient error is not recorded and has no effect; a
 * lost reply keeps the charge, and the retry finds it. */
static void test_chaos_kit(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    h_reopen(h, "payment.error_rate=1");
    charge(h, "k1", "ok1", "cus_alice", "tok_alice", 100, &r);
    assert_failed(&r, SG_TASK_RETRYABLE, "payment.unavailable", NULL);
    assert_int_equal(query_int(h, "SELECT count(*) FROM ledger"), 0);
    assert_int_equal(query_int(h, "SELECT count(*) FROM svc_idempotency"), 0);
    h_reopen(h, "payment.error_rate=0");
    charge(h, "k1", "ok1", "cus_alice", "tok_alice", 100, &r);
    assert_ok(&r);
    assert_int_equal(ledger_count(h, "charge", "ok1"), 1);

    h_reopen(h, "payment.lost_reply_rate=1");
    charge(h, "k2", "ok2", "cus_alice", "tok_alice", 200, &r);
    assert_failed(&r, SG_TASK_RETRYABLE, "payment.reply_lost", NULL);
    assert_int_equal(ledger_count(h, "charge", "ok2"), 1);
    h_reopen(h, "payment.latency_ms=1");
    charge(h, "k2", "ok2", "cus_alice", "tok_alice", 200, &r);
    assert_ok(&r);
    char pid[64];
    payment_id_of(&r, pid);
    assert_int_equal(query_int(h,
                               "SELECT count(*) FROM ledger WHERE kind = 'charge' AND"
                               " order_id = 'ok2' AND id = '%s'",
                               pid),
                     1);
    evs_t e = events_take(h);
    assert_int_equal(e.n, 2); /* one payment.processed per charge */
    events_free(&e);
    sg_task_result_fini(&r);
}

/* ---- seed ---- */

static void check_bad_seed(h_t *h, const char *json, const char *err_part)
{
    char err[256] = "";
    assert_int_equal(h->mod->seed(h->actx, json, err, sizeof(err)), SG_ERR_INVALID);
    if (strstr(err, err_part) == NULL) {
        fail_msg("seed error \"%s\" lacks \"%s\"", err, err_part);
    }
}

static void test_seed(void **state)
{
    h_t *h = *state;
    char err[256] = "";
    assert_int_equal(query_int(h, "SELECT count(*) FROM cards"), 3);
    assert_int_equal(h->mod->seed(h->actx, seed_json, err, sizeof(err)), SG_OK); /* again */
    assert_int_equal(query_int(h, "SELECT count(*) FROM cards"), 3);
    assert_int_equal(query_int(h, "SELECT blocked FROM cards WHERE token = 'tok_blocked'"), 1);
    assert_int_equal(query_int(h, "SELECT limit_cents FROM cards WHERE token = 'tok_bob'"), 5000);
    assert_int_equal(h->mod->seed(h->actx, "{}", err, sizeof(err)), SG_OK);

    /* Upsert: what a seed names is replaced. */
    assert_int_equal(h->mod->seed(h->actx,
                                  "{\"cards\":[{\"token\":\"tok_bob\",\"customer_id\":\"cus_bob\","
                                  "\"holder\":\"Bob\",\"last4\":\"1881\",\"limit\":10,"
                                  "\"blocked\":true}]}",
                                  err, sizeof(err)),
                     SG_OK);
    assert_int_equal(query_int(h, "SELECT limit_cents FROM cards WHERE token = 'tok_bob'"), 10);
    assert_int_equal(query_int(h, "SELECT blocked FROM cards WHERE token = 'tok_bob'"), 1);

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
    assert_int_equal(query_int(h, "SELECT count(*) FROM cards WHERE token = 'tok_new'"), 0);
    assert_int_equal(query_int(h, "SELECT count(*) FROM cards"), 3);
}

/* ---- the ledger's own invariants (what a buggy or concurrent writer would hit) ---- */

static void test_ledger_invariants(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64], sql[512];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 1000, &r);
    payment_id_of(&r, pid);
    const char *cols = "INSERT INTO ledger(id, order_id, kind, amount, currency, card_token,"
                       " customer_id, payment_id, ts_ms) VALUES";
    /* A second charge of the order. */
    snprintf(sql, sizeof(sql), "%s('X1', 'o1', 'charge', 5, 'EUR', 'tok_alice', 'c', NULL, 0)",
             cols);
    assert_int_equal(exec_sql(h, sql), SQLITE_CONSTRAINT);
    /* A refund over the charge, of another order's charge, or of no charge. */
    snprintf(sql, sizeof(sql), "%s('X2', 'o1', 'refund', 1001, 'EUR', 'tok_alice', 'c', '%s', 0)",
             cols, pid);
    assert_int_equal(exec_sql(h, sql), SQLITE_CONSTRAINT);
    snprintf(sql, sizeof(sql), "%s('X3', 'o2', 'refund', 10, 'EUR', 'tok_alice', 'c', '%s', 0)",
             cols, pid);
    assert_int_equal(exec_sql(h, sql), SQLITE_CONSTRAINT);
    snprintf(sql, sizeof(sql), "%s('X4', 'o1', 'refund', 10, 'EUR', 'tok_alice', 'c', 'nope', 0)",
             cols);
    assert_int_equal(exec_sql(h, sql), SQLITE_CONSTRAINT);
    /* Two refunds of one payment. */
    refund(h, "i1", "charge_payment", true, "o1", pid, 1000, &r);
    assert_ok(&r);
    snprintf(sql, sizeof(sql), "%s('X5', 'o1', 'refund', 1, 'EUR', 'tok_alice', 'c', '%s', 0)",
             cols, pid);
    assert_int_equal(exec_sql(h, sql), SQLITE_CONSTRAINT);
    /* Append-only, positive amounts, known kinds. */
    assert_int_equal(exec_sql(h, "UPDATE ledger SET amount = 1"), SQLITE_CONSTRAINT);
    assert_int_equal(exec_sql(h, "DELETE FROM ledger"), SQLITE_CONSTRAINT);
    snprintf(sql, sizeof(sql), "%s('X6', 'o3', 'charge', 0, 'EUR', 'tok_alice', 'c', NULL, 0)",
             cols);
    assert_int_equal(exec_sql(h, sql), SQLITE_CONSTRAINT);
    snprintf(sql, sizeof(sql), "%s('X7', 'o3', 'gift', 5, 'EUR', 'tok_alice', 'c', NULL, 0)", cols);
    assert_int_equal(exec_sql(h, sql), SQLITE_CONSTRAINT);
    assert_int_equal(query_int(h, "SELECT count(*) FROM ledger"), 2);
    assert_int_equal(net_of(h, "o1"), 0);
    sg_task_result_fini(&r);
}

/* ---- concurrency: two "processes" (two opened modules) charge one card ---- */

typedef struct {
    h_t *h;
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
    h_t *h = *state;
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
    assert_int_equal(query_int(h, "SELECT sum(amount) FROM ledger WHERE kind = 'charge'"), 10000);
}

/* ---- durability and out of memory ---- */

static void test_survives_reopen(void **state)
{
    h_t *h = *state;
    sg_task_result_t r = {0};
    char pid[64];
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 4000, &r);
    payment_id_of(&r, pid);
    char *first = strdup(r.output);
    h_reopen(h, NULL);
    charge(h, "i1", "o1", "cus_alice", "tok_alice", 4000, &r);
    assert_ok(&r);
    assert_string_equal(r.output, first);
    free(first);
    check_get(h, "g1", "o1", "charged", 4000, 0);
    assert_int_equal(query_int(h, "SELECT count(*) FROM cards"), 3);
    evs_t e = events_take(h); /* the outbox survived too */
    assert_int_equal(e.n, 1);
    events_free(&e);
    refund(h, "i1", "charge_payment", true, "o1", pid, 4000, &r);
    assert_ok(&r);
    assert_int_equal(net_of(h, "o1"), 0);
    sg_task_result_fini(&r);
}

/* Out of memory anywhere in a charge or a refund: the answer is never a wrong final
 * outcome, and the next delivery still moves the money exactly once. */
static void test_oom(void **state)
{
    h_t *h = *state;
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
        assert_ok(&r);
        assert_true(ledger_count(h, "charge", order) <= 1);
        assert_int_equal(ledger_count(h, "charge", order), ledger_count(h, "refund", order));
        assert_int_equal(net_of(h, order), 0);
        if (seen < nth) {
            assert_true(nth > 3);
            break;
        }
    }
    evs_t e = events_take(h);
    events_free(&e);
    sg_task_result_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_charge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_declines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_charge_per_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refund, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refund_by_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refund_nothing_captured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refund_other_amount, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refund_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chaos_decline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chaos_kit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_invariants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom, setup, teardown),
    };
    return cmocka_run_group_tests_name("payment", tests, NULL, NULL);
}
