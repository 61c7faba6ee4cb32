/* sse_stream.c -- the sse-stream handler: one subscriber's response.
 *
 * httpd 2.4 cannot park a response without its thread, so a stream holds a
 * worker thread for its whole life; it sleeps on its own condition variable
 * and is woken by the child's dispatcher only when one of its channels has
 * an event (see sse_registry.h). What it touches per stream is kept small: the
 * request pool, one sub-pool cleared after each replay, one brigade reused.
 *
 * The order of a stream: headers (flushed at once, so `open` fires before
 * any event exists), `retry:`, the sse-gap notice if events were lost,
 * replayed events, then live events, each batch with its own FLUSH. It ends
 * when the client goes away (found by writing: heartbeats), when its
 * channel is deleted, or when the child stops, so that clients reconnect
 * to the next generation instead of holding the old one alive.
 *
 * Detached (SSEDetach on, sse_detach.h): once headers and replay are
 * flushed, a plain HTTP/1.x stream (the same test as direct writes:
 * direct_eligible) is handed to the child's detach thread and the handler
 * returns at once; httpd then closes only its own descriptor (mod_sse.c's
 * pre_close_connection hook, on the SSE_DETACHED_NOTE of the connection).
 * The access log line then shows what was written before the hand-over;
 * the stream's end is logged by the detach thread.
 *
 * Metrics: what goes through the filters is counted when its flush
 * succeeds; what the dispatcher writes directly, by the dispatcher (per
 * batch), except the rest of a partial write, counted here once written.
 * The stream's own totals end up in the request notes sse-events,
 * sse-bytes and sse-channels, for the access log (%{sse-events}n): body
 * bytes, without chunk framing, the same whichever way they were written.
 */
#include "sse_stream.h"
#include "sse_config.h"
#include "sse_detach.h"
#include "sse_http.h"
#include "sse_log.h"
#include "sse_registry.h"
#include "sse_replay.h"

#include <string.h>
#include <jansson.h>
#include <apr_strings.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_core.h>
#include <http_request.h>
#include <http_ssl.h>
#include <util_filter.h>

APLOG_USE_MODULE(sse);

#define STREAM_ALLOW "GET, HEAD, OPTIONS"
#define GAP_EVENT    "sse-gap"
#define REPLAY_FLUSH_BYTES (64 * 1024)
#define IDLE_WAIT apr_time_from_sec(60)   /* wait slice when heartbeats are off */
#define RETRY_LINE_MAX 32                 /* "retry: 2147483647\n\n" and room */

typedef struct {
    request_rec        *r;
    apr_bucket_brigade *bb;
    sse_sub            *sub;
    apr_uint64_t        last;       /* stamp of the newest event written */
    char                last_id[SSE_FIELD_MAX + 1];
    apr_time_t          last_write;
    apr_size_t          pending;    /* bytes in bb not yet flushed */
    /* In bb, not flushed yet: events, of which replayed, for the metrics. */
    apr_uint64_t        pend_events, pend_replayed;
    /* Written: events and body bytes, for the request notes. */
    apr_uint64_t        events, bytes;
    int                 catching_up;    /* replaying what its queue dropped, not history */
    const apr_array_header_t *names;    /* its channels, as named */
    const sse_sub_filter *filter;       /* a hub's stream (sse_stream_serve_hub); else NULL */
} stream;

/* What a stream writes of a frame read from the ring or a store: a hub's
 * stream only the updates its filter accepts, without their metadata;
 * every other stream all of it (0). */
static int hub_take(const stream *st, const char **frame, apr_size_t *len)
{
    apr_size_t skip;

    if (!st->filter)
        return 1;
    if (!st->filter->accept(st->filter->ctx, *frame, *len))
        return 0;
    skip = sse_wire_meta_len(*frame, *len);
    *frame += skip;
    *len -= skip;
    return 1;
}

