/* sse_mercure.c -- the sse-mercure handler: a Mercure hub (the protocol as
 * hub 0.x and symfony/mercure speak it) inside Apache. GET subscribes, POST
 * publishes, GET .../subscriptions[/{topic}[/{subscriber}]] is the
 * subscriptions API (SSEMercureSubscriptions on).
 *
 * Mapping onto the ring. Every update of a hub goes to ONE channel of the
 * ring, the hub's: '#mercure' followed by the hub's <Location> path (so that
 * two hubs of one server stay apart, and the same hub on several servers
 * sharing SSERedis is one). No name a client gives sse-stream or
 * sse-publish can begin with '#' (sse_wire_check_hub_channel), so topics
 * are not bound by channel-name rules, selectors and templates work on any
 * topic, and a plain stream never sees a hub's updates. An update's topics
 * and privacy travel with it as metadata (sse_wire.h): SSE comment lines at
 * the head of its frame,
 *
 *     :p\n                 the update is private
 *     :s\n                 a subscription update the hub made itself
 *     :t <topic>\n         one per topic, the canonical first
 *
 * framed once at publish time, kept by the ring, carried by the Redis store
 * (field m), so that cross-server delivery, replay and Redis history work
 * unchanged. Topics with CR, LF or NUL are refused (400) rather than
 * escaped: the filter then matches topics in place, in the frame, without
 * decoding or copying anything per delivery.
 *
 * Delivery. A hub's subscriber is an sse-stream stream on the hub's channel
 * (sse_stream_serve_hub) with a filter (sse_registry.h: accept, below) that
 * reads an update's metadata and says whether one of its topics matches one
 * of the subscriber's topic selectors and, for a private update, whether one
 * of its topics matches a selector of the token's mercure.subscribe. The
 * dispatcher applies it before a direct write or queueing, the stream's
 * thread on replay and catch-up; the metadata never reaches the client. The
 * plain sse-stream path pays one NULL pointer test.
 *
 * Reserved topics. A topic holding "/.well-known/mercure" is refused (403)
 * as the Go hub refuses it: subscription updates live there, and a
 * publisher posting one would forge presence.
 *
 * Ids. A publisher's id is kept as given (one beginning with '#' is
 * refused, as the protocol says; so are ids sse-publish refuses: line
 * breaks, "<digits>-<digits>", ...). Otherwise the update's id is the ring's
 * stamp, "<ms>-<seq>": resumption from it is exact (a stamp places the
 * client in time without a search) on this server and on every server of
 * the same Redis. The protocol asks for an IRI; "<ms>-<seq>" is a relative
 * reference, which every client treats as the opaque string it is.
 *
 * Tokens (sse_jwt.h): the Authorization header (Bearer) first, then the
 * authorization query parameter, then the cookie (SSEMercureCookieName),
 * the first present being the only one read. The cookie is never read for
 * a publish: a browser sends it with any cross-site form POST (CSRF), and
 * this hub has no list of publishing origins to check Origin against. A missing token is 401 with
 * WWW-Authenticate: Bearer realm="mercure" (no error code: RFC 6750, 3.1);
 * a bad one (signature, algorithm, expiry, form, size) 401 with
 * error="invalid_token" and the verifier's short reason. Publishing needs
 * a token whose mercure.publish selectors match every topic of the update
 * (403 naming the first that is not). SSEMercureSubscriberJWT unset: the
 * publisher's key verifies subscribers too (the Go hub's single jwt_key).
 * A subscriber's stream ends at its token's exp.
 *
 * Subscriptions (SSEMercureSubscriptions on). A subscriber gets an id,
 * urn:uuid:<random v4>, and for each of its selectors the hub publishes a
 * private update on /.well-known/mercure/subscriptions/{topic}/{subscriber}
 * (JSON-LD, type Subscription, active true, the token's mercure.payload)
 * before its stream starts, and the same with active false when it ends.
 * The API answers from those updates as the hub's channel retains them:
 * the newest state of each subscription, in every process and, through
 * Redis, on every server. So active subscriptions are known wherever the
 * API is asked, with two limits (README, "Mercure"): a subscription whose
 * arrival the ring (and Redis) no longer retain is not listed, and one of a
 * process that crashed stays listed (its departure was never published).
 */
#include "sse_mercure.h"
#include "sse_config.h"
#include "sse_http.h"
#include "sse_jwt.h"
#include "sse_log.h"
#include "sse_registry.h"
#include "sse_replay.h"
#include "sse_store.h"
#include "sse_stream.h"
#include "sse_topic.h"

#include <string.h>
#include <jansson.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>

APLOG_USE_MODULE(sse);

#define HUB_ALLOW      "GET, POST, OPTIONS"
#define HUB_PREFIX     "#mercure"
#define REALM          "mercure"
#define SUBS_PATH      "/.well-known/mercure/subscriptions"
#define JSONLD_CONTEXT "https://mercure.rocks/"

/* ---- the hub's channel and metadata ---- */

/* '#mercure' and the <Location> path (bytes a channel may not hold become
 * '_'; a regex section's pattern too), at most SSE_CHANNEL_MAX bytes. */
