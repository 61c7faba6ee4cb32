/* sse_hub.c -- the child's dispatcher thread, its subscriber registry, and
 * replay from the ring.
 *
 * Locks, always taken in this order: the registry mutex (hub.mu), then a
 * stream's own mutex (sub->mu). Both are plain pthread objects: the
 * dispatcher is a pthread sleeping on a futex, Linux-first by design. The
 * global `sse-ring` lock is never held together with either, except in
 * sse_hub_subscribe, where it is released before hub.mu is taken. The
 * dispatcher holds hub.mu while it fans a batch out, so registering and
 * unregistering streams wait for the batch; the stream locks are taken
 * once per stream and batch.
 *
 * Memory: the dispatcher copies each batch out of the ring into one buffer
 * of its own (64 KiB, grown to the largest record seen). Direct writes go
 * straight from there; a queued event is one malloc'd copy of the frame per
 * child, shared by every stream of the child that waits for it and freed by
 * the last one done with it. A stream owns only its struct, allocated from
 * its request pool, and at most SSE_HUB_QUEUE references.
 */
#include "sse_hub.h"
#include "sse_shm.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <pthread.h>
#include <signal.h>
#ifdef __linux__
#include <sys/prctl.h>
#ifndef PR_FUTEX_HASH
#define PR_FUTEX_HASH           78      /* Linux 6.16 */
#define PR_FUTEX_HASH_SET_SLOTS 1
#endif
#define FUTEX_HASH_MAX          (1 << 16)
#endif
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <apr_atomic.h>
#include <apr_strings.h>
#include <http_log.h>
#include <http_request.h>
#include <ap_mpm.h>

APLOG_USE_MODULE(sse);

#define DISPATCH_POLL apr_time_from_msec(200)   /* stop checks, futex timeout */
#define CHUNK_HEAD    24                        /* "<hex size>\r\n" */
#define CATCH_UP_WAIT 1                         /* seconds, see catch_up */

typedef struct sse_node sse_node;
struct sse_node {
    sse_sub  *sub;
    int       k;                /* index into sub->slots */
    sse_node *prev, *next;
};

struct sse_sub {
    pthread_mutex_t mu;         /* plain pthread objects, not pool-owned: */
    pthread_cond_t  cv;         /* see unsubscribe_cleanup */
    int           nchan;
    int           slots[SSE_BODY_MAX_CHANNELS];
    apr_uint32_t  epochs[SSE_BODY_MAX_CHANNELS];
    sse_node      nodes[SSE_BODY_MAX_CHANNELS];
    sse_hub_ev   *q[SSE_HUB_QUEUE];
    int           qhead, qlen;
    apr_uint64_t  queued;       /* stamp of the newest event queued or sent */
    int           waiting, overflow, ended;
    /* Direct mode: the dispatcher writes to the socket itself. */
    int           fd;
    int           direct;       /* the dispatcher owns the socket now */
    int           chunked;      /* frame each event as an HTTP/1.1 chunk */
    int           dead;         /* a direct write failed: the client is gone */
    char         *spill;        /* bytes a direct write left unsent (malloc) */
    apr_size_t    spill_len;
    apr_uint64_t  direct_last;  /* stamp of the newest event sent directly */
    apr_size_t    direct_bytes;
    /* The dispatcher's alone, within one batch: the records for this
     * stream (indices into the batch), and the next stream with some. */
    unsigned char pend[SSE_HUB_BATCH];
    int           npend;
    sse_sub      *pend_next;
    int           registered;
    sse_sub      *prev, *next;  /* all streams of the child */
};

