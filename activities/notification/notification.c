/*
 * The notification service (queue "notification"): tells customers what happened to
 * their orders by e-mail, SMS and push, through simulated providers that record each
 * delivery in the service's own database (<data_dir>/notification.db).
 *
 * Operations (every one through the kit's idempotent sg_svc_run):
 *   prepare {order_id, customer_id, email?} -> {customer_id, channels}
 *       Checks that the customer can be reached (a contact with a usable channel, or an
 *       email given); sends nothing. None: FATAL notification.no_contact.
 *   send {template, order_id, customer_id, email?, total|amount?, currency?, sku?,
 *         stock?} -> {order_id, customer_id, template, channels, deliveries}
 *       Renders the template and delivers it once per channel per idempotency key
 *       (notification_send.c). FATAL notification.unknown_template,
 *       notification.no_contact (a compensation with nobody to tell succeeds, empty);
 *       RETRYABLE notification.provider_unavailable when a provider keeps failing.
 *       Events: notification.sent per channel delivered, notification.failed per channel
 *       that gives up for this attempt.
 *   status {order_id} -> {order_id, deliveries: [...]}
 *       The deliveries of an order, as they were when the key was first answered.
 * Seed: {"contacts": [{customer_id, name, email?, phone?, push_token?, channels}]}
 * upserts contacts.
 * Chaos (off by default), besides the kit's: notification.provider_failure_rate (every
 * provider), notification.<email|sms|push>_failure_rate (one channel), and
 * notification.provider_latency_ms (how long a provider call takes).
 *
 * This service must never send a channel twice for one idempotency key, nor lose the
 * record of a message that went out.
 */
#include <stdio.h>
#include <string.h>

#include "activities/notification/notification_int.h"

/* ---- input shared by the operations ---- */

bool notification__read_email(sg_svc_tx_t *tx, const cJSON *in, const char **out,
                              sg_task_result_t *res)
{
    if (!sg_svc_str_opt(tx, in, "email", NOTIF_RECIPIENT_MAX, out, res)) {
        return false;
    }
    if (*out != NULL && strchr(*out, '@') == NULL) {
        sg_svc_invalid(tx, res, "field \"email\" must be an e-mail address");
        return false;
    }
    return true;
}

int notification__reach(sg_svc_tx_t *tx, const char *customer_id, const char *email,
                        notif_contact_t *c, notif_target_t out[NOTIF_N_CHANNELS],
                        sg_task_result_t *res)
{
    int found = notification__contact_get(sg_svc_db(tx), customer_id, c);
    if (found < 0) {
        sg_svc_db_fail(tx, res, "contacts");
        return -1;
    }
    if (found == 0) {
        memset(c, 0, sizeof(*c));
    }
    return (int)notification__targets(found ? c : NULL, email, out);
}

/* Answers with the JSON of o (deleted here); OOM is retryable. */
static void answer(cJSON *o, bool built, sg_task_result_t *res)
{
    char *json = built ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (json == NULL) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return;
    }
    sg_task_ok(res, json);
    cJSON_free(json);
}

/* ---- prepare ---- */

