/* body_form.c -- fuzzes the application/x-www-form-urlencoded publish body
 * (sse_body_parse_form, and under it sse_body_parse_pairs/sse_body_values).
 *
 * Any bytes: no sanitizer report; an error is a non-empty message; success
 * gives exactly one event, on which sse_body_check and
 * sse_body_check_channels run and agree with sse_wire's field checks, and
 * which, when they accept it, frames and parses back to itself
 * (fuzz_check_body_events in fuzz.h). The pairs themselves: an even count,
 * and every "channel" value is found by sse_body_values.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    apr_pool_t *p = fuzz_pool();
    apr_array_header_t *events, *pairs;
    const char *why = sse_body_parse_form(p, (const char *)d, n, &events);
    const char *pwhy = sse_body_parse_pairs(p, (const char *)d, n, &pairs);

    /* The form fails on malformed pairs, or on a repeated single field. */
    FUZZ_CHECK(pwhy == NULL || why != NULL);
    if (!pwhy) {
        const sse_bytes *kv = (const sse_bytes *)pairs->elts;
        apr_array_header_t *chans = sse_body_values(p, pairs, "channel");
        int i, k = 0;

        FUZZ_CHECK(pairs->nelts % 2 == 0);
        for (i = 0; i < pairs->nelts; i += 2) {
            if (kv[i].len == 7 && memcmp(kv[i].s, "channel", 7) == 0) {
                const sse_bytes *v = &((const sse_bytes *)chans->elts)[k++];
                FUZZ_CHECK(fuzz_bytes_eq(v->s, v->len, kv[i + 1].s, kv[i + 1].len));
            }
        }
        FUZZ_CHECK(k == chans->nelts);
    }
    if (why) {
        FUZZ_CHECK(strlen(why) > 0);
        return 0;
    }
    FUZZ_CHECK(events->nelts == 1);
    fuzz_check_body_events(p, events);
    return 0;
}
