/*
 * inventory: the shop's stock service (queue "inventory"). Products with the stock on
 * the shelf, one reservation per order (all lines or nothing, never below zero, also
 * with several worker processes on one database), release, restock, availability
 * checks, and the events inventory.reserved, .released, .updated and .low_stock.
 *
 * Operations (input -> output; refusals are FATAL with the code named):
 *   reserve {order_id, items:[{sku, qty}]} -> {reservation_id, order_id, items}
 *           inventory.out_of_stock, inventory.unknown_sku, inventory.already_reserved
 *   release {order_id, reservation_id|null} -> {order_id, reservation_id, released, items}
 *   restock {sku, qty} -> {sku, stock, delta}            inventory.unknown_sku
 *   check   {items:[{sku, qty}]} -> {available, lines:[{sku, requested, available}]}
 * Lines naming the same sku twice are summed into one line.
 *
 * Every operation runs through sg_svc_run: idempotent on the task's key, its effect and
 * its events committed together. This file decides; inventory_store.c holds the SQL.
 * It must never read a stock level in C and write it back: the UPDATE ... WHERE decides.
 */
#include <stdio.h>
#include <string.h>

#include "activities/activity.h"
#include "activities/common/svc.h"
#include "activities/inventory/inventory_int.h"

struct sg_activity_ctx {
    sg_svc_t *svc;
};

/* ---- small helpers ---- */

bool inv__int_in(const cJSON *v, int64_t min, int64_t max, int64_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < (double)min || v->valuedouble > (double)max ||
        v->valuedouble != (double)(int64_t)v->valuedouble) {
        return false;
    }
    *out = (int64_t)v->valuedouble;
    return true;
}

bool inv__str_in(const cJSON *v, size_t max_len)
{
    return cJSON_IsString(v) && v->valuestring[0] != '\0' && strlen(v->valuestring) <= max_len;
}

/* Answers ok with obj as JSON text, and frees obj. Out of memory (obj NULL or not
 * printable) is retryable: nothing is recorded then. */
static void ok_json(sg_task_result_t *res, cJSON *obj)
{
    char *text = obj != NULL ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (text == NULL) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return;
    }
    sg_task_ok(res, text);
    cJSON_free(text);
}

/* Emits an event in the task's transaction; on failure fills res RETRYABLE so the
 * effect is rolled back with it. */
static bool emit(sg_svc_tx_t *tx, const char *type, cJSON *fields, sg_task_result_t *res)
{
    sg_err_t rc = sg_svc_emit(tx, type, fields);
    if (rc != SG_OK) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "inventory.store", "emitting %s: %s", type,
                     sg_strerror(rc));
        return false;
    }
    return true;
}

/* Runs one statement without results (savepoints); false on error. */
static bool exec_sql(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK;
}

/* Lines as a JSON array [{sku, qty}]; NULL on OOM. */
static cJSON *lines_json(const inv_lines_t *lines)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr != NULL && i < lines->n; i++) {
        cJSON *line = cJSON_CreateObject();
        if (line == NULL || !cJSON_AddItemToArray(arr, line) ||
            !cJSON_AddStringToObject(line, "sku", lines->v[i].sku) ||
            !cJSON_AddNumberToObject(line, "qty", (double)lines->v[i].qty)) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

/* ---- input ---- */

/* Adds a line, summing it into an earlier one of the same sku. */
static void add_line(inv_lines_t *lines, const char *sku, int64_t qty)
{
    for (size_t i = 0; i < lines->n; i++) {
        if (strcmp(lines->v[i].sku, sku) == 0) {
            lines->v[i].qty += qty;
            return;
        }
    }
    lines->v[lines->n++] = (inv_line_t){.sku = sku, .qty = qty};
}

/* Reads "items": 1..INV_MAX_LINES objects {sku, qty}. */
static bool read_items(sg_svc_tx_t *tx, const cJSON *input, inv_lines_t *lines,
                       sg_task_result_t *res)
{
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(input, "items");
    int n = cJSON_IsArray(items) ? cJSON_GetArraySize(items) : 0;
    if (n < 1 || n > INV_MAX_LINES) {
        sg_svc_invalid(tx, res, "field \"items\" must be an array of 1 to %d {sku, qty} lines",
                       INV_MAX_LINES);
        return false;
    }
    lines->n = 0;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const cJSON *sku = cJSON_IsObject(it) ? cJSON_GetObjectItemCaseSensitive(it, "sku") : NULL;
        const cJSON *qty = cJSON_IsObject(it) ? cJSON_GetObjectItemCaseSensitive(it, "qty") : NULL;
        int64_t q;
        if (!cJSON_IsObject(it)) {
            sg_svc_invalid(tx, res, "field \"items[%d]\" must be an object {sku, qty}", i);
            return false;
        }
        if (!inv__str_in(sku, INV_SKU_MAX)) {
            sg_svc_invalid(tx, res, "field \"items[%d].sku\" must be a string of 1 to %d bytes", i,
                           INV_SKU_MAX);
            return false;
        }
        if (!inv__int_in(qty, 1, INV_QTY_MAX, &q)) {
            sg_svc_invalid(tx, res, "field \"items[%d].qty\" must be an integer from 1 to %d", i,
                           INV_QTY_MAX);
            return false;
        }
        add_line(lines, sku->valuestring, q);
        i++;
    }
    return true;
}

