/*
 * sagactl: the command-line tool for saga definitions and running sagas.
 * Offline commands work on files alone: validate, check, graph. Online commands talk to
 * sagad's REST API (--server, default $SAGAD_URL or http://127.0.0.1:8080): start, get,
 * history, list, cancel, retry, watch; human tables by default, `-o json` for the raw
 * answers.
 *
 * Exit codes: 0 success, 1 the input is invalid, a request failed or was refused (also
 * not found; `watch`: the saga did not complete), 2 usage error, 3 cannot reach the server.
 * It must never change a file it reads; output goes to stdout, diagnostics to stderr
 * except for `validate`, whose report is its output.
 */
#include "orchestrator/dsl/dsl.h"
#include "visualize/visualize.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { EXIT_INVALID = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3 };

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
    const char *summary;
} command_t;

static const command_t *find_command(const char *name);

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sagactl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s\n", find_command(cmd)->usage);
    return EXIT_USAGE;
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

static int print_help(const char *cmd)
{
    const command_t *c = find_command(cmd);
    printf("%s\n\n%s\n", c->usage, c->summary);
    return 0;
}

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

static int cmd_validate(int argc, char **argv)
{
    bool verify = false;
    int files = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            return print_help("validate");
        }
        if (strcmp(argv[i], "--jq-verify") == 0) {
            verify = true;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return usage_error("validate", "unknown option %s", argv[i]);
        }
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            continue;
        }
        files++;
        sg_def_t *def = load(argv[i], verify, stdout);
        if (def == NULL) {
            bad++;
        } else {
            printf("%s: ok\n", argv[i]);
        }
        sg_def_free(def);
    }
    if (files == 0) {
        return usage_error("validate", "%s", "no files given");
    }
    return bad ? EXIT_INVALID : 0;
}

static int cmd_check(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            return print_help("check");
        }
        if (argv[i][0] == '-' || path != NULL) {
            return usage_error("check", "unexpected argument %s", argv[i]);
        }
        path = argv[i];
    }
    if (path == NULL) {
        return usage_error("check", "%s", "no file given");
    }
    sg_def_t *def = load(path, false, stderr);
    if (def == NULL) {
        return EXIT_INVALID;
    }
    sg_buf_t out;
    sg_buf_init(&out);
    sg_def_failure_matrix(def, &out);
    fputs(out.data ? out.data : "", stdout);
    sg_buf_fini(&out);
    sg_def_free(def);
    return 0;
}

static int write_output(const char *path, const char *data, size_t len)
{
    FILE *f = path ? fopen(path, "wb") : stdout;
    if (f == NULL) {
        perror(path);
        return EXIT_INVALID;
    }
    size_t n = fwrite(data, 1, len, f);
    int rc = (n == len && fflush(f) == 0) ? 0 : EXIT_INVALID;
    if (path != NULL && fclose(f) != 0) {
        rc = EXIT_INVALID;
    }
    if (rc != 0) {
        perror(path ? path : "stdout");
    }
    return rc;
}

typedef struct {
    const char *path, *format, *out;
} graph_args_t;

static int parse_graph_args(int argc, char **argv, graph_args_t *a)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (is_help(arg)) {
            return -1;
        }
        if ((strcmp(arg, "--format") == 0 || strcmp(arg, "-f") == 0) && i + 1 < argc) {
            a->format = argv[++i];
        } else if (strncmp(arg, "--format=", 9) == 0) {
            a->format = arg + 9;
        } else if (strcmp(arg, "-o") == 0 && i + 1 < argc) {
            a->out = argv[++i];
        } else if (arg[0] == '-' || a->path != NULL) {
            return usage_error("graph", "unexpected argument %s", arg);
        } else {
            a->path = arg;
        }
    }
    if (a->path == NULL) {
        return usage_error("graph", "%s", "no file given");
    }
    if (strcmp(a->format, "dot") != 0 && strcmp(a->format, "svg") != 0) {
        return usage_error("graph", "unknown format %s (use dot or svg)", a->format);
    }
    return 0;
}

