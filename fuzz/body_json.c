/* body_json.c -- fuzzes the application/json publish body
 * (sse_body_parse_json): one event object, or an array of them.
 *
 * Any bytes: no sanitizer report, and no leak of jansson's values; an
 * error is a non-empty message; success gives one event for an object and
 * one per element for an array, on each of which sse_body_check and
 * sse_body_check_channels run and agree with sse_wire's field checks, and
 * which, when they accept it, frames and parses back to itself
 * (fuzz_check_body_events in fuzz.h).
 */
#include "fuzz.h"

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    apr_pool_t *p = fuzz_pool();
    apr_array_header_t *events;
    const char *why = sse_body_parse_json(p, (const char *)d, n, &events);
    json_t *root;
    size_t want;

    if (why) {
        FUZZ_CHECK(strlen(why) > 0);
        return 0;
    }
    /* Accepted: the body is JSON, and the events are its objects. */
    root = json_loadb((const char *)d, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    FUZZ_CHECK(root != NULL);
    want = json_is_array(root) ? json_array_size(root) : 1;
    json_decref(root);
    FUZZ_CHECK((size_t)events->nelts == want);
    fuzz_check_body_events(p, events);
    return 0;
}
