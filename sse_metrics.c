/* sse_metrics.c -- the shared counters and gauges, and their printed forms
 * (see sse_metrics.h for the layout and who writes what).
 *
 * Every metric is one row of the table `metrics` below: its name, type,
 * help text and where its value comes from. Both printed forms walk that
 * table, so a metric cannot be in one and not the other, and the README's
 * list is checked against it by the tests.
 */
#include "sse_metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#define METRICS_MAGIC 0x4d455353u      /* "SSEM" */

enum { REDIS_UNKNOWN = 0, REDIS_UP = 1, REDIS_DOWN = 2 };

/* A process's figures, on cache lines of their own. */
typedef struct {
    uint64_t counter[SSE_C_COUNT];
    int64_t  gauge[SSE_G_COUNT];
} __attribute__((aligned(64))) row;

struct sse_metrics {
    uint32_t magic;
    uint32_t nslots;
    uint32_t redis;         /* REDIS_UNKNOWN, REDIS_UP, REDIS_DOWN */
    row      rows[] __attribute__((aligned(64)));     /* nslots + 1: the last is slot-less */
};

size_t sse_metrics_size(uint32_t nslots)
{
    return sizeof(sse_metrics) + ((size_t)nslots + 1) * sizeof(row);
}

sse_metrics *sse_metrics_init(void *mem, uint32_t nslots)
{
    sse_metrics *m = mem;

    m->magic = METRICS_MAGIC;
    m->nslots = nslots;
    return m;
}

static row *row_of(sse_metrics *m, int slot)
{
    return &m->rows[slot >= 0 && (uint32_t)slot < m->nslots ? (uint32_t)slot : m->nslots];
}

void sse_metrics_add(sse_metrics *m, int slot, sse_counter c, uint64_t n)
{
    if (m && n)
        __atomic_add_fetch(&row_of(m, slot)->counter[c], n, __ATOMIC_RELAXED);
}

void sse_metrics_gauge_add(sse_metrics *m, int slot, sse_gauge g, int64_t delta)
{
    if (m && slot >= 0 && (uint32_t)slot < m->nslots)
        __atomic_add_fetch(&m->rows[slot].gauge[g], delta, __ATOMIC_RELAXED);
}

void sse_metrics_forget(sse_metrics *m, int slot)
{
    int g;

    if (!m || slot < 0 || (uint32_t)slot >= m->nslots)
        return;
    for (g = 0; g < SSE_G_COUNT; g++)
        __atomic_store_n(&m->rows[slot].gauge[g], 0, __ATOMIC_RELAXED);
}

void sse_metrics_set_redis_up(sse_metrics *m, int up)
{
    if (m)
        __atomic_store_n(&m->redis, up ? REDIS_UP : REDIS_DOWN, __ATOMIC_RELAXED);
}

int sse_metrics_redis_up(const sse_metrics *m)
{
    return m && __atomic_load_n(&m->redis, __ATOMIC_RELAXED) == REDIS_UP;
}

uint64_t sse_metrics_counter(const sse_metrics *m, sse_counter c)
{
    uint64_t sum = 0;
    uint32_t i;

    for (i = 0; i <= m->nslots; i++)
        sum += __atomic_load_n(&m->rows[i].counter[c], __ATOMIC_RELAXED);
    return sum;
}

int64_t sse_metrics_gauge(const sse_metrics *m, sse_gauge g)
{
    int64_t sum = 0;
    uint32_t i;

    for (i = 0; i < m->nslots; i++)
        sum += __atomic_load_n(&m->rows[i].gauge[g], __ATOMIC_RELAXED);
    /* A decrement read before its increment (rows are read one by one). */
    return sum > 0 ? sum : 0;
}

