/*
 * svc: the shared part of the shop's services. See svc.h for the contract.
 */
#include "activities/common/svc.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "activities/common/events.h"

struct sg_svc {
    char *name;
    char *chaos;
    double error_rate;
    double lost_reply_rate;
    double latency_ms;
    /* One connection shared by every worker thread: SQLite has one writer anyway, and
     * the mutex keeps each transaction whole. */
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *begin;
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
    sqlite3_stmt *idem_get;
    sqlite3_stmt *idem_put;
    sqlite3_stmt *outbox_put;
    sqlite3_stmt *outbox_peek;
    sqlite3_stmt *outbox_ack;
};

struct sg_svc_tx {
    sg_svc_t *svc;
    const char *correlation_id;
};

static const char kit_schema[] =
    "CREATE TABLE IF NOT EXISTS svc_idempotency(key TEXT PRIMARY KEY, activity TEXT NOT NULL,"
    " outcome TEXT NOT NULL CHECK(outcome IN ('ok', 'fatal')), output TEXT, error_code TEXT,"
    " error_message TEXT, ts_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS svc_outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, correlation_id TEXT,"
    " ts_ms INTEGER NOT NULL, json TEXT NOT NULL, proto BLOB NOT NULL);";

/* ---- opening ---- */

/* Runs setup SQL. Workers of one queue starting together race to switch a new file to
 * WAL and to create its tables, and SQLite answers some of those races with SQLITE_BUSY
 * without waiting for the busy timeout: try again, a bounded number of times. */
static int exec_setup(sqlite3 *db, const char *sql, char **emsg)
{
    int rc = SQLITE_BUSY;
    for (int i = 0; i < 200 && (rc == SQLITE_BUSY || rc == SQLITE_LOCKED); i++) {
        if (i > 0) {
            sqlite3_free(*emsg);
            *emsg = NULL;
            sqlite3_sleep(25);
        }
        rc = sqlite3_exec(db, sql, NULL, NULL, emsg);
    }
    return rc;
}

