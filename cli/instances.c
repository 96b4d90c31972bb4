/*
 * sagactl instance commands: start, get, list, history, cancel, retry, watch, and the
 * registered workflows. Each sends one request (watch polls) and shows the answer as a
 * table, or as the server sent it with -o json.
 *
 * It must never decide an outcome the server did not report: watch ends only on a
 * terminal status read from the server, and its exit status follows that status.
 */
#include "cli/sagactl.h"

#include <string.h>
#include <time.h>

#define DETAIL_MAX 70
#define ERROR_MAX 80
#define PROGRESS_MAX 120

char *cli__read_input(cli_ctx_t *c, const char *spec)
{
    if (spec == NULL) {
        return sg_strdup("{}");
    }
    if (spec[0] != '@') {
        return sg_strdup(spec);
    }
    char *text = NULL;
    size_t len = 0;
    const char *path = strcmp(spec, "@-") == 0 ? "/dev/stdin" : spec + 1;
    sg_err_t rc = sg_file_read(path, 64u << 20, &text, &len);
    if (rc != SG_OK) {
        cli__err(c, "cannot read %s: %s", strcmp(spec, "@-") == 0 ? "stdin" : spec + 1,
                 sg_strerror(rc));
    }
    return text;
}

/* "/v1/instances/ID" + suffix, ID encoded (sg_free); NULL on OOM. */
static char *inst_path(const char *id, const char *suffix)
{
    char *e = cli__esc(id);
    char *path = e != NULL ? sg_asprintf("/v1/instances/%s%s", e, suffix) : NULL;
    sg_free(e);
    return path;
}

/* ---- start ---- */

int cli__cmd_start(cli_ctx_t *c)
{
    long version = 0, interval = 500;
    bool watch = cli__opt(c, "--watch") != NULL;
    if (!cli__opt_long(c, "--version", 1, 1L << 30, &version)) {
        return CLI_USAGE;
    }
    char *input = cli__read_input(c, cli__opt(c, "--input"));
    char *name = cli__esc(c->pos[0]);
    char *path = name != NULL ? sg_asprintf("/v1/workflows/%s/instances", name) : NULL;
    if (path != NULL && version > 0) {
        char *v = sg_asprintf("%s?version=%ld", path, version);
        sg_free(path);
        path = v;
    }
    cJSON *doc = NULL;
    int rc = CLI_FAILED;
    if (input != NULL && path == NULL) {
        cli__err(c, "out of memory");
    } else if (input != NULL && watch && c->json) {
        /* one JSON document on stdout: the final instance */
        rc = cli__call(c, "POST", path, input, cli__opt(c, "--idempotency-key"), &doc, NULL);
    } else if (input != NULL) {
        rc = cli__call_print(c, "POST", path, input, cli__opt(c, "--idempotency-key"), &doc);
    }
    if (rc == CLI_OK && !c->json) {
        bool created = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "created"));
        char v[32];
        cli__jcell(doc, "version", v, sizeof(v), 0);
        printf("%s %s (%s v%s, %s)\n",
               created ? "started" : "already started:", cli__jstr(doc, "id"),
               cli__jstr(doc, "workflow"), v, cli__jstr(doc, "status"));
        fflush(stdout);
    }
    if (rc == CLI_OK && watch) {
        rc = cli__watch(c, cli__jstr(doc, "id"), interval);
    }
    cJSON_Delete(doc);
    sg_free(input);
    sg_free(name);
    sg_free(path);
    return rc;
}

/* ---- get ---- */

static void print_header(const cJSON *doc)
{
    char version[32], created[40], updated[40], deadline[40], status[160], took[32] = "";
    cli__jcell(doc, "version", version, sizeof(version), 0);
    cli__jtime(doc, "created_at", true, created);
    cli__jtime(doc, "updated_at", true, updated);
    cli__jtime(doc, "deadline_at", false, deadline);
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(doc, "reason");
    snprintf(status, sizeof(status), "%s%s%s%s", cli__jstr(doc, "status"),
             cJSON_IsString(reason) ? " (" : "", cJSON_IsString(reason) ? reason->valuestring : "",
             cJSON_IsString(reason) ? ")" : "");
    char workflow[160];
    snprintf(workflow, sizeof(workflow), "%s v%s", cli__jstr(doc, "workflow"), version);
    const char *st = cli__jstr(doc, "status");
    bool ended = strcmp(st, "RUNNING") != 0 && strcmp(st, "COMPENSATING") != 0;
    if (ended) {
        cli__duration(cli__jtime_ms(doc, "updated_at") - cli__jtime_ms(doc, "created_at"), took,
                      sizeof(took));
    }
    char input[256];
    cli__jcell(doc, "input", input, sizeof(input), 120);
    const char *keys[] = {"id",      "workflow", "status", "created",
                          "updated", "deadline", "took",   "input"};
    const char *vals[] = {
        cli__jstr(doc, "id"), workflow, status, created, updated, deadline, took, input};
    cli__kv(keys, vals, SG_ARRAY_LEN(keys));
}

