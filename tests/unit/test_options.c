/*
 * Unit tests of the options module: every kind of option on the command line (--name
 * VALUE and --name=VALUE), unknown options, stray arguments, missing values, bad numbers
 * and flag values with their exact messages, --help printed from the table, config files
 * (comments, blank lines, CRLF, errors with FILE:LINE), flags winning over config files
 * wherever --config stands, several config files, and out-of-memory at every allocation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/options/options.h"

typedef struct {
    const char *name;
    unsigned n;
    bool flag;
    sg_opt_list_t list;
} settings_t;

static const sg_opt_t table[] = {
    {"name", SG_OPT_STR, offsetof(settings_t, name), "a string"},
    {"n", SG_OPT_UINT, offsetof(settings_t, n), "a number"},
    {"flag", SG_OPT_FLAG, offsetof(settings_t, flag), "a flag"},
    {"item", SG_OPT_LIST, offsetof(settings_t, list), "repeats"},
};

/* One parse: its settings, return code and what it printed. */
typedef struct {
    settings_t s;
    sg_opts_t o;
    sg_opts_spec_t spec;
    sg_opts_rc_t rc;
    char *out, *err;
    size_t out_len, err_len;
} run_t;

static char dir[64];

static void run_argv(run_t *r, int argc, char **argv)
{
    memset(r, 0, sizeof(*r));
    FILE *out = open_memstream(&r->out, &r->out_len);
    FILE *err = open_memstream(&r->err, &r->err_len);
    assert_non_null(out);
    assert_non_null(err);
    r->spec = (sg_opts_spec_t){.prog = "prog",
                               .synopsis = "usage: prog [options]\n\n",
                               .opts = table,
                               .n_opts = SG_ARRAY_LEN(table),
                               .out = out,
                               .err = err};
    sg_opts_init(&r->o, &r->spec, &r->s);
    r->rc = sg_opts_parse(&r->o, argc, argv);
    fclose(out);
    fclose(err);
}

/* Parses the NULL-terminated arguments after argv[0]. */
#define RUN(r, ...)                                     \
    do {                                                \
        char *argv_[] = {"prog", __VA_ARGS__};          \
        run_argv((r), (int)SG_ARRAY_LEN(argv_), argv_); \
    } while (0)

static void done(run_t *r)
{
    sg_opts_fini(&r->o);
    free(r->out);
    free(r->err);
}

/* Expects a usage error with exactly this message. */
static void expect_error(run_t *r, const char *msg)
{
    assert_int_equal(r->rc, SG_OPTS_USAGE);
    assert_string_equal(r->err, msg);
    done(r);
}

/* Expects a parse that went through with these settings (items: NULL-terminated). */
static void expect_run(run_t *r, const char *name, unsigned n, bool flag, const char *const *items)
{
    assert_int_equal(r->rc, SG_OPTS_RUN);
    assert_string_equal(r->err, "");
    assert_string_equal(r->s.name, name);
    assert_int_equal(r->s.n, n);
    assert_int_equal(r->s.flag, flag);
    size_t k = 0;
    for (; items[k] != NULL; k++) {
        assert_true(k < r->s.list.n);
        assert_string_equal(r->s.list.items[k], items[k]);
    }
    assert_int_equal(r->s.list.n, k);
}

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_every_kind(void **state)
{
    (void)state;
    run_t r;
    RUN(&r, "--name", "a b", "--n", "7", "--flag", "--item", "x", "--item=y", "--item", "");
    expect_run(&r, "a b", 7, true, (const char *const[]){"x", "y", "", NULL});
    done(&r);

    /* =VALUE forms; a later flag wins; the bounds of numbers. */
    RUN(&r, "--name=1=2", "--n=1", "--n=4096", "--flag=true", "--flag=0", "--name", "--n");
    assert_int_equal(r.rc, SG_OPTS_RUN);
    assert_string_equal(r.s.name, "--n"); /* a value may look like a flag */
    assert_int_equal(r.s.n, 4096);
    assert_false(r.s.flag);
    done(&r);
    RUN(&r, "--flag=1");
    assert_true(r.s.flag);
    done(&r);
    RUN(&r, "--flag=false");
    assert_int_equal(r.rc, SG_OPTS_RUN);
    assert_false(r.s.flag);
    done(&r);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    run_t r;
    RUN(&r, "--nope", "1");
    expect_error(&r, "prog: unknown option --nope (see prog --help)\n");
    RUN(&r, "--nope=1");
    expect_error(&r, "prog: unknown option --nope (see prog --help)\n");
    RUN(&r, "--names=1");
    expect_error(&r, "prog: unknown option --names (see prog --help)\n");
    RUN(&r, "plain");
    expect_error(&r, "prog: unexpected argument \"plain\"\n");
    RUN(&r, "-n", "1");
    expect_error(&r, "prog: unexpected argument \"-n\"\n");
    /* A flag takes no separate value. */
    RUN(&r, "--flag", "true");
    expect_error(&r, "prog: unexpected argument \"true\"\n");
    /* The first error stops the parse. */
    RUN(&r, "--n", "0", "--nope");
    expect_error(&r, "prog: command line: n must be a number from 1 to 4096, not \"0\"\n");
}

