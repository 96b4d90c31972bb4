/*
 * gateway queries: the handlers that only read - one instance with its steps and
 * attempts, its history, and the filtered, paginated list. Each uses a read-only store
 * handle from the pool, inside one read transaction so its parts agree.
 *
 * They must never write, never hold a handle past the request, and never trust a row:
 * the engine's state JSON and stored JSON texts are checked as they are read, and a
 * value that does not parse is shown as its raw text instead of failing the request.
 */
#include "gateway/gateway_int.h"
#include "orchestrator/engine/engine.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

#define LIST_DEFAULT 50
#define LIST_MAX 500
#define HISTORY_MAX 1000
#define NAME_MAX_LEN 128

/* ---- one instance row ---- */

static bool copy_str(char **dst, const char *src)
{
    *dst = sg_strdup(src != NULL ? src : "");
    return *dst != NULL;
}

static bool on_inst_row(void *ctx, const sg_store_inst_t *row)
{
    gw_inst_row_t *out = ctx;
    snprintf(out->id, sizeof(out->id), "%s", row->id);
    out->version = row->version;
    out->created_ms = row->created_ms;
    out->updated_ms = row->updated_ms;
    out->deadline_ms = row->deadline_ms;
    out->nomem = !copy_str(&out->workflow, row->workflow) || !copy_str(&out->status, row->status) ||
                 !copy_str(&out->reason, row->reason) || !copy_str(&out->input, row->input) ||
                 !copy_str(&out->state, row->state);
    return false;
}

sg_err_t gw__inst_load(sg_store_t *st, const char *id, gw_inst_row_t *row)
{
    memset(row, 0, sizeof(*row));
    sg_err_t rc = sg_store_inst_get(st, id, on_inst_row, row);
    return rc == SG_OK && row->nomem ? SG_ERR_NOMEM : rc;
}

void gw__inst_row_fini(gw_inst_row_t *row)
{
    sg_free(row->workflow);
    sg_free(row->status);
    sg_free(row->reason);
    sg_free(row->input);
    sg_free(row->state);
    memset(row, 0, sizeof(*row));
}

/* ---- GET /v1/instances/{id} ---- */

/* A number member of a state entry, or -1 when it is missing or not a small integer. */
static double state_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 9007199254740991.0
               ? v->valuedouble
               : -1;
}

static bool add_count(cJSON *o, const char *key, double v)
{
    return (v >= 0 ? cJSON_AddNumberToObject(o, key, v) : cJSON_AddNullToObject(o, key)) != NULL;
}

static bool add_error(cJSON *o, const char *code, const char *message)
{
    if (code == NULL && message == NULL) {
        return cJSON_AddNullToObject(o, "error") != NULL;
    }
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    return e != NULL && gw__add_str(e, "code", code) && gw__add_str(e, "message", message);
}

static const char *state_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* One entry of the state's "steps" (see engine/persist.c) joined with its definition
 * step. Unknown values become null rather than failing the whole document. */
