/* mod_sse.c -- Server-Sent Events with publish/subscribe for httpd 2.4.
 *
 * This file is the module's glue: its directives (all in one table below),
 * its configuration records, its hooks, and what both handlers share. The
 * work is elsewhere, one idea per file:
 *
 *   sse_wire.c     the text/event-stream format and field rules
 *   sse_body.c     publish bodies (form, JSON, raw) parsed into events
 *   sse_ring.c     the shared event ring and channel table (no httpd)
 *   sse_shm.c      the ring's memory and lock, kept across restarts
 *   sse_hub.c      per-child dispatcher thread, subscribers, replay
 *   sse_stream.c   the sse-stream handler (subscribers)
 *   sse_publish.c  the sse-publish handler (publishers)
 *   sse_cors.c     cross-origin headers and preflights
 *   sse_parse.c    a text/event-stream body read back into events
 *   sse_filter.c   publishing responses by their X-SSE-Publish header
 */
#include "mod_sse.h"
#include "sse_private.h"
#include "sse_shm.h"
#include "sse_hub.h"
#include "sse_cors.h"

#include <string.h>
#include <jansson.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <mpm_common.h>

/* ---- configuration ---- */

static void *create_server_conf(apr_pool_t *p, server_rec *s)
{
    sse_server_conf *sc = apr_pcalloc(p, sizeof(*sc));

    sc->buffer_size = SSE_DEFAULT_BUFFER_SIZE;
    sc->max_channels = SSE_DEFAULT_MAX_CHANNELS;
    return sc;
}

static void *create_dir_conf(apr_pool_t *p, char *dir)
{
    sse_dir_conf *dc = apr_pcalloc(p, sizeof(*dc));

    dc->heartbeat = -1;
    dc->retry = -1;
    dc->initial_replay = -1;
    dc->max_message = -1;
    dc->cors_credentials = -1;
    dc->publish_responses = -1;
    dc->direct_write = -1;
    dc->keepalive_wait = -1;
    return dc;
}

static void *merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    const sse_dir_conf *base = basev, *add = addv;
    sse_dir_conf *dc = apr_pcalloc(p, sizeof(*dc));

    dc->channel = add->channel ? add->channel : base->channel;
    dc->heartbeat = add->heartbeat >= 0 ? add->heartbeat : base->heartbeat;
    dc->retry_set = add->retry_set || base->retry_set;
    dc->retry = add->retry_set ? add->retry : base->retry;
    dc->initial_replay = add->initial_replay >= 0 ? add->initial_replay : base->initial_replay;
    dc->max_message = add->max_message >= 0 ? add->max_message : base->max_message;
    /* The origin list is replaced, not appended to, by an inner section. */
    if (add->cors_origins) {
        dc->cors_origins = add->cors_origins;
        dc->cors_any = add->cors_any;
    }
    else {
        dc->cors_origins = base->cors_origins;
        dc->cors_any = base->cors_any;
    }
    dc->cors_credentials = add->cors_credentials >= 0 ? add->cors_credentials
                                                      : base->cors_credentials;
    dc->publish_responses = add->publish_responses >= 0 ? add->publish_responses
                                                        : base->publish_responses;
    dc->direct_write = add->direct_write >= 0 ? add->direct_write : base->direct_write;
    dc->keepalive_wait = add->keepalive_wait >= 0 ? add->keepalive_wait
                                                  : base->keepalive_wait;
    return dc;
}

