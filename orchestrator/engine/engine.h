/*
 * engine: the saga semantics as a pure transition function.
 *
 *   sg_engine_apply(definition, instance, event, now, random) -> instance', effects
 *
 * Events: start, activity result, timer fired, cancel, operator retry. Effects: tasks to
 * dispatch, timers to schedule, domain events to emit, history entries (the audit
 * trail), and whether the instance finished. The engine does no I/O, reads no clock
 * and draws no random numbers: `now` and `random` come in as inputs, so every
 * behaviour is unit-testable and replayable. The driver persists the new state and the
 * effects in one transaction before acting on any of them.
 *
 * The only state it keeps besides the instance is a cache of compiled jq programs
 * (sg_jqrt_t), which does not change results.
 *
 * Thread: an instance and its jq runtime belong to one thread at a time (the engine
 * thread); definitions are immutable and shared.
 */
#ifndef SG_ENGINE_H
#define SG_ENGINE_H

#include "orchestrator/dsl/dsl.h"
#include "orchestrator/jqrt/jqrt.h"

/* ---- instance state ---- */

#define SG_INST_STATUS_LIST(X)              \
    X(SG_INST_RUNNING, "RUNNING")           \
    X(SG_INST_COMPENSATING, "COMPENSATING") \
    X(SG_INST_COMPLETED, "COMPLETED")       \
    X(SG_INST_COMPENSATED, "COMPENSATED")   \
    X(SG_INST_FAILED, "FAILED")             \
    X(SG_INST_COMPENSATION_FAILED, "COMPENSATION_FAILED")

typedef enum {
#define SG_X(name, text) name,
    SG_INST_STATUS_LIST(SG_X)
#undef SG_X
        SG_INST__COUNT
} sg_inst_status_t;

/* Why an instance compensates or failed; CANCELLED is a reason, not a status. */
#define SG_REASON_LIST(X)                   \
    X(SG_REASON_NONE, "")                   \
    X(SG_REASON_STEP_FAILED, "step_failed") \
    X(SG_REASON_CANCELLED, "cancelled")     \
    X(SG_REASON_DEADLINE, "deadline")       \
    X(SG_REASON_INPUT, "invalid_mapping")

typedef enum {
#define SG_X(name, text) name,
    SG_REASON_LIST(SG_X)
#undef SG_X
        SG_REASON__COUNT
} sg_reason_t;

/* Forward progress of one step. */
#define SG_STEP_STATUS_LIST(X)                                                        \
    X(SG_SS_PENDING, "pending")                                                       \
    X(SG_SS_RUNNING, "running")  /* a task is in flight (or a parallel group runs) */ \
    X(SG_SS_BACKOFF, "retrying") /* waiting before the next attempt */                \
    X(SG_SS_WAITING, "waiting")  /* a wait step's timer */                            \
    X(SG_SS_DONE, "done")                                                             \
    X(SG_SS_FAILED, "failed")                                                         \
    X(SG_SS_SKIPPED, "skipped")

typedef enum {
#define SG_X(name, text) name,
    SG_STEP_STATUS_LIST(SG_X)
#undef SG_X
        SG_SS__COUNT
} sg_step_status_t;

/* Progress of a step's compensation. */
#define SG_COMP_STATUS_LIST(X)   \
    X(SG_CS_NONE, "none")        \
    X(SG_CS_PENDING, "pending")  \
    X(SG_CS_RUNNING, "running")  \
    X(SG_CS_BACKOFF, "retrying") \
    X(SG_CS_DONE, "compensated") \
    X(SG_CS_FAILED, "compensation_failed")

typedef enum {
#define SG_X(name, text) name,
    SG_COMP_STATUS_LIST(SG_X)
#undef SG_X
        SG_CS__COUNT
} sg_comp_status_t;

