/* sse_store_ring.c -- the ring store: this server's ring in shared memory
 * is the whole truth.
 *
 * This is the only code that takes the ring's global lock (the `sse-ring`
 * mutex) and the only code that writes the ring, apart from the lock-free
 * process and wake-up bookkeeping in sse_store.c. Every operation is one
 * critical section:
 *
 *   publish    intern every channel of the batch, then append every event;
 *              the batch was checked before the lock (sse_store_publish),
 *              and interning comes first, so once the first event is
 *              appended nothing can fail and the batch is all or none;
 *   channel    look the channel up, and for a DELETE drop its history and
 *              append the DELETE record that ends its streams everywhere;
 *   subscribe  intern the stream's channels and count it on each, with the
 *              epochs that let the stream tell its channel from a later one
 *              that reuses the slot; a channel a subscription creates is
 *              "waiting" and counts against the subscribers' share of the
 *              table (sse_ring.h), so that subscribers alone never lock
 *              publishers out; a channel at its location's subscriber limit
 *              refuses the stream (counts only move up under the lock, so
 *              the sum read here cannot be overtaken before it is raised);
 *   position   where a reader starts: head and last stamp, read together;
 *   stats      the ring's figures for sse-status: the oldest record's age
 *              and the busiest channels' last ids need the lock, the rest
 *              is read without it (the channel scan is lock-free, and only
 *              the channels it keeps are read again under the lock).
 *
 * Streams are counted (opened, open) here too: SSEMaxSubscribers is checked
 * against the open-stream gauge and the stream counted in the same critical
 * section as its subscription (admit), so N+1 streams racing from several
 * children for N places get exactly N.
 *
 * The lock is never held while waking anybody: the readers to wake are
 * collected under it and woken after.
 */
#include "sse_store.h"
#include "sse_assert.h"
#include "sse_wake.h"

#include <string.h>
#include <apr_strings.h>
#include <httpd.h>

/* Distinct channel slots a publish wakes the readers of, individually;
 * past that it wakes every process (sse_ring_wake with n < 0). */
#define WAKE_SLOTS 64

typedef struct {
    int n;                  /* -1: every process */
    int slot[WAKE_SLOTS];
} wake_set;

static void wake_set_add(wake_set *w, int slot)
{
    int i;

    if (w->n < 0)
        return;
    for (i = 0; i < w->n; i++) {
        if (w->slot[i] == slot)
            return;
    }
    if (w->n == WAKE_SLOTS)
        w->n = -1;
    else
        w->slot[w->n++] = slot;
}

static void wake(sse_store *st, const wake_set *w)
{
    sse_ring_wake(st->ring, w->slot, w->n, sse_wake_all, NULL);
}

static int lock(sse_store *st, const char **why)
{
    if (apr_global_mutex_lock(st->lock) == APR_SUCCESS)
        return 1;
    *why = "cannot take the sse-ring mutex";
    return 0;
}

static void unlock(sse_store *st)
{
    apr_global_mutex_unlock(st->lock);
}

