/*
 * driver batch: applies one batch of work items and due timers inside one SQLite
 * transaction, then, only after the commit, dispatches tasks, arms timers and answers
 * callers. If the commit fails nothing was acknowledged: the touched instances are
 * reloaded from the database and every caller gets an error; dropped results come
 * back through the attempts' timeouts.
 */
#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t next_rand(sg_driver_t *d)
{
    d->rng ^= d->rng << 13;
    d->rng ^= d->rng >> 7;
    d->rng ^= d->rng << 17;
    return d->rng;
}

static const char *const attempt_status[] = {
    [SG_TASK_OK] = "ok", [SG_TASK_RETRYABLE] = "failed", [SG_TASK_FATAL] = "failed"};

/* ---- effects -> rows and post-commit work ---- */

/* Takes c's payload: the engine's effects are reset before the task is dispatched. */
static bool queue_dispatch(sg_driver_t *d, const sg_inst_t *inst, sg_cmd_t *c)
{
    if (!sg_grow((void **)&d->dispatches, &d->cap_dispatch, d->n_dispatch,
                 sizeof(*d->dispatches))) {
        return false;
    }
    const sg_step_t *st = inst->def->all_steps[c->step];
    const sg_call_t *call = c->compensation ? st->compensate : &st->call;
    dispatch_t *dp = &d->dispatches[d->n_dispatch];
    dp->idem_key = sg_task_key(inst->id, st->id, c->compensation);
    if (dp->idem_key == NULL) {
        return false;
    }
    snprintf(dp->instance_id, sizeof(dp->instance_id), "%s", inst->id);
    dp->input = c->payload;
    c->payload = NULL;
    /* task.instance_id is set just before dispatch: this array may still move. */
    dp->task = (sg_task_t){.step_id = st->id,
                           .step = c->step,
                           .attempt = c->attempt,
                           .compensation = c->compensation,
                           .activity = c->name,
                           .input = dp->input,
                           .idempotency_key = dp->idem_key,
                           .deadline_ms = c->at_ms,
                           .heartbeat_ms = call != NULL ? call->heartbeat_ms : 0};
    d->n_dispatch++;
    return true;
}

static bool queue_timer(sg_driver_t *d, const char *id, sg_timer_kind_t kind, uint32_t step,
                        uint32_t attempt, bool comp, uint64_t at)
{
    if (!sg_grow((void **)&d->new_timers, &d->cap_new_timers, d->n_new_timers,
                 sizeof(*d->new_timers))) {
        return false;
    }
    tmr_t *t = &d->new_timers[d->n_new_timers++];
    *t = (tmr_t){
        .fire_ms = at, .kind = kind, .step = step, .attempt = attempt, .compensation = comp};
    snprintf(t->id, sizeof(t->id), "%s", id);
    return true;
}

static bool write_cmd(sg_driver_t *d, sg_inst_t *inst, sg_cmd_t *c, uint64_t now)
{
    sg_store_t *st = d->store;
    switch (c->kind) {
    case SG_CMD_DISPATCH: {
        sg_store_attempt_t a = {.instance_id = inst->id,
                                .step = c->step,
                                .compensation = c->compensation,
                                .attempt = c->attempt,
                                .activity = c->name,
                                .input = c->payload,
                                .status = "running",
                                .started_ms = (int64_t)now,
                                .deadline_ms = (int64_t)c->at_ms};
        return sg_store_attempt_insert(st, &a) == SG_OK && queue_dispatch(d, inst, c) &&
               queue_timer(d, inst->id, SG_TIMER_TIMEOUT, c->step, c->attempt, c->compensation,
                           c->at_ms);
    }
    case SG_CMD_TIMER:
        return sg_store_timer_put(st, inst->id, (int)c->timer, c->step, c->compensation, c->attempt,
                                  (int64_t)c->at_ms) == SG_OK &&
               queue_timer(d, inst->id, c->timer, c->step, c->attempt, c->compensation, c->at_ms);
    case SG_CMD_EMIT: {
        /* The saga's own events (a workflow's events: section) get an id like the
         * services' events, so every event in the log can be told apart downstream. */
        char event_id[27];
        sg_ulid_new(now, event_id);
        return sg_store_event_import(st, event_id, c->name, inst->id, (int64_t)now, "sagad",
                                     c->payload, NULL) == SG_OK &&
               drv__outbox_event(d, inst->id, event_id, c->name, c->payload, now);
    }
    }
    return false;
}

