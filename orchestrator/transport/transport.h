/*
 * transport: how sagad hands tasks to activity handlers and hears their results. One
 * interface, several implementations registered in the static table of transport.c:
 * "embedded" (a worker pool inside sagad) and "kafka" (saga.tasks.<queue> topics and
 * saga-worker processes; see kafka.c).
 *
 * Delivery is at-least-once and results may arrive in any order, late, or (after a
 * restart) never: the orchestrator keeps every dispatched task durable in its outbox and
 * dispatches it again after a restart, and handlers dedupe on the idempotency key (see
 * activities/activity.h). A transport must never touch the store or the engine; it
 * only calls on_result.
 */
#ifndef SG_TRANSPORT_H
#define SG_TRANSPORT_H

#include "activities/activity.h"

typedef struct sg_transport sg_transport_t;

/*
 * Called once per dispatched task with its result, on a worker thread (never the
 * thread that called dispatch, never after stop() returned). `task` is the transport's
 * copy and `result` the transport's; both are valid during the call only: copy what
 * the engine needs and hand it to the engine thread. It may call dispatch(); it must
 * not call stop() and should not block, since the worker (and, for the embedded
 * transport, its queue's concurrency slot) is held until it returns.
 */
typedef void (*sg_transport_result_fn)(void *ctx, const sg_task_t *task,
                                       const sg_task_result_t *result);

/*
 * A running task's heartbeat: the worker holding it is alive (its lease), with the
 * handler's last progress. Everything is the transport's and valid during the call only.
 */
typedef struct {
    const char *instance_id;
    uint32_t step; /* index of the step in its definition */
    uint32_t attempt;
    bool compensation;
    const char *worker_id; /* who runs it: "host:pid" of a saga-worker, "sagad" embedded */
    const char *details;   /* the handler's last sg_task_heartbeat() JSON; NULL = none */
    uint64_t sent_ms;      /* when the worker sent it (its clock) */
} sg_task_heartbeat_t;

/* Called for each heartbeat of a task whose heartbeat_ms is not 0, on a transport thread
 * (never dispatch's caller, never after stop() returned). At-most-once and unordered
 * (a lost heartbeat only makes the attempt time out sooner); must not block. */
typedef void (*sg_transport_heartbeat_fn)(void *ctx, const sg_task_heartbeat_t *hb);

/* Receives one domain event of the module serving queue (see events_peek); false stops. */
typedef bool (*sg_transport_event_fn)(void *arg, const char *queue, const sg_domain_event_t *ev);

/*
 * A dead letter: a task message a worker gave up on (it could not be decoded, or it was
 * started too often without finishing), as read back from saga.tasks.<queue>.dlq.
 * Everything is the transport's and valid during the callback only. Text fields are
 * printable ASCII (the transport replaces anything else: they come from outside).
 */
typedef struct {
    const char *topic; /* "saga.tasks.payment.dlq" */
    int32_t partition;
    int64_t offset;
    const char *queue; /* "payment" */
    const char *key;   /* the message key, NULL when absent or not printable */
    const void *value; /* the task's original bytes */
    size_t len;
    const char *reason;  /* header sagad.dlq.reason; NULL when absent */
    const char *headers; /* every sagad.dlq.* header as a JSON object text */
    /* from the value when it decodes as an ActivityTask; NULL / 0 otherwise */
    const char *instance_id, *step_id, *idempotency_key, *activity, *input;
    uint32_t attempt;
} sg_dead_letter_t;

/* Called once per dead letter read, on a transport thread (never the caller of dispatch).
 * Copy what is needed; the offset is acknowledged only once results_sync covered it. */
typedef void (*sg_transport_dlq_fn)(void *ctx, const sg_dead_letter_t *dl);

/* A message given to publish() is on its topic (rc SG_OK), or can never be (SG_ERR_INVALID:
 * dropped and logged). On a transport thread; never for a message publish() refused. */
typedef void (*sg_transport_published_fn)(void *ctx, void *opaque, sg_err_t rc);

/* Counters of a transport for /metrics (zero where it has none). */
typedef struct {
    uint64_t results_undecodable;    /* result messages skipped because they did not decode */
    uint64_t producer_recreated;     /* producers replaced after a fatal error */
    uint64_t tasks_unacked;          /* tasks produced, not yet acknowledged by the broker */
    uint64_t dead_letters;           /* dead letters read (and handed to on_dead_letter) */
    uint64_t published;              /* publish() messages the broker acknowledged */
    uint64_t heartbeats_received;    /* heartbeats read and handed to on_heartbeat */
    uint64_t heartbeats_undecodable; /* heartbeat messages skipped: not an ActivityHeartbeat */
} sg_transport_stats_t;

#define SG_TRANSPORT_DEFAULT_THREADS 8u
#define SG_TRANSPORT_DEFAULT_QUEUE_CAP 1000000u

/*
 * Settings of the kafka transport (shared with saga-worker); zero fields take the
 * defaults. The embedded transport ignores them.
 */
typedef struct {
    const char *brokers;      /* bootstrap.servers (default "127.0.0.1:9092") */
    const char *const *props; /* NULL-terminated "key=value" librdkafka properties,
                                 applied after ours (SASL, TLS, tuning); NULL = none */
    unsigned partitions;      /* partitions of topics created when missing (default 6) */
    unsigned replication;     /* their replication factor (default 1) */
    const char *group_id;     /* consumer group reading saga.results (default "sagad") */
    const char *client_id;    /* client.id (default "sagad") */
} sg_kafka_opts_t;