static bool prep(sg_svc_t *svc, const char *sql, sqlite3_stmt **out, char *err, size_t errlen)
{
    if (sqlite3_prepare_v3(svc->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s.db: %s", svc->name, sqlite3_errmsg(svc->db));
        return false;
    }
    return true;
}

void sg_svc_close(sg_svc_t *svc)
{
    if (svc == NULL) {
        return;
    }
    sqlite3_stmt *stmts[] = {svc->begin,    svc->commit,     svc->rollback,    svc->idem_get,
                             svc->idem_put, svc->outbox_put, svc->outbox_peek, svc->outbox_ack};
    for (size_t i = 0; i < SG_ARRAY_LEN(stmts); i++) {
        sqlite3_finalize(stmts[i]);
    }
    sqlite3_close(svc->db);
    pthread_mutex_destroy(&svc->mu);
    sg_free(svc->name);
    sg_free(svc->chaos);
    sg_free(svc);
}

sg_err_t sg_svc_open(const sg_activity_env_t *env, const char *name, const char *schema_sql,
                     sg_svc_t **out, char *err, size_t errlen)
{
    if (env == NULL || env->data_dir == NULL || name == NULL || *name == '\0') {
        snprintf(err, errlen, "the %s service needs a data directory", name ? name : "?");
        return SG_ERR_INVALID;
    }
    sg_svc_t *svc = sg_calloc(1, sizeof(*svc));
    char *path = sg_asprintf("%s/%s.db", env->data_dir, name);
    if (svc == NULL || path == NULL || (svc->name = sg_strdup(name)) == NULL ||
        (env->chaos != NULL && (svc->chaos = sg_strdup(env->chaos)) == NULL)) {
        sg_free(path);
        if (svc != NULL) {
            sg_free(svc->name);
            sg_free(svc);
        }
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    pthread_mutex_init(&svc->mu, NULL);
    svc->error_rate = sg_chaos_value(svc->chaos, name, "error_rate", 0);
    svc->lost_reply_rate = sg_chaos_value(svc->chaos, name, "lost_reply_rate", 0);
    svc->latency_ms = sg_chaos_value(svc->chaos, name, "latency_ms", 0);

    int rc = sqlite3_open_v2(
        path, &svc->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path,
                 svc->db ? sqlite3_errmsg(svc->db) : sqlite3_errstr(rc));
        sg_free(path);
        sg_svc_close(svc);
        return SG_ERR_IO;
    }
    sg_free(path);
    sqlite3_busy_timeout(svc->db, 10000);
    char *emsg = NULL;
    if (exec_setup(svc->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", &emsg) !=
            SQLITE_OK ||
        exec_setup(svc->db, kit_schema, &emsg) != SQLITE_OK ||
        (schema_sql != NULL && exec_setup(svc->db, schema_sql, &emsg) != SQLITE_OK)) {
        snprintf(err, errlen, "%s.db: %s", name, emsg ? emsg : sqlite3_errmsg(svc->db));
        sqlite3_free(emsg);
        sg_svc_close(svc);
        return SG_ERR_IO;
    }
    bool ok = prep(svc, "BEGIN IMMEDIATE", &svc->begin, err, errlen) &&
              prep(svc, "COMMIT", &svc->commit, err, errlen) &&
              prep(svc, "ROLLBACK", &svc->rollback, err, errlen) &&
              prep(svc,
                   "SELECT outcome, output, error_code, error_message FROM svc_idempotency"
                   " WHERE key = ?1",
                   &svc->idem_get, err, errlen) &&
              prep(svc,
                   "INSERT INTO svc_idempotency(key, activity, outcome, output, error_code,"
                   " error_message, ts_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                   &svc->idem_put, err, errlen) &&
              prep(svc,
                   "INSERT INTO svc_outbox(id, type, correlation_id, ts_ms, json, proto)"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                   &svc->outbox_put, err, errlen) &&
              prep(svc,
                   "SELECT seq, id, type, correlation_id, ts_ms, json, proto FROM svc_outbox"
                   " ORDER BY seq LIMIT ?1",
                   &svc->outbox_peek, err, errlen) &&
              prep(svc, "DELETE FROM svc_outbox WHERE seq <= ?1", &svc->outbox_ack, err, errlen);
    if (!ok) {
        sg_svc_close(svc);
        return SG_ERR_IO;
    }
    *out = svc;
    return SG_OK;
}

const char *sg_svc_name(const sg_svc_t *svc)
{
    return svc->name;
}

const char *sg_svc_chaos(const sg_svc_t *svc)
{
    return svc->chaos;
}

sqlite3 *sg_svc_db(sg_svc_tx_t *tx)
{
    return tx->svc->db;
}

sg_svc_t *sg_svc_of(sg_svc_tx_t *tx)
{
    return tx->svc;
}

/* ---- failures ---- */

void sg_svc_db_fail(sg_svc_tx_t *tx, sg_task_result_t *res, const char *what)
{
    char code[64];
    snprintf(code, sizeof(code), "%s.store", tx->svc->name);
    sg_task_fail(res, SG_TASK_RETRYABLE, code, "%s.db: %s: %s", tx->svc->name, what,
                 sqlite3_errmsg(tx->svc->db));
}

static void invalid_v(const sg_svc_t *svc, sg_task_result_t *res, const char *fmt, va_list ap)
{
    char code[64], msg[512];
    snprintf(code, sizeof(code), "%s.invalid_input", svc->name);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    sg_task_fail(res, SG_TASK_FATAL, code, "%s", msg);
}

void sg_svc_invalid(sg_svc_tx_t *tx, sg_task_result_t *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    invalid_v(tx->svc, res, fmt, ap);
    va_end(ap);
}

/* ---- typed readers ---- */

bool sg_svc_str_opt(sg_svc_tx_t *tx, const cJSON *obj, const char *field, size_t max_len,
                    const char **out, sg_task_result_t *res)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    *out = NULL;
    if (v == NULL || cJSON_IsNull(v)) {
        return true;
    }
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) > max_len) {
        sg_svc_invalid(tx, res, "field \"%s\" must be a string of 1 to %zu bytes", field, max_len);
        return false;
    }
    *out = v->valuestring;
    return true;
}

bool sg_svc_str(sg_svc_tx_t *tx, const cJSON *obj, const char *field, size_t max_len,
                const char **out, sg_task_result_t *res)
{
    if (!sg_svc_str_opt(tx, obj, field, max_len, out, res)) {
        return false;
    }
    if (*out == NULL) {
        sg_svc_invalid(tx, res, "field \"%s\" is required", field);
        return false;
    }
    return true;
}

bool sg_svc_int(sg_svc_tx_t *tx, const cJSON *obj, const char *field, int64_t min, int64_t max,
                int64_t *out, sg_task_result_t *res)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (v == NULL || cJSON_IsNull(v)) {
        sg_svc_invalid(tx, res, "field \"%s\" is required", field);
        return false;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (!cJSON_IsNumber(v) || d != (double)(int64_t)d || d < (double)min || d > (double)max) {
        sg_svc_invalid(tx, res, "field \"%s\" must be an integer from %lld to %lld", field,
                       (long long)min, (long long)max);
        return false;
    }
    *out = (int64_t)d;
    return true;
}