static cJSON *step_state_doc(const sg_def_t *def, size_t i, cJSON *ss)
{
    const sg_step_t *step = def != NULL && i < def->n_steps ? def->all_steps[i] : NULL;
    double s = state_num(ss, "s"), c = state_num(ss, "c");
    cJSON *o = cJSON_CreateObject();
    cJSON *out = cJSON_DetachItemFromObjectCaseSensitive(ss, "o");
    bool ok =
        o != NULL && gw__add_str(o, "id", step != NULL ? step->id : NULL) &&
        gw__add_str(o, "kind", step != NULL ? sg_step_kind_name(step->kind) : NULL) &&
        gw__add_str(o, "status",
                    s >= 0 && s < SG_SS__COUNT ? sg_step_status_name((sg_step_status_t)s) : NULL) &&
        gw__add_str(o, "compensation",
                    c >= 0 && c < SG_CS__COUNT ? sg_comp_status_name((sg_comp_status_t)c) : NULL) &&
        add_count(o, "attempt", state_num(ss, "a")) &&
        add_count(o, "compensation_attempt", state_num(ss, "ca")) &&
        cJSON_AddBoolToObject(o, "maybe_effect", state_num(ss, "m") == 1) != NULL &&
        gw__add_time(o, "started_at", (int64_t)state_num(ss, "t0")) &&
        gw__add_time(o, "finished_at", (int64_t)state_num(ss, "t1"));
    if (ok) {
        out = out != NULL ? out : cJSON_CreateNull();
        ok = out != NULL && cJSON_AddItemToObject(o, "output", out);
        if (ok) {
            out = NULL;
        }
        ok = ok && add_error(o, state_str(ss, "ec"), state_str(ss, "em"));
    }
    cJSON_Delete(out);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static bool add_steps(cJSON *doc, const sg_def_t *def, const char *state_json)
{
    cJSON *steps = cJSON_AddArrayToObject(doc, "steps");
    if (steps == NULL) {
        return false;
    }
    cJSON *state = cJSON_Parse(state_json);
    cJSON *list = cJSON_GetObjectItemCaseSensitive(state, "steps");
    if (!cJSON_IsArray(list)) {
        cJSON_Delete(state);
        return cJSON_AddStringToObject(doc, "state_error", "the stored state is unreadable") !=
               NULL;
    }
    size_t i = 0;
    cJSON *ss;
    bool ok = true;
    cJSON_ArrayForEach(ss, list)
    {
        cJSON *o = cJSON_IsObject(ss) ? step_state_doc(def, i, ss) : cJSON_CreateNull();
        if (o == NULL) {
            ok = false;
            break;
        }
        cJSON_AddItemToArray(steps, o);
        i++;
    }
    cJSON_Delete(state);
    return ok;
}

typedef struct {
    cJSON *list;
    const sg_def_t *def;
    bool nomem;
} attempts_ctx_t;

/* The last heartbeat of an attempt: heartbeat_ms and worker (null when none came), and
 * progress, the handler's JSON as a value, left out when there is none or the row's text
 * does not parse (a worker's bad progress must not fail the instance's page). */
static bool add_heartbeat(cJSON *o, const sg_store_attempt_t *a)
{
    if ((a->heartbeat_ms > 0 ? cJSON_AddNumberToObject(o, "heartbeat_ms", (double)a->heartbeat_ms)
                             : cJSON_AddNullToObject(o, "heartbeat_ms")) == NULL ||
        !gw__add_str(o, "worker", a->worker)) {
        return false;
    }
    /* cJSON cannot tell unparsable from out of memory: either way the progress is left out. */
    cJSON *progress = a->progress != NULL ? cJSON_ParseWithOpts(a->progress, NULL, true) : NULL;
    if (progress != NULL && !cJSON_AddItemToObject(o, "progress", progress)) {
        cJSON_Delete(progress);
        return false;
    }
    return true;
}

static bool on_attempt(void *ctx, const sg_store_attempt_t *a)
{
    attempts_ctx_t *ac = ctx;
    const sg_def_t *def = ac->def;
    bool known = def != NULL && a->step >= 0 && (uint64_t)a->step < def->n_steps;
    cJSON *o = cJSON_CreateObject();
    cJSON *input = gw__json_value(a->input), *output = gw__json_value(a->output);
    bool ok = o != NULL && input != NULL && output != NULL &&
              (known ? cJSON_AddStringToObject(o, "step", def->all_steps[a->step]->id)
                     : cJSON_AddNumberToObject(o, "step", (double)a->step)) != NULL &&
              cJSON_AddBoolToObject(o, "compensation", a->compensation) != NULL &&
              cJSON_AddNumberToObject(o, "attempt", (double)a->attempt) != NULL &&
              gw__add_str(o, "activity", a->activity) && gw__add_str(o, "status", a->status) &&
              gw__add_time(o, "started_at", a->started_ms) &&
              gw__add_time(o, "deadline_at", a->deadline_ms) &&
              gw__add_time(o, "finished_at", a->finished_ms) &&
              cJSON_AddItemToObject(o, "input", input);
    input = ok ? NULL : input;
    ok = ok && cJSON_AddItemToObject(o, "output", output);
    output = ok ? NULL : output;
    ok = ok && add_error(o, a->error_code, a->error_message) && add_heartbeat(o, a);
    cJSON_Delete(input);
    cJSON_Delete(output);
    if (!ok) {
        cJSON_Delete(o);
        ac->nomem = true;
        return false;
    }
    cJSON_AddItemToArray(ac->list, o);
    return true;
}

static bool is_one_of(const char *s, const char *a, const char *b, const char *c)
{
    return s != NULL && (strcmp(s, a) == 0 || strcmp(s, b) == 0 || (c && strcmp(s, c) == 0));
}

/* The step whose task or compensation is in flight or waiting for its retry (the first
 * in document order; a parallel group gives way to its branches' steps), or NULL. */
static const char *current_step(const cJSON *steps)
{
    const cJSON *st;
    cJSON_ArrayForEach(st, steps)
    {
        const char *kind = state_str(st, "kind");
        if (kind != NULL && strcmp(kind, "parallel") != 0 &&
            (is_one_of(state_str(st, "status"), "running", "retrying", "waiting") ||
             is_one_of(state_str(st, "compensation"), "running", "retrying", NULL))) {
            return state_str(st, "id");
        }
    }
    return NULL;
}

cJSON *gw__instance_doc(const gw_inst_row_t *row, const sg_def_t *def)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *input = gw__json_value(row->input);
    bool ok = doc != NULL && input != NULL && cJSON_AddStringToObject(doc, "id", row->id) != NULL &&
              cJSON_AddStringToObject(doc, "workflow", row->workflow) != NULL &&
              cJSON_AddNumberToObject(doc, "version", (double)row->version) != NULL &&
              cJSON_AddStringToObject(doc, "status", row->status) != NULL &&
              gw__add_str(doc, "reason", row->reason[0] ? row->reason : NULL) &&
              cJSON_AddItemToObject(doc, "input", input);
    if (!ok) {
        cJSON_Delete(input);
    }
    ok = ok && gw__add_time(doc, "created_at", row->created_ms) &&
         gw__add_time(doc, "updated_at", row->updated_ms) &&
         gw__add_time(doc, "deadline_at", row->deadline_ms) && add_steps(doc, def, row->state);
    ok = ok && gw__add_str(doc, "current_step",
                           current_step(cJSON_GetObjectItemCaseSensitive(doc, "steps")));
    if (!ok) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

sg_store_t *gw__open_instance(gw_req_t *r, gw_inst_row_t *row, sg_err_t *rc)
{
    char err[256] = "";
    memset(row, 0, sizeof(*row));
    if (!gw__valid_id(r->params[0])) {
        *rc = SG_ERR_NOT_FOUND;
        gw__problem(r, MHD_HTTP_NOT_FOUND, "instance-not-found", "no such instance");
        return NULL;
    }
    sg_store_t *st = gw__store_get(r->gw, err, sizeof(err));
    *rc = st == NULL ? SG_ERR_IO : sg_store_begin(st);
    if (*rc == SG_OK) {
        *rc = gw__inst_load(st, r->params[0], row);
    }
    if (*rc == SG_ERR_NOT_FOUND) {
        gw__problem(r, MHD_HTTP_NOT_FOUND, "instance-not-found", "no instance %s", r->params[0]);
    } else if (*rc != SG_OK) {
        gw__store_problem(r, *rc, st != NULL ? sg_store_errmsg(st) : err);
    }
    return st;
}

/* Sends doc (taking it) when the query succeeded, else the store's problem. */
static void reply_doc(gw_req_t *r, sg_err_t rc, cJSON *doc, sg_store_t *st)
{
    if (rc == SG_OK) {
        gw__reply_json(r, MHD_HTTP_OK, doc);
    } else {
        cJSON_Delete(doc);
        gw__store_problem(r, rc, sg_store_errmsg(st));
    }
}

void gw__h_instance_get(gw_req_t *r)
{
    gw_inst_row_t row;
    sg_err_t rc;
    sg_store_t *st = gw__open_instance(r, &row, &rc);
    if (rc == SG_OK) {
        /* NULL only if the definition vanished from the registry: steps lose their ids. */
        const sg_def_t *def = sg_driver_def(gw__driver(r->gw), row.workflow, row.version);
        cJSON *doc = gw__instance_doc(&row, def);
        attempts_ctx_t ac = {.list = doc != NULL ? cJSON_AddArrayToObject(doc, "attempts") : NULL,
                             .def = def};
        rc = ac.list != NULL ? sg_store_attempts_of(st, row.id, on_attempt, &ac) : SG_ERR_NOMEM;
        if (rc == SG_OK && ac.nomem) {
            rc = SG_ERR_NOMEM;
        }
        reply_doc(r, rc, doc, st);
    }
    gw__store_put(r->gw, st, rc == SG_ERR_IO);
    gw__inst_row_fini(&row);
}

/* ---- GET /v1/instances/{id}/history ---- */

typedef struct {
    cJSON *items;
    const sg_def_t *def;
    size_t limit, count;
    int64_t last_seq;
    bool more, nomem;
} hist_ctx_t;

static bool on_hist(void *ctx, int64_t seq, int64_t ts_ms, const char *type, int64_t step,
                    int64_t attempt, const char *detail)
{
    hist_ctx_t *h = ctx;
    if (h->count == h->limit) {
        h->more = true;
        return false;
    }
    const sg_def_t *def = h->def;
    bool known = def != NULL && step >= 0 && (uint64_t)step < def->n_steps;
    cJSON *o = cJSON_CreateObject();
    cJSON *d = gw__json_value(detail);
    bool ok = o != NULL && d != NULL && cJSON_AddNumberToObject(o, "seq", (double)seq) != NULL &&
              gw__add_time(o, "time", ts_ms) && gw__add_str(o, "type", type) &&
              (known      ? cJSON_AddStringToObject(o, "step", def->all_steps[step]->id)
               : step < 0 ? cJSON_AddNullToObject(o, "step")
                          : cJSON_AddNumberToObject(o, "step", (double)step)) != NULL &&
              cJSON_AddNumberToObject(o, "attempt", (double)attempt) != NULL &&
              cJSON_AddItemToObject(o, "detail", d);
    if (!ok) {
        cJSON_Delete(d);
        cJSON_Delete(o);
        h->nomem = true;
        return false;
    }
    cJSON_AddItemToArray(h->items, o);
    h->count++;
    h->last_seq = seq;
    return true;
}

static const gw_page_spec_t hist_spec = {
    .after = "a sequence number", .limit_default = HISTORY_MAX, .limit_max = HISTORY_MAX};

void gw__h_instance_history(gw_req_t *r)
{
    gw_page_t p;
    if (!gw__page_params(r, &hist_spec, &p)) {
        return;
    }
    gw_inst_row_t row;
    sg_err_t rc;
    sg_store_t *st = gw__open_instance(r, &row, &rc);
    if (rc == SG_OK) {
        cJSON *doc = cJSON_CreateObject();
        hist_ctx_t h = {.items = doc != NULL ? cJSON_AddArrayToObject(doc, "items") : NULL,
                        .def = sg_driver_def(gw__driver(r->gw), row.workflow, row.version),
                        .limit = p.limit};
        /* One row more than asked tells whether another page exists. */
        rc = h.items != NULL ? sg_store_hist_list(st, row.id, p.after, h.limit + 1, on_hist, &h)
                             : SG_ERR_NOMEM;
        if (rc == SG_OK &&
            (h.nomem || (h.more ? cJSON_AddNumberToObject(doc, "next_after", (double)h.last_seq)
                                : cJSON_AddNullToObject(doc, "next_after")) == NULL)) {
            rc = SG_ERR_NOMEM;
        }
        reply_doc(r, rc, doc, st);
    }
    gw__store_put(r->gw, st, rc == SG_ERR_IO);
    gw__inst_row_fini(&row);
}

/* ---- GET /v1/instances ---- */

typedef struct {
    cJSON *items;
    size_t limit, count;
    int64_t last_created;
    char last_id[32];
    bool more, nomem;
} list_ctx_t;

static bool on_list_row(void *ctx, const sg_store_inst_t *row)
{
    list_ctx_t *l = ctx;
    if (l->count == l->limit) {
        l->more = true;
        return false;
    }
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || cJSON_AddStringToObject(o, "id", row->id) == NULL ||
        !gw__add_str(o, "workflow", row->workflow) ||
        cJSON_AddNumberToObject(o, "version", (double)row->version) == NULL ||
        !gw__add_str(o, "status", row->status) ||
        !gw__add_str(o, "reason", row->reason != NULL && row->reason[0] ? row->reason : NULL) ||
        !gw__add_time(o, "created_at", row->created_ms) ||
        !gw__add_time(o, "updated_at", row->updated_ms)) {
        cJSON_Delete(o);
        l->nomem = true;
        return false;
    }
    cJSON_AddItemToArray(l->items, o);
    l->count++;
    l->last_created = row->created_ms;
    snprintf(l->last_id, sizeof(l->last_id), "%s", row->id);
    return true;
}

