"""Other httpd modules around a stream: compression must not buffer or
encode it, request timeouts must not cut it."""
import time

import pytest

from ssetest.channels import chan_query, uniq
from ssetest.clients import SSEClient, request, subscribe
from ssetest.publish import publish_ok
from ssetest.wire import wire_event

COMPRESSION = [
    ("deflate-setoutputfilter", "gzip", """
<Location /z>
    SetHandler sse-stream
    SSEHeartbeat 0
    SetOutputFilter DEFLATE
</Location>"""),
    ("deflate-by-type", "gzip", """
AddOutputFilterByType DEFLATE text/event-stream text/plain
<Location /z>
    SetHandler sse-stream
    SSEHeartbeat 0
</Location>"""),
    ("deflate-by-type-in-location", "gzip, deflate", """
DeflateBufferSize 65536
<Location /z>
    SetHandler sse-stream
    SSEHeartbeat 0
    AddOutputFilterByType DEFLATE text/event-stream
</Location>"""),
    ("brotli", "br", """
<Location /z>
    SetHandler sse-stream
    SSEHeartbeat 0
    SetOutputFilter BROTLI_COMPRESS
</Location>"""),
]


@pytest.mark.parametrize("conf,encoding", [(c, e) for _, e, c in COMPRESSION],
                         ids=[i for i, _, _ in COMPRESSION])
def test_compression_does_not_buffer_or_encode_stream(httpd, conf, encoding):
    h = httpd(conf=conf)
    chan = uniq("gz")
    s = SSEClient(h.port, "/z" + chan_query(chan), headers={"Accept-Encoding": encoding},
                  wait_headers=False)
    with s:
        s.read_headers(timeout=5)    # headers at once, before any event
        assert s.status == 200
        assert "content-encoding" not in s.headers, s.headers
        assert s.headers["content-type"] == "text/event-stream; charset=utf-8"
        # Not held back by the filter: it arrives while the stream is open
        # (within the 5 s guard against a hang), alone.
        i = publish_ok(h.port, chan, "not compressed\nnot buffered")
        ev = s.next_event(timeout=5)
        assert ev.raw == wire_event(i, b"not compressed\nnot buffered")
        assert bytes(s.body) == ev.raw
        i2 = publish_ok(h.port, chan, "second")
        assert s.next_event(timeout=5).raw == wire_event(i2, b"second")
        # Release the thread (heartbeat is off on this location).
    for _ in range(2):
        publish_ok(h.port, chan, "release")


def test_compression_still_works_elsewhere(httpd):
    """The deflate set-up above is a working one: a plain file is compressed."""
    h = httpd(conf="AddOutputFilterByType DEFLATE text/event-stream text/plain\n")
    (h.dir / "htdocs" / "big.txt").write_text("compress me " * 2000)
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", h.port, timeout=10)
    c.request("GET", "/big.txt", headers={"Accept-Encoding": "gzip"})
    r = c.getresponse()
    r.read()
    c.close()
    assert r.getheader("Content-Encoding") == "gzip"


def test_deflate_server_wide_events_one_by_one(httpd):
    """mod_deflate on for the whole server, as many sites have it, and a
    client that accepts gzip: the page is compressed, the stream is not, and
    each event arrives on its own (its own chunk), promptly. (The same
    server-wide line is on in tests/test_transports.py, over HTTP/2 and TLS.)"""
    h = httpd(conf="AddOutputFilterByType DEFLATE text/event-stream text/html\n")
    (h.dir / "htdocs" / "page.html").write_text("<p>compress me</p>\n" * 500)
    r = request(h.port, "GET", "/page.html", headers={"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.headers.get("content-encoding") == "gzip", r
    chan = uniq("gzw")
    with subscribe(h.port, chan, path="/events-nohb", headers={"Accept-Encoding": "gzip"}) as s:
        assert "content-encoding" not in s.headers, s.headers
        for k in range(8):
            data = f"event {k}\nline two"
            i = publish_ok(h.port, chan, data)
            ev = s.next_event(timeout=5)      # a guard against a hang, not a speed
            assert ev.raw == wire_event(i, data.encode())
            assert s.chunks[-1][1] == ev.raw, s.chunks[-3:]     # alone, not batched
            time.sleep(0.02)
    for _ in range(2):
        publish_ok(h.port, chan, "release")


def test_reqtimeout_short_limits_do_not_cut_stream(httpd):
    h = httpd(server_conf="RequestReadTimeout handshake=1 header=1-2,MinRate=500 body=1-2,MinRate=500\n")
    chan = uniq("rt")
    with subscribe(h.port, chan, path="/events-nohb") as s:
        s.idle(4)
        assert not s.eof, "stream cut while idle under mod_reqtimeout"
        i = publish_ok(h.port, chan, "still here")
        assert s.next_event(5).raw == wire_event(i, b"still here")
        s.idle(3)
        assert not s.eof
        i = publish_ok(h.port, chan, "and here")
        assert s.next_event(5).raw == wire_event(i, b"and here")
    for _ in range(2):
        publish_ok(h.port, chan, "release")


def test_short_timeout_does_not_cut_idle_stream(httpd):
    """`Timeout` bounds socket I/O; a stream that is merely idle stays open."""
    h = httpd(server_conf="Timeout 2\n")
    chan = uniq("to")
    with subscribe(h.port, chan, path="/events-nohb") as s:
        s.idle(5)
        assert not s.eof, "idle stream cut by Timeout 2"
        i = publish_ok(h.port, chan, "after 5s")
        assert s.next_event(5).raw == wire_event(i, b"after 5s")
    for _ in range(2):
        publish_ok(h.port, chan, "release")
