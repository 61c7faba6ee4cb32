/* sse_detach.c -- the child's detach thread: detached streams (see
 * sse_detach.h).
 *
 * One pthread per child (started like the dispatcher, every signal
 * blocked), one epoll set and one eventfd. Invariants:
 *   - Only this thread touches a record once it is in the list of all
 *     (dt.all); the handler hands records over through dt.incoming, under
 *     dt.mu (lock order: dt.mu, then the registry's locks). A record ended
 *     is freed at the end of the epoll round, so that events of the round
 *     that name it find it (fd -1) rather than freed memory. Other threads only set a record's `attention` flag and poke the
 *     eventfd (sse_detach_wake, called with registry locks held: it never
 *     blocks and takes no lock).
 *   - The socket is written by the dispatcher while the stream is in direct
 *     mode, and by this thread otherwise (the registry's direct flag, under
 *     the stream's mutex, says which): never by both.
 *   - Writes are non-blocking (MSG_DONTWAIT|MSG_NOSIGNAL): httpd toggled
 *     O_NONBLOCK on the shared file description as it pleased.
 *   - A stream ends in this order: taken out of direct mode and unsubscribed
 *     (the dispatcher writes no more), removed from epoll, its last bytes
 *     written (the terminal chunk when it ends cleanly), shutdown(SHUT_WR)
 *     so that the client sees a FIN, input read and discarded (unread input
 *     would turn the close into an RST), close().
 *
 * Slow clients, the same policy as a thread stream's: a direct write the
 * client could not take whole hands the rest over (the registry's spill);
 * this thread keeps it, with whatever the stream's queue collects
 * meanwhile, in the record's out buffer and writes it as the socket drains
 * (EPOLLOUT), then gives the socket back to the dispatcher. A queue that
 * overflowed (SSE_REGISTRY_QUEUE events behind) is caught up from the ring,
 * CATCH_UP_BYTES at a time, each batch once the previous one is out. Not
 * drained within the server's Timeout: the stream is cut (its framing is
 * broken). What the ring overwrote before it could be caught up: the
 * stream ends cleanly, and its client's reconnection (Last-Event-ID) hears
 * of the gap from the handler's replay, sse-gap or history, as usual.
 *
 * Each stream's end is logged at info level (SSE01701): client, reason,
 * events, body bytes, duration, channels: the access log line is written
 * at the hand-over, with the headers only.
 */
#include "sse_detach.h"
#include "sse_config.h"
#include "sse_dispatch.h"
#include "sse_log.h"
#include "sse_replay.h"
#include "sse_store.h"
#include "sse_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <apr_strings.h>
#include <http_log.h>
#include <ap_mpm.h>

APLOG_USE_MODULE(sse);

#define TICK        apr_time_from_msec(250) /* heartbeat and timeout checks */
#define IDLE_TICK   1000                    /* ms, epoll wait with no stream */
#define MAX_EVENTS  256
#define DRAIN_BUF   4096
#define RESUME_TRIES 8                      /* attention rounds before waiting */
#define JOIN_WAIT   2                       /* seconds, see detach_cleanup */
#define CHUNK_HEAD_MAX (16 + 2 + 1)
#define TERMINAL_CHUNK "0\r\n\r\n"
#define CATCH_UP_BYTES (256 * 1024)         /* read from the ring per batch */

typedef enum {
    END_NONE, END_SLOW, END_DELETED, END_STOPPING,  /* clean: terminal chunk */
    END_GONE, END_TIMEOUT                           /* cut */
} end_reason;

static const char *const reason_text[] = {
    "", "client too slow: resumes by reconnecting", "channel deleted", "child stopping",
    "client gone", "client too slow: write timed out"
};

