"""Subscribing: GET on an sse-stream location (headers, wire format, channel
selection, directives, other methods, real clients)."""
import json
import socket
import subprocess
import threading
import time

import pytest

from ssetest.channels import chan_query, q, uniq
from ssetest.clients import NodeClient, SSEClient, basic_auth, request, subscribe
from ssetest.publish import channel_info, pub_json, pub_raw, publish_ok, wait_subscribers
from ssetest.wire import (HEARTBEAT, assert_strictly_increasing, expected_client_data,
                          server_id_key, wire_event)

STREAM_ALLOW = "GET, HEAD, OPTIONS"


def release(port, chan):
    """A closed subscriber of a location without heartbeat is only noticed
    when something is written to it: publish twice so its thread is freed."""
    for _ in range(2):
        pub_raw(port, chan, b"release")
        time.sleep(0.05)


# ---------------------------------------------------------------- headers

def test_stream_headers(mpm_srv, chan):
    with subscribe(mpm_srv.port, chan) as s:
        assert s.status_line.startswith("HTTP/1.1 200"), s.status_line
        assert s.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert s.headers["cache-control"] == "no-cache"
        assert s.headers["x-accel-buffering"] == "no"
        assert s.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in s.headers
        assert "content-encoding" not in s.headers


def test_headers_flushed_before_any_event(mpm_srv, chan):
    # No heartbeat on this location: only the module's own flush can get
    # the headers out before anything is published.
    s = SSEClient(mpm_srv.port, "/events-nohb" + chan_query(chan), wait_headers=False)
    with s:
        s.read_headers(timeout=5)
        assert s.status == 200
        s.idle(0.5)
        assert bytes(s.body) == b""
        assert not s.eof
    release(mpm_srv.port, chan)


def test_http10_client_gets_stream_until_close(srv, chan):
    with SSEClient(srv.port, "/events" + chan_query(chan), http_version="1.0") as s:
        assert s.status == 200
        assert "chunked" not in s.headers.get("transfer-encoding", "")
        r = pub_raw(srv.port, chan, b"old client")
        assert r.status == 200
        ev = s.next_event(5)
        assert ev.raw == wire_event(r.json["id"], b"old client")


# ---------------------------------------------------------------- events

def test_event_exact_bytes(mpm_srv, chan):
    port = mpm_srv.port
    with subscribe(port, chan, path="/events") as s:
        r = pub_raw(port, chan, b"hello world", event="greeting", retry=1500)
        assert r.status == 200, r
        ev = s.next_event()
        assert ev.raw == (b"id: " + r.json["id"].encode() + b"\nevent: greeting\n"
                          b"retry: 1500\ndata: hello world\n\n")
        # Nothing but that event was written.
        assert s.body_without_heartbeats() == ev.raw


def test_event_without_type_has_no_event_line(srv, chan):
    with subscribe(srv.port, chan, path="/events") as s:
        r = pub_raw(srv.port, chan, b"plain")
        ev = s.next_event()
        assert ev.raw == b"id: " + r.json["id"].encode() + b"\ndata: plain\n\n"


def test_each_event_flushed_as_published(mpm_srv, chan):
    port = mpm_srv.port
    with subscribe(port, chan, path="/events") as s:
        for i in range(5):
            id_ = publish_ok(port, chan, f"n{i}")
            # Must arrive without any later publish or heartbeat pushing it.
            ev = s.next_event(timeout=5)
            assert (ev.id, ev.data) == (id_, f"n{i}".encode())
        assert len(s.events()) == 5


def test_ids_strictly_increasing_across_channels(srv):
    a, b = uniq("ida"), uniq("idb")
    port = srv.port
    with subscribe(port, [a, b], path="/events") as s:
        ids = [publish_ok(port, [a, b][i % 2], f"{i}") for i in range(20)]
        evs = s.next_events(20)
        assert [e.id for e in evs] == ids
        assert [e.data for e in evs] == [str(i).encode() for i in range(20)]
    assert_strictly_increasing(ids)
    ms = int(ids[0].split("-")[0])
    assert abs(ms / 1000.0 - time.time()) < 600, "id is not <unix-milliseconds>-<seq>"


