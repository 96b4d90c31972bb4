/*
 * kafka dlq: sagad's reader of the dead letters that saga-workers put on
 * saga.tasks.<queue>.dlq (a task that could not be decoded, or that was started too often
 * without finishing). One consumer in the group "<group>.dlq" follows every such topic
 * by regex (so queues that only workers know are covered too) and hands each message to
 * the driver as an sg_dead_letter_t: the original bytes, the sagad.dlq.* headers, and
 * what the bytes say when they decode as an ActivityTask.
 *
 * Offsets are committed only after the driver made the rows durable: the callback returns
 * once its row is committed, the reading thread records the next offset per partition
 * only after that (never past a message it could not hand over), and the transport's
 * commit thread takes those (kafka__dlq_take), waits for results_sync, then commits them
 * (kafka__dlq_commit). A dead letter handed over twice (after a crash) is stored once:
 * the store keys rows by (topic, partition, offset).
 *
 * It must never trust a dead letter (anything may be on the topic): texts are cut and
 * made printable (or, for the input, checked to be UTF-8) before they leave this file.
 */
#include "orchestrator/log/log.h"
#include "orchestrator/transport/kafka_int.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define POLL_MS 100
#define TEXT_MAX 1024u
#define HEADER_PREFIX "sagad.dlq."
#define WARN_EVERY_MS 10000u
#define RETRY_FIRST_MS 10u
#define RETRY_MAX_MS 1000u

struct kafka_dlq {
    rd_kafka_t *consumer;
    sg_transport_dlq_fn fn;
    void *ctx;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    rd_kafka_topic_partition_list_t *handed; /* the next offset per partition handed over */
    bool dirty;                              /* handed moved since the last take */
    uint64_t last_warn;
    _Atomic uint64_t count;
};

/* ---- making outside text safe ---- */

/* A copy of p[0..n) cut to TEXT_MAX bytes, every byte outside printable ASCII as '?'. */
static char *printable(const void *p, size_t n)
{
    n = n < TEXT_MAX ? n : TEXT_MAX;
    char *s = sg_malloc(n + 1);
    for (size_t i = 0; s != NULL && i < n; i++) {
        unsigned char c = ((const unsigned char *)p)[i];
        s[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (s != NULL) {
        s[n] = '\0';
    }
    return s;
}

/* Whether s is well-formed UTF-8 (shortest forms, no surrogates, at most U+10FFFF). */
static bool utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        unsigned n = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
        if ((c >= 0x80 && c < 0xc2) || c > 0xf4) {
            return false;
        }
        unsigned cp = n == 0 ? c : n == 1 ? c & 0x1f : n == 2 ? c & 0x0f : c & 0x07;
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return false; /* also stops at the terminating NUL */
            }
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        p += n + 1;
    }
    return true;
}

/* ---- one dead letter ---- */

typedef struct {
    sg_dead_letter_t dl;
    char *queue, *key, *reason, *headers;
    char *instance_id, *step_id, *idem_key, *activity, *input;
} letter_t;

static void letter_fini(letter_t *l)
{
    sg_free(l->queue);
    sg_free(l->key);
    sg_free(l->reason);
    sg_free(l->headers);
    sg_free(l->instance_id);
    sg_free(l->step_id);
    sg_free(l->idem_key);
    sg_free(l->activity);
    sg_free(l->input);
}

/* The sagad.dlq.* headers as a JSON object text into l->headers, and the reason among
 * them into l->reason. False on OOM. */
static bool read_headers(const rd_kafka_message_t *m, letter_t *l)
{
    cJSON *obj = cJSON_CreateObject();
    rd_kafka_headers_t *hdrs = NULL;
    bool ok = obj != NULL;
    /* Only the first copy of a header counts; at most 32 are looked at. */
    if (ok && rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name = NULL;
        const void *value = NULL;
        size_t size = 0;
        for (size_t i = 0;
             ok && i < 32 &&
             rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             i++) {
            if (strncmp(name, HEADER_PREFIX, strlen(HEADER_PREFIX)) != 0) {
                continue;
            }
            char *key = printable(name, strlen(name));
            char *v = printable(value != NULL ? value : "", value != NULL ? size : 0);
            ok = key != NULL && v != NULL;
            if (ok && cJSON_GetObjectItemCaseSensitive(obj, key) == NULL) {
                ok = cJSON_AddStringToObject(obj, key, v) != NULL;
                if (ok && l->reason == NULL && strcmp(key, HEADER_PREFIX "reason") == 0) {
                    l->reason = v;
                    v = NULL;
                }
            }
            sg_free(key);
            sg_free(v);
        }
    }
    char *text = ok ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (text != NULL) {
        l->headers = sg_strdup(text);
        cJSON_free(text);
    }
    return l->headers != NULL;
}

