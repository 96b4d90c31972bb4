/*
 * Unit tests of visualize: the DOT drawn for hand-built models (every element present,
 * hostile YAML text escaped, live states coloured), and the `dot` runner checked against
 * the real Graphviz program and against cat/sleep/sh for deadlocks, timeouts, reaping and
 * error reporting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "visualize/visualize_int.h"

/* ---- a tiny builder for sg_def_t models (the structs are open) ---- */

enum { MAX_STEPS = 64, MAX_PTRS = 256 };

typedef struct {
    sg_def_t def;
    sg_step_t steps[MAX_STEPS];
    size_t n_steps;
    const sg_step_t *ptrs[MAX_PTRS]; /* storage for every sequence's step list */
    size_t n_ptrs;
    const sg_step_t *all[MAX_STEPS];
    sg_call_t comps[MAX_STEPS];
    size_t n_comps;
    sg_route_t routes[MAX_STEPS];
    size_t n_routes;
    sg_seq_t branches[MAX_STEPS];
    size_t n_branches;
} model_t;

static const sg_retry_t RETRY_DEFAULT = {3, 100, 2.0, 30000, SG_JITTER_FULL, NULL, 0};
static const sg_retry_t RETRY_COMP = {10, 100, 2.0, 60000, SG_JITTER_FULL, NULL, 0};
static const sg_retry_t RETRY_FOREVER = {0, 1000, 2.0, 60000, SG_JITTER_FULL, NULL, 0};

static model_t *model_new(const char *name, int64_t version)
{
    model_t *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->def.name = name;
    m->def.version = version;
    return m;
}

static sg_step_t *step_new(model_t *m, const char *id, sg_step_kind_t kind)
{
    assert_true(m->n_steps < MAX_STEPS);
    sg_step_t *st = &m->steps[m->n_steps++];
    st->id = id;
    st->kind = kind;
    st->cls = SG_CLASS_NEUTRAL;
    return st;
}

static sg_step_t *act(model_t *m, const char *id, const char *activity, sg_step_class_t cls)
{
    sg_step_t *st = step_new(m, id, SG_STEP_ACTIVITY);
    st->cls = cls;
    st->call.activity = activity;
    st->call.timeout_ms = 30000;
    st->call.retry = cls == SG_CLASS_RETRIABLE ? RETRY_FOREVER : RETRY_DEFAULT;
    return st;
}

static void comp(model_t *m, sg_step_t *st, const char *activity)
{
    sg_call_t *c = &m->comps[m->n_comps++];
    c->activity = activity;
    c->timeout_ms = 10000;
    c->retry = RETRY_COMP;
    st->compensate = c;
}

static void route(model_t *m, sg_step_t *st, const char *const *codes, size_t n,
                  sg_route_action_t action, const sg_step_t *target)
{
    sg_route_t *r = &m->routes[m->n_routes++];
    r->codes = codes;
    r->n_codes = n;
    r->action = action;
    r->target = target;
    if (st->routes == NULL) {
        st->routes = r;
    }
    st->n_routes++; /* routes of one step must be added one after another */
}

/* A sequence of n steps (variadic sg_step_t *). */
static sg_seq_t seq_of(model_t *m, const char *id, size_t n, ...)
{
    sg_seq_t s = {.id = id, .steps = &m->ptrs[m->n_ptrs], .n_steps = n};
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        m->ptrs[m->n_ptrs++] = va_arg(ap, const sg_step_t *);
    }
    va_end(ap);
    return s;
}

static void branch(model_t *m, sg_step_t *group, sg_seq_t s)
{
    if (group->branches == NULL) {
        group->branches = &m->branches[m->n_branches];
    }
    m->branches[m->n_branches++] = s;
    group->n_branches++;
}

/* Fills index, seq_index, seq, group and all_steps the way the loader does: document
 * order, depth first. The steps are ours, so writing through the const view is fine. */
static void number_seq(model_t *m, const sg_seq_t *seq, const sg_step_t *group)
{
    for (size_t k = 0; k < seq->n_steps; k++) {
        sg_step_t *st = (sg_step_t *)seq->steps[k];
        st->index = (uint32_t)m->def.n_steps;
        st->seq_index = (uint32_t)k;
        st->seq = seq;
        st->group = group;
        if (st->cls == SG_CLASS_PIVOT) {
            m->def.pivot = st;
        }
        m->all[m->def.n_steps++] = st;
        for (size_t b = 0; b < st->n_branches; b++) {
            number_seq(m, &st->branches[b], st);
        }
    }
}

static void model_finish(model_t *m, sg_seq_t body)
{
    m->def.body = body;
    m->def.body.id = "main";
    number_seq(m, &m->def.body, NULL);
    m->def.all_steps = m->all;
}

static const sg_step_t *by_id(const model_t *m, const char *id)
{
    for (size_t i = 0; i < m->def.n_steps; i++) {
        if (strcmp(m->all[i]->id, id) == 0) {
            return m->all[i];
        }
    }
    fail_msg("no step %s", id);
    return NULL;
}

/* ---- the models ---- */

static const char *const OUT_OF_STOCK[] = {"inventory.out_of_stock"};
static const char *const DECLINED[] = {"payment.card_declined", "payment.expired"};
static const sg_event_spec_t EV_START[] = {{"order.created", {NULL, {0, 0}}, {0, 0}}};
static const sg_event_spec_t EV_DONE[] = {{"order.completed", {NULL, {0, 0}}, {0, 0}}};
static const sg_event_spec_t EV_COMP[] = {{"order.cancelled", {NULL, {0, 0}}, {0, 0}}};

/* A linear order saga: compensatable steps, a conditional one, the pivot, a wait and
 * retriable steps. */
