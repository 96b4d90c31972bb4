/*
 * driver instrument: the driver's metrics (orchestrator/metrics), served by the gateway's
 * GET /metrics. Counted after each commit, so a number never covers work that was rolled
 * back: sagas started and finished per workflow and status, and each dispatch. Attempts
 * are counted as they end (per activity and outcome), with the time from their dispatch
 * to their result; timeouts by code (saga.timeout, saga.heartbeat_timeout); heartbeats by
 * what became of them (applied, stale); batches with their size and duration. Queue depths,
 * live sagas and the counters the driver keeps anyway are read at scrape time.
 *
 * Dispatch times live in a small table of attempts in flight, on the engine thread only
 * (dispatches and results both pass through it), so nothing here takes a lock on the
 * hot path. It must never fail the driver: without memory a sample is simply lost.
 */
#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_WORKFLOWS 256
#define MAX_ACTIVITIES 256
/* Attempts in flight whose dispatch time is kept; past this the table starts over (the
 * attempts already in it lose their latency sample, nothing else). */
#define MAX_FLIGHTS ((size_t)1 << 17)

typedef struct {
    uint64_t hash, t0_us;
    char id[32];
    uint32_t step, attempt;
    bool compensation, used;
    const char *activity; /* points into the definition */
} flight_t;

struct drv_metrics {
    sg_metrics_t *reg;
    sg_metric_t *started, *finished, *attempts, *latency, *batch_items, *batch_seconds;
    sg_metric_t *timeouts;                           /* by code */
    sg_series_t *hb_applied, *hb_stale, *hb_dropped; /* kept: heartbeats are the hottest path */
    flight_t *flights;
    size_t cap, count; /* cap: 0 or a power of two */
};

/* ---- attempts in flight: open addressing, backward-shift deletion ---- */

static uint64_t flight_hash(const char *id, uint32_t step, uint32_t attempt, bool comp)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    uint64_t k = ((uint64_t)step << 33) ^ ((uint64_t)attempt << 1) ^ (comp ? 1u : 0u);
    return (h ^ k) * 0x9e3779b97f4a7c15ull;
}

static flight_t *flight_find(struct drv_metrics *m, const char *id, uint32_t step, uint32_t attempt,
                             bool comp, uint64_t h)
{
    if (m->cap == 0) {
        return NULL;
    }
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        flight_t *f = &m->flights[i];
        if (!f->used || (f->hash == h && f->step == step && f->attempt == attempt &&
                         f->compensation == comp && strcmp(f->id, id) == 0)) {
            return f;
        }
    }
}

/* Room for one more at most half full; false when that cannot be had. */
static bool flight_room(struct drv_metrics *m)
{
    if (m->count + 1 <= m->cap / 2) {
        return true;
    }
    size_t cap = m->cap != 0 ? m->cap * 2 : 64;
    if (cap > MAX_FLIGHTS) {
        /* Results that never came (lost in a failed batch): forget them all. */
        memset(m->flights, 0, m->cap * sizeof(*m->flights));
        m->count = 0;
        return true;
    }
    flight_t *old = m->flights;
    size_t old_cap = m->cap;
    m->flights = sg_calloc(cap, sizeof(*m->flights));
    if (m->flights == NULL) {
        m->flights = old;
        return false;
    }
    m->cap = cap;
    m->count = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].used) {
            *flight_find(m, old[i].id, old[i].step, old[i].attempt, old[i].compensation,
                         old[i].hash) = old[i];
            m->count++;
        }
    }
    sg_free(old);
    return true;
}

static void flight_put(struct drv_metrics *m, const char *id, uint32_t step, uint32_t attempt,
                       bool comp, const char *activity, uint64_t now_us)
{
    if (!flight_room(m)) {
        return;
    }
    uint64_t h = flight_hash(id, step, attempt, comp);
    flight_t *f = flight_find(m, id, step, attempt, comp, h);
    if (!f->used) {
        m->count++;
    }
    *f = (flight_t){.hash = h,
                    .t0_us = now_us,
                    .step = step,
                    .attempt = attempt,
                    .compensation = comp,
                    .used = true,
                    .activity = activity};
    snprintf(f->id, sizeof(f->id), "%s", id);
}

