/*
 * visualize: saga definition (+ live instance state) -> Graphviz DOT.
 *
 * Nodes and clusters go to the output as the model is walked; edges are collected in a
 * second buffer and appended at the end, because an edge written inside a cluster would
 * pull its endpoints into that cluster. Node names come from step indexes (s3, c3,
 * s3_when, s3_fork, ...), never from YAML text, and every YAML string is written through
 * viz__text() (label.c), which makes it safe inside an HTML-like label. Where a failing
 * step enters the undo chain comes from the dsl's own compensation plan, so the picture
 * and the engine agree. This file must never read anything but the model and the state
 * array, so the output is deterministic.
 */
#include "visualize/visualize_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ---- palette: one place, so the docs and the legend agree ---- */
#define FONT "Helvetica,Arial,sans-serif"
#define INK "#37474f"
#define COMP_RED "firebrick"
#define COMP_INK "#7f1d1d"
#define COMP_FILL "#fdecea"
#define FAIL_RED "#b71c1c"
#define GOTO_ORANGE "#ef6c00"
#define WHEN_INK "#8d6e00"
#define SKIP_GREY "#9e9e9e"

typedef struct {
    char s[48];
} name_t;

typedef struct {
    const sg_def_t *def;
    const sg_viz_step_t *live; /* NULL: definition only */
    sg_buf_t *out;             /* graph header, nodes, clusters */
    sg_buf_t edges;            /* appended after every node is declared */
    bool to_compensated;       /* some edge leads to the COMPENSATED end */
    bool to_failed;            /* some edge leads to the FAILED end */
    bool body_jumps;           /* the saga body uses next, end or goto */
} viz_t;

/* Where a sequence sits: the group whose branch it is, and the frame around that. */
typedef struct frame {
    const sg_seq_t *seq;
    const sg_step_t *group; /* NULL for the saga body */
    const struct frame *parent;
    name_t exit;      /* where the sequence continues when it ends */
    name_t comp_exit; /* where its compensation chain continues */
} frame_t;

static const char *const state_names[] = {
    "PENDING", "RUNNING",      "RETRYING",    "DONE",
    "FAILED",  "COMPENSATING", "COMPENSATED", "COMPENSATION_FAILED",
    "SKIPPED",
};

const char *sg_viz_state_name(sg_viz_state_t state)
{
    if ((unsigned)state >= SG_ARRAY_LEN(state_names)) {
        return "UNKNOWN";
    }
    return state_names[state];
}

/* ---- node names ---- */

static name_t name_of(const char *prefix, const sg_step_t *st, const char *suffix)
{
    name_t n;
    snprintf(n.s, sizeof n.s, "%s%" PRIu32 "%s", prefix, st->index, suffix);
    return n;
}

static name_t name_lit(const char *s)
{
    name_t n;
    snprintf(n.s, sizeof n.s, "%s", s);
    return n;
}

/* Where control enters a step: its `when` diamond, a group's fork bar, or the step. */
static name_t step_in(const sg_step_t *st)
{
    if (st->when.text != NULL) {
        return name_of("s", st, "_when");
    }
    return name_of("s", st, st->kind == SG_STEP_PARALLEL ? "_fork" : "");
}

/* Where control enters once the `when` holds. */
static name_t body_in(const sg_step_t *st)
{
    return name_of("s", st, st->kind == SG_STEP_PARALLEL ? "_fork" : "");
}

static name_t step_out(const sg_step_t *st)
{
    return name_of("s", st, st->kind == SG_STEP_PARALLEL ? "_join" : "");
}

/* ---- compensation structure ---- */

/* Does undoing this step run anything? A group does when one of its steps has a
 * compensation; its undo then has a fork and a join bar of its own. */
static bool has_comp(const sg_step_t *st)
{
    if (st->kind == SG_STEP_ACTIVITY) {
        return st->compensate != NULL;
    }
    for (size_t b = 0; st->kind == SG_STEP_PARALLEL && b < st->n_branches; b++) {
        for (size_t k = 0; k < st->branches[b].n_steps; k++) {
            if (has_comp(st->branches[b].steps[k])) {
                return true;
            }
        }
    }
    return false;
}

static name_t comp_in(const sg_step_t *st)
{
    return name_of("c", st, st->kind == SG_STEP_PARALLEL ? "_fork" : "");
}

static name_t comp_out(const sg_step_t *st)
{
    return name_of("c", st, st->kind == SG_STEP_PARALLEL ? "_join" : "");
}

/* The compensation that runs first when everything before position k of the frame's
 * sequence has completed: the nearest earlier step with one, else the chain's exit. */