static void test_missing_value(void **state)
{
    (void)state;
    run_t r;
    RUN(&r, "--name");
    expect_error(&r, "prog: command line: --name needs a value\n");
    RUN(&r, "--flag", "--n");
    expect_error(&r, "prog: command line: --n needs a value\n");
    RUN(&r, "--item");
    expect_error(&r, "prog: command line: --item needs a value\n");
    RUN(&r, "--config");
    expect_error(&r, "prog: command line: --config needs a value\n");
}

static void test_bad_values(void **state)
{
    (void)state;
    static const char *const bad[] = {"0", "4097", "abc", "", "12x", "-1", "99999999999999999999"};
    for (size_t i = 0; i < SG_ARRAY_LEN(bad); i++) {
        run_t r;
        char arg[64], msg[128];
        snprintf(arg, sizeof(arg), "--n=%s", bad[i]);
        snprintf(msg, sizeof(msg),
                 "prog: command line: n must be a number from 1 to 4096, not \"%s\"\n", bad[i]);
        RUN(&r, arg);
        expect_error(&r, msg);
    }
    run_t r;
    RUN(&r, "--flag=maybe");
    expect_error(&r, "prog: command line: flag takes true or false, not \"maybe\"\n");
    RUN(&r, "--flag=");
    expect_error(&r, "prog: command line: flag takes true or false, not \"\"\n");
}

static void test_help_from_the_table(void **state)
{
    (void)state;
    static const char want[] = "usage: prog [options]\n\n"
                               "options:\n"
                               "  --name             VALUE a string\n"
                               "  --n                N     a number\n"
                               "  --flag                   a flag\n"
                               "  --item             VALUE repeats\n"
                               "  --config           FILE  key = value lines with the option "
                               "names above\n"
                               "  --help                   this text\n";
    run_t r;
    RUN(&r, "--n", "3", "--help", "--nope");
    assert_int_equal(r.rc, SG_OPTS_HELP);
    assert_string_equal(r.out, want);
    assert_string_equal(r.err, "");
    done(&r);
    RUN(&r, "-h");
    assert_int_equal(r.rc, SG_OPTS_HELP);
    assert_string_equal(r.out, want);
    done(&r);
    /* An error before --help wins. */
    RUN(&r, "--nope", "--help");
    assert_int_equal(r.rc, SG_OPTS_USAGE);
    assert_string_equal(r.out, "");
    done(&r);
}

static void test_config_file(void **state)
{
    (void)state;
    const char *path = write_file("good.conf", "# a comment\n"
                                               "\n"
                                               "   name =  spaced value  # trailing comment\r\n"
                                               "\t\n"
                                               "n=12\n"
                                               "flag = true\n"
                                               "item = a\n"
                                               "item = b");
    run_t r;
    RUN(&r, "--item", "c", "--config", (char *)path);
    /* The file's items come first, wherever --config stands. */
    expect_run(&r, "spaced value", 12, true, (const char *const[]){"a", "b", "c", NULL});
    done(&r);

    /* An empty file, and one of comments only. */
    path = write_file("empty.conf", "");
    RUN(&r, "--config", (char *)path);
    assert_int_equal(r.rc, SG_OPTS_RUN);
    done(&r);
    path = write_file("comments.conf", "# only\n\n#this\n");
    RUN(&r, "--config", (char *)path);
    assert_int_equal(r.rc, SG_OPTS_RUN);
    done(&r);
}

