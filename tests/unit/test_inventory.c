/*
 * Unit tests of the inventory service (activities/inventory/): reserve (all lines or
 * nothing, duplicate skus summed, unknown skus, one held reservation per order), release
 * (by reservation, by order, only once, a compensation releasing only its own forward
 * task's reservation), restock, check, low-stock alerts, the events in the outbox, seed
 * loading, idempotency (same key = one effect and the same answer, retryable failures not
 * recorded, a forward task after its compensation refused), invalid input, out of
 * memory, reopening, and concurrent reservations through one and through two module
 * instances (like two worker processes) that must never oversell.
 *
 * Every check of the database goes through a connection of the test's own, like the
 * lead's conservation check: stock + held == supplied for every product.
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

/* ---- harness (tests/support/module_harness.h) ---- */

/* A: plenty; B: little; C: just above its alert threshold; BIG: for loops. */
static const char seed_json[] =
    "{\"products\":["
    "{\"sku\":\"A\",\"name\":\"Apple\",\"price\":100,\"stock\":10,\"low_stock_threshold\":2},"
    "{\"sku\":\"B\",\"name\":\"Banana\",\"price\":250,\"stock\":5},"
    "{\"sku\":\"C\",\"name\":\"Cherry\",\"price\":990,\"stock\":12,\"low_stock_threshold\":10},"
    "{\"sku\":\"BIG\",\"name\":\"Bulk\",\"price\":1,\"stock\":100000,\"low_stock_threshold\":0}"
    "]}";

/* The module seeded, its outbox empty. */
static int setup(void **state)
{
    mh_t *h = mh_new("inventory", NULL, seed_json);
    mh_events_drain(h);
    *state = h;
    return 0;
}

/* Runs operation op with idempotency key key ("<instance>/<step>" or
 * "<instance>/<step>/compensate"); the instance id is the key's first part. */
static void run(const mh_t *h, const char *op, const char *key, const char *input,
                sg_task_result_t *res)
{
    mh_call_key(h, NULL, op, key, input, 0, res);
}

/* Runs a compensation: its key ends in "/compensate". */
static void compensate(const mh_t *h, const char *op, const char *key, const char *input,
                       sg_task_result_t *res)
{
    assert_non_null(strstr(key, "/compensate"));
    run(h, op, key, input, res);
}

static void assert_contains(const char *s, const char *part)
{
    if (s == NULL || strstr(s, part) == NULL) {
        fail_msg("\"%s\" does not contain \"%s\"", s ? s : "(null)", part);
    }
}

static bool jbool(const cJSON *o, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    assert_true(cJSON_IsBool(v));
    return cJSON_IsTrue(v);
}

/* Asserts that the JSON array items is exactly the lines "sku:qty,sku:qty". */
static void assert_lines(const cJSON *items, const char *expect)
{
    char got[512] = "";
    const cJSON *it;
    assert_true(cJSON_IsArray(items));
    cJSON_ArrayForEach(it, items)
    {
        size_t len = strlen(got);
        snprintf(got + len, sizeof(got) - len, "%s%s:%lld", len ? "," : "", mh_jstr(it, "sku"),
                 mh_jint(it, "qty"));
    }
    assert_string_equal(got, expect);
}

/* ---- the database, through a connection of the test's own ---- */

static long long stock_of(const mh_t *h, const char *sku)
{
    return mh_query_int(h->db, "SELECT stock FROM products WHERE sku = '%s'", sku);
}

static long long held_count(const mh_t *h)
{
    return mh_query_int(h->db, "SELECT count(*) FROM reservations WHERE status = 'held'");
}

/* The conservation invariant the lead's check relies on, for every product. */
static void assert_conserved(const mh_t *h)
{
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM inventory_levels"
                                         " WHERE stock + reserved != supplied OR stock < 0"),
                     0);
}

/* ---- events ---- */

/* Whether two optional JSON values are equal (both absent counts as equal). */
static bool same(const cJSON *a, const cJSON *b)
{
    return (a == NULL && b == NULL) || cJSON_Compare(a, b, true);
}

/* The events in the outbox, without removing them, each checked: its JSON, its protobuf
 * bytes, the envelope. mh_events_free it. */
static void evs_load(const mh_t *h, mh_events_t *e)
{
    mh_events_peek(h, 1000, e);
    for (size_t i = 0; i < e->n; i++) {
        assert_non_null(e->json[i]);
        /* The protobuf bytes decode as the event's message with the same business fields. */
        const cJSON *dec = e->proto[i];
        assert_true(dec != NULL &&
                    same(cJSON_GetObjectItemCaseSensitive(dec, "sku"),
                         cJSON_GetObjectItemCaseSensitive(e->json[i], "sku")) &&
                    same(cJSON_GetObjectItemCaseSensitive(dec, "order_id"),
                         cJSON_GetObjectItemCaseSensitive(e->json[i], "order_id")));
        assert_string_equal(mh_jstr(e->json[i], "type"), e->type[i]);
        assert_string_equal(mh_jstr(e->json[i], "source"), "inventory");
        assert_int_equal(strlen(mh_jstr(e->json[i], "event_id")), 26);
    }
}

/* The k-th event of type (0-based); fails when there is none. */
static const cJSON *evs_get(const mh_events_t *e, const char *type, size_t k)
{
    for (size_t i = 0; i < e->n; i++) {
        if (strcmp(e->type[i], type) == 0 && k-- == 0) {
            return e->json[i];
        }
    }
    fail_msg("no event %s #%zu", type, k);
    return NULL;
}

/* ---- seed ---- */

