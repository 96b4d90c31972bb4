/*
 * payment: the shop's simulated payment gateway (queue "payment").
 *
 *   charge  takes an order's total from a customer's card: declined (FATAL
 *           payment.declined, recorded in the ledger, event payment.failed) for an unknown
 *           or blocked card, a card of another customer, or a limit the charge would
 *           exceed; otherwise event payment.processed. One charge per order: a second
 *           charge of an order under another idempotency key is refused
 *           (payment.already_charged), never taken twice.
 *   refund  gives back the whole captured amount of a payment, at most once per payment
 *           whatever the idempotency key (event payment.refunded when money moves).
 *           Nothing captured is a success without effect: it is the compensation of a
 *           charge that may never have happened.
 *   get     reads an order's payment.
 *
 * Every operation runs inside sg_svc_run (idempotency, outbox, chaos); the SQL and the
 * invariants it keeps are in payment_store.c. It must never move money outside the
 * ledger, nor refund more than a charge captured.
 */
#include <stdio.h>
#include <string.h>

#include "activities/activity.h"
#include "activities/common/svc.h"
#include "activities/payment/payment_int.h"

struct sg_activity_ctx {
    sg_svc_t *svc;
    /* payment.decline_rate: the fraction of charges the "issuer" declines at random. */
    double decline_rate;
};

/* ---- small helpers ---- */

static bool add_str(cJSON *o, const char *key, const char *v)
{
    return (v != NULL ? cJSON_AddStringToObject(o, key, v) : cJSON_AddNullToObject(o, key)) != NULL;
}

static bool add_int(cJSON *o, const char *key, int64_t v)
{
    return cJSON_AddNumberToObject(o, key, (double)v) != NULL;
}

/* Answers OK with o as JSON (o is freed); NULL o means out of memory. */
static void reply(sg_task_result_t *res, cJSON *o)
{
    char *json = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (json == NULL) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return;
    }
    sg_task_ok(res, json);
    cJSON_free(json);
}

static bool valid_currency(const char *s)
{
    return strlen(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' &&
           s[2] >= 'A' && s[2] <= 'Z';
}

/* Reads an ISO-4217-shaped currency; optional ones may be absent or null (*out NULL). */
static bool read_currency(sg_svc_tx_t *tx, const cJSON *in, bool required, const char **out,
                          sg_task_result_t *res)
{
    bool ok = required ? sg_svc_str(tx, in, "currency", 3, out, res)
                       : sg_svc_str_opt(tx, in, "currency", 3, out, res);
    if (ok && *out != NULL && !valid_currency(*out)) {
        sg_svc_invalid(tx, res, "field \"currency\" must be 3 capital letters (ISO 4217)");
        return false;
    }
    return ok;
}

/* ---- charge ---- */

typedef struct {
    const char *order_id;
    const char *customer_id;
    const char *card_token;
    const char *currency;
    int64_t amount;
} charge_in_t;

static bool charge_read(sg_svc_tx_t *tx, const cJSON *in, charge_in_t *c, sg_task_result_t *res)
{
    return sg_svc_str(tx, in, "order_id", PAY_ID_MAX, &c->order_id, res) &&
           sg_svc_str(tx, in, "customer_id", PAY_ID_MAX, &c->customer_id, res) &&
           sg_svc_str(tx, in, "card_token", PAY_TOKEN_MAX, &c->card_token, res) &&
           sg_svc_int(tx, in, "amount", 1, PAY_AMOUNT_MAX, &c->amount, res) &&
           read_currency(tx, in, true, &c->currency, res);
}

/* Records a decline (no money moves), emits payment.failed and answers FATAL
 * payment.declined: committed and recorded together by the kit. */
static void decline(sg_svc_tx_t *tx, const sg_task_t *task, const charge_in_t *c,
                    const char *reason, sg_task_result_t *res)
{
    char id[27];
    sg_ulid_new(sg_now_ms(), id);
    pay_row_t row = {.id = id,
                     .order_id = c->order_id,
                     .customer_id = c->customer_id,
                     .card_token = c->card_token,
                     .currency = c->currency,
                     .amount = c->amount,
                     .reason = reason,
                     .key = task->idempotency_key};
    if (!payment__decline_insert(sg_svc_db(tx), &row)) {
        sg_svc_db_fail(tx, res, "recording a decline");
        return;
    }
    cJSON *ev = cJSON_CreateObject();
    if (ev == NULL || !add_str(ev, "order_id", c->order_id) ||
        !add_str(ev, "customer_id", c->customer_id) || !add_int(ev, "amount", c->amount) ||
        !add_str(ev, "currency", c->currency) || !add_str(ev, "code", "payment.declined") ||
        !add_str(ev, "reason", reason)) {
        cJSON_Delete(ev);
        ev = NULL;
    }
    if (sg_svc_emit(tx, "payment.failed", ev) != SG_OK) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "payment.store", "cannot emit payment.failed");
        return;
    }
    sg_task_fail(res, SG_TASK_FATAL, "payment.declined", "payment declined: %s", reason);
}

