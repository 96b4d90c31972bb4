/*
 * worker queue: one activity queue of a saga-worker. A consumer in the group
 * "<prefix>.<queue>" reads saga.tasks.<queue>; executor threads (as many as the
 * in-flight limit) run each task with the module's handler and produce its
 * ActivityResult to saga.results; an offset is committed only after the result of
 * its task (and of every task before it in the partition) is acknowledged by the
 * broker. Tasks run in parallel, so a slow one never holds up the others; only the
 * commit waits for it.
 *
 * Poison messages never stall a partition: one that cannot be decoded goes to
 * saga.tasks.<queue>.dlq at once (decoding again cannot help); one that was started
 * max_deliveries times without finishing (each start is counted in saga-worker.db
 * before the task runs, so a crash cannot lose the count) goes there instead of
 * running again. A task started before that never finished runs alone in the process
 * (see wk_t.exclusive), so the next crash is counted against the task that caused it
 * and not against innocent neighbours. No result is sent for a dead letter: sagad times
 * the attempt out and applies its retry policy, as for a lost task.
 *
 * Heartbeats: a task with heartbeat_ms > 0 is registered with the process's heartbeat
 * ticker (sg_kafka_beats_t, kafka_heartbeat.c) while its handler runs, and removed before
 * its result is produced, so no heartbeat follows the result.
 *
 * Flow: at most `inflight` tasks run at once (one executor thread each); the consumer
 * takes a bounded number of further tasks ahead (PREFETCH_PER_SLOT per slot, at least
 * PREFETCH_MIN) and pauses the assigned partitions at that mark, resuming at half of it.
 * Pausing is for backlogs only: librdkafka 2.0.2 picks a resumed partition up only with
 * its next fetch, which costs up to fetch.wait.max.ms each time. The consumer keeps
 * polling while paused, so the group membership lives on. A revoked assignment and a
 * graceful stop hand back the tasks not started yet (uncommitted, they come again), wait
 * for the running ones, commit, then let go.
 *
 * It must never commit an offset whose task has no result (or dead letter) on Kafka.
 */
#include "orchestrator/log/log.h"
#include "worker/worker_int.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define COMMIT_EVERY_MS 100u
#define RETRY_SEND_MS 100u
#define PREFETCH_PER_SLOT 16u
#define PREFETCH_MIN 256u

typedef struct job {
    wk_msg_t hdr;            /* WK_MSG_JOB: the producer's delivery reports point here */
    struct job *prev, *next; /* every live job of the queue, for the final cleanup */
    struct job *fnext;       /* the executors' FIFO */
    struct job *pnext;       /* its partition's uncommitted jobs, in offset order */
    wk_queue_t *q;
    int32_t partition;
    int64_t offset;
    bool started; /* counted in saga-worker.db: forget it when done */
    bool done;
    bool dropped; /* handed back unstarted: never commit over it */
    bool orphan;  /* its partition was revoked before it finished */
    void *key, *payload;
    size_t key_len, len;
} job_t;

typedef struct {
    int32_t partition;
    job_t *head, *tail;  /* not yet committed, in offset order */
    int64_t next_commit; /* -1: nothing to commit yet */
    bool dirty;          /* next_commit moved since the last commit */
    bool stalled;        /* a message could not be tracked: commit nothing more */
} part_t;

struct wk_queue {
    wk_t *w;
    const sg_activity_module_t *mod;
    sg_activity_ctx_t *actx;
    char topic[SG_KAFKA_TOPIC_MAX + 1];
    char dlq[SG_KAFKA_TOPIC_MAX + 1];
    rd_kafka_t *consumer;
    pthread_t consumer_thread;
    bool consumer_started;
    pthread_t *exec;
    unsigned n_exec;