static void count_finish(sg_driver_t *d, const sg_inst_t *inst)
{
    switch (inst->status) {
    case SG_INST_COMPLETED:
        atomic_fetch_add(&d->completed, 1);
        break;
    case SG_INST_COMPENSATED:
        atomic_fetch_add(&d->compensated, 1);
        break;
    case SG_INST_FAILED:
        atomic_fetch_add(&d->failed, 1);
        break;
    case SG_INST_COMPENSATION_FAILED:
        atomic_fetch_add(&d->compensation_failed, 1);
        break;
    default:
        break;
    }
}

bool drv__persist(sg_driver_t *d, sg_inst_t *inst, const char *idem_key, bool created, uint64_t now)
{
    sg_store_t *st = d->store;
    for (size_t i = 0; i < d->fx.n_hist; i++) {
        const sg_hist_t *h = &d->fx.hist[i];
        if (sg_store_hist_append(st, inst->id, (int64_t)++inst->hist_seq, (int64_t)now, h->type,
                                 h->step, h->attempt, h->detail) != SG_OK) {
            return false;
        }
    }
    for (size_t i = 0; i < d->fx.n_cmds; i++) {
        if (!write_cmd(d, inst, &d->fx.cmds[i], now)) {
            return false;
        }
    }
    char *state = sg_inst_state_json(inst);
    if (state == NULL) {
        return false;
    }
    sg_store_inst_t row = {.workflow = inst->def->name,
                           .version = inst->def->version,
                           .status = sg_inst_status_name(inst->status),
                           .reason = sg_reason_name(inst->reason),
                           .input = inst->input,
                           .state = state,
                           .created_ms = (int64_t)inst->created_ms,
                           .updated_ms = (int64_t)inst->updated_ms,
                           .deadline_ms = (int64_t)inst->deadline_ms,
                           .seq = (int64_t)inst->version,
                           .hist_seq = (int64_t)inst->hist_seq,
                           .idempotency_key = idem_key};
    snprintf(row.id, sizeof(row.id), "%s", inst->id);
    sg_err_t rc = created ? sg_store_inst_insert(st, &row) : sg_store_inst_update(st, &row);
    sg_free(state);
    if (rc != SG_OK) {
        return false;
    }
    if (d->fx.finished) {
        if (sg_store_timer_delete_instance(st, inst->id) != SG_OK ||
            !sg_grow((void **)&d->finished, &d->cap_finished, d->n_finished,
                     sizeof(*d->finished))) {
            return false;
        }
        snprintf(d->finished[d->n_finished++], 32, "%s", inst->id);
    }
    return true;
}

/* ---- applying one thing ---- */

/* Applies ev to inst and persists the outcome. Returns the engine's verdict, or
 * SG_ERR_IO when the store failed (the batch must roll back). */
static sg_err_t apply(sg_driver_t *d, sg_inst_t *inst, const sg_event_t *ev, const char *idem_key,
                      bool created, uint64_t now)
{
    sg_effects_reset(&d->fx);
    sg_err_t rc = sg_engine_apply(d->jq, inst, ev, now, next_rand(d), &d->fx);
    if (sg_log_enabled(SG_LOG_DEBUG)) {
        static const char *const kinds[] = {"start", "result", "timer", "cancel", "retry"};
        bool per_step =
            ev->kind == SG_EV_RESULT || (ev->kind == SG_EV_TIMER && ev->timer != SG_TIMER_DEADLINE);
        sg_log(SG_LOG_DEBUG,
               &(sg_log_ctx_t){.instance = inst->id,
                               .workflow = inst->def->name,
                               .step = per_step ? inst->def->all_steps[ev->step]->id : NULL,
                               .attempt = per_step ? ev->attempt : 0},
               "%s%s: %s, now %s, %zu commands", kinds[ev->kind],
               ev->compensation ? " (compensation)" : "", sg_strerror(rc),
               sg_inst_status_name(inst->status), d->fx.n_cmds);
    }
    if (rc != SG_OK) {
        return rc;
    }
    if (!drv__persist(d, inst, idem_key, created, now)) {
        sg_log(SG_LOG_ERROR, &(sg_log_ctx_t){.instance = inst->id}, "store: %s",
               sg_store_errmsg(d->store));
        return SG_ERR_IO;
    }
    if (d->fx.finished) {
        count_finish(d, inst);
        sg_log(SG_LOG_INFO, &(sg_log_ctx_t){.instance = inst->id, .workflow = inst->def->name},
               "saga %s%s%s", sg_inst_status_name(inst->status), inst->reason ? ": " : "",
               sg_reason_name(inst->reason));
    }
    return SG_OK;
}

