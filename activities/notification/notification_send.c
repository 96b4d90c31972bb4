/*
 * notification.send: renders a template for a customer and delivers it on each of the
 * customer's channels through the simulated providers, exactly once per channel per
 * idempotency key, however often the task is delivered, retried or crashed.
 *
 * Why it is not one sg_svc_run: a provider that fails must leave a trace that survives
 * the retryable answer (failed/retried status, attempts, and above all the channels
 * that did go out), and sg_svc_run rolls back everything on a retryable result. So a
 * send is:
 *   1. settle (sg_svc_run): validate, render, look the key's deliveries up. When every
 *      channel is sent, answer OK, recorded with the key; a recorded key answers its
 *      first outcome. Otherwise answer an internal retryable "pending": rolled back,
 *      nothing recorded, and the plan handed back to step 2.
 *   2. deliver: per provider call, claim the channels in one committed transaction
 *      (row queued, or failed -> retried; attempts + 1), call the providers with no
 *      lock held, then commit the outcomes: sent (with notification.sent) or failed.
 *      Failing channels are retried a few times with exponential backoff, within the
 *      task's deadline; a channel that still fails ends this attempt with
 *      notification.failed and a retryable notification.provider_unavailable.
 *   3. settle again: now every channel is sent, so the OK is recorded.
 * A delivery row with status sent IS the message having gone out, and it only becomes
 * sent through "UPDATE ... WHERE status <> 'sent'" on the row that is UNIQUE per key and
 * channel: a crash anywhere leaves either no sent row (the retry sends) or a sent one
 * (the retry skips it), never two.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "activities/notification/notification_int.h"

#define MONEY_MAX 1000000000000000LL /* 10^13 units of a currency: absurd, not wrong */
#define SEND_TRIES 4                 /* provider calls per channel per task attempt */
#define BACKOFF_FIRST_MS 5
#define BACKOFF_MAX_MS 50
#define SETTLE_ROUNDS 2 /* deliver-then-settle rounds (a contact may change meanwhile) */

/* What settle hands to the delivery loop. */
typedef struct {
    bool pending; /* set last: settle found channels to deliver */
    char template_name[NOTIF_TEMPLATE_MAX + 1];
    char order_id[NOTIF_ID_MAX + 1]; /* "" when the template needs none */
    char customer_id[NOTIF_ID_MAX + 1];
    char *subject;
    char *body;
    char *short_text;
    notif_target_t targets[NOTIF_N_CHANNELS];
    size_t n_targets;
} send_plan_t;

static void plan_fini(send_plan_t *p)
{
    sg_free(p->subject);
    sg_free(p->body);
    sg_free(p->short_text);
    memset(p, 0, sizeof(*p));
}

/* ---- settle: the recorded part ---- */

static bool has_field(const cJSON *in, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, field);
    return v != NULL && !cJSON_IsNull(v);
}

/* Reads the template's variables but the customer's name. */
static bool read_vars(sg_svc_tx_t *tx, const cJSON *in, notif_vars_t *v, sg_task_result_t *res)
{
    const char *money = has_field(in, "total") ? "total" : "amount";
    if (has_field(in, money)) {
        if (!sg_svc_int(tx, in, money, 0, MONEY_MAX, &v->total, res)) {
            return false;
        }
        v->has_total = true;
    }
    if (!sg_svc_str_opt(tx, in, "order_id", NOTIF_ID_MAX, &v->order_id, res) ||
        !sg_svc_str_opt(tx, in, "currency", 3, &v->currency, res) ||
        !sg_svc_str_opt(tx, in, "sku", NOTIF_ID_MAX, &v->sku, res)) {
        return false;
    }
    if (v->currency != NULL &&
        (strlen(v->currency) != 3 || strspn(v->currency, "ABCDEFGHIJKLM"
                                                         "NOPQRSTUVWXYZ") != 3)) {
        sg_svc_invalid(tx, res, "field \"currency\" must be an ISO 4217 code like \"EUR\"");
        return false;
    }
    if (has_field(in, "stock")) {
        if (!sg_svc_int(tx, in, "stock", INT32_MIN, INT32_MAX, &v->stock, res)) {
            return false;
        }
        v->has_stock = true;
    }
    return true;
}

