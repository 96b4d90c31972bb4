/*
 * Tests of the gateway's definitions tooling, event log and order API over real HTTP: a
 * driver on a temporary SQLite file with the shipped workflows (workflows/) and the
 * shop's services seeded from activities/seed/shop.json, the gateway on 127.0.0.1 with
 * an ephemeral port, libcurl as the client. Every new route's success and error cases:
 * validate (checked against sagactl's golden output), graphs of definitions and of a
 * compensated order in DOT and SVG, events filtered and paged, orders created, read,
 * cancelled and read again with every part (record, sagas, reservation, payment), the
 * dead letters (rows written by a second writer, as the kafka transport's would be:
 * listed, filtered, paged, discarded, not requeued by an embedded sagad). A second
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
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "activities/activity.h"
#include "activities/inventory/inventory.h"
#include "activities/payment/payment.h"
#include "gateway/gateway_int.h"
#include "orchestrator/log/log.h"

#define POLL_TRIES 3000
#define POLL_WAIT_MS 20
#define SEED_FILE "activities/seed/shop.json"
#define WORKFLOWS "workflows"
#define BAD_FIXTURE "tests/fixtures/dsl/bad/multi_errors"

typedef struct {
    char dir[64];
    char db[128];
    char bare_dir[128]; /* the driver without the shop: an empty workflows folder */
    char bare_db[160];
    sg_driver_t *d, *bare;
    sg_gateway_t *gw, *gw_bare;
    char base[64], base_bare[64];
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

typedef struct {
    long status;
    char *body;
    size_t len;
    char ctype[128];
    char location[128];
    char allow[64];
    cJSON *json;
} resp_t;

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    resp_t *r = ctx;
    char *grown = realloc(r->body, r->len + size * n + 1);
    assert_non_null(grown);
    memcpy(grown + r->len, data, size * n);
    r->len += size * n;
    grown[r->len] = '\0';
    r->body = grown;
    return size * n;
}

static void keep_header(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t k = strlen(name);
    if (n > k + 1 && strncasecmp(line, name, k) == 0 && line[k] == ':') {
        const char *v = line + k + 1;
        size_t len = n - k - 1;
        while (len > 0 && *v == ' ') {
            v++;
            len--;
        }
        while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n')) {
            len--;
        }
        snprintf(out, cap, "%.*s", (int)len, v);
    }
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
    resp_t *r = ctx;
    keep_header(data, size * n, "Content-Type", r->ctype, sizeof(r->ctype));
    keep_header(data, size * n, "Location", r->location, sizeof(r->location));
    keep_header(data, size * n, "Allow", r->allow, sizeof(r->allow));
    return size * n;
}

/* One request to base. body NULL sends none; len SIZE_MAX means strlen(body). header
 * (may be NULL) is one extra request header line. */
