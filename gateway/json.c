/*
 * gateway json: how responses are written (JSON documents and problem documents), the
 * check of a JSON request body (one object, bounded depth and size), and how small
 * values cross the HTTP boundary: RFC 3339 times, strict integers, instance ids and the
 * opaque page cursor.
 *
 * It must never trust its input: every parser here is strict and bounded, and every
 * builder degrades to a fixed 503 body when memory runs out instead of failing silently.
 */
#include "gateway/gateway_int.h"

#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROBLEM_TYPE_PREFIX "urn:sagad:problem:"

/* What a client gets when even the error document cannot be built. */
static const char oom_body[] = "{\"type\":\"" PROBLEM_TYPE_PREFIX "unavailable\","
                               "\"title\":\"Service Unavailable\",\"status\":503,"
                               "\"detail\":\"out of memory\"}";

static void clear_resp(gw_req_t *r)
{
    if (r->resp != NULL && !r->resp_static) {
        cJSON_free(r->resp);
    }
    r->resp = NULL;
    r->resp_len = 0;
    r->resp_static = false;
}

static void reply_oom(gw_req_t *r)
{
    clear_resp(r);
    r->status = MHD_HTTP_SERVICE_UNAVAILABLE;
    r->ctype = "application/problem+json";
    r->resp = (char *)oom_body;
    r->resp_len = sizeof(oom_body) - 1;
    r->resp_static = true;
    r->location[0] = '\0';
    r->retry_after = 1;
}

static bool send_doc(gw_req_t *r, unsigned status, const char *ctype, cJSON *doc)
{
    char *text = doc != NULL ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (text == NULL) {
        reply_oom(r);
        return false;
    }
    clear_resp(r);
    r->status = status;
    r->ctype = ctype;
    r->resp = text;
    r->resp_len = strlen(text);
    return true;
}

void gw__reply_json(gw_req_t *r, unsigned status, cJSON *doc)
{
    send_doc(r, status, "application/json", doc);
}

void gw__reply_text(gw_req_t *r, unsigned status, const char *ctype, const char *text, size_t len)
{
    /* The response is freed with cJSON_free (gateway.c), so it is allocated the same way. */
    char *copy = cJSON_malloc(len + 1);
    if (copy == NULL) {
        reply_oom(r);
        return;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    clear_resp(r);
    r->status = status;
    r->ctype = ctype;
    r->resp = copy;
    r->resp_len = len;
}

static void problemv(gw_req_t *r, unsigned status, const char *slug, cJSON *extra, const char *fmt,
                     va_list ap) __attribute__((format(printf, 5, 0)));

static void problemv(gw_req_t *r, unsigned status, const char *slug, cJSON *extra, const char *fmt,
                     va_list ap)
{
    char detail[512];
    vsnprintf(detail, sizeof(detail), fmt, ap);
    char type[96];
    snprintf(type, sizeof(type), PROBLEM_TYPE_PREFIX "%s", slug);
    const char *title = MHD_get_reason_phrase_for(status);
    cJSON *doc = cJSON_CreateObject();
    bool ok = doc != NULL && cJSON_AddStringToObject(doc, "type", type) != NULL &&
              cJSON_AddStringToObject(doc, "title", title[0] ? title : "Error") != NULL &&
              cJSON_AddNumberToObject(doc, "status", status) != NULL &&
              cJSON_AddStringToObject(doc, "detail", detail) != NULL;
    /* Extension members move over one by one, so the standard ones stay first. */
    while (ok && extra != NULL && extra->child != NULL) {
        cJSON *item = cJSON_DetachItemViaPointer(extra, extra->child);
        cJSON_AddItemToObject(doc, item->string, item);
    }
    cJSON_Delete(extra);
    if (!ok) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    r->location[0] = '\0';
    if (send_doc(r, status, "application/problem+json", doc)) {
        r->retry_after = status == MHD_HTTP_SERVICE_UNAVAILABLE ? 1 : 0;
    }
}

void gw__problem(gw_req_t *r, unsigned status, const char *slug, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problemv(r, status, slug, NULL, fmt, ap);
    va_end(ap);
}

void gw__problem_with(gw_req_t *r, unsigned status, const char *slug, cJSON *extra, const char *fmt,
                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    problemv(r, status, slug, extra, fmt, ap);
    va_end(ap);
}

void gw__store_problem(gw_req_t *r, sg_err_t rc, const char *msg)
{
    if (rc == SG_ERR_NOMEM) {
        reply_oom(r);
        return;
    }
    /* Not the request's fault: the database is missing, locked past the busy timeout or
     * damaged. The operator finds the same text in the log. */
    gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "store-unavailable",
                "the database cannot be read: %s", msg != NULL && msg[0] ? msg : sg_strerror(rc));
}

/* ---- request bodies ---- */

/* Line and column (1-based) of byte off in text, for a parse error message. */
static void line_col(const char *text, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* One pass over the text before cJSON sees it: nesting and the number of values (each
 * ',' '[' '{' outside strings starts one more). cJSON recurses per level and allocates
 * per value, so both are bounded here; the grammar itself is cJSON's business. Returns
 * false with the offending offset, *deep telling which limit it passed. */
static bool json_shape_ok(const char *s, size_t len, size_t *at, bool *deep)
{
    size_t depth = 0, values = 1;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            i += c == '\\';
            in_string = c != '"';
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            depth++;
            values++;
        } else if (c == '}' || c == ']') {
            depth -= depth > 0;
        } else if (c == ',') {
            values++;
        }
        if (depth > GW_JSON_MAX_DEPTH || values > GW_JSON_MAX_VALUES) {
            *at = i;
            *deep = depth > GW_JSON_MAX_DEPTH;
            return false;
        }
    }
    return true;
}

