/* sse_filter.c -- publishing a response by its X-SSE-Publish header.
 *
 * Where `SSEPublishResponses on` applies, every response passes this output
 * filter. At its first brigade (headers are final by then, for CGI, FastCGI,
 * proxies and mod_php alike) a response without X-SSE-Publish has the filter
 * removed and goes on untouched. One with it is held whole (it may be at
 * most SSEMaxMessageSize; FLUSH buckets are dropped meanwhile) and, at EOS:
 *
 *   - text/event-stream: the body is parsed as a client would (sse_parse.c)
 *     and every event in it is published, in order;
 *   - any other type: the body is one event's data, X-SSE-Event its type;
 *
 * on every channel X-SSE-Publish lists, all events or none, with the checks
 * of the publish location (sse_store_publish). X-SSE-Publish and X-SSE-Event
 * are removed; the caller gets the response as the handler made it, plus
 * X-SSE-Published: <id>[, <id> ...].
 *
 * What cannot be published is not a silent loss: it is logged (error), and
 * the caller gets, instead of the response, a JSON {"error": ...} with 500
 * (body over SSEMaxMessageSize, an invalid event or header, a compressed
 * body, an event too large for the ring) or 503 (ring unavailable, channel
 * table full). A response whose status is 400 or above (a script that
 * failed) or 304 is not published at all and passes through, without the
 * two headers.
 */
#include "sse_filter.h"
#include "sse_buf.h"
#include "sse_config.h"
#include "sse_http.h"
#include "sse_log.h"
#include "sse_parse.h"
#include "sse_store.h"

#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <util_filter.h>

APLOG_USE_MODULE(sse);

#define FILTER_NAME      "SSE_PUBLISH_RESPONSE"
#define HDR_PUBLISH      "X-SSE-Publish"
#define HDR_EVENT        "X-SSE-Event"
#define HDR_PUBLISHED    "X-SSE-Published"

static ap_filter_rec_t *publish_filter;

typedef struct {
    int                 done;   /* EOS handled, or the response replaced */
    sse_buf             held;   /* the body, on the heap (handed to a heap
                                 * bucket at the end), at most SSEMaxMessageSize */
    apr_bucket_brigade *meta;   /* metadata other than FLUSH/EOS, kept in order */
} filter_ctx;

static apr_status_t free_buf(void *data)
{
    filter_ctx *ctx = data;

    sse_buf_free(&ctx->held);
    return APR_SUCCESS;
}

/* The held body as a heap bucket, which takes it over. */
static apr_bucket *held_bucket(ap_filter_t *f, filter_ctx *ctx)
{
    apr_size_t len = ctx->held.len;

    apr_pool_cleanup_kill(f->r->pool, ctx, free_buf);
    return apr_bucket_heap_create(sse_buf_detach(&ctx->held), len, free, f->c->bucket_alloc);
}

static int has_value(void *rec, const char *key, const char *value)
{
    *(int *)rec = 1;
    return 0;
}

static int add_value(void *rec, const char *key, const char *value)
{
    *(const char **)apr_array_push((apr_array_header_t *)rec) = value;
    return 1;
}

/* Every X-SSE-Publish value of both header tables. */
static apr_array_header_t *publish_values(request_rec *r)
{
    apr_array_header_t *v = apr_array_make(r->pool, 2, sizeof(const char *));

    apr_table_do(add_value, v, r->headers_out, HDR_PUBLISH, NULL);
    apr_table_do(add_value, v, r->err_headers_out, HDR_PUBLISH, NULL);
    return v;
}

static int wants_publish(request_rec *r)
{
    int found = 0;

    apr_table_do(has_value, &found, r->headers_out, HDR_PUBLISH, NULL);
    if (!found)
        apr_table_do(has_value, &found, r->err_headers_out, HDR_PUBLISH, NULL);
    return found;
}

/* "a, b c" (several headers too): channels split on commas and blanks. */
static apr_array_header_t *channels_of(request_rec *r, const apr_array_header_t *values,
                                       const char **joined)
{
    apr_array_header_t *out = apr_array_make(r->pool, 2, sizeof(sse_bytes));
    const char **v = (const char **)values->elts;
    char *copy, *tok, *last;
    int i;

    *joined = apr_array_pstrcat(r->pool, values, ',');
    for (i = 0; i < values->nelts; i++) {
        copy = apr_pstrdup(r->pool, v[i]);
        for (tok = apr_strtok(copy, ", \t", &last); tok; tok = apr_strtok(NULL, ", \t", &last)) {
            sse_bytes *b = apr_array_push(out);
            b->s = tok;
            b->len = strlen(tok);
        }
    }
    return out;
}

