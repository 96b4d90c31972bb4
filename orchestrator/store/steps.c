/*
 * store/steps: the rows the engine writes as steps run: step attempts (dispatched,
 * finished, their last heartbeat), the append-only history, and timers. Same rules as
 * store.c: constant statements from store__queries, bound with parameters, every value
 * read back checked.
 *
 * It must never finish an attempt twice (the first result wins) nor touch a finished
 * attempt's row for a heartbeat (a late heartbeat is stale).
 */
#include "orchestrator/store/store_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ---- step attempts ---- */

/* Runs statement id, an UPDATE of a running attempt whose key is args[0..3]. When it
 * changed nothing, tells a finished attempt (SG_ERR_STATE) from a missing one
 * (SG_ERR_NOT_FOUND). */
static sg_err_t update_running(sg_store_t *st, int id, const arg_t *args, size_t n)
{
    int changes = 0;
    sg_err_t err = store__run_write(st, id, args, n, &changes);
    if (err != SG_OK || changes > 0) {
        return err;
    }
    int64_t found = 0;
    err = store__run_read(st, STORE_Q_ATT_EXISTS, args, 4, store__int_row, &found, NULL);
    if (err == SG_OK) {
        err = store__fail(st, found == 0 ? SG_ERR_NOT_FOUND : SG_ERR_STATE,
                          "%s: attempt %" PRId64 " of %s step %" PRId64 "%s %s",
                          store__queries[id].name, args[3].i, (const char *)args[0].p, args[1].i,
                          args[2].i ? " (compensation)" : "",
                          found == 0 ? "does not exist" : "is already finished");
    }
    return err;
}

sg_err_t sg_store_attempt_insert(sg_store_t *st, const sg_store_attempt_t *a)
{
    const char *what = store__queries[STORE_Q_ATT_INSERT].name;
    if (a == NULL || !store__present(a->instance_id) || !store__present(a->activity) ||
        a->input == NULL) {
        return store__missing(st, what, "instance_id, activity and input");
    }
    if (a->status != NULL && strcmp(a->status, "running") != 0) {
        return store__fail(st, SG_ERR_INVALID, "%s: a new attempt is \"running\", not \"%s\"", what,
                           a->status);
    }
    const arg_t args[] = {A_TEXT(a->instance_id), A_INT(a->step),       A_BOOL(a->compensation),
                          A_INT(a->attempt),      A_TEXT(a->activity),  A_TEXT(a->input),
                          A_INT(a->started_ms),   A_INT(a->deadline_ms)};
    return store__run_write(st, STORE_Q_ATT_INSERT, args, SG_ARRAY_LEN(args), NULL);
}

sg_err_t sg_store_attempt_finish(sg_store_t *st, const char *instance_id, int64_t step, bool comp,
                                 int64_t attempt, const char *status, const char *output,
                                 const char *error_code, const char *error_message,
                                 int64_t finished_ms)
{
    static const char *const final[] = {"ok", "failed", "timeout", "stale"};
    const char *what = store__queries[STORE_Q_ATT_FINISH].name;
    size_t k = 0;
    while (status != NULL && k < SG_ARRAY_LEN(final) && strcmp(status, final[k]) != 0) {
        k++;
    }
    if (!store__present(instance_id)) {
        return store__missing(st, what, "instance_id");
    }
    if (status == NULL || k == SG_ARRAY_LEN(final)) {
        return store__fail(st, SG_ERR_INVALID, "%s: status must be ok, failed, timeout or stale",
                           what);
    }
    const arg_t a[] = {A_TEXT(instance_id), A_INT(step),           A_BOOL(comp),
                       A_INT(attempt),      A_TEXT(status),        A_TEXT(output),
                       A_TEXT(error_code),  A_TEXT(error_message), A_INT(finished_ms)};
    return update_running(st, STORE_Q_ATT_FINISH, a, SG_ARRAY_LEN(a));
}

sg_err_t sg_store_attempt_heartbeat(sg_store_t *st, const char *instance_id, int64_t step,
                                    bool comp, int64_t attempt, int64_t received_ms,
                                    const char *worker, const char *progress)
{
    if (!store__present(instance_id)) {
        return store__missing(st, store__queries[STORE_Q_ATT_HEARTBEAT].name, "instance_id");
    }
    const arg_t a[] = {A_TEXT(instance_id), A_INT(step),    A_BOOL(comp),    A_INT(attempt),
                       A_INT(received_ms),  A_TEXT(worker), A_TEXT(progress)};
    return update_running(st, STORE_Q_ATT_HEARTBEAT, a, SG_ARRAY_LEN(a));
}

static bool attempt_row(q_t *q, void *arg)
{
    const visit_t *v = arg;
    sg_store_attempt_t a;
    a.instance_id = store__col_text(q, 0, true);
    a.step = store__col_int(q, 1, true);
    a.compensation = store__col_int(q, 2, true) != 0;
    a.attempt = store__col_int(q, 3, true);
    a.activity = store__col_text(q, 4, true);
    a.input = store__col_text(q, 5, true);
    a.status = store__col_text(q, 6, true);
    a.output = store__col_text(q, 7, false);
    a.error_code = store__col_text(q, 8, false);
    a.error_message = store__col_text(q, 9, false);
    a.started_ms = store__col_int(q, 10, false);
    a.deadline_ms = store__col_int(q, 11, false);
    a.finished_ms = store__col_int(q, 12, false);
    a.heartbeat_ms = store__col_int(q, 13, false);
    a.worker = store__col_text(q, 14, false);
    a.progress = store__col_text(q, 15, false);
    return q->err == SG_OK && v->cb.attempt(v->ctx, &a);
}

