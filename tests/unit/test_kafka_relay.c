/*
 * Unit tests of the kafka kit's outbox relay (sg_kafka_relay_t) against librdkafka's
 * in-process mock cluster and a real sg_kafka_producer: an in-memory outbox is relayed
 * onto a topic of one partition. Delivered rows are deleted, and only after their
 * delivery report; the topic holds them once each, in outbox order, over several pages;
 * a row whose send is refused is kept with the rows after it and sent in a later round;
 * a row Kafka can never take (too large) and a row without topic are deleted; a round
 * starts when kicked; rows whose reports never came (broker down) are kept at stop and
 * relayed by the next relay; several outboxes are served in one round.
 *
 * Every wait is bounded and on a condition, never a blind sleep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orchestrator/transport/kafka.h"

/* After rdkafka.h (which kafka.h includes). */
#include <librdkafka/rdkafka_mock.h>

#define WAIT_MS 60000u
#define TOPIC "relay.test"
#define MAX_ROWS 1200
#define MAX_BOXES 2

/* ---- an in-memory outbox ---- */

typedef struct {
    int64_t id;
    const char *topic; /* NULL: nothing to produce */
    char key[16], value[32];
    size_t big;   /* > 0: a value of this many bytes instead */
    bool acked;   /* its delivery report came */
    bool deleted; /* remove() deleted it */
} row_t;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a row was deleted */
    row_t rows[MAX_BOXES][MAX_ROWS];
    size_t n[MAX_BOXES];
    int64_t refuse_id; /* send() refuses this id once (-1: none) */
    size_t refused, removes, early_deletes, out_of_order;
    int64_t first_removed[64]; /* per remove(): the first id it deleted */
    sg_kafka_producer_t *prod;
    sg_kafka_relay_t *relay;
} box_t;

static box_t box;

static void add_rows(size_t b, size_t n, const char *topic)
{
    pthread_mutex_lock(&box.mu);
    for (size_t i = 0; i < n; i++) {
        row_t *r = &box.rows[b][box.n[b]];
        r->id = (int64_t)box.n[b] + 1;
        r->topic = topic;
        snprintf(r->key, sizeof(r->key), "k%zu", b);
        snprintf(r->value, sizeof(r->value), "%zu:%lld", b, (long long)r->id);
        box.n[b]++;
    }
    pthread_mutex_unlock(&box.mu);
}

static row_t *row_of(size_t b, int64_t id)
{
    return &box.rows[b][id - 1];
}

static sg_err_t fetch(void *arg, size_t src, size_t max, sg_kafka_relay_batch_t *batch)
{
    (void)arg;
    pthread_mutex_lock(&box.mu);
    sg_err_t rc = SG_OK;
    size_t taken = 0;
    for (size_t i = 0; i < box.n[src] && taken < max && rc == SG_OK; i++) {
        row_t *r = &box.rows[src][i];
        if (r->deleted) {
            continue;
        }
        char *big = r->big > 0 ? calloc(1, r->big) : NULL;
        rc = sg_kafka_relay_add(batch, r->id, r->topic, r->key, big ? big : r->value,
                                big ? r->big : strlen(r->value));
        free(big);
        taken++;
    }
    pthread_mutex_unlock(&box.mu);
    return rc;
}

/* The producer's opaque is the row, so that its report marks it; the key names the box. */
static sg_err_t send_row(void *arg, const sg_kafka_relay_msg_t *m)
{
    (void)arg;
    size_t b = (size_t)(m->key[1] - '0');
    pthread_mutex_lock(&box.mu);
    bool refuse = m->id == box.refuse_id;
    if (refuse) {
        box.refuse_id = -1;
        box.refused++;
    }
    pthread_mutex_unlock(&box.mu);
    if (refuse) {
        return SG_ERR_LIMIT;
    }
    return sg_kafka_producer_send(box.prod, m->topic, m->key, strlen(m->key), m->value, m->len,
                                  NULL, 0, row_of(b, m->id));
}

