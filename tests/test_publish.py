"""Publishing: POST (raw, form, JSON), validation, limits, responses,
channel info (GET) and DELETE on an sse-publish location."""
import json
import socket
import time

import pytest

from ssetest.channels import chan_query, q, uniq
from ssetest.clients import SSEClient, basic_auth, request, subscribe
from ssetest.publish import channel_info, pub_form, pub_json, pub_raw, publish_ok, wait_subscribers
from ssetest.wire import SERVER_ID_RE, assert_strictly_increasing, wire_event

PUBLISH_ALLOW = "GET, HEAD, POST, DELETE, OPTIONS"


def assert_publish_response(r, n_subscribers, id_=None):
    assert r.status == 200, r
    assert r.headers.get("content-type", "").split(";")[0].strip() == "application/json", r
    assert isinstance(r.json, dict) and set(r.json) == {"id", "subscribers"}, r
    assert r.json["subscribers"] == n_subscribers, r
    if id_ is None:
        assert SERVER_ID_RE.match(r.json["id"]), r
    else:
        assert r.json["id"] == id_, r
    return r.json["id"]


def assert_nothing_published(port, chan, s):
    """After a refused publish: a sentinel is the first thing `s` gets and
    the channel retains only that sentinel."""
    i = publish_ok(port, chan, "sentinel")
    ev = s.next_event()
    assert (ev.id, ev.data) == (i, b"sentinel"), f"something was published before the sentinel: {ev}"
    info = channel_info(port, chan)
    assert info.status == 200 and info.json["messages"] == 1, info


# ---------------------------------------------------------------- raw

def test_raw_publish_all_fields(mpm_srv, chan):
    port = mpm_srv.port
    with subscribe(port, chan) as s:
        r = pub_raw(port, chan, b"raw body\r\nline 2", event="update", id="order-17", retry=2000,
                    content_type="text/plain; charset=utf-8")
        assert_publish_response(r, 1, "order-17")
        ev = s.next_event()
        assert ev.raw == b"id: order-17\nevent: update\nretry: 2000\ndata: raw body\ndata: line 2\n\n"


def test_raw_publish_server_id_and_any_content_type(srv, chan):
    with subscribe(srv.port, chan) as s:
        for ctype in ("application/octet-stream", "text/plain", "application/xml", "image/png"):
            r = pub_raw(srv.port, chan, b"<x/>", content_type=ctype)
            i = assert_publish_response(r, 1)
            assert s.next_event().raw == wire_event(i, b"<x/>")


def test_raw_publish_without_content_type(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = request(srv.port, "POST", "/pub" + chan_query(chan), body=b"no type")
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, b"no type")


def test_raw_empty_body_is_empty_event(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_raw(srv.port, chan, b"")
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == b"id: " + i.encode() + b"\ndata: \n\n"


def test_raw_chunked_body(srv, chan):
    data = b"chunked " * 3000
    with subscribe(srv.port, chan) as s:
        r = request(srv.port, "POST", "/pub" + chan_query(chan), body=data,
                    headers={"Content-Type": "text/plain"}, chunked=True)
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, data)


def test_raw_channel_from_path_info(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = request(srv.port, "POST", "/pub/" + chan, body=b"by path",
                    headers={"Content-Type": "text/plain"})
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, b"by path")


def test_raw_multiple_query_channels_one_event(srv):
    a, b = uniq("pa"), uniq("pb")
    with subscribe(srv.port, a) as sa, subscribe(srv.port, b) as sb:
        r = pub_raw(srv.port, [a, b], b"both")
        i = assert_publish_response(r, 2)
        assert sa.next_event().raw == wire_event(i, b"both")
        assert sb.next_event().raw == wire_event(i, b"both")


