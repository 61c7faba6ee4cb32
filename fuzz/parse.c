/* parse.c -- fuzzes the text/event-stream parser (sse_parse_create, _feed,
 * _finish), differentially: the body fed in pieces chosen by the input
 * must give exactly what sse_parse_stream gives for it whole.
 *
 * Input: one byte k (taken mod 33), then k piece lengths (one byte each,
 * 0 included: an empty feed), then the body. The body is fed in pieces of
 * those lengths, cycling through them (k = 0: one feed). Same error (both
 * none, or the same message), same "dropped", the same events in the same
 * order with byte-equal data, event type, id and retry. And what the
 * parser may produce at all: data without CR, event type and id without
 * CR or LF, an id without NUL, no empty event type or id (empty means
 * none), retry in 0..SSE_RETRY_MAX or -1, no channels; sse_body_check
 * runs on each.
 */
#include "fuzz.h"

static void same_event(const sse_body_event *a, const sse_body_event *b)
{
    FUZZ_CHECK(fuzz_bytes_eq(a->data.s, a->data.len, b->data.s, b->data.len));
    FUZZ_CHECK((a->event.s == NULL) == (b->event.s == NULL));
    FUZZ_CHECK(fuzz_bytes_eq(a->event.s, a->event.len, b->event.s, b->event.len));
    FUZZ_CHECK((a->id.s == NULL) == (b->id.s == NULL));
    FUZZ_CHECK(fuzz_bytes_eq(a->id.s, a->id.len, b->id.s, b->id.len));
    FUZZ_CHECK(a->retry == b->retry);
}

static void possible(const sse_body_event *ev)
{
    const char *why;

    FUZZ_CHECK(ev->data.s && !memchr(ev->data.s, '\r', ev->data.len));
    FUZZ_CHECK(ev->data.s[ev->data.len] == '\0');
    FUZZ_CHECK(!ev->event.s || (ev->event.len > 0 && !memchr(ev->event.s, '\r', ev->event.len)
                                && !memchr(ev->event.s, '\n', ev->event.len)));
    FUZZ_CHECK(!ev->id.s || (ev->id.len > 0 && !memchr(ev->id.s, '\r', ev->id.len)
                             && !memchr(ev->id.s, '\n', ev->id.len)
                             && !memchr(ev->id.s, '\0', ev->id.len)));
    FUZZ_CHECK(ev->retry >= -1 && ev->retry <= SSE_RETRY_MAX);
    FUZZ_CHECK(ev->channels && ev->channels->nelts == 0);
    why = sse_body_check(ev);
    FUZZ_CHECK(why == NULL || strlen(why) > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    apr_pool_t *p = fuzz_pool();
    apr_array_header_t *whole, *pieces;
    const uint8_t *cuts, *body;
    size_t k, len, off = 0, c = 0;
    const char *w1, *w2, *fw = NULL;
    int d1 = -1, d2 = -1, i;
    sse_parse *ps;

    if (n < 1)
        return 0;
    k = d[0] % 33;
    if (n < 1 + k)
        return 0;
    cuts = d + 1;
    body = d + 1 + k;
    len = n - 1 - k;

    w1 = sse_parse_stream(p, (const char *)body, len, &whole, &d1);

    ps = sse_parse_create(p);
    while (off < len || (k && c < k)) {
        size_t piece = k ? cuts[c % k] : len;
        if (piece > len - off)
            piece = len - off;
        w2 = sse_parse_feed(ps, (const char *)body + off, piece);
        /* The first error stays; later feeds return it again. */
        if (fw)
            FUZZ_CHECK(w2 == fw);
        else
            fw = w2;
        off += piece;
        c++;
        if (c > len + k + 1)    /* only empty pieces: feed the rest at once */
            k = 0;
    }
    w2 = sse_parse_finish(ps, &pieces, &d2);

    FUZZ_CHECK((w1 == NULL) == (w2 == NULL));
    FUZZ_CHECK(w1 == NULL || strcmp(w1, w2) == 0);
    FUZZ_CHECK(w2 == fw);
    FUZZ_CHECK(d1 == d2 && (d1 == 0 || d1 == 1));
    FUZZ_CHECK(whole->nelts == pieces->nelts);
    for (i = 0; i < whole->nelts; i++) {
        const sse_body_event *a = &((const sse_body_event *)whole->elts)[i];
        const sse_body_event *b = &((const sse_body_event *)pieces->elts)[i];
        possible(a);
        same_event(a, b);
    }
    return 0;
}