/* Renders text into *out; false with res filled when the input lacks what it needs. */
static bool render(sg_svc_tx_t *tx, const notif_template_t *t, const char *text,
                   const notif_vars_t *v, char **out, sg_task_result_t *res)
{
    const char *missing = NULL;
    *out = notification__render(text, v, &missing);
    if (*out != NULL) {
        return true;
    }
    if (missing == NULL) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
    } else {
        sg_svc_invalid(tx, res, "field \"%s\"%s is required by template \"%s\"", missing,
                       strcmp(missing, "total") == 0 ? " (or \"amount\")" : "", t->name);
    }
    return false;
}

/* The recorded answer: where the message went. */
static char *output_json(const send_plan_t *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *chans = NULL, *dels = NULL;
    bool ok = o != NULL &&
              (*p->order_id ? cJSON_AddStringToObject(o, "order_id", p->order_id)
                            : cJSON_AddNullToObject(o, "order_id")) != NULL &&
              cJSON_AddStringToObject(o, "customer_id", p->customer_id) != NULL &&
              cJSON_AddStringToObject(o, "template", p->template_name) != NULL &&
              (chans = cJSON_AddArrayToObject(o, "channels")) != NULL &&
              (dels = cJSON_AddArrayToObject(o, "deliveries")) != NULL;
    for (size_t i = 0; ok && i < p->n_targets; i++) {
        const notif_target_t *t = &p->targets[i];
        const char *ch = notification__channel_name(t->channel);
        cJSON *d = cJSON_CreateObject();
        if (d == NULL || !cJSON_AddItemToArray(dels, d)) {
            cJSON_Delete(d);
            ok = false;
            break;
        }
        ok = cJSON_AddItemToArray(chans, cJSON_CreateString(ch)) &&
             cJSON_AddStringToObject(d, "id", t->id) && cJSON_AddStringToObject(d, "channel", ch) &&
             cJSON_AddStringToObject(d, "recipient", t->recipient) &&
             cJSON_AddNumberToObject(d, "attempts", (double)t->attempts);
    }
    char *json = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return json;
}

/* Answers OK when every target is sent (also when there is none); else hands the plan
 * on as pending. */
static void settle_finish(send_plan_t *p, sg_task_result_t *res)
{
    for (size_t i = 0; i < p->n_targets; i++) {
        if (!p->targets[i].sent) {
            p->pending = true;
            sg_task_fail(res, SG_TASK_RETRYABLE, "notification.pending",
                         "deliveries pending: %s not sent yet",
                         notification__channel_name(p->targets[i].channel));
            return;
        }
    }
    char *json = output_json(p);
    if (json == NULL) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return;
    }
    sg_task_ok(res, json);
    cJSON_free(json);
}

static void settle_op(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                      sg_task_result_t *res)
{
    send_plan_t *p = arg;
    plan_fini(p);
    const char *tname, *customer_id, *email;
    notif_vars_t v = {0};
    if (!sg_svc_str(tx, in, "template", NOTIF_ID_MAX, &tname, res) ||
        !sg_svc_str(tx, in, "customer_id", NOTIF_ID_MAX, &customer_id, res) ||
        !notification__read_email(tx, in, &email, res) || !read_vars(tx, in, &v, res)) {
        return;
    }
    const notif_template_t *t = notification__template(tname);
    if (t == NULL) {
        sg_task_fail(res, SG_TASK_FATAL, "notification.unknown_template",
                     "no template named \"%s\"", tname);
        return;
    }
    notif_contact_t c;
    int n = notification__reach(tx, customer_id, email, &c, p->targets, res);
    if (n < 0) {
        return;
    }
    if (n == 0 && !task->compensation) {
        sg_task_fail(res, SG_TASK_FATAL, "notification.no_contact",
                     "customer \"%s\" has no contact record with a channel, and no email was "
                     "given",
                     customer_id);
        return;
    }
    /* A compensation with nobody to tell has nothing to do: it succeeds, empty. */
    p->n_targets = (size_t)n;
    v.name = *c.name != '\0' ? c.name : NULL;
    if (!render(tx, t, t->subject, &v, &p->subject, res) ||
        !render(tx, t, t->body, &v, &p->body, res) ||
        !render(tx, t, t->short_text, &v, &p->short_text, res)) {
        return;
    }
    snprintf(p->template_name, sizeof(p->template_name), "%s", t->name);
    snprintf(p->order_id, sizeof(p->order_id), "%s", v.order_id ? v.order_id : "");
    snprintf(p->customer_id, sizeof(p->customer_id), "%s", customer_id);
    for (size_t i = 0; i < p->n_targets; i++) {
        if (notification__delivery_find(sg_svc_db(tx), task->idempotency_key, &p->targets[i]) < 0) {
            sg_svc_db_fail(tx, res, "deliveries");
            return;
        }
    }
    settle_finish(p, res);
}

