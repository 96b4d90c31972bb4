/*
 * Fuzz target for the instance-state reader (engine/persist.c): rows read back from
 * the database are outside input too. Any bytes must be refused cleanly or give an
 * instance that serializes again and reads back to the same text.
 */
#include "orchestrator/engine/engine.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char yaml[] = "saga: f\nversion: 1\nsteps:\n"
                           "  - {id: a, activity: q.a, compensate: {activity: q.u}}\n"
                           "  - id: g\n    parallel:\n"
                           "      - {id: l, steps: [{id: b, activity: q.b, compensate: none}]}\n"
                           "  - {id: c, activity: q.c, pivot: true}\n";

static sg_def_t *def;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (def == NULL) {
        sg_diags_t d;
        sg_diags_init(&d, 4);
        if (sg_def_load("f.yaml", yaml, strlen(yaml), NULL, &def, &d) != SG_OK) {
            abort();
        }
        sg_diags_fini(&d);
    }
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    sg_inst_t *inst = NULL;
    char err[160];
    if (sg_inst_restore(def, "01FUZZ", "{}", text, &inst, err, sizeof(err)) == SG_OK) {
        char *again = sg_inst_state_json(inst);
        sg_inst_t *second = NULL;
        if (again == NULL ||
            sg_inst_restore(def, "01FUZZ", "{}", again, &second, err, sizeof(err)) != SG_OK) {
            abort(); /* what we write must always read back */
        }
        char *third = sg_inst_state_json(second);
        if (third == NULL || strcmp(again, third) != 0) {
            abort();
        }
        sg_free(third);
        sg_inst_free(second);
        sg_free(again);
        sg_inst_free(inst);
    }
    free(text);
    return 0;
}