typedef struct det det;
struct det {
    sse_sub     *sub;
    int          fd, chunked;
    apr_interval_time_t beat, timeout;
    apr_time_t   opened, seen_write, out_since;
    apr_uint64_t last;              /* stamp of the newest event written or given */
    apr_uint64_t events, bytes;     /* body written, for the end record */
    char        *out;               /* bytes this thread still has to write */
    apr_size_t   out_len, out_off, out_cap;
    apr_uint64_t out_events, out_payload;   /* what out completes */
    int          attention;         /* atomic: the registry woke it */
    end_reason   closing;           /* end once out is written */
    int          epollout;          /* EPOLLOUT is armed */
    int          catching;          /* reading the ring up to catch_upto */
    apr_uint64_t catch_upto;
    int          slow;              /* counted in sse_slow_subscribers */
    char        *client, *channels; /* malloc'd copies */
    det         *prev, *next;
};

static struct {
    pthread_t        thread;
    int              started, epfd, evfd;
    int              poked;         /* atomic: the eventfd has been written */
    pthread_mutex_t  mu;            /* guards incoming */
    det             *incoming;
    det             *all;           /* the thread's alone */
    det             *ended;         /* ended this round, freed at its end (their
                                     * epoll events of the round may follow) */
    int              closed;        /* under mu: the thread takes no more */
    int              quit;          /* atomic: the cleanup asks the thread to end */
    server_rec      *s;
    sse_registry_batch batch;       /* the thread's, reused */
    apr_pool_t      *pool;          /* the thread's, cleared after each catch-up */
} dt = { .mu = PTHREAD_MUTEX_INITIALIZER, .epfd = -1, .evfd = -1 };

static void poke(void)
{
    uint64_t one = 1;

    if (dt.evfd >= 0 && !__atomic_exchange_n(&dt.poked, 1, __ATOMIC_ACQ_REL))
        (void)!write(dt.evfd, &one, sizeof(one));
}

void sse_detach_wake(void *owner)
{
    det *d = owner;

    __atomic_store_n(&d->attention, 1, __ATOMIC_RELEASE);
    poke();
}

int sse_detach_available(void)
{
    return dt.started && !sse_registry_stopping() && !__atomic_load_n(&dt.quit,
                                                                       __ATOMIC_ACQUIRE);
}

/* A stream is slow while it has bytes of its own to write or a catch-up
 * to finish: one count in sse_slow_subscribers, one catch-up each time it
 * becomes so (as a thread stream counts them). */
static void update_slow(det *d)
{
    int now = d->out_len || d->catching;

    if (now == d->slow)
        return;
    d->slow = now;
    sse_store_gauge(sse_store_get(), SSE_G_SLOW, now ? 1 : -1);
    if (now)
        sse_store_count(sse_store_get(), SSE_C_CATCHUPS, 1);
}

/* ---- the out buffer ---- */

static int out_append(det *d, const char *s, apr_size_t len)
{
    if (d->out_len + len > d->out_cap) {
        apr_size_t cap = d->out_cap ? d->out_cap : 4096;
        char *p;

        while (cap < d->out_len + len)
            cap *= 2;
        if (!(p = realloc(d->out, cap)))
            return 0;
        d->out = p;
        d->out_cap = cap;
    }
    memcpy(d->out + d->out_len, s, len);
    d->out_len += len;
    return 1;
}

static void out_reset(det *d)
{
    d->out_len = d->out_off = 0;
    d->out_events = d->out_payload = 0;
    d->out_since = 0;
}

static void set_epollout(det *d, int on)
{
    struct epoll_event ev;

    if (d->epollout == on)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0);
    ev.data.ptr = d;
    epoll_ctl(dt.epfd, EPOLL_CTL_MOD, d->fd, &ev);
    d->epollout = on;
}

/* Writes what out holds without blocking: 1 all out, 0 not yet, -1 the
 * client is gone. */
static int out_write(det *d)
{
    while (d->out_off < d->out_len) {
        ssize_t n = send(d->fd, d->out + d->out_off, d->out_len - d->out_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0)
            return -1;
        d->out_off += (apr_size_t)n;
        d->seen_write = apr_time_now();
    }
    return 1;
}

