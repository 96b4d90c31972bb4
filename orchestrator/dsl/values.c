/*
 * dsl values: reading the YAML tree for the loader: unknown-key checks with "did you
 * mean", required keys, and typed values (strings, integers, numbers, booleans,
 * durations, names) that report every problem at its line and column. Never builds
 * the model itself: that is load.c.
 */
#include "orchestrator/dsl/dsl_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reporting ---- */

void dsl__error(ld_t *ld, sg_pos_t pos, const char *hint, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (sg_diags_addv(ld->diags, SG_ERR_INVALID, pos, hint, fmt, ap) != SG_OK) {
        ld->nomem = true;
    }
    va_end(ap);
}

bool dsl__grow(ld_t *ld, void **items, size_t *cap, size_t count, size_t elem)
{
    if (!sg_grow(items, cap, count, elem)) {
        ld->nomem = true;
        return false;
    }
    return true;
}

void *dsl__alloc(ld_t *ld, size_t n)
{
    void *p = sg_arena_calloc(ld->arena, n);
    if (p == NULL) {
        ld->nomem = true;
    }
    return p;
}

const char *dsl__str(ld_t *ld, const sg_ynode_t *n)
{
    char *s = sg_arena_strndup(ld->arena, n->str, n->len);
    if (s == NULL) {
        ld->nomem = true;
    }
    return s;
}

/* ---- keys ---- */

bool dsl__key_is(const sg_ynode_t *k, const char *name)
{
    return strlen(name) == k->len && memcmp(k->str, name, k->len) == 0;
}

bool dsl__in_list(const sg_ynode_t *k, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (dsl__key_is(k, names[i])) {
            return true;
        }
    }
    return false;
}

/* Reports every key of map that is not in allowed, with a "did you mean". */
void dsl__check_keys(ld_t *ld, const sg_ynode_t *map, const char *where, const char *const *allowed,
                     size_t n)
{
    for (size_t i = 0; i < map->count; i++) {
        const sg_ynode_t *k = map->pairs[i].key;
        if (dsl__in_list(k, allowed, n)) {
            continue;
        }
        const char *best = sg_closest(k->str, allowed, n);
        char hint[128] = "";
        if (best != NULL) {
            snprintf(hint, sizeof(hint), "did you mean \"%s\"?", best);
        } else if (strcmp(k->str, "<<") == 0) {
            snprintf(hint, sizeof(hint), "YAML merge keys are not supported: write the keys out");
        }
        dsl__error(ld, k->pos, best || hint[0] ? hint : NULL, "unknown key \"%s\" in %s", k->str,
                   where);
    }
}

/* Whether map has a misspelling of key (already reported with a "did you mean"). */
bool dsl__has_typo_of(const sg_ynode_t *map, const char *key)
{
    for (size_t i = 0; i < map->count; i++) {
        const sg_ynode_t *k = map->pairs[i].key;
        if (!dsl__key_is(k, key) && sg_closest(k->str, &key, 1) != NULL) {
            return true;
        }
    }
    return false;
}

const sg_ynode_t *dsl__require(ld_t *ld, const sg_ynode_t *map, const char *key, const char *where)
{
    const sg_ynode_t *v = sg_ymap_get(map, key);
    if (v == NULL && !dsl__has_typo_of(map, key)) {
        dsl__error(ld, map->pos, NULL, "%s is missing required key \"%s\"", where, key);
    }
    return v;
}

/* ---- typed values ---- */

bool dsl__expect_kind(ld_t *ld, const sg_ynode_t *n, sg_ynode_kind_t kind, const char *what)
{
    static const char *const want[] = {"a string", "a list", "a mapping"};
    if (n->kind == kind && !(kind == SG_YNODE_SCALAR && sg_ynode_is_null(n))) {
        return true;
    }
    dsl__error(ld, n->pos, NULL, "%s must be %s, not %s", what, want[kind], sg_ynode_kind_name(n));
    return false;
}

const char *dsl__get_string(ld_t *ld, const sg_ynode_t *n, const char *what)
{
    if (!dsl__expect_kind(ld, n, SG_YNODE_SCALAR, what)) {
        return NULL;
    }
    return dsl__str(ld, n);
}

static bool looks_integer(const sg_ynode_t *n)
{
    const char *s = n->str;
    if (*s == '-' || *s == '+') {
        s++;
    }
    if (*s == '\0') {
        return false;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
    }
    return true;
}

