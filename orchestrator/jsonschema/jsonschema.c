/*
 * jsonschema compiler: checks a schema written by a saga author and turns it into an
 * immutable tree of js_node_t that the validator (jsonschema_validate.c) walks. Also owns
 * the error list, which both halves fill.
 *
 * Every problem is reported at the JSON Pointer of the offending keyword, and compiling
 * goes on after a problem so one run shows them all. It must never accept a keyword it
 * does not enforce, and never keep a pointer into the caller's cJSON tree.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/jsonschema/jsonschema_int.h"

const char *const jsonschema__type_names[JS_T__COUNT] = {
    "object", "array", "string", "number", "integer", "boolean", "null",
};

const char *const jsonschema__limit_names[JS_LIM__COUNT] = {
    "minimum",   "maximum",   "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "minItems",         "maxItems",
};

/* ---- error list ---- */

void sg_jsonschema_errors_init(sg_jsonschema_errors_t *e, size_t cap)
{
    memset(e, 0, sizeof(*e));
    e->cap = cap;
}

void sg_jsonschema_errors_fini(sg_jsonschema_errors_t *e)
{
    for (size_t i = 0; i < e->count; i++) {
        sg_free(e->items[i].path);
        sg_free(e->items[i].keyword);
        sg_free(e->items[i].message);
        sg_free(e->items[i].hint);
    }
    sg_free(e->items);
    memset(e, 0, sizeof(*e));
}

/* Makes room for one more record. The array doubles from 4 up to cap, so its size follows
 * from count alone and the public struct needs no extra field. */
static bool errors_reserve(sg_jsonschema_errors_t *e)
{
    size_t n = e->count;
    if (n != 0 && (n < 4 || (n & (n - 1)) != 0)) {
        return true;
    }
    size_t want = n == 0 ? 4 : 2 * n;
    if (want > e->cap) {
        want = e->cap;
    }
    sg_jsonschema_error_t *items = sg_realloc(e->items, want * sizeof(*items));
    if (items == NULL) {
        return false;
    }
    e->items = items;
    return true;
}

static void put_pointer_key(sg_buf_t *b, const char *key)
{
    /* RFC 6901: '~' becomes "~0" and '/' becomes "~1"; nothing else is escaped. */
    const char *run = key;
    for (const char *p = key; *p != '\0'; p++) {
        if (*p == '~' || *p == '/') {
            sg_buf_append(b, run, (size_t)(p - run));
            sg_buf_puts(b, *p == '~' ? "~0" : "~1");
            run = p + 1;
        }
    }
    sg_buf_puts(b, run);
}

static char *pointer_new(const js_seg_t *path, size_t depth)
{
    sg_buf_t b;
    sg_buf_init(&b);
    for (size_t i = 0; i < depth; i++) {
        sg_buf_puts(&b, "/");
        if (path[i].key != NULL) {
            put_pointer_key(&b, path[i].key);
        } else {
            sg_buf_printf(&b, "%zu", path[i].index);
        }
    }
    return sg_buf_take(&b);
}

void jsonschema__error_addv(sg_jsonschema_errors_t *errs, const js_seg_t *path, size_t depth,
                            const char *keyword, const char *hint, const char *fmt, va_list ap)
{
    if (errs == NULL) {
        return;
    }
    if (errs->count >= errs->cap || !errors_reserve(errs)) {
        errs->dropped++;
        return;
    }
    sg_jsonschema_error_t e = {
        .path = pointer_new(path, depth),
        .keyword = sg_strdup(keyword),
        .message = sg_vasprintf(fmt, ap),
        .hint = hint != NULL ? sg_strdup(hint) : NULL,
    };
    if (e.path == NULL || e.keyword == NULL || e.message == NULL ||
        (hint != NULL && e.hint == NULL)) {
        sg_free(e.path);
        sg_free(e.keyword);
        sg_free(e.message);
        sg_free(e.hint);
        errs->dropped++;
        return;
    }
    errs->items[errs->count++] = e;
}

const char *jsonschema__did_you_mean(char buf[128], const char *word, const char *const *candidates,
                                     size_t n)
{
    const char *best = sg_closest(word, candidates, n);
    if (best == NULL || strlen(best) > 100) {
        return NULL;
    }
    snprintf(buf, 128, "did you mean \"%s\"?", best);
    return buf;
}

