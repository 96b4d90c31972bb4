/*
 * options: a daemon's settings from one table. Each option has one name, used as a flag
 * (--name VALUE, --name=VALUE) and as a key of the config files (--config FILE: `name =
 * value` lines, '#' comments), and --help is printed from the same table, so that help,
 * flags and config keys cannot drift apart. sagad and saga-worker both use it.
 *
 * Config files are read first, wherever --config stands; flags then win over them.
 * Errors go to spec->err as "PROG: WHERE: what" (WHERE is "command line" or FILE:LINE).
 *
 * It must never exit the process, keep global state, or check what a value means beyond
 * its kind: the daemon checks its settings afterwards.
 */
#ifndef SG_OPTIONS_H
#define SG_OPTIONS_H

#include "orchestrator/base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Numbers (SG_OPT_UINT) go from 1 to this. */
#define SG_OPT_UINT_MAX 4096u

typedef enum {
    SG_OPT_STR,  /* const char *: the value as given */
    SG_OPT_UINT, /* unsigned: 1 .. SG_OPT_UINT_MAX */
    SG_OPT_FLAG, /* bool: --name alone (true) or --name=true|false|1|0; in a file, a value */
    SG_OPT_LIST, /* sg_opt_list_t: every value, in order (files first); the option repeats */
} sg_opt_kind_t;

/* The field of an SG_OPT_LIST option; items point at the values (see sg_opts_fini). */
typedef struct {
    const char **items;
    size_t n;
} sg_opt_list_t;

/* One option: its name (without "--"), kind, the offset of its field in the settings
 * struct (offsetof) and one line of help. */
typedef struct {
    const char *name;
    sg_opt_kind_t kind;
    size_t offset;
    const char *help;
} sg_opt_t;

typedef struct {
    const char *prog;     /* "sagad": starts every message, and in "see sagad --help" */
    const char *synopsis; /* printed by --help before "options:" (ends with a blank line) */
    const sg_opt_t *opts;
    size_t n_opts;
    FILE *out; /* --help; NULL = stdout */
    FILE *err; /* errors; NULL = stderr */
} sg_opts_spec_t;

/* A parse in progress; caller-allocated, _init/_fini. */
typedef struct {
    const sg_opts_spec_t *spec;
    void *settings;
    char **texts; /* config files read: STR and LIST values point into them */
    size_t n_texts, cap_texts;
} sg_opts_t;

typedef enum {
    SG_OPTS_RUN = 0,   /* settings set: go on */
    SG_OPTS_HELP = 1,  /* --help or -h: help printed, exit 0 */
    SG_OPTS_USAGE = 2, /* bad flags or config file: message printed, exit 2 */
} sg_opts_rc_t;

/* Starts a parse that writes into settings (the struct the offsets of spec refer to).
 * spec and settings must outlive o. */
void sg_opts_init(sg_opts_t *o, const sg_opts_spec_t *spec, void *settings);

/*
 * Applies argv[1..argc): first every --config FILE, in order, then every flag, in order
 * (a later one wins; LIST options append). Stops at the first error, or at --help/-h
 * (which prints the help to spec->out). STR values point into argv or into a config file
 * kept by o: they stay valid until sg_opts_fini. Any thread; one parse at a time per o.
 */
sg_opts_rc_t sg_opts_parse(sg_opts_t *o, int argc, char **argv);

/* Applies one config file (as --config does). False after printing "PROG: FILE:LINE:
 * ..." (or "cannot read config file FILE") to spec->err. */
bool sg_opts_read_config(sg_opts_t *o, const char *path);

/* The help: spec->synopsis, "options:", one line per option ("--name  VALUE|N  help"),
 * then --config and --help. */
void sg_opts_usage(const sg_opts_spec_t *spec, FILE *to);

/* Frees the config texts and the arrays of LIST options (settings' STR and LIST values
 * that came from a file are invalid afterwards). o may be zeroed. */
void sg_opts_fini(sg_opts_t *o);

#endif
