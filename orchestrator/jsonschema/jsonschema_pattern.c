/*
 * jsonschema pattern screening: rejects `pattern` values that POSIX regcomp would accept
 * but that would make sagad misbehave: ECMA-only escapes that POSIX reads differently
 * (\d), backreferences (exponential matching), and repetitions whose expansion would make
 * regcomp slow or huge.
 *
 * It only reads the pattern; it must never compile or match it (jsonschema.c and
 * jsonschema_validate.c do), and it need not diagnose plain syntax errors: regcomp does.
 */
#include <ctype.h>
#include <string.h>

#include "orchestrator/jsonschema/jsonschema_int.h"

#define PATTERN_MAX_LEN 4096
#define PATTERN_MAX_GROUPS 32
/*
 * Budget for the pattern's size once every {m,n} is expanded into copies, as glibc does.
 * glibc's unanchored search is quadratic in the subject and linear in this size; with
 * subjects capped at SG_JSONSCHEMA_PATTERN_MAX_INPUT, 1000 keeps the worst pattern we
 * measured under a second per string, while real patterns (emails, ids) stay far below.
 */
#define PATTERN_MAX_ATOMS 1000.0

/* Index just past the bracket expression that starts at p[i] == '[', or 0 when it is
 * unterminated (regcomp then reports it). */
static size_t skip_bracket(const char *p, size_t i)
{
    i++;
    if (p[i] == '^') {
        i++;
    }
    if (p[i] == ']') {
        i++; /* a leading ']' is a literal */
    }
    while (p[i] != '\0' && p[i] != ']') {
        if (p[i] == '[' && (p[i + 1] == ':' || p[i + 1] == '.' || p[i + 1] == '=')) {
            char delim = p[i + 1];
            size_t j = i + 2;
            while (p[j] != '\0' && !(p[j] == delim && p[j + 1] == ']')) {
                j++;
            }
            if (p[j] == '\0') {
                return 0;
            }
            i = j + 2;
            continue;
        }
        i++;
    }
    return p[i] == ']' ? i + 1 : 0;
}

/* Parses "{m}", "{m,}" or "{m,n}" at p[i]; returns the index past it and the number of
 * copies regcomp makes, or 0 when it is not an interval. */
static size_t parse_interval(const char *p, size_t i, double *copies)
{
    double m = 0;
    double n;
    size_t j = i + 1;
    if (!isdigit((unsigned char)p[j])) {
        return 0;
    }
    for (; isdigit((unsigned char)p[j]); j++) {
        m = m < 1e9 ? m * 10 + (p[j] - '0') : m;
    }
    n = m;
    if (p[j] == ',') {
        j++;
        n = m + 1; /* "{m,}" is m copies and a star */
        if (isdigit((unsigned char)p[j])) {
            for (n = 0; isdigit((unsigned char)p[j]); j++) {
                n = n < 1e9 ? n * 10 + (p[j] - '0') : n;
            }
        }
    }
    if (p[j] != '}') {
        return 0;
    }
    *copies = m > n ? m : n;
    if (*copies < 1) {
        *copies = 1; /* "x{0}" still costs its one parse */
    }
    return j + 1;
}

const char *jsonschema__pattern_check(const char *p, const char **hint)
{
    double sum[PATTERN_MAX_GROUPS + 1] = {0}; /* expanded size of each open group */
    size_t top = 0;
    double last = 0; /* expanded size of the atom a quantifier would repeat */
    *hint = NULL;
    if (strlen(p) > PATTERN_MAX_LEN) {
        return "pattern is longer than 4096 bytes";
    }
    for (size_t i = 0; p[i] != '\0';) {
        double atom = 1;
        double copies;
        size_t j;
        switch (p[i]) {
        case '\\':
            if (p[i + 1] >= '1' && p[i + 1] <= '9') {
                *hint = "their matching time can grow exponentially with the input";
                return "backreferences are not supported";
            }
            if (p[i + 1] == 'd' || p[i + 1] == 'D') {
                *hint = "patterns are POSIX ERE: use [0-9] for \\d and [^0-9] for \\D";
                return "\\d and \\D are not POSIX extended regular expressions";
            }
            i += p[i + 1] != '\0' ? 2 : 1;
            break;
        case '[':
            j = skip_bracket(p, i);
            if (j == 0) {
                return NULL; /* malformed: regcomp says so with a better message */
            }
            i = j;
            break;
        case '(':
            if (top == PATTERN_MAX_GROUPS) {
                return "pattern nests groups more than 32 deep";
            }
            sum[++top] = 0;
            last = 0;
            i++;
            continue;
        case ')':
            i++;
            if (top > 0) {
                atom = sum[top--] + 1;
            }
            break;
        case '{':
            j = parse_interval(p, i, &copies);
            if (j == 0) {
                i++;
                break;
            }
            sum[top] += last * (copies - 1);
            last *= copies;
            i = j;
            atom = 0;
            break;
        case '*':
        case '+':
        case '?':
            sum[top] += last; /* "x+" becomes "xx*" */
            last *= 2;
            i++;
            atom = 0;
            break;
        case '|':
            last = 0;
            i++;
            continue;
        default:
            i++;
            break;
        }
        if (atom > 0) {
            last = atom;
            sum[top] += atom;
        }
        if (sum[top] > PATTERN_MAX_ATOMS) {
            *hint = "repetition counts multiply; bound long runs with maxLength instead";
            return "pattern is too large once its repetitions are expanded";
        }
    }
    return NULL;
}
