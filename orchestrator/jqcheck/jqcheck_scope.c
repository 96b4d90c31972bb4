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

void jqc__semantic(ps_t *p, uint32_t at, sg_jq_err_kind_t kind, const char *hint,
                   const char *fmt, ...)
{
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
    static const char escapes[] = "valid escapes: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX \\(...)";
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

bool jqc__unexpected(ps_t *p, const char *hint)
{
    const tok_t *t = &p->tok;
    char text[160];
    switch (t->kind) {
    case T_BAD:
        return lexical_error(p, t);
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

bool jqc__finish(ps_t *p, sg_jq_error_t *err)
{
    if (p->binds != p->inline_binds) {
        sg_free(p->binds);
    }
    if (p->pends != p->inline_pends) {
        sg_free(p->pends);
    }
    sg_free(p->heap);
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
    p->binds[p->nbinds++] = (bind_t){.name = name, .len = len, .arity = arity, .kind = kind};
    return true;
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

static const bind_t *find(const ps_t *p, const char *name, uint32_t len, uint8_t kind,
                          int arity, uint32_t floor)
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
    if ((arity < 0xffff && find(p, name, t->len, B_FUNC, (int)arity, 0) != NULL) ||
        jqc__builtin_exists(name, t->len, arity)) {
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
        jqc__semantic(p, at, SG_JQ_ERR_NAME, "break can only leave an enclosing 'label $name | ...'",
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
