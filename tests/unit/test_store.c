/*
 * Unit tests of the store on a real SQLite file in a temporary directory (removed at the
 * end): migrations, every row operation, pagination, uniqueness rules, read-only
 * handles, transactions, durability across reopen, corrupt rows and damaged pages, and
 * out-of-memory loops. SQLite's own allocations are routed through sg_malloc for the
 * whole binary, so sg_alloc_fail_at reaches inside SQLite too.
 *
 * Callbacks print each row as one line into an out_t, so a test compares whole results.
 */
#include <dirent.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* cmocka.h needs setjmp.h, stdarg.h, stddef.h and stdint.h before it. */
#include <cmocka.h>

#include "orchestrator/store/store.h"

/* ---- harness ---- */

static char tmpdir[64];
static char pathbuf[128];

static const char *db_path(const char *name)
{
    snprintf(pathbuf, sizeof(pathbuf), "%s/%s.db", tmpdir, name);
    return pathbuf;
}

static void remove_db(const char *path)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[160];
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        unlink(p);
    }
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sg_test_storeXXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[400];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    return rmdir(tmpdir);
}

static sg_store_t *open_at(const char *path, sg_sync_t sync, bool readonly)
{
    sg_store_opts_t o = {.sync = sync, .readonly = readonly};
    sg_store_t *st = NULL;
    char err[256];
    sg_err_t rc = sg_store_open(path, &o, &st, err, sizeof(err));
    if (rc != SG_OK) {
        fail_msg("open %s: %s (%s)", path, err, sg_strerror(rc));
    }
    return st;
}

/* A writer on a new file. */
static sg_store_t *fresh(const char *name)
{
    remove_db(db_path(name));
    return open_at(db_path(name), SG_SYNC_OFF, false);
}

/* Runs SQL on the file through a raw connection: what an operator or another program
 * could do behind the store's back. */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fail_msg("%s: %s", sql, msg);
    }
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static sg_store_inst_t inst_row(const char *id, const char *wf, const char *status, int64_t created)
{
    sg_store_inst_t r = {.workflow = wf,
                         .version = 1,
                         .status = status,
                         .input = "{\"order_id\":\"o1\"}",
                         .state = "{}",
                         .created_ms = created,
                         .updated_ms = created};
    snprintf(r.id, sizeof(r.id), "%s", id);
    return r;
}

/* Rows printed one per line; the last instance seen is kept for cursors. */
typedef struct {
    char text[4096];
    size_t n, stop_after;
    char last_id[32];
    int64_t last_created;
} out_t;

__attribute__((format(printf, 2, 3))) static bool emit(out_t *o, const char *fmt, ...)
{
    size_t len = strlen(o->text);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->text + len, sizeof(o->text) - len, fmt, ap);
    va_end(ap);
    len = strlen(o->text);
    assert_true(len + 1 < sizeof(o->text));
    o->text[len] = '\n';
    o->n++;
    return o->stop_after == 0 || o->n < o->stop_after;
}

#define S(s) ((s) != NULL ? (s) : "-")

static bool inst_id_cb(void *ctx, const sg_store_inst_t *r)
{
    out_t *o = ctx;
    memcpy(o->last_id, r->id, sizeof(r->id));
    o->last_created = r->created_ms;
    return emit(o, "%s", r->id);
}

static bool inst_full_cb(void *ctx, const sg_store_inst_t *r)
{
    return emit(ctx, "%s %s v%d %s reason=%s in=%s state=%s key=%s %d/%d/%d seq=%d/%d", r->id,
                r->workflow, (int)r->version, r->status, r->reason, r->input, r->state,
                S(r->idempotency_key), (int)r->created_ms, (int)r->updated_ms, (int)r->deadline_ms,
                (int)r->seq, (int)r->hist_seq);
}

static bool def_cb(void *ctx, const char *name, int64_t version, const char *sha, const char *src)
{
    return emit(ctx, "%s v%d %s %s", name, (int)version, sha, src);
}

static bool att_cb(void *ctx, const sg_store_attempt_t *a)
{
    return emit(ctx, "%s/%d/%d/%d %s %s in=%s out=%s err=%s:%s t=%d/%d/%d", a->instance_id,
                (int)a->step, a->compensation ? 1 : 0, (int)a->attempt, a->activity, a->status,
                a->input, S(a->output), S(a->error_code), S(a->error_message), (int)a->started_ms,
                (int)a->deadline_ms, (int)a->finished_ms);
}

static bool hist_cb(void *ctx, int64_t seq, int64_t ts, const char *type, int64_t step,
                    int64_t attempt, const char *detail)
{
    return emit(ctx, "%d @%d %s s%d a%d %s", (int)seq, (int)ts, type, (int)step, (int)attempt,
                S(detail));
}

static bool timer_cb(void *ctx, const char *id, int kind, int64_t step, bool comp, int64_t attempt,
                     int64_t fire)
{
    return emit(ctx, "%s k%d s%d c%d a%d @%d", id, kind, (int)step, comp ? 1 : 0, (int)attempt,
                (int)fire);
}

static bool event_cb(void *ctx, const sg_store_event_t *e)
{
    if (e->event_id != NULL || e->source != NULL) {
        return emit(ctx, "%d %s %s @%d %s [%s %s]", (int)e->id, e->type, S(e->correlation_id),
                    (int)e->ts_ms, S(e->payload), S(e->event_id), S(e->source));
    }
    return emit(ctx, "%d %s %s @%d %s", (int)e->id, e->type, S(e->correlation_id), (int)e->ts_ms,
                S(e->payload));
}

static bool outbox_cb(void *ctx, int64_t id, const char *topic, const char *key,
                      const void *payload, size_t len)
{
    char hex[40] = "";
    assert_true(len < 16 && (len == 0) == (payload == NULL));
    for (size_t i = 0; i < len; i++) {
        snprintf(hex + 2 * i, 3, "%02x", ((const unsigned char *)payload)[i]);
    }
    ((out_t *)ctx)->last_created = id;
    return emit(ctx, "%s %s [%s]", topic, S(key), hex);
}

static bool count_cb(void *ctx, const sg_store_inst_t *r)
{
    (void)r;
    (*(size_t *)ctx)++;
    return true;
}

/* ---- open, migrations, foreign files ---- */

