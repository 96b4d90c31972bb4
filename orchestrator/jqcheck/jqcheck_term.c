/*
 * jqcheck terms: the jq 1.6 grammar below the operators: literals, strings with
 * interpolation, `.field` suffixes and indexes, calls, variables, arrays, objects (whose
 * values jq 1.6 restricts to terms), and the constant folding that tells which object
 * keys jq refuses. Path terms are reported from here.
 *
 * Like the rest of the parser it must never reject what jq 1.6 compiles.
 */
#include "orchestrator/jqcheck/jqcheck_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- constant folding, mirroring jq 1.6's gen_binop/constant_fold ---- */

static ck_t num(double x)
{
    return (ck_t){.kind = CK_NUM, .num = x};
}

/* Arithmetic and comparisons fold only on two numbers; `+` also drops a null operand and
 * joins two strings. Everything else becomes a call, i.e. not a constant. */
static ck_t fold_consts(ck_t l, tk_t op, ck_t r)
{
    bool nums = l.kind == CK_NUM && r.kind == CK_NUM;
    switch (op) {
    case T_PLUS:
        if (l.kind == CK_NULL || r.kind == CK_NULL) {
            return l.kind == CK_NULL ? r : l;
        }
        if (l.kind == CK_STR && r.kind == CK_STR) {
            return l;
        }
        return nums ? num(l.num + r.num) : ck(CK_NONE);
    case T_MINUS:
        return nums ? num(l.num - r.num) : ck(CK_NONE);
    case T_STAR:
        return nums ? num(l.num * r.num) : ck(CK_NONE);
    case T_SLASH:
        return nums ? num(l.num / r.num) : ck(CK_NONE);
    case T_EQ:
    case T_NEQ:
    case T_LT:
    case T_GT:
    case T_LE:
    case T_GE:
        return nums ? ck(CK_BOOL) : ck(CK_NONE);
    default:
        return ck(CK_NONE);
    }
}

ck_t jqc__fold(ck_t l, tk_t op, ck_t r)
{
    if (op == T_COMMA) {
        if ((CK_IS_CONST(l) || l.kind == CK_CLIST) && CK_IS_CONST(r)) {
            return ck(CK_CLIST);
        }
        return ck(l.kind == CK_UNKNOWN || r.kind == CK_UNKNOWN ? CK_UNKNOWN : CK_NONE);
    }
    if (!(CK_IS_CONST(l) || l.kind == CK_UNKNOWN) || !(CK_IS_CONST(r) || r.kind == CK_UNKNOWN)) {
        return ck(CK_NONE);
    }
    if (l.kind == CK_UNKNOWN || r.kind == CK_UNKNOWN) {
        return ck(CK_UNKNOWN);
    }
    return fold_consts(l, op, r);
}

/* `a | b`: the identity compiles to nothing, so `1 | .` is still the constant 1. */
ck_t jqc__join(ck_t l, ck_t r)
{
    if (l.kind == CK_NOOP) {
        return r;
    }
    return r.kind == CK_NOOP ? l : ck(CK_NONE);
}

/* jq 1.6 refuses a key that folds to a constant other than a string. */
void jqc__check_key(ps_t *p, ck_t k, uint32_t at)
{
    static const char *const kinds[] = {
        [CK_NUM] = "number", [CK_NULL] = "null",  [CK_BOOL] = "boolean",
        [CK_ARR] = "array",  [CK_OBJ] = "object",
    };
    if (CK_IS_CONST(k) && k.kind != CK_STR) {
        jqc__semantic(p, at, SG_JQ_ERR_SYNTAX, "object keys must be strings",
                      "cannot use a constant %s as object key", kinds[k.kind]);
    }
}

/* The value of a numeric literal as jq reads it (with a correctly rounded strtod); NaN
 * when that is not sure, which never leads to an error. */
static ck_t number_literal(const ps_t *p)
{
    char buf[128];
    const tok_t *t = &p->tok;
    if (t->len >= sizeof(buf)) {
        return num(NAN);
    }
    memcpy(buf, p->src + t->off, t->len);
    buf[t->len] = '\0';
    char *end = NULL;
    double x = strtod(buf, &end);
    /* a locale with another decimal point stops strtod early: then do not guess */
    return num(end == buf + t->len ? x : NAN);
}

