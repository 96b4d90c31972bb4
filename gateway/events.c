/*
 * gateway events: GET /v1/events, sagad's event log (the services' domain events the
 * relay imported, and the events sagas emit), filtered by type and correlation id and
 * paged by the log's own increasing id.
 *
 * It must never write, and never trust a row: a payload that is not JSON is shown as
 * its text rather than failing the page.
 */
#include "gateway/gateway_int.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

#define EVENTS_DEFAULT 100
#define EVENTS_MAX 1000
#define FILTER_MAX_LEN 128

typedef struct {
    cJSON *items;
    size_t limit, count;
    int64_t last_id;
    bool more, nomem;
} events_ctx_t;

static bool on_event(void *ctx, const sg_store_event_t *ev)
{
    events_ctx_t *e = ctx;
    if (e->count == e->limit) {
        e->more = true;
        return false;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *data = gw__json_value(ev->payload);
    bool ok = o != NULL && data != NULL && cJSON_AddNumberToObject(o, "id", (double)ev->id) &&
              gw__add_str(o, "event_id", ev->event_id) && gw__add_str(o, "type", ev->type) &&
              gw__add_str(o, "correlation_id", ev->correlation_id) &&
              gw__add_time(o, "time", ev->ts_ms) && gw__add_str(o, "source", ev->source) &&
              cJSON_AddItemToObject(o, "data", data);
    if (!ok) {
        cJSON_Delete(data);
        cJSON_Delete(o);
        e->nomem = true;
        return false;
    }
    cJSON_AddItemToArray(e->items, o);
    e->count++;
    e->last_id = ev->id;
    return true;
}

/* A filter value: absent, or 1..FILTER_MAX_LEN bytes. */
static bool filter_ok(const char *v)
{
    return v == NULL || (v[0] != '\0' && strlen(v) <= FILTER_MAX_LEN);
}

void gw__h_events(gw_req_t *r)
{
    const char *type = gw__query(r, "type"), *corr = gw__query(r, "correlation_id");
    const char *a = gw__query(r, "after"), *l = gw__query(r, "limit");
    int64_t after = 0, limit = EVENTS_DEFAULT;
    if (!filter_ok(type) || !filter_ok(corr)) {
        gw__problem(r, MHD_HTTP_BAD_REQUEST, "bad-parameter",
                    "type and correlation_id must be 1..%d bytes", FILTER_MAX_LEN);
        return;
    }
    if ((a != NULL && !gw__parse_i64(a, 0, INT64_MAX, &after)) ||
        (l != NULL && !gw__parse_i64(l, 1, EVENTS_MAX, &limit))) {
        gw__problem(r, MHD_HTTP_BAD_REQUEST, "bad-parameter",
                    "after must be an event id >= 0 and limit 1..%d", EVENTS_MAX);
        return;
    }
    char err[256] = "";
    sg_store_t *st = gw__store_get(r->gw, err, sizeof(err));
    if (st == NULL) {
        gw__store_problem(r, SG_ERR_IO, err);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    events_ctx_t e = {.items = doc != NULL ? cJSON_AddArrayToObject(doc, "items") : NULL,
                      .limit = (size_t)limit};
    /* One row more than asked tells whether another page exists. */
    sg_err_t rc = e.items != NULL
                      ? sg_store_event_list(st, type, corr, after, e.limit + 1, on_event, &e)
                      : SG_ERR_NOMEM;
    if (rc == SG_OK &&
        (e.nomem || (e.more ? cJSON_AddNumberToObject(doc, "next_after", (double)e.last_id)
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