/* Why the conditional INSERT refused the charge, for people. has_card: the card exists. */
static void decline_reason(bool has_card, const pay_card_t *card, const charge_in_t *c, char *out,
                           size_t cap)
{
    if (!has_card) {
        snprintf(out, cap, "unknown card token");
    } else if (card->blocked) {
        snprintf(out, cap, "the card is blocked");
    } else if (strcmp(card->customer_id, c->customer_id) != 0) {
        snprintf(out, cap, "the card does not belong to customer %s", c->customer_id);
    } else if (card->outstanding + c->amount > card->limit) {
        snprintf(out, cap, "insufficient funds: %lld outstanding + %lld exceeds the limit %lld",
                 (long long)card->outstanding, (long long)c->amount, (long long)card->limit);
    } else {
        snprintf(out, cap, "declined by issuer");
    }
}

/* The charge went through: payment.processed and the output. */
static void charged(sg_svc_tx_t *tx, const charge_in_t *c, const char *payment_id,
                    const char *last4, sg_task_result_t *res)
{
    cJSON *ev = cJSON_CreateObject();
    if (ev == NULL || !add_str(ev, "order_id", c->order_id) ||
        !add_str(ev, "payment_id", payment_id) || !add_str(ev, "customer_id", c->customer_id) ||
        !add_int(ev, "amount", c->amount) || !add_str(ev, "currency", c->currency) ||
        !add_str(ev, "card_last4", last4)) {
        cJSON_Delete(ev);
        ev = NULL;
    }
    if (sg_svc_emit(tx, "payment.processed", ev) != SG_OK) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "payment.store", "cannot emit payment.processed");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || !add_str(o, "payment_id", payment_id) || !add_int(o, "amount", c->amount) ||
        !add_str(o, "currency", c->currency) || !add_str(o, "card_last4", last4)) {
        cJSON_Delete(o);
        o = NULL;
    }
    reply(res, o);
}

static void op_charge(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                      sg_task_result_t *res)
{
    const sg_activity_ctx_t *ctx = arg;
    sqlite3 *db = sg_svc_db(tx);
    charge_in_t c;
    if (!charge_read(tx, in, &c, res)) {
        return;
    }
    /* Another saga (another key) charging the same order must not take the money twice;
     * returning its payment would let this saga's compensation refund it, so refuse. */
    pay_charge_t prev;
    int found = payment__charge_by_order(db, c.order_id, &prev);
    if (found != 0) {
        if (found < 0) {
            sg_svc_db_fail(tx, res, "looking up the order's charge");
        } else {
            sg_task_fail(res, SG_TASK_FATAL, "payment.already_charged",
                         "order %s is already charged by payment %s; it is not charged twice",
                         c.order_id, prev.id);
        }
        return;
    }
    if (ctx->decline_rate > 0 && sg_svc_random() < ctx->decline_rate) {
        decline(tx, task, &c, "declined by issuer (chaos)", res);
        return;
    }
    char id[27];
    sg_ulid_new(sg_now_ms(), id);
    pay_row_t row = {.id = id,
                     .order_id = c.order_id,
                     .customer_id = c.customer_id,
                     .card_token = c.card_token,
                     .currency = c.currency,
                     .amount = c.amount,
                     .key = task->idempotency_key};
    int done = payment__charge_insert(db, &row);
    pay_card_t card = {0};
    int has_card = done < 0 ? -1 : payment__card_get(db, c.card_token, &card);
    if (has_card < 0) {
        sg_svc_db_fail(tx, res, "charging");
        return;
    }
    if (done == 0) {
        char reason[256];
        decline_reason(has_card == 1, &card, &c, reason, sizeof(reason));
        decline(tx, task, &c, reason, res);
        return;
    }
    charged(tx, &c, id, card.last4, res);
}

