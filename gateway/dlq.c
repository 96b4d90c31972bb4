/*
 * gateway dlq: the dead letters of the kafka transport (tasks a saga-worker gave up on),
 * as sagad recorded them from the saga.tasks.<queue>.dlq topics: GET /v1/dlq lists them,
 * POST /v1/dlq/{id}/requeue puts a task back on its tasks topic, POST /v1/dlq/{id}/discard
 * marks it dealt with. With the embedded transport nothing is ever dead-lettered: the list
 * is empty and every id is unknown (404).
 *
 * It must never write (the driver does) and never trust a row: text that is not JSON is
 * shown as text.
 */
#include "gateway/gateway_int.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

#define DLQ_DEFAULT 100
#define DLQ_MAX 1000
#define QUEUE_MAX 200

/* One row as the API shows it (without the task's bytes: their length only). NULL on OOM. */
static cJSON *row_doc(const sg_store_dlq_t *row)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *input = gw__json_value(row->input);
    cJSON *headers = row->headers != NULL ? gw__json_value(row->headers) : cJSON_CreateObject();
    bool ok =
        o != NULL && input != NULL && headers != NULL &&
        cJSON_AddNumberToObject(o, "id", (double)row->id) &&
        gw__add_str(o, "status", row->status) && gw__add_str(o, "queue", row->queue) &&
        gw__add_str(o, "topic", row->topic) &&
        cJSON_AddNumberToObject(o, "partition", (double)row->partition) &&
        cJSON_AddNumberToObject(o, "offset", (double)row->offset) &&
        gw__add_str(o, "key", row->key) && gw__add_str(o, "instance_id", row->instance_id) &&
        gw__add_str(o, "step_id", row->step_id) &&
        (row->instance_id != NULL ? cJSON_AddNumberToObject(o, "attempt", (double)row->attempt)
                                  : cJSON_AddNullToObject(o, "attempt")) &&
        gw__add_str(o, "idempotency_key", row->idempotency_key) &&
        gw__add_str(o, "activity", row->activity) && gw__add_str(o, "reason", row->reason) &&
        cJSON_AddNumberToObject(o, "task_bytes", (double)row->task_len) &&
        gw__add_time(o, "received_at", row->received_ms) &&
        gw__add_time(o, "updated_at", row->updated_ms);
    if (ok) {
        cJSON_AddItemToObject(o, "input", input);
        cJSON_AddItemToObject(o, "headers", headers);
        return o;
    }
    cJSON_Delete(input);
    cJSON_Delete(headers);
    cJSON_Delete(o);
    return NULL;
}

/* ---- GET /v1/dlq ---- */

typedef struct {
    cJSON *items;
    size_t limit, count;
    int64_t last_id;
    bool more, nomem;
} list_ctx_t;

static bool on_row(void *ctx, const sg_store_dlq_t *row)
{
    list_ctx_t *l = ctx;
    if (l->count == l->limit) {
        l->more = true;
        return false;
    }
    cJSON *o = row_doc(row);
    if (o == NULL) {
        l->nomem = true;
        return false;
    }
    cJSON_AddItemToArray(l->items, o);
    l->count++;
    l->last_id = row->id;
    return true;
}

static bool status_ok(const char *s)
{
    return strcmp(s, "new") == 0 || strcmp(s, "requeued") == 0 || strcmp(s, "discarded") == 0;
}

/* queue: what a topic name allows (the 200 of must is QUEUE_MAX). */
static const gw_filter_t filters[] = {
    {.name = "queue",
     .max_len = QUEUE_MAX,
     .charset = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-",
     .must = "1..200 of A-Z a-z 0-9 _ -"},
    {.name = "status",
     .max_len = sizeof("discarded") - 1,
     .valid = status_ok,
     .must = "one of new, requeued or discarded"},
};
static const gw_page_spec_t page_spec = {.filters = filters,
                                         .n_filters = SG_ARRAY_LEN(filters),
                                         .after = "a dead letter id",
                                         .limit_default = DLQ_DEFAULT,
                                         .limit_max = DLQ_MAX};

