/*
 * dsl loader: walks the located YAML tree and builds the definition model, checking
 * every key, type and value on the way. It keeps going after an error so that one run
 * reports every problem of a file (up to the cap); rules that need the whole model
 * (pivot order, jumps, references) run afterwards in rules.c and expr.c.
 *
 * All model memory lives in one arena owned by the definition.
 */
#include "orchestrator/dsl/dsl_int.h"
#include "orchestrator/jsonschema/jsonschema.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sg_def_t pub;
    sg_arena_t arena;
} def_build_t;

/* ---- expressions ---- */

static void add_expr(ld_t *ld, sg_expr_t *e, const sg_ynode_t *n, expr_role_t role,
                     const sg_step_t *owner, const char *what)
{
    if (!dsl__expect_kind(ld, n, SG_YNODE_SCALAR, what)) {
        return;
    }
    if (n->len == 0 || strspn(n->str, " \t\r\n") == n->len) {
        dsl__error(ld, n->pos, NULL, "%s is an empty expression", what);
        return;
    }
    e->text = dsl__str(ld, n);
    e->pos = n->pos;
    if (!dsl__grow(ld, (void **)&ld->exprs, &ld->cap_exprs, ld->n_exprs, sizeof(*ld->exprs))) {
        return;
    }
    ld->exprs[ld->n_exprs++] = (expr_ref_t){.expr = e, .node = n, .role = role, .owner = owner};
}

static void add_step_ref(ld_t *ld, const sg_ynode_t *n, const sg_step_t **slot,
                         const sg_step_t *from, const char *what)
{
    const char *name = dsl__get_string(ld, n, what);
    if (name == NULL ||
        !dsl__grow(ld, (void **)&ld->refs, &ld->cap_refs, ld->n_refs, sizeof(*ld->refs))) {
        return;
    }
    ld->refs[ld->n_refs++] =
        (step_ref_t){.name = name, .pos = n->pos, .slot = slot, .from = from, .what = what};
}

/* ---- retry policies ---- */

static const char *const retry_keys[] = {"max_attempts", "initial", "multiplier",
                                         "max_delay",    "jitter",  "non_retryable"};

static void load_codes(ld_t *ld, const sg_ynode_t *n, const char *what, const char *const **out,
                       size_t *count, bool single_ok)
{
    if (single_ok && n->kind == SG_YNODE_SCALAR) {
        const char **codes = dsl__alloc(ld, sizeof(*codes));
        const char *c = dsl__get_string(ld, n, what);
        if (codes != NULL && c != NULL) {
            codes[0] = c;
            *out = codes;
            *count = 1;
        }
        return;
    }
    if (!dsl__expect_kind(ld, n, SG_YNODE_SEQ, what)) {
        return;
    }
    const char **codes = dsl__alloc(ld, (n->count + 1) * sizeof(*codes));
    if (codes == NULL) {
        return;
    }
    for (size_t i = 0; i < n->count; i++) {
        const char *c = dsl__get_string(ld, n->items[i], "an error code");
        if (c != NULL && *c == '\0') {
            dsl__error(ld, n->items[i]->pos, NULL, "error codes must not be empty");
        }
        codes[i] = c ? c : "";
    }
    *out = codes;
    *count = n->count;
}

/* Merges the keys given in n over *r. *attempts_set tells whether max_attempts was given. */
static void load_retry(ld_t *ld, const sg_ynode_t *n, sg_retry_t *r, bool *attempts_set)
{
    if (!dsl__expect_kind(ld, n, SG_YNODE_MAP, "retry")) {
        return;
    }
    dsl__check_keys(ld, n, "retry", retry_keys, SG_ARRAY_LEN(retry_keys));
    const sg_ynode_t *v;
    if ((v = sg_ymap_get(n, "max_attempts")) != NULL) {
        int64_t a;
        if (v->kind == SG_YNODE_SCALAR && strcmp(v->str, "unlimited") == 0) {
            r->max_attempts = 0;
        } else if (dsl__get_int(ld, v, "max_attempts", 1, 1000000, &a)) {
            r->max_attempts = (uint32_t)a;
        }
        if (attempts_set != NULL) {
            *attempts_set = true;
        }
    }
    if ((v = sg_ymap_get(n, "initial")) != NULL) {
        dsl__get_duration(ld, v, "initial", &r->initial_ms);
    }
    if ((v = sg_ymap_get(n, "multiplier")) != NULL) {
        dsl__get_number(ld, v, "multiplier", 1.0, 100.0, &r->multiplier);
    }
    if ((v = sg_ymap_get(n, "max_delay")) != NULL) {
        dsl__get_duration(ld, v, "max_delay", &r->max_delay_ms);
    }
    if ((v = sg_ymap_get(n, "jitter")) != NULL) {
        static const char *const names[] = {"none", "full", "equal"};
        const char *j = dsl__get_string(ld, v, "jitter");
        size_t i = 0;
        while (j != NULL && i < SG_ARRAY_LEN(names) && strcmp(j, names[i]) != 0) {
            i++;
        }
        if (j != NULL && i == SG_ARRAY_LEN(names)) {
            dsl__error(ld, v->pos, "use none, full or equal", "unknown jitter \"%s\"", j);
        } else if (j != NULL) {
            r->jitter = (sg_jitter_t)i;
        }
    }
    if ((v = sg_ymap_get(n, "non_retryable")) != NULL) {
        load_codes(ld, v, "non_retryable", &r->non_retryable, &r->n_non_retryable, false);
    }
    if (r->max_delay_ms < r->initial_ms) {
        dsl__error(ld, n->pos, NULL, "max_delay is shorter than initial");
    }
}