static resp_t request_to(const char *base, const char *method, const char *path, const char *body,
                         size_t len, const char *header)
{
    resp_t r = {0};
    char url[512];
    snprintf(url, sizeof(url), "%s%s", base, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    if (header != NULL) {
        hdrs = curl_slist_append(hdrs, header);
    }
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(len == SIZE_MAX ? strlen(body) : len));
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(cc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    r.json = r.body != NULL ? cJSON_Parse(r.body) : NULL;
    return r;
}

static resp_t request(const char *method, const char *path, const char *body, const char *header)
{
    return request_to(fx->base, method, path, body, SIZE_MAX, header);
}

static resp_t get(const char *path)
{
    return request("GET", path, NULL, NULL);
}

static void resp_free(resp_t *r)
{
    cJSON_Delete(r->json);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static const cJSON *item(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = item(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = item(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static bool str_is(const cJSON *o, const char *key, const char *want)
{
    const char *s = str(o, key);
    return s != NULL && strcmp(s, want) == 0;
}

static void expect_str(const cJSON *o, const char *key, const char *want)
{
    const char *s = str(o, key);
    if (s == NULL || strcmp(s, want) != 0) {
        char *text = cJSON_PrintUnformatted(o);
        fail_msg("%s: expected \"%s\", got %s in %.600s", key, want, s ? s : "(none)",
                 text ? text : "?");
    }
}

/* Asserts a problem document with this status and slug. */
static void assert_problem(const resp_t *r, long status, const char *slug)
{
    if (r->status != status) {
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body ? r->body : "");
    }
    assert_string_equal(r->ctype, "application/problem+json");
    assert_non_null(r->json);
    assert_int_equal((long)num(r->json, "status"), status);
    char type[96];
    snprintf(type, sizeof(type), "urn:sagad:problem:%s", slug);
    expect_str(r->json, "type", type);
    assert_non_null(str(r->json, "detail"));
}

static void expect_problem(const char *method, const char *path, const char *body,
                           const char *header, long status, const char *slug)
{
    resp_t r = request(method, path, body, header);
    assert_problem(&r, status, slug);
    resp_free(&r);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls GET path until pred holds on its JSON; returns that document (owned). */
static cJSON *poll_until(const char *path, bool (*pred)(const cJSON *doc))
{
    for (int i = 0; i < POLL_TRIES; i++) {
        resp_t r = get(path);
        if (r.status == 200 && pred(r.json)) {
            cJSON *doc = r.json;
            r.json = NULL;
            resp_free(&r);
            return doc;
        }
        resp_free(&r);
        sleep_ms(POLL_WAIT_MS);
    }
    fail_msg("%s did not reach the expected state", path);
    return NULL;
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

static sg_gateway_t *start_gateway(sg_driver_t *d, const char *db, const char *data_dir, char *base,
                                   size_t cap)
{
    char err[512] = "";
    sg_gateway_t *gw = NULL;
    sg_gateway_opts_t go = {
        .listen = "127.0.0.1:0", .db_path = db, .driver = d, .data_dir = data_dir};
    if (sg_gateway_start(&go, &gw, err, sizeof(err)) != SG_OK) {
        fail_msg("gateway: %s", err);
    }
    snprintf(base, cap, "http://127.0.0.1:%u", sg_gateway_port(gw));
    return gw;
}

static int group_setup(void **state)
{
    (void)state;
    sg_log_set_level(SG_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/sg_gwapiXXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->db, sizeof(fx->db), "%s/sagad.db", fx->dir);
    snprintf(fx->bare_dir, sizeof(fx->bare_dir), "%s/bare", fx->dir);
    snprintf(fx->bare_db, sizeof(fx->bare_db), "%s/sagad.db", fx->bare_dir);
    assert_int_equal(mkdir(fx->bare_dir, 0700), 0);
    seed(fx->dir);
    char err[512] = "";
    sg_driver_opts_t o = {.db_path = fx->db,
                          .workflows_dir = WORKFLOWS,
                          .data_dir = fx->dir,
                          .threads = 4,
                          .sync = SG_SYNC_OFF};
    if (sg_driver_start(&o, &fx->d, err, sizeof(err)) != SG_OK) {
        fail_msg("driver: %s", err);
    }
    fx->gw = start_gateway(fx->d, fx->db, fx->dir, fx->base, sizeof(fx->base));
    sg_driver_opts_t bare = {.db_path = fx->bare_db,
                             .workflows_dir = fx->bare_dir,
                             .data_dir = fx->bare_dir,
                             .threads = 1,
                             .sync = SG_SYNC_OFF};
    if (sg_driver_start(&bare, &fx->bare, err, sizeof(err)) != SG_OK) {
        fail_msg("bare driver: %s", err);
    }
    fx->gw_bare = start_gateway(fx->bare, fx->bare_db, NULL, fx->base_bare, sizeof(fx->base_bare));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sg_gateway_stop(fx->gw);
    sg_gateway_stop(fx->gw_bare);
    sg_driver_stop(fx->d);
    sg_driver_stop(fx->bare);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", fx->dir);
    }
    free(fx);
    curl_global_cleanup();
    return 0;
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
        resp_t r = request(wrong[i].method, wrong[i].path, NULL, NULL);
        assert_problem(&r, 405, "method-not-allowed");
        assert_string_equal(r.allow, wrong[i].allow);
        resp_free(&r);
    }
    expect_problem("GET", "/v1/orders/o-1/cancel/now", NULL, NULL, 404, "not-found");
    expect_problem("GET", "/v1/eventsx", NULL, NULL, 404, "not-found");
}

/* ---- POST /v1/workflows/validate ---- */

static resp_t validate(const char *yaml, size_t len)
{
    return request_to(fx->base, "POST", "/v1/workflows/validate", yaml, len,
                      "Content-Type: application/yaml");
}

static void test_validate_good(void **state)
{
    (void)state;
    char *yaml = NULL;
    size_t len = 0;
    assert_int_equal(sg_file_read(WORKFLOWS "/order_create.yaml", 1 << 20, &yaml, &len), SG_OK);
    resp_t r = validate(yaml, len);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json");
    assert_true(cJSON_IsTrue(item(r.json, "valid")));
    expect_str(r.json, "workflow", "order_create");
    assert_int_equal((int)num(r.json, "version"), 1);
    assert_int_equal(cJSON_GetArraySize(item(r.json, "errors")), 0);
    assert_int_equal((int)num(r.json, "errors_omitted"), 0);
    resp_free(&r);
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
    resp_t r = validate(yaml, len);
    assert_int_equal(r.status, 200);
    assert_true(cJSON_IsFalse(item(r.json, "valid")));
    assert_true(cJSON_IsNull(item(r.json, "workflow")));
    assert_true(cJSON_IsNull(item(r.json, "version")));
    assert_int_equal((int)num(r.json, "errors_omitted"), 0);
    const cJSON *errors = item(r.json, "errors");
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
            expect_str(e, "hint", lines[i] + 8);
            continue;
        }
        e = e == NULL ? errors->child : e->next;
        assert_non_null(e);
        n_errors++;
        assert_true(strncmp(lines[i], prefix, strlen(prefix)) == 0);
        char want[512], composed[512];
        snprintf(want, sizeof(want), "<request>%s", lines[i] + strlen(prefix));
        expect_str(e, "text", want);
        snprintf(composed, sizeof(composed), "<request>:%d:%d: error: %s", (int)num(e, "line"),
                 (int)num(e, "col"), str(e, "message"));
        assert_string_equal(composed, want);
        if (i + 1 == n_lines || strncmp(lines[i + 1], "  hint: ", 8) != 0) {
            assert_true(cJSON_IsNull(item(e, "hint")));
        }
    }
    assert_true(n_errors >= 5);
    assert_int_equal(cJSON_GetArraySize(errors), (int)n_errors);
    resp_free(&r);
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
    resp_t r = validate(yaml, o);
    assert_int_equal(r.status, 200);
    assert_true(cJSON_IsFalse(item(r.json, "valid")));
    assert_int_equal(cJSON_GetArraySize(item(r.json, "errors")), 20);
    assert_true(num(r.json, "errors_omitted") >= 10);
    expect_str(item(r.json, "errors")->child, "hint", "did you mean \"activity\"?");
    resp_free(&r);

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
        assert_true(cJSON_IsFalse(item(r.json, "valid")));
        const cJSON *first = item(r.json, "errors")->child;
        assert_non_null(first);
        assert_non_null(str(first, "message"));
        assert_true(strncmp(str(first, "text"), "<request>", 9) == 0);
        resp_free(&r);
    }
}

/* ---- graphs ---- */

static bool is_svg(const resp_t *r)
{
    return r->body != NULL &&
           (strncmp(r->body, "<?xml", 5) == 0 || strncmp(r->body, "<svg", 4) == 0) &&
           strstr(r->body, "</svg>") != NULL;
}

static void test_workflow_graph(void **state)
{
    (void)state;
    resp_t r = get("/v1/workflows/order_create/graph");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/vnd.graphviz");
    assert_true(strncmp(r.body, "digraph", 7) == 0);
    assert_non_null(strstr(r.body, "reserve_inventory"));
    assert_null(strstr(r.body, "legend")); /* the definition alone: no live state */
    resp_free(&r);
    r = get("/v1/workflows/order_cancel/graph?format=dot&version=1");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "refund_payment"));
    resp_free(&r);
    r = get("/v1/workflows/order_create/graph?format=svg");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "image/svg+xml");
    assert_true(is_svg(&r));
    resp_free(&r);
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
    resp_t r = request("POST", "/v1/orders", body, "Content-Type: application/json");
    if (r.status != 201) {
        fail_msg("POST /v1/orders: %ld %s", r.status, r.body ? r.body : "");
    }
    char loc[96];
    snprintf(loc, sizeof(loc), "/v1/orders/%s", id);
    assert_string_equal(r.location, loc);
    expect_str(r.json, "order_id", id);
    expect_str(r.json, "status", "RUNNING");
    assert_true(cJSON_IsTrue(item(r.json, "created")));
    assert_non_null(str(r.json, "instance_id"));
    snprintf(saga, 32, "%s", str(r.json, "instance_id"));
    resp_free(&r);
}

