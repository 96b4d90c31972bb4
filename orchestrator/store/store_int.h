/*
 * store internals shared by store.c (the handle and the row functions) and schema.c
 * (connection setup and migrations). Never included from outside orchestrator/store/.
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

#endif
