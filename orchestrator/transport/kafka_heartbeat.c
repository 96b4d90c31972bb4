/*
 * kafka heartbeats: both ends of saga.heartbeats.
 *
 * Worker side (sg_kafka_beats_*, used by saga-worker): while a task with heartbeat_ms > 0
 * runs, one ticker thread for the whole process produces an ActivityHeartbeat (keyed by
 * instance id) when the handler starts and then every heartbeat_ms/3, with the last
 * progress the handler gave through sg_task_heartbeat. The producer is a lossy one of its
 * own (acks=1, not idempotent, short message timeout): a heartbeat is worth something
 * only while it is fresh, so one that fails is counted and dropped, never retried, and a
 * broker outage never fills memory with stale ones. A beat is sent only under the lock
 * that sg_kafka_beats_remove takes, so none leaves after the handler returned.
 *
 * sagad side (kafka__hb_*): a consumer without group membership reads every partition of
 * saga.heartbeats from its end (old heartbeats are worthless, so nothing is committed)
 * and hands each decodable heartbeat to on_heartbeat; an undecodable one is counted,
 * logged and skipped. The topic may not exist yet (sagad creates it in the background):
 * the reader looks for it every second until it does, and again now and then for added
 * partitions.
 *
 * It must never block a handler on the broker, never send a heartbeat of a task whose
 * handler returned, and never commit an offset of saga.heartbeats.
 */
#include "orchestrator/log/log.h"
#include "orchestrator/transport/kafka_int.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define IDLE_WAKE_MS 200u
#define BEAT_TIMEOUT_MS "10000"
#define WARN_EVERY_MS 10000u
#define READER_POLL_MS 100
#define TOPIC_LOOK_MS 1000u
#define PARTITIONS_LOOK_MS 30000u

/* ---- worker side ---- */

struct sg_kafka_beat {
    struct sg_kafka_beat *prev, *next;
    sg_kafka_beats_t *b;
    sg_task_t *task;   /* the executor's; valid until remove */
    char *details;     /* the handler's last progress (copied), NULL = none */
    uint64_t every_ms; /* heartbeat_ms / 3 */
    uint64_t due;      /* monotonic ms of the next beat */
};

struct sg_kafka_beats {
    rd_kafka_t *rk;
    char *worker_id;
    const atomic_bool *stop_flag;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a beat was added, or the ticker should stop */
    sg_kafka_beat_t *beats;
    bool stopping;
    pthread_t thread;
    bool started;
    _Atomic uint64_t sent, acked, failed;
    _Atomic uint64_t last_warn;
};

static bool beats_warn_due(_Atomic uint64_t *last)
{
    uint64_t now = sg_mono_ms(), prev = atomic_load(last);
    return (prev == 0 || now - prev >= WARN_EVERY_MS) &&
           atomic_compare_exchange_strong(last, &prev, now);
}

/* Delivery reports (ticker thread, inside rd_kafka_poll). */
static void beat_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    sg_kafka_beats_t *b = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_fetch_add(&b->acked, 1);
        return;
    }
    uint64_t n = atomic_fetch_add(&b->failed, 1) + 1;
    if (beats_warn_due(&b->last_warn)) {
        sg_log(SG_LOG_WARN, NULL, "kafka: a heartbeat was not delivered: %s (%llu dropped so far)",
               rd_kafka_err2str(m->err), (unsigned long long)n);
    }
}

/* Hands one heartbeat of beat to librdkafka. Caller holds mu (see the top of the file). */
static void send_locked(sg_kafka_beats_t *b, sg_kafka_beat_t *beat, uint64_t now_mono)
{
    beat->due = now_mono + beat->every_ms;
    const sg_task_t *task = beat->task;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (sg_wire_heartbeat_encode(task, b->worker_id, beat->details, sg_now_ms(), &buf, &len) !=
        SG_OK) {
        atomic_fetch_add(&b->failed, 1); /* out of memory: the next tick tries again */
        return;
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        b->rk, RD_KAFKA_V_TOPIC(SG_KAFKA_HEARTBEATS_TOPIC),
        RD_KAFKA_V_KEY(task->instance_id, strlen(task->instance_id)), RD_KAFKA_V_VALUE(buf, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(NULL), RD_KAFKA_V_END);
    sg_free(buf);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_fetch_add(&b->sent, 1);
    } else {
        uint64_t n = atomic_fetch_add(&b->failed, 1) + 1;
        if (beats_warn_due(&b->last_warn)) {
            sg_log(SG_LOG_WARN, NULL, "kafka: a heartbeat was dropped: %s (%llu so far)",
                   rd_kafka_err2str(e), (unsigned long long)n);
        }
    }
}

