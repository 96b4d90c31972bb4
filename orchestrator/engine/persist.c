/*
 * engine persistence: the instance's per-step state to and from JSON. The instance
 * row keeps status, reason, input and times in columns of their own; this document
 * holds the rest, in a shape meant for machines (short keys) but still readable.
 *
 *   {"v":1,"cur":[0,2],"done":3,"st":"RUNNING","rs":"","dl":0,
 *    "steps":[{"s":4,"c":0,"m":0,"a":1,"ca":0,"ab":0,"cab":0,"d":1,"t":0,
 *              "t0":1764130000000,"t1":1764130000050,"o":{...},"ec":null,"em":null}, ...]}
 */
#include "orchestrator/engine/engine.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static void put_str_or_null(sg_buf_t *b, const char *s)
{
    if (s == NULL) {
        sg_buf_puts(b, "null");
        return;
    }
    sg_buf_puts(b, "\"");
    sg_buf_put_escaped(b, s);
    sg_buf_puts(b, "\"");
}

char *sg_inst_state_json(const sg_inst_t *inst)
{
    const sg_def_t *def = inst->def;
    sg_buf_t b;
    sg_buf_init(&b);
    sg_buf_printf(&b, "{\"v\":1,\"st\":\"%s\",\"rs\":\"%s\",\"dl\":%llu,\"done\":%u,\"cur\":[",
                  sg_inst_status_name(inst->status), sg_reason_name(inst->reason),
                  (unsigned long long)inst->deadline_ms, inst->done_counter);
    for (size_t q = 0; q < def->n_seqs; q++) {
        sg_buf_printf(&b, "%s%u", q ? "," : "", inst->cursor[q]);
    }
    sg_buf_puts(&b, "],\"steps\":[");
    for (size_t i = 0; i < def->n_steps; i++) {
        const sg_step_state_t *ss = &inst->steps[i];
        sg_buf_printf(&b,
                      "%s{\"s\":%d,\"c\":%d,\"m\":%d,\"a\":%u,\"ca\":%u,\"ab\":%u,\"cab\":%u,"
                      "\"d\":%u,\"t\":%llu,\"le\":%llu,\"t0\":%llu,\"t1\":%llu,\"o\":",
                      i ? "," : "", (int)ss->status, (int)ss->comp, ss->maybe_effect ? 1 : 0,
                      ss->attempt, ss->comp_attempt, ss->attempt_base, ss->comp_attempt_base,
                      ss->done_seq, (unsigned long long)ss->timer_at,
                      (unsigned long long)ss->lease_end, (unsigned long long)ss->started_ms,
                      (unsigned long long)ss->finished_ms);
        sg_buf_puts(&b, ss->output ? ss->output : "null");
        sg_buf_puts(&b, ",\"ec\":");
        put_str_or_null(&b, ss->error_code);
        sg_buf_puts(&b, ",\"em\":");
        put_str_or_null(&b, ss->error_msg);
        sg_buf_puts(&b, "}");
    }
    sg_buf_puts(&b, "]}");
    return sg_buf_take(&b);
}

/* Reads a non-negative integer field, range-checked. */
static bool get_uint(const cJSON *obj, const char *key, double max, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max) {
        return false;
    }
    *out = (uint64_t)v->valuedouble;
    return true;
}

static bool get_opt_str(const cJSON *obj, const char *key, char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v == NULL || cJSON_IsNull(v)) {
        *out = NULL;
        return true;
    }
    if (!cJSON_IsString(v)) {
        return false;
    }
    *out = sg_strdup(v->valuestring);
    return *out != NULL;
}

