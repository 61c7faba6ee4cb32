/* sse_body.c -- parsing publish bodies (form, JSON, raw) into events.
 *
 * Bodies are at most SSEMaxMessageSize and held whole in the request pool,
 * so parsing is simple and copies into that pool. Every problem is reported
 * as a message that names the field, because the publisher reads it.
 */
#include "sse_body.h"

#include <string.h>
#include <jansson.h>
#include <apr_strings.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes one urlencoded component ('+' is a space, %XX a byte). */
static const char *url_decode(apr_pool_t *p, const char *s, apr_size_t len, sse_bytes *out)
{
    char *d = apr_palloc(p, len + 1);
    apr_size_t i, n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '+') {
            d[n++] = ' ';
        }
        else if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return "malformed %-escape in urlencoded data";
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return "malformed %-escape in urlencoded data";
            d[n++] = (char)(hi * 16 + lo);
            i += 2;
        }
        else {
            d[n++] = s[i];
        }
    }
    d[n] = '\0';
    out->s = d;
    out->len = n;
    return NULL;
}

const char *sse_body_parse_pairs(apr_pool_t *p, const char *s, apr_size_t len,
                                 apr_array_header_t **out)
{
    apr_array_header_t *pairs = apr_array_make(p, 8, sizeof(sse_bytes));
    const char *end = s + len;

    while (s < end) {
        const char *amp = memchr(s, '&', (apr_size_t)(end - s)), *eq;
        const char *stop = amp ? amp : end, *why;
        sse_bytes *k, *v;

        if (stop > s) {
            eq = memchr(s, '=', (apr_size_t)(stop - s));
            k = apr_array_push(pairs);
            v = apr_array_push(pairs);
            if ((why = url_decode(p, s, (apr_size_t)((eq ? eq : stop) - s), k)))
                return why;
            if (eq) {
                if ((why = url_decode(p, eq + 1, (apr_size_t)(stop - eq - 1), v)))
                    return why;
            }
            else {
                v->s = "";
                v->len = 0;
            }
        }
        s = amp ? amp + 1 : end;
    }
    *out = pairs;
    return NULL;
}

static int key_is(const sse_bytes *k, const char *name)
{
    return k->len == strlen(name) && memcmp(k->s, name, k->len) == 0;
}

apr_array_header_t *sse_body_values(apr_pool_t *p, const apr_array_header_t *pairs,
                                    const char *key)
{
    apr_array_header_t *vals = apr_array_make(p, 2, sizeof(sse_bytes));
    const sse_bytes *kv = (const sse_bytes *)pairs->elts;
    int i;

    for (i = 0; i + 1 < pairs->nelts; i += 2) {
        if (key_is(&kv[i], key))
            *(sse_bytes *)apr_array_push(vals) = kv[i + 1];
    }
    return vals;
}

static sse_body_event *new_event(apr_pool_t *p, apr_array_header_t *events)
{
    sse_body_event *ev = apr_array_push(events);

    memset(ev, 0, sizeof(*ev));
    ev->channels = apr_array_make(p, 2, sizeof(sse_bytes));
    ev->retry = -1;
    ev->data.s = "";
    return ev;
}

static const char *set_retry(sse_body_event *ev, const char *s, apr_size_t len)
{
    uint32_t v;
    const char *why = sse_wire_parse_retry(s, len, &v);

    if (!why)
        ev->retry = (long)v;
    return why;
}

const char *sse_body_parse_form(apr_pool_t *p, const char *body, apr_size_t len,
                                apr_array_header_t **events)
{
    static const struct { const char *key, *alias; } single[] = {
        { "data", NULL }, { "event", "type" }, { "id", NULL }, { "retry", NULL },
    };
    apr_array_header_t *pairs;
    sse_body_event *ev;
    sse_bytes *kv;
    const char *why;
    int i;
    unsigned f;

    if ((why = sse_body_parse_pairs(p, body, len, &pairs)))
        return why;
    *events = apr_array_make(p, 1, sizeof(sse_body_event));
    ev = new_event(p, *events);
    kv = (sse_bytes *)pairs->elts;
    for (i = 0; i + 1 < pairs->nelts; i += 2) {
        if (key_is(&kv[i], "channel") || key_is(&kv[i], "topic"))
            *(sse_bytes *)apr_array_push(ev->channels) = kv[i + 1];
    }
    for (f = 0; f < sizeof(single) / sizeof(single[0]); f++) {
        apr_array_header_t *v = sse_body_values(p, pairs, single[f].key);
        sse_bytes *val;

        if (single[f].alias)
            apr_array_cat(v, sse_body_values(p, pairs, single[f].alias));
        if (v->nelts == 0)
            continue;
        if (v->nelts > 1)
            return apr_psprintf(p, "form field '%s' given more than once", single[f].key);
        val = (sse_bytes *)v->elts;
        switch (f) {
        case 0: ev->data = *val; break;
        case 1: ev->event = *val; break;
        case 2: ev->id = *val; break;
        case 3:
            if ((why = set_retry(ev, val->s, val->len)))
                return why;
            break;
        }
    }
    return NULL;
}

static const char *json_bytes(apr_pool_t *p, json_t *v, const char *field, sse_bytes *out)
{
    if (!json_is_string(v))
        return apr_psprintf(p, "JSON field '%s' must be a string", field);
    out->len = json_string_length(v);
    out->s = apr_pstrmemdup(p, json_string_value(v), out->len);
    return NULL;
}

