/*
 * sagactl shop commands: orders create/get/cancel (the gateway's order API, which starts
 * and reads the order sagas) and the event log.
 *
 * It must never build a request body by pasting text: bodies are made with cJSON, so a
 * reason or note with quotes stays one JSON string.
 */
#include "cli/sagactl.h"

#include <string.h>

#define DATA_MAX 70
#define WATCH_INTERVAL_MS 500

/* "/v1/orders/ID" + suffix, ID encoded (sg_free); NULL on OOM. */
static char *order_path(const char *id, const char *suffix)
{
    char *e = cli__esc(id);
    char *path = e != NULL ? sg_asprintf("/v1/orders/%s%s", e, suffix) : NULL;
    sg_free(e);
    return path;
}

/* The saga of an answer: "instance_id", or "id" as a fallback. */
static const char *saga_id(const cJSON *doc)
{
    const char *id = cli__jstr(doc, "instance_id");
    return strcmp(id, "-") != 0 ? id : cli__jstr(doc, "id");
}

/* POSTs body, then prints one line, or follows the saga with --watch (in -o json mode
 * then only the final instance is printed). */
static int post_and_follow(cli_ctx_t *c, const char *path, const char *body, const char *what)
{
    bool watch = cli__opt(c, "--watch") != NULL;
    const char *key = NULL;
    if (strcmp(what, "placed") == 0) {
        key = cli__opt(c, "--idempotency-key");
    }
    cJSON *doc = NULL;
    int rc = watch && c->json ? cli__call(c, "POST", path, body, key, &doc, NULL)
                              : cli__call_print(c, "POST", path, body, key, &doc);
    if (rc == CLI_OK && !c->json) {
        printf("order %s %s: saga %s (%s)\n", cli__jstr(doc, "order_id"), what, saga_id(doc),
               cli__jstr(doc, "status"));
        fflush(stdout);
    }
    if (rc == CLI_OK && watch) {
        rc = cli__watch(c, saga_id(doc), WATCH_INTERVAL_MS);
    }
    cJSON_Delete(doc);
    return rc;
}

int cli__cmd_orders_create(cli_ctx_t *c)
{
    const char *spec = cli__opt(c, "--input");
    if (spec == NULL) {
        return cli__usage_error(c, "%s", "--input is required: the order as JSON, @FILE or @-");
    }
    char *input = cli__read_input(c, spec);
    int rc = input != NULL ? post_and_follow(c, "/v1/orders", input, "placed") : CLI_FAILED;
    sg_free(input);
    return rc;
}

static long long num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : -1;
}

/* An amount in minor units (cents) as "29.90 EUR"; "-" when it is missing. */
static void money_str(long long cents, const char *currency, char *buf, size_t n)
{
    if (cents < 0) {
        snprintf(buf, n, "-");
    } else {
        snprintf(buf, n, "%lld.%02lld %s", cents / 100, cents % 100, currency);
    }
}

static void money(const cJSON *o, const char *key, const char *currency, char *buf, size_t n)
{
    money_str(num(o, key), currency, buf, n);
}

/* "charged 29.90 EUR on card *4242, refunded 29.90 EUR" or the declines. */
static void payment_line(const cJSON *pay, const char *currency, char *buf, size_t n)
{
    if (!cJSON_IsObject(pay)) {
        snprintf(buf, n, "-");
        return;
    }
    const cJSON *charge = cJSON_GetObjectItemCaseSensitive(pay, "charge");
    const cJSON *refund = cJSON_GetObjectItemCaseSensitive(pay, "refund");
    const cJSON *declines = cJSON_GetObjectItemCaseSensitive(pay, "declines");
    char a[64], b[64];
    int len = snprintf(buf, n, "%s", cli__jstr(pay, "status"));
    if (cJSON_IsObject(charge) && len >= 0 && (size_t)len < n) {
        money(charge, "amount", currency, a, sizeof(a));
        len += snprintf(buf + len, n - (size_t)len, ": charged %s on card *%s", a,
                        cli__jstr(charge, "card_last4"));
    }
    if (cJSON_IsObject(refund) && len >= 0 && (size_t)len < n) {
        money(refund, "amount", currency, b, sizeof(b));
        len += snprintf(buf + len, n - (size_t)len, ", refunded %s", b);
    }
    const cJSON *d = cJSON_GetArrayItem(declines, cJSON_GetArraySize(declines) - 1);
    if (cJSON_IsObject(d) && len >= 0 && (size_t)len < n) {
        money(d, "amount", currency, a, sizeof(a));
        snprintf(buf + len, n - (size_t)len, " (%s: %s)", a, cli__jstr(d, "reason"));
    }
}

