/*
 * worker deliveries: how many times each task message was started and did not finish,
 * in <data_dir>/saga-worker.db, so that a task that crashes the worker is recognised
 * after the restart that the crash caused (memory would forget it) and dead-lettered
 * once it has been started max_deliveries times. A row exists from the start of a task
 * until its result (or dead letter) is on Kafka; rows a crash left behind for messages
 * that finished are forgotten after a week.
 *
 * WAL with synchronous=NORMAL: a row survives the crash of the process (the case that
 * matters), not necessarily a power loss. Several workers sharing a data dir share the
 * file. It must never block a task for long: one short statement per call.
 */
#include "orchestrator/log/log.h"
#include "worker/worker_int.h"

#include <sqlite3.h>
#include <stdio.h>

#define WEEK_MS (7ull * 24 * 3600 * 1000)

struct wk_deliveries {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *get, *bump, *forget;
};

static const char schema_sql[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS deliveries(topic TEXT NOT NULL, part INTEGER NOT NULL,"
    " off INTEGER NOT NULL, starts INTEGER NOT NULL, first_ms INTEGER NOT NULL,"
    " last_ms INTEGER NOT NULL, PRIMARY KEY(topic, part, off)) WITHOUT ROWID;";

sg_err_t wk_deliveries_open(const char *data_dir, wk_deliveries_t **out, char *err, size_t errlen)
{
    wk_deliveries_t *dl = sg_calloc(1, sizeof(*dl));
    char *path = sg_asprintf("%s/saga-worker.db", data_dir);
    if (dl == NULL || path == NULL) {
        sg_free(dl);
        sg_free(path);
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    pthread_mutex_init(&dl->mu, NULL);
    int rc = sqlite3_open_v2(path, &dl->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(dl->db, 5000);
        /* Workers started together race to switch a new file to WAL, and SQLite answers
         * that race with SQLITE_BUSY without waiting: try again, a bounded number of times. */
        for (int i = 0; i < 200; i++) {
            rc = sqlite3_exec(dl->db, schema_sql, NULL, NULL, NULL);
            if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
                break;
            }
            sqlite3_sleep(25);
        }
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(
            dl->db, "SELECT starts FROM deliveries WHERE topic=?1 AND part=?2 AND off=?3", -1,
            &dl->get, NULL);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(
            dl->db,
            "INSERT INTO deliveries VALUES(?1, ?2, ?3, 1, ?4, ?4) ON CONFLICT(topic, part, off)"
            " DO UPDATE SET starts = starts + 1, last_ms = excluded.last_ms RETURNING starts",
            -1, &dl->bump, NULL);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(dl->db,
                                "DELETE FROM deliveries WHERE topic=?1 AND part=?2 AND off=?3", -1,
                                &dl->forget, NULL);
    }
    if (rc == SQLITE_OK) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DELETE FROM deliveries WHERE last_ms < %lld",
                 (long long)(sg_now_ms() - WEEK_MS));
        rc = sqlite3_exec(dl->db, sql, NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, dl->db ? sqlite3_errmsg(dl->db) : "cannot open");
        sg_free(path);
        wk_deliveries_close(dl);
        return SG_ERR_IO;
    }
    sg_free(path);
    *out = dl;
    return SG_OK;
}

void wk_deliveries_close(wk_deliveries_t *dl)
{
    if (dl == NULL) {
        return;
    }
    sqlite3_finalize(dl->get);
    sqlite3_finalize(dl->bump);
    sqlite3_finalize(dl->forget);
    sqlite3_close(dl->db);
    pthread_mutex_destroy(&dl->mu);
    sg_free(dl);
}

static void bind_key(sqlite3_stmt *s, const char *topic, int32_t partition, int64_t offset)
{
    sqlite3_bind_text(s, 1, topic, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, partition);
    sqlite3_bind_int64(s, 3, offset);
}

/* Steps s (bound by the caller) once; the first column of a row, 0 without one, -1 on an
 * error (logged). Caller holds mu; resets s. */
static int64_t step_count(wk_deliveries_t *dl, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : rc == SQLITE_DONE ? 0 : -1;
    if (n < 0) {
        sg_log(SG_LOG_ERROR, NULL, "saga-worker.db: %s: %s", what, sqlite3_errmsg(dl->db));
    }
    if (rc == SQLITE_ROW) {
        sqlite3_step(s); /* RETURNING: finish the statement before reset */
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return n;
}

int64_t wk_deliveries_get(wk_deliveries_t *dl, const char *topic, int32_t partition, int64_t offset)
{
    pthread_mutex_lock(&dl->mu);
    bind_key(dl->get, topic, partition, offset);
    int64_t n = step_count(dl, dl->get, "reading a delivery count");
    pthread_mutex_unlock(&dl->mu);
    return n;
}

int64_t wk_deliveries_bump(wk_deliveries_t *dl, const char *topic, int32_t partition,
                           int64_t offset)
{
    pthread_mutex_lock(&dl->mu);
    bind_key(dl->bump, topic, partition, offset);
    sqlite3_bind_int64(dl->bump, 4, (sqlite3_int64)sg_now_ms());
    int64_t n = step_count(dl, dl->bump, "counting a delivery");
    pthread_mutex_unlock(&dl->mu);
    return n;
}

void wk_deliveries_forget(wk_deliveries_t *dl, const char *topic, int32_t partition, int64_t offset)
{
    pthread_mutex_lock(&dl->mu);
    bind_key(dl->forget, topic, partition, offset);
    step_count(dl, dl->forget, "forgetting a delivery");
    pthread_mutex_unlock(&dl->mu);
}
