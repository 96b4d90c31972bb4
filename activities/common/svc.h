/*
 * svc: what every shop service (order, inventory, payment, notification) shares, so
 * that each of them is only its business rules.
 *
 *   - Its own SQLite database, <data_dir>/<service>.db (WAL, synchronous=FULL), opened
 *     once per process and shared by the worker threads behind one mutex.
 *   - sg_svc_run(): the idempotent transaction around one task. It looks the task's
 *     idempotency key up and returns the FIRST recorded outcome without running the
 *     operation again; otherwise it runs the operation inside BEGIN IMMEDIATE and
 *     records a success or a non-retryable failure in the same transaction as the
 *     effect, so "recorded" and "happened" cannot disagree after a crash. A retryable
 *     failure rolls everything back (no effect, nothing recorded).
 *   - The transactional outbox: events the operation emits (sg_svc_emit) are committed
 *     with its effect, then handed on by the transport (sg_svc_events_peek/ack): into
 *     sagad's event log in embedded mode, to Kafka topics from saga-worker.
 *   - Fault injection for tests and demos (sagad --chaos): transient errors before the
 *     effect, replies lost after it, latency.
 *
 * Several processes may share a service database (workers of one queue on one host):
 * BEGIN IMMEDIATE serialises writers across processes; operations must still express
 * their invariants in SQL (UPDATE ... WHERE stock >= ?), never read-then-write in C.
 */
#ifndef SG_SVC_H
#define SG_SVC_H

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "activities/activity.h"

typedef struct sg_svc sg_svc_t;
typedef struct sg_svc_tx sg_svc_tx_t;

/*
 * Opens <env->data_dir>/<name>.db, creates the kit's tables (svc_idempotency,
 * svc_outbox) and runs schema_sql (the service's own CREATE TABLE IF NOT EXISTS ...).
 * name is the queue ("inventory"); it prefixes error codes ("inventory.invalid_input").
 * On failure writes one line to err and returns SG_ERR_INVALID (bad arguments),
 * SG_ERR_IO (cannot open or create) or SG_ERR_NOMEM.
 */
sg_err_t sg_svc_open(const sg_activity_env_t *env, const char *name, const char *schema_sql,
                     sg_svc_t **out, char *err, size_t errlen);

/* Closes the database. svc may be NULL. No sg_svc_run may be in progress. */
void sg_svc_close(sg_svc_t *svc);

/* The service's name as given to sg_svc_open. */
const char *sg_svc_name(const sg_svc_t *svc);

/*
 * One operation. Runs inside the kit's transaction, with the service mutex held: use
 * sg_svc_db(tx) for SQL and sg_svc_emit for events. input is the task's input, already
 * parsed and known to be a JSON object. Fill res:
 *   sg_task_ok            the effect happened (or was already there): committed, recorded
 *   sg_task_fail FATAL    a business refusal: committed (with any events emitted, e.g.
 *                         payment.failed), recorded, and returned again to a redelivery
 *   sg_task_fail RETRYABLE  rolled back: no effect, no events, nothing recorded
 * A SQL error should be reported with sg_svc_db_fail (retryable).
 */
typedef void (*sg_svc_op_fn)(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *input, void *arg,
                             sg_task_result_t *res);

/*
 * Runs op for task, exactly once per idempotency key:
 *   - input that is not a JSON object: FATAL "<name>.invalid_input" (not recorded; it
 *     would fail the same way every time);
 *   - a key already recorded: its first outcome, op is not called;
 *   - a forward task whose compensation already ran (its key + "/compensate" is
 *     recorded): FATAL "<name>.compensated", recorded, op not called. That is the late
 *     delivery of a timed-out attempt, and it must not take effect after its undo;
 *   - chaos (see sg_activity_env_t.chaos): "<name>.error_rate" fails the task RETRYABLE
 *     "<name>.unavailable" before op runs; "<name>.lost_reply_rate" commits op's outcome
 *     and then answers RETRYABLE "<name>.reply_lost" (the retry finds the record);
 *     "<name>.latency_ms" sleeps up to that many ms (never past the deadline);
 *   - a database error: RETRYABLE "<name>.store".
 * Thread-safe. res must be zeroed by the caller.
 */