bool dsl__get_int(ld_t *ld, const sg_ynode_t *n, const char *what, int64_t min, int64_t max,
                  int64_t *out)
{
    if (n->kind != SG_YNODE_SCALAR || !n->plain || !looks_integer(n)) {
        const char *got = n->kind != SG_YNODE_SCALAR ? sg_ynode_kind_name(n)
                          : n->plain                 ? "\"%s\""
                                                     : "a quoted string";
        if (n->kind == SG_YNODE_SCALAR && n->plain) {
            dsl__error(ld, n->pos, NULL, "%s must be an integer, not \"%s\"", what, n->str);
        } else {
            dsl__error(ld, n->pos, n->kind == SG_YNODE_SCALAR ? "remove the quotes" : NULL,
                       "%s must be an integer, not %s", what, got);
        }
        return false;
    }
    errno = 0;
    long long v = strtoll(n->str, NULL, 10);
    if (errno != 0 || v < min || v > max) {
        dsl__error(ld, n->pos, NULL, "%s must be between %lld and %lld, not %s", what,
                   (long long)min, (long long)max, n->str);
        return false;
    }
    *out = v;
    return true;
}

bool dsl__get_number(ld_t *ld, const sg_ynode_t *n, const char *what, double min, double max,
                     double *out)
{
    char *end = NULL;
    double v = 0;
    if (n->kind == SG_YNODE_SCALAR && n->plain && n->len > 0 &&
        strspn(n->str, "+-0123456789.eE") == n->len) {
        errno = 0;
        v = strtod(n->str, &end);
    }
    if (end == NULL || *end != '\0' || errno != 0 || !isfinite(v)) {
        dsl__error(ld, n->pos, NULL, "%s must be a number", what);
        return false;
    }
    if (v < min || v > max) {
        dsl__error(ld, n->pos, NULL, "%s must be between %g and %g, not %s", what, min, max,
                   n->str);
        return false;
    }
    *out = v;
    return true;
}

bool dsl__get_bool(ld_t *ld, const sg_ynode_t *n, const char *what, bool *out)
{
    if (n->kind == SG_YNODE_SCALAR && n->plain) {
        if (strcmp(n->str, "true") == 0) {
            *out = true;
            return true;
        }
        if (strcmp(n->str, "false") == 0) {
            *out = false;
            return true;
        }
    }
    dsl__error(ld, n->pos, "write true or false", "%s must be a boolean", what);
    return false;
}

bool dsl__get_duration(ld_t *ld, const sg_ynode_t *n, const char *what, uint64_t *out)
{
    if (!dsl__expect_kind(ld, n, SG_YNODE_SCALAR, what)) {
        return false;
    }
    if (sg_duration_parse(n->str, out)) {
        return true;
    }
    char hint[96];
    if (looks_integer(n) && n->str[0] != '-') {
        snprintf(hint, sizeof(hint), "add a unit, e.g. \"%ss\" for %s seconds", n->str, n->str);
    } else {
        snprintf(hint, sizeof(hint), "use units ms, s, m, h, d from large to small, e.g. 1h30m");
    }
    dsl__error(ld, n->pos, hint, "invalid duration \"%s\" for %s", n->str, what);
    return false;
}

/* A timeout of zero would fail every attempt at once (or, for the saga, mean nothing). */
bool dsl__get_timeout(ld_t *ld, const sg_ynode_t *n, uint64_t *out)
{
    uint64_t ms = 0;
    if (!dsl__get_duration(ld, n, "timeout", &ms)) {
        return false;
    }
    if (ms == 0) {
        dsl__error(ld, n->pos, "leave the key out for the default",
                   "timeout must be longer than 0");
        return false;
    }
    *out = ms;
    return true;
}

bool dsl__matches(const char *s, bool (*first)(char), bool (*rest)(char), size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || !first(s[0])) {
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        if (!rest(s[i])) {
            return false;
        }
    }
    return true;
}

bool dsl__is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}
bool dsl__is_id_first(char c)
{
    return dsl__is_lower(c) || c == '_';
}
bool dsl__is_id_rest(char c)
{
    return dsl__is_lower(c) || c == '_' || (c >= '0' && c <= '9');
}
bool dsl__is_name_rest(char c)
{
    return dsl__is_id_rest(c) || c == '.' || c == '-';
}

/* "<queue>.<operation>": queue [a-z][a-z0-9_-]*, operation [a-z][a-z0-9_.-]* */
bool dsl__valid_activity(const char *s)
{
    const char *dot = strchr(s, '.');
    if (dot == NULL || dot == s || strlen(s) > 128) {
        return false;
    }
    for (const char *p = s; p < dot; p++) {
        if (!(p == s ? dsl__is_lower(*p) : (dsl__is_id_rest(*p) || *p == '-'))) {
            return false;
        }
    }
    return dsl__matches(dot + 1, dsl__is_lower, dsl__is_name_rest, 128);
}

/* Event types: segments of [a-z0-9_] joined by dots, at least two, first starts with a letter. */
bool dsl__valid_event_type(const char *s)
{
    if (!dsl__matches(s, dsl__is_lower, dsl__is_name_rest, 128) || strchr(s, '.') == NULL ||
        strchr(s, '-') != NULL) {
        return false;
    }
    return s[strlen(s) - 1] != '.' && strstr(s, "..") == NULL;
}