/* "<n>[K|M|G]" into bytes; NULL or what is wrong. */
static const char *parse_size(cmd_parms *cmd, const char *arg, apr_uint64_t *out)
{
    char *end;
    apr_int64_t n;
    apr_uint64_t mult = 1;

    if (!apr_isdigit(*arg))
        goto bad;
    n = apr_strtoi64(arg, &end, 10);
    switch (apr_toupper(*end)) {
    case 'K': mult = 1024; end++; break;
    case 'M': mult = 1024 * 1024; end++; break;
    case 'G': mult = 1024 * 1024 * 1024; end++; break;
    case '\0': break;
    default: goto bad;
    }
    if (apr_toupper(*end) == 'B')
        end++;
    if (*end || n <= 0 || (apr_uint64_t)n > UINT64_MAX / mult / 2)
        goto bad;
    *out = (apr_uint64_t)n * mult;
    return NULL;
bad:
    return apr_psprintf(cmd->pool, "%s: '%s' is not a size (a number, optionally "
                        "followed by K, M or G)", cmd->cmd->name, arg);
}

static const char *parse_count(cmd_parms *cmd, const char *arg, long min, long max, long *out)
{
    char *end;
    apr_int64_t n;

    if (!apr_isdigit(*arg))
        goto bad;
    n = apr_strtoi64(arg, &end, 10);
    if (*end || n < min || n > max)
        goto bad;
    *out = (long)n;
    return NULL;
bad:
    return apr_psprintf(cmd->pool, "%s: '%s' is not a whole number from %ld to %ld",
                        cmd->cmd->name, arg, min, max);
}

static const char *set_buffer_size(cmd_parms *cmd, void *dummy, const char *arg)
{
    sse_server_conf *sc = ap_get_module_config(cmd->server->module_config, &sse_module);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err || (err = parse_size(cmd, arg, &sc->buffer_size)))
        return err;
    if (sc->buffer_size < SSE_MIN_BUFFER_SIZE)
        return "SSEBufferSize: must be at least 64K";
    return NULL;
}

static const char *set_max_channels(cmd_parms *cmd, void *dummy, const char *arg)
{
    sse_server_conf *sc = ap_get_module_config(cmd->server->module_config, &sse_module);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    long n;

    if (err || (err = parse_count(cmd, arg, 1, 1000000, &n)))
        return err;
    sc->max_channels = (unsigned)n;
    return NULL;
}

static const char *set_channel(cmd_parms *cmd, void *conf, const char *arg)
{
    sse_dir_conf *dc = conf;
    const char *err = NULL;

    dc->channel = ap_expr_parse_cmd(cmd, arg, AP_EXPR_FLAG_STRING_RESULT, &err, NULL);
    if (err)
        return apr_psprintf(cmd->pool, "SSEChannel: cannot parse '%s': %s", arg, err);
    return NULL;
}

static const char *set_heartbeat(cmd_parms *cmd, void *conf, const char *arg)
{
    long n;
    const char *err = parse_count(cmd, arg, 0, 86400, &n);

    if (!err)
        ((sse_dir_conf *)conf)->heartbeat = (int)n;
    return err;
}

static const char *set_retry(cmd_parms *cmd, void *conf, const char *arg)
{
    sse_dir_conf *dc = conf;
    long n;
    const char *err = parse_count(cmd, arg, 0, SSE_RETRY_MAX, &n);

    if (!err) {
        dc->retry = n;
        dc->retry_set = 1;
    }
    return err;
}

static const char *set_initial_replay(cmd_parms *cmd, void *conf, const char *arg)
{
    long n;
    const char *err = parse_count(cmd, arg, 0, 100000, &n);

    if (!err)
        ((sse_dir_conf *)conf)->initial_replay = (int)n;
    return err;
}

static const char *set_max_message(cmd_parms *cmd, void *conf, const char *arg)
{
    apr_uint64_t n;
    const char *err = parse_size(cmd, arg, &n);

    if (err)
        return err;
    if (n > 64 * 1024 * 1024)
        return "SSEMaxMessageSize: at most 64M";
    ((sse_dir_conf *)conf)->max_message = (apr_int64_t)n;
    return NULL;
}

static const char *set_publish_responses(cmd_parms *cmd, void *conf, int on)
{
    ((sse_dir_conf *)conf)->publish_responses = on ? 1 : 0;
    return NULL;
}

