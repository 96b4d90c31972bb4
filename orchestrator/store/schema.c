/*
 * store/schema: all the SQL of the store in one place: the migrations that build the
 * tables and indexes, the constant text of every statement the handle caches (next to
 * the indexes they rely on), and the setup of a freshly opened connection. A writer gets
 * WAL, the configured synchronous level, and every migration it is missing, each applied
 * in its own transaction together with its schema_migrations row; a reader only checks
 * that the file is a sagad database at exactly the schema this code knows.
 *
 * It must never edit a released migration (append a new one instead: files in the field
 * have already run the old text), never touch a file that another program owns, and never
 * open a schema newer than this code.
 *
 * The setup statements run once per open, so they are prepared, used and finalized on
 * the spot rather than cached in the handle.
 */
#include "orchestrator/store/store_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Version n is migrations[n - 1]. The application_id lives in the file header and is
 * transactional, so it is stamped by the same transaction that creates the tables. */
static const char *const migrations[] = {
    /* 1: the initial schema */
    "CREATE TABLE definitions(name TEXT, version INTEGER, sha256 TEXT NOT NULL,"
    " source TEXT NOT NULL, loaded_ms INTEGER, PRIMARY KEY(name, version));"
    "CREATE TABLE instances(id TEXT PRIMARY KEY, workflow TEXT NOT NULL,"
    " version INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',"
    " input TEXT NOT NULL, state TEXT NOT NULL, idempotency_key TEXT,"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
    " deadline_ms INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL,"
    " hist_seq INTEGER NOT NULL);"
    /* Recovery scans only the live instances, a small part of the table. */
    "CREATE INDEX instances_active ON instances(status)"
    " WHERE status IN ('RUNNING', 'COMPENSATING');"
    "CREATE INDEX instances_workflow ON instances(workflow, created_ms, id);"
    "CREATE INDEX instances_created ON instances(created_ms, id);"
    "CREATE TABLE step_attempts(instance_id TEXT, step INTEGER, compensation INTEGER,"
    " attempt INTEGER, activity TEXT NOT NULL, input TEXT NOT NULL, status TEXT NOT NULL,"
    " output TEXT, error_code TEXT, error_message TEXT, started_ms INTEGER,"
    " deadline_ms INTEGER, finished_ms INTEGER,"
    " PRIMARY KEY(instance_id, step, compensation, attempt)) WITHOUT ROWID;"
    "CREATE INDEX step_attempts_running ON step_attempts(status) WHERE status = 'running';"
    "CREATE TABLE history(instance_id TEXT, seq INTEGER, ts_ms INTEGER, type TEXT NOT NULL,"
    " step INTEGER, attempt INTEGER, detail TEXT, PRIMARY KEY(instance_id, seq))"
    " WITHOUT ROWID;"
    "CREATE TABLE timers(instance_id TEXT, kind INTEGER, step INTEGER, compensation INTEGER,"
    " attempt INTEGER, fire_ms INTEGER NOT NULL,"
    " PRIMARY KEY(instance_id, kind, step, compensation, attempt)) WITHOUT ROWID;"
    "CREATE INDEX timers_fire ON timers(fire_ms);"
    "CREATE TABLE idempotency_keys(workflow TEXT, key TEXT, instance_id TEXT NOT NULL,"
    " created_ms INTEGER, PRIMARY KEY(workflow, key)) WITHOUT ROWID;"
    "CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL,"
    " correlation_id TEXT, ts_ms INTEGER, payload TEXT);"
    "CREATE INDEX events_correlation ON events(correlation_id);"
    "CREATE INDEX events_type ON events(type, id);"
    "CREATE TABLE outbox(id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT,"
    " payload BLOB, created_ms INTEGER);"
    "PRAGMA application_id = 1935763297;",
    /* 2: events handed on from the services' outboxes carry their own unique id (the
     * relay is at-least-once; the unique index makes a second copy a no-op) and the
     * service that published them. */
    "ALTER TABLE events ADD COLUMN event_id TEXT;"
    "ALTER TABLE events ADD COLUMN source TEXT;"
    "CREATE UNIQUE INDEX events_event_id ON events(event_id);",
    /* 3: dead letters read from the saga.tasks.<queue>.dlq topics, once each (the
     * consumer is at-least-once; the unique position makes a second copy a no-op), with
     * what an operator decided about them. */
    "CREATE TABLE dlq(id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
    " part INTEGER NOT NULL, off INTEGER NOT NULL, queue TEXT NOT NULL, msg_key TEXT,"
    " instance_id TEXT, step_id TEXT, attempt INTEGER, idempotency_key TEXT, activity TEXT,"
    " input TEXT, reason TEXT, headers TEXT, received_ms INTEGER NOT NULL,"
    " task BLOB NOT NULL, status TEXT NOT NULL DEFAULT 'new', updated_ms INTEGER NOT NULL,"
    " UNIQUE(topic, part, off));"
    "CREATE INDEX dlq_queue ON dlq(queue, id);"
    "CREATE INDEX dlq_status ON dlq(status, id);",
    /* 4: the last heartbeat of an attempt (activity leases): when sagad received it, the
     * worker that sent it, and the handler's progress. NULL until the first one. */
    "ALTER TABLE step_attempts ADD COLUMN heartbeat_ms INTEGER;"
    "ALTER TABLE step_attempts ADD COLUMN worker TEXT;"
    "ALTER TABLE step_attempts ADD COLUMN progress TEXT;",
};

