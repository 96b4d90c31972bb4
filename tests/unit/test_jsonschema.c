/*
 * Unit tests for orchestrator/jsonschema: compile errors (exact pointer, keyword, message
 * and hint for every keyword), validation of every keyword both ways, error ordering and
 * caps, depth limits, allocation failures, and regressions found by fuzzing.
 *
 * Schemas are written with single quotes to stay readable; js() turns them into JSON.
 * These tests must never depend on glibc's wording except where marked as a prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "orchestrator/jsonschema/jsonschema.h"

/* ---- helpers ---- */

/* Parses text after turning every ' into ", so tests can write JSON without escapes. */
static cJSON *js(const char *text)
{
    char *copy = strdup(text);
    assert_non_null(copy);
    for (char *p = copy; *p != '\0'; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }
    cJSON *j = cJSON_Parse(copy);
    if (j == NULL) {
        fail_msg("test JSON does not parse: %s", copy);
    }
    free(copy);
    return j;
}

static sg_jsonschema_t *compile_ok(const char *schema_text)
{
    sg_jsonschema_errors_t errs;
    cJSON *schema = js(schema_text);
    sg_jsonschema_errors_init(&errs, 20);
    sg_jsonschema_t *s = sg_jsonschema_compile(schema, &errs);
    if (s == NULL) {
        fail_msg("schema %s: %s: %s", schema_text, errs.count ? errs.items[0].path : "?",
                 errs.count ? errs.items[0].message : "?");
    }
    assert_int_equal(errs.count, 0);
    sg_jsonschema_errors_fini(&errs);
    cJSON_Delete(schema);
    return s;
}

/* Compiles a schema that must fail; errs is initialised here, the caller finis it. */
static void compile_bad(const char *schema_text, sg_jsonschema_errors_t *errs)
{
    cJSON *schema = js(schema_text);
    sg_jsonschema_errors_init(errs, 20);
    assert_null(sg_jsonschema_compile(schema, errs));
    cJSON_Delete(schema);
}

/* The table row being checked, named in failure messages. */
static const char *current_case = "";

static bool message_matches(const char *got, const char *want)
{
    size_t n = strlen(want);
    if (n > 0 && want[n - 1] == '*') {
        return strncmp(got, want, n - 1) == 0;
    }
    return strcmp(got, want) == 0;
}

/* A message ending in '*' is compared as a prefix: the rest comes from libc. */
static void expect_error(const sg_jsonschema_errors_t *errs, size_t i, const char *path,
                         const char *keyword, const char *message, const char *hint)
{
    if (i >= errs->count) {
        fail_msg("%s: expected error %zu (%s: %s), have only %zu", current_case, i, path, message,
                 errs->count);
    }
    const sg_jsonschema_error_t *e = &errs->items[i];
    bool hint_ok = hint == NULL ? e->hint == NULL : e->hint != NULL && !strcmp(e->hint, hint);
    if (strcmp(e->path, path) != 0 || strcmp(e->keyword, keyword) != 0 ||
        !message_matches(e->message, message) || !hint_ok) {
        fail_msg("%s: error %zu\n  got  path=\"%s\" keyword=\"%s\" message=\"%s\" hint=\"%s\""
                 "\n  want path=\"%s\" keyword=\"%s\" message=\"%s\" hint=\"%s\"",
                 current_case, i, e->path, e->keyword, e->message, e->hint ? e->hint : "(null)",
                 path, keyword, message, hint ? hint : "(null)");
    }
}

/* Validates instance_text; returns the verdict and leaves errors in errs (cap 20). */
static bool validate(const sg_jsonschema_t *s, const char *instance_text,
                     sg_jsonschema_errors_t *errs)
{
    cJSON *inst = js(instance_text);
    sg_jsonschema_errors_init(errs, 20);
    bool ok = sg_jsonschema_validate(s, inst, errs);
    /* The verdict must not depend on whether errors are collected. */
    assert_int_equal(sg_jsonschema_validate(s, inst, NULL), ok);
    assert_int_equal(ok, errs->count == 0 && errs->dropped == 0);
    cJSON_Delete(inst);
    return ok;
}

/* "{'items':" n times, inner, then n closing braces. */
static char *nest(const char *open, const char *inner, const char *close, size_t n)
{
    size_t len = n * (strlen(open) + strlen(close)) + strlen(inner) + 1;
    char *s = malloc(len);
    assert_non_null(s);
    s[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strcat(s, open);
    }
    strcat(s, inner);
    for (size_t i = 0; i < n; i++) {
        strcat(s, close);
    }
    return s;
}

/* ---- compile errors: one table row per problem ---- */

typedef struct {
    const char *schema;
    const char *path;
    const char *keyword;
    const char *message;
    const char *hint;
} compile_case_t;

