"""Fan-out: exactly which events each stream receives when many are
published at once, on several channels, from several publishers, across
several child processes.

These tests pin down the delivery contract that the child's dispatcher and
registry (sse_dispatch.c, sse_registry.c) and the cross-process wake-up
(sse_ring.c, sse_store.c, sse_wake.c) must keep
however they are optimised, for example when pending events are written to a
stream in one system call, or when a publish wakes only the children that
have subscribers on its channels:

  - every subscriber gets every event of its channels exactly once, in the
    order of their ids (the ring's order), with the exact bytes and ids the
    publish responses returned, and nothing else;
  - a stream on several channels gets one interleaved sequence, each event
    once even when it was published to more than one of its channels, and
    resuming from any id it received gives exactly what followed;
  - a subscriber whose child held no stream of the channel before is
    served from the very next event, and gets nothing published before it
    subscribed;
  - a DELETE ends the streams of the channel after the events published
    before it, cleanly, and leaves other channels alone;
  - a quiet channel is unaffected by other channels overrunning the ring.

Both ways a stream is written are covered: by the dispatcher straight to the
socket (/fan, the default) and through the output filters (/fan-filtered,
`SSEDirectWrite off`). Servers use few threads (event MPM) or prefork, so
that streams spread over several child processes.

No assertion is about time: timeouts only keep a failing test from hanging.
"""
import json
import socket
import threading
import time

import pytest

from ssetest.channels import chan_query, uniq
from ssetest.clients import request, subscribe
from ssetest.delivery import (DIRECT, FILTERED, STREAM_LOCATIONS, Publisher, assert_events,
                              assert_stream_is, close_all, publish_burst, receive, sent_record)
from ssetest.httpd import Httpd
from ssetest.publish import pub_raw, wait_subscribers
from ssetest.servers import _track
from ssetest.wire import assert_strictly_increasing, server_id_key

# Four threads per child under event: a handful of streams needs several
# children. No child is retired for being idle (MaxSpare* = the maximum).
FANOUT_MPM = {
    "event": """
StartServers 4
ServerLimit 8
ThreadLimit 4
ThreadsPerChild 4
MinSpareThreads 4
MaxSpareThreads 32
MaxRequestWorkers 32
MaxConnectionsPerChild 0
""",
    "prefork": """
StartServers 8
MinSpareServers 4
MaxSpareServers 48
ServerLimit 48
MaxRequestWorkers 48
MaxConnectionsPerChild 0
""",
}
FANOUT_MPMS = tuple(FANOUT_MPM)


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def _fan_servers():
    made = {}

    def get(mpm):
        h = made.get(mpm)
        if h is None or not h.running():
            h = made[mpm] = Httpd(mpm=mpm, mpm_conf=FANOUT_MPM[mpm], conf=STREAM_LOCATIONS,
                                  name=f"fanout-{mpm}")
            h.start()
        return h

    yield get
    for h in made.values():
        h.cleanup()


@pytest.fixture(params=FANOUT_MPMS)
def fsrv(_fan_servers, request):
    """A server per MPM with /fan and /fan-filtered, shared by this module."""
    h = _fan_servers(request.param)
    _track(request, f"fanout {request.param}", h, h.log_mark())
    return h


# --------------------------------------------------------------------------
# publishing
# --------------------------------------------------------------------------

def burst(n, channels_of, tag):
    """n events for one JSON publish; channels_of(k) names event k's
    channel(s). Some have a type, some two lines of data."""
    events = []
    for k in range(n):
        ev = {"channel": channels_of(k), "data": f"{tag} {k:03d}"}
        if k % 5 == 4:
            ev["event"] = "tick"
        if k % 7 == 6:
            ev["data"] += "\nsecond line"
        events.append(ev)
    return events


