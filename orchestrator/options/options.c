/*
 * options: flags, config files and --help of a daemon from one table (see options.h).
 *
 * It must never exit the process or print anything but its help and its errors.
 */
#include "orchestrator/options/options.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES (1u << 20)

static FILE *err_of(const sg_opts_t *o)
{
    return o->spec->err != NULL ? o->spec->err : stderr;
}

static const sg_opt_t *find(const sg_opts_spec_t *spec, const char *name, size_t len)
{
    for (size_t i = 0; i < spec->n_opts; i++) {
        if (strncmp(spec->opts[i].name, name, len) == 0 && spec->opts[i].name[len] == '\0') {
            return &spec->opts[i];
        }
    }
    return NULL;
}

static bool set_flag(sg_opts_t *o, const sg_opt_t *opt, const char *value, const char *where,
                     bool *field)
{
    bool on = value == NULL || strcmp(value, "true") == 0 || strcmp(value, "1") == 0;
    if (value != NULL && !on && strcmp(value, "false") != 0 && strcmp(value, "0") != 0) {
        fprintf(err_of(o), "%s: %s: %s takes true or false, not \"%s\"\n", o->spec->prog, where,
                opt->name, value);
        return false;
    }
    *field = on;
    return true;
}

static bool set_uint(sg_opts_t *o, const sg_opt_t *opt, const char *value, const char *where,
                     unsigned *field)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v == 0 || v > SG_OPT_UINT_MAX) {
        fprintf(err_of(o), "%s: %s: %s must be a number from 1 to %u, not \"%s\"\n", o->spec->prog,
                where, opt->name, SG_OPT_UINT_MAX, value);
        return false;
    }
    *field = (unsigned)v;
    return true;
}

static bool append(sg_opts_t *o, const char *value, sg_opt_list_t *list)
{
    const char **grown = sg_realloc(list->items, (list->n + 1) * sizeof(*grown));
    if (grown == NULL) {
        fprintf(err_of(o), "%s: out of memory\n", o->spec->prog);
        return false;
    }
    list->items = grown;
    list->items[list->n++] = value;
    return true;
}

/* Sets one option; value (NULL: none was given) is kept, not copied. */
static bool set_option(sg_opts_t *o, const sg_opt_t *opt, const char *value, const char *where)
{
    void *field = (char *)o->settings + opt->offset;
    if (opt->kind == SG_OPT_FLAG) {
        return set_flag(o, opt, value, where, field);
    }
    if (value == NULL) {
        fprintf(err_of(o), "%s: %s: --%s needs a value\n", o->spec->prog, where, opt->name);
        return false;
    }
    switch (opt->kind) {
    case SG_OPT_STR:
        *(const char **)field = value;
        return true;
    case SG_OPT_UINT:
        return set_uint(o, opt, value, where, field);
    case SG_OPT_LIST:
        return append(o, value, field);
    case SG_OPT_FLAG:
        break;
    }
    return false;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) {
        *--e = '\0';
    }
    return s;
}

/* One line of a config file (its '\n' already cut). */
static bool config_line(sg_opts_t *o, char *line, const char *where)
{
    char *hash = strchr(line, '#');
    if (hash != NULL) {
        *hash = '\0';
    }
    char *t = trim(line);
    if (*t == '\0') {
        return true;
    }
    char *eq = strchr(t, '=');
    if (eq == NULL) {
        fprintf(err_of(o), "%s: %s: expected key = value\n", o->spec->prog, where);
        return false;
    }
    *eq = '\0';
    const char *key = trim(t);
    const sg_opt_t *opt = find(o->spec, key, strlen(key));
    if (opt == NULL) {
        fprintf(err_of(o), "%s: %s: unknown setting \"%s\"\n", o->spec->prog, where, key);
        return false;
    }
    return set_option(o, opt, trim(eq + 1), where);
}