static const compile_case_t compile_cases[] = {
    /* root and subschema shapes */
    {"[1]", "", "", "schema must be an object or a boolean", NULL},
    {"'object'", "", "", "schema must be an object or a boolean", NULL},
    /* unknown keywords */
    {"{'tpye':'string'}", "/tpye", "tpye", "unknown keyword \"tpye\"", "did you mean \"type\"?"},
    {"{'properties':{'a':{'minimun':1}}}", "/properties/a/minimun", "minimun",
     "unknown keyword \"minimun\"", "did you mean \"minimum\"?"},
    {"{'propertys':{}}", "/propertys", "propertys", "unknown keyword \"propertys\"",
     "did you mean \"properties\"?"},
    {"{'oneOf':[{}]}", "/oneOf", "oneOf", "unknown keyword \"oneOf\"",
     "\"oneOf\" is not in the JSON Schema subset sagad supports"},
    {"{'$ref':'#/x'}", "/$ref", "$ref", "unknown keyword \"$ref\"",
     "\"$ref\" is not in the JSON Schema subset sagad supports"},
    {"{'type':'object','order_id':{'type':'string'}}", "/order_id", "order_id",
     "unknown keyword \"order_id\"", "property schemas belong under \"properties\""},
    {"{'xyzzy':1}", "/xyzzy", "xyzzy", "unknown keyword \"xyzzy\"", NULL},
    {"{'type':'string','type':'number'}", "/type", "type", "duplicate keyword \"type\"", NULL},
    /* type */
    {"{'type':5}", "/type", "type", "type must be a string or an array of strings", NULL},
    {"{'type':'strng'}", "/type", "type", "unknown type \"strng\"", "did you mean \"string\"?"},
    {"{'type':['string',3]}", "/type/1", "type", "type entries must be strings", NULL},
    {"{'type':['null','intger']}", "/type/1", "type", "unknown type \"intger\"",
     "did you mean \"integer\"?"},
    {"{'type':[]}", "/type", "type", "type must not be an empty array", NULL},
    {"{'type':['null','null']}", "/type/1", "type", "duplicate type \"null\"", NULL},
    /* properties */
    {"{'properties':[]}", "/properties", "properties", "properties must be an object", NULL},
    {"{'properties':{'a':3}}", "/properties/a", "properties",
     "a property schema must be an object or a boolean", NULL},
    {"{'properties':{'a':{},'a':{}}}", "/properties/a", "properties", "duplicate property \"a\"",
     NULL},
    /* required */
    {"{'required':'a'}", "/required", "required", "required must be an array of strings", NULL},
    {"{'required':['a',1]}", "/required/1", "required", "required entries must be strings", NULL},
    {"{'required':['a','a']}", "/required/1", "required", "duplicate required property \"a\"",
     NULL},
    {"{'properties':{'a':{}},'required':['a','b'],'additionalProperties':false}", "/required/1",
     "required", "required property \"b\" is not in properties, and additionalProperties is false",
     NULL},
    /* additionalProperties and items */
    {"{'additionalProperties':'no'}", "/additionalProperties", "additionalProperties",
     "additionalProperties must be an object or a boolean", NULL},
    {"{'additionalProperties':{'type':'strin'}}", "/additionalProperties/type", "type",
     "unknown type \"strin\"", "did you mean \"string\"?"},
    {"{'items':[{}]}", "/items", "items", "items must be an object or a boolean",
     "tuple validation (items as an array) is not supported"},
    {"{'items':3}", "/items", "items", "items must be an object or a boolean", NULL},
    {"{'items':{'minItems':'1'}}", "/items/minItems", "minItems",
     "minItems must be a non-negative integer", NULL},
    /* counts */
    {"{'minItems':-1}", "/minItems", "minItems", "minItems must be a non-negative integer", NULL},
    {"{'maxItems':1.5}", "/maxItems", "maxItems", "maxItems must be a non-negative integer", NULL},
    {"{'minLength':'3'}", "/minLength", "minLength", "minLength must be a non-negative integer",
     NULL},
    {"{'maxLength':null}", "/maxLength", "maxLength", "maxLength must be a non-negative integer",
     NULL},
    /* enum and const */
    {"{'enum':{}}", "/enum", "enum", "enum must be an array", NULL},
    {"{'enum':[]}", "/enum", "enum", "enum must not be empty", NULL},
    /* numbers */
    {"{'properties':{'qty':{'minimum':'1'}}}", "/properties/qty/minimum", "minimum",
     "minimum must be a number", NULL},
    {"{'maximum':[]}", "/maximum", "maximum", "maximum must be a number", NULL},
    {"{'exclusiveMinimum':true}", "/exclusiveMinimum", "exclusiveMinimum",
     "exclusiveMinimum must be a number",
     "write the limit itself, e.g. \"exclusiveMinimum\": 0 (draft 2020)"},
    {"{'exclusiveMaximum':'9'}", "/exclusiveMaximum", "exclusiveMaximum",
     "exclusiveMaximum must be a number", NULL},
    {"{'minimum':1e400}", "/minimum", "minimum", "minimum must be a number", NULL},
    /* contradictions */
    {"{'minimum':5,'maximum':1}", "/minimum", "minimum", "minimum 5 is greater than maximum 1",
     NULL},
    {"{'minimum':2,'exclusiveMaximum':2}", "/minimum", "minimum",
     "minimum 2 is not less than exclusiveMaximum 2", NULL},
    {"{'exclusiveMinimum':1,'maximum':1}", "/exclusiveMinimum", "exclusiveMinimum",
     "exclusiveMinimum 1 is not less than maximum 1", NULL},
    {"{'exclusiveMinimum':3,'exclusiveMaximum':2.5}", "/exclusiveMinimum", "exclusiveMinimum",
     "exclusiveMinimum 3 is not less than exclusiveMaximum 2.5", NULL},
    {"{'minLength':3,'maxLength':2}", "/minLength", "minLength",
     "minLength 3 is greater than maxLength 2", NULL},
    {"{'minItems':3,'maxItems':2}", "/minItems", "minItems",
     "minItems 3 is greater than maxItems 2", NULL},
    /* pattern */
    {"{'pattern':5}", "/pattern", "pattern", "pattern must be a string", NULL},
    {"{'pattern':'(a'}", "/pattern", "pattern", "invalid pattern: *",
     "patterns are POSIX extended regular expressions, not ECMA-262"},
    {"{'pattern':'^\\\\d+$'}", "/pattern", "pattern",
     "\\d and \\D are not POSIX extended regular expressions",
     "patterns are POSIX ERE: use [0-9] for \\d and [^0-9] for \\D"},
    {"{'pattern':'(a)\\\\1'}", "/pattern", "pattern", "backreferences are not supported",
     "their matching time can grow exponentially with the input"},
    {"{'pattern':'(a{40}){40}'}", "/pattern", "pattern",
     "pattern is too large once its repetitions are expanded",
     "repetition counts multiply; bound long runs with maxLength instead"},
    {"{'pattern':'((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))'}",
     "/pattern", "pattern", "pattern nests groups more than 32 deep", NULL},
    /* annotations */
    {"{'format':1}", "/format", "format", "format must be a string", NULL},
    {"{'title':{}}", "/title", "title", "title must be a string", NULL},
    {"{'description':1}", "/description", "description", "description must be a string", NULL},
    {"{'$comment':1}", "/$comment", "$comment", "$comment must be a string", NULL},
    {"{'$schema':1}", "/$schema", "$schema", "$schema must be a string", NULL},
    {"{'$id':1}", "/$id", "$id", "$id must be a string", NULL},
    {"{'examples':{}}", "/examples", "examples", "examples must be an array", NULL},
    /* RFC 6901 escaping of '/' and '~' */
    {"{'properties':{'a/b':{'properties':{'m~n':{'type':1}}}}}",
     "/properties/a~1b/properties/m~0n/type", "type",
     "type must be a string or an array of strings", NULL},
};

