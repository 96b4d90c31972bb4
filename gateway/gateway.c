/*
 * gateway: the HTTP plumbing around the route table. libmicrohttpd runs one thread per
 * connection; this file admits each request as soon as its headers are in (header
 * limits 431, route 404/405, credentials 401/403, rate 429, announced size 413), reads
 * its body (capped at max_body), calls the handler and sends what it wrote. It also owns
 * the small pool of read-only store handles the query handlers borrow.
 *
 * It must never bind to a non-loopback address without credentials, read a body before
 * the request was admitted, buffer more than max_body bytes of a request, or let a
 * handler's failure become a crash.
 */
#include "gateway/gateway_int.h"
#include "orchestrator/log/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* Read-only store handles kept open. When that many are out, a request waits up to
 * POOL_WAIT_MS for one to come back before it opens one of its own: opening costs a
 * schema read and fresh prepared statements, far more than a short wait (under 64
 * connections this kept GETs from opening and closing a handle per request), while a
 * handler that holds one handle and asks for another can never wait for ever. */
#define POOL_MAX 16
#define POOL_WAIT_MS 20
#define MAX_SEGMENTS 8
/* Request headers: more, or longer, is a 431. Requests whose headers do not even fit
 * the connection's memory get libmicrohttpd's own 431 (or 414 for the request line). */
#define MAX_HEADERS 100
#define MAX_HEADER_BYTES (16 * 1024) /* names and values together */
#define MAX_FIELD_BYTES (8 * 1024)   /* one name and value */
#define MAX_URL_BYTES (8 * 1024)     /* path and query: past it, 414 */
#define CONN_MEMORY ((size_t)64 * 1024)
/* Rate buckets kept at most (callers: keys, JWT subjects, client addresses). */
#define RL_MAX_ENTRIES 10000
#define REALM "Bearer realm=\"sagad\""
/* A body without Content-Length is read and dropped past max_body, so that the client
 * still gets its 413; past this many times max_body the connection is simply closed. */
#define DISCARD_FACTOR 16

struct sg_gateway {
    sg_driver_t *driver;
    char *db_path;
    char *data_dir; /* NULL: no services' databases to read (orders) */
    /* PEM texts while serving HTTPS; NULL: plain HTTP */
    char *tls_cert, *tls_key;
    size_t max_body;
    struct MHD_Daemon *mhd;
    uint16_t port;
    sg_auth_t *auth; /* NULL: no credentials, everyone is served (loopback only) */
    gw_ratelimit_t *rl;
    double anon_rate, anon_burst;
    atomic_bool stopping;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv; /* a handle came back */
    sg_store_t *pool[POOL_MAX];
    size_t n_pool;
    size_t n_out;          /* handles handed out and not yet back */
    gw_metrics_t *metrics; /* NULL: requests are not counted */
};

/* Per-request state kept by libmicrohttpd between calls of on_request. */
typedef struct {
    sg_buf_t body;
    size_t seen;
    bool too_large;
    bool answered; /* refused on the first call, before any body was read */
    char *path;    /* the URL cut into segments; params point into it */
    const gw_route_t *route;
    const char *params[GW_MAX_PARAMS];
    size_t n_params;
    uint64_t t0_us; /* when the headers were in */
} conn_t;

sg_driver_t *gw__driver(const sg_gateway_t *g)
{
    return g->driver;
}

const char *gw__data_dir(const sg_gateway_t *g)
{
    return g->data_dir;
}

bool gw__serving(const sg_gateway_t *g)
{
    return !atomic_load(&g->stopping);
}

const char *gw__query(const gw_req_t *r, const char *key)
{
    return MHD_lookup_connection_value(r->con, MHD_GET_ARGUMENT_KIND, key);
}

const char *gw__header(const gw_req_t *r, const char *key)
{
    return MHD_lookup_connection_value(r->con, MHD_HEADER_KIND, key);
}

/* ---- the read-only store pool ---- */