void sse_metrics_read(const sse_metrics *m, sse_metrics_snapshot *s)
{
    int i;

    for (i = 0; i < SSE_C_COUNT; i++)
        s->counter[i] = sse_metrics_counter(m, (sse_counter)i);
    for (i = 0; i < SSE_G_COUNT; i++)
        s->gauge[i] = sse_metrics_gauge(m, (sse_gauge)i);
}

static const char *const reasons[SSE_C_REJ_LAST - SSE_C_REJ_FIRST + 1] = {
    "bad_request", "forbidden", "method_not_allowed", "too_large", "unavailable",
    "internal", "failed_response"
};

const char *sse_metrics_reason(sse_counter c)
{
    return c >= SSE_C_REJ_FIRST && c <= SSE_C_REJ_LAST ? reasons[c - SSE_C_REJ_FIRST] : NULL;
}

static const char *const redis_ops[SSE_C_REDIS_LAST - SSE_C_REDIS_FIRST + 1] = {
    "publish", "delete", "read", "follow"
};

const char *sse_metrics_redis_op(sse_counter c)
{
    return c >= SSE_C_REDIS_FIRST && c <= SSE_C_REDIS_LAST ? redis_ops[c - SSE_C_REDIS_FIRST]
                                                           : NULL;
}

sse_counter sse_metrics_reason_of_status(int status)
{
    switch (status) {
    case 400: return SSE_C_REJ_BAD_REQUEST;
    case 403: return SSE_C_REJ_FORBIDDEN;
    case 405: return SSE_C_REJ_METHOD;
    case 413: return SSE_C_REJ_TOO_LARGE;
    case 503: return SSE_C_REJ_UNAVAILABLE;
    default:  return SSE_C_REJ_INTERNAL;
    }
}

/* ---- the table of metrics ---- */

typedef enum { COUNTER, GAUGE } kind;

typedef enum {
    FROM_COUNTER,       /* counter[index] */
    FROM_GAUGE,         /* gauge[index] */
    FROM_REASONS,       /* counter[SSE_C_REJ_FIRST .. SSE_C_REJ_LAST], labelled */
    FROM_CHANNELS, FROM_RING_SIZE, FROM_RING_USED, FROM_RING_AGE, FROM_RING_EVICTED,
    FROM_MAX_SUBSCRIBERS,
    /* Only with SSERedis (redis_set): without it they would say nothing
     * true (an "up" of 0 would fire the alert on every server without
     * Redis), so they are left out of both forms. */
    FROM_REDIS_UP,
    FROM_REDIS_ERRORS   /* counter[SSE_C_REDIS_FIRST .. SSE_C_REDIS_LAST], labelled */
} source;

/* A labelled metric: its label and the counters it is the sum of. */
typedef struct {
    const char  *label;
    sse_counter  first, last;
    const char *(*value)(sse_counter c);
} labels;

static const labels reason_labels = { "reason", SSE_C_REJ_FIRST, SSE_C_REJ_LAST,
                                      sse_metrics_reason };
static const labels redis_labels = { "op", SSE_C_REDIS_FIRST, SSE_C_REDIS_LAST,
                                     sse_metrics_redis_op };

typedef struct {
    const char *name;
    kind        type;
    source      from;
    int         index;
    const char *help;
} metric;