static void print_order_summary(const cJSON *doc)
{
    const cJSON *order = cJSON_GetObjectItemCaseSensitive(doc, "order");
    const cJSON *saga = cJSON_GetObjectItemCaseSensitive(doc, "saga");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(doc, "reservation");
    const char *cur = cli__jstr(order, "currency");
    char customer[200], total[64], created[40], updated[40], sagaline[200], resline[160],
        payline[400], cancel[200];
    const char *email = cli__jstr(order, "email");
    snprintf(customer, sizeof(customer), "%s%s%s%s", cli__jstr(order, "customer_id"),
             strcmp(email, "-") != 0 ? " <" : "", strcmp(email, "-") != 0 ? email : "",
             strcmp(email, "-") != 0 ? ">" : "");
    money(order, "total", cur, total, sizeof(total));
    cli__ms_time(num(order, "created_ms"), false, created);
    cli__ms_time(num(order, "updated_ms"), false, updated);
    snprintf(sagaline, sizeof(sagaline), "%s %s (%s)", cli__jstr(saga, "id"),
             cli__jstr(saga, "status"), cli__jstr(saga, "workflow"));
    snprintf(resline, sizeof(resline), "%s %s", cli__jstr(res, "reservation_id"),
             cli__jstr(res, "status"));
    payment_line(cJSON_GetObjectItemCaseSensitive(doc, "payment"), cur, payline, sizeof(payline));
    const char *reason = cli__jstr(order, "cancel_reason");
    snprintf(cancel, sizeof(cancel), "%s%s%s", reason,
             strcmp(cli__jstr(order, "cancel_requested_by"), "-") != 0 ? ", requested by " : "",
             strcmp(cli__jstr(order, "cancel_requested_by"), "-") != 0
                 ? cli__jstr(order, "cancel_requested_by")
                 : "");
    const char *keys[] = {"order",   "status", "customer",    "total",   "created",
                          "updated", "saga",   "reservation", "payment", "cancel reason"};
    const char *vals[] = {cli__jstr(doc, "order_id"),
                          cli__jstr(doc, "status"),
                          cJSON_IsObject(order) ? customer : "-",
                          total,
                          created,
                          updated,
                          cJSON_IsObject(saga) ? sagaline : "-",
                          cJSON_IsObject(res) ? resline : "-",
                          payline,
                          cancel};
    cli__kv(keys, vals, SG_ARRAY_LEN(keys));
}

static void print_order_lines(const cJSON *order)
{
    const char *cur = cli__jstr(order, "currency");
    cli_table_t t;
    cli__table_init(&t, 4, (const char *[]){"SKU", "QTY", "PRICE", "AMOUNT"});
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(order, "items"))
    {
        char qty[32], price[64], amount[64];
        cli__jcell(it, "qty", qty, sizeof(qty), 0);
        money(it, "price", cur, price, sizeof(price));
        money_str(num(it, "qty") >= 0 && num(it, "price") >= 0 ? num(it, "qty") * num(it, "price")
                                                               : -1,
                  cur, amount, sizeof(amount));
        cli__table_row(&t, (const char *[]){cli__jstr(it, "sku"), qty, price, amount});
    }
    cli__table_print(&t, stdout);
}

static void print_order_history(const cJSON *order)
{
    cli_table_t t;
    cli__table_init(&t, 5, (const char *[]){"TIME", "FROM", "TO", "REASON", "BY"});
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(order, "history"))
    {
        char when[40];
        cli__ms_time(num(h, "ts_ms"), true, when);
        cli__table_row(&t, (const char *[]){when, cli__jstr(h, "from"), cli__jstr(h, "to"),
                                            cli__jstr(h, "reason"), cli__jstr(h, "activity")});
    }
    cli__table_print(&t, stdout);
}

static void print_cancellations(const cJSON *list)
{
    cli_table_t t;
    cli__table_init(&t, 4, (const char *[]){"SAGA", "STATUS", "CREATED", "REASON"});
    const cJSON *s;
    cJSON_ArrayForEach(s, list)
    {
        char created[40];
        cli__jtime(s, "created_at", false, created);
        const cJSON *input = cJSON_GetObjectItemCaseSensitive(s, "input");
        cli__table_row(&t, (const char *[]){cli__jstr(s, "id"), cli__jstr(s, "status"), created,
                                            cli__jstr(input, "reason")});
    }
    cli__table_print(&t, stdout);
}

/* An order for a human: a summary, its lines and status history, the cancellations and
 * the steps of its saga (`sagactl get` shows the attempts, `-o json` everything). */
