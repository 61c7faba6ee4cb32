/* sse_config.c -- the directive table, its setters, and the merge.
 *
 * Every directive is in the one table at the end of this file. Numeric
 * directives are described by a num_spec (where the value goes, its form
 * and its bounds, from sse_config.h) and share one setter, so that every
 * bound is checked the same way and every message names the directive and
 * prints the bounds it was checked against. Sizes, counts and times are
 * read by sse_num.c (pure, unit-tested and fuzzed).
 */
#include "sse_config.h"
#include "sse_body.h"
#include "sse_jwt.h"
#include "sse_num.h"
#include "sse_redis_url.h"
#include "sse_wire.h"

#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <http_core.h>
#include <http_log.h>

APLOG_USE_MODULE(sse);

void *sse_config_create_server(apr_pool_t *p, server_rec *s)
{
    sse_server_conf *sc = apr_pcalloc(p, sizeof(*sc));

    sc->buffer_size = SSE_BUFFER_SIZE_DEFAULT;
    sc->max_channels = SSE_MAX_CHANNELS_DEFAULT;
    sc->redis_prefix = SSE_REDIS_PREFIX_DEFAULT;
    sc->redis_retention = SSE_REDIS_RETENTION_DEFAULT;
    return sc;
}

void *sse_config_create_dir(apr_pool_t *p, char *dir)
{
    sse_dir_conf *dc = apr_pcalloc(p, sizeof(*dc));

    dc->heartbeat = -1;
    dc->retry = -1;
    dc->initial_replay = -1;
    dc->max_message = -1;
    dc->cors_credentials = -1;
    dc->publish_responses = -1;
    dc->direct_write = -1;
    dc->detach = -1;
    dc->keepalive_wait = -1;
    dc->channel_subs = -1;
    dc->overload_retry = -1;
    dc->history_ttl = -1;
    dc->mercure_anonymous = -1;
    dc->mercure_subscriptions = -1;
    return dc;
}

#define MERGE(field) (add->field >= 0 ? add->field : base->field)

void *sse_config_merge_dir(apr_pool_t *p, void *basev, void *addv)
{
    const sse_dir_conf *base = basev, *add = addv;
    sse_dir_conf *dc = apr_pcalloc(p, sizeof(*dc));

    dc->channel = add->channel ? add->channel : base->channel;
    dc->heartbeat = MERGE(heartbeat);
    dc->retry = MERGE(retry);
    dc->initial_replay = MERGE(initial_replay);
    dc->max_message = MERGE(max_message);
    /* The origin list is replaced, not appended to, by an inner section. */
    if (add->cors_origins) {
        dc->cors_origins = add->cors_origins;
        dc->cors_any = add->cors_any;
    }
    else {
        dc->cors_origins = base->cors_origins;
        dc->cors_any = base->cors_any;
    }
    dc->cors_credentials = MERGE(cors_credentials);
    dc->publish_responses = MERGE(publish_responses);
    dc->direct_write = MERGE(direct_write);
    dc->detach = MERGE(detach);
    dc->keepalive_wait = MERGE(keepalive_wait);
    dc->channel_subs = MERGE(channel_subs);
    dc->overload_retry = MERGE(overload_retry);
    dc->history_ttl = MERGE(history_ttl);
    dc->mercure_publisher = add->mercure_publisher ? add->mercure_publisher
                                                   : base->mercure_publisher;
    dc->mercure_subscriber = add->mercure_subscriber ? add->mercure_subscriber
                                                     : base->mercure_subscriber;
    dc->mercure_anonymous = MERGE(mercure_anonymous);
    dc->mercure_cookie = add->mercure_cookie ? add->mercure_cookie : base->mercure_cookie;
    dc->mercure_subscriptions = MERGE(mercure_subscriptions);
    return dc;
}

const sse_server_conf *sse_config_server(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &sse_module);
}

const sse_dir_conf *sse_config_dir(const request_rec *r)
{
    return ap_get_module_config(r->per_dir_config, &sse_module);
}

/* ---- numeric directives ---- */

typedef enum {
    NUM_COUNT,          /* a whole number */
    NUM_SIZE,           /* bytes: a number, optionally followed by K, M or G */
    NUM_TIME            /* microseconds, written in ms (the default) or s */
} num_form;

typedef struct {
    num_form    form;
    int         server;     /* in sse_server_conf (main server only), else per location */
    apr_size_t  offset;     /* of the apr_int64_t that takes the value */
    apr_int64_t min, max;
} num_spec;

