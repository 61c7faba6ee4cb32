/* sse_shm.h -- the ring's shared memory and lock, and their lifetime.
 *
 * One segment and one `sse-ring` global mutex exist per httpd instance. Both
 * are created once, on the process pool, and found again through that
 * pool's userdata on every later generation: old and new children of a
 * graceful restart share one ring, so nobody who reconnects loses events.
 */
#ifndef SSE_SHM_H
#define SSE_SHM_H

#include <httpd.h>
#include <apr_global_mutex.h>

#include "sse_ring.h"
#include "sse_private.h"

typedef struct {
    sse_ring           *ring;
    apr_global_mutex_t *lock;
    int                 proc;       /* this process's subscriber column */
} sse_shm;

/* The shared store of this process; NULL before post_config. */
sse_shm *sse_shm_get(void);

apr_status_t sse_shm_pre_config(apr_pool_t *pconf);
int  sse_shm_post_config(apr_pool_t *pconf, server_rec *s);
void sse_shm_child_init(apr_pool_t *pchild, server_rec *s);
void sse_shm_monitor(server_rec *s);

/* The lock; a failure is logged against s and returned. */
apr_status_t sse_shm_lock(server_rec *s);
void sse_shm_unlock(void);

/* After a publish or delete on channel slots: wakes the dispatchers of the
 * processes with subscribers on them. */
void sse_shm_wake(const int *slots, int n);
/* Wakes this process's own dispatcher. */
void sse_shm_wake_self(void);
/* This process's wake word, to read before looking at the ring... */
apr_uint32_t sse_shm_wake_seen(void);
/* ...and to sleep on, once the ring was read up to cursor, until it moves
 * from seen or timeout passes. Returns at once if records arrived. */
void sse_shm_sleep(apr_uint32_t seen, apr_uint64_t cursor, apr_interval_time_t timeout);

apr_uint64_t sse_now_ms(void);

/* One validated event, published on the channels named in it. */
typedef struct sse_shm_result {
    char         id[SSE_FIELD_MAX + 1];
    apr_uint64_t subscribers;
} sse_shm_result;

/* Publishes events (validated sse_body_event, channels checked) in order,
 * all or none. Returns an HTTP status: OK (0) when published, or
 * HTTP_REQUEST_ENTITY_TOO_LARGE / HTTP_SERVICE_UNAVAILABLE with *why. */
int sse_shm_publish(server_rec *s, const sse_body_event *events, int n,
                    sse_shm_result *out, const char **why);

#endif
