/*
 * Unit tests of the kafka transport and its kit, against librdkafka's in-process mock
 * cluster (no broker needed): the wire messages of schemas/saga.proto (round trips and
 * malformed input), librdkafka property files, dispatch -> a fake worker in this test ->
 * saga.results -> on_result, an undecodable result skipped, an activity no worker can
 * take answered fatally, offsets of saga.results committed only after results_sync
 * said the engine made them durable, and the producer recreated after a fatal error
 * without losing a message. Then sagad's side of the dead letters and of its outbox: the
 * reader of saga.tasks.<queue>.dlq (fields, headers, offsets after sync only), publish(),
 * and the whole driver over the transport: a workflow's event on its topic, one that
 * does not fit its message kept in the log only, a dead letter recorded, requeued onto
 * its tasks topic, discarded, and the transport's metrics. Heartbeats: the wire message,
 * the worker's ticker (rate, progress, none after the handler returned, give-up answers),
 * a real saga-worker process on the mock (heartbeats while its task runs, none after the
 * result), sagad's reader (on_heartbeat, garbage skipped); start with the broker down; and
 * a dead letter recorded whatever allocation fails.
 *
 * The real broker, sagad and saga-workers as processes are tests/kafka/kafka_e2e.py.
 * Every wait is bounded and on a condition, never a blind sleep.
 */
/* cmocka.h needs these before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "activities/common/events.h"
#include "orchestrator/driver/driver.h"
#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"
#include "orchestrator/transport/kafka.h"

/* After rdkafka.h (which kafka.h includes). */
#include <librdkafka/rdkafka_mock.h>

#define WAIT_SECONDS 120
#define PARTITIONS 2

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- wire messages ---- */

static void test_wire_task_roundtrip(void **state)
{
    (void)state;
    sg_task_t task = {.instance_id = "01JABCDEFGHJKMNPQRSTVWXYZ0",
                      .step_id = "charge",
                      .step = 3,
                      .attempt = 2,
                      .compensation = true,
                      .activity = "payment.refund",
                      .input = "{\"amount\":12}",
                      .idempotency_key = "01JABCDEFGHJKMNPQRSTVWXYZ0/charge/compensate",
                      .deadline_ms = 1234567};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sg_wire_task_encode(&task, 42, &buf, &len), SG_OK);
    sg_wire_task_t *w = NULL;
    char err[256];
    assert_int_equal(sg_wire_task_decode(buf, len, &w, err, sizeof(err)), SG_OK);
    assert_string_equal(w->task.instance_id, task.instance_id);
    assert_string_equal(w->task.step_id, "charge");
    assert_int_equal(w->task.step, 3);
    assert_int_equal(w->task.attempt, 2);
    assert_true(w->task.compensation);
    assert_string_equal(w->task.activity, "payment.refund");
    assert_string_equal(w->task.input, "{\"amount\":12}");
    assert_string_equal(w->task.idempotency_key, task.idempotency_key);
    assert_int_equal(w->task.deadline_ms, 1234567);
    assert_string_equal(w->correlation_id, task.instance_id);
    assert_int_equal(w->dispatched_ms, 42);
    char tp[56];
    sg_wire_traceparent(&task, tp);
    assert_string_equal(w->traceparent, tp);
    assert_int_equal(strlen(tp), 55);
    assert_memory_equal(tp, "00-", 3);
    sg_wire_task_free(w);
    /* Every attempt of a saga shares the trace id, never the parent id. */
    sg_task_t again = task;
    again.attempt = 3;
    char tp2[56];
    sg_wire_traceparent(&again, tp2);
    assert_memory_equal(tp, tp2, 35);
    assert_memory_not_equal(tp + 36, tp2 + 36, 16);
    sg_free(buf);
}

static void test_wire_result_roundtrip(void **state)
{
    (void)state;
    sg_task_t task = {.instance_id = "I1",
                      .step_id = "s",
                      .step = 1,
                      .attempt = 1,
                      .activity = "test.echo",
                      .input = "{}",
                      .idempotency_key = "I1/s"};
    sg_task_result_t res = {0};
    sg_task_fail(&res, SG_TASK_RETRYABLE, "test.flaky", "attempt %d", 1);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sg_wire_result_encode(&task, NULL, &res, "w1", 10, 20, &buf, &len), SG_OK);
    sg_task_result_fini(&res);
    sg_wire_result_t *w = NULL;
    char err[256];
    assert_int_equal(sg_wire_result_decode(buf, len, &w, err, sizeof(err)), SG_OK);
    assert_int_equal(w->res.outcome, SG_TASK_RETRYABLE);
    assert_string_equal(w->res.error_code, "test.flaky");
    assert_string_equal(w->res.error_message, "attempt 1");
    assert_null(w->res.output);
    assert_string_equal(w->worker_id, "w1");
    assert_int_equal(w->started_ms, 10);
    assert_int_equal(w->finished_ms, 20);
    assert_string_equal(w->task.idempotency_key, "I1/s");
    assert_null(w->task.input);
    sg_wire_result_free(w);
    sg_free(buf);

    sg_task_ok(&res, "{\"x\":1}");
    assert_int_equal(sg_wire_result_encode(&task, "00-tp", &res, "w1", 1, 2, &buf, &len), SG_OK);
    sg_task_result_fini(&res);
    assert_int_equal(sg_wire_result_decode(buf, len, &w, err, sizeof(err)), SG_OK);
    assert_int_equal(w->res.outcome, SG_TASK_OK);
    assert_string_equal(w->res.output, "{\"x\":1}");
    assert_string_equal(w->traceparent, "00-tp");
    sg_wire_result_free(w);
    sg_free(buf);
}

static void test_wire_malformed(void **state)
{
    (void)state;
    char err[256];
    sg_wire_task_t *wt = NULL;
    sg_wire_result_t *wr = NULL;
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02};
    assert_int_equal(sg_wire_task_decode(garbage, sizeof(garbage), &wt, err, sizeof(err)),
                     SG_ERR_INVALID);
    assert_int_equal(sg_wire_result_decode(garbage, sizeof(garbage), &wr, err, sizeof(err)),
                     SG_ERR_INVALID);
    /* An empty message decodes but has no ids. */
    assert_int_equal(sg_wire_task_decode("", 0, &wt, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "instance_id"));
    /* An instance id the driver could not hold. */
    sg_task_t task = {.instance_id = "0123456789012345678901234567890123456789",
                      .step_id = "s",
                      .attempt = 1,
                      .activity = "test.echo",
                      .input = "{}",
                      .idempotency_key = "k"};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sg_wire_task_encode(&task, 0, &buf, &len), SG_OK);
    assert_int_equal(sg_wire_task_decode(buf, len, &wt, err, sizeof(err)), SG_ERR_INVALID);
    sg_free(buf);
    /* Attempt 0 does not exist. */
    task.instance_id = "I";
    task.attempt = 0;
    assert_int_equal(sg_wire_task_encode(&task, 0, &buf, &len), SG_OK);
    assert_int_equal(sg_wire_task_decode(buf, len, &wt, err, sizeof(err)), SG_ERR_INVALID);
    sg_free(buf);
    /* A task is not a result: its field 8 (input, bytes) is no outcome. */
    task.attempt = 1;
    assert_int_equal(sg_wire_task_encode(&task, 0, &buf, &len), SG_OK);
    assert_int_equal(sg_wire_result_decode(buf, len, &wr, err, sizeof(err)), SG_ERR_INVALID);
    sg_free(buf);
    /* Every prefix of a valid message is rejected or decoded, never a crash. */
    task.input = "{\"a\":[1,2,3]}";
    assert_int_equal(sg_wire_task_encode(&task, 0, &buf, &len), SG_OK);
    for (size_t i = 0; i < len; i++) {
        if (sg_wire_task_decode(buf, i, &wt, err, sizeof(err)) == SG_OK) {
            sg_wire_task_free(wt);
        }
    }
    sg_free(buf);
    assert_int_equal(sg_wire_task_encode(NULL, 0, &buf, &len), SG_ERR_INVALID);
}

static void test_wire_oom(void **state)
{
    (void)state;
    sg_task_t task = {.instance_id = "I",
                      .step_id = "s",
                      .attempt = 1,
                      .activity = "test.echo",
                      .input = "{}",
                      .idempotency_key = "I/s"};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sg_wire_task_encode(&task, 0, &buf, &len), SG_OK);
    for (size_t n = 1; n < 64; n++) {
        sg_alloc_fail_at(n);
        sg_wire_task_t *w = NULL;
        char err[128];
        sg_err_t rc = sg_wire_task_decode(buf, len, &w, err, sizeof(err));
        sg_alloc_fail_at(0);
        if (rc == SG_OK) {
            sg_wire_task_free(w);
            break;
        }
        assert_true(rc == SG_ERR_NOMEM || rc == SG_ERR_INVALID);
    }
    sg_free(buf);
}

