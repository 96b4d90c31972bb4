/*
 * jqcheck grammar: a recursive-descent parser for jq 1.6 (src/parser.y of jq-1.6) that
 * resolves names as it goes, so one pass over the tokens checks both syntax and binding.
 * This file has the expression level: operators, `def`, `as` bindings and patterns,
 * `label`, `reduce`/`foreach`, `if`, `try`, and the entry point; terms are in
 * jqcheck_term.c. Binary operators use precedence climbing with an explicit operator
 * stack, so only real nesting costs C stack and counts towards SG_JQ_MAX_DEPTH.
 *
 * It must accept every program jq 1.6 compiles. Where jq's yacc precedences decide what
 * is legal (`try` binds tighter than any binary operator, `?` after a plain term is an
 * expression suffix), the comments say how this mirrors it.
 */
#include "orchestrator/jqcheck/jqcheck_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static bool parse_binary(ps_t *p, int min, bool *tail_as, ck_t *v);
static bool parse_patterns(ps_t *p, unsigned *nalts);
static bool parse_pattern(ps_t *p);

/* ---- compound expressions ---- */

static bool parse_funcdef(ps_t *p)
{
    jqc__advance(p); /* def */
    if (!jqc__is(p, T_IDENT)) {
        return jqc__unexpected(p, jqc__keyword_hint(p));
    }
    tok_t name = p->tok;
    uint32_t fn = p->nbinds;
    /* pushed before the parameters so the body can recurse; arity fixed up below */
    int32_t def = jqc__push_def(p, p->src + name.off, name.len);
    if (def < 0) {
        return false;
    }
    int32_t outer = p->cur_def;
    p->cur_def = def;
    unsigned arity = 0;
    jqc__advance(p);
    if (jqc__is(p, T_LPAREN)) {
        uint32_t open = p->tok.off;
        do {
            jqc__advance(p);
            bool var = jqc__is(p, T_DOLLAR);
            if (var) {
                jqc__advance(p);
            }
            if (!jqc__is(p, T_IDENT)) {
                return jqc__unexpected(p, jqc__is(p, T_RPAREN) ? "a function without parameters is "
                                                                 "written def f: ...;"
                                                               : jqc__keyword_hint(p));
            }
            /* a $param binds both $name and the filter name/0 */
            const char *s = p->src + p->tok.off;
            if ((var && !jqc__push(p, s, p->tok.len, B_VAR, 0)) ||
                !jqc__push(p, s, p->tok.len, B_FUNC, 0)) {
                return false;
            }
            arity++;
            jqc__advance(p);
        } while (jqc__is(p, T_SEMI));
        if (!jqc__expect_close(p, T_RPAREN, open, "parameter list")) {
            return false;
        }
    }
    p->binds[fn].arity = (uint16_t)(arity > 0xffff ? 0xffff : arity);
    ck_t bv;
    if (!jqc__expect(p, T_COLON, "write def name: body; or def name(params): body;") ||
        !jqc__parse_pipe(p, &bv, false) ||
        !jqc__expect(p, T_SEMI,
                     "a function definition ends with ';' before the expression using it")) {
        return false;
    }
    p->cur_def = outer;
    jqc__pop(p, fn + 1);
    return true;
}

/* `label $name |`; the body is the rest of the enclosing pipe. */
static bool parse_label(ps_t *p)
{
    jqc__advance(p);
    if (!jqc__expect(p, T_DOLLAR, "write label $name | ...")) {
        return false;
    }
    if (!jqc__is(p, T_IDENT)) {
        return jqc__unexpected(p, jqc__keyword_hint(p));
    }
    if (!jqc__push(p, p->src + p->tok.off, p->tok.len, B_LABEL, 0)) {
        return false;
    }
    jqc__advance(p);
    return jqc__expect(p, T_PIPE, "write label $name | ...");
}

