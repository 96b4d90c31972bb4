/*
 * order store: the order service's tables, its state machine, and the JSON document of
 * an order (for order.get and sg_order_get_json).
 *
 * Every status change goes through order__move, which checks the transition, applies
 * it only if the row is still as loaded (status and version in the WHERE clause, since
 * several processes may share the file) and appends the history row in the same
 * transaction. This file never starts a write transaction of its own: the kit's
 * sg_svc_run / sg_svc_exec hold one around every caller.
 */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "activities/order/order.h"
#include "activities/order/order_int.h"
#include "orchestrator/base/base.h"

/* ---- the state machine ---- */

static const char *const status_names[ORDER__NSTATUS] = {
    [ORDER_PENDING] = "pending",     [ORDER_APPROVED] = "approved",
    [ORDER_REJECTED] = "rejected",   [ORDER_CANCELLING] = "cancelling",
    [ORDER_CANCELLED] = "cancelled",
};

/* allowed[from][to]: the arrows of the life cycle in order_int.h, nothing else. */
static const bool allowed[ORDER__NSTATUS][ORDER__NSTATUS] = {
    [ORDER_PENDING] = {[ORDER_APPROVED] = true, [ORDER_REJECTED] = true},
    [ORDER_APPROVED] = {[ORDER_CANCELLING] = true},
    [ORDER_CANCELLING] = {[ORDER_APPROVED] = true, [ORDER_CANCELLED] = true},
};

const char *order__status_name(order_status_t st)
{
    return (unsigned)st < ORDER__NSTATUS ? status_names[st] : "unknown";
}

bool order__status_parse(const char *s, order_status_t *out)
{
    for (int i = 0; s != NULL && i < ORDER__NSTATUS; i++) {
        if (strcmp(s, status_names[i]) == 0) {
            *out = (order_status_t)i;
            return true;
        }
    }
    return false;
}

bool order__transition_valid(order_status_t from, order_status_t to)
{
    return (unsigned)from < ORDER__NSTATUS && (unsigned)to < ORDER__NSTATUS && allowed[from][to];
}

/* The status names below must match status_names. Lines are a table of their own so
 * the other services' checkers can join them; the shipping address is kept as the JSON
 * object it came as. */
const char order__schema_sql[] =
    "CREATE TABLE IF NOT EXISTS orders("
    " order_id TEXT PRIMARY KEY,"
    " customer_id TEXT NOT NULL,"
    " email TEXT,"
    " total INTEGER NOT NULL CHECK(total >= 0),"
    " currency TEXT NOT NULL,"
    " shipping_address TEXT,"
    " status TEXT NOT NULL"
    "  CHECK(status IN ('pending', 'approved', 'rejected', 'cancelling', 'cancelled')),"
    " previous_status TEXT"
    "  CHECK(previous_status IN ('pending', 'approved', 'rejected', 'cancelling', 'cancelled')),"
    " reservation_id TEXT,"
    " payment_id TEXT,"
    " cancel_reason TEXT,"
    " cancel_requested_by TEXT,"
    " cancel_saga_id TEXT,"
    " saga_id TEXT,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " version INTEGER NOT NULL DEFAULT 1 CHECK(version >= 1));"
    "CREATE TABLE IF NOT EXISTS order_lines("
    " order_id TEXT NOT NULL REFERENCES orders(order_id),"
    " line_no INTEGER NOT NULL,"
    " sku TEXT NOT NULL,"
    " qty INTEGER NOT NULL CHECK(qty > 0),"
    " price INTEGER NOT NULL CHECK(price >= 0),"
    " PRIMARY KEY(order_id, line_no)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS order_history("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " order_id TEXT NOT NULL,"
    " from_status TEXT,"
    " to_status TEXT NOT NULL,"
    " reason TEXT,"
    " saga_id TEXT,"
    " activity TEXT,"
    " ts_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS order_history_by_order ON order_history(order_id, seq);";

/* ---- statements ---- */

