/* sse_cors.c -- CORS for EventSource and for publishers in web pages.
 *
 * What browsers need, and nothing more:
 *  - EventSource with withCredentials: Access-Control-Allow-Origin must be
 *    the exact origin and Access-Control-Allow-Credentials must be "true";
 *  - a Last-Event-ID over 128 bytes or with unsafe bytes, and a publisher's
 *    JSON POST, make the browser send an OPTIONS preflight first: it gets
 *    204 with the methods and headers allowed.
 * The headers go into err_headers_out so that a cross-origin publisher can
 * read our 4xx messages too.
 */
#include "sse_cors.h"
#include "sse_log.h"

#include <string.h>
#include <apr_strings.h>
#include <http_log.h>
#include <http_protocol.h>

APLOG_USE_MODULE(sse);

#define CORS_ALLOW_HEADERS "Last-Event-ID, Content-Type, SSE-Event, SSE-Id, SSE-Retry"
#define CORS_MAX_AGE       "600"

static int listed(const sse_dir_conf *dc, const char *origin)
{
    const char *const *o = (const char *const *)dc->cors_origins->elts;
    int i;

    for (i = 0; i < dc->cors_origins->nelts; i++) {
        if (strcasecmp(o[i], origin) == 0)
            return 1;
    }
    return 0;
}

int sse_cors_apply(request_rec *r, const sse_dir_conf *dc, const char *methods)
{
    const char *origin, *want_headers;
    int credentials = dc->cors_credentials == 1;

    if (!dc->cors_origins)
        return 0;
    apr_table_mergen(r->err_headers_out, "Vary", "Origin");
    origin = apr_table_get(r->headers_in, "Origin");
    if (!origin)
        return 0;
    if (dc->cors_any && credentials) {
        /* Only reachable by merging two sections; each alone is refused. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, SSE_LOGNO(00601) "SSECorsOrigin '*' with "
                      "SSECorsCredentials on (merged from two sections): no CORS "
                      "headers sent; list the origins");
        return 0;
    }
    if (!dc->cors_any && !listed(dc, origin)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00602)
                      "origin '%s' not in SSECorsOrigin",
                      origin);
        return 0;
    }
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Origin",
                   dc->cors_any ? "*" : origin);
    if (credentials)
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Credentials", "true");
    if (r->method_number != M_OPTIONS
        || !apr_table_get(r->headers_in, "Access-Control-Request-Method"))
        return 0;
    /* A preflight. The origin is allowed, so echoing the headers it asks
     * for grants nothing the origin list has not; without a list, ours. */
    want_headers = apr_table_get(r->headers_in, "Access-Control-Request-Headers");
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Methods", methods);
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Headers",
                   want_headers && *want_headers ? want_headers : CORS_ALLOW_HEADERS);
    apr_table_setn(r->err_headers_out, "Access-Control-Max-Age", CORS_MAX_AGE);
    return 1;
}