/* ---- calls and steps ---- */

static const char *const comp_keys[] = {"activity",  "input",       "timeout",
                                        "heartbeat", "description", "retry"};

/*
 * `heartbeat:` of a call whose timeout is already loaded. A heartbeat timeout is only
 * useful when it is shorter than the timeout: it bounds the silence between two
 * heartbeats, the timeout bounds the whole attempt. whose names the call ("step \"x\"");
 * timeout_src tells where the call's timeout came from ("" for its own key), NULL when
 * that timeout was invalid (it was reported; comparing with it would only add noise).
 */
static void load_heartbeat(ld_t *ld, const sg_ynode_t *n, sg_call_t *call, const char *whose,
                           const char *timeout_src)
{
    uint64_t ms = 0;
    if (!dsl__get_duration(ld, n, "heartbeat", &ms)) {
        return;
    }
    if (ms == 0) {
        dsl__error(ld, n->pos, "leave the key out for no heartbeat",
                   "heartbeat must be longer than 0");
        return;
    }
    if (ms < SG_HEARTBEAT_MIN_MS) {
        /* Workers beat every third of it, and sagad writes each beat: a tighter lease
         * buys nothing but load on the broker and the engine. */
        dsl__error(ld, n->pos,
                   "workers send one every third of it: 100ms already means one every 33ms",
                   "heartbeat must be at least %ums", SG_HEARTBEAT_MIN_MS);
        return;
    }
    if (timeout_src != NULL && ms >= call->timeout_ms) {
        char hb[32], to[32];
        sg_duration_format(ms, hb, sizeof(hb));
        sg_duration_format(call->timeout_ms, to, sizeof(to));
        dsl__error(ld, n->pos,
                   "the heartbeat bounds the silence between heartbeats, the timeout the whole "
                   "attempt: shorten the heartbeat or lengthen the timeout",
                   "heartbeat %s of %s must be shorter than its timeout %s%s%s%s", hb, whose, to,
                   *timeout_src ? " (" : "", timeout_src, *timeout_src ? ")" : "");
        return;
    }
    call->heartbeat_ms = ms;
}

static void load_activity(ld_t *ld, const sg_ynode_t *n, sg_call_t *call)
{
    const char *a = dsl__get_string(ld, n, "activity");
    if (a == NULL) {
        return;
    }
    if (!dsl__valid_activity(a)) {
        dsl__error(ld, n->pos, "write <queue>.<operation> in lower case, e.g. inventory.reserve",
                   "invalid activity name \"%s\"", a);
        return;
    }
    call->activity = a;
    call->queue = sg_arena_strndup(ld->arena, a, (size_t)(strchr(a, '.') - a));
    call->pos = n->pos;
    if (call->queue == NULL) {
        ld->nomem = true;
    }
}

