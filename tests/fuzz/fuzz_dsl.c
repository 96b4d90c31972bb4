/*
 * Fuzz target for the definition loader: any bytes must give either a definition or
 * located diagnostics, never a crash, a leak or unbounded time. When a definition
 * loads, the failure matrix and the graph of it must render too.
 */
#include "orchestrator/dsl/dsl.h"
#include "visualize/visualize.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sg_diags_t diags;
    sg_diags_init(&diags, SG_DIAGS_DEFAULT_CAP);
    sg_def_t *def = NULL;
    sg_err_t rc = sg_def_load("fuzz.yaml", (const char *)data, size, NULL, &def, &diags);
    sg_buf_t out;
    sg_buf_init(&out);
    if (rc == SG_OK) {
        if (def == NULL || diags.count != 0) {
            __builtin_trap();
        }
        sg_def_failure_matrix(def, &out);
        sg_viz_dot(def, NULL, &out);
    } else {
        if (def != NULL || (rc != SG_ERR_NOMEM && diags.count == 0)) {
            __builtin_trap(); /* a rejection must say why */
        }
        sg_diags_format(&diags, "fuzz.yaml", &out);
    }
    sg_buf_fini(&out);
    sg_def_free(def);
    sg_diags_fini(&diags);
    return 0;
}
