/* sse_stream.h -- the sse-stream handler: one subscriber's response. */
#ifndef SSE_STREAM_H
#define SSE_STREAM_H

#include <httpd.h>

#define SSE_STREAM_HANDLER "sse-stream"
/* In c->notes of a connection whose stream was detached: httpd must close
 * its own descriptor without a shutdown() (mod_sse.c, pre_close_connection). */
#define SSE_DETACHED_NOTE "sse-detached"

int sse_stream_handler(request_rec *r);

#endif