static void test_wire_heartbeat_roundtrip(void **state)
{
    (void)state;
    /* heartbeat_ms travels with the task. */
    sg_task_t task = {.instance_id = "01JABCDEFGHJKMNPQRSTVWXYZ0",
                      .step_id = "export",
                      .step = 4,
                      .attempt = 3,
                      .compensation = true,
                      .activity = "test.sleep",
                      .input = "{}",
                      .idempotency_key = "01JABCDEFGHJKMNPQRSTVWXYZ0/export/compensate",
                      .heartbeat_ms = 10000};
    uint8_t *buf = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(sg_wire_task_encode(&task, 1, &buf, &len), SG_OK);
    sg_wire_task_t *wt = NULL;
    assert_int_equal(sg_wire_task_decode(buf, len, &wt, err, sizeof(err)), SG_OK);
    assert_int_equal(wt->task.heartbeat_ms, 10000);
    sg_wire_task_free(wt);
    sg_free(buf);

    assert_int_equal(
        sg_wire_heartbeat_encode(&task, "host:42", "{\"done\":40,\"total\":100}", 777, &buf, &len),
        SG_OK);
    sg_wire_heartbeat_t *w = NULL;
    assert_int_equal(sg_wire_heartbeat_decode(buf, len, &w, err, sizeof(err)), SG_OK);
    assert_string_equal(w->hb.instance_id, task.instance_id);
    assert_int_equal(w->hb.step, 4);
    assert_int_equal(w->hb.attempt, 3);
    assert_true(w->hb.compensation);
    assert_string_equal(w->hb.worker_id, "host:42");
    assert_string_equal(w->hb.details, "{\"done\":40,\"total\":100}");
    assert_int_equal(w->hb.sent_ms, 777);
    assert_string_equal(w->step_id, "export");
    assert_string_equal(w->idempotency_key, task.idempotency_key);
    char tp[56];
    sg_wire_traceparent(&task, tp);
    assert_string_equal(w->traceparent, tp);
    sg_wire_heartbeat_free(w);
    /* Every prefix is refused or decoded, never a crash; out of memory is said so. */
    for (size_t i = 0; i < len; i++) {
        if (sg_wire_heartbeat_decode(buf, i, &w, err, sizeof(err)) == SG_OK) {
            sg_wire_heartbeat_free(w);
        }
    }
    for (size_t n = 1; n < 64; n++) {
        sg_alloc_fail_at(n);
        sg_err_t rc = sg_wire_heartbeat_decode(buf, len, &w, err, sizeof(err));
        sg_alloc_fail_at(0);
        if (rc == SG_OK) {
            sg_wire_heartbeat_free(w);
            break;
        }
        assert_true(rc == SG_ERR_NOMEM || rc == SG_ERR_INVALID); /* protobuf-c says NULL */
    }
    sg_free(buf);

    /* No details, and details that are no JSON: the heartbeat counts, without them. */
    assert_int_equal(sg_wire_heartbeat_encode(&task, "w", NULL, 1, &buf, &len), SG_OK);
    assert_int_equal(sg_wire_heartbeat_decode(buf, len, &w, err, sizeof(err)), SG_OK);
    assert_null(w->hb.details);
    sg_wire_heartbeat_free(w);
    sg_free(buf);
    assert_int_equal(sg_wire_heartbeat_encode(&task, "w", "{not json", 1, &buf, &len), SG_OK);
    assert_int_equal(sg_wire_heartbeat_decode(buf, len, &w, err, sizeof(err)), SG_OK);
    assert_null(w->hb.details);
    sg_wire_heartbeat_free(w);
    sg_free(buf);

    /* Refused: a worker id that is not printable, attempt 0, garbage, a task. */
    assert_int_equal(sg_wire_heartbeat_encode(&task, "bad\nid", NULL, 1, &buf, &len), SG_OK);
    assert_int_equal(sg_wire_heartbeat_decode(buf, len, &w, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "worker_id"));
    sg_free(buf);
    task.attempt = 0;
    assert_int_equal(sg_wire_heartbeat_encode(&task, "w", NULL, 1, &buf, &len), SG_OK);
    assert_int_equal(sg_wire_heartbeat_decode(buf, len, &w, err, sizeof(err)), SG_ERR_INVALID);
    sg_free(buf);
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02};
    assert_int_equal(sg_wire_heartbeat_decode(garbage, sizeof(garbage), &w, err, sizeof(err)),
                     SG_ERR_INVALID);
    assert_int_equal(sg_wire_heartbeat_decode("", 0, &w, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "instance_id"));
    assert_int_equal(sg_wire_heartbeat_encode(NULL, "w", NULL, 1, &buf, &len), SG_ERR_INVALID);
}

/* ---- properties ---- */

static void test_props_read(void **state)
{
    (void)state;
    char path[] = "/tmp/sg_kafka_propsXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "# SASL\n\nsecurity.protocol = SASL_PLAINTEXT\n"
                        "sasl.mechanism=PLAIN  # inline comment\nlinger.ms = 2\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    char **props = NULL;
    char err[256] = "";
    assert_int_equal(sg_kafka_props_read(path, &props, err, sizeof(err)), SG_OK);
    assert_string_equal(props[0], "security.protocol=SASL_PLAINTEXT");
    assert_string_equal(props[1], "sasl.mechanism=PLAIN");
    assert_string_equal(props[2], "linger.ms=2");
    assert_null(props[3]);
    sg_kafka_opts_t ko = {.props = (const char *const *)props};
    rd_kafka_conf_t *conf = sg_kafka_conf_new(&ko, NULL, NULL, err, sizeof(err));
    assert_non_null(conf);
    char v[64];
    size_t vlen = sizeof(v);
    assert_int_equal(rd_kafka_conf_get(conf, "linger.ms", v, &vlen), RD_KAFKA_CONF_OK);
    assert_string_equal(v, "2");
    rd_kafka_conf_destroy(conf);
    sg_kafka_props_free(props);
    props = NULL;

    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    const char bad[] = "linger.ms = 2\nno equals sign here\n";
    assert_int_equal(write(fd, bad, sizeof(bad) - 1), (ssize_t)(sizeof(bad) - 1));
    close(fd);
    assert_int_equal(sg_kafka_props_read(path, &props, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, ":2: expected key = value"));
    sg_kafka_props_free(props);
    props = NULL;
    unlink(path);

    /* An unknown librdkafka property is refused with its name. */
    assert_int_equal(sg_kafka_props_add(&props, "no.such.property=1"), SG_OK);
    ko.props = (const char *const *)props;
    assert_null(sg_kafka_conf_new(&ko, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no.such.property"));
    assert_int_equal(sg_kafka_props_add(&props, "novalue"), SG_ERR_INVALID);
    sg_kafka_props_free(props);
}

static void test_topic_names(void **state)
{
    (void)state;
    char buf[300];
    assert_true(sg_kafka_task_topic("payment", 7, false, buf, sizeof(buf)));
    assert_string_equal(buf, "saga.tasks.payment");
    assert_true(sg_kafka_task_topic("payment.charge", 7, true, buf, sizeof(buf)));
    assert_string_equal(buf, "saga.tasks.payment.dlq");
    assert_false(sg_kafka_task_topic("pay ment", 8, false, buf, sizeof(buf)));
    assert_false(sg_kafka_task_topic("", 0, false, buf, sizeof(buf)));
    assert_false(sg_kafka_task_topic("payment", 7, false, buf, 10));
    assert_true(sg_kafka_queue_valid("order_v2-x", 10));
    assert_false(sg_kafka_queue_valid("a/b", 3));
}

/* ---- the mock cluster and a fake worker ---- */

typedef struct {
    rd_kafka_t *host; /* the handle the mock cluster lives in */
    rd_kafka_mock_cluster_t *mc;
    char brokers[256];
} mock_t;

static void mock_start(mock_t *m)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err)), RD_KAFKA_CONF_OK);
    m->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(m->host);
    m->mc = rd_kafka_mock_cluster_new(m->host, 1);
    assert_non_null(m->mc);
    snprintf(m->brokers, sizeof(m->brokers), "%s", rd_kafka_mock_cluster_bootstraps(m->mc));
    /* The mock has no CreateTopics: every topic used is made here (the shop's queues for
     * sagad's driver, which serves them all). */
    static const char *const topics[] = {SG_KAFKA_RESULTS_TOPIC,    "saga.tasks.test",
                                         "saga.tasks.test.dlq",     "fatal.test",
                                         "order.completed",         "order.created",
                                         "saga.tasks.order",        "saga.tasks.order.dlq",
                                         "saga.tasks.inventory",    "saga.tasks.inventory.dlq",
                                         "saga.tasks.payment",      "saga.tasks.payment.dlq",
                                         "saga.tasks.notification", "saga.tasks.notification.dlq",
                                         SG_KAFKA_HEARTBEATS_TOPIC};
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        assert_int_equal(rd_kafka_mock_topic_create(m->mc, topics[i], PARTITIONS, 1),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    }
}

static void mock_stop(mock_t *m)
{
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(m->host);
}

static rd_kafka_t *client(const char *brokers, rd_kafka_type_t type, const char *group)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    if (group != NULL) {
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err));
        rd_kafka_conf_set(conf, "partition.assignment.strategy", "range", err, sizeof(err));
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    assert_non_null(rk);
    if (type == RD_KAFKA_CONSUMER) {
        rd_kafka_poll_set_consumer(rk);
    }
    return rk;
}

