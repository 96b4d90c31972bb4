/*
 * Tests of GET /metrics and GET /v1/openapi.json over real HTTP: a driver with a
 * temporary SQLite file and the built-in `test` activities, the gateway on 127.0.0.1
 * with an ephemeral port, libcurl as the client. A few sagas run (some complete, some
 * compensate) between two scrapes, and the counters must have moved by exactly what
 * happened: starts and ends per workflow and status, attempts per activity and outcome,
 * their latency samples, dispatches, HTTP requests per route pattern and code. Every
 * scrape is also checked line by line against the text format 0.0.4. Completion is
 * observed by polling with a bounded number of tries.
 */
/* cmocka.h needs these first; the blank line keeps clang-format from reordering them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gateway_int.h"
#include "tests/support/gateway_harness.h"

#define POLL_TRIES 1000
#define POLL_WAIT_MS 20

extern const unsigned char gw__openapi_json[];
extern const size_t gw__openapi_json_len;

static gh_t *fx;

/* Completes, or compensates its first step when the input says "fail": true. */
static const char wf_yaml[] = "saga: gw_m\nversion: 1\n"
                              "input:\n  schema:\n    type: object\n"
                              "    properties:\n      fail: {type: boolean}\n"
                              "steps:\n"
                              "  - id: first\n    activity: test.echo\n"
                              "    compensate: {activity: test.echo}\n"
                              "  - id: second\n    activity: test.fail\n"
                              "    retry: {max_attempts: 1}\n    compensate: none\n";

/* ---- HTTP client ---- */

static gh_resp_t request(const char *method, const char *path, const char *body)
{
    return gh_request(fx->base, method, path, body, GH_STRLEN, NULL, 0);
}

/* ---- the exposition format ---- */

/* The value of the sample written exactly as series ("name{labels}"), 0 when absent. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p += n) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
    }
    return 0;
}

typedef struct {
    char name[128];
    char kind[16];
} family_t;

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == ':';
}

/* Checks one sample line: name, optional {l="v",...} with escapes, one space, a number. */
static void check_sample(const char *line, const family_t *fams, size_t n_fams)
{
    const char *p = line;
    while (name_char(*p)) {
        p++;
    }
    char name[160];
    snprintf(name, sizeof(name), "%.*s", (int)(p - line), line);
    bool known = false;
    for (size_t i = 0; i < n_fams && !known; i++) {
        size_t k = strlen(fams[i].name);
        known = strcmp(name, fams[i].name) == 0 ||
                (strcmp(fams[i].kind, "histogram") == 0 && strncmp(name, fams[i].name, k) == 0 &&
                 (strcmp(name + k, "_bucket") == 0 || strcmp(name + k, "_sum") == 0 ||
                  strcmp(name + k, "_count") == 0));
    }
    if (!known) {
        fail_msg("sample of an undeclared family: %s", line);
    }
    if (*p == '{') {
        p++;
        while (*p != '}') {
            const char *l = p;
            while (name_char(*p)) {
                p++;
            }
            if (p == l || p[0] != '=' || p[1] != '"') {
                fail_msg("bad label in: %s", line);
            }
            for (p += 2; *p != '"'; p++) {
                if (*p == '\0' || *p == '\n') {
                    fail_msg("unterminated label value in: %s", line);
                }
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n') {
                        fail_msg("bad escape in: %s", line);
                    }
                }
            }
            p++;
            if (*p == ',') {
                p++;
            } else if (*p != '}') {
                fail_msg("bad label list in: %s", line);
            }
        }
        p++;
    }
    char *end = NULL;
    if (*p != ' ' || (strtod(p + 1, &end), end == p + 1) || *end != '\0') {
        if (!(*p == ' ' && (strcmp(p + 1, "+Inf") == 0 || strcmp(p + 1, "NaN") == 0))) {
            fail_msg("bad value in: %s", line);
        }
    }
}

/* The whole scrape: HELP then TYPE for every family (once), samples only of declared
 * families, histograms' _count equal to their le="+Inf" bucket, text ending in \n. */