    pthread_mutex_t mu;
    pthread_cond_t work; /* the FIFO has a job, or the executors should stop */
    pthread_cond_t done; /* a job finished */
    job_t *jobs;
    job_t *fhead, *ftail;
    unsigned taken; /* taken from Kafka, not yet done or handed back */
    unsigned high;  /* pause at this many taken, resume at half */
    bool paused, draining, exec_stop;
    part_t *parts;
    size_t n_parts, cap_parts;
    uint64_t last_commit;
    bool beats_user; /* holds a reference to w->beats */
};

const sg_activity_module_t *wk_queue_module(wk_queue_t *q)
{
    return q->mod;
}

sg_activity_ctx_t *wk_queue_actx(wk_queue_t *q)
{
    return q->actx;
}

/* ---- jobs and partitions (caller holds mu) ---- */

static part_t *part_find(wk_queue_t *q, int32_t partition, bool add)
{
    for (size_t i = 0; i < q->n_parts; i++) {
        if (q->parts[i].partition == partition) {
            return &q->parts[i];
        }
    }
    if (!add || !sg_grow((void **)&q->parts, &q->cap_parts, q->n_parts, sizeof(*q->parts))) {
        return NULL;
    }
    part_t *p = &q->parts[q->n_parts++];
    *p = (part_t){.partition = partition, .next_commit = -1};
    return p;
}

static void job_free_locked(wk_queue_t *q, job_t *j)
{
    if (j->prev != NULL) {
        j->prev->next = j->next;
    } else {
        q->jobs = j->next;
    }
    if (j->next != NULL) {
        j->next->prev = j->prev;
    }
    sg_free(j->key);
    sg_free(j->payload);
    sg_free(j);
}

/* Moves the partition's commit point over the done jobs at its head. */
static void advance_locked(wk_queue_t *q, part_t *p)
{
    while (p->head != NULL && p->head->done) {
        job_t *j = p->head;
        p->head = j->pnext;
        if (p->head == NULL) {
            p->tail = NULL;
        }
        p->next_commit = j->offset + 1;
        p->dirty = true;
        job_free_locked(q, j);
    }
}

/* Forgets every partition: done and handed-back jobs are freed, running ones become
 * orphans that their delivery report frees. */
static void parts_clear_locked(wk_queue_t *q)
{
    for (size_t i = 0; i < q->n_parts; i++) {
        job_t *j = q->parts[i].head;
        while (j != NULL) {
            job_t *next = j->pnext;
            if (j->done || j->dropped) {
                job_free_locked(q, j);
            } else {
                j->orphan = true;
            }
            j = next;
        }
    }
    q->n_parts = 0;
}

/* Hands back the jobs no executor has started: they stay uncommitted, so whoever owns
 * their partition next gets them again. */
static void drop_queued_locked(wk_queue_t *q)
{
    for (job_t *j = q->fhead; j != NULL; j = j->fnext) {
        j->dropped = true;
        q->taken--;
    }
    q->fhead = q->ftail = NULL;
    pthread_cond_broadcast(&q->done);
}

/* The offsets to commit (NULL when none). Caller holds mu. */
static rd_kafka_topic_partition_list_t *commit_list_locked(wk_queue_t *q)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    for (size_t i = 0; i < q->n_parts; i++) {
        part_t *p = &q->parts[i];
        if (!p->dirty || p->stalled || p->next_commit < 0) {
            continue;
        }
        if (l == NULL) {
            l = rd_kafka_topic_partition_list_new((int)q->n_parts);
        }
        rd_kafka_topic_partition_list_add(l, q->topic, p->partition)->offset = p->next_commit;
        p->dirty = false;
    }
    q->last_commit = sg_mono_ms();
    return l;
}

