/*
 * saga-worker internals, shared by the files of worker/: the process (saga_worker.c),
 * one consumer + executor pool per queue (queue.c), the persisted delivery counts
 * (deliveries.c) and the domain-event relay (relay.c).
 */
#ifndef SG_WORKER_INT_H
#define SG_WORKER_INT_H

#include "activities/activity.h"
#include "orchestrator/transport/kafka.h"

#include <pthread.h>
#include <stdatomic.h>

#define WK_DEFAULT_INFLIGHT 8u
#define WK_DEFAULT_MAX_DELIVERIES 3u
/* How long a graceful stop (or a revoked assignment) waits for running tasks. */
#define WK_DRAIN_MS 60000u

typedef struct wk wk_t;
typedef struct wk_queue wk_queue_t;

/* ---- what the producer's delivery reports point at ---- */

typedef enum { WK_MSG_JOB, WK_MSG_EVENT } wk_msg_kind_t;

/* The first member of every opaque handed to the producer. */
typedef struct {
    wk_msg_kind_t kind;
} wk_msg_t;

/* ---- delivery counts (deliveries.c): <data_dir>/saga-worker.db ---- */

typedef struct wk_deliveries wk_deliveries_t;

/* Opens (creates) the file and forgets rows older than a week. One line in err. */
sg_err_t wk_deliveries_open(const char *data_dir, wk_deliveries_t **out, char *err, size_t errlen);
void wk_deliveries_close(wk_deliveries_t *dl);
/* How many times the message was started and did not finish (0 = never). -1 on a
 * database error (logged). Any thread. */
int64_t wk_deliveries_get(wk_deliveries_t *dl, const char *topic, int32_t partition,
                          int64_t offset);
/* Counts one more start, durably, before the task runs; returns the new count (-1 on a
 * database error, logged). Any thread. */
int64_t wk_deliveries_bump(wk_deliveries_t *dl, const char *topic, int32_t partition,
                           int64_t offset);
/* The message finished (its result or dead letter is on Kafka): forgets it. */
void wk_deliveries_forget(wk_deliveries_t *dl, const char *topic, int32_t partition,
                          int64_t offset);

/* ---- one queue (queue.c) ---- */

/* Opens the module and the consumer of queue; starts nothing yet. One line in err. */
sg_err_t wk_queue_new(wk_t *w, const char *queue, wk_queue_t **out, char *err, size_t errlen);
/* Starts the consumer thread and the executors. */
sg_err_t wk_queue_start(wk_queue_t *q, char *err, size_t errlen);
/* Graceful, once w->stopping is set: takes no new task, hands back those not started,
 * lets the running ones finish (up to WK_DRAIN_MS) and their results go out, commits,
 * leaves the group, joins the threads. Call wk_queue_free after. */
void wk_queue_stop(wk_queue_t *q);
/* Closes the module and frees q (after stop, or instead of start). NULL is fine. */
void wk_queue_free(wk_queue_t *q);
/* The producer reported on a job's message (producer thread). */
void wk_queue_delivered(wk_msg_t *job, sg_err_t rc);
const sg_activity_module_t *wk_queue_module(wk_queue_t *q);
sg_activity_ctx_t *wk_queue_actx(wk_queue_t *q);

/* ---- the domain-event relay (relay.c) ---- */

typedef struct wk_relay wk_relay_t;

/* Starts the relay thread; topics_ok false makes it retry creating the topics. */
sg_err_t wk_relay_start(wk_t *w, bool topics_ok, wk_relay_t **out, char *err, size_t errlen);
/* Hands on what is left (waiting up to a few seconds for the broker), then stops the
 * thread. NULL is fine. */
void wk_relay_stop(wk_relay_t *r);
/* After the producer is gone (no report can come any more). NULL is fine. */
void wk_relay_free(wk_relay_t *r);
/* A task finished: its module may have events to hand on. Any thread. */
void wk_relay_kick(wk_relay_t *r);
/* The producer reported on an event (producer thread). */
void wk_relay_delivered(wk_msg_t *ev, sg_err_t rc);

/* ---- the process (saga_worker.c) ---- */

/* Creates the topics this worker uses when missing: saga.results, saga.tasks.<queue> and
 * .dlq of its queues, one per domain event type. True when they all exist. */
bool wk_ensure_topics(wk_t *w, int timeout_ms);

typedef struct {
    char **queues; /* NULL-terminated */
    sg_kafka_opts_t ko;
    const char *data_dir;
    const char *chaos;
    const char *group_prefix; /* consumer group of queue q: "<prefix>.<q>" */
    const char *worker_id;
    unsigned inflight;       /* tasks of one queue running at once */
    unsigned max_deliveries; /* starts of one task before it is dead-lettered */
} wk_settings_t;

struct wk {
    wk_settings_t set;
    sg_kafka_producer_t *prod;
    wk_deliveries_t *dl;
    wk_queue_t **queues;
    size_t n_queues;
    wk_relay_t *relay;
    /* The heartbeat ticker of every queue (queue.c): made by the first wk_queue_new, freed
     * by the last wk_queue_free (both on the main thread, hence the plain counter). */
    sg_kafka_beats_t *beats;
    unsigned beats_users;
    /* Tasks run holding it shared; a task that was started before and never finished
     * (a crash, maybe because of it) runs holding it exclusively, so that a crash while
     * it runs is counted against it alone. Writer-preferring. */
    pthread_rwlock_t exclusive;
    atomic_bool stopping;
    _Atomic uint64_t tasks, dead_letters, events;
};

#endif
