/*
 * store: the handle, its cached statements, the checked decoding of columns (shared with
 * steps.c through store_int.h), and one small function per row operation (the rows of
 * step attempts, history and timers are in steps.c). Every statement is a constant from
 * store__queries (schema.c), prepared once per handle (SQLITE_PREPARE_PERSISTENT) on
 * first use, bound with parameters, and reset with its bindings cleared before the
 * function returns, so no caller pointer outlives a call.
 *
 * It must never build SQL from strings, trust what it reads (a NULL or a wrongly typed
 * value where the schema allows none is reported as a corrupt row, not dereferenced), or
 * write through a read-only handle.
 */
#include "orchestrator/store/store_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- errors ---- */

sg_err_t store__fail(sg_store_t *st, sg_err_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof(st->err), fmt, ap);
    va_end(ap);
    return code;
}

static sg_err_t fail_sql(sg_store_t *st, int rc, const char *what)
{
    return store__fail(st, store__map_rc(rc), "%s: %s", what, sqlite3_errmsg(st->db));
}

sg_err_t store__missing(sg_store_t *st, const char *what, const char *field)
{
    return store__fail(st, SG_ERR_INVALID, "%s: %s is required", what, field);
}

/* ---- running a cached statement ---- */

static sg_err_t prepare(sg_store_t *st, int id)
{
    int rc = sqlite3_prepare_v3(st->db, store__queries[id].sql, -1, SQLITE_PREPARE_PERSISTENT,
                                &st->stmts[id], NULL);
    return rc == SQLITE_OK ? SG_OK : fail_sql(st, rc, store__queries[id].name);
}

/* Gets statement id ready and binds args to it. False (q->err set) if the handle may not
 * run it, it cannot be prepared, or a value cannot be bound; then it needs no reset. */
static bool q_open(q_t *q, sg_store_t *st, int id, const arg_t *args, size_t n)
{
    SG_ASSERT(st != NULL && id >= 0 && id < STORE_Q__COUNT);
    *q = (q_t){.st = st, .what = store__queries[id].name};
    if (id < STORE_Q__FIRST_READ && st->readonly) {
        q->err = store__fail(st, SG_ERR_STATE, "%s: the store was opened read-only", q->what);
        return false;
    }
    if (st->stmts[id] == NULL) {
        q->err = prepare(st, id);
    } else if (sqlite3_stmt_busy(st->stmts[id])) {
        /* Resetting it would pull the rows from under the scan that is calling back. */
        q->err = store__fail(st, SG_ERR_STATE, "%s: called from its own callback", q->what);
    }
    q->s = st->stmts[id];
    int rc = SQLITE_OK;
    for (size_t i = 0; q->err == SG_OK && rc == SQLITE_OK && i < n; i++) {
        const arg_t *a = &args[i];
        int k = (int)i + 1;
        /* SQLITE_STATIC: the bindings are cleared before the call returns. */
        if (a->kind == ARG_INT) {
            rc = sqlite3_bind_int64(q->s, k, a->i);
        } else if (a->p == NULL) {
            rc = sqlite3_bind_null(q->s, k);
        } else if (a->kind == ARG_TEXT) {
            rc = sqlite3_bind_text(q->s, k, a->p, -1, SQLITE_STATIC);
        } else {
            rc = sqlite3_bind_blob64(q->s, k, a->p, a->n, SQLITE_STATIC);
        }
    }
    if (rc != SQLITE_OK) {
        q->err = fail_sql(st, rc, q->what);
        sqlite3_clear_bindings(q->s);
    }
    return q->err == SG_OK;
}

static void q_close(q_t *q)
{
    sqlite3_reset(q->s);
    sqlite3_clear_bindings(q->s);
}

/* Runs a statement that returns no rows; *changes (may be NULL) gets the rows it changed. */
sg_err_t store__run_write(sg_store_t *st, int id, const arg_t *args, size_t n, int *changes)
{
    q_t q;
    if (!q_open(&q, st, id, args, n)) {
        return q.err;
    }
    int rc = sqlite3_step(q.s);
    if (rc == SQLITE_DONE && changes != NULL) {
        *changes = sqlite3_changes(st->db);
    }
    sg_err_t err = rc == SQLITE_DONE ? SG_OK : fail_sql(st, rc, q.what);
    q_close(&q);
    return err;
}