/* ---- reserve ---- */

/* A product whose stock fell to or below its threshold with this reservation. */
typedef struct {
    const char *sku;
    int64_t stock;
    int64_t threshold;
} low_t;

/* Takes every line off the shelf. 1: all taken; 0: a line is short or unknown (some
 * lines may be taken: the caller rolls back to its savepoint); -1: database error. */
static int take_all(sqlite3 *db, const inv_lines_t *lines, low_t *low, size_t *n_low)
{
    *n_low = 0;
    for (size_t i = 0; i < lines->n; i++) {
        int64_t after = 0, threshold = 0, qty = lines->v[i].qty;
        int rc = inv__take(db, lines->v[i].sku, qty, &after, &threshold);
        if (rc != 1) {
            return rc;
        }
        /* Only the crossing alerts: a product already low does not alert again. */
        if (after <= threshold && after + qty > threshold) {
            low[(*n_low)++] =
                (low_t){.sku = lines->v[i].sku, .stock = after, .threshold = threshold};
        }
    }
    return 1;
}

/* Refuses a reservation that cannot be served, naming every unknown sku, or else every
 * short line with what was requested and what is available. */
static void refuse_short(sg_svc_tx_t *tx, const inv_lines_t *lines, sg_task_result_t *res)
{
    sg_buf_t unknown, short_;
    sg_buf_init(&unknown);
    sg_buf_init(&short_);
    for (size_t i = 0; i < lines->n; i++) {
        int64_t stock = 0;
        int rc = inv__stock(sg_svc_db(tx), lines->v[i].sku, &stock);
        if (rc < 0) {
            sg_svc_db_fail(tx, res, "reading stock");
            goto out;
        }
        if (rc == 0) {
            sg_buf_printf(&unknown, "%s%s", unknown.len ? ", " : "", lines->v[i].sku);
        } else if (stock < lines->v[i].qty) {
            sg_buf_printf(&short_, "%ssku %s requested %lld, available %lld",
                          short_.len ? "; " : "", lines->v[i].sku, (long long)lines->v[i].qty,
                          (long long)stock);
        }
    }
    if (unknown.len > 0) {
        sg_task_fail(res, SG_TASK_FATAL, "inventory.unknown_sku", "unknown sku: %s", unknown.data);
    } else if (short_.len > 0) {
        sg_task_fail(res, SG_TASK_FATAL, "inventory.out_of_stock", "out of stock: %s", short_.data);
    } else {
        /* Cannot happen inside one write transaction; retrying is the safe answer. */
        sg_task_fail(res, SG_TASK_RETRYABLE, "inventory.store",
                     "the stock changed during the reservation");
    }
out:
    sg_buf_fini(&unknown);
    sg_buf_fini(&short_);
}

