"""Load: the publish endpoint flooded from many keep-alive connections at
once while streams receive (issue 14).

16 publisher threads, each on its own keep-alive connection (half to a
location with SSEPublishKeepAliveWait 10ms, half without), publish 3,200
requests in all as fast as they are answered: mostly one raw event on one
of 4 channels, every tenth request a JSON array of 5 events, some of them
on two channels. Streams on each channel, and on all four, are written
directly by the dispatcher or through the output filters.

Expected: every event acknowledged (200 with its id) arrives exactly once at
every stream subscribed to one of its channels, in id order, with the bytes
and ids of the publish answers, and nothing else; the streams keep
receiving while the flood goes on (every event acknowledged by the time
each publisher is half-way through reaches every stream, whether or not the
others have finished).

The expectation is built from the publish answers only, never from what the
server reports otherwise. No assertion is about time: timeouts only keep a
failing test from hanging.
"""
import threading

from ssetest.channels import uniq
from ssetest.clients import read_all, subscribe
from ssetest.delivery import (DIRECT, FILTERED, STREAM_LOCATIONS, Publisher, assert_stream_is,
                              close_all, events_body, expected_events, expected_wire,
                              has_received, sent_record)
from ssetest.publish import wait_subscribers
from ssetest.wire import assert_strictly_increasing, server_id_key

PUBLISHERS = 16
REQUESTS = 200          # per publisher: every tenth a JSON array of 5 events
EVENTS = REQUESTS - REQUESTS // 10 + 5 * (REQUESTS // 10)     # per publisher
CHANNELS = 4
TIMEOUT = 300           # only against hanging

LOAD_CONF = STREAM_LOCATIONS + """
<Location /pub-wait>
    SetHandler sse-publish
    SSEPublishKeepAliveWait 10ms
</Location>
"""


def last_id_key(s):
    evs = s.events()
    return server_id_key(evs[-1].id) if evs else (-1, -1)


def test_publish_flood_reaches_every_stream_exactly_once_in_order(httpd):
    h = httpd(mpm="event", conf=LOAD_CONF)
    chans = [uniq(f"load{k}") for k in range(CHANNELS)]
    # Per channel one direct and one filtered stream; two streams on all.
    wanted = [[c] for c in chans for _ in (DIRECT, FILTERED)] + [chans, chans]
    paths = [DIRECT, FILTERED] * CHANNELS + [DIRECT, FILTERED]
    subs = [subscribe(h.port, cs, path=p, timeout=TIMEOUT) for cs, p in zip(wanted, paths)]
    streams = dict(zip(subs, wanted))
    per_pub = [[] for _ in range(PUBLISHERS)]
    halfway = [threading.Event() for _ in range(PUBLISHERS)]
    errors = []

    def publisher(p):
        pub = Publisher(h.port, "/pub-wait" if p % 2 else "/pub")
        try:
            for k in range(REQUESTS):
                if k % 10 == 9:
                    events = [{"channel": chans[(p + k + j) % CHANNELS], "data": f"p{p} {k}.{j}"}
                              for j in range(4)]
                    events.append({"channel": [chans[p % CHANNELS], chans[(p + 1) % CHANNELS]],
                                   "event": "both", "data": f"p{p} {k}.4\nsecond line"})
                    per_pub[p] += [sent_record(i, ev["channel"], ev["data"], ev.get("event"))
                                   for i, ev in zip(pub.many(events), events)]
                else:
                    per_pub[p].append(pub.one(chans[(p + k) % CHANNELS], f"p{p} {k}"))
                if k == REQUESTS // 2:
                    halfway[p].set()
        except Exception as e:      # reported by the main thread
            errors.append((p, repr(e)))
        finally:
            halfway[p].set()
            pub.close()

    threads = [threading.Thread(target=publisher, args=(p,)) for p in range(PUBLISHERS)]
    try:
        for c in chans:
            wait_subscribers(h.port, c, 4)
        for t in threads:
            t.start()
        # Read while the flood goes on; at half-way, what was acknowledged
        # so far must reach every stream, the flood notwithstanding.
        while not all(e.is_set() for e in halfway):
            read_all(subs, lambda s: False, 0.2)
        early = [x for own in per_pub for x in list(own)]
        marks = {s: max((server_id_key(x.id) for x in early if set(x.channels) & set(cs)),
                        default=(-1, -1)) for s, cs in streams.items()}
        late = read_all(subs, lambda s: last_id_key(s) >= marks[s], TIMEOUT)
        assert not late, [(s.path, len(s.events())) for s in late]

        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads), "publishers did not finish"
        assert not errors, errors
        for own in per_pub:
            assert len(own) == EVENTS
            assert_strictly_increasing([x.id for x in own])
        sent = [x for own in per_pub for x in own]
        assert len({x.id for x in sent}) == len(sent) == PUBLISHERS * EVENTS

        wants = {s: expected_wire(sent, cs) for s, cs in streams.items()}
        late = read_all(subs, lambda s: has_received(s, wants[s]), TIMEOUT)
        assert not late, [(s.path, len(events_body(s)), len(wants[s])) for s in late]
        for s, cs in streams.items():
            assert_stream_is(s, expected_events(sent, cs), f"{s.path} on {len(cs)} channel(s)")
            assert not s.eof, s.path
    finally:
        for t in threads:
            t.join(TIMEOUT)
        close_all(subs)
