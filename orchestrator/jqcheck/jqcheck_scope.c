/*
 * jqcheck scopes, errors and paths: the name bindings the grammar pushes and resolves
 * (functions by name and arity, $variables, labels), the first-error bookkeeping with
 * hints, and the collection of path terms for the caller's callback.
 *
 * It must never keep anything beyond one sg_jq_check call: everything lives in the
 * caller's ps_t, and the few heap blocks are freed by jqc__finish.
 */
#include "orchestrator/jqcheck/jqcheck_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- errors ---- */

__attribute__((format(printf, 5, 0))) static void fill(sg_jq_error_t *e, uint32_t at,
                                                       sg_jq_err_kind_t kind, const char *hint,
                                                       const char *fmt, va_list ap)
{
    e->offset = at;
    e->kind = kind;
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    snprintf(e->hint, sizeof(e->hint), "%s", hint ? hint : "");
}

bool jqc__syntax(ps_t *p, uint32_t at, sg_jq_err_kind_t kind, const char *hint, const char *fmt,
                 ...)
{
    if (!p->stop) {
        va_list ap;
        va_start(ap, fmt);
        fill(&p->first, at, kind, hint, fmt, ap);
        va_end(ap);
        p->stop = true;
    }
    return false;
}

void jqc__semantic(ps_t *p, uint32_t at, sg_jq_err_kind_t kind, const char *hint, const char *fmt,
                   ...)
{
    if (kind == SG_JQ_ERR_NAME && p->cur_def >= 0) {
        if (p->live == NULL) {
            p->defs[p->cur_def] |= DEF_ERR; /* counts only if jq keeps this def */
            return;
        }
        if (!p->live[p->cur_def]) {
            return;
        }
    }
    /* keep the first by position: uses inside `?//` patterns are settled late */
    if (p->has_sem && p->sem.offset <= at) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fill(&p->sem, at, kind, hint, fmt, ap);
    va_end(ap);
    p->has_sem = true;
}

/* ---- grammar helpers ---- */

bool jqc__expect(ps_t *p, tk_t kind, const char *hint)
{
    if (!jqc__is(p, kind)) {
        return jqc__unexpected(p, hint);
    }
    jqc__advance(p);
    return true;
}

bool jqc__expect_close(ps_t *p, tk_t kind, uint32_t open, const char *what)
{
    if (jqc__is(p, kind)) {
        jqc__advance(p);
        return true;
    }
    if (jqc__is(p, T_EOF)) {
        return jqc__syntax(p, open, SG_JQ_ERR_SYNTAX, NULL, "unterminated %s", what);
    }
    char hint[96];
    snprintf(hint, sizeof(hint), "expected %s to close the %s", jqc__tok_name(kind), what);
    return jqc__unexpected(p, hint);
}

bool jqc__enter(ps_t *p)
{
    if (++p->depth > SG_JQ_MAX_DEPTH) {
        return jqc__syntax(p, p->tok.off, SG_JQ_ERR_LIMIT, "split it into smaller expressions",
                           "expression nested too deeply (more than %d levels)", SG_JQ_MAX_DEPTH);
    }
    return true;
}

bool jqc__leave(ps_t *p, bool ok)
{
    p->depth--;
    return ok;
}