static void load_compensate(ld_t *ld, step_build_t *sb, const sg_ynode_t *n)
{
    sg_step_t *st = &sb->pub;
    sb->compensate_node = n;
    if (n->kind == SG_YNODE_SCALAR) {
        if (strcmp(n->str, "none") == 0) {
            st->compensate_none = true;
        } else {
            sb->kind_invalid = true; /* reported here; no "missing compensate" on top */
            dsl__error(ld, n->pos, "write `compensate: none` for a step with nothing to undo",
                       "compensate must be a mapping or \"none\", not \"%s\"", n->str);
        }
        return;
    }
    if (!dsl__expect_kind(ld, n, SG_YNODE_MAP, "compensate")) {
        sb->kind_invalid = true;
        return;
    }
    dsl__check_keys(ld, n, "compensate", comp_keys, SG_ARRAY_LEN(comp_keys));
    sg_call_t *c = dsl__alloc(ld, sizeof(*c));
    if (c == NULL) {
        return;
    }
    c->timeout_ms = ld->default_timeout_ms;
    c->retry = ld->default_comp_retry;
    c->pos = n->pos;
    const char *timeout_src = ld->default_timeout_src;
    const sg_ynode_t *v;
    if ((v = dsl__require(ld, n, "activity", "compensate")) != NULL) {
        load_activity(ld, v, c);
    }
    if ((v = sg_ymap_get(n, "input")) != NULL) {
        add_expr(ld, &c->input, v, EXPR_COMP_INPUT, st, "compensate input");
    }
    if ((v = sg_ymap_get(n, "timeout")) != NULL) {
        timeout_src = dsl__get_timeout(ld, v, &c->timeout_ms) ? "" : NULL;
    }
    if ((v = sg_ymap_get(n, "heartbeat")) != NULL) {
        char whose[96];
        snprintf(whose, sizeof(whose), "the compensation of step \"%s\"", st->id ? st->id : "?");
        load_heartbeat(ld, v, c, whose, timeout_src);
    }
    if ((v = sg_ymap_get(n, "retry")) != NULL) {
        load_retry(ld, v, &c->retry, NULL);
    }
    st->compensate = c;
}

static void load_routes(ld_t *ld, step_build_t *sb, const sg_ynode_t *n)
{
    static const char *const keys[] = {"code", "action", "goto"};
    if (!dsl__expect_kind(ld, n, SG_YNODE_SEQ, "on_error")) {
        return;
    }
    sg_route_t *routes = dsl__alloc(ld, (n->count + 1) * sizeof(*routes));
    if (routes == NULL) {
        return;
    }
    for (size_t i = 0; i < n->count; i++) {
        const sg_ynode_t *r = n->items[i];
        sg_route_t *rt = &routes[i];
        rt->pos = r->pos;
        if (!dsl__expect_kind(ld, r, SG_YNODE_MAP, "an on_error route")) {
            continue;
        }
        dsl__check_keys(ld, r, "on_error route", keys, SG_ARRAY_LEN(keys));
        const sg_ynode_t *code = dsl__require(ld, r, "code", "on_error route");
        if (code != NULL) {
            load_codes(ld, code, "code", &rt->codes, &rt->n_codes, true);
            if (code->kind == SG_YNODE_SEQ && code->count == 0) {
                dsl__error(ld, code->pos, "list error codes, or \"*\" for any error",
                           "code must not be an empty list: the route could never match");
            }
        }
        const sg_ynode_t *action = sg_ymap_get(r, "action");
        const sg_ynode_t *go = sg_ymap_get(r, "goto");
        if ((action == NULL) == (go == NULL)) {
            dsl__error(ld, r->pos, "give `action: compensate`, `action: fail` or `goto: <step>`",
                       "an on_error route needs exactly one of \"action\" and \"goto\"");
            continue;
        }
        if (go != NULL) {
            rt->action = SG_ROUTE_GOTO;
            add_step_ref(ld, go, &rt->target, &sb->pub, "goto");
            continue;
        }
        const char *a = dsl__get_string(ld, action, "action");
        if (a != NULL && strcmp(a, "compensate") == 0) {
            rt->action = SG_ROUTE_COMPENSATE;
        } else if (a != NULL && strcmp(a, "fail") == 0) {
            rt->action = SG_ROUTE_FAIL;
        } else if (a != NULL) {
            dsl__error(ld, action->pos, "use compensate or fail (or goto: <step>)",
                       "unknown on_error action \"%s\"", a);
        }
    }
    sb->pub.routes = routes;
    sb->pub.n_routes = n->count;
}

