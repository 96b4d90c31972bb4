/*
 * Unit tests of the engine's transition function: every step class, every failure
 * point, retries, timeouts, conditions, parallel branches, waits, on_error routes,
 * the deadline, cancel and operator retry; then a randomized exploration of the order
 * saga checking the saga invariants on thousands of runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/engine/engine.h"

/* ---- harness ---- */

typedef struct {
    sg_def_t *def;
    sg_inst_t *inst;
    sg_jqrt_t *jq;
    sg_effects_t fx;
    uint64_t now;
    /* every history type seen, space separated, for sequence assertions */
    char trail[16384];
} h_t;

/* One jq runtime for the whole test binary: it only caches compiled programs, and
 * compiling is slow (~13 ms per expression in libjq 1.6). */
static sg_jqrt_t *shared_jq;

static h_t *h_new(const char *yaml, const char *input)
{
    h_t *h = calloc(1, sizeof(*h));
    sg_diags_t d;
    sg_diags_init(&d, 20);
    if (sg_def_load("t.yaml", yaml, strlen(yaml), NULL, &h->def, &d) != SG_OK) {
        for (size_t i = 0; i < d.count; i++) {
            print_error("%u:%u: %s\n", d.items[i].pos.line, d.items[i].pos.col, d.items[i].message);
        }
        fail_msg("definition does not load");
    }
    sg_diags_fini(&d);
    h->jq = shared_jq;
    h->now = 1000000;
    h->inst = sg_inst_new(h->def, "01TESTINSTANCE0000000000000", input, h->now);
    sg_effects_init(&h->fx);
    return h;
}

static void h_free(h_t *h)
{
    sg_effects_fini(&h->fx);
    sg_inst_free(h->inst);
    sg_def_free(h->def);
    free(h);
}

static sg_err_t h_apply(h_t *h, sg_event_t ev)
{
    sg_effects_reset(&h->fx);
    sg_err_t rc = sg_engine_apply(h->jq, h->inst, &ev, h->now, 0x9e3779b97f4a7c15ull, &h->fx);
    for (size_t i = 0; i < h->fx.n_hist; i++) {
        size_t len = strlen(h->trail);
        snprintf(h->trail + len, sizeof(h->trail) - len, "%s ", h->fx.hist[i].type);
    }
    return rc;
}

static uint32_t idx(h_t *h, const char *id)
{
    const sg_step_t *st = sg_def_step(h->def, id);
    if (st == NULL) {
        fail_msg("no step %s", id);
    }
    return st->index;
}

/* The only dispatch among the last effects; fails the test if there is not exactly one. */
static const sg_cmd_t *one_dispatch(h_t *h)
{
    const sg_cmd_t *found = NULL;
    for (size_t i = 0; i < h->fx.n_cmds; i++) {
        if (h->fx.cmds[i].kind == SG_CMD_DISPATCH) {
            if (found != NULL) {
                fail_msg("more than one dispatch");
            }
            found = &h->fx.cmds[i];
        }
    }
    if (found == NULL) {
        fail_msg("no dispatch; trail: %s", h->trail);
    }
    return found;
}

static size_t count_cmds(h_t *h, sg_cmd_kind_t kind)
{
    size_t n = 0;
    for (size_t i = 0; i < h->fx.n_cmds; i++) {
        n += h->fx.cmds[i].kind == kind;
    }
    return n;
}

static void expect_dispatch(h_t *h, const char *step, bool comp, uint32_t attempt,
                            const char *activity)
{
    const sg_cmd_t *c = one_dispatch(h);
    assert_int_equal(c->step, idx(h, step));
    assert_int_equal(c->compensation, comp);
    assert_int_equal(c->attempt, attempt);
    assert_string_equal(c->name, activity);
}

static sg_err_t ok(h_t *h, const char *step, uint32_t attempt, const char *output)
{
    return h_apply(h, (sg_event_t){.kind = SG_EV_RESULT,
                                   .step = idx(h, step),
                                   .attempt = attempt,
                                   .outcome = SG_OUTCOME_OK,
                                   .output = output});
}

static sg_err_t comp_ok(h_t *h, const char *step, uint32_t attempt)
{
    return h_apply(h, (sg_event_t){.kind = SG_EV_RESULT,
                                   .step = idx(h, step),
                                   .attempt = attempt,
                                   .compensation = true,
                                   .outcome = SG_OUTCOME_OK,
                                   .output = "{}"});
}

static sg_err_t failed(h_t *h, const char *step, uint32_t attempt, bool comp, sg_outcome_t outcome,
                       const char *code)
{
    return h_apply(h, (sg_event_t){.kind = SG_EV_RESULT,
                                   .step = idx(h, step),
                                   .attempt = attempt,
                                   .compensation = comp,
                                   .outcome = outcome,
                                   .error_code = code,
                                   .error_message = "boom"});
}

static sg_err_t timer(h_t *h, const char *step, uint32_t attempt, bool comp, sg_timer_kind_t k)
{
    return h_apply(h, (sg_event_t){.kind = SG_EV_TIMER,
                                   .step = step ? idx(h, step) : 0,
                                   .attempt = attempt,
                                   .compensation = comp,
                                   .timer = k});
}

static void assert_status(h_t *h, sg_inst_status_t st)
{
    if (h->inst->status != st) {
        fail_msg("status %s, expected %s; trail: %s", sg_inst_status_name(h->inst->status),
                 sg_inst_status_name(st), h->trail);
    }
}

static void assert_trail_has(h_t *h, const char *seq)
{
    if (strstr(h->trail, seq) == NULL) {
        fail_msg("trail lacks \"%s\":\n%s", seq, h->trail);
    }
}

static const char order_yaml[] =
    "saga: order\nversion: 1\ntimeout: 10m\n"
    "events:\n  on_start: [order.created]\n  on_complete: [order.completed]\n"
    "  on_compensated: [{type: order.cancelled, data: '{id: .input.id}'}]\n"
    "defaults: {retry: {max_attempts: 3, initial: 100ms, max_delay: 1s, jitter: none}}\n"
    "steps:\n"
    "  - id: reserve\n    activity: inventory.reserve\n"
    "    input: '{id: .input.id}'\n"
    "    retry: {non_retryable: [inventory.out_of_stock]}\n"
    "    compensate: {activity: inventory.release,"
    " input: '{r: .steps.reserve.output.rid}', retry: {max_attempts: 2, jitter: none}}\n"
    "  - id: charge\n    activity: payment.charge\n"
    "    input: '{rid: .steps.reserve.output.rid, id: .input.id}'\n"
    "    compensate: {activity: payment.refund}\n"
    "  - id: approve\n    activity: order.approve\n    pivot: true\n"
    "  - id: notify\n    activity: notification.send\n";