static apr_array_header_t *hub_channel(request_rec *r)
{
    core_dir_config *cd = ap_get_core_module_config(r->per_dir_config);
    apr_array_header_t *out = apr_array_make(r->pool, 1, sizeof(sse_bytes));
    const char *d = cd && cd->d ? cd->d : "";
    apr_size_t n = strlen(HUB_PREFIX), dl = strlen(d), i;
    sse_bytes *b = apr_array_push(out);
    char *name;

    if (dl > SSE_CHANNEL_MAX - n)
        dl = SSE_CHANNEL_MAX - n;
    name = apr_palloc(r->pool, n + dl + 1);
    memcpy(name, HUB_PREFIX, n);
    for (i = 0; i < dl; i++)
        name[n + i] = sse_wire_check_channel(d + i, 1) ? '_' : d[i];
    name[n + dl] = '\0';
    b->s = name;
    b->len = n + dl;
    return out;
}

/* The metadata of an update (topics already checked). */
static sse_bytes make_meta(apr_pool_t *p, const sse_bytes *topics, int n, int private,
                           int subscription)
{
    apr_size_t size = (private ? 3 : 0) + (subscription ? 3 : 0), at = 0;
    sse_bytes out;
    char *m;
    int i;

    for (i = 0; i < n; i++)
        size += 4 + topics[i].len;
    m = apr_palloc(p, size + 1);
    if (private) {
        memcpy(m + at, ":p\n", 3);
        at += 3;
    }
    if (subscription) {
        memcpy(m + at, ":s\n", 3);
        at += 3;
    }
    for (i = 0; i < n; i++) {
        memcpy(m + at, ":t ", 3);
        memcpy(m + at + 3, topics[i].s, topics[i].len);
        m[at + 3 + topics[i].len] = '\n';
        at += 4 + topics[i].len;
    }
    m[at] = '\0';
    out.s = m;
    out.len = at;
    return out;
}

/* ---- a subscriber's filter ---- */

typedef struct {
    sse_topic_selector **sel;       /* its topic parameters */
    int                  nsel;
    sse_topic_selector **auth;      /* its token's mercure.subscribe */
    int                  nauth;
} hub_sub;

static int any_match(sse_topic_selector *const *sel, int n, const char *t, apr_size_t len)
{
    int i;

    for (i = 0; i < n; i++) {
        if (sse_topic_match(sel[i], t, len))
            return 1;
    }
    return 0;
}

/* The dispatcher's (the stream's mutex held) and the stream's on replay:
 * reads the metadata in place, allocates nothing, takes no lock. */
static int hub_accept(const void *ctx, const char *frame, apr_size_t len)
{
    const hub_sub *s = ctx;
    const char *p = frame, *end = frame + len;
    int private = 0, wanted = 0, allowed = 0;

    while (p < end && *p == ':') {
        const char *lf = memchr(p, '\n', (apr_size_t)(end - p));
        if (!lf)
            break;
        if (lf - p == 2 && p[1] == 'p') {
            private = 1;
        }
        else if (lf - p >= 3 && p[1] == 't' && p[2] == ' ') {
            const char *t = p + 3;
            apr_size_t tl = (apr_size_t)(lf - t);
            if (!wanted)
                wanted = any_match(s->sel, s->nsel, t, tl);
            if (private && !allowed)
                allowed = any_match(s->auth, s->nauth, t, tl);
        }
        p = lf + 1;
    }
    return wanted && (!private || allowed);
}

/* ---- tokens ---- */

/* The value of cookie `name` in the request's Cookie headers, or NULL. */
static const char *cookie_value(request_rec *r, const char *name, apr_size_t *len)
{
    const apr_array_header_t *h = apr_table_elts(r->headers_in);
    const apr_table_entry_t *e = (const apr_table_entry_t *)h->elts;
    apr_size_t nl = strlen(name);
    int i;

    for (i = 0; i < h->nelts; i++) {
        const char *p;

        if (!e[i].key || strcasecmp(e[i].key, "Cookie") != 0 || !e[i].val)
            continue;
        for (p = e[i].val; *p;) {
            const char *semi = strchr(p, ';'), *stop = semi ? semi : p + strlen(p);

            while (p < stop && (*p == ' ' || *p == '\t'))
                p++;
            if ((apr_size_t)(stop - p) > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
                *len = (apr_size_t)(stop - p - nl - 1);
                while (*len && (p[nl + 1 + *len - 1] == ' ' || p[nl + 1 + *len - 1] == '\t'))
                    (*len)--;
                return p + nl + 1;
            }
            p = semi ? semi + 1 : stop;
        }
    }
    return NULL;
}

typedef enum { TOKEN_NONE, TOKEN_OK, TOKEN_BAD } token_state;

/* The protocol's order: the header, else the query parameter, else the
 * cookie. A header that is not "Bearer <token>" is a bad token, not none:
 * the client meant to authenticate. */
