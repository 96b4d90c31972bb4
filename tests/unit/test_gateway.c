/*
 * Tests of the REST gateway over real HTTP: a driver with a temporary SQLite file and the
 * built-in `test` activities, the gateway on 127.0.0.1 with an ephemeral port, libcurl
 * as the client. Every route and every error the API promises (404, 405 with Allow, 413,
 * bad JSON, schema errors with their fields, idempotent replay, cancel/retry conflicts),
 * plus hostile requests that must never produce a 5xx. Completion is observed by polling
 * GET with a bounded number of tries.
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

#include "gateway/gateway.h"
#include "tests/support/gateway_harness.h"

#define MAX_BODY 4096
#define POLL_TRIES 1000
#define POLL_WAIT_MS 20

static gh_t *fx;

/* Completes, or compensates when the input says "fail": true. */
static const char ok_yaml[] =
    "saga: gw_ok\nversion: 1\ndescription: Gateway test saga.\n"
    "input:\n  schema:\n    type: object\n    required: [n]\n    additionalProperties: false\n"
    "    properties:\n      n: {type: integer, minimum: 1}\n      fail: {type: boolean}\n"
    "defaults: {timeout: 5s, retry: {max_attempts: 2, initial: 10ms}}\n"
    "steps:\n"
    "  - id: first\n    activity: test.echo\n    compensate: {activity: test.echo}\n"
    "  - id: second\n    activity: test.fail\n    retry: {max_attempts: 1}\n"
    "    compensate: none\n";

/* Sits in a one-hour wait after its first step: something to cancel. */
static const char wait_yaml[] = "saga: gw_wait\nversion: 1\n"
                                "steps:\n"
                                "  - id: first\n    activity: test.echo\n"
                                "    compensate: {activity: test.echo}\n"
                                "  - id: pause\n    wait: 1h\n";

/* Its compensation always fails: ends COMPENSATION_FAILED, something to retry. */
static const char stuck_yaml[] =
    "saga: gw_stuck\nversion: 1\n"
    "steps:\n"
    "  - id: a\n    activity: test.echo\n"
    "    compensate: {activity: test.fail, input: '{fail: true}', retry: {max_attempts: 1}}\n"
    "  - id: b\n    activity: test.fail\n    input: '{fail: true}'\n"
    "    retry: {max_attempts: 1}\n    compensate: none\n";

/* ---- HTTP client ---- */

/* One request. body_len GH_STRLEN means strlen(body); chunked sends it without length. */
static gh_resp_t request(const char *method, const char *path, const char *body, size_t body_len,
                         const char *header, bool chunked)
{
    const char *h[] = {header, NULL};
    return gh_request(fx->base, method, path, body, body_len, header != NULL ? h : NULL,
                      chunked ? GH_CHUNKED : 0);
}

static gh_resp_t get(const char *path)
{
    return gh_get(fx->base, path);
}

static gh_resp_t post(const char *path, const char *body)
{
    return request("POST", path, body, GH_STRLEN, NULL, false);
}

/* Asserts a problem document with this status, and that its type is set. */
static void assert_problem(const gh_resp_t *r, long status)
{
    gh_assert_problem(r, status, NULL, NULL);
}

/* One request that must be answered with a problem of this status. */
static void expect_problem(const char *method, const char *path, const char *body, long status)
{
    gh_resp_t r = request(method, path, body, GH_STRLEN, NULL, false);
    assert_problem(&r, status);
    gh_resp_free(&r);
}

/* Starts a saga and returns its id (static buffer per call site is the caller's). */
static void start_saga(const char *workflow, const char *input, char id[32])
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/workflows/%s/instances", workflow);
    gh_resp_t r = post(path, input);
    if (r.status != 201) {
        fail_msg("start %s: %ld %s", workflow, r.status, r.body ? r.body : "");
    }
    snprintf(id, 32, "%s", gh_str(r.json, "id"));
    gh_resp_free(&r);
}