/* ---- strings ---- */

static void check_format(ps_t *p)
{
    const char *name = p->src + p->tok.off + 1;
    uint32_t len = p->tok.len - 1;
    if ((p->flags & SG_JQ_COMPAT) || jqc__format_valid(name, len)) {
        return;
    }
    char word[64], hint[160];
    snprintf(word, sizeof(word), "%.*s", (int)(len > 63 ? 63 : len), name);
    const char *best = jqc__format_closest(word);
    if (best != NULL) {
        snprintf(hint, sizeof(hint), "did you mean '@%s'?", best);
    } else {
        snprintf(hint, sizeof(hint),
                 "jq 1.6 has @text @json @html @uri @csv @tsv @sh @base64 "
                 "@base64d");
    }
    jqc__semantic(p, p->tok.off, SG_JQ_ERR_POLICY, hint, "@%s is not a valid format", word);
}

/* A string literal, plain or with interpolations; the current token starts it. */
static bool parse_string(ps_t *p, ck_t *v)
{
    if (jqc__is(p, T_STR)) {
        *v = ck(CK_STR);
        jqc__advance(p);
        return true;
    }
    uint32_t quote = p->tok.off;
    *v = ck(CK_NONE);
    while (jqc__is(p, T_STR_OPEN) || jqc__is(p, T_STR_MID)) {
        uint32_t interp = p->tok.off + p->tok.len - 2;
        ck_t iv;
        jqc__advance(p);
        if (!jqc__parse_pipe(p, &iv, false)) {
            return false;
        }
        if (!jqc__is(p, T_RPAREN)) {
            return jqc__expect_close(p, T_RPAREN, interp, "string interpolation");
        }
        /* the lexer stopped right after ')': go on with the string's text */
        p->lx.pos = p->tok.off + 1;
        p->tok = jqc__lex_string_rest(&p->lx, quote);
    }
    return jqc__expect(p, T_STR_END, NULL);
}

/* jq's String: a literal, optionally after a @format. */
bool jqc__parse_string_any(ps_t *p, ck_t *v)
{
    if (jqc__is(p, T_FORMAT)) {
        check_format(p);
        jqc__advance(p);
    }
    if (!jqc__is_string(p)) {
        return jqc__unexpected(p, "expected a string literal");
    }
    return parse_string(p, v);
}

/* ---- terms ---- */

/* jq 1.6 has `Term FIELD '?'` and friends: one `?` right after a suffix stays in the term. */
static void term_qmark(ps_t *p)
{
    if (jqc__is(p, T_QMARK)) {
        jqc__advance(p);
    }
}

/* `."name"` after a term or the identity; the string may be a literal name for the path. */
static bool parse_field_string(ps_t *p)
{
    ck_t v;
    if (jqc__is(p, T_STR)) {
        jqc__path_add_str(p, &p->tok);
    } else {
        jqc__path_end(p);
    }
    if (!jqc__parse_string_any(p, &v)) {
        return false;
    }
    term_qmark(p);
    return true;
}

/* Whether `[` starts `["literal"]`, which counts as a path field. */
static bool literal_index_ahead(const ps_t *p)
{
    lexer_t lx = p->lx;
    if (jqc__lex(&lx).kind != T_STR) {
        return false;
    }
    return jqc__lex(&lx).kind == T_RBRACKET;
}

/* `[e]`, `[]`, `[e:e]`, `[e:]`, `[:e]` after a term, with an optional `?`. */
static bool parse_index(ps_t *p)
{
    uint32_t open = p->tok.off;
    ck_t v;
    if (p->path_on && literal_index_ahead(p)) {
        jqc__advance(p);
        jqc__path_add_str(p, &p->tok);
        jqc__advance(p);
        jqc__advance(p);
        term_qmark(p);
        return true;
    }
    jqc__path_end(p);
    jqc__advance(p);
    if (jqc__is(p, T_COLON)) {
        jqc__advance(p);
        if (!jqc__parse_pipe(p, &v, false)) {
            return false;
        }
    } else if (!jqc__is(p, T_RBRACKET)) {
        if (!jqc__parse_pipe(p, &v, false)) {
            return false;
        }
        if (jqc__is(p, T_COLON)) {
            jqc__advance(p);
            if (!jqc__is(p, T_RBRACKET) && !jqc__parse_pipe(p, &v, false)) {
                return false;
            }
        }
    }
    if (!jqc__expect_close(p, T_RBRACKET, open, "index")) {
        return false;
    }
    term_qmark(p);
    return true;
}