def test_channel_precedence_body_query_path(srv):
    p, qc, body = uniq("path"), uniq("query"), uniq("body")
    with subscribe(srv.port, [p, qc, body]) as s:
        r = pub_form(srv.port, [("channel", body), ("data", "form")],
                     path=f"/pub/{p}?channel={qc}")
        i1 = assert_publish_response(r, 1)
        r = pub_raw(srv.port, None, b"raw", path=f"/pub/{p}?channel={qc}")
        i2 = assert_publish_response(r, 1)
        r = pub_raw(srv.port, None, b"raw path", path=f"/pub/{p}")
        i3 = assert_publish_response(r, 1)
        evs = s.next_events(3)
        assert [(e.id, e.data) for e in evs] == [(i1, b"form"), (i2, b"raw"), (i3, b"raw path")]
        for ch, i in ((body, i1), (qc, i2), (p, i3)):
            info = channel_info(srv.port, ch)
            assert info.json["messages"] == 1 and info.json["last_id"] == i, (ch, info)


def test_sse_channel_on_publish_location(srv):
    room = uniq("room")
    fixed = "fixed-" + room
    with subscribe(srv.port, fixed) as s:
        r = pub_raw(srv.port, None, b"fixed", path="/pub-fixed", headers={"X-Room": room})
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, b"fixed")
        # A body naming another channel is refused, and nothing is published.
        r = pub_form(srv.port, [("channel", uniq("elsewhere")), ("data", "x")],
                     path="/pub-fixed", headers={"X-Room": room})
        assert r.status == 403, r
        r.error_message()
        r = pub_json(srv.port, {"channel": ["other-" + room], "data": "x"},
                     path="/pub-fixed", headers={"X-Room": room})
        assert r.status == 403, r
        i = publish_ok(srv.port, None, "sentinel", path="/pub-fixed", headers={"X-Room": room})
        ev = s.next_event()
        assert (ev.id, ev.data) == (i, b"sentinel")


# ---------------------------------------------------------------- form

def test_form_all_fields(mpm_srv, chan):
    port = mpm_srv.port
    with subscribe(port, chan) as s:
        r = pub_form(port, [("channel", chan), ("event", "chat"), ("id", "msg-1"),
                            ("retry", "3000"), ("data", "hello\r\nform & co = 100%")])
        assert_publish_response(r, 1, "msg-1")
        assert s.next_event().raw == (b"id: msg-1\nevent: chat\nretry: 3000\n"
                                      b"data: hello\ndata: form & co = 100%\n\n")


def test_form_aliases_topic_and_type(srv):
    a, b = uniq("topa"), uniq("topb")
    with subscribe(srv.port, [a, b]) as s:
        r = pub_form(srv.port, [("topic", a), ("type", "aliased"), ("data", "x")])
        i1 = assert_publish_response(r, 1)
        r = pub_form(srv.port, [("topic", a), ("topic", b), ("data", "y")])
        i2 = assert_publish_response(r, 2)
        r = pub_form(srv.port, [("channel", a), ("topic", b), ("data", "z")])
        i3 = assert_publish_response(r, 2)
        evs = s.next_events(3)
        assert evs[0].raw == b"id: " + i1.encode() + b"\nevent: aliased\ndata: x\n\n"
        assert evs[1].raw == wire_event(i2, b"y")
        assert evs[2].raw == wire_event(i3, b"z")
        s.assert_no_event(0.3)


def test_form_repeated_channel(srv):
    a, b = uniq("fa"), uniq("fb")
    with subscribe(srv.port, a) as sa, subscribe(srv.port, b) as sb:
        r = pub_form(srv.port, [("channel", a), ("channel", b), ("data", "fan out")])
        i = assert_publish_response(r, 2)
        assert sa.next_event().raw == wire_event(i, b"fan out")
        assert sb.next_event().raw == wire_event(i, b"fan out")