static bool is_terminal(const char *s)
{
    return s != NULL && (strcmp(s, "COMPLETED") == 0 || strcmp(s, "COMPENSATED") == 0 ||
                         strcmp(s, "FAILED") == 0 || strcmp(s, "COMPENSATION_FAILED") == 0);
}

/* Polls GET /v1/instances/{id} until pred holds; returns the last document (owned). */
static cJSON *poll_until(const char *id, bool (*pred)(const cJSON *doc, const void *arg),
                         const void *arg)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/instances/%s", id);
    return gh_poll(fx->base, path, pred, arg, POLL_TRIES, POLL_WAIT_MS);
}

static bool finished(const cJSON *doc, const void *arg)
{
    (void)arg;
    return is_terminal(gh_str(doc, "status"));
}

static cJSON *wait_finished(const char *id)
{
    return poll_until(id, finished, NULL);
}

static const cJSON *step_of(const cJSON *doc, const char *step_id)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "steps"))
    {
        if (gh_str(s, "id") != NULL && strcmp(gh_str(s, "id"), step_id) == 0) {
            return s;
        }
    }
    fail_msg("no step %s", step_id);
    return NULL;
}

/* ---- fixture ---- */

static int group_setup(void **state)
{
    (void)state;
    static const char *const workflows[] = {"ok.yaml",    ok_yaml,    "wait.yaml", wait_yaml,
                                            "stuck.yaml", stuck_yaml, NULL};
    fx = gh_new(&(gh_opts_t){.name = "gw",
                             .workflows = workflows,
                             .test_activities = true,
                             .gateway = {.max_body = MAX_BODY}});
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return gh_free(fx) == 0 ? 0 : -1;
}

/* ---- routing and errors ---- */

static void test_healthz_and_routing(void **state)
{
    (void)state;
    gh_resp_t r = get("/healthz");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json");
    assert_string_equal(gh_str(r.json, "status"), "ok");
    gh_resp_free(&r);

    r = request("HEAD", "/healthz", NULL, 0, NULL, false);
    assert_int_equal(r.status, 200);
    assert_null(r.body);
    gh_resp_free(&r);

    const char *missing[] = {"/",
                             "/nope",
                             "/v1",
                             "/v1/workflows/",
                             "/v1//instances",
                             "/v1/instances/a/b/c/d/e/f/g/h/i/j",
                             "/healthz/x"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        expect_problem("GET", missing[i], NULL, 404);
    }

    r = post("/healthz", "{}");
    assert_problem(&r, 405);
    assert_string_equal(r.allow, "GET, HEAD");
    gh_resp_free(&r);
    r = request("DELETE", "/v1/instances/01ABC", NULL, 0, NULL, false);
    assert_problem(&r, 405);
    assert_string_equal(r.allow, "GET, HEAD");
    gh_resp_free(&r);
    r = get("/v1/instances/01ABC/cancel");
    assert_problem(&r, 405);
    assert_string_equal(r.allow, "POST");
    gh_resp_free(&r);
    r = request("PUT", "/v1/workflows/gw_ok/instances", "{}", GH_STRLEN, NULL, false);
    assert_problem(&r, 405);
    assert_string_equal(r.allow, "POST");
    gh_resp_free(&r);
}

