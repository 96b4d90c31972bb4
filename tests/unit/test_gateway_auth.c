/*
 * Tests of the gateway's security and limits over real HTTP: a driver with a temporary
 * SQLite file, gateways on 127.0.0.1 with ephemeral ports (RS256 + API keys, HS256,
 * anonymous), libcurl as the client, tokens made with libjwt. The RSA keys are test-only
 * fixtures (tests/fixtures/auth/); the tests run from the repository root.
 *
 * The route walks iterate the gateway's own route table (gateway_int.h), so a route
 * added later is checked without touching this file: every credential that must fail
 * gets 401 on every route, every scope that must not pass gets 403, and the right scope
 * gets neither. Besides: API keys, JWT claims, the credentials file, `--hash-key`, rate
 * limits (429 + Retry-After), 413, 431, 404, 405, JSON depth and size, /readyz,
 * listening without credentials, the connection limit and the idle timeout.
 */
/* cmocka.h needs these first; the blank line keeps clang-format from reordering them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <jwt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "gateway/gateway_int.h"
#include "orchestrator/log/log.h"
#include "tests/support/gateway_harness.h"

#define MAX_BODY (256 * 1024)
#define FIXTURES "tests/fixtures/auth/"
#define ISSUER "https://idp.test"
#define HS_SECRET "an-hs256-secret-of-the-tests-0123456789"
#define POLL_TRIES 500
#define POLL_WAIT_MS 10

/* API keys of the tests, one per scope, and one with a tiny rate limit. */
static const char k_read[] = "read-key-0123456789abcdef";
static const char k_start[] = "start-key-0123456789abcdef";
static const char k_operate[] = "operate-key-0123456789abcdef";
static const char k_admin[] = "admin-key-0123456789abcdef";
static const char k_slow[] = "slow-key-0123456789abcdef";

typedef struct {
    gh_t *h;             /* the driver and the RS256 + API keys gateway */
    sg_gateway_t *gw_hs; /* HS256 */
    char base_hs[64];
    char *pub, *priv, *other; /* PEM texts */
    size_t pub_len, priv_len, other_len;
    char inst[32]; /* an instance for the {id} routes */
} fx_t;

static fx_t *fx;

static const char ok_yaml[] =
    "saga: gw_ok\nversion: 1\n"
    "input:\n  schema:\n    type: object\n    required: [n]\n"
    "    properties:\n      n: {type: integer}\n"
    "steps:\n"
    "  - id: first\n    activity: test.echo\n    compensate: {activity: test.echo}\n";

/* ---- HTTP client ---- */

/* One request to base; headers is NULL or NULL-terminated; body NULL = none. */
static gh_resp_t request_to(const char *base, const char *method, const char *path,
                            const char *body, size_t body_len, const char *const *headers)
{
    return gh_request(base, method, path, body, body_len, headers, 0);
}

static gh_resp_t request(const char *method, const char *path, const char *body,
                         const char *const *headers)
{
    return request_to(fx->h->base, method, path, body, body != NULL ? strlen(body) : 0, headers);
}

/* GET with one header line (or none). */
static gh_resp_t get_with(const char *path, const char *header)
{
    const char *h[] = {header, NULL};
    return request("GET", path, NULL, header != NULL ? h : NULL);
}

static void assert_problem(const gh_resp_t *r, long status, const char *what)
{
    gh_assert_problem(r, status, NULL, what);
}

/* tmpl with every mark replaced by value, into out. */
static void subst(char *out, size_t cap, const char *tmpl, const char *mark, const char *value)
{
    size_t o = 0, mlen = strlen(mark);
    for (const char *p = tmpl; *p && o + strlen(value) + 1 < cap;) {
        if (strncmp(p, mark, mlen) == 0) {
            o += (size_t)snprintf(out + o, cap - o, "%s", value);
            p += mlen;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

/* ---- tokens ---- */

static void b64url(const char *in, char *out, size_t cap)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
        v |= i + 1 < n ? (uint32_t)(unsigned char)in[i + 1] << 8 : 0;
        v |= i + 2 < n ? (uint32_t)(unsigned char)in[i + 2] : 0;
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < n) {
            out[o++] = a[(v >> 6) & 63];
        }
        if (i + 2 < n) {
            out[o++] = a[v & 63];
        }
    }
    out[o] = '\0';
}

/* Claims that the RS256 gateway accepts, with this scope claim value (JSON text) and exp
 * relative to now; extra is more members (JSON, may be ""). */
static void claims(char *out, size_t cap, const char *scope_json, long exp_in, const char *extra)
{
    snprintf(out, cap,
             "{\"iss\":\"" ISSUER "\",\"aud\":\"sagad\",\"sub\":\"alice\",\"exp\":%ld,"
             "\"scope\":%s%s%s}",
             (long)time(NULL) + exp_in, scope_json, extra[0] ? "," : "", extra);
}

/* A token signed by libjwt; the caller frees it with free(). */
static char *sign(jwt_alg_t alg, const void *key, size_t key_len, const char *claims_json)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grants_json(j, claims_json), 0);
    assert_int_equal(jwt_set_alg(j, alg, key, (int)key_len), 0);
    char *t = jwt_encode_str(j);
    assert_non_null(t);
    jwt_free(j);
    return t;
}

static char *rs256(const char *claims_json)
{
    return sign(JWT_ALG_RS256, fx->priv, fx->priv_len, claims_json);
}

/* "Authorization: Bearer <token>" into out; frees token. */
static void bearer(char *out, size_t cap, char *token)
{
    snprintf(out, cap, "Authorization: Bearer %s", token);
    free(token);
}

/* An unsigned token: {"alg":"none"}, with sig as its third part. */
static void alg_none(char *out, size_t cap, const char *claims_json, const char *sig)
{
    char h[64], c[1024];
    b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}", h, sizeof(h));
    b64url(claims_json, c, sizeof(c));
    snprintf(out, cap, "Authorization: Bearer %s.%s.%s", h, c, sig);
}

/* ---- fixture ---- */

static char *read_fixture(const char *name, size_t *len)
{
    char *text = NULL;
    if (sg_file_read(name, 1 << 16, &text, len) != SG_OK) {
        fail_msg("cannot read %s (run the tests from the repository root)", name);
    }
    return text;
}

static void key_line(char *out, size_t cap, const char *name, const char *key, const char *scopes,
                     const char *extra)
{
    char hash[65];
    sg_sha256_hex(key, strlen(key), hash);
    snprintf(out, cap, "{\"name\":\"%s\",\"sha256\":\"%s\",\"scopes\":%s%s}", name, hash, scopes,
             extra);
}