static const char *header_value(request_rec *r, const char *name)
{
    const char *v = apr_table_get(r->headers_out, name);

    return v ? v : apr_table_get(r->err_headers_out, name);
}

static void unset_ours(request_rec *r)
{
    apr_table_unset(r->headers_out, HDR_PUBLISH);
    apr_table_unset(r->err_headers_out, HDR_PUBLISH);
    apr_table_unset(r->headers_out, HDR_EVENT);
    apr_table_unset(r->err_headers_out, HDR_EVENT);
}

/* The held body, then kept metadata, then EOS. */
static apr_status_t pass_held(ap_filter_t *f, filter_ctx *ctx)
{
    conn_rec *c = f->c;
    apr_bucket_brigade *bb = apr_brigade_create(f->r->pool, c->bucket_alloc);

    if (ctx->held.len)
        APR_BRIGADE_INSERT_TAIL(bb, held_bucket(f, ctx));
    APR_BRIGADE_CONCAT(bb, ctx->meta);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(c->bucket_alloc));
    return ap_pass_brigade(f->next, bb);
}

/* Replaces the response, not sent yet, with {"error": why}. */
static apr_status_t replace_with_error(ap_filter_t *f, int status, const char *why)
{
    request_rec *r = f->r;
    conn_rec *c = f->c;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, c->bucket_alloc);
    const char *body = apr_pstrcat(r->pool, sse_http_error_json(r->pool, apr_pstrcat(r->pool,
                                   "response not published: ", why, NULL)), "\n", NULL);
    apr_size_t len = strlen(body);

    /* The handler's headers describe what is not sent: none are kept (a
     * CGI script's are in err_headers_out). */
    apr_table_clear(r->headers_out);
    apr_table_clear(r->err_headers_out);
    r->status = status;
    r->status_line = NULL;
    r->content_encoding = NULL;
    r->content_languages = NULL;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)len);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(body, len, r->pool, c->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(c->bucket_alloc));
    return ap_pass_brigade(f->next, bb);
}

/* A response that tried to publish, and why it was not published (reason
 * < 0: it was), for the metrics. */
static void count_publish(int reason)
{
    sse_store *st = sse_store_get();

    sse_store_count(st, SSE_C_PUBLISH_REQUESTS, 1);
    if (reason >= 0)
        sse_store_count(st, (sse_counter)reason, 1);
}

/* reason: the sse_publish_rejected_total reason (sse_metrics.h); the
 * answer is 500 or 503 whatever it is, the fault being the response's. */
static apr_status_t fail(ap_filter_t *f, filter_ctx *ctx, int status, sse_counter reason,
                         const char *hdr, const char *why)
{
    count_publish((int)reason);
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, f->r, SSE_LOGNO(00501) "response not published "
                  "(" HDR_PUBLISH ": %s; answered %d instead): %s", hdr, status, why);
    ctx->done = 1;
    free_buf(ctx);
    return replace_with_error(f, status, why);
}