static name_t comp_before(const frame_t *f, size_t k)
{
    while (k-- > 0) {
        if (has_comp(f->seq->steps[k])) {
            return comp_in(f->seq->steps[k]);
        }
    }
    return f->comp_exit;
}

/* Where compensation starts when the step at position k of frame f fails. Inside a
 * parallel group the failure cancels the whole group, up to the outermost one, and any
 * branch may have completed steps: it is that group's whole undo. In the saga body it is
 * the first step of the dsl's compensation plan (the latest step that can have run
 * before), or the group holding that step; with an empty plan, COMPENSATED. */
static name_t fail_entry(const viz_t *v, const frame_t *f, size_t k)
{
    const sg_step_t *st = f->seq->steps[k], *top = st;
    while (f->group != NULL) {
        top = f->group;
        f = f->parent;
    }
    if (top != st && has_comp(top)) {
        return comp_in(top);
    }
    if (!v->body_jumps) {
        /* Without next/end/goto every earlier step can have run: the plan's head is the
         * nearest earlier compensation, and asking the plan (quadratic) is not needed. */
        for (size_t i = 0; i < f->seq->n_steps; i++) {
            if (f->seq->steps[i] == top) {
                return comp_before(f, i);
            }
        }
    }
    const sg_step_t *first[1];
    bool maybe[1];
    if (sg_def_compensation_plan(v->def, top, first, maybe, 1) == 0) {
        return f->comp_exit;
    }
    while (first[0]->group != NULL) {
        first[0] = first[0]->group;
    }
    return comp_in(first[0]);
}

/* ---- live state ---- */

static const sg_viz_step_t *live_of(const viz_t *v, const sg_step_t *st)
{
    if (v->live == NULL || st->index >= v->def->n_steps) {
        return NULL;
    }
    return &v->live[st->index];
}

static sg_viz_state_t state_of(const viz_t *v, const sg_step_t *st)
{
    const sg_viz_step_t *lv = live_of(v, st);
    if (lv == NULL || (unsigned)lv->state >= SG_ARRAY_LEN(state_names)) {
        return SG_VIZ_PENDING;
    }
    return lv->state;
}

/* Fill of a forward node; the three compensation states grey it: it ran and is (being)
 * undone, the compensation node beside it tells how that goes. */
static const char *fwd_fill(sg_viz_state_t s)
{
    static const char *const fill[] = {
        [SG_VIZ_PENDING] = "#ffffff",     [SG_VIZ_RUNNING] = "#bbdefb",
        [SG_VIZ_RETRYING] = "#ffe0b2",    [SG_VIZ_DONE] = "#c8e6c9",
        [SG_VIZ_FAILED] = "#ffcdd2",      [SG_VIZ_COMPENSATING] = "#e0e0e0",
        [SG_VIZ_COMPENSATED] = "#e0e0e0", [SG_VIZ_COMPENSATION_FAILED] = "#e0e0e0",
        [SG_VIZ_SKIPPED] = "#fafafa",
    };
    return fill[s];
}

/* A group's background: the same hues, paler, so its steps stay readable on it. */
static const char *cluster_fill(sg_viz_state_t s)
{
    static const char *const fill[] = {
        [SG_VIZ_PENDING] = "#f7f9fa",     [SG_VIZ_RUNNING] = "#e8f2fd",
        [SG_VIZ_RETRYING] = "#fff4e5",    [SG_VIZ_DONE] = "#eef7ee",
        [SG_VIZ_FAILED] = "#fdeef0",      [SG_VIZ_COMPENSATING] = "#f2f2f2",
        [SG_VIZ_COMPENSATED] = "#f2f2f2", [SG_VIZ_COMPENSATION_FAILED] = "#f2f2f2",
        [SG_VIZ_SKIPPED] = "#fafafa",
    };
    return fill[s];
}

static const char *comp_fill(sg_viz_state_t s)
{
    switch (s) {
    case SG_VIZ_COMPENSATING:
        return "#bbdefb";
    case SG_VIZ_COMPENSATED:
        return "#e1bee7";
    case SG_VIZ_COMPENSATION_FAILED:
        return "#8b0000";
    default:
        return "#ffffff";
    }
}

