/* sse_mercure.h -- the sse-mercure handler: a Mercure hub (protocol of hub
 * 0.x) on the module's ring, so that PHP applications (symfony/mercure,
 * API Platform, Laravel's broadcaster) publish to Apache and browsers
 * subscribe there with EventSource. See sse_mercure.c for the design.
 */
#ifndef SSE_MERCURE_H
#define SSE_MERCURE_H

#include <httpd.h>

#define SSE_MERCURE_HANDLER "sse-mercure"

/* Limits of the protocol's inputs, each refused with a 400 naming it:
 * they bound the work of every delivery (each update's topics are matched
 * against each subscriber's selectors, in the dispatcher) and the bytes of
 * metadata every update carries in the ring and in Redis. An update's
 * whole frame (metadata, id, type, data) must also fit the ring
 * (SSEBufferSize / 4, less a little: 413 otherwise), and its request body
 * SSEMaxMessageSize. */
#define SSE_MERCURE_MAX_TOPICS    64    /* topics of an update (canonical + alternates) */
#define SSE_MERCURE_TOPIC_MAX     4096  /* bytes of one topic */
#define SSE_MERCURE_MAX_SELECTORS 32    /* topic parameters of a subscription */
#define SSE_MERCURE_SELECTOR_MAX  1024  /* bytes of one of them */
/* The summed sse_topic_cost of a subscription's selectors: every update of
 * the hub is matched against them in the dispatcher, so a subscriber must
 * not make that arbitrarily slow. Ordinary templates cost 1 each; one of
 * 1,024 bytes about 3,000. */
#define SSE_MERCURE_COST_MAX      4096

int sse_mercure_handler(request_rec *r);

#endif