static void write_auth_files(const char *dir)
{
    char keys[5][256];
    key_line(keys[0], sizeof(keys[0]), "reader", k_read, "[\"read\"]", "");
    key_line(keys[1], sizeof(keys[1]), "starter", k_start, "[\"start\"]", "");
    key_line(keys[2], sizeof(keys[2]), "operator", k_operate, "[\"operate\"]", "");
    key_line(keys[3], sizeof(keys[3]), "admin", k_admin, "[\"admin\"]", "");
    key_line(keys[4], sizeof(keys[4]), "slow", k_slow, "[\"read\"]",
             ",\"rate_limit\":{\"rate\":0.001,\"burst\":3}");
    char text[4096];
    snprintf(text, sizeof(text),
             "{\"keys\":[%s,%s,%s,%s,%s],\n"
             " \"jwt\":{\"algorithm\":\"RS256\",\"public_key_file\":\"rs256_public.pem\","
             "\"issuer\":\"" ISSUER "\",\"audience\":\"sagad\",\"leeway\":30},\n"
             " \"rate_limit\":{\"rate\":0}}\n",
             keys[0], keys[1], keys[2], keys[3], keys[4]);
    gh_write_file(dir, "auth.json", text);
    gh_write_file(dir, "rs256_public.pem", fx->pub);
    gh_write_file(dir, "hs.json",
                  "{\"jwt\":{\"algorithm\":\"HS256\",\"secret\":\"" HS_SECRET "\"},"
                  "\"rate_limit\":{\"rate\":0}}");
}

static sg_gateway_t *start_gateway(const sg_gateway_opts_t *extra, char *base, size_t cap)
{
    sg_gateway_opts_t o = *extra;
    o.db_path = o.db_path != NULL ? o.db_path : fx->h->db;
    o.driver = fx->h->d;
    o.max_body = MAX_BODY;
    return gh_gateway_start(&o, base, cap);
}

static int group_setup(void **state)
{
    (void)state;
    fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->pub = read_fixture(FIXTURES "rs256_public.pem", &fx->pub_len);
    fx->priv = read_fixture(FIXTURES "rs256_private.pem", &fx->priv_len);
    fx->other = read_fixture(FIXTURES "other_private.pem", &fx->other_len);
    static const char *const workflows[] = {"ok.yaml", ok_yaml, NULL};
    fx->h = gh_new(&(gh_opts_t){.name = "gwauth",
                                .workflows = workflows,
                                .prepare = write_auth_files,
                                .test_activities = true,
                                .threads = 2,
                                .no_gateway = true});
    char auth[400], hs[400];
    snprintf(auth, sizeof(auth), "%s/auth.json", fx->h->dir);
    snprintf(hs, sizeof(hs), "%s/hs.json", fx->h->dir);
    fx->h->gw =
        start_gateway(&(sg_gateway_opts_t){.auth_file = auth}, fx->h->base, sizeof(fx->h->base));
    fx->gw_hs =
        start_gateway(&(sg_gateway_opts_t){.auth_file = hs}, fx->base_hs, sizeof(fx->base_hs));
    /* An instance for the {id} routes. */
    char h[96];
    snprintf(h, sizeof(h), "X-API-Key: %s", k_admin);
    const char *hdrs[] = {h, NULL};
    gh_resp_t r = request("POST", "/v1/workflows/gw_ok/instances", "{\"n\":1}", hdrs);
    assert_int_equal(r.status, 201);
    snprintf(fx->inst, sizeof(fx->inst), "%s", gh_str(r.json, "id"));
    gh_resp_free(&r);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sg_gateway_stop(fx->gw_hs);
    int rc = gh_free(fx->h);
    sg_free(fx->pub);
    sg_free(fx->priv);
    sg_free(fx->other);
    free(fx);
    return rc == 0 ? 0 : -1;
}

/* ---- the route table ---- */

/* The route's pattern with its placeholders filled in. */
static void route_path(const gw_route_t *rt, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = rt->pattern; *p && o + 40 < cap;) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            assert_non_null(end);
            bool name = strncmp(p, "{name}", 6) == 0;
            o += (size_t)snprintf(out + o, cap - o, "%s", name ? "gw_ok" : fx->inst);
            p = end + 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

static gh_resp_t call_route(const gw_route_t *rt, const char *header)
{
    char path[256];
    route_path(rt, path, sizeof(path));
    const char *h[] = {header, NULL};
    return request(rt->method, path, strcmp(rt->method, "POST") == 0 ? "{}" : NULL,
                   header != NULL ? h : NULL);
}

static bool is_open(const gw_route_t *rt)
{
    return strcmp(rt->pattern, "/healthz") == 0 || strcmp(rt->pattern, "/readyz") == 0;
}

static void test_route_table(void **state)
{
    (void)state;
    size_t open = 0;
    assert_true(gw__n_routes >= 10);
    for (size_t i = 0; i < gw__n_routes; i++) {
        const gw_route_t *rt = &gw__routes[i];
        if (is_open(rt)) {
            assert_int_equal(rt->scope, GW_OPEN);
            open++;
            continue;
        }
        /* Exactly one known scope bit: no route is open by accident. */
        if (rt->scope == GW_OPEN || (rt->scope & (rt->scope - 1)) != 0 ||
            (rt->scope & ~(unsigned)SG_SCOPE_ALL) != 0) {
            fail_msg("%s %s has scope %#x", rt->method, rt->pattern, rt->scope);
        }
    }
    assert_int_equal(open, 2);
}

