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

static const gw_filter_t filters[] = {
    {.name = "type", .max_len = FILTER_MAX_LEN},
    {.name = "correlation_id", .max_len = FILTER_MAX_LEN},
};
static const gw_page_spec_t page_spec = {.filters = filters,
                                         .n_filters = SG_ARRAY_LEN(filters),
                                         .after = "an event id",
                                         .limit_default = EVENTS_DEFAULT,
                                         .limit_max = EVENTS_MAX};

void gw__h_events(gw_req_t *r)
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
    events_ctx_t e = {.items = doc != NULL ? cJSON_AddArrayToObject(doc, "items") : NULL,
                      .limit = p.limit};
    /* One row more than asked tells whether another page exists. */
    sg_err_t rc = e.items != NULL ? sg_store_event_list(st, p.filter[0], p.filter[1], p.after,
                                                        e.limit + 1, on_event, &e)
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
