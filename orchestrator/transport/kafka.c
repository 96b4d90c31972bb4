/*
 * kafka transport: sagad's side of the Kafka topics. dispatch() produces an
 * ActivityTask to saga.tasks.<queue>, keyed by instance id, through the producer of
 * kafka_producer.c (idempotent, acks=all, keeps every task until its delivery report,
 * recreated after a fatal error). A consumer thread reads saga.results in the consumer
 * group "sagad" and hands each decoded ActivityResult to on_result; a message that
 * cannot be decoded is counted, logged and skipped.
 *
 * Offsets of saga.results are committed only once the engine has made the results
 * durable: the consumer thread records the next offset per partition after on_result
 * returned, and a commit thread takes a snapshot of those offsets, calls results_sync
 * (which returns once the engine committed a batch behind every result handed over so
 * far) and only then commits the snapshot. Without results_sync the snapshot is
 * committed as soon as on_result returned, which is safe too: recovery re-dispatches
 * every running attempt after a restart and workers answer from their records.
 *
 * Tasks live only in memory here; the attempt rows in sagad's store are their durable
 * record (re-dispatched at recovery), and workers dedupe on the idempotency key.
 * publish() produces sagad's own outbox messages (its workflow events, requeued dead
 * letters) with the same producer and reports each delivery to on_published; the driver
 * deletes the outbox row only then. Dead letters of every saga.tasks.<queue>.dlq are read
 * by kafka_dlq.c (when the driver asks for them) and committed like results; heartbeats
 * of saga.heartbeats by kafka_heartbeat.c (when the driver wants them), never committed.
 * Topics are created when missing (saga.results, saga.heartbeats, and saga.tasks.<queue>
 * and its .dlq for every queue served; a queue seen first in dispatch() gets its topics
 * then) by the admin thread, at once and then until the broker answers: start never waits
 * for the broker, and a task produced before its topic exists waits in the producer
 * (which never lets the broker auto-create it). A broker outage is logged, never fatal.
 *
 * It must never touch the store or the engine, never call on_result from dispatch's
 * thread, and never call it after stop() returned.
 */
#include "orchestrator/log/log.h"
#include "orchestrator/transport/kafka_int.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CREATE_TIMEOUT_MS 5000
#define CREATE_RETRY_MS 1000u
#define CREATE_WARN_EVERY_MS 30000u
#define COMMIT_PACE_MS 50u
#define COMMIT_RETRY_MS 500u
#define STOP_FLUSH_MS 2000u
#define WARN_EVERY_MS 10000u

struct sg_transport {
    sg_kafka_opts_t ko; /* strings below are copies */
    char *brokers, *group, *client;
    char **props;
    sg_kafka_producer_t *prod;
    rd_kafka_t *consumer;
    sg_transport_result_fn on_result;
    sg_transport_sync_fn results_sync;
    sg_transport_published_fn on_published;
    void *ctx;
    kafka_dlq_t *dlq; /* NULL unless on_dead_letter was given */
    kafka_hb_t *hb;   /* NULL unless on_heartbeat was given */

    pthread_mutex_t mu;
    pthread_cond_t cv; /* handed changed, or stop began */
    bool stopping;
    pthread_t consumer_thread, commit_thread, admin_thread;
    bool consumer_started, commit_started, admin_started;
    /* saga.results: the next offset per partition whose results were handed over */
    rd_kafka_topic_partition_list_t *handed;
    bool handed_dirty;
    /* queues whose topics exist or are queued for creation, and topics to create */
    char **queues;
    size_t n_queues, cap_queues;
    char **create;
    size_t n_create, cap_create;
    uint64_t create_after;      /* monotonic ms */
    uint64_t create_warn_after; /* monotonic ms: the next failed creation is logged */
    uint64_t last_warn;
    /* topics publish() created (or found) already */
    char **published_topics;
    size_t n_published_topics, cap_published_topics;