/* ---- refund ---- */

typedef struct {
    const char *order_id;
    const char *payment_id; /* NULL: the charge of order_id */
    const char *currency;   /* NULL: not given */
    int64_t amount;         /* -1: not given */
} refund_in_t;

static bool refund_read(sg_svc_tx_t *tx, const cJSON *in, refund_in_t *r, sg_task_result_t *res)
{
    /* amount and currency only cross-check the request: the refund is always the whole
     * captured amount, in the charge's currency. */
    r->amount = -1;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(in, "amount");
    return sg_svc_str(tx, in, "order_id", PAY_ID_MAX, &r->order_id, res) &&
           sg_svc_str_opt(tx, in, "payment_id", PAY_ID_MAX, &r->payment_id, res) &&
           (a == NULL || cJSON_IsNull(a) ||
            sg_svc_int(tx, in, "amount", 0, PAY_AMOUNT_MAX, &r->amount, res)) &&
           read_currency(tx, in, false, &r->currency, res);
}

/* Emits payment.refunded for a refund of the whole charge c. */
static bool emit_refunded(sg_svc_tx_t *tx, const pay_charge_t *c, const char *refund_id)
{
    cJSON *ev = cJSON_CreateObject();
    if (ev == NULL || !add_str(ev, "order_id", c->order_id) || !add_str(ev, "payment_id", c->id) ||
        !add_str(ev, "refund_id", refund_id) || !add_int(ev, "amount", c->amount) ||
        !add_str(ev, "currency", c->currency)) {
        cJSON_Delete(ev);
        ev = NULL;
    }
    return sg_svc_emit(tx, "payment.refunded", ev) == SG_OK;
}

/* The output of a refund of charge c; refunded = what this call moved. */
static cJSON *refund_output(const refund_in_t *r, const pay_charge_t *c, const char *refund_id,
                            const char *status, int64_t refunded)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && add_str(o, "order_id", c->order_id) && add_str(o, "payment_id", c->id) &&
              add_str(o, "refund_id", refund_id) && add_str(o, "status", status) &&
              add_int(o, "refunded", refunded) && add_int(o, "captured", c->amount) &&
              add_str(o, "currency", c->currency);
    bool other_amount = r->amount >= 0 && r->amount != c->amount;
    bool other_currency = r->currency != NULL && strcmp(r->currency, c->currency) != 0;
    if (ok && (other_amount || other_currency)) {
        char note[160];
        snprintf(note, sizeof(note), "asked for %lld %s; a refund is always the captured %lld %s",
                 (long long)(r->amount >= 0 ? r->amount : c->amount),
                 r->currency ? r->currency : c->currency, (long long)c->amount, c->currency);
        ok = add_str(o, "note", note);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Nothing was captured for the order: success without effect. */
static void nothing_captured(const refund_in_t *r, sg_task_result_t *res)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || !add_str(o, "order_id", r->order_id) || !add_str(o, "payment_id", NULL) ||
        !add_str(o, "status", "nothing_captured") || !add_int(o, "refunded", 0)) {
        cJSON_Delete(o);
        o = NULL;
    }
    reply(res, o);
}

static void op_refund(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                      sg_task_result_t *res)
{
    (void)arg;
    sqlite3 *db = sg_svc_db(tx);
    refund_in_t r;
    if (!refund_read(tx, in, &r, res)) {
        return;
    }
    pay_charge_t c;
    int found = r.payment_id != NULL ? payment__charge_by_id(db, r.payment_id, &c)
                                     : payment__charge_by_order(db, r.order_id, &c);
    if (found < 0) {
        sg_svc_db_fail(tx, res, "looking up the charge");
        return;
    }
    if (found == 0 && r.payment_id != NULL) {
        /* A payment id comes from a successful charge: not knowing it means lost data,
         * which an operator must look at. */
        sg_task_fail(res, SG_TASK_FATAL, "payment.not_found", "no charge has payment_id %s",
                     r.payment_id);
        return;
    }
    if (found == 0) {
        nothing_captured(&r, res);
        return;
    }
    if (strcmp(c.order_id, r.order_id) != 0) {
        sg_svc_invalid(tx, res, "payment_id %s belongs to order %s, not to order %s", c.id,
                       c.order_id, r.order_id);
        return;
    }
    char refund_id[PAY_ID_MAX + 1];
    sg_ulid_new(sg_now_ms(), refund_id);
    int done = payment__refund_insert(db, &c, refund_id, task->idempotency_key);
    int64_t earlier = 0;
    if (done < 0 || (done == 0 && payment__refund_of(db, c.id, refund_id, &earlier) != 1)) {
        sg_svc_db_fail(tx, res, "refunding");
        return;
    }
    if (done == 1 && !emit_refunded(tx, &c, refund_id)) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "payment.store", "cannot emit payment.refunded");
        return;
    }
    reply(res, refund_output(&r, &c, refund_id, done == 1 ? "refunded" : "already_refunded",
                             done == 1 ? c.amount : 0));
}

