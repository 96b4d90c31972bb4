/*
 * kafka producer: an idempotent librdkafka producer that never loses a message.
 *
 * Every message is a record kept in memory from send() until its delivery report says
 * the broker has it (acks=all). A failed report puts the record back on a backlog that
 * the producer's thread produces again; a fatal error (librdkafka 2.0.2's idempotent
 * producer can raise one after a disconnect, and then refuses everything) makes the
 * thread purge and destroy that producer, create a new one from the same configuration
 * and produce every unacknowledged record with it. The price is that a message can
 * reach its topic twice or out of order, which every consumer here tolerates (tasks
 * carry idempotency keys, results are matched to running attempts, events have ids).
 *
 * Records are produced without copying (RD_KAFKA_V_MSGFLAGS 0): the record outlives
 * every librdkafka handle that may point at it, because it is freed only after its
 * delivery report, or after the handle is destroyed.
 *
 * It must never exit the process, never call the delivered callback with its lock held,
 * and never block send() on the broker.
 */
#include "orchestrator/log/log.h"
#include "orchestrator/transport/kafka.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define DEFAULT_CAP 1000000u
#define POLL_MS 20
#define RETRY_DELAY_MS 250u
#define RECREATE_DELAY_MS 1000u
#define WARN_EVERY_MS 10000u

typedef enum { REC_BACKLOG, REC_INFLIGHT } rec_state_t;

typedef struct rec {
    struct rec *prev, *next; /* every record not yet acknowledged */
    struct rec *bnext;       /* the backlog FIFO, while REC_BACKLOG */
    rec_state_t state;
    void *opaque;
    rd_kafka_headers_t *hdrs; /* copied for each produce (librdkafka takes the copy) */
    const char *topic;        /* into data */
    const void *key;          /* into data, NULL for none */
    const void *value;        /* into data */
    size_t key_len, value_len;
    char data[];
} rec_t;

struct sg_kafka_producer {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* pending changed, or the thread should look at the backlog */
    rd_kafka_conf_t *tmpl;
    rd_kafka_t *rk; /* NULL only while a recreation failed */
    rec_t *all;
    rec_t *bhead, *btail;
    size_t pending, cap;
    uint64_t backlog_not_before; /* monotonic ms: the backlog waits after a failure */
    bool fatal, stopping, closing;
    pthread_t thread;
    sg_kafka_delivered_fn fn;
    void *arg;
    uint64_t last_warn;
    _Atomic uint64_t sent, delivered, retried, dropped, recreated;
};

/* ---- the record lists (caller holds mu) ---- */

static void all_unlink(sg_kafka_producer_t *p, rec_t *r)
{
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        p->all = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    p->pending--;
}

static void backlog_push(sg_kafka_producer_t *p, rec_t *r)
{
    r->state = REC_BACKLOG;
    r->bnext = NULL;
    if (p->btail != NULL) {
        p->btail->bnext = r;
    } else {
        p->bhead = r;
    }
    p->btail = r;
}

static void rec_free(rec_t *r)
{
    if (r->hdrs != NULL) {
        rd_kafka_headers_destroy(r->hdrs);
    }
    sg_free(r);
}

/* Errors after which Kafka will never take the message. */
static bool permanent(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || e == RD_KAFKA_RESP_ERR_INVALID_RECORD ||
           e == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION || e == RD_KAFKA_RESP_ERR__INVALID_ARG ||
           e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

/* A warning at most every WARN_EVERY_MS, so a broker outage does not flood the log. */
static void warn_limited(sg_kafka_producer_t *p, const char *what, const char *why)
{
    uint64_t now = sg_mono_ms();
    pthread_mutex_lock(&p->mu);
    bool say = p->last_warn == 0 || now - p->last_warn >= WARN_EVERY_MS;
    if (say) {
        p->last_warn = now;
    }
    pthread_mutex_unlock(&p->mu);
    if (say) {
        sg_log(SG_LOG_WARN, NULL, "kafka producer: %s: %s (%zu messages pending)", what, why,
               sg_kafka_producer_pending(p));
    }
}

/* Hands r to librdkafka. Caller holds mu; p->rk is not NULL. */
static rd_kafka_resp_err_t produce_locked(sg_kafka_producer_t *p, rec_t *r)
{
    rd_kafka_headers_t *h = r->hdrs != NULL ? rd_kafka_headers_copy(r->hdrs) : NULL;
    rd_kafka_resp_err_t e =
        rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_KEY(r->key, r->key_len),
                          RD_KAFKA_V_VALUE((void *)r->value, r->value_len), RD_KAFKA_V_MSGFLAGS(0),
                          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(r), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (h != NULL) {
            rd_kafka_headers_destroy(h); /* only taken over on success */
        }
        return e;
    }
    r->state = REC_INFLIGHT;
    return e;
}