static void load_wait(ld_t *ld, step_build_t *sb, const sg_ynode_t *n)
{
    static const char *const keys[] = {"duration", "until"};
    sg_step_t *st = &sb->pub;
    if (n->kind == SG_YNODE_SCALAR) {
        dsl__get_duration(ld, n, "wait", &st->wait_ms);
        return;
    }
    if (!dsl__expect_kind(ld, n, SG_YNODE_MAP, "wait")) {
        return;
    }
    dsl__check_keys(ld, n, "wait", keys, SG_ARRAY_LEN(keys));
    const sg_ynode_t *d = sg_ymap_get(n, "duration");
    const sg_ynode_t *u = sg_ymap_get(n, "until");
    if ((d == NULL) == (u == NULL)) {
        dsl__error(ld, n->pos, NULL, "wait needs exactly one of \"duration\" and \"until\"");
    } else if (d != NULL) {
        dsl__get_duration(ld, d, "wait duration", &st->wait_ms);
    } else {
        add_expr(ld, &st->wait_until, u, EXPR_WAIT_UNTIL, st, "wait until");
    }
}

static void load_seq(ld_t *ld, const sg_ynode_t *n, sg_seq_t *seq, const sg_step_t *group);

static void load_parallel(ld_t *ld, step_build_t *sb, const sg_ynode_t *n)
{
    static const char *const keys[] = {"id", "steps", "description"};
    if (!dsl__expect_kind(ld, n, SG_YNODE_SEQ, "parallel")) {
        return;
    }
    if (n->count == 0) {
        dsl__error(ld, n->pos, NULL, "parallel needs at least one branch");
        return;
    }
    sg_seq_t *branches = dsl__alloc(ld, n->count * sizeof(*branches));
    if (branches == NULL) {
        return;
    }
    for (size_t i = 0; i < n->count; i++) {
        const sg_ynode_t *b = n->items[i];
        branches[i].pos = b->pos;
        branches[i].id = "";
        if (!dsl__expect_kind(ld, b, SG_YNODE_MAP, "a parallel branch")) {
            continue;
        }
        dsl__check_keys(ld, b, "parallel branch", keys, SG_ARRAY_LEN(keys));
        const sg_ynode_t *id = dsl__require(ld, b, "id", "parallel branch");
        const char *bid = id ? dsl__get_string(ld, id, "branch id") : NULL;
        for (size_t j = 0; bid != NULL && j < i; j++) {
            if (strcmp(branches[j].id, bid) == 0) {
                dsl__error(ld, id->pos, NULL, "duplicate branch id \"%s\"", bid);
            }
        }
        branches[i].id = bid ? bid : "";
        const sg_ynode_t *steps = dsl__require(ld, b, "steps", "parallel branch");
        if (steps != NULL) {
            load_seq(ld, steps, &branches[i], &sb->pub);
        }
    }
    sb->pub.branches = branches;
    sb->pub.n_branches = n->count;
}

static const char *const step_keys[] = {
    "id",        "description", "activity",   "parallel", "wait", "input",    "output", "timeout",
    "heartbeat", "retry",       "compensate", "pivot",    "when", "on_error", "next",   "end"};
static const char *const activity_only[] = {"input", "output",     "timeout", "heartbeat",
                                            "retry", "compensate", "pivot",   "on_error"};

static void check_id(ld_t *ld, const sg_ynode_t *idn, sg_step_t *st)
{
    const char *id = dsl__get_string(ld, idn, "step id");
    if (id == NULL) {
        return;
    }
    if (!dsl__matches(id, dsl__is_id_first, dsl__is_id_rest, 64)) {
        dsl__error(ld, idn->pos,
                   "use lower case letters, digits and _ (jq reads it as .steps.<id>)",
                   "invalid step id \"%s\"", id);
    }
    const step_build_t *prev = dsl__find_step(ld, id);
    if (prev != NULL) {
        char hint[64];
        snprintf(hint, sizeof(hint), "the first \"%s\" is at line %u", id, prev->pub.pos.line);
        dsl__error(ld, idn->pos, hint, "duplicate step id \"%s\"", id);
    }
    st->id = id;
}

