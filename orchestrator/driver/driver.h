/*
 * driver: the imperative shell around the engine. One engine thread owns the SQLite
 * writer and every live instance. Other threads (the REST gateway, worker threads
 * reporting results, timers) hand it work through one queue. It takes a batch of work,
 * applies each item with the pure engine, writes new state, history, attempts, timers
 * and events in ONE transaction, commits (one fsync for the whole batch), and only then
 * acts: dispatches tasks, arms timers, answers callers. Nothing is acknowledged before
 * it is durable. On start it resumes every instance that was not finished.
 *
 * It must never let another thread touch an instance or the writer connection.
 */
#ifndef SG_DRIVER_H
#define SG_DRIVER_H

#include "orchestrator/dsl/dsl.h"
#include "orchestrator/jsonschema/jsonschema.h"
#include "orchestrator/metrics/metrics.h"
#include "orchestrator/store/store.h"
#include "orchestrator/transport/transport.h"

typedef struct sg_driver sg_driver_t;

typedef struct {
    const char *db_path;       /* SQLite file (created if missing) */
    sg_sync_t sync;            /* SG_SYNC_FULL by default */
    const char *workflows_dir; /* loaded at start and on sg_driver_reload; NULL = none */
    const char *data_dir;      /* where activity modules keep their own databases */
    const char *transport;     /* "embedded" (default) or "kafka" */
    bool test_activities;      /* serve the built-in `test` queue */
    const char *chaos;         /* fault injection for the activity modules; NULL = none */
    unsigned threads;          /* worker threads of the embedded transport (default 8) */
    unsigned per_queue_limit;  /* tasks of one queue at once (default: threads) */
    size_t max_batch;          /* work items per transaction (default 2048) */
    /* Settings of the kafka transport (brokers, properties, ...); NULL = defaults. */
    const sg_kafka_opts_t *kafka;
    /* Called on the engine thread once an instance's terminal status is durable:
     * status is its name ("COMPLETED", ...). For metrics, watchers and benchmarks; it must
     * return quickly and must not call back into the driver's blocking functions. */
    void (*on_finish)(void *ctx, const char *id, const char *status, uint64_t created_ms,
                      uint64_t finished_ms);
    void *finish_ctx;
} sg_driver_opts_t;

/* Starts the driver: opens the store, loads definitions (stored ones and the folder),
 * resumes unfinished instances, starts the transport and the engine thread. */
sg_err_t sg_driver_start(const sg_driver_opts_t *opts, sg_driver_t **out, char *err, size_t errlen);
/* Graceful stop: refuses new work, finishes the batch in hand, stops the transport and
 * joins the engine thread. Work still queued is durable and resumes at the next start.
 * NULL is a no-op. Not from the engine thread or a result callback. */
void sg_driver_stop(sg_driver_t *d);

typedef struct {
    char id[32];
    bool created; /* false: the idempotency key named an existing instance */
} sg_start_result_t;

/* Called on the engine thread once the start is durable (rc SG_OK) or refused. */
typedef void (*sg_start_fn)(void *ctx, sg_err_t rc, const sg_start_result_t *res);

/*
 * Starts a saga of workflow (version 0 = the latest). input_json must be a JSON object
 * text; it is validated against the definition's input schema in the calling thread
 * (errors in errs, SG_ERR_INVALID). idem_key (may be NULL) makes the start idempotent.
 * The blocking form returns once the instance is durable. SG_ERR_NOT_FOUND: no such
 * workflow; SG_ERR_STATE: stopping. Any thread but the engine thread.
 */
sg_err_t sg_driver_start_saga(sg_driver_t *d, const char *workflow, int64_t version,
                              const char *input_json, const char *idem_key, sg_start_result_t *res,
                              sg_jsonschema_errors_t *errs);
/* The asynchronous form: validation errors return at once (cb not called); otherwise cb
 * is called exactly once, on the engine thread. */
sg_err_t sg_driver_start_saga_async(sg_driver_t *d, const char *workflow, int64_t version,
                                    const char *input_json, const char *idem_key,
                                    sg_jsonschema_errors_t *errs, sg_start_fn cb, void *ctx);

/* Cancel (compensate) or operator-retry an instance; blocks until durable.
 * SG_ERR_NOT_FOUND: no such live instance; SG_ERR_STATE: not possible in its status. */
sg_err_t sg_driver_cancel(sg_driver_t *d, const char *id);
sg_err_t sg_driver_retry(sg_driver_t *d, const char *id);

/*
 * Dead letters (kafka transport; rows of the store's dlq table, listed with
 * sg_store_dlq_list). Requeue puts the dead letter's original task back on its tasks topic
 * (through sagad's outbox, in the transaction that marks the row "requeued"); discard
 * only marks it "discarded". Both block until durable. SG_ERR_NOT_FOUND: no such row;
 * SG_ERR_STATE: its status does not allow it (requeued is final; new and discarded may be
 * requeued; only new may be discarded); SG_ERR_INVALID: it cannot be requeued by this
 * sagad (no kafka transport, or a queue that names no topic). Any thread but the engine's.
 */
sg_err_t sg_driver_dlq_requeue(sg_driver_t *d, int64_t id);
sg_err_t sg_driver_dlq_discard(sg_driver_t *d, int64_t id);

/* Re-reads the workflows folder: new (name, version) pairs are registered; a changed
 * file that kept its version is refused (logged). Any thread. */
void sg_driver_reload(sg_driver_t *d);

/* A registered definition (version 0 = latest) or NULL. Definitions stay valid until
 * sg_driver_stop. Any thread. */
const sg_def_t *sg_driver_def(sg_driver_t *d, const char *name, int64_t version);
/* Calls cb for every registered definition, any thread. */
void sg_driver_defs(sg_driver_t *d, void (*cb)(void *ctx, const sg_def_t *def), void *ctx);

typedef struct {
    uint64_t started, completed, compensated, failed, compensation_failed;
    uint64_t active; /* instances in memory (RUNNING or COMPENSATING) */
    uint64_t batches, items, dispatched, duplicates;
    uint64_t batch_us_total; /* engine thread time spent in batches (apply + commit) */
    uint64_t queue_depth;    /* items waiting for the engine thread */
} sg_driver_stats_t;

void sg_driver_stats(sg_driver_t *d, sg_driver_stats_t *out);

/* Ready to take work: the engine thread runs, no stop has begun, and its last batch
 * committed (false after a failed commit, e.g. a full disk, until one succeeds). Any
 * thread. */
bool sg_driver_ready(sg_driver_t *d);

/* The driver's metrics registry (sagas per workflow, attempts per activity, batches,
 * queue depths), where the gateway adds its own series for GET /metrics. Valid until
 * sg_driver_stop; NULL if it could not be allocated. Any thread. */
sg_metrics_t *sg_driver_metrics(sg_driver_t *d);

/* Waits until no instance is active and the queue is empty, or timeout_ms passes.
 * Returns true when idle. For tools, tests and benchmarks. */
bool sg_driver_wait_idle(sg_driver_t *d, uint64_t timeout_ms);

#endif
