/*
 * kafka conf: librdkafka configuration from sg_kafka_opts_t (with the pass-through
 * properties for SASL/TLS), properties files, topic names, and creating topics with the
 * admin API.
 *
 * librdkafka's own log lines and errors go through sg_log, so they are JSON lines like
 * every other line of sagad and saga-worker. It must never make a broker outage fatal:
 * callers retry topic creation.
 */
#include "orchestrator/log/log.h"
#include "orchestrator/transport/kafka.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* librdkafka's syslog-style levels to ours. Its informational chatter stays at debug. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    sg_log_level_t l = level <= 3 ? SG_LOG_ERROR : level == 4 ? SG_LOG_WARN : SG_LOG_DEBUG;
    if (sg_log_enabled(l)) {
        sg_log(l, NULL, "librdkafka %s: %s: %s", rd_kafka_name(rk), fac, buf);
    }
}

bool sg_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                       size_t errlen)
{
    char why[256] = "";
    if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka property %s: %s", key, why);
        return false;
    }
    return true;
}

/* Applies a NULL-terminated list of "key=value" properties. */
static bool set_list(rd_kafka_conf_t *conf, const char *const *list, char *err, size_t errlen)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
        const char *kv = list[i];
        const char *eq = strchr(kv, '=');
        if (eq == NULL || eq == kv) {
            snprintf(err, errlen, "kafka property \"%s\" is not key=value", kv);
            return false;
        }
        char key[256];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
        if (!sg_kafka_conf_set(conf, key, eq + 1, err, errlen)) {
            return false;
        }
    }
    return true;
}

rd_kafka_conf_t *sg_kafka_conf_new(const sg_kafka_opts_t *o, const char *client_id,
                                   const char *const *defaults, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    const char *brokers = o != NULL && o->brokers != NULL ? o->brokers : SG_KAFKA_DEFAULT_BROKERS;
    if (client_id == NULL) {
        client_id = o != NULL && o->client_id != NULL ? o->client_id : "sagad";
    }
    if (!sg_kafka_conf_set(conf, "bootstrap.servers", brokers, err, errlen) ||
        !sg_kafka_conf_set(conf, "client.id", client_id, err, errlen)) {
        goto fail;
    }
    if (!set_list(conf, defaults, err, errlen) ||
        !set_list(conf, o != NULL ? o->props : NULL, err, errlen)) {
        goto fail;
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- property lists ---- */

static size_t props_count(char **props)
{
    size_t n = 0;
    while (props != NULL && props[n] != NULL) {
        n++;
    }
    return n;
}

sg_err_t sg_kafka_props_add(char ***props, const char *key_value)
{
    const char *eq = strchr(key_value, '=');
    if (eq == NULL || eq == key_value) {
        return SG_ERR_INVALID;
    }
    size_t n = props_count(*props);
    char **grown = sg_realloc(*props, (n + 2) * sizeof(*grown));
    if (grown == NULL) {
        return SG_ERR_NOMEM;
    }
    *props = grown;
    grown[n] = sg_strdup(key_value);
    grown[n + 1] = NULL;
    return grown[n] != NULL ? SG_OK : SG_ERR_NOMEM;
}

void sg_kafka_props_free(char **props)
{
    for (size_t i = 0; props != NULL && props[i] != NULL; i++) {
        sg_free(props[i]);
    }
    sg_free(props);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) {
        *--e = '\0';
    }
    return s;
}

sg_err_t sg_kafka_props_read(const char *path, char ***props, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    if (sg_file_read(path, 1 << 20, &text, &len) != SG_OK) {
        snprintf(err, errlen, "%s: cannot read the file", path);
        return SG_ERR_IO;
    }
    sg_err_t rc = SG_OK;
    unsigned lineno = 0;
    /* Line by line by hand: strtok would skip empty lines and miscount line numbers. */
    for (char *p = text; rc == SG_OK && p != NULL && *p != '\0';) {
        char *nl = strchr(p, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        lineno++;
        char *hash = strchr(p, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        char *line = trim(p);
        p = nl != NULL ? nl + 1 : NULL;
        if (*line == '\0') {
            continue;
        }
        char *eq = strchr(line, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%u: expected key = value", path, lineno);
            rc = SG_ERR_INVALID;
            break;
        }
        *eq = '\0';
        char *key = trim(line), *value = trim(eq + 1);
        if (*key == '\0') {
            snprintf(err, errlen, "%s:%u: the key is empty", path, lineno);
            rc = SG_ERR_INVALID;
            break;
        }
        char *kv = sg_asprintf("%s=%s", key, value);
        rc = kv != NULL ? sg_kafka_props_add(props, kv) : SG_ERR_NOMEM;
        sg_free(kv);
        if (rc != SG_OK) {
            snprintf(err, errlen, "out of memory");
        }
    }
    sg_free(text);
    return rc;
}

/* ---- topics ---- */

bool sg_kafka_queue_valid(const char *queue, size_t len)
{
    if (queue == NULL || len == 0 || len > 200) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = queue[i];
        if (!isalnum((unsigned char)c) && c != '_' && c != '-') {
            return false;
        }
    }
    return true;
}

bool sg_kafka_task_topic(const char *queue, size_t len, bool dlq, char *buf, size_t buflen)
{
    if (!sg_kafka_queue_valid(queue, len)) {
        return false;
    }
    int n = snprintf(buf, buflen, SG_KAFKA_TASKS_PREFIX "%.*s%s", (int)len, queue,
                     dlq ? SG_KAFKA_DLQ_SUFFIX : "");
    return n > 0 && (size_t)n < buflen;
}

/*
 * Fills nt[0..*n_missing) with new-topic specs of the names the cluster does not have
 * (one metadata request for every topic: asking for one by name could auto-create it).
 */
static sg_err_t missing_topics(rd_kafka_t *rk, const char *const *names, size_t n,
                               rd_kafka_NewTopic_t **nt, size_t *n_missing, bool *missing,
                               int partitions, int replication, int timeout_ms, char *err,
                               size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "listing topics: %s", rd_kafka_err2str(e));
        return SG_ERR_IO;
    }
    sg_err_t rc = SG_OK;
    for (size_t i = 0; i < n && rc == SG_OK; i++) {
        bool found = false;
        for (int k = 0; k < md->topic_cnt && !found; k++) {
            found = strcmp(md->topics[k].topic, names[i]) == 0 &&
                    md->topics[k].err == RD_KAFKA_RESP_ERR_NO_ERROR;
        }
        if (found) {
            continue;
        }
        if (missing != NULL) {
            missing[i] = true;
        }
        char why[256] = "";
        nt[*n_missing] = rd_kafka_NewTopic_new(names[i], partitions, replication, why, sizeof(why));
        if (nt[*n_missing] == NULL) {
            snprintf(err, errlen, "topic %s: %s", names[i], why);
            rc = SG_ERR_INVALID;
        } else {
            (*n_missing)++;
        }
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* Checks the per-topic answers of CreateTopics; an existing topic is fine. */
static sg_err_t check_created(rd_kafka_event_t *ev, char *err, size_t errlen)
{
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "creating topics: %s", rd_kafka_event_error_string(ev));
        return SG_ERR_IO;
    }
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **topics =
        res != NULL ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
    for (size_t i = 0; i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(topics[i]);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            const char *msg = rd_kafka_topic_result_error_string(topics[i]);
            snprintf(err, errlen, "creating topic %s: %s", rd_kafka_topic_result_name(topics[i]),
                     msg != NULL ? msg : rd_kafka_err2str(e));
            return SG_ERR_IO;
        }
    }
    return SG_OK;
}