    _Atomic uint64_t dispatched, results, undecodable, commits;
    _Atomic uint64_t published, publishing; /* acknowledged; sent, not yet reported */
};

/* Waits on t->cv for at most ms. Caller holds mu. */
static void wait_ms(sg_transport_t *t, uint64_t ms)
{
    sg_cond_wait_ms(&t->cv, &t->mu, ms);
}

static bool warn_due(sg_transport_t *t)
{
    uint64_t now = sg_mono_ms();
    pthread_mutex_lock(&t->mu);
    bool due = t->last_warn == 0 || now - t->last_warn >= WARN_EVERY_MS;
    if (due) {
        t->last_warn = now;
    }
    pthread_mutex_unlock(&t->mu);
    return due;
}

/* ---- topics ---- */

static bool push_str(char ***arr, size_t *n, size_t *cap, const char *s, size_t len)
{
    if (!sg_grow((void **)arr, cap, *n, sizeof(**arr))) {
        return false;
    }
    char *copy = sg_strndup(s, len);
    if (copy == NULL) {
        return false;
    }
    (*arr)[(*n)++] = copy;
    return true;
}

/*
 * Makes sure the topics of queue are known: the first time, queues them for creation.
 * False on OOM (nothing is queued; the producer waits for the topic, or the broker
 * creates it). Caller holds mu.
 */
static bool note_queue_locked(sg_transport_t *t, const char *queue, size_t len)
{
    for (size_t i = 0; i < t->n_queues; i++) {
        if (strlen(t->queues[i]) == len && memcmp(t->queues[i], queue, len) == 0) {
            return true;
        }
    }
    char topic[SG_KAFKA_TOPIC_MAX + 1], dlq[SG_KAFKA_TOPIC_MAX + 1];
    if (!sg_kafka_task_topic(queue, len, false, topic, sizeof(topic)) ||
        !sg_kafka_task_topic(queue, len, true, dlq, sizeof(dlq))) {
        return false;
    }
    pthread_cond_broadcast(&t->cv); /* wakes the admin thread */
    return push_str(&t->queues, &t->n_queues, &t->cap_queues, queue, len) &&
           push_str(&t->create, &t->n_create, &t->cap_create, topic, strlen(topic)) &&
           push_str(&t->create, &t->n_create, &t->cap_create, dlq, strlen(dlq));
}

