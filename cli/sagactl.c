/*
 * sagactl: the command-line client of sagad, for humans and scripts. Offline commands
 * work on files alone (validate, check, graph FILE); online commands talk to sagad's REST
 * API (start, get, list, history, cancel, retry, watch, graph --instance/--workflow,
 * workflows, orders create/get/cancel, events, dlq list/requeue/discard). Human tables by
 * default, `-o json` for the server's JSON as it sent it.
 *
 * This file holds the command table, the argument parser and every --help text; the
 * commands live in offline.c, instances.c, orders.c and dlq.c, the REST client in http.c.
 * It must never change a file it reads; results go to stdout, diagnostics to stderr
 * (except for `validate`, whose report is its output).
 */
#include "cli/sagactl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_TEXT                                                                              \
    "exit status: 0 ok; 1 refused or failed (a 4xx answer, an invalid file, a saga that did\n" \
    "not complete); 2 usage error; 3 not found (404); 4 not authenticated or not allowed\n"    \
    "(401, 403); 5 server unreachable or failing (connection, TLS, 5xx)."

/* ---- the command table ---- */

static const cli_opt_t no_opts[] = {{0}};

static const cli_opt_t validate_opts[] = {
    {"--jq-verify", NULL, NULL, "also compile every jq expression with libjq (slower)"}, {0}};

static const cli_opt_t graph_opts[] = {
    {"--instance", NULL, "ID", "draw a running or finished instance (online), coloured"},
    {"--workflow", NULL, "NAME", "draw a workflow registered in sagad (online)"},
    {"--version", NULL, "N", "with --workflow: that version (default the latest)"},
    {"--format", "-f", "dot|svg", "DOT text (default) or SVG"},
    {"--output", "-o", "FILE", "write to FILE instead of stdout"},
    {0}};

static const cli_opt_t start_opts[] = {
    {"--input", "-i", "JSON|@FILE|@-", "the saga's input (default {}); @- reads stdin"},
    {"--idempotency-key", NULL, "KEY", "a repeated start with KEY returns the first instance"},
    {"--version", NULL, "N", "start that version of the workflow (default the latest)"},
    {"--watch", "-w", NULL, "then follow it until it ends (exit status as for watch)"},
    {0}};

static const cli_opt_t list_opts[] = {
    {"--workflow", NULL, "NAME", "only instances of this workflow"},
    {"--status", NULL, "STATUS",
     "RUNNING, COMPENSATING, COMPLETED, COMPENSATED, FAILED or "
     "COMPENSATION_FAILED"},
    {"--limit", NULL, "N", "at most N per page (1..500, default 50)"},
    {"--page-token", NULL, "T", "the next page (printed on stderr after a full page)"},
    {0}};

static const cli_opt_t history_opts[] = {
    {"--after", NULL, "SEQ", "only entries after sequence number SEQ (paging)"},
    {"--limit", NULL, "N", "at most N entries (1..1000, default 1000)"},
    {0}};

static const cli_opt_t watch_opts[] = {
    {"--interval", NULL, "MS", "poll every MS milliseconds (10..60000, default 500)"}, {0}};

static const cli_opt_t workflows_opts[] = {
    {"--version", NULL, "N", "with NAME: that version (default the latest)"}, {0}};

static const cli_opt_t orders_create_opts[] = {
    {"--input", "-i", "JSON|@FILE|@-", "the order (order_create's input); @- reads stdin"},
    {"--idempotency-key", NULL, "KEY", "a repeated create with KEY returns the first answer"},
    {"--watch", "-w", NULL, "then follow its saga until it ends (exit status as for watch)"},
    {0}};

static const cli_opt_t orders_cancel_opts[] = {
    {"--reason", NULL, "R",
     "customer_request (default), payment_problem, fraud_suspected, out_of_stock or other"},
    {"--note", NULL, "TEXT", "free text kept with the cancellation"},
    {"--requested-by", NULL, "WHO", "a customer id or an operator's name"},
    {"--watch", "-w", NULL, "then follow the cancellation saga until it ends"},
    {0}};

static const cli_opt_t events_opts[] = {
    {"--type", NULL, "T", "only events of this type, e.g. payment.failed"},
    {"--correlation-id", NULL, "ID", "only events of this saga instance"},
    {"--after", NULL, "N", "only events after log position N (paging)"},
    {"--limit", NULL, "N", "at most N events (1..1000, default 100)"},
    {0}};

