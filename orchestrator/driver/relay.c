/*
 * driver/relay: hands the domain events that the activity modules served in this
 * process committed to their own outboxes (inventory.reserved, payment.processed, ...)
 * over to sagad's event log, where GET /v1/events finds them.
 *
 * One thread, in rounds: copy up to RELAY_PAGE events out of the outboxes, have the
 * engine thread import them inside one of its batches (so the store keeps one writer),
 * wait for that batch to commit, then remove the events from the outboxes. A crash
 * between commit and removal hands the same events on again; the log's unique event_id
 * makes the second import a no-op. So every event reaches the log exactly once.
 */
#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define RELAY_PAGE 256u
#define RELAY_IDLE_MS 50u
#define RELAY_MAX_QUEUES 16u

typedef struct {
    item_t *it;
    size_t cap;
    bool nomem;
    /* the highest seq copied per queue, acknowledged after the commit */
    const char *queues[RELAY_MAX_QUEUES];
    int64_t upto[RELAY_MAX_QUEUES];
    size_t n_queues;
} round_t;

static bool copy_event(void *arg, const char *queue, const sg_domain_event_t *ev)
{
    round_t *r = arg;
    size_t q = 0;
    while (q < r->n_queues && strcmp(r->queues[q], queue) != 0) {
        q++;
    }
    if (q == r->n_queues) {
        if (q == RELAY_MAX_QUEUES) {
            return false; /* the rest next round */
        }
        r->queues[q] = queue; /* the module's static name: outlives the round */
        r->n_queues++;
    }
    if (!sg_grow((void **)&r->it->events, &r->cap, r->it->n_events, sizeof(relay_ev_t))) {
        r->nomem = true;
        return false;
    }
    relay_ev_t *e = &r->it->events[r->it->n_events];
    memset(e, 0, sizeof(*e));
    e->event_id = sg_strdup(ev->id);
    e->type = sg_strdup(ev->type);
    e->correlation_id = ev->correlation_id ? sg_strdup(ev->correlation_id) : NULL;
    e->source = sg_strdup(queue);
    e->json = sg_strdup(ev->json ? ev->json : "{}");
    e->ts_ms = ev->ts_ms;
    e->seq = ev->seq;
    r->it->n_events++; /* counted even when a copy failed, so the item frees it */
    if (e->event_id == NULL || e->type == NULL || e->source == NULL || e->json == NULL ||
        (ev->correlation_id != NULL && e->correlation_id == NULL)) {
        r->nomem = true;
        return false;
    }
    if (ev->seq > r->upto[q]) {
        r->upto[q] = ev->seq;
    }
    return r->it->n_events < RELAY_PAGE;
}

/* One round. Returns how many events went into the log (0: nothing waiting, or an
 * error that the next round retries). */
static size_t relay_round(sg_driver_t *d)
{
    round_t r = {0};
    r.it = sg_calloc(1, sizeof(*r.it));
    if (r.it == NULL) {
        return 0;
    }
    r.it->kind = ITEM_EVENTS;
    sg_err_t rc = d->tvt->events_peek(d->transport, RELAY_PAGE, copy_event, &r);
    if (rc != SG_OK || r.nomem || r.it->n_events == 0) {
        if (rc != SG_OK) {
            sg_log(SG_LOG_WARN, NULL, "event relay: cannot read an outbox: %s", sg_strerror(rc));
        }
        drv__item_free(r.it);
        return 0;
    }
    size_t n = r.it->n_events;
    waiter_t w;
    rc = drv__wait_for(d, r.it, &w); /* takes the item */
    if (rc != SG_OK) {
        return 0; /* stopping, or the batch failed: the events stay in the outboxes */
    }
    for (size_t q = 0; q < r.n_queues; q++) {
        sg_err_t ack = d->tvt->events_ack(d->transport, r.queues[q], r.upto[q]);
        if (ack != SG_OK) {
            /* Harmless: they are handed on again and deduplicated. */
            sg_log(SG_LOG_WARN, NULL, "event relay: cannot clear the %s outbox: %s", r.queues[q],
                   sg_strerror(ack));
        }
    }
    atomic_fetch_add(&d->events_relayed, n);
    return n;
}

static void *relay_main(void *arg)
{
    sg_driver_t *d = arg;
    for (;;) {
        size_t n = relay_round(d);
        pthread_mutex_lock(&d->mu);
        if (!d->stopping && n < RELAY_PAGE) {
            /* Nothing (or little) waiting: look again a little later. */
            sg_cond_wait_ms(&d->relay_cv, &d->mu, RELAY_IDLE_MS);
        }
        bool stop = d->stopping;
        pthread_mutex_unlock(&d->mu);
        if (stop) {
            return NULL;
        }
    }
}

sg_err_t drv__relay_start(sg_driver_t *d)
{
    if (d->tvt->events_peek == NULL || d->tvt->events_ack == NULL) {
        return SG_OK; /* the transport's events go elsewhere */
    }
    if (pthread_create(&d->relay_thread, NULL, relay_main, d) != 0) {
        return SG_ERR_INTERNAL;
    }
    d->relay_running = true;
    return SG_OK;
}

void drv__relay_stop(sg_driver_t *d)
{
    if (d->relay_running) {
        pthread_join(d->relay_thread, NULL);
        d->relay_running = false;
    }
}

sg_err_t drv__relay_import(sg_driver_t *d, const item_t *it)
{
    for (size_t i = 0; i < it->n_events; i++) {
        const relay_ev_t *e = &it->events[i];
        sg_err_t rc = sg_store_event_import(d->store, e->event_id, e->type, e->correlation_id,
                                            e->ts_ms, e->source, e->json, NULL);
        if (rc != SG_OK) {
            return rc;
        }
    }
    return SG_OK;
}
