/* channels.c -- fuzzes channel names: sse_wire_check_channel on each name,
 * and sse_body_check_channels on the list.
 *
 * Input: one separator byte, then names separated by it (so a list of any
 * length, names of any bytes but that one). Each name is accepted exactly
 * when a second implementation written here from sse_wire.c's rule agrees:
 * 1 to SSE_CHANNEL_MAX bytes of letters, digits and -._~:/@!$&'()*+,;= .
 * The list is accepted exactly when it has 1 to SSE_BODY_MAX_CHANNELS names
 * and every name is; a refusal is a non-empty message, and one about a name
 * quotes it (or says it is unprintable, or shortens it).
 */
#include "fuzz.h"

static int ref_name_ok(const char *s, size_t len)
{
    static const char extra[] = "-._~:/@!$&'()*+,;=";
    size_t i, k;

    if (len < 1 || len > SSE_CHANNEL_MAX)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        for (k = 0; !ok && k < sizeof(extra) - 1; k++)
            ok = c == (unsigned char)extra[k];
        if (!ok)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    apr_pool_t *p = fuzz_pool();
    apr_array_header_t *list = apr_array_make(p, 4, sizeof(sse_bytes));
    const uint8_t *s, *end;
    const char *why;
    uint8_t sep;
    int all_ok = 1;

    if (n < 1)
        return 0;
    sep = d[0];
    for (s = d + 1, end = d + n; ; ) {
        const uint8_t *e = memchr(s, sep, (size_t)(end - s));
        size_t len = (size_t)((e ? e : end) - s);
        sse_bytes *b = apr_array_push(list);
        int ok = ref_name_ok((const char *)s, len);
        const char *w = sse_wire_check_channel((const char *)s, len);

        b->s = (const char *)s;
        b->len = len;
        FUZZ_CHECK((w == NULL) == ok);
        FUZZ_CHECK(w == NULL || strlen(w) > 0);
        all_ok = all_ok && ok;
        if (!e)
            break;
        s = e + 1;
    }
    /* The list as given, and with no name at all. */
    why = sse_body_check_channels(p, list);
    FUZZ_CHECK((why == NULL) == (all_ok && list->nelts <= SSE_BODY_MAX_CHANNELS));
    if (why) {
        FUZZ_CHECK(strlen(why) > 0);
        if (list->nelts <= SSE_BODY_MAX_CHANNELS)
            FUZZ_CHECK(strstr(why, "invalid channel name '") == why);
    }
    list->nelts = 0;
    why = sse_body_check_channels(p, list);
    FUZZ_CHECK(why != NULL && strlen(why) > 0);
    return 0;
}
