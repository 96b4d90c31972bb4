/*
 * gateway metrics: counts every answered request by route pattern, method and status
 * code, times it from its headers to its answer, and serves GET /metrics: the driver's
 * registry (sagas, attempts, batches, queues) with these series, in the Prometheus text
 * format 0.0.4.
 *
 * It must never use a raw path or an arbitrary method as a label value (the route
 * pattern, and methods from a fixed list, keep the series bounded), and never block a
 * request on a scrape (updates are lock-free).
 */
#include "gateway/gateway_int.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define UNMATCHED "unmatched"

struct gw_metrics {
    sg_metric_t *requests, *latency;
};

uint64_t gw__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

gw_metrics_t *gw__metrics_new(sg_metrics_t *reg)
{
    if (reg == NULL) {
        return NULL;
    }
    gw_metrics_t *m = sg_calloc(1, sizeof(*m));
    if (m == NULL) {
        return NULL;
    }
    /* Routes x methods x statuses, and a few for requests that matched no route. */
    size_t max = 8 * (gw__n_routes + 1) * 4;
    m->requests = sg_metrics_counter(reg, "sagad_http_requests_total",
                                     "HTTP requests answered, by route pattern (\"" UNMATCHED
                                     "\" when none matched), method and status code.",
                                     "route,method,code", max);
    m->latency = sg_metrics_histogram(
        reg, "sagad_http_request_duration_seconds",
        "Time from a request's headers to its answer, by route pattern and method.", "route,method",
        sg_metric_latency_buckets, sg_metric_n_latency_buckets, 2 * (gw__n_routes + 1) * 4);
    if (m->requests == NULL || m->latency == NULL) {
        sg_free(m);
        return NULL;
    }
    return m;
}

void gw__metrics_free(gw_metrics_t *m)
{
    sg_free(m); /* the families belong to the registry */
}

/* A method as a label: the standard ones as they are, anything else as "other". */
static const char *method_label(const char *method)
{
    static const char *const known[] = {"GET",     "HEAD",  "POST",  "PUT",    "DELETE",
                                        "OPTIONS", "PATCH", "TRACE", "CONNECT"};
    for (size_t i = 0; method != NULL && i < SG_ARRAY_LEN(known); i++) {
        if (strcmp(method, known[i]) == 0) {
            return known[i];
        }
    }
    return "other";
}

void gw__metrics_request(gw_metrics_t *m, const gw_route_t *route, const char *method,
                         unsigned status, uint64_t t0_us)
{
    if (m == NULL) {
        return;
    }
    const char *pattern = route != NULL ? route->pattern : UNMATCHED;
    const char *meth = method_label(method);
    char code[8];
    snprintf(code, sizeof(code), "%u", status);
    sg_metric_add(m->requests, (const char *[]){pattern, meth, code}, 1);
    sg_metric_observe(m->latency, (const char *[]){pattern, meth},
                      (double)(gw__mono_us() - t0_us) / 1e6);
}

void gw__h_metrics(gw_req_t *r)
{
    sg_metrics_t *reg = sg_driver_metrics(gw__driver(r->gw));
    if (reg == NULL) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                    "metrics are off: sagad ran out of memory at start");
        return;
    }
    sg_buf_t out;
    sg_buf_init(&out);
    sg_metrics_render(reg, &out);
    if (out.oom) {
        gw__problem(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "out of memory");
    } else {
        gw__reply_text(r, MHD_HTTP_OK, SG_METRICS_CONTENT_TYPE, out.data != NULL ? out.data : "",
                       out.len);
    }
    sg_buf_fini(&out);
}
