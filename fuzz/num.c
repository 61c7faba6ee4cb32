/* num.c -- fuzzes the numbers of directives (sse_num.c): sizes with
 * K/M/G[B] suffixes and whole numbers, each within bounds.
 *
 * Input: a flags byte (bit 2: a time; else bit 0: size, else count; bit 1:
 * bounds from the input, else those of a real directive), 16 bytes of
 * bounds (min, max),
 * then the value, up to its first NUL (httpd hands directives C strings).
 * Properties:
 *  - a value accepted is within [min, max] (and positive, for a size), and
 *    printed in plain digits parses back to the same number, as a count and
 *    as a size;
 *  - sse_num_size_text of an accepted size parses back to the same size;
 *  - the result is exactly what sse_config.c's code gave before it moved
 *    here (parse_size and the count branch of set_number, kept below with
 *    APR's calls spelled in libc: apr_strtoi64 is strtoll, apr_isdigit and
 *    apr_toupper the <ctype.h> functions): the same acceptance, value, and
 *    message chosen (not a size/number, below min, above max).
 * Times (SSEPublishKeepAliveWait; flags bit 2): sse_num_time against a
 * reference written here from httpd's ap_timeout_parameter_parse() as the
 * module called it before (digits first, default unit ms, a unit known by
 * its first letters: ms, s, mi, h), and an accepted time written back in
 * ms or s parses to the same microseconds.
 */
#include "fuzz.h"
#include "sse_num.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>

/* sse_config.c before sse_num.c, verbatim but for the APR names. */
static int old_parse_size(const char *arg, int64_t *out)
{
    char *end;
    int64_t n, mult = 1;

    if (!isdigit((unsigned char)*arg))
        return 0;
    n = strtoll(arg, &end, 10);
    switch (toupper((unsigned char)*end)) {
    case 'K': mult = 1024; end++; break;
    case 'M': mult = 1024 * 1024; end++; break;
    case 'G': mult = 1024 * 1024 * 1024; end++; break;
    case '\0': break;
    default: return 0;
    }
    if (toupper((unsigned char)*end) == 'B')
        end++;
    if (*end || errno == ERANGE || n > INT64_MAX / mult)
        return 0;
    *out = n * mult;
    return 1;
}

static sse_num_result old_size(const char *arg, int64_t min, int64_t max, int64_t *out)
{
    int64_t n;

    errno = 0;
    if (!old_parse_size(arg, &n) || n <= 0)
        return SSE_NUM_FORM;
    if (n < min)
        return SSE_NUM_LOW;
    if (n > max)
        return SSE_NUM_HIGH;
    *out = n;
    return SSE_NUM_OK;
}

/* The count branch only tells a refusal from an acceptance. */
static int old_count(const char *arg, int64_t min, int64_t max, int64_t *out)
{
    char *end = "";
    int64_t n;

    errno = 0;
    n = isdigit((unsigned char)*arg) ? strtoll(arg, &end, 10) : -1;
    if (n < 0 || *end || errno == ERANGE || n < min || n > max)
        return 0;
    *out = n;
    return 1;
}

/* What sse_config.c accepted as a time before sse_num_time: digits first,
 * then httpd's rule, then the bounds; microseconds. */
static int old_time(const char *arg, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    const char *unit;
    int64_t n, mult;

    if (!isdigit((unsigned char)*arg))
        return 0;
    errno = 0;
    n = strtoll(arg, &end, 10);
    if (errno)
        return 0;
    unit = *end ? end : "ms";
    if (unit[0] == 's')
        mult = 1000000;
    else if (unit[0] == 'h')
        mult = INT64_C(3600000000);
    else if (unit[0] == 'm' && unit[1] == 's')
        mult = 1000;
    else if (unit[0] == 'm' && unit[1] == 'i')
        mult = 60000000;
    else
        return 0;
    if (n > INT64_MAX / mult)       /* httpd would wrap; sse_num refuses */
        return 0;
    if (n * mult < min || n * mult > max)
        return 0;
    *out = n * mult;
    return 1;
}

