/*
 * base: error texts, diagnostics lists, the allocator with its failure injector,
 * string buffers and small helpers shared by every module.
 *
 * Nothing here may log or exit except sg__assert_fail; callers decide what to report.
 */
#include "orchestrator/base/base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

static const char *const err_texts[] = {
#define SG_ERR_TEXT(name, text) text,
    SG_ERR_LIST(SG_ERR_TEXT)
#undef SG_ERR_TEXT
};

const char *sg_strerror(sg_err_t code)
{
    if ((unsigned)code >= SG_ERR__COUNT) {
        return "unknown error";
    }
    return err_texts[code];
}

_Noreturn void sg__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
    abort();
}

/* ---- allocation ---- */

/* Test-only failure injector: counts allocations and fails the chosen one. Per thread,
 * so a test that arms it sees only its own allocations and threads never race on it. */
static _Thread_local size_t alloc_count;
static _Thread_local size_t alloc_fail_nth;

size_t sg_alloc_fail_at(size_t nth)
{
    size_t seen = alloc_count;
    alloc_count = 0;
    alloc_fail_nth = nth;
    return seen;
}

static bool alloc_should_fail(void)
{
    alloc_count++;
    return alloc_fail_nth != 0 && alloc_count == alloc_fail_nth;
}

void *sg_malloc(size_t n)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    return malloc(n ? n : 1);
}

void *sg_calloc(size_t count, size_t n)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    return calloc(count ? count : 1, n ? n : 1);
}

void *sg_realloc(void *p, size_t n)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    return realloc(p, n ? n : 1);
}

void sg_free(void *p)
{
    free(p);
}

char *sg_strndup(const char *s, size_t n)
{
    char *d = sg_malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *sg_strdup(const char *s)
{
    return s ? sg_strndup(s, strlen(s)) : NULL;
}

static char *vasprintf_sg(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static char *vasprintf_sg(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return NULL;
    }
    char *s = sg_malloc((size_t)n + 1);
    if (s != NULL) {
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    }
    return s;
}

char *sg_vasprintf(const char *fmt, va_list ap)
{
    return vasprintf_sg(fmt, ap);
}

char *sg_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vasprintf_sg(fmt, ap);
    va_end(ap);
    return s;
}

/* ---- diagnostics ---- */

void sg_diags_init(sg_diags_t *d, size_t cap)
{
    memset(d, 0, sizeof(*d));
    d->cap = cap ? cap : SG_DIAGS_DEFAULT_CAP;
}

void sg_diags_fini(sg_diags_t *d)
{
    for (size_t i = 0; i < d->count; i++) {
        sg_free(d->items[i].message);
        sg_free(d->items[i].hint);
    }
    sg_free(d->items);
    memset(d, 0, sizeof(*d));
}

sg_err_t sg_diags_addv(sg_diags_t *d, sg_err_t code, sg_pos_t pos, const char *hint,
                       const char *fmt, va_list ap)
{
    if (d->count >= d->cap) {
        d->dropped++;
        return SG_OK;
    }
    if (d->items == NULL) {
        d->items = sg_calloc(d->cap, sizeof(*d->items));
        if (d->items == NULL) {
            return SG_ERR_NOMEM;
        }
    }
    sg_diag_t *it = &d->items[d->count];
    it->code = code;
    it->pos = pos;
    it->message = vasprintf_sg(fmt, ap);
    it->hint = hint ? sg_strdup(hint) : NULL;
    if (it->message == NULL || (hint != NULL && it->hint == NULL)) {
        sg_free(it->message);
        sg_free(it->hint);
        it->message = it->hint = NULL;
        return SG_ERR_NOMEM;
    }
    d->count++;
    return SG_OK;
}

sg_err_t sg_diags_add(sg_diags_t *d, sg_err_t code, sg_pos_t pos, const char *hint, const char *fmt,
                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    sg_err_t rc = sg_diags_addv(d, code, pos, hint, fmt, ap);
    va_end(ap);
    return rc;
}

