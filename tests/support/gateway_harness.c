/*
 * gateway_harness: the shared harness of the gateway's unit tests (see gateway_harness.h).
 * It reaches sagad only through the driver's and the gateway's public functions and over
 * HTTP; it must never allocate through sg_malloc (the tests count those allocations) nor
 * keep state between tests.
 */
/* cmocka.h needs these before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "orchestrator/log/log.h"
#include "tests/support/gateway_harness.h"
#include "tests/support/module_harness.h"

/* Past this a body waits for "100 Continue", so an early refusal (413, 401) is read
 * rather than reset mid-upload. */
#define EXPECT_CONTINUE_MIN 65536
#define REQUEST_TIMEOUT_S 60L

/* ---- the HTTP client ---- */

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    gh_resp_t *r = ctx;
    char *grown = realloc(r->body, r->len + size * n + 1);
    assert_non_null(grown);
    memcpy(grown + r->len, data, size * n);
    r->len += size * n;
    grown[r->len] = '\0';
    r->body = grown;
    return size * n;
}

/* The value of header name when line is that header. */
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
    gh_resp_t *r = ctx;
    keep_header(data, size * n, "Content-Type", r->ctype, sizeof(r->ctype));
    keep_header(data, size * n, "Location", r->location, sizeof(r->location));
    keep_header(data, size * n, "Allow", r->allow, sizeof(r->allow));
    keep_header(data, size * n, "WWW-Authenticate", r->www_auth, sizeof(r->www_auth));
    keep_header(data, size * n, "Retry-After", r->retry_after, sizeof(r->retry_after));
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

static bool sets_content_type(const char *const *headers)
{
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        if (strncasecmp(headers[i], "Content-Type:", 13) == 0) {
            return true;
        }
    }
    return false;
}