static model_t *model_linear(void)
{
    model_t *m = model_new("order_create", 3);
    m->def.description = "Reserve, charge, confirm and notify";
    m->def.timeout_ms = 3600000;
    sg_step_t *validate = act(m, "validate_order", "order.validate", SG_CLASS_COMPENSATABLE);
    validate->compensate_none = true;
    sg_step_t *reserve = act(m, "reserve_stock", "inventory.reserve", SG_CLASS_COMPENSATABLE);
    comp(m, reserve, "inventory.release");
    route(m, reserve, OUT_OF_STOCK, 1, SG_ROUTE_FAIL, NULL);
    sg_step_t *fraud = act(m, "check_fraud", "fraud.check", SG_CLASS_COMPENSATABLE);
    fraud->compensate_none = true;
    fraud->when.text = ".input.amount > 1000";
    sg_step_t *charge = act(m, "charge_payment", "payment.charge", SG_CLASS_COMPENSATABLE);
    comp(m, charge, "payment.refund");
    charge->call.retry.non_retryable = DECLINED;
    charge->call.retry.n_non_retryable = 2;
    charge->call.timeout_ms = 5000;
    route(m, charge, DECLINED, 2, SG_ROUTE_COMPENSATE, NULL);
    sg_step_t *confirm = act(m, "confirm_order", "order.confirm", SG_CLASS_PIVOT);
    sg_step_t *cool = step_new(m, "cool_off", SG_STEP_WAIT);
    cool->wait_ms = 10000;
    sg_step_t *notify = act(m, "notify_customer", "notification.send", SG_CLASS_RETRIABLE);
    notify->description = "Tell the customer";
    sg_step_t *ship = act(m, "ship", "shipping.create", SG_CLASS_RETRIABLE);
    ship->call.retry.max_attempts = 10;
    m->def.events[SG_EVENT_ON_START] = EV_START;
    m->def.n_events[SG_EVENT_ON_START] = 1;
    m->def.events[SG_EVENT_ON_COMPLETE] = EV_DONE;
    m->def.n_events[SG_EVENT_ON_COMPLETE] = 1;
    m->def.events[SG_EVENT_ON_COMPENSATED] = EV_COMP;
    m->def.n_events[SG_EVENT_ON_COMPENSATED] = 1;
    model_finish(
        m, seq_of(m, "main", 8, validate, reserve, fraud, charge, confirm, cool, notify, ship));
    return m;
}

static const char *const ANY[] = {"*"};
static const char *const BAD_ADDRESS[] = {"shipping.address_invalid"};

/* Parallel branches, a pivot that fails outright, `next`, `end`, `goto`, wait until. */
static model_t *model_parallel(void)
{
    model_t *m = model_new("order_fanout", 1);
    sg_step_t *create = act(m, "create_order", "order.create", SG_CLASS_COMPENSATABLE);
    comp(m, create, "order.cancel");
    sg_step_t *prepare = step_new(m, "prepare", SG_STEP_PARALLEL);
    prepare->description = "stock and money at once";
    sg_step_t *reserve = act(m, "reserve", "inventory.reserve", SG_CLASS_COMPENSATABLE);
    comp(m, reserve, "inventory.release");
    sg_step_t *hold = act(m, "hold", "warehouse.hold", SG_CLASS_COMPENSATABLE);
    comp(m, hold, "warehouse.unhold");
    sg_step_t *authorize = act(m, "authorize", "payment.authorize", SG_CLASS_COMPENSATABLE);
    comp(m, authorize, "payment.void");
    sg_step_t *points = act(m, "check_points", "loyalty.check", SG_CLASS_COMPENSATABLE);
    points->compensate_none = true;
    points->when.text = ".input.loyalty_id != null";
    branch(m, prepare, seq_of(m, "stock", 2, reserve, hold));
    branch(m, prepare, seq_of(m, "payment", 1, authorize));
    branch(m, prepare, seq_of(m, "loyalty", 1, points));
    sg_step_t *capture = act(m, "capture", "payment.capture", SG_CLASS_PIVOT);
    route(m, capture, ANY, 1, SG_ROUTE_FAIL, NULL);
    sg_step_t *until = step_new(m, "until_ship_date", SG_STEP_WAIT);
    until->wait_until.text = ".input.ship_at";
    sg_step_t *ship = act(m, "ship", "shipping.ship", SG_CLASS_RETRIABLE);
    sg_step_t *review = act(m, "manual_review", "shipping.review", SG_CLASS_RETRIABLE);
    sg_step_t *notify = act(m, "notify", "notification.send", SG_CLASS_RETRIABLE);
    notify->end = true;
    ship->next = notify;
    route(m, ship, BAD_ADDRESS, 1, SG_ROUTE_GOTO, review);
    model_finish(m, seq_of(m, "main", 7, create, prepare, capture, until, ship, review, notify));
    return m;
}

/* Every string a hostile YAML could carry where DOT or HTML gives it meaning. */
static const char *const EVIL_CODES[] = {"x\"]; evil -> pwn [label=\"", "<b>&amp;</b>"};
static model_t *model_hostile(void)
{
    model_t *m = model_new("evil\"name\\ \n{}", 1);
    m->def.description = "</B></FONT>>]; } digraph x { <script>alert(1)</script>";
    sg_step_t *a = act(m, "a\"b\\c<d>&e\nf", "q.\"op<>&\\", SG_CLASS_COMPENSATABLE);
    a->description = "desc with \\N \\G \\L and \"quotes\" ]]> <!-- & \x01\x7f\xff\xc3( end\\";
    comp(m, a, "undo\\\"<x>");
    route(m, a, EVIL_CODES, 2, SG_ROUTE_COMPENSATE, NULL);
    sg_step_t *g = step_new(m, "grp }{ \"", SG_STEP_PARALLEL);
    sg_step_t *b = act(m, "b\\", "q.b", SG_CLASS_COMPENSATABLE);
    comp(m, b, "q.\xe2\x82\xac\xf0\x9f\x98\x80"); /* € and an emoji: valid UTF-8 */
    b->when.text = ".x | test(\"<\\\\\\\"\") and .y > 1\n  // multi\tline";
    branch(m, g, seq_of(m, "br\"<>\\", 1, b));
    sg_step_t *w = step_new(m, "w\\", SG_STEP_WAIT);
    w->wait_until.text = "\"\\\\\" + (.a<.b|tostring)";
    sg_step_t *p = act(m, "piv>", "q.p", SG_CLASS_PIVOT);
    model_finish(m, seq_of(m, "main", 4, a, g, w, p));
    return m;
}

/* ---- helpers ---- */

