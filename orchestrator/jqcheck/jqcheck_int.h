/*
 * jqcheck internals shared by its files: the jq 1.6 token set and lexer (jqcheck_lex.c),
 * the builtin tables (jqcheck_builtins.c), the parser state with its scopes, errors and
 * paths (jqcheck_scope.c), and the grammar (jqcheck.c for expressions, jqcheck_term.c for
 * terms).
 *
 * Nothing outside orchestrator/jqcheck may include this header.
 */
#ifndef SG_JQCHECK_INT_H
#define SG_JQCHECK_INT_H

#include "orchestrator/jqcheck/jqcheck.h"

/* Token kinds, following jq 1.6's src/lexer.l. */
typedef enum {
    T_EOF,
    T_BAD, /* a lexical error; tok.bad says which */
    T_IDENT,
    T_FIELD,    /* .name */
    T_NUMBER,   /* valid numeric literal */
    T_FORMAT,   /* @name */
    T_STR,      /* a whole string literal without interpolation */
    T_STR_OPEN, /* '"' text up to and including the first '\(' */
    T_STR_MID,  /* after an interpolation's ')': text up to the next '\(' */
    T_STR_END,  /* after an interpolation's ')': text up to the closing '"' */
    T_DOLLAR,   /* '$'; jq 1.6 allows blanks between '$' and the name */
    T_REC,      /* .. */
    T_DOT,      /* . */
    T_QMARK,    /* ? */
    T_ALT,      /* ?// */
    /* keywords */
    T_AS,
    T_DEF,
    T_MODULE,
    T_IMPORT,
    T_INCLUDE,
    T_IF,
    T_THEN,
    T_ELIF,
    T_ELSE,
    T_END,
    T_REDUCE,
    T_FOREACH,
    T_AND,
    T_OR,
    T_TRY,
    T_CATCH,
    T_LABEL,
    T_BREAK,
    T_LOC, /* __loc__ */
    /* operators and punctuation */
    T_PIPE,
    T_COMMA,
    T_DEFOR, /* // */
    T_ASSIGN,
    T_SETPIPE,
    T_SETPLUS,
    T_SETMINUS,
    T_SETMULT,
    T_SETDIV,
    T_SETMOD,
    T_SETDEFOR,
    T_EQ,
    T_NEQ,
    T_LT,
    T_GT,
    T_LE,
    T_GE,
    T_PLUS,
    T_MINUS,
    T_STAR,
    T_SLASH,
    T_PERCENT,
    T_SEMI,
    T_COLON,
    T_LPAREN,
    T_RPAREN,
    T_LBRACKET,
    T_RBRACKET,
    T_LBRACE,
    T_RBRACE,
    T__COUNT
} tk_t;

/* Lexical errors carried by T_BAD tokens. */
typedef enum {
    BAD_NONE,
    BAD_CHAR,       /* a byte jq's lexer has no rule for */
    BAD_CR,         /* '\r': not whitespace for jq 1.6 */
    BAD_NUL,        /* a NUL byte */
    BAD_NUMBER,     /* e.g. 1.2.3 or ...: jq's lexer takes it whole, then fails to parse */
    BAD_STRING_EOF, /* no closing '"' */
    BAD_ESCAPE,     /* \q */
    BAD_UESCAPE,    /* \u without four hex digits */
    BAD_SURROGATE,  /* \uD800-\uDBFF not followed by \uDC00-\uDFFF */
} bad_t;

#define TOK_ESCAPED 1u /* T_STR*: the text contains backslash escapes */

typedef struct {
    uint8_t kind;   /* tk_t */
    uint8_t bad;    /* bad_t, for T_BAD */
    uint8_t flags;  /* TOK_* */
    uint32_t off;   /* first byte */
    uint32_t len;   /* bytes */
    uint32_t where; /* T_BAD: offset of the offending byte or escape */
} tok_t;

typedef struct {
    const char *src;
    uint32_t len;
    uint32_t pos;
} lexer_t;

/* Next token at lx->pos in code context. */
tok_t jqc__lex(lexer_t *lx);
/* Continues a string after the ')' of an interpolation; lx->pos is just past the ')'.
 * quote is the offset of the string's opening '"', for the error position. */
tok_t jqc__lex_string_rest(lexer_t *lx, uint32_t quote);
/* Decodes the escapes of a T_STR body src[from..to) into out (which must hold to - from
 * bytes: decoding never grows text); returns the decoded length. */