_Static_assert(SG_ARRAY_LEN(migrations) == SG_STORE_SCHEMA_VERSION,
               "SG_STORE_SCHEMA_VERSION must be the number of migrations");
_Static_assert(STORE_APPLICATION_ID == 1935763297, "migration 1 stamps STORE_APPLICATION_ID");

/* ---- the statements, prepared once per handle on first use ---- */

#define INST_COLS                                                                       \
    "id, workflow, version, status, reason, input, state, idempotency_key, created_ms," \
    " updated_ms, deadline_ms, seq, hist_seq"
#define ATT_COLS                                                                             \
    "instance_id, step, compensation, attempt, activity, input, status, output, error_code," \
    " error_message, started_ms, deadline_ms, finished_ms, heartbeat_ms, worker, progress"
#define ATT_KEY "instance_id = ?1 AND step = ?2 AND compensation = ?3 AND attempt = ?4"
/* The list's lower bound is one row value (computed by the caller from the cursor and
 * created_after), so that the (created_ms, id) indexes can start right at it. */
#define INST_LIST_SQL(filter)                                                      \
    "SELECT " INST_COLS " FROM instances WHERE (created_ms, id) > (?1, ?2)" filter \
    " ORDER BY created_ms, id LIMIT ?5"
/* Spelling out the active statuses lets the planner use the partial index instances_active
 * for a status that is bound only at run time. */
#define ACTIVE "status IN ('RUNNING', 'COMPENSATING')"
#define DLQ_COLS                                                                            \
    "id, topic, part, off, queue, msg_key, instance_id, step_id, attempt, idempotency_key," \
    " activity, input, reason, headers, received_ms, status, updated_ms, length(task)"
#define DLQ_LIST_SQL(filter) \
    "SELECT " DLQ_COLS " FROM dlq WHERE id > ?1" filter " ORDER BY id LIMIT ?4"
#define EVENT_LIST_SQL(filter)                                                      \
    "SELECT id, type, correlation_id, ts_ms, payload, event_id, source FROM events" \
    " WHERE id > ?1" filter " ORDER BY id LIMIT ?4"

