/*
 * visualize internals shared between visualize.c (the graph), label.c (text inside
 * labels), svg.c (running dot) and the unit test. Never included from another folder.
 */
#ifndef SG_VISUALIZE_INT_H
#define SG_VISUALIZE_INT_H

#include "visualize/visualize.h"

/* Text limits in characters: labels stay readable whatever the YAML holds. */
enum { VIZ_MAX_ID = 64, VIZ_MAX_ACTIVITY = 64, VIZ_MAX_DESC = 60, VIZ_MAX_EXPR = 48 };
/* Lists (error codes, events) show this many items, then "+N". */
enum { VIZ_MAX_LIST = 3 };

/* viz__text flags: keep line breaks, or fold all white space into single spaces. */
enum { VIZ_TXT_MULTI_LINE = 0, VIZ_TXT_ONE_LINE = 1 };

/*
 * Appends s (NULL = nothing) for the inside of an HTML-like label: & < > " escaped, a
 * backslash doubled (Graphviz applies \N, \G... even there), control characters and
 * invalid UTF-8 replaced by U+FFFD, cut to max characters with "…" (0 = no cut).
 */
void viz__text(sg_buf_t *b, const char *s, size_t max, int flags);
/* True for [a-z0-9_]{1,64}: such an id may be used in DOT names and SVG ids as it is. */
bool viz__plain_ident(const char *s);
/* "1h30m", "250ms". */
void viz__dur(sg_buf_t *b, uint64_t ms);
/* "retry 3x 100ms×2 ≤30s", "retry ∞ 1s", "no retry", plus " no jitter"/" equal jitter". */
void viz__retry(sg_buf_t *b, const sg_retry_t *r);
/* "a, b, c +2", with "*" as "any error". */
void viz__codes(sg_buf_t *b, const char *const *codes, size_t n);
/* "3/5", "3/∞". */
void viz__attempts(sg_buf_t *b, const sg_viz_step_t *lv);
/* Opens a new small coloured line: "<BR/><FONT POINT-SIZE="9" COLOR="...">". */
void viz__small(sg_buf_t *b, const char *color);

/*
 * The engine of sg_viz_svg, with the program and its limits as parameters so tests can
 * run `cat` (echo without deadlock) or `sleep` (timeout and reaping). argv[0] is looked
 * up in PATH; in[0..len) goes to its stdin; stdout is appended to out (at most max_out
 * bytes); the first error line of stderr goes to errbuf. Same returns as sg_viz_svg,
 * with timeout_ms instead of 10 s.
 */
sg_err_t viz__run(const char *const argv[], const char *in, size_t len, int timeout_ms,
                  size_t max_out, sg_buf_t *out, char *errbuf, size_t errlen);

#endif
