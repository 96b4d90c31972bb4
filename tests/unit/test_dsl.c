/* Unit tests of the dsl module: the model a definition compiles to, the rules, the
 * compensation plans. Error output per fixture is golden-tested by tests/run.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "orchestrator/dsl/dsl.h"

static const char order_yaml[] =
    "saga: order_create\n"
    "version: 3\n"
    "timeout: 10m\n"
    "input:\n"
    "  schema: {type: object, required: [order_id], properties: {order_id: {type: string}}}\n"
    "defaults:\n"
    "  timeout: 5s\n"
    "  retry: {max_attempts: 4, initial: 50ms}\n"
    "events:\n"
    "  on_start: [order.created]\n"
    "  on_compensated: [{type: order.cancelled, data: '{id: .input.order_id}'}]\n"
    "steps:\n"
    "  - id: reserve\n"
    "    activity: inventory.reserve\n"
    "    input: '{order_id: .input.order_id}'\n"
    "    retry: {non_retryable: [inventory.out_of_stock]}\n"
    "    compensate:\n"
    "      activity: inventory.release\n"
    "      input: '{r: .steps.reserve.output.reservation_id}'\n"
    "  - id: charge\n"
    "    activity: payment.charge\n"
    "    timeout: 20s\n"
    "    compensate: {activity: payment.refund, retry: {max_attempts: unlimited}}\n"
    "  - id: approve\n"
    "    activity: order.approve\n"
    "    pivot: true\n"
    "  - id: notify\n"
    "    activity: notification.send\n";

static sg_def_t *load_ok(const char *yaml)
{
    sg_diags_t d;
    sg_diags_init(&d, 20);
    sg_def_t *def = NULL;
    sg_err_t rc = sg_def_load("t.yaml", yaml, strlen(yaml), NULL, &def, &d);
    if (rc != SG_OK) {
        for (size_t i = 0; i < d.count; i++) {
            print_error("%u:%u: %s\n", d.items[i].pos.line, d.items[i].pos.col, d.items[i].message);
        }
        sg_diags_fini(&d);
        fail_msg("load failed: %s", sg_strerror(rc));
    }
    sg_diags_fini(&d);
    return def;
}

/* Loads yaml expecting failure; returns the formatted diagnostics (caller frees). */
static char *load_err(const char *yaml)
{
    sg_diags_t d;
    sg_diags_init(&d, 20);
    sg_def_t *def = NULL;
    sg_err_t rc = sg_def_load("t.yaml", yaml, strlen(yaml), NULL, &def, &d);
    assert_int_not_equal(rc, SG_OK);
    assert_null(def);
    sg_buf_t b;
    sg_buf_init(&b);
    sg_diags_format(&d, "t.yaml", &b);
    sg_diags_fini(&d);
    return sg_buf_take(&b);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
    }
}

static void test_order_model(void **state)
{
    (void)state;
    sg_def_t *def = load_ok(order_yaml);
    assert_string_equal(def->name, "order_create");
    assert_int_equal(def->version, 3);
    assert_int_equal(def->timeout_ms, 600000);
    assert_int_equal(def->n_steps, 4);
    assert_non_null(def->input_schema);
    assert_non_null(def->input_validator);
    assert_int_equal(strlen(def->sha256), 64);

    const sg_step_t *reserve = sg_def_step(def, "reserve");
    assert_int_equal(reserve->cls, SG_CLASS_COMPENSATABLE);
    assert_string_equal(reserve->call.activity, "inventory.reserve");
    assert_string_equal(reserve->call.queue, "inventory");
    assert_int_equal(reserve->call.timeout_ms, 5000);          /* defaults.timeout */
    assert_int_equal(reserve->call.retry.max_attempts, 4);     /* defaults.retry */
    assert_int_equal(reserve->call.retry.initial_ms, 50);      /* defaults.retry */
    assert_int_equal(reserve->call.retry.max_delay_ms, 30000); /* built-in default */
    assert_int_equal(reserve->call.retry.n_non_retryable, 1);
    assert_string_equal(reserve->call.retry.non_retryable[0], "inventory.out_of_stock");
    assert_string_equal(reserve->compensate->activity, "inventory.release");
    assert_int_equal(reserve->compensate->retry.max_attempts, 10); /* compensation default */
    assert_int_equal(reserve->compensate->timeout_ms, 5000);

    const sg_step_t *charge = sg_def_step(def, "charge");
    assert_int_equal(charge->call.timeout_ms, 20000);
    assert_int_equal(charge->compensate->retry.max_attempts, 0); /* unlimited */

    const sg_step_t *approve = sg_def_step(def, "approve");
    assert_int_equal(approve->cls, SG_CLASS_PIVOT);
    assert_ptr_equal(def->pivot, approve);
    assert_null(approve->compensate);

    const sg_step_t *notify = sg_def_step(def, "notify");
    assert_int_equal(notify->cls, SG_CLASS_RETRIABLE);
    assert_int_equal(notify->call.retry.max_attempts, 0); /* retriable: until success */

    assert_int_equal(def->n_events[SG_EVENT_ON_START], 1);
    assert_string_equal(def->events[SG_EVENT_ON_START][0].type, "order.created");
    assert_string_equal(def->events[SG_EVENT_ON_COMPENSATED][0].data.text, "{id: .input.order_id}");
    assert_int_equal(def->n_events[SG_EVENT_ON_FAILED], 0);
    sg_def_free(def);
}