def test_form_plus_is_space_and_percent_decoding(srv, chan):
    with subscribe(srv.port, chan) as s:
        body = f"channel={q(chan)}&data=a+b%2Bc%0Ad%00e%C3%A9"
        r = pub_form(srv.port, body)
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == b"id: " + i.encode() + b"\ndata: a b+c\ndata: d\x00e\xc3\xa9\n\n"


def test_form_missing_data_is_empty_event(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_form(srv.port, [("channel", chan), ("event", "ping")])
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == b"id: " + i.encode() + b"\nevent: ping\ndata: \n\n"


def test_form_channel_in_query(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_form(srv.port, [("data", "q")], path="/pub" + chan_query(chan))
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, b"q")


# ---------------------------------------------------------------- JSON

def test_json_object_all_fields(mpm_srv, chan):
    port = mpm_srv.port
    with subscribe(port, chan) as s:
        r = pub_json(port, {"channel": chan, "event": "json-ev", "data": "j\nk",
                            "id": "j-1", "retry": 4500})
        assert_publish_response(r, 1, "j-1")
        assert s.next_event().raw == b"id: j-1\nevent: json-ev\nretry: 4500\ndata: j\ndata: k\n\n"


def test_json_channel_array(srv):
    a, b = uniq("ja"), uniq("jb")
    with subscribe(srv.port, a) as sa, subscribe(srv.port, [a, b]) as sab:
        r = pub_json(srv.port, {"channel": [a, b], "data": "arr"})
        i = assert_publish_response(r, 3)
        assert sa.next_event().raw == wire_event(i, b"arr")
        assert sab.next_event().raw == wire_event(i, b"arr")
        sab.assert_no_event(0.3)


JSON_DATA = [
    ({"a": 1}, b'{"a":1}'),
    ([1, 2], b"[1,2]"),
    (42, b"42"),
    (True, b"true"),
    (False, b"false"),
    (None, b"null"),
    ({"a": {"b": [1, "x y"]}}, b'{"a":{"b":[1,"x y"]}}'),
    ("str \u00e9", "str \u00e9".encode()),
    ("nul\u0000cr\rlf\n", b"nul\x00cr\rlf\n"),
]


@pytest.mark.parametrize("value,wire", JSON_DATA, ids=[repr(v)[:20] for v, _ in JSON_DATA])
def test_json_data_values(srv, chan, value, wire):
    with subscribe(srv.port, chan) as s:
        r = pub_json(srv.port, {"channel": chan, "data": value})
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, wire)