static void commit(wk_queue_t *q, bool sync)
{
    pthread_mutex_lock(&q->mu);
    rd_kafka_topic_partition_list_t *l = commit_list_locked(q);
    pthread_mutex_unlock(&q->mu);
    if (l == NULL) {
        return;
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(q->consumer, l, sync ? 0 : 1);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* The tasks are redelivered and answered from the handlers' records. */
        sg_log(SG_LOG_WARN, NULL, "%s: committing offsets: %s", q->topic, rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---- running a task ---- */

/* What a task gets when the handler cannot run it (same answers as embedded mode). */
static bool refuse(wk_queue_t *q, const sg_task_t *task, const sg_activity_op_t **op,
                   sg_task_result_t *res)
{
    size_t qlen = 0;
    const char *name = sg_activity_split(task->activity, &qlen);
    if (name == NULL || qlen != strlen(q->mod->queue) ||
        memcmp(task->activity, q->mod->queue, qlen) != 0) {
        sg_task_fail(res, SG_TASK_FATAL, "saga.unknown_activity",
                     "activity \"%s\" arrived on %s, which serves queue \"%s\"", task->activity,
                     q->topic, q->mod->queue);
        return true;
    }
    *op = sg_activity_module_op(q->mod, name);
    if (*op == NULL) {
        sg_task_fail(res, SG_TASK_FATAL, "saga.unknown_activity",
                     "queue \"%s\" has no operation \"%s\"", q->mod->queue, name);
        return true;
    }
    if (task->deadline_ms != 0 && sg_now_ms() > task->deadline_ms) {
        sg_task_fail(res, SG_TASK_RETRYABLE, "saga.deadline_expired",
                     "the task waited past its deadline and was not run");
        return true;
    }
    return false;
}

/* Sends until the producer takes it (it refuses only when full or out of memory). */
static sg_err_t send_retry(wk_queue_t *q, const char *topic, const job_t *j, const void *value,
                           size_t len, const sg_kafka_header_t *h, size_t n_h, void *opaque)
{
    for (;;) {
        sg_err_t rc = sg_kafka_producer_send(q->w->prod, topic, j->key, j->key_len, value, len, h,
                                             n_h, opaque);
        if (rc != SG_ERR_LIMIT && rc != SG_ERR_NOMEM) {
            return rc;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = RETRY_SEND_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void job_done(job_t *j, sg_err_t rc);

static void dead_letter(wk_queue_t *q, job_t *j, const char *reason, int64_t starts)
{
    char part[16], off[24], n[24], ts[24];
    snprintf(part, sizeof(part), "%d", (int)j->partition);
    snprintf(off, sizeof(off), "%lld", (long long)j->offset);
    snprintf(n, sizeof(n), "%lld", (long long)starts);
    snprintf(ts, sizeof(ts), "%llu", (unsigned long long)sg_now_ms());
    const char *wid = q->w->set.worker_id;
    const sg_kafka_header_t h[] = {
        {"sagad.dlq.reason", reason, strlen(reason)},
        {"sagad.dlq.topic", q->topic, strlen(q->topic)},
        {"sagad.dlq.partition", part, strlen(part)},
        {"sagad.dlq.offset", off, strlen(off)},
        {"sagad.dlq.starts", n, strlen(n)},
        {"sagad.dlq.worker", wid, strlen(wid)},
        {"sagad.dlq.time_ms", ts, strlen(ts)},
    };
    sg_log(SG_LOG_WARN, NULL, "%s partition %d offset %lld: %s; sent to %s", q->topic,
           (int)j->partition, (long long)j->offset, reason, q->dlq);
    atomic_fetch_add(&q->w->dead_letters, 1);
    if (send_retry(q, q->dlq, j, j->payload, j->len, h, SG_ARRAY_LEN(h), j) != SG_OK) {
        job_done(j, SG_ERR_STATE); /* stopping: it is redelivered at the next start */
    }
}

static void answer(wk_queue_t *q, job_t *j, const sg_wire_task_t *wt, const sg_task_result_t *res,
                   uint64_t started, uint64_t finished)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    sg_err_t rc = sg_wire_result_encode(&wt->task, wt->traceparent, res, q->w->set.worker_id,
                                        started, finished, &buf, &len);
    if (rc == SG_OK) {
        rc = send_retry(q, SG_KAFKA_RESULTS_TOPIC, j, buf, len, NULL, 0, j);
    }
    sg_free(buf);
    if (rc != SG_OK) {
        /* sagad times the attempt out and retries it; the handler has its record. */
        sg_log(SG_LOG_ERROR,
               &(sg_log_ctx_t){.instance = wt->task.instance_id,
                               .step = wt->task.step_id,
                               .attempt = wt->task.attempt},
               "cannot send the result: %s", sg_strerror(rc));
        job_done(j, rc);
    }
}

static void run_job(wk_queue_t *q, job_t *j)
{
    wk_t *w = q->w;
    sg_wire_task_t *wt = NULL;
    char why[300] = "";
    if (sg_wire_task_decode(j->payload, j->len, &wt, why, sizeof(why)) != SG_OK) {
        dead_letter(q, j, why, 0);
        return;
    }
    const sg_log_ctx_t lc = {
        .instance = wt->task.instance_id, .step = wt->task.step_id, .attempt = wt->task.attempt};
    int64_t before = wk_deliveries_get(w->dl, q->topic, j->partition, j->offset);
    bool suspect = before > 0;
    if (suspect) {
        pthread_rwlock_wrlock(&w->exclusive);
    } else {
        pthread_rwlock_rdlock(&w->exclusive);
    }
    int64_t starts = wk_deliveries_bump(w->dl, q->topic, j->partition, j->offset);
    if (starts < 0) {
        starts = before > 0 ? before + 1 : 1; /* the database failed; logged */
    }
    j->started = true;
    if (starts > (int64_t)w->set.max_deliveries) {
        pthread_rwlock_unlock(&w->exclusive);
        snprintf(why, sizeof(why), "started %lld times without finishing (max-deliveries %u)",
                 (long long)(starts - 1), w->set.max_deliveries);
        dead_letter(q, j, why, starts - 1);
        sg_wire_task_free(wt);
        return;
    }
    if (suspect) {
        sg_log(SG_LOG_WARN, &lc,
               "%s partition %d offset %lld was started %lld times and never finished: running "
               "it alone",
               q->topic, (int)j->partition, (long long)j->offset, (long long)before);
    }
    sg_task_result_t res = {0};
    const sg_activity_op_t *op = NULL;
    uint64_t started = sg_now_ms();
    if (!refuse(q, &wt->task, &op, &res)) {
        /* Heartbeats while the handler runs, none once it returned (before the result). */
        sg_kafka_beat_t *beat = sg_kafka_beats_add(w->beats, &wt->task);
        op->run(q->actx, &wt->task, &res);
        sg_kafka_beats_remove(w->beats, beat);
    }
    uint64_t finished = sg_now_ms();
    pthread_rwlock_unlock(&w->exclusive);
    SG_LOG_DEBUG(&lc, "%s: %s in %llu ms", wt->task.activity, sg_task_outcome_name(res.outcome),
                 (unsigned long long)(finished - started));
    answer(q, j, wt, &res, started, finished);
    atomic_fetch_add(&w->tasks, 1);
    sg_task_result_fini(&res);
    sg_wire_task_free(wt);
    wk_relay_kick(w->relay);
}

static void *exec_main(void *arg)
{
    wk_queue_t *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (q->fhead == NULL && !q->exec_stop) {
            pthread_cond_wait(&q->work, &q->mu);
        }
        job_t *j = q->fhead;
        if (j == NULL) {
            break;
        }
        q->fhead = j->fnext;
        if (q->fhead == NULL) {
            q->ftail = NULL;
        }
        pthread_mutex_unlock(&q->mu);
        run_job(q, j);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* The producer acknowledged (or gave up on) the job's result or dead letter. */
static void job_done(job_t *j, sg_err_t rc)
{
    (void)rc; /* either way the task is finished here: sagad's timeout covers a loss */
    wk_queue_t *q = j->q;
    if (j->started) {
        wk_deliveries_forget(q->w->dl, q->topic, j->partition, j->offset);
    }
    pthread_mutex_lock(&q->mu);
    j->done = true;
    q->taken--;
    if (j->orphan) {
        job_free_locked(q, j);
    } else {
        part_t *p = part_find(q, j->partition, false);
        if (p != NULL) {
            advance_locked(q, p);
        }
    }
    pthread_cond_broadcast(&q->done);
    pthread_mutex_unlock(&q->mu);
}

void wk_queue_delivered(wk_msg_t *msg, sg_err_t rc)
{
    job_done((job_t *)(void *)msg, rc);
}

/* ---- the consumer ---- */

/* Takes a message: tracked in its partition and queued for an executor. */
static void take(wk_queue_t *q, const rd_kafka_message_t *m)
{
    job_t *j = sg_calloc(1, sizeof(*j));
    if (j != NULL) {
        j->key = m->key_len > 0 ? sg_malloc(m->key_len) : NULL;
        j->payload = sg_malloc(m->len > 0 ? m->len : 1);
    }
    pthread_mutex_lock(&q->mu);
    part_t *p = part_find(q, m->partition, true);
    if (j == NULL || j->payload == NULL || (m->key_len > 0 && j->key == NULL) || p == NULL) {
        /* Untracked, it must not be committed over: this partition commits no more until
         * it is reassigned, and the message comes again then. */
        if (p != NULL) {
            p->stalled = true;
        }
        pthread_mutex_unlock(&q->mu);
        sg_log(SG_LOG_ERROR, NULL, "%s partition %d offset %lld: out of memory; not taken",
               q->topic, (int)m->partition, (long long)m->offset);
        if (j != NULL) {
            sg_free(j->key);
            sg_free(j->payload);
            sg_free(j);
        }
        return;
    }
    j->hdr.kind = WK_MSG_JOB;
    j->q = q;
    j->partition = m->partition;
    j->offset = m->offset;
    if (m->key_len > 0) {
        memcpy(j->key, m->key, m->key_len);
    }
    j->key_len = m->key_len;
    if (m->len > 0) {
        memcpy(j->payload, m->payload, m->len);
    }
    j->len = m->len;
    j->next = q->jobs;
    if (q->jobs != NULL) {
        q->jobs->prev = j;
    }
    q->jobs = j;
    if (p->tail != NULL) {
        p->tail->pnext = j;
    } else {
        p->head = j;
    }
    p->tail = j;
    if (q->ftail != NULL) {
        q->ftail->fnext = j;
    } else {
        q->fhead = j;
    }
    q->ftail = j;
    q->taken++;
    pthread_cond_signal(&q->work);
    pthread_mutex_unlock(&q->mu);
}

/* Pauses the assignment at the prefetch mark (or while draining), resumes at half. */
static void flow(wk_queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    bool full = q->draining || q->taken >= q->high || (q->paused && q->taken > q->high / 2);
    bool change = full != q->paused;
    q->paused = full;
    pthread_mutex_unlock(&q->mu);
    if (!change) {
        return;
    }
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(q->consumer, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (full) {
            rd_kafka_pause_partitions(q->consumer, parts);
        } else {
            rd_kafka_resume_partitions(q->consumer, parts);
        }
        rd_kafka_topic_partition_list_destroy(parts);
    }
}

/* Hands back what has not started and waits until the running jobs are done, at most
 * ms. True when idle. */
static bool wait_idle(wk_queue_t *q, uint64_t ms)
{
    uint64_t end = sg_mono_ms() + ms;
    pthread_mutex_lock(&q->mu);
    drop_queued_locked(q);
    while (q->taken > 0 && sg_mono_ms() < end) {
        sg_cond_wait_ms(&q->done, &q->mu, 100);
    }
    bool idle = q->taken == 0;
    unsigned left = q->taken;
    pthread_mutex_unlock(&q->mu);
    if (!idle) {
        sg_log(SG_LOG_WARN, NULL, "%s: %u tasks still running after %llu ms; letting go of them",
               q->topic, left, (unsigned long long)ms);
    }
    return idle;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    wk_queue_t *q = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        pthread_mutex_lock(&q->mu);
        parts_clear_locked(q);
        bool paused = q->paused;
        pthread_mutex_unlock(&q->mu);
        rd_kafka_assign(rk, parts);
        if (paused) {
            rd_kafka_pause_partitions(rk, parts);
        }
        sg_log(SG_LOG_INFO, NULL, "%s: assigned %d partitions", q->topic, parts->cnt);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        /* Finish what we took (its results go out), commit, then let go: the next owner
         * starts after our last finished task instead of redoing them. */
        wait_idle(q, WK_DRAIN_MS);
        commit(q, true);
        sg_log(SG_LOG_INFO, NULL, "%s: %d partitions revoked", q->topic, parts->cnt);
    }
    pthread_mutex_lock(&q->mu);
    parts_clear_locked(q);
    pthread_mutex_unlock(&q->mu);
    rd_kafka_assign(rk, NULL);
}

static void *consumer_main(void *arg)
{
    wk_queue_t *q = arg;
    while (!atomic_load(&q->w->stopping)) {
        flow(q);
        if (sg_mono_ms() - q->last_commit >= COMMIT_EVERY_MS) {
            commit(q, false);
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(q->consumer, 100);
        if (m == NULL) {
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            take(q, m);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            sg_log(SG_LOG_WARN, NULL, "%s consumer: %s", q->topic, rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    /* Graceful stop: take nothing new, let the tasks in hand finish and their results
     * go out, commit, leave the group. A message still handed to us now is not taken:
     * uncommitted, it comes again to whoever owns the partition next. */
    pthread_mutex_lock(&q->mu);
    q->draining = true;
    drop_queued_locked(q);
    pthread_mutex_unlock(&q->mu);
    flow(q);
    uint64_t end = sg_mono_ms() + WK_DRAIN_MS;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        unsigned left = q->taken;
        pthread_mutex_unlock(&q->mu);
        if (left == 0 || sg_mono_ms() >= end) {
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(q->consumer, 50);
        if (m != NULL) {
            rd_kafka_message_destroy(m);
        }
    }
    commit(q, true);
    rd_kafka_consumer_close(q->consumer); /* revoke: waits for nothing now, commits again */
    return NULL;
}

/* ---- lifecycle ---- */

static sg_err_t make_consumer(wk_queue_t *q, char *err, size_t errlen)
{
    char group[512];
    snprintf(group, sizeof(group), "group.id=%s.%s", q->w->set.group_prefix, q->mod->queue);
    const char *const defaults[] = {group, "auto.offset.reset=earliest",
                                    /* librdkafka 2.0.2's cooperative-sticky has bugs */
                                    "partition.assignment.strategy=range",
                                    /* a killed worker's partitions move on within 10 s */
                                    "session.timeout.ms=10000", "heartbeat.interval.ms=1000", NULL};
    rd_kafka_conf_t *conf =
        sg_kafka_conf_new(&q->w->set.ko, q->w->set.worker_id, defaults, err, errlen);
    if (conf == NULL) {
        return SG_ERR_INVALID;
    }
    if (!sg_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) ||
        !sg_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return SG_ERR_INVALID;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, q);
    char why[256] = "";
    q->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (q->consumer == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka consumer: %s", why);
        return SG_ERR_INVALID;
    }
    rd_kafka_poll_set_consumer(q->consumer);
    return SG_OK;
}

sg_err_t wk_queue_new(wk_t *w, const char *queue, wk_queue_t **out, char *err, size_t errlen)
{
    const sg_activity_module_t *m = sg_activity_module(queue);
    if (m == NULL) {
        size_t n = 0;
        const sg_activity_module_t *const *mods = sg_activity_modules(&n);
        const char *names[64];
        size_t k = 0;
        for (; k < n && k < SG_ARRAY_LEN(names); k++) {
            names[k] = mods[k]->queue;
        }
        const char *near = sg_closest(queue, names, k);
        snprintf(err, errlen, "unknown activity queue \"%s\"%s%s%s", queue,
                 near ? " (did you mean \"" : "", near ? near : "", near ? "\"?)" : "");
        return SG_ERR_NOT_FOUND;
    }
    wk_queue_t *q = sg_calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    q->w = w;
    q->mod = m;
    q->high = w->set.inflight * PREFETCH_PER_SLOT;
    q->high = q->high > PREFETCH_MIN ? q->high : PREFETCH_MIN;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->work, NULL);
    pthread_cond_init(&q->done, NULL);
    sg_kafka_task_topic(m->queue, strlen(m->queue), false, q->topic, sizeof(q->topic));
    sg_kafka_task_topic(m->queue, strlen(m->queue), true, q->dlq, sizeof(q->dlq));
    sg_activity_env_t env = {.data_dir = w->set.data_dir, .chaos = w->set.chaos};
    char merr[256] = "";
    sg_err_t rc = m->open != NULL ? m->open(&env, &q->actx, merr, sizeof(merr)) : SG_OK;
    if (rc != SG_OK) {
        snprintf(err, errlen, "queue \"%s\": %s", queue, merr);
        q->mod = NULL; /* nothing to close */
        wk_queue_free(q);
        return rc;
    }
    rc = make_consumer(q, err, errlen);
    if (rc == SG_OK && w->beats == NULL) {
        /* The first queue makes the process's heartbeat ticker; every queue shares it. */
        rc = sg_kafka_beats_new(&w->set.ko, w->set.worker_id, &w->stopping, &w->beats, err, errlen);
    }
    if (rc != SG_OK) {
        wk_queue_free(q);
        return rc;
    }
    q->beats_user = true;
    w->beats_users++;
    *out = q;
    return SG_OK;
}

sg_err_t wk_queue_start(wk_queue_t *q, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, q->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(q->consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "subscribing to %s: %s", q->topic, rd_kafka_err2str(e));
        return SG_ERR_INVALID;
    }
    q->exec = sg_calloc(q->w->set.inflight, sizeof(*q->exec));
    if (q->exec == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    for (; q->n_exec < q->w->set.inflight; q->n_exec++) {
        if (pthread_create(&q->exec[q->n_exec], NULL, exec_main, q) != 0) {
            snprintf(err, errlen, "cannot start the executors of %s", q->topic);
            return SG_ERR_NOMEM;
        }
    }
    if (pthread_create(&q->consumer_thread, NULL, consumer_main, q) != 0) {
        snprintf(err, errlen, "cannot start the consumer of %s", q->topic);
        return SG_ERR_NOMEM;
    }
    q->consumer_started = true;
    return SG_OK;
}

void wk_queue_stop(wk_queue_t *q)
{
    if (q == NULL) {
        return;
    }
    if (q->consumer_started) {
        pthread_join(q->consumer_thread, NULL); /* it drains once w->stopping is set */
        q->consumer_started = false;
    }
    pthread_mutex_lock(&q->mu);
    q->exec_stop = true;
    pthread_cond_broadcast(&q->work);
    pthread_mutex_unlock(&q->mu);
    for (unsigned i = 0; i < q->n_exec; i++) {
        pthread_join(q->exec[i], NULL);
    }
    q->n_exec = 0;
}

void wk_queue_free(wk_queue_t *q)
{
    if (q == NULL) {
        return;
    }
    wk_queue_stop(q);
    if (q->consumer != NULL) {
        rd_kafka_destroy(q->consumer);
    }
    if (q->mod != NULL && q->mod->close != NULL) {
        q->mod->close(q->actx);
    }
    while (q->jobs != NULL) {
        job_free_locked(q, q->jobs); /* the producer is gone: no report will come */
    }
    if (q->beats_user && --q->w->beats_users == 0) {
        sg_kafka_beats_free(q->w->beats); /* every executor is joined: no beat is left */
        q->w->beats = NULL;
    }
    sg_free(q->parts);
    sg_free(q->exec);
    pthread_cond_destroy(&q->done);
    pthread_cond_destroy(&q->work);
    pthread_mutex_destroy(&q->mu);
    sg_free(q);
}
