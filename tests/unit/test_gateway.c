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
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gateway/gateway.h"
#include "orchestrator/log/log.h"

#define MAX_BODY 4096
#define POLL_TRIES 1000
#define POLL_WAIT_MS 20

typedef struct {
    char dir[64];
    char db[128];
    char wf[128];
    sg_driver_t *d;
    sg_gateway_t *gw;
    char base[64];
} fx_t;

static fx_t *fx;

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
        while (len > 0 && (*v == ' ')) {
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

typedef struct {
    const char *data;
    size_t len, off;
} upload_t;

static size_t on_read(char *buf, size_t size, size_t n, void *ctx)
{
    upload_t *u = ctx;
    size_t take = u->len - u->off < size * n ? u->len - u->off : size * n;
    memcpy(buf, u->data + u->off, take);
    u->off += take;
    return take;
}

/* One request. body_len SIZE_MAX means strlen(body); chunked sends it without length. */
static resp_t request(const char *method, const char *path, const char *body, size_t body_len,
                      const char *header, bool chunked)
{
    resp_t r = {0};
    char url[512];
    snprintf(url, sizeof(url), "%s%s", fx->base, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    if (header != NULL) {
        hdrs = curl_slist_append(hdrs, header);
    }
    upload_t up = {0};
    if (body != NULL) {
        size_t len = body_len == SIZE_MAX ? strlen(body) : body_len;
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        if (chunked) {
            up = (upload_t){.data = body, .len = len};
            hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
            curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(c, CURLOPT_READDATA, &up);
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        }
    }
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
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

static resp_t get(const char *path)
{
    return request("GET", path, NULL, 0, NULL, false);
}

static resp_t post(const char *path, const char *body)
{
    return request("POST", path, body, SIZE_MAX, NULL, false);
}

static void resp_free(resp_t *r)
{
    cJSON_Delete(r->json);
    free(r->body);
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Asserts a problem document with this status, and that its type is set. */
static void assert_problem(const resp_t *r, long status)
{
    if (r->status != status) {
        fail_msg("expected %ld, got %ld: %s", status, r->status, r->body ? r->body : "");
    }
    assert_string_equal(r->ctype, "application/problem+json");
    assert_non_null(r->json);
    assert_int_equal((long)num(r->json, "status"), status);
    assert_non_null(str(r->json, "type"));
    assert_non_null(str(r->json, "title"));
    assert_non_null(str(r->json, "detail"));
}

/* One request that must be answered with a problem of this status. */
static void expect_problem(const char *method, const char *path, const char *body, long status)
{
    resp_t r = request(method, path, body, SIZE_MAX, NULL, false);
    assert_problem(&r, status);
    resp_free(&r);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts a saga and returns its id (static buffer per call site is the caller's). */
static void start_saga(const char *workflow, const char *input, char id[32])
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/workflows/%s/instances", workflow);
    resp_t r = post(path, input);
    if (r.status != 201) {
        fail_msg("start %s: %ld %s", workflow, r.status, r.body ? r.body : "");
    }
    snprintf(id, 32, "%s", str(r.json, "id"));
    resp_free(&r);
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
    char path[96];
    snprintf(path, sizeof(path), "/v1/instances/%s", id);
    for (int i = 0; i < POLL_TRIES; i++) {
        resp_t r = get(path);
        assert_int_equal(r.status, 200);
        if (pred(r.json, arg)) {
            cJSON *doc = r.json;
            r.json = NULL;
            resp_free(&r);
            return doc;
        }
        resp_free(&r);
        sleep_ms(POLL_WAIT_MS);
    }
    fail_msg("instance %s did not reach the expected state", id);
    return NULL;
}

static bool finished(const cJSON *doc, const void *arg)
{
    (void)arg;
    return is_terminal(str(doc, "status"));
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
        if (str(s, "id") != NULL && strcmp(str(s, "id"), step_id) == 0) {
            return s;
        }
    }
    fail_msg("no step %s", step_id);
    return NULL;
}

/* ---- fixture ---- */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int group_setup(void **state)
{
    (void)state;
    sg_log_set_level(SG_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/sg_gwXXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->db, sizeof(fx->db), "%s/sagad.db", fx->dir);
    snprintf(fx->wf, sizeof(fx->wf), "%s/workflows", fx->dir);
    assert_int_equal(mkdir(fx->wf, 0700), 0);
    write_file(fx->wf, "ok.yaml", ok_yaml);
    write_file(fx->wf, "wait.yaml", wait_yaml);
    write_file(fx->wf, "stuck.yaml", stuck_yaml);
    char err[512] = "";
    sg_driver_opts_t o = {.db_path = fx->db,
                          .workflows_dir = fx->wf,
                          .data_dir = fx->dir,
                          .test_activities = true,
                          .threads = 4,
                          .sync = SG_SYNC_OFF};
    if (sg_driver_start(&o, &fx->d, err, sizeof(err)) != SG_OK) {
        fail_msg("driver: %s", err);
    }
    sg_gateway_opts_t go = {
        .listen = "127.0.0.1:0", .db_path = fx->db, .driver = fx->d, .max_body = MAX_BODY};
    if (sg_gateway_start(&go, &fx->gw, err, sizeof(err)) != SG_OK) {
        fail_msg("gateway: %s", err);
    }
    assert_int_not_equal(sg_gateway_port(fx->gw), 0);
    snprintf(fx->base, sizeof(fx->base), "http://127.0.0.1:%u", sg_gateway_port(fx->gw));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sg_gateway_stop(fx->gw);
    sg_driver_stop(fx->d);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", fx->dir);
    }
    free(fx);
    curl_global_cleanup();
    return 0;
}

/* ---- routing and errors ---- */

static void test_healthz_and_routing(void **state)
{
    (void)state;
    resp_t r = get("/healthz");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json");
    assert_string_equal(str(r.json, "status"), "ok");
    resp_free(&r);

    r = request("HEAD", "/healthz", NULL, 0, NULL, false);
    assert_int_equal(r.status, 200);
    assert_null(r.body);
    resp_free(&r);

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
    resp_free(&r);
    r = request("DELETE", "/v1/instances/01ABC", NULL, 0, NULL, false);
    assert_problem(&r, 405);
    assert_string_equal(r.allow, "GET, HEAD");
    resp_free(&r);
    r = get("/v1/instances/01ABC/cancel");
    assert_problem(&r, 405);
    assert_string_equal(r.allow, "POST");
    resp_free(&r);
    r = request("PUT", "/v1/workflows/gw_ok/instances", "{}", SIZE_MAX, NULL, false);
    assert_problem(&r, 405);
    assert_string_equal(r.allow, "POST");
    resp_free(&r);
}

static void test_workflows(void **state)
{
    (void)state;
    resp_t r = get("/v1/workflows");
    assert_int_equal(r.status, 200);
    assert_true(cJSON_IsArray(r.json));
    assert_int_equal(cJSON_GetArraySize(r.json), 3);
    /* Sorted by name: gw_ok, gw_stuck, gw_wait. */
    const cJSON *w = cJSON_GetArrayItem(r.json, 0);
    assert_string_equal(str(w, "name"), "gw_ok");
    assert_int_equal((int)num(w, "version"), 1);
    assert_int_equal(strlen(str(w, "sha256")), 64);
    assert_int_equal((int)num(w, "steps"), 2);
    assert_string_equal(str(cJSON_GetArrayItem(r.json, 2), "name"), "gw_wait");
    resp_free(&r);

    r = get("/v1/workflows/gw_ok");
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.json, "name"), "gw_ok");
    assert_string_equal(str(r.json, "description"), "Gateway test saga.");
    assert_string_equal(str(r.json, "source"), ok_yaml);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(r.json, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 2);
    const cJSON *s0 = cJSON_GetArrayItem(steps, 0), *s1 = cJSON_GetArrayItem(steps, 1);
    assert_string_equal(str(s0, "id"), "first");
    assert_string_equal(str(s0, "kind"), "activity");
    assert_string_equal(str(s0, "class"), "compensatable");
    assert_string_equal(str(s0, "activity"), "test.echo");
    assert_string_equal(str(s0, "compensation"), "test.echo");
    assert_string_equal(str(s1, "activity"), "test.fail");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s1, "compensation")));
    assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r.json, "input_schema")));
    resp_free(&r);

    r = get("/v1/workflows/gw_wait");
    assert_int_equal(r.status, 200);
    const cJSON *pause = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r.json, "steps"), 1);
    assert_string_equal(str(pause, "kind"), "wait");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(pause, "activity")));
    resp_free(&r);

    r = get("/v1/workflows/gw_ok?version=1");
    assert_int_equal(r.status, 200);
    resp_free(&r);
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
    resp_t r = post("/v1/workflows/gw_ok/instances", "{\"n\": 3}");
    assert_int_equal(r.status, 201);
    assert_string_equal(r.ctype, "application/json");
    char id[32];
    snprintf(id, sizeof(id), "%s", str(r.json, "id"));
    char loc[96];
    snprintf(loc, sizeof(loc), "/v1/instances/%s", id);
    assert_string_equal(r.location, loc);
    assert_string_equal(str(r.json, "status"), "RUNNING");
    assert_string_equal(str(r.json, "workflow"), "gw_ok");
    assert_int_equal((int)num(r.json, "version"), 1);
    resp_free(&r);

    cJSON *doc = wait_finished(id);
    assert_string_equal(str(doc, "status"), "COMPLETED");
    assert_string_equal(str(doc, "id"), id);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(doc, "reason")));
    assert_int_equal((int)num(cJSON_GetObjectItemCaseSensitive(doc, "input"), "n"), 3);
    /* RFC 3339 in UTC with milliseconds. */
    const char *created = str(doc, "created_at");
    assert_non_null(created);
    assert_int_equal(strlen(created), 24);
    assert_int_equal(created[10], 'T');
    assert_int_equal(created[23], 'Z');
    assert_non_null(str(doc, "updated_at"));
    const cJSON *first = step_of(doc, "first");
    assert_string_equal(str(first, "status"), "done");
    assert_string_equal(str(first, "kind"), "activity");
    assert_string_equal(str(first, "compensation"), "none");
    assert_int_equal((int)num(first, "attempt"), 1);
    assert_int_equal((int)num(cJSON_GetObjectItemCaseSensitive(first, "output"), "n"), 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(first, "error")));
    const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(doc, "attempts");
    assert_int_equal(cJSON_GetArraySize(attempts), 2);
    const cJSON *a0 = cJSON_GetArrayItem(attempts, 0);
    assert_string_equal(str(a0, "step"), "first");
    assert_string_equal(str(a0, "status"), "ok");
    assert_string_equal(str(a0, "activity"), "test.echo");
    assert_int_equal((int)num(a0, "attempt"), 1);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a0, "compensation")));
    cJSON_Delete(doc);

    char path[128];
    snprintf(path, sizeof(path), "/v1/instances/%s/history", id);
    r = get(path);
    assert_int_equal(r.status, 200);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
    assert_true(cJSON_GetArraySize(items) >= 4);
    const cJSON *h0 = cJSON_GetArrayItem(items, 0);
    assert_int_equal((int)num(h0, "seq"), 1);
    assert_string_equal(str(h0, "type"), "saga_started");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(h0, "step")));
    assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(h0, "detail"), "workflow"), "gw_ok");
    double prev = 0;
    bool saw_step = false, saw_done = false;
    const cJSON *h;
    cJSON_ArrayForEach(h, items)
    {
        assert_true(num(h, "seq") > prev);
        prev = num(h, "seq");
        assert_non_null(str(h, "time"));
        saw_step |= str(h, "step") != NULL && strcmp(str(h, "step"), "first") == 0;
        const cJSON *detail = cJSON_GetObjectItemCaseSensitive(h, "detail");
        saw_done |= strcmp(str(h, "type"), "status_changed") == 0 && str(detail, "to") != NULL &&
                    strcmp(str(detail, "to"), "COMPLETED") == 0;
    }
    assert_true(saw_step);
    assert_true(saw_done);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r.json, "next_after")));
    resp_free(&r);

    /* History pages. */
    snprintf(path, sizeof(path), "/v1/instances/%s/history?after=1&limit=2", id);
    r = get(path);
    assert_int_equal(r.status, 200);
    items = cJSON_GetObjectItemCaseSensitive(r.json, "items");
    assert_int_equal(cJSON_GetArraySize(items), 2);
    assert_int_equal((int)num(cJSON_GetArrayItem(items, 0), "seq"), 2);
    assert_int_equal((int)num(r.json, "next_after"), 3);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v1/instances/%s/history?limit=0", id);
    expect_problem("GET", path, NULL, 400);
}

