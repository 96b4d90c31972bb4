/*
 * sagad: the saga orchestrator daemon. Reads its settings (flags, or a config file of
 * `key = value` lines with the same names), starts the driver (store, definitions,
 * engine thread, embedded workers) and the REST gateway, then waits for signals:
 * SIGTERM/SIGINT stop gracefully, SIGHUP reloads the workflows folder.
 *
 * It must never exit for anything a client sends; only bad settings stop it at start.
 */
#include "activities/activity.h"
#include "gateway/auth.h"
#include "gateway/gateway.h"
#include "orchestrator/driver/driver.h"
#include "orchestrator/log/log.h"
#include "orchestrator/transport/kafka.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    sg_driver_opts_t drv;
    const char *listen;
    const char *log_level;
    const char *sync;
    const char *seed;
    const char *auth;
    const char *tls_cert, *tls_key;
    unsigned anon_rate; /* requests/s per client IP without --auth; 0 = no limit */
    const char *kafka_config;
    sg_kafka_opts_t kafka;
    char **kafka_props; /* from --kafka-config */
    bool no_listen;
    bool seed_only;
    bool hash_key;
} settings_t;

typedef enum { OPT_STR, OPT_UINT, OPT_FLAG } opt_kind_t;

/* One table for flags and config keys: a setting has one name everywhere. */
typedef struct {
    const char *name;
    opt_kind_t kind;
    size_t offset;
    const char *help;
} option_t;

#define S(field) offsetof(settings_t, field)
static const option_t options[] = {
    {"workflows", OPT_STR, S(drv.workflows_dir), "folder of saga definitions (*.yaml, recursive)"},
    {"db", OPT_STR, S(drv.db_path), "SQLite database file (created if missing)"},
    {"data-dir", OPT_STR, S(drv.data_dir),
     "folder for the activities' own databases (default: "
     "the folder of --db)"},
    {"listen", OPT_STR, S(listen),
     "REST address (default 127.0.0.1:8080); loopback only unless --auth is set"},
    {"no-listen", OPT_FLAG, S(no_listen), "do not serve REST"},
    {"auth", OPT_STR, S(auth),
     "REST credentials file (JSON: API keys, JWT; see docs/rest.md); without it REST is "
     "unauthenticated and loopback only"},
    {"anon-rate", OPT_UINT, S(anon_rate),
     "without --auth: requests per second per client IP (burst twice that); default no limit"},
    {"tls-cert", OPT_STR, S(tls_cert),
     "serve REST over HTTPS with this PEM certificate (chain); needs --tls-key"},
    {"tls-key", OPT_STR, S(tls_key), "the PEM private key of --tls-cert (unencrypted)"},
    {"hash-key", OPT_FLAG, S(hash_key),
     "read an API key on stdin, print its sha256 for the --auth file, exit"},
    {"sync", OPT_STR, S(sync), "durability: full (default), normal or off"},
    {"threads", OPT_UINT, S(drv.threads), "embedded worker threads (default 8)"},
    {"queue-limit", OPT_UINT, S(drv.per_queue_limit),
     "tasks of one queue at once (default: threads)"},
    {"test-activities", OPT_FLAG, S(drv.test_activities), "serve the built-in test queue"},
    {"transport", OPT_STR, S(drv.transport),
     "embedded (default: handlers run in sagad) or kafka (saga-worker processes)"},
    {"brokers", OPT_STR, S(kafka.brokers), "Kafka bootstrap brokers (default 127.0.0.1:9092)"},
    {"kafka-config", OPT_STR, S(kafka_config),
     "file of librdkafka properties (key = value): SASL, TLS, tuning"},
    {"kafka-partitions", OPT_UINT, S(kafka.partitions),
     "partitions of the Kafka topics sagad creates when missing (default 6)"},
    {"log-level", OPT_STR, S(log_level), "debug, info (default), warn or error"},
    {"seed", OPT_STR, S(seed),
     "load a seed document (e.g. activities/seed/shop.json) into the services' databases "
     "before serving"},
    {"seed-only", OPT_FLAG, S(seed_only), "with --seed: load it and exit (needs only --data-dir)"},
    {"chaos", OPT_STR, S(drv.chaos),
     "fault injection, e.g. payment.error_rate=0.1,inventory.latency_ms=20 (docs/services.md)"},
};
#undef S

static void usage(FILE *to)
{
    fprintf(to, "usage: sagad --workflows DIR --db FILE [options]\n"
                "       sagad --config FILE [options]\n\n"
                "Runs sagas durably: loads definitions, keeps state in SQLite, dispatches steps\n"
                "to activity workers, compensates failures. Signals: SIGTERM/SIGINT stop\n"
                "gracefully, SIGHUP reloads the workflows folder.\n\noptions:\n");
    for (size_t i = 0; i < SG_ARRAY_LEN(options); i++) {
        const option_t *o = &options[i];
        fprintf(to, "  --%-16s %s%s\n", o->name,
                o->kind == OPT_STR    ? "VALUE "
                : o->kind == OPT_UINT ? "N     "
                                      : "      ",
                o->help);
    }
    fprintf(to, "  --%-16s %s\n", "config", "FILE   key = value lines with the option names above");
    fprintf(to, "  --%-16s %s\n", "help", "       this text");
}

