/*
 * activities: the interface between a transport and the code that does a saga step's
 * work. A task ("queue.operation" + JSON input + idempotency key) goes in, a result
 * (ok with JSON output, retryable failure, or fatal failure) comes out. The same
 * modules run inside sagad (embedded worker pool) and in saga-worker processes (Kafka),
 * so nothing here may know which transport delivered the task.
 *
 * Modules are registered in the one static table of activities/registry.c: a new queue
 * is one file, one table line and its tests. This module must never talk to the
 * orchestrator's store or engine: a handler only sees its task and its own database.
 *
 * The contract every handler keeps (the orchestrator's exactly-once-effect promise
 * rests on it, because dispatch is at-least-once):
 *   - Idempotent on idempotency_key. A redelivered task returns the FIRST recorded
 *     outcome (success with its output, or non-retryable failure) without a second
 *     effect. The key is the same for every attempt of a step, so a retry after a
 *     timeout, whose first attempt may have run after all, cannot repeat the effect.
 *   - Retryable failures are not recorded as final: a retry runs the operation again.
 *     Only return SG_TASK_RETRYABLE when no effect happened (or when one that did is
 *     recorded, so the retry finds it).
 *   - A compensation of an effect that never happened succeeds and does nothing. A
 *     forward task delivered after its compensation should do nothing either (the
 *     late delivery of a timed-out attempt), and say so with a fatal result.
 *   - Invalid input is SG_TASK_FATAL with code "<queue>.invalid_input" and a message
 *     that names the field; retrying cannot fix it.
 *   - The handler gives up at task->deadline_ms with a retryable failure: the engine
 *     has timed the attempt out by then and no longer waits for it.
 */
#ifndef SG_ACTIVITY_H
#define SG_ACTIVITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orchestrator/base/base.h"

typedef enum { SG_TASK_OK, SG_TASK_RETRYABLE, SG_TASK_FATAL } sg_task_outcome_t;

/* One unit of work. All strings are owned by whoever delivered the task and valid only
 * during the handler call; copy what must outlive it. */
typedef struct {
    const char *instance_id;
    const char *step_id;
    uint32_t step;    /* index of the step in its definition (echoed back to the engine) */
    uint32_t attempt; /* 1 = first try; counts forward and compensation attempts separately */
    bool compensation;
    const char *activity; /* "queue.operation" */
    const char *input;    /* JSON text */
    /* "<instance>/<step_id>" forward, "<instance>/<step_id>/compensate" for the
     * compensation: the SAME for every attempt, so a retry after a timeout cannot repeat
     * an effect. */
    const char *idempotency_key;
    uint64_t deadline_ms; /* epoch ms; the handler should give up after it; 0 = none */
    /*
     * The step's heartbeat timeout (workflow `heartbeat:`), 0 = none. While a task with
     * one runs, the transport tells sagad every third of it that the task is still held
     * (its lease): a worker that dies is noticed after heartbeat_ms, not after the whole
     * attempt timeout. A handler adds progress with sg_task_heartbeat().
     */
    uint64_t heartbeat_ms;
    /* Set by the transport for the handler call (NULL: no heartbeats here): records the
     * handler's progress (JSON text, copied) for the next heartbeat. Returns false when
     * the attempt is over for the orchestrator (past its deadline, or the transport is
     * stopping): the handler should give up. Call it through sg_task_heartbeat(). */
    bool (*heartbeat_fn)(void *arg, const char *details_json);
    void *heartbeat_arg;
} sg_task_t;

/*
 * Reports the progress of a long task, e.g. {"done": 40, "total": 100}; details_json may
 * be NULL (just "still here": the transport heartbeats on its own anyway). sagad shows
 * the last details on the attempt (GET /v1/instances/{id}). Returns true while the
 * attempt is still wanted, false once the handler should give up (past the deadline or
 * the worker is stopping). Cheap enough to call in a loop: the transport sends at most
 * one heartbeat per third of task->heartbeat_ms. Any thread running the task.
 */
bool sg_task_heartbeat(const sg_task_t *task, const char *details_json);

/* The longest progress text sg_task_heartbeat() passes on: longer details are dropped
 * (the last progress stays) and the call still counts. Progress is a small status line,
 * not a payload: it rides in every heartbeat and is stored on the attempt. */
#define SG_TASK_PROGRESS_MAX 4096u

/*
 * What a handler answers. Caller-allocated and zeroed (`sg_task_result_t res = {0};`);
 * fill it with sg_task_ok / sg_task_fail and release it with sg_task_result_fini. All
 * strings are owned by the result (sg_malloc).
 *
 * Out of memory while filling a result turns it into SG_TASK_RETRYABLE with every
 * string NULL: retrying is right for a transient shortage, and safe because the
 * handler has recorded its outcome and will return it again. sg_task_result_code()
 * names that case "saga.nomem".
 */
typedef struct {
    sg_task_outcome_t outcome;
    char *output;        /* SG_TASK_OK: JSON text */
    char *error_code;    /* failures: "<queue>.<reason>", matched by retry policies */
    char *error_message; /* failures: one line for people */
} sg_task_result_t;

/* Frees the strings and zeroes r, which can be filled again. r may be NULL. */
void sg_task_result_fini(sg_task_result_t *r);

/* Sets r to success with a copy of json (NULL is stored as "null"). Whatever r held is
 * freed first. */
