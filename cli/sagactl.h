/*
 * sagactl internals, shared by the files of cli/: the command table and argument parser
 * (sagactl.c), the REST client (http.c), tables and readable values (output.c), and the
 * commands (offline.c, instances.c, orders.c, dlq.c). Never included from another folder.
 *
 * Exit statuses are part of the interface (scripts test them); they are documented in
 * `sagactl --help` and docs/cli.md and must never change meaning.
 */
#ifndef SG_CLI_SAGACTL_H
#define SG_CLI_SAGACTL_H

#include "orchestrator/base/base.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>

enum {
    CLI_OK = 0,
    CLI_FAILED = 1,    /* refused (4xx), invalid file, the saga did not complete */
    CLI_USAGE = 2,     /* bad command line */
    CLI_NOT_FOUND = 3, /* 404: no such instance, workflow, order or route */
    CLI_AUTH = 4,      /* 401 or 403 */
    CLI_SERVER = 5,    /* cannot connect, TLS failure, 5xx, an answer that is not JSON */
};

#define CLI_MAX_OPTS 12
#define CLI_MAX_POS 64

/* One option of a command: "--name" (and an optional short "-x"); metavar NULL = a flag. */
typedef struct {
    const char *name;
    const char *shortname;
    const char *metavar;
    const char *help;
} cli_opt_t;

/* What a command reaches: CLI_ONLINE adds --server/--token/--cacert/--insecure,
 * CLI_FORMAT adds -o table|json. */
enum { CLI_ONLINE = 1, CLI_FORMAT = 2 };

typedef struct cli_ctx cli_ctx_t;
typedef struct cli_cmd cli_cmd_t;

struct cli_cmd {
    const char *name;
    const char *synopsis; /* the arguments after the name, e.g. "ID [--interval MS]" */
    const char *summary;  /* one line for the command list */
    const char *details;  /* more lines for --help, or NULL */
    unsigned flags;
    int min_pos, max_pos; /* positional arguments accepted */
    const cli_opt_t *opts;
    int (*run)(cli_ctx_t *c);
    const cli_cmd_t *subs; /* subcommands (then run is NULL) */
    size_t n_subs;
};

/* Everything a command needs: its parsed arguments and the connection settings. */
struct cli_ctx {
    const cli_cmd_t *cmd;
    char cmdname[48]; /* "get", "orders create": the prefix of messages */
    const char *pos[CLI_MAX_POS];
    int n_pos;
    const char *val[CLI_MAX_OPTS]; /* by index in cmd->opts; "" for a flag that is set */
    /* common settings: environment, then options before the command, then after it */
    const char *server, *token, *cacert;
    bool insecure;
    bool json;
    void *curl; /* CURL *, made on first use and kept (watch polls reuse it) */
    char *token_buf;
};