static int cmd_graph(int argc, char **argv)
{
    graph_args_t a = {.format = "dot"};
    int rc = parse_graph_args(argc, argv, &a);
    if (rc != 0) {
        return rc < 0 ? print_help("graph") : rc;
    }
    sg_def_t *def = load(a.path, false, stderr);
    if (def == NULL) {
        return EXIT_INVALID;
    }
    sg_buf_t dot, svg;
    sg_buf_init(&dot);
    sg_buf_init(&svg);
    sg_viz_dot(def, NULL, &dot);
    if (strcmp(a.format, "dot") == 0) {
        rc = write_output(a.out, dot.data, dot.len);
    } else {
        char err[256] = "";
        sg_err_t e = sg_viz_svg(dot.data, dot.len, &svg, err, sizeof(err));
        if (e == SG_OK) {
            rc = write_output(a.out, svg.data, svg.len);
        } else {
            fprintf(stderr, "sagactl graph: %s%s%s\n",
                    e == SG_ERR_NOT_FOUND ? "Graphviz `dot` is not installed" : sg_strerror(e),
                    err[0] ? ": " : "", err);
            rc = EXIT_INVALID;
        }
    }
    sg_buf_fini(&dot);
    sg_buf_fini(&svg);
    sg_def_free(def);
    return rc;
}

/* ---- online commands: the REST API over libcurl ---- */

typedef struct {
    const char *server;
    bool json;
    const char *arg; /* WORKFLOW or ID */
    const char *input, *idem_key;
    const char *workflow, *status, *limit, *page_token;
    const char *interval;
} online_t;

/* Which options a command accepts besides --server and -o. */
enum { TAKES_ARG = 1, TAKES_START = 2, TAKES_FILTER = 4, TAKES_INTERVAL = 8 };

/* "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i past a separate value. */
static bool take_value(int argc, char **argv, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) {
        return false;
    }
    if (argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
        return true;
    }
    if (argv[*i][n] != '\0' || *i + 1 >= argc) {
        return false;
    }
    *out = argv[++*i];
    return true;
}

/* Returns 0, -1 for --help, or EXIT_USAGE (after the message). */
static int parse_online(const char *cmd, unsigned takes, int argc, char **argv, online_t *o)
{
    const char *env = getenv("SAGAD_URL");
    const char *output = "table";
    o->server = env != NULL && env[0] ? env : "http://127.0.0.1:8080";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            return -1;
        }
        bool ok =
            take_value(argc, argv, &i, "--server", &o->server) ||
            take_value(argc, argv, &i, "-o", &output) ||
            take_value(argc, argv, &i, "--output", &output) ||
            ((takes & TAKES_START) &&
             (take_value(argc, argv, &i, "--input", &o->input) ||
              take_value(argc, argv, &i, "--idempotency-key", &o->idem_key))) ||
            ((takes & TAKES_FILTER) &&
             (take_value(argc, argv, &i, "--workflow", &o->workflow) ||
              take_value(argc, argv, &i, "--status", &o->status) ||
              take_value(argc, argv, &i, "--limit", &o->limit) ||
              take_value(argc, argv, &i, "--page-token", &o->page_token))) ||
            ((takes & TAKES_INTERVAL) && take_value(argc, argv, &i, "--interval", &o->interval));
        if (!ok && (a[0] == '-' || !(takes & TAKES_ARG) || o->arg != NULL)) {
            return usage_error(cmd, "unexpected argument %s", a);
        }
        if (!ok) {
            o->arg = a;
        }
    }
    if (strcmp(output, "json") != 0 && strcmp(output, "table") != 0) {
        return usage_error(cmd, "unknown output format %s (use table or json)", output);
    }
    o->json = strcmp(output, "json") == 0;
    if ((takes & TAKES_ARG) && o->arg == NULL) {
        return usage_error(cmd, "%s", "missing argument");
    }
    return 0;
}

