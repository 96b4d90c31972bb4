/*
 * jqcheck builtin tables: the functions and @formats that jq 1.6 defines, with lookups by
 * name and arity and "did you mean" candidates for messages.
 *
 * The tables are static and sorted; nothing here may change at run time. The unit test
 * compares public_builtins with libjq's own list, so a wrong entry fails the build.
 */
#include "orchestrator/jqcheck/jqcheck_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jq -n -r 'builtins | sort[]' with Debian's jq 1.6 (217 entries). */
static const char *const public_builtins[] = {
    "IN/1", "IN/2", "INDEX/1", "INDEX/2", "JOIN/2", "JOIN/3", "JOIN/4", "acos/0", "acosh/0",
    "add/0", "all/0", "all/1", "all/2", "any/0", "any/1", "any/2", "arrays/0", "ascii_downcase/0",
    "ascii_upcase/0", "asin/0", "asinh/0", "atan/0", "atan2/2", "atanh/0", "booleans/0",
    "bsearch/1", "builtins/0", "capture/1", "capture/2", "cbrt/0", "ceil/0", "combinations/0",
    "combinations/1", "contains/1", "copysign/2", "cos/0", "cosh/0", "debug/0", "del/1",
    "delpaths/1", "drem/2", "empty/0", "endswith/1", "env/0", "erf/0", "erfc/0", "error/0",
    "error/1", "exp/0", "exp10/0", "exp2/0", "explode/0", "expm1/0", "fabs/0", "fdim/2",
    "finites/0", "first/0", "first/1", "flatten/0", "flatten/1", "floor/0", "fma/3", "fmax/2",
    "fmin/2", "fmod/2", "format/1", "frexp/0", "from_entries/0", "fromdate/0", "fromdateiso8601/0",
    "fromjson/0", "fromstream/1", "gamma/0", "get_jq_origin/0", "get_prog_origin/0",
    "get_search_list/0", "getpath/1", "gmtime/0", "group_by/1", "gsub/2", "gsub/3", "halt/0",
    "halt_error/0", "halt_error/1", "has/1", "hypot/2", "implode/0", "in/1", "index/1",
    "indices/1", "infinite/0", "input/0", "input_filename/0", "input_line_number/0", "inputs/0",
    "inside/1", "isempty/1", "isfinite/0", "isinfinite/0", "isnan/0", "isnormal/0", "iterables/0",
    "j0/0", "j1/0", "jn/2", "join/1", "keys/0", "keys_unsorted/0", "last/0", "last/1", "ldexp/2",
    "leaf_paths/0", "length/0", "lgamma/0", "lgamma_r/0", "limit/2", "localtime/0", "log/0",
    "log10/0", "log1p/0", "log2/0", "logb/0", "ltrimstr/1", "map/1", "map_values/1", "match/1",
    "match/2", "max/0", "max_by/1", "min/0", "min_by/1", "mktime/0", "modf/0", "modulemeta/0",
    "nan/0", "nearbyint/0", "nextafter/2", "nexttoward/2", "normals/0", "not/0", "now/0", "nth/1",
    "nth/2", "nulls/0", "numbers/0", "objects/0", "path/1", "paths/0", "paths/1", "pow/2",
    "pow10/0", "range/1", "range/2", "range/3", "recurse/0", "recurse/1", "recurse/2",
    "recurse_down/0", "remainder/2", "repeat/1", "reverse/0", "rindex/1", "rint/0", "round/0",
    "rtrimstr/1", "scalars/0", "scalars_or_empty/0", "scalb/2", "scalbln/2", "scan/1", "select/1",
    "setpath/2", "significand/0", "sin/0", "sinh/0", "sort/0", "sort_by/1", "split/1", "split/2",
    "splits/1", "splits/2", "sqrt/0", "startswith/1", "stderr/0", "strflocaltime/1", "strftime/1",
    "strings/0", "strptime/1", "sub/2", "sub/3", "tan/0", "tanh/0", "test/1", "test/2", "tgamma/0",
    "to_entries/0", "todate/0", "todateiso8601/0", "tojson/0", "tonumber/0", "tostream/0",
    "tostring/0", "transpose/0", "trunc/0", "truncate_stream/1", "type/0", "unique/0",
    "unique_by/1", "until/2", "utf8bytelength/0", "values/0", "walk/1", "while/2",
    "with_entries/1", "y0/0", "y1/0", "yn/2",
};

/* Callable but unlisted: jq 1.6's builtins/0 omits names starting with '_'. Found by
 * compiling every identifier in libjq.so with arities 0-4. */
