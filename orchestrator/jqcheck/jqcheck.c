/*
 * jqcheck grammar: a recursive-descent parser for jq 1.6 (src/parser.y of jq-1.6) that
 * resolves names as it goes, so one pass over the tokens checks both syntax and binding.
 * Binary operators use precedence climbing with an explicit operator stack, so only real
 * nesting (brackets, bodies, patterns) costs C stack and counts towards SG_JQ_MAX_DEPTH.
 *
 * It must accept every program jq 1.6 compiles. Where jq's yacc precedences decide what
 * is legal (`try` binds tighter than any binary operator, `?` after a plain term is an
 * expression suffix, object values are only terms), the comments say how this mirrors it.
 */
#include "orchestrator/jqcheck/jqcheck_int.h"

#include <stdio.h>
#include <string.h>

/* Binding strength, lowest first, as declared in jq 1.6's parser.y. '|' is parse_pipe. */
enum {
    L_COMMA = 1,
    L_ALT,    /* // */
    L_ASSIGN, /* = |= += -= *= /= %= //=, non-associative */
    L_OR,
    L_AND,
    L_CMP, /* == != < > <= >=, non-associative */
    L_ADD,
    L_MUL,
    L_QMARK, /* postfix ? on an expression */
    L_TRY,   /* the body of try and catch: one operand, no binary operator, no `?` */
};

static bool parse_pipe(ps_t *p, ck_t *v, bool top);
static bool parse_binary(ps_t *p, int min, bool *tail_as, ck_t *v);
static bool parse_term(ps_t *p, ck_t *v);
static bool parse_patterns(ps_t *p, unsigned *nalts);
static bool parse_pattern(ps_t *p);

/* ---- token helpers ---- */

static void advance(ps_t *p)
{
    p->tok = jqc__lex(&p->lx);
}

static bool is(const ps_t *p, tk_t kind)
{
    return p->tok.kind == kind;
}

static bool expect(ps_t *p, tk_t kind, const char *hint)
{
    if (!is(p, kind)) {
        return jqc__unexpected(p, hint);
    }
    advance(p);
    return true;
}

/* Expects the closer of the opener at `open`, pointing there when the input ended. */
static bool expect_close(ps_t *p, tk_t kind, uint32_t open, const char *what)
{
    if (is(p, kind)) {
        advance(p);
        return true;
    }
    if (is(p, T_EOF)) {
        return jqc__syntax(p, open, SG_JQ_ERR_SYNTAX, NULL, "unterminated %s", what);
    }
    char hint[96];
    snprintf(hint, sizeof(hint), "expected %s to close the %s", jqc__tok_name(kind), what);
    return jqc__unexpected(p, hint);
}

static bool enter(ps_t *p)
{
    if (++p->depth > SG_JQ_MAX_DEPTH) {
        return jqc__syntax(p, p->tok.off, SG_JQ_ERR_LIMIT, "split it into smaller expressions",
                           "expression nested too deeply (more than %d levels)",
                           SG_JQ_MAX_DEPTH);
    }
    return true;
}

static bool leave(ps_t *p, bool ok)
{
    p->depth--;
    return ok;
}

static bool is_keyword(tk_t k)
{
    return k >= T_AS && k <= T_LOC;
}

static bool is_string(const ps_t *p)
{
    return is(p, T_STR) || is(p, T_STR_OPEN);
}

static const char *keyword_hint(const ps_t *p)
{
    return is_keyword((tk_t)p->tok.kind) ? "that is a jq keyword and cannot be used as a name"
                                         : NULL;
}

/* ---- constant folding, mirroring jq 1.6's gen_binop/constant_fold ---- */

static ck_t fold(ck_t l, tk_t op, ck_t r)
{
    if (op == T_COMMA) {
        if ((CK_IS_CONST(l) || l == CK_CLIST) && CK_IS_CONST(r)) {
            return CK_CLIST;
        }
        return (l == CK_UNKNOWN || r == CK_UNKNOWN) ? CK_UNKNOWN : CK_NONE;
    }
    if (!(CK_IS_CONST(l) || l == CK_UNKNOWN) || !(CK_IS_CONST(r) || r == CK_UNKNOWN)) {
        return CK_NONE;
    }
    if (l == CK_UNKNOWN || r == CK_UNKNOWN) {
        return CK_UNKNOWN;
    }
    switch (op) {
    case T_PLUS:
        if (l == CK_NULL || r == CK_NULL) {
            return l == CK_NULL ? r : l;
        }
        return (l == r && (l == CK_NUM || l == CK_STR)) ? l : CK_NONE;
    case T_MINUS:
    case T_STAR:
    case T_SLASH:
        return (l == CK_NUM && r == CK_NUM) ? CK_NUM : CK_NONE;
    case T_EQ:
    case T_NEQ:
    case T_LT:
    case T_GT:
    case T_LE:
    case T_GE:
        return (l == CK_NUM && r == CK_NUM) ? CK_BOOL : CK_NONE;
    default:
        return CK_NONE;
    }
}