/* After `Term as`: the patterns and '|'; the caller parses the body. */
static bool parse_binding(ps_t *p)
{
    uint32_t mark = p->nbinds;
    unsigned nalts;
    jqc__advance(p); /* as */
    if (!parse_patterns(p, &nalts)) {
        return false;
    }
    jqc__reveal(p, mark);
    return jqc__expect(p, T_PIPE, "a binding needs a body: TERM as $x | BODY");
}

static bool parse_if(ps_t *p)
{
    uint32_t at = p->tok.off;
    ck_t v;
    jqc__advance(p);
    if (!jqc__parse_pipe(p, &v, false) ||
        !jqc__expect(p, T_THEN, "write if COND then A else B end") ||
        !jqc__parse_pipe(p, &v, false)) {
        return false;
    }
    while (jqc__is(p, T_ELIF)) {
        jqc__advance(p);
        if (!jqc__parse_pipe(p, &v, false) || !jqc__expect(p, T_THEN, "write elif COND then A") ||
            !jqc__parse_pipe(p, &v, false)) {
            return false;
        }
    }
    if (jqc__is(p, T_ELSE)) {
        jqc__advance(p);
        return jqc__parse_pipe(p, &v, false) && jqc__expect(p, T_END, "an 'if' ends with 'end'");
    }
    if (jqc__is(p, T_END)) {
        return jqc__unexpected(p, "jq 1.6 requires 'else' in every 'if' (add 'else . end')");
    }
    if (jqc__is(p, T_EOF)) {
        return jqc__syntax(p, at, SG_JQ_ERR_SYNTAX, "write if COND then A else B end",
                           "unterminated 'if'");
    }
    return jqc__unexpected(p, "expected 'elif', 'else' or 'end'");
}

/* reduce TERM as P (INIT; UPDATE) and foreach TERM as P (INIT; UPDATE[; EXTRACT]). */
static bool parse_reduce(ps_t *p)
{
    bool each = jqc__is(p, T_FOREACH);
    const char *shape = each ? "write foreach TERM as $x (INIT; UPDATE; EXTRACT)"
                             : "write reduce TERM as $x (INIT; UPDATE)";
    ck_t v;
    unsigned nalts;
    jqc__advance(p);
    if (!jqc__parse_term(p, &v)) {
        return false;
    }
    if (!jqc__is(p, T_AS)) {
        bool op = jqc__is_binary_op((tk_t)p->tok.kind) || jqc__is(p, T_QMARK);
        return jqc__unexpected(p, op ? "the source must be a single term: wrap it in parentheses"
                                     : shape);
    }
    jqc__advance(p);
    uint32_t mark = p->nbinds;
    if (!parse_patterns(p, &nalts)) {
        return false;
    }
    uint32_t open = p->tok.off;
    /* the pattern's variables are not visible in INIT */
    if (!jqc__expect(p, T_LPAREN, shape) || !jqc__parse_pipe(p, &v, false) ||
        !jqc__expect(p, T_SEMI, shape)) {
        return false;
    }
    jqc__reveal(p, mark);
    if (!jqc__parse_pipe(p, &v, false)) {
        return false;
    }
    if (each && jqc__is(p, T_SEMI)) {
        jqc__advance(p);
        if (!jqc__parse_pipe(p, &v, false)) {
            return false;
        }
    }
    if (!jqc__is(p, T_RPAREN)) {
        return jqc__is(p, T_EOF) ? jqc__expect_close(p, T_RPAREN, open, "parenthesis")
                                 : jqc__unexpected(p, shape);
    }
    jqc__advance(p);
    jqc__pop(p, mark);
    return true;
}

/* try BODY [catch HANDLER]: yacc gives "try" and "catch" the highest precedence, so each
 * takes one operand: `try 1 + 1 catch 2` is a syntax error in jq 1.6, `try -1*2` is not. */
