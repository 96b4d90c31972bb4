/*
 * embedded transport: activity handlers run in a fixed pool of threads inside sagad, so
 * one process is a whole working system, no broker needed.
 *
 * Each served queue has a FIFO and a limit on how many of its tasks run at once, so a
 * slow queue cannot take every thread; workers take from the queues in turn. Tasks for
 * an activity nobody serves go to a FIFO of their own and are answered with a fatal
 * "saga.unknown_activity" by a worker, because the engine waits for a result. A task
 * whose deadline passed while it waited is answered with a retryable
 * "saga.deadline_expired" without running: the engine has timed it out already, and
 * under a backlog this sheds stale work first. All queues together hold at most
 * queue_cap tasks that have not started, so memory cannot grow without bound.
 *
 * stop() drops the tasks still queued: they are durable in the orchestrator's outbox
 * and are dispatched again after the restart (handlers dedupe on the idempotency key).
 *
 * Heartbeats: each worker thread has a lease record for the task it runs. For a task
 * with heartbeat_ms > 0 the worker sends a heartbeat itself when the handler starts,
 * then ONE ticker thread sends one for every running task each heartbeat_ms/3, with the
 * handler's last sg_task_heartbeat() progress; it sleeps on a condition variable until
 * the next tick is due. The worker ends the lease (waiting out a send in progress)
 * before on_result, so no heartbeat follows the task's result; stop() ends them all.
 * Memory is one record per worker thread and at most two progress copies in each; no
 * ticker runs without an on_heartbeat. Every task run here gets a heartbeat_fn, so any
 * handler can learn from sg_task_heartbeat() that stop() began or its deadline passed.
 *
 * It must never block dispatch() on a handler, and never call on_result or on_heartbeat
 * with a lock held (on_result may dispatch; a handler's sg_task_heartbeat must not wait
 * for a slow on_heartbeat).
 */
#include "orchestrator/transport/transport.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef enum { WHY_NONE, WHY_NAME, WHY_QUEUE, WHY_OP } why_t;

typedef struct slot slot_t;

/* One accepted task: the node and copies of its strings in one allocation. */
typedef struct node {
    struct node *next;
    slot_t *slot;               /* NULL: nobody serves the activity */
    const sg_activity_op_t *op; /* NULL with slot NULL */
    why_t why;                  /* for slot NULL: why nobody serves it */
    sg_task_t task;             /* strings point into data[] */
    char data[];
} node_t;

typedef struct {
    node_t *head;
    node_t *tail;
} fifo_t;

/* The heartbeat state of the task one worker thread runs. Guarded by hb_mu. */
typedef struct {
    sg_transport_t *t;
    const sg_task_t *task; /* the running task (the worker's node); NULL when idle */
    bool ticking;          /* task has heartbeat_ms > 0 and someone listens */
    bool sending;          /* the ticker is in on_heartbeat for it, without hb_mu */
    uint64_t period_ms;    /* heartbeat_ms / 3 */
    uint64_t due_ms;       /* sg_mono_ms() of the next tick; UINT64_MAX: no more */
    char *pending;         /* progress given since the last tick (the handler's) */
    char *last;            /* progress sent with the ticks (the ticker's) */
} lease_t;

struct slot {
    const sg_activity_module_t *mod;
    sg_activity_ctx_t *actx;
    fifo_t fifo;
    unsigned running; /* tasks of this queue taken by a worker and not yet finished */
};

struct sg_transport {
    pthread_mutex_t mu;
    pthread_cond_t work; /* a task was queued, or stop() began */
    bool stopping;
    size_t queued; /* accepted, not yet taken by a worker */
    size_t cap;
    unsigned limit;
    slot_t *slots;
    size_t n_slots;
    size_t next_slot; /* where the next scan starts, so queues take turns */
    fifo_t unknown;
    pthread_t *threads;
    unsigned n_threads;
    sg_transport_result_fn on_result;
    sg_transport_heartbeat_fn on_heartbeat; /* NULL: no ticks (progress is dropped) */
    void *ctx;
    /* Heartbeats; hb_mu is never taken together with mu. */
    pthread_mutex_t hb_mu;
    pthread_cond_t hb_tick; /* the ticker's: a lease started ticking, or stop() began */
    pthread_cond_t hb_sent; /* the workers': a send ended */
    bool hb_stopping;       /* stop() began: handlers should give up, no more ticks */
    lease_t *leases;        /* one per worker thread */
    pthread_t ticker;
    bool ticker_running;
};

