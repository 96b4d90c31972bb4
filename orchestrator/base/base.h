/*
 * base: the few things every sagad module shares: error codes and located error
 * records, the allocator hook that lets tests fail the Nth allocation, a growable
 * string buffer, and small string helpers.
 *
 * It must never depend on any other sagad module, and holds no global state except
 * the allocation-failure injector used by tests.
 */
#ifndef SG_BASE_H
#define SG_BASE_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- error codes: one X-macro list gives the enum and sg_strerror() ---- */
#define SG_ERR_LIST(X)                 \
    X(SG_OK, "ok")                     \
    X(SG_ERR_NOMEM, "out of memory")   \
    X(SG_ERR_IO, "input/output error") \
    X(SG_ERR_INVALID, "invalid input") \
    X(SG_ERR_LIMIT, "limit exceeded")  \
    X(SG_ERR_NOT_FOUND, "not found")   \
    X(SG_ERR_EXISTS, "already exists") \
    X(SG_ERR_STATE, "illegal state")   \
    X(SG_ERR_INTERNAL, "internal error")

typedef enum {
#define SG_ERR_ENUM(name, text) name,
    SG_ERR_LIST(SG_ERR_ENUM)
#undef SG_ERR_ENUM
        SG_ERR__COUNT
} sg_err_t;

/* Human text for an error code; never NULL. Any thread. */
const char *sg_strerror(sg_err_t code);

/* A position in a source file, 1-based; 0 means unknown. */
typedef struct {
    uint32_t line;
    uint32_t col;
} sg_pos_t;

/* One located diagnostic. Strings are owned by the record. */
typedef struct {
    sg_err_t code;
    sg_pos_t pos;
    char *message; /* without the "file:line:col: error: " prefix */
    char *hint;    /* NULL or one line of advice */
} sg_diag_t;

/*
 * A list of diagnostics, capped: after `cap` errors further ones are counted in
 * `dropped` but not stored, so hostile input cannot make the list grow without bound.
 * Caller-allocated; sg_diags_init/sg_diags_fini.
 */
typedef struct {
    sg_diag_t *items;
    size_t count;
    size_t cap;
    size_t dropped;
} sg_diags_t;

#define SG_DIAGS_DEFAULT_CAP 20

void sg_diags_init(sg_diags_t *d, size_t cap);
void sg_diags_fini(sg_diags_t *d);
/* Adds a diagnostic (printf-style message). hint may be NULL. Returns SG_ERR_NOMEM
 * only when allocation failed; a full list is not an error. */
sg_err_t sg_diags_add(sg_diags_t *d, sg_err_t code, sg_pos_t pos, const char *hint, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));
sg_err_t sg_diags_addv(sg_diags_t *d, sg_err_t code, sg_pos_t pos, const char *hint,
                       const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));
/* Sorts by position (stable), so output follows the file top to bottom. */
void sg_diags_sort(sg_diags_t *d);

/* ---- allocation: every module allocates through these ---- */
void *sg_malloc(size_t n);
void *sg_calloc(size_t count, size_t n);
void *sg_realloc(void *p, size_t n);
void sg_free(void *p);
char *sg_strdup(const char *s);
char *sg_strndup(const char *s, size_t n);
char *sg_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *sg_vasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/*
 * Test hook: make the Nth allocation from now fail (1 = the next one), 0 disables.
 * Returns how many allocations happened since the last call, on the calling thread only:
 * other threads are not affected. For tests.
 */
size_t sg_alloc_fail_at(size_t nth);

/* ---- growable byte buffer, always NUL-terminated ---- */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool oom; /* sticky: set once an append failed; the content is then truncated */
} sg_buf_t;

void sg_buf_init(sg_buf_t *b);
void sg_buf_fini(sg_buf_t *b);
void sg_buf_append(sg_buf_t *b, const char *s, size_t n);
void sg_buf_puts(sg_buf_t *b, const char *s);
void sg_buf_printf(sg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as the inside of a double-quoted string, escaping " and \ and control bytes
 * in the C/JSON/DOT common subset (\n, \t, \\, \", \uXXXX). */
void sg_buf_put_escaped(sg_buf_t *b, const char *s);
/* Takes the content (caller frees with sg_free); the buffer is reset. NULL on OOM. */
char *sg_buf_take(sg_buf_t *b);

/* Makes room for one more elem-sized item in the array *items that holds count of its
 * *cap slots (doubling, from 16). False on OOM, with the array unchanged. */
bool sg_grow(void **items, size_t *cap, size_t count, size_t elem);

/* ---- arena: many small allocations freed together ---- */
typedef struct sg_arena_chunk sg_arena_chunk_t;
typedef struct {
    sg_arena_chunk_t *chunks;
} sg_arena_t;

/* A zeroed arena needs no init. Returns max_align_t-aligned memory or NULL on OOM. */
void *sg_arena_alloc(sg_arena_t *a, size_t n);
/* Zero-filled allocation. */
void *sg_arena_calloc(sg_arena_t *a, size_t n);
char *sg_arena_strndup(sg_arena_t *a, const char *s, size_t n);
void sg_arena_fini(sg_arena_t *a);

/* ---- small helpers ---- */
/* Levenshtein distance, capped at `max` + 1 so long strings stay cheap. */
size_t sg_edit_distance(const char *a, const char *b, size_t max);
/* Of candidates[0..n), the closest to word within a distance that makes sense for its
 * length, or NULL. */
const char *sg_closest(const char *word, const char *const *candidates, size_t n);

/*
 * Parses a duration like "250ms", "5s", "10m", "2h", "1d" or "1h30m" into milliseconds.
 * Returns false for anything else (no unit, negative, overflow, unknown unit).
 */
bool sg_duration_parse(const char *s, uint64_t *out_ms);
/* Formats milliseconds back into the shortest exact form ("1h30m", "250ms"). */
void sg_duration_format(uint64_t ms, char *out, size_t outlen);

/* SHA-256 of data as 64 lower-case hex digits and a NUL. */
void sg_sha256_hex(const void *data, size_t len, char out[65]);

/* A new ULID (26 characters of Crockford base32 and a NUL): 48 bits of milliseconds since
 * the epoch, then 80 random bits, so ids sort by creation time. Any thread. */
void sg_ulid_new(uint64_t now_ms, char out[27]);
/* 64 random bits from the kernel (getrandom), for seeds and ids. */
uint64_t sg_random64(void);
/* Wall-clock milliseconds since the epoch. */
uint64_t sg_now_ms(void);
/* A monotonic clock (never jumps), for durations and local deadlines only. */
uint64_t sg_mono_ms(void);
uint64_t sg_mono_us(void);
/* Waits on cv (a default condition variable: CLOCK_REALTIME) until signalled or for at
 * most ms; the caller holds mu. Spurious wake-ups happen: callers loop on their state. */
void sg_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms);

/* Reads a whole file, refusing files over max_bytes (SG_ERR_LIMIT). */
sg_err_t sg_file_read(const char *path, size_t max_bytes, char **out, size_t *out_len);

#define SG_ASSERT(cond)                                 \
    do {                                                \
        if (!(cond)) {                                  \
            sg__assert_fail(#cond, __FILE__, __LINE__); \
        }                                               \
    } while (0)
_Noreturn void sg__assert_fail(const char *expr, const char *file, int line);

#define SG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