/* Every credential here must be refused with 401 on every route that needs one. */
static void test_every_route_refuses_bad_credentials(void **state)
{
    (void)state;
    char c[4096];
    enum { N_BAD = 14 };
    char bad[N_BAD][2048];
    size_t n = 0;
    snprintf(bad[n++], sizeof(bad[0]), "Authorization: Bearer");
    snprintf(bad[n++], sizeof(bad[0]), "Authorization: Basic dXNlcjpwYXNzd29yZA==");
    snprintf(bad[n++], sizeof(bad[0]), "Authorization: Bearer not a token");
    snprintf(bad[n++], sizeof(bad[0]), "Authorization: Bearer a.b");
    snprintf(bad[n++], sizeof(bad[0]), "Authorization: Bearer e30.e30.");
    snprintf(bad[n++], sizeof(bad[0]), "X-API-Key: short");
    snprintf(bad[n++], sizeof(bad[0]), "X-API-Key: unknown-key-0123456789abcdef");
    claims(c, sizeof(c), "\"admin\"", -3600, ""); /* expired an hour ago */
    bearer(bad[n++], sizeof(bad[0]), rs256(c));
    claims(c, sizeof(c), "\"admin\"", 600, ""); /* signed with another key */
    bearer(bad[n++], sizeof(bad[0]), sign(JWT_ALG_RS256, fx->other, fx->other_len, c));
    alg_none(bad[n++], sizeof(bad[0]), c, ""); /* unsigned */
    alg_none(bad[n++], sizeof(bad[0]), c, "c2lnbmF0dXJl");
    /* HS256 with the RS256 public key as its secret: the classic algorithm confusion. */
    bearer(bad[n++], sizeof(bad[0]), sign(JWT_ALG_HS256, fx->pub, fx->pub_len, c));
    claims(c, sizeof(c), "\"admin\"", 600, "\"nbf\":4102444800"); /* not valid before 2100 */
    bearer(bad[n++], sizeof(bad[0]), rs256(c));
    snprintf(c, sizeof(c),
             "{\"iss\":\"https://evil.test\",\"aud\":\"sagad\",\"exp\":%ld,"
             "\"scope\":\"admin\"}",
             (long)time(NULL) + 600);
    bearer(bad[n++], sizeof(bad[0]), rs256(c));
    assert_int_equal(n, N_BAD);

    size_t walked = 0;
    for (size_t i = 0; i < gw__n_routes; i++) {
        const gw_route_t *rt = &gw__routes[i];
        if (rt->scope == GW_OPEN) {
            continue;
        }
        walked++;
        char what[2300];
        gh_resp_t r = call_route(rt, NULL);
        snprintf(what, sizeof(what), "%s %s without credentials", rt->method, rt->pattern);
        assert_problem(&r, 401, what);
        assert_string_equal(r.www_auth, "Bearer realm=\"sagad\"");
        gh_resp_free(&r);
        for (size_t k = 0; k < n; k++) {
            r = call_route(rt, bad[k]);
            snprintf(what, sizeof(what), "%s %s with %.60s", rt->method, rt->pattern, bad[k]);
            assert_problem(&r, 401, what);
            assert_non_null(strstr(r.www_auth, "Bearer realm=\"sagad\""));
            assert_non_null(strstr(r.www_auth, "error=\"invalid_token\""));
            gh_resp_free(&r);
        }
    }
    assert_int_equal(walked, gw__n_routes - 2);
}

/* The policy written out independently of auth.c: admin implies all, start and operate
 * imply read. */
static bool policy_allows(unsigned need, const char *held)
{
    if (strcmp(held, "admin") == 0) {
        return true;
    }
    if (need == SG_SCOPE_READ) {
        return strcmp(held, "read") == 0 || strcmp(held, "start") == 0 ||
               strcmp(held, "operate") == 0;
    }
    return (need == SG_SCOPE_START && strcmp(held, "start") == 0) ||
           (need == SG_SCOPE_OPERATE && strcmp(held, "operate") == 0);
}

static void check_scoped(const gw_route_t *rt, const char *held, const char *header)
{
    char what[256];
    snprintf(what, sizeof(what), "%s %s holding \"%s\" (%.20s)", rt->method, rt->pattern, held,
             header);
    gh_resp_t r = call_route(rt, header);
    if (policy_allows(rt->scope, held)) {
        if (r.status == 401 || r.status == 403 || r.status >= 500 || r.status < 200) {
            fail_msg("%s: got %ld: %s", what, r.status, r.body ? r.body : "");
        }
    } else {
        assert_problem(&r, 403, what);
        assert_string_equal(gh_str(r.json, "required_scope"), sg_scope_name(rt->scope));
        assert_non_null(strstr(r.www_auth, "error=\"insufficient_scope\""));
    }
    gh_resp_free(&r);
}

static void test_every_route_checks_scope(void **state)
{
    (void)state;
    static const struct {
        const char *held;
        const char *key;
    } holders[] = {
        {"read", k_read}, {"start", k_start}, {"operate", k_operate}, {"admin", k_admin}};
    size_t walked = 0;
    for (size_t i = 0; i < gw__n_routes; i++) {
        const gw_route_t *rt = &gw__routes[i];
        if (rt->scope == GW_OPEN) {
            continue;
        }
        walked++;
        char h[2048], c[1024];
        for (size_t k = 0; k < SG_ARRAY_LEN(holders); k++) {
            snprintf(h, sizeof(h), "X-API-Key: %s", holders[k].key);
            check_scoped(rt, holders[k].held, h);
            snprintf(h, sizeof(h), "Authorization: Bearer %s", holders[k].key);
            check_scoped(rt, holders[k].held, h);
            char scope[32];
            snprintf(scope, sizeof(scope), "\"%s\"", holders[k].held);
            claims(c, sizeof(c), scope, 600, "");
            bearer(h, sizeof(h), rs256(c));
            check_scoped(rt, holders[k].held, h);
        }
        /* A valid token with no scope of ours (other services' scopes are ignored). */
        claims(c, sizeof(c), "\"orders:write profile\"", 600, "");
        bearer(h, sizeof(h), rs256(c));
        check_scoped(rt, "none", h);
    }
    assert_int_equal(walked, gw__n_routes - 2);
}

static void test_scope_rules(void **state)
{
    (void)state;
    const char *names[] = {"read", "start", "operate", "admin"};
    unsigned needs[] = {SG_SCOPE_READ, SG_SCOPE_START, SG_SCOPE_OPERATE, SG_SCOPE_ADMIN};
    for (size_t i = 0; i < 4; i++) {
        unsigned held;
        assert_true(sg_scope_parse(names[i], &held));
        assert_string_equal(sg_scope_name(held), names[i]);
        for (size_t k = 0; k < 3; k++) {
            assert_int_equal(sg_scope_allows(held, needs[k]), policy_allows(needs[k], names[i]));
        }
        assert_int_equal(sg_scope_allows(held, SG_SCOPE_ADMIN), strcmp(names[i], "admin") == 0);
        assert_true(sg_scope_allows(held, GW_OPEN));
    }
    unsigned out = 0;
    assert_false(sg_scope_parse("write", &out));
    assert_false(sg_scope_parse("", &out));
    assert_false(sg_scope_allows(0, SG_SCOPE_READ));
    assert_int_equal(sg_scope_implied(SG_SCOPE_START | SG_SCOPE_OPERATE),
                     SG_SCOPE_READ | SG_SCOPE_START | SG_SCOPE_OPERATE);
}

/* ---- probes ---- */

