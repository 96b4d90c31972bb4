/*
 * Unit tests of jqcheck. Every corpus entry is also compiled with libjq 1.6 itself, so the
 * corpus is checked against the real jq: a test fails if our verdict or jq's differs from
 * the expectation written here. Policy entries (where sagad is deliberately stricter)
 * assert that jq accepts them, so the list of deviations stays honest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jq.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/jqcheck/jqcheck.h"

/* libjq 1.6 leaks on some of its own compile-error paths; that is not ours to report. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libjq.so\n";
}

/* ---- libjq as the oracle ---- */

static void swallow(void *data, jv msg)
{
    (void)data;
    jv_free(msg);
}

static bool jq_accepts(const char *src)
{
    jq_state *jq = jq_init();
    assert_non_null(jq);
    jq_set_error_cb(jq, swallow, NULL);
    int ok = jq_compile(jq, src);
    jq_teardown(&jq);
    return ok != 0;
}

static bool check(const char *src, sg_jq_error_t *err)
{
    return sg_jq_check(src, strlen(src), NULL, NULL, err);
}

/* ---- corpus: valid programs (jq 1.6 compiles each) ---- */

static const char *const valid[] = {
    /* paths and indexes, mostly from the jq 1.6 manual */
    ".",
    ".foo",
    ".foo.bar",
    ".foo?",
    ".[\"foo\"]",
    ".[\"foo\"]?",
    ".\"foo\"",
    ".\"foo$\"",
    ".[0]",
    ".[-2]",
    ".[2:4]",
    ".[:3]",
    ".[-2:]",
    ".[]",
    ".[]?",
    ".foo[]",
    ".[4,2]",
    ".a.b?.c[0]?[1:2]?",
    ".a[]?[]",
    ".a??",
    ".a?.b",
    ".[]?.a",
    "..",
    "..[0]",
    "..?",
    "..|.a?",
    ".. .a",
    "1 .a",
    ". .a",
    ". \"a\"",
    ".a .b",
    "\"abc\".x",
    "\"abc\"[0]",
    "[1, 2][0]",
    "{a: 1}.a",
    "(1).a",
    "length.a",
    "length[0]",
    "length[]",
    "$__loc__.file",
    "$ENV.PATH",
    ".a.if",
    ".import",
    ".__loc__",
    "._x",
    ".a_b2",
    ".a.\"b\".c",
    ".\"a\\(1)\"?",
    ".a[1:][0]",
    ".a[]?.b",
    ".e5x",
    "[.[]?]",
    "[..]",
    /* operators */
    ".foo, .bar",
    ".[] | .name",
    "(. + 2) * 5",
    ".a + 1",
    "4 - .a",
    "10 / . * 3",
    ".[] | (1 / .)?",
    "1 // 2 // 3",
    "1 and 2 or 3",
    "(true, false) or false",
    "-1",
    "- 1",
    "--1",
    "-.a",
    "1 - -1",
    "1--1",
    "[.[] | -.]",
    "-1?",
    ".a = 1 | .b",
    ".a = 1",
    ".a |= . + 1",
    ".a += 1",
    ".a -= 1",
    ".a *= 2",
    ".a /= 2",
    ".a %= 2",
    ".a //= 3",
    ".. |= .",
    "1 == 2 and 3 == 4",
    "1 < 2",
    "1 <= 2",
    "1 > 2",
    "1 >= 2",
    "1 != 2",
    "not",
    "1 % 2",
    "(..|select(type==\"boolean\")) |= if . then 1 else 0 end",
    /* jq 1.6 folds constant division; only an infinite result is refused */
    "0/0",
    "0/0/0",
    "1e308*10",
    "1e1000",
    "1e308+1e308",
    "(-1)/0",
    "1 % 0",
    "1/null",
    "1/-0",
    "\"a\"/0",
    "1.7976931348623157e308/1",
    "1 / 0?",
    "1/(0,0)",
    "1/[0][0]",
    "1/(1e1000 - 1e1000)",
    /* literals and strings */
    "1e3",
    ".5",
    "1.",
    "1.e3",
    "1.5e-3",
    "00012",
    "1E+5",
    "null",
    "true",
    "false",
    "\"\"",
    "\"\\n\\t\\r\\b\\f\\\\\\/\\\"\"",
    "\"\\u00E9\\uABCD\"",
    "\"\\ud83d\\ude00\"",
    "\"\\ud83d\\ude00x\"",
    "\"\\udc00\"",
    "\"\\u12345\"",
    "\"\\(1)\\(2)\\(3)\"",
    "\"\\(\"\\(\"x\")\")\"",
    "\"a\\(.a | \"b\\(.b)\")\"",
    "\"\\(1, 2)\"",
    "\"a\nb\"",
    "\"\x01\"",
    "\"\xff\xfe invalid UTF-8 is fine in strings\"",
    "\"#not a comment\"",
    "\"The input was \\(.), which is one less than \\(.+1)\"",
    "@base64",
    "@base64d",
    "@text",
    "@json",
    "@html",
    "@uri",
    "@csv",
    "@tsv",
    "@sh",
    "@sh \"echo \\(.)\"",
    "@base64 \"a\\(.)\"",
    "@json \"v=\\(.)\"",
    ".@base64 \"x\"",
    /* arrays and objects */
    "[]",
    "[.user, .projects[]]",
    "{}",
    "{user, title: .titles[]}",
    "{(.user): .titles}",
    "{\"a\": 1, b: 2}",
    "{a: 1,}",
    "{a: -1}",
    "{a: - 1 | - 2}",
    "{a: .b | .c}",
    "{a: (1 + 2)}",
    "{a: .b?}",
    "{a: $__loc__}",
    "{a: @base64}",
    "{a: .[]}",
    "{a: ..}",
    "{a: \"x\\(1 + 2)\"}",
    "{a: [1 + 2]}",
    "{a: {b: 1}}",
    "{a: (1, 2)}",
    "{a: 1, b}",
    "{\"a\"}",
    "{\"a\\(1)\"}",
    "{\"a\\(1)\": 2}",
    "{@base64 \"x\"}",
    "{@base64 \"x\": 1}",
    ". as $x | {$x}",
    "{if: 1, then: 2, else: 3, end: 4, and: 5, or: 6, reduce: 7, foreach: 8}",
    "{try: 1, catch: 2, label: 3, import: 4, include: 5, def: 6, as: 7, elif: 8, module: 9}",
    "{break: 1, __loc__: 2, not: 3}",
    "{a::b: 1}",
    "{a::b}",
    "{(1, 2): 3}",
    "{(-1): 2}",
    "{(\"a\" + \"b\"): 1}",
    "{(null + \"a\"): 1}",
    "{(1 % 2): 1}",
    "{([1, (2, 3)]): 1}",
    "{(.): 1}",
    "{(. | .): 1}",
    "{(1 | 2): 1}",
    "{(def f: 1; f): 1}",
    "{({a: .}): 1}",
    "{({a}): 1}",
    "{([.]): 1}",
    "{(true == false): 1}",
    "{(\"a\" == \"a\"): 1}",
    "{([1] + [2]): 1}",
    "{(null + \"a\" + 1): 1}",
    "{(1 and 1): 1}",
    "{(1 // 2): 1}",
    "{(try 1): 1}",
    "{(1?): 1}",
    "{(\"\\(1)\"): 1}",
    "{(@base64 \"a\"): 1}",
    "{(@base64): 1}",
    "{(reduce . as $x (1; .)): 1}",
    "{(if true then 1 else 2 end): 1}",
    "\"x\" as $k | {($k): 1}",
    "[1, 2] as [$a] | {($a): 1}",
    /* builtins */
    "length",
    "utf8bytelength",
    "keys",
    "map(has(\"foo\"))",
    "map(in([0, 1]))",
    "map(.+1)",
    "map_values(.+1)",
    "path(.a[0].b)",
    "[paths]",
    "del(.foo)",
    "del(.[1, 2])",
    "to_entries",
    "from_entries",
    "with_entries(.value += 1)",
    "map(select(. >= 2))",
    ".[] | numbers",
    "1, empty, 2",
    "[leaf_paths]",
    "any",
    "all",
    "flatten",
    "flatten(1)",
    "range(2; 4)",
    "[range(0; 10; 3)]",
    "floor",
    "sqrt",
    "tonumber",
    "tostring",
    "map(type)",
    "infinite",
    "nan | isnan",
    "sort",
    "sort_by(.foo)",
    "group_by(.foo)",
    "min",
    "max_by(.foo)",
    "unique",
    "unique_by(length)",
    "reverse",
    "contains(\"bar\")",
    "indices(\", \")",
    "index(\", \")",
    "rindex(\", \")",
    "inside(\"foobar\")",
    "[.[] | startswith(\"foo\")]",
    "combinations",
    "combinations(2)",
    "ltrimstr(\"foo\")",
    "rtrimstr(\"foo\")",
    "explode",
    "implode",
    "split(\", \")",
    "join(\", \")",
    "ascii_downcase",
    "[while(. < 100; . * 2)]",
    "[.[] | [., 1] | until(.[0] < 1; [.[0] - 1, .[1] * .[0]]) | .[1]]",
    "recurse(.foo[])",
    "recurse",
    "recurse(. * .; . < 20)",
    "env.PAGER",
    "transpose",
    "bsearch(0)",
    "tojson",
    "fromjson",
    "fromdate",
    "todate",
    "now",
    "mktime",
    "gmtime",
    "strftime(\"%Y\")",
    "strptime(\"%Y-%m-%dT%H:%M:%SZ\") | mktime",
    "test(\"foo\")",
    "test(\"a\"; \"x\")",
    "match(\"(abc)+\"; \"g\")",
    "capture(\"(?<a>[a-z]+)\")",
    "[scan(\"c\")]",
    "splits(\"a\")",
    "split(\", *\"; null)",
    "sub(\"^(?<head>.)\"; \"Head=\\(.head)\")",
    "sub(\"a\"; \"b\"; \"g\")",
    "gsub(\"p\"; \"q\")",
    "[limit(3; .[])]",
    "first(range(10))",
    "isempty(empty)",
    "input",
    "[inputs]",
    "debug",
    "stderr",
    "input_filename",
    "input_line_number",
    "$__loc__",
    "getpath([\"a\", \"b\"])",
    "paths(type == \"number\")",
    "tostream",
    "fromstream(tostream)",
    "[1 | truncate_stream([[0], 1], [[1, 0], 2])]",
    "walk(.)",
    "IN(1, 2)",
    "IN(.[]; 1, 2)",
    "INDEX(.id)",
    "INDEX(.[]; .id)",
    "JOIN({}; .id)",
    "JOIN({}; .[]; .id)",
    "JOIN({}; .[]; .id; add)",
    "halt",
    "halt_error",
    "halt_error(1)",
    "error",
    "error(1)",
    "builtins",
    "get_search_list",
    "modulemeta",
    "splits(\"a\"; \"g\")",
    "env | keys",
    "$ENV | .PATH",
    "true | not",
    "getpath([\"a\"]) // \"none\"",
    "ascii_upcase",
    "tojson | fromjson",
    "todateiso8601",
    "fromdateiso8601",
    "significand",
    "gamma",
    "pow10",
    "pow(2; 3)",
    "log2",
    "fma(1; 2; 3)",
    "ldexp(1; 2)",
    "frexp",
    "modf",
    "splits(\", \")",
    /* hidden builtins: callable in jq 1.6 although `builtins` does not list them */
    "_plus(1; 2)",
    "_negate",
    "_minus(1; 2)",
    "_multiply(1; 2)",
    "_divide(1; 2)",
    "_mod(1; 2)",
    "_equal(1; 2)",
    "_notequal(1; 2)",
    "_less(1; 2)",
    "_lesseq(1; 2)",
    "_greater(1; 2)",
    "_greatereq(1; 2)",
    "_sort_by_impl(.)",
    "_group_by_impl(.)",
    "_min_by_impl(.)",
    "_max_by_impl(.)",
    "_match_impl(.; .; .)",
    "_strindices(.)",
    "_input",
    "_assign(.a; 1)",
    "_modify(.a; . + 1)",
    "_flatten(1)",
    "_nwise(2)",
    "_nwise(.; 2)",
    /* bindings, destructuring, reduce, foreach, labels */
    ".bar as $x | .foo | . + $x",
    ". as $i | [(.*2 | . as $i | $i), $i]",
    ". as [$a, $b, {c: $c}] | $a + $b + $c",
    ".[] as [$a, $b] | {a: $a, b: $b}",
    ".[] as {a: $a} ?// {b: $a} ?// $a | $a",
    ".[] as [$a] ?// $a | $a",
    ". as {$a, b: [$c, {d: $e}]} | [$a, $c, $e]",
    ". as {(\"a\", \"b\"): $x} | $x",
    ". as {\"a\\(1)\": $x} | $x",
    ". as {$a: $b} | $a, $b",
    ". as {$a: [$b]} | $a, $b",
    ". as {a: $a, if: $b, \"c\": $c, $d} | 1",
    ". as {__loc__: $a, import: $b} | $a",
    ". as [$a, [$b]] | 1",
    ". as [$a, $a] | $a",
    ". as {@base64 \"x\": $x} | $x",
    ". as {(\"a\"): $a} | 1",
    ". as {(null + \"a\"): $a} | 1",
    ". as $a ?// $b | 1",
    ". as [$a] ?// [$b] | $a, $b",
    ". as [$a] ?// {($a): $b} | $b",
    ". as {$a, ($a): $b} ?// [$c] | $b",
    ". as $a::b | $a::b",
    ". as $x | $ x",
    "$ __loc__",
    "1 as $x | 2 as $y | [$x, $y, $__loc__]",
    ".a? as $x | $x",
    "\"\\(1)\" as $x | $x",
    "$__loc__ as $x | $x",
    "1 + . as $x | $x",
    "- . as $x | $x",
    "[.[] | . as $x | $x]",
    "reduce .[] as $item (0; . + $item)",
    "reduce .[] as [$a, $b] (0; $a + $b)",
    "reduce .[] as [$a] ?// $a (0; . + $a)",
    "reduce $__loc__ as $x (0; .)",
    "reduce @base64 as $x (0; .)",
    "reduce \"a\\(1)\" as $x (0; .)",
    "reduce . as $x (0; .) + 1",
    "reduce . as $x (0; .)?",
    "1 + reduce . as $x (0; .)",
    "[foreach .[] as $item (0; . + $item)]",
    "[foreach .[] as $item (0; . + $item; [$item])]",
    "foreach .[] as [$a] ?// $a (0; . + $a; [$a])",
    "label $out | foreach .[] as $item (0; . + 1; if . > 2 then ., break $out else . end)",
    "label $f | 1, break $f",
    "label $a | label $b | break $a",
    "label $a | (label $b | break $b) | break $a",
    "label $f | def g: break $f; g",
    "label $x | . as $x | break $x",
    "1 + label $f | 1",
    /* if, try */
    "if . then 1 else 2 end",
    "if . then 1 elif . then 2 else 3 end",
    "if . then 1 else 2 end?",
    "[.[] | try if . == 0 then error(\"x\") else . end catch .]",
    "try error(\"x\") catch .",
    "try error(\"x\")",
    "try try 1 catch 2",
    "try try 1 catch 2 catch 3",
    "try 1 catch 2 + 3",
    "try (1) catch 2",
    "try .a catch 2",
    "try .a? catch 2",
    "try .a.b[0] catch 2",
    "try reduce . as $x (0; .) catch 2",
    "try if . then 1 else 2 end catch 2",
    "try def f: 1; f catch 2",
    "try label $f | 1 catch 2",
    "try -1 * 1 catch 2",
    "try -1? catch 2",
    "try . as $x | $x + 1 catch 2",
    "[.[] | (.a)?]",
    "try error(\"\\($__loc__)\") catch .",
    /* definitions */
    "def f: 1; f",
    "def f(g): g; f(1)",
    "def f($a): $a, a; f(1)",
    "def f: def g: 1; g; f",
    "def f: 1; def f: 2; f",
    "def f: f; f",
    "def f: 3;",
    "def f: 3; def g: 4;",
    "def f(a; b): a + b; f(1; 2)",
    "def f(a; $b): a + $b + b; f(1; 2)",
    "def f(a; a): a; f(1; 2)",
    "def f($a; $a): $a; f(1; 2)",
    "def f: 1 ; f | def g: 2; g",
    "def f(x): x; def f: 1; f(2), f",
    "def f: def f: 2; f; f",
    "def a::b: 1; a::b",
    "def f(a::b): a::b; f(1)",
    "def f(g): def h: g; h; f(1)",
    "def f($a): def g: $a + a; g; f(1)",
    ". as $x | def f: $x; f",
    "def fac: if . <= 1 then 1 else . * (. - 1 | fac) end; fac",
    "def addvalue(f): f as $x | map(. + $x); addvalue(.[0])",
    "1 + def f: 1; f",
    "def f: reduce .[] as $x (0; . + $x); f",
    /* jq 1.6 drops definitions nothing live calls, so their names are never resolved */
    "def f: foo; 1",
    "def f: $x;",
    "def f: foo;",
    "def f: foo; def g: f; 1",
    "def f: def g: foo; 1; f",
    "def f(x): foo; 1",
    "def f: break $l; 1",
    "def f: foo; def f: 1; f",
    "def f: foo; def g(f): f; g(1)",
    "def f: foo; def g: def h: f; 1; g",
    "def f(a): a; def g: f(foo); 1",
    "def f: foo; def f: f; f",
    "def f: 1; def g: f; def f: foo; g",
    "def f: . as [$a] ?// {($zz): $b} | 1; 1",
    /* blanks and comments */
    "",
    "# only a comment",
    "  \n\t  ",
    "1 # comment\n+ 1",
    "\"a\\(1 # comment\n)\"",
    "1 +\n  2",
    "$ # comment\n __loc__",
    /* sagad-style expressions */
    ".steps.reserve.output.id",
    ".input.order | {id, total: (.items | map(.price) | add)}",
    "if .steps.charge.output.status == \"ok\" then \"done\" elif .x then 1 else \"retry\" end",
    "[.[] | select(.id == \"x\")] | length > 0",
    "\"\\(.a)-\\(.b)\"",
    "to_entries | map(select(.value != null)) | from_entries",
    ". as {a: $a} | {$a}",
};