def pipelined(port, requests):
    """Sends raw HTTP/1.1 requests back to back on one connection (the last
    one closes it): httpd serves each right after the previous one, with no
    client round trip between. Returns [(status, JSON body)]."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as so:
        so.sendall(b"".join(requests))
        data = b""
        while True:
            more = so.recv(65536)
            if not more:
                break
            data += more
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = [int(ln.split(":", 1)[1]) for ln in lines[1:]
                  if ln.lower().startswith("content-length:")][0]
        out.append((int(lines[0].split()[1]), json.loads(rest[:length])))
        data = rest[length:]
    return out


# --------------------------------------------------------------------------
# receiving
# --------------------------------------------------------------------------

def assert_ended_after(s, want, who):
    """s received exactly want (Sent records), then ended cleanly."""
    assert_events(receive(s, len(want)), want, who)
    assert s.wait_eof(30), f"{who}: stream not ended after DELETE"
    assert s.clean_end, f"{who}: stream of a deleted channel should end cleanly"
    assert_stream_is(s, want, who)


def child_of(h, s):
    pid = h.wait_pid_of_client(s.client_port)
    assert pid, f"no child holds the connection of {s.path}"
    return pid


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def test_burst_reaches_every_stream_exactly_once_in_order(fsrv):
    """Two requests of 200 events each, back to back, to one channel: three
    directly written and three filtered streams each get all 400, in order,
    with the ids the responses gave, once."""
    port = fsrv.port
    chan = uniq("burst")
    mark = fsrv.log_mark()
    subs = [subscribe(port, chan, path=p) for p in (DIRECT, FILTERED) * 3]
    try:
        wait_subscribers(port, chan, 6)
        sent = []
        for rnd in range(2):
            sent += publish_burst(port, burst(200, lambda k: chan, f"round{rnd}"),
                                  subscribers=lambda ev: 6)
        assert_strictly_increasing([x.id for x in sent])
        for s in subs:
            assert_events(receive(s, len(sent)), sent, s.path)
        for s in subs:
            assert_stream_is(s, sent, s.path)
        # One line per stream opened since the mark: these six.
        log = fsrv.log_since(mark)
        assert log.count("SSE00304:") == 3, log[-3000:]    # written directly by the dispatcher
        assert log.count("SSE00308:") == 3, log[-3000:]    # written through the output filters
    finally:
        close_all(subs)


def test_interleaved_channels_and_resume(fsrv):
    """Events alternating between a and b (some on both), in one request and
    as rapid separate requests: a stream on a+b gets them all in publish
    order, each once; one on a gets exactly the a events. Resuming the a+b
    stream from the 10th event it got gives exactly the rest."""
    port = fsrv.port
    a, b = uniq("ia"), uniq("ib")

    def channels_of(k):
        return [a, b] if k % 10 == 9 else (a if k % 2 == 0 else b)

    def mine(sent, chans):
        return [x for x in sent if set(x.channels) & set(chans)]

    def counted(ev):
        """What a publish response reports: subscribers summed over the
        event's channels (4 streams have a, 2 have b)."""
        chans = [ev["channel"]] if isinstance(ev["channel"], str) else ev["channel"]
        return sum({a: 4, b: 2}[c] for c in chans)

    streams = {(path, chans): subscribe(port, list(chans), path=path)
               for path in (DIRECT, FILTERED) for chans in ((a, b), (a,))}
    try:
        wait_subscribers(port, a, 4)
        wait_subscribers(port, b, 2)
        sent = publish_burst(port, burst(120, channels_of, "one"), subscribers=counted)
        pub = Publisher(port)
        try:
            for k in range(120):
                sent.append(pub.one(channels_of(k), f"separate {k:03d}",
                                    "tock" if k % 3 == 2 else None))
        finally:
            pub.close()
        assert_strictly_increasing([x.id for x in sent])
        for (path, chans), s in streams.items():
            want = mine(sent, chans)
            assert_events(receive(s, len(want)), want, f"{path} {chans}")
            assert_stream_is(s, want, f"{path} {chans}")

        # Reconnect the a+b streams from the 10th event they received.
        for path in (DIRECT, FILTERED):
            old = streams.pop((path, (a, b)))
            tenth = old.events()[9].id
            old.close()
            assert tenth == sent[9].id
            with subscribe(port, [a, b], path=path, headers={"Last-Event-ID": tenth}) as s:
                assert_events(receive(s, len(sent) - 10), sent[10:], f"{path} resumed")
                live = publish_burst(port, [{"channel": b, "data": "live after resume"}])
                assert_events(receive(s, 1), live, f"{path} resumed, live")
                sent += live
                assert_stream_is(s, sent[10:], f"{path} resumed")
    finally:
        close_all(streams.values())