/* Counts what a write delivered, in the stream's totals and the metrics. */
static void delivered(stream *st, apr_uint64_t events, apr_uint64_t replayed,
                      apr_uint64_t bytes)
{
    sse_store *store = sse_store_get();

    st->events += events;
    st->bytes += bytes;
    sse_store_count(store, SSE_C_EVENTS_DELIVERED, events);
    sse_store_count(store, SSE_C_REPLAYED, replayed);
    sse_store_count(store, SSE_C_BYTES_SENT, bytes);
}

static apr_status_t flush(stream *st)
{
    conn_rec *c = st->r->connection;
    apr_status_t rv;

    APR_BRIGADE_INSERT_TAIL(st->bb, apr_bucket_flush_create(c->bucket_alloc));
    rv = ap_pass_brigade(st->r->output_filters, st->bb);
    apr_brigade_cleanup(st->bb);
    if (rv == APR_SUCCESS && c->aborted)
        rv = APR_ECONNABORTED;
    if (rv == APR_SUCCESS)
        delivered(st, st->pend_events, st->pend_replayed, st->pending);
    st->pending = 0;
    st->pend_events = st->pend_replayed = 0;
    st->last_write = apr_time_now();
    return rv;
}

/* Copies bytes into the brigade (for data that does not outlive the call). */
static void put_copy(stream *st, const char *s, apr_size_t len)
{
    apr_brigade_write(st->bb, NULL, NULL, s, len);
    st->pending += len;
}

static void put_gap(stream *st, apr_pool_t *p, const char *asked, apr_size_t asked_len,
                    const char *oldest)
{
    json_t *o = json_object();
    char *text;
    sse_wire_event ev;
    char *frame;

    json_object_set_new(o, "last_event_id", json_stringn(asked, asked_len));
    json_object_set_new(o, "oldest_id", oldest ? json_string(oldest) : json_null());
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text)
        return;
    memset(&ev, 0, sizeof(ev));
    /* The notice keeps the client's position: if the stream breaks right
     * after it, the client asks from the same id and hears of the gap again. */
    ev.id = asked;
    ev.id_len = asked_len;
    ev.event = GAP_EVENT;
    ev.event_len = sizeof(GAP_EVENT) - 1;
    ev.retry = -1;
    ev.data = text;
    ev.data_len = strlen(text);
    frame = apr_palloc(p, sse_wire_frame_size(&ev));
    put_copy(st, frame, sse_wire_frame(frame, &ev));
    free(text);
    sse_store_count(sse_store_get(), SSE_C_GAPS, 1);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, st->r, SSE_LOGNO(00301)
                  "stream resumed from '%.*s': events were lost, sent sse-gap",
                  (int)asked_len, asked);
}

/* Writes retained events with from < stamp <= upto (the newest `limit` if
 * limit > 0), preceded by an sse-gap notice when gap says so. If the ring
 * overwrites what is being replayed, starts again from the last event
 * written, with a notice: events may be missed, never silently. */
/* What the ring overwrote of the stream's channels after from (a resumed
 * stream), read from a store that keeps more history than the ring (the
 * Redis store): written, and *from moved past it. Nothing when the store
 * has none: the caller reports the gap as before. */
