"""Exactly what each stream must receive: the record of a published event as
a subscriber must see it (Sent), publishing bursts and keep-alive publishers
that return those records, and the assertions that compare a stream with
them. Used by the fan-out and load tests and by the soak (tests/soak.py).

The two ways a stream is written have a location each in STREAM_LOCATIONS:
by the dispatcher straight to the socket (DIRECT, the default) and through
the output filters (FILTERED, `SSEDirectWrite off`)."""
import http.client
import json
from collections import namedtuple

from .channels import chan_query
from .publish import pub_json
from .wire import HEARTBEAT, server_id_key, wire_event

DIRECT = "/fan"
FILTERED = "/fan-filtered"

# Heartbeats every second: a stream whose client has gone is noticed (and its
# thread freed) within a second or two.
STREAM_LOCATIONS = f"""
<Location {DIRECT}>
    SetHandler sse-stream
    SSEHeartbeat 1
</Location>
<Location {FILTERED}>
    SetHandler sse-stream
    SSEHeartbeat 1
    SSEDirectWrite off
</Location>
"""

# One published event as a subscriber must see it.
Sent = namedtuple("Sent", "id channels data wire")


# --------------------------------------------------------------------------
# publishing
# --------------------------------------------------------------------------

def sent_record(id_, channels, data, event=None):
    if isinstance(channels, str):
        channels = [channels]
    return Sent(id_, tuple(channels), data, wire_event(id_, data.encode(), event))


def publish_burst(port, events, subscribers=None):
    """Publishes events in one JSON request; returns their Sent records.
    subscribers(ev), when given, is the count each response item must report."""
    r = pub_json(port, events)
    assert r.status == 200 and isinstance(r.json, list) and len(r.json) == len(events), r
    out = []
    for item, ev in zip(r.json, events):
        if subscribers is not None:
            assert item["subscribers"] == subscribers(ev), (item, ev)
        out.append(sent_record(item["id"], ev["channel"], ev["data"], ev.get("event")))
    return out


class Publisher:
    """A keep-alive connection to a publish location (path, default /pub).

    The event MPM closes idle keep-alive connections of a child whose workers
    are all busy (here: holding streams); a request that meets such a close
    was not read, and is sent again on a new connection (had it been
    published after all, the duplicate would fail the test)."""

    def __init__(self, port, path="/pub"):
        self.port = port
        self.path = path
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def _post(self, target, body, content_type, headers=None):
        hdrs = {"Content-Type": content_type, **(headers or {})}
        try:
            self.conn.request("POST", target, body=body, headers=hdrs)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conn.request("POST", target, body=body, headers=hdrs)
            resp = self.conn.getresponse()
        text = resp.read()
        assert resp.status == 200, (resp.status, text)
        return json.loads(text)

    def one(self, channels, data, event=None):
        """A raw publish of one event; returns its Sent record."""
        i = self._post(self.path + chan_query(channels), data.encode(), "text/plain",
                       {"SSE-Event": event} if event else None)["id"]
        return sent_record(i, channels, data, event)

    def many(self, events):
        """A JSON array publish; returns the ids."""
        return [item["id"] for item in self._post(self.path, json.dumps(events).encode(),
                                                  "application/json")]

    def close(self):
        self.conn.close()


# --------------------------------------------------------------------------
# receiving
# --------------------------------------------------------------------------

def receive(s, n, timeout=60):
    """The next n events of s (a shorter message than next_events' on failure)."""
    try:
        return s.next_events(n, timeout)
    except AssertionError:
        evs = s.events()
        raise AssertionError(f"{s.path}: {n} more events expected within {timeout}s, "
                             f"{len(evs)} received in all, the last {evs[-3:]}, "
                             f"eof={s.eof}") from None


def assert_events(got, want, who):
    """got (Events) are exactly want (Sent records), pointing at the first
    difference."""
    got_raw, want_raw = [e.raw for e in got], [w.wire for w in want]
    if got_raw == want_raw:
        return
    for k, (g, w) in enumerate(zip(got_raw, want_raw)):
        if g != w:
            raise AssertionError(f"{who}: event {k} of {len(want)} is {g!r}, expected {w!r}")
    raise AssertionError(f"{who}: {len(got)} events, expected {len(want)}")


def events_body(s):
    """What s received, heartbeats left out."""
    return bytes(s.body).replace(HEARTBEAT, b"")


def expected_events(sent, channels=None):
    """What a stream on channels (None: any) must receive of the Sent
    records: those on any of its channels, each once, in id order."""
    mine = [x for x in sent if channels is None or set(x.channels) & set(channels)]
    return sorted(mine, key=lambda x: server_id_key(x.id))


def expected_wire(sent, channels=None):
    """The bytes of expected_events()."""
    return b"".join(x.wire for x in expected_events(sent, channels))


def has_received(s, want):
    """s has received at least as many bytes as want (bytes), heartbeats
    aside, and is not in the middle of a heartbeat: what to wait for before
    comparing with events_body(s)."""
    b = events_body(s)
    rest = b[len(want):]
    return len(b) >= len(want) and not (rest and HEARTBEAT.startswith(rest))


def assert_stream_is(s, want, who, idle=0.3):
    """Nothing more arrives (within idle seconds), and the whole stream,
    heartbeats aside, is exactly want (Sent records)."""
    if idle:
        s.idle(idle)
    if events_body(s) != b"".join(w.wire for w in want):
        assert_events(s.events(), want, who)
        raise AssertionError(f"{who}: stray bytes in the stream: {events_body(s)[-300:]!r}")


def close_all(subs):
    for s in subs:
        s.close()