static void test_compile_errors_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(compile_cases) / sizeof(compile_cases[0]); i++) {
        const compile_case_t *c = &compile_cases[i];
        sg_jsonschema_errors_t errs;
        current_case = c->schema;
        compile_bad(c->schema, &errs);
        if (errs.count != 1 || errs.dropped != 0) {
            fail_msg("%s: %zu errors, want 1; first: %s", c->schema, errs.count,
                     errs.count ? errs.items[0].message : "-");
        }
        expect_error(&errs, 0, c->path, c->keyword, c->message, c->hint);
        sg_jsonschema_errors_fini(&errs);
    }
}

static void test_compile_accepts_full_vocabulary(void **state)
{
    (void)state;
    sg_jsonschema_t *s =
        compile_ok("{'$schema':'https://json-schema.org/draft/2020-12/schema','$id':'urn:order',"
                   "'$comment':'c','title':'Order','description':'d','default':{},'examples':[{}],"
                   "'type':['object','null'],'properties':{'id':{'type':'string','format':'uuid',"
                   "'pattern':'^[a-f0-9-]+$','minLength':1,'maxLength':36},"
                   "'qty':{'type':'integer','minimum':1,'maximum':1,'exclusiveMinimum':0,"
                   "'exclusiveMaximum':2},'tags':{'type':'array','items':{'enum':['a','b']},"
                   "'minItems':0,'maxItems':3},'kind':{'const':'x'},'any':true,'none':false},"
                   "'required':['id'],'additionalProperties':{'type':'string'}}");
    sg_jsonschema_free(s);
    sg_jsonschema_free(compile_ok("true"));
    sg_jsonschema_free(compile_ok("false"));
    sg_jsonschema_free(compile_ok("{}"));
    sg_jsonschema_free(NULL);
}

static void test_compile_collects_all_errors_in_order(void **state)
{
    (void)state;
    sg_jsonschema_errors_t errs;
    compile_bad("{'type':'objekt','properties':{'a':{'type':'string','minLenght':1},"
                "'b':{'items':{'maximum':'x'}}},'required':['a',2],'minimum':3,'maximum':2}",
                &errs);
    assert_int_equal(errs.count, 5);
    expect_error(&errs, 0, "/type", "type", "unknown type \"objekt\"", "did you mean \"object\"?");
    expect_error(&errs, 1, "/properties/a/minLenght", "minLenght", "unknown keyword \"minLenght\"",
                 "did you mean \"minLength\"?");
    expect_error(&errs, 2, "/properties/b/items/maximum", "maximum", "maximum must be a number",
                 NULL);
    expect_error(&errs, 3, "/required/1", "required", "required entries must be strings", NULL);
    /* cross-keyword checks come after the node's own keywords */
    expect_error(&errs, 4, "/minimum", "minimum", "minimum 3 is greater than maximum 2", NULL);
    sg_jsonschema_errors_fini(&errs);
}

static void test_compile_error_cap_and_null_list(void **state)
{
    (void)state;
    const char *text = "{'a':1,'b':2,'c':3,'d':4,'e':5}";
    cJSON *schema = js(text);
    sg_jsonschema_errors_t errs;
    sg_jsonschema_errors_init(&errs, 2);
    assert_null(sg_jsonschema_compile(schema, &errs));
    assert_int_equal(errs.count, 2);
    assert_int_equal(errs.dropped, 3);
    expect_error(&errs, 0, "/a", "a", "unknown keyword \"a\"", NULL);
    expect_error(&errs, 1, "/b", "b", "unknown keyword \"b\"", NULL);
    sg_jsonschema_errors_fini(&errs);

    sg_jsonschema_errors_init(&errs, 0);
    assert_null(sg_jsonschema_compile(schema, &errs));
    assert_int_equal(errs.count, 0);
    assert_int_equal(errs.dropped, 5);
    sg_jsonschema_errors_fini(&errs);

    assert_null(sg_jsonschema_compile(schema, NULL));
    cJSON_Delete(schema);

    sg_jsonschema_errors_init(&errs, 20);
    assert_null(sg_jsonschema_compile(NULL, &errs));
    expect_error(&errs, 0, "", "", "schema must be an object or a boolean", NULL);
    sg_jsonschema_errors_fini(&errs);
}