/* ---- compiler ---- */

/* A subschema at depth d has a pointer of at most 2 * (d - 1) steps, plus the keyword and
 * an index inside it. */
#define CPATH_MAX (2 * SG_JSONSCHEMA_MAX_DEPTH + 4)

typedef struct {
    sg_jsonschema_errors_t *errs;
    size_t nerr; /* problems found, stored or not */
    bool oom;
    js_seg_t path[CPATH_MAX];
    size_t plen;
} cctx_t;

static void push_key(cctx_t *c, const char *key)
{
    SG_ASSERT(c->plen < CPATH_MAX);
    c->path[c->plen++] = (js_seg_t){.key = key};
}

static void push_index(cctx_t *c, size_t index)
{
    SG_ASSERT(c->plen < CPATH_MAX);
    c->path[c->plen++] = (js_seg_t){.key = NULL, .index = index};
}

static void pop(cctx_t *c)
{
    SG_ASSERT(c->plen > 0);
    c->plen--;
}

__attribute__((format(printf, 4, 5))) static void cerr(cctx_t *c, const char *keyword,
                                                       const char *hint, const char *fmt, ...)
{
    va_list ap;
    c->nerr++;
    va_start(ap, fmt);
    jsonschema__error_addv(c->errs, c->path, c->plen, keyword, hint, fmt, ap);
    va_end(ap);
}

static bool is_str(const cJSON *j)
{
    return cJSON_IsString(j) && j->valuestring != NULL;
}

static const char *key_of(const cJSON *j)
{
    return j->string != NULL ? j->string : "";
}

static bool is_nonneg_int(const cJSON *j)
{
    return cJSON_IsNumber(j) && j->valuedouble >= 0 && jsonschema__is_integral(j->valuedouble);
}

static const js_prop_t *find_prop(const js_node_t *node, const char *name)
{
    for (size_t i = 0; i < node->nprops; i++) {
        if (strcmp(node->props[i].name, name) == 0) {
            return &node->props[i];
        }
    }
    return NULL;
}

static js_node_t *compile_schema(cctx_t *c, const cJSON *json, size_t depth, const char *keyword,
                                 const char *what);

typedef struct kw_def kw_def_t;
typedef void (*kw_fn)(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth,
                      const kw_def_t *kw);
struct kw_def {
    const char *name;
    kw_fn fn;
    js_limit_t limit; /* for the numeric keywords */
};

static void add_type(cctx_t *c, js_node_t *node, const char *name)
{
    char buf[128];
    size_t t = 0;
    while (t < JS_T__COUNT && strcmp(name, jsonschema__type_names[t]) != 0) {
        t++;
    }
    if (t == JS_T__COUNT) {
        cerr(c, "type", jsonschema__did_you_mean(buf, name, jsonschema__type_names, JS_T__COUNT),
             "unknown type \"%s\"", name);
        return;
    }
    for (size_t i = 0; i < node->ntypes; i++) {
        if (node->types[i] == t) {
            cerr(c, "type", NULL, "duplicate type \"%s\"", name);
            return;
        }
    }
    node->types[node->ntypes++] = (unsigned char)t;
}

static void kw_type(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth, const kw_def_t *kw)
{
    (void)depth;
    (void)kw;
    if (is_str(val)) {
        add_type(c, node, val->valuestring);
        return;
    }
    if (!cJSON_IsArray(val)) {
        cerr(c, "type", NULL, "type must be a string or an array of strings");
        return;
    }
    if (val->child == NULL) {
        cerr(c, "type", NULL, "type must not be an empty array");
        return;
    }
    size_t i = 0;
    for (const cJSON *t = val->child; t != NULL; t = t->next, i++) {
        push_index(c, i);
        if (is_str(t)) {
            add_type(c, node, t->valuestring);
        } else {
            cerr(c, "type", NULL, "type entries must be strings");
        }
        pop(c);
    }
}

static size_t count_children(const cJSON *j)
{
    size_t n = 0;
    for (const cJSON *m = j->child; m != NULL; m = m->next) {
        n++;
    }
    return n;
}

