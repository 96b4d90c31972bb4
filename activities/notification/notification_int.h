/*
 * notification internals, shared by the files of activities/notification/ only:
 * notification.c (module, prepare, status, seed), notification_send.c (send and its
 * delivery loop), notification_store.c (SQL), notification_render.c (templates).
 * Never included from another folder.
 */
#ifndef SG_NOTIFICATION_INT_H
#define SG_NOTIFICATION_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "activities/common/svc.h"

/* Field limits, in bytes: longer input is invalid. */
#define NOTIF_ID_MAX 64         /* order_id, customer_id */
#define NOTIF_TEMPLATE_MAX 32   /* template names */
#define NOTIF_NAME_MAX 200      /* contact names */
#define NOTIF_RECIPIENT_MAX 254 /* e-mail address, phone number, push token */

/* The channels, in the order a contact's preference list is checked against. */
typedef enum { NOTIF_EMAIL, NOTIF_SMS, NOTIF_PUSH, NOTIF_N_CHANNELS } notif_channel_t;

/* Module state: immutable after open, so the worker threads share it freely. */
struct sg_activity_ctx {
    sg_svc_t *svc;
    /* Simulated provider outage per channel: the probability that one provider call
     * fails (chaos "notification.provider_failure_rate", or "<channel>_failure_rate"
     * for one channel). 0 unless asked for. */
    double failure_rate[NOTIF_N_CHANNELS];
    /* How long one provider call takes, in ms (chaos "notification.provider_latency_ms");
     * 0 by default. Never past the task's deadline. */
    double latency_ms;
};

/* A customer's contact record. Empty strings mean "not known". */
typedef struct {
    char customer_id[NOTIF_ID_MAX + 1];
    char name[NOTIF_NAME_MAX + 1];
    char email[NOTIF_RECIPIENT_MAX + 1];
    char phone[NOTIF_RECIPIENT_MAX + 1];
    char push_token[NOTIF_RECIPIENT_MAX + 1];
    notif_channel_t channels[NOTIF_N_CHANNELS]; /* preference order, no duplicates */
    size_t n_channels;
} notif_contact_t;

/* One channel of one send: where it goes and, once it has a row, its delivery. */
typedef struct {
    notif_channel_t channel;
    char recipient[NOTIF_RECIPIENT_MAX + 1];
    char id[27]; /* the delivery's ULID; "" before its row exists */
    bool sent;
    int64_t attempts;
    bool ok;         /* the last provider call succeeded (delivery loop only) */
    char error[128]; /* why it failed (delivery loop only) */
} notif_target_t;

/* A message template: placeholders {name}, {order_id}, {total}, {sku}, {stock}. */
typedef struct {
    const char *name;
    const char *subject;
    const char *body;       /* e-mail */
    const char *short_text; /* SMS and push: one line */
} notif_template_t;

/* What a template is filled with; NULL / false = not given. */
typedef struct {
    const char *name; /* the customer's name */
    const char *order_id;
    bool has_total;
    int64_t total; /* minor units (cents) */
    const char *currency;
    const char *sku;
    bool has_stock;
    int64_t stock;
} notif_vars_t;

/* ---- notification_render.c ---- */

/* "email", "sms", "push". */
const char *notification__channel_name(notif_channel_t ch);

/* The channel named s; false when s names none. */
bool notification__channel_parse(const char *s, notif_channel_t *out);

/* The template named name, from the static table; NULL if unknown. */
const notif_template_t *notification__template(const char *name);

/* Formats an amount of minor units as "59.80 EUR" ("1200 JPY" for currencies without
 * minor units). */
void notification__money(int64_t minor, const char *currency, char *out, size_t outlen);

/*
 * Fills the placeholders of text from v. Returns the text (sg_malloc, caller frees) or
 * NULL: then *missing names the input field the text needs but v lacks ("total",
 * "currency", ...), or is NULL when memory ran out.
 */
char *notification__render(const char *text, const notif_vars_t *v, const char **missing);

/* The recipient of channel ch in contact c ("" when c has none). */
const char *notification__contact_address(const notif_contact_t *c, notif_channel_t ch);

/*
 * Where a message to a customer goes: each channel of the contact's preference list
 * that has an address (the contact's e-mail, else the email given with the task); with
 * none of them (or no contact, c NULL) but an email given, e-mail only. Returns how
 * many targets it wrote to out (0: no way to reach the customer).
 */
size_t notification__targets(const notif_contact_t *c, const char *email,
                             notif_target_t out[NOTIF_N_CHANNELS]);

/* ---- notification_store.c: each call inside the kit's transaction (sg_svc_run's op
 * or sg_svc_exec's fn); -1 / SG_ERR_IO on a database error. ---- */

/* The service's tables (CREATE ... IF NOT EXISTS), for sg_svc_open. */
extern const char notification__schema_sql[];

/* The contact of customer_id: 1 found (*c filled), 0 unknown, -1 error. */
int notification__contact_get(sqlite3 *db, const char *customer_id, notif_contact_t *c);

/* Inserts or replaces contact c. */
sg_err_t notification__contact_put(sqlite3 *db, const notif_contact_t *c);

/* The delivery of channel t->channel for idempotency key, if any: 1 found (t->id,
 * t->sent, t->attempts and t->recipient filled from the row), 0 none, -1 error. */
int notification__delivery_find(sqlite3 *db, const char *key, notif_target_t *t);

/* What a delivery row holds besides its target. */
typedef struct {
    const char *key; /* the task's idempotency key */
    const char *order_id;
    const char *customer_id;
    const char *template_name;
    const char *subject;
    const char *body;       /* e-mail */
    const char *short_text; /* SMS and push */
} notif_message_t;

/*
 * Claims t for one provider call: creates its row (status queued) when it has none,
 * counts the attempt, and turns a failed delivery into retried. 1: claimed (t->id and
 * t->attempts filled), 0: already sent (t->sent set), -1 error.
 */
int notification__delivery_claim(sqlite3 *db, const notif_message_t *m, notif_target_t *t);

/* Records the outcome of t's provider call: sent when error is NULL, else failed with
 * error. 1: the row changed, 0: it was sent already (by a concurrent call), -1 error. */
int notification__delivery_finish(sqlite3 *db, const notif_target_t *t, const char *error);

/* Appends the deliveries of order_id (oldest first) to the JSON array arr. */
sg_err_t notification__deliveries_list(sqlite3 *db, const char *order_id, cJSON *arr);

/* ---- notification.c: input shared by the operations ---- */

/* Reads the optional field "email" (an address with an '@'); false with res filled
 * when it is invalid. */
bool notification__read_email(sg_svc_tx_t *tx, const cJSON *in, const char **out,
                              sg_task_result_t *res);

/* Loads the contact of customer_id (c->customer_id is "" when unknown) and the targets
 * a message to it goes to (see notification__targets). Returns their number, or -1
 * with res filled on a database error. */
int notification__reach(sg_svc_tx_t *tx, const char *customer_id, const char *email,
                        notif_contact_t *c, notif_target_t out[NOTIF_N_CHANNELS],
                        sg_task_result_t *res);

/* ---- notification_send.c ---- */

/* The send operation (see notification.c for the contract). */
void notification__send(sg_activity_ctx_t *ctx, const sg_task_t *task, sg_task_result_t *res);

#endif
