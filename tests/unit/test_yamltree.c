/* Unit tests of yamltree: positions, and every defence against hostile YAML. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "orchestrator/yamltree/yamltree.h"

/* Parses text; on failure returns NULL and leaves the first diagnostic in *first. */
static sg_ydoc_t *parse(const char *text, size_t len, sg_diags_t *d)
{
    sg_ydoc_t *doc = NULL;
    sg_diags_init(d, 20);
    sg_err_t rc = sg_ydoc_parse(text, len, NULL, &doc, d);
    if (rc != SG_OK) {
        assert_null(doc);
        assert_true(d->count >= 1);
    }
    return doc;
}

static void expect_error(const char *text, size_t len, uint32_t line, uint32_t col,
                         const char *needle)
{
    sg_diags_t d;
    sg_ydoc_t *doc = parse(text, len, &d);
    assert_null(doc);
    if (strstr(d.items[0].message, needle) == NULL) {
        fail_msg("message \"%s\" lacks \"%s\"", d.items[0].message, needle);
    }
    assert_int_equal(d.items[0].pos.line, line);
    assert_int_equal(d.items[0].pos.col, col);
    sg_diags_fini(&d);
}

static void test_tree_and_positions(void **state)
{
    (void)state;
    const char *y = "saga: x\nsteps:\n  - id: a\n    n: 5\n  - 'q'\n";
    sg_diags_t d;
    sg_ydoc_t *doc = parse(y, strlen(y), &d);
    assert_non_null(doc);
    const sg_ynode_t *root = sg_ydoc_root(doc);
    assert_int_equal(root->kind, SG_YNODE_MAP);
    assert_int_equal(root->count, 2);
    const sg_ynode_t *steps = sg_ymap_get(root, "steps");
    assert_int_equal(steps->kind, SG_YNODE_SEQ);
    assert_int_equal(steps->count, 2);
    const sg_ynode_t *n = sg_ymap_get(steps->items[0], "n");
    assert_string_equal(n->str, "5");
    assert_true(n->plain);
    assert_int_equal(n->pos.line, 4);
    assert_int_equal(n->pos.col, 8);
    assert_false(steps->items[1]->plain);
    assert_int_equal(steps->items[1]->style, SG_YSTYLE_SINGLE);
    assert_int_equal(steps->items[1]->pos.line, 5);
    assert_int_equal(steps->items[1]->pos.col, 5);
    assert_null(sg_ymap_get(root, "nope"));
    sg_ydoc_free(doc);
    sg_diags_fini(&d);
}

static void test_empty_document(void **state)
{
    (void)state;
    sg_diags_t d;
    sg_ydoc_t *doc = parse("# only a comment\n", 17, &d);
    assert_non_null(doc);
    assert_null(sg_ydoc_root(doc));
    sg_ydoc_free(doc);
    sg_diags_fini(&d);
}

static void test_syntax_error_located(void **state)
{
    (void)state;
    expect_error("a: 1\nb: [1, 2\nc: 3\n", 18, 3, 2, "YAML syntax");
    expect_error("a:\n\t- b\n", 8, 2, 1, "tab");
}

static void test_duplicate_key(void **state)
{
    (void)state;
    expect_error("a: 1\nb: 2\na: 3\n", 15, 3, 1, "duplicate key \"a\"");
}