typedef struct {
    long status;
    sg_buf_t body;
} http_resp_t;

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    sg_buf_append(ctx, data, size * n);
    return size * n;
}

/* Sends one request to the server; path must already be escaped. Returns 0 with resp
 * filled (any HTTP status), or EXIT_CONNECT after printing why. */
static int http(const char *cmd, const online_t *o, const char *method, const char *path,
                const char *body, http_resp_t *resp)
{
    static bool inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = true;
    }
    size_t slen = strlen(o->server);
    while (slen > 0 && o->server[slen - 1] == '/') {
        slen--;
    }
    char *url = sg_asprintf("%.*s%s", (int)slen, o->server, path);
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    char *idem = o->idem_key != NULL ? sg_asprintf("Idempotency-Key: %s", o->idem_key) : NULL;
    sg_buf_init(&resp->body);
    if (url == NULL || c == NULL || hdrs == NULL || (o->idem_key != NULL && idem == NULL)) {
        fprintf(stderr, "sagactl %s: out of memory\n", cmd);
        return EXIT_INVALID;
    }
    if (body != NULL) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    if (idem != NULL) {
        hdrs = curl_slist_append(hdrs, idem);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp->body);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    sg_free(idem);
    int rc = 0;
    if (cc != CURLE_OK) {
        fprintf(stderr, "sagactl %s: cannot reach %s: %s\n", cmd, url, curl_easy_strerror(cc));
        rc = EXIT_CONNECT;
    }
    sg_free(url);
    return rc;
}

/* A path segment or query value, percent-encoded (owned). */
static char *esc(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *copy = e != NULL ? sg_strdup(e) : NULL;
    curl_free(e);
    return copy;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "-";
}

/* A member as text for a table cell: strings as is, null as "-", others as JSON. */
static void jcell(const cJSON *o, const char *key, char *buf, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v)) {
        snprintf(buf, n, "%s", v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        snprintf(buf, n, "%.17g", v->valuedouble);
    } else if (v == NULL || cJSON_IsNull(v)) {
        snprintf(buf, n, "-");
    } else {
        char *t = cJSON_PrintUnformatted(v);
        snprintf(buf, n, "%s", t != NULL ? t : "?");
        cJSON_free(t);
    }
}

/* Prints an error answer (problem+json when it is one) and returns the exit status. */
static int report_failure(const char *cmd, const online_t *o, const http_resp_t *resp)
{
    if (o->json) {
        printf("%s\n", resp->body.data ? resp->body.data : "");
    }
    cJSON *p = cJSON_Parse(resp->body.data ? resp->body.data : "");
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(p, "detail");
    fprintf(stderr, "sagactl %s: HTTP %ld: %s\n", cmd, resp->status,
            cJSON_IsString(detail) ? detail->valuestring : "unexpected answer");
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "errors"))
    {
        fprintf(stderr, "  %s: %s\n", jstr(e, "path")[0] ? jstr(e, "path") : "(input)",
                jstr(e, "message"));
    }
    cJSON_Delete(p);
    return EXIT_INVALID;
}

/* Runs one request; on a 2xx answer *doc is the parsed body (json mode prints it). */
static int call(const char *cmd, const online_t *o, const char *method, const char *path,
                const char *body, cJSON **doc)
{
    http_resp_t resp;
    int rc = http(cmd, o, method, path, body, &resp);
    *doc = NULL;
    if (rc == 0 && (resp.status < 200 || resp.status > 299)) {
        rc = report_failure(cmd, o, &resp);
    } else if (rc == 0) {
        *doc = cJSON_Parse(resp.body.data ? resp.body.data : "");
        if (*doc == NULL) {
            fprintf(stderr, "sagactl %s: the server's answer is not JSON\n", cmd);
            rc = EXIT_INVALID;
        }
    }
    sg_buf_fini(&resp.body);
    return rc;
}

static void print_json(const cJSON *doc)
{
    char *t = cJSON_PrintUnformatted(doc);
    printf("%s\n", t != NULL ? t : "");
    cJSON_free(t);
}