static void test_open_routes_and_readyz(void **state)
{
    (void)state;
    const char *open[] = {"/healthz", "/readyz"};
    for (size_t i = 0; i < 2; i++) {
        gh_resp_t r = get_with(open[i], NULL);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.ctype, "application/json");
        gh_resp_free(&r);
        r = get_with(open[i], "Authorization: Bearer garbage"); /* ignored there */
        assert_int_equal(r.status, 200);
        gh_resp_free(&r);
    }
    gh_resp_t r = get_with("/readyz", NULL);
    assert_string_equal(gh_str(r.json, "status"), "ready");
    gh_resp_free(&r);

    /* A database that cannot be read: 503, the one deliberate 5xx. */
    char missing[300], base[64];
    snprintf(missing, sizeof(missing), "%s/nope/sagad.db", fx->h->dir);
    sg_gateway_t *g = start_gateway(&(sg_gateway_opts_t){.db_path = missing}, base, sizeof(base));
    r = request_to(base, "GET", "/readyz", NULL, 0, NULL);
    assert_problem(&r, 503, "readyz on a missing database");
    assert_string_equal(r.retry_after, "1");
    gh_resp_free(&r);
    r = request_to(base, "GET", "/healthz", NULL, 0, NULL);
    assert_int_equal(r.status, 200); /* alive, though not ready */
    gh_resp_free(&r);
    sg_gateway_stop(g);
}

/* ---- API keys ---- */

static void test_api_keys(void **state)
{
    (void)state;
    char h[128];
    const char *forms[] = {"X-API-Key: KEY", "Authorization: Bearer KEY",
                           "authorization: bearer KEY", "Authorization:   Bearer   KEY"};
    for (size_t i = 0; i < SG_ARRAY_LEN(forms); i++) {
        subst(h, sizeof(h), forms[i], "KEY", k_read);
        gh_resp_t r = get_with("/v1/workflows", h);
        if (r.status != 200) {
            fail_msg("%s: %ld %s", forms[i], r.status, r.body);
        }
        gh_resp_free(&r);
    }
    /* Both headers at once: one credential per request. */
    char a[128], b[128];
    snprintf(a, sizeof(a), "X-API-Key: %s", k_read);
    snprintf(b, sizeof(b), "Authorization: Bearer %s", k_read);
    const char *both[] = {a, b, NULL};
    gh_resp_t r = request("GET", "/v1/workflows", NULL, both);
    assert_problem(&r, 401, "two credentials");
    gh_resp_free(&r);
    /* A key differing in its last character, a prefix, a longer key, bad characters. */
    char near[64];
    snprintf(near, sizeof(near), "%s", k_read);
    near[strlen(near) - 1] ^= 1;
    const char *wrong[] = {near, "read-key-0123456789abcde", "read-key-0123456789abcdef0",
                           "read-key-0123456789abcde\xc3\xa9", "read key 0123456789abcdef"};
    for (size_t i = 0; i < SG_ARRAY_LEN(wrong); i++) {
        snprintf(h, sizeof(h), "X-API-Key: %s", wrong[i]);
        r = get_with("/v1/workflows", h);
        assert_problem(&r, 401, wrong[i]);
        gh_resp_free(&r);
    }
    /* A JWT where an API key goes is not an API key. */
    char c[1024], t[2048];
    claims(c, sizeof(c), "\"admin\"", 600, "");
    char *tok = rs256(c);
    snprintf(t, sizeof(t), "X-API-Key: %s", tok);
    free(tok);
    r = get_with("/v1/workflows", t);
    assert_problem(&r, 401, "JWT in X-API-Key");
    gh_resp_free(&r);
    /* The HS256 gateway has no keys. */
    snprintf(h, sizeof(h), "X-API-Key: %s", k_admin);
    const char *hh[] = {h, NULL};
    r = request_to(fx->base_hs, "GET", "/v1/workflows", NULL, 0, hh);
    assert_problem(&r, 401, "key where none are configured");
    gh_resp_free(&r);
}

static void test_hash_key_cli(void **state)
{
    (void)state;
    char in[] = "admin-key-0123456789abcdef\n", out[128] = "", errs[512] = "";
    FILE *fi = fmemopen(in, strlen(in), "r"), *fo = fmemopen(out, sizeof(out), "w");
    FILE *fe = fmemopen(errs, sizeof(errs), "w");
    assert_int_equal(sg_auth_hash_key_cli(fi, fo, fe), 0);
    fclose(fi);
    fclose(fo);
    char want[65];
    sg_sha256_hex(k_admin, strlen(k_admin), want);
    assert_int_equal(strlen(out), 65);
    assert_memory_equal(out, want, 64);
    assert_int_equal(out[64], '\n');
    fclose(fe);
    const char *bad[] = {"", "short\n", "has space in it 0123456789\n",
                         "two\nlines-0123456789abc\n"};
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%s", bad[i]);
        fi = fmemopen(buf, strlen(buf) + (strlen(buf) == 0), "r");
        fo = fmemopen(out, sizeof(out), "w");
        fe = fmemopen(errs, sizeof(errs), "w");
        assert_int_equal(sg_auth_hash_key_cli(fi, fo, fe), 2);
        fclose(fi);
        fclose(fo);
        fclose(fe);
        assert_non_null(strstr(errs, "--hash-key"));
    }
}

/* ---- JWT ---- */

static long status_of(const char *base, const char *header)
{
    const char *h[] = {header, NULL};
    gh_resp_t r = request_to(base, "GET", "/v1/workflows", NULL, 0, h);
    long s = r.status;
    gh_resp_free(&r);
    return s;
}

