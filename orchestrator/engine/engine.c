/*
 * engine: the transition function. Forward progress (steps, branches, waits, jumps),
 * failures (retries with backoff, on_error routes, step classes), and compensation
 * (drain in-flight work, then undo completed steps one by one in reverse completion
 * order, each with its own retry policy).
 *
 * It must never perform I/O, read a clock or draw random numbers; everything arrives
 * as arguments and leaves as effects (engine.h).
 */
#include "orchestrator/engine/engine_int.h"

#include <stdio.h>
#include <string.h>

/* ---- small helpers ---- */

const sg_step_t *eng__step(const eng_t *e, uint32_t i)
{
    return e->def->all_steps[i];
}

sg_step_state_t *eng__ss(const eng_t *e, const sg_step_t *st)
{
    return &e->inst->steps[st->index];
}

static void set_error(eng_t *e, sg_step_state_t *ss, const char *code, const char *msg)
{
    sg_free(ss->error_code);
    sg_free(ss->error_msg);
    ss->error_code = sg_strdup(code ? code : "");
    ss->error_msg = sg_strdup(msg ? msg : "");
    if (ss->error_code == NULL || ss->error_msg == NULL) {
        e->fx->nomem = true;
    }
}

bool eng__code_in(const char *code, const char *const *codes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(codes[i], "*") == 0 || strcmp(codes[i], code) == 0) {
            return true;
        }
    }
    return false;
}

uint64_t sg_engine_backoff_ms(const sg_retry_t *r, uint32_t next_attempt, uint64_t random)
{
    double d = (double)r->initial_ms;
    for (uint32_t i = 2; i < next_attempt && d < (double)r->max_delay_ms; i++) {
        d *= r->multiplier;
    }
    uint64_t delay = d > (double)r->max_delay_ms ? r->max_delay_ms : (uint64_t)d;
    switch (r->jitter) {
    case SG_JITTER_FULL:
        return delay ? random % (delay + 1) : 0;
    case SG_JITTER_EQUAL:
        return delay / 2 + (delay ? random % (delay / 2 + 1) : 0);
    default:
        return delay;
    }
}

/* Attempts left under policy r, counting from base (the attempt of the last operator retry). */
bool eng__attempts_left(const sg_retry_t *r, uint32_t attempt, uint32_t base)
{
    return r->max_attempts == 0 || attempt - base < r->max_attempts;
}

/* ---- finishing ---- */

static void emit_events(eng_t *e, sg_event_when_t when)
{
    for (size_t i = 0; i < e->def->n_events[when]; i++) {
        const sg_event_spec_t *ev = &e->def->events[when][i];
        char *payload = NULL;
        if (ev->data.text != NULL) {
            char *err = NULL;
            if (eng__eval(e, ev->data.text, &payload, &err) != SG_OK) {
                eng__hist(e, "event_mapping_failed", -1, 0, "{\"event\":%s,\"error\":%s}",
                          eng__json_str(e, ev->type), eng__json_str(e, err ? err : "?"));
                sg_free(err);
                payload = sg_strdup("null");
            }
        } else {
            payload = eng__default_event_payload(e);
        }
        if (payload == NULL) {
            e->fx->nomem = true;
            return;
        }
        sg_cmd_t *c = eng__cmd(e, SG_CMD_EMIT);
        if (c == NULL) {
            sg_free(payload);
            return;
        }
        c->name = ev->type;
        c->payload = payload;
    }
}

void eng__finish(eng_t *e, sg_inst_status_t status)
{
    static const sg_event_when_t when[SG_INST__COUNT] = {
        [SG_INST_COMPLETED] = SG_EVENT_ON_COMPLETE,
        [SG_INST_COMPENSATED] = SG_EVENT_ON_COMPENSATED,
        [SG_INST_FAILED] = SG_EVENT_ON_FAILED,
        [SG_INST_COMPENSATION_FAILED] = SG_EVENT_ON_FAILED,
    };
    eng__set_status(e, status);
    e->fx->finished = true;
    emit_events(e, when[status]);
}

/* ---- forward progress ---- */

static void run_step(eng_t *e, const sg_step_t *st);

