"""SSEHistoryTTL: events older than the TTL of the stream's location are not
replayed, neither after a Last-Event-ID nor by SSEInitialReplay; an id older
than the TTL (or naming an expired event) is answered with sse-gap as for an
overwritten one; live events are never affected.

The rule is "expired when age > TTL", age counted in the milliseconds of
the event's server stamp (sse_wire_expiry_floor, unit-tested at the exact
millisecond in tests/unit/test_units.c). Here the TTL is 2 s and ages are
controlled by publishing, sleeping a bounded time and publishing again: an
event is made "just outside" by waiting until its stamp is 2.15 s old by the
client's clock (the server's clock: same machine), and an event published
0.4 s later is then "just inside" (about 1.75 s old). Every test checks
afterwards, from the same clock, that the inside events really were at
most 2 s old when the streams were served, so a verdict is never drawn
from a run the machine made too slow to say anything.
"""
import json
import time

import pytest

from ssetest.channels import chan_query, q, uniq
from ssetest.clients import NodeClient, subscribe
from ssetest.publish import publish_ok
from ssetest.wire import wire_event

TTL = 2

TTL_CONF = f"""
<Location /ttl>
    SetHandler sse-stream
    SSEHeartbeat 0
    SSEHistoryTTL {TTL}
</Location>
<Location /ttl-replay>
    SetHandler sse-stream
    SSEHeartbeat 0
    SSEHistoryTTL {TTL}
    SSEInitialReplay 10
</Location>
<Location /replay-all>
    SetHandler sse-stream
    SSEHeartbeat 0
    SSEInitialReplay 10
</Location>
"""


def gap_event(asked, oldest):
    data = json.dumps({"last_event_id": asked, "oldest_id": oldest}, separators=(",", ":"))
    return b"id: " + asked.encode() + b"\nevent: sse-gap\ndata: " + data.encode() + b"\n\n"


def stamp_ms(server_id):
    return int(server_id.split("-")[0])


def now_ms():
    return time.time() * 1000


def wait_until_older_than(server_id, ms):
    """Sleeps until the event of server_id is more than ms old."""
    left = stamp_ms(server_id) + ms - now_ms()
    assert left < 3000, "a bounded wait"
    if left > 0:
        time.sleep(left / 1000)
    while now_ms() <= stamp_ms(server_id) + ms:
        time.sleep(0.005)


def assert_still_inside(server_id, served):
    """The event of server_id was at most TTL old when the streams had been
    served (client's clock at served, after the server decided), else the
    run says nothing about the boundary."""
    age = served - stamp_ms(server_id)
    assert age <= TTL * 1000, (
        f"the machine was too slow for this run: the 'inside' event is {age:.0f} ms old")


@pytest.fixture
def h(httpd):
    return httpd(conf=TTL_CONF)


def replayed(port, path, chan, headers=None, extra_query=None, n=None, idle=0.3):
    """What a new stream on path gets before anything live: its events'
    raw bytes (n of them, then nothing more for idle seconds)."""
    return replayed_all(port, [(path, chan, headers, extra_query, n)], idle)[0][0]


def replayed_all(port, specs, idle=0.3):
    """replayed() for several streams at once, (path, chan, headers,
    extra_query, n) each: all opened first, then read, then watched for idle
    seconds together, so that the whole takes well under the TTL. Returns
    the lists of events and when (now_ms()) every stream had been served."""
    streams = []
    try:
        for path, chan, headers, extra_query, n in specs:
            streams.append(subscribe(port, chan, path=path, headers=headers,
                                     extra_query=extra_query))
        got = [[e.raw for e in s.next_events(n, timeout=5)] if n else []
               for s, (_, _, _, _, n) in zip(streams, specs)]
        served = now_ms()
        time.sleep(idle)
        for s in streams:
            s.assert_no_event(0.05)
        return got, served
    finally:
        for s in streams:
            s.close()


