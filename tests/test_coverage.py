"""Behaviour that only the C unit tests, or nothing, covered before, checked
over HTTP against a real httpd: an event too large for the ring, a batch
refused on channel capacity midway (all or none), a graceful restart with
changed ring sizes (the ring is kept), the upper bound of every numeric
directive, and a stream whose client stopped reading ended by `Timeout`."""
import socket
import time

import pytest

from ssetest.channels import chan_query, uniq
from ssetest.clients import SSEClient, subscribe
from ssetest.httpd import Httpd
from ssetest.publish import (assert_unpublished, channel_info, pub_json, pub_raw, publish_ok,
                             wait_subscribers)
from ssetest.wire import wire_event


# ---------------------------------------------------------------- 413: too large for the ring

def test_event_larger_than_the_ring_holds_is_413_and_not_published(httpd):
    """SSEBufferSize 64K: one record holds at most a quarter of it (16K). An
    event of 16K + 1 bytes of data, in a body well within SSEMaxMessageSize
    (64K by default), is refused with 413, alone or second in a batch, and
    nothing of it is published."""
    h = httpd(server_conf="SSEBufferSize 64K\n")
    chan = uniq("big")
    big = "b" * (16 * 1024 + 1)
    with subscribe(h.port, chan) as s:
        wait_subscribers(h.port, chan, 1)
        r = pub_raw(h.port, chan, big)
        assert r.status == 413, r
        assert "SSEBufferSize" in r.error_message()
        r = pub_json(h.port, [{"channel": chan, "data": "small"}, {"channel": chan, "data": big}])
        assert r.status == 413, r
        assert "SSEBufferSize" in r.error_message()
        assert_unpublished(h, chan, s, 0.7)
        # What does fit is published (the 413 is about the size, not the ring).
        fits = "f" * 8000
        i = publish_ok(h.port, chan, fits)
        assert s.next_event().raw == wire_event(i, fits.encode())


# ---------------------------------------------------------------- 503: all or none on capacity

def test_batch_refused_midway_on_channel_capacity_publishes_nothing(httpd):
    """SSEMaxChannels 4, filled by publishing to new channels until one is
    refused (503). A JSON batch whose first event goes to a known channel
    and whose second needs a new one is refused with 503 as a whole: the
    first event's subscriber gets nothing and its channel info is unchanged."""
    h = httpd(server_conf="SSEMaxChannels 4\n")
    base = uniq("cap")
    first = f"{base}-0"
    with subscribe(h.port, first) as s:     # subscribed while there is room
        wait_subscribers(h.port, first, 1)
        filled = []
        for k in range(20):
            r = pub_raw(h.port, f"{base}-{k}", f"fill {k}")
            if r.status != 200:
                break
            filled.append(r.json["id"])
        assert r.status == 503, r
        assert "SSEMaxChannels" in r.error_message()
        # At most SSEMaxChannels channels; how many of them publishes may
        # claim (rather than subscribers) is the channel table's policy, not
        # this test's subject.
        assert 1 <= len(filled) <= 4, filled
        assert [e.raw for e in s.next_events(1)] == [wire_event(filled[0], b"fill 0")]
        before = {"channel": first, "subscribers": 1, "messages": 1, "last_id": filled[0]}
        assert channel_info(h.port, first).json == before

        new = f"{base}-new"
        r = pub_json(h.port, [{"channel": first, "data": "one"}, {"channel": new, "data": "two"}])
        assert r.status == 503, r
        assert "SSEMaxChannels" in r.error_message()
        s.assert_no_event(0.7)
        assert channel_info(h.port, first).json == before
        assert channel_info(h.port, new).status == 404
        # The known channel alone still publishes, and is the next event.
        i = publish_ok(h.port, first, "alone")
        assert s.next_event().raw == wire_event(i, b"alone")
        s.assert_no_event(0.3)


# ---------------------------------------------------------------- graceful restart, new sizes

def test_graceful_restart_with_changed_ring_sizes_keeps_the_ring(httpd):
    """SSEBufferSize and SSEMaxChannels changed, then a graceful restart
    (SIGUSR1, what `apachectl -k graceful` sends): the notice SSE00001 says
    the running ring is kept, no new ring is made (SSE00003 is not logged
    again), and the events published before are replayed after."""
    h = httpd(server_conf="SSEBufferSize 64K\nSSEMaxChannels 16\n")
    chan = uniq("resize")
    before = [(publish_ok(h.port, chan, f"before {k}"), f"before {k}".encode()) for k in range(3)]
    assert h.error_log().count("SSE00003:") == 1
    mark = h.log_mark()
    h.server_conf = "SSEBufferSize 128K\nSSEMaxChannels 32\n"
    h.write_config()
    h.graceful()
    log = h.log_since(mark)
    assert log.count("SSE00001:") == 1, log
    assert "SSE00003:" not in log, log
    after = publish_ok(h.port, chan, "after")
    with subscribe(h.port, chan, headers={"Last-Event-ID": before[0][0]}) as s:
        assert [(e.id, e.data) for e in s.next_events(3)] == before[1:] + [(after, b"after")]
        s.assert_no_event(0.3)


