/*
 * jqcheck: a fast validator for jq 1.6 programs (syntax and name binding), so that saga
 * definitions can be checked in microseconds per expression instead of the ~13 ms that
 * libjq's jq_compile spends re-parsing its own builtins. The engine still compiles every
 * expression with the real libjq, lazily, before running it.
 *
 * It must never reject a program that jq 1.6 compiles (the only deliberate exceptions are
 * listed under sg_jq_check), never allocate memory that outlives a call, keep no global
 * mutable state, and never let hostile input overflow the C stack or take more than
 * linear time.
 */
#ifndef SG_JQCHECK_H
#define SG_JQCHECK_H

#include "orchestrator/base/base.h"

/* Deepest nesting of brackets, parentheses, braces, interpolations, bodies and patterns
 * that sg_jq_check accepts. A level costs about 1 KiB of C stack in an optimized build, so
 * a check needs at most ~220 KiB (about 2.5 times that under AddressSanitizer). */
#define SG_JQ_MAX_DEPTH 200

/* What kind of problem an sg_jq_error_t describes. */
typedef enum {
    SG_JQ_ERR_SYNTAX = 1, /* jq 1.6 would report a syntax (or literal) error */
    SG_JQ_ERR_NAME,       /* an undefined function, $variable or label, or a constant
                             non-string object key: jq 1.6 would refuse to compile it */
    SG_JQ_ERR_POLICY,     /* jq 1.6 compiles it, sagad refuses it: modules, unknown @formats
                             (they fail every time they run), NUL bytes */
    SG_JQ_ERR_LIMIT,      /* nested deeper than SG_JQ_MAX_DEPTH, or out of memory */
} sg_jq_err_kind_t;

typedef struct {
    uint32_t offset;       /* byte offset into the expression */
    uint32_t line;         /* 1-based, counting '\n' in the expression */
    uint32_t col;          /* 1-based, in bytes */
    char message[256];     /* e.g. "unexpected ')'", "function foo/1 is not defined" */
    char hint[160];        /* "" or one line of advice, e.g. "did you mean 'select'?" */
    sg_jq_err_kind_t kind; /* added: lets callers and the differential fuzzer tell
                              jq-compatible rejections from sagad's stricter policy */
} sg_jq_error_t;

/*
 * A path term that starts at the input: `.steps.reserve.output.id` gives the fields
 * {"steps", "reserve", "output", "id"}. The rule, purely syntactic:
 *   - a term that starts with the identity `.` followed by a literal name (`.a`, `."a"`,
 *     `.["a"]`), then every following literal name (`.b`, `."b"`, `["b"]`, each optionally
 *     followed by `?`), up to 8 of them; the path ends at the first other suffix (`[0]`,
 *     `[]`, `[expr]`, a slice, an interpolated `."\(x)"`) or at the end of the term;
 *   - the object shorthands `{a}` and `{"a"}` (which mean `{a: .a}`) give the path {"a"}
 *     with the offset of the key;
 *   - terms that start elsewhere (`$x.steps.y`, `f.a`, `(.).a`, `..`) are not reported.
 * The checker does not follow data flow: in `.foo | .steps` both `.foo` and `.steps` are
 * reported, although `.steps` reads from the output of `.foo`. Terms inside string
 * interpolations, function arguments, object values and index expressions count.
 * Callbacks come in source order of the terms' leading '.'; offset is that '.'.
 */
typedef struct {
    const char *ptr;
    size_t len;
} sg_jq_field_t;
typedef void (*sg_jq_path_fn)(void *ctx, const sg_jq_field_t *fields, size_t n, uint32_t offset);

/*
 * Checks one jq 1.6 program src[0..len) (src may be NULL when len is 0). Returns true if
 * jq 1.6 would compile it. On false, *err (if not NULL) describes the first error: the
 * first syntax error if there is one, else the first name or policy error by position.
 * Like jq 1.6, which drops unused `def`s before resolving names, it ignores name errors
 * inside functions that nothing outside them calls.
 *
 * path_fn (may be NULL) is called on the calling thread, during the call, for every path
 * term as described above; field pointers point into src or into a scratch buffer (for
 * names written with escapes, which are decoded) and are valid only during the callback.
 * Terms parsed before an error was found have already been reported; discard them when
 * the call returns false.
 *
 * Deliberately stricter than jq 1.6 (kind SG_JQ_ERR_POLICY or SG_JQ_ERR_LIMIT):
 * `import`/`include`/`module` directives, unknown `@format`s, NUL bytes (jq's C API stops
 * at them), nesting deeper than SG_JQ_MAX_DEPTH.
 *
 * Pure: any bytes are fine (invalid UTF-8 is accepted inside string literals, as jq does),
 * no state outlives the call, any thread may call it concurrently. Typical expressions
 * need no allocation; large ones (over 32 names bound at once, over 16 definitions, path
 * fields with more than 512 bytes of escapes) and a name error inside a called definition
 * do, through sg_malloc. If one fails, it returns false with kind SG_JQ_ERR_LIMIT.
 */
bool sg_jq_check(const char *src, size_t len, sg_jq_path_fn path_fn, void *ctx, sg_jq_error_t *err);

/* Flags for sg_jq_check_ex. */
enum {
    /* Accept everything jq 1.6's compiler accepts where sagad's policy is stricter but jq's
     * own verdict is cheap to mirror: unknown @formats and a leading `module <const>;`.
     * For differential testing against libjq, not for validating definitions. */
    SG_JQ_COMPAT = 1u << 0,
};

/* sg_jq_check with flags (a bitwise or of the values above); sg_jq_check passes 0. */
bool sg_jq_check_ex(const char *src, size_t len, unsigned flags, sg_jq_path_fn path_fn, void *ctx,
                    sg_jq_error_t *err);

/*
 * Names of the public jq 1.6 builtin functions as "name/arity", sorted by strcmp, exactly
 * what jq 1.6's `builtins | sort` lists. The checker also knows the 24 hidden `_name`
 * builtins (e.g. `_modify/2`) that jq 1.6 lets programs call but does not list.
 * Static storage; any thread. *count receives the number of entries.
 */
const char *const *sg_jq_builtins(size_t *count);

#endif