static bool parse_suffixes(ps_t *p, ck_t *v)
{
    for (;;) {
        if (jqc__is(p, T_FIELD)) {
            jqc__path_add_raw(p, p->tok.off + 1, p->tok.len - 1);
            jqc__advance(p);
            term_qmark(p);
        } else if (jqc__is(p, T_DOT)) {
            jqc__advance(p);
            if (!jqc__is_string(p) && !jqc__is(p, T_FORMAT)) {
                return jqc__unexpected(p, jqc__is(p, T_LBRACKET)
                                              ? "jq 1.6 has no '.[' after a term: "
                                                "write .a[0], not .a.[0]"
                                              : "after '.' write a name or a string");
            }
            if (!parse_field_string(p)) {
                return false;
            }
        } else if (jqc__is(p, T_LBRACKET)) {
            if (!parse_index(p)) {
                return false;
            }
        } else {
            return true;
        }
        *v = ck(CK_NONE);
    }
}

static bool parse_call(ps_t *p, ck_t *v)
{
    tok_t name = p->tok;
    const char *s = p->src + name.off;
    unsigned arity = 0;
    *v = ck(CK_NONE);
    jqc__advance(p);
    if (jqc__is(p, T_LPAREN)) {
        uint32_t open = p->tok.off;
        jqc__advance(p);
        if (jqc__is(p, T_RPAREN)) {
            return jqc__unexpected(p, "call a function without arguments without parentheses");
        }
        do {
            ck_t av;
            if (arity > 0) {
                jqc__advance(p);
            }
            if (!jqc__parse_pipe(p, &av, false)) {
                return false;
            }
            arity++;
        } while (jqc__is(p, T_SEMI));
        if (!jqc__expect_close(p, T_RPAREN, open, "argument list")) {
            return false;
        }
    } else if ((name.len == 4 && memcmp(s, "true", 4) == 0) ||
               (name.len == 5 && memcmp(s, "false", 5) == 0)) {
        *v = ck(CK_BOOL); /* jq's parser turns these into constants, before any lookup */
        return true;
    } else if (name.len == 4 && memcmp(s, "null", 4) == 0) {
        *v = ck(CK_NULL);
        return true;
    }
    jqc__use_func(p, &name, arity);
    return true;
}

static bool parse_variable(ps_t *p, ck_t *v)
{
    uint32_t at = p->tok.off;
    jqc__advance(p); /* '$'; jq 1.6 lexes it alone, so blanks may follow */
    if (jqc__is(p, T_LOC)) {
        jqc__advance(p);
        *v = ck(CK_OBJ);
        return true;
    }
    if (!jqc__is(p, T_IDENT)) {
        return jqc__unexpected(p, jqc__keyword_hint(p));
    }
    jqc__use_var(p, &p->tok, at);
    jqc__advance(p);
    *v = ck(CK_NONE);
    return true;
}

static bool parse_break(ps_t *p, ck_t *v)
{
    uint32_t at = p->tok.off;
    *v = ck(CK_NONE);
    jqc__advance(p);
    if (!jqc__is(p, T_DOLLAR)) {
        return jqc__unexpected(p, "break needs a label: break $name");
    }
    jqc__advance(p);
    if (!jqc__is(p, T_IDENT)) {
        return jqc__unexpected(p, jqc__keyword_hint(p));
    }
    jqc__use_label(p, &p->tok, at);
    jqc__advance(p);
    return true;
}

static bool parse_array(ps_t *p, ck_t *v)
{
    uint32_t open = p->tok.off;
    ck_t iv;
    jqc__advance(p);
    if (jqc__is(p, T_RBRACKET)) {
        jqc__advance(p);
        *v = ck(CK_ARR);
        return true;
    }
    if (!jqc__parse_pipe(p, &iv, false) || !jqc__expect_close(p, T_RBRACKET, open, "array")) {
        return false;
    }
    /* jq 1.6's gen_collect turns [c1, c2, ...] of constants into one constant */
    if (CK_IS_CONST(iv) || iv.kind == CK_CLIST) {
        *v = ck(CK_ARR);
    } else {
        *v = ck(iv.kind == CK_UNKNOWN ? CK_UNKNOWN : CK_NONE);
    }
    return true;
}

