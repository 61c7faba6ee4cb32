/* sse_cors.h -- cross-origin access to stream and publish locations.
 *
 * SSECorsOrigin lists the origins allowed; SSECorsCredentials says whether
 * they may send cookies and HTTP auth (both set in sse_config.c). An allowed
 * origin gets its own value echoed in Access-Control-Allow-Origin (never `*`
 * with credentials: the browser would refuse it), an origin not listed gets
 * no CORS header at all, and `Vary: Origin` keeps caches from mixing the two.
 */
#ifndef SSE_CORS_H
#define SSE_CORS_H

#include "sse_config.h"

/* Adds the CORS response headers r deserves. methods: what the location
 * allows, for a preflight. Returns 1 when r is a preflight that has been
 * answered (the handler then sends 204), 0 otherwise. */
int sse_cors_apply(request_rec *r, const sse_dir_conf *dc, const char *methods);

#endif