static sg_err_t remove_rows(void *arg, size_t src, const sg_kafka_relay_round_t *rd)
{
    (void)arg;
    pthread_mutex_lock(&box.mu);
    if (box.removes < SG_ARRAY_LEN(box.first_removed)) {
        box.first_removed[box.removes] = rd->msgs[0].id;
    }
    box.removes++;
    for (size_t i = 0; i < rd->done; i++) {
        row_t *r = row_of(src, rd->msgs[i].id);
        box.early_deletes += r->topic != NULL && !r->acked;
        /* Deleted in order: every row before it is gone already. */
        for (int64_t id = 1; id < r->id; id++) {
            box.out_of_order += !row_of(src, id)->deleted;
        }
        r->deleted = true;
    }
    pthread_cond_broadcast(&box.cv);
    pthread_mutex_unlock(&box.mu);
    return SG_OK;
}

/* The producer's thread. */
static void delivered(void *arg, void *opaque, sg_err_t rc)
{
    (void)arg;
    pthread_mutex_lock(&box.mu);
    ((row_t *)opaque)->acked = true;
    pthread_mutex_unlock(&box.mu);
    sg_kafka_relay_reported(box.relay, rc);
}

static size_t deleted_count(size_t b)
{
    size_t n = 0;
    for (size_t i = 0; i < box.n[b]; i++) {
        n += box.rows[b][i].deleted;
    }
    return n;
}

/* Waits until box b has n deleted rows; false after WAIT_MS. */
static bool wait_deleted(size_t b, size_t n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&box.mu);
    while (deleted_count(b) < n && pthread_cond_timedwait(&box.cv, &box.mu, &until) == 0) {
    }
    bool ok = deleted_count(b) >= n;
    pthread_mutex_unlock(&box.mu);
    return ok;
}

/* ---- the mock cluster ---- */

typedef struct {
    rd_kafka_t *host;
    rd_kafka_mock_cluster_t *mc;
    char brokers[256];
    sg_kafka_opts_t ko;
} mock_t;

static const char *const props[] = {"message.max.bytes=10000", NULL};

static int setup(void **state)
{
    mock_t *m = calloc(1, sizeof(*m));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    m->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(m->host);
    m->mc = rd_kafka_mock_cluster_new(m->host, 1);
    assert_non_null(m->mc);
    snprintf(m->brokers, sizeof(m->brokers), "%s", rd_kafka_mock_cluster_bootstraps(m->mc));
    assert_int_equal(rd_kafka_mock_topic_create(m->mc, TOPIC, 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    m->ko = (sg_kafka_opts_t){.brokers = m->brokers, .props = props, .client_id = "relay-test"};
    memset(&box, 0, sizeof(box));
    pthread_mutex_init(&box.mu, NULL);
    pthread_cond_init(&box.cv, NULL);
    box.refuse_id = -1;
    assert_int_equal(sg_kafka_producer_new(&m->ko, "relay-test", 0, delivered, NULL, &box.prod, err,
                                           sizeof(err)),
                     SG_OK);
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    mock_t *m = *state;
    sg_kafka_relay_stop(box.relay);
    sg_kafka_producer_flush(box.prod, 10000);
    sg_kafka_producer_free(box.prod);
    sg_kafka_relay_free(box.relay);
    box.relay = NULL;
    rd_kafka_mock_cluster_destroy(m->mc);
    rd_kafka_destroy(m->host);
    pthread_cond_destroy(&box.cv);
    pthread_mutex_destroy(&box.mu);
    free(m);
    return 0;
}

static void start_relay(size_t n_boxes, size_t page, unsigned idle_ms, unsigned stop_wait_ms)
{
    sg_kafka_relay_opts_t ro = {.fetch = fetch,
                                .send = send_row,
                                .remove = remove_rows,
                                .n_outboxes = n_boxes,
                                .page = page,
                                .idle_ms = idle_ms,
                                .stop_wait_ms = stop_wait_ms};
    assert_int_equal(sg_kafka_relay_new(&ro, &box.relay), SG_OK);
    assert_int_equal(sg_kafka_relay_start(box.relay), SG_OK);
}

/* The values on the topic, from its start, until n came (or WAIT_MS passed). */
static size_t topic_values(const mock_t *m, char (*out)[32], size_t n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    rd_kafka_conf_set(conf, "bootstrap.servers", m->brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", "relay-test-reader", err, sizeof(err));
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(c);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    size_t got = 0;
    uint64_t end = sg_mono_ms() + WAIT_MS;
    while (got < n && sg_mono_ms() < end) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(c, 100);
        if (msg != NULL && msg->err == 0) {
            snprintf(out[got++], 32, "%.*s", (int)(msg->len < 31 ? msg->len : 31),
                     (const char *)msg->payload);
        }
        if (msg != NULL) {
            rd_kafka_message_destroy(msg);
        }
    }
    rd_kafka_destroy(c);
    return got;
}

static char values[MAX_ROWS + 8][32];

static void expect_topic(const mock_t *m, size_t n)
{
    assert_int_equal(topic_values(m, values, n), n);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "0:%zu", i + 1);
        assert_string_equal(values[i], want);
    }
}

