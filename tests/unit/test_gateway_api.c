/*
 * Tests of the gateway's definitions tooling, event log and order API over real HTTP: a
 * driver on a temporary SQLite file with the shipped workflows (workflows/) and the
 * shop's services seeded from activities/seed/shop.json, the gateway on 127.0.0.1 with
 * an ephemeral port, libcurl as the client. Every new route's success and error cases:
 * validate (checked against sagactl's golden output), graphs of definitions and of a
 * compensated order in DOT and SVG, events filtered and paged, orders created, read,
 * cancelled and read again with every part (record, sagas, reservation, payment), the
 * dead letters (rows written by a second writer, as the kafka transport's would be:
 * listed, filtered, paged, discarded, not requeued by an embedded sagad), the attempts'
 * heartbeats (written the same way) as GET /v1/instances/{id} shows them. A second
 * gateway on a driver without the shop shows the 404s of a sagad without it.
 * Sagas are awaited by polling GET with a bounded number of tries.
 */
/* cmocka.h needs these first; the blank line keeps clang-format from reordering them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "activities/activity.h"
#include "activities/inventory/inventory.h"
#include "activities/payment/payment.h"
#include "gateway/gateway_int.h"
#include "tests/support/gateway_harness.h"

#define POLL_TRIES 3000
#define POLL_WAIT_MS 20
#define SEED_FILE "activities/seed/shop.json"
#define WORKFLOWS "workflows"
#define BAD_FIXTURE "tests/fixtures/dsl/bad/multi_errors"

typedef struct {
    gh_t *h;            /* the shop: the shipped workflows, the services seeded */
    char bare_dir[330]; /* the driver without the shop: an empty workflows folder */
    char bare_db[350];
    sg_driver_t *bare;
    sg_gateway_t *gw_bare;
    char base_bare[64];
    char ok_saga[32];       /* order o-api-ok's order_create instance */
    char declined_saga[32]; /* order o-api-declined's, COMPENSATED */
} fx_t;

static fx_t *fx;

static const char order_ok[] =
    "{\"order_id\":\"o-api-ok\",\"customer_id\":\"cus_alice\",\"email\":\"alice@example.com\","
    "\"items\":[{\"sku\":\"BOOK-001\",\"qty\":2,\"price\":2990},"
    "{\"sku\":\"MUG-001\",\"qty\":1,\"price\":1200}],"
    "\"payment\":{\"card_token\":\"tok_visa_alice\"},\"total\":7180,\"currency\":\"EUR\"}";

/* Erin's card has a limit of 20.00: the charge is declined and the saga compensates. */
static const char order_declined[] =
    "{\"order_id\":\"o-api-declined\",\"customer_id\":\"cus_erin\","
    "\"email\":\"erin@example.com\",\"items\":[{\"sku\":\"BOOK-002\",\"qty\":1,\"price\":4500}],"
    "\"payment\":{\"card_token\":\"tok_low_funds\"},\"total\":4500,\"currency\":\"EUR\"}";

/* ---- HTTP client ---- */

/* One request to base. body NULL sends none; len GH_STRLEN means strlen(body). header
 * (may be NULL) is one extra request header line. */
static gh_resp_t request_to(const char *base, const char *method, const char *path,
                            const char *body, size_t len, const char *header)
{
    const char *h[] = {header, NULL};
    return gh_request(base, method, path, body, len, header != NULL ? h : NULL, 0);
}

static gh_resp_t request(const char *method, const char *path, const char *body, const char *header)
{
    return request_to(fx->h->base, method, path, body, GH_STRLEN, header);
}

static gh_resp_t get(const char *path)
{
    return request("GET", path, NULL, NULL);
}

/* Asserts a problem document with this status and slug. */
static void assert_problem(const gh_resp_t *r, long status, const char *slug)
{
    gh_assert_problem(r, status, slug, NULL);
}

static void expect_problem(const char *method, const char *path, const char *body,
                           const char *header, long status, const char *slug)
{
    gh_resp_t r = request(method, path, body, header);
    gh_assert_problem(&r, status, slug, path);
    gh_resp_free(&r);
}

static bool call_pred(const cJSON *doc, const void *arg)
{
    bool (*const *pred)(const cJSON *) = arg;
    return (*pred)(doc);
}

/* Polls GET path until pred holds on its JSON; returns that document (owned). */
static cJSON *poll_until(const char *path, bool (*pred)(const cJSON *doc))
{
    return gh_poll(fx->h->base, path, call_pred, &pred, POLL_TRIES, POLL_WAIT_MS);
}

/* ---- fixture ---- */

static void seed(const char *data_dir)
{
    char *text = NULL, err[512] = "";
    size_t len = 0;
    assert_int_equal(sg_file_read(SEED_FILE, 1 << 20, &text, &len), SG_OK);
    sg_activity_env_t env = {.data_dir = data_dir};
    if (sg_activity_seed_all(&env, text, err, sizeof(err), NULL, NULL) != SG_OK) {
        fail_msg("seed: %s", err);
    }
    sg_free(text);
}

static int group_setup(void **state)
{
    (void)state;
    fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->h = gh_new(&(gh_opts_t){
        .name = "gwapi", .workflows_dir = WORKFLOWS, .prepare = seed, .no_gateway = true});
    /* The gateway reads the services' databases in the test's directory. */
    fx->h->gw = gh_gateway_start(
        &(sg_gateway_opts_t){.db_path = fx->h->db, .driver = fx->h->d, .data_dir = fx->h->dir},
        fx->h->base, sizeof(fx->h->base));
    snprintf(fx->bare_dir, sizeof(fx->bare_dir), "%s/bare", fx->h->dir);
    snprintf(fx->bare_db, sizeof(fx->bare_db), "%s/sagad.db", fx->bare_dir);
    assert_int_equal(mkdir(fx->bare_dir, 0700), 0);
    fx->bare = gh_driver_start(&(sg_driver_opts_t){.db_path = fx->bare_db,
                                                   .workflows_dir = fx->bare_dir,
                                                   .data_dir = fx->bare_dir,
                                                   .threads = 1,
                                                   .sync = SG_SYNC_OFF});
    fx->gw_bare = gh_gateway_start(&(sg_gateway_opts_t){.db_path = fx->bare_db, .driver = fx->bare},
                                   fx->base_bare, sizeof(fx->base_bare));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sg_gateway_stop(fx->gw_bare);
    sg_driver_stop(fx->bare);
    int rc = gh_free(fx->h);
    free(fx);
    return rc == 0 ? 0 : -1;
}

