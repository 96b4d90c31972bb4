/*
 * dsl input schema: turns the YAML `input.schema` into JSON (cJSON) with YAML's
 * scalar typing, compiles it with the jsonschema module, and maps the compiler's
 * JSON Pointers back to YAML lines so schema mistakes are located like any other.
 */
#include "orchestrator/dsl/dsl_int.h"
#include "orchestrator/jsonschema/jsonschema.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* YAML 1.2 core schema: a plain scalar may be null, a bool, an int or a float. */
static cJSON *scalar_to_json(const sg_ynode_t *n)
{
    if (!n->plain) {
        return cJSON_CreateString(n->str);
    }
    if (sg_ynode_is_null(n)) {
        return cJSON_CreateNull();
    }
    if (strcmp(n->str, "true") == 0 || strcmp(n->str, "false") == 0) {
        return cJSON_CreateBool(n->str[0] == 't');
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(n->str, &end);
    bool numeric = n->len > 0 && end != NULL && *end == '\0' && errno == 0 && isfinite(v) &&
                   strspn(n->str, "+-0123456789.eE") == n->len;
    return numeric ? cJSON_CreateNumber(v) : cJSON_CreateString(n->str);
}

static cJSON *to_json(const sg_ynode_t *n)
{
    if (n->kind == SG_YNODE_SCALAR) {
        return scalar_to_json(n);
    }
    cJSON *out = n->kind == SG_YNODE_MAP ? cJSON_CreateObject() : cJSON_CreateArray();
    for (size_t i = 0; out != NULL && i < n->count; i++) {
        const sg_ynode_t *child = n->kind == SG_YNODE_MAP ? n->pairs[i].value : n->items[i];
        cJSON *c = to_json(child);
        if (c == NULL) {
            cJSON_Delete(out);
            return NULL;
        }
        if (n->kind == SG_YNODE_MAP) {
            cJSON_AddItemToObject(out, n->pairs[i].key->str, c);
        } else {
            cJSON_AddItemToArray(out, c);
        }
    }
    return out;
}

/* Follows a JSON Pointer ("/properties/qty/minimum") through the YAML tree; returns the
 * deepest node reached, so a pointer to a missing child still lands near it. For the last
 * token of a mapping it returns the key node, which is where the keyword is written. */
static const sg_ynode_t *node_at(const sg_ynode_t *n, const char *ptr)
{
    char token[256];
    while (*ptr == '/' && n != NULL) {
        ptr++;
        size_t len = 0;
        while (*ptr && *ptr != '/' && len + 1 < sizeof(token)) {
            if (ptr[0] == '~' && (ptr[1] == '0' || ptr[1] == '1')) {
                token[len++] = ptr[1] == '0' ? '~' : '/';
                ptr += 2;
            } else {
                token[len++] = *ptr++;
            }
        }
        token[len] = '\0';
        const sg_ynode_t *next = NULL;
        if (n->kind == SG_YNODE_MAP) {
            for (size_t i = 0; i < n->count; i++) {
                if (strcmp(n->pairs[i].key->str, token) == 0) {
                    next = *ptr == '\0' ? n->pairs[i].key : n->pairs[i].value;
                }
            }
        } else if (n->kind == SG_YNODE_SEQ) {
            char *end = NULL;
            unsigned long idx = strtoul(token, &end, 10);
            if (end != NULL && *end == '\0' && idx < n->count) {
                next = n->items[idx];
            }
        }
        if (next == NULL) {
            return n;
        }
        n = next;
    }
    return n;
}

void dsl__load_input(ld_t *ld, const sg_ynode_t *n)
{
    static const char *const keys[] = {"schema"};
    if (n->kind != SG_YNODE_MAP) {
        dsl__error(ld, n->pos, NULL, "input must be a mapping with a \"schema\" key, not %s",
                   sg_ynode_kind_name(n));
        return;
    }
    for (size_t i = 0; i < n->count; i++) {
        const sg_ynode_t *k = n->pairs[i].key;
        if (strcmp(k->str, keys[0]) != 0) {
            const char *best = sg_closest(k->str, keys, 1);
            dsl__error(ld, k->pos, best ? "did you mean \"schema\"?" : NULL,
                       "unknown key \"%s\" in input", k->str);
        }
    }
    const sg_ynode_t *schema = sg_ymap_get(n, "schema");
    if (schema == NULL) {
        return;
    }
    cJSON *json = to_json(schema);
    if (json == NULL) {
        ld->nomem = true;
        return;
    }
    sg_jsonschema_errors_t errs;
    sg_jsonschema_errors_init(&errs, SG_DIAGS_DEFAULT_CAP);
    sg_jsonschema_t *compiled = sg_jsonschema_compile(json, &errs);
    for (size_t i = 0; i < errs.count; i++) {
        const sg_jsonschema_error_t *e = &errs.items[i];
        if (e->keyword[0] == '\0' && strcmp(e->message, "out of memory") == 0) {
            ld->nomem = true; /* the compiler reports OOM as a record of its own */
            continue;
        }
        dsl__error(ld, node_at(schema, e->path)->pos, e->hint, "input schema: %s", e->message);
    }
    if (compiled == NULL && errs.count == 0) {
        ld->nomem = true;
    }
    sg_jsonschema_errors_fini(&errs);
    if (compiled == NULL) {
        cJSON_Delete(json);
        return;
    }
    ld->def->input_schema = json;
    ld->def->input_validator = compiled;
}
