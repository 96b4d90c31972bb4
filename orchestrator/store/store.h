/*
 * store: the durable state of sagad in one SQLite file (WAL): definitions, instances,
 * step attempts, the append-only history, timers, idempotency keys, domain events, the
 * outbox and the dead letters of the Kafka transport. It deals in plain rows of strings and
 * integers; what they mean (statuses, reasons, timer kinds) belongs to the engine and its driver.
 *
 * It must never interpret saga state, build SQL from strings (every statement is a
 * constant, prepared once per handle and bound with parameters), or write through a
 * read-only handle.
 *
 * Threads: a handle is used by one thread at a time (it is opened with
 * SQLITE_OPEN_NOMUTEX). The engine thread owns the only writer handle; any other thread
 * (REST queries) opens its own read-only handle. Different handles may be used from
 * different threads at the same time. Callbacks run on the calling thread, inside the
 * call.
 *
 * Transactions: writes made between sg_store_begin and sg_store_commit are atomic; a
 * write made outside a transaction commits by itself (SQLite autocommit). The driver
 * persists one engine step (instance, attempts, history, timers, events, outbox) in one
 * transaction.
 *
 * Callbacks: a function that scans calls its callback once per row, in the documented
 * order, until the callback returns false (then the function returns SG_OK). Strings and
 * blobs handed to a callback are valid only during that call. A callback may call other
 * store functions on the same handle, but not the function that is calling it (that
 * query is still running: SG_ERR_STATE); rows it writes to the table being scanned may
 * or may not show up later in the same scan. When a scan fails (I/O error, corrupt row)
 * the callback may already have been called for earlier rows.
 *
 * Errors: every failure leaves a message in sg_store_errmsg(). Codes:
 *   SG_ERR_INVALID    a required argument is NULL/empty, a value is out of range, or the
 *                     file is not a sagad database / has a schema newer than this code
 *   SG_ERR_EXISTS     a uniqueness rule was hit (see each function)
 *   SG_ERR_NOT_FOUND  no such row (see each function)
 *   SG_ERR_STATE      a write on a read-only handle; begin inside a transaction; commit
 *                     without one; re-entrant use of a running query; a finished attempt
 *   SG_ERR_IO         SQLite reported I/O trouble, a lock it could not get within the busy
 *                     timeout, or a corrupt file or row (a NULL or wrongly typed value where
 *                     the schema does not allow one)
 *   SG_ERR_LIMIT      a value exceeds SQLite's size limits
 *   SG_ERR_NOMEM      out of memory (ours or SQLite's)
 *   SG_ERR_INTERNAL   anything else SQLite reports (a bug: please report the message)
 */
#ifndef SG_STORE_H
#define SG_STORE_H

#include "orchestrator/base/base.h"

typedef struct sg_store sg_store_t;

/* How hard a commit waits for the disk (PRAGMA synchronous). In WAL mode FULL syncs the
 * WAL at every commit (a committed step survives power loss); NORMAL syncs only at
 * checkpoints (a power loss can drop the last commits, never corrupt the file); OFF
 * leaves it to the OS (tests and benchmarks only). */
typedef enum { SG_SYNC_FULL, SG_SYNC_NORMAL, SG_SYNC_OFF } sg_sync_t;

typedef struct {
    sg_sync_t sync; /* writer only; ignored for read-only handles */
    bool readonly;
} sg_store_opts_t;

/* The schema version this code creates and understands. */
#define SG_STORE_SCHEMA_VERSION 4

/* ---- handle and transactions ---- */

/*
 * Opens the database at path. opts NULL means a writer with SG_SYNC_FULL.
 *
 * A writer creates the file if needed, switches it to WAL, sets synchronous, and applies
 * the missing migrations, each in its own transaction. A read-only handle
 * (SQLITE_OPEN_READONLY, busy timeout 5 s) needs a file whose schema is exactly
 * SG_STORE_SCHEMA_VERSION: open the writer first. Like any WAL reader it needs the -shm
 * file to exist or its directory to be writable. Both refuse a file whose schema is newer
 * than this code (SG_ERR_INVALID) and a SQLite file that belongs to another program.
 * ":memory:" works for a writer (journal mode "memory" instead of WAL).
 *
 * On success *out is the new handle (close with sg_store_close). On failure *out is NULL
 * and errbuf (errlen bytes, may be NULL/0) holds the reason, SQLite's message included.
 * Any thread.
 */