/* `a | b`: the identity compiles to nothing, so `1 | .` is still the constant 1. */
static ck_t join(ck_t l, ck_t r)
{
    if (l == CK_NOOP) {
        return r;
    }
    return r == CK_NOOP ? l : CK_NONE;
}

/* jq 1.6 refuses a key that folds to a constant other than a string. */
static void check_key(ps_t *p, ck_t k, uint32_t at)
{
    static const char *const kinds[] = {
        [CK_NUM] = "number", [CK_NULL] = "null",   [CK_BOOL] = "boolean",
        [CK_ARR] = "array",  [CK_OBJ] = "object",
    };
    if (CK_IS_CONST(k) && k != CK_STR) {
        jqc__semantic(p, at, SG_JQ_ERR_NAME, "object keys must be strings",
                      "cannot use a constant %s as object key", kinds[k]);
    }
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
        snprintf(hint, sizeof(hint), "jq 1.6 has @text @json @html @uri @csv @tsv @sh @base64 "
                                     "@base64d");
    }
    jqc__semantic(p, p->tok.off, SG_JQ_ERR_POLICY, hint, "@%s is not a valid format", word);
}

/* A string literal, plain or with interpolations; the current token starts it. */
static bool parse_string(ps_t *p, ck_t *v)
{
    if (is(p, T_STR)) {
        *v = CK_STR;
        advance(p);
        return true;
    }
    uint32_t quote = p->tok.off;
    *v = CK_NONE;
    while (is(p, T_STR_OPEN) || is(p, T_STR_MID)) {
        uint32_t interp = p->tok.off + p->tok.len - 2;
        ck_t iv;
        advance(p);
        if (!parse_pipe(p, &iv, false)) {
            return false;
        }
        if (!is(p, T_RPAREN)) {
            return expect_close(p, T_RPAREN, interp, "string interpolation");
        }
        /* the lexer stopped right after ')': go on with the string's text */
        p->lx.pos = p->tok.off + 1;
        p->tok = jqc__lex_string_rest(&p->lx, quote);
    }
    return expect(p, T_STR_END, NULL);
}

/* jq's String: a literal, optionally after a @format. */
static bool parse_string_any(ps_t *p, ck_t *v)
{
    if (is(p, T_FORMAT)) {
        check_format(p);
        advance(p);
    }
    if (!is_string(p)) {
        return jqc__unexpected(p, "expected a string literal");
    }
    return parse_string(p, v);
}

/* ---- terms ---- */

/* jq 1.6 has `Term FIELD '?'` and friends: one `?` right after a suffix stays in the term. */
static void term_qmark(ps_t *p)
{
    if (is(p, T_QMARK)) {
        advance(p);
    }
}

/* `."name"` after a term or the identity; the string may be a literal name for the path. */
static bool parse_field_string(ps_t *p)
{
    ck_t v;
    if (is(p, T_STR)) {
        jqc__path_add_str(p, &p->tok);
    } else {
        jqc__path_end(p);
    }
    if (!parse_string_any(p, &v)) {
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
        advance(p);
        jqc__path_add_str(p, &p->tok);
        advance(p);
        advance(p);
        term_qmark(p);
        return true;
    }
    jqc__path_end(p);
    advance(p);
    if (is(p, T_COLON)) {
        advance(p);
        if (!parse_pipe(p, &v, false)) {
            return false;
        }
    } else if (!is(p, T_RBRACKET)) {
        if (!parse_pipe(p, &v, false)) {
            return false;
        }
        if (is(p, T_COLON)) {
            advance(p);
            if (!is(p, T_RBRACKET) && !parse_pipe(p, &v, false)) {
                return false;
            }
        }
    }
    if (!expect_close(p, T_RBRACKET, open, "index")) {
        return false;
    }
    term_qmark(p);
    return true;
}