static void load_step_kind(ld_t *ld, step_build_t *sb, const sg_ynode_t *n)
{
    sg_step_t *st = &sb->pub;
    const sg_ynode_t *act = sg_ymap_get(n, "activity");
    const sg_ynode_t *par = sg_ymap_get(n, "parallel");
    const sg_ynode_t *wait = sg_ymap_get(n, "wait");
    int kinds = (act != NULL) + (par != NULL) + (wait != NULL);
    if (kinds != 1) {
        static const char *const kind_keys[] = {"activity", "parallel", "wait"};
        bool typo = false;
        for (size_t i = 0; i < SG_ARRAY_LEN(kind_keys) && kinds == 0; i++) {
            typo = typo || dsl__has_typo_of(n, kind_keys[i]);
        }
        if (!typo) {
            dsl__error(ld, n->pos, kinds ? "split it into separate steps" : NULL,
                       "step \"%s\" needs exactly one of \"activity\", \"parallel\" and "
                       "\"wait\"",
                       st->id ? st->id : "?");
        }
        sb->kind_invalid = true;
        return;
    }
    if (act == NULL) {
        st->kind = par ? SG_STEP_PARALLEL : SG_STEP_WAIT;
        for (size_t i = 0; i < n->count; i++) {
            const sg_ynode_t *k = n->pairs[i].key;
            if (dsl__key_is(k, "pivot")) {
                ld->pivot_unknown = true; /* where the pivot is meant to be is unclear */
            }
            if (dsl__in_list(k, activity_only, SG_ARRAY_LEN(activity_only))) {
                dsl__error(ld, k->pos, NULL, "\"%s\" does not apply to a %s step", k->str,
                           par ? "parallel" : "wait");
            }
        }
        if (par != NULL) {
            load_parallel(ld, sb, par);
        } else {
            load_wait(ld, sb, wait);
        }
        return;
    }
    st->kind = SG_STEP_ACTIVITY;
    load_activity(ld, act, &st->call);
    st->call.timeout_ms = ld->default_timeout_ms;
    st->call.retry = ld->default_retry;
    const sg_ynode_t *v;
    if ((v = sg_ymap_get(n, "input")) != NULL) {
        add_expr(ld, &st->call.input, v, EXPR_STEP_INPUT, st, "input");
    }
    if ((v = sg_ymap_get(n, "output")) != NULL) {
        add_expr(ld, &st->output, v, EXPR_STEP_OUTPUT, st, "output");
    }
    const char *timeout_src = ld->default_timeout_src;
    if ((v = sg_ymap_get(n, "timeout")) != NULL) {
        timeout_src = dsl__get_timeout(ld, v, &st->call.timeout_ms) ? "" : NULL;
    }
    if ((v = sg_ymap_get(n, "heartbeat")) != NULL) {
        char whose[96];
        snprintf(whose, sizeof(whose), "step \"%s\"", st->id ? st->id : "?");
        load_heartbeat(ld, v, &st->call, whose, timeout_src);
    }
    if ((v = sg_ymap_get(n, "retry")) != NULL) {
        load_retry(ld, v, &st->call.retry, &sb->retry_attempts_set);
    }
    if ((v = sg_ymap_get(n, "compensate")) != NULL) {
        load_compensate(ld, sb, v);
    }
    if ((v = sg_ymap_get(n, "pivot")) != NULL) {
        bool pivot = false;
        if (!dsl__get_bool(ld, v, "pivot", &pivot)) {
            ld->pivot_unknown = true;
        } else if (pivot) {
            st->cls = SG_CLASS_PIVOT;
        }
    }
}

static step_build_t *load_step(ld_t *ld, const sg_ynode_t *n, const sg_seq_t *seq,
                               const sg_step_t *group)
{
    if (!dsl__expect_kind(ld, n, SG_YNODE_MAP, "a step")) {
        return NULL;
    }
    step_build_t *sb = dsl__alloc(ld, sizeof(*sb));
    if (sb == NULL ||
        !dsl__grow(ld, (void **)&ld->steps, &ld->cap_steps, ld->n_steps, sizeof(*ld->steps))) {
        return NULL;
    }
    sg_step_t *st = &sb->pub;
    sb->node = n;
    st->pos = n->pos;
    st->seq = seq;
    st->group = group;
    st->cls = SG_CLASS_NEUTRAL;
    dsl__check_keys(ld, n, "step", step_keys, SG_ARRAY_LEN(step_keys));
    const sg_ynode_t *v = dsl__require(ld, n, "id", "step");
    if (v != NULL) {
        check_id(ld, v, st);
    }
    /* Register before the body so steps inside branches come after their group. */
    st->index = (uint32_t)ld->n_steps;
    ld->steps[ld->n_steps++] = sb;
    if ((v = sg_ymap_get(n, "description")) != NULL) {
        st->description = dsl__get_string(ld, v, "description");
    }
    load_step_kind(ld, sb, n);
    if ((v = sg_ymap_get(n, "when")) != NULL) {
        add_expr(ld, &st->when, v, EXPR_STEP_WHEN, st, "when");
    }
    if ((v = sg_ymap_get(n, "on_error")) != NULL) {
        load_routes(ld, sb, v);
    }
    if ((v = sg_ymap_get(n, "next")) != NULL) {
        add_step_ref(ld, v, &st->next, st, "next");
    }
    if ((v = sg_ymap_get(n, "end")) != NULL) {
        dsl__get_bool(ld, v, "end", &st->end);
    }
    if (sg_ymap_get(n, "next") != NULL && st->end) {
        dsl__error(ld, n->pos, NULL, "step \"%s\" has both \"next\" and \"end\"",
                   st->id ? st->id : "?");
    }
    if (st->id == NULL) {
        st->id = "";
    }
    return sb;
}