sg_err_t sg_store_open(const char *path, const sg_store_opts_t *opts, sg_store_t **out,
                       char *errbuf, size_t errlen);

/* Finalizes the cached statements and closes the connection. An open transaction is
 * rolled back. NULL is a no-op. Never call it from a callback of the same handle. */
void sg_store_close(sg_store_t *st);

/* Text of the last failure on this handle ("" if none); successes leave it unchanged.
 * Valid until the next call on the handle. NULL gives "". */
const char *sg_store_errmsg(const sg_store_t *st);

/* Whether the handle was opened read-only (its writers then return SG_ERR_STATE). */
bool sg_store_readonly(const sg_store_t *st);

/*
 * Writer: BEGIN IMMEDIATE (takes the write lock now, so the commit cannot fail on lock
 * contention). Read-only handle: BEGIN (DEFERRED), a consistent snapshot for several
 * reads (e.g. a count and a page). SG_ERR_STATE if a transaction is already open.
 */
sg_err_t sg_store_begin(sg_store_t *st);

/* Commits. SG_ERR_STATE if no transaction is open. On any other failure the transaction
 * may still be open: call sg_store_rollback (harmless if SQLite already rolled back). */
sg_err_t sg_store_commit(sg_store_t *st);

/* Discards the open transaction; a no-op without one. Failures only set the message. */
void sg_store_rollback(sg_store_t *st);

/* "full", "normal", "off" (any case) -> *out; false for anything else. */
bool sg_sync_parse(const char *name, sg_sync_t *out);

/* ---- definitions ---- */

/*
 * Records the source of a definition. SG_OK if inserted, or if (name, version) already
 * holds the same sha256 (reloading is harmless); SG_ERR_EXISTS if it holds another one
 * (a version must never change its meaning). Writer only.
 */
sg_err_t sg_store_def_put(sg_store_t *st, const char *name, int64_t version, const char *sha256,
                          const char *source, int64_t now_ms);

typedef bool (*sg_store_def_cb)(void *ctx, const char *name, int64_t version, const char *sha256,
                                const char *source);
/* Every definition, by (name, version) ascending. */
sg_err_t sg_store_def_scan(sg_store_t *st, sg_store_def_cb cb, void *ctx);

/* ---- instances ---- */

typedef struct {
    char id[32]; /* NUL-terminated, 1..31 characters */
    const char *workflow;
    int64_t version;
    const char *status;
    const char *reason;          /* NULL is stored as "" */
    const char *input;           /* JSON text */
    const char *state;           /* JSON text: the engine's serialized instance */
    const char *idempotency_key; /* may be NULL */
    int64_t created_ms, updated_ms, deadline_ms, seq, hist_seq;
} sg_store_inst_t;

/* Inserts a new instance. workflow, status, input, state are required (SG_ERR_INVALID);
 * SG_ERR_EXISTS if the id is taken. Writer only. */
sg_err_t sg_store_inst_insert(sg_store_t *st, const sg_store_inst_t *row);

/* Updates, by row->id: status, reason, state, updated_ms, deadline_ms, seq, hist_seq (the
 * other fields never change). SG_ERR_NOT_FOUND if there is no such instance. Writer only. */
sg_err_t sg_store_inst_update(sg_store_t *st, const sg_store_inst_t *row);

typedef bool (*sg_store_inst_cb)(void *ctx, const sg_store_inst_t *row);

/* Calls cb once with the instance id. SG_ERR_NOT_FOUND (cb not called) if there is none. */
sg_err_t sg_store_inst_get(sg_store_t *st, const char *id, sg_store_inst_cb cb, void *ctx);

/* Every instance whose status is "RUNNING" or "COMPENSATING", by (created_ms, id): what the
 * engine reloads at start. */
sg_err_t sg_store_inst_scan_active(sg_store_t *st, sg_store_inst_cb cb, void *ctx);