sg_err_t sg_store_attempt_scan_running(sg_store_t *st, sg_store_attempt_cb cb, void *ctx)
{
    visit_t v = {.cb.attempt = cb, .ctx = ctx};
    return cb == NULL ? store__no_cb(st, STORE_Q_ATT_RUNNING)
                      : store__run_read(st, STORE_Q_ATT_RUNNING, NULL, 0, attempt_row, &v, NULL);
}

sg_err_t sg_store_attempts_of(sg_store_t *st, const char *instance_id, sg_store_attempt_cb cb,
                              void *ctx)
{
    visit_t v = {.cb.attempt = cb, .ctx = ctx};
    const arg_t a[] = {A_TEXT(instance_id)};
    if (!store__present(instance_id) || cb == NULL) {
        return cb == NULL ? store__no_cb(st, STORE_Q_ATT_OF)
                          : store__missing(st, "list attempts", "instance_id");
    }
    return store__run_read(st, STORE_Q_ATT_OF, a, 1, attempt_row, &v, NULL);
}

/* ---- history ---- */

sg_err_t sg_store_hist_append(sg_store_t *st, const char *instance_id, int64_t seq, int64_t ts_ms,
                              const char *type, int64_t step, int64_t attempt, const char *detail)
{
    const arg_t a[] = {A_TEXT(instance_id), A_INT(seq),     A_INT(ts_ms),  A_TEXT(type),
                       A_INT(step),         A_INT(attempt), A_TEXT(detail)};
    if (!store__present(instance_id) || !store__present(type)) {
        return store__missing(st, "append history", !store__present(type) ? "type" : "instance_id");
    }
    return store__run_write(st, STORE_Q_HIST_APPEND, a, SG_ARRAY_LEN(a), NULL);
}

static bool hist_row(q_t *q, void *arg)
{
    const visit_t *v = arg;
    int64_t seq = store__col_int(q, 0, true);
    int64_t ts = store__col_int(q, 1, false);
    const char *type = store__col_text(q, 2, true);
    int64_t step = store__col_int(q, 3, false);
    int64_t attempt = store__col_int(q, 4, false);
    const char *detail = store__col_text(q, 5, false);
    return q->err == SG_OK && v->cb.hist(v->ctx, seq, ts, type, step, attempt, detail);
}

sg_err_t sg_store_hist_list(sg_store_t *st, const char *instance_id, int64_t after_seq,
                            size_t limit, sg_store_hist_cb cb, void *ctx)
{
    visit_t v = {.cb.hist = cb, .ctx = ctx};
    const arg_t a[] = {A_TEXT(instance_id), A_INT(after_seq), A_INT(store__limit_of(limit))};
    if (!store__present(instance_id) || cb == NULL) {
        return cb == NULL ? store__no_cb(st, STORE_Q_HIST_LIST)
                          : store__missing(st, "list history", "instance_id");
    }
    return store__run_read(st, STORE_Q_HIST_LIST, a, SG_ARRAY_LEN(a), hist_row, &v, NULL);
}

/* ---- timers ---- */

sg_err_t sg_store_timer_put(sg_store_t *st, const char *instance_id, int kind, int64_t step,
                            bool comp, int64_t attempt, int64_t fire_ms)
{
    const arg_t a[] = {A_TEXT(instance_id), A_INT(kind),    A_INT(step),
                       A_BOOL(comp),        A_INT(attempt), A_INT(fire_ms)};
    if (!store__present(instance_id)) {
        return store__missing(st, "put timer", "instance_id");
    }
    return store__run_write(st, STORE_Q_TIMER_PUT, a, SG_ARRAY_LEN(a), NULL);
}

sg_err_t sg_store_timer_delete(sg_store_t *st, const char *instance_id, int kind, int64_t step,
                               bool comp, int64_t attempt)
{
    const arg_t a[] = {A_TEXT(instance_id), A_INT(kind), A_INT(step), A_BOOL(comp), A_INT(attempt)};
    if (!store__present(instance_id)) {
        return store__missing(st, "delete timer", "instance_id");
    }
    return store__run_write(st, STORE_Q_TIMER_DEL, a, SG_ARRAY_LEN(a), NULL);
}

sg_err_t sg_store_timer_delete_instance(sg_store_t *st, const char *instance_id)
{
    const arg_t a[] = {A_TEXT(instance_id)};
    if (!store__present(instance_id)) {
        return store__missing(st, "delete timers", "instance_id");
    }
    return store__run_write(st, STORE_Q_TIMER_DEL_INST, a, 1, NULL);
}

static bool timer_row(q_t *q, void *arg)
{
    const visit_t *v = arg;
    const char *id = store__col_text(q, 0, true);
    int64_t kind = store__col_int(q, 1, true);
    int64_t step = store__col_int(q, 2, true);
    bool comp = store__col_int(q, 3, true) != 0;
    int64_t attempt = store__col_int(q, 4, true);
    int64_t fire = store__col_int(q, 5, true);
    if (kind < INT32_MIN || kind > INT32_MAX) {
        store__corrupt(q, 1, "is out of range");
    }
    return q->err == SG_OK && v->cb.timer(v->ctx, id, (int)kind, step, comp, attempt, fire);
}

sg_err_t sg_store_timer_scan(sg_store_t *st, sg_store_timer_cb cb, void *ctx)
{
    visit_t v = {.cb.timer = cb, .ctx = ctx};
    return cb == NULL ? store__no_cb(st, STORE_Q_TIMER_SCAN)
                      : store__run_read(st, STORE_Q_TIMER_SCAN, NULL, 0, timer_row, &v, NULL);
}