/* ---- corpus: invalid programs (jq 1.6 refuses each) ---- */

static const char *const invalid[] = {
    /* syntax */
    "1 +",
    ".a b",
    "1 2",
    "\"a\" \"b\"",
    "(1",
    "(1))",
    "[1",
    "]",
    "{",
    "{a",
    "{a:",
    "[.[]",
    "f()",
    "length()",
    "def f(): 1; 1",
    "def f: 1",
    "def f: 1; def g: 2; f;",
    "1; 2",
    "(def f: 1;)",
    "1 | as $x | 2",
    "try",
    "if",
    "reduce",
    "def",
    "label",
    "label $x",
    "@base64 @base64",
    "1 && 2",
    "!",
    "`",
    "@",
    "\"\\(1]\"",
    /* jq 1.6 requires else */
    "if . then 1 end",
    "if . then 1 elif . then 2 end",
    "if . then 1",
    /* object values are terms; keys */
    "{a: 1 + 2}",
    "{a: 1?}",
    "{a: reduce .[] as $x (0; .)}",
    "{a: if . then 1 else 2 end}",
    "{a: try 1}",
    "{a: 1 as $x | $x}",
    ". as $x | {$x: 1}",
    "{$__loc__}",
    "{if}",
    "{__loc__}",
    "{@base64: 1}",
    "{,}",
    "{a: 1,,}",
    "{1: 2}",
    "{$__loc__: 1}",
    /* constant keys that fold to non-strings */
    "{(1): 2}",
    "{(1 + 1): 2}",
    "{(null): 1}",
    "{(true): 1}",
    "{([]): 1}",
    "{({}): 1}",
    "{([1, \"a\"]): 1}",
    "{({a: 1}): 1}",
    "{($__loc__): 1}",
    "{(def f: 1; 2): 3}",
    "{(1 | .): 2}",
    "{(. | 1): 2}",
    "{(1e1000): 1}",
    "{(1 / 0): 1}",
    "{(1 == 1): 1}",
    "{(null + 1): 1}",
    "{(null + null): 1}",
    "{([1] + null): 1}",
    "{((1)): 1}",
    "{([(1, 2), 3]): 1}",
    "{([\"a\" + \"b\"]): 1}",
    "{([@base64 \"a\"]): 1}",
    "{({(\"a\"): 1}): 1}",
    "{({a: (1)}): 1}",
    ". as {(1): $a} | $a",
    ". as {([]): $a} | 1",
    "def f: {(1): 2}; 1",
    /* constant division with an infinite result ("Division by zero?" in jq 1.6) */
    "1/0",
    "1e1000/1",
    "1e308*10/1",
    "-1/0",
    "[1/0]",
    "1/(0)",
    "1/(1-1)",
    "1/(0|.)",
    "2/1e-320",
    "1.7976931348623159e308/1",
    "(1/0)?",
    "def f: 1/0; 1",
    "1/0 == 1",
    "1./0   *3", /* found by the fuzzer */
    /* strings */
    "\"abc",
    "\"abc\\",
    "\"a\\(1\"",
    "\"a\\(1",
    "\"\\(1; 2)\"",
    "\"\\()\"",
    "\"\\x\"",
    "\"\\'\"",
    "\"\\u12\"",
    "\"\\uZZZZ\"",
    "\"\\ud800\"",
    "\"\\ud83dx\"",
    "\"\\ud83d\\u0041\"",
    "\"\\u\"",
    "\"\\ud83d\\uZZZZ\"",
    /* numbers and dots: jq 1.6 lexes [0-9.]+ as one number */
    "1.2.3",
    "...",
    "...a",
    "..a",
    ".. .",
    ".e5",
    ".E5",
    "..5",
    "1.a",
    "0x10",
    "1e",
    ".5e",
    ".1.a",
    "1e5e5",
    "1..",
    ". ..",
    "....",
    "..\"a\"",
    "...\"a\"",
    /* bytes jq 1.6 does not accept */
    ".\xc3\xa9",
    "\xc3\xa9",
    "1\r",
    "1 #c\r+ 1",
    "1\f",
    "1\v",
    /* names */
    "foo(1)",
    ".a | foo(1)",
    "map",
    "map(1; 2)",
    "$x",
    ". as $x | $y",
    "$ARGS",
    "true(1)",
    "a::b",
    "$a::b",
    "__loc__",
    "$if",
    "def if: 1; 1",
    "def f($if): 1; 1",
    ". as $if | 1",
    ". as $__loc__ | 1",
    "def __loc__: 1; 1",
    "truncate_stream(1; tostream)",
    "def f(a): $a; f(1)",
    "def f(g): g(1); f(1)",
    "def f: g; def g: 1; f",
    "def f(x): x; f",
    "def f(x): x; f(1; 2)",
    "(def f: 1; f) | f",
    "[def f: 1; f] | f",
    "1 as $x | (2 as $y | $y) | $y",
    "def f: $x; . as $x | f",
    "def f: foo; f",
    "def f: foo; def g: f; g",
    "def f: def g: foo; g; f",
    "def f: f, foo; f",
    "def f: 1; def f: foo; f",
    "def f: foo; [.[] | f]",
    "def f: foo; def g: def h: f; h; g",
    "def f(a): a; def g: f(foo); g",
    "reduce . as $x ($x; .)",
    "foreach . as $x ($x; .)",
    "break $f",
    "break",
    "label $f | break $g",
    "label $f | $f",
    "(label $a | 1) | break $a",
    "def f: break $a; label $a | f",
    /* patterns */
    "1 as $x",
    ". as [] | 1",
    ". as {} | 1",
    ". as [$a,] | 1",
    ". as {a: $x,} | 1",
    ". as [$a] ?// | 1",
    ". as [$a, {($a): $b}] | $b",
    ". as {$a, ($a): $b} | $b",
    ". as [$a] ?// {($z): $b} | $b",
    ". as [$a] ?// [$b] | $c",
    /* reduce, foreach, try, postfix ? */
    "reduce . as $x (0)",
    "reduce . as $x (0; 1; 2)",
    "foreach . as $x (0; 1; 2; 3)",
    "foreach . as $x (0)",
    "reduce 1 + 2 as $x (0; .)",
    "reduce -1 as $x (0; .)",
    "reduce . as $x (0; .) .a",
    "reduce . as $x (0; .) as $y | 1",
    "if . then 1 else 2 end.a",
    "if . then 1 else 2 end[0]",
    "if . then 1 else 2 end as $x | $x",
    "try 1 catch 2 catch 3",
    "try 1 + 1 catch 2",
    "try -1 + 1 catch 2",
    "try 1? catch 2",
    "try 1 , 2 catch 3",
    "(1)?.a",
    "\"x\"?.a",
    ".?.a",
    "..?.a",
    ".a??.b",
    "(1)? as $x | 1",
    ".a?? as $x | 1",
    "{a: 1}?.a",
    /* suffixes jq 1.7 added */
    ".a.[0]",
    ".[\"a\"].[\"b\"]",
    ".@base64",
    ". a",
    ".a. b",
    ".[:]",
    ".[1:2:3]",
    /* non-associative operators, ?// */
    "1 == 2 == 3",
    "1 < 2 < 3",
    "1 = 2 = 3",
    ".a |= 1 |= 2",
    "1 == 2 != 3",
    ".a?//1",
};