/* ---- the route table ---- */

static void test_routes_and_methods(void **state)
{
    (void)state;
    static const struct {
        const char *method, *pattern;
        unsigned scope;
    } want[] = {
        {"POST", "/v1/workflows/validate", SG_SCOPE_READ},
        {"GET", "/v1/workflows/{name}/graph", SG_SCOPE_READ},
        {"GET", "/v1/instances/{id}/graph", SG_SCOPE_READ},
        {"GET", "/v1/events", SG_SCOPE_READ},
        {"POST", "/v1/orders", SG_SCOPE_START},
        {"GET", "/v1/orders/{id}", SG_SCOPE_READ},
        {"POST", "/v1/orders/{id}/cancel", SG_SCOPE_OPERATE},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(want); i++) {
        size_t found = 0;
        for (size_t k = 0; k < gw__n_routes; k++) {
            const gw_route_t *rt = &gw__routes[k];
            if (strcmp(rt->method, want[i].method) == 0 &&
                strcmp(rt->pattern, want[i].pattern) == 0) {
                found++;
                assert_int_equal(rt->scope, want[i].scope);
            }
        }
        if (found != 1) {
            fail_msg("%s %s is in the table %zu times", want[i].method, want[i].pattern, found);
        }
    }
    /* Wrong methods: 405 with the methods the path has. */
    static const struct {
        const char *method, *path, *allow;
    } wrong[] = {
        {"GET", "/v1/orders", "POST"},
        {"DELETE", "/v1/orders/o-1", "GET, HEAD"},
        {"GET", "/v1/orders/o-1/cancel", "POST"},
        {"POST", "/v1/events", "GET, HEAD"},
        {"POST", "/v1/instances/abc/graph", "GET, HEAD"},
        {"PUT", "/v1/workflows/order_create/graph", "GET, HEAD"},
        {"PUT", "/v1/workflows/validate", "GET, HEAD, POST"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(wrong); i++) {
        gh_resp_t r = request(wrong[i].method, wrong[i].path, NULL, NULL);
        assert_problem(&r, 405, "method-not-allowed");
        assert_string_equal(r.allow, wrong[i].allow);
        gh_resp_free(&r);
    }
    expect_problem("GET", "/v1/orders/o-1/cancel/now", NULL, NULL, 404, "not-found");
    expect_problem("GET", "/v1/eventsx", NULL, NULL, 404, "not-found");
}

/* ---- POST /v1/workflows/validate ---- */

static gh_resp_t validate(const char *yaml, size_t len)
{
    return request_to(fx->h->base, "POST", "/v1/workflows/validate", yaml, len,
                      "Content-Type: application/yaml");
}

static void test_validate_good(void **state)
{
    (void)state;
    char *yaml = NULL;
    size_t len = 0;
    assert_int_equal(sg_file_read(WORKFLOWS "/order_create.yaml", 1 << 20, &yaml, &len), SG_OK);
    gh_resp_t r = validate(yaml, len);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json");
    assert_true(cJSON_IsTrue(gh_item(r.json, "valid")));
    gh_expect_str(r.json, "workflow", "order_create");
    assert_int_equal((int)gh_num(r.json, "version"), 1);
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "errors")), 0);
    assert_int_equal((int)gh_num(r.json, "errors_omitted"), 0);
    gh_resp_free(&r);
    sg_free(yaml);
}

/* The errors of a bad fixture are exactly the lines of sagactl's golden .err, with the
 * file name "<request>": same line, column, message and hint. */
static void test_validate_bad_matches_sagactl(void **state)
{
    (void)state;
    char *yaml = NULL, *golden = NULL;
    size_t len = 0, glen = 0;
    assert_int_equal(sg_file_read(BAD_FIXTURE ".yaml", 1 << 20, &yaml, &len), SG_OK);
    assert_int_equal(sg_file_read(BAD_FIXTURE ".err", 1 << 20, &golden, &glen), SG_OK);
    gh_resp_t r = validate(yaml, len);
    assert_int_equal(r.status, 200);
    assert_true(cJSON_IsFalse(gh_item(r.json, "valid")));
    assert_true(cJSON_IsNull(gh_item(r.json, "workflow")));
    assert_true(cJSON_IsNull(gh_item(r.json, "version")));
    assert_int_equal((int)gh_num(r.json, "errors_omitted"), 0);
    const cJSON *errors = gh_item(r.json, "errors");
    char *lines[64];
    size_t n_lines = 0, n_errors = 0;
    for (char *line = strtok(golden, "\n"); line != NULL && n_lines < 64;
         line = strtok(NULL, "\n")) {
        lines[n_lines++] = line;
    }
    const char *prefix = BAD_FIXTURE ".yaml";
    const cJSON *e = NULL;
    for (size_t i = 0; i < n_lines; i++) {
        if (strncmp(lines[i], "  hint: ", 8) == 0) {
            assert_non_null(e);
            gh_expect_str(e, "hint", lines[i] + 8);
            continue;
        }
        e = e == NULL ? errors->child : e->next;
        assert_non_null(e);
        n_errors++;
        assert_true(strncmp(lines[i], prefix, strlen(prefix)) == 0);
        char want[512], composed[512];
        snprintf(want, sizeof(want), "<request>%s", lines[i] + strlen(prefix));
        gh_expect_str(e, "text", want);
        snprintf(composed, sizeof(composed), "<request>:%d:%d: error: %s", (int)gh_num(e, "line"),
                 (int)gh_num(e, "col"), gh_str(e, "message"));
        assert_string_equal(composed, want);
        if (i + 1 == n_lines || strncmp(lines[i + 1], "  hint: ", 8) != 0) {
            assert_true(cJSON_IsNull(gh_item(e, "hint")));
        }
    }
    assert_true(n_errors >= 5);
    assert_int_equal(cJSON_GetArraySize(errors), (int)n_errors);
    gh_resp_free(&r);
    sg_free(yaml);
    sg_free(golden);
}