static void test_open_migrations_idempotent(void **state)
{
    (void)state;
    const char *p = db_path("migrate");
    remove_db(p);
    for (int i = 0; i < 3; i++) {
        sg_store_t *st = open_at(p, SG_SYNC_FULL, false);
        assert_string_equal(sg_store_errmsg(st), "");
        assert_false(sg_store_readonly(st));
        sg_store_inst_t r = inst_row(i == 0 ? "a" : i == 1 ? "b" : "c", "wf", "RUNNING", i);
        assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
        sg_store_close(st);
    }
    assert_int_equal(raw_int(p, "SELECT count(*) FROM schema_migrations"), SG_STORE_SCHEMA_VERSION);
    assert_int_equal(raw_int(p, "SELECT max(version) FROM schema_migrations"),
                     SG_STORE_SCHEMA_VERSION);
    assert_true(raw_int(p, "SELECT min(applied_ms) FROM schema_migrations") > 1600000000000);
    assert_int_equal(raw_int(p, "SELECT count(*) FROM instances"), 3);
    assert_int_equal(raw_int(p, "PRAGMA application_id"), 0x73616761);
    assert_int_equal(raw_int(p, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
    sg_store_close(NULL);
    assert_string_equal(sg_store_errmsg(NULL), "");
}

static void test_newer_schema_refused(void **state)
{
    (void)state;
    const char *p = db_path("newer");
    sg_store_close(fresh("newer"));
    raw_exec(p, "INSERT INTO schema_migrations(version, applied_ms) VALUES (99, 0)");
    sg_store_t *st = (sg_store_t *)&st; /* must be overwritten with NULL */
    char err[256];
    assert_int_equal(sg_store_open(p, NULL, &st, err, sizeof(err)), SG_ERR_INVALID);
    assert_null(st);
    assert_non_null(strstr(err, "schema version 99 is newer"));
    sg_store_opts_t ro = {.readonly = true};
    assert_int_equal(sg_store_open(p, &ro, &st, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "newer"));
    assert_int_equal(raw_int(p, "SELECT max(version) FROM schema_migrations"), 99);
}

static void test_foreign_files_refused(void **state)
{
    (void)state;
    char err[256];
    sg_store_t *st = NULL;
    const char *p = db_path("foreign");
    remove_db(p);
    raw_exec(p, "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT)");
    assert_int_equal(sg_store_open(p, NULL, &st, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "not a sagad database"));
    assert_int_equal(raw_int(p, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"), 1);
    raw_exec(p, "DROP TABLE customers; PRAGMA application_id = 42");
    assert_int_equal(sg_store_open(p, NULL, &st, err, sizeof(err)), SG_ERR_INVALID);

    p = db_path("garbage"); /* not SQLite at all */
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (int i = 0; i < 512; i++) {
        fputs("this is not a database ", f);
    }
    fclose(f);
    assert_int_equal(sg_store_open(p, NULL, &st, err, sizeof(err)), SG_ERR_IO);
    assert_null(st);
    assert_non_null(strstr(err, "not a database"));

    sg_store_opts_t ro = {.readonly = true}; /* a reader needs an existing, migrated file */
    p = db_path("missing");
    remove_db(p);
    assert_int_equal(sg_store_open(p, &ro, &st, err, sizeof(err)), SG_ERR_IO);
    raw_exec(p, "PRAGMA user_version = 1");
    assert_int_equal(sg_store_open(p, &ro, &st, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "open it read-write once"));

    assert_int_equal(sg_store_open("", NULL, &st, NULL, 0), SG_ERR_INVALID);
    sg_store_opts_t bad = {.sync = (sg_sync_t)7};
    assert_int_equal(sg_store_open(db_path("badsync"), &bad, &st, err, sizeof(err)),
                     SG_ERR_INVALID);
}

static void test_sync_modes(void **state)
{
    (void)state;
    sg_sync_t s = SG_SYNC_OFF;
    assert_true(sg_sync_parse("full", &s) && s == SG_SYNC_FULL);
    assert_true(sg_sync_parse("NORMAL", &s) && s == SG_SYNC_NORMAL);
    assert_true(sg_sync_parse("off", &s) && s == SG_SYNC_OFF);
    assert_false(sg_sync_parse("fast", &s));
    assert_false(sg_sync_parse(NULL, &s));
    const sg_sync_t modes[] = {SG_SYNC_FULL, SG_SYNC_NORMAL, SG_SYNC_OFF};
    for (size_t i = 0; i < 3; i++) {
        sg_store_t *st = open_at(db_path("sync"), modes[i], false);
        assert_int_equal(sg_store_event_append(st, "e", NULL, 1, NULL), SG_OK);
        sg_store_close(st);
    }
    /* In memory: no WAL, the rest works. */
    sg_store_t *mem = open_at(":memory:", SG_SYNC_FULL, false);
    assert_int_equal(sg_store_event_append(mem, "e", NULL, 1, NULL), SG_OK);
    char check[16];
    assert_int_equal(sg_store_integrity_check(mem, check, sizeof(check)), SG_OK);
    sg_store_close(mem);
}

/* ---- definitions and instances ---- */

static void test_definitions(void **state)
{
    (void)state;
    sg_store_t *st = fresh("defs");
    assert_int_equal(sg_store_def_put(st, "order", 2, "bb", "saga: order", 10), SG_OK);
    assert_int_equal(sg_store_def_put(st, "order", 1, "aa", "saga: order", 10), SG_OK);
    assert_int_equal(sg_store_def_put(st, "order", 1, "aa", "saga: order", 11), SG_OK);
    assert_int_equal(sg_store_def_put(st, "order", 1, "cc", "changed", 12), SG_ERR_EXISTS);
    assert_non_null(strstr(sg_store_errmsg(st), "another sha256"));
    assert_int_equal(sg_store_def_put(st, "billing", 1, "dd", "saga: billing", 10), SG_OK);
    assert_int_equal(sg_store_def_put(st, NULL, 1, "dd", "x", 10), SG_ERR_INVALID);
    assert_int_equal(sg_store_def_put(st, "x", 1, "", "x", 10), SG_ERR_INVALID);
    out_t o = {0};
    assert_int_equal(sg_store_def_scan(st, def_cb, &o), SG_OK);
    assert_string_equal(o.text, "billing v1 dd saga: billing\norder v1 aa saga: order\n"
                                "order v2 bb saga: order\n");
    out_t one = {.stop_after = 1};
    assert_int_equal(sg_store_def_scan(st, def_cb, &one), SG_OK);
    assert_int_equal(one.n, 1);
    assert_int_equal(sg_store_def_scan(st, NULL, NULL), SG_ERR_INVALID);
    sg_store_close(st);
}

static void test_instances_roundtrip(void **state)
{
    (void)state;
    sg_store_t *st = fresh("inst");
    sg_store_inst_t r = inst_row("01HX0000000000000000000001", "order", "RUNNING", 1000);
    r.idempotency_key = "k1";
    r.deadline_ms = 5000;
    r.version = 3;
    assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
    assert_int_equal(sg_store_inst_insert(st, &r), SG_ERR_EXISTS);
    assert_non_null(strstr(sg_store_errmsg(st), "insert instance"));
    out_t o = {0};
    assert_int_equal(sg_store_inst_get(st, r.id, inst_full_cb, &o), SG_OK);
    assert_string_equal(o.text,
                        "01HX0000000000000000000001 order v3 RUNNING reason= "
                        "in={\"order_id\":\"o1\"} state={} key=k1 1000/1000/5000 seq=0/0\n");

    /* Update changes the mutable fields only. */
    sg_store_inst_t u = inst_row(r.id, "ignored", "COMPENSATING", 9999);
    u.reason = "step_failed";
    u.state = "{\"v\":2}";
    u.seq = 7;
    u.hist_seq = 12;
    u.deadline_ms = 6000;
    assert_int_equal(sg_store_inst_update(st, &u), SG_OK);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_inst_get(st, r.id, inst_full_cb, &o), SG_OK);
    assert_string_equal(
        o.text, "01HX0000000000000000000001 order v3 COMPENSATING reason=step_failed "
                "in={\"order_id\":\"o1\"} state={\"v\":2} key=k1 1000/9999/6000 seq=7/12\n");
    sg_store_inst_t missing = inst_row("nope", "order", "RUNNING", 1);
    assert_int_equal(sg_store_inst_update(st, &missing), SG_ERR_NOT_FOUND);
    assert_int_equal(sg_store_inst_get(st, "nope", inst_full_cb, &o), SG_ERR_NOT_FOUND);
    assert_non_null(strstr(sg_store_errmsg(st), "no instance nope"));

    /* Invalid rows never reach SQLite. */
    sg_store_inst_t bad = inst_row("x", "order", "RUNNING", 1);
    memset(bad.id, 'x', sizeof(bad.id));
    assert_int_equal(sg_store_inst_insert(st, &bad), SG_ERR_INVALID);
    bad = inst_row("x", "order", "RUNNING", 1);
    bad.state = NULL;
    assert_int_equal(sg_store_inst_insert(st, &bad), SG_ERR_INVALID);
    assert_non_null(strstr(sg_store_errmsg(st), "state is required"));
    bad = inst_row("", "order", "RUNNING", 1);
    assert_int_equal(sg_store_inst_insert(st, &bad), SG_ERR_INVALID);
    assert_int_equal(sg_store_inst_insert(st, NULL), SG_ERR_INVALID);
    assert_int_equal(sg_store_inst_get(st, "", inst_full_cb, &o), SG_ERR_INVALID);

    /* Active scan (RUNNING and COMPENSATING, by created_ms) and counts. */
    const char *statuses[] = {"RUNNING", "COMPLETED", "COMPENSATING", "FAILED", "RUNNING"};
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "s%d", i);
        sg_store_inst_t s = inst_row(id, "order", statuses[i], 2000 - i);
        assert_int_equal(sg_store_inst_insert(st, &s), SG_OK);
    }
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_inst_scan_active(st, inst_id_cb, &o), SG_OK);
    assert_string_equal(o.text, "01HX0000000000000000000001\ns4\ns2\ns0\n");
    int64_t n = -1;
    assert_int_equal(sg_store_inst_count(st, NULL, &n), SG_OK);
    assert_int_equal(n, 6);
    assert_int_equal(sg_store_inst_count(st, "RUNNING", &n), SG_OK);
    assert_int_equal(n, 2);
    assert_int_equal(sg_store_inst_count(st, "FAILED", &n), SG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(sg_store_inst_count(st, "NOPE", &n), SG_OK);
    assert_int_equal(n, 0);
    sg_store_close(st);
}

/* Lists with f and checks how many rows came. */
static void list_and_count(sg_store_t *st, const sg_store_inst_filter_t *f, size_t want)
{
    out_t o = {0};
    assert_int_equal(sg_store_inst_list(st, f, inst_id_cb, &o), SG_OK);
    assert_int_equal(o.n, want);
}

static void test_inst_list_pagination(void **state)
{
    (void)state;
    sg_store_t *st = fresh("list");
    /* 30 instances, inserted out of order: workflow a/b/c by i % 3, status by (i / 3) % 3,
     * created_ms 1000 + i / 2 so that pairs tie and the id (descending in i) decides. */
    const char *statuses[] = {"RUNNING", "COMPLETED", "FAILED"};
    assert_int_equal(sg_store_begin(st), SG_OK);
    for (int k = 0; k < 30; k++) {
        int i = (k * 7) % 30;
        char id[16];
        snprintf(id, sizeof(id), "i%02d", 29 - i);
        const char *wf = i % 3 == 0 ? "a" : i % 3 == 1 ? "b" : "c";
        sg_store_inst_t r = inst_row(id, wf, statuses[(i / 3) % 3], 1000 + i / 2);
        assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
    }
    assert_int_equal(sg_store_commit(st), SG_OK);

    out_t all = {0};
    assert_int_equal(sg_store_inst_list(st, NULL, inst_id_cb, &all), SG_OK);
    assert_int_equal(all.n, 30);
    assert_true(strncmp(all.text, "i28\ni29\ni26\ni27\ni24\n", 20) == 0);

    /* Workflow "a" (i = 0, 3, ..., 27) in pages of 4: 4 + 4 + 2, then nothing. */
    static const char *const pages[] = {"i29\ni26\ni23\ni20\n", "i17\ni14\ni11\ni08\n",
                                        "i05\ni02\n", ""};
    sg_store_inst_filter_t f = {.workflow = "a", .limit = 4};
    char cursor[32];
    for (int page = 0; page < 4; page++) {
        out_t o = {0};
        assert_int_equal(sg_store_inst_list(st, &f, inst_id_cb, &o), SG_OK);
        assert_string_equal(o.text, pages[page]);
        if (o.n > 0) {
            memcpy(cursor, o.last_id, sizeof(cursor));
            f.after_id = cursor;
            f.after_created_ms = o.last_created;
        }
    }

    /* A cursor inside a created_ms tie continues with the other id of the pair. */
    sg_store_inst_filter_t tie = {.after_id = "i28", .after_created_ms = 1000, .limit = 1};
    out_t o = {0};
    assert_int_equal(sg_store_inst_list(st, &tie, inst_id_cb, &o), SG_OK);
    assert_string_equal(o.text, "i29\n");

    /* Status (9 COMPLETED: i in 3..5, 12..14, 21..23), workflow + status, created_after
     * (created 1011..1014, two each), both bounds (the higher wins). */
    list_and_count(st, &(sg_store_inst_filter_t){.status = "COMPLETED"}, 9);
    list_and_count(st, &(sg_store_inst_filter_t){.status = "COMPLETED", .workflow = "b"}, 3);
    list_and_count(st, &(sg_store_inst_filter_t){.created_after_ms = 1010}, 8);
    sg_store_inst_filter_t both = {
        .created_after_ms = 1010, .after_id = "i28", .after_created_ms = 1000};
    list_and_count(st, &both, 8);
    both.after_id = "i05"; /* i = 24: the second of created 1012 (i04 < i05) */
    both.after_created_ms = 1012;
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_inst_list(st, &both, inst_id_cb, &o), SG_OK);
    assert_string_equal(o.text, "i02\ni03\ni00\ni01\n");
    both.created_after_ms = INT64_MAX;
    list_and_count(st, &both, 0);

    /* Active statuses take the partial index: same answers, same order, same cursor. */
    sg_store_inst_filter_t fr = {.status = "RUNNING", .limit = 5};
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_inst_list(st, &fr, inst_id_cb, &o), SG_OK);
    assert_string_equal(o.text, "i28\ni29\ni27\ni20\ni18\n");
    memcpy(cursor, o.last_id, sizeof(cursor));
    fr.after_id = cursor;
    fr.after_created_ms = o.last_created;
    fr.limit = 0;
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_inst_list(st, &fr, inst_id_cb, &o), SG_OK);
    assert_string_equal(o.text, "i19\ni10\ni11\ni09\ni02\ni00\ni01\n");
    list_and_count(st, &(sg_store_inst_filter_t){.status = "RUNNING", .workflow = "c"}, 4);
    int64_t n = 0;
    assert_int_equal(sg_store_inst_count(st, "RUNNING", &n), SG_OK);
    assert_int_equal(n, 12);

    out_t two = {.stop_after = 2}; /* a callback that stops early */
    assert_int_equal(sg_store_inst_list(st, NULL, inst_id_cb, &two), SG_OK);
    assert_int_equal(two.n, 2);
    sg_store_close(st);
}