/* ---- corpus: what jq 1.6 compiles but sagad refuses on purpose ---- */

static const struct {
    const char *src;
    sg_jq_err_kind_t kind;
} policy[] = {
    {"@foo", SG_JQ_ERR_POLICY},
    {"@base32", SG_JQ_ERR_POLICY}, /* jq 1.7 has it; 1.6 fails at run time */
    {"if false then @foo else 1 end", SG_JQ_ERR_POLICY},
    {"def f: @foo; 1", SG_JQ_ERR_POLICY},
    {"module {a: 1}; 1", SG_JQ_ERR_POLICY},
    {"module {}; def f: 1;", SG_JQ_ERR_POLICY},
};

static void test_valid_corpus(void **state)
{
    (void)state;
    assert_true(SG_ARRAY_LEN(valid) >= 150);
    for (size_t i = 0; i < SG_ARRAY_LEN(valid); i++) {
        sg_jq_error_t e;
        bool ours = check(valid[i], &e);
        if (!ours) {
            print_error("valid[%zu] rejected: %s\n  -> %u:%u %s (%s)\n", i, valid[i], e.line, e.col,
                        e.message, e.hint);
        }
        assert_true(ours);
        if (!jq_accepts(valid[i])) {
            print_error("libjq rejects valid[%zu]: %s\n", i, valid[i]);
            fail();
        }
    }
}

