"""Resume: Last-Event-ID / lastEventId replay, publisher-chosen ids, sse-gap
when the ring no longer holds what was asked for."""
import json
import threading
import time

import pytest

from ssetest.channels import chan_query, q, uniq
from ssetest.clients import NodeClient, SSEClient, subscribe
from ssetest.publish import channel_info, pub_raw, publish_ok
from ssetest.ring import retained_events
from ssetest.wire import assert_strictly_increasing, wire_event


def gap_event(asked, oldest):
    data = json.dumps({"last_event_id": asked, "oldest_id": oldest}, separators=(",", ":"))
    return b"id: " + asked.encode() + b"\nevent: sse-gap\ndata: " + data.encode() + b"\n\n"


def publish_n(port, chan, n, prefix="e"):
    return [(publish_ok(port, chan, f"{prefix}{i}"), f"{prefix}{i}".encode()) for i in range(n)]


def test_last_event_id_header_replays_then_live(mpm_srv, chan):
    port = mpm_srv.port
    sent = publish_n(port, chan, 5)
    with subscribe(port, chan, headers={"Last-Event-ID": sent[1][0]}) as s:
        evs = s.next_events(3)
        assert [e.raw for e in evs] == [wire_event(i, d) for i, d in sent[2:]]
        s.assert_no_event(0.5)
        i = publish_ok(port, chan, "live")
        assert s.next_event().raw == wire_event(i, b"live")
        s.assert_no_event(0.3)
        # The replay is the very first thing on the stream.
        assert s.body_without_heartbeats() == b"".join(
            wire_event(i, d) for i, d in sent[2:]) + wire_event(i, b"live")


def test_last_event_id_query_parameter(srv, chan):
    sent = publish_n(srv.port, chan, 4)
    with subscribe(srv.port, chan, extra_query="lastEventId=" + q(sent[0][0])) as s:
        assert [e.raw for e in s.next_events(3)] == [wire_event(i, d) for i, d in sent[1:]]
        s.assert_no_event(0.5)


def test_header_wins_over_query_parameter(srv, chan):
    sent = publish_n(srv.port, chan, 5)
    with subscribe(srv.port, chan, extra_query="lastEventId=" + q(sent[0][0]),
                   headers={"Last-Event-ID": sent[3][0]}) as s:
        assert [e.id for e in s.next_events(1)] == [sent[4][0]]
        s.assert_no_event(0.5)


def test_replay_of_latest_id_sends_nothing_old(srv, chan):
    sent = publish_n(srv.port, chan, 3)
    with subscribe(srv.port, chan, headers={"Last-Event-ID": sent[-1][0]}) as s:
        s.assert_no_event(0.7)
        i = publish_ok(srv.port, chan, "next")
        assert s.next_event().raw == wire_event(i, b"next")


def test_replay_only_subscribed_channels_in_global_order(mpm_srv):
    port = mpm_srv.port
    a, b, c = uniq("a"), uniq("b"), uniq("c")
    order = [a, b, c, a, c, b, b, a]
    sent = [(ch, publish_ok(port, ch, f"{ch}:{k}")) for k, ch in enumerate(order)]
    first_a = sent[0][1]
    want = [(i, f"{ch}:{k}".encode()) for k, (ch, i) in enumerate(sent) if ch in (a, b) and k > 0]
    with subscribe(port, [a, b], headers={"Last-Event-ID": first_a}) as s:
        evs = s.next_events(len(want))
        assert [(e.id, e.data) for e in evs] == want
        s.assert_no_event(0.5)
    # An id that belongs to another channel is still a position in time.
    from_c = sent[2][1]
    want_c = [(i, f"{ch}:{k}".encode()) for k, (ch, i) in enumerate(sent) if ch in (a, b) and k > 2]
    with subscribe(port, [a, b], headers={"Last-Event-ID": from_c}) as s:
        assert [(e.id, e.data) for e in s.next_events(len(want_c))] == want_c
        s.assert_no_event(0.5)


