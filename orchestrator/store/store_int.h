/*
 * store internals shared by store.c (the handle, running statements, decoding columns,
 * and the rows of definitions, instances, idempotency keys, events, the outbox and dead
 * letters), steps.c (step attempts, history, timers) and schema.c (connection setup and
 * migrations). Never included from outside orchestrator/store/.
 */
#ifndef SG_STORE_INT_H
#define SG_STORE_INT_H

#include <sqlite3.h>

#include "orchestrator/store/store.h"

/* Row values, upsert and sqlite3_prepare_v3 with SQLITE_PREPARE_PERSISTENT. */
#if SQLITE_VERSION_NUMBER < 3024000
#error "sagad's store needs SQLite 3.24 or newer"
#endif

/* Marks the file as ours (PRAGMA application_id): "saga" in ASCII. */
#define STORE_APPLICATION_ID 0x73616761

/* Every statement the store runs, by id. Statements that write come before
 * STORE_Q__FIRST_READ: a read-only handle refuses them. The list variants are consecutive
 * so that the filter flags pick one by offset. */
enum {
    STORE_Q_BEGIN_WRITE,
    STORE_Q_DEF_INSERT,
    STORE_Q_INST_INSERT,
    STORE_Q_INST_UPDATE,
    STORE_Q_IDEM_PUT,
    STORE_Q_ATT_INSERT,
    STORE_Q_ATT_FINISH,
    STORE_Q_ATT_HEARTBEAT,
    STORE_Q_HIST_APPEND,
    STORE_Q_TIMER_PUT,
    STORE_Q_TIMER_DEL,
    STORE_Q_TIMER_DEL_INST,
    STORE_Q_EVENT_APPEND,
    STORE_Q_EVENT_IMPORT,
    STORE_Q_OUTBOX_PUT,
    STORE_Q_OUTBOX_DEL,
    STORE_Q_DLQ_INSERT,
    STORE_Q_DLQ_STATUS,
    STORE_Q__FIRST_READ,
    STORE_Q_BEGIN_READ = STORE_Q__FIRST_READ,
    STORE_Q_COMMIT,
    STORE_Q_ROLLBACK,
    STORE_Q_DEF_SAME,
    STORE_Q_DEF_SCAN,
    STORE_Q_INST_GET,
    STORE_Q_INST_ACTIVE,
    STORE_Q_INST_LIST, /* + 1 workflow; + 2 a status, + 4 an active status */
    STORE_Q_INST_LIST_W,
    STORE_Q_INST_LIST_S,
    STORE_Q_INST_LIST_WS,
    STORE_Q_INST_LIST_A,
    STORE_Q_INST_LIST_WA,
    STORE_Q_INST_COUNT, /* + 1 a status, + 2 an active status */
    STORE_Q_INST_COUNT_S,
    STORE_Q_INST_COUNT_A,
    STORE_Q_IDEM_GET,
    STORE_Q_ATT_EXISTS,
    STORE_Q_ATT_RUNNING,
    STORE_Q_ATT_OF,
    STORE_Q_HIST_LIST,
    STORE_Q_TIMER_SCAN,
    STORE_Q_EVENT_LIST, /* + 1 type, + 2 correlation_id */
    STORE_Q_EVENT_LIST_T,
    STORE_Q_EVENT_LIST_C,
    STORE_Q_EVENT_LIST_TC,
    STORE_Q_OUTBOX_FETCH,
    STORE_Q_DLQ_GET,
    STORE_Q_DLQ_LIST, /* + 1 queue, + 2 status */
    STORE_Q_DLQ_LIST_Q,
    STORE_Q_DLQ_LIST_S,
    STORE_Q_DLQ_LIST_QS,
    STORE_Q_INTEGRITY,
    STORE_Q__COUNT
};

typedef struct {
    const char *name; /* for messages: "<name>: <SQLite's text>" */
    const char *sql;
} store_query_t;

/* The text of each statement (schema.c, next to the tables and indexes it relies on). */
extern const store_query_t store__queries[STORE_Q__COUNT];