/* ---- a tiny table printer: columns as wide as their widest cell ---- */

#define TABLE_MAX_COLS 7

typedef struct {
    size_t ncols, nrows, cap;
    char **cells;
} table_t;

static void table_row(table_t *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **grown = sg_realloc(t->cells, cap * t->ncols * sizeof(*grown));
        if (grown == NULL) {
            return;
        }
        t->cells = grown;
        t->cap = cap;
    }
    for (size_t c = 0; c < t->ncols; c++) {
        t->cells[t->nrows * t->ncols + c] = sg_strdup(cells[c] != NULL ? cells[c] : "-");
    }
    t->nrows++;
}

static void table_print(table_t *t)
{
    size_t w[TABLE_MAX_COLS] = {0};
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        size_t len = t->cells[i] != NULL ? strlen(t->cells[i]) : 0;
        w[i % t->ncols] = len > w[i % t->ncols] ? len : w[i % t->ncols];
    }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c + 1 < t->ncols) {
                printf("%-*s  ", (int)w[c], s != NULL ? s : "?");
            } else {
                printf("%s\n", s != NULL ? s : "?");
            }
        }
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        sg_free(t->cells[i]);
    }
    sg_free(t->cells);
}

/* ---- the commands ---- */

static char *read_input(const char *cmd, const char *spec)
{
    if (spec == NULL) {
        return sg_strdup("{}");
    }
    if (spec[0] != '@') {
        return sg_strdup(spec);
    }
    char *text = NULL;
    size_t len = 0;
    sg_err_t rc =
        sg_file_read(strcmp(spec, "@-") == 0 ? "/dev/stdin" : spec + 1, 64u << 20, &text, &len);
    if (rc != SG_OK) {
        fprintf(stderr, "sagactl %s: cannot read %s: %s\n", cmd, spec + 1, sg_strerror(rc));
    }
    return text;
}

static int cmd_start(int argc, char **argv)
{
    online_t o = {0};
    int rc = parse_online("start", TAKES_ARG | TAKES_START, argc, argv, &o);
    if (rc != 0) {
        return rc < 0 ? print_help("start") : rc;
    }
    char *input = read_input("start", o.input);
    char *name = esc(o.arg);
    char *path = name != NULL ? sg_asprintf("/v1/workflows/%s/instances", name) : NULL;
    cJSON *doc = NULL;
    rc =
        input == NULL || path == NULL ? EXIT_INVALID : call("start", &o, "POST", path, input, &doc);
    if (rc == 0 && o.json) {
        print_json(doc);
    } else if (rc == 0) {
        bool created = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "created"));
        printf("%s %s (%s)\n", created ? "started" : "already started:", jstr(doc, "id"),
               jstr(doc, "status"));
    }
    cJSON_Delete(doc);
    sg_free(input);
    sg_free(name);
    sg_free(path);
    return rc;
}

/* GET /v1/instances/ID[suffix], printing JSON in -o json mode; *doc is the answer for the
 * table printer. */
static int get_doc(const char *cmd, const online_t *o, const char *id, const char *suffix,
                   cJSON **doc)
{
    char *e = esc(id);
    char *path = e != NULL ? sg_asprintf("/v1/instances/%s%s", e, suffix) : NULL;
    int rc = path != NULL ? call(cmd, o, "GET", path, NULL, doc) : EXIT_INVALID;
    if (rc == 0 && o->json) {
        print_json(*doc);
    }
    sg_free(e);
    sg_free(path);
    return rc;
}

