/*
 * inventory store: the inventory service's tables and every statement on them. The
 * operations (inventory.c) decide; this file only reads and writes, inside the kit's
 * transaction. It must never commit, roll back or decide business outcomes.
 *
 * The conservation invariant, for every product:
 *     stock + sum(qty of the lines of held reservations) == supplied
 * where supplied counts what reached the shelf (seeded stock plus restocks). The view
 * inventory_levels shows the three numbers side by side for checkers and demos.
 */
#include "activities/inventory/inventory.h"
#include "activities/inventory/inventory_int.h"

#include <stdio.h>
#include <string.h>

#include "orchestrator/base/base.h"

const char inv__schema[] =
    /* Per connection: lines must name real products and reservations. */
    "PRAGMA foreign_keys = ON;"
    "CREATE TABLE IF NOT EXISTS products("
    " sku TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " price INTEGER NOT NULL CHECK(price >= 0)," /* cents */
    " stock INTEGER NOT NULL CHECK(stock >= 0)," /* on hand, not reserved */
    " low_stock_threshold INTEGER NOT NULL DEFAULT 0 CHECK(low_stock_threshold >= 0),"
    " supplied INTEGER NOT NULL CHECK(supplied >= 0)," /* seeded + restocked */
    " updated_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS reservations("
    " reservation_id TEXT PRIMARY KEY,"
    " order_id TEXT NOT NULL,"
    " reserve_key TEXT NOT NULL UNIQUE," /* the idempotency key of the reserve task */
    " status TEXT NOT NULL CHECK(status IN ('held', 'released')),"
    " created_ms INTEGER NOT NULL,"
    " released_ms INTEGER,"
    " CHECK((status = 'released') = (released_ms IS NOT NULL)));"
    /* At most one held reservation per order, whatever the processes do. */
    "CREATE UNIQUE INDEX IF NOT EXISTS reservations_held_order ON reservations(order_id)"
    " WHERE status = 'held';"
    "CREATE INDEX IF NOT EXISTS reservations_order ON reservations(order_id);"
    "CREATE TABLE IF NOT EXISTS reservation_lines("
    " reservation_id TEXT NOT NULL REFERENCES reservations(reservation_id),"
    " sku TEXT NOT NULL REFERENCES products(sku),"
    " qty INTEGER NOT NULL CHECK(qty > 0),"
    " PRIMARY KEY(reservation_id, sku));"
    "CREATE INDEX IF NOT EXISTS reservation_lines_sku ON reservation_lines(sku);"
    "CREATE VIEW IF NOT EXISTS inventory_levels AS"
    " SELECT p.sku AS sku, p.stock AS stock,"
    "  (SELECT coalesce(sum(l.qty), 0) FROM reservation_lines l"
    "   JOIN reservations r ON r.reservation_id = l.reservation_id"
    "   WHERE l.sku = p.sku AND r.status = 'held') AS reserved,"
    "  p.supplied AS supplied"
    " FROM products p;";

/* ---- statements ---- */

/* Prepares sql on db; NULL on error (sqlite3_errmsg(db) says why). Statements are
 * prepared per call: an operation runs a handful, and the kit owns the connection. */
static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

/* Steps s once: 1 for a row, 0 when done, -1 on error. */
static int step_row(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Runs s to its end (it returns no rows we need): true on success. Finalizes s. */
static bool run_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE;
}

/* ---- products ---- */

int inv__take(sqlite3 *db, const char *sku, int64_t qty, int64_t *after, int64_t *threshold)
{
    /* The WHERE clause is the invariant: two processes cannot both take the last one. */
    sqlite3_stmt *s = prep(db, "UPDATE products SET stock = stock - ?2, updated_ms = ?3"
                               " WHERE sku = ?1 AND stock >= ?2"
                               " RETURNING stock, low_stock_threshold");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, sku, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, qty);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)sg_now_ms());
    int rc = step_row(s);
    if (rc == 1) {
        *after = sqlite3_column_int64(s, 0);
        *threshold = sqlite3_column_int64(s, 1);
        rc = step_row(s) == 0 ? 1 : -1; /* RETURNING completes its update on DONE */
    }
    sqlite3_finalize(s);
    return rc;
}

