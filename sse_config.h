/* sse_config.h -- the module's configuration records and directive bounds.
 *
 * Two records: one server-wide (read from the main server only: there is
 * one ring for all virtual hosts) and one per location, merged inner over
 * outer. Every numeric directive's default and bounds are declared here,
 * once: the directive table in sse_config.c checks them, its messages print
 * them, and the accessors below fall back to the defaults.
 */
#ifndef SSE_CONFIG_H
#define SSE_CONFIG_H

#include <httpd.h>
#include <http_config.h>
#include <ap_expr.h>

extern module AP_MODULE_DECLARE_DATA sse_module;

/*  directive                 default                 minimum      maximum */
#define SSE_BUFFER_SIZE_DEFAULT  (16 * 1024 * 1024)
#define SSE_BUFFER_SIZE_MIN      (64 * 1024)
#define SSE_BUFFER_SIZE_MAX      (APR_INT64_C(1) << 40)
#define SSE_MAX_CHANNELS_DEFAULT 8192
#define SSE_MAX_CHANNELS_MIN     1
#define SSE_MAX_CHANNELS_MAX     1000000
#define SSE_HEARTBEAT_DEFAULT    15                     /* seconds; 0 = off */
#define SSE_HEARTBEAT_MAX        86400
#define SSE_INITIAL_REPLAY_MAX   100000
#define SSE_MAX_MESSAGE_DEFAULT  (64 * 1024)
#define SSE_MAX_MESSAGE_MIN      1
#define SSE_MAX_MESSAGE_MAX      (64 * 1024 * 1024)
#define SSE_KEEPALIVE_WAIT_MAX   apr_time_from_sec(60)
#define SSE_CHANNEL_SUBS_MAX     10000000               /* 0 = no limit */
#define SSE_HISTORY_TTL_MAX      31536000               /* seconds (a year); 0 = none */
/* SSEOverloadRetry, ms. Not below SSE_OVERLOAD_RETRY_MIN: a refused client
 * told to come back at once would be refused again in a tight loop, the
 * opposite of shedding load. Not above 4/5 of SSE_RETRY_MAX, so that the
 * +25 % jitter stays a retry every client can hold. */
#define SSE_OVERLOAD_RETRY_DEFAULT 10000
#define SSE_OVERLOAD_RETRY_MIN   100
#define SSE_OVERLOAD_RETRY_MAX   (SSE_RETRY_MAX / 5 * 4)
#define SSE_MAX_SUBSCRIBERS_MAX  100000000              /* default 0 = no limit */
/* SSERetry: 0 .. SSE_RETRY_MAX (sse_wire.h), as clients parse it. */
/* SSERedisRetention: events of the one Redis stream (all channels). */
#define SSE_REDIS_RETENTION_DEFAULT 100000
#define SSE_REDIS_RETENTION_MIN  1
#define SSE_REDIS_RETENTION_MAX  100000000
#define SSE_REDIS_PREFIX_DEFAULT "sse:"
#define SSE_REDIS_PREFIX_MAX     200                    /* bytes */
/* SSEMaxStreamsPerChild: streams one child holds at once. Default (0 in the
 * record: not set) derived at child start from RLIMIT_NOFILE, less
 * SSE_FD_MARGIN_BASE + SSE_FD_MARGIN_PER_THREAD x ThreadsPerChild for httpd's
 * own descriptors (listeners, logs, the workers' connections), and never
 * below SSE_MAX_STREAMS_PER_CHILD_FLOOR. */
#define SSE_MAX_STREAMS_PER_CHILD_MIN   1
#define SSE_MAX_STREAMS_PER_CHILD_MAX   10000000
#define SSE_MAX_STREAMS_PER_CHILD_FLOOR 16
#define SSE_FD_MARGIN_BASE       128
#define SSE_FD_MARGIN_PER_THREAD 4

/* Server-wide. */
typedef struct {
    apr_int64_t buffer_size;        /* SSEBufferSize, bytes */
    apr_int64_t max_channels;       /* SSEMaxChannels */
    apr_int64_t max_subscribers;    /* SSEMaxSubscribers, 0 = no limit */
    const char *redis_url;          /* SSERedis as written; NULL: the ring store */
    struct sse_redis_url_s *redis;  /* ... parsed (sse_redis_url.h) */
    const char *redis_prefix;       /* SSERedisPrefix */
    apr_int64_t redis_retention;    /* SSERedisRetention */
    apr_int64_t max_streams_per_child; /* SSEMaxStreamsPerChild, 0: derived */
} sse_server_conf;

