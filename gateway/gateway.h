/*
 * gateway: the REST API of sagad (libmicrohttpd + cJSON). It starts sagas and queries
 * them: definitions come from the driver's registry, writes (start, cancel, retry) go
 * through the driver's queue, reads (instances, history, lists) use read-only SQLite
 * connections of its own. Errors are application/problem+json (RFC 9457).
 *
 *   route                                                        scope
 *   GET  /healthz, /readyz                                       open (no credentials)
 *   GET  /v1/workflows, /v1/workflows/{name}[?version=N]         read
 *   POST /v1/workflows/{name}/instances (Idempotency-Key)        start
 *   GET  /v1/instances[?workflow=&status=&limit=&page_token=]    read
 *   GET  /v1/instances/{id}, /v1/instances/{id}/history          read
 *   POST /v1/instances/{id}/cancel, /v1/instances/{id}/retry     operate
 *   POST /v1/workflows/validate (YAML body)                      read
 *   GET  /v1/workflows/{name}/graph, /v1/instances/{id}/graph    read
 *   GET  /v1/events[?type=&correlation_id=&after=&limit=]        read
 *   POST /v1/orders; GET /v1/orders/{id}                         start; read
 *   POST /v1/orders/{id}/cancel                                  operate
 *   GET  /metrics (Prometheus text), /v1/openapi.json            read
 *
 * Authentication (gateway/auth.h): with a credentials file (opts.auth_file) every route
 * but /healthz and /readyz needs an API key or a JWT holding its scope (admin implies
 * all; start and operate imply read): 401 with WWW-Authenticate for a missing, malformed,
 * expired or unverifiable credential, 403 for a missing scope. Without one it serves
 * everyone, but only on loopback addresses, and logs a warning saying so.
 *
 * Limits, checked in this order before a body is read: path length (414) and headers
 * (431), route (404, or 405 with Allow), credential (401/403), rate per caller (429 with
 * Retry-After; token buckets per key or JWT subject, or per client IP without
 * authentication), announced body size (413); then the body (413 past max_body, 400 for
 * JSON nested deeper than 32 or with more than 100,000 values). Connections are capped
 * (max_conns) and closed after timeout_s idle seconds, so slow clients cannot hold
 * threads for long. docs/rest.md has the details.
 *
 * It must never touch the driver's writer connection or an instance in memory, never
 * trust anything in a request (every input is checked, and no input may produce a 5xx
 * or a crash: the only 5xx are 503s when sagad itself cannot serve), and never listen on
 * a non-loopback address without credentials.
 */
#ifndef SG_GATEWAY_H
#define SG_GATEWAY_H

#include "orchestrator/driver/driver.h"

typedef struct sg_gateway sg_gateway_t;

typedef struct {
    /* "HOST:PORT" with a numeric IPv4 HOST, [IPv6] or localhost; port 0 picks a free
     * port. Without auth_file only 127.x.x.x, localhost and [::1] are accepted. NULL
     * means "127.0.0.1:8080". */
    const char *listen;
    const char *db_path;   /* the driver's database, opened read-only for queries */
    sg_driver_t *driver;   /* borrowed; must outlive the gateway */
    size_t max_body;       /* largest accepted request body; 0 means 1 MiB */
    unsigned max_conns;    /* connections served at once; 0 means 256 */
    unsigned timeout_s;    /* a connection idle this long is closed; 0 means 30 */
    const char *auth_file; /* credentials (see gateway/auth.h); NULL: none, loopback only */
    /* Without auth_file: requests per second per client IP (token bucket of anon_burst,
     * 0 meaning twice the rate); 0 means no limit. With it, the file sets the limits. */
    double anon_rate;
    double anon_burst;
    /* The services' databases (<data_dir>/order.db, inventory.db, payment.db), read
     * by GET /v1/orders/{id}; NULL: the /v1/orders routes know no order (404). */
    const char *data_dir;
    /* HTTPS: PEM files of the server's certificate (chain) and its unencrypted private
     * key, read at start; both or neither. NULL: plain HTTP. The loopback rule above
     * holds with TLS too: TLS encrypts, only auth_file authenticates. */
    const char *tls_cert_file;
    const char *tls_key_file;
} sg_gateway_opts_t;

#define SG_GATEWAY_DEFAULT_LISTEN "127.0.0.1:8080"
#define SG_GATEWAY_DEFAULT_MAX_BODY ((size_t)1 << 20)
#define SG_GATEWAY_DEFAULT_TIMEOUT_S 30

/*
 * Starts serving on its own threads (one per connection). The options are copied and
 * the credentials file is read now. Returns SG_OK with *out set, SG_ERR_INVALID for a
 * malformed listen address, a non-loopback one without auth_file, a malformed
 * credentials file or missing db_path/driver, only one of the TLS files, TLS files that
 * are not PEM or a libmicrohttpd built without TLS, SG_ERR_IO when the socket cannot be
 * bound or a file read, SG_ERR_NOMEM; then *out is NULL and err (errlen bytes) says why.
 * Any thread.
 */
sg_err_t sg_gateway_start(const sg_gateway_opts_t *o, sg_gateway_t **out, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
uint16_t sg_gateway_port(const sg_gateway_t *g);

/* Stops accepting, waits for requests in progress, closes the read connections. Call it
 * before sg_driver_stop: a request in progress may be waiting for the driver. NULL is a
 * no-op. Not from a request handler. */
void sg_gateway_stop(sg_gateway_t *g);

#endif