# ---------------------------------------------------------------- directive upper bounds

# (directive, where, the maximum, the maximum + 1), from sse_config.h and
# sse_wire.h; + 1 in the directive's smallest unit (a byte, a millisecond).
UPPER_BOUNDS = [
    ("SSEBufferSize", "server", "1024G", str((1 << 40) + 1)),
    ("SSEMaxChannels", "server", "1000000", "1000001"),
    ("SSERedisRetention", "server", "100000000", "100000001"),
    ("SSEHeartbeat", "location", "86400", "86401"),
    ("SSERetry", "location", "2147483647", "2147483648"),
    ("SSEInitialReplay", "location", "100000", "100001"),
    ("SSEMaxMessageSize", "location", "64M", str(64 * 1024 * 1024 + 1)),
    ("SSEPublishKeepAliveWait", "location", "60s", "60001"),
]


def _config_test(line, where):
    """`apache2 -t` of a configuration with line server-wide or in a
    location: (returncode, output)."""
    loc = f"<Location /bound>\n    SetHandler sse-publish\n    {line}\n</Location>\n"
    h = Httpd(server_conf=line + "\n" if where == "server" else "",
              conf=loc if where == "location" else "", name="conftest")
    try:
        return h.config_test()
    finally:
        h.cleanup()


@pytest.mark.parametrize("directive,where,top,over", UPPER_BOUNDS,
                         ids=[d for d, _, _, _ in UPPER_BOUNDS])
def test_directive_upper_bound(directive, where, top, over):
    rc, out = _config_test(f"{directive} {top}", where)
    assert rc == 0 and "Syntax OK" in out, f"{directive} {top} refused:\n{out}"
    rc, out = _config_test(f"{directive} {over}", where)
    assert rc != 0, f"{directive} {over} accepted:\n{out}"
    assert directive + ":" in out, f"the refusal does not name {directive}:\n{out}"


# ---------------------------------------------------------------- a client that stops reading

STALL_EVENTS = 12       # per JSON publish, 4 KiB each


@pytest.mark.parametrize("direct", ["on", "off"])
def test_stream_of_a_client_that_stopped_reading_is_ended_by_timeout(httpd, direct):
    """Timeout 2: a client that never reads while events are published
    until the socket buffers are full has its stream ended by the server
    (the channel's subscriber count drops by one), written directly by the
    dispatcher or through the filters; another subscriber of the channel
    gets everything, in order, and goes on; the stalled one got a prefix of
    the same bytes, and no clean end."""
    h = httpd(server_conf="Timeout 2\nSSEBufferSize 64M\n", conf=f"""
<Location /stall>
    SetHandler sse-stream
    SSEHeartbeat 0
    SSEDirectWrite {direct}
</Location>
""")
    chan = uniq("stall")
    stalled = SSEClient(h.port, "/stall" + chan_query(chan), timeout=60)
    # A small window (as in test_slow_client.py): the buffers fill sooner.
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    reader = SSEClient(h.port, "/stall" + chan_query(chan), timeout=60)
    try:
        assert stalled.status == 200 and reader.status == 200
        wait_subscribers(h.port, chan, 2)
        expected = []
        subscribers = 2
        # A guard against a hang: the buffers (a few MB at most) fill in
        # seconds, and the server then waits Timeout (2 s).
        deadline = time.monotonic() + 120
        while subscribers == 2 and time.monotonic() < deadline:
            n = len(expected)
            batch = [{"channel": chan, "event": "bulk", "data": f"{n + k:06d} " + "x" * 4089}
                     for k in range(STALL_EVENTS)]
            r = pub_json(h.port, batch)
            assert r.status == 200, r
            expected += [wire_event(item["id"], ev["data"].encode(), "bulk")
                         for item, ev in zip(r.json, batch)]
            got = reader.next_events(STALL_EVENTS, timeout=30)
            assert [e.raw for e in got] == expected[-STALL_EVENTS:]
            subscribers = r.json[-1]["subscribers"]
            assert subscribers in (1, 2), r.json
        assert subscribers == 1, f"the stalled stream was not ended ({len(expected)} events sent)"
        assert channel_info(h.port, chan).json["subscribers"] == 1
        # The other subscriber goes on.
        i = publish_ok(h.port, chan, "after")
        assert reader.next_event().raw == wire_event(i, b"after")
        reader.assert_no_event(0.3)
        # The stalled client, reading at last: the first events, whole and
        # in order, then the connection ends without a clean end.
        assert stalled.wait_eof(30)
        whole = [e.raw for e in stalled.events()]
        assert 0 < len(whole) < len(expected) and whole == expected[:len(whole)]
        assert not stalled.clean_end
        # On the wire, nothing but a prefix of those bytes: the connection is
        # cut, never ended with a last chunk inside an unfinished one (which
        # a client would read as data).
        body, sent = bytes(stalled.body), b"".join(expected)
        assert sent.startswith(body)
    finally:
        stalled.close()
        reader.close()
