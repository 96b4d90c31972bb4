/*
 * gateway: the HTTP plumbing around the route table. libmicrohttpd runs one thread per
 * connection; this file reads each request (body capped at max_body), finds its route
 * (404, or 405 with Allow), calls the handler and sends what it wrote. It also owns the
 * small pool of read-only store handles the query handlers borrow.
 *
 * It must never bind to a non-loopback address (there is no authentication yet), buffer
 * more than max_body bytes of a request, or let a handler's failure become a crash.
 */
#include "gateway/gateway_int.h"
#include "orchestrator/log/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define POOL_MAX 8
#define MAX_SEGMENTS 8
/* A body without Content-Length is read and dropped past max_body, so that the client
 * still gets its 413; past this many times max_body the connection is simply closed. */
#define DISCARD_FACTOR 16

struct sg_gateway {
    sg_driver_t *driver;
    char *db_path;
    size_t max_body;
    struct MHD_Daemon *mhd;
    uint16_t port;
    pthread_mutex_t pool_mu;
    sg_store_t *pool[POOL_MAX];
    size_t n_pool;
};

/* Per-request state kept by libmicrohttpd between calls of on_request. */
typedef struct {
    sg_buf_t body;
    size_t seen;
    bool too_large;
    bool answered; /* the 413 went out on the first call */
} conn_t;

sg_driver_t *gw__driver(const sg_gateway_t *g)
{
    return g->driver;
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
    if (g->n_pool > 0) {
        st = g->pool[--g->n_pool];
    }
    pthread_mutex_unlock(&g->pool_mu);
    if (st != NULL) {
        return st;
    }
    sg_store_opts_t o = {.readonly = true};
    if (sg_store_open(g->db_path, &o, &st, err, errlen) != SG_OK) {
        sg_log(SG_LOG_ERROR, NULL, "gateway: cannot open %s read-only: %s", g->db_path, err);
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
    if (!broken) {
        pthread_mutex_lock(&g->pool_mu);
        if (g->n_pool < POOL_MAX) {
            g->pool[g->n_pool++] = st;
            st = NULL;
        }
        pthread_mutex_unlock(&g->pool_mu);
    }
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
static bool match(const char *pattern, char *const *segs, size_t n, gw_req_t *r)
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
            r->params[np++] = segs[i];
        } else if (strlen(segs[i]) != len || memcmp(segs[i], p, len) != 0) {
            return false;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    if (p != NULL) {
        return false;
    }
    r->n_params = np;
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

static void dispatch(gw_req_t *r)
{
    char *copy = sg_strdup(r->path);
    if (copy == NULL) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
        return;
    }
    char *segs[MAX_SEGMENTS];
    size_t n = split_path(copy, segs);
    const char *method = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
    char allow[sizeof(r->allow)] = "";
    const gw_route_t *found = NULL;
    for (size_t i = 0; n <= MAX_SEGMENTS && i < gw__n_routes && found == NULL; i++) {
        if (!match(gw__routes[i].pattern, segs, n, r)) {
            continue;
        }
        if (strcmp(gw__routes[i].method, method) == 0) {
            found = &gw__routes[i];
        } else {
            add_allowed(allow, sizeof(allow), gw__routes[i].method);
        }
    }
    if (found != NULL) {
        found->handler(r);
    } else if (allow[0] != '\0') {
        gw__problem(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method-not-allowed",
                    "%s is not allowed here; allowed: %s", method, allow);
        memcpy(r->allow, allow, sizeof(allow));
    } else {
        gw__problem(r, MHD_HTTP_NOT_FOUND, "not-found", "no such resource");
    }
    /* Every handler answers; a silent one is a bug in this module. */
    SG_ASSERT(r->status != 0);
    sg_free(copy);
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
    if (r->retry_after) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    enum MHD_Result ret = MHD_queue_response(con, r->status, resp);
    MHD_destroy_response(resp);
    SG_LOG_DEBUG(NULL, "http %s %s -> %u", r->method, r->path, r->status);
    return ret;
}

static enum MHD_Result reply_too_large(sg_gateway_t *g, struct MHD_Connection *con, const char *url,
                                       const char *method)
{
    gw_req_t r = {.gw = g, .con = con, .method = method, .path = url};
    gw__problem(&r, MHD_HTTP_CONTENT_TOO_LARGE, "body-too-large",
                "the request body exceeds %zu bytes", g->max_body);
    return send_reply(con, &r);
}

/* First call: check the announced length. Queuing the 413 now (before any body is read)
 * makes libmicrohttpd skip "100 Continue" and close the connection after the answer. */
static enum MHD_Result begin_request(sg_gateway_t *g, struct MHD_Connection *con, const char *url,
                                     const char *method, void **con_cls)
{
    conn_t *c = sg_calloc(1, sizeof(*c));
    if (c == NULL) {
        return MHD_NO;
    }
    sg_buf_init(&c->body);
    *con_cls = c;
    const char *cl =
        MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t announced;
    if (cl != NULL && gw__parse_i64(cl, 0, INT64_MAX, &announced) &&
        (uint64_t)announced > g->max_body) {
        c->too_large = true;
        c->answered = true;
        return reply_too_large(g, con, url, method);
    }
    return MHD_YES;
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
        return reply_too_large(g, con, url, method);
    }
    if (c->body.oom) {
        gw__problem(&r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
    } else {
        r.body = c->body.data != NULL ? c->body.data : "";
        r.body_len = c->body.len;
        dispatch(&r);
    }
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

/* "HOST:PORT" -> a loopback socket address, or false with the reason in err. */
static bool parse_listen(const char *listen, addr_t *a, char *err, size_t errlen)
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
    if (host[0] == '[' && host[hlen - 1] == ']') {
        host[hlen - 1] = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        a->v6 = true;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) == 1 &&
            IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr)) {
            return true;
        }
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        const char *ip = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
        if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1 &&
            (ntohl(s4->sin_addr.s_addr) >> 24) == 127) {
            return true;
        }
    }
    snprintf(err, errlen,
             "listen address \"%s\" is not a loopback address: the gateway has no "
             "authentication yet, so it listens only on 127.0.0.0/8, localhost or [::1]",
             listen);
    return false;
}