static h_t *start_order(void)
{
    h_t *h = h_new(order_yaml, "{\"id\":\"o1\"}");
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_START}), SG_OK);
    expect_dispatch(h, "reserve", false, 1, "inventory.reserve");
    assert_string_equal(one_dispatch(h)->payload, "{\"id\":\"o1\"}");
    return h;
}

/* ---- scenarios ---- */

static void test_happy_path(void **state)
{
    (void)state;
    h_t *h = start_order();
    assert_int_equal(count_cmds(h, SG_CMD_EMIT), 1);  /* order.created */
    assert_int_equal(count_cmds(h, SG_CMD_TIMER), 1); /* the deadline */
    assert_int_equal(h->inst->deadline_ms, h->now + 600000);
    assert_int_equal(ok(h, "reserve", 1, "{\"rid\":\"R1\"}"), SG_OK);
    expect_dispatch(h, "charge", false, 1, "payment.charge");
    assert_string_equal(one_dispatch(h)->payload, "{\"rid\":\"R1\",\"id\":\"o1\"}");
    assert_int_equal(ok(h, "charge", 1, "{\"pid\":\"P1\"}"), SG_OK);
    expect_dispatch(h, "approve", false, 1, "order.approve");
    assert_int_equal(ok(h, "approve", 1, "{}"), SG_OK);
    expect_dispatch(h, "notify", false, 1, "notification.send");
    assert_int_equal(ok(h, "notify", 1, "{}"), SG_OK);
    assert_status(h, SG_INST_COMPLETED);
    assert_true(h->fx.finished);
    assert_int_equal(count_cmds(h, SG_CMD_EMIT), 1); /* order.completed */
    assert_string_equal(h->fx.cmds[0].name, "order.completed");
    assert_trail_has(h, "saga_started attempt_dispatched step_completed attempt_dispatched");
    assert_int_equal(h->inst->steps[idx(h, "charge")].done_seq, 2);
    /* Results after the end are stale, never applied twice. */
    assert_int_equal(ok(h, "notify", 1, "{}"), SG_OK);
    assert_trail_has(h, "stale_result_ignored");
    h_free(h);
}

static void test_non_retryable_failure_compensates_in_reverse(void **state)
{
    (void)state;
    h_t *h = start_order();
    ok(h, "reserve", 1, "{\"rid\":\"R1\"}");
    assert_int_equal(failed(h, "charge", 1, false, SG_OUTCOME_FATAL, "payment.declined"), SG_OK);
    assert_status(h, SG_INST_COMPENSATING);
    assert_int_equal(h->inst->reason, SG_REASON_STEP_FAILED);
    /* charge failed, so only reserve is undone, with its mapped input. */
    expect_dispatch(h, "reserve", true, 1, "inventory.release");
    assert_string_equal(one_dispatch(h)->payload, "{\"r\":\"R1\"}");
    assert_int_equal(comp_ok(h, "reserve", 1), SG_OK);
    assert_status(h, SG_INST_COMPENSATED);
    assert_int_equal(count_cmds(h, SG_CMD_EMIT), 1);
    assert_string_equal(h->fx.cmds[0].name, "order.cancelled");
    assert_string_equal(h->fx.cmds[0].payload, "{\"id\":\"o1\"}");
    assert_int_equal(h->inst->steps[idx(h, "charge")].comp, SG_CS_NONE);
    h_free(h);
}

static void test_retries_then_exhausted(void **state)
{
    (void)state;
    h_t *h = start_order();
    ok(h, "reserve", 1, "{\"rid\":\"R1\"}");
    for (uint32_t a = 1; a <= 2; a++) {
        assert_int_equal(failed(h, "charge", a, false, SG_OUTCOME_RETRYABLE, "payment.gateway"),
                         SG_OK);
        assert_status(h, SG_INST_RUNNING);
        assert_int_equal(count_cmds(h, SG_CMD_TIMER), 1);
        /* backoff: 100ms, then 200ms (multiplier 2, no jitter) */
        assert_int_equal(h->fx.cmds[0].at_ms, h->now + (a == 1 ? 100 : 200));
        assert_int_equal(h->inst->steps[idx(h, "charge")].status, SG_SS_BACKOFF);
        /* a stale backoff timer for another attempt does nothing */
        assert_int_equal(timer(h, "charge", a + 5, false, SG_TIMER_BACKOFF), SG_OK);
        assert_int_equal(count_cmds(h, SG_CMD_DISPATCH), 0);
        assert_int_equal(timer(h, "charge", a, false, SG_TIMER_BACKOFF), SG_OK);
        expect_dispatch(h, "charge", false, a + 1, "payment.charge");
    }
    failed(h, "charge", 3, false, SG_OUTCOME_RETRYABLE, "payment.gateway");
    assert_status(h, SG_INST_COMPENSATING);
    /* A retryable failure may hide a recorded effect (a lost reply): the charge is
     * undone too, first, as it became in doubt after the reserve completed. */
    expect_dispatch(h, "charge", true, 1, "payment.refund");
    comp_ok(h, "charge", 1);
    expect_dispatch(h, "reserve", true, 1, "inventory.release");
    comp_ok(h, "reserve", 1);
    assert_status(h, SG_INST_COMPENSATED);
    h_free(h);
}

static void test_non_retryable_code_list(void **state)
{
    (void)state;
    h_t *h = start_order();
    /* reported as retryable by the worker, but the saga lists it as non-retryable */
    failed(h, "reserve", 1, false, SG_OUTCOME_RETRYABLE, "inventory.out_of_stock");
    /* not retried; but the worker said retryable, so an effect may be recorded: undone */
    assert_status(h, SG_INST_COMPENSATING);
    expect_dispatch(h, "reserve", true, 1, "inventory.release");
    comp_ok(h, "reserve", 1);
    assert_status(h, SG_INST_COMPENSATED);
    h_free(h);

    /* reported non-retryable (a business refusal): no effect, nothing to undo */
    h = start_order();
    failed(h, "reserve", 1, false, SG_OUTCOME_FATAL, "inventory.out_of_stock");
    assert_status(h, SG_INST_COMPENSATED);
    assert_int_equal(count_cmds(h, SG_CMD_DISPATCH), 0);
    h_free(h);
}

