/*
 * gateway graph: the definitions tooling of the REST API - a definition drawn as a
 * graph, an instance's graph coloured by its progress (visualize/), and the check of a
 * YAML definition sent in a request with the same loader and messages as
 * `sagactl validate`.
 *
 * It must never register what it checks (validation only reports), never feed Graphviz
 * anything but DOT made by sg_viz_dot (Graphviz reads files named in attributes), and
 * never hold a store handle while `dot` runs.
 */
#include "gateway/gateway_int.h"
#include "visualize/visualize.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

#define CTYPE_DOT "text/vnd.graphviz"
#define CTYPE_SVG "image/svg+xml"
#define REQUEST_NAME "<request>"

/* ---- GET /v1/workflows/{name}/graph, GET /v1/instances/{id}/graph ---- */

/* ?format=dot|svg into *svg; answers 400 and returns false for anything else. */
static bool format_arg(gw_req_t *r, bool *svg)
{
    const char *f = gw__query(r, "format");
    *svg = f != NULL && strcmp(f, "svg") == 0;
    if (f != NULL && !*svg && strcmp(f, "dot") != 0) {
        gw__problem(r, MHD_HTTP_BAD_REQUEST, "bad-parameter", "format must be dot or svg");
        return false;
    }
    return true;
}

/* Draws def (with live, may be NULL) and sends it as DOT or SVG. */
static void reply_graph(gw_req_t *r, const sg_def_t *def, const sg_viz_step_t *live, bool svg)
{
    sg_buf_t dot, out;
    sg_buf_init(&dot);
    sg_buf_init(&out);
    sg_viz_dot(def, live, &dot);
    char err[256] = "";
    sg_err_t rc = dot.oom ? SG_ERR_NOMEM : SG_OK;
    if (rc == SG_OK && svg) {
        rc = sg_viz_svg(dot.data, dot.len, &out, err, sizeof(err));
        rc = rc == SG_OK && out.oom ? SG_ERR_NOMEM : rc;
    }
    if (rc == SG_OK) {
        const sg_buf_t *b = svg ? &out : &dot;
        gw__reply_text(r, MHD_HTTP_OK, svg ? CTYPE_SVG : CTYPE_DOT, b->data ? b->data : "", b->len);
    } else if (rc == SG_ERR_NOMEM) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
    } else {
        /* Not the request's fault: Graphviz is missing, too slow or broken here. */
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "graph-unavailable",
                    "the SVG could not be rendered: %s",
                    rc == SG_ERR_NOT_FOUND ? "Graphviz (dot) is not installed"
                                           : (err[0] ? err : sg_strerror(rc)));
    }
    sg_buf_fini(&dot);
    sg_buf_fini(&out);
}

void gw__h_workflow_graph(gw_req_t *r)
{
    int64_t version;
    bool svg;
    const sg_def_t *def = NULL;
    if (format_arg(r, &svg) && gw__version_arg(r, &version)) {
        def = gw__find_def(r, version);
    }
    if (def != NULL) {
        reply_graph(r, def, NULL, svg);
    }
}

/* The live state of the instance in row, into live (def->n_steps entries). Answers and
 * returns false when the stored state does not fit its definition. */
static bool live_state(gw_req_t *r, const sg_def_t *def, const gw_inst_row_t *row,
                       sg_viz_step_t *live)
{
    char err[256] = "";
    sg_inst_t *inst = NULL;
    sg_err_t rc = sg_inst_restore(def, row->id, row->input, row->state, &inst, err, sizeof(err));
    if (rc == SG_OK) {
        sg_viz_live(inst, live);
    } else if (rc == SG_ERR_NOMEM) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
    } else {
        gw__problem(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "corrupt-instance",
                    "instance %s cannot be loaded from the database: %s", row->id, err);
    }
    sg_inst_free(inst);
    return rc == SG_OK;
}