static void test_start_compensated(void **state)
{
    (void)state;
    char id[32];
    start_saga("gw_ok", "{\"n\": 1, \"fail\": true}", id);
    cJSON *doc = wait_finished(id);
    assert_string_equal(str(doc, "status"), "COMPENSATED");
    assert_string_equal(str(doc, "reason"), "step_failed");
    const cJSON *first = step_of(doc, "first"), *second = step_of(doc, "second");
    assert_string_equal(str(first, "compensation"), "compensated");
    assert_string_equal(str(second, "status"), "failed");
    assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(second, "error"), "code"),
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
        if (str(e, "path") != NULL && strcmp(str(e, "path"), path) == 0) {
            assert_non_null(str(e, "message"));
            return;
        }
    }
    fail_msg("no error at %s", path);
}

static void test_schema_errors(void **state)
{
    (void)state;
    resp_t r = post("/v1/workflows/gw_ok/instances", "{\"n\": 0, \"extra\": 1, \"fail\": 3}");
    assert_problem(&r, 400);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "errors")), 3);
    assert_has_error(r.json, "/n");
    assert_has_error(r.json, "/extra");
    assert_has_error(r.json, "/fail");
    resp_free(&r);

    r = post("/v1/workflows/gw_ok/instances", "{}");
    assert_problem(&r, 400);
    assert_has_error(r.json, "/n"); /* a missing required member names its own path */
    resp_free(&r);
}