/* Creates the queued topics (admin thread, or start()). True when none is left. */
static bool create_topics(sg_transport_t *t, int timeout_ms)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n_create;
    char **names = n > 0 ? sg_calloc(n, sizeof(*names)) : NULL;
    for (size_t i = 0; names != NULL && i < n; i++) {
        names[i] = t->create[i];
    }
    bool *missing = n > 0 ? sg_calloc(n, sizeof(*missing)) : NULL;
    if (n > 0 && (names == NULL || missing == NULL)) {
        t->create_after = sg_mono_ms() + CREATE_RETRY_MS; /* out of memory: not in a loop */
    }
    pthread_mutex_unlock(&t->mu);
    if (n == 0 || names == NULL || missing == NULL) {
        sg_free(names);
        sg_free(missing);
        return n == 0;
    }
    char err[512] = "";
    sg_err_t rc = sg_kafka_topics_create_ex(&t->ko, (const char *const *)names, n, timeout_ms,
                                            missing, err, sizeof(err));
    bool results_created = false, dlq_created = false;
    pthread_mutex_lock(&t->mu);
    if (rc == SG_OK) {
        /* The first n entries are those asked for; others may have been queued since.
         * Only a topic made just now makes a consumer subscribe again: doing so for one
         * that existed would only cost it a rebalance. One that another process made
         * meanwhile is found by the consumers' metadata refresh (10 s). */
        for (size_t i = 0; i < n; i++) {
            results_created |= missing[i] && strcmp(t->create[i], SG_KAFKA_RESULTS_TOPIC) == 0;
            size_t len = strlen(t->create[i]), suf = strlen(SG_KAFKA_DLQ_SUFFIX);
            dlq_created |= missing[i] && len > suf &&
                           strcmp(t->create[i] + len - suf, SG_KAFKA_DLQ_SUFFIX) == 0;
            sg_free(t->create[i]);
        }
        memmove(t->create, t->create + n, (t->n_create - n) * sizeof(*t->create));
        t->n_create -= n;
    } else {
        t->create_after = sg_mono_ms() + CREATE_RETRY_MS;
    }
    pthread_mutex_unlock(&t->mu);
    sg_free(names);
    sg_free(missing);
    if (rc != SG_OK && sg_mono_ms() >= t->create_warn_after) {
        /* Every retry would flood the log while the broker is away (or refuses for good). */
        t->create_warn_after = sg_mono_ms() + CREATE_WARN_EVERY_MS;
        sg_log(SG_LOG_WARN, NULL, "kafka: %s; trying again every %u s", err,
               CREATE_RETRY_MS / 1000);
    } else if (results_created && t->consumer != NULL && t->consumer_started) {
        /* A consumer subscribed to a topic that did not exist yet notices it only at its
         * next metadata refresh; subscribing again looks now. */
        rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(sub, SG_KAFKA_RESULTS_TOPIC, RD_KAFKA_PARTITION_UA);
        rd_kafka_subscribe(t->consumer, sub);
        rd_kafka_topic_partition_list_destroy(sub);
    }
    if (rc == SG_OK && dlq_created && t->dlq != NULL) {
        kafka__dlq_resubscribe(t->dlq); /* the regex finds the new topics now */
    }
    return rc == SG_OK;
}

/* ---- results ---- */

