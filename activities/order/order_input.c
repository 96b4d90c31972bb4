/*
 * order input: reading an order from outside the service - the input of
 * order.create_pending and the "orders" of the seed - and loading the seed.
 *
 * Checks here are about the shape of what comes in (invalid_input naming the field)
 * and the one rule an order must satisfy before it exists: total = sum(qty * price).
 * The seed is strict: a key it does not know is an error, never silently skipped.
 */
#include <stdio.h>
#include <string.h>

#include "activities/order/order_int.h"

bool order__read_order_id(sg_svc_tx_t *tx, const cJSON *in, const char **out, sg_task_result_t *res)
{
    static const char id_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789_-";
    if (!sg_svc_str(tx, in, "order_id", ID_MAX, out, res)) {
        return false;
    }
    if ((*out)[strspn(*out, id_chars)] != '\0') {
        sg_svc_invalid(tx, res, "field \"order_id\" must hold only letters, digits, '_' and '-'");
        return false;
    }
    return true;
}

static bool read_currency(sg_svc_tx_t *tx, const cJSON *in, const char **out, sg_task_result_t *res)
{
    if (!sg_svc_str(tx, in, "currency", 3, out, res)) {
        return false;
    }
    if (strlen(*out) != 3 || strspn(*out, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3) {
        sg_svc_invalid(tx, res, "field \"currency\" must be three capital letters (ISO 4217)");
        return false;
    }
    return true;
}

/* One line of "items"; the kit's readers name the field, this names the line too. */
static bool read_line(sg_svc_tx_t *tx, const cJSON *line, int i, int64_t *amount,
                      sg_task_result_t *res)
{
    const char *sku;
    int64_t qty, price;
    if (!cJSON_IsObject(line)) {
        sg_svc_invalid(tx, res, "field \"items[%d]\" must be an object", i);
        return false;
    }
    if (sg_svc_str(tx, line, "sku", SKU_MAX, &sku, res) &&
        sg_svc_int(tx, line, "qty", 1, QTY_MAX, &qty, res) &&
        sg_svc_int(tx, line, "price", 0, PRICE_MAX, &price, res)) {
        *amount = qty * price;
        return true;
    }
    char *msg = sg_strdup(res->error_message ? res->error_message : "invalid");
    sg_svc_invalid(tx, res, "items[%d]: %s", i, msg ? msg : "invalid");
    sg_free(msg);
    return false;
}

static bool read_items(sg_svc_tx_t *tx, const cJSON *in, const cJSON **out, int64_t *sum,
                       sg_task_result_t *res)
{
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(in, "items");
    int n = cJSON_GetArraySize(items);
    if (!cJSON_IsArray(items) || n < 1 || n > ITEMS_MAX) {
        sg_svc_invalid(tx, res, "field \"items\" must be an array of 1 to %d lines", ITEMS_MAX);
        return false;
    }
    *sum = 0;
    int i = 0;
    const cJSON *line;
    cJSON_ArrayForEach(line, items)
    {
        int64_t amount;
        if (!read_line(tx, line, i++, &amount, res)) {
            return false;
        }
        *sum += amount;
    }
    *out = items;
    return true;
}

static bool read_shipping(sg_svc_tx_t *tx, const cJSON *in, char **out, sg_task_result_t *res)
{
    const cJSON *addr = cJSON_GetObjectItemCaseSensitive(in, "shipping_address");
    *out = NULL;
    if (addr == NULL || cJSON_IsNull(addr)) {
        return true;
    }
    if (!cJSON_IsObject(addr)) {
        sg_svc_invalid(tx, res, "field \"shipping_address\" must be an object");
        return false;
    }
    *out = cJSON_PrintUnformatted(addr);
    if (*out == NULL) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return false;
    }
    if (strlen(*out) > ADDRESS_MAX) {
        cJSON_free(*out);
        *out = NULL;
        sg_svc_invalid(tx, res, "field \"shipping_address\" is over %d bytes", ADDRESS_MAX);
        return false;
    }
    return true;
}

