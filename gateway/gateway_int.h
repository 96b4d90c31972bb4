/*
 * gateway internals shared by gateway.c (HTTP plumbing, admission: limits, credentials,
 * rate; store pool), routes.c (the route table and the handlers that write), query.c (the
 * handlers that read), json.c (problem documents, request bodies, times, cursors),
 * params.c (the query of the list routes) and ratelimit.c (token buckets). Never included
 * from another folder; the gateway's tests and fuzz targets use it to reach the route
 * table and the body check.
 */
#ifndef SG_GATEWAY_INT_H
#define SG_GATEWAY_INT_H

#include "gateway/auth.h"
#include "gateway/gateway.h"

#include <cjson/cJSON.h>

#define GW_MAX_PARAMS 4
#define GW_ID_MAX 31 /* instance ids fit sg_store_inst_t.id */

/* One request as the handlers see it, and the response they fill in. */
typedef struct {
    sg_gateway_t *gw;
    void *con; /* struct MHD_Connection *, only for gw__query/gw__header */
    const char *method;
    const char *path;
    const char *params[GW_MAX_PARAMS]; /* the {placeholders} of the route, in order */
    size_t n_params;
    const char *body; /* NUL-terminated; body_len excludes the NUL */
    size_t body_len;

    unsigned status;
    const char *ctype; /* static string */
    char *resp;        /* cJSON_malloc'd text, or static when resp_static */
    size_t resp_len;
    bool resp_static;
    char location[96];    /* "" = no Location header */
    char allow[48];       /* "" = no Allow header */
    char www_auth[160];   /* "" = no WWW-Authenticate header (401, 403) */
    unsigned retry_after; /* seconds for a Retry-After header (429, 503); 0 = none */
} gw_req_t;

typedef void (*gw_handler_fn)(gw_req_t *r);

/* The scope of a route that needs no credentials (/healthz, /readyz only). */
#define GW_OPEN 0u

/*
 * A route: method, path pattern with {name} placeholders for whole segments, handler,
 * and the scope a caller needs (one SG_SCOPE_* bit, see auth.h, or GW_OPEN).
 */
typedef struct {
    const char *method;
    const char *pattern;
    gw_handler_fn handler;
    unsigned scope;
} gw_route_t;

/* routes.c: the table, for the dispatcher in gateway.c and for the tests that walk it. */
extern const gw_route_t gw__routes[];
extern const size_t gw__n_routes;

/* tls.c: for opts.tls_cert_file and tls_key_file, their PEM texts into *cert and *key
 * (free both with gw__tls_free), or both NULL when TLS is off. False with the reason in
 * err and *rc: SG_ERR_INVALID (one file of the two, not PEM, libmicrohttpd without TLS),
 * SG_ERR_IO (unreadable) or SG_ERR_NOMEM. */
bool gw__tls_load(const sg_gateway_opts_t *o, char **cert, char **key, sg_err_t *rc, char *err,
                  size_t errlen);
/* Frees what gw__tls_load gave, wiping the key first. NULLs are no-ops. */
void gw__tls_free(char *cert, char *key);

/* gateway.c: what handlers need from the gateway. */
sg_driver_t *gw__driver(const sg_gateway_t *g);
/* opts.data_dir: the services' databases; NULL when none was given. */
const char *gw__data_dir(const sg_gateway_t *g);
/* False once sg_gateway_stop has begun (/readyz then answers 503). */
bool gw__serving(const sg_gateway_t *g);
/* A query-string argument or request header (decoded by MHD), NULL when absent. */
const char *gw__query(const gw_req_t *r, const char *key);
const char *gw__header(const gw_req_t *r, const char *key);
/* A read-only store handle from the pool; give it back with gw__store_put (broken =
 * the last call failed with SG_ERR_IO: the handle is closed instead of reused). NULL when
 * the database cannot be opened; the reason is in err. */
sg_store_t *gw__store_get(sg_gateway_t *g, char *err, size_t errlen);
void gw__store_put(sg_gateway_t *g, sg_store_t *st, bool broken);

/* query.c: an instance row copied out of the store (its strings are owned). */
typedef struct {
    char id[32];
    char *workflow, *status, *reason, *input, *state;
    int64_t version, created_ms, updated_ms, deadline_ms;
    bool nomem;
} gw_inst_row_t;

/* Loads instance id into row (zeroed first): SG_OK, SG_ERR_NOT_FOUND, SG_ERR_NOMEM or the
 * store's error. Free with gw__inst_row_fini whatever the result. */
