/* sse_frame.h -- one event's framed bytes, shared by the streams of a child.
 *
 * The dispatcher reads each record from the ring once. A stream written
 * through the output filters gets the record as a frame in its queue: one
 * heap copy per child and record, however many streams wait for it, freed
 * by whoever drops the last reference (the dispatcher, a stream's thread,
 * or an unsubscribe). References are counted with atomics, since those
 * threads drop them without a common lock.
 */
#ifndef SSE_FRAME_H
#define SSE_FRAME_H

#include <apr.h>

typedef struct {
    apr_uint32_t refs;
    apr_uint64_t stamp;         /* the record's, for ordering and dedup */
    apr_size_t   len;
    char         bytes[];       /* the text/event-stream frame */
} sse_frame;

/* A copy of bytes with one reference; NULL when out of memory. */
sse_frame *sse_frame_make(apr_uint64_t stamp, const char *bytes, apr_size_t len);
void sse_frame_ref(sse_frame *f);
/* Drops a reference; the last one frees the frame. */
void sse_frame_unref(sse_frame *f);

#endif