/* A size as an administrator writes it: "64K" rather than "65536". */
static const char *size_text(apr_pool_t *p, apr_int64_t n)
{
    char buf[SSE_NUM_TEXT_SIZE];

    sse_num_size_text(n, buf);
    return apr_pstrdup(p, buf);
}

static const char *set_number(cmd_parms *cmd, void *dir_conf, const char *arg)
{
    const num_spec *spec = cmd->info;
    void *conf = dir_conf;
    const char *err;
    apr_int64_t n;

    if (spec->server) {
        if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY)))
            return err;
        conf = ap_get_module_config(cmd->server->module_config, &sse_module);
    }
    switch (spec->form) {
    case NUM_COUNT:
        if (sse_num_count(arg, spec->min, spec->max, &n) != SSE_NUM_OK)
            return apr_psprintf(cmd->pool, "%s: '%s' is not a whole number from %"
                                APR_INT64_T_FMT " to %" APR_INT64_T_FMT,
                                cmd->cmd->name, arg, spec->min, spec->max);
        break;
    case NUM_SIZE:
        switch (sse_num_size(arg, spec->min, spec->max, &n)) {
        case SSE_NUM_OK:
            break;
        case SSE_NUM_LOW:
            return apr_psprintf(cmd->pool, "%s: must be at least %s", cmd->cmd->name,
                                size_text(cmd->pool, spec->min));
        case SSE_NUM_HIGH:
            return apr_psprintf(cmd->pool, "%s: at most %s", cmd->cmd->name,
                                size_text(cmd->pool, spec->max));
        default:
            return apr_psprintf(cmd->pool, "%s: '%s' is not a size (a number, optionally "
                                "followed by K, M or G)", cmd->cmd->name, arg);
        }
        break;
    case NUM_TIME:
        if (sse_num_time(arg, spec->min, spec->max, &n) != SSE_NUM_OK)
            return apr_psprintf(cmd->pool, "%s: '%s' is not a time from %" APR_INT64_T_FMT
                                " to %" APR_INT64_T_FMT "s (a number of milliseconds, or "
                                "with a unit: ms, s)", cmd->cmd->name, arg,
                                apr_time_sec(spec->min), apr_time_sec(spec->max));
        break;
    default:
        return "mod_sse: unknown directive form";
    }
    *(apr_int64_t *)((char *)conf + spec->offset) = n;
    return NULL;
}

#define SERVER_NUM(form, field, min, max) \
    { form, 1, APR_OFFSETOF(sse_server_conf, field), min, max }
#define DIR_NUM(form, field, min, max) \
    { form, 0, APR_OFFSETOF(sse_dir_conf, field), min, max }

static const num_spec buffer_size_spec = SERVER_NUM(NUM_SIZE, buffer_size,
                                                    SSE_BUFFER_SIZE_MIN, SSE_BUFFER_SIZE_MAX);
static const num_spec max_channels_spec = SERVER_NUM(NUM_COUNT, max_channels,
                                                     SSE_MAX_CHANNELS_MIN, SSE_MAX_CHANNELS_MAX);
static const num_spec max_subscribers_spec = SERVER_NUM(NUM_COUNT, max_subscribers,
                                                        0, SSE_MAX_SUBSCRIBERS_MAX);
static const num_spec redis_retention_spec = SERVER_NUM(NUM_COUNT, redis_retention,
                                                        SSE_REDIS_RETENTION_MIN,
                                                        SSE_REDIS_RETENTION_MAX);
static const num_spec max_streams_spec = SERVER_NUM(NUM_COUNT, max_streams_per_child,
                                                    SSE_MAX_STREAMS_PER_CHILD_MIN,
                                                    SSE_MAX_STREAMS_PER_CHILD_MAX);
static const num_spec heartbeat_spec = DIR_NUM(NUM_COUNT, heartbeat, 0, SSE_HEARTBEAT_MAX);
static const num_spec retry_spec = DIR_NUM(NUM_COUNT, retry, 0, SSE_RETRY_MAX);
static const num_spec initial_replay_spec = DIR_NUM(NUM_COUNT, initial_replay,
                                                    0, SSE_INITIAL_REPLAY_MAX);
static const num_spec max_message_spec = DIR_NUM(NUM_SIZE, max_message,
                                                 SSE_MAX_MESSAGE_MIN, SSE_MAX_MESSAGE_MAX);