static void kw_properties(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth,
                          const kw_def_t *kw)
{
    (void)kw;
    if (!cJSON_IsObject(val)) {
        cerr(c, "properties", NULL, "properties must be an object");
        return;
    }
    size_t n = count_children(val);
    if (n == 0) {
        return;
    }
    node->props = sg_calloc(n, sizeof(*node->props));
    node->prop_names = sg_calloc(n, sizeof(*node->prop_names));
    if (node->props == NULL || node->prop_names == NULL) {
        c->oom = true;
        return;
    }
    for (const cJSON *m = val->child; m != NULL && !c->oom; m = m->next) {
        const char *name = key_of(m);
        push_key(c, name);
        if (find_prop(node, name) != NULL) {
            cerr(c, "properties", NULL, "duplicate property \"%s\"", name);
        } else {
            js_prop_t *p = &node->props[node->nprops];
            p->name = sg_strdup(name);
            if (p->name == NULL) {
                c->oom = true;
            } else {
                node->prop_names[node->nprops++] = p->name;
                p->schema = compile_schema(c, m, depth + 1, "properties", "a property schema");
            }
        }
        pop(c);
    }
}

static void kw_required(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth,
                        const kw_def_t *kw)
{
    (void)depth;
    (void)kw;
    if (!cJSON_IsArray(val)) {
        cerr(c, "required", NULL, "required must be an array of strings");
        return;
    }
    size_t n = count_children(val);
    if (n == 0) {
        return;
    }
    node->required = sg_calloc(n, sizeof(*node->required));
    if (node->required == NULL) {
        c->oom = true;
        return;
    }
    size_t i = 0;
    for (const cJSON *r = val->child; r != NULL && !c->oom; r = r->next, i++) {
        push_index(c, i);
        bool dup = false;
        for (size_t k = 0; is_str(r) && k < node->nrequired && !dup; k++) {
            dup = strcmp(node->required[k], r->valuestring) == 0;
        }
        if (!is_str(r)) {
            cerr(c, "required", NULL, "required entries must be strings");
        } else if (dup) {
            cerr(c, "required", NULL, "duplicate required property \"%s\"", r->valuestring);
        } else if ((node->required[node->nrequired] = sg_strdup(r->valuestring)) == NULL) {
            c->oom = true;
        } else {
            node->nrequired++;
        }
        pop(c);
    }
}

static void kw_additional(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth,
                          const kw_def_t *kw)
{
    (void)kw;
    node->additional =
        compile_schema(c, val, depth + 1, "additionalProperties", "additionalProperties");
}

static void kw_items(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth, const kw_def_t *kw)
{
    (void)kw;
    if (cJSON_IsArray(val)) {
        cerr(c, "items", "tuple validation (items as an array) is not supported",
             "items must be an object or a boolean");
        return;
    }
    node->items = compile_schema(c, val, depth + 1, "items", "items");
}

static void kw_count(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth, const kw_def_t *kw)
{
    (void)depth;
    if (!is_nonneg_int(val)) {
        cerr(c, kw->name, NULL, "%s must be a non-negative integer", kw->name);
        return;
    }
    node->limit[kw->limit] = val->valuedouble;
    node->has_limit |= 1u << kw->limit;
}

static void kw_number(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth,
                      const kw_def_t *kw)
{
    char hint[128];
    (void)depth;
    if (!cJSON_IsNumber(val) || !isfinite(val->valuedouble)) {
        bool old_style = cJSON_IsBool(val) &&
                         (kw->limit == JS_LIM_EXCL_MINIMUM || kw->limit == JS_LIM_EXCL_MAXIMUM);
        if (old_style) {
            /* Draft 4 wrote "minimum": 0, "exclusiveMinimum": true. */
            snprintf(hint, sizeof(hint), "write the limit itself, e.g. \"%s\": 0 (draft 2020)",
                     kw->name);
        }
        cerr(c, kw->name, old_style ? hint : NULL, "%s must be a number", kw->name);
        return;
    }
    node->limit[kw->limit] = val->valuedouble;
    node->has_limit |= 1u << kw->limit;
}