static void test_seed(void **state)
{
    mh_t *h = *state;
    char err[256];
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM products"), 4);
    assert_int_equal(stock_of(h, "A"), 10);
    assert_int_equal(
        mh_query_int(h->db, "SELECT low_stock_threshold FROM products WHERE sku = 'C'"), 10);
    assert_int_equal(
        mh_query_int(h->db, "SELECT low_stock_threshold FROM products WHERE sku = 'B'"), 0);
    assert_int_equal(mh_query_int(h->db, "SELECT price FROM products WHERE sku = 'C'"), 990);

    /* The same seed again: nothing changes, no event. */
    mh_seed(h, seed_json);
    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(e.n, 0);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM products"), 4);
    assert_conserved(h);

    /* Setting a stock while a reservation holds units: the held units stay held. */
    sg_task_result_t r = {0};
    run(h, "reserve", "s1/reserve", "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":4}]}",
        &r);
    mh_assert_ok(&r, NULL);
    mh_events_drain(h);
    mh_seed(h, "{\"products\":[{\"sku\":\"A\",\"name\":\"Green apple\",\"price\":120,\"stock\":20,"
               "\"low_stock_threshold\":3},"
               "{\"sku\":\"D\",\"name\":\"Date\",\"price\":50,\"stock\":0}]}");
    assert_int_equal(stock_of(h, "A"), 20);
    assert_int_equal(mh_query_int(h->db, "SELECT reserved FROM inventory_levels WHERE sku = 'A'"),
                     4);
    assert_int_equal(mh_query_int(h->db, "SELECT supplied FROM inventory_levels WHERE sku = 'A'"),
                     24);
    assert_int_equal(mh_query_int(h->db, "SELECT price FROM products WHERE sku = 'A'"), 120);
    assert_int_equal(stock_of(h, "D"), 0);
    assert_conserved(h);
    evs_load(h, &e);
    assert_int_equal(e.n, 1); /* A changed by +14; D was created with stock 0 */
    const cJSON *ev = evs_get(&e, "inventory.updated", 0);
    assert_string_equal(mh_jstr(ev, "sku"), "A");
    assert_int_equal(mh_jint(ev, "stock"), 20);
    assert_int_equal(mh_jint(ev, "delta"), 14);
    assert_string_equal(mh_jstr(ev, "reason"), "seed");
    assert_null(cJSON_GetObjectItemCaseSensitive(ev, "correlation_id"));
    mh_events_free(&e);
    mh_events_drain(h);

    /* An empty section is fine; a bad one changes nothing, not even its good entries. */
    assert_int_equal(h->mod->seed(h->actx, "{}", err, sizeof(err)), SG_OK);
    static const char *const bad[] = {
        "not json",
        "[]",
        "{\"products\":{}}",
        "{\"products\":[5]}",
        "{\"products\":[{\"sku\":\"A\",\"name\":\"x\",\"price\":1,\"stock\":99},{\"name\":\"x\"}]}",
        "{\"products\":[{\"sku\":\"A\",\"price\":1,\"stock\":99}]}",
        "{\"products\":[{\"sku\":\"A\",\"name\":\"x\",\"price\":-1,\"stock\":99}]}",
        "{\"products\":[{\"sku\":\"A\",\"name\":\"x\",\"price\":1,\"stock\":-5}]}",
        "{\"products\":[{\"sku\":\"A\",\"name\":\"x\",\"price\":1,\"stock\":1.5}]}",
        ("{\"products\":[{\"sku\":\"A\",\"name\":\"x\",\"price\":1,\"stock\":9,"
         "\"low_stock_threshold\":\"2\"}]}"),
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        if (h->mod->seed(h->actx, bad[i], err, sizeof(err)) == SG_OK) {
            fail_msg("seed accepted %s", bad[i]);
        }
        assert_contains(err, "inventory seed");
        assert_int_equal(stock_of(h, "A"), 20);
    }
    assert_contains(err, "low_stock_threshold");
    evs_load(h, &e);
    assert_int_equal(e.n, 0);
    sg_task_result_fini(&r);
}

/* ---- reserve ---- */

static void test_reserve(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    const char *in =
        "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":2},{\"sku\":\"B\",\"qty\":1}]}";
    run(h, "reserve", "inst1/reserve_inventory", in, &r);
    cJSON *out = mh_output(&r);
    char rid[32];
    snprintf(rid, sizeof(rid), "%s", mh_jstr(out, "reservation_id"));
    assert_int_equal(strlen(rid), 26);
    assert_string_equal(mh_jstr(out, "order_id"), "o1");
    assert_lines(cJSON_GetObjectItemCaseSensitive(out, "items"), "A:2,B:1");
    cJSON_Delete(out);

    assert_int_equal(stock_of(h, "A"), 8);
    assert_int_equal(stock_of(h, "B"), 4);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM reservations WHERE reservation_id = '%s'"
                                  " AND order_id = 'o1' AND status = 'held' AND released_ms IS NULL"
                                  " AND reserve_key = 'inst1/reserve_inventory'",
                                  rid),
                     1);
    assert_int_equal(
        mh_query_int(h->db, "SELECT sum(qty) FROM reservation_lines WHERE reservation_id = '%s'",
                     rid),
        3);
    assert_conserved(h);

    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(e.n, 1); /* no alert: A is at 8, above its threshold 2 */
    const cJSON *ev = evs_get(&e, "inventory.reserved", 0);
    assert_string_equal(mh_jstr(ev, "order_id"), "o1");
    assert_string_equal(mh_jstr(ev, "reservation_id"), rid);
    assert_string_equal(mh_jstr(ev, "correlation_id"), "inst1");
    assert_string_equal(e.corr[0], "inst1");
    assert_lines(cJSON_GetObjectItemCaseSensitive(ev, "items"), "A:2,B:1");
    mh_events_free(&e);

    /* The same key again: the first answer, no second effect, no second event. */
    char *first = strdup(r.output);
    run(h, "reserve", "inst1/reserve_inventory", in, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output, first);
    free(first);
    assert_int_equal(stock_of(h, "A"), 8);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM reservations"), 1);
    evs_load(h, &e);
    assert_int_equal(e.n, 1);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