/* The sequence seq ran to its end. */
static void seq_end(eng_t *e, const sg_seq_t *seq)
{
    e->inst->cursor[seq->no] = (uint32_t)seq->n_steps;
    if (seq->no == 0) {
        eng__finish(e, SG_INST_COMPLETED);
        return;
    }
    const sg_step_t *group = seq->steps[0]->group;
    for (size_t b = 0; b < group->n_branches; b++) {
        const sg_seq_t *br = &group->branches[b];
        if (e->inst->cursor[br->no] < br->n_steps) {
            return; /* another branch still runs */
        }
    }
    eng__step_done(e, group, NULL);
}

/* Continues seq at position i (n_steps = the end). */
static void advance(eng_t *e, const sg_seq_t *seq, size_t i)
{
    if (e->inst->status != SG_INST_RUNNING) {
        return;
    }
    if (i >= seq->n_steps) {
        seq_end(e, seq);
        return;
    }
    e->inst->cursor[seq->no] = (uint32_t)i;
    run_step(e, seq->steps[i]);
}

void eng__step_done(eng_t *e, const sg_step_t *st, char *output)
{
    sg_step_state_t *ss = eng__ss(e, st);
    sg_free(ss->output);
    ss->output = output;
    ss->status = SG_SS_DONE;
    eng__context_output(e, st, output);
    ss->done_seq = ++e->inst->done_counter;
    ss->finished_ms = e->now;
    ss->timer_at = 0;
    ss->lease_end = 0;
    eng__hist(e, "step_completed", (int32_t)st->index, ss->attempt, NULL);
    if (e->inst->status == SG_INST_COMPENSATING) {
        if (st == e->def->pivot) {
            /* The point of no return passed while we waited for it: finish forward. */
            eng__hist(e, "compensation_aborted", -1, 0, "{\"because\":\"pivot completed\"}");
            e->inst->reason = SG_REASON_NONE;
            eng__set_status(e, SG_INST_RUNNING);
        } else {
            eng__check_drained(e);
            return;
        }
    }
    size_t next = st->next ? st->next->seq_index : st->end ? st->seq->n_steps : st->seq_index + 1;
    advance(e, st->seq, next);
}

static void start_parallel(eng_t *e, const sg_step_t *st)
{
    eng__ss(e, st)->status = SG_SS_RUNNING;
    eng__ss(e, st)->started_ms = e->now;
    eng__hist(e, "parallel_started", (int32_t)st->index, 0, NULL);
    /* Mark every branch as running first, so a branch that ends at once does not see
     * its siblings as finished before they started. */
    for (size_t b = 0; b < st->n_branches; b++) {
        e->inst->cursor[st->branches[b].no] = 0;
    }
    for (size_t b = 0; b < st->n_branches && e->inst->status == SG_INST_RUNNING; b++) {
        advance(e, &st->branches[b], 0);
    }
}

static void start_wait(eng_t *e, const sg_step_t *st)
{
    sg_step_state_t *ss = eng__ss(e, st);
    uint64_t at = e->now + st->wait_ms;
    if (st->wait_until.text != NULL) {
        char *err = NULL;
        if (!eng__eval_time(e, st->wait_until.text, &at, &err)) {
            eng__fail_step(e, st, "saga.mapping_error", err ? err : "invalid wait until", false);
            sg_free(err);
            return;
        }
    }
    ss->status = SG_SS_WAITING;
    ss->started_ms = e->now;
    if (at <= e->now) {
        eng__step_done(e, st, NULL);
        return;
    }
    ss->timer_at = at;
    eng__hist(e, "wait_started", (int32_t)st->index, 0, "{\"until_ms\":%llu}",
              (unsigned long long)at);
    eng__timer(e, SG_TIMER_WAIT, st->index, 0, false, at);
}

static void run_step(eng_t *e, const sg_step_t *st)
{
    sg_step_state_t *ss = eng__ss(e, st);
    if (st->when.text != NULL) {
        bool yes = false;
        char *err = NULL;
        if (!eng__eval_bool(e, st->when.text, &yes, &err)) {
            ss->status = SG_SS_RUNNING;
            eng__fail_step(e, st, "saga.mapping_error", err ? err : "when failed", false);
            sg_free(err);
            return;
        }
        if (!yes) {
            ss->status = SG_SS_SKIPPED;
            eng__hist(e, "step_skipped", (int32_t)st->index, 0, NULL);
            advance(e, st->seq, st->seq_index + 1);
            return;
        }
    }
    switch (st->kind) {
    case SG_STEP_ACTIVITY:
        ss->started_ms = e->now;
        eng__dispatch(e, st, false, ss->attempt + 1);
        break;
    case SG_STEP_WAIT:
        start_wait(e, st);
        break;
    case SG_STEP_PARALLEL:
        start_parallel(e, st);
        break;
    }
}