/* Past 20 errors the rest are counted; hostile bodies are reports, never failures. */
static void test_validate_limits(void **state)
{
    (void)state;
    char yaml[8192];
    size_t o = (size_t)snprintf(yaml, sizeof(yaml), "saga: many\nversion: 1\nsteps:\n");
    for (int i = 0; i < 30; i++) {
        o += (size_t)snprintf(yaml + o, sizeof(yaml) - o,
                              "  - id: s%d\n    activty: test.echo\n    compensate: none\n", i);
    }
    gh_resp_t r = validate(yaml, o);
    assert_int_equal(r.status, 200);
    assert_true(cJSON_IsFalse(gh_item(r.json, "valid")));
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "errors")), 20);
    assert_true(gh_num(r.json, "errors_omitted") >= 10);
    gh_expect_str(gh_item(r.json, "errors")->child, "hint", "did you mean \"activity\"?");
    gh_resp_free(&r);

    static const struct {
        const char *body;
        size_t len;
    } odd[] = {{"", 0},
               {"{}", 2},
               {"- just\n- a list\n", 16},
               {"saga: x\0\x01", 9},
               {"\xff\xfe garbage", 10},
               {"a: &a [*a]\n", 11}};
    for (size_t i = 0; i < SG_ARRAY_LEN(odd); i++) {
        r = validate(odd[i].body, odd[i].len);
        if (r.status != 200) {
            fail_msg("body %zu: %ld %s", i, r.status, r.body ? r.body : "");
        }
        assert_true(cJSON_IsFalse(gh_item(r.json, "valid")));
        const cJSON *first = gh_item(r.json, "errors")->child;
        assert_non_null(first);
        assert_non_null(gh_str(first, "message"));
        assert_true(strncmp(gh_str(first, "text"), "<request>", 9) == 0);
        gh_resp_free(&r);
    }
}

/* ---- graphs ---- */

static bool is_svg(const gh_resp_t *r)
{
    return r->body != NULL &&
           (strncmp(r->body, "<?xml", 5) == 0 || strncmp(r->body, "<svg", 4) == 0) &&
           strstr(r->body, "</svg>") != NULL;
}

static void test_workflow_graph(void **state)
{
    (void)state;
    gh_resp_t r = get("/v1/workflows/order_create/graph");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/vnd.graphviz");
    assert_true(strncmp(r.body, "digraph", 7) == 0);
    assert_non_null(strstr(r.body, "reserve_inventory"));
    assert_null(strstr(r.body, "legend")); /* the definition alone: no live state */
    gh_resp_free(&r);
    r = get("/v1/workflows/order_cancel/graph?format=dot&version=1");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "refund_payment"));
    gh_resp_free(&r);
    r = get("/v1/workflows/order_create/graph?format=svg");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "image/svg+xml");
    assert_true(is_svg(&r));
    gh_resp_free(&r);
    expect_problem("GET", "/v1/workflows/order_create/graph?format=png", NULL, NULL, 400,
                   "bad-parameter");
    expect_problem("GET", "/v1/workflows/order_create/graph?version=0", NULL, NULL, 400,
                   "bad-parameter");
    expect_problem("GET", "/v1/workflows/order_create/graph?version=7", NULL, NULL, 404,
                   "workflow-not-found");
    expect_problem("GET", "/v1/workflows/nope/graph", NULL, NULL, 404, "workflow-not-found");
}

/* ---- orders ---- */

static void post_order(const char *body, const char *id, char saga[32])
{
    gh_resp_t r = request("POST", "/v1/orders", body, "Content-Type: application/json");
    if (r.status != 201) {
        fail_msg("POST /v1/orders: %ld %s", r.status, r.body ? r.body : "");
    }
    char loc[96];
    snprintf(loc, sizeof(loc), "/v1/orders/%s", id);
    assert_string_equal(r.location, loc);
    gh_expect_str(r.json, "order_id", id);
    gh_expect_str(r.json, "status", "RUNNING");
    assert_true(cJSON_IsTrue(gh_item(r.json, "created")));
    assert_non_null(gh_str(r.json, "instance_id"));
    snprintf(saga, 32, "%s", gh_str(r.json, "instance_id"));
    gh_resp_free(&r);
}

static const char *saga_status(const cJSON *doc)
{
    return gh_str(gh_item(doc, "saga"), "status");
}

static bool saga_done(const cJSON *doc)
{
    const char *s = saga_status(doc);
    return s != NULL && (strcmp(s, "COMPLETED") == 0 || strcmp(s, "COMPENSATED") == 0 ||
                         strcmp(s, "FAILED") == 0 || strcmp(s, "COMPENSATION_FAILED") == 0);
}

static bool cancelled(const cJSON *doc)
{
    const cJSON *c = gh_item(doc, "cancellations");
    return gh_str_is(doc, "status", "cancelled") && cJSON_GetArraySize(c) == 1 &&
           gh_str_is(c->child, "status", "COMPLETED");
}