/* Writes the token's text for a message, shortened and made printable. */
static void token_text(const ps_t *p, const tok_t *t, char *out, size_t cap)
{
    size_t n = 0;
    for (uint32_t i = 0; i < t->len && i < 32 && n + 5 < cap; i++) {
        unsigned char c = (unsigned char)p->src[t->off + i];
        n += (size_t)snprintf(out + n, cap - n, c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x", c);
    }
    snprintf(out + n, cap - n, "%s", t->len > 32 ? "..." : "");
}

static bool lexical_error(ps_t *p, const tok_t *t)
{
    static const char escapes[] =
        "valid escapes: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX \\(...)";
    unsigned char c = (unsigned char)p->src[t->where < p->len ? t->where : 0];
    char text[160];
    token_text(p, t, text, sizeof(text));
    switch (t->bad) {
    case BAD_CR:
        return jqc__syntax(p, t->where, SG_JQ_ERR_SYNTAX,
                           "jq 1.6 accepts only spaces, tabs and newlines between tokens",
                           "unexpected carriage return");
    case BAD_NUL:
        return jqc__syntax(p, t->where, SG_JQ_ERR_POLICY, "jq reads a program only up to a NUL",
                           "NUL byte in expression");
    case BAD_NUMBER:
        return jqc__syntax(p, t->where, SG_JQ_ERR_SYNTAX, NULL, "invalid numeric literal '%s'",
                           text);
    case BAD_STRING_EOF:
        return jqc__syntax(p, t->where, SG_JQ_ERR_SYNTAX, NULL, "unterminated string");
    case BAD_ESCAPE: {
        unsigned char e = (unsigned char)p->src[t->where + 1];
        if (e >= 0x20 && e < 0x7f) {
            return jqc__syntax(p, t->where, SG_JQ_ERR_SYNTAX, escapes,
                               "invalid escape '\\%c' in string", e);
        }
        return jqc__syntax(p, t->where, SG_JQ_ERR_SYNTAX, escapes, "invalid escape in string");
    }
    case BAD_UESCAPE:
        return jqc__syntax(p, t->where, SG_JQ_ERR_SYNTAX, "write \\u followed by 4 hex digits",
                           "invalid \\u escape in string");
    case BAD_SURROGATE:
        return jqc__syntax(p, t->where, SG_JQ_ERR_SYNTAX,
                           "a \\uD800-\\uDBFF escape must be followed by a \\uDC00-\\uDFFF one",
                           "unpaired UTF-16 surrogate in \\u escape");
    default:
        break;
    }
    if (c >= 0x80) {
        return jqc__syntax(p, t->where, SG_JQ_ERR_SYNTAX,
                           "outside string literals jq accepts only ASCII; for a field with "
                           "such a name write .[\"name\"]",
                           "unexpected byte 0x%02x", c);
    }
    return jqc__syntax(p, t->where, SG_JQ_ERR_SYNTAX, NULL, "unexpected character '%s'", text);
}

/*
 * On the error path only: relexes the program to find the innermost bracket, brace,
 * parenthesis or string interpolation still open at the end, so "unexpected end" can point
 * at what was left open.
 */
static bool innermost_open(const ps_t *p, uint32_t *at, const char **what)
{
    enum { OPEN_MAX = SG_JQ_MAX_DEPTH + 8 };
    uint32_t offs[OPEN_MAX];
    uint8_t kinds[OPEN_MAX];
    int n = 0;
    lexer_t lx = {.src = p->src, .len = p->len, .pos = 0};
    for (tok_t t = jqc__lex(&lx); t.kind != T_EOF && t.kind != T_BAD; t = jqc__lex(&lx)) {
        if (t.kind == T_RPAREN && n > 0 && kinds[n - 1] == T_STR_OPEN) {
            n--;
            t = jqc__lex_string_rest(&lx, t.off);
            if (t.kind == T_BAD) {
                return false;
            }
        }
        if (t.kind == T_LPAREN || t.kind == T_LBRACKET || t.kind == T_LBRACE ||
            t.kind == T_STR_OPEN || t.kind == T_STR_MID) {
            if (n == OPEN_MAX) {
                return false;
            }
            offs[n] = t.kind == T_STR_OPEN || t.kind == T_STR_MID ? t.off + t.len - 2 : t.off;
            kinds[n++] = t.kind == T_STR_MID ? T_STR_OPEN : t.kind;
        } else if ((t.kind == T_RPAREN || t.kind == T_RBRACKET || t.kind == T_RBRACE) && n > 0) {
            n--;
        }
    }
    if (n == 0) {
        return false;
    }
    *at = offs[n - 1];
    *what = kinds[n - 1] == T_LPAREN     ? "parenthesis"
            : kinds[n - 1] == T_LBRACKET ? "'['"
            : kinds[n - 1] == T_LBRACE   ? "object"
                                         : "string interpolation";
    return true;
}

bool jqc__unexpected(ps_t *p, const char *hint)
{
    const tok_t *t = &p->tok;
    char text[160];
    uint32_t at;
    const char *what;
    switch (t->kind) {
    case T_BAD:
        return lexical_error(p, t);
    case T_EOF:
        if (innermost_open(p, &at, &what)) {
            return jqc__syntax(p, at, SG_JQ_ERR_SYNTAX, hint, "unterminated %s", what);
        }
        return jqc__syntax(p, t->off, SG_JQ_ERR_SYNTAX, hint, "unexpected end of expression");
    case T_IDENT:
    case T_FIELD:
    case T_FORMAT:
    case T_NUMBER:
        token_text(p, t, text, sizeof(text));
        return jqc__syntax(p, t->off, SG_JQ_ERR_SYNTAX, hint, "unexpected %s '%s'",
                           jqc__tok_name((tk_t)t->kind), text);
    default:
        return jqc__syntax(p, t->off, SG_JQ_ERR_SYNTAX, hint, "unexpected %s",
                           jqc__tok_name((tk_t)t->kind));
    }
}

void jqc__release(ps_t *p)
{
    if (p->binds != p->inline_binds) {
        sg_free(p->binds);
    }
    if (p->pends != p->inline_pends) {
        sg_free(p->pends);
    }
    if (p->defs != p->inline_defs) {
        sg_free(p->defs);
    }
    if (p->edges != p->inline_edges) {
        sg_free(p->edges);
    }
    sg_free(p->heap);
    p->binds = p->inline_binds;
    p->pends = p->inline_pends;
    p->defs = p->inline_defs;
    p->edges = p->inline_edges;
    p->heap = NULL;
}

bool jqc__finish(ps_t *p, sg_jq_error_t *err)
{
    jqc__release(p);
    const sg_jq_error_t *e = p->stop ? &p->first : (p->has_sem ? &p->sem : NULL);
    if (e == NULL) {
        return true;
    }
    if (err != NULL) {
        *err = *e;
        err->line = 1;
        err->col = 1;
        for (uint32_t i = 0; i < e->offset && i < p->len; i++) {
            err->line += p->src[i] == '\n';
            err->col = p->src[i] == '\n' ? 1 : err->col + 1;
        }
    }
    return false;
}

/* ---- bindings ---- */

static bool grow(ps_t *p, void **items, void *inline_items, uint32_t *cap, size_t size)
{
    uint32_t ncap = *cap * 2;
    void *n = sg_malloc((size_t)ncap * size);
    if (n == NULL) {
        return jqc__syntax(p, p->tok.off, SG_JQ_ERR_LIMIT, NULL, "out of memory");
    }
    memcpy(n, *items, (size_t)*cap * size);
    if (*items != inline_items) {
        sg_free(*items);
    }
    *items = n;
    *cap = ncap;
    return true;
}

bool jqc__push(ps_t *p, const char *name, uint32_t len, uint8_t kind, uint16_t arity)
{
    if (p->nbinds == p->capbinds &&
        !grow(p, (void **)&p->binds, p->inline_binds, &p->capbinds, sizeof(bind_t))) {
        return false;
    }
    p->binds[p->nbinds++] =
        (bind_t){.name = name, .len = len, .def = -1, .arity = arity, .kind = kind};
    return true;
}

int32_t jqc__push_def(ps_t *p, const char *name, uint32_t len)
{
    if (p->ndefs == p->capdefs &&
        !grow(p, (void **)&p->defs, p->inline_defs, &p->capdefs, sizeof(uint8_t))) {
        return -1;
    }
    if (!jqc__push(p, name, len, B_FUNC, 0)) {
        return -1;
    }
    p->defs[p->ndefs] = 0;
    p->binds[p->nbinds - 1].def = (int32_t)p->ndefs;
    return (int32_t)p->ndefs++;
}

/* A call to def `to`: live at once from the main program, else through the caller. */
static void note_call(ps_t *p, int32_t to)
{
    if (p->cur_def < 0) {
        p->defs[to] |= DEF_LIVE;
        return;
    }
    if (to == p->cur_def) {
        return; /* recursion keeps nothing alive */
    }
    if (p->nedges == p->capedges &&
        !grow(p, (void **)&p->edges, p->inline_edges, &p->capedges, sizeof(edge_t))) {
        return;
    }
    p->edges[p->nedges++] = (edge_t){.from = p->cur_def, .to = to};
}

/* Marks everything reachable from the defs the main program calls; O(defs + calls). */
static bool propagate(ps_t *p, uint8_t *live)
{
    uint32_t n = p->ndefs;
    uint32_t *start = sg_calloc((size_t)n + 1, sizeof(uint32_t));
    int32_t *to = sg_malloc(((size_t)p->nedges + 1) * sizeof(int32_t));
    int32_t *queue = sg_malloc(((size_t)n + 1) * sizeof(int32_t));
    bool ok = start != NULL && to != NULL && queue != NULL;
    if (ok) {
        for (uint32_t e = 0; e < p->nedges; e++) {
            start[p->edges[e].from + 1]++;
        }
        for (uint32_t i = 0; i < n; i++) {
            start[i + 1] += start[i];
        }
        for (uint32_t e = 0; e < p->nedges; e++) { /* fill, then shift back below */
            to[start[p->edges[e].from]++] = p->edges[e].to;
        }
        for (uint32_t i = n; i > 0; i--) {
            start[i] = start[i - 1];
        }
        start[0] = 0;
        uint32_t head = 0, tail = 0;
        for (uint32_t i = 0; i < n; i++) {
            live[i] = (p->defs[i] & DEF_LIVE) != 0;
            if (live[i]) {
                queue[tail++] = (int32_t)i;
            }
        }
        while (head < tail) {
            int32_t d = queue[head++];
            for (uint32_t k = start[d]; k < start[d + 1]; k++) {
                if (!live[to[k]]) {
                    live[to[k]] = 1;
                    queue[tail++] = to[k];
                }
            }
        }
    }
    sg_free(start);
    sg_free(to);
    sg_free(queue);
    return ok;
}

bool jqc__live_defs(ps_t *p, uint8_t **live)
{
    bool any_err = false;
    *live = NULL;
    for (uint32_t i = 0; i < p->ndefs && !any_err; i++) {
        any_err = (p->defs[i] & DEF_ERR) != 0;
    }
    if (!any_err) {
        return false;
    }
    *live = sg_malloc(p->ndefs);
    if (*live == NULL || !propagate(p, *live)) {
        jqc__syntax(p, 0, SG_JQ_ERR_LIMIT, NULL, "out of memory");
        return false;
    }
    for (uint32_t i = 0; i < p->ndefs; i++) {
        if ((*live)[i] && (p->defs[i] & DEF_ERR)) {
            return true;
        }
    }
    return false;
}

void jqc__pop(ps_t *p, uint32_t mark)
{
    p->nbinds = mark;
}

void jqc__reveal(ps_t *p, uint32_t mark)
{
    for (uint32_t i = mark; i < p->nbinds; i++) {
        if (p->binds[i].kind == B_HIDDEN) {
            p->binds[i].kind = B_VAR;
        }
    }
}

static const bind_t *find(const ps_t *p, const char *name, uint32_t len, uint8_t kind, int arity,
                          uint32_t floor)
{
    for (uint32_t i = p->nbinds; i-- > floor;) {
        const bind_t *b = &p->binds[i];
        if (b->kind == kind && b->len == len && (arity < 0 || b->arity == arity) &&
            memcmp(b->name, name, len) == 0) {
            return b;
        }
    }
    return NULL;
}

/* "no arguments", "1 argument", "1 or 2 arguments", "1, 2 or 3 arguments". */
static void arity_words(unsigned bits, char *out, size_t cap)
{
    size_t n = 0;
    unsigned count = 0, seen = 0, last = 0;
    for (unsigned a = 0; a < 16; a++) {
        count += (bits >> a) & 1u;
        last = (bits >> a) & 1u ? a : last;
    }
    if (bits == 1u) {
        snprintf(out, cap, "no arguments");
        return;
    }
    for (unsigned a = 0; a < 16 && n < cap; a++) {
        if (!((bits >> a) & 1u)) {
            continue;
        }
        const char *sep = seen == 0 ? "" : (seen + 1 == count ? " or " : ", ");
        n += (size_t)snprintf(out + n, cap - n, "%s%u", sep, a);
        seen++;
    }
    if (n < cap) {
        snprintf(out + n, cap - n, last == 1 && count == 1 ? " argument" : " arguments");
    }
}

static void func_hint(const ps_t *p, const char *name, uint32_t len, char *hint, size_t cap)
{
    unsigned bits = jqc__builtin_arities(name, len);
    for (uint32_t i = 0; i < p->nbinds; i++) {
        const bind_t *b = &p->binds[i];
        if (b->kind == B_FUNC && b->len == len && b->arity < 16 &&
            memcmp(b->name, name, len) == 0) {
            bits |= 1u << b->arity;
        }
    }
    char words[64];
    if (bits != 0) {
        arity_words(bits, words, sizeof(words));
        snprintf(hint, cap, "'%.*s' takes %s", (int)(len > 40 ? 40 : len), name, words);
        return;
    }
    char word[64];
    snprintf(word, sizeof(word), "%.*s", (int)(len > 63 ? 63 : len), name);
    const char *best = jqc__builtin_closest(word);
    /* a user function in scope can be a better guess than any builtin */
    for (uint32_t i = p->nbinds; i-- > 0;) {
        const bind_t *b = &p->binds[i];
        char cand[64];
        if (b->kind != B_FUNC || b->len > 63) {
            continue;
        }
        snprintf(cand, sizeof(cand), "%.*s", (int)b->len, b->name);
        size_t d = sg_edit_distance(word, cand, 2);
        if (d <= 2 && (best == NULL || d < sg_edit_distance(word, best, 2))) {
            snprintf(hint, cap, "did you mean '%s'?", cand);
            return;
        }
    }
    if (best != NULL) {
        snprintf(hint, cap, "did you mean '%s'?", best);
    }
}

void jqc__use_func(ps_t *p, const tok_t *t, unsigned arity)
{
    const char *name = p->src + t->off;
    const bind_t *b = arity < 0xffff ? find(p, name, t->len, B_FUNC, (int)arity, 0) : NULL;
    if (b != NULL) {
        if (b->def >= 0) {
            note_call(p, b->def);
        }
        return;
    }
    if (jqc__builtin_exists(name, t->len, arity)) {
        return;
    }
    char hint[160] = "";
    func_hint(p, name, t->len, hint, sizeof(hint));
    jqc__semantic(p, t->off, SG_JQ_ERR_NAME, hint, "function %.*s/%u is not defined",
                  (int)(t->len > 64 ? 64 : t->len), name, arity);
}

static void var_hint(const ps_t *p, const char *name, uint32_t len, char *hint, size_t cap)
{
    if (find(p, name, len, B_FUNC, 0, 0) != NULL) {
        snprintf(hint, cap, "'%.*s' is a filter parameter; declare it as $%.*s to use $%.*s",
                 (int)(len > 30 ? 30 : len), name, (int)(len > 30 ? 30 : len), name,
                 (int)(len > 30 ? 30 : len), name);
        return;
    }
    char word[64];
    snprintf(word, sizeof(word), "%.*s", (int)(len > 63 ? 63 : len), name);
    size_t best_d = 3;
    for (uint32_t i = p->nbinds; i-- > 0;) {
        const bind_t *b = &p->binds[i];
        char cand[64];
        if (b->kind != B_VAR || b->len > 63) {
            continue;
        }
        snprintf(cand, sizeof(cand), "%.*s", (int)b->len, b->name);
        size_t d = sg_edit_distance(word, cand, 2);
        if (d < best_d) {
            best_d = d;
            snprintf(hint, cap, "did you mean '$%s'?", cand);
        }
    }
}

void jqc__use_var(ps_t *p, const tok_t *t, uint32_t at)
{
    const char *name = p->src + t->off;
    if (find(p, name, t->len, B_VAR, -1, 0) != NULL ||
        (t->len == 3 && memcmp(name, "ENV", 3) == 0)) {
        return;
    }
    if (p->pat_depth > 0) {
        if (p->npends == p->cappends &&
            !grow(p, (void **)&p->pends, p->inline_pends, &p->cappends, sizeof(pend_t))) {
            return;
        }
        p->pends[p->npends++] = (pend_t){.name = t->off, .len = t->len, .at = at};
        return;
    }
    char hint[160] = "";
    var_hint(p, name, t->len, hint, sizeof(hint));
    jqc__semantic(p, at, SG_JQ_ERR_NAME, hint, "$%.*s is not defined",
                  (int)(t->len > 64 ? 64 : t->len), name);
}

void jqc__use_label(ps_t *p, const tok_t *t, uint32_t at)
{
    const char *name = p->src + t->off;
    if (find(p, name, t->len, B_LABEL, -1, 0) == NULL) {
        int n = (int)(t->len > 64 ? 64 : t->len);
        jqc__semantic(p, at, SG_JQ_ERR_NAME,
                      "break can only leave an enclosing 'label $name | ...'",
                      "label $%.*s is not defined", n, name);
    }
}

/*
 * jq 1.6 binds every variable of a `?//` pattern before trying the alternatives, so key
 * expressions in any alternative may use them; without `?//` a key expression sees only
 * what was bound before the pattern. Uses not settled here go to an enclosing pattern.
 */
void jqc__settle_pattern(ps_t *p, uint32_t bind_mark, uint32_t pend_mark, unsigned nalts)
{
    uint32_t keep = pend_mark;
    for (uint32_t i = pend_mark; i < p->npends; i++) {
        pend_t u = p->pends[i];
        const char *name = p->src + u.name;
        if (nalts > 1 && find(p, name, u.len, B_HIDDEN, -1, bind_mark) != NULL) {
            continue;
        }
        if (p->pat_depth > 1) {
            p->pends[keep++] = u;
            continue;
        }
        jqc__semantic(p, u.at, SG_JQ_ERR_NAME,
                      "a key expression cannot use variables bound by its own pattern",
                      "$%.*s is not defined", (int)(u.len > 64 ? 64 : u.len), name);
    }
    p->npends = keep;
}

/* ---- paths ---- */

void jqc__path_begin(ps_t *p, uint32_t off)
{
    if (p->path_fn == NULL) {
        return;
    }
    p->path_on = true;
    p->path_off = off;
    p->nfields = 0;
    p->scratch_used = 0;
    p->heap_used = 0;
}

void jqc__path_add_raw(ps_t *p, uint32_t off, uint32_t len)
{
    if (!p->path_on) {
        return;
    }
    p->fields[p->nfields++] = (sg_jq_field_t){.ptr = p->src + off, .len = len};
    if (p->nfields == JQC_MAX_FIELDS) {
        jqc__path_end(p);
    }
}

/* Room for `need` decoded bytes: the inline scratch, else one heap block of len bytes,
 * which is enough since decoding never grows text. */
static char *scratch(ps_t *p, uint32_t need)
{
    if (p->scratch_used + need <= JQC_SCRATCH) {
        p->scratch_used += need;
        return p->scratch + p->scratch_used - need;
    }
    if (p->heap == NULL) {
        p->heap = sg_malloc(p->len);
        if (p->heap == NULL) {
            jqc__syntax(p, p->path_off, SG_JQ_ERR_LIMIT, NULL, "out of memory");
            return NULL;
        }
    }
    p->heap_used += need;
    return p->heap + p->heap_used - need;
}

void jqc__path_add_str(ps_t *p, const tok_t *t)
{
    if (!p->path_on) {
        return;
    }
    uint32_t from = t->off + 1, to = t->off + t->len - 1;
    if (!(t->flags & TOK_ESCAPED)) {
        jqc__path_add_raw(p, from, to - from);
        return;
    }
    char *out = scratch(p, to - from);
    if (out == NULL) {
        p->path_on = false;
        return;
    }
    size_t n = jqc__unescape(p->src, from, to, out);
    p->fields[p->nfields++] = (sg_jq_field_t){.ptr = out, .len = n};
    if (p->nfields == JQC_MAX_FIELDS) {
        jqc__path_end(p);
    }
}

void jqc__path_end(ps_t *p)
{
    if (p->path_on && p->nfields > 0 && !p->stop) {
        p->path_fn(p->ctx, p->fields, p->nfields, p->path_off);
    }
    p->path_on = false;
}