static void test_jwt_claims(void **state)
{
    (void)state;
    char c[1024], h[2048];
    long now = (long)time(NULL);
    struct {
        const char *claims; /* TIME: the time given next */
        long exp;
        long want;
    } cases[] = {
        {"{\"iss\":\"" ISSUER "\",\"aud\":\"sagad\",\"exp\":TIME,\"scope\":[\"read\"]}", now + 60,
         200},
        {"{\"iss\":\"" ISSUER "\",\"aud\":[\"x\",\"sagad\"],\"exp\":TIME,\"scope\":\"read\"}",
         now + 60, 200},
        /* Expired 2 s ago, within the 30 s leeway; then 120 s ago, past it. */
        {"{\"iss\":\"" ISSUER "\",\"aud\":\"sagad\",\"exp\":TIME,\"scope\":\"read\"}", now - 2,
         200},
        {"{\"iss\":\"" ISSUER "\",\"aud\":\"sagad\",\"exp\":TIME,\"scope\":\"read\"}", now - 120,
         401},
        {"{\"iss\":\"" ISSUER "\",\"aud\":\"other\",\"exp\":TIME,\"scope\":\"read\"}", now + 60,
         401},
        {"{\"aud\":\"sagad\",\"exp\":TIME,\"scope\":\"read\"}", now + 60, 401},
        {"{\"iss\":\"" ISSUER "\",\"exp\":TIME,\"scope\":\"read\"}", now + 60, 401},
        {"{\"iss\":\"" ISSUER "\",\"aud\":\"sagad\",\"exp\":\"TIME\",\"scope\":\"read\"}", now + 60,
         401},
        {"{\"iss\":\"" ISSUER "\",\"aud\":\"sagad\",\"exp\":TIME,\"scope\":{\"read\":1}}", now + 60,
         401},
        /* Not valid for another 10 minutes; valid since a minute ago. */
        {"{\"iss\":\"" ISSUER
         "\",\"aud\":\"sagad\",\"nbf\":TIME,\"exp\":4102444800,\"scope\":\"read\"}",
         now + 600, 401},
        {"{\"iss\":\"" ISSUER
         "\",\"aud\":\"sagad\",\"nbf\":TIME,\"exp\":4102444800,\"scope\":\"read\"}",
         now - 60, 200},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        char t[24];
        snprintf(t, sizeof(t), "%ld", cases[i].exp);
        subst(c, sizeof(c), cases[i].claims, "TIME", t);
        bearer(h, sizeof(h), rs256(c));
        long got = status_of(fx->h->base, h);
        if (got != cases[i].want) {
            fail_msg("claims %s: expected %ld, got %ld", c, cases[i].want, got);
        }
    }
    /* The HS256 gateway: its own secret passes, another secret and RS256 do not. */
    snprintf(c, sizeof(c), "{\"exp\":%ld,\"scope\":\"read\",\"sub\":\"svc\"}", now + 60);
    bearer(h, sizeof(h), sign(JWT_ALG_HS256, HS_SECRET, strlen(HS_SECRET), c));
    assert_int_equal(status_of(fx->base_hs, h), 200);
    bearer(h, sizeof(h), sign(JWT_ALG_HS256, HS_SECRET "x", strlen(HS_SECRET) + 1, c));
    assert_int_equal(status_of(fx->base_hs, h), 401);
    bearer(h, sizeof(h), sign(JWT_ALG_HS512, HS_SECRET, strlen(HS_SECRET), c));
    assert_int_equal(status_of(fx->base_hs, h), 401);
    bearer(h, sizeof(h), rs256(c));
    assert_int_equal(status_of(fx->base_hs, h), 401);
    alg_none(h, sizeof(h), c, "");
    assert_int_equal(status_of(fx->base_hs, h), 401);
    /* No exp at all is refused by default. */
    snprintf(c, sizeof(c), "{\"scope\":\"read\"}");
    bearer(h, sizeof(h), sign(JWT_ALG_HS256, HS_SECRET, strlen(HS_SECRET), c));
    assert_int_equal(status_of(fx->base_hs, h), 401);
    /* A tampered payload with the original signature. */
    snprintf(c, sizeof(c), "{\"exp\":%ld,\"scope\":\"read\"}", now + 60);
    char *tok = sign(JWT_ALG_HS256, HS_SECRET, strlen(HS_SECRET), c);
    char *dot1 = strchr(tok, '.'), *dot2 = strchr(dot1 + 1, '.');
    char forged[1024], payload[256];
    snprintf(c, sizeof(c), "{\"exp\":%ld,\"scope\":\"admin\"}", now + 60);
    b64url(c, payload, sizeof(payload));
    snprintf(forged, sizeof(forged), "Authorization: Bearer %.*s.%s%s", (int)(dot1 - tok), tok,
             payload, dot2);
    free(tok);
    assert_int_equal(status_of(fx->base_hs, forged), 401);
}

/* ---- the credentials file ---- */

static void test_auth_file_errors(void **state)
{
    (void)state;
    char hash[65];
    sg_sha256_hex(k_read, strlen(k_read), hash);
    char good_key[160];
    snprintf(good_key, sizeof(good_key), "{\"name\":\"a\",\"sha256\":\"%s\",\"scopes\":[\"read\"]}",
             hash);
    struct {
        const char *text; /* KEY: a good key object */
        const char *msg;
    } bad[] = {
        {"", "not valid JSON"},
        {"{\"keys\":[KEY]} x", "not valid JSON"},
        {"[]", "expected an object"},
        {"{}", "no credentials"},
        {"{\"keys\":[]}", "no credentials"},
        {"{\"kyes\":[KEY]}", "did you mean \"keys\""},
        {"{\"keys\":{}}", "keys: expected an array"},
        {"{\"keys\":[{\"name\":\"a\",\"sha256\":\"abc\",\"scopes\":[\"read\"]}]}", "64 hex"},
        {"{\"keys\":[{\"name\":\"a b\",\"sha256\":\"abc\",\"scopes\":[\"read\"]}]}", "name"},
        {"{\"keys\":[KEY,KEY]}", "a second key named"},
        {"{\"keys\":[{\"name\":\"a\",\"sha256\":\"0000000000000000000000000000000000000000000000"
         "000000000000000000\",\"scopes\":[\"write\"]}]}",
         "unknown scope \"write\""},
        {"{\"keys\":[{\"name\":\"a\",\"sha256\":\"0000000000000000000000000000000000000000000000"
         "000000000000000000\",\"scopes\":[]}]}",
         "non-empty array"},
        {"{\"keys\":[KEY],\"rate_limit\":{\"rate\":-1}}", "rate_limit.rate"},
        {"{\"keys\":[KEY],\"rate_limit\":{\"rate\":1,\"burst\":0}}", "rate_limit.burst"},
        {"{\"keys\":[KEY],\"rate_limit\":{\"per_second\":1}}", "unknown member"},
        {"{\"jwt\":{\"algorithm\":\"none\"}}", "jwt.algorithm"},
        {"{\"jwt\":{\"algorithm\":\"HS512\",\"secret\":\"x\"}}", "jwt.algorithm"},
        {"{\"jwt\":{\"algorithm\":\"HS256\",\"secret\":\"too short\"}}", "at least 32 bytes"},
        {"{\"jwt\":{\"algorithm\":\"HS256\"}}", "one of \"secret\""},
        {"{\"jwt\":{\"algorithm\":\"RS256\",\"secret\":\"" HS_SECRET "\"}}", "public_key_file"},
        {"{\"jwt\":{\"algorithm\":\"RS256\",\"public_key_file\":\"nope.pem\"}}", "cannot read"},
        {"{\"jwt\":{\"algorithm\":\"RS256\",\"public_key_file\":\"priv.pem\"}}",
         "never the private"},
        {"{\"jwt\":{\"algorithm\":\"HS256\",\"secret\":\"" HS_SECRET "\",\"leeway\":9999}}",
         "jwt.leeway"},
        {"{\"jwt\":{\"algorithm\":\"HS256\",\"secret\":\"" HS_SECRET "\",\"audiance\":\"x\"}}",
         "did you mean \"audience\""},
    };
    gh_write_file(fx->h->dir, "priv.pem", fx->priv);
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        char text[1024], err[512] = "";
        subst(text, sizeof(text), bad[i].text, "KEY", good_key);
        sg_auth_t *a = (sg_auth_t *)1;
        sg_err_t rc =
            sg_auth_parse(text, strlen(text), "auth.json", fx->h->dir, &a, err, sizeof(err));
        assert_null(a);
        if (rc == SG_OK || strstr(err, bad[i].msg) == NULL ||
            strncmp(err, "auth.json: ", 11) != 0) {
            fail_msg("%s: rc %d, err \"%s\", want \"%s\"", text, rc, err, bad[i].msg);
        }
    }
    /* A file that is not there, and one that is fine. */
    char err[512] = "";
    sg_auth_t *a = NULL;
    assert_int_equal(sg_auth_load("/nonexistent/auth.json", &a, err, sizeof(err)), SG_ERR_IO);
    assert_null(a);
    char path[300];
    snprintf(path, sizeof(path), "%s/auth.json", fx->h->dir);
    assert_int_equal(sg_auth_load(path, &a, err, sizeof(err)), SG_OK);
    char what[96];
    sg_auth_describe(a, what, sizeof(what));
    assert_string_equal(what, "5 API keys, JWT RS256");
    sg_auth_free(a);
    sg_auth_free(NULL);
    /* The gateway refuses to start on a bad file rather than run open. */
    snprintf(path, sizeof(path), "%s/bad.json", fx->h->dir);
    gh_write_file(fx->h->dir, "bad.json", "{\"keys\":[]}");
    sg_gateway_opts_t o = {
        .listen = "127.0.0.1:0", .db_path = fx->h->db, .driver = fx->h->d, .auth_file = path};
    sg_gateway_t *g = (sg_gateway_t *)1;
    assert_int_equal(sg_gateway_start(&o, &g, err, sizeof(err)), SG_ERR_INVALID);
    assert_null(g);
    assert_non_null(strstr(err, "no credentials"));
}