static const char *set_keepalive_wait(cmd_parms *cmd, void *conf, const char *arg)
{
    apr_interval_time_t t;

    /* ap_timeout_parameter_parse() takes "soon" for 0 s: digits first. */
    if (!apr_isdigit(*arg) || ap_timeout_parameter_parse(arg, &t, "ms") != APR_SUCCESS
        || t > apr_time_from_sec(60))
        return apr_psprintf(cmd->pool, "%s: '%s' is not a time from 0 to 60s "
                            "(a number of milliseconds, or with a unit: ms, s)",
                            cmd->cmd->name, arg);
    ((sse_dir_conf *)conf)->keepalive_wait = t;
    return NULL;
}

static const command_rec sse_cmds[] = {
    AP_INIT_TAKE1("SSEBufferSize", set_buffer_size, NULL, RSRC_CONF,
                  "bytes of shared memory for retained events, e.g. 16M (server-wide)"),
    AP_INIT_TAKE1("SSEMaxChannels", set_max_channels, NULL, RSRC_CONF,
                  "channels that may exist at once (server-wide)"),
    AP_INIT_TAKE1("SSEChannel", set_channel, NULL, OR_FILEINFO | ACCESS_CONF,
                  "expression naming the channel(s) of this location, e.g. "
                  "\"user-%{REMOTE_USER}\""),
    AP_INIT_TAKE1("SSEHeartbeat", set_heartbeat, NULL, OR_FILEINFO | ACCESS_CONF,
                  "seconds of idleness before a heartbeat comment (0 = off)"),
    AP_INIT_TAKE1("SSERetry", set_retry, NULL, OR_FILEINFO | ACCESS_CONF,
                  "reconnection delay in milliseconds sent to clients"),
    AP_INIT_TAKE1("SSEInitialReplay", set_initial_replay, NULL, OR_FILEINFO | ACCESS_CONF,
                  "events replayed to a subscriber that sends no Last-Event-ID"),
    AP_INIT_TAKE1("SSEMaxMessageSize", set_max_message, NULL, OR_FILEINFO | ACCESS_CONF,
                  "largest publish body accepted, e.g. 64K"),
    AP_INIT_FLAG("SSEDirectWrite", ap_set_flag_slot,
                 (void *)APR_OFFSETOF(sse_dir_conf, direct_write), OR_FILEINFO | ACCESS_CONF,
                 "on (default): on plain HTTP/1.x the dispatcher writes events straight "
                 "to the socket; off: always through the output filters"),
    AP_INIT_ITERATE("SSECorsOrigin", sse_cors_set_origin, NULL, OR_FILEINFO | ACCESS_CONF,
                    "origins allowed cross-origin access (scheme://host[:port]), or *"),
    AP_INIT_FLAG("SSECorsCredentials", sse_cors_set_credentials, NULL, OR_FILEINFO | ACCESS_CONF,
                 "whether allowed origins may send cookies and HTTP auth"),
    AP_INIT_FLAG("SSEPublishResponses", set_publish_responses, NULL, OR_FILEINFO | ACCESS_CONF,
                 "publish responses that carry an X-SSE-Publish header (default off)"),
    AP_INIT_TAKE1("SSEPublishKeepAliveWait", set_keepalive_wait, NULL,
                  OR_FILEINFO | ACCESS_CONF,
                  "how long the worker that answered a publish waits for the next request "
                  "on its keep-alive connection (event MPM; default 0: hand it back at once)"),
    { NULL }
};

/* ---- what both handlers share ---- */

int sse_send_json(request_rec *r, int status, const char *json_text)
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

int sse_error(request_rec *r, int status, const char *why)
{
    json_t *o = json_object();
    char *text;
    int rc;

    ap_log_rerror(APLOG_MARK, status >= 500 ? APLOG_ERR : APLOG_INFO, 0, r,
                  "%d: %s", status, why);
    json_object_set_new(o, "error", json_string(why));
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    /* A body we refused unread is not drained: httpd closes the connection
     * after statuses that drop it (413 among them). */
    if (status == HTTP_REQUEST_ENTITY_TOO_LARGE)
        r->connection->keepalive = AP_CONN_CLOSE;
    rc = sse_send_json(r, status, text ? text : "{\"error\":\"(unprintable)\"}");
    free(text);
    return rc;
}