static apr_status_t from_history(stream *st, apr_pool_t *p, apr_uint64_t *from)
{
    const sse_store_channels *chans = sse_registry_channels(st->sub);
    const sse_ring *ring = sse_store_ring(sse_store_get());
    apr_array_header_t *past;
    const sse_store_past *e;
    apr_uint64_t upto = 0;
    const char *why;
    apr_status_t rv = APR_SUCCESS;
    int i, status;

    for (i = 0; i < chans->n; i++) {
        apr_uint64_t ev = sse_ring_chan_evicted(ring, chans->slot[i]);
        if (sse_ring_chan_epoch(ring, chans->slot[i]) == chans->epoch[i] && ev > upto)
            upto = ev;
    }
    if (upto <= *from || !st->names)
        return APR_SUCCESS;
    status = sse_store_history(sse_store_get(), p, st->names, *from, upto, &past, &why);
    if (status != OK) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, st->r, SSE_LOGNO(00310)
                      "history beyond the ring not read (%d: %s)", status, why);
        return APR_SUCCESS;
    }
    e = (const sse_store_past *)past->elts;
    for (i = 0; i < past->nelts; i++) {
        const char *frame = e[i].frame;
        apr_size_t frame_len = e[i].frame_len;

        st->last = e[i].stamp;
        if (hub_take(st, &frame, &frame_len)) {
            put_copy(st, frame, frame_len);
            st->pend_events++;
            st->pend_replayed++;
        }
        memcpy(st->last_id, e[i].id, e[i].id_len);
        st->last_id[e[i].id_len] = '\0';
        if (st->pending >= REPLAY_FLUSH_BYTES && (rv = flush(st)) != APR_SUCCESS)
            return rv;
    }
    *from = upto;
    return rv;
}

static apr_status_t replay(stream *st, apr_pool_t *p, apr_uint64_t from, apr_uint64_t upto,
                           int limit, const char *asked, apr_size_t asked_len, int gap)
{
    const sse_store_channels *chans = sse_registry_channels(st->sub);
    sse_replay_reader rd;
    apr_status_t rv = APR_SUCCESS;

    sse_replay_reader_init(&rd, p);
    if (asked && !gap && sse_replay_gap(chans, from)
        && (rv = from_history(st, p, &from)) != APR_SUCCESS)
        return rv;
    for (;;) {
        apr_array_header_t *refs;
        const sse_replay_ref *ref;
        sse_ring_rec rec;
        int i, lost = 0;

        gap = gap || (asked && sse_replay_gap(chans, from));
        refs = sse_replay_collect(chans, p, from, upto, limit);
        ref = (const sse_replay_ref *)refs->elts;
        /* A hub's client learns of a loss from the Last-Event-ID header. */
        if (gap && !st->filter) {
            const char *oldest = NULL;
            if (refs->nelts && sse_replay_read(&rd, ref[0].off, &rec) == SSE_RING_OK)
                oldest = apr_pstrmemdup(p, rec.id, rec.id_len);
            put_gap(st, p, asked, asked_len, oldest);
        }
        for (i = 0; i < refs->nelts; i++) {
            const char *frame;
            apr_size_t frame_len;

            if (sse_replay_read(&rd, ref[i].off, &rec) != SSE_RING_OK) {
                lost = 1;
                break;
            }
            frame = rec.frame;
            frame_len = rec.frame_len;
            st->last = rec.stamp;
            if (hub_take(st, &frame, &frame_len)) {
                put_copy(st, frame, frame_len);
                st->pend_events++;
                st->pend_replayed += !st->catching_up;
            }
            memcpy(st->last_id, rec.id, rec.id_len);
            st->last_id[rec.id_len] = '\0';
            if (st->pending >= REPLAY_FLUSH_BYTES && (rv = flush(st)) != APR_SUCCESS)
                return rv;
        }
        if (!lost)
            break;
        from = st->last;
        asked = st->last_id;
        asked_len = strlen(st->last_id);
        gap = 1;
    }
    if (st->last < upto)
        st->last = upto;
    return rv;
}

static apr_status_t write_batch(stream *st, sse_registry_batch *b)
{
    conn_rec *c = st->r->connection;
    int i;

    for (i = 0; i < b->n; i++) {
        sse_frame *f = b->frame[i];
        /* A hub's stream: the dispatcher queued only what its filter
         * accepted; the metadata stays behind. */
        apr_size_t skip = st->filter ? sse_wire_meta_len(f->bytes, f->len) : 0;
        if (f->stamp <= st->last)
            continue;       /* replayed already, or queued twice */
        /* The batch holds a reference until after the flush below: the
         * bytes can go out without a copy. Filters that keep them set them
         * aside, as the bucket contract requires. */
        APR_BRIGADE_INSERT_TAIL(st->bb,
            apr_bucket_transient_create(f->bytes + skip, f->len - skip, c->bucket_alloc));
        st->pending += f->len - skip;
        st->pend_events++;
        st->last = f->stamp;
    }
    return flush(st);
}