/* Steps through the rows, calling fn for each; *nrows (may be NULL) counts them. */
sg_err_t store__run_read(sg_store_t *st, int id, const arg_t *args, size_t n, row_fn fn, void *arg,
                         size_t *nrows)
{
    q_t q;
    size_t rows = 0;
    if (!q_open(&q, st, id, args, n)) {
        return q.err;
    }
    while (q.err == SG_OK) {
        int rc = sqlite3_step(q.s);
        if (rc != SQLITE_ROW) {
            q.err = rc == SQLITE_DONE ? SG_OK : fail_sql(st, rc, q.what);
            break;
        }
        rows++;
        if (!fn(&q, arg)) {
            break;
        }
    }
    q_close(&q);
    if (nrows != NULL) {
        *nrows = rows;
    }
    return q.err;
}

/* ---- decoding columns: what comes from the file is checked, never trusted ---- */

void store__corrupt(q_t *q, int i, const char *why)
{
    if (q->err == SG_OK) {
        q->err = store__fail(q->st, SG_ERR_IO, "%s: corrupt row: column %s %s", q->what,
                             sqlite3_column_name(q->s, i), why);
    }
}

/* Text of column i; NULL for SQL NULL (a corrupt row if required) and on failure. */
const char *store__col_text(q_t *q, int i, bool required)
{
    int type = sqlite3_column_type(q->s, i);
    if (type == SQLITE_NULL || type == SQLITE_BLOB) {
        if (required || type == SQLITE_BLOB) {
            store__corrupt(q, i, type == SQLITE_NULL ? "is NULL" : "holds a blob, not text");
        }
        return NULL;
    }
    const char *v = (const char *)sqlite3_column_text(q->s, i);
    if (v == NULL && q->err == SG_OK) {
        /* Not NULL in the file, so the conversion to text ran out of memory. */
        q->err = store__fail(q->st, SG_ERR_NOMEM, "%s: out of memory", q->what);
    }
    return v;
}

/* Integer of column i; SQL NULL gives 0 (a corrupt row if required). */
int64_t store__col_int(q_t *q, int i, bool required)
{
    int type = sqlite3_column_type(q->s, i);
    if (type != SQLITE_INTEGER) {
        if (required || type != SQLITE_NULL) {
            store__corrupt(q, i, type == SQLITE_NULL ? "is NULL" : "is not an integer");
        }
        return 0;
    }
    return sqlite3_column_int64(q->s, i);
}

static void col_id(q_t *q, int i, char out[32])
{
    const char *v = store__col_text(q, i, true);
    size_t n = v != NULL ? strlen(v) : 0;
    out[0] = '\0';
    if (v != NULL && (n == 0 || n >= 32)) {
        store__corrupt(q, i, "is not an id of 1 to 31 characters");
    } else if (v != NULL) {
        memcpy(out, v, n + 1);
    }
}

/* A one-value result: the integer in the first column of the first row. */
bool store__int_row(q_t *q, void *arg)
{
    *(int64_t *)arg = store__col_int(q, 0, true);
    return false;
}

/* ---- handle ---- */

sg_err_t sg_store_open(const char *path, const sg_store_opts_t *opts, sg_store_t **out,
                       char *errbuf, size_t errlen)
{
    static const sg_store_opts_t defaults = {.sync = SG_SYNC_FULL, .readonly = false};
    char scratch[8];
    if (errbuf == NULL || errlen == 0) {
        errbuf = scratch;
        errlen = sizeof(scratch);
    }
    errbuf[0] = '\0';
    *out = NULL;
    opts = opts != NULL ? opts : &defaults;
    if (!store__present(path)) {
        snprintf(errbuf, errlen, "open store: a path is required");
        return SG_ERR_INVALID;
    }
    sg_store_t *st = sg_calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(errbuf, errlen, "%s: out of memory", path);
        return SG_ERR_NOMEM;
    }
    st->readonly = opts->readonly;
    int flags = SQLITE_OPEN_NOMUTEX | (opts->readonly ? SQLITE_OPEN_READONLY
                                                      : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path, &st->db, flags, NULL);
    sg_err_t err = SG_OK;
    if (rc != SQLITE_OK) {
        /* Without a handle (out of memory) there is no message to ask for. */
        snprintf(st->err, sizeof(st->err), "%s",
                 st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        err = store__map_rc(rc);
    } else {
        err = store__setup(st->db, opts, st->err, sizeof(st->err));
    }
    /* Ending a transaction must never fail for want of memory: prepare these now. */
    const int eager[] = {st->readonly ? STORE_Q_BEGIN_READ : STORE_Q_BEGIN_WRITE, STORE_Q_COMMIT,
                         STORE_Q_ROLLBACK};
    for (size_t i = 0; err == SG_OK && i < SG_ARRAY_LEN(eager); i++) {
        err = prepare(st, eager[i]);
    }
    if (err != SG_OK) {
        snprintf(errbuf, errlen, "%s: %s", path, st->err);
        sg_store_close(st);
        return err;
    }
    st->err[0] = '\0';
    *out = st;
    return SG_OK;
}