static struct {
    pthread_mutex_t     mu;
    sse_node          **by_slot;
    sse_sub            *all;
    apr_uint64_t        cursor;     /* ring offset of the next record */
    apr_uint64_t        processed;  /* stamp of the last record fanned out */
    apr_uint64_t        done;       /* ring offset up to which that is */
    pthread_cond_t      caught_up;  /* done moved, for subscribers waiting */
    int                 catching_up;    /* how many wait */
    volatile apr_uint32_t stopping;
    pthread_t           thread;
    int                 running;
    int                 abandoned;  /* exiting without the dispatcher joined */
    int                 ready;
    server_rec         *s;
} hub = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* ---- events shared by the streams of this child ---- */

static sse_hub_ev *ev_make(const sse_ring_rec *rec)
{
    sse_hub_ev *ev = malloc(sizeof(*ev) + rec->frame_len);

    if (!ev)
        return NULL;
    ev->refs = 1;
    ev->stamp = rec->stamp;
    ev->len = rec->frame_len;
    memcpy(ev->frame, rec->frame, rec->frame_len);
    return ev;
}

static void ev_release(sse_hub_ev *ev)
{
    if (apr_atomic_dec32(&ev->refs) == 0)
        free(ev);
}

void sse_hub_release(sse_hub_batch *b)
{
    int i;

    for (i = 0; i < b->n; i++)
        ev_release(b->ev[i]);
    b->n = 0;
}

/* ---- fan-out (dispatcher thread, hub.mu held) ---- */

static void sub_drop_queue(sse_sub *sub)
{
    while (sub->qlen) {
        ev_release(sub->q[sub->qhead]);
        sub->qhead = (sub->qhead + 1) % SSE_HUB_QUEUE;
        sub->qlen--;
    }
}

static void sub_signal(sse_sub *sub)
{
    if (sub->waiting)
        pthread_cond_signal(&sub->cv);
}

/* Writes bytes to a direct-mode stream's socket without blocking (sub->mu
 * held). All written: done. Partly or not at all (a slow client): keep the
 * rest and give the socket back to the stream's thread, which writes it
 * with the connection's timeout and then goes on through the filters.
 * Failed: the client is gone. */
static void direct_send(sse_sub *sub, struct iovec *iov, int n, apr_uint64_t stamp)
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
        return;
    }
    sent = rv < 0 ? 0 : (apr_size_t)rv;
    sub->direct_bytes += sent;
    sub->direct_last = stamp;
    if (sent == total)
        return;
    sub->spill = malloc(total - sent);
    if (!sub->spill) {
        sub->dead = 1;          /* cannot keep the stream consistent */
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
    }
    sub->direct = 0;
    sub_signal(sub);
}

/* A batch: the records the dispatcher read from the ring in one go, copied
 * back to back into buf. When the dispatcher keeps up, a batch is one
 * record; when it falls behind (many streams, fast publishers), it holds
 * all that arrived meanwhile, and each stream gets them in one write: the
 * cost of a direct write is per system call, hardly per byte. */
typedef struct {
    char        *buf;
    apr_size_t   size, used;
    int          n;
    sse_ring_rec rec[SSE_HUB_BATCH];
    sse_hub_ev  *ev[SSE_HUB_BATCH];     /* copies for queueing, made lazily */
    sse_sub     *pending;               /* streams with records in pend[] */
} dispatch_batch;

enum { BATCH_FULL = -1 };

/* Reads records from hub.cursor until the ring is empty (SSE_RING_EMPTY),
 * the dispatcher fell behind the tail (SSE_RING_LOST) or the batch is full
 * (BATCH_FULL). */
static int batch_read(dispatch_batch *b, sse_ring *ring)
{
    for (;;) {
        sse_ring_rec *rec = &b->rec[b->n];
        apr_size_t need = 0;
        int rv;

        if (b->n == SSE_HUB_BATCH)
            return BATCH_FULL;
        rv = sse_ring_read(ring, &hub.cursor, b->buf + b->used, b->size - b->used, &need, rec);
        if (rv == SSE_RING_SMALL) {
            void *bigger;

            if (b->n)
                return BATCH_FULL;      /* read it first in the next batch */
            if (!(bigger = realloc(b->buf, need)))
                return SSE_RING_EMPTY;  /* retried at the next wake-up */
            b->buf = bigger;
            b->size = need;
            continue;
        }
        if (rv != SSE_RING_OK)
            return rv;
        /* Records are multiples of 8 bytes: the next copy stays aligned. */
        b->used += (apr_size_t)(rec->next - rec->off);
        b->n++;
    }
}

