/* sse_publish.c -- the sse-publish handler: POST publishes, GET describes a
 * channel, DELETE ends a channel's streams and drops what it retains.
 *
 * A POST is read whole (it is at most SSEMaxMessageSize), parsed into
 * events (sse_body.c), and every field and size is checked before the ring
 * lock is taken: a request publishes all of its events, in order, or none.
 * Who may publish is Apache's business (Require, auth modules), not ours.
 */
#include "sse_private.h"
#include "sse_shm.h"
#include "sse_hub.h"
#include "sse_cors.h"

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

/* Reads the body, at most max bytes. Returns OK or an HTTP status. */
static int read_body(request_rec *r, apr_int64_t max, char **body, apr_size_t *len,
                     const char **why)
{
    apr_size_t cap = 8192, n = 0;
    char *buf;
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
    buf = apr_palloc(r->pool, cap + 1);
    if (ap_should_client_block(r)) {
        for (;;) {
            if (n == cap) {
                char *bigger = apr_palloc(r->pool, cap * 2 + 1);
                memcpy(bigger, buf, n);
                buf = bigger;
                cap *= 2;
            }
            got = ap_get_client_block(r, buf + n, cap - n);
            if (got == 0)
                break;
            if (got < 0) {
                *why = "error reading the request body";
                return HTTP_BAD_REQUEST;
            }
            n += (apr_size_t)got;
            if ((apr_int64_t)n > max) {
                *why = apr_psprintf(r->pool, "body is over the limit of %" APR_INT64_T_FMT
                                    " bytes (SSEMaxMessageSize)", max);
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            }
        }
    }
    buf[n] = '\0';
    *body = buf;
    *len = n;
    return OK;
}

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