void sg_store_close(sg_store_t *st)
{
    if (st == NULL) {
        return;
    }
    for (size_t i = 0; i < STORE_Q__COUNT; i++) {
        sqlite3_finalize(st->stmts[i]);
    }
    /* Rolls back an open transaction. With every statement finalized the close is not
     * deferred, so the file is released here. */
    sqlite3_close_v2(st->db);
    sg_free(st);
}

const char *sg_store_errmsg(const sg_store_t *st)
{
    return st != NULL ? st->err : "";
}

bool sg_store_readonly(const sg_store_t *st)
{
    return st->readonly;
}

sg_err_t sg_store_begin(sg_store_t *st)
{
    if (!sqlite3_get_autocommit(st->db)) {
        return store__fail(st, SG_ERR_STATE, "begin: a transaction is already open");
    }
    return store__run_write(st, st->readonly ? STORE_Q_BEGIN_READ : STORE_Q_BEGIN_WRITE, NULL, 0,
                            NULL);
}

sg_err_t sg_store_commit(sg_store_t *st)
{
    if (sqlite3_get_autocommit(st->db)) {
        return store__fail(st, SG_ERR_STATE, "commit: no transaction is open");
    }
    return store__run_write(st, STORE_Q_COMMIT, NULL, 0, NULL);
}

void sg_store_rollback(sg_store_t *st)
{
    if (!sqlite3_get_autocommit(st->db)) {
        store__run_write(st, STORE_Q_ROLLBACK, NULL, 0, NULL);
    }
}

typedef struct {
    char *out;
    size_t outlen, len, rows;
    bool first_ok;
} check_t;

static bool check_row(q_t *q, void *arg)
{
    check_t *c = arg;
    const char *line = store__col_text(q, 0, false);
    c->first_ok = c->first_ok || (c->rows == 0 && line != NULL && strcmp(line, "ok") == 0);
    c->rows++;
    if (c->len < c->outlen) {
        int n = snprintf(c->out + c->len, c->outlen - c->len, "%s%s", c->len > 0 ? "\n" : "",
                         line != NULL ? line : "?");
        c->len += n > 0 ? (size_t)n : 0;
    }
    return q->err == SG_OK;
}

sg_err_t sg_store_integrity_check(sg_store_t *st, char *out, size_t outlen)
{
    char scratch[4];
    check_t c = {.out = out, .outlen = outlen};
    if (out == NULL || outlen == 0) {
        c.out = scratch;
        c.outlen = sizeof(scratch);
    }
    c.out[0] = '\0';
    /* Healthy is exactly one row, "ok"; otherwise every row is a finding. */
    sg_err_t err = store__run_read(st, STORE_Q_INTEGRITY, NULL, 0, check_row, &c, NULL);
    if (err != SG_OK) {
        snprintf(c.out, c.outlen, "%s", st->err);
    } else if (!c.first_ok || c.rows != 1) {
        err = store__fail(st, SG_ERR_IO, "integrity check: the database is damaged");
    }
    return err;
}

/* ---- callbacks ---- */

sg_err_t store__no_cb(sg_store_t *st, int id)
{
    return store__missing(st, store__queries[id].name, "a callback");
}

/* ---- definitions ---- */