/* What the bytes say when they are an ActivityTask; true also when they are not. */
static bool read_task(const rd_kafka_message_t *m, letter_t *l)
{
    sg_wire_task_t *w = NULL;
    char why[64];
    if (sg_wire_task_decode(m->payload, m->len, &w, why, sizeof(why)) != SG_OK) {
        return true; /* poison: the bytes and the headers are all there is */
    }
    const sg_task_t *t = &w->task;
    l->instance_id = printable(t->instance_id, strlen(t->instance_id));
    l->step_id = printable(t->step_id, strlen(t->step_id));
    l->idem_key = printable(t->idempotency_key, strlen(t->idempotency_key));
    l->activity = printable(t->activity, strlen(t->activity));
    bool has_input = t->input != NULL && utf8_ok(t->input);
    l->input = has_input ? sg_strdup(t->input) : NULL;
    bool ok = l->instance_id != NULL && l->step_id != NULL && l->idem_key != NULL &&
              l->activity != NULL && (!has_input || l->input != NULL);
    l->dl.instance_id = l->instance_id;
    l->dl.step_id = l->step_id;
    l->dl.idempotency_key = l->idem_key;
    l->dl.activity = l->activity;
    l->dl.input = l->input;
    l->dl.attempt = t->attempt;
    sg_wire_task_free(w);
    return ok;
}

/* Fills l from m; false on OOM. */
static bool read_letter(const rd_kafka_message_t *m, letter_t *l)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    size_t n = strlen(topic), pre = strlen(SG_KAFKA_TASKS_PREFIX);
    size_t suf = strlen(SG_KAFKA_DLQ_SUFFIX);
    /* The regex guarantees the shape; the queue is what lies between. */
    l->queue = n > pre + suf ? printable(topic + pre, n - pre - suf) : sg_strdup("?");
    bool key_ok = m->key != NULL && m->key_len > 0 && m->key_len <= TEXT_MAX;
    for (size_t i = 0; key_ok && i < m->key_len; i++) {
        unsigned char c = ((const unsigned char *)m->key)[i];
        key_ok = c >= 0x20 && c < 0x7f;
    }
    l->key = key_ok ? printable(m->key, m->key_len) : NULL;
    l->dl = (sg_dead_letter_t){.topic = topic,
                               .partition = m->partition,
                               .offset = m->offset,
                               .queue = l->queue,
                               .key = l->key,
                               .value = m->payload,
                               .len = m->len};
    bool ok = l->queue != NULL && (!key_ok || l->key != NULL) && read_headers(m, l);
    l->dl.reason = l->reason;
    l->dl.headers = l->headers;
    return ok && read_task(m, l);
}

/* ---- the reading thread ---- */

static void mark_handed(kafka_dlq_t *q, const char *topic, int32_t partition, int64_t next)
{
    pthread_mutex_lock(&q->mu);
    rd_kafka_topic_partition_t *tp =
        rd_kafka_topic_partition_list_find(q->handed, topic, partition);
    if (tp == NULL) {
        tp = rd_kafka_topic_partition_list_add(q->handed, topic, partition);
        tp->offset = RD_KAFKA_OFFSET_INVALID;
    }
    if (next > tp->offset) {
        tp->offset = next;
        q->dirty = true;
    }
    pthread_mutex_unlock(&q->mu);
}

static bool warn_due(kafka_dlq_t *q)
{
    uint64_t now = sg_mono_ms();
    bool due = q->last_warn == 0 || now - q->last_warn >= WARN_EVERY_MS;
    if (due) {
        q->last_warn = now; /* the reading thread only */
    }
    return due;
}