sg_store_t *gw__store_get(sg_gateway_t *g, char *err, size_t errlen)
{
    sg_store_t *st = NULL;
    pthread_mutex_lock(&g->pool_mu);
    if (g->n_pool == 0 && g->n_out >= POOL_MAX) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += POOL_WAIT_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (g->n_pool == 0 && pthread_cond_timedwait(&g->pool_cv, &g->pool_mu, &until) == 0) {
        }
    }
    if (g->n_pool > 0) {
        st = g->pool[--g->n_pool];
    }
    g->n_out++;
    pthread_mutex_unlock(&g->pool_mu);
    if (st != NULL) {
        return st;
    }
    sg_store_opts_t o = {.readonly = true};
    if (sg_store_open(g->db_path, &o, &st, err, errlen) != SG_OK) {
        sg_log(SG_LOG_ERROR, NULL, "gateway: cannot open %s read-only: %s", g->db_path, err);
        pthread_mutex_lock(&g->pool_mu);
        g->n_out--;
        pthread_cond_signal(&g->pool_cv);
        pthread_mutex_unlock(&g->pool_mu);
        return NULL;
    }
    return st;
}

void gw__store_put(sg_gateway_t *g, sg_store_t *st, bool broken)
{
    if (st == NULL) {
        return;
    }
    /* A handler that returned early may have left its snapshot open. */
    sg_store_rollback(st);
    pthread_mutex_lock(&g->pool_mu);
    g->n_out--;
    if (!broken && g->n_pool < POOL_MAX) {
        g->pool[g->n_pool++] = st;
        st = NULL;
    }
    pthread_cond_signal(&g->pool_cv);
    pthread_mutex_unlock(&g->pool_mu);
    sg_store_close(st);
}

/* ---- routing ---- */

/* Splits path (changed in place) into its segments after the leading '/'. Returns the
 * count, or MAX_SEGMENTS + 1 when there are more (no route is that deep). */
static size_t split_path(char *path, char **segs)
{
    size_t n = 0;
    char *p = path + (path[0] == '/');
    for (;;) {
        if (n == MAX_SEGMENTS) {
            return MAX_SEGMENTS + 1;
        }
        segs[n++] = p;
        char *slash = strchr(p, '/');
        if (slash == NULL) {
            return n;
        }
        *slash = '\0';
        p = slash + 1;
    }
}

/* Matches segments against a pattern; {placeholders} take one non-empty segment. */
static bool match(const char *pattern, char *const *segs, size_t n, conn_t *c)
{
    const char *p = pattern + 1;
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        if (p == NULL) {
            return false;
        }
        const char *end = strchr(p, '/');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            if (segs[i][0] == '\0' || np == GW_MAX_PARAMS) {
                return false;
            }
            c->params[np++] = segs[i];
        } else if (strlen(segs[i]) != len || memcmp(segs[i], p, len) != 0) {
            return false;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    if (p != NULL) {
        return false;
    }
    c->n_params = np;
    return true;
}

static void add_allowed(char *allow, size_t cap, const char *method)
{
    if (strstr(allow, method) != NULL) {
        return;
    }
    size_t n = strlen(allow);
    snprintf(allow + n, cap - n, "%s%s", n ? ", " : "", method);
    if (strcmp(method, "GET") == 0) {
        add_allowed(allow, cap, "HEAD"); /* libmicrohttpd answers HEAD like GET, bodiless */
    }
}

/* The route of the request, or NULL when it was answered (404, 405 with Allow). */
static const gw_route_t *find_route(conn_t *c, gw_req_t *r)
{
    c->path = sg_strdup(r->path);
    if (c->path == NULL) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
        return NULL;
    }
    char *segs[MAX_SEGMENTS];
    size_t n = split_path(c->path, segs);
    const char *method = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
    char allow[sizeof(r->allow)] = "";
    for (size_t i = 0; n <= MAX_SEGMENTS && i < gw__n_routes; i++) {
        if (!match(gw__routes[i].pattern, segs, n, c)) {
            continue;
        }
        if (strcmp(gw__routes[i].method, method) == 0) {
            return &gw__routes[i];
        }
        add_allowed(allow, sizeof(allow), gw__routes[i].method);
    }
    if (allow[0] != '\0') {
        gw__problem(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method-not-allowed",
                    "%s is not allowed here; allowed: %s", method, allow);
        memcpy(r->allow, allow, sizeof(allow));
    } else {
        gw__problem(r, MHD_HTTP_NOT_FOUND, "not-found", "no such resource");
    }
    return NULL;
}