/* ---- rate limits ---- */

static void test_rate_buckets(void **state)
{
    (void)state;
    gw_ratelimit_t *rl = gw__rl_new(3);
    assert_non_null(rl);
    uint64_t t = 1000000;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(gw__rl_take(rl, "a", 1, 3, t), 0);
    }
    assert_int_equal(gw__rl_take(rl, "a", 1, 3, t), 1);
    assert_int_equal(gw__rl_take(rl, "a", 1, 3, t + 999), 1);
    assert_int_equal(gw__rl_take(rl, "a", 1, 3, t + 1000), 0); /* one token back */
    assert_int_equal(gw__rl_take(rl, "a", 1, 3, t + 1000), 1);
    /* Slow rates wait longer; no rate means no limit. */
    assert_int_equal(gw__rl_take(rl, "b", 0.25, 1, t), 0);
    assert_int_equal(gw__rl_take(rl, "b", 0.25, 1, t), 4);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(gw__rl_take(rl, "c", 0, 0, t), 0);
    }
    assert_int_equal(gw__rl_count(rl), 2);
    /* Full: idle buckets go first ("b" refilled after 4 s), then the oldest. */
    assert_int_equal(gw__rl_take(rl, "d", 1, 1, t + 1500), 0);
    assert_int_equal(gw__rl_count(rl), 3);
    assert_int_equal(gw__rl_take(rl, "e", 1, 1, t + 5000), 0);
    assert_true(gw__rl_count(rl) <= 3);
    for (int i = 0; i < 50; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(gw__rl_take(rl, key, 1, 5, t + 6000), 0);
        assert_true(gw__rl_count(rl) <= 3);
    }
    gw__rl_free(rl);
    gw__rl_free(NULL);
}

static void assert_429(const gh_resp_t *r, const char *what)
{
    assert_problem(r, 429, what);
    char *end = NULL;
    long secs = strtol(r->retry_after, &end, 10);
    if (r->retry_after[0] == '\0' || *end != '\0' || secs < 1) {
        fail_msg("%s: Retry-After \"%s\"", what, r->retry_after);
    }
}