static void test_invalid_corpus(void **state)
{
    (void)state;
    assert_true(SG_ARRAY_LEN(invalid) >= 80);
    for (size_t i = 0; i < SG_ARRAY_LEN(invalid); i++) {
        sg_jq_error_t e;
        memset(&e, 0, sizeof(e));
        if (check(invalid[i], &e)) {
            print_error("invalid[%zu] accepted: %s\n", i, invalid[i]);
            fail();
        }
        assert_true(e.message[0] != '\0');
        assert_true(e.line >= 1 && e.col >= 1 && e.offset <= strlen(invalid[i]));
        assert_true(e.kind == SG_JQ_ERR_SYNTAX || e.kind == SG_JQ_ERR_NAME);
        if (jq_accepts(invalid[i])) {
            print_error("libjq accepts invalid[%zu]: %s\n", i, invalid[i]);
            fail();
        }
    }
}

static void test_policy_corpus(void **state)
{
    (void)state;
    for (size_t i = 0; i < SG_ARRAY_LEN(policy); i++) {
        sg_jq_error_t e;
        const char *src = policy[i].src;
        assert_false(check(src, &e));
        assert_int_equal(e.kind, policy[i].kind);
        assert_true(jq_accepts(src)); /* the deviation is deliberate, and documented */
        assert_true(sg_jq_check_ex(src, strlen(src), SG_JQ_COMPAT, NULL, NULL, NULL));
    }
    /* libjq aborts on imports without a library path, so these are not compared */
    const char *mods[] = {"import \"a\" as a; .", "include \"a\"; .", "import \"a\" as $a; ."};
    for (size_t i = 0; i < SG_ARRAY_LEN(mods); i++) {
        sg_jq_error_t e;
        assert_false(check(mods[i], &e));
        assert_int_equal(e.kind, SG_JQ_ERR_POLICY);
        assert_string_equal(e.message, "modules are not supported in saga expressions");
        assert_false(sg_jq_check_ex(mods[i], strlen(mods[i]), SG_JQ_COMPAT, NULL, NULL, NULL));
    }
    sg_jq_error_t e;
    assert_false(check("module .; 1", &e)); /* jq: metadata must be constant */
    assert_false(sg_jq_check_ex("module .; 1", 11, SG_JQ_COMPAT, NULL, NULL, NULL));
    assert_false(jq_accepts("module .; 1"));
}

