/*
 * driver outbox: sagad's own messages for Kafka, written to the store's outbox table in
 * the transaction of the state change that causes them, and published afterwards:
 *   - a workflow's events (events: on_complete ...), as the message of their type in
 *     schemas/events.proto, with the same envelope as the services' events (event_id,
 *     type, time_ms, correlation_id = the saga, source "sagad") and the data's fields,
 *     on the topic named like the type, keyed by the saga id;
 *   - dead letters an operator requeued (dlq.c): the task's original bytes, on its
 *     tasks topic.
 * Only transports with publish() (kafka) get an outbox; embedded sagad keeps its events
 * in its log only. An event whose data does not fit its message stays in the log (GET
 * /v1/events) and is not published: one warning per type, the saga never fails for it.
 *
 * One relay thread, in rounds: have the engine thread copy up to PAGE rows out (an
 * ITEM_OUTBOX, since the store has one writer), publish them, wait until the transport
 * reported on every one (the idempotent producer retries until the broker has it), then
 * have the engine thread delete those rows. A crash in between publishes them again:
 * consumers dedupe on event_id (events) or the idempotency key (tasks). The relay wakes
 * when a batch wrote to the outbox, and once a second for rows left from before.
 *
 * It must never delete a row before its delivery report, and never block the engine.
 */
#include "activities/common/events.h"
#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define PAGE 256u
#define IDLE_MS 1000u
#define REPORT_WAIT_MS 100u

typedef enum { MSG_PENDING, MSG_DELIVERED, MSG_DROPPED, MSG_UNSENT } msg_state_t;

struct drv_outbox {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* kick, stop, or a delivery report */
    pthread_t thread;
    bool running, stop, kick;
    /* the round in flight: the rows published and what became of them */
    int64_t ids[PAGE];
    msg_state_t state[PAGE];
    size_t n, reported;
    /* engine thread only */
    bool written; /* the batch in hand put rows into the outbox */
    char **warned;
    size_t n_warned, cap_warned;
    _Atomic uint64_t published;
};

/* One row copied out (ITEM_OUTBOX fetch), or the ids to delete. */
typedef struct {
    int64_t id;
    char *topic, *key;
    void *value;
    size_t len;
} msg_t;

typedef struct {
    bool del;
    msg_t msgs[PAGE];
    size_t n;
    int64_t del_ids[PAGE];
    size_t n_del;
    bool nomem;
} op_t;

static void op_free(void *p)
{
    op_t *op = p;
    for (size_t i = 0; op != NULL && i < op->n; i++) {
        sg_free(op->msgs[i].topic);
        sg_free(op->msgs[i].key);
        sg_free(op->msgs[i].value);
    }
    sg_free(op);
}

/* ---- the engine thread ---- */

bool drv__outbox_put(sg_driver_t *d, const char *topic, const char *key, const void *value,
                     size_t len, uint64_t now)
{
    if (sg_store_outbox_put(d->store, topic, key, value, len, (int64_t)now) != SG_OK) {
        return false;
    }
    if (d->outbox != NULL) {
        d->outbox->written = true;
    }
    return true;
}

/* One warning per event type that cannot be published (a type seen again is quiet). */
static void warn_once(struct drv_outbox *o, const char *type, const char *why)
{
    for (size_t i = 0; i < o->n_warned; i++) {
        if (strcmp(o->warned[i], type) == 0) {
            return;
        }
    }
    char *copy = sg_strdup(type);
    if (copy != NULL &&
        sg_grow((void **)&o->warned, &o->cap_warned, o->n_warned, sizeof(*o->warned))) {
        o->warned[o->n_warned++] = copy;
    } else {
        sg_free(copy); /* out of memory: it may be said again */
    }
    sg_log(SG_LOG_WARN, NULL,
           "event %s is kept in the event log but not published to Kafka: %s (said once per "
           "type)",
           type, why);
}

/* The envelope of the services' events, then the data's own fields (the envelope wins
 * over data fields of the same name). NULL with why set when data is no object. */
static cJSON *envelope(const char *instance_id, const char *event_id, const char *type,
                       const char *data, uint64_t now, char *why, size_t whylen)
{
    cJSON *ev = cJSON_Parse(data != NULL ? data : "null");
    if (!cJSON_IsObject(ev)) {
        snprintf(why, whylen, "its data is not a JSON object");
        cJSON_Delete(ev);
        return NULL;
    }
    static const char *const names[] = {"event_id", "type", "time_ms", "correlation_id", "source"};
    for (size_t i = 0; i < SG_ARRAY_LEN(names); i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(ev, names[i]);
    }
    if (cJSON_AddStringToObject(ev, "event_id", event_id) == NULL ||
        cJSON_AddStringToObject(ev, "type", type) == NULL ||
        cJSON_AddNumberToObject(ev, "time_ms", (double)now) == NULL ||
        cJSON_AddStringToObject(ev, "correlation_id", instance_id) == NULL ||
        cJSON_AddStringToObject(ev, "source", "sagad") == NULL) {
        snprintf(why, whylen, "out of memory");
        cJSON_Delete(ev);
        return NULL;
    }
    return ev;
}

