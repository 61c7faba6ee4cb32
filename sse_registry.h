/* sse_registry.h -- this child's streams, and how events reach them.
 *
 * Every stream of the child is registered here, under each of its
 * channels. The dispatcher (sse_dispatch.c) hands the registry each batch
 * of records it read from the ring; the registry gives every stream of
 * their channels all of its records together: in one write to the socket
 * (direct mode), or as reference-counted frames (sse_frame.h) in its queue,
 * waking the stream's thread only if it is asleep. Stream threads never
 * scan the ring for live events; they read it only to replay (sse_replay.h)
 * or to catch up after their queue overflowed.
 *
 * Which thread calls what, in every name below:
 *   sse_registry_w_*   a stream's own thread: the httpd worker serving the
 *                      request (for that stream's sse_sub only);
 *   sse_registry_d_*   the dispatcher thread;
 *   sse_registry_*     any thread (sse_registry_stop: even a signal handler).
 *
 * Ordering contract: the registry records the stamp of the last record it
 * has fanned out ("processed"). A stream registered at processed = U gets
 * every record with stamp > U through its queue or socket, and reads
 * (from, U] from the ring itself; stamps dedupe the overlap. Registration
 * first lets the dispatcher catch up with the ring's head (bounded), so U
 * is "now".
 *
 * Locks, always taken in this order: the registry's mutex, then a stream's
 * own mutex. The ring's lock (inside the store) is never held with either.
 */
#ifndef SSE_REGISTRY_H
#define SSE_REGISTRY_H

#include <httpd.h>

#include "sse_buf.h"
#include "sse_frame.h"
#include "sse_store.h"

#define SSE_REGISTRY_QUEUE 256  /* frames queued per stream before overflow */
#define SSE_FANOUT_MAX     64   /* records fanned out at once */

typedef struct sse_sub sse_sub;

/* What a stream's thread takes from its stream at a wake-up. */
typedef struct {
    sse_frame  *frame[SSE_REGISTRY_QUEUE];
    int         n;
    int         overflow;   /* frames were dropped: resync from the ring */
    int         ended;      /* channel deleted */
    int         stopping;   /* child is stopping */
    int         dead;       /* a direct write failed: client gone */
    char       *spill;      /* unsent bytes of a direct write: write them
                             * first, raw, then free() */
    apr_size_t  spill_len;
    /* What the spill completes, for the metrics: the events and body bytes
     * (chunk framing excluded) of the write it is the rest of. Counted by
     * the stream's thread once the spill is written. */
    apr_uint64_t spill_events, spill_payload;
    apr_uint64_t direct_last; /* newest stamp sent in direct mode */
    /* Events and body bytes the dispatcher wrote in full (sse_registry_w_
     * direct_end), already counted in the shared metrics. */
    apr_uint64_t direct_events, direct_payload;
} sse_registry_batch;

/* Records read from the ring in one go, copied back to back into buf, for
 * the dispatcher to fan out. When the dispatcher keeps up, a batch is one
 * record; when it falls behind (many streams, fast publishers), it holds
 * all that arrived meanwhile, and each stream gets them in one write. */
typedef struct {
    sse_buf      buf;                       /* heap */
    int          n;
    sse_ring_rec rec[SSE_FANOUT_MAX];
    sse_frame   *frame[SSE_FANOUT_MAX];     /* for queueing, made lazily */
    sse_sub     *pending;                   /* streams with records in it */
    apr_uint64_t events, payload;           /* written directly, for the metrics */
} sse_fanout;

/* ---- the child ---- */

/* Sets the registry up for a ring of chan_slots channel slots; the
 * dispatcher then starts at processed (sse_registry_d_start). */
void sse_registry_child_init(apr_pool_t *pchild, apr_uint32_t chan_slots);
/* The child is stopping: every stream ends. Idempotent, takes no lock, and
 * wakes the dispatcher, which does the waking of the streams. */
void sse_registry_stop(void);
int  sse_registry_stopping(void);

/* ---- a stream's thread ---- */

/* A filter of the events of a stream's channels, for the streams of a
 * Mercure hub (sse_mercure.h), whose one channel carries every update of
 * the hub, each with metadata (sse_wire.h) saying who may have it. NULL
 * for every other stream: the plain path costs one pointer test. accept is
 * called by the dispatcher with the stream's mutex held (it must not block
 * nor lock) and by the stream's thread on replay; 1: the stream gets the
 * event. A filtered stream never gets an event's leading comment lines: a
 * direct write skips them, and the stream's thread strips them from what
 * it queued or replays. ctx lives as long as the stream. */
typedef struct {
    int        (*accept)(const void *ctx, const char *frame, apr_size_t len);
    const void  *ctx;
} sse_sub_filter;