/* ---- ending ---- */

static void drain_input(int fd)
{
    char buf[DRAIN_BUF];
    ssize_t n;

    do {
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    } while (n > 0 || (n < 0 && errno == EINTR));
}

static void unlink_det(det *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        dt.all = d->next;
    if (d->next)
        d->next->prev = d->prev;
}

static void end_stream(det *d, end_reason why)
{
    sse_registry_batch *b = &dt.batch;
    int clean = why < END_GONE;

    /* Out of direct mode and out of the registry: the dispatcher writes to
     * the socket no more. What it left unsent goes out first. */
    sse_registry_w_direct_end(d->sub, b);
    d->events += b->direct_events;
    d->bytes += b->direct_payload;
    if (b->spill) {
        if (!out_append(d, b->spill, b->spill_len))
            clean = 0;
        d->out_events += b->spill_events;
        d->out_payload += b->spill_payload;
        free(b->spill);
        b->spill = NULL;
    }
    if (b->dead)
        clean = 0;
    sse_registry_w_unsubscribe(d->sub);
    sse_registry_w_free(d->sub);
    d->sub = NULL;
    epoll_ctl(dt.epfd, EPOLL_CTL_DEL, d->fd, NULL);

    if (clean && d->out_len) {
        /* One last try; a client that cannot take it now has broken framing
         * anyway, and is cut. */
        if (out_write(d) == 1) {
            sse_store_count(sse_store_get(), SSE_C_EVENTS_DELIVERED, d->out_events);
            sse_store_count(sse_store_get(), SSE_C_BYTES_SENT, d->out_payload);
            d->events += d->out_events;
            d->bytes += d->out_payload;
        }
        else {
            clean = 0;
        }
    }
    out_reset(d);
    d->catching = 0;
    update_slow(d);
    if (clean && d->chunked)
        (void)!send(d->fd, TERMINAL_CHUNK, sizeof(TERMINAL_CHUNK) - 1,
                    MSG_DONTWAIT | MSG_NOSIGNAL);
    shutdown(d->fd, SHUT_WR);
    drain_input(d->fd);
    close(d->fd);
    sse_store_gauge(sse_store_get(), SSE_G_DETACHED, -1);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, dt.s, SSE_LOGNO(01701)
                 "detached stream of %s ended (%s): %" APR_UINT64_T_FMT " events, %"
                 APR_UINT64_T_FMT " bytes, %.3f s, channels %s", d->client,
                 reason_text[why], d->events, d->bytes,
                 (double)(apr_time_now() - d->opened) / APR_USEC_PER_SEC, d->channels);
    unlink_det(d);
    d->fd = -1;
    d->next = dt.ended;
    dt.ended = d;
}

static void free_ended(void)
{
    det *d, *next;

    for (d = dt.ended; d; d = next) {
        next = d->next;
        free(d->out);
        free(d->client);
        free(d->channels);
        free(d);
    }
    dt.ended = NULL;
}

/* ---- the stream's part of the registry ---- */

/* Frames of the batch newer than what the stream has, as one chunk. */
static int take_frames(det *d, sse_registry_batch *b)
{
    apr_size_t len = 0;
    apr_uint64_t n = 0;
    char head[CHUNK_HEAD_MAX];
    int i, ok = 1;

    for (i = 0; i < b->n; i++) {
        if (b->frame[i]->stamp > d->last) {
            len += b->frame[i]->len;
            n++;
        }
    }
    if (!n)
        return 1;
    if (d->chunked)
        ok = out_append(d, head, (apr_size_t)apr_snprintf(head, sizeof(head), "%"
                                                          APR_UINT64_T_HEX_FMT "\r\n",
                                                          (apr_uint64_t)len));
    for (i = 0; ok && i < b->n; i++) {
        if (b->frame[i]->stamp <= d->last)
            continue;
        ok = out_append(d, b->frame[i]->bytes, b->frame[i]->len);
        d->last = b->frame[i]->stamp;
    }
    if (ok && d->chunked)
        ok = out_append(d, "\r\n", 2);
    d->out_events += n;
    d->out_payload += len;
    return ok;
}

