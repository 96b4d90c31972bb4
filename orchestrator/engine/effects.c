/*
 * engine effects: the commands and history entries an event produces, the legal
 * instance status transitions, and dispatching an attempt.
 */
#include "orchestrator/engine/engine_int.h"

#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
#define SG_X(name, text) text,
    SG_INST_STATUS_LIST(SG_X)
#undef SG_X
};
static const char *const reason_names[] = {
#define SG_X(name, text) text,
    SG_REASON_LIST(SG_X)
#undef SG_X
};
static const char *const step_names[] = {
#define SG_X(name, text) text,
    SG_STEP_STATUS_LIST(SG_X)
#undef SG_X
};
static const char *const comp_names[] = {
#define SG_X(name, text) text,
    SG_COMP_STATUS_LIST(SG_X)
#undef SG_X
};

const char *sg_inst_status_name(sg_inst_status_t st)
{
    return (unsigned)st < SG_INST__COUNT ? status_names[st] : "?";
}

bool sg_inst_status_parse(const char *name, sg_inst_status_t *out)
{
    for (unsigned i = 0; i < SG_INST__COUNT; i++) {
        if (strcmp(status_names[i], name) == 0) {
            *out = (sg_inst_status_t)i;
            return true;
        }
    }
    return false;
}

bool sg_reason_parse(const char *name, sg_reason_t *out)
{
    for (unsigned i = 0; i < SG_REASON__COUNT; i++) {
        if (strcmp(reason_names[i], name) == 0) {
            *out = (sg_reason_t)i;
            return true;
        }
    }
    return false;
}

const char *sg_reason_name(sg_reason_t r)
{
    return (unsigned)r < SG_REASON__COUNT ? reason_names[r] : "?";
}

const char *sg_step_status_name(sg_step_status_t st)
{
    return (unsigned)st < SG_SS__COUNT ? step_names[st] : "?";
}

const char *sg_comp_status_name(sg_comp_status_t st)
{
    return (unsigned)st < SG_CS__COUNT ? comp_names[st] : "?";
}

bool sg_inst_terminal(const sg_inst_t *inst)
{
    return inst->status != SG_INST_RUNNING && inst->status != SG_INST_COMPENSATING;
}

/* The legal moves; everything else is a bug in the engine. */
bool eng__transition_valid(sg_inst_status_t cur, sg_inst_status_t next)
{
    switch (cur) {
    case SG_INST_RUNNING:
        return next == SG_INST_COMPENSATING || next == SG_INST_COMPLETED || next == SG_INST_FAILED;
    case SG_INST_COMPENSATING:
        return next == SG_INST_COMPENSATED || next == SG_INST_COMPENSATION_FAILED ||
               next == SG_INST_RUNNING; /* the pivot completed while draining */
    case SG_INST_FAILED:
        return next == SG_INST_RUNNING; /* operator retry */
    case SG_INST_COMPENSATION_FAILED:
        return next == SG_INST_COMPENSATING; /* operator retry */
    default:
        return false;
    }
}

void eng__set_status(eng_t *e, sg_inst_status_t next)
{
    sg_inst_status_t cur = e->inst->status;
    SG_ASSERT(eng__transition_valid(cur, next));
    e->inst->status = next;
    eng__hist(e, "status_changed", -1, 0, "{\"from\":\"%s\",\"to\":\"%s\",\"reason\":\"%s\"}",
              sg_inst_status_name(cur), sg_inst_status_name(next), sg_reason_name(e->inst->reason));
}

/* ---- effects ---- */

void sg_effects_init(sg_effects_t *fx)
{
    memset(fx, 0, sizeof(*fx));
}

void sg_effects_truncate(sg_effects_t *fx, size_t n_cmds, size_t n_hist)
{
    for (size_t i = n_cmds; i < fx->n_cmds; i++) {
        sg_free(fx->cmds[i].payload);
    }
    for (size_t i = n_hist; i < fx->n_hist; i++) {
        sg_free(fx->hist[i].detail);
    }
    fx->n_cmds = n_cmds;
    fx->n_hist = n_hist;
}

void sg_effects_reset(sg_effects_t *fx)
{
    sg_effects_truncate(fx, 0, 0);
    fx->finished = false;
    fx->nomem = false;
}

void sg_effects_fini(sg_effects_t *fx)
{
    sg_effects_reset(fx);
    sg_free(fx->cmds);
    sg_free(fx->hist);
    memset(fx, 0, sizeof(*fx));
}

