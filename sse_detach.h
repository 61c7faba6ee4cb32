/* sse_detach.h -- streams that hold no worker (SSEDetach).
 *
 * A plain HTTP/1.x stream, once its headers and replay are flushed through
 * the output filters, can be handed over: the handler dup()s the socket,
 * gives the duplicate and a copy of all the stream still needs to its
 * child's detach thread, and returns, so that the worker (event, worker) or
 * the process (prefork) is free at once; httpd then closes only its own
 * descriptor, without a shutdown() (mod_sse.c, pre_close_connection).
 *
 * Who does what for a detached stream:
 *   - the dispatcher writes its events, as for any direct-mode stream
 *     (sse_registry.h), and tells the detach thread whatever it would have
 *     told the stream's thread (sse_detach_wake);
 *   - the detach thread (one per child, sse_detach.c) plays the stream's
 *     thread: it watches the socket (epoll: input is read and discarded,
 *     hang-ups and errors end the stream), sends heartbeats, finishes the
 *     writes a slow client could not take, and ends the stream: on DELETE
 *     and when the child stops, with the terminal chunk, then shutdown()
 *     then close().
 * Nothing of the request (r, c, pools, bucket allocator, apr_socket_t,
 * scoreboard) is used after the hand-over: the record holds copies.
 */
#ifndef SSE_DETACH_H
#define SSE_DETACH_H

#include <httpd.h>

#include "sse_registry.h"

/* What the handler copies into a detached stream. */
typedef struct {
    int                 fd;         /* httpd's descriptor: duplicated, never kept */
    int                 chunked;    /* HTTP/1.1 chunked; else close-delimited */
    apr_uint64_t        written;    /* stamp of the newest event written */
    apr_uint64_t        events, bytes;  /* body written before the hand-over */
    apr_interval_time_t heartbeat;  /* 0: none */
    apr_interval_time_t timeout;    /* the server's Timeout, for slow clients */
    apr_time_t          opened;     /* r->request_time */
    const char         *client;     /* "ip:port", copied */
    const char         *channels;   /* comma-separated, copied */
} sse_detach_info;

/* Starts the child's detach thread and sets SSEMaxStreamsPerChild
 * (child_init); stopped and joined by a pre-cleanup of pchild. */
void sse_detach_child_init(apr_pool_t *pchild, server_rec *s);

/* Whether a stream may be handed over now (the thread runs, the child is
 * not stopping). */
int  sse_detach_available(void);

/* Hands sub over (the stream's thread, after everything written so far is
 * flushed). Returns 1 if it is detached: the caller must then touch sub no
 * more, and make httpd close its own descriptor without a shutdown. 0: it
 * stays the caller's (nothing changed). */
int  sse_detach_stream(sse_sub *sub, const sse_detach_info *info);

/* The registry's wake-up of a detached stream (any thread, locks held:
 * never blocks, takes no lock). */
void sse_detach_wake(void *owner);

#endif
