/* ids.c -- fuzzes ids and Last-Event-ID resolution, and the other
 * one-line fields: sse_wire_check_id, sse_wire_check_event,
 * sse_wire_parse_retry, sse_wire_is_server_form, sse_wire_parse_server_id,
 * sse_wire_format_id.
 *
 * The input is the field (a Last-Event-ID, an SSE-Id, an event type, a
 * retry). Properties:
 *  - sse_wire_is_server_form and sse_wire_parse_server_id agree with a
 *    second implementation written here from sse_wire.h: "<digits>-<digits>",
 *    and a stamp only when ms < 2^42 and seq < 2^22;
 *  - a parsed stamp formats (sse_wire_format_id) to an id of at most
 *    SSE_ID_MAXLEN bytes that parses back to the same stamp, and that a
 *    publisher may not use (sse_wire_check_id refuses server-form ids);
 *  - the first 8 bytes taken as any stamp format and parse back the same;
 *  - check_id and check_event accept only ids/types of at most 255 bytes
 *    without CR, LF or NUL; check_id also only ids a client can send back
 *    in Last-Event-ID (no space or tab at an end, no control character but
 *    tab); they agree with each other except on what only one of them
 *    refuses (server-form ids, "sse-" types, ids unfit for a header);
 *  - sse_wire_parse_retry accepts exactly 1 to 10 digits up to
 *    SSE_RETRY_MAX, and its value printed parses back the same.
 */
#include "fuzz.h"

#include <inttypes.h>

/* Digits '-' digits, both parts non-empty, nothing else. */
static int ref_server_form(const char *s, size_t len, size_t *dash)
{
    const char *m = memchr(s, '-', len);
    size_t i;

    if (!m || m == s || m == s + len - 1)
        return 0;
    for (i = 0; i < len; i++) {
        if (s + i != m && (s[i] < '0' || s[i] > '9'))
            return 0;
    }
    *dash = (size_t)(m - s);
    return 1;
}

/* The value of digits, or UINT64_MAX when it passes max. */
static uint64_t ref_value(const char *s, size_t len, uint64_t max)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned __int128 w = (unsigned __int128)v * 10 + (unsigned)(s[i] - '0');
        if (w > max)
            return UINT64_MAX;
        v = (uint64_t)w;
    }
    return v;
}

static void stamp_roundtrip(uint64_t stamp)
{
    char buf[SSE_ID_BUFSIZE];
    size_t n = sse_wire_format_id(stamp, buf);
    uint64_t back = ~stamp;

    FUZZ_CHECK(n > 0 && n <= SSE_ID_MAXLEN && strlen(buf) == n);
    FUZZ_CHECK(sse_wire_is_server_form(buf, n));
    FUZZ_CHECK(sse_wire_parse_server_id(buf, n, &back) && back == stamp);
    FUZZ_CHECK(sse_wire_check_id(buf, n) != NULL);
}

static int has_byte(const char *s, size_t len, char c)
{
    return memchr(s, c, len) != NULL;
}

/* What httpd takes back in a header value whole (reference rule). */
static int header_safe(const char *s, size_t n)
{
    size_t i;

    if (n && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        return 0;
    for (i = 0; i < n; i++) {
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || (unsigned char)s[i] == 0x7f)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    const char *s = (const char *)d;
    const uint64_t ms_max = UINT64_MAX >> SSE_STAMP_SEQ_BITS;
    uint64_t stamp = 0, ms, seq;
    uint32_t retry = 0;
    size_t dash = 0, i;
    int form = sse_wire_is_server_form(s, n), ref = ref_server_form(s, n, &dash), parsed;
    const char *why_id = sse_wire_check_id(s, n), *why_ev = sse_wire_check_event(s, n);
    const char *why_retry = sse_wire_parse_retry(s, n, &retry);
    int line_ok;

    FUZZ_CHECK(form == ref);
    parsed = sse_wire_parse_server_id(s, n, &stamp);
    if (ref) {
        ms = ref_value(s, dash, ms_max);
        seq = ref_value(s + dash + 1, n - dash - 1, SSE_STAMP_SEQ_MASK);
        FUZZ_CHECK(parsed == (ms != UINT64_MAX && seq != UINT64_MAX));
        if (parsed) {
            FUZZ_CHECK(SSE_STAMP_MS(stamp) == ms && SSE_STAMP_SEQ(stamp) == seq);
            stamp_roundtrip(stamp);
        }
    }
    else {
        FUZZ_CHECK(!parsed);
    }
    if (n >= 8) {
        uint64_t any;
        memcpy(&any, d, 8);
        stamp_roundtrip(any);
    }

    /* What the two line fields share. */
    line_ok = n <= SSE_FIELD_MAX && !has_byte(s, n, '\r') && !has_byte(s, n, '\n')
              && !has_byte(s, n, '\0');
    /* Accepted only when the shared rule holds, and not reserved. */
    FUZZ_CHECK(why_id != NULL || line_ok);
    FUZZ_CHECK(why_ev != NULL || line_ok);
    FUZZ_CHECK(why_id != NULL || !form);
    FUZZ_CHECK(why_ev != NULL || n < 4 || memcmp(s, "sse-", 4) != 0);
    /* An id must also come back in a Last-Event-ID header: no space or tab
     * at an end, no control character but tab. */
    FUZZ_CHECK(why_id != NULL || header_safe(s, n));
    if (!form && !(n >= 4 && memcmp(s, "sse-", 4) == 0) && header_safe(s, n))
        FUZZ_CHECK((why_id == NULL) == (why_ev == NULL));
    FUZZ_CHECK(why_id == NULL || strlen(why_id) > 0);
    FUZZ_CHECK(why_ev == NULL || strlen(why_ev) > 0);

    /* retry: all digits, at most SSE_RETRY_MAX. */
    {
        int digits = n > 0;
        for (i = 0; i < n; i++)
            digits = digits && s[i] >= '0' && s[i] <= '9';
        FUZZ_CHECK((why_retry == NULL) == (digits && ref_value(s, n, SSE_RETRY_MAX) != UINT64_MAX));
        if (!why_retry) {
            char buf[16];
            uint32_t again = ~retry;
            int k = snprintf(buf, sizeof(buf), "%" PRIu32, retry);
            FUZZ_CHECK(retry == ref_value(s, n, SSE_RETRY_MAX));
            FUZZ_CHECK(sse_wire_parse_retry(buf, (size_t)k, &again) == NULL && again == retry);
        }
        else {
            FUZZ_CHECK(strlen(why_retry) > 0);
        }
    }
    return 0;
}
