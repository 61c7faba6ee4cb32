/* sse_filter.h -- publishing responses by their X-SSE-Publish header
 * (SSEPublishResponses; see sse_filter.c for what is published and how).
 */
#ifndef SSE_FILTER_H
#define SSE_FILTER_H

#include <httpd.h>

/* Registers the output filter (register_hooks). */
void sse_filter_register(void);
/* The insert_filter hook: adds the filter where SSEPublishResponses is on. */
void sse_filter_insert(request_rec *r);

#endif