static bool restore_step(const cJSON *js, sg_step_state_t *ss)
{
    uint64_t s, c, m, a, ca, ab, cab, d, t, t0, t1;
    const double u32 = 4294967295.0, u53 = 9007199254740991.0;
    if (!cJSON_IsObject(js) || !get_uint(js, "s", SG_SS__COUNT - 1, &s) ||
        !get_uint(js, "c", SG_CS__COUNT - 1, &c) || !get_uint(js, "m", 1, &m) ||
        !get_uint(js, "a", u32, &a) || !get_uint(js, "ca", u32, &ca) ||
        !get_uint(js, "ab", u32, &ab) || !get_uint(js, "cab", u32, &cab) ||
        !get_uint(js, "d", u32, &d) || !get_uint(js, "t", u53, &t) ||
        !get_uint(js, "t0", u53, &t0) || !get_uint(js, "t1", u53, &t1)) {
        return false;
    }
    *ss = (sg_step_state_t){.status = (sg_step_status_t)s,
                            .comp = (sg_comp_status_t)c,
                            .maybe_effect = m != 0,
                            .attempt = (uint32_t)a,
                            .comp_attempt = (uint32_t)ca,
                            .attempt_base = (uint32_t)ab,
                            .comp_attempt_base = (uint32_t)cab,
                            .done_seq = (uint32_t)d,
                            .timer_at = t,
                            .started_ms = t0,
                            .finished_ms = t1};
    /* "le" came with heartbeats; a state written before has none: the timeout is whole. */
    ss->lease_end = t;
    if (cJSON_GetObjectItemCaseSensitive(js, "le") != NULL &&
        !get_uint(js, "le", u53, &ss->lease_end)) {
        return false;
    }
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(js, "o");
    if (o != NULL && !cJSON_IsNull(o)) {
        ss->output = cJSON_PrintUnformatted(o);
        if (ss->output == NULL) {
            return false;
        }
        /* cJSON allocates with malloc; the instance frees with sg_free (= free). */
    }
    return get_opt_str(js, "ec", &ss->error_code) && get_opt_str(js, "em", &ss->error_msg);
}

static bool restore_into(const cJSON *root, sg_inst_t *inst, char *err, size_t errlen)
{
    const sg_def_t *def = inst->def;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "st");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rs");
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(root, "cur");
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
    uint64_t done, dl;
    if (!cJSON_IsString(st) || !sg_inst_status_parse(st->valuestring, &inst->status) ||
        !cJSON_IsString(rs) || !sg_reason_parse(rs->valuestring, &inst->reason) ||
        !get_uint(root, "done", 4294967295.0, &done) ||
        !get_uint(root, "dl", 9007199254740991.0, &dl)) {
        snprintf(err, errlen, "state: bad status, reason or counters");
        return false;
    }
    inst->done_counter = (uint32_t)done;
    inst->deadline_ms = dl;
    if (!cJSON_IsArray(cur) || (size_t)cJSON_GetArraySize(cur) != def->n_seqs ||
        !cJSON_IsArray(steps) || (size_t)cJSON_GetArraySize(steps) != def->n_steps) {
        snprintf(err, errlen, "state does not fit %s v%lld (sequences or steps differ)", def->name,
                 (long long)def->version);
        return false;
    }
    size_t q = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cur)
    {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 ||
            it->valuedouble > (double)def->seqs[q]->n_steps) {
            snprintf(err, errlen, "state: bad cursor");
            return false;
        }
        inst->cursor[q++] = (uint32_t)it->valuedouble;
    }
    size_t i = 0;
    cJSON_ArrayForEach(it, steps)
    {
        if (!restore_step(it, &inst->steps[i++])) {
            snprintf(err, errlen, "state: bad entry for step %zu", i - 1);
            return false;
        }
    }
    return true;
}

sg_err_t sg_inst_restore(const sg_def_t *def, const char *id, const char *input,
                         const char *state_json, sg_inst_t **out, char *err, size_t errlen)
{
    *out = NULL;
    sg_inst_t *inst = sg_inst_new(def, id, input, 0);
    if (inst == NULL) {
        return SG_ERR_NOMEM;
    }
    cJSON *root = cJSON_Parse(state_json);
    bool ok = root != NULL && cJSON_IsObject(root) && restore_into(root, inst, err, errlen);
    if (root == NULL) {
        snprintf(err, errlen, "state is not JSON");
    }
    cJSON_Delete(root);
    if (!ok) {
        sg_inst_free(inst);
        return SG_ERR_INVALID;
    }
    *out = inst;
    return SG_OK;
}
