/*
 * kafka wire: ActivityTask, ActivityResult and ActivityHeartbeat (schemas/saga.proto) to
 * and from the transport's sg_task_t / sg_task_result_t / sg_task_heartbeat_t.
 *
 * Everything decoded here came from a network and is checked before anyone sees it:
 * a malformed message is an error for the caller to count and skip, never a crash.
 * It must never accept an instance id the driver cannot hold (char[32]).
 */
#include "orchestrator/transport/kafka.h"

#include "schemas/saga.pb-c.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <string.h>

#define INSTANCE_ID_MAX 31u

/* protobuf-c allocates through sg_malloc, so tests can fail the Nth allocation. */
static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    return sg_malloc(size);
}

static void pb_free(void *data, void *ptr)
{
    (void)data;
    sg_free(ptr);
}

static ProtobufCAllocator pb_allocator = {
    .alloc = pb_alloc, .free = pb_free, .allocator_data = NULL};

/* protobuf-c packs proto3 strings from non-NULL pointers only. */
static char *str_or_empty(const char *s)
{
    return (char *)(s != NULL ? s : "");
}

void sg_wire_traceparent(const sg_task_t *task, char out[56])
{
    char trace[65], span[65];
    const char *id = task->instance_id != NULL ? task->instance_id : "";
    sg_sha256_hex(id, strlen(id), trace);
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "%s#%u",
                     task->idempotency_key != NULL ? task->idempotency_key : id, task->attempt);
    sg_sha256_hex(buf, n > 0 && (size_t)n < sizeof(buf) ? (size_t)n : strlen(buf), span);
    /* An all-zero id is invalid in W3C trace context; a SHA-256 prefix of zeros is not
     * worth a branch in practice, but keep the output valid anyway. */
    if (strspn(trace, "0") >= 32) {
        trace[31] = '1';
    }
    if (strspn(span, "0") >= 16) {
        span[15] = '1';
    }
    snprintf(out, 56, "00-%.32s-%.16s-01", trace, span);
}

sg_err_t sg_wire_task_encode(const sg_task_t *task, uint64_t now_ms, uint8_t **out, size_t *len)
{
    if (task == NULL || task->instance_id == NULL || task->step_id == NULL ||
        task->activity == NULL || task->idempotency_key == NULL) {
        return SG_ERR_INVALID;
    }
    char tp[56];
    sg_wire_traceparent(task, tp);
    Sagad__Wire__ActivityTask m = SAGAD__WIRE__ACTIVITY_TASK__INIT;
    m.instance_id = str_or_empty(task->instance_id);
    m.step_id = str_or_empty(task->step_id);
    m.step_index = task->step;
    m.attempt = task->attempt;
    m.compensation = task->compensation;
    m.idempotency_key = str_or_empty(task->idempotency_key);
    m.activity = str_or_empty(task->activity);
    m.input.data = (uint8_t *)(task->input != NULL ? task->input : "");
    m.input.len = task->input != NULL ? strlen(task->input) : 0;
    m.deadline_ms = task->deadline_ms;
    m.correlation_id = str_or_empty(task->instance_id);
    m.traceparent = tp;
    m.dispatched_ms = now_ms;
    m.heartbeat_ms = task->heartbeat_ms;
    size_t n = sagad__wire__activity_task__get_packed_size(&m);
    uint8_t *buf = sg_malloc(n > 0 ? n : 1);
    if (buf == NULL) {
        return SG_ERR_NOMEM;
    }
    *len = sagad__wire__activity_task__pack(&m, buf);
    *out = buf;
    return SG_OK;
}

