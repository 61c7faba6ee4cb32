/* sse_shm.h -- the ring's shared memory and lock, and their lifetime.
 *
 * One segment and one `sse-ring` global mutex exist per httpd instance. Both
 * are created once, on the process pool, and found again through that
 * pool's userdata on every later generation: old and new children of a
 * graceful restart share one ring, so nobody who reconnects loses events.
 * What is kept in them is the store's business (sse_store.h): this unit
 * opens the ring store over them and makes it this process's store.
 */
#ifndef SSE_SHM_H
#define SSE_SHM_H

#include <httpd.h>

#define SSE_MUTEX_NAME "sse-ring"

apr_status_t sse_shm_pre_config(apr_pool_t *pconf);
int  sse_shm_post_config(apr_pool_t *pconf, server_rec *s);
void sse_shm_child_init(apr_pool_t *pchild, server_rec *s);
void sse_shm_monitor(server_rec *s);

#endif
