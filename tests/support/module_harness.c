/*
 * module_harness: the shared harness of the activity modules' unit tests (see
 * module_harness.h). It drives a module only through its public vtable and reads its
 * database only through connections of its own; it must never allocate through
 * sg_malloc (the tests count those allocations) nor keep state between tests.
 */
/* cmocka.h needs these before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activities/common/events.h"
#include "tests/support/module_harness.h"

/* ---- temporary directory ---- */

void mh_dir_make(char *dir, size_t len, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(dir, len, "%s/sg-test-%s-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp", name);
    assert_true(n > 0 && (size_t)n < len);
    if (mkdtemp(dir) == NULL) {
        fail_msg("mkdtemp %s failed", dir);
    }
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

int mh_dir_remove(const char *dir)
{
    /* A recursive delete: only ever of a directory mh_dir_make made. */
    if (dir == NULL || strstr(dir, "/sg-test-") == NULL) {
        return -1;
    }
    /* Depth first and without following links: files (the database, its -wal and -shm,
     * whatever a module added) go before their directory. */
    return nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* ---- the module ---- */

mh_t *mh_new(const char *queue, const char *db_file, const char *seed_json)
{
    const sg_activity_module_t *mod = sg_activity_module(queue);
    if (mod == NULL) {
        fail_msg("no activity module \"%s\"", queue);
    }
    mh_t *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    h->mod = mod;
    mh_dir_make(h->dir, sizeof(h->dir), queue);
    int n = db_file != NULL ? snprintf(h->db, sizeof(h->db), "%s/%s", h->dir, db_file)
                            : snprintf(h->db, sizeof(h->db), "%s/%s.db", h->dir, queue);
    assert_true(n > 0 && (size_t)n < sizeof(h->db));
    h->actx = mh_ctx_open(h, NULL);
    if (seed_json != NULL) {
        mh_seed(h, seed_json);
    }
    return h;
}

int mh_free(mh_t *h)
{
    if (h == NULL) {
        return 0;
    }
    if (h->actx != NULL) {
        h->mod->close(h->actx);
    }
    int rc = mh_dir_remove(h->dir);
    free(h);
    return rc;
}

int mh_teardown(void **state)
{
    return mh_free(*state);
}

sg_activity_ctx_t *mh_ctx_open(const mh_t *h, const char *chaos)
{
    char err[256] = "";
    sg_activity_ctx_t *ctx = NULL;
    sg_activity_env_t env = {.data_dir = h->dir, .chaos = chaos};
    if (h->mod->open(&env, &ctx, err, sizeof(err)) != SG_OK) {
        fail_msg("open %s in %s: %s", h->mod->queue, h->dir, err);
    }
    assert_non_null(ctx);
    return ctx;
}

void mh_reopen(mh_t *h, const char *chaos)
{
    h->mod->close(h->actx);
    h->actx = NULL;
    h->actx = mh_ctx_open(h, chaos);
}

void mh_seed(const mh_t *h, const char *json)
{
    char err[256] = "";
    if (h->mod->seed(h->actx, json, err, sizeof(err)) != SG_OK) {
        fail_msg("seed: %s", err);
    }
}

/* ---- tasks ---- */

void mh_run(const mh_t *h, sg_activity_ctx_t *ctx, const char *op, const sg_task_t *task,
            sg_task_result_t *res)
{
    /* On the stack: sg_task_key would allocate through sg_malloc. */
    char key[256], act[96];
    sg_task_t t = *task;
    if (t.activity == NULL) {
        int n = snprintf(act, sizeof(act), "%s.%s", h->mod->queue, op);
        assert_true(n > 0 && (size_t)n < sizeof(act));
        t.activity = act;
    }
    if (t.idempotency_key == NULL) {
        int n = snprintf(key, sizeof(key), "%s/%s%s", t.instance_id, t.step_id,
                         t.compensation ? "/compensate" : "");
        assert_true(n > 0 && (size_t)n < sizeof(key));
        t.idempotency_key = key;
    }
    if (t.attempt == 0) {
        t.attempt = 1;
    }
    const sg_activity_op_t *o = sg_activity_module_op(h->mod, op);
    if (o == NULL) {
        fail_msg("module %s has no operation \"%s\"", h->mod->queue, op);
    }
    sg_task_result_fini(res);
    o->run(ctx != NULL ? ctx : h->actx, &t, res);
}

void mh_call(const mh_t *h, const char *op, const char *inst, const char *sid, bool comp,
             const char *input, sg_task_result_t *res)
{
    sg_task_t t = {.instance_id = inst, .step_id = sid, .compensation = comp, .input = input};
    mh_run(h, NULL, op, &t, res);
}

void mh_call_key(const mh_t *h, sg_activity_ctx_t *ctx, const char *op, const char *key,
                 const char *input, uint64_t deadline_ms, sg_task_result_t *res)
{
    static const char suffix[] = "/compensate";
    const size_t slen = sizeof(suffix) - 1;
    char inst[128], step[128];
    size_t klen = strlen(key), ilen = strcspn(key, "/");
    const char *rest = key[ilen] == '/' ? key + ilen + 1 : "";
    snprintf(inst, sizeof(inst), "%.*s", (int)ilen, key);
    snprintf(step, sizeof(step), "%.*s", (int)strcspn(rest, "/"), rest);
    sg_task_t t = {.instance_id = inst,
                   .step_id = step,
                   .compensation = klen > slen && strcmp(key + klen - slen, suffix) == 0,
                   .input = input,
                   .idempotency_key = key,
                   .deadline_ms = deadline_ms};
    mh_run(h, ctx, op, &t, res);
}

/* ---- results ---- */

void mh_assert_ok(const sg_task_result_t *r, const char *output)
{
    if (r->outcome != SG_TASK_OK) {
        fail_msg("expected ok, got %s %s: %s", sg_task_outcome_name(r->outcome),
                 r->error_code ? r->error_code : "(null)",
                 r->error_message ? r->error_message : "(null)");
    }
    assert_non_null(r->output);
    if (output != NULL) {
        assert_string_equal(r->output, output);
    }
}

void mh_assert_failed(const sg_task_result_t *r, sg_task_outcome_t o, const char *code,
                      const char *msg_part)
{
    const char *got = sg_task_result_code(r);
    if (r->outcome != o || got == NULL || strcmp(got, code) != 0) {
        fail_msg("expected %s %s, got %s %s: %s", sg_task_outcome_name(o), code,
                 sg_task_outcome_name(r->outcome), got ? got : "(null)",
                 r->error_message ? r->error_message
                 : r->output      ? r->output
                                  : "(null)");
    }
    assert_non_null(r->error_message);
    if (msg_part != NULL && strstr(r->error_message, msg_part) == NULL) {
        fail_msg("message \"%s\" lacks \"%s\"", r->error_message, msg_part);
    }
}

cJSON *mh_output(const sg_task_result_t *r)
{
    mh_assert_ok(r, NULL);
    cJSON *o = cJSON_Parse(r->output);
    assert_true(cJSON_IsObject(o));
    return o;
}

const char *mh_jstr(const cJSON *o, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

long long mh_jint(const cJSON *o, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    assert_true(cJSON_IsNumber(v));
    return (long long)v->valuedouble;
}

/* ---- the outbox ---- */

/* The array p of size-byte entries, reallocated to cap entries. */
static void *grown(void *p, size_t cap, size_t size)
{
    void *q = realloc(p, cap * size);
    assert_non_null(q);
    return q;
}

/* Makes room for one more event in every array of e. */
static void events_grow(mh_events_t *e)
{
    if (e->n < e->cap) {
        return;
    }
    e->cap = e->cap ? 2 * e->cap : 16;
    e->type = grown(e->type, e->cap, sizeof(*e->type));
    e->corr = grown(e->corr, e->cap, sizeof(*e->corr));
    e->json = grown(e->json, e->cap, sizeof(*e->json));
    e->proto = grown(e->proto, e->cap, sizeof(*e->proto));
    e->proto_len = grown(e->proto_len, e->cap, sizeof(*e->proto_len));
}

bool mh_events_collect(void *arg, const sg_domain_event_t *ev)
{
    mh_events_t *e = arg;
    events_grow(e);
    e->type[e->n] = strdup(ev->type);
    e->corr[e->n] = strdup(ev->correlation_id ? ev->correlation_id : "");
    assert_true(e->type[e->n] != NULL && e->corr[e->n] != NULL);
    e->json[e->n] = cJSON_Parse(ev->json);
    e->proto[e->n] = sg_event_decode(ev->type, ev->proto, ev->proto_len);
    e->proto_len[e->n] = ev->proto_len;
    e->last_seq = ev->seq;
    e->n++;
    return true;
}

void mh_events_peek(const mh_t *h, size_t max, mh_events_t *e)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(h->mod->events_peek(h->actx, max, mh_events_collect, e), SG_OK);
}

void mh_events_ack(const mh_t *h, const mh_events_t *e)
{
    if (e->n > 0) {
        assert_int_equal(h->mod->events_ack(h->actx, e->last_seq), SG_OK);
    }
}

static bool note_seq(void *arg, const sg_domain_event_t *ev)
{
    *(int64_t *)arg = ev->seq;
    return true;
}

void mh_events_drain(const mh_t *h)
{
    int64_t seq = 0;
    assert_int_equal(h->mod->events_peek(h->actx, 100000, note_seq, &seq), SG_OK);
    if (seq > 0) {
        assert_int_equal(h->mod->events_ack(h->actx, seq), SG_OK);
    }
}

void mh_events_free(mh_events_t *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->type[i]);
        free(e->corr[i]);
        cJSON_Delete(e->json[i]);
        cJSON_Delete(e->proto[i]);
    }
    free(e->type);
    free(e->corr);
    free(e->json);
    free(e->proto);
    free(e->proto_len);
    memset(e, 0, sizeof(*e));
}

