/*
 * jsonschema values: the compiled schema's own copies of `enum` and `const` values,
 * JSON equality between such a copy and an instance, and short printing for messages.
 *
 * Copies are bounded by SG_JSONSCHEMA_MAX_DEPTH so that equality and printing, which
 * recurse over them, are bounded too; this file must never recurse over an instance
 * except in step with a copy.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/jsonschema/jsonschema_int.h"

void jsonschema__fmt_num(double d, char out[32])
{
    if (isnan(d)) {
        snprintf(out, 32, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(out, 32, "%s", d < 0 ? "-Infinity" : "Infinity");
        return;
    }
    /* %.17g always reads back exactly but prints 0.1 as 0.10000000000000001; try the
     * shorter precisions first so messages show what the author wrote. */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 32, "%.*g", prec, d);
        if (strtod(out, NULL) == d) {
            return;
        }
    }
}

bool jsonschema__is_integral(double d)
{
    /* Every double of magnitude 2^53 or more is an integer; below, the cast is exact.
     * Written without floor() so the module needs no libm. */
    double mag = d < 0 ? -d : d;
    if (!isfinite(d)) {
        return false;
    }
    return mag >= 9007199254740992.0 || d == (double)(int64_t)d;
}

static sg_err_t copy_container(jv_t *dst, const cJSON *src, size_t depth);

static sg_err_t copy_at(jv_t *dst, const cJSON *src, size_t depth)
{
    if (depth > SG_JSONSCHEMA_MAX_DEPTH) {
        return SG_ERR_LIMIT;
    }
    if (cJSON_IsNull(src)) {
        dst->kind = JV_NULL;
    } else if (cJSON_IsFalse(src)) {
        dst->kind = JV_FALSE;
    } else if (cJSON_IsTrue(src)) {
        dst->kind = JV_TRUE;
    } else if (cJSON_IsNumber(src)) {
        dst->kind = JV_NUMBER;
        dst->num = src->valuedouble;
    } else if (cJSON_IsString(src) && src->valuestring != NULL) {
        dst->kind = JV_STRING;
        dst->str = sg_strdup(src->valuestring);
        if (dst->str == NULL) {
            return SG_ERR_NOMEM;
        }
    } else if (cJSON_IsArray(src) || cJSON_IsObject(src)) {
        return copy_container(dst, src, depth);
    } else {
        return SG_ERR_INVALID;
    }
    return SG_OK;
}

static sg_err_t copy_container(jv_t *dst, const cJSON *src, size_t depth)
{
    bool is_object = cJSON_IsObject(src);
    size_t n = 0;
    dst->kind = is_object ? JV_OBJECT : JV_ARRAY;
    for (const cJSON *c = src->child; c != NULL; c = c->next) {
        n++;
    }
    if (n == 0) {
        return SG_OK;
    }
    dst->items = sg_calloc(n, sizeof(*dst->items));
    if (dst->items == NULL) {
        return SG_ERR_NOMEM;
    }
    /* calloc left every item a valid JV_NULL, so fini is safe whatever fails below. */
    dst->count = n;
    size_t i = 0;
    for (const cJSON *c = src->child; c != NULL; c = c->next, i++) {
        if (is_object) {
            dst->items[i].key = sg_strdup(c->string != NULL ? c->string : "");
            if (dst->items[i].key == NULL) {
                return SG_ERR_NOMEM;
            }
        }
        sg_err_t rc = copy_at(&dst->items[i], c, depth + 1);
        if (rc != SG_OK) {
            return rc;
        }
    }
    return SG_OK;
}

sg_err_t jsonschema__value_copy(jv_t *dst, const cJSON *src)
{
    memset(dst, 0, sizeof(*dst));
    return copy_at(dst, src, 1);
}

void jsonschema__value_fini(jv_t *v)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < v->count; i++) {
        jsonschema__value_fini(&v->items[i]);
    }
    sg_free(v->items);
    sg_free(v->str);
    sg_free(v->key);
    memset(v, 0, sizeof(*v));
}

