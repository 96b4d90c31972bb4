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
 * The loop is the kafka kit's outbox relay (sg_kafka_relay_t), in rounds: have the engine
 * thread copy up to PAGE rows out (an ITEM_OUTBOX, since the store has one writer),
 * publish them, wait until the transport reported on every one (the idempotent producer
 * retries until the broker has it), then have the engine thread delete those rows. A
 * crash in between publishes them again: consumers dedupe on event_id (events) or the
 * idempotency key (tasks). The relay wakes when a batch wrote to the outbox, and once a
 * second for rows left from before; at stop it abandons a round (its rows stay).
 *
 * It must never delete a row before its delivery report, and never block the engine.
 */
#include "activities/common/events.h"
#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"
#include "orchestrator/transport/kafka.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PAGE 256u
#define IDLE_MS 1000u

struct drv_outbox {
    sg_kafka_relay_t *relay;
    /* engine thread only */
    bool written; /* the batch in hand put rows into the outbox */
    char **warned;
    size_t n_warned, cap_warned;
    _Atomic uint64_t published;
};

/* Borrowed by an ITEM_OUTBOX: copy up to max rows into b, or delete the rows msgs[0..n). */
typedef struct {
    bool del;
    sg_kafka_relay_batch_t *b;
    size_t max;
    const sg_kafka_relay_msg_t *msgs;
    size_t n;
    bool nomem;
} op_t;

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
    sg_err_t rc = sg_kafka_relay_add(op->b, id, topic, key, payload, len);
    op->nomem |= rc == SG_ERR_NOMEM;
    return rc == SG_OK;
}

sg_err_t drv__outbox_apply(sg_driver_t *d, item_t *it)
{
    op_t *op = it->ext;
    if (!op->del) {
        sg_err_t rc = sg_store_outbox_fetch(d->store, 0, op->max, copy_row, op);
        return rc == SG_OK || rc == SG_ERR_NOMEM ? SG_OK : SG_ERR_IO; /* OOM: op->nomem */
    }
    for (size_t i = 0; i < op->n; i++) {
        sg_err_t rc = sg_store_outbox_delete(d->store, op->msgs[i].id);
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
        sg_kafka_relay_kick(o->relay);
    }
}

/* ---- the transport's thread ---- */

void drv__on_published(void *ctx, void *opaque, sg_err_t rc)
{
    sg_driver_t *d = ctx;
    struct drv_outbox *o = d->outbox;
    if (o == NULL) {
        return;
    }
    if (rc != SG_OK) {
        sg_log(SG_LOG_ERROR, NULL,
               "outbox message %" PRId64 " can never be delivered (the transport said: %s); "
               "it is deleted",
               (int64_t)(intptr_t)opaque, sg_strerror(rc));
    }
    sg_kafka_relay_reported(o->relay, rc);
}

/* ---- the relay's callbacks, on its thread ---- */

/* Runs op through the engine thread; SG_OK once it is done (and committed). */
static sg_err_t run_op(sg_driver_t *d, op_t *op)
{
    item_t *it = sg_calloc(1, sizeof(*it));
    if (it == NULL) {
        return SG_ERR_NOMEM;
    }
    it->kind = ITEM_OUTBOX;
    it->ext = op; /* borrowed: wait_for returns once the engine thread is done with it */
    waiter_t w;
    return drv__wait_for(d, it, &w); /* frees the item */
}

static sg_err_t fetch(void *arg, size_t src, size_t max, sg_kafka_relay_batch_t *b)
{
    (void)src;
    op_t op = {.b = b, .max = max};
    sg_err_t rc = run_op(arg, &op);
    return rc != SG_OK ? rc : op.nomem ? SG_ERR_NOMEM : SG_OK;
}

static sg_err_t publish(void *arg, const sg_kafka_relay_msg_t *m)
{
    sg_driver_t *d = arg;
    return d->tvt->publish(d->transport, m->topic, m->key, m->value, m->len,
                           (void *)(intptr_t)m->id);
}

/* Rows not deleted (refused by publish, or a failed delete) are published again in a
 * later round. */
static sg_err_t delete_done(void *arg, size_t src, const sg_kafka_relay_round_t *rd)
{
    (void)src;
    sg_driver_t *d = arg;
    op_t op = {.del = true, .msgs = rd->msgs, .n = rd->done};
    sg_err_t rc = run_op(d, &op);
    if (rc == SG_OK) {
        atomic_fetch_add(&d->outbox->published, rd->delivered);
    }
    return rc;
}

/* ---- lifecycle ---- */

void drv__outbox_init(sg_driver_t *d)
{
    if (d->tvt->publish == NULL) {
        return;
    }
    struct drv_outbox *o = sg_calloc(1, sizeof(*o));
    sg_kafka_relay_opts_t ro = {.fetch = fetch,
                                .send = publish,
                                .remove = delete_done,
                                .arg = d,
                                .n_outboxes = 1,
                                .page = PAGE,
                                .idle_ms = IDLE_MS};
    if (o == NULL || sg_kafka_relay_new(&ro, &o->relay) != SG_OK) {
        sg_free(o);
        sg_log(SG_LOG_ERROR, NULL, "out of memory: sagad's events are not published");
        return;
    }
    d->outbox = o;
}

sg_err_t drv__outbox_start(sg_driver_t *d)
{
    return d->outbox != NULL ? sg_kafka_relay_start(d->outbox->relay) : SG_OK;
}

void drv__outbox_stop(sg_driver_t *d)
{
    if (d->outbox != NULL) {
        sg_kafka_relay_stop(d->outbox->relay);
    }
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
    sg_kafka_relay_free(o->relay);
    sg_free(o);
    d->outbox = NULL;
}

uint64_t drv__outbox_published(sg_driver_t *d)
{
    return d->outbox != NULL ? atomic_load(&d->outbox->published) : 0;
}
