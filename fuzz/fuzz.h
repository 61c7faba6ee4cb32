/* fuzz.h -- what the libFuzzer targets of fuzz/ share.
 *
 *  - FUZZ_CHECK(e): a property that must hold; when it does not, print it
 *    and abort(), which libFuzzer reports as a crash with the input saved;
 *  - fuzz_pool(): an APR pool, cleared before each input;
 *  - fuzz_split(): cut the input at a separator byte into fields;
 *  - fuzz_check_body_events(): what every target that produces publish
 *    events (the body parsers) checks on each of them: sse_body_check and
 *    sse_body_check_channels run and agree with sse_wire's field checks,
 *    and an event they accept frames and parses back to itself
 *    (fuzz_roundtrip, the property of fuzz/frame.c).
 *
 * Header-only (static functions): each target is one .c file built with the
 * pure units, see the Makefile's fuzz rules.
 */
#ifndef SSE_FUZZ_H
#define SSE_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_tables.h>

#include "sse_wire.h"
#include "sse_body.h"
#include "sse_parse.h"

#define FUZZ_CHECK(e) \
    ((e) ? (void)0 : (fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, \
                              __LINE__, #e), abort()))

static inline apr_pool_t *fuzz_pool(void)
{
    static apr_pool_t *pool;

    if (!pool) {
        apr_initialize();
        apr_pool_create(&pool, NULL);
    }
    apr_pool_clear(pool);
    return pool;
}

/* Cuts [d, d+n) at the first nfields-1 bytes equal to sep: field i is
 * f[i], len[i]; fields past the end are empty. The last field keeps the
 * rest, separators included. Returns how many fields the input had. */
static inline int fuzz_split(const uint8_t *d, size_t n, uint8_t sep, int nfields,
                      const char **f, size_t *len)
{
    int i, had = 1;

    for (i = 0; i < nfields; i++) {
        const uint8_t *end = i + 1 < nfields ? memchr(d, sep, n) : NULL;
        size_t k = end ? (size_t)(end - d) : n;
        f[i] = (const char *)d;
        len[i] = k;
        if (end) {
            had++;
            d += k + 1;
            n -= k + 1;
        }
        else {
            d += n;
            n = 0;
        }
    }
    return had;
}

/* NUL-terminated copy (for header values: strings in httpd). */
static inline const char *fuzz_str(apr_pool_t *p, const char *s, size_t len)
{
    char *c = apr_palloc(p, len + 1);

    memcpy(c, s, len);
    c[len] = '\0';
    return c;
}

static inline int fuzz_bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The data a client gets for published data: CRLF and lone CR become LF. */
static inline size_t fuzz_normalize(const char *s, size_t len, char *out)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '\r') {
            out[n++] = '\n';
            if (i + 1 < len && s[i + 1] == '\n')
                i++;
        }
        else {
            out[n++] = s[i];
        }
    }
    return n;
}

/* The frame of ev written by hand, line by line as sse_wire.h documents
 * it: a second implementation for sse_wire_frame to agree with. */
static inline size_t fuzz_frame_by_hand(const sse_wire_event *ev, char *out)
{
    char *p = out;
    size_t i, start = 0;

#define PUT(s, n) (memcpy(p, (s), (n)), p += (n))
    if (ev->id_len) {
        PUT("id: ", 4); PUT(ev->id, ev->id_len); *p++ = '\n';
    }
    if (ev->event_len) {
        PUT("event: ", 7); PUT(ev->event, ev->event_len); *p++ = '\n';
    }
    if (ev->retry >= 0)
        p += sprintf(p, "retry: %ld\n", ev->retry);
    for (i = 0; i <= ev->data_len; i++) {
        if (i == ev->data_len || ev->data[i] == '\r' || ev->data[i] == '\n') {
            PUT("data: ", 6);
            PUT(ev->data + start, i - start);
            *p++ = '\n';
            if (i < ev->data_len && ev->data[i] == '\r' && i + 1 < ev->data_len
                && ev->data[i + 1] == '\n')
                i++;
            start = i + 1;
        }
    }
    *p++ = '\n';
#undef PUT
    return (size_t)(p - out);
}

