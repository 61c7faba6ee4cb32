/* sse_num.c -- sizes, counts and times of directives (see sse_num.h for the
 * forms).
 *
 * Digits are read here, not with strtoll(): no locale, no errno, no
 * leading space or sign to refuse afterwards. Overflow is checked before
 * every multiplication, so any string is safe to hand in.
 */
#include "sse_num.h"

#include <stdio.h>

/* Leading decimal digits of s into *n; returns the first byte after them,
 * or NULL when there are none or they overflow int64_t. */
static const char *digits(const char *s, int64_t *n)
{
    const char *p = s;
    int64_t v = 0;

    for (; *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    if (p == s)
        return NULL;
    *n = v;
    return p;
}

static sse_num_result bounded(int64_t n, int64_t min, int64_t max, int64_t *out)
{
    if (n < min)
        return SSE_NUM_LOW;
    if (n > max)
        return SSE_NUM_HIGH;
    *out = n;
    return SSE_NUM_OK;
}

sse_num_result sse_num_size(const char *s, int64_t min, int64_t max, int64_t *out)
{
    const char *end;
    int64_t n, mult = 1;

    if (!(end = digits(s, &n)))
        return SSE_NUM_FORM;
    switch (*end) {
    case 'K': case 'k': mult = INT64_C(1) << 10; end++; break;
    case 'M': case 'm': mult = INT64_C(1) << 20; end++; break;
    case 'G': case 'g': mult = INT64_C(1) << 30; end++; break;
    case '\0': break;
    default: return SSE_NUM_FORM;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || n > INT64_MAX / mult || n == 0)
        return SSE_NUM_FORM;
    return bounded(n * mult, min, max, out);
}

sse_num_result sse_num_count(const char *s, int64_t min, int64_t max, int64_t *out)
{
    const char *end;
    int64_t n;

    if (!(end = digits(s, &n)) || *end)
        return SSE_NUM_FORM;
    return bounded(n, min, max, out);
}

sse_num_result sse_num_time(const char *s, int64_t min, int64_t max, int64_t *out)
{
    const char *unit;
    int64_t n, mult;

    if (!(unit = digits(s, &n)))
        return SSE_NUM_FORM;
    if (!*unit)
        unit = "ms";
    /* httpd's rule (ap_timeout_parameter_parse): a unit is known by its
     * first letters, whatever follows them. */
    switch (unit[0]) {
    case 's': mult = INT64_C(1000000); break;
    case 'h': mult = INT64_C(3600000000); break;
    case 'm':
        if (unit[1] == 's')
            mult = INT64_C(1000);
        else if (unit[1] == 'i')
            mult = INT64_C(60000000);
        else
            return SSE_NUM_FORM;
        break;
    default:
        return SSE_NUM_FORM;
    }
    if (n > INT64_MAX / mult)
        return SSE_NUM_FORM;
    return bounded(n * mult, min, max, out);
}

size_t sse_num_size_text(int64_t n, char buf[SSE_NUM_TEXT_SIZE])
{
    /* Only the units sse_num_size() reads: 2^40 is "1024G", not "1T". */
    static const char unit[] = "KMG";
    int u = -1;

    while (n && n % 1024 == 0 && u < (int)sizeof(unit) - 2) {
        n /= 1024;
        u++;
    }
    return (size_t)(u < 0 ? snprintf(buf, SSE_NUM_TEXT_SIZE, "%lld", (long long)n)
                          : snprintf(buf, SSE_NUM_TEXT_SIZE, "%lld%c", (long long)n, unit[u]));
}
