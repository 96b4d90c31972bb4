/*
 * order: the shop's order service (queue "order"). It owns the order records and their
 * history in <data_dir>/order.db and publishes order.created, order.updated and
 * order.cancelled. Operations, called by workflows/order_create.yaml and
 * workflows/order_cancel.yaml:
 *
 *   create_pending  records the order PENDING (total must equal sum(qty * price))
 *   approve         PENDING -> APPROVED, keeps the reservation and payment ids
 *   reject          PENDING -> REJECTED, the undo of create_pending
 *   begin_cancel    APPROVED -> CANCELLING, hands the cancel saga what it needs
 *   restore         CANCELLING -> the status before, the undo of begin_cancel
 *   cancel          CANCELLING -> CANCELLED
 *   get             the order as JSON (read only)
 *
 * An order belongs to the saga that recorded it (saga_id) and, while CANCELLING, to the
 * saga cancelling it (cancel_saga_id). The undo operations only touch an order their own
 * saga holds: a compensation runs for a step that timed out, and that step may have been
 * refused because another saga holds the order; undoing that saga's work would be wrong.
 *
 * Every operation runs through sg_svc_run (one idempotent transaction per task). This
 * file must never decide a refusal after writing: a FATAL result commits.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "activities/order/order.h"
#include "activities/order/order_int.h"

struct sg_activity_ctx {
    sg_svc_t *svc;
};

/* ---- small helpers ---- */

static void refuse(sg_task_result_t *res, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void refuse(sg_task_result_t *res, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sg_task_fail(res, SG_TASK_FATAL, code, "%s", msg);
}

static bool same_saga(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

/* A JSON object built field by field; one failed allocation spoils it (ok = false), so
 * callers check once at the end instead of after every field. */
typedef struct {
    cJSON *obj;
    bool ok;
} jb_t;

static jb_t jb_new(void)
{
    jb_t b = {.obj = cJSON_CreateObject()};
    b.ok = b.obj != NULL;
    return b;
}

static void jb_str(jb_t *b, const char *key, const char *v)
{
    b->ok = b->ok && (v != NULL ? cJSON_AddStringToObject(b->obj, key, v)
                                : cJSON_AddNullToObject(b->obj, key)) != NULL;
}

static void jb_int(jb_t *b, const char *key, int64_t v)
{
    b->ok = b->ok && cJSON_AddNumberToObject(b->obj, key, (double)v) != NULL;
}

static void jb_bool(jb_t *b, const char *key, bool v)
{
    b->ok = b->ok && cJSON_AddBoolToObject(b->obj, key, v) != NULL;
}

/* Takes item. */
static void jb_item(jb_t *b, const char *key, cJSON *item)
{
    if (!b->ok || item == NULL || !cJSON_AddItemToObject(b->obj, key, item)) {
        cJSON_Delete(item);
        b->ok = false;
    }
}

/* The object, or NULL (and freed) if building it failed. */
static cJSON *jb_take(jb_t *b)
{
    if (!b->ok) {
        cJSON_Delete(b->obj);
        b->obj = NULL;
    }
    return b->obj;
}

/* Answers success with b as the output (consumed). */
static void reply(jb_t *b, sg_task_result_t *res)
{
    cJSON *obj = jb_take(b);
    char *json = obj != NULL ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (json == NULL) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return;
    }
    sg_task_ok(res, json);
    cJSON_free(json);
}

/* ---- events ---- */

/* Emits type with the fields of b (consumed). False: res holds a retryable failure. */
static bool emit(sg_svc_tx_t *tx, const char *type, jb_t *b, sg_task_result_t *res)
{
    sg_err_t rc = sg_svc_emit(tx, type, jb_take(b));
    if (rc != SG_OK) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "order.store", "cannot emit %s: %s", type,
                     sg_strerror(rc));
        return false;
    }
    return true;
}