/* Per location; -1 (NULL for pointers) means "not set here". */
typedef struct {
    apr_array_header_t *channel;    /* SSEChannel: one ap_expr_info_t * a channel */
    apr_int64_t     heartbeat;      /* SSEHeartbeat, seconds, 0 = off */
    apr_int64_t     retry;          /* SSERetry, ms; -1: none sent */
    apr_int64_t     initial_replay; /* SSEInitialReplay */
    apr_int64_t     max_message;    /* SSEMaxMessageSize, bytes */
    apr_array_header_t *cors_origins; /* SSECorsOrigin, as given */
    int             cors_any;       /* SSECorsOrigin * */
    int             cors_credentials; /* SSECorsCredentials */
    int             publish_responses; /* SSEPublishResponses on|off */
    int             direct_write;   /* SSEDirectWrite */
    int             detach;         /* SSEDetach */
    apr_int64_t     keepalive_wait; /* SSEPublishKeepAliveWait, usec */
    apr_int64_t     channel_subs;   /* SSEMaxChannelSubscribers, 0 = no limit */
    apr_int64_t     overload_retry; /* SSEOverloadRetry, ms */
    apr_int64_t     history_ttl;    /* SSEHistoryTTL, seconds, 0 = none */
    /* sse-mercure (sse_mercure.h): the keys (sse_jwt.h), NULL when not set;
     * whether anonymous subscribers may subscribe (off); the token cookie's
     * name; the subscription events and API (off). */
    struct sse_jwt_key *mercure_publisher;  /* SSEMercurePublisherJWT */
    struct sse_jwt_key *mercure_subscriber; /* SSEMercureSubscriberJWT */
    int             mercure_anonymous;      /* SSEMercureAnonymous */
    const char     *mercure_cookie;         /* SSEMercureCookieName */
    int             mercure_subscriptions;  /* SSEMercureSubscriptions */
} sse_dir_conf;

#define SSE_DIR_HEARTBEAT(c)   ((c)->heartbeat >= 0 ? (c)->heartbeat : SSE_HEARTBEAT_DEFAULT)
#define SSE_DIR_RETRY(c)       ((c)->retry)
#define SSE_DIR_REPLAY(c)      ((c)->initial_replay >= 0 ? (c)->initial_replay : 0)
#define SSE_DIR_DIRECT(c)      ((c)->direct_write != 0)
#define SSE_DIR_DETACH(c)      ((c)->detach > 0)        /* default off */
#define SSE_DIR_KEEPALIVE_WAIT(c) ((c)->keepalive_wait >= 0 ? (c)->keepalive_wait : 0)
#define SSE_DIR_MAX_MESSAGE(c) ((c)->max_message >= 0 ? (c)->max_message : SSE_MAX_MESSAGE_DEFAULT)
#define SSE_DIR_CHANNEL_SUBS(c) ((c)->channel_subs >= 0 ? (c)->channel_subs : 0)
#define SSE_DIR_OVERLOAD_RETRY(c) \
    ((c)->overload_retry >= 0 ? (c)->overload_retry : SSE_OVERLOAD_RETRY_DEFAULT)
#define SSE_DIR_HISTORY_TTL(c) ((c)->history_ttl >= 0 ? (c)->history_ttl : 0)
#define SSE_MERCURE_COOKIE_DEFAULT "mercureAuthorization"
#define SSE_MERCURE_COOKIE_MAX  128                     /* bytes of SSEMercureCookieName */
#define SSE_DIR_MERCURE_ANONYMOUS(c) ((c)->mercure_anonymous > 0)
#define SSE_DIR_MERCURE_COOKIE(c) \
    ((c)->mercure_cookie ? (c)->mercure_cookie : SSE_MERCURE_COOKIE_DEFAULT)
#define SSE_DIR_MERCURE_SUBSCRIPTIONS(c) ((c)->mercure_subscriptions > 0)

/* The module record's configuration callbacks and directive table. */
void *sse_config_create_server(apr_pool_t *p, server_rec *s);
void *sse_config_create_dir(apr_pool_t *p, char *dir);
void *sse_config_merge_dir(apr_pool_t *p, void *base, void *add);
extern const command_rec sse_config_cmds[];

/* The records in force. */
const sse_server_conf *sse_config_server(const server_rec *s);
const sse_dir_conf *sse_config_dir(const request_rec *r);

#endif