static const jv_t *find_member(const jv_t *obj, const char *key)
{
    for (size_t i = 0; i < obj->count; i++) {
        if (strcmp(obj->items[i].key, key) == 0) {
            return &obj->items[i];
        }
    }
    return NULL;
}

static bool object_equal(const jv_t *v, const cJSON *inst)
{
    size_t n = 0;
    for (const cJSON *c = inst->child; c != NULL; c = c->next) {
        const jv_t *m = c->string != NULL ? find_member(v, c->string) : NULL;
        if (m == NULL || !jsonschema__value_equal(m, c)) {
            return false;
        }
        n++;
    }
    if (n != v->count) {
        return false;
    }
    /* Same size and every instance member matched; with duplicate keys that is not yet
     * the same set, so check the other direction too. */
    for (size_t i = 0; i < v->count; i++) {
        if (cJSON_GetObjectItemCaseSensitive(inst, v->items[i].key) == NULL) {
            return false;
        }
    }
    return true;
}

bool jsonschema__value_equal(const jv_t *v, const cJSON *inst)
{
    switch (v->kind) {
    case JV_NULL:
        return cJSON_IsNull(inst);
    case JV_FALSE:
        return cJSON_IsFalse(inst);
    case JV_TRUE:
        return cJSON_IsTrue(inst);
    case JV_NUMBER:
        return cJSON_IsNumber(inst) && inst->valuedouble == v->num;
    case JV_STRING:
        return cJSON_IsString(inst) && inst->valuestring != NULL &&
               strcmp(inst->valuestring, v->str) == 0;
    case JV_ARRAY: {
        if (!cJSON_IsArray(inst)) {
            return false;
        }
        const cJSON *c = inst->child;
        for (size_t i = 0; i < v->count; i++, c = c->next) {
            if (c == NULL || !jsonschema__value_equal(&v->items[i], c)) {
                return false;
            }
        }
        return c == NULL;
    }
    case JV_OBJECT:
        return cJSON_IsObject(inst) && object_equal(v, inst);
    }
    return false;
}

static void print_at(sg_buf_t *b, const jv_t *v, size_t max)
{
    char num[32];
    if (b->len > max) {
        return; /* the caller cuts and adds "..." */
    }
    switch (v->kind) {
    case JV_NULL:
        sg_buf_puts(b, "null");
        break;
    case JV_FALSE:
        sg_buf_puts(b, "false");
        break;
    case JV_TRUE:
        sg_buf_puts(b, "true");
        break;
    case JV_NUMBER:
        jsonschema__fmt_num(v->num, num);
        sg_buf_puts(b, num);
        break;
    case JV_STRING:
        sg_buf_puts(b, "\"");
        sg_buf_put_escaped(b, v->str);
        sg_buf_puts(b, "\"");
        break;
    case JV_ARRAY:
    case JV_OBJECT:
        sg_buf_puts(b, v->kind == JV_ARRAY ? "[" : "{");
        for (size_t i = 0; i < v->count && b->len <= max; i++) {
            sg_buf_puts(b, i > 0 ? "," : "");
            if (v->kind == JV_OBJECT) {
                sg_buf_puts(b, "\"");
                sg_buf_put_escaped(b, v->items[i].key);
                sg_buf_puts(b, "\":");
            }
            print_at(b, &v->items[i], max);
        }
        sg_buf_puts(b, v->kind == JV_ARRAY ? "]" : "}");
        break;
    }
}

void jsonschema__value_print(sg_buf_t *b, const jv_t *v, size_t max)
{
    size_t start = b->len;
    print_at(b, v, start + max);
    if (b->oom || b->len - start <= max) {
        return;
    }
    /* Cut on a UTF-8 character boundary: the message may end up in a JSON response. */
    size_t cut = start + max;
    while (cut > start && ((unsigned char)b->data[cut] & 0xC0) == 0x80) {
        cut--;
    }
    b->len = cut;
    b->data[cut] = '\0';
    sg_buf_puts(b, "...");
}