/*
 * Optional, given by the orchestrator: blocks until every result handed to on_result
 * before the call is durable in its store, then returns SG_OK; any other value (stopping,
 * a failed commit) means nothing may be acknowledged yet. A transport that can
 * acknowledge results (Kafka offsets of saga.results) calls it from a thread of its own,
 * never from on_result, and acknowledges only what it covered.
 */
typedef sg_err_t (*sg_transport_sync_fn)(void *ctx);

typedef struct {
    const char *data_dir;      /* where activity modules keep their databases */
    const char *const *queues; /* NULL-terminated queues to serve (NULL = every registered
                                  module except "test") */
    bool test_activities;      /* also serve the test queue (sagad --test-activities) */
    const char *chaos;         /* fault injection for the modules (sagad --chaos); NULL */
    unsigned threads;          /* worker threads in total (0 = default 8) */
    unsigned per_queue_limit;  /* max tasks of one queue running at once (0 = threads) */
    size_t queue_cap;          /* max tasks accepted but not yet started, all queues
                                  together (0 = default 1,000,000) */
    sg_transport_result_fn on_result;
    void *ctx;                         /* passed to on_result and results_sync */
    sg_transport_sync_fn results_sync; /* NULL: results count as durable once on_result
                                          returned (recovery re-dispatches the rest) */
    const sg_kafka_opts_t *kafka;      /* kafka transport only; NULL = defaults */
    /* kafka: read the dead letters of every saga.tasks.<queue>.dlq topic (NULL: do not);
     * their offsets are committed after results_sync, like those of results. */
    sg_transport_dlq_fn on_dead_letter;
    sg_transport_published_fn on_published; /* reports on publish(); NULL: none */
    sg_transport_heartbeat_fn on_heartbeat; /* heartbeats of running tasks; NULL: dropped */
} sg_transport_opts_t;

typedef struct {
    const char *name; /* "embedded", "kafka" */
    /*
     * Starts the transport: opens the activity modules it serves and its threads. On
     * failure writes one line to err and returns non-SG_OK (SG_ERR_INVALID for bad
     * options, SG_ERR_NOT_FOUND for an unknown queue, the module's error when one does
     * not open), and *out is untouched. Any thread; opts and what it points to are not kept.
     */
    sg_err_t (*start)(const sg_transport_opts_t *opts, sg_transport_t **out, char *err,
                      size_t errlen);
    /*
     * Queues a copy of task; never blocks for long. Any thread, including on_result.
     * Returns SG_OK when the task was accepted: on_result will then be called for it
     * exactly once, unless stop() drops it first (embedded; over Kafka a result can also
     * come twice, or never when a worker dead-letters the task: the engine ignores
     * duplicates and times the attempt out). An activity the transport does not
     * serve is accepted and answered with SG_TASK_FATAL "saga.unknown_activity", so the
     * engine learns of it. Otherwise on_result is never called for the task, and:
     *   SG_ERR_LIMIT    the queue cap is reached: keep the task and dispatch it later
     *   SG_ERR_STATE    stop() has begun (the task stays in the outbox for the restart)
     *   SG_ERR_INVALID  task or task->activity is NULL
     *   SG_ERR_NOMEM    out of memory
     * No call may start after stop() returned.
     */
    sg_err_t (*dispatch)(sg_transport_t *t, const sg_task_t *task);
    /*
     * Stops accepting tasks, lets running handlers (and their on_result calls) finish,
     * DROPS tasks still queued without calling on_result for them (they are durable in
     * the orchestrator's outbox and are dispatched again after the restart), joins the
     * threads, closes the modules and frees t. t may be NULL. Never from on_result.
     */
    void (*stop)(sg_transport_t *t);
    /*
     * Optional (NULL when the modules' events go elsewhere, e.g. from saga-worker to
     * Kafka). Calls fn with up to max events waiting in the outboxes of the modules served
     * in this process, oldest first per module, without removing them; fn gets the
     * module's queue name. Any thread, also while tasks run.
     */
    sg_err_t (*events_peek)(sg_transport_t *t, size_t max, sg_transport_event_fn fn, void *arg);
    /* Removes the events of queue up to seq (included): only once they are durable where
     * they went. */
    sg_err_t (*events_ack)(sg_transport_t *t, const char *queue, int64_t upto_seq);
    /* Optional (NULL: not known): tasks accepted but not yet started, for /metrics.
     * Any thread, until stop(). */
    size_t (*queued)(sg_transport_t *t);
    /*
     * Optional (NULL: the transport has nowhere to publish, e.g. embedded). Queues a copy
     * of a message of sagad's outbox for topic (created when missing), key may be NULL.
     * SG_OK: on_published(ctx, opaque, rc) follows once, unless stop() comes first;
     * SG_ERR_LIMIT (full, try later), SG_ERR_STATE (stopping), SG_ERR_NOMEM otherwise.
     * May block while it creates the topic. Any thread but a callback's.
     */
    sg_err_t (*publish)(sg_transport_t *t, const char *topic, const char *key, const void *value,
                        size_t len, void *opaque);
    /* Optional: the transport's counters (see sg_transport_stats_t). Any thread. */
    void (*stats)(sg_transport_t *t, sg_transport_stats_t *out);
} sg_transport_vt_t;

/* The transport called name, from the one static table; NULL if unknown. Any thread. */
const sg_transport_vt_t *sg_transport_find(const char *name);

#endif