static const num_spec keepalive_wait_spec = DIR_NUM(NUM_TIME, keepalive_wait,
                                                    0, SSE_KEEPALIVE_WAIT_MAX);
static const num_spec channel_subs_spec = DIR_NUM(NUM_COUNT, channel_subs,
                                                  0, SSE_CHANNEL_SUBS_MAX);
static const num_spec overload_retry_spec = DIR_NUM(NUM_COUNT, overload_retry,
                                                    SSE_OVERLOAD_RETRY_MIN,
                                                    SSE_OVERLOAD_RETRY_MAX);
static const num_spec history_ttl_spec = DIR_NUM(NUM_COUNT, history_ttl,
                                                 0, SSE_HISTORY_TTL_MAX);

/* ---- other directives ---- */

/* SSEChannel "a-%{X} b": the administrator's own white space separates
 * channels, and nothing else does. Each word is its own string expression,
 * so a value substituted from the request (a header, a query argument)
 * always stays (part of) one channel name, whatever spaces it holds; a
 * word's %{...} may itself contain spaces without being cut. */
static const char *set_channel(cmd_parms *cmd, void *conf, const char *arg)
{
    sse_dir_conf *dc = conf;
    const char *p = arg, *word, *err = NULL;
    int depth;

    dc->channel = apr_array_make(cmd->pool, 2, sizeof(ap_expr_info_t *));
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        for (word = p, depth = 0; *p && (depth || (*p != ' ' && *p != '\t')); p++) {
            if (p[0] == '%' && p[1] == '{') {
                depth++;
                p++;
            }
            else if (*p == '}' && depth) {
                depth--;
            }
        }
        if (depth)
            return apr_psprintf(cmd->pool, "SSEChannel: cannot parse '%s': an unclosed %%{",
                                arg);
        *(ap_expr_info_t **)apr_array_push(dc->channel) =
            ap_expr_parse_cmd(cmd, apr_pstrmemdup(cmd->pool, word, (apr_size_t)(p - word)),
                              AP_EXPR_FLAG_STRING_RESULT, &err, NULL);
        if (err)
            return apr_psprintf(cmd->pool, "SSEChannel: cannot parse '%s': %s", arg, err);
    }
    if (dc->channel->nelts == 0)
        return "SSEChannel: names no channel";
    if (dc->channel->nelts > SSE_BODY_MAX_CHANNELS)
        return "SSEChannel: more than " SSE_STR(SSE_BODY_MAX_CHANNELS) " channels";
    return NULL;
}

/* SSERedis: parsed here, so that a bad address stops the start-up with a
 * message naming the directive; the password is never echoed. */
static const char *set_redis(cmd_parms *cmd, void *unused, const char *arg)
{
    sse_server_conf *sc = ap_get_module_config(cmd->server->module_config, &sse_module);
    sse_redis_url *u = apr_palloc(cmd->pool, sizeof(*u));
    const char *err;

    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY)))
        return err;
    if ((err = sse_redis_url_parse(arg, u)))
        return apr_psprintf(cmd->pool, "SSERedis: %s", err);
    sc->redis_url = arg;
    sc->redis = u;
    return NULL;
}

/* SSERedisPrefix: every key starts with it; printable, no space, so that
 * it reads the same in redis-cli as in the configuration. */
static const char *set_redis_prefix(cmd_parms *cmd, void *unused, const char *arg)
{
    sse_server_conf *sc = ap_get_module_config(cmd->server->module_config, &sse_module);
    const char *err, *p;

    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY)))
        return err;
    if (!*arg)
        return "SSERedisPrefix: empty (keys of several applications would mix)";
    if (strlen(arg) > SSE_REDIS_PREFIX_MAX)
        return "SSERedisPrefix: longer than " SSE_STR(SSE_REDIS_PREFIX_MAX) " bytes";
    for (p = arg; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return "SSERedisPrefix: contains a space or a control character";
    }
    sc->redis_prefix = arg;
    return NULL;
}