static const cli_opt_t dlq_list_opts[] = {
    {"--queue", NULL, "Q", "only the dead letters of this queue, e.g. payment"},
    {"--status", NULL, "S", "new, requeued or discarded"},
    {"--after", NULL, "N", "only dead letters after id N (paging)"},
    {"--limit", NULL, "N", "at most N (1..1000, default 100)"},
    {0}};

#define ONLINE (CLI_ONLINE | CLI_FORMAT)

static const cli_cmd_t orders_subs[] = {
    {"create", "--input JSON|@FILE|@- [--idempotency-key KEY] [--watch]",
     "place an order: starts the order_create saga",
     "Sends the order to POST /v1/orders and prints its id and saga. The order is\n"
     "order_create's input: order_id, customer_id, items [{sku, qty, price}], payment\n"
     "{card_token}, total, currency[, email, shipping_address].",
     ONLINE, 0, 0, orders_create_opts, cli__cmd_orders_create, NULL, 0},
    {"get", "ID", "an order: its record, lines, saga, reservation and payment",
     "Shows GET /v1/orders/ID: the order as the order service holds it, with the status\n"
     "of its saga and what the inventory and payment services hold for it.",
     ONLINE, 1, 1, no_opts, cli__cmd_orders_get, NULL, 0},
    {"cancel", "ID [--reason R] [--note TEXT] [--requested-by WHO] [--watch]",
     "cancel a placed order: starts the order_cancel saga",
     "Refunds the payment, releases the stock, closes the order and tells the customer\n"
     "(POST /v1/orders/ID/cancel). An order that has shipped cannot be cancelled.",
     ONLINE, 1, 1, orders_cancel_opts, cli__cmd_orders_cancel, NULL, 0},
};

static const cli_cmd_t dlq_subs[] = {
    {"list", "[--queue Q] [--status S] [--after N] [--limit N]",
     "dead letters: tasks saga-workers gave up on, oldest first",
     "Shows GET /v1/dlq: the tasks that workers dead-lettered (undecodable, or started\n"
     "--max-deliveries times without finishing), as sagad read them from the\n"
     "saga.tasks.<queue>.dlq topics. Empty unless sagad runs --transport kafka. When\n"
     "there are more, the option for the next page is printed on stderr.",
     ONLINE, 0, 0, dlq_list_opts, cli__cmd_dlq_list, NULL, 0},
    {"requeue", "ID", "put a dead letter's task back on its tasks topic",
     "The task's original message goes to saga.tasks.<queue> again (a worker counts its\n"
     "starts from zero). Useful while its attempt still runs in sagad: a task past its\n"
     "deadline is refused by the worker. A new or discarded dead letter can be requeued.",
     ONLINE, 1, 1, no_opts, cli__cmd_dlq_requeue, NULL, 0},
    {"discard", "ID", "mark a new dead letter as dealt with (nothing is sent)", NULL, ONLINE, 1, 1,
     no_opts, cli__cmd_dlq_discard, NULL, 0},
};