static token_state find_token(request_rec *r, const sse_dir_conf *dc,
                              const apr_array_header_t *pairs, const char **tok,
                              apr_size_t *len, const char **why)
{
    apr_size_t ignored;
    const char *h = apr_table_get(r->headers_in, "Authorization");
    apr_array_header_t *q;

    if (h) {
        if (strncasecmp(h, "Bearer ", 7) != 0) {
            *why = "the Authorization header is not a Bearer token";
            return TOKEN_BAD;
        }
        for (h += 7; *h == ' '; h++)
            ;
        *tok = h;
        *len = strlen(h);
        return TOKEN_OK;
    }
    q = pairs ? sse_body_values(r->pool, pairs, "authorization") : NULL;
    if (q && q->nelts) {
        *tok = ((sse_bytes *)q->elts)[0].s;
        *len = ((sse_bytes *)q->elts)[0].len;
        return TOKEN_OK;
    }
    /* Never for publishing: a browser sends the cookie with any cross-site
     * form POST, so taking it there is CSRF unless Origin is checked
     * against a list of publishing origins, which this hub does not have. */
    if (r->method_number == M_POST) {
        if (cookie_value(r, SSE_DIR_MERCURE_COOKIE(dc), &ignored))
            *why = "publishing takes the token from the Authorization header or the "
                   "authorization parameter, not the cookie";
        return TOKEN_NONE;
    }
    if ((*tok = cookie_value(r, SSE_DIR_MERCURE_COOKIE(dc), len)))
        return TOKEN_OK;
    return TOKEN_NONE;
}

/* 401 to a request without a token: no error code (RFC 6750 3.1). */
static int token_missing(request_rec *r, const char *message)
{
    apr_table_setn(r->headers_out, "WWW-Authenticate", "Bearer realm=\"" REALM "\"");
    return sse_http_error(r, HTTP_UNAUTHORIZED, message);
}

/* 401: why NULL for a request without a token, else the reason the token
 * was refused. */
static int unauthorized(request_rec *r, const char *why)
{
    if (!why)
        return token_missing(r, "a token is required (Authorization: Bearer, the "
                                "authorization parameter, or the cookie)");
    apr_table_setn(r->headers_out, "WWW-Authenticate",
                   apr_psprintf(r->pool, "Bearer realm=\"" REALM "\", error=\"invalid_token\", "
                                "error_description=\"%s\"", why));
    return sse_http_error(r, HTTP_UNAUTHORIZED, apr_pstrcat(r->pool, "invalid token: ", why,
                                                             NULL));
}

/* Verifies the request's token, if any, with key. OK with *claims (NULL:
 * no token), or an answer already sent (401) in *done. */
static int authenticate(request_rec *r, const sse_dir_conf *dc, const sse_jwt_key *key,
                        const apr_array_header_t *pairs, sse_jwt_claims **claims, int *done)
{
    const char *tok, *why = NULL;
    apr_size_t len;

    *claims = NULL;
    *done = 0;
    switch (find_token(r, dc, pairs, &tok, &len, &why)) {
    case TOKEN_NONE:
        if (why) {      /* a publish with the cookie only: say so */
            *done = 1;
            return token_missing(r, why);
        }
        return OK;
    case TOKEN_BAD:
        *done = 1;
        return unauthorized(r, why);
    default:
        break;
    }
    *claims = apr_pcalloc(r->pool, sizeof(**claims));
    if ((why = sse_jwt_verify(r->pool, key, tok, len, apr_time_sec(apr_time_now()),
                              *claims))) {
        *done = 1;
        return unauthorized(r, why);
    }
    return OK;
}

/* A token's selectors, compiled; one that is not a valid template matches
 * itself exactly, as the Go hub falls back. */
static sse_topic_selector **claim_selectors(apr_pool_t *p, const apr_array_header_t *a,
                                            int *n)
{
    sse_topic_selector **out;
    const char *why;
    int i;

    *n = a ? a->nelts : 0;
    out = apr_palloc(p, sizeof(*out) * (apr_size_t)(*n ? *n : 1));
    for (i = 0; i < *n; i++) {
        const char *s = ((const char **)a->elts)[i];
        if (!(out[i] = sse_topic_compile(p, s, strlen(s), &why)))
            out[i] = sse_topic_exact(p, s, strlen(s));
    }
    return out;
}

/* ---- publishing ---- */

/* Publishes one update on the hub's channel; OK with *id, or a store
 * status with *why. */
static int put_update(request_rec *r, const apr_array_header_t *hub, const sse_bytes *topics,
                      int ntopics, int private, int subscription, sse_body_event *ev,
                      const char **id, const char **why)
{
    apr_array_header_t *events = apr_array_make(r->pool, 1, sizeof(sse_body_event));
    sse_store_receipt *res;
    int status;

    ev->channels = (apr_array_header_t *)hub;
    ev->meta = make_meta(r->pool, topics, ntopics, private, subscription);
    *(sse_body_event *)apr_array_push(events) = *ev;
    if ((status = sse_store_publish(sse_store_get(), r->pool, events, &res, why)) != OK)
        return status;
    *id = apr_pstrdup(r->pool, res[0].id);
    return OK;
}