static void *ticker_main(void *arg)
{
    sg_kafka_beats_t *b = arg;
    pthread_mutex_lock(&b->mu);
    while (!b->stopping) {
        uint64_t now = sg_mono_ms(), next = now + IDLE_WAKE_MS;
        for (sg_kafka_beat_t *beat = b->beats; beat != NULL; beat = beat->next) {
            if (beat->due <= now) {
                send_locked(b, beat, now);
            }
            next = beat->due < next ? beat->due : next;
        }
        pthread_mutex_unlock(&b->mu);
        rd_kafka_poll(b->rk, 0); /* delivery reports */
        pthread_mutex_lock(&b->mu);
        now = sg_mono_ms();
        if (!b->stopping && next > now) {
            sg_cond_wait_ms(&b->cv, &b->mu, next - now);
        }
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* task->heartbeat_fn: keeps the progress for the next tick; false once the attempt is
 * over for sagad (past its deadline) or the worker stops. Any thread running the task. */
static bool beat_fn(void *arg, const char *details_json)
{
    sg_kafka_beat_t *beat = arg;
    sg_kafka_beats_t *b = beat->b;
    if (details_json != NULL) {
        size_t n = strlen(details_json);
        /* Refused here rather than dropped by sagad: the handler hears of it in the log. */
        char *copy = n <= SG_WIRE_DETAILS_MAX ? sg_strdup(details_json) : NULL;
        if (copy == NULL && n > SG_WIRE_DETAILS_MAX && beats_warn_due(&b->last_warn)) {
            sg_log(SG_LOG_WARN, NULL, "heartbeat details of %zu bytes ignored (at most %u)", n,
                   SG_WIRE_DETAILS_MAX);
        }
        if (copy != NULL) {
            pthread_mutex_lock(&b->mu);
            sg_free(beat->details);
            beat->details = copy;
            pthread_mutex_unlock(&b->mu);
        }
    }
    uint64_t deadline = beat->task->deadline_ms;
    bool stopping = b->stop_flag != NULL && atomic_load(b->stop_flag);
    return !stopping && (deadline == 0 || sg_now_ms() <= deadline);
}

sg_err_t sg_kafka_beats_new(const sg_kafka_opts_t *o, const char *worker_id,
                            const atomic_bool *stop_flag, sg_kafka_beats_t **out, char *err,
                            size_t errlen)
{
    static const char *const defaults[] = {
        "partitioner=murmur2_random", /* as every producer here: Java's partitions */
        "linger.ms=5",
        /* Only sagad creates saga.heartbeats (with its partitions); until it has, the
         * broker must not make a default one. */
        "allow.auto.create.topics=false",
        NULL,
    };
    rd_kafka_conf_t *conf = sg_kafka_conf_new(o, worker_id, defaults, err, errlen);
    if (conf == NULL) {
        return SG_ERR_INVALID;
    }
    /* Not overridable: lossy by design (see the top of the file). */
    if (!sg_kafka_conf_set(conf, "enable.idempotence", "false", err, errlen) ||
        !sg_kafka_conf_set(conf, "acks", "1", err, errlen) ||
        !sg_kafka_conf_set(conf, "message.timeout.ms", BEAT_TIMEOUT_MS, err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return SG_ERR_INVALID;
    }
    sg_kafka_beats_t *b = sg_calloc(1, sizeof(*b));
    char *wid = sg_strdup(worker_id != NULL ? worker_id : "");
    if (b == NULL || wid == NULL) {
        rd_kafka_conf_destroy(conf);
        sg_free(b);
        sg_free(wid);
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    b->worker_id = wid;
    b->stop_flag = stop_flag;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    rd_kafka_conf_set_dr_msg_cb(conf, beat_dr);
    rd_kafka_conf_set_opaque(conf, b);
    char why[256] = "";
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (b->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka heartbeat producer: %s", why);
        sg_kafka_beats_free(b);
        return SG_ERR_INVALID;
    }
    b->started = pthread_create(&b->thread, NULL, ticker_main, b) == 0;
    if (!b->started) {
        snprintf(err, errlen, "cannot start the heartbeat thread");
        sg_kafka_beats_free(b);
        return SG_ERR_NOMEM;
    }
    *out = b;
    return SG_OK;
}

sg_kafka_beat_t *sg_kafka_beats_add(sg_kafka_beats_t *b, sg_task_t *task)
{
    if (b == NULL || task == NULL || task->heartbeat_ms == 0 || task->instance_id == NULL ||
        task->step_id == NULL) {
        return NULL;
    }
    sg_kafka_beat_t *beat = sg_calloc(1, sizeof(*beat));
    if (beat == NULL) {
        sg_log(SG_LOG_WARN, NULL, "out of memory: task %s runs without heartbeats",
               task->instance_id);
        return NULL;
    }
    beat->b = b;
    beat->task = task;
    beat->every_ms = task->heartbeat_ms / 3;
    beat->every_ms = beat->every_ms > SG_KAFKA_BEAT_MIN_MS ? beat->every_ms : SG_KAFKA_BEAT_MIN_MS;
    task->heartbeat_fn = beat_fn;
    task->heartbeat_arg = beat;
    pthread_mutex_lock(&b->mu);
    send_locked(b, beat, sg_mono_ms()); /* the first one as the handler starts */
    beat->next = b->beats;
    if (b->beats != NULL) {
        b->beats->prev = beat;
    }
    b->beats = beat;
    pthread_cond_signal(&b->cv); /* the ticker may sleep past this beat's first tick */
    pthread_mutex_unlock(&b->mu);
    return beat;
}

void sg_kafka_beats_remove(sg_kafka_beats_t *b, sg_kafka_beat_t *beat)
{
    if (b == NULL || beat == NULL) {
        return;
    }
    pthread_mutex_lock(&b->mu);
    if (beat->prev != NULL) {
        beat->prev->next = beat->next;
    } else {
        b->beats = beat->next;
    }
    if (beat->next != NULL) {
        beat->next->prev = beat->prev;
    }
    pthread_mutex_unlock(&b->mu);
    beat->task->heartbeat_fn = NULL;
    beat->task->heartbeat_arg = NULL;
    sg_free(beat->details);
    sg_free(beat);
}

void sg_kafka_beats_counts(sg_kafka_beats_t *b, uint64_t *sent, uint64_t *acked, uint64_t *failed)
{
    *sent = atomic_load(&b->sent);
    *acked = atomic_load(&b->acked);
    *failed = atomic_load(&b->failed);
}

void sg_kafka_beats_free(sg_kafka_beats_t *b)
{
    if (b == NULL) {
        return;
    }
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    SG_ASSERT(b->beats == NULL);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (b->started) {
        pthread_join(b->thread, NULL);
    }
    if (b->rk != NULL) {
        /* Whatever is still queued is stale by now: dropped, not waited for. */
        rd_kafka_purge(b->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(b->rk, 0);
        rd_kafka_destroy(b->rk);
    }
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    sg_free(b->worker_id);
    sg_free(b);
}

/* ---- sagad side ---- */

struct kafka_hb {
    rd_kafka_t *consumer;
    sg_transport_heartbeat_fn fn;
    void *ctx;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    int assigned;       /* partitions assigned (0: topic not found yet) */
    uint64_t next_look; /* monotonic ms of the next metadata look */
    uint64_t last_warn; /* reading thread only */
    _Atomic uint64_t received, undecodable;
};

/* The number of partitions of saga.heartbeats, 0 when it does not exist (yet), -1 when
 * the broker did not answer. */
static int partitions_of_topic(kafka_hb_t *h)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(h->consumer, SG_KAFKA_HEARTBEATS_TOPIC, NULL);
    if (rkt == NULL) {
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(h->consumer, 0, rkt, &md, (int)TOPIC_LOOK_MS);
    int n = -1;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1) {
        n = md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR ? md->topics[0].partition_cnt : 0;
    }
    if (md != NULL) {
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return n;
}

/* Assigns every partition of the topic from its end, when it exists and has more
 * partitions than assigned so far (a re-assignment starts the old ones from their end
 * again: only a few heartbeats in between are skipped). */
static void look_for_topic(kafka_hb_t *h)
{
    int n = partitions_of_topic(h);
    h->next_look = sg_mono_ms() + (n > 0 ? PARTITIONS_LOOK_MS : TOPIC_LOOK_MS);
    if (n <= h->assigned) {
        return;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; l != NULL && i < n; i++) {
        rd_kafka_topic_partition_list_add(l, SG_KAFKA_HEARTBEATS_TOPIC, i)->offset =
            RD_KAFKA_OFFSET_END;
    }
    rd_kafka_resp_err_t e = l != NULL ? rd_kafka_assign(h->consumer, l) : RD_KAFKA_RESP_ERR__NOENT;
    if (l != NULL) {
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        h->assigned = n;
        sg_log(SG_LOG_INFO, NULL, "kafka: reading %s (%d partitions) from its end",
               SG_KAFKA_HEARTBEATS_TOPIC, n);
    } else {
        h->next_look = sg_mono_ms() + TOPIC_LOOK_MS;
    }
}

static void hb_handle(kafka_hb_t *h, const rd_kafka_message_t *m)
{
    sg_wire_heartbeat_t *w = NULL;
    char why[256] = "";
    if (sg_wire_heartbeat_decode(m->payload, m->len, &w, why, sizeof(why)) == SG_OK) {
        atomic_fetch_add(&h->received, 1);
        h->fn(h->ctx, &w->hb);
        sg_wire_heartbeat_free(w);
        return;
    }
    uint64_t n = atomic_fetch_add(&h->undecodable, 1) + 1;
    uint64_t now = sg_mono_ms();
    if (h->last_warn == 0 || now - h->last_warn >= WARN_EVERY_MS) {
        h->last_warn = now;
        sg_log(SG_LOG_WARN, NULL,
               "kafka: %s partition %d offset %lld: %s; skipped (%llu undecodable so far)",
               SG_KAFKA_HEARTBEATS_TOPIC, (int)m->partition, (long long)m->offset, why,
               (unsigned long long)n);
    }
}

static void *hb_main(void *arg)
{
    kafka_hb_t *h = arg;
    while (!atomic_load(&h->stop)) {
        if (sg_mono_ms() >= h->next_look) {
            look_for_topic(h);
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(h->consumer, READER_POLL_MS);
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            hb_handle(h, m);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            uint64_t now = sg_mono_ms();
            if (h->last_warn == 0 || now - h->last_warn >= WARN_EVERY_MS) {
                h->last_warn = now;
                sg_log(SG_LOG_WARN, NULL, "kafka consumer of %s: %s", SG_KAFKA_HEARTBEATS_TOPIC,
                       rd_kafka_message_errstr(m));
            }
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

sg_err_t kafka__hb_new(const sg_kafka_opts_t *ko, const char *group, sg_transport_heartbeat_fn fn,
                       void *ctx, kafka_hb_t **out, char *err, size_t errlen)
{
    /* librdkafka's consumer API wants a group id even for assign(); it is never joined
     * and nothing is committed under it. */
    char gid[512];
    snprintf(gid, sizeof(gid), "group.id=%s.heartbeats", group);
    const char *const defaults[] = {gid, "fetch.wait.max.ms=100", NULL};
    rd_kafka_conf_t *conf = sg_kafka_conf_new(ko, NULL, defaults, err, errlen);
    if (conf == NULL) {
        return SG_ERR_INVALID;
    }
    if (!sg_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) ||
        !sg_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen) ||
        !sg_kafka_conf_set(conf, "enable.partition.eof", "false", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return SG_ERR_INVALID;
    }
    kafka_hb_t *h = sg_calloc(1, sizeof(*h));
    if (h == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    h->fn = fn;
    h->ctx = ctx;
    char why[256] = "";
    h->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (h->consumer == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka consumer of %s: %s", SG_KAFKA_HEARTBEATS_TOPIC, why);
        sg_free(h);
        return SG_ERR_INVALID;
    }
    rd_kafka_poll_set_consumer(h->consumer);
    *out = h;
    return SG_OK;
}

sg_err_t kafka__hb_start(kafka_hb_t *h)
{
    h->started = pthread_create(&h->thread, NULL, hb_main, h) == 0;
    return h->started ? SG_OK : SG_ERR_NOMEM;
}

void kafka__hb_counts(kafka_hb_t *h, uint64_t *received, uint64_t *undecodable)
{
    *received = atomic_load(&h->received);
    *undecodable = atomic_load(&h->undecodable);
}

void kafka__hb_free(kafka_hb_t *h)
{
    if (h == NULL) {
        return;
    }
    atomic_store(&h->stop, true);
    if (h->started) {
        pthread_join(h->thread, NULL);
    }
    rd_kafka_assign(h->consumer, NULL);
    rd_kafka_destroy(h->consumer);
    sg_free(h);
}
