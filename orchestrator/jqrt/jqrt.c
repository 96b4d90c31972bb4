/*
 * jqrt: a cache of compiled libjq programs keyed by expression text, and evaluation
 * of one expression over one JSON document.
 */
#include "orchestrator/jqrt/jqrt.h"

#include <jq.h>
#include <string.h>

typedef struct {
    char *expr;   /* NULL = empty slot */
    jq_state *jq; /* NULL with expr set = the expression does not compile */
    char *compile_error;
} slot_t;

struct sg_jqrt {
    slot_t *slots;
    size_t cap; /* power of two */
    size_t used;
    char last_error[512]; /* filled by the error callback during compile/run */
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return h;
}

static void on_error(void *data, jv msg)
{
    sg_jqrt_t *rt = data;
    if (rt->last_error[0] == '\0') {
        if (jv_get_kind(msg) == JV_KIND_STRING) {
            const char *s = jv_string_value(msg);
            if (strncmp(s, "jq: error: ", 11) == 0) {
                s += 11;
            }
            snprintf(rt->last_error, sizeof(rt->last_error), "%.*s", (int)strcspn(s, "\n"), s);
        } else {
            snprintf(rt->last_error, sizeof(rt->last_error), "jq error");
        }
    }
    jv_free(msg);
}

sg_jqrt_t *sg_jqrt_new(void)
{
    sg_jqrt_t *rt = sg_calloc(1, sizeof(*rt));
    if (rt == NULL) {
        return NULL;
    }
    rt->cap = 64;
    rt->slots = sg_calloc(rt->cap, sizeof(*rt->slots));
    if (rt->slots == NULL) {
        sg_free(rt);
        return NULL;
    }
    return rt;
}

void sg_jqrt_free(sg_jqrt_t *rt)
{
    if (rt == NULL) {
        return;
    }
    for (size_t i = 0; i < rt->cap; i++) {
        sg_free(rt->slots[i].expr);
        sg_free(rt->slots[i].compile_error);
        if (rt->slots[i].jq != NULL) {
            jq_teardown(&rt->slots[i].jq);
        }
    }
    sg_free(rt->slots);
    sg_free(rt);
}

size_t sg_jqrt_cached(const sg_jqrt_t *rt)
{
    return rt->used;
}

static bool grow(sg_jqrt_t *rt)
{
    size_t cap = rt->cap * 2;
    slot_t *slots = sg_calloc(cap, sizeof(*slots));
    if (slots == NULL) {
        return false;
    }
    for (size_t i = 0; i < rt->cap; i++) {
        if (rt->slots[i].expr == NULL) {
            continue;
        }
        size_t j = hash_str(rt->slots[i].expr) & (cap - 1);
        while (slots[j].expr != NULL) {
            j = (j + 1) & (cap - 1);
        }
        slots[j] = rt->slots[i];
    }
    sg_free(rt->slots);
    rt->slots = slots;
    rt->cap = cap;
    return true;
}

/* The slot for expr, compiling it on first use; NULL on OOM. */
static slot_t *lookup(sg_jqrt_t *rt, const char *expr)
{
    if ((rt->used + 1) * 4 > rt->cap * 3 && !grow(rt)) {
        return NULL;
    }
    size_t j = hash_str(expr) & (rt->cap - 1);
    while (rt->slots[j].expr != NULL) {
        if (strcmp(rt->slots[j].expr, expr) == 0) {
            return &rt->slots[j];
        }
        j = (j + 1) & (rt->cap - 1);
    }
    slot_t *s = &rt->slots[j];
    s->expr = sg_strdup(expr);
    if (s->expr == NULL) {
        return NULL;
    }
    s->jq = jq_init();
    if (s->jq == NULL) {
        sg_free(s->expr);
        s->expr = NULL;
        return NULL;
    }
    rt->last_error[0] = '\0';
    jq_set_error_cb(s->jq, on_error, rt);
    if (!jq_compile(s->jq, expr)) {
        jq_teardown(&s->jq);
        s->compile_error = sg_strdup(rt->last_error[0] ? rt->last_error : "compile error");
    }
    rt->used++;
    return s;
}