static bool parse_suffixes(ps_t *p, ck_t *v)
{
    for (;;) {
        if (is(p, T_FIELD)) {
            jqc__path_add_raw(p, p->tok.off + 1, p->tok.len - 1);
            advance(p);
            term_qmark(p);
        } else if (is(p, T_DOT)) {
            advance(p);
            if (!is_string(p) && !is(p, T_FORMAT)) {
                return jqc__unexpected(p, is(p, T_LBRACKET) ? "jq 1.6 has no '.[' after a term: "
                                                             "write .a[0], not .a.[0]"
                                                           : "after '.' write a name or a string");
            }
            if (!parse_field_string(p)) {
                return false;
            }
        } else if (is(p, T_LBRACKET)) {
            if (!parse_index(p)) {
                return false;
            }
        } else {
            return true;
        }
        *v = CK_NONE;
    }
}

static bool parse_call(ps_t *p, ck_t *v)
{
    tok_t name = p->tok;
    const char *s = p->src + name.off;
    unsigned arity = 0;
    *v = CK_NONE;
    advance(p);
    if (is(p, T_LPAREN)) {
        uint32_t open = p->tok.off;
        advance(p);
        if (is(p, T_RPAREN)) {
            return jqc__unexpected(p, "call a function without arguments without parentheses");
        }
        do {
            ck_t av;
            if (arity > 0) {
                advance(p);
            }
            if (!parse_pipe(p, &av, false)) {
                return false;
            }
            arity++;
        } while (is(p, T_SEMI));
        if (!expect_close(p, T_RPAREN, open, "argument list")) {
            return false;
        }
    } else if ((name.len == 4 && memcmp(s, "true", 4) == 0) ||
               (name.len == 5 && memcmp(s, "false", 5) == 0)) {
        *v = CK_BOOL; /* jq's parser turns these into constants, before any lookup */
        return true;
    } else if (name.len == 4 && memcmp(s, "null", 4) == 0) {
        *v = CK_NULL;
        return true;
    }
    jqc__use_func(p, &name, arity);
    return true;
}

static bool parse_variable(ps_t *p, ck_t *v)
{
    uint32_t at = p->tok.off;
    advance(p); /* '$'; jq 1.6 lexes it alone, so blanks may follow */
    if (is(p, T_LOC)) {
        advance(p);
        *v = CK_OBJ;
        return true;
    }
    if (!is(p, T_IDENT)) {
        return jqc__unexpected(p, keyword_hint(p));
    }
    jqc__use_var(p, &p->tok, at);
    advance(p);
    *v = CK_NONE;
    return true;
}

static bool parse_break(ps_t *p, ck_t *v)
{
    uint32_t at = p->tok.off;
    *v = CK_NONE;
    advance(p);
    if (!is(p, T_DOLLAR)) {
        return jqc__unexpected(p, "break needs a label: break $name");
    }
    advance(p);
    if (!is(p, T_IDENT)) {
        return jqc__unexpected(p, keyword_hint(p));
    }
    jqc__use_label(p, &p->tok, at);
    advance(p);
    return true;
}

static bool parse_array(ps_t *p, ck_t *v)
{
    uint32_t open = p->tok.off;
    ck_t iv;
    advance(p);
    if (is(p, T_RBRACKET)) {
        advance(p);
        *v = CK_ARR;
        return true;
    }
    if (!parse_pipe(p, &iv, false) || !expect_close(p, T_RBRACKET, open, "array")) {
        return false;
    }
    /* jq 1.6's gen_collect turns [c1, c2, ...] of constants into one constant */
    *v = (CK_IS_CONST(iv) || iv == CK_CLIST) ? CK_ARR : (iv == CK_UNKNOWN ? CK_UNKNOWN : CK_NONE);
    return true;
}