/* ---- admission: header limits, credentials, rate ---- */

typedef struct {
    size_t count, bytes, longest;
} header_sum_t;

static enum MHD_Result sum_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    header_sum_t *s = cls;
    size_t n = strlen(key) + (value != NULL ? strlen(value) : 0);
    s->count++;
    s->bytes += n;
    s->longest = n > s->longest ? n : s->longest;
    return MHD_YES;
}

static bool headers_ok(struct MHD_Connection *con, gw_req_t *r)
{
    if (strlen(r->path) > MAX_URL_BYTES) {
        gw__problem(r, MHD_HTTP_URI_TOO_LONG, "uri-too-long", "the path exceeds %d bytes",
                    MAX_URL_BYTES);
        return false;
    }
    header_sum_t s = {0};
    MHD_get_connection_values(con, MHD_HEADER_KIND, sum_header, &s);
    if (s.count <= MAX_HEADERS && s.bytes <= MAX_HEADER_BYTES && s.longest <= MAX_FIELD_BYTES) {
        return true;
    }
    gw__problem(r, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "headers-too-large",
                "at most %d header fields of %d bytes each, %d bytes in all", MAX_HEADERS,
                MAX_FIELD_BYTES, MAX_HEADER_BYTES);
    return false;
}

/* "ip:ADDRESS" of the client, the caller's name when nobody authenticates. */
static void client_name(struct MHD_Connection *con, char *out, size_t outlen)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char ip[INET6_ADDRSTRLEN] = "?";
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
    if (sa != NULL && sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, ip,
                  sizeof(ip));
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, ip,
                  sizeof(ip));
    }
    snprintf(out, outlen, "ip:%s", ip);
}

static void unauthorized(gw_req_t *r, sg_auth_verdict_t v, const sg_auth_caller_t *who)
{
    gw__problem(r, MHD_HTTP_UNAUTHORIZED, "unauthorized", "%s", who->detail);
    snprintf(r->www_auth, sizeof(r->www_auth), "%s%s", REALM,
             v == SG_AUTH_MISSING ? "" : ", error=\"invalid_token\"");
}

static void forbidden(gw_req_t *r, unsigned need, const sg_auth_caller_t *who)
{
    char held[64] = "";
    for (unsigned bit = 1; bit & SG_SCOPE_ALL; bit <<= 1) {
        if (who->scopes & bit) {
            size_t n = strlen(held);
            snprintf(held + n, sizeof(held) - n, "%s%s", n ? " " : "", sg_scope_name(bit));
        }
    }
    cJSON *extra = cJSON_CreateObject();
    gw__add_str(extra, "required_scope", sg_scope_name(need));
    gw__problem_with(r, MHD_HTTP_FORBIDDEN, "forbidden", extra,
                     "this route needs the \"%s\" scope; %s holds: %s", sg_scope_name(need),
                     who->principal, held[0] ? held : "none");
    snprintf(r->www_auth, sizeof(r->www_auth), "%s, error=\"insufficient_scope\", scope=\"%s\"",
             REALM, sg_scope_name(need));
}

/* Credentials and rate for a route; false when the request was answered (401, 403, 429). */
static bool admit(sg_gateway_t *g, struct MHD_Connection *con, unsigned need, gw_req_t *r)
{
    if (need == GW_OPEN) {
        return true; /* probes: never limited, never refused */
    }
    char caller[sizeof(((sg_auth_caller_t *)0)->principal)];
    double rate = g->anon_rate, burst = g->anon_burst;
    if (g->auth == NULL) {
        client_name(con, caller, sizeof(caller));
    } else {
        sg_auth_caller_t who;
        sg_auth_verdict_t v =
            sg_auth_check(g->auth, gw__header(r, "Authorization"), gw__header(r, "X-API-Key"),
                          (int64_t)(sg_now_ms() / 1000), &who);
        if (v != SG_AUTH_OK) {
            unauthorized(r, v, &who);
            SG_LOG_DEBUG(NULL, "http %s %s: 401: %s", r->method, r->path, who.detail);
            return false;
        }
        if (!sg_scope_allows(who.scopes, need)) {
            forbidden(r, need, &who);
            return false;
        }
        snprintf(caller, sizeof(caller), "%s", who.principal);
        rate = who.rate;
        burst = who.burst;
    }
    unsigned wait = gw__rl_take(g->rl, caller, rate, burst, sg_mono_ms());
    if (wait > 0) {
        gw__problem(r, MHD_HTTP_TOO_MANY_REQUESTS, "rate-limited",
                    "too many requests from %s: at most %g per second; retry in %u s", caller, rate,
                    wait);
        r->retry_after = wait;
        return false;
    }
    return true;
}