sg_err_t sg_store_def_put(sg_store_t *st, const char *name, int64_t version, const char *sha256,
                          const char *source, int64_t now_ms)
{
    const char *what = store__queries[STORE_Q_DEF_INSERT].name;
    if (!store__present(name) || !store__present(sha256) || source == NULL) {
        return store__missing(st, what,
                              !store__present(name)     ? "name"
                              : !store__present(sha256) ? "sha256"
                                                        : "source");
    }
    const arg_t a[] = {A_TEXT(name), A_INT(version), A_TEXT(sha256), A_TEXT(source), A_INT(now_ms)};
    int changes = 0;
    sg_err_t err = store__run_write(st, STORE_Q_DEF_INSERT, a, SG_ARRAY_LEN(a), &changes);
    if (err != SG_OK || changes > 0) {
        return err;
    }
    /* The key was taken: harmless if it is the very same definition. */
    int64_t same = 0;
    err = store__run_read(st, STORE_Q_DEF_SAME, a, 3, store__int_row, &same, NULL);
    if (err == SG_OK && !same) {
        err = store__fail(st, SG_ERR_EXISTS,
                          "%s: %s version %" PRId64 " is already loaded with another sha256", what,
                          name, version);
    }
    return err;
}

static bool def_row(q_t *q, void *arg)
{
    const visit_t *v = arg;
    const char *name = store__col_text(q, 0, true);
    int64_t version = store__col_int(q, 1, true);
    const char *sha = store__col_text(q, 2, true);
    const char *source = store__col_text(q, 3, true);
    return q->err == SG_OK && v->cb.def(v->ctx, name, version, sha, source);
}

sg_err_t sg_store_def_scan(sg_store_t *st, sg_store_def_cb cb, void *ctx)
{
    visit_t v = {.cb.def = cb, .ctx = ctx};
    return cb == NULL ? store__no_cb(st, STORE_Q_DEF_SCAN)
                      : store__run_read(st, STORE_Q_DEF_SCAN, NULL, 0, def_row, &v, NULL);
}

/* ---- instances ---- */

static sg_err_t check_inst(sg_store_t *st, int id, const sg_store_inst_t *row, bool insert)
{
    const char *what = store__queries[id].name;
    if (row == NULL) {
        return store__missing(st, what, "a row");
    }
    if (memchr(row->id, '\0', sizeof(row->id)) == NULL || row->id[0] == '\0') {
        return store__fail(st, SG_ERR_INVALID, "%s: id must be 1 to 31 characters", what);
    }
    if (insert && !store__present(row->workflow)) {
        return store__missing(st, what, "workflow");
    }
    if (!store__present(row->status)) {
        return store__missing(st, what, "status");
    }
    if ((insert && row->input == NULL) || row->state == NULL) {
        return store__missing(st, what, row->state == NULL ? "state" : "input");
    }
    return SG_OK;
}

sg_err_t sg_store_inst_insert(sg_store_t *st, const sg_store_inst_t *row)
{
    sg_err_t err = check_inst(st, STORE_Q_INST_INSERT, row, true);
    if (err != SG_OK) {
        return err;
    }
    const char *reason = row->reason != NULL ? row->reason : "";
    const arg_t a[] = {A_TEXT(row->id),         A_TEXT(row->workflow),
                       A_INT(row->version),     A_TEXT(row->status),
                       A_TEXT(reason),          A_TEXT(row->input),
                       A_TEXT(row->state),      A_TEXT(row->idempotency_key),
                       A_INT(row->created_ms),  A_INT(row->updated_ms),
                       A_INT(row->deadline_ms), A_INT(row->seq),
                       A_INT(row->hist_seq)};
    return store__run_write(st, STORE_Q_INST_INSERT, a, SG_ARRAY_LEN(a), NULL);
}

sg_err_t sg_store_inst_update(sg_store_t *st, const sg_store_inst_t *row)
{
    sg_err_t err = check_inst(st, STORE_Q_INST_UPDATE, row, false);
    if (err != SG_OK) {
        return err;
    }
    const char *reason = row->reason != NULL ? row->reason : "";
    const arg_t a[] = {A_TEXT(row->id),    A_TEXT(row->status),    A_TEXT(reason),
                       A_TEXT(row->state), A_INT(row->updated_ms), A_INT(row->deadline_ms),
                       A_INT(row->seq),    A_INT(row->hist_seq)};
    int changes = 0;
    err = store__run_write(st, STORE_Q_INST_UPDATE, a, SG_ARRAY_LEN(a), &changes);
    if (err == SG_OK && changes == 0) {
        err = store__fail(st, SG_ERR_NOT_FOUND, "update instance: no instance %s", row->id);
    }
    return err;
}