static const char *const hidden_builtins[] = {
    "_assign/2", "_divide/2", "_equal/2", "_flatten/1", "_greater/2", "_greatereq/2",
    "_group_by_impl/1", "_input/0", "_less/2", "_lesseq/2", "_match_impl/3", "_max_by_impl/1",
    "_min_by_impl/1", "_minus/2", "_mod/2", "_modify/2", "_multiply/2", "_negate/0", "_notequal/2",
    "_nwise/1", "_nwise/2", "_plus/2", "_sort_by_impl/1", "_strindices/1",
};

/* The distinct names of public_builtins, for "did you mean" hints. */
static const char *const builtin_names[] = {
    "IN", "INDEX", "JOIN", "acos", "acosh", "add", "all", "any", "arrays", "ascii_downcase",
    "ascii_upcase", "asin", "asinh", "atan", "atan2", "atanh", "booleans", "bsearch", "builtins",
    "capture", "cbrt", "ceil", "combinations", "contains", "copysign", "cos", "cosh", "debug",
    "del", "delpaths", "drem", "empty", "endswith", "env", "erf", "erfc", "error", "exp", "exp10",
    "exp2", "explode", "expm1", "fabs", "fdim", "finites", "first", "flatten", "floor", "fma",
    "fmax", "fmin", "fmod", "format", "frexp", "from_entries", "fromdate", "fromdateiso8601",
    "fromjson", "fromstream", "gamma", "get_jq_origin", "get_prog_origin", "get_search_list",
    "getpath", "gmtime", "group_by", "gsub", "halt", "halt_error", "has", "hypot", "implode", "in",
    "index", "indices", "infinite", "input", "input_filename", "input_line_number", "inputs",
    "inside", "isempty", "isfinite", "isinfinite", "isnan", "isnormal", "iterables", "j0", "j1",
    "jn", "join", "keys", "keys_unsorted", "last", "ldexp", "leaf_paths", "length", "lgamma",
    "lgamma_r", "limit", "localtime", "log", "log10", "log1p", "log2", "logb", "ltrimstr", "map",
    "map_values", "match", "max", "max_by", "min", "min_by", "mktime", "modf", "modulemeta", "nan",
    "nearbyint", "nextafter", "nexttoward", "normals", "not", "now", "nth", "nulls", "numbers",
    "objects", "path", "paths", "pow", "pow10", "range", "recurse", "recurse_down", "remainder",
    "repeat", "reverse", "rindex", "rint", "round", "rtrimstr", "scalars", "scalars_or_empty",
    "scalb", "scalbln", "scan", "select", "setpath", "significand", "sin", "sinh", "sort",
    "sort_by", "split", "splits", "sqrt", "startswith", "stderr", "strflocaltime", "strftime",
    "strings", "strptime", "sub", "tan", "tanh", "test", "tgamma", "to_entries", "todate",
    "todateiso8601", "tojson", "tonumber", "tostream", "tostring", "transpose", "trunc",
    "truncate_stream", "type", "unique", "unique_by", "until", "utf8bytelength", "values", "walk",
    "while", "with_entries", "y0", "y1", "yn",
};

/* jq 1.6's f_format knows these; anything else fails at run time. */
static const char *const formats[] = {
    "base64", "base64d", "csv", "html", "json", "sh", "text", "tsv", "uri",
};

static int cmp_str(const void *key, const void *elem)
{
    return strcmp((const char *)key, *(const char *const *)elem);
}

static bool in_table(const char *const *table, size_t n, const char *key)
{
    return bsearch(key, table, n, sizeof(*table), cmp_str) != NULL;
}

bool jqc__builtin_exists(const char *name, size_t len, unsigned arity)
{
    char key[48];
    if (len > 32 || arity > 99 || memchr(name, 0, len) != NULL) {
        return false; /* no builtin is that long */
    }
    snprintf(key, sizeof(key), "%.*s/%u", (int)len, name, arity);
    return in_table(public_builtins, SG_ARRAY_LEN(public_builtins), key) ||
           in_table(hidden_builtins, SG_ARRAY_LEN(hidden_builtins), key);
}

unsigned jqc__builtin_arities(const char *name, size_t len)
{
    unsigned bits = 0;
    for (unsigned a = 0; a < 16; a++) {
        if (jqc__builtin_exists(name, len, a)) {
            bits |= 1u << a;
        }
    }
    return bits;
}

const char *jqc__builtin_closest(const char *word)
{
    return sg_closest(word, builtin_names, SG_ARRAY_LEN(builtin_names));
}

bool jqc__format_valid(const char *name, size_t len)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(formats); i++) {
        if (strlen(formats[i]) == len && memcmp(formats[i], name, len) == 0) {
            return true;
        }
    }
    return false;
}

const char *jqc__format_closest(const char *word)
{
    return sg_closest(word, formats, SG_ARRAY_LEN(formats));
}

const char *const *sg_jq_builtins(size_t *count)
{
    if (count != NULL) {
        *count = SG_ARRAY_LEN(public_builtins);
    }
    return public_builtins;
}