sg_err_t gw__inst_load(sg_store_t *st, const char *id, gw_inst_row_t *row);
void gw__inst_row_fini(gw_inst_row_t *row);

/* query.c: the handlers that only read. */
void gw__h_instance_get(gw_req_t *r);
void gw__h_instance_history(gw_req_t *r);
void gw__h_instance_list(gw_req_t *r);
/* query.c: an instance as GET /v1/instances/{id} shows it, without the attempts list
 * (def may be NULL: steps then lose their ids). NULL on OOM. */
cJSON *gw__instance_doc(const gw_inst_row_t *row, const sg_def_t *def);
/* Opens a snapshot and loads the {id} instance (params[0]) into row; *rc says how that
 * went, and when it failed the 404/503 is answered. End with gw__store_put and
 * gw__inst_row_fini whatever happened. */
sg_store_t *gw__open_instance(gw_req_t *r, gw_inst_row_t *row, sg_err_t *rc);

/* routes.c: pieces shared by the handlers that start sagas (routes.c, orders.c). */
/* The Idempotency-Key header into *key (NULL when absent); answers 400 and returns
 * false when it is not 1..200 visible ASCII characters. */
bool gw__idem_key_arg(gw_req_t *r, const char **key);
/* Whether the body is exactly one JSON object within the limits; answers 400 (with the
 * errors[] list of schema errors, so clients need one code path) when not. */