static bool inst_row(q_t *q, void *arg)
{
    const visit_t *v = arg;
    sg_store_inst_t r;
    col_id(q, 0, r.id);
    r.workflow = store__col_text(q, 1, true);
    r.version = store__col_int(q, 2, true);
    r.status = store__col_text(q, 3, true);
    r.reason = store__col_text(q, 4, true);
    r.input = store__col_text(q, 5, true);
    r.state = store__col_text(q, 6, true);
    r.idempotency_key = store__col_text(q, 7, false);
    r.created_ms = store__col_int(q, 8, true);
    r.updated_ms = store__col_int(q, 9, true);
    r.deadline_ms = store__col_int(q, 10, true);
    r.seq = store__col_int(q, 11, true);
    r.hist_seq = store__col_int(q, 12, true);
    return q->err == SG_OK && v->cb.inst(v->ctx, &r);
}

sg_err_t sg_store_inst_get(sg_store_t *st, const char *id, sg_store_inst_cb cb, void *ctx)
{
    visit_t v = {.cb.inst = cb, .ctx = ctx};
    const arg_t a[] = {A_TEXT(id)};
    size_t n = 0;
    if (!store__present(id) || cb == NULL) {
        return cb == NULL ? store__no_cb(st, STORE_Q_INST_GET)
                          : store__missing(st, "get instance", "id");
    }
    sg_err_t err = store__run_read(st, STORE_Q_INST_GET, a, 1, inst_row, &v, &n);
    if (err == SG_OK && n == 0) {
        err = store__fail(st, SG_ERR_NOT_FOUND, "get instance: no instance %s", id);
    }
    return err;
}

sg_err_t sg_store_inst_scan_active(sg_store_t *st, sg_store_inst_cb cb, void *ctx)
{
    visit_t v = {.cb.inst = cb, .ctx = ctx};
    return cb == NULL ? store__no_cb(st, STORE_Q_INST_ACTIVE)
                      : store__run_read(st, STORE_Q_INST_ACTIVE, NULL, 0, inst_row, &v, NULL);
}

/* 0 no status, 1 a status, 2 RUNNING or COMPENSATING (which the partial index serves). */
static int status_kind(const char *status)
{
    if (status == NULL) {
        return 0;
    }
    return strcmp(status, "RUNNING") == 0 || strcmp(status, "COMPENSATING") == 0 ? 2 : 1;
}

sg_err_t sg_store_inst_list(sg_store_t *st, const sg_store_inst_filter_t *f, sg_store_inst_cb cb,
                            void *ctx)
{
    static const sg_store_inst_filter_t all = {0};
    visit_t v = {.cb.inst = cb, .ctx = ctx};
    f = f != NULL ? f : &all;
    int id = STORE_Q_INST_LIST + (f->workflow != NULL ? 1 : 0) + 2 * status_kind(f->status);
    /* One exclusive lower bound (created_ms, id) serves both the cursor and created_after:
     * ids are never empty, so (t, "") lies below every row created at t, and whichever of
     * the two bounds is higher implies the other. */
    int64_t from_ms = f->after_id != NULL ? f->after_created_ms : INT64_MIN;
    const char *from_id = f->after_id != NULL ? f->after_id : "";
    if (f->created_after_ms == INT64_MAX) {
        return cb == NULL ? store__no_cb(st, id) : SG_OK;
    }
    if (f->created_after_ms != 0 && (f->after_id == NULL || from_ms <= f->created_after_ms)) {
        from_ms = f->created_after_ms + 1;
        from_id = "";
    }
    const arg_t a[] = {A_INT(from_ms), A_TEXT(from_id), A_TEXT(f->workflow), A_TEXT(f->status),
                       A_INT(store__limit_of(f->limit))};
    return cb == NULL ? store__no_cb(st, id)
                      : store__run_read(st, id, a, SG_ARRAY_LEN(a), inst_row, &v, NULL);
}

