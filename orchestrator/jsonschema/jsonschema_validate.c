/*
 * jsonschema validator: walks an instance (saga input) in step with a compiled schema
 * and reports every violation at the instance's JSON Pointer.
 *
 * It must never modify the compiled schema (many threads may share it), never allocate
 * except for error records, and never recurse deeper than the schema: the instance comes
 * from outside, the schema's depth was bounded when it was compiled.
 */
#include <stdio.h>
#include <string.h>

#include "orchestrator/jsonschema/jsonschema_int.h"

/* Room for enum listings in messages; the full list is in the schema anyway. */
#define ENUM_MESSAGE_MAX 200

typedef struct {
    sg_jsonschema_errors_t *errs;
    size_t nfail;
    js_seg_t path[SG_JSONSCHEMA_MAX_DEPTH];
    size_t depth;
} vctx_t;

/* Without an error list the caller wants the verdict only, so the first failure ends it. */
static bool stopped(const vctx_t *v)
{
    return v->errs == NULL && v->nfail > 0;
}

__attribute__((format(printf, 4, 5))) static void fail(vctx_t *v, const char *keyword,
                                                       const char *hint, const char *fmt, ...)
{
    va_list ap;
    v->nfail++;
    va_start(ap, fmt);
    jsonschema__error_addv(v->errs, v->path, v->depth, keyword, hint, fmt, ap);
    va_end(ap);
}

static void push(vctx_t *v, const char *key, size_t index)
{
    /* Compile bounded the schema to SG_JSONSCHEMA_MAX_DEPTH levels and we descend only
     * along the schema, so the instance path cannot outgrow the array. */
    SG_ASSERT(v->depth < SG_JSONSCHEMA_MAX_DEPTH);
    v->path[v->depth++] = (js_seg_t){.key = key, .index = index};
}

static void pop(vctx_t *v)
{
    v->depth--;
}

static bool has_type(const cJSON *inst, js_type_t t)
{
    switch (t) {
    case JS_T_OBJECT:
        return cJSON_IsObject(inst);
    case JS_T_ARRAY:
        return cJSON_IsArray(inst);
    case JS_T_STRING:
        return cJSON_IsString(inst);
    case JS_T_NUMBER:
        return cJSON_IsNumber(inst);
    case JS_T_INTEGER:
        return cJSON_IsNumber(inst) && jsonschema__is_integral(inst->valuedouble);
    case JS_T_BOOLEAN:
        return cJSON_IsBool(inst);
    case JS_T_NULL:
        return cJSON_IsNull(inst);
    case JS_T__COUNT:
        break;
    }
    return false;
}

/* The most precise name: "integer" for 3 and 3.0 but "number" for 3.5. */
static const char *type_name_of(const cJSON *inst)
{
    if (cJSON_IsNumber(inst)) {
        return jsonschema__is_integral(inst->valuedouble) ? "integer" : "number";
    }
    for (size_t t = 0; t < JS_T__COUNT; t++) {
        if (has_type(inst, (js_type_t)t)) {
            return jsonschema__type_names[t];
        }
    }
    return "invalid JSON";
}

static void check_type(vctx_t *v, const js_node_t *node, const cJSON *inst)
{
    char expected[128] = "";
    size_t len = 0;
    for (size_t i = 0; i < node->ntypes; i++) {
        if (has_type(inst, (js_type_t)node->types[i])) {
            return;
        }
    }
    if (node->ntypes == 0) {
        return;
    }
    /* At most 7 names of at most 7 letters: always fits. */
    for (size_t i = 0; i < node->ntypes; i++) {
        const char *sep = i == 0 ? "" : (i + 1 == node->ntypes ? " or " : ", ");
        len += (size_t)snprintf(expected + len, sizeof(expected) - len, "%s%s", sep,
                                jsonschema__type_names[node->types[i]]);
    }
    fail(v, "type", NULL, "expected %s, got %s", expected, type_name_of(inst));
}