static const char *saga_status(const cJSON *doc)
{
    return str(item(doc, "saga"), "status");
}

static bool saga_done(const cJSON *doc)
{
    const char *s = saga_status(doc);
    return s != NULL && (strcmp(s, "COMPLETED") == 0 || strcmp(s, "COMPENSATED") == 0 ||
                         strcmp(s, "FAILED") == 0 || strcmp(s, "COMPENSATION_FAILED") == 0);
}

static bool cancelled(const cJSON *doc)
{
    const cJSON *c = item(doc, "cancellations");
    return str_is(doc, "status", "cancelled") && cJSON_GetArraySize(c) == 1 &&
           str_is(c->child, "status", "COMPLETED");
}

static bool second_cancel_done(const cJSON *doc)
{
    const cJSON *c = item(doc, "cancellations");
    const char *s = cJSON_GetArraySize(c) == 2 ? str(c->child->next, "status") : NULL;
    return s != NULL && strcmp(s, "RUNNING") != 0 && strcmp(s, "COMPENSATING") != 0;
}

/* A step of a saga document by id. */
static const cJSON *step_of(const cJSON *saga, const char *id)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, item(saga, "steps"))
    {
        if (str_is(s, "id", id)) {
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
    resp_t r = request("POST", "/v1/orders", order_ok, NULL);
    assert_int_equal(r.status, 200);
    expect_str(r.json, "instance_id", fx->ok_saga);
    assert_true(cJSON_IsFalse(item(r.json, "created")));
    assert_string_equal(r.location, "/v1/orders/o-api-ok");
    resp_free(&r);

    cJSON *doc = poll_until("/v1/orders/o-api-ok", saga_done);
    expect_str(doc, "order_id", "o-api-ok");
    expect_str(doc, "status", "approved");
    const cJSON *order = item(doc, "order");
    expect_str(order, "order_id", "o-api-ok");
    expect_str(order, "saga_id", fx->ok_saga);
    assert_int_equal((int)num(order, "total"), 7180);
    const cJSON *saga = item(doc, "saga");
    expect_str(saga, "id", fx->ok_saga);
    expect_str(saga, "workflow", "order_create");
    expect_str(saga, "status", "COMPLETED");
    assert_true(cJSON_IsNull(item(saga, "current_step")));
    assert_int_equal(cJSON_GetArraySize(item(saga, "steps")), 6);
    assert_int_equal((int)num(step_of(saga, "charge_payment"), "attempt"), 1);
    expect_str(step_of(saga, "approve_order"), "status", "done");
    assert_null(item(saga, "attempts")); /* GET /v1/instances/{id} has those */
    assert_int_equal(cJSON_GetArraySize(item(doc, "cancellations")), 0);
    const cJSON *res = item(doc, "reservation");
    expect_str(res, "order_id", "o-api-ok");
    expect_str(res, "status", "held");
    expect_str(res, "reservation_id", str(order, "reservation_id"));
    assert_int_equal(cJSON_GetArraySize(item(res, "items")), 2);
    assert_true(cJSON_IsNull(item(res, "released_ms")));
    const cJSON *pay = item(doc, "payment");
    expect_str(pay, "status", "charged");
    expect_str(item(pay, "charge"), "payment_id", str(order, "payment_id"));
    assert_int_equal((int)num(item(pay, "charge"), "amount"), 7180);
    assert_non_null(str(item(pay, "charge"), "card_last4"));
    assert_true(cJSON_IsNull(item(pay, "refund")));
    char *text = cJSON_PrintUnformatted(pay);
    assert_null(strstr(text, "tok_visa_alice")); /* the card token never leaves the service */
    free(text);
    cJSON_Delete(doc);

    /* The services' getters directly: unknown orders and missing databases give NULL. */
    char *json = sg_inventory_reservation_json(fx->dir, "o-api-ok");
    assert_non_null(json);
    sg_free(json);
    assert_null(sg_inventory_reservation_json(fx->dir, "o-api-none"));
    assert_null(sg_payment_order_json(fx->dir, "o-api-none"));
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
    expect_str(r.json, "order_id", "o-api-ok");
    assert_true(cJSON_IsTrue(item(r.json, "created")));
    char cancel_id[32];
    snprintf(cancel_id, sizeof(cancel_id), "%s", str(r.json, "instance_id"));
    resp_free(&r);
    r = request("POST", "/v1/orders/o-api-ok/cancel", body, NULL);
    assert_int_equal(r.status, 200);
    expect_str(r.json, "instance_id", cancel_id);
    resp_free(&r);

    doc = poll_until("/v1/orders/o-api-ok", cancelled);
    const cJSON *c = item(doc, "cancellations")->child;
    expect_str(c, "id", cancel_id);
    expect_str(c, "workflow", "order_cancel");
    expect_str(item(c, "input"), "reason", "customer_request");
    expect_str(item(doc, "order"), "cancel_reason", "customer_request");
    expect_str(item(doc, "order"), "cancel_saga_id", cancel_id);
    expect_str(item(doc, "saga"), "status", "COMPLETED"); /* the order saga stays as it ended */
    expect_str(item(doc, "reservation"), "status", "released");
    assert_true(num(item(doc, "reservation"), "released_ms") > 0);
    pay = item(doc, "payment");
    expect_str(pay, "status", "refunded");
    assert_int_equal((int)num(item(pay, "refund"), "amount"), 7180);
    cJSON_Delete(doc);

    /* Another cancel under a key of its own: found by the bounded scan, and refused by
     * the saga (the order is cancelled already), which leaves the order as it was. */
    r = request("POST", "/v1/orders/o-api-ok/cancel", "", "Idempotency-Key: second-cancel");
    assert_int_equal(r.status, 202);
    assert_false(str_is(r.json, "instance_id", cancel_id));
    resp_free(&r);
    doc = poll_until("/v1/orders/o-api-ok", second_cancel_done);
    c = item(doc, "cancellations");
    expect_str(c->child, "id", cancel_id);
    expect_str(c->child->next, "status", "COMPENSATED");
    expect_str(item(c->child->next, "input"), "reason", "customer_request");
    expect_str(doc, "status", "cancelled");
    expect_str(item(doc, "payment"), "status", "refunded");
    cJSON_Delete(doc);
}

static void test_declined_order_and_its_graph(void **state)
{
    (void)state;
    post_order(order_declined, "o-api-declined", fx->declined_saga);
    cJSON *doc = poll_until("/v1/orders/o-api-declined", saga_done);
    expect_str(item(doc, "saga"), "status", "COMPENSATED");
    expect_str(doc, "status", "rejected");
    expect_str(step_of(item(doc, "saga"), "reserve_inventory"), "compensation", "compensated");
    expect_str(item(doc, "reservation"), "status", "released");
    const cJSON *pay = item(doc, "payment");
    expect_str(pay, "status", "declined");
    assert_true(cJSON_IsNull(item(pay, "charge")));
    assert_int_equal(cJSON_GetArraySize(item(pay, "declines")), 1);
    assert_non_null(str(item(pay, "declines")->child, "reason"));
    cJSON_Delete(doc);

    char path[128];
    snprintf(path, sizeof(path), "/v1/instances/%s/graph", fx->declined_saga);
    resp_t r = get(path);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/vnd.graphviz");
    /* Undone steps: grey forward node, purple compensation node marked "undone". */
    assert_non_null(strstr(r.body, "fillcolor=\"#e1bee7\""));
    assert_non_null(strstr(r.body, "<B>undone ✓"));
    assert_non_null(strstr(r.body, "<B>failed ✗")); /* charge_payment */
    assert_non_null(strstr(r.body, "legend"));
    resp_free(&r);
    snprintf(path, sizeof(path), "/v1/instances/%s/graph?format=svg", fx->declined_saga);
    r = get(path);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "image/svg+xml");
    assert_true(is_svg(&r));
    resp_free(&r);
    /* A completed order: every step done. */
    snprintf(path, sizeof(path), "/v1/instances/%s/graph", fx->ok_saga);
    r = get(path);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "<B>done ✓"));
    assert_null(strstr(r.body, "<B>undone"));
    resp_free(&r);
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
    resp_t r = request("POST", "/v1/orders",
                       "{\"order_id\":\"o bad\",\"customer_id\":\"c\",\"items\":[],\"x\":1}", NULL);
    assert_problem(&r, 400, "invalid-input");
    const cJSON *e = item(r.json, "errors");
    assert_true(cJSON_GetArraySize(e) >= 4);
    bool saw_pattern = false;
    cJSON_ArrayForEach(e, item(r.json, "errors"))
    {
        assert_non_null(str(e, "path"));
        assert_non_null(str(e, "message"));
        assert_non_null(str(e, "keyword"));
        saw_pattern = saw_pattern || str_is(e, "path", "/order_id");
    }
    assert_true(saw_pattern);
    resp_free(&r);
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
    expect_str(item(r.json, "errors")->child, "path", "/reason");
    expect_str(item(r.json, "errors")->child->next, "path", "/extra");
    resp_free(&r);

    /* A sagad without the shop's workflows and services. */
    r = request_to(fx->base_bare, "POST", "/v1/orders", order_ok, SIZE_MAX, NULL);
    assert_problem(&r, 404, "workflow-not-found");
    resp_free(&r);
    r = request_to(fx->base_bare, "GET", "/v1/orders/o-api-ok", NULL, 0, NULL);
    assert_problem(&r, 404, "order-not-found");
    resp_free(&r);
    r = request_to(fx->base_bare, "POST", "/v1/orders/o-api-ok/cancel", "{}", SIZE_MAX, NULL);
    assert_problem(&r, 404, "order-not-found");
    resp_free(&r);
    r = request_to(fx->base_bare, "GET", "/v1/events", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 0);
    assert_true(cJSON_IsNull(item(r.json, "next_after")));
    resp_free(&r);
}

