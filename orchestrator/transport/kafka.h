/*
 * kafka kit: what sagad's kafka transport (kafka.c) and the saga-worker processes
 * (worker/) share: librdkafka configuration from sg_kafka_opts_t, topic names and their
 * creation, a producer that never loses a message, and the wire messages of
 * schemas/saga.proto (package sagad.wire).
 *
 * Topics:
 *   saga.tasks.<queue>       ActivityTask, key = instance id; sagad -> workers
 *   saga.results             ActivityResult, key = instance id; workers -> sagad
 *   saga.tasks.<queue>.dlq   dead letters: the task's original bytes + sagad.dlq.* headers
 *   <event type>             domain events ("payment.processed"): the bytes of the event's
 *                            message of schemas/events.proto, key = correlation id
 *
 * It must never touch sagad's store or engine, and never exit the process: a broker
 * outage or a fatal producer error is logged and survived.
 */
#ifndef SG_KAFKA_H
#define SG_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "orchestrator/transport/transport.h"

#define SG_KAFKA_RESULTS_TOPIC "saga.results"
#define SG_KAFKA_TASKS_PREFIX "saga.tasks."
#define SG_KAFKA_DLQ_SUFFIX ".dlq"
#define SG_KAFKA_DEFAULT_BROKERS "127.0.0.1:9092"
#define SG_KAFKA_DEFAULT_PARTITIONS 6u
/* Longest topic name Kafka accepts. */
#define SG_KAFKA_TOPIC_MAX 249u

/* ---- configuration ---- */

/*
 * A new librdkafka configuration: bootstrap.servers, client.id (NULL: o's, else
 * "sagad"), librdkafka's log lines through sg_log, then defaults (a NULL-terminated list
 * of "key=value", may be NULL), then o->props, which win over both. NULL with one line
 * in err when a property is unknown or invalid. The caller owns the result
 * (rd_kafka_conf_destroy, or rd_kafka_new takes it). o may be NULL. Any thread.
 */
rd_kafka_conf_t *sg_kafka_conf_new(const sg_kafka_opts_t *o, const char *client_id,
                                   const char *const *defaults, char *err, size_t errlen);

/* Sets key=value on conf; false with one line in err. */
bool sg_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                       size_t errlen);

/*
 * Reads a librdkafka properties file (`key = value` lines, '#' comments) and appends its
 * properties to *props, a NULL-terminated array of "key=value" strings (NULL = empty).
 * On failure writes "FILE:LINE: ..." to err and returns SG_ERR_IO/SG_ERR_INVALID/
 * SG_ERR_NOMEM; *props keeps what was appended so far. Free with sg_kafka_props_free.
 */
sg_err_t sg_kafka_props_read(const char *path, char ***props, char *err, size_t errlen);
/* Appends one "key=value" (copied) to *props. SG_ERR_INVALID without '=', SG_ERR_NOMEM. */
sg_err_t sg_kafka_props_add(char ***props, const char *key_value);
void sg_kafka_props_free(char **props);

/* ---- topics ---- */

/* True when queue[0..len) is a valid queue part of a topic name: 1..200 characters of
 * [A-Za-z0-9_-]. */
bool sg_kafka_queue_valid(const char *queue, size_t len);
/* "saga.tasks.<queue>" (dlq false) or "saga.tasks.<queue>.dlq" into buf; false when the
 * queue is not valid or buf too small. */
bool sg_kafka_task_topic(const char *queue, size_t len, bool dlq, char *buf, size_t buflen);

/*
 * Creates the topics of names[0..n) that do not exist yet, with o's partitions and
 * replication. Blocks up to timeout_ms. SG_OK when every topic exists afterwards;
 * otherwise one line in err (the first failure) and SG_ERR_IO. Any thread.
 */
sg_err_t sg_kafka_topics_create(const sg_kafka_opts_t *o, const char *const *names, size_t n,
                                int timeout_ms, char *err, size_t errlen);

/* ---- a producer that never loses a message ---- */

typedef struct sg_kafka_producer sg_kafka_producer_t;

/*
 * Called once per message on the producer's own thread, without its lock held:
 * rc = SG_OK once the broker acknowledged it (acks=all, idempotent), or SG_ERR_INVALID
 * when Kafka can never take it (too large, invalid topic): it is dropped and logged.
 * It may call sg_kafka_producer_send; never _flush or _free.
 */
typedef void (*sg_kafka_delivered_fn)(void *arg, void *opaque, sg_err_t rc);

typedef struct {
    const char *name;
    const void *value;
    size_t len;
} sg_kafka_header_t;

typedef struct {
    uint64_t sent;      /* accepted by send */
    uint64_t delivered; /* acknowledged */
    uint64_t retried;   /* produced again after a failed delivery report */
    uint64_t dropped;   /* undeliverable (delivered_fn got SG_ERR_INVALID) */
    uint64_t recreated; /* producers recreated after a fatal error */
} sg_kafka_producer_stats_t;