sg_err_t sg_kafka_topics_create(const sg_kafka_opts_t *o, const char *const *names, size_t n,
                                int timeout_ms, char *err, size_t errlen)
{
    return sg_kafka_topics_create_ex(o, names, n, timeout_ms, NULL, err, errlen);
}

sg_err_t sg_kafka_topics_create_ex(const sg_kafka_opts_t *o, const char *const *names, size_t n,
                                   int timeout_ms, bool *missing, char *err, size_t errlen)
{
    for (size_t i = 0; missing != NULL && i < n; i++) {
        missing[i] = false;
    }
    if (n == 0) {
        return SG_OK;
    }
    rd_kafka_conf_t *conf = sg_kafka_conf_new(o, NULL, NULL, err, errlen);
    if (conf == NULL) {
        return SG_ERR_INVALID;
    }
    char why[256] = "";
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka admin client: %s", why);
        return SG_ERR_INVALID;
    }
    int partitions =
        (int)(o != NULL && o->partitions ? o->partitions : SG_KAFKA_DEFAULT_PARTITIONS);
    int replication = (int)(o != NULL && o->replication ? o->replication : 1);
    sg_err_t rc = SG_ERR_NOMEM;
    rd_kafka_NewTopic_t **nt = sg_calloc(n, sizeof(*nt));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    snprintf(err, errlen, "out of memory");
    if (nt == NULL || q == NULL || ao == NULL) {
        goto out;
    }
    rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, why, sizeof(why));
    rd_kafka_AdminOptions_set_operation_timeout(ao, timeout_ms, why, sizeof(why));
    /* Only what is missing: creating needs the controller (and rights) that merely
     * using a topic does not. */
    size_t n_missing = 0;
    rc = missing_topics(rk, names, n, nt, &n_missing, missing, partitions, replication, timeout_ms,
                        err, errlen);
    if (rc != SG_OK) {
        goto out;
    }
    if (n_missing == 0) {
        rc = SG_OK;
        goto out;
    }
    rd_kafka_CreateTopics(rk, nt, n_missing, ao, q);
    /* The request times out on its own; the extra second only covers the reply. */
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (ev == NULL) {
        snprintf(err, errlen, "creating topics: no answer within %d ms", timeout_ms);
        rc = SG_ERR_IO;
        goto out;
    }
    rc = check_created(ev, err, errlen);
    rd_kafka_event_destroy(ev);
out:
    for (size_t i = 0; nt != NULL && i < n; i++) {
        if (nt[i] != NULL) {
            rd_kafka_NewTopic_destroy(nt[i]);
        }
    }
    sg_free(nt);
    if (ao != NULL) {
        rd_kafka_AdminOptions_destroy(ao);
    }
    if (q != NULL) {
        rd_kafka_queue_destroy(q);
    }
    rd_kafka_destroy(rk);
    if (rc == SG_OK) {
        err[0] = '\0';
    }
    return rc;
}