/* Copies one enum/const value; problems are reported at the current path. */
static void copy_value(cctx_t *c, jv_t *dst, const cJSON *val, const char *keyword)
{
    switch (jsonschema__value_copy(dst, val)) {
    case SG_OK:
        break;
    case SG_ERR_NOMEM:
        c->oom = true;
        break;
    case SG_ERR_LIMIT:
        cerr(c, keyword, NULL, "%s value nests deeper than %d levels", keyword,
             SG_JSONSCHEMA_MAX_DEPTH);
        break;
    default:
        cerr(c, keyword, NULL, "%s value is not plain JSON", keyword);
        break;
    }
}

static void kw_enum(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth, const kw_def_t *kw)
{
    (void)depth;
    (void)kw;
    if (!cJSON_IsArray(val)) {
        cerr(c, "enum", NULL, "enum must be an array");
        return;
    }
    size_t n = count_children(val);
    if (n == 0) {
        cerr(c, "enum", NULL, "enum must not be empty");
        return;
    }
    node->enum_vals = sg_calloc(n, sizeof(*node->enum_vals));
    if (node->enum_vals == NULL) {
        c->oom = true;
        return;
    }
    node->nenum = n;
    size_t i = 0;
    for (const cJSON *v = val->child; v != NULL && !c->oom; v = v->next, i++) {
        push_index(c, i);
        copy_value(c, &node->enum_vals[i], v, "enum");
        pop(c);
    }
}

static void kw_const(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth, const kw_def_t *kw)
{
    (void)depth;
    (void)kw;
    node->const_val = sg_calloc(1, sizeof(*node->const_val));
    if (node->const_val == NULL) {
        c->oom = true;
        return;
    }
    copy_value(c, node->const_val, val, "const");
}

static void kw_pattern(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth,
                       const kw_def_t *kw)
{
    const char *hint;
    (void)depth;
    (void)kw;
    if (!is_str(val)) {
        cerr(c, "pattern", NULL, "pattern must be a string");
        return;
    }
    const char *msg = jsonschema__pattern_check(val->valuestring, &hint);
    if (msg != NULL) {
        cerr(c, "pattern", hint, "%s", msg);
        return;
    }
    int rc = regcomp(&node->re, val->valuestring, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char buf[128];
        regerror(rc, &node->re, buf, sizeof(buf));
        cerr(c, "pattern", "patterns are POSIX extended regular expressions, not ECMA-262",
             "invalid pattern: %s", buf);
        return;
    }
    node->pattern = sg_strdup(val->valuestring);
    if (node->pattern == NULL) {
        regfree(&node->re);
        c->oom = true;
    }
}

static void kw_string(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth,
                      const kw_def_t *kw)
{
    (void)node;
    (void)depth;
    if (!is_str(val)) {
        cerr(c, kw->name, NULL, "%s must be a string", kw->name);
    }
}

static void kw_examples(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth,
                        const kw_def_t *kw)
{
    (void)node;
    (void)depth;
    (void)kw;
    if (!cJSON_IsArray(val)) {
        cerr(c, "examples", NULL, "examples must be an array");
    }
}

static void kw_any(cctx_t *c, js_node_t *node, const cJSON *val, size_t depth, const kw_def_t *kw)
{
    (void)c;
    (void)node;
    (void)val;
    (void)depth;
    (void)kw;
}

/* The whole supported vocabulary: a keyword is one line here plus its checks. */
static const kw_def_t keywords[] = {
    {"type", kw_type, 0},
    {"properties", kw_properties, 0},
    {"required", kw_required, 0},
    {"additionalProperties", kw_additional, 0},
    {"items", kw_items, 0},
    {"minItems", kw_count, JS_LIM_MIN_ITEMS},
    {"maxItems", kw_count, JS_LIM_MAX_ITEMS},
    {"enum", kw_enum, 0},
    {"const", kw_const, 0},
    {"minimum", kw_number, JS_LIM_MINIMUM},
    {"maximum", kw_number, JS_LIM_MAXIMUM},
    {"exclusiveMinimum", kw_number, JS_LIM_EXCL_MINIMUM},
    {"exclusiveMaximum", kw_number, JS_LIM_EXCL_MAXIMUM},
    {"minLength", kw_count, JS_LIM_MIN_LENGTH},
    {"maxLength", kw_count, JS_LIM_MAX_LENGTH},
    {"pattern", kw_pattern, 0},
    {"format", kw_string, 0},
    {"title", kw_string, 0},
    {"description", kw_string, 0},
    {"$comment", kw_string, 0},
    {"$schema", kw_string, 0},
    {"$id", kw_string, 0},
    {"default", kw_any, 0},
    {"examples", kw_examples, 0},
};

