/* sse_wire.c -- text/event-stream framing and field validation.
 *
 * The rules come from the WHATWG parser, read from the client's side:
 *  - a client splits lines on CRLF, LF and lone CR, so data is cut on all
 *    three and each piece becomes its own "data: " line; we always write the
 *    space, because the parser eats exactly one and a value that starts with
 *    a space would otherwise lose it;
 *  - "event" and "id" are single-line fields: CR, LF (field injection) and
 *    NUL (a client ignores such an id and resumes from a stale one) are
 *    refused, never escaped;
 *  - "retry" counts only when it is all ASCII digits;
 *  - we write LF only; mixing line endings has broken real clients.
 */
#include "sse_wire.h"
#include "sse_assert.h"

#include <stdio.h>
#include <string.h>

static int is_channel_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("-._~:/@!$&'()*+,;=", c) != NULL;
}

const char *sse_wire_check_channel(const char *s, size_t len)
{
    size_t i;

    if (len == 0)
        return "empty channel name";
    if (len > SSE_CHANNEL_MAX)
        return "channel name longer than " SSE_STR(SSE_CHANNEL_MAX) " bytes";
    for (i = 0; i < len; i++) {
        if (!is_channel_char((unsigned char)s[i]))
            return "channel name may only hold letters, digits and -._~:/@!$&'()*+,;=";
    }
    return NULL;
}

const char *sse_wire_check_hub_channel(const char *s, size_t len)
{
    if (len < 2 || s[0] != SSE_WIRE_HUB_MARK)
        return "a hub's channel is '#' and a channel name";
    return sse_wire_check_channel(s + 1, len - 1) ? "a hub's channel is '#' and a channel name"
                                                  : NULL;
}

const char *sse_wire_check_meta(const char *s, size_t len)
{
    size_t i;
    int start = 1;

    if (len == 0)
        return "metadata is empty";
    for (i = 0; i < len; i++) {
        if (start && s[i] != ':')
            return "metadata lines must be comments (begin with ':')";
        if (s[i] == '\r' || s[i] == '\0')
            return "metadata contains a CR or a NUL";
        start = s[i] == '\n';
    }
    return start ? NULL : "metadata must end with a line feed";
}

size_t sse_wire_meta_len(const char *frame, size_t len)
{
    size_t n = 0;

    while (n < len && frame[n] == ':') {
        const char *lf = memchr(frame + n, '\n', len - n);
        if (!lf)
            break;
        n = (size_t)(lf - frame) + 1;
    }
    return n;
}

/* Length of the UTF-8 sequence at s (at most len bytes), 0 if invalid:
 * clients decode the stream as UTF-8, so an id that is not would come
 * back in Last-Event-ID altered and never match again. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    size_t n, i;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len < n)
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))
        || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

enum { FIELD_OK, FIELD_LONG, FIELD_BREAK, FIELD_NUL, FIELD_UTF8 };

static int check_line_field(const char *s, size_t len)
{
    size_t i, n;

    if (len > SSE_FIELD_MAX)
        return FIELD_LONG;
    for (i = 0; i < len; i += n) {
        if (s[i] == '\r' || s[i] == '\n')
            return FIELD_BREAK;
        if (s[i] == '\0')
            return FIELD_NUL;
        if (!(n = utf8_seq((const unsigned char *)s + i, len - i)))
            return FIELD_UTF8;
    }
    return FIELD_OK;
}

const char *sse_wire_check_event(const char *s, size_t len)
{
    static const char *const why[] = {
        NULL, "event type longer than " SSE_STR(SSE_FIELD_MAX) " bytes", "event type contains a line break",
        "event type contains a NUL byte", "event type is not valid UTF-8",
    };
    int problem = check_line_field(s, len);

    if (problem != FIELD_OK)
        return why[problem];
    if (len >= 4 && memcmp(s, "sse-", 4) == 0)
        return "event types beginning with 'sse-' are reserved";
    return NULL;
}

/* What httpd's header parser strips around a value. */
static int is_header_space(char c)
{
    return c == ' ' || c == '\t';
}

const char *sse_wire_check_id(const char *s, size_t len)
{
    static const char *const why[] = {
        NULL, "id longer than " SSE_STR(SSE_FIELD_MAX) " bytes", "id contains a line break",
        "id contains a NUL byte", "id is not valid UTF-8",
    };
    int problem = check_line_field(s, len);
    size_t i;

    if (problem != FIELD_OK)
        return why[problem];
    /* httpd strips white space around header values (RFC 9110): such an id
     * would come back in Last-Event-ID other than it went out, and could
     * never be resumed from. */
    if (len && (is_header_space(s[0]) || is_header_space(s[len - 1])))
        return "id begins or ends with white space, which httpd strips from the "
               "Last-Event-ID header: a client could never resume from it";
    /* httpd answers 400 to a header value with a control character other
     * than tab: the client's reconnection would fail, and EventSource then
     * gives up for good. */
    for (i = 0; i < len; i++) {
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return "id contains a control character, which a client cannot send back "
                   "in the Last-Event-ID header";
    }
    if (sse_wire_is_server_form(s, len))
        return "ids of the form <digits>-<digits> are reserved for server-assigned ids";
    return NULL;
}

