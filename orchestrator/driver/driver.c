/*
 * driver: lifecycle, the work queue that other threads feed, and the engine thread's
 * loop (wait for work or the next timer, run a batch, repeat).
 */
#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- the queue ---- */

/* Queues it for the engine thread. limit 0: always (work that must not be lost);
 * otherwise SG_ERR_LIMIT once that many items wait (lossy work: heartbeats). */
static sg_err_t enqueue_at_most(sg_driver_t *d, item_t *it, size_t limit)
{
    pthread_mutex_lock(&d->mu);
    if (d->stopping || (limit != 0 && d->queued >= limit)) {
        pthread_mutex_unlock(&d->mu);
        return d->stopping ? SG_ERR_STATE : SG_ERR_LIMIT;
    }
    it->next = NULL;
    if (d->tail != NULL) {
        d->tail->next = it;
    } else {
        d->head = it;
    }
    d->tail = it;
    d->queued++;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    return SG_OK;
}

static sg_err_t enqueue(sg_driver_t *d, item_t *it)
{
    return enqueue_at_most(d, it, 0);
}

sg_err_t drv__enqueue(sg_driver_t *d, item_t *it)
{
    return enqueue(d, it);
}

/* Takes up to max items; waits until there is work, a timer is due, or stop. */
static item_t *take_batch(sg_driver_t *d, size_t max, bool *stop)
{
    pthread_mutex_lock(&d->mu);
    for (;;) {
        if (d->head != NULL || d->stopping || d->reload_requested) {
            break;
        }
        uint64_t next = drv__heap_next(&d->timers);
        uint64_t now = sg_now_ms();
        if (next <= now) {
            break;
        }
        if (d->live.count == 0 && d->queued == 0) {
            pthread_cond_broadcast(&d->idle_cv);
        }
        /* Timers use the wall clock (they are durable across restarts). */
        uint64_t wait_ms = next == UINT64_MAX ? 1000 : next - now;
        if (wait_ms > 1000) {
            wait_ms = 1000;
        }
        sg_cond_wait_ms(&d->cv, &d->mu, wait_ms);
    }
    item_t *head = d->head, *last = NULL;
    size_t n = 0;
    for (item_t *it = head; it != NULL && n < max; it = it->next) {
        last = it;
        n++;
    }
    if (last != NULL) {
        d->head = last->next;
        last->next = NULL;
        if (d->head == NULL) {
            d->tail = NULL;
        }
        d->queued -= n;
    }
    *stop = d->stopping && d->head == NULL;
    pthread_mutex_unlock(&d->mu);
    return head == NULL ? NULL : head;
}

