/* sse_store.c -- what every store shares: the checks before a publish, the
 * process's slot in the ring, and the reader's wake-ups (see sse_store.h).
 *
 * The checks are here, not in each store, so that "all or none" means the
 * same everywhere: a batch reaches a store's publish only once every event
 * of it is known to be publishable, field by field and by size.
 */
#include "sse_store.h"
#include "sse_wake.h"

#include <string.h>
#include <apr_strings.h>
#include <httpd.h>

static sse_store *this_process;

sse_store *sse_store_get(void)
{
    return this_process;
}

void sse_store_set(sse_store *st)
{
    this_process = st;
}

const sse_ring *sse_store_ring(const sse_store *st)
{
    return st->ring;
}

apr_uint64_t sse_store_now_ms(void)
{
    return (apr_uint64_t)(apr_time_now() / 1000);
}

/* The ring message of an event, for the size check (no slots yet). */
static void message_of(const sse_body_event *ev, sse_ring_msg *m)
{
    m->nchan = ev->channels->nelts;
    m->chan = NULL;
    m->id = ev->id.s;
    m->id_len = ev->id.s ? ev->id.len : 0;
    m->event = ev->event.s;
    m->event_len = ev->event.s ? ev->event.len : 0;
    m->retry = ev->retry;
    m->data = ev->data.s;
    m->data_len = ev->data.len;
    m->meta = ev->meta.s;
    m->meta_len = ev->meta.s ? ev->meta.len : 0;
}

/* An event of a hub (with metadata) goes to its hub's channel alone; every
 * other event to channels a client may name. So metadata never reaches a
 * plain stream, and a hub's channel never gets an event without it. */
static const char *check_channels(apr_pool_t *p, const sse_body_event *ev)
{
    const sse_bytes *c = (const sse_bytes *)ev->channels->elts;

    if (!ev->meta.s)
        return sse_body_check_channels(p, ev->channels);
    if (ev->channels->nelts != 1 || sse_wire_check_hub_channel(c[0].s, c[0].len))
        return "an event with metadata goes to one hub channel";
    return sse_wire_check_meta(ev->meta.s, ev->meta.len);
}

int sse_store_publish(sse_store *st, apr_pool_t *p, const apr_array_header_t *events,
                      sse_store_receipt **out, const char **why)
{
    const sse_body_event *ev = (const sse_body_event *)events->elts;
    int i, status;

    if (!st) {
        *why = "the event ring is not available";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    for (i = 0; i < events->nelts; i++) {
        sse_ring_msg m;

        if ((*why = check_channels(p, &ev[i])) || (*why = sse_body_check(&ev[i]))) {
            if (events->nelts > 1)
                *why = apr_psprintf(p, "event %d: %s", i, *why);
            return HTTP_BAD_REQUEST;
        }
        message_of(&ev[i], &m);
        if (!sse_ring_fits(st->ring, &m)) {
            *why = "event too large for the event ring (raise SSEBufferSize)";
            return HTTP_REQUEST_ENTITY_TOO_LARGE;
        }
    }
    *out = apr_pcalloc(p, sizeof(**out) * (apr_size_t)events->nelts);
    status = st->ops->publish(st, ev, events->nelts, *out, why);
    if (status == OK)
        sse_store_count(st, SSE_C_EVENTS_PUBLISHED, (apr_uint64_t)events->nelts);
    return status;
}

int sse_store_channel(sse_store *st, const sse_bytes *name, int drop, sse_store_info *out,
                      apr_uint32_t *dropped, const char **why)
{
    if (!st) {
        *why = "the event ring is not available";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    return st->ops->channel(st, name, drop, out, dropped, why);
}

int sse_store_subscribe(sse_store *st, apr_pool_t *p, const apr_array_header_t *names,
                        apr_uint64_t max_subscribers, sse_store_channels *out,
                        const char **why)
{
    if (!st) {
        *why = "the event ring is not available in this process";
        return HTTP_SERVICE_UNAVAILABLE;
    }
    return st->ops->subscribe(st, p, names, max_subscribers, out, why);
}

void sse_store_unsubscribe(sse_store *st, const sse_store_channels *chans)
{
    st->ops->unsubscribe(st, chans);
}

int sse_store_history(sse_store *st, apr_pool_t *p, const apr_array_header_t *names,
                      apr_uint64_t from, apr_uint64_t upto, apr_array_header_t **out,
                      const char **why)
{
    if (!st || !st->ops->history) {
        *why = "no history beyond the event ring";
        return HTTP_NOT_FOUND;
    }
    return st->ops->history(st, p, names, from, upto, out, why);
}

int sse_store_retry_after(sse_store *st)
{
    return st ? st->retry_after : 0;
}

/* ---- metrics ---- */

void sse_store_set_max_subscribers(sse_store *st, apr_uint64_t max)
{
    if (st)
        st->max_subscribers = max;
}

void sse_store_count(sse_store *st, sse_counter c, apr_uint64_t n)
{
    if (st)
        sse_metrics_add(st->metrics, st->proc, c, n);
}

void sse_store_gauge(sse_store *st, sse_gauge g, int delta)
{
    if (st)
        sse_metrics_gauge_add(st->metrics, st->proc, g, delta);
}

int sse_store_stats(sse_store *st, sse_metrics_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    if (!st)
        return HTTP_SERVICE_UNAVAILABLE;
    sse_metrics_read(st->metrics, out);
    out->max_subscribers = st->max_subscribers;
    return st->ops->stats(st, out);
}

/* ---- process slots ---- */

int sse_store_proc_claim(sse_store *st, apr_uint32_t pid, int (*alive)(apr_uint32_t pid))
{
    st->proc = sse_ring_proc_claim(st->ring, pid);
    if (st->proc < 0) {
        /* Children that died without cleaning up still hold slots. */
        sse_ring_proc_reap(st->ring, alive);
        st->proc = sse_ring_proc_claim(st->ring, pid);
    }
    return st->proc;
}

void sse_store_proc_release(sse_store *st)
{
    if (st->proc >= 0) {
        sse_ring_proc_release(st->ring, st->proc);
        st->proc = -1;
    }
}

int sse_store_proc_reap(sse_store *st, int (*alive)(apr_uint32_t pid))
{
    return sse_ring_proc_reap(st->ring, alive);
}

/* ---- wake-ups ---- */

apr_uint32_t sse_store_wake_seen(sse_store *st)
{
    return __atomic_load_n(sse_ring_wake_word(st->ring, st->proc), __ATOMIC_ACQUIRE);
}

void sse_store_sleep(sse_store *st, apr_uint32_t seen, apr_uint64_t cursor,
                     apr_interval_time_t timeout)
{
    if (!sse_ring_sleep_begin(st->ring, st->proc, cursor))
        return;
    sse_wake_wait(sse_ring_wake_word(st->ring, st->proc), seen, timeout);
    sse_ring_sleep_end(st->ring, st->proc);
}

void sse_store_wake_self(sse_store *st)
{
    sse_ring_wake_proc(st->ring, st->proc, sse_wake_all, NULL);
}