def test_concurrent_publishers_ids_increase_in_stream_order(mpm_srv, chan):
    port = mpm_srv.port
    published = []
    lock = threading.Lock()
    errors = []

    def worker(n):
        for i in range(10):
            r = pub_raw(port, chan, f"w{n}-{i}")
            if r.status != 200:
                errors.append(r)
                return
            with lock:
                published.append((r.json["id"], f"w{n}-{i}".encode()))

    with subscribe(port, chan, path="/events") as s:
        ts = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors
        evs = s.next_events(40, timeout=15)
        s.assert_no_event(0.3)
    ids = [e.id for e in evs]
    assert_strictly_increasing(ids)
    assert sorted(published, key=lambda p: server_id_key(p[0])) == [(e.id, e.data) for e in evs]


WIRE_CASES = [
    ("empty", b"", b"data: \n"),
    ("trailing-lf", b"a\n", b"data: a\ndata: \n"),
    ("lf-only", b"\n", b"data: \ndata: \n"),
    ("mixed-endings", b"a\r\nb\nc\rd", b"data: a\ndata: b\ndata: c\ndata: d\n"),
    ("crlf-pairs", b"\r\n\r\n", b"data: \ndata: \ndata: \n"),
    ("lone-cr-end", b"a\r", b"data: a\ndata: \n"),
    ("cr-cr", b"\r\r", b"data: \ndata: \ndata: \n"),
    ("lf-cr", b"a\n\rb", b"data: a\ndata: \ndata: b\n"),
    ("leading-space", b" lead", b"data:  lead\n"),
    ("nul", b"x\x00y\x00", b"data: x\x00y\x00\n"),
    ("utf8", "h\u00e9llo \u2713 \U0001F600".encode(), b"data: " + "h\u00e9llo \u2713 \U0001F600".encode() + b"\n"),
    ("non-utf8", b"\xff\xfe\x80", b"data: \xff\xfe\x80\n"),
    ("injection", b"x\n\nid: 9\nevent: evil\n", b"data: x\ndata: \ndata: id: 9\ndata: event: evil\ndata: \n"),
    ("colon-start", b": not a comment", b"data: : not a comment\n"),
    ("blank-lines-inside", b"a\n\n\nb", b"data: a\ndata: \ndata: \ndata: b\n"),
]


@pytest.mark.parametrize("name,data,lines", WIRE_CASES, ids=[c[0] for c in WIRE_CASES])
def test_data_wire_format(srv, chan, name, data, lines):
    with subscribe(srv.port, chan, path="/events") as s:
        r = pub_raw(srv.port, chan, data)
        assert r.status == 200, r
        ev = s.next_event()
        assert ev.raw == b"id: " + r.json["id"].encode() + b"\n" + lines + b"\n"


def test_large_multiline_data_exact(srv, chan):
    data = b"".join(b"line %05d " % i + b"x" * 40 + (b"\r\n" if i % 3 == 0 else b"\n")
                    for i in range(1000))[:60000]
    with subscribe(srv.port, chan, path="/events") as s:
        r = pub_raw(srv.port, chan, data)
        assert r.status == 200, r
        ev = s.next_event(timeout=10)
        assert ev.raw == wire_event(r.json["id"], data)


# ---------------------------------------------------------------- channels

def test_query_channels_repeatable(mpm_srv):
    port = mpm_srv.port
    a, b, c = uniq("qa"), uniq("qb"), uniq("qc")
    with subscribe(port, [a, b], path="/events") as s:
        ia = publish_ok(port, a, "to a")
        publish_ok(port, c, "to c")
        ib = publish_ok(port, b, "to b")
        iab = publish_ok(port, [a, b], "to both")
        evs = s.next_events(3)
        assert [(e.id, e.data) for e in evs] == [(ia, b"to a"), (ib, b"to b"), (iab, b"to both")]
        # An event published to two channels the client follows: once.
        s.assert_no_event(0.5)


def test_path_info_channel(srv, chan):
    with subscribe(srv.port, None, path="/events/" + chan) as s:
        i = publish_ok(srv.port, chan, "via path")
        publish_ok(srv.port, chan + "x", "other")
        assert [(e.id, e.data) for e in s.next_events(1)] == [(i, b"via path")]
        s.assert_no_event(0.3)


def test_query_wins_over_path_info(srv):
    p, qc = uniq("path"), uniq("query")
    with subscribe(srv.port, qc, path="/events/" + p) as s:
        publish_ok(srv.port, p, "path")
        i = publish_ok(srv.port, qc, "query")
        assert s.next_event().id == i
        s.assert_no_event(0.3)


