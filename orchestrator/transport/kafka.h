/*
 * kafka kit: what sagad's kafka transport (kafka.c) and the saga-worker processes
 * (worker/) share: librdkafka configuration from sg_kafka_opts_t, topic names and their
 * creation, a producer that never loses a message, the loop that relays an outbox to
 * Kafka, and the wire messages of schemas/saga.proto (package sagad.wire).
 *
 * Topics:
 *   saga.tasks.<queue>       ActivityTask, key = instance id; sagad -> workers
 *   saga.results             ActivityResult, key = instance id; workers -> sagad
 *   saga.heartbeats          ActivityHeartbeat, key = instance id; workers -> sagad
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
#include <stdatomic.h>

#include "orchestrator/transport/transport.h"

#define SG_KAFKA_RESULTS_TOPIC "saga.results"
#define SG_KAFKA_HEARTBEATS_TOPIC "saga.heartbeats"
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
/* The same; missing[i] (missing may be NULL) says whether names[i] did not exist before
 * (on SG_OK: this call created it). */
sg_err_t sg_kafka_topics_create_ex(const sg_kafka_opts_t *o, const char *const *names, size_t n,
                                   int timeout_ms, bool *missing, char *err, size_t errlen);

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

/* ---- an outbox relay: rows of an outbox onto Kafka, then deleted (kafka_relay.c) ---- */

/*
 * One thread that moves the rows of one or more outboxes (tables written in the
 * transaction of the change that causes them) to Kafka, in rounds, outbox by outbox:
 * copy up to a page of rows out (fetch), produce them in order (send), wait until every
 * one sent was reported on (sg_kafka_relay_reported from the delivery callback), then
 * delete what is on Kafka (remove). A row is never deleted before its report; a crash in
 * between publishes it again (consumers dedupe). A row send refused waits, with the rows
 * after it, for a later round: what is deleted is always a prefix of what was fetched, so
 * order is kept. Rounds run at start, when kicked, after a full page that was all
 * deleted, and every idle_ms. sagad's outbox (driver/outbox.c) and saga-worker's event
 * relay (worker/relay.c) use it.
 */
typedef struct sg_kafka_relay sg_kafka_relay_t;
typedef struct sg_kafka_relay_batch sg_kafka_relay_batch_t;

/* One row copied out of an outbox (its strings are the relay's, valid for the round). */
typedef struct {
    int64_t id;  /* the outbox's own: row id, sequence number */
    char *topic; /* NULL: nothing to produce (a row to drop), deleted with the others */
    char *key;   /* NULL: none */
    void *value;
    size_t len;
} sg_kafka_relay_msg_t;

/* What became of one outbox's batch; remove() deletes msgs[0..done). */
typedef struct {
    const sg_kafka_relay_msg_t *msgs; /* as fetched, oldest first */
    size_t n;
    size_t done;      /* a prefix: reported on (delivered or dropped), or without topic */
    size_t delivered; /* reports of the round that the broker has it */
    size_t dropped;   /* reports of the round that it can never be delivered */
} sg_kafka_relay_round_t;

typedef struct {
    /* Copies up to max rows of outbox src (0 .. n_outboxes-1), oldest first, into b with
     * sg_kafka_relay_add. Not SG_OK: the outbox is skipped this round (say why: the relay
     * does not log). Relay thread. */
    sg_err_t (*fetch)(void *arg, size_t src, size_t max, sg_kafka_relay_batch_t *b);
    /* Produces m without blocking for long. SG_OK: sg_kafka_relay_reported follows once;
     * otherwise no report comes and m waits, with the rest of the batch, for a later
     * round. Relay thread. */
    sg_err_t (*send)(void *arg, const sg_kafka_relay_msg_t *m);
    /* Deletes rd->msgs[0..rd->done) (done > 0) from outbox src. SG_OK when they are gone.
     * Relay thread. */
    sg_err_t (*remove)(void *arg, size_t src, const sg_kafka_relay_round_t *rd);
    /* Optional: before each round but the last (stop_wait_ms). Relay thread. */
    void (*before_round)(void *arg);
    void *arg;
    size_t n_outboxes;     /* fetch's src goes from 0 to n_outboxes - 1 */
    size_t page;           /* rows per outbox and round; 0 = 256 */
    unsigned idle_ms;      /* a round at least this often; 0 = 1000 */
    unsigned stop_wait_ms; /* at stop: 0 = abandon a round waiting for reports (its rows
                            * stay); else wait up to this long for them, then run a last
                            * round (what the last moments wrote) */
} sg_kafka_relay_opts_t;