static void test_rate_limit_http(void **state)
{
    (void)state;
    char h[128];
    snprintf(h, sizeof(h), "X-API-Key: %s", k_slow); /* burst 3, then one per 1000 s */
    for (int i = 0; i < 3; i++) {
        gh_resp_t r = get_with("/v1/workflows", h);
        assert_int_equal(r.status, 200);
        gh_resp_free(&r);
    }
    gh_resp_t r = get_with("/v1/workflows", h);
    assert_429(&r, "slow key");
    assert_true(atoi(r.retry_after) >= 900);
    gh_resp_free(&r);
    /* Another caller is not affected, nor are the probes. */
    char other[128];
    snprintf(other, sizeof(other), "X-API-Key: %s", k_read);
    r = get_with("/v1/workflows", other);
    assert_int_equal(r.status, 200);
    gh_resp_free(&r);
    r = get_with("/healthz", h);
    assert_int_equal(r.status, 200);
    gh_resp_free(&r);
    /* Still refused: the bucket gets one token back per 1000 s. */
    r = get_with("/v1/workflows", h);
    assert_429(&r, "slow key again");
    gh_resp_free(&r);

    /* Without credentials: per client address. */
    char base[64];
    sg_gateway_t *g = start_gateway(&(sg_gateway_opts_t){.anon_rate = 0.001, .anon_burst = 2}, base,
                                    sizeof(base));
    for (int i = 0; i < 2; i++) {
        r = request_to(base, "GET", "/v1/instances", NULL, 0, NULL);
        assert_int_equal(r.status, 200);
        gh_resp_free(&r);
    }
    r = request_to(base, "POST", "/v1/workflows/gw_ok/instances", "{}", 2, NULL);
    assert_429(&r, "anonymous caller");
    assert_non_null(strstr(gh_str(r.json, "detail"), "ip:127.0.0.1"));
    gh_resp_free(&r);
    r = request_to(base, "GET", "/readyz", NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    gh_resp_free(&r);
    sg_gateway_stop(g);
}

/* ---- size limits and hostile requests ---- */

static char *repeat_body(const char *head, const char *unit, size_t times, const char *tail)
{
    size_t n = strlen(head) + strlen(unit) * times + strlen(tail);
    char *b = malloc(n + 1);
    assert_non_null(b);
    size_t o = (size_t)sprintf(b, "%s", head);
    for (size_t i = 0; i < times; i++) {
        o += (size_t)sprintf(b + o, "%s", unit);
    }
    sprintf(b + o, "%s", tail);
    return b;
}

static void test_body_limits(void **state)
{
    (void)state;
    char h[128];
    snprintf(h, sizeof(h), "X-API-Key: %s", k_start);
    const char *hdrs[] = {h, NULL};
    const char *path = "/v1/workflows/gw_ok/instances";
    /* 413 over the limit, announced; without credentials 401 comes first. */
    char *big = repeat_body("{\"n\":1,\"pad\":\"", "x", MAX_BODY, "\"}");
    gh_resp_t r = request_to(fx->h->base, "POST", path, big, strlen(big), hdrs);
    assert_problem(&r, 413, "body over the limit");
    gh_resp_free(&r);
    r = request_to(fx->h->base, "POST", path, big, strlen(big), NULL);
    assert_problem(&r, 401, "big body without credentials");
    gh_resp_free(&r);
    free(big);
    /* Nested too deep, and too many values: 400 with the place. */
    char *deep = repeat_body("{\"n\":", "[", GW_JSON_MAX_DEPTH, "");
    char *deep2 = repeat_body(deep, "]", GW_JSON_MAX_DEPTH, "}");
    r = request_to(fx->h->base, "POST", path, deep2, strlen(deep2), hdrs);
    assert_problem(&r, 400, "deep JSON");
    assert_non_null(strstr(gh_str(r.json, "detail"), "nested deeper than 32 levels"));
    gh_resp_free(&r);
    free(deep);
    free(deep2);
    char *wide = repeat_body("{\"n\":1,\"a\":[0", ",0", GW_JSON_MAX_VALUES, "]}");
    assert_true(strlen(wide) < MAX_BODY);
    r = request_to(fx->h->base, "POST", path, wide, strlen(wide), hdrs);
    assert_problem(&r, 400, "wide JSON");
    assert_non_null(strstr(gh_str(r.json, "detail"), "more than 100000 values"));
    gh_resp_free(&r);
    free(wide);
    /* Brackets inside strings do not count. */
    char *quoted = repeat_body("{\"n\":1,\"s\":\"", "[{", 100, "\"}");
    r = request_to(fx->h->base, "POST", path, quoted, strlen(quoted), hdrs);
    assert_int_equal(r.status, 201);
    gh_resp_free(&r);
    free(quoted);
}

static void test_header_limits_and_routing(void **state)
{
    (void)state;
    char auth[128];
    snprintf(auth, sizeof(auth), "X-API-Key: %s", k_read);
    /* One field too long, too many fields, too much in all. */
    char *field = repeat_body("X-Big: ", "a", 9000, "");
    const char *one[] = {auth, field, NULL};
    gh_resp_t r = request("GET", "/v1/workflows", NULL, one);
    assert_problem(&r, 431, "long header");
    gh_resp_free(&r);
    const char *many[130];
    char lines[128][32];
    many[0] = auth;
    for (int i = 0; i < 128; i++) {
        snprintf(lines[i], sizeof(lines[i]), "X-H%d: v", i);
        many[i + 1] = lines[i];
    }
    many[129] = NULL;
    r = request("GET", "/v1/workflows", NULL, many);
    assert_problem(&r, 431, "many headers");
    gh_resp_free(&r);
    char *a = repeat_body("X-A: ", "a", 7000, ""), *b = repeat_body("X-B: ", "b", 7000, "");
    char *c = repeat_body("X-C: ", "c", 7000, "");
    const char *sum[] = {auth, a, b, c, NULL};
    r = request("GET", "/v1/workflows", NULL, sum);
    assert_problem(&r, 431, "headers too large in all");
    gh_resp_free(&r);
    /* Past what a connection may hold: libmicrohttpd's own 431 (HTML), never a 5xx. */
    char *huge = repeat_body("X-Huge: ", "h", 100000, "");
    const char *hh[] = {huge, NULL};
    r = request("GET", "/healthz", NULL, hh);
    assert_int_equal(r.status, 431);
    gh_resp_free(&r);
    free(huge);
    /* A long path: ours (problem+json) under the connection's memory, libmicrohttpd's
     * past it. */
    char *url = repeat_body("/v1/", "x", 20000, "");
    r = request("GET", url, NULL, NULL);
    assert_problem(&r, 414, "long path");
    gh_resp_free(&r);
    free(url);
    url = repeat_body("/v1/", "x", 100000, "");
    r = request("GET", url, NULL, NULL);
    assert_int_equal(r.status, 414);
    gh_resp_free(&r);
    free(url);
    free(field);
    free(a);
    free(b);
    free(c);
    /* 404 and 405 come before credentials: they say nothing about the data. */
    r = get_with("/v1/nope", NULL);
    assert_problem(&r, 404, "unknown route");
    gh_resp_free(&r);
    r = request("DELETE", "/v1/instances/x", NULL, NULL);
    assert_problem(&r, 405, "wrong method");
    assert_string_equal(r.allow, "GET, HEAD");
    gh_resp_free(&r);
    r = request("GET", "/v1/workflows/gw_ok/instances", NULL, NULL);
    assert_problem(&r, 405, "wrong method");
    assert_string_equal(r.allow, "POST");
    gh_resp_free(&r);
    r = request("PUT", "/readyz", "{}", NULL);
    assert_problem(&r, 405, "wrong method on a probe");
    gh_resp_free(&r);
    /* Hostile values in credentials never become a 5xx. */
    const char *odd[] = {"Authorization: Bearer ....",
                         "Authorization: Bearer ...x",
                         "Authorization: Bearer x..",
                         "Authorization: Bearer =.=.=",
                         "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.%%%.x",
                         "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJ9.x",
                         "Authorization: Bearer bnVsbA.bnVsbA.bnVsbA",
                         "X-API-Key: ",
                         "Authorization: Bearer \x01\x02"};
    for (size_t i = 0; i < SG_ARRAY_LEN(odd); i++) {
        r = get_with("/v1/instances", odd[i]);
        assert_problem(&r, 401, odd[i]);
        gh_resp_free(&r);
    }
}

static void test_body_check(void **state)
{
    (void)state;
    char msg[200];
    char *ok = repeat_body("{\"a\":", "[", GW_JSON_MAX_DEPTH - 1, "");
    char *ok2 = repeat_body(ok, "]", GW_JSON_MAX_DEPTH - 1, "}");
    assert_true(gw__body_check(ok2, strlen(ok2), msg, sizeof(msg)));
    char *no = repeat_body("{\"a\":", "{\"b\":", GW_JSON_MAX_DEPTH, "1");
    char *no2 = repeat_body(no, "}", GW_JSON_MAX_DEPTH + 1, "");
    assert_false(gw__body_check(no2, strlen(no2), msg, sizeof(msg)));
    assert_non_null(strstr(msg, "line 1, column"));
    free(ok);
    free(ok2);
    free(no);
    free(no2);
    const char *good[] = {"{}", " {\"a\":\"[[[\\\"[[\"} \n", "{\"a\":\"\\\\\",\"b\":[1,2]}"};
    for (size_t i = 0; i < SG_ARRAY_LEN(good); i++) {
        if (!gw__body_check(good[i], strlen(good[i]), msg, sizeof(msg))) {
            fail_msg("%s: %s", good[i], msg);
        }
    }
    const char *bad[] = {"", "[]", "{", "{}{}", "{\"a\":1,}", "\"{}\"", "{\"a\":\"\\\"}"};
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        msg[0] = '\0';
        assert_false(gw__body_check(bad[i], strlen(bad[i]), msg, sizeof(msg)));
        assert_true(msg[0] != '\0');
    }
    assert_false(gw__body_check("{}\0", 3, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "NUL"));
}