static void test_compile_depth_limit(void **state)
{
    (void)state;
    /* Root is level 1: 63 nested items make 64 levels, the most allowed. */
    char *ok = nest("{'items':", "{'type':'string'}", "}", SG_JSONSCHEMA_MAX_DEPTH - 1);
    sg_jsonschema_free(compile_ok(ok));
    free(ok);

    char *deep = nest("{'items':", "{}", "}", SG_JSONSCHEMA_MAX_DEPTH);
    char *path = nest("/items", "", "", SG_JSONSCHEMA_MAX_DEPTH);
    sg_jsonschema_errors_t errs;
    compile_bad(deep, &errs);
    assert_int_equal(errs.count, 1);
    expect_error(&errs, 0, path, "items", "schema nesting exceeds 64 levels", NULL);
    sg_jsonschema_errors_fini(&errs);
    free(deep);
    free(path);

    /* properties nest too, two pointer steps per level */
    deep = nest("{'properties':{'p':", "{}", "}}", SG_JSONSCHEMA_MAX_DEPTH);
    compile_bad(deep, &errs);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0].message, "schema nesting exceeds 64 levels");
    sg_jsonschema_errors_fini(&errs);
    free(deep);
}

static void test_compile_value_depth_limit(void **state)
{
    (void)state;
    char *inner = nest("[", "1", "]", SG_JSONSCHEMA_MAX_DEPTH - 1);
    char *schema = malloc(strlen(inner) + 64);
    assert_non_null(schema);
    sprintf(schema, "{'enum':[%s]}", inner);
    sg_jsonschema_free(compile_ok(schema));
    free(inner);

    inner = nest("[", "1", "]", SG_JSONSCHEMA_MAX_DEPTH);
    schema = realloc(schema, 2 * strlen(inner) + 64);
    assert_non_null(schema);
    sprintf(schema, "{'enum':[0,%s],'const':%s}", inner, inner);
    sg_jsonschema_errors_t errs;
    compile_bad(schema, &errs);
    assert_int_equal(errs.count, 2);
    expect_error(&errs, 0, "/enum/1", "enum", "enum value nests deeper than 64 levels", NULL);
    expect_error(&errs, 1, "/const", "const", "const value nests deeper than 64 levels", NULL);
    sg_jsonschema_errors_fini(&errs);
    free(inner);
    free(schema);
}

/* ---- validation: one row per instance ---- */

typedef struct {
    const char *schema;
    const char *instance;
    const char *path; /* NULL: the instance is valid */
    const char *keyword;
    const char *message;
    const char *hint;
} validate_case_t;

