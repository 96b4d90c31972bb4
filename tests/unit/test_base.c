/* Unit tests of the base module: errors, diagnostics, buffers, durations, hashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/base/base.h"

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(sg_strerror(SG_OK), "ok");
    assert_string_equal(sg_strerror(SG_ERR_NOMEM), "out of memory");
    assert_string_equal(sg_strerror((sg_err_t)999), "unknown error");
}

static void test_diags_cap_and_sort(void **state)
{
    (void)state;
    sg_diags_t d;
    sg_diags_init(&d, 3);
    assert_int_equal(sg_diags_add(&d, SG_ERR_INVALID, (sg_pos_t){5, 1}, NULL, "e%d", 1), SG_OK);
    assert_int_equal(sg_diags_add(&d, SG_ERR_INVALID, (sg_pos_t){2, 9}, "h", "e%d", 2), SG_OK);
    assert_int_equal(sg_diags_add(&d, SG_ERR_INVALID, (sg_pos_t){2, 3}, NULL, "e%d", 3), SG_OK);
    assert_int_equal(sg_diags_add(&d, SG_ERR_INVALID, (sg_pos_t){1, 1}, NULL, "e%d", 4), SG_OK);
    assert_int_equal(d.count, 3);
    assert_int_equal(d.dropped, 1);
    sg_diags_sort(&d);
    assert_string_equal(d.items[0].message, "e3");
    assert_string_equal(d.items[1].message, "e2");
    assert_string_equal(d.items[1].hint, "h");
    assert_string_equal(d.items[2].message, "e1");
    sg_diags_fini(&d);
}

static void test_buf(void **state)
{
    (void)state;
    sg_buf_t b;
    sg_buf_init(&b);
    for (int i = 0; i < 1000; i++) {
        sg_buf_printf(&b, "%d,", i);
    }
    assert_true(b.len > 3000);
    assert_int_equal(strncmp(b.data, "0,1,2,", 6), 0);
    sg_buf_fini(&b);
    sg_buf_init(&b);
    sg_buf_put_escaped(&b, "a\"b\\c\nd\x01");
    assert_string_equal(b.data, "a\\\"b\\\\c\\nd\\u0001");
    char *s = sg_buf_take(&b);
    assert_string_equal(s, "a\\\"b\\\\c\\nd\\u0001");
    sg_free(s);
}

static void test_buf_oom_is_sticky(void **state)
{
    (void)state;
    sg_buf_t b;
    sg_buf_init(&b);
    sg_alloc_fail_at(1);
    sg_buf_puts(&b, "hello");
    sg_alloc_fail_at(0);
    sg_buf_puts(&b, "world");
    assert_true(b.oom);
    assert_null(sg_buf_take(&b));
}

static void test_edit_distance_and_closest(void **state)
{
    (void)state;
    assert_int_equal(sg_edit_distance("steps", "stpes", 3), 2);
    assert_int_equal(sg_edit_distance("activity", "activty", 3), 1);
    assert_int_equal(sg_edit_distance("abc", "abc", 3), 0);
    assert_int_equal(sg_edit_distance("a", "abcdefgh", 2), 3);
    const char *const keys[] = {"saga", "version", "steps", "timeout"};
    assert_string_equal(sg_closest("stpes", keys, 4), "steps");
    assert_string_equal(sg_closest("verison", keys, 4), "version");
    assert_null(sg_closest("zzzzzzzz", keys, 4));
}

static void test_duration_parse(void **state)
{
    (void)state;
    uint64_t ms = 0;
    assert_true(sg_duration_parse("250ms", &ms));
    assert_int_equal(ms, 250);
    assert_true(sg_duration_parse("5s", &ms));
    assert_int_equal(ms, 5000);
    assert_true(sg_duration_parse("10m", &ms));
    assert_int_equal(ms, 600000);
    assert_true(sg_duration_parse("1h30m", &ms));
    assert_int_equal(ms, 5400000);
    assert_true(sg_duration_parse("1d", &ms));
    assert_int_equal(ms, 86400000);
    assert_true(sg_duration_parse("0s", &ms));
    assert_int_equal(ms, 0);
    const char *bad[] = {
        "", "5", "s", "-1s", "5x", "1m1h", "1s1s", "1.5s", "5 s", "99999999999999999999s", "1ms5s"};
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        assert_false(sg_duration_parse(bad[i], &ms));
    }
}

static void test_duration_format_roundtrip(void **state)
{
    (void)state;
    const uint64_t values[] = {0, 1, 250, 1000, 61000, 5400000, 86400000 + 1, 3723004};
    for (size_t i = 0; i < SG_ARRAY_LEN(values); i++) {
        char buf[64];
        uint64_t back = 0;
        sg_duration_format(values[i], buf, sizeof(buf));
        assert_true(sg_duration_parse(buf, &back));
        assert_int_equal(back, values[i]);
    }
    char buf[64];
    sg_duration_format(5400000, buf, sizeof(buf));
    assert_string_equal(buf, "1h30m");
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    char hex[65];
    sg_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sg_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sg_sha256_hex(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_arena(void **state)
{
    (void)state;
    sg_arena_t a = {0};
    char *big = sg_arena_alloc(&a, 100000);
    assert_non_null(big);
    memset(big, 1, 100000);
    for (int i = 0; i < 10000; i++) {
        char *s = sg_arena_strndup(&a, "hello", 5);
        assert_string_equal(s, "hello");
        assert_int_equal((uintptr_t)s % _Alignof(max_align_t), 0);
    }
    int *z = sg_arena_calloc(&a, 64 * sizeof(int));
    for (int i = 0; i < 64; i++) {
        assert_int_equal(z[i], 0);
    }
    sg_arena_fini(&a);
}

static void test_alloc_fail_at(void **state)
{
    (void)state;
    sg_alloc_fail_at(2);
    void *a = sg_malloc(8);
    void *b = sg_malloc(8);
    void *c = sg_malloc(8);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    assert_int_equal(sg_alloc_fail_at(0), 3);
    sg_free(a);
    sg_free(c);
}

static void test_file_read_limit(void **state)
{
    (void)state;
    char path[] = "/tmp/sg_test_fileXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "0123456789", 10), 10);
    close(fd);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(sg_file_read(path, 10, &buf, &len), SG_OK);
    assert_int_equal(len, 10);
    assert_string_equal(buf, "0123456789");
    sg_free(buf);
    assert_int_equal(sg_file_read(path, 9, &buf, &len), SG_ERR_LIMIT);
    assert_null(buf);
    unlink(path);
    assert_int_equal(sg_file_read(path, 9, &buf, &len), SG_ERR_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_diags_cap_and_sort),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_buf_oom_is_sticky),
        cmocka_unit_test(test_edit_distance_and_closest),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_duration_format_roundtrip),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_alloc_fail_at),
        cmocka_unit_test(test_file_read_limit),
    };
    return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
