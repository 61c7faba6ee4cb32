/* sse_store.h -- where events are kept: the one boundary between the
 * module's request handling and its shared state.
 *
 * Handlers, the response filter, the sse_publish() optional function and
 * the dispatcher never take the ring's lock and never write the ring: they
 * call the functions below. A store is a set of operations (sse_store_ops)
 * over this server's ring:
 *
 *   sse_store_ring.c   the ring in shared memory is the whole truth (one
 *                      server);
 *   sse_store_redis.c  servers share channels through Redis (SSERedis): the
 *                      same operations, writing into the local ring what it
 *                      gets from Redis, so that the dispatcher and replay go
 *                      on reading the ring.
 *
 * Contract of every store:
 *  - Blocking: publish, channel, subscribe and position may block (the ring
 *    store takes its global lock, for microseconds; a networked store waits
 *    for its server). Call them from a request's thread or the dispatcher's
 *    start, never from a signal handler. unsubscribe, the process-slot
 *    calls and the wake-up calls never block.
 *  - Ids: only publish assigns ids, in sse_store_receipt; they are strictly
 *    increasing stamps (sse_wire.h) unless the publisher chose its own.
 *  - All or none: publish checks every event of the batch (channels,
 *    fields, size against the ring) before it changes anything, and then
 *    either every event is published, in order, with consecutive stamps, or
 *    none is and the answer says why. No subscriber ever sees part of a
 *    failed batch.
 *  - Subscriber limit (SSEMaxChannelSubscribers): subscribe takes the
 *    limit of the stream's location (0: none) and checks it against the
 *    count of every process and counts the stream in one step, under the
 *    store's lock, so that of N + 1 simultaneous streams on a channel
 *    limited to N, whatever their processes, exactly one is refused. A
 *    stream refused on any of its channels counts on none. unsubscribe
 *    frees the places at once; the places of a process that died are freed
 *    when its slot is reaped (sse_store_proc_reap). A process without a
 *    slot cannot count its streams: it refuses every stream with a limit.
 *  - Statuses: OK, or the HTTP status a handler answers with:
 *    HTTP_BAD_REQUEST (an invalid event, *why says which and why),
 *    HTTP_REQUEST_ENTITY_TOO_LARGE (an event larger than the ring holds),
 *    HTTP_NOT_FOUND (channel info of a channel that does not exist),
 *    HTTP_SERVICE_UNAVAILABLE (no store, the lock failed, the channel table
 *    is full, a channel of the stream has its limit of subscribers,
 *    SSEMaxSubscribers streams are open).
 *  - Metrics: the store counts streams (opened, open) and published
 *    events itself; the callers count what only they see (deliveries,
 *    refusals) with sse_store_count.
 */
#ifndef SSE_STORE_H
#define SSE_STORE_H

#include <apr_global_mutex.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "sse_body.h"
#include "sse_metrics.h"
#include "sse_ring.h"

/* The most channels one subscription or one event may name. */
#define SSE_STORE_MAX_CHANNELS SSE_BODY_MAX_CHANNELS

/* What publish answers for each event. */
typedef struct {
    char         id[SSE_FIELD_MAX + 1];
    apr_uint64_t subscribers;       /* streams of its channels, all processes */
} sse_store_receipt;

/* What the store knows of a channel. */
typedef struct {
    apr_uint64_t subscribers;
    apr_uint32_t retained;          /* events it still holds */
    char         last_id[SSE_FIELD_MAX + 1];    /* "" when none */
} sse_store_info;

/* The channels of a subscription as the ring knows them: a slot each, and
 * the slot's epoch when subscribed (a DELETE moves it on). Distinct, in the
 * order first named. */
typedef struct {
    int          n;
    int          slot[SSE_STORE_MAX_CHANNELS];
    apr_uint32_t epoch[SSE_STORE_MAX_CHANNELS];
} sse_store_channels;

typedef struct sse_store sse_store;

typedef struct {
    const char *name;
    /* events: n validated sse_body_event, each with its channels. */
    int  (*publish)(sse_store *st, const sse_body_event *events, int n,
                    sse_store_receipt *out, const char **why);
    /* info of one channel, and with drop, its deletion: history dropped
     * and every stream of it ended. */
    int  (*channel)(sse_store *st, const sse_bytes *name, int drop, sse_store_info *out,
                    apr_uint32_t *dropped, const char **why);
    int  (*subscribe)(sse_store *st, apr_pool_t *p, const apr_array_header_t *names,
                      apr_uint64_t max_subscribers, sse_store_channels *out,
                      const char **why);
    void (*unsubscribe)(sse_store *st, const sse_store_channels *chans);
    /* The ring's figures and busiest channels into out (its counters and
     * gauges are read by sse_store_stats). */
    int  (*stats)(sse_store *st, sse_metrics_snapshot *out);
    /* Optional (NULL: none): see sse_store_history. */
    int  (*history)(sse_store *st, apr_pool_t *p, const apr_array_header_t *names,
                    apr_uint64_t from, apr_uint64_t upto, apr_array_header_t **out,
                    const char **why);
} sse_store_ops;