/* jq 1.6's ExpD: an object value is `-`* Term, or such values joined by '|'. */
static bool parse_expd(ps_t *p, ck_t *v)
{
    ck_t acc = ck(CK_NOOP);
    for (;;) {
        bool neg = false;
        while (jqc__is(p, T_MINUS)) {
            jqc__advance(p);
            neg = true;
        }
        ck_t tv;
        if (!jqc__parse_term(p, &tv)) {
            return false;
        }
        acc = jqc__join(acc, neg ? ck(CK_NONE) : tv);
        if (!jqc__is(p, T_PIPE)) {
            break;
        }
        jqc__advance(p);
    }
    *v = acc;
    return true;
}

/* `{a}` and `{"a"}` mean `{a: .a}`: report them as paths of the input. */
static void shorthand_path(ps_t *p, const tok_t *key)
{
    jqc__path_begin(p, key->off);
    if (key->kind == T_STR) {
        jqc__path_add_str(p, key);
    } else {
        jqc__path_add_raw(p, key->off, key->len);
    }
    jqc__path_end(p);
}

/* The key of a pair: a name, keyword, string or (expression). Sets *kv, *shorthand_ok. */
static bool parse_key(ps_t *p, ck_t *kv, bool *short_ok)
{
    tok_t key = p->tok;
    *short_ok = false;
    *kv = ck(CK_STR);
    if (jqc__is(p, T_IDENT) || jqc__is_keyword((tk_t)key.kind)) {
        jqc__advance(p);
        *short_ok = key.kind == T_IDENT;
    } else if (jqc__is_string(p) || jqc__is(p, T_FORMAT)) {
        if (!jqc__parse_string_any(p, kv)) {
            return false;
        }
        *short_ok = true;
    } else if (jqc__is(p, T_LPAREN)) {
        jqc__advance(p);
        if (!jqc__parse_pipe(p, kv, false) ||
            !jqc__expect_close(p, T_RPAREN, key.off, "key expression")) {
            return false;
        }
        jqc__check_key(p, *kv, key.off);
        return true;
    } else {
        return jqc__unexpected(
            p, jqc__is(p, T_NUMBER) ? "object keys are names or strings: {\"1\": v}" : NULL);
    }
    if (!jqc__is(p, T_COLON) && *short_ok && (key.kind == T_IDENT || key.kind == T_STR)) {
        shorthand_path(p, &key);
    }
    return true;
}

static bool parse_pair(ps_t *p, ck_t *pv)
{
    ck_t kv, vv;
    bool short_ok;
    *pv = ck(CK_NONE);
    if (jqc__is(p, T_DOLLAR)) { /* {$x} only: jq 1.6 has neither {$x: v} nor {$__loc__} */
        uint32_t at = p->tok.off;
        jqc__advance(p);
        if (!jqc__is(p, T_IDENT)) {
            return jqc__unexpected(p, jqc__is(p, T_LOC) ? "jq 1.6 needs {__loc__: $__loc__}"
                                                        : jqc__keyword_hint(p));
        }
        jqc__use_var(p, &p->tok, at);
        jqc__advance(p);
        if (jqc__is(p, T_COLON)) {
            return jqc__unexpected(p, "to use a variable as key write {($x): v}");
        }
        return true;
    }
    if (!parse_key(p, &kv, &short_ok)) {
        return false;
    }
    if (!jqc__is(p, T_COLON)) {
        return short_ok ? true : jqc__unexpected(p, "this key needs a value: {key: value}");
    }
    jqc__advance(p);
    if (!parse_expd(p, &vv)) {
        return false;
    }
    if (kv.kind == CK_UNKNOWN || vv.kind == CK_UNKNOWN) {
        *pv = ck(CK_UNKNOWN);
    } else if (kv.kind == CK_STR && CK_IS_CONST(vv)) {
        *pv = ck(CK_OBJ);
    }
    return true;
}

bool jqc__is_binary_op(tk_t k);