static void check_format(const char *text)
{
    family_t fams[128];
    size_t n_fams = 0;
    assert_true(text[0] != '\0' && text[strlen(text) - 1] == '\n');
    char *copy = strdup(text);
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# HELP ", 7) == 0) {
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_true(n_fams < 128);
            family_t *f = &fams[n_fams++];
            assert_int_equal(sscanf(line + 7, "%127s %15s", f->name, f->kind), 2);
            assert_true(strcmp(f->kind, "counter") == 0 || strcmp(f->kind, "gauge") == 0 ||
                        strcmp(f->kind, "histogram") == 0);
            for (size_t i = 0; i + 1 < n_fams; i++) {
                assert_string_not_equal(fams[i].name, f->name);
            }
            continue;
        }
        assert_true(line[0] != '#');
        check_sample(line, fams, n_fams);
    }
    free(copy);
    assert_true(n_fams >= 10);
}

/* The text of GET /metrics, checked (the caller frees it). */
static char *scrape(void)
{
    gh_resp_t r = request("GET", "/metrics", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(r.body);
    check_format(r.body);
    char *text = r.body;
    r.body = NULL;
    gh_resp_free(&r);
    return text;
}

/* ---- sagas ---- */

static void start_saga(const char *input, char id[32])
{
    gh_resp_t r = request("POST", "/v1/workflows/gw_m/instances", input);
    if (r.status != 201) {
        fail_msg("start: %ld %s", r.status, r.body ? r.body : "");
    }
    assert_non_null(gh_str(r.json, "id"));
    snprintf(id, 32, "%s", gh_str(r.json, "id"));
    gh_resp_free(&r);
}

static bool status_is(const cJSON *doc, const void *want)
{
    return gh_str_is(doc, "status", want);
}

static void wait_status(const char *id, const char *want)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/instances/%s", id);
    cJSON_Delete(gh_poll(fx->base, path, status_is, want, POLL_TRIES, POLL_WAIT_MS));
}

/* ---- tests ---- */

#define DELTA(series) (sample(after, series) - sample(before, series))

static void test_counters_follow_sagas(void **state)
{
    (void)state;
    char *before = scrape();
    char ok[3][32], bad[2][32];
    for (int i = 0; i < 3; i++) {
        start_saga("{}", ok[i]);
    }
    for (int i = 0; i < 2; i++) {
        start_saga("{\"fail\": true}", bad[i]);
    }
    for (int i = 0; i < 3; i++) {
        wait_status(ok[i], "COMPLETED");
    }
    for (int i = 0; i < 2; i++) {
        wait_status(bad[i], "COMPENSATED");
    }
    gh_resp_t nf = request("GET", "/no/such/route", NULL);
    assert_int_equal(nf.status, 404);
    gh_resp_free(&nf);
    /* The finish counters move after the commit that the polls above already saw. */
    assert_true(sg_driver_wait_idle(fx->d, 10000));
    char *after = scrape();

    assert_true(DELTA("sagad_sagas_started_total{workflow=\"gw_m\"}") == 5);
    assert_true(DELTA("sagad_sagas_finished_total{workflow=\"gw_m\",status=\"COMPLETED\"}") == 3);
    assert_true(DELTA("sagad_sagas_finished_total{workflow=\"gw_m\",status=\"COMPENSATED\"}") == 2);
    assert_true(DELTA("sagad_sagas_finished_total{workflow=\"gw_m\",status=\"FAILED\"}") == 0);
    /* test.echo: five forward attempts and two compensations; test.fail: 3 ok, 2 fatal. */
    assert_true(DELTA("sagad_attempts_total{activity=\"test.echo\",outcome=\"ok\"}") == 7);
    assert_true(DELTA("sagad_attempts_total{activity=\"test.fail\",outcome=\"ok\"}") == 3);
    assert_true(DELTA("sagad_attempts_total{activity=\"test.fail\",outcome=\"fatal\"}") == 2);
    assert_true(DELTA("sagad_attempt_duration_seconds_count{activity=\"test.echo\"}") == 7);
    assert_true(DELTA("sagad_attempt_duration_seconds_count{activity=\"test.fail\"}") == 5);
    assert_true(
        DELTA("sagad_attempt_duration_seconds_bucket{activity=\"test.fail\",le=\"+Inf\"}") == 5);
    assert_true(DELTA("sagad_attempt_duration_seconds_sum{activity=\"test.echo\"}") > 0);
    assert_true(DELTA("sagad_tasks_dispatched_total") == 12);
    assert_true(DELTA("sagad_results_ignored_total") == 0);
    assert_true(DELTA("sagad_batch_items_count") >= 1);
    assert_true(DELTA("sagad_batch_items_sum") >= 5 + 12);
    assert_true(DELTA("sagad_batch_duration_seconds_count") == DELTA("sagad_batch_items_count"));
    assert_true(sample(after, "sagad_engine_queue_depth") == 0);
    assert_true(sample(after, "sagad_sagas_active") == 0);
    assert_non_null(strstr(after, "\nsagad_transport_queued_tasks 0\n"));
    /* HTTP: route patterns, never raw paths. */
    assert_true(DELTA("sagad_http_requests_total{route=\"/v1/workflows/{name}/instances\","
                      "method=\"POST\",code=\"201\"}") == 5);
    assert_true(DELTA("sagad_http_requests_total{route=\"/v1/instances/{id}\",method=\"GET\","
                      "code=\"200\"}") >= 5);
    assert_true(DELTA("sagad_http_requests_total{route=\"unmatched\",method=\"GET\","
                      "code=\"404\"}") == 1);
    assert_true(DELTA("sagad_http_requests_total{route=\"/metrics\",method=\"GET\","
                      "code=\"200\"}") == 1);
    assert_true(DELTA("sagad_http_request_duration_seconds_count{route=\"/v1/workflows/{name}/"
                      "instances\",method=\"POST\"}") == 5);
    assert_null(strstr(after, ok[0]));
    assert_null(strstr(after, "/no/such/route"));
    free(before);
    free(after);
}