static void test_compensation_plan_reverse_order(void **state)
{
    (void)state;
    sg_def_t *def = load_ok(order_yaml);
    const sg_step_t *steps[8];
    bool maybe[8];
    size_t n = sg_def_compensation_plan(def, sg_def_step(def, "approve"), steps, maybe, 8);
    assert_int_equal(n, 2);
    assert_string_equal(steps[0]->id, "charge");
    assert_string_equal(steps[1]->id, "reserve");
    assert_false(maybe[0]);
    assert_false(maybe[1]);
    n = sg_def_compensation_plan(def, sg_def_step(def, "reserve"), steps, maybe, 8);
    assert_int_equal(n, 0);
    sg_def_free(def);
}

static const char parallel_yaml[] =
    "saga: par\nversion: 1\nsteps:\n"
    "  - id: first\n    activity: test.echo\n    compensate: {activity: test.echo}\n"
    "  - id: group\n    parallel:\n"
    "      - id: left\n        steps:\n"
    "          - id: l1\n            activity: test.echo\n            compensate: {activity: "
    "test.echo}\n"
    "          - id: l2\n            activity: test.fail\n            compensate: none\n"
    "      - id: right\n        steps:\n"
    "          - id: r1\n            activity: test.echo\n            compensate: {activity: "
    "test.echo}\n"
    "  - id: maybe_step\n    when: .input.x\n    activity: test.echo\n"
    "    compensate: {activity: test.echo}\n"
    "  - id: last\n    activity: test.echo\n    pivot: true\n";

static void test_parallel_plan(void **state)
{
    (void)state;
    sg_def_t *def = load_ok(parallel_yaml);
    const sg_step_t *group = sg_def_step(def, "group");
    assert_int_equal(group->kind, SG_STEP_PARALLEL);
    assert_int_equal(group->n_branches, 2);
    assert_string_equal(group->branches[1].id, "right");
    const sg_step_t *l2 = sg_def_step(def, "l2");
    assert_ptr_equal(l2->group, group);
    assert_int_equal(l2->cls, SG_CLASS_COMPENSATABLE);
    assert_true(l2->compensate_none);

    const sg_step_t *steps[8];
    bool maybe[8];
    /* l2 fails: l1 surely ran, r1 maybe (concurrent), then first. */
    size_t n = sg_def_compensation_plan(def, l2, steps, maybe, 8);
    assert_int_equal(n, 3);
    assert_string_equal(steps[0]->id, "l1");
    assert_false(maybe[0]);
    assert_string_equal(steps[1]->id, "r1");
    assert_true(maybe[1]);
    assert_string_equal(steps[2]->id, "first");
    assert_false(maybe[2]);
    /* last (pivot) fails: maybe_step (conditional), the group's steps, first. */
    n = sg_def_compensation_plan(def, sg_def_step(def, "last"), steps, maybe, 8);
    assert_int_equal(n, 4);
    assert_string_equal(steps[0]->id, "maybe_step");
    assert_true(maybe[0]);
    assert_string_equal(steps[1]->id, "r1");
    assert_string_equal(steps[2]->id, "l1");
    assert_string_equal(steps[3]->id, "first");
    sg_def_free(def);
}

static const char jumps_yaml[] =
    "saga: jumps\nversion: 1\nsteps:\n"
    "  - id: a\n    activity: test.echo\n    compensate: {activity: test.echo}\n"
    "    on_error: [{code: [x.y, '*'], goto: d}]\n"
    "  - id: b\n    activity: test.echo\n    compensate: {activity: test.echo}\n"
    "  - id: c\n    activity: test.echo\n    pivot: true\n    end: true\n"
    "  - id: d\n    activity: test.echo\n    retry: {max_attempts: unlimited}\n";

