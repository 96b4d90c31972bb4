/*
 * driver dlq: the dead letters of the kafka transport (tasks a saga-worker gave up on),
 * recorded in the store's dlq table, and what an operator does with them.
 *
 * The transport's reader hands each dead letter to drv__on_dead_letter on its own thread;
 * it becomes an ITEM_DEAD_LETTER that the engine thread writes inside one of its batches
 * (the store has one writer), and drv__on_dead_letter returns only once that batch
 * committed: the reader marks the offset for commit only after the callback returned, so
 * an offset is never acknowledged without its row. Out of memory while copying the
 * letter, or a batch that failed, only makes the callback try again (after a pause; the
 * reader reads nothing else meanwhile), and stopping makes it give up without a row, when
 * nothing is acknowledged any more: the dead letter is read again after the restart. A
 * second copy (read again after a crash) is a no-op: rows are unique by (topic,
 * partition, offset).
 *
 * Operators (REST) requeue or discard a row: ITEM_DLQ_ACTION checks the move, sets the
 * status and, for a requeue, puts the original task bytes into the outbox for its tasks
 * topic in the same transaction; the outbox relay publishes it. States: new -> requeued,
 * new -> discarded, discarded -> requeued (a discard taken back); requeued is final (a
 * requeued task that fails again comes back as a new dead letter).
 *
 * It must never touch a saga: a dead letter's attempt is timed out by the engine and
 * retried by its policy, as for a lost task.
 */
#include "orchestrator/driver/driver_int.h"
#include "orchestrator/log/log.h"
#include "orchestrator/transport/kafka.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

/* Pauses between tries to record a dead letter after running out of memory (or a failed
 * batch): the reader thread waits, the engine does not. */
#define RETRY_FIRST_MS 10u
#define RETRY_MAX_MS 1000u

typedef enum { DLQ_NEW, DLQ_REQUEUED, DLQ_DISCARDED, DLQ__COUNT } dlq_state_t;

static const char *const state_names[DLQ__COUNT] = {"new", "requeued", "discarded"};

static bool transition_valid(dlq_state_t cur, dlq_state_t next)
{
    return (cur == DLQ_NEW && (next == DLQ_REQUEUED || next == DLQ_DISCARDED)) ||
           (cur == DLQ_DISCARDED && next == DLQ_REQUEUED);
}

static bool state_parse(const char *name, dlq_state_t *out)
{
    for (size_t i = 0; name != NULL && i < DLQ__COUNT; i++) {
        if (strcmp(state_names[i], name) == 0) {
            *out = (dlq_state_t)i;
            return true;
        }
    }
    return false;
}

/* ---- recording (transport thread -> engine thread) ---- */

typedef struct {
    sg_store_dlq_t row; /* points into the copies below */
    char *topic, *queue, *key, *instance_id, *step_id, *idem_key, *activity, *input, *reason;
    char *headers;
    void *task;
} letter_t;

static void letter_free(void *p)
{
    letter_t *l = p;
    if (l == NULL) {
        return;
    }
    char *strs[] = {l->topic,    l->queue,    l->key,   l->instance_id, l->step_id,
                    l->idem_key, l->activity, l->input, l->reason,      l->headers};
    for (size_t i = 0; i < SG_ARRAY_LEN(strs); i++) {
        sg_free(strs[i]);
    }
    sg_free(l->task);
    sg_free(l);
}

/* A copy of s (NULL stays NULL); clears *ok when memory runs out. */
static char *dup(const char *s, bool *ok)
{
    char *c = s != NULL ? sg_strdup(s) : NULL;
    *ok = *ok && (s == NULL || c != NULL);
    return c;
}

