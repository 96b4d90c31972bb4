/*
 * gateway_harness: what the gateway's unit tests (test_gateway.c, test_gateway_api.c,
 * test_gateway_auth.c, test_gateway_metrics.c, test_gateway_tls.c) share. A test gets a
 * temporary directory of its own with its workflow files, a real driver on a SQLite file
 * in it, a gateway on 127.0.0.1 with a port the kernel chose, and an HTTP client
 * (libcurl) that returns the status, the headers the tests look at and the body, parsed
 * when it is JSON. Waiting for a saga is polling a route with a bounded number of tries.
 *
 * cmocka-friendly: every function asserts what it relies on, so a failure fails the
 * running test (or its setup). Nothing here allocates through sg_malloc, so the tests'
 * allocation-failure counts (sg_alloc_fail_at) are theirs alone. The caller includes
 * cmocka.h.
 */
#ifndef SG_TESTS_GATEWAY_HARNESS_H
#define SG_TESTS_GATEWAY_HARNESS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway/gateway.h"

/* ---- the HTTP client ---- */

/* An answer. Plain value type: tests read every field. Free with gh_resp_free. */
typedef struct {
    long status;
    char *body; /* NUL-terminated (malloc), NULL when the answer had none */
    size_t len;
    char ctype[128];      /* Content-Type, "" when absent; so are the other headers */
    char location[128];   /* Location */
    char allow[64];       /* Allow */
    char www_auth[256];   /* WWW-Authenticate */
    char retry_after[32]; /* Retry-After */
    cJSON *json;          /* the body parsed, NULL when it is not JSON */
} gh_resp_t;

/* A body length meaning strlen(body). */
#define GH_STRLEN ((size_t)-1)

/* gh_request flags: send the body chunked, without Content-Length. */
enum { GH_CHUNKED = 1u };

/*
 * One request to base ("http://127.0.0.1:PORT") + path. body NULL sends none, else len
 * bytes of it (GH_STRLEN: strlen) with Content-Type: application/json unless headers set
 * one. headers: NULL, or extra header lines ending with NULL. HEAD reads no body. Fails
 * the test when the request cannot be sent; any thread (one curl handle per call).
 */
gh_resp_t gh_request(const char *base, const char *method, const char *path, const char *body,
                     size_t len, const char *const *headers, unsigned flags);
/* GET base + path. */
gh_resp_t gh_get(const char *base, const char *path);
/* Frees what r holds and zeroes it. */
void gh_resp_free(gh_resp_t *r);

/* ---- reading JSON ---- */

const cJSON *gh_item(const cJSON *o, const char *key);
/* A string member, or NULL. */
const char *gh_str(const cJSON *o, const char *key);
/* A number member, or -1. */
double gh_num(const cJSON *o, const char *key);
/* Whether member key is the string want. */
bool gh_str_is(const cJSON *o, const char *key, const char *want);
/* Asserts that member key is the string want, printing the object when not. */
void gh_expect_str(const cJSON *o, const char *key, const char *want);

/* Asserts a problem document (application/problem+json) with this status and members
 * type, title, status and detail; with slug, its type is urn:sagad:problem:<slug>. what
 * (may be NULL) starts the failure message. */
void gh_assert_problem(const gh_resp_t *r, long status, const char *slug, const char *what);

/* Asserts that GET base + path is a 400 bad-parameter naming param: its `parameter`
 * member, and the first word of its detail. */
void gh_expect_bad_param(const char *base, const char *path, const char *param);

/* ---- waiting ---- */

void gh_sleep_ms(long ms);

/* GETs base + path until it answers 200 with a document pred accepts (at most tries
 * times, wait_ms apart), and returns that document (the caller deletes it). Fails the
 * test when it never does. */
cJSON *gh_poll(const char *base, const char *path, bool (*pred)(const cJSON *doc, const void *arg),
               const void *arg, int tries, long wait_ms);

/* ---- files ---- */

/* Writes text to dir/name. Asserts. */
void gh_write_file(const char *dir, const char *name, const char *text);

/* ---- driver and gateway ---- */

/* Starts a driver with o; fails the test with the driver's message when it does not. */
sg_driver_t *gh_driver_start(const sg_driver_opts_t *o);

/* Starts a gateway with o, listen "127.0.0.1:0" when o->listen is NULL; fails the test
 * with the gateway's message when it does not start. Its "http://127.0.0.1:PORT" goes to
 * base (cap bytes). Stop it with sg_gateway_stop. */
sg_gateway_t *gh_gateway_start(const sg_gateway_opts_t *o, char *base, size_t cap);

/* What gh_new sets up. */
typedef struct {
    const char *name; /* the directory is $TMPDIR/sg-test-<name>-XXXXXX */
    /* Workflow files written into <dir>/workflows: file name, YAML, file name, YAML, ...,
     * NULL. NULL: none (the folder is still made). */
    const char *const *workflows;
    const char *workflows_dir; /* a folder of the repository instead ("workflows") */
    /* Called with the directory before the driver starts (seed the services, write
     * credential files); NULL: nothing. */
    void (*prepare)(const char *dir);
    bool test_activities; /* serve the built-in `test` queue */
    unsigned threads;     /* 0: 4 */
    bool no_gateway;      /* start the driver only */
    /* Further gateway settings (auth_file, max_body, ...); listen, db_path and driver are
     * filled in when unset. */
    sg_gateway_opts_t gateway;
} gh_opts_t;

/* One test's server. Plain value type: tests read every field. */
typedef struct {
    char dir[256]; /* the temporary directory, also the driver's data_dir */
    char db[320];  /* <dir>/sagad.db */
    char wf[320];  /* the workflows folder */
    sg_driver_t *d;
    sg_gateway_t *gw; /* NULL with no_gateway */
    char base[64];    /* "http://127.0.0.1:PORT" of gw */
} gh_t;

/* A new gh_t (free it with gh_free): sagad's log at errors only, libcurl initialised, the
 * directory, the workflows, prepare, the driver (synchronous off) and the gateway. Asserts;
 * meant for a cmocka setup. */
gh_t *gh_new(const gh_opts_t *o);

/* Stops h's gateway and driver, removes its directory and frees h; NULL is a no-op.
 * Returns 0, or -1 when the directory could not be removed. Gateways started with
 * gh_gateway_start on h->d are the caller's to stop first. */
int gh_free(gh_t *h);

#endif