/* sagactl.c: the value of option name ("--reason") of the running command, or NULL. */
const char *cli__opt(const cli_ctx_t *c, const char *name);
/* Prints "sagactl CMD: MESSAGE" and the command's usage line to stderr; returns CLI_USAGE. */
int cli__usage_error(const cli_ctx_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "sagactl CMD: MESSAGE" to stderr. */
void cli__err(const cli_ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A decimal option in [min, max] into *out (unchanged when absent). False after a usage
 * message when it is something else. */
bool cli__opt_long(cli_ctx_t *c, const char *name, long min, long max, long *out);

/* ---- http.c: the REST client ---- */

typedef struct {
    long status;
    sg_buf_t body;
    char ctype[96];
} cli_resp_t;

/* A request to the server; path starts with "/" and is already escaped; body NULL for
 * none; idem_key adds Idempotency-Key. Returns CLI_OK with resp filled (any HTTP status;
 * free with cli__resp_fini), or CLI_SERVER after printing why it could not be sent. */
int cli__request(cli_ctx_t *c, const char *method, const char *path, const char *body,
                 const char *idem_key, cli_resp_t *resp);
void cli__resp_fini(cli_resp_t *resp);
/* A non-2xx answer as one line on stderr (problem+json: "Title (status): detail: field:
 * message; ..."), the body on stdout in -o json mode; returns the exit status for it. */
int cli__report(cli_ctx_t *c, const cli_resp_t *resp);
/* The exit status for an HTTP status. */
int cli__exit_for_status(long status);
/*
 * A request whose 2xx answer is JSON: on CLI_OK *doc is the parsed body (caller deletes)
 * and, when raw is not NULL, *raw holds the body text as sent (caller frees with
 * sg_free). Any failure is reported (cli__report) and returns its exit status.
 */
int cli__call(cli_ctx_t *c, const char *method, const char *path, const char *body,
              const char *idem_key, cJSON **doc, char **raw);
/* cli__call, then in -o json mode prints the answer as the server sent it. */
int cli__call_print(cli_ctx_t *c, const char *method, const char *path, const char *body,
                    const char *idem_key, cJSON **doc);
/* A percent-encoded path segment or query value (sg_free), NULL on OOM. */
char *cli__esc(const char *s);
/* Appends "?key=value" or "&key=value" (value encoded) when value is not NULL. */
void cli__query(sg_buf_t *path, const char *key, const char *value);
/* Frees what the context holds (the curl handle, a token read from a file). */
void cli__ctx_fini(cli_ctx_t *c);

/* ---- output.c: tables and readable values ---- */

#define CLI_TABLE_MAX_COLS 10

typedef struct {
    size_t ncols, nrows, cap;
    char **cells;
    bool oom;
} cli_table_t;

/* Starts a table with the given header (ncols names). */
void cli__table_init(cli_table_t *t, size_t ncols, const char *const *header);
/* Adds a row of ncols cells (copied; NULL shows as "-"). */
void cli__table_row(cli_table_t *t, const char *const *cells);
/* Prints the columns aligned (as wide as their widest cell) and frees the table. */
void cli__table_print(cli_table_t *t, FILE *to);

/* A string member, or "-" when it is missing or not a string. */
const char *cli__jstr(const cJSON *o, const char *key);
/* A member as a table cell: strings as is, null/missing "-", numbers plainly, others as
 * compact JSON; cut to max bytes with "..." (max 0 = no limit). */
void cli__jcell(const cJSON *o, const char *key, char *buf, size_t n, size_t max);
/* An RFC 3339 member ("2026-11-26T04:51:07.123Z") as local "2026-11-26 05:51:07" (with
 * ".123" when ms); "-" for null; the text as is when it does not parse. */
void cli__jtime(const cJSON *o, const char *key, bool ms, char out[40]);
/* Milliseconds since the epoch of an RFC 3339 member, or -1. */
long long cli__jtime_ms(const cJSON *o, const char *key);
/* Milliseconds since the epoch as local "2026-11-26 05:51:07[.123]"; "-" when <= 0. */
void cli__ms_time(long long ms, bool with_ms, char out[40]);
/* "850ms", "2.4s", "3m12s" from milliseconds; "-" when negative. */
void cli__duration(long long ms, char *out, size_t n);
/* "key: value" lines with the values aligned. */
void cli__kv(const char *const *keys, const char *const *values, size_t n);
/* ---- the commands ---- */

int cli__cmd_validate(cli_ctx_t *c);
int cli__cmd_check(cli_ctx_t *c);
int cli__cmd_graph(cli_ctx_t *c); /* a FILE, or --instance / --workflow online */

int cli__cmd_start(cli_ctx_t *c);
int cli__cmd_get(cli_ctx_t *c);
int cli__cmd_list(cli_ctx_t *c);
int cli__cmd_history(cli_ctx_t *c);
int cli__cmd_cancel(cli_ctx_t *c);
int cli__cmd_retry(cli_ctx_t *c);
int cli__cmd_watch(cli_ctx_t *c);
int cli__cmd_workflows(cli_ctx_t *c);
/* The steps table of an instance document (GET /v1/instances/{id}). */
void cli__print_steps(const cJSON *inst);
/* Follows instance id until it ends (interval_ms between polls); prints changes, or the
 * final document in -o json mode. 0 when it COMPLETED, CLI_FAILED when it ended
 * otherwise, or the failure's status. */
int cli__watch(cli_ctx_t *c, const char *id, long interval_ms);
/* Reads --input's value: JSON text, @FILE or @- (stdin); "{}" when spec is NULL. NULL
 * after a message when the file cannot be read. */
char *cli__read_input(cli_ctx_t *c, const char *spec);

int cli__cmd_orders_create(cli_ctx_t *c);
int cli__cmd_orders_get(cli_ctx_t *c);
int cli__cmd_orders_cancel(cli_ctx_t *c);
int cli__cmd_events(cli_ctx_t *c);

int cli__cmd_dlq_list(cli_ctx_t *c);
int cli__cmd_dlq_requeue(cli_ctx_t *c);
int cli__cmd_dlq_discard(cli_ctx_t *c);

#endif