/* Removes the entry at slot i, moving later entries of its probe run back. */
static void flight_del(struct drv_metrics *m, size_t i)
{
    size_t mask = m->cap - 1, j = i;
    for (;;) {
        m->flights[i].used = false;
        for (;;) {
            j = (j + 1) & mask;
            if (!m->flights[j].used) {
                m->count--;
                return;
            }
            size_t k = m->flights[j].hash & mask; /* where j's entry wants to be */
            bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
            if (!stays) {
                break;
            }
        }
        m->flights[i] = m->flights[j];
        i = j;
    }
}

/* Takes the entry of an attempt out of the table; false when it is not there. */
static bool flight_take(struct drv_metrics *m, const char *id, uint32_t step, uint32_t attempt,
                        bool comp, flight_t *out)
{
    flight_t *f = flight_find(m, id, step, attempt, comp, flight_hash(id, step, attempt, comp));
    if (f == NULL || !f->used) {
        return false;
    }
    *out = *f;
    flight_del(m, (size_t)(f - m->flights));
    return true;
}

/* ---- read at scrape time (the scraping thread) ---- */

static double read_queue(void *ctx)
{
    sg_driver_t *d = ctx;
    pthread_mutex_lock(&d->mu);
    size_t n = d->queued;
    pthread_mutex_unlock(&d->mu);
    return (double)n;
}

static double read_active(void *ctx)
{
    return (double)atomic_load(&((sg_driver_t *)ctx)->active);
}

static double read_transport_queued(void *ctx)
{
    sg_driver_t *d = ctx;
    return (double)d->tvt->queued(d->transport);
}

static double read_dispatched(void *ctx)
{
    return (double)atomic_load(&((sg_driver_t *)ctx)->dispatched);
}

static double read_duplicates(void *ctx)
{
    return (double)atomic_load(&((sg_driver_t *)ctx)->duplicates);
}

static double read_relayed(void *ctx)
{
    return (double)atomic_load(&((sg_driver_t *)ctx)->events_relayed);
}

/* The transport's counters (kafka), read at scrape time. */
static sg_transport_stats_t transport_stats(void *ctx)
{
    sg_driver_t *d = ctx;
    sg_transport_stats_t st = {0};
    d->tvt->stats(d->transport, &st);
    return st;
}

static double read_undecodable(void *ctx)
{
    return (double)transport_stats(ctx).results_undecodable;
}

static double read_recreated(void *ctx)
{
    return (double)transport_stats(ctx).producer_recreated;
}

static double read_unacked(void *ctx)
{
    return (double)transport_stats(ctx).tasks_unacked;
}

static double read_dead_letters(void *ctx)
{
    return (double)transport_stats(ctx).dead_letters;
}

static double read_heartbeats_undecodable(void *ctx)
{
    return (double)transport_stats(ctx).heartbeats_undecodable;
}

static double read_published(void *ctx)
{
    return (double)drv__outbox_published(ctx);
}

static void register_transport(sg_driver_t *d, sg_metrics_t *reg)
{
    if (d->tvt->stats != NULL) {
        sg_metrics_counter_fn(reg, "sagad_kafka_results_undecodable_total",
                              "Messages of saga.results skipped because they are no "
                              "ActivityResult.",
                              read_undecodable, d);
        sg_metrics_counter_fn(reg, "sagad_kafka_producer_recreated_total",
                              "Kafka producers replaced after a fatal error (nothing pending "
                              "is lost).",
                              read_recreated, d);
        sg_metrics_gauge_fn(reg, "sagad_kafka_tasks_awaiting_delivery",
                            "Tasks produced to Kafka that the broker has not acknowledged yet.",
                            read_unacked, d);
        sg_metrics_counter_fn(reg, "sagad_kafka_dead_letters_total",
                              "Dead letters read from the saga.tasks.<queue>.dlq topics.",
                              read_dead_letters, d);
        sg_metrics_counter_fn(reg, "sagad_kafka_heartbeats_undecodable_total",
                              "Messages of saga.heartbeats skipped because they are no "
                              "ActivityHeartbeat.",
                              read_heartbeats_undecodable, d);
    }
    if (d->outbox != NULL) {
        sg_metrics_counter_fn(reg, "sagad_outbox_published_total",
                              "Messages of sagad's outbox (workflow events, requeued dead "
                              "letters) acknowledged by the broker.",
                              read_published, d);
    }
}

/* ---- lifecycle ---- */