/* The state line at the bottom of a forward node in the live view. */
static void put_state_line(sg_buf_t *b, const viz_t *v, const sg_step_t *st)
{
    const sg_viz_step_t *lv = live_of(v, st);
    sg_viz_state_t s = state_of(v, st);
    if (lv == NULL || s == SG_VIZ_PENDING) {
        return;
    }
    static const char *const text[] = {
        [SG_VIZ_RUNNING] = "running",
        [SG_VIZ_RETRYING] = "retry ",
        [SG_VIZ_DONE] = "done ✓",
        [SG_VIZ_FAILED] = "failed ✗",
        [SG_VIZ_COMPENSATING] = "undoing",
        [SG_VIZ_COMPENSATED] = "undone",
        [SG_VIZ_COMPENSATION_FAILED] = "undo failed",
        [SG_VIZ_SKIPPED] = "skipped",
    };
    sg_buf_printf(b, "<BR/><B>%s", text[s]);
    if (s == SG_VIZ_RETRYING) {
        viz__attempts(b, lv);
    } else if ((s == SG_VIZ_RUNNING || s == SG_VIZ_FAILED) && lv->attempt > 0) {
        sg_buf_puts(b, " · attempt ");
        viz__attempts(b, lv);
    }
    sg_buf_puts(b, "</B>");
}

/* ---- nodes ---- */

static void indent(sg_buf_t *b, int depth)
{
    for (int i = 0; i < depth; i++) {
        sg_buf_puts(b, "  ");
    }
}

/* id="step-<id>" for SVG scripts and styles, when the id is plain enough. */
static void put_svg_id(sg_buf_t *b, const char *prefix, const sg_step_t *st)
{
    if (viz__plain_ident(st->id)) {
        sg_buf_printf(b, ", id=\"%s-%s\"", prefix, st->id);
    }
}

static void put_call_line(sg_buf_t *b, const sg_call_t *call)
{
    sg_buf_puts(b, "timeout ");
    viz__dur(b, call->timeout_ms);
    if (call->heartbeat_ms != 0) {
        sg_buf_puts(b, " · heartbeat ");
        viz__dur(b, call->heartbeat_ms);
    }
    sg_buf_puts(b, " · ");
    viz__retry(b, &call->retry);
}

static void node_activity(viz_t *v, const sg_step_t *st, int depth)
{
    sg_buf_t *b = v->out;
    const char *shape = "box", *style = "rounded,filled", *color = "#1565c0";
    const char *fill = "#e3f2fd", *pen = "1.5";
    if (st->cls == SG_CLASS_PIVOT) {
        shape = "doubleoctagon", style = "filled", color = "#b26a00", fill = "#fff3e0";
        pen = "2.5";
    } else if (st->cls == SG_CLASS_RETRIABLE) {
        color = "#2e7d32", fill = "#e8f5e9";
    }
    sg_viz_state_t s = state_of(v, st);
    if (v->live != NULL) {
        fill = fwd_fill(s);
        if (s == SG_VIZ_SKIPPED) {
            style = st->cls == SG_CLASS_PIVOT ? "filled,dotted" : "rounded,filled,dotted";
        }
    }
    indent(b, depth);
    sg_buf_printf(b,
                  "s%" PRIu32 " [shape=%s, style=\"%s\", color=\"%s\", fillcolor=\"%s\", "
                  "penwidth=%s%s",
                  st->index, shape, style, color, fill, pen,
                  s == SG_VIZ_SKIPPED ? ", fontcolor=\"#9e9e9e\"" : "");
    put_svg_id(b, "step", st);
    sg_buf_puts(b, ", label=<");
    if (st->cls == SG_CLASS_PIVOT) {
        sg_buf_puts(b, "<FONT POINT-SIZE=\"9\" COLOR=\"#b26a00\"><B>PIVOT · point of no "
                       "return</B></FONT><BR/>");
    }
    sg_buf_puts(b, "<B>");
    viz__text(b, st->id, VIZ_MAX_ID, VIZ_TXT_ONE_LINE);
    sg_buf_puts(b, "</B><BR/>");
    viz__text(b, st->call.activity, VIZ_MAX_ACTIVITY, VIZ_TXT_ONE_LINE);
    viz__small(b, "#455a64");
    put_call_line(b, &st->call);
    sg_buf_puts(b, "</FONT>");
    if (st->call.retry.n_non_retryable > 0) {
        viz__small(b, "#455a64");
        sg_buf_puts(b, "fails at once on ");
        viz__codes(b, st->call.retry.non_retryable, st->call.retry.n_non_retryable);
        sg_buf_puts(b, "</FONT>");
    }
    if (st->cls == SG_CLASS_RETRIABLE) {
        viz__small(b, "#2e7d32");
        sg_buf_puts(b, "retriable</FONT>");
    } else if (st->compensate_none) {
        viz__small(b, "#757575");
        sg_buf_puts(b, "nothing to undo</FONT>");
    }
    if (st->description != NULL) {
        viz__small(b, "#616161");
        sg_buf_puts(b, "<I>");
        viz__text(b, st->description, VIZ_MAX_DESC, VIZ_TXT_ONE_LINE);
        sg_buf_puts(b, "</I></FONT>");
    }
    put_state_line(b, v, st);
    sg_buf_puts(b, ">];\n");
}