static bool add_reply(sg_driver_t *d, item_t *it, sg_err_t rc, const sg_start_result_t *res)
{
    if (!sg_grow((void **)&d->replies, &d->cap_replies, d->n_replies, sizeof(*d->replies))) {
        return false;
    }
    reply_t *r = &d->replies[d->n_replies++];
    r->it = it;
    r->rc = rc;
    memset(&r->res, 0, sizeof(r->res));
    if (res != NULL) {
        r->res = *res;
    }
    return true;
}

static sg_err_t do_start(sg_driver_t *d, item_t *it, uint64_t now)
{
    sg_start_result_t res = {.created = false};
    if (it->idem_key != NULL &&
        sg_store_idem_get(d->store, it->def->name, it->idem_key, res.id) == SG_OK) {
        return add_reply(d, it, SG_OK, &res) ? SG_OK : SG_ERR_NOMEM;
    }
    char id[27];
    sg_ulid_new(now, id);
    sg_inst_t *inst = sg_inst_new(it->def, id, it->input, now);
    if (inst == NULL) {
        return SG_ERR_NOMEM;
    }
    sg_event_t ev = {.kind = SG_EV_START};
    sg_err_t rc = apply(d, inst, &ev, it->idem_key, true, now);
    if (rc == SG_OK && it->idem_key != NULL &&
        sg_store_idem_put(d->store, it->def->name, it->idem_key, id, (int64_t)now) != SG_OK) {
        rc = SG_ERR_IO;
    }
    if (rc != SG_OK || !drv__table_put(&d->live, inst)) {
        sg_inst_free(inst);
        return rc != SG_OK ? rc : SG_ERR_NOMEM;
    }
    atomic_fetch_add(&d->started, 1);
    atomic_fetch_add(&d->active, 1);
    snprintf(res.id, sizeof(res.id), "%s", id);
    res.created = true;
    return add_reply(d, it, SG_OK, &res) ? SG_OK : SG_ERR_NOMEM;
}

static sg_err_t do_result(sg_driver_t *d, item_t *it, uint64_t now)
{
    const char *status = attempt_status[it->outcome];
    sg_err_t rc =
        sg_store_attempt_finish(d->store, it->id, it->step, it->compensation, it->attempt, status,
                                it->output, it->error_code, it->error_message, (int64_t)now);
    if (rc == SG_ERR_STATE || rc == SG_ERR_NOT_FOUND) {
        atomic_fetch_add(&d->duplicates, 1); /* a redelivery, or after a timeout: ignore */
        return SG_OK;
    }
    if (rc != SG_OK) {
        return SG_ERR_IO;
    }
    drv__metrics_result(d, it);
    sg_inst_t *inst = drv__table_get(&d->live, it->id);
    if (inst == NULL) {
        return SG_OK; /* finished meanwhile: the attempt row says what happened */
    }
    sg_event_t ev = {.kind = SG_EV_RESULT,
                     .step = it->step,
                     .attempt = it->attempt,
                     .compensation = it->compensation,
                     .outcome = it->outcome == SG_TASK_OK          ? SG_OUTCOME_OK
                                : it->outcome == SG_TASK_RETRYABLE ? SG_OUTCOME_RETRYABLE
                                                                   : SG_OUTCOME_FATAL,
                     .output = it->output,
                     .error_code = it->error_code,
                     .error_message = it->error_message};
    rc = apply(d, inst, &ev, NULL, false, now);
    return rc == SG_ERR_IO || rc == SG_ERR_NOMEM ? rc : SG_OK;
}