static void error_text(const cJSON *o, char *buf, size_t n)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (!cJSON_IsObject(err)) {
        snprintf(buf, n, "-");
        return;
    }
    snprintf(buf, n, "%s: %s", cli__jstr(err, "code"), cli__jstr(err, "message"));
    for (char *p = buf; *p; p++) {
        *p = *p == '\n' ? ' ' : *p;
    }
    if (strlen(buf) > ERROR_MAX) {
        memcpy(buf + ERROR_MAX - 3, "...", 4);
    }
}

static void took(const cJSON *o, char *buf, size_t n)
{
    long long t0 = cli__jtime_ms(o, "started_at"), t1 = cli__jtime_ms(o, "finished_at");
    cli__duration(t0 >= 0 && t1 >= 0 ? t1 - t0 : -1, buf, n);
}

void cli__print_steps(const cJSON *doc)
{
    cli_table_t t;
    cli__table_init(
        &t, 7,
        (const char *[]){"STEP", "KIND", "STATUS", "ATTEMPT", "COMPENSATION", "TOOK", "ERROR"});
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "steps"))
    {
        char attempt[32], dur[32], err[ERROR_MAX + 8];
        cli__jcell(s, "attempt", attempt, sizeof(attempt), 0);
        took(s, dur, sizeof(dur));
        error_text(s, err, sizeof(err));
        cli__table_row(&t, (const char *[]){cli__jstr(s, "id"), cli__jstr(s, "kind"),
                                            cli__jstr(s, "status"), attempt,
                                            cli__jstr(s, "compensation"), dur, err});
    }
    cli__table_print(&t, stdout);
}

static void print_attempts(const cJSON *doc)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "attempts");
    if (cJSON_GetArraySize(list) == 0) {
        return;
    }
    printf("\n");
    cli_table_t t;
    cli__table_init(
        &t, 7,
        (const char *[]){"ATTEMPT", "STEP", "ACTIVITY", "STATUS", "STARTED", "TOOK", "ERROR"});
    const cJSON *a;
    cJSON_ArrayForEach(a, list)
    {
        char n[32], step[80], started[40], dur[32], err[ERROR_MAX + 8];
        cli__jcell(a, "attempt", n, sizeof(n), 0);
        cli__jcell(a, "step", step, sizeof(step), 0);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "compensation"))) {
            size_t len = strlen(step);
            snprintf(step + len, sizeof(step) - len, " (undo)");
        }
        cli__jtime(a, "started_at", true, started);
        took(a, dur, sizeof(dur));
        error_text(a, err, sizeof(err));
        cli__table_row(&t, (const char *[]){n, step, cli__jstr(a, "activity"),
                                            cli__jstr(a, "status"), started, dur, err});
    }
    cli__table_print(&t, stdout);
}

/* For each running attempt that heartbeated: when the last heartbeat came (by this
 * machine's clock, never negative), from which worker, and the handler's progress. */
static void print_heartbeats(const cJSON *doc)
{
    long long now = (long long)sg_now_ms();
    bool first = true;
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(doc, "attempts"))
    {
        const cJSON *hb = cJSON_GetObjectItemCaseSensitive(a, "heartbeat_ms");
        if (strcmp(cli__jstr(a, "status"), "running") != 0 || !cJSON_IsNumber(hb)) {
            continue;
        }
        long long ago = now - (long long)hb->valuedouble;
        char n[32], step[80], progress[160] = "";
        cli__jcell(a, "attempt", n, sizeof(n), 0);
        cli__jcell(a, "step", step, sizeof(step), 0);
        const char *worker = cli__jstr(a, "worker");
        if (cJSON_GetObjectItemCaseSensitive(a, "progress") != NULL) {
            snprintf(progress, sizeof(progress), "; progress ");
            cli__jcell(a, "progress", progress + strlen(progress),
                       sizeof(progress) - strlen(progress), PROGRESS_MAX);
        }
        if (first) {
            printf("\n");
            first = false;
        }
        printf("%s%s attempt %s: last heartbeat %llds ago%s%s%s\n", step,
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "compensation")) ? " (undo)" : "",
               n, ago > 0 ? ago / 1000 : 0, strcmp(worker, "-") != 0 ? " from " : "",
               strcmp(worker, "-") != 0 ? worker : "", progress);
    }
}

