/*
 * sagactl offline commands and graph: validate and check work on definition files
 * alone; graph draws a file here, or asks sagad to draw a registered workflow or a
 * running instance (coloured by its progress).
 *
 * It must never change a file it reads, and never write a partial output file without
 * saying so.
 */
#include "cli/sagactl.h"
#include "orchestrator/dsl/dsl.h"
#include "visualize/visualize.h"

#include <errno.h>
#include <string.h>

/* Loads one file; prints its diagnostics to `to`. Returns NULL when invalid. */
static sg_def_t *load(const char *path, bool verify_jq, FILE *to)
{
    sg_dsl_opts_t opts = {.verify_jq = verify_jq};
    sg_diags_t diags;
    sg_diags_init(&diags, SG_DIAGS_DEFAULT_CAP);
    sg_def_t *def = NULL;
    sg_err_t rc = sg_def_load_file(path, &opts, &def, &diags);
    if (rc == SG_ERR_NOMEM) {
        fprintf(to, "%s: error: out of memory\n", path);
    } else if (rc != SG_OK) {
        sg_buf_t out;
        sg_buf_init(&out);
        sg_diags_format(&diags, path, &out);
        fputs(out.data ? out.data : "", to);
        sg_buf_fini(&out);
    }
    sg_diags_fini(&diags);
    return def;
}

int cli__cmd_validate(cli_ctx_t *c)
{
    bool verify = cli__opt(c, "--jq-verify") != NULL;
    int bad = 0;
    for (int i = 0; i < c->n_pos; i++) {
        sg_def_t *def = load(c->pos[i], verify, stdout);
        if (def == NULL) {
            bad++;
        } else {
            printf("%s: ok\n", c->pos[i]);
        }
        sg_def_free(def);
    }
    return bad ? CLI_FAILED : CLI_OK;
}

int cli__cmd_check(cli_ctx_t *c)
{
    sg_def_t *def = load(c->pos[0], false, stderr);
    if (def == NULL) {
        return CLI_FAILED;
    }
    sg_buf_t out;
    sg_buf_init(&out);
    sg_def_failure_matrix(def, &out);
    fputs(out.data ? out.data : "", stdout);
    sg_buf_fini(&out);
    sg_def_free(def);
    return CLI_OK;
}

static int write_output(cli_ctx_t *c, const char *path, const char *data, size_t len)
{
    FILE *f = path ? fopen(path, "wb") : stdout;
    if (f == NULL) {
        cli__err(c, "cannot write %s: %s", path, strerror(errno));
        return CLI_FAILED;
    }
    size_t n = fwrite(data, 1, len, f);
    int rc = (n == len && fflush(f) == 0) ? CLI_OK : CLI_FAILED;
    if (path != NULL && fclose(f) != 0) {
        rc = CLI_FAILED;
    }
    if (rc != CLI_OK) {
        cli__err(c, "cannot write %s: %s", path ? path : "the output", strerror(errno));
    }
    return rc;
}

static int graph_file(cli_ctx_t *c, const char *path, const char *format, const char *out)
{
    sg_def_t *def = load(path, false, stderr);
    if (def == NULL) {
        return CLI_FAILED;
    }
    sg_buf_t dot, svg;
    sg_buf_init(&dot);
    sg_buf_init(&svg);
    sg_viz_dot(def, NULL, &dot);
    int rc;
    if (strcmp(format, "dot") == 0) {
        rc = write_output(c, out, dot.data, dot.len);
    } else {
        char err[256] = "";
        sg_err_t e = sg_viz_svg(dot.data, dot.len, &svg, err, sizeof(err));
        if (e == SG_OK) {
            rc = write_output(c, out, svg.data, svg.len);
        } else {
            cli__err(c, "%s%s%s",
                     e == SG_ERR_NOT_FOUND ? "Graphviz `dot` is not installed" : sg_strerror(e),
                     err[0] ? ": " : "", err);
            rc = CLI_FAILED;
        }
    }
    sg_buf_fini(&dot);
    sg_buf_fini(&svg);
    sg_def_free(def);
    return rc;
}

/* GET .../graph?format=F from sagad, written as it came. */
static int graph_online(cli_ctx_t *c, const char *format, const char *out)
{
    const char *inst = cli__opt(c, "--instance"), *wf = cli__opt(c, "--workflow");
    char *e = cli__esc(inst != NULL ? inst : wf);
    sg_buf_t path;
    sg_buf_init(&path);
    sg_buf_printf(&path, "/v1/%s/%s/graph", inst != NULL ? "instances" : "workflows",
                  e != NULL ? e : "");
    cli__query(&path, "format", format);
    cli__query(&path, "version", cli__opt(c, "--version"));
    int rc = CLI_FAILED;
    cli_resp_t resp;
    if (e == NULL || path.oom) {
        cli__err(c, "out of memory");
    } else if ((rc = cli__request(c, "GET", path.data, NULL, NULL, &resp)) == CLI_OK) {
        if (resp.status < 200 || resp.status > 299) {
            rc = cli__report(c, &resp);
        } else {
            rc = write_output(c, out, resp.body.data ? resp.body.data : "", resp.body.len);
        }
        cli__resp_fini(&resp);
    }
    sg_free(e);
    sg_buf_fini(&path);
    return rc;
}

int cli__cmd_graph(cli_ctx_t *c)
{
    const char *format = cli__opt(c, "--format"), *out = cli__opt(c, "--output");
    bool inst = cli__opt(c, "--instance") != NULL, wf = cli__opt(c, "--workflow") != NULL;
    long version = 0;
    format = format != NULL ? format : "dot";
    if ((c->n_pos > 0) + inst + wf != 1) {
        return cli__usage_error(c, "%s", "give one of FILE, --instance ID or --workflow NAME");
    }
    if (strcmp(format, "dot") != 0 && strcmp(format, "svg") != 0) {
        return cli__usage_error(c, "unknown format \"%s\" (use dot or svg)", format);
    }
    if (cli__opt(c, "--version") != NULL && !wf) {
        return cli__usage_error(c, "%s", "--version goes with --workflow");
    }
    if (!cli__opt_long(c, "--version", 1, 1L << 30, &version)) {
        return CLI_USAGE;
    }
    return c->n_pos > 0 ? graph_file(c, c->pos[0], format, out) : graph_online(c, format, out);
}
