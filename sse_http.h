/* sse_http.h -- what the module's handlers share of HTTP: answers in JSON,
 * errors, the request body, the query string, OPTIONS and 405, and which
 * channels a request names.
 *
 * Every refusal the module sends is {"error": "<what is wrong>"} in JSON,
 * with the status that says whose fault it is, and is logged (info for 4xx,
 * error for 5xx) with the same text.
 */
#ifndef SSE_HTTP_H
#define SSE_HTTP_H

#include <httpd.h>
#include <apr_tables.h>

#include "sse_config.h"

/* True when a Content-Type header value is the media type `type`
 * (case-insensitive, parameters ignored). */
int sse_http_media_type_is(const char *content_type, const char *type);

/* The JSON text {"error": why}, without a line end. */
const char *sse_http_error_json(apr_pool_t *p, const char *why);

/* Sends a JSON body (and a line end) with status; returns OK for the
 * handler to return. */
int sse_http_json(request_rec *r, int status, const char *json_text);

/* Logs why and sends {"error": why} with status; returns OK. */
int sse_http_error(request_rec *r, int status, const char *why);
/* The same, logged at debug level: a refusal whose cause is logged once
 * elsewhere, not once per request. */
int sse_http_error_quiet(request_rec *r, int status, const char *why);
/* A store's refusal (sse_store.h statuses). A store whose server is away
 * says when to come back (Retry-After on its 503s) and logs the outage
 * itself, once: each request refused meanwhile is logged at debug level. */
int sse_http_store_error(request_rec *r, int status, const char *why);

/* Answers 405 with an Allow header; returns OK. */
int sse_http_not_allowed(request_rec *r, const char *allow, const char *what);

/* An OPTIONS request, or a CORS preflight for `methods`: answered here with
 * 204 and Allow (1), or not such a request (0). */
int sse_http_options(request_rec *r, const sse_dir_conf *dc, const char *methods,
                     const char *allow);

/* The query string as key/value pairs (sse_body_parse_pairs); NULL, or
 * what is malformed. */
const char *sse_http_query(request_rec *r, apr_array_header_t **pairs);

/* Reads the request body, at most max bytes, NUL-terminated, into the
 * request pool. Returns OK or an HTTP status with *why. */
int sse_http_read_body(request_rec *r, apr_int64_t max, char **body, apr_size_t *len,
                       const char **why);

/* The channels a request names (array of sse_bytes): SSEChannel, else the
 * `channel` query parameters, else the path after the location. NULL with
 * *why when it names none. pairs: the parsed query string. The names are
 * not checked here (sse_body_check_channels). */
apr_array_header_t *sse_http_channels(request_rec *r, const sse_dir_conf *dc,
                                      const apr_array_header_t *pairs, const char **why);

#endif
