/*
 * notification store: the SQL of the notification service, on the connection of the
 * kit's transaction (never one of its own, never outside a transaction).
 *
 *   contacts(customer_id, name, email, phone, push_token, channels)
 *       channels is the preference list as "email,sms" (checked when seeded, and again
 *       when read: rows are input too).
 *   deliveries(id, idempotency_key, order_id, customer_id, channel, recipient,
 *              template, subject, body, status, attempts, last_error, times)
 *       one row per channel per idempotency key (UNIQUE), so one send cannot deliver
 *       a channel twice. The simulated providers record by this row: status 'sent' IS
 *       the message having gone out, committed with its notification.sent event.
 *       queued -> sent | failed;  failed -> retried -> sent | failed.
 */
#include <stdio.h>
#include <string.h>

#include "activities/notification/notification_int.h"

const char notification__schema_sql[] =
    "CREATE TABLE IF NOT EXISTS contacts("
    " customer_id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " email TEXT, phone TEXT, push_token TEXT,"
    " channels TEXT NOT NULL DEFAULT '',"
    " updated_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS deliveries("
    " id TEXT PRIMARY KEY,"
    " idempotency_key TEXT NOT NULL,"
    " order_id TEXT,"
    " customer_id TEXT NOT NULL,"
    " channel TEXT NOT NULL CHECK(channel IN ('email', 'sms', 'push')),"
    " recipient TEXT NOT NULL,"
    " template TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " body TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('queued', 'sent', 'failed', 'retried')),"
    " attempts INTEGER NOT NULL DEFAULT 0 CHECK(attempts >= 0),"
    " last_error TEXT,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " sent_ms INTEGER CHECK((status = 'sent') = (sent_ms IS NOT NULL)),"
    " UNIQUE(idempotency_key, channel));"
    "CREATE INDEX IF NOT EXISTS deliveries_order ON deliveries(order_id, created_ms);";

/* ---- statement helpers ---- */

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

/* Binds s as text, or NULL when s is NULL or empty. */
static void bind_opt(sqlite3_stmt *st, int i, const char *s)
{
    if (s == NULL || *s == '\0') {
        sqlite3_bind_null(st, i);
    } else {
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    }
}

/* Copies column i of st into out (truncated to fit; NULL = ""). */
static void column_copy(sqlite3_stmt *st, int i, char *out, size_t outlen)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    snprintf(out, outlen, "%s", s != NULL ? s : "");
}

/* Steps a statement that returns no rows and finalizes it. */
static bool run_done(sqlite3_stmt *st)
{
    bool ok = st != NULL && sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok;
}

/* ---- contacts ---- */

/* Parses "email,sms" into c's channel list, skipping unknown names and repeats. */
static void parse_channels(const char *list, notif_contact_t *c)
{
    c->n_channels = 0;
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", list != NULL ? list : "");
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        notif_channel_t ch;
        bool dup = false;
        if (!notification__channel_parse(tok, &ch)) {
            continue;
        }
        for (size_t i = 0; i < c->n_channels; i++) {
            dup = dup || c->channels[i] == ch;
        }
        if (!dup && c->n_channels < NOTIF_N_CHANNELS) {
            c->channels[c->n_channels++] = ch;
        }
    }
}

int notification__contact_get(sqlite3 *db, const char *customer_id, notif_contact_t *c)
{
    sqlite3_stmt *st = prepare(db, "SELECT customer_id, name, email, phone, push_token, channels"
                                   " FROM contacts WHERE customer_id = ?1");
    if (st == NULL) {
        return -1;
    }
    sqlite3_bind_text(st, 1, customer_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (found == 1) {
        memset(c, 0, sizeof(*c));
        column_copy(st, 0, c->customer_id, sizeof(c->customer_id));
        column_copy(st, 1, c->name, sizeof(c->name));
        column_copy(st, 2, c->email, sizeof(c->email));
        column_copy(st, 3, c->phone, sizeof(c->phone));
        column_copy(st, 4, c->push_token, sizeof(c->push_token));
        parse_channels((const char *)sqlite3_column_text(st, 5), c);
    }
    sqlite3_finalize(st);
    return found;
}

sg_err_t notification__contact_put(sqlite3 *db, const notif_contact_t *c)
{
    char channels[64] = "";
    for (size_t i = 0; i < c->n_channels; i++) {
        size_t len = strlen(channels);
        snprintf(channels + len, sizeof(channels) - len, "%s%s", i ? "," : "",
                 notification__channel_name(c->channels[i]));
    }
    sqlite3_stmt *st =
        prepare(db, "INSERT INTO contacts(customer_id, name, email, phone, push_token, channels,"
                    " updated_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                    " ON CONFLICT(customer_id) DO UPDATE SET name = excluded.name,"
                    " email = excluded.email, phone = excluded.phone,"
                    " push_token = excluded.push_token, channels = excluded.channels,"
                    " updated_ms = excluded.updated_ms");
    if (st == NULL) {
        return SG_ERR_IO;
    }
    sqlite3_bind_text(st, 1, c->customer_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->name, -1, SQLITE_STATIC);
    bind_opt(st, 3, c->email);
    bind_opt(st, 4, c->phone);
    bind_opt(st, 5, c->push_token);
    sqlite3_bind_text(st, 6, channels, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)sg_now_ms());
    return run_done(st) ? SG_OK : SG_ERR_IO;
}

/* ---- deliveries ---- */