/* ---- failures ---- */

void eng__mark_maybe_effect(eng_t *e, sg_step_state_t *ss)
{
    if (!ss->maybe_effect) {
        ss->maybe_effect = true;
        ss->done_seq = ++e->inst->done_counter; /* its place in the reverse-order undo */
    }
}

static const sg_route_t *match_route(const sg_step_t *st, const char *code)
{
    for (size_t r = 0; r < st->n_routes; r++) {
        if (eng__code_in(code, st->routes[r].codes, st->routes[r].n_codes)) {
            return &st->routes[r];
        }
    }
    return NULL;
}

void eng__schedule_backoff(eng_t *e, const sg_step_t *st, bool comp, uint32_t attempt,
                           const sg_retry_t *r)
{
    sg_step_state_t *ss = eng__ss(e, st);
    uint64_t delay = sg_engine_backoff_ms(r, attempt + 1, e->random);
    ss->timer_at = e->now + delay;
    if (comp) {
        ss->comp = SG_CS_BACKOFF;
    } else {
        ss->status = SG_SS_BACKOFF;
    }
    eng__hist(e, comp ? "compensation_retry_scheduled" : "retry_scheduled", (int32_t)st->index,
              attempt, "{\"next_attempt\":%u,\"delay_ms\":%llu}", attempt + 1,
              (unsigned long long)delay);
    eng__timer(e, SG_TIMER_BACKOFF, st->index, attempt, comp, ss->timer_at);
}

/* A forward attempt failed (or could not start). retryable: the error allows a retry. */
void eng__fail_step(eng_t *e, const sg_step_t *st, const char *code, const char *msg,
                    bool retryable)
{
    sg_step_state_t *ss = eng__ss(e, st);
    set_error(e, ss, code, msg);
    ss->timer_at = 0;
    ss->lease_end = 0;
    eng__hist(e, "attempt_failed", (int32_t)st->index, ss->attempt,
              "{\"code\":%s,\"message\":%s,\"retryable\":%s}", eng__json_str(e, code),
              eng__json_str(e, msg), retryable ? "true" : "false");
    if (e->inst->status == SG_INST_COMPENSATING) {
        ss->status = SG_SS_FAILED; /* draining: no more attempts */
        eng__check_drained(e);
        return;
    }
    const sg_route_t *route = match_route(st, code);
    if (route == NULL && retryable && st->kind == SG_STEP_ACTIVITY &&
        !eng__code_in(code, st->call.retry.non_retryable, st->call.retry.n_non_retryable) &&
        eng__attempts_left(&st->call.retry, ss->attempt, ss->attempt_base)) {
        eng__schedule_backoff(e, st, false, ss->attempt, &st->call.retry);
        return;
    }
    ss->status = SG_SS_FAILED;
    ss->finished_ms = e->now;
    eng__hist(e, "step_failed", (int32_t)st->index, ss->attempt, "{\"code\":%s}",
              eng__json_str(e, code));
    if (route != NULL && route->action == SG_ROUTE_GOTO) {
        eng__hist(e, "route_taken", (int32_t)st->index, ss->attempt, "{\"goto\":%s}",
                  eng__json_str(e, route->target->id));
        advance(e, st->seq, route->target->seq_index);
    } else if ((route != NULL && route->action == SG_ROUTE_FAIL) || st->cls == SG_CLASS_RETRIABLE ||
               eng__past_pivot(e)) {
        /* Nothing may be undone any more, or the author asked for a stop: an operator
         * decides (retry from this step, or leave it). */
        e->inst->reason = SG_REASON_STEP_FAILED;
        eng__finish(e, SG_INST_FAILED);
    } else {
        eng__begin_compensation(e, SG_REASON_STEP_FAILED);
    }
}

/* ---- events ---- */

