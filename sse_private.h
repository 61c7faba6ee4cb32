/* sse_private.h -- what the module's units share: configuration records and
 * the module declaration. Nothing here is for other modules (see mod_sse.h).
 */
#ifndef SSE_PRIVATE_H
#define SSE_PRIVATE_H

#include <httpd.h>
#include <http_config.h>
#include <ap_expr.h>

#include "sse_body.h"

extern module AP_MODULE_DECLARE_DATA sse_module;

#define SSE_STREAM_HANDLER  "sse-stream"
#define SSE_PUBLISH_HANDLER "sse-publish"
#define SSE_MUTEX_NAME      "sse-ring"

#define SSE_DEFAULT_BUFFER_SIZE   (16 * 1024 * 1024)
#define SSE_MIN_BUFFER_SIZE       (64 * 1024)
#define SSE_DEFAULT_MAX_CHANNELS  8192
#define SSE_DEFAULT_HEARTBEAT     15
#define SSE_DEFAULT_MAX_MESSAGE   (64 * 1024)

/* Server-wide, read from the main server only: the ring is one for all. */
typedef struct {
    apr_uint64_t buffer_size;
    unsigned     max_channels;
} sse_server_conf;

/* Per location; -1 (NULL for pointers) means "not set here". */
typedef struct {
    ap_expr_info_t *channel;        /* SSEChannel */
    int             heartbeat;      /* SSEHeartbeat, seconds, 0 = off */
    long            retry;          /* SSERetry, ms; -1: none sent */
    int             retry_set;
    int             initial_replay; /* SSEInitialReplay */
    apr_int64_t     max_message;    /* SSEMaxMessageSize */
    apr_array_header_t *cors_origins; /* SSECorsOrigin, as given */
    int             cors_any;       /* SSECorsOrigin * */
    int             cors_credentials; /* SSECorsCredentials */
    int             publish_responses; /* SSEPublishResponses on|off */
    int             direct_write;   /* SSEDirectWrite */
    apr_interval_time_t keepalive_wait; /* SSEPublishKeepAliveWait, usec */
} sse_dir_conf;

#define SSE_DIR_HEARTBEAT(c)   ((c)->heartbeat >= 0 ? (c)->heartbeat : SSE_DEFAULT_HEARTBEAT)
#define SSE_DIR_REPLAY(c)      ((c)->initial_replay >= 0 ? (c)->initial_replay : 0)
#define SSE_DIR_DIRECT(c)      ((c)->direct_write != 0)
#define SSE_DIR_KEEPALIVE_WAIT(c) ((c)->keepalive_wait >= 0 ? (c)->keepalive_wait : 0)
#define SSE_DIR_MAX_MESSAGE(c) ((c)->max_message >= 0 ? (c)->max_message : SSE_DEFAULT_MAX_MESSAGE)

/* Helpers shared by the two handlers (mod_sse.c). */

/* True when a Content-Type header value is the media type `type`
 * (case-insensitive, parameters ignored). */
int sse_media_type_is(const char *content_type, const char *type);
/* Sends {"error": why} with status; returns OK for the handler to return. */
int sse_error(request_rec *r, int status, const char *why);
/* Sends a JSON body (jansson text) with status. */
int sse_send_json(request_rec *r, int status, const char *json_text);
/* The channels a request names (SSEChannel > ?channel= > path info), or
 * NULL with *why set. pairs: the parsed query string. */
apr_array_header_t *sse_request_channels(request_rec *r, const sse_dir_conf *dc,
                                         const apr_array_header_t *pairs,
                                         const char **why);

/* Checks every event (channels, fields, size) and publishes them all, in
 * order, or none. Returns OK with one result per event in *res, or an HTTP
 * status with *why. Used by POST, the response filter and sse_publish(). */
struct sse_shm_result;
int sse_publish_events(server_rec *s, apr_pool_t *p, const apr_array_header_t *events,
                       struct sse_shm_result **res, const char **why);

/* Handlers. */
int sse_stream_handler(request_rec *r);
int sse_publish_handler(request_rec *r);

/* Publishing responses by their X-SSE-Publish header (sse_filter.c):
 * registers the output filter (register_hooks), and the insert_filter hook
 * that adds it where SSEPublishResponses is on. */
void sse_filter_register(void);
void sse_filter_insert(request_rec *r);

#endif