static void node_compensation(viz_t *v, const sg_step_t *st, int depth)
{
    sg_buf_t *b = v->out;
    const sg_viz_step_t *lv = live_of(v, st);
    sg_viz_state_t s = state_of(v, st);
    bool dark = s == SG_VIZ_COMPENSATION_FAILED;
    indent(b, depth);
    sg_buf_printf(b,
                  "c%" PRIu32 " [shape=box, style=\"rounded,dashed,filled\", color=\"%s\", "
                  "fontcolor=\"%s\", fillcolor=\"%s\"",
                  st->index, COMP_RED, dark ? "#ffffff" : COMP_INK,
                  v->live != NULL ? comp_fill(s) : COMP_FILL);
    put_svg_id(b, "undo", st);
    sg_buf_puts(b, ", label=<↩ ");
    viz__text(b, st->compensate->activity, VIZ_MAX_ACTIVITY, VIZ_TXT_ONE_LINE);
    viz__small(b, dark ? "#ffffff" : COMP_INK);
    sg_buf_puts(b, "undo ");
    viz__text(b, st->id, VIZ_MAX_ID, VIZ_TXT_ONE_LINE);
    sg_buf_puts(b, "<BR/>");
    put_call_line(b, st->compensate);
    sg_buf_puts(b, "</FONT>");
    if (lv != NULL && s >= SG_VIZ_COMPENSATING && s <= SG_VIZ_COMPENSATION_FAILED) {
        static const char *const text[] = {"undoing", "undone ✓", "undo failed ✗"};
        sg_buf_printf(b, "<BR/><B>%s", text[s - SG_VIZ_COMPENSATING]);
        if (lv->attempt > 0) {
            sg_buf_puts(b, " · attempt ");
            viz__attempts(b, lv);
        }
        sg_buf_puts(b, "</B>");
    }
    sg_buf_puts(b, ">];\n");
    /* Beside its step, on the right (a flat edge keeps its tail on the left): the undo
     * lane runs along the forward path. */
    indent(b, depth);
    sg_buf_printf(b, "{ rank=same; s%" PRIu32 " -> c%" PRIu32 " [style=invis]; }\n", st->index,
                  st->index);
}

static void node_wait(viz_t *v, const sg_step_t *st, int depth)
{
    sg_buf_t *b = v->out;
    sg_viz_state_t s = state_of(v, st);
    indent(b, depth);
    sg_buf_printf(b,
                  "s%" PRIu32 " [shape=ellipse, style=\"filled%s\", color=\"#607d8b\", "
                  "fillcolor=\"%s\"",
                  st->index, s == SG_VIZ_SKIPPED ? ",dotted" : "",
                  v->live != NULL ? fwd_fill(s) : "#eceff1");
    put_svg_id(b, "step", st);
    sg_buf_puts(b, ", label=<◷ <B>");
    viz__text(b, st->id, VIZ_MAX_ID, VIZ_TXT_ONE_LINE);
    sg_buf_puts(b, "</B><BR/>");
    if (st->wait_until.text != NULL) {
        sg_buf_puts(b, "until ");
        viz__text(b, st->wait_until.text, VIZ_MAX_EXPR, VIZ_TXT_ONE_LINE);
    } else {
        sg_buf_puts(b, "wait ");
        viz__dur(b, st->wait_ms);
    }
    if (st->description != NULL) {
        viz__small(b, "#616161");
        sg_buf_puts(b, "<I>");
        viz__text(b, st->description, VIZ_MAX_DESC, VIZ_TXT_ONE_LINE);
        sg_buf_puts(b, "</I></FONT>");
    }
    put_state_line(b, v, st);
    sg_buf_puts(b, ">];\n");
}

static void node_bar(sg_buf_t *b, int depth, const name_t *n, const char *color)
{
    indent(b, depth);
    sg_buf_printf(b,
                  "%s [shape=box, style=filled, color=\"%s\", fillcolor=\"%s\", label=\"\", "
                  "width=1.4, height=0.06, fixedsize=true];\n",
                  n->s, color, color);
}

