/* sse_http.c -- the HTTP helpers both handlers and the response filter use
 * (see sse_http.h).
 */
#include "sse_http.h"
#include "sse_body.h"
#include "sse_buf.h"
#include "sse_cors.h"
#include "sse_log.h"
#include "sse_store.h"

#include <string.h>
#include <jansson.h>
#include <apr_strings.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>

APLOG_USE_MODULE(sse);

#define BODY_READ_BLOCK 8192    /* what one ap_get_client_block asks for */

int sse_http_media_type_is(const char *ct, const char *type)
{
    apr_size_t n = strlen(type);

    if (!ct || strncasecmp(ct, type, n) != 0)
        return 0;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

const char *sse_http_error_json(apr_pool_t *p, const char *why)
{
    json_t *o = json_object();
    char *text;
    const char *out;

    json_object_set_new(o, "error", json_string(why));
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    out = apr_pstrdup(p, text ? text : "{\"error\":\"(unprintable)\"}");
    free(text);
    return out;
}

int sse_http_json(request_rec *r, int status, const char *json_text)
{
    apr_size_t len = strlen(json_text);

    r->status = status;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)len + 1);
    if (!r->header_only) {
        ap_rwrite(json_text, (int)len, r);
        ap_rputs("\n", r);
    }
    return OK;
}

static int refuse(request_rec *r, int status, const char *why, int quiet)
{
    ap_log_rerror(APLOG_MARK, quiet ? APLOG_DEBUG : status >= 500 ? APLOG_ERR : APLOG_INFO, 0,
                  r, SSE_LOGNO(00101) "%d: %s", status, why);
    /* A body we refused unread is not drained: httpd closes the connection
     * after statuses that drop it (413 among them). */
    if (status == HTTP_REQUEST_ENTITY_TOO_LARGE)
        r->connection->keepalive = AP_CONN_CLOSE;
    return sse_http_json(r, status, sse_http_error_json(r->pool, why));
}

int sse_http_error(request_rec *r, int status, const char *why)
{
    return refuse(r, status, why, 0);
}

int sse_http_error_quiet(request_rec *r, int status, const char *why)
{
    return refuse(r, status, why, 1);
}

int sse_http_store_error(request_rec *r, int status, const char *why)
{
    int after = sse_store_retry_after(sse_store_get());

    if (status == HTTP_SERVICE_UNAVAILABLE && after > 0) {
        apr_table_setn(r->headers_out, "Retry-After", apr_itoa(r->pool, after));
        return sse_http_error_quiet(r, status, why);
    }
    return sse_http_error(r, status, why);
}

int sse_http_not_allowed(request_rec *r, const char *allow, const char *what)
{
    apr_table_setn(r->headers_out, "Allow", allow);
    return sse_http_error(r, HTTP_METHOD_NOT_ALLOWED,
                          apr_psprintf(r->pool, "method %s not allowed on %s",
                                       r->method, what));
}

int sse_http_options(request_rec *r, const sse_dir_conf *dc, const char *methods,
                     const char *allow)
{
    if (!sse_cors_apply(r, dc, methods) && r->method_number != M_OPTIONS)
        return 0;
    apr_table_setn(r->headers_out, "Allow", allow);
    r->status = HTTP_NO_CONTENT;
    return 1;
}

const char *sse_http_query(request_rec *r, apr_array_header_t **pairs)
{
    return sse_body_parse_pairs(r->pool, r->args ? r->args : "",
                                r->args ? strlen(r->args) : 0, pairs);
}

int sse_http_read_body(request_rec *r, apr_int64_t max, char **body, apr_size_t *len,
                       const char **why)
{
    sse_buf buf;
    long got;
    int rc;

    if ((rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK)) != OK) {
        *why = "cannot read the request body";
        return rc;
    }
    if (r->remaining > max) {
        *why = apr_psprintf(r->pool, "body of %" APR_OFF_T_FMT " bytes is over the "
                            "limit of %" APR_INT64_T_FMT " (SSEMaxMessageSize)",
                            r->remaining, max);
        return HTTP_REQUEST_ENTITY_TOO_LARGE;
    }
    /* One byte past the limit is read to tell "at the limit" from "over". */
    sse_buf_init(&buf, r->pool, (apr_size_t)max + 1);
    if (!sse_buf_reserve(&buf, 0)) {
        *why = "out of memory reading the request body";
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (ap_should_client_block(r)) {
        for (;;) {
            apr_size_t block = BODY_READ_BLOCK;

            if (block > buf.limit - buf.len)
                block = buf.limit - buf.len;
            if (!sse_buf_reserve(&buf, block)) {
                *why = "out of memory reading the request body";
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            got = ap_get_client_block(r, buf.s + buf.len, block);
            if (got == 0)
                break;
            if (got < 0) {
                *why = "error reading the request body";
                return HTTP_BAD_REQUEST;
            }
            buf.len += (apr_size_t)got;
            if ((apr_int64_t)buf.len > max) {
                *why = apr_psprintf(r->pool, "body is over the limit of %" APR_INT64_T_FMT
                                    " bytes (SSEMaxMessageSize)", max);
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            }
        }
    }
    buf.s[buf.len] = '\0';
    *body = buf.s;
    *len = buf.len;
    return OK;
}

static void add_channel(apr_pool_t *p, apr_array_header_t *out, const char *s, apr_size_t len)
{
    sse_bytes *b = apr_array_push(out);

    b->s = apr_pstrmemdup(p, s, len);
    b->len = len;
}

/* The part of the URI after the <Location> that matched, or NULL. */
static const char *path_after_location(request_rec *r)
{
    core_dir_config *cd = ap_get_core_module_config(r->per_dir_config);
    apr_size_t n;

    if (cd && cd->d && !cd->r && !cd->d_is_fnmatch && cd->d[0] == '/') {
        n = strlen(cd->d);
        while (n > 1 && cd->d[n - 1] == '/')
            n--;
        if (strncmp(r->uri, cd->d, n) == 0 && (r->uri[n] == '/' || r->uri[n] == '\0'))
            return r->uri[n] == '/' ? r->uri + n + 1 : r->uri + n;
    }
    if (r->path_info && r->path_info[0] == '/')
        return r->path_info + 1;
    return NULL;
}

apr_array_header_t *sse_http_channels(request_rec *r, const sse_dir_conf *dc,
                                      const apr_array_header_t *pairs, const char **why)
{
    apr_array_header_t *out = apr_array_make(r->pool, 2, sizeof(sse_bytes));
    const char *path;

    if (dc->channel) {
        ap_expr_info_t *const *expr = (ap_expr_info_t *const *)dc->channel->elts;
        int i;

        for (i = 0; i < dc->channel->nelts; i++) {
            const char *err = NULL, *val = ap_expr_str_exec(r, expr[i], &err);

            if (err) {
                *why = apr_psprintf(r->pool, "SSEChannel could not be evaluated: %s", err);
                return NULL;
            }
            if (!val || !*val) {
                *why = "SSEChannel evaluated to an empty channel name";
                return NULL;
            }
            add_channel(r->pool, out, val, strlen(val));
        }
        return out;
    }
    if (pairs) {
        apr_array_header_t *q = sse_body_values(r->pool, pairs, "channel");
        if (q->nelts)
            return q;
    }
    path = path_after_location(r);
    if (path && *path) {
        add_channel(r->pool, out, path, strlen(path));
        return out;
    }
    *why = "no channel given: use ?channel=<name> or the path after the location";
    return NULL;
}