static void subscribe(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Answers every task of saga.tasks.test with ok(output = input), like a saga-worker. */
typedef struct {
    const char *brokers;
    const char *topic; /* NULL: saga.tasks.test */
    atomic_bool stop;
    atomic_size_t handled;
    pthread_t thread;
} fake_t;

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    rd_kafka_t *c = client(f->brokers, RD_KAFKA_CONSUMER, "fake-worker");
    rd_kafka_t *p = client(f->brokers, RD_KAFKA_PRODUCER, NULL);
    subscribe(c, f->topic != NULL ? f->topic : "saga.tasks.test");
    while (!atomic_load(&f->stop)) {
        rd_kafka_poll(p, 0);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 50);
        if (m == NULL) {
            continue;
        }
        sg_wire_task_t *w = NULL;
        char err[256];
        if (m->err == 0 && sg_wire_task_decode(m->payload, m->len, &w, err, sizeof(err)) == SG_OK) {
            sg_task_result_t res = {0};
            sg_task_ok(&res, w->task.input);
            uint8_t *buf = NULL;
            size_t len = 0;
            assert_int_equal(
                sg_wire_result_encode(&w->task, w->traceparent, &res, "fake", 1, 2, &buf, &len),
                SG_OK);
            rd_kafka_producev(p, RD_KAFKA_V_TOPIC(SG_KAFKA_RESULTS_TOPIC),
                              RD_KAFKA_V_KEY(w->task.instance_id, strlen(w->task.instance_id)),
                              RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END);
            sg_free(buf);
            sg_task_result_fini(&res);
            sg_wire_task_free(w);
            atomic_fetch_add(&f->handled, 1);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_flush(p, 10000);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(p);
    return NULL;
}

/* ---- the transport against the mock ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n_results, n_ok;
    unsigned seen[64];
    bool wrong_output;
    char last_code[64];
    bool allow_sync;
    size_t syncs;
} col_t;

typedef struct {
    mock_t mock;
    fake_t fake;
    col_t col;
    sg_kafka_opts_t ko;
    const sg_transport_vt_t *vt;
    sg_transport_t *t;
} h_t;

static void on_result(void *ctx, const sg_task_t *task, const sg_task_result_t *res)
{
    col_t *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (task->step < 64) {
        c->seen[task->step]++;
    }
    c->n_results++;
    if (res->outcome == SG_TASK_OK) {
        c->n_ok++;
        char want[64];
        snprintf(want, sizeof(want), "{\"n\":%u}", task->step);
        c->wrong_output |= strcmp(res->output, want) != 0;
    } else {
        snprintf(c->last_code, sizeof(c->last_code), "%s", sg_task_result_code(res));
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static sg_err_t results_sync(void *ctx)
{
    col_t *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->syncs++;
    bool allow = c->allow_sync;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return allow ? SG_OK : SG_ERR_STATE;
}

static bool wait_results(col_t *c, size_t n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&c->mu);
    while (c->n_results < n) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    bool ok = c->n_results >= n;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static int setup(void **state)
{
    h_t *h = calloc(1, sizeof(*h));
    pthread_mutex_init(&h->col.mu, NULL);
    pthread_cond_init(&h->col.cv, NULL);
    mock_start(&h->mock);
    h->ko = (sg_kafka_opts_t){.brokers = h->mock.brokers, .partitions = PARTITIONS};
    h->vt = sg_transport_find("kafka");
    assert_non_null(h->vt);
    *state = h;
    return 0;
}

static void start_transport(h_t *h, bool with_sync)
{
    static const char *const queues[] = {"test", NULL};
    sg_transport_opts_t o = {.queues = queues,
                             .test_activities = true,
                             .on_result = on_result,
                             .results_sync = with_sync ? results_sync : NULL,
                             .ctx = &h->col,
                             .kafka = &h->ko};
    char err[512] = "";
    assert_int_equal(h->vt->start(&o, &h->t, err, sizeof(err)), SG_OK);
}

static void start_fake(h_t *h)
{
    h->fake.brokers = h->mock.brokers;
    assert_int_equal(pthread_create(&h->fake.thread, NULL, fake_main, &h->fake), 0);
}

static int teardown(void **state)
{
    h_t *h = *state;
    if (h->t != NULL) {
        h->vt->stop(h->t);
    }
    if (h->fake.brokers != NULL) {
        atomic_store(&h->fake.stop, true);
        pthread_join(h->fake.thread, NULL);
    }
    mock_stop(&h->mock);
    pthread_cond_destroy(&h->col.cv);
    pthread_mutex_destroy(&h->col.mu);
    free(h);
    return 0;
}

static sg_err_t dispatch_n(h_t *h, unsigned from, unsigned n)
{
    for (unsigned i = from; i < from + n; i++) {
        char id[32], key[64], input[64];
        snprintf(id, sizeof(id), "I%03u", i);
        snprintf(key, sizeof(key), "%s/s", id);
        snprintf(input, sizeof(input), "{\"n\":%u}", i);
        sg_task_t task = {.instance_id = id,
                          .step_id = "s",
                          .step = i,
                          .attempt = 1,
                          .activity = "test.echo",
                          .input = input,
                          .idempotency_key = key,
                          .deadline_ms = sg_now_ms() + 60000};
        sg_err_t rc = h->vt->dispatch(h->t, &task);
        if (rc != SG_OK) {
            return rc;
        }
    }
    return SG_OK;
}

static void test_dispatch_to_result(void **state)
{
    h_t *h = *state;
    h->col.allow_sync = true;
    start_transport(h, true);
    start_fake(h);
    assert_int_equal(dispatch_n(h, 0, 20), SG_OK);
    assert_true(wait_results(&h->col, 20));
    pthread_mutex_lock(&h->col.mu);
    assert_int_equal(h->col.n_ok, 20);
    assert_false(h->col.wrong_output);
    for (unsigned i = 0; i < 20; i++) {
        assert_int_equal(h->col.seen[i], 1);
    }
    pthread_mutex_unlock(&h->col.mu);
    /* An activity no worker can ever take is answered, through saga.results too. */
    sg_task_t bad = {.instance_id = "IBAD",
                     .step_id = "s",
                     .step = 63,
                     .attempt = 1,
                     .activity = "nodot",
                     .input = "{}",
                     .idempotency_key = "IBAD/s"};
    assert_int_equal(h->vt->dispatch(h->t, &bad), SG_OK);
    assert_true(wait_results(&h->col, 21));
    pthread_mutex_lock(&h->col.mu);
    assert_string_equal(h->col.last_code, "saga.unknown_activity");
    assert_int_equal(h->col.seen[63], 1);
    pthread_mutex_unlock(&h->col.mu);
    assert_int_equal(h->vt->dispatch(h->t, NULL), SG_ERR_INVALID);
}

static void test_undecodable_result_skipped(void **state)
{
    h_t *h = *state;
    h->col.allow_sync = true;
    start_transport(h, true);
    /* Garbage, then a valid result, on the same partition (same key). */
    rd_kafka_t *p = client(h->mock.brokers, RD_KAFKA_PRODUCER, NULL);
    static const char garbage[] = "\xff\xff\xff\xff\x0f this is not protobuf";
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(SG_KAFKA_RESULTS_TOPIC),
                                       RD_KAFKA_V_KEY("I007", 4),
                                       RD_KAFKA_V_VALUE((void *)garbage, sizeof(garbage) - 1),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    sg_task_t task = {.instance_id = "I007",
                      .step_id = "s",
                      .step = 7,
                      .attempt = 1,
                      .activity = "test.echo",
                      .idempotency_key = "I007/s"};
    sg_task_result_t res = {0};
    sg_task_ok(&res, "{\"n\":7}");
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sg_wire_result_encode(&task, NULL, &res, "w", 1, 2, &buf, &len), SG_OK);
    sg_task_result_fini(&res);
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(SG_KAFKA_RESULTS_TOPIC),
                                       RD_KAFKA_V_KEY("I007", 4), RD_KAFKA_V_VALUE(buf, len),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    sg_free(buf);
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
    assert_true(wait_results(&h->col, 1));
    pthread_mutex_lock(&h->col.mu);
    assert_int_equal(h->col.n_results, 1);
    assert_int_equal(h->col.seen[7], 1);
    assert_false(h->col.wrong_output);
    pthread_mutex_unlock(&h->col.mu);
}

/* The sum over topic's partitions of group's committed offsets, and of the high
 * watermarks. */
static void offsets_of(const char *brokers, const char *group, const char *topic,
                       int64_t *committed, int64_t *high)
{
    rd_kafka_t *c = client(brokers, RD_KAFKA_CONSUMER, group);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int i = 0; i < PARTITIONS; i++) {
        rd_kafka_topic_partition_list_add(l, topic, i);
    }
    *committed = 0;
    *high = 0;
    if (rd_kafka_committed(c, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < l->cnt; i++) {
            *committed += l->elems[i].offset > 0 ? l->elems[i].offset : 0;
        }
    } else {
        *committed = -1;
    }
    for (int i = 0; i < PARTITIONS; i++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(c, topic, i, &lo, &hi, 10000) == 0) {
            *high += hi;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(c);
}