static void prepare_op(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                       sg_task_result_t *res)
{
    (void)task;
    (void)arg;
    const char *order_id, *customer_id, *email;
    if (!sg_svc_str(tx, in, "order_id", NOTIF_ID_MAX, &order_id, res) ||
        !sg_svc_str(tx, in, "customer_id", NOTIF_ID_MAX, &customer_id, res) ||
        !notification__read_email(tx, in, &email, res)) {
        return;
    }
    notif_contact_t c;
    notif_target_t targets[NOTIF_N_CHANNELS];
    int n = notification__reach(tx, customer_id, email, &c, targets, res);
    if (n < 0) {
        return;
    }
    if (n == 0) {
        sg_task_fail(res, SG_TASK_FATAL, "notification.no_contact",
                     "customer \"%s\" has no contact record with a channel, and no email was "
                     "given with order %s",
                     customer_id, order_id);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *chans = cJSON_CreateArray();
    bool built = o != NULL && cJSON_AddStringToObject(o, "customer_id", customer_id) &&
                 cJSON_AddItemToObject(o, "channels", chans);
    if (!built) {
        cJSON_Delete(chans);
    }
    for (int i = 0; built && i < n; i++) {
        built = cJSON_AddItemToArray(
            chans, cJSON_CreateString(notification__channel_name(targets[i].channel)));
    }
    answer(o, built, res);
}

static void op_prepare(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res)
{
    sg_svc_run(ctx->svc, task, prepare_op, NULL, res);
}

/* ---- status ---- */

static void status_op(sg_svc_tx_t *tx, const sg_task_t *task, const cJSON *in, void *arg,
                      sg_task_result_t *res)
{
    (void)task;
    (void)arg;
    const char *order_id;
    if (!sg_svc_str(tx, in, "order_id", NOTIF_ID_MAX, &order_id, res)) {
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *dels = cJSON_CreateArray();
    bool built = o != NULL && cJSON_AddStringToObject(o, "order_id", order_id) &&
                 cJSON_AddItemToObject(o, "deliveries", dels);
    if (!built) {
        cJSON_Delete(dels);
        cJSON_Delete(o);
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.nomem", "out of memory");
        return;
    }
    sg_err_t rc = notification__deliveries_list(sg_svc_db(tx), order_id, dels);
    if (rc == SG_ERR_IO) {
        cJSON_Delete(o);
        sg_svc_db_fail(tx, res, "deliveries");
        return;
    }
    answer(o, rc == SG_OK, res);
}

static void op_status(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res)
{
    sg_svc_run(ctx->svc, task, status_op, NULL, res);
}

/* ---- seed ---- */

/* Copies the optional string field of o into out; false (err filled) when it is not a
 * string of 1..outlen-1 bytes. */
static bool seed_str(const cJSON *o, const char *field, bool required, char *out, size_t outlen,
                     char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    out[0] = '\0';
    if (v == NULL || cJSON_IsNull(v)) {
        if (required) {
            snprintf(err, errlen, "field \"%s\" is required", field);
        }
        return !required;
    }
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) >= outlen) {
        snprintf(err, errlen, "field \"%s\" must be a string of 1 to %zu bytes", field, outlen - 1);
        return false;
    }
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return true;
}

/* The channel list of a seeded contact: known names, no repeats, each with an address. */
static bool seed_channels(const cJSON *o, notif_contact_t *c, char *err, size_t errlen)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "channels");
    if (!cJSON_IsArray(list)) {
        snprintf(err, errlen, "field \"channels\" must be an array like [\"email\", \"sms\"]");
        return false;
    }
    const cJSON *v;
    cJSON_ArrayForEach(v, list)
    {
        notif_channel_t ch;
        if (!notification__channel_parse(cJSON_GetStringValue(v), &ch)) {
            snprintf(err, errlen, "channels: each must be \"email\", \"sms\" or \"push\"");
            return false;
        }
        for (size_t i = 0; i < c->n_channels; i++) {
            if (c->channels[i] == ch) {
                snprintf(err, errlen, "channels: \"%s\" is listed twice", v->valuestring);
                return false;
            }
        }
        if (*notification__contact_address(c, ch) == '\0') {
            snprintf(err, errlen, "channels: \"%s\" needs the contact's %s", v->valuestring,
                     ch == NOTIF_EMAIL ? "email"
                     : ch == NOTIF_SMS ? "phone"
                                       : "push_token");
            return false;
        }
        c->channels[c->n_channels++] = ch;
    }
    return true;
}

static bool seed_contact(const cJSON *o, notif_contact_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    if (!cJSON_IsObject(o)) {
        snprintf(err, errlen, "must be an object");
        return false;
    }
    if (!seed_str(o, "customer_id", true, c->customer_id, sizeof(c->customer_id), err, errlen) ||
        !seed_str(o, "name", true, c->name, sizeof(c->name), err, errlen) ||
        !seed_str(o, "email", false, c->email, sizeof(c->email), err, errlen) ||
        !seed_str(o, "phone", false, c->phone, sizeof(c->phone), err, errlen) ||
        !seed_str(o, "push_token", false, c->push_token, sizeof(c->push_token), err, errlen)) {
        return false;
    }
    if (*c->email != '\0' && strchr(c->email, '@') == NULL) {
        snprintf(err, errlen, "field \"email\" must be an e-mail address");
        return false;
    }
    return seed_channels(o, c, err, errlen);
}

typedef struct {
    notif_contact_t *contacts;
    size_t n;
} seed_t;

