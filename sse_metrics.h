/* sse_metrics.h -- the module's counters and gauges, in shared memory, and
 * their two printed forms (JSON and the Prometheus text format).
 *
 * The block lives inside the ring's segment (sse_ring.h lays it out after
 * the wake words), so it is created once with the ring and survives a
 * graceful restart with it: counters go on counting across generations.
 *
 * One row of figures per process slot of the ring (the slot a child claims
 * at start), plus one row for processes that got no slot. A process adds
 * only to its own row, with relaxed atomic adds: children never write the
 * same cache line, and a figure is read by summing the rows.
 *   - Counters only grow and are never zeroed: a row keeps counting for the
 *     next process that claims the slot, so nothing a dead child counted is
 *     lost, whether it exited or was killed.
 *   - Gauges (open streams, slow streams) are zeroed when the slot is
 *     released or reaped (sse_metrics_forget, called by sse_ring.c before
 *     the slot can be claimed again): a child killed with streams open
 *     leaves nothing behind. The slot-less row keeps no gauges (they could
 *     never be reaped), just as the ring does not count such streams.
 *   - Beside the rows, one word says whether Redis answered the last time
 *     any process of the server tried (SSERedis; see sse_metrics_redis_up):
 *     a state, not a sum, so the last writer wins.
 *
 * Pure C with GCC atomics and, for the JSON form, jansson: no httpd, no
 * APR. Tested by tests/unit.
 */
#ifndef SSE_METRICS_H
#define SSE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "sse_wire.h"

/* Counters. The reasons of a refused publish are one counter each, so that
 * every label value is always printed, zero or not. */
typedef enum {
    SSE_C_STREAMS_OPENED,
    SSE_C_EVENTS_PUBLISHED,
    SSE_C_EVENTS_DELIVERED,
    SSE_C_BYTES_SENT,
    SSE_C_GAPS,
    SSE_C_REPLAYED,
    SSE_C_HEARTBEATS,
    SSE_C_OVERLOAD_REFUSALS,
    SSE_C_CATCHUPS,
    SSE_C_PUBLISH_REQUESTS,
    SSE_C_REJ_BAD_REQUEST,          /* first of the reasons, in label order */
    SSE_C_REJ_FORBIDDEN,
    SSE_C_REJ_METHOD,
    SSE_C_REJ_TOO_LARGE,
    SSE_C_REJ_UNAVAILABLE,
    SSE_C_REJ_INTERNAL,
    SSE_C_REJ_FAILED_RESPONSE,      /* last of the reasons */
    SSE_C_REDIS_ERR_PUBLISH,        /* first of the Redis errors, in label order */
    SSE_C_REDIS_ERR_DELETE,
    SSE_C_REDIS_ERR_READ,
    SSE_C_REDIS_ERR_FOLLOW,         /* last of the Redis errors */
    SSE_C_COUNT
} sse_counter;

#define SSE_C_REJ_FIRST SSE_C_REJ_BAD_REQUEST
#define SSE_C_REJ_LAST  SSE_C_REJ_FAILED_RESPONSE
#define SSE_C_REDIS_FIRST SSE_C_REDIS_ERR_PUBLISH
#define SSE_C_REDIS_LAST  SSE_C_REDIS_ERR_FOLLOW

typedef enum {
    SSE_G_STREAMS,          /* open streams */
    SSE_G_SLOW,             /* streams catching up on writing */
    SSE_G_DETACHED,         /* open streams held by no worker (SSEDetach) */
    SSE_G_COUNT
} sse_gauge;

typedef struct sse_metrics sse_metrics;

/* Bytes the block needs for nslots process slots (plus the slot-less row). */
size_t sse_metrics_size(uint32_t nslots);
/* Lays out a block in zeroed memory. */
sse_metrics *sse_metrics_init(void *mem, uint32_t nslots);

/* slot: the process's slot, or -1 (no slot). */
void sse_metrics_add(sse_metrics *m, int slot, sse_counter c, uint64_t n);
void sse_metrics_gauge_add(sse_metrics *m, int slot, sse_gauge g, int64_t delta);
/* The slot's process is gone: its gauges go, its counters stay. */
void sse_metrics_forget(sse_metrics *m, int slot);

/* Whether this server's store reached Redis the last time any of its
 * processes tried (SSERedis): one word of the block, not a row, since it
 * is a fact about the server that the last process to try knows best.
 * Never set (a ring kept from before SSERedis was set, until the follower
 * first tries) reads as not reachable. */
void sse_metrics_set_redis_up(sse_metrics *m, int up);
int  sse_metrics_redis_up(const sse_metrics *m);

uint64_t sse_metrics_counter(const sse_metrics *m, sse_counter c);
int64_t  sse_metrics_gauge(const sse_metrics *m, sse_gauge g);

/* The reason label of a refused-publish counter ("bad_request", ...), and
 * the counter for an HTTP status a publish was refused with (400, 403,
 * 405, 413, 503; anything else counts as internal). */
const char *sse_metrics_reason(sse_counter c);
sse_counter sse_metrics_reason_of_status(int status);
/* The op label of a Redis error counter ("publish", "delete", "read",
 * "follow"), NULL for any other counter. */
const char *sse_metrics_redis_op(sse_counter c);

/* ---- what sse-status prints ---- */

#define SSE_METRICS_TOP 20      /* channels listed in the JSON form */

typedef struct {
    char     name[SSE_CHANNEL_MAX + 1];
    uint64_t subscribers;
    uint32_t retained;
    char     last_id[SSE_FIELD_MAX + 1];    /* "" when none */
} sse_metrics_chan;

/* Everything one answer shows, gathered first (sse_store_stats) so that
 * both forms print the same figures. */
typedef struct {
    uint64_t counter[SSE_C_COUNT];
    int64_t  gauge[SSE_G_COUNT];
    uint64_t channels;              /* with subscribers or retained events */
    uint64_t ring_size, ring_used;  /* bytes */
    double   ring_oldest_age;       /* seconds; 0 when the ring is empty */
    uint64_t ring_evicted;          /* events overwritten */
    uint64_t max_subscribers;       /* SSEMaxSubscribers; 0: none */
    int      redis_set;             /* SSERedis is set: the Redis metrics are shown */
    int      redis_up;              /* sse_metrics_redis_up */
    int      ntop;
    sse_metrics_chan top[SSE_METRICS_TOP];
} sse_metrics_snapshot;

/* The counters and gauges of m into s (the ring's figures are the store's). */
void sse_metrics_read(const sse_metrics *m, sse_metrics_snapshot *s);

/* The Prometheus text exposition format (version 0.0.4), every metric with
 * HELP and TYPE, no per-channel label; malloc'd, NUL-terminated (NULL when
 * out of memory). */
char *sse_metrics_prometheus(const sse_metrics_snapshot *s);
/* The same figures as a JSON object, with the busiest channels; malloc'd
 * (NULL when out of memory). */
char *sse_metrics_json(const sse_metrics_snapshot *s);

#endif
