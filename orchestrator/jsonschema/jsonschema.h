/*
 * jsonschema: checks a saga's `input: schema:` (a JSON Schema subset) when the
 * definition is loaded, and validates saga input against it when a saga starts.
 *
 * Supported keywords: type, properties, required, additionalProperties, items, minItems,
 * maxItems, enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum (draft 2020
 * numbers, not draft-4 booleans), minLength, maxLength (in Unicode code points), pattern,
 * format (an annotation: any string passes), and the annotations title, description,
 * default, examples, $schema, $id, $comment. Any other keyword is a compile error, so a
 * typo or a keyword we do not implement ($ref, oneOf, ...) can never be silently ignored.
 *
 * `pattern` is a POSIX extended regular expression (regcomp REG_EXTENDED), not ECMA-262:
 * there is no \d (rejected at compile time with a hint: use [0-9]), no lookaround, no
 * lazy quantifiers, a backslash inside [...] is a literal backslash, and in the C locale
 * (sagad never calls setlocale) matching is byte-wise, so "." matches one byte of a
 * multi-byte character.
 * As in JSON Schema the search is unanchored: use ^ and $. glibc's matcher is not linear
 * (an unanchored search that fails is quadratic in the string), so to keep validation of
 * hostile input bounded, backreferences and repetitions that expand beyond 1000 atoms are
 * rejected at compile time, and a string longer than SG_JSONSCHEMA_PATTERN_MAX_INPUT bytes
 * is a `pattern` violation without being matched.
 *
 * This module must never log, exit, or keep global state; it reports everything through
 * sg_jsonschema_errors_t and leaves presentation (gcc-style lines, HTTP 400 bodies) to
 * its callers.
 */
#ifndef SG_JSONSCHEMA_H
#define SG_JSONSCHEMA_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "orchestrator/base/base.h"

/* Deepest nesting of subschemas (the root is level 1), and of enum/const values. */
#define SG_JSONSCHEMA_MAX_DEPTH 64

/* Longest string (in bytes) that is matched against a `pattern`; see above. */
#define SG_JSONSCHEMA_PATTERN_MAX_INPUT 4096

/* A compiled schema: opaque, immutable after compile, safe to use from many threads. */
typedef struct sg_jsonschema sg_jsonschema_t;

/* One problem. All strings are owned by the record (sg_malloc), freed by errors_fini. */
typedef struct {
    /*
     * JSON Pointer (RFC 6901, "~0" for '~' and "~1" for '/') into the schema for compile
     * errors, into the instance for validation errors; "" is the root. For `required` it
     * names the missing member ("/order_id") so that a list of paths is the list of
     * offending fields, even though that member does not exist.
     */
    char *path;
    char *keyword; /* the schema keyword involved, e.g. "required"; "" when none applies */
    char *message; /* e.g. "missing required property \"order_id\"", "must be >= 1" */
    char *hint;    /* NULL or one line of advice, e.g. "did you mean \"properties\"?" */
} sg_jsonschema_error_t;

/*
 * A capped list of problems: at most `cap` are stored, the rest only counted in
 * `dropped` (also when storing one failed for lack of memory), so hostile input cannot
 * make the list grow without bound. Caller-allocated; calls append to it.
 */
typedef struct {
    sg_jsonschema_error_t *items;
    size_t count;
    size_t cap;
    size_t dropped;
} sg_jsonschema_errors_t;

/* Prepares an empty list that stores at most cap errors. Does not allocate. */
void sg_jsonschema_errors_init(sg_jsonschema_errors_t *e, size_t cap);
/* Frees every record; the list must be initialised again before reuse. */
void sg_jsonschema_errors_fini(sg_jsonschema_errors_t *e);

/*
 * Checks and compiles a schema. schema is borrowed: the result copies what it needs, so
 * the cJSON tree may be freed right after. Returns the compiled schema (free it with
 * sg_jsonschema_free), or NULL when the schema is invalid, having appended every problem
 * found to errs in schema document order (cross-keyword checks such as minimum >
 * maximum come after the other problems of the same subschema). On out-of-memory it
 * returns NULL with one more error whose path and keyword are "" and message is
 * "out of memory". errs may be NULL when the caller only needs the verdict. Any thread.
 */
sg_jsonschema_t *sg_jsonschema_compile(const cJSON *schema, sg_jsonschema_errors_t *errs);

/*
 * Validates instance (borrowed) against s. Returns true when it is valid. Otherwise
 * returns false and appends every violation to errs, depth first: a value's own
 * violations (type, enum, const, bounds, length, pattern, missing required members in
 * `required` order), then those of its members or items in document order. When errs is
 * full the walk goes on only to count `dropped`; it allocates nothing then. When errs is
 * NULL the walk stops at the first violation. A NULL instance is one violation at "".
 * Time is linear in the size of the instance times the size of the schema, and
 * recursion is bounded by the schema depth. Any thread, also concurrently on one s.
 */
bool sg_jsonschema_validate(const sg_jsonschema_t *s, const cJSON *instance,
                            sg_jsonschema_errors_t *errs);

/* Frees a compiled schema; NULL is a no-op. */
void sg_jsonschema_free(sg_jsonschema_t *s);

#endif
