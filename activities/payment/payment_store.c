/*
 * payment store: the tables of the simulated gateway (cards, the ledger) and every SQL
 * statement on them. The operations (payment.c) decide; this file only reads and
 * writes, inside the transaction the service kit opened.
 *
 * It must never check a money invariant in C: the conditions are part of the SQL (see
 * payment_int.h), so that concurrent processes cannot slip between a read and a write.
 */
#include "activities/payment/payment.h"
#include "activities/payment/payment_int.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "orchestrator/base/base.h"

/*
 * The ledger is append-only: a charge moves money from the card, a refund gives back a
 * whole charge (payment_id = the charge's id), a decline records a refused charge and
 * moves nothing (its amount is what was asked). So per order,
 *   sum(charge amounts) - sum(refund amounts)
 * is the order total or 0, and per card the same sum is what is outstanding on it.
 */
const char payment__schema[] =
    "CREATE TABLE IF NOT EXISTS cards("
    " token TEXT PRIMARY KEY,"
    " customer_id TEXT NOT NULL,"
    " holder TEXT NOT NULL,"
    " last4 TEXT NOT NULL CHECK(length(last4) = 4 AND last4 GLOB '[0-9][0-9][0-9][0-9]'),"
    " limit_cents INTEGER NOT NULL CHECK(limit_cents >= 0),"
    " blocked INTEGER NOT NULL DEFAULT 0 CHECK(blocked IN (0, 1)));"
    "CREATE TABLE IF NOT EXISTS ledger("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT NOT NULL UNIQUE,"
    " order_id TEXT NOT NULL,"
    " kind TEXT NOT NULL CHECK(kind IN ('charge', 'refund', 'decline')),"
    " amount INTEGER NOT NULL CHECK(amount > 0),"
    " currency TEXT NOT NULL CHECK(length(currency) = 3 AND currency GLOB '[A-Z][A-Z][A-Z]'),"
    " card_token TEXT NOT NULL,"
    " customer_id TEXT NOT NULL,"
    " payment_id TEXT,"
    " reason TEXT,"
    " idempotency_key TEXT,"
    " ts_ms INTEGER NOT NULL,"
    " CHECK((kind = 'refund') = (payment_id IS NOT NULL)),"
    " CHECK((kind = 'decline') = (reason IS NOT NULL)));"
    "CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_charge_per_order ON ledger(order_id)"
    " WHERE kind = 'charge';"
    "CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_refund_per_payment ON ledger(payment_id)"
    " WHERE kind = 'refund';"
    "CREATE INDEX IF NOT EXISTS ledger_by_order ON ledger(order_id);"
    "CREATE INDEX IF NOT EXISTS ledger_by_card ON ledger(card_token);"
    "CREATE TRIGGER IF NOT EXISTS ledger_refund_within_charge BEFORE INSERT ON ledger"
    " WHEN NEW.kind = 'refund' AND NOT EXISTS (SELECT 1 FROM ledger c WHERE c.id ="
    " NEW.payment_id AND c.kind = 'charge' AND c.order_id = NEW.order_id AND c.amount >="
    " NEW.amount)"
    " BEGIN SELECT RAISE(ABORT, 'a refund must refer to a charge of its order and not"
    " exceed it'); END;"
    "CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger"
    " BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger"
    " BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;";

/* What is outstanding on card c.token: its charges minus its refunds. */
#define OUTSTANDING_SQL                                                                    \
    "(SELECT coalesce(sum(CASE l.kind WHEN 'charge' THEN l.amount ELSE -l.amount END), 0)" \
    " FROM ledger l WHERE l.card_token = c.token AND l.kind IN ('charge', 'refund'))"

/* ---- helpers ---- */

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

/* Copies text column col into out (size cap), "" for NULL. */
static void col_copy(sqlite3_stmt *s, int col, char *out, size_t cap)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    snprintf(out, cap, "%s", t ? t : "");
}

/* Steps a write; 1: rows changed, 0: none, -1: error. Finalizes s. */
static int write_done(sqlite3 *db, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        return -1;
    }
    return sqlite3_changes(db) > 0 ? 1 : 0;
}

/* ---- lookups ---- */