static void test_config_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned line;
        const char *msg;
    } cases[] = {
        {"# c\n\n\n\nnope = 1\n", 5, "unknown setting \"nope\""},
        {"name = a\n\nno equals sign\n", 3, "expected key = value"},
        {"\n\n\nn = 0\n", 4, "n must be a number from 1 to 4096, not \"0\""},
        {"flag = yes\n", 1, "flag takes true or false, not \"yes\""},
        {"flag =\n", 1, "flag takes true or false, not \"\""},
        {"name = a\r\n\r\n = b\n", 3, "unknown setting \"\""},
        {"config = other.conf\n", 1, "unknown setting \"config\""},
    };
    for (size_t i = 0; i < SG_ARRAY_LEN(cases); i++) {
        const char *path = write_file("bad.conf", cases[i].text);
        char msg[512];
        snprintf(msg, sizeof(msg), "prog: %s:%u: %s\n", path, cases[i].line, cases[i].msg);
        run_t r;
        RUN(&r, "--config", (char *)path);
        expect_error(&r, msg);
    }
    char missing[128], msg[256];
    snprintf(missing, sizeof(missing), "%s/missing.conf", dir);
    snprintf(msg, sizeof(msg), "prog: cannot read config file %s\n", missing);
    run_t r;
    RUN(&r, "--name", "x", "--config", missing);
    expect_error(&r, msg);
    /* A config error comes before a flag error, as the files are read first. */
    RUN(&r, "--nope", "--config", missing);
    expect_error(&r, msg);
}

static void test_flags_win_over_config(void **state)
{
    (void)state;
    const char *path = write_file("base.conf", "name = from-file\nn = 5\nflag = true\n");
    char p[128];
    snprintf(p, sizeof(p), "%s", path);
    run_t r;
    RUN(&r, "--name", "from-flag", "--config", p, "--flag=false");
    assert_int_equal(r.rc, SG_OPTS_RUN);
    assert_string_equal(r.s.name, "from-flag");
    assert_int_equal(r.s.n, 5);
    assert_false(r.s.flag);
    done(&r);

    /* Several files, in order (--config=FILE too); a later file wins over an earlier one,
     * and the values of both stay valid until fini. */
    path = write_file("more.conf", "n = 9\nitem = z\n");
    char p2[128], eq[160];
    snprintf(p2, sizeof(p2), "%s", path);
    snprintf(eq, sizeof(eq), "--config=%s", p);
    RUN(&r, "--config", p2, eq);
    expect_run(&r, "from-file", 5, true, (const char *const[]){"z", NULL});
    done(&r);
}

static void test_value_named_config(void **state)
{
    (void)state;
    run_t r;
    /* The value of an option is never taken for --config, in either pass. */
    RUN(&r, "--name", "--config", "--n", "2");
    assert_int_equal(r.rc, SG_OPTS_RUN);
    assert_string_equal(r.s.name, "--config");
    assert_int_equal(r.s.n, 2);
    done(&r);
    RUN(&r, "--n", "--config", "missing.conf");
    expect_error(&r, "prog: command line: n must be a number from 1 to 4096, not \"--config\"\n");
}

static void test_out_of_memory(void **state)
{
    (void)state;
    const char *path = write_file("oom.conf", "item = a\nitem = b\nname = n\n");
    char p[128];
    snprintf(p, sizeof(p), "%s", path);
    bool ran = false;
    for (size_t nth = 1; nth < 100 && !ran; nth++) {
        run_t r;
        sg_alloc_fail_at(nth);
        RUN(&r, "--item", "c", "--config", p, "--item", "d");
        sg_alloc_fail_at(0);
        ran = r.rc == SG_OPTS_RUN;
        if (ran) {
            assert_int_equal(r.s.list.n, 4);
            assert_string_equal(r.s.list.items[3], "d");
        } else {
            assert_int_equal(r.rc, SG_OPTS_USAGE);
            assert_true(strstr(r.err, "out of memory") != NULL ||
                        strstr(r.err, "cannot read config file") != NULL);
        }
        done(&r);
    }
    assert_true(ran);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_options.XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    static const char *const files[] = {"good.conf", "empty.conf", "comments.conf", "bad.conf",
                                        "base.conf", "more.conf",  "oom.conf"};
    char path[128];
    for (size_t i = 0; i < SG_ARRAY_LEN(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    return rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind),          cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_missing_value),       cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_help_from_the_table), cmocka_unit_test(test_config_file),
        cmocka_unit_test(test_config_errors),       cmocka_unit_test(test_flags_win_over_config),
        cmocka_unit_test(test_value_named_config),  cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests_name("options", tests, setup, teardown);
}