void gw__h_instance_graph(gw_req_t *r)
{
    bool svg;
    if (!format_arg(r, &svg)) {
        return;
    }
    gw_inst_row_t row;
    sg_err_t rc;
    sg_store_t *st = gw__open_instance(r, &row, &rc);
    /* The row is copied out: give the handle back before dot runs (up to 10 s). */
    gw__store_put(r->gw, st, rc == SG_ERR_IO);
    if (rc == SG_OK) {
        const sg_def_t *def = sg_driver_def(gw__driver(r->gw), row.workflow, row.version);
        sg_viz_step_t *live =
            def != NULL ? sg_calloc(def->n_steps > 0 ? def->n_steps : 1, sizeof(*live)) : NULL;
        if (def == NULL) {
            gw__problem(r, MHD_HTTP_NOT_FOUND, "workflow-not-found",
                        "the definition %.128s version %lld of instance %s is not loaded",
                        row.workflow, (long long)row.version, row.id);
        } else if (live == NULL) {
            gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
        } else if (live_state(r, def, &row, live)) {
            reply_graph(r, def, live, svg);
        }
        sg_free(live);
    }
    gw__inst_row_fini(&row);
}

/* ---- POST /v1/workflows/validate ---- */

/* One diagnostic as {line, col, message, hint, text}; text is the line sagactl prints. */
static cJSON *diag_doc(const sg_diag_t *d)
{
    /* The formatter of sagactl itself, fed this one diagnostic, so the two cannot drift. */
    sg_diags_t one = {.items = (sg_diag_t *)d, .count = 1, .cap = 1};
    sg_buf_t text;
    sg_buf_init(&text);
    sg_diags_format(&one, REQUEST_NAME, &text);
    char *nl = text.data != NULL ? strchr(text.data, '\n') : NULL;
    if (nl != NULL) {
        *nl = '\0';
    }
    cJSON *o = cJSON_CreateObject();
    bool known = d->pos.line > 0;
    bool ok = o != NULL && !text.oom && text.data != NULL &&
              (known ? cJSON_AddNumberToObject(o, "line", d->pos.line)
                     : cJSON_AddNullToObject(o, "line")) != NULL &&
              (known && d->pos.col > 0 ? cJSON_AddNumberToObject(o, "col", d->pos.col)
                                       : cJSON_AddNullToObject(o, "col")) != NULL &&
              gw__add_str(o, "message", d->message) && gw__add_str(o, "hint", d->hint) &&
              cJSON_AddStringToObject(o, "text", text.data) != NULL;
    sg_buf_fini(&text);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *validation_doc(const sg_def_t *def, const sg_diags_t *diags)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *errors = doc != NULL ? cJSON_CreateArray() : NULL;
    bool ok = errors != NULL && cJSON_AddBoolToObject(doc, "valid", def != NULL) != NULL &&
              gw__add_str(doc, "workflow", def != NULL ? def->name : NULL) &&
              (def != NULL ? cJSON_AddNumberToObject(doc, "version", (double)def->version)
                           : cJSON_AddNullToObject(doc, "version")) != NULL &&
              cJSON_AddItemToObject(doc, "errors", errors);
    if (!ok) {
        cJSON_Delete(errors);
    }
    for (size_t i = 0; ok && def == NULL && i < diags->count; i++) {
        cJSON *e = diag_doc(&diags->items[i]);
        ok = e != NULL && cJSON_AddItemToArray(errors, e);
    }
    ok = ok && cJSON_AddNumberToObject(doc, "errors_omitted",
                                       def == NULL ? (double)diags->dropped : 0) != NULL;
    if (!ok) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

void gw__h_validate(gw_req_t *r)
{
    /* sagactl validate without --jq-verify: libjq's compiler costs ~13 ms an expression
     * and keeps global state; the built-in checker finds the same errors. */
    sg_dsl_opts_t opts = {.verify_jq = false};
    sg_diags_t diags;
    sg_diags_init(&diags, SG_DIAGS_DEFAULT_CAP);
    sg_def_t *def = NULL;
    sg_err_t rc = sg_def_load(REQUEST_NAME, r->body, r->body_len, &opts, &def, &diags);
    if (rc == SG_ERR_NOMEM) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
    } else {
        gw__reply_json(r, MHD_HTTP_OK, validation_doc(rc == SG_OK ? def : NULL, &diags));
    }
    sg_def_free(def);
    sg_diags_fini(&diags);
}