/* NUL bytes: jq's C API stops at the first one, we refuse them. */
static void test_nul_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *src;
        size_t len;
        uint32_t col;
    } cases[] = {
        {"1\0+1", 4, 2}, {"\"a\0\"", 4, 3}, {"\"\\\0\"", 4, 3}, {"\0", 1, 1}, {"# c\0\n1", 6, 4},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        sg_jq_error_t e;
        assert_false(sg_jq_check(cases[i].src, cases[i].len, NULL, NULL, &e));
        assert_int_equal(e.kind, SG_JQ_ERR_POLICY);
        assert_int_equal(e.col, cases[i].col);
        assert_string_equal(e.message, "NUL byte in expression");
    }
}

static char *repeat3(const char *open, const char *mid, const char *close, size_t n)
{
    size_t lo = strlen(open), lm = strlen(mid), lc = strlen(close);
    char *s = malloc(n * (lo + lc) + lm + 1);
    assert_non_null(s);
    char *w = s;
    for (size_t i = 0; i < n; i++, w += lo) {
        memcpy(w, open, lo);
    }
    memcpy(w, mid, lm);
    w += lm;
    for (size_t i = 0; i < n; i++, w += lc) {
        memcpy(w, close, lc);
    }
    *w = '\0';
    return s;
}