static bool emit_updated(sg_svc_tx_t *tx, const char *order_id, order_status_t from,
                         order_status_t to, const char *reason, sg_task_result_t *res)
{
    jb_t b = jb_new();
    jb_str(&b, "order_id", order_id);
    jb_str(&b, "status", order__status_name(to));
    jb_str(&b, "previous_status", order__status_name(from));
    jb_str(&b, "reason", reason);
    return emit(tx, "order.updated", &b, res);
}

static bool emit_cancelled(sg_svc_tx_t *tx, const char *order_id, const char *customer_id,
                           const char *reason, sg_task_result_t *res)
{
    jb_t b = jb_new();
    jb_str(&b, "order_id", order_id);
    jb_str(&b, "customer_id", customer_id);
    jb_str(&b, "reason", reason);
    return emit(tx, "order.cancelled", &b, res);
}

/* ---- rows and status changes ---- */

/* order__row_load with the failure reported in res (retryable). */
static int load(sg_svc_tx_t *tx, const char *order_id, order_row_t *row, sg_task_result_t *res)
{
    int found = order__row_load(sg_svc_db(tx), order_id, row);
    if (found < 0) {
        sg_svc_db_fail(tx, res, "load order");
    }
    return found;
}

/* Moves the loaded order to `to`, records why, and emits order.updated. False: res
 * holds a retryable failure and the transaction must roll back. */
static bool move(sg_svc_tx_t *tx, const sg_task_t *task, const char *order_id,
                 const order_row_t *row, order_status_t to, const char *reason,
                 sg_task_result_t *res)
{
    order_move_t mv = {.order_id = order_id,
                       .from = row->status,
                       .to = to,
                       .version = row->version,
                       .reason = reason,
                       .saga_id = task->instance_id,
                       .activity = task->activity};
    int rc = order__move(sg_svc_db(tx), &mv);
    if (rc < 0) {
        sg_svc_db_fail(tx, res, "status change");
        return false;
    }
    if (rc == 0) {
        /* Cannot happen under BEGIN IMMEDIATE; if it ever does, a retry decides again. */
        sg_task_fail(res, SG_TASK_RETRYABLE, "order.conflict", "order %s changed meanwhile",
                     order_id);
        return false;
    }
    return emit_updated(tx, order_id, row->status, to, reason, res);
}

/* Runs an UPDATE of the order's other columns after a move; false: res filled. */
static bool update_ok(sg_svc_tx_t *tx, int changed, sg_task_result_t *res)
{
    if (changed != 1) {
        sg_svc_db_fail(tx, res, "update order");
        return false;
    }
    return true;
}

/* ---- operations ---- */

static bool emit_created(sg_svc_tx_t *tx, const order_in_t *o, sg_task_result_t *res)
{
    jb_t b = jb_new();
    cJSON *items = cJSON_CreateArray();
    const cJSON *line;
    cJSON_ArrayForEach(line, o->items)
    {
        /* Only the message's fields: the input's lines may carry more. */
        jb_t l = jb_new();
        jb_str(&l, "sku", order__line_sku(line));
        jb_int(&l, "qty", order__line_int(line, "qty"));
        jb_int(&l, "price", order__line_int(line, "price"));
        cJSON *obj = jb_take(&l);
        if (items == NULL || obj == NULL || !cJSON_AddItemToArray(items, obj)) {
            cJSON_Delete(obj);
            b.ok = false;
        }
    }
    jb_str(&b, "order_id", o->order_id);
    jb_str(&b, "customer_id", o->customer_id);
    jb_item(&b, "items", items);
    jb_int(&b, "total", o->total);
    jb_str(&b, "currency", o->currency);
    jb_str(&b, "status", order__status_name(ORDER_PENDING));
    return emit(tx, "order.created", &b, res);
}

/* create_pending: an order is created once; any second create of its id is refused,
 * even with the same content (another saga placing the same order). */