/* Retained events of the stream's channels after d->last, up to
 * d->catch_upto, into out, one chunk each, CATCH_UP_BYTES at most: 1 caught
 * up, 0 more to read once this is out, -1 some were overwritten first. */
static int catch_up(det *d)
{
    const sse_store_channels *chans = sse_registry_channels(d->sub);
    sse_replay_reader rd;
    apr_array_header_t *refs;
    const sse_replay_ref *ref;
    sse_ring_rec rec;
    apr_size_t start = d->out_len;
    char head[CHUNK_HEAD_MAX];
    int i, rv = 1;

    if (sse_replay_gap(chans, d->last))
        return -1;
    sse_replay_reader_init(&rd, dt.pool);
    refs = sse_replay_collect(chans, dt.pool, d->last, d->catch_upto, 0);
    ref = (const sse_replay_ref *)refs->elts;
    for (i = 0; i < refs->nelts; i++) {
        if (d->out_len - start >= CATCH_UP_BYTES) {
            rv = 0;
            break;
        }
        if (sse_replay_read(&rd, ref[i].off, &rec) != SSE_RING_OK) {
            rv = -1;
            break;
        }
        if (d->chunked
            && (!out_append(d, head, (apr_size_t)apr_snprintf(head, sizeof(head), "%"
                                                              APR_UINT64_T_HEX_FMT "\r\n",
                                                              (apr_uint64_t)rec.frame_len))
                || !out_append(d, rec.frame, rec.frame_len) || !out_append(d, "\r\n", 2))) {
            rv = -1;
            break;
        }
        if (!d->chunked && !out_append(d, rec.frame, rec.frame_len)) {
            rv = -1;
            break;
        }
        d->out_events++;
        d->out_payload += rec.frame_len;
        d->last = rec.stamp;
    }
    apr_pool_clear(dt.pool);
    if (rv == 1 && d->last < d->catch_upto)
        d->last = d->catch_upto;
    return rv;
}

/* Writes the out buffer and, once it is all out, goes on catching up,
 * ends the stream if it is closing, or gives the socket back to the
 * dispatcher. Returns 0 if d is gone (ended), 1 if it stays, 2 if it must
 * be looked at again. */
static int pump(det *d)
{
    for (;;) {
        int rv = d->out_len ? out_write(d) : 1;

        if (rv < 0) {
            end_stream(d, END_GONE);
            return 0;
        }
        if (rv == 0) {
            if (!d->out_since)
                d->out_since = apr_time_now();
            set_epollout(d, 1);
            update_slow(d);
            return 1;
        }
        if (d->out_len) {
            sse_store_count(sse_store_get(), SSE_C_EVENTS_DELIVERED, d->out_events);
            sse_store_count(sse_store_get(), SSE_C_BYTES_SENT, d->out_payload);
            d->events += d->out_events;
            d->bytes += d->out_payload;
            out_reset(d);
        }
        if (!d->catching || d->closing)
            break;
        switch (catch_up(d)) {
        case 1:
            d->catching = 0;
            break;
        case -1:
            d->catching = 0;
            d->closing = END_SLOW;      /* after what it read is out */
            break;
        }
        if (!d->out_len)
            break;
    }
    set_epollout(d, 0);
    update_slow(d);
    if (d->closing) {
        end_stream(d, d->closing);
        return 0;
    }
    if (d->catching)
        return 1;
    if (!sse_registry_w_direct_begin(d->sub, d->fd, d->chunked, d->last))
        return 2;       /* more came meanwhile, or the stream is ending */
    return 1;
}

