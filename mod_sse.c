/* mod_sse.c -- Server-Sent Events with publish/subscribe for httpd 2.4.
 *
 * This file is the module record and its hooks, nothing else. The work is
 * elsewhere, one idea per file (README, "Layout"):
 *
 *   sse_config.c     directives (one table), configuration records, merge
 *   sse_http.c       what the handlers share of HTTP: errors, JSON, body,
 *                    query, OPTIONS, the channels a request names
 *   sse_stream.c     the sse-stream handler (subscribers)
 *   sse_publish.c    the sse-publish handler and the sse_publish() function
 *   sse_mercure.c    the sse-mercure handler: a Mercure hub on the ring
 *   sse_filter.c     publishing responses by their X-SSE-Publish header
 *   sse_cors.c       cross-origin headers and preflights
 *   sse_status.c     the sse-status handler and the mod_status section
 *   sse_store.c      the store boundary: every write of shared state
 *   sse_store_ring.c the ring store (one server)
 *   sse_shm.c        the ring's memory and lock, kept across restarts
 *   sse_dispatch.c   per-child dispatcher thread
 *   sse_registry.c   this child's streams: fan-out and direct writes
 *   sse_detach.c     streams that hold no worker: the child's detach thread
 *   sse_replay.c     history read back from the ring
 *   sse_frame.c      framed events shared by a child's streams
 *   sse_wake.c       cross-process wake-ups (futex or polling backend)
 *   sse_ring.c       the shared event ring and channel table (no httpd)
 *   sse_metrics.c    shared counters and gauges, JSON and Prometheus (no httpd)
 *   sse_wire.c       the text/event-stream format and field rules (no httpd)
 *   sse_body.c       publish bodies (form, JSON, raw) parsed into events
 *   sse_parse.c      a text/event-stream body read back into events
 *   sse_buf.c        the one growable byte buffer
 */
#include "mod_sse.h"
#include "sse_config.h"
#include "sse_detach.h"
#include "sse_dispatch.h"
#include "sse_filter.h"
#include "sse_mercure.h"
#include "sse_publish.h"
#include "sse_registry.h"
#include "sse_shm.h"
#include "sse_status.h"
#include "sse_stream.h"

#include <string.h>
#include <http_config.h>
#include <http_connection.h>
#include <http_core.h>
#include <http_main.h>
#include <http_request.h>
#include <mpm_common.h>

static int sse_handler(request_rec *r)
{
    if (!r->handler)
        return DECLINED;
    if (strcmp(r->handler, SSE_STREAM_HANDLER) == 0)
        return sse_stream_handler(r);
    if (strcmp(r->handler, SSE_PUBLISH_HANDLER) == 0)
        return sse_publish_handler(r);
    if (strcmp(r->handler, SSE_STATUS_HANDLER) == 0)
        return sse_status_handler(r);
    if (strcmp(r->handler, SSE_MERCURE_HANDLER) == 0)
        return sse_mercure_handler(r);
    return DECLINED;
}

static int sse_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    return sse_shm_pre_config(pconf) == APR_SUCCESS ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

static int sse_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                           server_rec *s)
{
    /* The first pass only checks the configuration: no memory for it. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG)
        return OK;
    return sse_shm_post_config(pconf, s);
}

static void sse_child_init(apr_pool_t *pchild, server_rec *s)
{
    sse_shm_child_init(pchild, s);
    sse_dispatch_child_init(pchild, s);
    sse_detach_child_init(pchild, s);
}

/* A detached stream's connection (sse_stream.c): runs before httpd flushes
 * and shuts the socket down (ap_start_lingering_close, server/connection.c).
 * Aborted, the core output filter drops whatever is left and no shutdown()
 * is done: httpd closes its own descriptor, and the duplicate the detach
 * thread holds keeps the stream open. */
static int sse_pre_close(conn_rec *c)
{
    if (apr_table_get(c->notes, SSE_DETACHED_NOTE))
        c->aborted = 1;
    return OK;
}

static int sse_monitor(apr_pool_t *p, server_rec *s)
{
    sse_shm_monitor(s);
    return DECLINED;
}

static void sse_child_stopping(apr_pool_t *pchild, int graceful)
{
    sse_registry_stop();
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(sse_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(sse_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(sse_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_monitor(sse_monitor, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(sse_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(sse_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_close_connection(sse_pre_close, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_filter(sse_filter_insert, NULL, NULL, APR_HOOK_MIDDLE);
    sse_filter_register();
    sse_status_register();
    APR_REGISTER_OPTIONAL_FN(sse_publish);
}

AP_DECLARE_MODULE(sse) = {
    STANDARD20_MODULE_STUFF,
    sse_config_create_dir,
    sse_config_merge_dir,
    sse_config_create_server,
    NULL,
    sse_config_cmds,
    register_hooks,
    0
};