static bool second_cancel_done(const cJSON *doc)
{
    const cJSON *c = gh_item(doc, "cancellations");
    const char *s = cJSON_GetArraySize(c) == 2 ? gh_str(c->child->next, "status") : NULL;
    return s != NULL && strcmp(s, "RUNNING") != 0 && strcmp(s, "COMPENSATING") != 0;
}

/* A step of a saga document by id. */
static const cJSON *step_of(const cJSON *saga, const char *id)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, gh_item(saga, "steps"))
    {
        if (gh_str_is(s, "id", id)) {
            return s;
        }
    }
    fail_msg("no step %s", id);
    return NULL;
}

static void test_order_create_get_cancel(void **state)
{
    (void)state;
    post_order(order_ok, "o-api-ok", fx->ok_saga);
    /* The same order again: the default key order:<id> names the same saga. */
    gh_resp_t r = request("POST", "/v1/orders", order_ok, NULL);
    assert_int_equal(r.status, 200);
    gh_expect_str(r.json, "instance_id", fx->ok_saga);
    assert_true(cJSON_IsFalse(gh_item(r.json, "created")));
    assert_string_equal(r.location, "/v1/orders/o-api-ok");
    gh_resp_free(&r);

    cJSON *doc = poll_until("/v1/orders/o-api-ok", saga_done);
    gh_expect_str(doc, "order_id", "o-api-ok");
    gh_expect_str(doc, "status", "approved");
    const cJSON *order = gh_item(doc, "order");
    gh_expect_str(order, "order_id", "o-api-ok");
    gh_expect_str(order, "saga_id", fx->ok_saga);
    assert_int_equal((int)gh_num(order, "total"), 7180);
    const cJSON *saga = gh_item(doc, "saga");
    gh_expect_str(saga, "id", fx->ok_saga);
    gh_expect_str(saga, "workflow", "order_create");
    gh_expect_str(saga, "status", "COMPLETED");
    assert_true(cJSON_IsNull(gh_item(saga, "current_step")));
    assert_int_equal(cJSON_GetArraySize(gh_item(saga, "steps")), 6);
    assert_int_equal((int)gh_num(step_of(saga, "charge_payment"), "attempt"), 1);
    gh_expect_str(step_of(saga, "approve_order"), "status", "done");
    assert_null(gh_item(saga, "attempts")); /* GET /v1/instances/{id} has those */
    assert_int_equal(cJSON_GetArraySize(gh_item(doc, "cancellations")), 0);
    const cJSON *res = gh_item(doc, "reservation");
    gh_expect_str(res, "order_id", "o-api-ok");
    gh_expect_str(res, "status", "held");
    gh_expect_str(res, "reservation_id", gh_str(order, "reservation_id"));
    assert_int_equal(cJSON_GetArraySize(gh_item(res, "items")), 2);
    assert_true(cJSON_IsNull(gh_item(res, "released_ms")));
    const cJSON *pay = gh_item(doc, "payment");
    gh_expect_str(pay, "status", "charged");
    gh_expect_str(gh_item(pay, "charge"), "payment_id", gh_str(order, "payment_id"));
    assert_int_equal((int)gh_num(gh_item(pay, "charge"), "amount"), 7180);
    assert_non_null(gh_str(gh_item(pay, "charge"), "card_last4"));
    assert_true(cJSON_IsNull(gh_item(pay, "refund")));
    char *text = cJSON_PrintUnformatted(pay);
    assert_null(strstr(text, "tok_visa_alice")); /* the card token never leaves the service */
    free(text);
    cJSON_Delete(doc);

    /* The services' getters directly: unknown orders and missing databases give NULL. */
    char *json = sg_inventory_reservation_json(fx->h->dir, "o-api-ok");
    assert_non_null(json);
    sg_free(json);
    assert_null(sg_inventory_reservation_json(fx->h->dir, "o-api-none"));
    assert_null(sg_payment_order_json(fx->h->dir, "o-api-none"));
    assert_null(sg_inventory_reservation_json(fx->bare_dir, "o-api-ok"));
    assert_null(sg_payment_order_json("/nonexistent", "o-api-ok"));
    assert_null(sg_payment_order_json(NULL, "o-api-ok"));

    /* Cancel: 202 and the cancel saga; the same request again names it (200). */
    const char *body = "{\"reason\":\"customer_request\",\"requested_by\":\"cus_alice\"}";
    r = request("POST", "/v1/orders/o-api-ok/cancel", body, NULL);
    if (r.status != 202) {
        fail_msg("cancel: %ld %s", r.status, r.body ? r.body : "");
    }
    assert_string_equal(r.location, "/v1/orders/o-api-ok");
    gh_expect_str(r.json, "order_id", "o-api-ok");
    assert_true(cJSON_IsTrue(gh_item(r.json, "created")));
    char cancel_id[32];
    snprintf(cancel_id, sizeof(cancel_id), "%s", gh_str(r.json, "instance_id"));
    gh_resp_free(&r);
    r = request("POST", "/v1/orders/o-api-ok/cancel", body, NULL);
    assert_int_equal(r.status, 200);
    gh_expect_str(r.json, "instance_id", cancel_id);
    gh_resp_free(&r);

    doc = poll_until("/v1/orders/o-api-ok", cancelled);
    const cJSON *c = gh_item(doc, "cancellations")->child;
    gh_expect_str(c, "id", cancel_id);
    gh_expect_str(c, "workflow", "order_cancel");
    gh_expect_str(gh_item(c, "input"), "reason", "customer_request");
    gh_expect_str(gh_item(doc, "order"), "cancel_reason", "customer_request");
    gh_expect_str(gh_item(doc, "order"), "cancel_saga_id", cancel_id);
    gh_expect_str(gh_item(doc, "saga"), "status",
                  "COMPLETED"); /* the order saga stays as it ended */
    gh_expect_str(gh_item(doc, "reservation"), "status", "released");
    assert_true(gh_num(gh_item(doc, "reservation"), "released_ms") > 0);
    pay = gh_item(doc, "payment");
    gh_expect_str(pay, "status", "refunded");
    assert_int_equal((int)gh_num(gh_item(pay, "refund"), "amount"), 7180);
    cJSON_Delete(doc);

    /* Another cancel under a key of its own: found by the bounded scan, and refused by
     * the saga (the order is cancelled already), which leaves the order as it was. */
    r = request("POST", "/v1/orders/o-api-ok/cancel", "", "Idempotency-Key: second-cancel");
    assert_int_equal(r.status, 202);
    assert_false(gh_str_is(r.json, "instance_id", cancel_id));
    gh_resp_free(&r);
    doc = poll_until("/v1/orders/o-api-ok", second_cancel_done);
    c = gh_item(doc, "cancellations");
    gh_expect_str(c->child, "id", cancel_id);
    gh_expect_str(c->child->next, "status", "COMPENSATED");
    gh_expect_str(gh_item(c->child->next, "input"), "reason", "customer_request");
    gh_expect_str(doc, "status", "cancelled");
    gh_expect_str(gh_item(doc, "payment"), "status", "refunded");
    cJSON_Delete(doc);
}