bool gw__body_check(const char *body, size_t len, char *msg, size_t msglen)
{
    size_t off = 0, line, col;
    bool deep = false;
    if (len == 0) {
        snprintf(msg, msglen,
                 "the body must be a JSON object, the saga's input (send {} for none)");
        return false;
    }
    /* cJSON strings are C strings: a NUL would silently cut a value short. */
    if (memchr(body, '\0', len) != NULL) {
        snprintf(msg, msglen, "the body contains a NUL byte");
        return false;
    }
    if (!json_shape_ok(body, len, &off, &deep)) {
        line_col(body, off, &line, &col);
        snprintf(msg, msglen, "JSON %s %d %s at line %zu, column %zu",
                 deep ? "nested deeper than" : "with more than",
                 deep ? GW_JSON_MAX_DEPTH : GW_JSON_MAX_VALUES, deep ? "levels" : "values", line,
                 col);
        return false;
    }
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(body, len, &end, false);
    off = end != NULL && end >= body ? (size_t)(end - body) : 0;
    if (off > len) {
        off = len;
    }
    while (v != NULL && off < len && strchr(" \t\r\n", body[off]) != NULL) {
        off++;
    }
    bool object = cJSON_IsObject(v);
    cJSON_Delete(v);
    if (v == NULL || off != len) {
        line_col(body, off, &line, &col);
        snprintf(msg, msglen, "%s at line %zu, column %zu",
                 v == NULL ? "invalid JSON" : "unexpected data", line, col);
        return false;
    }
    if (!object) {
        snprintf(msg, msglen, "the body must be a JSON object, the saga's input");
        return false;
    }
    return true;
}

/* ---- values ---- */

/* 9999-12-31T23:59:59.999Z: the last instant RFC 3339 can write with four year digits. */
#define MAX_RFC3339_MS INT64_C(253402300799999)

void gw__rfc3339(int64_t ms, char out[32])
{
    out[0] = '\0';
    if (ms <= 0 || ms > MAX_RFC3339_MS) {
        return;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        return;
    }
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

bool gw__add_time(cJSON *obj, const char *key, int64_t ms)
{
    char buf[32];
    gw__rfc3339(ms, buf);
    return (buf[0] ? cJSON_AddStringToObject(obj, key, buf) : cJSON_AddNullToObject(obj, key)) !=
           NULL;
}

bool gw__add_str(cJSON *obj, const char *key, const char *s)
{
    return (s != NULL ? cJSON_AddStringToObject(obj, key, s) : cJSON_AddNullToObject(obj, key)) !=
           NULL;
}

cJSON *gw__json_value(const char *text)
{
    if (text == NULL) {
        return cJSON_CreateNull();
    }
    cJSON *v = cJSON_Parse(text);
    return v != NULL ? v : cJSON_CreateString(text);
}

bool gw__parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (s == NULL || s[0] == '\0' || strlen(s) > 20) {
        return false;
    }
    for (const char *p = s + (s[0] == '-'); *p; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
    }
    if (s[0] == '-' && s[1] == '\0') {
        return false;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

bool gw__valid_id(const char *id)
{
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  c == '_' || c == '-';
        if (!ok || n >= GW_ID_MAX) {
            return false;
        }
    }
    return n > 0;
}

/* ---- the page cursor: base64url (no padding) of "<created_ms>.<id>" ---- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void gw__cursor_encode(int64_t created_ms, const char *id, char out[96])
{
    char plain[64];
    int n = snprintf(plain, sizeof(plain), "%" PRId64 ".%s", created_ms, id);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(plain) ? (size_t)n : sizeof(plain) - 1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)plain[i] << 16;
        size_t left = len - i;
        if (left > 1) {
            v |= (uint32_t)(unsigned char)plain[i + 1] << 8;
        }
        if (left > 2) {
            v |= (uint32_t)(unsigned char)plain[i + 2];
        }
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (left > 1) {
            out[o++] = b64url[(v >> 6) & 63];
        }
        if (left > 2) {
            out[o++] = b64url[v & 63];
        }
    }
    out[o] = '\0';
}

static int b64_value(char c)
{
    const char *p = c != '\0' ? strchr(b64url, c) : NULL;
    return p != NULL ? (int)(p - b64url) : -1;
}

bool gw__cursor_decode(const char *token, int64_t *created_ms, char id[32])
{
    size_t len = strlen(token);
    char plain[64];
    size_t o = 0;
    if (len == 0 || len > 84 || len % 4 == 1) {
        return false;
    }
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        size_t chunk = len - i < 4 ? len - i : 4;
        for (size_t k = 0; k < 4; k++) {
            int d = k < chunk ? b64_value(token[i + k]) : 0;
            if (d < 0) {
                return false;
            }
            v = (v << 6) | (uint32_t)d;
        }
        for (size_t k = 0; k + 1 < chunk; k++) {
            plain[o++] = (char)((v >> (16 - 8 * k)) & 0xff);
        }
    }
    plain[o] = '\0';
    char *dot = memchr(plain, '.', o);
    if (dot == NULL || strlen(plain) != o) {
        return false;
    }
    *dot = '\0';
    if (!gw__parse_i64(plain, 0, MAX_RFC3339_MS, created_ms) || !gw__valid_id(dot + 1)) {
        return false;
    }
    snprintf(id, 32, "%s", dot + 1);
    return true;
}