/* ---- tests ---- */

static void test_delivered_rows_deleted_in_order(void **state)
{
    mock_t *m = *state;
    add_rows(0, 600, TOPIC); /* more than two pages: the rounds go on at once */
    start_relay(1, 256, 60000, 0);
    assert_true(wait_deleted(0, 600));
    pthread_mutex_lock(&box.mu);
    assert_int_equal(box.early_deletes, 0);
    assert_int_equal(box.out_of_order, 0);
    assert_int_equal(box.first_removed[0], 1);
    assert_int_equal(box.first_removed[1], 257);
    assert_int_equal(box.first_removed[2], 513);
    pthread_mutex_unlock(&box.mu);
    expect_topic(m, 600);

    /* Rows written later go in the next round, once kicked (idle is a minute). */
    add_rows(0, 5, TOPIC);
    sg_kafka_relay_kick(box.relay);
    assert_true(wait_deleted(0, 605));
    expect_topic(m, 605);
}

static void test_refused_row_kept_and_retried(void **state)
{
    mock_t *m = *state;
    add_rows(0, 40, TOPIC);
    box.refuse_id = 10; /* before the relay starts: its first round meets it */
    start_relay(1, 256, 50, 0);
    assert_true(wait_deleted(0, 40));
    pthread_mutex_lock(&box.mu);
    assert_int_equal(box.refused, 1);
    /* The first round deleted 1..9 only; the next one started at the refused row. */
    assert_true(box.removes >= 2);
    assert_int_equal(box.first_removed[0], 1);
    assert_int_equal(box.first_removed[1], 10);
    assert_int_equal(box.early_deletes, 0);
    assert_int_equal(box.out_of_order, 0);
    pthread_mutex_unlock(&box.mu);
    /* Nothing after the refused row was sent in the first round: no duplicates. */
    expect_topic(m, 40);
}

static void test_dropped_and_topicless_rows_deleted(void **state)
{
    mock_t *m = *state;
    add_rows(0, 3, TOPIC);
    add_rows(0, 1, NULL);  /* id 4: nothing to produce */
    add_rows(0, 1, TOPIC); /* id 5: too large for message.max.bytes */
    add_rows(0, 1, TOPIC);
    box.rows[0][4].big = 50000;
    start_relay(1, 256, 60000, 0);
    assert_true(wait_deleted(0, 6));
    assert_int_equal(topic_values(m, values, 4), 4);
    assert_string_equal(values[0], "0:1");
    assert_string_equal(values[2], "0:3");
    assert_string_equal(values[3], "0:6");
}