def test_all_allowed_punctuation_and_max_length(srv):
    punct = "x-._~:/@!$&'()*+,;=" + uniq("p")
    longest = ("L" + uniq("l")).ljust(255, "z")
    assert len(longest) == 255
    for name in (punct, longest, "A"):
        with subscribe(srv.port, name, path="/events") as s:
            i = publish_ok(srv.port, name, "ok")
            assert s.next_event().id == i
            info = channel_info(srv.port, name)
            assert info.status == 200 and info.json["channel"] == name, info


def test_sse_channel_expr_query_string(srv):
    tag = uniq("qs")
    with subscribe(srv.port, None, path="/events-qs?" + tag) as s:
        i = publish_ok(srv.port, "qs-" + tag, "expr")
        assert s.next_event().id == i


def test_sse_channel_expr_env_var_wins_over_query(srv):
    other = uniq("other")
    with subscribe(srv.port, other, path="/events-env") as s:
        publish_ok(srv.port, other, "not for env")
        i = publish_ok(srv.port, "env-lobby", "for env")
        ev = s.next_event()
        assert (ev.id, ev.data) == (i, b"for env")
        s.assert_no_event(0.3)


def test_sse_channel_expr_whitespace_separates_channels(srv):
    room, site = uniq("r"), uniq("s")
    with subscribe(srv.port, None, path="/events-hdr",
                   headers={"X-Room": room, "X-Site": site}) as s:
        i1 = publish_ok(srv.port, "room-" + room, "room")
        i2 = publish_ok(srv.port, "all-rooms-" + site, "site")
        assert [e.id for e in s.next_events(2)] == [i1, i2]


def test_sse_channel_expr_invalid_result_400(srv):
    s = SSEClient(srv.port, "/events-hdr", headers={"X-Room": "<bad>", "X-Site": "ok"})
    with s:
        assert s.status == 400
        s.wait_eof(5)
    r = request(srv.port, "GET", "/events-hdr", headers={"X-Room": "<bad>", "X-Site": "ok"})
    assert r.status == 400
    assert "channel" in r.error_message().lower()


def test_sse_channel_remote_user(srv):
    r = request(srv.port, "GET", "/events-user")
    assert r.status == 401
    with subscribe(srv.port, None, path="/events-user", headers=basic_auth("alice")) as s:
        publish_ok(srv.port, "user-bob", "for bob")
        i = publish_ok(srv.port, "user-alice", "for alice")
        ev = s.next_event()
        assert (ev.id, ev.data) == (i, b"for alice")
        s.assert_no_event(0.3)


def test_no_channel_400(srv):
    for path in ("/events", "/events-nohb", "/events?foo=bar", "/events?channel"):
        r = request(srv.port, "GET", path)
        assert r.status == 400, (path, r)
        assert "channel" in r.error_message().lower()


BAD_CHANNELS = ["a b", "a\tb", "<x>", 'a"b', "a#b", "a%b", "a?b", "[x]", "a\\b",
                "a^b", "a`b", "{x}", "a|b", "\u00e9t\u00e9", "a\x00b", "a\x7fb",
                "a\nb", "x" * 256, ""]


@pytest.mark.parametrize("name", BAD_CHANNELS, ids=[repr(n[:12]) + str(len(n)) for n in BAD_CHANNELS])
def test_bad_channel_name_400(srv, name):
    r = request(srv.port, "GET", "/events?channel=" + q(name))
    assert r.status == 400, r
    assert "channel" in r.error_message().lower()
    # One bad name among good ones spoils the whole request.
    r = request(srv.port, "GET", f"/events?channel=good&channel={q(name)}")
    assert r.status == 400, r


def test_bad_channel_in_path_info_400(srv):
    for path in ("/events/a%20b", "/events/%3Cx%3E", "/events/" + "y" * 256):
        r = request(srv.port, "GET", path)
        assert r.status == 400, (path, r)
        assert "channel" in r.error_message().lower()