/* ---- listening, connections ---- */

static void test_listen_needs_credentials(void **state)
{
    (void)state;
    char err[512] = "", auth[300];
    snprintf(auth, sizeof(auth), "%s/auth.json", fx->h->dir);
    sg_gateway_opts_t o = {.listen = "0.0.0.0:0", .db_path = fx->h->db, .driver = fx->h->d};
    const char *elsewhere[] = {"0.0.0.0:0", "[::]:0", "10.1.2.3:0", "192.168.1.1:8080"};
    for (size_t i = 0; i < SG_ARRAY_LEN(elsewhere); i++) {
        sg_gateway_t *g = (sg_gateway_t *)1;
        o.listen = elsewhere[i];
        assert_int_equal(sg_gateway_start(&o, &g, err, sizeof(err)), SG_ERR_INVALID);
        assert_null(g);
        assert_non_null(strstr(err, "loopback"));
        assert_non_null(strstr(err, "--auth"));
    }
    /* With credentials any address will do; a host name still will not. */
    o.auth_file = auth;
    o.listen = "0.0.0.0:0";
    sg_gateway_t *g = NULL;
    assert_int_equal(sg_gateway_start(&o, &g, err, sizeof(err)), SG_OK);
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%u", sg_gateway_port(g));
    gh_resp_t r = request_to(base, "GET", "/v1/workflows", NULL, 0, NULL);
    assert_problem(&r, 401, "wildcard address with credentials");
    gh_resp_free(&r);
    sg_gateway_stop(g);
    o.listen = "example.com:0";
    g = (sg_gateway_t *)1;
    assert_int_equal(sg_gateway_start(&o, &g, err, sizeof(err)), SG_ERR_INVALID);
    assert_null(g);
    assert_non_null(strstr(err, "numeric"));

    /* Without credentials it says so in its log. */
    char log_path[300];
    snprintf(log_path, sizeof(log_path), "%s/log.txt", fx->h->dir);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    sg_log_set_fd(fd);
    sg_log_set_level(SG_LOG_WARN);
    g = start_gateway(&(sg_gateway_opts_t){.listen = "127.0.0.1:0"}, base, sizeof(base));
    sg_gateway_stop(g);
    sg_log_set_fd(2);
    sg_log_set_level(SG_LOG_ERROR);
    close(fd);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(sg_file_read(log_path, 1 << 16, &text, &len), SG_OK);
    assert_non_null(strstr(text, "WITHOUT authentication"));
    assert_non_null(strstr(text, "\"level\":\"warn\""));
    sg_free(text);
}

static int connect_to(uint16_t port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
    /* A bound on every wait: a server that never answers fails the test instead. */
    struct timeval tv = {.tv_sec = 30};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return s;
}

/* Sends a request on s and reads until the end of the headers, or EOF/reset (-1). */
static int exchange(int s, const char *req, char *buf, size_t cap)
{
    if (send(s, req, strlen(req), MSG_NOSIGNAL) < 0) {
        return -1;
    }
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t n = recv(s, buf + got, cap - 1 - got, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return -1;
        }
        assert_true(n > 0); /* not a timeout */
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL) {
            return (int)got;
        }
    }
    return (int)got;
}

static void test_connection_limit_and_timeout(void **state)
{
    (void)state;
    char base[64], buf[2048];
    const char *req = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    /* Two connections allowed: two kept-alive ones fill them, a third is closed unserved. */
    sg_gateway_t *g = start_gateway(&(sg_gateway_opts_t){.max_conns = 2}, base, sizeof(base));
    uint16_t port = sg_gateway_port(g);
    int a = connect_to(port), b = connect_to(port);
    assert_true(exchange(a, req, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "200 OK"));
    assert_true(exchange(b, req, buf, sizeof(buf)) > 0);
    int c = connect_to(port);
    assert_int_equal(exchange(c, req, buf, sizeof(buf)), -1);
    close(c);
    close(a);
    /* A freed slot serves again (the server notices the close on its own thread). */
    bool served = false;
    for (int i = 0; i < POLL_TRIES && !served; i++) {
        c = connect_to(port);
        served = exchange(c, req, buf, sizeof(buf)) > 0;
        close(c);
        if (!served) {
            gh_sleep_ms(POLL_WAIT_MS);
        }
    }
    assert_true(served);
    close(b);
    sg_gateway_stop(g);

    /* A client that stops sending mid-request is cut off after the idle timeout. */
    g = start_gateway(&(sg_gateway_opts_t){.timeout_s = 1}, base, sizeof(base));
    int s = connect_to(sg_gateway_port(g));
    assert_true(send(s, "GET /healthz HTTP/1.1\r\nHost:", 28, MSG_NOSIGNAL) == 28);
    ssize_t n = recv(s, buf, sizeof(buf), 0);
    int e = errno;
    if (!(n == 0 || (n < 0 && e == ECONNRESET))) {
        fail_msg("expected the server to close the connection: recv %zd, %s", n, strerror(e));
    }
    close(s);
    sg_gateway_stop(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_table),
        cmocka_unit_test(test_scope_rules),
        cmocka_unit_test(test_every_route_refuses_bad_credentials),
        cmocka_unit_test(test_every_route_checks_scope),
        cmocka_unit_test(test_open_routes_and_readyz),
        cmocka_unit_test(test_api_keys),
        cmocka_unit_test(test_hash_key_cli),
        cmocka_unit_test(test_jwt_claims),
        cmocka_unit_test(test_auth_file_errors),
        cmocka_unit_test(test_rate_buckets),
        cmocka_unit_test(test_rate_limit_http),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_header_limits_and_routing),
        cmocka_unit_test(test_body_check),
        cmocka_unit_test(test_listen_needs_credentials),
        cmocka_unit_test(test_connection_limit_and_timeout),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
