/* sse_replay.c -- history from the ring's channel chains (see
 * sse_replay.h). Runs on a stream's thread, takes no lock.
 */
#include "sse_replay.h"

#include <stdlib.h>
#include <string.h>

#define READER_INITIAL 4096     /* most records fit */

void sse_replay_reader_init(sse_replay_reader *rd, apr_pool_t *p)
{
    sse_buf_init(&rd->buf, p, 0);
    sse_buf_reserve(&rd->buf, READER_INITIAL - 1);      /* - the NUL's byte */
}

int sse_replay_read(sse_replay_reader *rd, apr_uint64_t off, sse_ring_rec *rec)
{
    const sse_ring *ring = sse_store_ring(sse_store_get());

    for (;;) {
        apr_size_t need = 0;
        int rv = sse_ring_read_at(ring, off, rd->buf.s, rd->buf.cap, &need, rec);

        if (rv != SSE_RING_SMALL)
            return rv == SSE_RING_OK ? SSE_RING_OK : SSE_RING_LOST;
        if (!sse_buf_reserve(&rd->buf, need))
            return SSE_RING_LOST;
    }
}

/* The link of rec that belongs to slot in epoch, or NULL. */
static const sse_ring_link *link_of(const sse_ring_rec *rec, int slot, apr_uint32_t epoch)
{
    int i;

    for (i = 0; i < rec->nchan; i++) {
        if ((int)rec->links[i].chan == slot)
            return rec->links[i].epoch == epoch ? &rec->links[i] : NULL;
    }
    return NULL;
}

int sse_replay_gap(const sse_store_channels *chans, apr_uint64_t from)
{
    const sse_ring *ring = sse_store_ring(sse_store_get());
    int i;

    for (i = 0; i < chans->n; i++) {
        if (sse_ring_chan_epoch(ring, chans->slot[i]) == chans->epoch[i]
            && sse_ring_chan_evicted(ring, chans->slot[i]) > from)
            return 1;
    }
    return 0;
}

int sse_replay_resolve(const sse_store_channels *chans, apr_pool_t *p, const char *id,
                       apr_size_t len, apr_uint64_t *stamp)
{
    const sse_ring *ring = sse_store_ring(sse_store_get());
    sse_replay_reader rd;
    sse_ring_rec rec;
    int i;

    /* A server id places the client in time only if this ring could have
     * issued it: not older than the ring, and not newer than the newest
     * stamp it issued. An id "from the future" (a crafted header, a clock
     * elsewhere) is not a position: taken as one, it would hide every live
     * event older than it, silently, for the life of the stream. */
    if (sse_wire_parse_server_id(id, len, stamp))
        return *stamp >= sse_ring_born(ring) && *stamp <= sse_ring_last_stamp(ring);
    sse_replay_reader_init(&rd, p);
    for (i = 0; i < chans->n; i++) {
        apr_uint64_t off = sse_ring_chan_last(ring, chans->slot[i]);
        while (sse_replay_read(&rd, off, &rec) == SSE_RING_OK) {
            const sse_ring_link *l = link_of(&rec, chans->slot[i], chans->epoch[i]);
            if (!l)
                break;
            if (rec.id_len == len && memcmp(rec.id, id, len) == 0) {
                *stamp = rec.stamp;
                return 1;
            }
            off = l->prev;
        }
    }
    return 0;
}

static int ref_cmp(const void *a, const void *b)
{
    const sse_replay_ref *x = a, *y = b;

    return x->stamp < y->stamp ? -1 : x->stamp > y->stamp;
}

apr_array_header_t *sse_replay_collect(const sse_store_channels *chans, apr_pool_t *p,
                                       apr_uint64_t from, apr_uint64_t upto, int limit)
{
    const sse_ring *ring = sse_store_ring(sse_store_get());
    apr_array_header_t *refs = apr_array_make(p, 16, sizeof(sse_replay_ref));
    sse_replay_reader rd;
    sse_ring_rec rec;
    sse_replay_ref *r;
    int i, n, kept;

    sse_replay_reader_init(&rd, p);
    for (i = 0; i < chans->n; i++) {
        apr_uint64_t off = sse_ring_chan_last(ring, chans->slot[i]);
        int taken = 0;
        while (sse_replay_read(&rd, off, &rec) == SSE_RING_OK) {
            const sse_ring_link *l = link_of(&rec, chans->slot[i], chans->epoch[i]);
            if (!l || rec.stamp <= from)
                break;
            if (rec.kind == SSE_REC_EVENT && rec.stamp <= upto) {
                sse_replay_ref *ref = apr_array_push(refs);
                ref->stamp = rec.stamp;
                ref->off = rec.off;
                if (limit > 0 && ++taken >= limit)
                    break;
            }
            off = l->prev;
        }
    }
    r = (sse_replay_ref *)refs->elts;
    qsort(r, (size_t)refs->nelts, sizeof(*r), ref_cmp);
    for (i = 0, n = 0; i < refs->nelts; i++) {
        if (n == 0 || r[n - 1].stamp != r[i].stamp)
            r[n++] = r[i];
    }
    kept = limit > 0 && n > limit ? limit : n;
    memmove(r, r + (n - kept), (size_t)kept * sizeof(*r));
    refs->nelts = kept;
    return refs;
}