bool drv__outbox_event(sg_driver_t *d, const char *instance_id, const char *event_id,
                       const char *type, const char *data, uint64_t now)
{
    struct drv_outbox *o = d->outbox;
    if (o == NULL) {
        return true; /* nowhere to publish: the event log has it */
    }
    char why[256] = "";
    cJSON *ev = envelope(instance_id, event_id, type, data, now, why, sizeof(why));
    uint8_t *buf = NULL;
    size_t len = 0;
    sg_err_t rc =
        ev != NULL ? sg_event_encode(type, ev, &buf, &len, why, sizeof(why)) : SG_ERR_INVALID;
    cJSON_Delete(ev);
    if (rc != SG_OK) {
        warn_once(o, type, why);
        return true;
    }
    bool ok = drv__outbox_put(d, type, instance_id, buf, len, now);
    sg_free(buf);
    return ok;
}

static bool copy_row(void *ctx, int64_t id, const char *topic, const char *key, const void *payload,
                     size_t len)
{
    op_t *op = ctx;
    msg_t *m = &op->msgs[op->n];
    m->id = id;
    m->topic = sg_strdup(topic);
    m->key = key != NULL ? sg_strdup(key) : NULL;
    m->value = sg_malloc(len > 0 ? len : 1);
    m->len = len;
    op->n++; /* counted even when a copy failed, so op_free frees it */
    if (m->topic == NULL || m->value == NULL || (key != NULL && m->key == NULL)) {
        op->nomem = true;
        return false;
    }
    if (len > 0) {
        memcpy(m->value, payload, len);
    }
    return op->n < PAGE;
}

sg_err_t drv__outbox_apply(sg_driver_t *d, item_t *it)
{
    op_t *op = it->ext;
    if (!op->del) {
        sg_err_t rc = sg_store_outbox_fetch(d->store, 0, PAGE, copy_row, op);
        return rc == SG_OK || rc == SG_ERR_NOMEM ? SG_OK : SG_ERR_IO; /* OOM: op->nomem */
    }
    for (size_t i = 0; i < op->n_del; i++) {
        sg_err_t rc = sg_store_outbox_delete(d->store, op->del_ids[i]);
        if (rc != SG_OK && rc != SG_ERR_NOT_FOUND) {
            sg_log(SG_LOG_ERROR, NULL, "store: %s", sg_store_errmsg(d->store));
            return SG_ERR_IO;
        }
    }
    return SG_OK;
}

void drv__outbox_committed(sg_driver_t *d)
{
    struct drv_outbox *o = d->outbox;
    if (o != NULL && o->written) {
        o->written = false;
        pthread_mutex_lock(&o->mu);
        o->kick = true;
        pthread_cond_signal(&o->cv);
        pthread_mutex_unlock(&o->mu);
    }
}

/* ---- the transport's thread ---- */

void drv__on_published(void *ctx, void *opaque, sg_err_t rc)
{
    sg_driver_t *d = ctx;
    struct drv_outbox *o = d->outbox;
    int64_t id = (int64_t)(intptr_t)opaque;
    if (o == NULL) {
        return;
    }
    if (rc != SG_OK) {
        sg_log(SG_LOG_ERROR, NULL,
               "outbox message %" PRId64 " can never be delivered (the transport said: %s); "
               "it is deleted",
               id, sg_strerror(rc));
    }
    pthread_mutex_lock(&o->mu);
    for (size_t i = 0; i < o->n; i++) {
        if (o->ids[i] == id && o->state[i] == MSG_PENDING) {
            o->state[i] = rc == SG_OK ? MSG_DELIVERED : MSG_DROPPED;
            o->reported++;
            pthread_cond_broadcast(&o->cv);
            break;
        }
    }
    pthread_mutex_unlock(&o->mu); /* not found: a report of an abandoned round */
}

/* ---- the relay thread ---- */

static void timed_wait(struct drv_outbox *o, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&o->cv, &o->mu, &ts);
}

/* Runs op through the engine thread; SG_OK once it is done (and committed). */
static sg_err_t run_op(sg_driver_t *d, op_t *op)
{
    item_t *it = sg_calloc(1, sizeof(*it));
    if (it == NULL) {
        op_free(op);
        return SG_ERR_NOMEM;
    }
    it->kind = ITEM_OUTBOX;
    it->ext = op;
    it->ext_free = op_free;
    waiter_t w;
    return drv__wait_for(d, it, &w); /* frees the item, and op with it */
}

/* Publishes the messages of op (the round is set up first, so that a report arriving
 * before publish() returns finds its row) and waits for every report. False when stop
 * came first. */
