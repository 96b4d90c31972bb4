/*
 * driver recovery: after a restart (or a failed commit) the database is the truth.
 * Every RUNNING or COMPENSATING instance is loaded, its durable timers are armed, and
 * every attempt still marked running is dispatched again with the same idempotency
 * key, so handlers that already did the work return their recorded result instead of
 * doing it twice. No in-memory state from before is needed.
 */
#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    sg_driver_t *d;
    uint64_t now;
    size_t loaded, failed, timers, redispatched;
    sg_inst_t *one; /* drv__revive */
    sg_err_t rc;
} rec_t;

static sg_inst_t *restore_row(sg_driver_t *d, const sg_store_inst_t *row)
{
    const sg_def_t *def = drv__registry_find(&d->registry, row->workflow, row->version);
    if (def == NULL) {
        sg_log(SG_LOG_ERROR, &(sg_log_ctx_t){.instance = row->id, .workflow = row->workflow},
               "definition version %lld is unknown: instance left as it is",
               (long long)row->version);
        return NULL;
    }
    char err[160];
    sg_inst_t *inst = NULL;
    if (sg_inst_restore(def, row->id, row->input, row->state, &inst, err, sizeof(err)) != SG_OK) {
        sg_log(SG_LOG_ERROR, &(sg_log_ctx_t){.instance = row->id, .workflow = row->workflow},
               "cannot restore instance: %s", err);
        return NULL;
    }
    inst->created_ms = (uint64_t)row->created_ms;
    inst->updated_ms = (uint64_t)row->updated_ms;
    inst->version = (uint64_t)row->seq;
    inst->hist_seq = (uint64_t)row->hist_seq;
    return inst;
}

static bool on_instance(void *ctx, const sg_store_inst_t *row)
{
    rec_t *r = ctx;
    sg_inst_t *inst = restore_row(r->d, row);
    if (inst == NULL) {
        r->failed++;
        return true;
    }
    if (!drv__table_put(&r->d->live, inst)) {
        sg_inst_free(inst);
        r->rc = SG_ERR_NOMEM;
        return false;
    }
    r->loaded++;
    return true;
}

static bool on_timer(void *ctx, const char *id, int kind, int64_t step, bool comp, int64_t attempt,
                     int64_t fire_ms)
{
    rec_t *r = ctx;
    if (drv__table_get(&r->d->live, id) == NULL || kind < 0 || kind > SG_TIMER_DEADLINE) {
        return true;
    }
    tmr_t t = {.fire_ms = (uint64_t)fire_ms,
               .kind = (sg_timer_kind_t)kind,
               .step = (uint32_t)step,
               .attempt = (uint32_t)attempt,
               .compensation = comp};
    snprintf(t.id, sizeof(t.id), "%s", id);
    if (!drv__heap_push(&r->d->timers, &t)) {
        r->rc = SG_ERR_NOMEM;
        return false;
    }
    r->timers++;
    return true;
}

static bool on_attempt(void *ctx, const sg_store_attempt_t *a)
{
    rec_t *r = ctx;
    sg_driver_t *d = r->d;
    sg_inst_t *inst = drv__table_get(&d->live, a->instance_id);
    if (inst == NULL || a->step < 0 || (uint64_t)a->step >= inst->def->n_steps) {
        return true;
    }
    const sg_step_t *st = inst->def->all_steps[a->step];
    const sg_call_t *call = a->compensation ? st->compensate : &st->call;
    /* A fresh full timeout: the worker may only now receive the task. Heartbeats shorten
     * it again from the first one on. */
    uint64_t timeout =
        a->deadline_ms > a->started_ms ? (uint64_t)(a->deadline_ms - a->started_ms) : 30000;
    uint64_t deadline = r->now + timeout;
    /* The step waits for this new timeout now (the timer sweep keys on it). */
    inst->steps[a->step].timer_at = deadline;
    inst->steps[a->step].lease_end = deadline;
    tmr_t t = {.fire_ms = deadline,
               .kind = SG_TIMER_TIMEOUT,
               .step = (uint32_t)a->step,
               .attempt = (uint32_t)a->attempt,
               .compensation = a->compensation};
    snprintf(t.id, sizeof(t.id), "%s", a->instance_id);
    char *key = sg_task_key(a->instance_id, st->id, a->compensation);
    if (key == NULL || !drv__heap_push(&d->timers, &t)) {
        sg_free(key);
        r->rc = SG_ERR_NOMEM;
        return false;
    }
    sg_task_t task = {.instance_id = a->instance_id,
                      .step_id = st->id,
                      .step = (uint32_t)a->step,
                      .attempt = (uint32_t)a->attempt,
                      .compensation = a->compensation,
                      .activity = a->activity,
                      .input = a->input,
                      .idempotency_key = key,
                      .deadline_ms = deadline,
                      .heartbeat_ms = call != NULL ? call->heartbeat_ms : 0};
    if (d->tvt->dispatch(d->transport, &task) == SG_OK) {
        r->redispatched++;
        drv__metrics_redispatch(d, inst, task.step, task.attempt, task.compensation);
    }
    sg_free(key);
    return true;
}

sg_err_t drv__recover(sg_driver_t *d, uint64_t now)
{
    rec_t r = {.d = d, .now = now, .rc = SG_OK};
    sg_err_t rc = sg_store_inst_scan_active(d->store, on_instance, &r);
    if (rc == SG_OK && r.rc == SG_OK) {
        rc = sg_store_timer_scan(d->store, on_timer, &r);
    }
    if (rc == SG_OK && r.rc == SG_OK) {
        rc = sg_store_attempt_scan_running(d->store, on_attempt, &r);
    }
    atomic_store(&d->active, d->live.count);
    if (rc != SG_OK || r.rc != SG_OK) {
        sg_log(SG_LOG_ERROR, NULL, "recovery failed: %s",
               rc != SG_OK ? sg_store_errmsg(d->store) : sg_strerror(r.rc));
        return rc != SG_OK ? rc : r.rc;
    }
    if (r.loaded + r.failed > 0) {
        sg_log(SG_LOG_INFO, NULL,
               "recovered %zu unfinished instances (%zu could not be loaded), %zu timers, "
               "%zu tasks dispatched again",
               r.loaded, r.failed, r.timers, r.redispatched);
    }
    return SG_OK;
}

void drv__reload_all(sg_driver_t *d)
{
    drv__table_fini(&d->live);
    d->timers.count = 0;
    drv__recover(d, sg_now_ms());
}

static bool on_one(void *ctx, const sg_store_inst_t *row)
{
    rec_t *r = ctx;
    r->one = restore_row(r->d, row);
    r->rc = r->one ? SG_OK : SG_ERR_INVALID;
    return false;
}

sg_err_t drv__revive(sg_driver_t *d, const char *id, sg_inst_t **out)
{
    rec_t r = {.d = d, .rc = SG_ERR_NOT_FOUND};
    sg_err_t rc = sg_store_inst_get(d->store, id, on_one, &r);
    *out = r.one;
    if (rc != SG_OK) {
        return rc == SG_ERR_NOT_FOUND ? SG_ERR_NOT_FOUND : SG_ERR_IO;
    }
    return r.rc;
}