/* ---- chaos ---- */

double sg_chaos_value(const char *spec, const char *queue, const char *key, double dflt)
{
    if (spec == NULL || queue == NULL || key == NULL) {
        return dflt;
    }
    size_t ql = strlen(queue), kl = strlen(key);
    const char *p = spec;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        if (len > ql + 1 + kl && strncmp(p, queue, ql) == 0 && p[ql] == '.' &&
            strncmp(p + ql + 1, key, kl) == 0 && p[ql + 1 + kl] == '=') {
            char buf[64];
            size_t vl = len - (ql + 2 + kl);
            if (vl < sizeof(buf)) {
                memcpy(buf, p + ql + 2 + kl, vl);
                buf[vl] = '\0';
                char *tail;
                errno = 0;
                double v = strtod(buf, &tail);
                if (errno == 0 && tail != buf && (*tail == '\0' || *tail == ' ')) {
                    return v;
                }
            }
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
    }
    return dflt;
}

double sg_svc_random(void)
{
    return (double)(sg_random64() >> 11) / 9007199254740992.0;
}

/* Sleeps ms milliseconds, but not past deadline_ms (0: none). */
static void sleep_bounded(double ms, uint64_t deadline_ms)
{
    if (deadline_ms != 0) {
        uint64_t now = sg_now_ms();
        double left = now >= deadline_ms ? 0 : (double)(deadline_ms - now);
        if (ms > left) {
            ms = left;
        }
    }
    if (ms <= 0) {
        return;
    }
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                          .tv_nsec = (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- statements ---- */

static bool step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE;
}

static bool tx_begin(sg_svc_t *svc)
{
    return step_done(svc->begin);
}

static bool tx_commit(sg_svc_t *svc)
{
    if (step_done(svc->commit)) {
        return true;
    }
    step_done(svc->rollback);
    return false;
}

static void tx_rollback(sg_svc_t *svc)
{
    if (!sqlite3_get_autocommit(svc->db)) {
        step_done(svc->rollback);
    }
}

/* Looks key up. 1: found (res filled with the recorded outcome), 0: not recorded,
 * -1: database error. */
static int idem_load(sg_svc_t *svc, const char *key, sg_task_result_t *res)
{
    sqlite3_stmt *s = svc->idem_get;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (found == 1) {
        const char *outcome = (const char *)sqlite3_column_text(s, 0);
        if (outcome != NULL && strcmp(outcome, "ok") == 0) {
            sg_task_ok(res, (const char *)sqlite3_column_text(s, 1));
        } else {
            const char *code = (const char *)sqlite3_column_text(s, 2);
            const char *msg = (const char *)sqlite3_column_text(s, 3);
            sg_task_fail(res, SG_TASK_FATAL, code ? code : "saga.unknown", "%s", msg ? msg : "");
        }
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return found;
}

static bool idem_put(sg_svc_t *svc, const sg_task_t *task, const sg_task_result_t *res)
{
    sqlite3_stmt *s = svc->idem_put;
    bool ok = res->outcome == SG_TASK_OK;
    sqlite3_bind_text(s, 1, task->idempotency_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, task->activity ? task->activity : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, ok ? "ok" : "fatal", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, ok ? res->output : NULL, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, ok ? NULL : res->error_code, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, ok ? NULL : res->error_message, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 7, (sqlite3_int64)sg_now_ms());
    return step_done(s);
}

/* ---- the idempotent transaction ---- */

static void store_fail(sg_svc_t *svc, sg_task_result_t *res, const char *what)
{
    char code[64];
    snprintf(code, sizeof(code), "%s.store", svc->name);
    sg_task_fail(res, SG_TASK_RETRYABLE, code, "%s.db: %s: %s", svc->name, what,
                 sqlite3_errmsg(svc->db));
}

/* Runs op in the open transaction and records its final outcome. False: roll back. */
static bool run_op(sg_svc_t *svc, const sg_task_t *task, sg_svc_op_fn op, void *arg,
                   const cJSON *input, sg_task_result_t *res)
{
    int found = idem_load(svc, task->idempotency_key, res);
    if (found != 0) {
        if (found < 0) {
            store_fail(svc, res, "idempotency lookup");
        }
        return false; /* nothing to write either way */
    }
    if (!task->compensation) {
        char *ckey = sg_asprintf("%s/compensate", task->idempotency_key);
        if (ckey == NULL) {
            sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
            return false;
        }
        sg_task_result_t comp = {0};
        int undone = idem_load(svc, ckey, &comp);
        sg_free(ckey);
        sg_task_result_fini(&comp);
        if (undone < 0) {
            store_fail(svc, res, "idempotency lookup");
            return false;
        }
        if (undone == 1) {
            char code[64];
            snprintf(code, sizeof(code), "%s.compensated", svc->name);
            sg_task_fail(res, SG_TASK_FATAL, code,
                         "%s arrived after its compensation ran; it takes no effect",
                         task->activity ? task->activity : "the task");
            return idem_put(svc, task, res) || (store_fail(svc, res, "record"), false);
        }
    }
    sg_svc_tx_t tx = {.svc = svc, .correlation_id = task->instance_id};
    op(&tx, task, input, arg, res);
    if (res->outcome == SG_TASK_RETRYABLE) {
        return false;
    }
    if (res->outcome == SG_TASK_OK && res->output == NULL) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return false;
    }
    if (!idem_put(svc, task, res)) {
        store_fail(svc, res, "record");
        return false;
    }
    return true;
}

void sg_svc_run(sg_svc_t *svc, const sg_task_t *task, sg_svc_op_fn op, void *arg,
                sg_task_result_t *res)
{
    if (task->idempotency_key == NULL || *task->idempotency_key == '\0') {
        char code[64];
        snprintf(code, sizeof(code), "%s.invalid_input", svc->name);
        sg_task_fail(res, SG_TASK_FATAL, code, "the task has no idempotency key");
        return;
    }
    cJSON *input = cJSON_ParseWithOpts(task->input ? task->input : "", NULL, true);
    if (!cJSON_IsObject(input)) {
        char code[64];
        snprintf(code, sizeof(code), "%s.invalid_input", svc->name);
        sg_task_fail(res, SG_TASK_FATAL, code, "%s: the input must be a JSON object",
                     task->activity ? task->activity : svc->name);
        cJSON_Delete(input);
        return;
    }
    if (svc->latency_ms > 0) {
        sleep_bounded(sg_svc_random() * svc->latency_ms, task->deadline_ms);
    }
    if (svc->error_rate > 0 && sg_svc_random() < svc->error_rate) {
        char code[64];
        snprintf(code, sizeof(code), "%s.unavailable", svc->name);
        sg_task_fail(res, SG_TASK_RETRYABLE, code, "injected transient failure (chaos)");
        cJSON_Delete(input);
        return;
    }

    pthread_mutex_lock(&svc->mu);
    if (!tx_begin(svc)) {
        store_fail(svc, res, "begin");
    } else if (!run_op(svc, task, op, arg, input, res)) {
        tx_rollback(svc);
    } else if (!tx_commit(svc)) {
        store_fail(svc, res, "commit");
    }
    pthread_mutex_unlock(&svc->mu);
    cJSON_Delete(input);

    if (svc->lost_reply_rate > 0 && res->outcome != SG_TASK_RETRYABLE &&
        sg_svc_random() < svc->lost_reply_rate) {
        char code[64];
        snprintf(code, sizeof(code), "%s.reply_lost", svc->name);
        sg_task_fail(res, SG_TASK_RETRYABLE, code,
                     "injected lost reply (chaos): the outcome is recorded");
    }
}

sg_err_t sg_svc_exec(sg_svc_t *svc, sg_err_t (*fn)(sg_svc_tx_t *tx, void *arg), void *arg)
{
    sg_svc_tx_t tx = {.svc = svc};
    pthread_mutex_lock(&svc->mu);
    sg_err_t rc = tx_begin(svc) ? fn(&tx, arg) : SG_ERR_IO;
    if (rc == SG_OK) {
        rc = tx_commit(svc) ? SG_OK : SG_ERR_IO;
    } else {
        tx_rollback(svc);
    }
    pthread_mutex_unlock(&svc->mu);
    return rc;
}

/* ---- events ---- */

static sg_err_t emit(sg_svc_t *svc, const char *type, const char *correlation_id, cJSON *fields)
{
    if (fields == NULL || !cJSON_IsObject(fields)) {
        cJSON_Delete(fields);
        return fields == NULL ? SG_ERR_NOMEM : SG_ERR_INVALID;
    }
    char id[27];
    uint64_t now = sg_now_ms();
    sg_ulid_new(now, id);
    /* The envelope goes first so the JSON reads like the message. */
    cJSON *ev = cJSON_CreateObject();
    if (ev == NULL || !cJSON_AddStringToObject(ev, "event_id", id) ||
        !cJSON_AddStringToObject(ev, "type", type) ||
        !cJSON_AddNumberToObject(ev, "time_ms", (double)now) ||
        (correlation_id && !cJSON_AddStringToObject(ev, "correlation_id", correlation_id)) ||
        !cJSON_AddStringToObject(ev, "source", svc->name)) {
        cJSON_Delete(ev);
        cJSON_Delete(fields);
        return SG_ERR_NOMEM;
    }
    while (fields->child != NULL) {
        cJSON *item = cJSON_DetachItemViaPointer(fields, fields->child);
        cJSON_AddItemToObject(ev, item->string, item);
    }
    cJSON_Delete(fields);

    uint8_t *proto = NULL;
    size_t len = 0;
    char err[256];
    sg_err_t rc = sg_event_encode(type, ev, &proto, &len, err, sizeof(err));
    char *json = rc == SG_OK ? cJSON_PrintUnformatted(ev) : NULL;
    cJSON_Delete(ev);
    if (rc != SG_OK || json == NULL) {
        sg_free(proto);
        return rc != SG_OK ? rc : SG_ERR_NOMEM;
    }
    sqlite3_stmt *s = svc->outbox_put;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, correlation_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)now);
    sqlite3_bind_text(s, 5, json, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 6, proto, (int)len, SQLITE_STATIC);
    bool ok = step_done(s);
    cJSON_free(json);
    sg_free(proto);
    return ok ? SG_OK : SG_ERR_IO;
}

