/*
 * gateway params: the query of the list routes (GET /v1/instances, /v1/instances/{id}/history,
 * /v1/events, /v1/dlq) read by one parser from a per-route description: exact-match
 * filters, the `after` position, `limit` and the `page_token` cursor. One parser keeps
 * the rules and the 400s the same everywhere: a problem `bad-parameter` whose detail
 * says what the parameter must be and whose `parameter` member names it.
 *
 * It must never accept a value the store would have to check again: lengths, character
 * sets and ranges are settled here, before any handle is taken from the pool.
 */
#include "gateway/gateway_int.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

/* The 400 for parameter name; detail is the whole sentence. */
static void bad_param(gw_req_t *r, const char *name, const char *detail)
{
    cJSON *extra = cJSON_CreateObject();
    if (extra != NULL && cJSON_AddStringToObject(extra, "parameter", name) == NULL) {
        cJSON_Delete(extra);
        extra = NULL; /* out of memory: the detail still names it */
    }
    gw__problem_with(r, MHD_HTTP_BAD_REQUEST, "bad-parameter", extra, "%s", detail);
}

static bool filter_ok(const gw_filter_t *f, const char *v)
{
    size_t n = strlen(v);
    return n > 0 && n <= f->max_len && (f->charset == NULL || strspn(v, f->charset) == n) &&
           (f->valid == NULL || f->valid(v));
}

bool gw__page_params(gw_req_t *r, const gw_page_spec_t *spec, gw_page_t *out)
{
    SG_ASSERT(spec->n_filters <= GW_PAGE_MAX_FILTERS);
    char detail[256];
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < spec->n_filters; i++) {
        const gw_filter_t *f = &spec->filters[i];
        const char *v = gw__query(r, f->name);
        if (v != NULL && !filter_ok(f, v)) {
            if (f->must != NULL) {
                snprintf(detail, sizeof(detail), "%s must be %s", f->name, f->must);
            } else {
                snprintf(detail, sizeof(detail), "%s must be 1..%zu bytes", f->name, f->max_len);
            }
            bad_param(r, f->name, detail);
            return false;
        }
        out->filter[i] = v;
    }
    const char *after = spec->after != NULL ? gw__query(r, "after") : NULL;
    if (after != NULL && !gw__parse_i64(after, 0, INT64_MAX, &out->after)) {
        snprintf(detail, sizeof(detail), "after must be %s >= 0", spec->after);
        bad_param(r, "after", detail);
        return false;
    }
    const char *limit = gw__query(r, "limit");
    int64_t n = spec->limit_default;
    if (limit != NULL && !gw__parse_i64(limit, 1, spec->limit_max, &n)) {
        snprintf(detail, sizeof(detail), "limit must be 1..%lld", (long long)spec->limit_max);
        bad_param(r, "limit", detail);
        return false;
    }
    out->limit = (size_t)n;
    const char *token = spec->page_token ? gw__query(r, "page_token") : NULL;
    if (token != NULL && !gw__cursor_decode(token, &out->cursor_created_ms, out->cursor_id)) {
        bad_param(r, "page_token", "page_token is not one this server handed out");
        return false;
    }
    out->has_cursor = token != NULL;
    return true;
}