/* The first value of key in pairs, or NULL. */
static const sse_bytes *first(apr_pool_t *p, const apr_array_header_t *pairs, const char *key)
{
    apr_array_header_t *v = sse_body_values(p, pairs, key);

    return v->nelts ? (const sse_bytes *)v->elts : NULL;
}

/* A topic for an error message: CR, LF and NUL written as backslash and r, n
 * or 0, so that the message shows the byte that is wrong instead of ending at it. */
static const char *shown(apr_pool_t *p, const char *s, apr_size_t len)
{
    char *out = apr_palloc(p, len * 2 + 1), *o = out;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        char c = s[i];
        if (c == '\n' || c == '\r' || c == '\0') {
            *o++ = '\\';
            *o++ = c == '\n' ? 'n' : c == '\r' ? 'r' : '0';
        }
        else {
            *o++ = c;
        }
    }
    *o = '\0';
    return out;
}

static const char *check_topic(apr_pool_t *p, const sse_bytes *t)
{
    if (t->len == 0)
        return "topic is empty";
    if (t->len > SSE_MERCURE_TOPIC_MAX)
        return "topic longer than " SSE_STR(SSE_MERCURE_TOPIC_MAX) " bytes";
    if (memchr(t->s, '\n', t->len) || memchr(t->s, '\r', t->len) || memchr(t->s, '\0', t->len))
        return apr_psprintf(p, "topic '%s' contains a line break or a NUL byte",
                            shown(p, t->s, t->len > 64 ? 64 : t->len));
    return NULL;
}

/* Whether a topic holds the hub's namespace anywhere, as the Go hub tests
 * it: subscription updates live there, and a publisher that could post
 * one would forge presence. A substring, not a path comparison, so that
 * no spelling of an absolute or relative URL slips through. */
static int reserved_topic(const sse_bytes *t)
{
    static const char ns[] = "/.well-known/mercure";
    apr_size_t n = sizeof(ns) - 1, i;

    for (i = 0; i + n <= t->len; i++) {
        if (t->s[i] == '/' && memcmp(t->s + i, ns, n) == 0)
            return 1;
    }
    return 0;
}

static int publish(request_rec *r, const sse_dir_conf *dc)
{
    const sse_jwt_key *key = dc->mercure_publisher;
    apr_array_header_t *pairs, *topics;
    const sse_bytes *v, *t;
    sse_jwt_claims *claims;
    sse_topic_selector **allowed;
    sse_body_event ev;
    const char *why, *id, *ct = apr_table_get(r->headers_in, "Content-Type");
    char *body;
    apr_size_t len;
    int i, nallowed, status, done;

    if (!key)
        return sse_http_error(r, HTTP_INTERNAL_SERVER_ERROR, "this hub cannot verify "
                              "publishers: SSEMercurePublisherJWT is not set");
    if (sse_http_query(r, &pairs))
        pairs = NULL;
    if ((status = authenticate(r, dc, key, pairs, &claims, &done)) != OK || done)
        return status;
    if (!claims)
        return unauthorized(r, NULL);
    if (!claims->publish || claims->publish->nelts == 0)
        return sse_http_error(r, HTTP_FORBIDDEN, "the token's mercure.publish claim is "
                              "missing or empty: it allows no topic");
    if (!sse_http_media_type_is(ct, "application/x-www-form-urlencoded"))
        return sse_http_error(r, HTTP_UNSUPPORTED_MEDIA_TYPE, "an update is "
                              "application/x-www-form-urlencoded (topic, data, private, id, "
                              "type, retry)");
    if ((status = sse_http_read_body(r, SSE_DIR_MAX_MESSAGE(dc), &body, &len, &why)) != OK)
        return sse_http_error(r, status, why);
    if ((why = sse_body_parse_pairs(r->pool, body, len, &pairs)))
        return sse_http_error(r, HTTP_BAD_REQUEST, why);

    topics = sse_body_values(r->pool, pairs, "topic");
    if (topics->nelts == 0)
        return sse_http_error(r, HTTP_BAD_REQUEST, "topic: missing (name the update's "
                              "topic; the first is canonical)");
    if (topics->nelts > SSE_MERCURE_MAX_TOPICS)
        return sse_http_error(r, HTTP_BAD_REQUEST, "topic: more than "
                              SSE_STR(SSE_MERCURE_MAX_TOPICS) " topics in one update");
    t = (const sse_bytes *)topics->elts;
    for (i = 0; i < topics->nelts; i++) {
        if ((why = check_topic(r->pool, &t[i])))
            return sse_http_error(r, HTTP_BAD_REQUEST, why);
    }

    memset(&ev, 0, sizeof(ev));
    ev.retry = -1;
    if ((v = first(r->pool, pairs, "data")))
        ev.data = *v;
    else
        ev.data.s = "";
    if ((v = first(r->pool, pairs, "id")) && v->len) {
        if (v->s[0] == '#')
            return sse_http_error(r, HTTP_BAD_REQUEST, "id: ids beginning with '#' are the "
                                  "hub's (the protocol reserves them)");
        if ((why = sse_wire_check_id(v->s, v->len)))
            return sse_http_error(r, HTTP_BAD_REQUEST, apr_pstrcat(r->pool, "id: ", why, NULL));
        ev.id = *v;
    }
    if ((v = first(r->pool, pairs, "type")) && v->len) {
        if ((why = sse_wire_check_event(v->s, v->len)))
            return sse_http_error(r, HTTP_BAD_REQUEST, apr_pstrcat(r->pool, "type: ", why,
                                                                   NULL));
        ev.event = *v;
    }
    if ((v = first(r->pool, pairs, "retry")) && v->len) {      /* empty: absent, as id */
        apr_uint32_t ms;
        if ((why = sse_wire_parse_retry(v->s, v->len, &ms)))
            return sse_http_error(r, HTTP_BAD_REQUEST, apr_pstrcat(r->pool, "retry: ", why,
                                                                   NULL));
        ev.retry = (long)ms;
    }

    for (i = 0; i < topics->nelts; i++) {
        if (reserved_topic(&t[i]))
            return sse_http_error(r, HTTP_FORBIDDEN, apr_psprintf(r->pool,
                                  "topic '%.*s' is in the hub's reserved namespace "
                                  "(/.well-known/mercure): only the hub publishes there",
                                  (int)(t[i].len > 200 ? 200 : t[i].len), t[i].s));
    }

    /* Every topic must be allowed, or nothing is published. */
    allowed = claim_selectors(r->pool, claims->publish, &nallowed);
    for (i = 0; i < topics->nelts; i++) {
        if (!any_match(allowed, nallowed, t[i].s, t[i].len))
            return sse_http_error(r, HTTP_FORBIDDEN, apr_psprintf(r->pool,
                                  "topic '%.*s' is not allowed by the token's mercure.publish",
                                  (int)(t[i].len > 200 ? 200 : t[i].len), t[i].s));
    }

    if ((status = put_update(r, hub_channel(r), t, topics->nelts,
                             first(r->pool, pairs, "private") != NULL, 0, &ev, &id, &why))
        != OK)
        return sse_http_store_error(r, status, why);

    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(01301)
                  "update %s published on %d topic(s), first '%.*s'", id, topics->nelts,
                  (int)(t[0].len > 200 ? 200 : t[0].len), t[0].s);
    ap_set_content_type(r, "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)strlen(id));
    if (!r->header_only)
        ap_rputs(id, r);
    return OK;
}