static void create_pending(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                           sg_task_result_t *res)
{
    (void)arg;
    order_in_t o;
    sqlite3 *db = sg_svc_db(tx);
    if (!order__read_order(tx, in, &o, res)) {
        cJSON_free(o.shipping);
        return;
    }
    int n = order__exec(db,
                        "INSERT INTO orders(order_id, customer_id, email, total, currency,"
                        " shipping_address, status, saga_id, created_ms, updated_ms)"
                        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?8)"
                        " ON CONFLICT(order_id) DO NOTHING",
                        "sssisssi", o.order_id, o.customer_id, o.email, o.total, o.currency,
                        o.shipping, task->instance_id, (int64_t)sg_now_ms());
    order_row_t row;
    if (n < 0) {
        sg_svc_db_fail(tx, res, "insert order");
    } else if (n == 0) {
        if (load(tx, o.order_id, &row, res) >= 0) {
            refuse(res, "order.exists", "order %s exists already (recorded by saga %s)", o.order_id,
                   row.saga_id ? row.saga_id : "(none)");
            order__row_fini(&row);
        }
    } else if (!order__insert_lines(db, &o) ||
               !order__history_add(db, o.order_id, NULL, "pending", "created", task->instance_id,
                                   task->activity)) {
        sg_svc_db_fail(tx, res, "insert order");
    } else if (emit_created(tx, &o, res)) {
        jb_t b = jb_new();
        jb_str(&b, "order_id", o.order_id);
        jb_str(&b, "status", "pending");
        reply(&b, res);
    }
    cJSON_free(o.shipping);
}

static void approve(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                    sg_task_result_t *res)
{
    (void)arg;
    const char *id, *reservation_id, *payment_id;
    order_row_t row;
    if (!order__read_order_id(tx, in, &id, res) ||
        !sg_svc_str(tx, in, "reservation_id", REF_MAX, &reservation_id, res) ||
        !sg_svc_str(tx, in, "payment_id", REF_MAX, &payment_id, res)) {
        return;
    }
    int found = load(tx, id, &row, res);
    if (found == 0) {
        refuse(res, "order.not_found", "no order %s", id);
    } else if (found > 0 && row.status != ORDER_PENDING) {
        refuse(res, "order.not_pending", "order %s is %s, not pending", id,
               order__status_name(row.status));
    } else if (found > 0 && !same_saga(row.saga_id, task->instance_id)) {
        refuse(res, "order.not_pending", "order %s is pending in saga %s, not this one", id,
               row.saga_id ? row.saga_id : "(none)");
    } else if (found > 0 && move(tx, task, id, &row, ORDER_APPROVED, "approved", res) &&
               update_ok(tx,
                         order__exec(sg_svc_db(tx),
                                     "UPDATE orders SET reservation_id = ?2, payment_id = ?3"
                                     " WHERE order_id = ?1",
                                     "sss", id, reservation_id, payment_id),
                         res)) {
        jb_t b = jb_new();
        jb_str(&b, "order_id", id);
        jb_str(&b, "status", "approved");
        reply(&b, res);
    }
    order__row_fini(&row);
}

/* Output of the undo operations: what the order is now, and whether this call did it. */
static void reply_state(const char *id, int found, const order_row_t *row, bool changed,
                        order_status_t now, sg_task_result_t *res)
{
    jb_t b = jb_new();
    jb_str(&b, "order_id", id);
    jb_str(&b, "status",
           changed     ? order__status_name(now)
           : found > 0 ? order__status_name(row->status)
                       : NULL);
    jb_bool(&b, "changed", changed);
    reply(&b, res);
}

/* reject: the undo of create_pending. Succeeds without effect for an order never
 * recorded, already rejected, past the pivot, or recorded by another saga. */