bool order__read_order(sg_svc_tx_t *tx, const cJSON *in, order_in_t *o, sg_task_result_t *res)
{
    int64_t sum = 0;
    memset(o, 0, sizeof(*o));
    if (!order__read_order_id(tx, in, &o->order_id, res) ||
        !sg_svc_str(tx, in, "customer_id", ID_MAX, &o->customer_id, res) ||
        !sg_svc_str_opt(tx, in, "email", EMAIL_MAX, &o->email, res) ||
        !read_items(tx, in, &o->items, &sum, res) ||
        !sg_svc_int(tx, in, "total", 0, TOTAL_MAX, &o->total, res) ||
        !read_currency(tx, in, &o->currency, res) || !read_shipping(tx, in, &o->shipping, res)) {
        return false;
    }
    if (o->total != sum) {
        sg_task_fail(res, SG_TASK_FATAL, "order.invalid_total",
                     "order %s: total %lld is not the sum of its lines (%lld)", o->order_id,
                     (long long)o->total, (long long)sum);
        return false;
    }
    return true;
}

int64_t order__line_int(const cJSON *line, const char *key)
{
    return (int64_t)cJSON_GetObjectItemCaseSensitive(line, key)->valuedouble;
}

const char *order__line_sku(const cJSON *line)
{
    return cJSON_GetObjectItemCaseSensitive(line, "sku")->valuestring;
}

bool order__insert_lines(sqlite3 *db, const order_in_t *o)
{
    int64_t no = 0;
    const cJSON *line;
    cJSON_ArrayForEach(line, o->items)
    {
        if (order__exec(db,
                        "INSERT INTO order_lines(order_id, line_no, sku, qty, price)"
                        " VALUES(?1, ?2, ?3, ?4, ?5)",
                        "sisii", o->order_id, ++no, order__line_sku(line),
                        order__line_int(line, "qty"), order__line_int(line, "price")) != 1) {
            return false;
        }
    }
    return true;
}

/* ---- the seed ---- */

/* The section of activities/seed/shop.json this service loads:
 *   {"orders": [{order_id, customer_id, email?, items, total, currency,
 *                shipping_address?, status?, reservation_id?, payment_id?}]}
 * Each order is set as named (inserted, or replaced with its lines) and belongs to no
 * saga; status defaults to pending and cannot be cancelling (that state belongs to a
 * running order_cancel saga). Seeding the same document twice changes nothing but
 * updated_ms: a history row is only written when the status changes. No events: a seed
 * states where the shop starts, it is not something that happened in it. */

static const char *const seed_order_keys[] = {
    "order_id", "customer_id",      "email",  "items",          "total",
    "currency", "shipping_address", "status", "reservation_id", "payment_id",
};

/* The first key of obj that is not in keys, or NULL. */
static const char *unknown_key(const cJSON *obj, const char *const *keys, size_t n)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, obj)
    {
        size_t i = 0;
        while (i < n && strcmp(item->string, keys[i]) != 0) {
            i++;
        }
        if (i == n) {
            return item->string;
        }
    }
    return NULL;
}

typedef struct {
    const cJSON *orders;
    char *err;
    size_t errlen;
} seed_t;

static const char upsert_sql[] =
    "INSERT INTO orders(order_id, customer_id, email, total, currency, shipping_address,"
    " status, reservation_id, payment_id, created_ms, updated_ms)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)"
    " ON CONFLICT(order_id) DO UPDATE SET customer_id = excluded.customer_id,"
    " email = excluded.email, total = excluded.total, currency = excluded.currency,"
    " shipping_address = excluded.shipping_address,"
    " previous_status = CASE WHEN status = excluded.status THEN previous_status ELSE status END,"
    " status = excluded.status, reservation_id = excluded.reservation_id,"
    " payment_id = excluded.payment_id, cancel_reason = NULL, cancel_requested_by = NULL,"
    " cancel_saga_id = NULL, saga_id = NULL, updated_ms = excluded.updated_ms,"
    " version = version + 1";