/* The whole response is here: publish it, then send it on. */
static apr_status_t finish(ap_filter_t *f, filter_ctx *ctx)
{
    request_rec *r = f->r;
    apr_array_header_t *values = publish_values(r), *channels, *events;
    const char *hdr, *why, *event = header_value(r, HDR_EVENT), *enc;
    sse_body_event *ev;
    sse_store_receipt *res;
    char *ids;
    int i, status, dropped = 0;

    channels = channels_of(r, values, &hdr);
    ctx->done = 1;
    unset_ours(r);
    if (r->status >= 400 || r->status == HTTP_NOT_MODIFIED) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SSE_LOGNO(00502) "response not "
                      "published (" HDR_PUBLISH ": %s): its status is %d", hdr, r->status);
        count_publish(SSE_C_REJ_FAILED_RESPONSE);
        return pass_held(f, ctx);
    }
    if (channels->nelts == 0)
        return fail(f, ctx, HTTP_INTERNAL_SERVER_ERROR, SSE_C_REJ_BAD_REQUEST, hdr,
                    HDR_PUBLISH " names no channel");
    enc = header_value(r, "Content-Encoding");
    if ((enc && strcasecmp(enc, "identity") != 0) || r->content_encoding)
        return fail(f, ctx, HTTP_INTERNAL_SERVER_ERROR, SSE_C_REJ_BAD_REQUEST, hdr,
                    apr_psprintf(r->pool, "the body is compressed (Content-Encoding: %s); turn compression off "
                    "for publishing responses", enc ? enc : r->content_encoding));
    if (sse_http_media_type_is(r->content_type, "text/event-stream")) {
        if ((why = sse_parse_stream(r->pool, ctx->held.s ? ctx->held.s : "", ctx->held.len,
                                    &events, &dropped)))
            return fail(f, ctx, HTTP_INTERNAL_SERVER_ERROR, SSE_C_REJ_BAD_REQUEST, hdr, why);
        if (dropped)
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SSE_LOGNO(00503) "the "
                          "text/event-stream body ends with an event not followed by a "
                          "blank line: not published");
        if (events->nelts == 0)
            return fail(f, ctx, HTTP_INTERNAL_SERVER_ERROR, SSE_C_REJ_BAD_REQUEST, hdr,
                        "the text/event-stream body "
                        "holds no complete event (one with a data: line, ended by a blank line)");
    }
    else if ((why = sse_body_raw(r->pool, ctx->held.s ? ctx->held.s : "", ctx->held.len,
                                 event, NULL, NULL, &events))) {
        return fail(f, ctx, HTTP_INTERNAL_SERVER_ERROR, SSE_C_REJ_BAD_REQUEST, hdr, why);
    }
    ev = (sse_body_event *)events->elts;
    for (i = 0; i < events->nelts; i++)
        ev[i].channels = channels;
    status = sse_store_publish(sse_store_get(), r->pool, events, &res, &why);
    if (status != OK)
        return fail(f, ctx, status == HTTP_SERVICE_UNAVAILABLE ? HTTP_SERVICE_UNAVAILABLE
                                                               : HTTP_INTERNAL_SERVER_ERROR,
                    sse_metrics_reason_of_status(status), hdr, why);
    count_publish(-1);
    ids = res[0].id;
    for (i = 1; i < events->nelts; i++)
        ids = apr_pstrcat(r->pool, ids, ", ", res[i].id, NULL);
    apr_table_setn(r->headers_out, HDR_PUBLISHED, ids);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00504) "published %d event(s) "
                  "of the response on %s: %s", events->nelts, hdr, ids);
    return pass_held(f, ctx);
}

/* The settings of the request, or, where it has none, of the request it was
 * internally redirected from: mod_actions runs php-cgi as a redirect to the
 * Action's URL, and the script's own location is what the user configured. */
static const sse_dir_conf *conf_of(request_rec *r, int (*is_set)(const sse_dir_conf *))
{
    const sse_dir_conf *dc = NULL;

    for (; r; r = r->prev) {
        dc = ap_get_module_config(r->per_dir_config, &sse_module);
        if (dc && is_set(dc))
            return dc;
    }
    return NULL;
}

static int publish_set(const sse_dir_conf *dc)
{
    return dc->publish_responses >= 0;
}

static int max_set(const sse_dir_conf *dc)
{
    return dc->max_message >= 0;
}

static int enabled(request_rec *r)
{
    const sse_dir_conf *dc = conf_of(r, publish_set);

    return dc ? dc->publish_responses : 0;
}

static apr_int64_t max_message(request_rec *r)
{
    const sse_dir_conf *dc = conf_of(r, max_set);

    return dc ? dc->max_message : SSE_MAX_MESSAGE_DEFAULT;
}