static const option_t *find_option(const char *name)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(options); i++) {
        if (strcmp(options[i].name, name) == 0) {
            return &options[i];
        }
    }
    return NULL;
}

/* Sets one option; value is kept (it points into argv or a config buffer kept alive). */
static bool set_option(settings_t *s, const option_t *o, const char *value, const char *where)
{
    char *field = (char *)s + o->offset;
    if (o->kind == OPT_FLAG) {
        bool on = value == NULL || strcmp(value, "true") == 0 || strcmp(value, "1") == 0;
        if (value != NULL && !on && strcmp(value, "false") != 0 && strcmp(value, "0") != 0) {
            fprintf(stderr, "sagad: %s: %s takes true or false, not \"%s\"\n", where, o->name,
                    value);
            return false;
        }
        *(bool *)(void *)field = on;
        return true;
    }
    if (value == NULL) {
        fprintf(stderr, "sagad: %s: --%s needs a value\n", where, o->name);
        return false;
    }
    if (o->kind == OPT_STR) {
        *(const char **)(void *)field = value;
        return true;
    }
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v == 0 || v > 4096) {
        fprintf(stderr, "sagad: %s: %s must be a number from 1 to 4096, not \"%s\"\n", where,
                o->name, value);
        return false;
    }
    *(unsigned *)(void *)field = (unsigned)v;
    return true;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) {
        *--e = '\0';
    }
    return s;
}

/* Reads key = value lines; '#' starts a comment. Unknown keys are errors. */
static bool read_config(settings_t *s, const char *path, char **keep)
{
    size_t len = 0;
    if (sg_file_read(path, 1 << 20, keep, &len) != SG_OK) {
        fprintf(stderr, "sagad: cannot read config file %s\n", path);
        return false;
    }
    unsigned lineno = 0;
    for (char *line = strtok(*keep, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        char *t = trim(line);
        if (*t == '\0') {
            continue;
        }
        char *eq = strchr(t, '=');
        char where[300];
        snprintf(where, sizeof(where), "%s:%u", path, lineno);
        if (eq == NULL) {
            fprintf(stderr, "sagad: %s: expected key = value\n", where);
            return false;
        }
        *eq = '\0';
        const option_t *o = find_option(trim(t));
        if (o == NULL) {
            fprintf(stderr, "sagad: %s: unknown setting \"%s\"\n", where, trim(t));
            return false;
        }
        if (!set_option(s, o, trim(eq + 1), where)) {
            return false;
        }
    }
    return true;
}

/* 0 = go on, 1 = exit 0 (help), 2 = usage error. */
static int parse_args(settings_t *s, int argc, char **argv, char **config_buf)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc &&
            !read_config(s, argv[++i], config_buf)) {
            return 2;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "sagad: unexpected argument \"%s\"\n", a);
            return 2;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        snprintf(name, sizeof(name), "%.*s", (int)(eq ? (size_t)(eq - a - 2) : strlen(a + 2)),
                 a + 2);
        const option_t *o = find_option(name);
        if (o == NULL) {
            fprintf(stderr, "sagad: unknown option --%s (see sagad --help)\n", name);
            return 2;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (value == NULL && o->kind != OPT_FLAG) {
            value = i + 1 < argc ? argv[++i] : NULL;
        }
        if (!set_option(s, o, value, "command line")) {
            return 2;
        }
    }
    return 0;
}

/* Reads --kafka-config and hands the kafka settings to the driver. */
static bool load_kafka(settings_t *s)
{
    char err[512] = "";
    if (s->kafka_config != NULL &&
        sg_kafka_props_read(s->kafka_config, &s->kafka_props, err, sizeof(err)) != SG_OK) {
        fprintf(stderr, "sagad: --kafka-config: %s\n", err);
        return false;
    }
    s->kafka.props = (const char *const *)s->kafka_props;
    s->drv.kafka = &s->kafka;
    return true;
}