int cli__cmd_get(cli_ctx_t *c)
{
    char *path = inst_path(c->pos[0], "");
    cJSON *doc = NULL;
    int rc = path != NULL ? cli__call_print(c, "GET", path, NULL, NULL, &doc) : CLI_FAILED;
    if (rc == CLI_OK && !c->json) {
        print_header(doc);
        printf("\n");
        cli__print_steps(doc);
        print_attempts(doc);
        print_heartbeats(doc);
    }
    cJSON_Delete(doc);
    sg_free(path);
    return rc;
}

/* ---- history and list ---- */

int cli__cmd_history(cli_ctx_t *c)
{
    long after = -1, limit = 0;
    if (!cli__opt_long(c, "--after", 0, 1L << 62, &after) ||
        !cli__opt_long(c, "--limit", 1, 1000, &limit)) {
        return CLI_USAGE;
    }
    char *base = inst_path(c->pos[0], "/history");
    sg_buf_t path;
    sg_buf_init(&path);
    sg_buf_puts(&path, base != NULL ? base : "");
    cli__query(&path, "after", cli__opt(c, "--after"));
    cli__query(&path, "limit", cli__opt(c, "--limit"));
    cJSON *doc = NULL;
    int rc = base != NULL && !path.oom ? cli__call_print(c, "GET", path.data, NULL, NULL, &doc)
                                       : CLI_FAILED;
    if (rc == CLI_OK && !c->json) {
        cli_table_t t;
        cli__table_init(&t, 6,
                        (const char *[]){"SEQ", "TIME", "TYPE", "STEP", "ATTEMPT", "DETAIL"});
        const cJSON *h;
        cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(doc, "items"))
        {
            char seq[32], time[40], step[80], attempt[32], detail[512];
            cli__jcell(h, "seq", seq, sizeof(seq), 0);
            cli__jtime(h, "time", true, time);
            cli__jcell(h, "step", step, sizeof(step), 0);
            cli__jcell(h, "attempt", attempt, sizeof(attempt), 0);
            cli__jcell(h, "detail", detail, sizeof(detail), DETAIL_MAX);
            cli__table_row(
                &t, (const char *[]){seq, time, cli__jstr(h, "type"), step, attempt, detail});
        }
        cli__table_print(&t, stdout);
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_after");
        if (cJSON_IsNumber(next)) {
            fprintf(stderr, "more: add --after %.0f\n", next->valuedouble);
        }
    }
    cJSON_Delete(doc);
    sg_free(base);
    sg_buf_fini(&path);
    return rc;
}

int cli__cmd_list(cli_ctx_t *c)
{
    long limit = 0;
    if (!cli__opt_long(c, "--limit", 1, 500, &limit)) {
        return CLI_USAGE;
    }
    sg_buf_t path;
    sg_buf_init(&path);
    sg_buf_puts(&path, "/v1/instances");
    cli__query(&path, "workflow", cli__opt(c, "--workflow"));
    cli__query(&path, "status", cli__opt(c, "--status"));
    cli__query(&path, "limit", cli__opt(c, "--limit"));
    cli__query(&path, "page_token", cli__opt(c, "--page-token"));
    cJSON *doc = NULL;
    int rc = path.oom ? CLI_FAILED : cli__call_print(c, "GET", path.data, NULL, NULL, &doc);
    if (rc == CLI_OK && !c->json) {
        cli_table_t t;
        cli__table_init(
            &t, 6, (const char *[]){"ID", "WORKFLOW", "VERSION", "STATUS", "CREATED", "UPDATED"});
        const cJSON *i;
        cJSON_ArrayForEach(i, cJSON_GetObjectItemCaseSensitive(doc, "items"))
        {
            char v[32], created[40], updated[40];
            cli__jcell(i, "version", v, sizeof(v), 0);
            cli__jtime(i, "created_at", false, created);
            cli__jtime(i, "updated_at", false, updated);
            cli__table_row(&t, (const char *[]){cli__jstr(i, "id"), cli__jstr(i, "workflow"), v,
                                                cli__jstr(i, "status"), created, updated});
        }
        cli__table_print(&t, stdout);
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next_page_token");
        if (cJSON_IsString(next)) {
            fprintf(stderr, "more: add --page-token %s\n", next->valuestring);
        }
    }
    cJSON_Delete(doc);
    sg_buf_fini(&path);
    return rc;
}