/* ---- deliver: the tracked part, one committed transaction per step ---- */

typedef struct {
    const sg_task_t *task;
    send_plan_t *p;
    bool last;                   /* this provider call is the attempt's last */
    bool done[NOTIF_N_CHANNELS]; /* finish: the target is sent (by us or another) */
} round_t;

static notif_message_t message_of(const round_t *r)
{
    return (notif_message_t){.key = r->task->idempotency_key,
                             .order_id = r->p->order_id,
                             .customer_id = r->p->customer_id,
                             .template_name = r->p->template_name,
                             .subject = r->p->subject,
                             .body = r->p->body,
                             .short_text = r->p->short_text};
}

static sg_err_t claim_fn(sg_svc_tx_t *tx, void *arg)
{
    round_t *r = arg;
    notif_message_t m = message_of(r);
    for (size_t i = 0; i < r->p->n_targets; i++) {
        notif_target_t *t = &r->p->targets[i];
        /* A row found sent was committed before this transaction: true after a rollback
         * of this one too. */
        if (!t->sent && notification__delivery_claim(sg_svc_db(tx), &m, t) < 0) {
            return SG_ERR_IO;
        }
    }
    return SG_OK;
}

/* Sleeps ms milliseconds, but not past deadline_ms (0: none). */
static void sleep_ms(uint64_t ms, uint64_t deadline_ms)
{
    uint64_t now = sg_now_ms();
    if (deadline_ms != 0) {
        ms = now >= deadline_ms ? 0 : ms < deadline_ms - now ? ms : deadline_ms - now;
    }
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The simulated provider of t's channel: the call takes the chaos latency and fails
 * with the chaos failure rate. Called with no lock held. A real provider would get the
 * delivery id as its own idempotency key. */
static void provider_call(const sg_activity_ctx_t *ctx, const sg_task_t *task, notif_target_t *t)
{
    static const char *const outage[NOTIF_N_CHANNELS] = {
        "smtp: 451 4.3.0 temporary failure (simulated outage)",
        "sms gateway: 503 service unavailable (simulated outage)",
        "push service: 503 service unavailable (simulated outage)",
    };
    if (ctx->latency_ms > 0) {
        sleep_ms((uint64_t)ctx->latency_ms, task->deadline_ms);
    }
    double rate = ctx->failure_rate[t->channel];
    t->ok = !(rate > 0 && sg_svc_random() < rate);
    snprintf(t->error, sizeof(t->error), "%s", t->ok ? "" : outage[t->channel]);
}

static sg_err_t emit_delivery(sg_svc_tx_t *tx, const round_t *r, const notif_target_t *t)
{
    cJSON *f = cJSON_CreateObject();
    if (f == NULL || !cJSON_AddStringToObject(f, "notification_id", t->id) ||
        (*r->p->order_id && !cJSON_AddStringToObject(f, "order_id", r->p->order_id)) ||
        !cJSON_AddStringToObject(f, "customer_id", r->p->customer_id) ||
        !cJSON_AddStringToObject(f, "channel", notification__channel_name(t->channel)) ||
        !cJSON_AddStringToObject(f, "template", r->p->template_name) ||
        !cJSON_AddStringToObject(f, "recipient", t->recipient) ||
        !cJSON_AddNumberToObject(f, "attempts", (double)t->attempts) ||
        (!t->ok && !cJSON_AddStringToObject(f, "error", t->error))) {
        cJSON_Delete(f);
        return SG_ERR_NOMEM;
    }
    return sg_svc_emit_in(tx, t->ok ? "notification.sent" : "notification.failed",
                          r->task->instance_id, f);
}

static sg_err_t finish_fn(sg_svc_tx_t *tx, void *arg)
{
    round_t *r = arg;
    for (size_t i = 0; i < r->p->n_targets; i++) {
        notif_target_t *t = &r->p->targets[i];
        r->done[i] = t->sent;
        if (t->sent) {
            continue;
        }
        int changed = notification__delivery_finish(sg_svc_db(tx), t, t->ok ? NULL : t->error);
        if (changed < 0) {
            return SG_ERR_IO;
        }
        /* changed == 0: another delivery of the task sent it meanwhile, and told. */
        r->done[i] = t->ok || changed == 0;
        if (changed == 1 && (t->ok || r->last)) {
            sg_err_t rc = emit_delivery(tx, r, t);
            if (rc != SG_OK) {
                return rc;
            }
        }
    }
    return SG_OK;
}

static void store_fail(sg_task_result_t *res, const char *what)
{
    sg_task_fail(res, SG_TASK_RETRYABLE, "notification.store",
                 "notification.db: %s failed; the deliveries are retried", what);
}

/* Delivers every pending target of p. True when all are sent; false with res filled
 * (retryable) otherwise. */
static bool deliver(const sg_activity_ctx_t *ctx, const sg_task_t *task, send_plan_t *p,
                    sg_task_result_t *res)
{
    uint64_t delay = BACKOFF_FIRST_MS;
    for (int try = 1;; try++) {
        if (task->deadline_ms != 0 && sg_now_ms() >= task->deadline_ms) {
            sg_task_fail(res, SG_TASK_RETRYABLE, "notification.provider_unavailable",
                         "the attempt's deadline passed before every channel was delivered");
            return false;
        }
        round_t r = {.task = task, .p = p};
        if (sg_svc_exec(ctx->svc, claim_fn, &r) != SG_OK) {
            store_fail(res, "claiming the deliveries");
            return false;
        }
        for (size_t i = 0; i < p->n_targets; i++) {
            if (!p->targets[i].sent) {
                provider_call(ctx, task, &p->targets[i]);
            }
        }
        r.last = try >= SEND_TRIES ||
                 (task->deadline_ms != 0 && sg_now_ms() + delay >= task->deadline_ms);
        if (sg_svc_exec(ctx->svc, finish_fn, &r) != SG_OK) {
            store_fail(res, "recording the deliveries");
            return false;
        }
        const char *failed = NULL; /* the first channel's error, for the message */
        for (size_t i = 0; i < p->n_targets; i++) {
            p->targets[i].sent = r.done[i];
            if (!r.done[i] && failed == NULL) {
                failed = p->targets[i].error;
            }
        }
        if (failed == NULL) {
            return true;
        }
        if (r.last) {
            sg_task_fail(res, SG_TASK_RETRYABLE, "notification.provider_unavailable",
                         "gave up after %d provider calls: %s", try, failed);
            return false;
        }
        sleep_ms(delay, task->deadline_ms);
        delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
    }
}

void notification__send(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res)
{
    send_plan_t p = {0};
    for (int round = 0;; round++) {
        p.pending = false;
        sg_svc_run(ctx->svc, task, settle_op, &p, res);
        /* Anything but the internal "pending" is the answer: a recorded outcome, an
         * invalid input, a chaos failure, a store error. */
        if (!p.pending || res->outcome != SG_TASK_RETRYABLE || round == SETTLE_ROUNDS) {
            break;
        }
        sg_task_result_fini(res);
        if (!deliver(ctx, task, &p, res)) {
            break;
        }
    }
    plan_fini(&p);
}