static int pos_cmp(sg_pos_t a, sg_pos_t b)
{
    if (a.line != b.line) {
        return a.line < b.line ? -1 : 1;
    }
    if (a.col != b.col) {
        return a.col < b.col ? -1 : 1;
    }
    return 0;
}

void sg_diags_sort(sg_diags_t *d)
{
    /* Insertion sort: lists are capped small, and it is stable. */
    for (size_t i = 1; i < d->count; i++) {
        sg_diag_t cur = d->items[i];
        size_t j = i;
        while (j > 0 && pos_cmp(d->items[j - 1].pos, cur.pos) > 0) {
            d->items[j] = d->items[j - 1];
            j--;
        }
        d->items[j] = cur;
    }
}

/* ---- buffer ---- */

void sg_buf_init(sg_buf_t *b)
{
    memset(b, 0, sizeof(*b));
}

void sg_buf_fini(sg_buf_t *b)
{
    sg_free(b->data);
    memset(b, 0, sizeof(*b));
}

static bool buf_reserve(sg_buf_t *b, size_t extra)
{
    if (b->oom) {
        return false;
    }
    if (b->len + extra + 1 <= b->cap) {
        return true;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        cap *= 2;
    }
    char *p = sg_realloc(b->data, cap);
    if (p == NULL) {
        b->oom = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void sg_buf_append(sg_buf_t *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n)) {
        return;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sg_buf_puts(sg_buf_t *b, const char *s)
{
    sg_buf_append(b, s, strlen(s));
}

void sg_buf_printf(sg_buf_t *b, const char *fmt, ...)
{
    if (b->oom) {
        return;
    }
    /* Format straight into the spare room; only when it does not fit, grow and redo. */
    if (b->cap - b->len < 64 && !buf_reserve(b, 64)) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->data[b->len] = '\0';
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        if (!buf_reserve(b, (size_t)n)) {
            b->data[b->len] = '\0';
            return;
        }
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void sg_buf_put_escaped(sg_buf_t *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            sg_buf_puts(b, "\\\"");
            break;
        case '\\':
            sg_buf_puts(b, "\\\\");
            break;
        case '\n':
            sg_buf_puts(b, "\\n");
            break;
        case '\t':
            sg_buf_puts(b, "\\t");
            break;
        default:
            if (*p < 0x20) {
                sg_buf_printf(b, "\\u%04x", *p);
            } else {
                sg_buf_append(b, (const char *)p, 1);
            }
        }
    }
}

char *sg_buf_take(sg_buf_t *b)
{
    if (b->oom) {
        sg_buf_fini(b);
        return NULL;
    }
    char *s = b->data ? b->data : sg_strdup("");
    memset(b, 0, sizeof(*b));
    return s;
}

bool sg_grow(void **items, size_t *cap, size_t count, size_t elem)
{
    if (count < *cap) {
        return true;
    }
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = sg_realloc(*items, ncap * elem);
    if (p == NULL) {
        return false;
    }
    *items = p;
    *cap = ncap;
    return true;
}

/* ---- arena ---- */

struct sg_arena_chunk {
    sg_arena_chunk_t *next;
    size_t used, cap;
    max_align_t data[];
};

void *sg_arena_alloc(sg_arena_t *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    sg_arena_chunk_t *c = a->chunks;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        c = sg_malloc(sizeof(*c) + cap);
        if (c == NULL) {
            return NULL;
        }
        c->next = a->chunks;
        c->used = 0;
        c->cap = cap;
        a->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

void *sg_arena_calloc(sg_arena_t *a, size_t n)
{
    void *p = sg_arena_alloc(a, n);
    if (p != NULL) {
        memset(p, 0, n);
    }
    return p;
}

char *sg_arena_strndup(sg_arena_t *a, const char *s, size_t n)
{
    char *d = sg_arena_alloc(a, n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

void sg_arena_fini(sg_arena_t *a)
{
    sg_arena_chunk_t *c = a->chunks;
    while (c != NULL) {
        sg_arena_chunk_t *next = c->next;
        sg_free(c);
        c = next;
    }
    a->chunks = NULL;
}

/* ---- helpers ---- */

size_t sg_edit_distance(const char *a, const char *b, size_t max)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) {
        return max + 1;
    }
    if ((la > lb ? la - lb : lb - la) > max) {
        return max + 1;
    }
    size_t row[65];
    for (size_t j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        size_t best = row[0];
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t v = diag + cost;
            if (row[j] + 1 < v) {
                v = row[j] + 1;
            }
            if (row[j - 1] + 1 < v) {
                v = row[j - 1] + 1;
            }
            row[j] = v;
            diag = up;
            if (v < best) {
                best = v;
            }
        }
        if (best > max) {
            return max + 1;
        }
    }
    return row[lb];
}

const char *sg_closest(const char *word, const char *const *candidates, size_t n)
{
    size_t len = strlen(word);
    size_t max = len <= 3 ? 1 : (len <= 6 ? 2 : 3);
    const char *best = NULL;
    size_t best_d = max + 1;
    for (size_t i = 0; i < n; i++) {
        size_t d = sg_edit_distance(word, candidates[i], max);
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best;
}

static const struct {
    const char *unit;
    uint64_t ms;
} duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
};

bool sg_duration_parse(const char *s, uint64_t *out_ms)
{
    uint64_t total = 0;
    size_t last_unit = SIZE_MAX; /* units must go from large to small: "1h30m" */
    if (s == NULL || *s == '\0') {
        return false;
    }
    while (*s) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        uint64_t v = 0;
        while (*s >= '0' && *s <= '9') {
            if (v > (UINT64_MAX - 9) / 10) {
                return false;
            }
            v = v * 10 + (uint64_t)(*s++ - '0');
        }
        size_t u = SIZE_MAX;
        for (size_t i = 0; i < SG_ARRAY_LEN(duration_units); i++) {
            size_t ul = strlen(duration_units[i].unit);
            if (strncmp(s, duration_units[i].unit, ul) == 0 &&
                (u == SIZE_MAX || ul > strlen(duration_units[u].unit))) {
                u = i;
            }
        }
        if (u == SIZE_MAX ||
            (last_unit != SIZE_MAX && duration_units[u].ms >= duration_units[last_unit].ms)) {
            return false;
        }
        if (v > UINT64_MAX / duration_units[u].ms ||
            total > UINT64_MAX - v * duration_units[u].ms) {
            return false;
        }
        total += v * duration_units[u].ms;
        s += strlen(duration_units[u].unit);
        last_unit = u;
    }
    *out_ms = total;
    return true;
}