def test_json_missing_data_is_empty_event(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_json(srv.port, {"channel": chan})
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == b"id: " + i.encode() + b"\ndata: \n\n"


def test_json_array_published_in_order(mpm_srv):
    port = mpm_srv.port
    a, b = uniq("arra"), uniq("arrb")
    with subscribe(port, [a, b]) as s:
        r = pub_json(port, [
            {"channel": a, "data": "1"},
            {"channel": b, "data": "2", "event": "second"},
            {"channel": [a, b], "data": {"n": 3}},
            {"channel": a, "data": "4", "id": "arr-four"},
        ])
        assert r.status == 200, r
        assert isinstance(r.json, list) and len(r.json) == 4, r
        for item in r.json:
            assert set(item) == {"id", "subscribers"}, r
            assert item["subscribers"] == (2 if item is r.json[2] else 1), r
        ids = [x["id"] for x in r.json]
        assert ids[3] == "arr-four"
        assert_strictly_increasing(ids[:3])
        evs = s.next_events(4)
        assert [e.raw for e in evs] == [
            wire_event(ids[0], b"1"),
            wire_event(ids[1], b"2", "second"),
            wire_event(ids[2], b'{"n":3}'),
            wire_event(ids[3], b"4"),
        ]


def test_json_channel_from_query(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_json(srv.port, {"data": "from query"}, path="/pub" + chan_query(chan))
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, b"from query")


def test_json_content_type_with_charset(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_json(srv.port, {"channel": chan, "data": "cs"},
                     headers={"Content-Type": "application/json; charset=utf-8"})
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, b"cs")


# ---------------------------------------------------------------- validation

# (id, kind, payload builder(chan) -> (path, body or fields, headers), keyword)
def _raw(headers):
    return lambda c: ("raw", c, headers)


def _form(*fields):
    return lambda c: ("form", [("channel", c)] + list(fields), None)


def _json(**fields):
    return lambda c: ("json", dict({"channel": c}, **fields), None)


BAD = [
    ("raw-event-sse", _raw({"SSE-Event": "sse-custom"}), "event"),
    ("raw-event-long", _raw({"SSE-Event": "e" * 256}), "event"),
    ("raw-id-server-form", _raw({"SSE-Id": "1795476000123-0"}), "id"),
    ("raw-id-server-form-short", _raw({"SSE-Id": "1-2"}), "id"),
    ("raw-id-long", _raw({"SSE-Id": "i" * 256}), "id"),
    ("raw-retry-alpha", _raw({"SSE-Retry": "12a"}), "retry"),
    ("raw-retry-negative", _raw({"SSE-Retry": "-1"}), "retry"),
    ("raw-retry-fraction", _raw({"SSE-Retry": "1.5"}), "retry"),
    ("raw-retry-unit", _raw({"SSE-Retry": "1000ms"}), "retry"),
    ("raw-retry-huge", _raw({"SSE-Retry": "2147483648"}), "retry"),
    ("raw-id-bad-utf8", _raw({"SSE-Id": "a\xffb"}), "id"),
    ("raw-event-bad-utf8", _raw({"SSE-Event": "\xc3("}), "event"),
    ("form-id-bad-utf8", _form(("id", b"a\xffb")), "id"),
    ("form-event-bad-utf8", _form(("event", b"\xed\xa0\x80")), "event"),
    ("form-event-lf", _form(("event", "a\nb")), "event"),
    ("form-event-cr", _form(("event", "a\rb")), "event"),
    ("form-event-crlf", _form(("event", "a\r\nid: 1")), "event"),
    ("form-event-nul", _form(("event", "a\x00b")), "event"),
    ("form-event-sse", _form(("event", "sse-gap")), "event"),
    ("form-type-sse", _form(("type", "sse-x")), ""),
    ("form-id-lf", _form(("id", "a\nb")), "id"),
    ("form-id-cr", _form(("id", "a\rb")), "id"),
    ("form-id-nul", _form(("id", "a\x00b")), "id"),
    ("form-id-server-form", _form(("id", "12-34")), "id"),
    ("form-retry-alpha", _form(("retry", "abc")), "retry"),
    ("form-retry-negative", _form(("retry", "-5")), "retry"),
    ("form-retry-space", _form(("retry", " 10")), "retry"),
    ("form-retry-fraction", _form(("retry", "1.0")), "retry"),
    ("form-channel-bad", lambda c: ("form", [("channel", c), ("channel", "a b")], None), "channel"),
    ("form-topic-bad", lambda c: ("form", [("channel", c), ("topic", "<x>")], None), ""),
    ("form-channel-empty", lambda c: ("form", [("channel", c), ("channel", "")], None), "channel"),
    ("form-bad-percent", lambda c: ("formraw", f"channel={q(c)}&data=%ZZ", None), ""),
    ("form-truncated-percent", lambda c: ("formraw", f"channel={q(c)}&data=ab%4", None), ""),
    ("json-event-lf", _json(event="a\nb"), "event"),
    ("json-event-nul", _json(event="a\u0000b"), "event"),
    ("json-event-sse", _json(event="sse-heartbeat"), "event"),
    ("json-id-cr", _json(id="a\rb"), "id"),
    ("json-id-nul", _json(id="a\u0000b"), "id"),
    ("json-id-server-form", _json(id="99-0"), "id"),
    ("json-retry-alpha", _json(retry="soon"), "retry"),
    ("json-retry-negative", _json(retry=-1), "retry"),
    ("json-retry-fraction", _json(retry=1.5), "retry"),
    ("json-channel-number", lambda c: ("json", {"channel": [c, 5]}, None), "channel"),
    ("json-channel-bad", lambda c: ("json", {"channel": [c, "a b"]}, None), "channel"),
    ("json-channel-empty-string", lambda c: ("json", {"channel": [c, ""]}, None), "channel"),
    ("json-truncated", lambda c: ("jsonraw", '{"channel": "%s", "data": "x"' % c, None), "json"),
    ("json-garbage", lambda c: ("jsonraw", "not json at all", None), "json"),
    ("json-trailing-comma", lambda c: ("jsonraw", '{"channel": "%s",}' % c, None), "json"),
    ("json-array-unterminated", lambda c: ("jsonraw", '[{"channel": "%s"}' % c, None), "json"),
    ("json-top-level-string", lambda c: ("jsonraw", '"%s"' % c, None), ""),
    ("json-array-non-object", lambda c: ("jsonraw", '[{"channel": "%s", "data": "1"}, 5]' % c, None), ""),
    ("json-array-second-invalid", lambda c: ("json", [{"channel": c, "data": "first"},
                                                     {"channel": c, "event": "sse-no"}], None), "event"),
]


@pytest.mark.parametrize("builder,keyword", [(b, k) for _, b, k in BAD], ids=[i for i, _, _ in BAD])
def test_bad_input_400_nothing_published(srv, chan, builder, keyword):
    kind, payload, headers = builder(chan)
    with subscribe(srv.port, chan) as s:
        if kind == "raw":
            r = pub_raw(srv.port, payload, b"data", headers=headers)
        elif kind == "form":
            r = pub_form(srv.port, payload)
        elif kind == "formraw":
            r = pub_form(srv.port, payload)
        elif kind == "json":
            r = pub_json(srv.port, payload)
        elif kind == "jsonraw":
            r = pub_json(srv.port, None, raw=payload)
        assert r.status == 400, r
        msg = r.error_message()
        if keyword:
            assert keyword in msg.lower(), msg
        assert_nothing_published(srv.port, chan, s)


def test_publish_without_channel_400(srv):
    for r in (pub_raw(srv.port, None, b"x"),
              pub_form(srv.port, [("data", "x")]),
              pub_json(srv.port, {"data": "x"})):
        assert r.status == 400, r
        assert "channel" in r.error_message().lower()


def test_publish_bad_query_channel_400(srv):
    for name in ("a b", "<x>", "x" * 256, ""):
        r = pub_raw(srv.port, name, b"x")
        assert r.status == 400, (name, r)
        assert "channel" in r.error_message().lower()


def test_publish_too_many_channels_400(srv, chan):
    base = uniq("tm")
    with subscribe(srv.port, chan) as s:
        r = pub_form(srv.port, [("channel", chan)] + [("channel", f"{base}-{i}") for i in range(64)]
                     + [("data", "x")])
        assert r.status == 400, r
        r.error_message()
        assert_nothing_published(srv.port, chan, s)
    r = pub_form(srv.port, [("channel", f"{base}-{i}") for i in range(64)] + [("data", "x")])
    assert_publish_response(r, 0)


def test_event_and_id_at_255_bytes_ok(srv, chan):
    ev, id_ = "e" * 255, "i" * 255
    with subscribe(srv.port, chan) as s:
        r = pub_form(srv.port, [("channel", chan), ("event", ev), ("id", id_), ("data", "d")])
        assert_publish_response(r, 1, id_)
        assert s.next_event().raw == wire_event(id_, b"d", ev)


def test_unusual_but_valid_fields(srv, chan):
    # Not reserved: 'sse' alone, 'ssefoo', 'SSE-x' (case differs); an id
    # that merely looks numeric; retry 0 and the maximum.
    with subscribe(srv.port, chan) as s:
        cases = [("sse", "123", "0"), ("ssefoo", "1-2-3", "2147483647"), ("my-sse-event", "-1", None),
                 ("t\u00e9st", "\u00e9-1", "10")]
        wires = []
        for ev, id_, retry in cases:
            fields = [("channel", chan), ("event", ev), ("id", id_), ("data", "x")]
            if retry is not None:
                fields.append(("retry", retry))
            r = pub_form(srv.port, fields)
            assert_publish_response(r, 1, id_)
            wires.append(wire_event(id_, b"x", ev, retry))
        assert [e.raw for e in s.next_events(len(cases))] == wires


def test_ids_that_json_must_escape_come_back_exactly(srv, chan):
    # The answer is JSON: quotes, backslashes and control characters in an
    # id are escaped there; the stream carries the id as it is.
    ids = ['say "hi"', "back\\slash", "tab\there", "\u00e9\u2713 \U0001f600", "/</"]
    with subscribe(srv.port, chan) as s:
        for id_ in ids:
            assert_publish_response(pub_form(srv.port, [("channel", chan), ("id", id_),
                                                        ("data", "x")]), 1, id_)
        r = pub_json(srv.port, [{"channel": chan, "id": i, "data": "y"} for i in ids])
        assert r.status == 200, r
        assert r.json == [{"id": i, "subscribers": 1} for i in ids], r
        assert [e.raw for e in s.next_events(2 * len(ids))] == \
            [wire_event(i, b"x") for i in ids] + [wire_event(i, b"y") for i in ids]


# ---------------------------------------------------------------- size limits

def test_413_over_max_message_size(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_raw(srv.port, chan, b"x" * 1025, path="/pub-small")
        assert r.status == 413, r
        r.error_message()
        r = request(srv.port, "POST", "/pub-small" + chan_query(chan), body=b"y" * 5000,
                    headers={"Content-Type": "text/plain"}, chunked=True)
        assert r.status == 413, r
        r = pub_form(srv.port, [("channel", chan), ("data", "z" * 1100)], path="/pub-small")
        assert r.status == 413, r
        r = pub_json(srv.port, {"channel": chan, "data": "w" * 1100}, path="/pub-small")
        assert r.status == 413, r
        assert_nothing_published(srv.port, chan, s)
        # At the limit is fine.
        r = pub_raw(srv.port, chan, b"k" * 1024, path="/pub-small")
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, b"k" * 1024)


def test_default_max_message_size_64k(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_raw(srv.port, chan, b"x" * 65537)
        assert r.status == 413, r
        assert_nothing_published(srv.port, chan, s)
        data = (b"0123456789abcde\n" * 4096)
        assert len(data) == 65536
        r = pub_raw(srv.port, chan, data)
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, data)


def test_413_from_content_length_before_body(srv, chan):
    """A huge Content-Length is refused at once, without reading the body."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        sock.sendall((f"POST /pub-small{chan_query(chan)} HTTP/1.1\r\nHost: x\r\n"
                      "Content-Type: text/plain\r\nContent-Length: 1000000000\r\n\r\n").encode()
                     + b"x" * 100)
        t0 = time.monotonic()
        resp = b""
        while b"\r\n\r\n" not in resp and time.monotonic() - t0 < 8:
            d = sock.recv(65536)
            if not d:
                break
            resp += d
        assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    finally:
        sock.close()


# ---------------------------------------------------------------- counts

def test_publish_response_subscriber_counts(mpm_srv):
    port = mpm_srv.port
    a, b, none = uniq("ca"), uniq("cb"), uniq("cn")
    subs = [subscribe(port, a) for _ in range(3)] + [subscribe(port, b), subscribe(port, [a, b])]
    try:
        assert_publish_response(pub_raw(port, a, b"1"), 4)
        assert_publish_response(pub_raw(port, b, b"2"), 2)
        assert_publish_response(pub_raw(port, [a, b], b"3"), 6)
        assert_publish_response(pub_raw(port, none, b"4"), 0)
        assert_publish_response(pub_json(port, {"channel": [a, none], "data": "5"}), 4)
    finally:
        for s in subs:
            s.close()


# ---------------------------------------------------------------- channel info

def test_channel_info(mpm_srv, chan):
    port = mpm_srv.port
    with subscribe(port, chan) as s1, subscribe(port, chan) as s2:
        info = channel_info(port, chan)
        assert info.status == 200, info
        assert info.headers["content-type"].split(";")[0] == "application/json"
        assert info.json == {"channel": chan, "subscribers": 2, "messages": 0, "last_id": None}
        ids = [publish_ok(port, chan, str(i)) for i in range(3)]
        info = channel_info(port, chan)
        assert info.json == {"channel": chan, "subscribers": 2, "messages": 3, "last_id": ids[-1]}
        by_path = request(port, "GET", "/pub/" + chan)
        assert by_path.status == 200 and by_path.json == info.json, by_path
        s1.next_events(3)
        s2.next_events(3)
    # Subscribers gone (noticed within a few heartbeats), messages retained.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        info = channel_info(port, chan)
        if info.json["subscribers"] == 0:
            break
        time.sleep(0.2)
    assert info.json == {"channel": chan, "subscribers": 0, "messages": 3, "last_id": ids[-1]}


def test_channel_info_publisher_id(srv, chan):
    publish_ok(srv.port, chan, "x", id="custom-last")
    assert channel_info(srv.port, chan).json == {
        "channel": chan, "subscribers": 0, "messages": 1, "last_id": "custom-last"}


def test_channel_info_unknown_404(srv):
    r = channel_info(srv.port, uniq("never"))
    assert r.status == 404, r
    r.error_message()


def test_channel_info_bad_or_missing_channel_400(srv):
    for path in ("/pub", "/pub?channel=a%20b", "/pub/%3Cx%3E"):
        r = request(srv.port, "GET", path)
        assert r.status == 400, (path, r)
        assert "channel" in r.error_message().lower()


# ---------------------------------------------------------------- DELETE

def test_delete_ends_streams_and_drops_retained(mpm_srv):
    port = mpm_srv.port
    c, d = uniq("del"), uniq("keep")
    s1 = subscribe(port, c)
    s2 = subscribe(port, [c, d])
    s3 = subscribe(port, d)
    try:
        ids = [publish_ok(port, c, str(i)) for i in range(3)]
        s1.next_events(3)
        s2.next_events(3)
        # 10 s for both streams to end: a guard against a hang, not a speed.
        deadline = time.monotonic() + 10
        r = request(port, "DELETE", "/pub" + chan_query(c))
        assert r.status == 200, r
        assert r.json == {"channel": c, "messages": 3, "subscribers": 2}
        for s in (s1, s2):
            assert s.wait_eof(max(0, deadline - time.monotonic())), \
                f"stream not ended after DELETE: {bytes(s.body)!r}"
            assert s.clean_end, "stream of a deleted channel should end cleanly"
        assert not s3.eof
        assert channel_info(port, c).status == 404
        # The other channel is untouched.
        i = publish_ok(port, d, "still here")
        assert s3.next_event().id == i
        # Nothing retained for the deleted channel any more.
        with subscribe(port, c, path="/events-replay") as s4:
            s4.assert_no_event(0.7)
        r = request(port, "DELETE", "/pub/" + c)
        # The replay subscriber made the channel known again (subscribers
        # but no messages), or it is gone: either way nothing was retained.
        assert r.status in (200, 404), r
        if r.status == 200:
            assert r.json["messages"] == 0, r
    finally:
        for s in (s1, s2, s3):
            s.close()


def test_delete_unknown_404(srv):
    r = request(srv.port, "DELETE", "/pub" + chan_query(uniq("nothing")))
    assert r.status == 404, r
    r.error_message()


def test_delete_twice(srv, chan):
    publish_ok(srv.port, chan, "x")
    r = request(srv.port, "DELETE", "/pub/" + chan)
    assert r.status == 200 and r.json == {"channel": chan, "messages": 1, "subscribers": 0}, r
    r = request(srv.port, "DELETE", "/pub/" + chan)
    assert r.status == 404, r


def test_delete_bad_channel_400(srv):
    for path in ("/pub", "/pub?channel=%3C%3E"):
        r = request(srv.port, "DELETE", path)
        assert r.status == 400, (path, r)
        r.error_message()


# ---------------------------------------------------------------- methods and access

@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_publish_other_methods_405(srv, chan, method):
    r = request(srv.port, method, "/pub" + chan_query(chan), body=b"x")
    assert r.status == 405, r
    assert r.headers.get("allow") == PUBLISH_ALLOW
    r.error_message()


def test_publish_options_204(srv, chan):
    r = request(srv.port, "OPTIONS", "/pub" + chan_query(chan))
    assert r.status == 204, r
    assert r.headers.get("allow") == PUBLISH_ALLOW


def test_publish_access_with_require(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_raw(srv.port, chan, b"anon", path="/pub-auth")
        assert r.status == 401, r
        assert "www-authenticate" in r.headers
        r = pub_raw(srv.port, chan, b"wrong", path="/pub-auth",
                    headers=basic_auth("alice", "nope"))
        assert r.status == 401, r
        r = pub_raw(srv.port, chan, b"denied", path="/pub-denied")
        assert r.status == 403, r
        r = request(srv.port, "DELETE", "/pub-denied" + chan_query(chan))
        assert r.status == 403, r
        r = pub_raw(srv.port, chan, b"alice", path="/pub-auth", headers=basic_auth("alice"))
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, b"alice")
        s.assert_no_event(0.3)


# ---------------------------------------------------------------- many channels

def test_thousands_of_channels(httpd):
    h = httpd(conf="""
<Location /replay1>
    SetHandler sse-stream
    SSEInitialReplay 1
</Location>""")
    base = uniq("k")
    names = [f"{base}-{i}" for i in range(2000)]
    ids = {}
    for start in range(0, len(names), 500):
        batch = names[start:start + 500]
        r = pub_json(h.port, [{"channel": n, "data": n} for n in batch])
        assert r.status == 200 and isinstance(r.json, list) and len(r.json) == len(batch), r
        for n, item in zip(batch, r.json):
            assert item["subscribers"] == 0
            ids[n] = item["id"]
    assert_strictly_increasing([ids[n] for n in names])
    for n in (names[0], names[777], names[-1]):
        assert channel_info(h.port, n).json == {"channel": n, "subscribers": 0, "messages": 1,
                                                "last_id": ids[n]}
        with subscribe(h.port, n, path="/replay1") as s:
            assert s.next_event().raw == wire_event(ids[n], n.encode())


def test_max_channels_503(httpd):
    h = httpd(server_conf="SSEMaxChannels 16\n")
    base = uniq("cap")
    for i in range(16):
        publish_ok(h.port, f"{base}-{i}", "x")
    r = pub_raw(h.port, f"{base}-16", b"one too many")
    assert r.status == 503, r
    assert "SSEMaxChannels" in r.error_message()
    assert channel_info(h.port, f"{base}-16").status == 404
    # Known channels keep working.
    publish_ok(h.port, f"{base}-3", "still fine")


def test_json_retry_as_digit_string(srv, chan):
    with subscribe(srv.port, chan) as s:
        r = pub_json(srv.port, {"channel": chan, "data": "r", "retry": "2500"})
        i = assert_publish_response(r, 1)
        assert s.next_event().raw == wire_event(i, b"r", retry=2500)
