/*
 * visualize: draws a saga definition, and optionally the live state of one instance,
 * as a Graphviz DOT graph (for `sagactl graph` and REST /v1/instances/{id}/graph), and
 * turns DOT into SVG by running the real Graphviz `dot` program.
 *
 * Drawing is a pure function of the model: the same definition and states always give
 * the same bytes (no pointers, no hash order), so the output can be golden-tested.
 * This module must never change the model, run a saga or touch the store; every string
 * that came from the YAML is escaped before it reaches DOT.
 *
 * Visual conventions (the docs copy them):
 *   - top to bottom; title "name vN"; a black "start" node, a green "COMPLETED" end,
 *     a red "COMPENSATED" end (where the undo chain leads) and, when some path fails
 *     without compensation, a dark red "FAILED" end. Events a saga emits are listed on
 *     the start/end nodes ("emits order.created").
 *   - forward path: solid dark edges. Activity steps are rounded boxes (id, activity,
 *     timeout and retry: "retry 3x 100ms×2 ≤30s" = 3 attempts in all, first backoff
 *     100ms, doubling, capped at 30s; "retry ∞" = unlimited; "no retry").
 *     Compensatable: blue border; PIVOT: amber double octagon with a "PIVOT" line;
 *     retriable: green border with a "retriable" line.
 *   - compensation: each compensation activity is its own dashed firebrick box
 *     ("↩ inventory.release") beside its step; dashed firebrick edges form the reverse
 *     chain to COMPENSATED (at run time only completed steps are undone). A dashed
 *     "fails" edge leads from every step that can fail to the compensation that runs
 *     first (the head of sg_def_compensation_plan, or the undo of the enclosing parallel
 *     group), and a short "times out" edge to the step's own compensation, which runs
 *     first when a timeout leaves the effect in doubt.
 *   - on_error routes: "on <codes>" edges: orange to a goto target, firebrick dashed
 *     to the compensation chain, red to FAILED. Post-pivot steps whose retries can run
 *     out get a red "fails" edge to FAILED.
 *   - `when`: a small diamond before the step; "when <expr>" edge into the step and a
 *     dotted "else skip" edge around it. `next`/`end` edges are labelled.
 *   - `wait`: a grey ellipse "◷ id" with the duration or "until <expr>".
 *   - parallel: a cluster per group holding a cluster per branch, between a fork bar
 *     and a join bar; its compensations form an "undo" fork/join of their own.
 *   - live state: fill colour per state (white pending, blue running, orange retrying
 *     with "retry n/m", green done, red failed, grey forward node + blue/purple/dark red
 *     compensation node for compensating/compensated/compensation failed, dotted grey
 *     skipped), plus a legend.
 */
#ifndef SG_VISUALIZE_H
#define SG_VISUALIZE_H

#include "orchestrator/base/base.h"
#include "orchestrator/dsl/dsl.h"
#include "orchestrator/engine/engine.h"

/* Per-step live state of an instance, for drawing its progress. */
typedef enum {
    SG_VIZ_PENDING,
    SG_VIZ_RUNNING,
    SG_VIZ_RETRYING,
    SG_VIZ_DONE,
    SG_VIZ_FAILED,
    SG_VIZ_COMPENSATING,
    SG_VIZ_COMPENSATED,
    SG_VIZ_COMPENSATION_FAILED,
    SG_VIZ_SKIPPED
} sg_viz_state_t;

/* attempt: the current (or last) attempt, 1-based, 0 = none yet; max_attempts: 0 means
 * unlimited. While compensating they describe the compensation's attempts. */
typedef struct {
    sg_viz_state_t state;
    uint32_t attempt;
    uint32_t max_attempts;
} sg_viz_step_t;

/* Name of a state ("PENDING", ...); never NULL. Any thread. */
const char *sg_viz_state_name(sg_viz_state_t state);

/*
 * The live state of every step of inst (visualize/live.c): out must hold
 * inst->def->n_steps entries, indexed like def->all_steps. Forward states come from the
 * step's status (waiting counts as running; a retry backoff is RETRYING with the attempt
 * that comes next); once a step's compensation is pending, running, done or failed it
 * shows COMPENSATING, COMPENSATED or COMPENSATION_FAILED with the compensation's
 * attempts. Attempts count from the last operator retry, as the retry policy does;
 * max_attempts is the policy's (0 = unlimited). Pure; any thread that may read inst.
 */
void sg_viz_live(const sg_inst_t *inst, sg_viz_step_t *out);

/*
 * Appends def drawn as Graphviz DOT to out. steps: NULL to draw the definition alone, or
 * an array of def->n_steps entries indexed by sg_step_t.index to colour an instance's
 * progress (borrowed for the call). Never fails except for memory: then out->oom is set.
 * Any thread; def is only read.
 */
void sg_viz_dot(const sg_def_t *def, const sg_viz_step_t *steps, sg_buf_t *out);

/*
 * Runs Graphviz `dot -Tsvg` (found through PATH with posix_spawnp, no shell) on
 * dot[0..len) and appends the SVG to out. Feeds stdin and drains stdout/stderr together
 * with poll(), so input and output of any size cannot deadlock; the whole run is
 * bounded by 10 s, after which dot is killed. The child is always reaped.
 * Returns:
 *   SG_OK            svg appended to out; errbuf set to "".
 *   SG_ERR_NOT_FOUND `dot` is not installed (not in PATH).
 *   SG_ERR_INVALID   dot rejected the input; errbuf holds dot's first error line
 *                    (e.g. "Error: <stdin>: syntax error in line 1 near 'x'").
 *   SG_ERR_LIMIT     dot ran longer than 10 s, or wrote more than 64 MB.
 *   SG_ERR_INTERNAL  dot died from a signal; SG_ERR_IO pipes/spawn failed;
 *                    SG_ERR_NOMEM out of memory.
 * On any error out is left as it was on entry. errbuf (may be NULL when errlen is 0)
 * always gets a NUL-terminated message.
 * Feed it only DOT made by sg_viz_dot: Graphviz reads files named in attributes such as
 * image= and shapefile=, so DOT from users would be a file-read hole.
 * Any thread but the engine's (it blocks up to 10 s). SIGPIPE is blocked in the calling
 * thread during the call and never delivered for our pipe. It waits for its own child
 * by pid: a SIGCHLD handler that reaps every child (waitpid(-1)) would race with it.
 */
sg_err_t sg_viz_svg(const char *dot, size_t len, sg_buf_t *out, char *errbuf, size_t errlen);

#endif
