/*
 * Fuzz target for jqcheck: any bytes must be checked without a crash, in bounded time,
 * with a well-formed error; and, differentially, whatever libjq 1.6's jq_compile accepts
 * the checker must accept too (in SG_JQ_COMPAT mode, which mirrors jq where sagad's
 * policy is stricter). Only short, NUL-free, valid UTF-8 inputs are compiled with libjq,
 * since each compile costs ~13 ms. Set JQCHECK_FUZZ_LAX=1 to also print the inputs jq
 * refuses but the checker accepts (allowed, but worth a look).
 */
#include "orchestrator/jqcheck/jqcheck.h"

#include <jq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libjq 1.6 leaks on some of its own compile-error paths. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libjq.so\n";
}

static void swallow(void *data, jv msg)
{
    (void)data;
    jv_free(msg);
}

static void on_path(void *ctx, const sg_jq_field_t *fields, size_t n, uint32_t offset)
{
    size_t size = *(const size_t *)ctx;
    if (n == 0 || n > 8 || offset >= size) {
        __builtin_trap();
    }
    for (size_t i = 0; i < n; i++) {
        if (fields[i].ptr == NULL || fields[i].len > size) {
            __builtin_trap();
        }
    }
}

static void check_error(const sg_jq_error_t *e, size_t size)
{
    if (e->offset > size || e->line < 1 || e->col < 1 || e->message[0] == '\0' ||
        memchr(e->message, '\0', sizeof(e->message)) == NULL ||
        memchr(e->hint, '\0', sizeof(e->hint)) == NULL || e->kind < SG_JQ_ERR_SYNTAX ||
        e->kind > SG_JQ_ERR_LIMIT) {
        __builtin_trap();
    }
}

/* Structurally valid UTF-8: a lead byte, then as many continuation bytes as it says. */
static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c < 0xC2 || c > 0xF4) {
            return false;
        }
        size_t k = c < 0xE0 ? 1 : (c < 0xF0 ? 2 : 3);
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80) {
                return false;
            }
        }
        i += k + 1;
    }
    return true;
}

static bool jq_accepts(const char *src)
{
    jq_state *jq = jq_init();
    if (jq == NULL) {
        abort();
    }
    jq_set_error_cb(jq, swallow, NULL);
    int ok = jq_compile(jq, src);
    jq_teardown(&jq);
    return ok != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    sg_jq_error_t strict_err, compat_err;
    bool strict = sg_jq_check(src, size, on_path, &size, &strict_err);
    bool compat = sg_jq_check_ex(src, size, SG_JQ_COMPAT, NULL, NULL, &compat_err);
    if (!strict) {
        check_error(&strict_err, size);
    }
    if (!compat) {
        check_error(&compat_err, size);
    }
    /* compat only relaxes policy: it accepts a superset */
    if ((strict && !compat) || (!strict && compat && strict_err.kind != SG_JQ_ERR_POLICY)) {
        __builtin_trap();
    }
    /* libjq aborts on import/include without a library path: never hand it those */
    char buf[200];
    if (size >= sizeof(buf) || memchr(data, 0, size) != NULL || !valid_utf8(data, size)) {
        return 0;
    }
    memcpy(buf, data, size);
    buf[size] = '\0';
    if (strstr(buf, "import") != NULL || strstr(buf, "include") != NULL) {
        return 0;
    }
    bool jq = jq_accepts(buf);
    if (jq && !compat) {
        fprintf(stderr, "jqcheck rejects what jq 1.6 compiles: <<%s>>\n  %u:%u %s\n", buf,
                compat_err.line, compat_err.col, compat_err.message);
        abort();
    }
    if (!jq && compat && getenv("JQCHECK_FUZZ_LAX") != NULL) {
        fprintf(stderr, "lax: <<%s>>\n", buf);
    }
    return 0;
}