static const cli_cmd_t commands[] = {
    {"validate", "FILE... [--jq-verify]", "check saga definitions (offline)",
     "Prints \"FILE: ok\" for each valid file, otherwise every error as\n"
     "FILE:LINE:COL: error: MESSAGE (with an optional hint line). Exit status: 0 all\n"
     "valid, 1 some invalid, 2 usage error.",
     0, 1, CLI_MAX_POS, validate_opts, cli__cmd_validate, NULL, 0},
    {"check", "FILE", "the failure matrix of a saga (offline)",
     "For each step that can fail, the compensations that would run, in order. Exit\n"
     "status: 0 ok, 1 invalid file, 2 usage error.",
     0, 1, 1, no_opts, cli__cmd_check, NULL, 0},
    {"graph", "FILE | --instance ID | --workflow NAME [--format dot|svg] [-o FILE]",
     "draw a saga: a file (offline), a workflow or an instance (online)",
     "Graphviz: forward path solid, compensations dashed, the pivot marked, parallel\n"
     "branches as clusters. With --instance, the steps are coloured by that instance's\n"
     "progress. SVG of a FILE needs Graphviz's `dot` program; online, sagad draws it.",
     CLI_ONLINE, 0, 1, graph_opts, cli__cmd_graph, NULL, 0},
    {"start", "WORKFLOW [--input JSON|@FILE|@-] [--idempotency-key KEY] [--watch]", "start a saga",
     "Starts a saga of WORKFLOW (its latest version unless --version).", ONLINE, 1, 1, start_opts,
     cli__cmd_start, NULL, 0},
    {"get", "ID", "an instance: status, times, steps and attempts",
     "Running attempts that heartbeat also show when the last heartbeat came, from which\n"
     "worker, and the handler's progress.",
     ONLINE, 1, 1, no_opts, cli__cmd_get, NULL, 0},
    {"list", "[--workflow NAME] [--status S] [--limit N] [--page-token T]",
     "list instances, oldest first",
     "One page at a time; when there are more, the option for the next page is printed\n"
     "on stderr.",
     ONLINE, 0, 0, list_opts, cli__cmd_list, NULL, 0},
    {"history", "ID [--after SEQ] [--limit N]", "the audit trail of an instance, oldest first",
     NULL, ONLINE, 1, 1, history_opts, cli__cmd_history, NULL, 0},
    {"cancel", "ID", "cancel a running instance: its completed steps are compensated",
     "Only a RUNNING instance before its pivot can be cancelled (else exit status 1).", ONLINE, 1,
     1, no_opts, cli__cmd_cancel, NULL, 0},
    {"retry", "ID", "resume a FAILED or COMPENSATION_FAILED instance",
     "Runs the step (or compensation) that failed again, from where it stopped.", ONLINE, 1, 1,
     no_opts, cli__cmd_retry, NULL, 0},
    {"watch", "ID [--interval MS]", "follow an instance until it ends",
     "Prints each change of its status and steps. Exit status 0 when it COMPLETED, 1 when\n"
     "it ended otherwise (COMPENSATED, FAILED, COMPENSATION_FAILED). With -o json, prints\n"
     "only the final instance.",
     ONLINE, 1, 1, watch_opts, cli__cmd_watch, NULL, 0},
    {"workflows", "[NAME [--version N]]", "the registered workflows, or one with its steps", NULL,
     ONLINE, 0, 1, workflows_opts, cli__cmd_workflows, NULL, 0},
    {"orders", "create|get|cancel ...", "the shop's orders: create, get, cancel", NULL, ONLINE, 0,
     0, no_opts, NULL, orders_subs, SG_ARRAY_LEN(orders_subs)},
    {"events", "[--type T] [--correlation-id ID] [--after N] [--limit N]",
     "the event log: domain events of the services and sagas",
     "Oldest first; when there are more, the option for the next page is printed on\n"
     "stderr.",
     ONLINE, 0, 0, events_opts, cli__cmd_events, NULL, 0},
    {"dlq", "list|requeue|discard ...", "dead letters of the Kafka transport", NULL, ONLINE, 0, 0,
     no_opts, NULL, dlq_subs, SG_ARRAY_LEN(dlq_subs)},
};

/* ---- help ---- */

static const char common_online[] =
    "  --server URL          sagad's REST address: http://HOST:PORT or https://HOST:PORT\n"
    "                        (default $SAGAD_URL, else http://127.0.0.1:8080)\n"
    "  --token TOKEN|@FILE   API key or JWT, sent as Authorization: Bearer (default\n"
    "                        $SAGAD_TOKEN); @FILE reads it from a file\n"
    "  --cacert FILE         CA certificate(s) to verify an https server (default\n"
    "                        $SAGAD_CACERT, else the system's)\n"
    "  --insecure            do not verify the server's TLS certificate (testing only)\n";
static const char common_format[] =
    "  -o, --output FORMAT   table (default) or json: the server's JSON as it sent it;\n"
    "                        errors then also go to stdout as the server's problem JSON\n";

#define HELP_COL 24
#define HELP_WIDTH 80

/* One option: its spelling, then its help wrapped at HELP_WIDTH from column HELP_COL. */
static void print_opt(FILE *to, const cli_opt_t *o)
{
    char left[64];
    snprintf(left, sizeof(left), "%s%s%s%s%s", o->shortname ? o->shortname : "",
             o->shortname ? ", " : "", o->name, o->metavar ? " " : "",
             o->metavar ? o->metavar : "");
    int col = fprintf(to, "  %s", left);
    const char *p = o->help;
    while (*p) {
        size_t word = strcspn(p, " ");
        if (col + 1 + (int)word > HELP_WIDTH || col < HELP_COL) {
            fprintf(to, "%s%*s", col < HELP_COL ? "" : "\n",
                    col < HELP_COL ? HELP_COL - col : HELP_COL, "");
            col = HELP_COL;
        } else {
            fputc(' ', to);
            col++;
        }
        col += fprintf(to, "%.*s", (int)word, p);
        p += word;
        p += strspn(p, " ");
    }
    fputc('\n', to);
}