sg_err_t sg_store_inst_count(sg_store_t *st, const char *status, int64_t *out)
{
    const arg_t a[] = {A_TEXT(status)};
    *out = 0;
    return store__run_read(st, STORE_Q_INST_COUNT + status_kind(status), a, status != NULL ? 1 : 0,
                           store__int_row, out, NULL);
}

/* ---- idempotency keys ---- */

static bool idem_row(q_t *q, void *arg)
{
    col_id(q, 0, arg);
    return false;
}

sg_err_t sg_store_idem_get(sg_store_t *st, const char *workflow, const char *key, char out_id[32])
{
    const arg_t a[] = {A_TEXT(workflow), A_TEXT(key)};
    size_t n = 0;
    out_id[0] = '\0';
    if (!store__present(workflow) || key == NULL) {
        return store__missing(st, "get idempotency key", key == NULL ? "key" : "workflow");
    }
    sg_err_t err = store__run_read(st, STORE_Q_IDEM_GET, a, 2, idem_row, out_id, &n);
    if (err == SG_OK && n == 0) {
        err = store__fail(st, SG_ERR_NOT_FOUND,
                          "get idempotency key: no instance for key \"%s\" of %s", key, workflow);
    }
    return err;
}

sg_err_t sg_store_idem_put(sg_store_t *st, const char *workflow, const char *key, const char *id,
                           int64_t now_ms)
{
    const arg_t a[] = {A_TEXT(workflow), A_TEXT(key), A_TEXT(id), A_INT(now_ms)};
    if (!store__present(workflow) || key == NULL || !store__present(id)) {
        return store__missing(st, "put idempotency key",
                              !store__present(workflow) ? "workflow"
                              : key == NULL             ? "key"
                                                        : "id");
    }
    return store__run_write(st, STORE_Q_IDEM_PUT, a, SG_ARRAY_LEN(a), NULL);
}

/* ---- events ---- */

sg_err_t sg_store_event_append(sg_store_t *st, const char *type, const char *correlation_id,
                               int64_t ts_ms, const char *payload)
{
    const arg_t a[] = {A_TEXT(type), A_TEXT(correlation_id), A_INT(ts_ms), A_TEXT(payload)};
    if (!store__present(type)) {
        return store__missing(st, "append event", "type");
    }
    return store__run_write(st, STORE_Q_EVENT_APPEND, a, SG_ARRAY_LEN(a), NULL);
}

sg_err_t sg_store_event_import(sg_store_t *st, const char *event_id, const char *type,
                               const char *correlation_id, int64_t ts_ms, const char *source,
                               const char *payload, bool *inserted)
{
    const arg_t a[] = {A_TEXT(event_id), A_TEXT(type),   A_TEXT(correlation_id),
                       A_INT(ts_ms),     A_TEXT(source), A_TEXT(payload)};
    if (!store__present(event_id) || !store__present(type)) {
        return store__missing(st, "import event", !store__present(event_id) ? "event_id" : "type");
    }
    int changes = 0;
    sg_err_t rc = store__run_write(st, STORE_Q_EVENT_IMPORT, a, SG_ARRAY_LEN(a), &changes);
    if (inserted != NULL) {
        *inserted = rc == SG_OK && changes > 0;
    }
    return rc;
}

static bool event_row(q_t *q, void *arg)
{
    const visit_t *v = arg;
    sg_store_event_t ev = {.id = store__col_int(q, 0, true),
                           .type = store__col_text(q, 1, true),
                           .correlation_id = store__col_text(q, 2, false),
                           .ts_ms = store__col_int(q, 3, false),
                           .payload = store__col_text(q, 4, false),
                           .event_id = store__col_text(q, 5, false),
                           .source = store__col_text(q, 6, false)};
    return q->err == SG_OK && v->cb.event(v->ctx, &ev);
}