/* ---- cancel and retry ---- */

static int control(cli_ctx_t *c, const char *verb)
{
    char *suffix = sg_asprintf("/%s", verb);
    char *path = suffix != NULL ? inst_path(c->pos[0], suffix) : NULL;
    cJSON *doc = NULL;
    int rc = path != NULL ? cli__call_print(c, "POST", path, "", NULL, &doc) : CLI_FAILED;
    if (rc == CLI_OK && !c->json) {
        printf("%s of %s accepted: %s\n", verb, cli__jstr(doc, "id"), cli__jstr(doc, "status"));
    }
    cJSON_Delete(doc);
    sg_free(suffix);
    sg_free(path);
    return rc;
}

int cli__cmd_cancel(cli_ctx_t *c)
{
    return control(c, "cancel");
}

int cli__cmd_retry(cli_ctx_t *c)
{
    return control(c, "retry");
}

/* ---- watch ---- */

static bool terminal_status(const char *s)
{
    return strcmp(s, "COMPLETED") == 0 || strcmp(s, "COMPENSATED") == 0 ||
           strcmp(s, "FAILED") == 0 || strcmp(s, "COMPENSATION_FAILED") == 0;
}

static bool same_step(const cJSON *a, const cJSON *b)
{
    static const char *const keys[] = {"status", "compensation"};
    for (size_t i = 0; i < SG_ARRAY_LEN(keys); i++) {
        if (strcmp(cli__jstr(a, keys[i]), cli__jstr(b, keys[i])) != 0) {
            return false;
        }
    }
    char x[32], y[32];
    cli__jcell(a, "attempt", x, sizeof(x), 0);
    cli__jcell(b, "attempt", y, sizeof(y), 0);
    return strcmp(x, y) == 0;
}

/* Prints the instance status and every step that changed since prev (NULL at first). */
static void print_changes(const cJSON *prev, const cJSON *doc)
{
    char when[40];
    cli__jtime(doc, "updated_at", true, when);
    if (prev == NULL || strcmp(cli__jstr(prev, "status"), cli__jstr(doc, "status")) != 0) {
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(doc, "reason");
        printf("%s  %s %s%s%s\n", when, cli__jstr(doc, "id"), cli__jstr(doc, "status"),
               cJSON_IsString(reason) ? ": " : "",
               cJSON_IsString(reason) ? reason->valuestring : "");
    }
    const cJSON *old_steps = prev != NULL ? cJSON_GetObjectItemCaseSensitive(prev, "steps") : NULL;
    const cJSON *s;
    int i = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "steps"))
    {
        const cJSON *old = cJSON_GetArrayItem(old_steps, i++);
        if ((old != NULL && same_step(old, s)) ||
            (old == NULL && strcmp(cli__jstr(s, "status"), "pending") == 0)) {
            continue;
        }
        char attempt[32], err[ERROR_MAX + 8];
        cli__jcell(s, "attempt", attempt, sizeof(attempt), 0);
        error_text(s, err, sizeof(err));
        const char *comp = cli__jstr(s, "compensation");
        bool has_comp = strcmp(comp, "none") != 0 && strcmp(comp, "-") != 0;
        bool retried =
            strcmp(attempt, "-") != 0 && strcmp(attempt, "0") != 0 && strcmp(attempt, "1") != 0;
        printf("%s    %s: %s%s%s%s%s%s\n", when, cli__jstr(s, "id"), cli__jstr(s, "status"),
               retried ? " (attempt " : "", retried ? attempt : "", retried ? ")" : "",
               has_comp ? ", compensation " : "", has_comp ? comp : "");
        const cJSON *old_err = cJSON_GetObjectItemCaseSensitive(old, "error");
        if (strcmp(err, "-") != 0 && !cJSON_IsObject(old_err)) {
            printf("%s      error %s\n", when, err);
        }
    }
    fflush(stdout);
}