static void test_workflows(void **state)
{
    (void)state;
    gh_resp_t r = get("/v1/workflows");
    assert_int_equal(r.status, 200);
    assert_true(cJSON_IsArray(r.json));
    assert_int_equal(cJSON_GetArraySize(r.json), 3);
    /* Sorted by name: gw_ok, gw_stuck, gw_wait. */
    const cJSON *w = cJSON_GetArrayItem(r.json, 0);
    assert_string_equal(gh_str(w, "name"), "gw_ok");
    assert_int_equal((int)gh_num(w, "version"), 1);
    assert_int_equal(strlen(gh_str(w, "sha256")), 64);
    assert_int_equal((int)gh_num(w, "steps"), 2);
    assert_string_equal(gh_str(cJSON_GetArrayItem(r.json, 2), "name"), "gw_wait");
    gh_resp_free(&r);

    r = get("/v1/workflows/gw_ok");
    assert_int_equal(r.status, 200);
    assert_string_equal(gh_str(r.json, "name"), "gw_ok");
    assert_string_equal(gh_str(r.json, "description"), "Gateway test saga.");
    assert_string_equal(gh_str(r.json, "source"), ok_yaml);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(r.json, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 2);
    const cJSON *s0 = cJSON_GetArrayItem(steps, 0), *s1 = cJSON_GetArrayItem(steps, 1);
    assert_string_equal(gh_str(s0, "id"), "first");
    assert_string_equal(gh_str(s0, "kind"), "activity");
    assert_string_equal(gh_str(s0, "class"), "compensatable");
    assert_string_equal(gh_str(s0, "activity"), "test.echo");
    assert_string_equal(gh_str(s0, "compensation"), "test.echo");
    assert_string_equal(gh_str(s1, "activity"), "test.fail");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s1, "compensation")));
    assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r.json, "input_schema")));
    gh_resp_free(&r);

    r = get("/v1/workflows/gw_wait");
    assert_int_equal(r.status, 200);
    const cJSON *pause = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r.json, "steps"), 1);
    assert_string_equal(gh_str(pause, "kind"), "wait");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(pause, "activity")));
    gh_resp_free(&r);

    r = get("/v1/workflows/gw_ok?version=1");
    assert_int_equal(r.status, 200);
    gh_resp_free(&r);
    expect_problem("GET", "/v1/workflows/gw_ok?version=7", NULL, 404);
    const char *bad_versions[] = {"abc", "0", "-1", "1x", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_versions) / sizeof(bad_versions[0]); i++) {
        char path[96];
        snprintf(path, sizeof(path), "/v1/workflows/gw_ok?version=%s", bad_versions[i]);
        expect_problem("GET", path, NULL, 400);
    }
    expect_problem("GET", "/v1/workflows/nope", NULL, 404);
}

/* ---- starting and reading instances ---- */

