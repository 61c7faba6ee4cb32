/* sse_shm.c -- lifetime of the shared ring and its lock across generations.
 *
 * post_config runs in the parent at start and at every restart, with a new
 * pconf each time. The segment and the mutex hang off s->process->pool
 * instead, which lives as long as the parent, and are found again by
 * userdata key. The ring's parameters (SSEBufferSize, SSEMaxChannels,
 * ServerLimit) are fixed at creation: a graceful restart that changes them
 * keeps the running ring and says so; a full stop and start applies them.
 *
 * Wake-up across processes: each child's dispatcher sleeps on its own
 * 32-bit word in the segment, with a shared (not private) futex on Linux,
 * polling it elsewhere. A publish bumps the words of the children with
 * subscribers on its channels only, and enters the kernel only for those
 * whose dispatcher sleeps (sse_ring.h, "waking readers").
 */
#include "sse_shm.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <apr_shm.h>
#include <apr_time.h>
#include <http_log.h>
#include <ap_mpm.h>
#include <util_mutex.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <limits.h>
#endif

APLOG_USE_MODULE(sse);

#define USERDATA_KEY "mod_sse.shm"

typedef struct {
    apr_shm_t          *shm;
    apr_global_mutex_t *lock;
    sse_ring           *ring;
} sse_shm_persistent;

static sse_shm this_process = { NULL, NULL, -1 };

sse_shm *sse_shm_get(void)
{
    return this_process.ring ? &this_process : NULL;
}

apr_uint64_t sse_now_ms(void)
{
    return (apr_uint64_t)(apr_time_now() / 1000);
}

apr_status_t sse_shm_pre_config(apr_pool_t *pconf)
{
    return ap_mutex_register(pconf, SSE_MUTEX_NAME, NULL, APR_LOCK_DEFAULT, 0);
}

static void ring_params(server_rec *s, sse_ring_params *p)
{
    const sse_server_conf *sc = ap_get_module_config(s->module_config, &sse_module);
    int daemons = 0;

    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &daemons);
    if (daemons < 1)
        daemons = 1;
    p->data_size = sc->buffer_size;
    p->max_channels = sc->max_channels;
    /* A slot per possible child, twice over: children of the old and the
     * new generation overlap during a graceful restart. */
    p->max_procs = (apr_uint32_t)daemons * 2;
}

int sse_shm_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_pool_t *pproc = s->process->pool;
    sse_shm_persistent *keep = NULL;
    sse_ring_params want, have;
    apr_status_t rv;
    apr_size_t size;
    char *base;

    ring_params(s, &want);
    apr_pool_userdata_get((void **)&keep, USERDATA_KEY, pproc);
    if (keep) {
        sse_ring_get_params(keep->ring, &have);
        if (have.data_size != want.data_size || have.max_channels != want.max_channels
            || have.max_procs != want.max_procs)
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                         "keeping the running event ring (%" APR_UINT64_T_FMT
                         " bytes, %u channels, %u processes) across this restart; "
                         "changes to SSEBufferSize, SSEMaxChannels or ServerLimit "
                         "take effect after a full stop and start",
                         have.data_size, have.max_channels, have.max_procs);
        this_process.ring = keep->ring;
        this_process.lock = keep->lock;
        return OK;
    }

    keep = apr_pcalloc(pproc, sizeof(*keep));
    /* APR keeps its own header at the start of the segment: ask for room
     * to align the ring to a cache line. */
    size = sse_ring_size(&want) + 64;
    rv = apr_shm_create(&keep->shm, size, NULL, pproc);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot create %" APR_SIZE_T_FMT " bytes of anonymous shared "
                     "memory for the event ring (SSEBufferSize)", size);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    rv = ap_global_mutex_create(&keep->lock, NULL, SSE_MUTEX_NAME, NULL, s, pproc, 0);
    if (rv != APR_SUCCESS)
        return HTTP_INTERNAL_SERVER_ERROR;   /* logged by ap_global_mutex_create */
    base = (char *)apr_shm_baseaddr_get(keep->shm);
    keep->ring = sse_ring_init(base + (64 - (apr_uintptr_t)base % 64) % 64, &want, sse_now_ms());
    apr_pool_userdata_set(keep, USERDATA_KEY, apr_pool_cleanup_null, pproc);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "event ring created: %" APR_UINT64_T_FMT " bytes of events, "
                 "%u channels, %u process slots, %" APR_SIZE_T_FMT " bytes in all",
                 want.data_size, want.max_channels, want.max_procs, size);
    this_process.ring = keep->ring;
    this_process.lock = keep->lock;
    return OK;
}

static apr_status_t release_proc(void *unused)
{
    if (this_process.proc >= 0) {
        sse_ring_proc_release(this_process.ring, this_process.proc);
        this_process.proc = -1;
    }
    return APR_SUCCESS;
}

static int pid_alive(apr_uint32_t pid)
{
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

void sse_shm_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    if (!this_process.ring)
        return;
    rv = apr_global_mutex_child_init(&this_process.lock,
                                     apr_global_mutex_lockfile(this_process.lock), pchild);
    if (rv != APR_SUCCESS)
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot attach to the sse-ring mutex in this child");
    this_process.proc = sse_ring_proc_claim(this_process.ring, (apr_uint32_t)getpid());
    if (this_process.proc < 0) {
        /* Children that died without cleaning up still hold slots. */
        sse_ring_proc_reap(this_process.ring, pid_alive);
        this_process.proc = sse_ring_proc_claim(this_process.ring, (apr_uint32_t)getpid());
    }
    if (this_process.proc < 0)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "no free process slot in the event ring: subscriber counts "
                     "will not include this child's streams");
    apr_pool_cleanup_register(pchild, NULL, release_proc, apr_pool_cleanup_null);
}