bool gw__check_body(gw_req_t *r);
/* The 400 invalid-input problem with one {path: "", message} error. */
void gw__bad_input(gw_req_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Answers a start of workflow that sg_driver_start_saga refused with rc: 400 with the
 * schema errors of errs, 404 unknown workflow, 503 stopping or unavailable. */
void gw__start_failed(gw_req_t *r, sg_err_t rc, const sg_jsonschema_errors_t *errs,
                      const char *workflow);
/* ?version=N into *version (0 when absent); answers 400 and returns false when it is
 * not a positive integer. */
bool gw__version_arg(gw_req_t *r, int64_t *version);
/* The definition named by params[0] at version (0 = latest); answers 404 and returns
 * NULL when there is none. */
const sg_def_t *gw__find_def(gw_req_t *r, int64_t version);

/* graph.c, events.c, orders.c: definitions tooling, the event log, the shop's orders. */
void gw__h_validate(gw_req_t *r);
void gw__h_workflow_graph(gw_req_t *r);
void gw__h_instance_graph(gw_req_t *r);
void gw__h_events(gw_req_t *r);
void gw__h_order_create(gw_req_t *r);
void gw__h_order_get(gw_req_t *r);
void gw__h_order_cancel(gw_req_t *r);
/* dlq.c: the kafka transport's dead letters (GET /v1/dlq, requeue, discard). */
void gw__h_dlq_list(gw_req_t *r);
void gw__h_dlq_requeue(gw_req_t *r);
void gw__h_dlq_discard(gw_req_t *r);

/* metrics.c: HTTP metrics in the driver's registry, and GET /metrics. */
typedef struct gw_metrics gw_metrics_t;
/* Registers the HTTP series in reg; NULL (requests go uncounted) when reg is NULL or on
 * OOM. gw__metrics_free(NULL) is a no-op. */
gw_metrics_t *gw__metrics_new(sg_metrics_t *reg);
void gw__metrics_free(gw_metrics_t *m);
/* Monotonic microseconds, for request latency. */
uint64_t gw__mono_us(void);
/* Counts one answered request: route NULL when none matched (404, 405, 414, 431), method
 * as sent, t0_us when its headers were in. Any connection thread. */
void gw__metrics_request(gw_metrics_t *m, const gw_route_t *route, const char *method,
                         unsigned status, uint64_t t0_us);
void gw__h_metrics(gw_req_t *r);
/* openapi.c: GET /v1/openapi.json, the document gateway/openapi.json built in. */
void gw__h_openapi(gw_req_t *r);

/* json.c: responses. Each replaces any response already set. */
/* Sends doc as application/json and deletes it; NULL doc (OOM) becomes a 503. */
void gw__reply_json(gw_req_t *r, unsigned status, cJSON *doc);
/* Sends a copy of text[0..len) with content type ctype (a static string). */
void gw__reply_text(gw_req_t *r, unsigned status, const char *ctype, const char *text, size_t len);
/* Sends a problem document {type, title, status, detail}; slug names the type. */
void gw__problem(gw_req_t *r, unsigned status, const char *slug, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Sends a problem document whose members are extended by extra (taken, may be NULL). */
void gw__problem_with(gw_req_t *r, unsigned status, const char *slug, cJSON *extra, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));
/* The problem for a failed store call or open (503: the service, not the request). */
void gw__store_problem(gw_req_t *r, sg_err_t rc, const char *msg);

/* json.c: request bodies. The limits of a JSON body, past which it is a 400. */
#define GW_JSON_MAX_DEPTH 32
#define GW_JSON_MAX_VALUES 100000
/* Checks that body[0..len) is exactly one JSON object (no NUL byte, nesting at most
 * GW_JSON_MAX_DEPTH, at most GW_JSON_MAX_VALUES values). When it is not, writes the
 * reason with its line and column to msg and returns false. Pure; any thread. */
bool gw__body_check(const char *body, size_t len, char *msg, size_t msglen);

/* json.c: values. */
/* "2026-11-26T04:51:07.123Z" into out (>= 32 bytes); ms <= 0 gives "" (use null). */
void gw__rfc3339(int64_t ms, char out[32]);
/* A time member: the RFC 3339 string, or null when ms <= 0. False on OOM. */
bool gw__add_time(cJSON *obj, const char *key, int64_t ms);
/* JSON text from the database as a value: parsed, or the raw text as a string when it
 * does not parse (a corrupt row must not hide the rest), or null for NULL. */
cJSON *gw__json_value(const char *text);
/* A string member, or null for NULL. */
bool gw__add_str(cJSON *obj, const char *key, const char *s);
/* Decimal text -> *out within [min, max]; false for anything else. */
bool gw__parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* An instance id as it may appear in a path: 1..31 of [0-9A-Za-z_-]. */
bool gw__valid_id(const char *id);
/* The list cursor: opaque base64url of "created_ms.id". */
void gw__cursor_encode(int64_t created_ms, const char *id, char out[96]);
bool gw__cursor_decode(const char *token, int64_t *created_ms, char id[32]);

/* params.c: the query of the list routes, one parser for all. */
#define GW_PAGE_MAX_FILTERS 2
/* An exact-match filter: absent, or 1..max_len bytes, each in charset (NULL: any), that
 * valid accepts (NULL: no more rules). must is the rule in words for the 400 ("one of new,
 * requeued or discarded"); NULL says "1..max_len bytes". */
typedef struct {
    const char *name;
    size_t max_len;
    const char *charset;
    bool (*valid)(const char *v);
    const char *must;
} gw_filter_t;
/* What a list route reads: its filters, `after` (what it counts, "an event id"; NULL: the
 * route has none), `limit` (1..limit_max, limit_default when absent), `page_token`. */
typedef struct {
    const gw_filter_t *filters;
    size_t n_filters;
    const char *after;
    int64_t limit_default, limit_max;
    bool page_token;
} gw_page_spec_t;
/* The values read: filter[i] for spec->filters[i] (NULL when absent; valid until the
 * request ends), after (0 when absent), limit, and the cursor when has_cursor. */
typedef struct {
    const char *filter[GW_PAGE_MAX_FILTERS];
    int64_t after;
    size_t limit;
    bool has_cursor;
    int64_t cursor_created_ms;
    char cursor_id[32];
} gw_page_t;
/* Reads the query of r by spec into *out. A bad value answers 400 bad-parameter naming it
 * (detail, and the problem's `parameter` member) and returns false; filters are checked
 * in spec order, then after, limit, page_token. Any connection thread. */
bool gw__page_params(gw_req_t *r, const gw_page_spec_t *spec, gw_page_t *out);

/* ratelimit.c: token buckets by caller. */
typedef struct gw_ratelimit gw_ratelimit_t;
/* NULL on OOM. At most max_entries buckets are kept (see ratelimit.c). */
gw_ratelimit_t *gw__rl_new(size_t max_entries);
void gw__rl_free(gw_ratelimit_t *rl); /* NULL is a no-op */
/* Takes a token from key's bucket (created full), refilled at rate per second up to
 * burst, at now_ms (any monotonic clock). Returns 0 when the request may go on, else the
 * whole seconds (>= 1) until a token is back. rate <= 0 means no limit. Any thread. */
unsigned gw__rl_take(gw_ratelimit_t *rl, const char *key, double rate, double burst,
                     uint64_t now_ms);
/* Buckets held now (for tests). */
size_t gw__rl_count(gw_ratelimit_t *rl);

#endif
