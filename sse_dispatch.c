/* sse_dispatch.c -- the dispatcher thread (see sse_dispatch.h).
 *
 * A plain pthread with every signal blocked, not an APR thread: the MPM's
 * signals must reach its own threads (prefork runs its exit path in the
 * signal handler, on whichever thread takes the signal), and no APR pool of
 * the thread may be torn down concurrently with pchild. Everything here but
 * sse_dispatch_child_init and the cleanup runs on that thread.
 *
 * Memory: one buffer into which a batch of records is copied out of the
 * ring (BATCH_BUFFER, grown to the largest record seen); direct writes go
 * straight from there, frames for queues are copied on demand.
 */
#include "sse_dispatch.h"
#include "sse_log.h"
#include "sse_registry.h"
#include "sse_wake.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <http_log.h>
#include <ap_mpm.h>
#ifdef __linux__
#include <sys/prctl.h>
#ifndef PR_FUTEX_HASH
#define PR_FUTEX_HASH           78      /* Linux 6.16 */
#define PR_FUTEX_HASH_SET_SLOTS 1
#endif
#define FUTEX_HASH_MAX          (1 << 16)
#define FUTEX_HASH_MIN          16      /* what the kernel gives a small machine */
#define FUTEX_SLOTS_PER_THREAD  4
#endif

APLOG_USE_MODULE(sse);

#define DISPATCH_POLL  apr_time_from_msec(200)  /* stop checks, sleep timeout */
#define BATCH_BUFFER   (64 * 1024)              /* first size of the batch buffer */
#define THREAD_STACK   (256 * 1024)
#define JOIN_WAIT      1                        /* seconds, see dispatch_cleanup */

static struct {
    pthread_t   thread;
    int         started;
    apr_uint64_t cursor;        /* ring offset of the next record */
    server_rec *s;
} disp;

enum { BATCH_FULL = -1 };

/* Reads records from disp.cursor until the ring is empty (SSE_RING_EMPTY),
 * the dispatcher fell behind the tail (SSE_RING_LOST) or the batch is full
 * (BATCH_FULL). */
static int batch_read(sse_fanout *b, const sse_ring *ring)
{
    for (;;) {
        sse_ring_rec *rec = &b->rec[b->n];
        apr_size_t need = 0;
        int rv;

        if (b->n == SSE_FANOUT_MAX)
            return BATCH_FULL;
        rv = sse_ring_read(ring, &disp.cursor, b->buf.s + b->buf.len,
                           b->buf.cap - b->buf.len, &need, rec);
        if (rv == SSE_RING_SMALL) {
            if (b->n)
                return BATCH_FULL;      /* read it first in the next batch */
            if (!sse_buf_reserve(&b->buf, need))
                return SSE_RING_EMPTY;  /* retried at the next wake-up */
            continue;
        }
        if (rv != SSE_RING_OK)
            return rv;
        /* Records are multiples of 8 bytes: the next copy stays aligned. */
        b->buf.len += (apr_size_t)(rec->next - rec->off);
        b->n++;
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
    sse_store *st = sse_store_get();
    const sse_ring *ring = sse_store_ring(st);
    sse_fanout *b = calloc(1, sizeof(*b));

    if (b) {
        sse_buf_init(&b->buf, NULL, 0);
        if (!sse_buf_reserve(&b->buf, BATCH_BUFFER - 1)) {    /* - the NUL's byte */
            free(b);
            b = NULL;
        }
    }
    if (!b) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, APR_ENOMEM, disp.s, SSE_LOGNO(00201)
                     "event dispatcher: out of memory; streams of this child "
                     "will receive no live events");
        return NULL;
    }
    while (!sse_registry_stopping()) {
        apr_uint32_t seen = sse_store_wake_seen(st);
        int rv;

        do {
            rv = batch_read(b, ring);
            /* A child without streams sleeps through publishes and may
             * find the ring overwritten: nothing was missed then, and the
             * registry has nobody to tell. */
            if (sse_registry_d_fan_out(b, disp.cursor, rv == SSE_RING_LOST))
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, disp.s, SSE_LOGNO(00202)
                             "dispatcher fell a whole ring behind; streams of this "
                             "child catch up from the ring (SSEBufferSize too small?)");
            sse_registry_d_clear(b);
        } while (rv != SSE_RING_EMPTY && !sse_registry_stopping());
        if (mpm_stopping())
            sse_registry_stop();
        if (sse_registry_stopping())
            break;
        sse_store_sleep(st, seen, disp.cursor, DISPATCH_POLL);
    }
    sse_registry_d_leave();
    sse_buf_free(&b->buf);
    free(b);
    return NULL;
}

/* A pre-cleanup of pchild: runs before the request pools below pchild are
 * destroyed, so the dispatcher is gone before the streams it points to. */
static apr_status_t dispatch_cleanup(void *unused)
{
    if (!disp.started || pthread_equal(disp.thread, pthread_self()))
        return APR_SUCCESS;
    sse_registry_stop();
    /* Bounded: under prefork this runs in a signal handler that may have
     * interrupted a stream holding a lock the dispatcher then waits for.
     * The process exits right after; a dispatcher stuck on that lock never
     * runs again. */
    if (sse_dispatch_thread_join(disp.thread, JOIN_WAIT)) {
        disp.started = 0;
        sse_registry_dispatcher_running(0);
    }
    else {
        sse_registry_dispatcher_abandoned();
    }
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
    int threads = 0, slots = FUTEX_HASH_MIN, rv;

    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    while (slots < FUTEX_SLOTS_PER_THREAD * threads && slots < FUTEX_HASH_MAX)
        slots <<= 1;
    rv = prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, slots, 0, 0);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, rv ? errno : 0, s, SSE_LOGNO(00203)
                 "futex hash of this child: %d slots for %d threads%s", slots, threads,
                 rv ? " not set (kernel without private futex hashes)" : "");
#endif
}

int sse_dispatch_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    sigset_t all, old;
    int rv;

    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = pthread_create(thread, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return rv;
}

int sse_dispatch_thread_join(pthread_t thread, int seconds)
{
    struct timespec limit;

    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += seconds;
    return pthread_timedjoin_np(thread, NULL, &limit) == 0;
}

void sse_dispatch_child_init(apr_pool_t *pchild, server_rec *s)
{
    sse_store *st = sse_store_get();
    apr_uint64_t cursor = 0, processed = 0;
    int rv;

    if (!st)
        return;
    size_futex_hash(s);
    disp.s = s;
    sse_registry_child_init(pchild, sse_ring_chan_slots(sse_store_ring(st)));
    /* Start at the present, consistently: no record may be half-counted
     * between the cursor and the stamp that says what was processed. */
    if (sse_store_position(st, &cursor, &processed) == OK) {
        disp.cursor = cursor;
        sse_registry_d_start(cursor, processed);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, SSE_LOGNO(00204)
                     "cannot take the sse-ring mutex to start the dispatcher");
    }
    rv = sse_dispatch_thread_start(&disp.thread, dispatcher, NULL);
    if (rv != 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, SSE_LOGNO(00205)
                     "cannot start the event dispatcher thread: streams of this "
                     "child will receive no live events");
        return;
    }
    disp.started = 1;
    sse_registry_dispatcher_running(1);
    apr_pool_pre_cleanup_register(pchild, NULL, dispatch_cleanup);
    ap_log_error(APLOG_MARK, APLOG_TRACE1, 0, s, SSE_LOGNO(00206)
                 "event dispatcher started (wake-ups: %s)", sse_wake_backend);
}
