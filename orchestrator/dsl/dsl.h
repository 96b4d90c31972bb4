/*
 * dsl: the saga definition language. Loads a workflow YAML file, checks everything
 * that can be checked before a saga runs (types, unknown keys, durations, jq syntax,
 * step references, Richardson's step order, reachability), and compiles it into an
 * immutable model that the engine and the visualizer share.
 *
 * The model is a plain tree of const structs: readers walk it directly. It is built
 * once, never changed, and may be read from any thread. The dsl module must never run
 * a saga, touch a database or print: it returns located diagnostics and lets the
 * caller report them.
 */
#ifndef SG_DSL_H
#define SG_DSL_H

#include "orchestrator/base/base.h"

typedef struct sg_def sg_def_t;
typedef struct sg_step sg_step_t;

/* A jq expression from the YAML, with its position. text == NULL means absent. */
typedef struct {
    const char *text;
    sg_pos_t pos;
} sg_expr_t;

typedef enum { SG_JITTER_NONE, SG_JITTER_FULL, SG_JITTER_EQUAL } sg_jitter_t;

/* Retry policy. max_attempts counts the first try; 0 means unlimited. */
typedef struct {
    uint32_t max_attempts;
    uint64_t initial_ms;
    double multiplier;
    uint64_t max_delay_ms;
    sg_jitter_t jitter;
    const char *const *non_retryable; /* error codes that fail at once */
    size_t n_non_retryable;
} sg_retry_t;

/* The shortest `heartbeat:` accepted. */
#define SG_HEARTBEAT_MIN_MS 100u

/* A call of an activity: the forward action of a step, or its compensation. */
typedef struct {
    const char *activity;  /* "queue.operation" */
    const char *queue;     /* the part before the first '.' */
    sg_expr_t input;       /* jq over the saga context; absent = the whole saga input */
    uint64_t timeout_ms;   /* an attempt fails after it, heartbeats or not */
    uint64_t heartbeat_ms; /* `heartbeat:` lease: after its first heartbeat, a running
                              attempt times out when the next one does not come within
                              this; 0 = none; always < timeout_ms (checked at load) */
    sg_retry_t retry;
    sg_pos_t pos;
} sg_call_t;

typedef enum { SG_STEP_ACTIVITY, SG_STEP_PARALLEL, SG_STEP_WAIT } sg_step_kind_t;

/*
 * Richardson's classes. Compensatable steps can be undone; the pivot is the point of no
 * return; retriable steps come after it and are retried until they succeed. Waits and
 * parallel groups are NEUTRAL themselves (a group's branches hold classed steps).
 */
typedef enum {
    SG_CLASS_COMPENSATABLE,
    SG_CLASS_PIVOT,
    SG_CLASS_RETRIABLE,
    SG_CLASS_NEUTRAL
} sg_step_class_t;

typedef enum { SG_ROUTE_COMPENSATE, SG_ROUTE_FAIL, SG_ROUTE_GOTO } sg_route_action_t;

/* on_error: what to do when the step fails with one of these codes ("*" = any). */
typedef struct {
    const char *const *codes;
    size_t n_codes;
    sg_route_action_t action;
    const sg_step_t *target; /* for SG_ROUTE_GOTO: a later step of the same sequence */
    sg_pos_t pos;
} sg_route_t;

/* A sequence of steps: the saga body, or one branch of a parallel group. */
typedef struct {
    const char *id; /* branch id; "main" for the saga body */
    uint32_t no;    /* position in sg_def_t.seqs; the body is 0 */
    const sg_step_t *const *steps;
    size_t n_steps;
    sg_pos_t pos;
} sg_seq_t;

struct sg_step {
    const char *id;
    sg_pos_t pos;
    uint32_t index;     /* position in sg_def_t.all_steps (document order, depth first) */
    uint32_t seq_index; /* position within its own sequence */
    sg_step_kind_t kind;
    sg_step_class_t cls;
    const char *description;
    sg_expr_t when; /* skip the step when this is false */
    /* SG_STEP_ACTIVITY */
    sg_call_t call;
    sg_expr_t output;            /* jq applied to the activity's result; absent = as is */
    const sg_call_t *compensate; /* NULL: nothing to undo */
    bool compensate_none;        /* the YAML said `compensate: none` */
    /* SG_STEP_WAIT: a fixed duration or a jq timestamp */
    uint64_t wait_ms;
    sg_expr_t wait_until;
    /* SG_STEP_PARALLEL */
    const sg_seq_t *branches;
    size_t n_branches;
    /* control flow within its sequence */
    const sg_route_t *routes;
    size_t n_routes;
    const sg_step_t *next;  /* explicit `next:`; NULL = the following step */
    bool end;               /* `end: true`: the sequence ends after this step */
    const sg_seq_t *seq;    /* the sequence this step belongs to */
    const sg_step_t *group; /* the parallel group holding this step's branch, or NULL */
};