static void test_declined_order_and_its_graph(void **state)
{
    (void)state;
    post_order(order_declined, "o-api-declined", fx->declined_saga);
    cJSON *doc = poll_until("/v1/orders/o-api-declined", saga_done);
    gh_expect_str(gh_item(doc, "saga"), "status", "COMPENSATED");
    gh_expect_str(doc, "status", "rejected");
    gh_expect_str(step_of(gh_item(doc, "saga"), "reserve_inventory"), "compensation",
                  "compensated");
    gh_expect_str(gh_item(doc, "reservation"), "status", "released");
    const cJSON *pay = gh_item(doc, "payment");
    gh_expect_str(pay, "status", "declined");
    assert_true(cJSON_IsNull(gh_item(pay, "charge")));
    assert_int_equal(cJSON_GetArraySize(gh_item(pay, "declines")), 1);
    assert_non_null(gh_str(gh_item(pay, "declines")->child, "reason"));
    cJSON_Delete(doc);

    char path[128];
    snprintf(path, sizeof(path), "/v1/instances/%s/graph", fx->declined_saga);
    gh_resp_t r = get(path);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/vnd.graphviz");
    /* Undone steps: grey forward node, purple compensation node marked "undone". */
    assert_non_null(strstr(r.body, "fillcolor=\"#e1bee7\""));
    assert_non_null(strstr(r.body, "<B>undone ✓"));
    assert_non_null(strstr(r.body, "<B>failed ✗")); /* charge_payment */
    assert_non_null(strstr(r.body, "legend"));
    gh_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/instances/%s/graph?format=svg", fx->declined_saga);
    r = get(path);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "image/svg+xml");
    assert_true(is_svg(&r));
    gh_resp_free(&r);
    /* A completed order: every step done. */
    snprintf(path, sizeof(path), "/v1/instances/%s/graph", fx->ok_saga);
    r = get(path);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "<B>done ✓"));
    assert_null(strstr(r.body, "<B>undone"));
    gh_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/instances/%s/graph?format=pdf", fx->declined_saga);
    expect_problem("GET", path, NULL, NULL, 400, "bad-parameter");
    expect_problem("GET", "/v1/instances/01NOSUCHINSTANCE/graph", NULL, NULL, 404,
                   "instance-not-found");
    expect_problem("GET", "/v1/instances/bad$id/graph?format=svg", NULL, NULL, 404,
                   "instance-not-found");
}

static void test_order_errors(void **state)
{
    (void)state;
    /* Schema errors in the shape of any start: {path, message, keyword}. */
    gh_resp_t r =
        request("POST", "/v1/orders",
                "{\"order_id\":\"o bad\",\"customer_id\":\"c\",\"items\":[],\"x\":1}", NULL);
    assert_problem(&r, 400, "invalid-input");
    const cJSON *e = gh_item(r.json, "errors");
    assert_true(cJSON_GetArraySize(e) >= 4);
    bool saw_pattern = false;
    cJSON_ArrayForEach(e, gh_item(r.json, "errors"))
    {
        assert_non_null(gh_str(e, "path"));
        assert_non_null(gh_str(e, "message"));
        assert_non_null(gh_str(e, "keyword"));
        saw_pattern = saw_pattern || gh_str_is(e, "path", "/order_id");
    }
    assert_true(saw_pattern);
    gh_resp_free(&r);
    expect_problem("POST", "/v1/orders", "not json", NULL, 400, "invalid-input");
    expect_problem("POST", "/v1/orders", "[1]", NULL, 400, "invalid-input");
    expect_problem("POST", "/v1/orders", "", NULL, 400, "invalid-input");
    expect_problem("POST", "/v1/orders", order_ok, "Idempotency-Key: has space", 400, "bad-header");
    char long_key[300];
    snprintf(long_key, sizeof(long_key), "Idempotency-Key: %0250d", 7);
    expect_problem("POST", "/v1/orders", order_ok, long_key, 400, "bad-header");

    expect_problem("GET", "/v1/orders/o-api-unknown", NULL, NULL, 404, "order-not-found");
    expect_problem("GET", "/v1/orders/bad.id", NULL, NULL, 404, "order-not-found");
    char path[160];
    snprintf(path, sizeof(path), "/v1/orders/%065d", 1);
    expect_problem("GET", path, NULL, NULL, 404, "order-not-found");
    expect_problem("POST", "/v1/orders/o-api-unknown/cancel", "{}", NULL, 404, "order-not-found");
    expect_problem("POST", "/v1/orders/bad.id/cancel", "{}", NULL, 404, "order-not-found");
    expect_problem("POST", "/v1/orders/o-api-ok/cancel", "{\"order_id\":\"o-other\"}", NULL, 400,
                   "invalid-input");
    expect_problem("POST", "/v1/orders/o-api-ok/cancel", "{\"order_id\":7}", NULL, 400,
                   "invalid-input");
    expect_problem("POST", "/v1/orders/o-api-ok/cancel", "reason=other", NULL, 400,
                   "invalid-input");
    expect_problem("POST", "/v1/orders/o-api-ok/cancel", "{}", "Idempotency-Key: a b", 400,
                   "bad-header");
    r = request("POST", "/v1/orders/o-api-ok/cancel", "{\"reason\":\"bored\",\"extra\":1}", NULL);
    assert_problem(&r, 400, "invalid-input");
    gh_expect_str(gh_item(r.json, "errors")->child, "path", "/reason");
    gh_expect_str(gh_item(r.json, "errors")->child->next, "path", "/extra");
    gh_resp_free(&r);

    /* A sagad without the shop's workflows and services. */
    r = request_to(fx->base_bare, "POST", "/v1/orders", order_ok, GH_STRLEN, NULL);
    assert_problem(&r, 404, "workflow-not-found");
    gh_resp_free(&r);
    r = request_to(fx->base_bare, "GET", "/v1/orders/o-api-ok", NULL, 0, NULL);
    assert_problem(&r, 404, "order-not-found");
    gh_resp_free(&r);
    r = request_to(fx->base_bare, "POST", "/v1/orders/o-api-ok/cancel", "{}", GH_STRLEN, NULL);
    assert_problem(&r, 404, "order-not-found");
    gh_resp_free(&r);
    r = request_to(fx->base_bare, "GET", "/v1/events", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 0);
    assert_true(cJSON_IsNull(gh_item(r.json, "next_after")));
    gh_resp_free(&r);
}