int inv__stock(sqlite3 *db, const char *sku, int64_t *stock)
{
    sqlite3_stmt *s = prep(db, "SELECT stock FROM products WHERE sku = ?1");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, sku, -1, SQLITE_STATIC);
    int rc = step_row(s);
    if (rc == 1) {
        *stock = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return rc;
}

int inv__restock(sqlite3 *db, const char *sku, int64_t qty, int64_t *after)
{
    sqlite3_stmt *s = prep(db, "UPDATE products SET stock = stock + ?2, supplied = supplied + ?2,"
                               " updated_ms = ?3 WHERE sku = ?1 RETURNING stock");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, sku, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, qty);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)sg_now_ms());
    int rc = step_row(s);
    if (rc == 1) {
        *after = sqlite3_column_int64(s, 0);
        rc = step_row(s) == 0 ? 1 : -1;
    }
    sqlite3_finalize(s);
    return rc;
}

int inv__product_upsert(sqlite3 *db, const inv_product_t *p, int64_t *delta)
{
    int64_t old = 0;
    int found = inv__stock(db, p->sku, &old);
    if (found < 0) {
        return -1;
    }
    /* Seeding sets the shelf stock; reservations still held keep their units, so what
     * was supplied moves by the same delta and the invariant stays true. In the SET
     * list `stock` is the old value. */
    sqlite3_stmt *s = prep(db, "INSERT INTO products(sku, name, price, stock, low_stock_threshold,"
                               " supplied, updated_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?4, ?6)"
                               " ON CONFLICT(sku) DO UPDATE SET name = excluded.name,"
                               " price = excluded.price,"
                               " low_stock_threshold = excluded.low_stock_threshold,"
                               " supplied = supplied + excluded.stock - stock,"
                               " stock = excluded.stock, updated_ms = excluded.updated_ms");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, p->sku, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, p->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, p->price);
    sqlite3_bind_int64(s, 4, p->stock);
    sqlite3_bind_int64(s, 5, p->threshold);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)sg_now_ms());
    if (!run_done(s)) {
        return -1;
    }
    *delta = p->stock - old;
    return 1;
}

/* ---- reservations ---- */

int inv__held_of_order(sqlite3 *db, const char *order_id, const char *reserve_key,
                       char id[INV_ID_LEN + 1])
{
    sqlite3_stmt *s = prep(db, "SELECT reservation_id FROM reservations"
                               " WHERE order_id = ?1 AND status = 'held'"
                               " AND (?2 IS NULL OR reserve_key = ?2)");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, reserve_key, -1, SQLITE_STATIC);
    int rc = step_row(s);
    if (rc == 1) {
        const char *v = (const char *)sqlite3_column_text(s, 0);
        snprintf(id, INV_ID_LEN + 1, "%s", v ? v : "");
    }
    sqlite3_finalize(s);
    return rc;
}

int inv__reservation_get(sqlite3 *db, const char *id, char order_id[INV_ORDER_MAX + 1], bool *held)
{
    sqlite3_stmt *s = prep(db, "SELECT order_id, status = 'held' FROM reservations"
                               " WHERE reservation_id = ?1");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = step_row(s);
    if (rc == 1) {
        const char *v = (const char *)sqlite3_column_text(s, 0);
        snprintf(order_id, INV_ORDER_MAX + 1, "%s", v ? v : "");
        *held = sqlite3_column_int(s, 1) != 0;
    }
    sqlite3_finalize(s);
    return rc;
}

bool inv__reservation_add(sqlite3 *db, const char *id, const char *order_id,
                          const char *reserve_key, const inv_lines_t *lines)
{
    sqlite3_stmt *s = prep(db, "INSERT INTO reservations(reservation_id, order_id, reserve_key,"
                               " status, created_ms) VALUES(?1, ?2, ?3, 'held', ?4)");
    if (s == NULL) {
        return false;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, order_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, reserve_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)sg_now_ms());
    if (!run_done(s)) {
        return false;
    }
    s = prep(db, "INSERT INTO reservation_lines(reservation_id, sku, qty) VALUES(?1, ?2, ?3)");
    if (s == NULL) {
        return false;
    }
    bool ok = true;
    for (size_t i = 0; ok && i < lines->n; i++) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, lines->v[i].sku, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, lines->v[i].qty);
        ok = sqlite3_step(s) == SQLITE_DONE;
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    return ok;
}

