/* sse_registry.c -- this child's streams: registration, fan-out and direct
 * writes (see sse_registry.h for who calls what).
 *
 * Data structures: every channel slot of the ring has a list of the
 * child's streams on it (one node per stream and channel), and every stream
 * is on the list of all streams; both are APR rings under the registry's
 * mutex. Both mutexes are plain pthread objects: the dispatcher is a
 * pthread sleeping on a futex, Linux-first by design. The dispatcher holds
 * the registry's mutex while it fans a batch out, so registering and
 * unregistering streams wait for the batch; a stream's own mutex is taken
 * once per stream and batch.
 *
 * Memory: a stream owns only its struct (malloc'd: a detached stream
 * outlives its request; otherwise freed by a cleanup of the request pool),
 * at most SSE_REGISTRY_QUEUE frame references, and, after a partial direct
 * write, the unsent rest (malloc'd, handed to its thread).
 *
 * Detached streams (sse_detach.h) have no thread of their own: wherever a
 * stream's thread would be signalled, the child's detach thread is told
 * instead (sse_detach_wake), and it plays the stream thread's part, calling
 * the sse_registry_w_* functions for each of them.
 */
#include "sse_registry.h"
#include "sse_assert.h"
#include "sse_detach.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <apr_ring.h>
#include <apr_strings.h>

#define CATCH_UP_WAIT  1        /* seconds a new stream waits for the dispatcher */
/* "<hex size>\r\n" of an HTTP/1.1 chunk: 16 hex digits at most. */
#define CHUNK_HEAD_MAX (16 + 2 + 1)

/* pend[] indexes a fan-out batch with a byte. */
SSE_STATIC_ASSERT(SSE_FANOUT_MAX <= UCHAR_MAX + 1, "pend[] holds batch indices in bytes");
/* A stream has a node per channel it may name. */
SSE_STATIC_ASSERT(SSE_STORE_MAX_CHANNELS == SSE_RING_MAX_CHANNELS_PER_EVENT,
                  "a subscription names no more channels than an event may carry");

typedef struct sse_node sse_node;
struct sse_node {
    APR_RING_ENTRY(sse_node) link;
    sse_sub *sub;
    int      k;                 /* index into sub->chans */
};
APR_RING_HEAD(sse_node_list, sse_node);

struct sse_sub {
    APR_RING_ENTRY(sse_sub) link;   /* all streams of the child */
    pthread_mutex_t mu;         /* plain pthread objects, not pool-owned: */
    pthread_cond_t  cv;         /* see unsubscribe_cleanup */
    sse_store_channels chans;
    sse_frame    *q[SSE_REGISTRY_QUEUE];
    int           qhead, qlen;
    apr_uint64_t  queued;       /* stamp of the newest event queued or sent */
    const sse_sub_filter *filter;   /* a hub's stream: who gets what; else NULL */
    int           waiting, overflow, ended;
    /* Direct mode: the dispatcher writes to the socket itself. */
    int           fd;
    int           direct;       /* the dispatcher owns the socket now */
    int           chunked;      /* frame each batch as an HTTP/1.1 chunk */
    int           dead;         /* a direct write failed: the client is gone */
    char         *spill;        /* bytes a direct write left unsent (malloc) */
    apr_size_t    spill_len;
    apr_uint64_t  direct_last;  /* stamp of the newest event sent directly */
    apr_size_t    direct_bytes; /* framing included, since direct_end */
    apr_uint64_t  direct_events, direct_payload;    /* written whole, since direct_end */
    apr_uint64_t  spill_events, spill_payload;      /* what the spill completes */
    /* The dispatcher's alone, within one batch: the records for this
     * stream (indices into the batch), and the next stream with some. */
    unsigned char pend[SSE_FANOUT_MAX];
    int           npend;
    sse_sub      *pend_next;
    int           registered;
    void         *detached;     /* the detach thread's record, or NULL */
    apr_time_t    direct_at;    /* when a direct write last sent bytes */
    apr_pool_t   *pool;         /* whose cleanup frees it (NULL once detached) */
    /* One per channel named, allocated with the record: most streams name
     * one channel, and a detached stream's record is all it costs. */
    sse_node      nodes[];
};
APR_RING_HEAD(sse_sub_list, sse_sub);