static void test_alias_bomb_rejected(void **state)
{
    (void)state;
    /* Billion laughs: 9 levels of 10x expansion = 10^9 nodes if expanded. */
    char y[2048];
    size_t n = (size_t)snprintf(
        y, sizeof(y),
        "a: &a "
        "[\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (char c = 'b'; c <= 'i'; c++) {
        n += (size_t)snprintf(y + n, sizeof(y) - n,
                              "%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", c, c, c - 1,
                              c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
    }
    sg_diags_t d;
    assert_null(parse(y, n, &d));
    assert_int_equal(d.items[0].code, SG_ERR_LIMIT);
    assert_non_null(strstr(d.items[0].message, "expands to more than"));
    sg_diags_fini(&d);
}

static void test_small_aliases_allowed(void **state)
{
    (void)state;
    const char *y = "r: &r {max_attempts: 3}\ns1: *r\ns2: *r\n";
    sg_diags_t d;
    sg_ydoc_t *doc = parse(y, strlen(y), &d);
    assert_non_null(doc);
    const sg_ynode_t *root = sg_ydoc_root(doc);
    assert_ptr_equal(sg_ymap_get(root, "s1"), sg_ymap_get(root, "r"));
    sg_ydoc_free(doc);
    sg_diags_fini(&d);
    expect_error("a: *nope\n", 9, 1, 4, "undefined alias");
}

static void test_depth_limit(void **state)
{
    (void)state;
    char y[512];
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        y[n++] = '[';
    }
    for (int i = 0; i < 100; i++) {
        y[n++] = ']';
    }
    y[n] = '\0';
    expect_error(y, n, 1, 65, "nesting is deeper than 64");
}

static void test_size_limit(void **state)
{
    (void)state;
    size_t len = (1u << 20) + 1;
    char *y = sg_malloc(len);
    memset(y, '#', len);
    expect_error(y, len, 1, 1, "larger than the limit");
    sg_free(y);
}

static void test_invalid_utf8_located(void **state)
{
    (void)state;
    expect_error("a: ok\nb: x\xff\n", 11, 2, 5, "invalid UTF-8");
    expect_error("a: \xc0\xaf\n", 6, 1, 4, "invalid UTF-8");     /* overlong */
    expect_error("a: \xed\xa0\x80\n", 7, 1, 4, "invalid UTF-8"); /* surrogate */
    expect_error("a: b\x01\n", 6, 1, 5, "control character");
    sg_diags_t d;
    sg_ydoc_t *doc = parse("a: \xc3\xa9t\xc3\xa9\n", 9, &d); /* "été" */
    assert_non_null(doc);
    sg_ydoc_free(doc);
    sg_diags_fini(&d);
}

static void test_multiple_documents(void **state)
{
    (void)state;
    expect_error("a: 1\n---\nb: 2\n", 14, 2, 1, "only one YAML document");
}

static void test_complex_key_rejected(void **state)
{
    (void)state;
    expect_error("? [a, b]\n: 1\n", 13, 1, 3, "only plain keys");
}

static void test_oom_never_crashes(void **state)
{
    (void)state;
    const char *y = "saga: x\nlist: &l [1, 2, {a: b}]\nagain: *l\nsteps:\n  - id: a\n";
    for (size_t nth = 1; nth < 200; nth++) {
        sg_diags_t d;
        sg_diags_init(&d, 20);
        sg_ydoc_t *doc = NULL;
        sg_alloc_fail_at(nth);
        sg_err_t rc = sg_ydoc_parse(y, strlen(y), NULL, &doc, &d);
        sg_alloc_fail_at(0);
        sg_diags_fini(&d);
        if (rc == SG_OK) {
            assert_non_null(doc);
            sg_ydoc_free(doc);
            return;
        }
        assert_int_equal(rc, SG_ERR_NOMEM);
        assert_null(doc);
    }
    fail_msg("parse never succeeded");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_and_positions),   cmocka_unit_test(test_empty_document),
        cmocka_unit_test(test_syntax_error_located), cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_alias_bomb_rejected),  cmocka_unit_test(test_small_aliases_allowed),
        cmocka_unit_test(test_depth_limit),          cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_invalid_utf8_located), cmocka_unit_test(test_multiple_documents),
        cmocka_unit_test(test_complex_key_rejected), cmocka_unit_test(test_oom_never_crashes),
    };
    return cmocka_run_group_tests_name("yamltree", tests, NULL, NULL);
}