size_t jqc__unescape(const char *src, uint32_t from, uint32_t to, char *out);
/* Human name of a token kind for "unexpected ..." messages, e.g. "')'". */
const char *jqc__tok_name(tk_t kind);

/* Whether name/arity is a jq 1.6 builtin (listed or hidden). */
bool jqc__builtin_exists(const char *name, size_t len, unsigned arity);
/* Bit i set if a builtin `name` with arity i exists (i < 16). */
unsigned jqc__builtin_arities(const char *name, size_t len);
/* Closest builtin name for a hint, or NULL. */
const char *jqc__builtin_closest(const char *word);
/* Whether @name is one of jq 1.6's formats. */
bool jqc__format_valid(const char *name, size_t len);
/* Closest format name for a hint, or NULL. */
const char *jqc__format_closest(const char *word);

/* ---- parser state, shared by jqcheck.c (grammar) and jqcheck_scope.c ---- */

/* What jq 1.6's parser would fold an expression into; only used to find what jq refuses
 * at compile time: constant non-string object keys and constant divisions that overflow. */
typedef enum {
    CK_NONE,    /* computed at run time */
    CK_NOOP,    /* the identity `.`: compiles to no instruction at all */
    CK_UNKNOWN, /* not sure: never leads to an error */
    CK_CLIST,   /* constants joined by ',': a constant only inside [...] */
    CK_NUM,
    CK_STR,
    CK_NULL,
    CK_BOOL,
    CK_ARR,
    CK_OBJ,
} ck_kind_t;

typedef struct {
    uint8_t kind; /* ck_kind_t */
    double num;   /* CK_NUM: the value; NaN also when it could not be read exactly */
} ck_t;

static inline ck_t ck(ck_kind_t kind)
{
    return (ck_t){.kind = (uint8_t)kind, .num = 0};
}

#define CK_IS_CONST(v) ((v).kind >= CK_NUM)

/* Binding kinds; B_HIDDEN is a pattern variable not yet in scope. */
enum { B_VAR, B_HIDDEN, B_FUNC, B_LABEL };

typedef struct {
    const char *name;
    uint32_t len;
    int32_t def; /* B_FUNC from a `def`: its index in ps_t.defs; else -1 */
    uint16_t arity;
    uint8_t kind;
} bind_t;

/* Per `def`, in source order. jq 1.6 drops definitions that nothing live refers to before
 * it resolves names, so name errors in them do not count. */
enum { DEF_ERR = 1, DEF_LIVE = 2 };

typedef struct {
    int32_t from, to; /* the body of def `from` calls def `to` */
} edge_t;

/* A $name used in a destructuring key expression that was not in scope: it may still be
 * bound by another alternative of a `?//` pattern. */
typedef struct {
    uint32_t name; /* offset of the name */
    uint32_t len;
    uint32_t at; /* offset of the '$' */
} pend_t;

#define JQC_INLINE_BINDS 32
#define JQC_INLINE_PENDS 8
#define JQC_INLINE_DEFS 16
#define JQC_MAX_FIELDS 8
#define JQC_SCRATCH 512

typedef struct {
    const char *src;
    uint32_t len;
    unsigned flags;
    lexer_t lx;
    tok_t tok; /* current token */
    int depth;
    int pat_depth; /* patterns being parsed, nested through key expressions */
    bool stop;     /* a syntax or limit error is in `first`: unwind */
    bool has_sem;  /* a name or policy error is in `sem` */
    bind_t *binds;
    uint32_t nbinds, capbinds;
    pend_t *pends;
    uint32_t npends, cappends;
    int32_t cur_def;     /* innermost def whose body is being parsed, or -1 */
    const uint8_t *live; /* second pass: which defs jq keeps (NULL in the first) */
    uint8_t *defs;
    uint32_t ndefs, capdefs;
    edge_t *edges;
    uint32_t nedges, capedges;
    sg_jq_path_fn path_fn;
    void *ctx;
    bool path_on;
    uint32_t path_off;
    uint32_t nfields;
    sg_jq_field_t fields[JQC_MAX_FIELDS];
    uint32_t scratch_used, heap_used;
    char *heap;
    /* from here on nothing needs zeroing at the start of a check */
    sg_jq_error_t first;
    sg_jq_error_t sem;
    bind_t inline_binds[JQC_INLINE_BINDS];
    pend_t inline_pends[JQC_INLINE_PENDS];
    uint8_t inline_defs[JQC_INLINE_DEFS];
    edge_t inline_edges[JQC_INLINE_DEFS];
    char scratch[JQC_SCRATCH];
} ps_t;