static void print_instance(const cJSON *doc)
{
    char cell[2][256];
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(doc, "reason");
    jcell(doc, "version", cell[0], sizeof(cell[0]));
    if (cJSON_IsString(reason)) {
        snprintf(cell[1], sizeof(cell[1]), " (%s)", reason->valuestring);
    } else {
        cell[1][0] = '\0';
    }
    printf("id:       %s\nworkflow: %s v%s\nstatus:   %s%s\ncreated:  %s\nupdated:  %s\n\n",
           jstr(doc, "id"), jstr(doc, "workflow"), cell[0], jstr(doc, "status"), cell[1],
           jstr(doc, "created_at"), jstr(doc, "updated_at"));
    table_t t = {.ncols = 6};
    table_row(&t, (const char *[]){"STEP", "KIND", "STATUS", "ATTEMPT", "COMPENSATION", "ERROR"});
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "steps"))
    {
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(s, "error");
        jcell(s, "attempt", cell[0], sizeof(cell[0]));
        snprintf(cell[1], sizeof(cell[1]), "%s%s%s", cJSON_IsObject(err) ? jstr(err, "code") : "-",
                 cJSON_IsObject(err) ? ": " : "", cJSON_IsObject(err) ? jstr(err, "message") : "");
        table_row(&t, (const char *[]){jstr(s, "id"), jstr(s, "kind"), jstr(s, "status"), cell[0],
                                       jstr(s, "compensation"), cell[1]});
    }
    table_print(&t);
}

static int cmd_get(int argc, char **argv)
{
    online_t o = {0};
    int rc = parse_online("get", TAKES_ARG, argc, argv, &o);
    if (rc != 0) {
        return rc < 0 ? print_help("get") : rc;
    }
    cJSON *doc = NULL;
    rc = get_doc("get", &o, o.arg, "", &doc);
    if (rc == 0 && !o.json) {
        print_instance(doc);
    }
    cJSON_Delete(doc);
    return rc;
}

static int cmd_history(int argc, char **argv)
{
    online_t o = {0};
    int rc = parse_online("history", TAKES_ARG, argc, argv, &o);
    if (rc != 0) {
        return rc < 0 ? print_help("history") : rc;
    }
    cJSON *doc = NULL;
    rc = get_doc("history", &o, o.arg, "/history", &doc);
    if (rc == 0 && !o.json) {
        table_t t = {.ncols = 6};
        table_row(&t, (const char *[]){"SEQ", "TIME", "TYPE", "STEP", "ATTEMPT", "DETAIL"});
        const cJSON *h;
        cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(doc, "items"))
        {
            char c[4][120];
            jcell(h, "seq", c[0], sizeof(c[0]));
            jcell(h, "step", c[1], sizeof(c[1]));
            jcell(h, "attempt", c[2], sizeof(c[2]));
            jcell(h, "detail", c[3], sizeof(c[3])); /* truncated: -o json has it all */
            table_row(&t,
                      (const char *[]){c[0], jstr(h, "time"), jstr(h, "type"), c[1], c[2], c[3]});
        }
        table_print(&t);
    }
    cJSON_Delete(doc);
    return rc;
}

static void add_query(sg_buf_t *q, const char *key, const char *value)
{
    if (value == NULL) {
        return;
    }
    char *e = esc(value);
    sg_buf_printf(q, "%s%s=%s", q->len ? "&" : "?", key, e != NULL ? e : "");
    sg_free(e);
}

static int cmd_list(int argc, char **argv)
{
    online_t o = {0};
    int rc = parse_online("list", TAKES_FILTER, argc, argv, &o);
    if (rc != 0) {
        return rc < 0 ? print_help("list") : rc;
    }
    sg_buf_t path;
    sg_buf_init(&path);
    sg_buf_puts(&path, "/v1/instances");
    sg_buf_t q;
    sg_buf_init(&q);
    add_query(&q, "workflow", o.workflow);
    add_query(&q, "status", o.status);
    add_query(&q, "limit", o.limit);
    add_query(&q, "page_token", o.page_token);
    sg_buf_puts(&path, q.data != NULL ? q.data : "");
    cJSON *doc = NULL;
    rc = path.oom || q.oom ? EXIT_INVALID : call("list", &o, "GET", path.data, NULL, &doc);
    if (rc == 0 && o.json) {
        print_json(doc);
    } else if (rc == 0) {
        table_t t = {.ncols = 5};
        table_row(&t, (const char *[]){"ID", "WORKFLOW", "VERSION", "STATUS", "CREATED"});
        const cJSON *i;
        cJSON_ArrayForEach(i, cJSON_GetObjectItemCaseSensitive(doc, "items"))
        {
            char v[32];
            jcell(i, "version", v, sizeof(v));
            table_row(&t, (const char *[]){jstr(i, "id"), jstr(i, "workflow"), v, jstr(i, "status"),
                                           jstr(i, "created_at")});
        }
        table_print(&t);
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_page_token");
        if (cJSON_IsString(next)) {
            fprintf(stderr, "more: add --page-token %s\n", next->valuestring);
        }
    }
    cJSON_Delete(doc);
    sg_buf_fini(&path);
    sg_buf_fini(&q);
    return rc;
}