sg_err_t sg_svc_emit(sg_svc_tx_t *tx, const char *type, cJSON *fields)
{
    return emit(tx->svc, type, tx->correlation_id, fields);
}

sg_err_t sg_svc_emit_in(sg_svc_tx_t *tx, const char *type, const char *correlation_id,
                        cJSON *fields)
{
    return emit(tx->svc, type, correlation_id, fields);
}

typedef struct {
    const char *type;
    const char *correlation_id;
    cJSON *fields;
} emit_now_t;

static sg_err_t emit_now_fn(sg_svc_tx_t *tx, void *arg)
{
    emit_now_t *e = arg;
    cJSON *f = e->fields;
    e->fields = NULL;
    return emit(tx->svc, e->type, e->correlation_id, f);
}

sg_err_t sg_svc_emit_now(sg_svc_t *svc, const char *type, const char *correlation_id, cJSON *fields)
{
    emit_now_t e = {.type = type, .correlation_id = correlation_id, .fields = fields};
    sg_err_t rc = sg_svc_exec(svc, emit_now_fn, &e);
    cJSON_Delete(e.fields); /* not taken when BEGIN failed */
    return rc;
}

sg_err_t sg_svc_events_peek(sg_svc_t *svc, size_t max, sg_event_fn fn, void *arg)
{
    pthread_mutex_lock(&svc->mu);
    sqlite3_stmt *s = svc->outbox_peek;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)(max ? max : 1));
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        sg_domain_event_t ev = {
            .seq = sqlite3_column_int64(s, 0),
            .id = (const char *)sqlite3_column_text(s, 1),
            .type = (const char *)sqlite3_column_text(s, 2),
            .correlation_id = (const char *)sqlite3_column_text(s, 3),
            .ts_ms = sqlite3_column_int64(s, 4),
            .json = (const char *)sqlite3_column_text(s, 5),
            .proto = sqlite3_column_blob(s, 6),
            .proto_len = (size_t)sqlite3_column_bytes(s, 6),
        };
        if (!fn(arg, &ev)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    pthread_mutex_unlock(&svc->mu);
    return rc == SQLITE_DONE ? SG_OK : SG_ERR_IO;
}

sg_err_t sg_svc_events_ack(sg_svc_t *svc, int64_t upto_seq)
{
    pthread_mutex_lock(&svc->mu);
    sqlite3_bind_int64(svc->outbox_ack, 1, (sqlite3_int64)upto_seq);
    bool ok = step_done(svc->outbox_ack);
    pthread_mutex_unlock(&svc->mu);
    return ok ? SG_OK : SG_ERR_IO;
}

/* ---- readers from outside ---- */

char *sg_svc_read_json(const char *data_dir, const char *service, const char *key,
                       int (*read)(sqlite3 *db, const char *key, char **out))
{
    if (data_dir == NULL || service == NULL || key == NULL) {
        return NULL;
    }
    char *path = sg_asprintf("%s/%s.db", data_dir, service);
    sqlite3 *db = NULL;
    char *out = NULL;
    if (path != NULL &&
        sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK) {
            if (read(db, key, &out) != 1) {
                sg_free(out);
                out = NULL;
            }
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        }
    }
    sqlite3_close(db);
    sg_free(path);
    return out;
}