static void fifo_push(fifo_t *f, node_t *n)
{
    n->next = NULL;
    if (f->tail != NULL) {
        f->tail->next = n;
    } else {
        f->head = n;
    }
    f->tail = n;
}

static node_t *fifo_pop(fifo_t *f)
{
    node_t *n = f->head;
    if (n != NULL) {
        f->head = n->next;
        if (f->head == NULL) {
            f->tail = NULL;
        }
    }
    return n;
}

static void fifo_free(fifo_t *f)
{
    node_t *n;
    while ((n = fifo_pop(f)) != NULL) {
        sg_free(n);
    }
}

/* ---- heartbeats ---- */

static void heartbeat_of(const lease_t *l, const char *details, sg_task_heartbeat_t *hb)
{
    *hb = (sg_task_heartbeat_t){.instance_id = l->task->instance_id,
                                .step = l->task->step,
                                .attempt = l->task->attempt,
                                .compensation = l->task->compensation,
                                .worker_id = "sagad",
                                .details = details,
                                .sent_ms = sg_now_ms()};
}

/* sg_task_heartbeat() of a task run here; any thread running the task. */
static bool lease_heartbeat(void *arg, const char *details)
{
    lease_t *l = arg;
    sg_transport_t *t = l->t;
    /* Copied outside the lock; out of memory only loses this progress. */
    char *copy = details != NULL ? sg_strdup(details) : NULL;
    pthread_mutex_lock(&t->hb_mu);
    /* No task: called after its handler returned (against the contract): not wanted. */
    bool wanted = !t->hb_stopping && l->task != NULL;
    uint64_t deadline = l->task != NULL ? l->task->deadline_ms : 0;
    if (l->ticking && copy != NULL) {
        sg_free(l->pending);
        l->pending = copy;
        copy = NULL;
    }
    pthread_mutex_unlock(&t->hb_mu);
    sg_free(copy);
    return wanted && (deadline == 0 || sg_now_ms() < deadline);
}

/* The worker's, before the handler runs: the lease starts ticking, and the first
 * heartbeat goes out now, so even a task shorter than a tick is seen as held. */
static void lease_begin(lease_t *l, sg_task_t *task)
{
    sg_transport_t *t = l->t;
    /* Every task run here can ask whether it is still wanted (stop, deadline). */
    task->heartbeat_fn = lease_heartbeat;
    task->heartbeat_arg = l;
    pthread_mutex_lock(&t->hb_mu);
    l->task = task;
    l->ticking = task->heartbeat_ms > 0 && t->on_heartbeat != NULL && !t->hb_stopping;
    bool send = l->ticking;
    if (l->ticking) {
        l->period_ms = task->heartbeat_ms / 3 > 0 ? task->heartbeat_ms / 3 : 1;
        l->due_ms = sg_mono_ms() + l->period_ms;
        pthread_cond_signal(&t->hb_tick);
    }
    pthread_mutex_unlock(&t->hb_mu);
    if (send) {
        sg_task_heartbeat_t hb;
        heartbeat_of(l, NULL, &hb);
        t->on_heartbeat(t->ctx, &hb);
    }
}

/* The worker's, once the handler returned and before on_result: no tick may follow. */
static void lease_end(lease_t *l)
{
    sg_transport_t *t = l->t;
    pthread_mutex_lock(&t->hb_mu);
    l->ticking = false;
    while (l->sending) {
        pthread_cond_wait(&t->hb_sent, &t->hb_mu);
    }
    char *pending = l->pending, *last = l->last;
    l->pending = l->last = NULL;
    l->task = NULL;
    pthread_mutex_unlock(&t->hb_mu);
    sg_free(pending);
    sg_free(last);
}

/* Sends the tick of l, due now. Caller holds hb_mu; it is released during the call. */
static void tick(sg_transport_t *t, lease_t *l, uint64_t now)
{
    if (l->pending != NULL) {
        sg_free(l->last);
        l->last = l->pending;
        l->pending = NULL;
    }
    l->due_ms = now + l->period_ms;
    uint64_t deadline = l->task->deadline_ms;
    if (deadline != 0 && sg_now_ms() >= deadline) {
        /* The orchestrator has timed the attempt out: a heartbeat would be stale. */
        l->due_ms = UINT64_MAX;
        return;
    }
    sg_task_heartbeat_t hb;
    heartbeat_of(l, l->last, &hb);
    l->sending = true; /* keeps the task and l->last alive, see lease_end */
    pthread_mutex_unlock(&t->hb_mu);
    t->on_heartbeat(t->ctx, &hb);
    pthread_mutex_lock(&t->hb_mu);
    l->sending = false;
    pthread_cond_broadcast(&t->hb_sent);
}

