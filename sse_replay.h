/* sse_replay.h -- reading a stream's history back from the ring.
 *
 * A stream that resumes (Last-Event-ID), asks for initial replay, or fell
 * behind its queue reads retained records of its channels from the ring
 * itself, lock-free, on its own thread. Each record links to the previous
 * record of each of its channels, so this walks one chain per channel,
 * newest first, and costs what it returns, not the size of the ring.
 *
 * A record is read at a known offset into a buffer of the caller's pool;
 * SSE_RING_LOST says the ring overwrote it meanwhile (the caller then
 * reports a gap and reads on from there, never silently).
 */
#ifndef SSE_REPLAY_H
#define SSE_REPLAY_H

#include "sse_buf.h"
#include "sse_store.h"

/* A retained record: its stamp and where it is. */
typedef struct {
    apr_uint64_t stamp;
    apr_uint64_t off;
} sse_replay_ref;

/* Reads records at known offsets into a buffer that grows from a pool. */
typedef struct {
    sse_buf buf;
} sse_replay_reader;

void sse_replay_reader_init(sse_replay_reader *rd, apr_pool_t *p);
/* SSE_RING_OK, or SSE_RING_LOST when the record is no longer retained. */
int sse_replay_read(sse_replay_reader *rd, apr_uint64_t off, sse_ring_rec *rec);

/* True when events of the channels newer than `from` were overwritten. */
int sse_replay_gap(const sse_store_channels *chans, apr_uint64_t from);

/* The stamp of a Last-Event-ID on the channels. Returns 1 and *stamp when
 * known (a server id this ring could have issued, between its birth and its
 * newest stamp, or a publisher id still retained), 0 when not (then the
 * caller reports a gap and replays all that is retained). */
int sse_replay_resolve(const sse_store_channels *chans, apr_pool_t *p, const char *id,
                       apr_size_t len, apr_uint64_t *stamp);

/* Retained records of the channels with from < stamp <= upto (array of
 * sse_replay_ref), oldest first, each once; limit > 0 keeps only the
 * newest limit. */
apr_array_header_t *sse_replay_collect(const sse_store_channels *chans, apr_pool_t *p,
                                       apr_uint64_t from, apr_uint64_t upto, int limit);

#endif