/* scheme "://" host [":" port], as a browser serializes an Origin. */
static int is_origin(const char *s)
{
    const char *p = s;

    if (!apr_isalpha(*p))
        return 0;
    while (apr_isalnum(*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    if (strncmp(p, "://", 3) != 0 || !p[3])
        return 0;
    for (p += 3; *p; p++) {
        if (*p == '/' || *p == '?' || *p == '#' || apr_isspace(*p) || *p == '*')
            return 0;
    }
    return 1;
}

static const char *set_cors_origin(cmd_parms *cmd, void *conf, const char *arg)
{
    sse_dir_conf *dc = conf;

    if (strcmp(arg, "*") == 0) {
        if (dc->cors_credentials == 1)
            return "SSECorsOrigin: '*' cannot be used with SSECorsCredentials on "
                   "(browsers refuse it): list the origins";
        dc->cors_any = 1;
    }
    else if (!is_origin(arg)) {
        return apr_psprintf(cmd->pool, "SSECorsOrigin: '%s' is not an origin "
                            "(scheme://host[:port], no path), nor '*'", arg);
    }
    if (!dc->cors_origins)
        dc->cors_origins = apr_array_make(cmd->pool, 2, sizeof(const char *));
    *(const char **)apr_array_push(dc->cors_origins) = arg;
    return NULL;
}

static const char *set_cors_credentials(cmd_parms *cmd, void *conf, int on)
{
    sse_dir_conf *dc = conf;

    if (on && dc->cors_any)
        return "SSECorsCredentials: cannot be on where SSECorsOrigin is '*' "
               "(browsers refuse it): list the origins";
    dc->cors_credentials = on;
    return NULL;
}

/* SSEMercurePublisherJWT and SSEMercureSubscriberJWT <key> [alg]: the key
 * is made now (a PEM file read now), so that a bad key stops the start-up
 * with a message naming the directive. */
static const char *set_mercure_key(cmd_parms *cmd, void *conf, const char *arg,
                                   const char *alg)
{
    sse_dir_conf *dc = conf;
    struct sse_jwt_key *key;
    const char *err = sse_jwt_key_make(cmd->pool, arg, alg, &key);

    if (err)
        return apr_psprintf(cmd->pool, "%s: %s", cmd->cmd->name, err);
    if (cmd->info)
        dc->mercure_publisher = key;
    else
        dc->mercure_subscriber = key;
    return NULL;
}

/* SSEMercureCookieName: an RFC 6265 cookie name (an HTTP token). */
static const char *set_mercure_cookie(cmd_parms *cmd, void *conf, const char *arg)
{
    sse_dir_conf *dc = conf;
    const char *p;

    if (!*arg || strlen(arg) > SSE_MERCURE_COOKIE_MAX)
        return "SSEMercureCookieName: 1 to " SSE_STR(SSE_MERCURE_COOKIE_MAX) " bytes";
    for (p = arg; *p; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f
            || strchr("()<>@,;:\\\"/[]?={}", *p))
            return apr_psprintf(cmd->pool, "SSEMercureCookieName: '%s' is not a cookie name "
                                "(letters, digits and !#$%%&'*+-.^_`|~)", arg);
    }
    dc->mercure_cookie = arg;
    return NULL;
}

#define LOCATION (OR_FILEINFO | ACCESS_CONF)
#define FLAG_SLOT(field) (void *)APR_OFFSETOF(sse_dir_conf, field)

const command_rec sse_config_cmds[] = {
    AP_INIT_TAKE1("SSEBufferSize", set_number, (void *)&buffer_size_spec, RSRC_CONF,
                  "bytes of shared memory for retained events, e.g. 16M (server-wide)"),
    AP_INIT_TAKE1("SSEMaxChannels", set_number, (void *)&max_channels_spec, RSRC_CONF,
                  "channels that may exist at once (server-wide)"),
    AP_INIT_TAKE1("SSEMaxSubscribers", set_number, (void *)&max_subscribers_spec, RSRC_CONF,
                  "streams that may be open at once, all children together (server-wide; "
                  "0 = no limit)"),
    AP_INIT_TAKE1("SSEMaxStreamsPerChild", set_number, (void *)&max_streams_spec, RSRC_CONF,
                  "streams one child holds at once; beyond, refused with a retry "
                  "(server-wide; default: the descriptor limit less a margin)"),
    AP_INIT_TAKE1("SSERedis", set_redis, NULL, RSRC_CONF,
                  "redis://[[user]:password@]host[:port][/db] or unix:/path[?db=N]: share "
                  "channels with every server using this Redis and prefix (server-wide)"),
    AP_INIT_TAKE1("SSERedisPrefix", set_redis_prefix, NULL, RSRC_CONF,
                  "prefix of every Redis key of this module (default sse:; server-wide)"),
    AP_INIT_TAKE1("SSERedisRetention", set_number, (void *)&redis_retention_spec, RSRC_CONF,
                  "events Redis keeps for replay, all channels together (default 100000; "
                  "server-wide)"),
    AP_INIT_TAKE1("SSEChannel", set_channel, NULL, LOCATION,
                  "expression naming the channel(s) of this location, e.g. "
                  "\"user-%{REMOTE_USER}\""),
    AP_INIT_TAKE1("SSEHeartbeat", set_number, (void *)&heartbeat_spec, LOCATION,
                  "seconds of idleness before a heartbeat comment (0 = off)"),
    AP_INIT_TAKE1("SSERetry", set_number, (void *)&retry_spec, LOCATION,
                  "reconnection delay in milliseconds sent to clients"),
    AP_INIT_TAKE1("SSEInitialReplay", set_number, (void *)&initial_replay_spec, LOCATION,
                  "events replayed to a subscriber that sends no Last-Event-ID"),
    AP_INIT_TAKE1("SSEMaxMessageSize", set_number, (void *)&max_message_spec, LOCATION,
                  "largest publish body accepted, e.g. 64K"),
    AP_INIT_FLAG("SSEDirectWrite", ap_set_flag_slot, FLAG_SLOT(direct_write), LOCATION,
                 "on (default): on plain HTTP/1.x the dispatcher writes events straight "
                 "to the socket; off: always through the output filters"),
    /* Also at server level (RSRC_CONF), so that one line turns it on for
     * every location of a server. */
    AP_INIT_FLAG("SSEDetach", ap_set_flag_slot, FLAG_SLOT(detach), LOCATION | RSRC_CONF,
                 "on: plain HTTP/1.x streams are handed to the child's dispatcher and "
                 "hold no worker; off (default): a worker per stream"),
    AP_INIT_ITERATE("SSECorsOrigin", set_cors_origin, NULL, LOCATION,
                    "origins allowed cross-origin access (scheme://host[:port]), or *"),
    AP_INIT_FLAG("SSECorsCredentials", set_cors_credentials, NULL, LOCATION,
                 "whether allowed origins may send cookies and HTTP auth"),
    AP_INIT_FLAG("SSEPublishResponses", ap_set_flag_slot, FLAG_SLOT(publish_responses),
                 LOCATION, "publish responses that carry an X-SSE-Publish header "
                 "(default off)"),
    AP_INIT_TAKE1("SSEPublishKeepAliveWait", set_number, (void *)&keepalive_wait_spec,
                  LOCATION, "how long the worker that answered a publish waits for the "
                  "next request on its keep-alive connection (event MPM; default 0: hand "
                  "it back at once)"),
    AP_INIT_TAKE1("SSEMaxChannelSubscribers", set_number, (void *)&channel_subs_spec,
                  LOCATION, "streams of this location beyond this many subscribers on "
                  "one of their channels (all processes) are refused (0 = no limit)"),
    AP_INIT_TAKE1("SSEOverloadRetry", set_number, (void *)&overload_retry_spec, LOCATION,
                  "milliseconds (+/- 25 %) before a refused stream's client comes back"),
    AP_INIT_TAKE1("SSEHistoryTTL", set_number, (void *)&history_ttl_spec, LOCATION,
                  "seconds an event stays replayable to this location's streams "
                  "(0 = until overwritten)"),
    AP_INIT_TAKE12("SSEMercurePublisherJWT", set_mercure_key, (void *)1, LOCATION,
                   "sse-mercure: key that verifies publishers' tokens, and its algorithm "
                   "(HS256 default, HS384, HS512; RS256, RS512, ES256, ES384 with the path "
                   "of a PEM public key)"),
    AP_INIT_TAKE12("SSEMercureSubscriberJWT", set_mercure_key, NULL, LOCATION,
                   "sse-mercure: key that verifies subscribers' tokens, and its algorithm"),
    AP_INIT_FLAG("SSEMercureAnonymous", ap_set_flag_slot, FLAG_SLOT(mercure_anonymous),
                 LOCATION, "sse-mercure: subscribers without a token may subscribe (to "
                 "public updates; default off)"),
    AP_INIT_TAKE1("SSEMercureCookieName", set_mercure_cookie, NULL, LOCATION,
                  "sse-mercure: the cookie that may hold a token (default "
                  SSE_MERCURE_COOKIE_DEFAULT ")"),
    AP_INIT_FLAG("SSEMercureSubscriptions", ap_set_flag_slot,
                 FLAG_SLOT(mercure_subscriptions), LOCATION,
                 "sse-mercure: subscription events and the subscriptions API (default off)"),
    { NULL }
};
