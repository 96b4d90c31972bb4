/*
 * jqcheck lexer: splits a jq program into tokens exactly as jq 1.6's flex lexer does,
 * including its quirks (longest match with rule order on ties, `?//` as one token, only
 * space/tab/newline as blanks, numbers as runs of digits and dots), and validates string
 * escapes the way jq's JSON parser does.
 *
 * It must never read outside src[0..len) and never allocate.
 */
#include "orchestrator/jqcheck/jqcheck_int.h"

#include <string.h>

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(unsigned char c)
{
    return is_ident_start(c) || is_digit(c);
}

static int hex_value(unsigned char c)
{
    if (is_digit(c)) {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static tok_t make(uint8_t kind, uint32_t off, uint32_t len)
{
    tok_t t = {.kind = kind, .off = off, .len = len, .where = off};
    return t;
}

static tok_t bad(uint8_t why, uint32_t off, uint32_t len, uint32_t where)
{
    tok_t t = make(T_BAD, off, len);
    t.bad = why;
    t.where = where;
    return t;
}

/* ---- keywords ---- */

static const struct {
    const char *word;
    uint8_t len, kind;
} keywords[] = {
    {"as", 2, T_AS},         {"def", 3, T_DEF},         {"module", 6, T_MODULE},
    {"import", 6, T_IMPORT}, {"include", 7, T_INCLUDE}, {"if", 2, T_IF},
    {"then", 4, T_THEN},     {"elif", 4, T_ELIF},       {"else", 4, T_ELSE},
    {"end", 3, T_END},       {"reduce", 6, T_REDUCE},   {"foreach", 7, T_FOREACH},
    {"and", 3, T_AND},       {"or", 2, T_OR},           {"try", 3, T_TRY},
    {"catch", 5, T_CATCH},   {"label", 5, T_LABEL},     {"break", 5, T_BREAK},
    {"__loc__", 7, T_LOC},
};

static uint8_t keyword_kind(const char *s, uint32_t n)
{
    if (n < 2 || n > 7) {
        return T_IDENT;
    }
    for (size_t i = 0; i < SG_ARRAY_LEN(keywords); i++) {
        if (keywords[i].len == n && keywords[i].word[0] == s[0] &&
            memcmp(keywords[i].word, s, n) == 0) {
            return keywords[i].kind;
        }
    }
    return T_IDENT;
}

/* ---- names and numbers ---- */

/* Length of [a-zA-Z_][a-zA-Z_0-9]* at i (0 if none). */
static uint32_t word_len(const lexer_t *lx, uint32_t i)
{
    if (i >= lx->len || !is_ident_start((unsigned char)lx->src[i])) {
        return 0;
    }
    uint32_t j = i + 1;
    while (j < lx->len && is_ident_char((unsigned char)lx->src[j])) {
        j++;
    }
    return j - i;
}

/* jq's IDENT: ([a-zA-Z_][a-zA-Z_0-9]*::)*[a-zA-Z_][a-zA-Z_0-9]*, longest match. */
static uint32_t ident_len(const lexer_t *lx, uint32_t i)
{
    uint32_t j = i + word_len(lx, i);
    while (j + 2 < lx->len && lx->src[j] == ':' && lx->src[j + 1] == ':') {
        uint32_t w = word_len(lx, j + 2);
        if (w == 0) {
            break;
        }
        j += 2 + w;
    }
    return j - i;
}

/*
 * jq 1.6's number rule is [0-9.]+([eE][+-]?[0-9]+)?, and the matched text is then parsed
 * with strtod, so "1.2.3" or "..." are one token that fails. Returns the match length
 * from i and sets *valid when strtod would take all of it (one dot at most, a digit).
 */
static uint32_t number_len(const lexer_t *lx, uint32_t i, bool *valid)
{
    uint32_t j = i, dots = 0, digits = 0;
    while (j < lx->len && (is_digit((unsigned char)lx->src[j]) || lx->src[j] == '.')) {
        dots += lx->src[j] == '.';
        digits += lx->src[j] != '.';
        j++;
    }
    if (j < lx->len && (lx->src[j] == 'e' || lx->src[j] == 'E')) {
        uint32_t k = j + 1;
        if (k < lx->len && (lx->src[k] == '+' || lx->src[k] == '-')) {
            k++;
        }
        if (k < lx->len && is_digit((unsigned char)lx->src[k])) {
            while (k < lx->len && is_digit((unsigned char)lx->src[k])) {
                k++;
            }
            j = k;
        }
    }
    *valid = dots <= 1 && digits >= 1;
    return j - i;
}

static tok_t number_token(uint32_t i, uint32_t n, bool valid)
{
    return valid ? make(T_NUMBER, i, n) : bad(BAD_NUMBER, i, n, i);
}

/*
 * At a '.': flex takes the longest of "..", ".", the number rule and .name; on equal
 * lengths the earlier rule wins, and jq 1.6 lists them in that order. So ".." is
 * recursion, "..." an invalid number, ".e5" an invalid number but ".e5x" a field.
 */
static tok_t lex_dot(const lexer_t *lx, uint32_t i)
{
    bool valid;
    uint32_t num = number_len(lx, i, &valid);
    uint32_t field = word_len(lx, i + 1);
    field = field ? field + 1 : 0;
    uint32_t rec = (i + 1 < lx->len && lx->src[i + 1] == '.') ? 2 : 1;
    if (num > rec && num >= field) {
        return number_token(i, num, valid);
    }
    if (field > rec) {
        return make(T_FIELD, i, field);
    }
    return make(rec == 2 ? T_REC : T_DOT, i, rec);
}

/* ---- strings ---- */

/* Checks the \u escape at i (src[i] == '\\', src[i+1] == 'u'); returns its length or 0. */
static uint32_t check_uescape(const lexer_t *lx, uint32_t i, uint8_t *why)
{
    unsigned cp = 0;
    for (uint32_t k = 0; k < 4; k++) {
        int h = i + 2 + k < lx->len ? hex_value((unsigned char)lx->src[i + 2 + k]) : -1;
        if (h < 0) {
            *why = BAD_UESCAPE;
            return 0;
        }
        cp = cp * 16 + (unsigned)h;
    }
    if (cp < 0xD800 || cp > 0xDBFF) {
        return 6; /* a lone low surrogate passes in jq 1.6 */
    }
    /* jq's JSON parser wants the low half right after, inside the same escape run */
    unsigned lo = 0;
    if (i + 12 > lx->len || lx->src[i + 6] != '\\' || lx->src[i + 7] != 'u') {
        *why = BAD_SURROGATE;
        return 0;
    }
    for (uint32_t k = 0; k < 4; k++) {
        int h = hex_value((unsigned char)lx->src[i + 8 + k]);
        if (h < 0) {
            *why = BAD_SURROGATE;
            return 0;
        }
        lo = lo * 16 + (unsigned)h;
    }
    if (lo < 0xDC00 || lo > 0xDFFF) {
        *why = BAD_SURROGATE;
        return 0;
    }
    return 12;
}

/* Length of the escape at i, or 0 with *why set. src[i] == '\\' and src[i+1] != '('. */
static uint32_t check_escape(const lexer_t *lx, uint32_t i, uint8_t *why)
{
    if (i + 1 >= lx->len) {
        *why = BAD_STRING_EOF;
        return 0;
    }
    unsigned char c = (unsigned char)lx->src[i + 1];
    if (c == 'u') {
        return check_uescape(lx, i, why);
    }
    if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
        c == 't') {
        return 2;
    }
    *why = c == 0 ? BAD_NUL : BAD_ESCAPE;
    return 0;
}

/*
 * Scans string text from lx->pos to the closing '"' or an interpolation's '\('. first
 * tells whether this is the start of the string (T_STR/T_STR_OPEN) or a continuation
 * after an interpolation (T_STR_END/T_STR_MID). The token spans the scanned text.
 */
static tok_t lex_string_text(lexer_t *lx, uint32_t start, uint32_t quote, bool first)
{
    uint8_t flags = 0;
    uint32_t i = lx->pos;
    while (i < lx->len) {
        unsigned char c = (unsigned char)lx->src[i];
        if (c == '"') {
            lx->pos = i + 1;
            tok_t t = make(first ? T_STR : T_STR_END, start, i + 1 - start);
            t.flags = flags;
            return t;
        }
        if (c == 0) {
            lx->pos = lx->len;
            return bad(BAD_NUL, start, i - start, i);
        }
        if (c != '\\') {
            i++;
            continue;
        }
        if (i + 1 < lx->len && lx->src[i + 1] == '(') {
            lx->pos = i + 2;
            tok_t t = make(first ? T_STR_OPEN : T_STR_MID, start, i + 2 - start);
            t.flags = flags;
            return t;
        }
        uint8_t why = BAD_NONE;
        uint32_t n = check_escape(lx, i, &why);
        if (n == 0) {
            lx->pos = lx->len;
            uint32_t where = why == BAD_STRING_EOF ? quote : (why == BAD_NUL ? i + 1 : i);
            return bad(why, start, i - start, where);
        }
        flags |= TOK_ESCAPED;
        i += n;
    }
    lx->pos = lx->len;
    return bad(BAD_STRING_EOF, start, i - start, quote);
}

tok_t jqc__lex_string_rest(lexer_t *lx, uint32_t quote)
{
    return lex_string_text(lx, lx->pos, quote, false);
}

/* ---- operators ---- */

/* c, or c followed by '=' as the compound token `with_eq`. */
static tok_t maybe_eq(uint32_t i, char next, uint8_t alone, uint8_t with_eq)
{
    return next == '=' ? make(with_eq, i, 2) : make(alone, i, 1);
}

/* Operators and punctuation, longest match first as flex does. */
static tok_t lex_operator(const lexer_t *lx, uint32_t i)
{
    char c1 = i + 1 < lx->len ? lx->src[i + 1] : 0;
    char c2 = i + 2 < lx->len ? lx->src[i + 2] : 0;
    static const char singles[] = ";,:$[{(]})";
    static const uint8_t single_kinds[] = {T_SEMI,   T_COMMA,  T_COLON,    T_DOLLAR, T_LBRACKET,
                                           T_LBRACE, T_LPAREN, T_RBRACKET, T_RBRACE, T_RPAREN};
    unsigned char c = (unsigned char)lx->src[i];
    switch (c) {
    case '?':
        return c1 == '/' && c2 == '/' ? make(T_ALT, i, 3) : make(T_QMARK, i, 1);
    case '/':
        if (c1 == '/') {
            return c2 == '=' ? make(T_SETDEFOR, i, 3) : make(T_DEFOR, i, 2);
        }
        return maybe_eq(i, c1, T_SLASH, T_SETDIV);
    case '!':
        if (c1 == '=') {
            return make(T_NEQ, i, 2);
        }
        break;
    case '=':
        return maybe_eq(i, c1, T_ASSIGN, T_EQ);
    case '|':
        return maybe_eq(i, c1, T_PIPE, T_SETPIPE);
    case '+':
        return maybe_eq(i, c1, T_PLUS, T_SETPLUS);
    case '-':
        return maybe_eq(i, c1, T_MINUS, T_SETMINUS);
    case '*':
        return maybe_eq(i, c1, T_STAR, T_SETMULT);
    case '%':
        return maybe_eq(i, c1, T_PERCENT, T_SETMOD);
    case '<':
        return maybe_eq(i, c1, T_LT, T_LE);
    case '>':
        return maybe_eq(i, c1, T_GT, T_GE);
    default:
        if (c != 0 && strchr(singles, c) != NULL) {
            return make(single_kinds[strchr(singles, c) - singles], i, 1);
        }
        break;
    }
    return bad(c == 0 ? BAD_NUL : (c == '\r' ? BAD_CR : BAD_CHAR), i, 1, i);
}

/* Skips blanks and comments; jq 1.6 knows only ' ', '\t', '\n' and #[^\r\n]*. A comment
 * stops at a NUL too, so that NUL is refused like anywhere else. */
static void skip_blanks(lexer_t *lx)
{
    while (lx->pos < lx->len) {
        char c = lx->src[lx->pos];
        if (c == ' ' || c == '\t' || c == '\n') {
            lx->pos++;
        } else if (c == '#') {
            while (lx->pos < lx->len && lx->src[lx->pos] != '\n' && lx->src[lx->pos] != '\r' &&
                   lx->src[lx->pos] != '\0') {
                lx->pos++;
            }
        } else {
            return;
        }
    }
}

tok_t jqc__lex(lexer_t *lx)
{
    skip_blanks(lx);
    uint32_t i = lx->pos;
    if (i >= lx->len) {
        return make(T_EOF, lx->len, 0);
    }
    unsigned char c = (unsigned char)lx->src[i];
    tok_t t;
    if (c == '"') {
        lx->pos = i + 1;
        return lex_string_text(lx, i, i, true);
    }
    if (c == '.') {
        t = lex_dot(lx, i);
    } else if (is_digit(c)) {
        bool valid;
        uint32_t n = number_len(lx, i, &valid);
        t = number_token(i, n, valid);
    } else if (is_ident_start(c)) {
        uint32_t n = ident_len(lx, i);
        t = make(keyword_kind(lx->src + i, n), i, n);
    } else if (c == '@' && i + 1 < lx->len && is_ident_char((unsigned char)lx->src[i + 1])) {
        uint32_t j = i + 1; /* "@"[a-zA-Z0-9_]+ */
        while (j < lx->len && is_ident_char((unsigned char)lx->src[j])) {
            j++;
        }
        t = make(T_FORMAT, i, j - i);
    } else {
        t = lex_operator(lx, i);
    }
    lx->pos = i + t.len;
    return t;
}

/* ---- decoding, for path fields written as strings ---- */

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static unsigned hex4(const char *s)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        v = v * 16 + (unsigned)hex_value((unsigned char)s[k]);
    }
    return v;
}

