/*
 * worker relay: hands the domain events that the modules served by this saga-worker
 * committed to their outboxes (inventory.reserved, payment.processed, ...) on to Kafka.
 * Each event goes to the topic named like its type, keyed by its correlation id (the
 * saga instance), its value the bytes of its message of schemas/events.proto (the JSON
 * form when a module has no message for it).
 *
 * The loop is the kafka kit's outbox relay (sg_kafka_relay_t): one thread, in rounds,
 * module by module: copy up to RELAY_PAGE events out of the outbox, produce them, wait
 * for every delivery report, and only then acknowledge them (events_ack), which removes
 * them from the outbox. A crash in between publishes the same events again: consumers
 * dedupe on event_id. A round starts when a task finished (wk_relay_kick) or every
 * RELAY_IDLE_MS. This file says where events come from and go, and how they go away.
 *
 * It must never acknowledge an event before the broker has it.
 */
#include "orchestrator/log/log.h"
#include "worker/worker_int.h"

#include <stdio.h>
#include <string.h>

#define RELAY_PAGE 256u
#define RELAY_IDLE_MS 200u
#define RELAY_STOP_MS 5000u
#define TOPICS_RETRY_MS 10000u

struct wk_relay {
    wk_msg_t token; /* WK_MSG_EVENT: the opaque of every event produced */
    wk_t *w;
    sg_kafka_relay_t *relay;
    uint64_t next_topics; /* relay thread */
};

typedef struct {
    sg_kafka_relay_batch_t *b;
    bool nomem;
} page_t;

/* An event type usable as a topic name. */
static bool topic_ok(const char *type)
{
    size_t n = type != NULL ? strlen(type) : 0;
    if (n == 0 || n > SG_KAFKA_TOPIC_MAX || strcmp(type, ".") == 0 || strcmp(type, "..") == 0) {
        return false;
    }
    return strspn(type, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static bool copy_event(void *arg, const sg_domain_event_t *ev)
{
    page_t *pg = arg;
    const char *topic = ev->type;
    if (!topic_ok(topic)) {
        /* Acknowledged with the others, never produced. */
        sg_log(SG_LOG_ERROR, NULL, "event %s: type \"%s\" cannot name a Kafka topic; skipped",
               ev->id ? ev->id : "?", ev->type ? ev->type : "");
        topic = NULL;
    }
    const void *value = ev->proto_len > 0 ? ev->proto : ev->json;
    size_t len = ev->proto_len > 0 ? ev->proto_len : (ev->json ? strlen(ev->json) : 0);
    sg_err_t rc = sg_kafka_relay_add(pg->b, ev->seq, topic, ev->correlation_id,
                                     topic ? value : NULL, topic ? len : 0);
    pg->nomem = rc == SG_ERR_NOMEM;
    return rc == SG_OK;
}

/* The relay's callbacks, on its thread. */

static sg_err_t fetch(void *arg, size_t src, size_t max, sg_kafka_relay_batch_t *b)
{
    wk_relay_t *r = arg;
    wk_queue_t *q = r->w->queues[src];
    const sg_activity_module_t *m = wk_queue_module(q);
    if (m->events_peek == NULL || m->events_ack == NULL) {
        return SG_OK; /* the module publishes no events */
    }
    page_t pg = {.b = b};
    if (m->events_peek(wk_queue_actx(q), max, copy_event, &pg) != SG_OK || pg.nomem) {
        sg_log(SG_LOG_WARN, NULL, "queue %s: cannot read its event outbox; trying again", m->queue);
        return SG_ERR_IO;
    }
    return SG_OK;
}

static sg_err_t send_event(void *arg, const sg_kafka_relay_msg_t *e)
{
    wk_relay_t *r = arg;
    return sg_kafka_producer_send(r->w->prod, e->topic, e->key, e->key ? strlen(e->key) : 0,
                                  e->value, e->len, NULL, 0, &r->token);
}

/* The outbox forgets by sequence number: everything up to the last event done. */
static sg_err_t ack(void *arg, size_t src, const sg_kafka_relay_round_t *rd)
{
    wk_relay_t *r = arg;
    wk_queue_t *q = r->w->queues[src];
    const sg_activity_module_t *m = wk_queue_module(q);
    sg_err_t rc = m->events_ack(wk_queue_actx(q), rd->msgs[rd->done - 1].id);
    if (rc != SG_OK) {
        sg_log(SG_LOG_WARN, NULL,
               "queue %s: cannot acknowledge its events; they are "
               "published again",
               m->queue);
    }
    atomic_fetch_add(&r->w->events, rd->delivered + rd->dropped);
    return rc;
}

static void ensure_topics(void *arg)
{
    wk_relay_t *r = arg;
    if (r->next_topics != 0 && sg_mono_ms() >= r->next_topics) {
        bool ok = wk_ensure_topics(r->w, 5000);
        r->next_topics = ok ? 0 : sg_mono_ms() + TOPICS_RETRY_MS;
    }
}

sg_err_t wk_relay_start(wk_t *w, bool topics_ok, wk_relay_t **out, char *err, size_t errlen)
{
    wk_relay_t *r = sg_calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    r->token.kind = WK_MSG_EVENT;
    r->w = w;
    r->next_topics = topics_ok ? 0 : sg_mono_ms() + TOPICS_RETRY_MS;
    sg_kafka_relay_opts_t ro = {.fetch = fetch,
                                .send = send_event,
                                .remove = ack,
                                .before_round = ensure_topics,
                                .arg = r,
                                .n_outboxes = w->n_queues,
                                .page = RELAY_PAGE,
                                .idle_ms = RELAY_IDLE_MS,
                                .stop_wait_ms = RELAY_STOP_MS};
    if (sg_kafka_relay_new(&ro, &r->relay) != SG_OK) {
        sg_free(r);
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    if (sg_kafka_relay_start(r->relay) != SG_OK) {
        sg_kafka_relay_free(r->relay);
        sg_free(r);
        snprintf(err, errlen, "cannot start the event relay");
        return SG_ERR_NOMEM;
    }
    *out = r;
    return SG_OK;
}

void wk_relay_stop(wk_relay_t *r)
{
    if (r != NULL) {
        sg_kafka_relay_stop(r->relay);
    }
}

void wk_relay_free(wk_relay_t *r)
{
    if (r != NULL) {
        sg_kafka_relay_free(r->relay);
        sg_free(r);
    }
}

void wk_relay_kick(wk_relay_t *r)
{
    if (r != NULL) {
        sg_kafka_relay_kick(r->relay);
    }
}

void wk_relay_delivered(wk_msg_t *ev, sg_err_t rc)
{
    /* An event Kafka can never take is dropped (and logged) by the producer. */
    wk_relay_t *r = (wk_relay_t *)(void *)ev; /* token is the first member */
    sg_kafka_relay_reported(r->relay, rc);
}
