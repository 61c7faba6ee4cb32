/* sse_publish.c -- the sse-publish handler: POST publishes, GET describes a
 * channel, DELETE ends a channel's streams and drops what it retains.
 *
 * A POST is read whole (it is at most SSEMaxMessageSize), parsed into
 * events (sse_body.c), and handed to the store (sse_store.h), which checks
 * every field and size before it changes anything: a request publishes all
 * of its events, in order, or none.
 * Who may publish is Apache's business (Require, auth modules), not ours.
 */
#include "sse_publish.h"
#include "sse_config.h"
#include "sse_http.h"
#include "sse_log.h"
#include "sse_registry.h"
#include "sse_store.h"

#include <poll.h>
#include <string.h>
#include <jansson.h>
#include <apr_strings.h>
#include <ap_mpm.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <scoreboard.h>

APLOG_USE_MODULE(sse);

#define PUBLISH_ALLOW "GET, HEAD, POST, DELETE, OPTIONS"

/* Channels in the body must stay within SSEChannel where it is set. */
static int within(const apr_array_header_t *allowed, const sse_bytes *c)
{
    const sse_bytes *a = (const sse_bytes *)allowed->elts;
    int i;

    for (i = 0; i < allowed->nelts; i++) {
        if (a[i].len == c->len && memcmp(a[i].s, c->s, c->len) == 0)
            return 1;
    }
    return 0;
}

/* The answer to a POST: {"id":...,"subscribers":n} per event, in an array
 * when the body was one. Written by hand rather than with jansson because
 * it is on every publish; ids are valid UTF-8 without NUL (sse_wire), so
 * '"', '\\' and control characters are all there is to escape. */
#define JSON_ESCAPE_MAX 6       /* bytes of \u00XX for one byte of an id */
#define UINT64_DIGITS   20
#define ANSWER_MAX_PER_EVENT (sizeof("{\"id\":\"\",\"subscribers\":},") - 1 \
                              + JSON_ESCAPE_MAX * SSE_FIELD_MAX + UINT64_DIGITS)

static const char *answer_json(apr_pool_t *p, const sse_store_receipt *res, int n,
                               int is_array)
{
    static const char hex[] = "0123456789abcdef";
    char *text = apr_palloc(p, (apr_size_t)n * ANSWER_MAX_PER_EVENT + 3);    /* [ ] NUL */
    char *o = text;
    int i;

    if (is_array)
        *o++ = '[';
    for (i = 0; i < n; i++) {
        const unsigned char *c;

        if (i)
            *o++ = ',';
        memcpy(o, "{\"id\":\"", 7);
        o += 7;
        for (c = (const unsigned char *)res[i].id; *c; c++) {
            if (*c == '"' || *c == '\\') {
                *o++ = '\\';
                *o++ = (char)*c;
            }
            else if (*c < 0x20) {
                memcpy(o, "\\u00", 4);
                o[4] = hex[*c >> 4];
                o[5] = hex[*c & 15];
                o += 6;
            }
            else {
                *o++ = (char)*c;
            }
        }
        o += sprintf(o, "\",\"subscribers\":%" APR_UINT64_T_FMT "}", res[i].subscribers);
        if (!is_array)
            break;
    }
    if (is_array)
        *o++ = ']';
    *o = '\0';
    return text;
}

static int publish(request_rec *r, const sse_dir_conf *dc, const apr_array_header_t *pairs)
{
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    apr_array_header_t *events, *fallback = NULL;
    sse_body_event *ev;
    sse_store_receipt *res;
    const char *why = NULL, *fallback_why = NULL;
    char *body;
    apr_size_t len;
    int i, j, status, is_array = 0;

    if ((status = sse_http_read_body(r, SSE_DIR_MAX_MESSAGE(dc), &body, &len, &why)) != OK)
        return sse_http_error(r, status, why);
    if (sse_http_media_type_is(ct, "application/x-www-form-urlencoded")) {
        why = sse_body_parse_form(r->pool, body, len, &events);
    }
    else if (sse_http_media_type_is(ct, "application/json")) {
        why = sse_body_parse_json(r->pool, body, len, &events);
        while (len && (*body == ' ' || *body == '\t' || *body == '\r' || *body == '\n'))
            body++, len--;
        is_array = len && *body == '[';
    }
    else {
        why = sse_body_raw(r->pool, body, len, apr_table_get(r->headers_in, "SSE-Event"),
                           apr_table_get(r->headers_in, "SSE-Id"),
                           apr_table_get(r->headers_in, "SSE-Retry"), &events);
    }
    if (why)
        return sse_http_error(r, HTTP_BAD_REQUEST, why);

    fallback = sse_http_channels(r, dc, pairs, &fallback_why);
    ev = (sse_body_event *)events->elts;
    for (i = 0; i < events->nelts; i++) {
        if (dc->channel && ev[i].channels->nelts) {
            const sse_bytes *c = (const sse_bytes *)ev[i].channels->elts;
            for (j = 0; j < ev[i].channels->nelts; j++) {
                if (!fallback || !within(fallback, &c[j]))
                    return sse_http_error(r, HTTP_FORBIDDEN, apr_psprintf(r->pool,
                        "channel '%.*s' is not allowed here: this location publishes "
                        "only to the channel(s) SSEChannel names", (int)c[j].len, c[j].s));
            }
        }
        if (ev[i].channels->nelts == 0) {
            if (!fallback)
                return sse_http_error(r, HTTP_BAD_REQUEST, fallback_why);
            ev[i].channels = fallback;
        }
    }
    if ((status = sse_store_publish(sse_store_get(), r->pool, events, &res, &why)) != OK)
        return sse_http_store_error(r, status, why);

    status = sse_http_json(r, HTTP_OK, answer_json(r->pool, res, events->nelts, is_array));
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00401)
                  "published %d event(s), first id %s",
                  events->nelts, res[0].id);
    return status;
}