static const validate_case_t validate_cases[] = {
    /* type, integer vs number */
    {"{'type':'integer'}", "5", NULL, NULL, NULL, NULL},
    {"{'type':'integer'}", "5.0", NULL, NULL, NULL, NULL},
    {"{'type':'integer'}", "-0", NULL, NULL, NULL, NULL},
    {"{'type':'integer'}", "1e300", NULL, NULL, NULL, NULL},
    {"{'type':'integer'}", "5.5", "", "type", "expected integer, got number", NULL},
    {"{'type':'integer'}", "'5'", "", "type", "expected integer, got string", NULL},
    {"{'type':'number'}", "5", NULL, NULL, NULL, NULL},
    {"{'type':'number'}", "5.5", NULL, NULL, NULL, NULL},
    {"{'type':'number'}", "true", "", "type", "expected number, got boolean", NULL},
    {"{'type':'string'}", "3", "", "type", "expected string, got integer", NULL},
    {"{'type':'boolean'}", "false", NULL, NULL, NULL, NULL},
    {"{'type':'boolean'}", "null", "", "type", "expected boolean, got null", NULL},
    {"{'type':'null'}", "null", NULL, NULL, NULL, NULL},
    {"{'type':'null'}", "{}", "", "type", "expected null, got object", NULL},
    {"{'type':'object'}", "[]", "", "type", "expected object, got array", NULL},
    {"{'type':'array'}", "[]", NULL, NULL, NULL, NULL},
    {"{'type':['string','null']}", "null", NULL, NULL, NULL, NULL},
    {"{'type':['string','null']}", "3", "", "type", "expected string or null, got integer", NULL},
    {"{'type':['object','array','string']}", "1.5", "", "type",
     "expected object, array or string, got number", NULL},
    /* properties and required */
    {"{'properties':{'a':{'type':'string'}}}", "{'a':'x','b':1}", NULL, NULL, NULL, NULL},
    {"{'properties':{'a':{'type':'string'}}}", "{'a':1}", "/a", "type",
     "expected string, got integer", NULL},
    {"{'properties':{'a':{'type':'string'}}}", "[1]", NULL, NULL, NULL, NULL},
    {"{'required':['order_id']}", "{'order_id':null}", NULL, NULL, NULL, NULL},
    {"{'required':['order_id']}", "{'orderId':1}", "/order_id", "required",
     "missing required property \"order_id\"", NULL},
    {"{'required':['a']}", "'not an object'", NULL, NULL, NULL, NULL},
    {"{'properties':{'a':false}}", "{'a':1}", "/a", "false", "no value is allowed here", NULL},
    {"{'properties':{'a':true}}", "{'a':1}", NULL, NULL, NULL, NULL},
    /* additionalProperties */
    {"{'properties':{'order_id':{}},'additionalProperties':false}", "{'order_id':1}", NULL, NULL,
     NULL, NULL},
    {"{'properties':{'order_id':{}},'additionalProperties':false}", "{'orderid':1}", "/orderid",
     "additionalProperties", "unexpected property \"orderid\"", "did you mean \"order_id\"?"},
    {"{'additionalProperties':false}", "{'a/b~c':1}", "/a~1b~0c", "additionalProperties",
     "unexpected property \"a/b~c\"", NULL},
    {"{'additionalProperties':true}", "{'x':1}", NULL, NULL, NULL, NULL},
    {"{'properties':{'a':{}},'additionalProperties':{'type':'integer'}}", "{'a':'s','x':2}", NULL,
     NULL, NULL, NULL},
    {"{'properties':{'a':{}},'additionalProperties':{'type':'integer'}}", "{'a':1,'x':'s'}", "/x",
     "type", "expected integer, got string", NULL},
    /* items, minItems, maxItems */
    {"{'items':{'type':'integer'}}", "[1,2,3]", NULL, NULL, NULL, NULL},
    {"{'items':{'type':'integer'}}", "[1,'a',3]", "/1", "type", "expected integer, got string",
     NULL},
    {"{'minItems':2}", "[1,2]", NULL, NULL, NULL, NULL},
    {"{'minItems':2}", "[1]", "", "minItems", "must have at least 2 items", NULL},
    {"{'maxItems':1}", "[1,2]", "", "maxItems", "must have at most 1 item", NULL},
    {"{'maxItems':1}", "'ab'", NULL, NULL, NULL, NULL},
    /* enum and const: JSON equality */
    {"{'enum':['a',1,null,{'k':[1,2]}]}", "'a'", NULL, NULL, NULL, NULL},
    {"{'enum':['a',1,null,{'k':[1,2]}]}", "1.0", NULL, NULL, NULL, NULL},
    {"{'enum':['a',1,null,{'k':[1,2]}]}", "null", NULL, NULL, NULL, NULL},
    {"{'enum':['a',1,null,{'k':[1,2]}]}", "{'k':[1,2]}", NULL, NULL, NULL, NULL},
    {"{'enum':['a',1,null,{'k':[1,2]}]}", "{'k':[2,1]}", "", "enum",
     "must be one of \"a\", 1, null, {\"k\":[1,2]}", NULL},
    {"{'enum':['a',1,null,{'k':[1,2]}]}", "'1'", "", "enum",
     "must be one of \"a\", 1, null, {\"k\":[1,2]}", NULL},
    {"{'enum':[{'a':1,'b':2}]}", "{'b':2,'a':1}", NULL, NULL, NULL, NULL},
    {"{'enum':[{'a':1,'b':2}]}", "{'a':1}", "", "enum", "must be one of {\"a\":1,\"b\":2}", NULL},
    {"{'enum':[{'a':1,'b':2}]}", "{'a':1,'b':2,'c':3}", "", "enum",
     "must be one of {\"a\":1,\"b\":2}", NULL},
    {"{'enum':[{'a':1,'b':2}]}", "{'a':1,'c':2}", "", "enum", "must be one of {\"a\":1,\"b\":2}",
     NULL},
    {"{'enum':[[1,2]]}", "[1,2,3]", "", "enum", "must be one of [1,2]", NULL},
    {"{'enum':[[1,2]]}", "[1]", "", "enum", "must be one of [1,2]", NULL},
    {"{'enum':[true,false]}", "0", "", "enum", "must be one of true, false", NULL},
    {"{'enum':['say \\'hi\\'']}", "'x'", "", "enum", "must be one of \"say \\\"hi\\\"\"", NULL},
    {"{'const':{'a':[true]}}", "{'a':[true]}", NULL, NULL, NULL, NULL},
    {"{'const':{'a':[true]}}", "{'a':[false]}", "", "const", "must be equal to {\"a\":[true]}",
     NULL},
    {"{'const':0.1}", "0.1", NULL, NULL, NULL, NULL},
    {"{'const':0.1}", "0.2", "", "const", "must be equal to 0.1", NULL},
    /* numbers */
    {"{'minimum':1}", "1", NULL, NULL, NULL, NULL},
    {"{'minimum':1}", "0", "", "minimum", "must be >= 1", NULL},
    {"{'maximum':10}", "11", "", "maximum", "must be <= 10", NULL},
    {"{'maximum':10}", "10", NULL, NULL, NULL, NULL},
    {"{'exclusiveMinimum':0}", "0", "", "exclusiveMinimum", "must be > 0", NULL},
    {"{'exclusiveMinimum':0}", "0.001", NULL, NULL, NULL, NULL},
    {"{'exclusiveMaximum':1.5}", "1.5", "", "exclusiveMaximum", "must be < 1.5", NULL},
    {"{'minimum':1}", "'0'", NULL, NULL, NULL, NULL},
    /* string lengths count code points, not bytes */
    {"{'minLength':2}", "'\xc3\xa9'", "", "minLength", "must be at least 2 characters long", NULL},
    {"{'maxLength':1}", "'\xc3\xa9'", NULL, NULL, NULL, NULL},
    {"{'maxLength':2}", "'\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e'", "", "maxLength",
     "must be at most 2 characters long", NULL},
    {"{'maxLength':1}", "'\xf0\x9f\x98\x80'", NULL, NULL, NULL, NULL},
    {"{'maxLength':1}", "'\\ud83d\\ude00'", NULL, NULL, NULL, NULL},
    {"{'minLength':1}", "''", "", "minLength", "must be at least 1 character long", NULL},
    {"{'minLength':5}", "12", NULL, NULL, NULL, NULL},
    /* pattern: POSIX ERE, unanchored */
    {"{'pattern':'^[a-z]+-[0-9]+$'}", "'abc-12'", NULL, NULL, NULL, NULL},
    {"{'pattern':'^[a-z]+-[0-9]+$'}", "'ABC-12'", "", "pattern",
     "must match pattern \"^[a-z]+-[0-9]+$\"", NULL},
    {"{'pattern':'[0-9]'}", "'abc1def'", NULL, NULL, NULL, NULL},
    {"{'pattern':'^(red|green)$'}", "'green'", NULL, NULL, NULL, NULL},
    {"{'pattern':'^(red|green)$'}", "'greenish'", "", "pattern",
     "must match pattern \"^(red|green)$\"", NULL},
    {"{'pattern':'^[[:alpha:]]{2,3}$'}", "'abc'", NULL, NULL, NULL, NULL},
    {"{'pattern':'x'}", "5", NULL, NULL, NULL, NULL},
    /* format is an annotation only */
    {"{'format':'email'}", "'not an email'", NULL, NULL, NULL, NULL},
    /* boolean schemas */
    {"true", "{'anything':[1]}", NULL, NULL, NULL, NULL},
    {"false", "1", "", "false", "no value is allowed here", NULL},
};

