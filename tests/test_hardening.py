"""Hardening: the four defects an outside probe found, each pinned down.

1. A Last-Event-ID in the server's form but newer than anything the server
   issued is not a position: the client gets sse-gap naming it and the
   oldest retained id, then everything retained, then live events. Nothing
   is ever filtered by it.
2. Publisher ids with white space at either end cannot come back in a
   Last-Event-ID (httpd strips it): refused, in every way of publishing.
3. An SSEChannel value substituted from the request is one channel name,
   whatever white space it holds; only the administrator's text separates
   channels.
4. Subscribers alone cannot fill the channel table: channels that exist
   only because streams wait on them take at most half of SSEMaxChannels;
   past that a stream is refused the way EventSource survives (200, a
   jittered retry:, end), and publishers still create channels.
"""
import json
import re
import socket
import time

import pytest

from ssetest.channels import q, uniq
from ssetest.clients import SSEClient, subscribe
from ssetest.publish import channel_info, get, pub_form, pub_json, pub_raw, publish_ok
from ssetest.wire import wire_event
from test_module_api import conf as module_api_conf
from test_publish_response import make_server


def gap_event(asked, oldest):
    data = json.dumps({"last_event_id": asked, "oldest_id": oldest}, separators=(",", ":"))
    return b"id: " + asked.encode() + b"\nevent: sse-gap\ndata: " + data.encode() + b"\n\n"


def stamp_of(server_id):
    ms, seq = server_id.split("-")
    return int(ms), int(seq)


# ---- 1. Last-Event-ID from the future ----------------------------------

FUTURE = {
    "seconds": lambda ms: f"{ms + 5_000}-0",
    "hours": lambda ms: f"{ms + 3 * 3_600_000}-17",
    "largest": lambda ms: "4398046511103-4194303",     # 2^42-1, 2^22-1: what parses
}


@pytest.mark.parametrize("ahead", sorted(FUTURE))
def test_future_last_event_id_is_a_gap_not_a_filter(srv, chan, ahead):
    sent = [(publish_ok(srv.port, chan, f"old{i}"), f"old{i}".encode()) for i in range(2)]
    asked = FUTURE[ahead](stamp_of(sent[-1][0])[0])
    with subscribe(srv.port, chan, headers={"Last-Event-ID": asked}) as s:
        got = s.next_events(3)
        assert [e.raw for e in got] == [gap_event(asked, sent[0][0])] + \
            [wire_event(i, d) for i, d in sent]
        # Live events are older than the asked id, and all of them arrive.
        live = [publish_ok(srv.port, chan, f"live{i}") for i in range(3)]
        assert [e.raw for e in s.next_events(3)] == \
            [wire_event(i, f"live{k}".encode()) for k, i in enumerate(live)]
        s.assert_no_event(0.3)


def test_future_last_event_id_on_an_empty_channel(srv, chan):
    asked = "4398046511103-4194303"
    with subscribe(srv.port, chan, headers={"Last-Event-ID": asked}) as s:
        assert s.next_event().raw == gap_event(asked, None)
        i = publish_ok(srv.port, chan, "first")
        assert s.next_event().raw == wire_event(i, b"first")


def test_future_last_event_id_query_parameter(srv, chan):
    first = publish_ok(srv.port, chan, "a")
    asked = f"{stamp_of(first)[0] + 60_000}-0"
    with SSEClient(srv.port, f"/events?channel={q(chan)}&lastEventId={asked}") as s:
        assert [e.raw for e in s.next_events(2)] == [gap_event(asked, first),
                                                     wire_event(first, b"a")]
        i = publish_ok(srv.port, chan, "b")
        assert s.next_event().raw == wire_event(i, b"b")


def test_newest_issued_id_is_still_a_position(srv, chan):
    """The boundary: the newest id the server issued resumes exactly."""
    first = publish_ok(srv.port, chan, "a")
    newest = publish_ok(srv.port, chan, "b")
    with subscribe(srv.port, chan, headers={"Last-Event-ID": newest}) as s:
        s.assert_no_event(0.5)
        i = publish_ok(srv.port, chan, "c")
        assert s.next_event().raw == wire_event(i, b"c")
    with subscribe(srv.port, chan, headers={"Last-Event-ID": first}) as s:
        assert s.next_event().raw == wire_event(newest, b"b")


# ---- 2. ids that cannot come back --------------------------------------

BAD_IDS = [" x", "x ", "\tx", "x\t", " ", "\t", "  two  "]