/* The events and the output of a reservation made. */
static void reserved(sg_svc_tx_t *tx, const char *id, const char *order_id,
                     const inv_lines_t *lines, const low_t *low, size_t n_low,
                     sg_task_result_t *res)
{
    cJSON *out = cJSON_CreateObject();
    cJSON *items = lines_json(lines);
    bool ok = out != NULL && items != NULL && cJSON_AddStringToObject(out, "reservation_id", id) &&
              cJSON_AddStringToObject(out, "order_id", order_id);
    if (!ok || !cJSON_AddItemToObject(out, "items", items)) {
        cJSON_Delete(out); /* items was not attached */
        cJSON_Delete(items);
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return;
    }
    /* The event carries the same three fields as the output. */
    if (!emit(tx, "inventory.reserved", cJSON_Duplicate(out, true), res)) {
        cJSON_Delete(out);
        return;
    }
    for (size_t i = 0; i < n_low; i++) {
        cJSON *ev = cJSON_CreateObject();
        if (ev != NULL && (!cJSON_AddStringToObject(ev, "sku", low[i].sku) ||
                           !cJSON_AddNumberToObject(ev, "stock", (double)low[i].stock) ||
                           !cJSON_AddNumberToObject(ev, "threshold", (double)low[i].threshold))) {
            cJSON_Delete(ev);
            ev = NULL;
        }
        if (!emit(tx, "inventory.low_stock", ev, res)) {
            cJSON_Delete(out);
            return;
        }
    }
    ok_json(res, out);
}

static void op_reserve(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *input, void *arg,
                       sg_task_result_t *res)
{
    (void)arg;
    const char *order_id;
    inv_lines_t lines;
    if (!sg_svc_str(tx, input, "order_id", INV_ORDER_MAX, &order_id, res) ||
        !read_items(tx, input, &lines, res)) {
        return;
    }
    sqlite3 *db = sg_svc_db(tx);
    char id[INV_ID_LEN + 1];
    int rc = inv__held_of_order(db, order_id, NULL, id);
    if (rc != 0) {
        if (rc < 0) {
            sg_svc_db_fail(tx, res, "looking up the order's reservation");
        } else {
            sg_task_fail(res, SG_TASK_FATAL, "inventory.already_reserved",
                         "order %s already holds reservation %s; release it first", order_id, id);
        }
        return;
    }
    /* A refusal is committed (and recorded) by the kit, so the lines taken before the
     * short one must be put back first: the savepoint makes it all or nothing. */
    low_t low[INV_MAX_LINES];
    size_t n_low = 0;
    if (!exec_sql(db, "SAVEPOINT inv_reserve")) {
        sg_svc_db_fail(tx, res, "savepoint");
        return;
    }
    rc = take_all(db, &lines, low, &n_low);
    if (rc == 0) {
        if (!exec_sql(db, "ROLLBACK TO inv_reserve") || !exec_sql(db, "RELEASE inv_reserve")) {
            sg_svc_db_fail(tx, res, "rolling the reservation back");
        } else {
            refuse_short(tx, &lines, res);
        }
        return;
    }
    sg_ulid_new(sg_now_ms(), id);
    if (rc < 0 || !inv__reservation_add(db, id, order_id, task->idempotency_key, &lines) ||
        !exec_sql(db, "RELEASE inv_reserve")) {
        sg_svc_db_fail(tx, res, "reserving");
        return;
    }
    reserved(tx, id, order_id, &lines, low, n_low, res);
}

/* ---- release ---- */

/* The held reservation named by rid, which must belong to order_id: 1 (copied into id),
 * 0 (unknown or no longer held), -1 (res filled). */
static int held_by_id(sg_svc_tx_t *tx, const char *order_id, const char *rid,
                      char id[INV_ID_LEN + 1], sg_task_result_t *res)
{
    char owner[INV_ORDER_MAX + 1];
    bool held = false;
    int rc = inv__reservation_get(sg_svc_db(tx), rid, owner, &held);
    if (rc < 0) {
        sg_svc_db_fail(tx, res, "looking up the reservation");
        return -1;
    }
    if (rc == 1 && strcmp(owner, order_id) != 0) {
        sg_svc_invalid(tx, res,
                       "field \"reservation_id\": reservation %s belongs to order %s, not %s", rid,
                       owner, order_id);
        return -1;
    }
    if (rc == 0 || !held) {
        return 0;
    }
    snprintf(id, INV_ID_LEN + 1, "%s", rid);
    return 1;
}