def test_too_many_channels_400(srv):
    base = uniq("many")
    ok = [f"{base}-{i}" for i in range(64)]
    with subscribe(srv.port, ok, path="/events") as s:
        i = publish_ok(srv.port, ok[63], "last one")
        assert s.next_event().id == i
    r = request(srv.port, "GET", "/events" + chan_query(ok + [base + "-64"]))
    assert r.status == 400, r
    r.error_message()


# ---------------------------------------------------------------- methods

@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_stream_other_methods_405(srv, chan, method):
    r = request(srv.port, method, "/events" + chan_query(chan), body=b"x",
                headers={"Content-Type": "text/plain"})
    assert r.status == 405, r
    assert r.headers.get("allow") == STREAM_ALLOW
    r.error_message()


def test_stream_options_204(srv, chan):
    r = request(srv.port, "OPTIONS", "/events" + chan_query(chan))
    assert r.status == 204, r
    assert r.headers.get("allow") == STREAM_ALLOW
    assert r.body == b""


def test_stream_head(srv, chan):
    s = SSEClient(srv.port, "/events" + chan_query(chan), method="HEAD")
    with s:
        assert s.status == 200
        assert s.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert s.headers["cache-control"] == "no-cache"
        # HEAD ends at once: the server answers the next request on the
        # same connection (or closes it) without waiting for events.
        s.sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest = bytes(s._buf)
        closed = False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and b"\r\n\r\n" not in rest:
            s.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = s.sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not d:
                closed = True
                break
            rest += d
        assert closed or rest.startswith(b"HTTP/1.1 200"), \
            f"HEAD did not end: no close and no answer to the next request ({rest[:100]!r})"
        if not closed:
            assert b"\r\n\r\n" in rest
    # The HEAD was over before the next request was answered (or the
    # connection closed): no subscriber left, no event, so the channel is
    # unknown (sse_store_ring.c answers 404 when nothing is published,
    # retained or subscribed).
    info = channel_info(srv.port, chan)
    assert info.status == 404, info


# ---------------------------------------------------------------- directives

def test_sse_retry_first_in_stream(srv, chan):
    with subscribe(srv.port, chan, path="/events-retry") as s:
        assert s.wait_bytes(b"retry: 2500\n\n", 5)
        assert bytes(s.body).startswith(b"retry: 2500\n\n")
        i = publish_ok(srv.port, chan, "after retry")
        s.next_event()
        assert s.body_without_heartbeats() == b"retry: 2500\n\n" + wire_event(i, b"after retry")


def test_no_retry_by_default(srv, chan):
    with subscribe(srv.port, chan, path="/events") as s:
        i = publish_ok(srv.port, chan, "x")
        s.next_event()
        assert s.body_without_heartbeats() == wire_event(i, b"x")