@pytest.mark.parametrize("bad", BAD_IDS, ids=[repr(b) for b in BAD_IDS])
def test_whitespace_ids_refused_in_form_and_json(srv, chan, bad):
    with subscribe(srv.port, chan) as s:
        r = pub_form(srv.port, {"channel": chan, "data": "d", "id": bad})
        assert r.status == 400, r
        assert "white space" in r.error_message()
        r = pub_json(srv.port, {"channel": chan, "data": "d", "id": bad})
        assert r.status == 400, r
        assert "white space" in r.error_message()
        # All or none: one bad id in a batch publishes nothing.
        r = pub_json(srv.port, [{"channel": chan, "data": "ok", "id": "fine"},
                                {"channel": chan, "data": "d", "id": bad}])
        assert r.status == 400, r
        assert r.error_message().startswith("event 1: "), r
        s.assert_no_event(0.5)
        assert channel_info(srv.port, chan).json == {"channel": chan, "subscribers": 1,
                                                     "messages": 0, "last_id": None}


CONTROL_IDS = ["a\x01b", "a\x1fb", "a\x7fb", "\x0b", "a\x0cb", "\x1b[0m"]


@pytest.mark.parametrize("bad", CONTROL_IDS, ids=[repr(b) for b in CONTROL_IDS])
def test_control_character_ids_refused(srv, chan, bad):
    """httpd answers 400 to a Last-Event-ID holding a control character
    (tab aside): an EventSource reconnecting with it would give up."""
    with subscribe(srv.port, chan) as s:
        for r in (pub_form(srv.port, {"channel": chan, "data": "d", "id": bad}),
                  pub_json(srv.port, {"channel": chan, "data": "d", "id": bad})):
            assert r.status == 400, r
            assert "control character" in r.error_message()
        s.assert_no_event(0.5)