static void print_order(const cJSON *doc)
{
    const cJSON *order = cJSON_GetObjectItemCaseSensitive(doc, "order");
    const cJSON *saga = cJSON_GetObjectItemCaseSensitive(doc, "saga");
    const cJSON *cancels = cJSON_GetObjectItemCaseSensitive(doc, "cancellations");
    print_order_summary(doc);
    if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(order, "items")) > 0) {
        printf("\nitems:\n");
        print_order_lines(order);
    }
    if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(order, "history")) > 0) {
        printf("\nhistory:\n");
        print_order_history(order);
    }
    if (cJSON_IsObject(saga)) {
        printf("\nsaga %s:\n", cli__jstr(saga, "id"));
        cli__print_steps(saga);
    }
    if (cJSON_GetArraySize(cancels) > 0) {
        printf("\ncancellations:\n");
        print_cancellations(cancels);
    }
}

int cli__cmd_orders_get(cli_ctx_t *c)
{
    char *path = order_path(c->pos[0], "");
    cJSON *doc = NULL;
    int rc = path != NULL ? cli__call_print(c, "GET", path, NULL, NULL, &doc) : CLI_FAILED;
    if (rc == CLI_OK && !c->json) {
        print_order(doc);
    }
    cJSON_Delete(doc);
    sg_free(path);
    return rc;
}

int cli__cmd_orders_cancel(cli_ctx_t *c)
{
    const char *reason = cli__opt(c, "--reason"), *note = cli__opt(c, "--note");
    const char *who = cli__opt(c, "--requested-by");
    cJSON *body = cJSON_CreateObject();
    bool ok = body != NULL &&
              cJSON_AddStringToObject(body, "reason", reason ? reason : "customer_request") &&
              (note == NULL || cJSON_AddStringToObject(body, "note", note)) &&
              (who == NULL || cJSON_AddStringToObject(body, "requested_by", who));
    char *text = ok ? cJSON_PrintUnformatted(body) : NULL;
    char *path = order_path(c->pos[0], "/cancel");
    int rc = CLI_FAILED;
    if (text == NULL || path == NULL) {
        cli__err(c, "out of memory");
    } else {
        rc = post_and_follow(c, path, text, "cancelling");
    }
    cJSON_free(text);
    cJSON_Delete(body);
    sg_free(path);
    return rc;
}

/* ---- the event log ---- */

/* The event's own fields: its data without the envelope the other columns show. */
static void business_data(const cJSON *ev, char *buf, size_t n)
{
    static const char *const envelope[] = {"event_id", "type", "time_ms", "correlation_id",
                                           "source"};
    cJSON *data = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(ev, "data"), true);
    for (size_t i = 0; cJSON_IsObject(data) && i < SG_ARRAY_LEN(envelope); i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(data, envelope[i]);
    }
    cJSON *holder = cJSON_CreateObject();
    if (data != NULL && holder != NULL && cJSON_AddItemToObject(holder, "data", data)) {
        cli__jcell(holder, "data", buf, n, DATA_MAX);
    } else {
        cJSON_Delete(data);
        cli__jcell(ev, "data", buf, n, DATA_MAX);
    }
    cJSON_Delete(holder);
}

int cli__cmd_events(cli_ctx_t *c)
{
    long after = 0, limit = 0;
    if (!cli__opt_long(c, "--after", 0, 1L << 62, &after) ||
        !cli__opt_long(c, "--limit", 1, 1000, &limit)) {
        return CLI_USAGE;
    }
    sg_buf_t path;
    sg_buf_init(&path);
    sg_buf_puts(&path, "/v1/events");
    cli__query(&path, "type", cli__opt(c, "--type"));
    cli__query(&path, "correlation_id", cli__opt(c, "--correlation-id"));
    cli__query(&path, "after", cli__opt(c, "--after"));
    cli__query(&path, "limit", cli__opt(c, "--limit"));
    cJSON *doc = NULL;
    int rc = path.oom ? CLI_FAILED : cli__call_print(c, "GET", path.data, NULL, NULL, &doc);
    if (rc == CLI_OK && !c->json) {
        cli_table_t t;
        cli__table_init(&t, 6,
                        (const char *[]){"ID", "TIME", "TYPE", "CORRELATION", "SOURCE", "DATA"});
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, "items"))
        {
            char id[32], time[40], corr[80], data[512];
            cli__jcell(e, "id", id, sizeof(id), 0);
            cli__jtime(e, "time", true, time);
            cli__jcell(e, "correlation_id", corr, sizeof(corr), 0);
            business_data(e, data, sizeof(data));
            cli__table_row(&t, (const char *[]){id, time, cli__jstr(e, "type"), corr,
                                                cli__jstr(e, "source"), data});
        }
        cli__table_print(&t, stdout);
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_after");
        if (cJSON_IsNumber(next)) {
            fprintf(stderr, "more: add --after %.0f\n", next->valuedouble);
        } else if (cJSON_IsString(next)) {
            fprintf(stderr, "more: add --after %s\n", next->valuestring);
        }
    }
    cJSON_Delete(doc);
    sg_buf_fini(&path);
    return rc;
}