/* ---- lifecycle ---- */

sg_err_t sg_gateway_start(const sg_gateway_opts_t *o, sg_gateway_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (o == NULL || o->driver == NULL || o->db_path == NULL || o->db_path[0] == '\0') {
        snprintf(err, errlen, "gateway: a driver and a db_path are required");
        return SG_ERR_INVALID;
    }
    const char *listen = o->listen != NULL ? o->listen : SG_GATEWAY_DEFAULT_LISTEN;
    addr_t a;
    if (!parse_listen(listen, &a, err, errlen)) {
        return SG_ERR_INVALID;
    }
    sg_gateway_t *g = sg_calloc(1, sizeof(*g));
    char *db_path = sg_strdup(o->db_path);
    if (g == NULL || db_path == NULL) {
        sg_free(g);
        sg_free(db_path);
        snprintf(err, errlen, "out of memory");
        return SG_ERR_NOMEM;
    }
    g->driver = o->driver;
    g->db_path = db_path;
    g->max_body = o->max_body != 0 ? o->max_body : SG_GATEWAY_DEFAULT_MAX_BODY;
    pthread_mutex_init(&g->pool_mu, NULL);
    /* One thread per connection: handlers block on the driver (a start waits for its
     * commit), which would stall every other connection of a shared polling thread. */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG | (a.v6 ? MHD_USE_IPv6 : 0);
    /* The logger goes first so that messages about the other options reach it too. */
    g->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, g, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, g,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a.ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        g, MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o->max_conns != 0 ? o->max_conns : 256),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (g->mhd == NULL) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen,
                 errno != 0 ? strerror(errno) : "libmicrohttpd refused to start");
        sg_gateway_stop(g);
        return SG_ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(g->mhd, MHD_DAEMON_INFO_BIND_PORT);
    g->port = info != NULL ? info->port : 0;
    sg_log(SG_LOG_INFO, NULL, "gateway listening on %s (port %u)", listen, (unsigned)g->port);
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
    if (g->mhd != NULL) {
        MHD_stop_daemon(g->mhd); /* joins the connection threads */
    }
    for (size_t i = 0; i < g->n_pool; i++) {
        sg_store_close(g->pool[i]);
    }
    pthread_mutex_destroy(&g->pool_mu);
    sg_free(g->db_path);
    sg_free(g);
}