int payment__card_get(sqlite3 *db, const char *token, pay_card_t *out)
{
    sqlite3_stmt *s = prep(db, "SELECT customer_id, last4, limit_cents, blocked, " OUTSTANDING_SQL
                               " FROM cards c WHERE c.token = ?1");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, token, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        col_copy(s, 0, out->customer_id, sizeof(out->customer_id));
        col_copy(s, 1, out->last4, sizeof(out->last4));
        out->limit = sqlite3_column_int64(s, 2);
        out->blocked = sqlite3_column_int(s, 3) != 0;
        out->outstanding = sqlite3_column_int64(s, 4);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* The charge matching "WHERE kind = 'charge' AND <col> = ?1". */
static int charge_get(sqlite3 *db, const char *sql, const char *value, pay_charge_t *out)
{
    sqlite3_stmt *s = prep(db, sql);
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        col_copy(s, 0, out->id, sizeof(out->id));
        col_copy(s, 1, out->order_id, sizeof(out->order_id));
        col_copy(s, 2, out->customer_id, sizeof(out->customer_id));
        col_copy(s, 3, out->card_token, sizeof(out->card_token));
        col_copy(s, 4, out->currency, sizeof(out->currency));
        out->amount = sqlite3_column_int64(s, 5);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

#define CHARGE_COLS "SELECT id, order_id, customer_id, card_token, currency, amount FROM ledger"

int payment__charge_by_order(sqlite3 *db, const char *order_id, pay_charge_t *out)
{
    return charge_get(db, CHARGE_COLS " WHERE kind = 'charge' AND order_id = ?1", order_id, out);
}

int payment__charge_by_id(sqlite3 *db, const char *payment_id, pay_charge_t *out)
{
    return charge_get(db, CHARGE_COLS " WHERE kind = 'charge' AND id = ?1", payment_id, out);
}

int payment__refund_of(sqlite3 *db, const char *payment_id, char refund_id[PAY_ID_MAX + 1],
                       int64_t *amount)
{
    sqlite3_stmt *s =
        prep(db, "SELECT id, amount FROM ledger WHERE kind = 'refund' AND payment_id = ?1");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, payment_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        col_copy(s, 0, refund_id, PAY_ID_MAX + 1);
        *amount = sqlite3_column_int64(s, 1);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int payment__declined(sqlite3 *db, const char *order_id)
{
    sqlite3_stmt *s =
        prep(db, "SELECT 1 FROM ledger WHERE kind = 'decline' AND order_id = ?1 LIMIT 1");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* ---- writes ---- */

int payment__charge_insert(sqlite3 *db, const pay_row_t *row)
{
    /* Every condition of a valid charge is in the WHERE: when one fails, nothing is
     * inserted and the caller reads the card to say which. */
    sqlite3_stmt *s =
        prep(db, "INSERT INTO ledger(id, order_id, kind, amount, currency, card_token, customer_id,"
                 " idempotency_key, ts_ms)"
                 " SELECT ?1, ?2, 'charge', ?3, ?4, c.token, ?5, ?6, ?7 FROM cards c"
                 " WHERE c.token = ?8 AND c.customer_id = ?5 AND c.blocked = 0"
                 " AND NOT EXISTS (SELECT 1 FROM ledger WHERE kind = 'charge' AND order_id = ?2)"
                 " AND " OUTSTANDING_SQL " + ?3 <= c.limit_cents");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, row->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, row->order_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, row->amount);
    sqlite3_bind_text(s, 4, row->currency, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, row->customer_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, row->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 7, (sqlite3_int64)sg_now_ms());
    sqlite3_bind_text(s, 8, row->card_token, -1, SQLITE_STATIC);
    return write_done(db, s);
}

int payment__refund_insert(sqlite3 *db, const pay_charge_t *c, const char *refund_id,
                           const char *key)
{
    /* The amount, currency and card are the charge's own: a refund gives back exactly
     * what was captured. The NOT EXISTS makes a second refund a no-op; the unique index
     * would refuse it anyway. */
    sqlite3_stmt *s = prep(
        db, "INSERT INTO ledger(id, order_id, kind, amount, currency, card_token, customer_id,"
            " payment_id, idempotency_key, ts_ms)"
            " SELECT ?1, order_id, 'refund', amount, currency, card_token, customer_id, id, ?2, ?3"
            " FROM ledger WHERE kind = 'charge' AND id = ?4"
            " AND NOT EXISTS (SELECT 1 FROM ledger WHERE kind = 'refund' AND payment_id = ?4)");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, refund_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)sg_now_ms());
    sqlite3_bind_text(s, 4, c->id, -1, SQLITE_STATIC);
    return write_done(db, s);
}

bool payment__decline_insert(sqlite3 *db, const pay_row_t *row)
{
    sqlite3_stmt *s =
        prep(db, "INSERT INTO ledger(id, order_id, kind, amount, currency, card_token,"
                 " customer_id, reason, idempotency_key, ts_ms)"
                 " VALUES(?1, ?2, 'decline', ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    if (s == NULL) {
        return false;
    }
    sqlite3_bind_text(s, 1, row->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, row->order_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, row->amount);
    sqlite3_bind_text(s, 4, row->currency, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, row->card_token, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, row->customer_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, row->reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, row->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 9, (sqlite3_int64)sg_now_ms());
    return write_done(db, s) == 1;
}

bool payment__card_upsert(sqlite3 *db, const char *token, const char *customer_id,
                          const char *holder, const char *last4, int64_t limit, bool blocked)
{
    sqlite3_stmt *s =
        prep(db, "INSERT INTO cards(token, customer_id, holder, last4, limit_cents, blocked)"
                 " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(token) DO UPDATE SET"
                 " customer_id = excluded.customer_id, holder = excluded.holder,"
                 " last4 = excluded.last4, limit_cents = excluded.limit_cents,"
                 " blocked = excluded.blocked");
    if (s == NULL) {
        return false;
    }
    sqlite3_bind_text(s, 1, token, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, customer_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, holder, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, last4, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, limit);
    sqlite3_bind_int(s, 6, blocked ? 1 : 0);
    return write_done(db, s) == 1;
}

/* ---- the read-only view (payment.h) ---- */

/* Adds column col as a number, or null when it is NULL. */
static bool add_int_col(cJSON *o, const char *key, sqlite3_stmt *s, int col)
{
    return (sqlite3_column_type(s, col) == SQLITE_NULL
                ? cJSON_AddNullToObject(o, key)
                : cJSON_AddNumberToObject(o, key, (double)sqlite3_column_int64(s, col))) != NULL;
}

static bool add_text_col(cJSON *o, const char *key, sqlite3_stmt *s, int col)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    return (t != NULL ? cJSON_AddStringToObject(o, key, t) : cJSON_AddNullToObject(o, key)) != NULL;
}