static void test_depth_limit(void **state)
{
    (void)state;
    static const struct {
        const char *open, *mid, *close;
    } shapes[] = {
        {"(", "1", ")"},         {"[", "1", "]"},
        {"{a:", "1", "}"},       {"\"\\(", "1", ")\""},
        {"[", "$a", "]"},        {"if . then ", "1", " else 2 end"},
        {"try ", "1", ""},       {"-(", "1", ")"},
        {"def f: ", "1", "; f"}, {". as $x | (", "$x", ")"},
        {"length(", "1", ")"},   {"{(", ".k", "): 1}"},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(shapes); i++) {
        /* the pattern shape nests inside `. as PATTERN | $a` */
        bool pat = strcmp(shapes[i].mid, "$a") == 0;
        for (size_t n = 90; n <= 1000; n += 910) {
            char *inner = repeat3(shapes[i].open, shapes[i].mid, shapes[i].close, n);
            char *src = malloc(strlen(inner) + 16);
            assert_non_null(src);
            sprintf(src, pat ? ". as %s | $a" : "%s", inner);
            sg_jq_error_t e;
            bool ok = check(src, &e);
            if (n == 90) { /* well inside the limit: fine, except length/1 */
                assert_true(ok || strstr(e.message, "length/1") != NULL);
            } else { /* a clear LIMIT error, no crash; jq 1.6 itself accepts most */
                assert_false(ok);
                assert_int_equal(e.kind, SG_JQ_ERR_LIMIT);
                assert_non_null(strstr(e.message, "nested too deeply"));
            }
            free(inner);
            free(src);
        }
    }
    /* 200 parentheses are 201 levels with the program itself */
    char *s = repeat3("(", "1", ")", SG_JQ_MAX_DEPTH - 1);
    assert_true(check(s, NULL));
    assert_true(jq_accepts(s));
    free(s);
    s = repeat3("(", "1", ")", SG_JQ_MAX_DEPTH);
    assert_false(check(s, NULL));
    assert_true(jq_accepts(s));
    free(s);
    /* long flat chains do not nest */
    s = repeat3("", "1", " | . as $x | $x + 1", 5000);
    assert_true(check(s, NULL));
    free(s);
    s = repeat3("-", "1", "", 100000);
    assert_true(check(s, NULL));
    free(s);
    s = repeat3("def f: 1; ", "f", "", 3000);
    assert_true(check(s, NULL));
    free(s);
}

/* ---- positions and messages ---- */

static void expect_error(const char *src, uint32_t line, uint32_t col, const char *msg,
                         const char *hint)
{
    sg_jq_error_t e;
    if (check(src, &e)) {
        print_error("accepted: %s\n", src);
        fail();
    }
    if (e.line != line || e.col != col || strstr(e.message, msg) == NULL ||
        (hint != NULL && strstr(e.hint, hint) == NULL)) {
        print_error("%s\n  got %u:%u '%s' hint '%s'\n  want %u:%u '%s' hint '%s'\n", src, e.line,
                    e.col, e.message, e.hint, line, col, msg, hint ? hint : "(any)");
        fail();
    }
}