static void test_timeout_compensates_possible_effect_first(void **state)
{
    (void)state;
    h_t *h = start_order();
    ok(h, "reserve", 1, "{\"rid\":\"R1\"}");
    /* charge times out three times: its effect may have happened */
    for (uint32_t a = 1; a <= 3; a++) {
        assert_int_equal(timer(h, "charge", a, false, SG_TIMER_TIMEOUT), SG_OK);
        if (a < 3) {
            timer(h, "charge", a, false, SG_TIMER_BACKOFF);
            expect_dispatch(h, "charge", false, a + 1, "payment.charge");
        }
    }
    assert_status(h, SG_INST_COMPENSATING);
    assert_true(h->inst->steps[idx(h, "charge")].maybe_effect);
    expect_dispatch(h, "charge", true, 1, "payment.refund");
    /* default compensation input: the saga input and the step output (none here) */
    assert_string_equal(one_dispatch(h)->payload, "{\"input\":{\"id\":\"o1\"},\"output\":null}");
    comp_ok(h, "charge", 1);
    expect_dispatch(h, "reserve", true, 1, "inventory.release");
    comp_ok(h, "reserve", 1);
    assert_status(h, SG_INST_COMPENSATED);
    /* a late result of a timed-out attempt is stale */
    assert_int_equal(ok(h, "charge", 1, "{}"), SG_OK);
    assert_trail_has(h, "stale_result_ignored");
    h_free(h);
}

static void test_retriable_after_pivot_until_success(void **state)
{
    (void)state;
    h_t *h = start_order();
    ok(h, "reserve", 1, "{\"rid\":\"R1\"}");
    ok(h, "charge", 1, "{}");
    ok(h, "approve", 1, "{}");
    for (uint32_t a = 1; a <= 50; a++) {
        failed(h, "notify", a, false, SG_OUTCOME_RETRYABLE, "smtp.down");
        assert_status(h, SG_INST_RUNNING);
        timer(h, "notify", a, false, SG_TIMER_BACKOFF);
        expect_dispatch(h, "notify", false, a + 1, "notification.send");
    }
    ok(h, "notify", 51, "{}");
    assert_status(h, SG_INST_COMPLETED);
    /* backoff is capped by max_delay (1s) */
    assert_int_equal(
        sg_engine_backoff_ms(&sg_def_step(h->def, "notify")->call.retry, 40, 0) <= 1000, true);
    h_free(h);
}

static void test_fatal_after_pivot_fails_for_operator(void **state)
{
    (void)state;
    h_t *h = start_order();
    ok(h, "reserve", 1, "{\"rid\":\"R1\"}");
    ok(h, "charge", 1, "{}");
    ok(h, "approve", 1, "{}");
    failed(h, "notify", 1, false, SG_OUTCOME_FATAL, "notification.bad_address");
    assert_status(h, SG_INST_FAILED);
    assert_int_equal(count_cmds(h, SG_CMD_DISPATCH), 0); /* nothing compensated past the pivot */
    /* the operator fixes the address and retries: the step runs again */
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_RETRY}), SG_OK);
    assert_status(h, SG_INST_RUNNING);
    expect_dispatch(h, "notify", false, 2, "notification.send");
    ok(h, "notify", 2, "{}");
    assert_status(h, SG_INST_COMPLETED);
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_RETRY}), SG_ERR_STATE);
    h_free(h);
}

static void test_compensation_failure_and_operator_retry(void **state)
{
    (void)state;
    h_t *h = start_order();
    ok(h, "reserve", 1, "{\"rid\":\"R1\"}");
    ok(h, "charge", 1, "{}");
    failed(h, "approve", 1, false, SG_OUTCOME_FATAL, "order.rejected");
    expect_dispatch(h, "charge", true, 1, "payment.refund");
    comp_ok(h, "charge", 1);
    expect_dispatch(h, "reserve", true, 1, "inventory.release");
    /* release has max_attempts 2 */
    failed(h, "reserve", 1, true, SG_OUTCOME_RETRYABLE, "db.down");
    timer(h, "reserve", 1, true, SG_TIMER_BACKOFF);
    expect_dispatch(h, "reserve", true, 2, "inventory.release");
    failed(h, "reserve", 2, true, SG_OUTCOME_RETRYABLE, "db.down");
    assert_status(h, SG_INST_COMPENSATION_FAILED);
    assert_int_equal(h->inst->steps[idx(h, "reserve")].comp, SG_CS_FAILED);
    assert_int_equal(h->inst->steps[idx(h, "charge")].comp, SG_CS_DONE);
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_RETRY}), SG_OK);
    assert_status(h, SG_INST_COMPENSATING);
    expect_dispatch(h, "reserve", true, 3, "inventory.release");
    comp_ok(h, "reserve", 3);
    assert_status(h, SG_INST_COMPENSATED);
    h_free(h);
}

static void test_cancel_drains_in_flight_then_compensates(void **state)
{
    (void)state;
    h_t *h = start_order();
    ok(h, "reserve", 1, "{\"rid\":\"R1\"}");
    /* charge in flight: cancel waits for it */
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_CANCEL}), SG_OK);
    assert_status(h, SG_INST_COMPENSATING);
    assert_int_equal(h->inst->reason, SG_REASON_CANCELLED);
    assert_int_equal(count_cmds(h, SG_CMD_DISPATCH), 0);
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_CANCEL}), SG_ERR_STATE);
    /* charge succeeds after all: it is undone first */
    ok(h, "charge", 1, "{}");
    expect_dispatch(h, "charge", true, 1, "payment.refund");
    comp_ok(h, "charge", 1);
    expect_dispatch(h, "reserve", true, 1, "inventory.release");
    comp_ok(h, "reserve", 1);
    assert_status(h, SG_INST_COMPENSATED);
    h_free(h);
}

static void test_cancel_refused_after_pivot(void **state)
{
    (void)state;
    h_t *h = start_order();
    ok(h, "reserve", 1, "{\"rid\":\"R1\"}");
    ok(h, "charge", 1, "{}");
    ok(h, "approve", 1, "{}");
    uint64_t version = h->inst->version;
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_CANCEL}), SG_ERR_STATE);
    assert_int_equal(h->inst->version, version);
    assert_int_equal(h->fx.n_hist, 0);
    h_free(h);
}

static void test_pivot_completing_while_draining_resumes(void **state)
{
    (void)state;
    h_t *h = start_order();
    ok(h, "reserve", 1, "{\"rid\":\"R1\"}");
    ok(h, "charge", 1, "{}");
    h_apply(h, (sg_event_t){.kind = SG_EV_CANCEL}); /* approve (the pivot) is in flight */
    assert_status(h, SG_INST_COMPENSATING);
    ok(h, "approve", 1, "{}");
    assert_status(h, SG_INST_RUNNING);
    expect_dispatch(h, "notify", false, 1, "notification.send");
    assert_trail_has(h, "compensation_aborted status_changed");
    h_free(h);
}