sg_err_t sg_wire_result_encode(const sg_task_t *task, const char *traceparent,
                               const sg_task_result_t *res, const char *worker_id,
                               uint64_t started_ms, uint64_t finished_ms, uint8_t **out,
                               size_t *len)
{
    if (task == NULL || res == NULL || task->instance_id == NULL || task->step_id == NULL) {
        return SG_ERR_INVALID;
    }
    char tp[56];
    if (traceparent == NULL) {
        sg_wire_traceparent(task, tp);
        traceparent = tp;
    }
    Sagad__Wire__ActivityResult m = SAGAD__WIRE__ACTIVITY_RESULT__INIT;
    m.instance_id = str_or_empty(task->instance_id);
    m.step_id = str_or_empty(task->step_id);
    m.step_index = task->step;
    m.attempt = task->attempt;
    m.compensation = task->compensation;
    m.idempotency_key = str_or_empty(task->idempotency_key);
    m.activity = str_or_empty(task->activity);
    switch (res->outcome) {
    case SG_TASK_OK:
        m.outcome = SAGAD__WIRE__OUTCOME__OUTCOME_OK;
        break;
    case SG_TASK_RETRYABLE:
        m.outcome = SAGAD__WIRE__OUTCOME__OUTCOME_RETRYABLE;
        break;
    default:
        m.outcome = SAGAD__WIRE__OUTCOME__OUTCOME_FATAL;
        break;
    }
    const char *output = res->outcome == SG_TASK_OK && res->output != NULL ? res->output : "";
    m.output.data = (uint8_t *)output;
    m.output.len = strlen(output);
    const char *code = sg_task_result_code(res);
    m.error_code = str_or_empty(code);
    m.error_message = str_or_empty(res->outcome != SG_TASK_OK ? res->error_message : NULL);
    m.worker_id = str_or_empty(worker_id);
    m.started_ms = started_ms;
    m.finished_ms = finished_ms;
    m.correlation_id = str_or_empty(task->instance_id);
    m.traceparent = str_or_empty(traceparent);
    size_t n = sagad__wire__activity_result__get_packed_size(&m);
    uint8_t *buf = sg_malloc(n > 0 ? n : 1);
    if (buf == NULL) {
        return SG_ERR_NOMEM;
    }
    *len = sagad__wire__activity_result__pack(&m, buf);
    *out = buf;
    return SG_OK;
}

/* ---- decoding ---- */

/* The identifying fields every task and result must carry; NULL when fine, else why. */
static const char *check_ids(const char *instance_id, const char *step_id, const char *key,
                             const char *activity, uint32_t attempt)
{
    size_t n = strlen(instance_id);
    if (n == 0 || n > INSTANCE_ID_MAX) {
        return "instance_id must have 1 to 31 characters";
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)instance_id[i];
        if (c <= ' ' || c >= 0x7f) {
            return "instance_id has a character outside printable ASCII";
        }
    }
    if (*step_id == '\0') {
        return "step_id is empty";
    }
    if (*key == '\0') {
        return "idempotency_key is empty";
    }
    if (*activity == '\0') {
        return "activity is empty";
    }
    if (attempt == 0) {
        return "attempt must be at least 1";
    }
    return NULL;
}

/* A NUL-terminated copy of bytes into dst (which has len + 1 bytes); false when the bytes
 * contain a NUL (not JSON text). */
static bool copy_text(char *dst, const ProtobufCBinaryData *b)
{
    if (b->len > 0 && memchr(b->data, '\0', b->len) != NULL) {
        return false;
    }
    if (b->len > 0) {
        memcpy(dst, b->data, b->len);
    }
    dst[b->len] = '\0';
    return true;
}

typedef struct {
    sg_wire_task_t pub; /* first: the public view */
    Sagad__Wire__ActivityTask *msg;
    char input[];
} task_box_t;