const store_query_t store__queries[STORE_Q__COUNT] = {
    [STORE_Q_BEGIN_WRITE] = {"begin", "BEGIN IMMEDIATE"},
    [STORE_Q_DEF_INSERT] = {"put definition",
                            "INSERT INTO definitions(name, version, sha256, source, loaded_ms)"
                            " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING"},
    [STORE_Q_INST_INSERT] = {"insert instance",
                             "INSERT INTO instances(" INST_COLS ") VALUES (?1, ?2,"
                             " ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"},
    [STORE_Q_INST_UPDATE] =
        {"update instance",
         "UPDATE instances SET status = ?2, reason = ?3, state = ?4, updated_ms = ?5,"
         " deadline_ms = ?6, seq = ?7, hist_seq = ?8 WHERE id = ?1"},
    [STORE_Q_IDEM_PUT] = {"put idempotency key",
                          "INSERT INTO idempotency_keys(workflow, key, instance_id, created_ms)"
                          " VALUES (?1, ?2, ?3, ?4)"},
    [STORE_Q_ATT_INSERT] =
        {"insert attempt",
         "INSERT INTO step_attempts(instance_id, step, compensation, attempt,"
         " activity, input, status, started_ms, deadline_ms)"
         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8) ON CONFLICT DO NOTHING"},
    [STORE_Q_ATT_FINISH] = {"finish attempt",
                            "UPDATE step_attempts SET status = ?5, output = ?6, error_code = ?7,"
                            " error_message = ?8, finished_ms = ?9 WHERE " ATT_KEY
                            " AND status = 'running'"},
    /* A NULL progress keeps the last one: most heartbeats only say "still here". */
    [STORE_Q_ATT_HEARTBEAT] = {"record heartbeat",
                               "UPDATE step_attempts SET heartbeat_ms = ?5, worker = ?6,"
                               " progress = coalesce(?7, progress) WHERE " ATT_KEY
                               " AND status = 'running'"},
    [STORE_Q_HIST_APPEND] =
        {"append history",
         "INSERT INTO history(instance_id, seq, ts_ms, type, step, attempt, detail)"
         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
    [STORE_Q_TIMER_PUT] =
        {"put timer", "INSERT INTO timers(instance_id, kind, step, compensation, attempt, fire_ms)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                      " ON CONFLICT DO UPDATE SET fire_ms = excluded.fire_ms"},
    [STORE_Q_TIMER_DEL] = {"delete timer", "DELETE FROM timers WHERE instance_id = ?1 AND kind = ?2"
                                           " AND step = ?3 AND compensation = ?4 AND attempt = ?5"},
    [STORE_Q_TIMER_DEL_INST] = {"delete timers", "DELETE FROM timers WHERE instance_id = ?1"},
    [STORE_Q_EVENT_APPEND] = {"append event",
                              "INSERT INTO events(type, correlation_id, ts_ms, payload)"
                              " VALUES (?1, ?2, ?3, ?4)"},
    [STORE_Q_EVENT_IMPORT] = {"import event",
                              "INSERT INTO events(event_id, type, correlation_id, ts_ms, source,"
                              " payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                              " ON CONFLICT(event_id) DO NOTHING"},
    [STORE_Q_OUTBOX_PUT] =
        {"put outbox message",
         "INSERT INTO outbox(topic, key, payload, created_ms) VALUES (?1, ?2, ?3, ?4)"},
    [STORE_Q_OUTBOX_DEL] = {"delete outbox message", "DELETE FROM outbox WHERE id = ?1"},
    [STORE_Q_DLQ_INSERT] = {"insert dead letter",
                            "INSERT INTO dlq(topic, part, off, queue, msg_key, instance_id,"
                            " step_id, attempt, idempotency_key, activity, input, reason,"
                            " headers, received_ms, task, status, updated_ms) VALUES (?1, ?2,"
                            " ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 'new',"
                            " ?14) ON CONFLICT(topic, part, off) DO NOTHING"},
    [STORE_Q_DLQ_STATUS] = {"set dead letter status",
                            "UPDATE dlq SET status = ?2, updated_ms = ?3 WHERE id = ?1"},
    [STORE_Q_BEGIN_READ] = {"begin", "BEGIN"},
    [STORE_Q_COMMIT] = {"commit", "COMMIT"},
    [STORE_Q_ROLLBACK] = {"rollback", "ROLLBACK"},
    [STORE_Q_DEF_SAME] = {"put definition",
                          "SELECT sha256 = ?3 FROM definitions WHERE name = ?1 AND version = ?2"},
    [STORE_Q_DEF_SCAN] = {"scan definitions",
                          "SELECT name, version, sha256, source FROM definitions"
                          " ORDER BY name, version"},
    [STORE_Q_INST_GET] = {"get instance", "SELECT " INST_COLS " FROM instances WHERE id = ?1"},
    [STORE_Q_INST_ACTIVE] = {"scan active instances",
                             "SELECT " INST_COLS " FROM instances WHERE " ACTIVE
                             " ORDER BY created_ms, id"},
    [STORE_Q_INST_LIST] = {"list instances", INST_LIST_SQL("")},
    [STORE_Q_INST_LIST_W] = {"list instances", INST_LIST_SQL(" AND workflow = ?3")},
    [STORE_Q_INST_LIST_S] = {"list instances", INST_LIST_SQL(" AND status = ?4")},
    [STORE_Q_INST_LIST_WS] = {"list instances",
                              INST_LIST_SQL(" AND workflow = ?3 AND status = ?4")},
    [STORE_Q_INST_LIST_A] = {"list instances", INST_LIST_SQL(" AND status = ?4 AND " ACTIVE)},
    [STORE_Q_INST_LIST_WA] = {"list instances",
                              INST_LIST_SQL(" AND workflow = ?3 AND status = ?4 AND " ACTIVE)},
    [STORE_Q_INST_COUNT] = {"count instances", "SELECT count(*) FROM instances"},
    [STORE_Q_INST_COUNT_S] = {"count instances",
                              "SELECT count(*) FROM instances WHERE status = ?1"},
    [STORE_Q_INST_COUNT_A] = {"count instances",
                              "SELECT count(*) FROM instances WHERE status = ?1 AND " ACTIVE},
    [STORE_Q_IDEM_GET] = {"get idempotency key", "SELECT instance_id FROM idempotency_keys"
                                                 " WHERE workflow = ?1 AND key = ?2"},
    [STORE_Q_ATT_EXISTS] = {"finish attempt", "SELECT count(*) FROM step_attempts WHERE " ATT_KEY},
    [STORE_Q_ATT_RUNNING] = {"scan running attempts",
                             "SELECT " ATT_COLS " FROM step_attempts WHERE status = 'running'"
                             " ORDER BY instance_id, step, compensation, attempt"},
    [STORE_Q_ATT_OF] = {"list attempts",
                        "SELECT " ATT_COLS " FROM step_attempts WHERE instance_id = ?1"
                        " ORDER BY step, compensation, attempt"},
    [STORE_Q_HIST_LIST] = {"list history",
                           "SELECT seq, ts_ms, type, step, attempt, detail FROM history"
                           " WHERE instance_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"},
    [STORE_Q_TIMER_SCAN] =
        {"scan timers", "SELECT instance_id, kind, step, compensation, attempt, fire_ms FROM timers"
                        " ORDER BY fire_ms, instance_id, kind, step, compensation, attempt"},
    [STORE_Q_EVENT_LIST] = {"list events", EVENT_LIST_SQL("")},
    [STORE_Q_EVENT_LIST_T] = {"list events", EVENT_LIST_SQL(" AND type = ?2")},
    [STORE_Q_EVENT_LIST_C] = {"list events", EVENT_LIST_SQL(" AND correlation_id = ?3")},
    [STORE_Q_EVENT_LIST_TC] = {"list events",
                               EVENT_LIST_SQL(" AND type = ?2 AND correlation_id = ?3")},
    [STORE_Q_OUTBOX_FETCH] = {"fetch outbox",
                              "SELECT id, topic, key, payload FROM outbox WHERE id > ?1"
                              " ORDER BY id LIMIT ?2"},
    [STORE_Q_DLQ_GET] = {"get dead letter", "SELECT " DLQ_COLS ", task FROM dlq WHERE id = ?1"},
    [STORE_Q_DLQ_LIST] = {"list dead letters", DLQ_LIST_SQL("")},
    [STORE_Q_DLQ_LIST_Q] = {"list dead letters", DLQ_LIST_SQL(" AND queue = ?2")},
    [STORE_Q_DLQ_LIST_S] = {"list dead letters", DLQ_LIST_SQL(" AND status = ?3")},
    [STORE_Q_DLQ_LIST_QS] = {"list dead letters", DLQ_LIST_SQL(" AND queue = ?2 AND status = ?3")},
    [STORE_Q_INTEGRITY] = {"integrity check", "PRAGMA integrity_check"},
};

/* ---- connection setup and migrations ---- */

sg_err_t store__map_rc(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
        return SG_ERR_EXISTS;
    default:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return SG_ERR_NOMEM;
    case SQLITE_CONSTRAINT:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
        return SG_ERR_INVALID;
    case SQLITE_READONLY:
        return SG_ERR_STATE;
    case SQLITE_TOOBIG:
        return SG_ERR_LIMIT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_NOLFS:
        return SG_ERR_IO;
    default:
        return SG_ERR_INTERNAL;
    }
}

static sg_err_t fail(sqlite3 *db, int rc, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(db));
    return store__map_rc(rc);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs a one-row query and gives its first column as an integer (NULL -> 0) and, when
 * text is not NULL, as text. No row gives 0 / "". */
static sg_err_t query1(sqlite3 *db, const char *sql, int64_t *out, char *text, size_t textlen,
                       char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
    }
    *out = 0;
    if (text != NULL) {
        text[0] = '\0';
    }
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        const unsigned char *t = text != NULL ? sqlite3_column_text(s, 0) : NULL;
        if (t != NULL) {
            snprintf(text, textlen, "%s", (const char *)t);
        }
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sg_err_t e = rc == SQLITE_OK ? SG_OK : fail(db, rc, sql, err, errlen);
    sqlite3_finalize(s);
    return e;
}

static sg_err_t exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? SG_OK : fail(db, rc, what, err, errlen);
}