/* An event of a shared server's history, framed as the ring frames it. */
typedef struct {
    apr_uint64_t stamp;
    const char  *id;     apr_size_t id_len;
    const char  *frame;  apr_size_t frame_len;
} sse_store_past;

/* Shared by the stores: what a store's operations work on. Callers outside
 * the store units use the functions below, never these fields. */
struct sse_store {
    const sse_store_ops *ops;
    sse_ring            *ring;      /* this server's ring */
    apr_global_mutex_t  *lock;      /* its writers' lock */
    int                  proc;      /* this process's slot in the ring, -1: none */
    sse_metrics         *metrics;   /* the ring's metrics block */
    apr_uint64_t         max_subscribers;   /* SSEMaxSubscribers, 0: none */
    int                  retry_after;       /* seconds after a 503, 0: none */
};

/* ---- for stores that share channels between servers ---- */

/* The ring store's operations: another store that keeps this server's
 * ring as its local copy calls them on itself (its sse_store fields are
 * the ring's) for what stays local. */
extern const sse_store_ops sse_store_ring_ops;

/* One event as a shared server hands it back: channels (valid names,
 * distinct, 1..SSE_STORE_MAX_CHANNELS), the publisher's id or NULL, event
 * type or NULL, retry (< 0: none), data, and a hub's metadata or NULL (then
 * its one channel is the hub's, see sse_store_publish). */
typedef struct {
    const sse_bytes *channels;
    int              nchan;
    const char *id;     apr_size_t id_len;
    const char *event;  apr_size_t event_len;
    long        retry;
    const char *data;   apr_size_t data_len;
    const char *meta;   apr_size_t meta_len;
} sse_store_entry;

/* Appends e to this server's ring with the given stamp (the shared
 * server's id), under the lock, and wakes the readers of its channels.
 * Only one writer per server may call it (see sse_store_redis.c), so that
 * the ring's order is the shared order. OK, or: HTTP_CONFLICT (stamp not
 * above the ring's last: nothing written), HTTP_REQUEST_ENTITY_TOO_LARGE
 * (the event does not fit this ring), HTTP_SERVICE_UNAVAILABLE (the lock,
 * or the channel table is full), HTTP_BAD_REQUEST (channel count). */
int sse_store_ring_append(sse_store *st, const sse_store_entry *e, apr_uint64_t stamp,
                          const char **why);

/* A deletion from the shared server, with its stamp: the channel's history
 * in this ring is dropped and its streams end (a channel this ring does not
 * know has nothing to drop: OK, *dropped 0). HTTP_CONFLICT when the stamp
 * is not above the ring's last (nothing changed), HTTP_SERVICE_UNAVAILABLE
 * when the lock fails. */
int sse_store_ring_delete_at(sse_store *st, const sse_bytes *name, apr_uint64_t stamp,
                             apr_uint32_t *dropped, const char **why);

/* The Redis store (sse_store_redis.c) over the ring store ring: publishes
 * go to Redis, and one process per server copies Redis's events into the
 * ring. s is the main server (its SSERedis is set). */
struct server_rec;
sse_store *sse_store_redis_open(apr_pool_t *p, sse_store *ring, struct server_rec *s);
/* In the parent, on a ring just created (nothing written yet): copies every
 * event Redis keeps into it. 0 when st is not the Redis store or Redis
 * could not be reached (logged; the ring stays empty), 1 otherwise. */
int sse_store_redis_fill(sse_store *st);
/* In each child: starts the thread that follows Redis when this child is
 * the server's follower (and waits to become it otherwise). */
void sse_store_redis_child_init(sse_store *st, apr_pool_t *pchild, struct server_rec *s);
/* Seconds a client should wait after a 503 of this store (Retry-After),
 * 0: none to say. */
int sse_store_retry_after(sse_store *st);

/* This process's store (set by sse_shm.c at post_config and child_init);
 * NULL where there is none. */
sse_store *sse_store_get(void);
void sse_store_set(sse_store *st);

/* The ring store over ring, whose writers take lock. */
sse_store *sse_store_ring_open(apr_pool_t *p, sse_ring *ring, apr_global_mutex_t *lock);