/* ---- events ---- */

static void test_events(void **state)
{
    (void)state;
    char path[256];
    /* Everything of the completed order's saga, in log order. */
    snprintf(path, sizeof(path), "/v1/events?correlation_id=%s&limit=1000", fx->ok_saga);
    gh_resp_t all = get(path);
    assert_int_equal(all.status, 200);
    assert_string_equal(all.ctype, "application/json");
    assert_true(cJSON_IsNull(gh_item(all.json, "next_after")));
    int n = cJSON_GetArraySize(gh_item(all.json, "items"));
    assert_true(n >= 4);
    bool created = false, completed = false;
    double last = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, gh_item(all.json, "items"))
    {
        gh_expect_str(ev, "correlation_id", fx->ok_saga);
        assert_true(gh_num(ev, "id") > last);
        last = gh_num(ev, "id");
        assert_non_null(gh_str(ev, "event_id"));
        assert_non_null(gh_str(ev, "source"));
        assert_non_null(gh_str(ev, "time"));
        assert_true(cJSON_IsObject(gh_item(ev, "data")));
        if (!gh_str_is(ev, "source", "sagad")) {
            /* A service's event is stored whole: envelope and business fields. */
            gh_expect_str(gh_item(ev, "data"), "event_id", gh_str(ev, "event_id"));
        }
        created =
            created || (gh_str_is(ev, "type", "order.created") && gh_str_is(ev, "source", "order"));
        completed = completed ||
                    (gh_str_is(ev, "type", "order.completed") && gh_str_is(ev, "source", "sagad") &&
                     gh_str_is(gh_item(ev, "data"), "order_id", "o-api-ok"));
    }
    assert_true(created);
    assert_true(completed);

    /* The same, two at a time: pages follow next_after until it is null. */
    const cJSON *want = gh_item(all.json, "items")->child;
    long after = 0;
    int pages = 0, seen = 0;
    for (;;) {
        snprintf(path, sizeof(path), "/v1/events?correlation_id=%s&limit=2&after=%ld", fx->ok_saga,
                 after);
        gh_resp_t page = get(path);
        assert_int_equal(page.status, 200);
        pages++;
        cJSON_ArrayForEach(ev, gh_item(page.json, "items"))
        {
            assert_non_null(want);
            assert_int_equal((long)gh_num(ev, "id"), (long)gh_num(want, "id"));
            want = want->next;
            seen++;
        }
        const cJSON *next = gh_item(page.json, "next_after");
        bool more = cJSON_IsNumber(next);
        after = more ? (long)next->valuedouble : after;
        gh_resp_free(&page);
        if (!more) {
            break;
        }
        assert_true(pages < 100);
    }
    assert_int_equal(seen, n);
    assert_int_equal(pages, (n + 1) / 2); /* the last full page already says "no more" */
    gh_resp_free(&all);

    /* By type across sagas; by type and saga. */
    gh_resp_t r = get("/v1/events?type=payment.refunded");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 1);
    gh_expect_str(gh_item(r.json, "items")->child, "source", "payment");
    gh_expect_str(gh_item(gh_item(r.json, "items")->child, "data"), "order_id", "o-api-ok");
    gh_resp_free(&r);
    r = get("/v1/events?type=order.created&limit=1000");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 2); /* ok and declined */
    cJSON_ArrayForEach(ev, gh_item(r.json, "items"))
    {
        gh_expect_str(ev, "type", "order.created");
    }
    gh_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/events?type=payment.failed&correlation_id=%s",
             fx->declined_saga);
    r = get(path);
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 1);
    gh_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/events?type=payment.failed&correlation_id=%s", fx->ok_saga);
    r = get(path);
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 0);
    gh_resp_free(&r);

    /* Each refusal names its parameter. */
    static const char *const bad[][2] = {
        {"/v1/events?limit=0", "limit"},
        {"/v1/events?limit=1001", "limit"},
        {"/v1/events?limit=x", "limit"},
        {"/v1/events?after=-1", "after"},
        {"/v1/events?after=1e3", "after"},
        {"/v1/events?after=", "after"},
        {"/v1/events?type=", "type"},
        {"/v1/events?correlation_id=", "correlation_id"},
        {"/v1/events?type=x&limit=0&after=-1", "after"}, /* after is read before limit */
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        gh_expect_bad_param(fx->h->base, bad[i][0], bad[i][1]);
    }
    char longtype[200];
    snprintf(longtype, sizeof(longtype), "/v1/events?type=%0129d", 0);
    gh_expect_bad_param(fx->h->base, longtype, "type");
    snprintf(longtype, sizeof(longtype), "/v1/events?correlation_id=%0129d", 0);
    gh_expect_bad_param(fx->h->base, longtype, "correlation_id");
    /* At the limits: accepted. */
    snprintf(longtype, sizeof(longtype), "/v1/events?type=%0128d&limit=1000&after=0", 0);
    r = get(longtype);
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 0);
    gh_resp_free(&r);
}