/* jq 1.6's ExpD: an object value is `-`* Term, or such values joined by '|'. */
static bool parse_expd(ps_t *p, ck_t *v)
{
    ck_t acc = CK_NOOP;
    for (;;) {
        bool neg = false;
        while (is(p, T_MINUS)) {
            advance(p);
            neg = true;
        }
        ck_t tv;
        if (!parse_term(p, &tv)) {
            return false;
        }
        acc = join(acc, neg ? CK_NONE : tv);
        if (!is(p, T_PIPE)) {
            break;
        }
        advance(p);
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
    *kv = CK_STR;
    if (is(p, T_IDENT) || is_keyword((tk_t)key.kind)) {
        advance(p);
        *short_ok = key.kind == T_IDENT;
    } else if (is_string(p) || is(p, T_FORMAT)) {
        if (!parse_string_any(p, kv)) {
            return false;
        }
        *short_ok = true;
    } else if (is(p, T_LPAREN)) {
        advance(p);
        if (!parse_pipe(p, kv, false) || !expect_close(p, T_RPAREN, key.off, "key expression")) {
            return false;
        }
        check_key(p, *kv, key.off);
        return true;
    } else {
        return jqc__unexpected(p, is(p, T_NUMBER) ? "object keys are names or strings: {\"1\": v}"
                                                  : NULL);
    }
    if (!is(p, T_COLON) && *short_ok && (key.kind == T_IDENT || key.kind == T_STR)) {
        shorthand_path(p, &key);
    }
    return true;
}

static bool parse_pair(ps_t *p, ck_t *pv)
{
    ck_t kv, vv;
    bool short_ok;
    *pv = CK_NONE;
    if (is(p, T_DOLLAR)) { /* {$x} only: jq 1.6 has neither {$x: v} nor {$__loc__} */
        uint32_t at = p->tok.off;
        advance(p);
        if (!is(p, T_IDENT)) {
            return jqc__unexpected(p, is(p, T_LOC) ? "jq 1.6 needs {__loc__: $__loc__}"
                                                   : keyword_hint(p));
        }
        jqc__use_var(p, &p->tok, at);
        advance(p);
        if (is(p, T_COLON)) {
            return jqc__unexpected(p, "to use a variable as key write {($x): v}");
        }
        return true;
    }
    if (!parse_key(p, &kv, &short_ok)) {
        return false;
    }
    if (!is(p, T_COLON)) {
        return short_ok ? true : jqc__unexpected(p, "this key needs a value: {key: value}");
    }
    advance(p);
    if (!parse_expd(p, &vv)) {
        return false;
    }
    if (kv == CK_UNKNOWN || vv == CK_UNKNOWN) {
        *pv = CK_UNKNOWN;
    } else if (kv == CK_STR && CK_IS_CONST(vv)) {
        *pv = CK_OBJ;
    }
    return true;
}

static bool is_binary_op(tk_t k);

static bool parse_object(ps_t *p, ck_t *v)
{
    uint32_t open = p->tok.off;
    *v = CK_OBJ; /* gen_const_object: constant if every key and value is */
    advance(p);
    while (!is(p, T_RBRACE)) {
        ck_t pv;
        if (!parse_pair(p, &pv)) {
            return false;
        }
        *v = (pv == CK_NONE || *v == CK_NONE) ? CK_NONE : (pv == CK_UNKNOWN ? CK_UNKNOWN : *v);
        if (is(p, T_COMMA)) {
            advance(p); /* a trailing comma is fine in jq 1.6 */
        } else if (!is(p, T_RBRACE)) {
            if (is(p, T_EOF)) {
                return jqc__syntax(p, open, SG_JQ_ERR_SYNTAX, NULL, "unterminated object");
            }
            bool op = is_binary_op((tk_t)p->tok.kind) || is(p, T_QMARK) || is(p, T_AS);
            return jqc__unexpected(p, op ? "jq 1.6 allows only a term as object value: write "
                                           "{key: (...)}"
                                         : "expected ',' or '}'");
        }
    }
    advance(p);
    return true;
}

static bool parse_primary(ps_t *p, ck_t *v)
{
    uint32_t off = p->tok.off;
    *v = CK_NONE;
    switch (p->tok.kind) {
    case T_DOT:
        advance(p);
        jqc__path_begin(p, off);
        *v = CK_NOOP;
        if (is_string(p) || is(p, T_FORMAT)) {
            *v = CK_NONE;
            return parse_field_string(p);
        }
        return true;
    case T_FIELD:
        jqc__path_begin(p, off);
        jqc__path_add_raw(p, off + 1, p->tok.len - 1);
        advance(p);
        term_qmark(p);
        return true;
    case T_REC:
        advance(p);
        return true;
    case T_NUMBER:
        advance(p);
        *v = CK_NUM;
        return true;
    case T_STR:
    case T_STR_OPEN:
        return parse_string(p, v);
    case T_FORMAT:
        check_format(p);
        advance(p);
        return is_string(p) ? parse_string(p, v) : true;
    case T_LPAREN:
        advance(p);
        return parse_pipe(p, v, false) && expect_close(p, T_RPAREN, off, "parenthesis");
    case T_LBRACKET:
        return parse_array(p, v);
    case T_LBRACE:
        return enter(p) && leave(p, parse_object(p, v));
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

static bool parse_term(ps_t *p, ck_t *v)
{
    bool ok = parse_primary(p, v) && parse_suffixes(p, v);
    if (ok) {
        jqc__path_end(p);
    }
    p->path_on = false;
    return ok;
}

/* ---- compound expressions ---- */

static bool parse_funcdef(ps_t *p)
{
    advance(p); /* def */
    if (!is(p, T_IDENT)) {
        return jqc__unexpected(p, keyword_hint(p));
    }
    tok_t name = p->tok;
    uint32_t fn = p->nbinds;
    /* pushed before the parameters so the body can recurse; arity fixed up below */
    if (!jqc__push(p, p->src + name.off, name.len, B_FUNC, 0)) {
        return false;
    }
    unsigned arity = 0;
    advance(p);
    if (is(p, T_LPAREN)) {
        uint32_t open = p->tok.off;
        do {
            advance(p);
            bool var = is(p, T_DOLLAR);
            if (var) {
                advance(p);
            }
            if (!is(p, T_IDENT)) {
                return jqc__unexpected(p, is(p, T_RPAREN) ? "a function without parameters is "
                                                            "written def f: ...;"
                                                          : keyword_hint(p));
            }
            /* a $param binds both $name and the filter name/0 */
            const char *s = p->src + p->tok.off;
            if ((var && !jqc__push(p, s, p->tok.len, B_VAR, 0)) ||
                !jqc__push(p, s, p->tok.len, B_FUNC, 0)) {
                return false;
            }
            arity++;
            advance(p);
        } while (is(p, T_SEMI));
        if (!expect_close(p, T_RPAREN, open, "parameter list")) {
            return false;
        }
    }
    p->binds[fn].arity = (uint16_t)(arity > 0xffff ? 0xffff : arity);
    ck_t bv;
    if (!expect(p, T_COLON, "write def name: body; or def name(params): body;") ||
        !parse_pipe(p, &bv, false) ||
        !expect(p, T_SEMI, "a function definition ends with ';' before the expression using it")) {
        return false;
    }
    jqc__pop(p, fn + 1);
    return true;
}

/* `label $name |`; the body is the rest of the enclosing pipe. */
static bool parse_label(ps_t *p)
{
    advance(p);
    if (!expect(p, T_DOLLAR, "write label $name | ...")) {
        return false;
    }
    if (!is(p, T_IDENT)) {
        return jqc__unexpected(p, keyword_hint(p));
    }
    if (!jqc__push(p, p->src + p->tok.off, p->tok.len, B_LABEL, 0)) {
        return false;
    }
    advance(p);
    return expect(p, T_PIPE, "write label $name | ...");
}

/* After `Term as`: the patterns and '|'; the caller parses the body. */
static bool parse_binding(ps_t *p)
{
    uint32_t mark = p->nbinds;
    unsigned nalts;
    advance(p); /* as */
    if (!parse_patterns(p, &nalts)) {
        return false;
    }
    jqc__reveal(p, mark);
    return expect(p, T_PIPE, "a binding needs a body: TERM as $x | BODY");
}

static bool parse_if(ps_t *p)
{
    uint32_t at = p->tok.off;
    ck_t v;
    advance(p);
    if (!parse_pipe(p, &v, false) || !expect(p, T_THEN, "write if COND then A else B end") ||
        !parse_pipe(p, &v, false)) {
        return false;
    }
    while (is(p, T_ELIF)) {
        advance(p);
        if (!parse_pipe(p, &v, false) || !expect(p, T_THEN, "write elif COND then A") ||
            !parse_pipe(p, &v, false)) {
            return false;
        }
    }
    if (is(p, T_ELSE)) {
        advance(p);
        return parse_pipe(p, &v, false) && expect(p, T_END, "an 'if' ends with 'end'");
    }
    if (is(p, T_END)) {
        return jqc__unexpected(p, "jq 1.6 requires 'else' in every 'if' (add 'else . end')");
    }
    if (is(p, T_EOF)) {
        return jqc__syntax(p, at, SG_JQ_ERR_SYNTAX, "write if COND then A else B end",
                           "unterminated 'if'");
    }
    return jqc__unexpected(p, "expected 'elif', 'else' or 'end'");
}

/* reduce TERM as P (INIT; UPDATE) and foreach TERM as P (INIT; UPDATE[; EXTRACT]). */
static bool parse_reduce(ps_t *p)
{
    bool each = is(p, T_FOREACH);
    const char *shape = each ? "write foreach TERM as $x (INIT; UPDATE; EXTRACT)"
                             : "write reduce TERM as $x (INIT; UPDATE)";
    ck_t v;
    unsigned nalts;
    advance(p);
    if (!parse_term(p, &v)) {
        return false;
    }
    if (!is(p, T_AS)) {
        return jqc__unexpected(p, "the source must be a single term: wrap it in parentheses");
    }
    advance(p);
    uint32_t mark = p->nbinds;
    if (!parse_patterns(p, &nalts)) {
        return false;
    }
    uint32_t open = p->tok.off;
    /* the pattern's variables are not visible in INIT */
    if (!expect(p, T_LPAREN, shape) || !parse_pipe(p, &v, false) || !expect(p, T_SEMI, shape)) {
        return false;
    }
    jqc__reveal(p, mark);
    if (!parse_pipe(p, &v, false)) {
        return false;
    }
    if (each && is(p, T_SEMI)) {
        advance(p);
        if (!parse_pipe(p, &v, false)) {
            return false;
        }
    }
    if (!is(p, T_RPAREN)) {
        return is(p, T_EOF) ? expect_close(p, T_RPAREN, open, "parenthesis")
                            : jqc__unexpected(p, shape);
    }
    advance(p);
    jqc__pop(p, mark);
    return true;
}

/* try BODY [catch HANDLER]: yacc gives "try" and "catch" the highest precedence, so each
 * takes one operand: `try 1 + 1 catch 2` is a syntax error in jq 1.6, `try -1*2` is not. */
static bool parse_try(ps_t *p)
{
    ck_t v;
    advance(p);
    if (!parse_binary(p, L_TRY, NULL, &v)) {
        return false;
    }
    if (is(p, T_CATCH)) {
        advance(p);
        return parse_binary(p, L_TRY, NULL, &v);
    }
    return true;
}

/*
 * One operand of a binary expression. With tail_as (only at the start of a pipe segment)
 * a `Term as` is handed back to parse_pipe, which parses the body as the rest of its own
 * segments, so long chains of bindings do not nest.
 */
static bool parse_prefix(ps_t *p, bool *tail_as, ck_t *v)
{
    *v = CK_NONE;
    switch (p->tok.kind) {
    case T_MINUS: /* yacc: '-' Exp has the precedence of binary '-' */
        while (is(p, T_MINUS)) {
            advance(p);
        }
        if (!enter(p) || !leave(p, parse_binary(p, L_MUL, NULL, v))) {
            return false;
        }
        *v = CK_NONE;
        return true;
    case T_TRY:
        return enter(p) && leave(p, parse_try(p));
    case T_IF:
        return parse_if(p);
    case T_REDUCE:
    case T_FOREACH:
        return parse_reduce(p);
    case T_DEF:
    case T_LABEL:
        return parse_pipe(p, v, false);
    default:
        break;
    }
    if (!parse_term(p, v) || !is(p, T_AS)) {
        return !p->stop;
    }
    if (tail_as != NULL) {
        *tail_as = true;
        return true;
    }
    uint32_t mark = p->nbinds;
    ck_t bv;
    bool ok = parse_binding(p) && parse_pipe(p, &bv, false);
    jqc__pop(p, mark);
    *v = CK_NONE;
    return ok;
}

static int binary_level(tk_t k)
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

static bool is_binary_op(tk_t k)
{
    return binary_level(k) > 0;
}

/* An operand and the `?` suffixes that apply to it at this binding strength. */
static bool parse_operand(ps_t *p, int min, bool *tail_as, ck_t *v)
{
    if (!parse_prefix(p, tail_as, v)) {
        return false;
    }
    if (tail_as != NULL && *tail_as) {
        return true;
    }
    while (min <= L_QMARK && is(p, T_QMARK)) {
        advance(p);
        *v = CK_NONE;
    }
    return true;
}

/*
 * Precedence climbing over binary operators at least as strong as min. Pending left
 * operands wait on a small explicit stack; each entry binds strictly tighter than the one
 * below, so it never holds more than one entry per level.
 */
static bool parse_binary(ps_t *p, int min, bool *tail_as, ck_t *v)
{
    struct pending_op {
        int min, level;
        tk_t op;
        ck_t lhs;
    } st[L_MUL + 1];
    int sp = 0, cur = min, last = -1;
    ck_t val;
    if (!parse_operand(p, cur, tail_as, &val) || (tail_as != NULL && *tail_as)) {
        return !p->stop;
    }
    for (;;) {
        tk_t op = (tk_t)p->tok.kind;
        int level = binary_level(op);
        while (sp > 0 && level < cur) {
            sp--;
            val = fold(st[sp].lhs, st[sp].op, val);
            cur = st[sp].min;
            last = st[sp].level;
        }
        if (level < cur) {
            break;
        }
        if (level == last && (level == L_CMP || level == L_ASSIGN)) {
            return jqc__unexpected(p, "comparisons and assignments do not chain in jq: add "
                                      "parentheses");
        }
        st[sp++] = (struct pending_op){.min = cur, .level = level, .op = op, .lhs = val};
        cur = level + 1;
        last = -1;
        advance(p);
        if (!parse_operand(p, cur, NULL, &val)) {
            return false;
        }
    }
    *v = val;
    return true;
}

/*
 * Exp at its loosest: `def`s, `label $x |`, `Term as P |` and '|'-separated segments.
 * Definitions, labels and bindings made here reach to the end of this pipe, which is
 * exactly how far jq 1.6's grammar extends their bodies.
 */
static bool parse_pipe(ps_t *p, ck_t *v, bool top)
{
    if (!enter(p)) {
        return false;
    }
    uint32_t mark = p->nbinds;
    unsigned segs = 0, defs = 0;
    ck_t acc = CK_NOOP;
    bool ok = true, bind_next = false;
    for (;;) {
        while (ok && is(p, T_DEF)) {
            ok = parse_funcdef(p);
            defs++;
        }
        if (!ok || (top && segs == 0 && defs > 0 && is(p, T_EOF))) {
            break; /* jq 1.6 compiles a program made of definitions only */
        }
        if (bind_next || is(p, T_LABEL)) {
            ok = bind_next ? parse_binding(p) : parse_label(p);
            bind_next = false;
            acc = CK_NONE;
            segs++;
            continue;
        }
        ck_t sv;
        ok = parse_binary(p, L_COMMA, &bind_next, &sv);
        if (!ok || bind_next) {
            continue; /* `Term as` at the start of a segment: bound at the top of the loop */
        }
        acc = join(acc, sv);
        if (!is(p, T_PIPE)) {
            break;
        }
        advance(p);
        segs++;
    }
    jqc__pop(p, mark);
    *v = acc;
    return leave(p, ok);
}

/* ---- patterns ---- */

static bool parse_obj_pattern(ps_t *p)
{
    ck_t kv;
    if (is(p, T_DOLLAR)) { /* {$name} or {$name: pattern}: both bind $name */
        advance(p);
        if (!is(p, T_IDENT)) {
            return jqc__unexpected(p, keyword_hint(p));
        }
        if (!jqc__push(p, p->src + p->tok.off, p->tok.len, B_HIDDEN, 0)) {
            return false;
        }
        advance(p);
        if (!is(p, T_COLON)) {
            return true;
        }
    } else if (is(p, T_IDENT) || is_keyword((tk_t)p->tok.kind)) {
        advance(p);
    } else if (is_string(p) || is(p, T_FORMAT)) {
        if (!parse_string_any(p, &kv)) {
            return false;
        }
    } else if (is(p, T_LPAREN)) {
        uint32_t open = p->tok.off;
        advance(p);
        if (!parse_pipe(p, &kv, false) || !expect_close(p, T_RPAREN, open, "key expression")) {
            return false;
        }
        check_key(p, kv, open);
    } else {
        return jqc__unexpected(p, "expected $name, name: pattern, \"key\": pattern or "
                                  "(expr): pattern");
    }
    return expect(p, T_COLON, "write key: $variable") && parse_pattern(p);
}

static bool parse_pattern_list(ps_t *p, bool object)
{
    uint32_t open = p->tok.off;
    do {
        advance(p); /* the opener or ',' */
        if (!(object ? parse_obj_pattern(p) : parse_pattern(p))) {
            return false;
        }
    } while (is(p, T_COMMA));
    return expect_close(p, object ? T_RBRACE : T_RBRACKET, open, "pattern");
}

static bool parse_pattern(ps_t *p)
{
    if (!enter(p)) {
        return false;
    }
    bool ok;
    if (is(p, T_DOLLAR)) {
        advance(p);
        ok = is(p, T_IDENT) ? jqc__push(p, p->src + p->tok.off, p->tok.len, B_HIDDEN, 0)
                            : jqc__unexpected(p, keyword_hint(p));
        if (ok) {
            advance(p);
        }
    } else if (is(p, T_LBRACKET) || is(p, T_LBRACE)) {
        ok = parse_pattern_list(p, is(p, T_LBRACE));
    } else {
        ok = jqc__unexpected(p, "expected a pattern: $name, [$a, $b] or {key: $v}");
    }
    return leave(p, ok);
}

/* Pattern ?// Pattern ...; the variables stay hidden until the caller reveals them. */
static bool parse_patterns(ps_t *p, unsigned *nalts)
{
    uint32_t bind_mark = p->nbinds, pend_mark = p->npends;
    bool ok;
    *nalts = 0;
    p->pat_depth++;
    do {
        if (*nalts > 0) {
            advance(p); /* ?// */
        }
        ok = parse_pattern(p);
        (*nalts)++;
    } while (ok && is(p, T_ALT));
    if (ok) {
        jqc__settle_pattern(p, bind_mark, pend_mark, *nalts);
    }
    p->pat_depth--;
    return ok;
}

/* ---- program ---- */

static const char *trailing_hint(const ps_t *p)
{
    switch (p->tok.kind) {
    case T_CATCH:
        return "'try' takes only the term right after it: write try (...) catch ...";
    case T_ALT:
        return "jq reads '?//' as one token (destructuring alternatives): write '? //'";
    case T_RPAREN:
    case T_RBRACKET:
    case T_RBRACE:
        return "it closes nothing";
    case T_AS:
        return "only a term can be bound: write (...) as $x | ...";
    case T_SEMI:
        return "';' separates function arguments and ends definitions";
    default:
        return is_binary_op((tk_t)p->tok.kind) || is(p, T_PIPE)
                   ? NULL
                   : "two expressions in a row: join them with '|' or ','";
    }
}

static bool parse_program(ps_t *p)
{
    const char *nomod = "modules are not supported in saga expressions";
    if (is(p, T_MODULE)) {
        if (!(p->flags & SG_JQ_COMPAT)) {
            return jqc__syntax(p, p->tok.off, SG_JQ_ERR_POLICY, NULL, "%s", nomod);
        }
        uint32_t at = p->tok.off;
        ck_t mv;
        advance(p);
        if (!parse_pipe(p, &mv, false) || !expect(p, T_SEMI, NULL)) {
            return false;
        }
        if (!CK_IS_CONST(mv) && mv != CK_UNKNOWN) {
            jqc__semantic(p, at, SG_JQ_ERR_NAME, NULL, "module metadata must be constant");
        }
    }
    if (is(p, T_IMPORT) || is(p, T_INCLUDE)) {
        return jqc__syntax(p, p->tok.off, SG_JQ_ERR_POLICY, NULL, "%s", nomod);
    }
    ck_t v;
    if (is(p, T_EOF)) {
        return true; /* jq 1.6 compiles the empty program (the identity) */
    }
    if (!parse_pipe(p, &v, true)) {
        return false;
    }
    return is(p, T_EOF) || jqc__unexpected(p, trailing_hint(p));
}

bool sg_jq_check_ex(const char *src, size_t len, unsigned flags, sg_jq_path_fn path_fn,
                    void *ctx, sg_jq_error_t *err)
{
    ps_t p;
    memset(&p, 0, offsetof(ps_t, first));
    if (len >= UINT32_MAX / 2) {
        jqc__syntax(&p, 0, SG_JQ_ERR_LIMIT, NULL, "expression too long");
        return jqc__finish(&p, err);
    }
    p.src = src;
    p.len = (uint32_t)len;
    p.flags = flags;
    p.lx = (lexer_t){.src = src, .len = (uint32_t)len, .pos = 0};
    p.binds = p.inline_binds;
    p.capbinds = JQC_INLINE_BINDS;
    p.pends = p.inline_pends;
    p.cappends = JQC_INLINE_PENDS;
    p.path_fn = path_fn;
    p.ctx = ctx;
    advance(&p);
    parse_program(&p);
    return jqc__finish(&p, err);
}

bool sg_jq_check(const char *src, size_t len, sg_jq_path_fn path_fn, void *ctx,
                 sg_jq_error_t *err)
{
    return sg_jq_check_ex(src, len, 0, path_fn, ctx, err);
}