static void test_start_and_complete(void **state)
{
    (void)state;
    gh_resp_t r = post("/v1/workflows/gw_ok/instances", "{\"n\": 3}");
    assert_int_equal(r.status, 201);
    assert_string_equal(r.ctype, "application/json");
    char id[32];
    snprintf(id, sizeof(id), "%s", gh_str(r.json, "id"));
    char loc[96];
    snprintf(loc, sizeof(loc), "/v1/instances/%s", id);
    assert_string_equal(r.location, loc);
    assert_string_equal(gh_str(r.json, "status"), "RUNNING");
    assert_string_equal(gh_str(r.json, "workflow"), "gw_ok");
    assert_int_equal((int)gh_num(r.json, "version"), 1);
    gh_resp_free(&r);

    cJSON *doc = wait_finished(id);
    assert_string_equal(gh_str(doc, "status"), "COMPLETED");
    assert_string_equal(gh_str(doc, "id"), id);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "reason")));
    assert_int_equal((int)gh_num(cJSON_GetObjectItemCaseSensitive(doc, "input"), "n"), 3);
    /* RFC 3339 in UTC with milliseconds. */
    const char *created = gh_str(doc, "created_at");
    assert_non_null(created);
    assert_int_equal(strlen(created), 24);
    assert_int_equal(created[10], 'T');
    assert_int_equal(created[23], 'Z');
    assert_non_null(gh_str(doc, "updated_at"));
    const cJSON *first = step_of(doc, "first");
    assert_string_equal(gh_str(first, "status"), "done");
    assert_string_equal(gh_str(first, "kind"), "activity");
    assert_string_equal(gh_str(first, "compensation"), "none");
    assert_int_equal((int)gh_num(first, "attempt"), 1);
    assert_int_equal((int)gh_num(cJSON_GetObjectItemCaseSensitive(first, "output"), "n"), 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(first, "error")));
    const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(doc, "attempts");
    assert_int_equal(cJSON_GetArraySize(attempts), 2);
    const cJSON *a0 = cJSON_GetArrayItem(attempts, 0);
    assert_string_equal(gh_str(a0, "step"), "first");
    assert_string_equal(gh_str(a0, "status"), "ok");
    assert_string_equal(gh_str(a0, "activity"), "test.echo");
    assert_int_equal((int)gh_num(a0, "attempt"), 1);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a0, "compensation")));
    cJSON_Delete(doc);

    char path[128];
    snprintf(path, sizeof(path), "/v1/instances/%s/history", id);
    r = get(path);
    assert_int_equal(r.status, 200);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
    assert_true(cJSON_GetArraySize(items) >= 4);
    const cJSON *h0 = cJSON_GetArrayItem(items, 0);
    assert_int_equal((int)gh_num(h0, "seq"), 1);
    assert_string_equal(gh_str(h0, "type"), "saga_started");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(h0, "step")));
    assert_string_equal(gh_str(cJSON_GetObjectItemCaseSensitive(h0, "detail"), "workflow"),
                        "gw_ok");
    double prev = 0;
    bool saw_step = false, saw_done = false;
    const cJSON *h;
    cJSON_ArrayForEach(h, items)
    {
        assert_true(gh_num(h, "seq") > prev);
        prev = gh_num(h, "seq");
        assert_non_null(gh_str(h, "time"));
        saw_step |= gh_str(h, "step") != NULL && strcmp(gh_str(h, "step"), "first") == 0;
        const cJSON *detail = cJSON_GetObjectItemCaseSensitive(h, "detail");
        saw_done |= strcmp(gh_str(h, "type"), "status_changed") == 0 &&
                    gh_str(detail, "to") != NULL && strcmp(gh_str(detail, "to"), "COMPLETED") == 0;
    }
    assert_true(saw_step);
    assert_true(saw_done);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r.json, "next_after")));
    gh_resp_free(&r);

    /* History pages. */
    snprintf(path, sizeof(path), "/v1/instances/%s/history?after=1&limit=2", id);
    r = get(path);
    assert_int_equal(r.status, 200);
    items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
    assert_int_equal(cJSON_GetArraySize(items), 2);
    assert_int_equal((int)gh_num(cJSON_GetArrayItem(items, 0), "seq"), 2);
    assert_int_equal((int)gh_num(r.json, "next_after"), 3);
    gh_resp_free(&r);
    static const char *const bad[][2] = {
        {"limit=0", "limit"},  {"limit=1001", "limit"}, {"limit=", "limit"},
        {"after=-1", "after"}, {"after=x", "after"},    {"after=1&limit=x", "limit"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/v1/instances/%s/history?%s", id, bad[i][0]);
        gh_expect_bad_param(fx->base, path, bad[i][1]);
    }
    snprintf(path, sizeof(path), "/v1/instances/%s/history?limit=1000&after=0", id);
    r = get(path);
    assert_int_equal(r.status, 200);
    gh_resp_free(&r);
}

static void test_start_compensated(void **state)
{
    (void)state;
    char id[32];
    start_saga("gw_ok", "{\"n\": 1, \"fail\": true}", id);
    cJSON *doc = wait_finished(id);
    assert_string_equal(gh_str(doc, "status"), "COMPENSATED");
    assert_string_equal(gh_str(doc, "reason"), "step_failed");
    const cJSON *first = step_of(doc, "first"), *second = step_of(doc, "second");
    assert_string_equal(gh_str(first, "compensation"), "compensated");
    assert_string_equal(gh_str(second, "status"), "failed");
    assert_string_equal(gh_str(cJSON_GetObjectItemCaseSensitive(second, "error"), "code"),
                        "test.failed");
    bool comp_attempt = false;
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(doc, "attempts"))
    {
        comp_attempt |= cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "compensation"));
    }
    assert_true(comp_attempt);
    cJSON_Delete(doc);
}

static void assert_has_error(const cJSON *problem, const char *path)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(problem, "errors"))
    {
        if (gh_str(e, "path") != NULL && strcmp(gh_str(e, "path"), path) == 0) {
            assert_non_null(gh_str(e, "message"));
            return;
        }
    }
    fail_msg("no error at %s", path);
}