/* ---- heartbeats on attempts ---- */

/* A running attempt of step 1 of the completed order's saga, as a second writer (the
 * driver) would record a dispatch; attempt numbers past the real ones. */
static void put_running_attempt(sg_store_t *w, int64_t attempt)
{
    sg_store_attempt_t a = {.instance_id = fx->ok_saga,
                            .step = 1,
                            .attempt = attempt,
                            .activity = "payment.charge",
                            .input = "{\"amount\":1}",
                            .status = "running",
                            .started_ms = 1764130267000,
                            .deadline_ms = 1764130327000};
    assert_int_equal(sg_store_attempt_insert(w, &a), SG_OK);
}

static const cJSON *attempt_no(const cJSON *doc, int n)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, gh_item(doc, "attempts"))
    {
        if ((int)gh_num(a, "attempt") == n) {
            return a;
        }
    }
    fail_msg("no attempt %d", n);
    return NULL;
}

/* GET /v1/instances/{id} shows each attempt's last heartbeat as the store holds it: time,
 * worker and progress as a JSON value; progress that is not JSON is left out, not a 500. */
static void test_attempt_heartbeats(void **state)
{
    (void)state;
    sg_store_t *w = NULL;
    assert_int_equal(sg_store_open(fx->h->db, NULL, &w, NULL, 0), SG_OK);
    put_running_attempt(w, 7);
    put_running_attempt(w, 8);
    put_running_attempt(w, 9);
    const char *id = fx->ok_saga;
    assert_int_equal(sg_store_attempt_heartbeat(w, id, 1, false, 7, 1764130270000, "host-a:42",
                                                "{\"done\":40,\"total\":100}"),
                     SG_OK);
    /* A later one without progress keeps the last progress. */
    assert_int_equal(
        sg_store_attempt_heartbeat(w, id, 1, false, 7, 1764130271234, "host-b:43", NULL), SG_OK);
    assert_int_equal(
        sg_store_attempt_heartbeat(w, id, 1, false, 8, 1764130272000, "host-a:42", "{\"done\":"),
        SG_OK);
    sg_store_close(w);

    char path[96];
    snprintf(path, sizeof(path), "/v1/instances/%s", id);
    gh_resp_t r = get(path);
    assert_int_equal(r.status, 200);
    const cJSON *a7 = attempt_no(r.json, 7), *a8 = attempt_no(r.json, 8);
    const cJSON *a9 = attempt_no(r.json, 9);
    gh_expect_str(a7, "status", "running");
    assert_true(gh_num(a7, "heartbeat_ms") == 1764130271234.0);
    gh_expect_str(a7, "worker", "host-b:43");
    const cJSON *progress = gh_item(a7, "progress");
    assert_true(cJSON_IsObject(progress)); /* the value itself, not a string */
    assert_int_equal((int)gh_num(progress, "done"), 40);
    assert_int_equal((int)gh_num(progress, "total"), 100);
    assert_true(gh_num(a8, "heartbeat_ms") == 1764130272000.0);
    gh_expect_str(a8, "worker", "host-a:42");
    assert_null(gh_item(a8, "progress"));
    assert_true(cJSON_IsNull(gh_item(a9, "heartbeat_ms")));
    assert_true(cJSON_IsNull(gh_item(a9, "worker")));
    assert_null(gh_item(a9, "progress"));
    gh_resp_free(&r);
}

/* ---- dead letters ---- */

static void put_dead_letter(const char *queue, int64_t offset, const char *instance)
{
    sg_store_t *w = NULL;
    assert_int_equal(sg_store_open(fx->h->db, NULL, &w, NULL, 0), SG_OK);
    char topic[64];
    snprintf(topic, sizeof(topic), "saga.tasks.%s.dlq", queue);
    sg_store_dlq_t row = {.topic = topic,
                          .partition = 1,
                          .offset = offset,
                          .queue = queue,
                          .key = instance,
                          .instance_id = instance,
                          .step_id = instance != NULL ? "charge_payment" : NULL,
                          .attempt = instance != NULL ? 3 : 0,
                          .idempotency_key = instance != NULL ? "I/charge_payment" : NULL,
                          .activity = instance != NULL ? "payment.charge" : NULL,
                          .input = instance != NULL ? "{\"amount\":12}" : NULL,
                          .reason = "started 3 times without finishing",
                          .headers = "{\"sagad.dlq.starts\":\"3\"}",
                          .received_ms = 1764130267123,
                          .task = "\x0a\x01x",
                          .task_len = 3};
    assert_int_equal(sg_store_dlq_insert(w, &row, NULL), SG_OK);
    sg_store_close(w);
}