static sse_hub_ev *batch_ev(dispatch_batch *b, int i)
{
    if (!b->ev[i])
        b->ev[i] = ev_make(&b->rec[i]);
    return b->ev[i];
}

/* Writes the frames in iov[1..n] to a direct-mode stream as one chunk
 * (iov[0] and iov[n + 1] are the chunk's header and trailer) or, on a
 * connection that is not chunked, as they are. */
static void direct_send_frames(sse_sub *sub, struct iovec *iov, int n, apr_size_t len,
                               char *head, apr_uint64_t last)
{
    if (!n)
        return;
    if (!sub->chunked) {
        direct_send(sub, iov + 1, n, last);
        return;
    }
    iov[0].iov_base = head;
    iov[0].iov_len = (size_t)apr_snprintf(head, CHUNK_HEAD, "%" APR_UINT64_T_HEX_FMT "\r\n",
                                          (apr_uint64_t)len);
    iov[n + 1].iov_base = (void *)"\r\n";
    iov[n + 1].iov_len = 2;
    direct_send(sub, iov, n + 2, last);
}

/* Hands a stream the records of the batch that are for it, in ring order,
 * each at most once (sub->queued is the stamp of the newest it was given):
 * in one write in direct mode, else through its queue. */
static void sub_flush(dispatch_batch *b, sse_sub *sub)
{
    struct iovec iov[SSE_HUB_BATCH + 2];
    char head[CHUNK_HEAD];
    apr_size_t len = 0;
    apr_uint64_t last = 0;
    int i, n = 0, queued = 0;

    pthread_mutex_lock(&sub->mu);
    for (i = 0; i < sub->npend; i++) {
        const sse_ring_rec *rec = &b->rec[sub->pend[i]];
        sse_hub_ev *ev;

        if (rec->stamp <= sub->queued)
            continue;
        if (rec->kind == SSE_REC_DELETE) {
            /* What came before the delete is still delivered. */
            if (sub->direct)
                direct_send_frames(sub, iov, n, len, head, last);
            n = 0;
            sub->ended = 1;
            sub_signal(sub);
            break;
        }
        if (sub->direct) {
            iov[++n].iov_base = (void *)rec->frame;
            iov[n].iov_len = rec->frame_len;
            len += rec->frame_len;
            last = sub->queued = rec->stamp;
            continue;
        }
        if (sub->overflow || sub->ended)
            continue;
        if (!(ev = batch_ev(b, sub->pend[i]))) {
            sub->overflow = 1;          /* out of memory: catch up later */
        }
        else if (sub->qlen == SSE_HUB_QUEUE) {
            /* A slow client: stop queueing, let its thread read the ring
             * at its own pace instead. */
            sub->overflow = 1;
            sub_drop_queue(sub);
        }
        else {
            apr_atomic_inc32(&ev->refs);
            sub->q[(sub->qhead + sub->qlen) % SSE_HUB_QUEUE] = ev;
            sub->qlen++;
            sub->queued = rec->stamp;
        }
        queued = 1;
    }
    if (sub->direct)
        direct_send_frames(sub, iov, n, len, head, last);
    if (queued)
        sub_signal(sub);
    pthread_mutex_unlock(&sub->mu);
    sub->npend = 0;
}

/* Fans a batch out (hub.mu held): first each local stream of each record's
 * channels collects the record's index, then each such stream is flushed
 * once. Only the dispatcher touches pend[], so the first pass takes no
 * stream's lock. */