static sg_err_t on_result(eng_t *e, const sg_event_t *ev)
{
    const sg_step_t *st = eng__step(e, ev->step);
    sg_step_state_t *ss = eng__ss(e, st);
    if (ev->compensation) {
        return eng__on_comp_result(e, st, ev);
    }
    if (ss->status != SG_SS_RUNNING || ss->attempt != ev->attempt || st->kind != SG_STEP_ACTIVITY ||
        sg_inst_terminal(e->inst)) {
        eng__hist(e, "stale_result_ignored", (int32_t)st->index, ev->attempt, NULL);
        return SG_OK;
    }
    if (ev->outcome == SG_OUTCOME_RETRYABLE) {
        /* A retryable failure promises no effect OR an effect recorded for the retry to
         * find (activity.h): if the retries run out, the effect may exist, so the step
         * is compensated like a timed-out one (an undo of nothing does nothing). */
        eng__mark_maybe_effect(e, ss);
    }
    if (ev->outcome != SG_OUTCOME_OK) {
        eng__fail_step(e, st, ev->error_code ? ev->error_code : "error",
                       ev->error_message ? ev->error_message : "",
                       ev->outcome == SG_OUTCOME_RETRYABLE);
        return SG_OK;
    }
    const char *raw = ev->output ? ev->output : "null";
    char *out = NULL;
    if (st->output.text != NULL) {
        char *err = NULL;
        if (eng__eval_on(e, st->output.text, raw, &out, &err) != SG_OK) {
            /* The effect happened but its output cannot be read: undo it if we can. */
            eng__mark_maybe_effect(e, ss);
            eng__fail_step(e, st, "saga.mapping_error", err ? err : "output mapping failed", false);
            sg_free(err);
            return SG_OK;
        }
    } else {
        out = sg_strdup(raw);
    }
    if (out == NULL) {
        return SG_ERR_NOMEM;
    }
    eng__step_done(e, st, out);
    return SG_OK;
}

static sg_err_t on_timer(eng_t *e, const sg_event_t *ev)
{
    if (ev->timer == SG_TIMER_DEADLINE) {
        if (e->inst->status != SG_INST_RUNNING || eng__past_pivot(e)) {
            eng__hist(e, "deadline_ignored", -1, 0, NULL);
            return SG_OK;
        }
        eng__hist(e, "deadline_passed", -1, 0, NULL);
        eng__begin_compensation(e, SG_REASON_DEADLINE);
        return SG_OK;
    }
    const sg_step_t *st = eng__step(e, ev->step);
    sg_step_state_t *ss = eng__ss(e, st);
    if (ev->compensation) {
        return eng__on_comp_timer(e, st, ev);
    }
    bool live = !sg_inst_terminal(e->inst) && ss->attempt == ev->attempt;
    if (ev->timer == SG_TIMER_TIMEOUT && live && ss->status == SG_SS_RUNNING &&
        st->kind == SG_STEP_ACTIVITY) {
        /* The outcome is unknown: the effect may have happened, so it is compensated
         * (compensations are safe to run for effects that did not happen). */
        const char *msg;
        const char *code = sg_engine_timeout_code(e->inst, st->index, &msg);
        eng__mark_maybe_effect(e, ss);
        eng__fail_step(e, st, code, msg, true);
    } else if (ev->timer == SG_TIMER_BACKOFF && live && ss->status == SG_SS_BACKOFF &&
               e->inst->status == SG_INST_RUNNING) {
        eng__dispatch(e, st, false, ss->attempt + 1);
    } else if (ev->timer == SG_TIMER_WAIT && ss->status == SG_SS_WAITING &&
               e->inst->status == SG_INST_RUNNING) {
        eng__step_done(e, st, NULL);
    } else {
        eng__hist(e, "stale_timer_ignored", (int32_t)st->index, ev->attempt, NULL);
    }
    return SG_OK;
}

static sg_err_t on_cancel(eng_t *e)
{
    if (e->inst->status != SG_INST_RUNNING || eng__past_pivot(e)) {
        return SG_ERR_STATE;
    }
    eng__hist(e, "cancel_requested", -1, 0, NULL);
    eng__begin_compensation(e, SG_REASON_CANCELLED);
    return SG_OK;
}