/* Runs a compiled slot over in (consumed). */
static sg_err_t run(sg_jqrt_t *rt, slot_t *s, jv in, char **out, char **err)
{
    rt->last_error[0] = '\0';
    jq_start(s->jq, in, 0);
    jv result = jq_next(s->jq);
    if (jv_is_valid(result)) {
        jv text = jv_dump_string(result, 0);
        *out = sg_strdup(jv_string_value(text));
        jv_free(text);
        return *out ? SG_OK : SG_ERR_NOMEM;
    }
    /* Invalid with a message = a runtime error; without = no output at all. */
    if (jv_invalid_has_msg(jv_copy(result))) {
        jv msg = jv_invalid_get_msg(result);
        *err = jv_get_kind(msg) == JV_KIND_STRING ? sg_strdup(jv_string_value(msg))
                                                  : sg_strdup("jq runtime error");
        jv_free(msg);
        return *err ? SG_ERR_INVALID : SG_ERR_NOMEM;
    }
    jv_free(result);
    if (rt->last_error[0] != '\0') {
        *err = sg_strdup(rt->last_error);
        return *err ? SG_ERR_INVALID : SG_ERR_NOMEM;
    }
    *out = sg_strdup("null");
    return *out ? SG_OK : SG_ERR_NOMEM;
}

/* The compiled program for expr, or an error result. */
static sg_err_t program(sg_jqrt_t *rt, const char *expr, slot_t **slot, char **err)
{
    slot_t *s = lookup(rt, expr);
    if (s == NULL) {
        return SG_ERR_NOMEM;
    }
    if (s->jq == NULL) {
        *err = sg_strdup(s->compile_error ? s->compile_error : "compile error");
        return *err ? SG_ERR_INVALID : SG_ERR_NOMEM;
    }
    *slot = s;
    return SG_OK;
}

static sg_err_t not_json(const char *what, jv parsed, char **err)
{
    jv msg = jv_invalid_get_msg(parsed);
    *err = sg_asprintf("%s is not JSON: %s", what,
                       jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "?");
    jv_free(msg);
    return *err ? SG_ERR_INVALID : SG_ERR_NOMEM;
}

sg_err_t sg_jqrt_eval(sg_jqrt_t *rt, const char *expr, const char *input, char **out, char **err)
{
    *out = NULL;
    *err = NULL;
    slot_t *s = NULL;
    sg_err_t rc = program(rt, expr, &s, err);
    if (rc != SG_OK) {
        return rc;
    }
    jv in = jv_parse(input);
    if (!jv_is_valid(in)) {
        return not_json("input", in, err);
    }
    return run(rt, s, in, out, err);
}

/* ---- parsed contexts ---- */

struct sg_jqrt_ctx {
    jv input;
    jv saga;
    jv steps;         /* object: id -> {"output": ...} */
    char *bad_output; /* step whose output was not JSON, if any */
};

sg_jqrt_ctx_t *sg_jqrt_ctx_new(const char *input_json, const char *saga_json)
{
    sg_jqrt_ctx_t *c = sg_calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->input = jv_parse(input_json);
    c->saga = jv_parse(saga_json);
    c->steps = jv_object();
    return c;
}

void sg_jqrt_ctx_free(sg_jqrt_ctx_t *c)
{
    if (c == NULL) {
        return;
    }
    jv_free(c->input);
    jv_free(c->saga);
    jv_free(c->steps);
    sg_free(c->bad_output);
    sg_free(c);
}

bool sg_jqrt_ctx_set_output(sg_jqrt_ctx_t *c, const char *step_id, const char *output_json)
{
    jv out = output_json ? jv_parse(output_json) : jv_null();
    if (!jv_is_valid(out)) {
        jv_free(out);
        if (c->bad_output == NULL) {
            c->bad_output = sg_strdup(step_id);
            if (c->bad_output == NULL) {
                return false;
            }
        }
        out = jv_null();
    }
    jv entry = jv_object_set(jv_object(), jv_string("output"), out);
    c->steps = jv_object_set(c->steps, jv_string(step_id), entry);
    return true;
}

sg_err_t sg_jqrt_eval_ctx(sg_jqrt_t *rt, const char *expr, const sg_jqrt_ctx_t *c, char **out,
                          char **err)
{
    *out = NULL;
    *err = NULL;
    slot_t *s = NULL;
    sg_err_t rc = program(rt, expr, &s, err);
    if (rc != SG_OK) {
        return rc;
    }
    if (!jv_is_valid(c->input)) {
        return not_json("the saga input", jv_copy(c->input), err);
    }
    if (c->bad_output != NULL) {
        *err = sg_asprintf("the output of step %s is not JSON", c->bad_output);
        return *err ? SG_ERR_INVALID : SG_ERR_NOMEM;
    }
    jv doc = jv_object();
    doc = jv_object_set(doc, jv_string("input"), jv_copy(c->input));
    doc = jv_object_set(doc, jv_string("steps"), jv_copy(c->steps));
    doc = jv_object_set(doc, jv_string("saga"), jv_copy(c->saga));
    return run(rt, s, doc, out, err);
}