/* What the registry has for the stream: takes it, as its thread would. */
static void attend(det *d)
{
    sse_registry_batch *b = &dt.batch;
    int tries, rv = 2;

    /* Writing what it has, or catching up: what the queue holds stays
     * there until that is done (the queue, not this thread's buffer, bounds
     * what a slow client costs: it overflows, and the rest is read from
     * the ring); so does a DELETE or the child's stop. A vanished client is
     * seen at once (epoll). The stream is not in direct mode meanwhile: no
     * spill can come. */
    if (d->catching || d->out_len) {
        if (!d->epollout && pump(d) == 2)
            sse_detach_wake(d);
        return;
    }
    for (tries = 0; rv == 2 && tries < RESUME_TRIES; tries++) {
        int ok = 1;

        sse_registry_w_wait(d->sub, 0, b);
        if (b->direct_last > d->last)
            d->last = b->direct_last;
        if (b->dead) {
            sse_registry_w_release(b);
            free(b->spill);
            b->spill = NULL;
            end_stream(d, END_GONE);
            return;
        }
        if (b->spill) {
            ok = out_append(d, b->spill, b->spill_len);
            d->out_events += b->spill_events;
            d->out_payload += b->spill_payload;
            free(b->spill);
            b->spill = NULL;
        }
        if (ok)
            ok = take_frames(d, b);
        sse_registry_w_release(b);
        if (!ok) {
            end_stream(d, END_GONE);            /* out of memory: framing lost */
            return;
        }
        if (b->overflow && !d->catching) {
            /* Its queue was dropped: read what it missed from the ring. */
            d->catching = 1;
            d->catch_upto = sse_registry_w_resync(d->sub);
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, dt.s, SSE_LOGNO(01706)
                         "slow client %s: more than %d events pending, catching up from "
                         "the ring", d->client, SSE_REGISTRY_QUEUE);
        }
        if (b->ended)
            d->closing = END_DELETED;
        if (b->stopping)
            d->closing = END_STOPPING;
        rv = pump(d);
    }
    if (rv == 2)
        sse_detach_wake(d);             /* again at the next round */
}

/* Heartbeats and slow writes that took too long. */
static void tick(apr_time_t now)
{
    det *d, *next;

    for (d = dt.all; d; d = next) {
        next = d->next;
        if (d->out_len) {
            if (now - d->out_since > d->timeout)
                end_stream(d, END_TIMEOUT);
            continue;
        }
        if (!d->beat || now < d->seen_write + d->beat)
            continue;
        d->seen_write = sse_registry_w_direct_at(d->sub);
        if (now < d->seen_write + d->beat)
            continue;
        if (sse_registry_w_direct_write(d->sub, SSE_WIRE_HEARTBEAT, SSE_WIRE_HEARTBEAT_LEN)) {
            sse_store_count(sse_store_get(), SSE_C_HEARTBEATS, 1);
            d->seen_write = now;
        }
    }
}

static void input(det *d, uint32_t events)
{
    char buf[DRAIN_BUF];
    ssize_t n;

    if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
        end_stream(d, END_GONE);
        return;
    }
    if (events & EPOLLIN) {
        /* Whatever the client sends after its request is read and dropped;
         * end of input means it went away. */
        for (;;) {
            n = recv(d->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0)
                continue;
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            end_stream(d, END_GONE);
            return;
        }
    }
    if ((events & EPOLLOUT) && pump(d) == 2)
        attend(d);
}

static void take_incoming(void)
{
    det *d, *next;

    pthread_mutex_lock(&dt.mu);
    d = dt.incoming;
    dt.incoming = NULL;
    pthread_mutex_unlock(&dt.mu);
    for (; d; d = next) {
        struct epoll_event ev;

        next = d->next;
        d->prev = NULL;
        d->next = dt.all;
        if (dt.all)
            dt.all->prev = d;
        dt.all = d;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = d;
        if (epoll_ctl(dt.epfd, EPOLL_CTL_ADD, d->fd, &ev) != 0)
            end_stream(d, END_GONE);
    }
}

