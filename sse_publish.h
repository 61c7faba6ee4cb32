/* sse_publish.h -- publishing: the sse-publish handler, and the
 * sse_publish() optional function that other modules call (mod_sse.h).
 */
#ifndef SSE_PUBLISH_H
#define SSE_PUBLISH_H

#include "mod_sse.h"

#define SSE_PUBLISH_HANDLER "sse-publish"

int sse_publish_handler(request_rec *r);

/* The optional function itself (registered by mod_sse.c). */
APR_OPTIONAL_FN_TYPE(sse_publish) sse_publish;

#endif
