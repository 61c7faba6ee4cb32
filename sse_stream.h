/* sse_stream.h -- the sse-stream handler: one subscriber's response. */
#ifndef SSE_STREAM_H
#define SSE_STREAM_H

#include <httpd.h>

#define SSE_STREAM_HANDLER "sse-stream"

int sse_stream_handler(request_rec *r);

#endif
