/*
 * sagactl: the command-line tool for saga definitions and (later) running sagas.
 * Offline commands work on files alone: validate, check, graph.
 *
 * Exit codes: 0 success, 1 the input is invalid (or a command failed), 2 usage error.
 * It must never change a file it reads; output goes to stdout, diagnostics to stderr
 * except for `validate`, whose report is its output.
 */
#include "orchestrator/dsl/dsl.h"
#include "visualize/visualize.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_INVALID = 1, EXIT_USAGE = 2 };

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
    const char *summary;
} command_t;

static const command_t *find_command(const char *name);

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sagactl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s\n", find_command(cmd)->usage);
    return EXIT_USAGE;
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

static int print_help(const char *cmd)
{
    const command_t *c = find_command(cmd);
    printf("%s\n\n%s\n", c->usage, c->summary);
    return 0;
}

/* Loads one file; prints its diagnostics to `to`. Returns NULL when invalid. */
static sg_def_t *load(const char *path, bool verify_jq, FILE *to)
{
    sg_dsl_opts_t opts = {.verify_jq = verify_jq};
    sg_diags_t diags;
    sg_diags_init(&diags, SG_DIAGS_DEFAULT_CAP);
    sg_def_t *def = NULL;
    sg_err_t rc = sg_def_load_file(path, &opts, &def, &diags);
    if (rc == SG_ERR_NOMEM) {
        fprintf(to, "%s: error: out of memory\n", path);
    } else if (rc != SG_OK) {
        sg_buf_t out;
        sg_buf_init(&out);
        sg_diags_format(&diags, path, &out);
        fputs(out.data ? out.data : "", to);
        sg_buf_fini(&out);
    }
    sg_diags_fini(&diags);
    return def;
}

static int cmd_validate(int argc, char **argv)
{
    bool verify = false;
    int files = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            return print_help("validate");
        }
        if (strcmp(argv[i], "--jq-verify") == 0) {
            verify = true;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return usage_error("validate", "unknown option %s", argv[i]);
        }
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            continue;
        }
        files++;
        sg_def_t *def = load(argv[i], verify, stdout);
        if (def == NULL) {
            bad++;
        } else {
            printf("%s: ok\n", argv[i]);
        }
        sg_def_free(def);
    }
    if (files == 0) {
        return usage_error("validate", "%s", "no files given");
    }
    return bad ? EXIT_INVALID : 0;
}

static int cmd_check(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            return print_help("check");
        }
        if (argv[i][0] == '-' || path != NULL) {
            return usage_error("check", "unexpected argument %s", argv[i]);
        }
        path = argv[i];
    }
    if (path == NULL) {
        return usage_error("check", "%s", "no file given");
    }
    sg_def_t *def = load(path, false, stderr);
    if (def == NULL) {
        return EXIT_INVALID;
    }
    sg_buf_t out;
    sg_buf_init(&out);
    sg_def_failure_matrix(def, &out);
    fputs(out.data ? out.data : "", stdout);
    sg_buf_fini(&out);
    sg_def_free(def);
    return 0;
}

static int write_output(const char *path, const char *data, size_t len)
{
    FILE *f = path ? fopen(path, "wb") : stdout;
    if (f == NULL) {
        perror(path);
        return EXIT_INVALID;
    }
    size_t n = fwrite(data, 1, len, f);
    int rc = (n == len && fflush(f) == 0) ? 0 : EXIT_INVALID;
    if (path != NULL && fclose(f) != 0) {
        rc = EXIT_INVALID;
    }
    if (rc != 0) {
        perror(path ? path : "stdout");
    }
    return rc;
}

typedef struct {
    const char *path, *format, *out;
} graph_args_t;

static int parse_graph_args(int argc, char **argv, graph_args_t *a)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (is_help(arg)) {
            return -1;
        }
        if ((strcmp(arg, "--format") == 0 || strcmp(arg, "-f") == 0) && i + 1 < argc) {
            a->format = argv[++i];
        } else if (strncmp(arg, "--format=", 9) == 0) {
            a->format = arg + 9;
        } else if (strcmp(arg, "-o") == 0 && i + 1 < argc) {
            a->out = argv[++i];
        } else if (arg[0] == '-' || a->path != NULL) {
            return usage_error("graph", "unexpected argument %s", arg);
        } else {
            a->path = arg;
        }
    }
    if (a->path == NULL) {
        return usage_error("graph", "%s", "no file given");
    }
    if (strcmp(a->format, "dot") != 0 && strcmp(a->format, "svg") != 0) {
        return usage_error("graph", "unknown format %s (use dot or svg)", a->format);
    }
    return 0;
}

static int cmd_graph(int argc, char **argv)
{
    graph_args_t a = {.format = "dot"};
    int rc = parse_graph_args(argc, argv, &a);
    if (rc != 0) {
        return rc < 0 ? print_help("graph") : rc;
    }
    sg_def_t *def = load(a.path, false, stderr);
    if (def == NULL) {
        return EXIT_INVALID;
    }
    sg_buf_t dot, svg;
    sg_buf_init(&dot);
    sg_buf_init(&svg);
    sg_viz_dot(def, NULL, &dot);
    if (strcmp(a.format, "dot") == 0) {
        rc = write_output(a.out, dot.data, dot.len);
    } else {
        char err[256] = "";
        sg_err_t e = sg_viz_svg(dot.data, dot.len, &svg, err, sizeof(err));
        if (e == SG_OK) {
            rc = write_output(a.out, svg.data, svg.len);
        } else {
            fprintf(stderr, "sagactl graph: %s%s%s\n",
                    e == SG_ERR_NOT_FOUND ? "Graphviz `dot` is not installed" : sg_strerror(e),
                    err[0] ? ": " : "", err);
            rc = EXIT_INVALID;
        }
    }
    sg_buf_fini(&dot);
    sg_buf_fini(&svg);
    sg_def_free(def);
    return rc;
}

static const command_t commands[] = {
    {"validate", cmd_validate, "usage: sagactl validate [--jq-verify] FILE...",
     "Checks saga definitions. Prints \"FILE: ok\" for each valid file, otherwise every\n"
     "error as FILE:LINE:COL: error: MESSAGE (with an optional hint line).\n"
     "  --jq-verify   also compile every jq expression with libjq (slower)\n"
     "Exit status: 0 all valid, 1 some invalid, 2 usage error."},
    {"check", cmd_check, "usage: sagactl check FILE",
     "Prints the failure matrix of a valid saga: for each step that can fail, the\n"
     "compensations that would run, in order. Exit status: 0 ok, 1 invalid, 2 usage."},
    {"graph", cmd_graph, "usage: sagactl graph FILE [--format dot|svg] [-o OUT]",
     "Draws the saga with Graphviz: DOT by default, SVG through the `dot` program.\n"
     "Forward path solid, compensations dashed, pivot marked, branches as clusters."},
};

static const command_t *find_command(const char *name)
{
    for (size_t i = 0; i < SG_ARRAY_LEN(commands); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: sagactl COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < SG_ARRAY_LEN(commands); i++) {
        fprintf(to, "  %-10s %s\n", commands[i].name, commands[i].usage + 15);
    }
    fprintf(to, "\nRun `sagactl COMMAND --help` for details.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    const command_t *c = find_command(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "sagactl: unknown command \"%s\"\n", argv[1]);
        usage(stderr);
        return EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