gh_resp_t gh_request(const char *base, const char *method, const char *path, const char *body,
                     size_t len, const char *const *headers, unsigned flags)
{
    gh_resp_t r = {0};
    size_t url_len = strlen(base) + strlen(path) + 1;
    char *url = malloc(url_len);
    assert_non_null(url);
    snprintf(url, url_len, "%s%s", base, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    len = body != NULL && len == GH_STRLEN ? strlen(body) : len;
    struct curl_slist *hdrs = curl_slist_append(
        NULL, body != NULL && len > EXPECT_CONTINUE_MIN ? "Expect: 100-continue" : "Expect:");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        hdrs = curl_slist_append(hdrs, headers[i]);
    }
    upload_t up = {0};
    if (body != NULL) {
        if (!sets_content_type(headers)) {
            hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        }
        if (flags & GH_CHUNKED) {
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
    curl_easy_setopt(c, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(cc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    free(url);
    r.json = r.body != NULL ? cJSON_Parse(r.body) : NULL;
    return r;
}

gh_resp_t gh_get(const char *base, const char *path)
{
    return gh_request(base, "GET", path, NULL, 0, NULL, 0);
}

void gh_resp_free(gh_resp_t *r)
{
    cJSON_Delete(r->json);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* ---- reading JSON ---- */

const cJSON *gh_item(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

const char *gh_str(const cJSON *o, const char *key)
{
    const cJSON *v = gh_item(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

double gh_num(const cJSON *o, const char *key)
{
    const cJSON *v = gh_item(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

bool gh_str_is(const cJSON *o, const char *key, const char *want)
{
    const char *s = gh_str(o, key);
    return s != NULL && strcmp(s, want) == 0;
}

void gh_expect_str(const cJSON *o, const char *key, const char *want)
{
    const char *s = gh_str(o, key);
    if (s == NULL || strcmp(s, want) != 0) {
        char *text = cJSON_PrintUnformatted(o);
        fail_msg("%s: expected \"%s\", got %s in %.600s", key, want, s ? s : "(none)",
                 text ? text : "?");
    }
}

void gh_assert_problem(const gh_resp_t *r, long status, const char *slug, const char *what)
{
    if (r->status != status) {
        fail_msg("%s%sexpected %ld, got %ld: %s", what ? what : "", what ? ": " : "", status,
                 r->status, r->body ? r->body : "");
    }
    assert_string_equal(r->ctype, "application/problem+json");
    assert_non_null(r->json);
    assert_int_equal((long)gh_num(r->json, "status"), status);
    assert_non_null(gh_str(r->json, "type"));
    assert_non_null(gh_str(r->json, "title"));
    assert_non_null(gh_str(r->json, "detail"));
    if (slug != NULL) {
        char type[96];
        snprintf(type, sizeof(type), "urn:sagad:problem:%s", slug);
        gh_expect_str(r->json, "type", type);
    }
}

void gh_expect_bad_param(const char *base, const char *path, const char *param)
{
    gh_resp_t r = gh_get(base, path);
    gh_assert_problem(&r, 400, "bad-parameter", path);
    gh_expect_str(r.json, "parameter", param);
    const char *detail = gh_str(r.json, "detail");
    size_t n = strlen(param);
    if (strncmp(detail, param, n) != 0 || detail[n] != ' ') {
        fail_msg("%s: the detail does not name %s: %s", path, param, detail);
    }
    gh_resp_free(&r);
}

/* ---- waiting ---- */

void gh_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

cJSON *gh_poll(const char *base, const char *path, bool (*pred)(const cJSON *doc, const void *arg),
               const void *arg, int tries, long wait_ms)
{
    for (int i = 0; i < tries; i++) {
        gh_resp_t r = gh_get(base, path);
        if (r.status == 200 && pred(r.json, arg)) {
            cJSON *doc = r.json;
            r.json = NULL;
            gh_resp_free(&r);
            return doc;
        }
        gh_resp_free(&r);
        gh_sleep_ms(wait_ms);
    }
    fail_msg("%s did not reach the expected state", path);
    return NULL;
}

/* ---- files ---- */

void gh_write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fail_msg("cannot write %s", path);
    }
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* ---- driver and gateway ---- */

sg_driver_t *gh_driver_start(const sg_driver_opts_t *o)
{
    char err[512] = "";
    sg_driver_t *d = NULL;
    if (sg_driver_start(o, &d, err, sizeof(err)) != SG_OK) {
        fail_msg("driver: %s", err);
    }
    return d;
}

sg_gateway_t *gh_gateway_start(const sg_gateway_opts_t *o, char *base, size_t cap)
{
    sg_gateway_opts_t go = *o;
    go.listen = go.listen != NULL ? go.listen : "127.0.0.1:0";
    char err[512] = "";
    sg_gateway_t *gw = NULL;
    if (sg_gateway_start(&go, &gw, err, sizeof(err)) != SG_OK) {
        fail_msg("gateway: %s", err);
    }
    assert_int_not_equal(sg_gateway_port(gw), 0);
    snprintf(base, cap, "http://127.0.0.1:%u", sg_gateway_port(gw));
    return gw;
}

gh_t *gh_new(const gh_opts_t *o)
{
    sg_log_set_level(SG_LOG_ERROR);
    assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    gh_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    mh_dir_make(h->dir, sizeof(h->dir), o->name);
    snprintf(h->db, sizeof(h->db), "%s/sagad.db", h->dir);
    if (o->workflows_dir != NULL) {
        snprintf(h->wf, sizeof(h->wf), "%s", o->workflows_dir);
    } else {
        snprintf(h->wf, sizeof(h->wf), "%s/workflows", h->dir);
        assert_int_equal(mkdir(h->wf, 0700), 0);
        for (size_t i = 0; o->workflows != NULL && o->workflows[i] != NULL; i += 2) {
            assert_non_null(o->workflows[i + 1]);
            gh_write_file(h->wf, o->workflows[i], o->workflows[i + 1]);
        }
    }
    if (o->prepare != NULL) {
        o->prepare(h->dir);
    }
    sg_driver_opts_t dopts = {.db_path = h->db,
                              .workflows_dir = h->wf,
                              .data_dir = h->dir,
                              .test_activities = o->test_activities,
                              .threads = o->threads != 0 ? o->threads : 4,
                              .sync = SG_SYNC_OFF};
    h->d = gh_driver_start(&dopts);
    if (!o->no_gateway) {
        sg_gateway_opts_t go = o->gateway;
        go.db_path = go.db_path != NULL ? go.db_path : h->db;
        go.driver = go.driver != NULL ? go.driver : h->d;
        h->gw = gh_gateway_start(&go, h->base, sizeof(h->base));
    }
    return h;
}

int gh_free(gh_t *h)
{
    if (h == NULL) {
        return 0;
    }
    sg_gateway_stop(h->gw);
    sg_driver_stop(h->d);
    int rc = mh_dir_remove(h->dir);
    if (rc != 0) {
        fprintf(stderr, "could not remove %s\n", h->dir);
    }
    free(h);
    curl_global_cleanup();
    return rc;
}
