/*
 * engine context: the JSON document jq expressions see,
 *   {"input": ..., "steps": {"<id>": {"output": ...}}, "saga": {"id", "name", "version"}},
 * built by concatenating the JSON texts the instance already holds (no re-encoding),
 * and the typed evaluations the engine needs (bool for `when`, a time for `wait.until`).
 */
#include "orchestrator/engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void put_saga(eng_t *e, sg_buf_t *b)
{
    sg_buf_printf(b, "{\"id\":\"%s\",\"name\":", e->inst->id);
    sg_buf_puts(b, eng__json_str(e, e->def->name));
    sg_buf_printf(b, ",\"version\":%lld}", (long long)e->def->version);
}

/* Builds the parsed context from the instance, the first time an expression needs it;
 * eng__step_done keeps it current afterwards. */
static sg_jqrt_ctx_t *context(eng_t *e)
{
    if (e->inst->jqctx != NULL) {
        return e->inst->jqctx;
    }
    sg_buf_t saga;
    sg_buf_init(&saga);
    put_saga(e, &saga);
    char *saga_json = sg_buf_take(&saga);
    sg_jqrt_ctx_t *c = saga_json ? sg_jqrt_ctx_new(e->inst->input, saga_json) : NULL;
    sg_free(saga_json);
    for (size_t i = 0; c != NULL && i < e->def->n_steps; i++) {
        const sg_step_state_t *ss = &e->inst->steps[i];
        if ((ss->status == SG_SS_DONE || ss->output != NULL) &&
            !sg_jqrt_ctx_set_output(c, e->def->all_steps[i]->id, ss->output)) {
            sg_jqrt_ctx_free(c);
            c = NULL;
        }
    }
    e->inst->jqctx = c;
    return c;
}

void eng__context_output(eng_t *e, const sg_step_t *st, const char *output)
{
    if (e->inst->jqctx != NULL && !sg_jqrt_ctx_set_output(e->inst->jqctx, st->id, output)) {
        /* Out of memory: drop the cache, it is rebuilt from the instance next time. */
        sg_jqrt_ctx_free(e->inst->jqctx);
        e->inst->jqctx = NULL;
    }
}

sg_err_t eng__eval_on(eng_t *e, const char *expr, const char *input, char **out, char **err)
{
    sg_err_t rc = sg_jqrt_eval(e->jq, expr, input, out, err);
    if (rc == SG_ERR_NOMEM) {
        e->fx->nomem = true;
    }
    return rc;
}

sg_err_t eng__eval(eng_t *e, const char *expr, char **out, char **err)
{
    *out = *err = NULL;
    sg_jqrt_ctx_t *c = context(e);
    if (c == NULL) {
        e->fx->nomem = true;
        return SG_ERR_NOMEM;
    }
    sg_err_t rc = sg_jqrt_eval_ctx(e->jq, expr, c, out, err);
    if (rc == SG_ERR_NOMEM) {
        e->fx->nomem = true;
    }
    return rc;
}

bool eng__eval_bool(eng_t *e, const char *expr, bool *out, char **err)
{
    char *res = NULL;
    if (eng__eval(e, expr, &res, err) != SG_OK) {
        return false;
    }
    *out = strcmp(res, "false") != 0 && strcmp(res, "null") != 0;
    sg_free(res);
    return true;
}

/* "2026-11-26T10:00:00Z", with optional fraction and offset; epoch milliseconds. */
static bool parse_rfc3339(const char *s, uint64_t *ms)
{
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6) {
        return false;
    }
    const char *p = s + n;
    uint64_t frac = 0;
    if (*p == '.') {
        uint64_t scale = 100;
        for (p++; *p >= '0' && *p <= '9'; p++) {
            frac += (uint64_t)(*p - '0') * scale;
            scale /= 10;
        }
    }
    long offset = 0;
    if (*p == '+' || *p == '-') {
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2) {
            return false;
        }
        offset = (*p == '+' ? 1 : -1) * (hh * 3600L + mm * 60L);
        p += 6;
    } else if (*p == 'Z' || *p == 'z') {
        p++;
    } else {
        return false;
    }
    if (*p != '\0' || tm.tm_year < 1970) {
        return false;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || (long long)t - offset < 0) {
        return false;
    }
    *ms = (uint64_t)((long long)t - offset) * 1000 + frac;
    return true;
}

bool eng__eval_time(eng_t *e, const char *expr, uint64_t *at_ms, char **err)
{
    char *res = NULL;
    if (eng__eval(e, expr, &res, err) != SG_OK) {
        return false;
    }
    bool ok = false;
    char *end = NULL;
    double secs = strtod(res, &end);
    if (end != res && *end == '\0' && secs >= 0 && secs < 1e12) {
        *at_ms = (uint64_t)(secs * 1000.0);
        ok = true;
    } else if (res[0] == '"') {
        res[strlen(res) - 1] = '\0';
        ok = parse_rfc3339(res + 1, at_ms);
    }
    if (!ok) {
        *err =
            sg_asprintf("wait until must give an RFC 3339 time or epoch seconds, not %.60s", res);
    }
    sg_free(res);
    return ok;
}

char *eng__default_event_payload(eng_t *e)
{
    sg_buf_t b;
    sg_buf_init(&b);
    sg_buf_puts(&b, "{\"saga\":");
    put_saga(e, &b);
    sg_buf_printf(&b, ",\"status\":\"%s\",\"input\":", sg_inst_status_name(e->inst->status));
    sg_buf_puts(&b, e->inst->input);
    sg_buf_puts(&b, "}");
    return sg_buf_take(&b);
}

char *eng__default_comp_input(eng_t *e, const sg_step_t *st)
{
    const sg_step_state_t *ss = eng__ss(e, st);
    return sg_asprintf("{\"input\":%s,\"output\":%s}", e->inst->input,
                       ss->output ? ss->output : "null");
}