static void print_usage_line(FILE *to, const cli_ctx_t *c)
{
    fprintf(to, "usage: sagactl %s %s\n", c->cmdname, c->cmd->synopsis);
}

static void print_command_list(FILE *to, const cli_cmd_t *cmds, size_t n, const char *prefix)
{
    for (size_t i = 0; i < n; i++) {
        char name[40];
        snprintf(name, sizeof(name), "%s%s", prefix, cmds[i].name);
        fprintf(to, "  %-15s %s\n", name, cmds[i].summary);
    }
}

static int print_help(const cli_ctx_t *c)
{
    const cli_cmd_t *cmd = c->cmd;
    print_usage_line(stdout, c);
    /* the summary is a list entry ("start a saga"); here it opens a sentence */
    printf("\n%c%s.\n",
           cmd->summary[0] >= 'a' && cmd->summary[0] <= 'z' ? cmd->summary[0] - 32
                                                            : cmd->summary[0],
           cmd->summary + 1);
    if (cmd->details != NULL) {
        printf("%s\n", cmd->details);
    }
    if (cmd->subs != NULL) {
        printf("\ncommands:\n");
        print_command_list(stdout, cmd->subs, cmd->n_subs, "");
        printf("\nRun `sagactl %s COMMAND --help` for details.\n", c->cmdname);
    }
    if (cmd->opts != NULL && cmd->opts[0].name != NULL) {
        printf("\noptions:\n");
        for (const cli_opt_t *o = cmd->opts; o->name != NULL; o++) {
            print_opt(stdout, o);
        }
    }
    printf("\n%s:\n%s%s  -h, --help            this text\n",
           cmd->flags & CLI_ONLINE ? "common options" : "options",
           cmd->flags & CLI_ONLINE ? common_online : "",
           cmd->flags & CLI_FORMAT ? common_format : "");
    if (cmd->flags & CLI_ONLINE) {
        printf("\n" EXIT_TEXT "\n");
    }
    return CLI_OK;
}

static void print_main_help(FILE *to)
{
    fprintf(to, "usage: sagactl [COMMON OPTIONS] COMMAND [ARGS] [OPTIONS]\n\n"
                "The client of sagad, the saga orchestrator.\n\ncommands:\n");
    print_command_list(to, commands, SG_ARRAY_LEN(commands), "");
    fprintf(to, "\ncommon options (before or after the command):\n%s%s", common_online,
            common_format);
    fprintf(to, "\n" EXIT_TEXT "\n\nRun `sagactl COMMAND --help` for details (docs/cli.md).\n");
}

/* ---- errors ---- */

/* "sagactl: " before the command is known, "sagactl orders get: " after. */
static void prefix(const cli_ctx_t *c)
{
    fprintf(stderr, "sagactl%s%s: ", c->cmdname[0] ? " " : "", c->cmdname);
}

