/* sse_wire.h -- the text/event-stream wire format and its field rules.
 *
 * Everything a publisher hands us is checked here before it can reach the
 * ring, and every event is framed here exactly once, at publish time: the
 * ring stores the finished bytes, so a stream only ever copies them.
 *
 * Pure C: no httpd, no APR, no allocation. Tested by tests/unit.
 */
#ifndef SSE_WIRE_H
#define SSE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define SSE_CHANNEL_MAX   255   /* bytes in a channel name */
#define SSE_FIELD_MAX     255   /* bytes in an event type or an id */
#define SSE_RETRY_MAX     2147483647    /* ms: what every client can hold */

/* A limit's digits, for messages that are string literals. */
#define SSE_STR_(x) #x
#define SSE_STR(x)  SSE_STR_(x)
#define SSE_ID_MAXLEN     21    /* the longest "<ms>-<seq>": 13 digits, '-', 7 digits */
#define SSE_ID_BUFSIZE    48    /* "<ms>-<seq>" plus NUL, with room */

/* A server id is a stamp: unix milliseconds in the high bits, a sequence
 * within that millisecond in the low SSE_STAMP_SEQ_BITS. Stamps compare as
 * integers, so "strictly increasing ids" is "strictly increasing stamps". */
#define SSE_STAMP_SEQ_BITS 22
#define SSE_STAMP_SEQ_MASK ((UINT64_C(1) << SSE_STAMP_SEQ_BITS) - 1)
#define SSE_STAMP(ms, seq) (((uint64_t)(ms) << SSE_STAMP_SEQ_BITS) | (uint64_t)(seq))
#define SSE_STAMP_MS(st)   ((st) >> SSE_STAMP_SEQ_BITS)
#define SSE_STAMP_SEQ(st)  ((st) & SSE_STAMP_SEQ_MASK)

/* Field checks: NULL when acceptable, otherwise a message for the client.
 * An id must also survive the round trip through a Last-Event-ID header:
 * no space or tab at either end, where httpd strips them, and no control
 * character but tab, which httpd refuses in a header. */
const char *sse_wire_check_channel(const char *s, size_t len);
const char *sse_wire_check_event(const char *s, size_t len);
const char *sse_wire_check_id(const char *s, size_t len);
const char *sse_wire_parse_retry(const char *s, size_t len, uint32_t *out);

/* True when s has the server's "<digits>-<digits>" form (publishers may not
 * choose such ids: they would collide with the ordering of server ids). */
int sse_wire_is_server_form(const char *s, size_t len);

/* A hub's channel (the sse-mercure handler's, sse_mercure.h): '#' and then
 * 1..SSE_CHANNEL_MAX - 1 bytes a channel name may hold. No name a client
 * gives sse-stream or sse-publish can begin with '#', so a hub's channel is
 * reached only through its hub, and its events (which carry metadata, see
 * below) never reach a plain stream. NULL when s is one, else why not. */
#define SSE_WIRE_HUB_MARK '#'
const char *sse_wire_check_hub_channel(const char *s, size_t len);

/* Metadata that travels with an event of a hub's channel: whole SSE comment
 * lines (each ":" ... "\n", no CR, LF or NUL inside, at least one line),
 * written at the start of the event's frame, before its fields. A client
 * ignores comments, but the hub's streams strip them before writing
 * (sse_wire_meta_len) and read them to decide who gets the event. NULL
 * when s is such lines, else why not. */
const char *sse_wire_check_meta(const char *s, size_t len);
/* Bytes of the comment lines a frame begins with (0 for every frame of a
 * plain channel, which begins with a field). */
size_t sse_wire_meta_len(const char *frame, size_t len);

/* Parses a server-form id into a stamp; 0 when it is not one we could have
 * issued (wrong form, or numbers out of range). */
int sse_wire_parse_server_id(const char *s, size_t len, uint64_t *stamp);

/* Writes the id of a stamp, NUL-terminated; returns its length. */
size_t sse_wire_format_id(uint64_t stamp, char buf[SSE_ID_BUFSIZE]);

/* History expiry (SSEHistoryTTL): the oldest stamp still within ttl_ms of
 * now_ms; 0 (nothing expired) when ttl_ms is 0. An event has expired when
 * its age is greater than the TTL: age = now_ms - its stamp's milliseconds,
 * so an event exactly ttl_ms old is still replayed, and one a millisecond
 * older is not. Stamps from "the future" (the clock stepped back) are never
 * expired. A stamp s is within the TTL exactly when s >= the floor. */
uint64_t sse_wire_expiry_floor(uint64_t now_ms, uint64_t ttl_ms);

/* One event to frame. event and id may be NULL/0; retry < 0 means none;
 * meta (sse_wire_check_meta) NULL/0 but for a hub's events. */
typedef struct {
    const char *id;     size_t id_len;
    const char *event;  size_t event_len;
    long        retry;
    const char *data;   size_t data_len;
    const char *meta;   size_t meta_len;
} sse_wire_event;

/* Exact size of the frame of ev, and the framing itself (out must hold
 * sse_wire_frame_size(ev) bytes; returns the bytes written). Data is split
 * on CRLF, LF and lone CR into one "data: " line each; NUL passes through. */
size_t sse_wire_frame_size(const sse_wire_event *ev);
size_t sse_wire_frame(char *out, const sse_wire_event *ev);

/* Fixed frames. */
#define SSE_WIRE_HEARTBEAT     ": heartbeat\n\n"
#define SSE_WIRE_HEARTBEAT_LEN (sizeof(SSE_WIRE_HEARTBEAT) - 1)

#endif