/* The ledger rows of order_id into doc: charge, refund, declines. Returns the number of
 * rows read, -1 on error. */
static int ledger_json(sqlite3 *db, const char *order_id, cJSON *doc)
{
    /* The card joins for its last digits only: the token itself stays in the service. */
    sqlite3_stmt *s = prep(db, "SELECT l.kind, l.id, l.amount, l.currency, l.customer_id,"
                               " c.last4, l.reason, l.ts_ms FROM ledger l"
                               " LEFT JOIN cards c ON c.token = l.card_token"
                               " WHERE l.order_id = ?1 ORDER BY l.seq");
    if (s == NULL) {
        return -1;
    }
    sqlite3_bind_text(s, 1, order_id, -1, SQLITE_STATIC);
    cJSON *declines = cJSON_AddArrayToObject(doc, "declines");
    int n = 0, rc = declines != NULL ? SQLITE_ROW : SQLITE_NOMEM;
    while (rc == SQLITE_ROW && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *kind = (const char *)sqlite3_column_text(s, 0);
        bool charge = kind != NULL && strcmp(kind, "charge") == 0;
        bool refund = kind != NULL && strcmp(kind, "refund") == 0;
        cJSON *o = cJSON_CreateObject();
        bool ok = o != NULL &&
                  add_text_col(o,
                               charge   ? "payment_id"
                               : refund ? "refund_id"
                                        : "id",
                               s, 1) &&
                  add_int_col(o, "amount", s, 2) && add_text_col(o, "currency", s, 3) &&
                  (!charge ||
                   (add_text_col(o, "customer_id", s, 4) && add_text_col(o, "card_last4", s, 5))) &&
                  (charge || refund || add_text_col(o, "reason", s, 6)) &&
                  add_int_col(o, "ts_ms", s, 7);
        if (ok && (charge || refund)) {
            /* Fills the null placeholder: one charge per order and one refund per charge
             * (unique indexes). */
            ok = cJSON_ReplaceItemInObjectCaseSensitive(doc, charge ? "charge" : "refund", o);
        } else if (ok) {
            ok = cJSON_AddItemToArray(declines, o);
        }
        if (!ok) {
            cJSON_Delete(o);
            rc = SQLITE_NOMEM;
        }
        n++;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? n : -1;
}

/* The payment document of order_id into *out; 1 found, 0 nothing, -1 error. */
static int order_payment_json(sqlite3 *db, const char *order_id, char **out)
{
    cJSON *doc = cJSON_CreateObject();
    bool ok = doc != NULL && cJSON_AddStringToObject(doc, "order_id", order_id) != NULL &&
              cJSON_AddNullToObject(doc, "status") != NULL &&
              cJSON_AddNullToObject(doc, "charge") != NULL &&
              cJSON_AddNullToObject(doc, "refund") != NULL;
    int n = ok ? ledger_json(db, order_id, doc) : -1;
    if (n > 0) {
        bool charged = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(doc, "charge"));
        bool refunded = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(doc, "refund"));
        cJSON *status = cJSON_CreateString(refunded  ? "refunded"
                                           : charged ? "charged"
                                                     : "declined");
        if (status != NULL && !cJSON_ReplaceItemInObjectCaseSensitive(doc, "status", status)) {
            cJSON_Delete(status);
            status = NULL;
        }
        char *text = status != NULL ? cJSON_PrintUnformatted(doc) : NULL;
        *out = text != NULL ? sg_strdup(text) : NULL;
        cJSON_free(text);
        n = *out != NULL ? 1 : -1;
    }
    cJSON_Delete(doc);
    return n;
}

char *sg_payment_order_json(const char *data_dir, const char *order_id)
{
    /* The whole ledger of the order from one snapshot. */
    return sg_svc_read_json(data_dir, "payment", order_id, order_payment_json);
}