static void attend_all(void)
{
    det *d, *next;

    for (d = dt.all; d; d = next) {
        next = d->next;
        if (__atomic_exchange_n(&d->attention, 0, __ATOMIC_ACQ_REL))
            attend(d);
    }
}

static int mpm_stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

static void *detach_thread(void *unused)
{
    struct epoll_event evs[MAX_EVENTS];
    apr_time_t last_tick = apr_time_now();

    if (apr_pool_create_unmanaged_ex(&dt.pool, NULL, NULL) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, APR_ENOMEM, dt.s, SSE_LOGNO(01705)
                     "detach thread: out of memory; detached streams of this child end");
        sse_registry_stop();
    }

    for (;;) {
        int n, i, woken = 0;
        apr_time_t now;

        if (mpm_stopping())
            sse_registry_stop();
        if (sse_registry_stopping() || __atomic_load_n(&dt.quit, __ATOMIC_ACQUIRE))
            break;
        n = epoll_wait(dt.epfd, evs, MAX_EVENTS,
                       dt.all ? (int)apr_time_as_msec(TICK) : IDLE_TICK);
        for (i = 0; i < n; i++) {
            if (!evs[i].data.ptr) {
                uint64_t v;
                (void)!read(dt.evfd, &v, sizeof(v));
                __atomic_store_n(&dt.poked, 0, __ATOMIC_RELEASE);
                woken = 1;
            }
        }
        /* Hand-overs first, so that their wake-ups are seen below. */
        if (woken) {
            take_incoming();
            attend_all();
        }
        for (i = 0; i < n; i++) {
            det *d = evs[i].data.ptr;

            /* Ended earlier in this round: still allocated, fd -1. */
            if (d && d->fd >= 0)
                input(d, evs[i].events);
        }
        now = apr_time_now();
        if (now - last_tick >= TICK) {
            tick(now);
            last_tick = now;
        }
        free_ended();
    }
    /* The child is going: every stream ends cleanly, so that its client
     * reconnects at once with its Last-Event-ID. */
    pthread_mutex_lock(&dt.mu);
    dt.closed = 1;
    pthread_mutex_unlock(&dt.mu);
    take_incoming();
    while (dt.all) {
        det *d = dt.all;
        int dead = 0;

        /* Queued frames are newer than a catch-up or a buffer in progress:
         * those streams end with what they have, and their clients resume. */
        if (!d->catching && !d->out_len) {
            sse_registry_w_wait(d->sub, 0, &dt.batch);
            if (dt.batch.spill) {
                out_append(d, dt.batch.spill, dt.batch.spill_len);
                d->out_events += dt.batch.spill_events;
                d->out_payload += dt.batch.spill_payload;
                free(dt.batch.spill);
                dt.batch.spill = NULL;
            }
            take_frames(d, &dt.batch);
            sse_registry_w_release(&dt.batch);
            dead = dt.batch.dead;
        }
        end_stream(d, dead ? END_GONE : END_STOPPING);
    }
    free_ended();
    if (dt.pool)
        apr_pool_destroy(dt.pool);
    return NULL;
}

/* ---- the hand-over (the stream's thread) ---- */

int sse_detach_stream(sse_sub *sub, const sse_detach_info *info)
{
    det *d;
    int fd;

    if (!sse_detach_available())
        return 0;
    if ((fd = fcntl(info->fd, F_DUPFD_CLOEXEC, 0)) < 0)
        return 0;
    d = calloc(1, sizeof(*d));
    if (d) {
        d->client = strdup(info->client);
        d->channels = strdup(info->channels);
    }
    if (!d || !d->client || !d->channels) {
        if (d) {
            free(d->client);
            free(d->channels);
            free(d);
        }
        close(fd);
        return 0;
    }
    d->sub = sub;
    d->fd = fd;
    d->chunked = info->chunked;
    d->beat = info->heartbeat;
    d->timeout = info->timeout;
    d->opened = info->opened;
    d->seen_write = apr_time_now();
    d->last = info->written;
    d->events = info->events;
    d->bytes = info->bytes;
    /* The record is complete before the registry can wake it; dt.mu held
     * so that the thread cannot have taken its last hand-over meanwhile. */
    pthread_mutex_lock(&dt.mu);
    if (dt.closed || !sse_registry_w_detach(sub, fd, info->chunked, info->written, d)) {
        pthread_mutex_unlock(&dt.mu);
        free(d->client);
        free(d->channels);
        free(d);
        close(fd);
        return 0;
    }
    sse_store_gauge(sse_store_get(), SSE_G_DETACHED, 1);
    d->next = dt.incoming;
    dt.incoming = d;
    pthread_mutex_unlock(&dt.mu);
    poke();
    return 1;
}