/* ---- get ---- */

static void op_get(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                   sg_task_result_t *res)
{
    (void)task;
    (void)arg;
    sqlite3 *db = sg_svc_db(tx);
    const char *order_id;
    if (!sg_svc_str(tx, in, "order_id", PAY_ID_MAX, &order_id, res)) {
        return;
    }
    pay_charge_t c;
    char refund_id[PAY_ID_MAX + 1];
    int64_t refunded = 0;
    int charged = payment__charge_by_order(db, order_id, &c);
    int has_refund = charged == 1 ? payment__refund_of(db, c.id, refund_id, &refunded) : 0;
    int declined = charged == 0 ? payment__declined(db, order_id) : 0;
    if (charged < 0 || has_refund < 0 || declined < 0) {
        sg_svc_db_fail(tx, res, "reading the order's payment");
        return;
    }
    const char *status = has_refund == 1 ? "refunded"
                         : charged == 1  ? "charged"
                         : declined == 1 ? "declined"
                                         : "none";
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || !add_str(o, "order_id", order_id) ||
        !add_str(o, "payment_id", charged == 1 ? c.id : NULL) || !add_str(o, "status", status) ||
        !add_int(o, "charged", charged == 1 ? c.amount : 0) || !add_int(o, "refunded", refunded) ||
        !add_str(o, "currency", charged == 1 ? c.currency : NULL)) {
        cJSON_Delete(o);
        o = NULL;
    }
    reply(res, o);
}

/* ---- the module ---- */

static void run_charge(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res)
{
    sg_svc_run(ctx->svc, task, op_charge, ctx, res);
}

static void run_refund(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res)
{
    sg_svc_run(ctx->svc, task, op_refund, ctx, res);
}

static void run_get(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res)
{
    sg_svc_run(ctx->svc, task, op_get, ctx, res);
}

static const sg_activity_op_t ops[] = {
    {"charge", run_charge},
    {"refund", run_refund},
    {"get", run_get},
};

static sg_err_t pay_open(const sg_activity_env_t *env, sg_activity_ctx_t **out, char *err,
                         size_t errlen)
{
    sg_activity_ctx_t *ctx = sg_calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    sg_err_t rc = sg_svc_open(env, "payment", payment__schema, &ctx->svc, err, errlen);
    if (rc != SG_OK) {
        sg_free(ctx);
        return rc;
    }
    ctx->decline_rate = sg_chaos_value(sg_svc_chaos(ctx->svc), "payment", "decline_rate", 0);
    *out = ctx;
    return SG_OK;
}

static void pay_close(sg_activity_ctx_t *ctx)
{
    if (ctx == NULL) {
        return;
    }
    sg_svc_close(ctx->svc);
    sg_free(ctx);
}

static sg_err_t pay_events_peek(sg_activity_ctx_t *ctx, size_t max, sg_event_fn fn, void *arg)
{
    return sg_svc_events_peek(ctx->svc, max, fn, arg);
}

static sg_err_t pay_events_ack(sg_activity_ctx_t *ctx, int64_t upto_seq)
{
    return sg_svc_events_ack(ctx->svc, upto_seq);
}

static sg_err_t pay_seed(sg_activity_ctx_t *ctx, const char *json, char *err, size_t errlen)
{
    return payment__seed(ctx->svc, json, err, errlen);
}

const sg_activity_module_t sg_activity_payment_module = {
    .queue = "payment",
    .ops = ops,
    .n_ops = SG_ARRAY_LEN(ops),
    .open = pay_open,
    .close = pay_close,
    .events_peek = pay_events_peek,
    .events_ack = pay_events_ack,
    .seed = pay_seed,
};
