/* mod_sse.h -- what other modules may use of mod_sse.
 *
 * Publishing from another module, without an HTTP round trip:
 *
 *     APR_OPTIONAL_FN_TYPE(sse_publish) *publish =
 *         APR_RETRIEVE_OPTIONAL_FN(sse_publish);   (in a post_config hook)
 *     ...
 *     const char *id, *why;
 *     if (publish && publish(r->pool, r->server, "news", "update", data, len,
 *                            NULL, &id, &why) == OK) ...
 *
 * The event goes through the same checks and the same ring as a POST to an
 * sse-publish location, and reaches the subscribers of every child.
 */
#ifndef MOD_SSE_H
#define MOD_SSE_H

#include <apr_optional.h>
#include <httpd.h>

/* Publishes one event on one channel.
 *   channel  1..255 bytes, see the README for the characters allowed
 *   event    event type, or NULL for the default "message"
 *   data     any bytes (len of them; NUL and line breaks allowed)
 *   id       an id of the publisher's choosing, or NULL for a server id
 *   id_out   the id assigned, allocated from p (may be NULL)
 *   why      on failure, what is wrong, allocated from p (may be NULL)
 * Returns OK, or an HTTP status: HTTP_BAD_REQUEST (invalid field),
 * HTTP_REQUEST_ENTITY_TOO_LARGE, HTTP_SERVICE_UNAVAILABLE (no ring, or the
 * channel table is full). */
APR_DECLARE_OPTIONAL_FN(int, sse_publish,
                        (apr_pool_t *p, server_rec *s, const char *channel,
                         const char *event, const char *data, apr_size_t len,
                         const char *id, const char **id_out, const char **why));

#endif
