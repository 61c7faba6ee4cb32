/* sse_body.h -- what a publisher sent, parsed into events.
 *
 * Three body forms reach the publish location: raw (the body is the data,
 * fields come from request headers), application/x-www-form-urlencoded and
 * application/json. Each is parsed here into the same sse_body_event, with
 * every field checked by sse_wire before anything is published: a request
 * publishes all its events or, on the first error, none.
 *
 * Only APR pools and jansson: no httpd. Tested by tests/unit.
 */
#ifndef SSE_BODY_H
#define SSE_BODY_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "sse_wire.h"

#define SSE_BODY_MAX_CHANNELS 64

typedef struct {
    const char *s;
    apr_size_t  len;
} sse_bytes;

typedef struct {
    apr_array_header_t *channels;   /* of sse_bytes; may be empty */
    sse_bytes event;                /* s == NULL: none */
    sse_bytes id;                   /* s == NULL: server-assigned */
    long      retry;                /* < 0: none */
    sse_bytes data;                 /* always set, maybe empty */
    /* s == NULL: none. A hub's metadata (sse_wire_check_meta): set only by
     * the sse-mercure handler, whose events have its one hub channel. */
    sse_bytes meta;
} sse_body_event;

/* Splits an urlencoded string (query string or form body) into pairs.
 * Returns NULL, or what is malformed. out: array of sse_bytes, key then value. */
const char *sse_body_parse_pairs(apr_pool_t *p, const char *s, apr_size_t len,
                                 apr_array_header_t **out);

/* Every value of key in pairs, as sse_bytes. */
apr_array_header_t *sse_body_values(apr_pool_t *p, const apr_array_header_t *pairs,
                                    const char *key);

/* Parse a body into an array of sse_body_event (one for a form, one or more
 * for JSON). Returns NULL or a message saying what is wrong. */
const char *sse_body_parse_form(apr_pool_t *p, const char *body, apr_size_t len,
                                apr_array_header_t **events);
const char *sse_body_parse_json(apr_pool_t *p, const char *body, apr_size_t len,
                                apr_array_header_t **events);

/* A raw body's event: its fields come as header values (NULL if absent). */
const char *sse_body_raw(apr_pool_t *p, const char *body, apr_size_t len,
                         const char *event, const char *id, const char *retry,
                         apr_array_header_t **events);

/* Checks the fields of ev (not the channels); NULL or a message. */
const char *sse_body_check(const sse_body_event *ev);

/* Checks a channel list: 1..SSE_BODY_MAX_CHANNELS valid names. */
const char *sse_body_check_channels(apr_pool_t *p, const apr_array_header_t *channels);

#endif
