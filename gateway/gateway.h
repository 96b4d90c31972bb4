/*
 * gateway: the REST API of sagad (libmicrohttpd + cJSON). It starts sagas and queries
 * them: definitions come from the driver's registry, writes (start, cancel, retry) go
 * through the driver's queue, reads (instances, history, lists) use read-only SQLite
 * connections of its own. Errors are application/problem+json (RFC 9457).
 *
 *   GET  /healthz
 *   GET  /v1/workflows                       GET /v1/workflows/{name}[?version=N]
 *   POST /v1/workflows/{name}/instances      (Idempotency-Key header)
 *   GET  /v1/instances[?workflow=&status=&limit=&page_token=]
 *   GET  /v1/instances/{id}                  GET /v1/instances/{id}/history
 *   POST /v1/instances/{id}/cancel           POST /v1/instances/{id}/retry
 *
 * It must never touch the driver's writer connection or an instance in memory, never
 * trust anything in a request (every input is checked, and no input may produce a 5xx
 * or a crash), and never listen on a non-loopback address until it can authenticate.
 */
#ifndef SG_GATEWAY_H
#define SG_GATEWAY_H

#include "orchestrator/driver/driver.h"

typedef struct sg_gateway sg_gateway_t;

typedef struct {
    /* "HOST:PORT" with HOST 127.x.x.x, localhost or [::1]; port 0 picks a free port.
     * NULL means "127.0.0.1:8080". */
    const char *listen;
    const char *db_path; /* the driver's database, opened read-only for queries */
    sg_driver_t *driver; /* borrowed; must outlive the gateway */
    size_t max_body;     /* largest accepted request body; 0 means 1 MiB */
    unsigned max_conns;  /* connections served at once; 0 means 256 */
} sg_gateway_opts_t;

#define SG_GATEWAY_DEFAULT_LISTEN "127.0.0.1:8080"
#define SG_GATEWAY_DEFAULT_MAX_BODY ((size_t)1 << 20)

/*
 * Starts serving on its own threads (one per connection). The options are copied.
 * Returns SG_OK with *out set, SG_ERR_INVALID for a malformed or non-loopback listen
 * address or missing db_path/driver, SG_ERR_IO when the socket cannot be bound,
 * SG_ERR_NOMEM; then *out is NULL and err (errlen bytes) says why. Any thread.
 */
sg_err_t sg_gateway_start(const sg_gateway_opts_t *o, sg_gateway_t **out, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
uint16_t sg_gateway_port(const sg_gateway_t *g);

/* Stops accepting, waits for requests in progress, closes the read connections. Call it
 * before sg_driver_stop: a request in progress may be waiting for the driver. NULL is a
 * no-op. Not from a request handler. */
void sg_gateway_stop(sg_gateway_t *g);

#endif