/*
 * Produces the backlog, oldest first, unless it waits after a failure. Records Kafka
 * can never take are moved to *dropped for the caller to report without the lock.
 * Caller holds mu.
 */
static void pump_locked(sg_kafka_producer_t *p, rec_t **dropped)
{
    if (p->rk == NULL || p->fatal || sg_mono_ms() < p->backlog_not_before) {
        return;
    }
    while (p->bhead != NULL) {
        rec_t *r = p->bhead;
        rd_kafka_resp_err_t e = produce_locked(p, r);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            return; /* poll serves delivery reports, then the next pump goes on */
        }
        if (e == RD_KAFKA_RESP_ERR__FATAL) {
            p->fatal = true;
            return;
        }
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && !permanent(e)) {
            p->backlog_not_before = sg_mono_ms() + RETRY_DELAY_MS;
            return;
        }
        p->bhead = r->bnext;
        if (p->bhead == NULL) {
            p->btail = NULL;
        }
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            all_unlink(p, r);
            r->bnext = *dropped;
            *dropped = r;
        }
    }
}

static void report_dropped(sg_kafka_producer_t *p, rec_t *dropped)
{
    while (dropped != NULL) {
        rec_t *r = dropped;
        dropped = r->bnext;
        atomic_fetch_add(&p->dropped, 1);
        sg_log(SG_LOG_ERROR, NULL,
               "kafka producer: a %zu-byte message to %s can never be "
               "delivered; dropped",
               r->value_len, r->topic);
        if (p->fn != NULL) {
            p->fn(p->arg, r->opaque, SG_ERR_INVALID);
        }
        rec_free(r);
    }
}

/* ---- librdkafka callbacks (on the producer thread, inside rd_kafka_poll) ---- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    sg_kafka_producer_t *p = opaque;
    rec_t *r = m->_private;
    pthread_mutex_lock(&p->mu);
    if (p->closing || r == NULL || r->state != REC_INFLIGHT) {
        /* free() drops everything itself; a record already on the backlog was taken
         * back from a destroyed producer. */
        pthread_mutex_unlock(&p->mu);
        return;
    }
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR || permanent(m->err)) {
        all_unlink(p, r);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            atomic_fetch_add(&p->delivered, 1);
            if (p->fn != NULL) {
                p->fn(p->arg, r->opaque, SG_OK);
            }
            rec_free(r);
        } else {
            r->bnext = NULL;
            report_dropped(p, r);
        }
        return;
    }
    /* Not delivered: produce it again (after a pause, unless the producer is being
     * replaced, which is pause enough). */
    bool purged =
        m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
    char why[8];
    if (m->err == RD_KAFKA_RESP_ERR__FATAL || rd_kafka_fatal_error(rk, why, sizeof(why)) != 0) {
        p->fatal = true;
    }
    if (!purged && !p->fatal) {
        p->backlog_not_before = sg_mono_ms() + RETRY_DELAY_MS;
    }
    backlog_push(p, r);
    pthread_mutex_unlock(&p->mu);
    atomic_fetch_add(&p->retried, 1);
    if (!purged) {
        warn_limited(p, "delivery failed, producing again", rd_kafka_err2str(m->err));
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    sg_kafka_producer_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512] = "";
        rd_kafka_resp_err_t e = rd_kafka_fatal_error(rk, why, sizeof(why));
        pthread_mutex_lock(&p->mu);
        p->fatal = true;
        pthread_mutex_unlock(&p->mu);
        sg_log(SG_LOG_ERROR, NULL, "kafka producer: fatal error %s: %s; recreating the producer",
               rd_kafka_err2name(e), why);
        return;
    }
    warn_limited(p, rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* ---- the thread ---- */

/* Replaces a fatally failed producer (or makes one after a failed attempt). */
static void recreate(sg_kafka_producer_t *p)
{
    pthread_mutex_lock(&p->mu);
    rd_kafka_t *old = p->rk;
    pthread_mutex_unlock(&p->mu);
    if (old != NULL) {
        /* Purged records come back through dr_cb onto the backlog. */
        rd_kafka_purge(old, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 100 && rd_kafka_outq_len(old) > 0; i++) {
            rd_kafka_poll(old, 10);
        }
        rd_kafka_destroy(old);
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(p->tmpl);
    char why[256] = "cannot copy the configuration";
    rd_kafka_t *rk = conf != NULL ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why)) : NULL;
    if (rk == NULL && conf != NULL) {
        rd_kafka_conf_destroy(conf);
    }
    pthread_mutex_lock(&p->mu);
    /* Whatever the old producer still held is ours again. */
    for (rec_t *r = p->all; r != NULL; r = r->next) {
        if (r->state == REC_INFLIGHT) {
            backlog_push(p, r);
        }
    }
    p->rk = rk;
    if (rk != NULL) {
        p->fatal = false;
        p->backlog_not_before = 0;
        atomic_fetch_add(&p->recreated, 1);
    }
    size_t pending = p->pending;
    pthread_mutex_unlock(&p->mu);
    if (rk == NULL) {
        sg_log(SG_LOG_ERROR, NULL, "kafka producer: cannot create a new producer: %s; trying again",
               why);
    } else {
        sg_log(SG_LOG_WARN, NULL, "kafka producer: recreated; producing %zu pending messages again",
               pending);
    }
}