typedef struct {
    sg_step_status_t status;
    sg_comp_status_t comp;
    bool maybe_effect;     /* an attempt timed out: its effect may have happened */
    uint32_t attempt;      /* forward attempts made so far (1 = first try) */
    uint32_t comp_attempt; /* compensation attempts made so far */
    uint32_t attempt_base; /* attempt at the last operator retry: policies count from here */
    uint32_t comp_attempt_base;
    uint32_t done_seq; /* completion order (1, 2, ...): compensations run in reverse */
    uint64_t timer_at; /* when the pending timeout/backoff/wait of this step fires; 0 none */
    /* The running attempt's (forward or compensation) own timeout, which heartbeats
     * never extend: timer_at <= lease_end while it runs; 0 when nothing runs. */
    uint64_t lease_end;
    uint64_t started_ms, finished_ms;
    char *output;     /* JSON text of the (mapped) output, owned; NULL until done */
    char *error_code; /* last error, owned */
    char *error_msg;
} sg_step_state_t;

typedef struct {
    char id[32]; /* 26-character ULID: sortable by creation time */
    const sg_def_t *def;
    sg_inst_status_t status;
    sg_reason_t reason;
    char *input; /* JSON text, owned */
    uint64_t created_ms, updated_ms, deadline_ms;
    uint32_t done_counter;  /* last done_seq handed out */
    uint32_t *cursor;       /* per sequence (def->seqs): index of the current step */
    sg_step_state_t *steps; /* per step (def->all_steps) */
    uint64_t version;       /* bumped by every applied event */
    uint64_t hist_seq;      /* history entries written so far (the driver numbers them) */
    sg_jqrt_ctx_t *jqctx;   /* parsed jq context, built on first use; a cache only */
} sg_inst_t;

/* Creates a fresh instance of def (status RUNNING, nothing started yet). input is copied.
 * Returns NULL on OOM. */
sg_inst_t *sg_inst_new(const sg_def_t *def, const char *id, const char *input_json,
                       uint64_t now_ms);
void sg_inst_free(sg_inst_t *inst);

/*
 * Persistence of the per-step state: a compact JSON document (cursors, counters, and
 * for each step status, attempts, timer, times, output, last error). Outputs are stored
 * as the raw JSON they are. sg_inst_state_json returns an owned string, NULL on OOM.
 */
char *sg_inst_state_json(const sg_inst_t *inst);
/* Rebuilds an instance of def from its stored parts. SG_ERR_INVALID (with a message in
 * err) when the state does not fit the definition or is not what sg_inst_state_json
 * wrote: rows from the database are validated like any outside input. */
sg_err_t sg_inst_restore(const sg_def_t *def, const char *id, const char *input,
                         const char *state_json, sg_inst_t **out, char *err, size_t errlen);

const char *sg_inst_status_name(sg_inst_status_t st);
bool sg_inst_status_parse(const char *name, sg_inst_status_t *out);
bool sg_reason_parse(const char *name, sg_reason_t *out);
const char *sg_reason_name(sg_reason_t r);
const char *sg_step_status_name(sg_step_status_t st);
const char *sg_comp_status_name(sg_comp_status_t st);
bool sg_inst_terminal(const sg_inst_t *inst);

/* ---- events ---- */

typedef enum { SG_EV_START, SG_EV_RESULT, SG_EV_TIMER, SG_EV_CANCEL, SG_EV_RETRY } sg_event_kind_t;

typedef enum { SG_OUTCOME_OK, SG_OUTCOME_RETRYABLE, SG_OUTCOME_FATAL } sg_outcome_t;

typedef enum {
    SG_TIMER_TIMEOUT, /* an attempt ran out of time */
    SG_TIMER_BACKOFF, /* the pause before a retry is over */
    SG_TIMER_WAIT,    /* a wait step is over */
    SG_TIMER_DEADLINE /* the saga's deadline */
} sg_timer_kind_t;

typedef struct {
    sg_event_kind_t kind;
    uint32_t step;     /* RESULT, TIMER (not DEADLINE): index in def->all_steps */
    uint32_t attempt;  /* RESULT, TIMER: the attempt it belongs to */
    bool compensation; /* RESULT, TIMER: of the step's compensation */
    sg_timer_kind_t timer;
    sg_outcome_t outcome;
    const char *output;        /* RESULT ok: JSON text */
    const char *error_code;    /* RESULT failed */
    const char *error_message; /* RESULT failed */
} sg_event_t;