/* Sets one checked order as the seed names it. SG_ERR_IO (err filled) on SQL error. */
static sg_err_t seed_upsert(sg_svc_tx_t *tx, const order_in_t *o, order_status_t st,
                            const char *reservation_id, const char *payment_id, seed_t *s)
{
    sqlite3 *db = sg_svc_db(tx);
    order_row_t old;
    int found = order__row_load(db, o->order_id, &old);
    bool same_status = found > 0 && old.status == st;
    bool ok =
        found >= 0 &&
        order__exec(db, upsert_sql, "sssisssssi", o->order_id, o->customer_id, o->email, o->total,
                    o->currency, o->shipping, order__status_name(st), reservation_id, payment_id,
                    (int64_t)sg_now_ms()) == 1 &&
        order__exec(db, "DELETE FROM order_lines WHERE order_id = ?1", "s", o->order_id) >= 0 &&
        order__insert_lines(db, o) &&
        (same_status ||
         order__history_add(db, o->order_id, found > 0 ? order__status_name(old.status) : NULL,
                            order__status_name(st), "seeded", NULL, "seed"));
    if (!ok) {
        snprintf(s->err, s->errlen, "order seed: order.db: %s", sqlite3_errmsg(db));
    }
    order__row_fini(&old);
    return ok ? SG_OK : SG_ERR_IO;
}

static sg_err_t seed_order(sg_svc_tx_t *tx, const cJSON *entry, int i, seed_t *s)
{
    order_in_t o = {0};
    sg_task_result_t r = {0};
    const char *status = NULL, *reservation_id = NULL, *payment_id = NULL, *bad;
    order_status_t st = ORDER_PENDING;
    sg_err_t rc = SG_ERR_INVALID;
    if (!cJSON_IsObject(entry)) {
        snprintf(s->err, s->errlen, "order seed: orders[%d] must be an object", i);
    } else if ((bad = unknown_key(entry, seed_order_keys, SG_ARRAY_LEN(seed_order_keys)))) {
        snprintf(s->err, s->errlen, "order seed: orders[%d]: unknown key \"%s\"", i, bad);
    } else if (!order__read_order(tx, entry, &o, &r) ||
               !sg_svc_str_opt(tx, entry, "status", 16, &status, &r) ||
               !sg_svc_str_opt(tx, entry, "reservation_id", REF_MAX, &reservation_id, &r) ||
               !sg_svc_str_opt(tx, entry, "payment_id", REF_MAX, &payment_id, &r)) {
        rc = r.outcome == SG_TASK_FATAL ? SG_ERR_INVALID : SG_ERR_NOMEM;
        snprintf(s->err, s->errlen, "order seed: orders[%d]: %s", i,
                 r.error_message ? r.error_message : "out of memory");
    } else if (status != NULL && (!order__status_parse(status, &st) || st == ORDER_CANCELLING)) {
        snprintf(s->err, s->errlen,
                 "order seed: orders[%d]: status must be pending, approved, rejected or"
                 " cancelled",
                 i);
    } else {
        rc = seed_upsert(tx, &o, st, reservation_id, payment_id, s);
    }
    sg_task_result_fini(&r);
    cJSON_free(o.shipping);
    return rc;
}

static sg_err_t seed_fn(sg_svc_tx_t *tx, void *arg)
{
    seed_t *s = arg;
    int i = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, s->orders)
    {
        sg_err_t rc = seed_order(tx, entry, i++, s);
        if (rc != SG_OK) {
            return rc;
        }
    }
    return SG_OK;
}

sg_err_t order__seed(sg_svc_t *svc, const char *json, char *err, size_t errlen)
{
    static const char *const keys[] = {"orders"};
    cJSON *doc = json != NULL ? cJSON_Parse(json) : NULL;
    const cJSON *orders = cJSON_GetObjectItemCaseSensitive(doc, "orders");
    const char *bad = NULL;
    sg_err_t rc = SG_ERR_INVALID;
    if (!cJSON_IsObject(doc)) {
        snprintf(err, errlen, "order seed: the \"order\" section must be a JSON object");
    } else if ((bad = unknown_key(doc, keys, SG_ARRAY_LEN(keys))) != NULL) {
        snprintf(err, errlen, "order seed: unknown key \"%s\" (expected \"orders\")", bad);
    } else if (orders != NULL && !cJSON_IsArray(orders)) {
        snprintf(err, errlen, "order seed: \"orders\" must be an array");
    } else if (cJSON_GetArraySize(orders) == 0) {
        rc = SG_OK;
    } else {
        seed_t s = {.orders = orders, .err = err, .errlen = errlen};
        if (errlen > 0) {
            err[0] = '\0';
        }
        rc = sg_svc_exec(svc, seed_fn, &s);
        if (rc != SG_OK && errlen > 0 && err[0] == '\0') {
            snprintf(err, errlen, "order seed: order.db: %s", sg_strerror(rc));
        }
    }
    cJSON_Delete(doc);
    return rc;
}