/* Appends the lines of reservation id to items as {sku, qty}. */
static bool lines_to_json(sqlite3 *db, const char *id, cJSON *items)
{
    /* rowid order is insertion order: the lines come back as they were reserved. */
    sqlite3_stmt *s = prep(db, "SELECT sku, qty FROM reservation_lines WHERE reservation_id = ?1"
                               " ORDER BY rowid");
    if (s == NULL) {
        return false;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = -1;
    bool ok = true;
    while (ok && (rc = step_row(s)) == 1) {
        cJSON *line = cJSON_CreateObject();
        ok = line != NULL && cJSON_AddItemToArray(items, line) &&
             cJSON_AddStringToObject(line, "sku", (const char *)sqlite3_column_text(s, 0)) &&
             cJSON_AddNumberToObject(line, "qty", (double)sqlite3_column_int64(s, 1));
    }
    sqlite3_finalize(s);
    return ok && rc == 0;
}

int inv__reservation_release(sqlite3 *db, const char *id, cJSON *items)
{
    /* The status change comes first and is conditional: a reservation is given back
     * once, however many tasks ask. */
    sqlite3_stmt *s = prep(db, "UPDATE reservations SET status = 'released', released_ms = ?2"
                               " WHERE reservation_id = ?1 AND status = 'held'");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)sg_now_ms());
    if (!run_done(s)) {
        return -1;
    }
    if (sqlite3_changes(db) == 0) {
        return 0;
    }
    s = prep(db, "UPDATE products SET updated_ms = ?2, stock = stock +"
                 " (SELECT l.qty FROM reservation_lines l"
                 "  WHERE l.reservation_id = ?1 AND l.sku = products.sku)"
                 " WHERE sku IN (SELECT sku FROM reservation_lines WHERE reservation_id = ?1)");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)sg_now_ms());
    if (!run_done(s)) {
        return -1;
    }
    return lines_to_json(db, id, items) ? 1 : -1;
}

/* ---- the read-only view (inventory.h) ---- */

/* The reservation document of order_id into *out; 1 found, 0 none, -1 error. */
static int reservation_json(sqlite3 *db, const char *order_id, char **out)
{
    /* The held reservation first (there is at most one), else the latest. */
    sqlite3_stmt *s = prep(db, "SELECT reservation_id, order_id, status, created_ms, released_ms"
                               " FROM reservations WHERE order_id = ?1"
                               " ORDER BY status = 'held' DESC, created_ms DESC, rowid DESC"
                               " LIMIT 1");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_STATIC);
    int rc = step_row(s);
    cJSON *doc = rc == 1 ? cJSON_CreateObject() : NULL;
    cJSON *items = doc != NULL ? cJSON_CreateArray() : NULL;
    if (rc == 1) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        bool ok =
            items != NULL && id != NULL && cJSON_AddStringToObject(doc, "reservation_id", id) &&
            cJSON_AddStringToObject(doc, "order_id", (const char *)sqlite3_column_text(s, 1)) &&
            cJSON_AddStringToObject(doc, "status", (const char *)sqlite3_column_text(s, 2)) &&
            cJSON_AddNumberToObject(doc, "created_ms", (double)sqlite3_column_int64(s, 3)) &&
            (sqlite3_column_type(s, 4) == SQLITE_NULL
                 ? cJSON_AddNullToObject(doc, "released_ms") != NULL
                 : cJSON_AddNumberToObject(doc, "released_ms",
                                           (double)sqlite3_column_int64(s, 4)) != NULL) &&
            lines_to_json(db, id, items) && cJSON_AddItemToObject(doc, "items", items);
        items = ok ? NULL : items;
        char *text = ok ? cJSON_PrintUnformatted(doc) : NULL;
        *out = text != NULL ? sg_strdup(text) : NULL;
        cJSON_free(text);
        rc = *out != NULL ? 1 : -1;
    }
    cJSON_Delete(items);
    cJSON_Delete(doc);
    sqlite3_finalize(s);
    return rc;
}

char *sg_inventory_reservation_json(const char *data_dir, const char *order_id)
{
    /* The reservation and its lines from one snapshot. */
    return sg_svc_read_json(data_dir, "inventory", order_id, reservation_json);
}