/* Writes bytes straight to the socket, blocking up to the connection's
 * timeout: the rest of an event a direct write could not finish. */
static apr_status_t write_raw(stream *st, const char *buf, apr_size_t len)
{
    apr_socket_t *sock = ap_get_conn_socket(st->r->connection);
    apr_status_t rv = APR_SUCCESS;

    while (len && rv == APR_SUCCESS) {
        apr_size_t n = len;
        rv = apr_socket_send(sock, buf, &n);
        buf += n;
        len -= n;
    }
    st->last_write = apr_time_now();
    return rv;
}

/* A stream behind on writing, for the sse_slow_subscribers gauge. */
static void slow(int delta)
{
    sse_store_gauge(sse_store_get(), SSE_G_SLOW, delta);
    if (delta > 0)
        sse_store_count(sse_store_get(), SSE_C_CATCHUPS, 1);
}

/* The rest of a direct write the client was slow to take; once written,
 * the events and bytes of that write count (direct_send_frames). */
static apr_status_t write_spill(stream *st, sse_registry_batch *b)
{
    apr_status_t rv;

    slow(1);
    rv = write_raw(st, b->spill, b->spill_len);
    slow(-1);
    if (rv == APR_SUCCESS)
        delivered(st, b->spill_events, 0, b->spill_payload);
    return rv;
}

/* The filters httpd itself puts between a handler and a plain HTTP/1.x
 * socket once the headers are out. With anything else in the chain (TLS,
 * HTTP/2, a content filter) the stream's bytes must go through the filters,
 * so the dispatcher may not write them directly. */
static int direct_eligible(request_rec *r)
{
    static const char *const plain[] = {
        "chunk", "http_outerror", "byterange", "content_length",
        "reqtimeout",       /* mod_reqtimeout only watches for the request's end */
        "core", NULL
    };
    conn_rec *c = r->connection;
    ap_filter_t *f;
    int i;

    if (c->master || ap_ssl_conn_is_ssl(c) || !ap_get_conn_socket(c))
        return 0;
    for (f = r->output_filters; f; f = f->next) {
        for (i = 0; plain[i] && strcasecmp(f->frec->name, plain[i]); i++)
            ;
        if (!plain[i]) {
            ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, SSE_LOGNO(00302)
                          "stream written through the "
                          "filters: output filter '%s' present", f->frec->name);
            return 0;
        }
    }
    return 1;
}

static int begin_direct(stream *st, int wanted)
{
    apr_os_sock_t fd;

    if (!wanted || apr_os_sock_get(&fd, ap_get_conn_socket(st->r->connection)) != APR_SUCCESS)
        return 0;
    return sse_registry_w_direct_begin(st->sub, fd, st->r->chunked, st->last);
}

/* Hands the stream to the child's detach thread (everything written so
 * far is flushed, the stream is not in direct mode). Everything it needs is
 * copied; on success st->sub is no longer ours, and httpd is told to close
 * its own descriptor only: no last chunk (eos_sent), no keep-alive, and
 * c->aborted set at pre_close_connection so that no shutdown() goes out on
 * the shared socket. */
static const char *channel_list(apr_pool_t *p, const apr_array_header_t *channels);

