/* sse_status.c -- the sse-status handler and the mod_status section (see
 * sse_status.h).
 *
 * Every answer first gathers one snapshot (sse_store_stats: the shared
 * counters and gauges summed over the process slots, the ring's figures,
 * the busiest channels) and then prints it: the two printed forms are in
 * sse_metrics.c, so that they cannot disagree. Nothing here keeps state.
 *
 * Negotiation: ?format=json|prometheus decides; without it, an Accept
 * header that gives text/plain a higher quality than application/json gets
 * the Prometheus form (Prometheus itself asks for text/plain, with
 * OpenMetrics first, which is not offered); anything else gets JSON. A
 * format that is neither is a 400 that says which ones exist.
 */
#include "sse_status.h"
#include "sse_body.h"
#include "sse_http.h"
#include "sse_store.h"

#include <stdlib.h>
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <http_log.h>
#include <http_protocol.h>
#include <mod_status.h>

APLOG_USE_MODULE(sse);

#define STATUS_ALLOW     "GET, HEAD"
#define PROMETHEUS_TYPE  "text/plain; version=0.0.4; charset=utf-8"

/* The quality an Accept header gives type ("text/plain"): the q of its
 * most specific matching range (type, then "text/ *", then "* / *"), 0 when
 * none matches. An absent header accepts everything equally. */
static double accept_quality(apr_pool_t *p, const char *accept, const char *type)
{
    char *copy = apr_pstrdup(p, accept), *range, *last;
    const char *slash = strchr(type, '/');
    apr_size_t major = slash ? (apr_size_t)(slash - type) : strlen(type);
    double best = 0;
    int best_rank = -1;

    for (range = apr_strtok(copy, ",", &last); range; range = apr_strtok(NULL, ",", &last)) {
        char *params = strchr(range, ';'), *end;
        double q = 1;
        int rank;

        if (params)
            *params++ = '\0';
        while (apr_isspace(*range))
            range++;
        for (end = range + strlen(range); end > range && apr_isspace(end[-1]); end--)
            ;
        *end = '\0';
        if (strcasecmp(range, type) == 0)
            rank = 2;
        else if (strncasecmp(range, type, major + 1) == 0 && strcmp(range + major + 1, "*") == 0)
            rank = 1;
        else if (strcmp(range, "*/*") == 0)
            rank = 0;
        else
            continue;
        while (params && *params) {
            char *next = strchr(params, ';');
            if (next)
                *next++ = '\0';
            while (apr_isspace(*params))
                params++;
            if ((params[0] == 'q' || params[0] == 'Q') && params[1] == '=')
                q = atof(params + 2);
            params = next;
        }
        if (rank > best_rank) {
            best_rank = rank;
            best = q;
        }
    }
    return best;
}

/* 1: Prometheus, 0: JSON, -1: an unknown format (*why says which). */
static int wants_prometheus(request_rec *r, const char **why)
{
    apr_array_header_t *pairs, *format;
    const char *accept;

    if ((*why = sse_http_query(r, &pairs)))
        return -1;
    format = sse_body_values(r->pool, pairs, "format");
    if (format->nelts) {
        const sse_bytes *f = &((const sse_bytes *)format->elts)[format->nelts - 1];
        if (f->len == 4 && memcmp(f->s, "json", 4) == 0)
            return 0;
        if (f->len == 10 && memcmp(f->s, "prometheus", 10) == 0)
            return 1;
        *why = apr_psprintf(r->pool, "unknown format '%.*s': use format=json or "
                            "format=prometheus", (int)f->len, f->s);
        return -1;
    }
    apr_table_mergen(r->headers_out, "Vary", "Accept");
    accept = apr_table_get(r->headers_in, "Accept");
    if (!accept)
        return 0;
    return accept_quality(r->pool, accept, "text/plain")
           > accept_quality(r->pool, accept, "application/json");
}