static void load_seq(ld_t *ld, const sg_ynode_t *n, sg_seq_t *seq, const sg_step_t *group)
{
    seq->pos = n->pos;
    if (!dsl__grow(ld, (void **)&ld->seqs, &ld->cap_seqs, ld->n_seqs, sizeof(*ld->seqs))) {
        return;
    }
    seq->no = (uint32_t)ld->n_seqs;
    ld->seqs[ld->n_seqs++] = seq;
    if (!dsl__expect_kind(ld, n, SG_YNODE_SEQ, "steps")) {
        return;
    }
    if (n->count == 0) {
        dsl__error(ld, n->pos, NULL, "steps must not be empty");
        return;
    }
    const sg_step_t **steps = dsl__alloc(ld, n->count * sizeof(*steps));
    if (steps == NULL) {
        return;
    }
    size_t count = 0;
    for (size_t i = 0; i < n->count; i++) {
        step_build_t *sb = load_step(ld, n->items[i], seq, group);
        if (sb != NULL) {
            sb->pub.seq_index = (uint32_t)count;
            steps[count++] = &sb->pub;
        }
    }
    seq->steps = steps;
    seq->n_steps = count;
}

/* ---- saga level ---- */

static void load_events(ld_t *ld, const sg_ynode_t *n)
{
    static const char *const keys[] = {"on_start", "on_complete", "on_compensated", "on_failed"};
    static const char *const event_keys[] = {"type", "data"};
    if (!dsl__expect_kind(ld, n, SG_YNODE_MAP, "events")) {
        return;
    }
    dsl__check_keys(ld, n, "events", keys, SG_ARRAY_LEN(keys));
    for (size_t w = 0; w < SG_EVENT__COUNT; w++) {
        const sg_ynode_t *list = sg_ymap_get(n, keys[w]);
        if (list == NULL || !dsl__expect_kind(ld, list, SG_YNODE_SEQ, keys[w])) {
            continue;
        }
        sg_event_spec_t *evs = dsl__alloc(ld, (list->count + 1) * sizeof(*evs));
        if (evs == NULL) {
            return;
        }
        for (size_t i = 0; i < list->count; i++) {
            const sg_ynode_t *e = list->items[i];
            const sg_ynode_t *type = e;
            evs[i].pos = e->pos;
            if (e->kind == SG_YNODE_MAP) {
                dsl__check_keys(ld, e, "event", event_keys, SG_ARRAY_LEN(event_keys));
                type = dsl__require(ld, e, "type", "event");
                const sg_ynode_t *data = sg_ymap_get(e, "data");
                if (data != NULL) {
                    add_expr(ld, &evs[i].data, data,
                             w == SG_EVENT_ON_START ? EXPR_EVENT_START_DATA : EXPR_EVENT_DATA, NULL,
                             "event data");
                }
            }
            const char *t = type ? dsl__get_string(ld, type, "event type") : NULL;
            if (t != NULL && !dsl__valid_event_type(t)) {
                dsl__error(ld, type->pos, "use dotted lower-case names such as order.created",
                           "invalid event type \"%s\"", t);
            }
            evs[i].type = t ? t : "";
        }
        ld->def->events[w] = evs;
        ld->def->n_events[w] = list->count;
    }
}

static void load_defaults(ld_t *ld, const sg_ynode_t *n)
{
    /* "heartbeat" is known here only to explain why it is refused. */
    static const char *const keys[] = {"timeout", "retry", "compensation_retry", "heartbeat"};
    if (!dsl__expect_kind(ld, n, SG_YNODE_MAP, "defaults")) {
        return;
    }
    dsl__check_keys(ld, n, "defaults", keys, SG_ARRAY_LEN(keys));
    const sg_ynode_t *v;
    if ((v = sg_ymap_get(n, "timeout")) != NULL) {
        ld->default_timeout_src =
            dsl__get_timeout(ld, v, &ld->default_timeout_ms) ? "defaults.timeout" : NULL;
    }
    for (size_t i = 0; i < n->count; i++) {
        /* A default would have to fit every step's timeout and would make every task
         * send heartbeats, while only long activities need them. */
        if (dsl__key_is(n->pairs[i].key, "heartbeat")) {
            dsl__error(ld, n->pairs[i].key->pos,
                       "give `heartbeat:` on the steps (or compensations) with long activities",
                       "heartbeat cannot be a default");
        }
    }
    if ((v = sg_ymap_get(n, "retry")) != NULL) {
        load_retry(ld, v, &ld->default_retry, NULL);
    }
    if ((v = sg_ymap_get(n, "compensation_retry")) != NULL) {
        load_retry(ld, v, &ld->default_comp_retry, NULL);
    }
}