static void test_validate_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(validate_cases) / sizeof(validate_cases[0]); i++) {
        const validate_case_t *c = &validate_cases[i];
        sg_jsonschema_errors_t errs;
        current_case = c->schema;
        sg_jsonschema_t *s = compile_ok(c->schema);
        bool ok = validate(s, c->instance, &errs);
        if (c->path == NULL) {
            if (!ok) {
                fail_msg("%s against %s: unexpected error %s: %s", c->instance, c->schema,
                         errs.items[0].path, errs.items[0].message);
            }
        } else {
            if (ok || errs.count != 1) {
                fail_msg("%s against %s: %zu errors, want 1", c->instance, c->schema, errs.count);
            }
            expect_error(&errs, 0, c->path, c->keyword, c->message, c->hint);
        }
        sg_jsonschema_errors_fini(&errs);
        sg_jsonschema_free(s);
    }
}

static const char *order_schema =
    "{'type':'object','required':['order_id','qty'],"
    "'properties':{'order_id':{'type':'string','pattern':'^ord-[0-9]+$'},"
    "'qty':{'type':'integer','minimum':1},"
    "'lines':{'type':'array','maxItems':2,'items':{'type':'string','minLength':1}},"
    "'note':{'type':['string','null']}},"
    "'additionalProperties':false}";

static void test_validate_collects_all_in_document_order(void **state)
{
    (void)state;
    sg_jsonschema_t *s = compile_ok(order_schema);
    sg_jsonschema_errors_t errs;
    assert_false(validate(s, "{'lines':['ok','',3],'qty':0,'extra':true,'note':5}", &errs));
    assert_int_equal(errs.count, 7);
    expect_error(&errs, 0, "/order_id", "required", "missing required property \"order_id\"", NULL);
    expect_error(&errs, 1, "/lines", "maxItems", "must have at most 2 items", NULL);
    expect_error(&errs, 2, "/lines/1", "minLength", "must be at least 1 character long", NULL);
    expect_error(&errs, 3, "/lines/2", "type", "expected string, got integer", NULL);
    expect_error(&errs, 4, "/qty", "minimum", "must be >= 1", NULL);
    expect_error(&errs, 5, "/extra", "additionalProperties", "unexpected property \"extra\"", NULL);
    expect_error(&errs, 6, "/note", "type", "expected string or null, got integer", NULL);
    sg_jsonschema_errors_fini(&errs);

    assert_true(validate(s, "{'order_id':'ord-7','qty':2,'lines':['a'],'note':null}", &errs));
    sg_jsonschema_errors_fini(&errs);

    /* several keywords of one schema fail together */
    sg_jsonschema_t *s2 = compile_ok("{'type':'string','enum':['a'],'minLength':3}");
    assert_false(validate(s2, "'b'", &errs));
    assert_int_equal(errs.count, 2);
    expect_error(&errs, 0, "", "enum", "must be one of \"a\"", NULL);
    expect_error(&errs, 1, "", "minLength", "must be at least 3 characters long", NULL);
    sg_jsonschema_errors_fini(&errs);
    sg_jsonschema_free(s2);
    sg_jsonschema_free(s);
}

static void test_validate_cap_and_null_list(void **state)
{
    (void)state;
    sg_jsonschema_t *s = compile_ok("{'items':{'type':'string'}}");
    cJSON *inst = js("[1,2,3,4,5]");
    sg_jsonschema_errors_t errs;
    sg_jsonschema_errors_init(&errs, 2);
    assert_false(sg_jsonschema_validate(s, inst, &errs));
    assert_int_equal(errs.count, 2);
    assert_int_equal(errs.dropped, 3);
    expect_error(&errs, 0, "/0", "type", "expected string, got integer", NULL);
    expect_error(&errs, 1, "/1", "type", "expected string, got integer", NULL);
    /* lists append across calls */
    assert_false(sg_jsonschema_validate(s, inst, &errs));
    assert_int_equal(errs.count, 2);
    assert_int_equal(errs.dropped, 8);
    sg_jsonschema_errors_fini(&errs);
    assert_false(sg_jsonschema_validate(s, inst, NULL));
    cJSON_Delete(inst);

    sg_jsonschema_errors_init(&errs, 5);
    assert_false(sg_jsonschema_validate(s, NULL, &errs));
    expect_error(&errs, 0, "", "", "no JSON value", NULL);
    sg_jsonschema_errors_fini(&errs);
    sg_jsonschema_free(s);
}

static void test_validate_deep_paths(void **state)
{
    (void)state;
    /* The deepest allowed schema gives the longest instance path: 63 steps. */
    char *schema = nest("{'items':", "{'type':'string'}", "}", SG_JSONSCHEMA_MAX_DEPTH - 1);
    char *inst = nest("[", "1", "]", SG_JSONSCHEMA_MAX_DEPTH - 1);
    char *path = nest("/0", "", "", SG_JSONSCHEMA_MAX_DEPTH - 1);
    sg_jsonschema_t *s = compile_ok(schema);
    sg_jsonschema_errors_t errs;
    assert_false(validate(s, inst, &errs));
    expect_error(&errs, 0, path, "type", "expected string, got integer", NULL);
    sg_jsonschema_errors_fini(&errs);
    free(inst);
    /* An instance deeper than the schema is not walked past the schema. */
    inst = nest("[", "'s'", "]", 500);
    assert_false(validate(s, inst, &errs));
    expect_error(&errs, 0, path, "type", "expected string, got array", NULL);
    sg_jsonschema_errors_fini(&errs);
    sg_jsonschema_free(s);
    free(schema);
    free(inst);
    free(path);
}