void cli__err(const cli_ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    prefix(c);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli__usage_error(const cli_ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    prefix(c);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (c->cmd == NULL) {
        fprintf(stderr, "(sagactl --help for more)\n");
        return CLI_USAGE;
    }
    print_usage_line(stderr, c);
    fprintf(stderr, "(sagactl %s --help for more)\n", c->cmdname);
    return CLI_USAGE;
}

/* ---- parsing ---- */

static int opt_index(const cli_cmd_t *cmd, const char *name)
{
    for (int i = 0; cmd->opts != NULL && cmd->opts[i].name != NULL; i++) {
        if (strcmp(cmd->opts[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

const char *cli__opt(const cli_ctx_t *c, const char *name)
{
    int i = opt_index(c->cmd, name);
    SG_ASSERT(i >= 0); /* a command asks only for its own options */
    return c->val[i];
}

bool cli__opt_long(cli_ctx_t *c, const char *name, long min, long max, long *out)
{
    const char *v = cli__opt(c, name);
    if (v == NULL) {
        return true;
    }
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (v[0] == '\0' || *end != '\0' || n < min || n > max) {
        cli__usage_error(c, "%s must be a number from %ld to %ld, not \"%s\"", name, min, max, v);
        return false;
    }
    *out = n;
    return true;
}

/* The option spelled by arg ("--name", "--name=v", "-x"); *inline_val is the "=v" part. */
static bool opt_matches(const cli_opt_t *o, const char *arg, const char **inline_val)
{
    size_t n = strlen(o->name);
    *inline_val = NULL;
    if (strncmp(arg, o->name, n) == 0 && (arg[n] == '\0' || (arg[n] == '=' && o->metavar))) {
        *inline_val = arg[n] == '=' ? arg + n + 1 : NULL;
        return true;
    }
    return o->shortname != NULL && strcmp(arg, o->shortname) == 0;
}

static const cli_opt_t conn_opts[] = {{"--server", NULL, "URL", NULL},
                                      {"--token", NULL, "TOKEN", NULL},
                                      {"--cacert", NULL, "FILE", NULL},
                                      {"--insecure", NULL, NULL, NULL},
                                      {0}};
/* Apart, because graph's -o is its output file. */
static const cli_opt_t format_opts[] = {{"--output", "-o", "FORMAT", NULL}, {0}};

/* Stores a common option's value; false after a usage message. */
static bool set_common(cli_ctx_t *c, const cli_opt_t *o, const char *v)
{
    if (strcmp(o->name, "--server") == 0) {
        c->server = v;
    } else if (strcmp(o->name, "--token") == 0) {
        c->token = v;
    } else if (strcmp(o->name, "--cacert") == 0) {
        c->cacert = v;
    } else if (strcmp(o->name, "--insecure") == 0) {
        c->insecure = true;
    } else if (strcmp(v, "json") == 0 || strcmp(v, "table") == 0) {
        c->json = v[0] == 'j';
    } else {
        cli__usage_error(c, "unknown output format \"%s\" (use table or json)", v);
        return false;
    }
    return true;
}

/* Parses one option at argv[*i] against opts; common: those are common options.
 * Returns 1 when it matched (and was stored), 0 when not, -1 after a usage message. */
static int take_opt(cli_ctx_t *c, const cli_opt_t *opts, bool common, int argc, char **argv, int *i)
{
    for (int k = 0; opts[k].name != NULL; k++) {
        const char *v = NULL;
        if (!opt_matches(&opts[k], argv[*i], &v)) {
            continue;
        }
        if (opts[k].metavar != NULL && v == NULL) {
            if (*i + 1 >= argc) {
                cli__usage_error(c, "%s needs a value (%s)", opts[k].name, opts[k].metavar);
                return -1;
            }
            v = argv[++*i];
        }
        if (common) {
            return set_common(c, &opts[k], v != NULL ? v : "") ? 1 : -1;
        }
        c->val[k] = v != NULL ? v : "";
        return 1;
    }
    return 0;
}

static bool is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* Parses a command's arguments into c. Returns -1 to go on, else the exit status. */
static int parse(cli_ctx_t *c, int argc, char **argv)
{
    const cli_cmd_t *cmd = c->cmd;
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && is_help(a)) {
            return print_help(c);
        }
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (c->n_pos == cmd->max_pos || c->n_pos == CLI_MAX_POS) {
                return cli__usage_error(c, "unexpected argument \"%s\"", a);
            }
            c->pos[c->n_pos++] = a;
            continue;
        }
        int r = cmd->opts != NULL ? take_opt(c, cmd->opts, false, argc, argv, &i) : 0;
        if (r == 0 && (cmd->flags & CLI_ONLINE)) {
            r = take_opt(c, conn_opts, true, argc, argv, &i);
        }
        if (r == 0 && (cmd->flags & CLI_FORMAT)) {
            r = take_opt(c, format_opts, true, argc, argv, &i);
        }
        if (r < 0) {
            return CLI_USAGE;
        }
        if (r == 0) {
            return cli__usage_error(c, "unknown option %s", a);
        }
    }
    if (c->n_pos < cmd->min_pos) {
        return cli__usage_error(c, "%s",
                                cmd->min_pos == 1 ? "missing argument" : "too few arguments");
    }
    return -1;
}

static const cli_cmd_t *find(const cli_cmd_t *cmds, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(cmds[i].name, name) == 0) {
            return &cmds[i];
        }
    }
    return NULL;
}

static int unknown_command(const cli_cmd_t *cmds, size_t n, const char *prefix, const char *name)
{
    const char *names[32];
    size_t k = 0;
    for (size_t i = 0; i < n && k < SG_ARRAY_LEN(names); i++) {
        names[k++] = cmds[i].name;
    }
    const char *close = sg_closest(name, names, k);
    const char *sep = prefix[0] ? " " : "";
    fprintf(stderr, "sagactl: unknown command \"%s%s%s\"%s%s%s\n", prefix, sep, name,
            close ? " (did you mean \"" : "", close ? close : "", close ? "\"?)" : "");
    fprintf(stderr, "Run `sagactl %s%s--help` for the list.\n", prefix, sep);
    return CLI_USAGE;
}

/* Settings from the environment: SAGAD_URL, SAGAD_TOKEN, SAGAD_CACERT. */
static void from_env(cli_ctx_t *c)
{
    const char *url = getenv("SAGAD_URL"), *token = getenv("SAGAD_TOKEN");
    const char *ca = getenv("SAGAD_CACERT");
    c->server = url != NULL && url[0] ? url : "http://127.0.0.1:8080";
    c->token = token != NULL && token[0] ? token : NULL;
    c->cacert = ca != NULL && ca[0] ? ca : NULL;
}

/* Common options before the command. Returns the index of the command, or -(status+1). */
static int leading_options(cli_ctx_t *c, int argc, char **argv)
{
    int i = 1;
    snprintf(c->cmdname, sizeof(c->cmdname), "%s", "");
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (is_help(argv[i])) {
            print_main_help(stdout);
            return -(CLI_OK + 1);
        }
        int r = take_opt(c, conn_opts, true, argc, argv, &i);
        if (r == 0) {
            r = take_opt(c, format_opts, true, argc, argv, &i);
        }
        if (r == 0) {
            fprintf(stderr, "sagactl: unknown option %s before the command\n", argv[i]);
        }
        if (r <= 0) {
            return -(CLI_USAGE + 1);
        }
    }
    return i;
}

