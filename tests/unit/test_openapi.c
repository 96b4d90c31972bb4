/*
 * Tests of gateway/openapi.json as built into sagad (GET /v1/openapi.json) against the
 * gateway's route table: every route is documented with its method, path and scope, no
 * operation is documented that the table lacks, every secured operation lists the
 * answers of authentication and rate limits, and every internal $ref resolves. A route
 * added without its documentation (or the reverse) fails here.
 */
/* cmocka.h needs these first; the blank line keeps clang-format from reordering them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "gateway/gateway_int.h"

extern const unsigned char gw__openapi_json[];
extern const size_t gw__openapi_json_len;

static cJSON *doc;

static const char *const methods[] = {"get", "put", "post", "delete", "options", "head", "patch"};

static const cJSON *member(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static void lower(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++) {
        out[i] = (char)tolower((unsigned char)in[i]);
    }
    out[i] = '\0';
}

/* The route's operation in the document, or NULL. Route patterns and OpenAPI paths share
 * the {name} placeholder syntax, so they compare as they are. */
static const cJSON *operation(const gw_route_t *rt)
{
    char m[16];
    lower(rt->method, m, sizeof(m));
    return member(member(member(doc, "paths"), rt->pattern), m);
}

static const char *scope_text(unsigned scope)
{
    return scope == GW_OPEN ? "open" : sg_scope_name(scope);
}

static void test_every_route_is_documented(void **state)
{
    (void)state;
    for (size_t i = 0; i < gw__n_routes; i++) {
        const gw_route_t *rt = &gw__routes[i];
        const cJSON *op = operation(rt);
        if (op == NULL) {
            fail_msg("%s %s is in the route table but not in gateway/openapi.json", rt->method,
                     rt->pattern);
        }
        const cJSON *scope = member(op, "x-sagad-scope");
        if (!cJSON_IsString(scope) || strcmp(scope->valuestring, scope_text(rt->scope)) != 0) {
            fail_msg("%s %s: x-sagad-scope should be \"%s\"", rt->method, rt->pattern,
                     scope_text(rt->scope));
        }
        const cJSON *desc = member(op, "description");
        assert_true(cJSON_IsString(desc));
        if (rt->scope != GW_OPEN) {
            char want[64];
            snprintf(want, sizeof(want), "Scope: `%s`", scope_text(rt->scope));
            if (strstr(desc->valuestring, want) == NULL) {
                fail_msg("%s %s: the description must say %s", rt->method, rt->pattern, want);
            }
        }
        assert_true(cJSON_IsString(member(op, "operationId")));
    }
}

static void test_every_operation_is_routed(void **state)
{
    (void)state;
    size_t ops = 0;
    const cJSON *path;
    cJSON_ArrayForEach(path, member(doc, "paths"))
    {
        for (size_t k = 0; k < SG_ARRAY_LEN(methods); k++) {
            if (member(path, methods[k]) == NULL) {
                continue;
            }
            ops++;
            bool routed = false;
            for (size_t i = 0; i < gw__n_routes && !routed; i++) {
                char m[16];
                lower(gw__routes[i].method, m, sizeof(m));
                routed =
                    strcmp(gw__routes[i].pattern, path->string) == 0 && strcmp(m, methods[k]) == 0;
            }
            if (!routed) {
                fail_msg("%s %s is documented but not in the route table", methods[k],
                         path->string);
            }
        }
    }
    assert_int_equal(ops, gw__n_routes);
}

/* Secured operations list 401, 403 and 429; open ones need no credentials. */
static void test_security_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < gw__n_routes; i++) {
        const gw_route_t *rt = &gw__routes[i];
        const cJSON *op = operation(rt);
        const cJSON *responses = member(op, "responses");
        const cJSON *security = member(op, "security");
        if (rt->scope == GW_OPEN) {
            assert_true(cJSON_IsArray(security) && cJSON_GetArraySize(security) == 0);
            continue;
        }
        assert_null(security); /* the document's default: an API key or a bearer token */
        static const char *const codes[] = {"401", "403", "429"};
        for (size_t k = 0; k < SG_ARRAY_LEN(codes); k++) {
            if (member(responses, codes[k]) == NULL) {
                fail_msg("%s %s does not document %s", rt->method, rt->pattern, codes[k]);
            }
        }
        /* Some 2xx answer is documented. */
        bool ok = false;
        const cJSON *r;
        cJSON_ArrayForEach(r, responses)
        {
            ok = ok || r->string[0] == '2';
        }
        assert_true(ok);
    }
    const cJSON *schemes = member(member(doc, "components"), "securitySchemes");
    assert_string_equal(member(member(schemes, "apiKey"), "name")->valuestring, "X-API-Key");
    assert_string_equal(member(member(schemes, "bearer"), "scheme")->valuestring, "bearer");
    assert_string_equal(member(member(schemes, "bearer"), "bearerFormat")->valuestring, "JWT");
}

/* Resolves "#/a/b/c" in the document. */
static const cJSON *resolve(const char *ref)
{
    if (strncmp(ref, "#/", 2) != 0) {
        return NULL;
    }
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", ref + 2);
    const cJSON *at = doc;
    char *save = NULL;
    for (char *part = strtok_r(buf, "/", &save); part != NULL && at != NULL;
         part = strtok_r(NULL, "/", &save)) {
        at = member(at, part);
    }
    return at;
}

static size_t check_refs(const cJSON *node)
{
    size_t n = 0;
    const cJSON *child;
    cJSON_ArrayForEach(child, node)
    {
        if (child->string != NULL && strcmp(child->string, "$ref") == 0) {
            if (!cJSON_IsString(child) || resolve(child->valuestring) == NULL) {
                fail_msg("unresolved $ref %s", cJSON_IsString(child) ? child->valuestring : "?");
            }
            n++;
        }
        n += check_refs(child);
    }
    return n;
}

static void test_refs_resolve(void **state)
{
    (void)state;
    assert_true(check_refs(doc) > 20);
    assert_string_equal(member(doc, "openapi")->valuestring, "3.0.3");
    /* Every error answer is a problem document. */
    const cJSON *resp;
    cJSON_ArrayForEach(resp, member(member(doc, "components"), "responses"))
    {
        if (strcmp(resp->string, "Graph") != 0) {
            assert_non_null(member(member(resp, "content"), "application/problem+json"));
        }
    }
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(gw__openapi_json[gw__openapi_json_len], '\0');
    doc = cJSON_ParseWithLength((const char *)gw__openapi_json, gw__openapi_json_len);
    if (doc == NULL) {
        fail_msg("gateway/openapi.json is not JSON near: %.40s", cJSON_GetErrorPtr());
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cJSON_Delete(doc);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_is_documented),
        cmocka_unit_test(test_every_operation_is_routed),
        cmocka_unit_test(test_security_answers),
        cmocka_unit_test(test_refs_resolve),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