static void test_reserve_all_or_nothing(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    /* A is available, B is short: neither is taken. */
    const char *in =
        "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":3},{\"sku\":\"B\",\"qty\":6}]}";
    run(h, "reserve", "i1/reserve_inventory", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.out_of_stock", NULL);
    assert_contains(r.error_message, "sku B requested 6, available 5");
    assert_null(strstr(r.error_message, "sku A"));
    assert_int_equal(stock_of(h, "A"), 10);
    assert_int_equal(stock_of(h, "B"), 5);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM reservations"), 0);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM reservation_lines"), 0);
    assert_conserved(h);

    /* The refusal is recorded: a redelivery gets it again, even after a restock. */
    run(h, "restock", "i1/restock", "{\"sku\":\"B\",\"qty\":10}", &r);
    mh_assert_ok(&r, NULL);
    run(h, "reserve", "i1/reserve_inventory", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.out_of_stock", NULL);
    assert_contains(r.error_message, "available 5");
    assert_int_equal(stock_of(h, "B"), 15);

    /* Every short line is named. */
    run(h, "reserve", "i2/reserve_inventory",
        "{\"order_id\":\"o2\",\"items\":[{\"sku\":\"A\",\"qty\":11},{\"sku\":\"C\",\"qty\":1},"
        "{\"sku\":\"B\",\"qty\":16}]}",
        &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.out_of_stock", NULL);
    assert_contains(r.error_message, "sku A requested 11, available 10");
    assert_contains(r.error_message, "sku B requested 16, available 15");
    assert_null(strstr(r.error_message, "sku C"));
    assert_int_equal(stock_of(h, "C"), 12);

    /* Exactly what is there can be taken: stock reaches zero, never below. */
    run(h, "reserve", "i3/reserve_inventory",
        "{\"order_id\":\"o3\",\"items\":[{\"sku\":\"A\",\"qty\":10}]}", &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(stock_of(h, "A"), 0);
    run(h, "reserve", "i4/reserve_inventory",
        "{\"order_id\":\"o4\",\"items\":[{\"sku\":\"A\",\"qty\":1}]}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.out_of_stock", NULL);
    assert_contains(r.error_message, "sku A requested 1, available 0");
    assert_conserved(h);

    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(mh_events_count(&e, "inventory.reserved"), 1); /* o3 only */
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

static void test_reserve_unknown_sku(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    run(h, "reserve", "i1/reserve_inventory",
        "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":1},{\"sku\":\"NOPE-1\",\"qty\":1},"
        "{\"sku\":\"B\",\"qty\":99}]}",
        &r);
    /* Unknown wins over short: the order names something the shop does not sell. */
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.unknown_sku", NULL);
    assert_contains(r.error_message, "NOPE-1");
    assert_int_equal(stock_of(h, "A"), 10);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM reservations"), 0);
    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(e.n, 0);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

static void test_reserve_duplicate_sku(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    /* The same sku twice is one line of the sum. */
    run(h, "reserve", "i1/reserve_inventory",
        "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":2},{\"sku\":\"B\",\"qty\":1},"
        "{\"sku\":\"A\",\"qty\":3}]}",
        &r);
    cJSON *out = mh_output(&r);
    assert_lines(cJSON_GetObjectItemCaseSensitive(out, "items"), "A:5,B:1");
    cJSON_Delete(out);
    assert_int_equal(stock_of(h, "A"), 5);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM reservation_lines"), 2);

    /* The sum is what must be available: 3 + 3 > 5 although each line fits. */
    run(h, "reserve", "i2/reserve_inventory",
        "{\"order_id\":\"o2\",\"items\":[{\"sku\":\"A\",\"qty\":3},{\"sku\":\"A\",\"qty\":3}]}",
        &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.out_of_stock", NULL);
    assert_contains(r.error_message, "sku A requested 6, available 5");
    assert_int_equal(stock_of(h, "A"), 5);
    assert_conserved(h);
    sg_task_result_fini(&r);
}

static void test_already_reserved(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    const char *in = "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":2}]}";
    run(h, "reserve", "s1/reserve_inventory", in, &r);
    cJSON *out = mh_output(&r);
    char rid[32];
    snprintf(rid, sizeof(rid), "%s", mh_jstr(out, "reservation_id"));
    cJSON_Delete(out);

    /* Another task (another saga) for the same order is refused, naming the holder. */
    run(h, "reserve", "s2/reserve_inventory", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.already_reserved", NULL);
    assert_contains(r.error_message, rid);
    assert_contains(r.error_message, "o1");
    assert_int_equal(stock_of(h, "A"), 8);
    assert_int_equal(held_count(h), 1);

    /* Once released, the order can reserve again: a new reservation. */
    run(h, "release", "s1/release", "{\"order_id\":\"o1\",\"reservation_id\":null}", &r);
    mh_assert_ok(&r, NULL);
    run(h, "reserve", "s3/reserve_inventory", in, &r);
    out = mh_output(&r);
    assert_string_not_equal(mh_jstr(out, "reservation_id"), rid);
    cJSON_Delete(out);
    assert_int_equal(stock_of(h, "A"), 8);
    assert_int_equal(held_count(h), 1);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM reservations"), 2);
    assert_conserved(h);
    sg_task_result_fini(&r);
}

/* ---- release ---- */

static void test_release_by_id(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    run(h, "reserve", "inst1/reserve_inventory",
        "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":2},{\"sku\":\"B\",\"qty\":5}]}",
        &r);
    cJSON *out = mh_output(&r);
    char rid[32], in[160];
    snprintf(rid, sizeof(rid), "%s", mh_jstr(out, "reservation_id"));
    cJSON_Delete(out);
    snprintf(in, sizeof(in), "{\"order_id\":\"o1\",\"reservation_id\":\"%s\"}", rid);
    mh_events_drain(h);

    compensate(h, "release", "inst1/reserve_inventory/compensate", in, &r);
    out = mh_output(&r);
    assert_true(jbool(out, "released"));
    assert_string_equal(mh_jstr(out, "order_id"), "o1");
    assert_string_equal(mh_jstr(out, "reservation_id"), rid);
    assert_lines(cJSON_GetObjectItemCaseSensitive(out, "items"), "A:2,B:5");
    cJSON_Delete(out);
    assert_int_equal(stock_of(h, "A"), 10);
    assert_int_equal(stock_of(h, "B"), 5);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM reservations WHERE reservation_id = '%s'"
                                  " AND status = 'released' AND released_ms IS NOT NULL",
                                  rid),
                     1);
    assert_conserved(h);

    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(e.n, 1);
    const cJSON *ev = evs_get(&e, "inventory.released", 0);
    assert_string_equal(mh_jstr(ev, "order_id"), "o1");
    assert_string_equal(mh_jstr(ev, "reservation_id"), rid);
    assert_string_equal(mh_jstr(ev, "correlation_id"), "inst1");
    assert_lines(cJSON_GetObjectItemCaseSensitive(ev, "items"), "A:2,B:5");
    assert_null(cJSON_GetObjectItemCaseSensitive(ev, "released"));
    mh_events_free(&e);

    /* Same key: the same answer. Another key: nothing held any more, no effect. */
    char *first = strdup(r.output);
    compensate(h, "release", "inst1/reserve_inventory/compensate", in, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output, first);
    free(first);
    run(h, "release", "cancel1/release_inventory", in, &r);
    out = mh_output(&r);
    assert_false(jbool(out, "released"));
    assert_string_equal(mh_jstr(out, "reservation_id"), rid);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(out, "items")), 0);
    cJSON_Delete(out);
    assert_int_equal(stock_of(h, "A"), 10);
    assert_int_equal(stock_of(h, "B"), 5);
    evs_load(h, &e);
    assert_int_equal(e.n, 1);
    mh_events_free(&e);

    /* A reservation id nobody made: nothing held, success. */
    run(h, "release", "x1/release",
        "{\"order_id\":\"o1\",\"reservation_id\":\"01ARZ3NDEKTSV4RRFFQ69G5FAV\"}", &r);
    out = mh_output(&r);
    assert_false(jbool(out, "released"));
    cJSON_Delete(out);
    sg_task_result_fini(&r);
}