static void check_enum(vctx_t *v, const js_node_t *node, const cJSON *inst)
{
    for (size_t i = 0; i < node->nenum; i++) {
        if (jsonschema__value_equal(&node->enum_vals[i], inst)) {
            return;
        }
    }
    if (v->errs == NULL || v->errs->count >= v->errs->cap) {
        fail(v, "enum", NULL, "must be one of the enum values"); /* message unused */
        return;
    }
    sg_buf_t b;
    sg_buf_init(&b);
    sg_buf_puts(&b, "must be one of ");
    size_t i = 0;
    for (; i < node->nenum && b.len < ENUM_MESSAGE_MAX; i++) {
        sg_buf_puts(&b, i == 0 ? "" : ", ");
        jsonschema__value_print(&b, &node->enum_vals[i], ENUM_MESSAGE_MAX);
    }
    if (i < node->nenum) {
        sg_buf_printf(&b, ", ... (%zu values)", node->nenum);
    }
    fail(v, "enum", NULL, "%s", b.oom ? "must be one of the enum values" : b.data);
    sg_buf_fini(&b);
}

static void check_const(vctx_t *v, const js_node_t *node, const cJSON *inst)
{
    if (jsonschema__value_equal(node->const_val, inst)) {
        return;
    }
    if (v->errs == NULL || v->errs->count >= v->errs->cap) {
        fail(v, "const", NULL, "must be equal to the const value"); /* message unused */
        return;
    }
    sg_buf_t b;
    sg_buf_init(&b);
    sg_buf_puts(&b, "must be equal to ");
    jsonschema__value_print(&b, node->const_val, ENUM_MESSAGE_MAX);
    fail(v, "const", NULL, "%s", b.oom ? "must be equal to the const value" : b.data);
    sg_buf_fini(&b);
}

static bool has_limit(const js_node_t *node, js_limit_t lim)
{
    return (node->has_limit & (1u << lim)) != 0;
}

static void check_number(vctx_t *v, const js_node_t *node, double d)
{
    static const struct {
        js_limit_t lim;
        const char *op;
    } checks[] = {
        {JS_LIM_MINIMUM, ">="},
        {JS_LIM_MAXIMUM, "<="},
        {JS_LIM_EXCL_MINIMUM, ">"},
        {JS_LIM_EXCL_MAXIMUM, "<"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(checks); i++) {
        js_limit_t lim = checks[i].lim;
        double l = node->limit[lim];
        bool ok = true;
        if (!has_limit(node, lim)) {
            continue;
        }
        switch (lim) {
        case JS_LIM_MINIMUM:
            ok = d >= l;
            break;
        case JS_LIM_MAXIMUM:
            ok = d <= l;
            break;
        case JS_LIM_EXCL_MINIMUM:
            ok = d > l;
            break;
        default:
            ok = d < l;
            break;
        }
        if (!ok) {
            char text[32];
            jsonschema__fmt_num(l, text);
            fail(v, jsonschema__limit_names[lim], NULL, "must be %s %s", checks[i].op, text);
        }
    }
}

/* Length in Unicode code points: every byte that does not continue a UTF-8 sequence. */
static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        n += (*p & 0xC0) != 0x80;
    }
    return n;
}

/* Checks count against a min/max pair; `what` is the singular noun ("character"). */
static void check_count(vctx_t *v, const js_node_t *node, double count, js_limit_t min,
                        js_limit_t max, const char *verb, const char *what, const char *tail)
{
    js_limit_t lims[2] = {min, max};
    for (size_t i = 0; i < 2; i++) {
        double l = node->limit[lims[i]];
        if (!has_limit(node, lims[i]) || (i == 0 ? count >= l : count <= l)) {
            continue;
        }
        char text[32];
        jsonschema__fmt_num(l, text);
        fail(v, jsonschema__limit_names[lims[i]], NULL, "must %s at %s %s %s%s%s", verb,
             i == 0 ? "least" : "most", text, what, l == 1 ? "" : "s", tail);
    }
}

static void check_string(vctx_t *v, const js_node_t *node, const char *s)
{
    if (has_limit(node, JS_LIM_MIN_LENGTH) || has_limit(node, JS_LIM_MAX_LENGTH)) {
        check_count(v, node, (double)utf8_length(s), JS_LIM_MIN_LENGTH, JS_LIM_MAX_LENGTH, "be",
                    "character", " long");
    }
    if (node->pattern != NULL && !stopped(v) && strlen(s) > SG_JSONSCHEMA_PATTERN_MAX_INPUT) {
        fail(v, "pattern", "bound the length with maxLength",
             "is longer than %d bytes, too long to be matched against pattern \"%s\"",
             SG_JSONSCHEMA_PATTERN_MAX_INPUT, node->pattern);
    } else if (node->pattern != NULL && !stopped(v)) {
        /* POSIX allows concurrent regexec on one regex_t; glibc locks inside. */
        int rc = regexec(&node->re, s, 0, NULL, 0);
        if (rc == REG_NOMATCH) {
            fail(v, "pattern", NULL, "must match pattern \"%s\"", node->pattern);
        } else if (rc != 0) {
            fail(v, "pattern", NULL, "could not be matched against pattern \"%s\"", node->pattern);
        }
    }
}

