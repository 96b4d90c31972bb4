/*
 * module_harness: what the unit tests of the activity modules (test_inventory.c,
 * test_payment.c, test_order.c, test_notification.c, test_activities.c) and of the
 * services' kit (test_svc.c) share. A test gets a temporary data directory of its own,
 * the module opened in it (reopened with other chaos, or opened twice like two worker
 * processes), tasks run with the idempotency key the engine would give them, the outbox
 * peeked through the module, and the service's database read through a connection of
 * the test's own, like another process would.
 *
 * cmocka-friendly: every function asserts what it relies on, so a failure fails the
 * running test (or its setup). Nothing here allocates through sg_malloc: the tests fail
 * the Nth of those allocations (sg_alloc_fail_at) around the calls they make, and the
 * harness must not take part in that count. The caller includes cmocka.h.
 */
#ifndef SG_TESTS_MODULE_HARNESS_H
#define SG_TESTS_MODULE_HARNESS_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "activities/activity.h"

/* One test's module. Plain value type: tests read every field. */
typedef struct {
    char dir[256];                   /* the test's own temporary data directory */
    char db[512];                    /* the module's database file in it */
    const sg_activity_module_t *mod; /* from the registry */
    sg_activity_ctx_t *actx;         /* opened by mh_new, again by mh_reopen */
} mh_t;

/* ---- temporary directory ---- */

/* Makes a new directory $TMPDIR/sg-test-<name>-XXXXXX (TMPDIR unset or empty: /tmp) and
 * writes its path into dir (len bytes). Asserts. */
void mh_dir_make(char *dir, size_t len, const char *name);

/* Removes dir, a directory made by mh_dir_make, and everything in it. Returns 0, or -1
 * when something could not be removed (or dir is not such a directory). */
int mh_dir_remove(const char *dir);

/* ---- the module ---- */

/*
 * A new mh_t (free it with mh_free): module queue from the registry, opened without chaos
 * in a new directory sg-test-<queue>-XXXXXX, its database <dir>/<db_file> (NULL:
 * "<queue>.db"), seeded with seed_json unless it is NULL. Asserts; meant for a cmocka
 * setup.
 */
mh_t *mh_new(const char *queue, const char *db_file, const char *seed_json);

/* Closes h->actx, removes h->dir and frees h; NULL is a no-op. Returns what
 * mh_dir_remove returned (0 for NULL). */
int mh_free(mh_t *h);

/* A cmocka teardown for a state made by mh_new: mh_free(*state). */
int mh_teardown(void **state);

/* Opens another context of h's module on h's directory with chaos (NULL: none): another
 * connection, like a second worker process. Asserts. Close it with h->mod->close. */
sg_activity_ctx_t *mh_ctx_open(const mh_t *h, const char *chaos);

/* Closes h->actx and opens it again with chaos (NULL: none), like a restart with another
 * --chaos. Asserts. */
void mh_reopen(mh_t *h, const char *chaos);

/* Seeds h's module with json; fails the test with the module's message if refused. */
void mh_seed(const mh_t *h, const char *json);

/* ---- tasks ---- */

/*
 * Runs operation op of h's module on ctx (NULL: h->actx) with *task, after filling in
 * what it leaves unset: activity (NULL: "<queue>.<op>"), idempotency_key (NULL:
 * "<instance>/<step>[/compensate]", as the engine builds it) and attempt (0: 1). res is
 * released first, so one result can serve call after call; release it at the end with
 * sg_task_result_fini. Asserts that op exists. Any thread that owns res.
 */
void mh_run(const mh_t *h, sg_activity_ctx_t *ctx, const char *op, const sg_task_t *task,
            sg_task_result_t *res);

/* Runs op as step sid of saga instance inst (its compensation when comp): the key
 * "<inst>/<sid>[/compensate]", attempt 1, no deadline. */
void mh_call(const mh_t *h, const char *op, const char *inst, const char *sid, bool comp,
             const char *input, sg_task_result_t *res);

/* Runs op on ctx (NULL: h->actx) with the idempotency key given whole,
 * "<instance>/<step>[/compensate]": the instance and step are its first two parts, and a
 * key ending in "/compensate" is a compensation. deadline_ms: epoch ms, 0 = none. */
void mh_call_key(const mh_t *h, sg_activity_ctx_t *ctx, const char *op, const char *key,
                 const char *input, uint64_t deadline_ms, sg_task_result_t *res);

/* ---- results ---- */

/* Asserts that r succeeded (else fails naming its code and message) with an output, and,
 * when output is not NULL, exactly that output. */
void mh_assert_ok(const sg_task_result_t *r, const char *output);

/* Asserts that r failed with outcome o and code (as sg_task_result_code gives it), with a
 * message that contains msg_part unless that is NULL. */
void mh_assert_failed(const sg_task_result_t *r, sg_task_outcome_t o, const char *code,
                      const char *msg_part);

/* The output of a successful result, parsed; asserts success and a JSON object. The
 * caller owns it (cJSON_Delete). */
cJSON *mh_output(const sg_task_result_t *r);

/* Field of a JSON object that must be a string (valid while o is) / a number. Assert. */
const char *mh_jstr(const cJSON *o, const char *field);
long long mh_jint(const cJSON *o, const char *field);

/* ---- the outbox ---- */

/* Events peeked from an outbox, oldest first; {0} is empty. The arrays have n entries,
 * all owned by the struct (mh_events_free). */
typedef struct {
    size_t n;
    int64_t last_seq;  /* seq of the last event; 0 when none */
    char **type;       /* "inventory.reserved" */
    char **corr;       /* correlation id; "" outside sagas */
    cJSON **json;      /* the event's JSON, parsed; NULL if it did not parse */
    cJSON **proto;     /* its protobuf bytes decoded (sg_event_decode); NULL if they did not */
    size_t *proto_len; /* length of those bytes (0: none) */
    size_t cap;
} mh_events_t;

/* An sg_event_fn that appends ev to the mh_events_t arg; never stops early. For outboxes
 * that are not a module's (sg_svc_events_peek). */
bool mh_events_collect(void *arg, const sg_domain_event_t *ev);

/* Up to max events of h's outbox, without removing them, into *e (overwritten: free it
 * first if it held events). Asserts the peek succeeded. */
void mh_events_peek(const mh_t *h, size_t max, mh_events_t *e);

/* Acknowledges (removes from the outbox) the events in *e; nothing when it is empty. */
void mh_events_ack(const mh_t *h, const mh_events_t *e);

/* Acknowledges everything in h's outbox, so a test goes on from an empty one. */
void mh_events_drain(const mh_t *h);

/* Frees what *e holds and empties it. */
void mh_events_free(mh_events_t *e);

/* How many events of *e have this type. */
size_t mh_events_count(const mh_events_t *e, const char *type);

/* ---- the database, through a connection of the test's own ---- */

/* Opens db read-write (never creating it) with a 10 s busy timeout. Asserts. The caller
 * closes it (sqlite3_close). */
sqlite3 *mh_db_open(const char *db);

/* The first column of the first row of the printf-formatted query on db, as an integer.
 * Asserts that the query prepares and gives a row. */
long long mh_query_int(const char *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same as text, malloc'd (the caller frees it); NULL for SQL NULL. */
char *mh_query_text(const char *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Runs sql on db; returns SQLite's result code (a test may expect a constraint to fail). */
int mh_exec(const char *db, const char *sql);

#endif