static void test_bad_json(void **state)
{
    (void)state;
    const char *bodies[] = {"{",    "",           "[1]",     "\"text\"",   "42",      "null",
                            "{} x", "{\"n\":1}}", "{'n':1}", "{\"n\":1,}", "\xff\xfe"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        resp_t r = post("/v1/workflows/gw_ok/instances", bodies[i]);
        assert_problem(&r, 400);
        const cJSON *errors = cJSON_GetObjectItemCaseSensitive(r.json, "errors");
        assert_int_equal(cJSON_GetArraySize(errors), 1);
        assert_string_equal(str(cJSON_GetArrayItem(errors, 0), "path"), "");
        resp_free(&r);
    }
    /* A NUL byte would cut a C string short: refused. */
    resp_t r = request("POST", "/v1/workflows/gw_ok/instances", "{\"n\":1}\0{}", 10, NULL, false);
    assert_problem(&r, 400);
    resp_free(&r);
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
    resp_t r = request("POST", "/v1/workflows/gw_ok/instances", big, len, NULL, true);
    assert_problem(&r, 413);
    resp_free(&r);
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
    resp_free(&r);
    r = get("/healthz");
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void test_idempotent_start(void **state)
{
    (void)state;
    const char *path = "/v1/workflows/gw_ok/instances";
    resp_t a = request("POST", path, "{\"n\": 5}", SIZE_MAX, "Idempotency-Key: order-77", false);
    assert_int_equal(a.status, 201);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a.json, "created")));
    resp_t b = request("POST", path, "{\"n\": 5}", SIZE_MAX, "Idempotency-Key: order-77", false);
    assert_int_equal(b.status, 200);
    assert_string_equal(str(a.json, "id"), str(b.json, "id"));
    assert_string_equal(a.location, b.location);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b.json, "created")));
    assert_non_null(str(b.json, "status"));
    resp_t c = request("POST", path, "{\"n\": 5}", SIZE_MAX, "Idempotency-Key: order-78", false);
    assert_int_equal(c.status, 201);
    assert_string_not_equal(str(a.json, "id"), str(c.json, "id"));
    cJSON_Delete(wait_finished(str(a.json, "id")));
    cJSON_Delete(wait_finished(str(c.json, "id")));
    resp_free(&a);
    resp_free(&b);
    resp_free(&c);

    char long_key[300] = "Idempotency-Key: ";
    memset(long_key + strlen(long_key), 'k', 250);
    long_key[sizeof(long_key) - 1] = '\0';
    const char *bad[] = {"Idempotency-Key: two words", long_key};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        resp_t r = request("POST", path, "{\"n\": 5}", SIZE_MAX, bad[i], false);
        assert_problem(&r, 400);
        resp_free(&r);
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
    resp_t r = post(path, "");
    assert_problem(&r, 409);
    assert_string_equal(str(r.json, "instance_status"), "COMPLETED");
    resp_free(&r);
    snprintf(path, sizeof(path), "/v1/instances/%s/retry", id);
    r = post(path, "");
    assert_problem(&r, 409);
    assert_string_equal(str(r.json, "instance_status"), "COMPLETED");
    resp_free(&r);
}

