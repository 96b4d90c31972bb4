/*
 * dsl plan: what a definition means before it runs. Computes, for a failing step,
 * which compensations run and in which order, and prints the failure matrix of a
 * whole saga (`sagactl check`). Pure functions of the immutable model.
 *
 * Control flow only goes forward (rules.c), so each sequence is a DAG in list order;
 * "may have run before X" is reachability and "surely ran" is dominance in it.
 */
#include "orchestrator/dsl/dsl.h"

#include <stdio.h>
#include <string.h>

/* Successors of step i in its sequence; n (one past the last) is the sequence's end. */
static size_t successors(const sg_seq_t *seq, size_t i, size_t out[], size_t cap)
{
    const sg_step_t *st = seq->steps[i];
    size_t k = 0;
    if (st->next != NULL) {
        out[k++] = st->next->seq_index;
    } else {
        out[k++] = st->end ? seq->n_steps : i + 1;
    }
    if (st->when.text != NULL && k < cap) {
        out[k++] = i + 1; /* skipped */
    }
    for (size_t r = 0; r < st->n_routes && k < cap; r++) {
        if (st->routes[r].action == SG_ROUTE_GOTO && st->routes[r].target != NULL) {
            out[k++] = st->routes[r].target->seq_index;
        }
    }
    return k;
}

/* Whether `to` (a step index or n for the end) is reachable from `from`, not passing `avoid`. */
static bool reaches(const sg_seq_t *seq, size_t from, size_t to, size_t avoid)
{
    bool seen[SG_PLAN_MAX_SEQ + 1] = {false};
    size_t n = seq->n_steps;
    if (n > SG_PLAN_MAX_SEQ) {
        return true;
    }
    seen[from] = from != avoid;
    for (size_t i = from; i < n; i++) {
        if (!seen[i]) {
            continue;
        }
        size_t succ[64];
        size_t k = successors(seq, i, succ, SG_ARRAY_LEN(succ));
        for (size_t j = 0; j < k; j++) {
            if (succ[j] != avoid && succ[j] <= n) {
                seen[succ[j]] = true;
            }
        }
    }
    return seen[to];
}

/* Step p surely ran before reaching `to` in seq: on every path, and not skippable. */
static bool surely_before(const sg_seq_t *seq, size_t p, size_t to)
{
    return seq->steps[p]->when.text == NULL && !reaches(seq, 0, to, p);
}

typedef struct {
    const sg_step_t **steps;
    bool *maybe;
    size_t count, cap;
} plan_t;

static void plan_add(plan_t *pl, const sg_step_t *st, bool maybe)
{
    if (st->kind == SG_STEP_ACTIVITY && st->compensate != NULL && pl->count < pl->cap) {
        pl->steps[pl->count] = st;
        pl->maybe[pl->count] = maybe;
        pl->count++;
    }
}

static void add_seq_upto(plan_t *pl, const sg_seq_t *seq, size_t to, bool maybe);

/* Every step of a group that completed (or is running beside the failure) may need undoing. */
static void add_group(plan_t *pl, const sg_step_t *group, const sg_seq_t *except, bool maybe)
{
    for (size_t b = group->n_branches; b > 0; b--) {
        const sg_seq_t *br = &group->branches[b - 1];
        if (br != except) {
            add_seq_upto(pl, br, br->n_steps, maybe);
        }
    }
}

/* Adds, in reverse order, the steps of seq that can run before position `to`. */
static void add_seq_upto(plan_t *pl, const sg_seq_t *seq, size_t to, bool maybe)
{
    for (size_t p = to; p > 0 && pl->count < pl->cap; p--) {
        size_t i = p - 1;
        if (!reaches(seq, 0, i, SIZE_MAX) || !reaches(seq, i, to, SIZE_MAX)) {
            continue;
        }
        bool m = maybe || !surely_before(seq, i, to);
        const sg_step_t *st = seq->steps[i];
        if (st->kind == SG_STEP_PARALLEL) {
            add_group(pl, st, NULL, m);
        } else {
            plan_add(pl, st, m);
        }
    }
}

size_t sg_def_compensation_plan(const sg_def_t *def, const sg_step_t *failed,
                                const sg_step_t **steps, bool *maybe, size_t cap)
{
    (void)def;
    plan_t pl = {.steps = steps, .maybe = maybe, .cap = cap};
    const sg_step_t *st = failed;
    while (st != NULL) {
        add_seq_upto(&pl, st->seq, st->seq_index, false);
        if (st->group != NULL) {
            /* Sibling branches run concurrently: their steps may or may not have run. */
            add_group(&pl, st->group, st->seq, true);
        }
        st = st->group;
    }
    return pl.count;
}