/* Sleeps until due_ms (sg_mono_ms) or a signal; UINT64_MAX: until a signal. Holds hb_mu. */
static void ticker_wait(sg_transport_t *t, uint64_t due_ms)
{
    if (due_ms == UINT64_MAX) {
        pthread_cond_wait(&t->hb_tick, &t->hb_mu);
        return;
    }
    struct timespec ts = {.tv_sec = (time_t)(due_ms / 1000),
                          .tv_nsec = (long)(due_ms % 1000) * 1000000L};
    pthread_cond_timedwait(&t->hb_tick, &t->hb_mu, &ts); /* hb_tick uses CLOCK_MONOTONIC */
}

static void *ticker_main(void *arg)
{
    sg_transport_t *t = arg;
    pthread_mutex_lock(&t->hb_mu);
    while (!t->hb_stopping) {
        uint64_t now = sg_mono_ms();
        uint64_t next = UINT64_MAX;
        lease_t *due = NULL;
        for (unsigned i = 0; i < t->n_threads && due == NULL; i++) {
            lease_t *l = &t->leases[i];
            if (!l->ticking) {
                continue;
            }
            if (l->due_ms <= now) {
                due = l;
            } else if (l->due_ms < next) {
                next = l->due_ms;
            }
        }
        if (due != NULL) {
            tick(t, due, now); /* then look again: time passed during the send */
        } else {
            ticker_wait(t, next);
        }
    }
    pthread_mutex_unlock(&t->hb_mu);
    return NULL;
}

/* ---- workers ---- */

/* The next task a worker may start, or NULL. Caller holds mu. */
static node_t *take(sg_transport_t *t)
{
    node_t *n = fifo_pop(&t->unknown);
    for (size_t k = 0; n == NULL && k < t->n_slots; k++) {
        size_t i = (t->next_slot + k) % t->n_slots;
        slot_t *sl = &t->slots[i];
        if (sl->fifo.head != NULL && sl->running < t->limit) {
            n = fifo_pop(&sl->fifo);
            sl->running++;
            t->next_slot = (i + 1) % t->n_slots;
        }
    }
    if (n != NULL) {
        t->queued--;
    }
    return n;
}

static void answer_unknown(const node_t *n, sg_task_result_t *res)
{
    const char *act = n->task.activity;
    size_t qlen = 0;
    const char *op = sg_activity_split(act, &qlen);
    switch (n->why) {
    case WHY_OP:
        sg_task_fail(res, SG_TASK_FATAL, "saga.unknown_activity",
                     "queue \"%.*s\" has no operation \"%s\"", (int)qlen, act, op);
        break;
    case WHY_QUEUE:
        sg_task_fail(res, SG_TASK_FATAL, "saga.unknown_activity",
                     "activity \"%s\": queue \"%.*s\" is not served by this process", act,
                     (int)qlen, act);
        break;
    default:
        sg_task_fail(res, SG_TASK_FATAL, "saga.unknown_activity",
                     "activity \"%s\" is not of the form queue.operation", act);
        break;
    }
}

static void execute(sg_transport_t *t, lease_t *l, node_t *n)
{
    sg_task_result_t res = {0};
    if (n->slot == NULL) {
        answer_unknown(n, &res);
    } else if (n->task.deadline_ms != 0 && sg_now_ms() > n->task.deadline_ms) {
        sg_task_fail(&res, SG_TASK_RETRYABLE, "saga.deadline_expired",
                     "the task waited past its deadline and was not run");
    } else {
        lease_begin(l, &n->task);
        n->op->run(n->slot->actx, &n->task, &res);
        lease_end(l);
    }
    t->on_result(t->ctx, &n->task, &res);
    sg_task_result_fini(&res);
}