static int dispatch(cli_ctx_t *c, const cli_cmd_t *cmds, size_t n, int argc, char **argv)
{
    const cli_cmd_t *cmd = find(cmds, n, argv[0]);
    if (cmd == NULL) {
        return unknown_command(cmds, n, c->cmdname, argv[0]);
    }
    c->cmd = cmd;
    size_t len = strlen(c->cmdname);
    snprintf(c->cmdname + len, sizeof(c->cmdname) - len, "%s%s", len ? " " : "", cmd->name);
    if (cmd->subs != NULL) {
        if (argc < 2 || is_help(argv[1])) {
            if (argc < 2) {
                return cli__usage_error(c, "%s", "which one?");
            }
            return print_help(c);
        }
        if (argv[1][0] == '-') {
            return cli__usage_error(c, "unexpected %s before the subcommand", argv[1]);
        }
        return dispatch(c, cmd->subs, cmd->n_subs, argc - 1, argv + 1);
    }
    int rc = parse(c, argc - 1, argv + 1);
    return rc >= 0 ? rc : cmd->run(c);
}

int main(int argc, char **argv)
{
    cli_ctx_t c = {0};
    from_env(&c);
    int i = leading_options(&c, argc, argv);
    if (i < 0) {
        return -i - 1;
    }
    if (i >= argc) {
        print_main_help(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[i], "help") == 0) {
        /* `sagactl help [COMMAND [SUB]]` is `sagactl COMMAND [SUB] --help` */
        if (i + 1 >= argc) {
            print_main_help(stdout);
            return CLI_OK;
        }
        char *args[4] = {argv[i + 1], i + 2 < argc ? argv[i + 2] : "--help", "--help", NULL};
        int n = i + 2 < argc ? 3 : 2;
        return dispatch(&c, commands, SG_ARRAY_LEN(commands), n, args);
    }
    int rc = dispatch(&c, commands, SG_ARRAY_LEN(commands), argc - i, argv + i);
    cli__ctx_fini(&c);
    fflush(stdout);
    if (ferror(stdout)) {
        fprintf(stderr, "sagactl: cannot write the output\n");
        return rc == CLI_OK ? CLI_FAILED : rc;
    }
    return rc;
}