static void reject(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                   sg_task_result_t *res)
{
    (void)arg;
    const char *id;
    order_row_t row;
    if (!order__read_order_id(tx, in, &id, res)) {
        return;
    }
    int found = load(tx, id, &row, res);
    bool ours =
        found > 0 && row.status == ORDER_PENDING && same_saga(row.saga_id, task->instance_id);
    if (found >= 0 && (!ours || (move(tx, task, id, &row, ORDER_REJECTED, "rejected", res) &&
                                 emit_cancelled(tx, id, row.customer_id, "rejected", res)))) {
        reply_state(id, found, &row, ours, ORDER_REJECTED, res);
    }
    order__row_fini(&row);
}

static void begin_cancel(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                         sg_task_result_t *res)
{
    (void)arg;
    const char *id, *reason, *requested_by;
    order_row_t row;
    if (!order__read_order_id(tx, in, &id, res) ||
        !sg_svc_str(tx, in, "reason", REASON_MAX, &reason, res) ||
        !sg_svc_str_opt(tx, in, "requested_by", ID_MAX, &requested_by, res)) {
        return;
    }
    int found = load(tx, id, &row, res);
    if (found == 0) {
        refuse(res, "order.not_found", "no order %s", id);
    } else if (found > 0 && row.status == ORDER_PENDING) {
        /* Its own saga is still placing it: cancelling now would race that saga. */
        refuse(res, "order.not_cancellable", "order %s is still being placed (pending)", id);
    } else if (found > 0 && row.status != ORDER_APPROVED) {
        refuse(res, "order.not_cancellable", "order %s is %s", id, order__status_name(row.status));
    } else if (found > 0 && move(tx, task, id, &row, ORDER_CANCELLING, reason, res) &&
               update_ok(tx,
                         order__exec(sg_svc_db(tx),
                                     "UPDATE orders SET cancel_reason = ?2,"
                                     " cancel_requested_by = ?3, cancel_saga_id = ?4"
                                     " WHERE order_id = ?1",
                                     "ssss", id, reason, requested_by, task->instance_id),
                         res)) {
        jb_t b = jb_new();
        jb_str(&b, "order_id", id);
        jb_str(&b, "customer_id", row.customer_id);
        jb_str(&b, "email", row.email);
        jb_str(&b, "reservation_id", row.reservation_id);
        jb_str(&b, "payment_id", row.payment_id);
        jb_int(&b, "amount", row.total);
        jb_str(&b, "currency", row.currency);
        reply(&b, res);
    }
    order__row_fini(&row);
}

/* restore: the undo of begin_cancel. Only the saga holding the order CANCELLING may
 * put it back; anything else succeeds without effect. */
static void restore(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                    sg_task_result_t *res)
{
    (void)arg;
    const char *id;
    order_row_t row;
    if (!order__read_order_id(tx, in, &id, res)) {
        return;
    }
    int found = load(tx, id, &row, res);
    bool ours = found > 0 && row.status == ORDER_CANCELLING &&
                same_saga(row.cancel_saga_id, task->instance_id);
    /* begin_cancel only starts from APPROVED: that is where the order goes back to if
     * previous_status is missing or not one CANCELLING may return to (a hand-edited row). */
    order_status_t to =
        ours && row.has_previous && order__transition_valid(ORDER_CANCELLING, row.previous_status)
            ? row.previous_status
            : ORDER_APPROVED;
    if (found >= 0 &&
        (!ours || (move(tx, task, id, &row, to, "cancel_undone", res) &&
                   update_ok(tx,
                             order__exec(sg_svc_db(tx),
                                         "UPDATE orders SET cancel_reason = NULL,"
                                         " cancel_requested_by = NULL, cancel_saga_id = NULL"
                                         " WHERE order_id = ?1",
                                         "s", id),
                             res)))) {
        reply_state(id, found, &row, ours, to, res);
    }
    order__row_fini(&row);
}