/* ---- subscription updates ---- */

/* RFC 6570 simple expansion of one value: unreserved bytes as they are,
 * every other byte %XX (the protocol asks ':', '/', '{' and '}' encoded). */
static const char *expand(apr_pool_t *p, const char *s, apr_size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = apr_palloc(p, len * 3 + 1), *o = out;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (apr_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            *o++ = (char)c;
        }
        else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

/* A subscription's JSON-LD document (the protocol's, "Subscription
 * Events"); lastEventID added by the API only. */
static json_t *subscription_doc(const char *topic_id, const char *selector,
                                const char *subscriber, int active, const char *payload)
{
    json_t *o = json_object(), *pl;

    json_object_set_new(o, "@context", json_string(JSONLD_CONTEXT));
    json_object_set_new(o, "id", json_string(topic_id));
    json_object_set_new(o, "type", json_string("Subscription"));
    json_object_set_new(o, "topic", json_string(selector));
    json_object_set_new(o, "subscriber", json_string(subscriber));
    json_object_set_new(o, "active", json_boolean(active));
    if (payload && (pl = json_loads(payload, JSON_DECODE_ANY, NULL)))
        json_object_set_new(o, "payload", pl);
    return o;
}

/* Publishes a subscriber's subscription updates, one per selector. */
static void announce(request_rec *r, const apr_array_header_t *hub,
                     const apr_array_header_t *selectors, const char *subscriber,
                     const char *payload, int active)
{
    const sse_bytes *sel = (const sse_bytes *)selectors->elts;
    int i;

    for (i = 0; i < selectors->nelts; i++) {
        const char *topic = apr_pstrcat(r->pool, SUBS_PATH "/", expand(r->pool, sel[i].s,
                                        sel[i].len), "/", expand(r->pool, subscriber,
                                        strlen(subscriber)), NULL);
        const char *sels = apr_pstrmemdup(r->pool, sel[i].s, sel[i].len);
        json_t *doc = subscription_doc(topic, sels, subscriber, active, payload);
        char *text = json_dumps(doc, JSON_COMPACT);
        sse_body_event ev;
        sse_bytes t;
        const char *id, *why;
        int status;

        json_decref(doc);
        if (!text)
            continue;
        memset(&ev, 0, sizeof(ev));
        ev.retry = -1;
        ev.data.s = apr_pstrdup(r->pool, text);
        ev.data.len = strlen(text);
        free(text);
        t.s = topic;
        t.len = strlen(topic);
        if (t.len > SSE_MERCURE_TOPIC_MAX) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, SSE_LOGNO(01302)
                          "subscription update of %s not published: its topic would be "
                          "longer than " SSE_STR(SSE_MERCURE_TOPIC_MAX) " bytes", subscriber);
            continue;
        }
        if ((status = put_update(r, hub, &t, 1, 1, 1, &ev, &id, &why)) != OK)
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, SSE_LOGNO(01303)
                          "subscription update of %s (active %s) not published (%d): %s",
                          subscriber, active ? "true" : "false", status, why);
    }
}