/* ---- idempotency keys, attempts, history ---- */

static void test_idempotency_keys(void **state)
{
    (void)state;
    sg_store_t *st = fresh("idem");
    char id[32] = "junk";
    assert_int_equal(sg_store_idem_get(st, "order", "k1", id), SG_ERR_NOT_FOUND);
    assert_string_equal(id, "");
    assert_int_equal(sg_store_idem_put(st, "order", "k1", "inst1", 5), SG_OK);
    assert_int_equal(sg_store_idem_put(st, "order", "k1", "inst2", 6), SG_ERR_EXISTS);
    assert_int_equal(sg_store_idem_put(st, "order", "k1", "inst1", 6), SG_ERR_EXISTS);
    assert_int_equal(sg_store_idem_put(st, "billing", "k1", "inst3", 6), SG_OK);
    assert_int_equal(sg_store_idem_get(st, "order", "k1", id), SG_OK);
    assert_string_equal(id, "inst1");
    assert_int_equal(sg_store_idem_get(st, "billing", "k1", id), SG_OK);
    assert_string_equal(id, "inst3");
    assert_int_equal(sg_store_idem_put(st, "order", NULL, "x", 1), SG_ERR_INVALID);
    assert_int_equal(sg_store_idem_get(st, "", "k1", id), SG_ERR_INVALID);
    sg_store_close(st);
}

static sg_store_attempt_t attempt(const char *inst, int64_t step, bool comp, int64_t n)
{
    sg_store_attempt_t a = {.instance_id = inst,
                            .step = step,
                            .compensation = comp,
                            .attempt = n,
                            .activity = "inv.reserve",
                            .input = "{}",
                            .started_ms = 100 + n,
                            .deadline_ms = 500 + n};
    return a;
}

