/*
 * dsl internals shared by the loader (load.c), the rule checks (rules.c) and the
 * expression checks (expr.c). Never included from outside orchestrator/dsl/.
 */
#ifndef SG_DSL_INT_H
#define SG_DSL_INT_H

#include "orchestrator/dsl/dsl.h"
#include "orchestrator/yamltree/yamltree.h"

/* Where an expression sits, which decides what it may refer to. */
typedef enum {
    EXPR_STEP_INPUT,
    EXPR_STEP_WHEN,
    EXPR_STEP_OUTPUT,
    EXPR_COMP_INPUT,
    EXPR_WAIT_UNTIL,
    EXPR_EVENT_DATA,
    EXPR_EVENT_START_DATA
} expr_role_t;

typedef struct {
    const sg_expr_t *expr;
    const sg_ynode_t *node; /* the YAML scalar, for positions inside the text */
    expr_role_t role;
    const sg_step_t *owner; /* NULL for saga-level expressions */
} expr_ref_t;

/* A name written in the YAML that must resolve to a step once all steps are known. */
typedef struct {
    const char *name;
    sg_pos_t pos;
    const sg_step_t **slot; /* where the resolved step goes */
    const sg_step_t *from;  /* the step that jumps */
    const char *what;       /* "next" or "goto" */
} step_ref_t;

/* Mutable twin of sg_step_t used while building; the public view is the same memory. */
typedef struct {
    sg_step_t pub;
    bool retry_attempts_set; /* the step's own retry gave max_attempts */
    bool kind_invalid;       /* its kind or compensate was reported broken: no class checks */
    const sg_ynode_t *node;
    const sg_ynode_t *compensate_node;
} step_build_t;

typedef struct {
    sg_arena_t *arena;
    sg_diags_t *diags;
    const sg_dsl_opts_t *opts;
    sg_def_t *def;
    bool nomem;
    /* every step, in document order */
    step_build_t **steps;
    size_t n_steps, cap_steps;
    sg_seq_t **seqs;
    size_t n_seqs, cap_seqs;
    expr_ref_t *exprs;
    size_t n_exprs, cap_exprs;
    step_ref_t *refs;
    size_t n_refs, cap_refs;
    bool pivot_unknown; /* a pivot key was broken: the step order rules cannot be judged */
    uint64_t default_timeout_ms;
    /* where default_timeout_ms came from, for heartbeat messages: "defaults.timeout" or
     * "the built-in default"; NULL when defaults.timeout was invalid (nothing to compare) */
    const char *default_timeout_src;
    sg_retry_t default_retry;
    sg_retry_t default_comp_retry;
} ld_t;

void dsl__error(ld_t *ld, sg_pos_t pos, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Grows a vector of elem-sized items held in *items; false on OOM (recorded in ld). */
bool dsl__grow(ld_t *ld, void **items, size_t *cap, size_t count, size_t elem);
/* "did you mean \"<closest step id>\"?" written into hint, or NULL when none is close. */
const char *dsl__step_hint(const ld_t *ld, const char *name, char *hint, size_t len);
/* Looks a step up by id among the steps loaded so far. */
step_build_t *dsl__find_step(const ld_t *ld, const char *id);

/* values.c: the YAML -> typed value readers shared by the loader. Each reports its own
 * located error and returns false (or NULL) when the value is wrong. */
void *dsl__alloc(ld_t *ld, size_t n);
const char *dsl__str(ld_t *ld, const sg_ynode_t *n);
bool dsl__key_is(const sg_ynode_t *k, const char *name);
bool dsl__in_list(const sg_ynode_t *k, const char *const *names, size_t n);
void dsl__check_keys(ld_t *ld, const sg_ynode_t *map, const char *where, const char *const *allowed,
                     size_t n);
bool dsl__has_typo_of(const sg_ynode_t *map, const char *key);
const sg_ynode_t *dsl__require(ld_t *ld, const sg_ynode_t *map, const char *key, const char *where);
bool dsl__expect_kind(ld_t *ld, const sg_ynode_t *n, sg_ynode_kind_t kind, const char *what);
const char *dsl__get_string(ld_t *ld, const sg_ynode_t *n, const char *what);
bool dsl__get_int(ld_t *ld, const sg_ynode_t *n, const char *what, int64_t min, int64_t max,
                  int64_t *out);
bool dsl__get_number(ld_t *ld, const sg_ynode_t *n, const char *what, double min, double max,
                     double *out);
bool dsl__get_bool(ld_t *ld, const sg_ynode_t *n, const char *what, bool *out);
bool dsl__get_duration(ld_t *ld, const sg_ynode_t *n, const char *what, uint64_t *out);
bool dsl__get_timeout(ld_t *ld, const sg_ynode_t *n, uint64_t *out);
bool dsl__matches(const char *s, bool (*first)(char), bool (*rest)(char), size_t max);
bool dsl__is_lower(char c);
bool dsl__is_id_first(char c);
bool dsl__is_id_rest(char c);
bool dsl__is_name_rest(char c);
bool dsl__valid_activity(const char *s);
bool dsl__valid_event_type(const char *s);

/* schema.c: input.schema -> cJSON + compiled validator, errors at YAML positions. */
void dsl__load_input(ld_t *ld, const sg_ynode_t *n);

/* rules.c: step classes, the pivot rule, control flow, reachability. */
void dsl__check_structure(ld_t *ld);
/* expr.c: jq syntax, names and step references of every recorded expression. */
void dsl__check_exprs(ld_t *ld);

#endif
