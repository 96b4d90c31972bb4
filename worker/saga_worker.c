/*
 * saga-worker: hosts the activity modules of one or more queues for sagad's kafka
 * transport. Many copies may run, on many hosts; the workers of a queue form the
 * consumer group "<group>.<queue>" and share its partitions.
 *
 *   saga-worker --queue payment [--queue inventory ...] --brokers 127.0.0.1:9092
 *               --data-dir DIR [--inflight N] [--max-deliveries N] [--chaos SPEC]
 *               [--group PREFIX] [--worker-id ID] [--kafka-config FILE] [--config FILE]
 *
 * The same modules as sagad's embedded mode (activities/), opened on DIR: workers of a
 * queue on one host share DIR, so their handlers share the idempotency records. Tasks
 * come from saga.tasks.<queue>, results go to saga.results, dead letters to
 * saga.tasks.<queue>.dlq and the modules' domain events to topics named like their type
 * (see queue.c and relay.c). It logs JSON lines to stderr; SIGTERM or SIGINT stop it
 * gracefully: no new task is taken, tasks in flight finish and their results go out,
 * offsets are committed, the groups are left.
 *
 * It must never exit for anything a broker or a message does; only bad settings stop
 * it at start (exit 2), or a module that cannot open (exit 1).
 */
#include "activities/common/events.h"
#include "orchestrator/log/log.h"
#include "orchestrator/options/options.h"
#include "worker/worker_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    wk_settings_t set;
    const char *brokers;
    const char *kafka_config;
    const char *log_level;
    unsigned partitions;
    char **props;
    sg_opt_list_t queue_args; /* as given: "a,b" splits later */
} args_t;

/* One table for flags, config keys and --help: a setting has one name everywhere. */
#define A(field) offsetof(args_t, field)
static const sg_opt_t options[] = {
    {"queue", SG_OPT_LIST, A(queue_args), "activity queue to serve (repeat, or a,b,c); required"},
    {"brokers", SG_OPT_STR, A(brokers), "Kafka bootstrap brokers (default 127.0.0.1:9092)"},
    {"data-dir", SG_OPT_STR, A(set.data_dir),
     "folder of the modules' databases and saga-worker.db; required"},
    {"inflight", SG_OPT_UINT, A(set.inflight), "tasks of one queue running at once (default 8)"},
    {"max-deliveries", SG_OPT_UINT, A(set.max_deliveries),
     "starts of a task that never finishes before it is dead-lettered (default 3)"},
    {"group", SG_OPT_STR, A(set.group_prefix),
     "consumer group prefix: the group of queue Q is PREFIX.Q (default saga-worker)"},
    {"worker-id", SG_OPT_STR, A(set.worker_id), "name in results and logs (default host:pid)"},
    {"chaos", SG_OPT_STR, A(set.chaos), "fault injection for the modules, as sagad --chaos"},
    {"kafka-config", SG_OPT_STR, A(kafka_config),
     "file of librdkafka properties (key = value): SASL, TLS, tuning"},
    {"partitions", SG_OPT_UINT, A(partitions),
     "partitions of topics created when missing (default 6)"},
    {"log-level", SG_OPT_STR, A(log_level), "debug, info (default), warn or error"},
};
#undef A

static const sg_opts_spec_t spec = {
    .prog = "saga-worker",
    .synopsis = "usage: saga-worker --queue Q [--queue Q2 ...] --data-dir DIR [options]\n"
                "       saga-worker --config FILE [options]\n\n"
                "Runs the activity handlers of the given queues for sagad --transport kafka:\n"
                "tasks from saga.tasks.<queue>, results to saga.results. SIGTERM/SIGINT stop\n"
                "gracefully.\n\n",
    .opts = options,
    .n_opts = SG_ARRAY_LEN(options),
};

/* Splits the --queue values at commas into set.queues, blanks around names cut, without
 * empty names or duplicates. */
static bool split_queues(args_t *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->queue_args.n; i++) {
        for (const char *p = a->queue_args.items[i]; *p; p++) {
            n += *p == ',';
        }
        n++;
    }
    a->set.queues = sg_calloc(n + 1, sizeof(*a->set.queues));
    if (a->set.queues == NULL) {
        return false;
    }
    size_t k = 0;
    for (size_t i = 0; i < a->queue_args.n; i++) {
        for (const char *p = a->queue_args.items[i]; *p != '\0';) {
            size_t len = strcspn(p, ","), skip = len + (p[len] == ',');
            while (len > 0 && (*p == ' ' || *p == '\t')) {
                p++, len--, skip--;
            }
            while (len > 0 && strchr(" \t\r\n", p[len - 1]) != NULL) {
                len--;
            }
            bool dup = len == 0;
            for (size_t j = 0; j < k && !dup; j++) {
                dup = strncmp(a->set.queues[j], p, len) == 0 && a->set.queues[j][len] == '\0';
            }
            if (!dup && (a->set.queues[k++] = sg_strndup(p, len)) == NULL) {
                return false;
            }
            p += skip;
        }
    }
    return true;
}

