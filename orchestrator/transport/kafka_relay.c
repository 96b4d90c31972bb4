/*
 * kafka relay: the one loop that moves outbox rows onto Kafka (see kafka.h): fetch a
 * page, produce it in order, wait for every delivery report, delete the prefix that is
 * on Kafka. The outboxes themselves, how a row is produced and how it is deleted are the
 * caller's callbacks; this file keeps the thread, the rounds and the counting.
 *
 * Reports are counted, not matched: a round deletes nothing until every message sent
 * (in this round or an abandoned earlier one) was reported on, so that a late report can
 * never be taken for one of a later round's.
 *
 * It must never delete a row before its report, nor a row after one that was not sent.
 */
#include "orchestrator/transport/kafka.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#define DEFAULT_PAGE 256u
#define DEFAULT_IDLE_MS 1000u
/* How often a round waiting for reports looks at the clock while stopping. */
#define REPORT_WAIT_MS 100u

struct sg_kafka_relay_batch {
    sg_kafka_relay_msg_t *msgs;
    size_t n, max;
};

struct sg_kafka_relay {
    sg_kafka_relay_opts_t opts;
    sg_kafka_relay_batch_t batch; /* the round's rows (relay thread) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* kick, stop or a report (monotonic clock) */
    bool started, stop, kick;
    size_t outstanding;        /* sent, not yet reported (any round) */
    size_t delivered, dropped; /* reports since the round began */
};

sg_err_t sg_kafka_relay_add(sg_kafka_relay_batch_t *b, int64_t id, const char *topic,
                            const char *key, const void *value, size_t len)
{
    if (b->n >= b->max) {
        return SG_ERR_LIMIT;
    }
    sg_kafka_relay_msg_t m = {.id = id, .len = len};
    m.topic = topic != NULL ? sg_strdup(topic) : NULL;
    m.key = key != NULL ? sg_strdup(key) : NULL;
    m.value = sg_malloc(len > 0 ? len : 1);
    if ((topic != NULL && m.topic == NULL) || (key != NULL && m.key == NULL) || m.value == NULL) {
        sg_free(m.topic);
        sg_free(m.key);
        sg_free(m.value);
        return SG_ERR_NOMEM;
    }
    if (len > 0) {
        memcpy(m.value, value, len);
    }
    b->msgs[b->n++] = m;
    return SG_OK;
}

static void batch_clear(sg_kafka_relay_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        sg_free(b->msgs[i].topic);
        sg_free(b->msgs[i].key);
        sg_free(b->msgs[i].value);
    }
    b->n = 0;
}

/* Sends msgs in order until one is refused; returns how many are done or under way (a
 * row without topic needs no send). */
static size_t send_all(sg_kafka_relay_t *r, const sg_kafka_relay_batch_t *b)
{
    size_t i = 0;
    for (; i < b->n; i++) {
        if (b->msgs[i].topic == NULL) {
            continue;
        }
        /* Counted first: the report may come before send() returns. */
        pthread_mutex_lock(&r->mu);
        r->outstanding++;
        pthread_mutex_unlock(&r->mu);
        if (r->opts.send(r->opts.arg, &b->msgs[i]) != SG_OK) {
            pthread_mutex_lock(&r->mu);
            r->outstanding--;
            pthread_mutex_unlock(&r->mu);
            break;
        }
    }
    return i;
}

/* Waits for every report; false when stopping came first (see stop_wait_ms). */
static bool wait_reports(sg_kafka_relay_t *r, sg_kafka_relay_round_t *rd)
{
    uint64_t end = 0;
    pthread_mutex_lock(&r->mu);
    while (r->outstanding > 0) {
        if (r->stop && r->opts.stop_wait_ms == 0) {
            break;
        }
        if (r->stop && end == 0) {
            end = sg_mono_ms() + r->opts.stop_wait_ms;
        }
        if (end != 0 && sg_mono_ms() >= end) {
            break;
        }
        sg_cond_wait_ms(&r->cv, &r->mu, REPORT_WAIT_MS);
    }
    bool all = r->outstanding == 0;
    rd->delivered = r->delivered;
    rd->dropped = r->dropped;
    pthread_mutex_unlock(&r->mu);
    return all;
}