static void test_attempts(void **state)
{
    (void)state;
    sg_store_t *st = fresh("att");
    sg_store_attempt_t a = attempt("i1", 0, false, 1);
    assert_int_equal(sg_store_attempt_insert(st, &a), SG_OK);
    a.input = "{\"replayed\":true}";
    assert_int_equal(sg_store_attempt_insert(st, &a), SG_OK); /* replay: ignored */
    sg_store_attempt_t more[] = {attempt("i1", 0, false, 2), attempt("i1", 0, true, 1),
                                 attempt("i2", 3, false, 1)};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(sg_store_attempt_insert(st, &more[i]), SG_OK);
    }
    sg_store_attempt_t bad = attempt("i1", 1, false, 1);
    bad.status = "ok";
    assert_int_equal(sg_store_attempt_insert(st, &bad), SG_ERR_INVALID);
    bad.status = "running";
    bad.activity = NULL;
    assert_int_equal(sg_store_attempt_insert(st, &bad), SG_ERR_INVALID);

    /* The first result wins. */
    assert_int_equal(
        sg_store_attempt_finish(st, "i1", 0, false, 1, "failed", NULL, "svc.down", "refused", 200),
        SG_OK);
    assert_int_equal(sg_store_attempt_finish(st, "i1", 0, false, 1, "ok", "{}", NULL, NULL, 300),
                     SG_ERR_STATE);
    assert_non_null(strstr(sg_store_errmsg(st), "already finished"));
    assert_int_equal(sg_store_attempt_finish(st, "i1", 0, false, 9, "ok", NULL, NULL, NULL, 300),
                     SG_ERR_NOT_FOUND);
    assert_int_equal(sg_store_attempt_finish(st, "i1", 0, false, 2, "running", NULL, NULL, NULL, 1),
                     SG_ERR_INVALID);
    assert_int_equal(sg_store_attempt_finish(st, "i1", 0, false, 2, NULL, NULL, NULL, NULL, 1),
                     SG_ERR_INVALID);
    assert_int_equal(
        sg_store_attempt_finish(st, "i1", 0, false, 2, "ok", "{\"id\":7}", NULL, NULL, 250), SG_OK);
    out_t o = {0};
    assert_int_equal(sg_store_attempts_of(st, "i1", att_cb, &o), SG_OK);
    assert_string_equal(
        o.text, "i1/0/0/1 inv.reserve failed in={} out=- err=svc.down:refused t=101/501/200\n"
                "i1/0/0/2 inv.reserve ok in={} out={\"id\":7} err=-:- t=102/502/250\n"
                "i1/0/1/1 inv.reserve running in={} out=- err=-:- t=101/501/0\n");

    /* Running attempts, whatever their instance's status (here there is no instance at
     * all): finishing them is the driver's job. */
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_attempt_scan_running(st, att_cb, &o), SG_OK);
    assert_int_equal(o.n, 2);
    assert_true(strncmp(o.text, "i1/0/1/1 ", 9) == 0 && strstr(o.text, "\ni2/3/0/1 ") != NULL);
    assert_int_equal(sg_store_attempt_finish(st, "i2", 3, false, 1, "stale", NULL, NULL, NULL, 400),
                     SG_OK);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_attempt_scan_running(st, att_cb, &o), SG_OK);
    assert_int_equal(o.n, 1);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_attempts_of(st, "nobody", att_cb, &o), SG_OK);
    assert_int_equal(o.n, 0);
    sg_store_close(st);
}

static bool hb_cb(void *ctx, const sg_store_attempt_t *a)
{
    return emit(ctx, "%s/%d/%d/%d %s hb=%d worker=%s progress=%s", a->instance_id, (int)a->step,
                a->compensation ? 1 : 0, (int)a->attempt, a->status, (int)a->heartbeat_ms,
                S(a->worker), S(a->progress));
}

static void test_attempt_heartbeat(void **state)
{
    (void)state;
    sg_store_t *st = fresh("hb");
    sg_store_attempt_t a = attempt("i1", 0, false, 1), c = attempt("i1", 0, true, 1);
    a.heartbeat_ms = 9; /* ignored by insert */
    a.worker = a.progress = "ignored";
    assert_int_equal(sg_store_attempt_insert(st, &a), SG_OK);
    assert_int_equal(sg_store_attempt_insert(st, &c), SG_OK);
    out_t o = {0};
    assert_int_equal(sg_store_attempts_of(st, "i1", hb_cb, &o), SG_OK);
    assert_string_equal(o.text, "i1/0/0/1 running hb=0 worker=- progress=-\n"
                                "i1/0/1/1 running hb=0 worker=- progress=-\n");

    /* A heartbeat with progress, then one without: the last progress stays. */
    assert_int_equal(
        sg_store_attempt_heartbeat(st, "i1", 0, false, 1, 300, "host:1", "{\"done\":40}"), SG_OK);
    assert_int_equal(sg_store_attempt_heartbeat(st, "i1", 0, false, 1, 350, "host:2", NULL), SG_OK);
    assert_int_equal(sg_store_attempt_heartbeat(st, "i1", 0, true, 1, 360, NULL, "[]"), SG_OK);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_attempt_scan_running(st, hb_cb, &o), SG_OK);
    assert_string_equal(o.text, "i1/0/0/1 running hb=350 worker=host:2 progress={\"done\":40}\n"
                                "i1/0/1/1 running hb=360 worker=- progress=[]\n");

    /* A finished attempt keeps its last heartbeat and refuses new ones. */
    assert_int_equal(sg_store_attempt_finish(st, "i1", 0, false, 1, "timeout", NULL,
                                             "saga.heartbeat_timeout", "late", 600),
                     SG_OK);
    assert_int_equal(sg_store_attempt_heartbeat(st, "i1", 0, false, 1, 700, "host:3", "{}"),
                     SG_ERR_STATE);
    assert_non_null(strstr(sg_store_errmsg(st), "record heartbeat: attempt 1 of i1 step 0"));
    assert_non_null(strstr(sg_store_errmsg(st), "already finished"));
    assert_int_equal(sg_store_attempt_heartbeat(st, "i1", 0, false, 2, 700, "host:3", NULL),
                     SG_ERR_NOT_FOUND);
    assert_non_null(strstr(sg_store_errmsg(st), "does not exist"));
    assert_int_equal(sg_store_attempt_heartbeat(st, "i9", 0, false, 1, 700, NULL, NULL),
                     SG_ERR_NOT_FOUND);
    assert_int_equal(sg_store_attempt_heartbeat(st, NULL, 0, false, 1, 700, NULL, NULL),
                     SG_ERR_INVALID);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_attempts_of(st, "i1", hb_cb, &o), SG_OK);
    assert_string_equal(o.text, "i1/0/0/1 timeout hb=350 worker=host:2 progress={\"done\":40}\n"
                                "i1/0/1/1 running hb=360 worker=- progress=[]\n");
    sg_store_close(st);
}

/* A file at schema 3 (before heartbeats) is migrated in place: its attempts keep their
 * values and get the heartbeat columns, empty. */
static void test_migration_from_v3(void **state)
{
    (void)state;
    const char *p = db_path("v3");
    sg_store_t *st = fresh("v3");
    sg_store_attempt_t a = attempt("i1", 0, false, 1), b = attempt("i1", 1, true, 2);
    assert_int_equal(sg_store_attempt_insert(st, &a), SG_OK);
    assert_int_equal(sg_store_attempt_insert(st, &b), SG_OK);
    assert_int_equal(
        sg_store_attempt_finish(st, "i1", 0, false, 1, "ok", "{\"x\":1}", NULL, NULL, 200), SG_OK);
    sg_store_inst_t r = inst_row("i1", "order", "RUNNING", 5);
    assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
    sg_store_close(st);
    /* Back to what schema 3 was: migration 4 only added these columns. */
    raw_exec(p, "ALTER TABLE step_attempts DROP COLUMN progress;"
                "ALTER TABLE step_attempts DROP COLUMN worker;"
                "ALTER TABLE step_attempts DROP COLUMN heartbeat_ms;"
                "DELETE FROM schema_migrations WHERE version = 4");
    assert_int_equal(raw_int(p, "SELECT count(*) FROM pragma_table_info('step_attempts')"), 13);
    assert_int_equal(raw_int(p, "SELECT max(version) FROM schema_migrations"), 3);

    /* A reader cannot migrate; the writer does. */
    sg_store_opts_t ro = {.readonly = true};
    char err[256];
    assert_int_equal(sg_store_open(p, &ro, &st, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "schema version 3 is older"));
    st = open_at(p, SG_SYNC_FULL, false);
    sg_store_close(st);
    assert_int_equal(raw_int(p, "SELECT max(version) FROM schema_migrations"), 4);
    assert_int_equal(raw_int(p, "SELECT count(*) FROM pragma_table_info('step_attempts')"
                                " WHERE name IN ('heartbeat_ms', 'worker', 'progress')"),
                     3);
    st = open_at(p, SG_SYNC_FULL, true);
    out_t o = {0};
    assert_int_equal(sg_store_attempts_of(st, "i1", att_cb, &o), SG_OK);
    assert_string_equal(o.text,
                        "i1/0/0/1 inv.reserve ok in={} out={\"x\":1} err=-:- t=101/501/200\n"
                        "i1/1/1/2 inv.reserve running in={} out=- err=-:- t=102/502/0\n");
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_attempts_of(st, "i1", hb_cb, &o), SG_OK);
    assert_string_equal(o.text, "i1/0/0/1 ok hb=0 worker=- progress=-\n"
                                "i1/1/1/2 running hb=0 worker=- progress=-\n");
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_inst_get(st, "i1", inst_id_cb, &o), SG_OK);
    sg_store_close(st);
    /* and the migrated rows take heartbeats */
    st = open_at(p, SG_SYNC_FULL, false);
    assert_int_equal(sg_store_attempt_heartbeat(st, "i1", 1, true, 2, 900, "w", "{}"), SG_OK);
    assert_int_equal(sg_store_attempt_heartbeat(st, "i1", 0, false, 1, 900, "w", "{}"),
                     SG_ERR_STATE);
    sg_store_close(st);
}