int notification__delivery_find(sqlite3 *db, const char *key, notif_target_t *t)
{
    sqlite3_stmt *st = prepare(db, "SELECT id, status, attempts, recipient FROM deliveries"
                                   " WHERE idempotency_key = ?1 AND channel = ?2");
    if (st == NULL) {
        return -1;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, notification__channel_name(t->channel), -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (found == 1) {
        const char *status = (const char *)sqlite3_column_text(st, 1);
        column_copy(st, 0, t->id, sizeof(t->id));
        t->sent = status != NULL && strcmp(status, "sent") == 0;
        t->attempts = sqlite3_column_int64(st, 2);
        /* The row is the message: it keeps the address it was first queued for. */
        column_copy(st, 3, t->recipient, sizeof(t->recipient));
    }
    sqlite3_finalize(st);
    return found;
}

/* Creates t's row, status queued, unless the key already has one for t's channel. */
static bool delivery_insert(sqlite3 *db, const notif_message_t *m, const notif_target_t *t)
{
    sqlite3_stmt *st =
        prepare(db, "INSERT INTO deliveries(id, idempotency_key, order_id, customer_id, channel,"
                    " recipient, template, subject, body, status, attempts, created_ms, updated_ms)"
                    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', 0, ?10, ?10)"
                    " ON CONFLICT(idempotency_key, channel) DO NOTHING");
    if (st == NULL) {
        return false;
    }
    uint64_t now = sg_now_ms();
    char id[27];
    sg_ulid_new(now, id);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->key, -1, SQLITE_STATIC);
    bind_opt(st, 3, m->order_id);
    sqlite3_bind_text(st, 4, m->customer_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, notification__channel_name(t->channel), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, t->recipient, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, m->template_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, m->subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, t->channel == NOTIF_EMAIL ? m->body : m->short_text, -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)now);
    return run_done(st);
}

int notification__delivery_claim(sqlite3 *db, const notif_message_t *m, notif_target_t *t)
{
    if (!delivery_insert(db, m, t)) {
        return -1;
    }
    /* The WHERE clause is the guard: a delivery that is sent is never claimed again,
     * whoever else (thread or process) sent it. */
    sqlite3_stmt *st =
        prepare(db, "UPDATE deliveries SET attempts = attempts + 1, updated_ms = ?3,"
                    " status = CASE status WHEN 'failed' THEN 'retried' ELSE status END"
                    " WHERE idempotency_key = ?1 AND channel = ?2 AND status <> 'sent'");
    if (st == NULL) {
        return -1;
    }
    sqlite3_bind_text(st, 1, m->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, notification__channel_name(t->channel), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)sg_now_ms());
    if (!run_done(st)) {
        return -1;
    }
    int claimed = sqlite3_changes(db) == 1;
    return notification__delivery_find(db, m->key, t) == 1 ? claimed : -1;
}

int notification__delivery_finish(sqlite3 *db, const notif_target_t *t, const char *error)
{
    sqlite3_stmt *st =
        error == NULL
            ? prepare(db, "UPDATE deliveries SET status = 'sent', sent_ms = ?2, updated_ms = ?2"
                          " WHERE id = ?1 AND status <> 'sent'")
            : prepare(db, "UPDATE deliveries SET status = 'failed', last_error = ?3,"
                          " updated_ms = ?2 WHERE id = ?1 AND status <> 'sent'");
    if (st == NULL) {
        return -1;
    }
    sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)sg_now_ms());
    if (error != NULL) {
        sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
    }
    if (!run_done(st)) {
        return -1;
    }
    return sqlite3_changes(db) == 1;
}

/* Adds column i of st to obj under name: text, integer or null. */
static bool add_column(cJSON *obj, const char *name, sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return cJSON_AddNumberToObject(obj, name, (double)sqlite3_column_int64(st, i)) != NULL;
    case SQLITE_NULL:
        return cJSON_AddNullToObject(obj, name) != NULL;
    default:
        return cJSON_AddStringToObject(obj, name, (const char *)sqlite3_column_text(st, i)) != NULL;
    }
}

sg_err_t notification__deliveries_list(sqlite3 *db, const char *order_id, cJSON *arr)
{
    static const char *const cols[] = {"id",         "idempotency_key", "customer_id", "channel",
                                       "recipient",  "template",        "subject",     "body",
                                       "status",     "attempts",        "last_error",  "created_ms",
                                       "updated_ms", "sent_ms"};
    sqlite3_stmt *st = prepare(db, "SELECT id, idempotency_key, customer_id, channel, recipient,"
                                   " template, subject, body, status, attempts, last_error,"
                                   " created_ms, updated_ms, sent_ms FROM deliveries"
                                   " WHERE order_id = ?1 ORDER BY created_ms, id");
    if (st == NULL) {
        return SG_ERR_IO;
    }
    sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
    sg_err_t rc = SG_OK;
    int step = SQLITE_DONE;
    while (rc == SG_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *d = cJSON_CreateObject();
        if (d == NULL || !cJSON_AddItemToArray(arr, d)) {
            cJSON_Delete(d);
            rc = SG_ERR_NOMEM;
            break;
        }
        for (int i = 0; i < (int)SG_ARRAY_LEN(cols); i++) {
            if (!add_column(d, cols[i], st, i)) {
                rc = SG_ERR_NOMEM;
                break;
            }
        }
    }
    if (rc == SG_OK && step != SQLITE_DONE) {
        rc = SG_ERR_IO;
    }
    sqlite3_finalize(st);
    return rc;
}