static void test_unreported_rows_kept_at_stop(void **state)
{
    mock_t *m = *state;
    rd_kafka_mock_broker_set_down(m->mc, 1);
    add_rows(0, 5, TOPIC);
    start_relay(1, 256, 60000, 200);
    /* The round is sent and waits for reports that cannot come; stop waits 200 ms for
     * them, then the last round finds the same rows and gives up too. */
    sg_kafka_relay_stop(box.relay);
    pthread_mutex_lock(&box.mu);
    assert_int_equal(deleted_count(0), 0);
    pthread_mutex_unlock(&box.mu);
    /* Late reports (after the broker is back) reach a stopped relay harmlessly. */
    rd_kafka_mock_broker_set_up(m->mc, 1);
    assert_true(sg_kafka_producer_flush(box.prod, WAIT_MS));
    sg_kafka_relay_free(box.relay);
    box.relay = NULL;
    /* The next relay (a restart) publishes them again and deletes them. */
    start_relay(1, 256, 60000, 0);
    assert_true(wait_deleted(0, 5));
    pthread_mutex_lock(&box.mu);
    assert_int_equal(box.out_of_order, 0);
    pthread_mutex_unlock(&box.mu);
    assert_true(topic_values(m, values, 10) >= 5); /* at least once each */
}

static void test_outboxes_in_one_round(void **state)
{
    (void)state;
    add_rows(0, 3, TOPIC);
    add_rows(1, 300, TOPIC);
    start_relay(2, 100, 60000, 0);
    assert_true(wait_deleted(0, 3));
    assert_true(wait_deleted(1, 300));
    pthread_mutex_lock(&box.mu);
    assert_int_equal(box.early_deletes, 0);
    assert_int_equal(box.out_of_order, 0);
    pthread_mutex_unlock(&box.mu);
}

/* Adds one row more than max: the last add must say SG_ERR_LIMIT. */
static sg_err_t fetch_over(void *arg, size_t src, size_t max, sg_kafka_relay_batch_t *batch)
{
    (void)arg;
    (void)src;
    sg_err_t rc = SG_OK;
    for (size_t i = 0; i <= max && rc == SG_OK; i++) {
        rc = sg_kafka_relay_add(batch, (int64_t)i + 1, TOPIC, "k0", "v", 1);
        if (rc == SG_OK) {
            assert_true(i < max);
        }
    }
    assert_int_equal(rc, SG_ERR_LIMIT);
    pthread_mutex_lock(&box.mu);
    box.n[0] = max; /* what remove_rows will delete */
    pthread_mutex_unlock(&box.mu);
    return SG_OK;
}

static void test_batch_limit_and_oom(void **state)
{
    (void)state;
    add_rows(0, 2, TOPIC);
    sg_kafka_relay_opts_t ro = {.fetch = fetch_over,
                                .send = send_row,
                                .remove = remove_rows,
                                .n_outboxes = 1,
                                .page = 2,
                                .idle_ms = 60000};
    assert_int_equal(sg_kafka_relay_new(&ro, &box.relay), SG_OK);
    assert_int_equal(sg_kafka_relay_start(box.relay), SG_OK);
    assert_true(wait_deleted(0, 2));
    sg_kafka_relay_stop(box.relay);
    assert_true(sg_kafka_producer_flush(box.prod, WAIT_MS));
    sg_kafka_relay_free(box.relay);
    box.relay = NULL;

    /* A relay that never starts stops and frees cleanly; out of memory at each step. */
    sg_kafka_relay_t *r = NULL;
    assert_int_equal(sg_kafka_relay_new(&ro, &r), SG_OK);
    sg_kafka_relay_kick(r);
    sg_kafka_relay_stop(r);
    sg_kafka_relay_free(r);
    bool made = false;
    for (size_t nth = 1; nth < 10 && !made; nth++) {
        sg_alloc_fail_at(nth);
        sg_err_t rc = sg_kafka_relay_new(&ro, &r);
        sg_alloc_fail_at(0);
        made = rc == SG_OK;
        if (made) {
            sg_kafka_relay_free(r);
        } else {
            assert_int_equal(rc, SG_ERR_NOMEM);
        }
    }
    assert_true(made);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_delivered_rows_deleted_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_row_kept_and_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropped_and_topicless_rows_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreported_rows_kept_at_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outboxes_in_one_round, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_limit_and_oom, setup, teardown),
    };
    return cmocka_run_group_tests_name("kafka_relay", tests, NULL, NULL);
}
