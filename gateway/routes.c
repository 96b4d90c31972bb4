/*
 * gateway routes: the route table and the handlers that read definitions or change
 * instances (start, cancel, retry), and the probes, plus what every start shares
 * (Idempotency-Key, body check, the answers to a refused start; orders.c uses them). A
 * new endpoint is one table line and one handler; its scope is what a caller needs
 * (GW_OPEN for probes only: the tests walk this table and refuse any other open route).
 *
 * Handlers must never block on anything but the driver's own queue, never write to the
 * store (the driver does), and always answer: every path ends in gw__reply_json or
 * gw__problem. Statuses: 4xx for what the caller can fix, 503 when sagad cannot serve.
 */
#include "gateway/gateway_int.h"
#include "orchestrator/engine/engine.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDEM_KEY_MAX 200
#define INPUT_ERRORS_MAX 20

/* ---- probes and definitions ---- */

static void reply_status(gw_req_t *r, const char *status)
{
    cJSON *doc = cJSON_CreateObject();
    if (doc != NULL && cJSON_AddStringToObject(doc, "status", status) == NULL) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    gw__reply_json(r, MHD_HTTP_OK, doc);
}

/* Alive: the process answers. */
static void h_healthz(gw_req_t *r)
{
    reply_status(r, "ok");
}

/* Ready: the gateway is not stopping, the driver runs and its last commit worked, and
 * the database answers a read. 503 otherwise: the one deliberate 5xx. */
static void h_readyz(gw_req_t *r)
{
    if (!gw__serving(r->gw)) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "not-ready", "sagad is stopping");
        return;
    }
    if (!sg_driver_ready(gw__driver(r->gw))) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "not-ready",
                    "the engine is not running or its last commit failed");
        return;
    }
    char err[256] = "";
    gw_inst_row_t row;
    sg_store_t *st = gw__store_get(r->gw, err, sizeof(err));
    sg_err_t rc = st != NULL ? gw__inst_load(st, "readyz-probe", &row) : SG_ERR_IO;
    if (st != NULL) {
        gw__inst_row_fini(&row);
        snprintf(err, sizeof(err), "%s", sg_store_errmsg(st));
    }
    gw__store_put(r->gw, st, rc != SG_OK && rc != SG_ERR_NOT_FOUND);
    if (rc == SG_OK || rc == SG_ERR_NOT_FOUND) {
        reply_status(r, "ready");
    } else {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "not-ready", "the database cannot be read: %s",
                    err[0] ? err : sg_strerror(rc));
    }
}

typedef struct {
    const sg_def_t **defs;
    size_t count, cap;
    bool nomem;
} def_list_t;

/* Runs under the registry's read lock: only collects pointers (valid until the driver
 * stops, which is after the gateway stops). */
static void collect_def(void *ctx, const sg_def_t *def)
{
    def_list_t *l = ctx;
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        const sg_def_t **defs = sg_realloc(l->defs, cap * sizeof(*defs));
        if (defs == NULL) {
            l->nomem = true;
            return;
        }
        l->defs = defs;
        l->cap = cap;
    }
    l->defs[l->count++] = def;
}

static int cmp_def(const void *a, const void *b)
{
    const sg_def_t *x = *(const sg_def_t *const *)a, *y = *(const sg_def_t *const *)b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : (x->version > y->version) - (x->version < y->version);
}

static cJSON *def_summary(const sg_def_t *def)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || cJSON_AddStringToObject(o, "name", def->name) == NULL ||
        cJSON_AddNumberToObject(o, "version", (double)def->version) == NULL ||
        cJSON_AddStringToObject(o, "sha256", def->sha256) == NULL ||
        !gw__add_str(o, "description", def->description) ||
        cJSON_AddNumberToObject(o, "steps", (double)def->n_steps) == NULL) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static void h_workflow_list(gw_req_t *r)
{
    def_list_t l = {0};
    sg_driver_defs(gw__driver(r->gw), collect_def, &l);
    cJSON *arr = l.nomem ? NULL : cJSON_CreateArray();
    if (arr != NULL) {
        qsort(l.defs, l.count, sizeof(*l.defs), cmp_def);
    }
    for (size_t i = 0; arr != NULL && i < l.count; i++) {
        cJSON *o = def_summary(l.defs[i]);
        if (o == NULL) {
            cJSON_Delete(arr);
            arr = NULL;
        } else {
            cJSON_AddItemToArray(arr, o);
        }
    }
    sg_free(l.defs);
    gw__reply_json(r, MHD_HTTP_OK, arr);
}