/*
 * The held reservation of order_id, for a release without reservation_id: 1 (into id),
 * 0 (none), -1 (res filled). A compensation releases only what its own forward task
 * reserved (found by the key convention of activity.h: forward key + "/compensate"),
 * so that undoing a reserve refused as already_reserved cannot release the reservation
 * another saga holds for the same order. A forward release (order_cancel) releases
 * whatever the order holds.
 */
static int held_by_order(sg_svc_tx_t *tx, const sg_task_t *task, const char *order_id,
                         char id[INV_ID_LEN + 1], sg_task_result_t *res)
{
    static const char suffix[] = "/compensate";
    const char *key = task->idempotency_key;
    size_t kl = strlen(key), sl = sizeof(suffix) - 1;
    char *fwd = NULL;
    if (task->compensation && kl > sl && strcmp(key + kl - sl, suffix) == 0 &&
        (fwd = sg_strndup(key, kl - sl)) == NULL) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return -1;
    }
    int rc = inv__held_of_order(sg_svc_db(tx), order_id, fwd, id);
    sg_free(fwd);
    if (rc < 0) {
        sg_svc_db_fail(tx, res, "looking up the order's reservation");
    }
    return rc;
}

static void op_release(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *input, void *arg,
                       sg_task_result_t *res)
{
    (void)arg;
    const char *order_id, *rid;
    if (!sg_svc_str(tx, input, "order_id", INV_ORDER_MAX, &order_id, res) ||
        !sg_svc_str_opt(tx, input, "reservation_id", INV_ORDER_MAX, &rid, res)) {
        return;
    }
    char id[INV_ID_LEN + 1] = "";
    int rc = rid != NULL ? held_by_id(tx, order_id, rid, id, res)
                         : held_by_order(tx, task, order_id, id, res);
    if (rc < 0) {
        return;
    }
    cJSON *items = cJSON_CreateArray();
    if (items == NULL) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return;
    }
    if (rc == 1 && (rc = inv__reservation_release(sg_svc_db(tx), id, items)) < 0) {
        cJSON_Delete(items);
        sg_svc_db_fail(tx, res, "releasing");
        return;
    }
    /* Nothing held (never reserved, already released) is success without effect. */
    bool released = rc == 1;
    const char *shown = released ? id : rid;
    cJSON *out = cJSON_CreateObject();
    bool ok = out != NULL && cJSON_AddStringToObject(out, "order_id", order_id) &&
              (shown ? cJSON_AddStringToObject(out, "reservation_id", shown)
                     : cJSON_AddNullToObject(out, "reservation_id")) &&
              cJSON_AddBoolToObject(out, "released", released);
    if (!ok || !cJSON_AddItemToObject(out, "items", items)) {
        cJSON_Delete(out); /* items was not attached */
        cJSON_Delete(items);
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return;
    }
    if (released) {
        cJSON *ev = cJSON_Duplicate(out, true);
        cJSON_DeleteItemFromObjectCaseSensitive(ev, "released");
        if (!emit(tx, "inventory.released", ev, res)) {
            cJSON_Delete(out);
            return;
        }
    }
    ok_json(res, out);
}

/* ---- restock ---- */

cJSON *inv__updated_event(const char *sku, int64_t stock, int64_t delta, const char *reason)
{
    cJSON *ev = cJSON_CreateObject();
    if (ev != NULL && (!cJSON_AddStringToObject(ev, "sku", sku) ||
                       !cJSON_AddNumberToObject(ev, "stock", (double)stock) ||
                       !cJSON_AddNumberToObject(ev, "delta", (double)delta) ||
                       !cJSON_AddStringToObject(ev, "reason", reason))) {
        cJSON_Delete(ev);
        return NULL;
    }
    return ev;
}

static void op_restock(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *input, void *arg,
                       sg_task_result_t *res)
{
    (void)task;
    (void)arg;
    const char *sku;
    int64_t qty, stock = 0;
    if (!sg_svc_str(tx, input, "sku", INV_SKU_MAX, &sku, res) ||
        !sg_svc_int(tx, input, "qty", 1, INV_QTY_MAX, &qty, res)) {
        return;
    }
    int rc = inv__restock(sg_svc_db(tx), sku, qty, &stock);
    if (rc <= 0) {
        if (rc < 0) {
            sg_svc_db_fail(tx, res, "restocking");
        } else {
            sg_task_fail(res, SG_TASK_FATAL, "inventory.unknown_sku", "unknown sku: %s", sku);
        }
        return;
    }
    if (!emit(tx, "inventory.updated", inv__updated_event(sku, stock, qty, "restock"), res)) {
        return;
    }
    cJSON *out = inv__updated_event(sku, stock, qty, "restock");
    cJSON_DeleteItemFromObjectCaseSensitive(out, "reason");
    ok_json(res, out);
}