bool sg_opts_read_config(sg_opts_t *o, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    if (!sg_grow((void **)&o->texts, &o->cap_texts, o->n_texts, sizeof(*o->texts))) {
        fprintf(err_of(o), "%s: out of memory\n", o->spec->prog);
        return false;
    }
    if (sg_file_read(path, CONFIG_MAX_BYTES, &text, &len) != SG_OK) {
        fprintf(err_of(o), "%s: cannot read config file %s\n", o->spec->prog, path);
        return false;
    }
    o->texts[o->n_texts++] = text; /* values point into it */
    unsigned lineno = 0;
    for (char *p = text; p != NULL && *p != '\0';) {
        char *nl = strchr(p, '\n');
        if (nl != NULL) {
            *nl = '\0';
        }
        lineno++;
        char where[300];
        snprintf(where, sizeof(where), "%s:%u", path, lineno);
        if (!config_line(o, p, where)) {
            return false;
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    return true;
}

/* "--config" or "--config=..." (then *value points after the '='). */
static bool is_config(const char *arg, const char **value)
{
    if (strncmp(arg, "--config", 8) != 0 || (arg[8] != '\0' && arg[8] != '=')) {
        return false;
    }
    *value = arg[8] == '=' ? arg + 9 : NULL;
    return true;
}

/* The value of argv[*i] when it was not given after '=': the next argument, taken. */
static const char *next_value(int argc, char **argv, int *i)
{
    return *i + 1 < argc ? argv[++*i] : NULL;
}

/* First pass: the config files, wherever --config stands. */
static bool read_configs(sg_opts_t *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value = NULL;
        if (is_config(a, &value)) {
            value = value != NULL ? value : next_value(argc, argv, &i);
            if (value == NULL) {
                fprintf(err_of(o), "%s: command line: --config needs a value\n", o->spec->prog);
                return false;
            }
            if (!sg_opts_read_config(o, value)) {
                return false;
            }
        } else if (strncmp(a, "--", 2) == 0 && strchr(a, '=') == NULL) {
            /* Skip the value of a known option, as the second pass will. */
            const sg_opt_t *opt = find(o->spec, a + 2, strlen(a + 2));
            i += opt != NULL && opt->kind != SG_OPT_FLAG && i + 1 < argc;
        }
    }
    return true;
}

sg_opts_rc_t sg_opts_parse(sg_opts_t *o, int argc, char **argv)
{
    if (!read_configs(o, argc, argv)) {
        return SG_OPTS_USAGE;
    }
    const char *prog = o->spec->prog;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            sg_opts_usage(o->spec, o->spec->out != NULL ? o->spec->out : stdout);
            return SG_OPTS_HELP;
        }
        if (is_config(a, &value)) {
            i += value == NULL; /* read in the first pass */
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(err_of(o), "%s: unexpected argument \"%s\"\n", prog, a);
            return SG_OPTS_USAGE;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const sg_opt_t *opt = find(o->spec, name, len);
        if (opt == NULL) {
            fprintf(err_of(o), "%s: unknown option --%.*s (see %s --help)\n", prog, (int)len, name,
                    prog);
            return SG_OPTS_USAGE;
        }
        value = eq != NULL ? eq + 1 : NULL;
        if (value == NULL && opt->kind != SG_OPT_FLAG) {
            value = next_value(argc, argv, &i);
        }
        if (!set_option(o, opt, value, "command line")) {
            return SG_OPTS_USAGE;
        }
    }
    return SG_OPTS_RUN;
}

static void usage_line(FILE *to, const char *name, const char *arg, const char *help)
{
    fprintf(to, "  --%-16s %-6s%s\n", name, arg, help);
}

void sg_opts_usage(const sg_opts_spec_t *spec, FILE *to)
{
    static const char *const args[] = {
        [SG_OPT_STR] = "VALUE", [SG_OPT_UINT] = "N", [SG_OPT_FLAG] = "", [SG_OPT_LIST] = "VALUE"};
    fprintf(to, "%soptions:\n", spec->synopsis != NULL ? spec->synopsis : "");
    for (size_t i = 0; i < spec->n_opts; i++) {
        usage_line(to, spec->opts[i].name, args[spec->opts[i].kind], spec->opts[i].help);
    }
    usage_line(to, "config", "FILE", "key = value lines with the option names above");
    usage_line(to, "help", "", "this text");
}

void sg_opts_init(sg_opts_t *o, const sg_opts_spec_t *spec, void *settings)
{
    *o = (sg_opts_t){.spec = spec, .settings = settings};
}

void sg_opts_fini(sg_opts_t *o)
{
    for (size_t i = 0; o->spec != NULL && i < o->spec->n_opts; i++) {
        if (o->spec->opts[i].kind == SG_OPT_LIST) {
            sg_opt_list_t *list = (void *)((char *)o->settings + o->spec->opts[i].offset);
            sg_free(list->items);
            *list = (sg_opt_list_t){0};
        }
    }
    for (size_t i = 0; i < o->n_texts; i++) {
        sg_free(o->texts[i]);
    }
    sg_free(o->texts);
    o->texts = NULL;
    o->n_texts = o->cap_texts = 0;
}