/* Maps a (possibly extended) SQLite result code to an sg_err_t. */
sg_err_t store__map_rc(int rc);

/*
 * Configures a freshly opened connection (result codes, busy timeout, defensive mode;
 * for a writer WAL and synchronous) and brings the schema to SG_STORE_SCHEMA_VERSION
 * (writer) or checks that it is exactly that (read-only). On failure err holds the
 * reason; the caller closes db.
 */
sg_err_t store__setup(sqlite3 *db, const sg_store_opts_t *opts, char *err, size_t errlen);

/* ---- the handle and running its statements (store.c), for the row files ---- */

struct sg_store {
    sqlite3 *db;
    bool readonly;
    sqlite3_stmt *stmts[STORE_Q__COUNT];
    char err[512];
};

/* One parameter, bound to ?1, ?2, ... in array order. */
typedef struct {
    enum { ARG_TEXT, ARG_INT, ARG_BLOB } kind;
    const void *p; /* text (NULL binds NULL) or blob bytes */
    int64_t i;     /* integer */
    size_t n;      /* blob length */
} arg_t;

#define A_TEXT(v) ((arg_t){ARG_TEXT, (v), 0, 0})
#define A_INT(v) ((arg_t){ARG_INT, NULL, (v), 0})
#define A_BOOL(v) ((arg_t){ARG_INT, NULL, (v) ? 1 : 0, 0})
#define A_BLOB(p, n) ((arg_t){ARG_BLOB, (p), 0, (n)})

/* One use of a statement: the handle, the statement, and the first failure. */
typedef struct {
    sg_store_t *st;
    sqlite3_stmt *s;
    const char *what;
    sg_err_t err;
} q_t;

/* Decodes the current row and hands it on; false stops. Decoding failures set q->err. */
typedef bool (*row_fn)(q_t *q, void *arg);

/* A scan's callback and its context, as the row decoders get them. */
typedef struct {
    union {
        sg_store_def_cb def;
        sg_store_inst_cb inst;
        sg_store_attempt_cb attempt;
        sg_store_hist_cb hist;
        sg_store_timer_cb timer;
        sg_store_event_cb event;
        sg_store_outbox_cb outbox;
        sg_store_dlq_cb dlq;
    } cb;
    void *ctx;
} visit_t;

/* Sets the handle's message and returns code. */
__attribute__((format(printf, 3, 4))) sg_err_t store__fail(sg_store_t *st, sg_err_t code,
                                                           const char *fmt, ...);
/* SG_ERR_INVALID: "<what>: <field> is required". */
sg_err_t store__missing(sg_store_t *st, const char *what, const char *field);
/* SG_ERR_INVALID: statement id's scan was called without a callback. */
sg_err_t store__no_cb(sg_store_t *st, int id);

/* Runs statement id, which returns no rows; *changes (may be NULL) gets the rows it
 * changed. The bindings never outlive the call. */
sg_err_t store__run_write(sg_store_t *st, int id, const arg_t *args, size_t n, int *changes);
/* Steps through the rows of statement id, calling fn for each; *nrows (may be NULL)
 * counts them. */
sg_err_t store__run_read(sg_store_t *st, int id, const arg_t *args, size_t n, row_fn fn, void *arg,
                         size_t *nrows);

/* Decoding columns: what comes from the file is checked, never trusted. A failure sets
 * q->err (the first one wins). */
void store__corrupt(q_t *q, int i, const char *why);
/* Text of column i; NULL for SQL NULL (a corrupt row if required) and on failure. */
const char *store__col_text(q_t *q, int i, bool required);
/* Integer of column i; SQL NULL gives 0 (a corrupt row if required). */
int64_t store__col_int(q_t *q, int i, bool required);
/* A one-value result: the integer in the first column of the first row (arg: int64_t). */
bool store__int_row(q_t *q, void *arg);

static inline bool store__present(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* A LIMIT value: 0 means none, which SQLite spells -1. */
static inline int64_t store__limit_of(size_t n)
{
    return n == 0 || n > (uint64_t)INT64_MAX ? -1 : (int64_t)n;
}

#endif