static void cluster_name(sg_buf_t *b, const sg_step_t *group)
{
    if (viz__plain_ident(group->id)) {
        sg_buf_printf(b, "cluster_%s", group->id);
    } else {
        sg_buf_printf(b, "cluster_S%" PRIu32, group->index);
    }
}

static void nodes_seq(viz_t *v, const sg_seq_t *seq, int depth);

static void nodes_parallel(viz_t *v, const sg_step_t *st, int depth)
{
    sg_buf_t *b = v->out;
    sg_viz_state_t s = state_of(v, st);
    indent(b, depth);
    sg_buf_puts(b, "subgraph ");
    cluster_name(b, st);
    sg_buf_puts(b, " {\n");
    indent(b, depth + 1);
    sg_buf_printf(b,
                  "style=\"rounded,filled%s\"; color=\"#78909c\"; fillcolor=\"%s\"; "
                  "fontsize=12; label=<<B>parallel ",
                  s == SG_VIZ_SKIPPED ? ",dotted" : "", cluster_fill(s));
    viz__text(b, st->id, VIZ_MAX_ID, VIZ_TXT_ONE_LINE);
    sg_buf_puts(b, "</B>");
    if (st->description != NULL) {
        viz__small(b, "#616161");
        sg_buf_puts(b, "<I>");
        viz__text(b, st->description, VIZ_MAX_DESC, VIZ_TXT_ONE_LINE);
        sg_buf_puts(b, "</I></FONT>");
    }
    put_state_line(b, v, st);
    sg_buf_puts(b, ">;\n");
    name_t fork = name_of("s", st, "_fork"), join = name_of("s", st, "_join");
    node_bar(b, depth + 1, &fork, INK);
    node_bar(b, depth + 1, &join, INK);
    if (has_comp(st)) {
        name_t cf = name_of("c", st, "_fork"), cj = name_of("c", st, "_join");
        node_bar(b, depth + 1, &cf, COMP_RED);
        node_bar(b, depth + 1, &cj, COMP_RED);
        indent(b, depth + 1);
        sg_buf_printf(b, "{ rank=same; %s -> %s [style=invis]; }\n", join.s, cf.s);
        indent(b, depth + 1);
        sg_buf_printf(b, "{ rank=same; %s -> %s [style=invis]; }\n", fork.s, cj.s);
    }
    for (size_t i = 0; i < st->n_branches; i++) {
        indent(b, depth + 1);
        sg_buf_puts(b, "subgraph ");
        cluster_name(b, st);
        sg_buf_printf(b, "_B%zu {\n", i);
        indent(b, depth + 2);
        sg_buf_puts(b, "style=\"rounded,dashed\"; color=\"#90a4ae\"; fontsize=10; "
                       "fontcolor=\"#546e7a\"; label=<branch ");
        viz__text(b, st->branches[i].id, VIZ_MAX_ID, VIZ_TXT_ONE_LINE);
        sg_buf_puts(b, ">;\n");
        nodes_seq(v, &st->branches[i], depth + 2);
        indent(b, depth + 1);
        sg_buf_puts(b, "}\n");
    }
    indent(b, depth);
    sg_buf_puts(b, "}\n");
}

static void nodes_seq(viz_t *v, const sg_seq_t *seq, int depth)
{
    for (size_t k = 0; k < seq->n_steps; k++) {
        const sg_step_t *st = seq->steps[k];
        if (st->when.text != NULL) {
            indent(v->out, depth);
            sg_buf_printf(v->out,
                          "s%" PRIu32 "_when [shape=diamond, style=filled, "
                          "color=\"#f9a825\", fillcolor=\"#fff8e1\", label=\"?\", "
                          "width=0.3, height=0.3, fixedsize=true];\n",
                          st->index);
        }
        switch (st->kind) {
        case SG_STEP_ACTIVITY:
            node_activity(v, st, depth);
            if (st->compensate != NULL) {
                node_compensation(v, st, depth);
            }
            break;
        case SG_STEP_WAIT:
            node_wait(v, st, depth);
            break;
        case SG_STEP_PARALLEL:
            nodes_parallel(v, st, depth);
            break;
        }
    }
}

/* ---- edges ---- */

/* Starts "from -> to [attrs"; the caller may add a label; edge_end closes it. */
static void edge_begin(viz_t *v, const name_t *from, const name_t *to, const char *attrs)
{
    v->to_compensated |= strcmp(to->s, "compensated") == 0;
    v->to_failed |= strcmp(to->s, "failed") == 0;
    sg_buf_printf(&v->edges, "  %s -> %s [%s", from->s, to->s, attrs);
}

static void edge_end(viz_t *v)
{
    sg_buf_puts(&v->edges, "];\n");
}