/* The same for saga.results and the group "sagad". */
static void offsets(const char *brokers, int64_t *committed, int64_t *high)
{
    offsets_of(brokers, "sagad", SG_KAFKA_RESULTS_TOPIC, committed, high);
}

static void test_offsets_after_sync_only(void **state)
{
    h_t *h = *state;
    h->col.allow_sync = false; /* the "engine" has not committed anything yet */
    start_transport(h, true);
    start_fake(h);
    assert_int_equal(dispatch_n(h, 0, 10), SG_OK);
    assert_true(wait_results(&h->col, 10));
    /* The commit thread asked, and was told no; nothing may be committed. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&h->col.mu);
    size_t asked = h->col.syncs;
    while (h->col.syncs < asked + 2) {
        if (pthread_cond_timedwait(&h->col.cv, &h->col.mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    assert_true(h->col.syncs >= asked + 2);
    pthread_mutex_unlock(&h->col.mu);
    int64_t committed = 0, high = 0;
    offsets(h->mock.brokers, &committed, &high);
    assert_int_equal(committed, 0);
    assert_int_equal(high, 10);
    /* Now the engine says durable: the offsets follow, up to the end. */
    pthread_mutex_lock(&h->col.mu);
    h->col.allow_sync = true;
    pthread_mutex_unlock(&h->col.mu);
    uint64_t end = mono_ms() + WAIT_SECONDS * 1000u;
    do {
        offsets(h->mock.brokers, &committed, &high);
    } while (committed != high && mono_ms() < end);
    assert_int_equal(committed, 10);
}

/* ---- the producer after a fatal error ---- */

typedef struct {
    pthread_mutex_t mu;
    unsigned delivered[100];
    size_t n;
} dcol_t;

static void delivered(void *arg, void *opaque, sg_err_t rc)
{
    dcol_t *d = arg;
    uintptr_t i = (uintptr_t)opaque;
    pthread_mutex_lock(&d->mu);
    if (rc == SG_OK && i < 100) {
        d->delivered[i]++;
        d->n++;
    }
    pthread_mutex_unlock(&d->mu);
}