static void test_jumps(void **state)
{
    (void)state;
    sg_def_t *def = load_ok(jumps_yaml);
    const sg_step_t *a = sg_def_step(def, "a");
    assert_int_equal(a->n_routes, 1);
    assert_int_equal(a->routes[0].action, SG_ROUTE_GOTO);
    assert_ptr_equal(a->routes[0].target, sg_def_step(def, "d"));
    assert_int_equal(a->routes[0].n_codes, 2);
    assert_true(sg_def_step(def, "c")->end);
    assert_int_equal(sg_def_step(def, "d")->cls, SG_CLASS_RETRIABLE);
    /* d can be reached straight from a: b may not have run when d fails. */
    const sg_step_t *steps[8];
    bool maybe[8];
    size_t n = sg_def_compensation_plan(def, sg_def_step(def, "c"), steps, maybe, 8);
    assert_int_equal(n, 2);
    assert_false(maybe[0]);
    sg_def_free(def);
}

static void test_errors_collected(void **state)
{
    (void)state;
    char *out = load_err("saga: Bad Name\nversion: \"1\"\nstpes: []\n");
    assert_contains(out, "t.yaml:1:7: error: invalid saga name \"Bad Name\"");
    assert_contains(out, "t.yaml:2:10: error: version must be an integer, not a quoted string");
    assert_contains(out, "t.yaml:3:1: error: unknown key \"stpes\" in the saga");
    assert_contains(out, "hint: did you mean \"steps\"?");
    /* the typo explains the missing key: no second error about it */
    assert_null(strstr(out, "missing required key \"steps\""));
    sg_free(out);
}

static void test_richardson_rules(void **state)
{
    (void)state;
    char *out = load_err("saga: s\nversion: 1\nsteps:\n"
                         "  - id: a\n    activity: q.a\n"
                         "  - id: p\n    activity: q.p\n    pivot: true\n"
                         "    compensate: {activity: q.undo}\n"
                         "  - id: r\n    activity: q.r\n    retry: {max_attempts: 3}\n"
                         "  - id: r2\n    activity: q.r\n    compensate: {activity: q.undo}\n"
                         "  - id: p2\n    activity: q.p\n    pivot: true\n");
    assert_contains(out, "4:5: error: step \"a\" comes before the pivot but has no compensate");
    assert_contains(out, "9:17: error: the pivot \"p\" is the point of no return");
    assert_contains(out, "10:5: error: retriable step \"r\" must be retried until it succeeds");
    assert_contains(out, "error: step \"r2\" comes after the pivot and cannot have a compensation");
    assert_contains(out, "error: second pivot \"p2\"");
    sg_free(out);
}

static void test_flow_errors(void **state)
{
    (void)state;
    char *out = load_err("saga: s\nversion: 1\nsteps:\n"
                         "  - id: a\n    activity: q.a\n    compensate: none\n    end: true\n"
                         "  - id: b\n    activity: q.b\n    compensate: none\n    next: a\n"
                         "  - id: c\n    activity: q.c\n    compensate: none\n"
                         "    on_error: [{code: e, goto: nope}]\n");
    assert_contains(out, "step \"b\" is unreachable");
    assert_contains(out, "cycle: next from \"b\" goes back to \"a\"");
    assert_contains(out, "goto: unknown step \"nope\"");
    sg_free(out);
}

static void test_expression_references(void **state)
{
    (void)state;
    char *out = load_err("saga: s\nversion: 1\n"
                         "events: {on_start: [{type: a.b, data: '.steps.a.output'}]}\n"
                         "steps:\n"
                         "  - id: a\n    activity: q.a\n    compensate: none\n"
                         "    input: '{x: .steps.b.output}'\n"
                         "  - id: b\n    activity: q.b\n    compensate: none\n"
                         "    input: '.steps.nope.output'\n");
    assert_contains(out, "3:40: error: on_start events are published before any step has run");
    assert_contains(out, "8:17: error: step \"a\" refers to \"b\", which has not run yet");
    assert_contains(out, "12:13: error: expression refers to unknown step \"nope\"");
    sg_free(out);
}

static void test_jq_syntax_error_position(void **state)
{
    (void)state;
    char *out = load_err("saga: s\nversion: 1\nsteps:\n"
                         "  - id: a\n    activity: q.a\n    compensate: none\n"
                         "    input: '{x: .input | nosuchfn}'\n");
    assert_contains(out, "t.yaml:7:26: error: jq: function nosuchfn/0 is not defined");
    sg_free(out);
}

static void test_input_schema_errors_located(void **state)
{
    (void)state;
    char *out = load_err("saga: s\nversion: 1\ninput:\n  schema:\n    type: object\n"
                         "    properties:\n      qty: {type: integer, minimun: 1}\n"
                         "steps:\n  - id: a\n    activity: q.a\n    compensate: none\n");
    assert_contains(out, "t.yaml:7:28: error: input schema: unknown keyword \"minimun\"");
    assert_contains(out, "minimum");
    sg_free(out);
}