/* ---- names ---- */

const char *sg_step_class_name(sg_step_class_t cls)
{
    static const char *const names[] = {"compensatable", "pivot", "retriable", "neutral"};
    return (unsigned)cls < SG_ARRAY_LEN(names) ? names[cls] : "?";
}

const char *sg_step_kind_name(sg_step_kind_t kind)
{
    static const char *const names[] = {"activity", "parallel", "wait"};
    return (unsigned)kind < SG_ARRAY_LEN(names) ? names[kind] : "?";
}

const char *sg_event_when_name(sg_event_when_t when)
{
    static const char *const names[] = {"on_start", "on_complete", "on_compensated", "on_failed"};
    return (unsigned)when < SG_ARRAY_LEN(names) ? names[when] : "?";
}

/* ---- the failure matrix ---- */

static void put_attempts(sg_buf_t *out, const sg_retry_t *r)
{
    if (r->max_attempts == 0) {
        sg_buf_puts(out, "unlimited attempts");
    } else {
        sg_buf_printf(out, "%u attempt%s", r->max_attempts, r->max_attempts == 1 ? "" : "s");
    }
}

/* ", timeout 2h, heartbeat 10s" for a call with a heartbeat: the two bound its attempts
 * together. Calls without one keep the shorter header they always had. */
static bool put_heartbeat(sg_buf_t *out, const char *prefix, const sg_call_t *call)
{
    if (call->heartbeat_ms == 0) {
        return false;
    }
    char to[32], hb[32];
    sg_duration_format(call->timeout_ms, to, sizeof(to));
    sg_duration_format(call->heartbeat_ms, hb, sizeof(hb));
    sg_buf_printf(out, "%stimeout %s, heartbeat %s", prefix, to, hb);
    return true;
}

static void put_plan(const sg_def_t *def, const sg_step_t *st, sg_buf_t *out, bool *any_maybe)
{
    const sg_step_t *steps[256];
    bool maybe[256];
    size_t n = sg_def_compensation_plan(def, st, steps, maybe, SG_ARRAY_LEN(steps));
    if (n == 0) {
        sg_buf_puts(out, "nothing to compensate");
    } else {
        sg_buf_puts(out, "compensate ");
    }
    for (size_t i = 0; i < n; i++) {
        sg_buf_printf(out, "%s%s (%s)%s", i ? ", " : "", steps[i]->compensate->activity,
                      steps[i]->id, maybe[i] ? "?" : "");
        *any_maybe = *any_maybe || maybe[i];
    }
    sg_buf_puts(out, " -> COMPENSATED\n");
}

static void put_routes(const sg_def_t *def, const sg_step_t *st, int depth, sg_buf_t *out,
                       bool *any_maybe)
{
    for (size_t r = 0; r < st->n_routes; r++) {
        const sg_route_t *rt = &st->routes[r];
        sg_buf_printf(out, "%*s    on ", depth * 2, "");
        for (size_t c = 0; c < rt->n_codes; c++) {
            sg_buf_printf(out, "%s%s", c ? "|" : "", rt->codes[c]);
        }
        if (rt->action == SG_ROUTE_GOTO) {
            sg_buf_printf(out, ": goto %s\n", rt->target ? rt->target->id : "?");
        } else if (rt->action == SG_ROUTE_FAIL) {
            sg_buf_puts(out, ": no compensation -> FAILED\n");
        } else {
            sg_buf_puts(out, ": at once, ");
            put_plan(def, st, out, any_maybe);
        }
    }
    for (size_t c = 0; c < st->call.retry.n_non_retryable; c++) {
        sg_buf_printf(out, "%*s    on %s: not retried\n", depth * 2, "",
                      st->call.retry.non_retryable[c]);
    }
}

