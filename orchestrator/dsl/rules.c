/*
 * dsl rules: the checks that need the whole saga. Resolves `next`/`goto` names,
 * enforces forward-only control flow and reachability, and assigns Richardson's
 * step classes: compensatable steps, then at most one pivot, then retriable steps.
 *
 * Why forward-only: a saga must terminate, and with every jump going forward the
 * list order is a topological order, so "which steps can have run before X" and the
 * compensation order are simple to compute and to explain.
 */
#include "orchestrator/dsl/dsl_int.h"

#include <stdio.h>
#include <string.h>

static step_build_t *sb_of(const sg_step_t *st)
{
    return (step_build_t *)(void *)st; /* sg_step_t is the first member of step_build_t */
}

/* ---- next / goto ---- */

static void resolve_refs(ld_t *ld)
{
    for (size_t i = 0; i < ld->n_refs; i++) {
        const step_ref_t *r = &ld->refs[i];
        step_build_t *target = dsl__find_step(ld, r->name);
        if (target == NULL) {
            char hint[128];
            dsl__error(ld, r->pos, dsl__step_hint(ld, r->name, hint, sizeof(hint)),
                       "%s: unknown step \"%s\"", r->what, r->name);
            continue;
        }
        const sg_step_t *t = &target->pub;
        if (t->seq != r->from->seq) {
            dsl__error(ld, r->pos, "jumps stay inside one sequence (the saga body or one branch)",
                       "%s: step \"%s\" is not in the same sequence as \"%s\"", r->what, r->name,
                       r->from->id);
            continue;
        }
        if (t->seq_index <= r->from->seq_index) {
            dsl__error(ld, r->pos, "sagas must terminate: jumps may only go forward",
                       "cycle: %s from \"%s\" goes back to \"%s\"", r->what, r->from->id, r->name);
            continue;
        }
        *r->slot = t;
    }
}

/* Marks the steps of seq reachable from its first step; reports the others. */
static void check_reachable(ld_t *ld, const sg_seq_t *seq)
{
    if (seq->n_steps == 0) {
        return;
    }
    bool *reach = sg_calloc(seq->n_steps, sizeof(*reach));
    if (reach == NULL) {
        ld->nomem = true;
        return;
    }
    reach[0] = true;
    for (size_t i = 0; i < seq->n_steps; i++) {
        const sg_step_t *st = seq->steps[i];
        if (st->kind == SG_STEP_PARALLEL) {
            for (size_t b = 0; b < st->n_branches; b++) {
                check_reachable(ld, &st->branches[b]);
            }
        }
        if (!reach[i]) {
            dsl__error(ld, st->pos, "remove it, or reach it with `next:` or an on_error `goto:`",
                       "step \"%s\" is unreachable", st->id);
            continue;
        }
        if (st->next != NULL) {
            reach[st->next->seq_index] = true;
        } else if (!st->end && i + 1 < seq->n_steps) {
            reach[i + 1] = true;
        }
        for (size_t r = 0; r < st->n_routes; r++) {
            if (st->routes[r].action == SG_ROUTE_GOTO && st->routes[r].target != NULL) {
                reach[st->routes[r].target->seq_index] = true;
            }
        }
        /* A skipped step (when: false) continues with the following one. */
        if (st->when.text != NULL && i + 1 < seq->n_steps) {
            reach[i + 1] = true;
        }
    }
    sg_free(reach);
}

/* ---- Richardson's classes ---- */

typedef enum { PHASE_BEFORE, PHASE_AFTER } phase_t;

static void check_retriable(ld_t *ld, step_build_t *sb)
{
    sg_step_t *st = &sb->pub;
    st->cls = SG_CLASS_RETRIABLE;
    if (st->compensate != NULL) {
        dsl__error(ld, sb->compensate_node->pos,
                   "steps after the pivot are retried until they succeed; remove compensate",
                   "step \"%s\" comes after the pivot and cannot have a compensation", st->id);
    }
    if (!sb->retry_attempts_set) {
        st->call.retry.max_attempts = 0; /* retriable: until it succeeds */
    } else if (st->call.retry.max_attempts != 0 && st->call.retry.max_attempts < 10) {
        dsl__error(ld, st->pos, "use `max_attempts: unlimited` (or at least 10)",
                   "retriable step \"%s\" must be retried until it succeeds, but max_attempts "
                   "is %u",
                   st->id, st->call.retry.max_attempts);
    }
    for (size_t r = 0; r < st->n_routes; r++) {
        if (st->routes[r].action == SG_ROUTE_COMPENSATE) {
            dsl__error(ld, st->routes[r].pos, "use `action: fail` or a `goto:`",
                       "step \"%s\" comes after the pivot: nothing can be compensated any more",
                       st->id);
        }
    }
}

static void classify_seq(ld_t *ld, const sg_seq_t *seq, phase_t phase, bool top);

static void classify_step(ld_t *ld, step_build_t *sb, phase_t phase)
{
    sg_step_t *st = &sb->pub;
    if (sb->kind_invalid) {
        return;
    }
    if (st->kind == SG_STEP_PARALLEL) {
        for (size_t b = 0; b < st->n_branches; b++) {
            classify_seq(ld, &st->branches[b], phase, false);
        }
        return;
    }
    if (st->kind != SG_STEP_ACTIVITY) {
        return;
    }
    if (phase == PHASE_AFTER) {
        check_retriable(ld, sb);
        return;
    }
    st->cls = SG_CLASS_COMPENSATABLE;
    if (st->compensate == NULL && !st->compensate_none) {
        dsl__error(ld, st->pos,
                   "add `compensate: {activity: ...}`, or `compensate: none` if it changes nothing",
                   "step \"%s\" comes before the pivot but has no compensate", st->id);
    }
}

static void classify_seq(ld_t *ld, const sg_seq_t *seq, phase_t phase, bool top)
{
    for (size_t i = 0; i < seq->n_steps; i++) {
        step_build_t *sb = sb_of(seq->steps[i]);
        sg_step_t *st = &sb->pub;
        if (st->cls != SG_CLASS_PIVOT) {
            classify_step(ld, sb, phase);
            continue;
        }
        if (!top) {
            dsl__error(ld, st->pos,
                       "make the whole parallel group a step before or after the pivot",
                       "the pivot \"%s\" cannot be inside a parallel branch", st->id);
            continue;
        }
        if (phase == PHASE_AFTER) {
            char hint[96];
            snprintf(hint, sizeof(hint), "the first pivot is \"%s\" at line %u", ld->def->pivot->id,
                     ld->def->pivot->pos.line);
            dsl__error(ld, st->pos, hint, "second pivot \"%s\": a saga has one point of no return",
                       st->id);
            continue;
        }
        if (st->compensate != NULL) {
            dsl__error(ld, sb->compensate_node->pos, "remove compensate from the pivot",
                       "the pivot \"%s\" is the point of no return and cannot be compensated",
                       st->id);
        }
        ld->def->pivot = st;
        phase = PHASE_AFTER;
    }
}

void dsl__check_structure(ld_t *ld)
{
    resolve_refs(ld);
    check_reachable(ld, &ld->def->body);
    if (!ld->pivot_unknown) {
        classify_seq(ld, &ld->def->body, PHASE_BEFORE, true);
    }
}