void sg_task_ok(sg_task_result_t *r, const char *json);

/* Sets r to failure o (SG_TASK_RETRYABLE or SG_TASK_FATAL, never SG_TASK_OK) with a copy
 * of code and a printf-formatted message. Whatever r held is freed first. */
void sg_task_fail(sg_task_result_t *r, sg_task_outcome_t o, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The error code of a failed result: error_code, or "saga.nomem" when filling the
 * result ran out of memory; NULL for success. Never allocates. */
const char *sg_task_result_code(const sg_task_result_t *r);

/* The idempotency key of a task: "<instance>/<step_id>", with "/compensate" appended for
 * the compensation. The same for every attempt, so a retry after a timeout cannot repeat
 * an effect. Owned by the caller (sg_free); NULL on OOM. */
char *sg_task_key(const char *instance_id, const char *step_id, bool compensation);

/* Name of an outcome: "ok", "retryable", "fatal". */
const char *sg_task_outcome_name(sg_task_outcome_t o);

/* Per-module state made by open(): a database connection, a client, ... */
typedef struct sg_activity_ctx sg_activity_ctx_t;

/* What a module is opened with. */
typedef struct {
    const char *data_dir; /* where it keeps its own database (must exist) */
    /* Fault injection, "queue.key=value,..." (sagad --chaos), e.g.
     * "payment.error_rate=0.1,payment.latency_ms=50"; NULL = none. See
     * activities/common/svc.h for the keys. Off unless asked for. */
    const char *chaos;
} sg_activity_env_t;

/*
 * A domain event a module committed together with its effect, waiting in its outbox to
 * be handed on: into sagad's event log (embedded), to a Kafka topic named like the type
 * (saga-worker). Handing on is at-least-once; receivers dedupe on id.
 */
typedef struct {
    int64_t seq;                /* position in the module's outbox, increasing */
    const char *id;             /* ULID, unique */
    const char *type;           /* "inventory.reserved" */
    const char *correlation_id; /* the saga instance id; NULL outside sagas */
    int64_t ts_ms;
    const char *json;  /* the event as a JSON object (envelope + business fields) */
    const void *proto; /* the same, as its message of schemas/events.proto */
    size_t proto_len;
} sg_domain_event_t;

/* Receives one event; the pointers are valid during the call only. Returns false to
 * stop early. */
typedef bool (*sg_event_fn)(void *arg, const sg_domain_event_t *ev);

typedef struct {
    const char *name; /* operation name, e.g. "echo" */
    /* Does the work and fills res (zeroed by the caller). Runs on any worker thread,
     * concurrently with other calls on the same ctx: must be thread-safe. Must return
     * by task->deadline_ms (or soon after). */
    void (*run)(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res);
} sg_activity_op_t;

typedef struct {
    const char *queue; /* "test", "inventory", ...: never contains '.' */
    const sg_activity_op_t *ops;
    size_t n_ops;
    /* Opens the module's state (env->data_dir must exist). On failure writes one line to
     * err and returns non-SG_OK; *out is then untouched. Called once per process, from
     * the thread starting the transport. */
    sg_err_t (*open)(const sg_activity_env_t *env, sg_activity_ctx_t **out, char *err,
                     size_t errlen);
    /* Releases ctx after every run() has returned. Same thread as open(). */
    void (*close)(sg_activity_ctx_t *ctx);
    /* Optional (NULL: the module publishes no events). Calls fn with up to max events
     * of the outbox, oldest first, without removing them. Any thread. */
    sg_err_t (*events_peek)(sg_activity_ctx_t *ctx, size_t max, sg_event_fn fn, void *arg);
    /* Removes the events up to seq (included) from the outbox: call it only once they
     * are durable where they went. Any thread. */
    sg_err_t (*events_ack)(sg_activity_ctx_t *ctx, int64_t upto_seq);
    /* Optional: loads the module's part of a seed document (a JSON object, see
     * activities/seed/shop.json) into its database, replacing what it names. */
    sg_err_t (*seed)(sg_activity_ctx_t *ctx, const char *json, char *err, size_t errlen);
} sg_activity_module_t;

/* The module serving queue, from the one static table; NULL if unknown. Any thread. */
const sg_activity_module_t *sg_activity_module(const char *queue);

/* Every registered module (*n of them); the array is static. Any thread. */
const sg_activity_module_t *const *sg_activity_modules(size_t *n);

/*
 * Splits "queue.operation" at its first '.': returns the operation (inside activity)
 * and sets *queue_len. NULL when activity is NULL or either part is empty.
 */
const char *sg_activity_split(const char *activity, size_t *queue_len);

/*
 * Loads a seed document (a JSON object with one section per queue, see
 * activities/seed/shop.json) into the databases of the modules under env->data_dir:
 * each module that has a section and a seed() gets it; keys starting with '_' are
 * comments. A section for an unknown queue, or for a module without seed(), is an error
 * (a typo must not be silently ignored). On failure err says which section and why.
 * Reports each seeded queue through progress (may be NULL).
 */
sg_err_t sg_activity_seed_all(const sg_activity_env_t *env, const char *json, char *err,
                              size_t errlen, void (*progress)(void *arg, const char *queue),
                              void *arg);

/* The operation named op (NUL-terminated) of module m, or NULL. */
const sg_activity_op_t *sg_activity_module_op(const sg_activity_module_t *m, const char *op);

#endif