static const metric metrics[] = {
    { "sse_subscribers", GAUGE, FROM_GAUGE, SSE_G_STREAMS,
      "Open event streams, all children." },
    { "sse_slow_subscribers", GAUGE, FROM_GAUGE, SSE_G_SLOW,
      "Streams behind on writing: catching up from the ring or finishing a write "
      "their client is slow to take." },
    { "sse_streams_detached", GAUGE, FROM_GAUGE, SSE_G_DETACHED,
      "Open streams held by their child's dispatcher rather than a worker "
      "(SSEDetach); counted in sse_subscribers too." },
    { "sse_max_subscribers", GAUGE, FROM_MAX_SUBSCRIBERS, 0,
      "SSEMaxSubscribers: open streams allowed (0: no limit)." },
    { "sse_channels", GAUGE, FROM_CHANNELS, 0,
      "Channels with subscribers or retained events." },
    { "sse_ring_size_bytes", GAUGE, FROM_RING_SIZE, 0,
      "Bytes of the shared event ring (SSEBufferSize)." },
    { "sse_ring_used_bytes", GAUGE, FROM_RING_USED, 0,
      "Bytes of the ring holding retained records." },
    { "sse_ring_oldest_event_age_seconds", GAUGE, FROM_RING_AGE, 0,
      "Age of the oldest record retained in the ring (0 when empty): how far "
      "back a reconnecting client can resume." },
    { "sse_streams_opened_total", COUNTER, FROM_COUNTER, SSE_C_STREAMS_OPENED,
      "Streams admitted." },
    { "sse_overload_refusals_total", COUNTER, FROM_COUNTER, SSE_C_OVERLOAD_REFUSALS,
      "Streams refused with a retry (SSEMaxSubscribers, SSEMaxChannelSubscribers, "
      "channel table full)." },
    { "sse_events_published_total", COUNTER, FROM_COUNTER, SSE_C_EVENTS_PUBLISHED,
      "Events published (one per event, whatever its channels)." },
    { "sse_publish_requests_total", COUNTER, FROM_COUNTER, SSE_C_PUBLISH_REQUESTS,
      "Publish attempts: POSTs to sse-publish, responses carrying X-SSE-Publish, "
      "sse_publish() calls, accepted or not." },
    { "sse_publish_rejected_total", COUNTER, FROM_REASONS, 0,
      "Publish attempts refused, by reason." },
    { "sse_events_delivered_total", COUNTER, FROM_COUNTER, SSE_C_EVENTS_DELIVERED,
      "Events written to streams, one per event per stream (live and replayed)." },
    { "sse_replayed_events_total", COUNTER, FROM_COUNTER, SSE_C_REPLAYED,
      "Events written to streams from history (Last-Event-ID, SSEInitialReplay)." },
    { "sse_gaps_total", COUNTER, FROM_COUNTER, SSE_C_GAPS,
      "sse-gap notices sent: a client resumed from an event no longer retained "
      "or older than SSEHistoryTTL." },
    { "sse_heartbeats_total", COUNTER, FROM_COUNTER, SSE_C_HEARTBEATS,
      "Heartbeat comments sent." },
    { "sse_bytes_sent_total", COUNTER, FROM_COUNTER, SSE_C_BYTES_SENT,
      "Bytes of event-stream bodies sent, direct writes included (no HTTP headers "
      "or chunk framing)." },
    { "sse_stream_catchups_total", COUNTER, FROM_COUNTER, SSE_C_CATCHUPS,
      "Times a stream fell behind and caught up from the ring or finished a "
      "slow write itself." },
    { "sse_ring_evicted_events_total", COUNTER, FROM_RING_EVICTED, 0,
      "Events overwritten in the ring to make room for newer ones." },
    { "sse_redis_up", GAUGE, FROM_REDIS_UP, 0,
      "1 when this server reached Redis (SSERedis) the last time it tried, 0 when not." },
    { "sse_redis_errors_total", COUNTER, FROM_REDIS_ERRORS, 0,
      "Redis failures, by op: publish and delete requests refused because of Redis "
      "(one per request), reads of other servers' counts or of history that failed "
      "(one per request), the follower's failed connections, reads and reports." },
};

static const labels *labels_of(const metric *mt)
{
    return mt->from == FROM_REASONS ? &reason_labels
           : mt->from == FROM_REDIS_ERRORS ? &redis_labels : NULL;
}

static int shown(const metric *mt, const sse_metrics_snapshot *s)
{
    return s->redis_set || (mt->from != FROM_REDIS_UP && mt->from != FROM_REDIS_ERRORS);
}

#define NMETRICS (sizeof(metrics) / sizeof(metrics[0]))