typedef enum {
    SG_EVENT_ON_START,
    SG_EVENT_ON_COMPLETE,
    SG_EVENT_ON_COMPENSATED,
    SG_EVENT_ON_FAILED,
    SG_EVENT__COUNT
} sg_event_when_t;

/* A domain event the saga publishes, e.g. order.created, with an optional jq payload. */
typedef struct {
    const char *type;
    sg_expr_t data;
    sg_pos_t pos;
} sg_event_spec_t;

struct sg_def {
    const char *name;
    int64_t version;
    const char *description;
    const char *path;   /* file it came from, for messages */
    char sha256[65];    /* of the source bytes */
    const char *source; /* the YAML text, NUL-terminated */
    size_t source_len;
    struct cJSON *input_schema;  /* NULL: any input; borrowed-only for readers */
    const void *input_validator; /* compiled schema (sg_jsonschema_t), NULL when none */
    uint64_t timeout_ms;         /* whole-saga deadline; 0 = none */
    sg_seq_t body;
    const sg_step_t *const *all_steps; /* every step, document order, depth first */
    size_t n_steps;
    const sg_seq_t *const *seqs; /* the body and every branch, document order */
    size_t n_seqs;
    const sg_step_t *pivot; /* NULL if there is none */
    const sg_event_spec_t *events[SG_EVENT__COUNT];
    size_t n_events[SG_EVENT__COUNT];
};

/* Options of a load. */
typedef struct {
    /* Also compile every jq expression with libjq itself (~13 ms each) and report its
     * message. The fast built-in checker catches the same errors in practice; tools
     * that check a few files (sagactl validate) turn this on, the daemon does not. */
    bool verify_jq;
    size_t max_errors; /* 0 = SG_DIAGS_DEFAULT_CAP */
} sg_dsl_opts_t;

/*
 * Loads and checks one definition from buf[0..len). path is used in messages only.
 * Returns SG_OK with *out set (free with sg_def_free), or SG_ERR_INVALID/SG_ERR_LIMIT with
 * every problem found (up to the cap) in diags, sorted by position, or SG_ERR_NOMEM.
 * Any thread; no global state except libjq's when verify_jq is set.
 */
sg_err_t sg_def_load(const char *path, const char *buf, size_t len, const sg_dsl_opts_t *opts,
                     sg_def_t **out, sg_diags_t *diags);
/* Reads the file at path and loads it; I/O errors are reported as a diagnostic at 0:0. */
sg_err_t sg_def_load_file(const char *path, const sg_dsl_opts_t *opts, sg_def_t **out,
                          sg_diags_t *diags);
void sg_def_free(sg_def_t *def);

/* The step with this id, or NULL. */
const sg_step_t *sg_def_step(const sg_def_t *def, const char *id);

const char *sg_step_class_name(sg_step_class_t cls);
const char *sg_step_kind_name(sg_step_kind_t kind);
const char *sg_event_when_name(sg_event_when_t when);

/*
 * Writes diagnostics gcc-style: "path:line:col: error: message" and an indented
 * "hint:" line, plus a "... and N more errors" line when some were dropped.
 */
void sg_diags_format(const sg_diags_t *diags, const char *path, sg_buf_t *out);

/*
 * The failure matrix: for each step that can fail, what happens (routes, and which
 * compensations run in which order). Human-readable, stable, golden-tested.
 */
void sg_def_failure_matrix(const sg_def_t *def, sg_buf_t *out);

/* Sequences longer than this are accepted but not analysed step by step in plans. */
#define SG_PLAN_MAX_SEQ 1024

/*
 * The compensation plan if `failed` fails after its retries: the steps whose
 * compensations run, in order (reverse completion order). maybe[i] is true when the
 * step may not have run (a `when`, another branch, or a path that can skip it).
 * Writes at most cap entries and returns the count.
 */
size_t sg_def_compensation_plan(const sg_def_t *def, const sg_step_t *failed,
                                const sg_step_t **steps, bool *maybe, size_t cap);

#endif
