/*
 * log: structured JSON log lines on stderr (or a file), one object per line:
 *   {"ts":"2026-11-26T04:51:07.123Z","level":"info","msg":"saga completed",
 *    "instance":"01J...","workflow":"order_create","step":"charge","attempt":2}
 * Fields that do not apply are left out. The level and the output are the only global
 * state of sagad (set once at start). Lines are written with one write(2) each, so
 * threads never interleave inside a line.
 */
#ifndef SG_LOG_H
#define SG_LOG_H

#include "orchestrator/base/base.h"

typedef enum { SG_LOG_DEBUG, SG_LOG_INFO, SG_LOG_WARN, SG_LOG_ERROR } sg_log_level_t;

/* Context fields of a line; any may be NULL / 0 = absent. */
typedef struct {
    const char *instance;
    const char *workflow;
    const char *step;
    uint32_t attempt;
} sg_log_ctx_t;

void sg_log_set_level(sg_log_level_t level);
bool sg_log_level_parse(const char *name, sg_log_level_t *out);
/* fd to write to (default 2). */
void sg_log_set_fd(int fd);
bool sg_log_enabled(sg_log_level_t level);

/* Any thread. The message is printf-formatted and JSON-escaped. */
void sg_log(sg_log_level_t level, const sg_log_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SG_LOG_DEBUG(ctx, ...)                      \
    do {                                            \
        if (sg_log_enabled(SG_LOG_DEBUG)) {         \
            sg_log(SG_LOG_DEBUG, ctx, __VA_ARGS__); \
        }                                           \
    } while (0)

#endif