int cli__watch(cli_ctx_t *c, const char *id, long interval_ms)
{
    char *path = inst_path(id, "");
    if (path == NULL) {
        cli__err(c, "out of memory");
        return CLI_FAILED;
    }
    cJSON *prev = NULL, *doc = NULL;
    char *raw = NULL;
    int rc;
    for (;;) {
        sg_free(raw);
        raw = NULL;
        rc = cli__call(c, "GET", path, NULL, NULL, &doc, c->json ? &raw : NULL);
        if (rc != CLI_OK) {
            break;
        }
        if (!c->json) {
            print_changes(prev, doc);
        }
        cJSON_Delete(prev);
        prev = doc;
        const char *status = cli__jstr(doc, "status");
        if (terminal_status(status)) {
            rc = strcmp(status, "COMPLETED") == 0 ? CLI_OK : CLI_FAILED;
            if (raw != NULL) {
                printf("%s\n", raw);
            }
            break;
        }
        struct timespec ts = {.tv_sec = interval_ms / 1000,
                              .tv_nsec = (interval_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    cJSON_Delete(prev);
    sg_free(raw);
    sg_free(path);
    return rc;
}

int cli__cmd_watch(cli_ctx_t *c)
{
    long interval = 500;
    if (!cli__opt_long(c, "--interval", 10, 60000, &interval)) {
        return CLI_USAGE;
    }
    return cli__watch(c, c->pos[0], interval);
}

/* ---- workflows ---- */

static void print_workflow(const cJSON *doc)
{
    char version[32], timeout[32];
    cli__jcell(doc, "version", version, sizeof(version), 0);
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(doc, "timeout_ms");
    if (cJSON_IsNumber(tm) && tm->valuedouble > 0) {
        sg_duration_format((uint64_t)tm->valuedouble, timeout, sizeof(timeout));
    } else {
        snprintf(timeout, sizeof(timeout), "-");
    }
    const char *keys[] = {"name", "version", "description", "timeout", "sha256"};
    const char *vals[] = {cli__jstr(doc, "name"), version, cli__jstr(doc, "description"), timeout,
                          cli__jstr(doc, "sha256")};
    cli__kv(keys, vals, SG_ARRAY_LEN(keys));
    printf("\n");
    cli_table_t t;
    cli__table_init(&t, 6,
                    (const char *[]){"STEP", "KIND", "CLASS", "ACTIVITY", "COMPENSATION", "GROUP"});
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "steps"))
    {
        cli__table_row(&t, (const char *[]){cli__jstr(s, "id"), cli__jstr(s, "kind"),
                                            cli__jstr(s, "class"), cli__jstr(s, "activity"),
                                            cli__jstr(s, "compensation"), cli__jstr(s, "group")});
    }
    cli__table_print(&t, stdout);
}

int cli__cmd_workflows(cli_ctx_t *c)
{
    long version = 0;
    if (!cli__opt_long(c, "--version", 1, 1L << 30, &version)) {
        return CLI_USAGE;
    }
    if (version > 0 && c->n_pos == 0) {
        return cli__usage_error(c, "%s", "--version goes with a workflow NAME");
    }
    char *name = c->n_pos > 0 ? cli__esc(c->pos[0]) : NULL;
    sg_buf_t path;
    sg_buf_init(&path);
    sg_buf_printf(&path, "/v1/workflows%s%s", name ? "/" : "", name ? name : "");
    cli__query(&path, "version", cli__opt(c, "--version"));
    cJSON *doc = NULL;
    int rc = path.oom || (c->n_pos > 0 && name == NULL)
                 ? CLI_FAILED
                 : cli__call_print(c, "GET", path.data, NULL, NULL, &doc);
    if (rc == CLI_OK && !c->json && name != NULL) {
        print_workflow(doc);
    } else if (rc == CLI_OK && !c->json) {
        cli_table_t t;
        cli__table_init(&t, 5,
                        (const char *[]){"NAME", "VERSION", "STEPS", "SHA256", "DESCRIPTION"});
        const cJSON *w;
        cJSON_ArrayForEach(w, doc)
        {
            char v[32], n[32], sha[16], desc[128];
            cli__jcell(w, "version", v, sizeof(v), 0);
            cli__jcell(w, "steps", n, sizeof(n), 0);
            snprintf(sha, sizeof(sha), "%.12s", cli__jstr(w, "sha256"));
            cli__jcell(w, "description", desc, sizeof(desc), DETAIL_MAX);
            cli__table_row(&t, (const char *[]){cli__jstr(w, "name"), v, n, sha, desc});
        }
        cli__table_print(&t, stdout);
    }
    cJSON_Delete(doc);
    sg_free(name);
    sg_buf_fini(&path);
    return rc;
}