static void put_step(const sg_def_t *def, const sg_step_t *st, int depth, sg_buf_t *out,
                     bool *any_maybe, bool *any_heartbeat)
{
    sg_buf_printf(out, "%*s%s", depth * 2, "", st->id);
    if (st->kind == SG_STEP_PARALLEL) {
        sg_buf_printf(out, " (parallel, %zu branches)\n", st->n_branches);
        for (size_t b = 0; b < st->n_branches; b++) {
            const sg_seq_t *br = &st->branches[b];
            sg_buf_printf(out, "%*sbranch %s\n", depth * 2 + 2, "", br->id);
            for (size_t i = 0; i < br->n_steps; i++) {
                put_step(def, br->steps[i], depth + 2, out, any_maybe, any_heartbeat);
            }
        }
        return;
    }
    if (st->kind == SG_STEP_WAIT) {
        sg_buf_puts(out, " (wait): cannot fail\n");
        return;
    }
    sg_buf_printf(out, " (%s, %s, ", st->call.activity, sg_step_class_name(st->cls));
    put_attempts(out, &st->call.retry);
    *any_heartbeat |= put_heartbeat(out, ", ", &st->call);
    sg_buf_printf(out, "%s)\n", st->when.text ? ", conditional" : "");
    if (st->cls == SG_CLASS_RETRIABLE && st->call.retry.max_attempts == 0) {
        sg_buf_printf(out, "%*s  retried until it succeeds: cannot fail\n", depth * 2, "");
        put_routes(def, st, depth, out, any_maybe);
        return;
    }
    if (st->cls == SG_CLASS_RETRIABLE) {
        sg_buf_printf(out, "%*s  fails: nothing is compensated past the pivot -> FAILED\n",
                      depth * 2, "");
        put_routes(def, st, depth, out, any_maybe);
        return;
    }
    sg_buf_printf(out, "%*s  fails: ", depth * 2, "");
    put_plan(def, st, out, any_maybe);
    if (st->compensate != NULL) {
        sg_buf_printf(
            out,
            "%*s  times out or fails retryably: %s (%s) first, as the effect may have happened\n",
            depth * 2, "", st->compensate->activity, st->id);
        if (st->compensate->heartbeat_ms != 0) {
            sg_buf_printf(out, "%*s  compensation %s: ", depth * 2, "", st->compensate->activity);
            *any_heartbeat |= put_heartbeat(out, "", st->compensate);
            sg_buf_puts(out, "\n");
        }
    }
    put_routes(def, st, depth, out, any_maybe);
}

void sg_def_failure_matrix(const sg_def_t *def, sg_buf_t *out)
{
    size_t count[4] = {0};
    for (size_t i = 0; i < def->n_steps; i++) {
        if (def->all_steps[i]->kind == SG_STEP_ACTIVITY) {
            count[def->all_steps[i]->cls]++;
        }
    }
    sg_buf_printf(out, "%s v%lld: %zu steps (%zu compensatable, %zu pivot, %zu retriable)\n",
                  def->name, (long long)def->version, def->n_steps, count[SG_CLASS_COMPENSATABLE],
                  count[SG_CLASS_PIVOT], count[SG_CLASS_RETRIABLE]);
    if (def->timeout_ms != 0) {
        char d[32];
        sg_duration_format(def->timeout_ms, d, sizeof(d));
        sg_buf_printf(out, "deadline %s: when it passes before the pivot, the saga compensates\n",
                      d);
    }
    sg_buf_puts(out, "\n");
    bool any_maybe = false, any_heartbeat = false;
    for (size_t i = 0; i < def->body.n_steps; i++) {
        put_step(def, def->body.steps[i], 0, out, &any_maybe, &any_heartbeat);
    }
    sg_buf_puts(out, "\n");
    if (any_maybe) {
        sg_buf_puts(out, "(x)? = only if step x ran (a condition, a jump, or a parallel branch)\n");
    }
    if (any_heartbeat) {
        sg_buf_puts(out, "heartbeat H: after its first heartbeat, an attempt times out when the "
                         "next one does not come within H (saga.heartbeat_timeout); its timeout "
                         "bounds it in any case (saga.timeout)\n");
    }
    sg_buf_puts(out, "A compensation that exhausts its retries ends the saga COMPENSATION_FAILED "
                     "for an operator.\n");
}

void sg_diags_format(const sg_diags_t *diags, const char *path, sg_buf_t *out)
{
    for (size_t i = 0; i < diags->count; i++) {
        const sg_diag_t *d = &diags->items[i];
        if (d->pos.line == 0) {
            sg_buf_printf(out, "%s: error: %s\n", path, d->message);
        } else {
            sg_buf_printf(out, "%s:%u:%u: error: %s\n", path, d->pos.line, d->pos.col, d->message);
        }
        if (d->hint != NULL) {
            sg_buf_printf(out, "  hint: %s\n", d->hint);
        }
    }
    if (diags->dropped > 0) {
        sg_buf_printf(out, "%s: note: %zu more error%s not shown\n", path, diags->dropped,
                      diags->dropped == 1 ? "" : "s");
    }
}