int sse_publish_events(server_rec *s, apr_pool_t *p, const apr_array_header_t *events,
                       sse_shm_result **res, const char **why)
{
    const sse_body_event *ev = (const sse_body_event *)events->elts;
    sse_shm *sh = sse_shm_get();
    int i;

    if (!sh) {
        *why = "the event ring is not available";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    for (i = 0; i < events->nelts; i++) {
        /* A server id is at most SSE_ID_BUFSIZE bytes: size the frame for it. */
        sse_wire_event w = { "", ev[i].id.s ? ev[i].id.len : SSE_ID_BUFSIZE,
                             ev[i].event.s, ev[i].event.s ? ev[i].event.len : 0,
                             ev[i].retry, ev[i].data.s, ev[i].data.len };

        if ((*why = sse_body_check_channels(p, ev[i].channels)) || (*why = sse_body_check(&ev[i]))) {
            if (events->nelts > 1)
                *why = apr_psprintf(p, "event %d: %s", i, *why);
            return HTTP_BAD_REQUEST;
        }
        if (sse_wire_frame_size(&w) > sse_ring_max_frame(sh->ring)) {
            *why = "event too large for the event ring (raise SSEBufferSize)";
            return HTTP_REQUEST_ENTITY_TOO_LARGE;
        }
    }
    *res = apr_pcalloc(p, sizeof(**res) * (apr_size_t)events->nelts);
    return sse_shm_publish(s, ev, events->nelts, *res, why);
}

/* The answer to a POST: {"id":...,"subscribers":n} per event, in an array
 * when the body was one. Written by hand rather than with jansson because
 * it is on every publish; ids are valid UTF-8 without NUL (sse_wire), so
 * '"', '\\' and control characters are all there is to escape. */
static const char *answer_json(apr_pool_t *p, const sse_shm_result *res, int n, int is_array)
{
    static const char hex[] = "0123456789abcdef";
    /* per event: an id escaped 6 bytes for 1 at worst, a 20-digit count */
    char *text = apr_palloc(p, (apr_size_t)n * (6 * SSE_FIELD_MAX + 64) + 3);
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
    sse_shm_result *res;
    const char *why = NULL, *fallback_why = NULL;
    char *body;
    apr_size_t len;
    int i, j, status, is_array = 0;

    if ((status = read_body(r, SSE_DIR_MAX_MESSAGE(dc), &body, &len, &why)) != OK)
        return sse_error(r, status, why);
    if (sse_media_type_is(ct, "application/x-www-form-urlencoded")) {
        why = sse_body_parse_form(r->pool, body, len, &events);
    }
    else if (sse_media_type_is(ct, "application/json")) {
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
        return sse_error(r, HTTP_BAD_REQUEST, why);

    fallback = sse_request_channels(r, dc, pairs, &fallback_why);
    ev = (sse_body_event *)events->elts;
    for (i = 0; i < events->nelts; i++) {
        if (dc->channel && ev[i].channels->nelts) {
            const sse_bytes *c = (const sse_bytes *)ev[i].channels->elts;
            for (j = 0; j < ev[i].channels->nelts; j++) {
                if (!fallback || !within(fallback, &c[j]))
                    return sse_error(r, HTTP_FORBIDDEN, apr_psprintf(r->pool,
                        "channel '%.*s' is not allowed here: this location publishes "
                        "only to the channel(s) SSEChannel names", (int)c[j].len, c[j].s));
            }
        }
        if (ev[i].channels->nelts == 0) {
            if (!fallback)
                return sse_error(r, HTTP_BAD_REQUEST, fallback_why);
            ev[i].channels = fallback;
        }
    }
    if ((status = sse_publish_events(r->server, r->pool, events, &res, &why)) != OK)
        return sse_error(r, status, why);

    status = sse_send_json(r, HTTP_OK, answer_json(r->pool, res, events->nelts, is_array));
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "published %d event(s), first id %s",
                  events->nelts, res[0].id);
    return status;
}

/* The one channel a GET or DELETE is about. */
static const sse_bytes *one_channel(request_rec *r, const sse_dir_conf *dc,
                                    const apr_array_header_t *pairs, const char **why)
{
    apr_array_header_t *channels = sse_request_channels(r, dc, pairs, why);

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
    sse_shm *sh = sse_shm_get();
    const sse_bytes *c;
    const char *why;
    sse_ring_chan_info info;
    apr_uint32_t dropped = 0;
    int slot, found = 0;
    json_t *o;
    char *text;

    if (!(c = one_channel(r, dc, pairs, &why)))
        return sse_error(r, HTTP_BAD_REQUEST, why);
    if (!sh)
        return sse_error(r, HTTP_SERVICE_UNAVAILABLE, "the event ring is not available");
    if (sse_shm_lock(r->server) != APR_SUCCESS)
        return sse_error(r, HTTP_SERVICE_UNAVAILABLE, "cannot take the sse-ring mutex");
    slot = sse_ring_chan_find(sh->ring, c->s, c->len);
    if (slot >= 0) {
        sse_ring_chan_get(sh->ring, slot, &info);
        found = info.published || info.retained || info.subscribers;
        if (found && delete)
            dropped = sse_ring_delete(sh->ring, slot, sse_now_ms());
    }
    sse_shm_unlock();
    if (!found)
        return sse_error(r, HTTP_NOT_FOUND, apr_psprintf(r->pool,
                         "channel '%.*s' has no events and no subscribers",
                         (int)c->len, c->s));
    o = json_object();
    json_object_set_new(o, "channel", json_stringn(c->s, c->len));
    if (delete) {
        sse_shm_wake(&slot, 1);
        json_object_set_new(o, "messages", json_integer(dropped));
        json_object_set_new(o, "subscribers", json_integer((json_int_t)info.subscribers));
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "channel '%.*s' deleted: %u event(s) "
                      "dropped, %" APR_UINT64_T_FMT " stream(s) ended",
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
    slot = sse_send_json(r, HTTP_OK, text ? text : "{}");
    free(text);
    return slot;
}

static int handle(request_rec *r, const sse_dir_conf *dc)
{
    apr_array_header_t *pairs;
    const char *why;

    if (sse_cors_apply(r, dc, "GET, POST, DELETE") || r->method_number == M_OPTIONS) {
        apr_table_setn(r->headers_out, "Allow", PUBLISH_ALLOW);
        r->status = HTTP_NO_CONTENT;
        return OK;
    }
    if ((why = sse_body_parse_pairs(r->pool, r->args ? r->args : "",
                                    r->args ? strlen(r->args) : 0, &pairs)))
        return sse_error(r, HTTP_BAD_REQUEST, why);
    switch (r->method_number) {
    case M_POST:
        return publish(r, dc, pairs);
    case M_GET:
        return describe_or_delete(r, dc, pairs, 0);
    case M_DELETE:
        return describe_or_delete(r, dc, pairs, 1);
    default:
        apr_table_setn(r->headers_out, "Allow", PUBLISH_ALLOW);
        return sse_error(r, HTTP_METHOD_NOT_ALLOWED, apr_psprintf(r->pool,
                         "method %s not allowed on a publish location", r->method));
    }
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
        ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "keep-alive: request came "
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
     * sse_hub_stopping), hence the slices. */
    for (; wait > 0 && !sse_hub_stopping(); wait -= WAIT_SLICE) {
        int ms = (int)(((wait < WAIT_SLICE ? wait : WAIT_SLICE) + 999) / 1000);

        if (poll(&pfd, 1, ms) != 0)
            return;
    }
}

int sse_publish_handler(request_rec *r)
{
    const sse_dir_conf *dc = ap_get_module_config(r->per_dir_config, &sse_module);
    int rc = handle(r, dc);

    if (rc == OK)
        wait_for_next_request(r, dc);
    return rc;
}