static const char *const top_keys[] = {"saga",    "version",  "description", "input",
                                       "timeout", "defaults", "events",      "steps"};

static void load_name(ld_t *ld, const sg_ynode_t *root)
{
    const sg_ynode_t *v = dsl__require(ld, root, "saga", "the saga");
    const char *name = v ? dsl__get_string(ld, v, "saga") : NULL;
    if (name != NULL && !dsl__matches(name, dsl__is_lower, dsl__is_name_rest, 64)) {
        dsl__error(ld, v->pos, "use lower case letters, digits, _ . and -, starting with a letter",
                   "invalid saga name \"%s\"", name);
    }
    ld->def->name = name ? name : "";
    if ((v = dsl__require(ld, root, "version", "the saga")) != NULL) {
        dsl__get_int(ld, v, "version", 1, INT32_MAX, &ld->def->version);
    }
}

static void load_root(ld_t *ld, const sg_ynode_t *root)
{
    if (root == NULL) {
        dsl__error(ld, (sg_pos_t){1, 1}, NULL, "file is empty: expected a saga definition");
        return;
    }
    if (!dsl__expect_kind(ld, root, SG_YNODE_MAP, "a saga definition")) {
        return;
    }
    dsl__check_keys(ld, root, "the saga", top_keys, SG_ARRAY_LEN(top_keys));
    load_name(ld, root);
    const sg_ynode_t *v;
    if ((v = sg_ymap_get(root, "description")) != NULL) {
        ld->def->description = dsl__get_string(ld, v, "description");
    }
    if ((v = sg_ymap_get(root, "input")) != NULL) {
        dsl__load_input(ld, v);
    }
    if ((v = sg_ymap_get(root, "timeout")) != NULL) {
        dsl__get_timeout(ld, v, &ld->def->timeout_ms);
    }
    /* Defaults first: steps copy them. */
    if ((v = sg_ymap_get(root, "defaults")) != NULL) {
        load_defaults(ld, v);
    }
    if ((v = sg_ymap_get(root, "events")) != NULL) {
        load_events(ld, v);
    }
    ld->def->body.id = "main";
    if ((v = dsl__require(ld, root, "steps", "the saga")) != NULL) {
        load_seq(ld, v, &ld->def->body, NULL);
    }
}

const char *dsl__step_hint(const ld_t *ld, const char *name, char *hint, size_t len)
{
    const char *ids[256];
    size_t n = 0;
    for (size_t j = 0; j < ld->n_steps && n < SG_ARRAY_LEN(ids); j++) {
        ids[n++] = ld->steps[j]->pub.id;
    }
    const char *best = sg_closest(name, ids, n);
    if (best == NULL) {
        return NULL;
    }
    snprintf(hint, len, "did you mean \"%s\"?", best);
    return hint;
}

step_build_t *dsl__find_step(const ld_t *ld, const char *id)
{
    for (size_t i = 0; i < ld->n_steps; i++) {
        const char *sid = ld->steps[i]->pub.id;
        if (sid != NULL && strcmp(sid, id) == 0) {
            return ld->steps[i];
        }
    }
    return NULL;
}

static const sg_retry_t builtin_retry = {.max_attempts = 3,
                                         .initial_ms = 100,
                                         .multiplier = 2.0,
                                         .max_delay_ms = 30000,
                                         .jitter = SG_JITTER_FULL};
static const sg_retry_t builtin_comp_retry = {.max_attempts = 10,
                                              .initial_ms = 100,
                                              .multiplier = 2.0,
                                              .max_delay_ms = 60000,
                                              .jitter = SG_JITTER_FULL};

/* Copies the source and fills the identity of the definition. */
static bool set_source(def_build_t *db, const char *path, const char *buf, size_t len)
{
    sg_def_t *def = &db->pub;
    def->path =
        sg_arena_strndup(&db->arena, path ? path : "<input>", strlen(path ? path : "<input>"));
    char *src = sg_arena_strndup(&db->arena, buf, len);
    if (def->path == NULL || src == NULL) {
        return false;
    }
    def->source = src;
    def->source_len = len;
    sg_sha256_hex(buf, len, def->sha256);
    return true;
}

