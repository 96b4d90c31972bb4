/*
 * engine compensation: once a saga must be undone it first drains (waits for every
 * task still in flight to report or time out, dispatching nothing new), then runs the
 * compensations of completed steps one at a time, latest completion first. A step whose
 * attempt timed out counts as completed at that moment: its effect may have happened.
 * A compensation that exhausts its retries is marked failed and the others still run;
 * the saga then ends COMPENSATION_FAILED for an operator.
 *
 * Also the operator's retry of FAILED and COMPENSATION_FAILED instances.
 */
#include "orchestrator/engine/engine_int.h"

#include <string.h>

bool eng__past_pivot(const eng_t *e)
{
    const sg_step_t *pivot = e->def->pivot;
    return pivot != NULL && eng__ss(e, pivot)->status == SG_SS_DONE;
}

static bool in_flight(const eng_t *e)
{
    for (size_t i = 0; i < e->def->n_steps; i++) {
        const sg_step_t *st = e->def->all_steps[i];
        if (st->kind == SG_STEP_ACTIVITY && e->inst->steps[i].status == SG_SS_RUNNING) {
            return true;
        }
    }
    return false;
}

/* The pending compensation that runs next: the latest completion. */
static const sg_step_t *next_pending(const eng_t *e)
{
    const sg_step_t *best = NULL;
    uint32_t best_seq = 0;
    for (size_t i = 0; i < e->def->n_steps; i++) {
        const sg_step_state_t *ss = &e->inst->steps[i];
        if (ss->comp == SG_CS_PENDING && (best == NULL || ss->done_seq > best_seq)) {
            best = e->def->all_steps[i];
            best_seq = ss->done_seq;
        }
    }
    return best;
}

static void run_next_compensation(eng_t *e)
{
    const sg_step_t *st = next_pending(e);
    if (st != NULL) {
        eng__dispatch(e, st, true, eng__ss(e, st)->comp_attempt + 1);
        return;
    }
    bool failed = false;
    for (size_t i = 0; i < e->def->n_steps; i++) {
        failed = failed || e->inst->steps[i].comp == SG_CS_FAILED;
    }
    eng__finish(e, failed ? SG_INST_COMPENSATION_FAILED : SG_INST_COMPENSATED);
}

/* Marks what must be undone, once nothing is in flight any more. */
void eng__check_drained(eng_t *e)
{
    if (e->inst->status != SG_INST_COMPENSATING || in_flight(e)) {
        return;
    }
    for (size_t i = 0; i < e->def->n_steps; i++) {
        const sg_step_t *st = e->def->all_steps[i];
        sg_step_state_t *ss = &e->inst->steps[i];
        bool effect = ss->status == SG_SS_DONE || ss->maybe_effect;
        if (st->kind == SG_STEP_ACTIVITY && st->compensate != NULL && effect &&
            ss->comp == SG_CS_NONE) {
            ss->comp = SG_CS_PENDING;
        }
    }
    run_next_compensation(e);
}

void eng__begin_compensation(eng_t *e, sg_reason_t reason)
{
    if (e->inst->status != SG_INST_RUNNING) {
        return;
    }
    e->inst->reason = reason;
    eng__set_status(e, SG_INST_COMPENSATING);
    eng__hist(e, "compensation_started", -1, 0, "{\"reason\":%s}",
              eng__json_str(e, sg_reason_name(reason)));
    /* Nothing new starts: waits and pending retries are abandoned. */
    for (size_t i = 0; i < e->def->n_steps; i++) {
        sg_step_state_t *ss = &e->inst->steps[i];
        if (ss->status == SG_SS_WAITING || ss->status == SG_SS_BACKOFF) {
            ss->status = ss->status == SG_SS_WAITING ? SG_SS_SKIPPED : SG_SS_FAILED;
            ss->timer_at = 0;
            eng__hist(e, "step_abandoned", (int32_t)i, ss->attempt, NULL);
        } else if (ss->status == SG_SS_RUNNING && e->def->all_steps[i]->kind == SG_STEP_PARALLEL) {
            ss->status = SG_SS_FAILED;
        }
    }
    eng__check_drained(e);
}