size_t mh_events_count(const mh_events_t *e, const char *type)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n; i++) {
        n += strcmp(e->type[i], type) == 0;
    }
    return n;
}

/* ---- the database ---- */

sqlite3 *mh_db_open(const char *db)
{
    sqlite3 *c = NULL;
    if (sqlite3_open_v2(db, &c, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fail_msg("open %s: %s", db, c ? sqlite3_errmsg(c) : "out of memory");
    }
    sqlite3_busy_timeout(c, 10000);
    return c;
}

/* Prepares the formatted query on a new connection and steps to its first row; the
 * caller finalizes *s and closes the connection. */
static sqlite3 *first_row(const char *db, sqlite3_stmt **s, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static sqlite3 *first_row(const char *db, sqlite3_stmt **s, const char *fmt, va_list ap)
{
    char sql[2048];
    int n = vsnprintf(sql, sizeof(sql), fmt, ap);
    assert_true(n >= 0 && (size_t)n < sizeof(sql));
    sqlite3 *c = mh_db_open(db);
    *s = NULL;
    if (sqlite3_prepare_v2(c, sql, -1, s, NULL) != SQLITE_OK) {
        fail_msg("%s: %s", sql, sqlite3_errmsg(c));
    }
    assert_int_equal(sqlite3_step(*s), SQLITE_ROW);
    return c;
}

long long mh_query_int(const char *db, const char *fmt, ...)
{
    sqlite3_stmt *s;
    va_list ap;
    va_start(ap, fmt);
    sqlite3 *c = first_row(db, &s, fmt, ap);
    va_end(ap);
    long long v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(c);
    return v;
}

char *mh_query_text(const char *db, const char *fmt, ...)
{
    sqlite3_stmt *s;
    va_list ap;
    va_start(ap, fmt);
    sqlite3 *c = first_row(db, &s, fmt, ap);
    va_end(ap);
    const char *t = (const char *)sqlite3_column_text(s, 0);
    char *v = t != NULL ? strdup(t) : NULL;
    assert_true(t == NULL || v != NULL);
    sqlite3_finalize(s);
    sqlite3_close(c);
    return v;
}

int mh_exec(const char *db, const char *sql)
{
    sqlite3 *c = mh_db_open(db);
    int rc = sqlite3_exec(c, sql, NULL, NULL, NULL);
    sqlite3_close(c);
    return rc;
}
