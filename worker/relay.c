/*
 * worker relay: hands the domain events that the modules served by this saga-worker
 * committed to their outboxes (inventory.reserved, payment.processed, ...) on to Kafka.
 * Each event goes to the topic named like its type, keyed by its correlation id (the
 * saga instance), its value the bytes of its message of schemas/events.proto (the JSON
 * form when a module has no message for it).
 *
 * One thread, in rounds, module by module: copy up to RELAY_PAGE events out of the
 * outbox, produce them, wait for every delivery report, and only then acknowledge them
 * (events_ack), which removes them from the outbox. A crash in between publishes the
 * same events again: consumers dedupe on event_id. A round starts when a task finished
 * (wk_relay_kick) or every RELAY_IDLE_MS.
 *
 * It must never acknowledge an event before the broker has it.
 */
#include "orchestrator/log/log.h"
#include "worker/worker_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define RELAY_PAGE 256u
#define RELAY_IDLE_MS 200u
#define RELAY_STOP_MS 5000u
#define TOPICS_RETRY_MS 10000u

struct wk_relay {
    wk_msg_t token; /* WK_MSG_EVENT: the opaque of every event produced */
    wk_t *w;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kicked;
    size_t outstanding; /* produced, no delivery report yet */
    uint64_t next_topics;
};

typedef struct {
    char *topic, *key;
    void *value;
    size_t len;
} rev_t;

typedef struct {
    rev_t *evs;
    size_t n, cap;
    int64_t upto;
    bool nomem;
} page_t;

static void timed_wait(wk_relay_t *r, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

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
    pg->upto = ev->seq;
    if (!topic_ok(ev->type)) {
        sg_log(SG_LOG_ERROR, NULL, "event %s: type \"%s\" cannot name a Kafka topic; skipped",
               ev->id ? ev->id : "?", ev->type ? ev->type : "");
        return true;
    }
    if (!sg_grow((void **)&pg->evs, &pg->cap, pg->n, sizeof(*pg->evs))) {
        pg->nomem = true;
        return false;
    }
    rev_t *e = &pg->evs[pg->n];
    const void *value = ev->proto_len > 0 ? ev->proto : ev->json;
    size_t len = ev->proto_len > 0 ? ev->proto_len : (ev->json ? strlen(ev->json) : 0);
    e->topic = sg_strdup(ev->type);
    e->key = ev->correlation_id != NULL ? sg_strdup(ev->correlation_id) : NULL;
    e->value = sg_malloc(len > 0 ? len : 1);
    e->len = len;
    if (e->value != NULL && len > 0) {
        memcpy(e->value, value, len);
    }
    pg->n++;
    if (e->topic == NULL || e->value == NULL || (ev->correlation_id != NULL && e->key == NULL)) {
        pg->nomem = true;
        return false;
    }
    return true;
}

static void page_fini(page_t *pg)
{
    for (size_t i = 0; i < pg->n; i++) {
        sg_free(pg->evs[i].topic);
        sg_free(pg->evs[i].key);
        sg_free(pg->evs[i].value);
    }
    sg_free(pg->evs);
}

/* Waits for every delivery report; false when stopping ran out of time first. */
static bool wait_reports(wk_relay_t *r)
{
    uint64_t end = 0;
    pthread_mutex_lock(&r->mu);
    while (r->outstanding > 0) {
        if (r->stop && end == 0) {
            end = sg_mono_ms() + RELAY_STOP_MS;
        }
        if (end != 0 && sg_mono_ms() >= end) {
            break;
        }
        timed_wait(r, 100);
    }
    bool done = r->outstanding == 0;
    pthread_mutex_unlock(&r->mu);
    return done;
}

/* One page of one module's outbox. Returns how many events it handed on. */
static size_t relay_module(wk_relay_t *r, wk_queue_t *q)
{
    const sg_activity_module_t *m = wk_queue_module(q);
    page_t pg = {.upto = -1};
    if (m->events_peek(wk_queue_actx(q), RELAY_PAGE, copy_event, &pg) != SG_OK || pg.nomem) {
        sg_log(SG_LOG_WARN, NULL, "queue %s: cannot read its event outbox; trying again", m->queue);
        page_fini(&pg);
        return 0;
    }
    size_t sent = 0;
    for (size_t i = 0; i < pg.n; i++) {
        const rev_t *e = &pg.evs[i];
        pthread_mutex_lock(&r->mu);
        r->outstanding++;
        pthread_mutex_unlock(&r->mu);
        sg_err_t rc =
            sg_kafka_producer_send(r->w->prod, e->topic, e->key, e->key ? strlen(e->key) : 0,
                                   e->value, e->len, NULL, 0, &r->token);
        if (rc != SG_OK) {
            pthread_mutex_lock(&r->mu);
            r->outstanding--;
            pthread_mutex_unlock(&r->mu);
            break;
        }
        sent++;
    }
    bool all = wait_reports(r) && sent == pg.n;
    if (all && pg.upto >= 0) {
        if (m->events_ack(wk_queue_actx(q), pg.upto) != SG_OK) {
            sg_log(SG_LOG_WARN, NULL,
                   "queue %s: cannot acknowledge its events; they are "
                   "published again",
                   m->queue);
        }
        atomic_fetch_add(&r->w->events, sent);
    }
    size_t n = pg.n;
    page_fini(&pg);
    return all ? n : 0;
}

static size_t relay_round(wk_relay_t *r)
{
    size_t moved = 0;
    for (size_t i = 0; i < r->w->n_queues; i++) {
        const sg_activity_module_t *m = wk_queue_module(r->w->queues[i]);
        if (m->events_peek != NULL && m->events_ack != NULL) {
            moved += relay_module(r, r->w->queues[i]);
        }
    }
    return moved;
}

static void *relay_main(void *arg)
{
    wk_relay_t *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        if (!r->kicked) {
            timed_wait(r, RELAY_IDLE_MS);
        }
        r->kicked = false;
        bool topics = r->next_topics != 0 && sg_mono_ms() >= r->next_topics;
        pthread_mutex_unlock(&r->mu);
        if (topics) {
            bool ok = wk_ensure_topics(r->w, 5000);
            r->next_topics = ok ? 0 : sg_mono_ms() + TOPICS_RETRY_MS;
        }
        size_t moved = relay_round(r);
        pthread_mutex_lock(&r->mu);
        if (moved > 0) {
            r->kicked = true; /* maybe more: go on at once */
        }
    }
    pthread_mutex_unlock(&r->mu);
    relay_round(r); /* what the last tasks emitted */
    return NULL;
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
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        sg_free(r);
        snprintf(err, errlen, "cannot start the event relay");
        return SG_ERR_NOMEM;
    }
    *out = r;
    return SG_OK;
}

void wk_relay_stop(wk_relay_t *r)
{
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
}

void wk_relay_free(wk_relay_t *r)
{
    if (r == NULL) {
        return;
    }
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    sg_free(r);
}

void wk_relay_kick(wk_relay_t *r)
{
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->kicked = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void wk_relay_delivered(wk_msg_t *ev, sg_err_t rc)
{
    (void)rc; /* an event Kafka can never take is dropped (and logged) by the producer */
    wk_relay_t *r = (wk_relay_t *)(void *)ev; /* token is the first member */
    pthread_mutex_lock(&r->mu);
    r->outstanding--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}