static void test_history(void **state)
{
    (void)state;
    sg_store_t *st = fresh("hist");
    const char *types[] = {"saga_started", "step_started", "step_completed", "step_started",
                           "saga_completed"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(sg_store_hist_append(st, "i1", i + 1, 1000 + i, types[i],
                                              i == 0 || i == 4 ? -1 : i, 1,
                                              i == 2 ? "{\"output\":{}}" : NULL),
                         SG_OK);
    }
    assert_int_equal(sg_store_hist_append(st, "i2", 1, 5, "saga_started", -1, 0, NULL), SG_OK);
    assert_int_equal(sg_store_hist_append(st, "i1", 3, 1, "rewrite", -1, 0, NULL), SG_ERR_EXISTS);
    assert_int_equal(sg_store_hist_append(st, "i1", 9, 1, NULL, -1, 0, NULL), SG_ERR_INVALID);
    out_t o = {0};
    assert_int_equal(sg_store_hist_list(st, "i1", 0, 0, hist_cb, &o), SG_OK);
    assert_string_equal(o.text, "1 @1000 saga_started s-1 a1 -\n2 @1001 step_started s1 a1 -\n"
                                "3 @1002 step_completed s2 a1 {\"output\":{}}\n"
                                "4 @1003 step_started s3 a1 -\n5 @1004 saga_completed s-1 a1 -\n");
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_hist_list(st, "i1", 2, 2, hist_cb, &o), SG_OK);
    assert_string_equal(o.text, "3 @1002 step_completed s2 a1 {\"output\":{}}\n"
                                "4 @1003 step_started s3 a1 -\n");
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_hist_list(st, "unknown", 0, 0, hist_cb, &o), SG_OK);
    assert_int_equal(o.n, 0);
    sg_store_close(st);
}

/* ---- timers, events, outbox ---- */

static void test_timers(void **state)
{
    (void)state;
    sg_store_t *st = fresh("timers");
    assert_int_equal(sg_store_timer_put(st, "i1", 0, 2, false, 1, 300), SG_OK);
    assert_int_equal(sg_store_timer_put(st, "i1", 1, 2, false, 1, 100), SG_OK);
    assert_int_equal(sg_store_timer_put(st, "i2", 3, -1, false, 0, 200), SG_OK);
    assert_int_equal(sg_store_timer_put(st, "i1", 0, 2, true, 1, 250), SG_OK);
    assert_int_equal(sg_store_timer_put(st, "i1", 0, 2, false, 1, 50), SG_OK); /* moved */
    out_t o = {0};
    assert_int_equal(sg_store_timer_scan(st, timer_cb, &o), SG_OK);
    assert_string_equal(o.text, "i1 k0 s2 c0 a1 @50\ni1 k1 s2 c0 a1 @100\ni2 k3 s-1 c0 a0 @200\n"
                                "i1 k0 s2 c1 a1 @250\n");
    assert_int_equal(sg_store_timer_delete(st, "i1", 1, 2, false, 1), SG_OK);
    assert_int_equal(sg_store_timer_delete(st, "i1", 1, 2, false, 1), SG_OK); /* idempotent */
    assert_int_equal(sg_store_timer_delete_instance(st, "i1"), SG_OK);
    assert_int_equal(sg_store_timer_delete_instance(st, "i1"), SG_OK);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_timer_scan(st, timer_cb, &o), SG_OK);
    assert_string_equal(o.text, "i2 k3 s-1 c0 a0 @200\n");
    assert_int_equal(sg_store_timer_put(st, NULL, 0, 0, false, 0, 0), SG_ERR_INVALID);
    sg_store_close(st);
}

static void expect_events(sg_store_t *st, const char *type, const char *corr, int64_t after,
                          size_t limit, const char *want)
{
    out_t o = {0};
    assert_int_equal(sg_store_event_list(st, type, corr, after, limit, event_cb, &o), SG_OK);
    assert_string_equal(o.text, want);
}

static void test_events(void **state)
{
    (void)state;
    sg_store_t *st = fresh("events");
    assert_int_equal(sg_store_event_append(st, "order.created", "i1", 10, "{}"), SG_OK);
    assert_int_equal(sg_store_event_append(st, "order.created", "i2", 11, "{}"), SG_OK);
    assert_int_equal(sg_store_event_append(st, "order.cancelled", "i1", 12, NULL), SG_OK);
    assert_int_equal(sg_store_event_append(st, "heartbeat", NULL, 13, NULL), SG_OK);
    assert_int_equal(sg_store_event_append(st, "", NULL, 13, NULL), SG_ERR_INVALID);
    expect_events(st, NULL, NULL, 0, 0,
                  "1 order.created i1 @10 {}\n2 order.created i2 @11 {}\n"
                  "3 order.cancelled i1 @12 -\n4 heartbeat - @13 -\n");
    expect_events(st, "order.created", NULL, 0, 0,
                  "1 order.created i1 @10 {}\n2 order.created i2 @11 {}\n");
    expect_events(st, NULL, "i1", 0, 0, "1 order.created i1 @10 {}\n3 order.cancelled i1 @12 -\n");
    expect_events(st, "order.created", "i1", 0, 0, "1 order.created i1 @10 {}\n");
    expect_events(st, NULL, NULL, 1, 2, "2 order.created i2 @11 {}\n3 order.cancelled i1 @12 -\n");
    expect_events(st, NULL, "i1", 1, 0, "3 order.cancelled i1 @12 -\n");
    expect_events(st, "nothing", NULL, 0, 0, "");
    /* Imported events carry their own id and source, once. */
    bool inserted = false;
    assert_int_equal(sg_store_event_import(st, "01EV", "order.created", "i3", 14, "order",
                                           "{\"n\":1}", &inserted),
                     SG_OK);
    assert_true(inserted);
    assert_int_equal(
        sg_store_event_import(st, "01EV", "order.created", "i3", 15, "x", NULL, &inserted), SG_OK);
    assert_false(inserted);
    expect_events(st, NULL, "i3", 0, 0, "5 order.created i3 @14 {\"n\":1} [01EV order]\n");
    expect_events(st, "order.created", NULL, 1, 0,
                  "2 order.created i2 @11 {}\n5 order.created i3 @14 {\"n\":1} [01EV order]\n");
    sg_store_close(st);
}

static void test_outbox(void **state)
{
    (void)state;
    sg_store_t *st = fresh("outbox");
    const unsigned char bin[5] = {0x08, 0x00, 0xff, 0x00, 0x2a};
    assert_int_equal(sg_store_outbox_put(st, "tasks.inv", "i1", bin, 5, 1), SG_OK);
    assert_int_equal(sg_store_outbox_put(st, "tasks.pay", NULL, NULL, 0, 2), SG_OK);
    assert_int_equal(sg_store_outbox_put(st, "events", "i2", "{}", 2, 3), SG_OK);
    assert_int_equal(sg_store_outbox_put(st, "events", "i2", NULL, 3, 3), SG_ERR_INVALID);
    assert_int_equal(sg_store_outbox_put(st, NULL, "i2", "x", 1, 3), SG_ERR_INVALID);
    out_t o = {0};
    assert_int_equal(sg_store_outbox_fetch(st, 0, 0, outbox_cb, &o), SG_OK);
    assert_string_equal(o.text, "tasks.inv i1 [0800ff002a]\ntasks.pay - []\nevents i2 [7b7d]\n");
    int64_t last = o.last_created;
    assert_int_equal(sg_store_outbox_delete(st, last - 2), SG_OK);
    assert_int_equal(sg_store_outbox_delete(st, last - 2), SG_ERR_NOT_FOUND);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_outbox_fetch(st, 0, 1, outbox_cb, &o), SG_OK);
    assert_string_equal(o.text, "tasks.pay - []\n");
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_outbox_fetch(st, last - 1, 0, outbox_cb, &o), SG_OK);
    assert_string_equal(o.text, "events i2 [7b7d]\n");
    /* AUTOINCREMENT: a deleted id is never handed out again. */
    assert_int_equal(sg_store_outbox_delete(st, last), SG_OK);
    assert_int_equal(sg_store_outbox_put(st, "events", NULL, "x", 1, 4), SG_OK);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_outbox_fetch(st, last - 1, 0, outbox_cb, &o), SG_OK);
    assert_string_equal(o.text, "events - [78]\n");
    assert_true(o.last_created > last);
    sg_store_close(st);
}