/* ---- libmicrohttpd callbacks (connection threads) ---- */

static enum MHD_Result send_reply(struct MHD_Connection *con, gw_req_t *r)
{
    struct MHD_Response *resp =
        r->resp_static
            ? MHD_create_response_from_buffer(r->resp_len, r->resp, MHD_RESPMEM_PERSISTENT)
            : MHD_create_response_from_buffer_with_free_callback(r->resp_len, r->resp, cJSON_free);
    if (resp == NULL) {
        if (!r->resp_static) {
            cJSON_free(r->resp);
        }
        return MHD_NO; /* out of memory: closing the connection is all that is left */
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->location[0] != '\0') {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
    }
    if (r->allow[0] != '\0') {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    }
    if (r->www_auth[0] != '\0') {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->www_auth);
    }
    if (r->retry_after > 0) {
        char secs[16];
        snprintf(secs, sizeof(secs), "%u", r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
    enum MHD_Result ret = MHD_queue_response(con, r->status, resp);
    MHD_destroy_response(resp);
    SG_LOG_DEBUG(NULL, "http %s %s -> %u", r->method, r->path, r->status);
    return ret;
}

static void problem_too_large(sg_gateway_t *g, gw_req_t *r)
{
    gw__problem(r, MHD_HTTP_CONTENT_TOO_LARGE, "body-too-large",
                "the request body exceeds %zu bytes", g->max_body);
}

/* A Content-Length over max_body is refused before the body is read. */
static bool announced_size_ok(sg_gateway_t *g, gw_req_t *r)
{
    const char *cl = gw__header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t announced;
    if (cl != NULL && gw__parse_i64(cl, 0, INT64_MAX, &announced) &&
        (uint64_t)announced > g->max_body) {
        problem_too_large(g, r);
        return false;
    }
    return true;
}

/* First call, the headers are in: admit the request or answer it now. Queuing the answer
 * before any body is read makes libmicrohttpd skip "100 Continue" and close the
 * connection after it, so a refused client cannot make us read its body. */
static enum MHD_Result begin_request(sg_gateway_t *g, struct MHD_Connection *con, const char *url,
                                     const char *method, void **con_cls)
{
    conn_t *c = sg_calloc(1, sizeof(*c));
    if (c == NULL) {
        return MHD_NO;
    }
    sg_buf_init(&c->body);
    *con_cls = c;
    c->t0_us = gw__mono_us();
    gw_req_t r = {.gw = g, .con = con, .method = method, .path = url};
    if (headers_ok(con, &r) && (c->route = find_route(c, &r)) != NULL &&
        admit(g, con, c->route->scope, &r) && announced_size_ok(g, &r)) {
        return MHD_YES;
    }
    c->answered = true;
    gw__metrics_request(g->metrics, c->route, method, r.status, c->t0_us);
    return send_reply(con, &r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    sg_gateway_t *g = cls;
    conn_t *c = *con_cls;
    if (c == NULL) {
        return begin_request(g, con, url, method, con_cls);
    }
    if (c->answered) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        c->seen += n;
        if (c->seen > g->max_body) {
            c->too_large = true;
            sg_buf_fini(&c->body);
            return c->seen / DISCARD_FACTOR > g->max_body ? MHD_NO : MHD_YES;
        }
        sg_buf_append(&c->body, upload_data, n);
        return MHD_YES;
    }
    gw_req_t r = {.gw = g, .con = con, .method = method, .path = url};
    if (c->too_large) {
        problem_too_large(g, &r);
    } else if (c->body.oom) {
        gw__problem(&r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
    } else {
        r.body = c->body.data != NULL ? c->body.data : "";
        r.body_len = c->body.len;
        memcpy(r.params, c->params, sizeof(r.params));
        r.n_params = c->n_params;
        c->route->handler(&r);
        /* Every handler answers; a silent one is a bug in this module. */
        SG_ASSERT(r.status != 0);
    }
    gw__metrics_request(g->metrics, c->route, method, r.status, c->t0_us);
    return send_reply(con, &r);
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)con;
    (void)toe;
    conn_t *c = *con_cls;
    if (c != NULL) {
        sg_buf_fini(&c->body);
        sg_free(c->path);
        sg_free(c);
        *con_cls = NULL;
    }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) {
        msg[--n] = '\0';
    }
    sg_log(SG_LOG_WARN, NULL, "http: %s", msg);
}