static sg_err_t on_start(eng_t *e)
{
    sg_inst_t *inst = e->inst;
    if (inst->version != 0) {
        return SG_ERR_STATE;
    }
    eng__hist(e, "saga_started", -1, 0, "{\"workflow\":%s,\"version\":%lld}",
              eng__json_str(e, e->def->name), (long long)e->def->version);
    if (e->def->timeout_ms != 0) {
        inst->deadline_ms = e->now + e->def->timeout_ms;
        eng__timer(e, SG_TIMER_DEADLINE, 0, 0, false, inst->deadline_ms);
    }
    emit_events(e, SG_EVENT_ON_START);
    advance(e, &e->def->body, 0);
    return SG_OK;
}

static bool event_valid(const sg_def_t *def, const sg_event_t *ev)
{
    bool per_step =
        ev->kind == SG_EV_RESULT || (ev->kind == SG_EV_TIMER && ev->timer != SG_TIMER_DEADLINE);
    if (per_step && ev->step >= def->n_steps) {
        return false;
    }
    return !(per_step && ev->compensation && def->all_steps[ev->step]->compensate == NULL);
}

sg_err_t sg_engine_apply(sg_jqrt_t *jq, sg_inst_t *inst, const sg_event_t *ev, uint64_t now_ms,
                         uint64_t random, sg_effects_t *fx)
{
    eng_t e = {.jq = jq, .inst = inst, .def = inst->def, .now = now_ms, .random = random, .fx = fx};
    if (!event_valid(inst->def, ev)) {
        return SG_ERR_INVALID;
    }
    size_t n_cmds = fx->n_cmds, n_hist = fx->n_hist;
    sg_err_t rc = SG_OK;
    switch (ev->kind) {
    case SG_EV_START:
        rc = on_start(&e);
        break;
    case SG_EV_RESULT:
        rc = on_result(&e, ev);
        break;
    case SG_EV_TIMER:
        rc = on_timer(&e, ev);
        break;
    case SG_EV_CANCEL:
        rc = on_cancel(&e);
        break;
    case SG_EV_RETRY:
        rc = eng__on_operator_retry(&e);
        break;
    }
    if (rc == SG_OK && fx->nomem) {
        rc = SG_ERR_NOMEM;
    }
    if (rc == SG_OK) {
        inst->version++;
        inst->updated_ms = now_ms;
    } else if (rc == SG_ERR_STATE) {
        /* Refused events leave no trace in the effects. */
        sg_effects_truncate(fx, n_cmds, n_hist);
    }
    return rc;
}

/* A timeout earlier than the attempt's own one was set by a heartbeat: the worker that
 * held the task went silent. */
const char *sg_engine_timeout_code(const sg_inst_t *inst, uint32_t step, const char **msg)
{
    const sg_step_state_t *ss = &inst->steps[step];
    if (ss->timer_at < ss->lease_end) {
        *msg = "no heartbeat came within the step's heartbeat timeout";
        return "saga.heartbeat_timeout";
    }
    *msg = "the attempt timed out";
    return "saga.timeout";
}

bool sg_engine_heartbeat(sg_inst_t *inst, uint32_t step, uint32_t attempt, bool compensation,
                         uint64_t now_ms, uint64_t *timeout_at)
{
    if (sg_inst_terminal(inst) || step >= inst->def->n_steps) {
        return false;
    }
    const sg_step_t *st = inst->def->all_steps[step];
    sg_step_state_t *ss = &inst->steps[step];
    const sg_call_t *call = compensation ? st->compensate : &st->call;
    bool running = compensation ? ss->comp == SG_CS_RUNNING && ss->comp_attempt == attempt
                                : ss->status == SG_SS_RUNNING && ss->attempt == attempt;
    if (st->kind != SG_STEP_ACTIVITY || call == NULL || call->heartbeat_ms == 0 || !running ||
        ss->timer_at == 0 || ss->lease_end < ss->timer_at) {
        return false;
    }
    /* Too late: the timeout has passed and its timer is due; a heartbeat must not
     * rescue an attempt the driver is about to time out. */
    if (now_ms >= ss->timer_at) {
        return false;
    }
    uint64_t at = now_ms + call->heartbeat_ms;
    ss->timer_at = at < ss->lease_end ? at : ss->lease_end;
    *timeout_at = ss->timer_at;
    return true;
}