void sg_duration_format(uint64_t ms, char *out, size_t outlen)
{
    static const uint64_t mult[] = {86400000, 3600000, 60000, 1000, 1};
    static const char *const unit[] = {"d", "h", "m", "s", "ms"};
    size_t used = 0;
    out[0] = '\0';
    if (ms == 0) {
        snprintf(out, outlen, "0s");
        return;
    }
    for (size_t i = 0; i < SG_ARRAY_LEN(mult) && used < outlen; i++) {
        if (ms >= mult[i]) {
            int n = snprintf(out + used, outlen - used, "%llu%s",
                             (unsigned long long)(ms / mult[i]), unit[i]);
            if (n < 0) {
                return;
            }
            used += (size_t)n;
            ms %= mult[i];
        }
    }
}

sg_err_t sg_file_read(const char *path, size_t max_bytes, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return errno == ENOENT ? SG_ERR_NOT_FOUND : SG_ERR_IO;
    }
    sg_buf_t b;
    sg_buf_init(&b);
    char chunk[16384];
    size_t n;
    sg_err_t rc = SG_OK;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > max_bytes) {
            rc = SG_ERR_LIMIT;
            break;
        }
        sg_buf_append(&b, chunk, n);
    }
    if (rc == SG_OK && ferror(f)) {
        rc = SG_ERR_IO;
    }
    fclose(f);
    if (rc == SG_OK && b.oom) {
        rc = SG_ERR_NOMEM;
    }
    if (rc != SG_OK) {
        sg_buf_fini(&b);
        return rc;
    }
    *out_len = b.len;
    *out = sg_buf_take(&b);
    return *out ? SG_OK : SG_ERR_NOMEM;
}