static const char *json_event(apr_pool_t *p, json_t *obj, apr_array_header_t *events)
{
    sse_body_event *ev;
    json_t *v;
    const char *why;

    if (!json_is_object(obj))
        return "JSON body must be an object or an array of objects";
    ev = new_event(p, events);
    if ((v = json_object_get(obj, "channel"))) {
        if (json_is_array(v)) {
            size_t i;
            json_t *c;
            json_array_foreach(v, i, c) {
                if ((why = json_bytes(p, c, "channel", apr_array_push(ev->channels))))
                    return "JSON field 'channel' must be a string or an array of strings";
            }
        }
        else if ((why = json_bytes(p, v, "channel", apr_array_push(ev->channels)))) {
            return "JSON field 'channel' must be a string or an array of strings";
        }
    }
    if ((v = json_object_get(obj, "event")) && (why = json_bytes(p, v, "event", &ev->event)))
        return why;
    if ((v = json_object_get(obj, "id")) && (why = json_bytes(p, v, "id", &ev->id)))
        return why;
    if ((v = json_object_get(obj, "retry"))) {
        if (json_is_integer(v)) {
            json_int_t n = json_integer_value(v);
            if (n < 0 || n > (json_int_t)SSE_RETRY_MAX)
                return "JSON field 'retry' must be between 0 and " SSE_STR(SSE_RETRY_MAX);
            ev->retry = (long)n;
        }
        else if (json_is_string(v)) {
            if ((why = set_retry(ev, json_string_value(v), json_string_length(v))))
                return why;
        }
        else {
            return "JSON field 'retry' must be an integer (milliseconds)";
        }
    }
    if ((v = json_object_get(obj, "data"))) {
        if (json_is_string(v)) {
            json_bytes(p, v, "data", &ev->data);
        }
        else {
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!text)
                return "JSON field 'data' could not be encoded";
            ev->data.len = strlen(text);
            ev->data.s = apr_pstrmemdup(p, text, ev->data.len);
            free(text);
        }
    }
    return NULL;
}

const char *sse_body_parse_json(apr_pool_t *p, const char *body, apr_size_t len,
                                apr_array_header_t **events)
{
    json_error_t err;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    const char *why = NULL;

    if (!root)
        return apr_psprintf(p, "malformed JSON at line %d, column %d: %s",
                            err.line, err.column, err.text);
    *events = apr_array_make(p, 4, sizeof(sse_body_event));
    if (json_is_array(root)) {
        size_t i;
        json_t *item;
        if (json_array_size(root) == 0)
            why = "JSON array of events is empty";
        json_array_foreach(root, i, item) {
            if ((why = json_event(p, item, *events))) {
                why = apr_psprintf(p, "event %" APR_SIZE_T_FMT ": %s", i, why);
                break;
            }
        }
    }
    else {
        why = json_event(p, root, *events);
    }
    json_decref(root);
    return why;
}

const char *sse_body_raw(apr_pool_t *p, const char *body, apr_size_t len,
                         const char *event, const char *id, const char *retry,
                         apr_array_header_t **events)
{
    sse_body_event *ev;
    const char *why;

    *events = apr_array_make(p, 1, sizeof(sse_body_event));
    ev = new_event(p, *events);
    ev->data.s = body ? body : "";
    ev->data.len = len;
    if (event) {
        ev->event.s = event;
        ev->event.len = strlen(event);
    }
    if (id) {
        ev->id.s = id;
        ev->id.len = strlen(id);
    }
    if (retry && (why = set_retry(ev, retry, strlen(retry))))
        return why;
    return NULL;
}

const char *sse_body_check(const sse_body_event *ev)
{
    const char *why;

    if (ev->event.s && ev->event.len && (why = sse_wire_check_event(ev->event.s, ev->event.len)))
        return why;
    if (ev->id.s) {
        if (ev->id.len == 0)
            return "id is empty (leave it out to have the server assign one)";
        if ((why = sse_wire_check_id(ev->id.s, ev->id.len)))
            return why;
    }
    return NULL;
}

/* A name for an error message: as given when it is short and printable. */
#define PRINTABLE_MAX 64
static const char *printable(apr_pool_t *p, const sse_bytes *b)
{
    apr_size_t i;

    if (b->len > PRINTABLE_MAX)
        return apr_pstrcat(p, apr_pstrmemdup(p, b->s, PRINTABLE_MAX / 2), "...", NULL);
    for (i = 0; i < b->len; i++) {
        if ((unsigned char)b->s[i] < 0x20 || (unsigned char)b->s[i] > 0x7e)
            return "(unprintable)";
    }
    return apr_pstrmemdup(p, b->s, b->len);
}

const char *sse_body_check_channels(apr_pool_t *p, const apr_array_header_t *channels)
{
    const sse_bytes *c = (const sse_bytes *)channels->elts;
    const char *why;
    int i;

    if (channels->nelts == 0)
        return "no channel given (use the 'channel' parameter or the path after the location)";
    if (channels->nelts > SSE_BODY_MAX_CHANNELS)
        return "more than " SSE_STR(SSE_BODY_MAX_CHANNELS) " channels in one request";
    for (i = 0; i < channels->nelts; i++) {
        if ((why = sse_wire_check_channel(c[i].s, c[i].len)))
            return apr_psprintf(p, "invalid channel name '%s': %s", printable(p, &c[i]), why);
    }
    return NULL;
}