static char *render(const model_t *m, const sg_viz_step_t *live)
{
    sg_buf_t b;
    sg_buf_init(&b);
    sg_viz_dot(&m->def, live, &b);
    assert_false(b.oom);
    return sg_buf_take(&b);
}

static void assert_has(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        fail_msg("missing: %s", needle);
    }
}

static void assert_lacks(const char *hay, const char *needle)
{
    if (strstr(hay, needle) != NULL) {
        fail_msg("unexpected: %s", needle);
    }
}

/* With SG_VIZ_DUMP=dir, every DOT piped through dot is also written to dir/N.dot, to
 * look at the pictures while changing the drawing. */
static void dump(const char *dot)
{
    static int n;
    const char *dir = getenv("SG_VIZ_DUMP");
    if (dir == NULL) {
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%02d.dot", dir, n++);
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fputs(dot, f);
        fclose(f);
    }
}

/* Pipes dot text through the real Graphviz and checks it renders an SVG. */
static char *to_svg(const char *dot)
{
    dump(dot);
    sg_buf_t svg;
    sg_buf_init(&svg);
    char err[512];
    sg_err_t rc = sg_viz_svg(dot, strlen(dot), &svg, err, sizeof err);
    if (rc != SG_OK) {
        fail_msg("dot failed (%s): %s", sg_strerror(rc), err);
    }
    assert_string_equal(err, "");
    assert_non_null(strstr(svg.data, "<svg"));
    assert_non_null(strstr(svg.data, "</svg>"));
    return sg_buf_take(&svg);
}

/* Graphviz says nothing at all on stderr: no syntax trouble, no "Warning:" about labels
 * or UTF-8. Uses a shell, as tests may; the code under test never does. */
static void assert_dot_silent(const char *dot)
{
    static const char *const argv[] = {"sh", "-c", "dot -Tsvg 2>&1 >/dev/null", NULL};
    sg_buf_t said;
    sg_buf_init(&said);
    char err[256];
    assert_int_equal(viz__run(argv, dot, strlen(dot), 10000, 1 << 20, &said, err, sizeof err),
                     SG_OK);
    if (said.len > 0) {
        fail_msg("dot said: %s", said.data);
    }
    sg_buf_fini(&said);
}

static void edge_line(char *buf, size_t n, const model_t *m, const char *from_prefix,
                      const char *from_id, const char *from_suffix, const char *to)
{
    snprintf(buf, n, "  %s%u%s -> %s [", from_prefix, by_id(m, from_id)->index, from_suffix, to);
}

/* ---- DOT: the linear saga ---- */

static void test_dot_linear(void **state)
{
    (void)state;
    model_t *m = model_linear();
    char *dot = render(m, NULL);
    char line[256], to[64];

    assert_true(strncmp(dot, "digraph \"order_create\" {", 24) == 0);
    assert_has(dot, "<B>order_create v3</B>");
    assert_has(dot, "deadline 1h, then compensate");
    assert_has(dot, "start [");
    assert_has(dot, "emits order.created");
    assert_has(dot, "<B>COMPLETED</B><BR/><FONT POINT-SIZE=\"9\" COLOR=\"#1b5e20\">emits "
                    "order.completed");
    assert_has(dot, "<B>COMPENSATED</B>");
    assert_has(dot, "emits order.cancelled");
    assert_has(dot, "<B>FAILED</B>"); /* reserve_stock's route and ship's finite retries */
    /* Activity labels: id, activity, timeout and retry policy. */
    assert_has(dot, "<B>reserve_stock</B><BR/>inventory.reserve");
    assert_has(dot, "timeout 30s · retry 3x 100ms×2 ≤30s");
    assert_has(dot, "timeout 5s · retry 3x 100ms×2 ≤30s");
    assert_has(dot, "fails at once on payment.card_declined, payment.expired");
    assert_has(dot, "retry ∞ 1s×2 ≤1m");
    assert_has(dot, "retry 10x 1s×2 ≤1m");
    assert_has(dot, "nothing to undo");
    assert_has(dot, "<I>Tell the customer</I>");
    /* The pivot stands out. */
    snprintf(line, sizeof line, "s%u [shape=doubleoctagon", by_id(m, "confirm_order")->index);
    assert_has(dot, line);
    assert_has(dot, "PIVOT · point of no return");
    /* Compensations: own nodes beside their steps, a dashed firebrick reverse chain. */
    assert_has(dot, "label=<↩ inventory.release");
    assert_has(dot, "label=<↩ payment.refund");
    assert_has(dot, "undo reserve_stock<BR/>timeout 10s · retry 10x 100ms×2 ≤1m");
    unsigned res = by_id(m, "reserve_stock")->index, chg = by_id(m, "charge_payment")->index;
    snprintf(line, sizeof line, "{ rank=same; s%u -> c%u [style=invis]; }", res, res);
    assert_has(dot, line);
    snprintf(line, sizeof line, "  c%u -> c%u [style=dashed, color=\"firebrick\"", chg, res);
    assert_has(dot, line);
    snprintf(line, sizeof line, "  c%u -> compensated [style=dashed, color=\"firebrick\"", res);
    assert_has(dot, line);
    /* Failing steps lead to the compensation that would run first. */
    snprintf(to, sizeof to, "c%u", res);
    edge_line(line, sizeof line, m, "s", "charge_payment", "", to);
    assert_has(dot, line);
    assert_has(dot, "label=<fails · on payment.card_declined, payment.expired>");
    edge_line(line, sizeof line, m, "s", "check_fraud", "", to);
    assert_has(dot, line);
    snprintf(to, sizeof to, "c%u", chg);
    edge_line(line, sizeof line, m, "s", "confirm_order", "", to);
    assert_has(dot, line);
    edge_line(line, sizeof line, m, "s", "validate_order", "", "compensated");
    assert_has(dot, line); /* nothing before it to undo */
    edge_line(line, sizeof line, m, "s", "reserve_stock", "", "failed");
    assert_has(dot, line);
    assert_has(dot, "label=<on inventory.out_of_stock>");
    /* After the pivot: unlimited retries never fail; 10 tries can, and lead to FAILED. */
    edge_line(line, sizeof line, m, "s", "ship", "", "failed");
    assert_has(dot, line);
    edge_line(line, sizeof line, m, "s", "notify_customer", "", "failed");
    assert_lacks(dot, line);
    /* when: a diamond with the condition and a skip edge around the step. */
    snprintf(to, sizeof to, "s%u", by_id(m, "check_fraud")->index);
    edge_line(line, sizeof line, m, "s", "check_fraud", "_when", to);
    assert_has(dot, line);
    assert_has(dot, "label=<when .input.amount &gt; 1000>");
    assert_has(dot, "label=<else skip>");
    /* wait */
    assert_has(dot, "◷ <B>cool_off</B><BR/>wait 10s");
    /* Deterministic: the same bytes every time. */
    char *again = render(m, NULL);
    assert_string_equal(dot, again);
    sg_free(again);

    sg_free(to_svg(dot));
    assert_dot_silent(dot);
    sg_free(dot);
    free(m);
}