static void edge(viz_t *v, name_t from, name_t to, const char *attrs, const char *label)
{
    edge_begin(v, &from, &to, attrs);
    if (label != NULL) {
        sg_buf_printf(&v->edges, ", label=<%s>", label);
    }
    edge_end(v);
}

#define E_FORWARD "color=\"" INK "\""
#define E_COMP "style=dashed, color=\"" COMP_RED "\", fontcolor=\"" COMP_RED "\", constraint=false"
#define E_FAILED "color=\"" FAIL_RED "\", fontcolor=\"" FAIL_RED "\", constraint=false"
#define E_GOTO "color=\"" GOTO_ORANGE "\", fontcolor=\"" GOTO_ORANGE "\""

/* A step that exhausts its retries or hits a non-retryable code fails; one with
 * unlimited retries and no such codes never does. */
static bool can_fail(const sg_step_t *st)
{
    return st->call.retry.max_attempts != 0 || st->call.retry.n_non_retryable > 0;
}

/* Where an on_error route leads; false for a goto without a target. */
static bool route_to(const viz_t *v, const frame_t *f, size_t k, const sg_route_t *r, name_t *to,
                     const char **attrs)
{
    if (r->action == SG_ROUTE_GOTO && r->target != NULL) {
        *to = step_in(r->target), *attrs = E_GOTO;
    } else if (r->action == SG_ROUTE_FAIL) {
        *to = name_lit("failed"), *attrs = E_FAILED;
    } else if (r->action == SG_ROUTE_COMPENSATE) {
        *to = fail_entry(v, f, k), *attrs = E_COMP;
    } else {
        return false;
    }
    return true;
}

/* The failure edges of an activity step: one per on_error route, and the default
 * "fails" edge unless a "*" route catches everything. A route leading where the default
 * leads is folded into its label ("fails · on a, b") instead of doubling the edge. */
static void edges_failure(viz_t *v, const frame_t *f, size_t k)
{
    const sg_step_t *st = f->seq->steps[k];
    name_t self = name_of("s", st, ""), to, dflt;
    const char *attrs, *dflt_attrs = NULL;
    bool catch_all = false;
    for (size_t i = 0; i < st->n_routes; i++) {
        for (size_t c = 0; c < st->routes[i].n_codes; c++) {
            catch_all |= strcmp(st->routes[i].codes[c], "*") == 0;
        }
    }
    if (!catch_all && can_fail(st)) {
        bool retriable = st->cls == SG_CLASS_RETRIABLE;
        dflt = retriable ? name_lit("failed") : fail_entry(v, f, k);
        dflt_attrs = retriable ? E_FAILED : E_COMP;
        edge_begin(v, &self, &dflt, dflt_attrs);
        sg_buf_puts(&v->edges, ", label=<fails");
        for (size_t i = 0; i < st->n_routes; i++) {
            const sg_route_t *r = &st->routes[i];
            if (route_to(v, f, k, r, &to, &attrs) && strcmp(to.s, dflt.s) == 0) {
                sg_buf_puts(&v->edges, " · on ");
                viz__codes(&v->edges, r->codes, r->n_codes);
            }
        }
        sg_buf_puts(&v->edges, ">");
        edge_end(v);
    }
    if (st->compensate != NULL) {
        /* A timeout leaves the effect in doubt: the step's own undo runs first. */
        edge(v, self, name_of("c", st, ""), E_COMP, "times out");
    }
    for (size_t i = 0; i < st->n_routes; i++) {
        const sg_route_t *r = &st->routes[i];
        if (!route_to(v, f, k, r, &to, &attrs) ||
            (dflt_attrs != NULL && strcmp(to.s, dflt.s) == 0)) {
            continue;
        }
        edge_begin(v, &self, &to, attrs);
        sg_buf_puts(&v->edges, ", label=<on ");
        viz__codes(&v->edges, r->codes, r->n_codes);
        sg_buf_puts(&v->edges, ">");
        edge_end(v);
    }
}

static void edges_seq(viz_t *v, const frame_t *f);

static void edges_parallel(viz_t *v, const frame_t *f, const sg_step_t *st)
{
    name_t fork = name_of("s", st, "_fork"), join = name_of("s", st, "_join");
    bool comp = has_comp(st);
    for (size_t i = 0; i < st->n_branches; i++) {
        const sg_seq_t *br = &st->branches[i];
        frame_t inner = {.seq = br,
                         .group = st,
                         .parent = f,
                         .exit = join,
                         .comp_exit = name_of("c", st, "_join")};
        edge(v, fork, br->n_steps > 0 ? step_in(br->steps[0]) : join, E_FORWARD, NULL);
        edges_seq(v, &inner);
        if (comp) {
            name_t last = comp_before(&inner, br->n_steps);
            if (strcmp(last.s, inner.comp_exit.s) != 0) {
                edge(v, name_of("c", st, "_fork"), last, E_COMP, NULL);
            }
        }
    }
}