const char *sse_wire_parse_retry(const char *s, size_t len, uint32_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (len == 0)
        return "retry is empty";
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return "retry must be all digits (milliseconds)";
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > SSE_RETRY_MAX)
            return "retry is larger than " SSE_STR(SSE_RETRY_MAX);
    }
    *out = (uint32_t)v;
    return NULL;
}

/* Parses leading digits; returns how many, 0 on overflow past max. */
static size_t parse_digits(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return i;
}

int sse_wire_is_server_form(const char *s, size_t len)
{
    size_t i = 0, a, b;

    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    a = i;
    if (a == 0 || i == len || s[i] != '-')
        return 0;
    i++;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    b = i - a - 1;
    return b > 0 && i == len;
}

int sse_wire_parse_server_id(const char *s, size_t len, uint64_t *stamp)
{
    uint64_t ms, seq;
    size_t n, m;

    if (!sse_wire_is_server_form(s, len))
        return 0;
    n = parse_digits(s, len, UINT64_MAX >> SSE_STAMP_SEQ_BITS, &ms);
    if (n == 0 || s[n] != '-')
        return 0;
    m = parse_digits(s + n + 1, len - n - 1, SSE_STAMP_SEQ_MASK, &seq);
    if (m == 0 || n + 1 + m != len)
        return 0;
    *stamp = SSE_STAMP(ms, seq);
    return 1;
}

SSE_STATIC_ASSERT(SSE_ID_MAXLEN < SSE_ID_BUFSIZE, "a server id fits its buffer");
SSE_STATIC_ASSERT((UINT64_MAX >> SSE_STAMP_SEQ_BITS) == UINT64_C(4398046511103)
                  && SSE_STAMP_SEQ_MASK == 4194303, "SSE_ID_MAXLEN counts 13 + 1 + 7");

size_t sse_wire_format_id(uint64_t stamp, char buf[SSE_ID_BUFSIZE])
{
    return (size_t)snprintf(buf, SSE_ID_BUFSIZE, "%llu-%llu",
                            (unsigned long long)SSE_STAMP_MS(stamp),
                            (unsigned long long)SSE_STAMP_SEQ(stamp));
}

uint64_t sse_wire_expiry_floor(uint64_t now_ms, uint64_t ttl_ms)
{
    if (ttl_ms == 0 || ttl_ms >= now_ms)
        return 0;
    return SSE_STAMP(now_ms - ttl_ms, 0);
}

static size_t retry_digits(long retry, char buf[16])
{
    return (size_t)snprintf(buf, 16, "%ld", retry);
}

size_t sse_wire_frame_size(const sse_wire_event *ev)
{
    size_t size = 0, lines = 1, breaks = 0, i;
    char tmp[16];

    size += ev->meta_len;                               /* comment lines, as they are */
    if (ev->id_len)
        size += 4 + ev->id_len + 1;                     /* "id: " v "\n" */
    if (ev->event_len)
        size += 7 + ev->event_len + 1;                  /* "event: " v "\n" */
    if (ev->retry >= 0)
        size += 7 + retry_digits(ev->retry, tmp) + 1;   /* "retry: " v "\n" */
    for (i = 0; i < ev->data_len; i++) {
        char c = ev->data[i];
        if (c == '\r' || c == '\n') {
            lines++;
            breaks++;
            if (c == '\r' && i + 1 < ev->data_len && ev->data[i + 1] == '\n') {
                i++;
                breaks++;
            }
        }
    }
    size += lines * 7 + (ev->data_len - breaks);        /* "data: " line "\n" */
    return size + 1;                                    /* blank line */
}

static char *put(char *p, const char *s, size_t n)
{
    if (n)
        memcpy(p, s, n);
    return p + n;
}

size_t sse_wire_frame(char *out, const sse_wire_event *ev)
{
    char *p = out;
    const char *d = ev->data, *end = ev->data + ev->data_len, *line;
    char tmp[16];

    p = put(p, ev->meta, ev->meta_len);
    if (ev->id_len) {
        p = put(p, "id: ", 4);
        p = put(p, ev->id, ev->id_len);
        *p++ = '\n';
    }
    if (ev->event_len) {
        p = put(p, "event: ", 7);
        p = put(p, ev->event, ev->event_len);
        *p++ = '\n';
    }
    if (ev->retry >= 0) {
        p = put(p, "retry: ", 7);
        p = put(p, tmp, retry_digits(ev->retry, tmp));
        *p++ = '\n';
    }
    for (line = d;; ) {
        const char *q = line;
        while (q < end && *q != '\r' && *q != '\n')
            q++;
        p = put(p, "data: ", 6);
        p = put(p, line, (size_t)(q - line));
        *p++ = '\n';
        if (q == end)
            break;
        line = q + 1;
        if (*q == '\r' && line < end && *line == '\n')
            line++;
    }
    *p++ = '\n';
    return (size_t)(p - out);
}
