/*
 * libFuzzer target for the body of POST /v1/workflows/{name}/instances, the path a
 * request body takes through sagad: the gateway's check (gw__body_check: one JSON object,
 * no NUL, nesting and value count bounded), then what the driver does with an accepted
 * body: cJSON_Parse of the text and validation against the workflow's input schema (here
 * a fixed order-shaped schema using most keywords).
 *
 * Besides crashes and leaks it checks the contracts the handler relies on: a refusal
 * always carries a message (it becomes the 400's detail), an accepted body always parses
 * to an object the way the driver parses it and within the depth limit (so the check's
 * own scan agrees with cJSON), and a schema verdict always agrees with its error list,
 * which never grows past its cap.
 */
#include "gateway/gateway_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ERRORS_CAP 20

static const char schema_text[] =
    "{\"type\":\"object\",\"required\":[\"order_id\"],\"additionalProperties\":false,"
    "\"properties\":{"
    "\"order_id\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64,"
    "\"pattern\":\"^[A-Za-z0-9_-]+$\"},"
    "\"items\":{\"type\":\"array\",\"maxItems\":50,\"items\":{\"type\":\"object\","
    "\"required\":[\"sku\",\"qty\"],\"properties\":{\"sku\":{\"type\":\"string\"},"
    "\"qty\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000}}}},"
    "\"amount\":{\"type\":\"number\",\"exclusiveMinimum\":0},"
    "\"currency\":{\"enum\":[\"EUR\",\"USD\"]},"
    "\"note\":{\"type\":[\"string\",\"null\"],\"maxLength\":200},"
    "\"customer\":{\"type\":\"object\",\"properties\":{\"email\":{\"type\":\"string\","
    "\"format\":\"email\"}}}}}";

static sg_jsonschema_t *schema;

/* Nesting of v (a scalar is 1), counted no further than limit + 1. */
static int depth(const cJSON *v, int limit)
{
    int deepest = 0;
    if (limit >= 0) {
        for (const cJSON *c = v->child; c != NULL; c = c->next) {
            int d = depth(c, limit - 1);
            deepest = d > deepest ? d : deepest;
        }
    }
    return 1 + deepest;
}

static void validate(const cJSON *input)
{
    sg_jsonschema_errors_t errs;
    sg_jsonschema_errors_init(&errs, ERRORS_CAP);
    bool ok = sg_jsonschema_validate(schema, input, &errs);
    if (errs.count > errs.cap || ok != (errs.count + errs.dropped == 0)) {
        abort();
    }
    for (size_t i = 0; i < errs.count; i++) {
        const sg_jsonschema_error_t *e = &errs.items[i];
        if (e->path == NULL || e->message == NULL || e->keyword == NULL) {
            abort(); /* the 400's errors[] needs all three */
        }
    }
    sg_jsonschema_errors_fini(&errs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (schema == NULL) {
        cJSON *doc = cJSON_Parse(schema_text);
        schema = doc != NULL ? sg_jsonschema_compile(doc, NULL) : NULL;
        cJSON_Delete(doc);
        if (schema == NULL) {
            abort();
        }
    }
    /* The gateway hands handlers a NUL-terminated copy of the body. */
    char *body = malloc(size + 1);
    if (body == NULL) {
        return 0;
    }
    memcpy(body, data, size);
    body[size] = '\0';
    char msg[200];
    msg[0] = '\0';
    if (!gw__body_check(body, size, msg, sizeof(msg))) {
        if (msg[0] == '\0') {
            abort();
        }
        free(body);
        return 0;
    }
    cJSON *input = cJSON_Parse(body); /* as sg_driver_start_saga does */
    if (!cJSON_IsObject(input)) {
        abort();
    }
    /* Containers count as levels; the scalars inside the deepest one do not. */
    if (depth(input, GW_JSON_MAX_DEPTH + 1) > GW_JSON_MAX_DEPTH + 1) {
        abort();
    }
    validate(input);
    cJSON_Delete(input);
    free(body);
    return 0;
}