static void test_positions(void **state)
{
    (void)state;
    expect_error(".a | foo(1)", 1, 6, "function foo/1 is not defined", NULL);
    expect_error(".a | selct(.b)", 1, 6, "function selct/1 is not defined",
                 "did you mean 'select'?");
    expect_error("map", 1, 1, "function map/0 is not defined", "'map' takes 1 argument");
    expect_error("range", 1, 1, "range/0", "'range' takes 1, 2 or 3 arguments");
    expect_error("length(1)", 1, 1, "length/1", "'length' takes no arguments");
    expect_error("def f(a): a; f", 1, 14, "function f/0 is not defined", "'f' takes 1 argument");
    expect_error("1 +\n\n  foo(1)", 3, 3, "function foo/1 is not defined", NULL);
    expect_error(". as $x | $y", 1, 11, "$y is not defined", "did you mean '$x'?");
    expect_error("def f(a): $a; f(1)", 1, 11, "$a is not defined", "declare it as $a");
    expect_error("break $out", 1, 1, "label $out is not defined", NULL);
    expect_error("if . then 1 end", 1, 13, "unexpected 'end'", "requires 'else'");
    expect_error("{a: 1 + 2}", 1, 7, "unexpected '+'", "{key: (...)}");
    expect_error("\"abc", 1, 1, "unterminated string", NULL);
    expect_error("x | \"a\\(1", 1, 7, "unterminated string interpolation", NULL);
    expect_error("[1, (2", 1, 5, "unterminated parenthesis", NULL);
    expect_error("1.2.3", 1, 1, "invalid numeric literal '1.2.3'", NULL);
    expect_error("\"ab\\q\"", 1, 4, "invalid escape '\\q' in string", "valid escapes");
    expect_error("\"\\ud800\"", 1, 2, "unpaired UTF-16 surrogate", NULL);
    expect_error(".a?//1", 1, 3, "unexpected '?//'", "'? //'");
    expect_error("try 1 + 1 catch 2", 1, 11, "unexpected 'catch'", "try (...)");
    expect_error("1 == 2 == 3", 1, 8, "unexpected '=='", "parentheses");
    expect_error(".a.[0]", 1, 4, "unexpected '['", ".a[0]");
    expect_error("f()", 1, 3, "unexpected ')'", "without parentheses");
    expect_error("{(1): 2}", 1, 2, "constant number as object key", NULL);
    expect_error(".a + 1/0", 1, 7, "division by zero", "infinite");
    expect_error(".x |\n\t.\xc3\xa9", 2, 3, "unexpected byte 0xc3", "ASCII");
    expect_error("1\r\n", 1, 2, "unexpected carriage return", NULL);
    expect_error("@bas64", 1, 1, "@bas64 is not a valid format", "did you mean '@base64'?");
    expect_error("def if: 1; 1", 1, 5, "unexpected 'if'", "keyword");
    /* a syntax error wins over an earlier name error, as in jq */
    expect_error("foo | (", 1, 7, "unterminated parenthesis", NULL);
    /* name errors: the first by position, even when found late in a ?// pattern */
    expect_error(". as [$a] ?// {($z): $b} | $q", 1, 17, "$z is not defined", NULL);
    /* inside a def that is called: reported; the def itself is fine */
    expect_error("def f: fooo; def g: f; g", 1, 8, "function fooo/0 is not defined", NULL);
}

/* ---- path callback ---- */

typedef struct {
    char text[16][128]; /* fields joined by '/', then "@offset" */
    size_t n;
} paths_t;

static void collect(void *ctx, const sg_jq_field_t *fields, size_t n, uint32_t offset)
{
    paths_t *ps = ctx;
    assert_true(n >= 1 && n <= 8);
    assert_true(ps->n < 16);
    char *w = ps->text[ps->n++];
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        used += (size_t)snprintf(w + used, 128 - used, "%s%.*s", i ? "/" : "", (int)fields[i].len,
                                 fields[i].ptr);
    }
    snprintf(w + used, 128 - used, "@%u", offset);
}

static void expect_paths(const char *src, size_t n, ...)
{
    paths_t ps = {.n = 0};
    sg_jq_error_t e;
    if (!sg_jq_check(src, strlen(src), collect, &ps, &e)) {
        print_error("%s: %s\n", src, e.message);
        fail();
    }
    va_list ap;
    va_start(ap, n);
    if (ps.n != n) {
        print_error("%s: %zu paths, want %zu\n", src, ps.n, n);
        for (size_t i = 0; i < ps.n; i++) {
            print_error("  %s\n", ps.text[i]);
        }
        fail();
    }
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(ps.text[i], va_arg(ap, const char *));
    }
    va_end(ap);
}

static void test_paths(void **state)
{
    (void)state;
    expect_paths(".steps.reserve.output.id", 1, "steps/reserve/output/id@0");
    expect_paths(".steps[\"x\"].y", 1, "steps/x/y@0");
    expect_paths(".[\"steps\"].a", 1, "steps/a@0");
    expect_paths(".\"steps\".a?.b", 1, "steps/a/b@0");
    expect_paths("{a: .input.b}", 1, "input/b@4");
    expect_paths("\"id=\\(.input.id)\"", 1, "input/id@6");
    expect_paths("map(.steps.a.output) | select(.x)", 2, "steps/a/output@4", "x@30");
    expect_paths(".a[0].b", 1, "a@0");
    expect_paths(".a[.b.c]", 2, "a@0", "b/c@3");
    expect_paths(".a.b.c.d.e.f.g.h.i.j", 1, "a/b/c/d/e/f/g/h@0");
    expect_paths(".[\"a\\nb\"].c", 1, "a\nb/c@0");
    expect_paths(".[\"\\u00e9\\ud83d\\ude00\"]", 1, "\xc3\xa9\xf0\x9f\x98\x80@0");
    expect_paths("{a, \"b\", c: 1}", 2, "a@1", "b@4");
    expect_paths("..|.a", 1, "a@3");
    expect_paths(". .a", 1, "a@0");
    /* documented rule: not from a variable, and no data flow */
    expect_paths(". as $x | $x.steps.y", 0);
    expect_paths(".foo | .steps", 2, "foo@0", "steps@7");
    expect_paths("length.a", 0);
    expect_paths("(.).a", 0);
    expect_paths(".[0].a", 0);
    expect_paths(".[]", 0);
    expect_paths(".\"a\\(1)\".b", 0);
    expect_paths("def f(x): x; f(.a.b)", 1, "a/b@15");
}

static void test_paths_need_scratch(void **state)
{
    (void)state;
    /* a field of 600 decoded bytes overflows the inline scratch buffer */
    size_t n = 600;
    char *src = malloc(n * 2 + 16);
    assert_non_null(src);
    strcpy(src, ".x[\"");
    for (size_t i = 0; i < n; i++) {
        strcat(src, "\\n");
    }
    strcat(src, "\"].y");
    paths_t ps = {.n = 0};
    /* collect() formats into 128 bytes: only check what fits */
    assert_true(sg_jq_check(src, strlen(src), collect, &ps, NULL));
    assert_int_equal(ps.n, 1);
    assert_int_equal(strncmp(ps.text[0], "x/\n\n\n", 5), 0);
    free(src);
}