static void test_schema_errors(void **state)
{
    (void)state;
    gh_resp_t r = post("/v1/workflows/gw_ok/instances", "{\"n\": 0, \"extra\": 1, \"fail\": 3}");
    assert_problem(&r, 400);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "errors")), 3);
    assert_has_error(r.json, "/n");
    assert_has_error(r.json, "/extra");
    assert_has_error(r.json, "/fail");
    gh_resp_free(&r);

    r = post("/v1/workflows/gw_ok/instances", "{}");
    assert_problem(&r, 400);
    assert_has_error(r.json, "/n"); /* a missing required member names its own path */
    gh_resp_free(&r);
}

static void test_bad_json(void **state)
{
    (void)state;
    const char *bodies[] = {"{",    "",           "[1]",     "\"text\"",   "42",      "null",
                            "{} x", "{\"n\":1}}", "{'n':1}", "{\"n\":1,}", "\xff\xfe"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        gh_resp_t r = post("/v1/workflows/gw_ok/instances", bodies[i]);
        assert_problem(&r, 400);
        const cJSON *errors = cJSON_GetObjectItemCaseSensitive(r.json, "errors");
        assert_int_equal(cJSON_GetArraySize(errors), 1);
        assert_string_equal(gh_str(cJSON_GetArrayItem(errors, 0), "path"), "");
        gh_resp_free(&r);
    }
    /* A NUL byte would cut a C string short: refused. */
    gh_resp_t r =
        request("POST", "/v1/workflows/gw_ok/instances", "{\"n\":1}\0{}", 10, NULL, false);
    assert_problem(&r, 400);
    gh_resp_free(&r);
    /* Deep nesting within the size limit. */
    char deep[MAX_BODY];
    memset(deep, '[', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    expect_problem("POST", "/v1/workflows/gw_ok/instances", deep, 400);
}

static void test_body_too_large(void **state)
{
    (void)state;
    size_t len = MAX_BODY * 3;
    char *big = malloc(len + 1);
    assert_non_null(big);
    memset(big, ' ', len);
    big[0] = '{';
    big[len - 1] = '}';
    big[len] = '\0';
    expect_problem("POST", "/v1/workflows/gw_ok/instances", big, 413);
    /* Without Content-Length the body is read up to the limit, then refused. */
    gh_resp_t r = request("POST", "/v1/workflows/gw_ok/instances", big, len, NULL, true);
    assert_problem(&r, 413);
    gh_resp_free(&r);
    free(big);
    /* Exactly at the limit is fine (it is just not valid input). */
    char at[MAX_BODY + 1];
    memset(at, ' ', MAX_BODY);
    at[0] = '{';
    at[MAX_BODY - 1] = '}';
    at[MAX_BODY] = '\0';
    r = post("/v1/workflows/gw_ok/instances", at);
    assert_problem(&r, 400);
    assert_has_error(r.json, "/n");
    gh_resp_free(&r);
    r = get("/healthz");
    assert_int_equal(r.status, 200);
    gh_resp_free(&r);
}

static void test_idempotent_start(void **state)
{
    (void)state;
    const char *path = "/v1/workflows/gw_ok/instances";
    gh_resp_t a =
        request("POST", path, "{\"n\": 5}", GH_STRLEN, "Idempotency-Key: order-77", false);
    assert_int_equal(a.status, 201);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a.json, "created")));
    gh_resp_t b =
        request("POST", path, "{\"n\": 5}", GH_STRLEN, "Idempotency-Key: order-77", false);
    assert_int_equal(b.status, 200);
    assert_string_equal(gh_str(a.json, "id"), gh_str(b.json, "id"));
    assert_string_equal(a.location, b.location);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b.json, "created")));
    assert_non_null(gh_str(b.json, "status"));
    gh_resp_t c =
        request("POST", path, "{\"n\": 5}", GH_STRLEN, "Idempotency-Key: order-78", false);
    assert_int_equal(c.status, 201);
    assert_string_not_equal(gh_str(a.json, "id"), gh_str(c.json, "id"));
    cJSON_Delete(wait_finished(gh_str(a.json, "id")));
    cJSON_Delete(wait_finished(gh_str(c.json, "id")));
    gh_resp_free(&a);
    gh_resp_free(&b);
    gh_resp_free(&c);

    char long_key[300] = "Idempotency-Key: ";
    memset(long_key + strlen(long_key), 'k', 250);
    long_key[sizeof(long_key) - 1] = '\0';
    const char *bad[] = {"Idempotency-Key: two words", long_key};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gh_resp_t r = request("POST", path, "{\"n\": 5}", GH_STRLEN, bad[i], false);
        assert_problem(&r, 400);
        gh_resp_free(&r);
    }
}