/* jqcheck_scope.c: errors. Both return false so callers can `return jqc__syntax(...)`. */
bool jqc__syntax(ps_t *p, uint32_t at, sg_jq_err_kind_t kind, const char *hint, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));
void jqc__semantic(ps_t *p, uint32_t at, sg_jq_err_kind_t kind, const char *hint, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
/* "unexpected <current token>", or the lexical error the current token carries. */
bool jqc__unexpected(ps_t *p, const char *hint);
/* Frees what the check allocated, copies the error to report into *err with line and
 * column, and returns whether the program is valid. */
bool jqc__finish(ps_t *p, sg_jq_error_t *err);
/* Frees what the check allocated (jqc__finish does it too). */
void jqc__release(ps_t *p);
/* After a first pass without syntax errors: whether a def that jq keeps has a name error.
 * Then *live (caller frees with sg_free) says which defs jq keeps, for a second pass that
 * reports errors in those only. */
bool jqc__live_defs(ps_t *p, uint8_t **live);

/* Bindings: a stack, searched from the top. */
bool jqc__push(ps_t *p, const char *name, uint32_t len, uint8_t kind, uint16_t arity);
/* Pushes the function of a `def` (arity 0 until fixed up); returns its def index or -1. */
int32_t jqc__push_def(ps_t *p, const char *name, uint32_t len);
void jqc__pop(ps_t *p, uint32_t mark);
/* Turns the pattern variables pushed since mark into visible variables. */
void jqc__reveal(ps_t *p, uint32_t mark);
/* Resolve a name at token t (the name itself); `at` is where to report. */
void jqc__use_func(ps_t *p, const tok_t *t, unsigned arity);
void jqc__use_var(ps_t *p, const tok_t *t, uint32_t at);
void jqc__use_label(ps_t *p, const tok_t *t, uint32_t at);
/* Ends a pattern (with nalts alternatives) whose bindings start at bind_mark and whose
 * pending uses start at pend_mark: resolves, forwards or reports them. */
void jqc__settle_pattern(ps_t *p, uint32_t bind_mark, uint32_t pend_mark, unsigned nalts);

/* Paths (see sg_jq_path_fn). */
void jqc__path_begin(ps_t *p, uint32_t off);
void jqc__path_add_raw(ps_t *p, uint32_t off, uint32_t len);
/* Adds the body of the T_STR token t, decoding escapes if needed. */
void jqc__path_add_str(ps_t *p, const tok_t *t);
void jqc__path_end(ps_t *p);

/* ---- grammar helpers shared by jqcheck.c (operators, bodies, patterns) and
 * jqcheck_term.c (terms) ---- */

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

static inline void jqc__advance(ps_t *p)
{
    p->tok = jqc__lex(&p->lx);
}

static inline bool jqc__is(const ps_t *p, tk_t kind)
{
    return p->tok.kind == kind;
}

static inline bool jqc__is_keyword(tk_t k)
{
    return k >= T_AS && k <= T_LOC;
}

static inline bool jqc__is_string(const ps_t *p)
{
    return jqc__is(p, T_STR) || jqc__is(p, T_STR_OPEN);
}

static inline const char *jqc__keyword_hint(const ps_t *p)
{
    return jqc__is_keyword((tk_t)p->tok.kind) ? "that is a jq keyword and cannot be a name" : NULL;
}

/* jqcheck_scope.c: consume an expected token, or report. */
bool jqc__expect(ps_t *p, tk_t kind, const char *hint);
/* Expects the closer of the opener at `open`, pointing there if the input ended. */
bool jqc__expect_close(ps_t *p, tk_t kind, uint32_t open, const char *what);
/* Nesting accounting for SG_JQ_MAX_DEPTH; leave returns ok unchanged. */
bool jqc__enter(ps_t *p);
bool jqc__leave(ps_t *p, bool ok);

/* jqcheck.c */
bool jqc__parse_pipe(ps_t *p, ck_t *v, bool top);

/* jqcheck_term.c */
bool jqc__parse_term(ps_t *p, ck_t *v);
/* jq's String: a literal, optionally after a @format. */
bool jqc__parse_string_any(ps_t *p, ck_t *v);
ck_t jqc__fold(ck_t l, tk_t op, ck_t r);
ck_t jqc__join(ck_t l, ck_t r);
void jqc__check_key(ps_t *p, ck_t k, uint32_t at);
/* Binding strength of a binary operator token, or -1. */
int jqc__binary_level(tk_t k);
bool jqc__is_binary_op(tk_t k);

#endif