static bool publish_all(sg_driver_t *d, const op_t *op)
{
    struct drv_outbox *o = d->outbox;
    pthread_mutex_lock(&o->mu);
    o->n = op->n;
    o->reported = 0;
    for (size_t i = 0; i < op->n; i++) {
        o->ids[i] = op->msgs[i].id;
        o->state[i] = MSG_PENDING;
    }
    pthread_mutex_unlock(&o->mu);
    for (size_t i = 0; i < op->n; i++) {
        const msg_t *m = &op->msgs[i];
        sg_err_t rc = d->tvt->publish(d->transport, m->topic, m->key, m->value, m->len,
                                      (void *)(intptr_t)m->id);
        if (rc != SG_OK) {
            /* Full, stopping or out of memory: this one and the rest wait for the next
             * round (nothing was sent for them). */
            pthread_mutex_lock(&o->mu);
            for (size_t k = i; k < op->n; k++) {
                if (o->state[k] == MSG_PENDING) {
                    o->state[k] = MSG_UNSENT;
                    o->reported++;
                }
            }
            pthread_mutex_unlock(&o->mu);
            break;
        }
    }
    pthread_mutex_lock(&o->mu);
    while (o->reported < o->n && !o->stop) {
        timed_wait(o, REPORT_WAIT_MS);
    }
    bool stopped = o->reported < o->n;
    pthread_mutex_unlock(&o->mu);
    return !stopped;
}

/* One round; returns how many rows it fetched (PAGE: look again at once). */
static size_t round_once(sg_driver_t *d)
{
    struct drv_outbox *o = d->outbox;
    op_t *op = sg_calloc(1, sizeof(*op));
    if (op == NULL) {
        return 0;
    }
    item_t *it = sg_calloc(1, sizeof(*it));
    if (it == NULL) {
        sg_free(op);
        return 0;
    }
    /* The fetch: the op stays ours (the item only borrows it). */
    it->kind = ITEM_OUTBOX;
    it->ext = op;
    waiter_t w;
    sg_err_t rc = drv__wait_for(d, it, &w);
    size_t n = op->n;
    if (rc != SG_OK || op->nomem || n == 0 || !publish_all(d, op)) {
        op_free(op);
        return 0;
    }
    op_t *del = sg_calloc(1, sizeof(*del));
    size_t delivered = 0;
    pthread_mutex_lock(&o->mu);
    for (size_t i = 0; del != NULL && i < o->n; i++) {
        if (o->state[i] == MSG_DELIVERED || o->state[i] == MSG_DROPPED) {
            del->del_ids[del->n_del++] = o->ids[i];
            delivered += o->state[i] == MSG_DELIVERED;
        }
    }
    o->n = 0;
    pthread_mutex_unlock(&o->mu);
    op_free(op);
    if (del == NULL) {
        return 0;
    }
    del->del = true;
    size_t n_del = del->n_del;
    if (run_op(d, del) == SG_OK) {
        atomic_fetch_add(&o->published, delivered);
    }
    /* Rows not deleted (refused by publish, or a failed delete) are published again in
     * a later round. */
    return n_del == n ? n : 0;
}

static void *outbox_main(void *arg)
{
    sg_driver_t *d = arg;
    struct drv_outbox *o = d->outbox;
    size_t n = PAGE; /* at start: rows left from before */
    for (;;) {
        pthread_mutex_lock(&o->mu);
        if (n < PAGE && !o->kick && !o->stop) {
            timed_wait(o, IDLE_MS);
        }
        o->kick = false;
        bool stop = o->stop;
        pthread_mutex_unlock(&o->mu);
        if (stop) {
            return NULL;
        }
        n = round_once(d);
    }
}

/* ---- lifecycle ---- */

void drv__outbox_init(sg_driver_t *d)
{
    if (d->tvt->publish == NULL) {
        return;
    }
    struct drv_outbox *o = sg_calloc(1, sizeof(*o));
    if (o == NULL) {
        sg_log(SG_LOG_ERROR, NULL, "out of memory: sagad's events are not published");
        return;
    }
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    d->outbox = o;
}

sg_err_t drv__outbox_start(sg_driver_t *d)
{
    struct drv_outbox *o = d->outbox;
    if (o == NULL) {
        return SG_OK;
    }
    if (pthread_create(&o->thread, NULL, outbox_main, d) != 0) {
        return SG_ERR_INTERNAL;
    }
    o->running = true;
    return SG_OK;
}

void drv__outbox_stop(sg_driver_t *d)
{
    struct drv_outbox *o = d->outbox;
    if (o == NULL || !o->running) {
        return;
    }
    pthread_mutex_lock(&o->mu);
    o->stop = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    pthread_join(o->thread, NULL);
    o->running = false;
}

void drv__outbox_fini(sg_driver_t *d)
{
    struct drv_outbox *o = d->outbox;
    if (o == NULL) {
        return;
    }
    for (size_t i = 0; i < o->n_warned; i++) {
        sg_free(o->warned[i]);
    }
    sg_free(o->warned);
    pthread_cond_destroy(&o->cv);
    pthread_mutex_destroy(&o->mu);
    sg_free(o);
    d->outbox = NULL;
}

uint64_t drv__outbox_published(sg_driver_t *d)
{
    return d->outbox != NULL ? atomic_load(&d->outbox->published) : 0;
}
