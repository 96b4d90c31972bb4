/*
 * transport: the one static table of transports and the lookup by name.
 *
 * It must never hold mutable state or know any transport's internals.
 */
#include "orchestrator/transport/transport.h"

#include <string.h>

/* Defined in each transport's file; reached only through this table. */
extern const sg_transport_vt_t sg_transport_embedded;
extern const sg_transport_vt_t sg_transport_kafka;

static const sg_transport_vt_t *const transports[] = {
    &sg_transport_embedded,
    &sg_transport_kafka,
};

const sg_transport_vt_t *sg_transport_find(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < SG_ARRAY_LEN(transports); i++) {
        if (strcmp(transports[i]->name, name) == 0) {
            return transports[i];
        }
    }
    return NULL;
}
