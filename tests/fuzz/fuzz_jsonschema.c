/*
 * libFuzzer target for orchestrator/jsonschema: the input is a schema JSON, a '\n', and an
 * instance JSON. Both are parsed with cJSON, the schema compiled, the instance validated.
 *
 * Besides crashes and leaks it checks the contracts callers rely on: a verdict always
 * comes with errors (and never without), validating with and without an error list
 * agrees, and the error list never grows past its cap. It must never pass anything but
 * cJSON's own output to the module: hand-built trees are the unit tests' business.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/jsonschema/jsonschema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CAP 8

static void check_list(const sg_jsonschema_errors_t *errs)
{
    if (errs->count > errs->cap) {
        abort();
    }
    for (size_t i = 0; i < errs->count; i++) {
        const sg_jsonschema_error_t *e = &errs->items[i];
        if (e->path == NULL || e->keyword == NULL || e->message == NULL) {
            abort();
        }
        if (e->path[0] != '\0' && e->path[0] != '/') {
            abort(); /* a JSON Pointer is empty or starts with '/' */
        }
    }
}

static void run(const cJSON *schema, const cJSON *instance)
{
    sg_jsonschema_errors_t errs;
    sg_jsonschema_errors_init(&errs, FUZZ_CAP);
    sg_jsonschema_t *s = sg_jsonschema_compile(schema, &errs);
    check_list(&errs);
    if ((s == NULL) != (errs.count + errs.dropped > 0)) {
        abort();
    }
    sg_jsonschema_t *s2 = sg_jsonschema_compile(schema, NULL);
    if ((s == NULL) != (s2 == NULL)) {
        abort();
    }
    sg_jsonschema_free(s2);
    sg_jsonschema_errors_fini(&errs);
    if (s == NULL) {
        return;
    }
    sg_jsonschema_errors_init(&errs, FUZZ_CAP);
    bool ok = sg_jsonschema_validate(s, instance, &errs);
    check_list(&errs);
    if (ok != (errs.count + errs.dropped == 0) || ok != sg_jsonschema_validate(s, instance, NULL)) {
        abort();
    }
    sg_jsonschema_errors_fini(&errs);
    sg_jsonschema_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nl = memchr(text, '\n', size);
    size_t schema_len = nl != NULL ? (size_t)(nl - text) : size;
    cJSON *schema = cJSON_ParseWithLength(text, schema_len);
    cJSON *instance = NULL;
    if (nl != NULL) {
        instance = cJSON_ParseWithLength(nl + 1, size - schema_len - 1);
    }
    if (schema != NULL) {
        /* A NULL instance (no '\n', or it does not parse) is a case of its own. */
        run(schema, instance);
    }
    cJSON_Delete(schema);
    cJSON_Delete(instance);
    return 0;
}