/* A method outside the standard list is counted as "other", not by its own name. */
static void test_method_labels_are_bounded(void **state)
{
    (void)state;
    char *before = scrape();
    gh_resp_t r = request("BREW", "/metrics", NULL);
    assert_int_equal(r.status, 405);
    gh_resp_free(&r);
    char *after = scrape();
    assert_true(DELTA("sagad_http_requests_total{route=\"unmatched\",method=\"other\","
                      "code=\"405\"}") == 1);
    assert_null(strstr(after, "BREW"));
    free(before);
    free(after);
}

enum { READERS = 40, READS = 10 };

typedef struct {
    const char *path;
    int ok;
} reader_t;

static void *reader(void *arg)
{
    reader_t *rd = arg;
    for (int i = 0; i < READS; i++) {
        gh_resp_t r = request("GET", rd->path, NULL);
        rd->ok += r.status == 200;
        gh_resp_free(&r);
    }
    return NULL;
}

/* More readers at once than the gateway keeps store handles (16): they wait for one or
 * open their own, and every read succeeds; the requests are all counted. */
static void test_many_concurrent_reads(void **state)
{
    (void)state;
    char id[32], path[64];
    start_saga("{}", id);
    wait_status(id, "COMPLETED");
    snprintf(path, sizeof(path), "/v1/instances/%s", id);
    char *before = scrape();
    pthread_t t[READERS];
    reader_t rd[READERS];
    for (int i = 0; i < READERS; i++) {
        rd[i] = (reader_t){.path = path};
        assert_int_equal(pthread_create(&t[i], NULL, reader, &rd[i]), 0);
    }
    for (int i = 0; i < READERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(rd[i].ok, READS);
    }
    char *after = scrape();
    assert_true(DELTA("sagad_http_requests_total{route=\"/v1/instances/{id}\",method=\"GET\","
                      "code=\"200\"}") == READERS * READS);
    free(before);
    free(after);
}

/* The document served is the one built in, byte for byte, and it is JSON. */
static void test_openapi_served(void **state)
{
    (void)state;
    gh_resp_t r = request("GET", "/v1/openapi.json", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json");
    assert_int_equal(r.len, gw__openapi_json_len);
    assert_memory_equal(r.body, gw__openapi_json, gw__openapi_json_len);
    cJSON *doc = cJSON_Parse(r.body);
    assert_non_null(doc);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "openapi");
    assert_true(cJSON_IsString(v) && strncmp(v->valuestring, "3.0.", 4) == 0);
    cJSON_Delete(doc);
    gh_resp_free(&r);
}

/* ---- fixture ---- */

static int group_setup(void **state)
{
    (void)state;
    static const char *const workflows[] = {"m.yaml", wf_yaml, NULL};
    fx = gh_new(&(gh_opts_t){.name = "gwm", .workflows = workflows, .test_activities = true});
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return gh_free(fx) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_follow_sagas),
        cmocka_unit_test(test_method_labels_are_bounded),
        cmocka_unit_test(test_many_concurrent_reads),
        cmocka_unit_test(test_openapi_served),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