/* Registers a stream on channels (array of valid sse_bytes), refused when
 * one of them has max_subscribers (> 0) already (sse_store_subscribe).
 * Returns OK or an HTTP status with *why. *upto: the processed stamp (see
 * above). The registration is undone by the cleanup of r->pool at the
 * latest. */
int  sse_registry_w_subscribe(request_rec *r, const apr_array_header_t *channels,
                              apr_uint64_t max_subscribers, sse_sub **out,
                              apr_uint64_t *upto, const char **why);
/* The same for a stream with a filter (set before the stream is registered,
 * so that the dispatcher never hands it an event unfiltered). */
int  sse_registry_w_subscribe_filtered(request_rec *r, const apr_array_header_t *channels,
                                       apr_uint64_t max_subscribers,
                                       const sse_sub_filter *filter, sse_sub **out,
                                       apr_uint64_t *upto, const char **why);
void sse_registry_w_unsubscribe(sse_sub *sub);
/* The stream's channels, for replay. */
const sse_store_channels *sse_registry_channels(const sse_sub *sub);

/* Waits up to timeout for queued frames or a state change; with timeout
 * <= 0, takes what there is without waiting. */
void sse_registry_w_wait(sse_sub *sub, apr_interval_time_t timeout, sse_registry_batch *b);
/* Drops the batch's references to its frames. */
void sse_registry_w_release(sse_registry_batch *b);
/* Clears the overflow state; returns the new upto for the catch-up read. */
apr_uint64_t sse_registry_w_resync(sse_sub *sub);

/* Direct mode, for streams where nothing between the handler and the
 * socket transforms bytes (plain HTTP/1.x): the dispatcher writes each
 * batch, framed as one chunk when chunked, straight to fd with one
 * non-blocking sendmsg, and the stream's thread sleeps until a heartbeat,
 * the end, or a slow client (a partial write hands the socket back with the
 * unsent rest in the batch's spill). The stream's thread must have flushed
 * everything through the filters before it begins; written is the stamp of
 * the newest event it wrote (or skipped, resuming). Returns 1 if direct. */
int sse_registry_w_direct_begin(sse_sub *sub, int fd, int chunked, apr_uint64_t written);
/* Takes the socket back (spill, dead, direct_last and the events and body
 * bytes written directly since the last call into b); returns the bytes
 * written directly since the last call, framing included, for the access
 * log's %B and mod_logio. */
apr_size_t sse_registry_w_direct_end(sse_sub *sub, sse_registry_batch *b);
/* Writes bytes (e.g. a heartbeat) directly if the stream is in direct
 * mode, counting them in the metrics once written whole; 0 if it is not
 * (write through the filters then). */
int sse_registry_w_direct_write(sse_sub *sub, const char *bytes, apr_size_t len);

/* ---- detached streams (sse_detach.h): the detach thread calls the
 * sse_registry_w_* functions for them, in the place of their own thread ---- */

/* SSEMaxStreamsPerChild: subscribe refuses (HTTP_SERVICE_UNAVAILABLE) while
 * the child has this many streams (0: no cap). Set at child start. */
void sse_registry_set_max_streams(apr_uint64_t max);
apr_uint64_t sse_registry_max_streams(void);
/* Like sse_registry_w_direct_begin, and from then on the stream is
 * detached: wake-ups go to sse_detach_wake(owner), not to a thread, and the
 * struct no longer belongs to the request (no cleanup of its pool touches
 * it); whoever holds owner must sse_registry_w_unsubscribe and
 * sse_registry_w_free it. Called by the stream's thread, which must not
 * touch sub afterwards if it returns 1. */
int  sse_registry_w_detach(sse_sub *sub, int fd, int chunked, apr_uint64_t written,
                           void *owner);
/* When a direct write last sent bytes, for heartbeats. */
apr_time_t sse_registry_w_direct_at(sse_sub *sub);
/* Frees a detached stream once unsubscribed. */
void sse_registry_w_free(sse_sub *sub);

/* ---- the dispatcher ---- */

/* The dispatcher starts reading at the ring offset cursor, just after the
 * record stamped processed. */
void sse_registry_d_start(apr_uint64_t cursor, apr_uint64_t processed);
/* Fans a batch out to the streams of its records' channels, then records
 * that everything before the ring offset done is processed. lost: the
 * dispatcher fell behind the ring's tail before this batch, and every
 * stream must catch up from the ring. Returns how many streams had to. */
int  sse_registry_d_fan_out(sse_fanout *b, apr_uint64_t done, int lost);
/* Drops the batch's records and frames. */
void sse_registry_d_clear(sse_fanout *b);
/* The dispatcher is leaving (stop): wakes every stream so that it ends.
 * joined: 0 if it leaves without being joined (the child is exiting). */
void sse_registry_d_leave(void);
/* The dispatcher's state, for streams that wait for it. */
void sse_registry_dispatcher_running(int running);
void sse_registry_dispatcher_abandoned(void);

#endif