static bool bind_v(sqlite3_stmt *s, const char *types, va_list ap)
{
    for (int i = 0; types[i] != '\0'; i++) {
        int rc;
        if (types[i] == 's') {
            const char *v = va_arg(ap, const char *);
            rc = v != NULL ? sqlite3_bind_text(s, i + 1, v, -1, SQLITE_TRANSIENT)
                           : sqlite3_bind_null(s, i + 1);
        } else {
            SG_ASSERT(types[i] == 'i');
            rc = sqlite3_bind_int64(s, i + 1, (sqlite3_int64)va_arg(ap, int64_t));
        }
        if (rc != SQLITE_OK) {
            return false;
        }
    }
    return true;
}

int order__exec(sqlite3 *db, const char *sql, const char *types, ...)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        return -1;
    }
    va_list ap;
    va_start(ap, types);
    bool bound = bind_v(s, types, ap);
    va_end(ap);
    int rc = bound ? sqlite3_step(s) : SQLITE_ERROR;
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? sqlite3_changes(db) : -1;
}

/* ---- rows ---- */

static char *col_dup(sqlite3_stmt *s, int i, bool *ok)
{
    const char *v = (const char *)sqlite3_column_text(s, i);
    if (v == NULL) {
        return NULL;
    }
    char *copy = sg_strdup(v);
    *ok = *ok && copy != NULL;
    return copy;
}

void order__row_fini(order_row_t *row)
{
    sg_free(row->customer_id);
    sg_free(row->email);
    sg_free(row->currency);
    sg_free(row->saga_id);
    sg_free(row->cancel_saga_id);
    sg_free(row->reservation_id);
    sg_free(row->payment_id);
    memset(row, 0, sizeof(*row));
}

int order__row_load(sqlite3 *db, const char *order_id, order_row_t *row)
{
    memset(row, 0, sizeof(*row));
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT customer_id, email, currency, saga_id, cancel_saga_id,"
                           " reservation_id, payment_id, status, previous_status, total, version"
                           " FROM orders WHERE order_id = ?1",
                           -1, &s, NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    int found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (found == 1) {
        bool ok = true;
        row->customer_id = col_dup(s, 0, &ok);
        row->email = col_dup(s, 1, &ok);
        row->currency = col_dup(s, 2, &ok);
        row->saga_id = col_dup(s, 3, &ok);
        row->cancel_saga_id = col_dup(s, 4, &ok);
        row->reservation_id = col_dup(s, 5, &ok);
        row->payment_id = col_dup(s, 6, &ok);
        const char *prev = (const char *)sqlite3_column_text(s, 8);
        row->has_previous = prev != NULL;
        /* The CHECK constraints make a bad status impossible unless the file was
         * edited by hand: refuse to decide anything on such a row. */
        if (!ok || !order__status_parse((const char *)sqlite3_column_text(s, 7), &row->status) ||
            (prev != NULL && !order__status_parse(prev, &row->previous_status))) {
            found = -1;
        }
        row->total = sqlite3_column_int64(s, 9);
        row->version = sqlite3_column_int64(s, 10);
    }
    sqlite3_finalize(s);
    if (found < 0) {
        order__row_fini(row);
    }
    return found;
}

bool order__history_add(sqlite3 *db, const char *order_id, const char *from, const char *to,
                        const char *reason, const char *saga_id, const char *activity)
{
    return order__exec(db,
                       "INSERT INTO order_history(order_id, from_status, to_status, reason,"
                       " saga_id, activity, ts_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                       "ssssssi", order_id, from, to, reason, saga_id, activity,
                       (int64_t)sg_now_ms()) == 1;
}

int order__move(sqlite3 *db, const order_move_t *mv)
{
    SG_ASSERT(order__transition_valid(mv->from, mv->to));
    const char *from = order__status_name(mv->from), *to = order__status_name(mv->to);
    int n = order__exec(db,
                        "UPDATE orders SET status = ?2, previous_status = ?3, updated_ms = ?4,"
                        " version = version + 1"
                        " WHERE order_id = ?1 AND status = ?3 AND version = ?5",
                        "sssii", mv->order_id, to, from, (int64_t)sg_now_ms(), mv->version);
    if (n != 1) {
        return n < 0 ? -1 : 0;
    }
    return order__history_add(db, mv->order_id, from, to, mv->reason, mv->saga_id, mv->activity)
               ? 1
               : -1;
}

/* ---- the JSON document ---- */