def test_publisher_chosen_id_replay(mpm_srv, chan):
    port = mpm_srv.port
    ia = publish_ok(port, chan, "A", id="alpha")
    ib = publish_ok(port, chan, "B", id="beta")
    i3 = publish_ok(port, chan, "server")
    ig = publish_ok(port, chan, "G", id="gamma")
    assert (ia, ib, ig) == ("alpha", "beta", "gamma")
    with subscribe(port, chan, headers={"Last-Event-ID": "beta"}) as s:
        evs = s.next_events(2)
        assert [e.raw for e in evs] == [wire_event(i3, b"server"), wire_event("gamma", b"G")]
        s.assert_no_event(0.5)
    with subscribe(port, chan, headers={"Last-Event-ID": "gamma"}) as s:
        s.assert_no_event(0.5)
        i = publish_ok(port, chan, "after gamma")
        assert s.next_event().raw == wire_event(i, b"after gamma")


def test_unknown_publisher_id_gives_gap_then_everything(srv, chan):
    sent = publish_n(srv.port, chan, 3)
    with subscribe(srv.port, chan, headers={"Last-Event-ID": "no-such-id"}) as s:
        evs = s.next_events(4)
        assert evs[0].raw == gap_event("no-such-id", sent[0][0])
        assert [e.raw for e in evs[1:]] == [wire_event(i, d) for i, d in sent]
        s.assert_no_event(0.5)
        assert s.body_without_heartbeats() == b"".join(e.raw for e in evs)


def test_gap_for_unknown_id_on_empty_channel(srv, chan):
    with subscribe(srv.port, chan, headers={"Last-Event-ID": "whatever"}) as s:
        assert s.next_event().raw == gap_event("whatever", None)
        s.assert_no_event(0.5)
        i = publish_ok(srv.port, chan, "live")
        assert s.next_event().raw == wire_event(i, b"live")


def test_replay_exactly_once_while_publishing(mpm_srv, chan):
    """Events published while the subscriber is replaying are neither lost
    nor duplicated at the replay/live boundary."""
    port = mpm_srv.port
    first = publish_ok(port, chan, "start")
    published = []
    errors = []
    stop = threading.Event()

    def publisher():
        k = 0
        while not stop.is_set() and k < 300:
            r = pub_raw(port, chan, f"p{k}")
            if r.status != 200:
                errors.append(r)
                return
            published.append((r.json["id"], f"p{k}".encode()))
            k += 1

    t = threading.Thread(target=publisher)
    t.start()
    try:
        time.sleep(0.2)
        subs = []
        for _ in range(5):
            subs.append(subscribe(port, chan, headers={"Last-Event-ID": first}))
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(60)
    try:
        assert not errors, errors
        assert published
        want = [i for i, _ in published]
        for s in subs:
            evs = s.next_events(len(published), timeout=20)
            assert [(e.id, e.data) for e in evs] == published
            s.assert_no_event(0.2)
        assert_strictly_increasing(want)
    finally:
        for s in subs:
            s.close()


def test_ring_wrap_gap(httpd):
    h = httpd(server_conf="SSEBufferSize 64K")
    g = uniq("wrap")
    first = publish_ok(h.port, g, "first")
    payload = lambda k: (f"{k:04d}-" + "w" * 2000).encode()
    sent = [(publish_ok(h.port, g, payload(k)), payload(k)) for k in range(120)]
    # What a 64K ring holds of these, from their ids and sizes.
    retained = retained_events([(first, b"first")] + sent, 64 * 1024)
    assert retained[0] in sent[1:], "the ring should have wrapped (64K, 120 x 2K events)"
    oldest = retained[0][0]
    with subscribe(h.port, g, headers={"Last-Event-ID": first}) as s:
        gap = s.next_event()
        assert gap.event == "sse-gap"
        info = json.loads(gap.data)
        assert set(info) == {"last_event_id", "oldest_id"}
        assert info["last_event_id"] == first
        assert info["oldest_id"] == oldest
        assert gap.raw == gap_event(first, oldest)
        evs = s.next_events(len(retained), timeout=15)
        assert [e.raw for e in evs] == [wire_event(i, d) for i, d in retained]
        s.assert_no_event(0.5)
        live = publish_ok(h.port, g, "live")
        assert s.next_event().raw == wire_event(live, b"live")
    info = channel_info(h.port, g)
    # "live" may itself push the oldest events out of the full ring: the
    # same computation says how many are left.
    after = retained_events([(first, b"first")] + sent + [(live, b"live")], 64 * 1024)
    assert info.json["messages"] == len(after), info
    assert info.json["last_id"] == live
    # A subscriber that was not too far behind gets no gap.
    with subscribe(h.port, g, headers={"Last-Event-ID": sent[-2][0]}) as s:
        evs = s.next_events(2)
        assert [e.raw for e in evs] == [wire_event(sent[-1][0], sent[-1][1]), wire_event(live, b"live")]


