/* frame.c -- fuzzes the framing round trip: sse_wire_frame_size,
 * sse_wire_frame, and sse_parse_stream reading the frame back.
 *
 * Input: a flags byte (bit 0: an id from the input, bit 1: else a server
 * id, bit 2: an event type, bit 3: a retry), 8 bytes (the server id's
 * stamp; its low 31 bits the retry), then id, event type and data
 * separated by NUL bytes (the data keeps any NULs after that). An event
 * whose id and type sse_wire_check_id/_event accept (a server id is
 * sse_wire_format_id's) is framed; sse_wire_frame writes exactly
 * sse_wire_frame_size bytes, the same bytes as the frame written by hand
 * here from sse_wire.h's description, and sse_parse_stream reads them back
 * as exactly one event with the same data (CRLF and lone CR as LF, as the
 * wire format documents), event type, id and retry (fuzz_roundtrip in
 * fuzz.h).
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    apr_pool_t *p = fuzz_pool();
    uint8_t head[9] = { 0 };
    const char *f[3];
    size_t len[3];
    uint64_t stamp;
    char idbuf[SSE_ID_BUFSIZE];
    sse_wire_event ev = { NULL, 0, NULL, 0, -1, NULL, 0, NULL, 0 };
    unsigned flags;

    memcpy(head, d, n < 9 ? n : 9);
    flags = head[0];
    memcpy(&stamp, head + 1, 8);
    if (n > 9)
        fuzz_split(d + 9, n - 9, 0, 3, f, len);
    else
        f[0] = f[1] = f[2] = "", len[0] = len[1] = len[2] = 0;

    if (flags & 1) {
        if (len[0] == 0 || sse_wire_check_id(f[0], len[0]))
            return 0;
        ev.id = f[0];
        ev.id_len = len[0];
    }
    else if (flags & 2) {
        ev.id = idbuf;
        ev.id_len = sse_wire_format_id(stamp, idbuf);
    }
    if (flags & 4) {
        if (len[1] == 0 || sse_wire_check_event(f[1], len[1]))
            return 0;
        ev.event = f[1];
        ev.event_len = len[1];
    }
    if (flags & 8)
        ev.retry = (long)(stamp & SSE_RETRY_MAX);
    ev.data = f[2];
    ev.data_len = len[2];
    fuzz_roundtrip(p, &ev);
    return 0;
}