/* ---- check ---- */

/* One line of a check's answer. */
static bool check_line(cJSON *arr, const inv_line_t *line, int64_t available)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return false;
    }
    return cJSON_AddStringToObject(o, "sku", line->sku) &&
           cJSON_AddNumberToObject(o, "requested", (double)line->qty) &&
           cJSON_AddNumberToObject(o, "available", (double)available);
}

static void op_check(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *input, void *arg,
                     sg_task_result_t *res)
{
    (void)task;
    (void)arg;
    inv_lines_t lines;
    if (!read_items(tx, input, &lines, res)) {
        return;
    }
    /* Read only: an unknown sku is simply not available. */
    int64_t stock[INV_MAX_LINES];
    bool all = true;
    for (size_t i = 0; i < lines.n; i++) {
        stock[i] = 0;
        if (inv__stock(sg_svc_db(tx), lines.v[i].sku, &stock[i]) < 0) {
            sg_svc_db_fail(tx, res, "reading stock");
            return;
        }
        all = all && stock[i] >= lines.v[i].qty;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *arr = NULL;
    bool ok = out != NULL && cJSON_AddBoolToObject(out, "available", all) &&
              (arr = cJSON_AddArrayToObject(out, "lines")) != NULL;
    for (size_t i = 0; ok && i < lines.n; i++) {
        ok = check_line(arr, &lines.v[i], stock[i]);
    }
    if (!ok) {
        cJSON_Delete(out);
        out = NULL; /* ok_json answers out of memory */
    }
    ok_json(res, out);
}

/* ---- the module ---- */

static sg_err_t inv_open(const sg_activity_env_t *env, sg_activity_ctx_t **out, char *err,
                         size_t errlen)
{
    sg_activity_ctx_t *ctx = sg_calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    sg_err_t rc = sg_svc_open(env, "inventory", inv__schema, &ctx->svc, err, errlen);
    if (rc != SG_OK) {
        sg_free(ctx);
        return rc;
    }
    *out = ctx;
    return SG_OK;
}

static void inv_close(sg_activity_ctx_t *ctx)
{
    if (ctx != NULL) {
        sg_svc_close(ctx->svc);
        sg_free(ctx);
    }
}

static sg_err_t inv_events_peek(sg_activity_ctx_t *ctx, size_t max, sg_event_fn fn, void *arg)
{
    return sg_svc_events_peek(ctx->svc, max, fn, arg);
}

static sg_err_t inv_events_ack(sg_activity_ctx_t *ctx, int64_t upto_seq)
{
    return sg_svc_events_ack(ctx->svc, upto_seq);
}

static sg_err_t inv_seed(sg_activity_ctx_t *ctx, const char *json, char *err, size_t errlen)
{
    return inv__seed(ctx->svc, json, err, errlen);
}

static void run_reserve(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res)
{
    sg_svc_run(ctx->svc, task, op_reserve, NULL, res);
}

static void run_release(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res)
{
    sg_svc_run(ctx->svc, task, op_release, NULL, res);
}

static void run_restock(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res)
{
    sg_svc_run(ctx->svc, task, op_restock, NULL, res);
}

static void run_check(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res)
{
    sg_svc_run(ctx->svc, task, op_check, NULL, res);
}

static const sg_activity_op_t inv_ops[] = {
    {"reserve", run_reserve},
    {"release", run_release},
    {"restock", run_restock},
    {"check", run_check},
};

const sg_activity_module_t sg_activity_inventory_module = {
    .queue = "inventory",
    .ops = inv_ops,
    .n_ops = SG_ARRAY_LEN(inv_ops),
    .open = inv_open,
    .close = inv_close,
    .events_peek = inv_events_peek,
    .events_ack = inv_events_ack,
    .seed = inv_seed,
};