static cJSON *step_doc(const sg_step_t *st)
{
    bool call = st->kind == SG_STEP_ACTIVITY;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || cJSON_AddStringToObject(o, "id", st->id) == NULL ||
        cJSON_AddStringToObject(o, "kind", sg_step_kind_name(st->kind)) == NULL ||
        cJSON_AddStringToObject(o, "class", sg_step_class_name(st->cls)) == NULL ||
        !gw__add_str(o, "activity", call ? st->call.activity : NULL) ||
        !gw__add_str(o, "compensation",
                     call && st->compensate != NULL ? st->compensate->activity : NULL) ||
        !gw__add_str(o, "group", st->group != NULL ? st->group->id : NULL) ||
        !gw__add_str(o, "description", st->description)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

bool gw__version_arg(gw_req_t *r, int64_t *version)
{
    const char *v = gw__query(r, "version");
    *version = 0;
    if (v != NULL && !gw__parse_i64(v, 1, INT64_MAX, version)) {
        gw__problem(r, MHD_HTTP_BAD_REQUEST, "bad-parameter", "version must be a positive integer");
        return false;
    }
    return true;
}

const sg_def_t *gw__find_def(gw_req_t *r, int64_t version)
{
    const char *name = r->params[0];
    const sg_def_t *def = sg_driver_def(gw__driver(r->gw), name, version);
    if (def == NULL && version != 0) {
        gw__problem(r, MHD_HTTP_NOT_FOUND, "workflow-not-found",
                    "no workflow \"%.128s\" with version %lld", name, (long long)version);
    } else if (def == NULL) {
        gw__problem(r, MHD_HTTP_NOT_FOUND, "workflow-not-found", "no workflow \"%.128s\"", name);
    }
    return def;
}

static void h_workflow_get(gw_req_t *r)
{
    int64_t version;
    const sg_def_t *def = gw__version_arg(r, &version) ? gw__find_def(r, version) : NULL;
    if (def == NULL) {
        return;
    }
    cJSON *doc = def_summary(def);
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "steps"); /* the list's count; here the steps */
    cJSON *schema =
        def->input_schema != NULL ? cJSON_Duplicate(def->input_schema, true) : cJSON_CreateNull();
    bool ok = doc != NULL && schema != NULL && cJSON_AddItemToObject(doc, "input_schema", schema);
    if (!ok) {
        cJSON_Delete(schema);
    }
    cJSON *steps = ok ? cJSON_AddArrayToObject(doc, "steps") : NULL;
    ok = steps != NULL &&
         cJSON_AddNumberToObject(doc, "timeout_ms", (double)def->timeout_ms) != NULL &&
         cJSON_AddStringToObject(doc, "source", def->source) != NULL;
    for (size_t i = 0; ok && i < def->n_steps; i++) {
        cJSON *s = step_doc(def->all_steps[i]);
        ok = s != NULL;
        if (ok) {
            cJSON_AddItemToArray(steps, s);
        }
    }
    if (!ok) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    gw__reply_json(r, MHD_HTTP_OK, doc);
}

/* ---- starting a saga ---- */

static bool valid_idem_key(const char *k)
{
    size_t n = strlen(k);
    for (const char *p = k; *p; p++) {
        if (*p < 0x21 || *p > 0x7e) {
            return false;
        }
    }
    return n > 0 && n <= IDEM_KEY_MAX;
}

bool gw__idem_key_arg(gw_req_t *r, const char **key)
{
    *key = gw__header(r, "Idempotency-Key");
    if (*key != NULL && !valid_idem_key(*key)) {
        gw__problem(r, MHD_HTTP_BAD_REQUEST, "bad-header",
                    "Idempotency-Key must be 1 to %d visible ASCII characters", IDEM_KEY_MAX);
        return false;
    }
    return true;
}

/* The 400 for a body that is not a JSON object, with the same errors[] shape as schema
 * violations so clients need one code path. */
void gw__bad_input(gw_req_t *r, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cJSON *extra = cJSON_CreateObject();
    cJSON *errors = extra != NULL ? cJSON_AddArrayToObject(extra, "errors") : NULL;
    cJSON *e = cJSON_CreateObject();
    if (errors != NULL && e != NULL && cJSON_AddStringToObject(e, "path", "") != NULL &&
        cJSON_AddStringToObject(e, "message", msg) != NULL) {
        cJSON_AddItemToArray(errors, e);
        e = NULL;
    }
    cJSON_Delete(e);
    gw__problem_with(r, MHD_HTTP_BAD_REQUEST, "invalid-input", extra, "%s", msg);
}

bool gw__check_body(gw_req_t *r)
{
    char msg[200];
    if (!gw__body_check(r->body, r->body_len, msg, sizeof(msg))) {
        gw__bad_input(r, "%s", msg);
        return false;
    }
    return true;
}