static sg_err_t do_control(sg_driver_t *d, item_t *it, uint64_t now)
{
    sg_inst_t *inst = drv__table_get(&d->live, it->id);
    sg_err_t rc = SG_ERR_NOT_FOUND;
    if (inst != NULL) {
        sg_event_t ev = {.kind = it->kind == ITEM_CANCEL ? SG_EV_CANCEL : SG_EV_RETRY};
        rc = apply(d, inst, &ev, NULL, false, now);
    } else if (it->kind == ITEM_RETRY) {
        rc = drv__revive(d, it->id, &inst); /* FAILED instances are not kept in memory */
        if (rc == SG_OK) {
            sg_event_t ev = {.kind = SG_EV_RETRY};
            rc = apply(d, inst, &ev, NULL, false, now);
            if (rc != SG_OK || !drv__table_put(&d->live, inst)) {
                sg_inst_free(inst);
                rc = rc != SG_OK ? rc : SG_ERR_NOMEM;
            } else {
                atomic_fetch_add(&d->active, 1);
            }
        }
    }
    if (rc == SG_ERR_IO || rc == SG_ERR_NOMEM) {
        return rc;
    }
    return add_reply(d, it, rc, NULL) ? SG_OK : SG_ERR_NOMEM;
}

/*
 * A heartbeat of a running attempt: the engine moves the step's timeout (timer_at) and a
 * new in-memory timeout is armed there; the earlier ones become stale (do_timer skips
 * them, sweep_timers drops them). The instance row is NOT rewritten: that would cost a
 * write per heartbeat, and recovery gives every running attempt a fresh whole timeout
 * anyway. Only the attempt row records it. A heartbeat fails the batch only when the
 * store fails (as any write would), never because its attempt row disagrees.
 */
static sg_err_t do_heartbeat(sg_driver_t *d, const item_t *it, uint64_t now)
{
    sg_inst_t *inst = drv__table_get(&d->live, it->id);
    uint64_t before =
        inst != NULL && it->step < inst->def->n_steps ? inst->steps[it->step].timer_at : 0;
    uint64_t at = 0;
    if (inst == NULL ||
        !sg_engine_heartbeat(inst, it->step, it->attempt, it->compensation, now, &at)) {
        drv__metrics_heartbeat(d, false);
        return SG_OK;
    }
    /* At its lease's end the timeout stops moving: its timer is armed already. */
    if (at != before &&
        !queue_timer(d, it->id, SG_TIMER_TIMEOUT, it->step, it->attempt, it->compensation, at)) {
        /* Without its timer the new timeout would never fire: keep the old one. */
        inst->steps[it->step].timer_at = before;
        drv__metrics_heartbeat(d, false);
        return SG_OK;
    }
    drv__metrics_heartbeat(d, true);
    sg_err_t rc = sg_store_attempt_heartbeat(d->store, it->id, it->step, it->compensation,
                                             it->attempt, (int64_t)now, it->worker, it->progress);
    if (rc == SG_ERR_STATE || rc == SG_ERR_NOT_FOUND) {
        /* The row disagrees with memory (finished behind our back): the timeout still
         * moves, the batch goes on. */
        if (!d->hb_write_failing) {
            sg_log(SG_LOG_WARN,
                   &(sg_log_ctx_t){.instance = it->id,
                                   .workflow = inst->def->name,
                                   .step = inst->def->all_steps[it->step]->id,
                                   .attempt = it->attempt},
                   "cannot record heartbeats (the timeout still moves): %s",
                   sg_store_errmsg(d->store));
        }
        d->hb_write_failing = true;
        return SG_OK;
    }
    d->hb_write_failing = false;
    /* Any other error (disk full, I/O) may have rolled the whole transaction back: fail
     * the batch like any write, so everything is reloaded from what is durable. */
    return rc == SG_OK ? SG_OK : SG_ERR_IO;
}