/* The one channel a GET or DELETE is about. */
static const sse_bytes *one_channel(request_rec *r, const sse_dir_conf *dc,
                                    const apr_array_header_t *pairs, const char **why)
{
    apr_array_header_t *channels = sse_http_channels(r, dc, pairs, why);

    if (!channels)
        return NULL;
    if ((*why = sse_body_check_channels(r->pool, channels)))
        return NULL;
    if (channels->nelts != 1) {
        *why = "name exactly one channel";
        return NULL;
    }
    return (const sse_bytes *)channels->elts;
}

static int describe_or_delete(request_rec *r, const sse_dir_conf *dc,
                              const apr_array_header_t *pairs, int delete)
{
    const sse_bytes *c;
    const char *why;
    sse_store_info info;
    apr_uint32_t dropped = 0;
    int status;
    json_t *o;
    char *text;

    if (!(c = one_channel(r, dc, pairs, &why)))
        return sse_http_error(r, HTTP_BAD_REQUEST, why);
    status = sse_store_channel(sse_store_get(), c, delete, &info, &dropped, &why);
    if (status == HTTP_NOT_FOUND)
        return sse_http_error(r, HTTP_NOT_FOUND, apr_psprintf(r->pool,
                              "channel '%.*s' has no events and no subscribers",
                              (int)c->len, c->s));
    if (status != OK)
        return sse_http_store_error(r, status, why);
    o = json_object();
    json_object_set_new(o, "channel", json_stringn(c->s, c->len));
    if (delete) {
        json_object_set_new(o, "messages", json_integer(dropped));
        json_object_set_new(o, "subscribers", json_integer((json_int_t)info.subscribers));
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SSE_LOGNO(00402) "channel '%.*s' "
                      "deleted: %u event(s) dropped, %" APR_UINT64_T_FMT " stream(s) ended",
                      (int)c->len, c->s, dropped, info.subscribers);
    }
    else {
        json_object_set_new(o, "subscribers", json_integer((json_int_t)info.subscribers));
        json_object_set_new(o, "messages", json_integer(info.retained));
        json_object_set_new(o, "last_id", info.last_id[0] ? json_string(info.last_id)
                                                          : json_null());
    }
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    status = sse_http_json(r, HTTP_OK, text ? text : "{}");
    free(text);
    return status;
}

/* A publish attempt and, unless it was answered 200, why it was refused
 * (sse_publish_requests_total, sse_publish_rejected_total). */
static void count_publish(int status)
{
    sse_store *st = sse_store_get();

    sse_store_count(st, SSE_C_PUBLISH_REQUESTS, 1);
    if (status != HTTP_OK && status != OK)
        sse_store_count(st, sse_metrics_reason_of_status(status), 1);
}

static int handle(request_rec *r, const sse_dir_conf *dc)
{
    apr_array_header_t *pairs;
    const char *why;
    int rc;

    if (sse_http_options(r, dc, "GET, POST, DELETE", PUBLISH_ALLOW))
        return OK;
    if ((why = sse_http_query(r, &pairs)))
        rc = sse_http_error(r, HTTP_BAD_REQUEST, why);
    else if (r->method_number == M_GET || r->method_number == M_DELETE)
        return describe_or_delete(r, dc, pairs, r->method_number == M_DELETE);
    else if (r->method_number == M_POST)
        rc = publish(r, dc, pairs);
    else
        rc = sse_http_not_allowed(r, PUBLISH_ALLOW, "a publish location");
    /* Everything but reading and deleting channels tried to publish. */
    if (r->method_number != M_GET && r->method_number != M_DELETE)
        count_publish(r->status);
    return rc;
}