/* Real JSON Schema keywords we leave out; they get a clearer hint than a near-miss. */
static const char *const unsupported[] = {
    "$ref",
    "$defs",
    "definitions",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "prefixItems",
    "additionalItems",
    "unevaluatedItems",
    "multipleOf",
    "contentEncoding",
    "contentMediaType",
    "unevaluatedProperties",
    "readOnly",
    "writeOnly",
    "deprecated",
    "$anchor",
};

static void unknown_keyword(cctx_t *c, const cJSON *m)
{
    const char *key = key_of(m);
    const char *names[SG_ARRAY_LEN(keywords)];
    const char *hint = NULL;
    char buf[128];
    for (size_t i = 0; i < SG_ARRAY_LEN(unsupported) && hint == NULL; i++) {
        if (strcmp(key, unsupported[i]) == 0) {
            snprintf(buf, sizeof(buf), "\"%s\" is not in the JSON Schema subset sagad supports",
                     unsupported[i]);
            hint = buf;
        }
    }
    for (size_t i = 0; i < SG_ARRAY_LEN(keywords); i++) {
        names[i] = keywords[i].name;
    }
    if (hint == NULL) {
        hint = jsonschema__did_you_mean(buf, key, names, SG_ARRAY_LEN(keywords));
    }
    if (hint == NULL && cJSON_IsObject(m)) {
        hint = "property schemas belong under \"properties\"";
    }
    cerr(c, key, hint, "unknown keyword \"%s\"", key);
}

/* Bounds that no value can satisfy, e.g. minimum 5 with maximum 1. */
static void check_contradictions(cctx_t *c, const js_node_t *node)
{
    static const struct {
        js_limit_t lo, hi;
        bool strict; /* an exclusive bound is involved: equal limits conflict too */
    } pairs[] = {
        {JS_LIM_MINIMUM, JS_LIM_MAXIMUM, false},
        {JS_LIM_MINIMUM, JS_LIM_EXCL_MAXIMUM, true},
        {JS_LIM_EXCL_MINIMUM, JS_LIM_MAXIMUM, true},
        {JS_LIM_EXCL_MINIMUM, JS_LIM_EXCL_MAXIMUM, true},
        {JS_LIM_MIN_LENGTH, JS_LIM_MAX_LENGTH, false},
        {JS_LIM_MIN_ITEMS, JS_LIM_MAX_ITEMS, false},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(pairs); i++) {
        unsigned need = (1u << pairs[i].lo) | (1u << pairs[i].hi);
        double lo = node->limit[pairs[i].lo];
        double hi = node->limit[pairs[i].hi];
        if ((node->has_limit & need) != need || lo < hi || (lo == hi && !pairs[i].strict)) {
            continue;
        }
        const char *lo_name = jsonschema__limit_names[pairs[i].lo];
        char lo_text[32];
        char hi_text[32];
        jsonschema__fmt_num(lo, lo_text);
        jsonschema__fmt_num(hi, hi_text);
        push_key(c, lo_name);
        cerr(c, lo_name, NULL, "%s %s is %s %s %s", lo_name, lo_text,
             pairs[i].strict ? "not less than" : "greater than",
             jsonschema__limit_names[pairs[i].hi], hi_text);
        pop(c);
    }
}

/* A required member that no properties entry declares can never be present when
 * additionalProperties is false: the schema rejects every instance. */
static void check_required_declared(cctx_t *c, const js_node_t *node, const cJSON *json)
{
    if (node->additional == NULL || node->additional->boolean != 0) {
        return;
    }
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(json, "required");
    if (!cJSON_IsArray(req)) {
        return;
    }
    size_t i = 0;
    push_key(c, "required");
    for (const cJSON *r = req->child; r != NULL; r = r->next, i++) {
        if (is_str(r) && find_prop(node, r->valuestring) == NULL) {
            push_index(c, i);
            cerr(c, "required", NULL,
                 "required property \"%s\" is not in properties, and additionalProperties is "
                 "false",
                 r->valuestring);
            pop(c);
        }
    }
    pop(c);
}