static sg_err_t configure(sqlite3 *db, const sg_store_opts_t *o, char *err, size_t errlen)
{
    static const char *const sync_sql[] = {
        [SG_SYNC_FULL] = "PRAGMA synchronous = FULL",
        [SG_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
        [SG_SYNC_OFF] = "PRAGMA synchronous = OFF",
    };
    sqlite3_extended_result_codes(db, 1);
    /* Readers wait out a checkpoint or WAL recovery; the writer only meets a lock when
     * something else (a second writer process, an operator's sqlite3 shell) holds it. */
    sqlite3_busy_timeout(db, 5000);
    /* A file may come from elsewhere: no writes to sqlite_schema through SQL, and no
     * functions with side effects run from views or triggers stored in it. */
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    if (o->readonly) {
        return SG_OK;
    }
    if ((unsigned)o->sync >= SG_ARRAY_LEN(sync_sql)) {
        snprintf(err, errlen, "invalid synchronous setting %d", (int)o->sync);
        return SG_ERR_INVALID;
    }
    int64_t ignored = 0;
    char mode[16];
    sg_err_t rc =
        query1(db, "PRAGMA journal_mode = WAL", &ignored, mode, sizeof(mode), err, errlen);
    if (rc != SG_OK) {
        return rc;
    }
    /* An in-memory database reports "memory": it has no readers to serve anyway. */
    if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0) {
        snprintf(err, errlen, "cannot switch to WAL (journal mode stays \"%s\")", mode);
        return SG_ERR_IO;
    }
    return exec(db, sync_sql[o->sync], "set synchronous", err, errlen);
}