sg_err_t sg_store_event_list(sg_store_t *st, const char *type, const char *correlation_id,
                             int64_t after_id, size_t limit, sg_store_event_cb cb, void *ctx)
{
    visit_t v = {.cb.event = cb, .ctx = ctx};
    int id = STORE_Q_EVENT_LIST + (type != NULL ? 1 : 0) + (correlation_id != NULL ? 2 : 0);
    const arg_t a[] = {A_INT(after_id), A_TEXT(type), A_TEXT(correlation_id),
                       A_INT(store__limit_of(limit))};
    return cb == NULL ? store__no_cb(st, id)
                      : store__run_read(st, id, a, SG_ARRAY_LEN(a), event_row, &v, NULL);
}

/* ---- outbox ---- */

sg_err_t sg_store_outbox_put(sg_store_t *st, const char *topic, const char *key,
                             const void *payload, size_t len, int64_t now_ms)
{
    /* An empty payload is stored as an empty blob, not NULL: a message with no body is
     * still a message. */
    const arg_t a[] = {A_TEXT(topic), A_TEXT(key), A_BLOB(len > 0 ? payload : "", len),
                       A_INT(now_ms)};
    if (!store__present(topic) || (payload == NULL && len > 0)) {
        return store__missing(st, "put outbox message",
                              !store__present(topic) ? "topic" : "payload");
    }
    return store__run_write(st, STORE_Q_OUTBOX_PUT, a, SG_ARRAY_LEN(a), NULL);
}

static bool outbox_row(q_t *q, void *arg)
{
    const visit_t *v = arg;
    int64_t id = store__col_int(q, 0, true);
    const char *topic = store__col_text(q, 1, true);
    const char *key = store__col_text(q, 2, false);
    int type = sqlite3_column_type(q->s, 3);
    if (type != SQLITE_BLOB && type != SQLITE_NULL) {
        store__corrupt(q, 3, "is not a blob");
    }
    const void *payload = sqlite3_column_blob(q->s, 3);
    int len = sqlite3_column_bytes(q->s, 3);
    if (payload == NULL && len > 0 && q->err == SG_OK) {
        q->err = store__fail(q->st, SG_ERR_NOMEM, "%s: out of memory", q->what);
    }
    return q->err == SG_OK &&
           v->cb.outbox(v->ctx, id, topic, key, len > 0 ? payload : NULL, (size_t)len);
}

sg_err_t sg_store_outbox_fetch(sg_store_t *st, int64_t after_id, size_t limit,
                               sg_store_outbox_cb cb, void *ctx)
{
    visit_t v = {.cb.outbox = cb, .ctx = ctx};
    const arg_t a[] = {A_INT(after_id), A_INT(store__limit_of(limit))};
    return cb == NULL ? store__no_cb(st, STORE_Q_OUTBOX_FETCH)
                      : store__run_read(st, STORE_Q_OUTBOX_FETCH, a, 2, outbox_row, &v, NULL);
}

sg_err_t sg_store_outbox_delete(sg_store_t *st, int64_t id)
{
    const arg_t a[] = {A_INT(id)};
    int changes = 0;
    sg_err_t err = store__run_write(st, STORE_Q_OUTBOX_DEL, a, 1, &changes);
    if (err == SG_OK && changes == 0) {
        err = store__fail(st, SG_ERR_NOT_FOUND, "delete outbox message: no message %" PRId64, id);
    }
    return err;
}

/* ---- dead letters ---- */

sg_err_t sg_store_dlq_insert(sg_store_t *st, const sg_store_dlq_t *row, bool *inserted)
{
    const char *what = store__queries[STORE_Q_DLQ_INSERT].name;
    if (inserted != NULL) {
        *inserted = false;
    }
    if (row == NULL || !store__present(row->topic) || !store__present(row->queue) ||
        (row->task == NULL && row->task_len > 0)) {
        return store__missing(st, what, "topic, queue and task");
    }
    const arg_t a[] = {A_TEXT(row->topic),
                       A_INT(row->partition),
                       A_INT(row->offset),
                       A_TEXT(row->queue),
                       A_TEXT(row->key),
                       A_TEXT(row->instance_id),
                       A_TEXT(row->step_id),
                       A_INT(row->attempt),
                       A_TEXT(row->idempotency_key),
                       A_TEXT(row->activity),
                       A_TEXT(row->input),
                       A_TEXT(row->reason),
                       A_TEXT(row->headers),
                       A_INT(row->received_ms),
                       A_BLOB(row->task_len > 0 ? row->task : "", row->task_len)};
    int changes = 0;
    sg_err_t rc = store__run_write(st, STORE_Q_DLQ_INSERT, a, SG_ARRAY_LEN(a), &changes);
    if (inserted != NULL) {
        *inserted = rc == SG_OK && changes > 0;
    }
    return rc;
}