static int control(const char *cmd, int argc, char **argv)
{
    online_t o = {0};
    int rc = parse_online(cmd, TAKES_ARG, argc, argv, &o);
    if (rc != 0) {
        return rc < 0 ? print_help(cmd) : rc;
    }
    char *e = esc(o.arg);
    char *path = e != NULL ? sg_asprintf("/v1/instances/%s/%s", e, cmd) : NULL;
    cJSON *doc = NULL;
    rc = path != NULL ? call(cmd, &o, "POST", path, "", &doc) : EXIT_INVALID;
    if (rc == 0 && o.json) {
        print_json(doc);
    } else if (rc == 0) {
        printf("%s: %s accepted (%s)\n", jstr(doc, "id"), cmd, jstr(doc, "status"));
    }
    cJSON_Delete(doc);
    sg_free(e);
    sg_free(path);
    return rc;
}

static int cmd_cancel(int argc, char **argv)
{
    return control("cancel", argc, argv);
}

static int cmd_retry(int argc, char **argv)
{
    return control("retry", argc, argv);
}

static bool terminal_status(const char *s)
{
    return strcmp(s, "COMPLETED") == 0 || strcmp(s, "COMPENSATED") == 0 ||
           strcmp(s, "FAILED") == 0 || strcmp(s, "COMPENSATION_FAILED") == 0;
}

/* Prints the instance status and every step whose status changed since prev. */
static void print_changes(const cJSON *prev, const cJSON *doc)
{
    if (prev == NULL || strcmp(jstr(prev, "status"), jstr(doc, "status")) != 0) {
        printf("%s  %s\n", jstr(doc, "updated_at"), jstr(doc, "status"));
    }
    const cJSON *old_steps = prev != NULL ? cJSON_GetObjectItemCaseSensitive(prev, "steps") : NULL;
    const cJSON *s;
    int i = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "steps"))
    {
        const cJSON *old = cJSON_GetArrayItem(old_steps, i++);
        bool same = old != NULL && strcmp(jstr(old, "status"), jstr(s, "status")) == 0 &&
                    strcmp(jstr(old, "compensation"), jstr(s, "compensation")) == 0;
        if (!same && (strcmp(jstr(s, "status"), "pending") != 0 || old != NULL)) {
            printf("  %s: %s%s%s\n", jstr(s, "id"), jstr(s, "status"),
                   strcmp(jstr(s, "compensation"), "none") != 0 ? ", " : "",
                   strcmp(jstr(s, "compensation"), "none") != 0 ? jstr(s, "compensation") : "");
        }
    }
    fflush(stdout);
}