int sse_media_type_is(const char *ct, const char *type)
{
    apr_size_t n = strlen(type);

    if (!ct || strncasecmp(ct, type, n) != 0)
        return 0;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
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

apr_array_header_t *sse_request_channels(request_rec *r, const sse_dir_conf *dc,
                                         const apr_array_header_t *pairs,
                                         const char **why)
{
    apr_array_header_t *out = apr_array_make(r->pool, 2, sizeof(sse_bytes));
    const char *path;

    if (dc->channel) {
        const char *err = NULL, *val = ap_expr_str_exec(r, dc->channel, &err);
        char *last, *tok, *copy;

        if (err) {
            *why = apr_psprintf(r->pool, "SSEChannel could not be evaluated: %s", err);
            return NULL;
        }
        copy = apr_pstrdup(r->pool, val ? val : "");
        for (tok = apr_strtok(copy, " \t", &last); tok; tok = apr_strtok(NULL, " \t", &last))
            add_channel(r->pool, out, tok, strlen(tok));
        if (out->nelts == 0) {
            *why = "SSEChannel evaluated to an empty channel name";
            return NULL;
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

/* ---- the optional function for other modules ---- */

static int sse_publish(apr_pool_t *p, server_rec *s, const char *channel,
                       const char *event, const char *data, apr_size_t len,
                       const char *id, const char **id_out, const char **why)
{
    apr_array_header_t *events;
    sse_shm_result *res;
    const char *dummy;
    int status;

    if (!why)
        why = &dummy;
    if ((*why = sse_body_raw(p, data, len, event, id, NULL, &events)))
        return HTTP_BAD_REQUEST;
    add_channel(p, ((sse_body_event *)events->elts)->channels, channel ? channel : "",
                channel ? strlen(channel) : 0);
    status = sse_publish_events(s, p, events, &res, why);
    if (status == OK && id_out)
        *id_out = apr_pstrdup(p, res[0].id);
    return status;
}

/* ---- hooks ---- */

static int sse_handler(request_rec *r)
{
    if (!r->handler)
        return DECLINED;
    if (strcmp(r->handler, SSE_STREAM_HANDLER) == 0)
        return sse_stream_handler(r);
    if (strcmp(r->handler, SSE_PUBLISH_HANDLER) == 0)
        return sse_publish_handler(r);
    return DECLINED;
}

static int sse_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    return sse_shm_pre_config(pconf) == APR_SUCCESS ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

static int sse_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                           server_rec *s)
{
    /* The first pass only checks the configuration: no memory for it. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG)
        return OK;
    return sse_shm_post_config(pconf, s);
}

static void sse_child_init(apr_pool_t *pchild, server_rec *s)
{
    sse_shm_child_init(pchild, s);
    sse_hub_child_init(pchild, s);
}

static int sse_monitor(apr_pool_t *p, server_rec *s)
{
    sse_shm_monitor(s);
    return DECLINED;
}

static void sse_child_stopping(apr_pool_t *pchild, int graceful)
{
    sse_hub_stop();
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(sse_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(sse_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(sse_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_monitor(sse_monitor, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(sse_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(sse_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_filter(sse_filter_insert, NULL, NULL, APR_HOOK_MIDDLE);
    sse_filter_register();
    APR_REGISTER_OPTIONAL_FN(sse_publish);
}

AP_DECLARE_MODULE(sse) = {
    STANDARD20_MODULE_STUFF,
    create_dir_conf,
    merge_dir_conf,
    create_server_conf,
    NULL,
    sse_cmds,
    register_hooks,
    0
};