static bool check_args(args_t *a, char *worker_id, size_t idlen)
{
    if (!split_queues(a)) {
        fprintf(stderr, "saga-worker: out of memory\n");
        return false;
    }
    if (a->set.queues[0] == NULL) {
        fprintf(stderr, "saga-worker: --queue is required (see saga-worker --help)\n");
        return false;
    }
    if (a->set.data_dir == NULL) {
        fprintf(stderr, "saga-worker: --data-dir is required\n");
        return false;
    }
    if (mkdir(a->set.data_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "saga-worker: cannot create %s: %s\n", a->set.data_dir, strerror(errno));
        return false;
    }
    sg_log_level_t level = SG_LOG_INFO;
    if (a->log_level != NULL && !sg_log_level_parse(a->log_level, &level)) {
        fprintf(stderr, "saga-worker: --log-level must be debug, info, warn or error\n");
        return false;
    }
    sg_log_set_level(level);
    char err[512] = "";
    if (a->kafka_config != NULL &&
        sg_kafka_props_read(a->kafka_config, &a->props, err, sizeof(err)) != SG_OK) {
        fprintf(stderr, "saga-worker: --kafka-config: %s\n", err);
        return false;
    }
    if (a->set.worker_id == NULL) {
        char host[128] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(worker_id, idlen, "%s:%d", host, (int)getpid());
        a->set.worker_id = worker_id;
    }
    a->set.group_prefix = a->set.group_prefix ? a->set.group_prefix : "saga-worker";
    a->set.inflight = a->set.inflight ? a->set.inflight : WK_DEFAULT_INFLIGHT;
    a->set.max_deliveries =
        a->set.max_deliveries ? a->set.max_deliveries : WK_DEFAULT_MAX_DELIVERIES;
    a->set.ko = (sg_kafka_opts_t){.brokers = a->brokers,
                                  .props = (const char *const *)a->props,
                                  .partitions = a->partitions,
                                  .client_id = a->set.worker_id};
    return true;
}

/* ---- the process ---- */

bool wk_ensure_topics(wk_t *w, int timeout_ms)
{
    size_t n_types = 0;
    const char *const *types = sg_event_types(&n_types);
    size_t cap = 1 + 2 * w->n_queues + n_types, n = 0;
    char **names = sg_calloc(cap, sizeof(*names));
    bool ok = names != NULL;
    if (ok) {
        names[n++] = sg_strdup(SG_KAFKA_RESULTS_TOPIC);
    }
    for (size_t i = 0; ok && i < w->n_queues; i++) {
        const char *q = wk_queue_module(w->queues[i])->queue;
        char t[SG_KAFKA_TOPIC_MAX + 1];
        sg_kafka_task_topic(q, strlen(q), false, t, sizeof(t));
        names[n++] = sg_strdup(t);
        sg_kafka_task_topic(q, strlen(q), true, t, sizeof(t));
        names[n++] = sg_strdup(t);
    }
    for (size_t i = 0; ok && i < n_types; i++) {
        names[n++] = sg_strdup(types[i]);
    }
    for (size_t i = 0; ok && i < n; i++) {
        ok = names[i] != NULL;
    }
    char err[512] = "out of memory";
    if (ok) {
        ok = sg_kafka_topics_create(&w->set.ko, (const char *const *)names, n, timeout_ms, err,
                                    sizeof(err)) == SG_OK;
    }
    if (!ok) {
        sg_log(SG_LOG_WARN, NULL, "kafka: %s; trying again later", err);
    }
    for (size_t i = 0; names != NULL && i < n; i++) {
        sg_free(names[i]);
    }
    sg_free(names);
    return ok;
}

/* The producer's thread: a job's result or dead letter, or an event, is on Kafka. */
static void delivered(void *arg, void *opaque, sg_err_t rc)
{
    (void)arg;
    wk_msg_t *m = opaque;
    if (m == NULL) {
        return;
    }
    if (m->kind == WK_MSG_JOB) {
        wk_queue_delivered(m, rc);
    } else {
        wk_relay_delivered(m, rc);
    }
}