static sg_err_t do_timer(sg_driver_t *d, const tmr_t *t, uint64_t now)
{
    sg_inst_t *inst = drv__table_get(&d->live, t->id);
    if (inst == NULL) {
        return SG_OK;
    }
    if (t->kind == SG_TIMER_TIMEOUT) {
        /* A heartbeat moved the step's timeout since this timer was armed (or the step
         * moved on): it is stale, and must not finish the attempt. */
        if (t->step >= inst->def->n_steps || inst->steps[t->step].timer_at != t->fire_ms) {
            return SG_OK;
        }
        const char *msg = NULL;
        const char *code = sg_engine_timeout_code(inst, t->step, &msg);
        sg_err_t rc = sg_store_attempt_finish(d->store, t->id, t->step, t->compensation, t->attempt,
                                              "timeout", NULL, code, msg, (int64_t)now);
        if (rc == SG_ERR_STATE || rc == SG_ERR_NOT_FOUND) {
            return SG_OK; /* the result came first */
        }
        if (rc != SG_OK) {
            return SG_ERR_IO;
        }
        drv__metrics_timeout(d, t, code);
    } else if (sg_store_timer_delete(d->store, t->id, (int)t->kind, t->step, t->compensation,
                                     t->attempt) != SG_OK) {
        return SG_ERR_IO;
    }
    sg_event_t ev = {.kind = SG_EV_TIMER,
                     .timer = t->kind,
                     .step = t->step,
                     .attempt = t->attempt,
                     .compensation = t->compensation};
    sg_err_t rc = apply(d, inst, &ev, NULL, false, now);
    return rc == SG_ERR_IO || rc == SG_ERR_NOMEM ? rc : SG_OK;
}

/* ---- after the commit ---- */

static void reply(item_t *it, sg_err_t rc, const sg_start_result_t *res)
{
    if (it->waiter != NULL) {
        waiter_t *w = it->waiter;
        pthread_mutex_lock(&w->mu);
        w->rc = rc;
        if (res != NULL) {
            w->res = *res;
        }
        w->done = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    } else if (it->cb != NULL) {
        it->cb(it->cb_ctx, rc, res);
    }
}

/* A timer still matters if its instance is live and still waits for exactly it. */
static bool timer_pending(void *ctx, const tmr_t *t)
{
    sg_driver_t *d = ctx;
    const sg_inst_t *inst = drv__table_get(&d->live, t->id);
    if (inst == NULL) {
        return false;
    }
    if (t->kind == SG_TIMER_DEADLINE) {
        return inst->deadline_ms == t->fire_ms;
    }
    return t->step < inst->def->n_steps && inst->steps[t->step].timer_at == t->fire_ms;
}

/* Attempt timeouts stay in the heap after their result came, and each heartbeat leaves
 * the timeout it replaced behind (a binary heap cannot drop an entry cheaply). Sweep them
 * out once they outnumber the live instances, so memory follows running sagas, not the
 * dispatch (or heartbeat) rate times the timeout. */
static void sweep_timers(sg_driver_t *d)
{
    size_t limit = 4096 + 8 * d->live.count;
    if (d->timers.count > limit) {
        drv__heap_filter(&d->timers, timer_pending, d);
    }
}

static void after_commit(sg_driver_t *d)
{
    drv__metrics_committed(d);
    for (size_t i = 0; i < d->n_new_timers; i++) {
        if (!drv__heap_push(&d->timers, &d->new_timers[i])) {
            sg_log(SG_LOG_ERROR, NULL, "out of memory arming a timer; it fires after restart");
        }
    }
    for (size_t i = 0; i < d->n_finished; i++) {
        sg_inst_t *inst = drv__table_get(&d->live, d->finished[i]);
        if (inst != NULL && d->opts.on_finish != NULL) {
            d->opts.on_finish(d->opts.finish_ctx, inst->id, sg_inst_status_name(inst->status),
                              inst->created_ms, inst->updated_ms);
        }
        if (inst != NULL) {
            drv__table_del(&d->live, inst->id);
            sg_inst_free(inst);
            atomic_fetch_sub(&d->active, 1);
        }
    }
    for (size_t i = 0; i < d->n_dispatch; i++) {
        d->dispatches[i].task.instance_id = d->dispatches[i].instance_id;
        if (d->tvt->dispatch(d->transport, &d->dispatches[i].task) != SG_OK) {
            /* The attempt is durable: its timeout will retry it. */
            sg_log(SG_LOG_WARN,
                   &(sg_log_ctx_t){.instance = d->dispatches[i].instance_id,
                                   .step = d->dispatches[i].task.step_id},
                   "transport refused the task; it is retried after its timeout");
        }
    }
    atomic_fetch_add(&d->dispatched, d->n_dispatch);
    drv__outbox_committed(d);
    sweep_timers(d);
    for (size_t i = 0; i < d->n_replies; i++) {
        reply(d->replies[i].it, d->replies[i].rc, &d->replies[i].res);
    }
}