/* Every metric but the ring's age is a whole number, printed exactly. */
static uint64_t int_value(const metric *mt, const sse_metrics_snapshot *s)
{
    switch (mt->from) {
    case FROM_COUNTER:         return s->counter[mt->index];
    case FROM_GAUGE:           return (uint64_t)s->gauge[mt->index];
    case FROM_CHANNELS:        return s->channels;
    case FROM_RING_SIZE:       return s->ring_size;
    case FROM_RING_USED:       return s->ring_used;
    case FROM_RING_EVICTED:    return s->ring_evicted;
    case FROM_MAX_SUBSCRIBERS: return s->max_subscribers;
    case FROM_REDIS_UP:        return s->redis_up ? 1 : 0;
    default:                   return 0;
    }
}

typedef struct {
    char  *s;
    size_t len, cap;
    int    failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        {
            size_t cap = t->cap * 2 + (size_t)n;
            char *s = realloc(t->s, cap);
            if (!s) {
                t->failed = 1;
                return;
            }
            t->s = s;
            t->cap = cap;
        }
    }
}

char *sse_metrics_prometheus(const sse_metrics_snapshot *s)
{
    text t = { malloc(4096), 0, 4096, 0 };
    size_t i;
    int c;

    if (!t.s)
        return NULL;
    t.s[0] = '\0';
    for (i = 0; i < NMETRICS; i++) {
        const metric *mt = &metrics[i];
        const labels *l = labels_of(mt);

        if (!shown(mt, s))
            continue;
        put(&t, "# HELP %s %s\n# TYPE %s %s\n", mt->name, mt->help, mt->name,
            mt->type == COUNTER ? "counter" : "gauge");
        if (l) {
            for (c = (int)l->first; c <= (int)l->last; c++)
                put(&t, "%s{%s=\"%s\"} %" PRIu64 "\n", mt->name, l->label,
                    l->value((sse_counter)c), s->counter[c]);
            continue;
        }
        if (mt->from == FROM_RING_AGE)
            put(&t, "%s %.3f\n", mt->name, s->ring_oldest_age);
        else
            put(&t, "%s %" PRIu64 "\n", mt->name, int_value(mt, s));
    }
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    return t.s;
}

char *sse_metrics_json(const sse_metrics_snapshot *s)
{
    json_t *o = json_object(), *top = json_array();
    char *out;
    size_t i;
    int c;

    if (!o || !top) {
        json_decref(o);
        json_decref(top);
        return NULL;
    }
    for (i = 0; i < NMETRICS; i++) {
        const metric *mt = &metrics[i];
        const labels *l = labels_of(mt);

        if (!shown(mt, s))
            continue;
        if (l) {
            json_t *r = json_object();
            for (c = (int)l->first; c <= (int)l->last; c++)
                json_object_set_new(r, l->value((sse_counter)c),
                                    json_integer((json_int_t)s->counter[c]));
            json_object_set_new(o, mt->name, r);
        }
        else if (mt->from == FROM_RING_AGE) {
            json_object_set_new(o, mt->name, json_real(s->ring_oldest_age));
        }
        else {
            json_object_set_new(o, mt->name, json_integer((json_int_t)int_value(mt, s)));
        }
    }
    for (c = 0; c < s->ntop; c++) {
        const sse_metrics_chan *ch = &s->top[c];
        json_t *e = json_object();

        json_object_set_new(e, "name", json_string(ch->name));
        json_object_set_new(e, "subscribers", json_integer((json_int_t)ch->subscribers));
        json_object_set_new(e, "retained", json_integer((json_int_t)ch->retained));
        json_object_set_new(e, "last_id", ch->last_id[0] ? json_string(ch->last_id)
                                                          : json_null());
        json_array_append_new(top, e);
    }
    json_object_set_new(o, "top_channels", top);
    /* 15 significant digits: the age prints as its milliseconds, without
     * the binary fraction's tail. */
    out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(o);
    return out;
}
