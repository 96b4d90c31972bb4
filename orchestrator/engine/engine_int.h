/*
 * engine internals shared by engine.c (forward progress and events), compensate.c
 * (compensation and operator retry), context.c (jq over the saga context) and
 * effects.c (effects, history, state changes). Never included from outside.
 */
#ifndef SG_ENGINE_INT_H
#define SG_ENGINE_INT_H

#include "orchestrator/engine/engine.h"

/* One application of one event. */
typedef struct {
    sg_jqrt_t *jq;
    sg_inst_t *inst;
    const sg_def_t *def;
    uint64_t now;
    uint64_t random;
    sg_effects_t *fx;
    char scratch[8][96]; /* eng__json_str results live until the event is applied */
    unsigned scratch_next;
} eng_t;

const sg_step_t *eng__step(const eng_t *e, uint32_t i);
sg_step_state_t *eng__ss(const eng_t *e, const sg_step_t *st);

/* effects.c */
sg_cmd_t *eng__cmd(eng_t *e, sg_cmd_kind_t kind);
/* Schedules a timer command. */
void eng__timer(eng_t *e, sg_timer_kind_t kind, uint32_t step, uint32_t attempt, bool comp,
                uint64_t at_ms);
void eng__hist(eng_t *e, const char *type, int32_t step, uint32_t attempt, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* s as a JSON string literal, truncated to fit a scratch slot; valid during the event. */
const char *eng__json_str(eng_t *e, const char *s);
/* Changes the instance status, checking the transition is legal (asserts otherwise). */
void eng__set_status(eng_t *e, sg_inst_status_t next);
bool eng__transition_valid(sg_inst_status_t cur, sg_inst_status_t next);
void sg_effects_truncate(sg_effects_t *fx, size_t n_cmds, size_t n_hist);
/* Dispatches attempt `attempt` of a step (or of its compensation). */
void eng__dispatch(eng_t *e, const sg_step_t *st, bool comp, uint32_t attempt);

/* context.c: jq over the saga context {input, steps.<id>.output, saga} */
sg_err_t eng__eval(eng_t *e, const char *expr, char **out, char **err);
/* Keeps the parsed context in step with a step's new output. */
void eng__context_output(eng_t *e, const sg_step_t *st, const char *output);
sg_err_t eng__eval_on(eng_t *e, const char *expr, const char *input, char **out, char **err);
bool eng__eval_bool(eng_t *e, const char *expr, bool *out, char **err);
bool eng__eval_time(eng_t *e, const char *expr, uint64_t *at_ms, char **err);
char *eng__default_event_payload(eng_t *e);
char *eng__default_comp_input(eng_t *e, const sg_step_t *st);

/* engine.c */
/* code is listed in codes ("*" lists every code). */
bool eng__code_in(const char *code, const char *const *codes, size_t n);
/* Attempts remain under policy r, counting from base (the last operator retry). */
bool eng__attempts_left(const sg_retry_t *r, uint32_t attempt, uint32_t base);
/* Pauses a step (or its compensation) before the next attempt and arms the timer. */
void eng__schedule_backoff(eng_t *e, const sg_step_t *st, bool comp, uint32_t attempt,
                           const sg_retry_t *r);
void eng__step_done(eng_t *e, const sg_step_t *st, char *output);
/* The step's effect may have happened (a timeout, a retryable failure): compensate it
 * if the saga compensates, in the order of when this became known. */
void eng__mark_maybe_effect(eng_t *e, sg_step_state_t *ss);
void eng__fail_step(eng_t *e, const sg_step_t *st, const char *code, const char *msg,
                    bool retryable);
void eng__finish(eng_t *e, sg_inst_status_t status);

/* compensate.c */
bool eng__past_pivot(const eng_t *e);
void eng__begin_compensation(eng_t *e, sg_reason_t reason);
void eng__check_drained(eng_t *e);
sg_err_t eng__on_comp_result(eng_t *e, const sg_step_t *st, const sg_event_t *ev);
sg_err_t eng__on_comp_timer(eng_t *e, const sg_step_t *st, const sg_event_t *ev);
sg_err_t eng__on_operator_retry(eng_t *e);

#endif