static void test_deadline(void **state)
{
    (void)state;
    h_t *h = start_order();
    ok(h, "reserve", 1, "{\"rid\":\"R1\"}");
    failed(h, "charge", 1, false, SG_OUTCOME_RETRYABLE, "x"); /* in backoff */
    assert_int_equal(timer(h, NULL, 0, false, SG_TIMER_DEADLINE), SG_OK);
    assert_status(h, SG_INST_COMPENSATING);
    assert_int_equal(h->inst->reason, SG_REASON_DEADLINE);
    /* the failed attempt may have charged (its reply lost): refund, then release */
    expect_dispatch(h, "charge", true, 1, "payment.refund");
    comp_ok(h, "charge", 1);
    expect_dispatch(h, "reserve", true, 1, "inventory.release");
    /* the abandoned retry's timer fires later: ignored */
    timer(h, "charge", 1, false, SG_TIMER_BACKOFF);
    assert_int_equal(count_cmds(h, SG_CMD_DISPATCH), 0);
    h_free(h);
}

static const char flow_yaml[] =
    "saga: flow\nversion: 1\nsteps:\n"
    "  - id: a\n    activity: q.a\n    compensate: {activity: q.undo_a}\n"
    "    on_error: [{code: q.soft, goto: d}, {code: q.stop, action: fail},"
    " {code: q.undo, action: compensate}]\n"
    "  - id: b\n    when: .input.gift\n    activity: q.b\n    compensate: {activity: q.undo_b}\n"
    "  - id: w\n    wait: 5s\n"
    "  - id: c\n    activity: q.c\n    pivot: true\n    end: true\n"
    "  - id: d\n    activity: q.d\n";