static struct {
    pthread_mutex_t       mu;
    struct sse_node_list *by_slot;
    apr_uint32_t          nslots;
    struct sse_sub_list   all;
    apr_uint64_t          processed;    /* stamp of the last record fanned out */
    apr_uint64_t          done;         /* ring offset up to which that is */
    pthread_cond_t        caught_up;    /* done moved, for subscribers waiting */
    int                   catching_up;  /* how many wait */
    apr_uint32_t          stopping;     /* atomic */
    int                   running;      /* atomic: the dispatcher runs */
    int                   abandoned;    /* atomic: exiting without it joined */
    int                   ready;
    apr_uint64_t          count;        /* streams registered */
    apr_uint64_t          max_streams;  /* SSEMaxStreamsPerChild */
} reg = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t cattr;

    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &cattr);
    pthread_condattr_destroy(&cattr);
}

void sse_registry_child_init(apr_pool_t *pchild, apr_uint32_t chan_slots)
{
    apr_uint32_t i;

    reg.nslots = chan_slots;
    reg.by_slot = apr_palloc(pchild, chan_slots * sizeof(*reg.by_slot));
    for (i = 0; i < chan_slots; i++)
        APR_RING_INIT(&reg.by_slot[i], sse_node, link);
    APR_RING_INIT(&reg.all, sse_sub, link);
    cond_init_monotonic(&reg.caught_up);
    reg.ready = 1;
}

void sse_registry_stop(void)
{
    /* No lock here: prefork calls this from its SIGTERM handler, possibly on
     * a stream's thread in the middle of sse_registry_w_wait. The dispatcher
     * does the waking. */
    if (__atomic_exchange_n(&reg.stopping, 1, __ATOMIC_SEQ_CST) == 0 && sse_store_get())
        sse_store_wake_self(sse_store_get());
}

int sse_registry_stopping(void)
{
    return __atomic_load_n(&reg.stopping, __ATOMIC_ACQUIRE) != 0;
}

void sse_registry_dispatcher_running(int running)
{
    __atomic_store_n(&reg.running, running, __ATOMIC_RELEASE);
}

void sse_registry_dispatcher_abandoned(void)
{
    __atomic_store_n(&reg.abandoned, 1, __ATOMIC_RELEASE);
}

static int dispatcher_running(void)
{
    return __atomic_load_n(&reg.running, __ATOMIC_ACQUIRE)
           && !__atomic_load_n(&reg.abandoned, __ATOMIC_ACQUIRE);
}

/* ---- a stream's queue (its mutex held) ---- */

static void sub_drop_queue(sse_sub *sub)
{
    while (sub->qlen) {
        sse_frame_unref(sub->q[sub->qhead]);
        sub->qhead = (sub->qhead + 1) % SSE_REGISTRY_QUEUE;
        sub->qlen--;
    }
}

static void sub_signal(sse_sub *sub)
{
    if (sub->detached)
        sse_detach_wake(sub->detached);
    else if (sub->waiting)
        pthread_cond_signal(&sub->cv);
}

/* ---- direct writes (the dispatcher, or the stream's thread for a
 * heartbeat; the stream's mutex held) ---- */

/* Writes iov[0..n) to a direct-mode stream's socket without blocking. All
 * written: done (1). Partly or not at all (a slow client): keep the rest and
 * give the socket back to the stream's thread, which writes it with the
 * connection's timeout and then goes on through the filters (0). Failed:
 * the client is gone (-1). */
