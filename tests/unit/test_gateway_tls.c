/*
 * Tests of the gateway's TLS settings (gateway/tls.c): both files or neither, PEM
 * checks, encrypted and unreadable keys, out of memory; and that sg_gateway_start, over a
 * real driver, refuses what cannot work and says why. HTTPS itself
 * (a real certificate from openssl, sagactl and curl over it) is tested by
 * tests/integration/sagactl_test.sh.
 */
/* cmocka.h needs these first; the blank line keeps clang-format from reordering them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/gateway_int.h"
#include "tests/support/gateway_harness.h"

/* Only the markers matter to tls.c; GnuTLS parses the rest when the daemon starts. */
static const char cert_pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
static const char enc_key_pem[] =
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----\n";

typedef struct {
    char dir[64];
    char cert[96], key[96], enc[96], json[96];
} files_t;

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static int setup(void **state)
{
    files_t *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "/tmp/sg_tlsXXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->cert, sizeof(f->cert), "%s/cert.pem", f->dir);
    snprintf(f->key, sizeof(f->key), "%s/key.pem", f->dir);
    snprintf(f->enc, sizeof(f->enc), "%s/enc.pem", f->dir);
    snprintf(f->json, sizeof(f->json), "%s/x.json", f->dir);
    write_file(f->cert, cert_pem, 0644);
    write_file(f->key, key_pem, 0600);
    write_file(f->enc, enc_key_pem, 0600);
    write_file(f->json, "{\"not\": \"pem\"}\n", 0644);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    files_t *f = *state;
    unlink(f->cert);
    unlink(f->key);
    unlink(f->enc);
    unlink(f->json);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir); /* and the driver's databases */
    if (system(cmd) != 0) {
        return -1;
    }
    free(f);
    return 0;
}

/* gw__tls_load on cert/key; returns rc, and frees what it gave. */
static sg_err_t load(const char *cert, const char *key, char *err, size_t errlen)
{
    sg_gateway_opts_t o = {.tls_cert_file = cert, .tls_key_file = key};
    char *c = (char *)"unset", *k = (char *)"unset";
    sg_err_t rc = SG_ERR_INTERNAL;
    err[0] = '\0';
    bool ok = gw__tls_load(&o, &c, &k, &rc, err, errlen);
    assert_int_equal(ok, rc == SG_OK);
    if (!ok) {
        assert_null(c); /* nothing to free on failure */
        assert_null(k);
        assert_true(err[0] != '\0');
    }
    gw__tls_free(c, k);
    return rc;
}

static void test_off_without_files(void **state)
{
    (void)state;
    sg_gateway_opts_t o = {0};
    char *c = (char *)"unset", *k = (char *)"unset", err[256] = "";
    sg_err_t rc = SG_ERR_INTERNAL;
    assert_true(gw__tls_load(&o, &c, &k, &rc, err, sizeof(err)));
    assert_int_equal(rc, SG_OK);
    assert_null(c);
    assert_null(k);
}

static void test_loads_both(void **state)
{
    files_t *f = *state;
    sg_gateway_opts_t o = {.tls_cert_file = f->cert, .tls_key_file = f->key};
    char *c = NULL, *k = NULL, err[256] = "";
    sg_err_t rc = SG_ERR_INTERNAL;
    assert_true(gw__tls_load(&o, &c, &k, &rc, err, sizeof(err)));
    assert_int_equal(rc, SG_OK);
    assert_string_equal(c, cert_pem);
    assert_string_equal(k, key_pem);
    gw__tls_free(c, k);
    gw__tls_free(NULL, NULL);
}

static void test_both_or_neither(void **state)
{
    files_t *f = *state;
    char err[256];
    assert_int_equal(load(f->cert, NULL, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "both"));
    assert_int_equal(load(NULL, f->key, err, sizeof(err)), SG_ERR_INVALID);
}

static void test_refuses_bad_files(void **state)
{
    files_t *f = *state;
    char err[256], missing[128];
    assert_int_equal(load(f->json, f->key, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "not a PEM file"));
    assert_int_equal(load(f->cert, f->cert, err, sizeof(err)), SG_ERR_INVALID); /* no key */
    assert_non_null(strstr(err, "PRIVATE KEY"));
    assert_int_equal(load(f->cert, f->enc, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "encrypted"));
    snprintf(missing, sizeof(missing), "%s/missing.pem", f->dir);
    assert_int_equal(load(f->cert, missing, err, sizeof(err)), SG_ERR_IO);
    assert_non_null(strstr(err, missing));
}

static void test_out_of_memory(void **state)
{
    files_t *f = *state;
    char err[256];
    size_t failures = 0;
    for (size_t nth = 1; nth < 64; nth++) {
        sg_alloc_fail_at(nth);
        sg_err_t rc = load(f->cert, f->key, err, sizeof(err));
        size_t used = sg_alloc_fail_at(0);
        if (rc == SG_OK && used < nth) {
            break; /* every allocation succeeded: done */
        }
        assert_int_equal(rc, SG_ERR_NOMEM);
        failures++;
    }
    assert_true(failures > 0);
}

/* sg_gateway_start with TLS settings over a real driver; returns rc, stops a gateway. */
static sg_err_t start_with(const files_t *f, const char *cert, const char *key, char *err,
                           size_t errlen)
{
    char db[128];
    snprintf(db, sizeof(db), "%s/sagad.db", f->dir);
    sg_driver_t *d = gh_driver_start(
        &(sg_driver_opts_t){.db_path = db, .data_dir = f->dir, .threads = 1, .sync = SG_SYNC_OFF});
    sg_gateway_opts_t o = {.listen = "127.0.0.1:0",
                           .db_path = db,
                           .driver = d,
                           .tls_cert_file = cert,
                           .tls_key_file = key};
    sg_gateway_t *g = NULL;
    err[0] = '\0';
    sg_err_t rc = sg_gateway_start(&o, &g, err, errlen);
    assert_true((rc == SG_OK) == (g != NULL));
    sg_gateway_stop(g);
    sg_driver_stop(d);
    return rc;
}

/* Refused at start, saying why: half a configuration, an encrypted key, and a pair
 * GnuTLS cannot use (the markers pass tls.c, the content does not). */
static void test_gateway_start_refuses(void **state)
{
    files_t *f = *state;
    char err[512];
    assert_int_equal(start_with(f, f->cert, NULL, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "--tls-key"));
    assert_int_equal(start_with(f, f->cert, f->enc, err, sizeof(err)), SG_ERR_INVALID);
    assert_non_null(strstr(err, "encrypted"));
    assert_int_equal(start_with(f, f->cert, f->key, err, sizeof(err)), SG_ERR_IO);
    assert_non_null(strstr(err, "TLS"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_without_files), cmocka_unit_test(test_loads_both),
        cmocka_unit_test(test_both_or_neither),   cmocka_unit_test(test_refuses_bad_files),
        cmocka_unit_test(test_out_of_memory),     cmocka_unit_test(test_gateway_start_refuses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