static void *worker_main(void *arg)
{
    lease_t *l = arg;
    sg_transport_t *t = l->t;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        node_t *n = NULL;
        while (!t->stopping && (n = take(t)) == NULL) {
            pthread_cond_wait(&t->work, &t->mu);
        }
        if (n == NULL) {
            break; /* stopping; anything still queued is dropped by stop() */
        }
        pthread_mutex_unlock(&t->mu);
        execute(t, l, n);
        slot_t *sl = n->slot;
        sg_free(n);
        pthread_mutex_lock(&t->mu);
        if (sl != NULL) {
            /* If the queue was held at its limit, a sleeping worker may now start its next
             * task; this worker might pick another queue's. */
            if (sl->running-- == t->limit && sl->fifo.head != NULL) {
                pthread_cond_signal(&t->work);
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- dispatch ---- */

static size_t str_size(const char *s)
{
    return s != NULL ? strlen(s) + 1 : 0;
}

static const char *str_copy(char **p, const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    memcpy(*p, s, n);
    const char *out = *p;
    *p += n;
    return out;
}

/* Finds who serves task->activity: n->slot and n->op, or n->why. */
static void resolve(sg_transport_t *t, node_t *n)
{
    size_t qlen = 0;
    const char *op = sg_activity_split(n->task.activity, &qlen);
    n->why = WHY_NAME;
    if (op == NULL) {
        return;
    }
    n->why = WHY_QUEUE;
    for (size_t i = 0; i < t->n_slots; i++) {
        const char *q = t->slots[i].mod->queue;
        if (strlen(q) == qlen && memcmp(q, n->task.activity, qlen) == 0) {
            n->op = sg_activity_module_op(t->slots[i].mod, op);
            n->why = WHY_OP;
            if (n->op != NULL) {
                n->slot = &t->slots[i];
                n->why = WHY_NONE;
            }
            return;
        }
    }
}

static sg_err_t emb_dispatch(sg_transport_t *t, const sg_task_t *task)
{
    if (t == NULL || task == NULL || task->activity == NULL) {
        return SG_ERR_INVALID;
    }
    size_t size = str_size(task->instance_id) + str_size(task->step_id) + str_size(task->activity) +
                  str_size(task->input) + str_size(task->idempotency_key);
    node_t *n = sg_malloc(sizeof(*n) + size);
    if (n == NULL) {
        return SG_ERR_NOMEM;
    }
    memset(n, 0, sizeof(*n));
    n->task = *task;
    char *p = n->data;
    n->task.instance_id = str_copy(&p, task->instance_id);
    n->task.step_id = str_copy(&p, task->step_id);
    n->task.activity = str_copy(&p, task->activity);
    n->task.input = str_copy(&p, task->input);
    n->task.idempotency_key = str_copy(&p, task->idempotency_key);
    resolve(t, n);

    sg_err_t rc = SG_OK;
    pthread_mutex_lock(&t->mu);
    if (t->stopping) {
        rc = SG_ERR_STATE;
    } else if (t->queued >= t->cap) {
        rc = SG_ERR_LIMIT;
    } else {
        fifo_push(n->slot != NULL ? &n->slot->fifo : &t->unknown, n);
        t->queued++;
        pthread_cond_signal(&t->work);
    }
    pthread_mutex_unlock(&t->mu);
    if (rc != SG_OK) {
        sg_free(n);
    }
    return rc;
}

/* ---- start / stop ---- */

static void close_slots(sg_transport_t *t)
{
    for (size_t i = t->n_slots; i-- > 0;) {
        fifo_free(&t->slots[i].fifo);
        if (t->slots[i].mod->close != NULL) {
            t->slots[i].mod->close(t->slots[i].actx);
        }
    }
    t->n_slots = 0;
}

static void emb_free(sg_transport_t *t)
{
    fifo_free(&t->unknown);
    close_slots(t);
    pthread_cond_destroy(&t->work);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->hb_sent);
    pthread_cond_destroy(&t->hb_tick);
    pthread_mutex_destroy(&t->hb_mu);
    sg_free(t->slots);
    sg_free(t->threads);
    sg_free(t->leases);
    sg_free(t);
}

/* Stops and joins the first n_started workers and the ticker, if it runs. */
static void join_threads(sg_transport_t *t, unsigned n_started)
{
    /* First, so running handlers hear from sg_task_heartbeat that they should give up. */
    pthread_mutex_lock(&t->hb_mu);
    t->hb_stopping = true;
    pthread_cond_broadcast(&t->hb_tick);
    pthread_mutex_unlock(&t->hb_mu);
    pthread_mutex_lock(&t->mu);
    t->stopping = true;
    pthread_cond_broadcast(&t->work);
    pthread_mutex_unlock(&t->mu);
    for (unsigned i = 0; i < n_started; i++) {
        pthread_join(t->threads[i], NULL);
    }
    if (t->ticker_running) {
        pthread_join(t->ticker, NULL);
        t->ticker_running = false;
    }
}

static void emb_stop(sg_transport_t *t)
{
    if (t == NULL) {
        return;
    }
    for (unsigned i = 0; i < t->n_threads; i++) {
        /* Joining itself would hang forever: stop() from on_result is a caller's bug. */
        SG_ASSERT(!pthread_equal(pthread_self(), t->threads[i]));
    }
    SG_ASSERT(!t->ticker_running || !pthread_equal(pthread_self(), t->ticker));
    join_threads(t, t->n_threads);
    emb_free(t);
}

/* Opens module m into the next slot, unless it is there already. */
static sg_err_t add_slot(sg_transport_t *t, const sg_activity_module_t *m,
                         const sg_activity_env_t *env, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n_slots; i++) {
        if (t->slots[i].mod == m) {
            return SG_OK;
        }
    }
    char merr[256] = "";
    slot_t *sl = &t->slots[t->n_slots];
    /* A module without open() keeps no state. */
    sg_err_t rc = m->open ? m->open(env, &sl->actx, merr, sizeof(merr)) : SG_OK;
    if (rc != SG_OK) {
        snprintf(err, errlen, "queue \"%s\": %s", m->queue, merr);
        return rc;
    }
    sl->mod = m;
    t->n_slots++;
    return SG_OK;
}

static sg_err_t open_listed(sg_transport_t *t, const sg_transport_opts_t *opts,
                            const sg_activity_env_t *env, char *err, size_t errlen)
{
    size_t n_mods;
    const sg_activity_module_t *const *mods = sg_activity_modules(&n_mods);
    for (size_t i = 0; opts->queues[i] != NULL; i++) {
        const char *q = opts->queues[i];
        const sg_activity_module_t *m = sg_activity_module(q);
        if (m == NULL) {
            const char *names[64];
            size_t k = 0;
            for (; k < n_mods && k < SG_ARRAY_LEN(names); k++) {
                names[k] = mods[k]->queue;
            }
            const char *near = sg_closest(q, names, k);
            snprintf(err, errlen, "unknown activity queue \"%s\"%s%s%s", q,
                     near ? " (did you mean \"" : "", near ? near : "", near ? "\"?)" : "");
            return SG_ERR_NOT_FOUND;
        }
        if (strcmp(m->queue, "test") == 0 && !opts->test_activities) {
            /* The test queue writes a row per call: never by accident in production. */
            snprintf(err, errlen, "the test queue is served only with --test-activities");
            return SG_ERR_INVALID;
        }
        sg_err_t rc = add_slot(t, m, env, err, errlen);
        if (rc != SG_OK) {
            return rc;
        }
    }
    return SG_OK;
}

static sg_err_t open_modules(sg_transport_t *t, const sg_transport_opts_t *opts, char *err,
                             size_t errlen)
{
    size_t n_mods;
    const sg_activity_module_t *const *mods = sg_activity_modules(&n_mods);
    t->slots = sg_calloc(n_mods, sizeof(*t->slots));
    if (t->slots == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    sg_activity_env_t env = {.data_dir = opts->data_dir, .chaos = opts->chaos};
    sg_err_t rc = SG_OK;
    if (opts->queues != NULL) {
        rc = open_listed(t, opts, &env, err, errlen);
    }
    for (size_t i = 0; rc == SG_OK && i < n_mods; i++) {
        bool test = strcmp(mods[i]->queue, "test") == 0;
        if ((opts->queues == NULL && !test) || (test && opts->test_activities)) {
            rc = add_slot(t, mods[i], &env, err, errlen);
        }
    }
    return rc;
}

static sg_err_t start_threads(sg_transport_t *t, char *err, size_t errlen)
{
    t->threads = sg_calloc(t->n_threads, sizeof(*t->threads));
    t->leases = sg_calloc(t->n_threads, sizeof(*t->leases));
    if (t->threads == NULL || t->leases == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    /* Workers and the ticker block every signal (they inherit the mask), so SIGTERM and
     * friends reach the thread of sagad that waits for them, not a handler in the middle
     * of a task. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int erc = 0;
    if (t->on_heartbeat != NULL) {
        erc = pthread_create(&t->ticker, NULL, ticker_main, t);
        t->ticker_running = erc == 0;
    }
    unsigned started = 0;
    for (; erc == 0 && started < t->n_threads; started++) {
        t->leases[started].t = t;
        erc = pthread_create(&t->threads[started], NULL, worker_main, &t->leases[started]);
        if (erc != 0) {
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (erc != 0) {
        const char *what =
            t->on_heartbeat != NULL && !t->ticker_running ? "the heartbeat" : "a worker";
        join_threads(t, started);
        snprintf(err, errlen, "cannot start %s thread: %s", what, strerror(erc));
        return SG_ERR_NOMEM;
    }
    return SG_OK;
}

/* The ticker sleeps until a due time of sg_mono_ms(): its condition uses that clock. */
static void init_locks(sg_transport_t *t)
{
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->work, NULL);
    pthread_mutex_init(&t->hb_mu, NULL);
    pthread_cond_init(&t->hb_sent, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->hb_tick, &attr);
    pthread_condattr_destroy(&attr);
}

static sg_err_t emb_start(const sg_transport_opts_t *opts, sg_transport_t **out, char *err,
                          size_t errlen)
{
    if (opts == NULL || opts->on_result == NULL) {
        snprintf(err, errlen, "the embedded transport needs a result callback");
        return SG_ERR_INVALID;
    }
    sg_transport_t *t = sg_calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    init_locks(t);
    t->n_threads = opts->threads != 0 ? opts->threads : SG_TRANSPORT_DEFAULT_THREADS;
    t->limit = opts->per_queue_limit != 0 && opts->per_queue_limit < t->n_threads
                   ? opts->per_queue_limit
                   : t->n_threads;
    t->cap = opts->queue_cap != 0 ? opts->queue_cap : SG_TRANSPORT_DEFAULT_QUEUE_CAP;
    t->on_result = opts->on_result;
    t->on_heartbeat = opts->on_heartbeat;
    t->ctx = opts->ctx;
    sg_err_t rc = open_modules(t, opts, err, errlen);
    if (rc != SG_OK) {
        goto fail;
    }
    rc = start_threads(t, err, errlen);
    if (rc != SG_OK) {
        goto fail;
    }
    *out = t;
    return SG_OK;
fail:
    emb_free(t);
    return rc;
}

/* ---- domain events of the modules served here ---- */

typedef struct {
    sg_transport_event_fn fn;
    void *arg;
    const char *queue;
    bool stopped;
} peek_ctx_t;

static bool peek_one(void *arg, const sg_domain_event_t *ev)
{
    peek_ctx_t *pc = arg;
    if (!pc->fn(pc->arg, pc->queue, ev)) {
        pc->stopped = true;
        return false;
    }
    return true;
}

/* The slots are fixed after start(), so no lock is needed to walk them. */
static sg_err_t emb_events_peek(sg_transport_t *t, size_t max, sg_transport_event_fn fn, void *arg)
{
    for (size_t i = 0; i < t->n_slots; i++) {
        const sg_activity_module_t *m = t->slots[i].mod;
        if (m->events_peek == NULL) {
            continue;
        }
        peek_ctx_t pc = {.fn = fn, .arg = arg, .queue = m->queue};
        sg_err_t rc = m->events_peek(t->slots[i].actx, max, peek_one, &pc);
        if (rc != SG_OK) {
            return rc;
        }
        if (pc.stopped) {
            break;
        }
    }
    return SG_OK;
}

static sg_err_t emb_events_ack(sg_transport_t *t, const char *queue, int64_t upto_seq)
{
    for (size_t i = 0; i < t->n_slots; i++) {
        const sg_activity_module_t *m = t->slots[i].mod;
        if (strcmp(m->queue, queue) == 0) {
            return m->events_ack ? m->events_ack(t->slots[i].actx, upto_seq) : SG_OK;
        }
    }
    return SG_ERR_NOT_FOUND;
}

/* Tasks accepted and not yet taken by a worker (the /metrics gauge). */
static size_t emb_queued(sg_transport_t *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->queued;
    pthread_mutex_unlock(&t->mu);
    return n;
}

const sg_transport_vt_t sg_transport_embedded = {
    .name = "embedded",
    .start = emb_start,
    .dispatch = emb_dispatch,
    .stop = emb_stop,
    .events_peek = emb_events_peek,
    .events_ack = emb_events_ack,
    .queued = emb_queued,
};