/* Bounds of the real directives (sse_config.h; SSERetry's from sse_wire.h). */
static const int64_t sizes[][2] = {
    { 64 * 1024, INT64_C(1) << 40 },        /* SSEBufferSize */
    { 1, 64 * 1024 * 1024 },                /* SSEMaxMessageSize */
};
static const int64_t counts[][2] = {
    { 1, 1000000 },                         /* SSEMaxChannels */
    { 0, 86400 },                           /* SSEHeartbeat */
    { 0, SSE_RETRY_MAX },                   /* SSERetry */
    { 0, 100000 },                          /* SSEInitialReplay */
};

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    uint8_t head[17] = { 0 };
    int64_t min, max, got = -7, want = -7, again = -7;
    char *arg, text[SSE_NUM_TEXT_SIZE], digits[24];
    unsigned flags;
    sse_num_result r;

    memcpy(head, d, n < 17 ? n : 17);
    flags = head[0];
    if (flags & 2) {
        memcpy(&min, head + 1, 8);
        memcpy(&max, head + 9, 8);
    }
    else if (flags & 1) {
        min = sizes[head[1] % 2][0];
        max = sizes[head[1] % 2][1];
    }
    else {
        min = counts[head[1] % 4][0];
        max = counts[head[1] % 4][1];
    }
    arg = malloc(n > 17 ? n - 17 + 1 : 1);
    if (n > 17)
        memcpy(arg, d + 17, n - 17);
    arg[n > 17 ? n - 17 : 0] = '\0';

    if (flags & 4) {
        if (!(flags & 2)) {
            min = 0;
            max = 60000000;                 /* SSEPublishKeepAliveWait */
        }
        r = sse_num_time(arg, min, max, &got);
        FUZZ_CHECK((r == SSE_NUM_OK) == old_time(arg, min, max, &want));
        if (r == SSE_NUM_OK) {
            FUZZ_CHECK(got == want && got >= min && got <= max);
            if (got % 1000 == 0) {
                snprintf(digits, sizeof(digits), "%" PRId64 "ms", got / 1000);
                FUZZ_CHECK(sse_num_time(digits, min, max, &again) == SSE_NUM_OK && again == got);
            }
            if (got % 1000000 == 0) {
                snprintf(digits, sizeof(digits), "%" PRId64 "s", got / 1000000);
                FUZZ_CHECK(sse_num_time(digits, min, max, &again) == SSE_NUM_OK && again == got);
            }
        }
        else {
            FUZZ_CHECK(got == -7);
        }
    }
    else if (flags & 1) {
        r = sse_num_size(arg, min, max, &got);
        FUZZ_CHECK(r == old_size(arg, min, max, &want));
        if (r == SSE_NUM_OK) {
            FUZZ_CHECK(got == want && got > 0 && got >= min && got <= max);
            snprintf(digits, sizeof(digits), "%" PRId64, got);
            FUZZ_CHECK(sse_num_size(digits, min, max, &again) == SSE_NUM_OK && again == got);
            FUZZ_CHECK(sse_num_count(digits, min, max, &again) == SSE_NUM_OK && again == got);
            FUZZ_CHECK(sse_num_size_text(got, text) == strlen(text));
            FUZZ_CHECK(sse_num_size(text, min, max, &again) == SSE_NUM_OK && again == got);
        }
        else {
            FUZZ_CHECK(got == -7);
        }
    }
    else {
        r = sse_num_count(arg, min, max, &got);
        FUZZ_CHECK((r == SSE_NUM_OK) == old_count(arg, min, max, &want));
        if (r == SSE_NUM_OK) {
            FUZZ_CHECK(got == want && got >= min && got <= max);
            snprintf(digits, sizeof(digits), "%" PRId64, got);
            FUZZ_CHECK(sse_num_count(digits, min, max, &again) == SSE_NUM_OK && again == got);
        }
        else {
            FUZZ_CHECK(got == -7);
        }
    }
    free(arg);
    return 0;
}