/* A relay, not started yet: reports and kicks are fine already. SG_ERR_NOMEM. Any thread. */
sg_err_t sg_kafka_relay_new(const sg_kafka_relay_opts_t *opts, sg_kafka_relay_t **out);
/* Starts the thread (its first round at once). SG_ERR_INTERNAL when it cannot. */
sg_err_t sg_kafka_relay_start(sg_kafka_relay_t *r);
/* Copies a row into b. SG_ERR_LIMIT when b holds max rows already; SG_ERR_NOMEM (not
 * added). Only within fetch (on any thread, while fetch waits for it). */
sg_err_t sg_kafka_relay_add(sg_kafka_relay_batch_t *b, int64_t id, const char *topic,
                            const char *key, const void *value, size_t len);
/* A message sent was reported on: rc SG_OK (the broker has it) or not (it can never be
 * delivered: dropped). Call it once per send() that returned SG_OK. Any thread. */
void sg_kafka_relay_reported(sg_kafka_relay_t *r, sg_err_t rc);
/* Something was written to an outbox: a round soon. NULL is fine. Any thread. */
void sg_kafka_relay_kick(sg_kafka_relay_t *r);
/* Stops the thread (see stop_wait_ms) and joins it. NULL or not started is fine. */
void sg_kafka_relay_stop(sg_kafka_relay_t *r);
/* After stop, once no report can come any more. NULL is fine. */
void sg_kafka_relay_free(sg_kafka_relay_t *r);

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

/* Encodes a heartbeat of the running task as an ActivityHeartbeat (traceparent computed,
 * details NULL = none). SG_ERR_INVALID when instance_id or step_id is NULL; SG_ERR_NOMEM. */
sg_err_t sg_wire_heartbeat_encode(const sg_task_t *task, const char *worker_id, const char *details,
                                  uint64_t sent_ms, uint8_t **out, size_t *len);

/* A decoded ActivityHeartbeat; its strings live as long as the struct. */
typedef struct {
    sg_task_heartbeat_t hb; /* details NULL when empty or not a JSON text */
    const char *step_id, *idempotency_key, *traceparent;
} sg_wire_heartbeat_t;

/* Decodes and validates an ActivityHeartbeat (the task's id checks; a worker id of printable
 * ASCII). Details that are no JSON text (or longer than SG_WIRE_DETAILS_MAX) are dropped,
 * the heartbeat kept. On failure writes the reason to err: SG_ERR_INVALID or SG_ERR_NOMEM. */
sg_err_t sg_wire_heartbeat_decode(const void *data, size_t len, sg_wire_heartbeat_t **out,
                                  char *err, size_t errlen);
void sg_wire_heartbeat_free(sg_wire_heartbeat_t *w);
#define SG_WIRE_DETAILS_MAX 4096u

/* ---- heartbeats of running tasks (saga-worker; kafka_heartbeat.c) ---- */

typedef struct sg_kafka_beats sg_kafka_beats_t;
typedef struct sg_kafka_beat sg_kafka_beat_t;

/*
 * One ticker thread and one lossy producer (acks=1, not idempotent: heartbeats are
 * at-most-once, a failed one is dropped) for every running task of a process. *stop_flag
 * (may be NULL) true makes every heartbeat_fn answer false (graceful stop). Nothing is
 * sent before sg_kafka_beats_add. On failure one line in err. Any thread.
 */
sg_err_t sg_kafka_beats_new(const sg_kafka_opts_t *o, const char *worker_id,
                            const atomic_bool *stop_flag, sg_kafka_beats_t **out, char *err,
                            size_t errlen);
/*
 * The handler of task is about to run: when task->heartbeat_ms > 0, sends its first
 * heartbeat now, then one every heartbeat_ms/3 (at least SG_KAFKA_BEAT_MIN_MS apart) with
 * the last details the handler gave, and sets task->heartbeat_fn/_arg for
 * sg_task_heartbeat. task and its strings must stay valid until sg_kafka_beats_remove.
 * NULL (and task untouched) when heartbeat_ms is 0 or memory ran out: the task runs
 * without heartbeats. Any thread.
 */
sg_kafka_beat_t *sg_kafka_beats_add(sg_kafka_beats_t *b, sg_task_t *task);
/* The handler returned: no heartbeat of it is sent once this returns (call it before the
 * result is produced). Clears task->heartbeat_fn. beat may be NULL. Any thread. */
void sg_kafka_beats_remove(sg_kafka_beats_t *b, sg_kafka_beat_t *beat);
/* Heartbeats handed to Kafka, acknowledged, and failed (dropped) so far. */
void sg_kafka_beats_counts(sg_kafka_beats_t *b, uint64_t *sent, uint64_t *acked, uint64_t *failed);
/* Stops the ticker and drops what was not sent. Every beat must have been removed. NULL
 * is fine. */
void sg_kafka_beats_free(sg_kafka_beats_t *b);
#define SG_KAFKA_BEAT_MIN_MS 10u

#endif