typedef struct {
    const char *workflow;     /* NULL: any */
    const char *status;       /* NULL: any */
    int64_t created_after_ms; /* 0: any; else only created_ms > created_after_ms */
    const char *after_id;     /* cursor; NULL: from the start */
    int64_t after_created_ms; /* cursor, used with after_id */
    size_t limit;             /* 0: no limit */
} sg_store_inst_filter_t;

/*
 * Instances matching f (NULL: all), in the stable order (created_ms, id) ascending. The
 * cursor (after_created_ms, after_id) is exclusive: pass the last row of a page to get the
 * next page, which stays correct while new instances are inserted.
 */
sg_err_t sg_store_inst_list(sg_store_t *st, const sg_store_inst_filter_t *f, sg_store_inst_cb cb,
                            void *ctx);

/* Number of instances with that status (NULL: all) into *out. */
sg_err_t sg_store_inst_count(sg_store_t *st, const char *status, int64_t *out);

/* ---- idempotency keys ---- */

/* The instance started for (workflow, key) into out_id. SG_ERR_NOT_FOUND if none. */
sg_err_t sg_store_idem_get(sg_store_t *st, const char *workflow, const char *key, char out_id[32]);

/* Remembers that (workflow, key) started instance id. SG_ERR_EXISTS if the key is already
 * taken, even by the same id: the caller looks it up first, inside the same transaction.
 * Writer only. */
sg_err_t sg_store_idem_put(sg_store_t *st, const char *workflow, const char *key, const char *id,
                           int64_t now_ms);

/* ---- step attempts ---- */

typedef struct {
    const char *instance_id;
    int64_t step;
    bool compensation;
    int64_t attempt;
    const char *activity;
    const char *input;  /* JSON text of the task */
    const char *status; /* "running", "ok", "failed", "timeout", "stale" */
    const char *output; /* NULL until finished ok */
    const char *error_code;
    const char *error_message;
    int64_t started_ms, deadline_ms, finished_ms; /* 0 when unset */
    /* The last heartbeat (migration 4): when sagad received it (0 = none yet), the
     * worker that sent it and the handler's progress JSON (NULL = none). Ignored by
     * sg_store_attempt_insert. */
    int64_t heartbeat_ms;
    const char *worker;
    const char *progress;
} sg_store_attempt_t;

/*
 * Records a dispatched attempt with status "running" (a->status must be NULL or
 * "running"; output, error and finished_ms are ignored). instance_id, activity and input
 * are required. Inserting the same (instance_id, step, compensation, attempt) again is
 * ignored and returns SG_OK, the first row staying as it was (INSERT OR IGNORE on the key):
 * a replayed dispatch must not fail the step. Writer only.
 */
sg_err_t sg_store_attempt_insert(sg_store_t *st, const sg_store_attempt_t *a);

/*
 * Finishes a running attempt: status ("ok", "failed", "timeout" or "stale", else
 * SG_ERR_INVALID), output, error_code, error_message (each may be NULL) and finished_ms.
 * SG_ERR_STATE if the attempt is already finished (the first result wins: a late or
 * duplicated result must not overwrite it); SG_ERR_NOT_FOUND if it does not exist. Writer
 * only.
 */
sg_err_t sg_store_attempt_finish(sg_store_t *st, const char *instance_id, int64_t step, bool comp,
                                 int64_t attempt, const char *status, const char *output,
                                 const char *error_code, const char *error_message,
                                 int64_t finished_ms);

/*
 * Records a heartbeat of a running attempt: received_ms, worker (may be NULL) and the
 * handler's progress (JSON text; NULL keeps the last progress). SG_ERR_STATE if the
 * attempt is finished, SG_ERR_NOT_FOUND if it does not exist. Writer only.
 */
sg_err_t sg_store_attempt_heartbeat(sg_store_t *st, const char *instance_id, int64_t step,
                                    bool comp, int64_t attempt, int64_t received_ms,
                                    const char *worker, const char *progress);

typedef bool (*sg_store_attempt_cb)(void *ctx, const sg_store_attempt_t *a);