def test_gap_when_channel_lost_everything(httpd):
    h = httpd(server_conf="SSEBufferSize 64K")
    quiet, noisy = uniq("quiet"), uniq("noisy")
    q1 = publish_ok(h.port, quiet, "q1")
    q2 = publish_ok(h.port, quiet, "q2")
    noise = [(publish_ok(h.port, noisy, b"n" * 2000), b"n" * 2000) for k in range(80)]
    # The 64K ring keeps only noisy events now (from their ids and sizes).
    kept = retained_events([(q1, b"q1"), (q2, b"q2")] + noise, 64 * 1024)
    assert kept == noise[-len(kept):] and len(kept) < len(noise)
    # The channel is still known (it published, and the table is far from
    # full), with nothing retained; its last id stays the last it published.
    info = channel_info(h.port, quiet)
    assert info.status == 200 and info.json == {
        "channel": quiet, "subscribers": 0, "messages": 0, "last_id": q2}, info
    with subscribe(h.port, quiet, headers={"Last-Event-ID": q1}) as s:
        assert s.next_event().raw == gap_event(q1, None)
        s.assert_no_event(0.5)
        i = publish_ok(h.port, quiet, "q3")
        assert s.next_event().raw == wire_event(i, b"q3")


def test_initial_replay_after_wrap_is_contiguous(httpd):
    h = httpd(server_conf="SSEBufferSize 64K",
              conf="<Location /replay>\n SetHandler sse-stream\n SSEInitialReplay 1000\n</Location>")
    g = uniq("iw")
    sent = [(publish_ok(h.port, g, f"{k}:" + "r" * 1500), (f"{k}:" + "r" * 1500).encode())
            for k in range(100)]
    # What a 64K ring holds of these, from their ids and sizes.
    n = len(retained_events(sent, 64 * 1024))
    assert 0 < n < 100
    with subscribe(h.port, g, path="/replay") as s:
        evs = s.next_events(n)
        assert [e.raw for e in evs] == [wire_event(i, d) for i, d in sent[-n:]]
        s.assert_no_event(0.5)
    assert channel_info(h.port, g).json["messages"] == n


def test_node_eventsource_last_event_id(srv, chan):
    sent = publish_n(srv.port, chan, 3)
    node = NodeClient(srv.url("/events" + chan_query(chan)), 3, timeout=15,
                      last_event_id=sent[0][0])
    try:
        node.wait_open()
        i = publish_ok(srv.port, chan, "live")
        final, events = node.result()
    finally:
        node.close()
    assert final == "done", node.lines
    assert [(e["type"], e["data"], e["lastEventId"]) for e in events] == [
        ("message", "e1", sent[1][0]), ("message", "e2", sent[2][0]), ("message", "live", i)]


def test_node_eventsource_sees_gap_event(srv, chan):
    sent = publish_n(srv.port, chan, 2)
    node = NodeClient(srv.url("/events" + chan_query(chan)), 3, timeout=15,
                      last_event_id="forgotten")
    try:
        final, events = node.result()
    finally:
        node.close()
    assert final == "done", node.lines
    assert events[0]["type"] == "sse-gap"
    assert json.loads(events[0]["data"]) == {"last_event_id": "forgotten", "oldest_id": sent[0][0]}
    assert events[0]["lastEventId"] == "forgotten"
    assert [(e["type"], e["data"], e["lastEventId"]) for e in events[1:]] == [
        ("message", "e0", sent[0][0]), ("message", "e1", sent[1][0])]


def test_last_event_id_overrides_initial_replay(srv, chan):
    sent = publish_n(srv.port, chan, 6)
    # /events-replay replays the last 3 to newcomers; a resuming client gets
    # everything after its id instead (here 5 events).
    with subscribe(srv.port, chan, path="/events-replay", headers={"Last-Event-ID": sent[0][0]}) as s:
        assert [e.raw for e in s.next_events(5)] == [wire_event(i, d) for i, d in sent[1:]]
        s.assert_no_event(0.5)
