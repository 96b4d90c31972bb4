/*
 * gateway orders: the shop's order API over the order sagas. POST /v1/orders starts
 * order_create, POST /v1/orders/{id}/cancel starts order_cancel, and GET
 * /v1/orders/{id} puts together what sagad and the services know about one order: the
 * order service's record, the order_create saga, the order_cancel sagas, the inventory
 * reservation and the payment ledger, each read from its own database.
 *
 * It must never write to a service's database (it reads through the services' read-only
 * getters), never change an order other than by starting a saga, and never show a card
 * token. How the cancel sagas of an order are found is a bounded search, written down
 * at find_cancels.
 */
#include "activities/inventory/inventory.h"
#include "activities/order/order.h"
#include "activities/payment/payment.h"
#include "gateway/gateway_int.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WF_CREATE "order_create"
#define WF_CANCEL "order_cancel"
#define ORDER_ID_MAX 64     /* the workflows' schema: ^[A-Za-z0-9_-]{1,64}$ */
#define INPUT_ERRORS_MAX 20 /* schema errors listed in a 400, as for any start */
#define CANCELS_MAX 20      /* order_cancel sagas shown for one order */
#define CANCEL_SCAN_MAX 1000
#define DEFAULT_REASON "customer_request"

/* An order id as the workflows accept it; anything else names no order. */
static bool valid_order_id(const char *id)
{
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  c == '_' || c == '-';
        if (!ok || n >= ORDER_ID_MAX) {
            return false;
        }
    }
    return n > 0;
}

static const char *member_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void order_not_found(gw_req_t *r, const char *id)
{
    gw__problem(r, MHD_HTTP_NOT_FOUND, "order-not-found", "no order %.64s",
                valid_order_id(id) ? id : "with that id");
}

/* ---- starting the sagas ---- */

/* The answer to a start: {order_id, instance_id, status, created}, with fresh_status for
 * a new saga and 200 for one its key named, Location the order. A replay reports the
 * saga as it is now, and the order its input names. */
static void started(gw_req_t *r, const char *order_id, const sg_start_result_t *res,
                    unsigned fresh_status)
{
    gw_inst_row_t row = {0};
    const char *status = "RUNNING";
    cJSON *input = NULL;
    if (!res->created) {
        char err[256];
        sg_store_t *st = gw__store_get(r->gw, err, sizeof(err));
        sg_err_t rc = st != NULL ? gw__inst_load(st, res->id, &row) : SG_ERR_IO;
        gw__store_put(r->gw, st, rc == SG_ERR_IO);
        status = rc == SG_OK ? row.status : NULL;
        input = rc == SG_OK ? cJSON_Parse(row.input) : NULL;
        const char *named = member_str(input, "order_id");
        order_id = named != NULL && valid_order_id(named) ? named : order_id;
    }
    cJSON *doc = cJSON_CreateObject();
    if (doc != NULL && (cJSON_AddStringToObject(doc, "order_id", order_id) == NULL ||
                        cJSON_AddStringToObject(doc, "instance_id", res->id) == NULL ||
                        !gw__add_str(doc, "status", status) ||
                        cJSON_AddBoolToObject(doc, "created", res->created) == NULL)) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    gw__reply_json(r, res->created ? fresh_status : MHD_HTTP_OK, doc);
    if (r->status != MHD_HTTP_SERVICE_UNAVAILABLE) {
        snprintf(r->location, sizeof(r->location), "/v1/orders/%s", order_id);
    }
    cJSON_Delete(input);
    gw__inst_row_fini(&row);
}

/* Starts workflow (its latest version) with input under key and answers. */
static void start_saga(gw_req_t *r, const char *workflow, const char *input, const char *key,
                       const char *order_id, unsigned fresh_status)
{
    sg_jsonschema_errors_t errs;
    sg_jsonschema_errors_init(&errs, INPUT_ERRORS_MAX);
    sg_start_result_t res = {.created = false};
    sg_err_t rc = sg_driver_start_saga(gw__driver(r->gw), workflow, 0, input, key, &res, &errs);
    if (rc == SG_OK) {
        started(r, order_id, &res, fresh_status);
    } else {
        gw__start_failed(r, rc, &errs, workflow);
    }
    sg_jsonschema_errors_fini(&errs);
}