/* ---- DOT: parallel groups and control flow ---- */

static void test_dot_parallel(void **state)
{
    (void)state;
    model_t *m = model_parallel();
    char *dot = render(m, NULL);
    char line[256], to[64];
    unsigned g = by_id(m, "prepare")->index;

    assert_has(dot, "subgraph cluster_prepare {");
    assert_has(dot, "subgraph cluster_prepare_B0 {");
    assert_has(dot, "subgraph cluster_prepare_B1 {");
    assert_has(dot, "subgraph cluster_prepare_B2 {");
    assert_has(dot, "label=<branch stock>");
    assert_has(dot, "label=<<B>parallel prepare</B>");
    snprintf(line, sizeof line, "s%u_fork [shape=box", g);
    assert_has(dot, line);
    snprintf(line, sizeof line, "s%u_join [shape=box", g);
    assert_has(dot, line);
    /* Fork to each branch, each branch to the join, the join on. */
    snprintf(line, sizeof line, "  s%u_fork -> s%u [", g, by_id(m, "reserve")->index);
    assert_has(dot, line);
    snprintf(line, sizeof line, "  s%u_fork -> s%u_when [", g, by_id(m, "check_points")->index);
    assert_has(dot, line);
    snprintf(line, sizeof line, "  s%u -> s%u_join [", by_id(m, "hold")->index, g);
    assert_has(dot, line);
    snprintf(line, sizeof line, "  s%u_join -> s%u [", g, by_id(m, "capture")->index);
    assert_has(dot, line);
    /* The group's undo: a fork into each branch's reverse chain, a join, then on. */
    snprintf(line, sizeof line, "  c%u_fork -> c%u [", g, by_id(m, "hold")->index);
    assert_has(dot, line);
    snprintf(line, sizeof line, "  c%u -> c%u [", by_id(m, "hold")->index,
             by_id(m, "reserve")->index);
    assert_has(dot, line);
    snprintf(line, sizeof line, "  c%u -> c%u_join [", by_id(m, "reserve")->index, g);
    assert_has(dot, line);
    snprintf(line, sizeof line, "  c%u_join -> c%u [", g, by_id(m, "create_order")->index);
    assert_has(dot, line);
    /* A failing branch step undoes the whole group (other branches may be done). */
    snprintf(to, sizeof to, "c%u_fork", g);
    edge_line(line, sizeof line, m, "s", "authorize", "", to);
    assert_has(dot, line);
    edge_line(line, sizeof line, m, "s", "hold", "", to);
    assert_has(dot, line);
    edge_line(line, sizeof line, m, "s", "capture", "", to);
    assert_lacks(dot, line); /* "*" -> fail replaces the default */
    edge_line(line, sizeof line, m, "s", "capture", "", "failed");
    assert_has(dot, line);
    assert_has(dot, "label=<on any error>");
    /* next, end, goto */
    snprintf(line, sizeof line, "  s%u -> s%u [color=\"#37474f\", label=<next>]",
             by_id(m, "ship")->index, by_id(m, "notify")->index);
    assert_has(dot, line);
    snprintf(line, sizeof line, "  s%u -> done [color=\"#37474f\", label=<end>]",
             by_id(m, "notify")->index);
    assert_has(dot, line);
    snprintf(line, sizeof line, "  s%u -> s%u [color=\"#ef6c00\"", by_id(m, "ship")->index,
             by_id(m, "manual_review")->index);
    assert_has(dot, line);
    assert_has(dot, "label=<on shipping.address_invalid>");
    assert_has(dot, "until .input.ship_at");
    assert_has(dot, "label=<when .input.loyalty_id != null>");

    sg_free(to_svg(dot));
    assert_dot_silent(dot);
    sg_free(dot);
    free(m);
}

/* ---- DOT: hostile text ---- */