static bool waiting(const cJSON *doc, const void *arg)
{
    (void)arg;
    const cJSON *pause = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "steps"), 1);
    return str(pause, "status") != NULL && strcmp(str(pause, "status"), "waiting") == 0;
}

static void test_cancel(void **state)
{
    (void)state;
    char id[32], path[128];
    start_saga("gw_wait", "{}", id);
    cJSON_Delete(poll_until(id, waiting, NULL));
    snprintf(path, sizeof(path), "/v1/instances/%s/retry", id);
    resp_t r = post(path, "");
    assert_problem(&r, 409); /* running: nothing to retry */
    assert_string_equal(str(r.json, "instance_status"), "RUNNING");
    resp_free(&r);
    snprintf(path, sizeof(path), "/v1/instances/%s/cancel", id);
    r = post(path, "");
    assert_int_equal(r.status, 202);
    assert_string_equal(str(r.json, "id"), id);
    assert_non_null(str(r.json, "status"));
    resp_free(&r);
    cJSON *doc = wait_finished(id);
    assert_string_equal(str(doc, "status"), "COMPENSATED");
    assert_string_equal(str(doc, "reason"), "cancelled");
    assert_string_equal(str(step_of(doc, "first"), "compensation"), "compensated");
    cJSON_Delete(doc);
}