/* An event that passes the field checks is framed (sse_wire_frame_size
 * exact, bytes as written by hand) and parsed back by sse_parse_stream as
 * exactly that event: data with line ends normalized to LF, event type,
 * id, retry. */
static inline void fuzz_roundtrip(apr_pool_t *p, const sse_wire_event *ev)
{
    size_t size = sse_wire_frame_size(ev), n;
    /* By hand: a data byte takes at most 7 bytes (an empty "data: " line),
     * id and event at most 255 bytes each, plus their names. */
    char *buf = apr_palloc(p, size + 1), *hand = apr_palloc(p, 8 * ev->data_len + 700);
    char *norm = apr_palloc(p, ev->data_len + 1);
    size_t norm_len = fuzz_normalize(ev->data, ev->data_len, norm);
    apr_array_header_t *evs;
    const sse_body_event *got;
    const char *why;
    int dropped = -1;

    FUZZ_CHECK(ev->retry >= -1 && ev->retry <= SSE_RETRY_MAX);
    n = sse_wire_frame(buf, ev);
    FUZZ_CHECK(n == size);
    FUZZ_CHECK(fuzz_bytes_eq(buf, n, hand, fuzz_frame_by_hand(ev, hand)));
    why = sse_parse_stream(p, buf, n, &evs, &dropped);
    FUZZ_CHECK(why == NULL && dropped == 0 && evs->nelts == 1);
    got = (const sse_body_event *)evs->elts;
    FUZZ_CHECK(fuzz_bytes_eq(got->data.s, got->data.len, norm, norm_len));
    FUZZ_CHECK(ev->event_len ? fuzz_bytes_eq(got->event.s, got->event.len, ev->event, ev->event_len)
                             : got->event.s == NULL);
    FUZZ_CHECK(ev->id_len ? fuzz_bytes_eq(got->id.s, got->id.len, ev->id, ev->id_len)
                          : got->id.s == NULL);
    FUZZ_CHECK(got->retry == (ev->retry < 0 ? -1 : ev->retry));
}

/* Each event of a body parser: the checks run (their messages are
 * strings), agree with sse_wire's, and what they accept round-trips. */
static inline void fuzz_check_body_events(apr_pool_t *p, const apr_array_header_t *events)
{
    int i, j;

    FUZZ_CHECK(events->nelts >= 1);
    for (i = 0; i < events->nelts; i++) {
        const sse_body_event *ev = &((const sse_body_event *)events->elts)[i];
        const char *why = sse_body_check(ev), *cwhy;
        const sse_bytes *c = (const sse_bytes *)ev->channels->elts;
        int all_ok = ev->channels->nelts >= 1 && ev->channels->nelts <= SSE_BODY_MAX_CHANNELS;

        FUZZ_CHECK(ev->data.s != NULL);
        FUZZ_CHECK(ev->retry >= -1 && ev->retry <= SSE_RETRY_MAX);
        for (j = 0; j < ev->channels->nelts; j++)
            all_ok = all_ok && sse_wire_check_channel(c[j].s, c[j].len) == NULL;
        cwhy = sse_body_check_channels(p, ev->channels);
        FUZZ_CHECK((cwhy == NULL) == all_ok);
        FUZZ_CHECK(cwhy == NULL || strlen(cwhy) > 0);
        if (why) {
            FUZZ_CHECK(strlen(why) > 0);
            continue;
        }
        /* Accepted: the fields are what sse_wire accepts. */
        FUZZ_CHECK(ev->event.s == NULL || ev->event.len == 0
                   || sse_wire_check_event(ev->event.s, ev->event.len) == NULL);
        FUZZ_CHECK(ev->id.s == NULL
                   || (ev->id.len > 0 && sse_wire_check_id(ev->id.s, ev->id.len) == NULL));
        {
            sse_wire_event w = { ev->id.s, ev->id.s ? ev->id.len : 0,
                                 ev->event.s, ev->event.s ? ev->event.len : 0,
                                 ev->retry, ev->data.s, ev->data.len, NULL, 0 };
            fuzz_roundtrip(p, &w);
        }
    }
}

#endif