static void test_unknown_workflow_and_instance(void **state)
{
    (void)state;
    expect_problem("POST", "/v1/workflows/nope/instances", "{}", 404);
    expect_problem("POST", "/v1/workflows/gw_ok/instances?version=2", "{\"n\": 1}", 404);
    expect_problem("POST", "/v1/workflows/gw_ok/instances?version=x", "{\"n\": 1}", 400);
    const char *paths[] = {"/v1/instances/01NOPE", "/v1/instances/01NOPE/history",
                           "/v1/instances/a.b", "/v1/instances/..",
                           "/v1/instances/0123456789012345678901234567890123456789"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        expect_problem("GET", paths[i], NULL, 404);
    }
    expect_problem("POST", "/v1/instances/01NOPE/cancel", "", 404);
    expect_problem("POST", "/v1/instances/01NOPE/retry", "", 404);
}

/* ---- cancel and retry ---- */

static void test_cancel_and_retry_conflicts(void **state)
{
    (void)state;
    char id[32], path[128];
    start_saga("gw_ok", "{\"n\": 2}", id);
    cJSON_Delete(wait_finished(id));
    snprintf(path, sizeof(path), "/v1/instances/%s/cancel", id);
    gh_resp_t r = post(path, "");
    assert_problem(&r, 409);
    assert_string_equal(gh_str(r.json, "instance_status"), "COMPLETED");
    gh_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/instances/%s/retry", id);
    r = post(path, "");
    assert_problem(&r, 409);
    assert_string_equal(gh_str(r.json, "instance_status"), "COMPLETED");
    gh_resp_free(&r);
}

static bool waiting(const cJSON *doc, const void *arg)
{
    (void)arg;
    const cJSON *pause = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "steps"), 1);
    return gh_str(pause, "status") != NULL && strcmp(gh_str(pause, "status"), "waiting") == 0;
}

static void test_cancel(void **state)
{
    (void)state;
    char id[32], path[128];
    start_saga("gw_wait", "{}", id);
    cJSON_Delete(poll_until(id, waiting, NULL));
    snprintf(path, sizeof(path), "/v1/instances/%s/retry", id);
    gh_resp_t r = post(path, "");
    assert_problem(&r, 409); /* running: nothing to retry */
    assert_string_equal(gh_str(r.json, "instance_status"), "RUNNING");
    gh_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/instances/%s/cancel", id);
    r = post(path, "");
    assert_int_equal(r.status, 202);
    assert_string_equal(gh_str(r.json, "id"), id);
    assert_non_null(gh_str(r.json, "status"));
    gh_resp_free(&r);
    cJSON *doc = wait_finished(id);
    assert_string_equal(gh_str(doc, "status"), "COMPENSATED");
    assert_string_equal(gh_str(doc, "reason"), "cancelled");
    assert_string_equal(gh_str(step_of(doc, "first"), "compensation"), "compensated");
    cJSON_Delete(doc);
}

static bool compensation_retried(const cJSON *doc, const void *arg)
{
    const double *before = arg;
    return is_terminal(gh_str(doc, "status")) &&
           gh_num(step_of(doc, "a"), "compensation_attempt") > *before;
}