static apr_status_t publish_filter_func(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    filter_ctx *ctx = f->ctx;
    apr_bucket *e;
    apr_status_t rv;

    if (!ctx) {
        if (APR_BRIGADE_EMPTY(bb))
            return APR_SUCCESS;
        if (!wants_publish(r)) {
            ap_remove_output_filter(f);
            return ap_pass_brigade(f->next, bb);
        }
        if (r->status >= 400 || r->status == HTTP_NOT_MODIFIED) {
            /* Already a failure (or no content): nothing to hold. */
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SSE_LOGNO(00505) "response not "
                          "published (" HDR_PUBLISH ": %s): its status is %d",
                          apr_array_pstrcat(r->pool, publish_values(r), ','), r->status);
            count_publish(SSE_C_REJ_FAILED_RESPONSE);
            unset_ours(r);
            ap_remove_output_filter(f);
            return ap_pass_brigade(f->next, bb);
        }
        f->ctx = ctx = apr_pcalloc(r->pool, sizeof(*ctx));
        sse_buf_init(&ctx->held, NULL, (apr_size_t)max_message(r));
        ctx->meta = apr_brigade_create(r->pool, f->c->bucket_alloc);
        apr_pool_cleanup_register(r->pool, ctx, free_buf, apr_pool_cleanup_null);
    }
    while (!ctx->done && !APR_BRIGADE_EMPTY(bb)) {
        e = APR_BRIGADE_FIRST(bb);
        if (APR_BUCKET_IS_EOS(e)) {
            apr_brigade_cleanup(bb);
            return finish(f, ctx);
        }
        if (AP_BUCKET_IS_ERROR(e)) {
            /* The handler or backend failed: what we hold is not the
             * response. Send on what we have and let httpd answer. */
            unset_ours(r);
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SSE_LOGNO(00506) "response not "
                          "published: it failed with status %d", ((ap_bucket_error *)e->data)->status);
            count_publish(SSE_C_REJ_FAILED_RESPONSE);
            ctx->done = 1;
            if (ctx->held.len)
                APR_BRIGADE_INSERT_HEAD(bb, held_bucket(f, ctx));
            ap_remove_output_filter(f);
            return ap_pass_brigade(f->next, bb);
        }
        if (APR_BUCKET_IS_FLUSH(e)) {
            apr_bucket_delete(e);
            continue;
        }
        if (APR_BUCKET_IS_METADATA(e)) {
            APR_BUCKET_REMOVE(e);
            if (apr_bucket_setaside(e, r->pool) != APR_SUCCESS) {
                apr_bucket_destroy(e);
                continue;
            }
            APR_BRIGADE_INSERT_TAIL(ctx->meta, e);
            continue;
        }
        {
            const char *data;
            apr_size_t n;

            rv = apr_bucket_read(e, &data, &n, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                apr_brigade_cleanup(bb);
                ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, SSE_LOGNO(00507)
                              "reading the response to publish");
                return fail(f, ctx, HTTP_INTERNAL_SERVER_ERROR, SSE_C_REJ_INTERNAL,
                            apr_array_pstrcat(r->pool, publish_values(r), ','),
                            "the response body could not be read");
            }
            if (!sse_buf_append(&ctx->held, data, n)) {
                int over = n > ctx->held.limit - ctx->held.len;

                apr_brigade_cleanup(bb);
                return fail(f, ctx, HTTP_INTERNAL_SERVER_ERROR,
                            over ? SSE_C_REJ_TOO_LARGE : SSE_C_REJ_INTERNAL,
                            apr_array_pstrcat(r->pool, publish_values(r), ','),
                            !over ? "out of memory holding the body" : apr_psprintf(r->pool,
                            "the body is over the limit of %" APR_SIZE_T_FMT
                            " bytes (SSEMaxMessageSize)", ctx->held.limit));
            }
            apr_bucket_delete(e);
        }
    }
    if (!ctx->done)
        ap_log_rerror(APLOG_MARK, APLOG_TRACE2, 0, r, SSE_LOGNO(00508) "holding %"
                      APR_SIZE_T_FMT " byte(s) of the response to publish", ctx->held.len);
    /* After EOS or a replaced response: the rest is nobody's. */
    apr_brigade_cleanup(bb);
    return APR_SUCCESS;
}

void sse_filter_insert(request_rec *r)
{
    if (r->main || !enabled(r))
        return;
    ap_add_output_filter_handle(publish_filter, NULL, r, r->connection);
}

void sse_filter_register(void)
{
    /* Before DEFLATE and the other content-set filters: we see the body as
     * the handler made it; after resource filters (INCLUDES, ...). */
    publish_filter = ap_register_output_filter(FILTER_NAME, publish_filter_func, NULL,
                                               (ap_filter_type)(AP_FTYPE_CONTENT_SET - 1));
}
