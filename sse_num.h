/* sse_num.h -- the numbers of directives, as an administrator writes them.
 *
 * Three forms, each checked against bounds the caller gives:
 *
 *   size   digits, then optionally a unit K, M or G (either case; powers of
 *          1024), and after a unit optionally B: "16M", "64kb", "65536".
 *          A bare B ("512B") is not a size. Zero is not a size either.
 *          (SSEBufferSize, SSEMaxMessageSize)
 *   count  a whole number: digits only, no sign, space or suffix.
 *          (SSEMaxChannels, SSEHeartbeat, SSERetry, SSEInitialReplay)
 *
 *   time   digits, then optionally a unit: ms (the default), s, mi
 *          (minutes) or h, known by their first letters as httpd's own
 *          timeouts are (ap_timeout_parameter_parse: "10msec" is 10 ms),
 *          in microseconds. (SSEPublishKeepAliveWait)
 *
 * A value whose digits overflow 64 bits is not a number, whatever the
 * bounds, nor is a time whose microseconds would.
 *
 * The caller writes the message, which names the directive: these say only
 * what is wrong, and sse_num_size_text() writes a bound back the way an
 * administrator would write it ("64K"), in a form sse_num_size() accepts.
 *
 * Pure C: no httpd, no APR. Tested by tests/unit, fuzzed by fuzz/num.c.
 */
#ifndef SSE_NUM_H
#define SSE_NUM_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    SSE_NUM_OK = 0,
    SSE_NUM_FORM,       /* not a number of this form */
    SSE_NUM_LOW,        /* a number, below min */
    SSE_NUM_HIGH        /* a number, above max */
} sse_num_result;

/* s is NUL-terminated; *out is set only on SSE_NUM_OK. */
sse_num_result sse_num_size(const char *s, int64_t min, int64_t max, int64_t *out);
sse_num_result sse_num_count(const char *s, int64_t min, int64_t max, int64_t *out);
sse_num_result sse_num_time(const char *s, int64_t min, int64_t max, int64_t *out);

/* n in the largest unit that divides it ("64K", "16M", "3000"); returns
 * the length written (NUL-terminated). */
#define SSE_NUM_TEXT_SIZE 24
size_t sse_num_size_text(int64_t n, char buf[SSE_NUM_TEXT_SIZE]);

#endif
