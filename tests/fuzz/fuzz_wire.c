/*
 * Fuzz target for the Kafka wire messages (schemas/saga.proto): any bytes from a topic
 * must decode into a valid ActivityTask / ActivityResult / ActivityHeartbeat or be refused
 * with a reason,
 * never a crash or a leak; what decodes must encode again and decode to the same ids.
 */
#include "orchestrator/transport/kafka.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const char *a, const char *b)
{
    if ((a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0)) {
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    sg_wire_task_t *t = NULL;
    if (sg_wire_task_decode(data, size, &t, err, sizeof(err)) == SG_OK) {
        uint8_t *buf = NULL;
        size_t len = 0;
        sg_wire_task_t *again = NULL;
        if (sg_wire_task_encode(&t->task, 0, &buf, &len) != SG_OK ||
            sg_wire_task_decode(buf, len, &again, err, sizeof(err)) != SG_OK) {
            __builtin_trap();
        }
        same(t->task.instance_id, again->task.instance_id);
        same(t->task.idempotency_key, again->task.idempotency_key);
        same(t->task.input, again->task.input);
        sg_wire_task_free(again);
        sg_free(buf);
        sg_wire_task_free(t);
    } else if (err[0] == '\0') {
        __builtin_trap(); /* a refusal must say why */
    }
    sg_wire_result_t *r = NULL;
    err[0] = '\0';
    if (sg_wire_result_decode(data, size, &r, err, sizeof(err)) == SG_OK) {
        uint8_t *buf = NULL;
        size_t len = 0;
        sg_wire_result_t *again = NULL;
        if (sg_wire_result_encode(&r->task, r->traceparent, &r->res, r->worker_id, 1, 2, &buf,
                                  &len) != SG_OK ||
            sg_wire_result_decode(buf, len, &again, err, sizeof(err)) != SG_OK ||
            again->res.outcome != r->res.outcome) {
            __builtin_trap();
        }
        same(r->res.output, again->res.output);
        same(r->res.error_code, again->res.error_code);
        sg_wire_result_free(again);
        sg_free(buf);
        sg_wire_result_free(r);
    } else if (err[0] == '\0') {
        __builtin_trap();
    }
    sg_wire_heartbeat_t *h = NULL;
    err[0] = '\0';
    if (sg_wire_heartbeat_decode(data, size, &h, err, sizeof(err)) == SG_OK) {
        sg_task_t task = {.instance_id = h->hb.instance_id,
                          .step_id = h->step_id,
                          .step = h->hb.step,
                          .attempt = h->hb.attempt,
                          .compensation = h->hb.compensation,
                          .idempotency_key = h->idempotency_key};
        uint8_t *buf = NULL;
        size_t len = 0;
        sg_wire_heartbeat_t *again = NULL;
        if (sg_wire_heartbeat_encode(&task, h->hb.worker_id, h->hb.details, h->hb.sent_ms, &buf,
                                     &len) != SG_OK ||
            sg_wire_heartbeat_decode(buf, len, &again, err, sizeof(err)) != SG_OK ||
            again->hb.attempt != h->hb.attempt || again->hb.sent_ms != h->hb.sent_ms) {
            __builtin_trap();
        }
        same(h->hb.instance_id, again->hb.instance_id);
        same(h->hb.worker_id, again->hb.worker_id);
        same(h->hb.details, again->hb.details);
        sg_wire_heartbeat_free(again);
        sg_free(buf);
        sg_wire_heartbeat_free(h);
    } else if (err[0] == '\0') {
        __builtin_trap();
    }
    return 0;
}
