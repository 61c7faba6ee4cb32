/* sse_status.h -- the sse-status handler and the mod_status section.
 *
 * `SetHandler sse-status` answers GET and HEAD with the module's figures,
 * server-wide (every child's, summed from the shared metrics block): JSON
 * by default, the Prometheus text format for ?format=prometheus or an
 * Accept header that prefers text/plain. Who may see them is Require's
 * business, as for any location.
 */
#ifndef SSE_STATUS_H
#define SSE_STATUS_H

#include <httpd.h>

#define SSE_STATUS_HANDLER "sse-status"

int  sse_status_handler(request_rec *r);
/* Adds the mod_sse section to mod_status's server-status, when mod_status
 * is loaded (its optional status_hook). */
void sse_status_register(void);

#endif