static int cmd_watch(int argc, char **argv)
{
    online_t o = {0};
    int rc = parse_online("watch", TAKES_ARG | TAKES_INTERVAL, argc, argv, &o);
    if (rc != 0) {
        return rc < 0 ? print_help("watch") : rc;
    }
    char *endp = NULL;
    long interval = o.interval != NULL ? strtol(o.interval, &endp, 10) : 500;
    if (o.interval != NULL && (*endp != '\0' || interval < 10 || interval > 60000)) {
        return usage_error("watch", "--interval must be 10..60000 milliseconds");
    }
    online_t quiet = o;
    quiet.json = false; /* print only the final document in -o json mode */
    cJSON *prev = NULL, *doc = NULL;
    for (;;) {
        rc = get_doc("watch", &quiet, o.arg, "", &doc);
        if (rc != 0) {
            break;
        }
        if (!o.json) {
            print_changes(prev, doc);
        }
        cJSON_Delete(prev);
        prev = doc;
        if (terminal_status(jstr(doc, "status"))) {
            rc = strcmp(jstr(doc, "status"), "COMPLETED") == 0 ? 0 : EXIT_INVALID;
            if (o.json) {
                print_json(doc);
            }
            break;
        }
        struct timespec ts = {.tv_sec = interval / 1000, .tv_nsec = (interval % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    cJSON_Delete(prev);
    return rc;
}

static const command_t commands[] = {
    {"validate", cmd_validate, "usage: sagactl validate [--jq-verify] FILE...",
     "Checks saga definitions. Prints \"FILE: ok\" for each valid file, otherwise every\n"
     "error as FILE:LINE:COL: error: MESSAGE (with an optional hint line).\n"
     "  --jq-verify   also compile every jq expression with libjq (slower)\n"
     "Exit status: 0 all valid, 1 some invalid, 2 usage error."},
    {"check", cmd_check, "usage: sagactl check FILE",
     "Prints the failure matrix of a valid saga: for each step that can fail, the\n"
     "compensations that would run, in order. Exit status: 0 ok, 1 invalid, 2 usage."},
    {"graph", cmd_graph, "usage: sagactl graph FILE [--format dot|svg] [-o OUT]",
     "Draws the saga with Graphviz: DOT by default, SVG through the `dot` program.\n"
     "Forward path solid, compensations dashed, pivot marked, branches as clusters."},
#define ONLINE_OPTS                                                                         \
    "  --server URL   sagad's REST address (default $SAGAD_URL or http://127.0.0.1:8080)\n" \
    "  -o json        print the server's JSON answer instead of a table\n"                  \
    "Exit status: 0 ok, 1 refused or not found, 2 usage, 3 cannot reach the server."
    {"start", cmd_start,
     "usage: sagactl start WORKFLOW [--input JSON|@FILE|@-] [--idempotency-key KEY]",
     "Starts a saga of the latest version of WORKFLOW with the given input (default {}).\n"
     "A repeated start with the same idempotency key returns the first instance.\n" ONLINE_OPTS},
    {"get", cmd_get, "usage: sagactl get ID",
     "Shows an instance: status, reason, times and the state of every step.\n" ONLINE_OPTS},
    {"history", cmd_history, "usage: sagactl history ID",
     "Shows the audit trail of an instance, oldest first.\n" ONLINE_OPTS},
    {"list", cmd_list,
     "usage: sagactl list [--workflow W] [--status S] [--limit N] [--page-token T]",
     "Lists instances, oldest first, one page at a time (the next page's token goes to\n"
     "stderr).\n" ONLINE_OPTS},
    {"cancel", cmd_cancel, "usage: sagactl cancel ID",
     "Cancels a running instance: its completed steps are compensated.\n" ONLINE_OPTS},
    {"retry", cmd_retry, "usage: sagactl retry ID",
     "Retries a FAILED or COMPENSATION_FAILED instance from where it stopped.\n" ONLINE_OPTS},
    {"watch", cmd_watch, "usage: sagactl watch ID [--interval MS]",
     "Polls an instance until it finishes, printing each change of its status and steps.\n"
     "Exits 0 when it COMPLETED, 1 when it ended otherwise.\n" ONLINE_OPTS},
#undef ONLINE_OPTS
};

static const command_t *find_command(const char *name)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(commands); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: sagactl COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < SG_ARRAY_LEN(commands); i++) {
        fprintf(to, "  %-10s %s\n", commands[i].name, commands[i].usage + 15);
    }
    fprintf(to, "\nRun `sagactl COMMAND --help` for details.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    const command_t *c = find_command(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "sagactl: unknown command \"%s\"\n", argv[1]);
        usage(stderr);
        return EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