static letter_t *letter_copy(const sg_dead_letter_t *dl)
{
    letter_t *l = sg_calloc(1, sizeof(*l));
    if (l == NULL) {
        return NULL;
    }
    bool ok = true;
    l->topic = dup(dl->topic, &ok);
    l->queue = dup(dl->queue, &ok);
    l->key = dup(dl->key, &ok);
    l->instance_id = dup(dl->instance_id, &ok);
    l->step_id = dup(dl->step_id, &ok);
    l->idem_key = dup(dl->idempotency_key, &ok);
    l->activity = dup(dl->activity, &ok);
    l->input = dup(dl->input, &ok);
    l->reason = dup(dl->reason, &ok);
    l->headers = dup(dl->headers, &ok);
    l->task = sg_malloc(dl->len > 0 ? dl->len : 1);
    if (!ok || l->task == NULL) {
        letter_free(l);
        return NULL;
    }
    if (dl->len > 0) {
        memcpy(l->task, dl->value, dl->len);
    }
    l->row = (sg_store_dlq_t){.topic = l->topic,
                              .partition = dl->partition,
                              .offset = dl->offset,
                              .queue = l->queue,
                              .key = l->key,
                              .instance_id = l->instance_id,
                              .step_id = l->step_id,
                              .idempotency_key = l->idem_key,
                              .activity = l->activity,
                              .attempt = dl->attempt,
                              .input = l->input,
                              .reason = l->reason,
                              .headers = l->headers,
                              .task = l->task,
                              .task_len = dl->len};
    return l;
}