void sse_shm_monitor(server_rec *s)
{
    int n;

    if (!this_process.ring)
        return;
    /* A child killed outright leaves its subscriber column behind: forget
     * it, so publish responses and channel info count only live streams. */
    n = sse_ring_proc_reap(this_process.ring, pid_alive);
    if (n)
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "forgot the subscribers of %d child process(es) that died", n);
}

apr_status_t sse_shm_lock(server_rec *s)
{
    apr_status_t rv = apr_global_mutex_lock(this_process.lock);

    if (rv != APR_SUCCESS)
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "cannot take the sse-ring mutex");
    return rv;
}

void sse_shm_unlock(void)
{
    apr_global_mutex_unlock(this_process.lock);
}

static void futex_wake(uint32_t *word, void *unused)
{
#ifdef __linux__
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#endif
}

void sse_shm_wake(const int *slots, int n)
{
    sse_ring_wake(this_process.ring, slots, n, futex_wake, NULL);
}

void sse_shm_wake_self(void)
{
    sse_ring_wake_proc(this_process.ring, this_process.proc, futex_wake, NULL);
}

apr_uint32_t sse_shm_wake_seen(void)
{
    return __atomic_load_n(sse_ring_wake_word(this_process.ring, this_process.proc),
                           __ATOMIC_ACQUIRE);
}

void sse_shm_sleep(apr_uint32_t seen, apr_uint64_t cursor, apr_interval_time_t timeout)
{
    sse_ring *ring = this_process.ring;
    apr_uint32_t *word = sse_ring_wake_word(ring, this_process.proc);

    if (!sse_ring_sleep_begin(ring, this_process.proc, cursor))
        return;
#ifdef __linux__
    {
        struct timespec ts;

        ts.tv_sec = (time_t)apr_time_sec(timeout);
        ts.tv_nsec = (long)apr_time_usec(timeout) * 1000;
        syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, NULL, 0);
    }
#else
    {
        /* No portable cross-process wait: poll the word every 10 ms. */
        apr_interval_time_t waited = 0;

        while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == seen && waited < timeout) {
            apr_sleep(apr_time_from_msec(10));
            waited += apr_time_from_msec(10);
        }
    }
#endif
    sse_ring_sleep_end(ring, this_process.proc);
}

#define WAKE_SLOTS 64

/* Adds slot to the set touched[0..n); past WAKE_SLOTS distinct slots the
 * set becomes "all" (-1), which wakes every process. */
static int touch(int *touched, int n, int slot)
{
    int i;

    if (n < 0)
        return n;
    for (i = 0; i < n; i++) {
        if (touched[i] == slot)
            return n;
    }
    if (n == WAKE_SLOTS)
        return -1;
    touched[n] = slot;
    return n + 1;
}

int sse_shm_publish(server_rec *s, const sse_body_event *events, int n,
                    sse_shm_result *out, const char **why)
{
    sse_ring *ring = this_process.ring;
    int slots[SSE_BODY_MAX_CHANNELS], touched[WAKE_SLOTS];
    int i, j, ntouched = 0, status = OK;

    if (!ring) {
        *why = "the event ring is not available";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if (sse_shm_lock(s) != APR_SUCCESS) {
        *why = "cannot take the sse-ring mutex";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    /* First make sure every channel has a slot: then nothing can fail
     * half-way, and a request publishes all its events or none. */
    for (i = 0; i < n && status == OK; i++) {
        const sse_bytes *c = (const sse_bytes *)events[i].channels->elts;
        for (j = 0; j < events[i].channels->nelts; j++) {
            if (sse_ring_chan_intern(ring, c[j].s, c[j].len) < 0) {
                *why = "too many channels in use (SSEMaxChannels)";
                status = HTTP_SERVICE_UNAVAILABLE;
                break;
            }
        }
    }
    for (i = 0; i < n && status == OK; i++) {
        const sse_body_event *ev = &events[i];
        const sse_bytes *c = (const sse_bytes *)ev->channels->elts;
        sse_ring_msg m;
        apr_uint64_t stamp;

        for (j = 0; j < ev->channels->nelts; j++) {
            slots[j] = sse_ring_chan_find(ring, c[j].s, c[j].len);
            ntouched = touch(touched, ntouched, slots[j]);
        }
        m.nchan = ev->channels->nelts;
        m.chan = slots;
        m.id = ev->id.s;
        m.id_len = ev->id.len;
        m.event = ev->event.s;
        m.event_len = ev->event.s ? ev->event.len : 0;
        m.retry = ev->retry;
        m.data = ev->data.s;
        m.data_len = ev->data.len;
        if (sse_ring_publish(ring, &m, sse_now_ms(), &stamp, out[i].id) != 0) {
            /* Sizes are checked before the lock; this is the last guard. */
            *why = "event too large for the event ring (SSEBufferSize)";
            status = HTTP_REQUEST_ENTITY_TOO_LARGE;
            break;
        }
        out[i].subscribers = 0;
        for (j = 0; j < m.nchan; j++)
            out[i].subscribers += sse_ring_subs_total(ring, slots[j]);
    }
    sse_shm_unlock();
    sse_shm_wake(touched, ntouched);
    return status;
}