static void edges_seq(viz_t *v, const frame_t *f)
{
    const sg_seq_t *seq = f->seq;
    for (size_t k = 0; k < seq->n_steps; k++) {
        const sg_step_t *st = seq->steps[k];
        name_t follow = k + 1 < seq->n_steps ? step_in(seq->steps[k + 1]) : f->exit;
        if (st->when.text != NULL) {
            name_t w = name_of("s", st, "_when");
            name_t in = body_in(st);
            edge_begin(v, &w, &in, "color=\"" WHEN_INK "\", fontcolor=\"" WHEN_INK "\"");
            sg_buf_puts(&v->edges, ", label=<when ");
            viz__text(&v->edges, st->when.text, VIZ_MAX_EXPR, VIZ_TXT_ONE_LINE);
            sg_buf_puts(&v->edges, ">");
            edge_end(v);
            edge(v, w, follow, "style=dotted, color=\"" SKIP_GREY "\", fontcolor=\"" SKIP_GREY "\"",
                 "else skip");
        }
        if (st->kind == SG_STEP_PARALLEL) {
            edges_parallel(v, f, st);
        }
        if (st->end) {
            edge(v, step_out(st), f->exit, E_FORWARD, "end");
        } else if (st->next != NULL) {
            edge(v, step_out(st), step_in(st->next), E_FORWARD, "next");
        } else {
            edge(v, step_out(st), follow, E_FORWARD, NULL);
        }
        if (st->kind == SG_STEP_ACTIVITY) {
            edges_failure(v, f, k);
        }
        /* The undo chain runs backwards: this step's undo, then the one before it. */
        if (has_comp(st)) {
            edge(v, comp_out(st), comp_before(f, k), E_COMP, NULL);
        }
    }
}

/* ---- graph frame ---- */

static void put_events(sg_buf_t *b, const sg_def_t *def, sg_event_when_t when, const char *c)
{
    size_t n = def->n_events[when];
    if (n == 0) {
        return;
    }
    viz__small(b, c);
    sg_buf_puts(b, "emits ");
    for (size_t i = 0; i < n && i < VIZ_MAX_LIST; i++) {
        sg_buf_puts(b, i > 0 ? ", " : "");
        viz__text(b, def->events[when][i].type, VIZ_MAX_ID, VIZ_TXT_ONE_LINE);
    }
    if (n > VIZ_MAX_LIST) {
        sg_buf_printf(b, " +%zu", n - VIZ_MAX_LIST);
    }
    sg_buf_puts(b, "</FONT>");
}

static void graph_header(viz_t *v)
{
    sg_buf_t *b = v->out;
    const sg_def_t *def = v->def;
    sg_buf_puts(b, "digraph \"");
    /* The graph name is only a title in SVG; plain characters keep it unquotable-safe. */
    for (const char *p = def->name != NULL ? def->name : ""; *p != '\0' && p - def->name < 64;
         p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-';
        sg_buf_append(b, ok ? p : "_", 1);
    }
    sg_buf_puts(b, "\" {\n  graph [rankdir=TB, newrank=true, labelloc=t, fontname=\"" FONT
                   "\", fontsize=16, nodesep=0.3, ranksep=0.35, label=<<B>");
    viz__text(b, def->name, VIZ_MAX_ID, VIZ_TXT_ONE_LINE);
    sg_buf_printf(b, " v%lld</B>", (long long)def->version);
    if (def->description != NULL) {
        sg_buf_puts(b, "<BR/><FONT POINT-SIZE=\"10\">");
        viz__text(b, def->description, VIZ_MAX_DESC * 2, VIZ_TXT_ONE_LINE);
        sg_buf_puts(b, "</FONT>");
    }
    if (def->timeout_ms > 0) {
        sg_buf_puts(b, "<BR/><FONT POINT-SIZE=\"10\">deadline ");
        viz__dur(b, def->timeout_ms);
        sg_buf_puts(b, ", then compensate</FONT>");
    }
    sg_buf_puts(b, ">];\n"
                   "  node [fontname=\"" FONT "\", fontsize=11, margin=\"0.15,0.05\"];\n"
                   "  edge [fontname=\"" FONT "\", fontsize=9, color=\"" INK "\", "
                   "arrowsize=0.7];\n");
    sg_buf_puts(b, "  start [shape=oval, style=filled, color=\"#263238\", fillcolor=\"#263238\", "
                   "fontcolor=\"#ffffff\", label=<<B>start</B>");
    put_events(b, def, SG_EVENT_ON_START, "#ffffff");
    sg_buf_puts(b, ">];\n");
}