static void pause_ms_for(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void handle(kafka_dlq_t *q, const rd_kafka_message_t *m)
{
    letter_t l = {0};
    /* Out of memory: the same message again after a pause, and nothing after it in the
     * meantime (marking a later offset would acknowledge this one too). Stopping gives
     * up without marking: it is read again after the restart. */
    for (unsigned pause = RETRY_FIRST_MS; !read_letter(m, &l);) {
        letter_fini(&l);
        memset(&l, 0, sizeof(l));
        if (pause == RETRY_FIRST_MS) {
            sg_log(SG_LOG_ERROR, NULL,
                   "kafka: %s partition %d offset %lld: out of memory reading a dead letter; "
                   "trying again",
                   rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset);
        }
        if (atomic_load(&q->stop)) {
            return;
        }
        pause_ms_for(pause);
        pause = pause * 2 < RETRY_MAX_MS ? pause * 2 : RETRY_MAX_MS;
    }
    sg_log(SG_LOG_WARN, &(sg_log_ctx_t){.instance = l.dl.instance_id, .step = l.dl.step_id},
           "kafka: dead letter %s partition %d offset %lld: %s", l.dl.topic, (int)m->partition,
           (long long)m->offset, l.dl.reason != NULL ? l.dl.reason : "(no reason given)");
    q->fn(q->ctx, &l.dl);
    atomic_fetch_add(&q->count, 1);
    mark_handed(q, l.dl.topic, m->partition, m->offset + 1);
    letter_fini(&l);
}

static void *dlq_main(void *arg)
{
    kafka_dlq_t *q = arg;
    while (!atomic_load(&q->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(q->consumer, POLL_MS);
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            handle(q, m);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && warn_due(q)) {
            sg_log(SG_LOG_WARN, NULL, "kafka consumer of the dead letters: %s",
                   rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(q->consumer); /* leaves the group now */
    return NULL;
}

/* ---- lifecycle ---- */

static sg_err_t subscribe(kafka_dlq_t *q)
{
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, KAFKA_DLQ_REGEX, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(q->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? SG_OK : SG_ERR_INVALID;
}

sg_err_t kafka__dlq_new(const sg_kafka_opts_t *ko, const char *group, sg_transport_dlq_fn fn,
                        void *ctx, kafka_dlq_t **out, char *err, size_t errlen)
{
    char gid[512];
    snprintf(gid, sizeof(gid), "group.id=%s.dlq", group);
    const char *const defaults[] = {
        gid,
        "auto.offset.reset=earliest",
        "partition.assignment.strategy=range",
        "session.timeout.ms=10000",
        "heartbeat.interval.ms=1000",
        /* a regex subscription sees topics created by workers at the next refresh */
        "topic.metadata.refresh.interval.ms=10000",
        NULL,
    };
    rd_kafka_conf_t *conf = sg_kafka_conf_new(ko, NULL, defaults, err, errlen);
    if (conf == NULL) {
        return SG_ERR_INVALID;
    }
    if (!sg_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) ||
        !sg_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return SG_ERR_INVALID;
    }
    kafka_dlq_t *q = sg_calloc(1, sizeof(*q));
    if (q == NULL || (q->handed = rd_kafka_topic_partition_list_new(8)) == NULL) {
        sg_free(q);
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    pthread_mutex_init(&q->mu, NULL);
    q->fn = fn;
    q->ctx = ctx;
    char why[256] = "";
    q->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (q->consumer == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka consumer of the dead letters: %s", why);
        kafka__dlq_free(q);
        return SG_ERR_INVALID;
    }
    rd_kafka_poll_set_consumer(q->consumer);
    if (subscribe(q) != SG_OK) {
        snprintf(err, errlen, "kafka: cannot subscribe to %s", KAFKA_DLQ_REGEX);
        kafka__dlq_free(q);
        return SG_ERR_INVALID;
    }
    *out = q;
    return SG_OK;
}

sg_err_t kafka__dlq_start(kafka_dlq_t *q)
{
    q->started = pthread_create(&q->thread, NULL, dlq_main, q) == 0;
    return q->started ? SG_OK : SG_ERR_NOMEM;
}

void kafka__dlq_resubscribe(kafka_dlq_t *q)
{
    if (subscribe(q) != SG_OK) {
        sg_log(SG_LOG_WARN, NULL, "kafka: cannot subscribe to %s again", KAFKA_DLQ_REGEX);
    }
}

rd_kafka_topic_partition_list_t *kafka__dlq_take(kafka_dlq_t *q)
{
    pthread_mutex_lock(&q->mu);
    rd_kafka_topic_partition_list_t *l =
        q->dirty ? rd_kafka_topic_partition_list_copy(q->handed) : NULL;
    if (l != NULL) {
        q->dirty = false;
    }
    pthread_mutex_unlock(&q->mu);
    return l;
}

void kafka__dlq_commit(kafka_dlq_t *q, rd_kafka_topic_partition_list_t *l, bool sync)
{
    rd_kafka_resp_err_t e = sync ? rd_kafka_commit(q->consumer, l, 0) : RD_KAFKA_RESP_ERR__STATE;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (sync) {
            sg_log(SG_LOG_WARN, NULL,
                   "kafka: committing offsets of the dead letters: %s; "
                   "trying again",
                   rd_kafka_err2str(e));
        }
        pthread_mutex_lock(&q->mu);
        q->dirty = true;
        pthread_mutex_unlock(&q->mu);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

uint64_t kafka__dlq_count(kafka_dlq_t *q)
{
    return atomic_load(&q->count);
}

void kafka__dlq_free(kafka_dlq_t *q)
{
    if (q == NULL) {
        return;
    }
    atomic_store(&q->stop, true);
    if (q->started) {
        pthread_join(q->thread, NULL);
    }
    if (q->consumer != NULL) {
        rd_kafka_destroy(q->consumer);
    }
    rd_kafka_topic_partition_list_destroy(q->handed);
    pthread_mutex_destroy(&q->mu);
    sg_free(q);
}