static void test_producer_recreated_after_fatal(void **state)
{
    h_t *h = *state;
    dcol_t d = {.n = 0};
    pthread_mutex_init(&d.mu, NULL);
    sg_kafka_producer_t *p = NULL;
    char err[256];
    assert_int_equal(sg_kafka_producer_new(&h->ko, "t", 0, delivered, &d, &p, err, sizeof(err)),
                     SG_OK);
    for (uintptr_t i = 0; i < 100; i++) {
        char v[16];
        int n = snprintf(v, sizeof(v), "m%03u", (unsigned)i);
        assert_int_equal(
            sg_kafka_producer_send(p, "fatal.test", v, (size_t)n, v, (size_t)n, NULL, 0, (void *)i),
            SG_OK);
        if (i == 49) {
            sg_kafka_producer_test_fatal(p);
        }
    }
    assert_true(sg_kafka_producer_flush(p, WAIT_SECONDS * 1000u));
    sg_kafka_producer_stats_t st;
    sg_kafka_producer_stats(p, &st);
    assert_true(st.recreated >= 1);
    assert_int_equal(st.delivered, 100);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(d.n, 100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(d.delivered[i], 1);
    }
    assert_int_equal(sg_kafka_producer_pending(p), 0);
    sg_kafka_producer_free(p);
    pthread_mutex_destroy(&d.mu);

    /* Every message is on the topic (some maybe twice: consumers dedupe). */
    rd_kafka_t *c = client(h->mock.brokers, RD_KAFKA_CONSUMER, "check-fatal");
    subscribe(c, "fatal.test");
    bool seen[100] = {false};
    size_t distinct = 0;
    uint64_t end = mono_ms() + WAIT_SECONDS * 1000u;
    while (distinct < 100 && mono_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m == NULL) {
            continue;
        }
        unsigned i = 0;
        if (m->err == 0 && m->len == 4 && sscanf((const char *)m->payload, "m%3u", &i) == 1 &&
            i < 100 && !seen[i]) {
            seen[i] = true;
            distinct++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    assert_int_equal(distinct, 100);
}

static void test_producer_limits(void **state)
{
    h_t *h = *state;
    sg_kafka_producer_t *p = NULL;
    char err[256];
    assert_int_equal(sg_kafka_producer_new(&h->ko, "t", 2, NULL, NULL, &p, err, sizeof(err)),
                     SG_OK);
    /* Nothing is delivered while the only broker is down, so the cap holds. */
    rd_kafka_mock_broker_set_down(h->mock.mc, 1);
    assert_int_equal(sg_kafka_producer_send(p, "fatal.test", NULL, 0, "a", 1, NULL, 0, NULL),
                     SG_OK);
    sg_kafka_header_t hdr = {.name = "sagad.dlq.reason", .value = "x", .len = 1};
    assert_int_equal(sg_kafka_producer_send(p, "fatal.test", "k", 1, "b", 1, &hdr, 1, NULL), SG_OK);
    assert_int_equal(sg_kafka_producer_send(p, "fatal.test", NULL, 0, "c", 1, NULL, 0, NULL),
                     SG_ERR_LIMIT);
    assert_int_equal(sg_kafka_producer_send(p, NULL, NULL, 0, "c", 1, NULL, 0, NULL),
                     SG_ERR_INVALID);
    rd_kafka_mock_broker_set_up(h->mock.mc, 1);
    assert_true(sg_kafka_producer_flush(p, WAIT_SECONDS * 1000u));
    sg_kafka_producer_free(p);
    sg_kafka_producer_free(NULL);

    /* A bad pass-through property fails start with its name. */
    const char *const props[] = {"no.such.thing=1", NULL};
    sg_kafka_opts_t bad = {.brokers = h->mock.brokers, .props = props};
    assert_int_not_equal(sg_kafka_producer_new(&bad, "t", 0, NULL, NULL, &p, err, sizeof(err)),
                         SG_OK);
    assert_non_null(strstr(err, "no.such.thing"));
    sg_transport_t *t = NULL;
    sg_transport_opts_t o = {.on_result = on_result, .ctx = &h->col, .kafka = &bad};
    assert_int_not_equal(h->vt->start(&o, &t, err, sizeof(err)), SG_OK);
    assert_null(t);
}

/* ---- dead letters and publish() ---- */

/* What on_dead_letter and on_published saw. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;
    char key[2][64], queue[2][32], reason[2][128], headers[2][512], instance[2][32];
    char step[2][32], input[2][64];
    uint32_t attempt[2];
    size_t len[2];
    size_t published;
    uintptr_t opaque;
    sg_err_t rc;
} seen_t;

static seen_t seen = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void on_dead_letter(void *ctx, const sg_dead_letter_t *dl)
{
    (void)ctx;
    pthread_mutex_lock(&seen.mu);
    size_t i = seen.n < 2 ? seen.n : 1;
    snprintf(seen.key[i], sizeof(seen.key[i]), "%s", dl->key ? dl->key : "-");
    snprintf(seen.queue[i], sizeof(seen.queue[i]), "%s", dl->queue);
    snprintf(seen.reason[i], sizeof(seen.reason[i]), "%s", dl->reason ? dl->reason : "-");
    snprintf(seen.headers[i], sizeof(seen.headers[i]), "%s", dl->headers);
    snprintf(seen.instance[i], sizeof(seen.instance[i]), "%s",
             dl->instance_id ? dl->instance_id : "-");
    snprintf(seen.step[i], sizeof(seen.step[i]), "%s", dl->step_id ? dl->step_id : "-");
    snprintf(seen.input[i], sizeof(seen.input[i]), "%s", dl->input ? dl->input : "-");
    seen.attempt[i] = dl->attempt;
    seen.len[i] = dl->len;
    seen.n++;
    pthread_cond_broadcast(&seen.cv);
    pthread_mutex_unlock(&seen.mu);
}

static void on_published(void *ctx, void *opaque, sg_err_t rc)
{
    (void)ctx;
    pthread_mutex_lock(&seen.mu);
    seen.published++;
    seen.opaque = (uintptr_t)opaque;
    seen.rc = rc;
    pthread_cond_broadcast(&seen.cv);
    pthread_mutex_unlock(&seen.mu);
}

/* Waits until *count reaches n (seen.mu guards it). */
static bool wait_seen(const size_t *count, size_t n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&seen.mu);
    while (*count < n) {
        if (pthread_cond_timedwait(&seen.cv, &seen.mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    bool ok = *count >= n;
    pthread_mutex_unlock(&seen.mu);
    return ok;
}

static void seen_reset(void)
{
    pthread_mutex_lock(&seen.mu);
    seen.n = seen.published = 0;
    seen.opaque = 0;
    pthread_mutex_unlock(&seen.mu);
}

/* Produces one message with the headers a worker gives a dead letter (reason NULL: none). */
static void produce(const char *brokers, const char *topic, int32_t partition, const char *key,
                    const void *value, size_t len, const char *reason)
{
    rd_kafka_t *p = client(brokers, RD_KAFKA_PRODUCER, NULL);
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    if (reason != NULL) {
        rd_kafka_header_add(h, "sagad.dlq.reason", -1, reason, -1);
        rd_kafka_header_add(h, "sagad.dlq.starts", -1, "3", -1);
        rd_kafka_header_add(h, "not.ours", -1, "x", -1);
    }
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                       RD_KAFKA_V_KEY(key, strlen(key)),
                                       RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_HEADERS(h),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
}

/* The bytes of an ActivityTask for instance id (step "charge", attempt 2). */
static uint8_t *task_bytes(const char *id, size_t *len)
{
    char key[64];
    snprintf(key, sizeof(key), "%s/charge", id);
    sg_task_t task = {.instance_id = id,
                      .step_id = "charge",
                      .step = 1,
                      .attempt = 2,
                      .activity = "test.echo",
                      .input = "{\"a\":1}",
                      .idempotency_key = key,
                      .deadline_ms = sg_now_ms() + 600000};
    uint8_t *buf = NULL;
    assert_int_equal(sg_wire_task_encode(&task, 1, &buf, len), SG_OK);
    return buf;
}

static void test_dead_letters_read(void **state)
{
    h_t *h = *state;
    seen_reset();
    h->col.allow_sync = false; /* the "engine" has not committed anything yet */
    sg_transport_opts_t o = {.queues = (const char *const[]){"test", NULL},
                             .on_result = on_result,
                             .results_sync = results_sync,
                             .on_dead_letter = on_dead_letter,
                             .ctx = &h->col,
                             .kafka = &h->ko};
    char err[512] = "";
    assert_int_equal(h->vt->start(&o, &h->t, err, sizeof(err)), SG_OK);
    static const char poison[] = "\xff\xff\xff\x0f not a task";
    produce(h->mock.brokers, "saga.tasks.test.dlq", 0, "poison-1", poison, sizeof(poison) - 1,
            "not an ActivityTask\nmessage");
    size_t len = 0;
    uint8_t *task = task_bytes("I900", &len);
    produce(h->mock.brokers, "saga.tasks.test.dlq", 1, "I900", task, len,
            "started 3 times without finishing");
    sg_free(task);
    assert_true(wait_seen(&seen.n, 2));
    pthread_mutex_lock(&seen.mu);
    int p = strcmp(seen.key[0], "poison-1") == 0 ? 0 : 1, t = 1 - p; /* partitions race */
    assert_string_equal(seen.key[p], "poison-1");
    assert_string_equal(seen.queue[p], "test");
    assert_string_equal(seen.reason[p], "not an ActivityTask?message"); /* made printable */
    assert_string_equal(seen.instance[p], "-");
    assert_int_equal(seen.len[p], sizeof(poison) - 1);
    assert_non_null(strstr(seen.headers[p], "\"sagad.dlq.starts\":\"3\""));
    assert_null(strstr(seen.headers[p], "not.ours"));
    assert_string_equal(seen.instance[t], "I900");
    assert_string_equal(seen.step[t], "charge");
    assert_int_equal(seen.attempt[t], 2);
    assert_string_equal(seen.input[t], "{\"a\":1}");
    assert_string_equal(seen.reason[t], "started 3 times without finishing");
    pthread_mutex_unlock(&seen.mu);

    /* Nothing is committed while results_sync says no; everything once it says yes. */
    pthread_mutex_lock(&h->col.mu);
    size_t asked = h->col.syncs;
    pthread_mutex_unlock(&h->col.mu);
    uint64_t end = mono_ms() + WAIT_SECONDS * 1000u;
    for (;;) {
        pthread_mutex_lock(&h->col.mu);
        bool again = h->col.syncs >= asked + 2;
        pthread_mutex_unlock(&h->col.mu);
        if (again || mono_ms() > end) {
            break;
        }
        usleep(10000);
    }
    int64_t committed = 0, high = 0;
    offsets_of(h->mock.brokers, "sagad.dlq", "saga.tasks.test.dlq", &committed, &high);
    assert_int_equal(committed, 0);
    assert_int_equal(high, 2);
    pthread_mutex_lock(&h->col.mu);
    h->col.allow_sync = true;
    pthread_mutex_unlock(&h->col.mu);
    do {
        offsets_of(h->mock.brokers, "sagad.dlq", "saga.tasks.test.dlq", &committed, &high);
    } while (committed != 2 && mono_ms() < end);
    assert_int_equal(committed, 2);
    sg_transport_stats_t st;
    h->vt->stats(h->t, &st);
    assert_int_equal(st.dead_letters, 2);
    assert_int_equal(st.results_undecodable, 0);
}

/* A copy of the first message of topic with this key (free it), read from the start of
 * every partition without a group; NULL when none came. */
static rd_kafka_message_t *find_message(const char *brokers, const char *topic, const char *key)
{
    rd_kafka_t *c = client(brokers, RD_KAFKA_CONSUMER, "find");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int i = 0; i < PARTITIONS; i++) {
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    assert_int_equal(rd_kafka_assign(c, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_message_t *copy = NULL;
    uint64_t end = mono_ms() + WAIT_SECONDS * 1000u;
    while (copy == NULL && mono_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m != NULL && m->err == 0 && m->key_len == strlen(key) &&
            memcmp(m->key, key, m->key_len) == 0) {
            copy = calloc(1, sizeof(*copy) + m->len);
            copy->len = m->len;
            copy->payload = (char *)(copy + 1);
            memcpy(copy->payload, m->payload, m->len);
        }
        if (m != NULL) {
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_destroy(c);
    return copy;
}

static void test_publish(void **state)
{
    h_t *h = *state;
    seen_reset();
    h->col.allow_sync = true;
    sg_transport_opts_t o = {.queues = (const char *const[]){"test", NULL},
                             .on_result = on_result,
                             .on_published = on_published,
                             .ctx = &h->col,
                             .kafka = &h->ko};
    char err[512] = "";
    assert_int_equal(h->vt->start(&o, &h->t, err, sizeof(err)), SG_OK);
    assert_int_equal(h->vt->publish(h->t, "order.completed", "K1", "v1", 2, NULL),
                     SG_ERR_INVALID); /* publications are told apart by their opaque */
    assert_int_equal(h->vt->publish(h->t, "order.completed", "K1", "v1", 2, (void *)7), SG_OK);
    assert_true(wait_seen(&seen.published, 1));
    pthread_mutex_lock(&seen.mu);
    assert_int_equal(seen.opaque, 7);
    assert_int_equal(seen.rc, SG_OK);
    pthread_mutex_unlock(&seen.mu);
    rd_kafka_message_t *m = find_message(h->mock.brokers, "order.completed", "K1");
    assert_non_null(m);
    assert_int_equal(m->len, 2);
    assert_memory_equal(m->payload, "v1", 2);
    free(m);
    sg_transport_stats_t st;
    h->vt->stats(h->t, &st);
    assert_int_equal(st.published, 1);
    assert_int_equal(st.tasks_unacked, 0);
}

/* ---- the driver over the transport ---- */

static const char events_saga[] =
    "saga: kafka_events\nversion: 1\ntimeout: 1m\n"
    "events:\n"
    "  on_start: [order.created]\n" /* its default payload fits no message */
    "  on_complete:\n"
    "    - type: order.completed\n"
    "      data: '{order_id: \"o-1\", total: 12, saga_id: .saga.id}'\n"
    "steps:\n"
    "  - id: one\n    activity: test.echo\n    input: '{n: 1}'\n    pivot: true\n";

typedef struct {
    char event_id[32];
    size_t n;
} log_t;

static bool log_cb(void *ctx, const sg_store_event_t *ev)
{
    log_t *l = ctx;
    snprintf(l->event_id, sizeof(l->event_id), "%s", ev->event_id ? ev->event_id : "");
    l->n++;
    return true;
}

static bool dlq_cb(void *ctx, const sg_store_dlq_t *row)
{
    int64_t *ids = ctx;
    ids[ids[0] < 7 ? ++ids[0] : 7] = row->id;
    return true;
}

/* The ids of the dead letters in status (ids[0] = how many), read as the gateway does. */
static void dlq_ids(const char *db, const char *status, int64_t ids[8])
{
    memset(ids, 0, 8 * sizeof(*ids));
    sg_store_t *ro = NULL;
    sg_store_opts_t so = {.readonly = true};
    assert_int_equal(sg_store_open(db, &so, &ro, NULL, 0), SG_OK);
    assert_int_equal(sg_store_dlq_list(ro, "test", status, 0, 0, dlq_cb, ids), SG_OK);
    sg_store_close(ro);
}

/* The value of an unlabelled series in the driver's /metrics text, or -1. */
static double metric(sg_driver_t *d, const char *name)
{
    sg_buf_t b;
    sg_buf_init(&b);
    sg_metrics_render(sg_driver_metrics(d), &b);
    double v = -1;
    char want[128];
    snprintf(want, sizeof(want), "\n%s ", name);
    const char *at = b.data != NULL ? strstr(b.data, want) : NULL;
    if (at != NULL) {
        v = strtod(at + strlen(want), NULL);
    }
    sg_buf_fini(&b);
    return v;
}

static bool metric_reaches(sg_driver_t *d, const char *name, double v)
{
    uint64_t end = mono_ms() + WAIT_SECONDS * 1000u;
    while (metric(d, name) < v && mono_ms() < end) {
        usleep(10000);
    }
    return metric(d, name) >= v;
}

static void test_driver_over_kafka(void **state)
{
    h_t *h = *state;
    start_fake(h);
    char dir[] = "/tmp/sg_kafka_driverXXXXXX";
    assert_non_null(mkdtemp(dir));
    char wf[300], db[300], file[320];
    snprintf(wf, sizeof(wf), "%s/wf", dir);
    snprintf(db, sizeof(db), "%s/sagad.db", dir);
    snprintf(file, sizeof(file), "%s/events.yaml", wf);
    assert_int_equal(mkdir(wf, 0700), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs(events_saga, f);
    fclose(f);
    sg_driver_opts_t o = {.db_path = db,
                          .sync = SG_SYNC_OFF,
                          .workflows_dir = wf,
                          .data_dir = dir,
                          .transport = "kafka",
                          .test_activities = true,
                          .kafka = &h->ko};
    sg_driver_t *d = NULL;
    char err[512] = "";
    assert_int_equal(sg_driver_start(&o, &d, err, sizeof(err)), SG_OK);

    /* A saga's event on its topic, as the message of its type, with the envelope. */
    sg_start_result_t res;
    assert_int_equal(sg_driver_start_saga(d, "kafka_events", 0, "{}", NULL, &res, NULL), SG_OK);
    assert_true(sg_driver_wait_idle(d, WAIT_SECONDS * 1000u));
    rd_kafka_message_t *m = find_message(h->mock.brokers, "order.completed", res.id);
    assert_non_null(m);
    cJSON *ev = sg_event_decode("order.completed", m->payload, m->len);
    free(m);
    assert_non_null(ev);
    assert_string_equal(cJSON_GetObjectItem(ev, "source")->valuestring, "sagad");
    assert_string_equal(cJSON_GetObjectItem(ev, "type")->valuestring, "order.completed");
    assert_string_equal(cJSON_GetObjectItem(ev, "correlation_id")->valuestring, res.id);
    assert_string_equal(cJSON_GetObjectItem(ev, "saga_id")->valuestring, res.id);
    assert_string_equal(cJSON_GetObjectItem(ev, "order_id")->valuestring, "o-1");
    assert_int_equal((int)cJSON_GetObjectItem(ev, "total")->valuedouble, 12);
    /* The same event as the one in the log (consumers may match them by id). */
    sg_store_t *ro = NULL;
    sg_store_opts_t so = {.readonly = true};
    assert_int_equal(sg_store_open(db, &so, &ro, NULL, 0), SG_OK);
    log_t lg = {.n = 0};
    assert_int_equal(sg_store_event_list(ro, "order.completed", res.id, 0, 0, log_cb, &lg), SG_OK);
    assert_int_equal(lg.n, 1);
    assert_string_equal(cJSON_GetObjectItem(ev, "event_id")->valuestring, lg.event_id);
    cJSON_Delete(ev);
    /* order.created fits no message: in the log, never on Kafka. */
    lg.n = 0;
    assert_int_equal(sg_store_event_list(ro, "order.created", res.id, 0, 0, log_cb, &lg), SG_OK);
    assert_int_equal(lg.n, 1);
    sg_store_close(ro);
    int64_t lo = 0, hi = 0;
    rd_kafka_t *c = client(h->mock.brokers, RD_KAFKA_CONSUMER, NULL);
    hi = 0;
    for (int i = 0; i < PARTITIONS; i++) {
        int64_t l1 = 0, h1 = 0;
        assert_int_equal(rd_kafka_query_watermark_offsets(c, "order.created", i, &l1, &h1, 10000),
                         0);
        lo += l1;
        hi += h1;
    }
    rd_kafka_destroy(c);
    assert_int_equal(hi - lo, 0);
    assert_true(metric_reaches(d, "sagad_outbox_published_total", 1));

    /* A dead letter: recorded once, requeued onto its tasks topic, then final. */
    size_t len = 0;
    uint8_t *task = task_bytes("X1", &len);
    produce(h->mock.brokers, "saga.tasks.test.dlq", 0, "X1", task, len, "started 3 times");
    int64_t ids[8];
    uint64_t end = mono_ms() + WAIT_SECONDS * 1000u;
    do {
        dlq_ids(db, "new", ids);
    } while (ids[0] < 1 && mono_ms() < end && usleep(10000) == 0);
    assert_int_equal(ids[0], 1);
    int64_t id = ids[1];
    assert_int_equal(sg_driver_dlq_discard(d, id + 1000), SG_ERR_NOT_FOUND);
    assert_int_equal(sg_driver_dlq_requeue(d, id), SG_OK);
    assert_int_equal(sg_driver_dlq_requeue(d, id), SG_ERR_STATE);
    assert_int_equal(sg_driver_dlq_discard(d, id), SG_ERR_STATE);
    dlq_ids(db, "requeued", ids);
    assert_int_equal(ids[0], 1);
    /* The requeued task is on saga.tasks.test again, byte for byte (the fake worker
     * answers it; sagad ignores the answer: X1 is no saga of its). */
    m = find_message(h->mock.brokers, "saga.tasks.test", "X1");
    assert_non_null(m);
    assert_int_equal(m->len, len);
    assert_memory_equal(m->payload, task, len);
    free(m);
    sg_free(task);
    assert_true(metric_reaches(d, "sagad_outbox_published_total", 2));
    assert_true(metric_reaches(d, "sagad_kafka_dead_letters_total", 1));
    assert_true(metric(d, "sagad_kafka_results_undecodable_total") == 0);
    assert_true(metric(d, "sagad_kafka_producer_recreated_total") == 0);
    assert_true(metric(d, "sagad_kafka_tasks_awaiting_delivery") >= 0);
    /* Its offset is committed once the row is durable. */
    int64_t committed = 0;
    do {
        offsets_of(h->mock.brokers, "sagad.dlq", "saga.tasks.test.dlq", &committed, &hi);
    } while (committed != 1 && mono_ms() < end);
    assert_int_equal(committed, 1);
    sg_driver_stop(d);

    /* A restart reads nothing twice and keeps the decision. */
    assert_int_equal(sg_driver_start(&o, &d, err, sizeof(err)), SG_OK);
    dlq_ids(db, NULL, ids);
    assert_int_equal(ids[0], 1);
    sg_driver_stop(d);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- heartbeats ---- */

/* One heartbeat as read from saga.heartbeats by a test consumer. */
typedef struct {
    uint32_t attempt;
    uint64_t sent_ms;
    bool details;
} beat_seen_t;

/* Reads saga.heartbeats from the start until want heartbeats of attempt have come (or
 * WAIT_SECONDS), appending each heartbeat of instance to out (at most 256). */
static size_t read_beats(rd_kafka_t *c, const char *instance, uint32_t attempt, size_t want,
                         beat_seen_t *out, size_t *n)
{
    size_t got = 0;
    uint64_t end = mono_ms() + WAIT_SECONDS * 1000u;
    while (got < want && mono_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 50);
        if (m == NULL) {
            continue;
        }
        sg_wire_heartbeat_t *w = NULL;
        char err[256];
        if (m->err == 0 &&
            sg_wire_heartbeat_decode(m->payload, m->len, &w, err, sizeof(err)) == SG_OK) {
            if (strcmp(w->hb.instance_id, instance) == 0) {
                if (*n < 256) {
                    out[(*n)++] = (beat_seen_t){.attempt = w->hb.attempt,
                                                .sent_ms = w->hb.sent_ms,
                                                .details = w->hb.details != NULL};
                }
                got += w->hb.attempt == attempt;
            }
            sg_wire_heartbeat_free(w);
        }
        rd_kafka_message_destroy(m);
    }
    return got;
}

/* The worker side: a task with heartbeat_ms > 0 is heartbeaten while its handler runs,
 * at most once per third of it, with the handler's progress; none once it returned. */
static void test_beats_while_running(void **state)
{
    h_t *h = *state;
    atomic_bool stop = false;
    sg_kafka_beats_t *b = NULL;
    char err[512] = "";
    assert_int_equal(sg_kafka_beats_new(&h->ko, "w-test", &stop, &b, err, sizeof(err)), SG_OK);
    rd_kafka_t *c = client(h->mock.brokers, RD_KAFKA_CONSUMER, "beats-test");
    subscribe(c, SG_KAFKA_HEARTBEATS_TOPIC);

    /* No heartbeat_ms: no heartbeats, nothing set. */
    sg_task_t none = {.instance_id = "HB0", .step_id = "s", .attempt = 1, .idempotency_key = "k"};
    assert_null(sg_kafka_beats_add(b, &none));
    assert_null(none.heartbeat_fn);

    sg_task_t a = {.instance_id = "HB1",
                   .step_id = "long",
                   .step = 2,
                   .attempt = 1,
                   .activity = "test.sleep",
                   .input = "{}",
                   .idempotency_key = "HB1/long",
                   .deadline_ms = sg_now_ms() + 600000,
                   .heartbeat_ms = 300};
    sg_kafka_beat_t *beat = sg_kafka_beats_add(b, &a);
    assert_non_null(beat);
    assert_non_null(a.heartbeat_fn);
    assert_true(sg_task_heartbeat(&a, "{\"done\":1}"));
    static beat_seen_t seen_beats[256];
    size_t n = 0;
    assert_int_equal(read_beats(c, "HB1", 1, 4, seen_beats, &n), 4);
    /* The handler returns: its beats stop before its result would be produced. */
    uint64_t returned = sg_now_ms();
    sg_kafka_beats_remove(b, beat);
    assert_null(a.heartbeat_fn);
    size_t n_first = n;

    /* Its next attempt (same key, so the same partition: the order is Kafka's). */
    sg_task_t a2 = a;
    a2.attempt = 2;
    a2.heartbeat_fn = NULL;
    beat = sg_kafka_beats_add(b, &a2);
    assert_non_null(beat);
    assert_int_equal(read_beats(c, "HB1", 2, 3, seen_beats, &n), 3);
    bool second_started = false, details = false;
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        if (seen_beats[i].attempt == 2) {
            second_started = true;
            continue;
        }
        /* attempt 1: sent while its handler ran, never after the second began */
        assert_false(second_started);
        assert_true(seen_beats[i].sent_ms <= returned);
        details |= seen_beats[i].details;
        /* at most one per third of heartbeat_ms (the clock may step by a millisecond) */
        if (prev != 0) {
            assert_true(seen_beats[i].sent_ms + 2 >= prev + 100);
        }
        prev = seen_beats[i].sent_ms;
    }
    assert_true(n_first >= 4);
    assert_true(details); /* the progress went out with a later tick */

    /* The handler hears when to give up: graceful stop, or past its deadline. */
    assert_true(sg_task_heartbeat(&a2, NULL));
    atomic_store(&stop, true);
    assert_false(sg_task_heartbeat(&a2, NULL));
    atomic_store(&stop, false);
    a2.deadline_ms = sg_now_ms() - 1;
    assert_false(sg_task_heartbeat(&a2, NULL));
    sg_kafka_beats_remove(b, beat);
    uint64_t sent = 0, acked = 0, failed = 0;
    sg_kafka_beats_counts(b, &sent, &acked, &failed);
    assert_true(sent >= 7);
    assert_int_equal(failed, 0);
    sg_kafka_beats_free(b);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;
    bool wrong;
    bool with_details;
} hbcol_t;

static hbcol_t hbcol = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void on_heartbeat(void *ctx, const sg_task_heartbeat_t *hb)
{
    (void)ctx;
    pthread_mutex_lock(&hbcol.mu);
    hbcol.n++;
    hbcol.wrong |= strcmp(hb->instance_id, "HB2") != 0 || hb->step != 4 || hb->attempt != 3 ||
                   !hb->compensation || strcmp(hb->worker_id, "w-sagad-test") != 0 ||
                   hb->sent_ms == 0 ||
                   (hb->details != NULL && strcmp(hb->details, "{\"done\":7}") != 0);
    hbcol.with_details |= hb->details != NULL;
    pthread_cond_broadcast(&hbcol.cv);
    pthread_mutex_unlock(&hbcol.mu);
}

static bool wait_heartbeats(size_t n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&hbcol.mu);
    while (hbcol.n < n) {
        if (pthread_cond_timedwait(&hbcol.cv, &hbcol.mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    bool ok = hbcol.n >= n;
    pthread_mutex_unlock(&hbcol.mu);
    return ok;
}

/* sagad's side: saga.heartbeats read from its end, each heartbeat handed to on_heartbeat,
 * an undecodable message skipped. */
static void test_heartbeats_to_sagad(void **state)
{
    h_t *h = *state;
    pthread_mutex_lock(&hbcol.mu);
    hbcol.n = 0;
    hbcol.wrong = hbcol.with_details = false;
    pthread_mutex_unlock(&hbcol.mu);
    sg_transport_opts_t o = {.queues = (const char *const[]){"test", NULL},
                             .on_result = on_result,
                             .on_heartbeat = on_heartbeat,
                             .ctx = &h->col,
                             .kafka = &h->ko};
    char err[512] = "";
    assert_int_equal(h->vt->start(&o, &h->t, err, sizeof(err)), SG_OK);
    sg_kafka_beats_t *b = NULL;
    assert_int_equal(sg_kafka_beats_new(&h->ko, "w-sagad-test", NULL, &b, err, sizeof(err)), SG_OK);
    sg_task_t task = {.instance_id = "HB2",
                      .step_id = "export",
                      .step = 4,
                      .attempt = 3,
                      .compensation = true,
                      .activity = "test.sleep",
                      .input = "{}",
                      .idempotency_key = "HB2/export/compensate",
                      .heartbeat_ms = 150};
    sg_kafka_beat_t *beat = sg_kafka_beats_add(b, &task);
    assert_non_null(beat);
    /* The reader starts at the end of the topic: the first heartbeat it sees says it is
     * reading; garbage then, on both partitions, and more heartbeats after it. */
    assert_true(wait_heartbeats(1));
    static const char garbage[] = "\xff\xff\xff\xff\x0f not a heartbeat";
    produce(h->mock.brokers, SG_KAFKA_HEARTBEATS_TOPIC, 0, "HB2", garbage, sizeof(garbage) - 1,
            NULL);
    produce(h->mock.brokers, SG_KAFKA_HEARTBEATS_TOPIC, 1, "HB2", garbage, sizeof(garbage) - 1,
            NULL);
    assert_true(sg_task_heartbeat(&task, "{\"done\":7}"));
    pthread_mutex_lock(&hbcol.mu);
    size_t before = hbcol.n;
    pthread_mutex_unlock(&hbcol.mu);
    assert_true(wait_heartbeats(before + 3));
    sg_kafka_beats_remove(b, beat);
    sg_kafka_beats_free(b);
    pthread_mutex_lock(&hbcol.mu);
    assert_false(hbcol.wrong);
    assert_true(hbcol.with_details);
    size_t delivered = hbcol.n;
    pthread_mutex_unlock(&hbcol.mu);
    /* Both garbage messages are counted for /metrics (the second partition may be read
     * a little later: poll the counter, bounded), apart from the heartbeats handed on. */
    sg_transport_stats_t st = {0};
    for (int i = 0; i < WAIT_SECONDS * 100; i++) {
        h->vt->stats(h->t, &st);
        if (st.heartbeats_undecodable >= 2) {
            break;
        }
        nanosleep(&(struct timespec){.tv_nsec = 10000000L}, NULL);
    }
    assert_int_equal(st.heartbeats_undecodable, 2);
    assert_true(st.heartbeats_received >= delivered);
}

/* With the broker down, start does not wait for it (the topics are created in the
 * background), and a task dispatched to a topic that does not exist yet waits for it in
 * the producer: once the broker is back and the topic made, it runs and its result
 * comes. (The mock has no CreateTopics: the test makes the topic, late.) */
static void test_start_broker_down(void **state)
{
    h_t *h = *state;
    h->col.allow_sync = true;
    assert_int_equal(rd_kafka_mock_broker_set_down(h->mock.mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    static const char *const queues[] = {"late", NULL};
    sg_transport_opts_t o = {.queues = queues,
                             .on_result = on_result,
                             .results_sync = results_sync,
                             .ctx = &h->col,
                             .kafka = &h->ko};
    char err[512] = "";
    uint64_t t0 = mono_ms();
    assert_int_equal(h->vt->start(&o, &h->t, err, sizeof(err)), SG_OK);
    /* Before, start waited for the topics' creation to time out (5 s). */
    assert_true(mono_ms() - t0 < 4000);
    sg_task_t task = {.instance_id = "L001",
                      .step_id = "s",
                      .step = 5,
                      .attempt = 1,
                      .activity = "late.echo",
                      .input = "{\"n\":5}",
                      .idempotency_key = "L001/s",
                      .deadline_ms = sg_now_ms() + 600000};
    assert_int_equal(h->vt->dispatch(h->t, &task), SG_OK);
    assert_int_equal(h->vt->queued(h->t), 1);
    assert_int_equal(rd_kafka_mock_broker_set_up(h->mock.mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_mock_topic_create(h->mock.mc, "saga.tasks.late", PARTITIONS, 1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    h->fake.topic = "saga.tasks.late";
    start_fake(h);
    assert_true(wait_results(&h->col, 1));
    pthread_mutex_lock(&h->col.mu);
    assert_int_equal(h->col.n_ok, 1);
    assert_int_equal(h->col.seen[5], 1);
    assert_false(h->col.wrong_output);
    pthread_mutex_unlock(&h->col.mu);
    assert_int_equal(h->vt->queued(h->t), 0);
}

/* The saga-worker binary next to this test (build/<variant>/bin), or NULL. */
static char *worker_binary(void)
{
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        return NULL;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/'); /* .../build/x/tests/test_kafka */
    if (slash == NULL) {
        return NULL;
    }
    *slash = '\0';
    slash = strrchr(self, '/');
    if (slash == NULL) {
        return NULL;
    }
    *slash = '\0';
    char *path = sg_asprintf("%s/bin/saga-worker", self);
    if (path != NULL && access(path, X_OK) != 0) {
        sg_free(path);
        path = NULL;
    }
    return path;
}

/* Produces an ActivityTask of test.sleep (600 ms, heartbeat_ms 300) for instance id. */
static void produce_sleep_task(const char *brokers, const char *id)
{
    char key[64];
    snprintf(key, sizeof(key), "%s/nap", id);
    sg_task_t task = {.instance_id = id,
                      .step_id = "nap",
                      .step = 1,
                      .attempt = 1,
                      .activity = "test.sleep",
                      .input = "{\"ms\":600}",
                      .idempotency_key = key,
                      .deadline_ms = sg_now_ms() + 600000,
                      .heartbeat_ms = 300};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sg_wire_task_encode(&task, sg_now_ms(), &buf, &len), SG_OK);
    produce(brokers, "saga.tasks.test", 0, id, buf, len, NULL);
    sg_free(buf);
}

/* Waits for the result of instance id on saga.results; its finished_ms, 0 if none came. */
static uint64_t result_finished(rd_kafka_t *c, const char *id)
{
    uint64_t end = mono_ms() + WAIT_SECONDS * 1000u, finished = 0;
    while (finished == 0 && mono_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        sg_wire_result_t *r = NULL;
        char err[256];
        if (m != NULL && m->err == 0 &&
            sg_wire_result_decode(m->payload, m->len, &r, err, sizeof(err)) == SG_OK) {
            if (strcmp(r->task.instance_id, id) == 0 && r->res.outcome == SG_TASK_OK) {
                finished = r->finished_ms;
            }
            sg_wire_result_free(r);
        }
        if (m != NULL) {
            rd_kafka_message_destroy(m);
        }
    }
    return finished;
}

/* A real saga-worker process (this build's) on the mock cluster: while it runs a task
 * with heartbeat_ms > 0 its heartbeats reach saga.heartbeats with its worker id, and none
 * is sent after the task's result (a second task, run after the result came, gives a late
 * one time to show up). */
static void test_worker_process_heartbeats(void **state)
{
    h_t *h = *state;
    char *bin = worker_binary();
    if (bin == NULL) {
        skip(); /* built without saga-worker next to the tests */
    }
    char dir[] = "/tmp/sg_kafka_workerXXXXXX";
    assert_non_null(mkdtemp(dir));
    rd_kafka_t *results = client(h->mock.brokers, RD_KAFKA_CONSUMER, "worker-test-results");
    subscribe(results, SG_KAFKA_RESULTS_TOPIC);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0 && getenv("SG_TEST_LOG") == NULL) {
            dup2(devnull, 2);
        }
        execl(bin, bin, "--queue", "test", "--brokers", h->mock.brokers, "--data-dir", dir,
              "--worker-id", "wk-mock", "--inflight", "2", (char *)NULL);
        _exit(127);
    }
    produce_sleep_task(h->mock.brokers, "HBW1");
    uint64_t fin1 = result_finished(results, "HBW1");
    assert_true(fin1 > 0);
    produce_sleep_task(h->mock.brokers, "HBW2");
    uint64_t fin2 = result_finished(results, "HBW2");
    assert_true(fin2 > 0);
    assert_int_equal(kill(pid, SIGTERM), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Everything on saga.heartbeats, from its start. */
    rd_kafka_t *c = client(h->mock.brokers, RD_KAFKA_CONSUMER, "worker-test-beats");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTITIONS);
    int64_t total = 0;
    for (int i = 0; i < PARTITIONS; i++) {
        rd_kafka_topic_partition_list_add(l, SG_KAFKA_HEARTBEATS_TOPIC, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        int64_t lo = 0, hi = 0;
        assert_int_equal(
            rd_kafka_query_watermark_offsets(c, SG_KAFKA_HEARTBEATS_TOPIC, i, &lo, &hi, 10000), 0);
        total += hi - lo;
    }
    assert_int_equal(rd_kafka_assign(c, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    size_t n1 = 0, n2 = 0, late = 0, wrong = 0;
    int64_t read = 0;
    uint64_t end = mono_ms() + WAIT_SECONDS * 1000u;
    while (read < total && mono_ms() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        sg_wire_heartbeat_t *w = NULL;
        char err[256];
        if (m != NULL && m->err == 0) {
            read++;
            if (sg_wire_heartbeat_decode(m->payload, m->len, &w, err, sizeof(err)) == SG_OK) {
                bool first = strcmp(w->hb.instance_id, "HBW1") == 0;
                n1 += first;
                n2 += !first;
                late += w->hb.sent_ms > (first ? fin1 : fin2);
                wrong += strcmp(w->hb.worker_id, "wk-mock") != 0 || w->hb.attempt != 1 ||
                         strcmp(w->step_id, "nap") != 0;
                sg_wire_heartbeat_free(w);
            }
        }
        if (m != NULL) {
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_destroy(c);
    rd_kafka_consumer_close(results);
    rd_kafka_destroy(results);
    assert_int_equal(read, total);
    /* 600 ms at one per 100 ms, the first at the start */
    assert_true(n1 >= 3);
    assert_true(n2 >= 3);
    assert_int_equal(late, 0);
    assert_int_equal(wrong, 0);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    sg_free(bin);
}

/* ---- dead letters and memory ---- */

static bool count_rows(void *ctx, const sg_store_dlq_t *row)
{
    (void)row;
    (*(size_t *)ctx)++;
    return true;
}

/* Out of memory while the driver copies a dead letter: it tries again, and returns (so
 * that the reader may mark the offset for commit) only once the row is durable. Every
 * allocation of the copy fails once in turn. */
static void test_dead_letter_oom(void **state)
{
    (void)state;
    char dir[] = "/tmp/sg_kafka_dlqoomXXXXXX";
    assert_non_null(mkdtemp(dir));
    char wf[300], db[300];
    snprintf(wf, sizeof(wf), "%s/wf", dir);
    snprintf(db, sizeof(db), "%s/sagad.db", dir);
    assert_int_equal(mkdir(wf, 0700), 0);
    sg_driver_opts_t o = {.db_path = db,
                          .sync = SG_SYNC_OFF,
                          .workflows_dir = wf,
                          .data_dir = dir,
                          .transport = "embedded",
                          .test_activities = true};
    sg_driver_t *d = NULL;
    char err[512] = "";
    assert_int_equal(sg_driver_start(&o, &d, err, sizeof(err)), SG_OK);
    size_t len = 0;
    uint8_t *task = task_bytes("X9", &len);
    size_t n = 1;
    for (;; n++) {
        sg_dead_letter_t dl = {.topic = "saga.tasks.test.dlq",
                               .partition = 0,
                               .offset = (int64_t)n,
                               .queue = "test",
                               .key = "X9",
                               .value = task,
                               .len = len,
                               .reason = "started 3 times",
                               .headers = "{}",
                               .instance_id = "X9",
                               .step_id = "charge",
                               .idempotency_key = "X9/charge",
                               .activity = "test.echo",
                               .input = "{}",
                               .attempt = 2};
        sg_alloc_fail_at(n);
        drv__on_dead_letter(d, &dl);
        size_t allocs = sg_alloc_fail_at(0);
        /* Durable when the callback returned: no waiting here. */
        size_t rows = 0;
        sg_store_t *ro = NULL;
        sg_store_opts_t so = {.readonly = true};
        assert_int_equal(sg_store_open(db, &so, &ro, NULL, 0), SG_OK);
        assert_int_equal(sg_store_dlq_list(ro, "test", NULL, 0, 0, count_rows, &rows), SG_OK);
        sg_store_close(ro);
        assert_int_equal(rows, n);
        if (allocs < n) {
            break; /* this one allocated less than n times: every failure point was hit */
        }
    }
    assert_true(n > 5);
    sg_free(task);
    sg_driver_stop(d);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    sg_log_set_level(getenv("SG_TEST_LOG") ? SG_LOG_DEBUG : SG_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_task_roundtrip),
        cmocka_unit_test(test_wire_result_roundtrip),
        cmocka_unit_test(test_wire_malformed),
        cmocka_unit_test(test_wire_oom),
        cmocka_unit_test(test_wire_heartbeat_roundtrip),
        cmocka_unit_test(test_props_read),
        cmocka_unit_test(test_topic_names),
        cmocka_unit_test_setup_teardown(test_dispatch_to_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_result_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offsets_after_sync_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_recreated_after_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_producer_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_driver_over_kafka, setup, teardown),
        cmocka_unit_test_setup_teardown(test_beats_while_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeats_to_sagad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_process_heartbeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_broker_down, setup, teardown),
        cmocka_unit_test(test_dead_letter_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