static void graph_ends(viz_t *v)
{
    sg_buf_t *b = v->out;
    sg_buf_puts(b, "  done [shape=oval, peripheries=2, style=filled, color=\"#2e7d32\", "
                   "fillcolor=\"#c8e6c9\", label=<<B>COMPLETED</B>");
    put_events(b, v->def, SG_EVENT_ON_COMPLETE, "#1b5e20");
    sg_buf_puts(b, ">];\n");
    if (v->to_compensated) {
        sg_buf_puts(b, "  compensated [shape=oval, peripheries=2, style=filled, color=\"" COMP_RED
                       "\", fillcolor=\"" COMP_FILL "\", fontcolor=\"" COMP_INK
                       "\", label=<<B>COMPENSATED</B>");
        put_events(b, v->def, SG_EVENT_ON_COMPENSATED, COMP_INK);
        sg_buf_puts(b, ">];\n");
    }
    if (v->to_failed) {
        sg_buf_puts(b, "  failed [shape=oval, peripheries=2, style=filled, color=\"" FAIL_RED
                       "\", fillcolor=\"#ffcdd2\", label=<<B>FAILED</B>");
        put_events(b, v->def, SG_EVENT_ON_FAILED, FAIL_RED);
        sg_buf_puts(b, ">];\n");
    }
    sg_buf_printf(b, "  { rank=sink; done;%s }\n", v->to_failed ? " failed;" : "");
}

static void graph_legend(viz_t *v)
{
    static const struct {
        const char *fill, *text;
    } rows[] = {
        {"#ffffff", "pending"},          {"#bbdefb", "running / undoing"},
        {"#ffe0b2", "retrying"},         {"#c8e6c9", "done"},
        {"#ffcdd2", "failed"},           {"#e0e0e0", "undone (forward step)"},
        {"#e1bee7", "compensated"},      {"#8b0000", "compensation failed"},
        {"#fafafa", "skipped (dotted)"},
    };
    sg_buf_t *b = v->out;
    sg_buf_puts(b, "  legend [shape=plaintext, fontsize=9, label=<<TABLE BORDER=\"0\" "
                   "CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"2\">");
    for (size_t i = 0; i < SG_ARRAY_LEN(rows); i++) {
        sg_buf_printf(b,
                      "<TR><TD BGCOLOR=\"%s\" WIDTH=\"16\"> </TD><TD ALIGN=\"LEFT\">%s</TD>"
                      "</TR>",
                      rows[i].fill, rows[i].text);
    }
    sg_buf_puts(b, "</TABLE>>];\n  { rank=same; start; legend; }\n");
}

static bool has_jumps(const sg_seq_t *seq)
{
    for (size_t k = 0; k < seq->n_steps; k++) {
        const sg_step_t *st = seq->steps[k];
        if (st->next != NULL || st->end) {
            return true;
        }
        for (size_t r = 0; r < st->n_routes; r++) {
            if (st->routes[r].action == SG_ROUTE_GOTO) {
                return true;
            }
        }
    }
    return false;
}

void sg_viz_dot(const sg_def_t *def, const sg_viz_step_t *steps, sg_buf_t *out)
{
    viz_t v = {.def = def, .live = steps, .out = out, .body_jumps = has_jumps(&def->body)};
    sg_buf_init(&v.edges);
    graph_header(&v);
    nodes_seq(&v, &def->body, 1);
    frame_t body = {
        .seq = &def->body, .exit = name_lit("done"), .comp_exit = name_lit("compensated")};
    edge(&v, name_lit("start"), def->body.n_steps > 0 ? step_in(def->body.steps[0]) : body.exit,
         E_FORWARD, NULL);
    edges_seq(&v, &body);
    graph_ends(&v);
    if (steps != NULL) {
        graph_legend(&v);
    }
    if (v.to_compensated) {
        sg_buf_puts(out, "  { rank=same; start; compensated; }\n");
    }
    sg_buf_append(out, v.edges.data != NULL ? v.edges.data : "", v.edges.len);
    out->oom |= v.edges.oom;
    sg_buf_fini(&v.edges);
    sg_buf_puts(out, "}\n");
}