sg_err_t sg_wire_task_decode(const void *data, size_t len, sg_wire_task_t **out, char *err,
                             size_t errlen)
{
    Sagad__Wire__ActivityTask *m =
        sagad__wire__activity_task__unpack(&pb_allocator, len, (const uint8_t *)data);
    if (m == NULL) {
        snprintf(err, errlen, "not an ActivityTask message (%zu bytes)", len);
        return SG_ERR_INVALID;
    }
    const char *why =
        check_ids(m->instance_id, m->step_id, m->idempotency_key, m->activity, m->attempt);
    if (why != NULL) {
        snprintf(err, errlen, "ActivityTask: %s", why);
        sagad__wire__activity_task__free_unpacked(m, &pb_allocator);
        return SG_ERR_INVALID;
    }
    task_box_t *b = sg_malloc(sizeof(*b) + m->input.len + 1);
    if (b == NULL) {
        sagad__wire__activity_task__free_unpacked(m, &pb_allocator);
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    if (!copy_text(b->input, &m->input)) {
        snprintf(err, errlen, "ActivityTask: input has a NUL byte");
        sg_free(b);
        sagad__wire__activity_task__free_unpacked(m, &pb_allocator);
        return SG_ERR_INVALID;
    }
    b->msg = m;
    b->pub = (sg_wire_task_t){
        .task = {.instance_id = m->instance_id,
                 .step_id = m->step_id,
                 .step = m->step_index,
                 .attempt = m->attempt,
                 .compensation = m->compensation,
                 .activity = m->activity,
                 .input = b->input,
                 .idempotency_key = m->idempotency_key,
                 .deadline_ms = m->deadline_ms,
                 .heartbeat_ms = m->heartbeat_ms},
        .correlation_id = m->correlation_id,
        .traceparent = m->traceparent,
        .dispatched_ms = m->dispatched_ms,
    };
    *out = &b->pub;
    return SG_OK;
}

void sg_wire_task_free(sg_wire_task_t *w)
{
    if (w == NULL) {
        return;
    }
    task_box_t *b = (task_box_t *)(void *)w;
    sagad__wire__activity_task__free_unpacked(b->msg, &pb_allocator);
    sg_free(b);
}

typedef struct {
    sg_wire_result_t pub;
    Sagad__Wire__ActivityResult *msg;
    char output[];
} result_box_t;

sg_err_t sg_wire_result_decode(const void *data, size_t len, sg_wire_result_t **out, char *err,
                               size_t errlen)
{
    Sagad__Wire__ActivityResult *m =
        sagad__wire__activity_result__unpack(&pb_allocator, len, (const uint8_t *)data);
    if (m == NULL) {
        snprintf(err, errlen, "not an ActivityResult message (%zu bytes)", len);
        return SG_ERR_INVALID;
    }
    const char *why =
        check_ids(m->instance_id, m->step_id, m->idempotency_key, m->activity, m->attempt);
    sg_task_outcome_t o = SG_TASK_OK;
    switch (m->outcome) {
    case SAGAD__WIRE__OUTCOME__OUTCOME_OK:
        break;
    case SAGAD__WIRE__OUTCOME__OUTCOME_RETRYABLE:
        o = SG_TASK_RETRYABLE;
        break;
    case SAGAD__WIRE__OUTCOME__OUTCOME_FATAL:
        o = SG_TASK_FATAL;
        break;
    default:
        why = why != NULL ? why : "outcome is missing or unknown";
        break;
    }
    result_box_t *b = NULL;
    if (why == NULL) {
        b = sg_malloc(sizeof(*b) + m->output.len + 1);
        if (b == NULL) {
            sagad__wire__activity_result__free_unpacked(m, &pb_allocator);
            snprintf(err, errlen, "out of memory");
            return SG_ERR_NOMEM;
        }
        if (!copy_text(b->output, &m->output)) {
            why = "output has a NUL byte";
        }
    }
    if (why != NULL) {
        snprintf(err, errlen, "ActivityResult: %s", why);
        sg_free(b);
        sagad__wire__activity_result__free_unpacked(m, &pb_allocator);
        return SG_ERR_INVALID;
    }
    b->msg = m;
    b->pub = (sg_wire_result_t){
        .task = {.instance_id = m->instance_id,
                 .step_id = m->step_id,
                 .step = m->step_index,
                 .attempt = m->attempt,
                 .compensation = m->compensation,
                 .activity = m->activity,
                 .idempotency_key = m->idempotency_key},
        .res = {.outcome = o},
        .worker_id = m->worker_id,
        .traceparent = m->traceparent,
        .started_ms = m->started_ms,
        .finished_ms = m->finished_ms,
    };
    /* The result's strings point into the box; the caller never finis it. */
    if (o == SG_TASK_OK) {
        b->pub.res.output = m->output.len > 0 ? b->output : (char *)"null";
    } else {
        b->pub.res.error_code =
            *m->error_code != '\0' ? m->error_code : (char *)"saga.unspecified_error";
        b->pub.res.error_message = m->error_message;
    }
    *out = &b->pub;
    return SG_OK;
}

void sg_wire_result_free(sg_wire_result_t *w)
{
    if (w == NULL) {
        return;
    }
    result_box_t *b = (result_box_t *)(void *)w;
    sagad__wire__activity_result__free_unpacked(b->msg, &pb_allocator);
    sg_free(b);
}

/* ---- heartbeats ---- */

sg_err_t sg_wire_heartbeat_encode(const sg_task_t *task, const char *worker_id, const char *details,
                                  uint64_t sent_ms, uint8_t **out, size_t *len)
{
    if (task == NULL || task->instance_id == NULL || task->step_id == NULL) {
        return SG_ERR_INVALID;
    }
    char tp[56];
    sg_wire_traceparent(task, tp);
    Sagad__Wire__ActivityHeartbeat m = SAGAD__WIRE__ACTIVITY_HEARTBEAT__INIT;
    m.instance_id = str_or_empty(task->instance_id);
    m.step_id = str_or_empty(task->step_id);
    m.step_index = task->step;
    m.attempt = task->attempt;
    m.compensation = task->compensation;
    m.idempotency_key = str_or_empty(task->idempotency_key);
    m.worker_id = str_or_empty(worker_id);
    m.sent_ms = sent_ms;
    m.details.data = (uint8_t *)(details != NULL ? details : "");
    m.details.len = details != NULL ? strlen(details) : 0;
    m.traceparent = tp;
    size_t n = sagad__wire__activity_heartbeat__get_packed_size(&m);
    uint8_t *buf = sg_malloc(n > 0 ? n : 1);
    if (buf == NULL) {
        return SG_ERR_NOMEM;
    }
    *len = sagad__wire__activity_heartbeat__pack(&m, buf);
    *out = buf;
    return SG_OK;
}

typedef struct {
    sg_wire_heartbeat_t pub;
    Sagad__Wire__ActivityHeartbeat *msg;
    char details[];
} heartbeat_box_t;

/* Whether s (n bytes, NUL-terminated) is one JSON value. */
static bool json_text(const char *s, size_t n)
{
    cJSON *j = cJSON_ParseWithLengthOpts(s, n + 1, NULL, true);
    cJSON_Delete(j);
    return j != NULL;
}

sg_err_t sg_wire_heartbeat_decode(const void *data, size_t len, sg_wire_heartbeat_t **out,
                                  char *err, size_t errlen)
{
    Sagad__Wire__ActivityHeartbeat *m =
        sagad__wire__activity_heartbeat__unpack(&pb_allocator, len, (const uint8_t *)data);
    if (m == NULL) {
        snprintf(err, errlen, "not an ActivityHeartbeat message (%zu bytes)", len);
        return SG_ERR_INVALID;
    }
    /* A heartbeat names no activity: any non-empty text passes that check. */
    const char *why = check_ids(m->instance_id, m->step_id, m->idempotency_key, "-", m->attempt);
    size_t wlen = strlen(m->worker_id);
    for (size_t i = 0; why == NULL && i < wlen; i++) {
        unsigned char c = (unsigned char)m->worker_id[i];
        if (c < ' ' || c >= 0x7f || wlen > 255) {
            why = "worker_id must be at most 255 characters of printable ASCII";
        }
    }
    size_t dlen = m->details.len <= SG_WIRE_DETAILS_MAX ? m->details.len : 0;
    heartbeat_box_t *b = why == NULL ? sg_malloc(sizeof(*b) + dlen + 1) : NULL;
    if (why == NULL && b == NULL) {
        sagad__wire__activity_heartbeat__free_unpacked(m, &pb_allocator);
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    if (why != NULL) {
        snprintf(err, errlen, "ActivityHeartbeat: %s", why);
        sagad__wire__activity_heartbeat__free_unpacked(m, &pb_allocator);
        return SG_ERR_INVALID;
    }
    ProtobufCBinaryData d = {.len = dlen, .data = m->details.data};
    /* Progress is a nicety: details that are no JSON text are dropped, the lease is not. */
    bool has_details = dlen > 0 && copy_text(b->details, &d) && json_text(b->details, dlen);
    b->msg = m;
    b->pub = (sg_wire_heartbeat_t){
        .hb = {.instance_id = m->instance_id,
               .step = m->step_index,
               .attempt = m->attempt,
               .compensation = m->compensation,
               .worker_id = m->worker_id,
               .details = has_details ? b->details : NULL,
               .sent_ms = m->sent_ms},
        .step_id = m->step_id,
        .idempotency_key = m->idempotency_key,
        .traceparent = m->traceparent,
    };
    *out = &b->pub;
    return SG_OK;
}

void sg_wire_heartbeat_free(sg_wire_heartbeat_t *w)
{
    if (w == NULL) {
        return;
    }
    heartbeat_box_t *b = (heartbeat_box_t *)(void *)w;
    sagad__wire__activity_heartbeat__free_unpacked(b->msg, &pb_allocator);
    sg_free(b);
}