static void test_release_wrong_order(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    run(h, "reserve", "s2/reserve_inventory",
        "{\"order_id\":\"o2\",\"items\":[{\"sku\":\"A\",\"qty\":1}]}", &r);
    cJSON *out = mh_output(&r);
    char in[160];
    snprintf(in, sizeof(in), "{\"order_id\":\"o1\",\"reservation_id\":\"%s\"}",
             mh_jstr(out, "reservation_id"));
    cJSON_Delete(out);
    /* A reservation of another order is never released by mistake. */
    run(h, "release", "s1/release", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.invalid_input", NULL);
    assert_contains(r.error_message, "reservation_id");
    assert_contains(r.error_message, "o2");
    assert_int_equal(stock_of(h, "A"), 9);
    assert_int_equal(held_count(h), 1);
    sg_task_result_fini(&r);
}

static void test_release_by_order(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    run(h, "reserve", "inst1/reserve_inventory",
        "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"C\",\"qty\":4}]}", &r);
    mh_assert_ok(&r, NULL);
    mh_events_drain(h);
    /* order_cancel: a forward step, reservation_id absent or null, two sagas asking. */
    run(h, "release", "cancel1/release_inventory", "{\"order_id\":\"o1\",\"reservation_id\":null}",
        &r);
    cJSON *out = mh_output(&r);
    assert_true(jbool(out, "released"));
    assert_int_equal(strlen(mh_jstr(out, "reservation_id")), 26);
    assert_lines(cJSON_GetObjectItemCaseSensitive(out, "items"), "C:4");
    cJSON_Delete(out);
    run(h, "release", "cancel2/release_inventory", "{\"order_id\":\"o1\"}", &r);
    out = mh_output(&r);
    assert_false(jbool(out, "released"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(out, "reservation_id")));
    cJSON_Delete(out);
    assert_int_equal(stock_of(h, "C"), 12);
    assert_int_equal(held_count(h), 0);
    assert_conserved(h);
    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(e.n, 1);
    assert_int_equal(mh_events_count(&e, "inventory.released"), 1);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

static void test_compensation_without_effect(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    /* reserve timed out without taking effect: its compensation succeeds, does nothing. */
    compensate(h, "release", "inst1/reserve_inventory/compensate",
               "{\"order_id\":\"o1\",\"reservation_id\":null}", &r);
    cJSON *out = mh_output(&r);
    assert_false(jbool(out, "released"));
    cJSON_Delete(out);
    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(e.n, 0);
    mh_events_free(&e);

    /* The late delivery of the forward task is refused and takes no effect. */
    run(h, "reserve", "inst1/reserve_inventory",
        "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":2}]}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.compensated", NULL);
    assert_int_equal(stock_of(h, "A"), 10);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM reservations"), 0);
    evs_load(h, &e);
    assert_int_equal(e.n, 0);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

static void test_compensation_releases_own_only(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    const char *in = "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"B\",\"qty\":2}]}";
    const char *rel = "{\"order_id\":\"o1\",\"reservation_id\":null}";
    run(h, "reserve", "sagaA/reserve_inventory", in, &r);
    mh_assert_ok(&r, NULL);
    run(h, "reserve", "sagaB/reserve_inventory", in, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.already_reserved", NULL);
    /* Saga B undoes its own (refused) reserve: saga A's reservation stays held. */
    compensate(h, "release", "sagaB/reserve_inventory/compensate", rel, &r);
    cJSON *out = mh_output(&r);
    assert_false(jbool(out, "released"));
    cJSON_Delete(out);
    assert_int_equal(held_count(h), 1);
    assert_int_equal(stock_of(h, "B"), 3);
    /* Saga A undoes its own: released. */
    compensate(h, "release", "sagaA/reserve_inventory/compensate", rel, &r);
    out = mh_output(&r);
    assert_true(jbool(out, "released"));
    cJSON_Delete(out);
    assert_int_equal(held_count(h), 0);
    assert_int_equal(stock_of(h, "B"), 5);
    assert_conserved(h);
    sg_task_result_fini(&r);
}

/* ---- restock, check ---- */

static void test_restock(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    run(h, "restock", "ops/restock1", "{\"sku\":\"B\",\"qty\":7}", &r);
    cJSON *out = mh_output(&r);
    assert_string_equal(mh_jstr(out, "sku"), "B");
    assert_int_equal(mh_jint(out, "stock"), 12);
    assert_int_equal(mh_jint(out, "delta"), 7);
    cJSON_Delete(out);
    /* Same key: once. */
    run(h, "restock", "ops/restock1", "{\"sku\":\"B\",\"qty\":7}", &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(stock_of(h, "B"), 12);
    assert_int_equal(mh_query_int(h->db, "SELECT supplied FROM products WHERE sku = 'B'"), 12);
    assert_conserved(h);

    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(e.n, 1);
    const cJSON *ev = evs_get(&e, "inventory.updated", 0);
    assert_string_equal(mh_jstr(ev, "sku"), "B");
    assert_int_equal(mh_jint(ev, "stock"), 12);
    assert_int_equal(mh_jint(ev, "delta"), 7);
    assert_string_equal(mh_jstr(ev, "reason"), "restock");
    assert_string_equal(mh_jstr(ev, "correlation_id"), "ops");
    mh_events_free(&e);

    run(h, "restock", "ops/restock2", "{\"sku\":\"NOPE\",\"qty\":1}", &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.unknown_sku", NULL);
    assert_contains(r.error_message, "NOPE");
    sg_task_result_fini(&r);
}

static void test_check(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    run(h, "check", "c/1",
        "{\"items\":[{\"sku\":\"A\",\"qty\":10},{\"sku\":\"B\",\"qty\":6},{\"sku\":\"ZZ\",\"qty\":"
        "1}]}",
        &r);
    cJSON *out = mh_output(&r);
    assert_false(jbool(out, "available"));
    const cJSON *lines = cJSON_GetObjectItemCaseSensitive(out, "lines");
    assert_int_equal(cJSON_GetArraySize(lines), 3);
    static const struct {
        const char *sku;
        long long req, avail;
    } want[] = {{"A", 10, 10}, {"B", 6, 5}, {"ZZ", 1, 0}};
    for (int i = 0; i < 3; i++) {
        const cJSON *l = cJSON_GetArrayItem(lines, i);
        assert_string_equal(mh_jstr(l, "sku"), want[i].sku);
        assert_int_equal(mh_jint(l, "requested"), want[i].req);
        assert_int_equal(mh_jint(l, "available"), want[i].avail);
    }
    cJSON_Delete(out);

    run(h, "check", "c/2", "{\"items\":[{\"sku\":\"A\",\"qty\":4},{\"sku\":\"A\",\"qty\":6}]}", &r);
    out = mh_output(&r);
    assert_true(jbool(out, "available"));
    assert_int_equal(
        mh_jint(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(out, "lines"), 0), "requested"),
        10);
    cJSON_Delete(out);
    /* Read only. */
    assert_int_equal(stock_of(h, "A"), 10);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM reservations"), 0);
    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(e.n, 0);
    mh_events_free(&e);
    sg_task_result_fini(&r);
}

/* ---- events ---- */

static void test_low_stock(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    /* C: 12 with threshold 10. 12 -> 10 crosses: alert. */
    run(h, "reserve", "i1/reserve_inventory",
        "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"C\",\"qty\":2}]}", &r);
    mh_assert_ok(&r, NULL);
    /* 10 -> 9: already low, no second alert. */
    run(h, "reserve", "i2/reserve_inventory",
        "{\"order_id\":\"o2\",\"items\":[{\"sku\":\"C\",\"qty\":1}]}", &r);
    mh_assert_ok(&r, NULL);
    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(mh_events_count(&e, "inventory.reserved"), 2);
    assert_int_equal(mh_events_count(&e, "inventory.low_stock"), 1);
    const cJSON *ev = evs_get(&e, "inventory.low_stock", 0);
    assert_string_equal(mh_jstr(ev, "sku"), "C");
    assert_int_equal(mh_jint(ev, "stock"), 10);
    assert_int_equal(mh_jint(ev, "threshold"), 10);
    assert_string_equal(mh_jstr(ev, "correlation_id"), "i1");
    /* The alert follows the reservation that caused it. */
    assert_string_equal(e.type[0], "inventory.reserved");
    assert_string_equal(e.type[1], "inventory.low_stock");
    mh_events_free(&e);

    /* Back above the threshold, then down again: a new alert. */
    run(h, "release", "i1/release", "{\"order_id\":\"o1\"}", &r);
    mh_assert_ok(&r, NULL);
    run(h, "release", "i2/release", "{\"order_id\":\"o2\"}", &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(stock_of(h, "C"), 12);
    run(h, "reserve", "i3/reserve_inventory",
        "{\"order_id\":\"o3\",\"items\":[{\"sku\":\"C\",\"qty\":3},{\"sku\":\"A\",\"qty\":10}]}",
        &r);
    mh_assert_ok(&r, NULL);
    evs_load(h, &e);
    assert_int_equal(mh_events_count(&e, "inventory.low_stock"), 3);
    ev = evs_get(&e, "inventory.low_stock", 1);
    assert_string_equal(mh_jstr(ev, "sku"), "C");
    assert_int_equal(mh_jint(ev, "stock"), 9);
    ev = evs_get(&e, "inventory.low_stock", 2);
    assert_string_equal(mh_jstr(ev, "sku"), "A");
    assert_int_equal(mh_jint(ev, "stock"), 0);
    assert_int_equal(mh_jint(ev, "threshold"), 2);

    /* ack removes what was handed on, and only that. */
    int64_t upto = e.last_seq;
    mh_events_free(&e);
    run(h, "restock", "ops/r1", "{\"sku\":\"A\",\"qty\":1}", &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(h->mod->events_ack(h->actx, upto), SG_OK);
    evs_load(h, &e);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.type[0], "inventory.updated");
    assert_int_equal(h->mod->events_ack(h->actx, e.last_seq), SG_OK);
    mh_events_free(&e);
    evs_load(h, &e);
    assert_int_equal(e.n, 0);
    sg_task_result_fini(&r);
}

/* ---- invalid input ---- */

static void test_invalid_input(void **state)
{
    mh_t *h = *state;
    static const struct {
        const char *op, *input, *names;
    } cases[] = {
        {"reserve", "not json", "JSON object"},
        {"reserve", "[]", "JSON object"},
        {"reserve", "{}", "order_id"},
        {"reserve", "{\"order_id\":5,\"items\":[{\"sku\":\"A\",\"qty\":1}]}", "order_id"},
        {"reserve", "{\"order_id\":\"\",\"items\":[{\"sku\":\"A\",\"qty\":1}]}", "order_id"},
        {"reserve", "{\"order_id\":\"o1\"}", "items"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":{}}", "items"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[]}", "items"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[5]}", "items[0]"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[{\"qty\":1}]}", "items[0].sku"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"\",\"qty\":1}]}", "items[0].sku"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[{\"sku\":7,\"qty\":1}]}", "items[0].sku"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":1},{\"sku\":\"A\"}]}",
         "items[1].qty"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":0}]}", "items[0].qty"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":-2}]}", "items[0].qty"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":1.5}]}",
         "items[0].qty"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":\"1\"}]}",
         "items[0].qty"},
        {"reserve", "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":1000001}]}",
         "items[0].qty"},
        {"reserve",
         "{\"order_id\":\"o1\",\"items\":[{\"sku\":"
         "\"X2345678901234567890123456789012345678901234567890123456789012345\",\"qty\":1}]}",
         "items[0].sku"},
        {"release", "{}", "order_id"},
        {"release", "{\"order_id\":\"o1\",\"reservation_id\":5}", "reservation_id"},
        {"release", "{\"order_id\":\"o1\",\"reservation_id\":\"\"}", "reservation_id"},
        {"restock", "{\"qty\":1}", "sku"},
        {"restock", "{\"sku\":\"A\"}", "qty"},
        {"restock", "{\"sku\":\"A\",\"qty\":0}", "qty"},
        {"restock", "{\"sku\":\"A\",\"qty\":1000001}", "qty"},
        {"check", "{}", "items"},
        {"check", "{\"items\":[{\"sku\":\"A\",\"qty\":true}]}", "items[0].qty"},
    };
    sg_task_result_t r = {0};
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        char key[32];
        snprintf(key, sizeof(key), "bad%zu/step", i);
        run(h, cases[i].op, key, cases[i].input, &r);
        mh_assert_failed(&r, SG_TASK_FATAL, "inventory.invalid_input", NULL);
        assert_contains(r.error_message, cases[i].names);
    }
    /* 101 lines are too many. */
    char big[4096] = "{\"order_id\":\"o1\",\"items\":[";
    for (int i = 0; i < 101; i++) {
        strcat(big, i ? ",{\"sku\":\"BIG\",\"qty\":1}" : "{\"sku\":\"BIG\",\"qty\":1}");
    }
    strcat(big, "]}");
    run(h, "reserve", "bad/many", big, &r);
    mh_assert_failed(&r, SG_TASK_FATAL, "inventory.invalid_input", NULL);
    assert_contains(r.error_message, "items");
    /* 100 lines of one sku are fine (summed). */
    strcpy(strstr(big, ",{\"sku\":\"BIG\",\"qty\":1}]}"), "]}");
    run(h, "reserve", "good/many", big, &r);
    cJSON *out = mh_output(&r);
    assert_lines(cJSON_GetObjectItemCaseSensitive(out, "items"), "BIG:100");
    cJSON_Delete(out);
    sg_task_result_fini(&r);
    assert_int_equal(stock_of(h, "A"), 10);
    assert_int_equal(stock_of(h, "BIG"), 100000 - 100);
}

/* ---- failures that must not be recorded, reopen, out of memory ---- */

static void test_retryable_not_recorded(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    const char *in = "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":2}]}";
    /* A transient failure before the effect: nothing happened, nothing recorded. */
    sg_activity_ctx_t *flaky = mh_ctx_open(h, "inventory.error_rate=1");
    mh_call_key(h, flaky, "reserve", "i1/reserve_inventory", in, 0, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "inventory.unavailable", NULL);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM svc_idempotency"), 0);
    assert_int_equal(stock_of(h, "A"), 10);
    h->mod->close(flaky);
    /* So the retry runs for real. */
    run(h, "reserve", "i1/reserve_inventory", in, &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(stock_of(h, "A"), 8);

    /* A reply lost after the effect: the retry finds the recorded outcome. */
    sg_activity_ctx_t *lossy = mh_ctx_open(h, "inventory.lost_reply_rate=1");
    mh_call_key(h, lossy, "reserve", "i2/reserve_inventory",
                "{\"order_id\":\"o2\",\"items\":[{\"sku\":\"A\",\"qty\":3}]}", 0, &r);
    mh_assert_failed(&r, SG_TASK_RETRYABLE, "inventory.reply_lost", NULL);
    h->mod->close(lossy);
    assert_int_equal(stock_of(h, "A"), 5);
    run(h, "reserve", "i2/reserve_inventory",
        "{\"order_id\":\"o2\",\"items\":[{\"sku\":\"A\",\"qty\":3}]}", &r);
    cJSON *out = mh_output(&r);
    assert_int_equal(mh_query_int(h->db,
                                  "SELECT count(*) FROM reservations WHERE reservation_id = '%s'"
                                  " AND reserve_key = 'i2/reserve_inventory'",
                                  mh_jstr(out, "reservation_id")),
                     1);
    cJSON_Delete(out);
    assert_int_equal(stock_of(h, "A"), 5);
    assert_int_equal(mh_query_int(h->db, "SELECT count(*) FROM reservations"), 2);
    assert_conserved(h);
    sg_task_result_fini(&r);
}

static void test_reopen(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    const char *in = "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"B\",\"qty\":4}]}";
    run(h, "reserve", "i1/reserve_inventory", in, &r);
    mh_assert_ok(&r, NULL);
    char *first = strdup(r.output);
    mh_reopen(h, NULL);

    run(h, "reserve", "i1/reserve_inventory", in, &r);
    mh_assert_ok(&r, NULL);
    assert_string_equal(r.output, first);
    free(first);
    assert_int_equal(stock_of(h, "B"), 1);
    mh_events_t e;
    evs_load(h, &e);
    assert_int_equal(mh_events_count(&e, "inventory.reserved"), 1);
    mh_events_free(&e);
    compensate(h, "release", "i1/reserve_inventory/compensate", "{\"order_id\":\"o1\"}", &r);
    cJSON *out = mh_output(&r);
    assert_true(jbool(out, "released"));
    cJSON_Delete(out);
    assert_int_equal(stock_of(h, "B"), 5);
    assert_conserved(h);
    sg_task_result_fini(&r);
}

static void test_oom(void **state)
{
    mh_t *h = *state;
    sg_task_result_t r = {0};
    for (size_t nth = 1;; nth++) {
        char key[48], in[128];
        snprintf(key, sizeof(key), "oom%zu/reserve_inventory", nth);
        snprintf(in, sizeof(in),
                 "{\"order_id\":\"oom%zu\",\"items\":[{\"sku\":\"BIG\",\"qty\":1}]}", nth);
        sg_alloc_fail_at(nth);
        run(h, "reserve", key, in, &r);
        size_t seen = sg_alloc_fail_at(0);
        if (r.outcome != SG_TASK_OK) {
            assert_int_equal(r.outcome, SG_TASK_RETRYABLE);
        }
        /* Whatever failed, the retry gives one reservation for the key. */
        run(h, "reserve", key, in, &r);
        mh_assert_ok(&r, NULL);
        assert_int_equal(
            mh_query_int(h->db, "SELECT count(*) FROM reservations WHERE reserve_key = '%s'", key),
            1);
        if (seen < nth) {
            assert_true(nth > 2); /* the loop did fail some allocations */
            break;
        }
    }
    assert_conserved(h);
    sg_task_result_fini(&r);
}

static void test_schema_invariants(void **state)
{
    mh_t *h = *state;
    /* Even a buggy writer cannot break these: they are in the schema. */
    assert_int_equal(mh_exec(h->db, "UPDATE products SET stock = -1 WHERE sku = 'A'"),
                     SQLITE_CONSTRAINT);
    sg_task_result_t r = {0};
    run(h, "reserve", "i1/reserve_inventory",
        "{\"order_id\":\"o1\",\"items\":[{\"sku\":\"A\",\"qty\":1}]}", &r);
    mh_assert_ok(&r, NULL);
    assert_int_equal(mh_exec(h->db,
                             "INSERT INTO reservations(reservation_id, order_id, reserve_key,"
                             " status, created_ms) VALUES('X', 'o1', 'k', 'held', 0)"),
                     SQLITE_CONSTRAINT);
    assert_int_equal(stock_of(h, "A"), 9);
    sg_task_result_fini(&r);
}

/* ---- concurrency ---- */

#define N_THREADS 8
#define PER_THREAD 10
#define HOT_STOCK 100
#define HOT_QTY 3

typedef struct {
    const mh_t *h;
    sg_activity_ctx_t *ctx;
    pthread_barrier_t *start;
    int tid;
    const char *op; /* "reserve" or "release" */
    int ok, refused, other;
    char other_code[64];
} worker_t;

/* One task of a worker: reserve for order o, or release order o under a key of the
 * worker's own. Counts the outcome. */
static void work_one(worker_t *w, int o)
{
    char key[64], in[128];
    bool reserve = strcmp(w->op, "reserve") == 0;
    if (reserve) {
        snprintf(key, sizeof(key), "t%d/reserve_inventory", o);
        snprintf(in, sizeof(in), "{\"order_id\":\"o%d\",\"items\":[{\"sku\":\"HOT\",\"qty\":%d}]}",
                 o, HOT_QTY);
    } else {
        snprintf(key, sizeof(key), "cancel%d-%d/release_inventory", o, w->tid);
        snprintf(in, sizeof(in), "{\"order_id\":\"o%d\",\"reservation_id\":null}", o);
    }
    sg_task_t task = {.instance_id = "t",
                      .step_id = w->op,
                      .attempt = 1,
                      .activity = w->op,
                      .input = in,
                      .idempotency_key = key};
    sg_task_result_t r = {0};
    sg_activity_module_op(w->h->mod, w->op)->run(w->ctx, &task, &r);
    if (r.outcome == SG_TASK_OK && strstr(r.output, "\"released\":false") == NULL) {
        w->ok++;
    } else if ((r.outcome == SG_TASK_OK && !reserve) ||
               (r.outcome == SG_TASK_FATAL && reserve &&
                strcmp(r.error_code, "inventory.out_of_stock") == 0)) {
        w->refused++;
    } else {
        w->other++;
        snprintf(w->other_code, sizeof(w->other_code), "%s", r.error_code ? r.error_code : "?");
    }
    sg_task_result_fini(&r);
}

static void *worker(void *arg)
{
    worker_t *w = arg;
    pthread_barrier_wait(w->start);
    if (strcmp(w->op, "reserve") == 0) {
        for (int i = 0; i < PER_THREAD; i++) {
            work_one(w, w->tid * PER_THREAD + i);
        }
    } else {
        /* Workers 2g and 2g+1 (one on each context) both release every order o with
         * o % (N_THREADS / 2) == g: each order is released twice, concurrently. */
        for (int o = w->tid / 2; o < N_THREADS * PER_THREAD; o += N_THREADS / 2) {
            work_one(w, o);
        }
    }
    return NULL;
}

/* Runs N_THREADS workers of op, alternating between ctx_a and ctx_b; sums outcomes. */
static void run_workers(const mh_t *h, sg_activity_ctx_t *ctx_a, sg_activity_ctx_t *ctx_b,
                        const char *op, int *ok, int *refused)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_THREADS);
    pthread_t th[N_THREADS];
    worker_t w[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] =
            (worker_t){.h = h, .ctx = i % 2 ? ctx_b : ctx_a, .start = &start, .tid = i, .op = op};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    *ok = *refused = 0;
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].other != 0) {
            fail_msg("worker %d: %d unexpected outcomes, e.g. %s", i, w[i].other, w[i].other_code);
        }
        *ok += w[i].ok;
        *refused += w[i].refused;
    }
    pthread_barrier_destroy(&start);
}

