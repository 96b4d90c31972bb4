/*
 * visualize live: what each step of a running or finished instance looks like in the
 * live graph (sg_viz_step_t), derived from the engine's per-step state. The REST
 * gateway's instance graph and any other viewer share this one mapping, so a state
 * reads the same everywhere.
 *
 * It must never change the instance; it only reads the state the engine keeps.
 */
#include "visualize/visualize.h"

/* Attempts counted the way the retry policy counts them: from the last operator retry. */
static uint32_t since(uint32_t attempt, uint32_t base)
{
    return attempt > base ? attempt - base : 0;
}

/* A step whose compensation is (being) decided: pending or running undo, its outcome. */
static sg_viz_step_t comp_view(const sg_step_t *st, const sg_step_state_t *ss)
{
    uint32_t made = since(ss->comp_attempt, ss->comp_attempt_base);
    uint32_t max = st->compensate != NULL ? st->compensate->retry.max_attempts : 0;
    switch (ss->comp) {
    case SG_CS_DONE:
        return (sg_viz_step_t){SG_VIZ_COMPENSATED, made, max};
    case SG_CS_FAILED:
        return (sg_viz_step_t){SG_VIZ_COMPENSATION_FAILED, made, max};
    case SG_CS_BACKOFF:
        /* Waiting to try again: show the attempt that comes next. */
        return (sg_viz_step_t){SG_VIZ_COMPENSATING, made + 1, max};
    default: /* pending (not started yet) or running */
        return (sg_viz_step_t){SG_VIZ_COMPENSATING, made, max};
    }
}

static sg_viz_step_t forward_view(const sg_step_t *st, const sg_step_state_t *ss)
{
    bool call = st->kind == SG_STEP_ACTIVITY;
    uint32_t made = call ? since(ss->attempt, ss->attempt_base) : 0;
    uint32_t max = call ? st->call.retry.max_attempts : 0;
    switch (ss->status) {
    case SG_SS_RUNNING:
    case SG_SS_WAITING:
        return (sg_viz_step_t){SG_VIZ_RUNNING, made, max};
    case SG_SS_BACKOFF:
        return (sg_viz_step_t){SG_VIZ_RETRYING, made + 1, max};
    case SG_SS_DONE:
        return (sg_viz_step_t){SG_VIZ_DONE, made, max};
    case SG_SS_FAILED:
        return (sg_viz_step_t){SG_VIZ_FAILED, made, max};
    case SG_SS_SKIPPED:
        return (sg_viz_step_t){SG_VIZ_SKIPPED, 0, max};
    default:
        return (sg_viz_step_t){SG_VIZ_PENDING, 0, max};
    }
}

void sg_viz_live(const sg_inst_t *inst, sg_viz_step_t *out)
{
    const sg_def_t *def = inst->def;
    bool ended = sg_inst_terminal(inst);
    for (size_t i = 0; i < def->n_steps; i++) {
        const sg_step_state_t *ss = &inst->steps[i];
        /* A compensation still pending in an instance that ended was abandoned (the
         * pivot completed while the saga drained): the step shows what it did. */
        bool undo = ss->comp != SG_CS_NONE && !(ended && ss->comp == SG_CS_PENDING);
        out[i] = undo ? comp_view(def->all_steps[i], ss) : forward_view(def->all_steps[i], ss);
    }
}
