/*
 * log: formats one JSON object per line and writes it with a single write(2).
 */
#include "orchestrator/log/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static sg_log_level_t log_level = SG_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void sg_log_set_level(sg_log_level_t level)
{
    log_level = level;
}

void sg_log_set_fd(int fd)
{
    log_fd = fd;
}

bool sg_log_enabled(sg_log_level_t level)
{
    return level >= log_level;
}

bool sg_log_level_parse(const char *name, sg_log_level_t *out)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(level_names); i++) {
        if (strcmp(level_names[i], name) == 0) {
            *out = (sg_log_level_t)i;
            return true;
        }
    }
    return false;
}

/* Appends s JSON-escaped into buf at *n (bounded). */
static void put_escaped(char *buf, size_t cap, size_t *n, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p && *n + 8 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            buf[(*n)++] = '\\';
            buf[(*n)++] = (char)*p;
        } else if (*p < 0x20) {
            *n += (size_t)snprintf(buf + *n, cap - *n, "\\u%04x", *p);
        } else {
            buf[(*n)++] = (char)*p;
        }
    }
}

static void put_field(char *buf, size_t cap, size_t *n, const char *key, const char *value)
{
    if (value == NULL || *n + strlen(key) + 8 >= cap) {
        return;
    }
    *n += (size_t)snprintf(buf + *n, cap - *n, ",\"%s\":\"", key);
    put_escaped(buf, cap, n, value);
    if (*n + 1 < cap) {
        buf[(*n)++] = '"';
    }
}

void sg_log(sg_log_level_t level, const sg_log_ctx_t *ctx, const char *fmt, ...)
{
    if (!sg_log_enabled(level)) {
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char buf[2048];
    size_t n = strftime(buf, sizeof(buf), "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, ".%03ldZ\",\"level\":\"%s\",\"msg\":\"",
                          ts.tv_nsec / 1000000, level_names[level]);
    put_escaped(buf, sizeof(buf) - 64, &n, msg);
    buf[n++] = '"';
    if (ctx != NULL) {
        put_field(buf, sizeof(buf) - 64, &n, "instance", ctx->instance);
        put_field(buf, sizeof(buf) - 64, &n, "workflow", ctx->workflow);
        put_field(buf, sizeof(buf) - 64, &n, "step", ctx->step);
        if (ctx->attempt != 0) {
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",\"attempt\":%u", ctx->attempt);
        }
    }
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "}\n");
    if (n > sizeof(buf)) {
        n = sizeof(buf);
    }
    ssize_t w = write(log_fd, buf, n);
    (void)w; /* nowhere left to report a failing log */
}
