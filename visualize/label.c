/*
 * visualize label: YAML text and model values as the inside of Graphviz HTML-like labels.
 *
 * Everything the user wrote passes through viz__text(): escaped for XML and for the
 * backslash escapes Graphviz applies after decoding entities, checked as UTF-8, cut to
 * a length. Nothing here may write DOT syntax outside a label.
 */
#include "visualize/visualize_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Decodes one UTF-8 sequence at p into *cp; returns its length, or 0 when invalid
 * (overlong, surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_next(const unsigned char *p, uint32_t *cp)
{
    unsigned char c = p[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2, v = c & 0x1fu, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, v = c & 0x0fu, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) { /* a NUL fails the test, so we stop inside s */
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        v = (v << 6) | (p[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        return 0;
    }
    *cp = v;
    return n;
}

/* One character of YAML text for the inside of an HTML-like label. Graphviz decodes
 * entities first and then still applies its backslash escapes (\N, \G, ...), so a
 * backslash is doubled; XML forbids control characters, they become U+FFFD. */
static void put_char(sg_buf_t *b, uint32_t cp, const unsigned char *raw, size_t n)
{
    switch (cp) {
    case '&':
        sg_buf_puts(b, "&amp;");
        break;
    case '<':
        sg_buf_puts(b, "&lt;");
        break;
    case '>':
        sg_buf_puts(b, "&gt;");
        break;
    case '"':
        sg_buf_puts(b, "&quot;");
        break;
    case '\\':
        sg_buf_puts(b, "\\\\");
        break;
    case '\n':
        sg_buf_puts(b, "<BR/>");
        break;
    case '\t':
        sg_buf_puts(b, " ");
        break;
    case '\r':
        break; /* CRLF text breaks lines once */
    default:
        if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp == 0xfffe || cp == 0xffff) {
            sg_buf_puts(b, "\xef\xbf\xbd");
        } else {
            sg_buf_append(b, (const char *)raw, n);
        }
    }
}

/* Writes s for an HTML-like label: escaped, invalid UTF-8 replaced, cut to max
 * characters with "…" (0 = no cut). VIZ_TXT_ONE_LINE folds every run of white space into
 * one space (jq expressions); otherwise a newline becomes a line break. */
void viz__text(sg_buf_t *b, const char *s, size_t max, int flags)
{
    if (s == NULL) {
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t chars = 0;
    bool space = false;
    while (*p != '\0') {
        uint32_t cp = 0xfffd;
        size_t n = utf8_next(p, &cp);
        const unsigned char *raw = p;
        p += n == 0 ? 1 : n;
        if (n == 0) {
            raw = (const unsigned char *)"\xef\xbf\xbd";
            n = 3;
        }
        if (flags == VIZ_TXT_ONE_LINE && (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r')) {
            space = chars > 0;
            continue;
        }
        if (max != 0 && chars + (space ? 1 : 0) >= max) {
            sg_buf_puts(b, "…");
            return;
        }
        if (space) {
            sg_buf_puts(b, " ");
            chars++;
            space = false;
        }
        put_char(b, cp, raw, n);
        chars++;
    }
}

/* True for [a-z0-9_]+: such ids may appear in DOT names and SVG ids as they are. */
bool viz__plain_ident(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > VIZ_MAX_ID) {
        return false;
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(s);
}

void viz__dur(sg_buf_t *b, uint64_t ms)
{
    char t[64];
    sg_duration_format(ms, t, sizeof t);
    sg_buf_puts(b, t);
}

/* "retry 3x 100ms×2 ≤30s", "retry ∞ 1s", "no retry". */
void viz__retry(sg_buf_t *b, const sg_retry_t *r)
{
    if (r->max_attempts == 1) {
        sg_buf_puts(b, "no retry");
        return;
    }
    if (r->max_attempts == 0) {
        sg_buf_puts(b, "retry ∞ ");
    } else {
        sg_buf_printf(b, "retry %" PRIu32 "x ", r->max_attempts);
    }
    viz__dur(b, r->initial_ms);
    if (r->multiplier != 1.0) {
        sg_buf_printf(b, "×%g", r->multiplier);
    }
    if (r->multiplier > 1.0 && r->max_delay_ms > r->initial_ms) {
        sg_buf_puts(b, " ≤");
        viz__dur(b, r->max_delay_ms);
    }
    if (r->jitter == SG_JITTER_NONE) {
        sg_buf_puts(b, " no jitter");
    } else if (r->jitter == SG_JITTER_EQUAL) {
        sg_buf_puts(b, " equal jitter");
    }
}

/* "a, b, c +2"; "*" reads "any error". */
void viz__codes(sg_buf_t *b, const char *const *codes, size_t n)
{
    for (size_t i = 0; i < n && i < VIZ_MAX_LIST; i++) {
        sg_buf_puts(b, i > 0 ? ", " : "");
        if (strcmp(codes[i], "*") == 0) {
            sg_buf_puts(b, "any error");
        } else {
            viz__text(b, codes[i], VIZ_MAX_ID, VIZ_TXT_ONE_LINE);
        }
    }
    if (n > VIZ_MAX_LIST) {
        sg_buf_printf(b, " +%zu", n - VIZ_MAX_LIST);
    }
}

/* "3/5", "3/∞". */
void viz__attempts(sg_buf_t *b, const sg_viz_step_t *lv)
{
    if (lv->max_attempts == 0) {
        sg_buf_printf(b, "%" PRIu32 "/∞", lv->attempt);
    } else {
        sg_buf_printf(b, "%" PRIu32 "/%" PRIu32, lv->attempt, lv->max_attempts);
    }
}

void viz__small(sg_buf_t *b, const char *color)
{
    sg_buf_printf(b, "<BR/><FONT POINT-SIZE=\"9\" COLOR=\"%s\">", color);
}