static bool compensation_retried(const cJSON *doc, const void *arg)
{
    const double *before = arg;
    return is_terminal(str(doc, "status")) &&
           num(step_of(doc, "a"), "compensation_attempt") > *before;
}

static void test_retry(void **state)
{
    (void)state;
    char id[32], path[128];
    start_saga("gw_stuck", "{}", id);
    cJSON *doc = wait_finished(id);
    assert_string_equal(str(doc, "status"), "COMPENSATION_FAILED");
    double before = num(step_of(doc, "a"), "compensation_attempt");
    assert_true(before >= 1);
    cJSON_Delete(doc);
    snprintf(path, sizeof(path), "/v1/instances/%s/retry", id);
    resp_t r = post(path, "");
    assert_int_equal(r.status, 202);
    assert_string_equal(str(r.json, "id"), id);
    resp_free(&r);
    /* The compensation fails again, after one more attempt. */
    doc = poll_until(id, compensation_retried, &before);
    assert_string_equal(str(doc, "status"), "COMPENSATION_FAILED");
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
    resp_t r = get("/v1/instances?workflow=gw_ok");
    assert_int_equal(r.status, 200);
    int total = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "items"));
    assert_true(total >= 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r.json, "next_page_token")));
    resp_free(&r);

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
        assert_string_equal(str(it, "workflow"), "gw_ok");
        assert_true(strcmp(str(it, "created_at"), prev_created) >= 0);
        snprintf(prev_created, sizeof(prev_created), "%s", str(it, "created_at"));
        for (int i = 0; i < 3; i++) {
            found += strcmp(str(it, "id"), ids[i]) == 0;
        }
        seen++;
        const char *next = str(r.json, "next_page_token");
        if (next == NULL) {
            resp_free(&r);
            break;
        }
        snprintf(path, sizeof(path), "/v1/instances?workflow=gw_ok&limit=1&page_token=%s", next);
        resp_free(&r);
    }
    assert_int_equal(seen, total);
    assert_int_equal(found, 3);

    r = get("/v1/instances?status=COMPLETED&limit=500");
    assert_int_equal(r.status, 200);
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(r.json, "items"))
    {
        assert_string_equal(str(it, "status"), "COMPLETED");
        assert_non_null(str(it, "id"));
        assert_non_null(str(it, "created_at"));
    }
    resp_free(&r);
    r = get("/v1/instances?workflow=nope");
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r.json, "items")), 0);
    resp_free(&r);

    const char *bad[] = {
        "?status=DONE",       "?status=",     "?limit=0",         "?limit=501",       "?limit=ten",
        "?page_token=%21%21", "?page_token=", "?page_token=AAAA", "?page_token=MTIz", "?workflow="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/v1/instances%s", bad[i]);
        expect_problem("GET", path, NULL, 400);
    }
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
        resp_t r = get(gets[i]);
        if (r.status < 200 || r.status >= 500) {
            fail_msg("GET %s -> %ld", gets[i], r.status);
        }
        resp_free(&r);
    }
    const char *methods[] = {"BREW", "OPTIONS", "PATCH", "TRACE"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        resp_t r = request(methods[i], "/v1/instances", NULL, 0, NULL, false);
        assert_true(r.status == 405 || r.status == 404 || r.status == 501);
        resp_free(&r);
    }
    /* A JSON object with many members and long strings, inside the limit. */
    char body[MAX_BODY];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"n\":1");
    for (int i = 0; n + 32 < sizeof(body); i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n, ",\"k%d\":\"\\u0000\\ud800\"", i);
    }
    snprintf(body + n, sizeof(body) - n, "}");
    resp_t r = post("/v1/workflows/gw_ok/instances", body);
    assert_problem(&r, 400); /* additionalProperties: false */
    resp_free(&r);
    r = get("/healthz");
    assert_int_equal(r.status, 200);
    resp_free(&r);
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
