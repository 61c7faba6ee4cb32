/* body_raw.c -- fuzzes the raw publish body with its header fields
 * (sse_body_raw: SSE-Event, SSE-Id, SSE-Retry and the body as data).
 *
 * Input: one byte of flags (bit 0: SSE-Event sent, bit 1: SSE-Id, bit 2:
 * SSE-Retry), then event, id and retry separated by NUL bytes (header
 * values hold none), then the body, any bytes. No sanitizer report; retry
 * fails exactly when sse_wire_parse_retry refuses it; success gives one
 * event carrying the fields as sent, on which sse_body_check and
 * sse_body_check_channels run and agree with sse_wire's field checks, and
 * which, when they accept it, frames and parses back to itself
 * (fuzz_check_body_events in fuzz.h).
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    apr_pool_t *p = fuzz_pool();
    apr_array_header_t *events;
    const char *f[4], *event, *id, *retry, *why;
    const sse_body_event *ev;
    size_t len[4];
    unsigned flags;
    uint32_t want_retry = 0;
    int retry_ok;

    if (n < 1)
        return 0;
    flags = d[0];
    fuzz_split(d + 1, n - 1, 0, 4, f, len);
    event = flags & 1 ? fuzz_str(p, f[0], len[0]) : NULL;
    id = flags & 2 ? fuzz_str(p, f[1], len[1]) : NULL;
    retry = flags & 4 ? fuzz_str(p, f[2], len[2]) : NULL;
    retry_ok = !retry || sse_wire_parse_retry(retry, len[2], &want_retry) == NULL;

    why = sse_body_raw(p, len[3] ? f[3] : NULL, len[3], event, id, retry, &events);
    FUZZ_CHECK((why == NULL) == retry_ok);
    if (why) {
        FUZZ_CHECK(strlen(why) > 0);
        return 0;
    }
    FUZZ_CHECK(events->nelts == 1);
    ev = (const sse_body_event *)events->elts;
    FUZZ_CHECK(fuzz_bytes_eq(ev->data.s, ev->data.len, f[3], len[3]));
    FUZZ_CHECK(event ? fuzz_bytes_eq(ev->event.s, ev->event.len, event, len[0]) : !ev->event.s);
    FUZZ_CHECK(id ? fuzz_bytes_eq(ev->id.s, ev->id.len, id, len[1]) : !ev->id.s);
    FUZZ_CHECK(ev->retry == (retry ? (long)want_retry : -1));
    FUZZ_CHECK(ev->channels->nelts == 0);
    fuzz_check_body_events(p, events);
    return 0;
}