/* ---- the listen address ---- */

typedef struct {
    struct sockaddr_storage ss;
    bool v6;
} addr_t;

/* "HOST:PORT" -> a socket address; any = credentials are configured, so the address
 * may be other than loopback. False with the reason in err. */
static bool parse_listen(const char *listen, bool any, addr_t *a, char *err, size_t errlen)
{
    const char *colon = strrchr(listen, ':');
    char host[64];
    int64_t port;
    size_t hlen = colon != NULL ? (size_t)(colon - listen) : 0;
    if (colon == NULL || hlen == 0 || hlen >= sizeof(host) ||
        !gw__parse_i64(colon + 1, 0, 65535, &port) || colon[1] == '-') {
        snprintf(err, errlen, "listen address \"%s\": expected HOST:PORT, e.g. 127.0.0.1:8080",
                 listen);
        return false;
    }
    memcpy(host, listen, hlen);
    host[hlen] = '\0';
    memset(a, 0, sizeof(*a));
    bool numeric, loopback;
    if (host[0] == '[' && host[hlen - 1] == ']') {
        host[hlen - 1] = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        a->v6 = true;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        numeric = inet_pton(AF_INET6, host + 1, &s6->sin6_addr) == 1;
        loopback = numeric && IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        const char *ip = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
        numeric = inet_pton(AF_INET, ip, &s4->sin_addr) == 1;
        loopback = numeric && (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    }
    if (loopback || (numeric && any)) {
        return true;
    }
    if (!numeric && any) {
        snprintf(err, errlen,
                 "listen address \"%s\": HOST must be a numeric IPv4 address, [IPv6] or "
                 "localhost",
                 listen);
    } else {
        snprintf(err, errlen,
                 "listen address \"%s\" is not a loopback address: without credentials "
                 "(--auth) nobody is authenticated, so the gateway listens only on "
                 "127.0.0.0/8, localhost or [::1]",
                 listen);
    }
    return false;
}

/* ---- lifecycle ---- */

/* Credentials, rate buckets and settings from o; false with err set (rc in *rc). */
static bool configure(sg_gateway_t *g, const sg_gateway_opts_t *o, sg_err_t *rc, char *err,
                      size_t errlen)
{
    g->driver = o->driver;
    g->db_path = sg_strdup(o->db_path);
    g->rl = gw__rl_new(RL_MAX_ENTRIES);
    g->data_dir = o->data_dir != NULL ? sg_strdup(o->data_dir) : NULL;
    if (g->db_path == NULL || g->rl == NULL || (o->data_dir != NULL && g->data_dir == NULL)) {
        snprintf(err, errlen, "out of memory");
        *rc = SG_ERR_NOMEM;
        return false;
    }
    g->max_body = o->max_body != 0 ? o->max_body : SG_GATEWAY_DEFAULT_MAX_BODY;
    g->anon_rate = o->anon_rate > 0 ? o->anon_rate : 0;
    g->anon_burst = o->anon_burst >= 1 ? o->anon_burst : g->anon_rate * 2;
    if (o->auth_file != NULL) {
        *rc = sg_auth_load(o->auth_file, &g->auth, err, errlen);
        return *rc == SG_OK;
    }
    return true;
}

static void log_start(const sg_gateway_t *g, const char *listen)
{
    sg_log(SG_LOG_INFO, NULL, "gateway listening on %s (port %u, %s)", listen, (unsigned)g->port,
           g->tls_cert != NULL ? "https" : "http");
    if (g->auth != NULL) {
        char what[96];
        sg_auth_describe(g->auth, what, sizeof(what));
        sg_log(SG_LOG_INFO, NULL, "gateway: authentication on: %s", what);
    } else {
        sg_log(SG_LOG_WARN, NULL,
               "gateway: no credentials configured (--auth): serving WITHOUT authentication, "
               "on loopback only");
    }
}

sg_err_t sg_gateway_start(const sg_gateway_opts_t *o, sg_gateway_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (o == NULL || o->driver == NULL || o->db_path == NULL || o->db_path[0] == '\0') {
        snprintf(err, errlen, "gateway: a driver and a db_path are required");
        return SG_ERR_INVALID;
    }
    const char *listen = o->listen != NULL ? o->listen : SG_GATEWAY_DEFAULT_LISTEN;
    sg_gateway_t *g = sg_calloc(1, sizeof(*g));
    if (g == NULL) {
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    pthread_mutex_init(&g->pool_mu, NULL);
    pthread_cond_init(&g->pool_cv, NULL);
    g->metrics = gw__metrics_new(sg_driver_metrics(o->driver));
    sg_err_t rc = SG_ERR_INVALID;
    addr_t a;
    if (!configure(g, o, &rc, err, errlen) ||
        !parse_listen(listen, g->auth != NULL, &a, err, errlen) ||
        !gw__tls_load(o, &g->tls_cert, &g->tls_key, &rc, err, errlen)) {
        sg_gateway_stop(g);
        return rc != SG_OK ? rc : SG_ERR_INVALID;
    }
    /* One thread per connection: handlers block on the driver (a start waits for its
     * commit), which would stall every other connection of a shared polling thread. The
     * connection limit bounds the threads; the idle timeout frees those slow clients hold. */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG | (a.v6 ? MHD_USE_IPv6 : 0) |
                     (g->tls_cert != NULL ? MHD_USE_TLS : 0);
    struct MHD_OptionItem tls[] = {{MHD_OPTION_HTTPS_MEM_CERT, 0, g->tls_cert},
                                   {MHD_OPTION_HTTPS_MEM_KEY, 0, g->tls_key},
                                   {MHD_OPTION_END, 0, NULL}};
    unsigned timeout = o->timeout_s != 0 ? o->timeout_s : SG_GATEWAY_DEFAULT_TIMEOUT_S;
    /* The logger goes first so that messages about the other options reach it too. */
    errno = 0;
    g->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, g, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, g,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a.ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        g, MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o->max_conns != 0 ? o->max_conns : 256),
        MHD_OPTION_CONNECTION_TIMEOUT, timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEMORY,
        MHD_OPTION_ARRAY, g->tls_cert != NULL ? tls : tls + 2, MHD_OPTION_END);
    if (g->mhd == NULL) {
        snprintf(err, errlen, "cannot listen on %s: %s%s", listen,
                 errno != 0 ? strerror(errno) : "libmicrohttpd refused to start",
                 g->tls_cert != NULL ? " (TLS: does the key match the certificate?)" : "");
        sg_gateway_stop(g);
        return SG_ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(g->mhd, MHD_DAEMON_INFO_BIND_PORT);
    g->port = info != NULL ? info->port : 0;
    log_start(g, listen);
    *out = g;
    return SG_OK;
}

uint16_t sg_gateway_port(const sg_gateway_t *g)
{
    return g->port;
}

void sg_gateway_stop(sg_gateway_t *g)
{
    if (g == NULL) {
        return;
    }
    atomic_store(&g->stopping, true); /* /readyz says 503 from now on */
    if (g->mhd != NULL) {
        MHD_stop_daemon(g->mhd); /* joins the connection threads */
    }
    for (size_t i = 0; i < g->n_pool; i++) {
        sg_store_close(g->pool[i]);
    }
    pthread_mutex_destroy(&g->pool_mu);
    pthread_cond_destroy(&g->pool_cv);
    sg_auth_free(g->auth);
    gw__rl_free(g->rl);
    gw__metrics_free(g->metrics);
    sg_free(g->db_path);
    sg_free(g->data_dir);
    gw__tls_free(g->tls_cert, g->tls_key);
    sg_free(g);
}