static bool parse_try(ps_t *p)
{
    ck_t v;
    jqc__advance(p);
    if (!parse_binary(p, L_TRY, NULL, &v)) {
        return false;
    }
    if (jqc__is(p, T_CATCH)) {
        jqc__advance(p);
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
    *v = ck(CK_NONE);
    switch (p->tok.kind) {
    case T_MINUS: /* yacc: '-' Exp has the precedence of binary '-' */
        while (jqc__is(p, T_MINUS)) {
            jqc__advance(p);
        }
        if (!jqc__enter(p) || !jqc__leave(p, parse_binary(p, L_MUL, NULL, v))) {
            return false;
        }
        *v = ck(CK_NONE);
        return true;
    case T_TRY:
        return jqc__enter(p) && jqc__leave(p, parse_try(p));
    case T_IF:
        return parse_if(p);
    case T_REDUCE:
    case T_FOREACH:
        return parse_reduce(p);
    case T_DEF:
    case T_LABEL:
        return jqc__parse_pipe(p, v, false);
    default:
        break;
    }
    if (!jqc__parse_term(p, v) || !jqc__is(p, T_AS)) {
        return !p->stop;
    }
    if (tail_as != NULL) {
        *tail_as = true;
        return true;
    }
    uint32_t mark = p->nbinds;
    ck_t bv;
    bool ok = parse_binding(p) && jqc__parse_pipe(p, &bv, false);
    jqc__pop(p, mark);
    *v = ck(CK_NONE);
    return ok;
}

static bool parse_operand(ps_t *p, int min, bool *tail_as, ck_t *v)
{
    if (!parse_prefix(p, tail_as, v)) {
        return false;
    }
    if (tail_as != NULL && *tail_as) {
        return true;
    }
    while (min <= L_QMARK && jqc__is(p, T_QMARK)) {
        jqc__advance(p);
        *v = ck(CK_NONE);
    }
    return true;
}

/*
 * Precedence climbing over binary operators at least as strong as min. Pending left
 * operands wait on a small explicit stack; each entry binds strictly tighter than the one
 * below, so it never holds more than one entry per level.
 */
/* A binary operator whose right operand is still being parsed. */
struct pending_op {
    int min, level;
    tk_t op;
    uint32_t at;
    ck_t lhs;
};

/* jq 1.6 folds constant arithmetic while parsing and refuses a division whose result is
 * infinite ("Division by zero?"), even in code that never runs. */
static ck_t apply(ps_t *p, const struct pending_op *o, ck_t rhs)
{
    ck_t v = jqc__fold(o->lhs, o->op, rhs);
    if (o->op == T_SLASH && v.kind == CK_NUM && isinf(v.num)) {
        jqc__semantic(p, o->at, SG_JQ_ERR_SYNTAX,
                      "jq 1.6 computes constant divisions while compiling; the result is infinite",
                      "division by zero");
    }
    return v;
}

static bool parse_binary(ps_t *p, int min, bool *tail_as, ck_t *v)
{
    struct pending_op st[L_MUL + 1];
    int sp = 0, cur = min, last = -1;
    ck_t val;
    if (!parse_operand(p, cur, tail_as, &val) || (tail_as != NULL && *tail_as)) {
        return !p->stop;
    }
    for (;;) {
        tk_t op = (tk_t)p->tok.kind;
        int level = jqc__binary_level(op);
        while (sp > 0 && level < cur) {
            sp--;
            val = apply(p, &st[sp], val);
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
        st[sp++] =
            (struct pending_op){.min = cur, .level = level, .op = op, .at = p->tok.off, .lhs = val};
        cur = level + 1;
        last = -1;
        jqc__advance(p);
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
bool jqc__parse_pipe(ps_t *p, ck_t *v, bool top)
{
    if (!jqc__enter(p)) {
        return false;
    }
    uint32_t mark = p->nbinds;
    unsigned segs = 0, defs = 0;
    ck_t acc = ck(CK_NOOP);
    bool ok = true, bind_next = false;
    for (;;) {
        while (ok && jqc__is(p, T_DEF)) {
            ok = parse_funcdef(p);
            defs++;
        }
        if (!ok || (top && segs == 0 && defs > 0 && jqc__is(p, T_EOF))) {
            break; /* jq 1.6 compiles a program made of definitions only */
        }
        if (bind_next || jqc__is(p, T_LABEL)) {
            ok = bind_next ? parse_binding(p) : parse_label(p);
            bind_next = false;
            acc = ck(CK_NONE);
            segs++;
            continue;
        }
        ck_t sv;
        ok = parse_binary(p, L_COMMA, &bind_next, &sv);
        if (!ok || bind_next) {
            continue; /* `Term as` at the start of a segment: bound at the top of the loop */
        }
        acc = jqc__join(acc, sv);
        if (!jqc__is(p, T_PIPE)) {
            break;
        }
        jqc__advance(p);
        segs++;
    }
    jqc__pop(p, mark);
    *v = acc;
    return jqc__leave(p, ok);
}

/* ---- patterns ---- */

static bool parse_obj_pattern(ps_t *p)
{
    ck_t kv;
    if (jqc__is(p, T_DOLLAR)) { /* {$name} or {$name: pattern}: both bind $name */
        jqc__advance(p);
        if (!jqc__is(p, T_IDENT)) {
            return jqc__unexpected(p, jqc__keyword_hint(p));
        }
        if (!jqc__push(p, p->src + p->tok.off, p->tok.len, B_HIDDEN, 0)) {
            return false;
        }
        jqc__advance(p);
        if (!jqc__is(p, T_COLON)) {
            return true;
        }
    } else if (jqc__is(p, T_IDENT) || jqc__is_keyword((tk_t)p->tok.kind)) {
        jqc__advance(p);
    } else if (jqc__is_string(p) || jqc__is(p, T_FORMAT)) {
        if (!jqc__parse_string_any(p, &kv)) {
            return false;
        }
    } else if (jqc__is(p, T_LPAREN)) {
        uint32_t open = p->tok.off;
        jqc__advance(p);
        if (!jqc__parse_pipe(p, &kv, false) ||
            !jqc__expect_close(p, T_RPAREN, open, "key expression")) {
            return false;
        }
        jqc__check_key(p, kv, open);
    } else {
        return jqc__unexpected(p, "expected $name, name: pattern, \"key\": pattern or "
                                  "(expr): pattern");
    }
    return jqc__expect(p, T_COLON, "write key: $variable") && parse_pattern(p);
}

static bool parse_pattern_list(ps_t *p, bool object)
{
    uint32_t open = p->tok.off;
    do {
        jqc__advance(p); /* the opener or ',' */
        if (!(object ? parse_obj_pattern(p) : parse_pattern(p))) {
            return false;
        }
    } while (jqc__is(p, T_COMMA));
    return jqc__expect_close(p, object ? T_RBRACE : T_RBRACKET, open, "pattern");
}

static bool parse_pattern(ps_t *p)
{
    if (!jqc__enter(p)) {
        return false;
    }
    bool ok;
    if (jqc__is(p, T_DOLLAR)) {
        jqc__advance(p);
        ok = jqc__is(p, T_IDENT) ? jqc__push(p, p->src + p->tok.off, p->tok.len, B_HIDDEN, 0)
                                 : jqc__unexpected(p, jqc__keyword_hint(p));
        if (ok) {
            jqc__advance(p);
        }
    } else if (jqc__is(p, T_LBRACKET) || jqc__is(p, T_LBRACE)) {
        ok = parse_pattern_list(p, jqc__is(p, T_LBRACE));
    } else {
        ok = jqc__unexpected(p, "expected a pattern: $name, [$a, $b] or {key: $v}");
    }
    return jqc__leave(p, ok);
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
            jqc__advance(p); /* ?// */
        }
        ok = parse_pattern(p);
        (*nalts)++;
    } while (ok && jqc__is(p, T_ALT));
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
        return jqc__is_binary_op((tk_t)p->tok.kind) || jqc__is(p, T_PIPE)
                   ? NULL
                   : "two expressions in a row: join them with '|' or ','";
    }
}

static bool parse_program(ps_t *p)
{
    const char *nomod = "modules are not supported in saga expressions";
    if (jqc__is(p, T_MODULE)) {
        if (!(p->flags & SG_JQ_COMPAT)) {
            return jqc__syntax(p, p->tok.off, SG_JQ_ERR_POLICY, NULL, "%s", nomod);
        }
        uint32_t at = p->tok.off;
        ck_t mv;
        jqc__advance(p);
        if (!jqc__parse_pipe(p, &mv, false) || !jqc__expect(p, T_SEMI, NULL)) {
            return false;
        }
        if (!CK_IS_CONST(mv) && mv.kind != CK_UNKNOWN) {
            jqc__semantic(p, at, SG_JQ_ERR_SYNTAX, NULL, "module metadata must be constant");
        }
    }
    if (jqc__is(p, T_IMPORT) || jqc__is(p, T_INCLUDE)) {
        return jqc__syntax(p, p->tok.off, SG_JQ_ERR_POLICY, NULL, "%s", nomod);
    }
    ck_t v;
    if (jqc__is(p, T_EOF)) {
        return true; /* jq 1.6 compiles the empty program (the identity) */
    }
    if (!jqc__parse_pipe(p, &v, true)) {
        return false;
    }
    return jqc__is(p, T_EOF) || jqc__unexpected(p, trailing_hint(p));
}

static void run(ps_t *p, const char *src, uint32_t len, unsigned flags, sg_jq_path_fn path_fn,
                void *ctx, const uint8_t *live)
{
    memset(p, 0, offsetof(ps_t, first));
    p->src = src;
    p->len = len;
    p->flags = flags;
    p->lx = (lexer_t){.src = src, .len = len, .pos = 0};
    p->cur_def = -1;
    p->live = live;
    p->binds = p->inline_binds;
    p->capbinds = JQC_INLINE_BINDS;
    p->pends = p->inline_pends;
    p->cappends = JQC_INLINE_PENDS;
    p->defs = p->inline_defs;
    p->capdefs = JQC_INLINE_DEFS;
    p->edges = p->inline_edges;
    p->capedges = JQC_INLINE_DEFS;
    p->path_fn = path_fn;
    p->ctx = ctx;
    jqc__advance(p);
    parse_program(p);
}

bool sg_jq_check_ex(const char *src, size_t len, unsigned flags, sg_jq_path_fn path_fn, void *ctx,
                    sg_jq_error_t *err)
{
    ps_t p;
    if (src == NULL) {
        src = ""; /* allowed with len 0 */
        len = 0;
    }
    if (len >= UINT32_MAX / 2) {
        run(&p, "", 0, flags, NULL, NULL, NULL);
        jqc__syntax(&p, 0, SG_JQ_ERR_LIMIT, NULL, "expression too long");
        return jqc__finish(&p, err);
    }
    run(&p, src, (uint32_t)len, flags, path_fn, ctx, NULL);
    uint8_t *live = NULL;
    if (!p.stop && jqc__live_defs(&p, &live)) {
        /* rare: parse again, now knowing which defs' name errors jq would see */
        jqc__release(&p);
        run(&p, src, (uint32_t)len, flags, NULL, NULL, live);
    }
    bool ok = jqc__finish(&p, err);
    sg_free(live);
    return ok;
}

bool sg_jq_check(const char *src, size_t len, sg_jq_path_fn path_fn, void *ctx, sg_jq_error_t *err)
{
    return sg_jq_check_ex(src, len, 0, path_fn, ctx, err);
}
