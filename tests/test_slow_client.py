"""Slow and stalled clients: a subscriber that stops reading must not delay
the others, and when it reads again it gets every event, in order, once.

On plain HTTP/1.1 the dispatcher writes events straight to the socket; when
a client's socket buffer is full the write is partial, the rest "spills" to
the stream's own thread, which finishes it with the connection's timeout,
and the events that arrive meanwhile queue up, then overflow the queue and
are read back from the ring. With SSEDirectWrite off the same happens
through the output filters. Both paths are checked with exact bytes."""
import socket

import pytest

from ssetest.channels import uniq
from ssetest.clients import SSEClient
from ssetest.publish import pub_json, wait_subscribers
from ssetest.wire import wire_event

EVENTS = 2400          # x 4 KiB = 10 MB: more than socket buffers (up to ~4 MB
                       # with autotuning) and the 256-event queue hold
BATCH = 12             # events per JSON publish (48 KiB < SSEMaxMessageSize)

CONF = """
<Location /events-filtered>
    SetHandler sse-stream
    SSEDirectWrite off
</Location>
"""


@pytest.mark.parametrize("path", ["/events", "/events-filtered"])
def test_stalled_client_gets_everything_later(httpd, path):
    h = httpd(conf=CONF, server_conf="SSEBufferSize 64M")
    chan = uniq("slow")
    stalled = SSEClient(h.port, f"{path}?channel={chan}", timeout=60)
    # A small window (no autotuning) so that the socket buffers fill up;
    # much smaller would make loopback crawl (delayed ACKs).
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    fast = SSEClient(h.port, f"{path}?channel={chan}", timeout=60)
    try:
        wait_subscribers(h.port, chan, 2)
        expected = []
        for b in range(EVENTS // BATCH):
            batch = []
            for k in range(BATCH):
                n = b * BATCH + k
                batch.append({"channel": chan, "event": "bulk",
                              "data": f"{n:06d} " + "x" * 4089})
            r = pub_json(h.port, batch)
            assert r.status == 200, r
            for item, ev in zip(r.json, batch):
                expected.append(wire_event(item["id"], ev["data"].encode(), "bulk"))
            # The fast reader keeps up while the stalled one reads nothing.
            got = fast.next_events(BATCH, timeout=30)
            assert [e.raw for e in got] == expected[-BATCH:]
        # Now the stalled client reads: everything, in order, exactly once.
        got = stalled.next_events(EVENTS, timeout=120)
        assert len(got) == EVENTS
        assert [e.raw for e in got] == expected
        assert not any(e.event == "sse-gap" for e in got)
        # And it is live again afterwards.
        r = pub_json(h.port, {"channel": chan, "data": "after"})
        assert stalled.next_event(10).raw == wire_event(r.json["id"], b"after")
        assert fast.next_events(1, timeout=10)[0].raw == wire_event(r.json["id"], b"after")
        log = h.error_log()
        mode = "SSE00304:" if path == "/events" else "SSE00308:"   # directly / through filters
        assert log.count(mode) == 2     # one line per stream: the stalled and the fast one
        # The slow paths were taken, not just the fast one.
        assert "SSE00306:" in log       # catching up from the ring
        if path == "/events":
            assert "SSE00305:" in log   # the thread finishes a direct write
    finally:
        stalled.close()
        fast.close()
