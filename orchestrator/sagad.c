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
#include "orchestrator/options/options.h"
#include "orchestrator/transport/kafka.h"

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

/* One table for flags, config keys and --help: a setting has one name everywhere. */
#define S(field) offsetof(settings_t, field)
static const sg_opt_t options[] = {
    {"workflows", SG_OPT_STR, S(drv.workflows_dir),
     "folder of saga definitions (*.yaml, recursive)"},
    {"db", SG_OPT_STR, S(drv.db_path), "SQLite database file (created if missing)"},
    {"data-dir", SG_OPT_STR, S(drv.data_dir),
     "folder for the activities' own databases (default: "
     "the folder of --db)"},
    {"listen", SG_OPT_STR, S(listen),
     "REST address (default 127.0.0.1:8080); loopback only unless --auth is set"},
    {"no-listen", SG_OPT_FLAG, S(no_listen), "do not serve REST"},
    {"auth", SG_OPT_STR, S(auth),
     "REST credentials file (JSON: API keys, JWT; see docs/rest.md); without it REST is "
     "unauthenticated and loopback only"},
    {"anon-rate", SG_OPT_UINT, S(anon_rate),
     "without --auth: requests per second per client IP (burst twice that); default no limit"},
    {"tls-cert", SG_OPT_STR, S(tls_cert),
     "serve REST over HTTPS with this PEM certificate (chain); needs --tls-key"},
    {"tls-key", SG_OPT_STR, S(tls_key), "the PEM private key of --tls-cert (unencrypted)"},
    {"hash-key", SG_OPT_FLAG, S(hash_key),
     "read an API key on stdin, print its sha256 for the --auth file, exit"},
    {"sync", SG_OPT_STR, S(sync), "durability: full (default), normal or off"},
    {"threads", SG_OPT_UINT, S(drv.threads), "embedded worker threads (default 8)"},
    {"queue-limit", SG_OPT_UINT, S(drv.per_queue_limit),
     "tasks of one queue at once (default: threads)"},
    {"test-activities", SG_OPT_FLAG, S(drv.test_activities), "serve the built-in test queue"},
    {"transport", SG_OPT_STR, S(drv.transport),
     "embedded (default: handlers run in sagad) or kafka (saga-worker processes)"},
    {"brokers", SG_OPT_STR, S(kafka.brokers), "Kafka bootstrap brokers (default 127.0.0.1:9092)"},
    {"kafka-config", SG_OPT_STR, S(kafka_config),
     "file of librdkafka properties (key = value): SASL, TLS, tuning"},
    {"kafka-partitions", SG_OPT_UINT, S(kafka.partitions),
     "partitions of the Kafka topics sagad creates when missing (default 6)"},
    {"log-level", SG_OPT_STR, S(log_level), "debug, info (default), warn or error"},
    {"seed", SG_OPT_STR, S(seed),
     "load a seed document (e.g. activities/seed/shop.json) into the services' databases "
     "before serving"},
    {"seed-only", SG_OPT_FLAG, S(seed_only),
     "with --seed: load it and exit (needs only --data-dir)"},
    {"chaos", SG_OPT_STR, S(drv.chaos),
     "fault injection, e.g. payment.error_rate=0.1,inventory.latency_ms=20 (docs/services.md)"},
};
#undef S

static const sg_opts_spec_t spec = {
    .prog = "sagad",
    .synopsis = "usage: sagad --workflows DIR --db FILE [options]\n"
                "       sagad --config FILE [options]\n\n"
                "Runs sagas durably: loads definitions, keeps state in SQLite, dispatches steps\n"
                "to activity workers, compensates failures. Signals: SIGTERM/SIGINT stop\n"
                "gracefully, SIGHUP reloads the workflows folder.\n\n",
    .opts = options,
    .n_opts = SG_ARRAY_LEN(options),
};

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
    sg_opts_t opts;
    sg_opts_init(&opts, &spec, &s);
    int rc = (int)sg_opts_parse(&opts, argc, argv);
    if (rc == SG_OPTS_RUN && s.hash_key) {
        sg_opts_fini(&opts);
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
    sg_opts_fini(&opts);
    return rc;
}