/* One page of outbox src; true when it was full and all of it is gone (look again). */
static bool relay_outbox(sg_kafka_relay_t *r, size_t src)
{
    sg_kafka_relay_batch_t *b = &r->batch;
    if (r->opts.fetch(r->opts.arg, src, b->max, b) != SG_OK || b->n == 0) {
        batch_clear(b);
        return false;
    }
    pthread_mutex_lock(&r->mu);
    r->delivered = r->dropped = 0;
    pthread_mutex_unlock(&r->mu);
    sg_kafka_relay_round_t rd = {.msgs = b->msgs, .n = b->n};
    size_t sent = send_all(r, b);
    rd.done = wait_reports(r, &rd) ? sent : 0;
    bool gone = rd.done > 0 && r->opts.remove(r->opts.arg, src, &rd) == SG_OK;
    bool again = gone && rd.done == b->max;
    batch_clear(b);
    return again;
}

static bool relay_round(sg_kafka_relay_t *r)
{
    bool again = false;
    for (size_t src = 0; src < r->opts.n_outboxes; src++) {
        again |= relay_outbox(r, src);
    }
    return again;
}

static void *relay_main(void *arg)
{
    sg_kafka_relay_t *r = arg;
    bool again = true; /* at start: rows left from before */
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (!again && !r->kick && !r->stop) {
            sg_cond_wait_ms(&r->cv, &r->mu, r->opts.idle_ms);
        }
        r->kick = false;
        if (r->stop) {
            break;
        }
        pthread_mutex_unlock(&r->mu);
        if (r->opts.before_round != NULL) {
            r->opts.before_round(r->opts.arg);
        }
        again = relay_round(r);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    if (r->opts.stop_wait_ms > 0) {
        relay_round(r);
    }
    return NULL;
}

sg_err_t sg_kafka_relay_new(const sg_kafka_relay_opts_t *opts, sg_kafka_relay_t **out)
{
    sg_kafka_relay_t *r = sg_calloc(1, sizeof(*r));
    if (r == NULL) {
        return SG_ERR_NOMEM;
    }
    r->opts = *opts;
    r->opts.idle_ms = opts->idle_ms > 0 ? opts->idle_ms : DEFAULT_IDLE_MS;
    r->batch.max = opts->page > 0 ? opts->page : DEFAULT_PAGE;
    r->batch.msgs = sg_calloc(r->batch.max, sizeof(*r->batch.msgs));
    if (r->batch.msgs == NULL || pthread_cond_init(&r->cv, NULL) != 0) {
        sg_free(r->batch.msgs);
        sg_free(r);
        return SG_ERR_NOMEM;
    }
    pthread_mutex_init(&r->mu, NULL);
    *out = r;
    return SG_OK;
}

sg_err_t sg_kafka_relay_start(sg_kafka_relay_t *r)
{
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        return SG_ERR_INTERNAL;
    }
    r->started = true;
    return SG_OK;
}

void sg_kafka_relay_reported(sg_kafka_relay_t *r, sg_err_t rc)
{
    pthread_mutex_lock(&r->mu);
    if (r->outstanding == 0) { /* not one of ours: a misuse, but never worth an abort */
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->outstanding--;
    if (rc == SG_OK) {
        r->delivered++;
    } else {
        r->dropped++;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void sg_kafka_relay_kick(sg_kafka_relay_t *r)
{
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->kick = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void sg_kafka_relay_stop(sg_kafka_relay_t *r)
{
    if (r == NULL || !r->started) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    r->started = false;
}

void sg_kafka_relay_free(sg_kafka_relay_t *r)
{
    if (r == NULL) {
        return;
    }
    batch_clear(&r->batch);
    sg_free(r->batch.msgs);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    sg_free(r);
}
