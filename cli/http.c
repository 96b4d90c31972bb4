/*
 * sagactl http: the REST client over libcurl. One handle per run (kept for polling),
 * the connection settings (--server, --token, --cacert, --insecure), requests and their
 * answers, and the mapping of failures to exit statuses: 404 -> 3, 401/403 -> 4,
 * 5xx and transport failures -> 5, any other refusal -> 1.
 *
 * It must never print a token, follow a redirect (a token must not travel elsewhere),
 * or turn a failure into success: every non-2xx answer is reported once, here.
 */
#include "cli/sagactl.h"

#include <curl/curl.h>
#include <string.h>
#include <strings.h>

#define CONNECT_TIMEOUT_MS 5000L
#define TOTAL_TIMEOUT_MS 60000L
#define MAX_ANSWER ((size_t)256 << 20)
#define MAX_ERRORS_SHOWN 10

void cli__resp_fini(cli_resp_t *resp)
{
    sg_buf_fini(&resp->body);
}

static bool curl_inited;

void cli__ctx_fini(cli_ctx_t *c)
{
    if (c->curl != NULL) {
        curl_easy_cleanup(c->curl);
        c->curl = NULL;
    }
    if (curl_inited) {
        curl_global_cleanup();
        curl_inited = false;
    }
    sg_free(c->token_buf);
    c->token_buf = NULL;
}

char *cli__esc(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *copy = e != NULL ? sg_strdup(e) : NULL;
    curl_free(e);
    return copy;
}

void cli__query(sg_buf_t *path, const char *key, const char *value)
{
    if (value == NULL) {
        return;
    }
    char *e = cli__esc(value);
    sg_buf_printf(path, "%s%s=%s", strchr(path->data ? path->data : "", '?') ? "&" : "?", key,
                  e != NULL ? e : "");
    if (e == NULL) {
        path->oom = true;
    }
    sg_free(e);
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    sg_buf_t *b = ctx;
    if (b->len + size * n > MAX_ANSWER) {
        return 0; /* a runaway answer: stop reading */
    }
    sg_buf_append(b, data, size * n);
    return b->oom ? 0 : size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
    cli_resp_t *resp = ctx;
    size_t len = size * n;
    static const char name[] = "content-type:";
    if (len > sizeof(name) && strncasecmp(data, name, sizeof(name) - 1) == 0) {
        const char *v = data + sizeof(name) - 1;
        size_t vlen = len - (sizeof(name) - 1);
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) {
            vlen--;
        }
        snprintf(resp->ctype, sizeof(resp->ctype), "%.*s", (int)vlen, v);
    }
    return len;
}

/* The token: as given, or read from @FILE (surrounding white space dropped). */
static const char *token(cli_ctx_t *c)
{
    if (c->token == NULL || c->token[0] != '@') {
        return c->token;
    }
    if (c->token_buf == NULL) {
        size_t len = 0;
        sg_err_t rc = sg_file_read(c->token + 1, 64 * 1024, &c->token_buf, &len);
        if (rc != SG_OK) {
            cli__err(c, "cannot read the token from %s: %s", c->token + 1, sg_strerror(rc));
            return NULL;
        }
        while (len > 0 && strchr(" \t\r\n", c->token_buf[len - 1]) != NULL) {
            c->token_buf[--len] = '\0';
        }
    }
    const char *t = c->token_buf;
    while (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r') {
        t++;
    }
    return t;
}

/* A credential sent in clear to another machine is worth a warning, once. */
static void warn_cleartext(cli_ctx_t *c)
{
    static bool warned;
    const char *s = c->server;
    if (warned || strncasecmp(s, "http://", 7) != 0) {
        return;
    }
    s += 7;
    if (strncmp(s, "127.", 4) == 0 || strncmp(s, "localhost", 9) == 0 ||
        strncmp(s, "[::1]", 5) == 0) {
        return;
    }
    warned = true;
    cli__err(c, "warning: sending the token over plain http to %s; use https", c->server);
}

static struct curl_slist *headers(cli_ctx_t *c, const char *body, const char *idem_key, bool *ok)
{
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    *ok = h != NULL;
    struct curl_slist *t;
    if (*ok && body != NULL) {
        *ok = (t = curl_slist_append(h, "Content-Type: application/json")) != NULL;
    }
    if (*ok && idem_key != NULL) {
        char *line = sg_asprintf("Idempotency-Key: %s", idem_key);
        *ok = line != NULL && (t = curl_slist_append(h, line)) != NULL;
        sg_free(line);
    }
    const char *tok = c->token != NULL ? token(c) : NULL;
    if (*ok && c->token != NULL && tok == NULL) {
        *ok = false;
        curl_slist_free_all(h);
        return NULL;
    }
    if (*ok && tok != NULL) {
        warn_cleartext(c);
        char *line = sg_asprintf("Authorization: Bearer %s", tok);
        *ok = line != NULL && (t = curl_slist_append(h, line)) != NULL;
        if (line != NULL) {
            memset(line, 0, strlen(line)); /* do not leave the token lying in the heap */
        }
        sg_free(line);
    }
    if (!*ok) {
        cli__err(c, "out of memory");
    }
    return h;
}

/* Makes (once) and sets up the handle for this request. */
static CURL *handle(cli_ctx_t *c)
{
    if (!curl_inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_inited = true;
    }
    if (c->curl == NULL) {
        c->curl = curl_easy_init();
    } else {
        curl_easy_reset(c->curl);
    }
    return c->curl;
}