static void test_retry(void **state)
{
    (void)state;
    char id[32], path[128];
    start_saga("gw_stuck", "{}", id);
    cJSON *doc = wait_finished(id);
    assert_string_equal(gh_str(doc, "status"), "COMPENSATION_FAILED");
    double before = gh_num(step_of(doc, "a"), "compensation_attempt");
    assert_true(before >= 1);
    cJSON_Delete(doc);
    snprintf(path, sizeof(path), "/v1/instances/%s/retry", id);
    gh_resp_t r = post(path, "");
    assert_int_equal(r.status, 202);
    assert_string_equal(gh_str(r.json, "id"), id);
    gh_resp_free(&r);
    /* The compensation fails again, after one more attempt. */
    doc = poll_until(id, compensation_retried, &before);
    assert_string_equal(gh_str(doc, "status"), "COMPENSATION_FAILED");
    cJSON_Delete(doc);
}

/* ---- listing ---- */

static void test_list_and_pages(void **state)
{
    (void)state;
    char ids[3][32];
    for (int i = 0; i < 3; i++) {
        start_saga("gw_ok", "{\"n\": 9}", ids[i]);
    }
    for (int i = 0; i < 3; i++) {
        cJSON_Delete(wait_finished(ids[i]));
    }
    gh_resp_t r = get("/v1/instances?workflow=gw_ok");
    assert_int_equal(r.status, 200);
    int total = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "items"));
    assert_true(total >= 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r.json, "next_page_token")));
    gh_resp_free(&r);

    /* Page by one: every instance once, in creation order. */
    char path[256] = "/v1/instances?workflow=gw_ok&limit=1";
    char prev_created[32] = "";
    int seen = 0, found = 0;
    for (int page = 0; page <= total; page++) {
        r = get(path);
        assert_int_equal(r.status, 200);
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
        assert_int_equal(cJSON_GetArraySize(items), 1);
        const cJSON *it = cJSON_GetArrayItem(items, 0);
        assert_string_equal(gh_str(it, "workflow"), "gw_ok");
        assert_true(strcmp(gh_str(it, "created_at"), prev_created) >= 0);
        snprintf(prev_created, sizeof(prev_created), "%s", gh_str(it, "created_at"));
        for (int i = 0; i < 3; i++) {
            found += strcmp(gh_str(it, "id"), ids[i]) == 0;
        }
        seen++;
        const char *next = gh_str(r.json, "next_page_token");
        if (next == NULL) {
            gh_resp_free(&r);
            break;
        }
        snprintf(path, sizeof(path), "/v1/instances?workflow=gw_ok&limit=1&page_token=%s", next);
        gh_resp_free(&r);
    }
    assert_int_equal(seen, total);
    assert_int_equal(found, 3);

    r = get("/v1/instances?status=COMPLETED&limit=500");
    assert_int_equal(r.status, 200);
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(r.json, "items"))
    {
        assert_string_equal(gh_str(it, "status"), "COMPLETED");
        assert_non_null(gh_str(it, "id"));
        assert_non_null(gh_str(it, "created_at"));
    }
    gh_resp_free(&r);
    r = get("/v1/instances?workflow=nope");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "items")), 0);
    gh_resp_free(&r);

    /* Each refusal names its parameter. */
    static const char *const bad[][2] = {
        {"?status=DONE", "status"},
        {"?status=", "status"},
        {"?limit=0", "limit"},
        {"?limit=501", "limit"},
        {"?limit=ten", "limit"},
        {"?page_token=%21%21", "page_token"},
        {"?page_token=", "page_token"},
        {"?page_token=AAAA", "page_token"},
        {"?page_token=MTIz", "page_token"},
        {"?workflow=", "workflow"},
        {"?status=running", "status"},
        {"?workflow=&limit=0", "workflow"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/v1/instances%s", bad[i][0]);
        gh_expect_bad_param(fx->base, path, bad[i][1]);
    }
    snprintf(path, sizeof(path), "/v1/instances?workflow=%0129d", 0);
    gh_expect_bad_param(fx->base, path, "workflow");
    snprintf(path, sizeof(path), "/v1/instances?workflow=%0128d", 0);
    r = get(path);
    assert_int_equal(r.status, 200);
    gh_resp_free(&r);
}

/* ---- the listen address and hostile input ---- */

