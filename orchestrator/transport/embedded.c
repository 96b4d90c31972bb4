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
 * It must never block dispatch() on a handler, and never call on_result with the
 * pool's lock held (on_result may dispatch).
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
    void *ctx;
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

static void execute(sg_transport_t *t, node_t *n)
{
    sg_task_result_t res = {0};
    if (n->slot == NULL) {
        answer_unknown(n, &res);
    } else if (n->task.deadline_ms != 0 && sg_now_ms() > n->task.deadline_ms) {
        sg_task_fail(&res, SG_TASK_RETRYABLE, "saga.deadline_expired",
                     "the task waited past its deadline and was not run");
    } else {
        n->op->run(n->slot->actx, &n->task, &res);
    }
    t->on_result(t->ctx, &n->task, &res);
    sg_task_result_fini(&res);
}

static void *worker_main(void *arg)
{
    sg_transport_t *t = arg;
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
        execute(t, n);
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
    sg_free(t->slots);
    sg_free(t->threads);
    sg_free(t);
}

/* Stops and joins the first n_started threads. */
static void join_threads(sg_transport_t *t, unsigned n_started)
{
    pthread_mutex_lock(&t->mu);
    t->stopping = true;
    pthread_cond_broadcast(&t->work);
    pthread_mutex_unlock(&t->mu);
    for (unsigned i = 0; i < n_started; i++) {
        pthread_join(t->threads[i], NULL);
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
    if (t->threads == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    /* Workers block every signal (they inherit the mask), so SIGTERM and friends reach
     * the thread of sagad that waits for them, not a handler in the middle of a task. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    unsigned started = 0;
    int erc = 0;
    for (; started < t->n_threads; started++) {
        erc = pthread_create(&t->threads[started], NULL, worker_main, t);
        if (erc != 0) {
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < t->n_threads) {
        join_threads(t, started);
        snprintf(err, errlen, "cannot start worker thread %u: %s", started + 1, strerror(erc));
        return SG_ERR_NOMEM;
    }
    return SG_OK;
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
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->work, NULL);
    t->n_threads = opts->threads != 0 ? opts->threads : SG_TRANSPORT_DEFAULT_THREADS;
    t->limit = opts->per_queue_limit != 0 && opts->per_queue_limit < t->n_threads
                   ? opts->per_queue_limit
                   : t->n_threads;
    t->cap = opts->queue_cap != 0 ? opts->queue_cap : SG_TRANSPORT_DEFAULT_QUEUE_CAP;
    t->on_result = opts->on_result;
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