def test_concurrent_publishers_reach_streams_in_every_child(fsrv):
    """4 publishers (two one event per request, two JSON arrays of 10, all
    keep-alive) publish 300 events each while streams in 4 children
    receive: every stream gets all 1,200 exactly once in id order, each
    publisher's own in its own order."""
    h = fsrv
    chan = uniq("conc")
    subs, pids = [], []
    try:
        # Keep subscribing until 4 children hold streams of the channel: a
        # child whose 4 threads are busy accepts no more, so 13 streams are
        # in 4 children at least.
        while len(set(pids)) < 4 and len(subs) < 13:
            subs.append(subscribe(h.port, chan, path=(DIRECT, FILTERED)[len(subs) % 2]))
            pids.append(child_of(h, subs[-1]))
        assert len(set(pids)) == 4, pids
        wait_subscribers(h.port, chan, len(subs))

        per_pub = [[] for _ in range(4)]
        errors = []

        def publisher(p):
            pub = Publisher(h.port)
            try:
                if p < 2:
                    for k in range(300):
                        per_pub[p].append(pub.one(chan, f"p{p}-{k:03d}"))
                else:
                    for batch in range(30):
                        events = [{"channel": chan, "data": f"p{p}-{batch * 10 + k:03d}"}
                                  for k in range(10)]
                        ids = pub.many(events)
                        per_pub[p] += [sent_record(i, chan, ev["data"])
                                       for i, ev in zip(ids, events)]
            except Exception as e:      # reported by the main thread
                errors.append((p, repr(e)))
            finally:
                pub.close()

        threads = [threading.Thread(target=publisher, args=(p,)) for p in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not any(t.is_alive() for t in threads), "publishers did not finish"
        assert not errors, errors
        for own in per_pub:
            assert len(own) == 300
            assert_strictly_increasing([x.id for x in own])
        everything = sorted((x for own in per_pub for x in own), key=lambda x: server_id_key(x.id))
        assert len({x.id for x in everything}) == 1200

        for s, pid in zip(subs, pids):
            who = f"{s.path} in child {pid}"
            got = receive(s, 1200)
            assert_strictly_increasing([e.id for e in got])
            for p, own in enumerate(per_pub):
                mine = [e.data for e in got if e.data.startswith(f"p{p}-".encode())]
                assert mine == [x.data.encode() for x in own], f"{who}: publisher {p} out of order"
            assert_events(got, everything, who)
            assert_stream_is(s, everything, who)
    finally:
        close_all(subs)


def test_first_stream_of_a_channel_in_a_child_gets_the_next_event(fsrv):
    """Streams join one at a time, several in children that held no stream
    of the channel; after each is counted, one event is published: every
    stream, the new one included, gets exactly that event next, and nothing
    published before it subscribed."""
    h = fsrv
    chan = uniq("fresh")
    subs, sent, fresh = [], [], 0
    seen = set()
    try:
        for k in range(8):
            s = subscribe(h.port, chan, path=(DIRECT, FILTERED)[k % 2])
            pid = child_of(h, s)
            fresh += pid not in seen
            seen.add(pid)
            subs.append((s, len(sent)))
            wait_subscribers(h.port, chan, k + 1)
            r = pub_raw(h.port, chan, f"after subscriber {k}", event="joined")
            assert r.status == 200 and r.json["subscribers"] == k + 1, r
            sent.append(sent_record(r.json["id"], chan, f"after subscriber {k}", "joined"))
            for n, (t, _) in enumerate(subs):
                assert_events(receive(t, 1, timeout=5), sent[-1:],
                              f"subscriber {n} on {t.path}, event {k}")
        # Under prefork each child holds one stream: all 8 are fresh. With
        # threads (4 per child, some busy with the publishes) the 8 streams
        # need at least two children; which children accept them is the
        # kernel's choice, so how many is not determined.
        assert fresh >= (8 if h.mpm == "prefork" else 2), seen
        for n, (t, first) in enumerate(subs):
            assert_stream_is(t, sent[first:], f"subscriber {n} on {t.path}")
    finally:
        close_all(t for t, _ in subs)


def test_delete_between_bursts(fsrv):
    """A DELETE between two bursts ends every stream of the channel cleanly
    right after the events published before it (filtered and direct, and a
    stream that also has another channel); the other channel's stream goes
    on; a new stream of the channel gets what is published after."""
    port = fsrv.port
    c, d = uniq("del"), uniq("keep")
    ended = {
        "c direct 1": subscribe(port, c, path=DIRECT),
        "c direct 2": subscribe(port, c, path=DIRECT),
        "c filtered": subscribe(port, c, path=FILTERED),
        "c+d direct": subscribe(port, [c, d], path=DIRECT),
    }
    keeps = subscribe(port, d, path=DIRECT)
    later = None
    try:
        wait_subscribers(port, c, 4)
        wait_subscribers(port, d, 2)
        before = publish_burst(port, burst(100, lambda k: d if k % 10 == 9 else c, "before"))
        r = request(port, "DELETE", "/pub" + chan_query(c))
        assert r.status == 200, r
        assert r.json == {"channel": c, "messages": 90, "subscribers": 4}, r
        later = subscribe(port, c, path=DIRECT)
        wait_subscribers(port, c, 1)
        after = publish_burst(port, burst(50, lambda k: d if k % 10 == 9 else c, "after"))

        for who, s in ended.items():
            assert_ended_after(s, [x for x in before if set(x.channels) &
                                   ({c, d} if "+d" in who else {c})], who)
        want = [x for x in before + after if d in x.channels]
        assert_events(receive(keeps, len(want)), want, "d only")
        assert not keeps.eof
        want = [x for x in after if c in x.channels]
        assert_events(receive(later, len(want)), want, "c, subscribed after the DELETE")
        assert_stream_is(later, want, "c, subscribed after the DELETE")
    finally:
        close_all(list(ended.values()) + [keeps] + ([later] if later else []))


def test_delete_right_behind_a_burst(fsrv):
    """A burst and a DELETE pipelined on one connection, so that the
    dispatchers often find both in the ring at once: the streams get the
    whole burst, then end cleanly. Several rounds, as that is a race."""
    port = fsrv.port
    for rnd in range(5):
        chan = uniq(f"pipe{rnd}")
        subs = {"direct 1": subscribe(port, chan, path=DIRECT),
                "direct 2": subscribe(port, chan, path=DIRECT),
                "filtered": subscribe(port, chan, path=FILTERED)}
        try:
            wait_subscribers(port, chan, 3)
            events = burst(20, lambda k: chan, f"round{rnd}")
            body = json.dumps(events).encode()
            (st1, ids), (st2, deleted) = pipelined(port, [
                b"POST /pub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body,
                f"DELETE /pub{chan_query(chan)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Connection: close\r\n\r\n".encode()])
            assert (st1, st2) == (200, 200), (ids, deleted)
            assert deleted == {"channel": chan, "messages": 20, "subscribers": 3}, deleted
            sent = [sent_record(item["id"], chan, ev["data"], ev.get("event"))
                    for item, ev in zip(ids, events)]
            for who, s in subs.items():
                assert_ended_after(s, sent, f"round {rnd}, {who}")
        finally:
            close_all(subs.values())


def test_delete_while_a_publisher_is_publishing(fsrv):
    """A DELETE sent while a publisher publishes to the channel as fast as
    it can: each stream gets a prefix of what was published, the same one,
    containing at least every event acknowledged before the DELETE was sent
    and nothing sent after its response, as many as the DELETE dropped;
    then the stream ends cleanly."""
    port = fsrv.port
    chan = uniq("deleting")
    subs = {p: subscribe(port, chan, path=p) for p in (DIRECT, FILTERED)}
    subs["second direct"] = subscribe(port, chan, path=DIRECT)
    published, errors = [], []
    started = [0]
    stop = threading.Event()

    def publisher():
        pub = Publisher(port)
        try:
            k = 0
            while not stop.is_set() and k < 2000:
                started[0] = k + 1
                published.append(pub.one(chan, f"rapid {k:04d}"))
                k += 1
        except Exception as e:
            errors.append(repr(e))
        finally:
            pub.close()

    t = threading.Thread(target=publisher)
    try:
        wait_subscribers(port, chan, 3)
        t.start()
        deadline = time.monotonic() + 60
        while len(published) < 30 and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        acked_before = len(published)
        r = request(port, "DELETE", "/pub" + chan_query(chan))
        started_by = started[0]
        # Some more after the DELETE: they must not reach the old streams.
        while len(published) < started_by + 20 and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        stop.set()
        t.join(60)
        assert not errors, errors
        assert r.status == 200, r
        assert acked_before >= 30, "the publisher did not get going"
        dropped = r.json["messages"]
        assert r.json == {"channel": chan, "messages": dropped, "subscribers": 3}, r
        assert acked_before <= dropped <= started_by, (acked_before, dropped, started_by)
        for who, s in subs.items():
            assert_ended_after(s, published[:dropped], who)
    finally:
        stop.set()
        if t.is_alive():
            t.join(60)
        close_all(subs.values())


def test_publish_to_many_channels_at_once(fsrv):
    """One request with events on 60 channels, then one on 70 (a publish
    that touches many channels must still reach each one's streams): the
    streams of a few of them (seven: several children) get exactly their
    events."""
    port = fsrv.port
    chans = [uniq(f"many{k}") for k in range(70)]
    watched = {"0": [chans[0]], "1": [chans[1]], "59": [chans[59]], "63": [chans[63]],
               "64": [chans[64]], "69": [chans[69]], "5+66": [chans[5], chans[66]]}
    subs = {who: subscribe(port, cs, path=(DIRECT, FILTERED)[n % 2])
            for n, (who, cs) in enumerate(watched.items())}
    try:
        for cs in watched.values():
            for c in cs:
                wait_subscribers(port, c, 1)
        sent = publish_burst(port, burst(60, lambda k: chans[k], "sixty"))
        sent += publish_burst(port, burst(70, lambda k: chans[k], "seventy"))
        for who, s in subs.items():
            want = [x for x in sent if set(x.channels) & set(watched[who])]
            assert_events(receive(s, len(want)), want, f"channel {who}")
            assert_stream_is(s, want, f"channel {who}")
    finally:
        close_all(subs.values())


@pytest.mark.parametrize("mpm", FANOUT_MPMS)
def test_quiet_channel_while_others_overrun_the_ring(httpd, mpm):
    """Other channels (without subscribers) overrun a 64K ring several
    times: the streams of a quiet channel get its next event exactly, with
    no sse-gap, and resuming from its last id (itself overwritten, what
    follows it retained) gives exactly what followed."""
    h = httpd(mpm=mpm, mpm_conf=FANOUT_MPM[mpm], conf=STREAM_LOCATIONS, server_conf="SSEBufferSize 64K")
    quiet, noisy = uniq("quiet"), uniq("noisy")
    subs = [subscribe(h.port, quiet, path=p) for p in (DIRECT, FILTERED, DIRECT)]
    try:
        wait_subscribers(h.port, quiet, 3)
        first = publish_burst(h.port, [{"channel": quiet, "data": "before the flood"}])
        for s in subs:
            assert_events(receive(s, 1), first, s.path)
        for rnd in range(6):        # 6 x 50 x 1 KB: about five times the ring
            publish_burst(h.port, [{"channel": noisy, "data": f"{rnd}:{k:02d} " + "n" * 1000}
                                   for k in range(50)])
        then = publish_burst(h.port, [{"channel": quiet, "data": "after the flood"}])
        for s in subs:
            assert_events(receive(s, 1), then, s.path)
            assert_stream_is(s, first + then, s.path)
        with subscribe(h.port, quiet, path=DIRECT, headers={"Last-Event-ID": first[0].id}) as s:
            assert_events(receive(s, 1), then, "resumed")
            assert_stream_is(s, then, "resumed")
    finally:
        close_all(subs)