void gw__h_order_create(gw_req_t *r)
{
    const char *key;
    if (!gw__idem_key_arg(r, &key) || !gw__check_body(r)) {
        return;
    }
    if (sg_driver_def(gw__driver(r->gw), WF_CREATE, 0) == NULL) {
        gw__problem(r, MHD_HTTP_NOT_FOUND, "workflow-not-found",
                    "no workflow \"" WF_CREATE "\": sagad runs without the shop's workflows");
        return;
    }
    cJSON *order = cJSON_ParseWithLength(r->body, r->body_len);
    const char *order_id = member_str(order, "order_id");
    order_id = order_id != NULL && valid_order_id(order_id) ? order_id : NULL;
    char dflt[sizeof("order:") + ORDER_ID_MAX];
    if (key == NULL && order_id != NULL) {
        /* The same order sent twice starts one saga. */
        snprintf(dflt, sizeof(dflt), "order:%s", order_id);
        key = dflt;
    }
    /* Without a valid order_id the schema check refuses the input before any key is used. */
    start_saga(r, WF_CREATE, r->body, key, order_id != NULL ? order_id : "", MHD_HTTP_CREATED);
    cJSON_Delete(order);
}

/* The input of order_cancel: the body with the path's order_id and the default reason.
 * Answers 400 and returns NULL when the body names another order; NULL on OOM (503). */
static char *cancel_input(gw_req_t *r, const char *id)
{
    cJSON *in =
        r->body_len > 0 ? cJSON_ParseWithLength(r->body, r->body_len) : cJSON_CreateObject();
    const cJSON *named = cJSON_GetObjectItemCaseSensitive(in, "order_id");
    if (in != NULL && named != NULL &&
        (!cJSON_IsString(named) || strcmp(named->valuestring, id) != 0)) {
        gw__bad_input(r, "order_id in the body must be the order of the path, %s", id);
        cJSON_Delete(in);
        return NULL;
    }
    bool ok = in != NULL &&
              (named != NULL || cJSON_AddStringToObject(in, "order_id", id) != NULL) &&
              (cJSON_GetObjectItemCaseSensitive(in, "reason") != NULL ||
               cJSON_AddStringToObject(in, "reason", DEFAULT_REASON) != NULL);
    char *text = ok ? cJSON_PrintUnformatted(in) : NULL;
    cJSON_Delete(in);
    if (text == NULL) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
    }
    return text;
}

void gw__h_order_cancel(gw_req_t *r)
{
    const char *id = r->params[0], *key;
    const char *dir = gw__data_dir(r->gw);
    if (!valid_order_id(id)) {
        order_not_found(r, id);
        return;
    }
    if ((r->body_len > 0 && !gw__check_body(r)) || !gw__idem_key_arg(r, &key)) {
        return;
    }
    /* Only an order the order service knows can be cancelled; whether its status allows
     * it is the saga's business (order.begin_cancel refuses, the saga compensates). */
    char *record = dir != NULL ? sg_order_get_json(dir, id) : NULL;
    if (record == NULL) {
        order_not_found(r, id);
        return;
    }
    sg_free(record);
    char *input = cancel_input(r, id);
    if (input == NULL) {
        return;
    }
    char dflt[sizeof("cancel:") + ORDER_ID_MAX];
    if (key == NULL) {
        snprintf(dflt, sizeof(dflt), "cancel:%s", id);
        key = dflt;
    }
    start_saga(r, WF_CANCEL, input, key, id, MHD_HTTP_ACCEPTED);
    cJSON_free(input);
}

/* ---- GET /v1/orders/{id} ---- */

/* The ids of the order's cancel sagas, found in a bounded way (see find_cancels). */
typedef struct {
    char ids[CANCELS_MAX][32];
    size_t n, scanned;
    const char *order_id;
} cancels_t;

static void add_cancel(cancels_t *c, const char *id)
{
    if (id == NULL || !gw__valid_id(id) || c->n == CANCELS_MAX) {
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->ids[i], id) == 0) {
            return;
        }
    }
    snprintf(c->ids[c->n++], sizeof(c->ids[0]), "%s", id);
}