static sg_err_t start(wk_t *w, char *err, size_t errlen)
{
    sg_err_t rc = wk_deliveries_open(w->set.data_dir, &w->dl, err, errlen);
    if (rc == SG_OK) {
        rc = sg_kafka_producer_new(&w->set.ko, w->set.worker_id, 0, delivered, w, &w->prod, err,
                                   errlen);
    }
    size_t n = 0;
    while (w->set.queues[n] != NULL) {
        n++;
    }
    w->queues = rc == SG_OK ? sg_calloc(n, sizeof(*w->queues)) : NULL;
    if (rc == SG_OK && w->queues == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = SG_ERR_NOMEM;
    }
    for (size_t i = 0; rc == SG_OK && i < n; i++) {
        rc = wk_queue_new(w, w->set.queues[i], &w->queues[i], err, errlen);
        w->n_queues += rc == SG_OK;
    }
    if (rc != SG_OK) {
        return rc;
    }
    bool topics = wk_ensure_topics(w, 10000);
    rc = wk_relay_start(w, topics, &w->relay, err, errlen);
    for (size_t i = 0; rc == SG_OK && i < w->n_queues; i++) {
        rc = wk_queue_start(w->queues[i], err, errlen);
    }
    return rc;
}

/* Graceful: the consumers drain together (see queue.c), then the relay, then whatever
 * the producer still holds gets a last chance. Safe after a partial start. */
static void stop(wk_t *w)
{
    atomic_store(&w->stopping, true);
    for (size_t i = 0; i < w->n_queues; i++) {
        wk_queue_stop(w->queues[i]);
    }
    wk_relay_stop(w->relay);
    if (w->prod != NULL && !sg_kafka_producer_flush(w->prod, 10000)) {
        sg_log(SG_LOG_WARN, NULL, "%zu messages not acknowledged by the broker at stop",
               sg_kafka_producer_pending(w->prod));
    }
    sg_kafka_producer_free(w->prod); /* no delivery report after this */
    wk_relay_free(w->relay);
    for (size_t i = 0; i < w->n_queues; i++) {
        wk_queue_free(w->queues[i]);
    }
    sg_free(w->queues);
    wk_deliveries_close(w->dl);
}

static int serve(wk_t *w)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits it; main waits below */
    signal(SIGPIPE, SIG_IGN);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&w->exclusive, &ra);
    pthread_rwlockattr_destroy(&ra);

    char err[512] = "";
    if (start(w, err, sizeof(err)) != SG_OK) {
        sg_log(SG_LOG_ERROR, NULL, "cannot start: %s", err);
        stop(w);
        pthread_rwlock_destroy(&w->exclusive);
        return 1;
    }
    char queues[512] = "";
    for (size_t i = 0; w->set.queues[i] != NULL; i++) {
        snprintf(queues + strlen(queues), sizeof(queues) - strlen(queues), "%s%s", i ? "," : "",
                 w->set.queues[i]);
    }
    sg_log(SG_LOG_INFO, NULL,
           "saga-worker ready: queues %s, brokers %s, groups %s.<queue>, in flight %u, "
           "worker %s",
           queues, w->set.ko.brokers ? w->set.ko.brokers : SG_KAFKA_DEFAULT_BROKERS,
           w->set.group_prefix, w->set.inflight, w->set.worker_id);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0 || sig == SIGHUP) {
            continue;
        }
        sg_log(SG_LOG_INFO, NULL, "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    stop(w);
    pthread_rwlock_destroy(&w->exclusive);
    sg_log(SG_LOG_INFO, NULL, "stopped: %llu tasks, %llu dead letters, %llu events",
           (unsigned long long)atomic_load(&w->tasks),
           (unsigned long long)atomic_load(&w->dead_letters),
           (unsigned long long)atomic_load(&w->events));
    return 0;
}

int main(int argc, char **argv)
{
    args_t a = {0};
    sg_opts_t opts;
    sg_opts_init(&opts, &spec, &a);
    char worker_id[200];
    int rc = (int)sg_opts_parse(&opts, argc, argv);
    if (rc == 0 && !check_args(&a, worker_id, sizeof(worker_id))) {
        rc = 2;
    }
    if (rc == 0) {
        wk_t w = {.set = a.set};
        rc = serve(&w);
    } else {
        rc = rc == 1 ? 0 : 2;
    }
    for (size_t i = 0; a.set.queues != NULL && a.set.queues[i] != NULL; i++) {
        sg_free(a.set.queues[i]);
    }
    sg_free(a.set.queues);
    sg_kafka_props_free(a.props);
    sg_opts_fini(&opts); /* frees queue_args too */
    return rc;
}