static void finish_steps(ld_t *ld)
{
    const sg_step_t **all = dsl__alloc(ld, (ld->n_steps + 1) * sizeof(*all));
    if (all == NULL) {
        return;
    }
    for (size_t i = 0; i < ld->n_steps; i++) {
        all[i] = &ld->steps[i]->pub;
    }
    ld->def->all_steps = all;
    ld->def->n_steps = ld->n_steps;
    const sg_seq_t **seqs = dsl__alloc(ld, (ld->n_seqs + 1) * sizeof(*seqs));
    if (seqs == NULL) {
        return;
    }
    for (size_t i = 0; i < ld->n_seqs; i++) {
        seqs[i] = ld->seqs[i];
    }
    ld->def->seqs = seqs;
    ld->def->n_seqs = ld->n_seqs;
}

sg_err_t sg_def_load(const char *path, const char *buf, size_t len, const sg_dsl_opts_t *opts,
                     sg_def_t **out, sg_diags_t *diags)
{
    static const sg_dsl_opts_t no_opts = {0};
    *out = NULL;
    size_t before = diags->count + diags->dropped;
    sg_ydoc_t *doc = NULL;
    sg_err_t rc = sg_ydoc_parse(buf, len, &sg_ylimits_default, &doc, diags);
    if (rc != SG_OK) {
        return rc;
    }
    def_build_t *db = sg_calloc(1, sizeof(*db));
    if (db == NULL) {
        sg_ydoc_free(doc);
        return SG_ERR_NOMEM;
    }
    ld_t ld = {.arena = &db->arena,
               .diags = diags,
               .opts = opts ? opts : &no_opts,
               .def = &db->pub,
               .default_timeout_ms = 30000,
               .default_timeout_src = "the built-in default",
               .default_retry = builtin_retry,
               .default_comp_retry = builtin_comp_retry};
    ld.nomem = !set_source(db, path, buf, len);
    if (!ld.nomem) {
        load_root(&ld, sg_ydoc_root(doc));
        finish_steps(&ld);
    }
    if (!ld.nomem) {
        dsl__check_structure(&ld);
    }
    if (!ld.nomem) {
        dsl__check_exprs(&ld);
    }
    sg_free(ld.steps);
    sg_free(ld.exprs);
    sg_free(ld.refs);
    sg_free(ld.seqs);
    sg_ydoc_free(doc);
    sg_diags_sort(diags);
    if (ld.nomem) {
        sg_def_free(&db->pub);
        return SG_ERR_NOMEM;
    }
    if (diags->count + diags->dropped > before) {
        sg_def_free(&db->pub);
        return SG_ERR_INVALID;
    }
    *out = &db->pub;
    return SG_OK;
}

sg_err_t sg_def_load_file(const char *path, const sg_dsl_opts_t *opts, sg_def_t **out,
                          sg_diags_t *diags)
{
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    /* Read one byte past the limit so an oversized file gets the located limit error. */
    sg_err_t rc = sg_file_read(path, sg_ylimits_default.max_bytes + 1, &buf, &len);
    if (rc == SG_ERR_LIMIT) {
        sg_diags_add(diags, SG_ERR_LIMIT, (sg_pos_t){1, 1}, "split the saga or shorten it",
                     "file is larger than the limit of %zu bytes", sg_ylimits_default.max_bytes);
        return rc;
    }
    if (rc != SG_OK) {
        sg_diags_add(diags, rc, (sg_pos_t){0, 0}, NULL, "cannot read file: %s",
                     rc == SG_ERR_NOT_FOUND ? "no such file" : strerror(errno));
        return rc;
    }
    rc = sg_def_load(path, buf, len, opts, out, diags);
    sg_free(buf);
    return rc;
}

void sg_def_free(sg_def_t *def)
{
    if (def == NULL) {
        return;
    }
    def_build_t *db = (def_build_t *)def;
    sg_jsonschema_free((sg_jsonschema_t *)def->input_validator);
    cJSON_Delete(def->input_schema);
    sg_arena_fini(&db->arena);
    sg_free(db);
}

const sg_step_t *sg_def_step(const sg_def_t *def, const char *id)
{
    for (size_t i = 0; i < def->n_steps; i++) {
        if (strcmp(def->all_steps[i]->id, id) == 0) {
            return def->all_steps[i];
        }
    }
    return NULL;
}