/* ---- dead letters ---- */

/* The ids of the rows dlq_cb saw last, in order. */
static int64_t dlq_ids[8];

static bool dlq_cb(void *ctx, const sg_store_dlq_t *r)
{
    out_t *o = ctx;
    if (o->n < SG_ARRAY_LEN(dlq_ids)) {
        dlq_ids[o->n] = r->id;
    }
    size_t used = strlen(o->text);
    snprintf(o->text + used, sizeof(o->text) - used, "%s %s/%lld/%lld %s %s %s %lld %s %zu%s\n",
             r->status, r->topic, (long long)r->partition, (long long)r->offset, r->queue,
             r->key ? r->key : "-", r->instance_id ? r->instance_id : "-", (long long)r->attempt,
             r->reason ? r->reason : "-", r->task_len, r->task != NULL ? " +task" : "");
    o->last_created = r->updated_ms;
    o->n++;
    return true;
}

static sg_store_dlq_t dead_letter(const char *queue, int64_t partition, int64_t offset,
                                  const char *instance)
{
    static char topic[64];
    snprintf(topic, sizeof(topic), "saga.tasks.%s.dlq", queue);
    return (sg_store_dlq_t){.topic = topic,
                            .partition = partition,
                            .offset = offset,
                            .queue = queue,
                            .key = instance,
                            .instance_id = instance,
                            .step_id = instance != NULL ? "charge" : NULL,
                            .attempt = instance != NULL ? 2 : 0,
                            .idempotency_key = instance != NULL ? "i/charge" : NULL,
                            .activity = instance != NULL ? "payment.charge" : NULL,
                            .input = instance != NULL ? "{\"amount\":12}" : NULL,
                            .reason = "started 3 times without finishing",
                            .headers = "{\"sagad.dlq.starts\":\"3\"}",
                            .received_ms = 100 + offset,
                            .task = "\x0a\x00\xff",
                            .task_len = 3};
}

static void test_dlq(void **state)
{
    (void)state;
    sg_store_t *st = fresh("dlq");
    bool inserted = false;
    sg_store_dlq_t a = dead_letter("payment", 0, 7, "i1");
    assert_int_equal(sg_store_dlq_insert(st, &a, &inserted), SG_OK);
    assert_true(inserted);
    /* The consumer is at-least-once: the same position again is a no-op. */
    assert_int_equal(sg_store_dlq_insert(st, &a, &inserted), SG_OK);
    assert_false(inserted);
    sg_store_dlq_t b = dead_letter("test", 1, 0, NULL); /* undecodable: no task fields */
    assert_int_equal(sg_store_dlq_insert(st, &b, &inserted), SG_OK);
    sg_store_dlq_t c = dead_letter("payment", 0, 9, "i2");
    assert_int_equal(sg_store_dlq_insert(st, &c, NULL), SG_OK);
    sg_store_dlq_t bad = dead_letter("payment", 0, 10, "i3");
    bad.queue = NULL;
    assert_int_equal(sg_store_dlq_insert(st, &bad, &inserted), SG_ERR_INVALID);
    assert_false(inserted);

    out_t o = {0};
    assert_int_equal(sg_store_dlq_list(st, NULL, NULL, 0, 0, dlq_cb, &o), SG_OK);
    assert_string_equal(o.text,
                        "new saga.tasks.payment.dlq/0/7 payment i1 i1 2 started 3 times without "
                        "finishing 3\n"
                        "new saga.tasks.test.dlq/1/0 test - - 0 started 3 times without "
                        "finishing 3\n"
                        "new saga.tasks.payment.dlq/0/9 payment i2 i2 2 started 3 times without "
                        "finishing 3\n");
    /* Ids increase (an ignored copy may leave a gap). */
    int64_t id1 = dlq_ids[0], id2 = dlq_ids[1], id3 = dlq_ids[2];
    assert_true(id1 > 0 && id1 < id2 && id2 < id3);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_dlq_list(st, "payment", NULL, id1, 0, dlq_cb, &o), SG_OK);
    assert_int_equal(o.n, 1);
    assert_int_equal(dlq_ids[0], id3);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_dlq_list(st, NULL, NULL, 0, 2, dlq_cb, &o), SG_OK);
    assert_int_equal(o.n, 2);

    assert_int_equal(sg_store_dlq_set_status(st, id1, "requeued", 500), SG_OK);
    assert_int_equal(sg_store_dlq_set_status(st, id3 + 100, "requeued", 500), SG_ERR_NOT_FOUND);
    assert_int_equal(sg_store_dlq_set_status(st, id1, NULL, 500), SG_ERR_INVALID);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_dlq_list(st, "payment", "requeued", 0, 0, dlq_cb, &o), SG_OK);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.last_created, 500);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_dlq_list(st, NULL, "new", 0, 0, dlq_cb, &o), SG_OK);
    assert_int_equal(o.n, 2);

    /* A get carries the task's bytes, a list does not. */
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_dlq_get(st, id2, dlq_cb, &o), SG_OK);
    assert_non_null(strstr(o.text, " 3 +task\n"));
    assert_int_equal(sg_store_dlq_get(st, id3 + 100, dlq_cb, &o), SG_ERR_NOT_FOUND);
    assert_int_equal(sg_store_dlq_get(st, id2, NULL, NULL), SG_ERR_INVALID);
    sg_store_close(st);

    sg_store_t *ro = open_at(db_path("dlq"), SG_SYNC_FULL, true);
    assert_int_equal(sg_store_dlq_insert(ro, &c, NULL), SG_ERR_STATE);
    assert_int_equal(sg_store_dlq_set_status(ro, id2, "discarded", 1), SG_ERR_STATE);
    memset(&o, 0, sizeof(o));
    assert_int_equal(sg_store_dlq_list(ro, "test", "new", 0, 0, dlq_cb, &o), SG_OK);
    assert_int_equal(o.n, 1);
    sg_store_close(ro);
}

/* ---- read-only handles, transactions, durability ---- */