void sg_svc_run(sg_svc_t *svc, const sg_task_t *task, sg_svc_op_fn op, void *arg,
                sg_task_result_t *res);

/* The connection, for op's SQL. Only valid inside op. */
sqlite3 *sg_svc_db(sg_svc_tx_t *tx);

/* The service, inside op. */
sg_svc_t *sg_svc_of(sg_svc_tx_t *tx);

/* Fills res with RETRYABLE "<name>.store" and SQLite's last error, prefixed by what. */
void sg_svc_db_fail(sg_svc_tx_t *tx, sg_task_result_t *res, const char *what);

/*
 * Fills res with FATAL "<name>.invalid_input" and the message. For input an operation
 * cannot use: retrying cannot fix it.
 */
void sg_svc_invalid(sg_svc_tx_t *tx, sg_task_result_t *res, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Emits a domain event inside op's transaction: committed with the effect, dropped with
 * a rollback. fields holds the business fields (taken over: freed by this call, even on
 * failure); the kit adds the envelope (event_id, type, time_ms, correlation_id = the
 * task's instance id, source = the service) and encodes the protobuf message of type
 * (schemas/events.proto). Returns SG_ERR_INVALID when type has no message or a field
 * does not fit it (a bug in the service: tests catch it), SG_ERR_IO/SG_ERR_NOMEM
 * otherwise. On any error op should fail RETRYABLE so nothing commits half done.
 */
sg_err_t sg_svc_emit(sg_svc_tx_t *tx, const char *type, cJSON *fields);

/*
 * The same outside a task (seed, maintenance): runs its own transaction. correlation_id
 * may be NULL.
 */
sg_err_t sg_svc_emit_now(sg_svc_t *svc, const char *type, const char *correlation_id,
                         cJSON *fields);

/* Runs fn(db, arg) inside BEGIN IMMEDIATE under the service mutex; commits when it
 * returns SG_OK, rolls back otherwise. For seeding and maintenance, not for tasks. */
sg_err_t sg_svc_exec(sg_svc_t *svc, sg_err_t (*fn)(sg_svc_tx_t *tx, void *arg), void *arg);

/* Like sg_svc_emit_now, inside sg_svc_exec's fn. */
sg_err_t sg_svc_emit_in(sg_svc_tx_t *tx, const char *type, const char *correlation_id,
                        cJSON *fields);

/* The outbox: see sg_activity_module_t.events_peek / events_ack. */
sg_err_t sg_svc_events_peek(sg_svc_t *svc, size_t max, sg_event_fn fn, void *arg);
sg_err_t sg_svc_events_ack(sg_svc_t *svc, int64_t upto_seq);

/*
 * For readers outside the service (the REST gateway): opens <data_dir>/<service>.db
 * read-only, runs read(db, key, &out) inside one read transaction (one snapshot), and
 * returns out when read returned 1 (found), else NULL. Free with sg_free. Never writes.
 */
char *sg_svc_read_json(const char *data_dir, const char *service, const char *key,
                       int (*read)(sqlite3 *db, const char *key, char **out));

/* ---- typed readers of input fields: each returns false (and fills res with
 * "<name>.invalid_input" naming the field) when the field is missing or of the wrong
 * type. ---- */

/* A string of 1..max_len bytes. */
bool sg_svc_str(sg_svc_tx_t *tx, const cJSON *obj, const char *field, size_t max_len,
                const char **out, sg_task_result_t *res);
/* A string or null/absent (*out = NULL). */
bool sg_svc_str_opt(sg_svc_tx_t *tx, const cJSON *obj, const char *field, size_t max_len,
                    const char **out, sg_task_result_t *res);
/* An integer within [min, max]. */
bool sg_svc_int(sg_svc_tx_t *tx, const cJSON *obj, const char *field, int64_t min, int64_t max,
                int64_t *out, sg_task_result_t *res);

/* ---- fault injection ---- */

/* The value of "<queue>.<key>" in a chaos spec ("payment.error_rate=0.1,..."), or dflt
 * when absent or not a number. spec may be NULL. */
double sg_chaos_value(const char *spec, const char *queue, const char *key, double dflt);

/* The chaos spec the service was opened with (NULL: none). */
const char *sg_svc_chaos(const sg_svc_t *svc);

/* A uniform random number in [0, 1), thread-safe. */
double sg_svc_random(void);

#endif