static bool seen_before(const cJSON *first, const cJSON *m)
{
    for (const cJSON *p = first; p != m; p = p->next) {
        if (strcmp(key_of(p), key_of(m)) == 0) {
            return true;
        }
    }
    return false;
}

static void compile_keywords(cctx_t *c, js_node_t *node, const cJSON *json, size_t depth)
{
    for (const cJSON *m = json->child; m != NULL && !c->oom; m = m->next) {
        const char *key = key_of(m);
        const kw_def_t *kw = NULL;
        for (size_t i = 0; i < SG_ARRAY_LEN(keywords) && kw == NULL; i++) {
            if (strcmp(key, keywords[i].name) == 0) {
                kw = &keywords[i];
            }
        }
        push_key(c, key);
        if (seen_before(json->child, m)) {
            /* cJSON keeps duplicate keys; which one would win is not obvious to a reader. */
            cerr(c, key, NULL, "duplicate keyword \"%s\"", key);
        } else if (kw == NULL) {
            unknown_keyword(c, m);
        } else {
            kw->fn(c, node, m, depth, kw);
        }
        pop(c);
    }
}

/* Compiles the (sub)schema json found at the current path; depth 1 is the root. `keyword`
 * and `what` name the place for messages. NULL on error or OOM (recorded in c). */
static js_node_t *compile_schema(cctx_t *c, const cJSON *json, size_t depth, const char *keyword,
                                 const char *what)
{
    if (depth > SG_JSONSCHEMA_MAX_DEPTH) {
        cerr(c, keyword, NULL, "schema nesting exceeds %d levels", SG_JSONSCHEMA_MAX_DEPTH);
        return NULL;
    }
    if (!cJSON_IsObject(json) && !cJSON_IsBool(json)) {
        cerr(c, keyword, NULL, "%s must be an object or a boolean", what);
        return NULL;
    }
    js_node_t *node = sg_calloc(1, sizeof(*node));
    if (node == NULL) {
        c->oom = true;
        return NULL;
    }
    if (cJSON_IsBool(json)) {
        node->boolean = cJSON_IsTrue(json) ? 1 : 0;
        return node;
    }
    node->boolean = -1;
    compile_keywords(c, node, json, depth);
    if (!c->oom) {
        check_contradictions(c, node);
        check_required_declared(c, node, json);
    }
    return node;
}

static void node_free(js_node_t *node)
{
    if (node == NULL) {
        return;
    }
    for (size_t i = 0; i < node->nprops; i++) {
        sg_free(node->props[i].name);
        node_free(node->props[i].schema);
    }
    sg_free(node->props);
    sg_free(node->prop_names);
    for (size_t i = 0; i < node->nrequired; i++) {
        sg_free(node->required[i]);
    }
    sg_free(node->required);
    node_free(node->additional);
    node_free(node->items);
    for (size_t i = 0; i < node->nenum; i++) {
        jsonschema__value_fini(&node->enum_vals[i]);
    }
    sg_free(node->enum_vals);
    jsonschema__value_fini(node->const_val);
    sg_free(node->const_val);
    if (node->pattern != NULL) {
        regfree(&node->re);
        sg_free(node->pattern);
    }
    sg_free(node);
}

sg_jsonschema_t *sg_jsonschema_compile(const cJSON *schema, sg_jsonschema_errors_t *errs)
{
    cctx_t c = {.errs = errs};
    sg_jsonschema_t *s = NULL;
    js_node_t *root = compile_schema(&c, schema, 1, "", "schema");
    if (c.oom || c.nerr > 0) {
        goto fail;
    }
    s = sg_malloc(sizeof(*s));
    if (s == NULL) {
        c.oom = true;
        goto fail;
    }
    s->root = root;
    return s;
fail:
    node_free(root);
    if (c.oom) {
        c.plen = 0;
        cerr(&c, "", NULL, "out of memory");
    }
    return NULL;
}

void sg_jsonschema_free(sg_jsonschema_t *s)
{
    if (s == NULL) {
        return;
    }
    node_free(s->root);
    sg_free(s);
}
