/*
 * gateway openapi: GET /v1/openapi.json serves the OpenAPI 3.0 document of this API,
 * gateway/openapi.json, compiled into the binary by the Makefile (as gw__openapi_json in
 * build/gen/openapi_json.c), so sagad needs no file at run time. The document is written
 * by hand; tests/unit/test_openapi.c keeps it and the route table in step, and
 * tests/openapi/ checks real answers against it.
 *
 * It must never copy or change the document: it is served from read-only memory.
 */
#include "gateway/gateway_int.h"

#include <microhttpd.h>

/* build/gen/openapi_json.c */
extern const unsigned char gw__openapi_json[];
extern const size_t gw__openapi_json_len;

void gw__h_openapi(gw_req_t *r)
{
    r->status = MHD_HTTP_OK;
    r->ctype = "application/json";
    r->resp = (char *)(uintptr_t)gw__openapi_json; /* static: never freed, never written */
    r->resp_len = gw__openapi_json_len;
    r->resp_static = true;
}