static bool status_ok(const char *s)
{
    sg_inst_status_t parsed;
    return sg_inst_status_parse(s, &parsed);
}

static const gw_filter_t list_filters[] = {
    {.name = "workflow", .max_len = NAME_MAX_LEN},
    {.name = "status",
     .max_len = NAME_MAX_LEN,
     .valid = status_ok,
     .must = "one of RUNNING, COMPENSATING, COMPLETED, COMPENSATED, FAILED, "
             "COMPENSATION_FAILED"},
};
static const gw_page_spec_t list_spec = {.filters = list_filters,
                                         .n_filters = SG_ARRAY_LEN(list_filters),
                                         .limit_default = LIST_DEFAULT,
                                         .limit_max = LIST_MAX,
                                         .page_token = true};

void gw__h_instance_list(gw_req_t *r)
{
    gw_page_t p;
    if (!gw__page_params(r, &list_spec, &p)) {
        return;
    }
    /* One row more than asked tells whether another page exists. */
    sg_store_inst_filter_t f = {.workflow = p.filter[0],
                                .status = p.filter[1],
                                .after_created_ms = p.cursor_created_ms,
                                .after_id = p.has_cursor ? p.cursor_id : NULL,
                                .limit = p.limit + 1};
    char err[256] = "";
    sg_store_t *st = gw__store_get(r->gw, err, sizeof(err));
    if (st == NULL) {
        gw__store_problem(r, SG_ERR_IO, err);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    list_ctx_t l = {.items = doc != NULL ? cJSON_AddArrayToObject(doc, "items") : NULL,
                    .limit = f.limit - 1};
    sg_err_t rc = l.items != NULL ? sg_store_inst_list(st, &f, on_list_row, &l) : SG_ERR_NOMEM;
    char token[96];
    if (rc == SG_OK && l.more) {
        gw__cursor_encode(l.last_created, l.last_id, token);
    }
    if (rc == SG_OK &&
        (l.nomem || (l.more ? cJSON_AddStringToObject(doc, "next_page_token", token)
                            : cJSON_AddNullToObject(doc, "next_page_token")) == NULL)) {
        rc = SG_ERR_NOMEM;
    }
    reply_doc(r, rc, doc, st);
    gw__store_put(r->gw, st, rc == SG_ERR_IO);
}