static void register_readers(sg_driver_t *d, sg_metrics_t *reg)
{
    sg_metrics_gauge_fn(reg, "sagad_engine_queue_depth",
                        "Work items (starts, results, commands) waiting for the engine thread.",
                        read_queue, d);
    sg_metrics_gauge_fn(reg, "sagad_sagas_active", "Sagas running or compensating.", read_active,
                        d);
    if (d->tvt->queued != NULL) {
        sg_metrics_gauge_fn(reg, "sagad_transport_queued_tasks",
                            "Tasks accepted by the transport and not yet started by a worker.",
                            read_transport_queued, d);
    }
    sg_metrics_counter_fn(reg, "sagad_tasks_dispatched_total",
                          "Tasks handed to the transport (attempts of steps and compensations).",
                          read_dispatched, d);
    sg_metrics_counter_fn(reg, "sagad_results_ignored_total",
                          "Results ignored as duplicates or stale (redelivered, or after their "
                          "attempt timed out).",
                          read_duplicates, d);
    sg_metrics_counter_fn(reg, "sagad_events_relayed_total",
                          "Domain events moved from the services' outboxes into the event log.",
                          read_relayed, d);
    register_transport(d, reg);
}

void drv__metrics_init(sg_driver_t *d)
{
    struct drv_metrics *m = sg_calloc(1, sizeof(*m));
    sg_metrics_t *reg = m != NULL ? sg_metrics_new() : NULL;
    if (reg == NULL) {
        sg_free(m);
        sg_log(SG_LOG_WARN, NULL, "out of memory: sagad runs without metrics");
        return;
    }
    m->reg = reg;
    m->started = sg_metrics_counter(reg, "sagad_sagas_started_total", "Sagas started, by workflow.",
                                    "workflow", MAX_WORKFLOWS);
    m->finished = sg_metrics_counter(reg, "sagad_sagas_finished_total",
                                     "Sagas that reached a final status, by workflow and status "
                                     "(COMPLETED, COMPENSATED, FAILED, COMPENSATION_FAILED).",
                                     "workflow,status", 4 * MAX_WORKFLOWS);
    m->attempts = sg_metrics_counter(reg, "sagad_attempts_total",
                                     "Attempts of steps and compensations that ended, by activity "
                                     "and outcome (ok, retryable, fatal, timeout).",
                                     "activity,outcome", 4 * MAX_ACTIVITIES);
    m->latency = sg_metrics_histogram(
        reg, "sagad_attempt_duration_seconds",
        "Time from dispatching an attempt to applying its result, by activity.", "activity",
        sg_metric_latency_buckets, sg_metric_n_latency_buckets, MAX_ACTIVITIES);
    m->timeouts = sg_metrics_counter(reg, "sagad_attempt_timeouts_total",
                                     "Attempts that timed out, by code: saga.timeout (their "
                                     "whole timeout) or saga.heartbeat_timeout (no heartbeat "
                                     "came in time).",
                                     "code", 8);
    sg_metric_t *hb = sg_metrics_counter(reg, "sagad_heartbeats_total",
                                         "Heartbeats of running attempts, by result: applied "
                                         "(the attempt's timeout moved), stale (its attempt "
                                         "no longer runs, or its step has no heartbeat timeout) "
                                         "or dropped (the engine was behind: not queued).",
                                         "result", 3);
    m->hb_applied = sg_metric_series(hb, (const char *[]){"applied"});
    m->hb_stale = sg_metric_series(hb, (const char *[]){"stale"});
    m->hb_dropped = sg_metric_series(hb, (const char *[]){"dropped"});
    m->batch_items = sg_metrics_histogram(
        reg, "sagad_batch_items", "Work items and due timers applied per batch (one transaction).",
        NULL, sg_metric_size_buckets, sg_metric_n_size_buckets, 0);
    m->batch_seconds = sg_metrics_histogram(
        reg, "sagad_batch_duration_seconds", "Time to apply and commit one batch.", NULL,
        sg_metric_latency_buckets, sg_metric_n_latency_buckets, 0);
    register_readers(d, reg);
    d->metrics = m;
}

void drv__metrics_fini(sg_driver_t *d)
{
    struct drv_metrics *m = d->metrics;
    if (m != NULL) {
        sg_metrics_free(m->reg);
        sg_free(m->flights);
        sg_free(m);
        d->metrics = NULL;
    }
}

sg_metrics_t *sg_driver_metrics(sg_driver_t *d)
{
    return d->metrics != NULL ? d->metrics->reg : NULL;
}

/* ---- the engine thread's events ---- */