def test_expired_events_are_not_replayed(h):
    ch, gone = uniq("ttl"), uniq("ttl-gone")
    old1 = publish_ok(h.port, ch, "old1")
    old2 = publish_ok(h.port, ch, "old2", id="old-two")
    lost = publish_ok(h.port, gone, "lost")
    wait_until_older_than(old1, TTL * 1000 + 150)
    wait_until_older_than(lost, TTL * 1000 + 150)
    new1 = publish_ok(h.port, ch, "new1")
    new2 = publish_ok(h.port, ch, "new2")
    fresh = [wire_event(new1, b"new1"), wire_event(new2, b"new2")]
    cases = {
        # SSEInitialReplay: only what is within the TTL.
        "initial": ("/ttl-replay", ch, None, None, 2),
        # Last-Event-ID of an expired server id, and of an expired publisher
        # id (still in the ring, but too old): sse-gap, then what is within.
        "server id": ("/ttl", ch, {"Last-Event-ID": old1}, None, 3),
        "publisher id": ("/ttl", ch, {"Last-Event-ID": "old-two"}, None, 3),
        "query": ("/ttl", ch, None, "lastEventId=" + q(old1), 3),
        # An id within the TTL: what followed it, no gap.
        "inside": ("/ttl", ch, {"Last-Event-ID": new1}, None, 1),
        # A channel whose every event expired: the gap, with no oldest id,
        # and nothing replayed; a newcomer gets nothing.
        "all expired": ("/ttl", gone, {"Last-Event-ID": lost}, None, 1),
        "all expired, initial": ("/ttl-replay", gone, None, None, 0),
    }
    lists, served = replayed_all(h.port, list(cases.values()))
    got = dict(zip(cases, lists))
    assert_still_inside(new1, served)

    assert got["initial"] == fresh
    assert got["server id"] == [gap_event(old1, new1)] + fresh
    assert got["publisher id"] == [gap_event("old-two", new1)] + fresh
    assert got["query"] == [gap_event(old1, new1)] + fresh
    assert got["inside"] == fresh[1:]
    assert got["all expired"] == [gap_event(lost, None)]
    assert got["all expired, initial"] == []

    # The TTL is the location's: without one, everything retained replays.
    everything = [wire_event(old1, b"old1"), wire_event("old-two", b"old2")] + fresh
    assert replayed(h.port, "/replay-all", ch, n=4) == everything
    assert replayed(h.port, "/events", ch, headers={"Last-Event-ID": old1}, n=3) == everything[1:]
    assert old2 == "old-two"


def test_boundary_just_inside_and_just_outside(h):
    for attempt in range(3):
        ch = uniq("edge")
        outside = publish_ok(h.port, ch, "outside")
        time.sleep(0.4)
        inside = publish_ok(h.port, ch, "inside")
        after = publish_ok(h.port, ch, "after")
        # outside: just over the TTL (by 150 ms); inside: about 1.75 s old.
        wait_until_older_than(outside, TTL * 1000 + 150)
        (initial, from_outside, from_inside), served = replayed_all(h.port, [
            ("/ttl-replay", ch, None, None, 2),
            ("/ttl", ch, {"Last-Event-ID": outside}, None, 3),
            ("/ttl", ch, {"Last-Event-ID": inside}, None, 1)])
        if served - stamp_ms(inside) <= TTL * 1000:
            break
    assert_still_inside(inside, served)
    kept = [wire_event(inside, b"inside"), wire_event(after, b"after")]
    assert initial == kept
    assert from_outside == [gap_event(outside, inside)] + kept
    assert from_inside == kept[1:]


def test_expiry_never_touches_live_events(h):
    ch = uniq("live")
    with subscribe(h.port, ch, path="/ttl") as s:
        first = publish_ok(h.port, ch, "first")
        assert s.next_event().raw == wire_event(first, b"first")
        # A stream open longer than the TTL still gets everything live.
        wait_until_older_than(first, TTL * 1000 + 100)
        i = publish_ok(h.port, ch, "later")
        assert s.next_event().raw == wire_event(i, b"later")
        s.assert_no_event(0.3)


def test_eventsource_resuming_after_the_ttl_sees_the_gap(h):
    for _ in range(3):
        ch = uniq("es")
        old = publish_ok(h.port, ch, "old")
        wait_until_older_than(old, TTL * 1000 + 100)
        new = publish_ok(h.port, ch, "new")
        node = NodeClient(h.url("/ttl" + chan_query(ch)), 2, timeout=10, last_event_id=old)
        try:
            final, events = node.result()
            served = now_ms()
        finally:
            node.close()
        # A loaded machine may start node more than the TTL after "new" was
        # published: then "new" had expired too, and the run proves nothing.
        if final == "done" or served - stamp_ms(new) <= TTL * 1000:
            break
    assert final == "done", node.lines
    assert_still_inside(new, served)
    assert [(e["type"], e["lastEventId"]) for e in events] == [("sse-gap", old), ("message", new)]
    assert json.loads(events[0]["data"]) == {"last_event_id": old, "oldest_id": new}
    assert events[1]["data"] == "new"