static int direct_send(sse_sub *sub, struct iovec *iov, int n, apr_uint64_t stamp)
{
    struct msghdr msg;
    apr_size_t total = 0, sent, off = 0;
    ssize_t rv;
    int i;

    for (i = 0; i < n; i++)
        total += iov[i].iov_len;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    do {
        rv = sendmsg(sub->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (rv < 0 && errno == EINTR);
    if (rv < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        sub->dead = 1;
        sub->direct = 0;
        sub_signal(sub);
        return -1;
    }
    sent = rv < 0 ? 0 : (apr_size_t)rv;
    if (sent)
        sub->direct_at = apr_time_now();
    sub->direct_bytes += sent;
    sub->direct_last = stamp;
    if (sent == total)
        return 1;
    sub->spill = malloc(total - sent);
    if (!sub->spill) {
        sub->dead = 1;          /* cannot keep the stream consistent */
        rv = -1;
    }
    else {
        for (i = 0; i < n; i++) {
            if (sent >= iov[i].iov_len) {
                sent -= iov[i].iov_len;
                continue;
            }
            memcpy(sub->spill + off, (char *)iov[i].iov_base + sent, iov[i].iov_len - sent);
            off += iov[i].iov_len - sent;
            sent = 0;
        }
        sub->spill_len = off;
        rv = 0;
    }
    sub->direct = 0;
    sub_signal(sub);
    return rv < 0 ? -1 : 0;
}

/* Writes the n frames in iov[1..n] (len bytes in all; nev of them events,
 * the rest comments) to a direct-mode stream: as one HTTP/1.1 chunk, iov[0]
 * and iov[n + 1] taking its head and trailer, or as they are on a
 * connection that is not chunked. What is written whole is added to the
 * stream's figures and to tally[0] (events) and tally[1] (body bytes); what
 * a partial write leaves is counted by the stream's thread with its spill. */
static void direct_send_frames(sse_sub *sub, struct iovec *iov, int n, apr_size_t len,
                               apr_uint64_t last, int nev, apr_uint64_t tally[2])
{
    char head[CHUNK_HEAD_MAX];
    int rv;

    if (!n)
        return;
    if (!sub->chunked) {
        rv = direct_send(sub, iov + 1, n, last);
    }
    else {
        iov[0].iov_base = head;
        iov[0].iov_len = (size_t)apr_snprintf(head, sizeof(head), "%" APR_UINT64_T_HEX_FMT
                                              "\r\n", (apr_uint64_t)len);
        iov[n + 1].iov_base = (void *)"\r\n";
        iov[n + 1].iov_len = 2;
        rv = direct_send(sub, iov, n + 2, last);
    }
    if (rv > 0) {
        sub->direct_events += (apr_uint64_t)nev;
        sub->direct_payload += len;
        tally[0] += (apr_uint64_t)nev;
        tally[1] += len;
    }
    else if (rv == 0) {
        sub->spill_events = (apr_uint64_t)nev;
        sub->spill_payload = len;
    }
}

/* ---- fan-out (the dispatcher, registry mutex held) ---- */

static sse_frame *fanout_frame(sse_fanout *b, int i)
{
    if (!b->frame[i])
        b->frame[i] = sse_frame_make(b->rec[i].stamp, b->rec[i].frame, b->rec[i].frame_len);
    return b->frame[i];
}

/* Hands a stream the records of the batch that are for it, in ring order,
 * each at most once (sub->queued is the stamp of the newest it was given):
 * in one write in direct mode, else through its queue. */
static void sub_flush(sse_fanout *b, sse_sub *sub)
{
    struct iovec iov[SSE_FANOUT_MAX + 2];
    apr_size_t len = 0;
    apr_uint64_t last = 0, tally[2] = { 0, 0 };
    int i, n = 0, queued = 0;

    pthread_mutex_lock(&sub->mu);
    for (i = 0; i < sub->npend; i++) {
        const sse_ring_rec *rec = &b->rec[sub->pend[i]];
        sse_frame *f;

        if (rec->stamp <= sub->queued)
            continue;
        if (rec->kind == SSE_REC_DELETE) {
            /* What came before the delete is still delivered. */
            if (sub->direct)
                direct_send_frames(sub, iov, n, len, last, n, tally);
            n = 0;
            sub->ended = 1;
            sub_signal(sub);
            break;
        }
        /* A hub's stream: not its update, skipped as if delivered. */
        if (sub->filter && !sub->filter->accept(sub->filter->ctx, rec->frame, rec->frame_len)) {
            sub->queued = rec->stamp;
            continue;
        }
        if (sub->direct) {
            /* A hub's update goes out without its metadata (0 bytes for
             * every other frame). */
            apr_size_t skip = sub->filter ? sse_wire_meta_len(rec->frame, rec->frame_len) : 0;
            iov[++n].iov_base = (void *)(rec->frame + skip);
            iov[n].iov_len = rec->frame_len - skip;
            len += rec->frame_len - skip;
            last = sub->queued = rec->stamp;
            continue;
        }
        if (sub->overflow || sub->ended)
            continue;
        if (!(f = fanout_frame(b, sub->pend[i]))) {
            sub->overflow = 1;          /* out of memory: catch up later */
        }
        else if (sub->qlen == SSE_REGISTRY_QUEUE) {
            /* A slow client: stop queueing, let its thread read the ring
             * at its own pace instead. */
            sub->overflow = 1;
            sub_drop_queue(sub);
        }
        else {
            sse_frame_ref(f);
            sub->q[(sub->qhead + sub->qlen) % SSE_REGISTRY_QUEUE] = f;
            sub->qlen++;
            sub->queued = rec->stamp;
        }
        queued = 1;
    }
    if (sub->direct)
        direct_send_frames(sub, iov, n, len, last, n, tally);
    if (queued)
        sub_signal(sub);
    pthread_mutex_unlock(&sub->mu);
    sub->npend = 0;
    b->events += tally[0];
    b->payload += tally[1];
}

/* First each stream of each record's channels collects the record's index,
 * then each such stream is flushed once. Only the dispatcher touches pend[],
 * so the first pass takes no stream's lock. */
static void fan_out(sse_fanout *b)
{
    sse_sub *sub, *next;
    int i, j;

    for (i = 0; i < b->n; i++) {
        const sse_ring_rec *rec = &b->rec[i];

        if (rec->kind != SSE_REC_EVENT && rec->kind != SSE_REC_DELETE)
            continue;
        for (j = 0; j < rec->nchan; j++) {
            const sse_ring_link *l = &rec->links[j];
            struct sse_node_list *list;
            sse_node *node;

            if (l->chan >= reg.nslots)
                continue;
            list = &reg.by_slot[l->chan];
            APR_RING_FOREACH(node, list, sse_node, link) {
                sub = node->sub;
                if (sub->chans.epoch[node->k] != l->epoch)
                    continue;
                if (!sub->npend) {
                    sub->pend_next = b->pending;
                    b->pending = sub;
                }
                else if (sub->pend[sub->npend - 1] == i) {
                    continue;           /* on two of its channels */
                }
                SSE_ASSERT(sub->npend < SSE_FANOUT_MAX);
                sub->pend[sub->npend++] = (unsigned char)i;
            }
        }
    }
    for (sub = b->pending; sub; sub = next) {
        next = sub->pend_next;
        sub->pend_next = NULL;
        sub_flush(b, sub);
    }
    b->pending = NULL;
}

/* Wakes every stream (registry mutex held); with overflow, every stream
 * also drops its queue and catches up from the ring. Returns how many. */
static int broadcast(int overflow)
{
    sse_sub *sub;
    int n = 0;

    APR_RING_FOREACH(sub, &reg.all, sse_sub, link) {
        pthread_mutex_lock(&sub->mu);
        if (overflow) {
            sub->overflow = 1;
            sub->direct = 0;
            sub_drop_queue(sub);
        }
        if (sub->detached)
            sse_detach_wake(sub->detached);
        else
            pthread_cond_signal(&sub->cv);
        pthread_mutex_unlock(&sub->mu);
        n++;
    }
    return n;
}

void sse_registry_d_start(apr_uint64_t cursor, apr_uint64_t processed)
{
    pthread_mutex_lock(&reg.mu);
    reg.done = cursor;
    reg.processed = processed;
    pthread_mutex_unlock(&reg.mu);
}

int sse_registry_d_fan_out(sse_fanout *b, apr_uint64_t done, int lost)
{
    int behind = 0;

    pthread_mutex_lock(&reg.mu);
    if (b->n) {
        fan_out(b);
        reg.processed = b->rec[b->n - 1].stamp;
    }
    /* Once per batch, whatever the number of streams it reached. */
    if (b->events || b->payload) {
        sse_store_count(sse_store_get(), SSE_C_EVENTS_DELIVERED, b->events);
        sse_store_count(sse_store_get(), SSE_C_BYTES_SENT, b->payload);
        b->events = b->payload = 0;
    }
    reg.done = done;
    if (reg.catching_up)
        pthread_cond_broadcast(&reg.caught_up);
    if (lost)
        behind = broadcast(1);
    pthread_mutex_unlock(&reg.mu);
    return behind;
}

void sse_registry_d_clear(sse_fanout *b)
{
    int i;

    for (i = 0; i < b->n; i++) {
        if (b->frame[i])
            sse_frame_unref(b->frame[i]);
        b->frame[i] = NULL;
    }
    b->n = 0;
    b->buf.len = 0;
}

void sse_registry_d_leave(void)
{
    /* Every stream ends and its client reconnects to the next generation.
     * Done here rather than by whoever set the flag: that may be a signal
     * handler that interrupted a stream holding a lock. */
    pthread_mutex_lock(&reg.mu);
    broadcast(0);
    pthread_cond_broadcast(&reg.caught_up);
    pthread_mutex_unlock(&reg.mu);
}

/* ---- registering streams ---- */

static apr_status_t unsubscribe_cleanup(void *data)
{
    sse_sub *sub = data;

    /* The child is being torn down (prefork: maybe from a signal handler
     * that interrupted this very stream inside its condition wait, so that
     * destroying the condition would wait for ourselves). The dispatcher
     * has been stopped, nothing else runs, and the process's subscriber
     * column goes with it: touch nothing (the struct goes with the process). */
    if (sse_registry_stopping() && !dispatcher_running()) {
        sub->registered = 0;
        return APR_SUCCESS;
    }
    sse_registry_w_unsubscribe(sub);
    free(sub);
    return APR_SUCCESS;
}

void sse_registry_set_max_streams(apr_uint64_t max)
{
    reg.max_streams = max;
}

apr_uint64_t sse_registry_max_streams(void)
{
    return reg.max_streams;
}

/* Waits (registry mutex held) until the dispatcher has fanned out
 * everything before ring offset `head`. A dispatcher sleeps through
 * publishes on channels that have no stream in this child, so `processed`
 * may lag; a new stream would then get recent history through its queue,
 * past any replay limit. Bounded: a dispatcher that is seconds behind under
 * overload delays new streams by at most CATCH_UP_WAIT, and they then get
 * that history live. */
static void catch_up(apr_uint64_t head)
{
    struct timespec until;

    if (reg.done >= head || !dispatcher_running() || sse_registry_stopping())
        return;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += CATCH_UP_WAIT;
    reg.catching_up++;
    sse_store_wake_self(sse_store_get());
    while (reg.done < head && !sse_registry_stopping()
           && pthread_cond_timedwait(&reg.caught_up, &reg.mu, &until) != ETIMEDOUT)
        ;
    reg.catching_up--;
}

int sse_registry_w_subscribe(request_rec *r, const apr_array_header_t *channels,
                             apr_uint64_t max_subscribers, sse_sub **out,
                             apr_uint64_t *upto, const char **why)
{
    return sse_registry_w_subscribe_filtered(r, channels, max_subscribers, NULL, out, upto,
                                             why);
}

int sse_registry_w_subscribe_filtered(request_rec *r, const apr_array_header_t *channels,
                                      apr_uint64_t max_subscribers,
                                      const sse_sub_filter *filter, sse_sub **out,
                                      apr_uint64_t *upto, const char **why)
{
    sse_store *st = sse_store_get();
    sse_sub *sub;
    int i, status;

    if (!st || !reg.ready) {
        *why = "the event ring is not available in this process";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    /* Read without the lock: the cap is a bound on descriptors, and two
     * streams racing past it by one do not matter. */
    if (reg.max_streams && __atomic_load_n(&reg.count, __ATOMIC_RELAXED) >= reg.max_streams) {
        *why = apr_psprintf(r->pool, "this process holds its maximum of %" APR_UINT64_T_FMT
                            " streams (SSEMaxStreamsPerChild)", reg.max_streams);
        return HTTP_SERVICE_UNAVAILABLE;
    }
    /* chans.n, the distinct channels, is at most what was named. */
    if (!(sub = calloc(1, sizeof(*sub) + (apr_size_t)channels->nelts * sizeof(sse_node)))) {
        *why = "out of memory";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    sub->filter = filter;
    if ((status = sse_store_subscribe(st, r->pool, channels, max_subscribers, &sub->chans,
                                      why)) != OK) {
        free(sub);
        return status;
    }
    SSE_ASSERT(sub->chans.n <= channels->nelts);
    pthread_mutex_init(&sub->mu, NULL);
    cond_init_monotonic(&sub->cv);
    sub->pool = r->pool;

    pthread_mutex_lock(&reg.mu);
    __atomic_add_fetch(&reg.count, 1, __ATOMIC_RELAXED);
    catch_up(sse_ring_head(sse_store_ring(st)));
    for (i = 0; i < sub->chans.n; i++) {
        sse_node *node = &sub->nodes[i];

        SSE_ASSERT((apr_uint32_t)sub->chans.slot[i] < reg.nslots);
        node->sub = sub;
        node->k = i;
        APR_RING_INSERT_HEAD(&reg.by_slot[sub->chans.slot[i]], node, sse_node, link);
    }
    APR_RING_INSERT_HEAD(&reg.all, sub, sse_sub, link);
    sub->registered = 1;
    *upto = sub->queued = reg.processed;
    /* A DELETE fanned out between the epoch read and now would be missed. */
    for (i = 0; i < sub->chans.n; i++) {
        if (sse_ring_chan_epoch(sse_store_ring(st), sub->chans.slot[i]) != sub->chans.epoch[i])
            sub->ended = 1;
    }
    pthread_mutex_unlock(&reg.mu);

    apr_pool_cleanup_register(r->pool, sub, unsubscribe_cleanup, apr_pool_cleanup_null);
    *out = sub;
    return OK;
}

void sse_registry_w_unsubscribe(sse_sub *sub)
{
    int i;

    if (!sub->registered)
        return;
    pthread_mutex_lock(&reg.mu);
    for (i = 0; i < sub->chans.n; i++)
        APR_RING_REMOVE(&sub->nodes[i], link);
    APR_RING_REMOVE(sub, link);
    sub->registered = 0;
    __atomic_sub_fetch(&reg.count, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&reg.mu);

    pthread_mutex_lock(&sub->mu);
    sub_drop_queue(sub);
    sub->direct = 0;
    free(sub->spill);
    sub->spill = NULL;
    pthread_mutex_unlock(&sub->mu);
    pthread_cond_destroy(&sub->cv);
    pthread_mutex_destroy(&sub->mu);
    sse_store_unsubscribe(sse_store_get(), &sub->chans);
}

const sse_store_channels *sse_registry_channels(const sse_sub *sub)
{
    return &sub->chans;
}

/* ---- a stream's thread ---- */

/* Moves the stream's pending state into b (the stream's mutex held). */
static void take_state(sse_sub *sub, sse_registry_batch *b)
{
    b->spill = sub->spill;
    b->spill_len = sub->spill_len;
    b->spill_events = sub->spill_events;
    b->spill_payload = sub->spill_payload;
    sub->spill = NULL;
    sub->spill_len = 0;
    sub->spill_events = sub->spill_payload = 0;
    b->direct_last = sub->direct_last;
    b->dead = sub->dead;
}

void sse_registry_w_wait(sse_sub *sub, apr_interval_time_t timeout, sse_registry_batch *b)
{
    pthread_mutex_lock(&sub->mu);
    if (timeout > 0 && !sub->qlen && !sub->overflow && !sub->ended && !sse_registry_stopping() && !sub->dead
        && !sub->spill) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)apr_time_sec(timeout);
        until.tv_nsec += (long)apr_time_usec(timeout) * 1000;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        sub->waiting = 1;
        pthread_cond_timedwait(&sub->cv, &sub->mu, &until);
        sub->waiting = 0;
    }
    b->n = 0;
    while (sub->qlen) {
        b->frame[b->n++] = sub->q[sub->qhead];
        sub->qhead = (sub->qhead + 1) % SSE_REGISTRY_QUEUE;
        sub->qlen--;
    }
    b->overflow = sub->overflow;
    b->ended = sub->ended;
    b->stopping = sse_registry_stopping();
    take_state(sub, b);
    pthread_mutex_unlock(&sub->mu);
}

void sse_registry_w_release(sse_registry_batch *b)
{
    int i;

    for (i = 0; i < b->n; i++)
        sse_frame_unref(b->frame[i]);
    b->n = 0;
}

apr_uint64_t sse_registry_w_resync(sse_sub *sub)
{
    apr_uint64_t upto;

    pthread_mutex_lock(&reg.mu);
    pthread_mutex_lock(&sub->mu);
    sub_drop_queue(sub);
    sub->overflow = 0;
    upto = sub->queued = reg.processed;
    pthread_mutex_unlock(&sub->mu);
    pthread_mutex_unlock(&reg.mu);
    return upto;
}

int sse_registry_w_direct_begin(sse_sub *sub, int fd, int chunked, apr_uint64_t written)
{
    int on;

    pthread_mutex_lock(&sub->mu);
    on = !sub->qlen && !sub->overflow && !sub->ended && !sub->dead && !sub->spill
         && !sse_registry_stopping();
    if (on) {
        sub->fd = fd;
        sub->chunked = chunked;
        sub->direct = 1;
        /* Nothing the stream has written already may be sent again. */
        if (sub->queued < written)
            sub->queued = written;
    }
    pthread_mutex_unlock(&sub->mu);
    return on;
}

apr_size_t sse_registry_w_direct_end(sse_sub *sub, sse_registry_batch *b)
{
    apr_size_t bytes;

    pthread_mutex_lock(&sub->mu);
    sub->direct = 0;
    take_state(sub, b);
    bytes = sub->direct_bytes;
    sub->direct_bytes = 0;
    b->direct_events = sub->direct_events;
    b->direct_payload = sub->direct_payload;
    sub->direct_events = sub->direct_payload = 0;
    pthread_mutex_unlock(&sub->mu);
    return bytes;
}

int sse_registry_w_direct_write(sse_sub *sub, const char *bytes, apr_size_t len)
{
    struct iovec iov[3];
    apr_uint64_t tally[2] = { 0, 0 };
    int done;

    pthread_mutex_lock(&sub->mu);
    done = sub->direct;
    if (done) {
        iov[1].iov_base = (void *)bytes;
        iov[1].iov_len = len;
        direct_send_frames(sub, iov, 1, len, sub->direct_last, 0, tally);
    }
    pthread_mutex_unlock(&sub->mu);
    sse_store_count(sse_store_get(), SSE_C_BYTES_SENT, tally[1]);
    return done;
}

/* ---- detached streams (sse_detach.h) ---- */

int sse_registry_w_detach(sse_sub *sub, int fd, int chunked, apr_uint64_t written, void *owner)
{
    int on;

    pthread_mutex_lock(&sub->mu);
    on = !sub->qlen && !sub->overflow && !sub->ended && !sub->dead
         && !sub->spill && !sse_registry_stopping();
    if (on) {
        sub->fd = fd;
        sub->chunked = chunked;
        sub->direct = 1;
        sub->detached = owner;
        sub->direct_at = apr_time_now();
        if (sub->queued < written)
            sub->queued = written;
    }
    pthread_mutex_unlock(&sub->mu);
    if (on) {
        /* From now on the struct outlives the request: the detach thread
         * unsubscribes and frees it. */
        apr_pool_cleanup_kill(sub->pool, sub, unsubscribe_cleanup);
        sub->pool = NULL;
    }
    return on;
}

apr_time_t sse_registry_w_direct_at(sse_sub *sub)
{
    apr_time_t at;

    pthread_mutex_lock(&sub->mu);
    at = sub->direct_at;
    pthread_mutex_unlock(&sub->mu);
    return at;
}

void sse_registry_w_free(sse_sub *sub)
{
    SSE_ASSERT(!sub->registered && !sub->pool);
    free(sub);
}