static void test_validate_long_string_against_pattern(void **state)
{
    (void)state;
    sg_jsonschema_t *s = compile_ok("{'pattern':'^a+$'}");
    size_t n = SG_JSONSCHEMA_PATTERN_MAX_INPUT;
    char *text = malloc(n + 4);
    assert_non_null(text);
    text[0] = '\'';
    memset(text + 1, 'a', n);
    strcpy(text + 1 + n, "'");
    sg_jsonschema_errors_t errs;
    assert_true(validate(s, text, &errs));
    sg_jsonschema_errors_fini(&errs);
    strcpy(text + 1 + n, "a'");
    assert_false(validate(s, text, &errs));
    expect_error(&errs, 0, "", "pattern",
                 "is longer than 4096 bytes, too long to be matched against pattern \"^a+$\"",
                 "bound the length with maxLength");
    sg_jsonschema_errors_fini(&errs);
    free(text);
    sg_jsonschema_free(s);
}

static void test_enum_message_is_bounded(void **state)
{
    (void)state;
    char schema[4096] = "{'enum':[";
    for (int i = 0; i < 100; i++) {
        char item[32];
        snprintf(item, sizeof(item), "%s'value-%03d'", i ? "," : "", i);
        strcat(schema, item);
    }
    strcat(schema, "]}");
    sg_jsonschema_t *s = compile_ok(schema);
    sg_jsonschema_errors_t errs;
    assert_false(validate(s, "'nope'", &errs));
    const char *m = errs.items[0].message;
    assert_true(strlen(m) < 300);
    assert_int_equal(strncmp(m, "must be one of \"value-000\", \"value-001\"", 38), 0);
    assert_non_null(strstr(m, ", ... (100 values)"));
    sg_jsonschema_errors_fini(&errs);
    sg_jsonschema_free(s);

    /* one huge value is cut too, on a character boundary */
    char big[1200] = "{'const':'";
    for (int i = 0; i < 300; i++) {
        strcat(big, "\xc3\xa9");
    }
    strcat(big, "'}");
    s = compile_ok(big);
    assert_false(validate(s, "1", &errs));
    m = errs.items[0].message;
    size_t len = strlen(m);
    assert_true(len < 300);
    assert_string_equal(m + len - 3, "...");
    assert_true(((unsigned char)m[len - 4] & 0xC0) != 0xC0); /* no cut lead byte */
    sg_jsonschema_errors_fini(&errs);
    sg_jsonschema_free(s);
}

/* ---- allocation failures ---- */

static const char *medium_schema =
    "{'type':['object','null'],'required':['order_id','lines'],"
    "'properties':{'order_id':{'type':'string','pattern':'^ord-[0-9]+$','maxLength':40},"
    "'lines':{'type':'array','minItems':1,'items':{'type':'object','required':['sku'],"
    "'properties':{'sku':{'enum':['A-1','B-2',{'x':[1,2]}]},'qty':{'type':'integer',"
    "'minimum':1}},'additionalProperties':false}},"
    "'meta':{'const':{'source':'web','tags':['a','b']}}},"
    "'additionalProperties':{'type':'string'}}";

static void test_compile_oom_loop(void **state)
{
    (void)state;
    cJSON *schema = js(medium_schema);
    sg_jsonschema_t *s = NULL;
    size_t n;
    for (n = 1; n < 10000 && s == NULL; n++) {
        sg_jsonschema_errors_t errs;
        sg_jsonschema_errors_init(&errs, 20);
        sg_alloc_fail_at(n);
        s = sg_jsonschema_compile(schema, &errs);
        sg_alloc_fail_at(0);
        if (s == NULL) {
            assert_int_equal(errs.count, 1);
            expect_error(&errs, 0, "", "", "out of memory", NULL);
        } else {
            assert_int_equal(errs.count, 0);
        }
        sg_jsonschema_errors_fini(&errs);
    }
    assert_non_null(s);
    assert_true(n > 20); /* the loop really went through the constructor */

    /* Validation allocates only error records: failures there become `dropped`. */
    cJSON *inst = js("{'order_id':'x','lines':[{'sku':'C','zz':1},{'qty':0}],'meta':1,'o':2}");
    size_t total = 0;
    for (n = 0; n < 200; n++) {
        sg_jsonschema_errors_t errs;
        sg_jsonschema_errors_init(&errs, 50);
        sg_alloc_fail_at(n);
        assert_false(sg_jsonschema_validate(s, inst, &errs));
        sg_alloc_fail_at(0);
        if (n == 0) {
            total = errs.count;
            assert_int_equal(total, 7);
        }
        assert_int_equal(errs.count + errs.dropped, total);
        sg_jsonschema_errors_fini(&errs);
    }
    cJSON_Delete(inst);
    sg_jsonschema_free(s);
    cJSON_Delete(schema);
}

static void test_compile_oom_loop_bad_schema(void **state)
{
    (void)state;
    cJSON *schema = js("{'type':'strng','properties':{'a':{'enum':[1,[2]],'minimun':1}},"
                       "'minimum':2,'maximum':1}");
    for (size_t n = 1; n < 200; n++) {
        sg_jsonschema_errors_t errs;
        sg_jsonschema_errors_init(&errs, 20);
        sg_alloc_fail_at(n);
        assert_null(sg_jsonschema_compile(schema, &errs));
        sg_alloc_fail_at(0);
        assert_true(errs.count + errs.dropped >= 1);
        sg_jsonschema_errors_fini(&errs);
    }
    cJSON_Delete(schema);
}