sg_err_t sg_store_dlq_set_status(sg_store_t *st, int64_t id, const char *status, int64_t now_ms)
{
    const arg_t a[] = {A_INT(id), A_TEXT(status), A_INT(now_ms)};
    if (!store__present(status)) {
        return store__missing(st, store__queries[STORE_Q_DLQ_STATUS].name, "status");
    }
    int changes = 0;
    sg_err_t rc = store__run_write(st, STORE_Q_DLQ_STATUS, a, SG_ARRAY_LEN(a), &changes);
    if (rc == SG_OK && changes == 0) {
        rc = store__fail(st, SG_ERR_NOT_FOUND, "set dead letter status: no dead letter %" PRId64,
                         id);
    }
    return rc;
}

/* Columns as DLQ_COLS (schema.c), then the task blob for a get. */
static bool dlq_row(q_t *q, void *arg)
{
    const visit_t *v = arg;
    sg_store_dlq_t r = {.id = store__col_int(q, 0, true),
                        .topic = store__col_text(q, 1, true),
                        .partition = store__col_int(q, 2, true),
                        .offset = store__col_int(q, 3, true),
                        .queue = store__col_text(q, 4, true),
                        .key = store__col_text(q, 5, false),
                        .instance_id = store__col_text(q, 6, false),
                        .step_id = store__col_text(q, 7, false),
                        .attempt = store__col_int(q, 8, false),
                        .idempotency_key = store__col_text(q, 9, false),
                        .activity = store__col_text(q, 10, false),
                        .input = store__col_text(q, 11, false),
                        .reason = store__col_text(q, 12, false),
                        .headers = store__col_text(q, 13, false),
                        .received_ms = store__col_int(q, 14, true),
                        .status = store__col_text(q, 15, true),
                        .updated_ms = store__col_int(q, 16, true)};
    int64_t len = store__col_int(q, 17, false);
    r.task_len = len > 0 ? (size_t)len : 0;
    if (sqlite3_column_count(q->s) > 18) {
        if (sqlite3_column_type(q->s, 18) != SQLITE_BLOB) {
            store__corrupt(q, 18, "is not a blob");
        }
        r.task = sqlite3_column_blob(q->s, 18);
        if (r.task == NULL && r.task_len > 0 && q->err == SG_OK) {
            q->err = store__fail(q->st, SG_ERR_NOMEM, "%s: out of memory", q->what);
        }
    }
    return q->err == SG_OK && v->cb.dlq(v->ctx, &r);
}

sg_err_t sg_store_dlq_get(sg_store_t *st, int64_t id, sg_store_dlq_cb cb, void *ctx)
{
    visit_t v = {.cb.dlq = cb, .ctx = ctx};
    const arg_t a[] = {A_INT(id)};
    size_t n = 0;
    if (cb == NULL) {
        return store__no_cb(st, STORE_Q_DLQ_GET);
    }
    sg_err_t err = store__run_read(st, STORE_Q_DLQ_GET, a, 1, dlq_row, &v, &n);
    if (err == SG_OK && n == 0) {
        err = store__fail(st, SG_ERR_NOT_FOUND, "get dead letter: no dead letter %" PRId64, id);
    }
    return err;
}

sg_err_t sg_store_dlq_list(sg_store_t *st, const char *queue, const char *status, int64_t after_id,
                           size_t limit, sg_store_dlq_cb cb, void *ctx)
{
    visit_t v = {.cb.dlq = cb, .ctx = ctx};
    int id = STORE_Q_DLQ_LIST + (queue != NULL ? 1 : 0) + (status != NULL ? 2 : 0);
    const arg_t a[] = {A_INT(after_id), A_TEXT(queue), A_TEXT(status),
                       A_INT(store__limit_of(limit))};
    return cb == NULL ? store__no_cb(st, id)
                      : store__run_read(st, id, a, SG_ARRAY_LEN(a), dlq_row, &v, NULL);
}