void drv__metrics_committed(sg_driver_t *d)
{
    struct drv_metrics *m = d->metrics;
    if (m == NULL) {
        return;
    }
    for (size_t i = 0; i < d->n_replies; i++) {
        const reply_t *r = &d->replies[i];
        if (r->it->kind == ITEM_START && r->rc == SG_OK && r->res.created) {
            sg_metric_add(m->started, (const char *[]){r->it->def->name}, 1);
        }
    }
    for (size_t i = 0; i < d->n_finished; i++) {
        const sg_inst_t *inst = drv__table_get(&d->live, d->finished[i]);
        if (inst != NULL) {
            sg_metric_add(m->finished,
                          (const char *[]){inst->def->name, sg_inst_status_name(inst->status)}, 1);
        }
    }
    uint64_t now = sg_mono_us();
    for (size_t i = 0; i < d->n_dispatch; i++) {
        const dispatch_t *dp = &d->dispatches[i];
        flight_put(m, dp->instance_id, dp->task.step, dp->task.attempt, dp->task.compensation,
                   dp->task.activity, now);
    }
}

/* The activity of an attempt of a live instance, from its definition. */
static const char *activity_of(sg_driver_t *d, const char *id, uint32_t step, bool comp)
{
    const sg_inst_t *inst = drv__table_get(&d->live, id);
    if (inst == NULL || step >= inst->def->n_steps) {
        return NULL;
    }
    const sg_step_t *st = inst->def->all_steps[step];
    if (comp) {
        return st->compensate != NULL ? st->compensate->activity : NULL;
    }
    return st->kind == SG_STEP_ACTIVITY ? st->call.activity : NULL;
}

void drv__metrics_redispatch(sg_driver_t *d, const sg_inst_t *inst, uint32_t step, uint32_t attempt,
                             bool compensation)
{
    const char *activity = activity_of(d, inst->id, step, compensation);
    if (d->metrics != NULL && activity != NULL) {
        flight_put(d->metrics, inst->id, step, attempt, compensation, activity, sg_mono_us());
    }
}

static void attempt_ended(sg_driver_t *d, const char *id, uint32_t step, uint32_t attempt,
                          bool comp, const char *outcome)
{
    struct drv_metrics *m = d->metrics;
    if (m == NULL) {
        return;
    }
    flight_t f;
    const char *activity = NULL;
    if (flight_take(m, id, step, attempt, comp, &f)) {
        activity = f.activity;
        if (strcmp(outcome, "timeout") != 0) { /* no result came: nothing to time */
            sg_metric_observe(m->latency, (const char *[]){activity},
                              (double)(sg_mono_us() - f.t0_us) / 1e6);
        }
    } else {
        activity = activity_of(d, id, step, comp);
    }
    sg_metric_add(m->attempts, (const char *[]){activity != NULL ? activity : "unknown", outcome},
                  1);
}

void drv__metrics_result(sg_driver_t *d, const item_t *it)
{
    static const char *const outcomes[] = {
        [SG_TASK_OK] = "ok", [SG_TASK_RETRYABLE] = "retryable", [SG_TASK_FATAL] = "fatal"};
    attempt_ended(d, it->id, it->step, it->attempt, it->compensation, outcomes[it->outcome]);
}

void drv__metrics_timeout(sg_driver_t *d, const tmr_t *t, const char *code)
{
    attempt_ended(d, t->id, t->step, t->attempt, t->compensation, "timeout");
    if (d->metrics != NULL) {
        sg_metric_add(d->metrics->timeouts, (const char *[]){code}, 1);
    }
}

void drv__metrics_heartbeat(sg_driver_t *d, bool applied)
{
    if (d->metrics != NULL) {
        sg_series_add(applied ? d->metrics->hb_applied : d->metrics->hb_stale, 1);
    }
}

void drv__metrics_heartbeat_dropped(sg_driver_t *d)
{
    if (d->metrics != NULL) {
        sg_series_add(d->metrics->hb_dropped, 1); /* atomic: any thread */
    }
}

void drv__metrics_batch(sg_driver_t *d, size_t items, uint64_t us)
{
    struct drv_metrics *m = d->metrics;
    if (m != NULL && items > 0) { /* the idle loop's empty batches would drown the rest */
        sg_series_observe(sg_metric_series(m->batch_items, NULL), (double)items);
        sg_series_observe(sg_metric_series(m->batch_seconds, NULL), (double)us / 1e6);
    }
}