static int transport_error(cli_ctx_t *c, CURLcode cc, const char *url, const char *detail)
{
    const char *hint = "";
    if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE) {
        hint = " (give the server's CA with --cacert FILE)";
    } else if (cc == CURLE_COULDNT_CONNECT) {
        hint = " (is sagad running? --server or SAGAD_URL says where)";
    } else if (cc == CURLE_GOT_NOTHING && strncasecmp(url, "http:", 5) == 0) {
        hint = " (does the server speak https?)";
    } else if (cc == CURLE_UNSUPPORTED_PROTOCOL) {
        hint = " (the server URL must start with http:// or https://)";
    }
    cli__err(c, "cannot reach %s: %s%s%s%s", url, curl_easy_strerror(cc), detail[0] ? ": " : "",
             detail, hint);
    return CLI_SERVER;
}

int cli__request(cli_ctx_t *c, const char *method, const char *path, const char *body,
                 const char *idem_key, cli_resp_t *resp)
{
    memset(resp, 0, sizeof(*resp));
    sg_buf_init(&resp->body);
    size_t slen = strlen(c->server);
    while (slen > 0 && c->server[slen - 1] == '/') {
        slen--;
    }
    char *url = sg_asprintf("%.*s%s", (int)slen, c->server, path);
    CURL *h = handle(c);
    bool ok = false;
    struct curl_slist *hdrs = url != NULL && h != NULL ? headers(c, body, idem_key, &ok) : NULL;
    if (!ok) {
        if (url == NULL || h == NULL) {
            cli__err(c, "out of memory");
        }
        curl_slist_free_all(hdrs);
        sg_free(url);
        return CLI_FAILED;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp->body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (c->cacert != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
    }
    if (c->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(hdrs); /* also the Authorization line */
    int rc = CLI_OK;
    if (cc != CURLE_OK) {
        rc = transport_error(c, cc, url, errbuf);
        cli__resp_fini(resp);
    }
    sg_free(url);
    return rc;
}

int cli__exit_for_status(long status)
{
    if (status >= 200 && status <= 299) {
        return CLI_OK;
    }
    if (status == 404 || status == 410) {
        return CLI_NOT_FOUND;
    }
    if (status == 401 || status == 403) {
        return CLI_AUTH;
    }
    if (status >= 500 || status < 100) {
        return CLI_SERVER;
    }
    return CLI_FAILED;
}

/* "errors": [{path, message}] as "path: message; ..." (at most MAX_ERRORS_SHOWN). */
static void field_errors(const cJSON *p, sg_buf_t *line)
{
    const cJSON *errors = cJSON_GetObjectItemCaseSensitive(p, "errors");
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, errors)
    {
        if (n == MAX_ERRORS_SHOWN) {
            sg_buf_printf(line, "; and %d more", cJSON_GetArraySize(errors) - n);
            break;
        }
        const char *path = cli__jstr(e, "path");
        sg_buf_printf(line, "%s%s: %s", n++ ? "; " : ": ",
                      path[0] && strcmp(path, "-") != 0 ? path : "(input)",
                      cli__jstr(e, "message"));
    }
}

int cli__report(cli_ctx_t *c, const cli_resp_t *resp)
{
    const char *text = resp->body.data != NULL ? resp->body.data : "";
    if (c->json && text[0] != '\0') {
        printf("%s%s", text, text[strlen(text) - 1] == '\n' ? "" : "\n");
    }
    cJSON *p = cJSON_Parse(text);
    sg_buf_t line;
    sg_buf_init(&line);
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(p, "detail");
    const cJSON *title = cJSON_GetObjectItemCaseSensitive(p, "title");
    if (cJSON_IsString(title) || cJSON_IsString(detail)) {
        sg_buf_printf(&line, "%s (%ld)", cJSON_IsString(title) ? title->valuestring : "error",
                      resp->status);
        if (cJSON_IsString(detail) && detail->valuestring[0]) {
            sg_buf_printf(&line, ": %s", detail->valuestring);
        }
        field_errors(p, &line);
    } else {
        sg_buf_printf(&line, "HTTP %ld, an answer without a problem document", resp->status);
    }
    int rc = cli__exit_for_status(resp->status);
    if (rc == CLI_AUTH && c->token == NULL) {
        sg_buf_puts(&line, " (give a credential: --token TOKEN or SAGAD_TOKEN)");
    }
    cli__err(c, "%s", line.data != NULL ? line.data : "error");
    sg_buf_fini(&line);
    cJSON_Delete(p);
    return rc;
}

int cli__call(cli_ctx_t *c, const char *method, const char *path, const char *body,
              const char *idem_key, cJSON **doc, char **raw)
{
    *doc = NULL;
    if (raw != NULL) {
        *raw = NULL;
    }
    cli_resp_t resp;
    int rc = cli__request(c, method, path, body, idem_key, &resp);
    if (rc != CLI_OK) {
        return rc;
    }
    if (resp.status < 200 || resp.status > 299) {
        rc = cli__report(c, &resp);
    } else if ((*doc = cJSON_Parse(resp.body.data ? resp.body.data : "")) == NULL) {
        cli__err(c, "the server's answer (HTTP %ld, %s) is not JSON", resp.status,
                 resp.ctype[0] ? resp.ctype : "no content type");
        rc = CLI_SERVER;
    } else if (raw != NULL) {
        *raw = sg_buf_take(&resp.body);
        if (*raw == NULL) {
            *raw = sg_strdup("");
        }
    }
    cli__resp_fini(&resp);
    return rc;
}

int cli__call_print(cli_ctx_t *c, const char *method, const char *path, const char *body,
                    const char *idem_key, cJSON **doc)
{
    char *raw = NULL;
    int rc = cli__call(c, method, path, body, idem_key, doc, c->json ? &raw : NULL);
    if (rc == CLI_OK && raw != NULL) {
        size_t n = strlen(raw);
        printf("%s%s", raw, n > 0 && raw[n - 1] == '\n' ? "" : "\n");
    }
    sg_free(raw);
    return rc;
}