static bool on_cancel_row(void *ctx, const sg_store_inst_t *row)
{
    cancels_t *c = ctx;
    c->scanned++;
    /* Cheap test first: most rows are other orders' cancels. */
    if (row->input != NULL && strstr(row->input, c->order_id) != NULL) {
        cJSON *in = cJSON_Parse(row->input);
        const char *named = member_str(in, "order_id");
        if (named != NULL && strcmp(named, c->order_id) == 0) {
            add_cancel(c, row->id);
        }
        cJSON_Delete(in);
    }
    return c->n < CANCELS_MAX && c->scanned < CANCEL_SCAN_MAX;
}

/*
 * The order_cancel sagas of an order, from three places: the order record's
 * cancel_saga_id (the saga that cancelled it last), the saga under the default key
 * "cancel:<id>", and a scan of the order_cancel instances created after since_ms (the
 * order saga's start), at most CANCEL_SCAN_MAX rows, matching input.order_id. A cancel
 * with a custom key beyond that many others can be missed; the first two never are.
 */
static sg_err_t find_cancels(sg_store_t *st, const cJSON *order, int64_t since_ms, cancels_t *c)
{
    char key[sizeof("cancel:") + ORDER_ID_MAX], id[32];
    add_cancel(c, member_str(order, "cancel_saga_id"));
    snprintf(key, sizeof(key), "cancel:%s", c->order_id);
    sg_err_t rc = sg_store_idem_get(st, WF_CANCEL, key, id);
    if (rc == SG_OK) {
        add_cancel(c, id);
    } else if (rc != SG_ERR_NOT_FOUND) {
        return rc;
    }
    sg_store_inst_filter_t f = {.workflow = WF_CANCEL,
                                .created_after_ms = since_ms > 0 ? since_ms - 1 : 0,
                                .limit = CANCEL_SCAN_MAX};
    return sg_store_inst_list(st, &f, on_cancel_row, c);
}