def test_heartbeat_when_idle(srv, chan):
    with subscribe(srv.port, chan, path="/events-hb") as s:
        assert s.read_until(lambda c: bytes(c.body).count(HEARTBEAT) >= 2, 6), bytes(s.body)
        body = bytes(s.body)
        assert body == HEARTBEAT * (len(body) // len(HEARTBEAT)), body
        assert not s.eof
        i = publish_ok(srv.port, chan, "between beats")
        s.next_event()
        assert wire_event(i, b"between beats") in bytes(s.body)


def test_heartbeat_only_when_idle(srv, chan):
    # Publishing every 0.2 s keeps a 1 s heartbeat quiet (at most one slip
    # allowed for a noisy machine).
    with subscribe(srv.port, chan, path="/events-hb") as s:
        for i in range(15):
            publish_ok(srv.port, chan, str(i))
            time.sleep(0.2)
        s.next_events(15)
        assert bytes(s.body).count(HEARTBEAT) <= 1, bytes(s.body)


def test_heartbeat_off(srv, chan):
    with subscribe(srv.port, chan, path="/events-nohb") as s:
        s.idle(2.5)
        assert bytes(s.body) == b""
        assert not s.eof
    release(srv.port, chan)


def test_initial_replay(mpm_srv, chan):
    port = mpm_srv.port
    sent = [(publish_ok(port, chan, f"old{i}"), f"old{i}".encode()) for i in range(5)]
    with subscribe(port, chan, path="/events-replay") as s:
        evs = s.next_events(3)
        assert [e.raw for e in evs] == [wire_event(i, d) for i, d in sent[2:]]
        s.assert_no_event(0.5)
        i = publish_ok(port, chan, "live")
        assert s.next_event().raw == wire_event(i, b"live")


def test_initial_replay_fewer_retained(srv, chan):
    sent = [(publish_ok(srv.port, chan, f"o{i}"), f"o{i}".encode()) for i in range(2)]
    with subscribe(srv.port, chan, path="/events-replay") as s:
        assert [e.raw for e in s.next_events(2)] == [wire_event(i, d) for i, d in sent]
        s.assert_no_event(0.5)


def test_initial_replay_multiple_channels_in_order(srv):
    a, b = uniq("ra"), uniq("rb")
    other = uniq("ro")
    sent = []
    for i in range(6):
        ch = [a, b, other][i % 3]
        sent.append((ch, publish_ok(srv.port, ch, f"m{i}")))
    mine = [i for ch, i in sent if ch in (a, b)]
    with subscribe(srv.port, [a, b], path="/events-replay") as s:
        assert [e.id for e in s.next_events(3)] == mine[-3:]
        s.assert_no_event(0.5)


def test_no_initial_replay_by_default(srv, chan):
    publish_ok(srv.port, chan, "before")
    with subscribe(srv.port, chan, path="/events") as s:
        s.assert_no_event(0.7)
        i = publish_ok(srv.port, chan, "after")
        assert s.next_event().raw == wire_event(i, b"after")


# ---------------------------------------------------------------- real clients

NODE_CASES = [
    ("message", "plain"),
    ("t1", "crlf\r\nline"),
    ("message", "lf\nline"),
    ("t2", "cr\rline"),
    ("message", "nul\u0000inside"),
    ("message", "h\u00e9llo \u2713 \U0001F600"),
    ("message", ""),
    ("t1", "trailing newline\n"),
    ("message", "  two leading spaces"),
    ("message", "\n\nstarts with blank lines"),
]


def test_node_eventsource_receives_exactly(srv, chan):
    n = len(NODE_CASES)
    node = NodeClient(srv.url("/events" + chan_query(chan)), n, timeout=20,
                      types=["t1", "t2"])
    try:
        node.wait_open()
        wait_subscribers(srv.port, chan, 1)
        ids = []
        for typ, data in NODE_CASES:
            obj = {"channel": chan, "data": data}
            if typ != "message":
                obj["event"] = typ
            r = pub_json(srv.port, obj)
            assert r.status == 200, r
            ids.append(r.json["id"])
        final, events = node.result()
    finally:
        node.close()
    assert final == "done", node.lines
    got = [(e["type"], e["data"], e["lastEventId"]) for e in events]
    want = [(typ, expected_client_data(d), i) for (typ, d), i in zip(NODE_CASES, ids)]
    assert got == want


def test_curl_no_buffer(srv, chan):
    p = subprocess.Popen(["curl", "-N", "-s", "--max-time", "15",
                          "-H", "Accept: text/event-stream",
                          srv.url("/events" + chan_query(chan))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_subscribers(srv.port, chan, 1)
        i1 = publish_ok(srv.port, chan, "one\ntwo", event="curl")
        i2 = publish_ok(srv.port, chan, "three")
        want = wire_event(i1, b"one\ntwo", "curl") + wire_event(i2, b"three")
        got = b""
        hb = HEARTBEAT
        import select as _select
        deadline = time.monotonic() + 10
        while len(got.replace(hb, b"")) < len(want) and time.monotonic() < deadline:
            r, _, _ = _select.select([p.stdout], [], [], 0.5)
            if r:
                d = p.stdout.read1(65536)
                if not d:
                    break
                got += d
        assert got.replace(hb, b"") == want
    finally:
        p.terminate()
        p.wait(10)


def test_many_subscribers_many_channels(srv):
    chans = [uniq("mc") for _ in range(30)]
    subs = []
    try:
        for ch in chans:
            for _ in range(2):
                subs.append((ch, subscribe(srv.port, ch, path="/events")))
        ids = {}
        for ch in chans:
            r = pub_raw(srv.port, ch, "for " + ch)
            assert r.status == 200 and r.json["subscribers"] == 2, r
            ids[ch] = r.json["id"]
        for ch, s in subs:
            ev = s.next_event(10)
            assert ev.raw == wire_event(ids[ch], ("for " + ch).encode())
        for ch, s in subs:
            s.assert_no_event(0.05)
    finally:
        for _, s in subs:
            s.close()