static int detach(stream *st, const sse_dir_conf *dc, const apr_array_header_t *channels)
{
    request_rec *r = st->r;
    conn_rec *c = r->connection;
    sse_detach_info info;
    apr_os_sock_t fd;

    if (apr_os_sock_get(&fd, ap_get_conn_socket(c)) != APR_SUCCESS)
        return 0;
    info.fd = fd;
    info.chunked = r->chunked;
    info.written = st->last;
    info.events = st->events;
    info.bytes = st->bytes;
    info.heartbeat = apr_time_from_sec(SSE_DIR_HEARTBEAT(dc));
    info.timeout = r->server->timeout;
    info.opened = r->request_time;
    info.client = apr_psprintf(r->pool, "%s:%d", c->client_ip,
                               c->client_addr ? (int)c->client_addr->port : 0);
    info.channels = channel_list(r->pool, channels);
    if (!sse_detach_stream(st->sub, &info))
        return 0;
    st->sub = NULL;
    r->eos_sent = 1;
    c->keepalive = AP_CONN_CLOSE;
    apr_table_setn(c->notes, SSE_DETACHED_NOTE, "1");
    return 1;
}

static const char *last_event_id(request_rec *r, const apr_array_header_t *pairs,
                                 apr_size_t *len)
{
    const char *id = apr_table_get(r->headers_in, "Last-Event-ID");
    apr_array_header_t *q;

    if (id) {
        *len = strlen(id);
        return *len ? id : NULL;
    }
    q = sse_body_values(r->pool, pairs, "lastEventId");
    if (q->nelts == 0)
        return NULL;
    *len = ((sse_bytes *)q->elts)[q->nelts - 1].len;
    return *len ? ((sse_bytes *)q->elts)[q->nelts - 1].s : NULL;
}

static void set_stream_headers(request_rec *r)
{
    ap_set_content_type(r, "text/event-stream; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    apr_table_setn(r->headers_out, "X-Accel-Buffering", "no");
    apr_table_unset(r->headers_out, "Content-Length");
    /* Compression would hold events back until a block fills. */
    apr_table_setn(r->subprocess_env, "no-gzip", "1");
    apr_table_setn(r->subprocess_env, "no-brotli", "1");
    r->no_cache = 1;
}

static const char *channel_list(apr_pool_t *p, const apr_array_header_t *channels)
{
    const sse_bytes *c = (const sse_bytes *)channels->elts;
    char *names = "", *sep = "";
    int i;

    for (i = 0; i < channels->nelts; i++, sep = ",")
        names = apr_pstrcat(p, names, sep, apr_pstrmemdup(p, c[i].s, c[i].len), NULL);
    return names;
}

/* What the stream delivered, for the access log: %{sse-events}n,
 * %{sse-bytes}n (body bytes) and %{sse-channels}n (its channels, comma
 * separated, as subscribed). */
static void set_notes(request_rec *r, apr_uint64_t events, apr_uint64_t bytes,
                      const apr_array_header_t *channels)
{
    const char *names = channel_list(r->pool, channels);

    apr_table_setn(r->notes, "sse-events", apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, events));
    apr_table_setn(r->notes, "sse-bytes", apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, bytes));
    apr_table_setn(r->notes, "sse-channels", names);
}

/* A stream that cannot be served now (no room in the channel table, a
 * full channel, SSEMaxSubscribers reached, no ring). A browser's
 * EventSource gives up for good on any answer but 200, so the refusal is a
 * 200 stream that says why in a comment, asks for a reconnection in
 * SSEOverloadRetry +/- 25 % (random, so that refused clients do not come
 * back in step; rounded inwards, so never outside the 25 %, and within
 * SSE_RETRY_MAX by the directive's bounds), and ends. Logged at most once a
 * second per child; every one counts in sse_overload_refusals_total. */