static cJSON *column_json(sqlite3_stmt *s, int i)
{
    switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER:
        return cJSON_CreateNumber((double)sqlite3_column_int64(s, i));
    case SQLITE_TEXT:
        return cJSON_CreateString((const char *)sqlite3_column_text(s, i));
    default:
        return cJSON_CreateNull();
    }
}

/* Adds the columns of the current row of s to obj, keyed by column name. */
static bool columns_json(sqlite3_stmt *s, cJSON *obj)
{
    for (int i = 0; i < sqlite3_column_count(s); i++) {
        cJSON *v = column_json(s, i);
        if (v == NULL || !cJSON_AddItemToObject(obj, sqlite3_column_name(s, i), v)) {
            cJSON_Delete(v);
            return false;
        }
    }
    return true;
}

/*
 * Runs sql with ?1 = order_id. When into is an array, each row becomes an object
 * appended to it; when into is an object, the row's columns are added to it (a one-row
 * query). Returns the number of rows, or -1 on SQL error or out of memory.
 */
static int query_json(sqlite3 *db, const char *sql, const char *order_id, cJSON *into)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        return -1;
    }
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_TRANSIENT);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cJSON *obj = into;
        if (cJSON_IsArray(into) &&
            ((obj = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(into, obj))) {
            cJSON_Delete(obj);
            break;
        }
        if (!columns_json(s, obj)) {
            break;
        }
        n++;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? n : -1;
}

/* The stored shipping address text back to the object it was (null if unreadable). */
static bool shipping_to_object(cJSON *order)
{
    cJSON *text = cJSON_GetObjectItemCaseSensitive(order, "shipping_address");
    if (!cJSON_IsString(text)) {
        return true;
    }
    cJSON *obj = cJSON_Parse(text->valuestring);
    if (obj == NULL) {
        obj = cJSON_CreateNull();
    }
    if (obj == NULL || !cJSON_ReplaceItemInObjectCaseSensitive(order, "shipping_address", obj)) {
        cJSON_Delete(obj);
        return false;
    }
    return true;
}

/* Adds an array named name holding the rows of sql (?1 = order_id). */
static bool add_rows(cJSON *order, const char *name, sqlite3 *db, const char *sql,
                     const char *order_id)
{
    cJSON *arr = cJSON_CreateArray();
    if (arr == NULL || !cJSON_AddItemToObject(order, name, arr)) {
        cJSON_Delete(arr);
        return false;
    }
    return query_json(db, sql, order_id, arr) >= 0;
}

int order__record_json(sqlite3 *db, const char *order_id, char **out)
{
    *out = NULL;
    cJSON *order = cJSON_CreateObject();
    if (order == NULL) {
        return -1;
    }
    /* Two reads of the order row so that items sit after the customer, where a reader
     * looks for them; the caller's transaction makes them one snapshot. */
    int found = query_json(
        db, "SELECT order_id, customer_id, email FROM orders WHERE order_id = ?1", order_id, order);
    if (found == 1 &&
        (!add_rows(order, "items", db,
                   "SELECT sku, qty, price FROM order_lines WHERE order_id = ?1 ORDER BY line_no",
                   order_id) ||
         query_json(db,
                    "SELECT total, currency, shipping_address, status, previous_status,"
                    " reservation_id, payment_id, cancel_reason, cancel_requested_by, saga_id,"
                    " cancel_saga_id, created_ms, updated_ms FROM orders WHERE order_id = ?1",
                    order_id, order) != 1 ||
         !shipping_to_object(order) ||
         !add_rows(order, "history", db,
                   "SELECT from_status AS \"from\", to_status AS \"to\", reason, saga_id,"
                   " activity, ts_ms FROM order_history WHERE order_id = ?1 ORDER BY seq",
                   order_id))) {
        found = -1;
    }
    if (found == 1) {
        char *json = cJSON_PrintUnformatted(order);
        *out = json != NULL ? sg_strdup(json) : NULL;
        cJSON_free(json);
        found = *out != NULL ? 1 : -1;
    }
    cJSON_Delete(order);
    return found;
}

char *sg_order_get_json(const char *data_dir, const char *order_id)
{
    /* The order, its lines and its history from one snapshot. */
    return sg_svc_read_json(data_dir, "order", order_id, order__record_json);
}