static void batch_fan_out(dispatch_batch *b)
{
    apr_uint32_t slots = sse_ring_chan_slots(sse_shm_get()->ring);
    sse_sub *sub, *next;
    int i, j;

    for (i = 0; i < b->n; i++) {
        const sse_ring_rec *rec = &b->rec[i];

        if (rec->kind != SSE_REC_EVENT && rec->kind != SSE_REC_DELETE)
            continue;
        for (j = 0; j < rec->nchan; j++) {
            const sse_ring_link *l = &rec->links[j];
            sse_node *n;

            if (l->chan >= slots)
                continue;
            for (n = hub.by_slot[l->chan]; n; n = n->next) {
                sub = n->sub;
                if (sub->epochs[n->k] != l->epoch)
                    continue;
                if (!sub->npend) {
                    sub->pend_next = b->pending;
                    b->pending = sub;
                }
                else if (sub->pend[sub->npend - 1] == i) {
                    continue;           /* on two of its channels */
                }
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

static void batch_clear(dispatch_batch *b)
{
    int i;

    for (i = 0; i < b->n; i++) {
        if (b->ev[i])
            ev_release(b->ev[i]);
        b->ev[i] = NULL;
    }
    b->n = 0;
    b->used = 0;
}

static void broadcast(int overflow)
{
    sse_sub *sub;

    for (sub = hub.all; sub; sub = sub->next) {
        pthread_mutex_lock(&sub->mu);
        if (overflow) {
            sub->overflow = 1;
            sub->direct = 0;
            sub_drop_queue(sub);
        }
        pthread_cond_signal(&sub->cv);
        pthread_mutex_unlock(&sub->mu);
    }
}

static int mpm_stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

static void *dispatcher(void *unused)
{
    sse_ring *ring = sse_shm_get()->ring;
    dispatch_batch *b = calloc(1, sizeof(*b));

    if (b) {
        b->size = 64 * 1024;
        b->buf = malloc(b->size);
    }
    if (!b || !b->buf) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, APR_ENOMEM, hub.s,
                     "event dispatcher: out of memory; streams of this child "
                     "will receive no live events");
        free(b);
        return NULL;
    }
    while (!hub.stopping) {
        apr_uint32_t seen = sse_shm_wake_seen();
        int rv;

        do {
            rv = batch_read(b, ring);
            pthread_mutex_lock(&hub.mu);
            if (b->n) {
                batch_fan_out(b);
                hub.processed = b->rec[b->n - 1].stamp;
            }
            hub.done = hub.cursor;
            if (hub.catching_up)
                pthread_cond_broadcast(&hub.caught_up);
            /* A child without streams sleeps through publishes and may
             * find the ring overwritten: nothing was missed then. */
            if (rv == SSE_RING_LOST && hub.all) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, hub.s,
                             "dispatcher fell a whole ring behind; streams of this "
                             "child catch up from the ring (SSEBufferSize too small?)");
                broadcast(1);
            }
            pthread_mutex_unlock(&hub.mu);
            batch_clear(b);
        } while (rv != SSE_RING_EMPTY && !hub.stopping);
        if (mpm_stopping())
            apr_atomic_set32(&hub.stopping, 1);
        if (hub.stopping)
            break;
        sse_shm_sleep(seen, hub.cursor, DISPATCH_POLL);
    }
    /* Wake every stream so that it ends and its client reconnects to the
     * next generation. Done here rather than by whoever set the flag: that
     * may be a signal handler that interrupted a stream holding a lock. */
    pthread_mutex_lock(&hub.mu);
    broadcast(0);
    pthread_cond_broadcast(&hub.caught_up);
    pthread_mutex_unlock(&hub.mu);
    free(b->buf);
    free(b);
    return NULL;
}

void sse_hub_stop(void)
{
    /* No lock here: prefork calls this from its SIGTERM handler, possibly on
     * a stream's thread in the middle of sse_hub_wait. The dispatcher does
     * the waking. */
    if (apr_atomic_cas32(&hub.stopping, 1, 0) == 0 && sse_shm_get())
        sse_shm_wake_self();
}

