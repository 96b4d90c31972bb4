/*
 * jsonschema internals shared by the compiler and error list (jsonschema.c), the
 * validator (jsonschema_validate.c), the enum/const value copies (jsonschema_value.c) and
 * the pattern screening (jsonschema_pattern.c).
 *
 * Never include this from outside orchestrator/jsonschema/.
 */
#ifndef SG_JSONSCHEMA_INT_H
#define SG_JSONSCHEMA_INT_H

#include <regex.h>
#include <stdarg.h>

#include "orchestrator/jsonschema/jsonschema.h"

/* JSON Schema type names; INTEGER is a number without a fractional part. */
typedef enum {
    JS_T_OBJECT,
    JS_T_ARRAY,
    JS_T_STRING,
    JS_T_NUMBER,
    JS_T_INTEGER,
    JS_T_BOOLEAN,
    JS_T_NULL,
    JS_T__COUNT
} js_type_t;

extern const char *const jsonschema__type_names[JS_T__COUNT];

/*
 * Numeric limits of a schema, indexed so that compile and validate share one table.
 * The order matters: jsonschema__limit_names follows it.
 */
typedef enum {
    JS_LIM_MINIMUM,
    JS_LIM_MAXIMUM,
    JS_LIM_EXCL_MINIMUM,
    JS_LIM_EXCL_MAXIMUM,
    JS_LIM_MIN_LENGTH,
    JS_LIM_MAX_LENGTH,
    JS_LIM_MIN_ITEMS,
    JS_LIM_MAX_ITEMS,
    JS_LIM__COUNT
} js_limit_t;

extern const char *const jsonschema__limit_names[JS_LIM__COUNT];

/*
 * Our own copy of a JSON value (enum and const), allocated with sg_malloc: a cJSON_Duplicate
 * would bypass the allocation-failure injector and tie the compiled schema to cJSON's hooks.
 */
typedef enum { JV_NULL, JV_FALSE, JV_TRUE, JV_NUMBER, JV_STRING, JV_ARRAY, JV_OBJECT } jv_kind_t;

typedef struct jv jv_t;
struct jv {
    jv_kind_t kind;
    double num;  /* JV_NUMBER */
    char *str;   /* JV_STRING */
    char *key;   /* member name when this value sits in an object */
    jv_t *items; /* JV_ARRAY and JV_OBJECT */
    size_t count;
};

typedef struct js_node js_node_t;

typedef struct {
    char *name;
    js_node_t *schema; /* NULL only while compiling a schema that then fails */
} js_prop_t;

struct js_node {
    int boolean;                      /* -1: object schema; 0: the schema false; 1: true */
    unsigned char types[JS_T__COUNT]; /* js_type_t in schema order */
    size_t ntypes;                    /* 0: any type */
    js_prop_t *props;
    const char **prop_names; /* the same names, contiguous for sg_closest */
    size_t nprops;
    char **required;
    size_t nrequired;
    js_node_t *additional; /* NULL: any member allowed */
    js_node_t *items;      /* NULL: any item allowed */
    jv_t *enum_vals;
    size_t nenum;
    jv_t *const_val;
    unsigned has_limit; /* bit (1u << js_limit_t) */
    double limit[JS_LIM__COUNT];
    char *pattern; /* source text; non-NULL exactly when re holds a compiled regex */
    regex_t re;
};

struct sg_jsonschema {
    js_node_t *root;
};

/* One step of a JSON Pointer: a member name, or an array index when key is NULL. */
typedef struct {
    const char *key;
    size_t index;
} js_seg_t;

/*
 * Appends one error at the pointer made of path[0..depth). Never fails: when the list is
 * full or memory runs out the error is counted in errs->dropped. errs may be NULL.
 */
void jsonschema__error_addv(sg_jsonschema_errors_t *errs, const js_seg_t *path, size_t depth,
                            const char *keyword, const char *hint, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));

/* "did you mean \"x\"?" in buf for the closest candidate, or NULL when none is close.
 * sg_closest never proposes a candidate over 64 bytes, so 128 bytes always suffice. */
const char *jsonschema__did_you_mean(char buf[128], const char *word, const char *const *candidates,
                                     size_t n);

/* True for finite numbers without a fractional part (JSON Schema's "integer"). */
bool jsonschema__is_integral(double d);

/* Shortest text that reads back as the same double ("1", "0.5", "1e+300"). */
void jsonschema__fmt_num(double d, char out[32]);

/* Copies src into dst. SG_ERR_LIMIT when nested deeper than SG_JSONSCHEMA_MAX_DEPTH,
 * SG_ERR_INVALID for a cJSON node that is not JSON (raw/invalid), SG_ERR_NOMEM. dst is
 * left safe to jsonschema__value_fini in every case. */
sg_err_t jsonschema__value_copy(jv_t *dst, const cJSON *src);
void jsonschema__value_fini(jv_t *v);
/* JSON equality: numbers by value (1 == 1.0), objects regardless of member order. */
bool jsonschema__value_equal(const jv_t *v, const cJSON *inst);
/* Compact JSON text of v, cut with "..." once the buffer passes about max bytes. */
void jsonschema__value_print(sg_buf_t *b, const jv_t *v, size_t max);

/* Checks a pattern before regcomp: NULL when acceptable, else a message (and maybe a
 * hint) for something POSIX regcomp would accept but we must not (see jsonschema.h). */
const char *jsonschema__pattern_check(const char *pattern, const char **hint);

#endif