static int refuse(request_rec *r, const char *why, const apr_array_header_t *channels)
{
    apr_uint64_t bytes = 0;
    static apr_time_t logged;           /* when this child last logged one */
    apr_time_t now = apr_time_now(), last = __atomic_load_n(&logged, __ATOMIC_RELAXED);
    apr_int64_t base = SSE_DIR_OVERLOAD_RETRY(sse_config_dir(r));
    apr_uint32_t retry = ap_random_pick((apr_uint32_t)((base * 3 + 3) / 4),
                                        (apr_uint32_t)(base * 5 / 4));

    if (now - last >= apr_time_from_sec(1)
        && __atomic_compare_exchange_n(&logged, &last, now, 0, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED)) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SSE_LOGNO(00309)
                      "stream refused (the client retries in %u ms): %s", retry, why);
    }
    set_stream_headers(r);
    r->status = HTTP_OK;
    sse_store_count(sse_store_get(), SSE_C_OVERLOAD_REFUSALS, 1);
    if (!r->header_only) {
        /* Measured here: ap_rprintf's count is not the bytes it wrote (httpd
         * 2.4 adds its last buffer twice). */
        const char *body = apr_psprintf(r->pool, ": %s\nretry: %u\n\n", why, retry);
        apr_size_t len = strlen(body);

        if (ap_rwrite(body, (int)len, r) == (int)len) {
            sse_store_count(sse_store_get(), SSE_C_BYTES_SENT, len);
            bytes = len;
        }
    }
    set_notes(r, 0, bytes, channels);
    return OK;
}

static int serve(request_rec *r, const sse_stream_hub *hub);

int sse_stream_handler(request_rec *r)
{
    return serve(r, NULL);
}

int sse_stream_serve_hub(request_rec *r, const sse_stream_hub *hub)
{
    return serve(r, hub);
}