sg_cmd_t *eng__cmd(eng_t *e, sg_cmd_kind_t kind)
{
    sg_effects_t *fx = e->fx;
    if (!sg_grow((void **)&fx->cmds, &fx->cap_cmds, fx->n_cmds, sizeof(*fx->cmds))) {
        fx->nomem = true;
        return NULL;
    }
    sg_cmd_t *c = &fx->cmds[fx->n_cmds++];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    return c;
}

void eng__timer(eng_t *e, sg_timer_kind_t kind, uint32_t step, uint32_t attempt, bool comp,
                uint64_t at_ms)
{
    sg_cmd_t *c = eng__cmd(e, SG_CMD_TIMER);
    if (c != NULL) {
        c->timer = kind;
        c->step = step;
        c->attempt = attempt;
        c->compensation = comp;
        c->at_ms = at_ms;
    }
}

void eng__hist(eng_t *e, const char *type, int32_t step, uint32_t attempt, const char *fmt, ...)
{
    sg_effects_t *fx = e->fx;
    if (!sg_grow((void **)&fx->hist, &fx->cap_hist, fx->n_hist, sizeof(*fx->hist))) {
        fx->nomem = true;
        return;
    }
    char *detail = NULL;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        detail = sg_vasprintf(fmt, ap);
        va_end(ap);
        if (detail == NULL) {
            fx->nomem = true;
        }
    }
    fx->hist[fx->n_hist++] =
        (sg_hist_t){.type = type, .step = step, .attempt = attempt, .detail = detail};
}

const char *eng__json_str(eng_t *e, const char *s)
{
    char *out = e->scratch[e->scratch_next++ % SG_ARRAY_LEN(e->scratch)];
    size_t cap = sizeof(e->scratch[0]), n = 0;
    out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 8 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*p;
        } else if (*p < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
        } else {
            out[n++] = (char)*p;
        }
    }
    /* Never cut a multi-byte UTF-8 sequence in half. */
    while (n > 1 && ((unsigned char)out[n - 1] & 0xC0) == 0x80) {
        n--;
    }
    if (n > 1 && ((unsigned char)out[n - 1] & 0xC0) == 0xC0) {
        n--;
    }
    out[n++] = '"';
    out[n] = '\0';
    return out;
}

/* ---- dispatch ---- */

void eng__dispatch(eng_t *e, const sg_step_t *st, bool comp, uint32_t attempt)
{
    sg_step_state_t *ss = eng__ss(e, st);
    const sg_call_t *call = comp ? st->compensate : &st->call;
    char *input = NULL, *err = NULL;
    sg_err_t rc;
    if (call->input.text != NULL) {
        rc = eng__eval(e, call->input.text, &input, &err);
    } else {
        input = comp ? eng__default_comp_input(e, st) : sg_strdup(e->inst->input);
        rc = input ? SG_OK : SG_ERR_NOMEM;
    }
    if (comp) {
        ss->comp = SG_CS_RUNNING;
        ss->comp_attempt = attempt;
    } else {
        ss->status = SG_SS_RUNNING;
        ss->attempt = attempt;
    }
    if (rc != SG_OK) {
        if (rc == SG_ERR_NOMEM) {
            e->fx->nomem = true;
        } else if (comp) {
            sg_event_t failed = {.kind = SG_EV_RESULT,
                                 .step = st->index,
                                 .attempt = attempt,
                                 .compensation = true,
                                 .outcome = SG_OUTCOME_FATAL,
                                 .error_code = "saga.mapping_error",
                                 .error_message = err};
            eng__on_comp_result(e, st, &failed);
        } else {
            eng__fail_step(e, st, "saga.mapping_error", err, false);
        }
        sg_free(err);
        return;
    }
    ss->timer_at = e->now + call->timeout_ms;
    ss->lease_end = ss->timer_at; /* heartbeats move timer_at, never past this */
    eng__hist(e, comp ? "compensation_dispatched" : "attempt_dispatched", (int32_t)st->index,
              attempt, "{\"activity\":%s}", eng__json_str(e, call->activity));
    sg_cmd_t *c = eng__cmd(e, SG_CMD_DISPATCH);
    if (c == NULL) {
        sg_free(input);
        return;
    }
    c->step = st->index;
    c->attempt = attempt;
    c->compensation = comp;
    c->name = call->activity;
    c->payload = input;
    c->at_ms = ss->timer_at; /* the attempt's deadline; the driver arms its timeout */
}