static void test_when_skips_and_wait(void **state)
{
    (void)state;
    h_t *h = h_new(flow_yaml, "{\"gift\":false}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    ok(h, "a", 1, "{}");
    /* b skipped, w waits */
    assert_int_equal(h->inst->steps[idx(h, "b")].status, SG_SS_SKIPPED);
    assert_int_equal(count_cmds(h, SG_CMD_TIMER), 1);
    assert_int_equal(h->fx.cmds[0].timer, SG_TIMER_WAIT);
    assert_int_equal(h->fx.cmds[0].at_ms, h->now + 5000);
    h->now += 5000;
    timer(h, "w", 0, false, SG_TIMER_WAIT);
    expect_dispatch(h, "c", false, 1, "q.c");
    ok(h, "c", 1, "{}");
    assert_status(h, SG_INST_COMPLETED); /* end: true, d never runs */
    assert_int_equal(h->inst->steps[idx(h, "d")].status, SG_SS_PENDING);
    h_free(h);

    h = h_new(flow_yaml, "{\"gift\":true}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    ok(h, "a", 1, "{}");
    expect_dispatch(h, "b", false, 1, "q.b");
    h_free(h);
}

static void test_on_error_routes(void **state)
{
    (void)state;
    h_t *h = h_new(flow_yaml, "{}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    failed(h, "a", 1, false, SG_OUTCOME_RETRYABLE, "q.soft");
    expect_dispatch(h, "d", false, 1, "q.d"); /* goto, no retry */
    ok(h, "d", 1, "{}");
    assert_status(h, SG_INST_COMPLETED);
    h_free(h);

    h = h_new(flow_yaml, "{}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    failed(h, "a", 1, false, SG_OUTCOME_RETRYABLE, "q.stop");
    assert_status(h, SG_INST_FAILED);
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_RETRY}), SG_OK);
    expect_dispatch(h, "a", false, 2, "q.a");
    h_free(h);

    h = h_new(flow_yaml, "{}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    failed(h, "a", 1, false, SG_OUTCOME_RETRYABLE, "q.undo"); /* compensate at once */
    expect_dispatch(h, "a", true, 1, "q.undo_a"); /* a retryable failure may hide an effect */
    comp_ok(h, "a", 1);
    assert_status(h, SG_INST_COMPENSATED);
    h_free(h);

    h = h_new(flow_yaml, "{}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    failed(h, "a", 1, false, SG_OUTCOME_FATAL, "q.undo"); /* a refusal: nothing to undo */
    assert_status(h, SG_INST_COMPENSATED);
    assert_int_equal(count_cmds(h, SG_CMD_DISPATCH), 0);
    h_free(h);
}

static const char par_yaml[] =
    "saga: par\nversion: 1\nsteps:\n"
    "  - id: first\n    activity: q.first\n    compensate: {activity: q.undo_first}\n"
    "  - id: g\n    parallel:\n"
    "      - id: left\n        steps:\n"
    "          - {id: l1, activity: q.l1, compensate: {activity: q.undo_l1}}\n"
    "          - {id: l2, activity: q.l2, compensate: {activity: q.undo_l2}}\n"
    "      - id: right\n        steps:\n"
    "          - {id: r1, activity: q.r1, compensate: {activity: q.undo_r1}}\n"
    "  - id: last\n    activity: q.last\n    pivot: true\n";

static void test_parallel_success(void **state)
{
    (void)state;
    h_t *h = h_new(par_yaml, "{}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    ok(h, "first", 1, "{}");
    assert_int_equal(count_cmds(h, SG_CMD_DISPATCH), 2); /* l1 and r1 at once */
    ok(h, "r1", 1, "{}");
    assert_int_equal(count_cmds(h, SG_CMD_DISPATCH), 0); /* waits for the left branch */
    ok(h, "l1", 1, "{}");
    expect_dispatch(h, "l2", false, 1, "q.l2");
    ok(h, "l2", 1, "{}");
    expect_dispatch(h, "last", false, 1, "q.last");
    ok(h, "last", 1, "{}");
    assert_status(h, SG_INST_COMPLETED);
    h_free(h);
}

static void test_parallel_failure_compensates_other_branches(void **state)
{
    (void)state;
    h_t *h = h_new(par_yaml, "{}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    ok(h, "first", 1, "{}");
    ok(h, "l1", 1, "{}");                                  /* l2 now in flight */
    failed(h, "r1", 1, false, SG_OUTCOME_FATAL, "q.nope"); /* right branch fails */
    assert_status(h, SG_INST_COMPENSATING);
    assert_int_equal(count_cmds(h, SG_CMD_DISPATCH), 0); /* draining l2 */
    ok(h, "l2", 1, "{}");
    expect_dispatch(h, "l2", true, 1, "q.undo_l2");
    comp_ok(h, "l2", 1);
    expect_dispatch(h, "l1", true, 1, "q.undo_l1");
    comp_ok(h, "l1", 1);
    expect_dispatch(h, "first", true, 1, "q.undo_first");
    comp_ok(h, "first", 1);
    assert_status(h, SG_INST_COMPENSATED);
    assert_int_equal(h->inst->steps[idx(h, "r1")].comp, SG_CS_NONE);
    h_free(h);
}

static void test_mapping_error_fails_step(void **state)
{
    (void)state;
    const char *yaml = "saga: m\nversion: 1\nsteps:\n"
                       "  - id: a\n    activity: q.a\n    compensate: none\n"
                       "  - id: b\n    activity: q.b\n    input: '.input.n + \"x\"'\n"
                       "    compensate: none\n";
    h_t *h = h_new(yaml, "{\"n\":1}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    ok(h, "a", 1, "{}");
    assert_status(h, SG_INST_COMPENSATED);
    assert_string_equal(h->inst->steps[idx(h, "b")].error_code, "saga.mapping_error");
    h_free(h);
}

static void test_output_that_is_not_json(void **state)
{
    (void)state;
    const char *yaml = "saga: nj\nversion: 1\nsteps:\n"
                       "  - id: a\n    activity: q.a\n    compensate: {activity: q.undo}\n"
                       "  - id: b\n    activity: q.b\n    input: '.steps.a.output'\n"
                       "    compensate: none\n";
    h_t *h = h_new(yaml, "{}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    ok(h, "a", 1, "{\"broken\": ");
    /* b's input cannot be computed: a mapping error, and a is undone */
    assert_string_equal(h->inst->steps[idx(h, "b")].error_code, "saga.mapping_error");
    assert_non_null(strstr(h->inst->steps[idx(h, "b")].error_msg, "not JSON"));
    expect_dispatch(h, "a", true, 1, "q.undo");
    h_free(h);
}

static void test_context_follows_outputs(void **state)
{
    (void)state;
    /* the parsed context is built on the first evaluation and kept current after */
    const char *yaml =
        "saga: cf\nversion: 1\nsteps:\n"
        "  - id: a\n    activity: q.a\n    input: '{n: 1}'\n    compensate: none\n"
        "  - id: b\n    activity: q.b\n    input: '.steps.a.output.v'\n"
        "    compensate: none\n"
        "  - id: c\n    activity: q.c\n    input: '[.steps.a.output.v, .steps.b.output.w]'\n"
        "    compensate: none\n";
    h_t *h = h_new(yaml, "{}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    ok(h, "a", 1, "{\"v\":7}");
    assert_string_equal(one_dispatch(h)->payload, "7");
    ok(h, "b", 1, "{\"w\":\"x\"}");
    assert_string_equal(one_dispatch(h)->payload, "[7,\"x\"]");
    h_free(h);
}

static void test_invalid_events_rejected(void **state)
{
    (void)state;
    h_t *h = start_order();
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_RESULT, .step = 99}), SG_ERR_INVALID);
    /* approve has no compensation: a compensation result for it is invalid */
    assert_int_equal(
        h_apply(
            h, (sg_event_t){.kind = SG_EV_RESULT, .step = idx(h, "approve"), .compensation = true}),
        SG_ERR_INVALID);
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_START}), SG_ERR_STATE);
    h_free(h);
}

static void test_backoff(void **state)
{
    (void)state;
    sg_retry_t r = {.max_attempts = 0,
                    .initial_ms = 100,
                    .multiplier = 2.0,
                    .max_delay_ms = 1000,
                    .jitter = SG_JITTER_NONE};
    assert_int_equal(sg_engine_backoff_ms(&r, 2, 0), 100);
    assert_int_equal(sg_engine_backoff_ms(&r, 3, 0), 200);
    assert_int_equal(sg_engine_backoff_ms(&r, 5, 0), 800);
    assert_int_equal(sg_engine_backoff_ms(&r, 6, 0), 1000);
    assert_int_equal(sg_engine_backoff_ms(&r, 1000, 0), 1000);
    r.jitter = SG_JITTER_FULL;
    for (uint64_t rnd = 0; rnd < 5000; rnd += 7) {
        assert_true(sg_engine_backoff_ms(&r, 3, rnd * 2654435761u) <= 200);
    }
    r.jitter = SG_JITTER_EQUAL;
    for (uint64_t rnd = 0; rnd < 5000; rnd += 7) {
        uint64_t d = sg_engine_backoff_ms(&r, 3, rnd * 2654435761u);
        assert_true(d >= 100 && d <= 200);
    }
}

/* ---- heartbeats ---- */

static const char hb_yaml[] =
    "saga: hb\nversion: 1\n"
    "defaults:\n  retry: {max_attempts: 2, initial: 100ms, jitter: none}\n"
    "  compensation_retry: {max_attempts: 3, initial: 100ms, jitter: none}\n"
    "steps:\n"
    "  - id: export\n    activity: report.export\n    timeout: 2h\n    heartbeat: 10s\n"
    "    compensate: {activity: report.discard, timeout: 10m, heartbeat: 30s}\n"
    "  - id: plain\n    activity: report.plain\n    timeout: 1m\n"
    "    compensate: {activity: report.unplain}\n"
    "  - id: pause\n    wait: 5s\n"
    "  - id: group\n    parallel:\n"
    "      - id: left\n        steps:\n"
    "          - {id: l1, activity: q.l1, timeout: 1m, heartbeat: 5s, compensate: none}\n"
    "  - id: last\n    activity: report.publish\n    pivot: true\n";

static const uint64_t T_EXPORT = 7200000, H_EXPORT = 10000;

static bool hb(h_t *h, const char *step, uint32_t attempt, bool comp, uint64_t *at)
{
    *at = 0;
    return sg_engine_heartbeat(h->inst, idx(h, step), attempt, comp, h->now, at);
}

/* The detail of the first history entry of this type among the last effects. */
static const char *hist_detail(h_t *h, const char *type)
{
    for (size_t i = 0; i < h->fx.n_hist; i++) {
        if (strcmp(h->fx.hist[i].type, type) == 0) {
            return h->fx.hist[i].detail ? h->fx.hist[i].detail : "";
        }
    }
    fail_msg("no %s among the last effects; trail: %s", type, h->trail);
    return NULL;
}

static h_t *start_hb(void)
{
    h_t *h = h_new(hb_yaml, "{}");
    assert_int_equal(h_apply(h, (sg_event_t){.kind = SG_EV_START}), SG_OK);
    expect_dispatch(h, "export", false, 1, "report.export");
    /* the task's deadline is the whole timeout; the lease ends there too */
    assert_int_equal(one_dispatch(h)->at_ms, h->now + T_EXPORT);
    const sg_step_state_t *ss = &h->inst->steps[idx(h, "export")];
    assert_int_equal(ss->timer_at, h->now + T_EXPORT);
    assert_int_equal(ss->lease_end, h->now + T_EXPORT);
    return h;
}

static void test_heartbeat_moves_timeout_within_lease(void **state)
{
    (void)state;
    h_t *h = start_hb();
    sg_step_state_t *ss = &h->inst->steps[idx(h, "export")];
    const uint64_t lease = ss->lease_end, version = h->inst->version;
    uint64_t at;
    const char *msg = NULL;
    assert_string_equal(sg_engine_timeout_code(h->inst, idx(h, "export"), &msg), "saga.timeout");
    /* the first heartbeat shortens the whole timeout to now + H */
    h->now += 1000;
    assert_true(hb(h, "export", 1, false, &at));
    assert_int_equal(at, h->now + H_EXPORT);
    assert_int_equal(ss->timer_at, h->now + H_EXPORT);
    assert_int_equal(ss->lease_end, lease);
    assert_string_equal(sg_engine_timeout_code(h->inst, idx(h, "export"), &msg),
                        "saga.heartbeat_timeout");
    assert_non_null(strstr(msg, "heartbeat"));
    /* each later one moves it on */
    h->now += 9999;
    assert_true(hb(h, "export", 1, false, &at));
    assert_int_equal(at, h->now + H_EXPORT);
    /* a worker that heartbeats on and on keeps it until its own timeout, never past */
    while (h->now + 9000 < lease - 3000) {
        h->now += 9000;
        assert_true(hb(h, "export", 1, false, &at));
        assert_true(at <= lease);
    }
    h->now = lease - 3000;
    assert_true(hb(h, "export", 1, false, &at));
    assert_int_equal(at, lease);
    assert_int_equal(ss->timer_at, lease);
    assert_string_equal(sg_engine_timeout_code(h->inst, idx(h, "export"), &msg), "saga.timeout");
    /* pure: no new version, the status and attempt stay */
    assert_int_equal(h->inst->version, version);
    assert_int_equal(ss->status, SG_SS_RUNNING);
    assert_int_equal(ss->attempt, 1);
    h_free(h);
}

static void test_heartbeat_ignored_when_stale(void **state)
{
    (void)state;
    h_t *h = start_hb();
    sg_step_state_t *ss = &h->inst->steps[idx(h, "export")];
    h->now += 1000;
    uint64_t at;
    assert_true(hb(h, "export", 1, false, &at));
    const uint64_t timer_before = ss->timer_at, lease_before = ss->lease_end;
    h->now += 1000;
    /* another attempt, the compensation that does not run, a step that does not run */
    assert_false(hb(h, "export", 2, false, &at));
    assert_false(hb(h, "export", 0, false, &at));
    assert_false(hb(h, "export", 1, true, &at));
    assert_false(hb(h, "plain", 1, false, &at));
    assert_false(sg_engine_heartbeat(h->inst, 99, 1, false, h->now, &at));
    /* a step without a compensation: no call to heartbeat for */
    assert_false(hb(h, "last", 1, true, &at));
    /* too late: the timeout passed; its timer decides */
    h->now = ss->timer_at;
    assert_false(hb(h, "export", 1, false, &at));
    assert_int_equal(at, 0);
    assert_int_equal(ss->timer_at, timer_before);
    assert_int_equal(ss->lease_end, lease_before);
    assert_int_equal(ss->status, SG_SS_RUNNING);
    assert_int_equal(ss->attempt, 1);
    /* finished: a heartbeat after the result is ignored */
    h->now = timer_before - 1;
    ok(h, "export", 1, "{}");
    expect_dispatch(h, "plain", false, 1, "report.plain");
    assert_int_equal(ss->timer_at, 0);
    assert_int_equal(ss->lease_end, 0);
    assert_false(hb(h, "export", 1, false, &at));
    assert_int_equal(ss->timer_at, 0);
    /* a running step without a heartbeat in its definition */
    sg_step_state_t *plain = &h->inst->steps[idx(h, "plain")];
    uint64_t plain_timer = plain->timer_at;
    assert_false(hb(h, "plain", 1, false, &at));
    assert_int_equal(plain->timer_at, plain_timer);
    ok(h, "plain", 1, "{}");
    /* a wait, then a parallel group: neither is an activity; l1 inside it is */
    assert_int_equal(h->inst->steps[idx(h, "pause")].status, SG_SS_WAITING);
    assert_false(hb(h, "pause", 0, false, &at));
    assert_false(hb(h, "pause", 1, false, &at));
    h->now += 5000;
    timer(h, "pause", 0, false, SG_TIMER_WAIT);
    expect_dispatch(h, "l1", false, 1, "q.l1");
    assert_int_equal(h->inst->steps[idx(h, "group")].status, SG_SS_RUNNING);
    assert_false(hb(h, "group", 0, false, &at));
    assert_false(hb(h, "group", 1, false, &at));
    assert_true(hb(h, "l1", 1, false, &at));
    assert_int_equal(at, h->now + 5000);
    ok(h, "l1", 1, "{}");
    expect_dispatch(h, "last", false, 1, "report.publish");
    ok(h, "last", 1, "{}");
    assert_status(h, SG_INST_COMPLETED);
    /* a terminal instance takes none */
    assert_false(hb(h, "last", 1, false, &at));
    h_free(h);

    /* not even for an attempt still running in another branch when it ended */
    h = h_new("saga: t\nversion: 1\nsteps:\n  - id: g\n    parallel:\n"
              "      - id: left\n        steps:\n"
              "          - {id: stop, activity: q.stop, compensate: none,"
              " on_error: [{code: q.stop, action: fail}]}\n"
              "      - id: right\n        steps:\n"
              "          - {id: work, activity: q.work, heartbeat: 5s, compensate: none}\n",
              "{}");
    h_apply(h, (sg_event_t){.kind = SG_EV_START});
    assert_int_equal(count_cmds(h, SG_CMD_DISPATCH), 2);
    assert_true(hb(h, "work", 1, false, &at));
    failed(h, "stop", 1, false, SG_OUTCOME_FATAL, "q.stop");
    assert_status(h, SG_INST_FAILED);
    assert_int_equal(h->inst->steps[idx(h, "work")].status, SG_SS_RUNNING);
    assert_false(hb(h, "work", 1, false, &at));
    h_free(h);
}

static void test_heartbeat_timeout_code_and_compensation(void **state)
{
    (void)state;
    h_t *h = start_hb();
    sg_step_state_t *ss = &h->inst->steps[idx(h, "export")];
    uint64_t at;
    h->now += 1000;
    assert_true(hb(h, "export", 1, false, &at));
    /* the heartbeats stop: the timeout a heartbeat set fires */
    h->now = at;
    assert_int_equal(timer(h, "export", 1, false, SG_TIMER_TIMEOUT), SG_OK);
    assert_string_equal(ss->error_code, "saga.heartbeat_timeout");
    assert_non_null(strstr(hist_detail(h, "attempt_failed"), "\"retryable\":true"));
    assert_non_null(strstr(hist_detail(h, "attempt_failed"), "saga.heartbeat_timeout"));
    assert_true(ss->maybe_effect);
    assert_int_equal(ss->status, SG_SS_BACKOFF); /* retried */
    assert_int_equal(ss->lease_end, 0);          /* nothing runs */
    /* a heartbeat of the timed-out attempt comes late: ignored */
    assert_false(hb(h, "export", 1, false, &at));
    h->now += 100;
    timer(h, "export", 1, false, SG_TIMER_BACKOFF);
    expect_dispatch(h, "export", false, 2, "report.export");
    assert_int_equal(ss->lease_end, h->now + T_EXPORT);
    /* attempt 2 never heartbeats: its own timeout, plain saga.timeout; retries used up */
    h->now += T_EXPORT;
    timer(h, "export", 2, false, SG_TIMER_TIMEOUT);
    assert_string_equal(ss->error_code, "saga.timeout");
    assert_status(h, SG_INST_COMPENSATING);
    /* in doubt: compensated, and the compensation heartbeats with its own 30s */
    expect_dispatch(h, "export", true, 1, "report.discard");
    assert_int_equal(ss->lease_end, h->now + 600000);
    assert_false(hb(h, "export", 2, false, &at)); /* the forward attempt is over */
    h->now += 1000;
    assert_false(hb(h, "export", 2, true, &at)); /* not this compensation attempt */
    assert_true(hb(h, "export", 1, true, &at));
    assert_int_equal(at, h->now + 30000);
    h->now = at;
    timer(h, "export", 1, true, SG_TIMER_TIMEOUT);
    const char *detail = hist_detail(h, "compensation_attempt_failed");
    assert_non_null(strstr(detail, "saga.heartbeat_timeout"));
    assert_non_null(strstr(detail, "no heartbeat came"));
    assert_int_equal(ss->comp, SG_CS_BACKOFF); /* retryable */
    h->now += 100;
    timer(h, "export", 1, true, SG_TIMER_BACKOFF);
    expect_dispatch(h, "export", true, 2, "report.discard");
    /* attempt 2 of the compensation times out whole: saga.timeout */
    h->now += 600000;
    timer(h, "export", 2, true, SG_TIMER_TIMEOUT);
    detail = hist_detail(h, "compensation_attempt_failed");
    assert_non_null(strstr(detail, "\"saga.timeout\""));
    assert_non_null(strstr(detail, "the attempt timed out"));
    h->now += 200;
    timer(h, "export", 2, true, SG_TIMER_BACKOFF);
    expect_dispatch(h, "export", true, 3, "report.discard");
    assert_true(hb(h, "export", 3, true, &at));
    comp_ok(h, "export", 3);
    assert_status(h, SG_INST_COMPENSATED);
    assert_false(hb(h, "export", 3, true, &at));
    h_free(h);
}

/* Replaces the first `,"le":N` in json (in place): a state written before heartbeats. */
static void drop_lease(char *json)
{
    char *p = strstr(json, ",\"le\":");
    assert_non_null(p);
    char *end = p + 6;
    while (*end >= '0' && *end <= '9') {
        end++;
    }
    memmove(p, end, strlen(end) + 1);
}

static void test_heartbeat_lease_persists(void **state)
{
    (void)state;
    h_t *h = start_hb();
    uint32_t i = idx(h, "export");
    uint64_t at;
    h->now += 1000;
    assert_true(hb(h, "export", 1, false, &at));
    char *json = sg_inst_state_json(h->inst);
    assert_non_null(json);
    char err[128] = "";
    sg_inst_t *back = NULL;
    assert_int_equal(sg_inst_restore(h->def, h->inst->id, "{}", json, &back, err, sizeof(err)),
                     SG_OK);
    assert_int_equal(back->steps[i].timer_at, at);
    assert_int_equal(back->steps[i].lease_end, h->inst->steps[i].lease_end);
    const char *msg;
    assert_string_equal(sg_engine_timeout_code(back, i, &msg), "saga.heartbeat_timeout");
    sg_inst_free(back);
    /* written before heartbeats: no "le", the pending timeout is the whole one */
    drop_lease(json);
    assert_int_equal(sg_inst_restore(h->def, h->inst->id, "{}", json, &back, err, sizeof(err)),
                     SG_OK);
    assert_int_equal(back->steps[i].lease_end, at);
    assert_int_equal(back->steps[i].timer_at, at);
    assert_string_equal(sg_engine_timeout_code(back, i, &msg), "saga.timeout");
    /* and heartbeats work on it, bounded by that timeout */
    assert_true(sg_engine_heartbeat(back, i, 1, false, h->now + 5000, &at));
    assert_int_equal(at, back->steps[i].lease_end);
    sg_inst_free(back);
    sg_free(json);
    /* a lease that ends before the pending timeout (not written by us): heartbeats are
     * ignored, the attempt keeps the timeout it has */
    json = sg_inst_state_json(h->inst);
    char *le = strstr(json, "\"le\":") + 5;
    memset(le, '1', 1);
    memset(le + 1, ' ', strspn(le + 1, "0123456789"));
    assert_int_equal(sg_inst_restore(h->def, h->inst->id, "{}", json, &back, err, sizeof(err)),
                     SG_OK);
    assert_int_equal(back->steps[i].lease_end, 1);
    uint64_t timer = back->steps[i].timer_at;
    assert_false(sg_engine_heartbeat(back, i, 1, false, h->now, &at));
    assert_int_equal(back->steps[i].timer_at, timer);
    sg_inst_free(back);
    sg_free(json);
    /* a malformed "le" is refused like any bad field */
    const char *bad[] = {"-1", "\"x\"", "1e300", "null"};
    for (size_t k = 0; k < SG_ARRAY_LEN(bad); k++) {
        json = sg_inst_state_json(h->inst);
        char *p = strstr(json, "\"le\":") + 5;
        char *end = p;
        while (*end >= '0' && *end <= '9') {
            end++;
        }
        char *fixed = sg_asprintf("%.*s%s%s", (int)(p - json), json, bad[k], end);
        back = NULL;
        assert_int_equal(sg_inst_restore(h->def, h->inst->id, "{}", fixed, &back, err, sizeof(err)),
                         SG_ERR_INVALID);
        assert_null(back);
        sg_free(fixed);
        sg_free(json);
    }
    h_free(h);
}

/* ---- randomized exploration of the order saga ---- */

typedef struct {
    uint32_t step, attempt;
    bool comp;
    bool is_timer;
    sg_timer_kind_t kind;
} pending_t;

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Runs one saga with random outcomes; checks it terminates and that compensations ran
 * exactly for effects that happened, latest first. */
static void explore_once(uint64_t seed)
{
    h_t *h = h_new(order_yaml, "{\"id\":\"o\"}");
    pending_t pend[64];
    size_t np = 0;
    bool effect[8] = {false};      /* forward effect happened (from the worker's view) */
    int comp_order[8], n_comp = 0; /* steps compensated, in order */
    uint64_t s = seed * 2654435761u + 1;
    sg_event_t ev = {.kind = SG_EV_START};
    for (int round = 0; round < 500; round++) {
        sg_comp_status_t before = ev.kind == SG_EV_RESULT ? h->inst->steps[ev.step].comp : 0;
        assert_int_equal(h_apply(h, ev), SG_OK);
        if (ev.kind == SG_EV_RESULT && ev.compensation && before != SG_CS_DONE &&
            h->inst->steps[ev.step].comp == SG_CS_DONE && n_comp < 8) {
            comp_order[n_comp++] = (int)ev.step; /* applied, not a stale duplicate */
        }
        for (size_t i = 0; i < h->fx.n_cmds && np < 64; i++) {
            const sg_cmd_t *c = &h->fx.cmds[i];
            if (c->kind == SG_CMD_DISPATCH) {
                pend[np++] = (pending_t){c->step, c->attempt, c->compensation, false, 0};
                if (np < 64) {
                    pend[np++] =
                        (pending_t){c->step, c->attempt, c->compensation, true, SG_TIMER_TIMEOUT};
                }
            } else if (c->kind == SG_CMD_TIMER && c->timer != SG_TIMER_DEADLINE) {
                pend[np++] = (pending_t){c->step, c->attempt, c->compensation, true, c->timer};
            }
        }
        if (np == 0) {
            break;
        }
        size_t k = rng_next(&s) % np;
        pending_t p = pend[k];
        pend[k] = pend[--np];
        if (round == 3 && rng_next(&s) % 4 == 0) {
            /* An operator cancels (or the deadline passes) in the middle; the popped
             * event goes back to the pending set so nothing is lost. */
            pend[np++] = p;
            bool pivot_done = h->inst->steps[idx(h, "approve")].status == SG_SS_DONE;
            bool cancellable = h->inst->status == SG_INST_RUNNING && !pivot_done;
            ev = cancellable ? (sg_event_t){.kind = SG_EV_CANCEL}
                             : (sg_event_t){.kind = SG_EV_TIMER, .timer = SG_TIMER_DEADLINE};
            continue;
        }
        ev = (sg_event_t){.kind = p.is_timer ? SG_EV_TIMER : SG_EV_RESULT,
                          .step = p.step,
                          .attempt = p.attempt,
                          .compensation = p.comp,
                          .timer = p.kind};
        if (!p.is_timer) {
            uint64_t r = rng_next(&s) % 10;
            ev.outcome = r < 7 ? SG_OUTCOME_OK : r < 9 ? SG_OUTCOME_RETRYABLE : SG_OUTCOME_FATAL;
            ev.output = "{\"rid\":\"R\"}";
            ev.error_code = "x.err";
            if (ev.outcome == SG_OUTCOME_OK && !p.comp) {
                effect[p.step] = true;
            }
        }
    }
    assert_true(sg_inst_terminal(h->inst));
    const sg_inst_t *in = h->inst;
    if (in->status == SG_INST_COMPLETED) {
        for (size_t i = 0; i < h->def->n_steps; i++) {
            assert_int_equal(in->steps[i].status, SG_SS_DONE);
        }
    }
    if (in->status == SG_INST_COMPENSATED) {
        /* every step with a compensation whose effect the engine knows of was undone */
        for (size_t i = 0; i < h->def->n_steps; i++) {
            const sg_step_state_t *ss = &in->steps[i];
            bool known = ss->status == SG_SS_DONE || ss->maybe_effect;
            if (h->def->all_steps[i]->compensate != NULL && known) {
                assert_int_equal(ss->comp, SG_CS_DONE);
            } else {
                assert_int_not_equal(ss->comp, SG_CS_DONE);
            }
        }
        assert_int_not_equal(in->steps[idx(h, "approve")].status, SG_SS_DONE);
    }
    /* compensations ran latest completion first */
    for (int i = 1; i < n_comp; i++) {
        assert_true(in->steps[comp_order[i - 1]].done_seq > in->steps[comp_order[i]].done_seq);
    }
    if (in->status == SG_INST_COMPENSATED) {
        /* never lose work: every effect a worker performed was undone */
        for (size_t i = 0; i < h->def->n_steps; i++) {
            if (effect[i] && h->def->all_steps[i]->compensate != NULL &&
                in->steps[i].comp != SG_CS_DONE) {
                fail_msg("seed %llu: effect of step %zu not compensated; trail: %s",
                         (unsigned long long)seed, i, h->trail);
            }
        }
    }
    h_free(h);
}

static void test_randomized_order_saga(void **state)
{
    (void)state;
    const char *env = getenv("SG_UNDER_VALGRIND");
    uint64_t runs = env != NULL ? 300 : 3000;
    for (uint64_t seed = 1; seed <= runs; seed++) {
        explore_once(seed);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_happy_path),
        cmocka_unit_test(test_non_retryable_failure_compensates_in_reverse),
        cmocka_unit_test(test_retries_then_exhausted),
        cmocka_unit_test(test_non_retryable_code_list),
        cmocka_unit_test(test_timeout_compensates_possible_effect_first),
        cmocka_unit_test(test_retriable_after_pivot_until_success),
        cmocka_unit_test(test_fatal_after_pivot_fails_for_operator),
        cmocka_unit_test(test_compensation_failure_and_operator_retry),
        cmocka_unit_test(test_cancel_drains_in_flight_then_compensates),
        cmocka_unit_test(test_cancel_refused_after_pivot),
        cmocka_unit_test(test_pivot_completing_while_draining_resumes),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_when_skips_and_wait),
        cmocka_unit_test(test_on_error_routes),
        cmocka_unit_test(test_parallel_success),
        cmocka_unit_test(test_parallel_failure_compensates_other_branches),
        cmocka_unit_test(test_mapping_error_fails_step),
        cmocka_unit_test(test_output_that_is_not_json),
        cmocka_unit_test(test_context_follows_outputs),
        cmocka_unit_test(test_invalid_events_rejected),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_heartbeat_moves_timeout_within_lease),
        cmocka_unit_test(test_heartbeat_ignored_when_stale),
        cmocka_unit_test(test_heartbeat_timeout_code_and_compensation),
        cmocka_unit_test(test_heartbeat_lease_persists),
        cmocka_unit_test(test_randomized_order_saga),
    };
    shared_jq = sg_jqrt_new();
    int failures = cmocka_run_group_tests_name("engine", tests, NULL, NULL);
    sg_jqrt_free(shared_jq);
    return failures;
}
