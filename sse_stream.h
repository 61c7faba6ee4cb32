/* sse_stream.h -- the sse-stream handler: one subscriber's response. */
#ifndef SSE_STREAM_H
#define SSE_STREAM_H

#include <httpd.h>

#include "sse_registry.h"

#define SSE_STREAM_HANDLER "sse-stream"
/* In c->notes of a connection whose stream was detached: httpd must close
 * its own descriptor without a shutdown() (mod_sse.c, pre_close_connection). */
#define SSE_DETACHED_NOTE "sse-detached"

int sse_stream_handler(request_rec *r);

/* A Mercure hub's stream (sse_mercure.c has checked the request and the
 * token): the same stream on the hub's one channel, with these
 * differences, each for the protocol:
 *  - every event goes through filter (sse_registry.h), on every path
 *    (direct writes, the queue, replay, catch-up), without its metadata;
 *  - history only when asked (asked: Last-Event-ID or lastEventID, or
 *    "earliest" for all that is retained; SSEInitialReplay does not apply),
 *    and then a Last-Event-ID response header: the id asked when it is
 *    known, else "earliest" (everything retained follows), instead of an
 *    sse-gap event;
 *  - it ends at `ends` (the token's exp; 0: never).
 * A hub's stream keeps its own thread to the end: its filter lives in its
 * request's pool, its end (exp) is watched by that thread, and its
 * departure (a subscription update) is published by the handler after this
 * returns. Whatever hands plain streams to another thread must leave a
 * hub's alone, or filter, strip and end them the same way.
 * Returns what a handler returns. */
typedef struct {
    const apr_array_header_t *channels;     /* of sse_bytes: the hub's channel */
    const sse_sub_filter     *filter;
    const char               *asked;        /* NULL: live updates only */
    apr_size_t                asked_len;
    apr_time_t                ends;
} sse_stream_hub;

int sse_stream_serve_hub(request_rec *r, const sse_stream_hub *hub);

#endif