int sse_hub_stopping(void)
{
    return hub.stopping != 0;
}

/* A pre-cleanup of pchild: runs before the request pools below pchild are
 * destroyed, so the dispatcher is gone before the streams it points to. */
static apr_status_t hub_cleanup(void *unused)
{
    struct timespec limit;

    if (!hub.running || pthread_equal(hub.thread, pthread_self()))
        return APR_SUCCESS;
    sse_hub_stop();
    /* Bounded: under prefork this runs in a signal handler that may have
     * interrupted a stream holding a lock the dispatcher then waits for.
     * The process exits right after; a dispatcher stuck on that lock never
     * runs again. */
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 1;
    if (pthread_timedjoin_np(hub.thread, NULL, &limit) == 0)
        hub.running = 0;
    else
        hub.abandoned = 1;
    return APR_SUCCESS;
}

/* Linux 6.16 and later give each multi-threaded process its own futex hash
 * table, sized from min(threads, CPUs): 16 buckets on a small machine,
 * whatever ThreadsPerChild says. Every thread parked on a condition
 * variable (each stream's, and the MPM's idle workers) sits in one of them,
 * and every wake-up walks its bucket: with 1,250 threads per child that is
 * some 80 entries per futex call, a cost that grows with the child. Size
 * the table for the threads the child will have, as the kernel would
 * without its CPU clamp. Older kernels refuse the call; nothing changes. */
static void size_futex_hash(server_rec *s)
{
#if defined(__linux__)
    int threads = 0, slots = 16, rv;

    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    while (slots < 4 * threads && slots < FUTEX_HASH_MAX)
        slots <<= 1;
    rv = prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, slots, 0, 0);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, rv ? errno : 0, s,
                 "futex hash of this child: %d slots for %d threads%s", slots, threads,
                 rv ? " not set (kernel without private futex hashes)" : "");
#endif
}

void sse_hub_child_init(apr_pool_t *pchild, server_rec *s)
{
    sse_shm *sh = sse_shm_get();
    pthread_condattr_t cattr;
    pthread_attr_t attr;
    sigset_t all, old;
    int rv;

    if (!sh)
        return;
    size_futex_hash(s);
    hub.s = s;
    hub.ready = 1;
    hub.by_slot = apr_pcalloc(pchild, sse_ring_chan_slots(sh->ring) * sizeof(sse_node *));
    /* Start at the present, consistently: no record may be half-counted
     * between the cursor and the stamp that says what was processed. */
    if (sse_shm_lock(s) == APR_SUCCESS) {
        hub.cursor = hub.done = sse_ring_head(sh->ring);
        hub.processed = sse_ring_last_stamp(sh->ring);
        sse_shm_unlock();
    }
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&hub.caught_up, &cattr);
    pthread_condattr_destroy(&cattr);
    /* A plain thread with every signal blocked: the MPM's signals must reach
     * its own threads (prefork runs its exit path in the signal handler, on
     * whichever thread takes the signal), and no APR pool of the thread
     * may be torn down concurrently with pchild. */
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = pthread_create(&hub.thread, &attr, dispatcher, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    hub.running = rv == 0;
    if (rv != 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot start the event dispatcher thread: streams of this "
                     "child will receive no live events");
        return;
    }
    apr_pool_pre_cleanup_register(pchild, NULL, hub_cleanup);
}

/* ---- streams ---- */

static apr_status_t unsubscribe_cleanup(void *data)
{
    sse_sub *sub = data;

    /* The child is being torn down (prefork: maybe from a signal handler
     * that interrupted this very stream inside its condition wait, so that
     * destroying the condition would wait for ourselves). The dispatcher
     * has been stopped, nothing else runs, and the process's subscriber
     * column goes with it: touch nothing. */
    if (hub.stopping && (!hub.running || hub.abandoned)) {
        sub->registered = 0;
        return APR_SUCCESS;
    }
    sse_hub_unsubscribe(sub);
    return APR_SUCCESS;
}

