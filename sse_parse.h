/* sse_parse.h -- a text/event-stream body read as a client reads it.
 *
 * Used by the response filter (sse_filter.c): a response whose Content-Type
 * is text/event-stream is parsed here into events, which are then published
 * like any others (sse_publish_events). The rules are the WHATWG HTML
 * "event stream interpretation":
 *
 *   - a leading UTF-8 byte order mark is skipped;
 *   - lines end with CRLF, LF or a lone CR (also across feeds);
 *   - a line beginning with ':' is a comment;
 *   - "name:value" (one space after the colon dropped) or "name" alone
 *     (empty value); unknown names are ignored;
 *   - data: appended to the event's data, lines joined with LF;
 *   - event: the event's type (empty: none, i.e. "message");
 *   - id: the event's id, unless the value contains NUL (then ignored);
 *     empty: none (the server assigns one);
 *   - retry: only if the value is all ASCII digits, otherwise ignored;
 *   - a blank line ends the event; an event without any data line is not
 *     dispatched (its event/id/retry are forgotten), and what follows the
 *     last blank line is dropped, as a client would drop it.
 *
 * Unlike a browser, id and retry belong to the event they appear in: a
 * later event without its own id: gets a server id, not the previous one.
 * A retry of more digits than fit in 2147483647 is an error (it cannot be
 * published as is); every other field check (sse_body_check) is the
 * publisher's, after parsing.
 *
 * Only APR pools and arrays: no httpd. Tested by tests/unit.
 */
#ifndef SSE_PARSE_H
#define SSE_PARSE_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "sse_body.h"

typedef struct sse_parse sse_parse;

/* A parser whose events (and their bytes) live in p. */
sse_parse *sse_parse_create(apr_pool_t *p);

/* Feeds the next len bytes of the body. Events completed by them are
 * appended to the parser's array. Returns NULL, or what is wrong (the first
 * error is kept, later feeds then do nothing and return it again). */
const char *sse_parse_feed(sse_parse *ps, const char *buf, apr_size_t len);

/* Ends the body: an unfinished event is dropped (*dropped set to 1 if it had
 * any field, may be NULL). *events: array of sse_body_event, in order, each
 * with an empty channels array. Returns NULL or the first error. */
const char *sse_parse_finish(sse_parse *ps, apr_array_header_t **events, int *dropped);

/* All of it at once: create, feed, finish. */
const char *sse_parse_stream(apr_pool_t *p, const char *buf, apr_size_t len,
                             apr_array_header_t **events, int *dropped);

#endif
