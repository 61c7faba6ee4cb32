/* sse_parse.c -- a text/event-stream body parsed into events (see
 * sse_parse.h for the rules). Incremental: bytes may arrive in any pieces,
 * a CRLF split between two feeds included.
 */
#include "sse_parse.h"
#include "sse_buf.h"

#include <string.h>
#include <apr_strings.h>

#define QUOTED_MAX 32    /* bytes of a bad value quoted in a message */

struct sse_parse {
    apr_pool_t         *p;
    apr_array_header_t *events;
    const char         *error;

    /* Byte order mark: up to 3 first bytes held until we know. */
    int                 bom_done;
    unsigned char       head[3];
    apr_size_t          head_len;

    int                 after_cr;   /* the last byte fed was CR */
    sse_buf             line;       /* a line not yet ended (pool buffers: no
                                     * limit, and they grow as palloc does) */
    sse_buf             data;       /* data lines of the event, each + LF */
    int                 has_data;
    sse_bytes           event;      /* s == NULL: none */
    sse_bytes           id;         /* s == NULL: none */
    long                retry;      /* < 0: none */
};

sse_parse *sse_parse_create(apr_pool_t *p)
{
    sse_parse *ps = apr_pcalloc(p, sizeof(*ps));

    ps->p = p;
    ps->events = apr_array_make(p, 4, sizeof(sse_body_event));
    sse_buf_init(&ps->line, p, 0);
    sse_buf_init(&ps->data, p, 0);
    ps->retry = -1;
    return ps;
}

static void reset_event(sse_parse *ps)
{
    ps->data.len = 0;
    ps->has_data = 0;
    ps->event.s = NULL;
    ps->event.len = 0;
    ps->id.s = NULL;
    ps->id.len = 0;
    ps->retry = -1;
}

static void dispatch(sse_parse *ps)
{
    sse_body_event *ev;

    if (ps->has_data) {
        ev = apr_array_push(ps->events);
        memset(ev, 0, sizeof(*ev));
        ev->channels = apr_array_make(ps->p, 1, sizeof(sse_bytes));
        ev->event = ps->event;
        ev->id = ps->id;
        ev->retry = ps->retry;
        /* Without the LF that ends the last data line. */
        ev->data.len = ps->data.len - 1;
        ev->data.s = apr_pstrmemdup(ps->p, ps->data.s, ev->data.len);
    }
    reset_event(ps);
}

static int field_is(const char *name, apr_size_t n, const char *want)
{
    return strlen(want) == n && memcmp(name, want, n) == 0;
}

static void set_field(apr_pool_t *p, sse_bytes *f, const char *v, apr_size_t n)
{
    if (n == 0) {
        f->s = NULL;
        f->len = 0;
        return;
    }
    f->s = apr_pstrmemdup(p, v, n);
    f->len = n;
}

static void process_line(sse_parse *ps, const char *s, apr_size_t n)
{
    const char *colon, *v;
    apr_size_t name_len, vlen, i;

    if (n == 0) {
        dispatch(ps);
        return;
    }
    if (s[0] == ':')
        return;
    colon = memchr(s, ':', n);
    if (colon) {
        name_len = (apr_size_t)(colon - s);
        v = colon + 1;
        vlen = n - name_len - 1;
        if (vlen && *v == ' ') {
            v++;
            vlen--;
        }
    }
    else {
        name_len = n;
        v = s + n;
        vlen = 0;
    }
    if (field_is(s, name_len, "data")) {
        sse_buf_append(&ps->data, v, vlen);
        sse_buf_append(&ps->data, "\n", 1);
        ps->has_data = 1;
    }
    else if (field_is(s, name_len, "event")) {
        set_field(ps->p, &ps->event, v, vlen);
    }
    else if (field_is(s, name_len, "id")) {
        if (!memchr(v, '\0', vlen))
            set_field(ps->p, &ps->id, v, vlen);
    }
    else if (field_is(s, name_len, "retry")) {
        unsigned long long r = 0;

        if (vlen == 0)
            return;
        for (i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9')
                return;     /* not all digits: ignored, as a client does */
        }
        for (i = 0; i < vlen; i++) {
            r = r * 10 + (unsigned long long)(v[i] - '0');
            if (r > SSE_RETRY_MAX) {
                ps->error = apr_psprintf(ps->p, "retry: %.*s is over %d",
                                         (int)(vlen > QUOTED_MAX ? QUOTED_MAX : vlen),
                                         v, SSE_RETRY_MAX);
                return;
            }
        }
        ps->retry = (long)r;
    }
    /* Any other field is ignored. */
}

static void process_bytes(sse_parse *ps, const char *buf, apr_size_t len)
{
    apr_size_t i = 0, j;

    if (ps->after_cr && len) {
        if (buf[0] == '\n')
            i = 1;
        ps->after_cr = 0;
    }
    while (i < len && !ps->error) {
        for (j = i; j < len && buf[j] != '\n' && buf[j] != '\r'; j++)
            ;
        if (j == len) {
            sse_buf_append(&ps->line, buf + i, len - i);
            return;
        }
        if (ps->line.len) {
            sse_buf_append(&ps->line, buf + i, j - i);
            process_line(ps, ps->line.s, ps->line.len);
            ps->line.len = 0;
        }
        else {
            process_line(ps, buf + i, j - i);
        }
        if (buf[j] == '\r') {
            if (j + 1 == len)
                ps->after_cr = 1;
            else if (buf[j + 1] == '\n')
                j++;
        }
        i = j + 1;
    }
}

static const unsigned char BOM[3] = { 0xEF, 0xBB, 0xBF };

const char *sse_parse_feed(sse_parse *ps, const char *buf, apr_size_t len)
{
    if (ps->error)
        return ps->error;
    while (!ps->bom_done && len) {
        ps->head[ps->head_len++] = (unsigned char)*buf++;
        len--;
        if (ps->head[ps->head_len - 1] != BOM[ps->head_len - 1]) {
            /* Not a BOM: what was held is ordinary text. */
            ps->bom_done = 1;
            process_bytes(ps, (const char *)ps->head, ps->head_len);
        }
        else if (ps->head_len == sizeof(BOM)) {
            ps->bom_done = 1;
        }
    }
    if (len && !ps->error)
        process_bytes(ps, buf, len);
    return ps->error;
}

/* Would this unended line have given the event data? */
static int is_data_line(const char *s, apr_size_t n)
{
    return n >= 4 && memcmp(s, "data", 4) == 0 && (n == 4 || s[4] == ':');
}

const char *sse_parse_finish(sse_parse *ps, apr_array_header_t **events, int *dropped)
{
    if (dropped)
        *dropped = ps->has_data || is_data_line(ps->line.s, ps->line.len);
    /* Whatever has not been ended by a blank line is discarded. */
    ps->line.len = 0;
    reset_event(ps);
    *events = ps->events;
    return ps->error;
}

const char *sse_parse_stream(apr_pool_t *p, const char *buf, apr_size_t len,
                             apr_array_header_t **events, int *dropped)
{
    sse_parse *ps = sse_parse_create(p);

    sse_parse_feed(ps, buf, len);
    return sse_parse_finish(ps, events, dropped);
}