/* Waits (hub.mu held) until the dispatcher has fanned out everything before
 * ring offset `head`. A dispatcher sleeps through publishes on channels that
 * have no subscriber in this child, so `processed` may lag; a new stream
 * would then get recent history through its queue, past any replay limit.
 * Bounded: a dispatcher that is seconds behind under overload delays new
 * streams by at most CATCH_UP_WAIT, and they then get that history live. */
static void catch_up(apr_uint64_t head)
{
    struct timespec until;

    if (hub.done >= head || !hub.running || hub.stopping)
        return;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += CATCH_UP_WAIT;
    hub.catching_up++;
    sse_shm_wake_self();
    while (hub.done < head && !hub.stopping
           && pthread_cond_timedwait(&hub.caught_up, &hub.mu, &until) != ETIMEDOUT)
        ;
    hub.catching_up--;
}

int sse_hub_subscribe(request_rec *r, const apr_array_header_t *channels,
                      sse_sub **out, apr_uint64_t *upto, const char **why)
{
    sse_shm *sh = sse_shm_get();
    const sse_bytes *c = (const sse_bytes *)channels->elts;
    pthread_condattr_t cattr;
    sse_sub *sub;
    int i, j;

    if (!sh || !hub.ready) {
        *why = "the event ring is not available in this process";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    sub = apr_pcalloc(r->pool, sizeof(*sub));
    pthread_mutex_init(&sub->mu, NULL);
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&sub->cv, &cattr);
    pthread_condattr_destroy(&cattr);

    if (sse_shm_lock(r->server) != APR_SUCCESS) {
        *why = "cannot take the sse-ring mutex";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    for (i = 0; i < channels->nelts; i++) {
        int slot = sse_ring_chan_intern(sh->ring, c[i].s, c[i].len);
        if (slot < 0) {
            for (j = 0; j < sub->nchan; j++) {
                if (sh->proc >= 0)
                    sse_ring_subs_add(sh->ring, sh->proc, sub->slots[j], -1);
            }
            sse_shm_unlock();
            *why = "too many channels in use (SSEMaxChannels)";
            return HTTP_SERVICE_UNAVAILABLE;
        }
        for (j = 0; j < sub->nchan && sub->slots[j] != slot; j++)
            ;
        if (j < sub->nchan)
            continue;                   /* named twice */
        sub->slots[sub->nchan] = slot;
        sub->epochs[sub->nchan] = sse_ring_chan_epoch(sh->ring, slot);
        sub->nchan++;
        if (sh->proc >= 0)
            sse_ring_subs_add(sh->ring, sh->proc, slot, 1);
    }
    sse_shm_unlock();

    pthread_mutex_lock(&hub.mu);
    catch_up(sse_ring_head(sh->ring));
    for (i = 0; i < sub->nchan; i++) {
        sse_node *n = &sub->nodes[i], **head = &hub.by_slot[sub->slots[i]];
        n->sub = sub;
        n->k = i;
        n->prev = NULL;
        n->next = *head;
        if (*head)
            (*head)->prev = n;
        *head = n;
    }
    sub->next = hub.all;
    if (hub.all)
        hub.all->prev = sub;
    hub.all = sub;
    sub->registered = 1;
    *upto = sub->queued = hub.processed;
    /* A DELETE fanned out between the epoch read and now would be missed. */
    for (i = 0; i < sub->nchan; i++) {
        if (sse_ring_chan_epoch(sh->ring, sub->slots[i]) != sub->epochs[i])
            sub->ended = 1;
    }
    pthread_mutex_unlock(&hub.mu);

    apr_pool_cleanup_register(r->pool, sub, unsubscribe_cleanup, apr_pool_cleanup_null);
    *out = sub;
    return OK;
}

void sse_hub_unsubscribe(sse_sub *sub)
{
    sse_shm *sh = sse_shm_get();
    int i;

    if (!sub->registered)
        return;
    pthread_mutex_lock(&hub.mu);
    for (i = 0; i < sub->nchan; i++) {
        sse_node *n = &sub->nodes[i];
        if (n->prev)
            n->prev->next = n->next;
        else
            hub.by_slot[sub->slots[i]] = n->next;
        if (n->next)
            n->next->prev = n->prev;
    }
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        hub.all = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    sub->registered = 0;
    pthread_mutex_unlock(&hub.mu);

    pthread_mutex_lock(&sub->mu);
    sub_drop_queue(sub);
    sub->direct = 0;
    free(sub->spill);
    sub->spill = NULL;
    pthread_mutex_unlock(&sub->mu);
    pthread_cond_destroy(&sub->cv);
    pthread_mutex_destroy(&sub->mu);
    if (sh->proc >= 0) {
        for (i = 0; i < sub->nchan; i++)
            sse_ring_subs_add(sh->ring, sh->proc, sub->slots[i], -1);
    }
}

void sse_hub_wait(sse_sub *sub, apr_interval_time_t timeout, sse_hub_batch *b)
{
    pthread_mutex_lock(&sub->mu);
    if (!sub->qlen && !sub->overflow && !sub->ended && !hub.stopping && !sub->dead
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
        b->ev[b->n++] = sub->q[sub->qhead];
        sub->qhead = (sub->qhead + 1) % SSE_HUB_QUEUE;
        sub->qlen--;
    }
    b->overflow = sub->overflow;
    b->ended = sub->ended;
    b->stopping = hub.stopping != 0;
    b->dead = sub->dead;
    b->spill = sub->spill;
    b->spill_len = sub->spill_len;
    sub->spill = NULL;
    sub->spill_len = 0;
    b->direct_last = sub->direct_last;
    pthread_mutex_unlock(&sub->mu);
}

int sse_hub_direct_begin(sse_sub *sub, int fd, int chunked, apr_uint64_t written)
{
    int on;

    pthread_mutex_lock(&sub->mu);
    on = !sub->qlen && !sub->overflow && !sub->ended && !sub->dead && !sub->spill
         && !hub.stopping;
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

apr_size_t sse_hub_direct_end(sse_sub *sub, sse_hub_batch *b)
{
    apr_size_t bytes;

    pthread_mutex_lock(&sub->mu);
    sub->direct = 0;
    b->spill = sub->spill;
    b->spill_len = sub->spill_len;
    sub->spill = NULL;
    sub->spill_len = 0;
    b->direct_last = sub->direct_last;
    b->dead = sub->dead;
    bytes = sub->direct_bytes;
    sub->direct_bytes = 0;
    pthread_mutex_unlock(&sub->mu);
    return bytes;
}

int sse_hub_direct_write(sse_sub *sub, const char *bytes, apr_size_t len)
{
    struct iovec iov[3];
    char chunk[24];
    int done;

    pthread_mutex_lock(&sub->mu);
    done = sub->direct;
    if (done) {
        iov[0].iov_base = chunk;
        iov[0].iov_len = (size_t)apr_snprintf(chunk, sizeof(chunk),
                                              "%" APR_UINT64_T_HEX_FMT "\r\n", (apr_uint64_t)len);
        iov[1].iov_base = (void *)bytes;
        iov[1].iov_len = len;
        iov[2].iov_base = (void *)"\r\n";
        iov[2].iov_len = 2;
        if (sub->chunked)
            direct_send(sub, iov, 3, sub->direct_last);
        else
            direct_send(sub, iov + 1, 1, sub->direct_last);
    }
    pthread_mutex_unlock(&sub->mu);
    return done;
}

apr_uint64_t sse_hub_resync(sse_sub *sub)
{
    apr_uint64_t upto;

    pthread_mutex_lock(&hub.mu);
    pthread_mutex_lock(&sub->mu);
    sub_drop_queue(sub);
    sub->overflow = 0;
    upto = sub->queued = hub.processed;
    pthread_mutex_unlock(&sub->mu);
    pthread_mutex_unlock(&hub.mu);
    return upto;
}

/* ---- replay ---- */

int sse_hub_read(sse_hub_reader *rd, apr_uint64_t off, sse_ring_rec *rec)
{
    sse_ring *ring = sse_shm_get()->ring;

    for (;;) {
        apr_size_t need = 0;
        int rv = sse_ring_read_at(ring, off, rd->buf, rd->size, &need, rec);
        if (rv != SSE_RING_SMALL)
            return rv == SSE_RING_OK ? SSE_RING_OK : SSE_RING_LOST;
        rd->size = need > rd->size * 2 ? need : rd->size * 2;
        rd->buf = apr_palloc(rd->pool, rd->size);
    }
}

void sse_hub_reader_init(sse_hub_reader *rd, apr_pool_t *p)
{
    rd->pool = p;
    rd->size = 4096;
    rd->buf = apr_palloc(p, rd->size);
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

int sse_hub_gap(const sse_sub *sub, apr_uint64_t from)
{
    sse_ring *ring = sse_shm_get()->ring;
    int i;

    for (i = 0; i < sub->nchan; i++) {
        if (sse_ring_chan_epoch(ring, sub->slots[i]) == sub->epochs[i]
            && sse_ring_chan_evicted(ring, sub->slots[i]) > from)
            return 1;
    }
    return 0;
}

int sse_hub_resolve(const sse_sub *sub, apr_pool_t *p, const char *id, apr_size_t len,
                    apr_uint64_t *stamp)
{
    sse_ring *ring = sse_shm_get()->ring;
    sse_hub_reader rd;
    sse_ring_rec rec;
    int i;

    if (sse_wire_parse_server_id(id, len, stamp))
        return *stamp >= sse_ring_born(ring);
    sse_hub_reader_init(&rd, p);
    for (i = 0; i < sub->nchan; i++) {
        apr_uint64_t off = sse_ring_chan_last(ring, sub->slots[i]);
        while (sse_hub_read(&rd, off, &rec) == SSE_RING_OK) {
            const sse_ring_link *l = link_of(&rec, sub->slots[i], sub->epochs[i]);
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
    const sse_hub_ref *x = a, *y = b;

    return x->stamp < y->stamp ? -1 : x->stamp > y->stamp;
}

apr_array_header_t *sse_hub_collect(const sse_sub *sub, apr_pool_t *p, apr_uint64_t from,
                                    apr_uint64_t upto, int limit)
{
    sse_ring *ring = sse_shm_get()->ring;
    apr_array_header_t *refs = apr_array_make(p, 16, sizeof(sse_hub_ref));
    sse_hub_reader rd;
    sse_ring_rec rec;
    sse_hub_ref *r;
    int i, n, kept;

    sse_hub_reader_init(&rd, p);
    for (i = 0; i < sub->nchan; i++) {
        apr_uint64_t off = sse_ring_chan_last(ring, sub->slots[i]);
        int taken = 0;
        while (sse_hub_read(&rd, off, &rec) == SSE_RING_OK) {
            const sse_ring_link *l = link_of(&rec, sub->slots[i], sub->epochs[i]);
            if (!l || rec.stamp <= from)
                break;
            if (rec.kind == SSE_REC_EVENT && rec.stamp <= upto) {
                sse_hub_ref *ref = apr_array_push(refs);
                ref->stamp = rec.stamp;
                ref->off = rec.off;
                if (limit > 0 && ++taken >= limit)
                    break;
            }
            off = l->prev;
        }
    }
    r = (sse_hub_ref *)refs->elts;
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
