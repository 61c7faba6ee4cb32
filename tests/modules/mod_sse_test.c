/* mod_sse_test.c -- a module that publishes through mod_sse's optional
 * function, built by the tests (tests/test_module_api.py) with apxs.
 *
 *   <Location /t-publish>
 *       SetHandler sse-test-publish
 *   </Location>
 *
 * GET /t-publish?channel=news&event=update&data=hello&id=k1 publishes one
 * event (event and id optional; data may be empty) and answers 200 with
 * the id as text/plain; a refused event is answered with the status
 * sse_publish returned and its reason. Without mod_sse loaded: 503.
 *
 * It also makes responses for the X-SSE-Publish filter to see, the way a
 * module may: SetHandler sse-test-respond, then
 * ?channel=c&type=text/plain&err=1&part=a&part=b writes each part with a
 * FLUSH after it, X-SSE-Publish in err_headers_out when err is given (else
 * headers_out), set only after the first part when late is given.
 */
#include <string.h>

#include <httpd.h>
#include <http_config.h>
#include <http_log.h>
#include <http_protocol.h>
#include <apr_strings.h>

#include "mod_sse.h"

module AP_MODULE_DECLARE_DATA sse_test_module;

static APR_OPTIONAL_FN_TYPE(sse_publish) *publish_fn;

/* After every module registered its optional functions. */
static void retrieve(void)
{
    publish_fn = APR_RETRIEVE_OPTIONAL_FN(sse_publish);
}

/* The query string into a table, keeping repeated keys (ap_args_to_table
 * keeps the last one only). */
static apr_table_t *query_table(request_rec *r)
{
    apr_table_t *t = apr_table_make(r->pool, 8);
    char *copy = apr_pstrdup(r->pool, r->args ? r->args : ""), *pair, *last, *v;

    for (pair = apr_strtok(copy, "&", &last); pair; pair = apr_strtok(NULL, "&", &last)) {
        v = strchr(pair, '=');
        if (v)
            *v++ = '\0';
        else
            v = "";
        ap_unescape_urlencoded(pair);
        ap_unescape_urlencoded(v);
        apr_table_add(t, pair, v);
    }
    return t;
}

static int answer(request_rec *r, int status, const char *text)
{
    r->status = status;
    ap_set_content_type(r, "text/plain");
    ap_rprintf(r, "%s\n", text);
    return OK;
}

static int handler(request_rec *r)
{
    apr_table_t *args;
    const char *channel, *event, *data, *id, *id_out = NULL, *why = NULL;
    int rc;

    if (!r->handler || strcmp(r->handler, "sse-test-publish") != 0)
        return DECLINED;
    if (!publish_fn)
        return answer(r, HTTP_SERVICE_UNAVAILABLE, "sse_publish is not available (mod_sse not loaded)");
    args = query_table(r);
    channel = apr_table_get(args, "channel");
    event = apr_table_get(args, "event");
    data = apr_table_get(args, "data");
    id = apr_table_get(args, "id");
    if (!data)
        data = "";
    rc = publish_fn(r->pool, r->server, channel, event, data, strlen(data), id, &id_out, &why);
    if (rc != OK)
        return answer(r, rc, apr_psprintf(r->pool, "refused: %s", why ? why : "(no reason)"));
    return answer(r, HTTP_OK, id_out);
}

static int add_part(void *rec, const char *key, const char *value)
{
    *(const char **)apr_array_push((apr_array_header_t *)rec) = value;
    return 1;
}

static int respond(request_rec *r)
{
    apr_table_t *args;
    apr_array_header_t *parts;
    const char *channel, *type, **part;
    apr_table_t *headers;
    int i;

    if (!r->handler || strcmp(r->handler, "sse-test-respond") != 0)
        return DECLINED;
    args = query_table(r);
    parts = apr_array_make(r->pool, 4, sizeof(const char *));
    apr_table_do(add_part, parts, args, "part", NULL);
    channel = apr_table_get(args, "channel");
    type = apr_table_get(args, "type");
    headers = apr_table_get(args, "err") ? r->err_headers_out : r->headers_out;
    ap_set_content_type(r, type ? type : "text/plain");
    if (channel && !apr_table_get(args, "late"))
        apr_table_set(headers, "X-SSE-Publish", channel);
    part = (const char **)parts->elts;
    for (i = 0; i < parts->nelts; i++) {
        ap_rputs(part[i], r);
        if (ap_rflush(r) != APR_SUCCESS)
            return OK;
        /* Too late: the first brigade has gone by (and with it, the
         * headers for anything after the filter). */
        if (i == 0 && channel && apr_table_get(args, "late"))
            apr_table_set(headers, "X-SSE-Publish", channel);
    }
    return OK;
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_optional_fn_retrieve(retrieve, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(respond, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(sse_test) = {
    STANDARD20_MODULE_STUFF,
    NULL, NULL, NULL, NULL, NULL,
    register_hooks,
    0
};