static void validate_node(vctx_t *v, const js_node_t *node, const cJSON *inst);

static void check_array(vctx_t *v, const js_node_t *node, const cJSON *inst)
{
    if (has_limit(node, JS_LIM_MIN_ITEMS) || has_limit(node, JS_LIM_MAX_ITEMS)) {
        check_count(v, node, (double)cJSON_GetArraySize(inst), JS_LIM_MIN_ITEMS, JS_LIM_MAX_ITEMS,
                    "have", "item", "");
    }
    if (node->items == NULL) {
        return;
    }
    size_t i = 0;
    for (const cJSON *c = inst->child; c != NULL && !stopped(v); c = c->next, i++) {
        push(v, NULL, i);
        validate_node(v, node->items, c);
        pop(v);
    }
}

static const js_node_t *find_prop_schema(const js_node_t *node, const char *name)
{
    for (size_t i = 0; i < node->nprops; i++) {
        if (strcmp(node->props[i].name, name) == 0) {
            return node->props[i].schema;
        }
    }
    return NULL;
}

static void check_member(vctx_t *v, const js_node_t *node, const cJSON *m)
{
    const char *key = m->string != NULL ? m->string : "";
    const js_node_t *sub = find_prop_schema(node, key);
    char buf[128];
    push(v, key, 0);
    if (sub != NULL) {
        validate_node(v, sub, m);
    } else if (node->additional != NULL && node->additional->boolean == 0) {
        fail(v, "additionalProperties",
             jsonschema__did_you_mean(buf, key, node->prop_names, node->nprops),
             "unexpected property \"%s\"", key);
    } else if (node->additional != NULL) {
        validate_node(v, node->additional, m);
    }
    pop(v);
}

static void check_object(vctx_t *v, const js_node_t *node, const cJSON *inst)
{
    for (size_t i = 0; i < node->nrequired && !stopped(v); i++) {
        if (cJSON_GetObjectItemCaseSensitive(inst, node->required[i]) == NULL) {
            push(v, node->required[i], 0);
            fail(v, "required", NULL, "missing required property \"%s\"", node->required[i]);
            pop(v);
        }
    }
    if (node->nprops == 0 && node->additional == NULL) {
        return;
    }
    for (const cJSON *m = inst->child; m != NULL && !stopped(v); m = m->next) {
        check_member(v, node, m);
    }
}

static void validate_node(vctx_t *v, const js_node_t *node, const cJSON *inst)
{
    if (stopped(v)) {
        return;
    }
    if (node->boolean >= 0) {
        if (node->boolean == 0) {
            fail(v, "false", NULL, "no value is allowed here");
        }
        return;
    }
    check_type(v, node, inst);
    if (node->const_val != NULL && !stopped(v)) {
        check_const(v, node, inst);
    }
    if (node->nenum > 0 && !stopped(v)) {
        check_enum(v, node, inst);
    }
    if (stopped(v)) {
        return;
    }
    if (cJSON_IsNumber(inst)) {
        check_number(v, node, inst->valuedouble);
    } else if (cJSON_IsString(inst) && inst->valuestring != NULL) {
        check_string(v, node, inst->valuestring);
    } else if (cJSON_IsArray(inst)) {
        check_array(v, node, inst);
    } else if (cJSON_IsObject(inst)) {
        check_object(v, node, inst);
    }
}

bool sg_jsonschema_validate(const sg_jsonschema_t *s, const cJSON *instance,
                            sg_jsonschema_errors_t *errs)
{
    vctx_t v = {.errs = errs};
    SG_ASSERT(s != NULL);
    if (instance == NULL) {
        fail(&v, "", NULL, "no JSON value");
        return false;
    }
    validate_node(&v, s->root, instance);
    return v.nfail == 0;
}