static sg_err_t seed_fn(sg_svc_tx_t *tx, void *arg)
{
    const seed_t *s = arg;
    for (size_t i = 0; i < s->n; i++) {
        sg_err_t rc = notification__contact_put(sg_svc_db(tx), &s->contacts[i]);
        if (rc != SG_OK) {
            return rc;
        }
    }
    return SG_OK;
}

/* Checks every contact first, then writes them all in one transaction: a bad seed
 * changes nothing. */
static sg_err_t notif_seed(sg_activity_ctx_t *ctx, const char *json, char *err, size_t errlen)
{
    cJSON *doc = cJSON_Parse(json != NULL ? json : "");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "contacts");
    seed_t s = {0};
    sg_err_t rc = SG_OK;
    if (!cJSON_IsObject(doc) || (list != NULL && !cJSON_IsArray(list))) {
        snprintf(err, errlen, "notification seed: must be an object {\"contacts\": [...]}");
        rc = SG_ERR_INVALID;
    } else if (list != NULL && cJSON_GetArraySize(list) > 0 &&
               (s.contacts = sg_calloc((size_t)cJSON_GetArraySize(list), sizeof(*s.contacts))) ==
                   NULL) {
        snprintf(err, errlen, "out of memory");
        rc = SG_ERR_NOMEM;
    }
    const cJSON *items = rc == SG_OK ? list : NULL; /* the macro needs a plain name */
    const cJSON *item;
    cJSON_ArrayForEach(item, items)
    {
        char why[200];
        if (!seed_contact(item, &s.contacts[s.n], why, sizeof(why))) {
            snprintf(err, errlen, "notification seed: contacts[%zu]: %s", s.n, why);
            rc = SG_ERR_INVALID;
            break;
        }
        s.n++;
    }
    if (rc == SG_OK && s.n > 0 && (rc = sg_svc_exec(ctx->svc, seed_fn, &s)) != SG_OK) {
        snprintf(err, errlen, "notification seed: cannot store the contacts: %s", sg_strerror(rc));
    }
    sg_free(s.contacts);
    cJSON_Delete(doc);
    return rc;
}

/* ---- module ---- */

static sg_err_t notif_open(const sg_activity_env_t *env, sg_activity_ctx_t **out, char *err,
                           size_t errlen)
{
    sg_activity_ctx_t *ctx = sg_calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    sg_err_t rc =
        sg_svc_open(env, "notification", notification__schema_sql, &ctx->svc, err, errlen);
    if (rc != SG_OK) {
        sg_free(ctx);
        return rc;
    }
    /* One rate for every provider, or one per channel ("notification.sms_failure_rate"). */
    const char *chaos = sg_svc_chaos(ctx->svc);
    double all = sg_chaos_value(chaos, "notification", "provider_failure_rate", 0);
    for (int ch = 0; ch < NOTIF_N_CHANNELS; ch++) {
        char key[32];
        snprintf(key, sizeof(key), "%s_failure_rate", notification__channel_name(ch));
        ctx->failure_rate[ch] = sg_chaos_value(chaos, "notification", key, all);
    }
    ctx->latency_ms = sg_chaos_value(chaos, "notification", "provider_latency_ms", 0);
    *out = ctx;
    return SG_OK;
}

static void notif_close(sg_activity_ctx_t *ctx)
{
    if (ctx != NULL) {
        sg_svc_close(ctx->svc);
        sg_free(ctx);
    }
}

static sg_err_t notif_events_peek(sg_activity_ctx_t *ctx, size_t max, sg_event_fn fn, void *arg)
{
    return sg_svc_events_peek(ctx->svc, max, fn, arg);
}

static sg_err_t notif_events_ack(sg_activity_ctx_t *ctx, int64_t upto_seq)
{
    return sg_svc_events_ack(ctx->svc, upto_seq);
}

static const sg_activity_op_t notif_ops[] = {
    {"prepare", op_prepare},
    {"send", notification__send},
    {"status", op_status},
};

const sg_activity_module_t sg_activity_notification_module = {
    .queue = "notification",
    .ops = notif_ops,
    .n_ops = SG_ARRAY_LEN(notif_ops),
    .open = notif_open,
    .close = notif_close,
    .events_peek = notif_events_peek,
    .events_ack = notif_events_ack,
    .seed = notif_seed,
};