static void pause_ms_for(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Whether the driver is stopping (then nothing is acknowledged any more). */
static bool stopping(sg_driver_t *d)
{
    pthread_mutex_lock(&d->mu);
    bool stop = d->stopping;
    pthread_mutex_unlock(&d->mu);
    return stop;
}

void drv__on_dead_letter(void *ctx, const sg_dead_letter_t *dl)
{
    sg_driver_t *d = ctx;
    for (unsigned tries = 0, pause_ms = RETRY_FIRST_MS;; tries++) {
        item_t *it = sg_calloc(1, sizeof(*it));
        letter_t *l = it != NULL ? letter_copy(dl) : NULL;
        sg_err_t rc = SG_ERR_NOMEM;
        if (l != NULL) {
            it->kind = ITEM_DEAD_LETTER;
            it->ext = l;
            it->ext_free = letter_free;
            waiter_t w;
            /* Answered after the batch that wrote the row committed (SG_OK), when that
             * batch failed (SG_ERR_IO, see drv__dlq_again), or refused while stopping. */
            rc = drv__wait_for(d, it, &w);
        } else {
            sg_free(it);
        }
        if (rc == SG_OK || rc == SG_ERR_STATE || stopping(d)) {
            return;
        }
        if (tries == 0) {
            sg_log(SG_LOG_ERROR, NULL,
                   "%s: dead letter %s partition %d offset %" PRId64 " not recorded yet; trying "
                   "again",
                   rc == SG_ERR_NOMEM ? "out of memory" : "store", dl->topic, (int)dl->partition,
                   dl->offset);
        }
        pause_ms_for(pause_ms);
        pause_ms = pause_ms * 2 < RETRY_MAX_MS ? pause_ms * 2 : RETRY_MAX_MS;
    }
}

void drv__dlq_again(sg_driver_t *d, item_t *it)
{
    (void)d;
    /* Its writer waits for it and tries again (nothing to allocate here); the caller
     * frees the item. */
    waiter_t *w = it->waiter;
    it->waiter = NULL;
    if (w != NULL) {
        pthread_mutex_lock(&w->mu);
        w->rc = SG_ERR_IO;
        w->done = true;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

/* ---- the engine thread ---- */

typedef struct {
    int64_t id;
    bool requeue;
} action_t;

/* What an action needs of its row, copied out of the store's callback. */
typedef struct {
    dlq_state_t state;
    bool state_ok;
    char queue[SG_KAFKA_TOPIC_MAX + 1];
    char *key;
    void *task;
    size_t task_len;
    bool nomem;
} found_t;

static bool copy_found(void *ctx, const sg_store_dlq_t *row)
{
    found_t *f = ctx;
    f->state_ok = state_parse(row->status, &f->state);
    snprintf(f->queue, sizeof(f->queue), "%s", row->queue);
    f->key = row->key != NULL ? sg_strdup(row->key) : NULL;
    f->task = sg_malloc(row->task_len > 0 ? row->task_len : 1);
    f->task_len = row->task_len;
    f->nomem = (row->key != NULL && f->key == NULL) || f->task == NULL;
    if (!f->nomem && row->task_len > 0) {
        memcpy(f->task, row->task, row->task_len);
    }
    return false;
}

/* Applies an operator's action; *answer: SG_OK, SG_ERR_NOT_FOUND, SG_ERR_STATE (the row's
 * status does not allow it) or SG_ERR_INVALID (it cannot be requeued here). */
static sg_err_t act(sg_driver_t *d, const action_t *a, uint64_t now, sg_err_t *answer)
{
    found_t f = {0};
    sg_err_t rc = sg_store_dlq_get(d->store, a->id, copy_found, &f);
    sg_err_t ret = SG_OK;
    dlq_state_t next = a->requeue ? DLQ_REQUEUED : DLQ_DISCARDED;
    char topic[SG_KAFKA_TOPIC_MAX + 1];
    if (rc == SG_ERR_NOT_FOUND) {
        *answer = SG_ERR_NOT_FOUND;
    } else if (rc != SG_OK || f.nomem) {
        ret = rc == SG_OK ? SG_ERR_NOMEM : SG_ERR_IO;
    } else if (!f.state_ok || !transition_valid(f.state, next)) {
        *answer = SG_ERR_STATE;
    } else if (a->requeue &&
               (d->outbox == NULL ||
                !sg_kafka_task_topic(f.queue, strlen(f.queue), false, topic, sizeof(topic)))) {
        *answer = SG_ERR_INVALID;
    } else if (sg_store_dlq_set_status(d->store, a->id, state_names[next], (int64_t)now) != SG_OK ||
               (a->requeue && !drv__outbox_put(d, topic, f.key, f.task, f.task_len, now))) {
        ret = SG_ERR_IO;
    } else {
        *answer = SG_OK;
        sg_log(SG_LOG_INFO, NULL, "dead letter %" PRId64 " %s%s%s", a->id, state_names[next],
               a->requeue ? ": its task goes to " : "", a->requeue ? topic : "");
    }
    if (ret == SG_ERR_IO) {
        sg_log(SG_LOG_ERROR, NULL, "store: %s", sg_store_errmsg(d->store));
    }
    sg_free(f.key);
    sg_free(f.task);
    return ret;
}

sg_err_t drv__dlq_apply(sg_driver_t *d, item_t *it, uint64_t now, sg_err_t *answer)
{
    *answer = SG_OK;
    if (it->kind == ITEM_DLQ_ACTION) {
        return act(d, it->ext, now, answer);
    }
    letter_t *l = it->ext;
    l->row.received_ms = (int64_t)now;
    if (sg_store_dlq_insert(d->store, &l->row, NULL) != SG_OK) {
        sg_log(SG_LOG_ERROR, NULL, "store: %s", sg_store_errmsg(d->store));
        return SG_ERR_IO;
    }
    return SG_OK;
}

/* ---- operators (any thread but the engine's) ---- */

static sg_err_t action(sg_driver_t *d, int64_t id, bool requeue)
{
    item_t *it = sg_calloc(1, sizeof(*it));
    action_t *a = sg_calloc(1, sizeof(*a));
    if (it == NULL || a == NULL) {
        sg_free(it);
        sg_free(a);
        return SG_ERR_NOMEM;
    }
    *a = (action_t){.id = id, .requeue = requeue};
    it->kind = ITEM_DLQ_ACTION;
    it->ext = a;
    it->ext_free = sg_free;
    waiter_t w;
    return drv__wait_for(d, it, &w);
}

sg_err_t sg_driver_dlq_requeue(sg_driver_t *d, int64_t id)
{
    return action(d, id, true);
}

sg_err_t sg_driver_dlq_discard(sg_driver_t *d, int64_t id)
{
    return action(d, id, false);
}