static void *engine_main(void *arg)
{
    sg_driver_t *d = arg;
    for (;;) {
        bool stop = false;
        item_t *items = take_batch(d, d->opts.max_batch, &stop);
        pthread_mutex_lock(&d->mu);
        bool reload = d->reload_requested;
        d->reload_requested = false;
        pthread_mutex_unlock(&d->mu);
        if (reload) {
            drv__registry_load(&d->registry, d->store, d->opts.workflows_dir);
        }
        drv__run_batch(d, items, sg_now_ms());
        if (stop) {
            break;
        }
    }
    pthread_mutex_lock(&d->mu);
    pthread_cond_broadcast(&d->idle_cv);
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* ---- results from workers ---- */

/* Worker thread: copies the result into a work item for the engine thread. */
static void on_result(void *ctx, const sg_task_t *task, const sg_task_result_t *res)
{
    sg_driver_t *d = ctx;
    item_t *it = sg_calloc(1, sizeof(*it));
    if (it == NULL) {
        return; /* the attempt's timeout will retry it */
    }
    it->kind = ITEM_RESULT;
    snprintf(it->id, sizeof(it->id), "%s", task->instance_id);
    it->step = task->step;
    it->attempt = task->attempt;
    it->compensation = task->compensation;
    it->outcome = res->outcome;
    it->output = res->output ? sg_strdup(res->output) : NULL;
    const char *code = sg_task_result_code(res); /* "saga.nomem" when the handler ran out */
    it->error_code = code ? sg_strdup(code) : NULL;
    it->error_message = res->error_message ? sg_strdup(res->error_message) : NULL;
    if ((res->output != NULL && it->output == NULL) || (code != NULL && it->error_code == NULL) ||
        (res->error_message != NULL && it->error_message == NULL)) {
        drv__item_free(it); /* out of memory: the attempt's timeout retries it */
        return;
    }
    if (enqueue(d, it) != SG_OK) {
        drv__item_free(it); /* stopping: the attempt stays running and resumes at restart */
    }
}

/* The longest progress a heartbeat may record: a worker's progress is a hint for people,
 * written on every heartbeat, so a bigger one is dropped (the last one stays). */
#define HB_PROGRESS_MAX 4096
/* The longest worker id kept ("host:pid" fits easily). */
#define HB_WORKER_MAX 128

/* Transport thread: copies the heartbeat into a work item for the engine thread. Losing
 * one is harmless (heartbeats are at-most-once; the attempt only times out sooner), so
 * out of memory or stopping simply drops it. */
static void on_heartbeat(void *ctx, const sg_task_heartbeat_t *hb)
{
    sg_driver_t *d = ctx;
    if (hb == NULL || hb->instance_id == NULL || hb->instance_id[0] == '\0' ||
        strnlen(hb->instance_id, sizeof(((item_t *)NULL)->id)) >= sizeof(((item_t *)NULL)->id)) {
        return; /* names no instance we could hold */
    }
    item_t *it = sg_calloc(1, sizeof(*it));
    if (it == NULL) {
        return;
    }
    it->kind = ITEM_HEARTBEAT;
    snprintf(it->id, sizeof(it->id), "%s", hb->instance_id);
    it->step = hb->step;
    it->attempt = hb->attempt;
    it->compensation = hb->compensation;
    bool keep = hb->details != NULL && strlen(hb->details) <= HB_PROGRESS_MAX;
    /* sg_strndup copies exactly n bytes: measure first. */
    it->worker = hb->worker_id != NULL
                     ? sg_strndup(hb->worker_id, strnlen(hb->worker_id, HB_WORKER_MAX))
                     : NULL;
    it->progress = keep ? sg_strdup(hb->details) : NULL;
    /* Heartbeats are lossy by design: when two batches' worth of work already waits, the
     * engine is behind and a heartbeat is dropped rather than let the queue (and the
     * results behind it) grow without bound. A dropped one only makes its attempt time
     * out sooner if no later one gets through. */
    sg_err_t rc = (hb->worker_id != NULL && it->worker == NULL) || (keep && it->progress == NULL)
                      ? SG_ERR_NOMEM
                      : enqueue_at_most(d, it, 2 * d->opts.max_batch);
    if (rc != SG_OK) {
        if (rc == SG_ERR_LIMIT) {
            drv__metrics_heartbeat_dropped(d);
        }
        drv__item_free(it);
    }
}

/*
 * Transport thread (kafka's offset committer): returns SG_OK once every result handed to
 * on_result before the call is durable. The queue is FIFO and batches commit in order,
 * so an empty ITEM_EVENTS item, answered after its batch committed, is a marker behind
 * all of them (a result dropped by a failed batch is re-dispatched by its recovery).
 */
static sg_err_t results_sync(void *ctx)
{
    item_t *it = sg_calloc(1, sizeof(*it));
    if (it == NULL) {
        return SG_ERR_NOMEM;
    }
    it->kind = ITEM_EVENTS;
    waiter_t w;
    return drv__wait_for(ctx, it, &w);
}

/* ---- lifecycle ---- */

static void set_defaults(sg_driver_opts_t *o)
{
    if (o->transport == NULL) {
        o->transport = "embedded";
    }
    if (o->threads == 0) {
        o->threads = 8;
    }
    if (o->max_batch == 0) {
        o->max_batch = 2048;
    }
    if (o->data_dir == NULL) {
        o->data_dir = ".";
    }
}

sg_err_t sg_driver_start(const sg_driver_opts_t *opts, sg_driver_t **out, char *err, size_t errlen)
{
    const char *name = opts->transport != NULL ? opts->transport : "embedded";
    const sg_transport_vt_t *tvt = sg_transport_find(name);
    if (tvt == NULL) {
        *out = NULL;
        snprintf(err, errlen, "unknown transport \"%s\"", name);
        return SG_ERR_INVALID;
    }
    return drv__start(opts, tvt, out, err, errlen);
}

sg_err_t drv__start(const sg_driver_opts_t *opts, const sg_transport_vt_t *tvt, sg_driver_t **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    sg_driver_t *d = sg_calloc(1, sizeof(*d));
    if (d == NULL) {
        return SG_ERR_NOMEM;
    }
    d->opts = *opts;
    set_defaults(&d->opts);
    d->rng = sg_random64() | 1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    pthread_cond_init(&d->idle_cv, NULL);
    pthread_cond_init(&d->relay_cv, NULL);
    drv__registry_init(&d->registry);
    sg_effects_init(&d->fx);
    sg_store_opts_t so = {.sync = d->opts.sync};
    sg_err_t rc = sg_store_open(d->opts.db_path, &so, &d->store, err, errlen);
    if (rc != SG_OK) {
        goto fail;
    }
    d->jq = sg_jqrt_new();
    d->tvt = tvt;
    if (d->jq == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = SG_ERR_NOMEM;
        goto fail;
    }
    drv__registry_load(&d->registry, d->store, d->opts.workflows_dir);
    sg_transport_opts_t to = {.data_dir = d->opts.data_dir,
                              .test_activities = d->opts.test_activities,
                              .chaos = d->opts.chaos,
                              .threads = d->opts.threads,
                              .per_queue_limit = d->opts.per_queue_limit,
                              .on_result = on_result,
                              .results_sync = results_sync,
                              .kafka = d->opts.kafka,
                              .on_dead_letter = drv__on_dead_letter,
                              .on_published = drv__on_published,
                              .on_heartbeat = on_heartbeat,
                              .ctx = d};
    drv__outbox_init(d); /* before the transport can report on a publication */
    rc = d->tvt->start(&to, &d->transport, err, errlen);
    if (rc != SG_OK) {
        goto fail;
    }
    drv__metrics_init(d);
    rc = drv__recover(d, sg_now_ms());
    if (rc != SG_OK) {
        snprintf(err, errlen, "recovery failed: %s", sg_store_errmsg(d->store));
        goto fail;
    }
    d->running = true;
    if (pthread_create(&d->thread, NULL, engine_main, d) != 0) {
        d->running = false;
        snprintf(err, errlen, "cannot start the engine thread");
        rc = SG_ERR_INTERNAL;
        goto fail;
    }
    rc = drv__relay_start(d);
    if (rc == SG_OK) {
        rc = drv__outbox_start(d);
    }
    if (rc != SG_OK) {
        snprintf(err, errlen, "cannot start the event relay threads");
        goto fail;
    }
    *out = d;
    return SG_OK;
fail:
    sg_driver_stop(d);
    return rc;
}

void sg_driver_stop(sg_driver_t *d)
{
    if (d == NULL) {
        return;
    }
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    pthread_cond_signal(&d->cv);
    pthread_cond_broadcast(&d->relay_cv);
    pthread_mutex_unlock(&d->mu);
    /* The relay first: the engine thread answers what it has queued, then it sees
     * stopping and leaves (events not handed on wait in the outboxes for the restart). */
    drv__relay_stop(d);
    drv__outbox_stop(d); /* its rows not yet published stay for the restart */
    /* The engine thread first: it finishes the work in hand and may still dispatch.
     * Then the workers: results that arrive from now on are refused, and their attempts
     * stay "running" in the database, to be dispatched again at the next start. */
    if (d->running) {
        pthread_join(d->thread, NULL);
    }
    if (d->transport != NULL) {
        d->tvt->stop(d->transport);
    }
    drv__outbox_fini(d); /* after the transport: it reports publications until it stops */
    while (d->head != NULL) {
        item_t *next = d->head->next;
        drv__item_free(d->head);
        d->head = next;
    }
    sg_store_close(d->store);
    drv__metrics_fini(d);
    sg_jqrt_free(d->jq);
    drv__table_fini(&d->live);
    drv__heap_fini(&d->timers);
    drv__registry_fini(&d->registry);
    sg_effects_fini(&d->fx);
    sg_free(d->dispatches);
    sg_free(d->new_timers);
    sg_free(d->replies);
    sg_free(d->finished);
    pthread_cond_destroy(&d->cv);
    pthread_cond_destroy(&d->idle_cv);
    pthread_cond_destroy(&d->relay_cv);
    pthread_mutex_destroy(&d->mu);
    sg_free(d);
}

bool sg_driver_ready(sg_driver_t *d)
{
    pthread_mutex_lock(&d->mu);
    bool up = d->running && !d->stopping;
    pthread_mutex_unlock(&d->mu);
    return up && !atomic_load(&d->last_batch_failed);
}

/* ---- requests ---- */

static sg_err_t make_start(sg_driver_t *d, const char *workflow, int64_t version,
                           const char *input_json, const char *idem_key,
                           sg_jsonschema_errors_t *errs, item_t **out)
{
    *out = NULL;
    const sg_def_t *def = drv__registry_find(&d->registry, workflow, version);
    if (def == NULL) {
        return SG_ERR_NOT_FOUND;
    }
    cJSON *input = cJSON_Parse(input_json ? input_json : "{}");
    if (input == NULL || !cJSON_IsObject(input)) {
        cJSON_Delete(input);
        return SG_ERR_INVALID;
    }
    bool valid =
        def->input_validator == NULL || sg_jsonschema_validate(def->input_validator, input, errs);
    cJSON_Delete(input);
    if (!valid) {
        return SG_ERR_INVALID;
    }
    item_t *it = sg_calloc(1, sizeof(*it));
    if (it == NULL) {
        return SG_ERR_NOMEM;
    }
    it->kind = ITEM_START;
    it->def = def;
    it->input = sg_strdup(input_json ? input_json : "{}");
    it->idem_key = idem_key ? sg_strdup(idem_key) : NULL;
    if (it->input == NULL || (idem_key != NULL && it->idem_key == NULL)) {
        drv__item_free(it);
        return SG_ERR_NOMEM;
    }
    *out = it;
    return SG_OK;
}

sg_err_t drv__wait_for(sg_driver_t *d, item_t *it, waiter_t *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = false;
    it->waiter = w;
    sg_err_t rc = enqueue(d, it);
    if (rc != SG_OK) {
        drv__item_free(it);
    } else {
        pthread_mutex_lock(&w->mu);
        while (!w->done) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        pthread_mutex_unlock(&w->mu);
        rc = w->rc;
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    return rc;
}

sg_err_t sg_driver_start_saga(sg_driver_t *d, const char *workflow, int64_t version,
                              const char *input_json, const char *idem_key, sg_start_result_t *res,
                              sg_jsonschema_errors_t *errs)
{
    item_t *it = NULL;
    sg_err_t rc = make_start(d, workflow, version, input_json, idem_key, errs, &it);
    if (rc != SG_OK) {
        return rc;
    }
    waiter_t w;
    rc = drv__wait_for(d, it, &w);
    if (rc == SG_OK) {
        *res = w.res;
    }
    return rc;
}

sg_err_t sg_driver_start_saga_async(sg_driver_t *d, const char *workflow, int64_t version,
                                    const char *input_json, const char *idem_key,
                                    sg_jsonschema_errors_t *errs, sg_start_fn cb, void *ctx)
{
    item_t *it = NULL;
    sg_err_t rc = make_start(d, workflow, version, input_json, idem_key, errs, &it);
    if (rc != SG_OK) {
        return rc;
    }
    it->cb = cb;
    it->cb_ctx = ctx;
    rc = enqueue(d, it);
    if (rc != SG_OK) {
        drv__item_free(it);
    }
    return rc;
}

static sg_err_t control(sg_driver_t *d, const char *id, item_kind_t kind)
{
    item_t *it = sg_calloc(1, sizeof(*it));
    if (it == NULL) {
        return SG_ERR_NOMEM;
    }
    it->kind = kind;
    snprintf(it->id, sizeof(it->id), "%s", id);
    waiter_t w;
    return drv__wait_for(d, it, &w);
}

sg_err_t sg_driver_cancel(sg_driver_t *d, const char *id)
{
    return control(d, id, ITEM_CANCEL);
}

sg_err_t sg_driver_retry(sg_driver_t *d, const char *id)
{
    return control(d, id, ITEM_RETRY);
}

void sg_driver_reload(sg_driver_t *d)
{
    pthread_mutex_lock(&d->mu);
    d->reload_requested = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

const sg_def_t *sg_driver_def(sg_driver_t *d, const char *name, int64_t version)
{
    return drv__registry_find(&d->registry, name, version);
}

void sg_driver_defs(sg_driver_t *d, void (*cb)(void *ctx, const sg_def_t *def), void *ctx)
{
    pthread_rwlock_rdlock(&d->registry.lock);
    for (size_t i = 0; i < d->registry.count; i++) {
        cb(ctx, d->registry.defs[i]);
    }
    pthread_rwlock_unlock(&d->registry.lock);
}

void sg_driver_stats(sg_driver_t *d, sg_driver_stats_t *o)
{
    *o = (sg_driver_stats_t){
        .started = atomic_load(&d->started),
        .completed = atomic_load(&d->completed),
        .compensated = atomic_load(&d->compensated),
        .failed = atomic_load(&d->failed),
        .compensation_failed = atomic_load(&d->compensation_failed),
        .active = atomic_load(&d->active),
        .batches = atomic_load(&d->batches),
        .items = atomic_load(&d->items),
        .dispatched = atomic_load(&d->dispatched),
        .duplicates = atomic_load(&d->duplicates),
        .batch_us_total = atomic_load(&d->batch_us_total),
    };
    pthread_mutex_lock(&d->mu);
    o->queue_depth = d->queued;
    pthread_mutex_unlock(&d->mu);
}

bool sg_driver_wait_idle(sg_driver_t *d, uint64_t timeout_ms)
{
    uint64_t end = sg_now_ms() + timeout_ms;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        bool idle = d->queued == 0 && d->head == NULL && atomic_load(&d->active) == 0;
        uint64_t now = sg_now_ms();
        if (idle || now >= end || !d->running) {
            pthread_mutex_unlock(&d->mu);
            return idle;
        }
        sg_cond_wait_ms(&d->idle_cv, &d->mu, end - now < 100 ? end - now : 100);
    }
}