/* 400 with one {path, message, keyword[, hint]} per schema violation. */
static void schema_errors(gw_req_t *r, const sg_jsonschema_errors_t *errs)
{
    cJSON *extra = cJSON_CreateObject();
    cJSON *list = extra != NULL ? cJSON_AddArrayToObject(extra, "errors") : NULL;
    for (size_t i = 0; list != NULL && i < errs->count; i++) {
        const sg_jsonschema_error_t *e = &errs->items[i];
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || cJSON_AddStringToObject(o, "path", e->path) == NULL ||
            cJSON_AddStringToObject(o, "message", e->message) == NULL ||
            cJSON_AddStringToObject(o, "keyword", e->keyword) == NULL ||
            (e->hint != NULL && cJSON_AddStringToObject(o, "hint", e->hint) == NULL)) {
            cJSON_Delete(o);
            break;
        }
        cJSON_AddItemToArray(list, o);
    }
    if (extra != NULL && errs->dropped > 0) {
        cJSON_AddNumberToObject(extra, "errors_omitted", (double)errs->dropped);
    }
    gw__problem_with(r, MHD_HTTP_BAD_REQUEST, "invalid-input", extra,
                     "the input does not match the workflow's input schema (%zu error%s)",
                     errs->count + errs->dropped, errs->count + errs->dropped == 1 ? "" : "s");
}

void gw__start_failed(gw_req_t *r, sg_err_t rc, const sg_jsonschema_errors_t *errs,
                      const char *workflow)
{
    switch (rc) {
    case SG_ERR_INVALID:
        if (errs->count + errs->dropped > 0) {
            schema_errors(r, errs);
        } else {
            gw__bad_input(r, "the body must be a JSON object, the saga's input");
        }
        break;
    case SG_ERR_NOT_FOUND:
        gw__problem(r, MHD_HTTP_NOT_FOUND, "workflow-not-found", "no workflow \"%.128s\"",
                    workflow);
        break;
    case SG_ERR_STATE:
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping",
                    "sagad is stopping; the saga was not started");
        break;
    default:
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                    "the saga could not be started: %s", sg_strerror(rc));
    }
}

/* The answer to a start: the new instance (201) or the one the key named (200). */
static void started(gw_req_t *r, const sg_def_t *def, const sg_start_result_t *res)
{
    gw_inst_row_t row = {0};
    const char *status = "RUNNING", *workflow = def->name;
    int64_t version = def->version;
    if (!res->created) {
        /* A replay reports the instance as it is now, which may be another version. */
        char err[256];
        sg_store_t *st = gw__store_get(r->gw, err, sizeof(err));
        sg_err_t rc = st != NULL ? gw__inst_load(st, res->id, &row) : SG_ERR_IO;
        gw__store_put(r->gw, st, rc == SG_ERR_IO);
        if (rc == SG_OK) {
            status = row.status;
            workflow = row.workflow;
            version = row.version;
        } else {
            status = NULL;
        }
    }
    cJSON *doc = cJSON_CreateObject();
    if (doc != NULL && (cJSON_AddStringToObject(doc, "id", res->id) == NULL ||
                        cJSON_AddStringToObject(doc, "workflow", workflow) == NULL ||
                        cJSON_AddNumberToObject(doc, "version", (double)version) == NULL ||
                        !gw__add_str(doc, "status", status) ||
                        cJSON_AddBoolToObject(doc, "created", res->created) == NULL)) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    gw__inst_row_fini(&row);
    gw__reply_json(r, res->created ? MHD_HTTP_CREATED : MHD_HTTP_OK, doc);
    snprintf(r->location, sizeof(r->location), "/v1/instances/%s", res->id);
}

static void h_start(gw_req_t *r)
{
    int64_t version;
    const sg_def_t *def = gw__version_arg(r, &version) ? gw__find_def(r, version) : NULL;
    if (def == NULL) {
        return;
    }
    const char *key;
    if (!gw__idem_key_arg(r, &key) || !gw__check_body(r)) {
        return;
    }
    sg_jsonschema_errors_t errs;
    sg_jsonschema_errors_init(&errs, INPUT_ERRORS_MAX);
    sg_start_result_t res = {.created = false};
    sg_err_t rc =
        sg_driver_start_saga(gw__driver(r->gw), def->name, def->version, r->body, key, &res, &errs);
    if (rc == SG_OK) {
        started(r, def, &res);
    } else {
        gw__start_failed(r, rc, &errs, def->name);
    }
    sg_jsonschema_errors_fini(&errs);
}

/* ---- cancel and retry ---- */