/*
 * Every attempt whose status is "running", by (instance_id, step, compensation, attempt),
 * whatever the status of its instance: an attempt is finished only through
 * sg_store_attempt_finish, so the driver marks the attempts of a saga that ended "stale"
 * when it ends it. This is what is in flight after a restart.
 */
sg_err_t sg_store_attempt_scan_running(sg_store_t *st, sg_store_attempt_cb cb, void *ctx);

/* Every attempt of one instance, by (step, compensation, attempt). */
sg_err_t sg_store_attempts_of(sg_store_t *st, const char *instance_id, sg_store_attempt_cb cb,
                              void *ctx);

/* ---- history (append-only audit trail) ---- */

/* Appends entry seq (the instance's hist_seq numbering) of an instance. type is required;
 * step -1 means the saga itself; detail is JSON text or NULL. SG_ERR_EXISTS if seq is
 * taken: history is never rewritten. Writer only. */
sg_err_t sg_store_hist_append(sg_store_t *st, const char *instance_id, int64_t seq, int64_t ts_ms,
                              const char *type, int64_t step, int64_t attempt, const char *detail);

typedef bool (*sg_store_hist_cb)(void *ctx, int64_t seq, int64_t ts_ms, const char *type,
                                 int64_t step, int64_t attempt, const char *detail);

/* Entries of an instance with seq > after_seq, by seq, at most limit (0: no limit).
 * detail may be NULL. An unknown instance simply has no entries. */
sg_err_t sg_store_hist_list(sg_store_t *st, const char *instance_id, int64_t after_seq,
                            size_t limit, sg_store_hist_cb cb, void *ctx);

/* ---- timers ---- */

/* Schedules (or moves) the timer (instance_id, kind, step, comp, attempt) to fire_ms.
 * Writer only. */
sg_err_t sg_store_timer_put(sg_store_t *st, const char *instance_id, int kind, int64_t step,
                            bool comp, int64_t attempt, int64_t fire_ms);

/* Removes one timer; SG_OK also when it does not exist (a timer is routinely cancelled
 * after it fired). Writer only. */
sg_err_t sg_store_timer_delete(sg_store_t *st, const char *instance_id, int kind, int64_t step,
                               bool comp, int64_t attempt);

/* Removes every timer of an instance (it ended); SG_OK also when it had none. Writer only. */
sg_err_t sg_store_timer_delete_instance(sg_store_t *st, const char *instance_id);

typedef bool (*sg_store_timer_cb)(void *ctx, const char *instance_id, int kind, int64_t step,
                                  bool comp, int64_t attempt, int64_t fire_ms);

/* Every timer, by fire_ms ascending (ties in key order): the driver loads them at start. */
sg_err_t sg_store_timer_scan(sg_store_t *st, sg_store_timer_cb cb, void *ctx);

/* ---- domain events ---- */

/* Appends an event; ids are assigned increasing and never reused. type is required;
 * correlation_id and payload (JSON text) may be NULL. Writer only. */
sg_err_t sg_store_event_append(sg_store_t *st, const char *type, const char *correlation_id,
                               int64_t ts_ms, const char *payload);

/* Stores an event published elsewhere (a service's outbox) under its own event_id,
 * once: a second import of the same event_id changes nothing and sets *inserted (may be
 * NULL) to false. event_id and type are required; the rest may be NULL. Writer only. */
sg_err_t sg_store_event_import(sg_store_t *st, const char *event_id, const char *type,
                               const char *correlation_id, int64_t ts_ms, const char *source,
                               const char *payload, bool *inserted);

/* One event of the log, as a scan hands it over. */
typedef struct {
    int64_t id;                 /* position in the log: increasing, never reused */
    const char *event_id;       /* the event's own id (imported events); NULL if appended */
    const char *type;           /* never NULL */
    const char *correlation_id; /* may be NULL */
    int64_t ts_ms;
    const char *source;  /* who published it (imported events); may be NULL */
    const char *payload; /* JSON text; may be NULL */
} sg_store_event_t;

typedef bool (*sg_store_event_cb)(void *ctx, const sg_store_event_t *ev);

/* Events with id > after_id matching type and correlation_id (each NULL: any), by id, at
 * most limit (0: no limit). */
