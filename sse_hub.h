/* sse_hub.h -- this child's subscribers, and the one thread that feeds them.
 *
 * Every child runs one dispatcher thread. It sleeps on its process's wake
 * word (woken only by publishes on channels with streams in this child),
 * reads the new records once, up to SSE_HUB_BATCH at a time, and hands each
 * stream of their channels all of its records together: in one write to the
 * socket (direct mode), or as reference-counted copies of the framed bytes
 * in its queue, waking the stream's thread only if it is asleep. Stream
 * threads never scan the ring for live events; they read it only to replay
 * (Last-Event-ID, initial replay) or to catch up after their queue
 * overflowed.
 *
 * Ordering contract: the hub records the stamp of the last record it has
 * fanned out ("processed"). A subscriber registered at processed = U gets
 * every record with stamp > U through its queue, and reads (from, U] from
 * the ring itself; stamps dedupe the overlap. Registration first lets the
 * dispatcher catch up with the ring's head (bounded), so U is "now".
 */
#ifndef SSE_HUB_H
#define SSE_HUB_H

#include <httpd.h>
#include <apr_thread_proc.h>

#include "sse_ring.h"

#define SSE_HUB_QUEUE 256       /* events queued per stream before overflow */
#define SSE_HUB_BATCH 64        /* records the dispatcher fans out at once */

typedef struct sse_sub sse_sub;

typedef struct {
    apr_uint32_t refs;
    apr_uint64_t stamp;
    apr_size_t   len;
    char         frame[];
} sse_hub_ev;

typedef struct {
    sse_hub_ev *ev[SSE_HUB_QUEUE];
    int         n;
    int         overflow;   /* events were dropped: resync from the ring */
    int         ended;      /* channel deleted */
    int         stopping;   /* child is stopping */
    int         dead;       /* a direct write failed: client gone */
    char       *spill;      /* unsent bytes of a direct write: write them
                             * first, raw, then free() */
    apr_size_t  spill_len;
    apr_uint64_t direct_last; /* newest stamp sent in direct mode */
} sse_hub_batch;

void sse_hub_child_init(apr_pool_t *pchild, server_rec *s);
/* The child is stopping: end every stream (idempotent, any thread). */
void sse_hub_stop(void);
int  sse_hub_stopping(void);

/* Registers a stream on channels (array of sse_bytes). Returns OK or an
 * HTTP status with *why. *upto: the hub's processed stamp (see above). The
 * registration is undone by the cleanup of r->pool at the latest. */
int sse_hub_subscribe(request_rec *r, const apr_array_header_t *channels,
                      sse_sub **out, apr_uint64_t *upto, const char **why);
void sse_hub_unsubscribe(sse_sub *sub);

/* Waits up to timeout for queued events or a state change. */
void sse_hub_wait(sse_sub *sub, apr_interval_time_t timeout, sse_hub_batch *b);
void sse_hub_release(sse_hub_batch *b);
/* Direct mode, for streams where nothing between the handler and the
 * socket transforms bytes (plain HTTP/1.x): the dispatcher writes each
 * event, framed as a chunk when chunked, straight to fd with one
 * non-blocking sendmsg, and the stream's thread sleeps until a heartbeat,
 * the end, or a slow client (a partial write hands the socket back with the
 * unsent rest in the batch's spill). The stream's thread must have flushed
 * everything through the filters before it begins; written is the stamp of
 * the newest event it wrote (or skipped, resuming). Returns 1 if direct. */
int sse_hub_direct_begin(sse_sub *sub, int fd, int chunked, apr_uint64_t written);
/* Takes the socket back (spill, dead and direct_last into b); returns the
 * bytes written directly since the last call, for the access log. */
apr_size_t sse_hub_direct_end(sse_sub *sub, sse_hub_batch *b);
/* Writes bytes (e.g. a heartbeat) directly if the stream is in direct
 * mode; 0 if it is not (write through the filters then). */
int sse_hub_direct_write(sse_sub *sub, const char *bytes, apr_size_t len);

/* Clears the overflow state; returns the new upto for the catch-up read. */
apr_uint64_t sse_hub_resync(sse_sub *sub);

/* ---- replay from the ring ---- */

typedef struct {
    apr_uint64_t stamp;
    apr_uint64_t off;
} sse_hub_ref;

/* True when events of sub's channels newer than `from` were overwritten. */
int sse_hub_gap(const sse_sub *sub, apr_uint64_t from);

/* The stamp of a Last-Event-ID on sub's channels. Returns 1 and *stamp when
 * known (a server id, or a publisher id still retained), 0 when not (then
 * the caller reports a gap and replays all that is retained). */
int sse_hub_resolve(const sse_sub *sub, apr_pool_t *p, const char *id, apr_size_t len,
                    apr_uint64_t *stamp);

/* Retained records of sub's channels with from < stamp <= upto, oldest
 * first, each once; limit > 0 keeps only the newest limit. */
apr_array_header_t *sse_hub_collect(const sse_sub *sub, apr_pool_t *p, apr_uint64_t from,
                                    apr_uint64_t upto, int limit);

/* Reads records at known offsets into a buffer that grows from a pool. */
typedef struct {
    apr_pool_t *pool;
    void       *buf;
    apr_size_t  size;
} sse_hub_reader;

void sse_hub_reader_init(sse_hub_reader *rd, apr_pool_t *p);
/* SSE_RING_OK, or SSE_RING_LOST when the record is no longer retained. */
int sse_hub_read(sse_hub_reader *rd, apr_uint64_t off, sse_ring_rec *rec);

#endif