/* Records that results of partition up to offset (excluded) were handed over. */
static void mark_handed(sg_transport_t *t, int32_t partition, int64_t next_offset)
{
    pthread_mutex_lock(&t->mu);
    rd_kafka_topic_partition_t *tp =
        rd_kafka_topic_partition_list_find(t->handed, SG_KAFKA_RESULTS_TOPIC, partition);
    if (tp == NULL) {
        tp = rd_kafka_topic_partition_list_add(t->handed, SG_KAFKA_RESULTS_TOPIC, partition);
    }
    if (next_offset > tp->offset) {
        tp->offset = next_offset;
        t->handed_dirty = true;
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
}

static void handle_result(sg_transport_t *t, const rd_kafka_message_t *m)
{
    sg_wire_result_t *w = NULL;
    char why[256] = "";
    if (sg_wire_result_decode(m->payload, m->len, &w, why, sizeof(why)) == SG_OK) {
        atomic_fetch_add(&t->results, 1);
        t->on_result(t->ctx, &w->task, &w->res);
        sg_wire_result_free(w);
    } else {
        uint64_t n = atomic_fetch_add(&t->undecodable, 1) + 1;
        sg_log(SG_LOG_WARN, NULL,
               "kafka: %s partition %d offset %lld: %s; skipped (%llu undecodable so far)",
               SG_KAFKA_RESULTS_TOPIC, (int)m->partition, (long long)m->offset, why,
               (unsigned long long)n);
    }
    mark_handed(t, m->partition, m->offset + 1);
}

static void *consumer_main(void *arg)
{
    sg_transport_t *t = arg;
    for (;;) {
        pthread_mutex_lock(&t->mu);
        bool stop = t->stopping;
        pthread_mutex_unlock(&t->mu);
        if (stop) {
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(t->consumer, 100);
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            handle_result(t, m);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && warn_due(t)) {
            sg_log(SG_LOG_WARN, NULL, "kafka consumer of %s: %s", SG_KAFKA_RESULTS_TOPIC,
                   rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    /* Leaves the group now rather than after the session timeout. */
    rd_kafka_consumer_close(t->consumer);
    return NULL;
}

/* Commits what the engine has made durable (see the top of the file): the offsets of
 * saga.results and those of the dead letters, behind one results_sync. */
static void *commit_main(void *arg)
{
    sg_transport_t *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stopping) {
        rd_kafka_topic_partition_list_t *snap = NULL, *dsnap = NULL;
        if (t->handed_dirty) {
            snap = rd_kafka_topic_partition_list_copy(t->handed);
            t->handed_dirty = snap == NULL; /* out of memory: the next round tries */
        }
        pthread_mutex_unlock(&t->mu);
        dsnap = t->dlq != NULL ? kafka__dlq_take(t->dlq) : NULL;
        if (snap == NULL && dsnap == NULL) {
            pthread_mutex_lock(&t->mu);
            if (!t->stopping) {
                /* Dead letters are rare: their commit may wait this long. */
                wait_ms(t, t->handed_dirty ? COMMIT_RETRY_MS : 500);
            }
            continue;
        }
        sg_err_t rc = t->results_sync != NULL ? t->results_sync(t->ctx) : SG_OK;
        rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (rc == SG_OK && snap != NULL) {
            e = rd_kafka_commit(t->consumer, snap, 0);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR && warn_due(t)) {
                sg_log(SG_LOG_WARN, NULL, "kafka: committing offsets of %s: %s; trying again",
                       SG_KAFKA_RESULTS_TOPIC, rd_kafka_err2str(e));
            }
        }
        if (dsnap != NULL) {
            kafka__dlq_commit(t->dlq, dsnap, rc == SG_OK);
        }
        bool ok = rc == SG_OK && e == RD_KAFKA_RESP_ERR_NO_ERROR;
        if (snap != NULL) {
            rd_kafka_topic_partition_list_destroy(snap);
        }
        pthread_mutex_lock(&t->mu);
        if (ok) {
            atomic_fetch_add(&t->commits, 1);
        } else if (snap != NULL) {
            t->handed_dirty = true;
        }
        if (!t->stopping) {
            /* Paces commits: one per engine batch would be wasteful. */
            wait_ms(t, ok ? COMMIT_PACE_MS : COMMIT_RETRY_MS);
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* Creates topics queued by dispatch() (and those start() could not create), so that
 * neither the consumer nor dispatch ever waits for the admin API. */
static void *admin_main(void *arg)
{
    sg_transport_t *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stopping) {
        uint64_t now = sg_mono_ms();
        if (t->n_create > 0 && now >= t->create_after) {
            pthread_mutex_unlock(&t->mu);
            create_topics(t, CREATE_TIMEOUT_MS);
            pthread_mutex_lock(&t->mu);
            continue;
        }
        wait_ms(t, t->n_create > 0 ? t->create_after - now : 1000);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- dispatch ---- */

/* A task no worker can ever take (its activity is not "queue.operation" with a valid
 * queue): answered with a fatal result through saga.results, like any other. */
static sg_err_t answer_unknown(sg_transport_t *t, const sg_task_t *task)
{
    sg_task_result_t res = {0};
    sg_task_fail(&res, SG_TASK_FATAL, "saga.unknown_activity",
                 "activity \"%s\" is not of the form queue.operation with a queue of "
                 "[A-Za-z0-9_-]",
                 task->activity);
    uint64_t now = sg_now_ms();
    uint8_t *buf = NULL;
    size_t len = 0;
    sg_err_t rc = sg_wire_result_encode(task, NULL, &res, "sagad", now, now, &buf, &len);
    sg_task_result_fini(&res);
    if (rc != SG_OK) {
        return rc;
    }
    rc = sg_kafka_producer_send(t->prod, SG_KAFKA_RESULTS_TOPIC, task->instance_id,
                                strlen(task->instance_id), buf, len, NULL, 0, NULL);
    sg_free(buf);
    return rc;
}

static sg_err_t kafka_dispatch(sg_transport_t *t, const sg_task_t *task)
{
    if (t == NULL || task == NULL || task->activity == NULL || task->instance_id == NULL) {
        return SG_ERR_INVALID;
    }
    size_t qlen = 0;
    const char *op = sg_activity_split(task->activity, &qlen);
    char topic[SG_KAFKA_TOPIC_MAX + 1];
    pthread_mutex_lock(&t->mu);
    bool stopping = t->stopping;
    bool valid =
        op != NULL && sg_kafka_task_topic(task->activity, qlen, false, topic, sizeof(topic));
    if (valid && !stopping) {
        note_queue_locked(t, task->activity, qlen);
    }
    pthread_mutex_unlock(&t->mu);
    if (stopping) {
        return SG_ERR_STATE;
    }
    if (!valid) {
        return answer_unknown(t, task);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    sg_err_t rc = sg_wire_task_encode(task, sg_now_ms(), &buf, &len);
    if (rc != SG_OK) {
        return rc;
    }
    rc = sg_kafka_producer_send(t->prod, topic, task->instance_id, strlen(task->instance_id), buf,
                                len, NULL, 0, NULL);
    sg_free(buf);
    if (rc == SG_OK) {
        atomic_fetch_add(&t->dispatched, 1);
    }
    return rc;
}

/* ---- publish: sagad's outbox ---- */

/* The producer's thread: a message is on Kafka (or never will be). Tasks are produced
 * with a NULL opaque; publications never are (see kafka_publish). */
static void delivered(void *arg, void *opaque, sg_err_t rc)
{
    sg_transport_t *t = arg;
    if (opaque == NULL) {
        return;
    }
    atomic_fetch_sub(&t->publishing, 1);
    if (rc == SG_OK) {
        atomic_fetch_add(&t->published, 1);
    }
    if (t->on_published != NULL) {
        t->on_published(t->ctx, opaque, rc);
    }
}

/* Creates topic the first time it is published to, so that it gets our partitions and
 * replication rather than the broker's defaults. On failure the admin thread takes it
 * over (until the broker answers); the message waits in the producer meanwhile. */
static void ensure_topic(sg_transport_t *t, const char *topic)
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n_published_topics; i++) {
        if (strcmp(t->published_topics[i], topic) == 0) {
            pthread_mutex_unlock(&t->mu);
            return;
        }
    }
    pthread_mutex_unlock(&t->mu);
    char err[512] = "";
    const char *names[] = {topic};
    if (sg_kafka_topics_create(&t->ko, names, 1, CREATE_TIMEOUT_MS, err, sizeof(err)) != SG_OK) {
        if (warn_due(t)) {
            sg_log(SG_LOG_WARN, NULL, "kafka: %s; publishing anyway", err);
        }
        pthread_mutex_lock(&t->mu);
        bool queued = false;
        for (size_t i = 0; i < t->n_create && !queued; i++) {
            queued = strcmp(t->create[i], topic) == 0;
        }
        if (!queued && push_str(&t->create, &t->n_create, &t->cap_create, topic, strlen(topic))) {
            pthread_cond_broadcast(&t->cv); /* wakes the admin thread */
        }
        pthread_mutex_unlock(&t->mu);
        return;
    }
    pthread_mutex_lock(&t->mu);
    push_str(&t->published_topics, &t->n_published_topics, &t->cap_published_topics, topic,
             strlen(topic)); /* on OOM it is simply created again next time */
    pthread_mutex_unlock(&t->mu);
}

static sg_err_t kafka_publish(sg_transport_t *t, const char *topic, const char *key,
                              const void *value, size_t len, void *opaque)
{
    if (t == NULL || topic == NULL || opaque == NULL || strlen(topic) > SG_KAFKA_TOPIC_MAX) {
        return SG_ERR_INVALID;
    }
    pthread_mutex_lock(&t->mu);
    bool stopping = t->stopping;
    pthread_mutex_unlock(&t->mu);
    if (stopping) {
        return SG_ERR_STATE;
    }
    ensure_topic(t, topic);
    atomic_fetch_add(&t->publishing, 1);
    sg_err_t rc = sg_kafka_producer_send(t->prod, topic, key, key != NULL ? strlen(key) : 0, value,
                                         len, NULL, 0, opaque);
    if (rc != SG_OK) {
        atomic_fetch_sub(&t->publishing, 1);
    }
    return rc;
}

/* ---- start / stop ---- */

static void kafka_free(sg_transport_t *t)
{
    if (t->consumer != NULL) {
        rd_kafka_destroy(t->consumer);
    }
    if (t->prod != NULL) {
        /* Tasks still pending are durable as running attempts: re-dispatched at start. */
        if (!sg_kafka_producer_flush(t->prod, STOP_FLUSH_MS)) {
            sg_log(SG_LOG_WARN, NULL,
                   "kafka: %zu tasks not acknowledged by the broker at stop; they are "
                   "dispatched again at the next start",
                   sg_kafka_producer_pending(t->prod));
        }
        sg_kafka_producer_free(t->prod);
    }
    if (t->handed != NULL) {
        rd_kafka_topic_partition_list_destroy(t->handed);
    }
    for (size_t i = 0; i < t->n_queues; i++) {
        sg_free(t->queues[i]);
    }
    for (size_t i = 0; i < t->n_create; i++) {
        sg_free(t->create[i]);
    }
    for (size_t i = 0; i < t->n_published_topics; i++) {
        sg_free(t->published_topics[i]);
    }
    sg_free(t->queues);
    sg_free(t->create);
    sg_free(t->published_topics);
    sg_kafka_props_free(t->props);
    sg_free(t->brokers);
    sg_free(t->group);
    sg_free(t->client);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    sg_free(t);
}

static void kafka_stop(sg_transport_t *t)
{
    if (t == NULL) {
        return;
    }
    pthread_mutex_lock(&t->mu);
    t->stopping = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    /* Results handed over since the last sync are not known to be durable: their
     * offsets stay uncommitted and they are read again at the next start (and ignored
     * as duplicates if they were applied). */
    if (t->commit_started) {
        pthread_join(t->commit_thread, NULL);
    }
    /* Dead letters handed over since the last sync are read again at the next start,
     * and stored once (the store keys them by position). */
    kafka__dlq_free(t->dlq);
    t->dlq = NULL;
    if (t->hb != NULL) {
        uint64_t got = 0, bad = 0;
        kafka__hb_counts(t->hb, &got, &bad);
        sg_log(SG_LOG_INFO, NULL, "kafka: %llu heartbeats read, %llu undecodable skipped",
               (unsigned long long)got, (unsigned long long)bad);
    }
    kafka__hb_free(t->hb); /* on_heartbeat is not called after this */
    t->hb = NULL;
    if (t->consumer_started) {
        pthread_join(t->consumer_thread, NULL);
    }
    if (t->admin_started) {
        pthread_join(t->admin_thread, NULL);
    }
    kafka_free(t);
}

static sg_err_t copy_opts(sg_transport_t *t, const sg_kafka_opts_t *o)
{
    t->brokers = sg_strdup(o != NULL && o->brokers ? o->brokers : SG_KAFKA_DEFAULT_BROKERS);
    t->group = sg_strdup(o != NULL && o->group_id ? o->group_id : "sagad");
    t->client = sg_strdup(o != NULL && o->client_id ? o->client_id : "sagad");
    if (t->brokers == NULL || t->group == NULL || t->client == NULL) {
        return SG_ERR_NOMEM;
    }
    for (size_t i = 0; o != NULL && o->props != NULL && o->props[i] != NULL; i++) {
        sg_err_t rc = sg_kafka_props_add(&t->props, o->props[i]);
        if (rc != SG_OK) {
            return rc;
        }
    }
    t->ko = (sg_kafka_opts_t){.brokers = t->brokers,
                              .props = (const char *const *)t->props,
                              .partitions = o != NULL ? o->partitions : 0,
                              .replication = o != NULL ? o->replication : 0,
                              .group_id = t->group,
                              .client_id = t->client};
    return SG_OK;
}

static sg_err_t make_consumer(sg_transport_t *t, char *err, size_t errlen)
{
    char group[512];
    snprintf(group, sizeof(group), "group.id=%s", t->group);
    const char *const defaults[] = {
        group,
        "auto.offset.reset=earliest",
        /* librdkafka 2.0.2's cooperative-sticky has bugs */
        "partition.assignment.strategy=range",
        /* after a crash the restarted sagad gets saga.results back within 10 s, not 45 */
        "session.timeout.ms=10000",
        "heartbeat.interval.ms=1000",
        /* saga.results made by another process after we subscribed (a saga-worker that
         * came up first) is seen within 10 s, not at the default 5 minutes */
        "topic.metadata.refresh.interval.ms=10000",
        NULL,
    };
    rd_kafka_conf_t *conf = sg_kafka_conf_new(&t->ko, NULL, defaults, err, errlen);
    if (conf == NULL) {
        return SG_ERR_INVALID;
    }
    /* Offsets are ours to commit (commit_main); never automatically. */
    if (!sg_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) ||
        !sg_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return SG_ERR_INVALID;
    }
    char why[256] = "";
    t->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (t->consumer == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka consumer: %s", why);
        return SG_ERR_INVALID;
    }
    rd_kafka_poll_set_consumer(t->consumer);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, SG_KAFKA_RESULTS_TOPIC, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(t->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka: subscribing to %s: %s", SG_KAFKA_RESULTS_TOPIC,
                 rd_kafka_err2str(e));
        return SG_ERR_INVALID;
    }
    return SG_OK;
}

/* The queues whose topics exist from the start: those served, as in embedded mode. */
static sg_err_t note_start_queues(sg_transport_t *t, const sg_transport_opts_t *opts)
{
    bool ok = push_str(&t->create, &t->n_create, &t->cap_create, SG_KAFKA_RESULTS_TOPIC,
                       strlen(SG_KAFKA_RESULTS_TOPIC)) &&
              push_str(&t->create, &t->n_create, &t->cap_create, SG_KAFKA_HEARTBEATS_TOPIC,
                       strlen(SG_KAFKA_HEARTBEATS_TOPIC));
    size_t n_mods = 0;
    const sg_activity_module_t *const *mods = sg_activity_modules(&n_mods);
    for (size_t i = 0; ok && opts->queues != NULL && opts->queues[i] != NULL; i++) {
        ok = note_queue_locked(t, opts->queues[i], strlen(opts->queues[i]));
    }
    for (size_t i = 0; ok && opts->queues == NULL && i < n_mods; i++) {
        bool test = strcmp(mods[i]->queue, "test") == 0;
        if (!test || opts->test_activities) {
            ok = note_queue_locked(t, mods[i]->queue, strlen(mods[i]->queue));
        }
    }
    return ok ? SG_OK : SG_ERR_NOMEM;
}

static sg_err_t start_threads(sg_transport_t *t, char *err, size_t errlen)
{
    /* Our threads (and librdkafka's, made earlier on this thread's mask) must not take
     * the signals that sagad's main thread waits for. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    t->consumer_started = pthread_create(&t->consumer_thread, NULL, consumer_main, t) == 0;
    t->commit_started =
        t->consumer_started && pthread_create(&t->commit_thread, NULL, commit_main, t) == 0;
    t->admin_started =
        t->commit_started && pthread_create(&t->admin_thread, NULL, admin_main, t) == 0;
    bool dlq_ok = t->admin_started && (t->dlq == NULL || kafka__dlq_start(t->dlq) == SG_OK) &&
                  (t->hb == NULL || kafka__hb_start(t->hb) == SG_OK);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!dlq_ok) {
        snprintf(err, errlen, "cannot start the kafka transport's threads");
        return SG_ERR_NOMEM;
    }
    return SG_OK;
}

static sg_err_t kafka_start(const sg_transport_opts_t *opts, sg_transport_t **out, char *err,
                            size_t errlen)
{
    if (opts == NULL || opts->on_result == NULL) {
        snprintf(err, errlen, "the kafka transport needs a result callback");
        return SG_ERR_INVALID;
    }
    sg_transport_t *t = sg_calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->on_result = opts->on_result;
    t->results_sync = opts->results_sync;
    t->on_published = opts->on_published;
    t->ctx = opts->ctx;
    t->handed = rd_kafka_topic_partition_list_new(8);
    sg_err_t rc = t->handed != NULL ? copy_opts(t, opts->kafka) : SG_ERR_NOMEM;
    if (rc == SG_OK) {
        rc = note_start_queues(t, opts);
    }
    if (rc != SG_OK) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    rc = sg_kafka_producer_new(&t->ko, t->client, opts->queue_cap, delivered, t, &t->prod, err,
                               errlen);
    if (rc != SG_OK) {
        goto fail;
    }
    /* The topics are created by the admin thread, at once and then until the broker
     * answers: start never waits for the broker. The consumers subscribe again once
     * they exist; tasks produced before that wait in the producer (see make_producer). */
    rc = make_consumer(t, err, errlen);
    if (rc == SG_OK && opts->on_dead_letter != NULL) {
        rc =
            kafka__dlq_new(&t->ko, t->group, opts->on_dead_letter, opts->ctx, &t->dlq, err, errlen);
    }
    if (rc == SG_OK && opts->on_heartbeat != NULL) {
        rc = kafka__hb_new(&t->ko, t->group, opts->on_heartbeat, opts->ctx, &t->hb, err, errlen);
    }
    if (rc == SG_OK) {
        rc = start_threads(t, err, errlen);
    }
    if (rc != SG_OK) {
        goto fail;
    }
    sg_log(SG_LOG_INFO, NULL, "kafka transport: brokers %s, results group %s, %zu queues",
           t->brokers, t->group, t->n_queues);
    *out = t;
    return SG_OK;
fail:
    kafka_stop(t);
    return rc;
}

/* Tasks not yet acknowledged by the broker: what this process holds (workers' backlogs
 * are theirs to report); publications are counted apart. */
static size_t kafka_queued(sg_transport_t *t)
{
    size_t pending = sg_kafka_producer_pending(t->prod);
    uint64_t publishing = atomic_load(&t->publishing);
    return pending > publishing ? pending - (size_t)publishing : 0;
}

static void kafka_stats(sg_transport_t *t, sg_transport_stats_t *out)
{
    sg_kafka_producer_stats_t ps;
    sg_kafka_producer_stats(t->prod, &ps);
    *out = (sg_transport_stats_t){.results_undecodable = atomic_load(&t->undecodable),
                                  .producer_recreated = ps.recreated,
                                  .tasks_unacked = kafka_queued(t),
                                  .dead_letters = t->dlq != NULL ? kafka__dlq_count(t->dlq) : 0,
                                  .published = atomic_load(&t->published)};
    if (t->hb != NULL) {
        kafka__hb_counts(t->hb, &out->heartbeats_received, &out->heartbeats_undecodable);
    }
}

const sg_transport_vt_t sg_transport_kafka = {
    .name = "kafka",
    .start = kafka_start,
    .dispatch = kafka_dispatch,
    .stop = kafka_stop,
    /* The modules run in saga-worker processes, which publish their events to Kafka. */
    .events_peek = NULL,
    .events_ack = NULL,
    .queued = kafka_queued,
    .publish = kafka_publish,
    .stats = kafka_stats,
};