sg_err_t sg_store_event_list(sg_store_t *st, const char *type, const char *correlation_id,
                             int64_t after_id, size_t limit, sg_store_event_cb cb, void *ctx);

/* ---- outbox (messages committed with the state, published afterwards) ---- */

/* Queues a message. topic is required; key may be NULL; payload may be NULL when len is
 * 0. The bytes are copied. Writer only. */
sg_err_t sg_store_outbox_put(sg_store_t *st, const char *topic, const char *key,
                             const void *payload, size_t len, int64_t now_ms);

typedef bool (*sg_store_outbox_cb)(void *ctx, int64_t id, const char *topic, const char *key,
                                   const void *payload, size_t len);

/* Messages with id > after_id, by id (the order they were queued), at most limit (0: no
 * limit). key may be NULL; payload is NULL when len is 0. */
sg_err_t sg_store_outbox_fetch(sg_store_t *st, int64_t after_id, size_t limit,
                               sg_store_outbox_cb cb, void *ctx);

/* Removes a published message. SG_ERR_NOT_FOUND if there is no such id (deleted twice:
 * two relays?). Writer only. */
sg_err_t sg_store_outbox_delete(sg_store_t *st, int64_t id);

/* ---- dead letters (read from the saga.tasks.<queue>.dlq topics) ---- */

/* One dead letter. Strings and blobs handed to a callback are valid during the call. */
typedef struct {
    int64_t id;        /* position in the table: increasing, never reused */
    const char *topic; /* the .dlq topic it was read from */
    int64_t partition; /* its position there: unique with topic */
    int64_t offset;
    const char *queue; /* the queue whose task it is ("payment") */
    const char *key;   /* the message key (the instance id); may be NULL */
    const char *instance_id, *step_id, *idempotency_key, *activity; /* may be NULL when */
    int64_t attempt;     /* the task could not be decoded (attempt 0) */
    const char *input;   /* the task's input JSON; may be NULL */
    const char *reason;  /* the sagad.dlq.reason header; may be NULL */
    const char *headers; /* every sagad.dlq.* header as a JSON object; may be NULL */
    int64_t received_ms, updated_ms;
    const char *status; /* "new", "requeued", "discarded" */
    const void *task;   /* the original bytes of the task message (NULL in lists) */
    size_t task_len;    /* its length (also in lists) */
} sg_store_dlq_t;

/*
 * Records a dead letter with status "new" (row->id and row->status are ignored; updated_ms
 * is received_ms). topic, queue and task are required. A second copy of the same (topic,
 * partition, offset) changes nothing and sets *inserted (may be NULL) to false. Writer only.
 */
sg_err_t sg_store_dlq_insert(sg_store_t *st, const sg_store_dlq_t *row, bool *inserted);

/* Sets the status of dead letter id (any text: the caller checks the transitions).
 * SG_ERR_NOT_FOUND if there is no such row. Writer only. */
sg_err_t sg_store_dlq_set_status(sg_store_t *st, int64_t id, const char *status, int64_t now_ms);

typedef bool (*sg_store_dlq_cb)(void *ctx, const sg_store_dlq_t *row);

/* Calls cb once with dead letter id, its task bytes included. SG_ERR_NOT_FOUND if none. */
sg_err_t sg_store_dlq_get(sg_store_t *st, int64_t id, sg_store_dlq_cb cb, void *ctx);

/* Dead letters with id > after_id of queue and status (each NULL: any), by id, at most
 * limit (0: no limit), without their task bytes (task NULL, task_len set). */
sg_err_t sg_store_dlq_list(sg_store_t *st, const char *queue, const char *status, int64_t after_id,
                           size_t limit, sg_store_dlq_cb cb, void *ctx);

/* ---- maintenance ---- */

/* PRAGMA integrity_check. SG_OK and "ok" in out when healthy. SG_ERR_IO when damaged:
 * out (truncated to outlen; may be NULL) holds SQLite's findings, one per line, or its
 * error when the damage stops the check itself ("database disk image is malformed"). */
sg_err_t sg_store_integrity_check(sg_store_t *st, char *out, size_t outlen);

#endif