/* ---- effects ---- */

typedef enum { SG_CMD_DISPATCH, SG_CMD_TIMER, SG_CMD_EMIT } sg_cmd_kind_t;

typedef struct {
    sg_cmd_kind_t kind;
    uint32_t step;
    uint32_t attempt;
    bool compensation;
    sg_timer_kind_t timer;
    const char *name; /* DISPATCH: activity ("queue.op"); EMIT: event type (owned by def) */
    char *payload;    /* DISPATCH: task input JSON; EMIT: event payload JSON (owned) */
    uint64_t at_ms;   /* DISPATCH: deadline of the attempt; TIMER: when it fires */
} sg_cmd_t;

/* One audit-trail entry: what happened, to which step and attempt, with details. */
typedef struct {
    const char *type; /* static string, e.g. "step_completed" */
    int32_t step;     /* -1 for the saga itself */
    uint32_t attempt;
    char *detail; /* JSON object text or NULL (owned) */
} sg_hist_t;

typedef struct {
    sg_cmd_t *cmds;
    size_t n_cmds, cap_cmds;
    sg_hist_t *hist;
    size_t n_hist, cap_hist;
    bool finished; /* the instance reached a terminal status */
    bool nomem;
} sg_effects_t;

void sg_effects_init(sg_effects_t *fx);
void sg_effects_reset(sg_effects_t *fx); /* frees contents, keeps capacity */
void sg_effects_fini(sg_effects_t *fx);

/* ---- the transition ---- */

/*
 * Applies ev to inst at time now_ms; random is 64 fresh random bits (backoff jitter).
 * Appends what must happen to fx. Returns:
 *   SG_OK           the event was applied (or recorded as stale and ignored)
 *   SG_ERR_STATE    the event does not apply now (cancel after the pivot, retry of a
 *                   running instance, ...); inst is unchanged and fx holds nothing
 *   SG_ERR_NOMEM    out of memory; inst may be partially changed: reload it
 */
sg_err_t sg_engine_apply(sg_jqrt_t *jq, sg_inst_t *inst, const sg_event_t *ev, uint64_t now_ms,
                         uint64_t random, sg_effects_t *fx);

/*
 * A heartbeat of a running attempt (see sg_task_t.heartbeat_ms) at now_ms. When that
 * attempt still runs and its call has a heartbeat timeout, moves the step's timeout to
 * min(now_ms + heartbeat, lease_end), stores it in timer_at and *timeout_at, and returns
 * true: the driver re-arms the attempt's timeout there (a timer whose time is no longer
 * timer_at is stale). Otherwise changes nothing and returns false: a stale attempt or
 * one that ended, no heartbeat configured (or not an activity step), a finished
 * instance, or a heartbeat too late (now_ms >= timer_at: the timeout already passed and
 * its timer decides). Pure: no effects, no history (heartbeats are too many for the
 * audit trail), version unchanged. The thread that owns inst.
 */
bool sg_engine_heartbeat(sg_inst_t *inst, uint32_t step, uint32_t attempt, bool compensation,
                         uint64_t now_ms, uint64_t *timeout_at);

/*
 * Why the pending timeout of step's running attempt (forward or compensation) fires:
 * "saga.heartbeat_timeout" when a heartbeat set it before lease_end (no further
 * heartbeat came in time), else "saga.timeout" (the attempt's own timeout). *msg gets
 * one static line for people. Both are retryable timeouts: the effect may have happened.
 * Call it before the timeout is applied (sg_engine_apply clears timer_at).
 */
const char *sg_engine_timeout_code(const sg_inst_t *inst, uint32_t step, const char **msg);

/* Backoff before attempt `next_attempt` (>= 2) under policy r, with jitter from random. */
uint64_t sg_engine_backoff_ms(const sg_retry_t *r, uint32_t next_attempt, uint64_t random);

#endif