/* Decodes one escape at src[i] (already validated by the lexer); returns its length. */
static uint32_t decode_escape(const char *src, uint32_t i, char *out, size_t *o)
{
    static const char from[] = "\"\\/bfnrt";
    static const char to[] = "\"\\/\b\f\n\r\t";
    char c = src[i + 1];
    if (c != 'u') {
        out[(*o)++] = to[strchr(from, c) - from];
        return 2;
    }
    unsigned cp = hex4(src + i + 2);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        unsigned lo = hex4(src + i + 8);
        *o += put_utf8(out + *o, 0x10000 + (((cp - 0xD800) << 10) | (lo - 0xDC00)));
        return 12;
    }
    *o += put_utf8(out + *o, cp);
    return 6;
}

size_t jqc__unescape(const char *src, uint32_t from, uint32_t to, char *out)
{
    size_t o = 0;
    uint32_t i = from;
    while (i < to) {
        if (src[i] == '\\') {
            i += decode_escape(src, i, out, &o);
        } else {
            out[o++] = src[i++];
        }
    }
    return o;
}

/* ---- names for messages ---- */

const char *jqc__tok_name(tk_t kind)
{
    static const char *const names[T__COUNT] = {
        [T_EOF] = "end of expression",
        [T_BAD] = "invalid token",
        [T_IDENT] = "name",
        [T_FIELD] = "field",
        [T_NUMBER] = "number",
        [T_FORMAT] = "format",
        [T_STR] = "string",
        [T_STR_OPEN] = "string",
        [T_STR_MID] = "string",
        [T_STR_END] = "string",
        [T_DOLLAR] = "'$'",
        [T_REC] = "'..'",
        [T_DOT] = "'.'",
        [T_QMARK] = "'?'",
        [T_ALT] = "'?//'",
        [T_AS] = "'as'",
        [T_DEF] = "'def'",
        [T_MODULE] = "'module'",
        [T_IMPORT] = "'import'",
        [T_INCLUDE] = "'include'",
        [T_IF] = "'if'",
        [T_THEN] = "'then'",
        [T_ELIF] = "'elif'",
        [T_ELSE] = "'else'",
        [T_END] = "'end'",
        [T_REDUCE] = "'reduce'",
        [T_FOREACH] = "'foreach'",
        [T_AND] = "'and'",
        [T_OR] = "'or'",
        [T_TRY] = "'try'",
        [T_CATCH] = "'catch'",
        [T_LABEL] = "'label'",
        [T_BREAK] = "'break'",
        [T_LOC] = "'__loc__'",
        [T_PIPE] = "'|'",
        [T_COMMA] = "','",
        [T_DEFOR] = "'//'",
        [T_ASSIGN] = "'='",
        [T_SETPIPE] = "'|='",
        [T_SETPLUS] = "'+='",
        [T_SETMINUS] = "'-='",
        [T_SETMULT] = "'*='",
        [T_SETDIV] = "'/='",
        [T_SETMOD] = "'%='",
        [T_SETDEFOR] = "'//='",
        [T_EQ] = "'=='",
        [T_NEQ] = "'!='",
        [T_LT] = "'<'",
        [T_GT] = "'>'",
        [T_LE] = "'<='",
        [T_GE] = "'>='",
        [T_PLUS] = "'+'",
        [T_MINUS] = "'-'",
        [T_STAR] = "'*'",
        [T_SLASH] = "'/'",
        [T_PERCENT] = "'%'",
        [T_SEMI] = "';'",
        [T_COLON] = "':'",
        [T_LPAREN] = "'('",
        [T_RPAREN] = "')'",
        [T_LBRACKET] = "'['",
        [T_RBRACKET] = "']'",
        [T_LBRACE] = "'{'",
        [T_RBRACE] = "'}'",
    };
    return kind < T__COUNT && names[kind] ? names[kind] : "token";
}