/* ---- events ---- */

static void test_events(void **state)
{
    (void)state;
    char path[256];
    /* Everything of the completed order's saga, in log order. */
    snprintf(path, sizeof(path), "/v1/events?correlation_id=%s&limit=1000", fx->ok_saga);
    resp_t all = get(path);
    assert_int_equal(all.status, 200);
    assert_string_equal(all.ctype, "application/json");
    assert_true(cJSON_IsNull(item(all.json, "next_after")));
    int n = cJSON_GetArraySize(item(all.json, "items"));
    assert_true(n >= 4);
    bool created = false, completed = false;
    double last = 0;
    const cJSON *ev;
    cJSON_ArrayForEach(ev, item(all.json, "items"))
    {
        expect_str(ev, "correlation_id", fx->ok_saga);
        assert_true(num(ev, "id") > last);
        last = num(ev, "id");
        assert_non_null(str(ev, "event_id"));
        assert_non_null(str(ev, "source"));
        assert_non_null(str(ev, "time"));
        assert_true(cJSON_IsObject(item(ev, "data")));
        if (!str_is(ev, "source", "sagad")) {
            /* A service's event is stored whole: envelope and business fields. */
            expect_str(item(ev, "data"), "event_id", str(ev, "event_id"));
        }
        created = created || (str_is(ev, "type", "order.created") && str_is(ev, "source", "order"));
        completed =
            completed || (str_is(ev, "type", "order.completed") && str_is(ev, "source", "sagad") &&
                          str_is(item(ev, "data"), "order_id", "o-api-ok"));
    }
    assert_true(created);
    assert_true(completed);

    /* The same, two at a time: pages follow next_after until it is null. */
    const cJSON *want = item(all.json, "items")->child;
    long after = 0;
    int pages = 0, seen = 0;
    for (;;) {
        snprintf(path, sizeof(path), "/v1/events?correlation_id=%s&limit=2&after=%ld", fx->ok_saga,
                 after);
        resp_t page = get(path);
        assert_int_equal(page.status, 200);
        pages++;
        cJSON_ArrayForEach(ev, item(page.json, "items"))
        {
            assert_non_null(want);
            assert_int_equal((long)num(ev, "id"), (long)num(want, "id"));
            want = want->next;
            seen++;
        }
        const cJSON *next = item(page.json, "next_after");
        bool more = cJSON_IsNumber(next);
        after = more ? (long)next->valuedouble : after;
        resp_free(&page);
        if (!more) {
            break;
        }
        assert_true(pages < 100);
    }
    assert_int_equal(seen, n);
    assert_int_equal(pages, (n + 1) / 2); /* the last full page already says "no more" */
    resp_free(&all);

    /* By type across sagas; by type and saga. */
    resp_t r = get("/v1/events?type=payment.refunded");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 1);
    expect_str(item(r.json, "items")->child, "source", "payment");
    expect_str(item(item(r.json, "items")->child, "data"), "order_id", "o-api-ok");
    resp_free(&r);
    r = get("/v1/events?type=order.created&limit=1000");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 2); /* ok and declined */
    cJSON_ArrayForEach(ev, item(r.json, "items"))
    {
        expect_str(ev, "type", "order.created");
    }
    resp_free(&r);
    snprintf(path, sizeof(path), "/v1/events?type=payment.failed&correlation_id=%s",
             fx->declined_saga);
    r = get(path);
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 1);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v1/events?type=payment.failed&correlation_id=%s", fx->ok_saga);
    r = get(path);
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 0);
    resp_free(&r);

    static const char *const bad[] = {
        "/v1/events?limit=0",         "/v1/events?limit=1001", "/v1/events?limit=x",
        "/v1/events?after=-1",        "/v1/events?after=1e3",  "/v1/events?type=",
        "/v1/events?correlation_id=",
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        expect_problem("GET", bad[i], NULL, NULL, 400, "bad-parameter");
    }
    char longtype[200];
    snprintf(longtype, sizeof(longtype), "/v1/events?type=%0129d", 0);
    expect_problem("GET", longtype, NULL, NULL, 400, "bad-parameter");
}