/* Under the event MPM a keep-alive connection goes back to the listener
 * thread after every response, and its next request comes to a worker
 * through the listener's epoll and the worker queue: for a publisher that
 * POSTs back to back, that hand-over (two wake-ups, a queue, two epoll_ctl
 * calls) costs about as much as the publish itself. SSEPublishKeepAliveWait
 * lets the worker that answered stay with the connection for a moment: the
 * answer is flushed now, and if the next request arrives within the wait,
 * httpd finds it pending (ap_check_pipeline) and serves it in this thread.
 *
 * Only connections that have shown they are back to back wait: the first
 * request of a connection, and any that came within the wait after the
 * answer before it. A publisher whose requests are further apart would make
 * every wait run out, a wake-up for nothing and a worker held: its
 * connection is handed back at once, until a request comes quickly again.
 * A worker is cheap here (every stream holds one). Sync MPMs keep a thread
 * on the connection anyway, and HTTP/2 streams have no socket of their own,
 * so only plain async connections wait. The wait ends early when the client
 * sends or closes, or within 100 ms of the child being told to stop; it is
 * part of the request's logged duration (%D) when no next request comes. */
#define WAIT_SLICE apr_time_from_msec(100)

typedef struct {
    apr_time_t answered;        /* when the previous answer went out */
} publisher_conn;

static void wait_for_next_request(request_rec *r, const sse_dir_conf *dc)
{
    conn_rec *c = r->connection;
    publisher_conn *pc = ap_get_module_config(c->conn_config, &sse_module);
    apr_interval_time_t wait = SSE_DIR_KEEPALIVE_WAIT(dc);
    int async = 0;
    apr_os_sock_t fd;
    struct pollfd pfd;

    if (wait <= 0 || c->master || c->aborted)
        return;
    if (ap_mpm_query(AP_MPMQ_IS_ASYNC, &async) != APR_SUCCESS || !async)
        return;
    if (!pc) {
        pc = apr_pcalloc(c->pool, sizeof(*pc));
        ap_set_module_config(c->conn_config, &sse_module, pc);
    }
    else if (r->request_time - pc->answered > wait) {
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, SSE_LOGNO(00403)
                      "keep-alive: request came "
                      "%" APR_TIME_T_FMT " ms after the answer before it: not waiting",
                      apr_time_as_msec(r->request_time - pc->answered));
        pc->answered = apr_time_now();
        return;
    }
    if (ap_discard_request_body(r) != OK || ap_rflush(r) < 0)
        return;
    pc->answered = apr_time_now();
    /* The header filter has decided by now (ap_set_keepalive). */
    if (c->keepalive != AP_CONN_KEEPALIVE || c->aborted)
        return;
    if (apr_os_sock_get(&fd, ap_get_conn_socket(c)) != APR_SUCCESS)
        return;
    if (wait > r->server->keep_alive_timeout)
        wait = r->server->keep_alive_timeout;
    ap_update_child_status(c->sbh, SERVER_BUSY_KEEPALIVE, r);
    pfd.fd = fd;
    pfd.events = POLLIN;
    /* Readable (a request, or EOF) or not, httpd looks next. Nothing wakes
     * this thread when the child is told to stop (the streams' flag, see
     * sse_registry_stopping), hence the slices. */
    for (; wait > 0 && !sse_registry_stopping(); wait -= WAIT_SLICE) {
        int ms = (int)(((wait < WAIT_SLICE ? wait : WAIT_SLICE) + 999) / 1000);

        if (poll(&pfd, 1, ms) != 0)
            return;
    }
}

int sse_publish_handler(request_rec *r)
{
    const sse_dir_conf *dc = sse_config_dir(r);
    int rc = handle(r, dc);

    if (rc == OK)
        wait_for_next_request(r, dc);
    return rc;
}

/* ---- the optional function for other modules (mod_sse.h) ---- */

int sse_publish(apr_pool_t *p, server_rec *s, const char *channel, const char *event,
                const char *data, apr_size_t len, const char *id, const char **id_out,
                const char **why)
{
    apr_array_header_t *events;
    sse_store_receipt *res;
    sse_bytes *c;
    const char *dummy;
    int status;

    if (!why)
        why = &dummy;
    if ((*why = sse_body_raw(p, data, len, event, id, NULL, &events))) {
        count_publish(HTTP_BAD_REQUEST);
        return HTTP_BAD_REQUEST;
    }
    c = apr_array_push(((sse_body_event *)events->elts)->channels);
    c->s = channel ? apr_pstrdup(p, channel) : "";
    c->len = channel ? strlen(channel) : 0;
    status = sse_store_publish(sse_store_get(), p, events, &res, why);
    count_publish(status);
    if (status == OK && id_out)
        *id_out = apr_pstrdup(p, res[0].id);
    return status;
}