static bool check_settings(settings_t *s, char *data_dir_buf, size_t buflen)
{
    if (s->seed_only && (s->seed == NULL || (s->drv.db_path == NULL && s->drv.data_dir == NULL))) {
        fprintf(stderr, "sagad: --seed-only needs --seed FILE and --data-dir DIR (or --db)\n");
        return false;
    }
    if (s->seed_only && s->drv.db_path == NULL) {
        return true;
    }
    if (s->drv.db_path == NULL) {
        fprintf(stderr, "sagad: --db FILE is required (see sagad --help)\n");
        return false;
    }
    if (s->sync != NULL && !sg_sync_parse(s->sync, &s->drv.sync)) {
        fprintf(stderr, "sagad: --sync must be full, normal or off, not \"%s\"\n", s->sync);
        return false;
    }
    sg_log_level_t level = SG_LOG_INFO;
    if (s->log_level != NULL && !sg_log_level_parse(s->log_level, &level)) {
        fprintf(stderr, "sagad: --log-level must be debug, info, warn or error\n");
        return false;
    }
    sg_log_set_level(level);
    if (s->drv.data_dir == NULL) {
        const char *slash = strrchr(s->drv.db_path, '/');
        snprintf(data_dir_buf, buflen, "%.*s", slash ? (int)(slash - s->drv.db_path) : 1,
                 slash ? s->drv.db_path : ".");
        s->drv.data_dir = data_dir_buf;
    }
    if (s->listen == NULL) {
        s->listen = "127.0.0.1:8080";
    }
    if ((s->tls_cert == NULL) != (s->tls_key == NULL)) {
        fprintf(stderr, "sagad: --tls-cert and --tls-key go together\n");
        return false;
    }
    return load_kafka(s);
}

static int serve(settings_t *s)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits this; main waits below */
    signal(SIGPIPE, SIG_IGN);

    char err[512] = "";
    sg_driver_t *d = NULL;
    if (sg_driver_start(&s->drv, &d, err, sizeof(err)) != SG_OK) {
        sg_log(SG_LOG_ERROR, NULL, "cannot start: %s", err);
        return 1;
    }
    sg_gateway_t *gw = NULL;
    if (!s->no_listen) {
        sg_gateway_opts_t go = {.listen = s->listen,
                                .db_path = s->drv.db_path,
                                .driver = d,
                                .auth_file = s->auth,
                                .anon_rate = s->anon_rate,
                                .data_dir = s->drv.data_dir,
                                .tls_cert_file = s->tls_cert,
                                .tls_key_file = s->tls_key};
        if (sg_gateway_start(&go, &gw, err, sizeof(err)) != SG_OK) {
            sg_log(SG_LOG_ERROR, NULL, "cannot serve REST on %s: %s", s->listen, err);
            sg_driver_stop(d);
            return 1;
        }
    }
    sg_log(SG_LOG_INFO, NULL, "sagad ready: db %s, workflows %s, REST %s, transport %s",
           s->drv.db_path, s->drv.workflows_dir ? s->drv.workflows_dir : "(none)",
           gw ? s->listen : "off", s->drv.transport ? s->drv.transport : "embedded");
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            sg_log(SG_LOG_INFO, NULL, "SIGHUP: reloading workflows");
            sg_driver_reload(d);
            continue;
        }
        sg_log(SG_LOG_INFO, NULL, "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    sg_gateway_stop(gw); /* no new requests; then the engine finishes its batch */
    sg_driver_stop(d);
    sg_log(SG_LOG_INFO, NULL, "stopped");
    return 0;
}

static void seeded(void *arg, const char *queue)
{
    (void)arg;
    sg_log(SG_LOG_INFO, NULL, "seeded the %s service", queue);
}

/* Loads s->seed into the services' databases. */
static bool seed(const settings_t *s)
{
    char *text = NULL;
    size_t len = 0;
    if (sg_file_read(s->seed, 16 << 20, &text, &len) != SG_OK) {
        fprintf(stderr, "sagad: cannot read seed file %s\n", s->seed);
        return false;
    }
    char err[512] = "";
    sg_activity_env_t env = {.data_dir = s->drv.data_dir, .chaos = NULL};
    sg_err_t rc = sg_activity_seed_all(&env, text, err, sizeof(err), seeded, NULL);
    sg_free(text);
    if (rc != SG_OK) {
        fprintf(stderr, "sagad: %s: %s\n", s->seed, err);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    settings_t s = {.drv = {.sync = SG_SYNC_FULL}};
    char *config_buf = NULL;
    int rc = parse_args(&s, argc, argv, &config_buf);
    if (rc == 0 && s.hash_key) {
        sg_free(config_buf);
        return sg_auth_hash_key_cli(stdin, stdout, stderr);
    }
    char data_dir[4096];
    if (rc == 0 && !check_settings(&s, data_dir, sizeof(data_dir))) {
        rc = 2;
    }
    if (rc == 0 && s.seed != NULL && !seed(&s)) {
        rc = 3;
    }
    if (rc == 0 && !s.seed_only) {
        rc = serve(&s);
    } else if (rc == 3) {
        rc = 1;
    } else if (rc != 0) {
        rc = rc == 1 ? 0 : 2;
    }
    sg_kafka_props_free(s.kafka_props);
    sg_free(config_buf);
    return rc;
}
