/*
 * engine instances: creation and destruction of the per-saga state the transition
 * function works on.
 */
#include "orchestrator/engine/engine.h"

#include <stdio.h>
#include <string.h>

sg_inst_t *sg_inst_new(const sg_def_t *def, const char *id, const char *input_json, uint64_t now_ms)
{
    sg_inst_t *inst = sg_calloc(1, sizeof(*inst));
    if (inst == NULL) {
        return NULL;
    }
    snprintf(inst->id, sizeof(inst->id), "%s", id);
    inst->def = def;
    inst->status = SG_INST_RUNNING;
    inst->created_ms = inst->updated_ms = now_ms;
    inst->input = sg_strdup(input_json ? input_json : "{}");
    inst->cursor = sg_calloc(def->n_seqs, sizeof(*inst->cursor));
    inst->steps = sg_calloc(def->n_steps, sizeof(*inst->steps));
    if (inst->input == NULL || inst->cursor == NULL || inst->steps == NULL) {
        sg_inst_free(inst);
        return NULL;
    }
    return inst;
}

void sg_inst_free(sg_inst_t *inst)
{
    if (inst == NULL) {
        return;
    }
    for (size_t i = 0; inst->steps != NULL && i < inst->def->n_steps; i++) {
        sg_free(inst->steps[i].output);
        sg_free(inst->steps[i].error_code);
        sg_free(inst->steps[i].error_msg);
    }
    sg_free(inst->steps);
    sg_free(inst->cursor);
    sg_jqrt_ctx_free(inst->jqctx);
    sg_free(inst->input);
    sg_free(inst);
}