static bool parse_object(ps_t *p, ck_t *v)
{
    uint32_t open = p->tok.off;
    *v = ck(CK_OBJ); /* gen_const_object: constant if every key and value is */
    jqc__advance(p);
    while (!jqc__is(p, T_RBRACE)) {
        ck_t pv;
        if (!parse_pair(p, &pv)) {
            return false;
        }
        if (pv.kind == CK_NONE || v->kind == CK_NONE) {
            *v = ck(CK_NONE);
        } else if (pv.kind == CK_UNKNOWN) {
            *v = ck(CK_UNKNOWN);
        }
        if (jqc__is(p, T_COMMA)) {
            jqc__advance(p); /* a trailing comma is fine in jq 1.6 */
        } else if (!jqc__is(p, T_RBRACE)) {
            if (jqc__is(p, T_EOF)) {
                return jqc__syntax(p, open, SG_JQ_ERR_SYNTAX, NULL, "unterminated object");
            }
            bool op =
                jqc__is_binary_op((tk_t)p->tok.kind) || jqc__is(p, T_QMARK) || jqc__is(p, T_AS);
            return jqc__unexpected(p, op ? "jq 1.6 allows only a term as object value: write "
                                           "{key: (...)}"
                                         : "expected ',' or '}'");
        }
    }
    jqc__advance(p);
    return true;
}

static bool parse_primary(ps_t *p, ck_t *v)
{
    uint32_t off = p->tok.off;
    *v = ck(CK_NONE);
    switch (p->tok.kind) {
    case T_DOT:
        jqc__advance(p);
        jqc__path_begin(p, off);
        *v = ck(CK_NOOP);
        if (jqc__is_string(p) || jqc__is(p, T_FORMAT)) {
            *v = ck(CK_NONE);
            return parse_field_string(p);
        }
        return true;
    case T_FIELD:
        jqc__path_begin(p, off);
        jqc__path_add_raw(p, off + 1, p->tok.len - 1);
        jqc__advance(p);
        term_qmark(p);
        return true;
    case T_REC:
        jqc__advance(p);
        return true;
    case T_NUMBER:
        *v = number_literal(p);
        jqc__advance(p);
        return true;
    case T_STR:
    case T_STR_OPEN:
        return parse_string(p, v);
    case T_FORMAT:
        check_format(p);
        jqc__advance(p);
        return jqc__is_string(p) ? parse_string(p, v) : true;
    case T_LPAREN:
        jqc__advance(p);
        return jqc__parse_pipe(p, v, false) && jqc__expect_close(p, T_RPAREN, off, "parenthesis");
    case T_LBRACKET:
        return parse_array(p, v);
    case T_LBRACE:
        return jqc__enter(p) && jqc__leave(p, parse_object(p, v));
    case T_DOLLAR:
        return parse_variable(p, v);
    case T_IDENT:
        return parse_call(p, v);
    case T_BREAK:
        return parse_break(p, v);
    case T_IMPORT:
    case T_INCLUDE:
    case T_MODULE:
        return jqc__unexpected(p, "modules are not supported in saga expressions");
    default:
        return jqc__unexpected(p, NULL);
    }
}

bool jqc__parse_term(ps_t *p, ck_t *v)
{
    bool ok = parse_primary(p, v) && parse_suffixes(p, v);
    if (ok) {
        jqc__path_end(p);
    }
    p->path_on = false;
    return ok;
}

/* ---- operators ---- */

int jqc__binary_level(tk_t k)
{
    switch (k) {
    case T_COMMA:
        return L_COMMA;
    case T_DEFOR:
        return L_ALT;
    case T_ASSIGN:
    case T_SETPIPE:
    case T_SETPLUS:
    case T_SETMINUS:
    case T_SETMULT:
    case T_SETDIV:
    case T_SETMOD:
    case T_SETDEFOR:
        return L_ASSIGN;
    case T_OR:
        return L_OR;
    case T_AND:
        return L_AND;
    case T_EQ:
    case T_NEQ:
    case T_LT:
    case T_GT:
    case T_LE:
    case T_GE:
        return L_CMP;
    case T_PLUS:
    case T_MINUS:
        return L_ADD;
    case T_STAR:
    case T_SLASH:
    case T_PERCENT:
        return L_MUL;
    default:
        return -1;
    }
}

bool jqc__is_binary_op(tk_t k)
{
    return jqc__binary_level(k) > 0;
}