sg_err_t eng__on_comp_result(eng_t *e, const sg_step_t *st, const sg_event_t *ev)
{
    sg_step_state_t *ss = eng__ss(e, st);
    if (ss->comp != SG_CS_RUNNING || ss->comp_attempt != ev->attempt ||
        e->inst->status != SG_INST_COMPENSATING) {
        eng__hist(e, "stale_result_ignored", (int32_t)st->index, ev->attempt,
                  "{\"compensation\":true}");
        return SG_OK;
    }
    ss->timer_at = 0;
    ss->lease_end = 0;
    if (ev->outcome == SG_OUTCOME_OK) {
        ss->comp = SG_CS_DONE;
        eng__hist(e, "step_compensated", (int32_t)st->index, ev->attempt, NULL);
        run_next_compensation(e);
        return SG_OK;
    }
    const char *code = ev->error_code ? ev->error_code : "error";
    const sg_retry_t *r = &st->compensate->retry;
    eng__hist(e, "compensation_attempt_failed", (int32_t)st->index, ev->attempt,
              "{\"code\":%s,\"message\":%s}", eng__json_str(e, code),
              eng__json_str(e, ev->error_message ? ev->error_message : ""));
    if (ev->outcome == SG_OUTCOME_RETRYABLE &&
        !eng__code_in(code, r->non_retryable, r->n_non_retryable) &&
        eng__attempts_left(r, ss->comp_attempt, ss->comp_attempt_base)) {
        eng__schedule_backoff(e, st, true, ss->comp_attempt, r);
        return SG_OK;
    }
    ss->comp = SG_CS_FAILED;
    eng__hist(e, "compensation_failed", (int32_t)st->index, ss->comp_attempt, "{\"code\":%s}",
              eng__json_str(e, code));
    run_next_compensation(e);
    return SG_OK;
}

sg_err_t eng__on_comp_timer(eng_t *e, const sg_step_t *st, const sg_event_t *ev)
{
    sg_step_state_t *ss = eng__ss(e, st);
    bool live = e->inst->status == SG_INST_COMPENSATING && ss->comp_attempt == ev->attempt;
    if (live && ev->timer == SG_TIMER_TIMEOUT && ss->comp == SG_CS_RUNNING) {
        sg_event_t failed = *ev;
        failed.kind = SG_EV_RESULT;
        failed.outcome = SG_OUTCOME_RETRYABLE;
        failed.error_code = sg_engine_timeout_code(e->inst, st->index, &failed.error_message);
        return eng__on_comp_result(e, st, &failed);
    }
    if (live && ev->timer == SG_TIMER_BACKOFF && ss->comp == SG_CS_BACKOFF) {
        eng__dispatch(e, st, true, ss->comp_attempt + 1);
        return SG_OK;
    }
    eng__hist(e, "stale_timer_ignored", (int32_t)st->index, ev->attempt, "{\"compensation\":true}");
    return SG_OK;
}

/* Operator retry: resume a FAILED saga from its failed steps, or re-run the failed
 * compensations of a COMPENSATION_FAILED one. Retry policies count afresh. */
sg_err_t eng__on_operator_retry(eng_t *e)
{
    sg_inst_t *inst = e->inst;
    if (inst->status == SG_INST_COMPENSATION_FAILED) {
        eng__set_status(e, SG_INST_COMPENSATING);
        eng__hist(e, "operator_retry", -1, 0, "{\"resume\":\"compensation\"}");
        for (size_t i = 0; i < e->def->n_steps; i++) {
            sg_step_state_t *ss = &inst->steps[i];
            if (ss->comp == SG_CS_FAILED) {
                ss->comp = SG_CS_PENDING;
                ss->comp_attempt_base = ss->comp_attempt;
            }
        }
        run_next_compensation(e);
        return SG_OK;
    }
    if (inst->status != SG_INST_FAILED) {
        return SG_ERR_STATE;
    }
    eng__set_status(e, SG_INST_RUNNING);
    inst->reason = SG_REASON_NONE;
    eng__hist(e, "operator_retry", -1, 0, "{\"resume\":\"forward\"}");
    /* The failed steps are the ones their sequence's cursor still points at. */
    for (size_t q = 0; q < e->def->n_seqs && inst->status == SG_INST_RUNNING; q++) {
        const sg_seq_t *seq = e->def->seqs[q];
        uint32_t c = inst->cursor[q];
        if (c >= seq->n_steps) {
            continue;
        }
        const sg_step_t *st = seq->steps[c];
        sg_step_state_t *ss = eng__ss(e, st);
        if (ss->status == SG_SS_FAILED && st->kind == SG_STEP_ACTIVITY) {
            ss->attempt_base = ss->attempt;
            eng__dispatch(e, st, false, ss->attempt + 1);
        }
    }
    return SG_OK;
}