def test_inner_whitespace_ids_still_accepted(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_json(srv.port, {"channel": chan, "data": "d", "id": "two words\tand tab"})
        assert r.status == 200, r
        assert s.next_event().raw == wire_event("two words\tand tab", b"d")
    with subscribe(srv.port, chan, headers={"Last-Event-ID": "two words\tand tab"}) as s:
        s.assert_no_event(0.5)      # the id came back and was found: nothing after it


def test_whitespace_id_refused_in_response_publishing(httpd, sse_testmod_so):
    h = make_server(httpd, sse_testmod_so)
    chan = uniq("ws")
    with subscribe(h.port, chan) as s:
        body = q("id:  padded\ndata: x\n\n")
        r = get(h, f"/respond?channel={q(chan)}&type=text/event-stream&part={body}")
        assert r.status == 500, r
        assert "response not published" in r.error_message() and "white space" in r.error_message()
        s.assert_no_event(0.5)


def test_whitespace_id_refused_by_the_optional_function(httpd, sse_testmod_so):
    h = httpd(conf=module_api_conf(sse_testmod_so))
    chan = uniq("ws")
    with subscribe(h.port, chan) as s:
        r = get(h, f"/t-publish?channel={q(chan)}&data=x&id={q(' padded')}")
        assert r.status == 400, r
        assert b"white space" in r.body
        s.assert_no_event(0.5)


# ---- 3. SSEChannel cannot be steered by the request -------------------

def test_substituted_value_with_space_is_one_invalid_channel(srv):
    room, other = uniq("room"), uniq("other")
    with subscribe(srv.port, f"fixed-{other}") as victim:
        # /pub-fixed publishes only to "fixed-%{HTTP:X-Room}"
        r = pub_raw(srv.port, None, b"steered", path="/pub-fixed",
                    headers={"X-Room": f"{room} fixed-{other}"})
        assert r.status == 400, r
        assert "invalid channel name" in r.error_message()
        victim.assert_no_event(0.5)
    # A stream location: the same value names one invalid channel, not two.
    c = SSEClient(srv.port, "/events-hdr", headers={"X-Room": f"a room-{other}",
                                                    "X-Site": "s"}, wait_headers=True)
    try:
        assert c.status == 400, c.status
    finally:
        c.close()


def test_query_string_with_spaces_stays_one_channel(srv):
    other = uniq("other")
    # "qs-%{QUERY_STRING}": a query of "x%20qs-other" substitutes "x qs-other".
    c = SSEClient(srv.port, f"/events-qs?x%20qs-{other}")
    try:
        assert c.status == 400, c.status
    finally:
        c.close()


def test_administrators_own_spaces_still_separate(srv):
    room, site = uniq("r"), uniq("s")
    with subscribe(srv.port, path="/events-hdr", headers={"X-Room": room, "X-Site": site}) as s:
        a = publish_ok(srv.port, f"room-{room}", "to the room")
        b = publish_ok(srv.port, f"all-rooms-{site}", "to the site")
        assert [e.raw for e in s.next_events(2)] == [wire_event(a, b"to the room"),
                                                     wire_event(b, b"to the site")]


def test_empty_substitution_is_refused_not_dropped(httpd):
    """A word that substitutes nothing is an empty channel name (400), not
    silently left out of the subscription."""
    h = httpd(conf="""
<Location /rooms>
    SetHandler sse-stream
    SSEChannel "lobby %{HTTP:X-Room}"
</Location>
""")
    c = SSEClient(h.port, "/rooms")                     # no X-Room
    try:
        assert c.status == 400, c.status
    finally:
        c.close()
    room = uniq("room")
    with subscribe(h.port, path="/rooms", headers={"X-Room": room}) as s:
        a = publish_ok(h.port, "lobby", "to the lobby")
        b = publish_ok(h.port, room, "to the room")
        assert [e.raw for e in s.next_events(2)] == [wire_event(a, b"to the lobby"),
                                                     wire_event(b, b"to the room")]


# ---- 4. subscribers cannot fill the channel table ----------------------

MAX = 20                # SSEMaxChannels; subscribers' share: 10


def open_stream(port, chan, source="127.0.0.1"):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=(source, 0))
    sock.sendall(f"GET /events?channel={q(chan)} HTTP/1.1\r\nHost: x\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    return sock


def read_refusal(sock, timeout=10):
    """A refused stream: its whole response, read to the end."""
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


SHARE_FULL = (rb"too many channels that nothing was published to have subscribers "
              rb"\(half of SSEMaxChannels\)")
TABLE_FULL = rb"too many channels in use \(SSEMaxChannels\)"


def assert_refused(data, why=SHARE_FULL):
    """A refusal: 200, an event stream of one comment saying why and a
    retry: of 10 s +/- 25 %, then the end. Returns the retry."""
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"content-type: text/event-stream" in head.lower(), head
    text = re.sub(rb"\r\n[0-9a-f]+\r\n", b"", b"\r\n" + body).replace(b"\r\n", b"")
    m = re.fullmatch(rb": " + why + rb"\nretry: (\d+)\n\n", text)
    assert m, text
    assert 7500 <= int(m.group(1)) <= 12500
    return int(m.group(1))


@pytest.mark.parametrize("sources", [1, 5], ids=["one-address", "many-addresses"])
def test_subscriber_flood_cannot_lock_out_publishers(httpd, sources):
    h = httpd(server_conf=f"SSEMaxChannels {MAX}\n")
    base = uniq("flood")
    addrs = [f"127.0.0.{2 + i}" for i in range(sources)]
    held = []
    try:
        for i in range(MAX // 2):
            held.append(open_stream(h.port, f"{base}-{i}", addrs[i % sources]))
        for i, sock in enumerate(held):
            sock.settimeout(10)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 "), i
        deadline = time.time() + 10
        while time.time() < deadline and \
                channel_info(h.port, f"{base}-{MAX // 2 - 1}").status != 200:
            time.sleep(0.05)
        # The subscribers' share is full: more streams on new channels are
        # refused, from any address, the way EventSource survives.
        retries = set()
        for i in range(4):
            sock = open_stream(h.port, f"{base}-more-{i}", addrs[i % sources])
            try:
                retries.add(assert_refused(read_refusal(sock)))
            finally:
                sock.close()
        # Publishers still create channels, up to the whole table.
        for i in range(MAX - MAX // 2):
            publish_ok(h.port, f"{base}-pub-{i}", "news")
        r = pub_raw(h.port, f"{base}-pub-last", b"x")
        assert r.status == 503 and "SSEMaxChannels" in r.error_message(), r
        # A stream on a channel that exists is always served.
        with subscribe(h.port, f"{base}-pub-0") as s:
            i = publish_ok(h.port, f"{base}-pub-0", "live")
            assert s.next_event().raw == wire_event(i, b"live")
    finally:
        for sock in held:
            sock.close()


def test_publishing_takes_a_waiting_channel_out_of_the_share(httpd):
    h = httpd(server_conf="SSEMaxChannels 4\n")        # share: 2
    base = uniq("share")
    with subscribe(h.port, f"{base}-a"), subscribe(h.port, f"{base}-b"):
        sock = open_stream(h.port, f"{base}-c")
        try:
            assert_refused(read_refusal(sock))
        finally:
            sock.close()
        publish_ok(h.port, f"{base}-a", "now it is a published channel")
        with subscribe(h.port, f"{base}-c") as s:
            i = publish_ok(h.port, f"{base}-c", "served")
            assert s.next_event().raw == wire_event(i, b"served")


def test_full_table_refuses_new_channel_streams_with_a_retry(httpd):
    """Publishing filled the whole table: a stream on a new channel is
    refused as EventSource survives it; streams on known channels work."""
    h = httpd(server_conf="SSEMaxChannels 4\n")
    base = uniq("full")
    for i in range(4):
        publish_ok(h.port, f"{base}-{i}", "x")
    sock = open_stream(h.port, f"{base}-new")
    try:
        data = read_refusal(sock)
    finally:
        sock.close()
    assert_refused(data, TABLE_FULL)
    assert channel_info(h.port, f"{base}-new").status == 404
    with subscribe(h.port, f"{base}-2") as s:
        i = publish_ok(h.port, f"{base}-2", "known")
        assert s.next_event().raw == wire_event(i, b"known")