static int cmp_rows(const void *a, const void *b)
{
    const gw_inst_row_t *x = a, *y = b;
    if (x->created_ms != y->created_ms) {
        return x->created_ms < y->created_ms ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

/* An instance as the order shows it: GET /v1/instances/{id} without the attempts. */
static cJSON *saga_doc(gw_req_t *r, const gw_inst_row_t *row)
{
    return gw__instance_doc(row, sg_driver_def(gw__driver(r->gw), row->workflow, row->version));
}

/* Adds "cancellations": the cancel sagas in c, oldest first. */
static sg_err_t add_cancellations(gw_req_t *r, sg_store_t *st, const cancels_t *c, cJSON *doc)
{
    gw_inst_row_t rows[CANCELS_MAX];
    size_t n = 0;
    sg_err_t rc = SG_OK;
    for (size_t i = 0; rc == SG_OK && i < c->n; i++) {
        rc = gw__inst_load(st, c->ids[i], &rows[n]);
        if (rc == SG_OK) {
            n++;
        } else {
            gw__inst_row_fini(&rows[n]);
            rc = rc == SG_ERR_NOT_FOUND ? SG_OK : rc; /* a key of a saga never stored */
        }
    }
    qsort(rows, n, sizeof(rows[0]), cmp_rows);
    cJSON *list = cJSON_AddArrayToObject(doc, "cancellations");
    for (size_t i = 0; i < n; i++) {
        cJSON *s = rc == SG_OK && list != NULL ? saga_doc(r, &rows[i]) : NULL;
        if (s == NULL || !cJSON_AddItemToArray(list, s)) {
            cJSON_Delete(s);
            rc = rc == SG_OK ? SG_ERR_NOMEM : rc;
        }
        gw__inst_row_fini(&rows[i]);
    }
    return rc == SG_OK && list == NULL ? SG_ERR_NOMEM : rc;
}

/* Adds key: the parsed JSON text (taken, may be NULL) or null. */
static bool add_taken_json(cJSON *doc, const char *key, char *text)
{
    cJSON *v = text != NULL ? gw__json_value(text) : cJSON_CreateNull();
    sg_free(text);
    if (v == NULL || !cJSON_AddItemToObject(doc, key, v)) {
        cJSON_Delete(v);
        return false;
    }
    return true;
}

/* Everything sagad's database says about the order: its saga (the record's saga_id,
 * else the default key "order:<id>") and cancels. *found: whether any saga is known. */
static sg_err_t add_sagas(gw_req_t *r, sg_store_t *st, const char *id, const cJSON *order,
                          cJSON *doc, bool *found)
{
    char saga_id[32] = "", key[sizeof("order:") + ORDER_ID_MAX];
    const char *named = member_str(order, "saga_id");
    sg_err_t rc = SG_OK;
    if (named != NULL && gw__valid_id(named)) {
        snprintf(saga_id, sizeof(saga_id), "%s", named);
    } else {
        snprintf(key, sizeof(key), "order:%s", id);
        rc = sg_store_idem_get(st, WF_CREATE, key, saga_id);
        rc = rc == SG_ERR_NOT_FOUND ? SG_OK : rc;
    }
    gw_inst_row_t row = {0};
    if (rc == SG_OK && saga_id[0] != '\0') {
        rc = gw__inst_load(st, saga_id, &row);
        rc = rc == SG_ERR_NOT_FOUND ? SG_OK : rc;
    }
    *found = row.id[0] != '\0';
    cJSON *saga = rc == SG_OK ? (*found ? saga_doc(r, &row) : cJSON_CreateNull()) : NULL;
    if (rc == SG_OK && (saga == NULL || !cJSON_AddItemToObject(doc, "saga", saga))) {
        cJSON_Delete(saga);
        rc = SG_ERR_NOMEM;
    }
    cancels_t c = {.order_id = id};
    if (rc == SG_OK) {
        rc = find_cancels(st, order, row.created_ms, &c);
    }
    if (rc == SG_OK) {
        rc = add_cancellations(r, st, &c, doc);
    }
    *found = *found || c.n > 0;
    gw__inst_row_fini(&row);
    return rc;
}

/* The order service's record of id as a JSON value (null when it has none). */
static cJSON *order_record(const char *dir, const char *id)
{
    char *record = dir != NULL ? sg_order_get_json(dir, id) : NULL;
    cJSON *order = record != NULL ? gw__json_value(record) : cJSON_CreateNull();
    sg_free(record);
    return order;
}

void gw__h_order_get(gw_req_t *r)
{
    const char *id = r->params[0];
    const char *dir = gw__data_dir(r->gw);
    if (!valid_order_id(id)) {
        order_not_found(r, id);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON *order = order_record(dir, id);
    if (doc == NULL || order == NULL || cJSON_AddStringToObject(doc, "order_id", id) == NULL ||
        !gw__add_str(doc, "status", member_str(order, "status")) ||
        !cJSON_AddItemToObject(doc, "order", order)) {
        cJSON_Delete(order);
        cJSON_Delete(doc);
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
        return;
    }
    /* order now belongs to doc. sagad's own rows come from one snapshot. */
    char err[256] = "";
    sg_store_t *st = gw__store_get(r->gw, err, sizeof(err));
    sg_err_t rc = st != NULL ? sg_store_begin(st) : SG_ERR_IO;
    bool found = false;
    if (rc == SG_OK) {
        rc = add_sagas(r, st, id, order, doc, &found);
    }
    if (rc == SG_OK && cJSON_IsNull(order) && !found) {
        order_not_found(r, id);
    } else if (rc == SG_OK) {
        bool ok = add_taken_json(doc, "reservation", sg_inventory_reservation_json(dir, id)) &&
                  add_taken_json(doc, "payment", sg_payment_order_json(dir, id));
        gw__reply_json(r, MHD_HTTP_OK, ok ? doc : NULL);
        doc = ok ? NULL : doc;
    } else {
        gw__store_problem(r, rc, st != NULL ? sg_store_errmsg(st) : err);
    }
    cJSON_Delete(doc);
    gw__store_put(r->gw, st, rc == SG_ERR_IO);
}