static int ring_publish(sse_store *st, const sse_body_event *events, int n,
                        sse_store_receipt *out, const char **why)
{
    sse_ring *ring = st->ring;
    int slots[SSE_STORE_MAX_CHANNELS];
    wake_set woken = { 0 };
    int i, j;

    if (!lock(st, why))
        return HTTP_SERVICE_UNAVAILABLE;
    /* First make sure every channel has a slot: then nothing can fail
     * half-way, and a batch publishes all its events or none. */
    for (i = 0; i < n; i++) {
        const sse_bytes *c = (const sse_bytes *)events[i].channels->elts;
        for (j = 0; j < events[i].channels->nelts; j++) {
            if (sse_ring_chan_intern(ring, c[j].s, c[j].len) < 0) {
                unlock(st);
                *why = "too many channels in use (SSEMaxChannels)";
                return HTTP_SERVICE_UNAVAILABLE;
            }
        }
    }
    for (i = 0; i < n; i++) {
        const sse_body_event *ev = &events[i];
        const sse_bytes *c = (const sse_bytes *)ev->channels->elts;
        sse_ring_msg m;
        apr_uint64_t stamp;
        int rc;

        for (j = 0; j < ev->channels->nelts; j++) {
            slots[j] = sse_ring_chan_find(ring, c[j].s, c[j].len);
            wake_set_add(&woken, slots[j]);
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
        m.meta = ev->meta.s;
        m.meta_len = ev->meta.s ? ev->meta.len : 0;
        /* Checked by sse_store_publish with sse_ring_fits: cannot fail. */
        rc = sse_ring_publish(ring, &m, sse_store_now_ms(), &stamp, out[i].id);
        SSE_ASSERT(rc == 0);
        out[i].subscribers = 0;
        for (j = 0; j < m.nchan; j++)
            out[i].subscribers += sse_ring_subs_total(ring, slots[j]);
    }
    unlock(st);
    wake(st, &woken);
    return OK;
}

static int ring_channel(sse_store *st, const sse_bytes *name, int drop, sse_store_info *out,
                        apr_uint32_t *dropped, const char **why)
{
    sse_ring_chan_info info;
    int slot, found = 0;
    wake_set woken = { 0 };

    if (!lock(st, why))
        return HTTP_SERVICE_UNAVAILABLE;
    slot = sse_ring_chan_find(st->ring, name->s, name->len);
    if (slot >= 0) {
        sse_ring_chan_get(st->ring, slot, &info);
        found = info.published || info.retained || info.subscribers;
        if (found && drop) {
            *dropped = sse_ring_delete(st->ring, slot, sse_store_now_ms());
            wake_set_add(&woken, slot);
        }
    }
    unlock(st);
    if (!found) {
        *why = "has no events and no subscribers";
        return HTTP_NOT_FOUND;
    }
    if (drop)
        wake(st, &woken);
    out->subscribers = info.subscribers;
    out->retained = info.retained;
    memcpy(out->last_id, info.last_id, sizeof(out->last_id));
    return OK;
}

static void uncount(sse_store *st, const sse_store_channels *chans)
{
    int i;

    if (st->proc < 0)
        return;
    for (i = 0; i < chans->n; i++)
        sse_ring_subs_add(st->ring, st->proc, chans->slot[i], -1);
}

/* SSEMaxSubscribers (the lock held): every increment of the open-stream
 * gauge happens under the lock, so the sum read here can only be higher
 * than the truth by streams that are ending meanwhile. */
static int admit(sse_store *st, const char **why)
{
    if (st->max_subscribers
        && (apr_uint64_t)sse_metrics_gauge(st->metrics, SSE_G_STREAMS) >= st->max_subscribers) {
        *why = "too many streams open (SSEMaxSubscribers)";
        return 0;
    }
    return 1;
}

static void count_stream(sse_store *st, int delta)
{
    if (delta > 0)
        sse_metrics_add(st->metrics, st->proc, SSE_C_STREAMS_OPENED, 1);
    sse_metrics_gauge_add(st->metrics, st->proc, SSE_G_STREAMS, delta);
}

static int ring_subscribe(sse_store *st, apr_pool_t *p, const apr_array_header_t *names,
                          apr_uint64_t max_subscribers, sse_store_channels *out,
                          const char **why)
{
    const sse_bytes *c = (const sse_bytes *)names->elts;
    int i, j;

    SSE_ASSERT(names->nelts <= SSE_STORE_MAX_CHANNELS);
    out->n = 0;
    if (max_subscribers && st->proc < 0) {
        *why = "this process has no slot in the event ring to count its streams "
               "(SSEMaxChannelSubscribers needs them counted)";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if (!lock(st, why))
        return HTTP_SERVICE_UNAVAILABLE;
    if (!admit(st, why)) {
        unlock(st);
        return HTTP_SERVICE_UNAVAILABLE;
    }
    for (i = 0; i < names->nelts; i++) {
        int slot = sse_ring_chan_intern_waiting(st->ring, c[i].s, c[i].len);
        if (slot < 0) {
            uncount(st, out);
            unlock(st);
            out->n = 0;
            *why = slot == SSE_RING_SHARE_FULL
                   ? "too many channels that nothing was published to have subscribers "
                     "(half of SSEMaxChannels)"
                   : "too many channels in use (SSEMaxChannels)";
            return HTTP_SERVICE_UNAVAILABLE;
        }
        for (j = 0; j < out->n && out->slot[j] != slot; j++)
            ;
        if (j < out->n)
            continue;                   /* named twice */
        if (max_subscribers && sse_ring_subs_total(st->ring, slot) >= max_subscribers) {
            uncount(st, out);
            unlock(st);
            out->n = 0;
            *why = apr_psprintf(p, "channel '%.*s' already has the %" APR_UINT64_T_FMT
                                " subscribers SSEMaxChannelSubscribers allows",
                                (int)c[i].len, c[i].s, max_subscribers);
            return HTTP_SERVICE_UNAVAILABLE;
        }
        out->slot[out->n] = slot;
        out->epoch[out->n] = sse_ring_chan_epoch(st->ring, slot);
        out->n++;
        if (st->proc >= 0)
            sse_ring_subs_add(st->ring, st->proc, slot, 1);
    }
    count_stream(st, 1);
    unlock(st);
    return OK;
}

static void ring_unsubscribe(sse_store *st, const sse_store_channels *chans)
{
    uncount(st, chans);
    count_stream(st, -1);
}

/* The busiest channels first: most subscribers, then most retained. */
static int busier(const sse_metrics_chan *a, const sse_metrics_chan *b)
{
    if (a->subscribers != b->subscribers)
        return a->subscribers > b->subscribers;
    if (a->retained != b->retained)
        return a->retained > b->retained;
    return strcmp(a->name, b->name) < 0;
}

/* Inserts c into the top list (kept sorted, busiest first) if it belongs. */
static void top_insert(sse_metrics_snapshot *out, int *slots, const sse_metrics_chan *c,
                       int slot)
{
    int i = out->ntop;

    if (i == SSE_METRICS_TOP) {
        if (!busier(c, &out->top[i - 1]))
            return;
        i--;
    }
    else {
        out->ntop++;
    }
    for (; i > 0 && busier(c, &out->top[i - 1]); i--) {
        out->top[i] = out->top[i - 1];
        slots[i] = slots[i - 1];
    }
    out->top[i] = *c;
    slots[i] = slot;
}

static int ring_stats(sse_store *st, sse_metrics_snapshot *out)
{
    const char *why;
    sse_ring_params params;
    sse_ring_chan_info info;
    sse_metrics_chan c;
    int slots[SSE_METRICS_TOP], i, n = 0;
    apr_uint32_t slot, cap = sse_ring_chan_slots(st->ring);
    apr_uint64_t oldest, now = sse_store_now_ms();

    sse_ring_get_params(st->ring, &params);
    out->ring_size = params.data_size;
    out->ring_used = sse_ring_used(st->ring);
    out->ring_evicted = sse_ring_evicted(st->ring);
    out->ntop = 0;
    /* Lock-free: a racing change may tear a name here, which only decides
     * whether a channel makes the list; what is printed is read again. */
    for (slot = 0; slot < cap; slot++) {
        if (!sse_ring_chan_is_live(st->ring, (int)slot))
            continue;
        sse_ring_chan_get(st->ring, (int)slot, &info);
        if (!info.subscribers && !info.retained)
            continue;
        out->channels++;
        memcpy(c.name, info.name, sizeof(c.name));
        c.subscribers = info.subscribers;
        c.retained = info.retained;
        c.last_id[0] = '\0';
        top_insert(out, slots, &c, (int)slot);
    }
    if (!lock(st, &why))
        return HTTP_SERVICE_UNAVAILABLE;
    oldest = sse_ring_oldest_stamp(st->ring);
    for (i = 0; i < out->ntop; i++) {
        if (!sse_ring_chan_is_live(st->ring, slots[i]))
            continue;                   /* reclaimed meanwhile */
        sse_ring_chan_get(st->ring, slots[i], &info);
        memcpy(c.name, info.name, sizeof(c.name));
        memcpy(c.last_id, info.last_id, sizeof(c.last_id));
        c.subscribers = info.subscribers;
        c.retained = info.retained;
        out->top[n++] = c;
    }
    unlock(st);
    out->ntop = 0;
    for (i = 0; i < n; i++) {
        c = out->top[i];
        top_insert(out, slots, &c, 0);
    }
    oldest = oldest ? SSE_STAMP_MS(oldest) : now;
    out->ring_oldest_age = now > oldest ? (double)(now - oldest) / 1000.0 : 0.0;
    return OK;
}

int sse_store_position(sse_store *st, apr_uint64_t *cursor, apr_uint64_t *stamp)
{
    const char *why;

    if (!lock(st, &why))
        return HTTP_SERVICE_UNAVAILABLE;
    *cursor = sse_ring_head(st->ring);
    *stamp = sse_ring_last_stamp(st->ring);
    unlock(st);
    return OK;
}

const sse_store_ops sse_store_ring_ops = {
    "ring", ring_publish, ring_channel, ring_subscribe, ring_unsubscribe, ring_stats,
    NULL                        /* no history beyond the ring */
};

int sse_store_ring_append(sse_store *st, const sse_store_entry *e, apr_uint64_t stamp,
                          const char **why)
{
    int slots[SSE_STORE_MAX_CHANNELS];
    wake_set woken = { 0 };
    sse_ring_msg m;
    int i, rc;

    if (e->nchan < 1 || e->nchan > SSE_STORE_MAX_CHANNELS) {
        *why = "no channel, or more than " SSE_STR(SSE_STORE_MAX_CHANNELS);
        return HTTP_BAD_REQUEST;
    }
    m.nchan = e->nchan;
    m.chan = slots;
    m.id = e->id;
    m.id_len = e->id ? e->id_len : 0;
    m.event = e->event;
    m.event_len = e->event ? e->event_len : 0;
    m.retry = e->retry;
    m.data = e->data;
    m.data_len = e->data_len;
    m.meta = e->meta;
    m.meta_len = e->meta ? e->meta_len : 0;
    if (!sse_ring_fits(st->ring, &m)) {
        *why = "event too large for this server's event ring (SSEBufferSize)";
        return HTTP_REQUEST_ENTITY_TOO_LARGE;
    }
    if (!lock(st, why))
        return HTTP_SERVICE_UNAVAILABLE;
    for (i = 0; i < e->nchan; i++) {
        slots[i] = sse_ring_chan_intern(st->ring, e->channels[i].s, e->channels[i].len);
        if (slots[i] < 0) {
            unlock(st);
            *why = "too many channels in use (SSEMaxChannels)";
            return HTTP_SERVICE_UNAVAILABLE;
        }
        wake_set_add(&woken, slots[i]);
    }
    rc = sse_ring_publish_at(st->ring, &m, stamp, NULL);
    unlock(st);
    if (rc == SSE_RING_STALE) {
        *why = "its stamp is not above the ring's last";
        return HTTP_CONFLICT;
    }
    SSE_ASSERT(rc == 0);
    wake(st, &woken);
    return OK;
}

int sse_store_ring_delete_at(sse_store *st, const sse_bytes *name, apr_uint64_t stamp,
                             apr_uint32_t *dropped, const char **why)
{
    wake_set woken = { 0 };
    int slot, rc = 0;

    *dropped = 0;
    if (!lock(st, why))
        return HTTP_SERVICE_UNAVAILABLE;
    slot = sse_ring_chan_find(st->ring, name->s, name->len);
    if (slot >= 0) {
        rc = sse_ring_delete_at(st->ring, slot, stamp, dropped);
        wake_set_add(&woken, slot);
    }
    unlock(st);
    if (rc == SSE_RING_STALE) {
        *why = "its stamp is not above the ring's last";
        return HTTP_CONFLICT;
    }
    if (slot >= 0)
        wake(st, &woken);
    return OK;
}

sse_store *sse_store_ring_open(apr_pool_t *p, sse_ring *ring, apr_global_mutex_t *lock)
{
    sse_store *st = apr_pcalloc(p, sizeof(*st));

    st->ops = &sse_store_ring_ops;
    st->ring = ring;
    st->lock = lock;
    st->proc = -1;
    st->metrics = sse_ring_metrics(ring);
    return st;
}