static void clear_batch(sg_driver_t *d)
{
    for (size_t i = 0; i < d->n_dispatch; i++) {
        dispatch_t *dp = &d->dispatches[i];
        sg_free(dp->input);
        sg_free(dp->idem_key);
    }
    d->n_dispatch = d->n_new_timers = d->n_replies = d->n_finished = 0;
}

/* The commit failed: memory is ahead of the database. Reload what we touched. */
static void recover_from_failed_batch(sg_driver_t *d, item_t *items)
{
    sg_store_rollback(d->store);
    sg_log(SG_LOG_ERROR, NULL, "batch rolled back: %s", sg_store_errmsg(d->store));
    drv__reload_all(d);
    for (item_t *it = items; it != NULL; it = it->next) {
        if (it->kind == ITEM_DEAD_LETTER) {
            drv__dlq_again(d, it); /* nothing behind it may be acknowledged first */
        } else if (it->kind != ITEM_RESULT) {
            reply(it, SG_ERR_IO, NULL);
        }
    }
}

void drv__run_batch(sg_driver_t *d, item_t *items, uint64_t now)
{
    uint64_t t0 = sg_mono_us();
    if (sg_store_begin(d->store) != SG_OK) {
        recover_from_failed_batch(d, items);
        goto done;
    }
    sg_err_t rc = SG_OK;
    size_t n = 0;
    for (item_t *it = items; it != NULL && rc == SG_OK; it = it->next, n++) {
        switch (it->kind) {
        case ITEM_START:
            rc = do_start(d, it, now);
            break;
        case ITEM_RESULT:
            rc = do_result(d, it, now);
            break;
        case ITEM_HEARTBEAT:
            rc = do_heartbeat(d, it, now);
            break;
        case ITEM_EVENTS:
            rc = drv__relay_import(d, it);
            if (rc == SG_OK && !add_reply(d, it, SG_OK, NULL)) {
                rc = SG_ERR_NOMEM;
            }
            break;
        case ITEM_DEAD_LETTER:
        case ITEM_DLQ_ACTION:
        case ITEM_OUTBOX: {
            sg_err_t answer = SG_OK;
            rc = it->kind == ITEM_OUTBOX ? drv__outbox_apply(d, it)
                                         : drv__dlq_apply(d, it, now, &answer);
            if (rc == SG_OK && !add_reply(d, it, answer, NULL)) {
                rc = SG_ERR_NOMEM;
            }
            break;
        }
        default:
            rc = do_control(d, it, now);
        }
    }
    tmr_t t;
    size_t budget = d->opts.max_batch;
    while (rc == SG_OK && budget-- > 0 && drv__heap_pop_due(&d->timers, now, &t)) {
        rc = do_timer(d, &t, now);
        n++;
    }
    if (rc != SG_OK || sg_store_commit(d->store) != SG_OK) {
        atomic_store(&d->last_batch_failed, true);
        clear_batch(d);
        recover_from_failed_batch(d, items);
        goto done;
    }
    atomic_store(&d->last_batch_failed, false);
    after_commit(d);
    clear_batch(d);
    atomic_fetch_add(&d->batches, 1);
    atomic_fetch_add(&d->items, n);
    uint64_t us = sg_mono_us() - t0;
    atomic_fetch_add(&d->batch_us_total, us);
    drv__metrics_batch(d, n, us);
done:
    while (items != NULL) {
        item_t *next = items->next;
        drv__item_free(items);
        items = next;
    }
}