/* Refuses SQLite files of other programs: a foreign application_id, or tables without
 * our schema_migrations (migrating would add our tables next to theirs). */
static sg_err_t check_owner(sqlite3 *db, bool *has_migrations, char *err, size_t errlen)
{
    int64_t app = 0, tables = 0, ours = 0;
    sg_err_t rc = query1(db, "PRAGMA application_id", &app, NULL, 0, err, errlen);
    if (rc == SG_OK) {
        rc = query1(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'", &tables, NULL, 0,
                    err, errlen);
    }
    if (rc == SG_OK) {
        rc = query1(db,
                    "SELECT count(*) FROM sqlite_master"
                    " WHERE type = 'table' AND name = 'schema_migrations'",
                    &ours, NULL, 0, err, errlen);
    }
    if (rc != SG_OK) {
        return rc;
    }
    if ((app != 0 && app != STORE_APPLICATION_ID) || (tables > 0 && ours == 0)) {
        snprintf(err, errlen,
                 "not a sagad database (application_id %" PRId64 ", %" PRId64
                 " tables, no schema_migrations)",
                 app, tables);
        return SG_ERR_INVALID;
    }
    *has_migrations = ours != 0;
    return SG_OK;
}

static sg_err_t too_new(int64_t v, char *err, size_t errlen)
{
    snprintf(err, errlen,
             "database schema version %" PRId64 " is newer than this sagad supports (%d):"
             " run a newer sagad",
             v, SG_STORE_SCHEMA_VERSION);
    return SG_ERR_INVALID;
}