/* ---- the child ---- */

/* A pre-cleanup of pchild, registered after the dispatcher's and so run
 * before it: streams end while the registry still works. Bounded like the
 * dispatcher's: under prefork this may run in a signal handler. */
static apr_status_t detach_cleanup(void *unused)
{
    if (!dt.started)
        return APR_SUCCESS;
    __atomic_store_n(&dt.quit, 1, __ATOMIC_RELEASE);
    poke();
    if (sse_dispatch_thread_join(dt.thread, JOIN_WAIT))
        dt.started = 0;
    return APR_SUCCESS;
}

/* SSEMaxStreamsPerChild when not set: what the descriptor limit leaves
 * after httpd's own (see sse_config.h), but never fewer streams than the
 * child has threads: streams that hold a thread are bounded by the MPM
 * already, and a default below ThreadsPerChild would refuse streams that
 * a configuration without SSEDetach has always served. */
static apr_uint64_t default_max_streams(void)
{
    struct rlimit rl;
    int threads = 1;
    apr_uint64_t margin, room, least;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY
        || rl.rlim_cur > SSE_MAX_STREAMS_PER_CHILD_MAX)
        return SSE_MAX_STREAMS_PER_CHILD_MAX;
    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    if (threads < 1)
        threads = 1;
    margin = SSE_FD_MARGIN_BASE + SSE_FD_MARGIN_PER_THREAD * (apr_uint64_t)threads;
    room = rl.rlim_cur > margin ? rl.rlim_cur - margin : 0;
    least = (apr_uint64_t)threads > SSE_MAX_STREAMS_PER_CHILD_FLOOR
            ? (apr_uint64_t)threads : SSE_MAX_STREAMS_PER_CHILD_FLOOR;
    return room > least ? room : least;
}

void sse_detach_child_init(apr_pool_t *pchild, server_rec *s)
{
    const sse_server_conf *sc = sse_config_server(s);
    apr_uint64_t max = sc->max_streams_per_child > 0
                       ? (apr_uint64_t)sc->max_streams_per_child : default_max_streams();
    struct epoll_event ev;
    int rv;

    dt.s = s;
    sse_registry_set_max_streams(max);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, SSE_LOGNO(01702)
                 "this child holds at most %" APR_UINT64_T_FMT " streams%s", max,
                 sc->max_streams_per_child > 0 ? "" : " (from the descriptor limit)");
    if (!sse_store_get())
        return;
    dt.epfd = epoll_create1(EPOLL_CLOEXEC);
    dt.evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (dt.epfd < 0 || dt.evfd < 0 || epoll_ctl(dt.epfd, EPOLL_CTL_ADD, dt.evfd, &ev) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s, SSE_LOGNO(01703)
                     "cannot set up the detach thread's epoll: streams of this child "
                     "keep their worker (SSEDetach has no effect)");
        return;
    }
    rv = sse_dispatch_thread_start(&dt.thread, detach_thread, NULL);
    if (rv != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, SSE_LOGNO(01704)
                     "cannot start the detach thread: streams of this child keep their "
                     "worker (SSEDetach has no effect)");
        return;
    }
    dt.started = 1;
    apr_pool_pre_cleanup_register(pchild, NULL, detach_cleanup);
}