static void test_paths_not_reported_twice(void **state)
{
    (void)state;
    /* the second pass (name error inside a called def) must not report paths again */
    paths_t ps = {.n = 0};
    const char *src = "def f: .a | nope; .b | f";
    assert_false(sg_jq_check(src, strlen(src), collect, &ps, NULL));
    assert_int_equal(ps.n, 2);
}

/* ---- builtins ---- */

static void test_builtins_match_libjq(void **state)
{
    (void)state;
    size_t n = 0;
    const char *const *names = sg_jq_builtins(&n);
    assert_true(n > 200);
    for (size_t i = 1; i < n; i++) {
        assert_true(strcmp(names[i - 1], names[i]) < 0); /* sorted, unique */
    }
    /* jq 1.6's `builtins` yields one array, so `[builtins]` would nest it */
    jq_state *jq = jq_init();
    assert_non_null(jq);
    jq_set_error_cb(jq, swallow, NULL);
    assert_true(jq_compile(jq, "builtins | sort | .[]"));
    jq_start(jq, jv_null(), 0);
    size_t i = 0;
    for (jv v = jq_next(jq); jv_is_valid(v); v = jq_next(jq), i++) {
        assert_int_equal(jv_get_kind(v), JV_KIND_STRING);
        assert_true(i < n);
        assert_string_equal(jv_string_value(v), names[i]);
        jv_free(v);
    }
    assert_int_equal(i, n);
    jq_teardown(&jq);
    /* and every one of them is accepted when called with its arity */
    for (i = 0; i < n; i++) {
        char call[96];
        const char *slash = strchr(names[i], '/');
        int arity = atoi(slash + 1);
        int len = snprintf(call, sizeof(call), "%.*s", (int)(slash - names[i]), names[i]);
        for (int a = 0; a < arity; a++) {
            len += snprintf(call + len, sizeof(call) - (size_t)len, "%s.", a ? ";" : "(");
        }
        snprintf(call + len, sizeof(call) - (size_t)len, "%s", arity ? ")" : "");
        assert_true(check(call, NULL));
    }
    assert_int_equal(sg_jq_builtins(NULL), names);
}

/* ---- robustness ---- */

static void test_any_bytes(void **state)
{
    (void)state;
    /* every byte value alone and in a few contexts: no crash, errors are well formed */
    for (int b = 0; b < 256; b++) {
        char ctx[4][8] = {"x", ".x", "\"x\"", "[x"};
        for (int k = 0; k < 4; k++) {
            char *p = strchr(ctx[k], 'x');
            *p = (char)b;
            sg_jq_error_t e;
            size_t len = strlen(ctx[k]) + (b == 0 ? 1 + strlen(p + 1) : 0);
            if (!sg_jq_check(ctx[k], len, NULL, NULL, &e)) {
                assert_true(e.offset <= len && e.message[0] != '\0');
            }
        }
    }
    assert_true(sg_jq_check(NULL, 0, NULL, NULL, NULL)); /* the empty program */
}

static void *check_in_thread(void *arg)
{
    size_t *bad = arg;
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < SG_ARRAY_LEN(valid); i++) {
            *bad += !check(valid[i], NULL);
        }
        for (size_t i = 0; i < SG_ARRAY_LEN(invalid); i++) {
            *bad += check(invalid[i], NULL);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    size_t bad[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, check_in_thread, &bad[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(bad[i], 0);
    }
}

static void *deep_in_thread(void *arg)
{
    const char *src = arg;
    return (void *)(uintptr_t)check(src, NULL);
}

/* The deepest accepted nesting fits a 1 MiB thread stack, even with sanitizers. */
static void test_small_stack(void **state)
{
    (void)state;
    char *s = repeat3("{a: [(\"\\(", "1", ")\")]}", (SG_JQ_MAX_DEPTH - 2) / 4);
    pthread_attr_t attr;
    pthread_t t;
    void *res = NULL;
    assert_int_equal(pthread_attr_init(&attr), 0);
    assert_int_equal(pthread_attr_setstacksize(&attr, 1u << 20), 0);
    assert_int_equal(pthread_create(&t, &attr, deep_in_thread, s), 0);
    assert_int_equal(pthread_join(t, &res), 0);
    assert_true(res != NULL);
    pthread_attr_destroy(&attr);
    free(s);
}

/* Checks that allocate (many bindings, long decoded fields, a second pass) survive every
 * failed allocation with a LIMIT error and no leak. */
static void test_oom(void **state)
{
    (void)state;
    char src[4096] = "";
    for (int i = 0; i < 40; i++) {
        snprintf(src + strlen(src), sizeof(src) - strlen(src), ". as $v%d | ", i);
    }
    strcat(src, "def f: nope; def g: f; .[\"");
    for (int i = 0; i < 300; i++) {
        strcat(src, "\\t");
    }
    strcat(src, "\"] | g");
    sg_jq_error_t e;
    bool done = false;
    for (size_t nth = 1; nth < 100 && !done; nth++) {
        paths_t ps = {.n = 0};
        sg_alloc_fail_at(nth);
        bool ok = sg_jq_check(src, strlen(src), collect, &ps, &e);
        sg_alloc_fail_at(0);
        assert_false(ok);
        if (e.kind == SG_JQ_ERR_LIMIT) {
            assert_string_equal(e.message, "out of memory");
        } else {
            assert_string_equal(e.message, "function nope/0 is not defined");
            done = true;
        }
    }
    assert_true(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_corpus),
        cmocka_unit_test(test_invalid_corpus),
        cmocka_unit_test(test_policy_corpus),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_positions),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_paths_need_scratch),
        cmocka_unit_test(test_paths_not_reported_twice),
        cmocka_unit_test(test_builtins_match_libjq),
        cmocka_unit_test(test_any_bytes),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_small_stack),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