static const char *const version_sql = "SELECT max(version) FROM schema_migrations";

/* Applies the next missing migration, or reports that none is missing (*done). The
 * version is read inside the write transaction so that two writers opening at once
 * cannot both apply the same migration. */
static sg_err_t migrate_one(sqlite3 *db, bool *done, char *err, size_t errlen)
{
    int64_t v = 0;
    sg_err_t rc = exec(db,
                       "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS schema_migrations("
                       "version INTEGER PRIMARY KEY, applied_ms INTEGER)",
                       "start migration", err, errlen);
    if (rc == SG_OK) {
        rc = query1(db, version_sql, &v, NULL, 0, err, errlen);
    }
    if (rc == SG_OK && v > SG_STORE_SCHEMA_VERSION) {
        rc = too_new(v, err, errlen);
    }
    if (rc != SG_OK || v == SG_STORE_SCHEMA_VERSION) {
        *done = true;
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    char what[48];
    snprintf(what, sizeof(what), "migration %" PRId64, v + 1);
    rc = exec(db, migrations[v], what, err, errlen);
    sqlite3_stmt *s = NULL;
    if (rc == SG_OK) {
        int src = sqlite3_prepare_v2(
            db, "INSERT INTO schema_migrations(version, applied_ms) VALUES (?1, ?2)", -1, &s, NULL);
        if (src == SQLITE_OK) {
            sqlite3_bind_int64(s, 1, v + 1);
            sqlite3_bind_int64(s, 2, wall_ms());
            src = sqlite3_step(s);
        }
        rc = src == SQLITE_OK || src == SQLITE_DONE ? SG_OK : fail(db, src, what, err, errlen);
        sqlite3_finalize(s);
    }
    if (rc == SG_OK) {
        rc = exec(db, "COMMIT", what, err, errlen);
    }
    if (rc != SG_OK) {
        *done = true;
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

/* A reader cannot migrate, and its statements name the current columns: it needs the
 * file at exactly our version. */
static sg_err_t check_version(sqlite3 *db, bool has_migrations, char *err, size_t errlen)
{
    int64_t v = 0;
    if (has_migrations) {
        sg_err_t rc = query1(db, version_sql, &v, NULL, 0, err, errlen);
        if (rc != SG_OK) {
            return rc;
        }
    }
    if (v > SG_STORE_SCHEMA_VERSION) {
        return too_new(v, err, errlen);
    }
    if (v < SG_STORE_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "database schema version %" PRId64 " is older than this sagad's (%d):"
                 " open it read-write once to migrate it",
                 v, SG_STORE_SCHEMA_VERSION);
        return SG_ERR_INVALID;
    }
    return SG_OK;
}

sg_err_t store__setup(sqlite3 *db, const sg_store_opts_t *opts, char *err, size_t errlen)
{
    bool has_migrations = false;
    sg_err_t rc = configure(db, opts, err, errlen);
    if (rc == SG_OK) {
        rc = check_owner(db, &has_migrations, err, errlen);
    }
    if (rc != SG_OK || opts->readonly) {
        return rc == SG_OK ? check_version(db, has_migrations, err, errlen) : rc;
    }
    bool done = false;
    while (rc == SG_OK && !done) {
        rc = migrate_one(db, &done, err, errlen);
    }
    return rc;
}

bool sg_sync_parse(const char *name, sg_sync_t *out)
{
    static const char *const names[] = {
        [SG_SYNC_FULL] = "full", [SG_SYNC_NORMAL] = "normal", [SG_SYNC_OFF] = "off"};
    for (size_t i = 0; name != NULL && i < SG_ARRAY_LEN(names); i++) {
        if (strcasecmp(name, names[i]) == 0) {
            *out = (sg_sync_t)i;
            return true;
        }
    }
    return false;
}
