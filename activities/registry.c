/*
 * activities registry: the one static table of activity modules, lookups into it, and
 * the result helpers every handler uses.
 *
 * It must never hold mutable state: transports in several threads (and processes)
 * read the table at the same time.
 */
#include "activities/activity.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* ---- the table: one line per module ---- */

/* Defined in each module's file; declared here rather than in the public header so
 * that nothing but this table can reach a module except through its queue name. */
extern const sg_activity_module_t sg_activity_test_module;
extern const sg_activity_module_t sg_activity_order_module;
extern const sg_activity_module_t sg_activity_inventory_module;
extern const sg_activity_module_t sg_activity_payment_module;
extern const sg_activity_module_t sg_activity_notification_module;

static const sg_activity_module_t *const modules[] = {
    &sg_activity_test_module,    &sg_activity_order_module,        &sg_activity_inventory_module,
    &sg_activity_payment_module, &sg_activity_notification_module,
};

const sg_activity_module_t *const *sg_activity_modules(size_t *n)
{
    *n = SG_ARRAY_LEN(modules);
    return modules;
}

const sg_activity_module_t *sg_activity_module(const char *queue)
{
    if (queue == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < SG_ARRAY_LEN(modules); i++) {
        if (strcmp(modules[i]->queue, queue) == 0) {
            return modules[i];
        }
    }
    return NULL;
}

const char *sg_activity_split(const char *activity, size_t *queue_len)
{
    if (activity == NULL) {
        return NULL;
    }
    const char *dot = strchr(activity, '.');
    if (dot == NULL || dot == activity || dot[1] == '\0') {
        return NULL;
    }
    *queue_len = (size_t)(dot - activity);
    return dot + 1;
}

const sg_activity_op_t *sg_activity_module_op(const sg_activity_module_t *m, const char *op)
{
    if (m == NULL || op == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < m->n_ops; i++) {
        if (strcmp(m->ops[i].name, op) == 0) {
            return &m->ops[i];
        }
    }
    return NULL;
}

/* ---- results ---- */

static const char *const outcome_names[] = {"ok", "retryable", "fatal"};

const char *sg_task_outcome_name(sg_task_outcome_t o)
{
    if ((unsigned)o >= SG_ARRAY_LEN(outcome_names)) {
        return "unknown";
    }
    return outcome_names[o];
}

void sg_task_result_fini(sg_task_result_t *r)
{
    if (r == NULL) {
        return;
    }
    sg_free(r->output);
    sg_free(r->error_code);
    sg_free(r->error_message);
    memset(r, 0, sizeof(*r));
}

/* The out-of-memory form of a result: see sg_task_result_t. */
static void result_nomem(sg_task_result_t *r)
{
    sg_task_result_fini(r);
    r->outcome = SG_TASK_RETRYABLE;
}

void sg_task_ok(sg_task_result_t *r, const char *json)
{
    sg_task_result_fini(r);
    r->outcome = SG_TASK_OK;
    r->output = sg_strdup(json != NULL ? json : "null");
    if (r->output == NULL) {
        result_nomem(r);
    }
}

void sg_task_fail(sg_task_result_t *r, sg_task_outcome_t o, const char *code, const char *fmt, ...)
{
    SG_ASSERT(o == SG_TASK_RETRYABLE || o == SG_TASK_FATAL);
    SG_ASSERT(code != NULL);
    sg_task_result_fini(r);
    r->outcome = o;
    r->error_code = sg_strdup(code);
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    char *text = NULL;
    int n = vsnprintf(NULL, 0, fmt, ap);
    if (n >= 0) {
        text = sg_malloc((size_t)n + 1);
        if (text != NULL) {
            vsnprintf(text, (size_t)n + 1, fmt, ap2);
        }
    }
    va_end(ap2);
    va_end(ap);
    r->error_message = text;
    if (r->error_code == NULL || r->error_message == NULL) {
        result_nomem(r);
    }
}

const char *sg_task_result_code(const sg_task_result_t *r)
{
    if (r->outcome == SG_TASK_OK) {
        return NULL;
    }
    return r->error_code != NULL ? r->error_code : "saga.nomem";
}

char *sg_task_key(const char *instance_id, const char *step_id, bool compensation)
{
    return sg_asprintf("%s/%s%s", instance_id, step_id, compensation ? "/compensate" : "");
}

bool sg_task_heartbeat(const sg_task_t *task, const char *details_json)
{
    if (task == NULL) {
        return false;
    }
    if (details_json != NULL &&
        strnlen(details_json, SG_TASK_PROGRESS_MAX + 1) > SG_TASK_PROGRESS_MAX) {
        details_json = NULL; /* too long for a heartbeat: keep the last progress */
    }
    if (task->heartbeat_fn != NULL) {
        return task->heartbeat_fn(task->heartbeat_arg, details_json);
    }
    /* No transport listening (a unit test calling the handler): still wanted until the
     * deadline. */
    return task->deadline_ms == 0 || sg_now_ms() < task->deadline_ms;
}

/* ---- seeding ---- */

static sg_err_t seed_one(const sg_activity_module_t *m, const sg_activity_env_t *env,
                         const cJSON *section, char *err, size_t errlen)
{
    char merr[256] = "";
    if (m->seed == NULL || m->open == NULL) {
        snprintf(err, errlen, "section \"%s\": the %s service has no seed data", m->queue,
                 m->queue);
        return SG_ERR_INVALID;
    }
    char *text = cJSON_PrintUnformatted(section);
    if (text == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    sg_activity_ctx_t *ctx = NULL;
    sg_err_t rc = m->open(env, &ctx, merr, sizeof(merr));
    if (rc == SG_OK) {
        rc = m->seed(ctx, text, merr, sizeof(merr));
        if (m->close != NULL) {
            m->close(ctx);
        }
    }
    if (rc != SG_OK) {
        snprintf(err, errlen, "section \"%s\": %s", m->queue, merr);
    }
    cJSON_free(text);
    return rc;
}

sg_err_t sg_activity_seed_all(const sg_activity_env_t *env, const char *json, char *err,
                              size_t errlen, void (*progress)(void *arg, const char *queue),
                              void *arg)
{
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithOpts(json ? json : "", &end, true);
    if (!cJSON_IsObject(doc)) {
        snprintf(err, errlen, "the seed must be a JSON object (error near byte %zu)",
                 doc == NULL && end != NULL && json != NULL ? (size_t)(end - json) : (size_t)0);
        cJSON_Delete(doc);
        return SG_ERR_INVALID;
    }
    sg_err_t rc = SG_OK;
    const cJSON *section;
    cJSON_ArrayForEach(section, doc)
    {
        if (section->string[0] == '_') {
            continue;
        }
        const sg_activity_module_t *m = sg_activity_module(section->string);
        if (m == NULL || strcmp(m->queue, "test") == 0) {
            snprintf(err, errlen, "section \"%s\": no such service", section->string);
            rc = SG_ERR_NOT_FOUND;
            break;
        }
        if (!cJSON_IsObject(section)) {
            snprintf(err, errlen, "section \"%s\": must be an object", section->string);
            rc = SG_ERR_INVALID;
            break;
        }
        rc = seed_one(m, env, section, err, errlen);
        if (rc != SG_OK) {
            break;
        }
        if (progress != NULL) {
            progress(arg, m->queue);
        }
    }
    cJSON_Delete(doc);
    return rc;
}