static void test_dlq(void **state)
{
    (void)state;
    /* An embedded sagad dead-letters nothing. */
    gh_resp_t r = get("/v1/dlq");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 0);
    assert_true(cJSON_IsNull(gh_item(r.json, "next_after")));
    gh_resp_free(&r);
    expect_problem("POST", "/v1/dlq/1/requeue", NULL, NULL, 404, "dlq-not-found");
    expect_problem("POST", "/v1/dlq/1/discard", NULL, NULL, 404, "dlq-not-found");

    /* Rows as the kafka transport's reader leaves them. */
    put_dead_letter("payment", 10, "01JDX2AAAAAAAAAAAAAAAAAAAA");
    put_dead_letter("test", 11, NULL);
    put_dead_letter("payment", 12, "01JDX2BBBBBBBBBBBBBBBBBBBB");
    r = get("/v1/dlq");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 3);
    const cJSON *first = gh_item(r.json, "items")->child;
    long id1 = (long)gh_num(first, "id");
    gh_expect_str(first, "status", "new");
    gh_expect_str(first, "queue", "payment");
    gh_expect_str(first, "topic", "saga.tasks.payment.dlq");
    gh_expect_str(first, "instance_id", "01JDX2AAAAAAAAAAAAAAAAAAAA");
    gh_expect_str(first, "step_id", "charge_payment");
    gh_expect_str(first, "reason", "started 3 times without finishing");
    gh_expect_str(first, "received_at", "2025-11-26T04:11:07.123Z");
    gh_expect_str(gh_item(first, "headers"), "sagad.dlq.starts", "3");
    assert_int_equal((int)gh_num(gh_item(first, "input"), "amount"), 12);
    assert_int_equal((int)gh_num(first, "attempt"), 3);
    assert_int_equal((int)gh_num(first, "offset"), 10);
    assert_int_equal((int)gh_num(first, "task_bytes"), 3);
    const cJSON *poison = first->next;
    assert_true(cJSON_IsNull(gh_item(poison, "instance_id")));
    assert_true(cJSON_IsNull(gh_item(poison, "attempt")));
    assert_true(cJSON_IsNull(gh_item(poison, "input")));
    gh_resp_free(&r);

    r = get("/v1/dlq?queue=payment&limit=1");
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 1);
    assert_int_equal((long)gh_num(r.json, "next_after"), id1);
    gh_resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/v1/dlq?queue=payment&limit=1&after=%ld", id1);
    r = get(path);
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 1);
    gh_expect_str(gh_item(r.json, "items")->child, "instance_id", "01JDX2BBBBBBBBBBBBBBBBBBBB");
    assert_true(cJSON_IsNull(gh_item(r.json, "next_after")));
    gh_resp_free(&r);

    /* Discard is a status change; an embedded sagad cannot requeue. */
    snprintf(path, sizeof(path), "/v1/dlq/%ld/discard", id1);
    r = request("POST", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    gh_expect_str(r.json, "status", "discarded");
    gh_resp_free(&r);
    r = request("POST", path, "{}", NULL);
    assert_problem(&r, 409, "conflict");
    gh_expect_str(r.json, "dlq_status", "discarded");
    gh_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/dlq/%ld/requeue", id1);
    r = request("POST", path, NULL, NULL);
    assert_problem(&r, 409, "conflict");
    assert_non_null(strstr(gh_str(r.json, "detail"), "--transport kafka"));
    gh_resp_free(&r);
    r = get("/v1/dlq?status=discarded");
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 1);
    assert_int_equal((long)gh_num(gh_item(r.json, "items")->child, "id"), id1);
    gh_resp_free(&r);
    r = get("/v1/dlq?status=new&queue=test");
    assert_int_equal(cJSON_GetArraySize(gh_item(r.json, "items")), 1);
    gh_resp_free(&r);

    static const char *const bad[][2] = {
        {"/v1/dlq?limit=0", "limit"},         {"/v1/dlq?limit=1001", "limit"},
        {"/v1/dlq?after=-1", "after"},        {"/v1/dlq?after=x", "after"},
        {"/v1/dlq?status=old", "status"},     {"/v1/dlq?queue=a.b", "queue"},
        {"/v1/dlq?queue=", "queue"},          {"/v1/dlq?status=", "status"},
        {"/v1/dlq?limit=x&after=1", "limit"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        gh_expect_bad_param(fx->h->base, bad[i][0], bad[i][1]);
    }
    char longq[300];
    snprintf(longq, sizeof(longq), "/v1/dlq?queue=%0201d", 0);
    gh_expect_bad_param(fx->h->base, longq, "queue");
    snprintf(longq, sizeof(longq), "/v1/dlq?queue=%0200d&status=requeued&limit=1000", 0);
    r = get(longq);
    assert_int_equal(r.status, 200);
    gh_resp_free(&r);
    static const char *const unknown[] = {"/v1/dlq/0/discard", "/v1/dlq/-1/discard",
                                          "/v1/dlq/x/requeue", "/v1/dlq/99999999/requeue",
                                          "/v1/dlq/99999999999999999999/discard"};
    for (size_t i = 0; i < SG_ARRAY_LEN(unknown); i++) {
        expect_problem("POST", unknown[i], NULL, NULL, 404, "dlq-not-found");
    }
    r = get("/v1/dlq/1/requeue");
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "POST");
    gh_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_and_methods),
        cmocka_unit_test(test_validate_good),
        cmocka_unit_test(test_validate_bad_matches_sagactl),
        cmocka_unit_test(test_validate_limits),
        cmocka_unit_test(test_workflow_graph),
        /* The order tests feed the graph and event tests that follow. */
        cmocka_unit_test(test_order_create_get_cancel),
        cmocka_unit_test(test_declined_order_and_its_graph),
        cmocka_unit_test(test_order_errors),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_attempt_heartbeats),
        cmocka_unit_test(test_dlq),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