static void test_listen_address(void **state)
{
    (void)state;
    const char *refused[] = {"0.0.0.0:0",  "10.1.2.3:0",      "192.168.0.1:8080",
                             "[::]:0",     "example.com:80",  "127.0.0.1",
                             "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:-1",
                             ":8080",      "[::1:0"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        sg_gateway_opts_t o = {.listen = refused[i], .db_path = fx->db, .driver = fx->d};
        sg_gateway_t *g = (sg_gateway_t *)1;
        char err[512] = "";
        assert_int_equal(sg_gateway_start(&o, &g, err, sizeof(err)), SG_ERR_INVALID);
        assert_null(g);
        assert_true(err[0] != '\0');
    }
    sg_gateway_opts_t o = {.listen = "0.0.0.0:0", .db_path = fx->db, .driver = fx->d};
    sg_gateway_t *g = NULL;
    char err[512] = "";
    sg_gateway_start(&o, &g, err, sizeof(err));
    assert_non_null(strstr(err, "loopback"));

    o.listen = "localhost:0";
    assert_int_equal(sg_gateway_start(&o, &g, err, sizeof(err)), SG_OK);
    assert_int_not_equal(sg_gateway_port(g), sg_gateway_port(fx->gw));
    sg_gateway_stop(g);
    sg_gateway_stop(NULL);

    /* Taken port. */
    char taken[32];
    snprintf(taken, sizeof(taken), "127.0.0.1:%u", sg_gateway_port(fx->gw));
    o.listen = taken;
    g = NULL;
    assert_int_equal(sg_gateway_start(&o, &g, err, sizeof(err)), SG_ERR_IO);
    assert_null(g);
}

static void test_hostile_requests(void **state)
{
    (void)state;
    const char *gets[] = {
        "/v1/instances?limit=99999999999999999999999999",
        "/v1/instances?limit=-5",
        "/v1/instances?page_token="
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/v1/instances/%00",
        "/v1/instances/%2e%2e%2f%2e%2e",
        "/v1/workflows/%ff%fe",
        "/v1/workflows/%00",
        "/v1/instances/x/history?after=-1",
        "/v1/instances/x/history?after=abc&limit=%00",
        "/v1/instances?workflow=%27%3B%20DROP%20TABLE%20instances%3B--",
        "/v1/instances?status=RUNNING&status=COMPLETED",
        "/%%%",
        "/v1/workflows?version=1&version=2",
    };
    for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
        gh_resp_t r = get(gets[i]);
        if (r.status < 200 || r.status >= 500) {
            fail_msg("GET %s -> %ld", gets[i], r.status);
        }
        gh_resp_free(&r);
    }
    const char *methods[] = {"BREW", "OPTIONS", "PATCH", "TRACE"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        gh_resp_t r = request(methods[i], "/v1/instances", NULL, 0, NULL, false);
        assert_true(r.status == 405 || r.status == 404 || r.status == 501);
        gh_resp_free(&r);
    }
    /* A JSON object with many members and long strings, inside the limit. */
    char body[MAX_BODY];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"n\":1");
    for (int i = 0; n + 32 < sizeof(body); i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n, ",\"k%d\":\"\\u0000\\ud800\"", i);
    }
    snprintf(body + n, sizeof(body) - n, "}");
    gh_resp_t r = post("/v1/workflows/gw_ok/instances", body);
    assert_problem(&r, 400); /* additionalProperties: false */
    gh_resp_free(&r);
    r = get("/healthz");
    assert_int_equal(r.status, 200);
    gh_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_and_routing),
        cmocka_unit_test(test_workflows),
        cmocka_unit_test(test_start_and_complete),
        cmocka_unit_test(test_start_compensated),
        cmocka_unit_test(test_schema_errors),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_idempotent_start),
        cmocka_unit_test(test_unknown_workflow_and_instance),
        cmocka_unit_test(test_cancel_and_retry_conflicts),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_retry),
        cmocka_unit_test(test_list_and_pages),
        cmocka_unit_test(test_listen_address),
        cmocka_unit_test(test_hostile_requests),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