/* This server's ring, for lock-free reading (sse_ring.h, "reading"): the
 * dispatcher follows it, replay walks its channel chains. */
const sse_ring *sse_store_ring(const sse_store *st);

/* Milliseconds since the epoch: the clock of every stamp. */
apr_uint64_t sse_store_now_ms(void);

/* ---- what the handlers call ---- */

/* Checks every event of events (sse_body_event, each with its channels)
 * and publishes them all or none (see above); on OK, *out holds one
 * receipt per event, from p. */
int sse_store_publish(sse_store *st, apr_pool_t *p, const apr_array_header_t *events,
                      sse_store_receipt **out, const char **why);

/* Info of one channel (drop = 0), or its deletion (drop = 1: *dropped says
 * how many events were dropped). HTTP_NOT_FOUND when the channel has no
 * events and no subscribers. The name must be valid. */
int sse_store_channel(sse_store *st, const sse_bytes *name, int drop, sse_store_info *out,
                      apr_uint32_t *dropped, const char **why);

/* Makes the channels of a stream known to the store and counts the stream
 * among their subscribers, until sse_store_unsubscribe. Names are valid and
 * at most SSE_STORE_MAX_CHANNELS. With max_subscribers > 0, refused
 * (HTTP_SERVICE_UNAVAILABLE, *why from p naming the channel) when one of
 * the channels already has that many subscribers in all processes. */
int  sse_store_subscribe(sse_store *st, apr_pool_t *p, const apr_array_header_t *names,
                         apr_uint64_t max_subscribers, sse_store_channels *out,
                         const char **why);
void sse_store_unsubscribe(sse_store *st, const sse_store_channels *chans);

/* Open streams are limited to max (SSEMaxSubscribers; 0: no limit): a
 * subscribe beyond it answers HTTP_SERVICE_UNAVAILABLE. Checked and
 * counted in one critical section, so that it is exact across children.
 * Set at every configuration pass. */
void sse_store_set_max_subscribers(sse_store *st, apr_uint64_t max);

/* What this ring lost of a stream's channels and a shared server still
 * holds: the events of the channels names with from < stamp <= upto,
 * oldest first (array of sse_store_past, from p), minus those a later
 * DELETE of their channel took. Blocks (a network round trip or more).
 * OK, or HTTP_NOT_FOUND (the store keeps no history beyond the ring, or
 * none back to from: the caller reports a gap as before),
 * HTTP_SERVICE_UNAVAILABLE (its server cannot be reached),
 * HTTP_REQUEST_ENTITY_TOO_LARGE (more than a stream may read at once). */
int sse_store_history(sse_store *st, apr_pool_t *p, const apr_array_header_t *names,
                      apr_uint64_t from, apr_uint64_t upto, apr_array_header_t **out,
                      const char **why);

/* ---- metrics (any thread; never block) ---- */

/* Adds n to a counter, or delta to a gauge, in this process's row. st may
 * be NULL (no store: nothing counted). */
void sse_store_count(sse_store *st, sse_counter c, apr_uint64_t n);
void sse_store_gauge(sse_store *st, sse_gauge g, int delta);
/* Everything sse-status shows (sse_metrics.h); blocks as channel does. */
int  sse_store_stats(sse_store *st, sse_metrics_snapshot *out);

/* ---- what this process's reader (the dispatcher) calls ---- */

/* Where a reader starts: the ring offset of the next record and the stamp
 * of the last one, read together (under the lock). */
int sse_store_position(sse_store *st, apr_uint64_t *cursor, apr_uint64_t *stamp);

/* This process's slot in the ring: claimed at child start (the slots of
 * dead processes are reaped first when none is free; alive(pid) says which
 * are), released at exit. A process without a slot still works; its
 * streams are not counted and its reader wakes on every publish. */
int  sse_store_proc_claim(sse_store *st, apr_uint32_t pid, int (*alive)(apr_uint32_t pid));
void sse_store_proc_release(sse_store *st);
/* Forgets the subscribers of dead processes; returns how many. */
int  sse_store_proc_reap(sse_store *st, int (*alive)(apr_uint32_t pid));

/* The reader's wake word: read it before looking at the ring, then, with
 * the ring read up to cursor, sleep until a publish for this process moves
 * it, or timeout. Returns at once if records arrived meanwhile. */
apr_uint32_t sse_store_wake_seen(sse_store *st);
void sse_store_sleep(sse_store *st, apr_uint32_t seen, apr_uint64_t cursor,
                     apr_interval_time_t timeout);
/* Wakes this process's own reader (a new stream, a stop). */
void sse_store_wake_self(sse_store *st);

#endif
