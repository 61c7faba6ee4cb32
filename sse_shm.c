/* sse_shm.c -- lifetime of the shared ring and its lock across generations.
 *
 * post_config runs in the parent at start and at every restart, with a new
 * pconf each time. The segment and the mutex hang off s->process->pool
 * instead, which lives as long as the parent, and are found again by
 * userdata key; the store object over them is made anew by each generation
 * (see sse_shm_persistent). The ring's parameters (SSEBufferSize, SSEMaxChannels,
 * ServerLimit) are fixed at creation: a graceful restart that changes them
 * keeps the running ring and says so; a full stop and start applies them.
 * A graceful restart into another build of the module whose ring layout
 * differs (an upgrade: the package's postinst reloads Apache) cannot read
 * the kept ring: it starts a new, empty one beside it. The old generation's
 * children go on with the old ring, mapped in their own address space,
 * until they exit; clients that resume on the new one get sse-gap (or,
 * with SSERedis, the new ring is filled from Redis and nothing is lost).
 *
 * Each child attaches to the mutex and claims its process slot in the ring
 * (its subscriber counts, wake word and row of metrics); the monitor hook,
 * in the parent, forgets the slots of children that died without releasing
 * theirs. The metrics live in the same segment (sse_metrics.h), so their
 * counters, like the ring's events, survive a graceful restart.
 */
#include "sse_shm.h"
#include "sse_config.h"
#include "sse_log.h"
#include "sse_store.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <apr_shm.h>
#include <http_log.h>
#include <ap_mpm.h>
#include <util_mutex.h>

APLOG_USE_MODULE(sse);

#define USERDATA_KEY "mod_sse.shm"
#define RING_ALIGN   64         /* the ring starts on a cache line */

/* What lives as long as the parent. Only data: no pointer into this
 * module's own image, which httpd unloads and loads again (maybe at another
 * address) at every restart. The store object, whose operations are
 * function pointers into the module, is made anew by every generation.
 * Another build of the module reads this struct after a graceful restart:
 * its three fields never change; a build that must change them changes
 * USERDATA_KEY too. */
typedef struct {
    apr_shm_t          *shm;
    sse_ring           *ring;
    apr_global_mutex_t *lock;
} sse_shm_persistent;

apr_status_t sse_shm_pre_config(apr_pool_t *pconf)
{
    return ap_mutex_register(pconf, SSE_MUTEX_NAME, NULL, APR_LOCK_DEFAULT, 0);
}

static void ring_params(server_rec *s, sse_ring_params *p)
{
    const sse_server_conf *sc = sse_config_server(s);
    int daemons = 0;

    ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &daemons);
    if (daemons < 1)
        daemons = 1;
    p->data_size = (apr_uint64_t)sc->buffer_size;
    p->max_channels = (apr_uint32_t)sc->max_channels;
    /* A slot per possible child, twice over: children of the old and the
     * new generation overlap during a graceful restart. */
    p->max_procs = (apr_uint32_t)daemons * 2;
}

/* The store of this generation over the kept ring and lock, on pconf (its
 * operations point into the module as loaded now): the ring store, or with
 * SSERedis the Redis store over it (SSERedis may change at a graceful
 * restart, the ring stays). */
static sse_store *use_store(apr_pool_t *pconf, const sse_shm_persistent *keep, server_rec *s)
{
    sse_store *ring = sse_store_ring_open(pconf, keep->ring, keep->lock);
    sse_store *st = sse_config_server(s)->redis ? sse_store_redis_open(pconf, ring, s) : ring;

    sse_store_set_max_subscribers(st, (apr_uint64_t)sse_config_server(s)->max_subscribers);
    sse_store_set(st);
    return st;
}