/* A stream; hub: a Mercure hub's (see sse_stream.h), else NULL. */
static int serve(request_rec *r, const sse_stream_hub *hub)
{
    const sse_dir_conf *dc = sse_config_dir(r);
    apr_array_header_t *pairs = NULL, *channels;
    const char *why, *asked;
    apr_size_t asked_len = 0;
    apr_uint64_t upto, from = 0, ttl_floor, expired;
    apr_interval_time_t beat;
    apr_pool_t *scratch;
    sse_registry_batch *batch;
    stream st;
    int status, known = 1, direct, detaching;
    apr_status_t rv = APR_SUCCESS;

    if (hub) {
        channels = (apr_array_header_t *)hub->channels;
        asked = hub->asked;
        asked_len = hub->asked_len;
    }
    else {
        if (sse_http_options(r, dc, "GET", STREAM_ALLOW))
            return OK;
        if (r->method_number != M_GET)
            return sse_http_not_allowed(r, STREAM_ALLOW, "an event stream; subscribe with GET");
        if ((why = sse_http_query(r, &pairs)))
            return sse_http_error(r, HTTP_BAD_REQUEST, why);
        if (!(channels = sse_http_channels(r, dc, pairs, &why)))
            return sse_http_error(r, HTTP_BAD_REQUEST, why);
        if ((why = sse_body_check_channels(r->pool, channels)))
            return sse_http_error(r, HTTP_BAD_REQUEST, why);
        asked = last_event_id(r, pairs, &asked_len);
    }

    memset(&st, 0, sizeof(st));
    st.r = r;
    st.filter = hub ? hub->filter : NULL;
    if ((status = sse_registry_w_subscribe_filtered(r, channels,
                                                    (apr_uint64_t)SSE_DIR_CHANNEL_SUBS(dc),
                                                    st.filter, &st.sub, &upto, &why)) != OK)
        return status == HTTP_SERVICE_UNAVAILABLE ? refuse(r, why, channels)
                                                  : sse_http_error(r, status, why);

    set_stream_headers(r);
    if (hub) {
        /* The protocol's: a token may be in the URL (RFC 6750 asks private). */
        apr_table_setn(r->headers_out, "Cache-Control", "private, no-cache, no-store");
    }
    if (r->header_only) {
        set_notes(r, 0, 0, channels);
        return OK;
    }
    /* Reading the body of a GET would only return EOS; discard it so that
     * nothing waits on it, then keep the socket to ourselves. */
    ap_discard_request_body(r);

    st.bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    st.names = channels;
    apr_pool_create(&scratch, r->pool);
    apr_pool_tag(scratch, "sse_stream_scratch");
    batch = apr_pcalloc(r->pool, sizeof(*batch));   /* read at the end even if never filled */

    if (SSE_DIR_RETRY(dc) >= 0) {
        char line[RETRY_LINE_MAX];
        put_copy(&st, line, (apr_size_t)apr_snprintf(line, sizeof(line),
                                                      "retry: %" APR_INT64_T_FMT "\n\n",
                                                      SSE_DIR_RETRY(dc)));
    }
    /* SSEHistoryTTL: what the stream may replay starts after `expired`.
     * An id older than the TTL is a gap like an overwritten one: what
     * followed it may have expired, and the client must hear so. Only the
     * start of a stream is bounded: live events, and the catch-up of a slow
     * stream, are never expired. */
    ttl_floor = sse_wire_expiry_floor(sse_store_now_ms(),
                                  (apr_uint64_t)SSE_DIR_HISTORY_TTL(dc) * 1000);
    expired = ttl_floor ? ttl_floor - 1 : 0;
    if (hub && asked) {
        /* "earliest", or an id the hub does not know (any more): all that
         * is retained, and the header says so; else what followed the id.
         * An id whose successors were overwritten is not known either: the
         * header must name the event preceding the first one sent (the
         * protocol), which is then not the id, and "earliest" is what tells
         * the client it lost updates. */
        known = !(asked_len == 8 && memcmp(asked, "earliest", 8) == 0)
                && sse_replay_resolve(sse_registry_channels(st.sub), scratch, asked,
                                      asked_len, &from)
                && from >= ttl_floor
                && !sse_replay_gap(sse_registry_channels(st.sub), from);
        apr_table_setn(r->headers_out, "Last-Event-ID", known ? asked : "earliest");
        rv = replay(&st, scratch, known ? from : expired, upto, 0, asked, asked_len, 0);
        if (known && from > st.last)
            st.last = from;
    }
    else if (hub) {
        st.last = upto;     /* no history unless asked for */
    }
    else if (asked) {
        known = sse_replay_resolve(sse_registry_channels(st.sub), scratch, asked, asked_len,
                                   &from);
        if (known && from < ttl_floor)
            known = 0;
        rv = replay(&st, scratch, known ? from : expired, upto, 0, asked, asked_len, !known);
        /* The asked event may be newer than what the dispatcher had fanned
         * out when we registered: it must not come back live either. */
        if (known && from > st.last)
            st.last = from;
    }
    else if (SSE_DIR_REPLAY(dc) > 0) {
        rv = replay(&st, scratch, expired, upto, (int)SSE_DIR_REPLAY(dc), NULL, 0, 0);
    }
    else {
        st.last = upto;
    }
    apr_pool_clear(scratch);
    if (rv == APR_SUCCESS)
        rv = flush(&st);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00303)
                  "stream open on %d channel(s)%s%s",
                  channels->nelts, asked ? ", resumed from " : "", asked ? asked : "");

    direct = rv == APR_SUCCESS && SSE_DIR_DIRECT(dc) && direct_eligible(r);
    /* Detached only where direct writes are allowed: the same plain path.
     * Never a hub's stream: its filter lives in the request's pool, and
     * its token's expiry and its departure update belong to the handler. */
    detaching = direct && !hub && SSE_DIR_DETACH(dc) && sse_detach_available();
    if (detaching && detach(&st, dc, channels))
        goto detached;
    if (begin_direct(&st, direct)) {
        detaching = 0;      /* the dispatcher has the socket: stay so */
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00304)
                      "stream written directly by the dispatcher");
    }
    else {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00308)
                      "stream written through the output filters");
    }

    beat = apr_time_from_sec(SSE_DIR_HEARTBEAT(dc));
    while (rv == APR_SUCCESS) {
        apr_interval_time_t wait = IDLE_WAIT;

        if (beat) {
            apr_time_t due = st.last_write + beat;
            wait = due > apr_time_now() ? due - apr_time_now() : 0;
        }
        /* A hub's stream wakes up when its token expires, to end. */
        if (hub && hub->ends) {
            apr_time_t now = apr_time_now();
            if (now >= hub->ends)
                break;
            if (hub->ends - now < wait)
                wait = hub->ends - now;
        }
        sse_registry_w_wait(st.sub, wait, batch);
        if (batch->direct_last > st.last) {
            st.last = batch->direct_last;       /* the dispatcher wrote these */
            st.last_write = apr_time_now();
        }
        if (batch->dead)
            rv = APR_ECONNABORTED;
        if (batch->spill) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00305)
                          "slow client: the stream's "
                          "thread finishes a direct write (%" APR_SIZE_T_FMT " bytes)",
                          batch->spill_len);
            if (rv == APR_SUCCESS)
                rv = write_spill(&st, batch);
            free(batch->spill);
            batch->spill = NULL;
        }
        if (rv == APR_SUCCESS && batch->n)
            rv = write_batch(&st, batch);
        sse_registry_w_release(batch);
        if (rv != APR_SUCCESS || batch->ended || batch->stopping)
            break;
        if (batch->overflow) {
            apr_uint64_t to = sse_registry_w_resync(st.sub);
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00306) "slow client: "
                          "more than %d events pending, catching up from the ring",
                          SSE_REGISTRY_QUEUE);
            slow(1);
            st.catching_up = 1;
            rv = replay(&st, scratch, st.last, to, 0, st.last_id, strlen(st.last_id), 0);
            apr_pool_clear(scratch);
            if (rv == APR_SUCCESS)
                rv = flush(&st);
            st.catching_up = 0;
            slow(-1);
        }
        else if (beat && apr_time_now() >= st.last_write + beat) {
            sse_store_count(sse_store_get(), SSE_C_HEARTBEATS, 1);
            if (sse_registry_w_direct_write(st.sub, SSE_WIRE_HEARTBEAT, SSE_WIRE_HEARTBEAT_LEN)) {
                st.last_write = apr_time_now();
            }
            else {
                put_copy(&st, SSE_WIRE_HEARTBEAT, SSE_WIRE_HEARTBEAT_LEN);
                rv = flush(&st);
            }
        }
        /* Everything is out through the filters: the socket can go back to
         * the dispatcher (a no-op while it still has it), or the stream to
         * the detach thread if the first try found events queued. */
        if (rv == APR_SUCCESS && detaching) {
            if (detach(&st, dc, channels))
                goto detached;
            if (begin_direct(&st, direct))
                detaching = 0;
        }
        else if (rv == APR_SUCCESS) {
            begin_direct(&st, direct);
        }
    }
    /* Take the socket back before finishing through the filters (last
     * chunk, logging), and finish what the dispatcher could not. */
    r->bytes_sent += (apr_off_t)sse_registry_w_direct_end(st.sub, batch);
    st.events += batch->direct_events;
    st.bytes += batch->direct_payload;
    if (batch->spill) {
        if (rv == APR_SUCCESS && !batch->dead)
            rv = write_spill(&st, batch);
        free(batch->spill);
        batch->spill = NULL;
    }
    set_notes(r, st.events, st.bytes, channels);
    /* A stream that could not write all it had (a direct write left
     * unfinished, a write that failed or timed out on a client that stopped
     * reading) has broken HTTP framing: the client must see the connection
     * cut, not a last chunk inside an unfinished one, which it would read as
     * data. The core output filter drops all output of an aborted
     * connection, and EventSource reconnects from its last complete event. */
    if (rv != APR_SUCCESS)
        r->connection->aborted = 1;
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, SSE_LOGNO(00307) "stream ends: %s",
                  rv != APR_SUCCESS ? "client gone" :
                  batch->ended ? "channel deleted" :
                  batch->stopping ? "child stopping" : "its token expired");
    sse_registry_w_unsubscribe(st.sub);
    return OK;

detached:
    /* What was written before the hand-over; the rest is in the detach
     * thread's record of the stream's end (SSE01701). */
    set_notes(r, st.events, st.bytes, channels);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(00311)
                  "stream detached: the child's dispatcher holds it, the worker is free");
    return OK;
}