static void concurrent(mh_t *h, sg_activity_ctx_t *ctx_b)
{
    char seed[160];
    snprintf(seed, sizeof(seed),
             "{\"products\":[{\"sku\":\"HOT\",\"name\":\"Hot item\",\"price\":1,\"stock\":%d}]}",
             HOT_STOCK);
    mh_seed(h, seed);
    int ok = 0, refused = 0;
    run_workers(h, h->actx, ctx_b, "reserve", &ok, &refused);
    /* 80 attempts of 3 on 100: exactly 33 win, the rest are refused, never oversold. */
    assert_int_equal(ok, HOT_STOCK / HOT_QTY);
    assert_int_equal(refused, N_THREADS * PER_THREAD - HOT_STOCK / HOT_QTY);
    assert_int_equal(stock_of(h, "HOT"), HOT_STOCK % HOT_QTY);
    assert_int_equal(held_count(h), HOT_STOCK / HOT_QTY);
    assert_conserved(h);

    /* Every order released twice, concurrently, under different keys: once each. */
    run_workers(h, h->actx, ctx_b, "release", &ok, &refused);
    assert_int_equal(ok, HOT_STOCK / HOT_QTY);
    assert_int_equal(refused, 2 * N_THREADS * PER_THREAD - HOT_STOCK / HOT_QTY);
    assert_int_equal(stock_of(h, "HOT"), HOT_STOCK);
    assert_int_equal(held_count(h), 0);
    assert_conserved(h);
    mh_events_t e;
    evs_load(h, &e);
    mh_events_free(&e);
}

static void test_concurrent_one_module(void **state)
{
    mh_t *h = *state;
    concurrent(h, h->actx);
}

static void test_concurrent_two_modules(void **state)
{
    mh_t *h = *state;
    /* Two contexts on one data directory: two connections, like two worker processes. */
    sg_activity_ctx_t *other = mh_ctx_open(h, NULL);
    concurrent(h, other);
    h->mod->close(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seed, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_reserve, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_reserve_all_or_nothing, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_reserve_unknown_sku, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_reserve_duplicate_sku, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_already_reserved, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_release_by_id, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_release_wrong_order, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_release_by_order, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_compensation_without_effect, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_compensation_releases_own_only, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_restock, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_check, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_low_stock, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_retryable_not_recorded, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_oom, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_schema_invariants, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_one_module, setup, mh_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_two_modules, setup, mh_teardown),
    };
    return cmocka_run_group_tests_name("inventory", tests, NULL, NULL);
}