static void *prod_main(void *arg)
{
    sg_kafka_producer_t *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        if (p->fatal || p->rk == NULL) {
            pthread_mutex_unlock(&p->mu);
            recreate(p);
            pthread_mutex_lock(&p->mu);
            if (p->rk == NULL) {
                sg_cond_wait_ms(&p->cv, &p->mu, RECREATE_DELAY_MS);
            }
            continue;
        }
        rec_t *dropped = NULL;
        pump_locked(p, &dropped);
        rd_kafka_t *rk = p->rk;
        pthread_mutex_unlock(&p->mu);
        report_dropped(p, dropped);
        rd_kafka_poll(rk, POLL_MS);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- public ---- */

sg_err_t sg_kafka_producer_new(const sg_kafka_opts_t *o, const char *client_id, size_t cap,
                               sg_kafka_delivered_fn fn, void *arg, sg_kafka_producer_t **out,
                               char *err, size_t errlen)
{
    /* Java clients hash keys with murmur2: the same instance lands on the same partition
     * whichever language produces it. */
    static const char *const defaults[] = {
        "partitioner=murmur2_random",
        /* Topics are ours to create, with our partitions: a message to a topic that does
         * not exist yet waits for it (and is produced again after the metadata timeout)
         * rather than making the broker create a default one with a single partition. */
        "allow.auto.create.topics=false",
        NULL,
    };
    rd_kafka_conf_t *conf = sg_kafka_conf_new(o, client_id, defaults, err, errlen);
    if (conf == NULL) {
        return SG_ERR_INVALID;
    }
    /* Not overridable: exactly-once effects rest on these. */
    if (!sg_kafka_conf_set(conf, "enable.idempotence", "true", err, errlen) ||
        !sg_kafka_conf_set(conf, "acks", "all", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return SG_ERR_INVALID;
    }
    sg_kafka_producer_t *p = sg_calloc(1, sizeof(*p));
    if (p == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, p);
    p->tmpl = conf;
    p->cap = cap != 0 ? cap : DEFAULT_CAP;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    rd_kafka_conf_t *first = rd_kafka_conf_dup(conf);
    char why[256] = "out of memory";
    p->rk = first != NULL ? rd_kafka_new(RD_KAFKA_PRODUCER, first, why, sizeof(why)) : NULL;
    if (p->rk == NULL) {
        if (first != NULL) {
            rd_kafka_conf_destroy(first);
        }
        snprintf(err, errlen, "kafka producer: %s", why);
        goto fail;
    }
    if (pthread_create(&p->thread, NULL, prod_main, p) != 0) {
        snprintf(err, errlen, "cannot start the kafka producer thread");
        rd_kafka_destroy(p->rk);
        goto fail;
    }
    *out = p;
    return SG_OK;
fail:
    rd_kafka_conf_destroy(p->tmpl);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    sg_free(p);
    return SG_ERR_INVALID;
}

static rec_t *rec_new(const char *topic, const void *key, size_t key_len, const void *value,
                      size_t value_len, const sg_kafka_header_t *headers, size_t n_headers,
                      void *opaque)
{
    size_t tlen = strlen(topic) + 1;
    rec_t *r = sg_malloc(sizeof(*r) + tlen + key_len + value_len);
    if (r == NULL) {
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    char *d = r->data;
    memcpy(d, topic, tlen);
    r->topic = d;
    d += tlen;
    if (key != NULL) {
        memcpy(d, key, key_len);
        r->key = d;
        r->key_len = key_len;
        d += key_len;
    }
    if (value_len > 0) {
        memcpy(d, value, value_len);
    }
    r->value = d;
    r->value_len = value_len;
    r->opaque = opaque;
    if (n_headers > 0) {
        r->hdrs = rd_kafka_headers_new(n_headers);
        for (size_t i = 0; r->hdrs != NULL && i < n_headers; i++) {
            rd_kafka_header_add(r->hdrs, headers[i].name, -1, headers[i].value,
                                (ssize_t)headers[i].len);
        }
        if (r->hdrs == NULL) {
            sg_free(r);
            return NULL;
        }
    }
    return r;
}

sg_err_t sg_kafka_producer_send(sg_kafka_producer_t *p, const char *topic, const void *key,
                                size_t key_len, const void *value, size_t value_len,
                                const sg_kafka_header_t *headers, size_t n_headers, void *opaque)
{
    if (p == NULL || topic == NULL || (value == NULL && value_len > 0)) {
        return SG_ERR_INVALID;
    }
    rec_t *r = rec_new(topic, key, key_len, value, value_len, headers, n_headers, opaque);
    if (r == NULL) {
        return SG_ERR_NOMEM;
    }
    pthread_mutex_lock(&p->mu);
    sg_err_t rc = SG_OK;
    if (p->stopping) {
        rc = SG_ERR_STATE;
    } else if (p->pending >= p->cap) {
        rc = SG_ERR_LIMIT;
    }
    if (rc != SG_OK) {
        pthread_mutex_unlock(&p->mu);
        rec_free(r);
        return rc;
    }
    r->next = p->all;
    if (p->all != NULL) {
        p->all->prev = r;
    }
    p->all = r;
    p->pending++;
    atomic_fetch_add(&p->sent, 1);
    /* Straight to librdkafka when nothing waits before it; otherwise behind the
     * backlog, which the thread produces in order. */
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__STATE;
    if (p->bhead == NULL && p->rk != NULL && !p->fatal) {
        e = produce_locked(p, r);
        if (e == RD_KAFKA_RESP_ERR__FATAL) {
            p->fatal = true;
        }
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        backlog_push(p, r); /* a permanent error is reported by the thread's pump */
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return SG_OK;
}

size_t sg_kafka_producer_pending(sg_kafka_producer_t *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->pending;
    pthread_mutex_unlock(&p->mu);
    return n;
}

bool sg_kafka_producer_flush(sg_kafka_producer_t *p, uint64_t timeout_ms)
{
    uint64_t end = sg_mono_ms() + timeout_ms;
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0 && sg_mono_ms() < end) {
        sg_cond_wait_ms(&p->cv, &p->mu, 50);
    }
    bool done = p->pending == 0;
    pthread_mutex_unlock(&p->mu);
    return done;
}

void sg_kafka_producer_stats(sg_kafka_producer_t *p, sg_kafka_producer_stats_t *out)
{
    *out = (sg_kafka_producer_stats_t){
        .sent = atomic_load(&p->sent),
        .delivered = atomic_load(&p->delivered),
        .retried = atomic_load(&p->retried),
        .dropped = atomic_load(&p->dropped),
        .recreated = atomic_load(&p->recreated),
    };
}

void sg_kafka_producer_test_fatal(sg_kafka_producer_t *p)
{
    pthread_mutex_lock(&p->mu);
    if (p->rk != NULL) {
        rd_kafka_test_fatal_error(p->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                  "raised by a test");
    }
    pthread_mutex_unlock(&p->mu);
}

void sg_kafka_producer_free(sg_kafka_producer_t *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_mutex_lock(&p->mu);
    p->closing = true; /* dr_cb ignores whatever destroy still reports */
    pthread_mutex_unlock(&p->mu);
    if (p->rk != NULL) {
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(p->rk);
    }
    while (p->all != NULL) {
        rec_t *r = p->all;
        p->all = r->next;
        rec_free(r);
    }
    rd_kafka_conf_destroy(p->tmpl);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    sg_free(p);
}