static void test_readonly_refuses_writes(void **state)
{
    (void)state;
    const char *p = db_path("ro");
    sg_store_t *w = fresh("ro");
    sg_store_inst_t r = inst_row("i1", "order", "RUNNING", 1);
    assert_int_equal(sg_store_inst_insert(w, &r), SG_OK);
    sg_store_t *ro = open_at(p, SG_SYNC_FULL, true);
    assert_true(sg_store_readonly(ro));
    out_t o = {0};
    assert_int_equal(sg_store_inst_get(ro, "i1", inst_id_cb, &o), SG_OK);
    sg_store_attempt_t a = attempt("i1", 0, false, 1);
    r = inst_row("i2", "order", "RUNNING", 2);
    assert_int_equal(sg_store_inst_insert(ro, &r), SG_ERR_STATE);
    assert_non_null(strstr(sg_store_errmsg(ro), "read-only"));
    assert_int_equal(sg_store_inst_update(ro, &r), SG_ERR_STATE);
    assert_int_equal(sg_store_def_put(ro, "d", 1, "s", "x", 1), SG_ERR_STATE);
    assert_int_equal(sg_store_idem_put(ro, "order", "k", "i1", 1), SG_ERR_STATE);
    assert_int_equal(sg_store_attempt_insert(ro, &a), SG_ERR_STATE);
    assert_int_equal(sg_store_attempt_finish(ro, "i1", 0, false, 1, "ok", NULL, NULL, NULL, 1),
                     SG_ERR_STATE);
    assert_int_equal(sg_store_attempt_heartbeat(ro, "i1", 0, false, 1, 1, "w", NULL), SG_ERR_STATE);
    assert_int_equal(sg_store_hist_append(ro, "i1", 1, 1, "t", -1, 0, NULL), SG_ERR_STATE);
    assert_int_equal(sg_store_timer_put(ro, "i1", 0, 0, false, 0, 1), SG_ERR_STATE);
    assert_int_equal(sg_store_timer_delete(ro, "i1", 0, 0, false, 0), SG_ERR_STATE);
    assert_int_equal(sg_store_timer_delete_instance(ro, "i1"), SG_ERR_STATE);
    assert_int_equal(sg_store_event_append(ro, "t", NULL, 1, NULL), SG_ERR_STATE);
    assert_int_equal(sg_store_outbox_put(ro, "t", NULL, "x", 1, 1), SG_ERR_STATE);
    assert_int_equal(sg_store_outbox_delete(ro, 1), SG_ERR_STATE);

    /* A read transaction is a snapshot: the writer's commit shows after it ends. */
    int64_t n = 0;
    assert_int_equal(sg_store_begin(ro), SG_OK);
    assert_int_equal(sg_store_inst_count(ro, NULL, &n), SG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(sg_store_begin(w), SG_OK);
    assert_int_equal(sg_store_inst_insert(w, &r), SG_OK);
    assert_int_equal(sg_store_commit(w), SG_OK);
    assert_int_equal(sg_store_inst_count(ro, NULL, &n), SG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(sg_store_commit(ro), SG_OK);
    assert_int_equal(sg_store_inst_count(ro, NULL, &n), SG_OK);
    assert_int_equal(n, 2);
    char check[64];
    assert_int_equal(sg_store_integrity_check(ro, check, sizeof(check)), SG_OK);
    assert_string_equal(check, "ok");
    sg_store_close(w);
    sg_store_close(ro);

    /* A reader alone, after the writer closed and the WAL files went away. */
    ro = open_at(p, SG_SYNC_FULL, true);
    assert_int_equal(sg_store_inst_count(ro, NULL, &n), SG_OK);
    assert_int_equal(n, 2);
    sg_store_close(ro);
}

static void test_transactions(void **state)
{
    (void)state;
    sg_store_t *st = fresh("tx");
    sg_store_inst_t r = inst_row("i1", "order", "RUNNING", 1);
    assert_int_equal(sg_store_commit(st), SG_ERR_STATE);
    sg_store_rollback(st); /* nothing open: no-op */
    assert_int_equal(sg_store_begin(st), SG_OK);
    assert_int_equal(sg_store_begin(st), SG_ERR_STATE);
    assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
    assert_int_equal(sg_store_hist_append(st, "i1", 1, 1, "saga_started", -1, 0, NULL), SG_OK);
    assert_int_equal(sg_store_timer_put(st, "i1", 3, -1, false, 0, 99), SG_OK);
    sg_store_rollback(st);
    out_t o = {0};
    assert_int_equal(sg_store_inst_get(st, "i1", inst_id_cb, &o), SG_ERR_NOT_FOUND);
    assert_int_equal(sg_store_hist_list(st, "i1", 0, 0, hist_cb, &o), SG_OK);
    assert_int_equal(sg_store_timer_scan(st, timer_cb, &o), SG_OK);
    assert_int_equal(o.n, 0);

    /* A failed statement inside a transaction leaves the transaction usable. */
    assert_int_equal(sg_store_begin(st), SG_OK);
    assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
    assert_int_equal(sg_store_inst_insert(st, &r), SG_ERR_EXISTS);
    assert_int_equal(sg_store_commit(st), SG_OK);
    assert_int_equal(sg_store_inst_get(st, "i1", inst_id_cb, &o), SG_OK);
    sg_store_close(st);
}

static void test_durability_across_reopen(void **state)
{
    (void)state;
    const char *p = db_path("durable");
    sg_store_close(fresh("durable"));
    sg_store_t *st = open_at(p, SG_SYNC_FULL, false);
    sg_store_inst_t r = inst_row("i1", "order", "RUNNING", 1);
    sg_store_attempt_t a = attempt("i1", 0, false, 1);
    assert_int_equal(sg_store_begin(st), SG_OK);
    assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
    assert_int_equal(sg_store_idem_put(st, "order", "k", "i1", 1), SG_OK);
    assert_int_equal(sg_store_attempt_insert(st, &a), SG_OK);
    assert_int_equal(sg_store_outbox_put(st, "tasks", "i1", "{}", 2, 1), SG_OK);
    assert_int_equal(sg_store_commit(st), SG_OK);
    r = inst_row("i2", "order", "RUNNING", 2); /* uncommitted at close: gone */
    assert_int_equal(sg_store_begin(st), SG_OK);
    assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
    sg_store_close(st);

    st = open_at(p, SG_SYNC_FULL, false);
    out_t o = {0};
    assert_int_equal(sg_store_inst_get(st, "i1", inst_id_cb, &o), SG_OK);
    assert_int_equal(sg_store_inst_get(st, "i2", inst_id_cb, &o), SG_ERR_NOT_FOUND);
    char id[32];
    assert_int_equal(sg_store_idem_get(st, "order", "k", id), SG_OK);
    assert_string_equal(id, "i1");
    assert_int_equal(sg_store_attempt_scan_running(st, att_cb, &o), SG_OK);
    assert_int_equal(sg_store_outbox_fetch(st, 0, 0, outbox_cb, &o), SG_OK);
    assert_int_equal(o.n, 3);
    char check[64];
    assert_int_equal(sg_store_integrity_check(st, check, sizeof(check)), SG_OK);
    assert_string_equal(check, "ok");
    assert_int_equal(sg_store_integrity_check(st, NULL, 0), SG_OK);
    sg_store_close(st);
}

/* ---- what comes out of the file is checked ---- */

static void test_corrupt_rows(void **state)
{
    (void)state;
    const char *p = db_path("corrupt");
    sg_store_close(fresh("corrupt"));
    /* Values the column types let through but the store must not trust. */
    raw_exec(p, "INSERT INTO instances VALUES ('i1', 'order', 1, 'RUNNING', '', '{}', '{}', NULL,"
                " 'yesterday', 1, 0, 0, 0);"
                "INSERT INTO instances VALUES ('0123456789012345678901234567890123456789',"
                " 'order', 1, 'COMPLETED', '', '{}', '{}', NULL, 5, 1, 0, 0, 0);"
                "INSERT INTO history VALUES ('i1', 1, 1, x'00ff', -1, 0, NULL);"
                "INSERT INTO timers VALUES ('i1', 99999999999, 0, 0, 0, 5);"
                "INSERT INTO outbox(topic, payload) VALUES ('t', 3.5);"
                "INSERT INTO idempotency_keys VALUES ('order', 'k', '', 1);"
                "INSERT INTO events(type, ts_ms) VALUES ('e', 'noon')");
    sg_store_t *st = open_at(p, SG_SYNC_OFF, false);
    out_t o = {0};
    assert_int_equal(sg_store_inst_get(st, "i1", inst_id_cb, &o), SG_ERR_IO);
    assert_int_equal(o.n, 0);
    assert_non_null(strstr(sg_store_errmsg(st), "corrupt row: column created_ms"));
    sg_store_inst_filter_t done = {.status = "COMPLETED"};
    assert_int_equal(sg_store_inst_list(st, &done, inst_id_cb, &o), SG_ERR_IO);
    assert_non_null(strstr(sg_store_errmsg(st), "column id"));
    assert_int_equal(sg_store_hist_list(st, "i1", 0, 0, hist_cb, &o), SG_ERR_IO);
    assert_non_null(strstr(sg_store_errmsg(st), "blob"));
    assert_int_equal(sg_store_timer_scan(st, timer_cb, &o), SG_ERR_IO);
    assert_int_equal(sg_store_outbox_fetch(st, 0, 0, outbox_cb, &o), SG_ERR_IO);
    char id[32];
    assert_int_equal(sg_store_idem_get(st, "order", "k", id), SG_ERR_IO);
    assert_int_equal(sg_store_event_list(st, NULL, NULL, 0, 0, event_cb, &o), SG_ERR_IO);
    assert_int_equal(o.n, 0);
    /* The statements were reset: the handle keeps working. */
    sg_store_inst_t r = inst_row("i3", "order", "RUNNING", 1);
    assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
    assert_int_equal(sg_store_inst_get(st, "i3", inst_id_cb, &o), SG_OK);
    sg_store_close(st);
}

/* A damaged page: errors, never a crash. */
static void test_damaged_file(void **state)
{
    (void)state;
    const char *p = db_path("damaged");
    sg_store_t *st = fresh("damaged");
    char big[2048];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(sg_store_begin(st), SG_OK);
    for (int i = 0; i < 200; i++) {
        char id[16];
        snprintf(id, sizeof(id), "d%03d", i);
        sg_store_inst_t r = inst_row(id, "order", "COMPLETED", i);
        r.state = big;
        assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
    }
    assert_int_equal(sg_store_commit(st), SG_OK);
    sg_store_close(st); /* checkpoints everything into the main file */

    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size > 16 * 4096);
    char junk[3 * 4096];
    memset(junk, 0x5a, sizeof(junk));
    assert_int_equal(fseek(f, size / 2 - (size / 2) % 4096, SEEK_SET), 0);
    assert_int_equal(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
    fclose(f);

    st = open_at(p, SG_SYNC_OFF, false);
    char out[256];
    assert_int_equal(sg_store_integrity_check(st, out, sizeof(out)), SG_ERR_IO);
    assert_true(out[0] != '\0' && strcmp(out, "ok") != 0);
    size_t rows = 0;
    sg_err_t rc = sg_store_inst_list(st, NULL, count_cb, &rows);
    assert_true(rc == SG_OK || rc == SG_ERR_IO);
    sg_store_close(st);
}

/* ---- callbacks that call back into the store ---- */

typedef struct {
    sg_store_t *st;
    sg_err_t same, other;
    size_t n;
} nest_t;

static bool nested_cb(void *ctx, const sg_store_inst_t *r)
{
    nest_t *n = ctx;
    out_t o = {0};
    n->same = sg_store_inst_scan_active(n->st, inst_id_cb, &o);
    n->other = sg_store_attempts_of(n->st, r->id, att_cb, &o);
    n->n++;
    return true;
}

static void test_reentrant_callbacks(void **state)
{
    (void)state;
    sg_store_t *st = fresh("nest");
    for (int i = 0; i < 3; i++) {
        char id[4] = {'i', (char)('0' + i), 0, 0};
        sg_store_inst_t r = inst_row(id, "order", "RUNNING", i);
        assert_int_equal(sg_store_inst_insert(st, &r), SG_OK);
    }
    nest_t n = {.st = st};
    assert_int_equal(sg_store_inst_scan_active(st, nested_cb, &n), SG_OK);
    assert_int_equal(n.n, 3);
    assert_int_equal(n.same, SG_ERR_STATE);
    assert_int_equal(n.other, SG_OK);
    sg_store_close(st);
}

/* ---- out of memory, ours and SQLite's ---- */

/* One open + transaction + read; any step may fail, none may crash or leak. */
static sg_err_t oom_round(const char *p)
{
    sg_store_opts_t o = {.sync = SG_SYNC_OFF};
    sg_store_t *st = NULL;
    char err[256];
    sg_err_t rc = sg_store_open(p, &o, &st, err, sizeof(err));
    if (rc != SG_OK) {
        assert_null(st);
        assert_true(err[0] != '\0');
        return rc;
    }
    sg_store_inst_t r = inst_row("i1", "order", "RUNNING", 1);
    out_t out = {0};
    rc = sg_store_begin(st);
    if (rc == SG_OK) {
        rc = sg_store_inst_insert(st, &r);
    }
    if (rc == SG_OK) {
        rc = sg_store_hist_append(st, "i1", 1, 1, "saga_started", -1, 0, NULL);
    }
    if (rc == SG_OK) {
        rc = sg_store_commit(st);
    }
    if (rc != SG_OK) {
        assert_true(sg_store_errmsg(st)[0] != '\0');
        sg_store_rollback(st);
    } else {
        rc = sg_store_inst_get(st, "i1", inst_id_cb, &out);
    }
    sg_store_close(st);
    return rc;
}

/* Fails allocation 1, 2, ... of a round until a round sees no injected failure. Under
 * valgrind only every 7th, to keep the run short. */
static void oom_loop(const char *p, bool fresh_file)
{
    size_t step = getenv("SG_UNDER_VALGRIND") != NULL ? 7 : 1;
    size_t failures = 0;
    for (size_t nth = 1; nth < 1000000; nth += step) {
        if (fresh_file) {
            remove_db(p);
        } else {
            raw_exec(p, "DELETE FROM instances; DELETE FROM history");
        }
        sg_alloc_fail_at(nth);
        sg_err_t rc = oom_round(p);
        size_t seen = sg_alloc_fail_at(0);
        if (seen < nth) {
            assert_int_equal(rc, SG_OK);
            assert_true(failures > 0);
            return;
        }
        failures += rc != SG_OK;
        /* Whatever failed, the write is all or nothing. */
        if (!fresh_file || rc == SG_OK) {
            assert_int_equal(raw_int(p, "SELECT count(*) FROM instances"),
                             raw_int(p, "SELECT count(*) FROM history"));
        }
    }
    fail_msg("the round never completed");
}

static void test_oom_fresh_file(void **state)
{
    (void)state;
    oom_loop(db_path("oom_fresh"), true);
}

static void test_oom_existing_file(void **state)
{
    (void)state;
    const char *p = db_path("oom_existing");
    sg_store_close(fresh("oom_existing"));
    oom_loop(p, false);
    sg_store_t *st = open_at(p, SG_SYNC_OFF, false);
    assert_int_equal(sg_store_integrity_check(st, NULL, 0), SG_OK);
    sg_store_close(st);
}

/* SQLite's allocator through sg_malloc. SQLite needs a block's size back (xSize): it is
 * kept in a 16-byte header, which also keeps the 8-byte alignment SQLite requires. */
static void *mem_malloc(int n)
{
    size_t *p = sg_malloc((size_t)n + 16);
    if (p != NULL) {
        p[0] = (size_t)n;
    }
    return p != NULL ? (char *)p + 16 : NULL;
}

static void mem_free(void *p)
{
    if (p != NULL) {
        sg_free((char *)p - 16);
    }
}

static void *mem_realloc(void *p, int n)
{
    size_t *q = sg_realloc((char *)p - 16, (size_t)n + 16);
    if (q != NULL) {
        q[0] = (size_t)n;
    }
    return q != NULL ? (char *)q + 16 : NULL;
}

static int mem_size(void *p)
{
    return p != NULL ? (int)*(size_t *)((char *)p - 16) : 0;
}

static int mem_roundup(int n)
{
    return (n + 7) & ~7;
}

static int mem_init(void *arg)
{
    (void)arg;
    return SQLITE_OK;
}

static void mem_shutdown(void *arg)
{
    (void)arg;
}

int main(void)
{
    static const sqlite3_mem_methods mem = {mem_malloc,  mem_free, mem_realloc,  mem_size,
                                            mem_roundup, mem_init, mem_shutdown, NULL};
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &mem) != SQLITE_OK ||
        sqlite3_initialize() != SQLITE_OK) {
        fprintf(stderr, "cannot route SQLite's allocator\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_migrations_idempotent),
        cmocka_unit_test(test_newer_schema_refused),
        cmocka_unit_test(test_foreign_files_refused),
        cmocka_unit_test(test_sync_modes),
        cmocka_unit_test(test_definitions),
        cmocka_unit_test(test_instances_roundtrip),
        cmocka_unit_test(test_inst_list_pagination),
        cmocka_unit_test(test_idempotency_keys),
        cmocka_unit_test(test_attempts),
        cmocka_unit_test(test_attempt_heartbeat),
        cmocka_unit_test(test_migration_from_v3),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_timers),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_outbox),
        cmocka_unit_test(test_dlq),
        cmocka_unit_test(test_readonly_refuses_writes),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_durability_across_reopen),
        cmocka_unit_test(test_corrupt_rows),
        cmocka_unit_test(test_damaged_file),
        cmocka_unit_test(test_reentrant_callbacks),
        cmocka_unit_test(test_oom_fresh_file),
        cmocka_unit_test(test_oom_existing_file),
    };
    int failed = cmocka_run_group_tests_name("store", tests, group_setup, group_teardown);
    sqlite3_shutdown();
    return failed;
}