static void test_dot_hostile(void **state)
{
    (void)state;
    model_t *m = model_hostile();
    char *dot = render(m, NULL);

    assert_true(strncmp(dot, "digraph \"evil_name___", 21) == 0);
    assert_has(dot, "<B>a&quot;b\\\\c&lt;d&gt;&amp;e f</B>");
    assert_has(dot, "q.&quot;op&lt;&gt;&amp;\\\\");
    assert_has(dot, "x&quot;]; evil -&gt; pwn [label=&quot;, &lt;b&gt;&amp;amp;&lt;/b&gt;");
    assert_has(dot, "&lt;/B&gt;&lt;/FONT&gt;&gt;]; } digraph x { &lt;script&gt;");
    assert_has(dot, "\xef\xbf\xbd"); /* control bytes and invalid UTF-8 */
    assert_has(dot, "q.\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_has(dot, "subgraph cluster_S1 {"); /* the id is not a plain name */
    assert_has(dot, "subgraph cluster_S1_B0 {");
    assert_has(dot, "label=<branch br&quot;&lt;&gt;\\\\>");
    assert_has(dot, "until &quot;\\\\\\\\&quot; + (.a&lt;.b|tostring)");
    assert_has(dot,
               "when .x | test(&quot;&lt;\\\\\\\\\\\\&quot;&quot;) and .y &gt; 1 // multi line");
    assert_lacks(dot, "evil -> pwn");
    assert_lacks(dot, "<script>");
    assert_lacks(dot, "id=\"step-a"); /* only plain ids become SVG ids */
    /* No raw newline inside a statement: every line starts a statement or closes one. */
    for (const char *p = strchr(dot, '\n'); p != NULL && p[1] != '\0'; p = strchr(p + 1, '\n')) {
        assert_true(p[1] == ' ' || p[1] == '}');
    }

    char *svg = to_svg(dot);
    assert_dot_silent(dot);
    /* What the user sees is their text, decoded once, with no escape applied by dot. */
    assert_has(svg, "a&quot;b\\c&lt;d&gt;&amp;e f");
    assert_has(svg, "desc with \\N \\G \\L and &quot;quotes&quot; ]]&gt; &lt;!&#45;&#45; &amp;");
    assert_lacks(svg, "<script>");
    sg_free(svg);
    sg_free(dot);
    free(m);
}

/* ---- DOT: live state ---- */

static void test_dot_live(void **state)
{
    (void)state;
    model_t *m = model_linear();
    sg_viz_step_t live[MAX_STEPS] = {0};
    live[by_id(m, "validate_order")->index] = (sg_viz_step_t){SG_VIZ_DONE, 1, 3};
    live[by_id(m, "reserve_stock")->index] = (sg_viz_step_t){SG_VIZ_COMPENSATED, 2, 10};
    live[by_id(m, "check_fraud")->index] = (sg_viz_step_t){SG_VIZ_SKIPPED, 0, 3};
    live[by_id(m, "charge_payment")->index] = (sg_viz_step_t){SG_VIZ_RETRYING, 2, 3};
    char *dot = render(m, live);
    unsigned res = by_id(m, "reserve_stock")->index;
    char line[256];

    assert_has(dot, "fillcolor=\"#c8e6c9\""); /* done */
    assert_has(dot, "<B>done ✓</B>");
    assert_has(dot, "fillcolor=\"#ffe0b2\""); /* retrying */
    assert_has(dot, "<B>retry 2/3</B>");
    assert_has(dot, "style=\"rounded,filled,dotted\""); /* skipped */
    assert_has(dot, "<B>skipped</B>");
    snprintf(line, sizeof line,
             "c%u [shape=box, style=\"rounded,dashed,filled\", "
             "color=\"firebrick\", fontcolor=\"#7f1d1d\", fillcolor=\"#e1bee7\"",
             res);
    assert_has(dot, line);
    assert_has(dot, "<B>undone ✓ · attempt 2/10</B>");
    assert_has(dot, "legend [shape=plaintext");
    sg_free(to_svg(dot));
    assert_dot_silent(dot);
    sg_free(dot);

    /* The other states, and unlimited attempts. */
    live[res] = (sg_viz_step_t){SG_VIZ_COMPENSATION_FAILED, 10, 10};
    live[by_id(m, "charge_payment")->index] = (sg_viz_step_t){SG_VIZ_FAILED, 3, 3};
    live[by_id(m, "confirm_order")->index] = (sg_viz_step_t){SG_VIZ_RUNNING, 4, 0};
    live[by_id(m, "cool_off")->index] = (sg_viz_step_t){SG_VIZ_RUNNING, 0, 0};
    live[by_id(m, "notify_customer")->index] = (sg_viz_step_t){(sg_viz_state_t)99, 0, 0};
    dot = render(m, live);
    assert_has(dot, "fillcolor=\"#8b0000\"");
    assert_has(dot, "<B>undo failed ✗ · attempt 10/10</B>");
    assert_has(dot, "<B>failed ✗ · attempt 3/3</B>");
    assert_has(dot, "<B>running · attempt 4/∞</B>");
    sg_free(to_svg(dot));
    sg_free(dot);
    assert_string_equal(sg_viz_state_name(SG_VIZ_COMPENSATION_FAILED), "COMPENSATION_FAILED");
    assert_string_equal(sg_viz_state_name((sg_viz_state_t)99), "UNKNOWN");

    /* Parallel and hostile models in the live view as well. */
    free(m);
    m = model_parallel();
    memset(live, 0, sizeof live);
    live[by_id(m, "prepare")->index] = (sg_viz_step_t){SG_VIZ_COMPENSATING, 0, 0};
    live[by_id(m, "authorize")->index] = (sg_viz_step_t){SG_VIZ_COMPENSATING, 1, 10};
    live[by_id(m, "reserve")->index] = (sg_viz_step_t){SG_VIZ_FAILED, 3, 3};
    dot = render(m, live);
    sg_free(to_svg(dot));
    sg_free(dot);
    free(m);
    m = model_hostile();
    memset(live, 0, sizeof live);
    live[0] = (sg_viz_step_t){SG_VIZ_RETRYING, 2, 0};
    dot = render(m, live);
    assert_has(dot, "<B>retry 2/∞</B>");
    sg_free(to_svg(dot));
    assert_dot_silent(dot);
    sg_free(dot);
    free(m);
}

/* ---- the live state of an instance (live.c) ---- */

static void assert_view(const sg_viz_step_t *v, sg_viz_state_t state, uint32_t attempt,
                        uint32_t max)
{
    assert_string_equal(sg_viz_state_name(v->state), sg_viz_state_name(state));
    assert_int_equal(v->attempt, attempt);
    assert_int_equal(v->max_attempts, max);
}

static void test_live_from_instance(void **state)
{
    (void)state;
    model_t *m = model_linear();
    sg_step_state_t ss[MAX_STEPS] = {{0}};
    sg_inst_t inst = {.def = &m->def, .status = SG_INST_RUNNING, .steps = ss};
    unsigned validate = by_id(m, "validate_order")->index, res = by_id(m, "reserve_stock")->index;
    unsigned fraud = by_id(m, "check_fraud")->index, charge = by_id(m, "charge_payment")->index;
    unsigned confirm = by_id(m, "confirm_order")->index, cool = by_id(m, "cool_off")->index;
    unsigned notify = by_id(m, "notify_customer")->index, ship = by_id(m, "ship")->index;
    ss[validate] = (sg_step_state_t){.status = SG_SS_DONE, .attempt = 1};
    ss[res] = (sg_step_state_t){
        .status = SG_SS_DONE, .attempt = 2, .comp = SG_CS_DONE, .comp_attempt = 2};
    ss[fraud] = (sg_step_state_t){.status = SG_SS_SKIPPED};
    ss[charge] = (sg_step_state_t){.status = SG_SS_FAILED, .attempt = 3};
    ss[confirm] = (sg_step_state_t){.status = SG_SS_BACKOFF, .attempt = 1};
    ss[cool] = (sg_step_state_t){.status = SG_SS_WAITING};
    /* Two attempts since an operator retry at attempt 3: the policy counts from there. */
    ss[notify] = (sg_step_state_t){.status = SG_SS_RUNNING, .attempt = 5, .attempt_base = 3};
    sg_viz_step_t live[MAX_STEPS];
    memset(live, 0xff, sizeof live);
    sg_viz_live(&inst, live);
    assert_view(&live[validate], SG_VIZ_DONE, 1, 3);
    assert_view(&live[res], SG_VIZ_COMPENSATED, 2, 10);
    assert_view(&live[fraud], SG_VIZ_SKIPPED, 0, 3);
    assert_view(&live[charge], SG_VIZ_FAILED, 3, 3);
    assert_view(&live[confirm], SG_VIZ_RETRYING, 2, 3);
    assert_view(&live[cool], SG_VIZ_RUNNING, 0, 0);
    assert_view(&live[notify], SG_VIZ_RUNNING, 2, 0);
    assert_view(&live[ship], SG_VIZ_PENDING, 0, 10);
    char *dot = render(m, live);
    assert_has(dot, "<B>undone ✓ · attempt 2/10</B>");
    assert_has(dot, "<B>retry 2/3</B>");
    sg_free(dot);

    /* Compensations: waiting for a retry, queued, failed; an undo the pivot abandoned. */
    ss[res].comp = SG_CS_BACKOFF;
    ss[res].comp_attempt = 3;
    ss[res].comp_attempt_base = 1;
    ss[validate].comp = SG_CS_PENDING;
    sg_viz_live(&inst, live);
    assert_view(&live[res], SG_VIZ_COMPENSATING, 3, 10);
    assert_view(&live[validate], SG_VIZ_COMPENSATING, 0, 0);
    ss[res].comp = SG_CS_FAILED;
    ss[res].comp_attempt = 11;
    sg_viz_live(&inst, live);
    assert_view(&live[res], SG_VIZ_COMPENSATION_FAILED, 10, 10);
    inst.status = SG_INST_COMPLETED;
    sg_viz_live(&inst, live);
    assert_view(&live[validate], SG_VIZ_DONE, 1, 3);
    assert_view(&live[res], SG_VIZ_COMPENSATION_FAILED, 10, 10);
    free(m);
}

/* Appends to what is in the buffer; an empty saga still draws start -> COMPLETED. */
static void test_dot_appends_and_empty(void **state)
{
    (void)state;
    model_t *m = model_new("empty", 1);
    model_finish(m, seq_of(m, "main", 0));
    sg_buf_t b;
    sg_buf_init(&b);
    sg_buf_puts(&b, "// before\n");
    sg_viz_dot(&m->def, NULL, &b);
    assert_true(strncmp(b.data, "// before\ndigraph \"empty\" {", 27) == 0);
    assert_has(b.data, "  start -> done [");
    assert_lacks(b.data, "compensated");
    sg_free(to_svg(b.data));
    sg_buf_fini(&b);
    free(m);
}

/* Every allocation failure leaves a buffer marked oom, never a crash or a leak. */
static void test_dot_oom(void **state)
{
    (void)state;
    model_t *m = model_parallel();
    for (size_t nth = 1;; nth++) {
        sg_buf_t b;
        sg_buf_init(&b);
        sg_alloc_fail_at(nth);
        sg_viz_dot(&m->def, NULL, &b);
        size_t seen = sg_alloc_fail_at(0);
        bool failed = b.oom;
        sg_buf_fini(&b);
        if (seen < nth) {
            assert_false(failed);
            break;
        }
        assert_true(failed);
    }
    free(m);
}

/* ---- the dot runner ---- */

static void test_svg_garbage(void **state)
{
    (void)state;
    sg_buf_t out;
    sg_buf_init(&out);
    sg_buf_puts(&out, "keep");
    char err[256];
    const char *bad = "this is { not dot";
    assert_int_equal(sg_viz_svg(bad, strlen(bad), &out, err, sizeof err), SG_ERR_INVALID);
    assert_has(err, "syntax error");
    assert_null(strchr(err, '\n'));
    assert_string_equal(out.data, "keep"); /* untouched on error */

    /* dot gives up at once and stops reading 4 MB: EPIPE, never SIGPIPE. */
    size_t n = 4u << 20;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    memcpy(big, "}}}} ", 5);
    big[n] = '\0';
    assert_int_equal(sg_viz_svg(big, n, &out, err, sizeof err), SG_ERR_INVALID);
    assert_has(err, "syntax error");
    free(big);

    /* A tiny errbuf is still terminated; a NULL one is allowed. */
    char tiny[8];
    assert_int_equal(sg_viz_svg(bad, strlen(bad), &out, tiny, sizeof tiny), SG_ERR_INVALID);
    assert_int_equal(strlen(tiny), 7);
    assert_int_equal(sg_viz_svg(bad, strlen(bad), &out, NULL, 0), SG_ERR_INVALID);
    sg_buf_fini(&out);
}

/* 2 MB of nodes in one graph: far beyond the pipe buffers in both directions. */
static void test_svg_big(void **state)
{
    (void)state;
    sg_buf_t dot, out;
    sg_buf_init(&dot);
    sg_buf_init(&out);
    sg_buf_puts(&dot, "digraph big {\n");
    for (int i = 0; dot.len < (2u << 20); i++) {
        sg_buf_printf(&dot, "n%d [label=\"", i);
        for (int w = 0; w < 100; w++) {
            sg_buf_puts(&dot, "node ");
        }
        sg_buf_puts(&dot, "\"];\n");
    }
    sg_buf_puts(&dot, "}\n");
    char err[256];
    assert_int_equal(sg_viz_svg(dot.data, dot.len, &out, err, sizeof err), SG_OK);
    assert_true(out.len > (2u << 20));
    assert_has(out.data, "</svg>");
    sg_buf_fini(&out);

    /* Many graphs in one input: dot writes each SVG while we are still writing. */
    sg_buf_init(&out);
    dot.len = 0;
    for (int i = 0; dot.len < (2u << 20); i++) {
        sg_buf_printf(&dot, "digraph g%d { /* %0480d */ a%d -> b%d; }\n", i, 0, i, i);
    }
    assert_int_equal(sg_viz_svg(dot.data, dot.len, &out, err, sizeof err), SG_OK);
    assert_true(out.len > (4u << 20));
    sg_buf_fini(&out);
    sg_buf_fini(&dot);
}

/* cat writes as it reads: a runner that writes all input first would deadlock. */
static void test_run_echo(void **state)
{
    (void)state;
    static const char *const argv[] = {"cat", NULL};
    size_t n = 8u << 20;
    char *in = malloc(n);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++) {
        in[i] = (char)('a' + i % 26);
    }
    sg_buf_t out;
    sg_buf_init(&out);
    char err[128];
    assert_int_equal(viz__run(argv, in, n, 10000, n, &out, err, sizeof err), SG_OK);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, in, n);

    /* Output over the cap: killed, reported, buffer restored. */
    sg_buf_t small;
    sg_buf_init(&small);
    assert_int_equal(viz__run(argv, in, n, 10000, 1000, &small, err, sizeof err), SG_ERR_LIMIT);
    assert_int_equal(small.len, 0);
    assert_has(err, "too much output");
    sg_buf_fini(&small);

    /* Empty input. */
    out.len = 0;
    assert_int_equal(viz__run(argv, "", 0, 10000, n, &out, err, sizeof err), SG_OK);
    assert_int_equal(out.len, 0);
    free(in);
    sg_buf_fini(&out);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* No child of ours is left: neither running nor a zombie. */
static void assert_no_children(void)
{
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_run_timeout(void **state)
{
    (void)state;
    sg_buf_t out;
    sg_buf_init(&out);
    char err[128];
    static const char *const sleeper[] = {"sleep", "30", NULL};
    int64_t t0 = mono_ms();
    assert_int_equal(viz__run(sleeper, "", 0, 300, 1024, &out, err, sizeof err), SG_ERR_LIMIT);
    assert_true(mono_ms() - t0 < 5000);
    assert_has(err, "killed after running too long");
    assert_no_children();

    /* Closes its pipes but lives on: still bounded and reaped. */
    static const char *const detached[] = {"sh", "-c", "exec >&- 2>&- <&-; exec sleep 30", NULL};
    t0 = mono_ms();
    assert_int_equal(viz__run(detached, "x", 1, 300, 1024, &out, err, sizeof err), SG_ERR_LIMIT);
    assert_true(mono_ms() - t0 < 5000);
    assert_no_children();

    /* Never reads its input, which does not fit a pipe. */
    static const char *const deaf[] = {"sleep", "30", NULL};
    size_t n = 1u << 20;
    char *in = calloc(1, n);
    assert_non_null(in);
    assert_int_equal(viz__run(deaf, in, n, 300, 1024, &out, err, sizeof err), SG_ERR_LIMIT);
    assert_no_children();
    free(in);
    sg_buf_fini(&out);
}

static void test_run_exit_status(void **state)
{
    (void)state;
    sg_buf_t out;
    sg_buf_init(&out);
    char err[128];
    static const char *const quiet[] = {"sh", "-c", "exit 3", NULL};
    assert_int_equal(viz__run(quiet, "", 0, 5000, 1024, &out, err, sizeof err), SG_ERR_INVALID);
    assert_string_equal(err, "sh: exited with status 3");
    static const char *const chatty[] = {
        "sh", "-c", "echo 'Warning: first' >&2; echo 'Error: second' >&2; echo more >&2; exit 1",
        NULL};
    assert_int_equal(viz__run(chatty, "", 0, 5000, 1024, &out, err, sizeof err), SG_ERR_INVALID);
    assert_string_equal(err, "Error: second");
    static const char *const plain[] = {"sh", "-c", "echo 'bad input' >&2; exit 1", NULL};
    assert_int_equal(viz__run(plain, "", 0, 5000, 1024, &out, err, sizeof err), SG_ERR_INVALID);
    assert_string_equal(err, "bad input");
    static const char *const killed[] = {"sh", "-c", "kill -SEGV $$", NULL};
    assert_int_equal(viz__run(killed, "", 0, 5000, 1024, &out, err, sizeof err), SG_ERR_INTERNAL);
    assert_has(err, "signal 11");
    assert_no_children();
    sg_buf_fini(&out);
}

static void test_run_not_found(void **state)
{
    (void)state;
    sg_buf_t out;
    sg_buf_init(&out);
    char err[128];
    static const char *const nope[] = {"sagad-no-such-program", NULL};
    assert_int_equal(viz__run(nope, "x", 1, 5000, 1024, &out, err, sizeof err), SG_ERR_NOT_FOUND);
    assert_has(err, "sagad-no-such-program");

    /* `dot` itself missing: a PATH without it. */
    char *old = strdup(getenv("PATH"));
    assert_non_null(old);
    setenv("PATH", "/nonexistent-sagad-test", 1);
    assert_int_equal(sg_viz_svg("digraph{}", 9, &out, err, sizeof err), SG_ERR_NOT_FOUND);
    setenv("PATH", old, 1);
    free(old);
    assert_int_equal(out.len, 0);
    assert_no_children();
    sg_buf_fini(&out);
}

/* The caller's SIGPIPE disposition and mask are what they were. */
static void test_run_signal_state(void **state)
{
    (void)state;
    sigset_t before, after;
    pthread_sigmask(SIG_SETMASK, NULL, &before);
    sg_buf_t out;
    sg_buf_init(&out);
    char err[128];
    static const char *const early[] = {"sh", "-c", "exit 0", NULL};
    size_t n = 1u << 20;
    char *in = calloc(1, n);
    assert_non_null(in);
    assert_int_equal(viz__run(early, in, n, 5000, 1024, &out, err, sizeof err), SG_OK);
    pthread_sigmask(SIG_SETMASK, NULL, &after);
    assert_int_equal(sigismember(&after, SIGPIPE), sigismember(&before, SIGPIPE));
    sigset_t pending;
    sigpending(&pending);
    assert_false(sigismember(&pending, SIGPIPE));
    free(in);
    sg_buf_fini(&out);
}

/* ---- every shipped workflow and good fixture, loaded by the real loader ---- */

/* The targets of the dashed firebrick edges leaving `from` in dot text. */
static size_t comp_targets(const char *dot, const char *from, char out[][48], size_t cap)
{
    char prefix[64];
    size_t n = 0;
    snprintf(prefix, sizeof prefix, "\n  %s -> ", from);
    for (const char *p = strstr(dot, prefix); p != NULL && n < cap; p = strstr(p + 1, prefix)) {
        const char *to = p + strlen(prefix);
        const char *eol = strchr(to, '\n');
        const char *dashed = strstr(to, "[style=dashed, color=\"firebrick\"");
        if (dashed == NULL || dashed > eol) {
            continue;
        }
        size_t len = strcspn(to, " ");
        snprintf(out[n++], 48, "%.*s", (int)len, to);
    }
    return n;
}

/* Whether node `want` can be reached from `from` along dashed firebrick edges. */
static bool comp_reaches(const char *dot, const char *from, const char *want, int depth)
{
    if (strcmp(from, want) == 0) {
        return true;
    }
    char next[16][48];
    size_t n = comp_targets(dot, from, next, 16);
    for (size_t i = 0; i < n && depth < 256; i++) {
        if (comp_reaches(dot, next[i], want, depth + 1)) {
            return true;
        }
    }
    return false;
}

/* The drawing agrees with the dsl's compensation plan: from where a failing step's
 * "fails" edge enters the undo chain, every compensation of its plan can be reached. */
static void check_plans(const sg_def_t *def, const char *dot, const char *path)
{
    for (size_t i = 0; i < def->n_steps; i++) {
        const sg_step_t *st = def->all_steps[i];
        if (st->kind != SG_STEP_ACTIVITY || st->cls == SG_CLASS_RETRIABLE) {
            continue;
        }
        char from[32], needle[64];
        snprintf(from, sizeof from, "s%u", st->index);
        snprintf(needle, sizeof needle, "\n  %s -> ", from);
        const char *e = strstr(dot, needle);
        while (e != NULL && strstr(e + 1, "\n") != NULL &&
               (strstr(e, "label=<fails") == NULL ||
                strstr(e, "label=<fails") > strchr(e + 1, '\n'))) {
            e = strstr(e + 1, needle);
        }
        if (e == NULL) {
            continue; /* cannot fail, or a "*" route decides */
        }
        const char *to = e + strlen(needle);
        char entry[48];
        snprintf(entry, sizeof entry, "%.*s", (int)strcspn(to, " "), to);
        const sg_step_t *plan[256];
        bool maybe[256];
        size_t n = sg_def_compensation_plan(def, st, plan, maybe, 256);
        for (size_t k = 0; k < n; k++) {
            char want[32];
            snprintf(want, sizeof want, "c%u", plan[k]->index);
            if (!comp_reaches(dot, entry, want, 0)) {
                fail_msg("%s: step %s fails into %s, which does not lead to %s (%s)", path, st->id,
                         entry, want, plan[k]->id);
            }
        }
    }
}

static size_t render_files(const char *pattern)
{
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) {
        return 0;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *path = g.gl_pathv[i];
        sg_def_t *def = NULL;
        sg_diags_t diags;
        sg_diags_init(&diags, 0);
        sg_err_t rc = sg_def_load_file(path, NULL, &def, &diags);
        if (rc != SG_OK) {
            sg_buf_t msg;
            sg_buf_init(&msg);
            sg_diags_format(&diags, path, &msg);
            fail_msg("%s: %s\n%s", path, sg_strerror(rc), msg.data);
        }
        sg_diags_fini(&diags);

        sg_buf_t b;
        sg_buf_init(&b);
        sg_viz_dot(def, NULL, &b);
        assert_false(b.oom);
        check_plans(def, b.data, path);
        sg_free(to_svg(b.data));
        assert_dot_silent(b.data);

        /* The live view, with every state somewhere. */
        sg_viz_step_t *live = calloc(def->n_steps + 1, sizeof *live);
        assert_non_null(live);
        for (size_t k = 0; k < def->n_steps; k++) {
            live[k] = (sg_viz_step_t){(sg_viz_state_t)(k % 9), (uint32_t)k, (uint32_t)(k % 4)};
        }
        b.len = 0;
        sg_viz_dot(def, live, &b);
        assert_false(b.oom);
        sg_free(to_svg(b.data));
        free(live);
        sg_buf_fini(&b);
        sg_def_free(def);
    }
    size_t n = g.gl_pathc;
    globfree(&g);
    return n;
}

/* Run from the repository root (tests/run.sh does). */
static void test_workflows(void **state)
{
    (void)state;
    size_t n = render_files("workflows/*.yaml");
    if (n == 0) {
        fail_msg("no workflows/*.yaml here: run from the repository root");
    }
    render_files("workflows/examples/*.yaml");
    assert_true(render_files("tests/fixtures/dsl/good/*.yaml") > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_linear),
        cmocka_unit_test(test_dot_parallel),
        cmocka_unit_test(test_dot_hostile),
        cmocka_unit_test(test_dot_live),
        cmocka_unit_test(test_live_from_instance),
        cmocka_unit_test(test_dot_appends_and_empty),
        cmocka_unit_test(test_dot_oom),
        cmocka_unit_test(test_svg_garbage),
        cmocka_unit_test(test_svg_big),
        cmocka_unit_test(test_run_echo),
        cmocka_unit_test(test_run_timeout),
        cmocka_unit_test(test_run_exit_status),
        cmocka_unit_test(test_run_not_found),
        cmocka_unit_test(test_run_signal_state),
        cmocka_unit_test(test_workflows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