/* urn:uuid: and a random (version 4) UUID. */
static const char *new_subscriber_id(apr_pool_t *p)
{
    unsigned char b[16];

    ap_random_insecure_bytes(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    return apr_psprintf(p, "urn:uuid:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                        "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
                        b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* ---- subscribing ---- */

static const char *last_event_id(request_rec *r, const apr_array_header_t *pairs,
                                 apr_size_t *len)
{
    const char *h = apr_table_get(r->headers_in, "Last-Event-ID");
    apr_array_header_t *q;

    if (h && *h) {
        *len = strlen(h);
        return h;
    }
    q = sse_body_values(r->pool, pairs, "lastEventID");
    if (!q->nelts || !((sse_bytes *)q->elts)[0].len)
        return NULL;
    *len = ((sse_bytes *)q->elts)[0].len;
    return ((sse_bytes *)q->elts)[0].s;
}

static int subscribe(request_rec *r, const sse_dir_conf *dc, const apr_array_header_t *pairs)
{
    const sse_jwt_key *key = dc->mercure_subscriber ? dc->mercure_subscriber
                                                    : dc->mercure_publisher;
    apr_array_header_t *selectors = sse_body_values(r->pool, pairs, "topic");
    const sse_bytes *sel = (const sse_bytes *)selectors->elts;
    hub_sub *hs = apr_pcalloc(r->pool, sizeof(*hs));
    sse_sub_filter *filter = apr_pcalloc(r->pool, sizeof(*filter));
    sse_stream_hub hub;
    sse_jwt_claims *claims = NULL;
    const char *why, *subscriber = NULL;
    apr_size_t cost = 0;
    int i, status, done;

    if (selectors->nelts == 0)
        return sse_http_error(r, HTTP_BAD_REQUEST, "topic: missing (name one or more topic "
                              "selectors: a topic, a URI template or *)");
    if (selectors->nelts > SSE_MERCURE_MAX_SELECTORS)
        return sse_http_error(r, HTTP_BAD_REQUEST, "topic: more than "
                              SSE_STR(SSE_MERCURE_MAX_SELECTORS) " selectors");
    hs->nsel = selectors->nelts;
    hs->sel = apr_palloc(r->pool, sizeof(*hs->sel) * (apr_size_t)hs->nsel);
    for (i = 0; i < hs->nsel; i++) {
        if (sel[i].len == 0 || sel[i].len > SSE_MERCURE_SELECTOR_MAX)
            return sse_http_error(r, HTTP_BAD_REQUEST, "topic: a selector is empty or longer "
                                  "than " SSE_STR(SSE_MERCURE_SELECTOR_MAX) " bytes");
        /* Any string is a selector (the protocol): one that is not a valid
         * template matches itself exactly, as with the Go hub. */
        if (!(hs->sel[i] = sse_topic_compile(r->pool, sel[i].s, sel[i].len, &why))) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(01305)
                          "selector '%.*s' is not a URI template (%s): matched exactly",
                          (int)sel[i].len, sel[i].s, why);
            hs->sel[i] = sse_topic_exact(r->pool, sel[i].s, sel[i].len);
        }
        cost += sse_topic_cost(hs->sel[i]);
    }
    if (cost > SSE_MERCURE_COST_MAX)
        return sse_http_error(r, HTTP_BAD_REQUEST, apr_psprintf(r->pool, "topic: the "
                              "selectors' templates are too complex to match (cost %"
                              APR_SIZE_T_FMT ", at most " SSE_STR(SSE_MERCURE_COST_MAX)
                              "): use fewer or shorter expressions", cost));

    if (key) {
        if ((status = authenticate(r, dc, key, pairs, &claims, &done)) != OK || done)
            return status;
    }
    else {
        const char *tok;
        apr_size_t len;
        /* A token this hub cannot verify is not taken for none. */
        if (find_token(r, dc, pairs, &tok, &len, &why) != TOKEN_NONE)
            return unauthorized(r, "this hub has no key to verify tokens "
                                   "(SSEMercureSubscriberJWT)");
    }
    if (!claims && !SSE_DIR_MERCURE_ANONYMOUS(dc))
        return unauthorized(r, NULL);
    if (claims)
        hs->auth = claim_selectors(r->pool, claims->subscribe, &hs->nauth);
    filter->accept = hub_accept;
    filter->ctx = hs;

    memset(&hub, 0, sizeof(hub));
    hub.channels = hub_channel(r);
    hub.filter = filter;
    hub.asked = last_event_id(r, pairs, &hub.asked_len);
    hub.ends = claims && claims->exp ? apr_time_from_sec(claims->exp) : 0;

    if (SSE_DIR_MERCURE_SUBSCRIPTIONS(dc) && !r->header_only) {
        subscriber = new_subscriber_id(r->pool);
        announce(r, hub.channels, selectors, subscriber, claims ? claims->payload : NULL, 1);
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, SSE_LOGNO(01304)
                  "hub subscriber%s%s: %d selector(s), %s", subscriber ? " " : "",
                  subscriber ? subscriber : "", hs->nsel,
                  claims ? "with a token" : "anonymous");
    status = sse_stream_serve_hub(r, &hub);
    if (subscriber)
        announce(r, hub.channels, selectors, subscriber, claims ? claims->payload : NULL, 0);
    return status;
}

/* ---- the subscriptions API ---- */

/* The request's path as the client wrote it (httpd decodes parsed_uri's
 * path in place, but for %2F with AllowEncodedSlashes NoDecode): the
 * API's URLs hold percent-encoded topics. */
static const char *raw_path(request_rec *r)
{
    const char *u = r->unparsed_uri ? r->unparsed_uri : r->uri, *q = strchr(u, '?');

    return q ? apr_pstrmemdup(r->pool, u, (apr_size_t)(q - u)) : u;
}

/* Percent-decodes one path segment; NULL when malformed. */
static const char *unescape(apr_pool_t *p, const char *s, apr_size_t len)
{
    char *out = apr_pstrmemdup(p, s, len);

    return ap_unescape_all(out) == OK ? out : NULL;     /* %2F included */
}

static int refuse_all(const void *ctx, const char *frame, apr_size_t len)
{
    return 0;
}

/* The JSON of a subscription update's frame (its one data line). */
static json_t *frame_json(const char *frame, apr_size_t len)
{
    const char *p = frame, *end = frame + len;

    while (p < end) {
        const char *lf = memchr(p, '\n', (apr_size_t)(end - p));
        if (!lf)
            break;
        if (lf - p > 6 && memcmp(p, "data: ", 6) == 0)
            return json_loadb(p + 6, (size_t)(lf - p - 6), 0, NULL);
        p = lf + 1;
    }
    return NULL;
}

static int subscriptions_api(request_rec *r, const sse_dir_conf *dc,
                             const apr_array_header_t *pairs, const char *rest)
{
    const sse_jwt_key *key = dc->mercure_subscriber ? dc->mercure_subscriber
                                                    : dc->mercure_publisher;
    const char *path = raw_path(r);
    const char *want_topic = NULL, *want_sub = NULL, *last_id = "earliest", *why;
    static const sse_sub_filter none = { refuse_all, NULL };
    sse_topic_selector **auth;
    sse_jwt_claims *claims;
    apr_array_header_t *refs;
    const sse_replay_ref *ref;
    sse_replay_reader rd;
    sse_sub *sub;
    apr_uint64_t upto;
    apr_hash_t *latest = apr_hash_make(r->pool);
    json_t *list, *out;
    char *text;
    int i, nauth, status, done;

    if (!key)
        return sse_http_error(r, HTTP_INTERNAL_SERVER_ERROR, "this hub cannot verify "
                              "tokens: neither SSEMercureSubscriberJWT nor "
                              "SSEMercurePublisherJWT is set");
    if ((status = authenticate(r, dc, key, pairs, &claims, &done)) != OK || done)
        return status;
    if (!claims)
        return unauthorized(r, NULL);
    auth = claim_selectors(r->pool, claims->subscribe, &nauth);
    if (!any_match(auth, nauth, path, strlen(path)))
        return sse_http_error(r, HTTP_FORBIDDEN, apr_psprintf(r->pool, "the token's "
                              "mercure.subscribe does not match this URL (%s)", path));
    /* rest: "", "/{topic}" or "/{topic}/{subscriber}", each escaped. */
    if (*rest == '/') {
        const char *slash = strchr(rest + 1, '/');
        want_topic = unescape(r->pool, rest + 1, slash ? (apr_size_t)(slash - rest - 1)
                                                       : strlen(rest + 1));
        if (slash)
            want_sub = unescape(r->pool, slash + 1, strlen(slash + 1));
        if (!want_topic || (slash && (!want_sub || strchr(slash + 1, '/'))))
            return sse_http_error(r, HTTP_NOT_FOUND, "not a subscriptions URL: "
                                  SUBS_PATH "[/{topic}[/{subscriber}]]");
    }
    else if (*rest) {
        return sse_http_error(r, HTTP_NOT_FOUND, "not a subscriptions URL");
    }

    /* The hub's channel as a stream sees it (slot and epoch), to read what
     * it retains: registered for the time of the read, with a filter that
     * takes nothing, so it counts in sse_streams_opened_total as a stream
     * of no events would. */
    if ((status = sse_registry_w_subscribe_filtered(r, hub_channel(r), 0, &none, &sub,
                                                    &upto, &why)) != OK)
        return sse_http_store_error(r, status, why);
    refs = sse_replay_collect(sse_registry_channels(sub), r->pool, 0, upto, 0);
    ref = (const sse_replay_ref *)refs->elts;
    sse_replay_reader_init(&rd, r->pool);
    for (i = 0; i < refs->nelts; i++) {
        sse_ring_rec rec;
        apr_size_t meta;
        json_t *doc, *id;

        if (sse_replay_read(&rd, ref[i].off, &rec) != SSE_RING_OK)
            continue;
        last_id = apr_pstrmemdup(r->pool, rec.id, rec.id_len);
        meta = sse_wire_meta_len(rec.frame, rec.frame_len);
        if (meta < 3 || !(memcmp(rec.frame, ":s\n", 3) == 0
                          || (meta >= 6 && memcmp(rec.frame + 3, ":s\n", 3) == 0)))
            continue;
        if (!(doc = frame_json(rec.frame + meta, rec.frame_len - meta)))
            continue;
        if (!json_is_string(id = json_object_get(doc, "id"))) {
            json_decref(doc);
            continue;
        }
        /* The newest state of each subscription wins. */
        {
            const char *key_id = apr_pstrdup(r->pool, json_string_value(id));
            json_t *old = apr_hash_get(latest, key_id, APR_HASH_KEY_STRING);
            if (old)
                json_decref(old);
            apr_hash_set(latest, key_id, APR_HASH_KEY_STRING, doc);
        }
    }
    sse_registry_w_unsubscribe(sub);

    list = json_array();
    {
        apr_hash_index_t *hi;
        for (hi = apr_hash_first(r->pool, latest); hi; hi = apr_hash_next(hi)) {
            json_t *doc = apr_hash_this_val(hi);
            const char *t = json_string_value(json_object_get(doc, "topic"));
            const char *s = json_string_value(json_object_get(doc, "subscriber"));

            if (json_is_true(json_object_get(doc, "active"))
                && (!want_topic || (t && strcmp(t, want_topic) == 0))
                && (!want_sub || (s && strcmp(s, want_sub) == 0)))
                json_array_append(list, doc);
            json_decref(doc);
        }
    }
    if (want_sub) {
        if (json_array_size(list) == 0) {
            json_decref(list);
            return sse_http_error(r, HTTP_NOT_FOUND, "no such active subscription");
        }
        out = json_incref(json_array_get(list, 0));
        json_decref(list);
    }
    else {
        out = json_object();
        json_object_set_new(out, "@context", json_string(JSONLD_CONTEXT));
        json_object_set_new(out, "id", json_string(path));
        json_object_set_new(out, "type", json_string("Subscriptions"));
        json_object_set_new(out, "subscriptions", list);
    }
    json_object_set_new(out, "lastEventID", json_string(last_id));
    text = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    if (!text)
        return sse_http_error(r, HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    r->status = HTTP_OK;
    ap_set_content_type(r, "application/ld+json");
    apr_table_setn(r->headers_out, "Cache-Control", "must-revalidate, private");
    ap_set_content_length(r, (apr_off_t)strlen(text) + 1);
    if (!r->header_only) {
        ap_rputs(text, r);
        ap_rputs("\n", r);
    }
    free(text);
    return OK;
}

/* ---- the handler ---- */

/* The raw path after the <Location>, for the subscriptions API (its
 * segments are percent-encoded topics: AllowEncodedSlashes NoDecode). */
static const char *raw_rest(request_rec *r)
{
    core_dir_config *cd = ap_get_core_module_config(r->per_dir_config);
    const char *path = raw_path(r);
    apr_size_t n;

    if (!cd || !cd->d || cd->r || cd->d[0] != '/')
        return r->path_info ? r->path_info : "";
    n = strlen(cd->d);
    while (n > 1 && cd->d[n - 1] == '/')
        n--;
    return strncmp(path, cd->d, n) == 0 ? path + n : "";
}

int sse_mercure_handler(request_rec *r)
{
    const sse_dir_conf *dc = sse_config_dir(r);
    apr_array_header_t *pairs;
    const char *why, *rest;

    if (sse_http_options(r, dc, "GET, POST", HUB_ALLOW))
        return OK;
    if (r->method_number == M_POST)
        return publish(r, dc);
    if (r->method_number != M_GET)
        return sse_http_not_allowed(r, HUB_ALLOW, "a Mercure hub: subscribe with GET, "
                                    "publish with POST");
    if ((why = sse_http_query(r, &pairs)))
        return sse_http_error(r, HTTP_BAD_REQUEST, why);
    rest = raw_rest(r);
    if (*rest && strcmp(rest, "/") != 0) {
        if (SSE_DIR_MERCURE_SUBSCRIPTIONS(dc) && strncmp(rest, "/subscriptions", 14) == 0)
            return subscriptions_api(r, dc, pairs, rest + 14);
        return sse_http_error(r, HTTP_NOT_FOUND, SSE_DIR_MERCURE_SUBSCRIPTIONS(dc)
                              ? "a Mercure hub answers at its location and, for the "
                                "subscriptions API, at /subscriptions below it"
                              : "a Mercure hub answers at its location only "
                                "(SSEMercureSubscriptions is off)");
    }
    return subscribe(r, dc, pairs);
}