/*
 * Starts an idempotent producer (enable.idempotence=true, acks=all) and its polling
 * thread. Every message is kept in memory until its delivery report says the broker
 * has it; a failed report produces it again, and a fatal error of the producer (which
 * librdkafka 2.0.2's idempotent producer can raise after a disconnect) destroys it and
 * produces everything unacknowledged with a new one. Messages may therefore reach their
 * topic twice and out of order: consumers dedupe. At most cap messages (0 = 1,000,000)
 * are kept. fn may be NULL. On failure writes one line to err.
 */
sg_err_t sg_kafka_producer_new(const sg_kafka_opts_t *o, const char *client_id, size_t cap,
                               sg_kafka_delivered_fn fn, void *arg, sg_kafka_producer_t **out,
                               char *err, size_t errlen);

/*
 * Queues a copy of the message (key may be NULL; headers are copied too). Never blocks
 * for long. SG_OK: fn will be called for it once (unless _free drops it first);
 * SG_ERR_LIMIT at the cap; SG_ERR_STATE once _free began; SG_ERR_NOMEM. Any thread.
 */
sg_err_t sg_kafka_producer_send(sg_kafka_producer_t *p, const char *topic, const void *key,
                                size_t key_len, const void *value, size_t value_len,
                                const sg_kafka_header_t *headers, size_t n_headers, void *opaque);

/* Messages sent and not yet acknowledged or dropped. Any thread. */
size_t sg_kafka_producer_pending(sg_kafka_producer_t *p);

/* Waits until nothing is pending or timeout_ms passed; true when nothing is pending.
 * Any thread but the producer's (never from fn). */
bool sg_kafka_producer_flush(sg_kafka_producer_t *p, uint64_t timeout_ms);

void sg_kafka_producer_stats(sg_kafka_producer_t *p, sg_kafka_producer_stats_t *out);

/* Stops the thread and destroys the producer, DROPPING what is still pending (without
 * calling fn): flush first to keep it. p may be NULL. Never from fn. */
void sg_kafka_producer_free(sg_kafka_producer_t *p);

/* Tests: makes librdkafka raise a fatal error on the current producer, as a broken
 * idempotent producer would. */
void sg_kafka_producer_test_fatal(sg_kafka_producer_t *p);

/* ---- wire messages (schemas/saga.proto) ---- */

/* W3C traceparent of a task: "00-" trace id (from the instance id, so one trace per saga)
 * "-" parent id (from the idempotency key and attempt) "-01". */
void sg_wire_traceparent(const sg_task_t *task, char out[56]);

/* Encodes task as an ActivityTask (correlation id = instance id, traceparent as above,
 * dispatched_ms = now_ms). *out is sg_malloc'ed. SG_ERR_INVALID when a required field
 * (instance_id, step_id, activity, idempotency_key) is NULL; SG_ERR_NOMEM. */
sg_err_t sg_wire_task_encode(const sg_task_t *task, uint64_t now_ms, uint8_t **out, size_t *len);

/* A decoded ActivityTask: task's strings live as long as the struct. */
typedef struct {
    sg_task_t task;
    const char *correlation_id;
    const char *traceparent;
    uint64_t dispatched_ms;
} sg_wire_task_t;

/*
 * Decodes and validates an ActivityTask (instance id of 1..31 characters, step id,
 * activity, idempotency key present, attempt >= 1, input without NUL bytes). On failure
 * writes the reason to err and returns SG_ERR_INVALID (or SG_ERR_NOMEM); *out untouched.
 */
sg_err_t sg_wire_task_decode(const void *data, size_t len, sg_wire_task_t **out, char *err,
                             size_t errlen);
void sg_wire_task_free(sg_wire_task_t *w);

/* Encodes the result of task as an ActivityResult. traceparent may be NULL (computed). */
sg_err_t sg_wire_result_encode(const sg_task_t *task, const char *traceparent,
                               const sg_task_result_t *res, const char *worker_id,
                               uint64_t started_ms, uint64_t finished_ms, uint8_t **out,
                               size_t *len);

/* A decoded ActivityResult: the task's identifying fields (input NULL) and the result;
 * both live as long as the struct. */
typedef struct {
    sg_task_t task;
    sg_task_result_t res;
    const char *worker_id;
    const char *traceparent;
    uint64_t started_ms, finished_ms;
} sg_wire_result_t;

/* Decodes and validates an ActivityResult (the task's checks, plus a known outcome).
 * A failure without an error code gets "saga.unspecified_error". */
sg_err_t sg_wire_result_decode(const void *data, size_t len, sg_wire_result_t **out, char *err,
                               size_t errlen);
void sg_wire_result_free(sg_wire_result_t *w);

#endif