static void control(gw_req_t *r, bool cancel)
{
    const char *id = r->params[0];
    const char *verb = cancel ? "cancel" : "retry";
    if (!gw__valid_id(id)) {
        gw__problem(r, MHD_HTTP_NOT_FOUND, "instance-not-found", "no such instance");
        return;
    }
    sg_driver_t *d = gw__driver(r->gw);
    sg_err_t rc = cancel ? sg_driver_cancel(d, id) : sg_driver_retry(d, id);
    if (rc == SG_ERR_NOMEM || rc == SG_ERR_IO) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "%s failed: %s", verb,
                    sg_strerror(rc));
        return;
    }
    /* The status after the change, or the one that made it impossible. The driver
     * answers NOT_FOUND for an instance that exists but is not live (finished). */
    char err[256] = "";
    gw_inst_row_t row = {0};
    sg_store_t *st = gw__store_get(r->gw, err, sizeof(err));
    sg_err_t lrc = st != NULL ? gw__inst_load(st, id, &row) : SG_ERR_IO;
    gw__store_put(r->gw, st, lrc == SG_ERR_IO);
    if (rc == SG_OK) {
        cJSON *doc = cJSON_CreateObject();
        if (doc != NULL && (cJSON_AddStringToObject(doc, "id", id) == NULL ||
                            !gw__add_str(doc, "status", lrc == SG_OK ? row.status : NULL))) {
            cJSON_Delete(doc);
            doc = NULL;
        }
        gw__reply_json(r, MHD_HTTP_ACCEPTED, doc);
    } else if (lrc == SG_ERR_NOT_FOUND) {
        gw__problem(r, MHD_HTTP_NOT_FOUND, "instance-not-found", "no instance %s", id);
    } else if (lrc != SG_OK) {
        gw__store_problem(r, lrc, err);
    } else if (rc == SG_ERR_INVALID) {
        gw__problem(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "corrupt-instance",
                    "instance %s cannot be loaded from the database", id);
    } else {
        cJSON *extra = cJSON_CreateObject();
        gw__add_str(extra, "instance_status", row.status);
        gw__problem_with(r, MHD_HTTP_CONFLICT, "conflict", extra, "instance %s is %s: %s", id,
                         row.status,
                         cancel ? "only a RUNNING instance before its pivot can be cancelled"
                                : "only a FAILED or COMPENSATION_FAILED instance can be retried");
    }
    gw__inst_row_fini(&row);
}

static void h_cancel(gw_req_t *r)
{
    control(r, true);
}

static void h_retry(gw_req_t *r)
{
    control(r, false);
}

/* ---- the table ---- */

const gw_route_t gw__routes[] = {
    {"GET", "/healthz", h_healthz, GW_OPEN},
    {"GET", "/readyz", h_readyz, GW_OPEN},
    {"GET", "/v1/workflows", h_workflow_list, SG_SCOPE_READ},
    {"GET", "/v1/workflows/{name}", h_workflow_get, SG_SCOPE_READ},
    {"POST", "/v1/workflows/{name}/instances", h_start, SG_SCOPE_START},
    {"GET", "/v1/instances", gw__h_instance_list, SG_SCOPE_READ},
    {"GET", "/v1/instances/{id}", gw__h_instance_get, SG_SCOPE_READ},
    {"GET", "/v1/instances/{id}/history", gw__h_instance_history, SG_SCOPE_READ},
    {"POST", "/v1/instances/{id}/cancel", h_cancel, SG_SCOPE_OPERATE},
    {"POST", "/v1/instances/{id}/retry", h_retry, SG_SCOPE_OPERATE},
    {"POST", "/v1/workflows/validate", gw__h_validate, SG_SCOPE_READ},
    {"GET", "/v1/workflows/{name}/graph", gw__h_workflow_graph, SG_SCOPE_READ},
    {"GET", "/v1/instances/{id}/graph", gw__h_instance_graph, SG_SCOPE_READ},
    {"GET", "/v1/events", gw__h_events, SG_SCOPE_READ},
    {"GET", "/v1/dlq", gw__h_dlq_list, SG_SCOPE_OPERATE},
    {"POST", "/v1/dlq/{id}/requeue", gw__h_dlq_requeue, SG_SCOPE_OPERATE},
    {"POST", "/v1/dlq/{id}/discard", gw__h_dlq_discard, SG_SCOPE_OPERATE},
    {"POST", "/v1/orders", gw__h_order_create, SG_SCOPE_START},
    {"GET", "/v1/orders/{id}", gw__h_order_get, SG_SCOPE_READ},
    {"POST", "/v1/orders/{id}/cancel", gw__h_order_cancel, SG_SCOPE_OPERATE},
    {"GET", "/metrics", gw__h_metrics, SG_SCOPE_READ},
    {"GET", "/v1/openapi.json", gw__h_openapi, SG_SCOPE_READ},
};

const size_t gw__n_routes = SG_ARRAY_LEN(gw__routes);