static void cancel(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                   sg_task_result_t *res)
{
    (void)arg;
    const char *id, *reason;
    order_row_t row;
    if (!order__read_order_id(tx, in, &id, res) ||
        !sg_svc_str(tx, in, "reason", REASON_MAX, &reason, res)) {
        return;
    }
    int found = load(tx, id, &row, res);
    if (found == 0) {
        refuse(res, "order.not_found", "no order %s", id);
    } else if (found > 0 && row.status == ORDER_CANCELLED) {
        reply_state(id, found, &row, false, ORDER_CANCELLED, res);
    } else if (found > 0 && row.status != ORDER_CANCELLING) {
        refuse(res, "order.not_cancellable", "order %s is %s, not being cancelled", id,
               order__status_name(row.status));
    } else if (found > 0 && move(tx, task, id, &row, ORDER_CANCELLED, reason, res) &&
               update_ok(tx,
                         order__exec(sg_svc_db(tx),
                                     "UPDATE orders SET cancel_reason = ?2 WHERE order_id = ?1",
                                     "ss", id, reason),
                         res) &&
               emit_cancelled(tx, id, row.customer_id, reason, res)) {
        reply_state(id, found, &row, true, ORDER_CANCELLED, res);
    }
    order__row_fini(&row);
}

static void get(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                sg_task_result_t *res)
{
    (void)arg;
    (void)task;
    const char *id;
    char *json = NULL;
    if (!order__read_order_id(tx, in, &id, res)) {
        return;
    }
    int found = order__record_json(sg_svc_db(tx), id, &json);
    if (found < 0) {
        sg_svc_db_fail(tx, res, "read order");
    } else if (found == 0) {
        refuse(res, "order.not_found", "no order %s", id);
    } else {
        sg_task_ok(res, json);
    }
    sg_free(json);
}

/* ---- the module ---- */

#define ORDER_OP(fn)                                                                           \
    static void run_##fn(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res) \
    {                                                                                          \
        sg_svc_run(ctx->svc, task, fn, NULL, res);                                             \
    }
ORDER_OP(create_pending)
ORDER_OP(approve)
ORDER_OP(reject)
ORDER_OP(begin_cancel)
ORDER_OP(restore)
ORDER_OP(cancel)
ORDER_OP(get)

static const sg_activity_op_t ops[] = {
    {"create_pending", run_create_pending},
    {"approve", run_approve},
    {"reject", run_reject},
    {"begin_cancel", run_begin_cancel},
    {"restore", run_restore},
    {"cancel", run_cancel},
    {"get", run_get},
};

static sg_err_t order_open(const sg_activity_env_t *env, sg_activity_ctx_t **out, char *err,
                           size_t errlen)
{
    sg_activity_ctx_t *ctx = sg_calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    sg_err_t rc = sg_svc_open(env, "order", order__schema_sql, &ctx->svc, err, errlen);
    if (rc != SG_OK) {
        sg_free(ctx);
        return rc;
    }
    *out = ctx;
    return SG_OK;
}

static void order_close(sg_activity_ctx_t *ctx)
{
    if (ctx != NULL) {
        sg_svc_close(ctx->svc);
        sg_free(ctx);
    }
}

static sg_err_t order_events_peek(sg_activity_ctx_t *ctx, size_t max, sg_event_fn fn, void *arg)
{
    return sg_svc_events_peek(ctx->svc, max, fn, arg);
}

static sg_err_t order_seed(sg_activity_ctx_t *ctx, const char *json, char *err, size_t errlen)
{
    return order__seed(ctx->svc, json, err, errlen);
}

static sg_err_t order_events_ack(sg_activity_ctx_t *ctx, int64_t upto_seq)
{
    return sg_svc_events_ack(ctx->svc, upto_seq);
}

const sg_activity_module_t sg_activity_order_module = {
    .queue = "order",
    .ops = ops,
    .n_ops = SG_ARRAY_LEN(ops),
    .open = order_open,
    .close = order_close,
    .events_peek = order_events_peek,
    .events_ack = order_events_ack,
    .seed = order_seed,
};