int sse_status_handler(request_rec *r)
{
    sse_metrics_snapshot *snap;
    const char *why;
    char *text;
    int prometheus, status;

    if (r->method_number != M_GET)
        return sse_http_not_allowed(r, STATUS_ALLOW, "a status location");
    if ((prometheus = wants_prometheus(r, &why)) < 0)
        return sse_http_error(r, HTTP_BAD_REQUEST, why);
    snap = apr_palloc(r->pool, sizeof(*snap));
    if (sse_store_stats(sse_store_get(), snap) != OK)
        return sse_http_error(r, HTTP_SERVICE_UNAVAILABLE,
                              "the event ring is not available in this process");
    text = prometheus ? sse_metrics_prometheus(snap) : sse_metrics_json(snap);
    if (!text)
        return sse_http_error(r, HTTP_INTERNAL_SERVER_ERROR, "out of memory printing the figures");
    if (prometheus) {
        apr_size_t len = strlen(text);

        r->status = HTTP_OK;
        ap_set_content_type(r, PROMETHEUS_TYPE);
        apr_table_setn(r->headers_out, "Cache-Control", "no-store");
        ap_set_content_length(r, (apr_off_t)len);
        if (!r->header_only)
            ap_rwrite(text, (int)len, r);
        status = OK;
    }
    else {
        status = sse_http_json(r, HTTP_OK, text);
    }
    free(text);
    return status;
}

/* ---- mod_status ---- */

typedef struct {
    const char  *key;           /* as ?auto prints it */
    const char  *label;         /* as the HTML table does */
} headline;

static int status_hook(request_rec *r, int flags)
{
    static const headline lines[] = {
        { "SSESubscribers", "open streams" },
        { "SSESlowSubscribers", "streams behind on writing" },
        { "SSEMaxSubscribers", "SSEMaxSubscribers (0: no limit)" },
        { "SSEChannels", "channels with subscribers or retained events" },
        { "SSEStreamsOpened", "streams opened" },
        { "SSEOverloadRefusals", "streams refused (overload)" },
        { "SSEEventsPublished", "events published" },
        { "SSEPublishRejected", "publish attempts refused" },
        { "SSEEventsDelivered", "events delivered" },
        { "SSEBytesSent", "bytes sent on streams" },
        { "SSERingSizeBytes", "event ring size (bytes)" },
        { "SSERingUsedBytes", "event ring used (bytes)" },
        { "SSERingOldestEventAge", "oldest retained record (seconds)" },
    };
    sse_metrics_snapshot *s = apr_palloc(r->pool, sizeof(*s));
    apr_uint64_t rejected = 0, v[sizeof(lines) / sizeof(lines[0]) - 1];
    apr_size_t i;
    int c;

    if (sse_store_stats(sse_store_get(), s) != OK)
        return OK;
    for (c = SSE_C_REJ_FIRST; c <= SSE_C_REJ_LAST; c++)
        rejected += s->counter[c];
    v[0] = (apr_uint64_t)s->gauge[SSE_G_STREAMS];
    v[1] = (apr_uint64_t)s->gauge[SSE_G_SLOW];
    v[2] = s->max_subscribers;
    v[3] = s->channels;
    v[4] = s->counter[SSE_C_STREAMS_OPENED];
    v[5] = s->counter[SSE_C_OVERLOAD_REFUSALS];
    v[6] = s->counter[SSE_C_EVENTS_PUBLISHED];
    v[7] = rejected;
    v[8] = s->counter[SSE_C_EVENTS_DELIVERED];
    v[9] = s->counter[SSE_C_BYTES_SENT];
    v[10] = s->ring_size;
    v[11] = s->ring_used;
    if (flags & AP_STATUS_SHORT) {
        for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
            ap_rprintf(r, "%s: %" APR_UINT64_T_FMT "\n", lines[i].key, v[i]);
        ap_rprintf(r, "%s: %.3f\n", lines[i].key, s->ring_oldest_age);
        return OK;
    }
    ap_rputs("<hr />\n<h2>mod_sse</h2>\n", r);
    if (flags & AP_STATUS_NOTABLE) {
        ap_rputs("<dl>\n", r);
        for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
            ap_rprintf(r, "<dt>%s: %" APR_UINT64_T_FMT "</dt>\n", lines[i].label, v[i]);
        ap_rprintf(r, "<dt>%s: %.3f</dt>\n</dl>\n", lines[i].label, s->ring_oldest_age);
        return OK;
    }
    ap_rputs("<table border=\"0\">\n", r);
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        ap_rprintf(r, "<tr><th align=\"left\">%s</th><td id=\"%s\">%" APR_UINT64_T_FMT
                   "</td></tr>\n", lines[i].label, lines[i].key, v[i]);
    ap_rprintf(r, "<tr><th align=\"left\">%s</th><td id=\"%s\">%.3f</td></tr>\n",
               lines[i].label, lines[i].key, s->ring_oldest_age);
    ap_rputs("</table>\n", r);
    return OK;
}

void sse_status_register(void)
{
    APR_OPTIONAL_HOOK(ap, status_hook, status_hook, NULL, NULL, APR_HOOK_MIDDLE);
}
