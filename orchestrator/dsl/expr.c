/*
 * dsl expressions: checks every jq expression of a definition with the fast built-in
 * checker (jqcheck), then the `.steps.NAME` references against the steps that can
 * have run at that point. Optionally confirms each with libjq's own compiler.
 *
 * Positions: jqcheck reports offsets inside the expression; they are mapped back to
 * the YAML file using how the scalar was written (plain, quoted, block).
 */
#include "orchestrator/dsl/dsl_int.h"
#include "orchestrator/jqcheck/jqcheck.h"

#include <jq.h>
#include <stdio.h>
#include <string.h>

/* Column where line `line` (1-based) of the source starts its content. */
static uint32_t indent_of_line(const sg_def_t *def, uint32_t line)
{
    const char *p = def->source;
    const char *end = def->source + def->source_len;
    for (uint32_t l = 1; l < line && p < end; p++) {
        if (*p == '\n') {
            l++;
        }
    }
    uint32_t col = 1;
    while (p < end && *p == ' ') {
        p++;
        col++;
    }
    return col;
}

/* Maps (line, col) inside the expression text to the YAML file. */
static sg_pos_t expr_pos(const sg_def_t *def, const sg_ynode_t *n, uint32_t line, uint32_t col)
{
    sg_pos_t pos = n->pos;
    if (n->style == SG_YSTYLE_BLOCK) {
        pos.line = n->pos.line + line;
        pos.col = indent_of_line(def, pos.line) + col - 1;
    } else if (line <= 1) {
        pos.col = n->pos.col + col - 1 + (n->style == SG_YSTYLE_PLAIN ? 0 : 1);
    } else {
        pos.line = n->pos.line + line - 1; /* folded flow scalar: the line is right */
        pos.col = indent_of_line(def, pos.line) + col - 1;
    }
    return pos;
}

/* Whether a and b sit in different branches of one parallel group. */
static bool in_parallel(const sg_step_t *a, const sg_step_t *b)
{
    for (const sg_step_t *x = a; x->group != NULL; x = x->group) {
        for (const sg_step_t *y = b; y->group != NULL; y = y->group) {
            if (x->group == y->group && x->seq != y->seq) {
                return true;
            }
        }
    }
    return false;
}

static bool is_inside(const sg_step_t *st, const sg_step_t *group)
{
    for (const sg_step_t *x = st; x != NULL; x = x->group) {
        if (x->group == group) {
            return true;
        }
    }
    return false;
}

typedef struct {
    ld_t *ld;
    const expr_ref_t *ref;
} ref_ctx_t;

static void unknown_step(ld_t *ld, sg_pos_t pos, const char *name)
{
    char hint[128];
    dsl__error(ld, pos, dsl__step_hint(ld, name, hint, sizeof(hint)),
               "expression refers to unknown step \"%s\"", name);
}

/* Reports a reference to a step whose output cannot exist when the expression runs. */
static void check_order(ld_t *ld, sg_pos_t pos, const expr_ref_t *ref, const sg_step_t *target)
{
    const sg_step_t *owner = ref->owner;
    if (target->kind == SG_STEP_PARALLEL) {
        dsl__error(ld, pos, "refer to a step inside one of its branches",
                   "\"%s\" is a parallel group and has no output", target->id);
        return;
    }
    if (ref->role == EXPR_COMP_INPUT && target == owner) {
        return; /* a compensation reads the output of the step it undoes */
    }
    if (target == owner || target->index > owner->index || is_inside(owner, target)) {
        dsl__error(ld, pos, "a step can only read the outputs of steps that ran before it",
                   "step \"%s\" refers to \"%s\", which has not run yet at that point", owner->id,
                   target->id);
    } else if (in_parallel(owner, target)) {
        dsl__error(ld, pos, "move the reference after the parallel group",
                   "step \"%s\" refers to \"%s\", which runs in a parallel branch", owner->id,
                   target->id);
    }
}

static void on_path(void *ctx, const sg_jq_field_t *fields, size_t n, uint32_t offset)
{
    ref_ctx_t *rc = ctx;
    if (n < 2 || fields[0].len != 5 || memcmp(fields[0].ptr, "steps", 5) != 0) {
        return;
    }
    ld_t *ld = rc->ld;
    char name[80];
    snprintf(name, sizeof(name), "%.*s", (int)(fields[1].len < 79 ? fields[1].len : 79),
             fields[1].ptr);
    /* Offsets on one line are columns; good enough for the usual one-line mapping. */
    const char *text = rc->ref->expr->text;
    uint32_t line = 1, col = 1;
    for (uint32_t i = 0; i < offset && text[i]; i++) {
        line += text[i] == '\n';
        col = text[i] == '\n' ? 1 : col + 1;
    }
    sg_pos_t pos = expr_pos(ld->def, rc->ref->node, line, col);
    if (rc->ref->role == EXPR_STEP_OUTPUT) {
        return; /* `.` is the activity's result there, not the saga context */
    }
    if (rc->ref->role == EXPR_EVENT_START_DATA) {
        dsl__error(ld, pos, "use .input in on_start events",
                   "on_start events are published before any step has run");
        return;
    }
    step_build_t *target = dsl__find_step(ld, name);
    if (target == NULL) {
        unknown_step(ld, pos, name);
    } else if (rc->ref->owner != NULL) {
        check_order(ld, pos, rc->ref, &target->pub);
    }
}

/* libjq's own verdict, for opts.verify_jq. */
static void jq_err_cb(void *data, jv msg)
{
    char *buf = data;
    if (buf[0] == '\0' && jv_get_kind(msg) == JV_KIND_STRING) {
        const char *s = jv_string_value(msg);
        if (strncmp(s, "jq: error: ", 11) == 0) {
            s += 11;
        }
        snprintf(buf, 256, "%.*s", (int)strcspn(s, "\n"), s);
    }
    jv_free(msg);
}

static void verify_with_libjq(ld_t *ld, const expr_ref_t *ref)
{
    char msg[256] = "";
    jq_state *jq = jq_init();
    if (jq == NULL) {
        ld->nomem = true;
        return;
    }
    jq_set_error_cb(jq, jq_err_cb, msg);
    if (!jq_compile(jq, ref->expr->text)) {
        dsl__error(ld, ref->expr->pos, NULL, "jq: %s", msg[0] ? msg : "compile error");
    }
    jq_teardown(&jq);
}

void dsl__check_exprs(ld_t *ld)
{
    for (size_t i = 0; i < ld->n_exprs && !ld->nomem; i++) {
        const expr_ref_t *ref = &ld->exprs[i];
        ref_ctx_t ctx = {.ld = ld, .ref = ref};
        sg_jq_error_t err;
        const char *text = ref->expr->text;
        if (!sg_jq_check(text, strlen(text), on_path, &ctx, &err)) {
            sg_pos_t pos = expr_pos(ld->def, ref->node, err.line, err.col);
            dsl__error(ld, pos, err.hint[0] ? err.hint : NULL, "jq: %s", err.message);
            continue;
        }
        if (ld->opts->verify_jq) {
            verify_with_libjq(ld, ref);
        }
    }
}