int sse_shm_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_pool_t *pproc = s->process->pool;
    sse_shm_persistent *keep = NULL;
    apr_global_mutex_t *lock;
    sse_ring_params want, have;
    sse_ring *ring;
    apr_status_t rv;
    apr_size_t size;
    char *base;

    ring_params(s, &want);
    apr_pool_userdata_get((void **)&keep, USERDATA_KEY, pproc);
    if (keep && keep->ring && !sse_ring_same_layout(keep->ring)) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SSE_LOGNO(00007)
                     "the running event ring was laid out by another build of "
                     "mod_sse: starting a new, empty ring (clients that resume "
                     "get sse-gap unless SSERedis refills it)");
        /* Unmaps the parent's view only: old children keep theirs. */
        apr_shm_destroy(keep->shm);
        keep->shm = NULL;
        keep->ring = NULL;
    }
    if (keep && keep->ring) {
        sse_ring_get_params(keep->ring, &have);
        if (have.data_size != want.data_size || have.max_channels != want.max_channels
            || have.max_procs != want.max_procs)
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, SSE_LOGNO(00001)
                         "keeping the running event ring (%" APR_UINT64_T_FMT
                         " bytes, %u channels, %u processes) across this restart; "
                         "changes to SSEBufferSize, SSEMaxChannels or ServerLimit "
                         "take effect after a full stop and start",
                         have.data_size, have.max_channels, have.max_procs);
        use_store(pconf, keep, s);
        return OK;
    }

    if (!keep) {
        keep = apr_pcalloc(pproc, sizeof(*keep));
        rv = ap_global_mutex_create(&lock, NULL, SSE_MUTEX_NAME, NULL, s, pproc, 0);
        if (rv != APR_SUCCESS)
            return HTTP_INTERNAL_SERVER_ERROR;   /* logged by ap_global_mutex_create */
        keep->lock = lock;
        apr_pool_userdata_set(keep, USERDATA_KEY, apr_pool_cleanup_null, pproc);
    }
    /* APR keeps its own header at the start of the segment: ask for room
     * to align the ring. */
    size = sse_ring_size(&want) + RING_ALIGN;
    rv = apr_shm_create(&keep->shm, size, NULL, pproc);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, SSE_LOGNO(00002)
                     "cannot create %" APR_SIZE_T_FMT " bytes of anonymous shared "
                     "memory for the event ring (SSEBufferSize)", size);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    base = (char *)apr_shm_baseaddr_get(keep->shm);
    ring = sse_ring_init(base + (RING_ALIGN - (apr_uintptr_t)base % RING_ALIGN)
                                      % RING_ALIGN,
                         &want, sse_store_now_ms());
    keep->ring = ring;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, SSE_LOGNO(00003)
                 "event ring created: %" APR_UINT64_T_FMT " bytes of events, "
                 "%u channels, %u process slots, %" APR_SIZE_T_FMT " bytes in all",
                 want.data_size, want.max_channels, want.max_procs, size);
    /* A new ring of a shared store starts with what the store keeps. */
    sse_store_redis_fill(use_store(pconf, keep, s));
    return OK;
}

static apr_status_t release_proc(void *store)
{
    sse_store_proc_release(store);
    return APR_SUCCESS;
}

static int pid_alive(apr_uint32_t pid)
{
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

void sse_shm_child_init(apr_pool_t *pchild, server_rec *s)
{
    sse_store *st = sse_store_get();
    apr_status_t rv;

    if (!st)
        return;
    rv = apr_global_mutex_child_init(&st->lock, apr_global_mutex_lockfile(st->lock), pchild);
    if (rv != APR_SUCCESS)
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, SSE_LOGNO(00004)
                     "cannot attach to the " SSE_MUTEX_NAME " mutex in this child");
    if (sse_store_proc_claim(st, (apr_uint32_t)getpid(), pid_alive) < 0)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, SSE_LOGNO(00005)
                     "no free process slot in the event ring: subscriber counts "
                     "will not include this child's streams");
    apr_pool_cleanup_register(pchild, st, release_proc, apr_pool_cleanup_null);
    sse_store_redis_child_init(st, pchild, s);
}

void sse_shm_monitor(server_rec *s)
{
    sse_store *st = sse_store_get();
    int n;

    if (!st)
        return;
    /* A child killed outright leaves its subscriber column behind: forget
     * it, so publish responses and channel info count only live streams. */
    n = sse_store_proc_reap(st, pid_alive);
    if (n)
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, SSE_LOGNO(00006)
                     "forgot the subscribers of %d child process(es) that died", n);
}