void gw__h_dlq_list(gw_req_t *r)
{
    gw_page_t p;
    if (!gw__page_params(r, &page_spec, &p)) {
        return;
    }
    char err[256] = "";
    sg_store_t *st = gw__store_get(r->gw, err, sizeof(err));
    if (st == NULL) {
        gw__store_problem(r, SG_ERR_IO, err);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    list_ctx_t l = {.items = doc != NULL ? cJSON_AddArrayToObject(doc, "items") : NULL,
                    .limit = p.limit};
    /* One row more than asked tells whether another page exists. */
    sg_err_t rc = l.items != NULL ? sg_store_dlq_list(st, p.filter[0], p.filter[1], p.after,
                                                      l.limit + 1, on_row, &l)
                                  : SG_ERR_NOMEM;
    if (rc == SG_OK &&
        (l.nomem || (l.more ? cJSON_AddNumberToObject(doc, "next_after", (double)l.last_id)
                            : cJSON_AddNullToObject(doc, "next_after")) == NULL)) {
        rc = SG_ERR_NOMEM;
    }
    if (rc == SG_OK) {
        gw__reply_json(r, MHD_HTTP_OK, doc);
    } else {
        cJSON_Delete(doc);
        gw__store_problem(r, rc, sg_store_errmsg(st));
    }
    gw__store_put(r->gw, st, rc == SG_ERR_IO);
}

/* ---- POST /v1/dlq/{id}/requeue, /discard ---- */

static bool copy_doc(void *ctx, const sg_store_dlq_t *row)
{
    *(cJSON **)ctx = row_doc(row);
    return false;
}

/* The row as it is now: its document into *doc (NULL on OOM). */
static sg_err_t load(gw_req_t *r, int64_t id, cJSON **doc, char *err, size_t errlen)
{
    *doc = NULL;
    sg_store_t *st = gw__store_get(r->gw, err, errlen);
    sg_err_t rc = st != NULL ? sg_store_dlq_get(st, id, copy_doc, doc) : SG_ERR_IO;
    if (st != NULL && rc != SG_OK) {
        snprintf(err, errlen, "%s", sg_store_errmsg(st));
    }
    gw__store_put(r->gw, st, rc == SG_ERR_IO);
    return rc == SG_OK && *doc == NULL ? SG_ERR_NOMEM : rc;
}

static void act(gw_req_t *r, bool requeue)
{
    int64_t id = 0;
    if (!gw__parse_i64(r->params[0], 1, INT64_MAX, &id)) {
        gw__problem(r, MHD_HTTP_NOT_FOUND, "dlq-not-found", "no such dead letter");
        return;
    }
    sg_driver_t *d = gw__driver(r->gw);
    sg_err_t rc = requeue ? sg_driver_dlq_requeue(d, id) : sg_driver_dlq_discard(d, id);
    if (rc == SG_ERR_NOT_FOUND) {
        gw__problem(r, MHD_HTTP_NOT_FOUND, "dlq-not-found", "no dead letter %lld", (long long)id);
        return;
    }
    if (rc != SG_OK && rc != SG_ERR_STATE && rc != SG_ERR_INVALID) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "%s failed: %s",
                    requeue ? "requeue" : "discard", sg_strerror(rc));
        return;
    }
    char err[256] = "";
    cJSON *doc = NULL;
    sg_err_t lrc = load(r, id, &doc, err, sizeof(err));
    if (lrc != SG_OK) {
        gw__store_problem(r, lrc, err);
    } else if (rc == SG_OK) {
        /* A requeued task is published by the outbox relay right after: accepted. */
        gw__reply_json(r, requeue ? MHD_HTTP_ACCEPTED : MHD_HTTP_OK, doc);
        doc = NULL;
    } else {
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(doc, "status");
        const char *s = cJSON_IsString(status) ? status->valuestring : "?";
        cJSON *extra = cJSON_CreateObject();
        gw__add_str(extra, "dlq_status", s);
        if (rc == SG_ERR_STATE) {
            gw__problem_with(r, MHD_HTTP_CONFLICT, "conflict", extra, "dead letter %lld is %s: %s",
                             (long long)id, s,
                             requeue ? "only a new or discarded dead letter can be requeued"
                                     : "only a new dead letter can be discarded");
        } else {
            gw__problem_with(r, MHD_HTTP_CONFLICT, "conflict", extra,
                             "dead letter %lld cannot be requeued by this sagad: it needs "
                             "--transport kafka and a queue that names a topic",
                             (long long)id);
        }
    }
    cJSON_Delete(doc);
}

void gw__h_dlq_requeue(gw_req_t *r)
{
    act(r, true);
}

void gw__h_dlq_discard(gw_req_t *r)
{
    act(r, false);
}