/* ---- dead letters ---- */

static void put_dead_letter(const char *queue, int64_t offset, const char *instance)
{
    sg_store_t *w = NULL;
    assert_int_equal(sg_store_open(fx->db, NULL, &w, NULL, 0), SG_OK);
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
    resp_t r = get("/v1/dlq");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 0);
    assert_true(cJSON_IsNull(item(r.json, "next_after")));
    resp_free(&r);
    expect_problem("POST", "/v1/dlq/1/requeue", NULL, NULL, 404, "dlq-not-found");
    expect_problem("POST", "/v1/dlq/1/discard", NULL, NULL, 404, "dlq-not-found");

    /* Rows as the kafka transport's reader leaves them. */
    put_dead_letter("payment", 10, "01JDX2AAAAAAAAAAAAAAAAAAAA");
    put_dead_letter("test", 11, NULL);
    put_dead_letter("payment", 12, "01JDX2BBBBBBBBBBBBBBBBBBBB");
    r = get("/v1/dlq");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 3);
    const cJSON *first = item(r.json, "items")->child;
    long id1 = (long)num(first, "id");
    expect_str(first, "status", "new");
    expect_str(first, "queue", "payment");
    expect_str(first, "topic", "saga.tasks.payment.dlq");
    expect_str(first, "instance_id", "01JDX2AAAAAAAAAAAAAAAAAAAA");
    expect_str(first, "step_id", "charge_payment");
    expect_str(first, "reason", "started 3 times without finishing");
    expect_str(first, "received_at", "2025-11-26T04:11:07.123Z");
    expect_str(item(first, "headers"), "sagad.dlq.starts", "3");
    assert_int_equal((int)num(item(first, "input"), "amount"), 12);
    assert_int_equal((int)num(first, "attempt"), 3);
    assert_int_equal((int)num(first, "offset"), 10);
    assert_int_equal((int)num(first, "task_bytes"), 3);
    const cJSON *poison = first->next;
    assert_true(cJSON_IsNull(item(poison, "instance_id")));
    assert_true(cJSON_IsNull(item(poison, "attempt")));
    assert_true(cJSON_IsNull(item(poison, "input")));
    resp_free(&r);

    r = get("/v1/dlq?queue=payment&limit=1");
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 1);
    assert_int_equal((long)num(r.json, "next_after"), id1);
    resp_free(&r);
    char path[128];
    snprintf(path, sizeof(path), "/v1/dlq?queue=payment&limit=1&after=%ld", id1);
    r = get(path);
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 1);
    expect_str(item(r.json, "items")->child, "instance_id", "01JDX2BBBBBBBBBBBBBBBBBBBB");
    assert_true(cJSON_IsNull(item(r.json, "next_after")));
    resp_free(&r);

    /* Discard is a status change; an embedded sagad cannot requeue. */
    snprintf(path, sizeof(path), "/v1/dlq/%ld/discard", id1);
    r = request("POST", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    expect_str(r.json, "status", "discarded");
    resp_free(&r);
    r = request("POST", path, "{}", NULL);
    assert_problem(&r, 409, "conflict");
    expect_str(r.json, "dlq_status", "discarded");
    resp_free(&r);
    snprintf(path, sizeof(path), "/v1/dlq/%ld/requeue", id1);
    r = request("POST", path, NULL, NULL);
    assert_problem(&r, 409, "conflict");
    assert_non_null(strstr(str(r.json, "detail"), "--transport kafka"));
    resp_free(&r);
    r = get("/v1/dlq?status=discarded");
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 1);
    assert_int_equal((long)num(item(r.json, "items")->child, "id"), id1);
    resp_free(&r);
    r = get("/v1/dlq?status=new&queue=test");
    assert_int_equal(cJSON_GetArraySize(item(r.json, "items")), 1);
    resp_free(&r);

    static const char *const bad[] = {
        "/v1/dlq?limit=0",   "/v1/dlq?limit=1001", "/v1/dlq?after=-1", "/v1/dlq?status=old",
        "/v1/dlq?queue=a.b", "/v1/dlq?queue=",     "/v1/dlq?status=",  "/v1/dlq?limit=x&after=1",
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        expect_problem("GET", bad[i], NULL, NULL, 400, "bad-parameter");
    }
    static const char *const unknown[] = {"/v1/dlq/0/discard", "/v1/dlq/-1/discard",
                                          "/v1/dlq/x/requeue", "/v1/dlq/99999999/requeue",
                                          "/v1/dlq/99999999999999999999/discard"};
    for (size_t i = 0; i < SG_ARRAY_LEN(unknown); i++) {
        expect_problem("POST", unknown[i], NULL, NULL, 404, "dlq-not-found");
    }
    r = get("/v1/dlq/1/requeue");
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "POST");
    resp_free(&r);
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
        cmocka_unit_test(test_dlq),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