/* ---- concurrency: one compiled schema, many validating threads ---- */

typedef struct {
    const sg_jsonschema_t *s;
    const cJSON *good;
    const cJSON *bad;
    int failures;
} thread_arg_t;

static void *validate_many(void *p)
{
    thread_arg_t *a = p;
    for (int i = 0; i < 300; i++) {
        sg_jsonschema_errors_t errs;
        sg_jsonschema_errors_init(&errs, 20);
        if (!sg_jsonschema_validate(a->s, a->good, NULL) ||
            sg_jsonschema_validate(a->s, a->bad, &errs) || errs.count != 7) {
            a->failures++;
        }
        sg_jsonschema_errors_fini(&errs);
    }
    return NULL;
}

static void test_concurrent_validation(void **state)
{
    (void)state;
    sg_jsonschema_t *s = compile_ok(order_schema);
    cJSON *good = js("{'order_id':'ord-7','qty':2,'lines':['a'],'note':null}");
    cJSON *bad = js("{'lines':['ok','',3],'qty':0,'extra':true,'note':5}");
    pthread_t th[4];
    thread_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg_t){.s = s, .good = good, .bad = bad};
        assert_int_equal(pthread_create(&th[i], NULL, validate_many, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
    cJSON_Delete(good);
    cJSON_Delete(bad);
    sg_jsonschema_free(s);
}

/* ---- hostile and hand-built input (the fuzz target found no crash to keep) ---- */

static void test_duplicate_keys_in_enum_equality(void **state)
{
    (void)state;
    sg_jsonschema_errors_t errs;
    sg_jsonschema_t *s = compile_ok("{'enum':[{'a':1,'a':1}]}");
    assert_false(validate(s, "{'a':1,'b':2}", &errs));
    sg_jsonschema_errors_fini(&errs);
    assert_true(validate(s, "{'a':1,'a':1}", &errs));
    sg_jsonschema_errors_fini(&errs);
    sg_jsonschema_free(s);

    s = compile_ok("{'enum':[{'a':1,'b':2}]}");
    assert_false(validate(s, "{'a':1,'a':1}", &errs));
    sg_jsonschema_errors_fini(&errs);
    sg_jsonschema_free(s);
}

static void test_hand_built_trees(void **state)
{
    (void)state;
    sg_jsonschema_errors_t errs;
    /* cJSON can hold raw text that is not a JSON value; it must not reach an enum. */
    cJSON *schema = cJSON_CreateObject();
    cJSON *values = cJSON_AddArrayToObject(schema, "enum");
    cJSON_AddItemToArray(values, cJSON_CreateRaw("{oops"));
    sg_jsonschema_errors_init(&errs, 20);
    assert_null(sg_jsonschema_compile(schema, &errs));
    expect_error(&errs, 0, "/enum/0", "enum", "enum value is not plain JSON", NULL);
    sg_jsonschema_errors_fini(&errs);
    cJSON_Delete(schema);

    sg_jsonschema_t *s = compile_ok("{'type':'string','enum':['a']}");
    cJSON *raw = cJSON_CreateRaw("1");
    sg_jsonschema_errors_init(&errs, 20);
    assert_false(sg_jsonschema_validate(s, raw, &errs));
    expect_error(&errs, 0, "", "type", "expected string, got invalid JSON", NULL);
    expect_error(&errs, 1, "", "enum", "must be one of \"a\"", NULL);
    sg_jsonschema_errors_fini(&errs);
    cJSON_Delete(raw);
    sg_jsonschema_free(s);
}

static void test_pattern_screening_accepts_real_patterns(void **state)
{
    (void)state;
    /* A backslash inside brackets is a literal in POSIX, so [\d] is not the ECMA \d. */
    sg_jsonschema_free(compile_ok("{'pattern':'^[\\\\d]+$'}"));
    sg_jsonschema_free(compile_ok("{'pattern':'^[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,253}"
                                  "\\\\.[a-z]{2,63}$'}"));
    sg_jsonschema_free(compile_ok("{'pattern':'^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\\\.)+"
                                  "[a-z]{2,}$'}"));
    sg_jsonschema_free(compile_ok("{'pattern':'^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'}"));
    sg_jsonschema_free(compile_ok("{'pattern':'[]a]|[^]b]|[[:digit:][.-.]]|a{2}x{1,}'}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_errors_table),
        cmocka_unit_test(test_compile_accepts_full_vocabulary),
        cmocka_unit_test(test_compile_collects_all_errors_in_order),
        cmocka_unit_test(test_compile_error_cap_and_null_list),
        cmocka_unit_test(test_compile_depth_limit),
        cmocka_unit_test(test_compile_value_depth_limit),
        cmocka_unit_test(test_validate_table),
        cmocka_unit_test(test_validate_collects_all_in_document_order),
        cmocka_unit_test(test_validate_cap_and_null_list),
        cmocka_unit_test(test_validate_deep_paths),
        cmocka_unit_test(test_validate_long_string_against_pattern),
        cmocka_unit_test(test_enum_message_is_bounded),
        cmocka_unit_test(test_compile_oom_loop),
        cmocka_unit_test(test_compile_oom_loop_bad_schema),
        cmocka_unit_test(test_concurrent_validation),
        cmocka_unit_test(test_duplicate_keys_in_enum_equality),
        cmocka_unit_test(test_hand_built_trees),
        cmocka_unit_test(test_pattern_screening_accepts_real_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