static void test_heartbeat_model(void **state)
{
    (void)state;
    sg_def_t *def = load_ok("saga: hb\nversion: 1\ndefaults: {timeout: 1m}\nsteps:\n"
                            "  - id: a\n    activity: q.a\n    timeout: 2h\n    heartbeat: 10s\n"
                            "    compensate: {activity: q.undo, heartbeat: 59s}\n"
                            "  - id: b\n    activity: q.b\n    heartbeat: 1m\n    timeout: 1m1ms\n"
                            "    compensate: {activity: q.undo}\n");
    const sg_step_t *a = sg_def_step(def, "a");
    assert_int_equal(a->call.timeout_ms, 7200000);
    assert_int_equal(a->call.heartbeat_ms, 10000);
    assert_int_equal(a->compensate->timeout_ms, 60000); /* defaults.timeout */
    assert_int_equal(a->compensate->heartbeat_ms, 59000);
    /* key order does not matter: the timeout after the heartbeat still counts */
    const sg_step_t *b = sg_def_step(def, "b");
    assert_int_equal(b->call.heartbeat_ms, 60000);
    assert_int_equal(b->compensate->heartbeat_ms, 0); /* none unless given */
    sg_def_free(def);
    def = load_ok(order_yaml);
    for (size_t i = 0; i < def->n_steps; i++) {
        assert_int_equal(def->all_steps[i]->call.heartbeat_ms, 0);
    }
    sg_def_free(def);
}

static void test_heartbeat_errors(void **state)
{
    (void)state;
    /* the timeout it is compared with comes from the step, defaults or the built-in 30s */
    char *out = load_err("saga: hb\nversion: 1\ndefaults: {timeout: 20s, heartbeat: 5s}\n"
                         "steps:\n"
                         "  - id: a\n    activity: q.a\n    heartbeat: 20s\n"
                         "    compensate: {activity: q.undo, timeout: 5s, heartbeat: 1m}\n"
                         "  - id: w\n    wait: 1s\n    heartbeat: 1s\n"
                         "  - id: z\n    activity: q.z\n    heartbeat: 0s\n    compensate: none\n");
    assert_contains(out, "t.yaml:3:26: error: heartbeat cannot be a default");
    assert_contains(out, "t.yaml:7:16: error: heartbeat 20s of step \"a\" must be shorter than "
                         "its timeout 20s (defaults.timeout)");
    assert_contains(out, "t.yaml:8:60: error: heartbeat 1m of the compensation of step \"a\" "
                         "must be shorter than its timeout 5s\n");
    assert_contains(out, "t.yaml:11:5: error: \"heartbeat\" does not apply to a wait step");
    assert_contains(out, "t.yaml:14:16: error: heartbeat must be longer than 0");
    sg_free(out);
    out = load_err("saga: hb\nversion: 1\nsteps:\n"
                   "  - id: a\n    activity: q.a\n    heartbeat: 30s\n    compensate: none\n");
    assert_contains(out, "t.yaml:6:16: error: heartbeat 30s of step \"a\" must be shorter than its "
                         "timeout 30s (the built-in default)");
    sg_free(out);
}

static void test_oom_loop(void **state)
{
    (void)state;
    for (size_t nth = 1; nth < 5000; nth++) {
        sg_diags_t d;
        sg_diags_init(&d, 20);
        sg_def_t *def = NULL;
        sg_alloc_fail_at(nth);
        sg_err_t rc = sg_def_load("t.yaml", parallel_yaml, strlen(parallel_yaml), NULL, &def, &d);
        sg_alloc_fail_at(0);
        sg_diags_fini(&d);
        if (rc == SG_OK) {
            sg_def_free(def);
            return;
        }
        assert_null(def);
        assert_int_equal(rc, SG_ERR_NOMEM);
    }
    fail_msg("load never succeeded");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_model),
        cmocka_unit_test(test_compensation_plan_reverse_order),
        cmocka_unit_test(test_parallel_plan),
        cmocka_unit_test(test_jumps),
        cmocka_unit_test(test_errors_collected),
        cmocka_unit_test(test_richardson_rules),
        cmocka_unit_test(test_flow_errors),
        cmocka_unit_test(test_expression_references),
        cmocka_unit_test(test_jq_syntax_error_position),
        cmocka_unit_test(test_input_schema_errors_located),
        cmocka_unit_test(test_heartbeat_model),
        cmocka_unit_test(test_heartbeat_errors),
        cmocka_unit_test(test_oom_loop),
    };
    return cmocka_run_group_tests_name("dsl", tests, NULL, NULL);
}
