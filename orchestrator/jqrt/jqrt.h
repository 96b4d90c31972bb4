/*
 * jqrt: runs jq expressions with libjq. Each distinct expression is compiled once,
 * on first use, and kept: libjq 1.6 spends ~13 ms per compile (it re-parses its own
 * builtins), so compiling per evaluation would dominate everything.
 *
 * A runtime is single-threaded (libjq states are not shareable); the engine thread
 * owns one. It never changes what an expression means; only how fast it runs.
 */
#ifndef SG_JQRT_H
#define SG_JQRT_H

#include "orchestrator/base/base.h"

typedef struct sg_jqrt sg_jqrt_t;

sg_jqrt_t *sg_jqrt_new(void);
void sg_jqrt_free(sg_jqrt_t *rt);

/*
 * Evaluates expr over the JSON text input. On SG_OK *out is the first output as compact
 * JSON text (owned; "null" if the expression produced nothing). On SG_ERR_INVALID *err
 * holds jq's message (owned): a compile error, a runtime error, or input that is not JSON.
 * SG_ERR_NOMEM on allocation failure.
 */
sg_err_t sg_jqrt_eval(sg_jqrt_t *rt, const char *expr, const char *input, char **out, char **err);

/*
 * A saga context kept parsed between evaluations: {"input", "steps": {"<id>":
 * {"output"}}, "saga"}. Parsing the whole context text for every expression was the
 * largest cost of evaluating; with this, each output is parsed once, when it arrives.
 * Single-threaded like the runtime. NULL on OOM.
 */
typedef struct sg_jqrt_ctx sg_jqrt_ctx_t;
sg_jqrt_ctx_t *sg_jqrt_ctx_new(const char *input_json, const char *saga_json);
void sg_jqrt_ctx_free(sg_jqrt_ctx_t *ctx);
/* Sets .steps[step_id].output (JSON text; NULL = null). False on OOM. Text that is not
 * JSON is remembered and makes every later evaluation fail with a clear message. */
bool sg_jqrt_ctx_set_output(sg_jqrt_ctx_t *ctx, const char *step_id, const char *output_json);
/* Like sg_jqrt_eval, over the context. */
sg_err_t sg_jqrt_eval_ctx(sg_jqrt_t *rt, const char *expr, const sg_jqrt_ctx_t *ctx, char **out,
                          char **err);

/* Number of compiled programs held (for metrics and tests). */
size_t sg_jqrt_cached(const sg_jqrt_t *rt);

#endif
